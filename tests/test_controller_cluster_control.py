"""Broker registration, heartbeats and sessions (controller/cluster_control.py), driven through
the records a one-voter controller writes and replays, on a ManualClock."""

import uuid

import pytest

from controller_cluster import ControllerCluster
from trioka.clock import ManualClock
from trioka.controller.cluster_control import (BrokerControlState, BrokerHeartbeatManager,
                                               ClusterControlManager)
from trioka.metadata import records as r
from trioka.wire.errors import ErrorCode, KafkaError


def error_of(call, *args, **kw) -> KafkaError:
    with pytest.raises(KafkaError) as info:
        call(*args, **kw)
    return info.value


def test_a_new_broker_gets_the_offset_of_its_registration_as_epoch_and_starts_fenced():
    c = ControllerCluster()
    c.apply([r.build(r.NO_OP_RECORD)] * 5)
    epoch = c.register(1, rack="r1")
    assert epoch == 5
    assert c.log[5].record_type == r.REGISTER_BROKER_RECORD
    broker = c.image.brokers[1]
    assert (broker.epoch, broker.fenced, broker.rack) == (5, True, "r1")
    assert c.cluster.register_broker_record_offset(1) == 5
    assert c.register(2) == 6


def test_a_fenced_broker_is_unfenced_once_caught_up_with_its_registration():
    c = ControllerCluster()
    c.register(1)                                             # offset 0
    c.apply([r.build(r.NO_OP_RECORD)] * 3)
    reply = c.heartbeat(1, offset=-1)
    assert (reply.is_caught_up, reply.is_fenced, reply.should_shut_down) == (False, True, False)
    assert c.image.brokers[1].fenced and len(c.log) == 4      # nothing written
    reply = c.heartbeat(1, offset=0)                          # its registration: enough
    assert (reply.is_caught_up, reply.is_fenced) == (True, False)
    assert c.log[-1].record_type == r.BROKER_REGISTRATION_CHANGE_RECORD
    assert c.log[-1].message.fenced == -1
    assert not c.image.brokers[1].fenced
    assert c.cluster.is_active(1)


def test_a_broker_that_wants_to_stay_fenced_stays_fenced():
    c = ControllerCluster()
    c.register(1)
    reply = c.heartbeat(1, want_fence=True)
    assert reply.is_fenced and reply.is_caught_up
    assert c.image.brokers[1].fenced


def test_an_unfenced_broker_may_ask_to_be_fenced():
    c = ControllerCluster()
    c.start(1)
    reply = c.heartbeat(1, want_fence=True)
    assert reply.is_fenced and not reply.should_shut_down
    assert c.image.brokers[1].fenced


def test_the_same_incarnation_registering_again_keeps_its_epoch_and_state():
    c = ControllerCluster()
    epoch = c.start(1)
    records, again = c.cluster.register_broker(
        1, c.incarnations[1], [("PLAINTEXT", "h", 1, 0)], "r9", [], c.next_offset)
    c.apply(records)
    assert again == epoch
    broker = c.image.brokers[1]
    assert (broker.epoch, broker.fenced, broker.rack) == (epoch, False, "r9")


def test_another_incarnation_of_a_live_broker_is_refused_until_its_session_expires():
    c = ControllerCluster(session_timeout_ms=9000)
    epoch = c.start(1)
    other = uuid.UUID(int=99)
    e = error_of(c.cluster.register_broker, 1, other, [], None, [], c.next_offset)
    assert e.code == ErrorCode.DUPLICATE_BROKER_REGISTRATION
    assert e.message == "Another broker is registered with that broker id."
    c.clock.advance(9000)                  # exactly the timeout: the session still holds
    assert error_of(c.cluster.register_broker, 1, other, [], None, [],
                    c.next_offset).code == ErrorCode.DUPLICATE_BROKER_REGISTRATION
    c.clock.advance(1)
    new_epoch = c.register(1, incarnation_id=other)
    assert new_epoch > epoch
    broker = c.image.brokers[1]
    assert (broker.epoch, broker.incarnation_id, broker.fenced) == (new_epoch, other, True)


def test_a_fenced_broker_may_be_replaced_at_once():
    c = ControllerCluster()
    c.start(1)
    c.heartbeat(1, want_fence=True)
    c.register(1, incarnation_id=uuid.UUID(int=77))
    assert c.image.brokers[1].incarnation_id == uuid.UUID(int=77)


def test_a_registration_for_another_cluster_is_refused():
    image_cluster = ControllerCluster()
    cluster = ClusterControlManager(image_cluster.image, ManualClock(), cluster_id="abc")
    e = error_of(cluster.register_broker, 1, uuid.UUID(int=1), [], None, [], 0,
                 cluster_id="xyz")
    assert e.code == ErrorCode.INCONSISTENT_CLUSTER_ID
    assert e.message == "Expected cluster ID abc, but got cluster ID xyz"


def test_a_broker_must_support_every_finalized_feature_level():
    c = ControllerCluster()
    c.apply([r.feature_level_record("transaction.version", 2)])
    e = error_of(c.cluster.register_broker, 1, uuid.UUID(int=1), [], None,
                 [("transaction.version", 0, 1)], 0)
    assert e.code == ErrorCode.UNSUPPORTED_VERSION
    assert e.message == ("Unable to register because the broker does not support finalized "
                         "version 2 of transaction.version. The broker wants a version between "
                         "0 and 1, inclusive.")
    e = error_of(c.cluster.register_broker, 1, uuid.UUID(int=1), [], None, [], 0)
    assert e.code == ErrorCode.UNSUPPORTED_VERSION
    records, _ = c.cluster.register_broker(1, uuid.UUID(int=1), [], None,
                                           [("transaction.version", 0, 2)], 0)
    assert records[0].message.features[0].max_supported_version == 2


