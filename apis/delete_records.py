"""DeleteRecords (key 21), v0-2: move partitions' log start offsets forward on demand.

For each partition, records below `offset` become unreadable at once: the log start offset moves
there (-1 means the high watermark) and segments wholly below it are deleted. The answer carries the
new low watermark (the log start offset). An offset above the high watermark, or below -1, is
OFFSET_OUT_OF_RANGE; unknown partitions are UNKNOWN_TOPIC_OR_PARTITION. Consumers positioned below
the new start get OFFSET_OUT_OF_RANGE on their next fetch and reset by their policy.

The internal topics (`__consumer_offsets`, `__transaction_state`) refuse it with
INVALID_TOPIC_EXCEPTION, as Kafka's ReplicaManager.deleteRecords does: their records are the
coordinators' state (committed offsets, transactions). A partition of an offline log dir is
KAFKA_STORAGE_ERROR.
"""

from trioka.log.topics import INTERNAL_TOPICS
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

HIGH_WATERMARK = -1

Response = response_class(ApiKey.DELETE_RECORDS)
TopicResult = Response.DeleteRecordsTopicResult
PartitionResult = TopicResult.DeleteRecordsPartitionResult


def delete_before(broker, topic: str, p) -> object:
    try:
        info = broker.topic(topic)
        if info is None or not 0 <= p.partition_index < info.num_partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if topic in INTERNAL_TOPICS:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                             f"Cannot delete records of internal topic {topic}")
        log = broker.partition(topic, p.partition_index)
        offset = log.high_watermark if p.offset == HIGH_WATERMARK else p.offset
        if offset < 0:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE,
                             f"Cannot delete records before negative offset {p.offset}")
        low = log.delete_records_before(offset)
    except KafkaError as e:
        return PartitionResult(partition_index=p.partition_index, low_watermark=-1,
                               error_code=e.code)
    return PartitionResult(partition_index=p.partition_index, low_watermark=low, error_code=0)


async def handle(broker, request, ctx):
    topics = [TopicResult(name=t.name, partitions=[delete_before(broker, t.name, p)
                                                   for p in t.partitions])
              for t in request.topics]
    return Response(throttle_time_ms=0, topics=topics)
