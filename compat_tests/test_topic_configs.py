"""Topic configs that change what is stored: compression.type and message.timestamp.type."""

import time

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition

from harness import CONSUMERS, create_topic, fetch_raw_batches, run_kcat, unique

VALUES = [f"value-{i:03d}-".encode() * 20 for i in range(40)]


def produce_confluent(bootstrap, topic, values, codec):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": codec})
    for v in values:
        p.produce(topic, value=v, key=v[:9])
    assert p.flush(20) == 0


def produce_kafka_python(bootstrap, topic, values, codec):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                      compression_type=None if codec == "none" else codec)
    try:
        for v in values:
            p.send(topic, value=v, key=v[:9])
        p.flush(20)
    finally:
        p.close()


@pytest.mark.parametrize("produced_with", [("confluent", "gzip"), ("confluent", "none"),
                                           ("kafka-python", "gzip"), ("kafka-python", "none")])
def test_zstd_topic_stores_zstd_whatever_the_producer_sent(broker, topic_name, produced_with):
    client, codec = produced_with
    create_topic(broker.bootstrap, topic_name, configs={"compression.type": "zstd"})
    produce = produce_confluent if client == "confluent" else produce_kafka_python
    produce(broker.bootstrap, topic_name, VALUES, codec)

    batches = fetch_raw_batches(broker.bootstrap, topic_name)
    assert batches and {b.compression for b in batches} == {4}        # zstd, recompressed
    assert [r.value for b in batches for r in b.records] == VALUES
    for name, consume in CONSUMERS.items():
        got = consume(broker.bootstrap, topic_name, [0], len(VALUES))
        assert [r.value for r in got] == VALUES, name
        assert [r.key for r in got] == [v[:9] for v in VALUES], name
    kcat = run_kcat("-C", "-b", broker.bootstrap, "-t", topic_name, "-o", "beginning", "-e",
                    "-f", "%s\\n")
    assert kcat.returncode == 0, kcat.stderr
    assert kcat.stdout.split() == VALUES


def test_log_append_time_replaces_the_producers_timestamps(broker, topic_name):
    create_topic(broker.bootstrap, topic_name,
                 configs={"message.timestamp.type": "LogAppendTime"})
    long_ago = 1_000_000_000_000          # 2001: CreateTime that the topic must not keep
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    delivered = []
    for i in range(3):
        p.produce(topic_name, value=b"v%d" % i, timestamp=long_ago + i,
                  on_delivery=lambda err, msg: delivered.append(msg.timestamp()))
    assert p.flush(10) == 0
    after = int(time.time() * 1000)
    # The producer learns the append time from the Produce response.
    assert all(kind == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after
               for kind, ts in delivered), delivered

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("lat"),
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            got += [m for m in c.consume(10, 0.5) if m.error() is None]
    finally:
        c.close()
    assert [m.value() for m in got] == [b"v0", b"v1", b"v2"]
    assert all(m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME and
               before <= m.timestamp()[1] <= after for m in got)

    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                       auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        kc.assign([KTopicPartition(topic_name, 0)])
        records = [next(kc) for _ in range(3)]
    finally:
        kc.close()
    assert all(r.timestamp_type == 1 and before <= r.timestamp <= after for r in records)
