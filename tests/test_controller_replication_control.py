"""Topics, partitions, ISRs and leaders (controller/replication_control.py): CreateTopics,
CreatePartitions, DeleteTopics, AlterPartition, fencing and controlled shutdown, ElectLeaders and
reassignments, with Kafka's error codes and messages. Every record goes through its bytes and is
replayed before the next call, as a one-voter controller does."""

import uuid

import pytest

from controller_cluster import ControllerCluster
from trioka.controller.replication_control import ElectionType
from trioka.metadata import records as r
from trioka.metadata.image import ConfigResourceType, LeaderRecoveryState
from trioka.wire.errors import ErrorCode, KafkaError

RECOVERED, RECOVERING = LeaderRecoveryState.RECOVERED, LeaderRecoveryState.RECOVERING


def error_of(call, *args, **kw) -> KafkaError:
    with pytest.raises(KafkaError) as info:
        call(*args, **kw)
    return info.value


def cluster(*broker_ids, racks=None, **replication) -> ControllerCluster:
    c = ControllerCluster(**replication)
    for broker_id in broker_ids:
        c.start(broker_id, rack=(racks or {}).get(broker_id))
    return c


def alter(c: ControllerCluster, broker_id: int, topic: str, isr, partition: int = 0,
          leader_epoch=None, partition_epoch=None, epochs=None, version: int = 3,
          leader_recovery_state: int = 0):
    """AlterPartition from `broker_id` for one partition, at the partition's current epochs
    unless given; the records are applied and the result returned."""
    current = c.partition(topic, partition)
    new_isr = [(b, (epochs or {}).get(b, c.epoch(b) if b in c.image.brokers else -1))
               for b in isr]
    records, result = c.replication.alter_partition(
        broker_id, c.epoch(broker_id), partition,
        current.leader_epoch if leader_epoch is None else leader_epoch,
        current.partition_epoch if partition_epoch is None else partition_epoch,
        new_isr, leader_recovery_state, topic_id=c.image.topic(topic).topic_id,
        topic_name=topic, version=version)
    c.apply(records)
    return result


def expire(c: ControllerCluster, *broker_ids: int) -> None:
    """The brokers fall silent past their session; the others keep heartbeating."""
    c.clock.advance(9001)
    c.heartbeat_all(*broker_ids)
    while c.apply(c.replication.maybe_fence_one_stale_broker()):
        pass
    assert all(c.image.brokers[b].fenced for b in broker_ids)


# ----------------------------------------------------------------------------- CreateTopics

def test_create_topic_refusals_with_kafkas_messages():
    c = ControllerCluster(default_replication_factor=3)
    e = error_of(c.replication.create_topic, "foo")
    assert (e.code, e.message) == (ErrorCode.INVALID_REPLICATION_FACTOR,
                                   "Unable to replicate the partition 3 time(s): All brokers are "
                                   "currently fenced.")
    c.start(0)
    c.start(1)
    e = error_of(c.replication.create_topic, "foo")
    assert (e.code, e.message) == (ErrorCode.INVALID_REPLICATION_FACTOR,
                                   "Unable to replicate the partition 3 time(s): The target "
                                   "replication factor of 3 cannot be reached because only 2 "
                                   "broker(s) are registered.")
    e = error_of(c.replication.create_topic, "foo", replication_factor=0)
    assert (e.code, e.message) == (ErrorCode.INVALID_REPLICATION_FACTOR,
                                   "Replication factor must be larger than 0, or -1 to use the "
                                   "default value.")
    e = error_of(c.replication.create_topic, "foo", num_partitions=0, replication_factor=1)
    assert (e.code, e.message) == (ErrorCode.INVALID_PARTITIONS,
                                   "Number of partitions was set to an invalid non-positive "
                                   "value.")
    assert error_of(c.replication.create_topic, "bad/name").code == \
        ErrorCode.INVALID_TOPIC_EXCEPTION
    assert c.log[-1].record_type == r.BROKER_REGISTRATION_CHANGE_RECORD    # nothing written


