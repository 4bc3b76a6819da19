"""BrokerLifecycleManager against a fake controller: the controller's own state machines
(ClusterControlManager, ReplicationControlManager) behind an object with NodeChannel's
`request`, every request and answer going through the wire codec. No sockets; trio's
autojump clock drives heartbeats, backoffs and session expiry."""

import random
import uuid

import pytest
import trio

from trioka.clock import Clock
from trioka.controller.cluster_control import ClusterControlManager
from trioka.controller.placement import StripedReplicaPlacer
from trioka.controller.replication_control import ReplicationControlManager
from trioka.metadata.image import MetadataImage
from trioka.metadata.records import MetadataRecord
from trioka.node.channel import NodeUnreachable
from trioka.node.lifecycle import (TRANSITIONS, BrokerLifecycleManager, BrokerState,
                                   security_protocol_id)
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError

PLAINTEXT = 0
FEATURES = {"metadata.version": (1, 16)}


def through_the_wire(api_key, message, request: bool):
    """The message as the other side decodes it (at the newest version)."""
    from trioka.wire import schema
    api = schema.api(api_key)
    kind = api.request if request else api.response
    version = api.valid[1]
    decoded, _ = kind.decode(memoryview(kind.encode(message, version)), 0, version)
    return decoded


class FakeController:
    """A one-voter controller without Raft: records go straight into a list (the log)."""

    def __init__(self, session_timeout_ms=9000):
        self.clock = Clock()
        self.image = MetadataImage()
        self.log: list[MetadataRecord] = []
        self.cluster = ClusterControlManager(self.image, self.clock,
                                             session_timeout_ms=session_timeout_ms)
        self.replication = ReplicationControlManager(
            self.image, self.cluster, placer=StripedReplicaPlacer(random.Random(0)))
        self.down = False
        self.requests: list = []

    @property
    def end_offset(self) -> int:
        return len(self.log) - 1

    def apply(self, records):
        for record in records:
            offset = len(self.log)
            self.log.append(record)
            self.image.replay(record.record_type, record.message, offset)
            self.cluster.replay(record.record_type, record.message, offset)

    # NodeChannel's interface
    async def request(self, api_key, message, *, version=None, timeout_ms=None, quiet_ms=0):
        await trio.sleep(0)
        if self.down:
            raise NodeUnreachable(f"{api_key} to controller: connection refused")
        message = through_the_wire(api_key, message, request=True)
        self.requests.append((api_key, message))
        Response = protocol.response_class(api_key)
        try:
            if api_key == ApiKey.BROKER_REGISTRATION:
                records, epoch = self.cluster.register_broker(
                    message.broker_id, message.incarnation_id,
                    [(l.name, l.host, l.port, l.security_protocol) for l in message.listeners],
                    message.rack,
                    [(f.name, f.min_supported_version, f.max_supported_version)
                     for f in message.features],
                    len(self.log), cluster_id=message.cluster_id or None)
                self.apply(records)
                response = Response(error_code=0, broker_epoch=epoch)
            elif api_key == ApiKey.BROKER_HEARTBEAT:
                records, reply = self.replication.process_broker_heartbeat(
                    message.broker_id, message.broker_epoch, message.current_metadata_offset,
                    message.want_fence, message.want_shut_down, len(self.log))
                self.apply(records)
                response = Response(error_code=0, is_caught_up=reply.is_caught_up,
                                    is_fenced=reply.is_fenced,
                                    should_shut_down=reply.should_shut_down)
            else:
                raise AssertionError(f"unexpected api {api_key}")
        except KafkaError as e:
            response = Response(error_code=int(e.code))
        return through_the_wire(api_key, response, request=False)

    def heartbeats_of(self, broker_id):
        return [m for k, m in self.requests
                if k == ApiKey.BROKER_HEARTBEAT and m.broker_id == broker_id]

    async def keep_alive(self, broker_id, epoch, interval=1.0):
        """Another broker heartbeating directly, caught up."""
        while True:
            records, _ = self.replication.process_broker_heartbeat(
                broker_id, epoch, self.end_offset, False, False, len(self.log))
            self.apply(records)
            await trio.sleep(interval)

    def fence_stale(self):
        self.apply(self.replication.maybe_fence_one_stale_broker())


