"""The group and offset APIs through the wire codec: each request is encoded as a client sends it,
decoded, handled by an in-memory Broker, and the response encoded and decoded again, so every
assertion is on what a client would read (no sockets)."""

import pytest
import trio

from trioka.apis import APIS
from trioka.apis.context import Connection, RequestContext
from trioka.broker import BrokerState
from trioka.config import Config
from trioka.coordinator.offsets import OFFSETS_TOPIC
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

K = ApiKey


class Wire:
    def __init__(self, broker: BrokerState):
        self.broker = broker
        self.correlation = 0

    async def call(self, api_key: int, version: int, client_id: str = "wire-client", **fields):
        key = api_key
        request = protocol.request_class(key)(**fields)
        self.correlation += 1
        frame = protocol.encode_request(key, version, self.correlation, client_id, request)[4:]
        header, pos = protocol.parse_request_header(frame)
        decoded = protocol.decode_request_body(header, frame, pos)
        ctx = RequestContext(header, Connection("10.1.2.3:40000", None))
        response = await APIS[key].handle(self.broker, decoded, ctx)
        data = b"".join(protocol.encode_response(key, version, self.correlation, response))
        correlation, message = protocol.decode_response(key, version, data[4:])
        assert correlation == self.correlation
        return message


@pytest.fixture
async def wire():
    broker = BrokerState(Config({"memory": True, "listeners": "PLAINTEXT://127.0.0.1:0"}))
    broker.open()
    from trioka.config import Listener
    broker.set_listeners([Listener("PLAINTEXT", "127.0.0.1", 9999)])
    broker.create_topic("orders", 3)
    yield Wire(broker)
    broker.close()


JoinReq = protocol.request_class(K.JOIN_GROUP)
SyncReq = protocol.request_class(K.SYNC_GROUP)
CommitReq = protocol.request_class(K.OFFSET_COMMIT)
FetchReq = protocol.request_class(K.OFFSET_FETCH)
LeaveReq = protocol.request_class(K.LEAVE_GROUP)


def protocols(meta=b"sub"):
    return [JoinReq.JoinGroupRequestProtocol(name="range", metadata=meta)]


async def join_one(wire, group, version=5, client_id="c1", instance=None):
    """A complete join (with the KIP-394 round trip) and sync of one member."""
    kw = dict(group_id=group, session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
              protocol_type="consumer", protocols=protocols())
    if instance is not None:
        kw["group_instance_id"] = instance
    r = await wire.call(K.JOIN_GROUP, version, client_id, member_id="", **kw)
    if instance is None:
        assert r.error_code == ErrorCode.MEMBER_ID_REQUIRED
        r = await wire.call(K.JOIN_GROUP, version, client_id, member_id=r.member_id, **kw)
    assert r.error_code == 0
    s = await wire.call(K.SYNC_GROUP, 3, client_id, group_id=group,
                        generation_id=r.generation_id, member_id=r.member_id,
                        group_instance_id=instance,
                        assignments=[SyncReq.SyncGroupRequestAssignment(
                            member_id=r.member_id, assignment=b"\x00\x01all")])
    assert s.error_code == 0 and s.assignment == b"\x00\x01all"
    return r


async def test_api_versions_advertises_group_apis(wire):
    r = await wire.call(K.API_VERSIONS, 3, client_software_name="t", client_software_version="1")
    ranges = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
    assert ranges[K.OFFSET_COMMIT] == (2, 9) and ranges[K.OFFSET_FETCH] == (1, 9)
    assert ranges[K.FIND_COORDINATOR] == (0, 6) and ranges[K.JOIN_GROUP] == (0, 9)
    assert ranges[K.HEARTBEAT] == (0, 4) and ranges[K.LEAVE_GROUP] == (0, 5)
    assert ranges[K.SYNC_GROUP] == (0, 5) and ranges[K.DESCRIBE_GROUPS] == (0, 6)
    assert ranges[K.LIST_GROUPS] == (0, 5) and ranges[K.DELETE_GROUPS] == (0, 2)
    assert ranges[K.OFFSET_DELETE] == (0, 0)


