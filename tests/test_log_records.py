"""trioka.log.records: varints, v2 batches, control records, recompression.

kafka-python carries its own, independently written v2 codec (kafka.record.default_records); it
is the oracle here. Batches it builds with every codec must decode with ours, and batches we
build must pass its CRC check and read back the same records.
"""

import random
import struct
import warnings

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # kafka-python's package import emits DeprecationWarnings about importlib.resources.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    from kafka.record.legacy_records import LegacyRecordBatchBuilder
    from kafka.record.memory_records import MemoryRecords
    from kafka.record.util import decode_varint as kp_decode_varint
    from kafka.record.util import encode_varint as kp_encode_varint

from trioka.log.records import (
    BATCH_HEADER,
    CONTROL_FLAG_MASK,
    DELETE_HORIZON_FLAG_MASK,
    RECORD_BATCH_OVERHEAD,
    TRANSACTIONAL_FLAG_MASK,
    Batch,
    ControlRecordType,
    EndTransactionMarker,
    Record,
    TimestampType,
    decode_batch,
    decode_control_key,
    decode_end_txn_marker,
    decode_varint,
    decode_varlong,
    encode_batch,
    encode_control_batch,
    encode_control_key,
    encode_end_txn_marker,
    encode_varint,
    encode_varlong,
    first_record_at_or_after,
    increment_sequence,
    is_legacy_message_set,
    iter_batches,
    read_magic,
    record_headers,
    recompress,
    size_of_varint,
)
from trioka.log.batch import read_header
from trioka.wire.errors import ErrorCode, KafkaError

CODECS = [0, 1, 2, 3, 4]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def expect(code, fn, *args, **kwargs) -> KafkaError:
    with pytest.raises(KafkaError) as e:
        fn(*args, **kwargs)
    assert e.value.code == code, e.value
    return e.value


def recrc(batch: bytes | bytearray) -> bytes:
    """Fix up the CRC of a hand-edited batch, so the structural checks are what fails."""
    out = bytearray(batch)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def patch_records_section(batch: bytes, section: bytes, count: int | None = None) -> bytes:
    """The same (uncompressed) batch header over another records section."""
    out = bytearray(batch[:RECORD_BATCH_OVERHEAD]) + section
    struct.pack_into(">i", out, 8, len(out) - 12)
    if count is not None:
        struct.pack_into(">i", out, 57, count)
    return recrc(out)


# --- varints ----------------------------------------------------------------------------------

