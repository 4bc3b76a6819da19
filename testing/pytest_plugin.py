"""pytest plugin (entry point `pytest11`): a real trioka broker for your tests.

    def test_roundtrip(kafka_broker, kafka_topic):
        p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
        p.produce(kafka_topic, b"hello")

`kafka_broker` is one broker per test session (per worker under pytest-xdist, each on its own free
port and temporary data directory). `kafka_topic` is a fresh, uniquely named topic with one
partition; call `kafka_broker.create_topic(partitions=6)` for others.
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
