"""The durable setting: `log.flush.interval.messages=1` (Kafka's flush.messages=1, broker-wide).

Kafka's append flushes (fsync) before it returns once `flush.messages` are unflushed, so with 1
every acknowledged batch is on disk before the producer hears of it. trioka does the same with
the fsyncs in worker threads and group commit (appends made while a flush runs share the next
one). What a stock client can check of it, acks=all:

- every acknowledged record is read back, at its offset, after SIGKILL and a restart;
- the broker counts them as flushed: its recovery point checkpoint (written every
  `log.flush.offset.checkpoint.interval.ms`, 500 ms here) covers every acknowledged offset, so
  the restart has nothing of them to recover.

(A SIGKILL keeps the page cache, so that the records survive it shows that nothing was lost or
reused, not that they were fsync'd; the recovery point is the broker's own word for that.)
"""

import confluent_kafka
import pytest

from clients import Rec, consume_confluent, produce_confluent, produce_kafka_python
from harness import create_topic, wait_for
from trioka.log.checkpoint import RECOVERY_POINT_CHECKPOINT, read_offset_checkpoint
from trioka.log.files import DiskFiles
from trioka.testing.process import BrokerProcess

PARTITIONS = 3
PER_PARTITION = 400
DURABLE = {"log.flush.interval.messages": "1",
           "log.flush.offset.checkpoint.interval.ms": "500"}
PRODUCERS = {"confluent": produce_confluent, "kafka-python": produce_kafka_python}


@pytest.fixture
def durable_broker():
    with BrokerProcess(overrides=DURABLE) as b:
        yield b.start()


def recovery_points(data_dir: str, topic: str) -> dict[int, int]:
    """The broker's recovery-point-offset-checkpoint for `topic`: partition -> offset."""
    try:
        points = read_offset_checkpoint(DiskFiles(data_dir), RECOVERY_POINT_CHECKPOINT)
    except FileNotFoundError:
        return {}
    return {p: offset for (t, p), offset in points.items() if t == topic}


@pytest.mark.parametrize("client", list(PRODUCERS))
@pytest.mark.timeout(180)
def test_acknowledged_records_are_flushed_and_survive_sigkill(durable_broker, topic_name,
                                                              client):
    b = durable_broker
    # Small segments: the flushes cross rolls (new segment files, their dir flushed too).
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS,
                 configs={"segment.bytes": "32768", "retention.ms": "-1"})
    records = [Rec(i % PARTITIONS, None, None, f"{client}-{i}-".encode() + b"d" * 200)
               for i in range(PARTITIONS * PER_PARTITION)]
    reports = PRODUCERS[client](b.bootstrap, topic_name, records, acks="all", timeout=60)
    acked = {report: record.value for report, record in zip(reports, records)}
    assert len(acked) == len(records)
    ends = {p: 1 + max(o for q, o in acked if q == p) for p in range(PARTITIONS)}
    assert ends == {p: PER_PARTITION for p in range(PARTITIONS)}

    # The broker's word that they are on disk: its next recovery point checkpoint covers them.
    wait_for(lambda: recovery_points(b.data_dir, topic_name) == ends, 30,
             lambda: f"recovery points {recovery_points(b.data_dir, topic_name)}, "
                     f"acknowledged up to {ends}")

    b.kill()
    b.start()
    stored = consume_confluent(b.bootstrap, topic_name, list(range(PARTITIONS)), len(acked),
                               timeout=60)
    assert {(r.partition, r.offset): r.value for r in stored} == acked

    # Nothing acknowledged is given again: the next records follow at the ends.
    producer = confluent_kafka.Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    offsets = {}
    for p in range(PARTITIONS):
        producer.produce(topic_name, value=b"after", partition=p,
                         on_delivery=lambda err, msg: offsets.__setitem__(
                             msg.partition(), err or msg.offset()))
    assert producer.flush(30) == 0
    assert offsets == ends