KNOWN = [
    (0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (2, "04"), (63, "7e"), (-64, "7f"),
    (64, "8001"), (-65, "8101"), (150, "ac02"), (300, "d804"), (-300, "d704"),
    (8191, "fe7f"), (8192, "808001"),
    (INT32_MAX, "feffffff0f"), (INT32_MIN, "ffffffff0f"),
]
KNOWN_LONG = KNOWN + [
    (INT32_MAX + 1, "8080808010"), (INT32_MIN - 1, "8180808010"),
    (INT64_MAX, "feffffffffffffffff01"), (INT64_MIN, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize("value,hexed", KNOWN)
def test_varint_known_vectors(value, hexed):
    assert encode_varint(value).hex() == hexed
    assert decode_varint(bytes.fromhex(hexed)) == (value, len(hexed) // 2)
    assert size_of_varint(value) == len(hexed) // 2


@pytest.mark.parametrize("value,hexed", KNOWN_LONG)
def test_varlong_known_vectors(value, hexed):
    assert encode_varlong(value).hex() == hexed
    assert decode_varlong(bytes.fromhex(hexed)) == (value, len(hexed) // 2)
    assert decode_varlong(b"\xaa" + bytes.fromhex(hexed) + b"\x55", 1) == (value, 1 + len(hexed) // 2)


@given(st.integers(INT32_MIN, INT32_MAX))
def test_varint_round_trip(value):
    encoded = encode_varint(value)
    assert len(encoded) <= 5 and len(encoded) == size_of_varint(value)
    assert decode_varint(encoded + b"\x99") == (value, len(encoded))
    assert decode_varint(bytearray(encoded)) == (value, len(encoded))
    assert decode_varint(memoryview(b"xx" + encoded), 2) == (value, 2 + len(encoded))
    # Same bytes as kafka-python's independent encoder.
    other = bytearray()
    kp_encode_varint(value, other.append)
    assert bytes(other) == encoded


@given(st.integers(INT64_MIN, INT64_MAX))
def test_varlong_round_trip(value):
    encoded = encode_varlong(value)
    assert len(encoded) <= 10 and len(encoded) == size_of_varint(value)
    assert decode_varlong(encoded) == (value, len(encoded))
    assert kp_decode_varint(bytearray(encoded), 0) == (value, len(encoded))


def test_varint_ranges_and_malformed_input():
    for bad in (INT32_MAX + 1, INT32_MIN - 1):
        with pytest.raises(ValueError):
            encode_varint(bad)
    for bad in (INT64_MAX + 1, INT64_MIN - 1):
        with pytest.raises(ValueError):
            encode_varlong(bad)
    # Longer than 5 / 10 bytes: Java rejects these.
    expect(ErrorCode.CORRUPT_MESSAGE, decode_varint, b"\x80\x80\x80\x80\x80\x01")
    expect(ErrorCode.CORRUPT_MESSAGE, decode_varlong, b"\x80" * 10 + b"\x01")
    assert decode_varlong(b"\x80\x80\x80\x80\x80\x01") == (2**34, 6)  # zig-zag of 2**35
    # At full length, Java keeps only the low 32 / 64 bits of what it reads.
    assert decode_varint(b"\xff\xff\xff\xff\x7f") == (INT32_MIN, 5)
    assert decode_varint(b"\xfe\xff\xff\xff\x7f") == (INT32_MAX, 5)
    assert decode_varlong(b"\xff" * 9 + b"\x7f") == (INT64_MIN, 10)
    # Truncated.
    for blob in (b"", b"\x80", b"\xff\xff"):
        expect(ErrorCode.CORRUPT_MESSAGE, decode_varint, blob)
        expect(ErrorCode.CORRUPT_MESSAGE, decode_varlong, blob)


# --- batches: round trips ---------------------------------------------------------------------

def sample_records(n=5, value_size=20, seed=0):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = None if i % 4 == 3 else b"key-%d" % i
        value = None if i % 5 == 4 else bytes(rnd.getrandbits(8) for _ in range(value_size)) + b"v" * 30
        headers = [("h%d" % j, None if j == 2 else b"hv%d" % j) for j in range(i % 4)]
        out.append((key, value, headers, 1_700_000_000_000 + rnd.randrange(-5000, 5000)))
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec(codec):
    records = sample_records(50)
    blob = encode_batch(records, base_offset=1000, compression=codec)
    batch = decode_batch(blob)
    assert batch.compression == codec and batch.magic == 2
    assert batch.records_count == len(batch.records) == 50
    assert batch.base_offset == 1000 and batch.last_offset_delta == 49 and batch.last_offset == 1049
    assert batch.size_in_bytes == len(blob)
    assert batch.base_timestamp == records[0][3]
    assert batch.max_timestamp == max(r[3] for r in records)
    for i, (rec, (key, value, headers, ts)) in enumerate(zip(batch.records, records)):
        assert (rec.key, rec.value, rec.headers, rec.timestamp) == (key, value, headers, ts)
        assert rec.offset_delta == i and rec.offset == 1000 + i
        assert rec.timestamp_delta == ts - records[0][3]


@pytest.mark.parametrize("codec", CODECS)
def test_edge_values(codec):
    records = [
        (None, None),  # tombstone without key
        (b"", b""),  # empty, not null
        (b"k", b""),
        (b"", None),
        (None, b"v", [("", b"")]),
        (b"k", b"v", [("k\u00e9y-\u263a", None), ("dup", b"1"), ("dup", b"2")]),
        (b"big", bytes(range(256)) * 4096),  # 1 MiB value: multi-byte lengths, many blocks
        (b"k" * 70, b"v" * 9000, [("long-" * 30, b"x" * 20000), ("n" * 64, None)]),
    ]
    batch = decode_batch(encode_batch(records, compression=codec, base_timestamp=5))
    got = [(r.key, r.value, r.headers) for r in batch.records]
    want = [(r[0], r[1], list(r[2]) if len(r) > 2 else []) for r in records]
    assert got == want
    assert all(r.timestamp == 5 for r in batch.records)


@pytest.mark.parametrize("codec", CODECS)
def test_many_records(codec):
    records = [(b"%d" % i, b"value-%d" % i * 3) for i in range(10_000)]
    batch = decode_batch(encode_batch(records, compression=codec, base_timestamp=0))
    assert [(r.key, r.value) for r in batch.records] == records
    assert [r.offset for r in batch.records] == list(range(10_000))


def test_record_and_dict_inputs_and_offset_gaps():
    # Compaction leaves gaps: deltas are kept, records removed.
    records = [
        Record(offset_delta=0, key=b"a", value=b"1", timestamp=100),
        Record(offset_delta=3, key=b"b", value=b"2", timestamp=90),
        {"key": b"c", "value": b"3", "headers": {"x": b"y"}, "timestamp": 130},  # delta 4
        (b"d", b"4"),  # delta 5, base timestamp
        Record(offset_delta=9, timestamp_delta=7, key=b"e", value=None),
    ]
    batch = decode_batch(encode_batch(records, base_offset=50))
    assert [r.offset_delta for r in batch.records] == [0, 3, 4, 5, 9]
    assert [r.offset for r in batch.records] == [50, 53, 54, 55, 59]
    assert [r.timestamp for r in batch.records] == [100, 90, 130, 100, 107]
    assert [r.timestamp_delta for r in batch.records] == [0, -10, 30, 0, 7]
    assert batch.records[2].headers == [("x", b"y")]
    assert batch.last_offset_delta == 9 and batch.records_count == 5
    assert batch.max_timestamp == 130

    # Re-encoding decoded records gives the same bytes.
    blob = encode_batch(records, base_offset=50)
    assert encode_batch(decode_batch(blob).records, base_offset=50) == blob


def test_bad_inputs():
    with pytest.raises(ValueError):
        encode_batch([Record(offset_delta=1), Record(offset_delta=1)])
    with pytest.raises(ValueError):
        encode_batch([Record(offset_delta=-1)])
    with pytest.raises(TypeError):
        encode_batch([("key as str", b"v")])
    with pytest.raises(TypeError):
        encode_batch([(b"k", b"v", [(1, b"x")])])
    with pytest.raises(TypeError):
        encode_batch([42])
    with pytest.raises(ValueError):
        encode_batch([{"key": b"k", "vaule": b"typo"}])
    with pytest.raises(ValueError):
        encode_batch([(b"k", b"v")], compression=5)
    with pytest.raises(ValueError):
        encode_batch([(b"k", b"v", None, INT64_MIN), (b"k", b"v", None, INT64_MAX)])  # delta overflows


def test_header_fields_and_attributes():
    blob = encode_batch(
        [(b"k", b"v", None, 1000), (b"k", b"v", None, 3000)], base_offset=7, compression=4,
        producer_id=123456789012, producer_epoch=5, base_sequence=INT32_MAX,
        transactional=True, partition_leader_epoch=9)
    batch = decode_batch(blob)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (123456789012, 5, INT32_MAX)
    assert batch.partition_leader_epoch == 9
    assert batch.is_transactional and not batch.is_control_batch
    assert batch.attributes == 4 | TRANSACTIONAL_FLAG_MASK
    assert batch.timestamp_type == TimestampType.CREATE_TIME
    assert batch.delete_horizon_ms is None
    # Sequences wrap from int32 max to 0.
    assert batch.last_sequence == 0
    assert increment_sequence(INT32_MAX, 1) == 0 and increment_sequence(INT32_MAX - 5, 10) == 4
    assert increment_sequence(10, 5) == 15
    # Raw header layout.
    fields = BATCH_HEADER.unpack_from(blob)
    assert fields[0] == 7 and fields[1] == len(blob) - 12 and fields[3] == 2


def test_log_append_time_uses_max_timestamp_for_every_record():
    blob = encode_batch([(b"a", b"1", None, 10), (b"b", b"2", None, 20)],
                        timestamp_type=TimestampType.LOG_APPEND_TIME, max_timestamp=99999)
    batch = decode_batch(blob)
    assert batch.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert batch.max_timestamp == 99999 and batch.base_timestamp == 10
    assert [r.timestamp for r in batch.records] == [99999, 99999]
    assert [r.timestamp_delta for r in batch.records] == [0, 10]


def test_delete_horizon():
    blob = encode_batch([(b"a", None, None, 500), (b"b", b"x", None, 700)], delete_horizon_ms=1000)
    batch = decode_batch(blob)
    assert batch.attributes & DELETE_HORIZON_FLAG_MASK
    assert batch.delete_horizon_ms == batch.base_timestamp == 1000
    assert [r.timestamp for r in batch.records] == [500, 700]
    with pytest.raises(ValueError):
        encode_batch([], delete_horizon_ms=1, base_timestamp=2)


def test_empty_batch():
    # Compaction keeps empty batches to remember producer state.
    for codec in CODECS:
        blob = encode_batch([], compression=codec, last_offset_delta=4, producer_id=3,
                            producer_epoch=0, base_sequence=10, base_offset=20)
        assert len(blob) == RECORD_BATCH_OVERHEAD
        batch = decode_batch(blob)
        assert batch.records == [] and batch.records_count == 0
        assert batch.next_offset == 25 and batch.base_timestamp == batch.max_timestamp == -1


def test_non_utf8_header_key_survives():
    records = [Record(key=b"k", value=b"v", headers=[(b"\xff\xfebad", b"x")])]
    blob = encode_batch(records)
    batch = decode_batch(blob)
    assert batch.records[0].headers[0][0].encode("utf-8", "surrogateescape") == b"\xff\xfebad"
    assert encode_batch(batch.records) == blob


# --- batches: CRC and corruption --------------------------------------------------------------

def test_crc_is_crc32c_over_attributes_to_end():
    blob = encode_batch(sample_records(3), compression=1)
    (crc,) = struct.unpack_from(">I", blob, 17)
    assert crc == crc32c.crc32c(blob[21:])
    assert decode_batch(blob).crc == crc


def test_crc_ignores_base_offset_and_leader_epoch():
    blob = bytearray(encode_batch(sample_records(3)))
    struct.pack_into(">qii", blob, 0, 424242, len(blob) - 12, 77)
    batch = decode_batch(bytes(blob))
    assert batch.base_offset == 424242 and batch.partition_leader_epoch == 77
    assert batch.records[1].offset == 424243


@pytest.mark.parametrize("codec", CODECS)
def test_any_flipped_byte_after_crc_is_detected(codec):
    blob = encode_batch(sample_records(10), compression=codec)
    for pos in range(17, len(blob), max(1, len(blob) // 40)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, bytes(bad))
    # ... unless asked not to check, when the header is still readable.
    bad = bytearray(blob)
    bad[25] ^= 0x01  # lastOffsetDelta
    assert decode_batch(bytes(bad), verify_crc=False).last_offset_delta != 9


def test_length_mismatches():
    blob = encode_batch(sample_records(3))
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, blob[:-1])
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, blob + b"\x00")
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, blob[:40])
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, b"")


def test_structurally_corrupt_records():
    good = encode_batch([(b"k", b"v", [("h", b"x")])], base_timestamp=0)
    section = good[RECORD_BATCH_OVERHEAD:]
    # Sanity: re-patching the same section gives the same batch.
    assert patch_records_section(good, section) == good
    cases = {
        "trailing_bytes": (section + b"\x00", 1),
        "more_records_than_bytes": (section, 2),
        "length_too_short": (b"\x02" + section[1:], 1),
        "length_too_long": (bytes([section[0] + 2]) + section[1:] + b"\x00", 1),
        "zero_length": (b"\x00", 1),
        "negative_header_count": (section[:-5] + b"\x01" + section[-4:], 1),
        "negative_count": (section, -1),
        "truncated_varint": (b"\x80", 1),
    }
    for name, (body, count) in cases.items():
        expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, patch_records_section(good, body, count))
    # Header key length -1: header keys are never null.
    assert section.endswith(b"\x02\x02h\x02x")
    err = expect(ErrorCode.CORRUPT_MESSAGE, decode_batch,
                 patch_records_section(good, section[:-4] + b"\x01h\x02x", 1))
    assert "header key" in str(err)

    # A compressed stream that decompresses fine but holds garbage records.
    from trioka.log.compression import compress
    bad = bytearray(patch_records_section(good, compress(1, b"\x7f" * 40)))
    struct.pack_into(">h", bad, 21, 1)
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, recrc(bad))
    # A codec id 5-7.
    bad = bytearray(good)
    struct.pack_into(">h", bad, 21, 5)
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, recrc(bad))


def test_legacy_message_sets_are_detected_and_refused():
    for magic in (0, 1):
        builder = LegacyRecordBatchBuilder(magic=magic, compression_type=0, batch_size=1 << 20)
        builder.append(0, timestamp=None if magic == 0 else 1000, key=b"k", value=b"v")
        legacy = bytes(builder.build())
        assert read_magic(legacy) == magic and is_legacy_message_set(legacy)
        err = expect(ErrorCode.INVALID_RECORD, decode_batch, legacy)
        assert "magic" in str(err)
        expect(ErrorCode.INVALID_RECORD, lambda: list(iter_batches(legacy)))
    v2 = encode_batch([(b"k", b"v")])
    assert read_magic(v2) == 2 and not is_legacy_message_set(v2)
    assert read_magic(b"\x00" * 5 + v2, 5) == 2
    expect(ErrorCode.CORRUPT_MESSAGE, read_magic, v2[:16])
    bad = bytearray(v2)
    bad[16] = 3
    expect(ErrorCode.CORRUPT_MESSAGE, decode_batch, bytes(bad))


# --- iter_batches -----------------------------------------------------------------------------

def test_iter_batches_and_truncated_tail():
    blobs = [encode_batch(sample_records(3, seed=i), base_offset=i * 10, compression=i % 5)
             for i in range(4)]
    whole = b"".join(blobs)
    batches = list(iter_batches(whole))
    assert [b.base_offset for b in batches] == [0, 10, 20, 30]
    assert [b.compression for b in batches] == [0, 1, 2, 3]
    assert list(iter_batches(b"")) == []
    # A fetch response may cut the last batch anywhere.
    head = b"".join(blobs[:3])
    for cut in range(len(blobs[3])):
        got = list(iter_batches(memoryview(head + blobs[3][:cut])))
        assert [b.base_offset for b in got] == [0, 10, 20], cut


def test_iter_batches_rejects_corruption_before_the_tail():
    a, b = encode_batch([(b"k", b"v")]), encode_batch([(b"k", b"w")], base_offset=1)
    bad = bytearray(a)
    struct.pack_into(">i", bad, 8, 10)  # batchLength below the 49-byte minimum
    expect(ErrorCode.CORRUPT_MESSAGE, lambda: list(iter_batches(bytes(bad) + b)))
    bad = bytearray(a)
    bad[-1] ^= 0xFF  # CRC
    expect(ErrorCode.CORRUPT_MESSAGE, lambda: list(iter_batches(bytes(bad) + b)))


# --- control records --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [ControlRecordType.COMMIT, ControlRecordType.ABORT])
def test_transaction_marker_batch(kind):
    blob = encode_control_batch(kind, producer_id=4000, producer_epoch=3, coordinator_epoch=17,
                                timestamp=1_700_000_000_123, base_offset=88, partition_leader_epoch=2)
    batch = decode_batch(blob)
    assert batch.is_control_batch and batch.is_transactional
    assert batch.attributes == CONTROL_FLAG_MASK | TRANSACTIONAL_FLAG_MASK  # uncompressed, CreateTime
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (4000, 3, -1)
    assert (batch.base_offset, batch.partition_leader_epoch, batch.records_count) == (88, 2, 1)
    assert batch.base_timestamp == batch.max_timestamp == 1_700_000_000_123
    (record,) = batch.records
    assert record.key == struct.pack(">hh", 0, kind) and record.value == bytes.fromhex("000000000011")
    assert record.headers == [] and record.offset == 88
    assert batch.control_type() == kind
    assert decode_control_key(record.key) == (0, kind)
    assert decode_end_txn_marker(record.value) == EndTransactionMarker(0, 17)

    # kafka-python reads it as a control record of the same kind.
    kp = DefaultRecordBatch(bytearray(blob))
    assert kp.validate_crc() and kp.is_control_batch and kp.is_transactional
    (kp_record,) = list(kp)
    assert kp_record.type == kind and kp_record.commit == (kind == ControlRecordType.COMMIT)


def test_control_key_and_marker_versions():
    assert encode_control_key(ControlRecordType.LEADER_CHANGE) == b"\x00\x00\x00\x02"
    # Later versions are parsed as version 0.
    assert decode_control_key(encode_control_key(1, version=3)) == (3, 1)
    assert decode_end_txn_marker(encode_end_txn_marker(9, version=1) + b"extra") == EndTransactionMarker(1, 9)
    expect(ErrorCode.CORRUPT_MESSAGE, decode_control_key, struct.pack(">hh", -1, 0))
    expect(ErrorCode.CORRUPT_MESSAGE, decode_control_key, b"\x00\x00\x01")
    expect(ErrorCode.CORRUPT_MESSAGE, decode_control_key, None)
    expect(ErrorCode.CORRUPT_MESSAGE, decode_end_txn_marker, b"\x00\x00\x00\x00\x00")
    expect(ErrorCode.CORRUPT_MESSAGE, decode_end_txn_marker, struct.pack(">hi", -2, 0))
    with pytest.raises(ValueError):
        encode_control_batch(ControlRecordType.LEADER_CHANGE, 1, 0, 0, 0)
    assert decode_batch(encode_batch([(b"k", b"v")])).control_type() is None


# --- recompression ----------------------------------------------------------------------------

@pytest.mark.parametrize("src", CODECS)
@pytest.mark.parametrize("dst", CODECS)
def test_recompress_keeps_everything_but_the_codec(src, dst):
    blob = encode_batch(sample_records(30), base_offset=500, compression=src, producer_id=42,
                        producer_epoch=1, base_sequence=7, transactional=True,
                        partition_leader_epoch=12, timestamp_type=1, max_timestamp=123456)
    before = decode_batch(blob)
    out = recompress(blob, dst)
    after = decode_batch(out)
    assert after.compression == dst
    assert after.attributes == (before.attributes & ~7) | dst
    assert after.records == before.records
    for name in ("base_offset", "partition_leader_epoch", "last_offset_delta", "base_timestamp",
                 "max_timestamp", "producer_id", "producer_epoch", "base_sequence", "records_count"):
        assert getattr(after, name) == getattr(before, name), name
    if src == dst == 0:
        assert out == blob
    assert DefaultRecordBatch(bytearray(out)).validate_crc()


def test_recompress_corrupt_and_control():
    blob = bytearray(encode_batch(sample_records(3), compression=2))
    blob[-3] ^= 0x10
    expect(ErrorCode.CORRUPT_MESSAGE, recompress, bytes(blob), 4)
    marker = encode_control_batch(ControlRecordType.ABORT, 1, 0, 5, 10)
    again = decode_batch(recompress(marker, 4))
    assert again.is_control_batch and again.control_type() == ControlRecordType.ABORT
    with pytest.raises(ValueError):
        recompress(marker, 9)


# --- kafka-python as the oracle ---------------------------------------------------------------

def kp_build(records, codec, *, transactional=False, producer=(-1, -1, -1)):
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=transactional,
        producer_id=producer[0], producer_epoch=producer[1], base_sequence=producer[2],
        batch_size=1 << 30)
    for offset, (key, value, headers, ts) in enumerate(records):
        assert builder.append(offset, timestamp=ts, key=key, value=value, headers=headers) is not None
    return bytes(builder.build())


