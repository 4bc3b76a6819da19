"""The controller's admin RPCs (controller/quorum_controller.py with configuration_control.py and
replication_control.py), without sockets, on a ManualClock: IncrementalAlterConfigs and
AlterConfigs write ConfigRecords for topics and brokers with Kafka's checks; ElectLeaders
PREFERRED and UNCLEAN and the auto leader rebalance; AlterPartitionReassignments that add
replicas first and complete once the ISR holds the target, ListPartitionReassignments, cancels;
an unclean election of a partition whose ISR is only a fenced broker. And what a single broker
answers to the reassignment APIs (a one-broker cluster's answers)."""

import uuid

from trioka.clock import ManualClock
from trioka.config import Config
from trioka.controller.configuration_control import APPEND, DELETE, SET, SUBTRACT
from trioka.controller.quorum_controller import QuorumController
from trioka.metadata import records as r
from trioka.metadata.image import LeaderRecoveryState
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import request_class
from wire_client import WireClient, memory_broker

CLUSTER_ID = "q1Yh2v7rRdu7Dq4kTSLvxw"
PLAINTEXT = 0
TOPIC, BROKER = 2, 4


def new_controller(clock=None, **config) -> QuorumController:
    settings = {"node.id": 1, "broker.session.timeout.ms": 9000}
    settings.update(config)
    topic_ids = iter(uuid.UUID(int=7000 + n) for n in range(1000))
    controller = QuorumController(Config(settings), clock or ManualClock(), None,
                                  cluster_id=CLUSTER_ID, new_topic_id=lambda: next(topic_ids))
    controller.open()
    return controller


async def start_brokers(controller, *broker_ids) -> dict[int, int]:
    Register = request_class(ApiKey.BROKER_REGISTRATION)
    Heartbeat = request_class(ApiKey.BROKER_HEARTBEAT)
    epochs = {}
    for broker_id in broker_ids:
        response = await controller.broker_registration(Register(
            broker_id=broker_id, cluster_id=CLUSTER_ID, incarnation_id=uuid.UUID(int=broker_id),
            listeners=[Register.Listener(name="PLAINTEXT", host="127.0.0.1",
                                         port=9090 + broker_id, security_protocol=PLAINTEXT)],
            features=[Register.Feature(name=r.METADATA_VERSION, min_supported_version=1,
                                       max_supported_version=r.METADATA_VERSION_LEVEL)],
            rack=None), 4)
        epochs[broker_id] = response.broker_epoch
    for broker_id in broker_ids:
        await heartbeat(controller, broker_id, epochs[broker_id])
    return epochs


async def heartbeat(controller, broker_id, epoch, want_fence=False):
    Heartbeat = request_class(ApiKey.BROKER_HEARTBEAT)
    return await controller.broker_heartbeat(Heartbeat(
        broker_id=broker_id, broker_epoch=epoch,
        current_metadata_offset=controller.high_watermark - 1, want_fence=want_fence,
        want_shut_down=False), 1)


async def create_topic(controller, name, partitions=1, assignments=None, configs=()):
    Request = request_class(ApiKey.CREATE_TOPICS)
    Topic = Request.CreatableTopic
    response = await controller.create_topics(Request(topics=[Topic(
        name=name, num_partitions=-1 if assignments else partitions,
        replication_factor=-1 if assignments else 3,
        assignments=[Topic.CreatableReplicaAssignment(partition_index=i, broker_ids=b)
                     for i, b in enumerate(assignments or [])],
        configs=[Topic.CreatableTopicConfig(name=k, value=v) for k, v in configs])],
        timeout_ms=30000, validate_only=False), 7)
    assert response.topics[0].error_code == ErrorCode.NONE, response.topics[0]


async def incremental(controller, resource_type, name, *ops, validate_only=False):
    Request = request_class(ApiKey.INCREMENTAL_ALTER_CONFIGS)
    Resource = Request.AlterConfigsResource
    response = await controller.incremental_alter_configs(Request(resources=[Resource(
        resource_type=resource_type, resource_name=name,
        configs=[Resource.AlterableConfig(name=k, config_operation=op, value=v)
                 for k, op, v in ops])], validate_only=validate_only), 1)
    [result] = response.responses
    return result


