"""kafka-python against trioka: KafkaAdminClient, KafkaProducer, KafkaConsumer (manually assigned).

Consumers use `assign` with explicit positions: no group is joined, nothing is committed. Every
assertion is on what the broker sent back: record metadata of sends, fetched records, admin
responses and their error codes.
"""

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import TopicAlreadyExistsError

from harness import (CODEC_IDS, CONSUMERS, SAMPLE_TIMESTAMP, by_partition, cluster_id_of,
                     consume_kafka_python, sample_records, stored_batches, unique)

TIMEOUT = 20

# Kafka's error codes (errors.md) as they come back in admin responses.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40


def admin_for(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000)


def create(bootstrap: str, name: str, partitions: int, configs: dict | None = None) -> None:
    admin = admin_for(bootstrap)
    try:
        result = admin.create_topics({name: {"num_partitions": partitions,
                                             "replication_factor": 1,
                                             "configs": configs or {}}})
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(name, NONE)]
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, records, **conf) -> list[tuple[int, int]]:
    """Send records as given (partition, key, value, headers, timestamp); the (partition,
    offset) of each acknowledged send in send order."""
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                      request_timeout_ms=TIMEOUT * 1000, **conf)
    try:
        futures = [p.send(topic, value=r.value, key=r.key, partition=r.partition,
                          headers=list(r.headers), timestamp_ms=r.timestamp) for r in records]
        p.flush(timeout=TIMEOUT)
        return [(m.partition, m.offset) for m in (f.get(timeout=TIMEOUT) for f in futures)]
    finally:
        p.close(timeout=TIMEOUT)


def offsets_of(records) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


# --- 1. the round trip --------------------------------------------------------------------------

def test_produce_consume_keys_headers_tombstones_timestamps(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    records = sample_records(3)
    assert produce(broker.bootstrap, topic_name, records) == offsets_of(records)
    got = consume_kafka_python(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)


def test_consume_from_a_middle_offset(broker, topic_name):
    create(broker.bootstrap, topic_name, 1)
    records = sample_records(1)
    produce(broker.bootstrap, topic_name, records)
    got = consume_kafka_python(broker.bootstrap, topic_name, [0], len(records) - 4, start=4)
    assert got == records[4:]


# --- 2. every codec, read back by every client ----------------------------------------------------

@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_codec_roundtrip_and_cross_client(broker, topic_name, codec):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2, tag=codec)
    sent = produce(broker.bootstrap, topic_name, records,
                   compression_type=None if codec == "none" else codec)
    assert sent == offsets_of(records)
    for client, consume in CONSUMERS.items():
        got = consume(broker.bootstrap, topic_name, range(2), len(records))
        assert by_partition(got) == by_partition(records), client
    stored = {b.codec for p in range(2)
              for b in stored_batches(broker.data_dir, topic_name, p)}
    # Clients send a batch uncompressed when compressing does not make it smaller; the large
    # value makes sure at least one batch is compressed.
    assert CODEC_IDS[codec] in stored and stored <= {CODEC_IDS["none"], CODEC_IDS[codec]}


# --- 3. across a broker restart ------------------------------------------------------------------

@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill"])
def test_restart_keeps_records_and_offsets(own_broker, topic_name, kill):
    create(own_broker.bootstrap, topic_name, 2)
    first = sample_records(2, tag="a")
    produce(own_broker.bootstrap, topic_name, first, compression_type="snappy")
    own_broker.restart(kill=kill)
    got = consume_kafka_python(own_broker.bootstrap, topic_name, range(2), len(first))
    assert by_partition(got) == by_partition(first)
    second = sample_records(2, tag="b", first_offset=6)
    assert produce(own_broker.bootstrap, topic_name, second) == offsets_of(second)
    everything = first + second
    got = consume_kafka_python(own_broker.bootstrap, topic_name, range(2), len(everything))
    assert by_partition(got) == by_partition(everything)


# --- 4. admin ------------------------------------------------------------------------------------

def create_codes(admin, topics: dict, **kw) -> list[tuple[str, int]]:
    result = admin.create_topics(topics, raise_errors=False, **kw)
    return [(t["name"], t["error_code"]) for t in result["topics"]]


