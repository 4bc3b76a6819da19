"""Retention and DeleteRecords: old data goes, log start offsets move, consumers reset."""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import Rec, confluent_assigned, consume_confluent, produce_confluent
from harness import create_topic, unique, wait_for
from trioka.testing.process import BrokerProcess


@pytest.fixture
def fast_retention_broker():
    with BrokerProcess(overrides={"log.retention.check.interval.ms": "100"}) as b:
        yield b.start()


def produce(bootstrap, topic, n, size=500, partition=0):
    # One batch per record (batch.num.messages 1), so segments fill predictably.
    produce_confluent(bootstrap, topic, [Rec(partition, None, str(i).encode(),
                                             bytes([i % 256]) * size) for i in range(n)],
                      config={"linger.ms": 0, "batch.num.messages": 1})


def earliest(bootstrap, topic, partition=0):
    """(log start offset, high watermark), as ListOffsets answers them."""
    c = confluent_assigned(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def steady_log_start(bootstrap, topic, ready, seen: list):
    """(log start offset, high watermark) once `ready(low, high)` and the same for 0.3 s (three
    retention passes at the fast broker's 100 ms): a consumer reading from the log start then
    finds what was counted, with no pass moving it meanwhile. Poll it with `seen` a new list."""
    low, high = earliest(bootstrap, topic)
    seen.append((low, high, time.monotonic()))
    same = [s for s in seen if s[:2] == (low, high)]
    return (low, high) if ready(low, high) and same[-1][2] - same[0][2] >= 0.3 else None


def consume_all(bootstrap, topic, start_offset, reset, expect):
    """Offsets a consumer assigned at `start_offset` reads, with auto.offset.reset `reset`."""
    got = consume_confluent(bootstrap, topic, [0], expect, start=start_offset, timeout=20,
                            config={"auto.offset.reset": reset})
    return [r.offset for r in got]


def test_retention_ms_deletes_old_segments(fast_retention_broker, topic_name):
    b = fast_retention_broker
    create_topic(b.bootstrap, topic_name, configs={"segment.bytes": "2000",
                                                   "retention.ms": "300"})
    produce(b.bootstrap, topic_name, 20)
    seen = []
    low, high = wait_for(lambda: steady_log_start(b.bootstrap, topic_name,
                                                  lambda low, high: low > 0, seen), 20,
                         "retention to delete the first segments")
    assert high == 20 and 0 < low <= 20
    # A consumer asking for offset 0, now below the log start, is reset by its policy.
    got = consume_all(b.bootstrap, topic_name, 0, "earliest", expect=high - low)
    assert got == list(range(low, high))


def test_retention_bytes_keeps_the_newest(fast_retention_broker, topic_name):
    b = fast_retention_broker
    create_topic(b.bootstrap, topic_name, configs={"segment.bytes": "3000",
                                                   "retention.bytes": "6000"})
    produce(b.bootstrap, topic_name, 40)

    # A retention pass may run while the records are still arriving, and the next one then
    # deletes a segment more: wait for the log start a pass after the last record leaves.
    # 40 batches of about 580 bytes, at most 6000 bytes kept (+ the active segment).
    seen = []
    low, high = wait_for(lambda: steady_log_start(b.bootstrap, topic_name,
                                                  lambda low, high: low >= 20 and high == 40,
                                                  seen), 20,
                         "retention to leave the newest 6000 bytes")
    assert high == 40 and 20 <= low <= 30
    # The newest records are all still there, read back over the wire.
    assert consume_all(b.bootstrap, topic_name, low, "earliest", expect=high - low) == \
        list(range(low, high))


def test_delete_records_moves_log_start_offset(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, topic_name, 10, size=50)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition(topic_name, 0, 6)])
    result = futures[TopicPartition(topic_name, 0, 6)].result(15)
    assert result.low_watermark == 6
    assert earliest(broker.bootstrap, topic_name) == (6, 10)
    assert consume_all(broker.bootstrap, topic_name, 2, "earliest", expect=4) == [6, 7, 8, 9]
    # With auto.offset.reset=latest, offset 2 (below the log start) resets to the end: the
    # first record the consumer gets is one produced after that, none of 6-9.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("retention-reader"),
                  "auto.offset.reset": "latest", "enable.auto.commit": False})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    got = []
    try:
        c.assign([TopicPartition(topic_name, 0, 2)])

        def first_record():
            # The consumer gives no sign of when it has reset, so keep producing until it
            # reads one record.
            p.produce(topic_name, f"new-{len(got)}".encode(), partition=0)
            p.poll(0)
            got.extend(m for m in c.consume(100, 0.2) if m.error() is None)
            return got

        wait_for(first_record, 20, "a record read after the reset to the end", interval=0)
        assert p.flush(10) == 0
    finally:
        c.close()
    assert got[0].offset() >= 10 and got[0].value().startswith(b"new-"), \
        (got[0].offset(), got[0].value())


def test_kafka_python_delete_records(broker, topic_name):
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition as KTopicPartition
    create_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, topic_name, 5, size=50)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        tp = KTopicPartition(topic_name, 0)
        admin.delete_records({tp: 3})
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        try:
            assert consumer.beginning_offsets([tp])[tp] == 3
            assert consumer.end_offsets([tp])[tp] == 5
        finally:
            consumer.close()
    finally:
        admin.close()


def test_log_dirs_report_partition_sizes(broker, topic_name):
    from kafka.admin import KafkaAdminClient
    create_topic(broker.bootstrap, topic_name, partitions=2)
    produce(broker.bootstrap, topic_name, 3, size=100, partition=1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                 for node in admin.describe_log_dirs() for d in node["log_dirs"]
                 for t in d["topics"] for p in t["partitions"]}
        assert sizes[(topic_name, 0)] == 0
        assert sizes[(topic_name, 1)] > 300
    finally:
        admin.close()
