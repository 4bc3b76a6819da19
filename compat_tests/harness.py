"""What compat tests share: a broker process and the stock clients' command-line drivers."""

import collections
import itertools
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from trioka.controls.rules import RuleShortcuts

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(HERE, "js")
_READY = re.compile(r"trioka ready: \S+://([\d.]+):(\d+)")
_ADMIN = re.compile(r" admin (http://\S+)")
_names = itertools.count(1)


class BrokerProcess:
    """`python -m trioka serve` in a subprocess, on a free port, with its own data directory."""

    def __init__(self, data_dir: str | None = None, *, memory: bool = False,
                 overrides: dict | None = None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="trioka-compat-")
        self._own_dir = data_dir is None
        self.memory = memory
        self.overrides = dict(overrides or {})
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.admin: str | None = None   # the admin endpoint (fault injection), once started

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "BrokerProcess":
        cmd = [sys.executable, "-m", "trioka", "serve",
               "--listeners", f"PLAINTEXT://127.0.0.1:{self.port}",
               "--admin-listener", "127.0.0.1:0"]
        cmd += ["--memory"] if self.memory else ["--data-dir", self.data_dir]
        for k, v in self.overrides.items():
            cmd += ["--override", f"{k}={v}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip())
            m = _READY.search(line)
            if m:
                self.port = int(m.group(2))
                admin = _ADMIN.search(line)
                self.admin = admin.group(1) if admin else None
                # Keep draining output so the broker never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.kill()
        raise RuntimeError("broker did not become ready:\n" + "\n".join(self.output[-20:]))

    def _drain(self) -> None:
        proc = self.proc
        for line in proc.stdout:
            self.output.append(line.rstrip())

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful shutdown."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: an unclean stop."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    @property
    def controls(self) -> "ControlsClient":
        """The broker's fault injection (trioka/controls.py) over its admin endpoint."""
        if self.admin is None:
            raise RuntimeError("the broker is not running with an admin endpoint")
        return ControlsClient(self.admin)

    def restart(self, *, kill: bool = False) -> "BrokerProcess":
        """Stop (gracefully, or SIGKILL) and start again on the same port and data directory."""
        self.kill() if kill else self.stop()
        return self.start()

    def close(self) -> None:
        if self.proc is not None:
            self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class ControlsClient(RuleShortcuts):
    """A broker's fault-injection rules through its admin endpoint (trioka/admin_endpoint.py).
    Rules are dicts as the endpoint answers them: `id`, `action`, `matched`, `applied`, ..."""

    def __init__(self, admin: str, timeout: float = 10.0):
        self.admin = admin.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None):
        import json
        import urllib.error
        import urllib.request
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.admin + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"admin endpoint: HTTP {e.code} {e.read()!r}") from None

    def add(self, action: str, **fields) -> dict:
        """A rule: `add("error", api="Produce", error="NOT_LEADER_OR_FOLLOWER", count=3)`."""
        return self._call("POST", "/controls", {"action": action, **fields})

    def list(self) -> list:
        return self._call("GET", "/controls")["rules"]

    def rule(self, rule_id: int) -> dict:
        return self._call("GET", f"/controls/{rule_id}")

    def is_down(self) -> bool:
        return self._call("GET", "/controls")["down"]

    def remove(self, rule_id: int) -> None:
        self._call("DELETE", f"/controls/{rule_id}")

    def clear(self) -> int:
        return self._call("DELETE", "/controls")["removed"]

    def down(self) -> None:
        self._call("POST", "/controls/down")

    def up(self) -> None:
        self._call("POST", "/controls/up")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None):
    """Create a topic with confluent-kafka's admin client (waits for the answer)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=configs or {})],
                                  request_timeout=10)
    futures[name].result(timeout=15)


def run_kcat(*args, input: bytes | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (.ci/run installs it with apt)")
    return subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)


def run_kafkajs(script: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a driver script of compat_tests/js with node; it prints JSON lines."""
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        pytest.fail("kafkajs is not installed (.ci/run runs npm install in compat_tests/js)")
    return subprocess.run(["node", os.path.join(JS_DIR, script), *args], capture_output=True,
                          timeout=timeout, cwd=JS_DIR)


# --- The Python clients' records in one shape, so tests compare what came back over the wire ---

