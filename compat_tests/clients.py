"""The stock clients as one registry: a producer and a consumer of each of confluent-kafka
(librdkafka), kafka-python, aiokafka, kcat (librdkafka 2.0's command line) and KafkaJS (the node
scripts in js/), all with one contract, and the records they exchange in one shape (`Rec`).

    reports = PRODUCERS["kafkajs"](bootstrap, topic, records, codec="lz4")
    got = CONSUMERS["kcat"](bootstrap, topic, range(3), len(records))

A producer sends Recs as given (partition, key, value, headers, timestamp; a timestamp of None lets
the client stamp the record with the time of sending) and returns one report per record, in send
order, from what the client said: (partition, offset) once acknowledged, (partition, None) for a
record the client reports sent without an offset (acks=0), None for a record it says nothing
about. It fails when the client reports an error or has not delivered everything in `timeout`.

A consumer is manually assigned the partitions (no group is joined, nothing is committed), reads
`count` records from `start` (default: the beginning) and returns them as Recs in the order they
came; it fails, saying what it got, when they have not all come within `timeout`. Each checks the
timestamp type of what it reads (CreateTime unless told otherwise) where the client shows it.

A client that is not installed is a failure, never a skip: `.ci/run` installs kcat (apt) and the
npm packages of js/.
"""

import asyncio
import base64
import collections
import json
import os
import shutil
import subprocess
import time
from typing import Callable

import pytest

from harness import unique, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(HERE, "js")
ALL_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


# --- The records, in one shape ---

class Rec(collections.namedtuple("Rec", "partition offset key value headers timestamp")):
    """One consumed (or expected) record. Headers are a tuple of (str, bytes) pairs in the order
    they were sent (Kafka keeps duplicates and order); a record without headers has (). The
    timestamp is the one the producer set (None: the client's own clock at sending)."""
    __slots__ = ()

    def __new__(cls, partition, offset, key, value, headers=(), timestamp=None):
        return super().__new__(cls, partition, offset, key, value,
                               tuple((k, v) for k, v in (headers or ())), timestamp)


# Explicit CreateTimes an hour back: well inside retention.ms (7 days; older records would be
# deleted by the retention timer mid-test, as Kafka does) and not in the future, where Kafka 4's
# message.timestamp.after.max.ms (1 hour) would refuse them. Whole seconds, fixed per session.
SAMPLE_TIMESTAMP = (int(time.time()) - 3600) * 1000


def sample_records(partitions: int = 3, *, tag: str = "", first_offset: int = 0) -> list[Rec]:
    """What the round-trip tests produce: per partition, in order, records with keys, headers
    (duplicate keys and an empty value among them), a tombstone (null value), a null key, no
    headers, an empty value and one large compressible value, each with an explicit timestamp.
    Offsets are what a fresh partition gives them (first_offset onwards)."""
    out = []
    for p in range(partitions):
        ts = SAMPLE_TIMESTAMP + p * 100_000 + first_offset * 10
        rows = [
            (f"k{tag}-{p}-0".encode(), f"v{tag}-{p}-0".encode(), [("h1", b"one"), ("h2", b"")]),
            (f"k{tag}-{p}-1".encode(), None, [("tombstone", b"yes")]),
            (None, f"no-key{tag}-{p}".encode(), []),
            (f"k{tag}-{p}-3".encode(), b"", [("dup", b"1"), ("dup", b"2"), ("dup", b"3")]),
            (f"k{tag}-{p}-4".encode(), (f"big{tag}-{p}-" * 1500).encode(), [("size", b"big")]),
            (f"k{tag}-{p}-5".encode(), bytes(range(256)), []),
        ]
        for i, (key, value, headers) in enumerate(rows):
            out.append(Rec(p, first_offset + i, key, value, headers, ts + i * 10))
    return out


def value_records(values, partition: int = 0) -> list[Rec]:
    """Records that are only a value (no key, no headers, the client's timestamp), for one
    partition, at offsets not known in advance."""
    return [Rec(partition, None, None, v) for v in values]


def by_partition(records) -> dict[int, list]:
    """Records grouped by partition, keeping the order they arrived in."""
    out: dict[int, list] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


def offsets_of(records) -> list[tuple[int, int]]:
    """The reports a producer gives for these records once acknowledged."""
    return [(r.partition, r.offset) for r in records]


# --- Producers ---

ACKS = {"all": -1, 1: 1, 0: 0}


