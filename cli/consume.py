"""`trioka consume TOPIC`: print records, as kafka-console-consumer.sh does.

    trioka consume TOPIC [TOPIC ...] | --include REGEX
                         [--from-beginning | --offset SPEC | --timestamp MS]
                         [--partition N | -p N] [--max-messages N | --count N | -c N]
                         [--timeout-ms MS] [--exit-at-end | -e] [--group G | -G G]
                         [--isolation-level read_committed|read_uncommitted]
                         [--format value|kv|json | -f FMT] [--property KEY=VALUE ...]

Topics: one or more names (positional, or `--topic` repeated), or `--include REGEX`: every topic
whose whole name matches the Java-style regular expression (kafka-console-consumer.sh's
`--include`), internal topics (`__consumer_offsets`, ...) left out.

`--offset` / `-o` takes kcat's forms: `beginning` (also `earliest`), `end` (also `latest`), `stored`
(the group's committed offset, needs `--group`), an absolute offset N, `-N` (N records before the
end of each partition, never before its start) or `s@MS` (the first record at or after that
timestamp, as `--timestamp MS`).

Where it starts, per partition: `--offset` (a number, or earliest / latest) or `--timestamp` (the
first offset whose record is at or after that time, by ListOffsets; the end when there is none)
when given; else the group's committed offset with `--group`; else the end of the partition, or
its beginning with `--from-beginning`. An offset that has gone out of range moves the same way
(Kafka's auto.offset.reset: latest, or earliest with --from-beginning). Without `--partition`
every partition of the topic is read; `--offset N` then starts each of them at N.

`--group G` makes it a member of consumer group G: it joins with JoinGroup / SyncGroup as the
"range" assignor's member (sharing the topic's partitions with the group's other consumers, of any
client), heartbeats between fetches, rejoins when the group rebalances, commits the offsets after
the records it printed every 5 seconds, on rebalance and on exit, and leaves the group on exit.
With `--partition` as well it does not join: it reads that partition and commits as a standalone
consumer (OffsetCommit with generation -1), which Kafka accepts only while the group has no members.

It stops after `--max-messages` records, when no record came for `--timeout-ms`, at the end of
every partition with `--exit-at-end` (the high watermark; the last stable offset in
read_committed), or on Ctrl-C; then prints "Processed a total of N messages" to stderr. In
read_committed (`--isolation-level`) records of aborted transactions are skipped and open
transactions are waited for; transaction markers are never printed in either level.

Formats: `value` (default) prints each value on a line ("null" for a null value); `kv` prints key
TAB value; `json` prints one JSON object per record with topic, partition, offset, timestamp,
timestamp_type (CreateTime / LogAppendTime), key, value and headers ([{"key", "value"}]): bytes
that are valid UTF-8 as text, other bytes as base64 with `"<field>_encoding": "base64"` beside
them; null stays null. With `value`, Kafka's formatter properties apply: print.key, print.value,
print.timestamp, print.partition, print.offset, print.headers, key.separator, line.separator,
headers.separator, headers.key.separator, null.literal. `-f FMT` prints each record through kcat's
format string instead, byte for byte as kcat does (`%t %p %o %k %K %s %S %R %T %h %%`, escapes
`\\n \\r \\t \\\\ \\xNN`; a null key or value prints empty, its length -1).
"""

import base64
import contextlib
import json
import re
import sys
import time

from trioka.cli import UsageError, connection_args, key_value, open_client
from trioka.cli.client.cluster import (EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, READ_COMMITTED,
                                       READ_UNCOMMITTED)
from trioka.cli.client.connection import ClientError, raise_for
from trioka.cli.client.group_member import GroupMember, RebalanceNeeded
from trioka.wire.errors import ErrorCode, KafkaError

AUTO_COMMIT_INTERVAL = 5.0   # Kafka's auto.commit.interval.ms default
FETCH_WAIT_MS = 500

_FORMATTER_PROPERTIES = {"print.key", "print.value", "print.timestamp", "print.partition",
                         "print.offset", "print.headers", "key.separator", "line.separator",
                         "headers.separator", "headers.key.separator", "null.literal"}


