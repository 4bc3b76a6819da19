"""KafkaJS 2.2 (pure JavaScript, its own protocol code) against trioka.

The node drivers in compat_tests/js take their arguments on the command line and print JSON lines:
admin.js runs admin calls, produce.js sends messages, fetch.js reads a partition with KafkaJS's own
Fetch and record decoder. KafkaJS's public consumer always joins a consumer group, so records are
read back through fetch.js and through confluent-kafka; both check every byte, header and
timestamp that KafkaJS sent.
"""

import base64
import json

import pytest

from harness import (Rec, advertised_api_keys, cluster_id_of, consume_confluent, create_topic,
                     fetch_raw_batches, produce_raw, run_kafkajs, unique)

FIND_COORDINATOR = 10
# Records here carry fixed timestamps from years ago, and retention (retention.ms, 7 days, judged
# by record timestamps and checked every few seconds) would delete them mid-test: keep them.
KEEP = {"retention.ms": "-1"}


def driver(script: str, *args: str) -> list[dict]:
    r = run_kafkajs(script, *args)
    assert r.returncode == 0, (script, r.stdout.decode(), r.stderr.decode()[-3000:])
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


def admin(bootstrap: str, *ops: dict) -> list[dict]:
    out = driver("admin.js", bootstrap, json.dumps(list(ops)))
    assert [o["op"] for o in out] == [o["op"] for o in ops], out
    return out


def produce(bootstrap: str, topic: str, sends: list[list[dict]], *, acks: int = -1,
            compression: str = "none") -> list[list[dict]]:
    """Each inner list is one producer.send(); the RecordMetadata list of each."""
    spec = {"topic": topic, "acks": acks, "compression": compression, "sends": sends}
    out = driver("produce.js", bootstrap, json.dumps(spec))
    assert [o["send"] for o in out] == list(range(len(sends))), out
    return [o["result"] for o in out]


def unb64(text):
    return None if text is None else base64.b64decode(text)


def kafkajs_fetch(bootstrap: str, topic: str, partition: int, count: int,
                  start: int = 0) -> tuple[list[Rec], int]:
    """Records read by KafkaJS's Fetch, and the high watermark it was told."""
    out = driver("fetch.js", bootstrap, topic, str(partition), str(start), str(count))
    records = []
    for line in out[:-1]:
        r = line["record"]
        assert r["timestampType"] == 0, r   # CreateTime
        records.append(Rec(r["partition"], r["offset"], unb64(r["key"]), unb64(r["value"]),
                           [(k, unb64(v)) for k, v in r["headers"]], r["timestamp"]))
    done = out[-1]["done"]
    assert done["count"] == len(records) == count, out
    return records, int(done["highWatermark"])


def spec_of(rec: Rec) -> dict:
    """A produce.js message for a Rec (bytes as base64; repeated header names as a list)."""
    headers: dict = {}
    for name, value in rec.headers:
        entry = {"b64": base64.b64encode(value).decode()}
        if name in headers:
            if not isinstance(headers[name], list):
                headers[name] = [headers[name]]
            headers[name].append(entry)
        else:
            headers[name] = entry

    def b(v):
        return None if v is None else {"b64": base64.b64encode(v).decode()}
    return {"key": b(rec.key), "value": b(rec.value), "partition": rec.partition,
            "timestamp": rec.timestamp, "headers": headers}


def expected_records(tag: str) -> list[Rec]:
    """Three partitions of records with keys, null keys and values, empty values, binary bytes,
    repeated and empty headers and explicit timestamps. KafkaJS gathers repeated header names in
    one list, so repeated names are kept adjacent (the order KafkaJS can express)."""
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
                                 "controller": 1, "clusterId": cluster_id_of(broker)}
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
    produce(broker.bootstrap, topic_name, [[
        {"key": f"k{i}", "value": f"v{i}", "partition": 1, "timestamp": base_ts + i * 1000}
        for i in range(6)]])
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

