"""pytest plugin (entry point `pytest11`): a real trioka broker for your tests.

    def test_roundtrip(kafka_broker, kafka_topic):
        p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
        p.produce(kafka_topic, b"hello")

`kafka_broker` is one broker per test session (per worker under pytest-xdist, each on its own free
port and temporary data directory). `kafka_topic` is a fresh, uniquely named topic with one
partition; call `kafka_broker.create_topic(partitions=6)` for others.

`kafka_cluster` is a fresh three-node cluster (`trioka.Cluster`) per test, for failover tests:

    def test_survives_a_leader_kill(kafka_cluster):
        ... kafka_cluster.bootstrap_servers ...
        kafka_cluster.node(2).kill()
        kafka_cluster.node(2).start()
"""

import pytest


@pytest.fixture(scope="session")
def kafka_broker():
    from trioka.testing.embedded import Broker
    with Broker() as broker:
        yield broker


@pytest.fixture
def kafka_topic(kafka_broker, request):
    prefix = "".join(c if c.isalnum() or c in "._-" else "-" for c in request.node.name)[:100]
    return kafka_broker.create_topic(kafka_broker.unique_topic_name(prefix))


@pytest.fixture
def kafka_cluster():
    """A fresh 3-node cluster per test (node ids 1-3, node 1 also the controller; free ports,
    a temporary data directory): `kafka_cluster.bootstrap_servers`, `kafka_cluster.node(2)
    .kill()` / `.start()` / `.stop()` / `.isolate()` / `.heal()` / `.slow(ms)`. Per test, since
    tests change the nodes' states."""
    from trioka.testing.embedded import Cluster
    with Cluster(nodes=3) as cluster:
        yield cluster
