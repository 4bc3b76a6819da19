"""The virtual clock (clock.py VirtualClock) under trio, with trio's own real clock: time stands
still until an advance, which steps to each deadline in order, lets what it woke run (a worker
thread included) before it steps on, wakes waits due together in one step, skips the runs of
periodic tasks that would do nothing, and gives the same results for the same steps. Then the
broker on it (BrokerState with trioka.virtual.time): retention of old segments by an advance,
and the clocks that stay real."""

import functools
import math
import time

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.broker import BrokerState
from trioka.clock import Clock, VirtualClock
from trioka.config import Config

START = 1_700_000_000_000
DAY_MS = 86_400_000


async def settled():
    await trio.testing.wait_all_tasks_blocked()


# ------------------------------------------------------------------------------ reading it

def test_it_starts_at_the_real_time_unless_given_one():
    assert abs(VirtualClock().wall_ms() - time.time() * 1000) < 60_000
    assert VirtualClock(wall_ms=START).wall_ms() == START
    assert VirtualClock().virtual and not Clock().virtual


async def test_time_stands_still_until_an_advance():
    clock = VirtualClock(wall_ms=START)
    mono = clock.monotonic()
    woken = []

    async def sleeper():
        await clock.sleep(0.001)
        woken.append(clock.wall_ms())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        # Real time passes (the whole run loop turns), the clock does not.
        for _ in range(20):
            await settled()
            await trio.lowlevel.checkpoint()
        assert (clock.wall_ms(), clock.monotonic(), woken) == (START, mono, [])
        await clock.advance(1)
        assert woken == [START + 1]
    assert clock.monotonic() == pytest.approx(mono + 0.001)


# ------------------------------------------------------------------------------ advancing

async def test_an_advance_wakes_what_falls_due_in_order_at_its_time():
    clock = VirtualClock(wall_ms=START)
    woken = []

    async def sleeper(name, seconds):
        await clock.sleep(seconds)
        woken.append((name, clock.wall_ms()))

    async with trio.open_nursery() as nursery:
        for name, seconds in (("c", 3), ("a", 1), ("d", 9), ("b", 2)):
            nursery.start_soon(sleeper, name, seconds)
        await settled()
        await clock.advance(5000)
        assert woken == [("a", START + 1000), ("b", START + 2000), ("c", START + 3000)]
        assert clock.wall_ms() == START + 5000
        await clock.advance(4000)      # exactly the last deadline: it falls due in this one
    assert woken[-1] == ("d", START + 9000)


