"""KIP-848 consumer groups (coordinator/consumer_group.py, assignors.py) and offset expiry.

The coordinator is driven directly with a ManualClock the test moves (`consumer_group_heartbeat`
reads it, `expire(now)` applies deadlines, `expire_offsets(now_ms)` takes the wall clock), and the
APIs through the wire codec (each request encoded as a client sends it, each response decoded as a
client reads it). Invariant checked after every step of the reconciliation tests: no partition is
ever in the current assignment of two members.
"""

import itertools
import uuid

import pytest
import trio
from hypothesis import given, settings, strategies as st

from trioka.apis import APIS
from trioka.apis.context import Connection, RequestContext
from trioka.broker import BrokerState
from trioka.config import Listener
from trioka.clock import Clock, ManualClock
from trioka.config import Config
from trioka.coordinator import assignors
from trioka.coordinator.consumer_group import (ConsumerGroupState, MemberState,
                                               current_assignment_key)
from trioka.coordinator.group_coordinator import GroupCoordinator
from trioka.coordinator.offsets import OFFSETS_TOPIC, OffsetAndMetadata, OffsetsTopic
from trioka.log.manager import LogManager
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

START = 1000.0
DAY_MS = 24 * 3600 * 1000


# --- assignors ------------------------------------------------------------------------------

def tid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n + 1)


def topics(**counts) -> dict:
    """name=partitions -> {topic id: TopicSpec}; ids in the order given."""
    return {tid(i): assignors.TopicSpec(name, count)
            for i, (name, count) in enumerate(counts.items())}


def flat(assignment: dict) -> dict[str, list[tuple[uuid.UUID, int]]]:
    return {m: sorted((t, p) for t, ps in parts.items() for p in ps)
            for m, parts in assignment.items()}


def check_valid(assignment, members, specs):
    """Each partition of a subscribed topic exactly once, only to subscribers."""
    seen = {}
    for m, parts in flat(assignment).items():
        for t, p in parts:
            assert t in members[m].subscribed, (m, t)
            assert (t, p) not in seen, f"{(t, p)} given to {seen[(t, p)]} and {m}"
            seen[(t, p)] = m
    wanted = {(t, p) for t, spec in specs.items() for p in range(spec.num_partitions)
              if any(t in ms.subscribed for ms in members.values())}
    assert set(seen) == wanted


def test_uniform_is_balanced_over_several_topics():
    specs = topics(a=7, b=5, c=1)
    members = {m: assignors.MemberSpec(set(specs)) for m in ("m1", "m2", "m3", "m4")}
    result = assignors.uniform(members, specs)
    check_valid(result, members, specs)
    assert sorted(len(ps) for ps in flat(result).values()) == [3, 3, 3, 4]


def test_uniform_is_sticky_when_members_come_and_go():
    specs = topics(orders=12)
    two = {m: assignors.MemberSpec(set(specs)) for m in ("a", "b")}
    first = assignors.uniform(two, specs)
    check_valid(first, two, specs)
    # A third member joins: the others keep all but what it needs (4 partitions move).
    three = {m: assignors.MemberSpec(set(specs), first.get(m)) for m in ("a", "b", "c")}
    second = assignors.uniform(three, specs)
    check_valid(second, three, specs)
    before, after = flat(first), flat(second)
    assert set(after["a"]) <= set(before["a"]) and set(after["b"]) <= set(before["b"])
    assert [len(after[m]) for m in "abc"] == [4, 4, 4]
    # "a" leaves: "b" and "c" keep theirs and share a's.
    two_left = {m: assignors.MemberSpec(set(specs), second[m]) for m in ("b", "c")}
    third = assignors.uniform(two_left, specs)
    check_valid(third, two_left, specs)
    assert set(after["b"]) <= set(flat(third)["b"]) and set(after["c"]) <= set(flat(third)["c"])
    assert [len(flat(third)[m]) for m in "bc"] == [6, 6]


def test_uniform_with_different_subscriptions():
    specs = topics(x=4, y=4)
    members = {"a": assignors.MemberSpec({tid(0)}), "b": assignors.MemberSpec({tid(0), tid(1)}),
               "c": assignors.MemberSpec({tid(1)})}
    result = assignors.uniform(members, specs)
    check_valid(result, members, specs)
    assert sorted(len(ps) for ps in flat(result).values()) == [2, 3, 3]


def test_range_gives_each_member_a_contiguous_range_per_topic():
    specs = topics(x=7, y=2)
    members = {"c": assignors.MemberSpec({tid(0)}), "a": assignors.MemberSpec({tid(0), tid(1)}),
               "b": assignors.MemberSpec({tid(0), tid(1)})}
    result = assignors.range_assignor(members, specs)
    check_valid(result, members, specs)
    assert {m: {t: sorted(ps) for t, ps in parts.items()} for m, parts in result.items()} == {
        "a": {tid(0): [0, 1, 2], tid(1): [0]},
        "b": {tid(0): [3, 4], tid(1): [1]},
        "c": {tid(0): [5, 6]},
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=4),
       st.lists(st.sets(st.integers(0, 3)), min_size=1, max_size=5),
       st.sampled_from(["uniform", "range"]), st.randoms(use_true_random=False))
