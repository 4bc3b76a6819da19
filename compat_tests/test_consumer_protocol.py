"""KIP-848 consumer groups (`group.protocol=consumer`) with confluent-kafka (librdkafka 2.16) over a
real broker: the broker assigns (`group.remote.assignor` uniform or range), members revoke before
others are given their partitions, leave, die, resume from committed offsets across consumer and
broker restarts; admin clients describe (ConsumerGroupDescribe) and list them.

Every assertion is on what the clients got back from the broker; every wait polls a condition with
a deadline. The brokers here answer heartbeats every 300 ms (`group.consumer.heartbeat.interval.ms`)
so that rebalances take fractions of a second instead of Kafka's 5 s steps.
"""

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import (next_records, partitions_of, polled, produce_confluent, split_evenly,
                     value_records)
from harness import RawConnection, create_topic, group_member, unique, wait_for
from trioka.testing.process import BrokerProcess

TIMEOUT = 30
PARTITIONS = 6
HEARTBEAT_MS = 300
SESSION_MS = 3000
FAST = {"group.consumer.heartbeat.interval.ms": HEARTBEAT_MS,
        "group.consumer.session.timeout.ms": SESSION_MS}


@pytest.fixture(scope="module")
def broker848():
    with BrokerProcess(overrides=FAST) as b:
        yield b.start()


@pytest.fixture
def own_broker848():
    with BrokerProcess(overrides=FAST) as b:
        yield b.start()


@pytest.fixture
def topic6(broker848, topic_name):
    create_topic(broker848.bootstrap, topic_name, PARTITIONS)
    return topic_name


def consumer(bootstrap: str, group: str, **conf) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "group.protocol": "consumer", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, **conf})


def poll_until(consumers, done, what: str, timeout: float = TIMEOUT):
    """Poll every consumer (librdkafka serves assignment changes from poll) until `done()`."""
    wait_for(polled(consumers, done), timeout,
             lambda: f"{what}; assignments {[partitions_of(c) for c in consumers]}",
             interval=0)


def split(assignments: list[list[int]]) -> bool:
    return split_evenly(assignments, PARTITIONS)


class Ownership:
    """The partitions each consumer holds, from its own on_assign/on_revoke callbacks (librdkafka
    calls them incrementally under this protocol), checked at every event: a partition is never
    held by two consumers at once."""

    def __init__(self):
        self.held: dict[str, set[int]] = {}
        self.events: list[tuple[str, str, list[int]]] = []
        self.overlaps: list = []

    def subscribe(self, c: Consumer, name: str, topic: str) -> None:
        self.held[name] = set()

        def assigned(cons, tps):
            self.events.append((name, "assign", sorted(tp.partition for tp in tps)))
            self.held[name].update(tp.partition for tp in tps)
            for other, parts in self.held.items():
                if other != name and parts & self.held[name]:
                    self.overlaps.append((name, other, sorted(parts & self.held[name])))

        def revoked(cons, tps):
            self.events.append((name, "revoke", sorted(tp.partition for tp in tps)))
            self.held[name].difference_update(tp.partition for tp in tps)

        c.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)


# --- assignment, rebalances, leaving, dying ---------------------------------------------------

# Heartbeats far apart (the broker tells members the interval), so that a member's heartbeats are
# easy to count: one that is not answered with the assignment is followed by another only 10 s
# later.
SLOW_HEARTBEATS = {"group.consumer.heartbeat.interval.ms": 10_000,
                   "group.consumer.session.timeout.ms": 45_000}


