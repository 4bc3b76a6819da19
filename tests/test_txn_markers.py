"""Transaction markers are written until they are: a partition that cannot take its COMMIT or
ABORT marker now keeps the transaction in PrepareCommit/PrepareAbort, and the coordinator tries
again on a timer (the broker's clock), as Kafka's TransactionMarkerChannelManager retries markers
until they are written or their partition is deleted. Before, the partition was skipped and the
transaction completed, and its last stable offset never moved again.

And when the coordinator's own log refuses a write, it answers as Kafka's coordinators do
(NOT_COORDINATOR for KAFKA_STORAGE_ERROR), so clients look for the coordinator again.
"""

import os

import pytest
import trio

from record_batches import make_batch
from trioka.broker import BrokerState
from trioka.config import Config
from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
from trioka.log.manager import LogManager
from trioka.log.segment import LOG_SUFFIX, segment_file_name
from trioka.log.topics import TRANSACTION_STATE_TOPIC
from trioka.txn.coordinator import MARKER_RETRY_BACKOFF_MS
from trioka.txn.states import TransactionState as S
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


class FlakyLogs(LogManager):
    """A log manager whose `unavailable` partitions answer KAFKA_STORAGE_ERROR, as those of a
    failed log dir of a broker with several would, until they are taken out of the set."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unavailable: set[tuple[str, int]] = set()
        self.refused = 0

    def partition(self, topic, index, *, reading=False):
        log = super().partition(topic, index, reading=reading)
        if (topic, index) in self.unavailable:
            self.refused += 1
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR,
                             f"Partition {topic}-{index} is in an offline log directory")
        return log


class BrokerWithFlakyLogs(BrokerState):
    def __init__(self, config):
        super().__init__(config)
        self.logs = FlakyLogs(self.config.data_dir, clock=self.clock, node_id=self.node_id,
                              default_config=self.topic_config_defaults())


def config_for(path) -> Config:
    return Config({"log.dirs": str(path), "transaction.state.log.num.partitions": "3",
                   "offsets.topic.num.partitions": "3"})


def txn_batch(pid, epoch, seq=0):
    return make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      attributes=TRANSACTIONAL_FLAG_MASK, base_timestamp=NOW)


def code_of(fn) -> ErrorCode:
    with pytest.raises(KafkaError) as info:
        fn()
    return info.value.code


def open_transaction(broker, partitions=(("t", 0), ("t", 1))):
    """A transaction of "app" with one batch in each of `partitions`: (pid, epoch)."""
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, list(partitions), NOW)
    for topic, index in partitions:
        broker.partition(topic, index).append(txn_batch(pid, epoch), now_ms=NOW)
    return pid, epoch


async def test_a_marker_is_retried_on_the_clock_until_it_is_written(tmp_path, autojump_clock):
    broker = BrokerWithFlakyLogs(config_for(tmp_path))
    broker.open()
    broker.create_topic("t", 2)
    logs = broker.logs
    txn = broker.transactions
    t0, t1 = logs.topic("t").partitions
    async with trio.open_nursery() as nursery:
        broker.nursery = nursery      # as the server gives the broker its nursery
        pid, epoch = open_transaction(broker)
        logs.unavailable.add(("t", 1))
        assert txn.end_transaction("app", pid, epoch, True, NOW) == (pid, epoch)

        meta = txn.transactions["app"]
        assert meta.state == S.PREPARE_COMMIT and meta.partitions == {("t", 1)}
        assert t0.last_stable_offset == t0.high_watermark == 2     # its marker is written
        assert t1.last_stable_offset == 0 and t1.high_watermark == 1
        # Until the marker is written the transaction is completing, as in Kafka.
        assert code_of(lambda: txn.end_transaction("app", pid, epoch, True, NOW)) == \
            ErrorCode.CONCURRENT_TRANSACTIONS
        assert code_of(lambda: txn.init_producer_id("app", 60000, -1, -1, NOW)) == \
            ErrorCode.CONCURRENT_TRANSACTIONS

        refused = logs.refused
        await broker.clock.sleep(10 * MARKER_RETRY_BACKOFF_MS / 1000)
        assert logs.refused >= refused + 5, "the timer retries the marker"
        assert meta.state == S.PREPARE_COMMIT and t1.last_stable_offset == 0

        logs.unavailable.clear()
        await broker.clock.sleep(2 * MARKER_RETRY_BACKOFF_MS / 1000)
        assert meta.state == S.COMPLETE_COMMIT and not txn.pending_markers
        assert t1.last_stable_offset == t1.high_watermark == 2
        assert t0.high_watermark == 2                  # no second marker where one was written
        assert not nursery.child_tasks, "the retry timer stops once nothing is pending"
    broker.close()

    # The completion was written: a restart finds the transaction complete.
    again = BrokerState(config_for(tmp_path))
    again.open()
    assert again.transactions.transactions["app"].state == S.COMPLETE_COMMIT
    assert again.transactions.init_producer_id("app", 60000, -1, -1, NOW) == (pid, epoch + 1)
    again.close()


async def test_without_a_nursery_the_periodic_task_starts_the_retries(tmp_path, autojump_clock):
    """Markers pending while the broker opens (no nursery yet) are retried once the periodic
    transaction task runs; `retry_markers` also retries them at once."""
    broker = BrokerWithFlakyLogs(config_for(tmp_path))
    broker.open()
    broker.create_topic("t", 2)
    txn = broker.transactions
    pid, epoch = open_transaction(broker)
    broker.logs.unavailable.add(("t", 0))
    txn.end_transaction("app", pid, epoch, False, NOW)
    assert txn.transactions["app"].state == S.PREPARE_ABORT
    assert txn.retry_markers(NOW) == 1
    async with trio.open_nursery() as nursery:
        broker.nursery = nursery
        txn.expire(NOW)
        assert len(nursery.child_tasks) == 1
        broker.logs.unavailable.clear()
        await broker.clock.sleep(2 * MARKER_RETRY_BACKOFF_MS / 1000)
    assert txn.transactions["app"].state == S.COMPLETE_ABORT
    assert broker.partition("t", 0).aborted_transactions(0, 10) == [(pid, 0)]
    broker.close()


async def test_a_deleted_partition_needs_no_marker(tmp_path):
    broker = BrokerWithFlakyLogs(config_for(tmp_path))
    broker.open()
    broker.create_topic("t", 1)
    broker.create_topic("gone", 1)
    txn = broker.transactions
    pid, epoch = open_transaction(broker, [("t", 0), ("gone", 0)])
    broker.logs.unavailable.add(("gone", 0))
    txn.end_transaction("app", pid, epoch, True, NOW)
    assert txn.transactions["app"].state == S.PREPARE_COMMIT
    broker.delete_topic("gone")
    assert txn.retry_markers(NOW) == 0
    assert txn.transactions["app"].state == S.COMPLETE_COMMIT
    broker.close()


async def test_a_failed_disk_keeps_the_transaction_prepared_until_a_restart_completes_it(
        tmp_path):
    """A real fault: the marker of t-1 needs a new segment, and a directory stands where its
    `.log` must go (EISDIR), so the log dir goes offline while the markers are written. The
    transaction is not completed (t-1 has no marker); the coordinator's own log is offline too,
    so it answers NOT_COORDINATOR. Once the disk is repaired, the restart writes the markers."""
    broker = BrokerState(config_for(tmp_path))
    broker.open()
    broker.create_topic("t", 2, {"segment.bytes": "100"})
    txn = broker.transactions
    pid, epoch = open_transaction(broker)
    t0, t1 = broker.logs.topic("t").partitions
    blocked = tmp_path / "t-1" / segment_file_name(1, LOG_SUFFIX)
    os.mkdir(blocked)
    txn.end_transaction("app", pid, epoch, True, NOW)
    assert broker.logs.offline
    meta = txn.transactions["app"]
    assert meta.state == S.PREPARE_COMMIT and meta.partitions == {("t", 1)}
    assert t0.last_stable_offset == 2 and t1.last_stable_offset == 0
    assert txn.retry_markers(NOW) == 1
    # The coordinator's writes fail as Kafka's do when its log is unavailable.
    assert code_of(lambda: txn.init_producer_id("other", 60000, -1, -1, NOW)) == \
        ErrorCode.NOT_COORDINATOR
    with pytest.raises(KafkaError) as info:
        broker.groups.metadata.append("g", [(b"k", b"v")], NOW)
    assert info.value.code == ErrorCode.NOT_COORDINATOR
    broker.close()

    os.rmdir(blocked)
    again = BrokerState(config_for(tmp_path))
    again.open()
    assert again.transactions.transactions["app"].state == S.COMPLETE_COMMIT
    for log in again.logs.topic("t").partitions:
        assert log.last_stable_offset == log.high_watermark >= 2
    again.close()


# The partitions of `__transaction_state` (config_for: 3 of them).
STATE_PARTITIONS = frozenset((TRANSACTION_STATE_TOPIC, p) for p in range(3))


async def test_a_refused_state_write_changes_nothing(tmp_path):
    """Kafka applies a transition once `__transaction_state` has it: an EndTxn whose
    PrepareCommit cannot be written is NOT_COORDINATOR and the transaction is still open, so
    the client's retry commits it."""
    broker = BrokerWithFlakyLogs(config_for(tmp_path))
    broker.open()
    broker.create_topic("t", 2)
    txn = broker.transactions
    pid, epoch = open_transaction(broker)
    broker.logs.unavailable |= STATE_PARTITIONS
    assert code_of(lambda: txn.end_transaction("app", pid, epoch, True, NOW)) == \
        ErrorCode.NOT_COORDINATOR
    meta = txn.transactions["app"]
    assert meta.state == S.ONGOING and meta.partitions == {("t", 0), ("t", 1)}
    assert txn.expire(NOW + 10**9) == 0          # the timeout's abort is refused the same way
    assert meta.state == S.ONGOING and meta.producer_epoch == epoch
    broker.logs.unavailable.clear()
    txn.end_transaction("app", pid, epoch, True, NOW)
    assert meta.state == S.COMPLETE_COMMIT
    broker.close()


async def test_a_refused_completion_is_retried_with_the_markers(tmp_path):
    broker = BrokerWithFlakyLogs(config_for(tmp_path))
    broker.open()
    broker.create_topic("t", 1)
    txn = broker.transactions
    pid, epoch = open_transaction(broker, [("t", 0)])
    broker.logs.unavailable.add(("t", 0))
    txn.end_transaction("app", pid, epoch, False, NOW)
    meta = txn.transactions["app"]
    # The marker can be written now, but not the CompleteAbort state.
    broker.logs.unavailable = set(STATE_PARTITIONS)
    assert txn.retry_markers(NOW) == 1
    assert meta.state == S.PREPARE_ABORT and meta.partitions == set()
    assert broker.partition("t", 0).last_stable_offset == 2
    broker.logs.unavailable = set()
    assert txn.retry_markers(NOW) == 0
    assert meta.state == S.COMPLETE_ABORT
    assert broker.partition("t", 0).high_watermark == 2          # one marker, not two
    broker.close()
