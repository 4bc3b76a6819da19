"""What clients see once an I/O error took the log dir offline, through the wire codec: the
partitions answer KAFKA_STORAGE_ERROR to Produce, Fetch, ListOffsets and DeleteRecords (Kafka's
answers for a partition in an offline log directory), DescribeLogDirs reports the dir with that
error, the coordinators answer NOT_COORDINATOR, and the broker keeps answering Metadata.

Also DeleteRecords on the internal topics, refused as Kafka refuses it.
"""

import os

from record_batches import make_batch
from trioka.broker import BrokerState
from trioka.config import Config
from trioka.log.segment import INDEX_SUFFIX, segment_file_name
from trioka.log.topics import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from trioka.log.records import iter_batches
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from wire_client import ADVERTISED, WireClient, memory_broker

K = ApiKey
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData
Fetch = protocol.request_class(K.FETCH)
ListOffsets = protocol.request_class(K.LIST_OFFSETS)
DeleteRecords = protocol.request_class(K.DELETE_RECORDS)
Metadata = protocol.request_class(K.METADATA)
CreateTopics = protocol.request_class(K.CREATE_TOPICS)


def disk_broker(path) -> BrokerState:
    broker = BrokerState(Config({"log.dirs": str(path), "listeners": "PLAINTEXT://127.0.0.1:0",
                                 "transaction.state.log.num.partitions": "3",
                                 "offsets.topic.num.partitions": "3"}))
    broker.open()
    broker.set_listeners([ADVERTISED])
    return broker


async def produce(client, topic: str, value: bytes) -> object:
    r = await client.call(K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=1000,
                          topic_data=[ProduceData(name=topic, partition_data=[
                              ProduceData.PartitionProduceData(index=0,
                                                               records=make_batch([value]))])])
    return r.responses[0].partition_responses[0]


async def delete_records(client, topic: str, offset: int = 0):
    r = await client.call(K.DELETE_RECORDS, 2, timeout_ms=1000, topics=[
        DeleteRecords.DeleteRecordsTopic(name=topic, partitions=[
            DeleteRecords.DeleteRecordsTopic.DeleteRecordsPartition(partition_index=0,
                                                                    offset=offset)])])
    return r.topics[0].partitions[0]


async def test_an_offline_dir_answers_kafka_storage_error_and_the_broker_stays_up(tmp_path):
    broker = disk_broker(tmp_path)
    broker.create_topic("t", 1, {"index.interval.bytes": "0"})
    client = WireClient(broker)
    assert (await produce(client, "t", b"a")).error_code == 0
    os.remove(tmp_path / "t-0" / segment_file_name(0, INDEX_SUFFIX))
    os.mkdir(tmp_path / "t-0" / segment_file_name(0, INDEX_SUFFIX))   # the disk fails
    failed = await produce(client, "t", b"b")
    assert failed.error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert broker.logs.offline
    later = await produce(client, "t", b"c")
    assert later.error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert later.error_message == "Partition t-0 is in an offline log directory"

    r = await client.call(K.FETCH, 12, replica_id=-1, max_wait_ms=0, min_bytes=1,
                          max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
                          topics=[Fetch.FetchTopic(topic="t", partitions=[
                              Fetch.FetchTopic.FetchPartition(partition=0, fetch_offset=0,
                                                              partition_max_bytes=1 << 20)])],
                          forgotten_topics_data=[])
    # What was acknowledged before the failure stays readable.
    (fetched,) = r.responses[0].partitions
    assert fetched.error_code == 0 and fetched.high_watermark == 1
    assert [rec.value for b in iter_batches(bytes(fetched.records)) for rec in b.records] == \
        [b"a"]

    r = await client.call(K.LIST_OFFSETS, 7, replica_id=-1, isolation_level=0, topics=[
        ListOffsets.ListOffsetsTopic(name="t", partitions=[
            ListOffsets.ListOffsetsTopic.ListOffsetsPartition(
                partition_index=0, current_leader_epoch=-1, timestamp=-1)])])
    assert (r.topics[0].partitions[0].error_code, r.topics[0].partitions[0].offset) == (0, 1)

    assert (await delete_records(client, "t")).error_code == ErrorCode.KAFKA_STORAGE_ERROR

    r = await client.call(K.DESCRIBE_LOG_DIRS, 4, topics=None)
    (result,) = r.results
    assert result.error_code == ErrorCode.KAFKA_STORAGE_ERROR and result.topics == []

    r = await client.call(K.CREATE_TOPICS, 7, timeout_ms=1000, validate_only=False, topics=[
        CreateTopics.CreatableTopic(name="new", num_partitions=1, replication_factor=1,
                                    assignments=[], configs=[])])
    assert r.topics[0].error_code == ErrorCode.KAFKA_STORAGE_ERROR

    r = await client.call(K.INIT_PRODUCER_ID, 4, transactional_id="tx",
                          transaction_timeout_ms=60000, producer_id=-1, producer_epoch=-1)
    assert r.error_code == ErrorCode.NOT_COORDINATOR

    # The broker itself is up: Metadata is answered, the topic listed.
    r = await client.call(K.METADATA, 12, topics=None, allow_auto_topic_creation=False,
                          include_topic_authorized_operations=False)
    assert [t.name for t in r.topics] == ["t"] and r.brokers
    broker.close()


async def test_delete_records_on_internal_topics_is_invalid_topic_exception(tmp_path):
    broker = memory_broker({"transaction.state.log.num.partitions": "1",
                            "offsets.topic.num.partitions": "1"})
    broker.create_topic(OFFSETS_TOPIC, 1)
    broker.create_topic(TRANSACTION_STATE_TOPIC, 1)
    client = WireClient(broker)
    for name in (OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC):
        result = await delete_records(client, name, -1)
        assert (result.error_code, result.low_watermark) == \
            (ErrorCode.INVALID_TOPIC_EXCEPTION, -1), name
    # An internal topic that does not exist is unknown, as in Kafka.
    other = memory_broker()
    assert (await delete_records(WireClient(other), OFFSETS_TOPIC)).error_code == \
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    other.close()
    broker.close()
