"""AlterPartitionReassignments (key 45), v0-1: move partitions to other replicas (KIP-455).

Each partition names its target replicas, or null to cancel the reassignment in progress. In a
cluster the request goes to the controller (controller/replication_control.py), as KRaft brokers
forward it. A reassignment adds the new replicas first (replicas = target + those leaving, with
adding / removing set): they join as followers and fetch from the leader, and once every target
replica is in the ISR the controller completes it, dropping the removed replicas (and moving the
leadership when the leader was one of them). So the data is copied before an old replica goes.
Per partition, in the controller's order of checks: an unknown topic or partition
UNKNOWN_TOPIC_OR_PARTITION; an empty target, a broker not registered or named twice
INVALID_REPLICA_ASSIGNMENT; a cancel with nothing in progress NO_REASSIGNMENT_IN_PROGRESS, and a
cancel that would need an unclean election (only added replicas are in sync) without
`unclean.leader.election.enable` INVALID_REPLICA_ASSIGNMENT. v1 (KIP-860, Kafka 4.1) with
`allow_replication_factor_change` false refuses a target with another number of replicas than the
partition has (or is heading for, mid-reassignment): INVALID_REPLICATION_FACTOR, "The replication
factor is changed from 3 to 2"; the answer repeats the flag. The answer comes once this node's
image shows each reassignment started (or already completed) or cancelled.

A single broker answers as the controller of a one-broker cluster does: the only registered broker
is this one, so the only valid target is [this node], which is where every partition already is
(nothing to do, NONE); any other broker id is not registered; there is never a reassignment in
progress to cancel. (So the replication factor, 1, never changes there either.)
"""

from trioka.controller.replication_control import check_manual_assignment
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ALTER_PARTITION_REASSIGNMENTS)
TopicResult = Response.ReassignableTopicResponse
PartitionResult = TopicResult.ReassignablePartitionResponse


def check_single(broker, topic_name: str, partition_index: int, replicas) -> None:
    """One partition on a single broker (the checks of the controller of a one-broker
    cluster, with its messages)."""
    topic = broker.topic(topic_name)
    if topic is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"Unable to find a topic named {topic_name}.")
    if not 0 <= partition_index < topic.num_partitions:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"Unable to find partition {topic_name}:{partition_index}.")
    if replicas is None:
        raise KafkaError(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS)
    check_manual_assignment(replicas, {broker.node_id})


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        return await broker.cluster.alter_partition_reassignments(request, ctx.api_version)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            try:
                check_single(broker, t.name, p.partition_index, p.replicas)
            except KafkaError as e:
                parts.append(PartitionResult(partition_index=p.partition_index,
                                             error_code=e.code, error_message=e.message))
                continue
            parts.append(PartitionResult(partition_index=p.partition_index,
                                         error_code=ErrorCode.NONE, error_message=None))
        topics.append(TopicResult(name=t.name, partitions=parts))
    return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                    allow_replication_factor_change=request.allow_replication_factor_change,
                    responses=topics)
