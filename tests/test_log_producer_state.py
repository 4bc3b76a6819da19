"""Idempotent producers: duplicates, sequence gaps, fencing, and state across restarts."""

import pytest

from record_batches import make_batch
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.producer_state import ProducerStateManager
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


@pytest.fixture(params=["disk", "memory"])
def files(request, tmp_path):
    return DiskFiles(str(tmp_path)) if request.param == "disk" else MemoryFiles()


def open_log(files, **kwargs):
    return PartitionLog("orders", 0, "orders-0", files, {"segment.bytes": "2000"}, now_ms=NOW,
                        **kwargs)


def batch(seq, n=2, pid=7, epoch=0):
    return make_batch([b"x" * 30] * n, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      base_timestamp=NOW)


def code_of(fn) -> ErrorCode:
    with pytest.raises(KafkaError) as info:
        fn()
    return info.value.code


def test_retry_of_a_written_batch_is_not_written_again(files):
    log = open_log(files)
    first = log.append(batch(0), now_ms=NOW)
    second = log.append(batch(2), now_ms=NOW)
    again = log.append(batch(0), now_ms=NOW)          # the producer retried its first batch
    assert (again.base_offset, again.last_offset) == (first.base_offset, first.last_offset)
    assert log.log_end_offset == 4
    assert log.append(batch(2), now_ms=NOW).base_offset == second.base_offset
    assert log.append(batch(4), now_ms=NOW).base_offset == 4


