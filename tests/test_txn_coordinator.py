"""The transaction coordinator's state machine, over a real Broker state root (no sockets)."""

import pytest

from test_log_batch import make_batch
from trioka.broker import Broker
from trioka.config import Config
from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
from trioka.txn.coordinator import TRANSACTION_STATE_TOPIC
from trioka.txn.states import TransactionState as S, VALID_PREVIOUS, can_transition
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


# The broker's coordinators read trio's clock, so these tests run under trio (pytest-trio).
@pytest.fixture
async def broker(tmp_path):
    b = Broker(Config({"log.dirs": str(tmp_path), "transaction.state.log.num.partitions": "3",
                       "offsets.topic.num.partitions": "3"}))
    b.open()
    b.create_topic("t", 2)
    yield b
    b.close()


def reopen(b: Broker) -> Broker:
    b.close()
    again = Broker(b.config)
    again.open()
    return again


def code_of(fn) -> ErrorCode:
    with pytest.raises(KafkaError) as info:
        fn()
    return info.value.code


def txn_batch(pid, epoch, seq=0):
    return make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      attributes=TRANSACTIONAL_FLAG_MASK, base_timestamp=NOW)


def test_state_table():
    assert can_transition(S.ONGOING, S.PREPARE_COMMIT)
    assert not can_transition(S.EMPTY, S.PREPARE_COMMIT)
    assert not can_transition(S.COMPLETE_ABORT, S.COMPLETE_COMMIT)
    assert set(VALID_PREVIOUS) == set(S)


async def test_init_bumps_epoch_and_fences(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert epoch == 0
    assert txn.init_producer_id("app", 60000, -1, -1, NOW) == (pid, 1)
    # KIP-360: naming an old epoch is being fenced.
    assert code_of(lambda: txn.init_producer_id("app", 60000, pid, 0, NOW)) == \
        ErrorCode.PRODUCER_FENCED
    assert code_of(lambda: txn.add_partitions("app", pid, 0, [("t", 0)], NOW)) == \
        ErrorCode.PRODUCER_FENCED
    assert code_of(lambda: txn.init_producer_id("app", 0, -1, -1, NOW)) == \
        ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert code_of(lambda: txn.init_producer_id("app", 10**9, -1, -1, NOW)) == \
        ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert code_of(lambda: txn.init_producer_id("", 1000, -1, -1, NOW)) == \
        ErrorCode.INVALID_REQUEST


async def test_commit_writes_markers_and_moves_the_lso(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert code_of(lambda: txn.end_transaction("app", pid, epoch, True, NOW)) == \
        ErrorCode.INVALID_TXN_STATE                       # nothing open
    txn.add_partitions("app", pid, epoch, [("t", 0), ("t", 1)], NOW)
    assert txn.in_transaction(pid, epoch, "t", 1) and not txn.in_transaction(pid, epoch, "x", 0)
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, epoch), now_ms=NOW)
    assert log.last_stable_offset == 0 and log.high_watermark == 1
    txn.end_transaction("app", pid, epoch, True, NOW)
    assert txn.transactions["app"].state == S.COMPLETE_COMMIT
    assert log.high_watermark == log.last_stable_offset == 2      # data + COMMIT marker
    assert broker.partition("t", 1).high_watermark == 1          # a marker there too
    txn.end_transaction("app", pid, epoch, True, NOW)            # a retry: fine
    assert code_of(lambda: txn.end_transaction("app", pid, epoch, False, NOW)) == \
        ErrorCode.INVALID_TXN_STATE


async def test_new_producer_aborts_the_zombies_transaction(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, [("t", 0)], NOW)
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, epoch), now_ms=NOW)
    assert code_of(lambda: txn.init_producer_id("app", 60000, -1, -1, NOW)) == \
        ErrorCode.CONCURRENT_TRANSACTIONS
    assert log.last_stable_offset == 2 and log.aborted_transactions(0, 2) == [(pid, 0)]
    new_pid, new_epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert (new_pid, new_epoch) == (pid, 2)
    # The zombie's late batch is refused by the partition.
    with pytest.raises(KafkaError) as info:
        log.append(txn_batch(pid, epoch, seq=1), now_ms=NOW)
    assert info.value.code == ErrorCode.INVALID_PRODUCER_EPOCH


async def test_timed_out_transaction_is_aborted(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("slow", 1000, -1, -1, NOW)
    txn.add_partitions("slow", pid, epoch, [("t", 0)], NOW)
    broker.partition("t", 0).append(txn_batch(pid, epoch), now_ms=NOW)
    assert txn.expire(NOW + 500) == 0
    assert txn.expire(NOW + 1001) == 1
    assert txn.transactions["slow"].state == S.COMPLETE_ABORT
    assert broker.partition("t", 0).last_stable_offset == 2
    assert code_of(lambda: txn.end_transaction("slow", pid, epoch, True, NOW)) == \
        ErrorCode.PRODUCER_FENCED


async def test_state_survives_restart(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, [("t", 0)], NOW)
    broker.partition("t", 0).append(txn_batch(pid, epoch), now_ms=NOW)
    assert broker.logs.topic(TRANSACTION_STATE_TOPIC) is not None
    broker = reopen(broker)
    meta = broker.transactions.transactions["app"]
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (pid, epoch, S.ONGOING)
    assert meta.partitions == {("t", 0)}
    broker.transactions.end_transaction("app", pid, epoch, False, NOW)
    broker = reopen(broker)
    assert broker.transactions.transactions["app"].state == S.COMPLETE_ABORT
    assert broker.partition("t", 0).aborted_transactions(0, 10) == [(pid, 0)]
    broker.close()


async def test_prepared_transaction_is_completed_at_startup(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, [("t", 0)], NOW)
    broker.partition("t", 0).append(txn_batch(pid, epoch), now_ms=NOW)
    meta = txn.transactions["app"]
    meta.transition(S.PREPARE_COMMIT, NOW)
    txn._persist(meta, NOW)                    # the broker "dies" before writing markers
    broker = reopen(broker)
    assert broker.transactions.transactions["app"].state == S.COMPLETE_COMMIT
    log = broker.partition("t", 0)
    assert log.last_stable_offset == log.high_watermark == 2
    broker.close()


async def test_retried_epoch_bump_gets_the_current_epoch(broker):
    """KIP-360: a producer asking to bump its own epoch, whose answer was lost, asks again with
    the epoch it had; it gets the epoch it was given, not PRODUCER_FENCED. Once another producer
    has taken the id, that retry is fenced."""
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert txn.init_producer_id("app", 60000, pid, epoch, NOW) == (pid, epoch + 1)
    assert txn.init_producer_id("app", 60000, pid, epoch, NOW) == (pid, epoch + 1)   # retry
    assert txn.init_producer_id("app", 60000, -1, -1, NOW) == (pid, epoch + 2)       # new one
    assert code_of(lambda: txn.init_producer_id("app", 60000, pid, epoch, NOW)) == \
        ErrorCode.PRODUCER_FENCED
