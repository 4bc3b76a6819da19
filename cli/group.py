"""`trioka group`: consumer groups and their offsets, as kafka-consumer-groups.sh shows them.

    trioka group list [--state]
    trioka group describe (GROUP | --all-groups) [--offsets | --members [--verbose] | --state]
    trioka group delete GROUP [GROUP ...]
    trioka group delete-offsets GROUP --topic T[:P,P...] ...
    trioka group reset-offsets GROUP (--topic T[:P,P...] ... | --all-topics | --from-file CSV)
                               (--to-earliest | --to-latest | --to-current | --to-offset N |
                                --shift-by N | --to-datetime ISO | --to-timestamp MS |
                                --by-duration PnDTnHnMnS | --from-file CSV)
                               [--dry-run | --execute] [--export]

`groups` is the same command (kafka-consumer-groups.sh's name).

`--group G` works as well as the positional GROUP. `describe` prints one row per partition the
group's members are assigned or the group has committed: GROUP, TOPIC, PARTITION, CURRENT-OFFSET
(the committed offset, "-" when none), LOG-END-OFFSET (the high watermark), LAG (their difference),
CONSUMER-ID, HOST, CLIENT-ID ("-" for a partition with a committed offset and no member), and a
row for each member that has no partition. Members' partitions come from their assignment bytes in
DescribeGroups (the consumer protocol's ConsumerProtocolAssignment, v0-3), so only groups of
protocol type "consumer" show them. `--offsets` is that view (the default); `--members` prints
one row per member: GROUP, CONSUMER-ID, HOST, CLIENT-ID, #PARTITIONS (and ASSIGNMENT, as
`topic(0,1)`, with `--verbose`); `--state` one row per group: GROUP, COORDINATOR (ID) as
`host:port (id)`, ASSIGNMENT-STRATEGY, STATE, #MEMBERS. `--all-groups` describes every group
ListGroups finds, one after the other.

`delete-offsets` removes a group's committed offsets of the partitions named (OffsetDelete,
KIP-496; a topic without partitions names all of them). Kafka refuses a group that does not exist
(GROUP_ID_NOT_FOUND) and, partition by partition, topics the group's members are subscribed to
(GROUP_SUBSCRIBED_TO_TOPIC); the result is a TOPIC, PARTITION, STATUS table.

`reset-offsets` computes the new offset of each partition (--to-offset is kept within the
partition's earliest and latest offsets; --to-datetime takes ISO 8601, a time without a zone being
local time; a time after the last record moves to the end) and prints the plan: GROUP, TOPIC,
PARTITION, NEW-OFFSET. Only with `--execute` are the offsets committed (OffsetCommit with generation
-1), and only when the group is inactive (Empty or unknown); Kafka refuses otherwise.
`--to-current` keeps the committed offset (the end where there is none); `--by-duration` takes a
Java Duration (`P1DT2H`, `PT30M`, `PT0.5S`) and moves to the first offset at or after now minus
it. `--export` prints the plan as kafka-consumer-groups.sh's CSV, `topic,partition,offset` a line,
which `--from-file` reads back (those partitions, those offsets; a `group,` column first, as
Kafka writes for several groups, is accepted when it names this group).
"""

import csv
import datetime
import re
import sys
import time

from trioka.cli import UsageError, connection_args, fail, name_arg, open_client, print_table
from trioka.cli.client.cluster import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from trioka.cli.client.consumer_protocol import CONSUMER_PROTOCOL_TYPE, decode_assignment
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.types import DecodeError

DESCRIBE_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                    "CONSUMER-ID", "HOST", "CLIENT-ID"]
INACTIVE_STATES = ("Empty", "Dead")


