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

`kafka_broker_virtual` is a fresh broker per test on virtual time (`trioka.Broker(virtual_time=
True)`, clock.py): its clock stands still until the test moves it, so time-based behaviour is
tested without sleeping, and the same steps give the same results:

    def test_old_data_goes(kafka_broker_virtual):
        topic = kafka_broker_virtual.create_topic(configs={"retention.ms": "604800000"})
        ... produce ...
        kafka_broker_virtual.advance_time(8 * 24 * 3600 * 1000)   # retention runs on the way
        kafka_broker_virtual.set_time(epoch_ms)                     # or to a given time

Per test, since tests move its clock (a clock shared by tests would make each depend on the
others).

`pytest --trioka-report` runs `kafka_broker` in conformance mode (`trioka.Broker(strict=True)`,
observe/conformance.py) and prints its conformance report at the end of the session: per client
the APIs and versions it used, the errors it got and its violations of the protocol.
"""

import pytest

REPORT_OPTION = "--trioka-report"
_reports = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.getgroup("trioka").addoption(
        REPORT_OPTION, action="store_true", default=False,
        help="run kafka_broker in conformance mode (trioka.strict) and print its conformance "
             "report (per client: APIs and versions, errors, protocol violations) at the end")


@pytest.fixture(scope="session")
def kafka_broker(pytestconfig):
    """One broker for the whole test session (a free port, in a temporary data directory):
    `bootstrap_servers`, `create_topic()`, `controls`, `requests()` (testing/embedded.py Broker).
    With --trioka-report it runs in conformance mode and its report ends the run."""
    from trioka.testing.embedded import Broker
    reporting = pytestconfig.getoption(REPORT_OPTION)
    with (Broker(strict=True) if reporting else Broker()) as broker:
        yield broker
        if reporting:
            # Taken while the broker runs; printed by pytest_terminal_summary.
            pytestconfig.stash.setdefault(_reports, []).append(
                broker.conformance_report(markdown=True))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not config.getoption(REPORT_OPTION):
        return
    reports = config.stash.get(_reports, [])
    terminalreporter.section("trioka conformance report")
    if not reports:
        terminalreporter.write_line("No test used kafka_broker: nothing to report.")
    for report in reports:
        terminalreporter.write_line(report)


@pytest.fixture
def kafka_topic(kafka_broker, request):
    """A new topic on kafka_broker for this test, named after the test, one partition; the
    fixture's value is the topic's name."""
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


@pytest.fixture
def kafka_broker_virtual():
    """A fresh broker per test on virtual time: `advance_time(ms)`, `set_time(wall_ms)`,
    `wall_ms()` (testing/embedded.py Broker)."""
    from trioka.testing.embedded import Broker
    with Broker(virtual_time=True) as broker:
        yield broker
