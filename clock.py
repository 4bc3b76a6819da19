"""The node's clock: the one place broker behaviour reads time or waits for it.

Kafka reads two kinds of time, and so does every module here, through a `Clock`:

- wall time in milliseconds (`wall_ms`), Kafka's `time.milliseconds()`: timestamps the broker
  assigns (LogAppendTime, commit timestamps, transaction start times, segment ages for
  `retention.ms` and `segment.ms`, offset expiry);
- monotonic time in seconds (`monotonic`), for deadlines (session timeouts, rebalance timeouts,
  long-poll Fetch, timer loops), waited on with `sleep`, `sleep_until` and `move_on_at`.

Nothing else calls `time.time()`, `time.monotonic()` or `trio.sleep` for what the broker does, so
a clock a test controls controls the broker. The real clock's monotonic time is trio's, so a trio
test running under `trio.testing.MockClock` drives every broker deadline. `ManualClock` is a clock
that moves only when told, for state-machine tests that run without trio.

Virtual time (`VirtualClock`, `trioka.virtual.time=true`): a clock that does not move by itself.
It starts at the real time (or the one given) and moves only when `advance(ms)` or
`set_time(wall_ms)` is awaited; then it steps, in order, to each deadline that falls due on the
way (wall and monotonic time together), wakes what waits for it, and lets the woken work run
before it steps on: the same requests and the same advances give the same results. A broker on
virtual time keeps a second, real clock (`BrokerState.network_clock`) for what belongs to sockets
and to the liveness of nodes rather than to Kafka's semantics (connections.max.idle.ms, the node
heartbeats and replica fetchers, flushes and checkpoints): a virtual cluster would freeze
otherwise. README.md ("Virtual time") lists which behaviours are which.

Periodic tasks (retention every log.retention.check.interval.ms, the cleaner's backoff, the
transaction timeout check...) wait with `periodic_sleep(seconds, next_due=..., due=...)`: the
owner tells from when a run would do anything, and the virtual clock skips the runs before (a
run that does nothing leaves no trace, so the outcome is the same), which keeps an advance of
days to a few steps: a 7-day advance with trioka's retention check every 5 s would otherwise be
120,960 wake-ups, with the transaction check every 10 s 60,480 more. Skipping is decided again
after every step, as what ran may have changed what is due. The real clock just sleeps.
"""

import heapq
import itertools
import logging
import math
import time

import trio

log = logging.getLogger("trioka.clock")


class Clock:
    """Real time: the system's wall clock and trio's monotonic clock."""

    # A virtual clock moves only when told (VirtualClock); this one with the world.
    virtual = False

    def wall_ms(self) -> int:
        """Milliseconds since the epoch, as Kafka's `Time.milliseconds()`."""
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        """Seconds on trio's clock (only inside a trio run): the time deadlines are set in."""
        return trio.current_time()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        await trio.sleep_until(deadline)

    async def periodic_sleep(self, seconds: float, *, next_due=None, due=None) -> None:
        """The pause of a periodic task between two runs. A virtual clock skips the runs that
        would do nothing, as the owner says, side-effect free, from the state as it is:
        `next_due()` the wall time (ms) from which a run would do something (None: not while
        nothing changes), or else `due(wall_ms)` whether a run then would (once true, true at
        every later time while nothing changes). Real time passes whether or not anything is
        due, so here it is a plain sleep."""
        await self.sleep(seconds)

    def move_on_at(self, deadline: float) -> trio.CancelScope:
        return trio.move_on_at(deadline)

    def move_on_after(self, seconds: float) -> trio.CancelScope:
        return trio.move_on_after(seconds)


class ManualClock(Clock):
    """A clock that moves only when `advance` or `set` is called: for tests of the state
    machines (groups, transactions, logs) driven without sockets and without trio. Waiting is
    not supported here; trio tests use `trio.testing.MockClock` with the real `Clock`, or a
    `VirtualClock`."""

    def __init__(self, wall_ms: int = 1_700_000_000_000, monotonic: float = 0.0):
        self._wall_ms = wall_ms
        self._monotonic = monotonic

    def wall_ms(self) -> int:
        return self._wall_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, ms: int) -> None:
        """Move both times forward by `ms` milliseconds."""
        if ms < 0:
            raise ValueError("a clock does not go back")
        self._wall_ms += ms
        self._monotonic += ms / 1000

    def set_wall_ms(self, wall_ms: int) -> None:
        self._wall_ms = wall_ms

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("ManualClock does not wait; use trio.testing.MockClock")

    async def sleep_until(self, deadline: float) -> None:
        raise RuntimeError("ManualClock does not wait; use trio.testing.MockClock")


# ------------------------------------------------------------------------------ virtual time

