"""Envelope forwarding (apis/envelope.py) without sockets: the principal and address codecs, and a
client's CreateTopics wrapped by a broker, served by a real QuorumController as the client's own
(its controller_mutation_rate spent, its correlation id answered), then unwrapped."""

import pytest

from tests.test_quorum_controller import new_controller, start_brokers
from trioka.apis import CONTROLLER_APIS, envelope
from trioka.apis.context import Connection, RequestContext
from trioka.clock import ManualClock
from trioka.metadata import records as r
from trioka.security import quotas as q
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import RequestHeader, request_class

CreateTopics = request_class(ApiKey.CREATE_TOPICS)


class Listener:
    name = "CONTROLLER"
    security_protocol = "PLAINTEXT"


class Node:
    """What the Envelope handler and the controller's rows use of a node."""

    def __init__(self, controller):
        self.controller = controller
        self.network_clock = ManualClock()
        self.authorizer = None


def client_ctx(api_key: int, version: int, client_id: str, principal: str,
               peer: str = "10.1.2.3:50000", correlation_id: int = 7) -> RequestContext:
    conn = Connection(peer, Listener())
    conn.principal = principal
    return RequestContext(RequestHeader(api_key, version, correlation_id, client_id), conn)


def node_ctx() -> RequestContext:
    return client_ctx(ApiKey.ENVELOPE, 0, "trioka-node-2-forwarding", "User:ANONYMOUS",
                      peer="127.0.0.1:40000")


def create_topics(*topics: tuple[str, int]):
    return CreateTopics(topics=[CreateTopics.CreatableTopic(
        name=name, num_partitions=n, replication_factor=1, assignments=[], configs=[])
        for name, n in topics], timeout_ms=30000, validate_only=False)


@pytest.mark.parametrize("principal", ["User:alice", "User:ANONYMOUS", "User:ünïcode",
                                       "Group:ops:with:colons"])
def test_the_principal_round_trips_as_default_principal_data(principal):
    data = envelope.serialize_principal(principal)
    assert data[:2] == b"\x00\x00"          # version 0, then the flexible struct
    assert envelope.deserialize_principal(data) == principal


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x01\x05User\x06alice\x00\x00",
                                  b"\x00\x00\x05User", b"\x00\x00\x05User\x06alice"])
def test_a_principal_that_does_not_parse_is_an_invalid_request(data):
    with pytest.raises(KafkaError) as e:
        envelope.deserialize_principal(data)
    assert e.value.code == ErrorCode.INVALID_REQUEST


def test_the_client_address_is_4_or_16_bytes():
    assert envelope.address_bytes("10.1.2.3:5") == bytes([10, 1, 2, 3])
    assert len(envelope.address_bytes("[::1]:5")) == 16
    assert envelope.peer_of(bytes([10, 1, 2, 3])) == "10.1.2.3:0"
    assert envelope.peer_of(envelope.address_bytes("[::1]:5")) == "[::1]:0"
    with pytest.raises(KafkaError) as e:
        envelope.peer_of(b"\x01\x02")
    assert e.value.code == ErrorCode.INVALID_REQUEST


async def test_a_forwarded_create_topics_is_the_clients_own():
    controller = new_controller(None)
    await start_brokers(controller, 1)
    node = Node(controller)
    # The client "app" may create 1 partition a second: a bucket of 11 tokens (Kafka's
    # defaults, 11 one-second windows).
    await controller.write_and_commit([r.client_quota_record(
        (("client-id", "app"),), q.CONTROLLER_MUTATION_RATE, 1.0, False)])
    ctx = client_ctx(ApiKey.CREATE_TOPICS, 7, "app", "User:alice", correlation_id=41)
    wrapped = envelope.wrap(ApiKey.CREATE_TOPICS, 7, create_topics(("a", 11), ("b", 1)), ctx,
                            correlation_id=41)
    assert envelope.deserialize_principal(wrapped.request_principal) == "User:alice"
    assert wrapped.client_host_address == bytes([10, 1, 2, 3])
    answer = await CONTROLLER_APIS[ApiKey.ENVELOPE].handle(node, wrapped, node_ctx())
    assert answer.error_code == ErrorCode.NONE
    # The inner response carries the client's correlation id.
    correlation_id, _ = protocol.decode_response(ApiKey.CREATE_TOPICS, 7,
                                                 bytes(answer.response_data))
    assert correlation_id == 41
    response = envelope.unwrap(ApiKey.CREATE_TOPICS, 7, None, answer)
    # "a" takes the bucket to zero, "b" is let in at zero (strict: only below zero refuses).
    assert [(t.name, t.error_code) for t in response.topics] == [("a", 0), ("b", 0)]
    assert controller.image.topic("a") is not None and controller.image.topic("b") is not None
    wrapped = envelope.wrap(ApiKey.CREATE_TOPICS, 7, create_topics(("c", 1)), ctx, 42)
    response = envelope.unwrap(ApiKey.CREATE_TOPICS, 7, None, await CONTROLLER_APIS[
        ApiKey.ENVELOPE].handle(node, wrapped, node_ctx()))
    assert [(t.name, t.error_code, t.error_message) for t in response.topics] == [
        ("c", ErrorCode.THROTTLING_QUOTA_EXCEEDED, q.THROTTLING_QUOTA_EXCEEDED_MESSAGE)]
    assert response.throttle_time_ms > 0
    # Another client of the same node is not limited: the quota is the client's, not the
    # node's that forwarded.
    other = client_ctx(ApiKey.CREATE_TOPICS, 7, "other", "User:bob")
    wrapped = envelope.wrap(ApiKey.CREATE_TOPICS, 7, create_topics(("d", 20)), other, 43)
    response = envelope.unwrap(ApiKey.CREATE_TOPICS, 7, None, await CONTROLLER_APIS[
        ApiKey.ENVELOPE].handle(node, wrapped, node_ctx()))
    assert [(t.name, t.error_code) for t in response.topics] == [("d", 0)]
    assert response.throttle_time_ms == 0


