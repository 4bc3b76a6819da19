"""request_percentage (KIP-124) and controller_mutation_rate (KIP-599) against stock clients.

- A confluent-kafka producer and a kafka-python producer whose client id has a tiny
  request_percentage are throttled: confluent's throttle_cb and kafka-python's
  throttle-time-max metric report the broker's throttle_time_ms, bounded by one quota
  window; the same clients under an id without a quota are not throttled.
- Topic creation over controller_mutation_rate: kafka-python's admin (CreateTopics v7, strict)
  gets THROTTLING_QUOTA_EXCEEDED for the topics that arrive once the token bucket is exhausted
  and those topics are not created; confluent's admin speaks CreateTopics below v6
  (librdkafka), so Kafka's permissive quota applies: its topics are created and throttle_cb
  reports the throttle. kafka-python's DeleteTopics and CreatePartitions over the quota are
  refused the same way. A client without the quota creates as many topics as it likes.
- A three-node cluster: every node enforces the request_percentage of its metadata image, and
  the controller enforces controller_mutation_rate on the requests the other nodes forward in
  an Envelope naming the client: one token bucket per client for the whole cluster, whichever
  node the client asks; kafka-python is refused (strict), confluent-kafka is throttled by the
  node it asked (permissive).

The brokers run with `controller.quota.window.num=2` (a token bucket of 2 x the quota) so that
the quota is exhausted by a handful of partitions.
"""

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaProducer

from harness import create_topic, unique, wait_for
from test_client_quotas import alter, describe, trioka_cli
from trioka.testing.process import BrokerProcess

THROTTLING_QUOTA_EXCEEDED = 89


@pytest.fixture
def quota_broker():
    with BrokerProcess(overrides={"quota.window.num": 2,
                                  "controller.quota.window.num": 2}) as b:
        yield b.start()


