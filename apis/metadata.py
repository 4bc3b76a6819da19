"""Metadata (key 3), v0-13: brokers, cluster id, controller, topics and their partitions.

A single broker is the whole cluster: every partition's leader, sole replica and ISR, and the
controller. A node of a cluster answers from its metadata image (node/cluster_link.py): the live
(unfenced) brokers at their address on the connection's listener, each partition's leader,
leader epoch, replicas, ISR and offline replicas (LEADER_NOT_AVAILABLE for a partition without
a leader), and a live broker as the controller id, as KRaft brokers tell clients. A broker's
address is the advertised listener of the connection's listener, so a broker bound to port 0
advertises the real port. In a cluster, auto-creation goes to the controller (CreateTopics).

Topics: v0 sends an empty array for "all topics", v1+ sends null. A requested topic that does not
exist is created when `auto.create.topics.enable` is true, the request allows it
(`allow_auto_topic_creation`, v4+; always allowed before) and it is not an all-topics request.
Kafka answers such a topic with LEADER_NOT_AVAILABLE because its controller creates topics
asynchronously; here creation is done when the call returns, so the answer describes the new
topic at once and clients skip a metadata retry (their first produce is faster). Otherwise UNKNOWN_TOPIC_OR_PARTITION, or INVALID_TOPIC_EXCEPTION for an
illegal name. v10+ carries topic ids; v12+ may ask by id (UNKNOWN_TOPIC_ID when unknown). v13 adds
a top-level error code (KIP-1102), always NONE here.

With an authorizer (security/authorizer.py) a topic needs DESCRIBE: an all-topics answer leaves
out the others, a topic asked for by name or id is TOPIC_AUTHORIZATION_FAILED, and auto-creating
one needs CREATE on the cluster or the topic. v8+ reports, when asked, each topic's authorized
operations (and, v8-10, the cluster's) as Kafka's bitfield (1 << operation code): the operations
the principal is allowed, or every operation the resource type supports without an authorizer.
"""

import trio

from trioka.log.topics import INTERNAL_TOPICS
from trioka.security.acls import (CLUSTER, CLUSTER_NAME, CREATE, DESCRIBE, TOPIC,
                                  operations_bitfield)
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class
from trioka.wire.types import ZERO_UUID

Response = response_class(ApiKey.METADATA)
Topic = Response.MetadataResponseTopic
Partition = Topic.MetadataResponsePartition


def describe_topic(broker, name: str, listener=None) -> object:
    topic = broker.topic(name)
    partitions = [
        Partition(error_code=0 if p.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                  partition_index=p.index, leader_id=p.leader, leader_epoch=p.leader_epoch,
                  replica_nodes=p.replicas, isr_nodes=p.isr, offline_replicas=p.offline)
        for p in broker.partitions_view(name, listener)]
    return Topic(error_code=0, name=topic.name, topic_id=topic.topic_id,
                 is_internal=topic.name in INTERNAL_TOPICS, partitions=partitions)


# A Metadata answer of thousands of partitions (a client of 10,000) is described this many
# partitions at a time, with the event loop's other work served in between, and encoded in a
# worker thread (server.py): about 30 ms of the loop in one piece otherwise.
DESCRIBE_SLICE = 1000


class _Pacing:
    """Counts the partitions described; a checkpoint of the event loop every DESCRIBE_SLICE."""
    __slots__ = ("since", "total")

    def __init__(self):
        self.since = self.total = 0

    async def described(self, topic) -> None:
        n = len(topic.partitions or ())
        self.since += n
        self.total += n
        if self.since >= DESCRIBE_SLICE:
            self.since = 0
            await trio.lowlevel.checkpoint()


async def handle(broker, request, ctx):
    version = ctx.api_version
    listener = ctx.connection.listener
    brokers = [Response.MetadataResponseBroker(node_id=node, host=host, port=port, rack=rack)
               for node, host, port, rack in broker.brokers_view(listener)]
    wanted = request.topics
    pacing = _Pacing()
    authorizer = broker.authorizer
    # With an authorizer (KafkaApis): topics need DESCRIBE; an all-topics answer leaves the
    # others out, a topic asked for is TOPIC_AUTHORIZATION_FAILED; auto-creation needs CREATE
    # on the cluster or the topic.
    describable = authorizer.topic_check(ctx, DESCRIBE) if authorizer is not None else None
    if wanted is None or (version == 0 and not wanted):
        topics = []
        for name in broker.topic_names():
            if describable is not None and not describable(name):
                continue
            # A topic deleted while this answer was paced is left out, as it would be had the
            # request come a moment later.
            if broker.topic(name) is not None:
                topics.append(describe_topic(broker, name, listener))
                await pacing.described(topics[-1])
    else:
        allow = request.allow_auto_topic_creation if version >= 4 else True
        topics = []
        for t in wanted:
            name = t.name
            if name is None:
                # v12+: a topic asked for by id.
                found = broker.topic_by_id(t.topic_id) if t.topic_id != ZERO_UUID else None
                if found is None:
                    topics.append(Topic(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None,
                                        topic_id=t.topic_id))
                    continue
                name = found.name
            if describable is not None and not describable(name):
                topics.append(Topic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                                    name=t.name, topic_id=t.topic_id if t.name is None
                                    else ZERO_UUID))
                continue
            if broker.topic(name) is not None:
                topics.append(describe_topic(broker, name, listener))
                await pacing.described(topics[-1])
                continue
            code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            try:
                broker.validate_topic_name(name)
                if allow and broker.config.auto_create_topics_enable:
                    if authorizer is not None and not (
                            authorizer.allowed(ctx, CREATE, CLUSTER, CLUSTER_NAME)
                            or authorizer.allowed(ctx, CREATE, TOPIC, name)):
                        raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                    await broker.create_topic_async(name)
                    topics.append(describe_topic(broker, name, listener))
                    continue
            except KafkaError as e:
                code = e.code
            topics.append(Topic(error_code=code, name=name, topic_id=ZERO_UUID))
    ctx.large_response = pacing.total > DESCRIBE_SLICE
    response = Response(throttle_time_ms=0, brokers=brokers, cluster_id=broker.cluster_id,
                        controller_id=broker.controller_id_for_clients, topics=topics,
                        error_code=0)
    # v8+: the operations the client may do on each topic (and, v8-10, on the cluster), as
    # bits 1 << operation code: every operation the resource supports without an authorizer.
    if version >= 8 and request.include_topic_authorized_operations:
        for t in topics:
            if t.error_code == 0:
                t.topic_authorized_operations = authorized_operations(broker, ctx, TOPIC, t.name)
    if 8 <= version <= 10 and request.include_cluster_authorized_operations:
        response.cluster_authorized_operations = authorized_operations(broker, ctx, CLUSTER,
                                                                       CLUSTER_NAME)
    return response


def authorized_operations(broker, ctx, resource_type: int, name: str) -> int:
    """KafkaApis' authorizedOperations: the resource type's supported operations the client is
    allowed, all of them when there is no authorizer."""
    if broker.authorizer is None:
        return operations_bitfield(resource_type)
    return broker.authorizer.operations(ctx, resource_type, name)
