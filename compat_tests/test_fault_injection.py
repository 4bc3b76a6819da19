"""Fault injection (trioka/controls.py) against stock clients: the faults a CI run needs, applied
deterministically by the broker, and the clients' recovery checked on what comes back over the
wire. Each test that injects faults runs its own broker process (`own_broker`), reached through
its admin endpoint (`own_broker.controls`, trioka.testing.process.ControlsClient)."""

import json
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from clients import (confluent_assigned, consume_confluent, consume_confluent_to, next_records,
                     produce_confluent, value_records)
from harness import RawConnection, create_topic, segment_base_offsets, unique, wait_for
from trioka.testing.process import BrokerProcess
from trioka.log.records import encode_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

pytestmark = pytest.mark.timeout(240)


def raw_produce(conn: RawConnection, topic: str, value: bytes, acks: int = -1):
    """Produce one record over a bare connection (Produce v9): (error code, base offset)."""
    produce = protocol.request_class(ApiKey.PRODUCE)
    data = produce.TopicProduceData
    request = produce(transactional_id=None, acks=acks, timeout_ms=10_000, topic_data=[
        data(name=topic, partition_data=[data.PartitionProduceData(
            index=0, records=encode_batch([(None, value)]))])])
    response = conn.request(ApiKey.PRODUCE, 9, request)
    [part] = response.responses[0].partition_responses
    return part.error_code, part.base_offset