async def alter(controller, resource_type, name, values):
    Request = request_class(ApiKey.ALTER_CONFIGS)
    Resource = Request.AlterConfigsResource
    response = await controller.alter_configs(Request(resources=[Resource(
        resource_type=resource_type, resource_name=name,
        configs=[Resource.AlterableConfig(name=k, value=v) for k, v in values.items()])],
        validate_only=False), 2)
    [result] = response.responses
    return result


async def elect(controller, election_type, topic, *partitions):
    Elect = request_class(ApiKey.ELECT_LEADERS)
    response = await controller.elect_leaders(Elect(
        election_type=election_type,
        topic_partitions=[Elect.TopicPartitions(topic=topic, partitions=list(partitions))],
        timeout_ms=1000), 2)
    return [(p.partition_id, p.error_code) for t in response.replica_election_results
            for p in t.partition_result]


async def reassign(controller, topic, partition, replicas):
    Request = request_class(ApiKey.ALTER_PARTITION_REASSIGNMENTS)
    Topic = Request.ReassignableTopic
    response = await controller.alter_partition_reassignments(Request(timeout_ms=1000, topics=[
        Topic(name=topic, partitions=[Topic.ReassignablePartition(partition_index=partition,
                                                                  replicas=replicas)])]), 0)
    assert response.error_code == ErrorCode.NONE
    [[result]] = [t.partitions for t in response.responses]
    return result


async def list_reassignments(controller, topics=None):
    Request = request_class(ApiKey.LIST_PARTITION_REASSIGNMENTS)
    response = await controller.list_partition_reassignments(Request(
        timeout_ms=1000, topics=None if topics is None else [
            Request.ListPartitionReassignmentsTopics(name=name, partition_indexes=parts)
            for name, parts in topics.items()]), 0)
    return {(t.name, p.partition_index): (p.replicas, p.adding_replicas, p.removing_replicas)
            for t in response.topics for p in t.partitions}


async def alter_isr(controller, epochs, topic_name, isr, partition_index=0):
    topic = controller.image.topic(topic_name)
    p = topic.partitions[partition_index]
    Request = request_class(ApiKey.ALTER_PARTITION)
    Data = Request.TopicData.PartitionData
    response = await controller.alter_partition(Request(
        broker_id=p.leader, broker_epoch=epochs[p.leader], topics=[Request.TopicData(
            topic_id=topic.topic_id, partitions=[Data(
                partition_index=partition_index, leader_epoch=p.leader_epoch,
                new_isr_with_epochs=[Data.BrokerState(broker_id=b, broker_epoch=epochs[b])
                                     for b in isr],
                leader_recovery_state=0, partition_epoch=p.partition_epoch)])]), 3)
    return response.topics[0].partitions[0].error_code


def partition(controller, topic="orders", index=0):
    return controller.image.topic(topic).partitions[index]


# ------------------------------------------------------------------------------------- configs

async def test_incremental_alter_configs_of_a_topic_write_config_records():
    controller = new_controller()
    await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders")
    result = await incremental(controller, TOPIC, "orders", ("retention.ms", SET, "1000"),
                               ("cleanup.policy", APPEND, "compact"))
    assert result.error_code == ErrorCode.NONE
    assert controller.image.topic_configs("orders") == {"retention.ms": "1000",
                                                        "cleanup.policy": "delete,compact"}
    assert controller.high_watermark == controller.next_offset   # committed

    await incremental(controller, TOPIC, "orders", ("retention.ms", DELETE, None),
                      ("cleanup.policy", SUBTRACT, "delete"))
    assert controller.image.topic_configs("orders") == {"cleanup.policy": "compact"}

    before = controller.next_offset
    check = await incremental(controller, TOPIC, "orders", ("min.insync.replicas", SET, "2"),
                              validate_only=True)
    assert check.error_code == ErrorCode.NONE and controller.next_offset == before


