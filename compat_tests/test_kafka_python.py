"""kafka-python against trioka: what only this client does, its KafkaAdminClient (topics by name
and by id, partitions, the cluster) and its list-offsets calls. The round trips every client
makes (every codec, acks, idempotence, restarts) are in test_round_trips.py.

Consumers use `assign` with explicit positions: no group is joined, nothing is committed. Every
assertion is on what the broker sent back: record metadata of sends, fetched records, admin
responses and their error codes.
"""

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import TopicAlreadyExistsError

from clients import (SAMPLE_TIMESTAMP, by_partition, consume_kafka_python, offsets_of,
                     produce_kafka_python, sample_records)
from harness import unique

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


# --- admin ----------------------------------------------------------------------------------------

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
    assert produce_kafka_python(broker.bootstrap, topic_name, records) == offsets_of(records)
    got = consume_kafka_python(broker.bootstrap, topic_name, [1, 2], len(records))
    assert by_partition(got) == by_partition(records)


def test_admin_delete_topics(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    produce_kafka_python(broker.bootstrap, topic_name, sample_records(2))
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
        assert d["cluster_id"] == broker.cluster_id
        assert d["controller_id"] == 1
        assert [(b["broker_id"], b["host"], b["port"]) for b in d["brokers"]] \
            == [(1, "127.0.0.1", broker.port)]
    finally:
        admin.close()


# --- list offsets ---------------------------------------------------------------------------------

def test_list_offsets(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2)
    produce_kafka_python(broker.bootstrap, topic_name, records)
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
