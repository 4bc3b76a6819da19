"""The classic group protocol of GroupCoordinator (trioka.coordinator): join, sync, heartbeat,
leave, session and rebalance timeouts, static members. The clock is driven by the test: the
synchronous halves (`classic.join`, `classic.sync`, `classic.heartbeat_now`, `expire`) take `now`
from a ManualClock the test moves, and the trio tests run the timer task with the real Clock
under trio.testing.MockClock."""

import pytest
import trio

from trioka.clock import Clock, ManualClock
from trioka.config import Config
from trioka.coordinator.classic import JoinResult, SyncResult, Waiter
from trioka.coordinator.group_coordinator import GroupCoordinator
from trioka.coordinator.group_state import (TRANSITIONS, GroupState, IllegalStateTransition,
                                            check_transition)
from trioka.coordinator.offsets import OFFSETS_TOPIC, decode_key
from trioka.log.manager import LogManager
from trioka.log.records import iter_batches
from trioka.wire import schema
from trioka.wire.errors import ErrorCode

START = 1000.0


class Groups:
    """A coordinator over in-memory logs, with a clock the test moves."""

    def __init__(self, **settings):
        self.clock = ManualClock(monotonic=START)
        self.logs = LogManager(None, clock=self.clock)
        self.logs.open()
        self.gc = GroupCoordinator(Config(**settings), self.logs, clock=self.clock)
        self.gc.open()

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    def advance(self, seconds: float) -> None:
        self.clock.advance(round(seconds * 1000))
        self.gc.expire(self.now)

    def join(self, group, member_id="", *, instance=None, protocols=(("range", b"sub"),),
             session_ms=10_000, rebalance_ms=30_000, v4=True, client_id="client",
             protocol_type="consumer"):
        return self.gc.classic.join(self.now, group, member_id, instance, client_id,
                                    "/127.0.0.1", session_ms, rebalance_ms, protocol_type,
                                    list(protocols), v4)

    def new_member(self, group, **kw) -> str:
        """A member id handed out by KIP-394 (MEMBER_ID_REQUIRED)."""
        r = self.join(group, **kw)
        assert r.error == ErrorCode.MEMBER_ID_REQUIRED and r.member_id.startswith("client-")
        return r.member_id

    def sync(self, group, generation, member_id, assignments=None, *, instance=None,
             protocol_type=None, protocol_name=None):
        return self.gc.classic.sync(self.now, group, generation, member_id, instance,
                                    protocol_type, protocol_name, assignments or {})

    def heartbeat(self, group, generation, member_id, instance=None) -> int:
        return self.gc.classic.heartbeat_now(self.now, group, generation, member_id, instance)

    def group(self, group_id):
        return self.gc.groups[group_id]

    def stable_group(self, group, n, **kw) -> list[str]:
        """n dynamic members joined one by one, rebalanced and synced; their member ids."""
        ids = []
        for i in range(n):
            mid = self.new_member(group, **kw)
            waiters = {mid: self.join(group, mid, **kw)}
            for other in ids:    # everyone else rejoins
                waiters[other] = self.join(group, other, **kw)
            ids.append(mid)
            answers = {m: done(w) for m, w in waiters.items()}
            generation = answers[mid].generation_id
            leader = answers[mid].leader
            syncs = {m: self.sync(group, generation, m) for m in ids if m != leader}
            syncs[leader] = self.sync(group, generation, leader,
                                      {m: f"assignment-{m}".encode() for m in ids})
            for m, s in syncs.items():
                assert done(s).assignment == f"assignment-{m}".encode()
        assert self.group(group).state is GroupState.STABLE
        return ids

    def stored_records(self) -> list[tuple[object, object]]:
        """(decoded key, value bytes or None) of every record in __consumer_offsets."""
        out = []
        topic = self.logs.topic(OFFSETS_TOPIC)
        for p in topic.partitions:
            for batch in iter_batches(p.read(0, 1 << 24).records):
                for r in batch.records:
                    out.append((decode_key(r.key)[1], r.value))
        return out


def done(outcome):
    """The answer of a request that must have been answered (now or by a completed Waiter)."""
    if isinstance(outcome, Waiter):
        assert outcome.result is not None, "request is still waiting"
        return outcome.result
    return outcome


