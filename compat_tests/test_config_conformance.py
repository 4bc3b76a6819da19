"""Topic config answers that stock admin clients compare against Kafka's: the broker synonyms
DescribeConfigs lists (none for retention.ms until log.retention.ms is set, as Kafka: that key
has no default) and an empty `cleanup.policy` left by SUBTRACT (Kafka's list validator accepts
it), through confluent-kafka and kafka-python."""

from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)
from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, KafkaAdminClient

from harness import create_topic


def confluent_describe(a, resource):
    return a.describe_configs([resource])[resource].result(15)


def test_confluent_retention_ms_has_no_broker_synonym_segment_bytes_has_its_default(
        broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    configs = confluent_describe(a, ConfigResource("topic", topic_name))
    retention = configs["retention.ms"]
    assert retention.value == "604800000"
    assert retention.source == ConfigSource.DEFAULT_CONFIG.value
    assert retention.synonyms == {}
    assert configs["segment.ms"].synonyms == {}
    segment_bytes = configs["segment.bytes"].synonyms
    assert [(s.name, s.value, s.source) for s in segment_bytes.values()] == [
        ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG.value)]


def test_confluent_subtract_leaves_an_empty_cleanup_policy(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, configs={"cleanup.policy": "compact"})
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = ConfigResource("topic", topic_name, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT)])
    a.incremental_alter_configs([topic])[topic].result(15)
    policy = confluent_describe(a, ConfigResource("topic", topic_name))["cleanup.policy"]
    assert policy.value == ""
    assert policy.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_kafka_python_synonyms_and_an_empty_cleanup_policy(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resource = KConfigResource(ConfigResourceType.TOPIC, topic_name)
        every = client.describe_configs([resource], include_synonyms=True,
                                        config_filter="all")["topic"][topic_name]
        assert every["retention.ms"]["value"] == "604800000"
        assert every["retention.ms"]["synonyms"] == []
        assert [s["name"] for s in every["segment.bytes"]["synonyms"]] == ["log.segment.bytes"]

        client.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name,
                                              configs={"cleanup.policy": ""})])
        every = client.describe_configs([resource], config_filter="all")["topic"][topic_name]
        assert every["cleanup.policy"]["value"] == ""
    finally:
        client.close()
