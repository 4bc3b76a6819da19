"""Configs of topics and brokers in the metadata: Kafka's ConfigurationControlManager.

IncrementalAlterConfigs and AlterConfigs reach the controller (brokers forward them, as KRaft
brokers do); the controller checks the new set as a single broker checks it and writes one
ConfigRecord per key that changes (value null for a key that goes back to its default). Brokers
learn the configs by replaying those records into their MetadataImage
(`image.topic_configs(name)`, `image.broker_configs("1")`, `image.broker_configs("")`).

Resources, as in Kafka:

- TOPIC (2): the topic must be in the image (UNKNOWN_TOPIC_OR_PARTITION "Topic t does not
  exist"); the new overrides must make a valid topic config over this controller's broker
  defaults (INVALID_CONFIG for an unknown key, a bad value or a null one).
- BROKER (4): the name is a broker id or "" (the cluster-wide default of every broker);
  anything else is INVALID_REQUEST ("Unable to parse broker name"). Only the broker keys that
  are the defaults of topic configs change at runtime (Kafka's dynamic broker configs, KIP-226):
  an unknown key is INVALID_CONFIG, a static one INVALID_REQUEST ("Cannot update these configs
  dynamically"), a value that does not parse INVALID_CONFIG.
- GROUP (32): KIP-848 group configs (coordinator/group_config.py: Kafka's GroupConfig.validate
  against this controller's group.consumer.* bounds); the group need not exist, an empty name is
  INVALID_REQUEST.
- Any other type is INVALID_REQUEST.

The operations of IncrementalAlterConfigs (KIP-339) are `apply_operations`, shared with the
single broker's handler: SET, DELETE, APPEND and SUBTRACT (list configs only, from the current
value), a key named twice INVALID_REQUEST.

A broker resource's configs are not checked against the broker's other settings beyond the topic
defaults they make (Kafka asks the broker itself for that in a few cases, e.g. listeners, which
are not dynamic here).
"""

import copy

from trioka.config import DYNAMIC_KEYS, KEYS, LIST_KEYS, Config, topic_defaults
from trioka.coordinator import group_config
from trioka.log.config import LogConfig
from trioka.metadata import records as r
from trioka.metadata.image import ConfigResourceType, MetadataImage
from trioka.wire.errors import ErrorCode, KafkaError

# IncrementalAlterConfigs' config_operation (Kafka's AlterConfigOp.OpType).
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def apply_operations(overrides: dict, effective: dict, operations) -> dict:
    """The overrides after IncrementalAlterConfigs' `operations` ((name, op, value) triples);
    `effective` holds the values in force now, the base of APPEND and SUBTRACT."""
    overrides = dict(overrides)
    names = [name for name, _, _ in operations]
    if len(set(names)) != len(names):
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    for name, op, value in operations:
        if op == SET:
            overrides[name] = value
        elif op == DELETE:
            overrides.pop(name, None)
        elif op in (APPEND, SUBTRACT):
            if name not in LIST_KEYS:
                verb = "append" if op == APPEND else "subtract"
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Config value {verb} is not allowed for config key {name} "
                                 "since its type is not LIST")
            base = overrides.get(name, effective.get(name, "")) or ""
            items = [x.strip() for x in base.split(",") if x.strip()]
            given = [x.strip() for x in (value or "").split(",") if x.strip()]
            if op == APPEND:
                items += [x for x in given if x not in items]
            else:
                items = [x for x in items if x not in given]
            overrides[name] = ",".join(items)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown config operation {op}")
    return overrides


def validate_broker_configs(config: Config, values: dict) -> dict:
    """Typed values of one dynamic broker layer, or KafkaError as Kafka answers it."""
    unknown = sorted(k for k in values if k not in KEYS)
    if unknown:
        raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown broker configs: {unknown}")
    static = sorted(k for k in values if k not in DYNAMIC_KEYS)
    if static:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"Cannot update these configs dynamically: {static}")
    typed = {}
    for k, v in values.items():
        try:
            typed[k] = config.parse(k, v)
        except ValueError as e:
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"Invalid value {v} for configuration {k}: {e}") from None
    return typed


def parsed_layer(config: Config, values: dict) -> dict:
    """The values of a dynamic layer the metadata holds, typed; keys that do not parse (written
    by a newer version) are left out."""
    out = {}
    for k, v in values.items():
        if k in DYNAMIC_KEYS and v is not None:
            try:
                out[k] = config.parse(k, v)
            except ValueError:
                continue
    return out