def test_state_table_is_kafkas():
    E, P, C, S, D = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE,
                     GroupState.COMPLETING_REBALANCE, GroupState.STABLE, GroupState.DEAD)
    assert TRANSITIONS[E] == {P, D}
    assert TRANSITIONS[P] == {C, E, D}
    assert TRANSITIONS[C] == {S, P, D}
    assert TRANSITIONS[S] == {P, D}
    assert [s.value for s in GroupState] == ["Empty", "PreparingRebalance",
                                             "CompletingRebalance", "Stable", "Dead"]
    check_transition(S, P)
    with pytest.raises(IllegalStateTransition):
        check_transition(E, S)


def test_first_join_needs_a_member_id_then_completes_at_once():
    g = Groups()
    r = g.join("g1")
    assert isinstance(r, JoinResult) and r.error == ErrorCode.MEMBER_ID_REQUIRED
    assert g.group("g1").state is GroupState.EMPTY and r.member_id in g.group("g1").pending_members
    r = done(g.join("g1", r.member_id))
    assert r.error == 0 and r.generation_id == 1 and r.leader == r.member_id
    assert r.protocol_type == "consumer" and r.protocol_name == "range"
    assert r.members == [(r.member_id, None, b"sub")]
    assert g.group("g1").state is GroupState.COMPLETING_REBALANCE
    s = done(g.sync("g1", 1, r.member_id, {r.member_id: b"mine"}))
    assert s == SyncResult(0, "consumer", "range", b"mine")
    assert g.group("g1").state is GroupState.STABLE
    # The rebalance was written as a GroupMetadata record.
    [(key, value)] = [(k, v) for k, v in g.stored_records() if k.__class__.__name__ ==
                      "GroupMetadataKey"][-1:]
    assert key.group == "g1"
    version, meta = schema.decode_record("GroupMetadataValue", value)
    assert version == 4 and meta.generation == 1 and meta.protocol == "range"
    assert [(m.member_id, m.assignment, m.client_host) for m in meta.members] == \
        [(r.member_id, b"mine", "/127.0.0.1")]


def test_join_before_v4_is_admitted_without_member_id_round_trip():
    g = Groups()
    r = done(g.join("g1", v4=False, client_id="old"))
    assert r.error == 0 and r.member_id.startswith("old-") and r.generation_id == 1


def test_second_member_triggers_rebalance_and_only_leader_gets_members():
    g = Groups()
    [a] = g.stable_group("g", 1)
    b = g.new_member("g", protocols=[("range", b"b-sub")])
    wb = g.join("g", b, protocols=[("range", b"b-sub")])
    assert isinstance(wb, Waiter) and wb.result is None
    assert g.group("g").state is GroupState.PREPARING_REBALANCE
    assert g.heartbeat("g", 1, a) == ErrorCode.REBALANCE_IN_PROGRESS
    assert done(g.sync("g", 1, a)).error == ErrorCode.REBALANCE_IN_PROGRESS
    ra = done(g.join("g", a))
    rb = done(wb)
    assert ra.generation_id == rb.generation_id == 2
    assert ra.leader == rb.leader == a
    assert ra.members == [(a, None, b"sub"), (b, None, b"b-sub")]
    assert rb.members == []
    assert g.heartbeat("g", 2, b) == ErrorCode.NONE     # CompletingRebalance: carry on
    # The follower waits for the leader's assignment.
    wsb = g.sync("g", 2, b)
    assert isinstance(wsb, Waiter) and wsb.result is None
    sa = done(g.sync("g", 2, a, {a: b"A", b: b"B"}))
    assert sa.assignment == b"A" and done(wsb).assignment == b"B"
    assert g.group("g").state is GroupState.STABLE
    # A follower rejoining with the same protocols in Stable changes nothing.
    again = done(g.join("g", b, protocols=[("range", b"b-sub")]))
    assert (again.generation_id, again.members) == (2, [])
    assert g.group("g").state is GroupState.STABLE


