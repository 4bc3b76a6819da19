"""AlterConfigs (key 33), v0-2: replace the whole config set of a topic or broker.

Unlike IncrementalAlterConfigs, the request is the complete new set: keys it leaves out go back to
their defaults. Topics: unknown keys or bad values are INVALID_CONFIG, unknown topics
UNKNOWN_TOPIC_OR_PARTITION. Brokers (the resource name is this broker's id, or "" for the
cluster-wide default): only the defaults of topic configs can change at runtime (Kafka's dynamic
broker configs); other keys are INVALID_REQUEST ("Cannot update these configs dynamically").
Changes are persisted and survive restarts. `validate_only` checks without changing anything.
"""

from trioka.apis.describe_configs import BROKER, TOPIC
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ALTER_CONFIGS)
Result = Response.AlterConfigsResourceResponse


def apply(broker, resource_type: int, name: str, values: dict, validate_only: bool) -> None:
    if resource_type == TOPIC:
        broker.set_topic_configs(name, values, validate_only)
    elif resource_type == BROKER:
        broker.set_broker_configs(name, values, validate_only)
    else:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource_type}")


def result(resource, error: KafkaError | None = None) -> object:
    return Result(error_code=error.code if error else 0,
                  error_message=error.message if error else None,
                  resource_type=resource.resource_type, resource_name=resource.resource_name)


async def handle(broker, request, ctx):
    results = []
    for r in request.resources:
        try:
            names = [c.name for c in r.configs]
            if len(set(names)) != len(names):
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 "Error due to duplicate config keys")
            apply(broker, r.resource_type, r.resource_name,
                  {c.name: c.value for c in r.configs}, request.validate_only)
        except KafkaError as e:
            results.append(result(r, e))
            continue
        results.append(result(r))
    return Response(throttle_time_ms=0, responses=results)
