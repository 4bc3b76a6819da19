"""KafkaJS 2.2 (pure JavaScript, its own protocol code) against trioka: what only KafkaJS does.

The node drivers in compat_tests/js take their arguments on the command line (or stdin) and print
JSON lines: admin.js runs admin calls, produce.js sends messages, fetch.js reads a partition with
KafkaJS's own Fetch and record decoder (no group), consume.js is KafkaJS's public consumer, which
always joins a consumer group. The round trips every client makes, KafkaJS among them (every codec
it has, acks, idempotence, restarts), are in test_round_trips.py; here are KafkaJS's admin calls,
what its sends and batches look like, and its group consumer.
"""

import json

import pytest
from confluent_kafka import Consumer, TopicPartition

from clients import (Rec, consume_confluent, fetch_kafkajs, kafkajs, kafkajs_message,
                     kafkajs_record, produce_kafkajs, produce_kafkajs_sends)
from harness import create_topic, fetch_raw_batches, unique

# Records here carry fixed timestamps from years ago, and retention (retention.ms, 7 days, judged
# by record timestamps and checked every few seconds) would delete them mid-test: keep them.
KEEP = {"retention.ms": "-1"}


def admin(bootstrap: str, *ops: dict) -> list[dict]:
    out = kafkajs("admin.js", bootstrap, json.dumps(list(ops)))
    assert [o["op"] for o in out] == [o["op"] for o in ops], out
    return out


def expected_records(tag: str) -> list[Rec]:
    """Three partitions of records with keys, null keys and values, empty values, binary bytes,
    repeated and empty headers, a binary header value and explicit timestamps. KafkaJS gathers
    repeated header names in one list, so repeated names are kept adjacent (the order KafkaJS
    can express)."""
    out = []
    for p in range(3):
        ts = 1_700_000_000_000 + p * 100_000
        rows = [
            (f"k{tag}{p}0".encode(), f"v{tag}{p}0".encode(), [("h1", b"one"), ("h2", b"")]),
            (f"k{tag}{p}1".encode(), None, [("tombstone", b"yes")]),
            (None, f"no-key{tag}{p}".encode(), []),
            (f"k{tag}{p}3".encode(), b"", [("dup", b"1"), ("dup", b"2"), ("dup", b"3")]),
            (f"k{tag}{p}4".encode(), (f"big{tag}{p}" * 2000).encode(), [("size", b"big")]),
            (f"k{tag}{p}5".encode(), bytes(range(256)), [("bin", bytes(range(250, 256)))]),
        ]
        for i, (key, value, headers) in enumerate(rows):
            out.append(Rec(p, i, key, value, headers, ts + i * 7))
    return out


# --------------------------------------------------------------------------------------- admin

def test_admin_topic_lifecycle(broker, topic_name):
    from confluent_kafka.admin import AdminClient
    other = unique("kafkajs-invalid")
    created, again, invalid, listed, metadata, cluster, offsets = admin(
        broker.bootstrap,
        {"op": "createTopics", "topics": [{"topic": topic_name, "numPartitions": 3,
                                           "configEntries": [{"name": "retention.ms",
                                                              "value": "3600000"}]}]},
        {"op": "createTopics", "topics": [{"topic": topic_name, "numPartitions": 3}]},
        {"op": "createTopics", "topics": [{"topic": other, "configEntries": [
            {"name": "no.such.config", "value": "1"}]}]},
        {"op": "listTopics"},
        {"op": "fetchTopicMetadata", "topics": [topic_name]},
        {"op": "describeCluster"},
        {"op": "fetchTopicOffsets", "topic": topic_name})
    assert created["result"] is True
    assert again["result"] is False          # KafkaJS's answer to TOPIC_ALREADY_EXISTS
    [error] = invalid["error"]["errors"]
    assert (error["type"], error["code"]) == ("INVALID_CONFIG", 40)
    assert topic_name in listed["result"] and other not in listed["result"]
    [topic] = metadata["result"]["topics"]
    assert topic["name"] == topic_name
    assert [(p["partitionId"], p["partitionErrorCode"], p["leader"], p["replicas"], p["isr"])
            for p in sorted(topic["partitions"], key=lambda p: p["partitionId"])] == [
        (i, 0, 1, [1], [1]) for i in range(3)]
    host, port = broker.bootstrap.split(":")
    assert cluster["result"] == {"brokers": [{"nodeId": 1, "host": host, "port": int(port)}],
                                 "controller": 1, "clusterId": broker.cluster_id}
    assert sorted((o["partition"], o["low"], o["high"]) for o in offsets["result"]) == [
        (i, "0", "0") for i in range(3)]

    # Another client sees what KafkaJS created...
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic_name, timeout=10)
    assert sorted(md.topics[topic_name].partitions) == [0, 1, 2]

    deleted, listed = admin(broker.bootstrap, {"op": "deleteTopics", "topics": [topic_name]},
                            {"op": "listTopics"})
    assert "error" not in deleted, deleted
    assert topic_name not in listed["result"]
    # ... and that KafkaJS deleted it.
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert topic_name not in md.topics


