"""IncrementalAlterConfigs (key 44), v0-1: change single configs of a topic or broker (KIP-339).

Each entry is an operation on one key: SET (0) gives it a value, DELETE (1) removes the override
so the default applies again, APPEND (2) and SUBTRACT (3) add or remove items of a list config
(`cleanup.policy`), starting from its current value. APPEND or SUBTRACT on a key that is not a list
is INVALID_CONFIG, an unknown operation or a key named twice INVALID_REQUEST. The result is then
checked as a whole and applied as AlterConfigs applies it (see alter_configs.py), persisted.
"""

from trioka.apis import alter_configs
from trioka.apis.describe_configs import BROKER, TOPIC
from trioka.config import LIST_KEYS
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3

Response = response_class(ApiKey.INCREMENTAL_ALTER_CONFIGS)


def current(broker, resource) -> tuple[dict, dict]:
    """(overrides now set, effective values) of a resource, as strings."""
    if resource.resource_type == TOPIC:
        topic = broker.topic(resource.resource_name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"Topic {resource.resource_name} does not exist")
        return dict(topic.configs), topic.config.to_configs()
    if resource.resource_type == BROKER:
        overrides = broker.broker_configs(resource.resource_name)
        effective = {k: str(broker.config.get(k)) for k in overrides}
        return overrides, effective
    raise KafkaError(ErrorCode.INVALID_REQUEST,
                     f"Unsupported resource type {resource.resource_type}")


def new_set(broker, resource) -> dict:
    overrides, effective = current(broker, resource)
    names = [c.name for c in resource.configs]
    if len(set(names)) != len(names):
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
    for c in resource.configs:
        op = c.config_operation
        if op == SET:
            overrides[c.name] = c.value
        elif op == DELETE:
            overrides.pop(c.name, None)
        elif op in (APPEND, SUBTRACT):
            if c.name not in LIST_KEYS:
                verb = "append" if op == APPEND else "subtract"
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Config value {verb} is not allowed for config key {c.name} "
                                 "since its type is not LIST")
            base = overrides.get(c.name, effective.get(c.name, "")) or ""
            items = [x.strip() for x in base.split(",") if x.strip()]
            given = [x.strip() for x in (c.value or "").split(",") if x.strip()]
            if op == APPEND:
                items += [x for x in given if x not in items]
            else:
                items = [x for x in items if x not in given]
            overrides[c.name] = ",".join(items)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown config operation {op}")
    return overrides


async def handle(broker, request, ctx):
    results = []
    for r in request.resources:
        try:
            values = new_set(broker, r)
            alter_configs.apply(broker, r.resource_type, r.resource_name, values,
                                request.validate_only)
        except KafkaError as e:
            results.append(alter_configs.result(r, e))
            continue
        results.append(alter_configs.result(r))
    return Response(throttle_time_ms=0, responses=results)
