"""`trioka topic`: create, list, describe, delete topics and change their configs.

    trioka topic create NAME [--partitions N] [--replication-factor N] [--config k=v ...]
                             [--if-not-exists]
    trioka topic list [--exclude-internal]
    trioka topic describe [NAME] [--exclude-internal]
    trioka topic delete NAME [--if-exists]
    trioka topic alter-config NAME [--add-config k=v[,k=v]] [--delete-config k[,k]]
    trioka topic alter NAME --partitions N
    trioka topic trim NAME (--partition P | --all-partitions) --offset O
    trioka topic offsets NAME [--partition P] [--time MS|earliest|latest|max-timestamp]

The names of kafka-topics.sh (`--topic NAME` works as well as the positional name) and, for
alter-config, of kafka-configs.sh. CreateTopics without a partition count or replication factor
lets the broker use its defaults (`num.partitions`, `default.replication.factor`). `describe` prints
what kafka-topics.sh --describe prints: a line per topic (id, partition count, replication factor,
the configs whose value is not Kafka's default) and a line per partition (leader, replicas, ISR).
alter-config uses IncrementalAlterConfigs: SET for each added key, DELETE for each deleted key.

`alter --partitions N` is kafka-topics.sh --alter: CreatePartitions raises the count (Kafka never
lowers it; the broker refuses with INVALID_PARTITIONS). `trim` is kafka-delete-records.sh:
DeleteRecords moves each partition's log start offset up to O (-1: the high watermark), and the
records before it can no longer be read. `offsets` prints per partition the log start offset
(ListOffsets earliest), the high watermark (latest) and the last stable offset (latest in
read_committed: where an open transaction starts); `--time` adds the offset of the first record
at or after that time (kafka-get-offsets.sh's --time) and that record's timestamp.
"""

import argparse
import base64
import sys

from trioka.cli import UsageError, connection_args, key_value, name_arg, open_client, resolve_name
from trioka.cli.client.cluster import (DELETE_CONFIG, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
                                       READ_COMMITTED, READ_UNCOMMITTED, SET_CONFIG,
                                       TOPIC_RESOURCE)
from trioka.wire.errors import ErrorCode, KafkaError

# DescribeConfigs' config_source for a value that is Kafka's default.
DEFAULT_CONFIG_SOURCE = 5


def add_parser(sub) -> None:
    p = sub.add_parser("topic", aliases=["topics"],
                       help="create, list, describe, alter, trim, delete topics, their offsets",
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

    al = actions.add_parser("alter", help="add partitions to a topic (CreatePartitions)")
    name_arg(al, "the topic", "--topic")
    al.add_argument("--partitions", type=int, required=True, metavar="N",
                    help="the new partition count (Kafka only ever raises it)")
    al.set_defaults(run=alter)

    tr = actions.add_parser("trim", help="delete records before an offset (DeleteRecords)")
    name_arg(tr, "the topic", "--topic")
    which = tr.add_mutually_exclusive_group(required=True)
    which.add_argument("--partition", "-p", type=int, metavar="P", help="the partition")
    which.add_argument("--all-partitions", action="store_true", help="every partition")
    tr.add_argument("--offset", "-o", type=int, required=True, metavar="O",
                    help="the new log start offset; -1: the high watermark (delete all)")
    tr.set_defaults(run=trim)

    o = actions.add_parser("offsets", help="log start, high watermark and last stable offset "
                                           "of each partition (ListOffsets)")
    name_arg(o, "the topic", "--topic")
    o.add_argument("--time", type=offset_time, metavar="MS|earliest|latest|max-timestamp",
                   help="also the offset of the first record at or after this time")
    o.add_argument("--partition", "-p", type=int, metavar="P", help="only this partition")
    o.set_defaults(run=offsets)

    for q in (c, ls, d, rm, a, al, tr, o):
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


def alter_configs(args, resource_type: int, name: str, word: str) -> int:
    """kafka-configs.sh --alter: `--add-config` and `--delete-config` of one resource, as one
    IncrementalAlterConfigs (`trioka topic alter-config` and `trioka config alter`)."""
    sets = parse_add_config(args.add_config)
    deletes = [k for text in args.delete_config for k in split_config_list(text)]
    if not sets and not deletes:
        raise UsageError("nothing to change: give --add-config and/or --delete-config")
    ops = [(k, SET_CONFIG, v) for k, v in sets] + [(k, DELETE_CONFIG, None) for k in deletes]
    with open_client(args) as client:
        client.incremental_alter_configs(resource_type, name, ops)
    print(f"Completed updating config for {word} {name}.")
    return 0


def alter_config(args) -> int:
    return alter_configs(args, TOPIC_RESOURCE, resolve_name(args), "topic")


# ListOffsets' max-timestamp (KIP-734, v7+): the offset of the record with the largest timestamp.
MAX_TIMESTAMP = -3
NAMED_TIMES = {"earliest": EARLIEST_TIMESTAMP, "latest": LATEST_TIMESTAMP,
               "max-timestamp": MAX_TIMESTAMP}


def offset_time(text: str) -> int:
    """`--time`: earliest, latest, max-timestamp, or milliseconds since the epoch (Kafka's -2,
    -1 and -3 too, as kafka-get-offsets.sh takes them)."""
    named = NAMED_TIMES.get(text.strip().lower())
    if named is not None:
        return named
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: earliest, latest, max-timestamp or milliseconds") from None
    if value < MAX_TIMESTAMP:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: a negative time is -1 "
                                         "(latest), -2 (earliest) or -3 (max-timestamp)")
    return value