def test_admin_create_topics_validation(broker):
    admin = admin_for(broker.bootstrap)
    try:
        name = unique("kp-admin")
        spec = {"num_partitions": 2, "replication_factor": 1}
        assert create_codes(admin, {name: spec}, validate_only=True) == [(name, NONE)]
        assert name not in admin.list_topics()
        assert create_codes(admin, {name: spec}) == [(name, NONE)]
        assert name in admin.list_topics()
        assert create_codes(admin, {name: spec}) == [(name, TOPIC_ALREADY_EXISTS)]
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({name: spec})
        bad = ["bad name", "bad/name", ".", "..", "x" * 250, "caf\u00e9"]
        assert create_codes(admin, {b: spec for b in bad}) \
            == [(b, INVALID_TOPIC_EXCEPTION) for b in bad]
        rf3 = unique("rf3")
        assert create_codes(admin, {rf3: {"num_partitions": 1, "replication_factor": 3}}) \
            == [(rf3, INVALID_REPLICATION_FACTOR)]
        cfg = unique("cfg")
        assert create_codes(admin, {cfg: {**spec, "configs": {"no.such.key": "1"}}}) \
            == [(cfg, INVALID_CONFIG)]
        assert create_codes(admin, {cfg: {**spec, "configs": {"cleanup.policy": "shred"}}}) \
            == [(cfg, INVALID_CONFIG)]
        # Broker defaults: -1 partitions and replication factor.
        dflt = unique("defaults")
        assert create_codes(admin, [dflt]) == [(dflt, NONE)]
        [t] = admin.describe_topics([dflt])
        assert len(t["partitions"]) == 1
        assert cfg not in admin.list_topics() and rf3 not in admin.list_topics()
    finally:
        admin.close()


def test_admin_create_topics_response_configs(broker):
    admin = admin_for(broker.bootstrap)
    try:
        name = unique("kp-configs")
        result = admin.create_topics({name: {"num_partitions": 4, "replication_factor": 1,
                                             "configs": {"retention.ms": "12345"}}})
        [t] = result["topics"]
        assert (t["error_code"], t["num_partitions"], t["replication_factor"]) == (NONE, 4, 1)
        configs = {k: v["value"] for k, v in t["configs"].items()}
        assert configs["retention.ms"] == "12345"
        assert configs["cleanup.policy"] == "delete"
    finally:
        admin.close()


