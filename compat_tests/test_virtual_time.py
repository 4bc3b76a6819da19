"""Virtual time (`trioka serve --virtual-time`, clock.py) with stock clients: the broker's clock
stands still until the test moves it through the admin endpoint (POST /clock/advance, /clock/set,
`trioka control clock`), and what falls due on the way runs in order. No test sleeps on a wall
clock: days pass in one request.

- retention deletes segments eight days old after an advance of eight days, not before, and
  does nothing by itself however much real time passes;
- a transaction abandoned by its producer is aborted once the clock passes its
  transaction.timeout.ms, at the coordinator's first check after it (a time known to the
  millisecond), and read_committed consumers never see it;
- a group member that stops heartbeating (SIGSTOP) is expired once the clock passes its
  session timeout, while the member that kept heartbeating keeps its partitions (classic
  groups and a KIP-848 consumer group);
- LogAppendTime timestamps and ListOffsets by time follow the clock exactly;
- the nodes of a cluster share one clock, their replication keeping real time.

Clients keep their own real-time timers: the tests move the broker's clock past the broker's
timeouts only, with confluent-kafka (librdkafka) and kafka-python on each side.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import OFFSET_END, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import (Rec, confluent_assigned, consume_confluent, consume_confluent_to,
                     consume_kafka_python, produce_confluent, produce_kafka_python)
from harness import (ClientProcess, RawConnection, create_topic, fetch_raw_batches,
                     group_member, segment_base_offsets, unique, wait_for)
from trioka.testing.process import BrokerProcess, ControlsClient

DAY_MS = 86_400_000
TIMEOUT = 30
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
CLIENTS = ("confluent", "kafka-python")


class AdminClock:
    """A virtual broker's clock through its admin endpoint (controls/endpoint.py /clock)."""

    def __init__(self, admin: str):
        self.endpoint = ControlsClient(admin, timeout=70)

    def state(self) -> dict:
        return self.endpoint.call("GET", "/clock")

    def now(self) -> int:
        return self.state()["wall_ms"]

    def advance(self, ms: int) -> int:
        return self.endpoint.call("POST", "/clock/advance", {"ms": ms})["wall_ms"]

    def set(self, wall_ms: int) -> int:
        return self.endpoint.call("POST", "/clock/set", {"wall_ms": wall_ms})["wall_ms"]


@pytest.fixture
def vbroker():
    """A broker process of the test's own on virtual time (its clock is the test's)."""
    with BrokerProcess(args=["--virtual-time"]) as b:
        yield b.start()