# The virtual monotonic time at the start, in seconds: any value works (trio's own starts at a
# random one); well away from 0, which some state uses for "never".
MONOTONIC_START_S = 100_000.0
# Deadlines are kept in whole microseconds. A float deadline within this many microseconds above
# a whole one counts as that one: float sums of milliseconds (`monotonic() + 10.0`) carry errors
# of about 1e-4 µs, and a deadline meant for exactly the end of an advance must fall due in it.
ROUNDING_US = 0.01
# How long (real time) an advance lets the work one step woke run before it steps on anyway.
# The work is the broker's own (a retention pass and its checkpoint, a cleaning pass): well under
# a second; the bound keeps a task stuck elsewhere from stopping the clock for good.
SETTLE_TIMEOUT_S = 10.0


class _Timer:
    """One wait on the virtual clock: what to do when it falls due (`fire`), and for a periodic
    task's pause its `interval_us` and its `next_due` or `due` hint. `live` is cleared when it
    fires or the wait ends otherwise (VirtualClock.cancel)."""
    __slots__ = ("due_us", "deadline", "fire", "task", "interval_us", "next_due", "due",
                 "live")

    def __init__(self, due_us: int, deadline: float, fire, task=None, interval_us: int = 0,
                 next_due=None, due=None):
        self.due_us = due_us
        self.deadline = deadline
        self.fire = fire
        self.task = task              # a sleeping task, waited for after it is woken
        self.interval_us = interval_us
        self.next_due = next_due
        self.due = due
        self.live = True

    @property
    def skippable(self) -> bool:
        """A periodic run that may do nothing: fired only once found due (_place_periodic)."""
        return self.next_due is not None or self.due is not None


class _TaskEnds(trio.abc.Instrument):
    """While an advance waits for the tasks it woke from a sleep: one that ends will not come
    back to the clock, so it counts as back."""

    def __init__(self, clock: "VirtualClock"):
        self.clock = clock

    def task_exited(self, task) -> None:
        self.clock.came_back(task)


class VirtualCancelScope:
    """What `VirtualClock.move_on_at` returns: a trio cancel scope (trio's cannot be subclassed)
    whose deadline is on the virtual clock. It supports what callers use of trio's: `with`,
    `deadline` (read and set, also while entered), `cancel()`, `cancel_called`,
    `cancelled_caught` and `shield`."""
    __slots__ = ("_clock", "_scope", "_deadline", "_timer", "_entered")

    def __init__(self, clock: "VirtualClock", deadline: float):
        self._clock = clock
        self._scope = trio.CancelScope()
        self._deadline = deadline
        self._timer = None
        self._entered = False

    def __enter__(self) -> "VirtualCancelScope":
        self._scope.__enter__()
        self._entered = True
        self._clock.came_back()
        self._arm()
        return self

    def __exit__(self, etype, exc, tb) -> bool:
        self._entered = False
        self._disarm()
        return self._scope.__exit__(etype, exc, tb)

    def _arm(self) -> None:
        self._disarm()
        self._timer = self._clock.call_at(self._deadline, self._scope.cancel)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._clock.cancel(self._timer)
            self._timer = None

    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = value
        if self._entered:
            self._arm()

    def cancel(self) -> None:
        self._scope.cancel()

    @property
    def cancel_called(self) -> bool:
        return self._scope.cancel_called

    @property
    def cancelled_caught(self) -> bool:
        return self._scope.cancelled_caught

    @property
    def shield(self) -> bool:
        return self._scope.shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._scope.shield = value


