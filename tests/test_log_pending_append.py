"""Appends whose `.log` write runs in a worker thread (PartitionLog.begin_append / PendingAppend /
end_append, and Produce's append_records; a follower's, begin_append_as_follower): nothing of the append is visible until it ends, a
change to the log meanwhile settles it first, a failed write takes the dir offline without
reusing offsets, and one partition's appends keep their order."""

import os
import threading
import time

import pytest
import trio

from record_batches import make_batch
from trioka.apis.produce import append_records
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.partition import OFF_LOOP_WRITE_BYTES, AppendResult, PartitionLog, PendingAppend
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000
LARGE = b"v" * (OFF_LOOP_WRITE_BYTES + 1)


def open_log(files, *, stalling: bool = True):
    """A log whose dir's writes stall (so large appends write from a worker thread), unless
    `stalling` is False."""
    if stalling:
        files.note_write(1.0, time.perf_counter())
    return PartitionLog("orders", 0, "orders-0", files, None, now_ms=NOW)


def large_batch(i: int = 0) -> bytearray:
    return bytearray(make_batch([LARGE], base_timestamp=NOW + i))


def test_a_large_append_is_invisible_until_it_ends(tmp_path):
    log = open_log(DiskFiles(str(tmp_path)))
    log.append(make_batch([b"small"], base_timestamp=NOW), now_ms=NOW)
    size = log.active_segment.size
    pending = log.begin_append(large_batch(), now_ms=NOW)
    assert isinstance(pending, PendingAppend)
    assert log.pending_append is pending
    # Nothing moved yet: readers see the log as before.
    assert (log.log_end_offset, log.high_watermark, log.active_segment.size) == (1, 1, size)
    assert len(log.read(0, 10_000_000).records) == size
    pending.write()       # what the worker thread runs
    result = log.end_append(pending)
    assert (result.base_offset, result.last_offset) == (1, 1)
    assert log.pending_append is None
    assert log.log_end_offset == log.high_watermark == 2
    assert log.read(1, 10_000_000).records      # now readable


def test_small_appends_and_memory_logs_complete_at_once(tmp_path):
    disk = open_log(DiskFiles(str(tmp_path)))
    assert isinstance(disk.begin_append(make_batch([b"small"]), now_ms=NOW), AppendResult)
    calm = open_log(DiskFiles(str(tmp_path / "calm")), stalling=False)
    assert isinstance(calm.begin_append(large_batch(), now_ms=NOW), AppendResult)
    memory = open_log(MemoryFiles())
    assert isinstance(memory.begin_append(large_batch(), now_ms=NOW), AppendResult)
    assert memory.log_end_offset == 1


@pytest.mark.parametrize("change", ["append", "truncate", "roll", "close", "marker"])
def test_any_change_settles_the_pending_append_first(tmp_path, change):
    log = open_log(DiskFiles(str(tmp_path)))
    pending = log.begin_append(large_batch(), now_ms=NOW)
    pending.write()
    if change == "append":
        assert log.append(make_batch([b"next"]), now_ms=NOW).base_offset == 1
        assert log.log_end_offset == 2
    elif change == "truncate":
        log.truncate_to(1, NOW)
        assert log.log_end_offset == 1
    elif change == "roll":
        assert log.roll(NOW).base_offset == 1
    elif change == "close":
        log.close()
    else:
        log.append_marker(producer_id=1, producer_epoch=0, commit=True, coordinator_epoch=0,
                          now_ms=NOW)
    assert log.pending_append is None
    # The append's own caller still gets its result.
    assert log.end_append(pending).base_offset == 0


def test_a_failed_write_takes_the_dir_offline_and_reuses_no_offset(tmp_path):
    files = DiskFiles(str(tmp_path))
    log = open_log(files)
    pending = log.begin_append(large_batch(), now_ms=NOW)
    # The disk refuses the write (as a full disk would, after part of it).
    pending.written_bytes, pending.error = 100, OSError(28, "No space left on device")
    pending.written.set()
    with pytest.raises(KafkaError) as failed:
        log.end_append(pending)
    assert failed.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    assert log.log_end_offset == 0 and log.pending_append is None
    with pytest.raises(KafkaError) as again:
        log.append(make_batch([b"later"]), now_ms=NOW)
    assert again.value.code == ErrorCode.KAFKA_STORAGE_ERROR