def test_kafka_create_topics_when_every_placed_broker_is_fenced_or_shutting_down():
    """Kafka's testCreateTopics: broker 0 unfenced but in controlled shutdown, 1 and 2 fenced:
    the placement works, the ISR would be empty."""
    c = ControllerCluster(default_replication_factor=3)
    c.start(0)
    c.register(1)
    c.register(2)
    c.apply([r.broker_registration_change_record(0, c.epoch(0), in_controlled_shutdown=True)])
    e = error_of(c.replication.create_topic, "foo")
    assert (e.code, e.message) == (ErrorCode.INVALID_REPLICATION_FACTOR,
                                   "Unable to replicate the partition 3 time(s): All brokers are "
                                   "currently fenced or in controlled shutdown.")


def test_a_created_topic_is_a_topic_record_its_configs_and_a_record_per_partition():
    c = cluster(1, 2, 3)
    records, created = c.replication.create_topic("foo", 2, 3,
                                                  configs={"min.insync.replicas": "2",
                                                           "cleanup.policy": "compact"})
    assert [rec.record_type for rec in records] == [
        r.TOPIC_RECORD, r.CONFIG_RECORD, r.CONFIG_RECORD, r.PARTITION_RECORD, r.PARTITION_RECORD]
    c.apply(records)
    assert (created.name, created.num_partitions, created.replication_factor) == ("foo", 2, 3)
    assert c.image.topic("foo").topic_id == created.topic_id
    for partition_id in (0, 1):
        p = c.partition("foo", partition_id)
        assert sorted(p.replicas) == [1, 2, 3] and p.isr == p.replicas
        assert (p.leader, p.leader_epoch, p.partition_epoch) == (p.replicas[0], 0, 0)
        assert p.leader_recovery_state is RECOVERED
    assert c.image.topic_configs("foo") == {"min.insync.replicas": "2",
                                            "cleanup.policy": "compact"}
    assert c.replication.effective_min_isr("foo") == 2
    e = error_of(c.replication.create_topic, "foo")
    assert (e.code, e.message) == (ErrorCode.TOPIC_ALREADY_EXISTS, "Topic 'foo' already exists.")


def test_the_leader_is_the_first_live_replica_and_the_isr_only_live_ones():
    c = cluster(1, 2)
    c.register(3)                                    # fenced
    c.apply(c.replication.create_topic("foo", assignments=[(0, [3, 1, 2]), (1, [2, 3, 1])])[0])
    p0, p1 = c.partition("foo", 0), c.partition("foo", 1)
    assert (p0.replicas, p0.isr, p0.leader) == ([3, 1, 2], [1, 2], 1)
    assert (p1.replicas, p1.isr, p1.leader) == ([2, 3, 1], [2, 1], 2)


def test_default_replication_factor_and_partitions_stand_in_for_minus_one():
    c = cluster(1, 2, 3, default_replication_factor=2, default_num_partitions=4)
    created = c.create_topic("foo")
    assert (created.num_partitions, created.replication_factor) == (4, 2)
    assert all(len(p.replicas) == 2 for p in c.image.topic("foo").partitions.values())


def test_min_insync_replicas_is_capped_at_the_replication_factor():
    c = cluster(1, 2, min_insync_replicas=3)
    c.create_topic("foo", 1, 2)
    assert c.replication.effective_min_isr("foo") == 2
    c.create_topic("bar", 1, 2, configs={"min.insync.replicas": "1"})
    assert c.replication.effective_min_isr("bar") == 1


@pytest.mark.parametrize("configs,message", [
    ({"min.insync.replicas": "0"}, "Invalid value 0 for configuration min.insync.replicas: "
                                   "Value must be at least 1"),
    ({"no.such.config": "1"}, "Unknown topic config name: no.such.config"),
    ({"retention.ms": None, "segment.ms": None},
     "Null value not supported for topic configs: retention.ms,segment.ms"),
])
def test_bad_topic_configs_are_invalid_config(configs, message):
    c = cluster(1)
    e = error_of(c.replication.create_topic, "foo", 1, 1, configs=configs)
    assert (e.code, e.message) == (ErrorCode.INVALID_CONFIG, message)


def test_a_name_colliding_with_an_existing_topic_is_refused():
    c = cluster(1)
    c.create_topic("a.b", 1, 1)
    e = error_of(c.replication.create_topic, "a_b", 1, 1)
    assert (e.code, e.message) == (ErrorCode.INVALID_TOPIC_EXCEPTION,
                                   "Topic 'a_b' collides with existing topic: a.b")