def test_assignors_are_valid_and_deterministic(counts, subscriptions, name, rnd):
    specs = {tid(i): assignors.TopicSpec(f"t{i}", n) for i, n in enumerate(counts)}
    members = {f"m{i}": assignors.MemberSpec({tid(t) for t in sub if t < len(counts)})
               for i, sub in enumerate(subscriptions)}
    assign = assignors.assignor(name)
    result = assign(members, specs)
    check_valid(result, members, specs)
    shuffled_members = list(members.items())
    rnd.shuffle(shuffled_members)
    shuffled_topics = list(specs.items())
    rnd.shuffle(shuffled_topics)
    assert assign(dict(shuffled_members), dict(shuffled_topics)) == result
    if name == "uniform" and len({frozenset(m.subscribed) for m in members.values()}) == 1:
        sizes = [len(v) for v in flat(result).values()]
        assert max(sizes) - min(sizes) <= 1
    # A second run over the result as the previous target changes nothing (sticky and stable).
    if name == "uniform":
        again = {m: assignors.MemberSpec(spec.subscribed, result[m])
                 for m, spec in members.items()}
        assert assign(again, specs) == result


# --- the coordinator, driven with a test clock ----------------------------------------------

class Groups:
    """A coordinator over in-memory logs, with a clock the test moves."""

    def __init__(self, logs=None, clock=None, **settings):
        self.clock = clock if clock is not None else ManualClock(monotonic=START)
        if logs is None:
            logs = LogManager(None, clock=self.clock)
            logs.open()
        self.logs = logs
        self.settings = settings
        self.gc = GroupCoordinator(Config(**settings), logs, clock=self.clock)
        self.gc.open()

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    def reopen(self) -> "Groups":
        """A new coordinator over the same logs and clock, as after a broker restart."""
        return Groups(self.logs, self.clock, **self.settings)

    def topic(self, name: str, partitions: int) -> uuid.UUID:
        self.logs.create_topic(name, partitions, {})
        return self.logs.topic(name).topic_id

    def advance(self, seconds: float) -> None:
        self.clock.advance(round(seconds * 1000))
        self.gc.expire(self.now)

    def hb(self, member, epoch, group="g", *, owned=None, topics=None, regex=None,
           rebalance_ms=None, assignor=None, instance=None, version=1):
        """One ConsumerGroupHeartbeat; `owned` as {topic id: [partitions]}; a join (epoch 0)
        fills in what a join must carry."""
        if epoch == 0:
            rebalance_ms = 30_000 if rebalance_ms is None else rebalance_ms
            owned = {} if owned is None else owned
            if topics is None and regex is None:
                topics = []
        result = self.gc.consumer.consumer_group_heartbeat(
            group, member, epoch, instance_id=instance,
            rebalance_timeout_ms=-1 if rebalance_ms is None else rebalance_ms,
            subscribed_topic_names=topics, subscribed_topic_regex=regex,
            server_assignor=assignor,
            topic_partitions=None if owned is None else list(owned.items()),
            client_id=f"client-{member}", client_host="/127.0.0.1", api_version=version)
        self.check_no_overlap(group)
        return result

    def error(self, *args, **kw) -> int:
        with pytest.raises(KafkaError) as e:
            self.hb(*args, **kw)
        return e.value.code

    def group(self, group_id="g"):
        return self.gc.consumer_groups[group_id]

    def check_no_overlap(self, group_id="g"):
        group = self.gc.consumer_groups.get(group_id)
        if group is None:
            return
        held = {}
        for m in group.members.values():
            for t, ps in list(m.assigned.items()) + list(m.pending_revocation.items()):
                for p in ps:
                    assert (t, p) not in held, f"{(t, p)} held by {held[(t, p)]} and {m.member_id}"
                    held[(t, p)] = m.member_id

    def stored_keys(self) -> list[int]:
        """The key versions of every record in __consumer_offsets, in order."""
        out = []
        for key, value in OffsetsTopic(self.logs, 50).replay():
            out.append(int.from_bytes(key[:2], "big"))
        return out


def parts(result, topic_id) -> list[int] | None:
    """The partitions of one topic in a heartbeat answer's assignment (None: no assignment)."""
    if result.assignment is None:
        return None
    return sorted(result.assignment.get(topic_id, ()))


def test_first_member_gets_every_partition_at_once():
    g = Groups()
    t = g.topic("orders", 6)
    r = g.hb("a", 0, topics=["orders"])
    assert (r.member_id, r.member_epoch, r.heartbeat_interval_ms) == ("a", 1, 5000)
    assert parts(r, t) == [0, 1, 2, 3, 4, 5]
    assert g.group().state is ConsumerGroupState.STABLE
    # A heartbeat that changes nothing carries no assignment.
    r = g.hb("a", 1, owned={t: list(range(6))})
    assert (r.member_epoch, r.assignment) == (1, None)


