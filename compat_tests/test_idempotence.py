"""Idempotent producers: retries after lost answers are written once, in order.

An idempotent producer numbers its batches per partition (producer id, epoch, base sequence). When
the connection breaks after the broker appended a batch but before the producer read the answer,
the producer cannot know the batch was written and sends it again, with the same numbers, together
with whatever else it had in flight (up to five requests). The broker recognises a batch it keeps
among each producer's last five as a duplicate and answers with the offsets it was first given,
and refuses a batch that skips ahead with OUT_OF_ORDER_SEQUENCE_NUMBER, so the producer resends in
order. The result: every record once, in the order sent, at the offset its delivery report named.

The lost answers are made by the broker's fault injection (`own_broker.controls`, controls.py):
`disconnect after` handles a Produce request and closes the connection before answering it;
`drop_response` handles it and never answers. Rules apply to every Nth match, a bounded number of
times, and report how often they were applied, so each test checks that the faults happened.
"""

import asyncio
import time

import confluent_kafka
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from clients import confluent_assigned, consume_confluent
from harness import RawConnection, create_topic, wait_for
from trioka.log.records import encode_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

PARTITIONS = 3


def expected_values(total: int) -> dict[int, list[bytes]]:
    """What is sent, per partition in order: record i goes to partition i % 3."""
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for i in range(total):
        p = i % PARTITIONS
        out[p].append(b"%d:%07d" % (p, len(out[p])))
    return out


