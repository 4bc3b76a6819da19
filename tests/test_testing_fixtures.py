"""The pytest fixtures trioka gives its users (testing/pytest_plugin.py, entry point `pytest11`),
checked the way a user meets them: a small test file run by a pytest of its own (pytest's
`pytester`, in a subprocess so that the broker thread and librdkafka's threads end with it), with
nothing but the installed plugin to provide `kafka_broker`, `kafka_topic` and
`kafka_broker_virtual`.
"""

import pytest

INNER_TIMEOUT_S = 90

ROUNDTRIP = """
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition


def test_produce_then_consume(kafka_broker, kafka_topic):
    servers = kafka_broker.bootstrap_servers
    producer = Producer({"bootstrap.servers": servers})
    producer.produce(kafka_topic, key=b"k", value=b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "fixture-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(kafka_topic, 0, 0)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            assert (message.topic(), message.partition(), message.offset()) == \\
                (kafka_topic, 0, 0)
            assert (message.key(), message.value()) == (b"k", b"hello")
            break
        else:
            pytest.fail("the message produced was not consumed within 30 s")
    finally:
        consumer.close()
"""

# Writes what each test got to topics.txt beside it: the topic, its partitions and high
# watermark as the broker has them, and the broker's address.
RECORD_TOPIC = """
import pathlib

import pytest


def record(kafka_broker, kafka_topic):
    partitions, high_watermark = kafka_broker.call(
        lambda b: (b.topic(kafka_topic).num_partitions,
                   b.partition(kafka_topic, 0).high_watermark))
    with open(pathlib.Path(__file__).with_name("topics.txt"), "a") as out:
        out.write(f"{kafka_topic} {partitions} {high_watermark} "
                  f"{kafka_broker.bootstrap_servers}\\n")


def test_same_name(kafka_broker, kafka_topic):
    record(kafka_broker, kafka_topic)


@pytest.mark.parametrize("n", [1, 2])
def test_parametrized(kafka_broker, kafka_topic, n):
    record(kafka_broker, kafka_topic)
"""


def run_inner(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                         f"--timeout={INNER_TIMEOUT_S}",
                                         timeout=INNER_TIMEOUT_S + 30)


def test_kafka_broker_and_kafka_topic_carry_a_message_end_to_end(pytester):
    pytester.makepyfile(test_roundtrip=ROUNDTRIP)
    result = run_inner(pytester)
    result.assert_outcomes(passed=1)


def test_kafka_topic_is_a_fresh_topic_of_its_own_in_every_test(pytester):
    # Two modules with a test of the same name: the same name prefix for their topics.
    pytester.makepyfile(test_topics_a=RECORD_TOPIC, test_topics_b=RECORD_TOPIC)
    result = run_inner(pytester)
    result.assert_outcomes(passed=6)
    rows = [line.split() for line in
            (pytester.path / "topics.txt").read_text().splitlines()]
    assert len(rows) == 6
    topics = [topic for topic, _, _, _ in rows]
    assert len(set(topics)) == 6, topics
    assert sum(t.startswith("test_same_name") for t in topics) == 2
    # Each an empty topic with one partition, all on the one broker of the session.
    assert {(partitions, high_watermark) for _, partitions, high_watermark, _ in rows} == \
        {("1", "0")}
    assert len({servers for _, _, _, servers in rows}) == 1


# A broker on virtual time per test: its clock is the test's to move, and the next test's is
# fresh (at the real time again).
VIRTUAL_TIME = """
import time

from confluent_kafka import Consumer, Producer, TopicPartition

T0 = 1_893_456_000_000      # 2030-01-01T00:00:00Z
WEEK_MS = 7 * 24 * 3600 * 1000


def test_the_clock_is_the_tests(kafka_broker_virtual):
    broker = kafka_broker_virtual
    assert broker.set_time(T0) == T0
    topic = broker.create_topic(configs={"message.timestamp.type": "LogAppendTime"})
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(topic, value=b"stamped")
    assert producer.flush(30) == 0
    assert broker.advance_time(WEEK_MS) == T0 + WEEK_MS == broker.wall_ms()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                         "group.id": "virtual-fixture-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.2)
        assert message is not None and message.error() is None, message
        assert (message.value(), message.timestamp()) == (b"stamped", (2, T0))
    finally:
        consumer.close()


def test_the_next_test_has_a_fresh_clock(kafka_broker_virtual):
    assert abs(kafka_broker_virtual.wall_ms() - time.time() * 1000) < 60_000
"""


def test_kafka_broker_virtual_is_a_broker_on_a_clock_the_test_moves(pytester):
    pytester.makepyfile(test_virtual=VIRTUAL_TIME)
    result = run_inner(pytester)
    result.assert_outcomes(passed=2)


def test_trioka_report_prints_the_conformance_report_of_the_session(pytester):
    """`--trioka-report`: kafka_broker runs in conformance mode and its report, per client the
    APIs and versions it used, is printed at the end of the session."""
    pytester.makepyfile(test_roundtrip=ROUNDTRIP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--trioka-report",
                                           f"--timeout={INNER_TIMEOUT_S}",
                                           timeout=INNER_TIMEOUT_S + 30)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*trioka conformance report*",
                                 "# Conformance report (strict mode)",
                                 "## rdkafka (confluent-kafka-python *)",
                                 "| Fetch | *",
                                 "| Produce | *"])
    # Without the option, no report.
    result = run_inner(pytester)
    result.assert_outcomes(passed=1)
    assert "trioka conformance report" not in result.stdout.str()
