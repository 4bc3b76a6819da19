"""Which broker synonyms DescribeConfigs lists for a topic config (Kafka's ConfigHelper), and an
empty `cleanup.policy` (Kafka's ValidList accepts an empty list)."""

import pytest

from trioka.apis.describe_configs import broker_synonyms
from trioka.config import Config, ConfigSource
from trioka.log.config import LogConfig
from trioka.wire.errors import ErrorCode, KafkaError

DEFAULT, STATIC = ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG
DYNAMIC = ConfigSource.DYNAMIC_BROKER_CONFIG


def test_a_key_without_kafka_default_shows_no_synonym_until_set():
    # log.retention.ms has no default in Kafka: nothing is listed, whatever the hours say.
    assert broker_synonyms(Config(), "log.retention.ms") == []
    assert broker_synonyms(Config({"log.retention.hours": 24}), "log.retention.ms") == []
    assert broker_synonyms(Config(), "log.roll.ms") == []
    assert broker_synonyms(Config(), "log.flush.interval.ms") == []
    assert broker_synonyms(Config(), "log.roll.jitter.ms") == []


def test_once_set_the_key_leads_and_the_later_synonyms_follow():
    cfg = Config({"log.retention.ms": 1000, "log.retention.hours": 24})
    assert broker_synonyms(cfg, "log.retention.ms") == [
        ("log.retention.ms", "1000", STATIC), ("log.retention.hours", "24", STATIC),
        ("log.retention.hours", "168", DEFAULT)]
    cfg.dynamic_broker["log.roll.ms"] = 5000
    assert broker_synonyms(cfg, "log.roll.ms") == [
        ("log.roll.ms", "5000", DYNAMIC), ("log.roll.hours", "168", DEFAULT)]


def test_a_key_with_a_default_shows_it():
    assert broker_synonyms(Config(), "log.segment.bytes") == [
        ("log.segment.bytes", "1073741824", DEFAULT)]
    assert broker_synonyms(Config({"log.segment.bytes": 2000000}), "log.segment.bytes") == [
        ("log.segment.bytes", "2000000", STATIC), ("log.segment.bytes", "1073741824", DEFAULT)]


def test_an_empty_cleanup_policy_is_valid_and_keeps_everything():
    config = LogConfig.from_configs({"cleanup.policy": ""})
    assert config.cleanup_policy == ""
    assert not config.delete and not config.compact
    assert config.to_configs()["cleanup.policy"] == ""
    with pytest.raises(KafkaError) as info:
        LogConfig.from_configs({"cleanup.policy": "delete,forever"})
    assert info.value.code == ErrorCode.INVALID_CONFIG