def alter(args) -> int:
    name = resolve_name(args)
    if args.partitions < 1:
        raise UsageError("The partitions must be greater than 0")
    with open_client(args) as client:
        client.create_partitions(name, args.partitions)
    return 0


def partitions_of(client, name: str, partition: int | None) -> list[int]:
    """The partitions a command names: one (checked to exist) or all of the topic's."""
    info = client.topic(name)
    if partition is None:
        return sorted(info.partitions)
    if partition not in info.partitions:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"topic {name!r} has no partition {partition} (it has "
                         f"{len(info.partitions)})")
    return [partition]


def trim(args) -> int:
    """kafka-delete-records.sh: the log start offset moves up to the offset; what is before it
    can no longer be read."""
    name = resolve_name(args)
    if args.offset < -1:
        raise UsageError(f"--offset {args.offset}: an offset, or -1 for the high watermark")
    with open_client(args) as client:
        parts = partitions_of(client, name, None if args.all_partitions else args.partition)
        print("Executing records delete operation")
        low = client.delete_records({(name, p): args.offset for p in parts})
    print("Records delete operation completed:")
    for (topic, p), watermark in sorted(low.items()):
        print(f"partition: {topic}-{p}\tlow_watermark: {watermark}")
    return 0


def offsets_table(name: str, parts: list[int], start: dict, end: dict, stable: dict,
                  at_time: dict | None) -> tuple[list[str], list[list]]:
    """The header and rows of `topic offsets`: each partition's offsets, and the offset at the
    asked time ("-" when no record is at or after it)."""
    header = ["TOPIC", "PARTITION", "LOG-START-OFFSET", "HIGH-WATERMARK", "LAST-STABLE-OFFSET"]
    if at_time is not None:
        header += ["OFFSET-AT-TIME", "TIMESTAMP"]
    rows = []
    for p in parts:
        row = [name, p, start[p], end[p], stable[p]]
        if at_time is not None:
            offset, timestamp = at_time[p]
            row += ["-", "-"] if offset < 0 else [offset, "-" if timestamp < 0 else timestamp]
        rows.append(row)
    return header, rows


def offsets(args) -> int:
    """Per partition, ListOffsets earliest (the log start offset), latest in read_uncommitted
    (the high watermark) and latest in read_committed (the last stable offset: the first offset
    of a transaction still open), and with --time the offset at that time."""
    from trioka.cli import print_table
    name = resolve_name(args)
    with open_client(args) as client:
        parts = partitions_of(client, name, args.partition)

        def ask(timestamp: int, isolation: int = READ_UNCOMMITTED) -> dict:
            answers = client.list_offsets({(name, p): timestamp for p in parts},
                                          isolation_level=isolation)
            return {p: answers[(name, p)] for p in parts}

        start = {p: o for p, (o, _) in ask(EARLIEST_TIMESTAMP).items()}
        end = {p: o for p, (o, _) in ask(LATEST_TIMESTAMP).items()}
        stable = {p: o for p, (o, _) in ask(LATEST_TIMESTAMP, READ_COMMITTED).items()}
        at_time = None if args.time is None else ask(args.time)
    print_table(*offsets_table(name, parts, start, end, stable, at_time))
    return 0
