"""File regions (log/files.py): what a Fetch response from a disk log holds until it is written.

Every region of a segment file shares one duplicated descriptor (SharedDescriptor), so the
descriptors a broker holds are bounded by its segment files, not by the fetches waiting to be
sent: a client that never reads its responses cannot exhaust them. A region stays readable
after retention deletes its file, and the shared descriptor goes with the last region.
"""

import os

import pytest

from record_batches import make_batch
from trioka.log.files import DiskFiles, FileRegion, SharedDescriptor
from trioka.log.partition import PartitionLog

NOW = 1_700_000_000_000
VALUE = b"v" * 10_000
BATCH = make_batch([VALUE] * 10)          # about 100 KB: read as a region, not copied


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"),
                                reason="counts descriptors through /proc")


@pytest.fixture
def log(tmp_path):
    files = DiskFiles(str(tmp_path / "data"))
    partition = PartitionLog("t", 0, "t-0", files, {"segment.bytes": str(1 << 20)}, now_ms=NOW)
    for _ in range(3):
        partition.append(BATCH, now_ms=NOW)
    yield partition
    partition.close()


def regions_of(read) -> list:
    return [chunk for chunk in read.chunks if type(chunk) is FileRegion]


def test_regions_of_one_segment_share_one_descriptor(log):
    expected = bytes(log.read(0, 1 << 20).records)
    log.read(0, 1 << 20, zero_copy=True)      # indexes loaded: only regions open files now
    before = open_fds()
    held = [log.read(0, 1 << 20, zero_copy=True) for _ in range(500)]
    regions = [region for read in held for region in regions_of(read)]
    assert len(regions) == 500
    assert len({region.fd for region in regions}) == 1
    assert open_fds() == before + 1
    for region in regions:
        assert region.read() == expected
        region.close()
    assert open_fds() == before
    assert all(region.fd == -1 for region in regions)


def test_each_segment_file_has_at_most_one_shared_descriptor(log):
    log.roll(NOW)
    log.append(BATCH, now_ms=NOW)
    for offset in (0, 30):
        log.read(offset, 1 << 20, zero_copy=True)
    before = open_fds()
    held = [log.read(offset, 1 << 20, zero_copy=True) for offset in (0, 30) for _ in range(50)]
    assert len({region.fd for read in held for region in regions_of(read)}) == 2
    assert open_fds() == before + 2
    del held
    assert open_fds() == before


def test_a_region_outlives_the_deletion_of_its_segment(log):
    expected = log.read(0, 1 << 20).records
    region, = regions_of(log.read(0, 1 << 20, zero_copy=True))
    log.roll(NOW)
    log.append(BATCH, now_ms=NOW)
    log.delete_records_before(30)          # the first segment is deleted, its file closed
    assert log.segments[0].base_offset == 30
    assert region.read() == bytes(expected)
    # A new region of the same offset number after the close is not the old file's duplicate.
    again, = regions_of(log.read(30, 1 << 20, zero_copy=True))
    assert again.shared is not region.shared
    region.close()
    again.close()


def test_a_closed_descriptor_number_reused_by_another_file_gets_its_own_duplicate(tmp_path):
    files = DiskFiles(str(tmp_path))
    first = files.open("a.log")
    first.append(b"first file")
    region = FileRegion(first.fileno(), 0, 10)
    number = first.fileno()
    first.close()
    second = files.open("b.log")
    second.append(b"other data")
    assert second.fileno() == number        # the kernel hands out the lowest free number
    other = FileRegion(second.fileno(), 0, 10)
    assert region.read() == b"first file" and other.read() == b"other data"
    region.close()
    other.close()
    second.close()
    assert SharedDescriptor.by_source.get(number) is None


@pytest.mark.parametrize("max_bytes", [250_000, 350_000, 1 << 20])
def test_large_batches_with_no_index_entry_between_are_a_region_of_whole_batches(tmp_path,
                                                                                 max_bytes):
    # Batches of about 100 KB and an index entry every 1 MB: a read that takes more than one
    # batch but not all finds no entry inside its range. It is still a region (sent with
    # sendfile, never read into memory on the event loop), ending on a batch boundary.
    files = DiskFiles(str(tmp_path / "data"))
    partition = PartitionLog("t", 0, "t-0", files, {"index.interval.bytes": str(1 << 20)},
                             now_ms=NOW)
    for _ in range(5):
        partition.append(BATCH, now_ms=NOW)
    try:
        read = partition.read(0, max_bytes, zero_copy=True)
        chunks = read.chunks
        assert all(type(chunk) is FileRegion for chunk in chunks), chunks
        size = sum(len(chunk) for chunk in chunks)
        assert size % len(BATCH) == 0 and 0 < size <= max(max_bytes, len(BATCH))
        assert size // len(BATCH) == min(5, max(1, max_bytes // len(BATCH)))
        # And the same bytes as a copying read.
        assert b"".join(chunk.read() for chunk in chunks) == \
            bytes(partition.read(0, max_bytes).records)
        for chunk in chunks:
            chunk.close()
    finally:
        partition.close()
