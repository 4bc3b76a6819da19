"""Nothing stalls the event loop (issue 10): work that grows with a burst or with a topic's size
is bounded per turn of the loop or done in worker threads. Each test asserts the structural
property rather than a time (times are noisy on a loaded machine; bench/stalls.py measures them):

- long polls that expire together are answered at most EXPIRED_PER_TURN per loop turn (the fetch
  purgatory's reaper), never all in one turn, whose length grew with the number of consumers;
- deleting a topic renames and removes its partition dirs in a worker thread, and the topic is
  gone at once;
- CreatePartitions makes the new partitions' dirs in a worker thread, and so does the first
  FindCoordinator those of an internal topic;
- the log cleaner's fsync of a large cleaned segment and the removal of the segments it replaces
  are steps run in a worker thread.
"""

import resource
import socket
import struct
import threading

import pytest
import trio
import trio.testing

import trioka.apis.fetch as fetch_api
from trioka.apis.purgatory import EXPIRED_PER_TURN, FetchPurgatory
from trioka.broker import BrokerState
from trioka.clock import Clock
from trioka.config import Config
from trioka.log import cleaner as cleaner_module
from trioka.log.cleaner import LogCleaner
from trioka.log.files import DiskFiles
from trioka.log.manager import LogManager
from trioka.log.partition import PartitionLog
from trioka.log.records import encode_batch, iter_batches
from trioka.testing.embedded import open_broker
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


class LoopTurns(trio.abc.Instrument):
    """Counts the turns of trio's run loop (one per poll of the sockets) and times them."""

    def __init__(self):
        self.turn = 0
        self.started = None
        self.longest_s = 0.0

    def after_io_wait(self, timeout):
        self.turn += 1
        self.started = trio.current_time()

    def before_io_wait(self, timeout):
        if self.started is not None:
            self.longest_s = max(self.longest_s, trio.current_time() - self.started)


# ------------------------------------------------------------------------ the fetch purgatory

async def test_expired_waits_are_woken_a_bounded_number_per_turn_earliest_first(autojump_clock):
    purgatory = FetchPurgatory(Clock())
    turns = LoopTurns()
    trio.lowlevel.add_instrument(turns)
    woken: list[tuple[int, int]] = []    # (turn, index)
    n = 10 * EXPIRED_PER_TURN + 5
    deadline = trio.current_time() + 0.5

    async def waiter(i: int) -> None:
        # Deadlines 1 µs apart: woken in deadline order.
        await purgatory.wait(purgatory.delayed(deadline + i * 1e-6))
        woken.append((turns.turn, i))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(waiter, i)
        await trio.testing.wait_all_tasks_blocked()
        assert len(purgatory) == n
    trio.lowlevel.remove_instrument(turns)
    assert sorted(i for _, i in woken) == list(range(n))
    per_turn: dict[int, int] = {}
    for turn, _ in woken:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= EXPIRED_PER_TURN
    assert len(per_turn) >= n // EXPIRED_PER_TURN
    # Earliest deadlines first: no waiter is woken in a turn before one with an earlier deadline.
    assert [i for _, i in sorted(woken)] == list(range(n))
    assert len(purgatory) == 0


async def test_a_wait_woken_by_data_leaves_the_purgatory_and_never_counts_later(autojump_clock):
    purgatory = FetchPurgatory(Clock(), expired_per_turn=2)
    events = [purgatory.delayed(trio.current_time() + 30) for _ in range(200)]
    done = []

    async def waiter(i: int) -> None:
        await purgatory.wait(events[i])
        done.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(waiter, i)
        await trio.testing.wait_all_tasks_blocked()
        for event in events[:150]:     # data arrives for most of them
            event.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(done) == list(range(150))
        # The entries of those that left are dropped (the heap is rebuilt once most have left).
        assert len(purgatory) == 50
        start = trio.current_time()
    assert sorted(done) == list(range(200))
    assert trio.current_time() - start == pytest.approx(30, abs=0.01)


async def test_the_reaper_starts_again_after_an_idle_time(autojump_clock):
    purgatory = FetchPurgatory(Clock())
    for round_ in range(3):
        start = trio.current_time()
        await purgatory.wait(purgatory.delayed(start + 0.5))
        assert trio.current_time() - start == pytest.approx(0.5)
        await trio.sleep(5)   # nothing waits: the reaper ends, the next wait starts another