def test_heartbeats_need_a_registration_and_its_epoch():
    c = ControllerCluster()
    e = error_of(c.replication.process_broker_heartbeat, 1, 0, 0, False, False, 0)
    assert e.code == ErrorCode.STALE_BROKER_EPOCH
    assert e.message == "Receive a heartbeat from broker 1 before registration"
    epoch = c.register(1)
    e = error_of(c.replication.process_broker_heartbeat, 1, epoch + 1, 0, False, False, 1)
    assert e.code == ErrorCode.STALE_BROKER_EPOCH
    assert e.message == f"Expected broker epoch {epoch}, but got broker epoch {epoch + 1}"


def test_a_silent_broker_is_fenced_after_the_session_timeout_one_at_a_time():
    c = ControllerCluster(session_timeout_ms=9000)
    for broker_id in (1, 2, 3):
        c.start(broker_id)
    assert c.cluster.next_session_expiry() == pytest.approx(9.0)
    c.clock.advance(5000)
    c.heartbeat(3)
    assert c.cluster.next_session_expiry() == pytest.approx(9.0)
    c.clock.advance(4000)
    assert c.replication.maybe_fence_one_stale_broker() == []     # 9000 ms: not yet
    c.clock.advance(1)
    first = c.apply(c.replication.maybe_fence_one_stale_broker())
    second = c.apply(c.replication.maybe_fence_one_stale_broker())
    assert c.replication.maybe_fence_one_stale_broker() == []     # 3 spoke 4001 ms ago
    assert [rec.message.broker_id for rec in first + second] == [1, 2]
    assert {b: c.image.brokers[b].fenced for b in (1, 2, 3)} == {1: True, 2: True, 3: False}
    assert c.cluster.next_session_expiry() == pytest.approx(14.0)
    # a fenced broker heartbeating again is unfenced again
    reply = c.heartbeat(1)
    assert not reply.is_fenced and not c.image.brokers[1].fenced


def test_a_fenced_broker_asking_to_shut_down_may_at_once():
    c = ControllerCluster()
    c.register(1)
    reply = c.heartbeat(1, want_shut_down=True)
    assert (reply.is_fenced, reply.should_shut_down) == (True, True)


def test_an_unfenced_broker_leading_nothing_shuts_down_at_once():
    c = ControllerCluster()
    c.start(1)
    reply = c.heartbeat(1, want_shut_down=True)
    assert (reply.is_fenced, reply.in_controlled_shutdown, reply.should_shut_down) == \
        (True, False, True)
    assert c.image.brokers[1].fenced


def test_brokers_in_controlled_shutdown_are_not_usable_for_placement():
    c = ControllerCluster()
    for broker_id in (1, 2):
        c.start(broker_id)
    c.register(3)                                             # fenced: usable all the same
    c.create_topic("t", assignments=[(0, [2])])
    c.heartbeat(2, want_shut_down=True)                       # leads t-0
    assert c.image.brokers[2].in_controlled_shutdown
    assert sorted((b.id, b.fenced) for b in c.cluster.usable_brokers()) == [(1, False),
                                                                            (3, True)]


def test_a_controller_taking_over_gives_every_registered_broker_a_session():
    c = ControllerCluster()
    c.start(1)
    c.register(2)
    clock = ManualClock()
    cluster = ClusterControlManager(c.image, clock, session_timeout_ms=1000)
    assert cluster.heartbeats.current_state(1) is BrokerControlState.UNFENCED
    assert cluster.heartbeats.current_state(2) is BrokerControlState.FENCED
    clock.advance(1001)
    assert cluster.heartbeats.find_one_stale_broker() == 1


def test_the_heartbeat_state_table():
    clock = ManualClock()
    heartbeats = BrokerHeartbeatManager(clock, 9000)
    heartbeats.register(1, fenced=True)

    def next_state(**kw):
        args = dict(want_fence=False, want_shut_down=False, current_metadata_offset=10,
                    register_broker_record_offset=5, has_leaderships=lambda: False)
        args.update(kw)
        return heartbeats.next_state(1, **args)[1]

    S = BrokerControlState
    assert next_state() is S.UNFENCED
    assert next_state(current_metadata_offset=4) is S.FENCED
    assert next_state(want_fence=True) is S.FENCED
    assert next_state(want_shut_down=True) is S.SHUTDOWN_NOW
    heartbeats.touch(1, False, 10)
    assert next_state() is S.UNFENCED
    assert next_state(want_fence=True) is S.FENCED
    assert next_state(want_fence=True, want_shut_down=True) is S.SHUTDOWN_NOW
    assert next_state(want_shut_down=True) is S.SHUTDOWN_NOW
    assert next_state(want_shut_down=True, has_leaderships=lambda: True) is \
        S.CONTROLLED_SHUTDOWN
    heartbeats.maybe_update_controlled_shutdown_offset(1, 12)
    assert heartbeats.current_state(1) is S.CONTROLLED_SHUTDOWN
    assert heartbeats.lowest_active_offset() == float("inf")   # shutting down: not active
    assert next_state(has_leaderships=lambda: True) is S.CONTROLLED_SHUTDOWN
    assert next_state() is S.SHUTDOWN_NOW                     # no other active broker
    heartbeats.register(2, fenced=False)
    heartbeats.touch(2, False, 11)
    assert next_state() is S.CONTROLLED_SHUTDOWN              # 2 has not seen offset 12
    heartbeats.touch(2, False, 12)
    assert next_state() is S.SHUTDOWN_NOW