def test_v0_member_ids_are_made_by_the_coordinator():
    g = Groups()
    g.topic("orders", 1)
    r = g.hb("", 0, topics=["orders"], version=0)
    assert str(uuid.UUID(r.member_id)) == r.member_id and r.member_epoch == 1
    assert g.error("", 0, topics=["orders"], version=1) == ErrorCode.INVALID_REQUEST


def test_second_member_gets_partitions_only_after_the_first_revoked_them():
    g = Groups()
    t = g.topic("orders", 6)
    g.hb("a", 0, topics=["orders"])
    # b joins: epoch 2; its share is still a's, so it gets nothing yet.
    r = g.hb("b", 0, topics=["orders"])
    assert (r.member_epoch, parts(r, t)) == (2, [])
    b = g.group().members["b"]
    assert b.state is MemberState.UNRELEASED_PARTITIONS
    assert g.group().state is ConsumerGroupState.RECONCILING
    # a is asked to revoke, at its old epoch.
    r = g.hb("a", 1, owned={t: list(range(6))})
    assert (r.member_epoch, parts(r, t)) == (1, [0, 1, 2])
    a = g.group().members["a"]
    assert a.state is MemberState.UNREVOKED_PARTITIONS
    assert sorted(a.pending_revocation[t]) == [3, 4, 5]
    # b heartbeats before a acknowledged: still nothing for it.
    r = g.hb("b", 2, owned={})
    assert (r.member_epoch, r.assignment) == (2, None)
    # a heartbeats still owning them: it waits; then it acknowledges and moves to epoch 2.
    r = g.hb("a", 1, owned={t: list(range(6))})
    assert (r.member_epoch, r.assignment) == (1, None)
    r = g.hb("a", 1, owned={t: [0, 1, 2]})
    assert (r.member_epoch, r.assignment) == (2, None)
    assert a.state is MemberState.STABLE and a.pending_revocation == {}
    # Now b gets them.
    r = g.hb("b", 2, owned={})
    assert (r.member_epoch, parts(r, t)) == (2, [3, 4, 5])
    assert g.group().state is ConsumerGroupState.STABLE
    assert (g.group().group_epoch, g.group().assignment_epoch) == (2, 2)


def test_a_member_that_leaves_hands_its_partitions_over():
    g = Groups()
    t = g.topic("orders", 4)
    g.hb("a", 0, topics=["orders"])
    g.hb("b", 0, topics=["orders"])
    g.hb("a", 1, owned={t: [0, 1, 2, 3]})
    g.hb("a", 1, owned={t: [0, 1]})
    g.hb("b", 2, owned={})
    r = g.hb("b", -1)
    assert (r.member_id, r.member_epoch) == ("b", -1)
    assert list(g.group().members) == ["a"] and g.group().group_epoch == 3
    r = g.hb("a", 2, owned={t: [0, 1]})
    assert (r.member_epoch, parts(r, t)) == (3, [0, 1, 2, 3])
    assert g.error("b", 2) == ErrorCode.UNKNOWN_MEMBER_ID
    # The last one leaves: the group is Empty, and still there.
    g.hb("a", -1)
    assert g.group().state is ConsumerGroupState.EMPTY


def test_member_epochs_are_checked():
    g = Groups()
    t = g.topic("orders", 2)
    g.hb("a", 0, topics=["orders"])
    g.hb("b", 0, topics=["orders"])
    g.hb("a", 1, owned={t: [0, 1]})
    g.hb("a", 1, owned={t: [0]})               # a is at epoch 2 now, previous epoch 1
    assert g.error("a", 3, owned={t: [0]}) == ErrorCode.FENCED_MEMBER_EPOCH    # ahead
    # The previous epoch is accepted while the member owns no more than its assignment (the
    # answer with the new epoch may have been lost)...
    r = g.hb("a", 1, owned={t: [0]})
    assert r.member_epoch == 2
    # ...but not when it claims partitions it does not have, or without its partitions.
    assert g.error("a", 1, owned={t: [0, 1]}) == ErrorCode.FENCED_MEMBER_EPOCH
    assert g.error("a", 1) == ErrorCode.FENCED_MEMBER_EPOCH
    assert g.error("zzz", 2) == ErrorCode.UNKNOWN_MEMBER_ID
    assert g.error("a", 2, group="nope") == ErrorCode.GROUP_ID_NOT_FOUND
    # A fenced member rejoins with epoch 0 and its member id, holding nothing: it starts over.
    r = g.hb("a", 0, topics=["orders"])
    assert (r.member_epoch, parts(r, t)) == (2, [0])


