"""OffsetFetch (key 9), v1-9: the committed offsets of a group.

For each partition asked for: the committed offset, its leader epoch (v5+) and metadata, or -1,
-1 and "" when nothing is committed; an unknown group has no offsets and is not an error. A null
topic list (v2+) asks for every partition the group has committed. v1-7 ask for one group, with a
top-level error code from v2 (INVALID_GROUP_ID for an empty group id; in v1 the error goes to each
partition); v8+ (KIP-709) ask for a batch of groups, each answered with its own error code.

`require_stable` (v7+, KIP-447) asks the broker to hold back offsets with a transactional commit
pending: such a partition is answered UNSTABLE_OFFSET_COMMIT (offset -1) until the transaction
ends, and the consumer retries. v9 adds the KIP-848 member id and epoch: for a consumer group,
a request naming a member is answered UNKNOWN_MEMBER_ID unless it is one, STALE_MEMBER_EPOCH unless
the epoch is its current one (a group-level error); classic groups do not check them.
v6 is the first flexible version. v0 was removed in Kafka 4.0 (KIP-896).

With an authorizer (KafkaApis): a group needs DESCRIBE. v1-7 are refused as a whole
(security/authorizer.py); in a v8+ batch each group is answered on its own, a denied one with
GROUP_AUTHORIZATION_FAILED and no topics, the others served. Offsets of a topic without DESCRIBE
are never shown: a topic asked for is answered TOPIC_AUTHORIZATION_FAILED (offset -1) in each of
its partitions, and an all-partitions fetch (null topics) leaves it out.
"""

from trioka.security.acls import DESCRIBE, GROUP
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.OFFSET_FETCH)
# v1-7 and v8+ name their structs differently.
TopicV1 = Response.OffsetFetchResponseTopic
PartitionV1 = TopicV1.OffsetFetchResponsePartition
Group = Response.OffsetFetchResponseGroup
TopicV8 = Group.OffsetFetchResponseTopics
PartitionV8 = TopicV8.OffsetFetchResponsePartitions


def _offsets(broker, group_id: str, topics, require_stable: bool = False) -> dict[str, list]:
    """topic -> [(partition, committed or None, error)]."""
    wanted = None if topics is None else [(t.name, list(t.partition_indexes)) for t in topics]
    found = broker.groups.offsets.fetch_offsets(group_id, wanted)
    pending = broker.groups.offsets.has_pending_offsets
    return {name: [(p, None, ErrorCode.UNSTABLE_OFFSET_COMMIT)
                   if require_stable and pending(group_id, name, p) else (p, c, ErrorCode.NONE)
                   for p, c in parts]
            for name, parts in found.items()}


def authorized_offsets(found: dict[str, list], asked, describable) -> dict[str, list]:
    """KafkaApis' rule for offsets the principal may not see: `found` (topic -> [(partition,
    committed, error)]) with each topic `describable` refuses answered TOPIC_AUTHORIZATION_FAILED
    when the request named its topics (`asked` not None), left out of an all-partitions answer.
    `describable` None: no authorizer."""
    if describable is None:
        return found
    out = {}
    for name, parts in found.items():
        if describable(name):
            out[name] = parts
        elif asked is not None:
            out[name] = [(p, None, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for p, _, _ in parts]
    return out


def _partition(cls, index: int, committed, error: int = ErrorCode.NONE):
    if committed is None:
        return cls(partition_index=index, committed_offset=-1, committed_leader_epoch=-1,
                   metadata="", error_code=error)
    return cls(partition_index=index, committed_offset=committed.offset,
               committed_leader_epoch=committed.leader_epoch, metadata=committed.metadata,
               error_code=error)


async def handle(broker, request, ctx):
    version = ctx.api_version
    authorizer = broker.authorizer
    describable = authorizer.topic_check(ctx, DESCRIBE) if authorizer is not None else None
    if version < 8:
        topics = request.topics if version >= 2 else (request.topics or [])
        if not request.group_id:
            error = ErrorCode.INVALID_GROUP_ID
            found = {t.name: [(p, None, ErrorCode.NONE) for p in t.partition_indexes]
                     for t in topics or []}
        else:
            error = broker.groups.coordinator_error(request.group_id)
            if error:   # a node of a cluster that does not coordinate the group
                found = {t.name: [(p, None, ErrorCode.NONE) for p in t.partition_indexes]
                         for t in topics or []}
            else:
                found = authorized_offsets(
                    _offsets(broker, request.group_id, topics, request.require_stable), topics,
                    describable)
        # v1 has no top-level error code: each partition carries it.
        part_error = error if version < 2 else ErrorCode.NONE
        return Response(throttle_time_ms=0, error_code=error, topics=[
            TopicV1(name=name, partitions=[_partition(PartitionV1, p, c, e if e else part_error)
                                           for p, c, e in parts])
            for name, parts in found.items()])
    groups = []
    for g in request.groups:
        if authorizer is not None and not authorizer.allowed(ctx, DESCRIBE, GROUP, g.group_id):
            groups.append(Group(group_id=g.group_id, topics=[],
                                error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED))
            continue
        if not g.group_id:
            groups.append(Group(group_id=g.group_id, topics=[],
                                error_code=ErrorCode.INVALID_GROUP_ID))
            continue
        error = broker.groups.coordinator_error(g.group_id)
        if error:   # a node of a cluster that does not coordinate the group
            groups.append(Group(group_id=g.group_id, topics=[], error_code=error))
            continue
        if version >= 9:
            # KIP-848: a consumer group's member fetches at its current member epoch.
            try:
                broker.groups.offsets.validate_offset_fetch(g.group_id, g.member_id, g.member_epoch)
            except KafkaError as e:
                groups.append(Group(group_id=g.group_id, topics=[], error_code=e.code))
                continue
        found = authorized_offsets(_offsets(broker, g.group_id, g.topics, request.require_stable),
                                   g.topics, describable)
        groups.append(Group(group_id=g.group_id, error_code=ErrorCode.NONE, topics=[
            TopicV8(name=name, partitions=[_partition(PartitionV8, p, c, e) for p, c, e in parts])
            for name, parts in found.items()]))
    return Response(throttle_time_ms=0, groups=groups)