class Rec(collections.namedtuple("Rec", "partition offset key value headers timestamp")):
    """One consumed (or expected) record. Headers are a tuple of (str, bytes) pairs in the order
    they were sent (Kafka keeps duplicates and order); a record without headers has (). The
    timestamp is the CreateTime the producer set."""
    __slots__ = ()

    def __new__(cls, partition, offset, key, value, headers, timestamp):
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


def by_partition(records) -> dict[int, list]:
    """Records grouped by partition, keeping the order they arrived in."""
    out: dict[int, list] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


def consume_confluent(bootstrap: str, topic: str, partitions, count: int, *,
                      start: int | None = None, timeout: float = 30.0,
                      extra: dict | None = None) -> list[Rec]:
    """Read `count` records from the partitions with confluent-kafka (librdkafka), manually
    assigned (no group), from `start` (default the beginning); records in arrival order."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka import TIMESTAMP_CREATE_TIME
    # The binding wants a group.id even for assign(); with nothing subscribed and nothing
    # committed the consumer never joins that group.
    conf = {"bootstrap.servers": bootstrap, "group.id": unique("assign-only"),
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "error", "fetch.wait.max.ms": 100, **(extra or {})}
    c = Consumer(conf)
    try:
        offset = OFFSET_BEGINNING if start is None else start
        c.assign([TopicPartition(topic, p, offset) for p in partitions])
        out: list[Rec] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(num_messages=count - len(out), timeout=0.2):
                if m.error():
                    raise AssertionError(f"confluent consumer error: {m.error()}")
                ts_type, ts = m.timestamp()
                assert ts_type == TIMESTAMP_CREATE_TIME, (ts_type, ts)
                out.append(Rec(m.partition(), m.offset(), m.key(), m.value(), m.headers(), ts))
        return out
    finally:
        c.close()


def consume_kafka_python(bootstrap: str, topic: str, partitions, count: int, *,
                         start: int | None = None, timeout: float = 30.0) -> list[Rec]:
    """Read `count` records with kafka-python, manually assigned, no group."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", fetch_max_wait_ms=100,
                      request_timeout_ms=10_000)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            if start is None:
                c.seek_to_beginning(tp)
            else:
                c.seek(tp, start)
        out: list[Rec] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for tp, msgs in c.poll(timeout_ms=200).items():
                for m in msgs:
                    assert m.timestamp_type == 0, m   # CreateTime
                    out.append(Rec(m.partition, m.offset, m.key, m.value, m.headers,
                                   m.timestamp))
        return out
    finally:
        c.close()


