"""The fetch purgatory: long-polling Fetch requests waiting for data or for their max_wait_ms.

Kafka parks a Fetch that cannot be answered yet as a DelayedFetch in ReplicaManager's fetch
purgatory: appends to its partitions complete it early, and the purgatory's expiration reaper (a
thread driving a timing wheel) completes the ones whose max wait has passed, so the request
handler threads never spend time on the expiry of waiting requests.

Here a waiting Fetch is a DelayedFetch: it registers with the partitions it reads (or its
session) as their waiter, and its deadline is kept in this purgatory. One reaper task per broker
sleeps until the earliest deadline and wakes the requests whose deadlines have passed, in deadline
order, at most `EXPIRED_PER_TURN` in one turn of the event loop, so that the loop polls its
sockets between turns. Consumers with the same fetch.max.wait.ms that sent their Fetches together
expire together, and each woken request then reads, encodes and sends its answer: woken all at
once they held the loop for the whole burst (measured: 80-115 ms for 1,000), and every other
client's request with them. A deadline per request in a trio cancel scope had that cost and more:
trio cancels all expired scopes in one step of its run loop, some 40 µs each.

A change wakes its waiting requests at once, unless more than `EXPIRED_PER_TURN` were woken so
since the reaper's last turn: a burst (one append read by 1,000 consumers, the deletion of a topic
1,000 consumers wait on) is queued and woken by the reaper as many per turn, in order.

A request that leaves the purgatory early (woken by data, or its connection closed) only marks
its entry; the reaper drops marked entries as it meets them, and the heap is rebuilt when more
than half of it is marked, so a flood of requests with long waits that go away holds no memory.

The reaper is a trio system task started by the first request that waits (and again after it
ended or failed), so that it serves the broker in any trio run, including tests that call the
handler with no server around it.
"""

import collections
import heapq
import itertools
import logging

import trio

log = logging.getLogger("trioka.apis.purgatory")

# At most this many waiting requests are woken per turn of the event loop by the reaper (and as
# many more directly by changes, between two turns of the reaper). Each then takes about 50-150 µs
# to answer (more on a loaded machine), so a turn stays within a few milliseconds and 1,000
# expiries are answered within about 100 ms of their deadline.
EXPIRED_PER_TURN = 32

PENDING, WAITING, QUEUED, DONE = "pending", "waiting", "queued", "done"


class DelayedFetch:
    """One waiting Fetch (Kafka's DelayedFetch): registered with the partitions it reads (or its
    session) like any waiter, whose `set()` on a change completes it; its deadline is kept by
    the purgatory. States: pending (made, not waiting yet), waiting (its deadline in the heap),
    queued (completed by a change during a burst: woken by the reaper's next turn), done."""
    __slots__ = ("purgatory", "deadline", "order", "state", "event")

    def __init__(self, purgatory: "FetchPurgatory", deadline: float, order: int):
        self.purgatory = purgatory
        self.deadline = deadline
        self.order = order
        self.state = PENDING
        self.event = trio.Event()

    def set(self) -> None:
        """A change of what the request reads: wake it (PartitionLog.wake_waiters)."""
        self.purgatory.complete(self)

    def is_set(self) -> bool:
        return self.state == DONE or self.state == QUEUED

    def __lt__(self, other: "DelayedFetch") -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


