"""DeleteTopics (key 20), v1-6: delete topics by name or, from v6, by topic id.

Unknown names are UNKNOWN_TOPIC_OR_PARTITION, unknown ids UNKNOWN_TOPIC_ID; a v6 entry naming both
a name and an id is INVALID_REQUEST; internal topics cannot be deleted (TOPIC_AUTHORIZATION_FAILED
is what Kafka answers without the right to them; here INVALID_REQUEST with a message), and with
`delete.topic.enable=false` every deletion is TOPIC_DELETION_DISABLED. The log directories are
renamed `<topic>-<partition>.<id>-delete` and removed, as Kafka does. Version 0 was removed in 4.0.

A client with a `controller_mutation_rate` quota (KIP-599, security/quotas.py) spends a deleted
topic's partition count; from v5 a topic that arrives while the quota is exhausted is
THROTTLING_QUOTA_EXCEEDED (and kept), before v5 it is deleted and the client throttled.
In a cluster the controller spends it: the broker forwards the request in an Envelope that
names the client (apis/envelope.py).
"""

from trioka.log.topics import INTERNAL_TOPICS
from trioka.security.quotas import mutation_quota, mutation_throttle
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class
from trioka.wire.types import ZERO_UUID

Response = response_class(ApiKey.DELETE_TOPICS)
Result = Response.DeletableTopicResult

STRICT_QUOTA_FROM = 5   # the first version that can carry THROTTLING_QUOTA_EXCEEDED


async def delete(broker, name: str | None, topic_id, quota=None) -> object:
    try:
        if name is not None and topic_id not in (None, ZERO_UUID):
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "A topic may be named by its name or by its id, not both")
        if name is None:
            topic = broker.topic_by_id(topic_id)
            if topic is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID, f"Topic id {topic_id} is unknown")
        else:
            topic = broker.topic(name)
            if topic is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 "This server does not host this topic-partition.")
        if not broker.config.delete_topic_enable:
            raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED,
                             "Topic deletion is disabled.")
        if topic.name in INTERNAL_TOPICS:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Internal topic {topic.name} cannot be deleted")
        if quota is not None:
            quota.record(topic.num_partitions)   # THROTTLING_QUOTA_EXCEEDED: strict, exhausted
        await broker.delete_topic_async(topic.name)
    except KafkaError as e:
        return Result(name=name, topic_id=topic_id or ZERO_UUID, error_code=e.code,
                      error_message=e.message)
    return Result(name=topic.name, topic_id=topic.topic_id, error_code=0)


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        # A node of a cluster forwards it to the controller, as KRaft brokers do.
        return await broker.cluster.delete_topics(request, ctx.api_version, ctx)
    quota = mutation_quota(broker, ctx, STRICT_QUOTA_FROM)
    if ctx.api_version >= 6:
        results = [await delete(broker, t.name, t.topic_id, quota) for t in request.topics]
    else:
        results = [await delete(broker, name, None, quota) for name in request.topic_names]
    return Response(throttle_time_ms=mutation_throttle(broker, ctx, quota), responses=results)
