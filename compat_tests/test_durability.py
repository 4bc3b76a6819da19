"""Crash durability: what a broker acknowledged survives SIGKILL, and damaged files are recovered.

Kafka's promise to an acks=all producer is that an acknowledged record stays readable at the
offset it was acknowledged with. A single broker acknowledges after writing the batch to its
segment file (the OS holds it even if the process dies; a power cut is another matter, see
flush.messages), so a SIGKILL mid-stream loses nothing acknowledged. On the next start the broker
recovers the segments written since the last flush: it walks the batches, checks their CRC-32C and
cuts the log at the first batch that is torn or corrupt (a tail the dying process left half
written). Index files (.index, .timeindex) hold nothing the .log does not: when they are missing or
damaged they are rebuilt from it, and lookups by offset and by timestamp give the same answers.

Every check reads back over the wire with a stock client (confluent-kafka).
"""

import glob
import os
import random

import confluent_kafka
import pytest

from clients import confluent_assigned, consume_confluent
from harness import create_topic, wait_for
from trioka.log.records import encode_batch

PARTITIONS = 3
# The torn-tail and index tests' records carry fixed timestamps from years ago, and retention
# (retention.ms, 7 days, judged by record timestamps, checked every few seconds) would delete
# them mid-test: keep them.
KEEP = {"retention.ms": "-1"}


def producer_for(b, **extra) -> confluent_kafka.Producer:
    # Generous timeouts and quick reconnects: the broker is away while it restarts.
    return confluent_kafka.Producer({
        "bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": False,
        "linger.ms": 2, "batch.num.messages": 25, "message.timeout.ms": 90_000,
        "retry.backoff.ms": 50, "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
        **extra})


def high_watermarks(b, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    c = confluent_assigned(b.bootstrap)
    try:
        out = {}
        for p in range(partitions):
            low, high = c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p),
                                                timeout=10)
            assert low == 0
            out[p] = high
        return out
    finally:
        c.close()


def read_all(b, topic: str, partitions: int = PARTITIONS) -> dict[tuple[int, int], object]:
    """Every record of the topic: (partition, offset) -> Rec, checking that each partition's
    offsets run from 0 to its high watermark without a gap or a repeat."""
    highs = high_watermarks(b, topic, partitions)
    recs = consume_confluent(b.bootstrap, topic, list(range(partitions)), sum(highs.values()),
                             timeout=60)
    for p in range(partitions):
        assert [r.offset for r in recs if r.partition == p] == list(range(highs[p])), p
    return {(r.partition, r.offset): r for r in recs}


# ---------------------------------------------------------------------------------- SIGKILL

@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
@pytest.mark.timeout(240)
def test_acknowledged_records_survive_sigkill(own_broker, topic_name, idempotent):
    b = own_broker
    # Small segments, so that the stream spans several and recovery crosses segment boundaries.
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS,
                 configs={"segment.bytes": "16384"})
    producer = producer_for(b, **{"enable.idempotence": idempotent})
    acked: dict[tuple[int, int], bytes] = {}
    reused = []     # two acknowledgements carrying the same partition and offset
    failed = []
    sent = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append((err, msg.value()))
            return
        key = (msg.partition(), msg.offset())
        if key in acked:
            reused.append((key, acked[key], msg.value()))
        acked[key] = msg.value()

    def produce_one(tag: str) -> None:
        value = f"{tag}-{len(sent)}-".encode() + b"x" * 200
        producer.produce(topic_name, value=value, partition=len(sent) % PARTITIONS,
                         on_delivery=on_delivery)
        sent.append(value)

    def produce_until_acked(count: int) -> None:
        def acknowledged():
            produce_one("stream")
            producer.poll(0.001 if len(producer) < 200 else 0.05)
            return len(acked) >= count

        wait_for(acknowledged, 60, lambda: f"{count} acknowledged; {len(acked)} are",
                 interval=0)

    for round_ in range(2):
        produce_until_acked(len(acked) + 300)
        # A burst that cannot have been acknowledged yet (its callbacks are not served until the
        # next poll), then SIGKILL while it is queued or in flight.
        for _ in range(100):
            produce_one(f"burst{round_}")
        assert len(producer) >= 100
        b.kill()
        b.start()    # same port, same data dir: the unclean-shutdown recovery runs

    # librdkafka resends what the dead broker never answered; all of it is delivered.
    assert producer.flush(90) == 0
    assert failed == [] and reused == []
    stored = read_all(b, topic_name)
    # Every acknowledgement holds: the acknowledged value at the acknowledged offset.
    assert {key: stored[key].value for key in acked} == acked
    values = sorted(r.value for r in stored.values())
    if idempotent:
        # The producer's resends after the crash are recognised by their sequence numbers
        # (the producer state is rebuilt from the log): every record exactly once.
        assert values == sorted(sent)
    else:
        # Every record sent is there; one resent after a crash may be there twice.
        assert set(sent) <= set(values)

    # No offset is handed out twice: records produced now land after everything stored.
    highs = high_watermarks(b, topic_name)
    fresh = producer_for(b)
    new_offsets = {}
    for p in range(PARTITIONS):
        fresh.produce(topic_name, value=b"after-recovery", partition=p,
                      on_delivery=lambda err, msg: new_offsets.__setitem__(
                          msg.partition(), None if err else msg.offset()))
    assert fresh.flush(15) == 0
    assert new_offsets == highs
    for p in range(PARTITIONS):
        assert new_offsets[p] > max(o for q, o in acked if q == p)
    [rec] = consume_confluent(b.bootstrap, topic_name, [0], 1, start=highs[0])
    assert rec.value == b"after-recovery"


