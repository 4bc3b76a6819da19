"""`trioka topic`: create, list, describe, delete topics and change their configs.

    trioka topic create NAME [--partitions N] [--replication-factor N] [--config k=v ...]
                             [--if-not-exists]
    trioka topic list [--exclude-internal]
    trioka topic describe [NAME] [--exclude-internal]
    trioka topic delete NAME [--if-exists]
    trioka topic alter-config NAME [--add-config k=v[,k=v]] [--delete-config k[,k]]

The names of kafka-topics.sh (`--topic NAME` works as well as the positional name) and, for
alter-config, of kafka-configs.sh. CreateTopics without a partition count or replication factor
lets the broker use its defaults (`num.partitions`, `default.replication.factor`). `describe` prints
what kafka-topics.sh --describe prints: a line per topic (id, partition count, replication factor,
the configs whose value is not Kafka's default) and a line per partition (leader, replicas, ISR).
alter-config uses IncrementalAlterConfigs: SET for each added key, DELETE for each deleted key.
"""

import base64
import sys

from trioka.cli import UsageError, connection_args, key_value, name_arg, open_client, resolve_name
from trioka.cli.client.cluster import DELETE_CONFIG, SET_CONFIG, TOPIC_RESOURCE
from trioka.wire.errors import ErrorCode, KafkaError

# DescribeConfigs' config_source for a value that is Kafka's default.
DEFAULT_CONFIG_SOURCE = 5


def add_parser(sub) -> None:
    p = sub.add_parser("topic", help="create, list, describe, delete topics, alter their configs",
                       description="Topics, as kafka-topics.sh manages them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = actions.add_parser("create", help="create a topic")
    name_arg(c, "the topic", "--topic")
    c.add_argument("--partitions", type=int, metavar="N",
                   help="partition count (default: the broker's num.partitions)")
    c.add_argument("--replication-factor", type=int, metavar="N",
                   help="replicas per partition (default: the broker's "
                        "default.replication.factor)")
    c.add_argument("--config", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="a topic config (repeatable)")
    c.add_argument("--if-not-exists", action="store_true",
                   help="succeed quietly when the topic exists")
    c.set_defaults(run=create)

    ls = actions.add_parser("list", help="list topic names")
    ls.add_argument("--exclude-internal", action="store_true",
                    help="leave out internal topics (__consumer_offsets, ...)")
    ls.set_defaults(run=list_topics)

    d = actions.add_parser("describe", help="partitions, leaders, replicas, ISR and configs")
    name_arg(d, "the topic (default: every topic)", "--topic")
    d.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")
    d.set_defaults(run=describe)

    rm = actions.add_parser("delete", help="delete a topic")
    name_arg(rm, "the topic", "--topic")
    rm.add_argument("--if-exists", action="store_true",
                    help="succeed quietly when the topic does not exist")
    rm.set_defaults(run=delete)

    a = actions.add_parser("alter-config", help="set or delete topic configs "
                                                "(IncrementalAlterConfigs)")
    name_arg(a, "the topic", "--topic")
    a.add_argument("--add-config", action="append", default=[], metavar="K=V[,K=V]",
                   help="configs to set; a list value goes in brackets: k=[a,b] (repeatable)")
    a.add_argument("--delete-config", action="append", default=[], metavar="K[,K]",
                   help="configs to remove, back to their defaults (repeatable)")
    a.set_defaults(run=alter_config)

    for q in (c, ls, d, rm, a):
        connection_args(q)


def topic_id_text(topic_id) -> str:
    """Kafka writes a topic id as URL-safe base64 of its 16 bytes, without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode()


def create(args) -> int:
    name = resolve_name(args)
    # kafka-topics.sh's checks and words; unset, -1 asks for the broker's defaults (KIP-464).
    if args.partitions is not None and args.partitions < 1:
        raise UsageError("The partitions must be greater than 0")
    if args.replication_factor is not None and not 1 <= args.replication_factor <= 32767:
        raise UsageError("The replication factor must be between 1 and 32767")
    with open_client(args) as client:
        try:
            client.create_topic(name, partitions=-1 if args.partitions is None
                                else args.partitions,
                                replication_factor=-1 if args.replication_factor is None
                                else args.replication_factor,
                                configs=dict(args.config))
        except KafkaError as e:
            if args.if_not_exists and e.code == ErrorCode.TOPIC_ALREADY_EXISTS:
                return 0
            raise
    print(f"Created topic {name}.")
    return 0


def list_topics(args) -> int:
    with open_client(args) as client:
        topics = client.metadata(None)
    for name in sorted(topics):
        if args.exclude_internal and topics[name].is_internal:
            continue
        print(name)
    return 0


def describe(args) -> int:
    name = resolve_name(args, required=False)
    with open_client(args) as client:
        topics = client.metadata(None if name is None else [name])
        if name is not None:
            info = topics.get(name)
            if info is None or info.error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic '{name}' does not exist")
        out = []
        for topic in sorted(topics):
            info = topics[topic]
            if args.exclude_internal and info.is_internal:
                continue
            if info.error:
                raise KafkaError(info.error, f"topic {topic!r}: {ErrorCode(info.error).name}")
            configs = [c for c in client.describe_configs(TOPIC_RESOURCE, topic)
                       if c.config_source != DEFAULT_CONFIG_SOURCE and c.config_source != -1]
            parts = [info.partitions[p] for p in sorted(info.partitions)]
            replication = len(parts[0].replicas) if parts else 0
            config_text = ",".join(f"{c.name}={'' if c.value is None else c.value}"
                                   for c in sorted(configs, key=lambda c: c.name))
            out.append(f"Topic: {topic}\tTopicId: {topic_id_text(info.topic_id)}\t"
                       f"PartitionCount: {len(parts)}\tReplicationFactor: {replication}\t"
                       f"Configs: {config_text}")
            for p in parts:
                leader = "none" if p.leader < 0 else p.leader
                out.append(f"\tTopic: {topic}\tPartition: {p.partition}\tLeader: {leader}\t"
                           f"Replicas: {','.join(map(str, p.replicas))}\t"
                           f"Isr: {','.join(map(str, p.isr))}")
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


def delete(args) -> int:
    name = resolve_name(args)
    with open_client(args) as client:
        try:
            client.delete_topic(name)
        except KafkaError as e:
            if args.if_exists and e.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                return 0
            raise
    return 0


def split_config_list(text: str) -> list[str]:
    """Split kafka-configs.sh's `k1=v1,k2=[a,b]` on the commas outside brackets."""
    items, depth, current = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def parse_add_config(texts: list[str]) -> list[tuple[str, str]]:
    out = []
    for text in texts:
        for item in split_config_list(text):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--add-config {item!r} is not KEY=VALUE")
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                value = value[1:-1]   # Kafka's list values are comma-separated inside
            out.append((key.strip(), value))
    return out


def alter_config(args) -> int:
    name = resolve_name(args)
    sets = parse_add_config(args.add_config)
    deletes = [k for text in args.delete_config for k in split_config_list(text)]
    if not sets and not deletes:
        raise UsageError("nothing to change: give --add-config and/or --delete-config")
    ops = [(k, SET_CONFIG, v) for k, v in sets] + [(k, DELETE_CONFIG, None) for k in deletes]
    with open_client(args) as client:
        client.incremental_alter_configs(TOPIC_RESOURCE, name, ops)
    print(f"Completed updating config for topic {name}.")
    return 0
