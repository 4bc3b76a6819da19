"""Flushing as Kafka does, and never on the event loop.

- `flush.messages` (`log.flush.interval.messages`): an append that leaves that many messages
  unflushed is flushed before it is answered (Kafka's UnifiedLog.append), and its high
  watermark waits for that flush while the broker's flusher runs;
- `flush.ms` (`log.flush.interval.ms`): the flusher flushes the logs whose last flush is that old,
  checking every `log.flush.scheduler.interval.ms`;
- `log.flush.offset.checkpoint.interval.ms`: the checkpoint task flushes what was written and
  writes the recovery points (on a disk with one syncfs for every log written);
- group commit: appends made while a flush runs share the next one, one per partition at a time;
- every fsync runs in a worker thread, on duplicated descriptors.

Flushes are seen through the partition's recovery point and flush counter and through
MemoryFiles' public flush counter and hook (`flushes`, `on_flush`); a flush is made slow by
holding the hook, in the worker thread, on a threading.Event. Time is trio's MockClock.
"""

import os
import threading

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.clock import Clock
from trioka.log.checkpoint import RECOVERY_POINT_CHECKPOINT, read_offset_checkpoint
from trioka.log.files import DiskFile, DiskFiles
from trioka.log.partition import LogFlush
from trioka.log.segment import LOG_SUFFIX, segment_file_name
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire import protocol
from wire_client import WireClient, memory_broker

T = 1_700_000_000_000
Produce = protocol.request_class(ApiKey.PRODUCE)
ProduceData = Produce.TopicProduceData
PartitionProduceData = ProduceData.PartitionProduceData


class MockWallClock(Clock):
    """Wall time that moves with trio's (mock) clock, from T (flush.ms is judged on it)."""

    def wall_ms(self) -> int:
        return T + int(trio.current_time() * 1000)


def batch(value: bytes = b"v") -> bytes:
    """One record stamped at T, so that retention (7 days) leaves it alone."""
    return make_batch([value], base_timestamp=T)


def log_path(log, base_offset: int = 0) -> str:
    return f"{log.directory}/{segment_file_name(base_offset, LOG_SUFFIX)}"


async def produce(client, topic: str, index: int, value: bytes = b"v", acks: int = -1):
    """One record through the Produce handler; its partition response."""
    response = await client.call(
        ApiKey.PRODUCE, 9, transactional_id=None, acks=acks, timeout_ms=1000,
        topic_data=[ProduceData(name=topic, partition_data=[
            PartitionProduceData(index=index, records=batch(value))])])
    if response is None:
        return None
    return response.responses[0].partition_responses[0]


class SlowFlushes:
    """Holds every flush of a `.log` in its worker thread until `release()`: `entered` is set
    once one is held. Bounded: a held flush gives up after 30 s."""

    def __init__(self, files):
        self.entered = threading.Event()
        self.released = threading.Event()
        self.threads: list[str] = []    # the threads that flushed a `.log`
        files.on_flush = self.on_flush

    def on_flush(self, path: str) -> None:
        if path.endswith(LOG_SUFFIX):
            self.threads.append(threading.current_thread().name)
            self.entered.set()
            self.released.wait(30)

    async def wait_entered(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.wait, 30), "no flush started"

    def release(self) -> None:
        self.released.set()


async def wait_for_flushes(log, count: int) -> None:
    """Wait, boundedly, until the partition completed `count` flushes: a flush ends in a real
    worker thread, so each round lets the tasks run and a thread come and go."""
    for _ in range(1000):
        if log.flushes >= count:
            return
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(lambda: None)
    assert log.flushes >= count


# ------------------------------------------------------------------------- flush.messages