# ---------------------------------------------------------------------------------- torn tail

def produce_records(b, topic: str, per_partition: int, *, base_ts: int,
                    partitions: int = PARTITIONS, tag: str = "r") -> dict[tuple[int, int], tuple]:
    """Produce and wait for acks; (partition, offset) -> (value, timestamp)."""
    producer = producer_for(b)
    acked = {}
    for i in range(per_partition):
        for p in range(partitions):
            value = f"{tag}-{p}-{i}-".encode() + b"y" * 100
            ts = base_ts + i * 10
            producer.produce(topic, value=value, partition=p, timestamp=ts,
                             on_delivery=lambda err, msg, v=value, t=ts: acked.__setitem__(
                                 (msg.partition(), msg.offset()), (v, t) if err is None
                                 else err))
    assert producer.flush(30) == 0
    assert all(isinstance(v, tuple) for v in acked.values()), acked
    return acked


def active_log_file(b, topic: str, partition: int) -> str:
    return sorted(glob.glob(os.path.join(b.data_dir, f"{topic}-{partition}", "*.log")))[-1]


def torn_tails(next_offset: int) -> list[bytes]:
    """What a crash can leave after the last whole batch, one kind per partition: random bytes,
    the first part of a real batch (a write cut short), and zeros (blocks the file system
    allocated but the process never filled)."""
    batch = encode_batch([(b"torn", b"t" * 500)], base_offset=next_offset,
                         partition_leader_epoch=0)
    return [random.Random(20240).randbytes(3000), batch[:len(batch) // 2], bytes(4096)]


@pytest.mark.parametrize("shutdown", ["kill", "stop"])
def test_torn_tail_is_truncated(own_broker, topic_name, shutdown):
    b = own_broker
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS,
                 configs={"segment.bytes": "8192", **KEEP})
    acked = produce_records(b, topic_name, 60, base_ts=1_700_000_000_000)
    b.kill() if shutdown == "kill" else b.stop()
    for p, garbage in enumerate(torn_tails(60)):
        with open(active_log_file(b, topic_name, p), "ab") as f:
            f.write(garbage)
    b.start()

    stored = read_all(b, topic_name)
    assert {key: (r.value, r.timestamp) for key, r in stored.items()} == acked
    # The log end is where the whole batches ended: new records follow them directly.
    more = produce_records(b, topic_name, 5, base_ts=1_700_000_100_000, tag="after")
    assert sorted(more) == [(p, o) for p in range(PARTITIONS) for o in range(60, 65)]
    stored = read_all(b, topic_name)
    assert {key: (r.value, r.timestamp) for key, r in stored.items()} == {**acked, **more}


# ---------------------------------------------------------------------------------- indexes

def offsets_for_times(b, topic: str, partition: int, timestamps: list[int]) -> list[int]:
    """ListOffsets by timestamp through librdkafka: the first offset whose timestamp is at or
    after each time (-1 where there is none)."""
    c = confluent_assigned(b.bootstrap)
    try:
        out = []
        for ts in timestamps:
            [tp] = c.offsets_for_times([confluent_kafka.TopicPartition(topic, partition, ts)],
                                       timeout=10)
            assert tp.error is None, tp
            out.append(tp.offset)
        return out
    finally:
        c.close()


@pytest.mark.parametrize("shutdown,damage", [("stop", "deleted"), ("kill", "deleted"),
                                             ("stop", "garbage")])
def test_index_files_are_rebuilt(own_broker, topic_name, shutdown, damage):
    b = own_broker
    # Many small segments with dense indexes, so lookups really go through them.
    create_topic(b.bootstrap, topic_name, partitions=1,
                 configs={"segment.bytes": "4096", "index.interval.bytes": "256", **KEEP})
    base_ts = 1_710_000_000_000
    acked = produce_records(b, topic_name, 200, base_ts=base_ts, partitions=1)
    probes = [base_ts - 1, base_ts, base_ts + 555, base_ts + 1000, base_ts + 1990,
              base_ts + 1991]
    expected = [0, 0, 56, 100, 199, -1]   # record i has timestamp base_ts + 10 * i
    assert offsets_for_times(b, topic_name, 0, probes) == expected
    b.kill() if shutdown == "kill" else b.stop()

    directory = os.path.join(b.data_dir, f"{topic_name}-0")
    indexes = glob.glob(os.path.join(directory, "*.index")) + \
        glob.glob(os.path.join(directory, "*.timeindex"))
    assert len(glob.glob(os.path.join(directory, "*.log"))) > 5
    assert indexes
    for path in indexes:
        if damage == "deleted":
            os.remove(path)
        else:
            with open(path, "r+b") as f:
                f.write(random.Random(path).randbytes(max(os.path.getsize(path), 37)))
    b.start()

    stored = read_all(b, topic_name, partitions=1)
    assert {key: (r.value, r.timestamp) for key, r in stored.items()} == acked
    # Reads from the middle find their batch through the rebuilt offset index.
    for start in (37, 123, 199):
        recs = consume_confluent(b.bootstrap, topic_name, [0], 200 - start, start=start)
        assert [(r.offset, r.value) for r in recs] == [
            (o, acked[(0, o)][0]) for o in range(start, 200)]
    assert offsets_for_times(b, topic_name, 0, probes) == expected