def test_replicas_are_spread_over_racks():
    racks = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
    c = cluster(1, 2, 3, 4, 5, 6, racks=racks)
    c.create_topic("foo", 12, 3)
    for p in c.image.topic("foo").partitions.values():
        assert sorted(racks[b] for b in p.replicas) == ["a", "b", "c"]
    leaders = {p.leader for p in c.image.topic("foo").partitions.values()}
    assert len(leaders) >= 3


@pytest.mark.parametrize("kw,code,message", [
    (dict(replication_factor=2, assignments=[(0, [1, 2])]), ErrorCode.INVALID_REQUEST,
     "A manual partition assignment was specified, but replication factor was not set to -1."),
    (dict(num_partitions=1, assignments=[(0, [1, 2])]), ErrorCode.INVALID_REQUEST,
     "A manual partition assignment was specified, but numPartitions was not set to -1."),
    (dict(assignments=[(0, [1, 9])]), ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "The manual partition assignment includes broker 9, but no such broker is registered."),
    (dict(assignments=[(0, [1, 1])]), ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "The manual partition assignment includes the broker 1 more than once."),
    (dict(assignments=[(0, [1, 2]), (1, [1])]), ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "The manual partition assignment includes a partition with 1 replica(s), but this is not "
     "consistent with previous partitions, which have 2 replica(s)."),
    (dict(assignments=[(0, [1]), (0, [2])]), ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "Found multiple manual partition assignments for partition 0"),
    (dict(assignments=[(0, [1]), (2, [2])]), ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "partitions should be a consecutive 0-based integer sequence"),
    (dict(assignments=[(0, [3])]), ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "All brokers specified in the manual partition assignment for partition 0 are fenced or "
     "in controlled shutdown."),
])
def test_bad_manual_assignments(kw, code, message):
    c = cluster(1, 2)
    c.register(3)
    e = error_of(c.replication.create_topic, "foo", **kw)
    assert (e.code, e.message) == (code, message)


# ----------------------------------------------------------------------------- AlterPartition

def test_kafka_shrink_and_expand_isr():
    c = cluster(0, 1, 2)
    c.create_topic("foo", assignments=[(0, [0, 1, 2])])
    result = alter(c, 0, "foo", [0, 1])
    p = c.partition("foo")
    assert (result.error_code, result.leader_id, result.isr) == (ErrorCode.NONE, 0, [0, 1])
    assert (result.leader_epoch, result.partition_epoch) == (p.leader_epoch, p.partition_epoch) \
        == (0, 1)
    assert c.log[-1].message.isr == [0, 1] and c.log[-1].message.leader == r.NO_LEADER_CHANGE
    result = alter(c, 0, "foo", [0, 1, 2])
    assert (result.isr, result.leader_epoch, result.partition_epoch) == ([0, 1, 2], 0, 2)
    assert c.partition("foo").isr == [0, 1, 2]


def test_an_isr_may_shrink_to_the_leader_alone():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2, 3])])
    c.apply(c.replication.create_topic("bar", assignments=[(0, [1, 2, 3])],
                                       configs={"min.insync.replicas": "3"})[0])
    assert alter(c, 1, "foo", [1]).isr == [1]
    assert alter(c, 1, "bar", [1]).isr == [1]


def test_an_alter_partition_that_changes_nothing_writes_nothing():
    c = cluster(1, 2)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    before = len(c.log)
    result = alter(c, 1, "foo", [1, 2])
    assert len(c.log) == before
    assert (result.error_code, result.isr, result.partition_epoch) == (ErrorCode.NONE, [1, 2], 0)