def add_parser(sub) -> None:
    p = sub.add_parser("consume", help="print records of a topic",
                       description="Records of a topic on standard output, as "
                                   "kafka-console-consumer.sh prints them.")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="the topics")
    p.add_argument("--topic", "-t", dest="topic_flags", action="append", default=[],
                   metavar="TOPIC", help="a topic (repeatable), the same as TOPIC")
    p.add_argument("--include", metavar="REGEX",
                   help="every topic whose whole name matches this regular expression")
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the beginning when there is no committed offset")
    p.add_argument("--offset", "-o", metavar="SPEC",
                   help="where to start in every partition: beginning|end|stored|N|-N|s@MS")
    p.add_argument("--timestamp", type=int, metavar="MS",
                   help="start at the first record at or after this time (ms since the epoch)")
    p.add_argument("--partition", "-p", type=int, metavar="N", help="read only this partition")
    p.add_argument("--max-messages", "--count", "-c", dest="max_messages", type=int,
                   metavar="N", help="stop after N records (-1: no limit)")
    p.add_argument("--timeout-ms", type=int, metavar="MS",
                   help="stop when no record arrived for this long")
    p.add_argument("--exit-at-end", "-e", action="store_true",
                   help="stop at the end of every partition")
    p.add_argument("--group", "-G", metavar="GROUP",
                   help="consume as a member of this consumer group, committing offsets")
    p.add_argument("--isolation-level", choices=["read_uncommitted", "read_committed"],
                   default="read_uncommitted",
                   help="read_committed skips aborted transactions (default read_uncommitted)")
    p.add_argument("--format", choices=["value", "kv", "json"], default="value",
                   help="value (default), kv (key TAB value) or json (one object a line)")
    p.add_argument("-f", dest="kcat_format", metavar="FMT",
                   help="kcat's format string, e.g. '%%t [%%p] at %%o: %%k %%s\\n'")
    p.add_argument("--property", action="append", default=[], type=key_value,
                   metavar="KEY=VALUE",
                   help="Kafka's console formatter properties, e.g. print.key=true")
    p.add_argument("--print-offsets", action="store_true",
                   help="print each record's partition and offset before it (the same as "
                        "--property print.partition=true --property print.offset=true)")
    connection_args(p)
    p.set_defaults(run=run)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _text_or_base64(obj: dict, name: str, data) -> None:
    """obj[name] = the bytes as text when they are UTF-8, else base64 with a marker beside."""
    if data is None:
        obj[name] = None
        return
    if isinstance(data, str):   # header keys: str, odd bytes kept as surrogate escapes
        data = data.encode("utf-8", "surrogateescape")
    try:
        obj[name] = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        obj[name] = base64.b64encode(bytes(data)).decode("ascii")
        obj[name + "_encoding"] = "base64"


def record_json(rec) -> dict:
    out = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
           "timestamp": rec.timestamp, "timestamp_type": rec.timestamp_type}
    _text_or_base64(out, "key", rec.key)
    _text_or_base64(out, "value", rec.value)
    headers = []
    for hkey, hvalue in rec.headers:
        h: dict = {}
        _text_or_base64(h, "key", hkey)
        _text_or_base64(h, "value", hvalue)
        headers.append(h)
    out["headers"] = headers
    return out


