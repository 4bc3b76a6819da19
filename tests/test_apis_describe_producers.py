"""DescribeProducers (apis/describe_producers.py), through the wire codec: for each partition, every
producer it keeps state for, with the fields Kafka reports (producer id and epoch, last sequence,
last timestamp, coordinator epoch, first offset of the open transaction), and the errors of
unknown partitions. Producers write the way clients do: InitProducerId, then Produce (with
AddPartitionsToTxn and EndTxn for a transaction)."""

import pytest

from record_batches import make_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from wire_client import WireClient, memory_broker

K = ApiKey
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData
AddPartitions = protocol.request_class(K.ADD_PARTITIONS_TO_TXN)
Describe = protocol.request_class(K.DESCRIBE_PRODUCERS)

TRANSACTIONAL = 0x10        # batch attributes bit 4


@pytest.fixture
async def client():
    broker = memory_broker()
    broker.create_topic("events", 2)
    yield WireClient(broker)
    broker.close()


async def init_producer(client, transactional_id=None) -> tuple[int, int]:
    r = await client.call(K.INIT_PRODUCER_ID, 4, transactional_id=transactional_id,
                          transaction_timeout_ms=60_000, producer_id=-1, producer_epoch=-1)
    assert r.error_code == 0
    return r.producer_id, r.producer_epoch


async def produce(client, partition: int, batch: bytes, transactional_id=None) -> int:
    r = await client.call(K.PRODUCE, 9, transactional_id=transactional_id, acks=-1,
                          timeout_ms=1000, topic_data=[ProduceData(name="events", partition_data=[
                              ProduceData.PartitionProduceData(index=partition, records=batch)])])
    (p,) = r.responses[0].partition_responses
    assert p.error_code == 0, ErrorCode(p.error_code)
    return p.base_offset


async def describe(client, **partitions):
    """{topic: [partition indexes]} -> {(topic, partition): PartitionResponse}."""
    r = await client.call(K.DESCRIBE_PRODUCERS, 0, topics=[
        Describe.TopicRequest(name=t, partition_indexes=ps) for t, ps in partitions.items()])
    return {(t.name, p.partition_index): p for t in r.topics for p in t.partitions}


def fields(partition_response) -> dict[int, tuple]:
    """producer id -> (epoch, last sequence, last timestamp, coordinator epoch, txn start)."""
    return {s.producer_id: (s.producer_epoch, s.last_sequence, s.last_timestamp,
                            s.coordinator_epoch, s.current_txn_start_offset)
            for s in partition_response.active_producers}


async def begin_transaction(client, tid: str, partition: int) -> tuple[int, int]:
    pid, epoch = await init_producer(client, tid)
    r = await client.call(K.ADD_PARTITIONS_TO_TXN, 3, v3_and_below_transactional_id=tid,
                          v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
                          v3_and_below_topics=[AddPartitions.AddPartitionsToTxnTopic(
                              name="events", partitions=[partition])])
    assert r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
    return pid, epoch


async def test_an_idempotent_producer_is_described(client):
    pid, epoch = await init_producer(client)
    await produce(client, 0, make_batch([b"a", b"b", b"c"], producer_id=pid,
                                        producer_epoch=epoch, base_sequence=0,
                                        base_timestamp=5_000, timestamps=[5_000, 7_000, 6_000]))
    result = await describe(client, events=[0])
    assert result[("events", 0)].error_code == 0
    # Last timestamp: the batch's max timestamp, not its last record's.
    assert fields(result[("events", 0)]) == {pid: (epoch, 2, 7_000, -1, -1)}
    await produce(client, 0, make_batch([b"d", b"e"], producer_id=pid, producer_epoch=epoch,
                                        base_sequence=3, base_timestamp=8_000))
    result = await describe(client, events=[0])
    assert fields(result[("events", 0)]) == {pid: (epoch, 4, 8_001, -1, -1)}


async def test_each_partition_lists_its_own_producers(client):
    a, epoch_a = await init_producer(client)
    b, epoch_b = await init_producer(client)
    await produce(client, 0, make_batch([b"x"], producer_id=a, producer_epoch=epoch_a,
                                        base_sequence=0, base_timestamp=1_000))
    await produce(client, 0, make_batch([b"y", b"z"], producer_id=b, producer_epoch=epoch_b,
                                        base_sequence=0, base_timestamp=2_000))
    await produce(client, 1, make_batch([b"w"] * 4, producer_id=b, producer_epoch=epoch_b,
                                        base_sequence=0, base_timestamp=3_000))
    await produce(client, 1, make_batch([b"no producer"]))
    result = await describe(client, events=[0, 1])
    assert fields(result[("events", 0)]) == {a: (epoch_a, 0, 1_000, -1, -1),
                                             b: (epoch_b, 1, 2_001, -1, -1)}
    assert fields(result[("events", 1)]) == {b: (epoch_b, 3, 3_003, -1, -1)}


async def test_a_partition_without_producers_has_none(client):
    await produce(client, 1, make_batch([b"plain"]))
    result = await describe(client, events=[0, 1])
    assert [(p.error_code, p.active_producers) for p in result.values()] == [(0, []), (0, [])]


async def test_an_open_transaction_shows_its_first_offset_until_it_ends(client):
    await produce(client, 0, make_batch([b"before"] * 3))            # offsets 0-2
    await init_producer(client, "tx")
    pid, epoch = await begin_transaction(client, "tx", 0)              # initialized again
    assert epoch == 1
    first = await produce(client, 0, make_batch([b"t1", b"t2"], producer_id=pid,
                                                producer_epoch=epoch, base_sequence=0,
                                                attributes=TRANSACTIONAL, base_timestamp=9_000),
                          transactional_id="tx")
    await produce(client, 0, make_batch([b"t3"], producer_id=pid, producer_epoch=epoch,
                                        base_sequence=2, attributes=TRANSACTIONAL,
                                        base_timestamp=9_500), transactional_id="tx")
    assert first == 3
    result = await describe(client, events=[0])
    assert fields(result[("events", 0)]) == {pid: (epoch, 2, 9_500, -1, 3)}
    r = await client.call(K.END_TXN, 3, transactional_id="tx", producer_id=pid,
                          producer_epoch=epoch, committed=True)
    assert r.error_code == 0
    (producer,) = (await describe(client, events=[0]))[("events", 0)].active_producers
    assert (producer.producer_id, producer.producer_epoch, producer.last_sequence,
            producer.current_txn_start_offset) == (pid, epoch, 2, -1)


async def test_a_transaction_marker_sets_coordinator_epoch_and_last_timestamp(client):
    pid, epoch = await begin_transaction(client, "tx", 1)
    await produce(client, 1, make_batch([b"t"], producer_id=pid, producer_epoch=epoch,
                                        base_sequence=0, attributes=TRANSACTIONAL,
                                        base_timestamp=9_000), transactional_id="tx")
    before_ms = client.broker.clock.wall_ms()
    r = await client.call(K.END_TXN, 3, transactional_id="tx", producer_id=pid,
                          producer_epoch=epoch, committed=False)
    assert r.error_code == 0
    (producer,) = (await describe(client, events=[1]))[("events", 1)].active_producers
    assert producer.coordinator_epoch == client.broker.transactions.coordinator_epoch
    assert producer.last_timestamp >= before_ms


async def test_unknown_topics_and_partitions(client):
    result = await describe(client, events=[0, 2, -1], missing=[0])
    assert {key: p.error_code for key, p in result.items()} == {
        ("events", 0): 0,
        ("events", 2): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("events", -1): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("missing", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert all(p.active_producers == [] for p in result.values())
