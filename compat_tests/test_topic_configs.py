"""Topic configs that change what is stored: compression.type and message.timestamp.type."""

import time

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Producer

from clients import CODECS, CONSUMERS, PRODUCERS, Rec
from harness import create_topic, fetch_raw_batches

VALUES = [f"value-{i:03d}-".encode() * 20 for i in range(40)]
RECORDS = [Rec(0, i, v[:9], v) for i, v in enumerate(VALUES)]


@pytest.mark.parametrize("produced_with", [("confluent", "gzip"), ("confluent", "none"),
                                           ("kafka-python", "gzip"), ("kafka-python", "none"),
                                           ("kafkajs", "lz4")])
def test_zstd_topic_stores_zstd_whatever_the_producer_sent(broker, topic_name, produced_with):
    client, codec = produced_with
    create_topic(broker.bootstrap, topic_name, configs={"compression.type": "zstd"})
    PRODUCERS[client](broker.bootstrap, topic_name, RECORDS, codec=codec)

    batches = fetch_raw_batches(broker.bootstrap, topic_name)
    assert batches and {b.compression for b in batches} == {4}        # zstd, recompressed
    assert [r.value for b in batches for r in b.records] == VALUES
    for name, consume in CONSUMERS.items():
        if "zstd" in CODECS[name]:
            got = consume(broker.bootstrap, topic_name, [0], len(VALUES))
            assert [r.value for r in got] == VALUES, name
            assert [r.key for r in got] == [v[:9] for v in VALUES], name


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

    # Every client reads the append time, and says so where it shows the timestamp type.
    for name, consume in CONSUMERS.items():
        got = consume(broker.bootstrap, topic_name, [0], 3, timestamp_type="LogAppendTime")
        assert [r.value for r in got] == [b"v0", b"v1", b"v2"], name
        assert all(before <= r.timestamp <= after for r in got), (name, got)
