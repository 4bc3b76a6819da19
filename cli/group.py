"""`trioka group`: consumer groups and their offsets, as kafka-consumer-groups.sh shows them.

    trioka group list [--state]
    trioka group describe GROUP
    trioka group delete GROUP [GROUP ...]
    trioka group reset-offsets GROUP (--topic T[:P,P...] ... | --all-topics)
                               (--to-earliest | --to-latest | --to-offset N | --shift-by N |
                                --to-datetime ISO | --to-timestamp MS) [--dry-run | --execute]

`--group G` works as well as the positional GROUP. `describe` prints one row per partition the
group's members are assigned or the group has committed: GROUP, TOPIC, PARTITION, CURRENT-OFFSET
(the committed offset, "-" when none), LOG-END-OFFSET (the high watermark), LAG (their difference),
CONSUMER-ID, HOST, CLIENT-ID ("-" for a partition with a committed offset and no member), and a
row for each member that has no partition. Members' partitions come from their assignment bytes in
DescribeGroups (the consumer protocol's ConsumerProtocolAssignment, v0-3), so only groups of
protocol type "consumer" show them.

`reset-offsets` computes the new offset of each partition (--to-offset is kept within the
partition's earliest and latest offsets; --to-datetime takes ISO 8601, a time without a zone being
local time; a time after the last record moves to the end) and prints the plan: GROUP, TOPIC,
PARTITION, NEW-OFFSET. Only with `--execute` are the offsets committed (OffsetCommit with generation
-1), and only when the group is inactive (Empty or unknown); Kafka refuses otherwise.
"""

import datetime
import sys

from trioka.cli import UsageError, connection_args, fail, name_arg, open_client, print_table
from trioka.cli.client.cluster import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from trioka.cli.client.consumer_protocol import CONSUMER_PROTOCOL_TYPE, decode_assignment
from trioka.wire.errors import ErrorCode
from trioka.wire.types import DecodeError

DESCRIBE_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                    "CONSUMER-ID", "HOST", "CLIENT-ID"]
INACTIVE_STATES = ("Empty", "Dead")