def high_watermarks(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    c = confluent_assigned(bootstrap)
    try:
        return {p: c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p),
                                           timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def assert_log_equals(bootstrap: str, topic: str, expected: dict[int, list[bytes]]) -> None:
    """The topic read back over the wire is exactly `expected`: per partition the values in the
    order sent, at offsets 0, 1, 2, ... up to the high watermark (no duplicate, no gap)."""
    highs = high_watermarks(bootstrap, topic)
    assert highs == {p: len(v) for p, v in expected.items()}, "duplicates or losses"
    recs = consume_confluent(bootstrap, topic, list(range(PARTITIONS)), sum(highs.values()),
                             timeout=30)
    for p in range(PARTITIONS):
        got = [r for r in recs if r.partition == p]
        assert [r.offset for r in got] == list(range(len(expected[p]))), p
        values = [r.value for r in got]
        if values != expected[p]:
            first = next(i for i, (a, b) in enumerate(zip(values, expected[p])) if a != b)
            raise AssertionError(f"partition {p} differs from offset {first}: "
                                 f"got {values[first:first + 3]}, sent "
                                 f"{expected[p][first:first + 3]}")


def produce_all(producer, topic: str, expected: dict[int, list[bytes]],
                during=None) -> dict[bytes, tuple[int, int]]:
    """Send `expected` with a confluent-kafka producer, record i to partition i % 3, and flush;
    the (partition, offset) of every delivery report. `during(i, reports)` is called after each
    record is queued. Fails on a delivery error or what is undelivered after 100 s."""
    reports: dict[bytes, tuple[int, int]] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reports[msg.value()] = (msg.partition(), msg.offset())

    total = sum(len(v) for v in expected.values())
    sent = {p: 0 for p in range(PARTITIONS)}
    for i in range(total):
        p = i % PARTITIONS
        value = expected[p][sent[p]]
        sent[p] += 1
        while True:
            try:
                producer.produce(topic, value=value, partition=p, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if during is not None:
            during(i, reports)
    wait_for(lambda: producer.flush(1) == 0, 100, "every record delivered", interval=0)
    assert not errors, errors[:5]
    return reports


def assert_reports_in_order(reports: dict, expected: dict[int, list[bytes]]) -> None:
    """Each record's delivery report names the offset of its place in its partition."""
    for p in range(PARTITIONS):
        assert [reports[v] for v in expected[p]] == [(p, o) for o in range(len(expected[p]))], p


@pytest.mark.timeout(240)
def test_confluent_idempotent_100k_with_lost_answers(own_broker, topic_name):
    """100k records from librdkafka's idempotent producer while one Produce answer in four is
    lost (up to 40 times): each record once, in order, at the offset of its delivery report."""
    b = own_broker
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS)
    rule = b.controls.disconnect("after", api="Produce", topic=topic_name, every=4, count=40)
    expected = expected_values(100_000)
    producer = confluent_kafka.Producer({
        "bootstrap.servers": b.bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "batch.num.messages": 200, "max.in.flight": 5,
        "message.timeout.ms": 120_000, "retry.backoff.ms": 20,
        "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 200})
    reports = produce_all(producer, topic_name, expected)
    assert b.controls.rule(rule["id"])["applied"] >= 25      # the answers really were lost
    assert_reports_in_order(reports, expected)
    assert_log_equals(b.bootstrap, topic_name, expected)


def test_kafka_python_idempotent_with_lost_answers(own_broker, topic_name):
    """kafka-python's idempotent producer (enable_idempotence) through the same lost answers."""
    b = own_broker
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS)
    rule = b.controls.disconnect("after", api="Produce", topic=topic_name, every=4, count=15)
    total = 15_000
    expected = expected_values(total)
    producer = KafkaProducer(bootstrap_servers=b.bootstrap, enable_idempotence=True,
                             acks="all", linger_ms=5, batch_size=1024,
                             max_in_flight_requests_per_connection=5,
                             retry_backoff_ms=20, reconnect_backoff_ms=10,
                             reconnect_backoff_max_ms=200, request_timeout_ms=10_000,
                             delivery_timeout_ms=120_000)
    futures = []
    try:
        sent = {p: 0 for p in range(PARTITIONS)}
        for i in range(total):
            p = i % PARTITIONS
            futures.append(producer.send(topic_name, value=expected[p][sent[p]], partition=p))
            sent[p] += 1
        producer.flush(timeout=90)
        metadata = [f.get(timeout=10) for f in futures]
    finally:
        producer.close(timeout=10)
    assert b.controls.rule(rule["id"])["applied"] >= 10
    got: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for m in metadata:
        got[m.partition].append(m.offset)
    for p in range(PARTITIONS):
        assert got[p] == list(range(len(expected[p]))), p
    assert_log_equals(b.bootstrap, topic_name, expected)


def test_idempotent_producer_continues_across_broker_sigkill(own_broker, topic_name):
    """The producer state is rebuilt from the log after a SIGKILL: an idempotent producer whose
    batches were written but not answered when the broker died sends them again to the restarted
    broker, which recognises them; the stream goes on without a duplicate or a gap."""
    b = own_broker
    create_topic(b.bootstrap, topic_name, partitions=PARTITIONS)
    total = 30_000
    expected = expected_values(total)
    producer = confluent_kafka.Producer({
        "bootstrap.servers": b.bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "batch.num.messages": 200, "message.timeout.ms": 120_000,
        "retry.backoff.ms": 50, "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500})

    # The broker answers the first 20 Produce requests; it handles the later ones, appending
    # their batches, without answering.
    rule = b.controls.drop_response(api="Produce", topic=topic_name, after=20)

    def kill_halfway(i, reports):
        if i != total // 2:
            return
        # Half queued: once the broker sits on a few written, unanswered batches, it dies.

        def unanswered():
            producer.poll(0.05)
            return b.controls.rule(rule["id"])["applied"] >= 3

        wait_for(unanswered, 30, "three written batches left unanswered", interval=0)
        assert reports
        b.restart(kill=True)        # the rules die with the process

    reports = produce_all(producer, topic_name, expected, during=kill_halfway)
    assert_reports_in_order(reports, expected)
    assert_log_equals(b.bootstrap, topic_name, expected)


def test_out_of_order_and_fenced_epochs_over_the_wire(broker, topic_name):
    """The broker's sequence and epoch checks as a client sees them, with hand-made batches:
    a duplicate gets its original offset, a gap OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch
    INVALID_PRODUCER_EPOCH, a new epoch must start at sequence 0."""
    create_topic(broker.bootstrap, topic_name)
    init = protocol.request_class(ApiKey.INIT_PRODUCER_ID)(
        transactional_id=None, transaction_timeout_ms=60_000, producer_id=-1, producer_epoch=-1)
    produce = protocol.request_class(ApiKey.PRODUCE)
    topic_data = produce.TopicProduceData

    def send(conn, pid, epoch, seq, values):
        batch = encode_batch([(None, v, [], int(time.time() * 1000)) for v in values],
                             producer_id=pid, producer_epoch=epoch, base_sequence=seq)
        request = produce(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
            topic_data(name=topic_name, partition_data=[
                topic_data.PartitionProduceData(index=0, records=batch)])])
        [part] = conn.request(ApiKey.PRODUCE, 9, request).responses[0].partition_responses
        return part.error_code, part.base_offset

    with RawConnection(broker.bootstrap) as conn:
        answer = conn.request(ApiKey.INIT_PRODUCER_ID, 4, init)
        assert answer.error_code == 0
        pid = answer.producer_id
        assert send(conn, pid, 0, 0, [b"a", b"b"]) == (0, 0)
        assert send(conn, pid, 0, 2, [b"c"]) == (0, 2)
        assert send(conn, pid, 0, 0, [b"a", b"b"]) == (0, 0)        # a retry: same offsets
        assert send(conn, pid, 0, 2, [b"c"]) == (0, 2)
        assert send(conn, pid, 0, 5, [b"x"])[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        # A new epoch starts again at sequence 0.
        assert send(conn, pid, 1, 3, [b"y"])[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert send(conn, pid, 1, 0, [b"d"]) == (0, 3)
        assert send(conn, pid, 0, 3, [b"z"])[0] == ErrorCode.INVALID_PRODUCER_EPOCH
    assert high_watermarks(broker.bootstrap, topic_name, 1) == {0: 4}
    recs = consume_confluent(broker.bootstrap, topic_name, [0], 4, timeout=10)
    assert [(r.offset, r.value) for r in recs] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]


def test_aiokafka_idempotent_producer(broker, topic_name):
    """aiokafka with enable_idempotence: its batches carry sequences the broker accepts."""
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    expected = expected_values(3000)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True,
                                    linger_ms=5)
        await producer.start()
        try:
            futures = []
            for p in range(PARTITIONS):
                for v in expected[p]:
                    futures.append(await producer.send(topic_name, value=v, partition=p))
            return [await f for f in futures]
        finally:
            await producer.stop()

    metadata = asyncio.run(asyncio.wait_for(run(), 60))
    assert sorted((m.partition, m.offset) for m in metadata) == \
        sorted((p, o) for p in range(PARTITIONS) for o in range(len(expected[p])))
    assert_log_equals(broker.bootstrap, topic_name, expected)
