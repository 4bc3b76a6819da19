"""FindCoordinator (key 10), v0-6: which broker coordinates a group or a transactional id.

Kafka's coordinator of a key is the leader of its partition of `__consumer_offsets` (key type 0,
a group) or `__transaction_state` (key type 1, a transactional id). This broker leads every
partition, so the answer is always this broker, at the address of the listener the request came
in on. Key type 2 (KIP-932 share groups) and any other are INVALID_REQUEST.

v0-3 ask for one key (v0 only for groups; the answer has an error message from v1); v4+ ask for
a batch, `coordinator_keys`, and get one entry per key (KIP-699). Kafka 4.x still serves v0
(KAFKA-18270 took it off KIP-896's removal list), and librdkafka before 2.x's newest releases
enables consumer groups and lz4 only when the broker offers FindCoordinator v0.
Kafka answers COORDINATOR_NOT_AVAILABLE while it creates the internal topic; here the topic is
created with the first record written to it, so a coordinator is always available.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

GROUP, TRANSACTION = 0, 1

Response = response_class(ApiKey.FIND_COORDINATOR)
Coordinator = Response.Coordinator


async def handle(broker, request, ctx):
    host, port = broker.advertised_address(ctx.connection.listener)
    node, error, message = broker.node_id, ErrorCode.NONE, None
    if request.key_type not in (GROUP, TRANSACTION):
        node, host, port = -1, "", -1
        error, message = ErrorCode.INVALID_REQUEST, f"Unknown coordinator type {request.key_type}"
    if ctx.api_version < 4:
        return Response(throttle_time_ms=0, error_code=error, error_message=message,
                        node_id=node, host=host, port=port)
    return Response(throttle_time_ms=0, coordinators=[
        Coordinator(key=key, node_id=node, host=host, port=port, error_code=error,
                    error_message=message)
        for key in request.coordinator_keys])