def compressible_records(n=200):
    return [(b"key-%d" % (i % 17) if i % 9 else None,
             None if i % 13 == 12 else b"the same value again and again %d " % (i % 5) * 4,
             [("trace", b"abc"), ("n", None)] if i % 3 == 0 else [],
             1_600_000_000_000 + i * 3 - (i % 4) * 7)
            for i in range(n)]


@pytest.mark.parametrize("codec", CODECS)
def test_decodes_kafka_python_batches(codec):
    records = compressible_records()
    blob = kp_build(records, codec, transactional=True, producer=(99, 2, 1000))
    batch = decode_batch(blob)
    assert batch.compression == codec  # kafka-python sends uncompressed if it does not shrink
    assert batch.is_transactional and (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (99, 2, 1000)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in batch.records] == records
    assert batch.max_timestamp == max(r[3] for r in records)
    assert batch.base_timestamp == records[0][3]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_reads_our_batches(codec):
    records = compressible_records()
    blob = encode_batch(records, base_offset=3000, compression=codec, producer_id=99,
                        producer_epoch=2, base_sequence=1000, transactional=True,
                        partition_leader_epoch=4)
    kp = DefaultRecordBatch(bytearray(blob))
    assert kp.validate_crc()
    assert kp.compression_type == codec and kp.magic == 2 and kp.base_offset == 3000
    assert kp.leader_epoch == 4 and kp.producer_id == 99 and kp.base_sequence == 1000
    assert kp.last_offset == 3000 + len(records) - 1 and kp.records_count == len(records)
    assert kp.max_timestamp == max(r[3] for r in records)
    got = [(r.key, r.value, r.headers, r.timestamp, r.offset) for r in kp]
    assert got == [(k, v, h, ts, 3000 + i) for i, (k, v, h, ts) in enumerate(records)]


