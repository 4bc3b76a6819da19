"""Racks with stock clients: `trioka serve --nodes 3 --racks a,b,c` with Kafka's
RackAwareReplicaSelector (KIP-392) and the leader hints of KIP-951.

- A confluent-kafka consumer with `client.rack` fetches from the follower in its rack: the
  follower node's watch rule (POST /nodes/<id>/controls, a delay of 0 ms) counts its Fetch
  requests, and all the records arrive.
- Producers (confluent-kafka and kafka-python) still holding the old leader after a preferred
  leader election get NOT_LEADER_OR_FOLLOWER, with the new leader in the answer, and carry on
  with no message lost.
"""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.harness import wait_for
from trioka.testing.process import ClusterProcess, ControlsClient

pytestmark = pytest.mark.timeout(240)

RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
SETTINGS = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "3000",
    "replica.selector.class": RACK_AWARE,
}


@pytest.fixture
def cluster(tmp_path):
    c = ClusterProcess(3, str(tmp_path / "data"), overrides=SETTINGS, args=["--racks", "a,b,c"])
    c.start()
    yield c
    c.close()


def controls(cluster, node_id: int) -> ControlsClient:
    return ControlsClient(f"{cluster.admin}/nodes/{node_id}", timeout=30)


def partition_info(admin, topic, partition=0):
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[partition]


def test_brokers_report_their_racks(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    described = admin.describe_cluster(request_timeout=10).result(30)
    assert {n.id: n.rack for n in described.nodes} == {1: "a", 2: "b", 3: "c"}
    assert [n["rack"] for n in cluster.nodes()] == ["a", "b", "c"]


def test_a_consumer_with_client_rack_fetches_from_the_follower_in_its_rack(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("closest", num_partitions=1, replica_assignment=[[1, 2, 3]])])[
        "closest"].result(30)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(200):
        producer.produce("closest", f"m{i}".encode())
    assert producer.flush(30) == 0
    assert partition_info(admin, "closest").leader == 1

    on_leader = controls(cluster, 1).watch(api="Fetch", client_id="rack-c-consumer")
    on_follower = controls(cluster, 3).watch(api="Fetch", client_id="rack-c-consumer")
    elsewhere = controls(cluster, 2).watch(api="Fetch", client_id="rack-c-consumer")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "closest-reader",
                         "client.id": "rack-c-consumer", "client.rack": "c",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    got = []
    try:
        consumer.assign([TopicPartition("closest", 0, 0)])

        def enough():
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
            return len(got) >= 200
        wait_for(enough, 60, lambda: f"{len(got)} of 200 messages", interval=0)
        # The consumer keeps fetching from its rack's replica.
        wait_for(lambda: controls(cluster, 3).matched(on_follower["id"]) >= 2, 30,
                 "fetches at the follower in rack c")
    finally:
        consumer.close()
    assert got == [f"m{i}".encode() for i in range(200)]
    assert controls(cluster, 1).matched(on_leader["id"]) >= 1   # asked the leader first
    assert controls(cluster, 2).matched(elsewhere["id"]) == 0   # never the rack-b replica


def elect_preferred(admin, topic: str) -> None:
    from confluent_kafka import ElectionType
    future = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)])
    future.result(30)


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_producers_follow_the_leader_hint_after_a_leader_change(cluster, client):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topic = f"hinted-{client}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[2, 3, 1]])])[
        topic].result(30)
    wait_for(lambda: sorted(partition_info(admin, topic).isrs) == [1, 2, 3], 30, "a full ISR")
    # Node 2 leads; moving its leadership to node 3 and back without stopping node 3 leaves a
    # producer that learned of node 3 asking a live node that no longer leads.
    cluster.node(2, "stop")
    wait_for(lambda: partition_info(admin, topic).leader == 3, 30, "node 3 leading")

    if client == "confluent":
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                             "enable.idempotence": True, "client.id": "hinted-producer"})
        acked, errors = [], []

        def send(i):
            producer.produce(topic, f"v{i}".encode(),
                             on_delivery=lambda e, m: (errors if e else acked).append(e or m))

        def flush():
            assert producer.flush(60) == 0
    else:
        from kafka import KafkaProducer
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), acks="all",
                                 retries=10, client_id="hinted-producer")
        acked, errors, futures = [], [], []

        def send(i):
            futures.append(producer.send(topic, f"v{i}".encode()))

        def flush():
            producer.flush(60)
            for f in futures:
                try:
                    acked.append(f.get(timeout=60))
                except Exception as e:   # noqa: BLE001 - collected for the assertion
                    errors.append(e)
            futures.clear()

    for i in range(20):
        send(i)
    flush()
    watch = controls(cluster, 3).watch(api="Produce", client_id="hinted-producer")
    cluster.node(2, "start")
    wait_for(lambda: sorted(partition_info(admin, topic).isrs) == [1, 2, 3], 60,
             "node 2 back in the ISR")
    elect_preferred(admin, topic)
    wait_for(lambda: partition_info(admin, topic).leader == 2, 30, "node 2 leading again")
    for i in range(20, 40):
        send(i)
    flush()
    assert errors == []
    assert len(acked) == 40
    # The first batch after the election went to node 3, which answered with the hint.
    assert controls(cluster, 3).matched(watch["id"]) >= 1