def _confluent_produce(bs: str, topic: str, client_id: str, n: int) -> list[int]:
    """n one-record produce requests (each flushed), the throttle times throttle_cb saw."""
    throttles = []
    producer = Producer({"bootstrap.servers": bs, "client.id": client_id, "linger.ms": 0,
                         "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    for i in range(n):
        producer.produce(topic, b"x%d" % i)
        assert producer.flush(30) == 0
    return throttles


def test_confluent_producer_throttled_by_request_percentage(quota_broker, topic_name):
    bs = quota_broker.bootstrap
    create_topic(bs, topic_name)
    out = trioka_cli(bs, "set", "--client-id", "busy-confluent",
                     "--add-config", "request_percentage=0.01")
    assert out.returncode == 0, out.stderr
    out = trioka_cli(bs, "describe", "--client-id", "busy-confluent")
    assert "request_percentage 0.01" in " ".join(out.stdout.split()), out.stdout
    start = time.monotonic()
    throttled = _confluent_produce(bs, topic_name, "busy-confluent", 20)
    elapsed = time.monotonic() - start
    assert throttled and max(throttled) > 0, "no throttle_time_ms reached throttle_cb"
    # In seconds, bounded by one quota window (quota.window.size.seconds = 1 s), as in Kafka
    # (librdkafka also reports the 0 that ends a throttle).
    assert all(0 <= t <= 1.0 for t in throttled), throttled
    # The client was held: muted connections and the client's own back-off cost it time.
    assert elapsed >= sum(throttled) * 0.5, (elapsed, throttled)
    # The same requests from a client id without a quota are not throttled.
    assert _confluent_produce(bs, topic_name, "free-confluent", 20) == []


def test_kafka_python_producer_throttled_by_request_percentage(quota_broker, topic_name):
    bs = quota_broker.bootstrap
    create_topic(bs, topic_name)
    (entry,) = alter(bs, [("client-id", "busy-kp")],
                     [("request_percentage", 0.01, False)]).entries
    assert entry.error_code == 0
    assert describe(bs, [("client-id", 0, "busy-kp")], strict=True) == {
        (("client-id", "busy-kp"),): {"request_percentage": 0.01}}

    def run(client_id: str) -> float:
        """The largest throttle time kafka-python's connections recorded (its
        throttle-time-max metric) over a few produce requests."""
        producer = KafkaProducer(bootstrap_servers=bs, client_id=client_id, linger_ms=0)
        try:
            for i in range(5):
                producer.send(topic_name, b"y%d" % i).get(timeout=30)
            return producer.metrics()["producer-metrics"]["throttle-time-max"]
        finally:
            producer.close()

    throttle_max = run("busy-kp")
    assert 0 < throttle_max <= 1000, throttle_max
    assert run("free-kp") == 0


def test_kafka_python_create_topics_over_mutation_quota(quota_broker):
    bs = quota_broker.bootstrap
    (entry,) = alter(bs, [("client-id", "kp-mutator")],
                     [("controller_mutation_rate", 1.0, False)]).entries
    assert entry.error_code == 0
    assert describe(bs, [("client-id", 0, "kp-mutator")], strict=True) == {
        (("client-id", "kp-mutator"),): {"controller_mutation_rate": 1.0}}
    names = [unique("mut") for _ in range(4)]
    admin = KafkaAdminClient(bootstrap_servers=bs, client_id="kp-mutator")
    try:
        # A bucket of 2 tokens: the first topic (2 partitions) empties it, the second (1) is
        # still let in (strict: only an exhausted bucket refuses), the rest are refused.
        result = admin.create_topics({names[0]: {"num_partitions": 2},
                                      names[1]: {"num_partitions": 1},
                                      names[2]: {"num_partitions": 1},
                                      names[3]: {"num_partitions": 1}}, raise_errors=False)
        codes = {t["name"]: t["error_code"] for t in result["topics"]}
        assert codes == {names[0]: 0, names[1]: 0, names[2]: THROTTLING_QUOTA_EXCEEDED,
                         names[3]: THROTTLING_QUOTA_EXCEEDED}, result
        messages = {t["name"]: t["error_message"] for t in result["topics"]}
        assert messages[names[2]] == "The throttling quota has been exceeded."
    finally:
        admin.close()
    # Another client id is not limited (and its connection is not muted).
    free = KafkaAdminClient(bootstrap_servers=bs, client_id="kp-free")
    try:
        existing = set(free.list_topics())
        assert {names[0], names[1]} <= existing and not {names[2], names[3]} & existing
        more = [unique("free") for _ in range(3)]
        result = free.create_topics({n: {"num_partitions": 3} for n in more},
                                    raise_errors=False)
        assert [t["error_code"] for t in result["topics"]] == [0, 0, 0]
    finally:
        free.close()


def _confluent_creates_five_partitions_throttled(bootstrap: str, client_id: str) -> None:
    """confluent-kafka's admin, as `client_id` with a controller_mutation_rate of 1, creates
    three topics of 5 partitions in all: with a bucket of 2 tokens all are created, 3 tokens
    short, and throttle_cb reports a throttle of about 3 s."""
    throttles = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": client_id,
                         "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    names = [unique("cfmut") for _ in range(3)]
    futures = admin.create_topics([NewTopic(names[0], 2), NewTopic(names[1], 2),
                                   NewTopic(names[2], 1)], operation_timeout=10)
    for f in futures.values():
        f.result(timeout=30)
    deadline = time.monotonic() + 10
    while not throttles and time.monotonic() < deadline:
        admin.poll(0.1)
    assert throttles and 2.5 <= max(throttles) <= 3.0, throttles   # seconds
    assert set(names) <= set(admin.list_topics(timeout=10).topics)


def test_confluent_admin_over_mutation_quota(quota_broker):
    """librdkafka speaks CreateTopics and DeleteTopics below the versions that can
    carry THROTTLING_QUOTA_EXCEEDED: Kafka's permissive quota lets its topics through and
    throttles the client for as long as the token bucket needs to refill, which throttle_cb
    reports."""
    bs = quota_broker.bootstrap
    out = trioka_cli(bs, "set", "--client-id", "cf-mutator",
                     "--add-config", "controller_mutation_rate=1")
    assert out.returncode == 0, out.stderr
    _confluent_creates_five_partitions_throttled(bs, "cf-mutator")
    # A client id without the quota is not throttled.
    free_throttles = []
    free = AdminClient({"bootstrap.servers": bs, "client.id": "cf-free",
                        "throttle_cb": lambda e: free_throttles.append(e.throttle_time)})
    for f in free.create_topics([NewTopic(unique("cffree"), 5)],
                                operation_timeout=10).values():
        f.result(timeout=30)
    free.poll(0.5)
    assert free_throttles == []


def test_kafka_python_delete_topics_over_mutation_quota(quota_broker):
    bs = quota_broker.bootstrap
    names = [unique("del") for _ in range(3)]
    for name in names:
        create_topic(bs, name, partitions=2)
    (entry,) = alter(bs, [("client-id", "kp-deleter")],
                     [("controller_mutation_rate", 1.0, False)]).entries
    assert entry.error_code == 0
    admin = KafkaAdminClient(bootstrap_servers=bs, client_id="kp-deleter")
    try:
        # DeleteTopics v5+: the first topic empties the bucket (2 partitions, 2 tokens), the
        # next finds it at zero (let in), the last finds it below zero (refused, kept).
        result = admin.delete_topics(names, raise_errors=False)
    finally:
        admin.close()
    codes = {r["name"]: r["error_code"] for r in result["topics"]}
    assert codes == {names[0]: 0, names[1]: 0, names[2]: THROTTLING_QUOTA_EXCEEDED}, result
    free = KafkaAdminClient(bootstrap_servers=bs, client_id="kp-free")
    try:
        existing = set(free.list_topics())
    finally:
        free.close()
    assert names[2] in existing and not {names[0], names[1]} & existing


def test_cluster_nodes_enforce_request_percentage(cluster, topic_name):
    """A KRaft cluster keeps request_percentage in its metadata log and every node enforces
    the quota of its image."""
    nodes = cluster.bootstrap.split(",")
    (entry,) = alter(nodes[0], [("client-id", "busy-cluster")],
                     [("request_percentage", 0.01, False)]).entries
    assert entry.error_code == 0
    for node in nodes:
        wait_for(lambda: describe(node, [("client-id", 0, "busy-cluster")]) == {
            (("client-id", "busy-cluster"),): {"request_percentage": 0.01}}, 30,
            f"the quota on {node}")
    create_topic(cluster.bootstrap, topic_name)
    assert _confluent_produce(cluster.bootstrap, topic_name, "busy-cluster", 5)
    assert _confluent_produce(cluster.bootstrap, topic_name, "free-cluster", 5) == []


def test_kafka_python_create_partitions_over_mutation_quota(quota_broker):
    bs = quota_broker.bootstrap
    names = [unique("grow") for _ in range(3)]
    for name in names:
        create_topic(bs, name)
    (entry,) = alter(bs, [("client-id", "kp-grower")],
                     [("controller_mutation_rate", 2.0, False)]).entries
    assert entry.error_code == 0
    admin = KafkaAdminClient(bootstrap_servers=bs, client_id="kp-grower")
    try:
        # CreatePartitions v3: a bucket of 4 tokens; +3, then +3 (let in at 1 token, -2 left),
        # then refused: the bucket is below zero.
        response = admin.create_partitions({n: 4 for n in names}, raise_errors=False)
    finally:
        admin.close()
    codes = {r.name: r.error_code for r in response.results}
    assert codes == {names[0]: 0, names[1]: 0, names[2]: THROTTLING_QUOTA_EXCEEDED}, response
    # 2 tokens short at 2 per second: 1 s from the refusal, less the time since.
    assert 500 < response.throttle_time_ms <= 1000, response.throttle_time_ms
    free = KafkaAdminClient(bootstrap_servers=bs, client_id="kp-free")
    try:
        counts = {t["name"]: len(t["partitions"]) for t in free.describe_topics(names)}
    finally:
        free.close()
    assert counts == {names[0]: 4, names[1]: 4, names[2]: 1}


def test_confluent_consumer_throttled_by_request_percentage(quota_broker, topic_name):
    """A consumer polling as fast as it can (fetch.wait.max.ms=1) goes over a 1 % quota; a
    throttled Fetch is answered without data (as Kafka answers it) and the consumer fetches the
    same offsets again once its throttle ends: it still gets every record, in order."""
    from confluent_kafka import Consumer, TopicPartition
    bs = quota_broker.bootstrap
    create_topic(bs, topic_name)
    (entry,) = alter(bs, [("client-id", "busy-consumer")],
                     [("request_percentage", 1.0, False)]).entries
    assert entry.error_code == 0
    throttles = []
    consumer = Consumer({"bootstrap.servers": bs, "client.id": "busy-consumer",
                         "group.id": unique("g"), "enable.auto.commit": False,
                         "fetch.wait.max.ms": 1,
                         "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    values = []

    def polled(until):
        msg = consumer.poll(0.05)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
        return until()

    try:
        wait_for(lambda: polled(lambda: throttles), 60, "a throttled fetch", interval=0)
        _confluent_produce(bs, topic_name, "feeder", 20)
        wait_for(lambda: polled(lambda: len(values) == 20), 60,
                 "the records through a throttled consumer", interval=0)
    finally:
        consumer.close()
    assert values == [b"x%d" % i for i in range(20)]
    # Seconds; librdkafka also reports the 0 that ends a throttle.
    assert max(throttles) > 0 and all(0 <= t <= 1.0 for t in throttles), throttles


def test_user_quota_over_sasl(topic_name):
    """A user's request_percentage applies to the SASL principal (User:alice), whatever its
    client id; the SASL exchange itself is not charged, as Kafka's network thread serves it,
    so a client with a generous quota authenticates and works unthrottled."""
    from test_sasl import PLAIN_JAAS, SaslBroker
    with SaslBroker({"sasl.enabled.mechanisms": "PLAIN", "quota.window.num": 2,
                     "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS}) as b:
        b.start()
        create_topic(b.bootstrap, topic_name)
        for user, percentage in (("alice", 0.01), ("admin", 1000.0)):
            (entry,) = alter(b.bootstrap, [("user", user)],
                             [("request_percentage", percentage, False)]).entries
            assert entry.error_code == 0

        def produce_as(user: str, password: str) -> list:
            throttles = []
            producer = Producer({"bootstrap.servers": b.sasl_bootstrap,
                                 "security.protocol": "SASL_PLAINTEXT",
                                 "sasl.mechanism": "PLAIN", "sasl.username": user,
                                 "sasl.password": password, "client.id": unique("any"),
                                 "linger.ms": 0,
                                 "throttle_cb": lambda e: throttles.append(e.throttle_time)})
            for i in range(5):
                producer.produce(topic_name, b"s%d" % i)
                assert producer.flush(30) == 0
            return throttles

        assert max(produce_as("alice", "alice-secret"), default=0) > 0
        assert produce_as("admin", "admin-secret") == []


@pytest.fixture
def quota_cluster(tmp_path):
    from trioka.testing.process import ClusterProcess
    c = ClusterProcess(3, str(tmp_path / "data"),
                       overrides={"controller.quota.window.num": 2,
                                  "default.replication.factor": 1})
    c.start()
    yield c
    c.close()


def test_cluster_controller_enforces_mutation_rate_per_client(quota_cluster):
    """The quota is set through node 2 (AlterClientQuotas forwarded, a ClientQuotaRecord) and
    spent at the controller, whichever node the client asks: one bucket of 2 tokens for the
    client across the cluster."""
    nodes = quota_cluster.bootstrap.split(",")
    (entry,) = alter(nodes[1], [("client-id", "kp-cluster-mutator")],
                     [("controller_mutation_rate", 1.0, False)]).entries
    assert entry.error_code == 0
    names = [unique("cmut") for _ in range(3)]

    def create(node: str, name: str, partitions: int) -> tuple[int, str | None]:
        admin = KafkaAdminClient(bootstrap_servers=node, client_id="kp-cluster-mutator")
        try:
            (topic,) = admin.create_topics({name: {"num_partitions": partitions}},
                                           raise_errors=False)["topics"]
        finally:
            admin.close()
        return topic["error_code"], topic["error_message"]
    # Node 2 forwards the first (2 partitions: the bucket is empty), node 3 the second (let in:
    # the bucket is at zero or has refilled a little, not below) and the third (refused: the
    # second took it 5 below, at most 3 below however long the client took, and it refills at
    # 1 a second).
    assert create(nodes[1], names[0], 2) == (0, None)
    assert create(nodes[2], names[1], 5) == (0, None)
    assert create(nodes[2], names[2], 1) == (THROTTLING_QUOTA_EXCEEDED,
                                             "The throttling quota has been exceeded.")
    free = KafkaAdminClient(bootstrap_servers=nodes[2], client_id="kp-cluster-free")
    try:
        result = free.create_topics({unique("cfree"): {"num_partitions": 4}},
                                    raise_errors=False)
        assert [t["error_code"] for t in result["topics"]] == [0]
        existing = set(free.list_topics())
    finally:
        free.close()
    assert {names[0], names[1]} <= existing and names[2] not in existing


def test_cluster_confluent_admin_throttled_by_the_node_it_asked(quota_cluster):
    """librdkafka's CreateTopics (below v6) meets the permissive quota: created, and the node
    that forwarded the request answers the controller's throttle time and mutes the client."""
    nodes = quota_cluster.bootstrap.split(",")
    (entry,) = alter(nodes[0], [("client-id", "cf-cluster-mutator")],
                     [("controller_mutation_rate", 1.0, False)]).entries
    assert entry.error_code == 0
    # Node 3 has the quota in its image before the client asks it (the controller's is what
    # counts; this only keeps the test from racing the metadata propagation it does not test).
    wait_for(lambda: describe(nodes[2], [("client-id", 0, "cf-cluster-mutator")]) != {}, 30,
             "the quota on node 3")
    _confluent_creates_five_partitions_throttled(nodes[2], "cf-cluster-mutator")
