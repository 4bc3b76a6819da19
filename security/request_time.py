"""What a client's requests cost the broker: the time measured for `request_percentage` (KIP-124).

Kafka's request quota is a share of its threads: the time a client's requests spend on the
request handler threads (from the moment a handler thread takes the request until the API's local
work is done, KafkaApis' `requestThreadTimeNanos`) plus the time its network thread spends on
them (reading, parsing, sending the response; recorded when the response is sent and counted
against the next one). Waiting is not counted: a Fetch parked in the purgatory or a Produce
waiting for its acks holds no thread.

trioka serves every request on one trio event loop, so the loop is its only "thread": a
client's cost is the time the task serving its connection *held the event loop* (every step of
that task: reading the frame, decoding, the handler's work, encoding, sending), plus the CPU
time of the worker threads the server decodes a large request or encodes a large response in
(Kafka's network thread does that work and counts it), and nothing of the time it was parked in
an `await` (a long-poll, a flush, a replication wait). That is measured by a trio instrument timing the steps of the connection tasks it was
told about, so the time of one request is exact to the step and costs two `perf_counter()`
calls per task step. The instrument is added to the run only while some entity has a
`request_percentage` quota; without one nothing is measured and the server does one attribute
read per request.

As in Kafka, the time is taken when the response is decided: what the connection task used
since the last response was taken (the previous response's encoding and sending, this
request's reading, decoding and handling) is recorded against this request's client. An
exempt request's time (a cluster action, a replica's Fetch, the SASL exchange) is taken and
dropped, as Kafka records it only in its exempt sensor.
"""

from time import perf_counter, thread_time

import trio


class RequestTime(trio.abc.Instrument):
    """The event-loop time of the connection tasks tracked, per task, since it was last taken."""

    def __init__(self):
        self._busy: dict = {}   # trio Task -> seconds held since the last take()
        self._step_start = 0.0
        self.enabled = False
        self._installed = False

    # -- trio's instrument hooks (called for every task step while installed) -----------------

    def before_task_step(self, task) -> None:
        self._step_start = perf_counter()

    def after_task_step(self, task) -> None:
        busy = self._busy
        if task in busy:
            busy[task] += perf_counter() - self._step_start

    # -- the broker's side -------------------------------------------------------------------

    def enable(self, on: bool) -> None:
        """Measure (on) or stop measuring. Outside a trio run (the broker being built) only
        the wish is kept; `track` installs the instrument from inside the run."""
        self.enabled = on
        self._sync()

    def _sync(self) -> None:
        try:
            if self.enabled:
                trio.lowlevel.add_instrument(self)   # a no-op when already installed
                self._installed = True
            else:
                self._installed = False
                trio.lowlevel.remove_instrument(self)
        except (RuntimeError, KeyError):    # not in a trio run / not installed
            pass

    def track(self) -> None:
        """Measure the current task (a connection's, from its start to `untrack`)."""
        self._busy[trio.lowlevel.current_task()] = 0.0
        if self.enabled and not self._installed:
            self._sync()

    def untrack(self) -> None:
        self._busy.pop(trio.lowlevel.current_task(), None)

    def take(self) -> float:
        """The seconds the current task held the event loop since the last take, this step's
        time so far included; the count starts again from now."""
        task = trio.lowlevel.current_task()
        busy = self._busy
        held = busy.get(task)
        if held is None:
            return 0.0
        # The step under way is added whole by after_task_step: start from minus its part
        # so far, so that only what follows is counted next time.
        partial = perf_counter() - self._step_start if self._installed else 0.0
        busy[task] = -partial
        return max(held + partial, 0.0)

    async def run_in_thread(self, fn, *args):
        """trio.to_thread.run_sync(fn, *args), the worker thread's CPU time counted as the
        current task's (the server's decoding and encoding of large messages)."""
        if not self._installed:
            return await trio.to_thread.run_sync(fn, *args)
        spent = [0.0]

        def timed():
            start = thread_time()
            try:
                return fn(*args)
            finally:
                spent[0] = thread_time() - start

        try:
            return await trio.to_thread.run_sync(timed)
        finally:
            task = trio.lowlevel.current_task()
            if task in self._busy:
                self._busy[task] += spent[0]