def with_dynamic_layers(config: Config, cluster_default: dict, broker: dict) -> Config:
    """A view of `config` whose dynamic layers are the given string values (the static ones
    shared)."""
    view = copy.copy(config)
    view.dynamic_default = parsed_layer(config, cluster_default)
    view.dynamic_broker = parsed_layer(config, broker)
    return view


class ConfigurationControlManager:
    """The controller's decisions about configs. Reads `image`; returns records."""

    def __init__(self, image: MetadataImage, config: Config, node_id: int):
        self.image = image
        self.config = config
        self.node_id = node_id

    def broker_config(self, broker_name: str | None = None, layer: dict | None = None) -> Config:
        """This controller's config with the image's dynamic layers; `layer` stands in for the
        image's layer of `broker_name` (a change being checked)."""
        default = self.image.broker_configs("")
        own = self.image.broker_configs(str(self.node_id))
        if broker_name == "":
            default = layer
        elif broker_name == str(self.node_id):
            own = layer
        return with_dynamic_layers(self.config, default, own)

    def topic_defaults(self, config: Config | None = None) -> LogConfig:
        return LogConfig.from_configs(topic_defaults(config or self.broker_config()))

    def current(self, resource_type: int, name: str) -> tuple[dict, dict]:
        """(overrides now set, effective values) of a resource, as strings."""
        if resource_type == ConfigResourceType.TOPIC:
            if self.image.topic(name) is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic {name} does not exist")
            overrides = dict(self.image.topic_configs(name))
            try:
                effective = LogConfig.from_configs(overrides, self.topic_defaults()).to_configs()
            except KafkaError:
                effective = {}
            return overrides, {k: str(v) for k, v in effective.items()}
        if resource_type == ConfigResourceType.BROKER:
            self.check_broker_name(name)
            overrides = dict(self.image.broker_configs(name))
            config = self.broker_config()
            effective = {k: str(config.get(k)) for k in overrides if k in KEYS}
            return overrides, effective
        if resource_type == ConfigResourceType.GROUP:
            group_config.check_group_name(name)
            overrides = dict(self.image.group_configs(name))
            return overrides, group_config.effective(self.broker_config(), overrides)
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource_type}")

    @staticmethod
    def check_broker_name(name: str) -> None:
        if name == "":
            return
        try:
            int(name)
        except ValueError:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unable to parse broker name {name}") from None

    def incremental_alter(self, resource_type: int, name: str,
                          operations) -> list[r.MetadataRecord]:
        """IncrementalAlterConfigs of one resource: (name, op, value) operations."""
        overrides, effective = self.current(resource_type, name)
        return self.legacy_alter(resource_type, name,
                                 apply_operations(overrides, effective, operations))

    def legacy_alter(self, resource_type: int, name: str, values: dict) -> list[r.MetadataRecord]:
        """AlterConfigs of one resource: `values` is its whole new set of overrides."""
        if resource_type == ConfigResourceType.TOPIC:
            if self.image.topic(name) is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic {name} does not exist")
            nulls = [k for k, v in values.items() if v is None]
            if nulls:
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Null value not supported for topic configs: {','.join(nulls)}")
            LogConfig.from_configs(values, self.topic_defaults())   # INVALID_CONFIG
        elif resource_type == ConfigResourceType.BROKER:
            self.check_broker_name(name)
            validate_broker_configs(self.config, values)
            if name in ("", str(self.node_id)):
                # The topic defaults the new layer makes must hold together.
                self.topic_defaults(self.broker_config(name, values))
        elif resource_type == ConfigResourceType.GROUP:
            group_config.check_group_name(name)
            nulls = [k for k, v in values.items() if v is None]
            if nulls:
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Null value not supported for group configs: {','.join(nulls)}")
            group_config.validate(self.broker_config(), values)    # INVALID_CONFIG
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unsupported resource type {resource_type}")
        return self.changes(ConfigResourceType(resource_type), name,
                            {k: str(v) for k, v in values.items()})

    def changes(self, resource_type: ConfigResourceType, name: str,
                values: dict) -> list[r.MetadataRecord]:
        """The ConfigRecords that turn the image's configs of the resource into `values`."""
        existing = self.image.configs.get((resource_type, name), {})
        out = [r.config_record(resource_type, name, key, value)
               for key, value in sorted(values.items()) if existing.get(key) != value]
        out += [r.config_record(resource_type, name, key, None)
                for key in sorted(existing) if key not in values]
        return out