async def test_each_step_waits_for_the_work_it_woke_even_in_a_worker_thread():
    """A periodic task's run goes to a worker thread (as retention's checkpoint does): the
    clock steps on only once the task waits on the clock again, so every run is at its time."""
    clock = VirtualClock(wall_ms=START)
    runs = []

    def disk_work(n):
        time.sleep(0.02)       # a real fsync's worth, in the worker thread
        return n

    async def periodic():
        n = 0
        while True:
            await clock.sleep(1)
            at = clock.wall_ms()
            n = await trio.to_thread.run_sync(disk_work, n + 1)
            runs.append((n, at, clock.wall_ms()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(periodic)
        await settled()
        await clock.advance(3500)
        nursery.cancel_scope.cancel()
    assert runs == [(1, START + 1000, START + 1000), (2, START + 2000, START + 2000),
                    (3, START + 3000, START + 3000)]


async def test_waits_due_at_the_same_time_are_woken_in_one_step():
    clock = VirtualClock(wall_ms=START)
    woken = []

    async def sleeper(name):
        await clock.sleep_until(clock.monotonic() + 2)
        woken.append(name)

    async with trio.open_nursery() as nursery:
        for name in "xyz":
            nursery.start_soon(sleeper, name)
        await settled()
        await clock.advance(10_000)
    assert sorted(woken) == ["x", "y", "z"] and clock.steps == 1


async def test_a_wait_cancelled_meanwhile_falls_due_for_nothing():
    clock = VirtualClock(wall_ms=START)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.sleep, 5)
        await settled()
        nursery.cancel_scope.cancel()
    await clock.advance(10_000)
    assert clock.steps == 0 and clock.wall_ms() == START + 10_000


async def test_advance_and_set_time_refuse_going_back():
    clock = VirtualClock(wall_ms=START)
    with pytest.raises(ValueError, match="0 or more"):
        await clock.advance(-1)
    await clock.set_time(START + 1234)
    assert clock.wall_ms() == START + 1234
    with pytest.raises(ValueError, match="cannot be set back"):
        await clock.set_time(START)
    assert clock.wall_ms() == START + 1234


# --------------------------------------------------------------------------- cancel scopes

async def test_move_on_at_is_cancelled_at_its_deadline_and_takes_a_new_one():
    clock = VirtualClock(wall_ms=START)
    results = {}

    async def waiter():
        with clock.move_on_after(1) as scope:
            scope.deadline = clock.monotonic() + 3       # moved, as a connection's idle scope
            await trio.sleep_forever()
        results["caught"] = (scope.cancelled_caught, clock.wall_ms())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await settled()
        await clock.advance(2000)
        assert results == {}
        await clock.advance(1500)
    assert results["caught"] == (True, START + 3000)


async def test_a_passed_deadline_cancels_at_once_and_an_infinite_one_never():
    clock = VirtualClock(wall_ms=START)
    with clock.move_on_at(clock.monotonic() - 1) as past:
        await trio.sleep_forever()
    assert past.cancelled_caught
    with trio.move_on_after(5):        # real time: the bound of this check only
        with clock.move_on_at(math.inf) as never:
            await clock.advance(DAY_MS)
    assert not never.cancel_called


async def test_waits_that_end_early_hold_no_memory():
    """Most waits end before their deadline (a Fetch answered by data, a timer task woken
    early): between advances their timers must not pile up."""
    clock = VirtualClock(wall_ms=START)
    for i in range(10_000):
        with clock.move_on_after(30 + i % 7):
            await trio.lowlevel.checkpoint()
    assert clock.held_timers <= 200
    await clock.advance(60_000)
    assert clock.steps == 0 and clock.held_timers == 0


async def test_a_long_poll_loop_ends_at_its_deadline():
    """As a Fetch waits: loop until `monotonic() >= deadline`, waiting with move_on_at(deadline)
    in between. The deadline, a float, must count as passed once it has fired."""
    clock = VirtualClock(wall_ms=START)
    await clock.advance(123)
    turns = []

    async def fetch():
        deadline = clock.monotonic() + 0.5
        while clock.monotonic() < deadline:
            turns.append(clock.wall_ms())
            with clock.move_on_at(deadline):
                await trio.sleep_forever()
        turns.append("answered")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await settled()
        await clock.advance(500)
    assert turns == [START + 123, "answered"]


# ----------------------------------------------------------------------- periodic tasks

async def periodic_task(clock, interval_s, runs, **hints):
    while True:
        await clock.periodic_sleep(interval_s, **hints)
        runs.append(clock.wall_ms())


async def test_periodic_runs_that_would_do_nothing_are_skipped():
    """A task checking every 10 s whose owner says nothing is due before a time runs once, at
    the first check from that time, and not again once its run has done the work; a 7-day
    advance takes a step or two instead of 60,480."""
    clock = VirtualClock(wall_ms=START)
    due_at = {"ms": None}
    runs = []

    async def expirer():
        while True:
            await clock.periodic_sleep(10, next_due=lambda: due_at["ms"])
            runs.append(clock.wall_ms())
            due_at["ms"] = None                  # the work is done: nothing more is due

    async with trio.open_nursery() as nursery:
        nursery.start_soon(expirer)
        await settled()
        await clock.advance(7 * DAY_MS)
        assert runs == [] and clock.steps == 0
        due_at["ms"] = clock.wall_ms() + 3_600_001       # as a transaction's timeout
        await clock.advance(7 * DAY_MS)
        nursery.cancel_scope.cancel()
    # The first check at or after the due time, on the grid of checks every 10 s.
    assert runs == [START + 7 * DAY_MS + 3_610_000]
    assert clock.steps == 1


async def test_a_due_predicate_is_searched_with_a_few_calls():
    clock = VirtualClock(wall_ms=START)
    calls = []
    runs = []

    def due(now_ms):
        calls.append(now_ms)
        return now_ms >= START + 95_000

    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(periodic_task, clock, 15, runs, due=due))
        await settled()
        await clock.advance(DAY_MS)
        nursery.cancel_scope.cancel()
    # Due from 95 s: the first check then is at 105 s, and every check after it is due too.
    assert runs[:2] == [START + 105_000, START + 120_000]
    assert len(runs) == (DAY_MS - 105_000) // 15_000 + 1
    calls_before_first = calls[:calls.index(START + 105_000) + 1]
    assert len(calls_before_first) < 40