async def test_config_changes_are_checked_as_kafka_checks_them():
    controller = new_controller()
    await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders")
    before = controller.next_offset
    cases = [
        ((TOPIC, "nope", ("retention.ms", SET, "1")), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ((TOPIC, "orders", ("retention.ms", SET, "soon")), ErrorCode.INVALID_CONFIG),
        ((TOPIC, "orders", ("no.such.config", SET, "1")), ErrorCode.INVALID_CONFIG),
        ((TOPIC, "orders", ("retention.ms", APPEND, "1")), ErrorCode.INVALID_CONFIG),
        ((TOPIC, "orders", ("retention.ms", 9, "1")), ErrorCode.INVALID_REQUEST),
        ((BROKER, "", ("num.partitions", SET, "4")), ErrorCode.INVALID_REQUEST),
        ((BROKER, "", ("no.such.config", SET, "4")), ErrorCode.INVALID_CONFIG),
        ((BROKER, "one", ("log.retention.ms", SET, "4")), ErrorCode.INVALID_REQUEST),
        ((7, "x", ("a", SET, "b")), ErrorCode.INVALID_REQUEST),
    ]
    for (resource_type, name, op), code in cases:
        result = await incremental(controller, resource_type, name, op)
        assert result.error_code == code, (resource_type, name, op, result)
    twice = await incremental(controller, TOPIC, "orders", ("retention.ms", SET, "1"),
                              ("retention.ms", SET, "2"))
    assert twice.error_code == ErrorCode.INVALID_REQUEST
    assert twice.error_message == "Error due to duplicate config keys"
    assert controller.next_offset == before


async def test_alter_configs_replaces_the_whole_set():
    controller = new_controller()
    await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", configs=[("retention.ms", "1000"),
                                                      ("segment.bytes", "1048576")])
    result = await alter(controller, TOPIC, "orders", {"retention.ms": "2000"})
    assert result.error_code == ErrorCode.NONE
    assert controller.image.topic_configs("orders") == {"retention.ms": "2000"}
    null = await alter(controller, TOPIC, "orders", {"retention.ms": None})
    assert null.error_code == ErrorCode.INVALID_CONFIG


async def test_dynamic_broker_configs_are_config_records_the_controller_obeys():
    controller = new_controller()
    await start_brokers(controller, 1, 2, 3)
    for name in ("", "2"):
        result = await incremental(controller, BROKER, name, ("log.retention.ms", SET, "5000"))
        assert result.error_code == ErrorCode.NONE
        assert controller.image.broker_configs(name) == {"log.retention.ms": "5000"}
    # The cluster-wide default of unclean.leader.election.enable reaches the controller's
    # decisions about every topic.
    await create_topic(controller, "orders")
    assert not controller.replication_control.unclean_leader_election_enabled("orders")
    await incremental(controller, BROKER, "", ("unclean.leader.election.enable", SET, "true"))
    assert controller.replication_control.unclean_leader_election_enabled("orders")
    await alter(controller, BROKER, "", {})
    assert controller.image.broker_configs("") == {}


# ------------------------------------------------------------------------------------ elections