def produce_confluent(bootstrap: str, topic: str, records, *, codec: str = "none",
                      acks="all", idempotent: bool | None = None, config: dict | None = None,
                      timeout: float = 30.0, reported: list | None = None) -> list:
    """Produce with confluent-kafka (librdkafka); `config` is librdkafka's configuration.
    `reported`, if given, gets (partition, offset) of each delivery report in the order
    librdkafka made them."""
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": codec,
            "acks": str(ACKS[acks]), "message.timeout.ms": int(timeout * 1000)}
    if idempotent is not None:
        conf["enable.idempotence"] = idempotent
    p = Producer({**conf, **(config or {})})
    reports: list = [None] * len(records)
    errors = []

    def on_delivery(i):
        def report(err, msg):
            if err is not None:
                errors.append(err)
            else:
                reports[i] = (msg.partition(), msg.offset())
                if reported is not None:
                    reported.append(reports[i])
        return report

    for i, r in enumerate(records):
        while True:
            try:
                p.produce(topic, value=r.value, key=r.key, partition=r.partition,
                          timestamp=r.timestamp or 0, headers=list(r.headers) or None,
                          on_delivery=on_delivery(i))
                break
            except BufferError:      # the local queue is full: serve delivery reports first
                p.poll(0.05)
        p.poll(0)
    assert p.flush(timeout) == 0, "messages still in flight after flush"
    assert not errors, errors[:5]
    return reports


def produce_kafka_python(bootstrap: str, topic: str, records, *, codec: str = "none",
                         acks="all", idempotent: bool | None = None, config: dict | None = None,
                         timeout: float = 30.0) -> list:
    """Produce with kafka-python's KafkaProducer (idempotent by default since kafka-python 3);
    `config` is its keyword arguments. For acks=0 no response carries an offset, and the
    offsets kafka-python reports are its own count within each batch: None here."""
    from kafka import KafkaProducer
    conf = {"bootstrap_servers": bootstrap, "linger_ms": 20, "acks": acks,
            "compression_type": None if codec == "none" else codec,
            "request_timeout_ms": int(timeout * 1000)}
    if idempotent is not None:
        conf["enable_idempotence"] = idempotent
    p = KafkaProducer(**{**conf, **(config or {})})
    try:
        futures = [p.send(topic, value=r.value, key=r.key, partition=r.partition,
                          headers=list(r.headers), timestamp_ms=r.timestamp) for r in records]
        p.flush(timeout=timeout)
        sent = [f.get(timeout=timeout) for f in futures]
    finally:
        p.close(timeout=timeout)
    return [(m.partition, None if acks == 0 else m.offset) for m in sent]


def produce_aiokafka(bootstrap: str, topic: str, records, *, codec: str = "none", acks="all",
                     idempotent: bool | None = None, config: dict | None = None,
                     timeout: float = 30.0) -> list:
    """Produce with aiokafka's AIOKafkaProducer (in an event loop of its own); `config` is its
    keyword arguments. For acks=0 it reports nothing at all (None)."""
    from aiokafka import AIOKafkaProducer
    conf = {"bootstrap_servers": bootstrap, "linger_ms": 20, "acks": acks,
            "compression_type": None if codec == "none" else codec,
            "request_timeout_ms": int(timeout * 1000)}
    if idempotent is not None:
        conf["enable_idempotence"] = idempotent

    async def go():
        p = AIOKafkaProducer(**{**conf, **(config or {})})
        await p.start()
        try:
            futures = [await p.send(topic, value=r.value, key=r.key, partition=r.partition,
                                    timestamp_ms=r.timestamp, headers=list(r.headers))
                       for r in records]
            return await asyncio.gather(*futures)
        finally:
            await p.stop()

    sent = asyncio.run(asyncio.wait_for(go(), timeout + 20))
    return [None if m is None else (m.partition, m.offset) for m in sent]


def run_kcat(*args, input: bytes | None = None,
             timeout: float = 30.0) -> subprocess.CompletedProcess:
    """kcat with these arguments; the finished process (stdout and stderr as bytes)."""
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (.ci/run installs it with apt)")
    return subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)


def kcat_ok(*args, input: bytes | None = None, timeout: float = 30.0) -> bytes:
    """kcat's stdout; fails with its stderr when it exits non-zero."""
    r = run_kcat(*args, input=input, timeout=timeout)
    assert r.returncode == 0, (args, r.stderr.decode(errors="replace"))
    return r.stdout


