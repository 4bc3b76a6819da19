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

A search by timestamp (and -3) walks the records of the batch the time index points at. That
batch was written by a client: compressed, it may decompress to far more than it stores, so its
records are walked in a worker thread (as are large uncompressed ones), one at a time and within
the size limit of log/compression.py; the log is looked up again after each such wait.
"""

import trio

from trioka.log.records import first_record_at_or_after
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5

Response = response_class(ApiKey.LIST_OFFSETS)
TopicResponse = Response.ListOffsetsTopicResponse
PartitionResponse = TopicResponse.ListOffsetsPartitionResponse


# Uncompressed batches larger than this have their records walked in a worker thread too.
WALK_IN_THREAD_BYTES = 64 * 1024


async def offset_for_timestamp(broker, topic: str, index: int,
                               timestamp: int) -> tuple[int, int] | None:
    """PartitionLog.offset_for_timestamp, its walk inside each candidate batch off the event
    loop (see the module docstring)."""
    search_from = -1
    while True:
        log = broker.partition(topic, index, reading=True)
        candidate = log.timestamp_batch(timestamp, search_from)
        if candidate is None:
            return None
        info, data = candidate
        start = log.log_start_offset
        if info.compression or info.size > WALK_IN_THREAD_BYTES:
            found = await trio.to_thread.run_sync(first_record_at_or_after, data, info,
                                                  timestamp, start)
        else:
            found = first_record_at_or_after(data, info, timestamp, start)
        if found is not None:
            return found
        search_from = info.next_offset


async def lookup(broker, topic: str, p, isolation_level: int) -> object:
    try:
        log = broker.partition(topic, p.partition_index, reading=True)
        leader_epoch = broker.check_leader_epoch(topic, p.partition_index,
                                                 p.current_leader_epoch)
        ts = p.timestamp
        timestamp, offset = -1, -1
        if ts == LATEST:
            offset = log.last_stable_offset if isolation_level == 1 else log.high_watermark
        elif ts in (EARLIEST, EARLIEST_LOCAL):
            offset = log.log_start_offset
        elif ts == LATEST_TIERED:
            offset = -1
        elif ts == MAX_TIMESTAMP:
            largest = log.largest_timestamp()
            found = None
            if largest >= 0:
                found = await offset_for_timestamp(broker, topic, p.partition_index, largest)
            if found is not None:
                offset, timestamp = found
        elif ts >= 0:
            found = await offset_for_timestamp(broker, topic, p.partition_index, ts)
            log = broker.partition(topic, p.partition_index, reading=True)   # again, after the wait
            upper = log.last_stable_offset if isolation_level == 1 else log.high_watermark
            if found is not None and found[0] < upper:
                offset, timestamp = found
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Invalid timestamp {ts}")
    except KafkaError as e:
        return PartitionResponse(partition_index=p.partition_index, error_code=e.code,
                                 timestamp=-1, offset=-1, leader_epoch=-1)
    return PartitionResponse(partition_index=p.partition_index, error_code=0,
                             timestamp=timestamp, offset=offset, leader_epoch=leader_epoch)


async def handle(broker, request, ctx):
    topics = []
    for t in request.topics:
        parts = [await lookup(broker, t.name, p, request.isolation_level)
                 for p in t.partitions]
        topics.append(TopicResponse(name=t.name, partitions=parts))
    return Response(throttle_time_ms=0, topics=topics)