async def test_an_earlier_deadline_than_the_one_the_reaper_sleeps_to_is_kept(autojump_clock):
    purgatory = FetchPurgatory(Clock())
    answered = {}

    async def waiter(name: str, wait_s: float) -> None:
        start = trio.current_time()
        await purgatory.wait(purgatory.delayed(start + wait_s))
        answered[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "long", 60.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "short", 0.1)
    assert answered["short"] == pytest.approx(0.1)
    assert answered["long"] == pytest.approx(60.0, abs=0.2)


async def test_a_change_that_wakes_many_waits_wakes_them_a_bounded_number_per_turn():
    """One append read by 1,000 consumers, or the deletion of the topic they wait on: the first
    EXPIRED_PER_TURN are woken at once, the others by the reaper, as many per turn, in order."""
    purgatory = FetchPurgatory(Clock())
    turns = LoopTurns()
    n = 10 * EXPIRED_PER_TURN
    delayed = [purgatory.delayed(trio.current_time() + 60) for _ in range(n)]
    woken: list[tuple[int, int]] = []

    async def waiter(i: int) -> None:
        await purgatory.wait(delayed[i])
        woken.append((turns.turn, i))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(waiter, i)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(turns)
        for d in delayed:     # as PartitionLog.wake_waiters does, in one step
            d.set()
    trio.lowlevel.remove_instrument(turns)
    per_turn: dict[int, int] = {}
    for turn, _ in woken:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert sorted(i for _, i in woken) == list(range(n))
    assert max(per_turn.values()) <= EXPIRED_PER_TURN
    assert [i for _, i in sorted(woken)] == list(range(n))
    assert len(purgatory) == 0


# ------------------------------------------- long polls of many consumers expiring together

FETCHERS = 1000
Fetch = protocol.request_class(ApiKey.FETCH)


def fetch_frame(correlation_id: int, max_wait_ms: int) -> bytes:
    topics = [Fetch.FetchTopic(topic="idle", partitions=[
        Fetch.FetchTopic.FetchPartition(partition=0, fetch_offset=0,
                                        partition_max_bytes=1 << 20)])]
    return protocol.encode_request(
        ApiKey.FETCH, 12, correlation_id, "stall-test",
        Fetch(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=50 << 20,
              isolation_level=0, session_id=0, session_epoch=-1, topics=topics,
              forgotten_topics_data=[]))


@pytest.mark.parametrize("woken_by", ["their deadline", "the topic's deletion"])
async def test_a_thousand_long_polls_woken_together_do_not_hold_the_loop(monkeypatch, woken_by):
    """1,000 consumers' Fetches sent at the same moment expire together, or are woken together
    by a change of the partition they wait on. Answered all in one turn of the event loop (as
    when each had its own cancel scope and a change set every waiter's event), they held it
    80-115 ms, and every other client with it; the purgatory wakes at most EXPIRED_PER_TURN of
    them per turn (plus as many woken directly before the reaper's next turn)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * FETCHERS + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * FETCHERS), hard))
    turns = LoopTurns()
    per_turn: dict[int, int] = {}
    all_answered = trio.Event()
    original = fetch_api.handle

    async def counted(broker, request, ctx):
        response = await original(broker, request, ctx)
        per_turn[turns.turn] = per_turn.get(turns.turn, 0) + 1
        if sum(per_turn.values()) == FETCHERS:
            all_answered.set()
        return response

    monkeypatch.setattr(fetch_api, "handle", counted)
    async with open_broker(memory=True) as server:
        server.broker.create_topic("idle", 1)
        host, port = server.bootstrap_servers.split(",")[0].rsplit(":", 1)
        socks = []
        try:
            with trio.fail_after(120):
                for _ in range(FETCHERS):
                    s = socket.socket()
                    s.setblocking(False)
                    try:
                        s.connect((host, int(port)))
                    except BlockingIOError:
                        pass
                    socks.append(s)
                for s in socks:
                    await trio.lowlevel.wait_writable(s)
                while server.limits.open < FETCHERS:
                    await trio.sleep(0.01)     # polling the accept count, bounded by fail_after
                expiring = woken_by == "their deadline"
                trio.lowlevel.add_instrument(turns)
                for i, s in enumerate(socks):  # all at once: their deadlines are together
                    s.send(fetch_frame(i, 300 if expiring else 60_000))
                if not expiring:
                    while len(server.broker.fetch_purgatory) < FETCHERS:
                        await trio.sleep(0.01)   # polling, bounded by fail_after
                    await server.broker.delete_topic_async("idle")
                await all_answered.wait()
                trio.lowlevel.remove_instrument(turns)
                for i, s in enumerate(socks):  # every consumer got its (empty) answer
                    frame = await read_frame(s)
                    assert struct.unpack_from(">i", frame)[0] == i
        finally:
            for s in socks:
                s.close()
    most = max(per_turn.values())
    assert most <= 2 * EXPIRED_PER_TURN, (
        f"{most} long polls answered in one loop turn (longest turn "
        f"{turns.longest_s * 1000:.0f} ms)")


async def read_frame(sock: socket.socket) -> bytes:
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
        await trio.lowlevel.wait_readable(sock)
        chunk = sock.recv(1 << 20)
        assert chunk, "the broker closed a consumer's connection"
        buf += chunk
    return buf[4:]


# ------------------------------------------------------ topic deletion and CreatePartitions

class ThreadsOf:
    """Which threads called a LogManager's file operations (by name)."""

    def __init__(self, monkeypatch, files, *names):
        self.calls: dict[str, set] = {name: set() for name in names}
        for name in names:
            original = getattr(files, name)

            def recorded(*args, _name=name, _original=original, **kwargs):
                self.calls[_name].add(threading.current_thread() is threading.main_thread())
                return _original(*args, **kwargs)
            monkeypatch.setattr(files, name, recorded)

    def on_loop(self, name: str) -> bool:
        return True in self.calls[name]

    def off_loop(self, name: str) -> bool:
        return False in self.calls[name]


