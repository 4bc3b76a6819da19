"""Transactional id expiry (Kafka's TransactionStateManager.removeExpiredTransactionalIds): an id
with no transaction in progress (Empty, CompleteCommit, CompleteAbort) and no update for
`transactional.id.expiration.ms` goes Dead: a tombstone in `__transaction_state`, and the
coordinator forgets it. The broker checks every
`transaction.remove.expired.transaction.cleanup.interval.ms`.
"""

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.broker import BrokerState
from trioka.clock import Clock
from trioka.config import Config
from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
from trioka.log.records import iter_batches
from trioka.log.topics import TRANSACTION_STATE_TOPIC
from trioka.txn.states import TransactionState as S

NOW = 1_700_000_000_000
WEEK = 7 * 86_400_000


def configs(tmp_path, **extra) -> Config:
    return Config({"log.dirs": str(tmp_path), "transaction.state.log.num.partitions": "3",
                   "offsets.topic.num.partitions": "3", **extra})


@pytest.fixture
async def broker(tmp_path):
    b = BrokerState(configs(tmp_path))
    b.open()
    b.create_topic("t", 1)
    yield b
    b.close()


def committed(broker, tid: str, now_ms: int) -> int:
    """A transactional id with one committed transaction, last updated at `now_ms`."""
    txn = broker.transactions
    pid, epoch = txn.init_producer_id(tid, 60_000, -1, -1, now_ms)
    txn.add_partitions(tid, pid, epoch, [("t", 0)], now_ms)
    broker.partition("t", 0).append(
        make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                   attributes=TRANSACTIONAL_FLAG_MASK), now_ms=now_ms)
    txn.end_transaction(tid, pid, epoch, True, now_ms)
    assert txn.transactions[tid].state == S.COMPLETE_COMMIT
    return pid


def last_records(broker, tid: str) -> list:
    """(key contains tid, value) of the `__transaction_state` records, in order."""
    out = []
    for partition in broker.logs.topic(TRANSACTION_STATE_TOPIC).partitions:
        read = partition.read(partition.log_start_offset, 1 << 30)
        for batch in iter_batches(read.records):
            for record in batch.records:
                if tid.encode() in record.key:
                    out.append(record.value)
    return out


async def test_ids_with_no_transaction_in_progress_expire_after_the_expiration(broker):
    txn = broker.transactions
    pid = committed(broker, "done", NOW)
    txn.init_producer_id("empty", 60_000, -1, -1, NOW)
    assert txn.expire_transactional_ids(NOW + WEEK - 1) == 0
    assert txn.expire_transactional_ids(NOW + WEEK) == 2
    assert txn.describe("done") is None and txn.describe("empty") is None
    assert pid not in txn.by_producer
    # The tombstone: a null value after the id's last state.
    assert last_records(broker, "done")[-1] is None


async def test_an_id_with_a_transaction_in_progress_does_not_expire(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("open", 60_000, -1, -1, NOW)
    txn.add_partitions("open", pid, epoch, [("t", 0)], NOW)
    assert txn.expire_transactional_ids(NOW + 10 * WEEK) == 0
    assert txn.describe("open").state == S.ONGOING


async def test_a_recent_update_keeps_the_id(broker):
    txn = broker.transactions
    committed(broker, "busy", NOW)
    committed(broker, "busy", NOW + WEEK // 2)
    assert txn.expire_transactional_ids(NOW + WEEK) == 0
    assert txn.expire_transactional_ids(NOW + WEEK + WEEK // 2) == 1


async def test_an_expired_id_stays_forgotten_after_a_restart_and_starts_anew(tmp_path):
    broker = BrokerState(configs(tmp_path))
    broker.open()
    broker.create_topic("t", 1)
    pid = committed(broker, "gone", NOW)
    assert broker.transactions.expire_transactional_ids(NOW + WEEK) == 1
    broker.close()
    again = BrokerState(configs(tmp_path))
    again.open()
    try:
        assert again.transactions.describe("gone") is None
        new_pid, epoch = again.transactions.init_producer_id("gone", 60_000, -1, -1,
                                                             NOW + WEEK)
        assert new_pid != pid and epoch == 0
    finally:
        again.close()


class MockWallClock(Clock):
    """Wall time that moves with trio's (mock) clock, from NOW."""

    def wall_ms(self) -> int:
        return NOW + int(trio.current_time() * 1000)


async def test_the_broker_expires_ids_every_cleanup_interval(tmp_path, mock_clock):
    broker = BrokerState(configs(tmp_path), clock=MockWallClock())
    broker.open()
    broker.create_topic("t", 1)
    committed(broker, "idle", broker.clock.wall_ms())
    try:
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(WEEK / 1000 - 1)         # checks ran; not a week old yet
            await trio.testing.wait_all_tasks_blocked()
            assert broker.transactions.describe("idle") is not None
            mock_clock.jump(3600)                    # the next hourly check
            await trio.testing.wait_all_tasks_blocked()
            assert broker.transactions.describe("idle") is None
            nursery.cancel_scope.cancel()
    finally:
        broker.close()


def test_the_defaults_are_kafkas(tmp_path):
    config = configs(tmp_path)
    assert config.transactional_id_expiration_ms == 604_800_000
    assert config.transaction_remove_expired_transaction_cleanup_interval_ms == 3_600_000


async def test_an_id_whose_tombstone_cannot_be_written_stays_for_the_next_check(broker):
    txn = broker.transactions
    committed(broker, "stuck", NOW)
    before = txn.describe("stuck")
    state, last_update = before.state, before.last_update_ms
    # An I/O error takes the log dir offline: `__transaction_state` refuses the tombstone.
    broker.logs.failure_channel.maybe_add_offline_log_dir("test", OSError(5, "EIO"))
    assert txn.expire_transactional_ids(NOW + WEEK) == 0
    after = txn.describe("stuck")
    assert (after.state, after.last_update_ms) == (state, last_update)
