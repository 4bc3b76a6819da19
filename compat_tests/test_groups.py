"""Consumer groups (classic protocol) and committed offsets with stock clients over a real broker.

confluent-kafka (librdkafka), kafka-python and aiokafka consumers join groups, get assignments
from their own assignors through the broker (range, roundrobin, cooperative-sticky), rebalance when
a member leaves or dies, come back as static members, commit offsets and resume from them across
consumer and broker restarts. Admin clients list, describe and delete the groups. Every assertion
is on what the clients got back from the broker; every wait polls a condition with a deadline.
"""

import asyncio
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from clients import (next_records, partitions_of, polled, produce_confluent, split_evenly,
                     value_records)
from harness import create_topic, group_member, unique, wait_for

TIMEOUT = 30
PARTITIONS = 6
# Short heartbeats make rebalances quick; 6 s is the smallest session timeout the broker allows.
GROUP_CONF = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
              "auto.offset.reset": "earliest", "enable.auto.commit": False}


def consumer(bootstrap: str, group: str, **conf) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, **GROUP_CONF, **conf})


def produce(bootstrap: str, topic: str, values, partition: int = 0) -> None:
    produce_confluent(bootstrap, topic, value_records(values, partition),
                      config={"linger.ms": 5})


def poll_until(consumers, done, what: str, timeout: float = TIMEOUT):
    """Poll every consumer (librdkafka serves rebalances from poll) until `done()` holds."""
    wait_for(polled(consumers, done), timeout,
             lambda: f"{what}; assignments {[partitions_of(c) for c in consumers]}",
             interval=0)


def even(assignments: list[list[int]]) -> bool:
    return split_evenly(assignments, PARTITIONS)


