"""`trioka user`: SCRAM users, as `kafka-configs.sh --entity-type users --alter --add-config
'SCRAM-SHA-256=[password=...]'` manages them, over AlterUserScramCredentials and
DescribeUserScramCredentials (KIP-554), so it works against any Kafka cluster.

    trioka user add NAME --password PW [--mechanism SCRAM-SHA-256] [--iterations 4096]
    trioka user list [NAME ...]
    trioka user remove NAME [--mechanism SCRAM-SHA-256]

`add` salts and hashes the password here, as Kafka's admin client does: what travels is the salt,
the iteration count and the salted password (PBKDF2), never the password itself. `--mechanism`
may be given more than once (default: SCRAM-SHA-256); `remove` without it removes every mechanism
the user has. `list` prints User, Mechanism, Iterations.
"""

import argparse
import os

from trioka.cli import UsageError, connection_args, open_client, print_table
from trioka.cli.client.connection import raise_for
from trioka.security.sasl.scram import BY_NAME, BY_TYPE, MAX_ITERATIONS
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey


def mechanism(text: str) -> str:
    name = text.strip().upper()
    if name not in BY_NAME:
        raise argparse.ArgumentTypeError(
            f"unknown SCRAM mechanism {text!r} (one of {', '.join(BY_NAME)})")
    return name


def add_parser(sub) -> None:
    p = sub.add_parser("user", help="add, list and remove SCRAM users",
                       description="SCRAM users, over AlterUserScramCredentials and "
                                   "DescribeUserScramCredentials.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="add a user, or change its password")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--password", required=True, help="the user's password")
    a.add_argument("--mechanism", type=mechanism, action="append", metavar="MECHANISM",
                   help="SCRAM-SHA-256 (default) or SCRAM-SHA-512; may be repeated")
    a.add_argument("--iterations", type=int, default=4096,
                   help=f"PBKDF2 iterations, 4096 to {MAX_ITERATIONS} (default 4096)")
    a.set_defaults(run=add, command_parser=a)
    ls = actions.add_parser("list", help="users and their SCRAM mechanisms")
    ls.add_argument("names", nargs="*", metavar="NAME", help="only these users")
    ls.set_defaults(run=list_users)
    r = actions.add_parser("remove", help="remove a user's credentials")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--mechanism", type=mechanism, action="append", metavar="MECHANISM",
                   help="only this mechanism's credential; may be repeated")
    r.set_defaults(run=remove)
    for q in (a, ls, r):
        connection_args(q)


def _alter(args, deletions, upsertions) -> int:
    Request = protocol.request_class(ApiKey.ALTER_USER_SCRAM_CREDENTIALS)
    with open_client(args) as client:
        response = client.controller().call(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, Request(
            deletions=deletions, upsertions=upsertions))
    for result in response.results:
        raise_for(result.error_code, result.error_message, what=f"user {result.user!r}")
    return 0


def add(args) -> int:
    if not args.name:
        raise UsageError("the user name must not be empty")
    Request = protocol.request_class(ApiKey.ALTER_USER_SCRAM_CREDENTIALS)
    upsertions = []
    for name in dict.fromkeys(args.mechanism or ["SCRAM-SHA-256"]):
        scram = BY_NAME[name]
        salt = os.urandom(32)
        upsertions.append(Request.ScramCredentialUpsertion(
            name=args.name, mechanism=scram.type_id, iterations=args.iterations, salt=salt,
            salted_password=scram.salted_password(args.password.encode(), salt,
                                                  max(1, min(args.iterations,
                                                             MAX_ITERATIONS)))))
    _alter(args, [], upsertions)
    print(f"Completed updating SCRAM credentials for user {args.name!r}")
    return 0


def _describe(args, names: list[str]):
    Request = protocol.request_class(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS)
    with open_client(args) as client:
        response = client.any_connection().call(
            ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS,
            Request(users=[Request.UserName(name=n) for n in names] if names else None))
    raise_for(response.error_code, response.error_message,
              what="DescribeUserScramCredentials")
    return response.results


def list_users(args) -> int:
    rows = []
    for result in _describe(args, args.names):
        raise_for(result.error_code, result.error_message, what=f"user {result.user!r}")
        for info in result.credential_infos:
            rows.append([result.user, BY_TYPE[info.mechanism].name, info.iterations])
    print_table(["User", "Mechanism", "Iterations"], rows)
    return 0


def remove(args) -> int:
    Request = protocol.request_class(ApiKey.ALTER_USER_SCRAM_CREDENTIALS)
    if args.mechanism:
        types = [BY_NAME[m].type_id for m in dict.fromkeys(args.mechanism)]
    else:
        (result,) = _describe(args, [args.name])
        raise_for(result.error_code, result.error_message, what=f"user {args.name!r}")
        types = [info.mechanism for info in result.credential_infos]
    _alter(args, [Request.ScramCredentialDeletion(name=args.name, mechanism=t)
                  for t in types], [])
    print(f"Completed removing SCRAM credentials for user {args.name!r}")
    return 0