@pytest.mark.timeout(30)
async def test_flush_messages_flushes_every_n_messages_before_the_answer():
    broker = memory_broker()
    try:
        broker.create_topic("t", 1, {"flush.messages": "3"})
        log = broker.partition("t", 0)
        files = broker.logs.files
        client = WireClient(broker)
        for n in range(1, 8):
            response = await produce(client, "t", 0, b"m%d" % n)
            assert response.error_code == 0 and response.base_offset == n - 1
            # Kafka's rule: flush once unflushed messages (log end - recovery point) reach 3.
            assert log.recovery_point == 3 * (n // 3), n
            assert log.flushes == n // 3
            assert files.flushes[log_path(log)] == n // 3
    finally:
        broker.close()


@pytest.mark.timeout(30)
async def test_the_broker_setting_applies_to_topics_without_their_own():
    broker = memory_broker({"log.flush.interval.messages": "2"})
    try:
        broker.create_topic("t", 1)
        broker.create_topic("own", 1, {"flush.messages": "1"})
        client = WireClient(broker)
        for _ in range(4):
            await produce(client, "t", 0)
            await produce(client, "own", 0)
        assert broker.partition("t", 0).flushes == 2
        assert broker.partition("own", 0).flushes == 4
    finally:
        broker.close()


@pytest.mark.timeout(30)
async def test_by_default_nothing_is_flushed_on_append():
    broker = memory_broker()
    try:
        broker.create_topic("t", 1)
        client = WireClient(broker)
        for _ in range(100):
            await produce(client, "t", 0)
        log = broker.partition("t", 0)
        assert log.recovery_point == 0 and log.flushes == 0
        assert broker.logs.files.flushes[log_path(log)] == 0
    finally:
        broker.close()


# --------------------------------------------------------------------------- group commit

@pytest.mark.timeout(60)
async def test_group_commit_one_flush_covers_the_appends_made_while_one_ran():
    """flush.messages=1: the first produce starts a flush (held in its worker thread); three
    more arrive meanwhile and wait. Once it ends, one more flush covers all three: two fsyncs
    of the `.log` for four acknowledged batches, and no answer before the flush covering it."""
    broker = memory_broker({"log.flush.interval.messages": "1"})
    slow = SlowFlushes(broker.logs.files)
    try:
        broker.create_topic("t", 1)
        log = broker.partition("t", 0)
        client = WireClient(broker)
        answered: dict[bytes, tuple[int, int]] = {}   # value -> (base offset, recovery point)

        async def one(value: bytes) -> None:
            response = await produce(client, "t", 0, value)
            assert response.error_code == 0
            answered[value] = (response.base_offset, log.recovery_point)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, b"first")
            await slow.wait_entered()
            for value in (b"a", b"b", b"c"):
                nursery.start_soon(one, value)
            await trio.testing.wait_all_tasks_blocked()
            assert log.log_end_offset == 4          # all appended, none durable, none answered
            assert log.recovery_point == 0 and answered == {}
            assert log.flushing is not None and log.flushing.upto == 1
            slow.release()
        assert broker.logs.files.flushes[log_path(log)] == 2
        assert log.flushes == 2 and log.recovery_point == 4
        for value, (base_offset, recovery_point) in answered.items():
            assert recovery_point > base_offset, value   # answered once on disk
        assert answered[b"first"][1] == 1          # answered by the end of its own flush
        # Every fsync ran in a worker thread, none on the event loop's.
        assert slow.threads and threading.main_thread().name not in slow.threads
    finally:
        slow.release()
        broker.close()


@pytest.mark.timeout(60)
async def test_the_high_watermark_waits_for_the_flush_while_the_flusher_runs(mock_clock):
    """With the broker's flusher running, an append due for a flush is committed (the high
    watermark, what consumers read up to) only once it is durable, as in Kafka, where the
    append flushes before the high watermark moves."""
    broker = memory_broker({"log.flush.interval.messages": "1"}, clock=MockWallClock())
    slow = SlowFlushes(broker.logs.files)
    try:
        broker.create_topic("t", 1)
        log = broker.partition("t", 0)
        client = WireClient(broker)
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await trio.testing.wait_all_tasks_blocked()
            response = None

            async def one() -> None:
                nonlocal response
                response = await produce(client, "t", 0)

            nursery.start_soon(one)
            await slow.wait_entered()
            await trio.testing.wait_all_tasks_blocked()
            assert log.log_end_offset == 1 and log.high_watermark == 0
            assert log.read(0, 1 << 20).records == b""
            assert response is None
            slow.release()
            await wait_for_flushes(log, 1)
            await trio.testing.wait_all_tasks_blocked()
            assert response is not None and response.error_code == 0
            assert log.high_watermark == 1 == log.recovery_point
            nursery.cancel_scope.cancel()
    finally:
        slow.release()
        broker.close()


