"""Deleting a topic: gone at once, its files removed in a worker thread (thousands of files for
a large topic must not stall the event loop), nothing left behind on disk."""

import os

import trio

from trioka.broker import BrokerState
from trioka.config import Config


async def test_a_deleted_topic_is_gone_at_once_and_its_dirs_removed_off_the_loop(tmp_path):
    broker = BrokerState(Config({"log.dirs": str(tmp_path),
                                 "listeners": "PLAINTEXT://127.0.0.1:0"}))
    broker.open()
    try:
        await broker.create_topic_async("doomed", 20)
        assert len([d for d in os.listdir(tmp_path) if d.startswith("doomed-")]) == 20
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick)
            await broker.delete_topic_async("doomed")
            nursery.cancel_scope.cancel()
        assert broker.topic("doomed") is None
        assert [d for d in os.listdir(tmp_path) if d.startswith("doomed")] == []
        assert ticks > 0      # the loop ran other tasks while the files went
        # The name is free again at once.
        await broker.create_topic_async("doomed", 1)
        assert broker.topic("doomed").num_partitions == 1
    finally:
        broker.close()
