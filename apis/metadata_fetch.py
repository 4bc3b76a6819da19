"""Fetch (key 1) on the controller listener, v12-17: the Raft Fetch of `__cluster_metadata`
(Kafka's KafkaRaftClient.handleFetchRequest, the leader of a quorum of one voter).

Brokers follow the metadata log as Raft observers: one topic, `__cluster_metadata` (by name
before v13, by its topic id AAAAAAAAAAAAAAAAAAAAAQ from v13), one partition, 0. Checked in
Kafka's order:

- a cluster id that is not this cluster's (none given is accepted): INCONSISTENT_CLUSTER_ID, and
  any other topic, partition or more than one of them: INVALID_REQUEST, both for the whole
  response (Kafka's Raft client serves one partition only);
- a negative max_wait_ms or fetch offset, a last fetched epoch above the current leader epoch
  the fetcher gives: INVALID_REQUEST for the partition. Kafka also refuses a last fetched epoch
  of -1; here -1 is taken as what it means at fetch offset 0 (nothing fetched yet: Kafka's
  fetchers send epoch 0 for an empty log) and refused elsewhere;
- a current leader epoch below the controller's: FENCED_LEADER_EPOCH, above:
  UNKNOWN_LEADER_EPOCH, with the current leader and epoch so the fetcher retries with them;
- a fetch offset and last fetched epoch that the log does not hold: the diverging epoch (the
  last epoch at or below it and where it ends), for the fetcher to truncate to;
- then the committed batches from the fetch offset (up to the partition's max bytes, the first
  batch whole), the high watermark and the log start offset, long-polling up to max_wait_ms
  while nothing new is committed.

The leader's endpoint on this listener goes back in `node_endpoints` (v16+), as in Kafka.
Versions before 12 are not served here: they have no last fetched epoch (KIP-595), without which
a Raft fetcher cannot be told that its log diverged.
"""

from trioka.metadata.batches import METADATA_PARTITION, METADATA_TOPIC, METADATA_TOPIC_ID
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.FETCH)
TopicResponse = Response.FetchableTopicResponse
PartitionData = TopicResponse.PartitionData


def requested_partition(request, version: int):
    """The one FetchPartition of `__cluster_metadata-0`, or None when the request names
    anything else."""
    if len(request.topics) != 1:
        return None
    topic = request.topics[0]
    if version >= 13:
        if topic.topic_id != METADATA_TOPIC_ID:
            return None
    elif topic.topic != METADATA_TOPIC:
        return None
    if len(topic.partitions) != 1 or topic.partitions[0].partition != METADATA_PARTITION:
        return None
    return topic.partitions[0]


def response(version: int, partition: PartitionData, endpoint) -> object:
    topic = TopicResponse(topic=METADATA_TOPIC if version < 13 else None,
                          topic_id=METADATA_TOPIC_ID, partitions=[partition])
    extra = {}
    if version >= 16 and endpoint is not None:
        extra["node_endpoints"] = [Response.NodeEndpoint(**endpoint)]
    return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, session_id=0,
                    responses=[topic], **extra)


async def handle(broker, request, ctx):
    controller = broker.controller
    version = ctx.api_version
    if request.cluster_id is not None and controller.cluster_id is not None and \
            request.cluster_id != controller.cluster_id:
        return Response(throttle_time_ms=0, error_code=ErrorCode.INCONSISTENT_CLUSTER_ID,
                        session_id=0, responses=[])
    fetch = requested_partition(request, version)
    if fetch is None:
        return Response(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST, session_id=0,
                        responses=[])
    host, port = broker.advertised_address(ctx.connection.listener)
    endpoint = dict(node_id=controller.node_id, host=host, port=port,
                    rack=broker.config.broker_rack or None)
    leader = PartitionData.LeaderIdAndEpoch(leader_id=controller.node_id,
                                            leader_epoch=controller.epoch)

    def failed(code) -> object:
        return response(version, PartitionData(
            partition_index=METADATA_PARTITION, error_code=code,
            high_watermark=controller.high_watermark, last_stable_offset=-1,
            log_start_offset=controller.log.log_start_offset, current_leader=leader,
            records=b""), endpoint)

    current_epoch = fetch.current_leader_epoch
    last_fetched_epoch = fetch.last_fetched_epoch
    if request.max_wait_ms < 0 or fetch.fetch_offset < 0 or \
            (last_fetched_epoch < 0 and fetch.fetch_offset != 0) or \
            (current_epoch >= 0 and last_fetched_epoch > current_epoch):
        return failed(ErrorCode.INVALID_REQUEST)
    if current_epoch < controller.epoch:
        return failed(ErrorCode.FENCED_LEADER_EPOCH)
    if current_epoch > controller.epoch:
        return failed(ErrorCode.UNKNOWN_LEADER_EPOCH)
    replica_id = request.replica_state.replica_id if version >= 15 else request.replica_id
    max_bytes = min(fetch.partition_max_bytes, request.max_bytes) if request.max_bytes > 0 \
        else fetch.partition_max_bytes
    result = await controller.fetch_metadata(fetch.fetch_offset, max_bytes, request.max_wait_ms,
                                             replica_id, last_fetched_epoch)
    partition = PartitionData(
        partition_index=METADATA_PARTITION, error_code=result.error_code,
        high_watermark=result.high_watermark, last_stable_offset=-1,
        log_start_offset=result.log_start_offset,
        current_leader=PartitionData.LeaderIdAndEpoch(leader_id=result.leader_id,
                                                      leader_epoch=result.leader_epoch),
        records=result.records)
    if result.diverging_epoch is not None:
        epoch, end_offset = result.diverging_epoch
        partition.diverging_epoch = PartitionData.EpochEndOffset(epoch=epoch,
                                                                 end_offset=end_offset)
    return response(version, partition, endpoint)
