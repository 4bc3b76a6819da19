"""The `trioka` tools that speak the Kafka protocol to any Kafka cluster (trioka or not).

    trioka topic  create|list|describe|delete|alter-config   (kafka-topics.sh, kafka-configs.sh)
                  alter|trim|offsets                         (kafka-delete-records.sh, ...)
    trioka produce TOPIC                                      (kafka-console-producer.sh, kcat -P)
    trioka consume TOPIC... | --include REGEX                 (kafka-console-consumer.sh, kcat -C)
    trioka group  list|describe|delete|delete-offsets         (kafka-consumer-groups.sh; `groups`)
                  reset-offsets
    trioka txn    list|describe|describe-producers            (kafka-transactions.sh)
                  find-hanging|abort
    trioka requests [--follow] [--api Fetch] [--json]         (a trioka broker's request log)
    trioka report [--markdown|--json]                         (its conformance report)
    trioka certs DIR [--hostname HOST]                        (a development CA and certificates)
    trioka user   add|list|remove                             (kafka-configs.sh, SCRAM users)
    trioka acl    add|list|remove                             (kafka-acls.sh)
    trioka quota  set|describe                                (kafka-configs.sh, client quotas)
    trioka config describe|alter                              (kafka-configs.sh)
    trioka cluster info|api-versions                          (kafka-broker-api-versions.sh)

Flags are the Kafka tools' names, with kcat's short forms where they fit. Every command takes
`--bootstrap-server HOST:PORT` (kcat's `-b`; default: $TRIOKA_BROKERS, as rpk reads RPK_BROKERS,
else localhost:9092) and `--command-config FILE` (default: $TRIOKA_COMMAND_CONFIG), Kafka's
client settings for SSL and SASL listeners (cli/client/security.py). Results go to stdout,
notices and errors to stderr; the exit status is 0 on success, 1 when Kafka or the connection
failed, 2 for a usage error. The protocol work is in the client, cli/client/; these modules parse
flags and print. `requests` reads a trioka broker's request log through its admin endpoint
instead (`--admin`, like `trioka control`), and `report` its conformance report
(observe/conformance.py).
"""

import argparse
import os
import sys

from trioka.cli.client.cluster import KafkaClient
from trioka.cli.client.connection import DEFAULT_BOOTSTRAP, ClientError
from trioka.cli.client.security import ClientSecurity, SecurityConfigError, read_properties
from trioka.wire.errors import KafkaError

COMMANDS = ("topic", "produce", "consume", "group", "txn", "requests", "report", "certs",
            "user", "config", "cluster", "quota", "acl")

# The bootstrap servers when `--bootstrap-server` is not given (as rpk reads RPK_BROKERS):
# the flag, else this environment variable, else DEFAULT_BOOTSTRAP.
BROKERS_ENV = "TRIOKA_BROKERS"
# The client settings file when `--command-config` is not given (as rpk's RPK_* settings).
COMMAND_CONFIG_ENV = "TRIOKA_COMMAND_CONFIG"


def add_commands(sub) -> None:
    """Add the tools' sub-commands to the `trioka` parser's sub-parsers."""
    from trioka.cli import certs, consume, group, produce, report, requests, topic, txn, user
    from trioka.cli import acl, cluster, config, quota
    for module in (topic, produce, consume, group, txn, requests, report, certs, user, config,
                   cluster, quota, acl):
        module.add_parser(sub)


def bootstrap_servers(text: str) -> str:
    """`--bootstrap-server`'s value, checked as a flag's (a usage error, exit 2)."""
    from trioka.cli.client.connection import parse_bootstrap
    try:
        parse_bootstrap(text)
    except ClientError as e:
        where = f" (from ${BROKERS_ENV})" if isinstance(text, FromEnvironment) else ""
        raise argparse.ArgumentTypeError(f"{e}{where}") from None
    return text


class FromEnvironment(str):
    """A default read from the environment, so that a bad one is reported under its name."""


