"""How the broker keeps Python's garbage collector from stalling its event loop.

Kafka's JVM runs a garbage collector with pause targets; CPython's cyclic collector has none. Each
of its collections walks every tracked object of the generations it collects, in one pause of
the only thread that serves clients. Measured on the benchmark's scale phase:

- a full collection walks everything: with 10,000 partitions (logs, segments, indexes, producer
  states) some 200 ms;
- with 1,000 long-polling consumers, 100,000 and more objects (their requests waiting in the fetch
  purgatory, sessions, connections) live half a second, survive the young generation and fill
  the older ones: each collection of those is 20-60 ms;
- the young generation itself is collected when allocations minus deallocations pass 700, and
  every object freed counts, however old: when a burst of long polls expires together, the
  requests that waited are freed while their answers are built, the count stays low and the young
  generation grows to 30,000 objects before it is collected, a 20 ms pause.

Reference counting frees every object that is not in a reference cycle the moment it is dropped;
only cycles need the collector, and almost all of them die young. So, while a broker runs:

- The young generation is collected at most every `YOUNG_INTERVAL_S` whatever the count says,
  between two turns of the event loop (`manage_garbage_collection` installs a trio instrument),
  and by CPython's own count as before: each collection walks only what was allocated since,
  well under a millisecond.
- The middle generation is collected as CPython does (every tenth young collection): it holds
  what survived a few young collections, bounded because those are frequent, and this is where
  the cycles of requests that waited (exceptions and their tracebacks, cancelled scopes) die.
- What survives the middle generation is never walked again automatically (the oldest
  generation's threshold is out of reach): it is freed by reference counting when it dies.
- `settle_long_lived_objects()` (after the logs are loaded, and whenever many partitions were
  added) moves everything alive out of the collector's sight (`gc.freeze`), so that an explicit
  `gc.collect()` elsewhere in the process does not walk it either.
- A cycle that dies old waits for a major collection, as in the JVM's old generation: every
  `MAJOR_CHECK_S` the interpreter's allocated memory blocks are counted
  (`sys.getallocatedblocks`, under a millisecond), and once they have grown to `MAJOR_GROWTH`
  times what they were after the last settle or major collection, plus `MAJOR_SLACK` (so that a
  small broker never pays one), everything is collected once. Memory thus stays within that
  bound; the pause of a major collection is the price of cyclic garbage, rare, and logged.

The collector is the process's, shared by every broker a process runs (an in-process cluster,
tests): the first broker to start sets these thresholds and the last one to stop restores the
process's own.
"""

import gc
import logging
import sys
import time   # perf_counter: how long a major collection took, for the log

import trio

log = logging.getLogger("trioka.memory")

YOUNG_INTERVAL_S = 0.01
MAJOR_CHECK_S = 30.0
MAJOR_GROWTH = 2.0
MAJOR_SLACK = 1_000_000      # memory blocks: some 50-100 MB of small objects
OUT_OF_REACH = 1 << 30      # a threshold no count reaches: the generation is not collected


class _Policy:
    def __init__(self):
        self.brokers = 0                # brokers of this process running the policy
        self.saved_thresholds = None    # the process's own, restored by the last broker
        self.baseline = 0               # memory blocks after the last settle or major collection
        self.majors = 0                 # major collections run

    def start(self) -> None:
        if not self.brokers:
            self.saved_thresholds = gc.get_threshold()
            young, middle, _ = self.saved_thresholds
            gc.set_threshold(young, middle, OUT_OF_REACH)
        self.brokers += 1

    def stop(self) -> None:
        self.brokers -= 1
        if not self.brokers and self.saved_thresholds is not None:
            gc.set_threshold(*self.saved_thresholds)

    def settle(self) -> None:
        gc.freeze()
        self.baseline = sys.getallocatedblocks()

    def check(self) -> None:
        if sys.getallocatedblocks() > self.baseline * MAJOR_GROWTH + MAJOR_SLACK:
            self.major()

    def major(self) -> None:
        started = time.perf_counter()
        before = sys.getallocatedblocks()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.baseline = sys.getallocatedblocks()
        self.majors += 1
        log.info("major garbage collection: %d unreachable objects collected, memory blocks "
                 "%d -> %d, %.0f ms", collected, before, self.baseline,
                 (time.perf_counter() - started) * 1000)


_policy = _Policy()


def settle_long_lived_objects() -> None:
    """Move what is alive now out of the collector's sight (see the module's docstring)."""
    _policy.settle()


def major_collections() -> int:
    """How many major collections this process has run."""
    return _policy.majors


class _YoungCollections(trio.abc.Instrument):
    """Collects the young generation at most every YOUNG_INTERVAL_S, just before the event
    loop waits for I/O: in the loop's own time between turns, never while a task runs, and
    not at all while the broker is idle (a timer would wake it 100 times a second)."""

    def __init__(self, clock):
        self.clock = clock
        self.due = 0.0

    def before_io_wait(self, timeout: float) -> None:
        now = self.clock.monotonic()
        if now >= self.due:
            self.due = now + YOUNG_INTERVAL_S
            gc.collect(0)


async def manage_garbage_collection(clock) -> None:
    """The policy of the module's docstring for as long as the broker runs, on `clock`, a real
    one: this is the process's housekeeping, never virtual. (Brokers sharing a process each
    run it: a young collection right after another walks almost nothing.)"""
    _policy.start()
    young = _YoungCollections(clock)
    trio.lowlevel.add_instrument(young)
    try:
        while True:
            await clock.sleep(MAJOR_CHECK_S)
            _policy.check()
    finally:
        trio.lowlevel.remove_instrument(young)
        _policy.stop()
