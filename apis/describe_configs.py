"""DescribeConfigs (key 32), v1-4: the configs of topics and of this broker, with their sources.

Resources: topics (type 2) and brokers (type 4; the name is this broker's node id, or "" for the
cluster-wide defaults). Each config comes with its value, whether it is read-only (broker keys
that AlterConfigs cannot change at runtime), whether it is sensitive (passwords and keys, Kafka's
PASSWORD type: shown with a null value), and its source:

| source                             | for a topic config                | for a broker config     |
|------------------------------------|-----------------------------------|-------------------------|
| TOPIC_CONFIG (1)                   | set on the topic                  |                         |
| DYNAMIC_BROKER_CONFIG (2)          | the broker default, set at runtime on this broker          ||
| DYNAMIC_DEFAULT_BROKER_CONFIG (3)  | the broker default, set at runtime cluster-wide            ||
| STATIC_BROKER_CONFIG (4)           | the broker default, from server.properties / env / flags  ||
| DEFAULT_CONFIG (5)                 | Kafka's default                                            ||

`include_synonyms` (v1+) lists every place the value could come from, in precedence order (the
topic key, then the broker key at each level); v3+ adds the config type and, on request, a line of
documentation. `configuration_keys` narrows the answer; null asks for everything. An unknown topic
is UNKNOWN_TOPIC_OR_PARTITION; another broker's id or an unknown resource type is INVALID_REQUEST.
Groups (type 32, KIP-848 group configs: coordinator/group_config.py) list the group's own
session timeout and heartbeat interval (source GROUP_CONFIG) or the broker settings they stand in
for; an empty group name is INVALID_REQUEST. Broker loggers (type 8) are not served. Version 0
was removed in Kafka 4.0.

A topic config's broker synonyms are Kafka's (ConfigHelper.createTopicConfigEntry): each layer's
value of the broker key and of the keys standing in for it (log.retention.ms, then
log.retention.hours; log.roll.ms, log.roll.hours; log.flush.interval.ms,
log.flush.scheduler.interval.ms), listed from the first naming the broker key itself. Keys with no
default in Kafka (log.retention.ms, log.roll.ms, log.roll.jitter.ms, log.flush.interval.ms) have
no DEFAULT_CONFIG synonym, so retention.ms shows no synonym at all until log.retention.ms is set.

In a cluster the answer comes from this node: topic overrides from its metadata image
(ConfigRecords the controller wrote), broker configs with the dynamic layers the metadata holds for
"" and for this node, so the sources and synonyms read as above.
"""

from trioka.config import is_sensitive
from trioka.config import (DYNAMIC_KEYS, KEYS, TOPIC_CONFIG_DOCS, TOPIC_CONFIGS, ConfigSource,
                           ConfigType, config_text, config_type)
from trioka.coordinator import group_config
from trioka.log.config import LogConfig
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

TOPIC, BROKER, BROKER_LOGGER, GROUP = 2, 4, 8, 32

Response = response_class(ApiKey.DESCRIBE_CONFIGS)
Result = Response.DescribeConfigsResult
Entry = Result.DescribeConfigsResourceResult
Synonym = Entry.DescribeConfigsSynonym


def topic_configs(broker, topic_name: str) -> tuple[dict, LogConfig]:
    """(overrides, effective config) of a topic. In a cluster the overrides are the metadata
    image's (ConfigRecords) and the defaults this node's, dynamic ones included."""
    topic = broker.topic(topic_name)
    if topic is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"Topic {topic_name} does not exist")
    if broker.cluster is not None:
        return topic.configs, LogConfig.from_configs(topic.configs,
                                                     broker.topic_config_defaults())
    return topic.configs, topic.config


# A topic config's broker key and the broker keys standing in for it, in Kafka's precedence order
# (DynamicBrokerConfig.brokerConfigSynonyms); every other broker key stands alone.
BROKER_SYNONYMS = {
    "log.retention.ms": ("log.retention.ms", "log.retention.hours"),
    "log.roll.ms": ("log.roll.ms", "log.roll.hours"),
    "log.flush.interval.ms": ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
}
# Broker keys that have no default in Kafka (null: the next synonym's value applies), so no
# DEFAULT_CONFIG synonym is ever reported for them.
NO_KAFKA_DEFAULT = frozenset({"log.retention.ms", "log.roll.ms", "log.roll.jitter.ms",
                              "log.flush.interval.ms"})
SYNONYM_LAYERS = (ConfigSource.DYNAMIC_BROKER_CONFIG, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
                  ConfigSource.STATIC_BROKER_CONFIG, ConfigSource.DEFAULT_CONFIG)