def log_start_and_end(bootstrap: str, topic: str) -> tuple[int, int]:
    """The partition's log start offset and high watermark, as ListOffsets answers them."""
    c = confluent_assigned(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def log_end_offset(bootstrap: str, topic: str) -> int:
    return log_start_and_end(bootstrap, topic)[1]


def delivered_in_order(producer: Producer, topic: str, values: list[bytes], timeout: float):
    """Produce `values` and flush; the (offset, value) of each delivery report, and errors."""
    reports, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports.append((msg.offset(), msg.value()))

    for v in values:
        while True:
            try:
                producer.produce(topic, value=v, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert errors == []
    return reports


def test_idempotent_producer_survives_produces_applied_but_never_acknowledged(own_broker,
                                                                               topic_name):
    """`disconnect after` on every 5th Produce (20 times): the batch is appended, the connection
    closes before the answer, the idempotent producer sends it again and the broker recognises
    the retry. Every message is in the log once, in order."""
    create_topic(own_broker.bootstrap, topic_name, 1)
    rule = own_broker.controls.disconnect("after", api="Produce", topic=topic_name, every=5,
                                          count=20)
    values = [b"m%06d" % i for i in range(20_000)]
    reports = produce_confluent(own_broker.bootstrap, topic_name, value_records(values),
                                idempotent=True, timeout=150, config={
                                    "batch.num.messages": 100, "linger.ms": 2,
                                    "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 100,
                                    "retry.backoff.ms": 20})

    after = own_broker.controls.rule(rule["id"])
    assert after["applied"] == 20, after        # the faults really happened
    # Delivery reports: each message once, at the offset of its place in the sequence.
    assert reports == [(0, i) for i in range(len(values))]
    # The log: nothing appended twice, read back by a consumer in order.
    assert log_end_offset(own_broker.bootstrap, topic_name) == len(values)
    got = consume_confluent(own_broker.bootstrap, topic_name, [0], len(values), timeout=60)
    assert [(r.offset, r.value) for r in got] == list(enumerate(values))


def test_not_leader_errors_make_the_producer_retry(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    rule = own_broker.controls.error("NOT_LEADER_OR_FOLLOWER", api="Produce", topic=topic_name,
                                     count=3)
    reports = produce_confluent(own_broker.bootstrap, topic_name,
                                value_records([b"after three refusals"]), timeout=60,
                                config={"retry.backoff.ms": 20})
    assert reports == [(0, 0)]
    after = own_broker.controls.rule(rule["id"])
    assert (after["applied"], after["matched"]) == (3, 4)    # refused three times, then served
    got = consume_confluent(own_broker.bootstrap, topic_name, [0], 1)
    assert [(r.offset, r.value) for r in got] == [(0, b"after three refusals")]
    assert log_end_offset(own_broker.bootstrap, topic_name) == 1


def test_a_fetch_delay_shows_up_as_latency(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    with RawConnection(own_broker.bootstrap) as conn:
        assert raw_produce(conn, topic_name, b"late") == (0, 0)
    rule = own_broker.controls.delay(1500, api="Fetch", topic=topic_name)
    fetch = protocol.request_class(ApiKey.FETCH)
    request = fetch(max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[fetch.FetchTopic(
        topic=topic_name, partitions=[fetch.FetchTopic.FetchPartition(
            partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])])
    with RawConnection(own_broker.bootstrap) as conn:
        started = time.monotonic()
        response = conn.request(ApiKey.FETCH, 11, request)
        elapsed = time.monotonic() - started
    part = response.responses[0].partitions[0]
    assert (part.error_code, part.high_watermark) == (0, 1)
    assert elapsed >= 1.5, elapsed        # max_wait_ms 0: only the control held it

    started = time.monotonic()
    got = consume_confluent(own_broker.bootstrap, topic_name, [0], 1)
    assert [(r.offset, r.value) for r in got] == [(0, b"late")]
    assert time.monotonic() - started >= 1.5
    assert own_broker.controls.rule(rule["id"])["applied"] >= 2


def test_down_then_up_the_producer_queues_and_delivers(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    turned_away = []    # librdkafka's reports of its connection being closed or refused
    producer = Producer({"bootstrap.servers": own_broker.bootstrap, "linger.ms": 0,
                         "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                         "message.timeout.ms": 120_000,
                         "error_cb": lambda err: turned_away.append(err) if err.code() in (
                             KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) else None})
    assert delivered_in_order(producer, topic_name, [b"before"], timeout=30) == [(0, b"before")]
    turned_away.clear()

    open_before = RawConnection(own_broker.bootstrap)
    assert open_before.request(ApiKey.API_VERSIONS, 0,
                               protocol.request_class(ApiKey.API_VERSIONS)()).error_code == 0
    own_broker.controls.down()
    assert own_broker.controls.is_down()
    assert open_before.closed_by_broker()          # connections open at `down` are closed
    open_before.close()
    with RawConnection(own_broker.bootstrap) as refused:
        assert refused.closed_by_broker()          # and new ones are closed when accepted

    reports, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports.append((msg.offset(), msg.value()))

    for i in range(50):
        producer.produce(topic_name, value=b"while down %d" % i, partition=0,
                         on_delivery=on_delivery)

    def refused():
        producer.poll(0.1)
        return len(turned_away) >= 1

    # Nothing is acknowledged while down: the producer has been turned away (its connection
    # closed at once; librdkafka reports repeated identical connection errors once, so one
    # report, its own or "all brokers down", is what a loaded machine can count on) and still
    # holds every message.
    wait_for(refused, 60, lambda: f"the producer to be turned away: {turned_away}", interval=0)
    assert (reports, errors) == ([], [])
    assert len(producer) == 50                     # queued in the producer

    own_broker.controls.up()
    assert producer.flush(60) == 0
    assert errors == []
    expected = [(1 + i, b"while down %d" % i) for i in range(50)]
    assert sorted(reports) == expected
    got = consume_confluent(own_broker.bootstrap, topic_name, [0], 51)
    assert [(r.offset, r.value) for r in got] == [(0, b"before")] + expected


def trioka_control(*args: str, admin: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trioka", "control", *args, "--admin", admin],
                          capture_output=True, text=True, timeout=60)


def test_the_cli_adds_lists_and_clears_rules_on_a_running_broker(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    admin = own_broker.admin
    added = trioka_control("add", "error", "--api", "Produce", "--topic", topic_name,
                           "--error", "NOT_LEADER_OR_FOLLOWER", admin=admin)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (f"Added control 1: error NOT_LEADER_OR_FOLLOWER on Produce "
                                    f"naming topic {topic_name}")
    with RawConnection(own_broker.bootstrap) as conn:
        code, _ = raw_produce(conn, topic_name, b"refused")
        assert code == ErrorCode.NOT_LEADER_OR_FOLLOWER

    listed = trioka_control("list", admin=admin)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "Broker: up"
    assert lines[1].split() == ["ID", "FAULT", "API", "NAMING", "CLIENT-ID", "AFTER",
                                "EVERY", "COUNT", "P/SEED", "MATCHED", "APPLIED"]
    assert lines[2].split() == ["1", "error", "NOT_LEADER_OR_FOLLOWER", "Produce",
                                topic_name, "*", "0", "1", "-", "-", "1", "1"]
    as_json = json.loads(trioka_control("list", "--json", admin=admin).stdout)
    assert [(r["id"], r["applied"]) for r in as_json["rules"]] == [(1, 1)]

    cleared = trioka_control("clear", admin=admin)
    assert (cleared.returncode, cleared.stdout.strip()) == (0, "Removed 1 controls.")
    with RawConnection(own_broker.bootstrap) as conn:
        assert raw_produce(conn, topic_name, b"accepted") == (0, 0)
    assert json.loads(trioka_control("list", "--json", admin=admin).stdout) == {
        "down": False, "rules": []}

    assert trioka_control("down", admin=admin).returncode == 0
    with RawConnection(own_broker.bootstrap) as conn:
        assert conn.closed_by_broker()
    assert trioka_control("up", admin=admin).returncode == 0
    with RawConnection(own_broker.bootstrap) as conn:
        assert raw_produce(conn, topic_name, b"up again") == (0, 1)

    bad = trioka_control("add", "delay", admin=admin)        # no --delay-ms: a usage error
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1] == "trioka control add: error: a delay rule needs --delay-ms"
    missing = trioka_control("clear", "7", admin=admin)
    assert missing.returncode == 1 and "no control 7" in missing.stderr


def test_a_group_consumer_retries_find_coordinator_and_joins(own_broker, topic_name):
    create_topic(own_broker.bootstrap, topic_name, 1)
    with RawConnection(own_broker.bootstrap) as conn:
        for i in range(3):
            assert raw_produce(conn, topic_name, b"g%d" % i) == (0, i)
    rule = own_broker.controls.error("COORDINATOR_NOT_AVAILABLE", api="FindCoordinator",
                                     count=3)
    consumer = Consumer({"bootstrap.servers": own_broker.bootstrap,
                         "group.id": unique("controls-group"), "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    try:
        consumer.subscribe([topic_name])
        got = [(m.offset(), m.value()) for m in next_records(consumer, 3, 90)]
        assert got == [(0, b"g0"), (1, b"g1"), (2, b"g2")]
        assert [(tp.topic, tp.partition) for tp in consumer.assignment()] == [(topic_name, 0)]
    finally:
        consumer.close()
    after = own_broker.controls.rule(rule["id"])
    assert after["applied"] == 3 and after["matched"] >= 4, after


# --- the embedded broker's controls (trioka.Broker().controls), with bare connections ---

@pytest.fixture(scope="module")
def embedded():
    import trioka
    with trioka.Broker(memory=True) as broker:
        yield broker


def test_embedded_controls_error_disconnect_and_drop_response(embedded):
    topic = embedded.create_topic()
    controls = embedded.controls
    controls.clear()
    rule = controls.error(ErrorCode.KAFKA_STORAGE_ERROR, api="Produce", count=1,
                          message="disk on fire")
    with RawConnection(embedded.bootstrap_servers) as conn:
        produce = protocol.request_class(ApiKey.PRODUCE)
        data = produce.TopicProduceData
        request = produce(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
            data(name=topic, partition_data=[data.PartitionProduceData(
                index=0, records=encode_batch([(None, b"x")]))])])
        response = conn.request(ApiKey.PRODUCE, 9, request)
        [part] = response.responses[0].partition_responses
        assert (part.error_code, part.error_message) == (ErrorCode.KAFKA_STORAGE_ERROR,
                                                         "disk on fire")
        assert raw_produce(conn, topic, b"first") == (0, 0)      # count 1: served again
    assert controls.rule(rule["id"])["applied"] == 1

    # before: the request is not applied.
    controls.disconnect("before", api="Produce", count=1)
    with RawConnection(embedded.bootstrap_servers) as conn:
        with pytest.raises(ConnectionError):
            raw_produce(conn, topic, b"never")
    with RawConnection(embedded.bootstrap_servers) as conn:
        assert raw_produce(conn, topic, b"second") == (0, 1)

    # drop_response: applied, unanswered; the next answer on the connection is the next request's.
    controls.drop_response(api="Produce", count=1)
    with RawConnection(embedded.bootstrap_servers) as conn:
        conn.send(protocol.encode_request(ApiKey.PRODUCE, 9, 41, "raw", produce(
            transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
                data(name=topic, partition_data=[data.PartitionProduceData(
                    index=0, records=encode_batch([(None, b"unanswered")]))])])))
        conn.send(protocol.encode_request(ApiKey.API_VERSIONS, 0, 42, "raw",
                                          protocol.request_class(ApiKey.API_VERSIONS)()))
        correlation_id, _ = protocol.decode_response(ApiKey.API_VERSIONS, 0, conn.read_frame())
        assert correlation_id == 42
        assert raw_produce(conn, topic, b"third") == (0, 3)      # offset 2 went unanswered
    got = consume_confluent(embedded.bootstrap_servers, topic, [0], 4)
    assert [r.value for r in got] == [b"first", b"second", b"unanswered", b"third"]
    assert [r["applied"] for r in controls.list()] == [1, 1, 1]
    assert controls.clear() == 3 and controls.list() == []


def wait_until_applied(controls, rule_id: int, applied: int) -> None:
    wait_for(lambda: controls.rule(rule_id)["applied"] >= applied, 15,
             lambda: f"rule {rule_id} applied {applied} times: {controls.rule(rule_id)}")


def test_a_held_request_ends_at_down_and_does_not_hold_up_shutdown():
    # A grace period far longer than stop()'s 15 s wait: only ending the hold lets it return.
    with BrokerProcess(memory=True, overrides={"shutdown.grace.ms": 120_000}) as b:
        b.start()
        rule = b.controls.delay(600_000, api="Metadata")
        metadata = protocol.request_class(ApiKey.METADATA)(topics=[])
        with RawConnection(b.bootstrap) as held:
            held.send(protocol.encode_request(ApiKey.METADATA, 9, 1, "held", metadata))
            wait_until_applied(b.controls, rule["id"], 1)
            with RawConnection(b.bootstrap) as other:
                assert other.request(ApiKey.API_VERSIONS, 0, protocol.request_class(
                    ApiKey.API_VERSIONS)()).error_code == 0     # only Metadata is held
            b.controls.down()
            assert held.closed_by_broker()
        b.controls.up()
        with RawConnection(b.bootstrap) as held:
            held.send(protocol.encode_request(ApiKey.METADATA, 9, 1, "held", metadata))
            wait_until_applied(b.controls, rule["id"], 2)
            assert b.stop() == 0
            assert held.closed_by_broker()


@pytest.fixture
def broker_without_timers():
    """Retention and cleaner timers that never fire during a test: only the commands act."""
    with BrokerProcess(overrides={"log.retention.check.interval.ms": "3600000",
                                  "log.cleaner.enable": "false"}) as b:
        yield b.start()


def test_retention_and_compaction_now_from_the_command_line(broker_without_timers, topic_name):
    """`trioka control retention` / `compaction` run the passes at once, through the admin
    endpoint: old segments go and a compacted topic keeps each key's latest value."""
    own_broker = broker_without_timers
    old = topic_name + "-old"
    create_topic(own_broker.bootstrap, old, configs={"segment.bytes": "1000",
                                                     "retention.ms": "1"})
    table = topic_name + "-table"
    create_topic(own_broker.bootstrap, table, configs={"segment.bytes": "1000",
                                                       "cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": own_broker.bootstrap, "linger.ms": 0})
    for i in range(30):
        p.produce(old, value=b"x" * 100)
        p.produce(table, key=b"k%d" % (i % 3), value=b"v%d" % i)
        p.flush(10)

    def control(*args):
        return subprocess.run([sys.executable, "-m", "trioka", "control", *args,
                               "--admin", own_broker.admin],
                              capture_output=True, text=True, timeout=60)

    r = control("retention")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Retention done: ") and "segments deleted" in r.stdout
    assert int(r.stdout.split()[2]) > 0
    r = control("compaction")
    assert r.returncode == 0 and "1 partitions cleaned" in r.stdout, (r.stdout, r.stderr)

    low, high = log_start_and_end(own_broker.bootstrap, old)
    assert high == 30 and low > 0
    # What the compacted log holds: in its closed segments only each key's last record (below
    # the active segment), then the active segment untouched, which the cleaner leaves alone.
    active = segment_base_offsets(own_broker.data_dir, table)[-1]
    assert active > 3, active          # closed segments where keys repeat: work for the cleaner
    kept = sorted(max(o for o in range(active) if o % 3 == k) for k in range(3))
    kept += range(active, 30)
    [present] = consume_confluent_to(own_broker.bootstrap, table, {0: 30}).values()
    assert [(r.offset, r.key, r.value) for r in present] == [
        (o, b"k%d" % (o % 3), b"v%d" % o) for o in kept]