def describe(bootstrap: str, group: str):
    """The group as confluent-kafka's admin client describes it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})   # alive until the answer is in
    return admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)


@pytest.fixture
def topic6(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, PARTITIONS)
    return topic_name


# --- confluent-kafka: assignors, leaving, dying, static members -------------------------------

@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
@pytest.mark.parametrize("members", [2, 3])
def test_confluent_group_splits_partitions(broker, topic6, strategy, members):
    group = unique("split")
    cs = [consumer(broker.bootstrap, group, **{"partition.assignment.strategy": strategy,
                                               "client.id": f"member-{i}"})
          for i in range(members)]
    try:
        for c in cs:
            c.subscribe([topic6])
        poll_until(cs, lambda: even([partitions_of(c) for c in cs]),
                   f"{members} {strategy} members splitting {PARTITIONS} partitions")
        assignments = [partitions_of(c) for c in cs]
        if strategy == "range":
            # The range assignor gives each member one contiguous block.
            assert all(a == list(range(a[0], a[0] + len(a))) for a in assignments)
        # The broker describes the same split (from the bytes the leader sent).
        desc = describe(broker.bootstrap, group)
        assert desc.state.name == "STABLE" and desc.partition_assignor == strategy
        described = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions)
                           for m in desc.members)
        assert described == sorted(assignments)
        assert sorted(m.client_id for m in desc.members) == \
            [f"member-{i}" for i in range(members)]
        assert all(m.host == "/127.0.0.1" for m in desc.members)
    finally:
        for c in cs:
            c.close()


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_partitions_of_a_member_that_leaves_move(broker, topic6, strategy):
    group = unique("leave")
    a, b = (consumer(broker.bootstrap, group, **{"partition.assignment.strategy": strategy})
            for _ in range(2))
    try:
        a.subscribe([topic6])
        b.subscribe([topic6])
        poll_until([a, b], lambda: even([partitions_of(a), partitions_of(b)]),
                   "two members")
        b.close()                  # LeaveGroup
        poll_until([a], lambda: partitions_of(a) == list(range(PARTITIONS)),
                   "survivor takes every partition")
    finally:
        a.close()


def test_partitions_of_a_killed_member_move_after_session_timeout(broker, topic6):
    group = unique("killed")
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, **GROUP_CONF}
    child = group_member(conf, topic6)
    a = consumer(broker.bootstrap, group)
    try:
        a.subscribe([topic6])
        poll_until([a], lambda: child.alive() and even([partitions_of(a),
                                                        child.latest("assignment", [])]),
                   "member in this process and member in a child process")
        child.kill()               # no LeaveGroup: only the session timeout tells
        killed = time.monotonic()
        poll_until([a], lambda: partitions_of(a) == list(range(PARTITIONS)),
                   "survivor takes every partition", timeout=TIMEOUT + 6)
        # Not before the 6 s session timeout (less one heartbeat interval) ran out.
        assert time.monotonic() - killed > 5
    finally:
        child.kill()
        a.close()


def test_static_member_restart_gets_its_partitions_back_without_rebalance(broker, topic6):
    group = unique("static")
    a_client = unique("static-a")
    events = []
    a = consumer(broker.bootstrap, group, **{"group.instance.id": "instance-a",
                                             "client.id": a_client})
    b = consumer(broker.bootstrap, group, **{"group.instance.id": "instance-b"})
    rules = []
    try:
        a.subscribe([topic6], on_assign=lambda c, ps: events.append("assign"),
                    on_revoke=lambda c, ps: events.append("revoke"))
        b.subscribe([topic6])
        poll_until([a, b], lambda: even([partitions_of(a), partitions_of(b)]),
                   "two static members")
        before_a, before_b = partitions_of(a), partitions_of(b)
        seen = list(events)
        # What the other member sends from now on (the broker counts it).
        rules += [broker.controls.watch(api=api, client_id=a_client)["id"]
                  for api in ("JoinGroup", "Heartbeat")]
        joins, heartbeats = rules
        b.close()                  # a static member sends no LeaveGroup
        b = consumer(broker.bootstrap, group, **{"group.instance.id": "instance-b"})
        b.subscribe([topic6])
        poll_until([a, b], lambda: partitions_of(b) == before_b, "restarted static member")
        # Had the broker started a rebalance, the answer to the other member's next heartbeat
        # would have said so, and it would have joined again: three heartbeats later it has not.
        after = broker.controls.matched(heartbeats)
        poll_until([a, b], lambda: broker.controls.matched(heartbeats) >= after + 3,
                   "three more heartbeats of the other member")
        assert broker.controls.matched(joins) == 0, "the other member joined again"
        assert events == seen, "the other member was rebalanced"
        assert partitions_of(a) == before_a and partitions_of(b) == before_b
        desc = describe(broker.bootstrap, group)
        assert desc.state.name == "STABLE"
        assert sorted(m.group_instance_id for m in desc.members) == ["instance-a", "instance-b"]
    finally:
        for rule in rules:
            broker.controls.remove(rule)
        a.close()
        b.close()


def test_first_assignment_takes_one_join_round(broker, topic_name):
    """The first member of a new group is assigned without waiting for others: the broker's
    group.initial.rebalance.delay.ms is 0, and the member joins once (its JoinGroup answered
    MEMBER_ID_REQUIRED, KIP-394, then the JoinGroup with its member id) and syncs once."""
    create_topic(broker.bootstrap, topic_name, 1)
    client = unique("first")
    rules = [broker.controls.watch(api=api, client_id=client)["id"]
             for api in ("JoinGroup", "SyncGroup")]
    c = consumer(broker.bootstrap, unique("fast"), **{"client.id": client})
    sent = []
    try:
        c.subscribe([topic_name], on_assign=lambda cons, ps: sent.append(
            [broker.controls.matched(rule) for rule in rules]))
        poll_until([c], lambda: bool(sent), "first assignment")
        assert sent[0] == [2, 1], f"JoinGroup and SyncGroup requests before it: {sent[0]}"
    finally:
        for rule in rules:
            broker.controls.remove(rule)
        c.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource("broker", "1")
    configs = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    assert configs["group.initial.rebalance.delay.ms"].value == "0"


# --- kafka-python and aiokafka groups -----------------------------------------------------

def test_kafka_python_group(broker, topic6):
    from kafka import KafkaConsumer
    group = unique("kafka-python")
    stop = threading.Event()
    assignments: dict[int, list[int]] = {}
    failures = []

    def member(i):
        # kafka-python's poll blocks during a rebalance, so each member gets its own thread.
        # Its poll timeout stays long: kafka-python 3.0.12 can lose a rebalance that completes
        # just after a poll gave up waiting for it (the member then stops heartbeating).
        try:
            c = KafkaConsumer(topic6, bootstrap_servers=broker.bootstrap, group_id=group,
                              session_timeout_ms=6000, heartbeat_interval_ms=200,
                              auto_offset_reset="earliest", client_id=f"kp-{i}")
            try:
                while not stop.is_set():
                    c.poll(timeout_ms=1000)
                    assignments[i] = sorted(tp.partition for tp in c.assignment())
            finally:
                c.close()
        except Exception as e:     # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: failures or even([assignments.get(0, []), assignments.get(1, [])]),
                 TIMEOUT, lambda: f"two kafka-python members splitting: {assignments}")
        assert not failures, failures
        assert even([assignments.get(0, []), assignments.get(1, [])]), assignments
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)


def test_aiokafka_group(broker, topic6):
    from aiokafka import AIOKafkaConsumer
    group = unique("aiokafka")

    # The members' event loop, driven by this thread one round of getmany() at a time.
    loop = asyncio.new_event_loop()

    def run(coro):
        return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    async def started():
        cs = [AIOKafkaConsumer(topic6, bootstrap_servers=broker.bootstrap, group_id=group,
                               session_timeout_ms=6000, heartbeat_interval_ms=200,
                               auto_offset_reset="earliest") for _ in range(2)]
        for c in cs:
            await c.start()
        return cs

    cs = []
    got = []

    async def fetch_round():
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in cs))

    def split():
        run(fetch_round())
        got[:] = [sorted(tp.partition for tp in c.assignment()) for c in cs]
        return even(got)

    try:
        cs = run(started())
        wait_for(split, TIMEOUT, lambda: f"aiokafka members splitting the partitions: {got}",
                 interval=0)
    finally:
        for c in cs:
            run(c.stop())
        loop.close()


# --- committed offsets ----------------------------------------------------------------------

def consume_values(bootstrap: str, group: str, topic: str, count: int, *,
                   commit: bool = False, **conf) -> list[tuple[int, bytes]]:
    """(offset, value) of the next `count` records the group's consumer reads (then commits
    synchronously after the last one, if asked) before it closes."""
    c = consumer(bootstrap, group, **conf)

    def committing(m, got):
        if commit and len(got) == count:
            c.commit(message=m, asynchronous=False)

    try:
        c.subscribe([topic])
        got = next_records(c, count, TIMEOUT, on_record=committing, skip_errors=True)
    finally:
        c.close()
    return [(m.offset(), m.value()) for m in got]


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    c = consumer(bootstrap, group)
    try:
        [tp] = c.committed([TopicPartition(topic, partition)], timeout=TIMEOUT)
        return tp.offset
    finally:
        c.close()


def test_consumer_restart_resumes_at_committed_offset(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    produce(broker.bootstrap, topic_name, [f"v{i}".encode() for i in range(10)])
    group = unique("resume")
    assert consume_values(broker.bootstrap, group, topic_name, 4, commit=True) == \
        [(i, f"v{i}".encode()) for i in range(4)]
    assert committed(broker.bootstrap, group, topic_name) == 4
    assert consume_values(broker.bootstrap, group, topic_name, 3, commit=True) == \
        [(i, f"v{i}".encode()) for i in range(4, 7)]
    # kafka-python reads the same commit.
    from kafka import KafkaConsumer, TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                       enable_auto_commit=False)
    try:
        assert kc.committed(KTP(topic_name, 0)) == 7
    finally:
        kc.close()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_committed_offsets_survive_broker_restart(own_broker, topic_name, kill):
    bootstrap = own_broker.bootstrap
    create_topic(bootstrap, topic_name, 1)
    produce(bootstrap, topic_name, [f"v{i}".encode() for i in range(10)])
    group = unique("restart")
    consume_values(bootstrap, group, topic_name, 5, commit=True)
    own_broker.restart(kill=kill)
    assert committed(own_broker.bootstrap, group, topic_name) == 5
    assert consume_values(own_broker.bootstrap, group, topic_name, 2, commit=True) == \
        [(5, b"v5"), (6, b"v6")]
    own_broker.restart(kill=kill)
    assert consume_values(own_broker.bootstrap, group, topic_name, 3) == \
        [(7, b"v7"), (8, b"v8"), (9, b"v9")]


def test_group_keeps_running_across_broker_restart(own_broker, topic_name):
    """A Stable group is loaded back Stable: its member keeps heartbeating and keeps its
    partitions, with no rebalance."""
    create_topic(own_broker.bootstrap, topic_name, 2)
    events = []
    c = consumer(own_broker.bootstrap, unique("survivor"), **{"reconnect.backoff.max.ms": 200})
    try:
        c.subscribe([topic_name], on_assign=lambda cons, ps: events.append("assign"),
                    on_revoke=lambda cons, ps: events.append("revoke"))
        poll_until([c], lambda: partitions_of(c) == [0, 1], "assignment")
        own_broker.restart()
        produce(own_broker.bootstrap, topic_name, [b"after"], partition=1)
        [m] = next_records(c, 1, TIMEOUT, skip_errors=True)
        assert (m.partition(), m.offset(), m.value()) == (1, 0, b"after")
        assert events == ["assign"]
    finally:
        c.close()


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_new_group_follows_auto_offset_reset(broker, topic_name, reset):
    create_topic(broker.bootstrap, topic_name, 1)
    produce(broker.bootstrap, topic_name, [b"old-0", b"old-1", b"old-2"])
    c = consumer(broker.bootstrap, unique("reset"), **{"auto.offset.reset": reset})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    got, sent = [], []

    def first_record():
        if reset == "latest" and c.assignment():
            # Keep producing until the consumer, positioned at the end, sees one.
            sent.append(f"new-{len(sent)}".encode())
            p.produce(topic_name, sent[-1], partition=0)
            p.poll(0)
        m = c.poll(0.1)
        if m is not None and m.error() is None:
            got.append((m.offset(), m.value()))
        return got

    try:
        c.subscribe([topic_name])
        [first] = wait_for(first_record, TIMEOUT, "the group's first record", interval=0)
        p.flush(TIMEOUT)
    finally:
        c.close()
    if reset == "earliest":
        assert first == (0, b"old-0")
    else:
        assert first[0] >= 3 and first[1].startswith(b"new-"), first


# --- admin clients ------------------------------------------------------------------------

def test_confluent_admin_lists_describes_and_deletes_groups(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    produce(broker.bootstrap, topic_name, [b"x"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    group = unique("admin")
    c = consumer(broker.bootstrap, group, **{"client.id": "admin-test-member"})
    try:
        c.subscribe([topic_name])
        poll_until([c], lambda: partitions_of(c) == [0, 1], "assignment")
        listed = {g.group_id: g for g in
                  admin.list_consumer_groups().result(timeout=TIMEOUT).valid}
        assert group in listed and listed[group].state.name == "STABLE"
        assert not listed[group].is_simple_consumer_group
        desc = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
        [m] = desc.members
        assert (m.client_id, m.host) == ("admin-test-member", "/127.0.0.1")
        assert sorted(tp.partition for tp in m.assignment.topic_partitions) == [0, 1]
        with pytest.raises(KafkaException) as e:
            admin.delete_consumer_groups([group])[group].result(timeout=TIMEOUT)
        assert e.value.args[0].name() == "NON_EMPTY_GROUP"
        c.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    finally:
        c.close()
    offsets = admin.list_consumer_group_offsets(
        [_group_request(group)])[group].result(timeout=TIMEOUT)
    assert [(tp.partition, tp.offset) for tp in offsets.topic_partitions] == [(0, 1)]
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=TIMEOUT).valid}
    assert listed[group].state.name == "EMPTY"
    admin.delete_consumer_groups([group])[group].result(timeout=TIMEOUT)
    listed = {g.group_id for g in admin.list_consumer_groups().result(timeout=TIMEOUT).valid}
    assert group not in listed
    desc = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)
    assert desc.state.name == "DEAD" and desc.members == []
    assert committed(broker.bootstrap, group, topic_name) < 0     # the offsets went too


def _group_request(group: str):
    from confluent_kafka import ConsumerGroupTopicPartitions
    return ConsumerGroupTopicPartitions(group)


def test_kafka_python_admin_lists_describes_and_deletes_groups(broker, topic_name):
    from kafka import KafkaConsumer
    from kafka.admin import KafkaAdminClient
    create_topic(broker.bootstrap, topic_name, 2)
    group = unique("kp-admin")
    kc = KafkaConsumer(topic_name, bootstrap_servers=broker.bootstrap, group_id=group,
                       session_timeout_ms=6000, heartbeat_interval_ms=200,
                       client_id="kp-admin-member", enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        def assigned():
            kc.poll(timeout_ms=1000)    # see test_kafka_python_group
            return kc.assignment()

        wait_for(assigned, TIMEOUT, "an assignment for the kafka-python member", interval=0)
        assert sorted(tp.partition for tp in kc.assignment()) == [0, 1]
        groups = {g["group_id"]: g for g in admin.list_groups()}
        assert groups[group]["protocol_type"] == "consumer"
        assert groups[group]["group_state"] == "Stable"
        desc = admin.describe_groups([group])[group]
        assert desc["error"] is None and desc["group_state"] == "Stable"
        assert desc["protocol_type"] == "consumer" and desc["protocol_data"]
        [m] = desc["members"]
        assert m["client_id"] == "kp-admin-member" and m["client_host"] == "/127.0.0.1"
        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
        kc.close()
        assert {g["group_id"]: g["group_state"] for g in admin.list_groups()}[group] == "Empty"
        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.describe_groups([group])[group]["group_state"] == "Dead"
    finally:
        kc.close()
        admin.close()