@pytest.mark.parametrize("case,code", [
    (dict(leader_epoch=-1), ErrorCode.FENCED_LEADER_EPOCH),
    (dict(leader_epoch=1), ErrorCode.NOT_CONTROLLER),
    (dict(partition_epoch=2), ErrorCode.NOT_CONTROLLER),
    (dict(partition_epoch=0), ErrorCode.INVALID_UPDATE_VERSION),
    (dict(broker_id=2), ErrorCode.INVALID_REQUEST),                  # not the leader
    (dict(isr=[2, 3]), ErrorCode.INVALID_REQUEST),                   # without the leader
    (dict(isr=[1, 4]), ErrorCode.INVALID_REQUEST),                   # 4 is no replica
    (dict(isr=[1, 2, 2]), ErrorCode.INVALID_REQUEST),
    (dict(isr=[1, 3], leader_recovery_state=1), ErrorCode.INVALID_REQUEST),
    (dict(isr=[1, 3]), ErrorCode.INELIGIBLE_REPLICA),                # 3 is fenced
    (dict(isr=[1, 3], version=1), ErrorCode.OPERATION_NOT_ATTEMPTED),
    (dict(isr=[1, 2], epochs={2: 999}), ErrorCode.INELIGIBLE_REPLICA),
    (dict(partition=7), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
])
def test_alter_partition_refusals(case, code):
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2, 3])])
    c.apply(c.replication.alter_partition(1, c.epoch(1), 0, 0, 0, [(1, -1), (2, -1)],
                                          topic_id=c.image.topic("foo").topic_id)[0])
    c.heartbeat(3, want_fence=True)                          # fenced: out of the ISR
    assert c.partition("foo").partition_epoch == 1
    case = dict(case)
    broker_id = case.pop("broker_id", 1)
    partition = case.pop("partition", 0)
    isr = case.pop("isr", [1, 2, 3])
    p = c.partition("foo")
    args = dict(leader_epoch=p.leader_epoch, partition_epoch=p.partition_epoch,
                leader_recovery_state=0, version=3, epochs={})
    args.update(case)
    epochs = args.pop("epochs")
    new_isr = [(b, epochs.get(b, -1)) for b in isr]
    before = len(c.log)
    e = error_of(c.replication.alter_partition, broker_id, c.epoch(broker_id), partition,
                 args["leader_epoch"], args["partition_epoch"], new_isr,
                 args["leader_recovery_state"], topic_id=c.image.topic("foo").topic_id,
                 topic_name="foo", version=args["version"])
    assert e.code == code
    assert len(c.log) == before


def test_alter_partition_checks_the_brokers_epoch_and_the_topic():
    c = cluster(1, 2)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    topic_id = c.image.topic("foo").topic_id
    e = error_of(c.replication.alter_partition, 1, c.epoch(1) + 1, 0, 0, 0, [(1, -1)],
                 topic_id=topic_id)
    assert e.code == ErrorCode.STALE_BROKER_EPOCH
    e = error_of(c.replication.alter_partition, 1, c.epoch(1), 0, 0, 0, [(1, -1)],
                 topic_id=uuid.UUID(int=12345))
    assert e.code == ErrorCode.UNKNOWN_TOPIC_ID
    e = error_of(c.replication.alter_partition, 1, c.epoch(1), 0, 0, 0, [(1, -1)],
                 topic_name="nope", version=1)
    assert e.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    records, result = c.replication.alter_partition(1, c.epoch(1), 0, 0, 0, [(1, -1)],
                                                    topic_name="foo", version=1)
    assert result.isr == [1] and len(records) == 1


def test_a_replica_in_controlled_shutdown_may_not_join_the_isr():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    c.create_topic("bar", assignments=[(0, [3])])
    alter(c, 1, "foo", [1])
    c.heartbeat(2, want_shut_down=True)
    assert not c.image.brokers[2].in_controlled_shutdown    # 2 led nothing: it just stopped
    c.heartbeat(3, want_shut_down=True)                     # 3 leads bar-0: controlled
    assert c.image.brokers[3].in_controlled_shutdown
    c.create_topic("baz", assignments=[(0, [1, 3])])
    e = error_of(alter, c, 1, "baz", [1, 3])
    assert e.code == ErrorCode.INELIGIBLE_REPLICA
    assert "3 (shutting down)" in e.message
    e = error_of(alter, c, 1, "foo", [1, 2])
    assert e.code == ErrorCode.INELIGIBLE_REPLICA and "2 (fenced)" in e.message


# ----------------------------------------------------------------------------- failover