async def test_find_coordinator(wire):
    r = await wire.call(K.FIND_COORDINATOR, 2, key="g", key_type=0)
    assert (r.error_code, r.node_id, r.host, r.port) == (0, 1, "127.0.0.1", 9999)
    r = await wire.call(K.FIND_COORDINATOR, 1, key="my-txn", key_type=1)
    assert (r.error_code, r.node_id, r.port) == (0, 1, 9999)
    r = await wire.call(K.FIND_COORDINATOR, 4, key_type=0, coordinator_keys=["a", "b"])
    assert [(c.key, c.node_id, c.host, c.port, c.error_code) for c in r.coordinators] == \
        [("a", 1, "127.0.0.1", 9999, 0), ("b", 1, "127.0.0.1", 9999, 0)]
    r = await wire.call(K.FIND_COORDINATOR, 6, key_type=2, coordinator_keys=["s"])
    assert r.coordinators[0].error_code == ErrorCode.INVALID_REQUEST
    assert r.coordinators[0].node_id == -1
    r = await wire.call(K.FIND_COORDINATOR, 3, key="x", key_type=5)
    assert r.error_code == ErrorCode.INVALID_REQUEST and r.error_message


async def test_join_sync_heartbeat_over_versions(wire):
    # v3 admits a new member at once; v7+ answer the protocol type.
    kw = dict(group_id="old", session_timeout_ms=10_000, rebalance_timeout_ms=20_000,
              protocol_type="consumer", protocols=protocols(b"old-sub"))
    r = await wire.call(K.JOIN_GROUP, 3, "legacy", member_id="", **kw)
    assert r.error_code == 0 and r.member_id.startswith("legacy-") and r.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in r.members] == [(r.member_id, b"old-sub")]
    r = await wire.call(K.JOIN_GROUP, 9, "new", member_id="", reason="starting",
                        **{**kw, "group_id": "new"})
    assert r.error_code == ErrorCode.MEMBER_ID_REQUIRED and r.generation_id == -1
    assert r.protocol_name is None and r.member_id.startswith("new-")
    r = await wire.call(K.JOIN_GROUP, 9, "new", member_id=r.member_id,
                        **{**kw, "group_id": "new"})
    assert (r.error_code, r.generation_id, r.protocol_type, r.protocol_name) == \
        (0, 1, "consumer", "range")
    assert r.skip_assignment is False
    s = await wire.call(K.SYNC_GROUP, 5, "new", group_id="new", generation_id=1,
                        member_id=r.member_id, protocol_type="consumer", protocol_name="range",
                        assignments=[SyncReq.SyncGroupRequestAssignment(
                            member_id=r.member_id, assignment=b"A")])
    assert (s.error_code, s.protocol_type, s.protocol_name, s.assignment) == \
        (0, "consumer", "range", b"A")
    s = await wire.call(K.SYNC_GROUP, 5, "new", group_id="new", generation_id=1,
                        member_id=r.member_id, protocol_type="connect", protocol_name="range",
                        assignments=[])
    assert s.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    for version in (0, 3, 4):
        h = await wire.call(K.HEARTBEAT, version, group_id="new", generation_id=1,
                            member_id=r.member_id)
        assert h.error_code == 0
    h = await wire.call(K.HEARTBEAT, 4, group_id="new", generation_id=0, member_id=r.member_id)
    assert h.error_code == ErrorCode.ILLEGAL_GENERATION
    h = await wire.call(K.HEARTBEAT, 4, group_id="new", generation_id=1, member_id="x")
    assert h.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    r = await wire.call(K.JOIN_GROUP, 5, member_id="", **{**kw, "session_timeout_ms": 1000})
    assert r.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    r = await wire.call(K.JOIN_GROUP, 5, member_id="", **{**kw, "group_id": ""})
    assert r.error_code == ErrorCode.INVALID_GROUP_ID