def manager(controller, node_id=1, metadata_offset=None, **kw):
    return BrokerLifecycleManager(
        node_id=node_id, cluster_id=None, rack=None,
        listeners=[("PLAINTEXT", "127.0.0.1", 9092 + node_id, PLAINTEXT)], channel=controller,
        clock=Clock(), heartbeat_interval_ms=2000, session_timeout_ms=9000,
        metadata_offset=metadata_offset or (lambda: controller.end_offset),
        features=FEATURES, **kw)


async def wait_for(predicate, timeout=60):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_registers_then_is_unfenced_once_caught_up(autojump_clock):
    controller = FakeController()
    loaded = {"offset": -1}          # the broker's metadata loader: nothing replayed yet
    lifecycle = manager(controller, metadata_offset=lambda: loaded["offset"])
    assert lifecycle.broker_epoch == -1 and lifecycle.state is BrokerState.STARTING
    async with trio.open_nursery() as nursery:
        await nursery.start(lifecycle.run)
        assert lifecycle.broker_epoch == 0            # the offset of its RegisterBrokerRecord
        registration = controller.requests[0][1]
        assert registration.incarnation_id == lifecycle.incarnation_id
        assert [(l.name, l.port) for l in registration.listeners] == [("PLAINTEXT", 9093)]
        assert [(f.name, f.max_supported_version) for f in registration.features] == \
            [("metadata.version", 16)]
        await trio.sleep(1)
        # Not caught up: fenced, heartbeating quickly with want_fence.
        assert lifecycle.fenced and lifecycle.state is BrokerState.STARTING
        beats = controller.heartbeats_of(1)
        assert len(beats) > 10 and all(b.want_fence for b in beats)
        assert all(b.current_metadata_offset == -1 for b in beats)
        loaded["offset"] = controller.end_offset          # the loader caught up
        with trio.fail_after(1):
            await lifecycle.unfenced.wait()
        assert lifecycle.state is BrokerState.RUNNING and lifecycle.caught_up.is_set()
        assert not controller.image.brokers[1].fenced
        # Then every heartbeat interval.
        before = len(controller.heartbeats_of(1))
        await trio.sleep(10.001)
        assert len(controller.heartbeats_of(1)) - before == 5
        assert not controller.heartbeats_of(1)[-1].want_fence
        nursery.cancel_scope.cancel()


async def test_each_instance_is_a_new_incarnation():
    controller = FakeController()
    assert manager(controller).incarnation_id != manager(controller).incarnation_id


async def test_registration_retried_while_the_controller_is_unreachable(autojump_clock):
    controller = FakeController()
    controller.down = True
    lifecycle = manager(controller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lifecycle.run)
        await trio.sleep(5)
        assert lifecycle.broker_epoch == -1
        assert "registration failed" in lifecycle.last_error
        controller.down = False
        start = trio.current_time()
        with trio.fail_after(10):
            await lifecycle.unfenced.wait()
        # Backoff doubles from 100 ms up to half the session timeout (4.5 s).
        assert trio.current_time() - start <= 4.6
        assert lifecycle.last_error is None
        nursery.cancel_scope.cancel()


