"""Record batch v2 header validation and patching (trioka.log.batch).

`make_batch` (tests/record_batches.py) builds uncompressed v2 batches from scratch for all log
tests, independent of trioka.log.records.
"""

import struct

import pytest

from record_batches import make_batch
from trioka.log import batch
from trioka.log.batch import AppendOrigin, BatchScan, validate_batches
from trioka.wire.errors import ErrorCode, KafkaError


def header(data, position=0):
    return batch.read_header(data, position)


def error_of(records, **kwargs) -> ErrorCode:
    with pytest.raises(KafkaError) as info:
        validate_batches(records, **kwargs)
    return info.value.code


# ----------------------------------------------------------------------------------------------

def test_header_struct_is_61_bytes():
    assert batch.HEADER.size == 61 == batch.HEADER_SIZE


def test_validate_returns_header_fields():
    data = make_batch([b"a", b"b", b"c"], base_timestamp=5_000, timestamps=[5_000, 7_000, 6_000],
                      producer_id=42, producer_epoch=3, base_sequence=10)
    (info,) = validate_batches(data)
    assert info.position == 0
    assert info.size == len(data)
    assert info.count == 3 and info.records_count == 3
    assert info.max_timestamp == 7_000 and info.base_timestamp == 5_000
    assert (info.producer_id, info.producer_epoch, info.base_sequence) == (42, 3, 10)
    assert info.last_sequence == 12
    assert not info.is_transactional and not info.is_control
    assert info.compression == 0


def test_validate_accepts_memoryview_slice_without_copy():
    data = b"junk" + make_batch([b"x"]) + b"tail"
    view = memoryview(data)[4:-4]
    (info,) = validate_batches(view)
    assert info.size == len(view)


def test_validate_flags():
    data = make_batch([b"a"], attributes=batch.TRANSACTIONAL_FLAG_MASK | 3, producer_id=1,
                      producer_epoch=0, base_sequence=0)
    (info,) = validate_batches(data)
    assert info.is_transactional and info.compression == 3


def test_bad_crc_is_corrupt_message():
    data = bytearray(make_batch([b"hello"]))
    data[-3] ^= 0xFF
    assert error_of(bytes(data)) is ErrorCode.CORRUPT_MESSAGE


def test_crc_covers_attributes_but_not_base_offset_or_epoch():
    data = bytearray(make_batch([b"hello"]))
    struct.pack_into(">q", data, 0, 12345)
    struct.pack_into(">i", data, 12, 7)
    validate_batches(bytes(data))
    data[22] ^= 0x01  # attributes low byte
    assert error_of(bytes(data)) is ErrorCode.CORRUPT_MESSAGE


def test_truncated_batch_is_corrupt_message():
    data = make_batch([b"hello", b"world"])
    assert error_of(data[:-1]) is ErrorCode.CORRUPT_MESSAGE
    assert error_of(data[:40]) is ErrorCode.CORRUPT_MESSAGE  # not even a header
    assert error_of(data + data[:70], origin=AppendOrigin.COORDINATOR) is ErrorCode.CORRUPT_MESSAGE


def test_batch_length_below_minimum_is_corrupt():
    data = bytearray(make_batch([b"x"]))
    struct.pack_into(">i", data, 8, 20)
    assert error_of(bytes(data)) is ErrorCode.CORRUPT_MESSAGE


def test_legacy_magic_is_invalid_record_and_unknown_magic_is_corrupt():
    assert error_of(make_batch([b"x"], magic=1)) is ErrorCode.INVALID_RECORD
    assert error_of(make_batch([b"x"], magic=0)) is ErrorCode.INVALID_RECORD
    assert error_of(make_batch([b"x"], magic=9)) is ErrorCode.CORRUPT_MESSAGE