@pytest.mark.parametrize("acks", [-1, 1])
@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4"])
def test_produce_and_read_back(broker, topic_name, acks, compression):
    create_topic(broker.bootstrap, topic_name, partitions=3, configs=KEEP)
    expected = expected_records("js")
    first, second = [r for r in expected if r.offset < 3], [r for r in expected if r.offset >= 3]
    results = produce(broker.bootstrap, topic_name, [[spec_of(r) for r in first],
                                                     [spec_of(r) for r in second]],
                      acks=acks, compression=compression)
    # One RecordMetadata per partition and send: the base offset of what was appended.
    for result, base in zip(results, (0, 3)):
        assert sorted((m["partition"], m["errorCode"], m["baseOffset"]) for m in result) == [
            (p, 0, str(base)) for p in range(3)]

    got = consume_confluent(broker.bootstrap, topic_name, [0, 1, 2], len(expected))
    assert sorted(got) == sorted(expected)

    for p in range(3):
        records, high = kafkajs_fetch(broker.bootstrap, topic_name, p, 6)
        assert records == [r for r in expected if r.partition == p]
        assert high == 6
        # Starting inside a batch: KafkaJS drops the records before the offset asked for.
        records, _ = kafkajs_fetch(broker.bootstrap, topic_name, p, 2, start=4)
        assert records == [r for r in expected if r.partition == p and r.offset >= 4]

    codec = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}[compression]
    for p in range(3):
        batches = fetch_raw_batches(broker.bootstrap, topic_name, p)
        assert [(b.base_offset, b.records_count, b.compression) for b in batches] == [
            (0, 3, codec), (3, 3, codec)]

    [offsets] = admin(broker.bootstrap, {"op": "fetchTopicOffsets", "topic": topic_name})
    assert sorted((o["partition"], o["low"], o["high"]) for o in offsets["result"]) == [
        (p, "0", "6") for p in range(3)]


def test_acks_zero(broker, topic_name):
    """With acks=0 the broker sends no response and KafkaJS reports no metadata; the records
    still arrive, in order."""
    create_topic(broker.bootstrap, topic_name, partitions=2, configs=KEEP)
    sends = [[{"key": f"k{s}{i}", "value": f"v{s}{i}", "partition": i % 2,
               "timestamp": 1_700_000_000_000 + s * 10 + i} for i in range(4)]
             for s in range(3)]
    results = produce(broker.bootstrap, topic_name, sends, acks=0)
    assert results == [[], [], []]
    got = consume_confluent(broker.bootstrap, topic_name, [0, 1], 12)
    expected = []
    for p in (0, 1):
        mine = [m for send in sends for m in send if m["partition"] == p]
        expected += [Rec(p, i, m["key"].encode(), m["value"].encode(), [], m["timestamp"])
                     for i, m in enumerate(mine)]
    assert sorted(got) == sorted(expected)


# ------------------------------------------------------------------------------------- consume

def test_kafkajs_reads_what_other_clients_wrote(broker, topic_name):
    import confluent_kafka

    from trioka.log.records import encode_batch
    create_topic(broker.bootstrap, topic_name, partitions=1, configs=KEEP)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap,
                                         "compression.type": "gzip", "linger.ms": 50})
    expected = []
    for i in range(5):
        rec = Rec(0, i, f"ck{i}".encode() if i != 2 else None,
                  (f"confluent-{i}-" * 50).encode() if i != 3 else None,
                  [("from", b"confluent"), ("i", str(i).encode())], 1_660_000_000_000 + i)
        producer.produce(topic_name, key=rec.key, value=rec.value, partition=0,
                         timestamp=rec.timestamp, headers=list(rec.headers))
        expected.append(rec)
    assert producer.flush(15) == 0
    # An uncompressed batch built byte by byte, with a gap-free run of three records.
    raw = [(f"raw{i}".encode(), f"raw-value-{i}".encode(), [("from", b"trioka")],
            1_660_000_001_000 + i) for i in range(3)]
    base = produce_raw(broker.bootstrap, topic_name, 0, encode_batch(raw))
    assert base == 5
    expected += [Rec(0, base + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(raw)]

    records, high = kafkajs_fetch(broker.bootstrap, topic_name, 0, len(expected))
    assert records == expected
    assert high == len(expected)
    records, _ = kafkajs_fetch(broker.bootstrap, topic_name, 0, 2, start=6)
    assert records == expected[6:]


def test_consumer_group(broker, topic_name):
    if FIND_COORDINATOR not in advertised_api_keys(broker.bootstrap):
        pytest.skip("KafkaJS's consumer (consumer.run) always joins a consumer group, and "
                    "trioka does not serve groups yet (FindCoordinator, JoinGroup, SyncGroup, "
                    "Heartbeat, OffsetCommit/OffsetFetch: issue 3). Until then KafkaJS reads "
                    "through its Fetch (fetch.js), tested above.")
    create_topic(broker.bootstrap, topic_name, partitions=3, configs=KEEP)
    expected = expected_records("grp")
    produce(broker.bootstrap, topic_name, [[spec_of(r) for r in expected]])
    out = driver("consume.js", broker.bootstrap, topic_name, unique("kafkajs-group"),
                 str(len(expected)))
    assert out[-1] == {"done": {"count": len(expected), "highWatermark": None}}
    got = [Rec(r["partition"], r["offset"], unb64(r["key"]), unb64(r["value"]),
               [(k, unb64(v)) for k, v in r["headers"]], r["timestamp"])
           for r in (line["record"] for line in out[:-1])]
    assert sorted(got) == sorted(expected)
