"""OffsetCommit (key 8), v2-9: a group's consumers (or an admin) commit offsets.

The group decides first, and its error goes to every partition (apis.md §11):
- INVALID_GROUP_ID for an empty group id; COORDINATOR_NOT_AVAILABLE while the group is deleted.
- A group that does not exist is created Empty when the commit comes from outside group management
  (generation -1); otherwise it is GROUP_ID_NOT_FOUND from v9 and ILLEGAL_GENERATION before.
- Generation -1 on an Empty group is accepted (admin clients, consumers using assign()).
- A commit that names a generation, a member id or an instance id must come from a member
  (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) of the current generation (ILLEGAL_GENERATION); one that
  names none of them is refused on a group with members (UNKNOWN_MEMBER_ID).
- REBALANCE_IN_PROGRESS in CompletingRebalance (the member must sync first).
- A KIP-848 consumer group takes `generation_id_or_member_epoch` as the member epoch: a commit
  without one (-1) only while it has no members; otherwise from a member (UNKNOWN_MEMBER_ID) using
  v9+ (UNSUPPORTED_VERSION) at its current epoch (STALE_MEMBER_EPOCH).
Then per partition: OFFSET_METADATA_TOO_LARGE when the metadata is longer than
`offset.metadata.max.bytes` (4096), UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist.
The accepted offsets are written to `__consumer_offsets` in one batch (OffsetCommitKey v1,
OffsetCommitValue v3) before the answer, with the commit time, the leader epoch (v6+) and the
metadata; a failed write is COORDINATOR_NOT_AVAILABLE (INVALID_COMMIT_OFFSET_SIZE when too large).

Versions: v2-4 carry `retention_time_ms`; when it is not -1 the offset gets an explicit expiry
(stored as OffsetCommitValue v1). v3+ answer a throttle time; v6+ the leader epoch; v7+
`group_instance_id` (KIP-345); v8 first flexible; v9 GROUP_ID_NOT_FOUND as above (KIP-848).
v0-1 were removed in Kafka 4.0 (KIP-896).
"""

from trioka.coordinator.offsets import OffsetAndMetadata
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.OFFSET_COMMIT)
TopicResponse = Response.OffsetCommitResponseTopic
PartitionResponse = TopicResponse.OffsetCommitResponsePartition


def _partition_exists(broker, topic: str, partition: int) -> bool:
    info = broker.topic(topic)
    return info is not None and 0 <= partition < info.num_partitions


# The expiry timestamp is an int64 in __consumer_offsets' OffsetCommitValue.
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _expiry(now_ms: int, retention_ms: int) -> int:
    """The explicit expiry of a v2-4 commit: now + retention_time_ms, within an int64 (a
    retention near Long.MAX_VALUE means never; -1 means the broker's offsets.retention.minutes,
    no explicit expiry)."""
    if retention_ms == -1:
        return -1
    return max(_LONG_MIN, min(_LONG_MAX, now_ms + retention_ms))


async def handle(broker, request, ctx):
    version = ctx.api_version
    now_ms = broker.clock.wall_ms()
    groups = broker.groups
    group, group_error = None, None
    try:
        groups.check_coordinator(request.group_id)
        group = groups.offsets.validate_offset_commit(
            request.group_id, request.generation_id_or_member_epoch, request.member_id,
            request.group_instance_id if version >= 7 else None, version)
    except KafkaError as e:
        group_error = e.code
    retention = request.retention_time_ms if 2 <= version <= 4 else -1
    codes: dict[tuple[str, int], int] = {}
    accepted: dict[tuple[str, int], OffsetAndMetadata] = {}
    for t in request.topics:
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            metadata = p.committed_metadata or ""
            if group_error is not None:
                codes[tp] = group_error
            elif len(metadata) > groups.offset_metadata_max_bytes:
                codes[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            elif not _partition_exists(broker, t.name, p.partition_index):
                codes[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                accepted[tp] = OffsetAndMetadata(
                    offset=p.committed_offset,
                    leader_epoch=p.committed_leader_epoch if version >= 6 else -1,
                    metadata=metadata, commit_timestamp_ms=now_ms,
                    expire_timestamp_ms=_expiry(now_ms, retention))
                codes[tp] = ErrorCode.NONE
    if accepted:
        try:
            groups.offsets.store_offsets(group, accepted)
        except KafkaError as e:
            code = (ErrorCode.INVALID_COMMIT_OFFSET_SIZE
                    if e.code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE)
                    else e.code if e.code == ErrorCode.NOT_COORDINATOR
                    else ErrorCode.COORDINATOR_NOT_AVAILABLE)
            for tp in accepted:
                codes[tp] = code
        else:
            # Answered once the ISR has the commit (acks=-1), on a node of a cluster.
            code = await groups.replicated(request.group_id)
            if code:
                for tp in accepted:
                    codes[tp] = code
    return Response(throttle_time_ms=0, topics=[
        TopicResponse(name=t.name, partitions=[
            PartitionResponse(partition_index=p.partition_index,
                              error_code=codes[(t.name, p.partition_index)])
            for p in t.partitions])
        for t in request.topics])
