"""The running controller (controller/quorum_controller.py), without sockets: brokers register and
heartbeat through the RPC methods, topics are created, ISRs change, a silent broker is fenced,
a restart replays the same metadata log at the next epoch, and the Raft Fetch serves only what is
committed. State-machine steps run on a ManualClock; the long polls on trio's MockClock."""

import json
import uuid

import trio
import trio.testing

from trioka.clock import Clock, ManualClock
from trioka.config import Config
from trioka.controller.quorum_controller import (METADATA_PARTITION_DIR, QUORUM_STATE_FILE,
                                                 QuorumController)
from trioka.metadata import records as r
from trioka.metadata.batches import decode_batches
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import request_class

CLUSTER_ID = "q1Yh2v7rRdu7Dq4kTSLvxw"
PLAINTEXT = 0


def new_controller(directory, clock=None, **config) -> QuorumController:
    settings = {"node.id": 100, "broker.session.timeout.ms": 9000}
    settings.update(config)
    topic_ids = iter(uuid.UUID(int=5000 + n) for n in range(1000))
    controller = QuorumController(Config(settings), clock or ManualClock(), directory,
                                  cluster_id=CLUSTER_ID, new_topic_id=lambda: next(topic_ids))
    controller.open()
    return controller


def registration(broker_id: int, incarnation: int | None = None):
    Request = request_class(ApiKey.BROKER_REGISTRATION)
    return Request(
        broker_id=broker_id, cluster_id=CLUSTER_ID,
        incarnation_id=uuid.UUID(int=incarnation if incarnation is not None else broker_id),
        listeners=[Request.Listener(name="PLAINTEXT", host="127.0.0.1", port=9090 + broker_id,
                                    security_protocol=PLAINTEXT)],
        features=[Request.Feature(name=r.METADATA_VERSION, min_supported_version=1,
                                  max_supported_version=r.METADATA_VERSION_LEVEL)],
        rack=None)


def heartbeat(controller, broker_id: int, epoch: int, offset: int | None = None,
              want_fence=False, want_shut_down=False):
    Request = request_class(ApiKey.BROKER_HEARTBEAT)
    return controller.broker_heartbeat(Request(
        broker_id=broker_id, broker_epoch=epoch,
        current_metadata_offset=controller.high_watermark - 1 if offset is None else offset,
        want_fence=want_fence, want_shut_down=want_shut_down), 1)


async def start_brokers(controller, *broker_ids) -> dict[int, int]:
    """Register the brokers and heartbeat them until unfenced; their broker epochs."""
    epochs = {}
    for broker_id in broker_ids:
        response = await controller.broker_registration(registration(broker_id), 4)
        assert response.error_code == ErrorCode.NONE
        epochs[broker_id] = response.broker_epoch
    for broker_id in broker_ids:
        response = await heartbeat(controller, broker_id, epochs[broker_id])
        assert response.error_code == ErrorCode.NONE
        assert not response.is_fenced and response.is_caught_up
    return epochs


async def create_topic(controller, name, partitions=1, replication_factor=3, version=7,
                       validate_only=False, configs=()):
    Request = request_class(ApiKey.CREATE_TOPICS)
    Topic = Request.CreatableTopic
    return await controller.create_topics(Request(topics=[Topic(
        name=name, num_partitions=partitions, replication_factor=replication_factor,
        assignments=[], configs=[Topic.CreatableTopicConfig(name=k, value=v)
                                 for k, v in configs])],
        timeout_ms=30000, validate_only=validate_only), version)


def committed_records(controller):
    """Every committed record of the metadata log, decoded from its bytes."""
    fetched = controller.read_metadata(0, 1 << 24)
    return list(decode_batches(fetched.records))


async def test_a_fresh_log_starts_with_metadata_version(tmp_path):
    controller = new_controller(str(tmp_path))
    assert controller.epoch == 1
    records = committed_records(controller)
    assert [(offset, rec.record_type) for offset, rec in records] == \
        [(0, r.FEATURE_LEVEL_RECORD)]
    assert records[0][1].message.feature_level == r.METADATA_VERSION_LEVEL
    state = json.loads((tmp_path / METADATA_PARTITION_DIR / QUORUM_STATE_FILE).read_text())
    assert state["leaderId"] == 100 and state["leaderEpoch"] == 1
    controller.close()