@pytest.fixture(scope="module")
def slow_heartbeat_broker():
    with BrokerProcess(overrides=SLOW_HEARTBEATS) as b:
        yield b.start()


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_first_consumer_gets_every_partition_in_the_first_heartbeat_answer(
        slow_heartbeat_broker, topic_name, assignor):
    """The broker assigns at once: the answer to a new group's first member's first
    ConsumerGroupHeartbeat carries every partition, no second heartbeat is needed."""
    b = slow_heartbeat_broker
    create_topic(b.bootstrap, topic_name, PARTITIONS)
    client = unique("first")
    rule = b.controls.watch(api="ConsumerGroupHeartbeat", client_id=client)["id"]
    c = consumer(b.bootstrap, unique("first"), **{"group.remote.assignor": assignor,
                                                  "client.id": client})
    sent = []
    try:
        c.subscribe([topic_name], on_assign=lambda cons, ps: sent.append(
            (sorted(tp.partition for tp in ps), b.controls.matched(rule))))
        poll_until([c], lambda: bool(sent), "first member")
        assert sent[0] == (list(range(PARTITIONS)), 1), \
            f"assigned {sent[0][0]} after {sent[0][1]} heartbeats"
    finally:
        b.controls.remove(rule)
        c.close()


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_second_member_splits_partitions_without_overlap(broker848, topic6, assignor):
    group = unique("split")
    own = Ownership()
    a = consumer(broker848.bootstrap, group, **{"group.remote.assignor": assignor,
                                                 "client.id": "member-a"})
    b = consumer(broker848.bootstrap, group, **{"group.remote.assignor": assignor,
                                                 "client.id": "member-b"})
    try:
        own.subscribe(a, "a", topic6)
        poll_until([a], lambda: own.held["a"] == set(range(PARTITIONS)), "first member")
        own.subscribe(b, "b", topic6)
        poll_until([a, b], lambda: split([sorted(own.held["a"]), sorted(own.held["b"])]),
                   "two members splitting")
        assert not own.overlaps, own.events
        # What the callbacks said is what the clients hold, and what the broker describes.
        assert [sorted(own.held[n]) for n in "ab"] == [partitions_of(a), partitions_of(b)]
        # a gave up partitions (revoke) before b got any (assign).
        first_revoke = next(i for i, e in enumerate(own.events) if e[1] == "revoke")
        first_b = next(i for i, e in enumerate(own.events) if e[0] == "b" and e[2])
        assert first_revoke < first_b, own.events
        if assignor == "range":
            for parts in own.held.values():
                assert sorted(parts) == list(range(min(parts), max(parts) + 1))
        admin = AdminClient({"bootstrap.servers": broker848.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
        assert desc.partition_assignor == assignor
        assert sorted((m.client_id, sorted(tp.partition for tp in m.assignment.topic_partitions))
                      for m in desc.members) == sorted(
            [("member-a", sorted(own.held["a"])), ("member-b", sorted(own.held["b"]))])
    finally:
        a.close()
        b.close()


def test_a_member_that_leaves_hands_its_partitions_back(broker848, topic6):
    group = unique("leave")
    own = Ownership()
    a, b = (consumer(broker848.bootstrap, group) for _ in range(2))
    try:
        own.subscribe(a, "a", topic6)
        own.subscribe(b, "b", topic6)
        poll_until([a, b], lambda: split([partitions_of(a), partitions_of(b)]), "two members")
        b.close()                 # ConsumerGroupHeartbeat with member epoch -1
        poll_until([a], lambda: partitions_of(a) == list(range(PARTITIONS)),
                   "survivor takes every partition")
        assert not own.overlaps, own.events
    finally:
        a.close()


def test_partitions_of_a_killed_member_move_after_the_session_timeout(broker848, topic6):
    group = unique("killed")
    child = group_member({"bootstrap.servers": broker848.bootstrap, "group.id": group,
                          "group.protocol": "consumer"}, topic6)
    a = consumer(broker848.bootstrap, group)
    try:
        a.subscribe([topic6])
        poll_until([a], lambda: child.alive() and split([partitions_of(a),
                                                         child.latest("assignment", [])]),
                   "a member here and one in a child process")
        child.kill()             # no leave: only the session timeout tells
        killed = time.monotonic()
        poll_until([a], lambda: partitions_of(a) == list(range(PARTITIONS)),
                   "survivor takes every partition", timeout=TIMEOUT + SESSION_MS / 1000)
        # Not before the session timeout (less a heartbeat interval) ran out.
        assert time.monotonic() - killed > (SESSION_MS - HEARTBEAT_MS) / 1000
    finally:
        child.kill()
        a.close()


def test_regex_subscription_picks_up_new_topics(broker848):
    prefix = unique("rx")
    create_topic(broker848.bootstrap, f"{prefix}-a", 2)
    c = consumer(broker848.bootstrap, unique("regex"))
    try:
        c.subscribe([f"^{prefix}-.*"])
        poll_until([c], lambda: len(c.assignment()) == 2, "the matching topic")
        create_topic(broker848.bootstrap, f"{prefix}-b", 3)
        poll_until([c], lambda: len(c.assignment()) == 5, "the new matching topic")
        assert sorted((tp.topic, tp.partition) for tp in c.assignment()) == \
            [(f"{prefix}-a", p) for p in range(2)] + [(f"{prefix}-b", p) for p in range(3)]
    finally:
        c.close()


# --- committed offsets ------------------------------------------------------------------------

def produce(bootstrap: str, topic: str, values, partition: int = 0) -> None:
    produce_confluent(bootstrap, topic, value_records(values, partition),
                      config={"linger.ms": 5})


def consume_values(bootstrap: str, group: str, topic: str, count: int, *,
                   commit: bool = True) -> list[tuple[int, bytes]]:
    """(offset, value) of the next `count` records the group reads, then a synchronous commit
    (OffsetCommit v9 with the member epoch) and close."""
    c = consumer(bootstrap, group)

    def committing(m, got):
        if commit and len(got) == count:
            c.commit(message=m, asynchronous=False)

    try:
        c.subscribe([topic])
        got = next_records(c, count, TIMEOUT, on_record=committing, skip_errors=True)
    finally:
        c.close()
    return [(m.offset(), m.value()) for m in got]


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = consumer(bootstrap, group)
    try:
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
        return tp.offset
    finally:
        c.close()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_committed_offsets_survive_consumer_and_broker_restarts(own_broker848, topic_name, kill):
    bootstrap = own_broker848.bootstrap
    create_topic(bootstrap, topic_name, 1)
    produce(bootstrap, topic_name, [f"v{i}".encode() for i in range(10)])
    group = unique("offsets")
    assert consume_values(bootstrap, group, topic_name, 4) == \
        [(i, f"v{i}".encode()) for i in range(4)]
    assert committed(bootstrap, group, topic_name) == 4
    assert consume_values(bootstrap, group, topic_name, 2) == [(4, b"v4"), (5, b"v5")]
    own_broker848.restart(kill=kill)
    assert committed(own_broker848.bootstrap, group, topic_name) == 6
    assert consume_values(own_broker848.bootstrap, group, topic_name, 4, commit=False) == \
        [(i, f"v{i}".encode()) for i in range(6, 10)]


def test_member_carries_on_across_a_broker_restart(own_broker848, topic_name):
    """The group is loaded back from __consumer_offsets: the member keeps heartbeating with its
    epoch, keeps its partitions (no revocation) and reads what is produced after the restart."""
    create_topic(own_broker848.bootstrap, topic_name, 2)
    own = Ownership()
    c = consumer(own_broker848.bootstrap, unique("survivor"), **{"reconnect.backoff.max.ms": 200})
    try:
        own.subscribe(c, "c", topic_name)
        poll_until([c], lambda: partitions_of(c) == [0, 1], "assignment")
        own_broker848.restart()
        produce(own_broker848.bootstrap, topic_name, [b"after"], partition=1)
        [m] = next_records(c, 1, TIMEOUT, skip_errors=True)
        assert (m.partition(), m.offset(), m.value()) == (1, 0, b"after")
        assert partitions_of(c) == [0, 1]
        assert [e[1] for e in own.events] == ["assign"], own.events
    finally:
        c.close()


# --- admin clients ----------------------------------------------------------------------------

def test_admin_describes_and_lists_consumer_groups(broker848, topic6):
    from confluent_kafka import ConsumerGroupState, ConsumerGroupType
    group = unique("admin")
    admin = AdminClient({"bootstrap.servers": broker848.bootstrap})
    cs = [consumer(broker848.bootstrap, group, **{"client.id": f"admin-{i}"}) for i in range(2)]
    try:
        for c in cs:
            c.subscribe([topic6])
        poll_until(cs, lambda: split([partitions_of(c) for c in cs]), "two members")
        desc = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
        assert (desc.state, desc.type, desc.partition_assignor) == \
            (ConsumerGroupState.STABLE, ConsumerGroupType.CONSUMER, "uniform")
        assert sorted(m.client_id for m in desc.members) == ["admin-0", "admin-1"]
        assert all(m.host == "/127.0.0.1" for m in desc.members)
        assert sorted(sorted(tp.partition for tp in m.assignment.topic_partitions)
                      for m in desc.members) == sorted(partitions_of(c) for c in cs)
        assert all(tp.topic == topic6 for m in desc.members
                   for tp in m.assignment.topic_partitions)
        listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=TIMEOUT).valid}
        assert (listed[group].state, listed[group].type) == \
            (ConsumerGroupState.STABLE, ConsumerGroupType.CONSUMER)
        only_classic = admin.list_consumer_groups(
            types={ConsumerGroupType.CLASSIC}).result(timeout=TIMEOUT).valid
        assert group not in {g.group_id for g in only_classic}
        cs[0].commit(offsets=[TopicPartition(topic6, partitions_of(cs[0])[0], 3)],
                     asynchronous=False)
    finally:
        for c in cs:
            c.close()
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=TIMEOUT).valid}
    assert listed[group].state == ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group])[group].result(timeout=TIMEOUT)
    assert group not in {g.group_id for g in
                         admin.list_consumer_groups().result(timeout=TIMEOUT).valid}