class Formatter:
    """Turns a record into the bytes printed for it."""

    def __init__(self, fmt: str, properties: list[tuple[str, str]]):
        props = dict(properties)
        unknown = set(props) - _FORMATTER_PROPERTIES
        if unknown:
            raise UsageError(f"unsupported --property keys: {', '.join(sorted(unknown))}")
        if fmt != "value" and props:
            raise UsageError("--property applies to --format value only")
        self.format = fmt

        def flag(name: str, default: bool) -> bool:
            return props.get(name, str(default)).lower() == "true"

        self.print_key = flag("print.key", fmt == "kv")
        self.print_value = flag("print.value", True)
        self.print_timestamp = flag("print.timestamp", False)
        self.print_partition = flag("print.partition", False)
        self.print_offset = flag("print.offset", False)
        self.print_headers = flag("print.headers", False)
        self.key_separator = props.get("key.separator", "\t").encode()
        self.line_separator = props.get("line.separator", "\n").encode()
        self.headers_separator = props.get("headers.separator", ",").encode()
        self.headers_key_separator = props.get("headers.key.separator", ":").encode()
        self.null = props.get("null.literal", "null").encode()

    def format_record(self, rec) -> bytes:
        if self.format == "json":
            return json.dumps(record_json(rec), ensure_ascii=False).encode() + b"\n"
        fields = []
        if self.print_timestamp:
            ts = b"NO_TIMESTAMP" if rec.timestamp < 0 else (
                f"{rec.timestamp_type}:{rec.timestamp}".encode())
            fields.append(ts)
        if self.print_partition:
            fields.append(f"Partition:{rec.partition}".encode())
        if self.print_offset:
            fields.append(f"Offset:{rec.offset}".encode())
        if self.print_headers:
            if rec.headers:
                fields.append(self.headers_separator.join(
                    k.encode("utf-8", "surrogateescape") + self.headers_key_separator
                    + (self.null if v is None else bytes(v)) for k, v in rec.headers))
            else:
                fields.append(b"NO_HEADERS")
        if self.print_key:
            fields.append(self.null if rec.key is None else bytes(rec.key))
        if self.print_value:
            fields.append(self.null if rec.value is None else bytes(rec.value))
        return self.key_separator.join(fields) + self.line_separator


# kcat's -f tokens: the field each prints (a key or value length is -1 for null).
_KCAT_TOKENS = {
    "s": lambda r: b"" if r.value is None else bytes(r.value),
    "S": lambda r: b"-1" if r.value is None else str(len(r.value)).encode(),
    "R": lambda r: (-1 if r.value is None else len(r.value)).to_bytes(4, "big", signed=True),
    "k": lambda r: b"" if r.key is None else bytes(r.key),
    "K": lambda r: b"-1" if r.key is None else str(len(r.key)).encode(),
    "T": lambda r: str(r.timestamp).encode(),
    "h": lambda r: b",".join(k.encode("utf-8", "surrogateescape") + b"="
                             + (b"" if v is None else bytes(v)) for k, v in r.headers),
    "t": lambda r: r.topic.encode(),
    "p": lambda r: str(r.partition).encode(),
    "o": lambda r: str(r.offset).encode(),
}
_KCAT_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}


def parse_kcat_format(fmt: str) -> list:
    """kcat's `-f` string -> a list of literal bytes and token functions. `%%` is a percent
    sign; `\\n \\r \\t \\\\` and `\\xNN` are escapes, as kcat reads them."""
    parts: list = []
    literal = bytearray()
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            token = fmt[i + 1]
            if token == "%":
                literal += b"%"
            elif token in _KCAT_TOKENS:
                if literal:
                    parts.append(bytes(literal))
                    literal = bytearray()
                parts.append(_KCAT_TOKENS[token])
            else:
                raise UsageError(f"-f: unsupported token %{token}")
            i += 2
        elif c == "\\" and i + 1 < len(fmt):
            e = fmt[i + 1]
            if e in _KCAT_ESCAPES:
                literal += _KCAT_ESCAPES[e]
                i += 2
            elif e == "x":
                digits = re.match(r"[0-9a-fA-F]{1,2}", fmt[i + 2:])
                if digits is None:
                    raise UsageError(f"-f: \\x needs hex digits in {fmt!r}")
                literal.append(int(digits.group(), 16))
                i += 2 + len(digits.group())
            else:
                literal += c.encode()
                i += 1
        else:
            literal += c.encode()
            i += 1
    if literal:
        parts.append(bytes(literal))
    return parts


class KcatFormatter:
    """`-f FMT`: each record printed through kcat's format string (no line end added)."""

    def __init__(self, fmt: str):
        self.parts = parse_kcat_format(fmt)

    def format_record(self, rec) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p(rec) for p in self.parts)


