"""OffsetDelete (key 47), v0: delete a group's committed offsets of some partitions (KIP-496).

Group errors answer the whole request: GROUP_ID_NOT_FOUND (no such group), NON_EMPTY_GROUP (a group
with members that does not use the consumer protocol, so its subscriptions cannot be read),
INVALID_GROUP_ID. Per partition: GROUP_SUBSCRIBED_TO_TOPIC when a member of the group subscribes to
the topic (read from the members' consumer protocol subscriptions), UNKNOWN_TOPIC_OR_PARTITION for
a partition that does not exist; otherwise the offset is gone (a tombstone in
`__consumer_offsets`), NONE even if none was committed.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.OFFSET_DELETE)
TopicResponse = Response.OffsetDeleteResponseTopic
PartitionResponse = TopicResponse.OffsetDeleteResponsePartition


async def handle(broker, request, ctx):
    codes: dict[tuple[str, int], int] = {}
    known = []
    for t in request.topics:
        info = broker.topic(t.name)
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if info is None or not 0 <= p.partition_index < info.num_partitions:
                codes[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                known.append(tp)
    try:
        broker.groups.check_coordinator(request.group_id)
        codes.update(broker.groups.offsets.delete_offsets(request.group_id, known))
    except KafkaError as e:
        return Response(error_code=e.code, throttle_time_ms=0, topics=[])
    error = await broker.groups.replicated(request.group_id)
    if error:
        return Response(error_code=error, throttle_time_ms=0, topics=[])
    return Response(error_code=0, throttle_time_ms=0, topics=[
        TopicResponse(name=t.name, partitions=[
            PartitionResponse(partition_index=p.partition_index,
                              error_code=codes[(t.name, p.partition_index)])
            for p in t.partitions])
        for t in request.topics])
