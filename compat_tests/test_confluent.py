"""confluent-kafka (librdkafka) against trioka: admin, produce, fetch, list offsets, restarts.

Every consumer here is manually assigned (`assign`) and reads from explicit offsets: no group is
joined and nothing is committed. Every assertion is on what came back from the broker: delivery
reports, fetched records, admin results.
"""

import pytest
from confluent_kafka import (OFFSET_END, Consumer, KafkaError, KafkaException, Producer,
                             TopicCollection, TopicPartition)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec

from harness import (CODEC_IDS, CONSUMERS, SAMPLE_TIMESTAMP, by_partition, cluster_id_of,
                     consume_confluent, sample_records, stored_batches, unique)

TIMEOUT = 20


def admin_for(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap: str, name: str, partitions: int, **kw) -> None:
    admin = admin_for(bootstrap)   # kept alive until the answer is in
    futures = admin.create_topics([NewTopic(name, partitions, 1, **kw)], request_timeout=TIMEOUT)
    assert futures[name].result(timeout=TIMEOUT) is None


def produce(bootstrap: str, topic: str, records, **conf) -> list[tuple[int, int]]:
    """Produce records (partition, key, value, headers, timestamp as given); the (partition,
    offset) of each delivery report, in the order the reports came."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                  "message.timeout.ms": TIMEOUT * 1000, **conf})
    delivered, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))

    for r in records:
        p.produce(topic, value=r.value, key=r.key, partition=r.partition,
                  timestamp=r.timestamp, headers=list(r.headers) or None,
                  on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0, "messages still in flight after flush"
    assert not errors, errors
    return delivered


def offsets_client(bootstrap: str) -> Consumer:
    """A consumer only used for watermarks and offsets by time (the binding wants a group.id;
    with nothing subscribed or committed it never joins that group)."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": unique("offsets"),
                     "enable.auto.commit": False})


def assert_idempotent_batches(data_dir: str, topic: str, partitions) -> None:
    """Batches of one idempotent producer: one producer id (from InitProducerId), epoch 0, and
    sequence numbers that start at 0 and run on with the offsets of a fresh partition."""
    ids = set()
    for p in partitions:
        batches = stored_batches(data_dir, topic, p)
        assert len(batches) > 1
        for b in batches:
            ids.add((b.producer_id, b.producer_epoch))
            assert b.base_sequence == b.base_offset, b
    assert len(ids) == 1 and next(iter(ids))[0] >= 0 and next(iter(ids))[1] == 0, ids


def offsets_of(records) -> list[tuple[int, int]]:
    return sorted((r.partition, r.offset) for r in records)


# --- 1. the round trip --------------------------------------------------------------------------

def test_produce_consume_keys_headers_tombstones_timestamps(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    records = sample_records(3)
    delivered = produce(broker.bootstrap, topic_name, records)
    assert sorted(delivered) == offsets_of(records)
    got = consume_confluent(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)


def test_consume_from_a_middle_offset(broker, topic_name):
    create(broker.bootstrap, topic_name, 1)
    records = sample_records(1)
    produce(broker.bootstrap, topic_name, records)
    got = consume_confluent(broker.bootstrap, topic_name, [0], len(records) - 3, start=3)
    assert got == records[3:]


# --- 2. every codec, read back by every client ----------------------------------------------------

@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_codec_roundtrip_and_cross_client(broker, topic_name, codec):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2, tag=codec)
    delivered = produce(broker.bootstrap, topic_name, records, **{"compression.type": codec})
    assert sorted(delivered) == offsets_of(records)
    for client, consume in CONSUMERS.items():
        got = consume(broker.bootstrap, topic_name, range(2), len(records))
        assert by_partition(got) == by_partition(records), client
    stored = {b.codec for p in range(2)
              for b in stored_batches(broker.data_dir, topic_name, p)}
    # Clients send a batch uncompressed when compressing does not make it smaller; the large
    # value makes sure at least one batch is compressed. (librdkafka uses lz4 only with brokers
    # that advertise FindCoordinator, its marker for Kafka 0.8.2 where lz4 arrived; without it
    # lz4 batches silently go out uncompressed and this check fails.)
    assert CODEC_IDS[codec] in stored and stored <= {CODEC_IDS["none"], CODEC_IDS[codec]}


