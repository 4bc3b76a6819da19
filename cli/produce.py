"""`trioka produce TOPIC`: one record per line of standard input, as kafka-console-producer.sh.

    trioka produce TOPIC [--parse-key] [--key-separator SEP | -K SEP] [--key KEY | -k KEY]
                         [--header K=V | -H K=V ...] [--format line|json] [--file FILE | -f FILE]
                         [--partition N | -p N] [--compression CODEC | -z CODEC] [--acks ACKS]
                         [--null-value-marker TEXT] [--property KEY=VALUE ...] [--batch-size BYTES]
                         [--timeout-ms MS] [--progress]

Each line (without its line ending) is a record value, sent with CreateTime = now. With
`--parse-key` (Kafka's `parse.key=true`) the line is split at the first key separator (a TAB unless
`--key-separator` says otherwise; `--key-separator` and kcat's `-K` turn key parsing on by
themselves) into key and value; a line without the separator is an error, as in Kafka. Headers
given with `--header` go on every record. A line equal to `--null-value-marker` produces a null
value (a tombstone). The Kafka producer's `--property` keys parse.key, key.separator and null.marker
(which applies to keys and values) are understood too. `--key` (kcat's `-k`) gives every record
the same key. `--file` reads the lines from a file instead of standard input.

`--format json` reads one JSON object a line, the mirror of `trioka consume --format json`: `key`,
`value` (text, or base64 with `"key_encoding": "base64"` / `"value_encoding": "base64"` beside
it; null or absent: null), `headers` (`[{"key", "value"}]` with the same encodings, or an object
{key: value}), `partition` and `timestamp` (CreateTime ms; absent or null: now). The consumer's
`topic`, `offset` and `timestamp_type` are ignored, so its output can be sent to another topic. A
line that is not such an object stops the producer, as a line without the key separator does;
blank lines are skipped.

With `--progress`, or when stderr is a terminal, a line on stderr every second tells how many
records and bytes have been sent and the rate, and a last one at the end.

Partitioning: `--partition` sends everything there; otherwise a keyed record goes where Kafka's Java
producer puts it (murmur2 of the key), and records without a key fill one partition per batch, the
next batch going to the next partition. Lines are gathered into one record batch per partition
while more input is waiting (up to `--batch-size` bytes), then sent and acknowledged before more is
read. Nothing is printed on success; a refused batch prints the broker's error and exits 1.
"""

import base64
import binascii
import json
import os
import select
import sys
import time

from trioka.cli import UsageError, connection_args, key_value, name_arg, open_client, resolve_name
from trioka.cli.client.connection import ClientError
from trioka.cli.client.partitioner import partition_for_key
from trioka.log.compression import CompressionType

CODECS = {c.name_in_config: int(c) for c in CompressionType}


def add_parser(sub) -> None:
    p = sub.add_parser("produce", help="send lines of standard input as records",
                       description="Records from standard input, one per line, as "
                                   "kafka-console-producer.sh sends them.")
    name_arg(p, "the topic", "--topic", metavar="TOPIC")
    p.add_argument("--parse-key", action="store_true",
                   help="split each line into key and value at the key separator")
    p.add_argument("--key-separator", "-K", dest="key_separator", metavar="SEP",
                   help="the key separator (default TAB); implies --parse-key")
    p.add_argument("--key", "-k", dest="fixed_key", metavar="KEY",
                   help="the same key on every record (kcat's -k)")
    p.add_argument("--format", choices=["line", "json"], default="line",
                   help="line (default: a record a line) or json (one object a line, as "
                        "consume --format json prints them)")
    p.add_argument("--file", "-f", dest="file", metavar="FILE",
                   help="read the records from FILE instead of standard input")
    p.add_argument("--progress", action="store_true",
                   help="a progress line on stderr every second (on by itself when stderr "
                        "is a terminal)")
    p.add_argument("--header", "-H", dest="headers", action="append", default=[],
                   type=key_value, metavar="KEY=VALUE", help="a header on every record "
                                                            "(repeatable)")
    p.add_argument("--partition", "-p", type=int, metavar="N",
                   help="send every record to this partition")
    p.add_argument("--compression", "--compression-codec", "-z", dest="compression",
                   default="none", choices=sorted(CODECS, key=CODECS.get),
                   help="batch compression (default none)")
    p.add_argument("--acks", "--request-required-acks", dest="acks", default="all",
                   choices=["all", "-1", "0", "1"],
                   help="acknowledgements to wait for (default all)")
    p.add_argument("--null-value-marker", metavar="TEXT",
                   help="a line (or value after the key) equal to this gives a null value")
    p.add_argument("--property", action="append", default=[], type=key_value,
                   metavar="KEY=VALUE",
                   help="Kafka console producer properties: parse.key, key.separator, "
                        "null.marker")
    p.add_argument("--batch-size", type=int, default=256 * 1024, metavar="BYTES",
                   help="the most record bytes gathered into one request (default 262144)")
    p.add_argument("--timeout-ms", type=int, default=30000, metavar="MS",
                   help="how long the broker may take to replicate (Produce timeout)")
    connection_args(p)
    p.set_defaults(run=run)


