"""KIP-848 online migration (coordinator/migration.py): a classic group with members becomes a
consumer group when a ConsumerGroupHeartbeat joins it, its classic members are served by the
consumer group, and it becomes a classic group again when the last consumer-protocol member
goes. The coordinator is driven directly with a ManualClock the test moves, and the APIs through
the wire codec (each request encoded as a client sends it); no sockets."""

import itertools

import pytest

from trioka.apis import APIS
from trioka.apis.context import Connection, RequestContext
from trioka.broker import BrokerState
from trioka.clock import ManualClock
from trioka.config import Config, ConfigError, Listener
from trioka.coordinator.classic import Waiter
from trioka.coordinator.group_coordinator import GroupCoordinator
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.migration import MigrationPolicy, decode_assignment
from trioka.coordinator.offsets import OffsetAndMetadata
from trioka.log.manager import LogManager
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

START = 1000.0
SESSION_MS = 10_000


def subscription(topics, owned=(), version=1) -> bytes:
    cls = schema.record("ConsumerProtocolSubscription").cls
    return schema.encode_record("ConsumerProtocolSubscription", cls(
        topics=list(topics), user_data=None,
        owned_partitions=[cls.TopicPartition(topic=t, partitions=list(ps)) for t, ps in owned]),
        version)


def assignment(**partitions) -> bytes:
    cls = schema.record("ConsumerProtocolAssignment").cls
    return schema.encode_record("ConsumerProtocolAssignment", cls(
        assigned_partitions=[cls.TopicPartition(topic=t, partitions=ps)
                             for t, ps in partitions.items()], user_data=None), 1)


class Coordinator:
    def __init__(self, logs=None, clock=None, **settings):
        self.clock = clock or ManualClock(monotonic=START)
        if logs is None:
            logs = LogManager(None, clock=self.clock)
            logs.open()
        self.logs, self.settings = logs, settings
        self.gc = GroupCoordinator(Config(**settings), logs, clock=self.clock)
        self.gc.open()

    def reopen(self):
        return Coordinator(self.logs, self.clock, **self.settings)

    @property
    def now(self):
        return self.clock.monotonic()

    def advance(self, seconds):
        self.clock.advance(round(seconds * 1000))
        self.gc.expire(self.now)

    def join(self, member_id, topics=("orders",), owned=(), protocol_type="consumer"):
        out = self.gc.classic.join(self.now, "g", member_id, None, "client", "/127.0.0.1",
                                   SESSION_MS, 30_000, protocol_type,
                                   [("range", subscription(topics, owned))], False)
        return out

    def sync(self, member_id, generation, assignments=None):
        return self.gc.classic.sync(self.now, "g", generation, member_id, None, "consumer",
                                    "range", assignments or {})

    def heartbeat(self, member_id, generation):
        return self.gc.classic.heartbeat_now(self.now, "g", generation, member_id)

    def hb(self, member_id, epoch, owned=None, topics=("orders",)):
        return self.gc.consumer.consumer_group_heartbeat(
            "g", member_id, epoch, rebalance_timeout_ms=30_000 if epoch == 0 else -1,
            subscribed_topic_names=list(topics) if epoch == 0 else None,
            topic_partitions=list((owned or {}).items()) if owned is not None or epoch == 0
            else None, client_id="new", client_host="/127.0.0.1")


def stable_classic_group(c: Coordinator) -> str:
    """A Stable classic group "g" of two members over orders (4 partitions): a has 0-1, b 2-3.
    Returns a's member id (the leader)."""
    first = c.join("")
    a = first.member_id
    waiter = c.join("")
    assert isinstance(waiter, Waiter)
    again = c.join(a)
    assert again.error == 0 and waiter.result.error == 0
    b = waiter.result.member_id
    gen = again.generation_id
    leader = c.sync(a, gen, {a: assignment(orders=[0, 1]), b: assignment(orders=[2, 3])})
    assert leader.error == 0
    assert c.sync(b, gen).assignment == assignment(orders=[2, 3])
    group = c.gc.groups["g"]
    assert group.is_in(GroupState.STABLE)
    c.gc.offsets.store_offsets(group, {("orders", 0): OffsetAndMetadata(
        42, commit_timestamp_ms=1)})
    return a


