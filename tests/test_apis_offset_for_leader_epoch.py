"""OffsetForLeaderEpoch (apis/offset_for_leader_epoch.py), through the wire codec, against Kafka's
answers (ReplicaManager.lastOffsetForLeaderEpoch, Partition.lastOffsetForLeaderEpoch and the
leader-epoch cache's endOffsetFor): the end offset of the current epoch, the undefined answers
(-1, -1) with no error, unknown partitions, and fencing on `current_leader_epoch`.

A single broker stays at leader epoch 0 (broker.py), so its cache holds (0, 0) and the only epochs
older than the current one are negative ones other than -1, which Kafka reads as "no epoch given"
(RecordBatch.NO_PARTITION_LEADER_EPOCH) and any other value as an epoch to check.
"""

import pytest

from record_batches import make_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from wire_client import WireClient, memory_broker

K = ApiKey
Request = protocol.request_class(K.OFFSET_FOR_LEADER_EPOCH)
Topic = Request.OffsetForLeaderTopic
Partition = Topic.OffsetForLeaderPartition
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData

VERSIONS = [2, 3, 4]
UNDEFINED = (-1, -1)        # (leader epoch, end offset) when there is no answer


@pytest.fixture
async def client():
    broker = memory_broker()
    broker.create_topic("events", 2)
    c = WireClient(broker)
    r = await c.call(K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=1000,
                     topic_data=[ProduceData(name="events", partition_data=[
                         ProduceData.PartitionProduceData(index=0,
                                                          records=make_batch([b"a"] * 3))])])
    assert r.responses[0].partition_responses[0].error_code == 0
    yield c
    broker.close()


async def end_offsets(client, version, *partitions, topic="events"):
    """(partition, leader_epoch, current_leader_epoch) triples -> [(error, epoch, end offset)]."""
    fields = {"topics": [Topic(topic=topic, partitions=[
        Partition(partition=p, leader_epoch=epoch, current_leader_epoch=current)
        for p, epoch, current in partitions])]}
    if version >= 3:
        fields["replica_id"] = -1       # a consumer
    r = await client.call(K.OFFSET_FOR_LEADER_EPOCH, version, **fields)
    (t,) = r.topics
    assert t.topic == topic
    assert [p.partition for p in t.partitions] == [p for p, _, _ in partitions]
    return [(p.error_code, p.leader_epoch, p.end_offset) for p in t.partitions]


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_current_epoch_ends_at_the_log_end_offset(client, version):
    assert await end_offsets(client, version, (0, 0, -1), (1, 0, -1), (0, 0, 0)) == [
        (0, 0, 3), (0, 0, 0), (0, 0, 3)]


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_epoch_above_the_current_one_is_undefined_without_error(client, version):
    assert await end_offsets(client, version, (0, 1, -1), (0, 7, 0), (1, 2_000_000, -1)) == [
        (0, *UNDEFINED), (0, *UNDEFINED), (0, *UNDEFINED)]


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_undefined_epoch_is_undefined_without_error(client, version):
    assert await end_offsets(client, version, (0, -1, -1), (1, -1, 0)) == [
        (0, *UNDEFINED), (0, *UNDEFINED)]


@pytest.mark.parametrize("version", VERSIONS)
async def test_unknown_topics_and_partitions(client, version):
    unknown = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert await end_offsets(client, version, (0, 0, -1), topic="missing") == \
        [(unknown, *UNDEFINED)]
    assert await end_offsets(client, version, (2, 0, -1), (0, 0, -1), (-1, 0, -1)) == [
        (unknown, *UNDEFINED), (0, 0, 3), (unknown, *UNDEFINED)]
    # The partition is looked up before its epoch is checked.
    assert await end_offsets(client, version, (5, 0, 9), topic="missing") == \
        [(unknown, *UNDEFINED)]


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_newer_current_leader_epoch_is_unknown_leader_epoch(client, version):
    assert await end_offsets(client, version, (0, 0, 1), (1, 0, 3), (0, 0, -1)) == [
        (ErrorCode.UNKNOWN_LEADER_EPOCH, *UNDEFINED),
        (ErrorCode.UNKNOWN_LEADER_EPOCH, *UNDEFINED),
        (0, 0, 3)]


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_older_current_leader_epoch_is_fenced_leader_epoch(client, version):
    assert await end_offsets(client, version, (0, 0, -2), (1, 5, -7)) == [
        (ErrorCode.FENCED_LEADER_EPOCH, *UNDEFINED),
        (ErrorCode.FENCED_LEADER_EPOCH, *UNDEFINED)]