def test_heartbeat_errors():
    g = Groups()
    [a, b] = g.stable_group("g", 2)
    assert g.heartbeat("g", 2, a) == ErrorCode.NONE
    assert g.heartbeat("", 2, a) == ErrorCode.INVALID_GROUP_ID
    assert g.heartbeat("nope", 2, a) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.heartbeat("g", 2, "stranger") == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.heartbeat("g", 1, a) == ErrorCode.ILLEGAL_GENERATION


def test_sync_errors():
    g = Groups()
    [a, b] = g.stable_group("g", 2)
    assert done(g.sync("g", 2, "stranger")).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert done(g.sync("nope", 2, a)).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert done(g.sync("g", 7, a)).error == ErrorCode.ILLEGAL_GENERATION
    assert done(g.sync("g", 2, a, protocol_type="connect")).error == \
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert done(g.sync("g", 2, a, protocol_name="roundrobin")).error == \
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # Stable: the stored assignment again.
    assert done(g.sync("g", 2, b, protocol_type="consumer", protocol_name="range")).assignment \
        == f"assignment-{b}".encode()


def test_join_validation():
    g = Groups(group_max_size=1)
    assert g.join("").error == ErrorCode.INVALID_GROUP_ID
    assert g.join("g", session_ms=5999).error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert g.join("g", session_ms=1_800_001).error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert g.join("g", "made-up-id").error == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.join("g", protocols=[]).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert g.join("g", protocol_type="").error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert "g" not in g.gc.groups    # failed joins leave no group behind
    [a] = g.stable_group("g", 1)
    assert g.join("g", protocol_type="connect").error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert g.join("g", protocols=[("roundrobin", b"")]).error == \
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert g.join("g").error == ErrorCode.GROUP_MAX_SIZE_REACHED


def test_protocol_chosen_by_votes():
    g = Groups()
    prefs = {"x": [("range", b"1"), ("sticky", b"2"), ("roundrobin", b"3")],
             "y": [("sticky", b"4"), ("range", b"5")],
             "z": [("sticky", b"6"), ("roundrobin", b"7"), ("range", b"8")]}
    x = done(g.join("g", v4=False, client_id="x", protocols=prefs["x"]))
    assert x.protocol_name == "range"       # alone, x's first choice
    g.sync("g", 1, x.member_id)
    wy = g.join("g", v4=False, client_id="y", protocols=prefs["y"])
    wz = g.join("g", v4=False, client_id="z", protocols=prefs["z"])
    answers = [done(g.join("g", x.member_id, protocols=prefs["x"])), done(wy), done(wz)]
    # range and sticky are common to all; sticky has two first choices, range one.
    assert {a.protocol_name for a in answers} == {"sticky"}
    assert answers[0].leader == x.member_id
    assert [meta for _, _, meta in answers[0].members] == [b"2", b"4", b"6"]


def test_leave_group_single_and_batched():
    g = Groups()
    [a, b, c] = g.stable_group("g", 3)
    assert g.gc.classic.leave_group("g", [(b, None)]) == (ErrorCode.NONE, [ErrorCode.NONE])
    assert g.group("g").state is GroupState.PREPARING_REBALANCE
    assert g.gc.classic.leave_group("g", [(a, None), ("stranger", None), (c, "no-such-instance")]) == \
        (ErrorCode.NONE, [ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID,
                          ErrorCode.UNKNOWN_MEMBER_ID])
    assert g.gc.classic.leave_group("g", [(c, None)]) == (ErrorCode.NONE, [ErrorCode.NONE])
    group = g.group("g")
    # Nobody left: the rebalance ends at once with a new, empty generation.
    assert group.state is GroupState.EMPTY and group.generation_id == 4 and not group.members
    assert g.gc.classic.leave_group("nope", [(a, None)])[0] == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.gc.classic.leave_group("", [(a, None)])[0] == ErrorCode.INVALID_GROUP_ID


def test_leaving_member_answers_its_own_parked_join():
    g = Groups()
    [a, b] = g.stable_group("g", 2)
    wa = g.join("g", a)          # the leader rejoins: rebalance, a waits for b
    assert isinstance(wa, Waiter) and wa.result is None
    g.gc.classic.leave_group("g", [(b, None)])
    ra = done(wa)                # b's leaving completes the join phase
    assert ra.error == 0 and ra.generation_id == 3 and ra.members == [(a, None, b"sub")]