def add_parser(sub) -> None:
    p = sub.add_parser("group", aliases=["groups"],
                       help="list, describe, delete consumer groups, reset offsets",
                       description="Consumer groups, as kafka-consumer-groups.sh manages them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="list the groups")
    ls.add_argument("--state", action="store_true", help="show each group's state too")
    ls.set_defaults(run=list_groups)

    d = actions.add_parser("describe", help="partitions, offsets, lag and members of a group")
    name_arg(d, "the group", "--group", metavar="GROUP")
    d.add_argument("--all-groups", action="store_true", help="describe every group")
    view = d.add_mutually_exclusive_group()
    view.add_argument("--offsets", dest="view", action="store_const", const="offsets",
                      help="partitions, committed offsets and lag (the default)")
    view.add_argument("--members", dest="view", action="store_const", const="members",
                      help="the group's members")
    view.add_argument("--state", dest="view", action="store_const", const="state",
                      help="the group's coordinator, assignor, state and member count")
    d.add_argument("--verbose", action="store_true",
                   help="with --members: each member's assigned partitions too")
    d.set_defaults(run=describe, view="offsets")

    do = actions.add_parser("delete-offsets", help="delete a group's committed offsets")
    name_arg(do, "the group", "--group", metavar="GROUP")
    do.add_argument("--topic", action="append", default=[], metavar="TOPIC[:P,P...]",
                    help="a topic, all of its partitions or the listed ones (repeatable)")
    do.set_defaults(run=delete_offsets)

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
    to.add_argument("--to-current", action="store_true",
                    help="the committed offset (the end where there is none)")
    to.add_argument("--by-duration", metavar="PnDTnHnMnS",
                    help="the first offset at or after now minus this duration")
    to.add_argument("--from-file", metavar="CSV",
                    help="the offsets of a CSV file (topic,partition,offset), as --export "
                         "writes it")
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
    r.add_argument("--export", action="store_true",
                   help="print the plan as CSV (topic,partition,offset) for --from-file")
    r.set_defaults(run=reset_offsets)

    for q in (ls, d, do, rm, r):
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
    if args.all_groups and (args.name or args.name_flag):
        raise UsageError("give a group or --all-groups, not both")
    if args.verbose and args.view != "members":
        raise UsageError("--verbose goes with --members")
    with open_client(args) as client:
        if args.all_groups:
            groups = sorted(g.group_id for g in client.list_groups())
        else:
            groups = [_group_name(args)]
        status = 0
        for i, group in enumerate(groups):
            if i:
                print()
            status = max(status, describe_one(client, group, args))
    return status


def describe_one(client, group: str, args) -> int:
    """Print one group in the view `args.view` asks for; 1 when the group does not exist."""
    described = client.describe_group(group)
    members = described.members
    assigned = member_partitions(described)
    strategy = described.protocol_data or "-"
    if described.group_state == "Dead":
        # DescribeGroups knows only classic groups: a KIP-848 group is described by
        # ConsumerGroupDescribe, whose members carry their assignment by topic name.
        consumer_group = client.describe_consumer_group(group)
        if consumer_group is not None:
            described = consumer_group
            members = consumer_group.members
            strategy = consumer_group.assignor_name
            assigned = {(t.topic_name, p): m for m in members
                        for t in m.assignment.topic_partitions for p in t.partitions}
    committed = {tp: o for tp, o in client.offset_fetch(group).items() if o >= 0}
    if described.group_state == "Dead" and not committed:
        return fail(f"Consumer group '{group}' does not exist.")
    if described.group_state in ("PreparingRebalance", "CompletingRebalance", "Reconciling",
                                 "Assigning"):
        print(f"Warning: Consumer group '{group}' is rebalancing.", file=sys.stderr)
    elif not members and args.view != "state":
        print(f"Consumer group '{group}' has no active members.", file=sys.stderr)
    if args.view == "state":
        node, host, port = client.coordinator_node(group)
        print_table(["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"],
                    [[group, f"{host}:{port} ({node})", strategy, described.group_state,
                      len(members)]])
        return 0
    if args.view == "members":
        print_members(group, members, assigned, verbose=args.verbose)
        return 0
    tps = sorted(set(assigned) | set(committed))
    ends = _log_end_offsets(client, tps)
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


def assignment_text(tps) -> str:
    """Kafka's ASSIGNMENT column: `topic(0,1),other(2)`, "-" for none."""
    by_topic: dict[str, list[int]] = {}
    for t, p in sorted(tps):
        by_topic.setdefault(t, []).append(p)
    return ",".join(f"{t}({','.join(map(str, ps))})" for t, ps in by_topic.items()) or "-"


def print_members(group: str, members, assigned: dict, *, verbose: bool) -> None:
    of_member: dict[int, list] = {id(m): [] for m in members}
    for tp, m in assigned.items():
        of_member.setdefault(id(m), []).append(tp)
    header = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"]
    rows = []
    for m in sorted(members, key=lambda m: m.member_id):
        row = [group, m.member_id, m.client_host, m.client_id, len(of_member[id(m)])]
        if verbose:
            row.append(assignment_text(of_member[id(m)]))
        rows.append(row)
    print_table(header + (["ASSIGNMENT"] if verbose else []), rows)


def _partitions(client, specs: list[str]) -> list[tuple[str, int]]:
    """The partitions `--topic T[:P,...]` flags name (all of T's without a list)."""
    tps = []
    for spec in specs:
        topic, parts = parse_topic_spec(spec)
        info = client.topic(topic)
        for p in parts if parts is not None else sorted(info.partitions):
            if p not in info.partitions:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"topic '{topic}' has no partition {p}")
            tps.append((topic, p))
    return tps