# kcat splits its input into messages at -D and a message into key and value at -K: strings no
# record here contains (every byte value does occur in the records, so one byte would not do).
KCAT_DELIMITER = "@@trioka-record-end@@"
KCAT_KEY_DELIMITER = "@@trioka-key-end@@"


def produce_kcat(bootstrap: str, topic: str, records, *, codec: str = "none", acks="all",
                 idempotent: bool | None = None, config: dict | None = None,
                 timeout: float = 30.0) -> list:
    """Produce with kcat -P, one run per record, since its flags (-p, -H, -Z) hold for a whole
    run: the key and value come on stdin split at -K, -Z makes an empty value null. kcat stamps
    every record with the time of sending and reports nothing of its deliveries (None each);
    `config` is librdkafka's (-X)."""
    flags = ["-X", f"acks={ACKS[acks]}"]
    if codec != "none":
        flags += ["-z", codec]
    if idempotent is not None:
        flags += ["-X", f"enable.idempotence={str(idempotent).lower()}"]
    for key, value in (config or {}).items():
        flags += ["-X", f"{key}={value}"]
    for r in records:
        args = ["-P", "-b", bootstrap, "-t", topic, "-p", str(r.partition),
                "-D", KCAT_DELIMITER, *flags]
        for name, value in r.headers:
            args += ["-H", name.encode() + b"=" + value]
        data = r.value or b""
        if r.key is not None:
            args += ["-K", KCAT_KEY_DELIMITER]
            data = r.key + KCAT_KEY_DELIMITER.encode() + data
        if r.value is None:
            args.append("-Z")
        kcat_ok(*args, input=data + KCAT_DELIMITER.encode(), timeout=timeout)
    return [None] * len(records)


