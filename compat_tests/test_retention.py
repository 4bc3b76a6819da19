"""Retention and DeleteRecords: old data goes, log start offsets move, consumers reset."""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from harness import BrokerProcess, create_topic


@pytest.fixture
def fast_retention_broker():
    b = BrokerProcess(overrides={"log.retention.check.interval.ms": "100"}).start()
    yield b
    b.close()


def produce(bootstrap, topic, n, size=500, partition=0):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(n):
        p.produce(topic, value=bytes([i % 256]) * size, key=str(i).encode(), partition=partition)
        p.flush(10)   # one batch per record, so segments fill predictably
    assert p.flush(10) == 0


def earliest(bootstrap, topic, partition=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "retention-probe"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return low, high
    finally:
        c.close()


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def consume_records(bootstrap, topic, start_offset, reset, expect, timeout=20.0):
    """(offset, key, value) of the records from `start_offset`, until `expect` are read."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "retention-reader",
                  "auto.offset.reset": reset, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, start_offset)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            for m in c.consume(100, 0.5):
                assert m.error() is None, m.error()
                got.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return got


def consume_all(bootstrap, topic, start_offset, reset, expect, timeout=20.0):
    return [offset for offset, _, _ in
            consume_records(bootstrap, topic, start_offset, reset, expect, timeout)]


def test_retention_ms_deletes_old_segments(fast_retention_broker, topic_name):
    b = fast_retention_broker
    create_topic(b.bootstrap, topic_name, configs={"segment.bytes": "2000",
                                                   "retention.ms": "300"})
    produce(b.bootstrap, topic_name, 20)
    low, high = wait_for(lambda: (lambda lh: lh if lh[0] > 0 else None)(
        earliest(b.bootstrap, topic_name)))
    assert high == 20 and 0 < low <= 20
    # A consumer asking for offset 0, now below the log start, is reset by its policy.
    got = consume_all(b.bootstrap, topic_name, 0, "earliest", expect=high - low)
    assert got == list(range(low, high))


def test_retention_bytes_keeps_the_newest(fast_retention_broker, topic_name):
    b = fast_retention_broker
    create_topic(b.bootstrap, topic_name, configs={"segment.bytes": "3000",
                                                   "retention.bytes": "6000"})
    produce(b.bootstrap, topic_name, 40)
    # 40 batches of about 580 bytes, five to a segment: the oldest segments go while what stays
    # is still at least retention.bytes, so the log start moves to 20 or beyond.
    low, high = wait_for(lambda: (lambda lh: lh if lh[0] >= 20 else None)(
        earliest(b.bootstrap, topic_name)))
    assert high == 40
    # ...and no further than that: at least 6000 bytes (ten batches) stay, the newest, whole.
    assert low <= 30
    kept = consume_records(b.bootstrap, topic_name, low, "earliest", expect=high - low)
    assert kept == [(i, str(i).encode(), bytes([i % 256]) * 500) for i in range(low, high)]


def test_delete_records_moves_log_start_offset(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, topic_name, 10, size=50)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition(topic_name, 0, 6)])
    result = futures[TopicPartition(topic_name, 0, 6)].result(15)
    assert result.low_watermark == 6
    assert earliest(broker.bootstrap, topic_name) == (6, 10)
    assert consume_all(broker.bootstrap, topic_name, 2, "earliest", expect=4) == [6, 7, 8, 9]
    assert consume_all(broker.bootstrap, topic_name, 2, "latest", expect=1, timeout=2) == []


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
