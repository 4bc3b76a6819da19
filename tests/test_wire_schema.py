"""Every message of wire/messages.py, in every version, survives encode -> decode -> encode.

A generic populator walks the compiled `Field` objects of a message and gives every field present in
a version a value different from its default (so a field the codec forgot to write, wrote in the
wrong version, or read into the wrong slot shows up as an inequality), arrays of one or two
elements, nested structs filled the same way, tagged fields set so that they are written, and, in
the "nulls" flavour, null wherever the version allows it. The test then checks the decoded message
equals the original, that decoding consumed exactly the bytes written, and that re-encoding the
decoded message gives the same bytes.

The header tests pin which header version each (api key, version) uses: request header v2 and
response header v1 for flexible versions, v1 / v0 otherwise, and ApiVersions responses always v0.

The populator is tests/message_values.py, shared with test_wire_golden.py and test_wire_types.py.
"""

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from message_values import in_version, populate
from trioka.wire import protocol, schema, types as t
from trioka.wire.api_keys import ApiKey
from trioka.wire.messages import MESSAGES

def _versions(mt: schema.MessageType):
    lo, hi = mt.valid
    return range(lo, hi + 1)


CASES = [pytest.param(k, kind, v, id=f"{schema.api(k).name}-{kind}-v{v}")
         for k in sorted(MESSAGES)
         for kind in ("request", "response")
         for v in _versions(getattr(schema.api(k), kind))]


def _check_populated(o, fields, v):
    """Guard the populator itself: every in-version field differs from its default (or is null)."""
    for f in fields:
        if not in_version(f, v):
            continue
        x = getattr(o, f.name)
        if x is None:
            assert f.is_nullable(v), f"{f.name} is null in v{v} but not nullable"
            continue
        if f.type == "array":
            assert x, f.name
            if f.is_struct:
                for e in x:
                    _check_populated(e, f.children, v)
        elif f.is_struct:
            _check_populated(x, f.children, v)
        else:
            assert x != f.default, f.name


@pytest.mark.parametrize("key,kind,version", CASES)
def test_round_trip_every_version(key, kind, version):
    mt = getattr(schema.api(key), kind)
    for seed, nulls in ((1, False), (2, True), (3, False)):
        rng = random.Random(f"{key}/{kind}/{version}/{seed}")
        msg = populate(mt.cls, mt.fields, version, rng, nulls)
        if not nulls:
            _check_populated(msg, mt.fields, version)
        data = mt.encode(msg, version)
        decoded, end = mt.decode(memoryview(data), 0, version)
        assert end == len(data), "decoding did not consume exactly the encoded bytes"
        assert decoded == msg
        assert mt.encode(decoded, version) == data, "re-encoding is not stable"
        # The same bytes decode the same from a position other than 0 and from bytes.
        prefixed = b"\xee\xee\xee" + data
        again, end = mt.decode(prefixed, 3, version)
        assert end == len(prefixed) and again == msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([p.values for p in CASES]), st.randoms(use_true_random=False),
       st.booleans())
def test_round_trip_random_messages(case, rng, nulls):
    """The same property with hypothesis choosing the message, the version and the values."""
    key, kind, version = case
    mt = getattr(schema.api(key), kind)
    msg = populate(mt.cls, mt.fields, version, rng, nulls)
    data = mt.encode(msg, version)
    decoded, end = mt.decode(memoryview(data), 0, version)
    assert end == len(data) and decoded == msg
    assert mt.encode(decoded, version) == data


@pytest.mark.parametrize("key,kind,version", CASES)
def test_default_message_round_trips(key, kind, version):
    """A message built with no arguments (where handlers start) decodes back to itself."""
    mt = getattr(schema.api(key), kind)
    msg = mt.cls()
    data = mt.encode(msg, version)
    decoded, end = mt.decode(memoryview(data), 0, version)
    assert end == len(data)
    assert decoded == msg
    assert mt.encode(decoded, version) == data


def test_fields_outside_the_version_are_not_written():
    """A field set on the message but absent from the version must not reach the wire."""
    mt = schema.api(ApiKey.PRODUCE).request
    msg = mt.cls(transactional_id="tx", acks=-1, timeout_ms=1000)   # transactional_id is v3+
    v2 = mt.encode(msg, 2)
    assert v2 == struct.pack(">hii", -1, 1000, 0)
    decoded, _ = mt.decode(v2, 0, 2)
    assert decoded.transactional_id is None and decoded.acks == -1


def test_truncating_any_encoding_is_a_decode_error():
    """Every proper prefix of a populated message is rejected with DecodeError, nothing else."""
    rng = random.Random(7)
    for key in (ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.METADATA, ApiKey.API_VERSIONS,
                ApiKey.CREATE_TOPICS, ApiKey.JOIN_GROUP):
        for kind in ("request", "response"):
            mt = getattr(schema.api(key), kind)
            for version in (mt.valid[0], mt.valid[1]):
                data = mt.encode(populate(mt.cls, mt.fields, version, rng), version)
                for cut in range(len(data)):
                    with pytest.raises(t.DecodeError):
                        mt.decode(memoryview(data[:cut]), 0, version)