def disk_broker(tmp_path) -> BrokerState:
    broker = BrokerState(Config({"log.dirs": str(tmp_path),
                                 "listeners": "PLAINTEXT://127.0.0.1:0"}))
    broker.open()
    return broker


async def test_a_topic_deletion_renames_and_removes_its_dirs_off_the_loop(tmp_path, monkeypatch):
    broker = disk_broker(tmp_path)
    try:
        await broker.create_topic_async("doomed", 30)
        threads = ThreadsOf(monkeypatch, broker.logs.files, "rename", "remove_tree")
        await broker.delete_topic_async("doomed")
        assert broker.topic("doomed") is None
        assert threads.off_loop("rename") and not threads.on_loop("rename")
        assert threads.off_loop("remove_tree") and not threads.on_loop("remove_tree")
        assert not [d for d in (tmp_path).iterdir() if d.name.startswith("doomed")]
    finally:
        broker.close()


def test_a_deleted_topic_s_name_is_taken_until_its_dirs_are_renamed(tmp_path):
    logs = LogManager(str(tmp_path), clock=Clock())
    logs.open()
    try:
        logs.create_topic("t", 3)
        deletion = logs.begin_topic_deletion("t")
        assert logs.topic("t") is None           # gone at once
        with pytest.raises(KafkaError) as e:
            logs.create_topic("t", 1)
        assert e.value.code == ErrorCode.TOPIC_ALREADY_EXISTS
        deletion.rename_dirs()
        logs.end_topic_deletion(deletion)
        logs.create_topic("t", 1)                # a new topic of that name
        deletion.remove_dirs()
        assert sorted(d.name for d in tmp_path.iterdir() if d.name.startswith("t-")) == ["t-0"]
    finally:
        logs.close()
    reopened = LogManager(str(tmp_path), clock=Clock())
    reopened.open()
    try:
        assert reopened.topic("t").num_partitions == 1
    finally:
        reopened.close()


async def test_the_first_find_coordinator_makes_the_internal_topic_off_the_loop(
        tmp_path, monkeypatch):
    """A single broker's `__consumer_offsets` (50 partitions) and `__transaction_state` are
    made by the first FindCoordinator that needs them, their dirs in a worker thread, and the
    answer waits for them: the coordinator is this broker, its topic there."""
    from tests.test_coordinator_apis import Wire
    from trioka.config import Listener
    broker = disk_broker(tmp_path)
    broker.set_listeners([Listener("PLAINTEXT", "127.0.0.1", 9999)])
    threads = ThreadsOf(monkeypatch, broker.logs.files, "mkdir")
    wire = Wire(broker)
    try:
        async with trio.open_nursery() as nursery:
            broker.nursery = nursery
            with trio.fail_after(30):
                answers = []

                async def find(key):
                    answers.append(await wire.call(ApiKey.FIND_COORDINATOR, 4, key_type=0,
                                                   coordinator_keys=[key]))

                async with trio.open_nursery() as clients:    # two at once: one creation
                    for key in ("a", "b"):
                        clients.start_soon(find, key)
                assert broker.topic("__consumer_offsets").num_partitions == 50
                assert sorted((c.key, c.node_id, c.port, c.error_code)
                              for r in answers for c in r.coordinators) == \
                    [("a", 1, 9999, 0), ("b", 1, 9999, 0)]
                r = await wire.call(ApiKey.FIND_COORDINATOR, 3, key="txn", key_type=1)
                assert (r.error_code, r.node_id, r.port) == (0, 1, 9999)
                assert broker.topic("__transaction_state").num_partitions == 50
            nursery.cancel_scope.cancel()
        assert threads.off_loop("mkdir") and not threads.on_loop("mkdir")
    finally:
        broker.nursery = None
        broker.close()