async def test_only_forwardable_requests_are_served_from_an_envelope():
    controller = new_controller(None)
    node = Node(controller)
    Metadata = request_class(ApiKey.METADATA)
    ctx = client_ctx(ApiKey.METADATA, 12, "app", "User:alice")
    wrapped = envelope.wrap(ApiKey.METADATA, 12, Metadata(
        topics=None, allow_auto_topic_creation=False,
        include_topic_authorized_operations=False), ctx, 1)
    answer = await CONTROLLER_APIS[ApiKey.ENVELOPE].handle(node, wrapped, node_ctx())
    assert answer.error_code == ErrorCode.INVALID_REQUEST and answer.response_data is None
    # Garbage where the request should be, and an address of 3 bytes.
    Envelope = request_class(ApiKey.ENVELOPE)
    for bad in (Envelope(request_data=b"\x00\x13", request_principal=wrapped.request_principal,
                         client_host_address=b"\x7f\x00\x00\x01"),
                Envelope(request_data=wrapped.request_data,
                         request_principal=wrapped.request_principal,
                         client_host_address=b"\x7f\x00\x00")):
        answer = await CONTROLLER_APIS[ApiKey.ENVELOPE].handle(node, bad, node_ctx())
        assert answer.error_code == ErrorCode.INVALID_REQUEST


def test_a_failed_envelope_is_an_unknown_server_error_for_the_client():
    Response = protocol.response_class(ApiKey.ENVELOPE)
    request = create_topics(("a", 1), ("b", 2))
    response = envelope.unwrap(ApiKey.CREATE_TOPICS, 7, request, Response(
        response_data=None, error_code=ErrorCode.INVALID_REQUEST))
    assert [(t.name, t.error_code) for t in response.topics] == [
        ("a", ErrorCode.UNKNOWN_SERVER_ERROR), ("b", ErrorCode.UNKNOWN_SERVER_ERROR)]


async def test_mangled_envelopes_are_answered_not_raised():
    """Byte flips and cuts anywhere in a forwarded request, its principal or its address: the
    controller answers every one with an envelope (INVALID_REQUEST, or the inner API's own
    answer when the damage still decodes); nothing escapes the handler."""
    import random
    controller = new_controller(None)
    await start_brokers(controller, 1)
    node = Node(controller)
    handle = CONTROLLER_APIS[ApiKey.ENVELOPE].handle
    Envelope = request_class(ApiKey.ENVELOPE)
    good = envelope.wrap(ApiKey.CREATE_TOPICS, 7, create_topics(("m", 1)),
                         client_ctx(ApiKey.CREATE_TOPICS, 7, "app", "User:alice"), 1)
    rng = random.Random(4242)
    fields = ("request_data", "request_principal", "client_host_address")
    for _ in range(600):
        parts = {f: bytearray(getattr(good, f)) for f in fields}
        target = parts[rng.choice(fields)]
        if target and rng.random() < 0.3:
            del target[rng.randrange(len(target)):]
        for _ in range(rng.randint(1, 4)):
            if target:
                target[rng.randrange(len(target))] = rng.randrange(256)
        answer = await handle(node, Envelope(**{f: bytes(v) for f, v in parts.items()}),
                              node_ctx())
        assert answer.error_code in (ErrorCode.NONE, ErrorCode.INVALID_REQUEST)
        assert (answer.response_data is None) == (answer.error_code != ErrorCode.NONE)
