"""Kafka's primitive wire types (wire/types.py) and how MessageType.decode reports bad bytes.

Round trips are property tests (hypothesis); the byte layouts are pinned with hand-written vectors
taken from the protocol description (int16/int32 lengths with -1 for null in classic versions, an
unsigned varint of length + 1 with 0 for null in flexible versions). Decoding errors go through
`MessageType.decode`, the entry point the server calls, which must only ever raise DecodeError.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import message_values
from trioka.wire import schema, types as t
from trioka.wire.api_keys import ApiKey

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(min_value=0, max_value=(1 << 32) - 1)
text = st.text(max_size=300)            # any unicode, including astral planes and NUL
blobs = st.binary(max_size=300)


def read_all(reader, data: bytes):
    """Run a reader over `data` preceded by junk, check it consumed exactly `data`."""
    buf = memoryview(b"\xaa\xbb" + data)
    value, end = reader(buf, 2)
    assert end == len(buf), f"reader stopped at {end} of {len(buf)}"
    return value


def written(writer, value) -> bytes:
    out: list = []
    writer(out, value)
    return b"".join(out)


# --- unsigned varints ---

@pytest.mark.parametrize("n,encoded", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"),
    (16384, "808001"), ((1 << 21) - 1, "ffff7f"), (1 << 28, "8080808001"),
    ((1 << 32) - 1, "ffffffff0f"),
])
def test_uvarint_vectors(n, encoded):
    assert t.uvarint(n).hex() == encoded
    assert t.read_uvarint(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


@FAST
@given(u32)
def test_uvarint_round_trip(n):
    b = t.uvarint(n)
    assert 1 <= len(b) <= 5
    assert all(x & 0x80 for x in b[:-1]) and not b[-1] & 0x80   # continuation bits
    assert read_all(t.read_uvarint, b) == n


def test_uvarint_longer_than_five_bytes():
    with pytest.raises(t.DecodeError):
        t.read_uvarint(b"\xff\xff\xff\xff\xff\x01", 0)


def test_uvarint_truncated():
    for data in (b"", b"\x80", b"\xff\xff\xff\xff"):
        with pytest.raises((IndexError, t.DecodeError)):
            t.read_uvarint(data, 0)


# --- strings ---

@pytest.mark.parametrize("writer,reader,value,encoded", [
    (t.write_string, t.read_string, "", "0000"),
    (t.write_string, t.read_string, "ab", "00026162"),
    (t.write_string, t.read_string, "é", "0002c3a9"),              # length in UTF-8 bytes
    (t.write_nullable_string, t.read_nullable_string, None, "ffff"),
    (t.write_nullable_string, t.read_nullable_string, "", "0000"),
    (t.write_compact_string, t.read_compact_string, "", "01"),
    (t.write_compact_string, t.read_compact_string, "ab", "036162"),
    (t.write_compact_string, t.read_compact_string, "🙂", "05f09f9982"),
    (t.write_compact_nullable_string, t.read_compact_nullable_string, None, "00"),
    (t.write_compact_nullable_string, t.read_compact_nullable_string, "", "01"),
])
def test_string_vectors(writer, reader, value, encoded):
    assert written(writer, value).hex() == encoded
    assert read_all(reader, bytes.fromhex(encoded)) == value


@FAST
@given(text)
def test_string_round_trips(s):
    for writer, reader in ((t.write_string, t.read_string),
                           (t.write_nullable_string, t.read_nullable_string),
                           (t.write_compact_string, t.read_compact_string),
                           (t.write_compact_nullable_string, t.read_compact_nullable_string)):
        b = written(writer, s)
        assert read_all(reader, b) == s
    n = len(s.encode("utf-8"))
    assert written(t.write_string, s)[:2] == struct.pack(">h", n)
    assert written(t.write_compact_string, s)[: len(t.uvarint(n + 1))] == t.uvarint(n + 1)


def test_long_compact_string_uses_multi_byte_length():
    s = "x" * 200
    b = written(t.write_compact_string, s)
    assert b[:2] == bytes.fromhex("c901")          # 201 as a varint
    assert read_all(t.read_compact_string, b) == s


def test_null_string_in_non_nullable_field_is_rejected():
    with pytest.raises(t.DecodeError):
        t.read_string(b"\xff\xff", 0)
    with pytest.raises(t.DecodeError):
        t.read_string(b"\x80\x00", 0)                # any negative length
    with pytest.raises(t.DecodeError):
        t.read_compact_string(b"\x00", 0)


def test_string_past_the_end_is_rejected():
    for reader, data in ((t.read_string, b"\x00\x05abcd"),
                         (t.read_nullable_string, b"\x00\x05abcd"),
                         (t.read_compact_string, b"\x06abcd"),
                         (t.read_compact_nullable_string, b"\x06abcd")):
        with pytest.raises(t.DecodeError):
            reader(memoryview(data), 0)


# --- bytes ---

@pytest.mark.parametrize("writer,reader,value,encoded", [
    (t.write_bytes, t.read_bytes, b"", "00000000"),
    (t.write_bytes, t.read_bytes, b"\x00\xff", "0000000200ff"),
    (t.write_nullable_bytes, t.read_nullable_bytes, None, "ffffffff"),
    (t.write_compact_bytes, t.read_compact_bytes, b"", "01"),
    (t.write_compact_bytes, t.read_compact_bytes, b"\x00\xff", "0300ff"),
    (t.write_compact_nullable_bytes, t.read_compact_nullable_bytes, None, "00"),
])
def test_bytes_vectors(writer, reader, value, encoded):
    assert written(writer, value).hex() == encoded
    got = read_all(reader, bytes.fromhex(encoded))
    assert got == value
    assert got is None or type(got) is bytes      # bytes fields are copies, not views


@FAST
@given(blobs)
def test_bytes_round_trips(b):
    for writer, reader in ((t.write_bytes, t.read_bytes),
                           (t.write_nullable_bytes, t.read_nullable_bytes),
                           (t.write_compact_bytes, t.read_compact_bytes),
                           (t.write_compact_nullable_bytes, t.read_compact_nullable_bytes)):
        assert read_all(reader, written(writer, b)) == b


def test_null_bytes_in_non_nullable_field_is_rejected():
    with pytest.raises(t.DecodeError):
        t.read_bytes(b"\xff\xff\xff\xff", 0)
    with pytest.raises(t.DecodeError):
        t.read_compact_bytes(b"\x00", 0)


# --- records: zero copy ---

@FAST
@given(blobs)
def test_records_round_trip_zero_copy(b):
    for writer, reader in ((t.write_records, t.read_records),
                           (t.write_compact_records, t.read_compact_records)):
        frame = bytearray(b"\x01" + written(writer, b) + b"\x02")
        view = memoryview(frame)
        got, end = reader(view, 1)
        assert end == len(frame) - 1
        assert isinstance(got, memoryview)
        assert got.obj is frame                       # a slice of the input, not a copy
        assert bytes(got) == b
        if b:
            frame[end - 1] ^= 0xFF                    # a change to the frame shows in the slice
            assert got[-1] == b[-1] ^ 0xFF


def test_records_null_and_chunks():
    assert written(t.write_records, None) == b"\xff\xff\xff\xff"
    assert written(t.write_compact_records, None) == b"\x00"
    assert t.read_records(b"\xff\xff\xff\xff", 0) == (None, 4)
    assert t.read_compact_records(b"\x00", 0) == (None, 1)
    # Several stored batches sent as one records field (a Fetch answer): one length, all bytes.
    chunks = [b"abc", memoryview(b"de"), b"f"]
    assert written(t.write_records, chunks) == b"\x00\x00\x00\x06abcdef"
    assert written(t.write_compact_records, chunks) == b"\x07abcdef"
    with pytest.raises(t.DecodeError):
        t.read_records(b"\x00\x00\x00\x09abc", 0)


def test_produce_records_are_a_slice_of_the_request_frame():
    mt = schema.api(ApiKey.PRODUCE).request
    P = mt.cls
    batch = bytes(range(61)) * 3
    for version in (3, 9):
        msg = P(acks=-1, timeout_ms=5, topic_data=[P.TopicProduceData(
            name="t", partition_data=[P.TopicProduceData.PartitionProduceData(
                index=0, records=batch)])])
        frame = bytearray(mt.encode(msg, version))
        decoded, _ = mt.decode(memoryview(frame), 0, version)
        records = decoded.topic_data[0].partition_data[0].records
        assert isinstance(records, memoryview) and records.obj is frame
        assert records == batch


# --- uuid ---

@FAST
@given(st.uuids())
def test_uuid_round_trip(u):
    b = written(t.write_uuid, u)
    assert b == u.bytes and len(b) == 16
    assert read_all(t.read_uuid, b) == u


def test_uuid_none_is_zero_and_short_uuid_is_rejected():
    assert written(t.write_uuid, None) == bytes(16)
    assert t.read_uuid(bytes(16), 0) == (t.ZERO_UUID, 16)
    with pytest.raises(t.DecodeError):
        t.read_uuid(bytes(15), 0)


# --- array counts ---

@FAST
@given(st.integers(min_value=0, max_value=50))
def test_counts(n):
    room = bytes(n)
    assert t.read_count(struct.pack(">i", n) + room, 0) == (n, 4)
    enc = t.uvarint(n + 1)
    assert t.read_compact_count(enc + room, 0) == (n, len(enc))


def test_null_counts():
    assert t.read_count(b"\xff\xff\xff\xff", 0) == (-1, 4)
    assert t.read_compact_count(b"\x00", 0) == (-1, 1)


@pytest.mark.parametrize("data", [
    struct.pack(">i", 0x7FFFFFFF) + bytes(8),
    struct.pack(">i", 9) + bytes(8),
])
def test_huge_count_is_rejected_before_allocating(data):
    with pytest.raises(t.DecodeError):
        t.read_count(data, 0)


def test_huge_compact_count_is_rejected():
    with pytest.raises(t.DecodeError):
        t.read_compact_count(t.uvarint(1 << 31) + bytes(8), 0)


# --- MessageType.decode: only DecodeError comes out ---

def _decode(key, kind, version, data):
    return getattr(schema.api(key), kind).decode(memoryview(data), 0, version)


def _flex_api_versions_request(name: bytes, version: bytes, tags: bytes = b"\x00") -> bytes:
    return bytes([len(name) + 1]) + name + bytes([len(version) + 1]) + version + tags


@pytest.mark.parametrize("key,kind,version,data", [
    # truncated in the middle of a fixed-width run
    (ApiKey.METADATA, "request", 1, b"\x00\x00\x00"),
    (ApiKey.FIND_COORDINATOR, "response", 0, b"\x00"),
    # truncated inside a varint
    (ApiKey.API_VERSIONS, "request", 3, b"\x80"),
    # truncated before the final tagged-field section
    (ApiKey.API_VERSIONS, "request", 3, b"\x02a\x02b"),
    # negative length of a non-nullable string (CreateTopics topic name)
    (ApiKey.CREATE_TOPICS, "request", 0, struct.pack(">ih", 1, -1) + bytes(20)),
    # null compact string where not nullable (ApiVersions v3 client_software_name)
    (ApiKey.API_VERSIONS, "request", 3, b"\x00\x02b\x00"),
    # negative length of non-nullable bytes (SaslAuthenticate auth_bytes)
    (ApiKey.SASL_AUTHENTICATE, "request", 0, struct.pack(">i", -1)),
    (ApiKey.SASL_AUTHENTICATE, "request", 2, b"\x00\x00"),
    # a length that runs past the frame
    (ApiKey.SASL_AUTHENTICATE, "request", 0, struct.pack(">i", 10) + b"abc"),
    (ApiKey.API_VERSIONS, "request", 3, b"\x7fab\x02b\x00"),
    (ApiKey.PRODUCE, "request", 3,
     struct.pack(">hhii", -1, 1, 100, 1) + b"\x00\x01t" + struct.pack(">iii", 1, 0, 1000) + b"x"),
    # a huge array count
    (ApiKey.METADATA, "request", 1, struct.pack(">i", 0x7FFFFFFF)),
    (ApiKey.METADATA, "request", 12, b"\xff\xff\xff\xff\x07\x00\x00\x00"),
    (ApiKey.PRODUCE, "request", 3, struct.pack(">hhii", -1, 1, 100, 2_000_000_000)),
    # invalid UTF-8 in a string
    (ApiKey.API_VERSIONS, "request", 3, b"\x03\xff\xfe\x02b\x00"),
    # a varint longer than five bytes
    (ApiKey.API_VERSIONS, "request", 3, b"\xff\xff\xff\xff\xff\x01"),
    # a tagged field whose size runs past the frame
    (ApiKey.API_VERSIONS, "request", 3, _flex_api_versions_request(b"a", b"b", b"\x01\x00\x09xy")),
    # a truncated nullable struct (DescribeTopicPartitions cursor present, then nothing)
    (ApiKey.DESCRIBE_TOPIC_PARTITIONS, "request", 0, b"\x01" + struct.pack(">i", 5) + b"\x01"),
])
def test_bad_bodies_raise_decode_error(key, kind, version, data):
    with pytest.raises(t.DecodeError):
        _decode(key, kind, version, data)


def _fuzz_targets():
    targets = []
    for key in (ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.METADATA, ApiKey.API_VERSIONS,
                ApiKey.CREATE_TOPICS, ApiKey.LIST_OFFSETS, ApiKey.JOIN_GROUP,
                ApiKey.DESCRIBE_TOPIC_PARTITIONS):
        a = schema.api(key)
        for kind in ("request", "response"):
            mt = getattr(a, kind)
            targets += [(mt, mt.valid[0]), (mt, mt.valid[1])]
            if a.request.flexible[0] > mt.valid[0]:
                targets.append((mt, a.request.flexible[0]))
    return targets


TARGETS = _fuzz_targets()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TARGETS), st.binary(max_size=200))
def test_random_bytes_only_raise_decode_error(target, data):
    mt, version = target
    try:
        msg, end = mt.decode(memoryview(data), 0, version)
    except t.DecodeError:
        return
    assert 0 <= end <= len(data)
    assert isinstance(msg, mt.cls)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TARGETS), st.randoms(use_true_random=False), st.data())
def test_mutated_encodings_only_raise_decode_error(target, rng, data):
    mt, version = target
    good = bytearray(mt.encode(message_values.populate(mt.cls, mt.fields, version, rng), version))
    if not good:
        return
    # Overwrite a few bytes with edge values (0x00, 0x7f, 0x80, 0xff ...) and maybe cut the end.
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
    cut = data.draw(st.integers(0, len(good)))
    try:
        mt.decode(memoryview(bytes(good[:cut])), 0, version)
    except t.DecodeError:
        pass


# --- tagged fields ---

def test_unknown_tags_are_skipped_top_level_and_nested():
    """ApiVersions v3 response: known tags mixed with unknown ones, in the body and an element."""
    mt = schema.api(ApiKey.API_VERSIONS).response
    body = (struct.pack(">h", 0)
            + b"\x02"                                            # one api key
            + struct.pack(">hhh", 0, 0, 9)
            + b"\x01" + b"\x07\x03abc"                          # element: one unknown tag 7
            + struct.pack(">i", 25)                              # throttle_time_ms
            + b"\x04"                                            # four tagged fields:
            + b"\x01\x08" + struct.pack(">q", 42)                # finalized_features_epoch
            + b"\x03\x01\x01"                                    # zk_migration_ready
            + b"\x05\x00"                                        # unknown, empty
            + b"\x80\x01\x02\xff\xff")                          # unknown tag 128, two bytes
    msg, end = mt.decode(memoryview(body), 0, 3)
    assert end == len(body)
    assert msg.error_code == 0 and msg.throttle_time_ms == 25
    assert [(k.api_key, k.min_version, k.max_version) for k in msg.api_keys] == [(0, 0, 9)]
    assert msg.finalized_features_epoch == 42 and msg.zk_migration_ready is True
    assert msg.supported_features == [] and msg.finalized_features == []


def test_skip_tagged_fields():
    data = b"\x03" + b"\x00\x00" + b"\x01\x03abc" + b"\x90\x4e\x01z" + b"rest"
    assert t.skip_tagged_fields(data, 0) == len(data) - 4
    with pytest.raises(t.DecodeError):
        t.skip_tagged_fields(b"\x01\x00\x05ab", 0)


def test_tagged_fields_written_only_when_not_default():
    mt = schema.api(ApiKey.API_VERSIONS).response
    R = mt.cls
    plain = mt.encode(R(error_code=0, api_keys=[], throttle_time_ms=0), 3)
    assert plain == b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00" + b"\x00"
    tagged = mt.encode(R(zk_migration_ready=True), 3)
    assert tagged.endswith(b"\x01\x03\x01\x01")
    # Tags go out in ascending order (KIP-482).
    both = mt.encode(R(finalized_features_epoch=3, zk_migration_ready=True), 3)
    assert both.endswith(b"\x02" + b"\x01\x08" + struct.pack(">q", 3) + b"\x03\x01\x01")


def test_null_array_constructor_argument_stays_null():
    """None passed for a nullable array means null on the wire (Metadata: all topics)."""
    mt = schema.api(ApiKey.METADATA).request
    assert mt.cls(topics=None).topics is None
    assert mt.cls().topics == []
    assert mt.encode(mt.cls(topics=None), 1)[:4] == b"\xff\xff\xff\xff"
    assert mt.encode(mt.cls(topics=None), 12)[:1] == b"\x00"
    assert mt.encode(mt.cls(), 12)[:1] == b"\x01"
    assert mt.decode(b"\x00\x01\x00\x00", 0, 12)[0].topics is None
