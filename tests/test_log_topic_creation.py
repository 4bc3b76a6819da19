"""Topic creation with its disk work off the event loop (LogManager.begin_topic_creation,
TopicCreation.make_dirs in a worker thread, end_topic_creation; BrokerState.create_topic_async,
which CreateTopics and Metadata's auto-creation call).

Creating a partition costs about 3 ms of file creation and fsyncs; a CreateTopics request may
name thousands, so that work runs in a worker thread while the name is reserved, and the event
loop only registers the topic.
"""

import threading

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.broker import BrokerState
from trioka.config import Config
from trioka.log.checkpoint import (LEADER_EPOCH_CHECKPOINT, PARTITION_METADATA,
                                   read_leader_epoch_checkpoint, read_partition_metadata)
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire import protocol
from wire_client import WireClient, memory_broker

CreateTopics = protocol.request_class(ApiKey.CREATE_TOPICS)
CreatableTopic = CreateTopics.CreatableTopic


class HeldDirFlush:
    """Holds the data dir's flush (the last step of make_dirs) in its worker thread until
    `release()`; `entered` is set once it is held. Records the threads that flushed it."""

    def __init__(self, files):
        self.entered = threading.Event()
        self.released = threading.Event()
        self.threads: list[str] = []
        files.on_flush = self.on_flush

    def on_flush(self, path: str) -> None:
        if path == "":
            self.threads.append(threading.current_thread().name)
            self.entered.set()
            self.released.wait(30)

    def release(self) -> None:
        self.released.set()


@pytest.mark.timeout(60)
async def test_create_topics_does_its_disk_work_in_a_worker_thread():
    broker = memory_broker()
    held = HeldDirFlush(broker.logs.files)
    try:
        client = WireClient(broker)
        response = None

        async def create() -> None:
            nonlocal response
            response = await client.call(
                ApiKey.CREATE_TOPICS, 7, timeout_ms=10_000, validate_only=False,
                topics=[CreatableTopic(name="big", num_partitions=8, replication_factor=1,
                                       assignments=[], configs=[])])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            assert await trio.to_thread.run_sync(held.entered.wait, 30)
            await trio.testing.wait_all_tasks_blocked()
            # Its dirs are being made: the name is reserved, the topic not there yet, and the
            # event loop serves other requests.
            assert broker.topic("big") is None and response is None
            with pytest.raises(KafkaError) as info:
                broker.create_topic("big", 1)
            assert info.value.code == ErrorCode.TOPIC_ALREADY_EXISTS
            broker.create_topic("other", 1)
            held.release()
        assert response.topics[0].error_code == 0
        topic = broker.topic("big")
        assert topic.num_partitions == 8 and response.topics[0].topic_id == topic.topic_id
        assert held.threads and threading.main_thread().name not in held.threads
        log = broker.partition("big", 7)
        log.append(make_batch([b"x"]), now_ms=broker.clock.wall_ms())
        assert log.log_end_offset == 1
    finally:
        held.release()
        broker.close()


@pytest.mark.timeout(60)
async def test_a_topic_created_off_the_loop_is_on_disk_and_survives_a_restart(tmp_path):
    config = Config({"log.dir": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0"})
    broker = BrokerState(config)
    broker.open()
    topic = await broker.create_topic_async("t", 3, {"retention.ms": "-1"})
    for index in range(3):
        directory = tmp_path / f"t-{index}"
        assert sorted(p.name for p in directory.iterdir()) == [
            "00000000000000000000.index", "00000000000000000000.log",
            "00000000000000000000.timeindex", LEADER_EPOCH_CHECKPOINT, PARTITION_METADATA]
        # The new leader's epoch starts at offset 0 (written here, not by the first append).
        assert read_leader_epoch_checkpoint(broker.logs.files,
                                            f"t-{index}/{LEADER_EPOCH_CHECKPOINT}") == [(0, 0)]
        assert read_partition_metadata(broker.logs.files,
                                       f"t-{index}/{PARTITION_METADATA}") == topic.topic_id
    broker.partition("t", 2).append(make_batch([b"kept"]), now_ms=broker.clock.wall_ms())
    with pytest.raises(KafkaError) as info:
        await broker.create_topic_async("t", 1)
    assert info.value.code == ErrorCode.TOPIC_ALREADY_EXISTS
    broker.close()

    again = BrokerState(config)
    again.open()
    try:
        topic = again.topic("t")
        assert topic.num_partitions == 3 and topic.configs == {"retention.ms": "-1"}
        assert again.partition("t", 2).log_end_offset == 1
    finally:
        again.close()


@pytest.mark.timeout(60)
async def test_metadata_auto_creation_goes_through_the_worker_thread():
    broker = memory_broker()
    held = HeldDirFlush(broker.logs.files)
    held.release()                      # nothing held: only where the flush ran is recorded
    try:
        client = WireClient(broker)
        Metadata = protocol.request_class(ApiKey.METADATA)
        response = await client.call(
            ApiKey.METADATA, 9, topics=[Metadata.MetadataRequestTopic(name="auto")],
            allow_auto_topic_creation=True, include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False)
        assert response.topics[0].error_code == 0 and broker.topic("auto") is not None
        assert held.threads and threading.main_thread().name not in held.threads
    finally:
        broker.close()