def test_kafka_fence_multiple_brokers():
    c = cluster(0, 1, 2, 3, 4)
    c.create_topic("foo", assignments=[(0, [1, 2, 3]), (1, [2, 3, 4]), (2, [0, 2, 1])])
    expire(c, 2, 3)
    p0, p1, p2 = (c.partition("foo", i) for i in range(3))
    assert (p0.replicas, p0.isr, p0.leader) == ([1, 2, 3], [1], 1)
    assert (p1.replicas, p1.isr, p1.leader) == ([2, 3, 4], [4], 4)
    assert (p1.leader_epoch, p1.partition_epoch) == (2, 2)        # led by 3, then by 4
    assert (p2.replicas, p2.isr, p2.leader) == ([0, 2, 1], [0, 1], 0)
    assert c.image.offline_replicas(p1) == [2, 3]


def test_the_last_isr_member_fenced_stays_in_the_isr_without_a_leader():
    c = cluster(1, 2)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    alter(c, 1, "foo", [1])
    expire(c, 1)
    p = c.partition("foo")
    assert (p.isr, p.leader, p.leader_epoch) == ([1], r.NO_LEADER, 1)
    assert c.replication.partitions_with_no_leader()[0][1] == 0
    # broker 2 unfenced again changes nothing: it is not in the ISR
    c.heartbeat(2)
    assert c.partition("foo").leader == r.NO_LEADER
    # broker 1 comes back (a heartbeat after its session expired) and leads again
    reply = c.heartbeat(1)
    assert not reply.is_fenced
    p = c.partition("foo")
    assert (p.isr, p.leader, p.leader_epoch, p.leader_recovery_state) == ([1], 1, 2, RECOVERED)


@pytest.mark.parametrize("how", ["topic config", "cluster default", "controller node config",
                                 "static config"])
def test_unclean_election_when_the_config_allows_it(how):
    kw = {"unclean_leader_election_enable": True} if how == "static config" else {}
    c = cluster(1, 2, 3, node_id=9, **kw)
    if how == "topic config":
        c.apply(c.replication.create_topic("foo", assignments=[(0, [1, 2, 3])], configs={
            "unclean.leader.election.enable": "true"})[0])
    else:
        c.create_topic("foo", assignments=[(0, [1, 2, 3])])
    resource = {"cluster default": "", "controller node config": "9"}.get(how)
    if resource is not None:
        c.apply([r.config_record(ConfigResourceType.BROKER, resource,
                                 "unclean.leader.election.enable", "true")])
    alter(c, 1, "foo", [1])
    expire(c, 1)
    p = c.partition("foo")
    assert (p.leader, p.isr, p.leader_recovery_state) == (2, [2], RECOVERING)
    assert p.leader_epoch == 1
    # the new leader tells the controller it has recovered
    result = alter(c, 2, "foo", [2], leader_recovery_state=RECOVERED)
    assert result.leader_recovery_state == RECOVERED
    assert c.partition("foo").leader_recovery_state is RECOVERED


def test_no_unclean_election_by_default_but_when_enabled_later():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2, 3])])
    alter(c, 1, "foo", [1])
    expire(c, 1)
    assert c.partition("foo").leader == r.NO_LEADER
    assert c.replication.maybe_elect_unclean_leaders() == []
    c.apply([r.config_record(ConfigResourceType.TOPIC, "foo", "unclean.leader.election.enable",
                             "true")])
    c.apply(c.replication.maybe_elect_unclean_leaders())
    p = c.partition("foo")
    assert (p.leader, p.isr, p.leader_recovery_state) == (2, [2], RECOVERING)


def test_kafka_controlled_shutdown_moves_leaderships_first():
    """Kafka's testProcessBrokerHeartbeatInControlledShutdown, then on to the shutdown: the
    broker may go once it leads nothing and every active broker has seen the records."""
    c = cluster(0, 1, 2)
    created = c.create_topic("foo", assignments=[(0, [0, 1, 2])])
    records, reply = c.replication.process_broker_heartbeat(0, c.epoch(0), c.end_offset, False,
                                                            True, c.next_offset)
    assert records == [
        r.broker_registration_change_record(0, c.epoch(0), in_controlled_shutdown=True),
        r.partition_change_record(created.topic_id, 0, isr=[1, 2], leader=1)]
    assert (reply.is_fenced, reply.in_controlled_shutdown, reply.should_shut_down) == \
        (False, True, False)
    c.apply(records)
    assert c.image.brokers[0].in_controlled_shutdown and not c.image.brokers[0].fenced
    assert not c.replication.has_leaderships(0)
    reply = c.heartbeat(0, want_shut_down=True)
    assert (reply.in_controlled_shutdown, reply.should_shut_down) == (True, False)
    c.heartbeat(1)                             # 1 has seen the leadership move, 2 not yet
    assert not c.heartbeat(0, want_shut_down=True).should_shut_down
    c.heartbeat(2)
    reply = c.heartbeat(0, want_shut_down=True)
    assert (reply.is_fenced, reply.in_controlled_shutdown, reply.should_shut_down) == \
        (True, False, True)
    assert c.image.brokers[0].fenced
    p = c.partition("foo")
    assert (p.leader, p.isr) == (1, [1, 2])


