"""FindCoordinator (key 10), v0-6: which broker coordinates a group or a transactional id.

Kafka's coordinator of a key is the leader of its partition of `__consumer_offsets` (key type 0,
a group) or `__transaction_state` (key type 1, a transactional id), the partition being
`abs(hashCode(key)) % partitions`. A single broker leads every partition, so the answer is always
this broker, at the address of the listener the request came in on. There the first
FindCoordinator that needs the internal topic creates it, its partition dirs made in a worker
thread, and waits for that (up to INTERNAL_TOPIC_WAIT_S) before it answers, so a coordinator is
always available (and should the creation fail, the first record written makes the topic).

On a node of a cluster the answer is the partition's leader in the metadata image, at its address
on the listener the request came in on. The internal topic is created through the controller by
the first FindCoordinator that needs it (`offsets.topic.num.partitions` /
`offsets.topic.replication.factor`, `transaction.state.log.num.partitions` /
`transaction.state.log.replication.factor`, compacted); until it exists and the partition has a
live leader the answer is COORDINATOR_NOT_AVAILABLE, and the client asks again.

Key type 2 (KIP-932 share groups) and any other are INVALID_REQUEST.

v0-3 ask for one key (v0 only for groups; the answer has an error message from v1); v4+ ask for
a batch, `coordinator_keys`, and get one entry per key (KIP-699). Kafka 4.x still serves v0
(KAFKA-18270 took it off KIP-896's removal list), and librdkafka before 2.x's newest releases
enables consumer groups and lz4 only when the broker offers FindCoordinator v0.

With an authorizer (KafkaApis.getCoordinator) a group key needs DESCRIBE on the group, a
transactional id DESCRIBE on the id: v0-3 are refused as a whole (security/authorizer.py); in a
v4+ batch each key is answered on its own, a denied one GROUP_AUTHORIZATION_FAILED or
TRANSACTIONAL_ID_AUTHORIZATION_FAILED with no node (-1, "", -1), the others served.
"""

from trioka.coordinator.offsets import partition_for
from trioka.log.topics import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from trioka.security import acls
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

GROUP, TRANSACTION = 0, 1
# Key type -> (the ACL resource type a key is checked on (DESCRIBE), the error when denied).
KEY_RESOURCES = {GROUP: (acls.GROUP, ErrorCode.GROUP_AUTHORIZATION_FAILED),
                 TRANSACTION: (acls.TRANSACTIONAL_ID,
                               ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)}

Response = response_class(ApiKey.FIND_COORDINATOR)
Coordinator = Response.Coordinator

NOT_AVAILABLE = "The coordinator is not available."

# How long a single broker's FindCoordinator waits for the internal topic it creates.
INTERNAL_TOPIC_WAIT_S = 10.0


def _in_cluster(broker, key: str, key_type: int, listener) -> tuple:
    """(node id, host, port, error, message) of the key's coordinator on a node of a cluster."""
    if key_type == GROUP:
        name, coordinator = OFFSETS_TOPIC, broker.groups
    else:
        name, coordinator = TRANSACTION_STATE_TOPIC, broker.transactions
    unavailable = (-1, "", -1, ErrorCode.COORDINATOR_NOT_AVAILABLE, NOT_AVAILABLE)
    topic = broker.topic(name)
    if topic is None:
        coordinator.topic_creation.request()
        return unavailable
    partitions = broker.partitions_view(name, listener)
    leader = partitions[partition_for(key, len(partitions))].leader
    for node_id, host, port, _ in broker.brokers_view(listener):
        if node_id == leader:
            return node_id, host, port, ErrorCode.NONE, None
    return unavailable


def _coordinator(broker, key: str, key_type: int, listener) -> tuple:
    if key_type not in (GROUP, TRANSACTION):
        return -1, "", -1, ErrorCode.INVALID_REQUEST, f"Unknown coordinator type {key_type}"
    if broker.cluster is not None:
        return _in_cluster(broker, key, key_type, listener)
    host, port = broker.advertised_address(listener)
    return broker.node_id, host, port, ErrorCode.NONE, None


async def _internal_topic_made(broker, key_type: int) -> None:
    """A single broker: the key type's internal topic exists once this returns (see the
    module's docstring), or its creation failed or took over INTERNAL_TOPIC_WAIT_S."""
    if broker.cluster is not None or key_type not in (GROUP, TRANSACTION):
        return
    name = OFFSETS_TOPIC if key_type == GROUP else TRANSACTION_STATE_TOPIC
    if broker.topic(name) is None:
        coordinator = broker.groups if key_type == GROUP else broker.transactions
        await coordinator.topic_creation.wait_created(INTERNAL_TOPIC_WAIT_S)


async def handle(broker, request, ctx):
    listener = ctx.connection.listener
    if ctx.api_version < 4:
        await _internal_topic_made(broker, request.key_type)
        node, host, port, error, message = _coordinator(broker, request.key, request.key_type,
                                                        listener)
        return Response(throttle_time_ms=0, error_code=error, error_message=message,
                        node_id=node, host=host, port=port)
    authorizer = broker.authorizer
    resource_type, denied = KEY_RESOURCES.get(request.key_type, (None, 0))
    coordinators = []
    for key in request.coordinator_keys:
        if authorizer is not None and resource_type is not None and \
                not authorizer.allowed(ctx, acls.DESCRIBE, resource_type, key):
            coordinators.append(Coordinator(key=key, node_id=-1, host="", port=-1,
                                            error_code=denied, error_message=None))
            continue
        await _internal_topic_made(broker, request.key_type)     # for an authorized key only
        node, host, port, error, message = _coordinator(broker, key, request.key_type, listener)
        coordinators.append(Coordinator(key=key, node_id=node, host=host, port=port,
                                        error_code=error, error_message=message))
    return Response(throttle_time_ms=0, coordinators=coordinators)
