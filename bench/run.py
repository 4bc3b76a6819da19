"""trioka's benchmark: a real broker process driven by confluent-kafka (librdkafka) clients.

    python bench/run.py                  # the whole matrix (a few minutes)
    python bench/run.py --quick          # a subset with less data (under a minute)
    python bench/run.py --json out.json  # also write every number as JSON
    python bench/run.py --only "10KB p1" # only the throughput cases whose name contains this
    python bench/run.py --profile DIR    # profile the broker: 10 KB acks=all produce, then consume

It starts `python -m trioka serve --listeners PLAINTEXT://127.0.0.1:0 --data-dir <tmp>` itself and
reads the port from the ready line. Producers and consumers run in separate processes (this script
started again with --worker), so the client, the broker and this orchestrator never share a GIL.
A worker connects and warms up, says `ready`, and starts only when the orchestrator answers `go`:
the broker's CPU time is read at `go` and at `done`, so each phase's broker CPU-seconds cover
exactly the measured window. CPU time is user + system time, read from /proc/PID/task/*/schedstat
(nanoseconds); the JSON also has the /proc/PID/stat utime + stime figure (10 ms ticks).

What is measured:

* startup: spawn of the broker process -> its first Metadata answer, over a raw socket
  (ApiVersions v0, then Metadata v0 for all topics); the median of several fresh starts.
* idle RSS (VmRSS in /proc/PID/status) after startup and after the whole run, and the peak
  (VmHWM), so memory that grows with the data streamed through shows up.
* throughput: for each case a fresh topic; a tight producer loop (BufferError -> poll) with
  linger.ms 5 and 1 MB batches, timed from `go` until flush() returns (every message
  acknowledged); then a consumer with assign() from offset 0 and librdkafka's fetch defaults,
  timed from `go` until the last message, counting value bytes exactly. The consumed count and
  bytes and the partitions' high watermarks (ListOffsets over the wire) must equal what was
  produced, or the run fails. MB is 10^6 bytes of message values.
  Payloads: random bytes for the uncompressed cases, realistic JSON event text for the lz4 cases
  (so that lz4 has real work and does not shrink the data to nothing); consecutive messages never
  repeat within lz4's window. `stored` is the bytes of the partitions' .log files per value byte.
  `bound` is value MB per broker CPU-second: what the broker would sustain if its own CPU were
  the only limit. On a shared 2-core machine it is much steadier than MB/s, and comparing the
  broker's CPU% with 100% says whether the broker or the client was the bottleneck.
* page cache: on a VM, writing into memory the guest has not used lately costs far more than
  writing into pages just freed (the hypervisor backs guest memory on first touch and takes back
  free pages: free page reporting). The run first measures that `write ceiling` for plain 1 MB
  os.write() calls, then, before each produce phase, writes and deletes as many bytes as the
  broker will append, so the broker's appends land in backed pages as on a long-running server.
  --no-prewarm measures the cold case instead.
* end-to-end latency: a stream paced at --e2e-rate messages/s (linger.ms 5; consumer
  fetch.wait.max.ms 10), each value carrying its send time (CLOCK_MONOTONIC, shared by all
  processes of the machine); latency = time poll() returned it - time before produce().
* wake-up latency: single messages with random gaps of 30-70 ms to a consumer whose fetch waits
  up to 500 ms (fetch.wait.max.ms 500): how fast a long-polling Fetch is woken by an append.
  The producer uses linger.ms 0 here, so the number is the broker's and not the producer's
  batching delay; `ack` is the producer's produce -> delivery report time of the same messages.

Client settings that differ from librdkafka's defaults, and why:
* producer: linger.ms 5, batch.size 1000000, queue.buffering.max.messages 1000000 (the default
  100000 throttles a 100-byte loop), delivery.report.only.error (no Python callback per message;
  failures still count).
* throughput consumer: fetch.queue.backoff.ms 1 (default 1000). librdkafka stops fetching for
  that long whenever its local queue holds more than queued.max.messages.kbytes (64 MiB, i.e.
  ~6,500 10 KB messages), so with the default a consumer that keeps up still idles a second at a
  time and measures ~150-250 MB/s regardless of the broker. Everything else is default:
  fetch.max.bytes 50 MB, max.partition.fetch.bytes 1 MB, fetch.wait.max.ms 500. A group.id is set
  only because the Python binding demands one; assign() joins no group.
--producer-config / --consumer-config KEY=VALUE change the throughput clients' settings.

lz4: librdkafka enables its LZ4 feature only if the broker advertises FindCoordinator, and
otherwise silently sends uncompressed batches. The table's `stored codec` column reads the stored
batches' attributes, and marks with `!` a case whose batches are not compressed as asked.
"""

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from trioka.testing import process as testing_process
from trioka.testing.process import LineReader

MB = 1_000_000
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Floors this broker must reach on a 2-core machine.
FLOORS = {
    "startup_s": 0.25,
    "idle_rss_mib": 40,
    "produce_10KB_acks_all_p1_MBps": 400,
    "consume_10KB_p1_MBps": 1000,
    "produce_100B_msgps": 1_000_000,
    "e2e_p50_ms": 6,
    "e2e_p99_ms": 12,
}


# ------------------------------------------------------------------------------- the broker