def broker_synonyms(config, broker_key: str) -> list:
    """(name, value, source) of the broker-level synonyms of a topic config whose broker key is
    `broker_key`, as Kafka's ConfigHelper lists them: layer by layer (dynamic per-broker,
    dynamic cluster default, static, Kafka's default), each synonym set in that layer in
    precedence order, then everything before the first entry naming `broker_key` itself dropped.
    So retention.ms shows no broker synonym until log.retention.ms is set somewhere (it has no
    default), however log.retention.hours is set; once it is, log.retention.hours follows."""
    names = BROKER_SYNONYMS.get(broker_key, (broker_key,))
    found = {name: dict(config.synonyms(name)) for name in names}
    out = [(name, config_text(found[name][source]), source)
           for source in SYNONYM_LAYERS for name in names
           if source in found[name]
           and not (source == ConfigSource.DEFAULT_CONFIG and name in NO_KAFKA_DEFAULT)]
    while out and out[0][0] != broker_key:
        out.pop(0)
    return out


def topic_config_entries(broker, topic_name: str, keys=None) -> list:
    """(name, value, source, synonyms) of every config of a topic."""
    overrides, config = topic_configs(broker, topic_name)
    effective = config.to_configs()
    out = []
    for key in sorted(effective):
        if keys is not None and key not in keys:
            continue
        synonyms = []
        if key in overrides:
            synonyms.append((key, overrides[key], ConfigSource.TOPIC_CONFIG))
        broker_key = TOPIC_CONFIGS.get(key, (None,))[0]
        if broker_key is not None:
            synonyms += broker_synonyms(broker.config, broker_key)
        else:
            synonyms.append((key, effective[key], ConfigSource.DEFAULT_CONFIG))
        source = synonyms[0][2] if synonyms else ConfigSource.DEFAULT_CONFIG
        typed = getattr(config, key.replace(".", "_"))
        out.append((key, effective[key], source, synonyms, False, typed))
    return out


def broker_config_entries(broker, resource_name: str, keys=None) -> list:
    if resource_name not in ("", str(broker.node_id)):
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"Unexpected broker id, expected {broker.node_id} or empty string, but "
                         f"received {resource_name}")
    cfg = broker.config
    out = []
    for key in sorted(KEYS):
        if keys is not None and key not in keys:
            continue
        layers = cfg.synonyms(key)
        if resource_name == "":
            # The cluster-wide default resource shows only what is set at that level.
            layers = [(s, v) for s, v in layers if s == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG]
            if not layers:
                continue
        source, value = layers[0]
        if is_sensitive(key):
            # A password or key (Kafka's PASSWORD type) is never shown: null, is_sensitive.
            synonyms = [(key, None, s) for s, _ in layers]
            out.append((key, None, source, synonyms, key not in DYNAMIC_KEYS, value))
            continue
        synonyms = [(key, config_text(v), s) for s, v in layers]
        out.append((key, config_text(value), source, synonyms, key not in DYNAMIC_KEYS, value))
    return out


def describe(broker, resource, version: int, include_synonyms: bool,
             include_documentation: bool) -> object:
    keys = set(resource.configuration_keys) if resource.configuration_keys is not None else None
    try:
        if resource.resource_type == TOPIC:
            entries = topic_config_entries(broker, resource.resource_name, keys)
        elif resource.resource_type == BROKER:
            entries = broker_config_entries(broker, resource.resource_name, keys)
        elif resource.resource_type == GROUP:
            group_config.check_group_name(resource.resource_name)
            entries = group_config.config_entries(
                broker.config, broker.group_configs(resource.resource_name), keys)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unsupported resource type {resource.resource_type}")
    except KafkaError as e:
        return Result(error_code=e.code, error_message=e.message,
                      resource_type=resource.resource_type,
                      resource_name=resource.resource_name, configs=[])
    configs = []
    for name, value, source, synonyms, read_only, typed in entries:
        configs.append(Entry(
            name=name, value=value, read_only=read_only,
            is_default=source == ConfigSource.DEFAULT_CONFIG, config_source=source,
            is_sensitive=is_sensitive(name),
            synonyms=[Synonym(name=n, value=v, source=s) for n, v, s in synonyms]
            if include_synonyms else [],
            # Group configs are all INT in Kafka's GroupConfig.
            config_type=(ConfigType.INT if resource.resource_type == GROUP
                         else config_type(name, typed)),
            documentation=(group_config.GROUP_CONFIGS[name][2]
                           if resource.resource_type == GROUP else TOPIC_CONFIG_DOCS.get(name))
            if include_documentation else None))
    return Result(error_code=0, error_message=None, resource_type=resource.resource_type,
                  resource_name=resource.resource_name, configs=configs)


async def handle(broker, request, ctx):
    results = [describe(broker, r, ctx.api_version, request.include_synonyms,
                        request.include_documentation) for r in request.resources]
    return Response(throttle_time_ms=0, results=results)