def run_kafkajs(script: str, *args: str, input: bytes | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a driver script of compat_tests/js with node; it prints JSON lines."""
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        pytest.fail("kafkajs is not installed (.ci/run runs npm install in compat_tests/js)")
    return subprocess.run(["node", os.path.join(JS_DIR, script), *args], input=input,
                          capture_output=True, timeout=timeout, cwd=JS_DIR)


def kafkajs(script: str, *args: str, input: bytes | None = None,
            timeout: float = 60.0) -> list[dict]:
    """A KafkaJS driver's output lines as JSON; fails with its stderr when it exits non-zero."""
    r = run_kafkajs(script, *args, input=input, timeout=timeout)
    assert r.returncode == 0, (script, r.stdout.decode(), r.stderr.decode()[-3000:])
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


def _b64(value: bytes | None):
    return None if value is None else {"b64": base64.b64encode(value).decode()}


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def kafkajs_message(rec: Rec) -> dict:
    """A produce.js message for a Rec (bytes as base64). KafkaJS takes headers as an object, a
    repeated name with a list of values: only repeated names that are adjacent keep their order."""
    headers: dict = {}
    for name, value in rec.headers:
        if name in headers:
            if not isinstance(headers[name], list):
                headers[name] = [headers[name]]
            headers[name].append(_b64(value))
        else:
            headers[name] = _b64(value)
    out = {"key": _b64(rec.key), "value": _b64(rec.value), "partition": rec.partition,
           "headers": headers}
    if rec.timestamp is not None:
        out["timestamp"] = rec.timestamp
    return out


def produce_kafkajs_sends(bootstrap: str, topic: str, sends: list[list[dict]], *, codec="none",
                          acks="all", idempotent: bool = False) -> list[list[dict]]:
    """Run produce.js: each inner list is one producer.send() of produce.js messages; KafkaJS's
    RecordMetadata list of each (one entry per partition the send wrote to; none for acks=0)."""
    spec = {"topic": topic, "acks": ACKS[acks], "compression": codec, "idempotent": idempotent,
            "sends": sends}
    out = kafkajs("produce.js", bootstrap, "-", input=json.dumps(spec).encode())
    assert [o["send"] for o in out] == list(range(len(sends))), out
    return [o["result"] for o in out]


def produce_kafkajs(bootstrap: str, topic: str, records, *, codec: str = "none", acks="all",
                    idempotent: bool | None = None, config: dict | None = None,
                    timeout: float = 30.0) -> list:
    """Produce with KafkaJS, all records in one producer.send() unless `config` says
    {"send_size": n}: sends of n records each. KafkaJS reports the base offset each send
    appended in each partition: the send's record i of a partition is at that offset + i."""
    config = dict(config or {})
    size = config.pop("send_size", len(records)) or 1
    assert not config, f"produce.js takes no client configuration {config}"
    sends = [records[i:i + size] for i in range(0, len(records), size)]
    results = produce_kafkajs_sends(bootstrap, topic,
                                    [[kafkajs_message(r) for r in send] for send in sends],
                                    codec=codec, acks=acks, idempotent=bool(idempotent))
    reports = []
    for send, result in zip(sends, results):
        base = {}
        for m in result:
            assert m["errorCode"] == 0, m
            base[m["partition"]] = int(m["baseOffset"])
        seen = collections.Counter()
        for r in send:
            reports.append((r.partition, base[r.partition] + seen[r.partition])
                           if r.partition in base else None)
            seen[r.partition] += 1
    return reports


PRODUCERS = {
    "confluent": produce_confluent,
    "kafka-python": produce_kafka_python,
    "aiokafka": produce_aiokafka,
    "kcat": produce_kcat,
    "kafkajs": produce_kafkajs,
}

# The producers that stamp every record with the time of sending: kcat has no flag for a
# record's own timestamp.
STAMPS_RECORDS = {"kcat"}

# The codecs each client compresses and decompresses. zstd's only KafkaJS codec package is a
# native build that does not compile with this Node.js (js/common.js): KafkaJS has no zstd.
CODECS = {"confluent": ALL_CODECS, "kafka-python": ALL_CODECS, "aiokafka": ALL_CODECS,
          "kcat": ALL_CODECS, "kafkajs": ("none", "gzip", "snappy", "lz4")}


# --- Consumers ---

def _received(client: str, topic: str, partitions, count: int, out: list) -> Callable:
    return lambda: (f"{count} records of {topic} {list(partitions)} read by {client}; "
                    f"{len(out)} came, the last {out[-3:]}")


def consume_confluent(bootstrap: str, topic: str, partitions, count: int, *,
                      start: int | None = None, timeout: float = 30.0,
                      config: dict | None = None,
                      timestamp_type: str = "CreateTime") -> list[Rec]:
    """Read with confluent-kafka (librdkafka); `config` is librdkafka's configuration."""
    from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME,
                                 TIMESTAMP_LOG_APPEND_TIME, TopicPartition)
    want = {"CreateTime": TIMESTAMP_CREATE_TIME,
            "LogAppendTime": TIMESTAMP_LOG_APPEND_TIME}[timestamp_type]
    c = confluent_assigned(bootstrap, config)
    out: list[Rec] = []
    try:
        offset = OFFSET_BEGINNING if start is None else start
        c.assign([TopicPartition(topic, p, offset) for p in partitions])

        def arrived():
            for m in c.consume(num_messages=max(count - len(out), 1), timeout=0.2):
                if m.error():
                    raise AssertionError(f"confluent consumer error: {m.error()}")
                ts_type, ts = m.timestamp()
                assert ts_type == want, (ts_type, ts)
                out.append(Rec(m.partition(), m.offset(), m.key(), m.value(), m.headers(), ts))
            return len(out) >= count

        wait_for(arrived, timeout, _received("confluent-kafka", topic, partitions, count, out),
                 interval=0)
        return out
    finally:
        c.close()


def confluent_assigned(bootstrap: str, config: dict | None = None):
    """A confluent-kafka Consumer for assign(): the binding wants a group.id, and with nothing
    subscribed and nothing committed it never joins that group."""
    from confluent_kafka import Consumer
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique("assign-only"),
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "auto.offset.reset": "error", "fetch.wait.max.ms": 100, **(config or {})})


def consume_confluent_to(bootstrap: str, topic: str, ends: dict[int, int], *,
                         timeout: float = 30.0, config: dict | None = None) -> dict[int, list]:
    """Every record confluent-kafka reads from the beginning of each partition until its
    position reaches `ends[p]`, per partition in order. For reads whose count is not known
    beforehand: librdkafka moves its position past control records, aborted transactions'
    records (read_committed) and the gaps compaction left."""
    from confluent_kafka import TopicPartition
    c = confluent_assigned(bootstrap, config)
    out: dict[int, list] = {p: [] for p in ends}
    positions: dict[int, int] = {}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in ends])

        def at_the_ends():
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                out[m.partition()].append(Rec(m.partition(), m.offset(), m.key(), m.value(),
                                              m.headers(), m.timestamp()[1]))
            positions.update((tp.partition, tp.offset) for tp in
                             c.position([TopicPartition(topic, p) for p in ends]))
            return all(ends[p] == 0 or positions[p] >= ends[p] for p in ends)

        wait_for(at_the_ends, timeout,
                 lambda: f"confluent-kafka reading {topic} to {ends}; positions {positions}",
                 interval=0)
    finally:
        c.close()
    return out


