"""`trioka produce TOPIC`: one record per line of standard input, as kafka-console-producer.sh.

    trioka produce TOPIC [--parse-key] [--key-separator SEP | -K SEP] [--header K=V | -H K=V ...]
                         [--partition N | -p N] [--compression CODEC | -z CODEC] [--acks ACKS]
                         [--null-value-marker TEXT] [--property KEY=VALUE ...] [--batch-size BYTES]
                         [--timeout-ms MS]

Each line (without its line ending) is a record value, sent with CreateTime = now. With
`--parse-key` (Kafka's `parse.key=true`) the line is split at the first key separator (a TAB unless
`--key-separator` says otherwise; `--key-separator` and kcat's `-K` turn key parsing on by
themselves) into key and value; a line without the separator is an error, as in Kafka. Headers
given with `--header` go on every record. A line equal to `--null-value-marker` produces a null
value (a tombstone). The Kafka producer's `--property` keys parse.key, key.separator and null.marker
(which applies to keys and values) are understood too.

Partitioning: `--partition` sends everything there; otherwise a keyed record goes where Kafka's Java
producer puts it (murmur2 of the key), and records without a key fill one partition per batch, the
next batch going to the next partition. Lines are gathered into one record batch per partition
while more input is waiting (up to `--batch-size` bytes), then sent and acknowledged before more is
read. Nothing is printed on success; a refused batch prints the broker's error and exits 1.
"""

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
        self.line_number = 0

    def parse(self, line: bytes) -> tuple[bytes | None, bytes | None]:
        self.line_number += 1
        key = None
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

    def lookup(self) -> None:
        """The topic's partitions, asked for (and the topic auto-created) at the first record,
        as Kafka's console producer first asks for metadata when it sends."""
        info = self.client.topic(self.topic, auto_create=True)
        self.partitions = len(info.partitions)
        if self.fixed is not None and self.fixed not in info.partitions:
            raise UsageError(f"topic {self.topic!r} has no partition {self.fixed} (it has "
                             f"{self.partitions})")

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if not self.partitions:
            self.lookup()
        if self.fixed is not None:
            partition = self.fixed
        elif key is not None:
            partition = partition_for_key(key, self.partitions)
        else:
            partition = self.sticky
        self.pending.setdefault(partition, []).append(
            (key, value, self.headers, int(time.time() * 1000)))
        self.size += len(key or b"") + len(value or b"") + 16
        if self.size >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batches = {(self.topic, p): self.encode_batch(records, compression=self.codec)
                   for p, records in self.pending.items()}
        self.pending = {}
        self.size = 0
        self.sticky = (self.sticky + 1) % self.partitions
        self.client.produce(batches, acks=self.acks, timeout_ms=self.timeout_ms)


def run(args) -> int:
    topic = resolve_name(args)
    parser = LineParser(args)
    with open_client(args) as client:
        sender = Sender(client, topic, args)
        for line, more in read_lines(sys.stdin.fileno()):
            try:
                key, value = parser.parse(line)
            except ValueError as e:
                sender.flush()   # what came before the bad line is sent, as in Kafka
                raise ClientError(str(e)) from None
            sender.add(key, value)
            if not more:
                sender.flush()
        sender.flush()
    return 0