def consume_aiokafka(bootstrap: str, topic: str, partitions, count: int, *,
                     start: int | None = None, timeout: float = 30.0) -> list[Rec]:
    """Read `count` records with aiokafka, manually assigned, no group (its own event loop)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="none",
                             fetch_max_wait_ms=100, request_timeout_ms=10_000)
        await c.start()
        out: list[Rec] = []
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            c.assign(tps)
            for tp in tps:
                if start is None:
                    await c.seek_to_beginning(tp)
                else:
                    c.seek(tp, start)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(out) < count and loop.time() < deadline:
                batches = await c.getmany(timeout_ms=200)
                for tp, msgs in batches.items():
                    for m in msgs:
                        assert m.timestamp_type == 0, m   # CreateTime
                        out.append(Rec(m.partition, m.offset, m.key, m.value, m.headers,
                                       m.timestamp))
        finally:
            await c.stop()
        return out

    return asyncio.run(asyncio.wait_for(run(), timeout + 20))


CONSUMERS = {"confluent": consume_confluent, "kafka-python": consume_kafka_python,
             "aiokafka": consume_aiokafka}


# --- A bare connection, for requests and bytes no stock client sends ---

class RawConnection:
    """One TCP connection speaking Kafka's framing directly: requests are built and responses
    parsed with trioka.wire.protocol, and every socket operation is bounded by `timeout`."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        import socket
        host, _, port = bootstrap.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self._correlation = itertools.count(1)

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exactly(self, n: int) -> bytes | None:
        """n bytes, or None if the peer closes first (after nothing or part of them)."""
        chunks, got = [], 0
        while got < n:
            try:
                chunk = self.sock.recv(n - got)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def read_frame(self) -> bytes | None:
        """The next response frame without its size prefix; None if the broker closed."""
        head = self._read_exactly(4)
        if head is None:
            return None
        size = int.from_bytes(head, "big", signed=True)
        return self._read_exactly(size)

    def request(self, api_key: int, version: int, message, *, decode_version: int | None = None,
                client_id: str | None = "trioka-raw-test"):
        """Send one request and return the decoded response (decoded as `decode_version`, for
        answers given at another version). ConnectionError if the broker closes instead."""
        from trioka.wire import protocol
        correlation_id = next(self._correlation)
        self.send(protocol.encode_request(api_key, version, correlation_id, client_id, message))
        frame = self.read_frame()
        if frame is None:
            raise ConnectionError(f"broker closed the connection instead of answering "
                                  f"api {api_key} v{version}")
        got, response = protocol.decode_response(
            api_key, version if decode_version is None else decode_version, frame)
        assert got == correlation_id, (got, correlation_id)
        return response

    def closed_by_broker(self) -> bool:
        """Wait (up to the timeout) for the broker to close: True at EOF or reset; False if it
        sent bytes instead; socket.timeout if it did neither."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


# Record-batch v2 attributes: the low three bits name the codec (record-batch.md).
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


StoredBatch = collections.namedtuple(
    "StoredBatch", "base_offset codec producer_id producer_epoch base_sequence record_count")

# Record-batch v2 header fields read here (record-batch.md), by byte position: base offset int64
# at 0, batch length int32 at 8, attributes int16 at 21, producer id int64 at 43, producer epoch
# int16 at 51, base sequence int32 at 53, record count int32 at 57.
_BATCH_HEAD = struct.Struct(">qi")
_BATCH_PRODUCER = struct.Struct(">qhii")


def stored_batches(data_dir: str, topic: str, partition: int) -> list[StoredBatch]:
    """The header of every batch stored in a partition's segment files, read from Kafka's on-disk
    layout (`<topic>-<partition>/<20-digit base offset>.log`)."""
    directory = os.path.join(data_dir, f"{topic}-{partition}")
    out = []
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".log")):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 61 <= len(data):
            base_offset, length = _BATCH_HEAD.unpack_from(data, pos)
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            pid, epoch, seq, count = _BATCH_PRODUCER.unpack_from(data, pos + 43)
            out.append(StoredBatch(base_offset, attributes & 0x07, pid, epoch, seq, count))
            pos += 12 + length
    return out


def cluster_id_of(b: BrokerProcess) -> str:
    """The cluster id the broker printed on its ready line."""
    for line in reversed(b.output):
        m = re.search(r"trioka ready: .* cluster (\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError("no ready line in the broker's output")


def advertised_api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """API key -> (min, max) version, as the broker's ApiVersions (v3) response lists them."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    request = protocol.request_class(ApiKey.API_VERSIONS)(
        client_software_name="trioka-compat", client_software_version="1")
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.API_VERSIONS, 3, request)
    assert response.error_code == 0, response
    return {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}


def advertised_api_keys(bootstrap: str) -> set[int]:
    """The API keys the broker's ApiVersions response lists."""
    return set(advertised_api_versions(bootstrap))


def produce_raw(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Produce one pre-built batch (e.g. from trioka.log.records.encode_batch) with acks=-1 over
    Produce v9; its base offset."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    produce = protocol.request_class(ApiKey.PRODUCE)
    topic_data = produce.TopicProduceData
    request = produce(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        topic_data(name=topic, partition_data=[
            topic_data.PartitionProduceData(index=partition, records=batch)])])
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.PRODUCE, 9, request)
    [part] = response.responses[0].partition_responses
    assert part.error_code == 0, part
    return part.base_offset


def fetch_raw_batches(bootstrap: str, topic: str, partition: int = 0, offset: int = 0) -> list:
    """The batches a Fetch (v11) returns for one partition from `offset`, decoded with trioka's
    record codec (trioka.log.records.Batch), so that what is stored (the codec attribute of each
    batch, its offsets) can be checked, not only what a client makes of it."""
    from trioka.log.records import iter_batches
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    fetch = protocol.request_class(ApiKey.FETCH)
    request = fetch(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=10 << 20,
                    isolation_level=0, session_id=0, session_epoch=-1,
                    topics=[fetch.FetchTopic(topic=topic, partitions=[
                        fetch.FetchTopic.FetchPartition(partition=partition, fetch_offset=offset,
                                                        partition_max_bytes=10 << 20)])],
                    forgotten_topics_data=[], rack_id="")
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.FETCH, 11, request)
    data = response.responses[0].partitions[0]
    assert data.error_code == 0, data
    return list(iter_batches(bytes(data.records or b"")))