# --- header versions ---

HEADER_CASES = [pytest.param(k, v, id=f"{schema.api(k).name}-v{v}")
                for k in sorted(MESSAGES) for v in _versions(schema.api(k).request)]


@pytest.mark.parametrize("key,version", HEADER_CASES)
def test_request_header_version(key, version):
    api = schema.api(key)
    flexible = api.is_flexible(version)
    msg = api.request.cls()
    body = api.request.encode(msg, version)
    frame = protocol.encode_request(key, version, 0x01020304, "cli-ü", msg)
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    client = "cli-ü".encode()
    header_v1 = struct.pack(">hhih", key, version, 0x01020304, len(client)) + client
    expected_header = header_v1 + (b"\x00" if flexible else b"")   # v2 adds a tagged section
    assert frame[4:] == expected_header + body

    header, pos = protocol.parse_request_header(memoryview(frame)[4:])
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (
        key, version, 0x01020304, "cli-ü")
    assert pos == len(expected_header)
    assert protocol.decode_request_body(header, memoryview(frame)[4:], pos) == msg


@pytest.mark.parametrize("key,version", HEADER_CASES)
def test_response_header_version(key, version):
    api = schema.api(key)
    v1 = api.is_flexible(version) and key != ApiKey.API_VERSIONS
    head = protocol.response_header(key, version, 77)
    assert head == struct.pack(">i", 77) + (b"\x00" if v1 else b"")
    msg = api.response.cls()
    chunks = protocol.encode_response(key, version, 77, msg)
    frame = b"".join(bytes(c) for c in chunks)
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    assert frame[4:] == head + api.response.encode(msg, version)
    corr, decoded = protocol.decode_response(key, version, frame[4:])
    assert corr == 77 and decoded == msg


def test_api_versions_response_header_is_v0_even_when_flexible():
    assert schema.api(ApiKey.API_VERSIONS).is_flexible(3)
    assert protocol.response_header(ApiKey.API_VERSIONS, 3, 5) == b"\x00\x00\x00\x05"
    assert protocol.response_header(ApiKey.API_VERSIONS, 4, 5) == b"\x00\x00\x00\x05"
    # Metadata v9 is the first flexible Metadata: header v1, one empty tagged section.
    assert protocol.response_header(ApiKey.METADATA, 8, 5) == b"\x00\x00\x00\x05"
    assert protocol.response_header(ApiKey.METADATA, 9, 5) == b"\x00\x00\x00\x05\x00"


def test_request_header_v2_skips_unknown_tagged_fields():
    # Header v2 with client id "c" and a tagged section holding two unknown tags.
    tags = b"\x02" + b"\x05\x02hi" + b"\x7f\x00"
    frame = struct.pack(">hhih", ApiKey.METADATA, 12, 9, 1) + b"c" + tags
    body = schema.api(ApiKey.METADATA).request.encode(
        schema.api(ApiKey.METADATA).request.cls(topics=None), 12)
    header, pos = protocol.parse_request_header(frame + body)
    assert pos == len(frame)
    assert header.client_id == "c" and header.correlation_id == 9
    assert protocol.decode_request_body(header, frame + body, pos).topics is None


def test_request_header_null_client_id():
    frame = struct.pack(">hhih", ApiKey.API_VERSIONS, 0, 1, -1)
    header, pos = protocol.parse_request_header(frame)
    assert header.client_id is None and pos == 10


@pytest.mark.parametrize("frame", [
    b"",
    b"\x00\x12\x00",                                        # shorter than api key+version+corr
    struct.pack(">hhi", ApiKey.METADATA, 1, 1),             # no client id at all
    struct.pack(">hhih", ApiKey.METADATA, 1, 1, 5) + b"ab",  # client id runs past the frame
    struct.pack(">hhih", ApiKey.METADATA, 1, 1, 2) + b"\xff\xfe",  # client id not UTF-8
    struct.pack(">hhih", ApiKey.METADATA, 12, 1, 0),        # flexible: tagged section missing
    struct.pack(">hhih", ApiKey.METADATA, 12, 1, 0) + b"\x01\x00\x05ab",  # tag runs past frame
])
def test_bad_request_headers_are_decode_errors(frame):
    with pytest.raises(t.DecodeError):
        protocol.parse_request_header(frame)


def test_unknown_api_key():
    with pytest.raises(protocol.UnknownApi):
        protocol.parse_request_header(struct.pack(">hhih", 9999, 0, 1, -1))
    assert issubclass(protocol.UnknownApi, t.DecodeError)
