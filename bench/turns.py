"""Run `python -m trioka ...` with the event loop's long turns recorded (for bench/stalls.py
--turns): a trio instrument times each turn of the run loop, from the end of one socket poll to
the start of the next (everything the loop did meanwhile: expired deadlines, one batch of task
steps), and gc callbacks time the garbage collector's passes. At exit the turns over 5 ms and
the collections over 5 ms are written as JSON (each turn: when, wall ms, the loop thread's CPU ms;
each task step over 15 ms of CPU: when, CPU ms, the task, where it stopped, and how much of
that CPU was the kernel's) to $TRIOKA_TURNS_FILE. With $TRIOKA_TURNS_SAMPLE set, a watchdog
thread also samples the loop thread's stack every millisecond while a step has run over 10 ms,
and the counts of the stacks sampled are written too (`long_step_samples`).

    TRIOKA_TURNS_FILE=turns.json python bench/turns.py -m trioka serve ...
"""

import atexit
import gc
import json
import os
import resource
import runpy
import sys
import threading
import time

import trio

LONG_S = 0.005
turns: list = []
collections: list = []
census: list = []
steps: list = []
LONG_STEP_S = 0.015


# Where long task steps spend their time: a watchdog thread samples the loop thread's stack every
# millisecond while one step has run over SAMPLE_AFTER_S, and counts the sampled stacks.
SAMPLE_AFTER_S = 0.010
samples: dict = {}
_step_started = [0.0, None]      # perf_counter of the running step's start (0: none), thread id


def _watchdog() -> None:
    while True:
        time.sleep(0.001)
        started, ident = _step_started
        if started and time.perf_counter() - started > SAMPLE_AFTER_S:
            frame = sys._current_frames().get(ident)
            stack = []
            while frame is not None and len(stack) < 40:
                code = frame.f_code
                stack.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:"
                             f"{frame.f_lineno}")
                frame = frame.f_back
            key = " < ".join(stack[:14])
            samples[key] = samples.get(key, 0) + 1


class Turns(trio.abc.Instrument):
    def __init__(self):
        self.started = None
        self.steps = 0
        self.turn_steps = 0
        self.turn_tasks: dict = {}

    def before_task_step(self, task):
        _step_started[0] = time.perf_counter()
        self.step_cpu = time.thread_time()
        self.step_sys = resource.getrusage(resource.RUSAGE_THREAD).ru_stime

    def after_task_step(self, task):
        _step_started[0] = 0.0
        took = time.thread_time() - self.step_cpu
        self.turn_steps += 1
        self.turn_tasks[task.name] = self.turn_tasks.get(task.name, 0) + 1
        if took > LONG_STEP_S:
            # Where the task stopped after its long step: the awaits it is suspended in.
            where, coro = [], task.coro
            while coro is not None and len(where) < 12:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is not None:
                    where.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            kernel = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - self.step_sys
            steps.append((time.monotonic_ns(), took * 1000, task.name, where,
                          round(kernel * 1000, 1)))

    def after_io_wait(self, timeout):
        self.started = time.perf_counter()
        self.started_cpu = time.thread_time()
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        self.started_faults, self.started_switches = usage.ru_majflt, usage.ru_nivcsw
        self.turn_steps = 0
        self.turn_tasks = {}

    def before_io_wait(self, timeout):
        if self.started is not None:
            took = time.perf_counter() - self.started
            if took > LONG_S:
                # The thread's CPU time too: a turn much longer than its CPU time waited for a
                # CPU (another process ran), which is the machine's doing, not the broker's.
                # And the major page faults (a page read from disk: an mmap'd index, say) and
                # the involuntary context switches (the kernel gave the CPU to another task).
                cpu = time.thread_time() - self.started_cpu
                usage = resource.getrusage(resource.RUSAGE_THREAD)
                top = sorted(self.turn_tasks.items(), key=lambda kv: -kv[1])[:3]
                turns.append((time.monotonic_ns(), took * 1000, cpu * 1000, self.turn_steps,
                              [f"{name.rsplit('.', 1)[-1]} x{n}" for name, n in top],
                              usage.ru_majflt - self.started_faults,
                              usage.ru_nivcsw - self.started_switches))


def _gc(phase, info, started=[0.0, 0.0]):
    if phase == "start":
        started[0] = time.perf_counter()
        started[1] = time.thread_time()
    else:
        took = time.perf_counter() - started[0]
        if took > LONG_S:
            collections.append((time.monotonic_ns(), info["generation"], took * 1000,
                                (time.thread_time() - started[1]) * 1000, info["collected"]))
            if os.environ.get("TRIOKA_TURNS_GC_TYPES") and info["generation"] == 2 \
                    and took > 0.02 and len(census) < 3:
                # What the long full collections walked: the commonest types left in sight.
                from collections import Counter
                kinds = Counter(type(o).__name__ for o in gc.get_objects(2))
                census.append({"objects": sum(kinds.values()), "frozen": gc.get_freeze_count(),
                               "top": kinds.most_common(25)})


def _write():
    path = os.environ.get("TRIOKA_TURNS_FILE")
    if path:
        with open(path, "w") as f:
            json.dump({"turns_ms": turns, "gc_ms": collections, "gc_census": census,
                       "steps": steps, "long_step_samples": samples}, f)


def main() -> None:
    original = trio.run

    def run(*args, **kwargs):
        kwargs["instruments"] = list(kwargs.get("instruments", ())) + [Turns()]
        return original(*args, **kwargs)

    trio.run = run
    _step_started[1] = threading.get_ident()
    if os.environ.get("TRIOKA_TURNS_SAMPLE"):
        threading.Thread(target=_watchdog, daemon=True).start()
    gc.callbacks.append(_gc)
    atexit.register(_write)
    argv = sys.argv[1:]
    if argv[:1] != ["-m"]:
        raise SystemExit("usage: turns.py -m MODULE ARGS...")
    sys.argv = [argv[1]] + argv[2:]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
