"""Group configs (KIP-848): Kafka's GroupConfig, configs set on one consumer group.

Kafka 4.0 lets an admin give a single consumer group its own session timeout and heartbeat
interval, a ConfigResource of type GROUP (32) read with DescribeConfigs and changed with
IncrementalAlterConfigs (or AlterConfigs). The group coordinator then uses them in place of the
broker's settings for that group's members (KIP-848 ConsumerGroupHeartbeat):

| group config                     | broker setting it overrides (its default)            |
|----------------------------------|------------------------------------------------------|
| `consumer.session.timeout.ms`    | `group.consumer.session.timeout.ms` (45000)          |
| `consumer.heartbeat.interval.ms` | `group.consumer.heartbeat.interval.ms` (5000)        |

Validation is Kafka's GroupConfig.validate, on the group's whole new set of configs (a key not
set counts with GroupConfig's own default, 45000 / 5000): an unknown key is INVALID_CONFIG
"Unknown group config name: x", a value that is not an INT or below 1 INVALID_CONFIG in
ConfigDef's words, and the values must lie within the broker's bounds
(`group.consumer.min/max.session.timeout.ms`, 45000..60000, and
`group.consumer.min/max.heartbeat.interval.ms`, 5000..15000), the session timeout above the
heartbeat interval ("consumer.session.timeout.ms must be greater than
consumer.heartbeat.interval.ms"). An empty group name is INVALID_REQUEST. A group need not exist
to have configs.

DescribeConfigs answers every group config with its value: GROUP_CONFIG (8) when set on the
group, else the broker setting's source; with synonyms, the group's own value then the broker
setting at each level where it has one.

Where they live: a single broker keeps them in GROUP_CONFIGS_FILE of its data dir (written
atomically, read at start); a cluster as ConfigRecords of resource type GROUP written by the
controller (controller/configuration_control.py) and replayed into each node's metadata image.

Kafka 4.0's share.* group configs (share groups, KIP-932) are not served: trioka has no share
groups, so they are unknown keys here.
"""

import dataclasses
import json
import logging

from trioka.config import ConfigSource, config_text
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

GROUP_CONFIGS_FILE = "trioka-group-configs.json"

SESSION_TIMEOUT = "consumer.session.timeout.ms"
HEARTBEAT_INTERVAL = "consumer.heartbeat.interval.ms"

# group config -> (the broker setting it overrides, GroupConfig's own default, documentation).
GROUP_CONFIGS = {
    HEARTBEAT_INTERVAL: ("group.consumer.heartbeat.interval.ms", 5000,
                         "The heartbeat interval given to the members of this consumer group."),
    SESSION_TIMEOUT: ("group.consumer.session.timeout.ms", 45000,
                      "The timeout to detect client failures when using the consumer group "
                      "protocol."),
}

# (group config, broker bound, "at least" or "at most"), checked in Kafka's order.
BOUNDS = (
    (HEARTBEAT_INTERVAL, "group.consumer.min.heartbeat.interval.ms", min),
    (HEARTBEAT_INTERVAL, "group.consumer.max.heartbeat.interval.ms", max),
    (SESSION_TIMEOUT, "group.consumer.min.session.timeout.ms", min),
    (SESSION_TIMEOUT, "group.consumer.max.session.timeout.ms", max),
)

INT32_MAX = 2**31 - 1


def check_group_name(name: str | None) -> None:
    if not name:
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Group name must not be empty")


def _parse(key: str, value) -> int:
    try:
        parsed = int(str(value).strip())
    except (TypeError, ValueError):
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: Not a number of type "
                         f"INT") from None
    if not -2**31 <= parsed <= INT32_MAX:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: Not a number of type "
                         f"INT")
    if parsed < 1:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"Invalid value {value} for configuration {key}: Value must be at least 1")
    return parsed