async def test_register_heartbeat_unfence_and_create_a_topic(tmp_path):
    controller = new_controller(str(tmp_path))
    epochs = await start_brokers(controller, 1, 2, 3)
    # The broker epoch is the offset of the broker's RegisterBrokerRecord.
    log_records = dict(committed_records(controller))
    for broker_id, epoch in epochs.items():
        assert log_records[epoch].record_type == r.REGISTER_BROKER_RECORD
        assert log_records[epoch].message.broker_id == broker_id
    assert all(not b.fenced for b in controller.image.brokers.values())

    response = await create_topic(controller, "orders", partitions=2, replication_factor=3,
                                  configs=[("min.insync.replicas", "2")])
    [result] = response.topics
    assert result.error_code == ErrorCode.NONE
    assert (result.num_partitions, result.replication_factor) == (2, 3)
    assert result.topic_id == uuid.UUID(int=5000)
    assert {c.name: c.value for c in result.configs}["min.insync.replicas"] == "2"
    topic = controller.image.topic("orders")
    assert sorted(topic.partitions[0].isr) == [1, 2, 3]
    # The answer came once the records were committed.
    assert controller.high_watermark == controller.next_offset

    again = await create_topic(controller, "orders")
    assert again.topics[0].error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    too_many = await create_topic(controller, "wide", replication_factor=4)
    assert too_many.topics[0].error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    checked = await create_topic(controller, "dry", validate_only=True)
    assert checked.topics[0].error_code == ErrorCode.NONE
    assert controller.image.topic("dry") is None
    controller.close()


async def test_registration_errors():
    controller = new_controller(None)
    wrong = registration(1)
    wrong.cluster_id = "another"
    response = await controller.broker_registration(wrong, 4)
    assert response.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID
    await start_brokers(controller, 1)
    # Another process with the same id while the first one's session lives.
    response = await controller.broker_registration(registration(1, incarnation=77), 4)
    assert response.error_code == ErrorCode.DUPLICATE_BROKER_REGISTRATION
    stale = await heartbeat(controller, 1, epoch=12345)
    assert stale.error_code == ErrorCode.STALE_BROKER_EPOCH


async def test_alter_partition_shrinks_and_expands_the_isr():
    controller = new_controller(None)
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", partitions=1, replication_factor=3)
    topic = controller.image.topic("orders")
    partition = topic.partitions[0]
    leader = partition.leader
    followers = [b for b in partition.replicas if b != leader]
    Request = request_class(ApiKey.ALTER_PARTITION)
    Data = Request.TopicData.PartitionData

    async def alter(isr, partition_epoch):
        p = topic_partition()
        request = Request(broker_id=leader, broker_epoch=epochs[leader], topics=[
            Request.TopicData(topic_id=topic.topic_id, partitions=[Data(
                partition_index=0, leader_epoch=p.leader_epoch,
                new_isr_with_epochs=[Data.BrokerState(broker_id=b, broker_epoch=epochs[b])
                                     for b in isr],
                leader_recovery_state=0, partition_epoch=partition_epoch)])])
        return await controller.alter_partition(request, 3)

    def topic_partition():
        return controller.image.topic("orders").partitions[0]

    shrunk = await alter([leader, followers[0]], topic_partition().partition_epoch)
    [[result]] = [t.partitions for t in shrunk.topics]
    assert result.error_code == ErrorCode.NONE
    assert result.isr == [leader, followers[0]]
    assert topic_partition().isr == [leader, followers[0]]
    assert result.partition_epoch == topic_partition().partition_epoch == 1

    expanded = await alter([leader, followers[0], followers[1]], 1)
    assert expanded.topics[0].partitions[0].error_code == ErrorCode.NONE
    assert sorted(topic_partition().isr) == [1, 2, 3]

    stale = await alter([leader], 0)   # an old partition epoch
    assert stale.topics[0].partitions[0].error_code == ErrorCode.INVALID_UPDATE_VERSION
    wrong_epoch = Request(broker_id=leader, broker_epoch=999, topics=[])
    response = await controller.alter_partition(wrong_epoch, 3)
    assert response.error_code == ErrorCode.STALE_BROKER_EPOCH