@pytest.mark.timeout(60)
async def test_flush_messages_also_applies_to_writes_no_produce_waits_for(mock_clock):
    """Appends made by the broker itself (the coordinators' writes) are flushed by the flusher
    task as soon as they are due."""
    broker = memory_broker({"log.flush.interval.messages": "1"}, clock=MockWallClock())
    try:
        broker.create_topic("t", 1)
        log = broker.partition("t", 0)
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await trio.testing.wait_all_tasks_blocked()
            log.append(batch(b"x"), now_ms=broker.clock.wall_ms())
            assert log.high_watermark == 0
            await wait_for_flushes(log, 1)
            assert log.recovery_point == 1 and log.high_watermark == 1
            nursery.cancel_scope.cancel()
    finally:
        broker.close()


# -------------------------------------------------------------------------------- flush.ms

@pytest.mark.timeout(60)
async def test_flush_ms_flushes_on_the_schedulers_timer(mock_clock):
    broker = memory_broker({"log.flush.scheduler.interval.ms": "1000"}, clock=MockWallClock())
    try:
        broker.create_topic("t", 1, {"flush.ms": "5000"})
        broker.create_topic("never", 1)
        log = broker.partition("t", 0)
        other = broker.partition("never", 0)
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await trio.testing.wait_all_tasks_blocked()
            log.append(batch(b"x"), now_ms=broker.clock.wall_ms())
            other.append(batch(b"x"), now_ms=broker.clock.wall_ms())
            for _ in range(4):                      # checks at 1, 2, 3, 4 s: not 5 s old yet
                mock_clock.jump(1)
                await trio.testing.wait_all_tasks_blocked()
                assert log.recovery_point == 0 and log.flushes == 0
            mock_clock.jump(1)                      # 5 s since the log was created
            await wait_for_flushes(log, 1)
            assert log.recovery_point == 1
            assert log.last_flush_ms == broker.clock.wall_ms()
            log.append(batch(b"y"), now_ms=broker.clock.wall_ms())
            for _ in range(4):
                mock_clock.jump(1)
                await trio.testing.wait_all_tasks_blocked()
            assert log.flushes == 1
            mock_clock.jump(1)
            await wait_for_flushes(log, 2)
            assert log.recovery_point == 2
            assert other.flushes == 0               # flush.ms defaults to never
            nursery.cancel_scope.cancel()
    finally:
        broker.close()


def test_the_flush_defaults_are_kafkas():
    broker = memory_broker()
    try:
        config = broker.config
        assert config.log_flush_interval_messages == 2**63 - 1
        assert config.log_flush_interval_ms == 2**63 - 1
        assert config.log_flush_scheduler_interval_ms == 2**63 - 1
        assert config.log_flush_offset_checkpoint_interval_ms == 60_000
        broker.create_topic("t", 1)
        assert broker.partition("t", 0).config.flush_messages == 2**63 - 1
    finally:
        broker.close()


# ------------------------------------------------------------------------------ checkpoint

