"""PartitionLog.assign_epoch_start_offset, Kafka's LeaderEpochFileCache.assign: what a new leader
records before it writes in its epoch, kept monotonic, persisted in leader-epoch-checkpoint."""

import pytest

from record_batches import make_batch
from trioka.clock import ManualClock
from trioka.log.checkpoint import LEADER_EPOCH_CHECKPOINT, read_leader_epoch_checkpoint
from trioka.log.config import LogConfig
from trioka.log.files import MemoryFiles
from trioka.log.partition import PartitionLog

NOW = ManualClock().wall_ms()


def new_log(files=None) -> PartitionLog:
    files = files or MemoryFiles()
    files.mkdir("t-0")
    return PartitionLog("t", 0, "t-0", files, LogConfig(), clean_shutdown=True, now_ms=NOW)


def stored(log: PartitionLog):
    return read_leader_epoch_checkpoint(log.files, f"t-0/{LEADER_EPOCH_CHECKPOINT}")


def test_a_new_epoch_is_recorded_and_persisted_before_any_write():
    log = new_log()
    for _ in range(3):
        log.append(make_batch([b"a"]), now_ms=NOW)
    assert log.assign_epoch_start_offset(1, log.log_end_offset)
    assert log.epoch_entries == [(0, 0), (1, 3)] == stored(log)
    assert log.leader_epoch == 1
    # A follower asking for epoch 0 learns where it ended, with nothing yet written in 1.
    assert log.end_offset_for_epoch(0) == (0, 3)
    assert log.end_offset_for_epoch(1) == (1, 3)


def test_the_same_epoch_again_changes_nothing_unless_it_starts_earlier():
    log = new_log()
    log.assign_epoch_start_offset(2, 5)
    assert not log.assign_epoch_start_offset(2, 5)
    assert not log.assign_epoch_start_offset(2, 7)
    assert log.assign_epoch_start_offset(2, 4)
    assert log.epoch_entries == [(2, 4)] == stored(log)


def test_entries_the_new_one_makes_non_monotonic_are_dropped(caplog):
    log = new_log()
    for epoch, start in ((0, 0), (1, 10), (2, 20)):
        log.assign_epoch_start_offset(epoch, start)
    assert log.assign_epoch_start_offset(3, 15)
    assert log.epoch_entries == [(0, 0), (1, 10), (3, 15)] == stored(log)
    assert "removes the entries [(2, 20)]" in caplog.text


def test_appending_in_a_new_epoch_assigns_it():
    log = new_log()
    log.append(make_batch([b"a"]), now_ms=NOW)
    log.append(make_batch([b"b"]), now_ms=NOW, leader_epoch=4)
    assert log.epoch_entries == [(0, 0), (4, 1)] == stored(log)


def test_negative_epochs_and_offsets_are_refused():
    log = new_log()
    with pytest.raises(ValueError):
        log.assign_epoch_start_offset(-1, 0)
    with pytest.raises(ValueError):
        log.assign_epoch_start_offset(0, -1)