# --------------------------------------------------------------------------------------------
# Where to start
# --------------------------------------------------------------------------------------------

# What `--offset` asks for: kind, and its number where it has one.
OFFSET_EARLIEST, OFFSET_LATEST, OFFSET_STORED = "earliest", "latest", "stored"
OFFSET_ABSOLUTE, OFFSET_FROM_END, OFFSET_TIMESTAMP = "absolute", "from-end", "timestamp"
_OFFSET_WORDS = {"beginning": OFFSET_EARLIEST, "earliest": OFFSET_EARLIEST,
                 "end": OFFSET_LATEST, "latest": OFFSET_LATEST, "stored": OFFSET_STORED}


def parse_offset_spec(text: str) -> tuple[str, int | None]:
    """kcat's `-o` forms (and kafka-console-consumer's earliest/latest) -> (kind, number)."""
    word = _OFFSET_WORDS.get(text)
    if word is not None:
        return word, None
    try:
        if text.startswith("s@"):
            ts = int(text[2:])
            if ts < 0:
                raise ValueError
            return OFFSET_TIMESTAMP, ts
        n = int(text)
    except ValueError:
        raise UsageError(f"--offset {text!r}: expected beginning, end, stored, an offset N, "
                         f"-N (N before the end) or s@MS (a timestamp)") from None
    if text.startswith("-"):
        return OFFSET_FROM_END, -n
    return OFFSET_ABSOLUTE, n


def start_offset(kind: str, n: int | None, earliest: int, latest: int) -> int:
    """Where a partition is read from for an absolute or end-relative `--offset`."""
    if kind == OFFSET_FROM_END:
        return max(earliest, latest - n)
    return n


# --------------------------------------------------------------------------------------------
# Consuming
# --------------------------------------------------------------------------------------------

