"""The fetch purgatory: long-polling Fetch requests waiting for data or for their max_wait_ms.

Kafka parks a Fetch that cannot be answered yet as a DelayedFetch in ReplicaManager's fetch
purgatory: appends to its partitions complete it early, and the purgatory's expiration reaper (a
thread driving a timing wheel) completes the ones whose max wait has passed, so the request
handler threads never spend time on the expiry of waiting requests.

Here a waiting Fetch waits on an event that the partitions it reads (or its session) set on a
change, and on its deadline, kept in this purgatory. One reaper task per broker sleeps until the
earliest deadline and wakes the requests whose deadlines have passed, in deadline order, at most
`EXPIRED_PER_TURN` in one turn of the event loop, so that the loop polls its sockets between
turns: consumers with the same fetch.max.wait.ms that sent their Fetches together (1,000 of them
after one append woke them all, say) expire together, and each woken request then reads, encodes
and sends its answer; woken all at once they would hold the loop for the whole burst (measured:
80-115 ms for 1,000), and every other client's request with them. A deadline per request in a
trio cancel scope had that cost and more: trio cancels all expired scopes in one step of its run
loop, some 40 µs each.

A request that leaves the purgatory early (woken by data, or its connection closed) only marks
its entry; the reaper drops marked entries as it meets them, and the heap is rebuilt when more
than half of it is marked, so a flood of requests with long waits that go away holds no memory.

The reaper is a trio system task started by the first request that waits (and again after it
ended or failed), so that it serves the broker in any trio run, including tests that call the
handler with no server around it.
"""

import heapq
import itertools
import logging

import trio

log = logging.getLogger("trioka.apis.purgatory")

# At most this many expired requests are woken per turn of the event loop. Each then takes about
# 50-150 µs to answer (more on a loaded machine), so a turn stays within a few milliseconds and
# 1,000 expiries are answered within about 100 ms of their deadline.
EXPIRED_PER_TURN = 32


class _Delayed:
    """One waiting request: its deadline and the event that wakes it."""
    __slots__ = ("deadline", "order", "wakeup", "waiting")

    def __init__(self, deadline: float, order: int, wakeup: trio.Event):
        self.deadline = deadline
        self.order = order
        self.wakeup = wakeup
        self.waiting = True

    def __lt__(self, other: "_Delayed") -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class FetchPurgatory:
    """The deadlines of the waiting Fetch requests of one broker, and their reaper."""

    def __init__(self, clock, expired_per_turn: int = EXPIRED_PER_TURN):
        self.clock = clock
        self.expired_per_turn = expired_per_turn
        self._heap: list[_Delayed] = []
        self._order = itertools.count()
        self._left = 0                         # entries marked as no longer waiting
        self._reaper_token = None              # the trio run whose reaper is running, if any
        self._earlier = trio.Event()           # set when a deadline earlier than the head comes

    def __len__(self) -> int:
        """How many requests are waiting."""
        return len(self._heap) - self._left

    async def wait(self, wakeup: trio.Event, deadline: float) -> None:
        """Wait until `wakeup` is set (by a change of what the request reads) or `deadline`
        (on the node's clock) has passed; the purgatory sets `wakeup` at the deadline."""
        if wakeup.is_set():
            return
        entry = self._add(wakeup, deadline)
        self._ensure_reaper()
        try:
            await wakeup.wait()
        finally:
            self._leave(entry)

    def _add(self, wakeup: trio.Event, deadline: float) -> _Delayed:
        entry = _Delayed(deadline, next(self._order), wakeup)
        earlier = not self._heap or entry < self._heap[0]
        heapq.heappush(self._heap, entry)
        if earlier:
            self._earlier.set()
        return entry

    def _leave(self, entry: _Delayed) -> None:
        if not entry.waiting:
            return
        entry.waiting = False
        self._left += 1
        if self._left > 64 and self._left * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e.waiting]
            heapq.heapify(self._heap)
            self._left = 0

    def expire(self, now: float, limit: int) -> int:
        """Wake up to `limit` waiting requests whose deadline is `now` or earlier, earliest
        first; returns how many were woken."""
        heap = self._heap
        woken = 0
        while heap and woken < limit and heap[0].deadline <= now:
            entry = heapq.heappop(heap)
            if not entry.waiting:
                self._left -= 1
                continue
            entry.waiting = False
            entry.wakeup.set()
            woken += 1
        return woken

    def _next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not heap[0].waiting:
            heapq.heappop(heap)
            self._left -= 1
        return heap[0].deadline if heap else None

    def _ensure_reaper(self) -> None:
        token = trio.lowlevel.current_trio_token()
        if self._reaper_token is token:
            return
        self._reaper_token = token
        self._earlier = trio.Event()
        trio.lowlevel.spawn_system_task(self._reaper, token, name="the fetch purgatory's reaper")

    async def _reaper(self, token) -> None:
        """Kafka's ExpiredOperationReaper: wake the expired requests, a bounded number per
        turn of the event loop; end when no request is waiting (the next one starts it again)."""
        try:
            while True:
                deadline = self._next_deadline()
                if deadline is None:
                    return
                now = self.clock.monotonic()
                if deadline <= now:
                    self.expire(now, self.expired_per_turn)
                    # The woken requests answer in the next turn, after the sockets are polled;
                    # the next share of expired ones is woken then.
                    await trio.lowlevel.checkpoint()
                    continue
                self._earlier = trio.Event()
                with self.clock.move_on_at(deadline):
                    await self._earlier.wait()
        except Exception:
            # Never let an error out of a system task (it would end the trio run); the waiting
            # requests are woken, and the next one to wait starts a reaper again.
            log.exception("the fetch purgatory's reaper failed")
            self.expire(float("inf"), len(self._heap))
        finally:
            if self._reaper_token is token:
                self._reaper_token = None