def test_create_partitions_and_offsets_by_timestamp(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1, configs=KEEP)
    grown, metadata = admin(broker.bootstrap,
                            {"op": "createPartitions", "topicPartitions": [
                                {"topic": topic_name, "count": 3}]},
                            {"op": "fetchTopicMetadata", "topics": [topic_name]})
    assert "error" not in grown, grown
    assert sorted(p["partitionId"] for p in metadata["result"]["topics"][0]["partitions"]) \
        == [0, 1, 2]
    base_ts = 1_650_000_000_000
    produce_kafkajs(broker.bootstrap, topic_name, [
        Rec(1, i, f"k{i}".encode(), f"v{i}".encode(), [], base_ts + i * 1000) for i in range(6)])
    by_time, offsets = admin(broker.bootstrap,
                             {"op": "fetchTopicOffsetsByTimestamp", "topic": topic_name,
                              "timestamp": base_ts + 2500},
                             {"op": "fetchTopicOffsets", "topic": topic_name})
    by_partition = {o["partition"]: o["offset"] for o in by_time["result"]}
    # The first record at or after the time; KafkaJS reports the end offset where none is.
    assert by_partition == {0: "0", 1: "3", 2: "0"}
    assert sorted((o["partition"], o["low"], o["high"]) for o in offsets["result"]) == [
        (0, "0", "0"), (1, "0", "6"), (2, "0", "0")]


# ------------------------------------------------------------------------------------- produce

@pytest.mark.parametrize("acks", ["all", 1])
@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4"])
def test_each_send_is_one_batch_per_partition(broker, topic_name, acks, compression):
    """Two producer.send() calls: KafkaJS reports each send's base offset per partition, and
    writes each send as one batch per partition; its Fetch, started inside a batch, drops the
    records before the offset asked for."""
    create_topic(broker.bootstrap, topic_name, partitions=3, configs=KEEP)
    expected = expected_records("js")
    first, second = [r for r in expected if r.offset < 3], [r for r in expected if r.offset >= 3]
    results = produce_kafkajs_sends(broker.bootstrap, topic_name,
                                    [[kafkajs_message(r) for r in first],
                                     [kafkajs_message(r) for r in second]],
                                    acks=acks, codec=compression)
    # One RecordMetadata per partition and send: the base offset of what was appended.
    for result, base in zip(results, (0, 3)):
        assert sorted((m["partition"], m["errorCode"], m["baseOffset"]) for m in result) == [
            (p, 0, str(base)) for p in range(3)]

    got = consume_confluent(broker.bootstrap, topic_name, [0, 1, 2], len(expected))
    assert sorted(got) == sorted(expected)

    for p in range(3):
        records, high = fetch_kafkajs(broker.bootstrap, topic_name, p, 6)
        assert records == [r for r in expected if r.partition == p]
        assert high == 6
        # Starting inside a batch: KafkaJS drops the records before the offset asked for.
        records, _ = fetch_kafkajs(broker.bootstrap, topic_name, p, 2, start=4)
        assert records == [r for r in expected if r.partition == p and r.offset >= 4]

    codec = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}[compression]
    for p in range(3):
        batches = fetch_raw_batches(broker.bootstrap, topic_name, p)
        assert [(b.base_offset, b.records_count, b.compression) for b in batches] == [
            (0, 3, codec), (3, 3, codec)]

    [offsets] = admin(broker.bootstrap, {"op": "fetchTopicOffsets", "topic": topic_name})
    assert sorted((o["partition"], o["low"], o["high"]) for o in offsets["result"]) == [
        (p, "0", "6") for p in range(3)]


# ------------------------------------------------------------------------------------- consume

def test_consumer_group(broker, topic_name):
    """KafkaJS's public consumer (consumer.run) joins a group (FindCoordinator, JoinGroup,
    SyncGroup, Heartbeat), reads every partition from the beginning and commits what it read
    (OffsetCommit), as another client of the group then finds."""
    create_topic(broker.bootstrap, topic_name, partitions=3, configs=KEEP)
    expected = expected_records("grp")
    produce_kafkajs(broker.bootstrap, topic_name, expected)
    group = unique("kafkajs-group")
    out = kafkajs("consume.js", broker.bootstrap, topic_name, group, str(len(expected)))
    assert out[-1] == {"done": {"count": len(expected), "highWatermark": None}}
    got = [kafkajs_record(line["record"]) for line in out[:-1]]
    assert sorted(got) == sorted(expected)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        committed = c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=20)
    finally:
        c.close()
    assert {tp.partition: tp.offset for tp in committed} == {p: 6 for p in range(3)}