def test_kafka_python_reads_a_blob_of_our_batches():
    blobs = [encode_batch(compressible_records(20), base_offset=i * 20, compression=i) for i in range(5)]
    memory = MemoryRecords(b"".join(blobs))
    offsets = []
    while memory.has_next():
        batch = memory.next_batch()
        assert batch.validate_crc()
        offsets.extend(r.offset for r in batch)
    assert offsets == list(range(100))


def test_same_bytes_as_kafka_python_when_uncompressed():
    # Same logical content, same layout: byte for byte, except that kafka-python leaves
    # partitionLeaderEpoch at 0 where a producer (and we) send -1.
    records = compressible_records(50)
    ours = bytearray(encode_batch(records, partition_leader_epoch=0))
    assert bytes(ours) == kp_build(records, 0)


record_strategy = st.tuples(
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=300),
    st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=4),
    st.integers(0, 2**41),
)


@settings(max_examples=80, deadline=None)
@given(records=st.lists(record_strategy, min_size=1, max_size=30), codec=st.sampled_from(CODECS),
       base_offset=st.integers(0, 2**62))
def test_round_trip_property_against_kafka_python(records, codec, base_offset):
    blob = encode_batch(records, base_offset=base_offset, compression=codec)
    ours = decode_batch(blob)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in ours.records] == records
    assert [r.offset for r in ours.records] == [base_offset + i for i in range(len(records))]
    kp = DefaultRecordBatch(bytearray(blob))
    assert kp.validate_crc()
    assert [(r.key, r.value, r.headers, r.timestamp, r.offset) for r in kp] == [
        (k, v, h, ts, base_offset + i) for i, (k, v, h, ts) in enumerate(records)]
    back = decode_batch(kp_build(records, codec))
    assert [(r.key, r.value, r.headers, r.timestamp) for r in back.records] == records


