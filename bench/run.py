"""trioka's benchmark: a real broker process driven by confluent-kafka (librdkafka) clients.

    python bench/run.py                  # the whole matrix and the scale phase (several minutes)
    python bench/run.py --quick          # a subset with less data, a small scale phase (< 2 min)
    python bench/run.py --scale          # only the scale phase (with --quick: its small version)
    python bench/run.py --json out.json  # also write every number as JSON
    python bench/run.py --security       # only PLAINTEXT vs SSL vs SASL_SSL on one broker
    python bench/run.py --only "10KB p1" # only the throughput cases whose name contains this
    python bench/run.py --profile DIR    # profile the broker: 10 KB acks=all produce, then consume

It starts `python -m trioka serve --listeners PLAINTEXT://127.0.0.1:0 --data-dir <tmp>` itself and
reads the port from the ready line. Producers and consumers run in separate processes (this script
started again with --worker), so the client, the broker and this orchestrator never share a GIL.
A worker connects and warms up, says `ready`, and starts only when the orchestrator answers `go`:
the broker's CPU time is read at `go` and at `done`, so each phase's broker CPU-seconds cover
exactly the measured window. CPU time is user + system time, read from /proc/PID/task/*/schedstat
(nanoseconds) for live threads plus, from /proc/PID/stat (10 ms ticks), the time of worker threads
that have exited; the JSON also has the plain /proc/PID/stat utime + stime figure.

What is measured:

* startup: spawn of the broker process -> its first Metadata answer, over a raw socket
  (ApiVersions v0, then Metadata v0 for all topics); the median of several fresh starts. The
  package's bytecode is compiled first, as `pip install` does and as Python's first import
  does unless told not to (PYTHONDONTWRITEBYTECODE, set on some CI machines, where every start
  compiles every module again: some 100 ms more).
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

* loop lag: a probe process (this script with --worker loop-lag) sends ApiVersions v0 on a
  connection of its own every 10 ms, one request in flight, throughout the run: on the main
  broker from just after its start to just before its stop, and likewise on the scale phase's
  broker (the startup samples' brokers live too briefly to probe). A round trip longer than 10 ms
  delays the next probe instead of queueing more, so one stall is one long round trip. The
  orchestrator names the phases (each case's produce and consume, the latencies, the rebalance,
  each scale step, topic creation and deletion) as CLOCK_MONOTONIC windows; every probe counts in
  the phase it was sent in, and the report gives p50, p99 and max per phase and overall and the
  count of round trips over 50 ms. The round trip is what a client process sees, so on a busy
  2-core machine it includes the probe's own wait for a CPU: it is an upper bound on the
  broker's event-loop stall. The target (issue 10): max under 50 ms over the whole run.
* security (--security, and in the full run after the RF=3 phase): a broker of its own with three
  listeners, PLAINTEXT, SSL (ssl.client.auth none) and SASL_SSL with SCRAM-SHA-512 (user `bench`,
  its credential added with AlterUserScramCredentials over PLAINTEXT), the certificates written
  by `trioka certs` into the run's temporary directory. The main matrix's `10KB p1 acks=all none`
  and `100B p1 acks=1 none`, with its message counts, are produced and consumed over each
  listener with the same workers and checks; each listener's MB/s and bound are given as a ratio
  to PLAINTEXT's.
* scale: a broker of its own, with 10, 1,000 and 10,000 partitions (topics of at most 1,000: one
  CreateTopics may not create more than 10,000 records, in Kafka as here) and 1, 100 and 1,000
  long-polling consumers (--quick: 10 and 1,000 partitions, 1 and 100 consumers). A step never
  has more consumers than partitions: consumer k of C reads the partitions g with g mod C == k,
  as members of one group hold partitions of their own (extra members would hold nothing and
  send no Fetch), so every message is read exactly once. One confluent-kafka producer sends 100 B
  messages at a fixed 1,000 msg/s (linger.ms 5, acks=all), message i to partition i mod P, for
  10 s (5 s with --quick). The consumers are not librdkafka: 1,000 librdkafka consumers are
  about 4,000 threads that wake on their own timers, more than two cores can run beside the
  broker. They are raw Fetch v11 clients, up to 500 a process on one selector, each on its own
  connection with one Fetch in flight, behaving as a Java consumer does: a KIP-227 incremental
  fetch session, fetch.max.wait.ms 500 (the default in librdkafka and Java), min bytes 1, max
  bytes 50 MiB, 1 MiB a partition, read_uncommitted; they count records from the batch headers
  without decoding them. Each step reports the produce and consume rates, the broker's CPU and
  its CPU-microseconds per message (produced and read once), the loop lag during the step, the
  Fetch answers (empty ones, session resets) and the broker's RSS. The target (issue 10): the
  per-message broker CPU at 10,000 partitions within 20% of the 10-partition figure, both with
  one consumer (the only consumer count every partition count runs).

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
import bisect
import contextlib
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
import threading
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
    # The issue's targets for the loop-lag probe and the scale phase.
    "loop_lag_max_ms": 50,
    "scale_cpu_per_msg_ratio": 1.2,
}


# ------------------------------------------------------------------------------- the broker

class BrokerProcess(testing_process.BrokerProcess):
    """The broker process of trioka.testing.process (start, ready line, stop) with what the
    benchmark reads of it: CPU time and memory from /proc. No admin endpoint, as in production;
    `profile_to` runs the broker under cProfile (the profile is written at SIGTERM); with
    $TRIOKA_TURNS_FILE set it runs under bench/turns.py instead."""

    def __init__(self, data_dir: str, *, profile_to: str | None = None, listeners=()):
        if profile_to:
            options = ["-m", "cProfile", "-o", profile_to]
        elif os.environ.get("TRIOKA_TURNS_FILE"):
            # The broker's own view of its stalls: bench/turns.py writes its long loop turns
            # and GC passes to that file at exit (each broker process overwrites it).
            options = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "turns.py")]
        else:
            options = ()
        super().__init__(data_dir, admin_listener=False, python_options=options,
                         listeners=listeners)

    def cpu_ticks_seconds(self) -> float:
        """utime + stime of the broker process so far (/proc/PID/stat, 10 ms resolution)."""
        with open(f"/proc/{self.pid}/stat") as f:
            text = f.read()
        fields = text[text.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def cpu_seconds(self) -> float:
        """The same CPU time (user + system) with nanosecond resolution where it can be had: the
        sum over the process's live threads of /proc/PID/task/TID/schedstat's first field (time
        on a CPU), plus, in 10 ms ticks, the time of threads that have exited (the process's
        /proc/PID/stat utime + stime counts them; the live threads' own ticks are taken off).
        The broker's worker threads come and go (disk syncs, large decodes), so a sum over live
        threads alone would lose their time, and could even go down between two readings."""
        live_ns = live_ticks = 0
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                try:
                    with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                        ns = int(f.read().split()[0])
                    with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                        text = f.read()
                except FileNotFoundError:
                    continue        # exited between the listing and the reading
                fields = text[text.rindex(")") + 2:].split()
                live_ns += ns
                live_ticks += int(fields[11]) + int(fields[12])
            process_ticks = self.cpu_ticks_seconds() * CLK_TCK
        except (FileNotFoundError, ProcessLookupError):
            return self.cpu_ticks_seconds()
        return live_ns / 1e9 + max(0, process_ticks - live_ticks) / CLK_TCK

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
    import compileall
    import trioka
    # The package's bytecode, as an installed package has it (see the module's docstring).
    compileall.compile_dir(os.path.dirname(trioka.__file__), quiet=2,
                           rx=re.compile(r"node_modules|/build/"))
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

# --clients-nice N: the client workers run at nice N (a diagnosis: is a loop-lag stall the
# broker's own, or its wait for one of the two cores the clients also want?).
CLIENTS_NICE = 0


class Worker:
    """This script run again with --worker KIND: it says `ready`, waits for `go`, prints
    `done {json}`."""

    def __init__(self, kind: str, spec: dict, tmp: str):
        self.kind = kind
        self.err_path = os.path.join(tmp, f"worker-{kind}-{os.getpid()}-{time.monotonic_ns()}.err")
        self.err = open(self.err_path, "wb")
        # --clients-nice: every client at a lower CPU priority, never the loop-lag probe.
        nice = CLIENTS_NICE if kind != "loop-lag" else 0
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
            preexec_fn=(lambda: os.nice(nice)) if nice else None)
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

    def stop(self) -> None:
        """For the workers that run until told (the loop-lag probe)."""
        self.proc.stdin.write(b"stop\n")
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


# ------------------------------------------------------------------ the loop-lag probe (worker)

def worker_loop_lag(spec: dict) -> None:
    """ApiVersions v0 over one raw connection every `interval_ms`, one request in flight at a
    time, until `stop` on stdin: each probe's send time and round trip. A round trip that takes
    longer than the interval delays the next probe (no catch-up burst), so a stall shows as one
    long round trip, not as a queue of them."""
    import select
    interval_ns = int(spec["interval_ms"] * 1_000_000)
    sock = socket.create_connection(("127.0.0.1", spec["port"]), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    correlation = itertools.count(1)

    def round_trip() -> int:
        cid = next(correlation)
        t0 = time.monotonic_ns()
        sock.sendall(_frame(18, 0, cid))
        answer = _read_frame(sock)
        rtt = time.monotonic_ns() - t0
        if struct.unpack_from(">ih", answer) != (cid, 0):
            raise RuntimeError(f"ApiVersions answered {struct.unpack_from('>ih', answer)}")
        return rtt

    round_trip()
    _wait_for_go()
    sent_ns, rtt_ns = [], []
    error = None
    due = time.monotonic_ns()
    while True:
        # Pacing the probes; stdin is watched for `stop` meanwhile.
        left = max(0, due - time.monotonic_ns()) / 1e9
        if select.select([0], [], [], left)[0]:
            data = os.read(0, 64)
            if not data or b"stop" in data:
                break
            continue
        now = time.monotonic_ns()
        try:
            rtt = round_trip()
        except (OSError, RuntimeError) as e:   # the broker closed or stalled past 120 s
            error = repr(e)
            break
        sent_ns.append(now)
        rtt_ns.append(rtt)
        due = max(due + interval_ns, time.monotonic_ns())
    sock.close()
    _done({"sent_ns": sent_ns, "rtt_ns": rtt_ns, "error": error})


# ------------------------------------------------------------------- the scale phase (workers)

def worker_scale_producer(spec: dict) -> None:
    """confluent-kafka at a fixed rate: message i goes to partition i mod P of the topics (1,000
    partitions a topic), so every partition gets the same share; then flush()."""
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": spec["bootstrap"], "acks": "all", "linger.ms": 5,
                  "queue.buffering.max.messages": 1_000_000, "delivery.report.only.error": True,
                  "on_delivery": lambda err, msg: errors.append(str(err))})
    topics, per_topic = spec["topics"], spec["per_topic"]
    for topic in topics:
        p.list_topics(topic, timeout=30)   # connected, metadata known
    targets = [(topics[g // per_topic], g % per_topic) for g in range(spec["partitions"])]
    pool = payload_pool(spec["size"], "random")
    count, rate, partitions = spec["count"], spec["rate"], spec["partitions"]
    produce, poll = p.produce, p.poll
    _wait_for_go()
    cpu0, t0 = _cpu(), time.monotonic()
    i = 0
    while i < count:
        due = min(count, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            topic, partition = targets[i % partitions]
            try:
                produce(topic, pool[i % len(pool)], partition=partition)
            except BufferError:
                poll(0.001)
                continue
            i += 1
        poll(0)
        time.sleep(0.002)   # pacing the stream, not waiting for anything
    produced = time.monotonic() - t0
    left = p.flush(120)
    _done({"count": count, "seconds": produced, "flushed_s": time.monotonic() - t0,
           "undelivered": left, "errors": len(errors), "first_errors": errors[:5],
           "client_cpu_s": _cpu() - cpu0})


FETCH_PARTITION = struct.Struct(">iiqqi")   # Fetch v11 request: partition, current leader epoch,
#                                             fetch offset, log start offset, partition max bytes
FETCH_PARTITION_HEAD = struct.Struct(">ihqqqi")   # response: index, error, high watermark, last
#                                                 stable offset, log start offset, aborted count
BATCH_HEAD = struct.Struct(">qi")   # a stored batch: base offset, length of the rest


class LongPollFetcher:
    """One consumer over a raw connection: Fetch v11 as a Java consumer sends it (KIP-227
    incremental fetch session; fetch.max.wait.ms 500, fetch.min.bytes 1, fetch.max.bytes 50 MiB,
    max.partition.fetch.bytes 1 MiB, read_uncommitted), one request in flight at a time, the next
    sent as soon as the answer is read. It counts records by batch headers (base offset and last
    offset delta) and never decodes them."""

    def __init__(self, port: int, positions: dict, max_wait_ms: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.positions = positions          # (topic, partition) -> [fetch offset, end offset]
        self.remaining = sum(1 for off, end in positions.values() if off < end)
        self.expected = sum(end - off for off, end in positions.values())
        self.changed: set = set()           # partitions whose offset moved since the last request
        self.max_wait_ms = max_wait_ms
        self.session_id, self.epoch = 0, 0  # epoch 0: a full fetch that opens a session
        self.correlation = 0
        self.inbuf = bytearray()
        self.responses = self.empty = self.consumed = 0
        self.session_resets = self.sessionless = self.partition_errors = 0
        self.last_ns = 0

    def request(self) -> bytes:
        if self.epoch == 0:
            wanted = self.positions
        else:
            wanted = {tp: self.positions[tp] for tp in self.changed}
        self.changed.clear()
        by_topic: dict = {}
        for (topic, partition), (offset, _) in wanted.items():
            by_topic.setdefault(topic, []).append(
                FETCH_PARTITION.pack(partition, -1, offset, -1, 1 << 20))
        body = [struct.pack(">iiiibiii", -1, self.max_wait_ms, 1, 50 * MIB, 0, self.session_id,
                            self.epoch, len(by_topic))]
        for topic, parts in by_topic.items():
            name = topic.encode()
            body.append(struct.pack(">h", len(name)) + name + struct.pack(">i", len(parts)))
            body.extend(parts)
        body.append(struct.pack(">ih", 0, 0))   # no forgotten topics, rack id ""
        self.correlation += 1
        return _frame(1, 11, self.correlation, b"".join(body))

    def send_next(self) -> None:
        self.sock.sendall(self.request())

    def readable(self, counting: bool) -> bool:
        """Read what arrived; True once a whole answer was handled (and the next Fetch sent)."""
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the broker closed a consumer's connection")
        self.inbuf += data
        if len(self.inbuf) < 4:
            return False
        (size,) = struct.unpack_from(">i", self.inbuf)
        if len(self.inbuf) < 4 + size:
            return False
        frame = memoryview(bytes(self.inbuf[4:4 + size]))
        del self.inbuf[:4 + size]
        self.answer(frame, counting)
        self.send_next()
        return True

    def answer(self, frame: memoryview, counting: bool) -> None:
        self.responses += 1
        _, _, error, session_id = struct.unpack_from(">iihi", frame)
        if error:
            # FETCH_SESSION_ID_NOT_FOUND (the session was evicted from the broker's cache),
            # INVALID_FETCH_SESSION_EPOCH, or another top-level error: a full fetch opens another.
            self.session_resets += 1
            self.session_id, self.epoch = 0, 0
            return
        if self.epoch == 0:
            if session_id:
                self.session_id, self.epoch = session_id, 1
            else:
                self.sessionless += 1   # no session slot: the next fetch is full again
        else:
            self.epoch = self.epoch + 1 if self.epoch < 0x7FFFFFFF else 1
        pos = 14
        (topics,) = struct.unpack_from(">i", frame, pos)
        pos += 4
        got = 0
        for _ in range(topics):
            (n,) = struct.unpack_from(">h", frame, pos)
            topic = bytes(frame[pos + 2:pos + 2 + n]).decode()
            (partitions,) = struct.unpack_from(">i", frame, pos + 2 + n)
            pos += 6 + n
            for _ in range(partitions):
                index, perr, _, _, _, aborted = FETCH_PARTITION_HEAD.unpack_from(frame, pos)
                pos += FETCH_PARTITION_HEAD.size + 16 * max(aborted, 0) + 4  # + preferred replica
                (size,) = struct.unpack_from(">i", frame, pos)
                pos += 4
                if perr:
                    self.partition_errors += 1
                if size <= 0:
                    continue
                entry = self.positions.get((topic, index))
                if entry is not None:
                    offset = new = entry[0]
                    q, end = pos, pos + size
                    while q + 61 <= end:   # whole batches only; a cut-off last one is skipped
                        base, length = BATCH_HEAD.unpack_from(frame, q)
                        if q + 12 + length > end:
                            break
                        (last_delta,) = struct.unpack_from(">i", frame, q + 23)
                        new = max(new, base + last_delta + 1)
                        q += 12 + length
                    if new > offset:
                        if offset < entry[1] <= new:
                            self.remaining -= 1
                        entry[0] = new
                        self.changed.add((topic, index))
                        got += new - offset
                pos += size
        if got:
            if counting:
                self.consumed += got
                self.last_ns = time.monotonic_ns()
        else:
            self.empty += 1


def worker_scale_consumers(spec: dict) -> None:
    """Many long-polling consumers in one process (LongPollFetcher each, one selector): consumer
    k of C reads the partitions g with g mod C == k from where the earlier steps left them, and
    is done when it has read the step's messages. Says `ready` once every consumer has had its
    first answer (its session is open), counts from `go`, and says `done` when all are done or
    at the deadline."""
    import resource
    import selectors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    topics, per_topic = spec["topics"], spec["per_topic"]
    partitions, consumers = spec["partitions"], spec["consumers"]

    def share(count: int, g: int) -> int:   # messages partition g got of a step of `count`
        return count // partitions + (1 if g < count % partitions else 0)

    fetchers = []
    for k in spec["indices"]:
        positions = {}
        for g in range(k, partitions, consumers):
            start = sum(share(n, g) for n in spec["before"])
            positions[(topics[g // per_topic], g % per_topic)] = [start,
                                                                   start + share(spec["count"], g)]
        fetchers.append(LongPollFetcher(spec["port"], positions, spec["max_wait_ms"]))
    sel = selectors.DefaultSelector()
    for f in fetchers:
        f.send_next()
        sel.register(f.sock, selectors.EVENT_READ, f)
    sel.register(0, selectors.EVENT_READ, None)
    waiting_first = set(range(len(fetchers)))
    index = {id(f): i for i, f in enumerate(fetchers)}
    counting, go_ns, deadline, cpu0 = False, 0, None, 0.0
    complete = False
    while True:
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                line = os.read(0, 64)
                if b"go" in line:
                    counting, go_ns, cpu0 = True, time.monotonic_ns(), _cpu()
                    deadline = time.monotonic() + spec["deadline_s"]
                elif not line:
                    raise SystemExit("the orchestrator went away")
                continue
            f = key.data
            if f.readable(counting) and waiting_first:
                waiting_first.discard(index[id(f)])
                if not waiting_first:
                    print("ready", flush=True)
        if counting:
            if all(f.remaining == 0 for f in fetchers):
                complete = True
                break
            if time.monotonic() > deadline:
                break
    done_ns = time.monotonic_ns()
    _done({"consumers": len(fetchers), "consumed": sum(f.consumed for f in fetchers),
           "expected": sum(f.expected for f in fetchers), "complete": complete,
           "go_ns": go_ns, "done_ns": done_ns,
           "last_ns": max(f.last_ns for f in fetchers),
           "responses": sum(f.responses for f in fetchers),
           "empty_responses": sum(f.empty for f in fetchers),
           "session_resets": sum(f.session_resets for f in fetchers),
           "sessionless_answers": sum(f.sessionless for f in fetchers),
           "partition_errors": sum(f.partition_errors for f in fetchers),
           "client_cpu_s": _cpu() - cpu0})


def worker_idle_fetchers(spec: dict) -> None:
    """`consumers` long-polling consumers (LongPollFetcher) of partitions that get no data, for
    bench/stalls.py: all connected first, then, at `go`, every first Fetch sent in one go, so
    their fetch.max.wait.ms timeouts expire together at the broker, again and again, until `stop`
    on stdin. Reports how many answers came back."""
    import resource
    import selectors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    topic, partitions = spec["topic"], spec["partitions"]
    fetchers = [LongPollFetcher(spec["port"], {(topic, k % partitions): [0, 0]},
                                spec["max_wait_ms"]) for k in range(spec["consumers"])]
    sel = selectors.DefaultSelector()
    for f in fetchers:
        sel.register(f.sock, selectors.EVENT_READ, f)
    sel.register(0, selectors.EVENT_READ, None)
    _wait_for_go()
    for f in fetchers:
        f.send_next()
    while True:
        stop = False
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                line = os.read(0, 64)
                stop = not line or b"stop" in line
                continue
            key.data.readable(False)
        if stop:
            break
    _done({"responses": sum(f.responses for f in fetchers),
           "session_resets": sum(f.session_resets for f in fetchers),
           "partition_errors": sum(f.partition_errors for f in fetchers)})


WORKERS = {"produce": worker_produce, "consume": worker_consume,
           "latency-producer": worker_latency_producer,
           "latency-consumer": worker_latency_consumer,
           "loop-lag": worker_loop_lag, "scale-producer": worker_scale_producer,
           "scale-consumers": worker_scale_consumers, "idle-fetchers": worker_idle_fetchers}


# ------------------------------------------------------------------------------ the phases

class Admin:
    """Topic creation and deletion with confluent-kafka's AdminClient (waits for the answers)."""

    def __init__(self, bootstrap: str, replication_factor: int = 1):
        from confluent_kafka.admin import AdminClient
        self.client = AdminClient({"bootstrap.servers": bootstrap})
        self.replication_factor = replication_factor

    def create(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import NewTopic
        futures = self.client.create_topics(
            [NewTopic(name, partitions, self.replication_factor)], request_timeout=15)
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


class BenchCluster(testing_process.ClusterProcess):
    """`trioka serve --nodes 3` (one process, three nodes) with the broker's CPU and memory
    readings: the CPU is the whole cluster's, every node's replication work included."""
    cpu_ticks_seconds = BrokerProcess.cpu_ticks_seconds
    cpu_seconds = BrokerProcess.cpu_seconds
    memory = BrokerProcess.memory


def run_replication(args, tmp: str) -> dict:
    """RF=3: the acks=all cases (10 KB and 100 B, one partition, uncompressed) and the end-to-end
    latency on a three-node cluster in one process (min.insync.replicas 2): every message is
    written by the leader and fetched by two followers before it is acknowledged, so next to the
    RF=1 figures this is the cost of replication."""
    count_small, count_large = (300_000, 20_000) if args.quick else (1_000_000, 50_000)
    cluster = BenchCluster(3, os.path.join(tmp, "cluster"),
                           overrides={"min.insync.replicas": 2})
    cluster.start()
    out = {"nodes": 3, "replication_factor": 3, "min_insync_replicas": 2, "throughput": []}
    try:
        admin = Admin(cluster.bootstrap, replication_factor=3)
        for case in (Case(10240, 1, "all", "none", count_large),
                     Case(100, 1, "all", "none", count_small)):
            say(f"RF=3 {case.name} ...")
            topic = f"bench-rf3-{case.size}-{time.monotonic_ns()}"
            admin.create(topic, case.partitions)
            spec = {"bootstrap": cluster.bootstrap, "topic": topic, "size": case.size,
                    "acks": case.acks, "compression": case.compression, "count": case.count,
                    "payload": "random", "partitions": case.partitions}
            produce = run_phase(cluster, "produce", dict(spec, client_config={}), tmp,
                                timeout=300)
            consume = run_phase(cluster, "consume", dict(spec, count=produce["total_count"],
                                                         client_config={}), tmp, timeout=300)
            if consume["count"] != produce["total_count"]:
                raise RuntimeError(f"RF=3 {case.name}: consumed {consume['count']} of "
                                   f"{produce['total_count']}")
            out["throughput"].append({"case": case.name, "produce": produce,
                                      "consume": consume})
            admin.delete(topic)
            say(f"  produce {produce['msgps']:,.0f} msg/s {produce['MBps']:,.0f} MB/s, consume "
                f"{consume['msgps']:,.0f} msg/s {consume['MBps']:,.0f} MB/s")
        say("RF=3 end-to-end latency ...")
        seconds = 2 if args.quick else 5
        out["e2e"] = run_latency(cluster, admin, tmp, linger_ms=5, fetch_wait_ms=10, size=100,
                                 rate=args.e2e_rate, warmup=int(args.e2e_rate // 2),
                                 count=int(args.e2e_rate * seconds))
        out["memory"] = cluster.memory()
    finally:
        cluster.stop()
        cluster.close()
    return out


def replication_lines(rep: dict | None, results: dict) -> list[str]:
    if not rep:
        return []
    rf1 = {r["case"]: r for r in results.get("throughput", [])}
    lines = ["replication: RF=3 on `trioka serve --nodes 3` (one process), min.insync.replicas 2, "
             "acks=all; broker CPU = the three nodes'"]
    for r in rep["throughput"]:
        p, c = r["produce"], r["consume"]
        line = (f"  {r['case']:<25} produce {p['msgps']:>10,.0f} msg/s {p['MBps']:>6,.0f} MB/s "
                f"(CPU {p['broker_cpu_pct']:.0f}%), consume {c['msgps']:>10,.0f} msg/s "
                f"{c['MBps']:>6,.0f} MB/s")
        base = rf1.get(r["case"])
        if base:
            line += (f"; RF=1: produce {base['produce']['MBps']:,.0f} MB/s, consume "
                     f"{base['consume']['MBps']:,.0f} MB/s")
        lines.append(line)
    lat = rep["e2e"]["latency"]
    line = (f"  end-to-end latency RF=3 ({rep['e2e']['rate_msgps']:.0f} msg/s): p50 "
            f"{lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms")
    if results.get("e2e"):
        base = results["e2e"]["latency"]
        line += f"; RF=1: p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms"
    lines.append(line)
    lines.append("")
    return lines


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
             client_configs: dict | None = None, prewarm: bool = True,
             lag: "LoopLag | None" = None, bootstrap: str | None = None) -> dict:
    """One case on `broker`: a fresh topic, produce, then consume and check that everything came
    back; the clients connect to `bootstrap` (another of the broker's listeners) when given."""
    client_configs = client_configs or {}
    lag = lag or LoopLag(tmp)
    said = len(broker.output)
    topic = "bench-" + re.sub(r"[^a-z0-9]+", "-", case.name.lower()) + f"-{time.monotonic_ns()}"
    admin.create(topic, case.partitions)
    spec = {"bootstrap": bootstrap or broker.bootstrap, "topic": topic, "size": case.size,
            "acks": case.acks, "compression": case.compression, "count": case.count,
            "payload": "random" if case.compression == "none" else "json",
            "partitions": case.partitions}
    out = {"case": case.name, "size": case.size, "partitions": case.partitions,
           "acks": case.acks, "compression": case.compression, "topic": topic}
    # Pre-warm: write and delete as many bytes as the broker is about to append, so that its
    # appends land in page-cache pages the VM already backs (as on a long-running server) and
    # the phase measures the broker rather than the hypervisor's first-touch cost.
    warm = (lambda: write_file(tmp, int(case.count * case.size * 1.2))) if prewarm else None
    with lag.phase(f"{case.name}: produce"):
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
    with lag.phase(f"{case.name}: consume"):
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


# ------------------------------------------------------------------------------ security

# Kafka's three listener security protocols the security phase compares, in table order.
SECURITY_LISTENERS = ("PLAINTEXT", "SSL", "SASL_SSL")
SECURITY_USER, SECURITY_PASSWORD, SECURITY_MECHANISM = "bench", "bench-secret", "SCRAM-SHA-512"


class SecurityBroker(BrokerProcess):
    """The benchmark's broker with three listeners: PLAINTEXT (the one BrokerProcess waits for),
    SSL without client authentication (ssl.client.auth none, Kafka's default) and SASL_SSL with
    SCRAM-SHA-512, both with the broker certificate of `trioka certs` as a PEM keystore. The SSL
    and SASL_SSL ports are chosen by the system and read from the ready line."""

    def __init__(self, data_dir: str, certs_dir: str):
        super().__init__(data_dir, listeners=("SSL", "SASL_SSL"))
        self.overrides.update({
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": os.path.join(certs_dir, "broker-keystore.pem"),
            "sasl.enabled.mechanisms": SECURITY_MECHANISM})


def security_client_config(protocol: str, certs_dir: str) -> dict:
    """librdkafka's settings for a listener: TLS trusts the development CA (the broker's
    certificate names localhost and 127.0.0.1, so host name verification holds); SASL_SSL adds
    the SCRAM user."""
    if protocol == "PLAINTEXT":
        return {}
    conf = {"security.protocol": protocol, "ssl.ca.location": os.path.join(certs_dir, "ca.pem")}
    if protocol == "SASL_SSL":
        conf.update({"sasl.mechanism": SECURITY_MECHANISM, "sasl.username": SECURITY_USER,
                     "sasl.password": SECURITY_PASSWORD})
    return conf


def add_scram_user(bootstrap: str) -> None:
    """The SCRAM-SHA-512 credential of the bench user, with AlterUserScramCredentials (as
    kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[password=...]' sends it)."""
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upsert = UserScramCredentialUpsertion(
        SECURITY_USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
        SECURITY_PASSWORD.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=20)


def security_cases(quick: bool) -> list[Case]:
    """The main matrix's `10KB p1 acks=all none` and `100B p1 acks=1 none`, with its message
    counts (--quick: those of --quick)."""
    wanted = ("10KB p1 acks=all none", "100B p1 acks=1 none")
    return sorted((c for c in cases(quick) if c.name in wanted), key=lambda c: -c.size)


def run_security(args, tmp: str) -> dict:
    """One broker with PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-512) listeners and certificates
    from `trioka certs`; each case produced then consumed over each listener in turn, with the
    same workers, verification and pre-warm as the main matrix. Next to PLAINTEXT, the cost of
    TLS (encryption of every byte, in the broker's event loop) and of SASL (only at connect)."""
    certs_dir = os.path.join(tmp, "certs")
    made = subprocess.run([sys.executable, "-m", "trioka", "certs", certs_dir],
                          capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise RuntimeError(f"trioka certs failed: {made.stderr.strip()}")
    broker = SecurityBroker(os.path.join(tmp, "security-data"), certs_dir).start()
    out = {"listeners": {}, "mechanism": SECURITY_MECHANISM, "ssl_client_auth": "none",
           "throughput": []}
    try:
        add_scram_user(broker.bootstrap)
        admin = Admin(broker.bootstrap)
        for case in security_cases(args.quick):
            for protocol in SECURITY_LISTENERS:
                port = broker.port if protocol == "PLAINTEXT" else broker.listener_port(protocol)
                bootstrap = f"localhost:{port}"
                out["listeners"][protocol] = bootstrap
                conf = security_client_config(protocol, certs_dir)
                say(f"{protocol} {case.name} ...")
                r = run_case(broker, admin, case, tmp, {"producer": conf, "consumer": conf},
                             prewarm=not args.no_prewarm, bootstrap=bootstrap)
                r["listener"] = protocol
                out["throughput"].append(r)
                admin.delete(r["topic"])
                say(f"  produce {r['produce']['msgps']:,.0f} msg/s "
                    f"{r['produce']['MBps']:,.0f} MB/s, consume {r['consume']['msgps']:,.0f} "
                    f"msg/s {r['consume']['MBps']:,.0f} MB/s")
        out["memory"] = broker.memory()
        del admin       # its connections closed before the broker goes away
    finally:
        broker.stop()
    return out


def security_lines(sec: dict | None) -> list[str]:
    """One row a listener and case; `vs PLAINTEXT` is the MB/s and the bound as a ratio to the
    PLAINTEXT row of the same case."""
    if not sec:
        return []
    lines = [f"security: one broker, listeners PLAINTEXT, SSL (ssl.client.auth none) and SASL_SSL "
             f"({sec['mechanism']}); TLS 1.3 from confluent-kafka"]
    head = (f"  {'listener':<10}{'case':<25}{'messages':>9} | {'produce msg/s':>13}{'MB/s':>6}"
            f"{'CPU%':>6}{'bound':>7}{'vs PLAIN':>13} | {'consume msg/s':>13}{'MB/s':>6}"
            f"{'CPU%':>6}{'bound':>7}{'vs PLAIN':>13}")
    lines += [head, "  " + "-" * (len(head) - 2)]
    plain = {r["case"]: r for r in sec["throughput"] if r["listener"] == "PLAINTEXT"}

    def cell(r: dict, phase: str) -> str:
        x = r[phase]
        text = (f"{x['msgps']:>13,.0f}{x['MBps']:>6,.0f}{x['broker_cpu_pct']:>6.0f}"
                f"{x['broker_bound_MBps']:>7,.0f}")
        base = plain.get(r["case"], {}).get(phase)
        if r["listener"] == "PLAINTEXT" or not base:
            return text + f"{'':>13}"
        return text + (f"{'x%.2f' % (x['MBps'] / base['MBps']):>7}"
                       f"{'x%.2f' % (x['broker_bound_MBps'] / base['broker_bound_MBps']):>6}")
    for r in sec["throughput"]:
        lines.append(f"  {r['listener']:<10}{r['case']:<25}{r['produce']['count']:>9} | "
                     f"{cell(r, 'produce')} | {cell(r, 'consume')}".rstrip())
    lines.append("  CPU% = broker CPU per wall second; bound = value MB per broker CPU-second; "
                 "vs PLAIN = MB/s and bound as a ratio to the PLAINTEXT row of the same case")
    lines.append("")
    return lines


# ------------------------------------------------------------------------- the loop-lag probe

LAG_INTERVAL_MS = 10
STALL_MS = 50


class StealSampler:
    """The hypervisor's steal time (/proc/stat: time this VM's CPUs were ready but the host ran
    something else), sampled every 10 ms in a thread of the orchestrator: a probe's round trip
    that coincides with steal waited on the host, not only on the broker."""

    INTERVAL_S = 0.01

    def __init__(self):
        self.samples: list[tuple[int, int]] = []     # (monotonic ns, steal ticks since the last)
        self.tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _steal() -> int:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) if len(fields) > 8 else 0

    def _run(self) -> None:
        try:
            last = self._steal()
            while not self._stop.wait(self.INTERVAL_S):
                now = self._steal()
                if now != last:
                    self.samples.append((time.monotonic_ns(), now - last))
                last = now
        except OSError:
            pass    # no /proc/stat: no steal figures

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)

    def steal_ms(self, t0: int | None = None, t1: int | None = None) -> float:
        """CPU-ms stolen (over all CPUs) in [t0, t1] (the whole run without bounds)."""
        return sum(n for t, n in self.samples if (t0 is None or t >= t0) and
                   (t1 is None or t <= t1)) * self.tick_ms


class LoopLag:
    """The loop-lag probe, seen from the orchestrator: a `loop-lag` worker against each broker
    process of the run, from just after its start to just before its stop, and the named phases
    of the run as time.monotonic_ns() windows (CLOCK_MONOTONIC is one clock for every process of
    the machine), so that each probe counts in the phase during which it was sent. The
    hypervisor's steal time is sampled alongside (StealSampler), and each of the worst round
    trips is shown with the steal around it."""

    def __init__(self, tmp: str):
        self.tmp = tmp
        self.worker: Worker | None = None
        self.sent_ns: list[int] = []
        self.rtt_ns: list[int] = []
        self.phases: list[tuple[str, int, int]] = []
        self.errors: list[str] = []
        self.steal = StealSampler()

    def attach(self, broker: BrokerProcess) -> None:
        self.worker = Worker("loop-lag", {"port": broker.port, "interval_ms": LAG_INTERVAL_MS},
                             self.tmp)
        self.worker.expect("ready", 30)
        self.worker.go()

    def detach(self) -> None:
        """Stop the probe (before its broker stops) and keep its samples."""
        if self.worker is None:
            return
        worker, self.worker = self.worker, None
        worker.stop()
        r = worker.result(60)
        self.sent_ns += r["sent_ns"]
        self.rtt_ns += r["rtt_ns"]
        if r["error"]:
            self.errors.append(r["error"])

    def close(self) -> None:
        self.steal.stop()
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    @contextlib.contextmanager
    def phase(self, name: str):
        t0 = time.monotonic_ns()
        try:
            yield
        finally:
            self.phases.append((name, t0, time.monotonic_ns()))

    def stats(self, t0: int | None = None, t1: int | None = None) -> dict:
        """Round trips of the probes sent in [t0, t1] (all of them without bounds)."""
        lo = 0 if t0 is None else bisect.bisect_left(self.sent_ns, t0)
        hi = len(self.sent_ns) if t1 is None else bisect.bisect_right(self.sent_ns, t1)
        rtts = self.rtt_ns[lo:hi]
        out = percentiles(rtts)
        out["stalls"] = sum(1 for r in rtts if r > STALL_MS * 1_000_000)
        return out

    def phase_stats(self, name: str) -> dict:
        return next(self.stats(t0, t1) for n, t0, t1 in self.phases if n == name)

    def phase_at(self, t: int) -> str:
        return next((n for n, t0, t1 in self.phases if t0 <= t <= t1), "between phases")

    def summary(self) -> dict:
        worst = sorted(range(len(self.rtt_ns)), key=self.rtt_ns.__getitem__)[-10:][::-1]
        return {"interval_ms": LAG_INTERVAL_MS, "stall_ms": STALL_MS, "overall": self.stats(),
                "phases": [{"phase": n, **self.stats(t0, t1)} for n, t0, t1 in self.phases],
                "worst": [{"rtt_ms": self.rtt_ns[i] / 1e6, "phase": self.phase_at(self.sent_ns[i]),
                           "sent_ns": self.sent_ns[i],
                           # the window the round trip took, and a sample interval either side
                           "steal_ms": self.steal.steal_ms(
                               self.sent_ns[i] - 20_000_000,
                               self.sent_ns[i] + self.rtt_ns[i] + 20_000_000)}
                          for i in worst],
                "steal_ms": self.steal.steal_ms(),
                "probe_errors": self.errors}


# ------------------------------------------------------------------------------ scale phase

SCALE_RATE = 1000             # messages a second, over all partitions together
SCALE_SIZE = 100              # value bytes
# One CreateTopics may not create more than 10,000 records in Kafka (POLICY_VIOLATION "Unable to
# perform excessively large batch operation"), and trioka refuses it too: 10,000 partitions are
# ten topics of 1,000.
PARTITIONS_PER_TOPIC = 1000
CONSUMERS_PER_PROCESS = 500


def scale_steps(quick: bool) -> list[tuple[int, list[int]]]:
    """(partitions, consumer counts). A consumer reads partitions of its own, as in a consumer
    group, so a step never has more consumers than partitions (the extra members of a group hold
    nothing and send no Fetch)."""
    if quick:
        return [(10, [1]), (1_000, [1, 100])]
    return [(10, [1]), (1_000, [1, 100, 1_000]), (10_000, [1, 100, 1_000])]


def run_scale_step(broker: BrokerProcess, base: dict, partitions: int, consumers: int,
                   before: list[int], seconds: float, tmp: str) -> dict:
    """One step: long-polling consumers in place (their sessions open), then the producer at
    SCALE_RATE for `seconds`; broker CPU from `go` until every consumer has read every message."""
    count = int(SCALE_RATE * seconds)
    processes = -(-consumers // CONSUMERS_PER_PROCESS)
    readers, producer = [], None
    try:
        for j in range(processes):
            readers.append(Worker("scale-consumers", dict(
                base, consumers=consumers, indices=list(range(j, consumers, processes)),
                before=before, count=count, max_wait_ms=500, deadline_s=seconds + 60), tmp))
        for r in readers:
            r.expect("ready", 120)
        producer = Worker("scale-producer", dict(base, count=count, rate=SCALE_RATE,
                                                 size=SCALE_SIZE), tmp)
        producer.expect("ready", 60)
        cpu0, t0 = broker.cpu_seconds(), time.perf_counter()
        for r in readers:
            r.go()
        producer.go()
        sent = producer.result(seconds + 150)
        got = [r.result(seconds + 90) for r in readers]
        wall = time.perf_counter() - t0
        cpu = broker.cpu_seconds() - cpu0
    except Exception:
        for w in readers + [producer]:
            if w is not None:
                w.close()
        raise
    consumed = sum(g["consumed"] for g in got)
    reading = (max(g["last_ns"] for g in got) - min(g["go_ns"] for g in got)) / 1e9
    complete = (all(g["complete"] for g in got) and consumed == count
                and not sent["undelivered"] and not sent["errors"])
    if not complete:
        say(f"  incomplete: consumed {consumed} of {count}; producer {sent['undelivered']} "
            f"undelivered, {sent['errors']} errors {sent['first_errors']}")
    return {"partitions": partitions, "consumers": consumers, "consumer_processes": processes,
            "count": count, "consumed": consumed, "complete": complete,
            "produce_msgps": count / sent["flushed_s"], "consume_msgps": consumed / reading
            if reading > 0 else 0.0, "seconds": wall, "broker_cpu_s": cpu,
            "broker_cpu_pct": 100 * cpu / wall, "broker_cpu_us_per_msg": cpu / count * 1e6,
            "producer_cpu_pct": 100 * sent["client_cpu_s"] / sent["flushed_s"],
            "consumers_cpu_pct": 100 * sum(g["client_cpu_s"] for g in got) / wall,
            "fetch_responses": sum(g["responses"] for g in got),
            "empty_responses": sum(g["empty_responses"] for g in got),
            "session_resets": sum(g["session_resets"] for g in got),
            "sessionless_answers": sum(g["sessionless_answers"] for g in got),
            "partition_errors": sum(g["partition_errors"] for g in got),
            "rss_mib": broker.memory()}


def run_scale(quick: bool, tmp: str, lag: LoopLag) -> dict:
    """The scale phase on a broker of its own (see the module's docstring)."""
    seconds = 5 if quick else 10
    out: dict = {"rate_msgps": SCALE_RATE, "size": SCALE_SIZE, "seconds": seconds, "steps": [],
                 "create_topics_s": {}, "delete_topics_s": {}}
    broker = BrokerProcess(os.path.join(tmp, "scale-data")).start()
    try:
        first_metadata(broker.port, time.monotonic() + 10)
        lag.attach(broker)
        admin = Admin(broker.bootstrap)
        for partitions, consumer_counts in scale_steps(quick):
            per_topic = min(partitions, PARTITIONS_PER_TOPIC)
            topics = [f"bench-scale-p{partitions}-{i}-{time.monotonic_ns()}"
                      for i in range(partitions // per_topic)]
            base = {"bootstrap": broker.bootstrap, "port": broker.port, "topics": topics,
                    "per_topic": per_topic, "partitions": partitions}
            say(f"scale: creating {partitions:,} partitions ...")
            t0 = time.perf_counter()
            with lag.phase(f"scale: create {partitions:,} partitions"):
                for topic in topics:
                    admin.create(topic, per_topic)
            out["create_topics_s"][partitions] = time.perf_counter() - t0
            before: list[int] = []
            for consumers in consumer_counts:
                name = (f"scale: {partitions:,} partitions, {consumers:,} consumer"
                        + ("s" if consumers > 1 else ""))
                say(f"{name} ...")
                with lag.phase(name):
                    step = run_scale_step(broker, base, partitions, consumers, before, seconds,
                                          tmp)
                step["phase"] = name
                out["steps"].append(step)
                before.append(step["count"])
                say(f"  produce {step['produce_msgps']:,.0f} msg/s, consume "
                    f"{step['consume_msgps']:,.0f} msg/s, broker CPU "
                    f"{step['broker_cpu_pct']:.0f}% = {step['broker_cpu_us_per_msg']:.0f} us/msg")
            t0 = time.perf_counter()
            with lag.phase(f"scale: delete {partitions:,} partitions"):
                for topic in topics:
                    admin.delete(topic)
            out["delete_topics_s"][partitions] = time.perf_counter() - t0
        del admin
        lag.detach()
    finally:
        lag.close()
        broker.stop()
    for step in out["steps"]:
        step["loop_lag"] = lag.phase_stats(step["phase"])
    # The target: per-message broker CPU at the most partitions within 20% of 10 partitions,
    # with the same consumer count (1: the only one every partition count runs).
    one = [s for s in out["steps"] if s["consumers"] == 1]
    if len(one) >= 2:
        out["cpu_per_msg_ratio"] = {
            "partitions": [one[0]["partitions"], one[-1]["partitions"]], "consumers": 1,
            "ratio": one[-1]["broker_cpu_us_per_msg"] / one[0]["broker_cpu_us_per_msg"]}
    return out


# --------------------------------------------------------------------------------- reports

def table(results: dict) -> str:
    lines = []
    m = results["machine"]
    lines.append(f"machine: {m['cpus']} CPUs, load average {m['loadavg_at_start'][0]:.2f} at the "
                 f"start, {m.get('loadavg_at_end', (0,))[0]:.2f} at the end (other work on the "
                 f"machine makes every number noisier)")
    if "startup" in results:     # not with --scale alone
        lines += main_run_lines(results)
    lines += replication_lines(results.get("replication"), results)
    lines += security_lines(results.get("security"))
    lines += scale_lines(results.get("scale"))
    lines += loop_lag_lines(results.get("loop_lag"))
    for name, (ok, text) in results["floors"].items():
        lines.append(f"{'PASS' if ok else 'FAIL'}  {name}: {text}")
    return "\n".join(lines)


def main_run_lines(results: dict) -> list[str]:
    """Startup, memory, the throughput table and the latencies."""
    lines = []
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
    return lines


def scale_lines(sc: dict | None) -> list[str]:
    """The scale phase: one row a step."""
    if not sc:
        return []
    lines = [f"scale: {sc['rate_msgps']:,} msg/s of {sc['size']} B from one confluent-kafka "
             f"producer, spread evenly over every partition; raw long-polling consumers (Fetch "
             f"v11, KIP-227 sessions, max wait 500 ms), each reading its own share; "
             f"{sc['seconds']} s a step",
             f"{'partitions':>10}{'consumers':>10} | {'produce':>8}{'consume':>8} | "
             f"{'broker CPU':>11}{'us/msg':>7}{'ratio':>6} | {'loop lag ms: p50':>16}{'p99':>7}"
             f"{'max':>7}{'>50ms':>6} | {'fetches':>8}{'empty':>7}{'resets':>7}{'RSS':>5} |"]
    lines.append(f"{'':>10}{'':>10} | {'msg/s':>8}{'msg/s':>8} | {'%':>11}{'':>7}{'':>6} | "
                 f"{'':>16}{'':>7}{'':>7}{'':>6} | {'':>8}{'':>7}{'':>7}{'MiB':>5} |")
    lines.append("-" * len(lines[1]))
    first = sc["steps"][0]["broker_cpu_us_per_msg"] if sc["steps"] else 0
    for s in sc["steps"]:
        lag = s["loop_lag"]
        lines.append(
            f"{s['partitions']:>10,}{s['consumers']:>10,} | {s['produce_msgps']:>8,.0f}"
            f"{s['consume_msgps']:>8,.0f} | {s['broker_cpu_pct']:>11.0f}"
            f"{s['broker_cpu_us_per_msg']:>7.0f}{s['broker_cpu_us_per_msg'] / first:>6.2f} | "
            f"{lag.get('p50_ms', 0):>16.2f}"
            f"{lag.get('p99_ms', 0):>7.2f}{lag.get('max_ms', 0):>7.1f}{lag['stalls']:>6} | "
            f"{s['fetch_responses']:>8,}{s['empty_responses']:>7,}{s['session_resets']:>7,}"
            f"{s['rss_mib']['VmRSS']:>5.0f} |" + ("" if s["complete"] else " INCOMPLETE"))
    lines.append("us/msg: broker CPU-microseconds per message produced and read once; ratio: "
                 "to the first step's. fetches: Fetch answers (empty: with no records; resets: "
                 "fetch sessions lost).\nTopic creation: " + ", ".join(
                     f"{int(p):,} partitions {t:.1f} s" for p, t in sc["create_topics_s"].items())
                 + "; deletion: " + ", ".join(
                     f"{int(p):,} partitions {t:.1f} s" for p, t in sc["delete_topics_s"].items()))
    r = sc.get("cpu_per_msg_ratio")
    if r:
        lines.append(f"per-message broker CPU, {r['partitions'][1]:,} vs {r['partitions'][0]:,} "
                     f"partitions (1 consumer): x{r['ratio']:.2f}")
    lines.append("")
    return lines


def loop_lag_lines(lag: dict | None) -> list[str]:
    """The loop-lag probe: overall, each phase, the worst probes."""
    if not lag:
        return []
    o = lag["overall"]
    if not o["count"]:
        return ["loop lag: no probe answered", ""]
    lines = [f"loop lag (ApiVersions v0 every {lag['interval_ms']} ms on a connection of its own, "
             f"the round trip the probe process sees): {o['count']:,} probes, p50 "
             f"{o['p50_ms']:.2f} ms, p99 {o['p99_ms']:.2f} ms, max {o['max_ms']:.1f} ms, "
             f"{o['stalls']} over {lag['stall_ms']} ms",
             f"{'phase':<48}{'probes':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
             f"{'>' + str(lag['stall_ms']) + 'ms':>7}"]
    for p in lag["phases"]:
        if p["count"]:
            lines.append(f"{p['phase'][:47]:<48}{p['count']:>7,}{p['p50_ms']:>8.2f}"
                         f"{p['p99_ms']:>8.2f}{p['max_ms']:>8.1f}{p['stalls']:>7}")
    lines.append("worst: " + ", ".join(f"{w['rtt_ms']:.0f} ms ({w['phase']}"
                                       + (f"; steal {w['steal_ms']:.0f} ms" if w.get("steal_ms")
                                          else "") + ")"
                                       for w in lag["worst"][:5]))
    if "steal_ms" in lag:
        lines.append(f"hypervisor steal over the run: {lag['steal_ms']:,.0f} CPU-ms (steal near "
                     f"a round trip: CPU-ms the host took from this VM's CPUs from 20 ms before "
                     f"the probe was sent to 20 ms after its answer)")
    if lag["probe_errors"]:
        lines.append(f"probe errors: {lag['probe_errors']}")
    lines.append("")
    return lines


def check_floors(results: dict) -> dict:
    out = main_run_floors(results) if "startup" in results else {}
    lag = results.get("loop_lag")
    if lag and lag["overall"]["count"]:
        o, limit = lag["overall"], FLOORS["loop_lag_max_ms"]
        where = lag["worst"][0]["phase"]
        out["loop lag max (whole run)"] = (
            o["max_ms"] < limit and not lag["probe_errors"],
            f"{o['max_ms']:.1f} ms < {limit} ms ({o['count']:,} probes, {o['stalls']} over "
            f"{lag['stall_ms']} ms; the worst during {where})")
    ratio = (results.get("scale") or {}).get("cpu_per_msg_ratio")
    if ratio:
        limit = FLOORS["scale_cpu_per_msg_ratio"]
        small, large = ratio["partitions"]
        out[f"scale: broker CPU per message at {large:,} partitions"] = (
            ratio["ratio"] <= limit,
            f"x{ratio['ratio']:.2f} the {small}-partition figure <= x{limit} (1 consumer)")
    return out


def main_run_floors(results: dict) -> dict:
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
    lag = LoopLag(tmp)
    try:
        only_one = args.scale or args.replication or args.security   # a phase on its own
        if not only_one:
            run_main(args, results, tmp, lag, client_configs)
        if args.replication or not (only_one or args.only):
            say("replication (RF=3, three nodes) ...")
            results["replication"] = run_replication(args, tmp)
        if args.security or not (only_one or args.only):
            say("security (PLAINTEXT, SSL, SASL_SSL listeners) ...")
            results["security"] = run_security(args, tmp)
        if args.scale or not (only_one or args.only):
            say("scale ...")
            results["scale"] = run_scale(args.quick, tmp, lag)
        results["loop_lag"] = lag.summary()
        results["floors"] = check_floors(results)
        results["machine"]["loadavg_at_end"] = os.getloadavg()
    finally:
        lag.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def run_main(args, results: dict, tmp: str, lag: LoopLag, client_configs: dict) -> None:
    """Startup, then on one broker: the throughput cases, the latencies and the rebalance, with
    the loop-lag probe on that broker throughout."""
    say("startup ...")
    results["startup"] = measure_startup(3 if args.quick else 5, tmp)
    say("page-cache write ceiling ...")
    results["write_ceiling"] = write_ceiling(tmp, (256 if args.quick else 512) * MIB)
    data_dir = os.path.join(tmp, "data")
    broker = BrokerProcess(data_dir).start()
    try:
        first_metadata(broker.port, time.monotonic() + 10)
        results["memory"] = {"idle_after_startup": broker.memory()}
        lag.attach(broker)
        admin = Admin(broker.bootstrap)
        results["throughput"] = []
        for case in cases(args.quick):
            if args.only and args.only not in case.name:
                continue
            say(f"{case.name} ...")
            r = run_case(broker, admin, case, tmp, client_configs, prewarm=not args.no_prewarm,
                         lag=lag)
            results["throughput"].append(r)
            admin.delete(r["topic"])
            say(f"  produce {r['produce']['msgps']:,.0f} msg/s {r['produce']['MBps']:,.0f} MB/s"
                f", consume {r['consume']['msgps']:,.0f} msg/s {r['consume']['MBps']:,.0f} MB/s")
        if not args.only:
            say("end-to-end latency ...")
            seconds = 2 if args.quick else 5
            with lag.phase("end-to-end latency"):
                results["e2e"] = run_latency(broker, admin, tmp, linger_ms=5, fetch_wait_ms=10,
                                             size=100, rate=args.e2e_rate,
                                             warmup=int(args.e2e_rate // 2),
                                             count=int(args.e2e_rate * seconds))
            say("wake-up latency ...")
            with lag.phase("wake-up latency"):
                results["wakeup"] = run_latency(broker, admin, tmp, linger_ms=0,
                                                fetch_wait_ms=500, size=100, gap_ms=(30, 70),
                                                warmup=3, count=30 if args.quick else 100)
            say("rebalance (a second member joins) ...")
            with lag.phase("rebalance"):
                r = results["rebalance"] = run_rebalance(broker, admin, 1 if args.quick else 3)
            say(f"  classic protocol {r['classic']['median_s']:.2f} s, consumer protocol "
                f"(KIP-848) {r['consumer']['median_s']:.2f} s (median)")
        # Idle again: no client connected, every topic deleted.
        del admin
        lag.detach()
        results["memory"]["idle_after_run"] = broker.memory()
    finally:
        lag.close()
        broker.stop()


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
    spec = {"topic": "bench-profile", "size": args.profile_size, "acks": "all",
            "compression": "none",
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
            print(f"\n=== {phase} ({spec['size']} B, acks=all, 1 partition) under {tool}: "
                  f"{rates}; {path}")
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
    p.add_argument("--quick", action="store_true", help="a subset with less data, and a scale "
                   "phase of 10 and 1,000 partitions with 1 and 100 consumers (< 2 min)")
    p.add_argument("--scale", action="store_true", help="only the scale phase (with the "
                   "loop-lag probe); with --quick its small version")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--replication", action="store_true", help="only the RF=3 phase (three "
                   "nodes in one process)")
    p.add_argument("--security", action="store_true", help="only the security phase: "
                   "PLAINTEXT, SSL and SASL_SSL listeners of one broker side by side")
    p.add_argument("--only", metavar="TEXT", help="only throughput cases whose name has TEXT "
                   "(skips the latency and scale phases)")
    p.add_argument("--no-prewarm", action="store_true", help="do not pre-warm page-cache pages "
                   "before each produce phase (see the write ceiling line)")
    p.add_argument("--e2e-rate", type=float, default=2000, help="end-to-end stream, msg/s")
    p.add_argument("--profile", metavar="DIR", help="profile the broker under the 10 KB "
                   "acks=all produce and then the consume; the profiles go to DIR")
    p.add_argument("--profiler", choices=("py-spy", "cprofile"),
                   help="with --profile: py-spy (the default when installed) or cProfile")
    p.add_argument("--profile-size", type=int, default=10240,
                   help="with --profile: the message size (default 10 KB)")
    p.add_argument("--profile-count", type=int, default=60_000,
                   help="with --profile: 10 KB messages to produce (default 60000)")
    p.add_argument("--producer-config", action="append", default=[], type=_key_value,
                   metavar="KEY=VALUE", help="extra librdkafka setting of the throughput producers")
    p.add_argument("--consumer-config", action="append", default=[], type=_key_value,
                   metavar="KEY=VALUE", help="extra librdkafka setting of the throughput consumers")
    p.add_argument("--clients-nice", type=int, default=0, metavar="N",
                   help="run the client processes at nice N (not the loop-lag probe): to tell "
                   "the broker's own stalls from its waits for a CPU the clients hold; not for "
                   "the figures of record")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    global CLIENTS_NICE
    CLIENTS_NICE = args.clients_nice
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
