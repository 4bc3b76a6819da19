"""Small requests that would make the broker do unbounded work get Kafka's refusal instead:
CreateTopics / CreatePartitions past the controller's records-per-operation bound
(POLICY_VIOLATION), and ids too long for the internal topics' record keys."""

import pytest

from trioka.apis.create_topics import EXCESSIVE_BATCH_MESSAGE, MAX_RECORDS_PER_USER_OP
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import request_class
from wire_client import WireClient, memory_broker

CreateTopics = request_class(ApiKey.CREATE_TOPICS)
CreatePartitions = request_class(ApiKey.CREATE_PARTITIONS)


@pytest.fixture
def broker():
    b = memory_broker()
    yield b
    b.close()


def creatable(name: str, partitions: int, configs=()):
    return CreateTopics.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1, assignments=[],
        configs=[CreateTopics.CreatableTopic.CreatableTopicConfig(name=k, value=v)
                 for k, v in configs])


async def create(broker, *topics, validate_only=False):
    return (await WireClient(broker).call(ApiKey.CREATE_TOPICS, 7, topics=list(topics),
                                          timeout_ms=1000, validate_only=validate_only)).topics


async def test_a_topic_of_two_billion_partitions_is_a_policy_violation(broker):
    [result] = await create(broker, creatable("huge", 2**31 - 1))
    assert (result.error_code, result.error_message) == (ErrorCode.POLICY_VIOLATION,
                                                          EXCESSIVE_BATCH_MESSAGE)
    assert broker.topic("huge") is None


async def test_the_bound_counts_every_topic_of_the_request_and_fails_them_all(broker):
    half = MAX_RECORDS_PER_USER_OP // 2
    results = await create(broker, creatable("a", half), creatable("b", half))
    assert [r.error_code for r in results] == [ErrorCode.POLICY_VIOLATION] * 2
    assert broker.topic("a") is None and broker.topic("b") is None


async def test_validate_only_is_bounded_the_same_way(broker):
    [result] = await create(broker, creatable("v", MAX_RECORDS_PER_USER_OP),
                            validate_only=True)
    assert result.error_code == ErrorCode.POLICY_VIOLATION


async def test_up_to_the_bound_a_topic_is_created(broker):
    # One TopicRecord + partitions + one ConfigRecord: exactly the bound.
    n = MAX_RECORDS_PER_USER_OP - 2
    [result] = await create(broker, creatable("edge", n, [("retention.ms", "1000")]),
                            validate_only=True)
    assert result.error_code == 0 and result.num_partitions == n


async def test_create_partitions_past_the_bound_fails_the_whole_request(broker):
    await create(broker, creatable("grow", 1), creatable("other", 1))
    wire = WireClient(broker)
    response = await wire.call(ApiKey.CREATE_PARTITIONS, 3, topics=[
        CreatePartitions.CreatePartitionsTopic(name="grow", count=2**31 - 1, assignments=None),
        CreatePartitions.CreatePartitionsTopic(name="other", count=2, assignments=None)],
        timeout_ms=1000, validate_only=False)
    assert [(r.name, r.error_code, r.error_message) for r in response.results] == [
        ("grow", ErrorCode.POLICY_VIOLATION, EXCESSIVE_BATCH_MESSAGE),
        ("other", ErrorCode.POLICY_VIOLATION, EXCESSIVE_BATCH_MESSAGE)]
    assert broker.topic("grow").num_partitions == 1
    assert broker.topic("other").num_partitions == 1


async def test_a_group_id_longer_than_offsets_keys_hold_is_invalid(broker):
    OffsetCommit = request_class(ApiKey.OFFSET_COMMIT)
    await create(broker, creatable("t", 1))
    response = await WireClient(broker).call(
        ApiKey.OFFSET_COMMIT, 9, group_id="g" * 40_000, generation_id_or_member_epoch=-1,
        member_id="", group_instance_id=None, topics=[OffsetCommit.OffsetCommitRequestTopic(
            name="t", partitions=[OffsetCommit.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=5, committed_leader_epoch=-1,
                committed_metadata="")])])
    [topic] = response.topics
    assert [p.error_code for p in topic.partitions] == [ErrorCode.INVALID_GROUP_ID]
    # Nothing was created that ListGroups v0 (a non-flexible string) could not carry.
    groups = await WireClient(broker).call(ApiKey.LIST_GROUPS, 0)
    assert groups.error_code == 0 and groups.groups == []


async def test_a_transactional_id_longer_than_the_transaction_log_keys_hold(broker):
    response = await WireClient(broker).call(
        ApiKey.INIT_PRODUCER_ID, 5, transactional_id="x" * 40_000, transaction_timeout_ms=60000,
        producer_id=-1, producer_epoch=-1)
    assert response.error_code == ErrorCode.INVALID_REQUEST
    assert broker.transactions.describe("x" * 40_000) is None
