"""Focused event-loop stall measurements, one broker process per scenario (the loop-lag probe of
bench/run.py: ApiVersions v0 every 10 ms on a connection of its own, its round trips' max):

    python bench/stalls.py long-poll [--consumers 1000] [--seconds 10]
    python bench/stalls.py delete [--partitions 10000]
    python bench/stalls.py create-partitions [--partitions 10000]
    python bench/stalls.py all

* long-poll: `--consumers` raw Fetch v11 clients (KIP-227 sessions, fetch.max.wait.ms 500) of a
  topic that gets no data, every first Fetch sent at the same moment, so that their timeouts
  expire together at the broker every 500 ms: a burst of that many ready long polls, as the
  scale phase's 1,000-consumer steps produce.
* delete: topics of 1,000 partitions (one CreateTopics may not create more than 10,000 records)
  created, then deleted one DeleteTopics at a time while the probe runs.
* create-partitions: a topic of one partition grown by CreatePartitions to `--partitions`, in
  steps of 1,000.

The probe's round trip includes its own wait for a CPU on a busy machine: an upper bound of the
broker's stall. Each scenario prints the probe's p50, p99, max and its round trips over 50 ms.
`--turns` runs the broker under bench/turns.py and prints, for the scenario's window, its event
loop's turns over 5 ms and its garbage collector's passes over 5 ms (the broker's own view).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import (PARTITIONS_PER_TOPIC, STALL_MS, Admin, BrokerProcess, LoopLag,  # noqa: E402
                 Worker, first_metadata, say)


def _turns(t0: int, t1: int) -> None:
    """The broker's loop turns over 5 ms and GC passes over 5 ms in [t0, t1] (--turns)."""
    with open(TURNS) as f:
        data = json.load(f)
    turns = sorted((ms for t, ms, *_ in data["turns_ms"] if t0 <= t <= t1), reverse=True)
    gcs = sorted(((ms, gen) for t, gen, ms, *_ in data["gc_ms"] if t0 <= t <= t1),
                 reverse=True)
    say(f"  loop turns over 5 ms: {len(turns)}, longest (ms): "
        + ", ".join(f"{ms:.1f}" for ms in turns[:10]))
    say(f"  GC passes over 5 ms: {len(gcs)}, longest (ms, generation): "
        + ", ".join(f"{ms:.1f} ({gen})" for ms, gen in gcs[:5]))


def _report(name: str, lag: LoopLag) -> dict:
    stats = lag.phase_stats(name)
    say(f"{name}: probes {stats.get('count', 0)}, p50 {stats.get('p50_ms', 0):.1f} ms, "
        f"p99 {stats.get('p99_ms', 0):.1f} ms, max {stats.get('max_ms', 0):.1f} ms, "
        f"{stats['stalls']} over {STALL_MS} ms")
    return dict(stats, window=next((t0, t1) for n, t0, t1 in lag.phases if n == name))


TURNS = None   # --turns: the file bench/turns.py writes the broker's long loop turns to


def _broker(tmp: str, lag: LoopLag) -> BrokerProcess:
    broker = BrokerProcess(os.path.join(tmp, f"data-{time.monotonic_ns()}"))
    if TURNS:
        os.environ["TRIOKA_TURNS_FILE"] = TURNS
        broker.python_options = [os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "turns.py")]
    broker.start()
    first_metadata(broker.port, time.monotonic() + 10)
    lag.attach(broker)
    return broker


def long_poll(tmp: str, consumers: int, seconds: float) -> dict:
    lag = LoopLag(tmp)
    broker = _broker(tmp, lag)
    fetchers = None
    try:
        admin = Admin(broker.bootstrap)
        partitions = min(consumers, PARTITIONS_PER_TOPIC)
        admin.create("idle", partitions)
        fetchers = Worker("idle-fetchers", {"port": broker.port, "topic": "idle",
                                            "partitions": partitions, "consumers": consumers,
                                            "max_wait_ms": 500}, tmp)
        fetchers.expect("ready", 120)
        name = f"{consumers:,} long polls expiring together"
        with lag.phase(name):
            fetchers.go()
            time.sleep(seconds)   # the measured window
        fetchers.stop()
        got = fetchers.result(60)
        lag.detach()
        stats = _report(name, lag)
        say(f"  Fetch answers: {got['responses']:,} (expected about "
            f"{consumers * seconds / 0.5:,.0f}), session resets {got['session_resets']}")
        return {"stalls": stats, "fetchers": got}
    finally:
        if fetchers is not None:
            fetchers.close()
        lag.close()
        broker.stop()


def delete(tmp: str, partitions: int) -> dict:
    lag = LoopLag(tmp)
    broker = _broker(tmp, lag)
    try:
        admin = Admin(broker.bootstrap)
        per_topic = min(partitions, PARTITIONS_PER_TOPIC)
        topics = [f"doomed-{i}" for i in range(partitions // per_topic)]
        for topic in topics:
            admin.create(topic, per_topic)
        name = f"delete {partitions:,} partitions"
        t0 = time.perf_counter()
        with lag.phase(name):
            for topic in topics:
                admin.delete(topic)
        took = time.perf_counter() - t0
        time.sleep(0.5)   # the removal of the dirs goes on after the answers
        lag.detach()
        stats = _report(name, lag)
        say(f"  DeleteTopics took {took:.2f} s")
        return {"stalls": stats, "seconds": took}
    finally:
        lag.close()
        broker.stop()


def create_partitions(tmp: str, partitions: int) -> dict:
    from confluent_kafka.admin import NewPartitions
    lag = LoopLag(tmp)
    broker = _broker(tmp, lag)
    try:
        admin = Admin(broker.bootstrap)
        admin.create("growing", 1)
        name = f"CreatePartitions to {partitions:,}"
        t0 = time.perf_counter()
        with lag.phase(name):
            for total in range(PARTITIONS_PER_TOPIC, partitions + 1, PARTITIONS_PER_TOPIC):
                futures = admin.client.create_partitions([NewPartitions("growing", total)],
                                                         request_timeout=30)
                futures["growing"].result(timeout=40)
        took = time.perf_counter() - t0
        lag.detach()
        stats = _report(name, lag)
        say(f"  CreatePartitions took {took:.2f} s")
        return {"stalls": stats, "seconds": took}
    finally:
        lag.close()
        broker.stop()


def _after(result: dict) -> None:
    if TURNS:   # written by the broker process at its exit
        _turns(*result["stalls"]["window"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=("long-poll", "delete", "create-partitions", "all"))
    p.add_argument("--consumers", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--partitions", type=int, default=10_000)
    p.add_argument("--turns", action="store_true", help="record the broker's loop turns and "
                   "GC passes over 5 ms (bench/turns.py) and print them per scenario")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trioka-stalls-") as tmp:
        global TURNS
        TURNS = os.path.join(tmp, "turns.json") if args.turns else None
        if args.scenario in ("long-poll", "all"):
            _after(long_poll(tmp, args.consumers, args.seconds))
        if args.scenario in ("delete", "all"):
            _after(delete(tmp, args.partitions))
        if args.scenario in ("create-partitions", "all"):
            _after(create_partitions(tmp, args.partitions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
