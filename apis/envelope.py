"""Envelope (key 58), v0, on the controller listener: a client's admin request that a broker
forwards to the controller, carried with who sent it (KIP-590).

A KRaft broker does not change the metadata itself: CreateTopics, DeleteTopics and
CreatePartitions (and the other admin requests that change the metadata) go to the controller.
It wraps the client's request, header and body as the client sent them, in an EnvelopeRequest
with the client's principal (`request_principal`, Kafka's DefaultPrincipalData, version-prefixed)
and IP address (`client_host_address`, 4 or 16 bytes), so the controller serves it as the
client's own: the client's `controller_mutation_rate` quota (KIP-599, security/quotas.py) is the
one that is spent. The answer is the inner response, header and body, in `response_data`.

The controller (Kafka's ControllerApis.handleEnvelopeRequest, EnvelopeUtils):
- a principal or address that does not parse, an inner request whose API is not one the
  controller serves by forwarding, or a version it does not serve: INVALID_REQUEST in the
  envelope (Kafka throws InvalidRequestException / PrincipalDeserializationException, answered
  as the envelope's error);
- otherwise the inner request is served with a context naming the client, and its response is
  encoded with the client's correlation id.

The broker that forwarded passes `response_data` back to its client as its own answer, and mutes
the client's connection for the response's throttle time (Kafka's sendForwardedResponse: the
throttle the controller decided is applied where the client is connected). An envelope that
failed is a misconfigured cluster, not the client's doing: as in Kafka's ForwardingManager, the
client gets the inner API's error response with UNKNOWN_SERVER_ERROR, and the broker logs the
envelope's error.

Authorization: Kafka's controller wants CLUSTER_ACTION of the broker sending an envelope, as of
every broker RPC on its listener. trioka authorizes none of the controller listener's requests
(security/authorizer.py says why), the Envelope included; the client's own ACLs are checked by
the forwarding broker before it forwards (both read the same ACLs from the metadata image).
"""

import ipaddress
import logging
import struct

from trioka.apis.context import Connection, RequestContext
from trioka.wire import protocol, types as t
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

Request = protocol.request_class(ApiKey.ENVELOPE)
Response = protocol.response_class(ApiKey.ENVELOPE)

log = logging.getLogger(__name__)

# Kafka's DefaultPrincipalData, the principal's serialized form: an int16 version (0), then a
# flexible struct: type (compact string), name (compact string), token_authenticated (bool),
# tagged fields.
PRINCIPAL_DATA_VERSION = 0

# The requests a broker forwards inside an envelope (those of the controller's table that a
# client sends; the nodes' own RPCs are never forwarded).
FORWARDABLE = frozenset({
    ApiKey.CREATE_TOPICS, ApiKey.DELETE_TOPICS, ApiKey.CREATE_PARTITIONS,
})


# -- the principal and the client's address ----------------------------------------------------

def serialize_principal(principal: str) -> bytes:
    """"User:alice" as Kafka's DefaultKafkaPrincipalBuilder serializes it."""
    kind, _, name = principal.partition(":")
    out = [struct.pack(">h", PRINCIPAL_DATA_VERSION)]
    t.write_compact_string(out, kind)
    t.write_compact_string(out, name)
    out.append(b"\x00")     # token_authenticated: false (no delegation tokens)
    out.append(b"\x00")     # no tagged fields
    return b"".join(out)


def deserialize_principal(data) -> str:
    """The principal "Type:name" of a serialized DefaultPrincipalData; KafkaError
    (INVALID_REQUEST) when it does not parse."""
    try:
        (version,) = struct.unpack_from(">h", data, 0)
        if version != PRINCIPAL_DATA_VERSION:
            raise ValueError(f"unsupported principal data version {version}")
        kind, pos = t.read_compact_string(data, 2)
        name, pos = t.read_compact_string(data, pos)
        if kind is None or name is None or pos >= len(data):
            raise ValueError("a principal needs a type and a name")
        t.skip_tagged_fields(data, pos + 1)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, t.DecodeError) as e:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"Failed to deserialize the forwarded principal: {e}") from None
    return f"{kind}:{name}"