@pytest.mark.timeout(60)
async def test_the_checkpoint_flushes_in_a_worker_thread_while_the_loop_runs(mock_clock):
    """The checkpoint task (log.flush.offset.checkpoint.interval.ms) flushes every written log
    and writes the recovery points; with its fsync held in the worker thread, the event loop
    keeps running timers and serving requests."""
    broker = memory_broker({"log.flush.offset.checkpoint.interval.ms": "10000"},
                           clock=MockWallClock())
    slow = SlowFlushes(broker.logs.files)
    try:
        broker.create_topic("t", 1)
        broker.create_topic("u", 1)
        log = broker.partition("t", 0)
        client = WireClient(broker)
        for _ in range(3):
            await produce(client, "t", 0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await broker.clock.sleep(1)
                ticks += 1

        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            nursery.start_soon(ticker)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(9):
                mock_clock.jump(1)
                await trio.testing.wait_all_tasks_blocked()
            assert log.flushes == 0 and ticks == 9
            mock_clock.jump(1)                      # the checkpoint is due: its flush is held
            await slow.wait_entered()
            for _ in range(5):
                mock_clock.jump(1)
                await trio.testing.wait_all_tasks_blocked()
            assert ticks == 15                      # the loop went on meanwhile
            response = await produce(client, "u", 0)
            assert response.error_code == 0         # and served a request
            assert log.recovery_point == 0 and log.flushing is not None
            slow.release()
            await wait_for_flushes(log, 1)
            assert log.recovery_point == 3
            written = {}
            for _ in range(100):      # the file is written by a worker thread too
                await trio.to_thread.run_sync(lambda: None)
                await trio.testing.wait_all_tasks_blocked()
                if broker.logs.files.exists(RECOVERY_POINT_CHECKPOINT):
                    written = read_offset_checkpoint(broker.logs.files,
                                                     RECOVERY_POINT_CHECKPOINT)
                    if written.get(("t", 0)) == 3:
                        break
            assert written == {("t", 0): 3, ("u", 0): 1}
            assert threading.main_thread().name not in slow.threads
            nursery.cancel_scope.cancel()
    finally:
        slow.release()
        broker.close()


@pytest.mark.timeout(60)
async def test_a_rolled_segment_is_flushed_in_the_background(mock_clock):
    """As Kafka flushes a segment when it rolls, without waiting for the checkpoint."""
    broker = memory_broker(clock=MockWallClock())
    try:
        broker.create_topic("t", 1, {"segment.bytes": "300"})
        log = broker.partition("t", 0)
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await trio.testing.wait_all_tasks_blocked()
            while len(log.segments) < 2:
                log.append(batch(b"x" * 50), now_ms=broker.clock.wall_ms())
            rolled_at = log.segments[1].base_offset
            await wait_for_flushes(log, 1)
            assert log.recovery_point >= rolled_at
            assert broker.logs.files.flushes[log_path(log)] >= 1
            # The new segment's file name was made durable: the partition dir was flushed.
            assert broker.logs.files.flushes[log.directory] >= 1
            nursery.cancel_scope.cancel()
    finally:
        broker.close()


# ------------------------------------------------------------------- duplicated descriptors

def test_a_duplicated_descriptor_flushes_a_file_closed_and_deleted_meanwhile(tmp_path):
    files = DiskFiles(str(tmp_path))
    files.mkdir("t-0")
    segment = files.open("t-0/00000000000000000000.log")
    segment.append(b"x" * 100)
    handle = segment.duplicate()
    directory = files.open_directory("t-0")
    segment.close()                                   # a roll, a retention, a deletion...
    files.remove("t-0/00000000000000000000.log")
    files.rename("t-0", "t-0.deleted")
    handle.flush()                                    # still valid: nothing is reported
    directory.flush()
    handle.close()
    directory.close()
    assert not files.failure_channel.offline


def test_a_flush_of_an_offline_dir_is_a_storage_error_from_any_thread(tmp_path):
    files = DiskFiles(str(tmp_path))
    segment = files.open("f.log")
    segment.append(b"x")
    handle = segment.duplicate()
    files.failure_channel.maybe_add_offline_log_dir("Error while testing", OSError(5, "EIO"))
    failures = []

    def flush() -> None:
        try:
            handle.flush()
        except KafkaError as e:
            failures.append(e.code)

    thread = threading.Thread(target=flush)
    thread.start()
    thread.join(30)
    assert failures == [ErrorCode.KAFKA_STORAGE_ERROR]
    with pytest.raises(KafkaError):
        segment.duplicate()
    handle.close()
    segment.close()
    assert os.path.exists(tmp_path / "f.log")


def test_an_fsync_failing_in_a_worker_thread_takes_the_dir_offline(tmp_path):
    """The failure is reported through the files layer from the thread, as any I/O error is:
    here an fsync that the kernel refuses (a pipe: EINVAL)."""
    files = DiskFiles(str(tmp_path))
    read_end, write_end = os.pipe()
    os.close(write_end)
    flush = LogFlush(1, [DiskFile("not-a-file", files.failure_channel, fd=read_end)], 0)
    failures = []

    def run() -> None:
        try:
            flush.run()
        except KafkaError as e:
            failures.append(e.code)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert failures == [ErrorCode.KAFKA_STORAGE_ERROR]
    assert files.failure_channel.offline
    assert "flushing not-a-file" in files.failure_channel.failure
    with pytest.raises(KafkaError):
        files.open("after.log")


# ------------------------------------------------------------------- the sweep on a disk

def disk_broker(tmp_path):
    from trioka.broker import BrokerState
    from trioka.config import Config
    broker = BrokerState(Config({"log.dirs": str(tmp_path),
                                 "listeners": "PLAINTEXT://127.0.0.1:0"}))
    broker.open()
    return broker


async def test_the_checkpoint_syncs_the_file_system_once_for_every_written_log(
        tmp_path, monkeypatch):
    """On a disk the checkpoint's sweep is one syncfs for all the logs written since their last
    flush (32 or more of them), not an fsync each (10,000 written partitions: 6.9 s and 3.7 CPU-seconds of fsyncs
    before, 0.24 s after), and it holds no descriptor per log: with the process allowed only a
    few more descriptors than it has, 400 written logs are swept and their recovery points
    move."""
    import resource
    broker = disk_broker(tmp_path)
    syncs = []
    sync = DiskFiles.sync_filesystem
    monkeypatch.setattr(DiskFiles, "sync_filesystem",
                        lambda self: (syncs.append(threading.get_ident()), sync(self))[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        await broker.create_topic_async("many", 400)
        logs = [broker.partition("many", i) for i in range(400)]
        for log in logs:
            log.append(batch(), now_ms=T)
        assert all(log.recovery_point == 0 for log in logs)
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 64, hard))
        try:
            await broker.checkpoint()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert not broker.logs.files.failure_channel.offline
        assert len(syncs) == 1 and syncs[0] != threading.get_ident()
        assert all(log.recovery_point == 1 and log.flushing is None for log in logs)
        points = read_offset_checkpoint(broker.logs.files, RECOVERY_POINT_CHECKPOINT)
        assert {points[("many", i)] for i in range(400)} == {1}
    finally:
        broker.close()


async def test_a_failed_file_system_sync_takes_the_dir_offline_and_moves_no_recovery_point(
        tmp_path, monkeypatch):
    import ctypes
    import trioka.log.files as files_module

    def failing_syncfs(fd):
        ctypes.set_errno(5)       # EIO: the disk lost writes
        return -1

    broker = disk_broker(tmp_path)
    monkeypatch.setattr(broker, "SWEEP_SYNCFS_MIN_LOGS", 2)
    try:
        broker.create_topic("t", 2)
        logs = [broker.partition("t", i) for i in range(2)]
        for log in logs:
            log.append(batch(), now_ms=T)
        monkeypatch.setattr(files_module, "_syncfs", failing_syncfs)
        await broker.checkpoint()
        channel = broker.logs.files.failure_channel
        assert channel.offline and "syncing the file system of" in channel.failure
        assert all(log.recovery_point == 0 and log.flushing is None for log in logs)
        with pytest.raises(KafkaError) as refused:
            logs[0].append(batch(), now_ms=T)
        assert refused.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    finally:
        broker.close()


async def test_a_few_written_logs_are_fsynced_each_without_syncing_the_file_system(
        tmp_path, monkeypatch):
    broker = disk_broker(tmp_path)
    syncs = []
    monkeypatch.setattr(DiskFiles, "sync_filesystem", lambda self: syncs.append(1))
    try:
        broker.create_topic("few", 3)
        logs = [broker.partition("few", i) for i in range(3)]
        for log in logs:
            log.append(batch(), now_ms=T)
        await broker.checkpoint()
        assert syncs == [] and all(log.recovery_point == 1 for log in logs)
    finally:
        broker.close()