def test_batch_is_a_plain_value():
    batch = decode_batch(encode_batch([(b"k", b"v", None, 1)]))
    assert isinstance(batch, Batch)
    assert batch == decode_batch(encode_batch([(b"k", b"v", None, 1)]))
    assert not hasattr(batch, "__dict__") and not hasattr(batch.records[0], "__dict__")


# --- record headers and ListOffsets by timestamp inside one batch ---

def _timestamped_batch(codec: int = 0, **kwargs) -> bytes:
    # Offsets 100, 101, 103 (a compaction gap) with timestamps t, t + 10, t + 5.
    records = [Record(0, 0, b"a", b"1"), Record(1, 10, b"b", b"2"), Record(3, 5, b"c", b"3")]
    return encode_batch(records, base_offset=100, base_timestamp=10_000, compression=codec,
                        **kwargs)


def test_record_headers_walk_every_record():
    data = _timestamped_batch()
    expected = [(r.offset_delta, r.timestamp_delta) for r in decode_batch(data).records]
    assert list(record_headers(data[RECORD_BATCH_OVERHEAD:], 3)) == expected == \
        [(0, 0), (1, 10), (3, 5)]


def test_record_headers_stop_where_asked_and_report_truncation():
    section = _timestamped_batch()[RECORD_BATCH_OVERHEAD:]
    walk = record_headers(section, 3)
    assert next(walk) == (0, 0)
    assert list(record_headers(section[:-4], 2)) == [(0, 0), (1, 10)]
    with pytest.raises(KafkaError) as error:
        list(record_headers(section[:-4] + b"\xff", 4))
    assert error.value.code == ErrorCode.CORRUPT_MESSAGE


