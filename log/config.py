"""LogConfig: the topic-level configs of Kafka (its `LogConfig`), their defaults and validation.

A topic's effective config is Kafka's defaults, overridden by the broker's settings for them
(`log.segment.bytes` -> `segment.bytes`, resolved by the caller and passed as `base`), overridden
by the topic's own overrides from CreateTopics / AlterConfigs. Values arrive as strings and are
checked as Kafka's ConfigDef checks them (type, allowed values, minimum); an unknown key or a bad
value is INVALID_CONFIG.

Plain data, no I/O: the partition log reads the fields it needs at each append and roll.
"""

import dataclasses

from trioka.wire.errors import ErrorCode, KafkaError

LONG_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1

# compression.type values that name a codec (the batch attributes' codec id); "producer" keeps
# whatever codec the producer used.
TOPIC_CODECS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """The topic-level configs of Kafka, with Kafka's defaults; names are the config keys with
    '.' -> '_' (segment.bytes -> segment_bytes). Build one from AlterConfigs/CreateTopics strings
    with `LogConfig.from_configs`. Broker-level defaults (log.segment.bytes, ...) are applied by
    passing them as `base`."""

    cleanup_policy: str = "delete"  # "delete", "compact", "compact,delete" or "" (keep all)
    compression_type: str = "producer"
    compression_gzip_level: int = -1
    compression_lz4_level: int = 9
    compression_zstd_level: int = 3
    delete_retention_ms: int = 86400000
    file_delete_delay_ms: int = 60000
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    follower_replication_throttled_replicas: str = ""
    index_interval_bytes: int = 4096
    leader_replication_throttled_replicas: str = ""
    local_retention_bytes: int = -2
    local_retention_ms: int = -2
    max_compaction_lag_ms: int = LONG_MAX
    max_message_bytes: int = 1048588
    message_timestamp_after_max_ms: int = LONG_MAX
    message_timestamp_before_max_ms: int = LONG_MAX
    message_timestamp_type: str = "CreateTime"  # or "LogAppendTime"
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    min_insync_replicas: int = 1
    preallocate: bool = False
    remote_log_copy_disable: bool = False
    remote_log_delete_on_disable: bool = False
    remote_storage_enable: bool = False
    retention_bytes: int = -1
    retention_ms: int = 604800000
    segment_bytes: int = 1073741824
    segment_index_bytes: int = 10485760
    segment_jitter_ms: int = 0
    segment_ms: int = 604800000
    unclean_leader_election_enable: bool = False

    @classmethod
    def from_configs(cls, configs, base: "LogConfig | None" = None) -> "LogConfig":
        """`base` (default: Kafka's defaults) overridden by `configs`, a mapping of Kafka topic
        config keys ("segment.bytes" or "segment_bytes") to strings (or typed values).
        An unknown key or a bad value raises KafkaError(INVALID_CONFIG)."""
        values = {}
        for key, value in configs.items():
            name = key.replace(".", "_")
            field = _FIELDS.get(name)
            if field is None:
                raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {key}")
            values[name] = _parse_config_value(name, field.type, value)
        return dataclasses.replace(base or cls(), **values)

    def to_configs(self) -> dict[str, str]:
        """Every topic config as Kafka's key -> string value (for DescribeConfigs)."""
        return {f.name.replace("_", "."): _config_string(getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy.split(",")

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy.split(",")

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def compression_codec(self) -> int | None:
        """The codec id batches are stored with (Kafka's target compression), or None when
        compression.type is "producer" and batches keep the producer's codec."""
        return TOPIC_CODECS.get(self.compression_type)


_FIELDS = {f.name: f for f in dataclasses.fields(LogConfig)}

# Allowed values and ranges, as Kafka validates them (ConfigDef validators of LogConfig).
_CHOICES = {
    "compression_type": {"uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"},
    "message_timestamp_type": {"CreateTime", "LogAppendTime"},
}
_MINIMUMS = {
    "segment_bytes": 14, "segment_ms": 1, "segment_index_bytes": 4, "segment_jitter_ms": 0,
    "index_interval_bytes": 0, "max_message_bytes": 0, "retention_ms": -1, "flush_messages": 1,
    "flush_ms": 0, "delete_retention_ms": 0, "file_delete_delay_ms": 0,
    "min_compaction_lag_ms": 0, "max_compaction_lag_ms": 1, "min_insync_replicas": 1,
    "message_timestamp_after_max_ms": 0, "message_timestamp_before_max_ms": 0,
}
_INT32_FIELDS = {"segment_bytes", "segment_index_bytes", "index_interval_bytes",
                 "max_message_bytes", "min_insync_replicas"}


def _parse_config_value(name: str, kind, value):
    key = name.replace("_", ".")
    try:
        if kind is bool:
            if isinstance(value, bool):
                parsed = value
            elif str(value).strip().lower() in ("true", "false"):
                parsed = str(value).strip().lower() == "true"
            else:
                raise ValueError(value)
        elif kind is int:
            parsed = int(str(value).strip())
        elif kind is float:
            parsed = float(str(value).strip())
        else:
            parsed = str(value).strip()
    except (TypeError, ValueError):
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}") from None
    if name in _CHOICES and parsed not in _CHOICES[name]:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: String must be one of: "
                         f"{', '.join(sorted(_CHOICES[name]))}")
    if name == "cleanup_policy":
        # Kafka's ValidList.in("compact", "delete") checks each item, so an empty list is valid
        # (what SUBTRACT of the last policy leaves): neither retention nor compaction then runs
        # and the log is kept forever, as Kafka documents it since 4.2 (KAFKA-19112).
        policies = [p.strip() for p in parsed.split(",") if p.strip()]
        if any(p not in ("delete", "compact") for p in policies):
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"Invalid value {value} for configuration {key}")
        parsed = ",".join(policies)
    if name in _MINIMUMS and parsed < _MINIMUMS[name]:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: Value must be at least "
                         f"{_MINIMUMS[name]}")
    if name in _INT32_FIELDS and parsed > INT32_MAX:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: Not a number of type INT")
    if name == "min_cleanable_dirty_ratio" and not 0.0 <= parsed <= 1.0:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: Value must be between 0 "
                         f"and 1")
    return parsed


def _config_string(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