def test_session_timeout_removes_member_and_rebalances():
    g = Groups()
    [a, b] = g.stable_group("g", 2, session_ms=10_000)
    g.advance(6)
    assert g.heartbeat("g", 2, a) == ErrorCode.NONE
    g.advance(5)                 # b's 10 s are over; a heartbeated 5 s ago
    group = g.group("g")
    assert list(group.members) == [a] and group.state is GroupState.PREPARING_REBALANCE
    assert g.heartbeat("g", 2, b) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.heartbeat("g", 2, a) == ErrorCode.REBALANCE_IN_PROGRESS
    r = done(g.join("g", a))
    assert r.generation_id == 3 and r.members == [(a, None, b"sub")]


def test_rebalance_timeout_drops_members_that_did_not_rejoin():
    g = Groups()
    [a, b] = g.stable_group("g", 2, session_ms=60_000, rebalance_ms=20_000)
    c = g.new_member("g", session_ms=60_000, rebalance_ms=20_000)
    wc = g.join("g", c, session_ms=60_000, rebalance_ms=20_000)
    g.advance(10)
    wa = g.join("g", a, session_ms=60_000, rebalance_ms=20_000)
    assert wa.result is None and wc.result is None
    g.advance(10.5)              # the rebalance timeout (20 s) is over; b never rejoined
    ra, rc = done(wa), done(wc)
    assert ra.generation_id == rc.generation_id == 3
    assert [m for m, _, _ in ra.members] == [a, c]
    assert b not in g.group("g").members


def test_member_that_never_syncs_is_dropped():
    g = Groups()
    [a] = g.stable_group("g", 1, rebalance_ms=15_000)
    b = g.new_member("g", rebalance_ms=15_000)
    wb = g.join("g", b, rebalance_ms=15_000)
    ra = done(g.join("g", a, rebalance_ms=15_000))
    done(wb)
    assert ra.generation_id == 2
    assert done(g.sync("g", 1, a, {a: b"A", b: b"B"})).error == ErrorCode.ILLEGAL_GENERATION
    done(g.sync("g", ra.generation_id, a, {a: b"A", b: b"B"}))
    assert g.group("g").state is GroupState.STABLE
    g.advance(9)
    g.heartbeat("g", ra.generation_id, a)
    g.advance(7)                 # 16 s after the join phase: b never sent SyncGroup
    assert list(g.group("g").members) == [a]
    assert g.group("g").state is GroupState.PREPARING_REBALANCE


def test_pending_member_expires_after_session_timeout():
    g = Groups()
    mid = g.new_member("g", session_ms=6000)
    g.advance(5)
    assert mid in g.group("g").pending_members
    g.advance(1.5)
    assert "g" not in g.gc.groups     # nothing else kept the group
    assert g.join("g", mid, session_ms=6000).error == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_member_restart_gets_old_assignment_without_rebalance():
    g = Groups()
    first = {}
    for inst in ("a", "b"):
        r = g.join("g", instance=inst)         # static members get their id at once
        assert isinstance(r, (JoinResult, Waiter))
        first[inst] = r
        if inst == "a":
            ra = done(r)
            assert ra.member_id.startswith("a-")
            g.sync("g", ra.generation_id, ra.member_id, {ra.member_id: b"A-only"})
    a = done(first["a"]).member_id
    wa = g.join("g", a, instance="a")          # a rejoins for the rebalance b started
    ra, rb = done(wa), done(first["b"])
    b = rb.member_id
    assert rb.member_id.startswith("b-") and ra.generation_id == rb.generation_id == 2
    done(g.sync("g", 2, a, {a: b"A", b: b"B"}, instance="a"))
    assert done(g.sync("g", 2, b, instance="b")).assignment == b"B"
    # b restarts: a new JoinGroup with no member id and the same instance id.
    again = done(g.join("g", instance="b"))
    group = g.group("g")
    assert again.error == 0 and again.member_id != b and again.member_id.startswith("b-")
    assert again.generation_id == 2 and group.state is GroupState.STABLE
    assert again.leader == a and again.members == []
    new_b = again.member_id
    assert done(g.sync("g", 2, new_b, instance="b")).assignment == b"B"
    # The old member id is fenced; the other member noticed nothing.
    assert g.heartbeat("g", 2, b, "b") == ErrorCode.FENCED_INSTANCE_ID
    assert done(g.sync("g", 2, b, instance="b")).error == ErrorCode.FENCED_INSTANCE_ID
    assert g.join("g", b, instance="b").error == ErrorCode.FENCED_INSTANCE_ID
    assert g.heartbeat("g", 2, new_b, "b") == ErrorCode.NONE
    assert g.heartbeat("g", 2, a, "a") == ErrorCode.NONE
    # LeaveGroup by instance id: a mismatching member id is fenced, the right one leaves.
    assert g.gc.classic.leave_group("g", [(b, "b")])[1] == [ErrorCode.FENCED_INSTANCE_ID]
    assert g.gc.classic.leave_group("g", [("", "b")])[1] == [ErrorCode.NONE]
    assert list(group.members) == [a]


