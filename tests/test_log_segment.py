"""LogSegment, OffsetIndex, TimeIndex and the file layer (trioka.log.segment/index/files)."""

import os
import struct

import pytest

from record_batches import make_batch
from trioka.log import batch
from trioka.log.batch import AppendOrigin, validate_batches
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.segment import LogSegment, parse_segment_file_name, segment_file_name


@pytest.fixture(params=["disk", "memory"])
def files(request, tmp_path):
    if request.param == "disk":
        return DiskFiles(str(tmp_path / "data"))
    return MemoryFiles()


def new_segment(files, base_offset=0, interval=100, index_bytes=10 * 1024 * 1024):
    files.mkdir("t-0")
    return LogSegment.create(files, "t-0", base_offset, index_interval_bytes=interval,
                             segment_index_bytes=index_bytes, created_ms=0)


def reopen(files, base_offset=0, interval=100):
    return LogSegment.open(files, "t-0", base_offset, index_interval_bytes=interval,
                           segment_index_bytes=10 * 1024 * 1024, created_ms=0)


def append_batches(segment, count, *, start=None, values_per_batch=2, value_size=50,
                   timestamp=1_000):
    """Append `count` batches; returns [(base_offset, last_offset, bytes)]."""
    offset = segment.next_offset if start is None else start
    appended = []
    for i in range(count):
        data = bytearray(make_batch([bytes([65 + i % 26]) * value_size] * values_per_batch,
                                    base_timestamp=timestamp + i * 10))
        infos = validate_batches(bytes(data))
        batch.assign_offsets(data, infos, offset, 0)
        last = offset + values_per_batch - 1
        segment.append(data, offset, last, infos[0].max_timestamp, offset)
        appended.append((offset, last, bytes(data)))
        offset = last + 1
    return appended


def test_file_names():
    assert segment_file_name(368769, ".log") == "00000000000000368769.log"
    assert parse_segment_file_name("00000000000000368769.timeindex") == (368769, ".timeindex")
    assert parse_segment_file_name("leader-epoch-checkpoint") is None


def test_disk_append_is_unbuffered(tmp_path):
    files = DiskFiles(str(tmp_path))
    f = files.open("x.log")
    assert f.append(b"abc") == 0
    assert f.append(b"defg") == 3
    # Visible to an independent reader at once: nothing waits in a Python buffer.
    assert (tmp_path / "x.log").read_bytes() == b"abcdefg"
    assert f.pread(2, 3) == b"cde"
    assert f.fileno() is not None
    f.truncate(4)
    assert f.size == 4 and (tmp_path / "x.log").read_bytes() == b"abcd"
    f.close()


def test_memory_files_basics():
    files = MemoryFiles()
    files.mkdir("a/b")
    f = files.open("a/b/x.log")
    f.append(b"hello")
    assert files.open("a/b/x.log").pread(1, 3) == b"ell"
    assert f.fileno() is None
    files.write_atomic("a/meta", b"1")
    assert sorted(files.listdir("a")) == ["b", "meta"]
    files.rename("a", "c")
    assert files.read_small("c/meta") == b"1" and files.size_of("c/b/x.log") == 5
    files.remove_tree("c")
    assert not files.exists("c/b/x.log") and not files.exists("c")