async def test_leave_group_versions(wire):
    a = await join_one(wire, "g1", client_id="one")
    r = await wire.call(K.LEAVE_GROUP, 1, group_id="g1", member_id="nobody")
    assert r.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    r = await wire.call(K.LEAVE_GROUP, 2, group_id="g1", member_id=a.member_id)
    assert r.error_code == 0
    s = await join_one(wire, "g2", instance="inst-1")
    Identity = LeaveReq.MemberIdentity
    r = await wire.call(K.LEAVE_GROUP, 5, group_id="g2", members=[
        Identity(member_id="wrong", group_instance_id="inst-1", reason="bye"),
        Identity(member_id="", group_instance_id="inst-9"),
        Identity(member_id="", group_instance_id="inst-1")])
    assert r.error_code == 0
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in r.members] == [
        ("wrong", "inst-1", ErrorCode.FENCED_INSTANCE_ID),
        ("", "inst-9", ErrorCode.UNKNOWN_MEMBER_ID), ("", "inst-1", 0)]
    d = await wire.call(K.DESCRIBE_GROUPS, 5, groups=["g2"])
    assert d.groups[0].group_state == "Empty" and d.groups[0].members == []
    assert s.member_id.startswith("inst-1-")


def commit_request(group, generation, member, entries, **kw):
    Topic = CommitReq.OffsetCommitRequestTopic
    return dict(group_id=group, generation_id_or_member_epoch=generation, member_id=member,
                topics=[Topic(name=t, partitions=[
                    Topic.OffsetCommitRequestPartition(partition_index=p, committed_offset=o,
                                                       committed_leader_epoch=e,
                                                       committed_metadata=m)
                    for p, o, e, m in parts]) for t, parts in entries], **kw)