def test_requests_kafka_refuses():
    g = Groups(**{"group.consumer.max.size": 2})
    g.topic("orders", 1)
    coord = g.gc
    kw = dict(subscribed_topic_names=["orders"], topic_partitions=[])
    cases = [
        (dict(group_id="g", member_id="m", member_epoch=0, **kw), "RebalanceTimeoutMs"),
        (dict(group_id="g", member_id="m", member_epoch=0, rebalance_timeout_ms=1000,
              subscribed_topic_names=["orders"], topic_partitions=[(uuid.uuid4(), [0])]),
         "TopicPartitions"),
        (dict(group_id="g", member_id="m", member_epoch=0, rebalance_timeout_ms=1000,
              topic_partitions=[]), "SubscribedTopicNames"),
        (dict(group_id=" ", member_id="m", member_epoch=0, rebalance_timeout_ms=1000, **kw),
         "GroupId"),
        (dict(group_id="g", member_id="m", member_epoch=-2), "InstanceId"),
        (dict(group_id="g", member_id="m", member_epoch=-3), "MemberEpoch"),
    ]
    for args, word in cases:
        with pytest.raises(KafkaError) as e:
            coord.consumer.consumer_group_heartbeat(**args)
        assert e.value.code == ErrorCode.INVALID_REQUEST and word in e.value.message
    assert g.error("m", 0, topics=["orders"], assignor="sticky") == ErrorCode.UNSUPPORTED_ASSIGNOR
    assert g.error("m", 0, regex="orders(") == ErrorCode.INVALID_REGULAR_EXPRESSION
    g.hb("m1", 0, topics=["orders"])
    g.hb("m2", 0, topics=["orders"])
    assert g.error("m3", 0, topics=["orders"]) == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert "g" in coord.consumer_groups and "m3" not in g.group().members


def test_regex_subscription_follows_new_topics_and_partitions():
    g = Groups()
    t1 = g.topic("metrics-1", 2)
    g.topic("other", 3)
    r = g.hb("a", 0, regex="metrics-.*")
    assert r.assignment == {t1: frozenset({0, 1})}
    epoch = g.group().group_epoch
    t2 = g.topic("metrics-2", 1)
    r = g.hb("a", 1, owned={t1: [0, 1]})
    assert g.group().group_epoch == epoch + 1
    assert r.assignment == {t1: frozenset({0, 1}), t2: frozenset({0})}
    # More partitions: another epoch, and the new partition.
    g.logs.create_partitions("metrics-2", 3)
    r = g.hb("a", r.member_epoch, owned={t1: [0, 1], t2: [0]})
    assert r.assignment == {t1: frozenset({0, 1}), t2: frozenset({0, 1, 2})}
    assert g.group().group_epoch == epoch + 2
    assert g.group().subscribed_topic_names() == {"metrics-1", "metrics-2"}


def test_a_regex_is_re2s_so_no_pattern_holds_the_broker():
    """Kafka matches subscription regexes with RE2/J: what RE2 refuses (a lookahead, a
    backreference) is INVALID_REGULAR_EXPRESSION, and a pattern that makes a backtracking
    engine run for hours over one name (here 2^40 ways to split 40 a's) is matched at once."""
    g = Groups()
    g.topic("a" * 40 + "-", 1)
    t = g.topic("aaaa", 2)
    assert g.error("m", 0, regex="(?=orders)orders") == ErrorCode.INVALID_REGULAR_EXPRESSION
    assert g.error("m", 0, regex="(o)rders\\1") == ErrorCode.INVALID_REGULAR_EXPRESSION
    r = g.hb("m", 0, regex="(a+)+")
    assert r.assignment == {t: frozenset({0, 1})}
    assert g.group().subscribed_topic_names() == {"aaaa"}


def test_range_assignor_chosen_by_the_members():
    g = Groups()
    t = g.topic("orders", 5)
    g.hb("b", 0, topics=["orders"], assignor="range")
    g.hb("a", 0, topics=["orders"], assignor="range")
    group = g.group()
    assert group.preferred_assignor(g.gc.consumer_settings) == "range"
    assert {m: sorted(p[t]) for m, p in group.target.items()} == {"a": [0, 1, 2], "b": [3, 4]}


def test_session_timeout_removes_a_silent_member():
    g = Groups(**{"group.consumer.session.timeout.ms": 10_000})
    t = g.topic("orders", 4)
    g.hb("a", 0, topics=["orders"])
    g.hb("b", 0, topics=["orders"])
    g.hb("a", 1, owned={t: [0, 1, 2, 3]})
    g.hb("a", 1, owned={t: [0, 1]})
    g.hb("b", 2, owned={})
    for _ in range(2):                      # a keeps heartbeating, b does not
        g.advance(4)
        g.hb("a", 2, owned={t: [0, 1]})
    assert set(g.group().members) == {"a", "b"}
    g.advance(4)                            # b's 10 s are over
    assert list(g.group().members) == ["a"] and g.group().group_epoch == 3
    r = g.hb("a", 2, owned={t: [0, 1]})
    assert (r.member_epoch, parts(r, t)) == (3, [0, 1, 2, 3])
    assert g.error("b", 2) == ErrorCode.UNKNOWN_MEMBER_ID