async def test_a_silent_broker_is_fenced_and_loses_its_leaderships():
    clock = ManualClock()
    controller = new_controller(None, clock)
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", partitions=3, replication_factor=3)
    led_by_1 = [i for i, p in controller.image.topic("orders").partitions.items()
                if p.leader == 1]
    assert led_by_1
    clock.advance(5000)
    for broker_id in (2, 3):
        await heartbeat(controller, broker_id, epochs[broker_id])
    clock.advance(4000)        # broker 1: exactly its session
    assert controller.run_timers_once() == []
    clock.advance(1)
    written = controller.run_timers_once()
    assert written and written[-1].record_type == r.BROKER_REGISTRATION_CHANGE_RECORD
    await controller.wait_committed(controller.next_offset - 1)
    assert controller.image.brokers[1].fenced
    for partition in controller.image.topic("orders").partitions.values():
        assert partition.leader != 1 and 1 not in partition.isr
    # Brokers 2 and 3 keep their sessions alive and stay unfenced.
    assert not controller.image.brokers[2].fenced and not controller.image.brokers[3].fenced
    # Broker 1 comes back: heartbeats unfence it once caught up.
    back = await heartbeat(controller, 1, epochs[1])
    assert not back.is_fenced


async def test_delete_topics_create_partitions_and_elect_leaders():
    controller = new_controller(None)
    await start_brokers(controller, 1, 2)
    await create_topic(controller, "orders", partitions=1, replication_factor=2)
    Request = request_class(ApiKey.CREATE_PARTITIONS)
    response = await controller.create_partitions(Request(topics=[
        Request.CreatePartitionsTopic(name="orders", count=3, assignments=None),
        Request.CreatePartitionsTopic(name="nope", count=3, assignments=None)],
        timeout_ms=1000, validate_only=False), 3)
    assert [x.error_code for x in response.results] == \
        [ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    assert len(controller.image.topic("orders").partitions) == 3

    Elect = request_class(ApiKey.ELECT_LEADERS)
    response = await controller.elect_leaders(Elect(
        election_type=0, topic_partitions=[Elect.TopicPartitions(topic="orders",
                                                                 partitions=[0])],
        timeout_ms=1000), 2)
    [[result]] = [t.partition_result for t in response.replica_election_results]
    assert result.error_code == ErrorCode.ELECTION_NOT_NEEDED

    Delete = request_class(ApiKey.DELETE_TOPICS)
    topic_id = controller.image.topic("orders").topic_id
    response = await controller.delete_topics(Delete(topics=[
        Delete.DeleteTopicState(name=None, topic_id=topic_id),
        Delete.DeleteTopicState(name="nope", topic_id=uuid.UUID(int=0))], timeout_ms=1000), 6)
    assert [(x.name, x.error_code) for x in response.responses] == \
        [("orders", ErrorCode.NONE), ("nope", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
    assert controller.image.topic("orders") is None


async def test_restart_rebuilds_the_same_image_at_the_next_epoch(tmp_path):
    controller = new_controller(str(tmp_path))
    await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", partitions=2, replication_factor=3)
    before = controller.image
    end = controller.next_offset
    controller.close()

    again = new_controller(str(tmp_path))
    assert again.epoch == 2
    assert again.next_offset == again.high_watermark == end
    assert again.image.brokers == before.brokers
    assert again.image.topic("orders").partitions == before.topic("orders").partitions
    assert again.image.features == before.features
    # The epoch is stamped into the batches written from now on.
    await create_topic(again, "more", partitions=1, replication_factor=1)
    fetched = again.read_metadata(end, 1 << 20, last_fetched_epoch=1)
    from trioka.metadata.batches import batch_epochs
    assert {epoch for _, _, epoch in batch_epochs(fetched.records)} == {2}
    again.close()
    third = new_controller(str(tmp_path))
    assert third.epoch == 3
    third.close()


async def test_fetch_returns_only_committed_records_and_long_polls(mock_clock):
    controller = new_controller(None, Clock())
    first_end = controller.high_watermark
    # Written, not yet flushed: not committed, so not served.
    offset = controller.write([r.feature_level_record("transaction.version", 2)])
    assert offset == first_end and controller.high_watermark == first_end
    fetched = controller.read_metadata(first_end, 1 << 20, last_fetched_epoch=1)
    assert fetched.records == b"" and fetched.high_watermark == first_end
    assert (fetched.leader_id, fetched.leader_epoch) == (100, 1)
    await controller.wait_committed(offset)
    fetched = controller.read_metadata(first_end, 1 << 20, last_fetched_epoch=1)
    assert [o for o, _ in decode_batches(fetched.records)] == [offset]

    answers = []

    async def fetch(max_wait_ms):
        answers.append(await controller.fetch_metadata(offset + 1, 1 << 20, max_wait_ms,
                                                       replica_id=1, last_fetched_epoch=1))

    # Nothing new: the fetch waits max_wait_ms, then answers empty.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch, 500)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.499)
        await trio.testing.wait_all_tasks_blocked()
        assert answers == []
        mock_clock.jump(0.002)
    assert answers[0].records == b""

    # A commit during the wait answers it at once, with no time passing.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch, 5000)
        await trio.testing.wait_all_tasks_blocked()
        await controller.write_and_commit([r.feature_level_record("transaction.version", 1)])
    assert [o for o, _ in decode_batches(answers[1].records)] == [offset + 1]
    assert answers[1].high_watermark == offset + 2


async def test_fetch_from_beyond_the_log_is_told_to_truncate():
    controller = new_controller(None)
    end = controller.high_watermark
    diverged = controller.read_metadata(end + 5, 1 << 20, last_fetched_epoch=1)
    assert diverged.diverging_epoch == (1, end)
    older = controller.read_metadata(end + 5, 1 << 20, last_fetched_epoch=7)
    assert older.diverging_epoch == (-1, -1)
    invalid = controller.read_metadata(3, 1 << 20, last_fetched_epoch=-1)
    assert invalid.error_code == ErrorCode.INVALID_REQUEST


async def test_the_timer_task_fences_on_its_own(autojump_clock):
    controller = new_controller(None, Clock(), **{"broker.session.timeout.ms": 2000})
    await start_brokers(controller, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(controller.run)
        with trio.fail_after(10):
            while not controller.image.brokers[1].fenced:
                done = trio.Event()
                controller.log.add_waiter(done)
                await done.wait()
        assert trio.current_time() >= 2.0
        nursery.cancel_scope.cancel()


async def test_describe_cluster_describes_the_controllers():
    controller = new_controller(None)
    controller.advertise([("127.0.0.1", 9093)])
    Request = request_class(ApiKey.DESCRIBE_CLUSTER)
    response = await controller.describe_cluster(Request(
        include_cluster_authorized_operations=False, endpoint_type=2), 1)
    assert response.error_code == ErrorCode.NONE
    assert (response.cluster_id, response.controller_id) == (CLUSTER_ID, 100)
    assert [(b.broker_id, b.host, b.port) for b in response.brokers] == \
        [(100, "127.0.0.1", 9093)]
    brokers = await controller.describe_cluster(Request(
        include_cluster_authorized_operations=False, endpoint_type=1), 1)
    assert brokers.error_code == ErrorCode.MISMATCHED_ENDPOINT_TYPE
    unknown = await controller.describe_cluster(Request(
        include_cluster_authorized_operations=False, endpoint_type=7), 1)
    assert unknown.error_code == ErrorCode.UNSUPPORTED_ENDPOINT_TYPE


async def test_duplicate_names_in_one_request_are_refused():
    controller = new_controller(None)
    await start_brokers(controller, 1)
    Request = request_class(ApiKey.CREATE_TOPICS)
    Topic = Request.CreatableTopic
    twice = [Topic(name="a", num_partitions=1, replication_factor=1, assignments=[],
                   configs=[])] * 2
    response = await controller.create_topics(Request(topics=twice, timeout_ms=1000,
                                                      validate_only=False), 7)
    assert [t.error_code for t in response.topics] == [ErrorCode.INVALID_REQUEST] * 2
    assert controller.image.topic("a") is None
    await create_topic(controller, "a", replication_factor=1)
    Delete = request_class(ApiKey.DELETE_TOPICS)
    response = await controller.delete_topics(Delete(topic_names=["a", "a"],
                                                     timeout_ms=1000), 5)
    assert [t.error_code for t in response.responses] == [ErrorCode.INVALID_REQUEST] * 2
    response = await controller.delete_topics(Delete(topic_names=["a"], timeout_ms=1000), 5)
    assert response.responses[0].error_code == ErrorCode.NONE
