"""CreateTopics (key 19), v2-7: create topics with partition counts and per-topic configs.

Per topic, in Kafka's order of checks: a name given twice in one request is INVALID_REQUEST; an
illegal name INVALID_TOPIC_EXCEPTION; an existing topic TOPIC_ALREADY_EXISTS; partitions 0 or below
-1 INVALID_PARTITIONS; a replication factor above the number of brokers (one) or 0 or below -1
INVALID_REPLICATION_FACTOR; manual assignments together with a partition count or a replication
factor INVALID_REQUEST, and naming a broker other than this one INVALID_REPLICA_ASSIGNMENT; an
unknown config key or a bad value INVALID_CONFIG. -1 means the broker default (`num.partitions`,
`default.replication.factor`). `validate_only` (v1+) runs every check and creates nothing.
v5+ answers with the partition count, replication factor and the topic's configs; v7+ with the
topic id. Versions 0-1 were removed in Kafka 4.0.

A client with a `controller_mutation_rate` quota (KIP-599, security/quotas.py) spends a topic's
partition count once its checks pass (validate_only too, as in Kafka); from v6 a topic that
arrives while the quota is exhausted is THROTTLING_QUOTA_EXCEEDED, before v6 it is created and
the client throttled. The response's throttle_time_ms says for how long.
In a cluster the controller spends it: the broker forwards the request in an Envelope that
names the client (apis/envelope.py).

One request may not make more than MAX_RECORDS_PER_USER_OP metadata records (a topic is one
record, plus one per partition and one per config): past that Kafka's controller refuses the
whole request with POLICY_VIOLATION, and so does this broker, so a small request cannot make it
create millions of partitions.
"""

import collections

from trioka.log.config import LogConfig
from trioka.security.quotas import mutation_quota, mutation_throttle
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class
from trioka.wire.types import ZERO_UUID

Response = response_class(ApiKey.CREATE_TOPICS)
Result = Response.CreatableTopicResult
ResultConfig = Result.CreatableTopicConfigs

# Kafka's QuorumController: the most records one user operation may generate, and the message of
# the PolicyViolationException a longer list becomes.
MAX_RECORDS_PER_USER_OP = 10_000
EXCESSIVE_BATCH_MESSAGE = "Unable to perform excessively large batch operation."

# The first version that can carry THROTTLING_QUOTA_EXCEEDED (KIP-599): strict quota from it.
STRICT_QUOTA_FROM = 6

# DescribeConfigs' config sources: a value set on the topic, or the broker's default.
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5


def check(broker, topic) -> tuple[int, dict]:
    """(partition count, configs) of a creatable topic, or KafkaError with Kafka's code."""
    broker.validate_topic_name(topic.name)
    if broker.topic(topic.name) is not None:
        raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{topic.name}' already exists.")
    n, rf = topic.num_partitions, topic.replication_factor
    if topic.assignments:
        if n != -1 or rf != -1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "Both numPartitions or replicationFactor and replicasAssignments "
                             "were set. Both cannot be used at the same time.")
        indexes = sorted(a.partition_index for a in topic.assignments)
        if indexes != list(range(len(indexes))):
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             "Partitions should be a consecutive 0-based integer sequence")
        for a in topic.assignments:
            if not a.broker_ids or set(a.broker_ids) != {broker.node_id} or len(a.broker_ids) != 1:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"Replica assignment {a.broker_ids} of partition "
                                 f"{a.partition_index} names brokers other than {broker.node_id}")
        n = len(indexes)
    else:
        if n == -1:
            n = broker.config.num_partitions
        if n <= 0:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             "Number of partitions was set to an invalid non-positive value.")
        if rf == -1:
            rf = broker.config.default_replication_factor
        if rf <= 0:
            raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                             "Replication factor must be larger than 0, or -1 to use the "
                             "default value.")
        if rf > 1:
            raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                             f"Unable to replicate the partition {rf} time(s): The target "
                             f"replication factor of {rf} cannot be reached because only 1 "
                             "broker(s) are registered.")
    configs = {}
    for c in topic.configs:
        if c.value is None:
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"Null value not supported for topic configs: {c.name}")
        configs[c.name] = c.value
    LogConfig.from_configs(configs)   # INVALID_CONFIG for an unknown key or a bad value
    return n, configs


def described_configs(broker, configs: dict) -> list:
    """Every topic config of the new topic with its value and where the value comes from."""
    effective = LogConfig.from_configs(configs, broker.topic_config_defaults()).to_configs()
    return [ResultConfig(name=key, value=value, read_only=False, is_sensitive=False,
                         config_source=DYNAMIC_TOPIC_CONFIG if key in configs else DEFAULT_CONFIG)
            for key, value in sorted(effective.items())]


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        # A node of a cluster forwards it to the controller, as KRaft brokers do.
        return await broker.cluster.create_topics(request, ctx.api_version, ctx)
    counts = collections.Counter(t.name for t in request.topics)
    checked: dict[int, tuple[int, dict] | KafkaError] = {}
    records = 0
    quota = mutation_quota(broker, ctx, STRICT_QUOTA_FROM)
    for i, t in enumerate(request.topics):
        try:
            if counts[t.name] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Create topics request from client contains a duplicate "
                                 f"topic: {t.name}")
            n, configs = check(broker, t)
            if quota is not None:
                quota.record(n)     # THROTTLING_QUOTA_EXCEEDED when strict and exhausted
            checked[i] = n, configs
            # The controller's records for this topic: TopicRecord, one PartitionRecord per
            # partition, one ConfigRecord per config.
            records += 1 + n + len(configs)
        except KafkaError as e:
            checked[i] = e
    if records > MAX_RECORDS_PER_USER_OP:
        # Kafka's controller builds every topic's records in one bounded list; past the bound
        # the whole request fails (BoundedListTooLongException -> PolicyViolationException).
        checked = dict.fromkeys(checked, KafkaError(ErrorCode.POLICY_VIOLATION,
                                                    EXCESSIVE_BATCH_MESSAGE))
    results = []
    for i, t in enumerate(request.topics):
        outcome = checked[i]
        try:
            if isinstance(outcome, KafkaError):
                raise outcome
            n, configs = outcome
            topic_id = ZERO_UUID
            if not request.validate_only:
                topic_id = (await broker.create_topic_async(t.name, n, configs)).topic_id
        except KafkaError as e:
            results.append(Result(name=t.name, topic_id=ZERO_UUID, error_code=e.code,
                                  error_message=e.message, num_partitions=-1,
                                  replication_factor=-1, configs=None))
            continue
        results.append(Result(name=t.name, topic_id=topic_id, error_code=0, error_message=None,
                              num_partitions=n, replication_factor=1,
                              configs=described_configs(broker, configs)))
    return Response(throttle_time_ms=mutation_throttle(broker, ctx, quota), topics=results)