async def test_preferred_election_and_the_auto_rebalance_bring_the_first_replica_back():
    clock = ManualClock()
    controller = new_controller(clock, **{"leader.imbalance.check.interval.seconds": 5})
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", assignments=[[1, 2, 3], [1, 3, 2]])
    # Broker 1 asks to be fenced: its leaderships move to the next ISR member.
    await heartbeat(controller, 1, epochs[1], want_fence=True)
    assert partition(controller).leader == 2 and partition(controller, index=1).leader == 3
    assert await elect(controller, 0, "orders", 0) == \
        [(0, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE)]
    # Back, in the ISR again, it may lead: ElectLeaders PREFERRED moves partition 0.
    await heartbeat(controller, 1, epochs[1])
    assert not controller.image.brokers[1].fenced
    assert await alter_isr(controller, epochs, "orders", [2, 3, 1]) == ErrorCode.NONE
    assert await alter_isr(controller, epochs, "orders", [3, 2, 1], 1) == ErrorCode.NONE
    assert await elect(controller, 0, "orders", 0) == [(0, ErrorCode.NONE)]
    assert partition(controller).leader == 1
    assert await elect(controller, 0, "orders", 0) == [(0, ErrorCode.ELECTION_NOT_NEEDED)]
    assert await elect(controller, 0, "nope", 0) == [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
    # Partition 1 is left to the auto rebalance (auto.leader.rebalance.enable, default true).
    assert partition(controller, index=1).leader == 3
    clock.advance(4000)
    assert controller.run_timers_once() == []
    clock.advance(1000)
    written = controller.run_timers_once()
    assert [rec.record_type for rec in written] == [r.PARTITION_CHANGE_RECORD]
    assert partition(controller, index=1).leader == 1


async def test_auto_rebalance_is_off_when_disabled():
    clock = ManualClock()
    controller = new_controller(clock, **{"auto.leader.rebalance.enable": "false",
                                          "leader.imbalance.check.interval.seconds": 5})
    epochs = await start_brokers(controller, 1, 2)
    await create_topic(controller, "orders", assignments=[[1, 2]])
    await heartbeat(controller, 1, epochs[1], want_fence=True)
    await heartbeat(controller, 1, epochs[1])
    await alter_isr(controller, epochs, "orders", [2, 1])
    clock.advance(6000)
    assert controller.run_timers_once() == []
    assert partition(controller).leader == 2


async def test_unclean_election_when_the_isr_is_only_a_dead_broker():
    controller = new_controller()
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", assignments=[[1, 2]])
    # Broker 2 fell behind: the ISR is the leader alone; then the leader dies.
    assert await alter_isr(controller, epochs, "orders", [1]) == ErrorCode.NONE
    await heartbeat(controller, 1, epochs[1], want_fence=True)
    p = partition(controller)
    assert p.leader == r.NO_LEADER and p.isr == [1]
    # A preferred election cannot help; ElectLeaders UNCLEAN is an explicit request, which
    # Kafka grants from outside the ISR even where the topic does not allow unclean elections.
    assert await elect(controller, 0, "orders", 0) == \
        [(0, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE)]
    assert await elect(controller, 1, "orders", 0) == [(0, ErrorCode.NONE)]
    p = partition(controller)
    assert p.leader == 2 and p.isr == [2]
    assert p.leader_recovery_state == LeaderRecoveryState.RECOVERING
    assert await elect(controller, 1, "orders", 0) == [(0, ErrorCode.ELECTION_NOT_NEEDED)]


async def test_unclean_leader_election_enable_elects_at_once_when_the_leader_is_fenced():
    controller = new_controller()
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", assignments=[[1, 2]])
    await incremental(controller, TOPIC, "orders",
                      ("unclean.leader.election.enable", SET, "true"))
    assert await alter_isr(controller, epochs, "orders", [1]) == ErrorCode.NONE
    await heartbeat(controller, 1, epochs[1], want_fence=True)
    p = partition(controller)
    assert p.leader == 2 and p.isr == [2]


async def test_without_unclean_elections_a_partition_waits_for_its_last_isr_member():
    clock = ManualClock()
    controller = new_controller(clock)
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", assignments=[[1, 2]])
    await alter_isr(controller, epochs, "orders", [1])
    await heartbeat(controller, 1, epochs[1], want_fence=True)
    clock.advance(600_000)
    for broker_id in (2, 3):
        await heartbeat(controller, broker_id, epochs[broker_id])
    controller.run_timers_once()
    assert partition(controller).leader == r.NO_LEADER
    # It comes back: it leads again, nothing lost.
    await heartbeat(controller, 1, epochs[1])
    assert partition(controller).leader == 1


# -------------------------------------------------------------------------------- reassignment

async def test_a_reassignment_adds_first_and_drops_once_the_isr_holds_the_target():
    controller = new_controller()
    epochs = await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", assignments=[[1, 2]])
    result = await reassign(controller, "orders", 0, [2, 3])
    assert result.error_code == ErrorCode.NONE
    p = partition(controller)
    assert p.replicas == [2, 3, 1] and p.adding_replicas == [3] and p.removing_replicas == [1]
    assert p.leader == 1
    assert await list_reassignments(controller) == {("orders", 0): ([2, 3, 1], [3], [1])}
    assert await list_reassignments(controller, {"orders": [1], "nope": [0]}) == {}
    # Broker 3 caught up: the leader adds it to the ISR, which completes the reassignment and
    # moves the leadership off broker 1.
    code = await alter_isr(controller, epochs, "orders", [1, 2, 3])
    assert code == ErrorCode.NEW_LEADER_ELECTED
    p = partition(controller)
    assert p.replicas == [2, 3] and sorted(p.isr) == [2, 3] and p.leader == 2
    assert not p.is_reassigning
    assert await list_reassignments(controller) == {}


async def test_reassignment_errors_and_cancel():
    controller = new_controller()
    await start_brokers(controller, 1, 2, 3)
    await create_topic(controller, "orders", assignments=[[1, 2]])
    cases = [("nope", 0, [1], ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
             ("orders", 5, [1], ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
             ("orders", 0, [], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
             ("orders", 0, [1, 9], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
             ("orders", 0, [1, 1], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
             ("orders", 0, None, ErrorCode.NO_REASSIGNMENT_IN_PROGRESS)]
    for topic, index, replicas, code in cases:
        assert (await reassign(controller, topic, index, replicas)).error_code == code
    # The same replicas: nothing to do.
    before = controller.next_offset
    assert (await reassign(controller, "orders", 0, [1, 2])).error_code == ErrorCode.NONE
    assert controller.next_offset == before
    # Started, then cancelled: back to the replicas before it.
    await reassign(controller, "orders", 0, [3, 1])
    assert partition(controller).adding_replicas == [3]
    assert (await reassign(controller, "orders", 0, None)).error_code == ErrorCode.NONE
    p = partition(controller)
    assert p.replicas == [1, 2] and not p.is_reassigning


# ------------------------------------------------------------------------------ single broker

async def test_a_single_broker_answers_reassignments_as_a_one_broker_cluster():
    broker = memory_broker({"node.id": 1})
    try:
        broker.create_topic("orders", 2)
        client = WireClient(broker)
        Topic = request_class(ApiKey.ALTER_PARTITION_REASSIGNMENTS).ReassignableTopic
        Part = Topic.ReassignablePartition
        response = await client.call(
            ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, timeout_ms=1000, topics=[
                Topic(name="orders", partitions=[
                    Part(partition_index=0, replicas=[1]), Part(partition_index=1, replicas=[2]),
                    Part(partition_index=1, replicas=[1, 1]), Part(partition_index=0, replicas=[]),
                    Part(partition_index=0, replicas=None), Part(partition_index=7, replicas=[1])]),
                Topic(name="nope", partitions=[Part(partition_index=0, replicas=[1])])])
        assert response.error_code == ErrorCode.NONE
        assert [[(p.partition_index, p.error_code) for p in t.partitions]
                for t in response.responses] == [
            [(0, ErrorCode.NONE), (1, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
             (1, ErrorCode.INVALID_REPLICA_ASSIGNMENT), (0, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
             (0, ErrorCode.NO_REASSIGNMENT_IN_PROGRESS),
             (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)],
            [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]]
        assert response.responses[0].partitions[1].error_message == \
            "The manual partition assignment includes broker 2, but no such broker is registered."
        listed = await client.call(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, timeout_ms=1000,
                                   topics=None)
        assert listed.error_code == ErrorCode.NONE and listed.topics == []
    finally:
        broker.close()