def test_a_failure_found_while_settling_reaches_the_appender(tmp_path):
    log = open_log(DiskFiles(str(tmp_path)))
    pending = log.begin_append(large_batch(), now_ms=NOW)
    pending.written_bytes, pending.error = 0, OSError(5, "Input/output error")
    pending.written.set()
    log.roll(NOW)          # settles: the failure is kept for the appender, not raised here
    with pytest.raises(KafkaError) as failed:
        log.end_append(pending)
    assert failed.value.code == ErrorCode.KAFKA_STORAGE_ERROR


async def test_concurrent_produce_appends_keep_their_order(tmp_path):
    log = open_log(DiskFiles(str(tmp_path)))
    results = {}

    async def produce(i):
        results[i] = await append_records(log, large_batch(i), now_ms=NOW)

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(produce, i)
    assert sorted(r.base_offset for r in results.values()) == list(range(8))
    assert log.log_end_offset == 8 and log.pending_append is None
    # On disk exactly as the offsets say, every batch whole.
    data = bytes(log.read(0, 100_000_000).records)
    assert len(data) == os.path.getsize(log.active_segment.log.path)
    from trioka.log.batch import AppendOrigin, validate_batches
    assert [b.base_offset for b in validate_batches(data, origin=AppendOrigin.COORDINATOR)] \
        == list(range(8))


async def test_a_change_made_while_the_write_starts_finds_it_under_way(tmp_path, monkeypatch):
    # Produce's append is waiting on its write; a retention pass, a marker or a roll on the
    # event loop settles it at once. (A write queued for a thread slot would never start:
    # the loop would wait on it forever.) The disk holds the write for 300 ms, as a disk under
    # writeback does, so the append is still pending when the roll comes.
    from trioka.log.segment import LogSegment
    write_at_end = LogSegment.write_at_end

    def slow_write_at_end(self, data):
        threading.Event().wait(0.3)
        return write_at_end(self, data)

    monkeypatch.setattr(LogSegment, "write_at_end", slow_write_at_end)
    log = open_log(DiskFiles(str(tmp_path)))
    results = []

    async def produce():
        results.append(await append_records(log, large_batch(), now_ms=NOW))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        with trio.fail_after(10):
            while log.pending_append is None:      # until the append has begun
                await trio.lowlevel.checkpoint()
        log.roll(NOW)                      # settles: waits only for the write itself
        assert log.pending_append is None and log.log_end_offset == 1
    assert results[0].base_offset == 0


def test_a_slow_write_moves_large_appends_off_the_loop_for_a_while(tmp_path):
    files = DiskFiles(str(tmp_path))
    assert not files.writes_stall(100.0)
    files.note_write(0.002, 100.0)            # a normal copy into the page cache
    assert not files.writes_stall(100.0)
    files.note_write(0.150, 100.0)            # the disk held a write for 150 ms
    assert files.writes_stall(100.0)
    assert files.writes_stall(100.0 + files.WRITE_STALL_HOLD_S - 1)
    assert not files.writes_stall(100.0 + files.WRITE_STALL_HOLD_S)
    # The log notes its own writes: one that takes long (here, held in the disk layer) turns
    # the next large append into a pending one.
    from trioka.log.segment import LogSegment
    log = open_log(files, stalling=False)
    files.stalling_until = 0.0
    assert isinstance(log.begin_append(large_batch(0), now_ms=NOW), AppendResult)
    write_at_end = LogSegment.write_at_end
    try:
        LogSegment.write_at_end = lambda self, data: (threading.Event().wait(0.02),
                                                      write_at_end(self, data))[1]
        assert isinstance(log.begin_append(large_batch(1), now_ms=NOW), AppendResult)
    finally:
        LogSegment.write_at_end = write_at_end
    pending = log.begin_append(large_batch(2), now_ms=NOW)
    assert isinstance(pending, PendingAppend)
    pending.write()
    assert log.end_append(pending).base_offset == 2


