"""Group configs (KIP-848, Kafka 4.0): a consumer group's own session timeout and heartbeat
interval, set and read as ConfigResource GROUP (32) with confluent-kafka's and kafka-python's
admin clients, checked as Kafka's GroupConfig checks them, kept across a restart, and used by the
group coordinator for that group's ConsumerGroupHeartbeat answers."""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, ResourceType)
from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, KafkaAdminClient

from harness import RawConnection, create_topic, unique, wait_for
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

SESSION, HEARTBEAT = "consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"
GROUP_CONFIG = 8      # DescribeConfigs' ConfigSource.GROUP_CONFIG


def alter(a, group, *entries):
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=list(entries))
    return a.incremental_alter_configs([resource])[resource].result(15)


def describe(a, group):
    resource = ConfigResource(ResourceType.GROUP, group)
    return a.describe_configs([resource])[resource].result(15)


def set_entry(key, value):
    return ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)


def joined_heartbeat_interval(bootstrap: str, group: str, topic: str) -> int:
    """A member joins `group` with a raw ConsumerGroupHeartbeat; the interval it is given."""
    hb = protocol.request_class(ApiKey.CONSUMER_GROUP_HEARTBEAT)
    with RawConnection(bootstrap, timeout=30) as conn:
        r = conn.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, hb(
            group_id=group, member_id=unique("member"), member_epoch=0,
            rebalance_timeout_ms=10_000, subscribed_topic_names=[topic], topic_partitions=[]))
    assert r.error_code == 0, r
    return r.heartbeat_interval_ms


def test_confluent_sets_and_describes_group_configs_and_the_coordinator_uses_them(
        own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name)
    a = AdminClient({"bootstrap.servers": own_broker.bootstrap})
    group, other = unique("g"), unique("g")
    configs = describe(a, group)
    assert {k: (v.value, v.source) for k, v in configs.items()} == {
        SESSION: ("45000", ConfigSource.DEFAULT_CONFIG.value),
        HEARTBEAT: ("5000", ConfigSource.DEFAULT_CONFIG.value)}

    alter(a, group, set_entry(SESSION, "60000"), set_entry(HEARTBEAT, "7000"))
    configs = describe(a, group)
    assert (configs[SESSION].value, configs[SESSION].source) == ("60000", GROUP_CONFIG)
    assert (configs[HEARTBEAT].value, configs[HEARTBEAT].source) == ("7000", GROUP_CONFIG)
    assert joined_heartbeat_interval(own_broker.bootstrap, group, topic_name) == 7000
    assert joined_heartbeat_interval(own_broker.bootstrap, other, topic_name) == 5000

    # Outside the broker's bounds, an unknown key: INVALID_CONFIG, nothing changed.
    for entry in (set_entry(SESSION, "30000"), set_entry(HEARTBEAT, "60000"),
                  set_entry("share.session.timeout.ms", "45000")):
        with pytest.raises(KafkaException) as info:
            alter(a, group, entry)
        assert info.value.args[0].name() == "INVALID_CONFIG"
    assert "greater than or equal to group.consumer.min.session.timeout.ms" in str(
        pytest.raises(KafkaException, alter, a, group, set_entry(SESSION, "1000")).value)

    own_broker.restart(kill=True)
    a = AdminClient({"bootstrap.servers": own_broker.bootstrap})
    assert describe(a, group)[HEARTBEAT].value == "7000"
    assert joined_heartbeat_interval(own_broker.bootstrap, group, topic_name) == 7000

    alter(a, group, ConfigEntry(HEARTBEAT, None, incremental_operation=AlterConfigOpType.DELETE))
    assert describe(a, group)[HEARTBEAT].source == ConfigSource.DEFAULT_CONFIG.value
    assert joined_heartbeat_interval(own_broker.bootstrap, group, topic_name) == 5000


def test_kafka_python_alters_and_describes_group_configs(broker):
    group = unique("g")
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resource = KConfigResource(ConfigResourceType.GROUP, group)
        assert client.describe_configs([resource])["group"][group] == {}   # nothing set
        client.alter_configs([KConfigResource(ConfigResourceType.GROUP, group,
                                              configs={HEARTBEAT: "6000"})])
        modified = client.describe_configs([resource], include_synonyms=True)["group"][group]
        assert set(modified) == {HEARTBEAT}
        assert modified[HEARTBEAT]["value"] == "6000"
        assert modified[HEARTBEAT]["config_type"] == "INT"
        assert [(s["name"], s["value"]) for s in modified[HEARTBEAT]["synonyms"]] == [
            (HEARTBEAT, "6000"), ("group.consumer.heartbeat.interval.ms", "5000")]
    finally:
        client.close()


def coordinator_of(cluster, group: str) -> str:
    """The address of the group's coordinator (FindCoordinator v4), once there is one."""
    find = protocol.request_class(ApiKey.FIND_COORDINATOR)

    def ask():
        with RawConnection(cluster.bootstrap.split(",")[0], timeout=30) as conn:
            r = conn.request(ApiKey.FIND_COORDINATOR, 4, find(
                key="", key_type=0, coordinator_keys=[group]))
        [c] = r.coordinators
        return f"{c.host}:{c.port}" if c.error_code == 0 else None
    return wait_for(ask, 30, f"a coordinator for {group}", interval=0.2)


def test_group_configs_go_through_the_controller_and_reach_the_coordinator(cluster):
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    create_topic(cluster.bootstrap, "orders")
    group = unique("g")
    alter(a, group, set_entry(HEARTBEAT, "8000"))
    with pytest.raises(KafkaException) as info:
        alter(a, group, set_entry(SESSION, "90000"))
    assert info.value.args[0].name() == "INVALID_CONFIG"
    # Every node answers from its metadata image (ConfigRecords of type GROUP).
    for port in cluster.ports:
        node = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        wait_for(lambda: describe(node, group)[HEARTBEAT].value == "8000", 30,
                 f"the group config on the node at {port}")
    assert joined_heartbeat_interval(coordinator_of(cluster, group), group, "orders") == 8000
