"""The crash loop: SIGKILL the broker again and again under acks=all idempotent load.

Kafka's promise to an idempotent acks=all producer is that every acknowledged record stays
readable at the partition and offset it was acknowledged with, that a retry never appends a
record twice, and that an offset is never handed out twice. A single broker acknowledges once the
batch is in its segment file, so a SIGKILL (the page cache survives the process) loses nothing
acknowledged; on the next start recovery walks the segments written since the last flush, cuts a
torn tail and rebuilds the producer state from the log, so that a batch the dead broker stored but
never answered is recognised by its sequence number when librdkafka sends it again.

A confluent-kafka (librdkafka) producer runs in a process of its own and keeps producing while the
broker dies and comes back on the same port and data directory: librdkafka reconnects and resends
what was never answered. Each cycle waits for a number of new acknowledgements since the last
start (seeded and varied, from 1 to several hundred, so that kills land anywhere: mid-batch,
mid-roll of a small segment, right after recovery), then SIGKILLs. At the end the producer stops
and flushes, and the whole log is read back with confluent-kafka and with kafka-python.

    TRIOKA_CRASH_CYCLES=200 python -m pytest -s compat_tests/test_crash_loop.py   # a long campaign

CI runs CYCLES (20); the environment variable sets a longer campaign. `-s` shows the figures.
"""

import os
import random
import signal
import time

import pytest

from confluent_kafka import TopicPartition

from clients import confluent_assigned, consume_confluent_to, consume_kafka_python
from harness import ClientProcess, create_topic, wait_for

CYCLES = int(os.environ.get("TRIOKA_CRASH_CYCLES", "20"))
PARTITIONS = 3
# Each cycle waits for between 1 and this many acknowledgements after the broker's start.
MOST_ACKS_PER_CYCLE = 600
SEED = int(os.environ.get("TRIOKA_CRASH_SEED", "10"))


# The producer process. It produces `crash-<sequence>` values round-robin over the partitions,
# keeping up to 2,000 messages queued in librdkafka, and prints its delivery reports a poll at a
# time: {"acked": [[sequence, partition, offset], ...]}, {"failed": [[sequence, error], ...]};
# {"fatal": error} if librdkafka raises a fatal (idempotence) error. SIGUSR1 stops it: it stops
# producing, flushes and prints {"done": {"produced": n, "left": messages not delivered}}.
PRODUCER = """
import json, signal, sys
from confluent_kafka import Producer

bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
stopping = []
signal.signal(signal.SIGUSR1, lambda *_: stopping.append(True))
acked, failed = [], []

def on_delivery(err, msg):
    seq = int(msg.value()[len(b"crash-"):len(b"crash-") + 10])
    if err is None:
        acked.append([seq, msg.partition(), msg.offset()])
    else:
        failed.append([seq, str(err)])

def on_error(err):
    if err.fatal():
        print(json.dumps({"fatal": str(err)}), flush=True)

p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
              "linger.ms": 5, "batch.num.messages": 200, "message.timeout.ms": 120000,
              "retry.backoff.ms": 20, "retry.backoff.max.ms": 200,
              "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
              "on_delivery": on_delivery, "error_cb": on_error})

def report():
    if acked:
        print(json.dumps({"acked": acked}), flush=True)
        acked.clear()
    if failed:
        print(json.dumps({"failed": failed}), flush=True)
        failed.clear()

print(json.dumps({"started": True}), flush=True)
seq = 0
while not stopping:
    while len(p) < 2000 and not stopping:
        # Every 4th message is larger: batches then cross 32 KiB now and then, so appends are
        # written both on the event loop and from a worker thread (log/partition.py).
        value = b"crash-%010d-" % seq + b"v" * (80 if seq % 4 else 1200)
        p.produce(topic, value=value, partition=seq % partitions)
        seq += 1
    p.poll(0.005)
    report()
left = p.flush(120)
report()
print(json.dumps({"done": {"produced": seq, "left": left}}), flush=True)
"""


def value_of(seq: int) -> bytes:
    return b"crash-%010d-" % seq + b"v" * (80 if seq % 4 else 1200)


class Reports:
    """The producer process's delivery reports as they arrive (its events, read incrementally)."""

    def __init__(self, producer: ClientProcess):
        self.producer = producer
        self.read = 0
        self.acked: list[tuple[int, int, int]] = []     # (sequence, partition, offset)
        self.failed: list = []
        self.fatal: list = []

    def update(self) -> int:
        events = self.producer.events
        while self.read < len(events):
            event = events[self.read]
            self.read += 1
            self.acked.extend(tuple(a) for a in event.get("acked", ()))
            self.failed.extend(event.get("failed", ()))
            if "fatal" in event:
                self.fatal.append(event["fatal"])
        assert not self.fatal, f"librdkafka raised a fatal error: {self.fatal}"
        return len(self.acked)


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's high watermark (ListOffsets latest), checking the log starts at 0."""
    c = confluent_assigned(bootstrap)
    try:
        out = {}
        for p in range(PARTITIONS):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert low == 0, (p, low)
            out[p] = high
        return out
    finally:
        c.close()