def control(admin: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m trioka control ARGS --admin URL`."""
    return subprocess.run([sys.executable, "-m", "trioka", "control", *args, "--admin", admin],
                          capture_output=True, text=True, timeout=90)


def offsets(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    """(log start offset, high watermark) as ListOffsets answers confluent-kafka, on a
    connection of its own (a consumer's parked Fetch would hold up one it shares)."""
    c = confluent_assigned(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def kafka_python_offsets(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    """The same through kafka-python's beginning_offsets / end_offsets."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        tp = KTP(topic, partition)
        return c.beginning_offsets([tp])[tp], c.end_offsets([tp])[tp]
    finally:
        c.close()


def end_offset(bootstrap: str, topic: str, isolation: int) -> int:
    """ListOffsets latest of partition 0: the high watermark (read_uncommitted) or the last
    stable offset (read_committed)."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    request_class = protocol.request_class(ApiKey.LIST_OFFSETS)
    t = request_class.ListOffsetsTopic
    request = request_class(replica_id=-1, isolation_level=isolation, topics=[t(
        name=topic, partitions=[t.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1,
                                                       timestamp=-1)])])
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.LIST_OFFSETS, 5, request)
    [part] = response.topics[0].partitions
    assert part.error_code == 0, part
    return part.offset


# --------------------------------------------------------------------------- the clock itself

def test_the_clock_over_the_admin_endpoint_and_the_command_line(vbroker, broker):
    clock = AdminClock(vbroker.admin)
    start = clock.state()
    assert start["virtual"] is True and abs(start["wall_ms"] - time.time() * 1000) < 120_000
    assert clock.now() == start["wall_ms"]          # it stands still
    done = control(vbroker.admin, "clock", "advance", "1h30m")
    assert done.returncode == 0, done.stderr
    assert "Advanced 5400000 ms: Virtual clock at" in done.stdout
    assert clock.now() == start["wall_ms"] + 5_400_000
    done = control(vbroker.admin, "clock", "set", "2100-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert "Virtual clock at 2100-01-01T00:00:00.000Z (4102444800000 ms)" in done.stdout
    shown = control(vbroker.admin, "clock", "show", "--json")
    assert shown.stdout.strip() == '{"wall_ms": 4102444800000, "virtual": true}'
    # Never back: 400 from the endpoint, exit status 1 from the tool.
    back = control(vbroker.admin, "clock", "set", "2099-12-31T23:59:59Z")
    assert back.returncode == 1 and "cannot be set back" in back.stderr, back
    assert clock.now() == 4_102_444_800_000
    # A bad duration is a usage error: the command's usage, then one line naming it.
    bad = control(vbroker.admin, "clock", "advance", "7x")
    assert bad.returncode == 2 and bad.stderr.startswith("usage: trioka control clock advance")
    last = bad.stderr.splitlines()[-1]
    assert last.startswith("trioka control clock advance: error: duration '7x'"), bad
    # A broker on real time shows its clock and refuses to move it (409).
    real = control(broker.admin, "clock", "show")
    assert real.returncode == 0 and real.stdout.startswith("Real clock at"), real
    refused = control(broker.admin, "clock", "advance", "7d")
    assert refused.returncode == 1 and "real time" in refused.stderr \
        and "HTTP 409" in refused.stderr, refused


# --------------------------------------------------------------------------------- retention

def test_nothing_happens_by_itself(topic_name):
    """Records eight days old, retention.ms seven days, a retention check every 100 ms: a real
    broker deletes them within moments; the virtual one keeps them however long that takes,
    until its clock moves one check interval."""
    eight_days_ago = int(time.time() * 1000) - 8 * DAY_MS
    old = [Rec(0, None, b"k%d" % i, b"v%d" % i, (), eight_days_ago + i) for i in range(5)]
    overrides = {"log.retention.check.interval.ms": "100"}
    with BrokerProcess(args=["--virtual-time"], overrides=overrides) as virtual, \
            BrokerProcess(overrides=overrides) as real:
        virtual.start()
        real.start()
        clock = AdminClock(virtual.admin)
        before = clock.now()
        for b in (virtual, real):
            create_topic(b.bootstrap, topic_name)
        produce_confluent(virtual.bootstrap, topic_name, old)
        produce_kafka_python(real.bootstrap, topic_name, old)
        wait_for(lambda: offsets(real.bootstrap, topic_name) == (5, 5), TIMEOUT,
                 "the real broker's retention to delete the old records")
        # As much real time and more has passed for the virtual broker: nothing happened.
        assert offsets(virtual.bootstrap, topic_name) == (0, 5)
        assert kafka_python_offsets(virtual.bootstrap, topic_name) == (0, 5)
        assert clock.now() == before
        clock.advance(100)
        assert offsets(virtual.bootstrap, topic_name) == (5, 5)
        assert kafka_python_offsets(virtual.bootstrap, topic_name) == (5, 5)


@pytest.mark.parametrize("client", CLIENTS)
def test_retention_deletes_eight_day_old_segments_after_eight_days(vbroker, topic_name, client):
    """retention.ms is Kafka's default, seven days; small segments. Records stamped now (the
    producer's clock, where the broker's started) stay through seven days less a minute and
    are gone, every segment, after eight."""
    b = vbroker
    clock = AdminClock(b.admin)
    create_topic(b.bootstrap, topic_name, configs={"segment.bytes": "1024"})
    records = [Rec(0, None, b"%d" % i, bytes([i]) * 300) for i in range(12)]
    produce = produce_confluent if client == "confluent" else produce_kafka_python
    config = {"linger.ms": 0, "batch.num.messages": 1} if client == "confluent" else \
        {"linger_ms": 0, "batch_size": 1}
    produce(b.bootstrap, topic_name, records, config=config)
    assert offsets(b.bootstrap, topic_name) == (0, 12)
    clock.advance(7 * DAY_MS - 60_000)
    assert offsets(b.bootstrap, topic_name) == (0, 12)
    assert kafka_python_offsets(b.bootstrap, topic_name) == (0, 12)
    started = time.monotonic()
    clock.advance(DAY_MS + 60_000)
    took = time.monotonic() - started
    assert offsets(b.bootstrap, topic_name) == (12, 12)
    assert kafka_python_offsets(b.bootstrap, topic_name) == (12, 12)
    # A consumer from the beginning is past the deleted data: it reads what comes next only.
    produce_confluent(b.bootstrap, topic_name, [Rec(0, None, b"new", b"after eight days")])
    got = consume_kafka_python(b.bootstrap, topic_name, [0], 1)
    assert [(r.offset, r.value) for r in got] == [(12, b"after eight days")]
    got = consume_confluent(b.bootstrap, topic_name, [0], 1)
    assert [(r.offset, r.value) for r in got] == [(12, b"after eight days")]
    assert took < 20, f"an advance of a day took {took:.1f} s"


# ------------------------------------------------------------------------------ transactions

def open_transaction(client: str, bootstrap: str, tid: str, topic: str, values) -> object:
    """A transactional producer (transaction.timeout.ms 60 s) that has written `values` to
    partition 0 of `topic` in a transaction it leaves open; the producer."""
    if client == "confluent":
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                      "transaction.timeout.ms": 60_000, "linger.ms": 0})
        p.init_transactions(30)
        p.begin_transaction()
        for value in values:
            p.produce(topic, value=value, partition=0)
        assert p.flush(30) == 0
        return p
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid,
                      transaction_timeout_ms=60_000, linger_ms=0, request_timeout_ms=10_000)
    p.init_transactions()
    p.begin_transaction()
    for value in values:
        p.send(topic, value=value, partition=0)
    p.flush(timeout=30)
    return p


def let_go(producer) -> None:
    if isinstance(producer, Producer):
        producer.flush(1)
    else:
        producer.close(timeout=0)


@pytest.mark.parametrize("client", CLIENTS)
def test_an_abandoned_transaction_is_aborted_by_advancing_past_its_timeout(vbroker, topic_name,
                                                                            client):
    """The producer writes three records in a transaction and goes silent. The last stable
    offset stays at its first record while the clock is short of transaction.timeout.ms (60 s);
    past it, the coordinator's check (every 10 s from the broker's start) aborts it: the abort
    marker is stamped at that check's time, to the millisecond, and read_committed consumers
    get only the record written outside the transaction."""
    b = vbroker
    clock = AdminClock(b.admin)
    start = clock.now()            # the broker's start: the clock has not moved since
    create_topic(b.bootstrap, topic_name)
    producer = open_transaction(client, b.bootstrap, unique("abandoned"), topic_name,
                                [b"in-transaction-%d" % i for i in range(3)])
    try:
        produce_confluent(b.bootstrap, topic_name, [Rec(0, None, None, b"outside")])
        assert (end_offset(b.bootstrap, topic_name, READ_UNCOMMITTED),
                end_offset(b.bootstrap, topic_name, READ_COMMITTED)) == (4, 0)
        clock.advance(59_000)
        assert end_offset(b.bootstrap, topic_name, READ_COMMITTED) == 0
        clock.advance(20_000)
        # Aborted at the first check after start + 60 s: start + 70 s; the marker is offset 4.
        assert (end_offset(b.bootstrap, topic_name, READ_UNCOMMITTED),
                end_offset(b.bootstrap, topic_name, READ_COMMITTED)) == (5, 5)
        markers = [batch for batch in fetch_raw_batches(b.bootstrap, topic_name)
                   if batch.is_control_batch]
        assert [(m.base_offset, m.max_timestamp) for m in markers] == [(4, start + 70_000)]
        read = consume_confluent_to(b.bootstrap, topic_name, {0: 5},
                                    config={"isolation.level": "read_committed"})
        assert [r.value for r in read[0]] == [b"outside"]
        got = consume_kafka_python(b.bootstrap, topic_name, [0], 1,
                                   config={"isolation_level": "read_committed"})
        assert [(r.offset, r.value) for r in got] == [(3, b"outside")]
    finally:
        let_go(producer)


# ------------------------------------------------------------------------------------ groups

KAFKA_PYTHON_MEMBER = """
import json, sys
from kafka import KafkaConsumer
c = KafkaConsumer(**json.loads(sys.argv[1]))
c.subscribe([sys.argv[2]])
last = None
while True:
    c.poll(timeout_ms=50)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print(json.dumps({"assignment": now}), flush=True)
        last = now
"""


# The session timeout of each kind of group: classic members ask for theirs (10 s); a KIP-848
# consumer group's is the broker's group.consumer.session.timeout.ms (45 s, Kafka's default).
SESSION_MS = {"confluent": 10_000, "kafka-python": 10_000, "confluent-kip848": 45_000}
HEARTBEAT_API = {"confluent": "Heartbeat", "kafka-python": "Heartbeat",
                 "confluent-kip848": "ConsumerGroupHeartbeat"}


def member(client: str, bootstrap: str, group: str, name: str, topic: str) -> ClientProcess:
    """A group member in a process of its own, saying its assignment as it changes; a classic
    member's session timeout 10 s, its heartbeats every 500 ms (of its own, real, clock); a
    KIP-848 member heartbeats as the broker says (group.consumer.heartbeat.interval.ms)."""
    if client == "confluent-kip848":
        return group_member({"bootstrap.servers": bootstrap, "group.id": group,
                             "client.id": name, "group.protocol": "consumer",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False},
                            topic)
    if client == "confluent":
        return group_member({"bootstrap.servers": bootstrap, "group.id": group,
                             "client.id": name, "session.timeout.ms": 10_000,
                             "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest",
                             "enable.auto.commit": False,
                             "partition.assignment.strategy": "cooperative-sticky"}, topic)
    import json
    return ClientProcess(KAFKA_PYTHON_MEMBER, json.dumps({
        "bootstrap_servers": bootstrap, "group_id": group, "client_id": name,
        "session_timeout_ms": 10_000, "heartbeat_interval_ms": 500,
        "auto_offset_reset": "earliest", "enable_auto_commit": False}), topic)


def members_of(bootstrap: str, group: str) -> dict[str, list[int]]:
    """The group's members as DescribeGroups answers confluent-kafka's admin client: client id
    -> partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    return {m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
            for m in description.members}


@pytest.mark.parametrize("client", [*CLIENTS, "confluent-kip848"])
def test_a_paused_member_is_expired_while_the_other_keeps_its_partitions(vbroker, topic_name,
                                                                         client):
    """Two members share four partitions; member b is paused (SIGSTOP: no heartbeats). The
    clock moves 60% of the session timeout: both stay. Member a heartbeats in the meantime
    (its own real-time timer; the broker counts it), so its session runs from the new time;
    another 50% passes b's deadline but not a's: b is expired, and a, which never stopped,
    keeps its partitions and takes b's. Classic groups (confluent-kafka, kafka-python) and a
    KIP-848 consumer group."""
    session_ms = SESSION_MS[client]
    b = vbroker
    clock = AdminClock(b.admin)
    create_topic(b.bootstrap, topic_name, partitions=4)
    group = unique("paused")
    a_member = member(client, b.bootstrap, group, "member-a", topic_name)
    b_member = member(client, b.bootstrap, group, "member-b", topic_name)
    try:
        wait_for(lambda: a_member.alive() and b_member.alive() and
                 len(a_member.latest("assignment") or []) == 2 and
                 len(b_member.latest("assignment") or []) == 2, TIMEOUT,
                 lambda: f"a 2-2 split: a {a_member.events}, b {b_member.events}")
        a_held = a_member.latest("assignment")
        assert members_of(b.bootstrap, group) == {"member-a": a_held,
                                                  "member-b": b_member.latest("assignment")}
        heartbeats = b.controls.watch(api=HEARTBEAT_API[client], client_id="member-a")
        os.kill(b_member.proc.pid, signal.SIGSTOP)
        clock.advance(session_ms * 6 // 10)
        assert sorted(members_of(b.bootstrap, group)) == ["member-a", "member-b"]
        seen = b.controls.matched(heartbeats["id"])
        wait_for(lambda: b.controls.matched(heartbeats["id"]) > seen, TIMEOUT,
                 "member a's next heartbeat")
        clock.advance(session_ms * 5 // 10)
        wait_for(lambda: a_member.latest("assignment") == [0, 1, 2, 3], TIMEOUT,
                 lambda: f"member a to take every partition: {a_member.events}")
        assert members_of(b.bootstrap, group) == {"member-a": [0, 1, 2, 3]}
        # It kept what it had all along (cooperative-sticky, KIP-848: nothing revoked), or got
        # the same back (kafka-python's eager rebalance revokes everything first).
        after_split = a_member.events[a_member.events.index({"assignment": a_held}):]
        if client != "kafka-python":
            assert all(set(a_held) <= set(e["assignment"]) for e in after_split), after_split
        assert set(a_held) <= set(a_member.latest("assignment"))
    finally:
        os.kill(b_member.proc.pid, signal.SIGCONT)
        b_member.kill()
        a_member.kill()


# ---------------------------------------------------------------------- broker-assigned times

def test_log_append_time_and_list_offsets_by_time_follow_the_clock(vbroker, topic_name):
    b = vbroker
    t0 = 1_893_456_000_000      # 2030-01-01T00:00:00Z
    done = control(b.admin, "clock", "set", "2030-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    create_topic(b.bootstrap, topic_name,
                 configs={"message.timestamp.type": "LogAppendTime", "segment.ms": "3600000"})
    produce_confluent(b.bootstrap, topic_name, [Rec(0, None, None, b"first")])
    assert control(b.admin, "clock", "advance", "1500ms").returncode == 0
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=b.bootstrap, linger_ms=0)
    try:
        sent = p.send(topic_name, value=b"second", partition=0).get(timeout=TIMEOUT)
    finally:
        p.close(timeout=10)
    assert sent.timestamp == t0 + 1500          # the produce response's log_append_time_ms
    AdminClock(b.admin).advance(2 * 3_600_000)
    produce_confluent(b.bootstrap, topic_name, [Rec(0, None, None, b"third")])
    expected = [(0, b"first", t0), (1, b"second", t0 + 1500), (2, b"third", t0 + 7_201_500)]
    for consume in (consume_confluent, consume_kafka_python):
        got = consume(b.bootstrap, topic_name, [0], 3, timestamp_type="LogAppendTime")
        assert [(r.offset, r.value, r.timestamp) for r in got] == expected
    # segment.ms (1 h) rolled a segment at the third append, two hours on.
    assert segment_base_offsets(b.data_dir, topic_name) == [0, 2]
    c = confluent_assigned(b.bootstrap)
    try:
        # One timestamp a call: librdkafka asks one per partition.
        found = [c.offsets_for_times([TopicPartition(topic_name, 0, t)], timeout=10)[0].offset
                 for t in (t0, t0 + 1, t0 + 1500, t0 + 1501, t0 + 7_201_500, t0 + 7_201_501)]
    finally:
        c.close()
    assert found == [0, 1, 1, 2, 2, OFFSET_END]
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    k = KafkaConsumer(bootstrap_servers=b.bootstrap, request_timeout_ms=10_000)
    try:
        tp = KTP(topic_name, 0)
        by_time = k.offsets_for_times({tp: t0 + 1000})[tp]
    finally:
        k.close()
    assert (by_time.offset, by_time.timestamp) == (1, t0 + 1500)


# ------------------------------------------------------------------------------------ a cluster

def test_the_nodes_of_a_cluster_share_one_clock_and_replicate_in_real_time(topic_name):
    """Three nodes on one virtual clock: acks=all produces complete (replication, heartbeats
    and registration keep real time, or nothing would move), and eight days of advance run
    retention on the leader and both followers."""
    import trioka
    from confluent_kafka.admin import NewTopic
    with trioka.Cluster(nodes=3, virtual_time=True, memory=True) as cluster:
        start = cluster.wall_ms()
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        admin.create_topics([NewTopic(topic_name, 1, 3, config={
            "segment.bytes": "1024", "min.insync.replicas": "2"})])[topic_name].result(30)
        wait_for(lambda: len(admin.list_topics(topic_name, timeout=10).topics[topic_name]
                             .partitions[0].isrs) == 3, TIMEOUT, "the topic's ISR of three")
        records = [Rec(0, None, b"%d" % i, bytes([i]) * 300) for i in range(8)]
        produce_confluent(cluster.bootstrap_servers, topic_name, records, acks="all",
                          config={"linger.ms": 0, "batch.num.messages": 1})
        got = consume_kafka_python(cluster.bootstrap_servers, topic_name, [0], 8)
        assert [r.value for r in got] == [r.value for r in records]
        assert cluster.wall_ms() == start                # real seconds went by, not virtual

        def log_starts():
            return sorted(node.call(lambda broker: broker.logs.partition(
                topic_name, 0, reading=True).log_start_offset) for node in cluster.nodes)

        wait_for(lambda: offsets(cluster.bootstrap_servers, topic_name) == (0, 8), TIMEOUT,
                 "the high watermark at 8")
        # Seven days through the Python API, one more through the cluster's admin endpoint.
        assert cluster.advance_time(7 * DAY_MS) == start + 7 * DAY_MS
        assert offsets(cluster.bootstrap_servers, topic_name) == (0, 8)
        assert AdminClock(cluster.admin_url).advance(DAY_MS) == start + 8 * DAY_MS
        assert cluster.wall_ms() == start + 8 * DAY_MS
        assert offsets(cluster.bootstrap_servers, topic_name) == (8, 8)
        wait_for(lambda: log_starts() == [8, 8, 8], TIMEOUT,
                 lambda: f"every replica's retention: log starts {log_starts()}")
        assert [n.state for n in cluster.nodes] == ["running"] * 3
