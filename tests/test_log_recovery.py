"""Log recovery: what a crash leaves in a partition's files, and what opening it again keeps.

A dying broker (SIGKILL, a power cut) can leave the `.log` cut anywhere inside its last batch, and
index files (`.index`, `.timeindex`) missing, cut short or scrambled. Opening the partition again
keeps every complete batch, cuts the torn tail (logging a warning as Kafka does), rebuilds the
indexes from the `.log`, and gives the same answers as before: the log end offset, every record at
its offset, lookups by timestamp. Appends after recovery continue from the log end offset, so no
offset is ever given twice.
"""

import logging
import os
import shutil
import struct

import pytest

from record_batches import make_batch
from trioka.log import batch
from trioka.log.batch import AppendOrigin
from trioka.log.files import DiskFiles
from trioka.log.partition import PartitionLog
from trioka.log.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_file_name

NOW = 1_700_000_000_000
DIRECTORY = "orders-0"
# Small segments and a small index interval: several segments, each with index entries.
CONFIG = {"segment.bytes": "800", "index.interval.bytes": "100"}


def open_log(root, **kwargs) -> PartitionLog:
    return PartitionLog("orders", 0, DIRECTORY, DiskFiles(str(root)), CONFIG, now_ms=NOW,
                        **kwargs)


def build(root, batches: int = 16) -> tuple[PartitionLog, list[bytes]]:
    """A log of `batches` batches of 1 to 3 records with increasing timestamps, closed cleanly.
    Returns it and the value of every record, by offset."""
    log = open_log(root)
    values = []
    for i in range(batches):
        batch_values = [f"r{len(values) + j}-".encode() + b"x" * (20 + 7 * i)
                        for j in range(1 + i % 3)]
        log.append(make_batch(batch_values, base_timestamp=NOW + 1000 * i), now_ms=NOW)
        values.extend(batch_values)
    log.close()
    return log, values


def records_of(log: PartitionLog) -> list[tuple[int, bytes]]:
    """(offset, value) of every record readable from the log start, batch by batch."""
    from trioka.log.records import iter_batches
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        read = log.read(offset, 1 << 20)
        batches = list(iter_batches(bytes(read.records)))
        assert batches, f"nothing readable at offset {offset}"
        for b in batches:
            out.extend((r.offset, r.value) for r in b.records)
            offset = b.next_offset
    return out


def segment_path(root, base: int, suffix: str) -> str:
    return os.path.join(root, DIRECTORY, segment_file_name(base, suffix))


def batch_bounds(path: str) -> list[tuple[int, int, int]]:
    """(position, size, next offset) of every batch of a `.log` file."""
    with open(path, "rb") as f:
        data = f.read()
    return [(h.position, h.size, h.next_offset)
            for h in batch.validate_batches(data, origin=AppendOrigin.COORDINATOR)]


def copy_dir(source, target) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


# ------------------------------------------------------------------------------ torn tails

@pytest.mark.parametrize("shutdown", ["unclean", "unclean-from-last-segment", "clean"])
def test_a_tail_torn_at_every_byte_of_the_last_batch_keeps_every_complete_batch(
        tmp_path, shutdown, caplog):
    original = tmp_path / "original"
    log, values = build(original)
    last_base = log.active_segment.base_offset
    last_log = segment_path(original, last_base, LOG_SUFFIX)
    bounds = batch_bounds(last_log)
    position, size, _ = bounds[-1]
    complete_end = bounds[-2][2] if len(bounds) > 1 else last_base
    assert size > 61
    recovery_point = {"unclean": 0, "unclean-from-last-segment": last_base}.get(shutdown, 0)
    expected = [(offset, value) for offset, value in enumerate(values) if offset < complete_end]

    for cut in range(position, position + size):
        work = tmp_path / "work"
        copy_dir(original, work)
        with open(segment_path(work, last_base, LOG_SUFFIX), "r+b") as f:
            f.truncate(cut)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trioka.log"):
            recovered = open_log(work, clean_shutdown=shutdown == "clean",
                                 recovery_point=recovery_point)
        assert recovered.log_end_offset == complete_end, cut
        assert recovered.high_watermark == complete_end, cut
        assert records_of(recovered) == expected, cut
        assert os.path.getsize(segment_path(work, last_base, LOG_SUFFIX)) == position, cut
        if cut > position:
            # Kafka's warning, naming the segment and where it was cut.
            assert any("Found invalid messages in log segment" in r.getMessage()
                       and r.levelno == logging.WARNING for r in caplog.records), cut
        # The next append takes the next offset: none is given twice.
        result = recovered.append(make_batch([b"after"], base_timestamp=NOW + 10**6),
                                  now_ms=NOW)
        assert result.base_offset == complete_end, cut
        recovered.close()
        again = open_log(work, clean_shutdown=True)
        assert records_of(again) == expected + [(complete_end, b"after")], cut
        again.close()