class FetchPurgatory:
    """The waiting Fetch requests of one broker: their deadlines, the requests completed during
    a burst, and the reaper that wakes both a bounded number per turn of the event loop."""

    def __init__(self, clock, expired_per_turn: int = EXPIRED_PER_TURN):
        self.clock = clock
        self.expired_per_turn = expired_per_turn
        self._heap: list[DelayedFetch] = []
        self._queue: collections.deque[DelayedFetch] = collections.deque()
        self._order = itertools.count()
        self._left = 0                         # heap entries no longer waiting
        self._direct = 0                       # woken by changes since the reaper's last turn
        self._reaper_token = None              # the trio run whose reaper is running, if any
        self._kick = trio.Event()              # set for the reaper: an earlier deadline, a queue

    def __len__(self) -> int:
        """How many requests are waiting."""
        return len(self._heap) - self._left

    def delayed(self, deadline: float) -> DelayedFetch:
        """A request that is to wait until a change or `deadline` (on the node's clock):
        register it as the waiter of what it reads, then `wait` for it."""
        return DelayedFetch(self, deadline, next(self._order))

    async def wait(self, delayed: DelayedFetch) -> None:
        """Wait until `delayed` is completed by a change or its deadline has passed."""
        if delayed.state == PENDING:
            delayed.state = WAITING
            earlier = not self._heap or delayed < self._heap[0]
            heapq.heappush(self._heap, delayed)
            self._ensure_reaper()
            if earlier:
                self._kick.set()
        try:
            await delayed.event.wait()
        finally:
            self._leave(delayed)

    def complete(self, delayed: DelayedFetch) -> None:
        """A change for a waiting request: woken at once, unless more than `expired_per_turn`
        were since the reaper's last turn (a burst: one append or deletion waking many
        consumers); then it is queued for the reaper, which wakes that many per turn."""
        if delayed.state == QUEUED or delayed.state == DONE:
            return
        if delayed.state == WAITING:
            self._left += 1     # its heap entry goes when the reaper meets it
        if self._direct < self.expired_per_turn and not self._queue:
            self._direct += 1
            delayed.state = DONE
            delayed.event.set()
            return
        delayed.state = QUEUED
        self._queue.append(delayed)
        self._ensure_reaper()
        self._kick.set()

    def _leave(self, delayed: DelayedFetch) -> None:
        if delayed.state == WAITING:
            self._left += 1
        delayed.state = DONE
        if self._left > 64 and self._left * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e.state == WAITING]
            heapq.heapify(self._heap)
            self._left = 0

    def expire(self, now: float, limit: int) -> int:
        """Wake up to `limit` waiting requests whose deadline is `now` or earlier, earliest
        first; returns how many were woken."""
        heap = self._heap
        woken = 0
        while heap and woken < limit and heap[0].deadline <= now:
            delayed = heapq.heappop(heap)
            if delayed.state != WAITING:
                self._left -= 1
                continue
            delayed.state = DONE
            delayed.event.set()
            woken += 1
        return woken

    def _release(self, limit: int) -> int:
        """Wake up to `limit` queued requests, in the order their changes came."""
        queue = self._queue
        woken = 0
        while queue and woken < limit:
            delayed = queue.popleft()
            if delayed.state == QUEUED:
                delayed.state = DONE
                delayed.event.set()
                woken += 1
        return woken

    def _next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0].state != WAITING:
            heapq.heappop(heap)
            self._left -= 1
        return heap[0].deadline if heap else None

    def _ensure_reaper(self) -> None:
        token = trio.lowlevel.current_trio_token()
        if self._reaper_token is token:
            return
        self._reaper_token = token
        self._kick = trio.Event()
        trio.lowlevel.spawn_system_task(self._reaper, token, name="the fetch purgatory's reaper")

    async def _reaper(self, token) -> None:
        """Kafka's ExpiredOperationReaper: wake the queued and the expired requests, a bounded
        number per turn of the event loop; end when no request waits (the next one starts it
        again)."""
        try:
            while True:
                self._direct = 0
                woken = self._release(self.expired_per_turn)
                now = self.clock.monotonic()
                self.expire(now, self.expired_per_turn - woken)
                deadline = self._next_deadline()
                if self._queue or (deadline is not None and deadline <= now):
                    # The woken requests answer in the next turn, after the sockets are polled;
                    # the next share is woken then.
                    await trio.lowlevel.checkpoint()
                    continue
                if deadline is None:
                    return
                self._kick = trio.Event()
                with self.clock.move_on_at(deadline):
                    await self._kick.wait()
        except Exception:
            # Never let an error out of a system task (it would end the trio run): every
            # waiting request is woken, and the next one to wait starts a reaper again.
            log.exception("the fetch purgatory's reaper failed")
            self._release(len(self._queue))
            self.expire(float("inf"), len(self._heap))
        finally:
            if self._reaper_token is token:
                self._reaper_token = None