def validate(config, values: dict) -> dict[str, int]:
    """Kafka's GroupConfig.validate of a group's whole new set of configs (`values`: key ->
    string) against the broker's `config`; returns every group config typed (GroupConfig's
    defaults for keys not set), or raises KafkaError as Kafka answers."""
    for key in values:
        if key not in GROUP_CONFIGS:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown group config name: {key}")
    typed = {key: _parse(key, values[key]) if values.get(key) is not None else default
             for key, (_, default, _) in GROUP_CONFIGS.items()}
    for key, bound, kind in BOUNDS:
        limit = config.get(bound)
        if kind is min and typed[key] < limit:
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"{key} must be greater than or equal to {bound}")
        if kind is max and typed[key] > limit:
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"{key} must be less than or equal to {bound}")
    if typed[SESSION_TIMEOUT] <= typed[HEARTBEAT_INTERVAL]:
        raise KafkaError(ErrorCode.INVALID_CONFIG,
                         f"{SESSION_TIMEOUT} must be greater than {HEARTBEAT_INTERVAL}")
    return typed


def effective(config, overrides: dict) -> dict[str, str]:
    """Every group config's value for a group with `overrides`: its own, else the broker's."""
    return {key: str(overrides[key]) if key in overrides else config_text(config.get(broker_key))
            for key, (broker_key, _, _) in GROUP_CONFIGS.items()}


def config_entries(config, overrides: dict, keys=None) -> list:
    """(name, value, source, synonyms, read_only, typed value) of every group config, as
    DescribeConfigs lists them (Kafka's createGroupConfigEntry)."""
    out = []
    for key, (broker_key, _, _) in sorted(GROUP_CONFIGS.items()):
        if keys is not None and key not in keys:
            continue
        synonyms = []
        if key in overrides:
            synonyms.append((key, str(overrides[key]), ConfigSource.GROUP_CONFIG))
        synonyms += [(broker_key, config_text(v), source)
                     for source, v in config.synonyms(broker_key)]
        value = synonyms[0][1]
        out.append((key, value, synonyms[0][2], synonyms, False, int(value)))
    return out


def settings_with(base, overrides: dict):
    """`base` (the broker's ConsumerGroupSettings) with a group's own session timeout and
    heartbeat interval, as Kafka's GroupMetadataManager reads them for each heartbeat."""
    if not overrides:
        return base
    changes = {}
    if SESSION_TIMEOUT in overrides:
        changes["session_timeout_ms"] = int(overrides[SESSION_TIMEOUT])
    if HEARTBEAT_INTERVAL in overrides:
        changes["heartbeat_interval_ms"] = int(overrides[HEARTBEAT_INTERVAL])
    return dataclasses.replace(base, **changes) if changes else base


class GroupConfigStore:
    """A single broker's group configs: group id -> {key: value string}, in GROUP_CONFIGS_FILE
    of the data dir (log/files.py's Files, so a memory broker keeps them in memory)."""

    def __init__(self, files):
        self.files = files
        self.groups: dict[str, dict[str, str]] = {}
        if files.exists(GROUP_CONFIGS_FILE):
            try:
                stored = json.loads(files.read_small(GROUP_CONFIGS_FILE))
                self.groups = {str(g): {str(k): str(v) for k, v in values.items()}
                               for g, values in stored.items()}
            except (ValueError, AttributeError) as e:
                log.warning("ignoring damaged %s: %s", GROUP_CONFIGS_FILE, e)

    def overrides(self, group_id: str) -> dict[str, str]:
        return self.groups.get(group_id, {})

    def set(self, config, group_id: str, values: dict, validate_only: bool = False) -> None:
        """Replace a group's configs (validated first); an empty set removes them."""
        check_group_name(group_id)
        nulls = [k for k, v in values.items() if v is None]
        if nulls:
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"Null value not supported for group configs: {','.join(nulls)}")
        validate(config, values)
        if validate_only:
            return
        values = {k: str(v).strip() for k, v in values.items()}
        if values:
            self.groups[group_id] = values
        else:
            self.groups.pop(group_id, None)
        self.files.write_atomic(GROUP_CONFIGS_FILE,
                                json.dumps(self.groups, indent=1, sort_keys=True).encode())
