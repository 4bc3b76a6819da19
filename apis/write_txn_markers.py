"""WriteTxnMarkers (key 27), v0-1: a transaction coordinator has a partition's leader write the
COMMIT or ABORT marker of a transaction.

Kafka's transaction coordinator writes a transaction's markers by sending this request to the
leader of each partition of the transaction (TransactionMarkerChannelManager); it retries until
every marker is written. This is the leader's side. For each marker and each partition named:

- the partition must be led here (NOT_LEADER_OR_FOLLOWER otherwise; UNKNOWN_TOPIC_OR_PARTITION
  when it does not exist), and its log writes a control batch for the producer id and epoch with
  the coordinator epoch; a marker older than the producer's epoch is INVALID_PRODUCER_EPOCH (the
  coordinator drops it);
- a marker written to `__consumer_offsets` also ends the producer's transactional offset commits
  at this node's group coordinator: committed offsets become visible, aborted ones are dropped;
- as Kafka appends markers with required acks -1, the answer comes once the ISR has them
  (NOT_ENOUGH_REPLICAS_AFTER_APPEND / REQUEST_TIMED_OUT / NOT_LEADER_OR_FOLLOWER otherwise, and
  the coordinator sends the marker again).

The request carries no transaction version (v2 of the API, Kafka 4.1, does): the marker is checked
with the classic rule (an epoch at least the producer's), which also admits the bumped epoch of
transactions v2's markers.
"""

from trioka.log.topics import OFFSETS_TOPIC
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.WRITE_TXN_MARKERS)
MarkerResult = Response.WritableTxnMarkerResult
TopicResult = MarkerResult.WritableTxnMarkerTopicResult
PartitionResult = TopicResult.WritableTxnMarkerPartitionResult


def _write(broker, marker, topic: str, index: int, now_ms: int):
    """Write one marker; the hosted replica in a cluster (to wait for), else None."""
    hosted = None
    if broker.cluster is not None:
        hosted = broker.cluster.replicas.leader(topic, index)
        partition = hosted.log
    else:
        partition = broker.partition(topic, index)
    partition.append_marker(marker.producer_id, marker.producer_epoch, marker.transaction_result,
                            marker.coordinator_epoch, now_ms)
    if hosted is not None:
        broker.cluster.replicas.appended(hosted)
    if topic == OFFSETS_TOPIC:
        broker.groups.offsets.complete_transaction(marker.producer_id,
                                                   marker.transaction_result)
    return hosted


async def handle(broker, request, ctx):
    now_ms = broker.clock.wall_ms()
    codes: dict[tuple[int, str, int], int] = {}
    written = []
    for m, marker in enumerate(request.markers):
        for topic in marker.topics:
            for index in topic.partition_indexes:
                try:
                    hosted = _write(broker, marker, topic.name, index, now_ms)
                except KafkaError as e:
                    codes[(m, topic.name, index)] = e.code
                    continue
                codes[(m, topic.name, index)] = ErrorCode.NONE
                if hosted is not None:
                    written.append(((m, topic.name, index), hosted, hosted.log.log_end_offset))
    if written:
        # On the replica manager's clock: replication keeps real time, also under virtual time.
        replicas = broker.cluster.replicas
        deadline = replicas.clock.monotonic() + broker.config.request_timeout_ms / 1000
        for key, hosted, upto in written:
            codes[key] = await replicas.wait_for_replicas(hosted, upto, deadline)
    return Response(markers=[
        MarkerResult(producer_id=marker.producer_id, topics=[
            TopicResult(name=topic.name, partitions=[
                PartitionResult(partition_index=index, error_code=codes[(m, topic.name, index)])
                for index in topic.partition_indexes])
            for topic in marker.topics])
        for m, marker in enumerate(request.markers)])