def test_a_record_for_an_internal_topic_still_being_made_gets_coordinator_not_available(
        tmp_path):
    """While the first FindCoordinator makes `__consumer_offsets` in a worker thread, a
    coordinator's record for it (a client that sent TxnOffsetCommit without asking for the
    group's coordinator first) cannot be written: the coordinators answer
    COORDINATOR_NOT_AVAILABLE, and the client asks again. (It was TOPIC_ALREADY_EXISTS.)"""
    from trioka.log.topics import coordinator_append_error
    logs = LogManager(str(tmp_path), clock=Clock())
    logs.open()
    try:
        creation = logs.begin_topic_creation("__consumer_offsets", 3, {})
        with pytest.raises(KafkaError) as refused:
            logs.ensure_internal_topic("__consumer_offsets", 3, {})
        assert coordinator_append_error(refused.value, "offsets").code == \
            ErrorCode.COORDINATOR_NOT_AVAILABLE
        creation.make_dirs()
        logs.end_topic_creation(creation)
        logs.ensure_internal_topic("__consumer_offsets", 3, {})     # made: nothing to do
        assert logs.topic("__consumer_offsets").num_partitions == 3
        logs.ensure_internal_topic("__transaction_state", 2, {})    # made here and now
        assert logs.topic("__transaction_state").num_partitions == 2
    finally:
        logs.close()


async def test_create_partitions_makes_the_new_dirs_off_the_loop(tmp_path, monkeypatch):
    broker = disk_broker(tmp_path)
    try:
        await broker.create_topic_async("growing", 2)
        threads = ThreadsOf(monkeypatch, broker.logs.files, "mkdir")
        async with trio.open_nursery() as nursery:   # two at once: applied one after the other
            nursery.start_soon(broker.create_partitions_async, "growing", 10)
            await trio.testing.wait_all_tasks_blocked()    # the first is in its worker thread
            nursery.start_soon(broker.create_partitions_async, "growing", 25)
        assert broker.topic("growing").num_partitions == 25
        assert threads.off_loop("mkdir") and not threads.on_loop("mkdir")
        for index in range(25):
            assert broker.partition("growing", index).partition == index
    finally:
        broker.close()
    reopened = disk_broker(tmp_path)
    try:
        assert reopened.topic("growing").num_partitions == 25
    finally:
        reopened.close()


def test_partitions_made_for_a_topic_deleted_meanwhile_are_not_adopted(tmp_path):
    logs = LogManager(str(tmp_path), clock=Clock())
    logs.open()
    try:
        logs.create_topic("t", 1)
        creation = logs.begin_partition_creation("t", 4)
        creation.make_dirs()
        logs.delete_topic("t")
        with pytest.raises(KafkaError) as e:
            logs.end_partition_creation(creation)
        assert e.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    finally:
        logs.close()
    reopened = LogManager(str(tmp_path), clock=Clock())
    reopened.open()
    try:
        assert reopened.topic("t") is None
    finally:
        reopened.close()


# -------------------------------------------------------------------------------- the cleaner

def compacted_log(files) -> PartitionLog:
    config = {"cleanup.policy": "compact", "segment.bytes": "20000",
              "min.cleanable.dirty.ratio": "0.01"}
    log = PartitionLog("c", 0, "c-0", files, config, now_ms=NOW)
    for round_ in range(30):
        log.append(encode_batch([(f"k{i}".encode(), f"v{round_}".encode() * 50, [], NOW)
                                 for i in range(20)]), now_ms=NOW)
    return log