def test_append_and_read_whole_batches(files):
    segment = new_segment(files)
    appended = append_batches(segment, 20)
    assert segment.next_offset == 40
    assert segment.size == sum(len(b) for _, _, b in appended)
    # Read from an offset in the middle of a batch: that whole batch comes first.
    data, exhausted = segment.read(11, 10_000)
    assert bytes(data) == b"".join(b for _, _, b in appended[5:])
    assert exhausted
    # max_bytes stops at whole batches.
    size = len(appended[0][2])
    data, exhausted = segment.read(0, size * 3 + size // 2)
    assert bytes(data) == b"".join(b for _, _, b in appended[:3])
    assert not exhausted
    # The first batch comes whole even when bigger than max_bytes (KIP-74) ...
    data, _ = segment.read(4, 10)
    assert bytes(data) == appended[2][2]
    # ... unless the caller says otherwise.
    assert segment.read(4, 10, min_one_batch=False) == (b"", False)
    # Past the end.
    assert segment.read(40, 1000) == (b"", True)
    # max_offset stops before batches starting at or after it.
    data, exhausted = segment.read(0, 10_000, max_offset=6)
    assert bytes(data) == b"".join(b for _, _, b in appended[:3]) and not exhausted


def test_sparse_index_entries(files):
    segment = new_segment(files, interval=300)
    appended = append_batches(segment, 30)
    batch_size = len(appended[0][2])
    assert batch_size > 100
    entries = list(zip(segment.offset_index.relative_offsets, segment.offset_index.positions))
    assert entries, "expected index entries"
    # Every entry points at the start of a batch and names that append's last offset.
    starts = {}
    position = 0
    for base, last, data in appended:
        starts[position] = last
        position += len(data)
    for relative, position in entries:
        assert starts[position] == relative
    # Entries appear roughly every index.interval.bytes.
    gaps = [b - a for a, b in zip([0] + [p for _, p in entries], [p for _, p in entries])]
    assert all(300 < gap <= 300 + 2 * batch_size for gap in gaps)
    # The file has Kafka's layout: int32 relative offset, int32 position.
    raw = files.read_small("t-0/00000000000000000000.index")
    assert len(raw) == 8 * len(entries)
    assert struct.unpack_from(">ii", raw, 0) == entries[0]
    # Time index entries too: int64 timestamp, int32 relative offset.
    raw_time = files.read_small("t-0/00000000000000000000.timeindex")
    assert len(raw_time) % 12 == 0 and len(raw_time) > 0
    for base, last, data in appended:
        assert segment.translate_offset(base)[0] == segment.translate_offset(last)[0]


def test_base_offset_nonzero_and_relative_offsets(files):
    segment = new_segment(files, base_offset=1_000_000, interval=0)
    appended = append_batches(segment, 5)
    assert appended[0][0] == 1_000_000
    assert list(segment.offset_index.relative_offsets) == [3, 5, 7, 9]
    assert segment.translate_offset(1_000_004)[1].base_offset == 1_000_004
    assert segment.translate_offset(999_999)[1].base_offset == 1_000_000


@pytest.mark.parametrize("damage", ["delete", "odd_size", "garbage", "past_end"])
def test_index_rebuilt_when_missing_or_corrupt(files, damage):
    segment = new_segment(files, interval=150)
    appended = append_batches(segment, 25)
    segment.close()
    expected = list(zip(segment.offset_index.relative_offsets, segment.offset_index.positions))
    path = "t-0/00000000000000000000.index"
    if damage == "delete":
        files.remove(path)
    elif damage == "odd_size":
        files.open(path).append(b"\x00\x01\x02")
    elif damage == "garbage":
        files.write_atomic(path, struct.pack(">iiii", 5, 100, 3, 50))  # decreasing
    else:
        files.write_atomic(path, struct.pack(">ii", 1, 10_000_000))  # beyond the log
    segment = reopen(files)
    segment.load_tail()
    assert list(zip(segment.offset_index.relative_offsets, segment.offset_index.positions)) == expected
    assert files.size_of(path) == 8 * len(expected)
    assert segment.next_offset == 50
    data, _ = segment.read(30, 1_000_000)
    assert bytes(data) == b"".join(b for _, _, b in appended[15:])


def test_time_index_rebuilt_when_corrupt(files):
    segment = new_segment(files, interval=150)
    append_batches(segment, 25)
    segment.close()
    expected = list(segment.time_index.timestamps)
    files.write_atomic("t-0/00000000000000000000.timeindex", b"\x00" * 13)
    segment = reopen(files)
    segment.load_tail()
    assert list(segment.time_index.timestamps) == expected


def test_recover_truncates_torn_tail_and_keeps_offsets(files):
    segment = new_segment(files)
    appended = append_batches(segment, 10)
    good_size = segment.size
    half = make_batch([b"z" * 500])[:200]
    segment.log.append(half)
    segment.close()
    segment = reopen(files)
    assert segment.recover() == 200
    assert segment.size == good_size and segment.next_offset == 20
    assert files.size_of("t-0/00000000000000000000.log") == good_size
    data, _ = segment.read(0, 1_000_000)
    assert bytes(data) == b"".join(b for _, _, b in appended)
    # And appends continue at the same offsets.
    more = append_batches(segment, 1)
    assert more[0][0] == 20


def test_recover_truncates_at_corrupt_batch(files):
    segment = new_segment(files)
    appended = append_batches(segment, 6)
    segment.close()
    position = sum(len(b) for _, _, b in appended[:4]) + 70  # inside batch 5's records
    raw = bytearray(files.read_small("t-0/00000000000000000000.log"))
    raw[position] ^= 0xFF
    log = files.open("t-0/00000000000000000000.log")
    log.truncate(0)
    log.append(bytes(raw))
    log.close()
    segment = reopen(files)
    segment.recover()
    assert segment.next_offset == 8
    assert segment.size == sum(len(b) for _, _, b in appended[:4])


def test_load_tail_after_clean_close(files):
    segment = new_segment(files, interval=200)
    append_batches(segment, 15, timestamp=50_000)
    max_ts = segment.max_timestamp
    segment.close()
    segment = reopen(files, interval=200)
    assert segment.load_tail() == 0
    assert segment.next_offset == 30
    assert segment.max_timestamp == max_ts
    assert segment.time_index.last_entry()[0] == max_ts  # the entry added at close


def test_should_roll(files):
    segment = new_segment(files)
    kwargs = dict(incoming_max_timestamp=1_000, incoming_last_offset=1, now_ms=0,
                  segment_bytes=1000, segment_ms=10_000)
    assert not segment.should_roll(incoming_size=5000, **kwargs)  # never roll an empty segment
    append_batches(segment, 1, timestamp=1_000)
    size = segment.size
    assert not segment.should_roll(incoming_size=1000 - size, **kwargs)
    assert segment.should_roll(incoming_size=1000 - size + 1, **kwargs)
    # Time: measured from the first batch's timestamp to the incoming max timestamp.
    kwargs.update(incoming_max_timestamp=11_000)
    assert not segment.should_roll(incoming_size=1, **kwargs)
    kwargs.update(incoming_max_timestamp=11_002)
    assert segment.should_roll(incoming_size=1, **kwargs)
    # Relative offsets must fit an int32.
    kwargs.update(incoming_max_timestamp=1_000, incoming_last_offset=2**31)
    assert segment.should_roll(incoming_size=1, **kwargs)


def test_should_roll_when_index_full(files):
    segment = new_segment(files, interval=0, index_bytes=36)  # 4 offset, 3 time entries
    append_batches(segment, 3)
    kwargs = dict(incoming_size=1, incoming_max_timestamp=1_000, incoming_last_offset=10,
                  now_ms=0, segment_bytes=10**9, segment_ms=10**9)
    assert not segment.should_roll(**kwargs)
    append_batches(segment, 1, timestamp=5_000)  # a 3rd time-index entry: full
    assert len(segment.offset_index) == 3 and len(segment.time_index) == 3
    assert segment.should_roll(**kwargs)


def test_time_index_lookup(files):
    segment = new_segment(files, interval=0)
    for i, ts in enumerate([100, 300, 200, 500, 400]):
        data = bytearray(make_batch([b"x"], base_timestamp=ts))
        infos = validate_batches(bytes(data))
        batch.assign_offsets(data, infos, i, 0)
        segment.append(data, i, i, ts, i)
    assert segment.find_batch_by_timestamp(150, 0).base_offset == 1
    assert segment.find_batch_by_timestamp(300, 0).base_offset == 1
    assert segment.find_batch_by_timestamp(301, 0).base_offset == 3
    assert segment.find_batch_by_timestamp(50, 0).base_offset == 0
    assert segment.find_batch_by_timestamp(501, 0) is None
    assert segment.find_batch_by_timestamp(150, 2).base_offset == 2
    assert segment.max_timestamp == 500 and segment.offset_of_max_timestamp == 3


def test_truncate_to(files):
    segment = new_segment(files, interval=100)
    appended = append_batches(segment, 10)
    removed = segment.truncate_to(9)  # offset 9 is in the batch 8-9
    assert removed == sum(len(b) for _, _, b in appended[4:])
    assert segment.next_offset == 8
    assert all(o < 8 for o in segment.offset_index.relative_offsets)
    assert all(p < segment.size for p in segment.offset_index.positions)
    assert append_batches(segment, 1)[0][0] == 8


def test_coordinator_batches_many_per_append(files):
    segment = new_segment(files, interval=0)
    data = bytearray(make_batch([b"a"]) + make_batch([b"b", b"c"]))
    infos = validate_batches(bytes(data), origin=AppendOrigin.COORDINATOR)
    batch.assign_offsets(data, infos, 0, 0)
    segment.append(data, 0, 2, 1_001, 1)
    assert segment.translate_offset(2)[1].base_offset == 1


def test_delete_removes_files(files):
    segment = new_segment(files)
    append_batches(segment, 2)
    segment.delete()
    assert files.listdir("t-0") == []


def test_disk_write_atomic_and_lock(tmp_path):
    files = DiskFiles(str(tmp_path))
    files.write_atomic("meta", b"one")
    files.write_atomic("meta", b"two")
    assert files.read_small("meta") == b"two"
    assert not os.path.exists(tmp_path / "meta.tmp")
    assert files.lock()
    other = DiskFiles(str(tmp_path))
    assert not other.lock()
    files.unlock()
    assert other.lock()
    other.unlock()


def test_inactive_segment_index_checked_on_first_use(files):
    """A segment that is not the last one is opened without any scan; its index is loaded and
    checked only when first used, and rebuilt then if it points past the `.log`."""
    segment = new_segment(files, interval=150)
    appended = append_batches(segment, 10)
    segment.close()
    files.write_atomic("t-0/00000000000000000000.index", struct.pack(">ii", 3, 1_000_000))
    segment = reopen(files)
    segment.next_offset = 20  # what PartitionLog sets from the next segment's base offset
    data, _ = segment.read(6, 1_000_000)
    assert bytes(data) == b"".join(b for _, _, b in appended[3:])
    assert files.size_of("t-0/00000000000000000000.index") % 8 == 0
    assert all(p < segment.size for p in segment.offset_index.positions)
