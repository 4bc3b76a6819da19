"""Headers: how a request frame becomes (header, message) and a response goes back as a frame.

Every frame is an int32 size (framing.py) and then the header and body. The request header is v1 (api key,
version, correlation id, client id as an int16-length string) or, for flexible versions, v2 (the
same plus a tagged-field section). The response header is v0 (correlation id) or, for flexible
versions, v1 (plus an empty tagged-field section); ApiVersions answers always use v0 so that a
client that does not yet know the broker's versions can read them (KIP-511).
"""

import struct

from trioka.wire import framing, schema, types as t
from trioka.wire.api_keys import ApiKey

_HEADER = struct.Struct(">hhi")
_INT32 = struct.Struct(">i")


class RequestHeader:
    __slots__ = ("api_key", "api_version", "correlation_id", "client_id")

    def __init__(self, api_key: int, api_version: int, correlation_id: int, client_id: str | None):
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id

    def __repr__(self) -> str:
        return (f"RequestHeader({self.api_key}, v{self.api_version}, "
                f"corr={self.correlation_id}, client={self.client_id!r})")


class UnknownApi(t.DecodeError):
    """An API key this broker has no definition for: Kafka closes the connection."""


def parse_request_header(frame) -> tuple[RequestHeader, int]:
    """The header of a request frame (size prefix removed) and where its body starts."""
    try:
        api_key, api_version, correlation_id = _HEADER.unpack_from(frame, 0)
    except struct.error:
        raise t.DecodeError("request header shorter than 8 bytes") from None
    if not schema.known(api_key):
        raise UnknownApi(f"unknown api key {api_key}")
    api = schema.api(api_key)
    try:
        client_id, pos = t.read_nullable_string(frame, 8)
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise t.DecodeError(f"bad client id: {e}") from None
    if api.is_flexible(api_version):
        try:
            pos = t.skip_tagged_fields(frame, pos)
        except IndexError:
            raise t.DecodeError("truncated request header tagged fields") from None
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def encode_request(api_key: int, version: int, correlation_id: int, client_id: str | None,
                   message) -> bytes:
    """A whole request frame, size prefix included (used by tests and the CLI's client)."""
    api = schema.api(api_key)
    out = [_HEADER.pack(api_key, version, correlation_id)]
    t.write_nullable_string(out, client_id)
    if api.is_flexible(version):
        out.append(b"\x00")
    api.request.encode_into(out, message, version)
    return b"".join(framing.frame(out))


def decode_request_body(header: RequestHeader, frame, pos: int):
    api = schema.api(header.api_key)
    message, end = api.request.decode(frame, pos, header.api_version)
    return message


def response_header(api_key: int, version: int, correlation_id: int) -> bytes:
    if api_key != ApiKey.API_VERSIONS and schema.api(api_key).is_flexible(version):
        return _INT32.pack(correlation_id) + b"\x00"
    return _INT32.pack(correlation_id)


def encode_response(api_key: int, version: int, correlation_id: int, message) -> list:
    """The response frame as a list of byte chunks, the int32 size first."""
    out = [response_header(api_key, version, correlation_id)]
    schema.api(api_key).response.encode_into(out, message, version)
    return framing.frame(out)


def decode_response(api_key: int, version: int, frame):
    """(correlation id, message) of a response frame without its size prefix."""
    (correlation_id,) = _INT32.unpack_from(frame, 0)
    pos = 4
    if api_key != ApiKey.API_VERSIONS and schema.api(api_key).is_flexible(version):
        pos = t.skip_tagged_fields(frame, pos)
    message, _ = schema.api(api_key).response.decode(memoryview(frame), pos, version)
    return correlation_id, message


def request_class(api_key: int) -> type:
    return schema.api(api_key).request.cls


def response_class(api_key: int) -> type:
    return schema.api(api_key).response.cls
