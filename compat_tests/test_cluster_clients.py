"""More stock clients against a three-node cluster (`trioka serve --nodes 3`, node 1 also the
KRaft controller): aiokafka's idempotent acks=all producer carrying on past a killed leader and
its group consumer reading every message once; KafkaJS producing and consuming a replicated
topic across the nodes and again after a leader kill and restart; Kafka's controlled shutdown
(a stopped broker hands its leaderships to other in-sync replicas before it goes, so its
partitions never go leaderless and an acks=all producer sees no error); and
`trioka topic describe` showing each partition's leader, replicas and ISR as the cluster has them.

Every wait is bounded (`wait_for`); node faults go through the admin endpoint
(`cluster.node(id, "kill"|"stop"|"start")`).
"""

import asyncio
import base64
import subprocess
import sys
import threading

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.clients import kafkajs, produce_kafkajs_sends
from compat_tests.harness import partition_info, wait_for

pytestmark = pytest.mark.timeout(300)





def create_topic(admin, topic, assignment, config=None):
    admin.create_topics([NewTopic(topic, num_partitions=len(assignment),
                                  replica_assignment=assignment,
                                  config=config or {})])[topic].result(30)


def all_in_sync(admin, topic, partitions=1):
    return all(sorted(partition_info(admin, topic, p).isrs) == [1, 2, 3]
               for p in range(partitions))