async def test_a_run_due_again_after_another_task_changed_things_is_not_missed():
    """What one task does at a step can make another's check due: the skipping is decided
    again after each step. A producer-like task at 7 s makes the 10 s check due from 7 s."""
    clock = VirtualClock(wall_ms=START)
    pending = {"ms": None}
    runs = []

    async def changes_things():
        await clock.sleep(7)
        pending["ms"] = clock.wall_ms()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(periodic_task, clock, 10, runs,
                                             next_due=lambda: pending["ms"]))
        nursery.start_soon(changes_things)
        await settled()
        await clock.advance(25_000)
        nursery.cancel_scope.cancel()
    assert runs == [START + 10_000, START + 20_000]


async def test_the_same_steps_give_the_same_results():
    async def scenario():
        clock = VirtualClock(wall_ms=START)
        log = []
        state = {"open": []}

        async def opener():
            for i in range(3):
                await clock.sleep(4 + i)
                state["open"].append(clock.wall_ms())
                log.append(("open", clock.wall_ms()))

        async def expirer():
            while True:
                await clock.periodic_sleep(
                    10, next_due=lambda: min(state["open"], default=None) and
                    min(state["open"]) + 9_000)
                now = clock.wall_ms()
                gone = [t for t in state["open"] if now - t >= 9_000]
                state["open"] = [t for t in state["open"] if t not in gone]
                log.append(("expired", now, gone))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(opener)
            nursery.start_soon(expirer)
            await settled()
            for ms in (3_000, 20_000, 1, 60_000):
                await clock.advance(ms)
                log.append(("advanced", clock.wall_ms()))
            nursery.cancel_scope.cancel()
        return log, clock.steps

    first = await scenario()
    assert first == await scenario()
    log, _ = first
    assert ("expired", START + 20_000, [START + 4_000, START + 9_000]) in log
    assert ("expired", START + 30_000, [START + 15_000]) in log


# -------------------------------------------------------------------- a broker on virtual time

def test_the_broker_keeps_real_time_for_its_network_machinery():
    broker = BrokerState(Config({"trioka.virtual.time": "true"}))
    assert broker.clock.virtual and not broker.network_clock.virtual
    real = BrokerState(Config())
    assert real.network_clock is real.clock and not real.clock.virtual
    assert real.clock_state()["virtual"] is False


async def test_a_real_clock_refuses_to_be_moved():
    broker = BrokerState(Config({"log.dirs": "/nonexistent-not-opened"}))
    with pytest.raises(RuntimeError, match="real time"):
        await broker.advance_time(1000)
    with pytest.raises(RuntimeError, match="virtual"):
        await broker.set_time(START)


async def test_retention_deletes_eight_day_old_segments_after_eight_days(tmp_path):
    broker = BrokerState(Config({"trioka.virtual.time": "true", "log.dirs": str(tmp_path)}))
    broker.open()
    now = broker.clock.wall_ms()
    broker.create_topic("t", 1, {"segment.bytes": "200"})
    log = broker.partition("t", 0)
    for i in range(6):
        log.append(make_batch([b"x" * 60], base_timestamp=now), now_ms=now)
    assert log.log_start_offset == 0 and len(log.segments) > 1
    try:
        async with trio.open_nursery() as nursery:
            broker.start_background(nursery)
            await settled()
            # Seven days pass: retention.ms (7 days) is not yet exceeded.
            await broker.advance_time(7 * DAY_MS)
            assert log.log_start_offset == 0
            # An eighth: every segment is older than retention.ms, and goes.
            start = time.perf_counter()
            after = await broker.advance_time(DAY_MS)
            took = time.perf_counter() - start
            assert after == now + 8 * DAY_MS
            assert log.log_start_offset == log.log_end_offset == 6
            broker.shutting_down.set()
            nursery.cancel_scope.cancel()
    finally:
        broker.close()
    assert took < 10      # bounded; about 10 ms (a couple of steps, skipping idle checks)