def partitions(raw: bytes) -> list[int]:
    return sorted(p for _, ps in decode_assignment(raw) for p in ps)


def test_policy_table_and_config():
    assert MigrationPolicy.parse("Bidirectional") is MigrationPolicy.BIDIRECTIONAL
    assert Config().group_consumer_migration_policy == "bidirectional"
    with pytest.raises(ConfigError, match="group.consumer.migration.policy: String must be "
                                          "one of \\(case insensitive\\)"):
        Config({"group.consumer.migration.policy": "sideways"})


def test_upgrade_then_downgrade_keeps_partitions_and_offsets():
    c = Coordinator()
    c.logs.create_topic("orders", 4, {})
    tid = c.logs.topic("orders").topic_id
    a = stable_classic_group(c)
    generation = c.gc.groups["g"].generation_id
    b = next(m for m in c.gc.groups["g"].members if m != a)

    # A consumer-protocol member joins: the classic group becomes a consumer group whose classic
    # members keep their partitions, so the newcomer gets nothing yet.
    r = c.hb("new", 0)
    assert "g" not in c.gc.groups and "g" in c.gc.consumer_groups
    group = c.gc.consumer_groups["g"]
    assert group.group_epoch == generation + 1
    assert group.members[a].assigned == {tid: frozenset({0, 1})}
    assert group.members[a].classic.session_timeout_ms == SESSION_MS
    assert r.assignment == {}
    assert group.offsets[("orders", 0)].offset == 42

    # The classic members learn of the rebalance by their heartbeat, rejoin (eager: owning
    # nothing) and sync their share of the new target.
    assert c.heartbeat(a, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    got = {}
    for member in (a, b):
        joined = c.join(member)
        assert (joined.error, joined.protocol_name, joined.leader) == (0, "range", "")
        assert joined.generation_id == group.group_epoch
        synced = c.sync(member, joined.generation_id)
        assert synced.error == 0
        got[member] = partitions(synced.assignment)
        assert c.heartbeat(member, joined.generation_id) == ErrorCode.NONE
    r = c.hb("new", r.member_epoch, owned={})
    got["new"] = sorted(r.assignment.get(tid, ()))
    everything = sorted(p for ps in got.values() for p in ps)
    assert everything == [0, 1, 2, 3] and all(got.values())

    # Restart: the converted group is read back from Kafka's consumer group records.
    again = c.reopen()
    loaded = again.gc.consumer_groups["g"]
    assert "g" not in again.gc.groups
    assert loaded.members[a].classic == group.members[a].classic
    assert loaded.members[a].assigned == group.members[a].assigned
    assert loaded.members["new"].classic is None and not loaded.members["new"].uses_classic_protocol

    # The consumer-protocol member leaves: the group is a classic group again, rebalancing.
    c.gc.consumer.consumer_group_heartbeat("g", "new", -1)
    assert "g" not in c.gc.consumer_groups
    classic = c.gc.groups["g"]
    assert classic.is_in(GroupState.PREPARING_REBALANCE)
    assert set(classic.members) == {a, b} and classic.offsets[("orders", 0)].offset == 42
    gen = classic.generation_id
    assert c.heartbeat(a, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    w = c.join(b)
    done = c.join(a)
    leader = done if done.leader == done.member_id else w.result
    assert leader.error == 0 and len(leader.members) == 2
    assert "g" in c.reopen().gc.groups


def test_downgrade_when_the_consumer_member_times_out():
    c = Coordinator(**{"group.consumer.session.timeout.ms": 45_000})
    c.logs.create_topic("orders", 2, {})
    a = stable_classic_group(c)
    b = next(m for m in c.gc.groups["g"].members if m != a)
    c.hb("new", 0)
    # The classic members rejoin and sync as told, then keep heartbeating; the new member
    # stops after its first heartbeat.
    generations = {}
    for member in (a, b):
        joined = c.join(member)
        assert c.sync(member, joined.generation_id).error == 0
        generations[member] = joined.generation_id
    for _ in range(5):
        c.advance(8)
        assert "g" in c.gc.consumer_groups
        for member, gen in generations.items():
            assert c.heartbeat(member, gen) == ErrorCode.NONE
    c.advance(8)    # 48 s: the new member's session ran out
    assert "g" not in c.gc.consumer_groups
    classic = c.gc.groups["g"]
    assert classic.is_in(GroupState.PREPARING_REBALANCE) and set(classic.members) == {a, b}


@pytest.mark.parametrize("settings, protocol_type", [
    ({"group.consumer.migration.policy": "downgrade"}, "consumer"),
    ({"group.consumer.migration.policy": "disabled"}, "consumer"),
    ({"group.consumer.max.size": 1}, "consumer"),
    ({}, "connect"),
])
def test_upgrade_refused(settings, protocol_type):
    c = Coordinator(**settings)
    c.logs.create_topic("orders", 1, {})
    first = c.join("", protocol_type=protocol_type)
    c.join("", protocol_type=protocol_type)
    c.join(first.member_id, protocol_type=protocol_type)
    with pytest.raises(KafkaError) as e:
        c.hb("new", 0)
    assert e.value.code == ErrorCode.GROUP_ID_NOT_FOUND
    assert "g" in c.gc.groups and "g" not in c.gc.consumer_groups


def test_no_downgrade_under_upgrade_policy():
    c = Coordinator(**{"group.consumer.migration.policy": "upgrade"})
    c.logs.create_topic("orders", 2, {})
    a = stable_classic_group(c)
    c.hb("new", 0)
    c.gc.consumer.consumer_group_heartbeat("g", "new", -1)
    group = c.gc.consumer_groups["g"]
    assert "new" not in group.members and a in group.members
    assert c.heartbeat(a, group.members[a].member_epoch) == ErrorCode.REBALANCE_IN_PROGRESS


def test_classic_member_errors_in_a_consumer_group():
    c = Coordinator()
    c.logs.create_topic("orders", 2, {})
    a = stable_classic_group(c)
    c.hb("new", 0)
    epoch = c.gc.consumer_groups["g"].members[a].member_epoch
    assert c.heartbeat(a, epoch + 5) == ErrorCode.ILLEGAL_GENERATION
    assert c.heartbeat("nobody", epoch) == ErrorCode.UNKNOWN_MEMBER_ID
    # A consumer-protocol member is not a classic member.
    assert c.heartbeat("new", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert c.sync(a, epoch).error == ErrorCode.REBALANCE_IN_PROGRESS
    # LeaveGroup of a classic member moves the group to a new epoch without it.
    before = c.gc.consumer_groups["g"].group_epoch
    assert c.gc.classic.leave_group("g", [(a, None), ("nobody", None)]) == (
        0, [ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID])
    assert a not in c.gc.consumer_groups["g"].members
    assert c.gc.consumer_groups["g"].group_epoch == before + 1


def test_classic_members_commit_offsets_with_their_generation():
    c = Coordinator()
    c.logs.create_topic("orders", 2, {})
    a = stable_classic_group(c)
    c.hb("new", 0)
    epoch = c.gc.consumer_groups["g"].members[a].member_epoch
    # A classic member commits with an old OffsetCommit version and its member epoch as
    # generation; another generation is ILLEGAL_GENERATION (not STALE_MEMBER_EPOCH).
    assert c.gc.offsets.validate_offset_commit("g", epoch, a, None, 2) is \
        c.gc.consumer_groups["g"]
    with pytest.raises(KafkaError) as e:
        c.gc.offsets.validate_offset_commit("g", epoch - 1, a, None, 2)
    assert e.value.code == ErrorCode.ILLEGAL_GENERATION
    # A consumer-protocol member still needs v9.
    with pytest.raises(KafkaError) as e:
        c.gc.offsets.validate_offset_commit("g", 1, "new", None, 8)
    assert e.value.code == ErrorCode.UNSUPPORTED_VERSION


def test_classic_member_that_does_not_rejoin_or_sync_is_fenced():
    c = Coordinator(**{"group.consumer.session.timeout.ms": 600_000})
    c.logs.create_topic("orders", 2, {})
    a = stable_classic_group(c)
    b = next(m for m in c.gc.groups["g"].members if m != a)
    c.hb("new", 0)
    group = c.gc.consumer_groups["g"]
    gen = group.members[a].member_epoch
    # Both are told to rejoin; b does, a keeps heartbeating without rejoining.
    assert c.heartbeat(a, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    assert c.heartbeat(b, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    joined = c.join(b)
    assert joined.error == 0
    for _ in range(5):
        c.advance(5)    # session timeout 10 s: the heartbeats keep both sessions alive
        c.heartbeat(a, gen)
        c.heartbeat(b, joined.generation_id)
    # a's rebalance timeout (30 s) ran out without a JoinGroup; b sent no SyncGroup either.
    assert a in group.members and b in group.members
    c.advance(6)
    assert a not in group.members and b not in group.members
    assert list(group.members) == ["new"]


# --- the APIs through the wire codec ----------------------------------------------------------

class Wire:
    def __init__(self, broker):
        self.broker = broker
        self.correlation = itertools.count(1)

    async def call(self, key: int, version: int, client_id: str = "wire-client", **fields):
        request = protocol.request_class(key)(**fields)
        correlation = next(self.correlation)
        frame = protocol.encode_request(key, version, correlation, client_id, request)[4:]
        header, pos = protocol.parse_request_header(frame)
        decoded = protocol.decode_request_body(header, frame, pos)
        ctx = RequestContext(header, Connection("10.1.2.3:40000", None))
        response = await APIS[key].handle(self.broker, decoded, ctx)
        data = b"".join(protocol.encode_response(key, version, correlation, response))
        got, message = protocol.decode_response(key, version, data[4:])
        assert got == correlation
        return message


@pytest.fixture
async def wire():
    broker = BrokerState(Config({"memory": True, "listeners": "PLAINTEXT://127.0.0.1:0"}))
    broker.open()
    broker.set_listeners([Listener("PLAINTEXT", "127.0.0.1", 9999)])
    broker.create_topic("orders", 2)
    yield Wire(broker)
    broker.close()


async def test_upgrade_and_downgrade_over_the_wire(wire):
    join_cls = protocol.request_class(ApiKey.JOIN_GROUP)
    protocols = [join_cls.JoinGroupRequestProtocol(name="range",
                                                   metadata=subscription(["orders"]))]
    join = dict(group_id="wg", session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
                group_instance_id=None, protocol_type="consumer", protocols=protocols)
    r = await wire.call(ApiKey.JOIN_GROUP, 9, member_id="", **join)
    assert r.error_code == ErrorCode.MEMBER_ID_REQUIRED
    r = await wire.call(ApiKey.JOIN_GROUP, 9, member_id=r.member_id, **join)
    old, generation = r.member_id, r.generation_id
    sync_cls = protocol.request_class(ApiKey.SYNC_GROUP)
    s = await wire.call(ApiKey.SYNC_GROUP, 5, group_id="wg", generation_id=generation,
                        member_id=old, group_instance_id=None, protocol_type="consumer",
                        protocol_name="range", assignments=[sync_cls.SyncGroupRequestAssignment(
                            member_id=old, assignment=assignment(orders=[0, 1]))])
    assert s.error_code == 0

    # The consumer-protocol member joins: the group is a consumer group with a classic member.
    hb = await wire.call(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, group_id="wg", member_id="new",
                         member_epoch=0, rebalance_timeout_ms=30_000,
                         subscribed_topic_names=["orders"], topic_partitions=[])
    assert hb.error_code == 0 and hb.member_epoch == generation + 1
    listed = await wire.call(ApiKey.LIST_GROUPS, 5, states_filter=[], types_filter=[])
    assert [(g.group_id, g.group_type) for g in listed.groups] == [("wg", "consumer")]
    d = await wire.call(ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=["wg"],
                        include_authorized_operations=False)
    assert sorted((m.member_id, m.member_type) for m in d.groups[0].members) == \
        sorted([(old, 0), ("new", 1)])
    described = await wire.call(ApiKey.DESCRIBE_GROUPS, 6, groups=["wg"])
    assert described.groups[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND

    # The classic member is told to rejoin, rejoins and syncs its share.
    h = await wire.call(ApiKey.HEARTBEAT, 4, group_id="wg", generation_id=generation,
                        member_id=old, group_instance_id=None)
    assert h.error_code == ErrorCode.REBALANCE_IN_PROGRESS
    r = await wire.call(ApiKey.JOIN_GROUP, 9, member_id=old, **join)
    assert (r.error_code, r.generation_id, r.protocol_name, r.leader, r.members) == \
        (0, generation + 1, "range", "", [])
    s = await wire.call(ApiKey.SYNC_GROUP, 5, group_id="wg", generation_id=r.generation_id,
                        member_id=old, group_instance_id=None, protocol_type="consumer",
                        protocol_name="range", assignments=[])
    assert s.error_code == 0 and len(partitions(s.assignment)) == 1

    # The consumer-protocol member leaves: a classic group again, rebalancing.
    hb = await wire.call(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, group_id="wg", member_id="new",
                         member_epoch=-1)
    assert hb.error_code == 0
    described = await wire.call(ApiKey.DESCRIBE_GROUPS, 5, groups=["wg"])
    g = described.groups[0]
    assert (g.error_code, g.group_state, g.protocol_type, [m.member_id for m in g.members]) == \
        (0, "PreparingRebalance", "consumer", [old])
    h = await wire.call(ApiKey.HEARTBEAT, 4, group_id="wg", generation_id=r.generation_id,
                        member_id=old, group_instance_id=None)
    assert h.error_code == ErrorCode.REBALANCE_IN_PROGRESS


def test_cooperative_classic_member_revokes_before_the_newcomer_gets_partitions():
    c = Coordinator()
    c.logs.create_topic("orders", 4, {})
    tid = c.logs.topic("orders").topic_id
    first = stable_classic_group(c)
    second = next(m for m in c.gc.groups["g"].members if m != first)
    owned = {first: [0, 1], second: [2, 3]}
    generation = c.gc.groups["g"].generation_id
    r = c.hb("new", 0)
    group = c.gc.consumer_groups["g"]
    # The newcomer's partitions come from one of the two (which one depends on the member ids,
    # drawn at random): `a` is the one whose target lost partitions it owns, `b` the other.
    def lost(mid):
        target = set(group.target.get(mid, {}).get(tid, ()))
        return not set(owned[mid]) <= target
    a, b = (first, second) if lost(first) else (second, first)
    assert lost(a)
    # a rejoins still owning its partitions (cooperative): it keeps its epoch until it gave up
    # what its target no longer has, and its SyncGroup hands out only what it keeps.
    joined = c.join(a, owned=[("orders", owned[a])])
    member = group.members[a]
    assert joined.generation_id == generation
    assert member.state.name == "UNREVOKED_PARTITIONS"
    kept = partitions(c.sync(a, generation).assignment)
    assert kept and set(kept) < set(owned[a])
    assert c.heartbeat(a, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    # Having given the rest up, it rejoins owning what it kept: Stable at the new epoch.
    joined = c.join(a, owned=[("orders", kept)])
    assert joined.generation_id == group.group_epoch and member.state.name == "STABLE"
    # b does the same: rejoin owning its partitions, then owning what it kept.
    assert c.join(b, owned=[("orders", owned[b])]).error == 0
    kept_b = sorted(p for ps in group.members[b].assigned.values() for p in ps)
    assert c.join(b, owned=[("orders", kept_b)]).error == 0
    assert group.members[b].state.name == "STABLE"
    r = c.hb("new", r.member_epoch, owned={})
    held = {mid: sorted(p for ps in m.assigned.values() for p in ps)
            for mid, m in group.members.items()}
    assert sorted(p for ps in held.values() for p in ps) == [0, 1, 2, 3]
    assert held["new"] == sorted(r.assignment.get(tid, ()))