def test_a_member_that_does_not_revoke_in_time_is_removed():
    g = Groups()
    t = g.topic("orders", 2)
    g.hb("a", 0, topics=["orders"], rebalance_ms=5000)
    g.hb("b", 0, topics=["orders"])
    r = g.hb("a", 1, owned={t: [0, 1]})
    assert parts(r, t) == [0]
    for _ in range(2):                       # heartbeats, but never lets go of partition 1
        g.advance(2)
        g.hb("b", 2, owned={})
        g.hb("a", 1, owned={t: [0, 1]})
    assert set(g.group().members) == {"a", "b"}
    g.advance(2)                             # the 5 s rebalance timeout is over
    assert list(g.group().members) == ["b"]
    r = g.hb("b", 2, owned={})
    assert (r.member_epoch, parts(r, t)) == (3, [0, 1])


def test_static_member_leaves_for_a_while_and_comes_back_under_a_new_id():
    g = Groups(**{"group.consumer.session.timeout.ms": 10_000})
    t = g.topic("orders", 4)
    g.hb("a1", 0, topics=["orders"], instance="inst-a")
    g.hb("b", 0, topics=["orders"])
    g.hb("a1", 1, owned={t: [0, 1, 2, 3]}, instance="inst-a")
    g.hb("a1", 1, owned={t: [0, 1]}, instance="inst-a")
    g.hb("b", 2, owned={})
    assert g.error("a2", 0, topics=["orders"], instance="inst-a") == \
        ErrorCode.UNRELEASED_INSTANCE_ID
    r = g.hb("a1", -2, instance="inst-a")
    assert r.member_epoch == -2
    epoch = g.group().group_epoch
    g.advance(5)
    g.hb("b", 2, owned={t: [2, 3]})
    # Back with a new member id: same partitions, no new group epoch, b undisturbed.
    r = g.hb("a2", 0, topics=["orders"], instance="inst-a")
    assert (r.member_epoch, parts(r, t)) == (2, [0, 1])
    assert g.group().group_epoch == epoch and set(g.group().members) == {"a2", "b"}
    assert g.group().static_members == {"inst-a": "a2"}
    assert g.error("a1", 2, owned={t: [0, 1]}, instance="inst-a") == ErrorCode.FENCED_INSTANCE_ID
    r = g.hb("b", 2, owned={t: [2, 3]})
    assert r.assignment is None and r.member_epoch == 2


def test_a_static_member_that_does_not_come_back_goes_after_its_session():
    g = Groups(**{"group.consumer.session.timeout.ms": 10_000})
    t = g.topic("orders", 2)
    g.hb("a1", 0, topics=["orders"], instance="inst-a")
    g.hb("b", 0, topics=["orders"])
    g.hb("a1", 1, owned={t: [0, 1]}, instance="inst-a")
    g.hb("a1", 1, owned={t: [0]}, instance="inst-a")
    g.hb("b", 2, owned={})
    g.hb("a1", -2, instance="inst-a")
    g.advance(6)
    r = g.hb("b", 2, owned={t: [1]})
    assert r.assignment is None              # a's partition stays reserved for it
    g.advance(6)
    assert set(g.group().members) == {"b"}
    r = g.hb("b", 2, owned={t: [1]})
    assert parts(r, t) == [0, 1]


def test_group_survives_a_restart():
    g = Groups()
    t = g.topic("orders", 4)
    g.hb("a", 0, topics=["orders"], instance="inst-a")
    g.hb("b", 0, topics=["orders"], assignor="uniform")
    g.hb("a", 1, owned={t: [0, 1, 2, 3]}, instance="inst-a")    # a is revoking
    group = g.group()
    group_ = g.gc.offsets.validate_offset_commit("g", 2, "b", None, 9)
    g.gc.offsets.store_offsets(group_, {("orders", 2): OffsetAndMetadata(42, commit_timestamp_ms=1)})
    g.hb("c", 0, topics=["orders"])
    g.hb("c", -1)                            # c leaves: its records get tombstones
    again = g.reopen()
    loaded = again.group()
    assert (loaded.group_epoch, loaded.assignment_epoch) == (group.group_epoch,
                                                             group.assignment_epoch)
    assert set(loaded.members) == {"a", "b"} and loaded.static_members == {"inst-a": "a"}
    for mid, m in group.members.items():
        n = loaded.members[mid]
        assert (n.member_epoch, n.previous_member_epoch, n.state, n.assigned,
                n.pending_revocation, n.subscribed_topic_names, n.server_assignor,
                n.client_id, n.rebalance_timeout_ms) == (
            m.member_epoch, m.previous_member_epoch, m.state, m.assigned, m.pending_revocation,
            m.subscribed_topic_names, m.server_assignor, m.client_id, m.rebalance_timeout_ms)
    assert loaded.target == {m: t_ for m, t_ in group.target.items() if m != "c"}
    assert loaded.offsets[("orders", 2)].offset == 42
    # The members carry on where they were.
    r = again.hb("a", group.members["a"].member_epoch, owned={t: [0, 1]}, instance="inst-a")
    assert r.member_epoch == loaded.assignment_epoch
    r = again.hb("b", loaded.members["b"].member_epoch, owned={})
    assert parts(r, t) == [2, 3]
    # What is stored is Kafka's record types: key versions 3 to 8, and 1 for the offset.
    assert set(g.stored_keys()) == {1, 3, 4, 5, 6, 7, 8}