def address_bytes(peer: str) -> bytes:
    """The client's IP address (from Connection.peer, "host:port" or "[v6]:port") as 4 or 16
    bytes."""
    from trioka.security.authorizer import client_host
    try:
        return ipaddress.ip_address(client_host(peer)).packed
    except ValueError:
        return b"\x00\x00\x00\x00"


def peer_of(address: bytes) -> str:
    """Connection.peer of a forwarded client: its address and port 0 (the envelope carries no
    port); KafkaError (INVALID_REQUEST) unless the address is 4 or 16 bytes."""
    if len(address) == 4:
        return f"{ipaddress.IPv4Address(bytes(address))}:0"
    if len(address) == 16:
        return f"[{ipaddress.IPv6Address(bytes(address))}]:0"
    raise KafkaError(ErrorCode.INVALID_REQUEST,
                     f"Failed to parse client address: {len(address)} bytes")


# -- the forwarding broker's side --------------------------------------------------------------

def wrap(api_key: int, version: int, request, ctx, correlation_id: int) -> "Request":
    """The envelope that forwards `request` (what the client sent at `version`) with the
    client's identity (`ctx`, its RequestContext)."""
    frame = protocol.encode_request(api_key, version, correlation_id, ctx.header.client_id,
                                    request)
    return Request(request_data=frame[4:],
                   request_principal=serialize_principal(ctx.connection.principal),
                   client_host_address=address_bytes(ctx.connection.peer))


def unwrap(api_key: int, version: int, request, envelope_response):
    """The inner response of an envelope's answer: the controller's, or the inner API's error
    response (UNKNOWN_SERVER_ERROR) when the envelope failed (Kafka's ForwardingManager)."""
    if envelope_response.error_code != ErrorCode.NONE or envelope_response.response_data is None:
        log.warning("a forwarded %s failed at the controller: envelope error code %d",
                    ApiKey(api_key).name, envelope_response.error_code)
        from trioka.wire.error_response import error_response
        return error_response(api_key, version, request, ErrorCode.UNKNOWN_SERVER_ERROR)
    _, response = protocol.decode_response(api_key, version,
                                           bytes(envelope_response.response_data))
    return response


# -- the controller's side ---------------------------------------------------------------------

async def handle(broker, request, ctx):
    try:
        inner_ctx, api, inner = _forwarded(ctx, request)
    except KafkaError as e:
        return Response(response_data=None, error_code=e.code)
    response = await api.handle(broker, inner, inner_ctx)
    header = inner_ctx.header
    frame = protocol.encode_response(header.api_key, header.api_version, header.correlation_id,
                                     response)
    return Response(response_data=b"".join(frame)[4:], error_code=ErrorCode.NONE)


def _forwarded(ctx, request):
    """(the client's context, the API row, the decoded inner request) of an envelope;
    KafkaError (INVALID_REQUEST) for anything that does not parse or may not be forwarded."""
    from trioka.apis import CONTROLLER_APIS
    principal = deserialize_principal(request.request_principal or b"")
    peer = peer_of(request.client_host_address)
    data = memoryview(request.request_data)
    try:
        header, pos = protocol.parse_request_header(data)
    except t.DecodeError as e:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"Failed to parse the forwarded request header: {e}") from None
    api = CONTROLLER_APIS.get(header.api_key)
    if header.api_key not in FORWARDABLE or api is None:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"API {header.api_key} is not enabled or is not eligible for "
                         f"forwarding")
    lo, hi = api.versions
    if not lo <= header.api_version <= hi:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"Unsupported version {header.api_version} of the forwarded "
                         f"{ApiKey(header.api_key).name}")
    try:
        inner = protocol.decode_request_body(header, data, pos)
    except t.DecodeError as e:
        raise KafkaError(ErrorCode.INVALID_REQUEST,
                         f"Failed to parse the forwarded request: {e}") from None
    client = Connection(peer, ctx.connection.listener, ctx.connection.id)
    client.principal = principal
    client.security_protocol = ctx.connection.security_protocol
    return RequestContext(header, client), api, inner
