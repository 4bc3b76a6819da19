"""IncrementalAlterConfigs (key 44), v0-1: change single configs of a topic, broker or group
(KIP-339; group configs, KIP-848: coordinator/group_config.py).

Each entry is an operation on one key: SET (0) gives it a value, DELETE (1) removes the override
so the default applies again, APPEND (2) and SUBTRACT (3) add or remove items of a list config
(`cleanup.policy`), starting from its current value. APPEND or SUBTRACT on a key that is not a list
is INVALID_CONFIG, an unknown operation or a key named twice INVALID_REQUEST. The result is then
checked as a whole and applied as AlterConfigs applies it (see alter_configs.py), persisted.

In a cluster the request is forwarded to the controller, which applies the same operations to the
configs in the metadata (controller/configuration_control.py, Kafka's
ConfigurationControlManager) and writes ConfigRecords; the answer comes once this node's image
holds the result (alter_configs.forwarded).
"""

from trioka.apis import alter_configs
from trioka.apis.describe_configs import BROKER, GROUP, TOPIC, topic_configs
from trioka.coordinator import group_config
from trioka.controller.configuration_control import apply_operations
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.INCREMENTAL_ALTER_CONFIGS)


def current(broker, resource) -> tuple[dict, dict]:
    """(overrides now set, effective values) of a resource, as strings."""
    if resource.resource_type == TOPIC:
        overrides, config = topic_configs(broker, resource.resource_name)
        return dict(overrides), config.to_configs()
    if resource.resource_type == BROKER:
        overrides = broker.broker_configs(resource.resource_name)
        effective = {k: str(broker.config.get(k)) for k in overrides}
        return overrides, effective
    if resource.resource_type == GROUP:
        group_config.check_group_name(resource.resource_name)
        overrides = dict(broker.group_configs(resource.resource_name))
        return overrides, group_config.effective(broker.config, overrides)
    raise KafkaError(ErrorCode.INVALID_REQUEST,
                     f"Unsupported resource type {resource.resource_type}")


def operations(resource) -> list:
    return [(c.name, c.config_operation, c.value) for c in resource.configs]


def new_set(broker, resource) -> dict:
    overrides, effective = current(broker, resource)
    return apply_operations(overrides, effective, operations(resource))


def expected_configs(broker, resource) -> dict:
    """What the image holds of the keys the operations touch once they are applied."""
    values = new_set(broker, resource)
    return {name: values.get(name) for name, _, _ in operations(resource)}


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        return await alter_configs.forwarded(broker, request, ApiKey.INCREMENTAL_ALTER_CONFIGS,
                                             expected_configs, ctx.api_version)
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