def test_only_the_last_five_batches_are_remembered(files):
    log = open_log(files)
    for i in range(6):
        log.append(batch(2 * i), now_ms=NOW)
    assert log.append(batch(2), now_ms=NOW).base_offset == 2      # still retained
    # The first batch fell out of the window: it is neither a duplicate nor in sequence.
    assert code_of(lambda: log.append(batch(0), now_ms=NOW)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_gap_in_sequence_is_out_of_order(files):
    log = open_log(files)
    log.append(batch(0), now_ms=NOW)
    assert code_of(lambda: log.append(batch(5), now_ms=NOW)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert log.log_end_offset == 2


def test_old_epoch_is_fenced_and_new_epoch_restarts_at_zero(files):
    log = open_log(files)
    log.append(batch(0, epoch=1), now_ms=NOW)
    assert code_of(lambda: log.append(batch(2, epoch=0), now_ms=NOW)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert code_of(lambda: log.append(batch(2, epoch=2), now_ms=NOW)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert log.append(batch(0, epoch=2), now_ms=NOW).base_offset == 2


def test_unknown_producer_may_start_anywhere_and_sequence_wraps(files):
    log = open_log(files)
    log.append(batch(2**31 - 2, n=1), now_ms=NOW)          # KIP-360: no state yet, accepted
    log.append(batch(2**31 - 1, n=1), now_ms=NOW)
    assert log.append(batch(0, n=1), now_ms=NOW).base_offset == 2   # wraps after int32 max


def test_producers_do_not_interfere(files):
    log = open_log(files)
    log.append(batch(0, pid=1), now_ms=NOW)
    log.append(batch(0, pid=2), now_ms=NOW)
    assert log.append(batch(0, pid=1), now_ms=NOW).base_offset == 0
    assert log.append(batch(0, pid=2), now_ms=NOW).base_offset == 2


@pytest.mark.parametrize("clean", [True, False])
def test_state_survives_restart(files, clean):
    log = open_log(files)
    for i in range(40):                                     # several segment rolls (2000 bytes)
        log.append(batch(2 * i), now_ms=NOW)
    assert len(log.segments) >= 3
    if clean:
        log.close()
    reopened = open_log(files, clean_shutdown=clean)
    assert reopened.log_end_offset == 80
    assert reopened.append(batch(78), now_ms=NOW).base_offset == 78   # the last batch, retried
    assert code_of(lambda: reopened.append(batch(90), now_ms=NOW)) == \
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert reopened.append(batch(80), now_ms=NOW).base_offset == 80


def test_snapshot_round_trip_and_damage(files):
    log = open_log(files)
    log.append(batch(0, pid=3, epoch=4), now_ms=NOW)
    manager = log.producer_state
    blob = manager.encode_snapshot()
    entries = manager.decode_snapshot(blob)
    assert entries[3].producer_epoch == 4 and entries[3].last_seq == 1
    assert entries[3].batches[0].first_offset == 0 and entries[3].batches[0].last_offset == 1
    damaged = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(ValueError):
        manager.decode_snapshot(damaged)


def test_damaged_snapshot_is_ignored_and_state_rebuilt(files):
    log = open_log(files)
    for i in range(3):
        log.append(batch(2 * i), now_ms=NOW)
    log.close()
    name = next(n for n in files.listdir("orders-0") if n.endswith(".snapshot"))
    files.write_atomic(f"orders-0/{name}", b"\x00\x01garbage")
    reopened = open_log(files, clean_shutdown=False)
    assert reopened.append(batch(4), now_ms=NOW).base_offset == 4    # rebuilt from the log


def test_truncation_rebuilds_state(files):
    log = open_log(files)
    for i in range(4):
        log.append(batch(2 * i), now_ms=NOW)
    log.truncate_to(4, NOW)
    # Batches at offsets 4 and 6 are gone: sequence 4 is next again, not a duplicate.
    assert log.append(batch(4), now_ms=NOW).base_offset == 4
    assert isinstance(log.producer_state, ProducerStateManager)


def txn_batch(seq, pid=7, epoch=0):
    from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
    return make_batch([b"t"], producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      attributes=TRANSACTIONAL_FLAG_MASK, base_timestamp=NOW)


def test_classic_markers_may_not_go_below_the_producers_epoch(files):
    log = open_log(files)
    log.append(txn_batch(0, epoch=3), now_ms=NOW)
    assert code_of(lambda: log.append_marker(7, 2, True, 0, NOW)) == \
        ErrorCode.INVALID_PRODUCER_EPOCH
    log.append_marker(7, 3, True, 0, NOW)            # the transaction's own epoch
    log.append_marker(7, 3, True, 0, NOW)            # and again: classic markers allow it


def test_transactions_v2_markers_must_be_above_the_epoch_of_the_data(files):
    """A v2 marker carries the epoch bumped at the transaction's end: one equal to the data's
    is a stale marker of an earlier transaction, refused while a transaction is open; once that
    marker is written, the same marker again (a retry) is accepted."""
    log = open_log(files)
    log.append(txn_batch(0, epoch=3), now_ms=NOW)
    assert code_of(lambda: log.append_marker(7, 3, True, 0, NOW, transaction_version=2)) == \
        ErrorCode.INVALID_PRODUCER_EPOCH
    log.append_marker(7, 4, True, 0, NOW, transaction_version=2)
    assert log.last_stable_offset == log.high_watermark == 2
    log.append_marker(7, 4, True, 0, NOW, transaction_version=2)       # a retry
    assert code_of(lambda: log.append_marker(7, 3, False, 0, NOW, transaction_version=2)) == \
        ErrorCode.INVALID_PRODUCER_EPOCH
    # The next transaction runs at the marker's epoch from sequence 0; the old epoch is fenced.
    assert code_of(lambda: log.append(txn_batch(1, epoch=3), now_ms=NOW)) == \
        ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.append(txn_batch(0, epoch=4), now_ms=NOW).base_offset == 3


def test_has_producer_and_active_producers(files):
    log = open_log(files)
    assert not log.has_producer(7) and log.active_producers() == []
    log.append(batch(0, pid=7), now_ms=NOW)
    log.append(batch(0, pid=8, epoch=3), now_ms=NOW)
    assert log.has_producer(7) and log.has_producer(8) and not log.has_producer(9)
    assert sorted((e.producer_id, e.producer_epoch, e.last_seq)
                  for e in log.active_producers()) == [(7, 0, 1), (8, 3, 1)]
    assert log.producer_state.last_entry(8).producer_epoch == 3
    assert log.producer_state.last_entry(9) is None
