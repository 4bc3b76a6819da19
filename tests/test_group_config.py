"""Group configs (KIP-848, coordinator/group_config.py): Kafka's GroupConfig validation, what
DescribeConfigs lists, the single broker's store, and the coordinator using a group's own session
timeout and heartbeat interval (driven by a ManualClock)."""

import pytest

from trioka.clock import ManualClock
from trioka.config import Config, ConfigSource
from trioka.coordinator import group_config
from trioka.coordinator.group_coordinator import GroupCoordinator
from trioka.log.manager import LogManager
from trioka.wire.errors import ErrorCode, KafkaError

SESSION, HEARTBEAT = "consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"


def refused(config, values) -> tuple[int, str]:
    with pytest.raises(KafkaError) as info:
        group_config.validate(config, values)
    return info.value.code, info.value.message


def test_validation_is_kafkas_group_config():
    config = Config()
    assert group_config.validate(config, {}) == {SESSION: 45000, HEARTBEAT: 5000}
    assert group_config.validate(config, {SESSION: "60000", HEARTBEAT: "15000"}) == \
        {SESSION: 60000, HEARTBEAT: 15000}
    assert refused(config, {"share.session.timeout.ms": "1"}) == (
        ErrorCode.INVALID_CONFIG, "Unknown group config name: share.session.timeout.ms")
    assert refused(config, {SESSION: "soon"}) == (
        ErrorCode.INVALID_CONFIG,
        "Invalid value soon for configuration consumer.session.timeout.ms: Not a number of "
        "type INT")
    assert refused(config, {HEARTBEAT: "0"})[1].endswith("Value must be at least 1")
    assert refused(config, {SESSION: "30000"}) == (
        ErrorCode.INVALID_CONFIG, "consumer.session.timeout.ms must be greater than or equal to "
                                  "group.consumer.min.session.timeout.ms")
    assert refused(config, {HEARTBEAT: "20000"})[1] == (
        "consumer.heartbeat.interval.ms must be less than or equal to "
        "group.consumer.max.heartbeat.interval.ms")
    # The bounds are the broker's settings.
    low = Config({"group.consumer.min.session.timeout.ms": 1000,
                  "group.consumer.min.heartbeat.interval.ms": 1000})
    assert group_config.validate(low, {SESSION: "3000", HEARTBEAT: "1000"})[SESSION] == 3000
    assert refused(low, {SESSION: "5000", HEARTBEAT: "5000"})[1] == (
        "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms")
    with pytest.raises(KafkaError) as info:
        group_config.check_group_name("")
    assert info.value.code == ErrorCode.INVALID_REQUEST


def test_describe_entries_show_the_group_value_then_the_broker_setting():
    config = Config({"group.consumer.session.timeout.ms": 50000})
    entries = {e[0]: e for e in group_config.config_entries(config, {HEARTBEAT: "7000"})}
    name, value, source, synonyms, read_only, typed = entries[HEARTBEAT]
    assert (value, source, typed, read_only) == ("7000", ConfigSource.GROUP_CONFIG, 7000, False)
    assert synonyms == [(HEARTBEAT, "7000", ConfigSource.GROUP_CONFIG),
                        ("group.consumer.heartbeat.interval.ms", "5000",
                         ConfigSource.DEFAULT_CONFIG)]
    _, value, source, synonyms, _, _ = entries[SESSION]
    assert (value, source) == ("50000", ConfigSource.STATIC_BROKER_CONFIG)
    assert [s[2] for s in synonyms] == [ConfigSource.STATIC_BROKER_CONFIG,
                                        ConfigSource.DEFAULT_CONFIG]


def test_the_store_keeps_group_configs_across_a_restart(tmp_path):
    logs = LogManager(str(tmp_path))
    logs.open()
    store = group_config.GroupConfigStore(logs.files)
    store.set(Config(), "g", {SESSION: "60000"})
    store.set(Config(), "g", {HEARTBEAT: "6000"}, validate_only=True)
    with pytest.raises(KafkaError):
        store.set(Config(), "g", {SESSION: "1"})
    assert group_config.GroupConfigStore(logs.files).overrides("g") == {SESSION: "60000"}
    store.set(Config(), "g", {})
    assert group_config.GroupConfigStore(logs.files).overrides("g") == {}


def test_the_coordinator_uses_a_groups_own_session_timeout_and_heartbeat_interval():
    clock = ManualClock(monotonic=1000.0)
    logs = LogManager(None, clock=clock)
    logs.open()
    logs.create_topic("orders", 2, {})
    gc = GroupCoordinator(Config(), logs, clock=clock)
    own = {"slow": {SESSION: "60000", HEARTBEAT: "12000"}}
    gc.consumer.group_overrides = lambda group_id: own.get(group_id, {})
    gc.open()

    def join(group):
        return gc.consumer.consumer_group_heartbeat(
            group, "m", 0, rebalance_timeout_ms=30000, subscribed_topic_names=["orders"],
            topic_partitions=[], client_id="c", client_host="/127.0.0.1")

    assert join("slow").heartbeat_interval_ms == 12000
    assert join("fast").heartbeat_interval_ms == 5000        # the broker's setting
    clock.advance(50_000)
    gc.expire(clock.monotonic())
    # 50 s of silence: past the broker's 45 s, within the group's own 60 s.
    assert "m" in gc.consumer_groups["slow"].members
    assert "m" not in gc.consumer_groups["fast"].members
    clock.advance(11_000)
    gc.expire(clock.monotonic())
    assert "m" not in gc.consumer_groups["slow"].members


def test_the_controller_writes_group_configs_as_config_records():
    from trioka.controller.configuration_control import SET, DELETE, ConfigurationControlManager
    from trioka.metadata.image import ConfigResourceType, MetadataImage
    image = MetadataImage()
    control = ConfigurationControlManager(image, Config(), 1)

    def apply(operations):
        for record in control.incremental_alter(ConfigResourceType.GROUP, "g", operations):
            image.replay(record.record_type, record.message)

    apply([(SESSION, SET, "60000"), (HEARTBEAT, SET, "6000")])
    assert image.group_configs("g") == {SESSION: "60000", HEARTBEAT: "6000"}
    apply([(HEARTBEAT, DELETE, None)])
    assert image.group_configs("g") == {SESSION: "60000"}
    with pytest.raises(KafkaError) as info:
        control.incremental_alter(ConfigResourceType.GROUP, "g", [(SESSION, SET, "3000")])
    assert info.value.code == ErrorCode.INVALID_CONFIG
    with pytest.raises(KafkaError) as info:
        control.incremental_alter(ConfigResourceType.GROUP, "", [(SESSION, SET, "50000")])
    assert info.value.code == ErrorCode.INVALID_REQUEST
