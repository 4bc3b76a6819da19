"""Transactions in a partition: the last stable offset, markers, and the aborted-txn index."""

import pytest

from record_batches import make_batch
from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.records import ControlRecordType, iter_batches

NOW = 1_700_000_000_000


@pytest.fixture(params=["disk", "memory"])
def files(request, tmp_path):
    return DiskFiles(str(tmp_path)) if request.param == "disk" else MemoryFiles()


def open_log(files, **kwargs):
    return PartitionLog("t", 0, "t-0", files, {"segment.bytes": "1500"}, now_ms=NOW, **kwargs)


def txn_batch(pid, seq, n=2, epoch=0):
    return make_batch([b"x" * 20] * n, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      attributes=TRANSACTIONAL_FLAG_MASK, base_timestamp=NOW)


def plain(n=1):
    return make_batch([b"p"] * n, base_timestamp=NOW)


def test_open_transaction_holds_back_the_last_stable_offset(files):
    log = open_log(files)
    log.append(plain(), now_ms=NOW)                          # offset 0
    log.append(txn_batch(5, 0), now_ms=NOW)                  # 1-2, transaction of 5 opens at 1
    log.append(plain(), now_ms=NOW)                          # 3
    assert log.high_watermark == 4 and log.last_stable_offset == 1
    marker = log.append_marker(5, 0, True, coordinator_epoch=0, now_ms=NOW)
    assert marker == 4
    assert log.last_stable_offset == log.high_watermark == 5
    assert log.aborted_transactions(0, 5) == []
    stored = list(iter_batches(bytes(log.read(4, 1 << 20).records)))
    assert stored[0].is_control_batch and stored[0].control_type() == ControlRecordType.COMMIT


def test_abort_is_indexed_for_read_committed(files):
    log = open_log(files)
    log.append(txn_batch(5, 0), now_ms=NOW)                  # 0-1
    log.append(txn_batch(6, 0), now_ms=NOW)                  # 2-3
    log.append(txn_batch(5, 2), now_ms=NOW)                  # 4-5
    assert log.last_stable_offset == 0
    log.append_marker(5, 0, False, 0, NOW)                   # 6: abort of producer 5
    assert log.last_stable_offset == 2                       # producer 6 still open
    log.append_marker(6, 0, True, 0, NOW)                    # 7
    assert log.last_stable_offset == 8
    assert log.aborted_transactions(0, 8) == [(5, 0)]
    assert log.aborted_transactions(7, 8) == []              # ended before the fetch offset
    assert log.aborted_transactions(0, 0) == []              # starts at the upper bound


@pytest.mark.parametrize("clean", [True, False])
def test_transactions_survive_restart(files, clean):
    log = open_log(files)
    for i in range(10):                                      # rolls segments along the way
        log.append(txn_batch(5, 2 * i), now_ms=NOW)
    log.append_marker(5, 0, False, 0, NOW)                   # offset 20
    log.append(txn_batch(7, 0), now_ms=NOW)                  # 21-22, left open
    if clean:
        log.close()
    log = open_log(files, clean_shutdown=clean)
    assert log.log_end_offset == 23
    assert log.last_stable_offset == 21
    assert log.aborted_transactions(0, 23) == [(5, 0)]
    log.append_marker(7, 0, False, 0, NOW)
    assert log.last_stable_offset == 24
    assert log.aborted_transactions(21, 24) == [(7, 21)]


def test_lost_txn_index_entry_is_rebuilt_after_a_crash(files):
    log = open_log(files)
    log.append(txn_batch(5, 0), now_ms=NOW)
    log.append_marker(5, 0, False, 0, NOW)
    for name in files.listdir("t-0"):
        if name.endswith(".txnindex"):
            files.remove(f"t-0/{name}")                      # as if the process died in between
    log = open_log(files, clean_shutdown=False)
    assert log.aborted_transactions(0, 3) == [(5, 0)]


def test_truncation_forgets_aborts_past_the_end(files):
    log = open_log(files)
    log.append(txn_batch(5, 0), now_ms=NOW)
    log.append_marker(5, 0, False, 0, NOW)                   # 2
    log.append(txn_batch(6, 0), now_ms=NOW)                  # 3-4
    log.truncate_to(2, NOW)
    assert log.aborted_transactions(0, 10) == []
    assert log.last_stable_offset == 0                       # producer 5 has an open txn again
