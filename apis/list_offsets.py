"""ListOffsets (key 2), v1-10: offsets by timestamp, and the special timestamps.

| timestamp            | answer                                                              |
|----------------------|---------------------------------------------------------------------|
| -1 latest            | high watermark (read_uncommitted) or last stable offset (read_committed) |
| -2 earliest          | log start offset                                                    |
| -3 max timestamp     | offset and timestamp of the record with the largest timestamp (v7+) |
| -4 earliest local    | log start offset: there is no tiered storage (v8+)                  |
| -5 latest tiered     | -1: there is no tiered storage (v9+)                                |
| T >= 0               | first offset whose timestamp is >= T, found through the time index; |
|                      | offset -1 and timestamp -1 when there is none                       |

Special timestamps answer with timestamp -1. v4+ carry the leader epoch and check
`current_leader_epoch` as Fetch does. v0 (old-style offset lists) was removed in Kafka 4.0.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5

Response = response_class(ApiKey.LIST_OFFSETS)
TopicResponse = Response.ListOffsetsTopicResponse
PartitionResponse = TopicResponse.ListOffsetsPartitionResponse


def lookup(broker, topic: str, p, isolation_level: int) -> object:
    try:
        log = broker.partition(topic, p.partition_index)
        if p.current_leader_epoch not in (-1, broker.leader_epoch):
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH
                             if p.current_leader_epoch < broker.leader_epoch
                             else ErrorCode.UNKNOWN_LEADER_EPOCH)
        ts = p.timestamp
        upper = log.last_stable_offset if isolation_level == 1 else log.high_watermark
        timestamp, offset = -1, -1
        if ts == LATEST:
            offset = upper
        elif ts in (EARLIEST, EARLIEST_LOCAL):
            offset = log.log_start_offset
        elif ts == LATEST_TIERED:
            offset = -1
        elif ts == MAX_TIMESTAMP:
            found = log.max_timestamp_offset()
            if found is not None:
                offset, timestamp = found
        elif ts >= 0:
            found = log.offset_for_timestamp(ts)
            if found is not None and found[0] < upper:
                offset, timestamp = found
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Invalid timestamp {ts}")
    except KafkaError as e:
        return PartitionResponse(partition_index=p.partition_index, error_code=e.code,
                                 timestamp=-1, offset=-1, leader_epoch=-1)
    return PartitionResponse(partition_index=p.partition_index, error_code=0,
                             timestamp=timestamp, offset=offset,
                             leader_epoch=broker.leader_epoch)


async def handle(broker, request, ctx):
    topics = []
    for t in request.topics:
        parts = [lookup(broker, t.name, p, request.isolation_level) for p in t.partitions]
        topics.append(TopicResponse(name=t.name, partitions=parts))
    return Response(throttle_time_ms=0, topics=topics)