def fetched(values, *, base_offset: int, epoch: int, producer_id: int = -1) -> bytearray:
    """Batches as a leader's log holds them: offsets and leader epoch assigned."""
    return bytearray(make_batch(values, base_offset=base_offset, partition_leader_epoch=epoch,
                                producer_id=producer_id, producer_epoch=0 if producer_id >= 0
                                else -1, base_sequence=0 if producer_id >= 0 else -1,
                                base_timestamp=NOW))


def test_a_followers_large_append_is_invisible_until_it_ends(tmp_path):
    # The replica fetcher's append (begin_append_as_follower): the leader's offsets and epochs
    # kept, written from a worker thread while the disk stalls, nothing moved until it ends.
    log = open_log(DiskFiles(str(tmp_path)))
    assert log.append_as_follower(fetched([b"a"], base_offset=0, epoch=2), now_ms=NOW) == 1
    size = log.active_segment.size
    pending = log.begin_append_as_follower(
        fetched([LARGE], base_offset=1, epoch=5, producer_id=77), now_ms=NOW)
    assert isinstance(pending, PendingAppend) and log.pending_append is pending
    assert (log.log_end_offset, log.active_segment.size) == (1, size)
    assert log.epoch_entries[-1][0] == 2
    pending.write()
    assert log.end_append(pending) == 2
    assert log.log_end_offset == 2 and log.pending_append is None
    assert log.epoch_entries[-1] == (5, 1)
    assert log.producer_state.last_entry(77) is not None
    stored = log.read(1, 10_000_000, isolation_upper=2).records
    assert bytes(stored) == fetched([LARGE], base_offset=1, epoch=5, producer_id=77)


def test_a_followers_pending_append_is_settled_by_a_truncation(tmp_path):
    log = open_log(DiskFiles(str(tmp_path)))
    pending = log.begin_append_as_follower(fetched([LARGE], base_offset=0, epoch=1),
                                           now_ms=NOW)
    pending.write()
    log.truncate_to(0, NOW)        # the fetcher found the leader diverged: settles first
    assert log.pending_append is None and log.log_end_offset == 0
    assert log.end_append(pending) == 1      # its own end: what it was, already ended
    assert log.log_end_offset == 0


def test_small_follower_appends_and_calm_disks_write_at_once(tmp_path):
    log = open_log(DiskFiles(str(tmp_path)))
    assert log.begin_append_as_follower(fetched([b"x"], base_offset=0, epoch=0),
                                        now_ms=NOW) == 1
    calm = open_log(DiskFiles(str(tmp_path / "calm")), stalling=False)
    assert calm.begin_append_as_follower(fetched([LARGE], base_offset=0, epoch=0),
                                         now_ms=NOW) == 1


def test_heavy_writes_move_large_appends_off_the_loop_while_they_last(tmp_path):
    # Writes faster than HEAVY_WRITE_BYTES_PER_S pile up dirty pages, and the kernel soon holds
    # a write() until writeback catches up: large appends leave the loop before that happens.
    files = DiskFiles(str(tmp_path))
    heavy = files.HEAVY_WRITE_BYTES_PER_S
    mb = 1024 * 1024
    for i in range(10):                      # 100 MB/s: not heavy
        files.note_write(0.0005, 100.0 + i * 0.1, 10 * mb)
    files.note_write(0.0005, 101.0, 10 * mb)
    assert not files.writes_stall(101.0)
    for i in range(10):                      # then the rate doubles and more
        files.note_write(0.0005, 101.0 + i * 0.05, heavy // 8)
    assert files.writes_stall(101.5)          # the current second is past the rate already
    files.note_write(0.0005, 102.0, 0)
    assert files.writes_stall(102.1)          # the previous second's rate
    assert not files.writes_stall(104.5)      # quiet for two seconds: no longer heavy
    files.note_write(0.0005, 104.5, mb)
    assert not files.writes_stall(104.6)