def test_classic_and_consumer_groups_do_not_share_an_id():
    g = Groups()
    g.topic("orders", 1)
    coord = g.gc
    join = dict(client_id="c", client_host="/h", session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000, protocol_type="consumer",
                protocols=[("range", b"")], require_known_member_id=False)
    r = coord.classic.join(g.now, "classic", "", None, **join)
    assert (r.error, r.generation_id) == (0, 1)
    assert g.error("m", 0, group="classic", topics=["orders"]) == ErrorCode.GROUP_ID_NOT_FOUND
    g.hb("m", 0, topics=["orders"])
    # A classic member joins a consumer group with the consumer protocol type only (KIP-848
    # online migration serves the ones that do: tests/test_coordinator_group_migration.py).
    r = coord.classic.join(g.now, "g", "", None, **dict(join, protocol_type="connect"))
    assert r.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # An empty group of one kind gives its id (and its offsets) to the other.
    g.gc.offsets.store_offsets(g.group(), {("orders", 0): OffsetAndMetadata(7, commit_timestamp_ms=1)})
    g.hb("m", -1)
    coord.classic.join(g.now, "g", "", None, **join)
    assert "g" not in coord.consumer_groups and coord.groups["g"].offsets[("orders", 0)].offset == 7
    standalone = coord.offsets.validate_offset_commit("simple", -1, "", None, 9)
    coord.offsets.store_offsets(standalone, {("orders", 0): OffsetAndMetadata(3, commit_timestamp_ms=1)})
    g.hb("m", 0, group="simple", topics=["orders"])
    assert "simple" not in coord.groups
    assert coord.consumer_groups["simple"].offsets[("orders", 0)].offset == 3
    assert coord.offsets.fetch_offsets("simple", [("orders", [0])])["orders"][0][1].offset == 3


def test_offset_commits_and_fetches_of_members_name_their_epoch():
    g = Groups()
    g.topic("orders", 2)
    coord = g.gc
    g.hb("a", 0, topics=["orders"])
    g.hb("b", 0, topics=["orders"])           # a is still at epoch 1, b at 2
    assert coord.offsets.validate_offset_commit("g", 1, "a", None, 9) is g.group()
    for args, code in [(("g", 2, "a", None, 9), ErrorCode.STALE_MEMBER_EPOCH),
                       (("g", 1, "nobody", None, 9), ErrorCode.UNKNOWN_MEMBER_ID),
                       (("g", -1, "", None, 9), ErrorCode.UNKNOWN_MEMBER_ID),
                       (("g", 1, "a", None, 8), ErrorCode.UNSUPPORTED_VERSION)]:
        with pytest.raises(KafkaError) as e:
            coord.offsets.validate_offset_commit(*args)
        assert e.value.code == code, args
    coord.offsets.validate_offset_fetch("g", None, -1)          # admin clients
    coord.offsets.validate_offset_fetch("g", "b", 2)
    with pytest.raises(KafkaError) as e:
        coord.offsets.validate_offset_fetch("g", "b", 1)
    assert e.value.code == ErrorCode.STALE_MEMBER_EPOCH
    g.hb("a", -1)
    g.hb("b", -1)
    assert coord.offsets.validate_offset_commit("g", -1, "", None, 9) is g.group()   # empty: admin


def test_list_and_delete_consumer_groups():
    g = Groups()
    g.topic("orders", 1)
    coord = g.gc
    g.hb("a", 0, topics=["orders"])
    coord.offsets.store_offsets(coord.offsets.validate_offset_commit("classic", -1, "", None, 9),
                        {("orders", 0): OffsetAndMetadata(1, commit_timestamp_ms=1)})
    listed = {x.group_id: x for x in coord.list_groups()}
    assert set(listed) == {"g", "classic"}
    assert [x.group_id for x in coord.list_groups(types=["Consumer"])] == ["g"]
    assert [x.group_id for x in coord.list_groups(types=["classic"])] == ["classic"]
    assert [x.group_id for x in coord.list_groups(states=["stable"])] == ["g"]
    assert coord.delete_groups(["g"]) == {"g": ErrorCode.NON_EMPTY_GROUP}
    assert coord.offsets.delete_offsets("g", [("orders", 0), ("other", 0)]) == {
        ("orders", 0): ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, ("other", 0): ErrorCode.NONE}
    g.hb("a", -1)
    assert coord.delete_groups(["g"]) == {"g": ErrorCode.NONE}
    assert "g" not in coord.consumer_groups
    assert "g" not in g.reopen().gc.consumer_groups     # tombstones for all of it