def latest(log) -> dict:
    """Each key's latest value, as a consumer reading the whole log sees it."""
    out = {}
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        batches = list(iter_batches(bytes(log.read(offset, 1 << 20).records)))
        if not batches:
            break
        for batch in batches:
            for record in batch.records:
                out[record.key] = record.value
        offset = batches[-1].base_offset + batches[-1].last_offset_delta + 1
    return out


@pytest.mark.parametrize("driver", ["threads", "ignores the steps"])
def test_the_cleaner_hands_its_fsync_and_removals_to_a_worker_thread(tmp_path, monkeypatch,
                                                                    driver):
    monkeypatch.setattr(cleaner_module, "SYNC_IN_THREAD_BYTES", 1)
    files = DiskFiles(str(tmp_path))
    log = compacted_log(files)
    before = latest(log)
    segments_before = len(log.segments)
    cleaner = LogCleaner(files, lambda: [log])
    steps = []
    for step in cleaner.clean_steps(NOW):
        if step is not None:
            steps.append(step)
            if driver == "threads":
                worker = threading.Thread(target=step.run)
                worker.start()
                worker.join(30)
    assert steps, "the pass handed no blocking work to its driver"
    assert len(log.segments) < segments_before
    assert latest(log) == before
    assert not [n for n in files.listdir("c-0") if n.endswith((".deleted", ".cleaned", ".swap"))]
    log.close()
    reopened = PartitionLog("c", 0, "c-0", files, log.config, now_ms=NOW, clean_shutdown=False)
    assert latest(reopened) == before
    reopened.close()


def test_a_pass_abandoned_at_a_blocking_step_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(cleaner_module, "SYNC_IN_THREAD_BYTES", 1)
    files = DiskFiles(str(tmp_path))
    log = compacted_log(files)
    before = latest(log)
    cleaner = LogCleaner(files, lambda: [log])
    steps = cleaner.clean_steps(NOW)
    while next(steps) is None:
        pass
    cleaner.abort()    # given up while the driver held the fsync step, before running it
    assert not files.failure_channel.offline
    assert not [n for n in files.listdir("c-0") if n.endswith((".cleaned", ".swap"))]
    assert latest(log) == before
    log.close()


# ------------------------------------------------------------- a fetch of thousands of partitions

async def test_a_fetch_of_thousands_of_partitions_is_read_a_slice_per_turn():
    """A consumer's first full fetch of 2,500 partitions is read READ_SLICE partitions per turn
    of the loop (other tasks run in between), and answers exactly what one read gives."""
    broker = BrokerState(Config({"memory": True}))
    broker.open()
    try:
        broker.create_topic("wide", 2500)
        for index in (0, 1200, 2499):
            broker.partition("wide", index).append(encode_batch([(None, b"v%d" % index)]),
                                                   now_ms=NOW)
        wanted = [fetch_api._Wanted("wide", None, p, 0, 1 << 20) for p in range(2500)]
        turns = 0
        done = trio.Event()

        async def other_work():
            nonlocal turns
            while not done.is_set():
                turns += 1
                await trio.lowlevel.checkpoint()

        class Steps(trio.abc.Instrument):
            """The steps of the reading task: one per slice, the loop's other work between."""
            def __init__(self):
                self.task, self.steps = None, 0

            def before_task_step(self, task):
                if task is self.task:
                    self.steps += 1

        steps = Steps()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_work)
            await trio.lowlevel.checkpoint()
            before = turns
            steps.task = trio.lowlevel.current_task()
            trio.lowlevel.add_instrument(steps)
            try:
                paced = await fetch_api._read_paced(broker, wanted, 50 << 20, 0, 12, None)
            finally:
                trio.lowlevel.remove_instrument(steps)
            during = turns - before
            done.set()
        whole = fetch_api._read_all(broker, wanted, 50 << 20, 0, 12)
        # Three slices: the read resumed twice, and the other task ran meanwhile (trio runs the
        # tasks of one batch in a random order, so how often is not fixed).
        assert steps.steps >= -(-2500 // fetch_api.READ_SLICE) - 1
        assert during >= 1
        assert paced.bytes == whole.bytes > 0
        assert [(cp.partition, pd.error_code, pd.high_watermark, has)
                for cp, pd, has in paced.results] == \
            [(cp.partition, pd.error_code, pd.high_watermark, has)
             for cp, pd, has in whole.results]
        paced.release()
        whole.release()
    finally:
        broker.close()