def run_async(coro, timeout=120):
    """aiokafka runs on asyncio: its coroutine to completion, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --------------------------------------------------------------------------------------- aiokafka

def test_aiokafka_idempotent_producer_carries_on_past_a_killed_leader(cluster):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    # Replicas 2, 3, 1: node 1 (the controller, the quorum's one voter) never leads.
    create_topic(admin, "aio-failover", [[2, 3, 1]])
    leader = partition_info(admin, "aio-failover").leader
    assert leader == 2

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all",
                                    enable_idempotence=True, retry_backoff_ms=200)
        await producer.start()
        try:
            sent = [await producer.send("aio-failover", f"m{i}".encode()) for i in range(200)]
            first = [(await f).offset for f in sent]
            # The endpoint call blocks this loop briefly; the producer has nothing in flight.
            cluster.node(leader, "kill")
            sent = [await producer.send("aio-failover", f"m{i}".encode())
                    for i in range(200, 400)]
            second = [(await f).offset for f in sent]
        finally:
            await producer.stop()
        return first + second

    offsets = run_async(produce())
    assert offsets == list(range(400))   # idempotence: no gap, no duplicate across the failover
    assert partition_info(admin, "aio-failover").leader == 3
    cluster.node(leader, "start")
    wait_for(lambda: all_in_sync(admin, "aio-failover"), 60,
             lambda: f"node {leader} back in the ISR: {partition_info(admin, 'aio-failover')}")

    async def consume():
        consumer = AIOKafkaConsumer("aio-failover", bootstrap_servers=cluster.bootstrap,
                                    group_id="aio-reader", auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        got = []
        try:
            while len(got) < 400:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend((r.offset, r.value) for r in records)
            # Nothing more than the 400: a short extra poll finds no duplicate.
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                got.extend((r.offset, r.value) for r in records)
        finally:
            await consumer.stop()
        return got

    got = run_async(consume(), 90)
    assert [v for _, v in got] == [f"m{i}".encode() for i in range(400)]
    assert [o for o, _ in got] == list(range(400))


# ---------------------------------------------------------------------------------------- KafkaJS

def test_kafkajs_produces_and_consumes_across_the_nodes_and_after_a_leader_restart(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    # One partition led by each node.
    create_topic(admin, "js-replicated", [[2, 3, 1], [3, 1, 2], [1, 2, 3]])
    assert [partition_info(admin, "js-replicated", p).leader for p in range(3)] == [2, 3, 1]
    # KafkaJS takes node 1 (never killed here) as its one seed broker and finds the rest in
    # Metadata.
    seed = cluster.bootstrap.split(",")[0]

    def produce(tag, count):
        sends = [[{"key": f"k{tag}{i}", "value": f"{tag}{i}", "partition": i % 3}
                  for i in range(count)]]
        [result] = produce_kafkajs_sends(seed, "js-replicated", sends, acks="all")
        assert sorted(r["partition"] for r in result) == [0, 1, 2], result
        assert all(r["errorCode"] == 0 for r in result), result
        return [f"{tag}{i}" for i in range(count)]

    expected = produce("a", 30)
    cluster.node(2, "kill")
    wait_for(lambda: partition_info(admin, "js-replicated", 0).leader == 3, 30,
             lambda: f"node 3 leading after node 2's kill: "
                     f"{partition_info(admin, 'js-replicated', 0)}")
    expected += produce("b", 30)      # partition 0 now on node 3, with the ISR that is left
    cluster.node(2, "start")
    wait_for(lambda: all_in_sync(admin, "js-replicated", 3), 60,
             lambda: "node 2 back in every ISR: " + str(
                 [partition_info(admin, "js-replicated", p) for p in range(3)]))
    expected += produce("c", 30)
    out = kafkajs("consume.js", seed, "js-replicated", "js-reader", str(len(expected)),
                  timeout=90)
    records = [line["record"] for line in out if "record" in line]
    assert out[-1] == {"done": {"count": len(expected), "highWatermark": None}}
    values = [base64.b64decode(r["value"]).decode() for r in records]
    assert sorted(values) == sorted(expected)
    for p in range(3):
        offsets = [r["offset"] for r in records if r["partition"] == p]
        assert offsets == list(range(len(offsets))), (p, offsets)


# ---------------------------------------------------------------------------- controlled shutdown

def test_controlled_shutdown_moves_leaderships_before_the_node_stops(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    create_topic(admin, "handover", [[2, 3, 1], [2, 1, 3]], {"min.insync.replicas": "2"})
    assert [partition_info(admin, "handover", p).leader for p in (0, 1)] == [2, 2]

    # Metadata sampled through node 1 the whole time node 2 stops: its partitions' leaders.
    watcher = AdminClient({"bootstrap.servers": cluster.bootstrap.split(",")[0]})
    samples, stop_sampling = [], threading.Event()

    def sample():
        while not stop_sampling.is_set():
            try:
                md = watcher.list_topics("handover", timeout=5).topics["handover"]
                samples.append(tuple(md.partitions[p].leader for p in (0, 1)))
            except Exception:
                pass    # a request that failed tells nothing of the leaders
            stop_sampling.wait(0.02)

    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 60000})
    acked, errors = [], []

    def delivered(err, msg):
        (errors if err else acked).append(err or msg.value())

    sent = 0

    def produce_until(done: threading.Event | None, at_least: int):
        """Produce `at_least` messages in all, and on until `done` (if given) is set."""
        nonlocal sent
        while (done is not None and not done.is_set()) or sent < at_least:
            producer.produce("handover", str(sent).encode(), partition=sent % 2,
                             on_delivery=delivered)
            sent += 1
            producer.poll(0.005)

    def in_thread(action):
        done = threading.Event()
        result = {}

        def run():
            try:
                result["answer"] = action()
            finally:
                done.set()
        threading.Thread(target=run, daemon=True).start()
        return done, result

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        produce_until(None, 100)
        done, _ = in_thread(lambda: cluster.node(2, "stop"))
        produce_until(done, sent + 100)
        # Right after the stop returns the partitions have their new leaders.
        assert [partition_info(admin, "handover", p).leader for p in (0, 1)] == [3, 1]
    finally:
        stop_sampling.set()
        sampler.join(10)
    assert samples and samples[0] == (2, 2), samples
    assert all(-1 not in s for s in samples), f"a partition went leaderless: {samples}"
    assert samples[-1] == (3, 1), samples
    nodes = {n["id"]: n for n in cluster.nodes()}
    assert nodes[2]["state"] == "stopped", nodes

    done, _ = in_thread(lambda: cluster.node(2, "start"))
    produce_until(done, sent + 100)
    wait_for(lambda: all_in_sync(admin, "handover", 2), 60,
             lambda: "node 2 back in every ISR: " + str(
                 [partition_info(admin, "handover", p) for p in (0, 1)]))
    produce_until(None, sent + 100)
    assert producer.flush(60) == 0
    assert errors == []
    assert sorted(acked, key=int) == [str(i).encode() for i in range(sent)]


# ------------------------------------------------------------------------- trioka topic describe

def describe(cluster, topic):
    """`trioka topic describe TOPIC -b BOOTSTRAP`: its head line and partition lines as dicts."""
    proc = subprocess.run([sys.executable, "-m", "trioka", "topic", "describe", topic,
                           "-b", cluster.bootstrap], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    rows = [dict((name, value.strip()) for name, _, value in
                 (f.partition(":") for f in line.strip().split("\t"))) for line in lines]
    return rows[0], rows[1:]


def test_topic_describe_shows_the_cluster_leaders_replicas_and_isr(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    create_topic(admin, "described", [[2, 3, 1], [3, 1, 2], [1, 2, 3]])
    head, parts = describe(cluster, "described")
    assert head["Topic"] == "described"
    assert (head["PartitionCount"], head["ReplicationFactor"]) == ("3", "3")
    assert [(p["Partition"], p["Leader"], p["Replicas"], p["Isr"]) for p in parts] == [
        ("0", "2", "2,3,1", "2,3,1"), ("1", "3", "3,1,2", "3,1,2"),
        ("2", "1", "1,2,3", "1,2,3")]

    # Node 3 killed: its partition led elsewhere and node 3 out of every ISR, as Metadata says.
    cluster.node(3, "kill")
    wait_for(lambda: all(3 not in partition_info(admin, "described", p).isrs
                         for p in range(3)), 60, "node 3 out of every ISR")
    _, parts = describe(cluster, "described")
    for p in parts:
        info = partition_info(admin, "described", int(p["Partition"]))
        assert p["Leader"] == str(info.leader) and info.leader != 3
        assert p["Replicas"] == ",".join(map(str, info.replicas))
        assert p["Isr"] == ",".join(map(str, info.isrs)) and "3" not in p["Isr"].split(",")
    assert parts[1]["Leader"] == "1"