class VirtualClock(Clock):
    """A clock that moves only when `advance(ms)` or `set_time(wall_ms)` is awaited (in the
    trio run of the broker(s) using it). It starts at `wall_ms`, by default the real time now.

    An advance steps to each due deadline in order, never past the end: at each step every wait
    due then is woken (a sleep ends, a `move_on_at` scope is cancelled), and the step ends once
    every task of the run is blocked again and every task woken from a sleep has come back to
    wait on this clock (a retention pass then its checkpoint, say); only then does the clock move
    on. Waits due at the same time are woken together. A periodic task's runs that would do
    nothing are skipped (`periodic_sleep`). One advance runs at a time."""

    virtual = True

    def __init__(self, wall_ms: int | None = None):
        self._start_wall_ms = int(time.time() * 1000) if wall_ms is None else int(wall_ms)
        self._now_us = 0                      # virtual microseconds since the start
        self._mono = MONOTONIC_START_S        # monotonic(): never below a deadline that fired
        self._heap: list[tuple[int, int, _Timer]] = []
        self._periodic: list[_Timer] = []      # periodic runs that may do nothing
        self._ended = 0                        # heap entries of waits ended early
        self._order = itertools.count()
        self._advancing = trio.Lock()
        self._pending: set = set()            # tasks woken from a sleep, not back yet
        self._back: trio.Event | None = None  # set when the last of them comes back
        self.steps = 0                        # steps taken (distinct due times), for tests

    # --- reading it ---

    def wall_ms(self) -> int:
        return self._start_wall_ms + self._now_us // 1000

    def monotonic(self) -> float:
        return self._mono

    @property
    def held_timers(self) -> int:
        """The timers held, those of waits that ended early and are not dropped yet included
        (kept bounded by `cancel`)."""
        return len(self._heap) + len(self._periodic)

    def _wall_ms_at(self, us: int) -> int:
        return self._start_wall_ms + us // 1000

    def _due_us(self, deadline: float) -> int | None:
        """A monotonic deadline in whole virtual microseconds; None for +inf (never)."""
        if deadline != deadline:
            raise ValueError("a deadline cannot be NaN")
        if deadline == math.inf:
            return None
        if deadline == -math.inf:
            return self._now_us
        return math.ceil((deadline - MONOTONIC_START_S) * 1_000_000 - ROUNDING_US)

    # --- waiting on it ---

    def call_at(self, deadline: float, fire, *, task=None, interval_us: int = 0,
                next_due=None, due=None) -> _Timer | None:
        """Call `fire()` when the clock reaches `deadline` (at once when it has); the timer
        (`cancel(timer)` cancels it), or None when it fired at once or never will (+inf)."""
        due_us = self._due_us(deadline)
        if due_us is None:
            return None
        if due_us <= self._now_us:
            # Due already: time stands at it, so that `monotonic() >= deadline` holds for the
            # caller too (the deadline may lie a rounding error above).
            self._mono = max(self._mono, deadline)
            fire()
            return None
        timer = _Timer(due_us, deadline, fire, task, interval_us, next_due, due)
        if timer.skippable:
            self._periodic.append(timer)    # looked at by _place_periodic
        else:
            heapq.heappush(self._heap, (due_us, next(self._order), timer))
        return timer

    def cancel(self, timer: _Timer) -> None:
        """The wait of `timer` ended otherwise (a scope exited, a sleep cancelled): it will not
        fire. Its heap entry is dropped when met, and the heap rebuilt when more than half of
        it is such entries, so that waits that end early (most do) hold no memory."""
        if not timer.live:
            return
        timer.live = False
        if timer.skippable:
            if len(self._periodic) > 64:
                self._periodic = [t for t in self._periodic if t.live]
            return
        self._ended += 1
        if self._ended > 64 and self._ended * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].live]
            heapq.heapify(self._heap)
            self._ended = 0

    def came_back(self, task=None) -> None:
        """The current task (or `task`, which ended) waits on this clock again: the step that
        woke it may end."""
        pending = self._pending
        if pending:
            pending.discard(task or trio.lowlevel.current_task())
            if not pending and self._back is not None:
                self._back.set()

    async def _sleep_until(self, deadline: float, interval_us: int = 0, next_due=None,
                           due=None) -> None:
        self.came_back()
        woken = trio.Event()
        timer = self.call_at(deadline, woken.set, task=trio.lowlevel.current_task(),
                             interval_us=interval_us, next_due=next_due, due=due)
        if timer is None and woken.is_set():
            await trio.lowlevel.checkpoint()
            return
        try:
            await woken.wait()
        finally:
            if timer is not None:
                self.cancel(timer)

    async def sleep(self, seconds: float) -> None:
        await self._sleep_until(self._mono + seconds)

    async def sleep_until(self, deadline: float) -> None:
        await self._sleep_until(deadline)

    async def periodic_sleep(self, seconds: float, *, next_due=None, due=None) -> None:
        interval_us = max(1, round(seconds * 1_000_000))
        await self._sleep_until(self._mono + seconds, interval_us, next_due, due)

    def move_on_at(self, deadline: float) -> VirtualCancelScope:
        return VirtualCancelScope(self, deadline)

    def move_on_after(self, seconds: float) -> VirtualCancelScope:
        return VirtualCancelScope(self, self._mono + seconds)

    # --- moving it ---

    async def set_time(self, wall_ms: int) -> None:
        """Move the clock to `wall_ms` (milliseconds since the epoch), as `advance` does;
        ValueError for a time before the clock's (time does not go back)."""
        now = self.wall_ms()
        if wall_ms < now:
            raise ValueError(f"the clock cannot be set back: {wall_ms} is before its time "
                             f"{now} ({now - wall_ms} ms earlier)")
        await self.advance(wall_ms - now)

    async def advance(self, ms: int) -> None:
        """Move the clock `ms` milliseconds forward, through every deadline on the way, in
        order; returns once what fell due has run. ValueError for a negative `ms`."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise ValueError(f"a clock advances by a whole number of milliseconds, 0 or more, "
                             f"not {ms!r}")
        async with self._advancing:
            target = self._now_us + ms * 1000
            # Requests already in are served at the time they came, before the clock moves.
            await self._settle()
            while True:
                top = self._top()
                limit = target if top is None else min(target, top.due_us)
                runs = self._place_periodic(limit)
                if runs:
                    await self._step(runs[0].due_us, runs)
                elif top is not None and top.due_us <= target:
                    await self._step(top.due_us, ())
                else:
                    break
            self._now_us = target
            self._mono = max(self._mono, MONOTONIC_START_S + target / 1_000_000)

    async def _step(self, due_us: int, runs) -> None:
        """Move to `due_us` and wake every wait due then (`runs`: the periodic runs found due
        then); then let the work run."""
        self._now_us = max(self._now_us, due_us)
        woken = list(runs)
        heap = self._heap
        while (top := self._top()) is not None and top.due_us <= due_us:
            woken.append(heapq.heappop(heap)[2])
        for timer in woken:
            timer.live = False
            self._mono = max(self._mono, timer.deadline)
            if timer.task is not None:
                self._pending.add(timer.task)
            timer.fire()
        self.steps += 1
        await self._settle()

    def _top(self) -> _Timer | None:
        """The earliest live timer of the heap, dropping ended ones on the way."""
        heap = self._heap
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
            self._ended -= 1
        return heap[0][2] if heap else None

    def _place_periodic(self, limit: int) -> list[_Timer]:
        """The periodic runs that come first, up to `limit` (the next other wait, or the end
        of the advance), among those that would do something; [] when none would. Each
        periodic task's runs are at due_us + k * interval_us: `next_due()` names its first due
        one at once, a `due` predicate (true from its first due run on) is searched with a
        handful of calls. The runs passed over are skipped for good (nothing changes before
        the earliest wait or run, which awaits nothing); the rest are looked at again after
        that step, which may have changed what is due."""
        live = [timer for timer in self._periodic if timer.live]
        self._periodic = live
        found: dict[_Timer, int] = {}
        for timer in live:
            start, interval = timer.due_us, timer.interval_us
            if start > limit:
                continue
            last = (limit - start) // interval           # runs 0..last lie within the limit
            first = last + 1                             # none of them is due
            if timer.next_due is not None:
                when_ms = timer.next_due()
                if when_ms is not None:
                    # The first run whose wall time (start wall + us // 1000) reaches it.
                    us = (when_ms - self._start_wall_ms) * 1000
                    first = min(first, max(0, -((start - us) // interval)))
            elif timer.due(self._wall_ms_at(start + last * interval)):
                lo, hi = 0, last                         # due at run `hi`; find the first
                while lo < hi:
                    mid = (lo + hi) // 2
                    if timer.due(self._wall_ms_at(start + mid * interval)):
                        hi = mid
                    else:
                        lo = mid + 1
                first = lo
            if first <= last:
                found[timer] = limit = start + first * interval
        due_us = min(found.values(), default=None)
        runs = []
        for timer in live:
            if due_us is not None and found.get(timer) == due_us:
                runs.append(timer)
                timer.due_us = due_us
                # The deadline the woken task sees as passed is its run's time.
                timer.deadline = MONOTONIC_START_S + due_us / 1_000_000
                continue
            # The runs before the step are not due: skip them (those at the step itself are
            # looked at again after it).
            upto = limit if due_us is None else due_us
            if timer.due_us < upto:
                skipped = -((timer.due_us - upto) // timer.interval_us)
                timer.due_us += skipped * timer.interval_us
                timer.deadline = MONOTONIC_START_S + timer.due_us / 1_000_000
        return runs

    async def _settle(self) -> None:
        """Until every task of the run is blocked and every task woken from a sleep has come
        back to wait on this clock or ended (bounded by SETTLE_TIMEOUT_S of real time)."""
        if not self._pending:
            await _wait_all_tasks_blocked()
            return
        # Installed before anything woken runs, so that no task ends unseen.
        ends = _TaskEnds(self)
        trio.lowlevel.add_instrument(ends)
        try:
            with trio.move_on_after(SETTLE_TIMEOUT_S):
                while True:
                    await _wait_all_tasks_blocked()
                    if not self._pending:
                        return
                    self._back = trio.Event()
                    await self._back.wait()
        finally:
            trio.lowlevel.remove_instrument(ends)
        log.warning("virtual time: %d task(s) woken at %d did not wait on the clock again "
                    "within %g s; the clock moves on", len(self._pending), self.wall_ms(),
                    SETTLE_TIMEOUT_S)
        self._pending.clear()


async def _wait_all_tasks_blocked() -> None:
    # trio.testing imports pytest (some 100 ms): only a virtual clock's advance needs it, so it
    # is imported then, never at a broker's start.
    from trio.testing import wait_all_tasks_blocked
    await wait_all_tasks_blocked()