def test_a_torn_tail_in_an_earlier_segment_drops_the_segments_after_it(tmp_path, caplog):
    """Offsets must stay contiguous: a bad batch in a segment that is not the last one ends
    the log there (Kafka deletes the later segments as part of recovery)."""
    log, values = build(tmp_path)
    bases = [s.base_offset for s in log.segments]
    assert len(bases) >= 3
    victim = bases[1]
    bounds = batch_bounds(segment_path(tmp_path, victim, LOG_SUFFIX))
    position, _, _ = bounds[-1]
    with open(segment_path(tmp_path, victim, LOG_SUFFIX), "r+b") as f:
        f.truncate(position + 30)
    with caplog.at_level(logging.INFO, logger="trioka.log"):
        recovered = open_log(tmp_path, recovery_point=0)
    end = bounds[-2][2] if len(bounds) > 1 else victim
    assert recovered.log_end_offset == end
    assert records_of(recovered) == [(o, v) for o, v in enumerate(values) if o < end]
    assert [s.base_offset for s in recovered.segments] == bases[:2]
    messages = [r.getMessage() for r in caplog.records]
    assert any("Corruption found in segment" in m for m in messages), messages
    assert any("Recovering unflushed segment" in m for m in messages), messages


def test_a_batch_with_a_bad_crc_is_cut_with_everything_after_it(tmp_path):
    log, values = build(tmp_path)
    last_base = log.active_segment.base_offset
    path = segment_path(tmp_path, last_base, LOG_SUFFIX)
    bounds = batch_bounds(path)
    position, size, _ = bounds[-2] if len(bounds) > 1 else bounds[-1]
    with open(path, "r+b") as f:
        f.seek(position + size - 3)
        byte = f.read(1)
        f.seek(position + size - 3)
        f.write(bytes([byte[0] ^ 0x55]))
    recovered = open_log(tmp_path, recovery_point=last_base)
    assert recovered.log_end_offset == (bounds[-3][2] if len(bounds) > 2 else last_base)
    assert records_of(recovered) == [(o, v) for o, v in enumerate(values)
                                     if o < recovered.log_end_offset]


# -------------------------------------------------------------------------------- indexes

def lookups(log: PartitionLog, values) -> dict:
    """What reads by offset and by timestamp answer, for every offset and batch timestamp."""
    answers = {}
    for offset in range(len(values)):
        read = log.read(offset, 1)
        first = batch.validate_batches(bytes(read.records), origin=AppendOrigin.COORDINATOR)[0]
        answers[("offset", offset)] = (first.base_offset, first.last_offset)
    for i in range(-1, 18):
        answers[("time", i)] = log.offset_for_timestamp(NOW + 1000 * i)
    answers["max"] = log.max_timestamp_offset()
    return answers


def damage(path: str, how: str) -> None:
    """Damage an index file the ways a crash or a disk can: gone, cut inside an entry, zeroed
    (Kafka preallocates index files with zeros), garbage, entries out of order, or an entry
    pointing past the end of its segment."""
    if how == "deleted":
        os.remove(path)
        return
    time_index = path.endswith(TIME_INDEX_SUFFIX)
    entry = 12 if time_index else 8
    with open(path, "rb") as f:
        data = f.read()
    if how == "cut mid-entry":
        data = data[:-3] if data else b"\1\2\3"
    elif how == "zeroed":
        data = b"\0" * (len(data) + 2 * entry)
    elif how == "garbage":
        data = bytes((i * 151 + 7) % 256 for i in range(len(data) or 2 * entry))
    elif how == "reversed":
        entries = [data[i:i + entry] for i in range(0, len(data), entry)]
        data = b"".join(reversed(entries)) + b"".join(entries)
    elif how == "past the end":
        if time_index:
            data += struct.pack(">qi", NOW + 10**9, 2**30)
        else:
            data += struct.pack(">ii", 2**30, 2**30)
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("how", ["deleted", "cut mid-entry", "zeroed", "garbage", "reversed",
                                 "past the end"])
@pytest.mark.parametrize("suffix", [INDEX_SUFFIX, TIME_INDEX_SUFFIX])
@pytest.mark.parametrize("shutdown", ["clean", "unclean"])
def test_damaged_index_files_are_rebuilt_from_the_log(tmp_path, how, suffix, shutdown, caplog):
    original = tmp_path / "original"
    log, values = build(original)
    reference = open_log(original, clean_shutdown=True)
    expected = lookups(reference, values)
    reference.close()
    bases = [s.base_offset for s in log.segments]
    for base in bases:
        path = segment_path(original, base, suffix)
        assert os.path.getsize(path) > 0 or base == bases[-1], "every closed segment has entries"

    for base in bases:
        work = tmp_path / "work"
        copy_dir(original, work)
        damage(segment_path(work, base, suffix), how)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trioka.log"):
            recovered = open_log(work, clean_shutdown=shutdown == "clean", recovery_point=0)
            assert recovered.log_end_offset == len(values), base
            assert records_of(recovered) == list(enumerate(values)), base
            assert lookups(recovered, values) == expected, base
        recovered.close()
        # What is on disk now is sane: a second open answers the same without rebuilding.
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trioka.log"):
            again = open_log(work, clean_shutdown=True)
            assert lookups(again, values) == expected, base
        assert not any("rebuilding index files" in r.getMessage() for r in caplog.records), base
        again.close()


def test_a_missing_index_is_rebuilt_with_a_warning(tmp_path, caplog):
    log, values = build(tmp_path)
    first = log.segments[0].base_offset
    os.remove(segment_path(tmp_path, first, INDEX_SUFFIX))
    with caplog.at_level(logging.WARNING, logger="trioka.log"):
        recovered = open_log(tmp_path, clean_shutdown=True)
        assert records_of(recovered) == list(enumerate(values))
    assert any("rebuilding index files" in r.getMessage() for r in caplog.records)
    assert os.path.getsize(segment_path(tmp_path, first, INDEX_SUFFIX)) > 0