def test_admin_describe_topics(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    admin = admin_for(broker.bootstrap)
    try:
        [t] = admin.describe_topics([topic_name])
        assert (t["name"], t["error_code"], t["is_internal"]) == (topic_name, NONE, False)
        assert [p["partition_index"] for p in t["partitions"]] == [0, 1, 2]
        for p in t["partitions"]:
            assert (p["error_code"], p["leader_id"], p["replica_nodes"], p["isr_nodes"]) \
                == (NONE, 1, [1], [1])
        # By topic id (Metadata v12+).
        topic_id = uuid.UUID(str(t["topic_id"]))
        assert topic_id.int != 0
        [by_id] = admin.describe_topics([topic_id])
        assert (by_id["name"], str(by_id["topic_id"])) == (topic_name, str(topic_id))
        assert topic_name in [x["name"] for x in admin.describe_topics()]
        # Asking for a missing topic does not create it (allow_auto_topic_creation false).
        missing = unique("missing")
        [m] = admin.describe_topics([missing])
        assert (m["name"], m["error_code"]) == (missing, UNKNOWN_TOPIC_OR_PARTITION)
        assert missing not in admin.list_topics()
    finally:
        admin.close()


def test_admin_create_partitions(broker, topic_name):
    create(broker.bootstrap, topic_name, 1)
    admin = admin_for(broker.bootstrap)
    try:
        r = admin.create_partitions({topic_name: 3}, validate_only=True)
        assert [(x.name, x.error_code) for x in r.results] == [(topic_name, NONE)]
        assert len(admin.describe_topics([topic_name])[0]["partitions"]) == 1
        r = admin.create_partitions({topic_name: 3})
        assert [(x.name, x.error_code) for x in r.results] == [(topic_name, NONE)]
        [t] = admin.describe_topics([topic_name])
        assert [(p["partition_index"], p["leader_id"]) for p in t["partitions"]] \
            == [(0, 1), (1, 1), (2, 1)]
        r = admin.create_partitions({topic_name: 2}, raise_errors=False)
        assert [x.error_code for x in r.results] == [INVALID_PARTITIONS]
        r = admin.create_partitions({unique("missing"): 2}, raise_errors=False)
        assert [x.error_code for x in r.results] == [UNKNOWN_TOPIC_OR_PARTITION]
    finally:
        admin.close()
    records = [r for r in sample_records(3) if r.partition > 0]
    assert produce(broker.bootstrap, topic_name, records) == offsets_of(records)
    got = consume_kafka_python(broker.bootstrap, topic_name, [1, 2], len(records))
    assert by_partition(got) == by_partition(records)


def test_admin_delete_topics(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    produce(broker.bootstrap, topic_name, sample_records(2))
    admin = admin_for(broker.bootstrap)
    try:
        r = admin.delete_topics([topic_name])
        assert [(t["name"], t["error_code"]) for t in r["topics"]] == [(topic_name, NONE)]
        assert topic_name not in admin.list_topics()
        [m] = admin.describe_topics([topic_name])
        assert m["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
        r = admin.delete_topics([topic_name], raise_errors=False)
        assert [t["error_code"] for t in r["topics"]] == [UNKNOWN_TOPIC_OR_PARTITION]
    finally:
        admin.close()


def test_admin_describe_cluster(broker):
    admin = admin_for(broker.bootstrap)
    try:
        d = admin.describe_cluster()
        assert d["cluster_id"] == cluster_id_of(broker)
        assert d["controller_id"] == 1
        assert [(b["broker_id"], b["host"], b["port"]) for b in d["brokers"]] \
            == [(1, "127.0.0.1", broker.port)]
    finally:
        admin.close()


# --- 5. list offsets -----------------------------------------------------------------------------

def test_list_offsets(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2)
    produce(broker.bootstrap, topic_name, records)
    p0 = [r for r in records if r.partition == 0]
    tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                      request_timeout_ms=TIMEOUT * 1000)
    try:
        assert c.beginning_offsets([tp0, tp1], timeout_ms=TIMEOUT * 1000) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1], timeout_ms=TIMEOUT * 1000) == {tp0: 6, tp1: 6}
        found = c.offsets_for_times({tp0: p0[3].timestamp, tp1: SAMPLE_TIMESTAMP},
                                    timeout_ms=TIMEOUT * 1000)
        assert (found[tp0].offset, found[tp0].timestamp) == (3, p0[3].timestamp)
        assert (found[tp1].offset, found[tp1].timestamp) == (0, SAMPLE_TIMESTAMP + 100_000)
        found = c.offsets_for_times({tp0: p0[3].timestamp + 1, tp1: 2 * SAMPLE_TIMESTAMP},
                                    timeout_ms=TIMEOUT * 1000)
        # Past the last timestamp there is no offset: kafka-python answers None.
        assert (found[tp0].offset, found[tp1]) == (4, None)
    finally:
        c.close()
    admin = admin_for(broker.bootstrap)
    try:
        got = admin.list_partition_offsets({tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.LATEST})
        assert (got[tp0].offset, got[tp1].offset) == (0, 6)
        got = admin.list_partition_offsets({tp0: OffsetSpec.MAX_TIMESTAMP})
        assert (got[tp0].offset, got[tp0].timestamp) == (5, p0[5].timestamp)
    finally:
        admin.close()


# --- 6. acks and the idempotent producer ---------------------------------------------------------

@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(broker, topic_name, acks):
    create(broker.bootstrap, topic_name, 3)
    records = sample_records(3, tag=str(acks))
    sent = produce(broker.bootstrap, topic_name, records, acks=acks,
                   enable_idempotence=acks == "all")
    pids = {b.producer_id for p in range(3) for b in stored_batches(broker.data_dir, topic_name, p)}
    assert (min(pids) >= 0) if acks == "all" else (pids == {-1}), pids
    if acks == 0:
        # No response, so the broker gave no offsets: only the partitions are known.
        assert [p for p, _ in sent] == [r.partition for r in records]
    else:
        assert sent == offsets_of(records)
    got = consume_kafka_python(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)


def test_idempotent_producer(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    records = [r for n in range(10) for r in sample_records(3, tag=f"i{n}", first_offset=6 * n)]
    records.sort(key=lambda r: (r.offset, r.partition))
    sent = produce(broker.bootstrap, topic_name, records, enable_idempotence=True,
                   compression_type="gzip", max_in_flight_requests_per_connection=5)
    assert sent == offsets_of(records)
    ids = set()
    for p in range(3):
        for b in stored_batches(broker.data_dir, topic_name, p):
            ids.add((b.producer_id, b.producer_epoch))
            assert b.base_sequence == b.base_offset, b   # sequences run with a fresh log's offsets
    assert len(ids) == 1 and min(ids)[0] >= 0, ids
    got = consume_kafka_python(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)