@pytest.mark.slow
@pytest.mark.timeout(max(240, CYCLES * 8))
def test_sigkill_loop_loses_nothing_acknowledged(own_broker, topic_name):
    b = own_broker
    # Small segments: the stream rolls several, so recovery crosses segment boundaries and a
    # kill can land during a roll.
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS,
                 configs={"segment.bytes": "65536"})
    rng = random.Random(SEED)
    started = time.monotonic()
    producer = ClientProcess(PRODUCER, b.bootstrap, topic_name, str(PARTITIONS))
    reports = Reports(producer)
    # acks_at_kill[i]: acknowledgements received before the i-th SIGKILL (which cycle each
    # acknowledgement belongs to, for a failure's message).
    acks_at_kill: list[int] = []
    try:
        wait_for(lambda: producer.alive() and producer.latest("started"), 30,
                 "the producer process to start")
        for cycle in range(CYCLES):
            goal = reports.update() + rng.randint(1, MOST_ACKS_PER_CYCLE)
            wait_for(lambda: producer.alive() and reports.update() >= goal, 60,
                     lambda: f"cycle {cycle}: {goal} acknowledgements; {len(reports.acked)} "
                             f"came, broker said {b.output[-10:]}")
            b.kill()
            acks_at_kill.append(len(reports.acked))
            b.start()    # same port, same data directory: the unclean-shutdown recovery runs
        # A last stretch on the recovered broker, then stop, flush and wait for every report.
        goal = reports.update() + 200
        wait_for(lambda: producer.alive() and reports.update() >= goal, 60,
                 lambda: f"{goal} acknowledgements after the last restart")
        producer.proc.send_signal(signal.SIGUSR1)
        done = wait_for(lambda: producer.latest("done"), 150,
                        lambda: f"the producer to flush; errors {producer.errors[-10:]}")
        reports.update()
    finally:
        producer.kill()
    produced, left = done["produced"], done["left"]
    assert left == 0, f"{left} messages still undelivered after the flush"
    assert reports.failed == [], f"delivery errors: {reports.failed[:10]}"
    acked = reports.acked
    assert len(acked) == produced, (len(acked), produced)

    # No offset handed out twice: every acknowledgement names its own (partition, offset).
    positions = [(p, o) for _, p, o in acked]
    reused = len(positions) - len(set(positions))
    assert reused == 0, f"{reused} (partition, offset) pairs acknowledged more than once"
    assert len({seq for seq, _, _ in acked}) == len(acked), "a message acknowledged twice"

    # The log, read with confluent-kafka: offsets from 0 without a gap up to each high watermark.
    ends = {p: 1 + max(o for _, q, o in acked if q == p) for p in range(PARTITIONS)}
    assert high_watermarks(b.bootstrap, topic_name) == ends
    log = consume_confluent_to(b.bootstrap, topic_name, ends, timeout=90)
    for p in range(PARTITIONS):
        offsets = [r.offset for r in log[p]]
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets with a gap"
    stored = {(r.partition, r.offset): r.value for p in log for r in log[p]}

    # Zero acknowledged messages lost: each is read back at its partition and offset, as sent.
    def cycle_of(i: int) -> int:
        return next((c for c, n in enumerate(acks_at_kill) if i < n), len(acks_at_kill))
    lost = [(seq, p, o, cycle_of(i)) for i, (seq, p, o) in enumerate(acked)
            if stored.get((p, o)) != value_of(seq)]
    assert lost == [], (f"{len(lost)} acknowledged messages not read back at their offset "
                        f"(sequence, partition, offset, cycle): {lost[:10]}")
    # Zero duplicates: every produced value exactly once in the log, and nothing else.
    values = sorted(stored.values())
    duplicates = len(values) - len(set(values))
    assert duplicates == 0, f"{duplicates} values stored more than once"
    assert values == [value_of(seq) for seq in range(produced)]

    # The same log read by kafka-python (its own Fetch and record decoding).
    total = len(stored)
    again = consume_kafka_python(b.bootstrap, topic_name, range(PARTITIONS), total, timeout=90)
    assert len(again) == total
    assert {(r.partition, r.offset): r.value for r in again} == stored

    print(f"\ncrash loop: {CYCLES} SIGKILL cycles (seed {SEED}) in "
          f"{time.monotonic() - started:.1f} s, {len(acked)} messages acknowledged "
          f"(acks=all, idempotent, {PARTITIONS} partitions), {total} records in the log; "
          f"lost 0, duplicates 0, offsets reused 0")
