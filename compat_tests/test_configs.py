"""Topic and broker configs through the admin clients of confluent-kafka and kafka-python."""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)

from harness import create_topic


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def describe(a, resource):
    return a.describe_configs([resource])[resource].result(15)


def alter(a, resource):
    return a.incremental_alter_configs([resource])[resource].result(15)


def test_confluent_describe_and_alter_topic_configs(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, configs={"retention.ms": "123456"})
    a = admin(broker.bootstrap)
    topic = ConfigResource("topic", topic_name)
    configs = describe(a, topic)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"].value == "delete"

    alter(a, ConfigResource("topic", topic_name, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)]))
    configs = describe(a, topic)
    assert configs["cleanup.policy"].value == "delete,compact"
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["max.message.bytes"].value == "2000000"


@pytest.mark.parametrize("entry, code", [
    (ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
     "INVALID_CONFIG"),
    (ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
     "INVALID_CONFIG"),
    (ConfigEntry("message.timestamp.type", "Whenever", incremental_operation=AlterConfigOpType.SET),
     "INVALID_CONFIG"),
    (ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND),
     "INVALID_CONFIG"),
])
def test_confluent_invalid_topic_configs_are_refused(broker, topic_name, entry, code):
    create_topic(broker.bootstrap, topic_name)
    a = admin(broker.bootstrap)
    with pytest.raises(KafkaException) as info:
        alter(a, ConfigResource("topic", topic_name, incremental_configs=[entry]))
    assert info.value.args[0].name() == code
    assert describe(a, ConfigResource("topic", topic_name))["retention.ms"].value == "604800000"


def test_confluent_broker_configs_altered_survive_restart(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name)
    a = admin(own_broker.bootstrap)
    node = ConfigResource("broker", "1")
    configs = describe(a, node)
    assert configs["log.segment.bytes"].value == "1073741824"
    assert not configs["log.segment.bytes"].is_read_only
    assert configs["num.partitions"].is_read_only

    alter(a, ConfigResource("broker", "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "7777777", incremental_operation=AlterConfigOpType.SET)]))
    with pytest.raises(KafkaException) as info:
        alter(a, ConfigResource("broker", "1", incremental_configs=[
            ConfigEntry("num.partitions", "4", incremental_operation=AlterConfigOpType.SET)]))
    assert info.value.args[0].name() == "INVALID_REQUEST"

    topic = ConfigResource("topic", topic_name)
    assert describe(a, topic)["retention.ms"].value == "7777777"
    assert describe(a, topic)["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value

    own_broker.restart(kill=True)
    a = admin(own_broker.bootstrap)
    assert describe(a, node)["log.retention.ms"].value == "7777777"
    assert describe(a, node)["log.retention.ms"].source == \
        ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert describe(a, topic)["retention.ms"].value == "7777777"


def test_topic_config_overrides_survive_restart(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, configs={"segment.bytes": "1048576"})
    a = admin(own_broker.bootstrap)
    alter(a, ConfigResource("topic", topic_name, incremental_configs=[
        ConfigEntry("message.timestamp.type", "LogAppendTime",
                    incremental_operation=AlterConfigOpType.SET)]))
    own_broker.restart()
    configs = describe(admin(own_broker.bootstrap), ConfigResource("topic", topic_name))
    assert configs["segment.bytes"].value == "1048576"
    assert configs["message.timestamp.type"].value == "LogAppendTime"


def test_kafka_python_describe_and_alter_configs(broker, topic_name):
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, KafkaAdminClient
    create_topic(broker.bootstrap, topic_name)
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resource = KConfigResource(ConfigResourceType.TOPIC, topic_name)
        every = client.describe_configs([resource], config_filter="all")["topic"][topic_name]
        assert every["cleanup.policy"]["value"] == "delete"
        assert every["segment.bytes"]["value"] == "1073741824"
        # kafka-python shows only values set away from their defaults unless asked for all.
        assert client.describe_configs([resource])["topic"][topic_name] == {}

        client.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name,
                                              configs={"retention.ms": "99999"})])
        modified = client.describe_configs([resource])["topic"][topic_name]
        assert set(modified) == {"retention.ms"}
        assert modified["retention.ms"]["value"] == "99999"
    finally:
        client.close()
