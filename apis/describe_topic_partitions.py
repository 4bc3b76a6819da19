"""DescribeTopicPartitions (key 75), v0: topics and their partitions, page by page (KIP-966).

The admin clients of Kafka 3.8+ describe topics with this rather than Metadata when the broker
offers it. Topics come sorted by name (every topic when the request names none), each with its id,
internal flag and partitions (leader, leader epoch, replicas, ISR; eligible leader replicas are not
kept by a single broker: null). At most `response_partition_limit` partitions are returned
(capped at 2000, Kafka's `max.request.partition.size.limit`); when more remain, `next_cursor` names
the topic and partition to continue from, and a request with that `cursor` resumes there. A named
topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION; an illegal name INVALID_TOPIC_EXCEPTION.

With an authorizer (Kafka's DescribeTopicPartitionsRequestHandler) a topic needs DESCRIBE: an
all-topics answer leaves the others out; a named one is TOPIC_AUTHORIZATION_FAILED (zero id, no
partitions, after the described ones) whether or not it exists, so its existence is not told.
"""

from trioka.log.topics import INTERNAL_TOPICS
from trioka.security.acls import DESCRIBE
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError, ErrorCode
from trioka.wire.protocol import response_class
from trioka.wire.types import ZERO_UUID

MAX_PARTITIONS = 2000

Response = response_class(ApiKey.DESCRIBE_TOPIC_PARTITIONS)
Topic = Response.DescribeTopicPartitionsResponseTopic
Partition = Topic.DescribeTopicPartitionsResponsePartition
Cursor = Response.Cursor


async def handle(broker, request, ctx):
    names = sorted({t.name for t in request.topics}) if request.topics else broker.topic_names()
    limit = max(1, min(request.response_partition_limit, MAX_PARTITIONS))
    cursor = request.cursor
    if cursor is not None:
        names = [n for n in names if n >= cursor.topic_name]
    denied = []
    if broker.authorizer is not None:
        describable = broker.authorizer.topic_check(ctx, DESCRIBE)
        if request.topics:
            denied = [Topic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=n,
                            topic_id=ZERO_UUID) for n in names if not describable(n)]
        names = [n for n in names if describable(n)]
    topics, next_cursor = [], None
    for name in names:
        topic = broker.topic(name)
        if topic is None:
            code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            try:
                broker.validate_topic_name(name)
            except KafkaError as e:
                code = e.code
            topics.append(Topic(error_code=code, name=name, topic_id=ZERO_UUID))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        if limit == 0:
            next_cursor = Cursor(topic_name=name, partition_index=first)
            break
        last = min(topic.num_partitions, first + limit)
        partitions = [Partition(error_code=0, partition_index=p.index, leader_id=p.leader,
                                leader_epoch=p.leader_epoch, replica_nodes=p.replicas,
                                isr_nodes=p.isr, offline_replicas=p.offline)
                      for p in broker.partitions_view(name, ctx.connection.listener)[first:last]]
        limit -= len(partitions)
        topics.append(Topic(error_code=0, name=name, topic_id=topic.topic_id,
                            is_internal=name in INTERNAL_TOPICS, partitions=partitions))
        if last < topic.num_partitions:
            next_cursor = Cursor(topic_name=name, partition_index=last)
            break
    return Response(throttle_time_ms=0, topics=topics + denied, next_cursor=next_cursor)