def consume_kafka_python(bootstrap: str, topic: str, partitions, count: int, *,
                         start: int | None = None, timeout: float = 30.0,
                         config: dict | None = None,
                         timestamp_type: str = "CreateTime") -> list[Rec]:
    """Read with kafka-python's KafkaConsumer; `config` is its keyword arguments."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(**{"bootstrap_servers": bootstrap, "group_id": None,
                         "enable_auto_commit": False, "auto_offset_reset": "none",
                         "fetch_max_wait_ms": 100, "request_timeout_ms": 10_000,
                         **(config or {})})
    want = {"CreateTime": 0, "LogAppendTime": 1}[timestamp_type]
    out: list[Rec] = []
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            if start is None:
                c.seek_to_beginning(tp)
            else:
                c.seek(tp, start)

        def arrived():
            for tp, msgs in c.poll(timeout_ms=200).items():
                for m in msgs:
                    assert m.timestamp_type == want, m
                    out.append(Rec(m.partition, m.offset, m.key, m.value, m.headers,
                                   m.timestamp))
            return len(out) >= count

        wait_for(arrived, timeout, _received("kafka-python", topic, partitions, count, out),
                 interval=0)
        return out
    finally:
        c.close()


def consume_aiokafka(bootstrap: str, topic: str, partitions, count: int, *,
                     start: int | None = None, timeout: float = 30.0,
                     config: dict | None = None,
                     timestamp_type: str = "CreateTime") -> list[Rec]:
    """Read with aiokafka's AIOKafkaConsumer, in an event loop of its own that this thread
    drives one getmany() at a time; `config` is its keyword arguments."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    want = {"CreateTime": 0, "LogAppendTime": 1}[timestamp_type]
    loop = asyncio.new_event_loop()

    def run(coro):
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def started():
        c = AIOKafkaConsumer(**{"bootstrap_servers": bootstrap, "group_id": None,
                                "enable_auto_commit": False, "auto_offset_reset": "none",
                                "fetch_max_wait_ms": 100, "request_timeout_ms": 10_000,
                                **(config or {})})
        await c.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            if start is None:
                await c.seek_to_beginning(tp)
            else:
                c.seek(tp, start)
        return c

    out: list[Rec] = []
    c = None
    try:
        c = run(started())

        def arrived():
            for tp, msgs in run(c.getmany(timeout_ms=200)).items():
                for m in msgs:
                    assert m.timestamp_type == want, m
                    out.append(Rec(m.partition, m.offset, m.key, m.value, m.headers,
                                   m.timestamp))
            return len(out) >= count

        wait_for(arrived, timeout, _received("aiokafka", topic, partitions, count, out),
                 interval=0)
        return out
    finally:
        if c is not None:
            run(c.stop())
        loop.close()


# kcat -f: partition, offset, timestamp, key size (-1: null), key, value size, value, headers
# (name=value,...). The sizes are what make binary keys and values readable.
KCAT_FORMAT = "%p|%o|%T|%K|%k|%S|%s|%h\\n"


def parse_kcat(stdout: bytes) -> list[Rec]:
    """Records kcat printed with KCAT_FORMAT."""
    out = []
    pos = 0

    def field(end_at: bytes = b"|") -> bytes:
        nonlocal pos
        end = stdout.index(end_at, pos)
        text, pos = stdout[pos:end], end + 1
        return text

    def sized(size: int) -> bytes | None:
        nonlocal pos
        data = stdout[pos:pos + max(size, 0)]
        pos += max(size, 0)
        assert stdout[pos:pos + 1] == b"|", stdout[pos - 20:pos + 20]
        pos += 1
        return None if size == -1 else data

    while pos < len(stdout):
        partition, offset, timestamp = int(field()), int(field()), int(field())
        key = sized(int(field()))
        value = sized(int(field()))
        headers = field(b"\n")
        pairs = [h.partition(b"=") for h in headers.split(b",")] if headers else []
        out.append(Rec(partition, offset, key, value,
                       [(name.decode(), data) for name, _, data in pairs], timestamp))
    return out