class LineParser:
    """Turns input lines into (key, value) the way the console producer's options say."""

    def __init__(self, args):
        props = dict(args.property)
        unknown = set(props) - {"parse.key", "key.separator", "null.marker"}
        if unknown:
            raise UsageError(f"unsupported --property keys: {', '.join(sorted(unknown))}")
        separator = args.key_separator if args.key_separator is not None else props.get(
            "key.separator", "\t")
        self.parse_key = (args.parse_key or args.key_separator is not None
                          or props.get("parse.key", "false").lower() == "true")
        if self.parse_key and not separator:
            raise UsageError("the key separator may not be empty")
        self.separator = separator.encode()
        null_marker = props.get("null.marker")
        self.null_key = None if null_marker is None else null_marker.encode()
        value_marker = args.null_value_marker if args.null_value_marker is not None else null_marker
        self.null_value = None if value_marker is None else value_marker.encode()
        fixed_key = getattr(args, "fixed_key", None)
        if fixed_key is not None and self.parse_key:
            raise UsageError("--key and key parsing (--parse-key, --key-separator) do not go "
                             "together")
        self.fixed_key = None if fixed_key is None else fixed_key.encode()
        self.line_number = 0

    def parse(self, line: bytes) -> tuple[bytes | None, bytes | None]:
        self.line_number += 1
        key = self.fixed_key
        value = line
        if self.parse_key:
            key, sep, value = line.partition(self.separator)
            if not sep:
                # Kafka's console producer's words (LineMessageReader)
                text = line[:80].decode("utf-8", "backslashreplace")
                raise ValueError(f"No key separator found on line number {self.line_number}: "
                                 f"'{text}'")
            if self.null_key is not None and key == self.null_key:
                key = None
        if self.null_value is not None and value == self.null_value:
            value = None
        return key, value


# The fields of `consume --format json` that say where a record was, not what it is.
_CONSUMED_FIELDS = {"topic", "offset", "timestamp_type"}
_JSON_FIELDS = {"key", "key_encoding", "value", "value_encoding", "headers", "partition",
                "timestamp"} | _CONSUMED_FIELDS


def _json_bytes(obj: dict, name: str, where: str) -> bytes | None:
    """A field of `consume --format json` back into bytes: text as UTF-8, base64 when
    `<name>_encoding` says so; null stays null."""
    value = obj.get(name)
    encoding = obj.get(name + "_encoding")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: {name!r} must be a string or null, not {value!r}")
    if encoding is None:
        return value.encode("utf-8", "surrogateescape")
    if encoding != "base64":
        raise ValueError(f"{where}: unknown {name}_encoding {encoding!r} (only \"base64\")")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"{where}: {name!r} is not valid base64") from None


class JsonParser:
    """One JSON object a line, as `consume --format json` prints them, into
    (key, value, headers or None, partition or None, timestamp or None)."""

    def __init__(self, fixed_key: str | None = None):
        self.fixed_key = None if fixed_key is None else fixed_key.encode()
        self.line_number = 0

    def parse(self, line: bytes):
        """The record of a line; None for a blank line, which carries none."""
        self.line_number += 1
        if not line.strip():
            return None
        where = f"line number {self.line_number}"
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{where}: not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: not a JSON object")
        unknown = set(obj) - _JSON_FIELDS
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        key = _json_bytes(obj, "key", where)
        if key is None:
            key = self.fixed_key
        value = _json_bytes(obj, "value", where)
        headers = None
        raw = obj.get("headers")
        if isinstance(raw, dict):
            raw = [{"key": k, "value": v} for k, v in raw.items()]
        if raw is not None:
            if not isinstance(raw, list) or not all(isinstance(h, dict) for h in raw):
                raise ValueError(f"{where}: 'headers' must be a list of {{\"key\", \"value\"}}")
            headers = []
            for h in raw:
                hkey = _json_bytes(h, "key", where + " header")
                if hkey is None:
                    raise ValueError(f"{where}: a header without a key")
                headers.append((hkey.decode("utf-8", "surrogateescape"),
                                _json_bytes(h, "value", where + " header")))
        partition = obj.get("partition")
        timestamp = obj.get("timestamp")
        for name, number in (("partition", partition), ("timestamp", timestamp)):
            if number is not None and (not isinstance(number, int) or isinstance(number, bool)
                                       or number < 0):
                raise ValueError(f"{where}: {name!r} must be a number 0 or more, not "
                                 f"{number!r}")
        return key, value, headers, partition, timestamp