def test_static_leader_restart_keeps_leadership_and_skips_assignment():
    g = Groups()
    r = done(g.join("g", instance="lead"))
    done(g.sync("g", 1, r.member_id, {r.member_id: b"L"}))
    again = done(g.join("g", instance="lead"))
    assert again.leader == again.member_id and again.skip_assignment
    assert again.members == [(again.member_id, "lead", b"sub")]
    assert done(g.sync("g", 1, again.member_id, {again.member_id: b"ignored"},
                       instance="lead")).assignment == b"L"


def test_static_member_with_changed_protocol_rebalances():
    g = Groups()
    r = done(g.join("g", instance="s"))
    done(g.sync("g", 1, r.member_id, {r.member_id: b"S"}))
    # Nothing in common with what the group uses: refused, as Kafka does.
    assert g.join("g", instance="s", protocols=[("roundrobin", b"")]).error == \
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # Now preferring another protocol: the vote changes, so the group rebalances (alone, it
    # completes at once).
    r2 = done(g.join("g", instance="s", protocols=[("roundrobin", b""), ("range", b"sub")]))
    assert r2.member_id != r.member_id
    assert r2.generation_id == 2 and r2.protocol_name == "roundrobin"


def test_static_member_missing_at_rebalance_end_keeps_its_place():
    g = Groups()
    ra = done(g.join("g", instance="a", rebalance_ms=10_000, session_ms=60_000))
    done(g.sync("g", 1, ra.member_id, {ra.member_id: b"A"}))
    b = g.new_member("g", rebalance_ms=10_000, session_ms=60_000)
    wb = g.join("g", b, rebalance_ms=10_000, session_ms=60_000)
    g.advance(10.5)               # a never rejoins, but is static
    rb = done(wb)
    assert rb.generation_id == 2 and ra.member_id in g.group("g").members
    assert rb.leader == b          # the old leader did not rejoin


def test_initial_rebalance_delay_waits_for_more_members():
    g = Groups(group_initial_rebalance_delay_ms=3000)
    a = g.new_member("g")
    wa = g.join("g", a)
    g.advance(2)
    b = g.new_member("g")
    wb = g.join("g", b)
    assert wa.result is None and wb.result is None
    g.advance(1.5)                # first delay over, but b arrived during it: wait once more
    assert wa.result is None
    g.advance(3)
    ra, rb = done(wa), done(wb)
    assert ra.generation_id == 1 and [m for m, _, _ in ra.members] == [a, b]


