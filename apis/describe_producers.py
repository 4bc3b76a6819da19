"""DescribeProducers (key 61), v0: the active producers of partitions (idempotent and transactional).

For each partition, every producer the partition keeps state for (log/producer_state.py): its id
and epoch, the last sequence and timestamp it wrote, the coordinator epoch, and the first offset
of its open transaction here (-1 when none). This is what `kafka-transactions.sh describe-producers`
and hanging-transaction tooling read. Unknown partitions are UNKNOWN_TOPIC_OR_PARTITION.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_PRODUCERS)
TopicResponse = Response.TopicResponse
PartitionResponse = TopicResponse.PartitionResponse
ProducerState = PartitionResponse.ProducerState


def describe(broker, topic: str, index: int) -> object:
    try:
        log = broker.partition(topic, index, reading=True)
    except KafkaError as e:
        return PartitionResponse(partition_index=index, error_code=e.code,
                                 error_message=e.message)
    producers = [
        ProducerState(producer_id=e.producer_id, producer_epoch=e.producer_epoch,
                      last_sequence=e.last_seq, last_timestamp=e.last_timestamp,
                      coordinator_epoch=e.coordinator_epoch,
                      current_txn_start_offset=-1 if e.current_txn_first_offset is None
                      else e.current_txn_first_offset)
        for e in log.active_producers()]
    return PartitionResponse(partition_index=index, error_code=0, active_producers=producers)


async def handle(broker, request, ctx):
    topics = [TopicResponse(name=t.name, partitions=[describe(broker, t.name, i)
                                                     for i in t.partition_indexes])
              for t in request.topics]
    return Response(throttle_time_ms=0, topics=topics)