def default_bootstrap(environ=None) -> str:
    """`--bootstrap-server`'s default: $TRIOKA_BROKERS when set and not empty, else
    DEFAULT_BOOTSTRAP. argparse checks a string default with the flag's type when the flag is
    not given, so a bad value there is a usage error (exit 2) naming the variable."""
    value = (os.environ if environ is None else environ).get(BROKERS_ENV, "").strip()
    return FromEnvironment(value) if value else DEFAULT_BOOTSTRAP


def connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-server", "-b", dest="bootstrap_server", type=bootstrap_servers,
                   default=default_bootstrap(), metavar="HOST:PORT",
                   help=f"a broker to start from, or several comma-separated (default: "
                        f"${BROKERS_ENV}, else {DEFAULT_BOOTSTRAP})")
    p.add_argument("--request-timeout-ms", type=int, default=30000, metavar="MS",
                   help="how long one request may take (default 30000)")
    p.add_argument("--command-config", dest="command_config", metavar="FILE",
                   default=default_command_config(),
                   help=f"a properties file of client settings: security.protocol, ssl.*, "
                        f"sasl.* (Kafka's tools' flag; default: ${COMMAND_CONFIG_ENV})")


def default_command_config(environ=None) -> str | None:
    """`--command-config`'s default: $TRIOKA_COMMAND_CONFIG when set and not empty."""
    value = (os.environ if environ is None else environ).get(COMMAND_CONFIG_ENV, "").strip()
    return FromEnvironment(value) if value else None


def client_security(path: str | None) -> ClientSecurity | None:
    """The client security settings of a `--command-config` file (None: PLAINTEXT). Keys that
    Kafka's clients would not know are reported on stderr, as Kafka's clients log them; a file
    that cannot be read or a value that cannot be used is a ClientError naming it (exit 1)."""
    if not path:
        return None
    where = f"--command-config {path}" + (
        f" (from ${COMMAND_CONFIG_ENV})" if isinstance(path, FromEnvironment) else "")
    try:
        properties = read_properties(path)
        security = ClientSecurity(properties)
    except SecurityConfigError as e:
        raise ClientError(f"{where}: {e}") from None
    for key in security.unknown:
        print(f"Warning: The configuration '{key}' was supplied but isn't a known config "
              f"({where})", file=sys.stderr)
    return None if security.is_plaintext else security


def open_client(args) -> KafkaClient:
    return KafkaClient(args.bootstrap_server, timeout=args.request_timeout_ms / 1000,
                       security=client_security(getattr(args, "command_config", None)))


def fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1


def run(args) -> int:
    """Run a tool's command: Kafka's and the connection's failures become a message and exit 1."""
    try:
        return args.run(args)
    except UsageError as e:
        parser = getattr(args, "command_parser", None)    # the command's, as argparse's errors
        if parser is not None:
            parser.print_usage(sys.stderr)
        prog = parser.prog if parser is not None else f"trioka {args.command}"
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (KafkaError, ClientError) as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours. Point stdout at /dev/null so
        # that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def print_table(header: list[str], rows: list[list], out=None) -> None:
    """Columns padded to their widest cell, as Kafka's tools print them."""
    out = out or sys.stdout
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        out.write(" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


class UsageError(Exception):
    """Flags that do not make sense together: reported like argparse's errors, exit 2."""


def name_arg(p: argparse.ArgumentParser, what: str, flag: str, *, metavar: str = "NAME") -> None:
    """A positional name that may also be given with a Kafka tool's flag (`--topic NAME`)."""
    p.add_argument("name", nargs="?", metavar=metavar, help=what)
    p.add_argument(flag, dest="name_flag", metavar=metavar, help=f"the same as {metavar}")
    p.set_defaults(name_flag_text=flag)


def resolve_name(args, *, required: bool = True) -> str | None:
    if args.name and args.name_flag and args.name != args.name_flag:
        raise UsageError(f"two different names given: {args.name!r} and {args.name_flag!r}")
    name = args.name or args.name_flag
    if required and not name:
        raise UsageError(f"a name is required (positional or {args.name_flag_text})")
    return name


def key_value(text: str, what: str = "KEY=VALUE") -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return key, value