async def test_timer_task_expires_consumer_group_sessions(autojump_clock):
    clock = Clock()
    logs = LogManager(None, clock=clock)
    logs.open()
    logs.create_topic("orders", 2, {})
    gc = GroupCoordinator(Config(**{"group.consumer.session.timeout.ms": 6000}), logs,
                          clock=clock)
    gc.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gc.run_timers)
        join = dict(rebalance_timeout_ms=10_000, subscribed_topic_names=["orders"],
                    topic_partitions=[])
        gc.consumer.consumer_group_heartbeat("g", "a", 0, **join)
        start = trio.current_time()
        with trio.fail_after(60):
            while gc.consumer_groups["g"].members:
                await trio.sleep(0.5)
        assert 6 <= trio.current_time() - start <= 7
        assert gc.consumer_groups["g"].state is ConsumerGroupState.EMPTY
        nursery.cancel_scope.cancel()


# --- offset expiry --------------------------------------------------------------------------

def test_offsets_expire_by_offsets_retention_minutes():
    g = Groups(**{"offsets.retention.minutes": 24 * 60})
    g.topic("orders", 3)
    g.topic("old", 1)
    coord = g.gc
    now_ms = 10 * DAY_MS

    def commit(group_id, tp, offset, when, expire=-1):
        group = coord.offsets.validate_offset_commit(group_id, -1, "", None, 9)
        coord.offsets.store_offsets(group, {tp: OffsetAndMetadata(offset, commit_timestamp_ms=when,
                                                          expire_timestamp_ms=expire)})

    # Standalone commits: a day after the commit, unless an explicit expiry says otherwise.
    commit("simple", ("orders", 0), 1, now_ms - DAY_MS)
    commit("simple", ("orders", 1), 2, now_ms - DAY_MS + 1000)
    commit("simple", ("orders", 2), 3, now_ms - 5 * DAY_MS, expire=now_ms + 1000)
    # A consumer group: offsets of topics it still subscribes to stay; others go.
    g.hb("a", 0, topics=["orders"])
    commit_group = coord.offsets.validate_offset_commit("g", 1, "a", None, 9)
    coord.offsets.store_offsets(commit_group, {
        ("orders", 0): OffsetAndMetadata(5, commit_timestamp_ms=now_ms - 3 * DAY_MS),
        ("old", 0): OffsetAndMetadata(6, commit_timestamp_ms=now_ms - 3 * DAY_MS)})
    assert coord.offsets.expire_offsets(now_ms) == 2
    assert set(coord.groups["simple"].offsets) == {("orders", 1), ("orders", 2)}
    assert set(g.group().offsets) == {("orders", 0)}
    assert coord.offsets.expire_offsets(now_ms + 2000) == 2
    # The group is empty and without offsets: it goes too, and stays gone after a restart.
    assert "simple" not in coord.groups
    again = g.reopen().gc
    assert "simple" not in again.groups
    assert set(again.consumer_groups["g"].offsets) == {("orders", 0)}
    assert again.offsets.fetch_offsets("simple", [("orders", [0, 1, 2])])["orders"] == [
        (0, None), (1, None), (2, None)]


def test_offsets_of_an_empty_classic_group_count_from_when_it_emptied():
    g = Groups(**{"offsets.retention.minutes": 60})
    g.topic("orders", 1)
    coord = g.gc
    subscription = schema.encode_record("ConsumerProtocolSubscription", schema.record(
        "ConsumerProtocolSubscription").cls(topics=["orders"]), 0)
    join = dict(client_id="c", client_host="/h", session_timeout_ms=10_000,
                rebalance_timeout_ms=10_000, protocol_type="consumer",
                protocols=[("range", subscription)], require_known_member_id=False)
    r = coord.classic.join(g.now, "cg", "", None, **join)
    group = coord.groups["cg"]
    member = r.member_id
    coord.classic.sync(g.now, "cg", group.generation_id, member, None, None, None, {})
    coord.offsets.store_offsets(group, {("orders", 0): OffsetAndMetadata(9, commit_timestamp_ms=0),
                                ("gone", 0): OffsetAndMetadata(8, commit_timestamp_ms=0)})
    # Stable: offsets of topics its members subscribe to stay, the others go.
    assert coord.offsets.expire_offsets(10 * DAY_MS) == 1
    assert set(group.offsets) == {("orders", 0)}
    coord.classic.leave_group("cg", [(member, None)])
    emptied = group.state_timestamp_ms
    assert group.state.value == "Empty"
    assert coord.offsets.expire_offsets(emptied + 59 * 60_000) == 0
    assert coord.offsets.expire_offsets(emptied + 60 * 60_000) == 1
    assert "cg" not in coord.groups


def test_the_timer_checks_offsets_every_interval():
    g = Groups(**{"offsets.retention.check.interval.ms": 1000, "offsets.retention.minutes": 1})
    g.topic("orders", 1)
    coord = g.gc
    group = coord.offsets.validate_offset_commit("simple", -1, "", None, 9)
    coord.offsets.store_offsets(group, {("orders", 0): OffsetAndMetadata(1, commit_timestamp_ms=1)})
    assert coord.next_deadline() == START + 1
    g.advance(0.5)
    assert "simple" in coord.groups
    g.advance(0.6)                           # the check ran, with the wall clock: long expired
    assert "simple" not in coord.groups
    assert coord.next_deadline() == START + 2.1


# --- the APIs through the wire codec ----------------------------------------------------------

