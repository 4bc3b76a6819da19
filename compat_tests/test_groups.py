"""Consumer groups (classic protocol) and committed offsets with stock clients over a real broker.

confluent-kafka (librdkafka), kafka-python and aiokafka consumers join groups, get assignments
from their own assignors through the broker (range, roundrobin, cooperative-sticky), rebalance when
a member leaves or dies, come back as static members, commit offsets and resume from them across
consumer and broker restarts. Admin clients list, describe and delete the groups. Every assertion
is on what the clients got back from the broker; every wait polls a condition with a deadline.
"""

import asyncio
import json
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from harness import create_topic, unique

TIMEOUT = 30
PARTITIONS = 6
# Short heartbeats make rebalances quick; 6 s is the smallest session timeout the broker allows.
GROUP_CONF = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
              "auto.offset.reset": "earliest", "enable.auto.commit": False}


def consumer(bootstrap: str, group: str, **conf) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, **GROUP_CONF, **conf})


def produce(bootstrap: str, topic: str, values, partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for v in values:
        p.produce(topic, v, partition=partition)
    assert p.flush(TIMEOUT) == 0


def partitions_of(c: Consumer) -> list[int]:
    return sorted(tp.partition for tp in c.assignment())


def poll_until(consumers, done, what: str, timeout: float = TIMEOUT):
    """Poll every consumer (librdkafka serves rebalances from poll) until `done()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.05)
        if done():
            return
    raise AssertionError(f"{what}: not reached in {timeout} s; assignments "
                         f"{[partitions_of(c) for c in consumers]}")


def split_evenly(assignments: list[list[int]], total: int = PARTITIONS) -> bool:
    """Disjoint, covering every partition, everyone with its fair share."""
    flat = [p for a in assignments for p in a]
    return sorted(flat) == list(range(total)) and all(
        len(a) in (total // len(assignments), -(-total // len(assignments))) for a in assignments)


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
        poll_until(cs, lambda: split_evenly([partitions_of(c) for c in cs]),
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
        poll_until([a, b], lambda: split_evenly([partitions_of(a), partitions_of(b)]),
                   "two members")
        b.close()                  # LeaveGroup
        poll_until([a], lambda: partitions_of(a) == list(range(PARTITIONS)),
                   "survivor takes every partition")
    finally:
        a.close()


_MEMBER_SCRIPT = """
import json, sys
from confluent_kafka import Consumer
c = Consumer(json.loads(sys.argv[1]))
c.subscribe([sys.argv[2]])
last = None
while True:
    c.poll(0.05)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print(json.dumps(now), flush=True)
        last = now
"""


class MemberProcess:
    """A confluent-kafka group member in a process of its own, to be killed with SIGKILL; it
    prints its assignment (a JSON list) whenever it changes."""

    def __init__(self, conf: dict, topic: str):
        self.proc = subprocess.Popen([sys.executable, "-c", _MEMBER_SCRIPT, json.dumps(conf),
                                      topic], stdout=subprocess.PIPE, text=True)
        self.assignment: list[int] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.assignment = json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_partitions_of_a_killed_member_move_after_session_timeout(broker, topic6):
    group = unique("killed")
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, **GROUP_CONF}
    child = MemberProcess(conf, topic6)
    a = consumer(broker.bootstrap, group)
    try:
        a.subscribe([topic6])
        poll_until([a], lambda: split_evenly([partitions_of(a), child.assignment]),
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
    events = []
    a = consumer(broker.bootstrap, group, **{"group.instance.id": "instance-a"})
    b = consumer(broker.bootstrap, group, **{"group.instance.id": "instance-b"})
    try:
        a.subscribe([topic6], on_assign=lambda c, ps: events.append("assign"),
                    on_revoke=lambda c, ps: events.append("revoke"))
        b.subscribe([topic6])
        poll_until([a, b], lambda: split_evenly([partitions_of(a), partitions_of(b)]),
                   "two static members")
        before_a, before_b = partitions_of(a), partitions_of(b)
        seen = list(events)
        b.close()                  # a static member sends no LeaveGroup
        b = consumer(broker.bootstrap, group, **{"group.instance.id": "instance-b"})
        b.subscribe([topic6])
        poll_until([a, b], lambda: partitions_of(b) == before_b, "restarted static member")
        # Give a rebalance, were one started, the time to show (heartbeats come every 0.2 s).
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            a.poll(0.05)
            b.poll(0.05)
        assert events == seen, "the other member was rebalanced"
        assert partitions_of(a) == before_a and partitions_of(b) == before_b
        desc = describe(broker.bootstrap, group)
        assert desc.state.name == "STABLE"
        assert sorted(m.group_instance_id for m in desc.members) == ["instance-a", "instance-b"]
    finally:
        a.close()
        b.close()


def test_first_assignment_is_fast(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    c = consumer(broker.bootstrap, unique("fast"))
    assigned = []
    try:
        start = time.monotonic()
        c.subscribe([topic_name], on_assign=lambda cons, ps: assigned.append(time.monotonic()))
        poll_until([c], lambda: bool(assigned), "first assignment")
        assert assigned[0] - start < 0.3, f"first assignment took {assigned[0] - start:.3f} s"
    finally:
        c.close()


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
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not failures:
            if split_evenly([assignments.get(0, []), assignments.get(1, [])]):
                break
            time.sleep(0.05)
        assert not failures, failures
        assert split_evenly([assignments.get(0, []), assignments.get(1, [])]), assignments
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)


def test_aiokafka_group(broker, topic6):
    from aiokafka import AIOKafkaConsumer
    group = unique("aiokafka")

    async def main():
        cs = [AIOKafkaConsumer(topic6, bootstrap_servers=broker.bootstrap, group_id=group,
                               session_timeout_ms=6000, heartbeat_interval_ms=200,
                               auto_offset_reset="earliest") for _ in range(2)]
        for c in cs:
            await c.start()
        try:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                await asyncio.gather(*(c.getmany(timeout_ms=100) for c in cs))
                got = [sorted(tp.partition for tp in c.assignment()) for c in cs]
                if split_evenly(got):
                    return got
            raise AssertionError(f"aiokafka members did not split the partitions: {got}")
        finally:
            for c in cs:
                await c.stop()

    assert split_evenly(asyncio.run(main()))


# --- committed offsets ----------------------------------------------------------------------

def consume_values(bootstrap: str, group: str, topic: str, count: int, *,
                   commit: bool = False, **conf) -> list[tuple[int, bytes]]:
    """(offset, value) of the next `count` records the group's consumer reads (then commits
    synchronously after the last one, if asked) before it closes."""
    c = consumer(bootstrap, group, **conf)
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got.append((m.offset(), m.value()))
                if commit and len(got) == count:
                    c.commit(message=m, asynchronous=False)
        assert len(got) == count, got
    finally:
        c.close()
    return got


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
        deadline = time.monotonic() + TIMEOUT
        got = None
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got = (m.partition(), m.offset(), m.value())
        assert got == (1, 0, b"after")
        assert events == ["assign"]
    finally:
        c.close()


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_new_group_follows_auto_offset_reset(broker, topic_name, reset):
    create_topic(broker.bootstrap, topic_name, 1)
    produce(broker.bootstrap, topic_name, [b"old-0", b"old-1", b"old-2"])
    c = consumer(broker.bootstrap, unique("reset"), **{"auto.offset.reset": reset})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    first = None
    try:
        c.subscribe([topic_name])
        deadline = time.monotonic() + TIMEOUT
        n = 0
        while first is None and time.monotonic() < deadline:
            if reset == "latest" and c.assignment():
                # Keep producing until the consumer, positioned at the end, sees one.
                p.produce(topic_name, f"new-{n}".encode(), partition=0)
                p.poll(0)
                n += 1
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                first = (m.offset(), m.value())
        p.flush(TIMEOUT)
    finally:
        c.close()
    if reset == "earliest":
        assert first == (0, b"old-0")
    else:
        assert first is not None and first[0] >= 3 and first[1].startswith(b"new-")


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
        deadline = time.monotonic() + TIMEOUT
        while not kc.assignment() and time.monotonic() < deadline:
            kc.poll(timeout_ms=1000)    # see test_kafka_python_group
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