def delete_offsets(args) -> int:
    group = _group_name(args)
    if not args.topic:
        raise UsageError("name the offsets to delete with --topic (one or more)")
    with open_client(args) as client:
        tps = _partitions(client, args.topic)
        try:
            results = client.offset_delete(group, tps)
        except KafkaError as e:
            if e.code == ErrorCode.GROUP_ID_NOT_FOUND:
                return fail(f"Consumer group '{group}' does not exist.")
            raise
    failed = any(results.values())
    topics = ", ".join(dict.fromkeys(t for t, _ in tps))
    print(f"Request {'failed' if failed else 'succeed'} for deleting offsets with topic "
          f"{topics} group {group}", file=sys.stderr if failed else sys.stdout)
    print_table(["TOPIC", "PARTITION", "STATUS"],
                [[t, p, "Successful" if not code else f"Error: {ErrorCode(code).name}"]
                 for (t, p), code in sorted(results.items())])
    return 1 if failed else 0


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


_DURATION = re.compile(r"([-+]?)P(?:([-+]?\d+)D)?(?:T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?"
                       r"(?:([-+]?\d+)(?:[.,](\d{0,9}))?S)?)?", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """A Java Duration (ISO 8601's PnDTnHnMn.nS, as Duration.parse reads it) -> milliseconds."""
    m = _DURATION.fullmatch(text)
    if m is None or text.upper().endswith("T") or not any(m.group(i) for i in range(2, 6)):
        raise UsageError(f"--by-duration {text!r} is not a duration such as P1DT2H30M or PT15M")
    sign, days, hours, minutes, seconds, fraction = m.groups()
    secs = int(seconds or 0)
    ms = (int(days or 0) * 86_400_000 + int(hours or 0) * 3_600_000 + int(minutes or 0) * 60_000
          + secs * 1000)
    if fraction:
        frac_ms = int((fraction + "000")[:3])
        ms += -frac_ms if (seconds or "").startswith("-") else frac_ms
    return -ms if sign == "-" else ms


def parse_offsets_csv(text: str, group: str, source: str) -> dict[tuple[str, int], int]:
    """kafka-consumer-groups.sh's export: `topic,partition,offset` lines, or
    `group,topic,partition,offset` (several groups); the rows of other groups are left out."""
    plan = {}
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) == 4:
            if row[0] != group:
                continue
            row = row[1:]
        try:
            if len(row) != 3:
                raise ValueError
            topic, partition, offset = row[0], int(row[1]), int(row[2])
        except ValueError:
            raise UsageError(f"{source} line {n}: expected topic,partition,offset") from None
        plan[(topic, partition)] = offset
    return plan


def export_csv(plan: dict[tuple[str, int], int], out=None) -> None:
    out = out or sys.stdout
    for (t, p) in sorted(plan):
        out.write(f"{t},{p},{plan[(t, p)]}\n")


def reset_offsets(args) -> int:
    group = _group_name(args)
    from_file = None
    if args.from_file is not None:
        if args.topic or args.all_topics:
            raise UsageError("--from-file names the partitions; give no --topic or --all-topics")
        try:
            with open(args.from_file, encoding="utf-8") as f:
                from_file = parse_offsets_csv(f.read(), group, args.from_file)
        except OSError as e:
            raise UsageError(f"--from-file {args.from_file}: {e.strerror or e}") from None
    elif bool(args.topic) == bool(args.all_topics):
        raise UsageError("give --topic (one or more) or --all-topics")
    if args.by_duration is not None:
        to_time = int(time.time() * 1000) - parse_duration(args.by_duration)
    elif args.to_datetime is not None:
        to_time = parse_datetime(args.to_datetime)
    else:
        to_time = args.to_timestamp
    with open_client(args) as client:
        described = client.describe_group(group)
        if described.group_state not in INACTIVE_STATES:
            return fail(f"Assignments can only be reset if the group '{group}' is inactive, but "
                        f"the current state is {described.group_state}.")
        committed = {tp: o for tp, o in client.offset_fetch(group).items() if o >= 0}
        if from_file is not None:
            tps = sorted(from_file)
        elif args.all_topics:
            tps = sorted(committed)
        else:
            tps = _partitions(client, args.topic)
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
            elif args.to_current:
                plan[tp] = committed.get(tp, latest[tp])
            elif from_file is not None:
                plan[tp] = from_file[tp]
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
    if args.export:
        export_csv(plan)
    else:
        print_table(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
                    [[group, t, p, plan[(t, p)]] for t, p in sorted(plan)])
    if not args.execute:
        print("Dry run: nothing was committed; add --execute to commit these offsets.",
              file=sys.stderr)
    return 0
