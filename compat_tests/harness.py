"""What the compat tests share, apart from the stock clients themselves (clients.py): the one way to
wait, unique names and topics, stock clients in processes of their own, and the bare wire (a raw
connection, the batches stored on disk or fetched as they are) for what no stock client shows.

The broker process itself is trioka.testing.process.BrokerProcess (the benchmark uses it too).

Every wait in these tests is `wait_for`: a condition polled until it holds, with a deadline shorter
than the test's timeout (pytest-timeout, 120 s unless a module says otherwise), so that a failure
says what was awaited instead of dying in a timeout traceback.
"""

import itertools
import json
import os
import subprocess
import sys
import threading
import time

_names = itertools.count(1)


def wait_for(condition, timeout: float, message, *, interval: float = 0.05):
    """Poll `condition()` until it returns something true, and return that. After `timeout`
    seconds fail with AssertionError naming what was awaited: `message`, or `message()` for one
    that describes the state at the deadline. `interval` is the pause between polls; 0 for a
    condition that waits by itself (a consumer's poll)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"not reached within {timeout} s: {what}")
        if interval:
            time.sleep(interval)


def unique(prefix: str = "t") -> str:
    """A name no other test of this run uses (pytest-xdist workers are separate processes)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None):
    """Create a topic with confluent-kafka's admin client (waits for the answer)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=configs or {})],
                                  request_timeout=10)
    futures[name].result(timeout=15)


# --- A stock client in a process of its own ---

class ClientProcess:
    """A Python program using a stock client, in a process of its own so that a test can SIGKILL
    it like a crashed application. It runs `script` (Python source) with `args` and prints one
    JSON object a line; `events` collects them as they come, `errors` its stderr."""

    def __init__(self, script: str, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr),
                         daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def latest(self, key: str, default=None):
        """The value of the last event that has `key`."""
        for event in reversed(self.events):
            if key in event:
                return event[key]
        return default

    def alive(self) -> bool:
        """True while it runs; AssertionError with its last error output once it has died."""
        assert self.proc.poll() is None, \
            "the client process died:\n" + "".join(self.errors[-30:])
        return True

    def kill(self) -> None:
        """SIGKILL (no LeaveGroup, no transaction abort: only the broker's timeouts tell)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


GROUP_MEMBER = """
import json, sys
from confluent_kafka import Consumer
c = Consumer(json.loads(sys.argv[1]))
c.subscribe([sys.argv[2]])
last = None
while True:
    c.poll(0.05)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print(json.dumps({"assignment": now}), flush=True)
        last = now
"""


def group_member(config: dict, topic: str) -> ClientProcess:
    """A confluent-kafka consumer in a process of its own: it joins the group of `config`
    (classic or KIP-848, as `group.protocol` says), subscribes to `topic` and says its
    assignment, {"assignment": [partitions]}, whenever it changes."""
    return ClientProcess(GROUP_MEMBER, json.dumps(config), topic)


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


# The codec ids of record-batch v2 (the low three bits of a batch's attributes).
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_batches(data_dir: str, topic: str, partition: int) -> list:
    """The header (trioka.log.batch.BatchInfo) of every batch stored in a partition's segment
    files, read from Kafka's on-disk layout (`<topic>-<partition>/<20-digit base offset>.log`):
    what the broker wrote, not what a client makes of it."""
    from trioka.log.batch import HEADER_SIZE, read_header
    directory = os.path.join(data_dir, f"{topic}-{partition}")
    out = []
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".log")):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + HEADER_SIZE <= len(data):
            header = read_header(data, pos)
            out.append(header)
            pos += header.size
    return out


def segment_base_offsets(data_dir: str, topic: str, partition: int = 0) -> list[int]:
    """The base offsets of a partition's segment files, oldest first (the last one is the
    active segment, which retention and the cleaner leave alone)."""
    directory = os.path.join(data_dir, f"{topic}-{partition}")
    return sorted(int(n[:-len(".log")]) for n in os.listdir(directory) if n.endswith(".log"))


def cleaner_checkpoint(data_dir: str, topic: str, partition: int = 0) -> int:
    """The partition's first dirty offset in the broker's `cleaner-offset-checkpoint` (Kafka's
    file in the data directory: a version line, a count line, then `topic partition offset`
    lines); -1 before the cleaner first cleaned it."""
    try:
        with open(os.path.join(data_dir, "cleaner-offset-checkpoint")) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return -1
    for line in lines[2:]:
        fields = line.split()
        if len(fields) == 3 and fields[0] == topic and int(fields[1]) == partition:
            return int(fields[2])
    return -1


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


# ------------------------------------------------------------------------ three-node clusters

# Faster than Kafka's defaults, so that a cluster test sees a fencing or an ISR shrink in seconds.
FAST_FAILURE = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "3000",
    "default.replication.factor": "3",
}


def partition_info(admin, topic: str, partition: int = 0):
    """A partition's metadata (leader, replicas, isrs) as a confluent-kafka AdminClient sees it."""
    return admin.list_topics(topic, timeout=10).topics[topic].partitions.get(partition)