@pytest.mark.parametrize("codec", CODECS)
def test_first_record_at_or_after(codec):
    data = _timestamped_batch(codec)
    info = read_header(data)
    assert first_record_at_or_after(data, info, 0, 0) == (100, 10_000)
    assert first_record_at_or_after(data, info, 10_001, 0) == (101, 10_010)
    assert first_record_at_or_after(data, info, 10_003, 102) == (103, 10_005)
    assert first_record_at_or_after(data, info, 10_011, 0) is None
    assert first_record_at_or_after(data, info, 0, 104) is None


def test_first_record_at_or_after_in_log_append_time_batches():
    data = _timestamped_batch(timestamp_type=1, max_timestamp=50_000)
    info = read_header(data)
    assert first_record_at_or_after(data, info, 20_000, 0) == (100, 50_000)
    assert first_record_at_or_after(data, info, 20_000, 101) == (101, 50_000)
    assert first_record_at_or_after(data, info, 50_001, 0) is None
    assert first_record_at_or_after(data, info, 0, 104) is None


def test_first_record_at_or_after_answers_unreadable_records_at_batch_granularity():
    good = _timestamped_batch()
    info = read_header(good)
    # The last record cut after its length: the records before it are still found exactly; a
    # search that must read it is answered with the batch's first offset and max timestamp.
    torn = good[:-8]
    assert first_record_at_or_after(torn, info, 10_001, 0) == (101, 10_010)
    assert first_record_at_or_after(torn, info, 10_001, 102) == (102, 10_010)
    # A compressed stream that does not decompress: batch granularity too.
    gzip_batch = bytearray(_timestamped_batch(1))
    gzip_batch[RECORD_BATCH_OVERHEAD:] = b"\x00" * (len(gzip_batch) - RECORD_BATCH_OVERHEAD)
    assert first_record_at_or_after(bytes(gzip_batch), read_header(gzip_batch), 10_006, 0) == \
        (100, 10_010)
