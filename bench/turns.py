"""Run `python -m trioka ...` with the event loop's long turns recorded (for bench/stalls.py
--turns): a trio instrument times each turn of the run loop, from the end of one socket poll to
the start of the next (everything the loop did meanwhile: expired deadlines, one batch of task
steps), and gc callbacks time the garbage collector's passes. At exit the turns over 5 ms and
the collections over 5 ms are written as JSON to $TRIOKA_TURNS_FILE.

    TRIOKA_TURNS_FILE=turns.json python bench/turns.py -m trioka serve ...
"""

import atexit
import gc
import json
import os
import runpy
import sys
import time

import trio

LONG_S = 0.005
turns: list = []
collections: list = []


class Turns(trio.abc.Instrument):
    def __init__(self):
        self.started = None
        self.steps = 0

    def after_io_wait(self, timeout):
        self.started = time.perf_counter()

    def before_io_wait(self, timeout):
        if self.started is not None:
            took = time.perf_counter() - self.started
            if took > LONG_S:
                turns.append((time.monotonic_ns(), took * 1000))


def _gc(phase, info, started=[0.0]):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        took = time.perf_counter() - started[0]
        if took > LONG_S:
            collections.append((time.monotonic_ns(), info["generation"], took * 1000))


def _write():
    path = os.environ.get("TRIOKA_TURNS_FILE")
    if path:
        with open(path, "w") as f:
            json.dump({"turns_ms": turns, "gc_ms": collections}, f)


def main() -> None:
    original = trio.run

    def run(*args, **kwargs):
        kwargs["instruments"] = list(kwargs.get("instruments", ())) + [Turns()]
        return original(*args, **kwargs)

    trio.run = run
    gc.callbacks.append(_gc)
    atexit.register(_write)
    argv = sys.argv[1:]
    if argv[:1] != ["-m"]:
        raise SystemExit("usage: turns.py -m MODULE ARGS...")
    sys.argv = [argv[1]] + argv[2:]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