class BrokerProcess(testing_process.BrokerProcess):
    """The broker process of trioka.testing.process (start, ready line, stop) with what the
    benchmark reads of it: CPU time and memory from /proc. No admin endpoint, as in production;
    `profile_to` runs the broker under cProfile (the profile is written at SIGTERM)."""

    def __init__(self, data_dir: str, *, profile_to: str | None = None):
        super().__init__(data_dir, admin_listener=False,
                         python_options=["-m", "cProfile", "-o", profile_to] if profile_to else ())

    def cpu_ticks_seconds(self) -> float:
        """utime + stime of the broker process so far (/proc/PID/stat, 10 ms resolution)."""
        with open(f"/proc/{self.pid}/stat") as f:
            text = f.read()
        fields = text[text.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def cpu_seconds(self) -> float:
        """The same CPU time (user + system) with nanosecond resolution: the sum over the
        process's threads of /proc/PID/task/TID/schedstat's first field (time on a CPU). Phases
        of a fraction of a second need that; /proc/PID/stat counts in 10 ms ticks."""
        total = 0
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            return self.cpu_ticks_seconds()
        return total / 1e9

    def memory(self) -> dict:
        """VmRSS (resident now) and VmHWM (the peak) in MiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024
        return out

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: a graceful shutdown (and, under cProfile, the profile gets written)."""
        return super().stop(timeout)


# ------------------------------------------------------------------- startup: a raw Metadata

def _frame(api_key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    """A request with header v1: api key, version, correlation id, client id."""
    client = b"trioka-bench"
    message = struct.pack(">hhih", api_key, version, correlation_id, len(client)) + client + body
    return struct.pack(">i", len(message)) + message


def _read_frame(sock: socket.socket) -> bytes:
    def exactly(n):
        chunks, got = [], 0
        while got < n:
            chunk = sock.recv(n - got)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def first_metadata(port: int, deadline: float) -> None:
    """ApiVersions v0 then Metadata v0 (all topics) until the broker answers both properly."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(_frame(18, 0, 1))
                answer = _read_frame(sock)
                correlation_id, error_code = struct.unpack_from(">ih", answer)
                if correlation_id != 1 or error_code != 0:
                    raise RuntimeError(f"ApiVersions answered {correlation_id} {error_code}")
                sock.sendall(_frame(3, 0, 2, struct.pack(">i", 0)))
                answer = _read_frame(sock)
                correlation_id, brokers, node_id, host_len = struct.unpack_from(">iiih", answer)
                (advertised_port,) = struct.unpack_from(">i", answer, 14 + host_len)
                if correlation_id != 2 or brokers != 1 or advertised_port != port:
                    raise RuntimeError("Metadata answer does not describe this broker")
                return
        except (ConnectionError, socket.timeout, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)   # the next attempt of a bounded poll


def measure_startup(samples: int, tmp: str) -> dict:
    times, ready = [], []
    for i in range(samples):
        data_dir = tempfile.mkdtemp(prefix=f"startup{i}-", dir=tmp)
        broker = BrokerProcess(data_dir).start()
        try:
            first_metadata(broker.port, time.monotonic() + 10)
            done = time.perf_counter()
            times.append(done - broker.spawned_at)
            ready.append(broker.ready_at - broker.spawned_at)
        finally:
            broker.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
    return {"median_s": statistics.median(times), "samples_s": times,
            "ready_line_median_s": statistics.median(ready)}


# ----------------------------------------------------------------------------- the workers

class Worker:
    """This script run again with --worker KIND: it says `ready`, waits for `go`, prints
    `done {json}`."""

    def __init__(self, kind: str, spec: dict, tmp: str):
        self.kind = kind
        self.err_path = os.path.join(tmp, f"worker-{kind}-{os.getpid()}-{time.monotonic_ns()}.err")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        self.lines = LineReader(self.proc.stdout)

    def expect(self, word: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.readline(deadline)
            if line is None:
                self.fail(f"worker {self.kind} exited before {word!r}")
            if line.startswith(word):
                return line[len(word):].strip()

    def go(self) -> None:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict:
        out = json.loads(self.expect("done", timeout))
        self.proc.wait(30)
        self.err.close()
        # librdkafka logs problems (disconnects, retries) to stderr: keep them with the result.
        with open(self.err_path, "rb") as f:
            log = f.read().decode(errors="replace").splitlines()
        if log:
            out["client_log"] = log[-20:]
            say(f"  {self.kind} worker said:\n    " + "\n    ".join(log[-20:]))
        return out

    def fail(self, why: str):
        self.proc.kill()
        self.proc.wait(10)
        self.err.close()
        with open(self.err_path, "rb") as f:
            tail = f.read()[-4000:].decode(errors="replace")
        raise RuntimeError(f"{why}\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self.err.closed:
            self.err.close()


def _wait_for_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("no go from the orchestrator")


def _done(result: dict) -> None:
    print("done " + json.dumps(result), flush=True)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Alan",
         "Radia", "Edsger", "Shafi", "Leslie", "Hedy", "Niklaus", "Sophie", "Tim", "Jean"]
SURNAMES = ["Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie",
            "Allen", "Turing", "Perlman", "Dijkstra", "Goldwasser", "Lamport", "Lamarr", "Wirth"]
COUNTRIES = ["DE", "FR", "GB", "US", "JP", "BR", "IN", "NL", "SE", "ES", "IT", "CA", "AU"]
EVENTS = ["page_view", "add_to_cart", "checkout", "search", "login", "logout", "purchase",
          "refund", "click", "impression", "signup"]
WORDS = ["products", "shoes", "garden", "kitchen", "sale", "new", "books", "music", "outdoor",
         "account", "orders", "help", "electronics", "toys", "deals", "men", "women", "kids"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537",
          "okhttp/4.12.0", "python-requests/2.32.3", "curl/8.8.0"]


def json_events(size: int, rng: random.Random) -> bytes:
    """`size` bytes of newline-separated JSON events, as an application might log them."""
    parts, total = [], 0
    while total < size:
        event = {
            "event_id": "%016x" % rng.getrandbits(64),
            "ts": 1_700_000_000_000 + rng.randrange(100_000_000),
            "type": rng.choice(EVENTS),
            "user": {"id": rng.randrange(1_000_000),
                     "name": f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
                     "country": rng.choice(COUNTRIES)},
            "page": "/" + "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))),
            "session": "%08x" % rng.getrandbits(32),
            "amount": round(rng.random() * 500, 2),
            "items": [{"sku": "SKU-%06d" % rng.randrange(1_000_000), "qty": rng.randint(1, 5)}
                      for _ in range(rng.randint(0, 3))],
            "user_agent": rng.choice(AGENTS),
        }
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        parts.append(line)
        total += len(line)
    return b"".join(parts)[:size]


def payload_pool(size: int, kind: str, seed: int = 1) -> list[bytes]:
    """Distinct payloads of `size` bytes, cut without overlap from one buffer (at most 8 MB), so
    that neighbouring messages of a batch never repeat each other."""
    count = max(64, min(8192, (8 * MIB) // size))
    rng = random.Random(seed)
    data = rng.randbytes(count * size) if kind == "random" else json_events(count * size, rng)
    return [data[i * size:(i + 1) * size] for i in range(count)]


# The Python binding wants a group.id even for assign(); with assign() no group is joined.
NO_GROUP = "trioka-bench-unused"


def worker_produce(spec: dict) -> None:
    from confluent_kafka import Producer
    errors = []

    def on_delivery(err, msg):
        errors.append(str(err))

    p = Producer({"bootstrap.servers": spec["bootstrap"], "acks": spec["acks"],
                  "linger.ms": 5, "batch.size": 1_000_000,
                  "compression.type": spec["compression"],
                  "queue.buffering.max.messages": 1_000_000,
                  "delivery.report.only.error": True, "on_delivery": on_delivery,
                  **spec.get("client_config", {})})
    pool = payload_pool(spec["size"], spec["payload"])
    topic = spec["topic"]
    # Warm-up: connections, metadata and the first batch out of the way.
    p.produce(topic, pool[-1])
    if p.flush(30) != 0:
        raise SystemExit("warm-up message not acknowledged")
    count = spec["count"]
    produce, poll = p.produce, p.poll
    _wait_for_go()
    cpu0, t0 = _cpu(), time.perf_counter()
    n = 0
    for value in itertools.islice(itertools.cycle(pool), count):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.001)   # librdkafka's queue is full: serve it until there is room
        n += 1
        if not n & 0xFFFF:
            poll(0)
    left = p.flush(120)
    t1, cpu1 = time.perf_counter(), _cpu()
    if left or errors:
        raise SystemExit(f"{left} messages not delivered, errors: {errors[:5]}")
    _done({"seconds": t1 - t0, "count": count, "bytes": count * spec["size"],
           "client_cpu_s": cpu1 - cpu0,
           "total_count": count + 1, "total_bytes": (count + 1) * spec["size"]})


def worker_consume(spec: dict) -> None:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": NO_GROUP,
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "fetch.queue.backoff.ms": 1, **spec.get("client_config", {})})
    topic, expected = spec["topic"], spec["count"]
    c.list_topics(topic, timeout=10)   # connected, metadata known
    consume = c.consume
    _wait_for_go()
    cpu0, t0 = _cpu(), time.perf_counter()
    c.assign([TopicPartition(topic, p, 0) for p in range(spec["partitions"])])
    count = nbytes = 0
    deadline = time.monotonic() + spec.get("timeout", 120)
    while count < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"consumed {count} of {expected} messages in time")
        messages = consume(num_messages=min(10_000, expected - count), timeout=1.0)
        for m in messages:
            if m.error():
                raise SystemExit(f"consumer error: {m.error()}")
            nbytes += len(m)   # the value's length, without copying it out
        count += len(messages)
    t1, cpu1 = time.perf_counter(), _cpu()
    high = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
               for p in range(spec["partitions"]))
    c.close()
    _done({"seconds": t1 - t0, "count": count, "bytes": nbytes, "client_cpu_s": cpu1 - cpu0,
           "high_watermarks": high})


# A latency probe's value: kind (W warm-up, M measured, E end), sequence, send time in ns.
PROBE = struct.Struct(">cqq")


def worker_latency_producer(spec: dict) -> None:
    """Paced messages (rate) or single messages with gaps (gap_ms), each carrying its send time."""
    from confluent_kafka import Producer
    acks = []
    p = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "all",
                  "linger.ms": spec["linger_ms"], "batch.size": 1_000_000})
    topic = spec["topic"]
    pad = random.Random(2).randbytes(max(0, spec["size"] - PROBE.size))
    p.produce(topic, PROBE.pack(b"W", -1, time.monotonic_ns()) + pad)
    p.flush(30)
    _wait_for_go()
    rng = random.Random(3)
    warm, count = spec["warmup"], spec["count"]
    start = time.monotonic()
    interval = 1.0 / spec["rate"] if spec.get("rate") else None
    due = start
    for i in range(warm + count):
        kind = b"W" if i < warm else b"M"
        if interval:
            due = start + i * interval
        while True:    # pacing the stream, not waiting for anything
            left = due - time.monotonic()
            if left <= 0:
                break
            time.sleep(left)
        sent = time.monotonic_ns()
        if interval:
            p.produce(topic, PROBE.pack(kind, i, sent) + pad)
            p.poll(0)
        else:
            def acked(err, msg, sent=sent, measured=kind == b"M"):
                if err is None and measured:
                    acks.append(time.monotonic_ns() - sent)
            p.produce(topic, PROBE.pack(kind, i, sent) + pad, on_delivery=acked)
            p.flush(10)
            due = time.monotonic() + rng.uniform(*spec["gap_ms"]) / 1000
    p.produce(topic, PROBE.pack(b"E", -1, time.monotonic_ns()))
    left = p.flush(30)
    _done({"sent": count, "undelivered": left, "ack_ns": acks,
           "seconds": time.monotonic() - start})


def worker_latency_consumer(spec: dict) -> None:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": NO_GROUP,
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "fetch.wait.max.ms": spec["fetch_wait_ms"]})
    topic = spec["topic"]
    c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, 0, 0)])
    latencies = []
    first_warm = first_measured_sent = None
    deadline = time.monotonic() + spec.get("timeout", 120)
    print("ready", flush=True)   # consuming already: the producer may start
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        now = time.monotonic_ns()
        if m is None:
            continue
        if m.error():
            raise SystemExit(f"consumer error: {m.error()}")
        kind, seq, sent = PROBE.unpack_from(m.value())
        if kind == b"E":
            break
        if kind == b"M":
            latencies.append(now - sent)
            if first_measured_sent is None:
                first_measured_sent = sent
        elif seq >= 0 and first_warm is None:
            first_warm = now
    c.close()
    _done({"latency_ns": latencies,
           "caught_up_before_measuring": first_warm is not None and first_measured_sent
           is not None and first_warm < first_measured_sent})


WORKERS = {"produce": worker_produce, "consume": worker_consume,
           "latency-producer": worker_latency_producer,
           "latency-consumer": worker_latency_consumer}


# ------------------------------------------------------------------------------ the phases

class Admin:
    """Topic creation and deletion with confluent-kafka's AdminClient (waits for the answers)."""

    def __init__(self, bootstrap: str):
        from confluent_kafka.admin import AdminClient
        self.client = AdminClient({"bootstrap.servers": bootstrap})

    def create(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import NewTopic
        futures = self.client.create_topics([NewTopic(name, partitions, 1)], request_timeout=15)
        futures[name].result(timeout=20)

    def delete(self, name: str) -> None:
        self.client.delete_topics([name], request_timeout=15)[name].result(timeout=20)


def write_file(directory: str, nbytes: int) -> dict:
    """Append `nbytes` in 1 MB writes to a new file, as the broker appends batches, and remove it;
    the rate and the CPU of this process while writing."""
    path = os.path.join(directory, f"write-{time.monotonic_ns()}.bin")
    chunk = bytes(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        cpu0, t0 = _cpu(), time.perf_counter()
        for _ in range(max(1, nbytes // MIB)):
            os.write(fd, chunk)
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    finally:
        os.close(fd)
        os.remove(path)
    return {"MBps": max(1, nbytes // MIB) * MIB / seconds / MB, "cpu_pct": 100 * cpu / seconds}


def write_ceiling(directory: str, nbytes: int) -> dict:
    """What one core gets from plain 1 MB os.write()s on this machine: into memory that has not
    been used for a while (the first file), and into the page-cache pages just freed by deleting
    it (the second). On a VM the first can be several times slower: the hypervisor backs guest
    memory on first touch (and takes back pages that stay free)."""
    fresh = write_file(directory, nbytes)
    reused = write_file(directory, nbytes)
    return {"fresh_pages": fresh, "reused_pages": reused, "bytes": nbytes}


CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def stored(data_dir: str, topic: str, partitions: int) -> tuple[int, dict]:
    """Bytes of the partitions' .log files, and how many of those bytes are in batches of each
    codec. A batch is base offset (int64), length (int32), then its header: the low three bits of
    the int16 attributes at byte 21 say how its records are compressed. (librdkafka sends a batch
    uncompressed when compressing would not make it smaller, e.g. a single short message.)"""
    total, codecs = 0, {}
    for p in range(partitions):
        d = os.path.join(data_dir, f"{topic}-{p}")
        for name in sorted(os.listdir(d)):
            if not name.endswith(".log"):
                continue
            path = os.path.join(d, name)
            size = os.path.getsize(path)
            total += size
            with open(path, "rb") as f:
                pos = 0
                while pos + 23 <= size:
                    f.seek(pos)
                    head = f.read(23)
                    (length,) = struct.unpack_from(">i", head, 8)
                    codec = CODECS.get(head[22] & 0x07, "?")
                    codecs[codec] = codecs.get(codec, 0) + 12 + length
                    pos += 12 + length
    return total, codecs


def run_phase(broker: BrokerProcess, kind: str, spec: dict, tmp: str, timeout: float, *,
              before_go=None, after_done=None) -> dict:
    """Start a worker, let it warm up, and time it with the broker's CPU read at go and done."""
    worker = Worker(kind, spec, tmp)
    try:
        worker.expect("ready", 60)
        if before_go:
            before_go()
        ticks0, cpu0, t0 = broker.cpu_ticks_seconds(), broker.cpu_seconds(), time.perf_counter()
        worker.go()
        result = worker.result(timeout)
        wall = time.perf_counter() - t0
        cpu = broker.cpu_seconds() - cpu0
        result["broker_cpu_s_from_stat"] = broker.cpu_ticks_seconds() - ticks0
        if after_done:
            after_done()
    except Exception:
        worker.close()
        raise
    result["broker_cpu_s"] = cpu
    result["broker_cpu_pct"] = 100 * cpu / wall
    result["client_cpu_pct"] = 100 * result["client_cpu_s"] / result["seconds"]
    result["msgps"] = result["count"] / result["seconds"]
    result["MBps"] = result["bytes"] / result["seconds"] / MB
    # What the broker would sustain if its CPU were the only limit: value bytes per broker
    # CPU-second. Far steadier than MB/s on a shared machine.
    result["broker_bound_MBps"] = result["bytes"] / max(cpu, 1e-3) / MB
    return result


class Case:
    def __init__(self, size: int, partitions: int, acks: str, compression: str, count: int):
        self.size, self.partitions, self.acks = size, partitions, acks
        self.compression, self.count = compression, count

    @property
    def name(self) -> str:
        size = f"{self.size // 1024}KB" if self.size >= 1024 else f"{self.size}B"
        return f"{size} p{self.partitions} acks={self.acks} {self.compression}"


def cases(quick: bool) -> list[Case]:
    small, large = (1_000_000, 50_000) if quick else (3_000_000, 100_000)
    if quick:
        return [Case(100, 1, "1", "none", small), Case(10240, 1, "all", "none", large),
                Case(100, 6, "all", "lz4", small), Case(10240, 6, "1", "lz4", large)]
    out = []
    for size, count in ((100, small), (10240, large)):
        for partitions in (1, 6):
            for acks in ("1", "all"):
                for compression in ("none", "lz4"):
                    out.append(Case(size, partitions, acks, compression, count))
    return out


def broker_said(broker: BrokerProcess, since: int) -> list:
    """What the broker printed (warnings, errors) since line `since` of its output."""
    lines = broker.output[since:]
    if lines:
        say("  the broker said:\n    " + "\n    ".join(lines[-30:]))
    return lines


def run_case(broker: BrokerProcess, admin: Admin, case: Case, tmp: str,
             client_configs: dict | None = None, prewarm: bool = True) -> dict:
    client_configs = client_configs or {}
    said = len(broker.output)
    topic = "bench-" + re.sub(r"[^a-z0-9]+", "-", case.name.lower()) + f"-{time.monotonic_ns()}"
    admin.create(topic, case.partitions)
    spec = {"bootstrap": broker.bootstrap, "topic": topic, "size": case.size,
            "acks": case.acks, "compression": case.compression, "count": case.count,
            "payload": "random" if case.compression == "none" else "json",
            "partitions": case.partitions}
    out = {"case": case.name, "size": case.size, "partitions": case.partitions,
           "acks": case.acks, "compression": case.compression, "topic": topic}
    # Pre-warm: write and delete as many bytes as the broker is about to append, so that its
    # appends land in page-cache pages the VM already backs (as on a long-running server) and
    # the phase measures the broker rather than the hypervisor's first-touch cost.
    warm = (lambda: write_file(tmp, int(case.count * case.size * 1.2))) if prewarm else None
    out["produce"] = run_phase(broker, "produce",
                               dict(spec, client_config=client_configs.get("producer", {})),
                               tmp, timeout=300, before_go=warm)
    out["prewarmed"] = prewarm
    size, codecs = stored(broker.data_dir, topic, case.partitions)
    out["stored_per_value_byte"] = size / out["produce"]["total_bytes"]
    out["stored_codec_bytes"] = codecs
    # The codec of most stored bytes.
    out["stored_codec"] = max(codecs, key=codecs.get) if codecs else "-"
    consume_spec = dict(spec, count=out["produce"]["total_count"],
                        client_config=client_configs.get("consumer", {}))
    got = out["consume"] = run_phase(broker, "consume", consume_spec, tmp, timeout=300)
    out["broker_log"] = broker_said(broker, said)
    if (got["count"], got["bytes"], got["high_watermarks"]) != (
            out["produce"]["total_count"], out["produce"]["total_bytes"],
            out["produce"]["total_count"]):
        raise RuntimeError(f"{case.name}: consumed {got['count']} messages / {got['bytes']} "
                           f"bytes, high watermarks {got['high_watermarks']}; produced "
                           f"{out['produce']['total_count']} / {out['produce']['total_bytes']}")
    out["rss_mib"] = broker.memory()
    return out


def percentiles(values_ns: list) -> dict:
    if not values_ns:
        return {"count": 0}
    ms = sorted(v / 1e6 for v in values_ns)

    def pct(p):
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]
    return {"count": len(ms), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": ms[-1], "mean_ms": statistics.fmean(ms)}


def run_latency(broker: BrokerProcess, admin: Admin, tmp: str, *, linger_ms: int,
                fetch_wait_ms: int, size: int, rate: float | None = None,
                gap_ms: tuple | None = None, warmup: int, count: int) -> dict:
    topic = f"bench-latency-{time.monotonic_ns()}"
    admin.create(topic, 1)
    base = {"bootstrap": broker.bootstrap, "topic": topic}
    consumer = Worker("latency-consumer", dict(base, fetch_wait_ms=fetch_wait_ms), tmp)
    producer = None
    try:
        consumer.expect("ready", 60)
        producer = Worker("latency-producer",
                          dict(base, linger_ms=linger_ms, size=size, rate=rate, gap_ms=gap_ms,
                               warmup=warmup, count=count), tmp)
        producer.expect("ready", 60)
        cpu0, t0 = broker.cpu_seconds(), time.perf_counter()
        producer.go()
        sent = producer.result(120)
        got = consumer.result(60)
        wall = time.perf_counter() - t0
        cpu = broker.cpu_seconds() - cpu0
    except Exception:
        consumer.close()
        if producer:
            producer.close()
        raise
    admin.delete(topic)
    if len(got["latency_ns"]) != sent["sent"] or sent["undelivered"]:
        raise RuntimeError(f"latency run: sent {sent['sent']}, received "
                           f"{len(got['latency_ns'])}, undelivered {sent['undelivered']}")
    out = {"latency": percentiles(got["latency_ns"]), "messages": sent["sent"],
           "consumer_caught_up_before_measuring": got["caught_up_before_measuring"],
           "broker_cpu_s": cpu, "broker_cpu_pct": 100 * cpu / wall,
           "linger_ms": linger_ms, "fetch_wait_max_ms": fetch_wait_ms, "size": size}
    if rate:
        out["rate_msgps"] = rate
    if gap_ms:
        out["gap_ms"] = list(gap_ms)
        out["ack"] = percentiles(sent["ack_ns"])
    return out


def run_rebalance(broker: BrokerProcess, admin: Admin, repeats: int) -> dict:
    """How long a second member's joining takes, with each group protocol at its defaults:
    confluent-kafka consumers, a 6-partition topic, timed from the second member's subscribe()
    until both hold disjoint halves (their own assignment()). Classic: librdkafka's eager
    range/roundrobin with heartbeat.interval.ms 3000; consumer (KIP-848): the broker assigns,
    heartbeats every group.consumer.heartbeat.interval.ms (5000)."""
    from confluent_kafka import Consumer

    def parts(c):
        return {tp.partition for tp in c.assignment()}

    def wait(consumers, done, what):
        deadline = time.monotonic() + 60
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"rebalance phase: {what} not reached in 60 s")
            for c in consumers:
                c.poll(0.01)

    out = {}
    for protocol in ("classic", "consumer"):
        runs = []
        for _ in range(repeats):
            topic = f"bench-rebalance-{time.monotonic_ns()}"
            admin.create(topic, 6)
            conf = {"bootstrap.servers": broker.bootstrap, "group.id": topic,
                    "group.protocol": protocol}
            first, second = Consumer(conf), None
            try:
                first.subscribe([topic])
                wait([first], lambda: len(parts(first)) == 6, "first member")
                second = Consumer(conf)
                t0 = time.perf_counter()
                second.subscribe([topic])
                wait([first, second], lambda: len(parts(first)) == len(parts(second)) == 3
                     and not parts(first) & parts(second), "two members")
                runs.append(time.perf_counter() - t0)
            finally:
                for c in (first, second):
                    if c is not None:
                        c.close()
            admin.delete(topic)
        out[protocol] = {"median_s": statistics.median(runs), "runs_s": runs}
    return out


# --------------------------------------------------------------------------------- reports

def table(results: dict) -> str:
    lines = []
    m = results["machine"]
    lines.append(f"machine: {m['cpus']} CPUs, load average {m['loadavg_at_start'][0]:.2f} at the "
                 f"start, {m.get('loadavg_at_end', (0,))[0]:.2f} at the end (other work on the "
                 f"machine makes every number noisier)")
    s = results["startup"]
    lines.append(f"startup to first Metadata: median {s['median_s'] * 1000:.0f} ms "
                 f"(ready line {s['ready_line_median_s'] * 1000:.0f} ms; samples "
                 + ", ".join(f"{x * 1000:.0f}" for x in s["samples_s"]) + " ms)")
    m = results["memory"]
    lines.append(f"broker RSS: idle after startup {m['idle_after_startup']['VmRSS']:.1f} MiB, "
                 f"idle after the run {m['idle_after_run']['VmRSS']:.1f} MiB, "
                 f"peak {m['idle_after_run']['VmHWM']:.1f} MiB")
    w = results.get("write_ceiling")
    if w:
        lines.append(f"page-cache write ceiling (one core, 1 MB os.write): "
                     f"{w['fresh_pages']['MBps']:,.0f} MB/s into fresh memory, "
                     f"{w['reused_pages']['MBps']:,.0f} MB/s into just-freed pages"
                     + ("" if results.get("prewarmed", True) else "  (no pre-warm)"))
    lines.append("")
    head = (f"{'case':<25}{'messages':>9} | {'produce msg/s':>13}{'MB/s':>6}{'broker CPU':>13}"
            f"{'bound':>7}{'client':>7} | {'consume msg/s':>13}{'MB/s':>6}{'broker CPU':>13}"
            f"{'bound':>7}{'client':>7} |{'stored':>7}{'stored':>7}{'RSS':>5}")
    lines.append(head)
    lines.append(f"{'':<25}{'':>9} | {'':>13}{'':>6}{'s    %':>13}{'MB/s':>7}{'CPU%':>7} | "
                 f"{'':>13}{'':>6}{'s    %':>13}{'MB/s':>7}{'CPU%':>7} |{'ratio':>7}{'codec':>7}"
                 f"{'MiB':>5}")
    lines.append("-" * len(head))
    downgraded = False

    def phase(x):
        return (f"{x['msgps']:>13,.0f}{x['MBps']:>6,.0f}{x['broker_cpu_s']:>8.2f}"
                f"{x['broker_cpu_pct']:>5.0f}{x['broker_bound_MBps']:>7,.0f}"
                f"{x['client_cpu_pct']:>7.0f}")
    for r in results["throughput"]:
        row = f"{r['case']:<25}{r['produce']['count']:>9} | {phase(r['produce'])} | "
        row += f"{phase(r['consume'])} |"
        codecs = r["stored_codec"]
        if codecs != r["compression"]:
            codecs += "!"
            downgraded = True
        row += f"{r['stored_per_value_byte']:>7.2f}{codecs:>7}{r['rss_mib']['VmRSS']:>5.0f}"
        lines.append(row)
    lines.append("")
    lines.append("MB = 10^6 bytes of message values. broker CPU: CPU-seconds in the phase and per "
                 "wall second (100% = one core); bound = value MB per broker CPU-second, the rate "
                 "if the broker's CPU were the only limit;\nclient CPU% = CPU-seconds per wall "
                 "second of the producer or consumer process (librdkafka's threads included). "
                 "stored ratio = bytes of .log files / value bytes; stored codec = the "
                 "compression of the stored batches; RSS = broker VmRSS after the case.")
    if downgraded:
        lines.append("! most stored bytes are not in the codec asked for. librdkafka enables LZ4 "
                     "only when the broker advertises FindCoordinator (key 10), and otherwise "
                     "sends its lz4 batches uncompressed")
    lines.append("")
    for key, title in (("e2e", "end-to-end"), ("wakeup", "wake-up")):
        r = results.get(key)
        if not r:
            continue
        lat = r["latency"]
        what = (f"{r['rate_msgps']:.0f} msg/s paced" if "rate_msgps" in r
                else f"single messages, gaps {r['gap_ms'][0]}-{r['gap_ms'][1]} ms")
        line = (f"{title} latency ({what}, linger.ms {r['linger_ms']}, fetch.wait.max.ms "
                f"{r['fetch_wait_max_ms']}, {lat['count']} messages): p50 {lat['p50_ms']:.2f} ms"
                f", p90 {lat['p90_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max "
                f"{lat['max_ms']:.2f} ms; broker CPU {r['broker_cpu_s']:.2f} s "
                f"({r['broker_cpu_pct']:.0f}%)")
        if "ack" in r and r["ack"]["count"]:
            line += f"; produce->ack p50 {r['ack']['p50_ms']:.2f} ms"
        lines.append(line)
    lines.append("")
    for name, (ok, text) in results["floors"].items():
        lines.append(f"{'PASS' if ok else 'FAIL'}  {name}: {text}")
    return "\n".join(lines)


def check_floors(results: dict) -> dict:
    out = {}
    s = results["startup"]["median_s"]
    out["startup"] = (s < FLOORS["startup_s"],
                      f"{s * 1000:.0f} ms < {FLOORS['startup_s'] * 1000:.0f} ms")
    rss = results["memory"]["idle_after_startup"]["VmRSS"]
    out["idle RSS"] = (rss < FLOORS["idle_rss_mib"],
                       f"{rss:.1f} MiB < {FLOORS['idle_rss_mib']} MiB")
    rss = results["memory"]["idle_after_run"]["VmRSS"]
    out["idle RSS after run"] = (rss < FLOORS["idle_rss_mib"],
                                 f"{rss:.1f} MiB < {FLOORS['idle_rss_mib']} MiB")
    for r in results["throughput"]:
        if r["size"] == 10240 and r["partitions"] == 1 and r["acks"] == "all" \
                and r["compression"] == "none":
            for phase, floor in (("produce", FLOORS["produce_10KB_acks_all_p1_MBps"]),
                                 ("consume", FLOORS["consume_10KB_p1_MBps"])):
                x = r[phase]
                out[f"10KB acks=all p1 {phase}"] = (
                    x["MBps"] >= floor,
                    f"{x['MBps']:,.0f} MB/s >= {floor:,} MB/s (broker CPU "
                    f"{x['broker_cpu_pct']:.0f}%, broker-bound {x['broker_bound_MBps']:,.0f} "
                    f"MB/s; {'producer' if phase == 'produce' else 'consumer'} CPU "
                    f"{x['client_cpu_pct']:.0f}%)")
    small = [r for r in results["throughput"] if r["size"] == 100]
    if small:
        best = max(small, key=lambda r: r["produce"]["msgps"])
        v = best["produce"]["msgps"]
        out["100B produce (best case)"] = (
            v >= FLOORS["produce_100B_msgps"],
            f"{v:,.0f} msg/s >= 1,000,000 ({best['case']}; broker CPU "
            f"{best['produce']['broker_cpu_pct']:.0f}%, producer CPU "
            f"{best['produce']['client_cpu_pct']:.0f}%)")
    if results.get("e2e"):
        lat = results["e2e"]["latency"]
        out["e2e p50"] = (lat["p50_ms"] < FLOORS["e2e_p50_ms"], f"{lat['p50_ms']:.2f} ms < 6 ms")
        out["e2e p99"] = (lat["p99_ms"] < FLOORS["e2e_p99_ms"], f"{lat['p99_ms']:.2f} ms < 12 ms")
    return out


# ------------------------------------------------------------------------------------ main

def run_benchmark(args) -> dict:
    tmp = tempfile.mkdtemp(prefix="trioka-bench-")
    results: dict = {"quick": args.quick, "machine": {"cpus": os.cpu_count(),
                                                      "loadavg_at_start": os.getloadavg()}}
    client_configs = {"producer": dict(args.producer_config),
                      "consumer": dict(args.consumer_config)}
    results["client_config_overrides"] = client_configs
    results["prewarmed"] = not args.no_prewarm
    broker = None
    try:
        say("startup ...")
        results["startup"] = measure_startup(3 if args.quick else 5, tmp)
        say("page-cache write ceiling ...")
        results["write_ceiling"] = write_ceiling(tmp, (256 if args.quick else 512) * MIB)
        data_dir = os.path.join(tmp, "data")
        broker = BrokerProcess(data_dir).start()
        first_metadata(broker.port, time.monotonic() + 10)
        results["memory"] = {"idle_after_startup": broker.memory()}
        admin = Admin(broker.bootstrap)
        results["throughput"] = []
        for case in cases(args.quick):
            if args.only and args.only not in case.name:
                continue
            say(f"{case.name} ...")
            r = run_case(broker, admin, case, tmp, client_configs, prewarm=not args.no_prewarm)
            results["throughput"].append(r)
            admin.delete(r["topic"])
            say(f"  produce {r['produce']['msgps']:,.0f} msg/s {r['produce']['MBps']:,.0f} MB/s"
                f", consume {r['consume']['msgps']:,.0f} msg/s {r['consume']['MBps']:,.0f} MB/s")
        if not args.only:
            say("end-to-end latency ...")
            seconds = 2 if args.quick else 5
            results["e2e"] = run_latency(broker, admin, tmp, linger_ms=5, fetch_wait_ms=10,
                                         size=100, rate=args.e2e_rate,
                                         warmup=int(args.e2e_rate // 2),
                                         count=int(args.e2e_rate * seconds))
            say("wake-up latency ...")
            results["wakeup"] = run_latency(broker, admin, tmp, linger_ms=0, fetch_wait_ms=500,
                                            size=100, gap_ms=(30, 70), warmup=3,
                                            count=30 if args.quick else 100)
            say("rebalance (a second member joins) ...")
            r = results["rebalance"] = run_rebalance(broker, admin, 1 if args.quick else 3)
            say(f"  classic protocol {r['classic']['median_s']:.2f} s, consumer protocol "
                f"(KIP-848) {r['consumer']['median_s']:.2f} s (median)")
        # Idle again: no client connected, every topic deleted.
        del admin
        results["memory"]["idle_after_run"] = broker.memory()
        results["floors"] = check_floors(results)
        results["machine"]["loadavg_at_end"] = os.getloadavg()
    finally:
        if broker:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def run_profile(args) -> None:
    """Profile the broker under the 10 KB acks=all produce, then (restarted on the same data)
    under consumes of what was produced (three in a row, for enough samples), and print where its
    CPU time goes. The produce is pre-warmed as in the benchmark.

    py-spy (default when installed: `pip install py-spy`) samples the running broker from outside
    at 500 Hz between the first `go` and the last `done`, without slowing it much; only samples
    where the broker is running count (not those waiting in epoll). cProfile instruments every
    call, which inflates the cost of small functions, but gives exact call counts."""
    tool = args.profiler or ("py-spy" if shutil.which("py-spy") else "cprofile")
    os.makedirs(args.profile, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="trioka-bench-profile-")
    data_dir = os.path.join(tmp, "data")
    spec = {"topic": "bench-profile", "size": 10240, "acks": "all", "compression": "none",
            "count": args.profile_count, "payload": "random", "partitions": 1}
    reports = []
    try:
        for phase, runs in (("produce", 1), ("consume", 3)):
            out_path = os.path.join(args.profile, phase + (".prof" if tool == "cprofile"
                                                           else ".txt"))
            broker = BrokerProcess(data_dir, profile_to=out_path if tool == "cprofile"
                                   else None).start()
            spec["bootstrap"] = broker.bootstrap
            if phase == "produce":
                admin = Admin(broker.bootstrap)
                admin.create(spec["topic"], 1)
                del admin
            else:
                spec["count"] = reports[0][1][0]["total_count"]
            spy = []

            def start_spy(spy=spy, pid=broker.pid, out_path=out_path, phase=phase):
                if phase == "produce" and not args.no_prewarm:
                    write_file(tmp, int(spec["count"] * spec["size"] * 1.2))
                if tool == "py-spy" and not spy:
                    spy.append(subprocess.Popen(
                        ["py-spy", "record", "--pid", str(pid), "--rate", "500", "--format",
                         "raw", "--nolineno", "--output", out_path],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

            def stop_spy(spy=spy):
                spy[0].send_signal(signal.SIGINT)
                spy[0].wait(60)

            results = []
            for i in range(runs):
                last = i == runs - 1
                results.append(run_phase(
                    broker, phase, spec, tmp, timeout=300, before_go=start_spy,
                    after_done=stop_spy if last and tool == "py-spy" else None))
            broker.stop()
            reports.append((phase, results, out_path))
        for phase, results, path in reports:
            rates = ", ".join(f"{r['MBps']:,.0f} MB/s (broker CPU {r['broker_cpu_pct']:.0f}%, "
                              f"bound {r['broker_bound_MBps']:,.0f} MB/s)" for r in results)
            print(f"\n=== {phase} (10 KB, acks=all, 1 partition) under {tool}: {rates}; {path}")
            if tool == "cprofile":
                import pstats
                pstats.Stats(path).sort_stats("tottime").print_stats(30)
            else:
                print(summarize_py_spy(path, 30))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize_py_spy(path: str, top: int) -> str:
    """The functions with the most samples on top of the stack (self) and anywhere on it
    (inclusive), from py-spy's raw output: one `frame;frame;...;frame count` line per stack."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
    lines = [f"{total} samples"]
    for title, table in (("self", own), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"{100 * n / total:6.1f}%  {frame}")
    return "\n".join(lines)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset with less data (< 1 min)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--only", metavar="TEXT", help="only throughput cases whose name has TEXT "
                   "(skips the latency phases)")
    p.add_argument("--no-prewarm", action="store_true", help="do not pre-warm page-cache pages "
                   "before each produce phase (see the write ceiling line)")
    p.add_argument("--e2e-rate", type=float, default=2000, help="end-to-end stream, msg/s")
    p.add_argument("--profile", metavar="DIR", help="profile the broker under the 10 KB "
                   "acks=all produce and then the consume; the profiles go to DIR")
    p.add_argument("--profiler", choices=("py-spy", "cprofile"),
                   help="with --profile: py-spy (the default when installed) or cProfile")
    p.add_argument("--profile-count", type=int, default=60_000,
                   help="with --profile: 10 KB messages to produce (default 60000)")
    p.add_argument("--producer-config", action="append", default=[], type=_key_value,
                   metavar="KEY=VALUE", help="extra librdkafka setting of the throughput producers")
    p.add_argument("--consumer-config", action="append", default=[], type=_key_value,
                   metavar="KEY=VALUE", help="extra librdkafka setting of the throughput consumers")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        WORKERS[args.worker[0]](json.loads(args.worker[1]))
        return 0
    if args.profile:
        run_profile(args)
        return 0
    started = time.perf_counter()
    results = run_benchmark(args)
    results["total_seconds"] = time.perf_counter() - started
    print(table(results))
    print(f"\ntotal {results['total_seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(ok for ok, _ in results["floors"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
