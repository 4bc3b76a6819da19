"""TxnOffsetCommit (key 28), v0-5: a transactional producer commits a consumer group's offsets.

Sent to the group coordinator after AddOffsetsToTxn put the group's `__consumer_offsets` partition
into the transaction. The offsets are written to that partition as records of the producer's
transaction and stay pending, invisible to OffsetFetch (UNSTABLE_OFFSET_COMMIT with
require_stable), until EndTxn's marker reaches the partition: commit applies them, abort drops
them. This is how consume-transform-produce moves exactly once.

Checks: up to v4 the group partition must be in the producer's ongoing transaction with this
epoch (KIP-890 part 1: TRANSACTION_ABORTABLE otherwise, INVALID_TXN_STATE before v4); from v5
(transactions v2, KIP-890 part 2) the commit itself adds it, so the producer sends no
AddOffsetsToTxn. An unknown or older epoch is PRODUCER_FENCED, INVALID_PRODUCER_EPOCH before v3; from v3 the consumer's member id, instance id and generation
are checked like OffsetCommit's (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION;
KIP-447), so a zombie consumer cannot commit; metadata over 4096 bytes is
OFFSET_METADATA_TOO_LARGE; unknown partitions UNKNOWN_TOPIC_OR_PARTITION.
"""

from trioka.apis.add_partitions_to_txn import fenced_code
from trioka.coordinator.offsets import OffsetAndMetadata
from trioka.log.topics import OFFSETS_TOPIC
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.TXN_OFFSET_COMMIT)
TopicResult = Response.TxnOffsetCommitResponseTopic
PartitionResult = TopicResult.TxnOffsetCommitResponsePartition


async def _check_transaction(broker, request, version: int) -> None:
    """The transaction coordinator's word on the group's offsets partition: verified up to v4,
    added from v5 (the producer checks, then the partition's). On a node of a cluster the
    transaction coordinator may be another node: it is asked with AddPartitionsToTxn."""
    if not request.transactional_id:
        raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING, "Empty transactional id")
    partition = broker.groups.partition_for(request.group_id)
    try:
        await broker.transactions.verify_partition_anywhere(
            request.transactional_id, request.producer_id, request.producer_epoch,
            OFFSETS_TOPIC, partition, version >= 5, broker.clock.wall_ms())
    except KafkaError as e:
        if e.code == ErrorCode.TRANSACTION_ABORTABLE and version < 4:
            raise KafkaError(ErrorCode.INVALID_TXN_STATE,
                             f"Group {request.group_id} was not added to the transaction") \
                from None
        raise KafkaError(fenced_code(version, e.code, 3), e.message) from None


async def handle(broker, request, ctx):
    version = ctx.api_version
    now_ms = broker.clock.wall_ms()
    codes: dict[tuple[str, int], int] = {}
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    limit = broker.groups.offset_metadata_max_bytes
    for t in request.topics:
        for p in t.partitions:
            key = (t.name, p.partition_index)
            topic = broker.topic(t.name)
            if topic is None or not 0 <= p.partition_index < topic.num_partitions:
                codes[key] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif p.committed_metadata is not None and \
                    len(p.committed_metadata.encode()) > limit:
                codes[key] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                offsets[key] = OffsetAndMetadata(p.committed_offset, p.committed_leader_epoch,
                                                 p.committed_metadata or "", now_ms)
                codes[key] = ErrorCode.NONE
    try:
        broker.groups.check_coordinator(request.group_id)
        await _check_transaction(broker, request, version)
        broker.groups.check_coordinator(request.group_id)   # still, after the wait
        broker.groups.offsets.txn_offset_commit(request.group_id, request.producer_id,
                                        request.producer_epoch, request.generation_id,
                                        request.member_id, request.group_instance_id, offsets)
    except KafkaError as e:
        codes = {key: e.code for key in codes}
    else:
        error = await broker.groups.replicated(request.group_id)   # acks=-1 in a cluster
        if error:
            codes = {key: error for key in codes}
    topics: dict[str, list] = {}
    for (name, index), code in codes.items():
        topics.setdefault(name, []).append(PartitionResult(partition_index=index,
                                                           error_code=code))
    return Response(throttle_time_ms=0, topics=[TopicResult(name=n, partitions=ps)
                                                for n, ps in topics.items()])
