"""`trioka config`: describe and change the configs of a topic, a broker or a group, as
kafka-configs.sh does (DescribeConfigs, IncrementalAlterConfigs).

    trioka config describe (--topic T | --broker ID | --group G) [--all]
    trioka config alter    (--topic T | --broker ID | --group G)
                           [--add-config k=v[,k=v]] [--delete-config k[,k]]

kafka-configs.sh's `--entity-type topics|brokers|groups --entity-name NAME` name the resource as
well. `describe` prints what kafka-configs.sh --describe prints:

    Dynamic configs for topic orders are:
      retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000}

Without `--all` only the configs set on the resource itself are listed, as kafka-configs.sh lists
them: a topic's DYNAMIC_TOPIC_CONFIG, a broker's DYNAMIC_BROKER_CONFIG, a group's GROUP_CONFIG.
`--all` lists every config ("All configs for ... are:"), the synonyms showing where each value
comes from (DEFAULT_CONFIG, STATIC_BROKER_CONFIG, ...). A sensitive value prints as null.
`alter` sends SET for each added key and DELETE for each deleted one (back to its default), then
prints "Completed updating config for topic orders.".
"""

from trioka.cli import UsageError, connection_args, open_client
from trioka.cli.client.cluster import BROKER_RESOURCE, GROUP_RESOURCE, TOPIC_RESOURCE
from trioka.cli.topic import alter_configs

# kafka-configs.sh's --entity-type values (plural, as Kafka writes them; the singular is taken
# too), with the resource type of DescribeConfigs and the word the tool prints.
ENTITY_TYPES = {"topics": (TOPIC_RESOURCE, "topic"), "brokers": (BROKER_RESOURCE, "broker"),
                "groups": (GROUP_RESOURCE, "group")}

# DescribeConfigs' config_source, by Kafka's names (ConfigEntry.ConfigSource).
CONFIG_SOURCES = {0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
                  3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG",
                  5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG",
                  7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}

# The source of a config set on the resource itself: what kafka-configs.sh lists without --all.
OWN_SOURCE = {TOPIC_RESOURCE: 1, BROKER_RESOURCE: 2, GROUP_RESOURCE: 8}


def add_parser(sub) -> None:
    p = sub.add_parser("config", aliases=["configs"],
                       help="describe or alter the configs of a topic, broker or group",
                       description="Configs, as kafka-configs.sh describes and alters them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser("describe", help="the configs set on a resource (--all: every one)")
    d.add_argument("--all", action="store_true",
                   help="every config with its synonyms and sources, not only those set")
    d.set_defaults(run=describe)
    a = actions.add_parser("alter", help="set or delete configs (IncrementalAlterConfigs)")
    a.add_argument("--add-config", action="append", default=[], metavar="K=V[,K=V]",
                   help="configs to set; a list value goes in brackets: k=[a,b] (repeatable)")
    a.add_argument("--delete-config", action="append", default=[], metavar="K[,K]",
                   help="configs to remove, back to their defaults (repeatable)")
    a.set_defaults(run=alter)
    for q in (d, a):
        q.add_argument("--topic", help="a topic's configs")
        q.add_argument("--broker", metavar="ID", help="a broker's configs (its node id)")
        q.add_argument("--group", help="a consumer group's configs (KIP-848)")
        q.add_argument("--entity-type", choices=sorted(ENTITY_TYPES) + ["topic", "broker",
                                                                       "group"],
                       help="kafka-configs.sh's way: topics, brokers or groups")
        q.add_argument("--entity-name", metavar="NAME", help="with --entity-type: the name")
        connection_args(q)


def resource(args) -> tuple[int, str, str]:
    """(resource type, name, the word for it) from the flags; UsageError unless exactly one."""
    given = [(t, n) for t, n in (("topics", args.topic), ("brokers", args.broker),
                                 ("groups", args.group)) if n is not None]
    if args.entity_type is not None or args.entity_name is not None:
        if args.entity_type is None or args.entity_name is None:
            raise UsageError("--entity-type and --entity-name go together")
        kind = args.entity_type if args.entity_type.endswith("s") else args.entity_type + "s"
        given.append((kind, args.entity_name))
    if len(given) != 1:
        raise UsageError("name exactly one of --topic, --broker, --group "
                         "(or --entity-type and --entity-name)")
    kind, name = given[0]
    resource_type, word = ENTITY_TYPES[kind]
    if resource_type == BROKER_RESOURCE and not name.isdigit():
        raise UsageError(f"--broker {name!r}: a broker is named by its node id")
    if not name:
        raise UsageError(f"an empty {word} name")
    return resource_type, name, word


def config_lines(configs, resource_type: int, describe_all: bool) -> list[str]:
    """kafka-configs.sh's lines: `  name=value sensitive=false synonyms={SOURCE:name=value}`."""
    own = OWN_SOURCE[resource_type]
    out = []
    for c in sorted(configs, key=lambda c: c.name):
        if not describe_all and c.config_source != own:
            continue
        value = "null" if c.is_sensitive or c.value is None else c.value
        synonyms = ", ".join(
            f"{CONFIG_SOURCES.get(s.source, 'UNKNOWN')}:{s.name}="
            f"{'null' if c.is_sensitive or s.value is None else s.value}"
            for s in c.synonyms or ())
        out.append(f"  {c.name}={value} sensitive={str(bool(c.is_sensitive)).lower()} "
                   f"synonyms={{{synonyms}}}")
    return out


def describe(args) -> int:
    resource_type, name, word = resource(args)
    with open_client(args) as client:
        configs = client.describe_configs(resource_type, name, include_synonyms=True)
    print(f"{'All' if args.all else 'Dynamic'} configs for {word} {name} are:")
    for line in config_lines(configs, resource_type, args.all):
        print(line)
    return 0


def alter(args) -> int:
    return alter_configs(args, *resource(args))