async def test_duplicate_registration_retried_until_the_old_session_expires(autojump_clock):
    controller = FakeController()
    old = manager(controller)
    async with trio.open_nursery() as nursery:
        await nursery.start(old.run)
        await old.unfenced.wait()
        nursery.cancel_scope.cancel()            # the old process dies without a word
    died = trio.current_time()
    new = manager(controller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(new.run)
        await trio.sleep(1)
        assert new.broker_epoch == -1
        assert "DUPLICATE_BROKER_REGISTRATION" in new.last_error
        with trio.fail_after(30):
            await new.unfenced.wait()
        assert trio.current_time() - died >= 9
        assert new.broker_epoch > old.broker_epoch
        assert controller.image.brokers[1].incarnation_id == new.incarnation_id
        nursery.cancel_scope.cancel()


async def test_fenced_after_silence_then_unfenced_again(autojump_clock):
    controller = FakeController()
    lifecycle = manager(controller)
    async with trio.open_nursery() as nursery:
        await nursery.start(lifecycle.run)
        await lifecycle.unfenced.wait()
        first = lifecycle.unfenced
        controller.down = True                         # a network partition
        await trio.sleep(10)
        controller.fence_stale()
        assert controller.image.brokers[1].fenced
        assert "heartbeat failed" in lifecycle.last_error
        controller.down = False
        await wait_for(lambda: not controller.image.brokers[1].fenced, timeout=10)
        assert lifecycle.state is BrokerState.RUNNING and not lifecycle.fenced
        assert first.is_set()
        nursery.cancel_scope.cancel()


async def test_stale_broker_epoch_registers_again(autojump_clock):
    controller = FakeController()
    lifecycle = manager(controller)
    async with trio.open_nursery() as nursery:
        await nursery.start(lifecycle.run)
        await lifecycle.unfenced.wait()
        # The controller loses its metadata log and starts afresh.
        fresh = FakeController()
        lifecycle.channel = fresh
        await wait_for(lambda: any(k == ApiKey.BROKER_REGISTRATION for k, _ in fresh.requests))
        await wait_for(lambda: 1 in fresh.image.brokers and not fresh.image.brokers[1].fenced)
        assert lifecycle.state is BrokerState.RUNNING
        nursery.cancel_scope.cancel()


async def test_controlled_shutdown_moves_leadership_first(autojump_clock):
    controller = FakeController()
    one = manager(controller, node_id=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        await one.unfenced.wait()
        records, epoch2 = controller.cluster.register_broker(
            2, uuid.uuid4(), [("PLAINTEXT", "127.0.0.1", 9094, PLAINTEXT)], None, [],
            len(controller.log))
        controller.apply(records)
        nursery.start_soon(controller.keep_alive, 2, epoch2)
        await wait_for(lambda: not controller.image.brokers[2].fenced)
        records, _ = controller.replication.create_topic(
            "t", assignments=[(0, [1, 2])])
        controller.apply(records)
        assert controller.image.topic("t").partitions[0].leader == 1
        assert await one.controlled_shutdown(timeout_s=30) is True
        assert one.state is BrokerState.SHUTTING_DOWN and one.shut_down.is_set()
        partition = controller.image.topic("t").partitions[0]
        assert partition.leader == 2 and partition.isr == [2]
        assert controller.heartbeats_of(1)[-1].want_shut_down
        # Heartbeats stop.
        sent = one.heartbeats_sent
        await trio.sleep(10)
        assert one.heartbeats_sent == sent
        nursery.cancel_scope.cancel()


async def test_controlled_shutdown_times_out_when_the_controller_is_gone(autojump_clock):
    controller = FakeController()
    lifecycle = manager(controller)
    async with trio.open_nursery() as nursery:
        await nursery.start(lifecycle.run)
        await lifecycle.unfenced.wait()
        controller.down = True
        start = trio.current_time()
        assert await lifecycle.controlled_shutdown(timeout_s=5) is False
        assert trio.current_time() - start == pytest.approx(5, abs=0.01)
        assert lifecycle.state is BrokerState.SHUTTING_DOWN
        nursery.cancel_scope.cancel()


async def test_controlled_shutdown_before_running_shuts_down_at_once():
    lifecycle = manager(FakeController())
    assert await lifecycle.controlled_shutdown(timeout_s=5) is False
    assert lifecycle.state is BrokerState.SHUTTING_DOWN


def test_transitions_table_is_closed():
    for state, targets in TRANSITIONS.items():
        assert targets <= set(BrokerState)
    assert TRANSITIONS[BrokerState.SHUTTING_DOWN] == frozenset()
    assert BrokerState.RUNNING not in TRANSITIONS[BrokerState.STARTING]


async def test_shutdown_while_registering_ends_run(autojump_clock):
    controller = FakeController()
    controller.down = True
    lifecycle = manager(controller)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lifecycle.run)
        await trio.sleep(3)
        assert await lifecycle.controlled_shutdown(timeout_s=5) is False
        with trio.fail_after(0.5):
            await lifecycle.shut_down.wait()
    # run() returned by itself: the nursery closed without a cancel.
    assert lifecycle.broker_epoch == -1 and lifecycle.state is BrokerState.SHUTTING_DOWN


async def test_string_security_protocols_are_sent_as_kafka_ids(autojump_clock):
    controller = FakeController()
    lifecycle = BrokerLifecycleManager(
        node_id=3, cluster_id="abc", rack="r1",
        listeners=[("INTERNAL", "h", 9000, "PLAINTEXT"), ("EXTERNAL", "h", 9001, "SASL_SSL")],
        channel=controller, clock=Clock(), heartbeat_interval_ms=2000,
        session_timeout_ms=9000, metadata_offset=lambda: controller.end_offset,
        features=FEATURES)
    request = lifecycle.registration_request()
    assert [(l.name, l.security_protocol) for l in request.listeners] == \
        [("INTERNAL", 0), ("EXTERNAL", 3)]
    assert request.cluster_id == "abc" and request.rack == "r1"
    with pytest.raises(ValueError):
        security_protocol_id("NOPE")