class Interrupts:
    """SIGINT (Ctrl-C) as KeyboardInterrupt, except inside `deferred()`, where it is held until
    the block ends: printing a record and counting it as consumed happen together or not at all."""

    def __init__(self):
        self._deferring = False
        self._pending = False
        self._previous = None

    def __enter__(self) -> "Interrupts":
        import signal
        self._previous = signal.signal(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        import signal
        signal.signal(signal.SIGINT, self._previous)

    def _on_signal(self, signum, frame) -> None:
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending:
            raise KeyboardInterrupt


class ConsoleConsumer:
    def __init__(self, client, topics: list[str], args):
        self.interrupts = Interrupts()
        self.client = client
        self.topics = topics
        self.args = args
        self.isolation = (READ_COMMITTED if args.isolation_level == "read_committed"
                          else READ_UNCOMMITTED)
        self.reset_to = EARLIEST_TIMESTAMP if args.from_beginning else LATEST_TIMESTAMP
        self.positions: dict[tuple[str, int], int] = {}   # next offset to fetch
        self.consumed: dict[tuple[str, int], int] = {}    # after the last record handed out
        self.committed: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self.member: GroupMember | None = None
        self.count = 0
        self._next_commit = time.monotonic() + AUTO_COMMIT_INTERVAL
        if args.offset is not None and args.timestamp is not None:
            raise UsageError("give --offset or --timestamp, not both")
        self.offset_kind, self.offset_n = (None, None) if args.offset is None else (
            parse_offset_spec(args.offset))
        if self.offset_kind == OFFSET_TIMESTAMP:
            self.offset_kind, self.timestamp = None, self.offset_n
        else:
            self.timestamp = args.timestamp
        if self.offset_kind == OFFSET_STORED:
            if not args.group:
                raise UsageError("--offset stored needs --group")
            self.offset_kind = None     # the committed offset is where a member starts anyway

    # -- assignment and starting points --

    def start(self) -> None:
        infos = {t: self.client.topic(t, auto_create=False) for t in self.topics}
        if self.args.partition is not None:
            for topic, info in infos.items():
                if self.args.partition not in info.partitions:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                     f"topic {topic!r} has no partition {self.args.partition}")
            self.assign([(t, self.args.partition) for t in self.topics])
        elif self.args.group:
            self.member = GroupMember(self.client, self.args.group, list(self.topics))
            self.assign(self.member.join())
        else:
            self.assign([(t, p) for t in self.topics for p in sorted(infos[t].partitions)])

    def assign(self, tps: list[tuple[str, int]]) -> None:
        """Start positions for newly assigned partitions, in the order the module doc gives."""
        self.positions, self.consumed, self.ends = {}, {}, {}
        if not tps:
            return
        committed = {}
        if self.args.group:
            committed = {tp: o for tp, o in self.client.offset_fetch(self.args.group, tps).items()
                         if o >= 0}
        self.committed = dict(committed)
        specs: dict[tuple[str, int], int] = {}
        kind = self.offset_kind
        if kind in (OFFSET_ABSOLUTE, OFFSET_FROM_END):
            bounds = {when: self.client.list_offsets({tp: when for tp in tps},
                                                     isolation_level=self.isolation)
                      for when in (EARLIEST_TIMESTAMP, LATEST_TIMESTAMP)} if (
                kind == OFFSET_FROM_END) else None
        for tp in tps:
            if self.timestamp is not None:
                specs[tp] = self.timestamp
            elif kind == OFFSET_EARLIEST:
                specs[tp] = EARLIEST_TIMESTAMP
            elif kind == OFFSET_LATEST:
                specs[tp] = LATEST_TIMESTAMP
            elif kind == OFFSET_ABSOLUTE:
                self.positions[tp] = self.offset_n
            elif kind == OFFSET_FROM_END:
                self.positions[tp] = start_offset(kind, self.offset_n,
                                                  bounds[EARLIEST_TIMESTAMP][tp][0],
                                                  bounds[LATEST_TIMESTAMP][tp][0])
            elif tp in committed:
                self.positions[tp] = committed[tp]
            else:
                specs[tp] = self.reset_to
        if specs:
            found = self.client.list_offsets(specs, isolation_level=self.isolation)
            missing = {tp: LATEST_TIMESTAMP for tp, (o, _) in found.items() if o < 0}
            if missing:   # no record at or after the timestamp: start at the end
                found.update(self.client.list_offsets(missing, isolation_level=self.isolation))
            for tp, (offset, _) in found.items():
                self.positions[tp] = offset
        self.consumed = dict(self.positions)

    def _reset(self, tp) -> None:
        offset, _ = self.client.list_offsets({tp: self.reset_to},
                                             isolation_level=self.isolation)[tp]
        print(f"Offset {self.positions[tp]} of {tp[0]}-{tp[1]} is out of range; starting at "
              f"{offset}", file=sys.stderr)
        self.positions[tp] = self.consumed[tp] = offset

    # -- commits --

    def commit(self) -> None:
        if not self.args.group:
            return
        changed = {tp: o for tp, o in self.consumed.items() if self.committed.get(tp) != o}
        if not changed:
            return
        if self.member is not None:
            self.member.commit(changed)
        else:
            self.client.offset_commit(self.args.group, changed)
        self.committed.update(changed)

    def _rejoin(self) -> None:
        try:
            self.commit()
        except KafkaError as e:   # the generation may be over already; the records come again
            print(f"Committing before the rebalance failed: {e}", file=sys.stderr)
        self.assign(self.member.join())

    # -- the loop --

    def run(self, formatter: Formatter, out) -> None:
        args = self.args
        limit = args.max_messages
        if limit is not None and limit < 0:     # Kafka's tools: -1 (any negative) is no limit
            limit = None
        idle = None if args.timeout_ms is None else args.timeout_ms / 1000
        last_record = time.monotonic()
        self.start()
        while limit is None or self.count < limit:
            now = time.monotonic()
            if idle is not None and now - last_record >= idle:
                return
            if self.member is not None:
                try:
                    self.member.heartbeat_if_due()
                except RebalanceNeeded:
                    self._rejoin()
                    continue
            wait_ms = FETCH_WAIT_MS
            if idle is not None:
                wait_ms = max(0, min(wait_ms, int((idle - (now - last_record)) * 1000)))
            if not self.positions:
                # Nothing assigned (more members than partitions): only keep the membership.
                time.sleep(wait_ms / 1000 if wait_ms else 0.05)
                continue
            fetched = self.client.fetch(self.positions, max_wait_ms=wait_ms,
                                        isolation_level=self.isolation)
            chunks, moved, count, stale = [], {}, self.count, False
            for tp in sorted(fetched):
                part = fetched[tp]
                if part.error == ErrorCode.OFFSET_OUT_OF_RANGE:
                    self._reset(tp)
                    continue
                if part.error in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.LEADER_NOT_AVAILABLE,
                                  ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.FENCED_LEADER_EPOCH,
                                  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                    stale = True   # the client asks Metadata again on the next fetch
                    continue
                raise_for(part.error, what=f"Fetch {tp[0]}-{tp[1]}")
                self.ends[tp] = (part.last_stable_offset if self.isolation == READ_COMMITTED
                                 else part.high_watermark)
                position, cut = self.consumed[tp], False
                for rec in part.records:
                    if limit is not None and count >= limit:
                        cut = True
                        break
                    chunks.append(formatter.format_record(rec))
                    position = rec.offset + 1
                    count += 1
                if part.records:
                    last_record = time.monotonic()
                moved[tp] = position if cut else max(position, part.next_offset)
            # Only what reached the output counts as consumed (and is committed); a Ctrl-C
            # while it is written takes effect once the bookkeeping is done.
            with self.interrupts.deferred():
                if chunks:
                    out.write(b"".join(chunks))
                    out.flush()
                self.count = count
                self.consumed.update(moved)
                self.positions.update(moved)
            if stale:
                time.sleep(0.1)   # back off before asking the new leader
            if args.exit_at_end and len(self.ends) == len(self.positions) and all(
                    self.positions[tp] >= end for tp, end in self.ends.items()):
                return
            if self.args.group and time.monotonic() >= self._next_commit:
                self._next_commit = time.monotonic() + AUTO_COMMIT_INTERVAL
                try:
                    self.commit()
                except KafkaError as e:
                    if self.member is None:
                        raise
                    print(f"Commit failed, rejoining the group: {e}", file=sys.stderr)
                    self._rejoin()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            if self.member is not None:
                self.member.leave()