def consume_kcat(bootstrap: str, topic: str, partitions, count: int, *,
                 start: int | None = None, timeout: float = 30.0, config: dict | None = None,
                 timestamp_type: str = "CreateTime") -> list[Rec]:
    """Read with kcat -C, one run per partition to its end (-e). kcat does not show the
    timestamp type; `config` is librdkafka's (-X)."""
    flags = [a for k, v in (config or {}).items() for a in ("-X", f"{k}={v}")]
    out: list[Rec] = []

    def arrived():
        out.clear()
        for p in partitions:
            out.extend(parse_kcat(kcat_ok(
                "-C", "-b", bootstrap, "-t", topic, "-p", str(p), "-o",
                "beginning" if start is None else str(start), "-e", "-f", KCAT_FORMAT, *flags,
                timeout=timeout)))
        return len(out) >= count

    wait_for(arrived, timeout, _received("kcat", topic, partitions, count, out))
    return out


def kafkajs_record(r: dict) -> Rec:
    """A {"record": ...} line of fetch.js or consume.js as a Rec."""
    return Rec(r["partition"], r["offset"], _unb64(r["key"]), _unb64(r["value"]),
               [(k, _unb64(v)) for k, v in r["headers"]], r["timestamp"])


def fetch_kafkajs(bootstrap: str, topic: str, partition: int, count: int | None = None,
                  start: int = 0, *, timestamp_type: str = "CreateTime") -> tuple[list[Rec], int]:
    """Records of one partition read by KafkaJS's own Fetch and record decoder (js/fetch.js):
    `count` of them, or all up to the high watermark; and the high watermark it was told."""
    want = {"CreateTime": 0, "LogAppendTime": 1}[timestamp_type]
    out = kafkajs("fetch.js", bootstrap, topic, str(partition), str(start),
                  "end" if count is None else str(count))
    records = []
    for line in out[:-1]:
        assert line["record"]["timestampType"] == want, line
        records.append(kafkajs_record(line["record"]))
    done = out[-1]["done"]
    assert done["count"] == len(records), out
    return records, int(done["highWatermark"])


def consume_kafkajs(bootstrap: str, topic: str, partitions, count: int, *,
                    start: int | None = None, timeout: float = 30.0, config: dict | None = None,
                    timestamp_type: str = "CreateTime") -> list[Rec]:
    """Read with KafkaJS's Fetch (fetch.js), one run per partition to its high watermark.
    KafkaJS's public consumer always joins a group; this one joins none."""
    assert not config, "fetch.js takes no client configuration"
    out: list[Rec] = []

    def arrived():
        out.clear()
        for p in partitions:
            out.extend(fetch_kafkajs(bootstrap, topic, p, None, start or 0,
                                     timestamp_type=timestamp_type)[0])
        return len(out) >= count

    wait_for(arrived, timeout, _received("KafkaJS", topic, partitions, count, out))
    return out


CONSUMERS = {
    "confluent": consume_confluent,
    "kafka-python": consume_kafka_python,
    "aiokafka": consume_aiokafka,
    "kcat": consume_kcat,
    "kafkajs": consume_kafkajs,
}


def next_records(consumer, count: int, timeout: float, *, on_record=None,
                 skip_errors: bool = False) -> list:
    """The next `count` messages a subscribed (group) confluent-kafka consumer gets, polling it
    (which also serves its rebalances) with a deadline. A consumer error fails, unless
    `skip_errors` (librdkafka also reports a broker that went away, as an error message).
    `on_record(m, got)` is called after each message is added (to commit, say)."""
    got = []

    def arrived():
        m = consumer.poll(0.1)
        if m is not None and not (skip_errors and m.error() is not None):
            assert m.error() is None, m.error()
            got.append(m)
            if on_record is not None:
                on_record(m, got)
        return len(got) >= count

    wait_for(arrived, timeout,
             lambda: f"{count} records from the group consumer; {len(got)} came", interval=0)
    return got


# --- Group consumers (librdkafka serves rebalances and their callbacks from poll) ---

def partitions_of(consumer) -> list[int]:
    """The partitions a confluent-kafka consumer holds now."""
    return sorted(tp.partition for tp in consumer.assignment())


def split_evenly(assignments: list[list[int]], total: int) -> bool:
    """Disjoint, covering every partition, everyone with its fair share."""
    flat = [p for a in assignments for p in a]
    return sorted(flat) == list(range(total)) and all(
        len(a) in (total // len(assignments), -(-total // len(assignments))) for a in assignments)


def polled(consumers, done: Callable) -> Callable:
    """A wait_for condition for confluent-kafka group consumers: poll each once (which runs
    their rebalances), then ask `done()`."""
    def condition():
        for c in consumers:
            c.poll(0.02)
        return done()
    return condition
