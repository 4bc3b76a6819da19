"""node/memory.py: the garbage-collection policy that keeps the collector's pauses short."""

import gc
import weakref

import trio
import trio.testing

from trioka.clock import Clock
from trioka.node import memory


class Node:
    """An object that can be in a reference cycle and be watched with a weak reference."""

    def __init__(self):
        self.other = None


def make_cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def _run_policy_for(seconds: float, during=None):
    clock = Clock()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(memory.manage_garbage_collection, clock)
        await trio.testing.wait_all_tasks_blocked()
        if during is not None:
            await during()
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def test_the_oldest_generation_is_left_alone_while_a_broker_runs_and_restored_after():
    before = gc.get_threshold()
    seen = []

    async def during():
        seen.append(gc.get_threshold())

    await _run_policy_for(0.05, during)
    assert seen[0][:2] == before[:2]
    assert seen[0][2] >= memory.OUT_OF_REACH
    assert gc.get_threshold() == before


async def test_a_young_cycle_is_collected_within_the_young_interval(autojump_clock):
    gc.collect()
    watched = []

    async def during():
        watched.append(make_cycle())    # garbage at once: only the collector can free it
        assert watched[0]() is not None

    await _run_policy_for(memory.YOUNG_INTERVAL_S * 3, during)
    assert watched[0]() is None


async def test_a_cycle_that_died_old_waits_for_a_major_collection(autojump_clock, monkeypatch):
    gc.collect()
    # Baseline: what is allocated now; the bound: any growth at all.
    monkeypatch.setattr(memory, "MAJOR_GROWTH", 1.0)
    monkeypatch.setattr(memory, "MAJOR_SLACK", 0)
    majors = memory.major_collections()
    kept = []

    async def during():
        a, b = Node(), Node()
        a.other, b.other = b, a
        kept.append(weakref.ref(a))
        memory.settle_long_lived_objects()      # the cycle is now old (frozen)
        del a, b                                 # and garbage: only a major frees it
        await trio.sleep(memory.YOUNG_INTERVAL_S * 5)
        assert kept[0]() is not None             # young collections do not walk it
        growth.extend(bytearray(16) for _ in range(1000))   # memory grows past the bound

    growth: list = []
    await _run_policy_for(memory.MAJOR_CHECK_S + 1, during)
    assert memory.major_collections() == majors + 1
    assert kept[0]() is None


async def test_no_major_collection_without_growth(autojump_clock, monkeypatch):
    monkeypatch.setattr(memory, "MAJOR_GROWTH", 2.0)
    monkeypatch.setattr(memory, "MAJOR_SLACK", 1_000_000)
    memory.settle_long_lived_objects()
    majors = memory.major_collections()
    await _run_policy_for(memory.MAJOR_CHECK_S * 3)
    assert memory.major_collections() == majors