class Progress:
    """The progress line on stderr: records and bytes sent and the rate, at most once a
    `INTERVAL`, overwriting itself on a terminal; `clock` is injectable for tests."""

    INTERVAL = 1.0

    def __init__(self, out, *, terminal: bool, clock=time.monotonic):
        self.out = out
        self.terminal = terminal
        self.clock = clock
        self.started = clock()
        self.next_report = self.started + self.INTERVAL
        self.records = 0
        self.bytes = 0
        self.reported = False

    def text(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        return (f"{self.records} records sent ({self.bytes} bytes), "
                f"{self.records / elapsed:.0f} records/s")

    def sent(self, records: int, size: int) -> None:
        self.records += records
        self.bytes += size
        now = self.clock()
        if now >= self.next_report:
            self.next_report = now + self.INTERVAL
            self._write(now)

    def _write(self, now: float) -> None:
        self.reported = True
        if self.terminal:
            self.out.write("\r" + self.text(now) + "\x1b[K")
        else:
            self.out.write(self.text(now) + "\n")
        self.out.flush()

    def finish(self) -> None:
        """The last count, when there was anything to tell."""
        if self.records or self.reported:
            self._write(self.clock())
            if self.terminal:
                self.out.write("\n")
                self.out.flush()


def read_lines(fd: int):
    """Yield (line, more_waiting) for each line of the input; more_waiting tells whether more
    input is already there, so a batch can keep growing without making a typist wait."""
    pending = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for i, line in enumerate(lines):
            if line.endswith(b"\r"):
                line = line[:-1]
            last = i == len(lines) - 1
            waiting = not last or bool(pending) or _readable(fd)
            yield line, waiting
    if pending:
        yield pending[:-1] if pending.endswith(b"\r") else pending, False


def _readable(fd: int) -> bool:
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)


class Sender:
    """Gathers records per partition and sends them as one batch each."""

    def __init__(self, client, topic: str, args):
        from trioka.log.records import encode_batch
        self.encode_batch = encode_batch
        self.client = client
        self.topic = topic
        self.codec = CODECS[args.compression]
        self.acks = -1 if args.acks == "all" else int(args.acks)
        self.timeout_ms = args.timeout_ms
        self.batch_size = args.batch_size
        self.headers = [(k, v.encode()) for k, v in args.headers]
        self.fixed = args.partition
        self.partitions = 0     # known at the first record: no input, no topic auto-created
        self.sticky = 0
        self.pending: dict[int, list] = {}
        self.size = 0
        self.count = 0
        self.progress: Progress | None = None

    def lookup(self) -> None:
        """The topic's partitions, asked for (and the topic auto-created) at the first record,
        as Kafka's console producer first asks for metadata when it sends."""
        info = self.client.topic(self.topic, auto_create=True)
        self.partitions = len(info.partitions)
        if self.fixed is not None and self.fixed not in info.partitions:
            raise UsageError(f"topic {self.topic!r} has no partition {self.fixed} (it has "
                             f"{self.partitions})")

    def add(self, key: bytes | None, value: bytes | None, headers=None,
            partition: int | None = None, timestamp: int | None = None) -> None:
        """A record to send; `headers`, `partition` and `timestamp` (from --format json) stand
        in for --header, the partitioner and now."""
        if not self.partitions:
            self.lookup()
        if partition is not None:
            if partition >= self.partitions:
                self.flush()    # the records before this one are sent, as in Kafka
                # The Java producer's words (KafkaProducer.partition).
                raise ClientError(f"Invalid partition given with record: {partition} is not in "
                                  f"the range [0...{self.partitions}).")
        elif self.fixed is not None:
            partition = self.fixed
        elif key is not None:
            partition = partition_for_key(key, self.partitions)
        else:
            partition = self.sticky
        self.pending.setdefault(partition, []).append(
            (key, value, self.headers if headers is None else headers,
             int(time.time() * 1000) if timestamp is None else timestamp))
        self.size += len(key or b"") + len(value or b"") + 16
        self.count += 1
        if self.size >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batches = {(self.topic, p): self.encode_batch(records, compression=self.codec)
                   for p, records in self.pending.items()}
        count, size = self.count, self.size
        self.pending = {}
        self.size = self.count = 0
        self.sticky = (self.sticky + 1) % self.partitions
        self.client.produce(batches, acks=self.acks, timeout_ms=self.timeout_ms)
        if self.progress is not None:
            self.progress.sent(count, size)


def open_input(path: str | None) -> int:
    """The file descriptor records are read from: --file's, else standard input's."""
    if path is None:
        return sys.stdin.fileno()
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise ClientError(f"--file {path}: {e.strerror or e}") from None


def run(args) -> int:
    topic = resolve_name(args)
    if args.format == "json":
        if args.parse_key or args.key_separator is not None or args.property:
            raise UsageError("--format json takes the keys from the JSON: no --parse-key, "
                             "--key-separator or --property")
        parser = JsonParser(args.fixed_key)
    else:
        parser = LineParser(args)
    fd = open_input(args.file)
    progress = None
    if args.progress or sys.stderr.isatty():
        progress = Progress(sys.stderr, terminal=sys.stderr.isatty())
    try:
        with open_client(args) as client:
            sender = Sender(client, topic, args)
            sender.progress = progress
            for line, more in read_lines(fd):
                try:
                    parsed = parser.parse(line)
                except ValueError as e:
                    sender.flush()   # what came before the bad line is sent, as in Kafka
                    raise ClientError(str(e)) from None
                if parsed is not None:
                    sender.add(*parsed)
                if not more:
                    sender.flush()
            sender.flush()
    finally:
        if progress is not None:
            progress.finish()
        if args.file is not None:
            os.close(fd)
    return 0