# --- 3. across a broker restart ------------------------------------------------------------------

@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill"])
def test_restart_keeps_records_and_offsets(own_broker, topic_name, kill):
    create(own_broker.bootstrap, topic_name, 2)
    first = sample_records(2, tag="a")
    produce(own_broker.bootstrap, topic_name, first, **{"compression.type": "zstd"})
    own_broker.restart(kill=kill)
    got = consume_confluent(own_broker.bootstrap, topic_name, range(2), len(first))
    assert by_partition(got) == by_partition(first)
    # Offsets continue after the restart: none is handed out twice.
    second = sample_records(2, tag="b", first_offset=6)
    delivered = produce(own_broker.bootstrap, topic_name, second)
    assert sorted(delivered) == offsets_of(second)
    everything = first + second
    got = consume_confluent(own_broker.bootstrap, topic_name, range(2), len(everything))
    assert by_partition(got) == by_partition(everything)
    c = offsets_client(own_broker.bootstrap)
    try:
        for p in range(2):
            assert c.get_watermark_offsets(TopicPartition(topic_name, p),
                                           timeout=TIMEOUT) == (0, 12)
    finally:
        c.close()


# --- 4. admin ------------------------------------------------------------------------------------

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
    assert sorted(produce(broker.bootstrap, topic_name, records)) == offsets_of(records)
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
    assert md.cluster_id == cluster_id_of(broker)
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
    delivered = produce(broker.bootstrap, topic_name, records)
    assert sorted(delivered) == offsets_of(records)
    got = consume_confluent(broker.bootstrap, topic_name, [2, 3, 4], len(records))
    assert by_partition(got) == by_partition(records)


def test_admin_delete_topics(broker, topic_name):
    admin = admin_for(broker.bootstrap)
    create(broker.bootstrap, topic_name, 2)
    produce(broker.bootstrap, topic_name, sample_records(2))
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
    assert sorted(produce(broker.bootstrap, topic_name, records)) == offsets_of(records)
    assert consume_confluent(broker.bootstrap, topic_name, [0], len(records)) == records


def test_admin_describe_cluster(broker):
    admin = admin_for(broker.bootstrap)
    d = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert d.cluster_id == cluster_id_of(broker)
    assert d.controller.id == 1
    assert [(n.id, n.host, n.port) for n in d.nodes] == [(1, "127.0.0.1", broker.port)]


# --- 5. list offsets -----------------------------------------------------------------------------

def test_list_offsets(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2)
    produce(broker.bootstrap, topic_name, records)
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


# --- 6. acks and the idempotent producer ---------------------------------------------------------

@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, topic_name, acks):
    create(broker.bootstrap, topic_name, 3)
    records = sample_records(3, tag=acks)
    delivered = produce(broker.bootstrap, topic_name, records, acks=acks)
    if acks == "0":
        # Without a response there is no offset to report.
        assert len(delivered) == len(records) and {o for _, o in delivered} == {None}
    else:
        assert sorted(delivered) == offsets_of(records)
    got = consume_confluent(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)


def test_idempotent_producer(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    records = [r for n in range(20) for r in sample_records(3, tag=f"i{n}", first_offset=6 * n)]
    records.sort(key=lambda r: (r.offset, r.partition))
    delivered = produce(broker.bootstrap, topic_name, records, **{
        "enable.idempotence": True, "batch.num.messages": 7, "compression.type": "zstd"})
    assert sorted(delivered) == offsets_of(records)
    # Each partition's reports come in offset order, as idempotence promises.
    for p in range(3):
        assert [o for q, o in delivered if q == p] == list(range(120))
    assert_idempotent_batches(broker.data_dir, topic_name, range(3))
    got = consume_confluent(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)
