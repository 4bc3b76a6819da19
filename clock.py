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

Network timeouts that belong to a socket rather than to Kafka's semantics (the admin endpoint's
read deadline, the shutdown grace) use the same clock, so nothing in the broker waits on a timer
the clock does not know about.
"""

import time

import trio


class Clock:
    """Real time: the system's wall clock and trio's monotonic clock."""

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

    def move_on_at(self, deadline: float) -> trio.CancelScope:
        return trio.move_on_at(deadline)

    def move_on_after(self, seconds: float) -> trio.CancelScope:
        return trio.move_on_after(seconds)


class ManualClock(Clock):
    """A clock that moves only when `advance` or `set` is called: for tests of the state
    machines (groups, transactions, logs) driven without sockets and without trio. Waiting is
    not supported here; trio tests use `trio.testing.MockClock` with the real `Clock`."""

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
