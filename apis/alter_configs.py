"""AlterConfigs (key 33), v0-2: replace the whole config set of a topic or broker.

Unlike IncrementalAlterConfigs, the request is the complete new set: keys it leaves out go back to
their defaults. Topics: unknown keys or bad values are INVALID_CONFIG, unknown topics
UNKNOWN_TOPIC_OR_PARTITION. Groups (type 32): the group configs of KIP-848
(coordinator/group_config.py). Brokers (the resource name is this broker's id, or "" for the
cluster-wide default): only the defaults of topic configs can change at runtime (Kafka's dynamic
broker configs); other keys are INVALID_REQUEST ("Cannot update these configs dynamically").
Changes are persisted and survive restarts. `validate_only` checks without changing anything.

In a cluster the request goes to the controller, as KRaft brokers forward it: the controller
checks each resource as above (controller/configuration_control.py) and writes ConfigRecords, and
this broker answers once its metadata image holds the new configs, so a DescribeConfigs right after
sees them. A broker resource naming another broker is refused here first (INVALID_REQUEST
"Unexpected broker id"), as Kafka's broker does before forwarding; a broker resource's configs then
reach every node through the metadata (their dynamic layers, the defaults of their topics).
"""

from trioka.apis.describe_configs import BROKER, GROUP, TOPIC
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
    elif resource_type == GROUP:
        broker.set_group_configs(name, values, validate_only)
    else:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource_type}")


def result(resource, error: KafkaError | None = None, Result=Result) -> object:
    return Result(error_code=error.code if error else 0,
                  error_message=error.message if error else None,
                  resource_type=resource.resource_type, resource_name=resource.resource_name)


async def forwarded(broker, request, api_key: int, expected_of, version: int | None = None):
    """The request in a cluster: broker resources naming another broker are answered here, the
    others forwarded to the controller; answered once this node's image holds what
    `expected_of(broker, resource)` ({config name: value or None}) says of each resource
    altered."""
    refused: dict[int, KafkaError] = {}
    sent = []
    expected = {}
    for i, resource in enumerate(request.resources):
        try:
            if resource.resource_type == BROKER:
                broker.check_broker_configs(resource.resource_name, {})
        except KafkaError as e:
            refused[i] = e
            continue
        sent.append(resource)
        try:
            expected[resource.resource_type, resource.resource_name] = \
                expected_of(broker, resource)
        except KafkaError:
            pass    # the controller answers it (this node's image may be behind)
    answers = iter([])
    if sent:
        response = await broker.cluster.alter_configs(
            api_key, type(request)(resources=sent, validate_only=request.validate_only),
            expected, version)
        answers = iter(response.responses)
    Answer = response_class(api_key)
    results = [result(resource, refused[i], Answer.AlterConfigsResourceResponse)
               if i in refused else next(answers)
               for i, resource in enumerate(request.resources)]
    return Answer(throttle_time_ms=0, responses=results)


def expected_configs(broker, resource) -> dict:
    """What the image holds of a resource once AlterConfigs has replaced its configs."""
    image = broker.cluster.image
    have = image.topic_configs(resource.resource_name) if resource.resource_type == TOPIC \
        else image.group_configs(resource.resource_name) if resource.resource_type == GROUP \
        else image.broker_configs(resource.resource_name)
    out = {k: None for k in have}
    out.update({c.name: c.value for c in resource.configs})
    return out


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        return await forwarded(broker, request, ApiKey.ALTER_CONFIGS, expected_configs,
                               ctx.api_version)
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
