"""ConsumerGroupHeartbeat (key 68), v0-1: the KIP-848 consumer group protocol's one request.

A member of a consumer group (clients with `group.protocol=consumer`) joins with member epoch 0,
its subscription (topic names, or from v1 a regex), its rebalance timeout and optionally a server
assignor and a static `instance_id`; it then heartbeats every `heartbeat_interval_ms` with its
epoch and, when they changed, its owned partitions and subscription; it leaves with epoch -1 (-2: a
static member that will be back). The coordinator computes the assignment on the broker and answers
each heartbeat with the member's epoch and, only when it changed (or on a full request), its
assignment as topic ids and partitions. The work is coordinator/consumer_group.py's, reached
through coordinator/group_coordinator.py; this module maps the request and the answer.

Errors, with `error_message`: INVALID_REQUEST (missing or empty required fields: group id, member
id, the rebalance timeout, subscription and empty `topic_partitions` on a join, the instance id of a
-2 leave, an epoch below -2), UNSUPPORTED_ASSIGNOR (not in `group.consumer.assignors`),
INVALID_REGULAR_EXPRESSION, GROUP_ID_NOT_FOUND (no such consumer group for a heartbeat or leave, or
the id belongs to a classic group with members), UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH,
UNRELEASED_INSTANCE_ID, FENCED_INSTANCE_ID, GROUP_MAX_SIZE_REACHED (`group.consumer.max.size`).

Versions: v0 lets the coordinator name a new member (a UUID) when the member id is empty; v1 (Kafka
4.0, KIP-848 GA) makes clients generate it (an empty one is INVALID_REQUEST) and adds
`subscribed_topic_regex`. Both are flexible. Rack ids are kept and described but assign nothing
(one broker has no racks).
"""

from trioka.apis.join_group import client_host
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.CONSUMER_GROUP_HEARTBEAT)
Assignment = Response.Assignment
TopicPartitions = Assignment.TopicPartitions


async def handle(broker, request, ctx):
    owned = None
    if request.topic_partitions is not None:
        owned = [(tp.topic_id, list(tp.partitions)) for tp in request.topic_partitions]
    try:
        broker.groups.check_coordinator(request.group_id)
        result = broker.groups.consumer.consumer_group_heartbeat(
            request.group_id, request.member_id, request.member_epoch,
            instance_id=request.instance_id, rack_id=request.rack_id,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            subscribed_topic_names=(None if request.subscribed_topic_names is None
                                    else list(request.subscribed_topic_names)),
            subscribed_topic_regex=request.subscribed_topic_regex if ctx.api_version >= 1
            else None,
            server_assignor=request.server_assignor, topic_partitions=owned,
            client_id=ctx.client_id, client_host=client_host(ctx), api_version=ctx.api_version)
    except KafkaError as e:
        return Response(throttle_time_ms=0, error_code=e.code, error_message=e.message or None,
                        member_id=None, member_epoch=0, heartbeat_interval_ms=0,
                        assignment=None)
    error = await broker.groups.replicated(request.group_id)
    if error:   # the group's records did not reach the ISR (a node of a cluster)
        return Response(throttle_time_ms=0, error_code=error, error_message=None,
                        member_id=None, member_epoch=0, heartbeat_interval_ms=0,
                        assignment=None)
    assignment = None
    if result.assignment is not None:
        assignment = Assignment(topic_partitions=[
            TopicPartitions(topic_id=tid, partitions=sorted(ps))
            for tid, ps in sorted(result.assignment.items(), key=lambda kv: kv[0].bytes)])
    return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                    member_id=result.member_id, member_epoch=result.member_epoch,
                    heartbeat_interval_ms=result.heartbeat_interval_ms, assignment=assignment)
