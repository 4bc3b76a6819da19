"""CreatePartitions (key 37), v0-3: raise a topic's partition count.

The new count must be larger than the current one (INVALID_PARTITIONS otherwise); unknown topics are
UNKNOWN_TOPIC_OR_PARTITION; manual assignments must name this broker alone, one list per new
partition (INVALID_REPLICA_ASSIGNMENT); a topic named twice is INVALID_REQUEST. `validate_only`
checks without changing anything. More new partitions in one request than Kafka's controller
writes records for one operation (MAX_RECORDS_PER_USER_OP) fail the whole request with
POLICY_VIOLATION, as in Kafka. The new partitions' dirs and files are made in a worker thread
(broker.create_partitions_async), so that growing a topic by thousands of partitions does not
stall the event loop; the answer comes once they exist.

A client with a `controller_mutation_rate` quota (KIP-599, security/quotas.py) spends the
partitions a topic gains once its checks pass; from v3 a topic that arrives while the quota is
exhausted is THROTTLING_QUOTA_EXCEEDED, before v3 it grows and the client is throttled.
In a cluster the controller spends it: the broker forwards the request in an Envelope that
names the client (apis/envelope.py).
"""

import collections

from trioka.apis.create_topics import EXCESSIVE_BATCH_MESSAGE, MAX_RECORDS_PER_USER_OP
from trioka.security.quotas import mutation_quota, mutation_throttle
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.CREATE_PARTITIONS)
Result = Response.CreatePartitionsTopicResult

STRICT_QUOTA_FROM = 3   # the first version that can carry THROTTLING_QUOTA_EXCEEDED


async def grow(broker, t, validate_only: bool, duplicated: bool, quota=None) -> object:
    try:
        if duplicated:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Duplicate topic in the request: {t.name}")
        topic = broker.topic(t.name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"The topic '{t.name}' does not exist.")
        current = topic.num_partitions
        if t.count < current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic currently has {current} partitions, which is higher than "
                             f"the requested {t.count}.")
        if t.count == current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic already has {current} partitions.")
        if t.assignments is not None:
            if len(t.assignments) != t.count - current:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"Increasing the number of partitions by {t.count - current} "
                                 f"but {len(t.assignments)} assignments provided.")
            for a in t.assignments:
                if a.broker_ids != [broker.node_id]:
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                     f"Replica assignment {a.broker_ids} names brokers other "
                                     f"than {broker.node_id}")
        if quota is not None:
            quota.record(t.count - current)   # THROTTLING_QUOTA_EXCEEDED: strict, exhausted
        if not validate_only:
            # The new partitions' dirs are made in a worker thread (about 3 ms each).
            await broker.create_partitions_async(t.name, t.count)
    except KafkaError as e:
        return Result(name=t.name, error_code=e.code, error_message=e.message)
    return Result(name=t.name, error_code=0, error_message=None)


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        # A node of a cluster forwards it to the controller, as KRaft brokers do.
        return await broker.cluster.create_partitions(request, ctx.api_version, ctx)
    counts = collections.Counter(t.name for t in request.topics)
    new_partitions = 0
    for t in request.topics:
        topic = broker.topic(t.name) if counts[t.name] == 1 else None
        if topic is not None and t.count > topic.num_partitions:
            new_partitions += t.count - topic.num_partitions
    if new_partitions > MAX_RECORDS_PER_USER_OP:
        return Response(throttle_time_ms=0, results=[
            Result(name=t.name, error_code=ErrorCode.POLICY_VIOLATION,
                   error_message=EXCESSIVE_BATCH_MESSAGE) for t in request.topics])
    quota = mutation_quota(broker, ctx, STRICT_QUOTA_FROM)
    results = [await grow(broker, t, request.validate_only, counts[t.name] > 1, quota)
               for t in request.topics]
    return Response(throttle_time_ms=mutation_throttle(broker, ctx, quota), results=results)