def include_topics(names, pattern: str) -> list[str]:
    """The topics whose whole name matches `--include`, internal ones left out."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise UsageError(f"--include {pattern!r} is not a regular expression: {e}") from None
    return sorted(n for n in names if regex.fullmatch(n) and not n.startswith("__"))


def run(args) -> int:
    topics = list(dict.fromkeys(list(args.topics) + list(args.topic_flags)))
    if bool(topics) == bool(args.include):
        raise UsageError("name the topics (TOPIC or --topic) or give --include REGEX")
    if args.kcat_format is not None:
        if args.format != "value" or args.property or args.print_offsets:
            raise UsageError("-f replaces --format, --property and --print-offsets; give one "
                             "of them")
        formatter = KcatFormatter(args.kcat_format)
    else:
        properties = list(args.property)
        if args.print_offsets and args.format != "value":
            raise UsageError("--print-offsets applies to --format value only (json has both)")
        if args.print_offsets:
            properties += [("print.partition", "true"), ("print.offset", "true")]
        formatter = Formatter(args.format, properties)
    out = sys.stdout.buffer
    with open_client(args) as client:
        if args.include:
            topics = include_topics(client.metadata(None), args.include)
            if not topics:
                print(f"Error: no topic matches --include {args.include!r}", file=sys.stderr)
                return 1
        consumer = ConsoleConsumer(client, topics, args)
        interrupted = False
        try:
            with consumer.interrupts:
                consumer.run(formatter, out)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            try:
                consumer.close()
            except (KafkaError, ClientError) as e:
                print(f"Error: committing offsets failed: {e}", file=sys.stderr)
                if not interrupted:
                    raise
    print(f"Processed a total of {consumer.count} messages", file=sys.stderr)
    return 0