def test_unregistering_a_broker_moves_its_leaderships():
    c = cluster(1, 2)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    c.apply(c.replication.unregister_broker(1))
    assert 1 not in c.image.brokers
    p = c.partition("foo")
    assert (p.leader, p.isr) == (2, [2])
    assert error_of(c.replication.unregister_broker, 1).code == \
        ErrorCode.BROKER_ID_NOT_REGISTERED


# ----------------------------------------------------------------------------- ElectLeaders

def test_elect_preferred_leaders():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2, 3]), (1, [2, 3, 1])])
    expire(c, 1)
    c.heartbeat(1)                                     # back, but out of the ISRs
    assert c.partition("foo", 0).leader == 2
    records, results = c.replication.elect_leaders(ElectionType.PREFERRED, {"foo": [0, 1, 7],
                                                                            "nope": [0]})
    assert records == []
    assert [(x.topic, x.partition_id, x.error_code, x.error_message) for x in results] == [
        ("foo", 0, ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, None),
        ("foo", 1, ErrorCode.ELECTION_NOT_NEEDED, None),
        ("foo", 7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such partition as foo-7"),
        ("nope", 0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "No such topic as nope")]
    alter(c, 2, "foo", [2, 3, 1])                      # 1 caught up again
    records, results = c.replication.elect_leaders(ElectionType.PREFERRED)
    assert [(x.topic, x.partition_id, x.error_code) for x in results] == [
        ("foo", 0, ErrorCode.NONE)]                    # foo-1 needs none: left out
    c.apply(records)
    p = c.partition("foo", 0)
    assert (p.leader, p.has_preferred_leader, p.leader_epoch) == (1, True, 2)


def test_auto_leader_rebalance_elects_the_preferred_leaders():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2, 3]), (1, [1, 3, 2])])
    expire(c, 1)
    c.heartbeat(1)
    assert c.replication.maybe_balance_partition_leaders() == []     # 1 is not in the ISRs
    alter(c, 2, "foo", [2, 3, 1], partition=0)
    alter(c, 3, "foo", [3, 2, 1], partition=1)
    assert len(c.replication.maybe_balance_partition_leaders(max_elections=1)) == 1
    c.apply(c.replication.maybe_balance_partition_leaders())
    assert [c.partition("foo", i).leader for i in (0, 1)] == [1, 1]


def test_elect_unclean_leaders():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2, 3]), (1, [3, 2, 1])])
    alter(c, 1, "foo", [1])
    expire(c, 1)
    records, results = c.replication.elect_leaders(ElectionType.UNCLEAN, {"foo": [0, 1]})
    assert [(x.partition_id, x.error_code) for x in results] == [
        (0, ErrorCode.NONE), (1, ErrorCode.ELECTION_NOT_NEEDED)]
    c.apply(records)
    p = c.partition("foo", 0)
    assert (p.leader, p.isr, p.leader_recovery_state) == (2, [2], RECOVERING)
    # no live replica at all: nothing can be elected
    c.create_topic("bar", assignments=[(0, [3])])
    expire(c, 3)
    e = error_of(c.replication.elect_leader, "bar", 0, ElectionType.UNCLEAN)
    assert e.code == ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE


# ----------------------------------------------------------------------------- DeleteTopics

def test_delete_topic():
    c = cluster(1)
    created = c.create_topic("foo", 2, 1, configs={"retention.ms": "5"})
    c.apply(c.replication.delete_topic(created.topic_id))
    assert c.image.topic("foo") is None and c.image.topic_configs("foo") == {}
    e = error_of(c.replication.delete_topic, created.topic_id)
    assert e.code == ErrorCode.UNKNOWN_TOPIC_ID
    c.create_topic("foo", 1, 1)                         # the name is free again
    assert c.image.topic("foo").topic_id != created.topic_id


