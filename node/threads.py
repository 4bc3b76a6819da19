"""Work handed to a worker thread while the event loop goes on.

trio.to_thread.run_sync waits for a free slot of its CapacityLimiter before it starts the thread,
and that wait is a checkpoint: other tasks run first, and a cancellation there means the thread
never starts. `InThread` starts the thread at once, in the calling step: work that other tasks may
wait on synchronously (a log's pending append, log/partition.py) or that holds state nothing else
may touch meanwhile (a TLS connection's SSLObject, security/tls.py) is then always under way, and
always finishes, once the step that started it ends.
"""

import functools

import trio


class InThread:
    """A function started in a worker thread while the event loop goes on; `await result()`
    waits for its return value (or raises its exception). Waiting is not cut short by a
    cancellation: what the thread uses (a connection's TLS state, a file region's descriptor,
    a batch being written) must outlive it."""

    __slots__ = ("done", "outcome")

    def __init__(self, fn, *args):
        self.done = trio.Event()
        self.outcome = None
        token = trio.lowlevel.current_trio_token()

        def deliver(outcome) -> None:
            self.outcome = outcome
            token.run_sync_soon(self.done.set)

        trio.lowlevel.start_thread_soon(functools.partial(fn, *args), deliver)

    async def result(self):
        try:
            await self.done.wait()
        finally:
            if not self.done.is_set():
                with trio.CancelScope(shield=True):
                    await self.done.wait()
        return self.outcome.unwrap()