class Wire:
    def __init__(self, broker: BrokerState):
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
    broker.create_topic("orders", 3)
    yield Wire(broker)
    broker.close()


HB = ApiKey.CONSUMER_GROUP_HEARTBEAT
HbReq = protocol.request_class(HB)


async def test_heartbeat_and_describe_over_the_wire(wire):
    orders = wire.broker.topic("orders").topic_id
    r = await wire.call(HB, 1, "cli-a", group_id="wg", member_id="m-a", member_epoch=0,
                        rebalance_timeout_ms=30_000, subscribed_topic_names=["orders"],
                        server_assignor="range", topic_partitions=[])
    assert (r.error_code, r.member_id, r.member_epoch, r.heartbeat_interval_ms) == \
        (0, "m-a", 1, 5000)
    assert [(tp.topic_id, tp.partitions) for tp in r.assignment.topic_partitions] == \
        [(orders, [0, 1, 2])]
    r = await wire.call(HB, 1, "cli-a", group_id="wg", member_id="m-a", member_epoch=1,
                        topic_partitions=[HbReq.TopicPartitions(topic_id=orders,
                                                                partitions=[0, 1, 2])])
    assert (r.error_code, r.member_epoch, r.assignment) == (0, 1, None)
    r = await wire.call(HB, 1, group_id="wg", member_id="m-a", member_epoch=7)
    assert r.error_code == ErrorCode.FENCED_MEMBER_EPOCH and "epoch" in r.error_message
    r = await wire.call(HB, 0, group_id="wg", member_id="", member_epoch=0,
                        rebalance_timeout_ms=30_000, subscribed_topic_names=["orders"],
                        topic_partitions=[])
    assert r.error_code == 0 and len(r.member_id) == 36 and r.member_epoch == 2
    d = await wire.call(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, group_ids=["wg", "nope"],
                        include_authorized_operations=False)
    wg, nope = d.groups
    assert nope.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    assert (wg.error_code, wg.group_state, wg.group_epoch, wg.assignment_epoch,
            wg.assignor_name) == (0, "Reconciling", 2, 2, "range")
    a = next(m for m in wg.members if m.member_id == "m-a")
    assert (a.client_id, a.client_host, a.member_epoch, a.subscribed_topic_names) == \
        ("cli-a", "/10.1.2.3", 1, ["orders"])
    assert [(tp.topic_name, tp.partitions) for tp in a.assignment.topic_partitions] == \
        [("orders", [0, 1, 2])]
    assert sum(len(tp.partitions) for m in wg.members
               for tp in m.target_assignment.topic_partitions) == 3
    groups = await wire.call(ApiKey.LIST_GROUPS, 5, states_filter=[], types_filter=["consumer"])
    assert [(x.group_id, x.protocol_type, x.group_state, x.group_type) for x in groups.groups] \
        == [("wg", "consumer", "Reconciling", "consumer")]
    described = await wire.call(ApiKey.DESCRIBE_GROUPS, 5, groups=["wg"])
    assert (described.groups[0].error_code, described.groups[0].group_state,
            described.groups[0].members) == (0, "Dead", [])


async def test_offset_commit_and_fetch_with_member_epochs_over_the_wire(wire):
    orders = wire.broker.topic("orders").topic_id
    await wire.call(HB, 1, group_id="og", member_id="m", member_epoch=0,
                    rebalance_timeout_ms=30_000, subscribed_topic_names=["orders"],
                    topic_partitions=[])
    commit = protocol.request_class(ApiKey.OFFSET_COMMIT)
    topic = commit.OffsetCommitRequestTopic
    part = topic.OffsetCommitRequestPartition

    async def commit_at(epoch):
        r = await wire.call(ApiKey.OFFSET_COMMIT, 9, group_id="og",
                            generation_id_or_member_epoch=epoch, member_id="m", topics=[
                                topic(name="orders", partitions=[
                                    part(partition_index=1, committed_offset=11,
                                         committed_metadata="")])])
        return r.topics[0].partitions[0].error_code

    assert await commit_at(0) == ErrorCode.STALE_MEMBER_EPOCH
    assert await commit_at(1) == ErrorCode.NONE
    fetch = protocol.request_class(ApiKey.OFFSET_FETCH)

    async def fetch_at(epoch):
        r = await wire.call(ApiKey.OFFSET_FETCH, 9, groups=[fetch.OffsetFetchRequestGroup(
            group_id="og", member_id="m", member_epoch=epoch, topics=[
                fetch.OffsetFetchRequestGroup.OffsetFetchRequestTopics(
                    name="orders", partition_indexes=[1])])], require_stable=False)
        return r.groups[0]

    got = await fetch_at(1)
    assert got.error_code == 0 and got.topics[0].partitions[0].committed_offset == 11
    assert (await fetch_at(5)).error_code == ErrorCode.STALE_MEMBER_EPOCH
    assert orders is not None
    key = current_assignment_key("og", "m")
    assert key[:2] == b"\x00\x08"
    assert wire.broker.logs.topic(OFFSETS_TOPIC) is not None
