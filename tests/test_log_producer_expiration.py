"""Producer state expiry (Kafka's ProducerStateManager.removeExpiredProducers): a producer whose
last batch or marker in a partition is `producer.id.expiration.ms` old, with no transaction open
there, is forgotten; the broker checks every `producer.id.expiration.check.interval.ms`.

The state machine is driven with explicit times; the broker's timer under trio's MockClock, with
a clock whose wall time follows it (nothing sleeps).
"""

import trio
import trio.testing

from record_batches import make_batch
from trioka.clock import Clock
from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
from trioka.log.files import MemoryFiles
from trioka.log.partition import PartitionLog
from wire_client import memory_broker

T = 1_700_000_000_000
DAY = 86_400_000


def open_log() -> PartitionLog:
    return PartitionLog("t", 0, "t-0", MemoryFiles(), now_ms=T)


def idempotent(pid, seq, timestamp, epoch=0, transactional=False):
    return make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      base_timestamp=timestamp,
                      attributes=TRANSACTIONAL_FLAG_MASK if transactional else 0)


def test_an_idle_producer_expires_at_the_expiration_time():
    log = open_log()
    log.append(idempotent(1, 0, T), now_ms=T)
    log.append(idempotent(2, 0, T + 1000), now_ms=T)
    assert log.remove_expired_producers(T + DAY - 1, DAY) == []
    assert log.remove_expired_producers(T + DAY, DAY) == [1]     # last timestamp + expiration
    assert not log.has_producer(1) and log.has_producer(2)
    assert log.remove_expired_producers(T + DAY + 1000, DAY) == [2]


def test_the_last_batch_counts():
    log = open_log()
    log.append(idempotent(1, 0, T), now_ms=T)
    log.append(idempotent(1, 1, T + DAY // 2), now_ms=T)
    assert log.remove_expired_producers(T + DAY, DAY) == []
    assert log.remove_expired_producers(T + DAY + DAY // 2, DAY) == [1]


def test_a_producer_with_a_transaction_open_does_not_expire_until_its_marker_is_old():
    log = open_log()
    log.append(idempotent(7, 0, T, transactional=True), now_ms=T)
    assert log.remove_expired_producers(T + 10 * DAY, DAY) == []
    assert log.has_producer(7) and log.last_stable_offset == 0
    marker_time = T + 10 * DAY
    log.append_marker(7, 0, True, 0, marker_time)
    assert log.last_stable_offset == log.high_watermark
    assert log.remove_expired_producers(marker_time + DAY - 1, DAY) == []   # the marker's time
    assert log.remove_expired_producers(marker_time + DAY, DAY) == [7]


def test_an_expired_producer_starts_again_as_a_new_one():
    log = open_log()
    log.append(idempotent(3, 0, T), now_ms=T)
    log.append(idempotent(3, 1, T), now_ms=T)
    log.remove_expired_producers(T + DAY, DAY)
    # Any sequence is taken from a producer the partition has no state for (KIP-360).
    result = log.append(idempotent(3, 40, T + DAY), now_ms=T + DAY)
    assert result.base_offset == 2 and log.has_producer(3)


def test_a_snapshot_after_expiry_no_longer_holds_the_producer():
    files = MemoryFiles()
    log = PartitionLog("t", 0, "t-0", files, now_ms=T)
    log.append(idempotent(1, 0, T), now_ms=T)
    log.append(idempotent(2, 0, T + DAY), now_ms=T)
    log.remove_expired_producers(T + DAY, DAY)
    log.close()
    again = PartitionLog("t", 0, "t-0", files, now_ms=T, clean_shutdown=True)
    assert not again.has_producer(1) and again.has_producer(2)


class MockWallClock(Clock):
    """Wall time that moves with trio's (mock) clock, from T."""

    def wall_ms(self) -> int:
        return T + int(trio.current_time() * 1000)


async def test_the_broker_expires_producers_every_check_interval(mock_clock):
    broker = memory_broker({"producer.id.expiration.ms": str(DAY),
                            "producer.id.expiration.check.interval.ms": "600000"},
                           clock=MockWallClock())
    broker.create_topic("t", 1)
    log = broker.partition("t", 0)
    log.append(idempotent(5, 0, broker.clock.wall_ms()), now_ms=broker.clock.wall_ms())
    try:
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(DAY / 1000 - 1)          # a check ran; the producer is not old yet
            await trio.testing.wait_all_tasks_blocked()
            assert log.has_producer(5)
            mock_clock.jump(600)                     # the next check, a day after its batch
            await trio.testing.wait_all_tasks_blocked()
            assert not log.has_producer(5)
            nursery.cancel_scope.cancel()
    finally:
        broker.close()


def test_the_defaults_are_kafkas():
    broker = memory_broker()
    try:
        assert broker.config.producer_id_expiration_ms == 86_400_000
        assert broker.config.producer_id_expiration_check_interval_ms == 600_000
    finally:
        broker.close()