def add_parser(sub) -> None:
    p = sub.add_parser("group", help="list, describe, delete consumer groups, reset offsets",
                       description="Consumer groups, as kafka-consumer-groups.sh manages them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="list the groups")
    ls.add_argument("--state", action="store_true", help="show each group's state too")
    ls.set_defaults(run=list_groups)

    d = actions.add_parser("describe", help="partitions, offsets, lag and members of a group")
    name_arg(d, "the group", "--group", metavar="GROUP")
    d.set_defaults(run=describe)

    rm = actions.add_parser("delete", help="delete inactive groups and their offsets")
    rm.add_argument("names", nargs="*", metavar="GROUP", help="the groups")
    rm.add_argument("--group", dest="group_flags", action="append", default=[], metavar="GROUP",
                    help="a group (repeatable)")
    rm.set_defaults(run=delete)

    r = actions.add_parser("reset-offsets", help="move a group's committed offsets")
    name_arg(r, "the group", "--group", metavar="GROUP")
    r.add_argument("--topic", action="append", default=[], metavar="TOPIC[:P,P...]",
                   help="a topic, all of its partitions or the listed ones (repeatable)")
    r.add_argument("--all-topics", action="store_true",
                   help="every partition the group has committed")
    to = r.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the earliest offset")
    to.add_argument("--to-latest", action="store_true", help="the latest offset (the end)")
    to.add_argument("--to-offset", type=int, metavar="N", help="this offset")
    to.add_argument("--shift-by", type=int, metavar="N",
                    help="the committed offset plus N (minus with N < 0)")
    to.add_argument("--to-datetime", metavar="ISO",
                    help="the first offset at or after this time, e.g. 2024-05-01T12:00:00.000")
    to.add_argument("--to-timestamp", type=int, metavar="MS",
                    help="the first offset at or after this time in ms since the epoch")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    mode.add_argument("--dry-run", action="store_true", help="only print them (the default)")
    r.set_defaults(run=reset_offsets)

    for q in (ls, d, rm, r):
        connection_args(q)


def _group_name(args) -> str:
    from trioka.cli import resolve_name
    return resolve_name(args)


def list_groups(args) -> int:
    with open_client(args) as client:
        groups = sorted(client.list_groups(), key=lambda g: g.group_id)
    if args.state:
        print_table(["GROUP", "STATE"], [[g.group_id, g.group_state or "-"] for g in groups])
    else:
        for g in groups:
            print(g.group_id)
    return 0


def member_partitions(described) -> dict[tuple[str, int], object]:
    """(topic, partition) -> the member assigned it, from the members' assignment bytes."""
    out = {}
    if described.protocol_type != CONSUMER_PROTOCOL_TYPE:
        return out
    for m in described.members:
        try:
            tps = decode_assignment(m.member_assignment)
        except DecodeError:
            continue
        for tp in tps:
            out[tp] = m
    return out


def describe(args) -> int:
    group = _group_name(args)
    with open_client(args) as client:
        described = client.describe_group(group)
        members = described.members
        assigned = member_partitions(described)
        if described.group_state == "Dead":
            # DescribeGroups knows only classic groups: a KIP-848 group is described by
            # ConsumerGroupDescribe, whose members carry their assignment by topic name.
            consumer_group = client.describe_consumer_group(group)
            if consumer_group is not None:
                described = consumer_group
                members = consumer_group.members
                assigned = {(t.topic_name, p): m for m in members
                            for t in m.assignment.topic_partitions for p in t.partitions}
        committed = {tp: o for tp, o in client.offset_fetch(group).items() if o >= 0}
        if described.group_state == "Dead" and not committed:
            return fail(f"Consumer group '{group}' does not exist.")
        tps = sorted(set(assigned) | set(committed))
        ends = _log_end_offsets(client, tps)
    if described.group_state in ("PreparingRebalance", "CompletingRebalance", "Reconciling",
                                 "Assigning"):
        print(f"Warning: Consumer group '{group}' is rebalancing.", file=sys.stderr)
    elif not members:
        print(f"Consumer group '{group}' has no active members.", file=sys.stderr)
    rows = []
    for tp in tps:
        current = committed.get(tp)
        end = ends.get(tp)
        lag = "-" if current is None or end is None else max(0, end - current)
        m = assigned.get(tp)
        rows.append([group, tp[0], tp[1], "-" if current is None else current,
                     "-" if end is None else end, lag,
                     m.member_id if m else "-", m.client_host if m else "-",
                     m.client_id if m else "-"])
    with_partitions = {id(m) for m in assigned.values()}
    for m in sorted(members, key=lambda m: m.member_id):
        if id(m) not in with_partitions:
            rows.append([group, "-", "-", "-", "-", "-", m.member_id, m.client_host,
                         m.client_id])
    print_table(DESCRIBE_COLUMNS, rows)
    return 0


def _log_end_offsets(client, tps) -> dict:
    """High watermarks of the partitions that still exist (a deleted topic's have none)."""
    existing = []
    topics = client.metadata(sorted({t for t, _ in tps})) if tps else {}
    for topic, p in tps:
        info = topics.get(topic)
        if info is not None and info.error == 0 and p in info.partitions:
            existing.append((topic, p))
    if not existing:
        return {}
    found = client.list_offsets({tp: LATEST_TIMESTAMP for tp in existing})
    return {tp: offset for tp, (offset, _) in found.items()}


def delete(args) -> int:
    groups = list(dict.fromkeys(list(args.names) + list(args.group_flags)))
    if not groups:
        raise UsageError("name at least one group")
    with open_client(args) as client:
        results = client.delete_groups(groups)
    failed = {g: c for g, c in results.items() if c}
    if failed:
        print("Error: Deletion of some consumer groups failed:", file=sys.stderr)
        for g, code in failed.items():
            print(f"* Group '{g}' could not be deleted due to: {ErrorCode(code).name}",
                  file=sys.stderr)
        return 1
    names = ", ".join(f"'{g}'" for g in groups)
    print(f"Deletion of requested consumer groups ({names}) was successful.")
    return 0


def parse_topic_spec(spec: str) -> tuple[str, list[int] | None]:
    """`topic` or `topic:0,1,2`."""
    topic, sep, parts = spec.partition(":")
    if not topic:
        raise UsageError(f"--topic {spec!r}: no topic name")
    if not sep:
        return topic, None
    try:
        return topic, sorted({int(p) for p in parts.split(",") if p.strip()})
    except ValueError:
        raise UsageError(f"--topic {spec!r}: partitions must be numbers") from None


def parse_datetime(text: str) -> int:
    """ISO 8601 -> ms since the epoch; without a zone it is local time."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--to-datetime {text!r} is not an ISO 8601 time such as "
                         f"2024-05-01T12:00:00.000") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def reset_offsets(args) -> int:
    group = _group_name(args)
    if bool(args.topic) == bool(args.all_topics):
        raise UsageError("give --topic (one or more) or --all-topics")
    to_time = (parse_datetime(args.to_datetime) if args.to_datetime is not None
               else args.to_timestamp)
    with open_client(args) as client:
        described = client.describe_group(group)
        if described.group_state not in INACTIVE_STATES:
            return fail(f"Assignments can only be reset if the group '{group}' is inactive, but "
                        f"the current state is {described.group_state}.")
        committed = {tp: o for tp, o in client.offset_fetch(group).items() if o >= 0}
        if args.all_topics:
            tps = sorted(committed)
        else:
            tps = []
            for spec in args.topic:
                topic, parts = parse_topic_spec(spec)
                info = client.topic(topic)
                for p in parts if parts is not None else sorted(info.partitions):
                    if p not in info.partitions:
                        return fail(f"topic '{topic}' has no partition {p}")
                    tps.append((topic, p))
        earliest = {tp: o for tp, (o, _) in
                    client.list_offsets({tp: EARLIEST_TIMESTAMP for tp in tps}).items()}
        latest = {tp: o for tp, (o, _) in
                  client.list_offsets({tp: LATEST_TIMESTAMP for tp in tps}).items()}
        plan = {}
        if to_time is not None:
            found = client.list_offsets({tp: to_time for tp in tps})
            plan = {tp: (o if o >= 0 else latest[tp]) for tp, (o, _) in found.items()}
        for tp in tps:
            if args.to_earliest:
                plan[tp] = earliest[tp]
            elif args.to_latest:
                plan[tp] = latest[tp]
            elif args.to_offset is not None:
                plan[tp] = args.to_offset
            elif args.shift_by is not None:
                if tp not in committed:
                    return fail(f"--shift-by: group '{group}' has no committed offset for "
                                f"{tp[0]}-{tp[1]}")
                plan[tp] = committed[tp] + args.shift_by
            plan[tp] = min(max(plan[tp], earliest[tp]), latest[tp])
        if args.execute and plan:
            client.offset_commit(group, plan)
    print_table(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
                [[group, t, p, plan[(t, p)]] for t, p in sorted(plan)])
    if not args.execute:
        print("Dry run: nothing was committed; add --execute to commit these offsets.",
              file=sys.stderr)
    return 0
