"""DescribeTopicPartitions (with its pagination) and ElectLeaders through stock admin clients."""

import pytest
from confluent_kafka import ElectionType, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from harness import RawConnection, create_topic
from trioka.wire.api_keys import ApiKey
from trioka.wire.protocol import request_class

DescribeTopicPartitions = request_class(ApiKey.DESCRIBE_TOPIC_PARTITIONS)


def test_confluent_describe_topics(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=5)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.describe_topics(TopicCollection([topic_name, topic_name + "-missing"]))
    described = futures[topic_name].result(15)
    assert [p.id for p in described.partitions] == [0, 1, 2, 3, 4]
    assert {p.leader.id for p in described.partitions} == {1}
    assert all([r.id for r in p.replicas] == [1] == [r.id for r in p.isr]
               for p in described.partitions)
    assert not described.is_internal
    with pytest.raises(KafkaException) as info:
        futures[topic_name + "-missing"].result(15)
    assert info.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_describe_topic_partitions_pages_with_a_cursor(broker, topic_name):
    a, b = topic_name + "-a", topic_name + "-b"
    create_topic(broker.bootstrap, a, partitions=3)
    create_topic(broker.bootstrap, b, partitions=4)
    seen = []
    cursor = None
    with RawConnection(broker.bootstrap) as conn:
        for _ in range(10):
            request = DescribeTopicPartitions(
                topics=[DescribeTopicPartitions.TopicRequest(name=n) for n in (b, a)],
                response_partition_limit=2, cursor=cursor)
            response = conn.request(ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0, request)
            for t in response.topics:
                assert t.error_code == 0
                seen += [(t.name, p.partition_index) for p in t.partitions]
            if response.next_cursor is None:
                break
            cursor = DescribeTopicPartitions.Cursor(
                topic_name=response.next_cursor.topic_name,
                partition_index=response.next_cursor.partition_index)
    # Sorted by topic name, every partition exactly once, two at a time.
    assert seen == [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1), (b, 2), (b, 3)]


def test_confluent_elect_leaders_not_needed(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    result = admin.elect_leaders(ElectionType.PREFERRED,
                                 [TopicPartition(topic_name, 0), TopicPartition(topic_name, 7)])
    outcome = result.result(15)
    errors = {tp.partition: err.name() for tp, err in outcome.items()}
    assert errors == {0: "ELECTION_NOT_NEEDED", 7: "UNKNOWN_TOPIC_OR_PART"}


def test_kafka_python_describe_topics(broker, topic_name):
    from kafka.admin import KafkaAdminClient
    create_topic(broker.bootstrap, topic_name, partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        [described] = admin.describe_topics([topic_name])
        assert described["name"] == topic_name and described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
        assert {p["leader_id"] for p in described["partitions"]} == {1}
        assert all(p["isr_nodes"] == [1] for p in described["partitions"])
    finally:
        admin.close()
