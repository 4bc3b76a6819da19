"""Chaos you can replay, against stock clients: seeded probabilistic faults applied to the same
requests run after run, per-partition errors inside one request, throttling (KIP-219), a
node's round-trip delay, the fault file read at start, and rules matching one consumer group
or transactional id. Each test runs broker processes of its own (BrokerProcess), reached through
their admin endpoint; everything asserted came back over the wire."""

import json
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from clients import confluent_assigned, consume_confluent, consume_kafka_python, next_records
from harness import create_topic, unique, wait_for
from trioka.testing.process import BrokerProcess

pytestmark = pytest.mark.timeout(300)

FAST_RETRIES = {"retry.backoff.ms": 20, "retry.backoff.max.ms": 100,
                "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100}


def fault_file(tmp_path, rules, name="faults.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(rules))
    return str(path)


def produce_one_at_a_time(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    """An idempotent confluent-kafka producer sends each value alone and waits for its
    delivery report: one Produce request at a time, retries included, so the sequence of
    requests is the same whenever the broker answers the same. The offsets reported."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 0, "message.timeout.ms": 120_000, **FAST_RETRIES})
    offsets, errors = [], []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=report)
        assert producer.flush(60) == 0, f"{value!r} not delivered"
    assert errors == []
    return offsets


def test_the_same_seeded_chaos_applies_the_same_faults_and_delivers_exactly_once(tmp_path):
    """Two fresh brokers started with the same fault file: refusals and answers lost after
    the append, each drawn with its own seed. Both runs apply the faults to the same Produce
    requests (the same match numbers), and the idempotent producer delivers every message
    once, in order, though some were appended and never acknowledged."""
    topic = unique("chaos")
    rules = [{"action": "error", "api": "Produce", "topic": topic,
              "error": "NOT_LEADER_OR_FOLLOWER", "probability": 0.3, "seed": 7},
             {"action": "disconnect", "when": "after", "api": "Produce", "topic": topic,
              "probability": 0.2, "seed": 11}]
    path = fault_file(tmp_path, rules)
    values = [b"chaos %03d" % i for i in range(60)]
    runs = []
    for _ in range(2):
        with BrokerProcess(memory=True, args=["--faults", path]) as broker:
            broker.start()
            create_topic(broker.bootstrap, topic, 1)
            offsets = produce_one_at_a_time(broker.bootstrap, topic, values)
            assert offsets == list(range(len(values)))           # each once, in order
            got = consume_confluent(broker.bootstrap, topic, [0], len(values), timeout=60)
            assert [(r.offset, r.value) for r in got] == list(enumerate(values))
            more = consume_kafka_python(broker.bootstrap, topic, [0], len(values),
                                        timeout=30)
            assert [r.value for r in more] == values
            # Nothing after them: no message was appended twice.
            end = confluent_assigned(broker.bootstrap)
            try:
                assert end.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (
                    0, len(values))
            finally:
                end.close()
            runs.append([{k: r[k] for k in ("matched", "applied", "applied_at", "seed")}
                         for r in broker.controls.list()])
    first, second = runs
    assert first == second
    refused, lost = first
    assert refused["applied"] >= 5 and lost["applied"] >= 3, first
    # Every refusal and every lost answer made one more Produce request.
    assert refused["matched"] == len(values) + refused["applied"] + lost["applied"]


def test_one_partition_fails_inside_a_request_while_the_other_is_appended(own_broker,
                                                                          topic_name):
    """kafka-python sends the batches of both partitions in one Produce request: partition 0
    is refused twice (librdkafka's partition_push_request_errors), partition 1 is appended
    from the first request and never sent again. confluent-kafka, which sends one partition
    a request, has partition 1 acknowledged before partition 0's retries end."""
    from kafka import KafkaProducer
    create_topic(own_broker.bootstrap, topic_name, 2)
    controls = own_broker.controls
    refuse = controls.error(["NOT_LEADER_OR_FOLLOWER", "NOT_LEADER_OR_FOLLOWER"],
                            api="Produce", topic=topic_name, partition=0)
    named = {p: controls.watch(api="Produce", topic=topic_name, partition=p) for p in (0, 1)}
    requests = controls.watch(api="Produce", topic=topic_name)
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, linger_ms=500,
                             retries=5, retry_backoff_ms=50, request_timeout_ms=30_000)
    try:
        futures = [producer.send(topic_name, value=b"p%d-%d" % (p, i), partition=p)
                   for i in range(5) for p in (0, 1)]
        producer.flush(timeout=60)
        sent = [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)
    assert sorted((m.partition, m.offset) for m in sent) == [
        (p, i) for p in (0, 1) for i in range(5)]
    count = {p: controls.matched(named[p]["id"]) for p in (0, 1)}
    assert count == {0: 3, 1: 1}
    # Three requests in all: the first named both partitions, the two retries partition 0.
    assert controls.matched(requests["id"]) == 3
    assert controls.rule(refuse["id"])["applied_at"] == [1, 2]
    got = consume_confluent(own_broker.bootstrap, topic_name, [0, 1], 10)
    assert sorted((r.partition, r.offset, r.value) for r in got) == [
        (p, i, b"p%d-%d" % (p, i)) for p in (0, 1) for i in range(5)]

    controls.clear()
    refuse = controls.error(["NOT_LEADER_OR_FOLLOWER"] * 3, topic=topic_name, partition=0)
    order = []
    producer = Producer({"bootstrap.servers": own_broker.bootstrap, "linger.ms": 50,
                         **FAST_RETRIES})
    for p in (0, 1):
        producer.produce(topic_name, value=b"second %d" % p, partition=p,
                         on_delivery=lambda err, msg: order.append(
                             (msg.partition(), msg.offset(), err)))
    assert producer.flush(60) == 0
    assert order == [(1, 5, None), (0, 5, None)]
    assert controls.rule(refuse["id"])["applied"] == 3


def test_a_fetch_partition_fails_alone_and_the_consumer_reads_the_other_meanwhile(
        own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 2)
    producer = Producer({"bootstrap.servers": own_broker.bootstrap})
    for p in (0, 1):
        for i in range(3):
            producer.produce(topic_name, value=b"%d/%d" % (p, i), partition=p)
    assert producer.flush(30) == 0
    refuse = own_broker.controls.error(["NOT_LEADER_OR_FOLLOWER"] * 4, api="Fetch",
                                       topic=topic_name, partition=0)
    # librdkafka sends full fetches (no KIP-227 session), naming both partitions each time.
    got = consume_confluent(own_broker.bootstrap, topic_name, [0, 1], 6, timeout=60,
                            config={"fetch.error.backoff.ms": 50})
    assert sorted((r.partition, r.offset, r.value) for r in got) == [
        (p, i, b"%d/%d" % (p, i)) for p in (0, 1) for i in range(3)]
    # Partition 1's records came while partition 0 was still refused.
    first_of = {p: next(n for n, r in enumerate(got) if r.partition == p) for p in (0, 1)}
    assert first_of[1] < first_of[0]
    assert own_broker.controls.rule(refuse["id"])["applied"] == 4


def test_throttled_answers_reach_the_throttle_callback_and_hold_the_connection(own_broker,
                                                                             topic_name):
    """A throttle control answers with throttle_time_ms and mutes the connection that long
    (KIP-219): confluent-kafka's throttle_cb reports the broker's throttle time, and
    kafka-python records it and waits before its next request."""
    create_topic(own_broker.bootstrap, topic_name, 1)
    controls = own_broker.controls
    rule = controls.throttle(800, api="Produce", topic=topic_name, count=1)
    throttled = []
    producer = Producer({"bootstrap.servers": own_broker.bootstrap, "linger.ms": 0,
                         "throttle_cb": lambda event: throttled.append(
                             (event.broker_id, event.throttle_time))})
    started = time.monotonic()
    producer.produce(topic_name, value=b"first", partition=0)
    assert producer.flush(30) == 0
    producer.produce(topic_name, value=b"second", partition=0)
    assert producer.flush(30) == 0
    elapsed = time.monotonic() - started

    def reported():
        producer.poll(0.1)
        return throttled

    wait_for(reported, 30, "confluent-kafka's throttle_cb", interval=0)
    assert throttled[0] == (1, pytest.approx(0.8))
    # The second produce went out on the muted connection: read once the 800 ms were over.
    assert elapsed >= 0.8, elapsed
    assert controls.rule(rule["id"])["applied"] == 1

    from kafka import KafkaProducer
    controls.throttle(1000, api="Produce", topic=topic_name, count=1)
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, linger_ms=0)
    try:
        started = time.monotonic()
        first = producer.send(topic_name, value=b"kafka-python 1", partition=0).get(30)
        second = producer.send(topic_name, value=b"kafka-python 2", partition=0).get(30)
        elapsed = time.monotonic() - started
        metrics = producer.metrics()
    finally:
        producer.close(timeout=10)
    assert (first.offset, second.offset) == (2, 3)
    assert elapsed >= 1.0, elapsed
    maxima = [values["throttle-time-max"] for values in metrics.values()
              if "throttle-time-max" in values]
    assert max(maxima) == 1000, metrics


def test_a_round_trip_delay_on_the_node_slows_every_answer_until_healed(own_broker,
                                                                       topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    node = own_broker.controls.call("POST", "/nodes/1/rtt", {"ms": 400})
    assert node["rtt_ms"] == 400
    producer = Producer({"bootstrap.servers": own_broker.bootstrap, "linger.ms": 0})
    latencies = []
    for i in range(3):
        started = time.monotonic()
        producer.produce(topic_name, value=b"slow %d" % i, partition=0)
        assert producer.flush(30) == 0
        latencies.append(time.monotonic() - started)
    assert min(latencies) >= 0.4, latencies
    got = consume_kafka_python(own_broker.bootstrap, topic_name, [0], 3)
    assert [r.value for r in got] == [b"slow 0", b"slow 1", b"slow 2"]
    assert own_broker.controls.call("POST", "/nodes/1/heal")["rtt_ms"] == 0
    started = time.monotonic()
    producer.produce(topic_name, value=b"fast", partition=0)
    assert producer.flush(30) == 0
    assert time.monotonic() - started < 0.4


def test_a_fault_file_is_in_force_from_the_start(tmp_path):
    topic = unique("from-file")
    path = fault_file(tmp_path, [
        {"action": "error", "api": "Produce", "topic": topic,
         "error": "NOT_LEADER_OR_FOLLOWER", "count": 2},
        {"action": "error", "api": "ListOffsets", "topic": topic, "partition": 0,
         "errors": ["NOT_LEADER_OR_FOLLOWER"]}])
    with BrokerProcess(memory=True, args=["--faults", path]) as broker:
        broker.start()
        rules = broker.controls.list()
        assert [(r["action"], r["api"], r["matched"]) for r in rules] == [
            ("error", "Produce", 0), ("error", "ListOffsets", 0)]
        create_topic(broker.bootstrap, topic, 1)
        produced = subprocess.run(
            ["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-p", "0",
             "-X", "retry.backoff.ms=20"], input=b"from kcat\n", capture_output=True,
            timeout=60)
        assert produced.returncode == 0, produced.stderr
        listed = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-p", "0",
                                 "-o", "beginning", "-e", "-f", "%o %s\n"],
                                capture_output=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == b"0 from kcat\n"
        got = consume_kafka_python(broker.bootstrap, topic, [0], 1)
        assert [(r.offset, r.value) for r in got] == [(0, b"from kcat")]
        produce_rule, offsets_rule = broker.controls.list()
        assert (produce_rule["applied"], produce_rule["matched"]) == (2, 3)
        assert offsets_rule["applied"] == 1


def test_a_bad_fault_file_stops_the_start_with_one_line(tmp_path):
    path = fault_file(tmp_path, [{"action": "delay", "delay_ms": 5},
                                 {"action": "error", "api": "Produce", "error": "NO_SUCH"}])
    done = subprocess.run([sys.executable, "-m", "trioka", "serve", "--memory", "--listeners",
                           "PLAINTEXT://127.0.0.1:0", "--faults", path],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"trioka: fault file {path}: rule 2: unknown error code "
                                   f"'NO_SUCH'")
    assert done.stdout == ""


def test_a_rule_on_one_group_leaves_the_other_group_alone(own_broker, topic_name):
    """FindCoordinator, JoinGroup and the rest of group `blocked` are refused with
    COORDINATOR_NOT_AVAILABLE five times; group `free` reads at once. Both consumers,
    confluent-kafka and kafka-python, end up reading everything."""
    from kafka import KafkaConsumer
    create_topic(own_broker.bootstrap, topic_name, 1)
    producer = Producer({"bootstrap.servers": own_broker.bootstrap})
    for i in range(5):
        producer.produce(topic_name, value=b"g%d" % i, partition=0)
    assert producer.flush(30) == 0
    blocked, free = unique("blocked"), unique("free")
    controls = own_broker.controls
    refuse = controls.error("COORDINATOR_NOT_AVAILABLE", group=blocked, count=5)
    named_blocked = controls.watch(group=blocked)
    named_free = controls.watch(group=free)

    consumer = Consumer({"bootstrap.servers": own_broker.bootstrap, "group.id": free,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 100})
    try:
        consumer.subscribe([topic_name])
        got = [m.value() for m in next_records(consumer, 5, 60)]
    finally:
        consumer.close()
    assert got == [b"g%d" % i for i in range(5)]
    assert controls.rule(refuse["id"])["matched"] == 0      # nothing of group `free`
    assert controls.matched(named_free["id"]) >= 2          # FindCoordinator, JoinGroup, ...

    kp = KafkaConsumer(topic_name, bootstrap_servers=own_broker.bootstrap, group_id=blocked,
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       retry_backoff_ms=50, fetch_max_wait_ms=100)
    try:
        values = []
        wait_for(lambda: values.extend(m.value for ms in kp.poll(timeout_ms=200).values()
                                       for m in ms) or len(values) >= 5,
                 90, lambda: f"kafka-python in group {blocked}: {values}", interval=0)
    finally:
        kp.close()
    assert values == [b"g%d" % i for i in range(5)]
    after = controls.rule(refuse["id"])
    assert after["applied"] == 5
    # The rule saw exactly the requests naming group `blocked`.
    assert after["matched"] == controls.matched(named_blocked["id"]) > 5


def test_a_rule_on_one_transactional_id_leaves_the_other_alone(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    slow, quick = unique("tx-slow"), unique("tx-quick")
    controls = own_broker.controls
    refuse = controls.error("COORDINATOR_LOAD_IN_PROGRESS", api="InitProducerId",
                            transactional_id=slow, count=3)
    for txn in (quick, slow):
        producer = Producer({"bootstrap.servers": own_broker.bootstrap,
                             "transactional.id": txn, **FAST_RETRIES})
        try:
            producer.init_transactions(60)
        except KafkaException as e:
            raise AssertionError(f"{txn}: {e}") from None
        if txn == quick:
            assert controls.rule(refuse["id"])["matched"] == 0
        producer.begin_transaction()
        producer.produce(topic_name, value=txn.encode(), partition=0)
        producer.commit_transaction(30)
    after = controls.rule(refuse["id"])
    assert (after["applied"], after["matched"]) == (3, 4)
    got = consume_kafka_python(own_broker.bootstrap, topic_name, [0], 2,
                               config={"isolation_level": "read_committed"})
    assert [r.value for r in got] == [quick.encode(), slow.encode()]


def trioka_control(*args: str, admin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trioka", "control", *args, "--admin", admin],
                          capture_output=True, text=True, timeout=60)


def test_the_cli_adds_seeded_rules_loads_fault_files_and_sets_a_round_trip_delay(
        own_broker, topic_name, tmp_path):
    import random
    admin = own_broker.admin
    create_topic(own_broker.bootstrap, topic_name, 2)
    added = trioka_control("add", "error", "--topic", topic_name, "--partition", "1",
                           "--errors", "NOT_LEADER_OR_FOLLOWER,NONE", "--probability", "0.5",
                           "--seed", "3", admin=admin)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (
        f"Added control 1: errors NOT_LEADER_OR_FOLLOWER,NONE on every request naming "
        f"partition {topic_name}-1, count 2, probability 0.5, seed 3")
    path = fault_file(tmp_path, [
        {"action": "throttle", "throttle_ms": 10, "api": "Heartbeat", "group": "g"},
        {"action": "delay", "delay_ms": 0, "api": "Produce", "transactional_id": "tx"}])
    loaded = trioka_control("load", path, admin=admin)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == [
        "Added control 2: throttle 10 ms on Heartbeat group g",
        "Added control 3: delay 0 ms on Produce transactional id tx"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"action": "throttle"}')
    refused = trioka_control("load", str(bad), admin=admin)
    assert refused.returncode == 2
    assert f"fault file {bad}: rule 1: a throttle rule needs throttle_ms" in refused.stderr

    produced = subprocess.run(["kcat", "-P", "-b", own_broker.bootstrap, "-t", topic_name,
                               "-p", "1", "-X", "retry.backoff.ms=20"], input=b"one\n",
                              capture_output=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    # The seed says which matches get a fault: random.Random(3) draws 0.238, then 0.544, so
    # kcat's first request is refused and its retry, not drawn, is served.
    draws = random.Random(3)
    assert draws.random() < 0.5 <= draws.random()
    rule = own_broker.controls.rule(1)
    assert (rule["matched"], rule["applied"], rule["applied_at"]) == (2, 1, [1])
    listed = trioka_control("list", admin=admin)
    row = listed.stdout.splitlines()[2].split()
    assert row[0] == "1" and row[1] in ("error", "errors") and f"{topic_name}-1" in row \
        and "0.5/3" in row

    rtt = trioka_control("node", "rtt", "1", "--ms", "25", admin=admin)
    assert rtt.returncode == 0, rtt.stderr
    assert rtt.stdout.startswith("Node 1 running") and rtt.stdout.strip().endswith(
        "rtt 25 ms.")
    nodes = trioka_control("node", "list", admin=admin).stdout.splitlines()
    assert nodes[0].split()[-1] == "RTT-MS" and nodes[1].split()[-1] == "25"


def test_an_embedded_broker_starts_with_its_faults():
    import trioka
    with pytest.raises(ValueError, match="faults: rule 2: unknown API"):
        trioka.Broker(memory=True, faults=[{"action": "delay", "delay_ms": 1},
                                           {"action": "delay", "delay_ms": 1, "api": "?"}])
    faults = {"action": "error", "api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER",
              "count": 2}
    with trioka.Broker(memory=True, faults=faults) as broker:
        topic = broker.create_topic()
        reports = []
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, **FAST_RETRIES})
        producer.produce(topic, b"after two refusals", partition=0,
                         on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        assert producer.flush(30) == 0
        assert reports == [(None, 0)]
        [rule] = broker.controls.list()
        assert (rule["applied"], rule["matched"]) == (2, 3)
        got = consume_kafka_python(broker.bootstrap_servers, topic, [0], 1)
        assert [r.value for r in got] == [b"after two refusals"]