# ----------------------------------------------------------------------------- CreatePartitions

def test_create_partitions():
    c = cluster(1, 2, 3)
    created = c.create_topic("foo", 1, 2)
    records = c.replication.create_partitions("foo", 3)
    assert [rec.message.partition_id for rec in records] == [1, 2]
    c.apply(records)
    for i in (1, 2):
        p = c.partition("foo", i)
        assert len(p.replicas) == 2 and p.isr == p.replicas and p.leader == p.replicas[0]
        assert (p.leader_epoch, p.partition_epoch) == (0, 0)
    c.apply(c.replication.create_partitions("foo", 4, assignments=[[3, 1]]))
    p = c.partition("foo", 3)
    assert (p.replicas, p.isr, p.leader) == ([3, 1], [3, 1], 3)
    assert c.image.topic("foo").topic_id == created.topic_id


@pytest.mark.parametrize("name,count,assignments,code,message", [
    ("foo", 2, None, ErrorCode.INVALID_PARTITIONS, "Topic already has 2 partition(s)."),
    ("foo", 1, None, ErrorCode.INVALID_PARTITIONS,
     "The topic foo currently has 2 partition(s); 1 would not be an increase."),
    ("foo", 4, [[1, 2]], ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."),
    ("foo", 3, [[1]], ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "The manual partition assignment includes a partition with 1 replica(s), but this is not "
     "consistent with previous partitions, which have 2 replica(s)."),
    ("foo", 3, [[3, 4]], ErrorCode.INVALID_REPLICA_ASSIGNMENT,
     "All brokers specified in the manual partition assignment for partition 2 are fenced or "
     "in controlled shutdown."),
    ("nope", 3, None, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None),
])
def test_create_partitions_refusals(name, count, assignments, code, message):
    c = cluster(1, 2)
    c.register(3)
    c.register(4)
    c.create_topic("foo", assignments=[(0, [1, 2]), (1, [2, 1])])
    e = error_of(c.replication.create_partitions, name, count, assignments)
    assert (e.code, e.message) == (code, message)


# ----------------------------------------------------------------------------- reassignment

def test_a_reassignment_adds_the_new_replicas_then_drops_the_old_ones():
    c = cluster(1, 2, 3, 4)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    c.apply(c.replication.alter_partition_reassignment("foo", 0, [3, 4]))
    p = c.partition("foo")
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ([3, 4, 1, 2], [3, 4],
                                                                      [1, 2])
    assert (p.leader, p.isr, p.leader_epoch) == (1, [1, 2], 0)     # nobody left yet
    ongoing = c.replication.list_partition_reassignments()
    assert [(o.topic, o.partition_index, o.replicas, o.adding_replicas, o.removing_replicas)
            for o in ongoing] == [("foo", 0, [3, 4, 1, 2], [3, 4], [1, 2])]
    assert alter(c, 1, "foo", [1, 2, 3]).error_code == ErrorCode.NONE   # not complete yet
    result = alter(c, 1, "foo", [1, 2, 3, 4])
    assert result.error_code == ErrorCode.NEW_LEADER_ELECTED
    p = c.partition("foo")
    assert (p.replicas, p.isr, p.leader, p.is_reassigning) == ([3, 4], [3, 4], 3, False)
    assert (result.leader_id, result.isr) == (3, [3, 4])
    assert c.replication.list_partition_reassignments({"foo": [0]}) == []


def test_cancelling_a_reassignment_goes_back_to_the_old_replicas():
    c = cluster(1, 2, 3)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    e = error_of(c.replication.alter_partition_reassignment, "foo", 0, None)
    assert e.code == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    c.apply(c.replication.alter_partition_reassignment("foo", 0, [1, 3]))
    assert c.partition("foo").replicas == [1, 3, 2]
    c.apply(c.replication.alter_partition_reassignment("foo", 0, None))
    p = c.partition("foo")
    assert (p.replicas, p.isr, p.is_reassigning, p.leader) == ([1, 2], [1, 2], False, 1)
    e = error_of(c.replication.alter_partition_reassignment, "foo", 5, [1])
    assert (e.code, e.message) == (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                   "Unable to find partition foo:5.")