def test_client_rules():
    assert error_of(make_batch([b"a", b"b"], records_count=3)) is ErrorCode.INVALID_RECORD
    assert error_of(make_batch([b"a"], records_count=0, last_offset_delta=0)) is ErrorCode.INVALID_RECORD
    control = make_batch([b"a"], attributes=batch.CONTROL_FLAG_MASK | batch.TRANSACTIONAL_FLAG_MASK)
    assert error_of(control) is ErrorCode.INVALID_RECORD
    assert error_of(make_batch([b"a"], producer_id=5, producer_epoch=0)) is ErrorCode.INVALID_RECORD
    assert error_of(make_batch([b"a"], attributes=batch.TIMESTAMP_TYPE_MASK)) is ErrorCode.INVALID_TIMESTAMP
    two = make_batch([b"a"]) + make_batch([b"b"])
    assert error_of(two) is ErrorCode.INVALID_RECORD
    # The broker's own appends may carry control batches and several batches.
    infos = validate_batches(control + two, origin=AppendOrigin.COORDINATOR)
    assert [i.position for i in infos] == [0, len(control), len(control) + len(two) // 2]
    assert validate_batches(b"") == []


def test_assign_offsets_patches_base_offset_and_epoch_only():
    first = make_batch([b"a", b"b", b"c"])
    second = make_batch([b"d", b"e"])
    buf = bytearray(first + second)
    infos = validate_batches(bytes(buf), origin=AppendOrigin.COORDINATOR)
    next_offset = batch.assign_offsets(buf, infos, 100, 7)
    assert next_offset == 105
    assert buf[8:12] == first[8:12] and buf[16:] [:len(first) - 16] == first[16:]
    again = validate_batches(bytes(buf), origin=AppendOrigin.COORDINATOR)  # CRCs still good
    assert [(i.base_offset, i.last_offset, i.partition_leader_epoch) for i in again] == \
        [(100, 102, 7), (103, 104, 7)]
    assert [(i.base_offset, i.partition_leader_epoch) for i in infos] == [(100, 7), (103, 7)]


def test_set_log_append_time_recomputes_crc():
    buf = bytearray(make_batch([b"a", b"b"], base_timestamp=10, timestamps=[10, 20]))
    (info,) = validate_batches(bytes(buf))
    batch.set_log_append_time(buf, info, 99_999)
    (after,) = validate_batches(bytes(buf), origin=AppendOrigin.COORDINATOR)
    assert after.is_log_append_time
    assert after.max_timestamp == 99_999 == info.max_timestamp
    assert after.base_timestamp == 10


def test_batch_scan_stops_at_torn_tail():
    data = make_batch([b"a"]) + make_batch([b"b" * 100])
    torn = data + make_batch([b"c" * 50])[:-10]
    pread = lambda position, n: torn[position:position + n]  # noqa: E731
    scan = BatchScan(pread, 0, len(torn), verify_crc=True, chunk_size=64)
    assert len(list(scan)) == 2
    assert scan.valid_end == len(data)
    assert "torn" in scan.stop_reason


def test_batch_scan_crc_check_only_when_asked():
    good = make_batch([b"a"])
    bad = bytearray(make_batch([b"b"]))
    bad[-1] ^= 1
    data = good + bytes(bad) + good
    pread = lambda position, n: data[position:position + n]  # noqa: E731
    checked = BatchScan(pread, 0, len(data), verify_crc=True)
    assert len(list(checked)) == 1 and checked.valid_end == len(good)
    assert "CRC" in checked.stop_reason
    unchecked = BatchScan(pread, 0, len(data), verify_crc=False, chunk_size=61)
    assert len(list(unchecked)) == 3 and unchecked.valid_end == len(data)
    assert unchecked.stop_reason is None


def test_batch_scan_garbage_tail():
    data = make_batch([b"a"]) + b"\x00" * 100
    pread = lambda position, n: data[position:position + n]  # noqa: E731
    scan = BatchScan(pread, 0, len(data), verify_crc=False)
    assert len(list(scan)) == 1
    assert scan.valid_end == len(data) - 100


def test_peek_codec_and_header_before_validation():
    """Produce reads the codec and the header of a batch before validating it."""
    data = make_batch([b"v"], attributes=4 | 0x10, producer_id=7, producer_epoch=2,
                      base_sequence=0)
    assert batch.peek_codec(data) == 4
    assert batch.peek_codec(data[:23]) == 4       # the attributes are all it needs
    assert batch.peek_codec(data[:22]) is None
    info = batch.peek_header(data)
    assert info.is_transactional and (info.producer_id, info.producer_epoch) == (7, 2)
    assert batch.peek_header(memoryview(data)[:61]).producer_id == 7
    assert batch.peek_header(data[:60]) is None
