"""`trioka quota`: client quotas, as `kafka-configs.sh --entity-type users|clients` manages
them, over AlterClientQuotas and DescribeClientQuotas (KIP-546), so it works against any Kafka
cluster.

    trioka quota set [--user NAME | --user-default] [--client-id ID | --client-default]
                     [--add-config producer_byte_rate=1048576,request_percentage=25]
                     [--delete-config consumer_byte_rate]
    trioka quota describe [--user NAME | --user-default] [--client-id ID | --client-default]

An entity is a user, a client id, or both; `--user-default` / `--client-default` name the
default entity (kafka-configs' `--entity-default`, shown as <default>). `describe` without an
entity lists every quota; with one it lists the entities matching it (a user filter also matches
that user's client-id entities, as kafka-configs does not but DescribeClientQuotas does).
It prints Entity, Key, Value.
"""

from trioka.cli import UsageError, connection_args, open_client, print_table
from trioka.cli.client.connection import raise_for
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

MATCH_EXACT, MATCH_DEFAULT = 0, 1


def add_parser(sub) -> None:
    p = sub.add_parser("quota", help="set and describe client quotas",
                       description="Client quotas of users and client ids, over "
                                   "AlterClientQuotas and DescribeClientQuotas.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("set", help="add, change or delete quota keys of an entity")
    s.add_argument("--add-config", default="", metavar="KEY=VALUE[,KEY=VALUE]",
                   help="quotas to set (producer_byte_rate, consumer_byte_rate, "
                        "request_percentage, controller_mutation_rate)")
    s.add_argument("--delete-config", default="", metavar="KEY[,KEY]",
                   help="quotas to remove")
    s.set_defaults(run=set_quotas)
    d = actions.add_parser("describe", help="list client quotas")
    d.set_defaults(run=describe)
    for q in (s, d):
        q.add_argument("--user", metavar="NAME", help="the user (principal name)")
        q.add_argument("--user-default", action="store_true", help="the default user")
        q.add_argument("--client-id", metavar="ID", help="the client id")
        q.add_argument("--client-default", action="store_true", help="the default client id")
        connection_args(q)


def _entity(args) -> list[tuple[str, str | None]]:
    """The (entity_type, name) pairs the flags name; a default's name is None."""
    out = []
    if args.user is not None and args.user_default:
        raise UsageError("--user and --user-default cannot be given together")
    if args.client_id is not None and args.client_default:
        raise UsageError("--client-id and --client-default cannot be given together")
    if args.user is not None or args.user_default:
        out.append(("user", args.user))
    if args.client_id is not None or args.client_default:
        out.append(("client-id", args.client_id))
    return out


def _ops(args, Request) -> list:
    ops = []
    for item in filter(None, (x.strip() for x in args.add_config.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--add-config: {item!r} is not KEY=VALUE")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"--add-config: the value of {key} must be a number, "
                             f"not {value!r}") from None
        ops.append(Request.EntryData.OpData(key=key.strip(), value=number, remove=False))
    for key in filter(None, (x.strip() for x in args.delete_config.split(","))):
        ops.append(Request.EntryData.OpData(key=key, value=0.0, remove=True))
    return ops


def _shown(entity) -> str:
    return ", ".join(f"{e.entity_type}={'<default>' if e.entity_name is None else e.entity_name}"
                     for e in entity)


def set_quotas(args) -> int:
    entity = _entity(args)
    if not entity:
        raise UsageError("name an entity: --user, --user-default, --client-id or "
                         "--client-default")
    Request = protocol.request_class(ApiKey.ALTER_CLIENT_QUOTAS)
    ops = _ops(args, Request)
    if not ops:
        raise UsageError("nothing to change: give --add-config or --delete-config")
    with open_client(args) as client:
        response = client.controller().call(ApiKey.ALTER_CLIENT_QUOTAS, Request(
            entries=[Request.EntryData(
                entity=[Request.EntryData.EntityData(entity_type=t, entity_name=n)
                        for t, n in entity], ops=ops)],
            validate_only=False))
    for result in response.entries:
        raise_for(result.error_code, result.error_message, what=_shown(result.entity))
    print(f"Completed updating quotas for {_shown(response.entries[0].entity)}")
    return 0


def describe(args) -> int:
    Request = protocol.request_class(ApiKey.DESCRIBE_CLIENT_QUOTAS)
    components = [Request.ComponentData(entity_type=t,
                                        match_type=MATCH_DEFAULT if n is None else MATCH_EXACT,
                                        match=n)
                  for t, n in _entity(args)]
    with open_client(args) as client:
        response = client.any_connection().call(
            ApiKey.DESCRIBE_CLIENT_QUOTAS, Request(components=components, strict=False))
    raise_for(response.error_code, response.error_message, what="DescribeClientQuotas")
    rows = []
    for entry in response.entries or []:
        for v in entry.values:
            value = int(v.value) if v.value == int(v.value) else v.value
            rows.append([_shown(entry.entity), v.key, value])
    print_table(["Entity", "Key", "Value"], rows)
    return 0