async def test_timer_task_expires_sessions_under_mock_clock(autojump_clock):
    clock = Clock()
    logs = LogManager(None, clock=clock)
    logs.open()
    gc = GroupCoordinator(Config(), logs, clock=clock)
    gc.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc.run_timers)
        r = await gc.classic.join_group("g", "", client_id="c", session_timeout_ms=6000,
                                rebalance_timeout_ms=20_000, protocol_type="consumer",
                                protocols=[("range", b"")])
        assert r.error == ErrorCode.MEMBER_ID_REQUIRED
        a = r.member_id
        r = await gc.classic.join_group("g", a, client_id="c", session_timeout_ms=6000,
                                rebalance_timeout_ms=20_000, protocol_type="consumer",
                                protocols=[("range", b"")])
        assert (r.error, r.generation_id) == (0, 1)
        s = await gc.classic.sync_group("g", 1, a, assignments={a: b"x"})
        assert s.assignment == b"x"
        joined = {}

        async def second():
            r = await gc.classic.join_group("g", "", client_id="d", session_timeout_ms=6000,
                                    rebalance_timeout_ms=20_000, protocol_type="consumer",
                                    protocols=[("range", b"")])
            joined["b"] = await gc.classic.join_group("g", r.member_id, client_id="d",
                                              session_timeout_ms=6000,
                                              rebalance_timeout_ms=20_000,
                                              protocol_type="consumer",
                                              protocols=[("range", b"")])

        nursery.start_soon(second)
        # a stops heartbeating: after its session timeout the timer task drops it and the
        # waiting join of b completes without it.
        with trio.fail_after(60):
            while "b" not in joined:
                await trio.sleep(0.5)
        rb = joined["b"]
        assert rb.error == 0 and rb.generation_id == 2 and [m for m, _, _ in rb.members] == \
            [rb.member_id]
        assert a not in gc.groups["g"].members
        assert trio.current_time() >= 6
        nursery.cancel_scope.cancel()


async def test_parked_sync_is_answered_by_the_timer_when_leader_vanishes(autojump_clock):
    clock = Clock()
    logs = LogManager(None, clock=clock)
    logs.open()
    gc = GroupCoordinator(Config(), logs, clock=clock)
    gc.open()
    kw = dict(session_timeout_ms=30_000, rebalance_timeout_ms=10_000, protocol_type="consumer",
              protocols=[("range", b"")], require_known_member_id=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc.run_timers)
        ra = await gc.classic.join_group("g", "", client_id="a", **kw)
        await gc.classic.sync_group("g", 1, ra.member_id, assignments={})
        results = {}

        async def join(name, member_id):
            results[name] = await gc.classic.join_group("g", member_id, client_id=name, **kw)

        nursery.start_soon(join, "b", "")
        await trio.sleep(1)
        await join("a", ra.member_id)
        with trio.fail_after(30):
            while "b" not in results:
                await trio.sleep(0.1)
        assert results["a"].leader == ra.member_id
        # The follower syncs; the leader never does: after the rebalance timeout the leader is
        # dropped and the follower is told to rejoin.
        start = trio.current_time()
        s = await gc.classic.sync_group("g", 2, results["b"].member_id)
        assert s.error == ErrorCode.REBALANCE_IN_PROGRESS
        assert 9 <= trio.current_time() - start <= 12
        assert list(gc.groups["g"].members) == [results["b"].member_id]
        nursery.cancel_scope.cancel()



async def test_shutdown_answers_parked_requests_at_once():
    clock = Clock()
    logs = LogManager(None, clock=clock)
    logs.open()
    gc = GroupCoordinator(Config(), logs, clock=clock)
    gc.open()
    kw = dict(session_timeout_ms=30_000, rebalance_timeout_ms=300_000, protocol_type="consumer",
              protocols=[("range", b"")], require_known_member_id=False)
    shutting_down = trio.Event()
    answers = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc.run_timers)
        nursery.start_soon(gc.unload_when, shutting_down)
        a = await gc.classic.join_group("g", "", client_id="a", **kw)
        await gc.classic.sync_group("g", 1, a.member_id)

        async def join_b():
            answers["b"] = await gc.classic.join_group("g", "", client_id="b", **kw)

        nursery.start_soon(join_b)
        with trio.fail_after(5):
            while gc.groups["g"].state is not GroupState.PREPARING_REBALANCE:
                await trio.sleep(0.01)
            shutting_down.set()        # b would otherwise wait up to 300 s for a
            while "b" not in answers:
                await trio.sleep(0.01)
        assert answers["b"].error == ErrorCode.NOT_COORDINATOR
        nursery.cancel_scope.cancel()
