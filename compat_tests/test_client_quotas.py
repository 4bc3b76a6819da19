"""Client quotas against stock clients: AlterClientQuotas / DescribeClientQuotas from
kafka-python's protocol classes (neither confluent-kafka 2.16 nor kafka-python's admin client has
a quota call) and from `trioka quota`; a confluent-kafka and a kafka-python producer, and a
confluent-kafka consumer, held to 1 MB/s by producer_byte_rate / consumer_byte_rate, each seeing
the broker's throttle time; quotas kept across a restart.

The rate tests run their broker with quota.window.num=2 (Kafka's setting: 2 samples of 1 s), so
that Kafka's rate sensor, which lets a first burst of (samples - 1) windows through, settles
within seconds; the default 11 samples behave alike over a longer run (tests/test_quotas.py).
Rates are measured from what the clients saw acknowledged or received, after the first two
seconds.
"""

import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest

from harness import create_topic, unique, wait_for
from trioka.testing.process import BrokerProcess

MB = 1024 * 1024
PAYLOAD = b"q" * 10_000


def trioka_cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trioka", "quota", *args,
                           "--bootstrap-server", bootstrap],
                          capture_output=True, text=True, timeout=60)


def kafka_python_call(bootstrap: str, request):
    """One request through kafka-python's admin client connection, its decoded response."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        async def send():
            return await admin._manager.send(request)
        return admin._manager.run(send)
    finally:
        admin.close()


def alter(bootstrap: str, entity: list, ops: list, validate_only=False):
    return kafka_python_call(bootstrap, AlterClientQuotasRequest(
        entries=[(entity, ops)], validate_only=validate_only))


def describe(bootstrap: str, components=(), strict=False) -> dict:
    response = kafka_python_call(bootstrap, DescribeClientQuotasRequest(
        components=list(components), strict=strict))
    assert response.error_code == 0, response
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity):
            {v.key: v.value for v in entry.values} for entry in response.entries}


@pytest.fixture
def rate_broker():
    with BrokerProcess(overrides={"quota.window.num": 2}) as b:
        yield b.start()


def test_alter_and_describe_with_kafka_python(broker):
    bs = broker.bootstrap
    client = unique("kp-client")
    response = alter(bs, [("client-id", client)], [("producer_byte_rate", 2048.0, False),
                                                     ("consumer_byte_rate", 4096.0, False)])
    assert [e.error_code for e in response.entries] == [0]
    response = alter(bs, [("user", None), ("client-id", client)],
                     [("consumer_byte_rate", 1000.0, False)])
    assert response.entries[0].error_code == 0
    found = describe(bs, [("client-id", 0, client)])
    assert found[(("client-id", client),)] == {"producer_byte_rate": 2048.0,
                                               "consumer_byte_rate": 4096.0}
    assert found[(("user", None), ("client-id", client))] == {"consumer_byte_rate": 1000.0}
    assert list(describe(bs, [("client-id", 0, client)], strict=True)) == [
        (("client-id", client),)]
    # Removing a key; validate_only changes nothing.
    alter(bs, [("client-id", client)], [("consumer_byte_rate", 0.0, True)])
    alter(bs, [("client-id", client)], [("producer_byte_rate", 1.0, False)], validate_only=True)
    assert describe(bs, [("client-id", 0, client)], strict=True) == {
        (("client-id", client),): {"producer_byte_rate": 2048.0}}
    # Kafka's validation: INVALID_REQUEST (42) with a message, nothing applied.
    for entity, ops, words in (
            ([("client-id", client)], [("no_such_quota", 1.0, False)],
             "Invalid configuration key no_such_quota"),
            ([("client-id", client)], [("producer_byte_rate", -5.0, False)], "must be positive"),
            ([("group", "g")], [("producer_byte_rate", 5.0, False)],
             "Unhandled client quota entity type: group"),
            ([], [("producer_byte_rate", 5.0, False)], "Invalid empty client quota entity")):
        (entry,) = alter(bs, entity, ops).entries
        assert entry.error_code == 42 and words in entry.error_message
    assert describe(bs, [("client-id", 0, client)], strict=True) == {
        (("client-id", client),): {"producer_byte_rate": 2048.0}}
    # The CLI reads the same quotas.
    out = trioka_cli(bs, "describe", "--client-id", client)
    assert out.returncode == 0, out.stderr
    assert f"client-id={client} producer_byte_rate 2048" in " ".join(out.stdout.split())


def assert_held_to_quota(rate: float, *, floor: float = 0.90) -> None:
    """Within 10% of the quota: never more than 10% over it, and (throttling must not overshoot:
    Kafka's delay is (rate - quota) / quota x window, not more) at least `floor` of it."""
    assert floor * MB <= rate <= 1.10 * MB, rate / MB


def _steady_rate(events, start: float, end: float) -> float:
    """Bytes per second of the (time, size) events in [start, end)."""
    return sum(n for t, n in events if start <= t < end) / (end - start)


def test_confluent_producer_held_to_its_quota(rate_broker, topic_name):
    bs = rate_broker.bootstrap
    create_topic(bs, topic_name)
    out = trioka_cli(bs, "set", "--client-id", "limited-producer",
                     "--add-config", f"producer_byte_rate={MB}")
    assert out.returncode == 0, out.stderr
    throttles = []
    # A 4 MB queue: a client ahead of its quota waits for room (BufferError).
    producer = Producer({"bootstrap.servers": bs, "client.id": "limited-producer",
                         "linger.ms": 5, "queue.buffering.max.kbytes": 4096,
                         "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    acked = []
    start = time.monotonic()

    def delivered(err, msg):
        assert err is None, err
        acked.append((time.monotonic() - start, len(msg.value())))

    while time.monotonic() - start < 12:
        try:
            producer.produce(topic_name, PAYLOAD, on_delivery=delivered)
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    rate = _steady_rate(acked, 2, 12)
    assert_held_to_quota(rate)
    assert throttles and max(throttles) > 0


def test_kafka_python_producer_held_to_its_quota(rate_broker, topic_name):
    bs = rate_broker.bootstrap
    create_topic(bs, topic_name)
    (entry,) = alter(bs, [("client-id", "kp-limited")],
                     [("producer_byte_rate", float(MB), False)]).entries
    assert entry.error_code == 0
    producer = KafkaProducer(bootstrap_servers=bs, client_id="kp-limited", linger_ms=5,
                             batch_size=256 * 1024, max_request_size=2 * MB)
    acked = []
    start = time.monotonic()
    futures = []
    while time.monotonic() - start < 12:
        f = producer.send(topic_name, PAYLOAD)
        f.add_callback(lambda md: acked.append((time.monotonic() - start, len(PAYLOAD))))
        futures.append(f)
        if len(futures) > 400:
            futures.pop(0).get(timeout=30)
    producer.flush(60)
    producer.close()
    rate = _steady_rate(acked, 2, 12)
    assert_held_to_quota(rate)


def test_confluent_consumer_held_to_its_quota(rate_broker, topic_name):
    bs = rate_broker.bootstrap
    create_topic(bs, topic_name)
    total = 12 * MB
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 5, "batch.size": 65536})
    for _ in range(total // len(PAYLOAD)):
        while True:
            try:
                producer.produce(topic_name, PAYLOAD)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    (entry,) = alter(bs, [("client-id", "limited-consumer")],
                     [("consumer_byte_rate", float(MB), False)]).entries
    assert entry.error_code == 0
    throttles = []
    # Fetches of 256 KB: a throttled fetch's response is dropped (as Kafka drops it), so
    # smaller responses follow the quota more closely.
    consumer = Consumer({"bootstrap.servers": bs, "client.id": "limited-consumer",
                         "group.id": unique("g"), "auto.offset.reset": "earliest",
                         "max.partition.fetch.bytes": 262144, "fetch.max.bytes": 262144,
                         "message.max.bytes": 262144,
                         "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    consumer.subscribe([topic_name])
    received = []
    start = time.monotonic()

    def consumed_for(seconds: float):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            received.append((time.monotonic() - start, len(msg.value())))
        return time.monotonic() - start >= seconds

    wait_for(lambda: consumed_for(10), 30, "ten seconds of consuming", interval=0)
    consumer.close()
    rate = _steady_rate(received, 2, 10)
    # A consumer on a loaded machine (CI runs four test workers at once) can fall behind its
    # quota on its own, polling and handing over records: its floor is 70%.
    assert_held_to_quota(rate, floor=0.70)
    assert throttles and max(throttles) > 0
    assert sum(n for _, n in received) < total    # held back: not all of it in 10 s


def test_quotas_kept_across_restart(own_broker):
    bs = own_broker.bootstrap
    out = trioka_cli(bs, "set", "--user", "alice", "--client-default",
                     "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152")
    assert out.returncode == 0, out.stderr
    out = trioka_cli(bs, "set", "--user-default", "--add-config", "producer_byte_rate=5000")
    assert out.returncode == 0, out.stderr
    own_broker.restart(kill=True)
    bs = own_broker.bootstrap
    assert describe(bs) == {
        (("user", "alice"), ("client-id", None)): {"producer_byte_rate": float(MB),
                                                   "consumer_byte_rate": 2.0 * MB},
        (("user", None),): {"producer_byte_rate": 5000.0}}


def test_cli_usage_errors(broker):
    out = trioka_cli(broker.bootstrap, "set", "--add-config", "producer_byte_rate=1")
    assert out.returncode == 2 and "name an entity" in out.stderr
    out = trioka_cli(broker.bootstrap, "set", "--client-id", "c", "--add-config", "x")
    assert out.returncode == 2 and "is not KEY=VALUE" in out.stderr
    out = trioka_cli(broker.bootstrap, "set", "--client-id", "c",
                     "--add-config", "nope=1")
    assert out.returncode == 1 and "Invalid configuration key nope" in out.stderr


def test_cluster_quotas_through_the_metadata_log(cluster):
    nodes = cluster.bootstrap.split(",")
    (entry,) = alter(nodes[1], [("user", "carol")],
                     [("producer_byte_rate", 4096.0, False)]).entries
    assert entry.error_code == 0
    (entry,) = alter(nodes[2], [("user", "carol")], [("bogus", 1.0, False)]).entries
    assert entry.error_code == 42 and "Invalid configuration key bogus" in entry.error_message
    # Every node has the ClientQuotaRecord in its metadata image.
    for node in nodes:
        wait_for(lambda: describe(node) == {(("user", "carol"),): {"producer_byte_rate": 4096.0}},
                 30, f"the quota on {node}")