async def test_offset_commit_and_fetch(wire):
    r = await join_one(wire, "cg")
    big = "x" * 4097
    c = await wire.call(K.OFFSET_COMMIT, 9, **commit_request("cg", 1, r.member_id, [
        ("orders", [(0, 10, 0, "m0"), (1, 20, -1, None), (2, 30, 0, big), (7, 1, 0, "")]),
        ("no-such-topic", [(0, 5, 0, "")])]))
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions])
            for t in c.topics] == [
        ("orders", [(0, 0), (1, 0), (2, ErrorCode.OFFSET_METADATA_TOO_LARGE),
                    (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]),
        ("no-such-topic", [(0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)])]
    c = await wire.call(K.OFFSET_COMMIT, 8, **commit_request("cg", 0, r.member_id, [
        ("orders", [(0, 11, 0, "")])]))
    assert c.topics[0].partitions[0].error_code == ErrorCode.ILLEGAL_GENERATION
    c = await wire.call(K.OFFSET_COMMIT, 9, **commit_request("missing", 3, "m", [
        ("orders", [(0, 11, 0, "")])]))
    assert c.topics[0].partitions[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND
    c = await wire.call(K.OFFSET_COMMIT, 2, **commit_request("cg", -1, "", [
        ("orders", [(0, 11, 0, "")])], retention_time_ms=-1))
    assert c.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_MEMBER_ID
    # A standalone commit (no group management) creates the group.
    c = await wire.call(K.OFFSET_COMMIT, 2, **commit_request("standalone", -1, "", [
        ("orders", [(2, 99, 0, "meta")])], retention_time_ms=60_000))
    assert c.topics[0].partitions[0].error_code == 0
    # A retention near Long.MAX_VALUE (found by the fuzzer: now + retention overflowed the
    # int64 expiry of __consumer_offsets' record and the handler failed) means never.
    for retention in ((1 << 63) - 1, -(1 << 63)):
        c = await wire.call(K.OFFSET_COMMIT, 3, **commit_request("forever", -1, "", [
            ("orders", [(1, 5, 0, "")])], retention_time_ms=retention))
        assert c.topics[0].partitions[0].error_code == 0

    Topic = FetchReq.OffsetFetchRequestTopic
    f = await wire.call(K.OFFSET_FETCH, 1, group_id="cg",
                        topics=[Topic(name="orders", partition_indexes=[0, 1, 2])])
    assert [(p.partition_index, p.committed_offset, p.metadata, p.error_code)
            for p in f.topics[0].partitions] == [(0, 10, "m0", 0), (1, 20, "", 0),
                                                 (2, -1, "", 0)]
    f = await wire.call(K.OFFSET_FETCH, 7, group_id="cg", topics=None, require_stable=True)
    assert f.error_code == 0
    assert [(t.name, [(p.partition_index, p.committed_offset, p.committed_leader_epoch)
                      for p in t.partitions]) for t in f.topics] == \
        [("orders", [(0, 10, 0), (1, 20, -1)])]
    f = await wire.call(K.OFFSET_FETCH, 5, group_id="unknown-group", topics=None)
    assert f.error_code == 0 and f.topics == []
    f = await wire.call(K.OFFSET_FETCH, 3, group_id="", topics=None)
    assert f.error_code == ErrorCode.INVALID_GROUP_ID
    Group = FetchReq.OffsetFetchRequestGroup
    f = await wire.call(K.OFFSET_FETCH, 9, groups=[
        Group(group_id="cg", member_id=None, member_epoch=-1, topics=[
            Group.OffsetFetchRequestTopics(name="orders", partition_indexes=[1])]),
        Group(group_id="standalone", topics=None),
        Group(group_id="nothing", topics=None)], require_stable=False)
    assert [(g.group_id, g.error_code, [(t.name, [(p.partition_index, p.committed_offset,
                                                    p.metadata) for p in t.partitions])
                                        for t in g.topics]) for g in f.groups] == [
        ("cg", 0, [("orders", [(1, 20, "")])]),
        ("standalone", 0, [("orders", [(2, 99, "meta")])]),
        ("nothing", 0, [])]
    # Everything accepted went to __consumer_offsets.
    assert wire.broker.topic(OFFSETS_TOPIC).num_partitions == 50
    d = await wire.call(K.METADATA, 12, topics=None, allow_auto_topic_creation=False,
                        include_topic_authorized_operations=False)
    [internal] = [t for t in d.topics if t.name == OFFSETS_TOPIC]
    assert internal.is_internal and len(internal.partitions) == 50


async def test_offset_delete(wire):
    r = await join_one(wire, "dg")
    await wire.call(K.OFFSET_COMMIT, 9, **commit_request("dg", 1, r.member_id, [
        ("orders", [(0, 10, 0, ""), (1, 11, 0, "")])]))
    DelReq = protocol.request_class(K.OFFSET_DELETE)
    T = DelReq.OffsetDeleteRequestTopic

    def req(group, topic, parts):
        return dict(group_id=group, topics=[T(name=topic, partitions=[
            T.OffsetDeleteRequestPartition(partition_index=p) for p in parts])])

    # The member (range, consumer protocol) does not subscribe to anything readable here: its
    # metadata is not a ConsumerProtocolSubscription, so no topic counts as subscribed.
    d = await wire.call(K.OFFSET_DELETE, 0, **req("dg", "orders", [0, 5]))
    assert d.error_code == 0
    assert [(p.partition_index, p.error_code) for p in d.topics[0].partitions] == \
        [(0, 0), (5, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
    d = await wire.call(K.OFFSET_DELETE, 0, **req("nope", "orders", [0]))
    assert d.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    f = await wire.call(K.OFFSET_FETCH, 8, groups=[
        FetchReq.OffsetFetchRequestGroup(group_id="dg", topics=None)])
    assert [(p.partition_index, p.committed_offset) for p in f.groups[0].topics[0].partitions] \
        == [(1, 11)]
    # A member subscribed to the topic (read from its consumer protocol subscription) keeps
    # that topic's offsets.
    Sub = schema.record("ConsumerProtocolSubscription").cls
    sub = schema.encode_record("ConsumerProtocolSubscription", Sub(topics=["orders"]), 1)
    kw = dict(group_id="sg", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
              protocol_type="consumer", protocols=protocols(sub))
    j = await wire.call(K.JOIN_GROUP, 3, member_id="", **kw)
    await wire.call(K.SYNC_GROUP, 3, group_id="sg", generation_id=j.generation_id,
                    member_id=j.member_id, assignments=[])
    await wire.call(K.OFFSET_COMMIT, 9, **commit_request("sg", 1, j.member_id, [
        ("orders", [(0, 1, 0, "")])]))
    d = await wire.call(K.OFFSET_DELETE, 0, **req("sg", "orders", [0]))
    assert d.topics[0].partitions[0].error_code == ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
    # A non-consumer group with members cannot tell what it uses.
    kw = dict(group_id="conn", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
              protocol_type="connect", protocols=protocols())
    j = await wire.call(K.JOIN_GROUP, 3, member_id="", **kw)
    d = await wire.call(K.OFFSET_DELETE, 0, **req("conn", "orders", [0]))
    assert d.error_code == ErrorCode.NON_EMPTY_GROUP


async def test_describe_list_delete_groups(wire):
    r = await join_one(wire, "alpha", client_id="alpha-client")
    await wire.call(K.OFFSET_COMMIT, 2, **commit_request("beta", -1, "", [
        ("orders", [(0, 1, 0, "")])], retention_time_ms=-1))
    d = await wire.call(K.DESCRIBE_GROUPS, 5, groups=["alpha", "beta", "ghost"],
                        include_authorized_operations=False)
    alpha, beta, ghost = d.groups
    assert (alpha.error_code, alpha.group_state, alpha.protocol_type, alpha.protocol_data) == \
        (0, "Stable", "consumer", "range")
    [m] = alpha.members
    assert (m.member_id, m.client_id, m.client_host, m.member_metadata, m.member_assignment) == \
        (r.member_id, "alpha-client", "/10.1.2.3", b"sub", b"\x00\x01all")
    assert (beta.group_state, beta.protocol_type, beta.members) == ("Empty", "", [])
    assert (ghost.error_code, ghost.group_state, ghost.members) == (0, "Dead", [])
    d = await wire.call(K.DESCRIBE_GROUPS, 0, groups=["alpha"])
    assert d.groups[0].members[0].member_assignment == b"\x00\x01all"

    lg = await wire.call(K.LIST_GROUPS, 5, states_filter=[], types_filter=[])
    assert [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in lg.groups] == \
        [("alpha", "consumer", "Stable", "classic"), ("beta", "", "Empty", "classic")]
    lg = await wire.call(K.LIST_GROUPS, 4, states_filter=["empty"])
    assert [g.group_id for g in lg.groups] == ["beta"]
    lg = await wire.call(K.LIST_GROUPS, 5, states_filter=[], types_filter=["consumer"])
    assert lg.groups == []
    lg = await wire.call(K.LIST_GROUPS, 0)
    assert [(g.group_id, g.protocol_type) for g in lg.groups] == [("alpha", "consumer"),
                                                                  ("beta", "")]

    dg = await wire.call(K.DELETE_GROUPS, 2, groups_names=["alpha", "beta", "ghost"])
    assert [(x.group_id, x.error_code) for x in dg.results] == [
        ("alpha", ErrorCode.NON_EMPTY_GROUP), ("beta", 0), ("ghost", ErrorCode.GROUP_ID_NOT_FOUND)]
    f = await wire.call(K.OFFSET_FETCH, 6, group_id="beta", topics=None)
    assert f.topics == []
    lg = await wire.call(K.LIST_GROUPS, 3)
    assert [g.group_id for g in lg.groups] == ["alpha"]


async def test_parked_join_is_answered_when_the_other_member_rejoins(wire):
    first = await join_one(wire, "pair", client_id="first")
    kw = dict(group_id="pair", session_timeout_ms=10_000, rebalance_timeout_ms=30_000,
              protocol_type="consumer", protocols=protocols(b"second-sub"))
    r = await wire.call(K.JOIN_GROUP, 5, "second", member_id="", **kw)
    answers = {}

    async def second():
        answers["second"] = await wire.call(K.JOIN_GROUP, 5, "second", member_id=r.member_id,
                                            **kw)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        with trio.fail_after(5):
            while True:
                h = await wire.call(K.HEARTBEAT, 3, group_id="pair", generation_id=1,
                                    member_id=first.member_id)
                if h.error_code == ErrorCode.REBALANCE_IN_PROGRESS:
                    break
                await trio.sleep(0.01)
        again = await wire.call(K.JOIN_GROUP, 5, "first", member_id=first.member_id,
                                **{**kw, "protocols": protocols()})
    leader, follower = again, answers["second"]
    assert leader.generation_id == follower.generation_id == 2
    assert [(m.member_id, m.metadata) for m in leader.members] == \
        [(first.member_id, b"sub"), (r.member_id, b"second-sub")]
    assert follower.members == [] and follower.leader == first.member_id
