"""confluent-kafka (librdkafka) against trioka: what only this client does. Its admin client
(create, describe, grow and delete topics, describe the cluster), its list-offsets calls, and the
order of its idempotent producer's delivery reports. The round trips every client makes (every
codec, acks, idempotence, restarts) are in test_round_trips.py.

Every consumer here is manually assigned (`assign`) and reads from explicit offsets: no group is
joined and nothing is committed. Every assertion is on what came back from the broker: delivery
reports, fetched records, admin results.
"""

import pytest
from confluent_kafka import (OFFSET_END, Consumer, KafkaError, KafkaException, Producer,
                             TopicCollection, TopicPartition)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec

from clients import (SAMPLE_TIMESTAMP, by_partition, consume_confluent, offsets_of,
                     produce_confluent, sample_records)
from harness import unique

TIMEOUT = 20


def admin_for(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap: str, name: str, partitions: int, **kw) -> None:
    admin = admin_for(bootstrap)   # kept alive until the answer is in
    futures = admin.create_topics([NewTopic(name, partitions, 1, **kw)], request_timeout=TIMEOUT)
    assert futures[name].result(timeout=TIMEOUT) is None


def offsets_client(bootstrap: str) -> Consumer:
    """A consumer only used for watermarks and offsets by time (the binding wants a group.id;
    with nothing subscribed or committed it never joins that group)."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique("offsets"),
                     "enable.auto.commit": False})


# --- admin ----------------------------------------------------------------------------------------

def create_error(admin: AdminClient, topic: NewTopic, **kw) -> int:
    futures = admin.create_topics([topic], request_timeout=TIMEOUT, **kw)
    with pytest.raises(KafkaException) as e:
        futures[topic.topic].result(timeout=TIMEOUT)
    return e.value.args[0].code()


def test_admin_create_topics_validation(broker):
    admin = admin_for(broker.bootstrap)
    name = unique("confluent-admin")
    futures = admin.create_topics([NewTopic(name, 2, 1)], validate_only=True,
                                  request_timeout=TIMEOUT)
    assert futures[name].result(timeout=TIMEOUT) is None
    assert name not in admin.list_topics(timeout=TIMEOUT).topics
    create(broker.bootstrap, name, 2)
    assert name in admin.list_topics(timeout=TIMEOUT).topics
    assert create_error(admin, NewTopic(name, 2, 1)) == KafkaError.TOPIC_ALREADY_EXISTS
    assert create_error(admin, NewTopic(name, 2, 1), validate_only=True) \
        == KafkaError.TOPIC_ALREADY_EXISTS
    for bad in ["bad name", "bad/name", ".", "..", "x" * 250]:
        assert create_error(admin, NewTopic(bad, 1, 1)) == KafkaError.TOPIC_EXCEPTION, bad
    assert create_error(admin, NewTopic(unique("rf"), 1, 3)) \
        == KafkaError.INVALID_REPLICATION_FACTOR
    assert create_error(admin, NewTopic(unique("cfg"), 1, 1, config={"no.such.key": "1"})) \
        == KafkaError.INVALID_CONFIG
    assert create_error(admin, NewTopic(unique("cfg"), 1, 1, config={"retention.ms": "soon"})) \
        == KafkaError.INVALID_CONFIG
    assert create_error(admin, NewTopic(unique("parts"), 0, 1)) == KafkaError.INVALID_PARTITIONS


def test_admin_create_topic_with_configs(broker, topic_name):
    create(broker.bootstrap, topic_name, 1,
           config={"cleanup.policy": "compact", "max.message.bytes": "20000"})
    records = [r for r in sample_records(1) if r.key is not None]
    records = [r._replace(offset=i) for i, r in enumerate(records)]
    assert produce_confluent(broker.bootstrap, topic_name, records) == offsets_of(records)
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": TIMEOUT * 1000})
    errors = []
    # A value bigger than the topic's max.message.bytes is MSG_SIZE_TOO_LARGE, and a compacted
    # topic refuses a record without a key (INVALID_RECORD).
    p.produce(topic_name, b"x" * 50_000, b"k", partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(TIMEOUT) == 0
    p.produce(topic_name, b"no key", partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(TIMEOUT) == 0
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD]
    got = consume_confluent(broker.bootstrap, topic_name, [0], len(records))
    assert got == records


def test_admin_describe_topics(broker, topic_name):
    admin = admin_for(broker.bootstrap)
    create(broker.bootstrap, topic_name, 3)
    md = admin.list_topics(timeout=TIMEOUT)
    assert list(md.brokers) == [1]
    assert (md.brokers[1].host, md.brokers[1].port) == ("127.0.0.1", broker.port)
    assert md.controller_id == 1
    assert md.cluster_id == broker.cluster_id
    t = md.topics[topic_name]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert (p.leader, p.replicas, p.isrs, p.error) == (1, [1], [1], None)

    desc = admin.describe_topics(TopicCollection([topic_name]), request_timeout=TIMEOUT)
    d = desc[topic_name].result(timeout=TIMEOUT)
    assert d.name == topic_name and not d.is_internal
    assert str(d.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA")
    assert [p.id for p in d.partitions] == [0, 1, 2]
    for p in d.partitions:
        assert p.leader.id == 1
        assert [n.id for n in p.replicas] == [1] and [n.id for n in p.isr] == [1]


def test_admin_create_partitions(broker, topic_name):
    admin = admin_for(broker.bootstrap)
    create(broker.bootstrap, topic_name, 2)
    fs = admin.create_partitions([NewPartitions(topic_name, 5)], validate_only=True,
                                 request_timeout=TIMEOUT)
    assert fs[topic_name].result(timeout=TIMEOUT) is None
    assert len(admin.list_topics(timeout=TIMEOUT).topics[topic_name].partitions) == 2
    fs = admin.create_partitions([NewPartitions(topic_name, 5)], request_timeout=TIMEOUT)
    assert fs[topic_name].result(timeout=TIMEOUT) is None
    assert sorted(admin.list_topics(timeout=TIMEOUT).topics[topic_name].partitions) \
        == [0, 1, 2, 3, 4]
    fs = admin.create_partitions([NewPartitions(topic_name, 4)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic_name].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    fs = admin.create_partitions([NewPartitions(unique("missing"), 4)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The new partitions take records like the old ones.
    records = [r for r in sample_records(5) if r.partition >= 2]
    delivered = produce_confluent(broker.bootstrap, topic_name, records)
    assert delivered == offsets_of(records)
    got = consume_confluent(broker.bootstrap, topic_name, [2, 3, 4], len(records))
    assert by_partition(got) == by_partition(records)


def test_admin_delete_topics(broker, topic_name):
    admin = admin_for(broker.bootstrap)
    create(broker.bootstrap, topic_name, 2)
    produce_confluent(broker.bootstrap, topic_name, sample_records(2))
    fs = admin.delete_topics([topic_name], request_timeout=TIMEOUT)
    assert fs[topic_name].result(timeout=TIMEOUT) is None
    assert topic_name not in admin.list_topics(timeout=TIMEOUT).topics
    desc = admin.describe_topics(TopicCollection([topic_name]), request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        desc[topic_name].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    fs = admin.delete_topics([topic_name], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic_name].result(timeout=TIMEOUT)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The name is free again: a new topic of that name starts from offset 0.
    create(broker.bootstrap, topic_name, 1)
    records = sample_records(1, tag="again")
    assert produce_confluent(broker.bootstrap, topic_name, records) == offsets_of(records)
    assert consume_confluent(broker.bootstrap, topic_name, [0], len(records)) == records


def test_admin_describe_cluster(broker):
    admin = admin_for(broker.bootstrap)
    d = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert d.cluster_id == broker.cluster_id
    assert d.controller.id == 1
    assert [(n.id, n.host, n.port) for n in d.nodes] == [(1, "127.0.0.1", broker.port)]


# --- list offsets ---------------------------------------------------------------------------------

def test_list_offsets(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2)
    produce_confluent(broker.bootstrap, topic_name, records)
    p0 = [r for r in records if r.partition == 0]
    c = offsets_client(broker.bootstrap)
    try:
        for p in range(2):
            tp = TopicPartition(topic_name, p)
            assert c.get_watermark_offsets(tp, timeout=TIMEOUT) == (0, 6)
        # By timestamp: the first offset whose timestamp is at or after the one asked for.
        asked = [TopicPartition(topic_name, 0, p0[2].timestamp),       # exactly record 2
                 TopicPartition(topic_name, 1, SAMPLE_TIMESTAMP)]       # before partition 1's
        found = c.offsets_for_times(asked, timeout=TIMEOUT)
        assert [(tp.partition, tp.offset, tp.error) for tp in found] == [(0, 2, None),
                                                                          (1, 0, None)]
        found = c.offsets_for_times([TopicPartition(topic_name, 0, p0[2].timestamp + 1),
                                     TopicPartition(topic_name, 1, 2 * SAMPLE_TIMESTAMP)],
                                    timeout=TIMEOUT)
        # Past the last timestamp there is no such offset: the end (-1).
        assert [(tp.partition, tp.offset) for tp in found] == [(0, 3), (1, OFFSET_END)]
    finally:
        c.close()

    admin = admin_for(broker.bootstrap)
    tp0 = TopicPartition(topic_name, 0)
    for spec, want in [(OffsetSpec.earliest(), (0, -1)), (OffsetSpec.latest(), (6, -1)),
                       (OffsetSpec.max_timestamp(), (5, p0[5].timestamp)),
                       (OffsetSpec.for_timestamp(p0[4].timestamp), (4, p0[4].timestamp))]:
        result = admin.list_offsets({tp0: spec}, request_timeout=TIMEOUT)[tp0].result(TIMEOUT)
        assert (result.offset, result.timestamp) == want, spec


# --- the idempotent producer's delivery reports ------------------------------------------------

def test_idempotent_delivery_reports_come_in_offset_order(broker, topic_name):
    """librdkafka's idempotent producer reports each partition's records in offset order, as
    idempotence promises, also over many small batches."""
    create(broker.bootstrap, topic_name, 3)
    records = [r for n in range(20) for r in sample_records(3, tag=f"i{n}", first_offset=6 * n)]
    records.sort(key=lambda r: (r.offset, r.partition))
    reported = []
    reports = produce_confluent(broker.bootstrap, topic_name, records, codec="zstd",
                                idempotent=True, config={"batch.num.messages": 7},
                                reported=reported)
    assert reports == offsets_of(records)
    for p in range(3):
        assert [o for q, o in reported if q == p] == list(range(120))