# --- the wire, for what no stock client sends -------------------------------------------------

def test_consumer_and_classic_groups_keep_to_their_own_ids(broker848, topic6):
    """A group id with classic members is refused to a ConsumerGroupHeartbeat that does not join
    (GROUP_ID_NOT_FOUND; one that joins upgrades it online: test_group_migration.py), one with
    consumer-protocol members to a JoinGroup of another protocol type
    (INCONSISTENT_GROUP_PROTOCOL)."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    from trioka.wire.errors import ErrorCode
    hb = protocol.request_class(ApiKey.CONSUMER_GROUP_HEARTBEAT)
    join = protocol.request_class(ApiKey.JOIN_GROUP)
    classic_group, modern_group = unique("classic"), unique("modern")
    classic = Consumer({"bootstrap.servers": broker848.bootstrap, "group.id": classic_group,
                        "session.timeout.ms": 6000, "heartbeat.interval.ms": 200})
    modern = consumer(broker848.bootstrap, modern_group)
    try:
        classic.subscribe([topic6])
        modern.subscribe([topic6])
        poll_until([classic, modern], lambda: len(classic.assignment()) == PARTITIONS and
                   len(modern.assignment()) == PARTITIONS, "both groups")
        with RawConnection(broker848.bootstrap) as conn:
            r = conn.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, hb(
                group_id=classic_group, member_id="raw-member", member_epoch=5,
                rebalance_timeout_ms=10_000, subscribed_topic_names=[topic6],
                topic_partitions=[]))
            assert r.error_code == ErrorCode.GROUP_ID_NOT_FOUND
            assert "not a consumer group" in r.error_message
            r = conn.request(ApiKey.JOIN_GROUP, 5, join(
                group_id=modern_group, session_timeout_ms=10_000, rebalance_timeout_ms=10_000,
                member_id="", group_instance_id=None, protocol_type="connect",
                protocols=[join.JoinGroupRequestProtocol(name="range", metadata=b"")]))
            assert r.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
            r = conn.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, hb(
                group_id=modern_group, member_id="raw-member", member_epoch=0,
                rebalance_timeout_ms=10_000, subscribed_topic_names=[topic6],
                server_assignor="sticky", topic_partitions=[]))
            assert r.error_code == ErrorCode.UNSUPPORTED_ASSIGNOR
        # Neither group noticed.
        assert len(classic.assignment()) == PARTITIONS and len(modern.assignment()) == PARTITIONS
    finally:
        classic.close()
        modern.close()
