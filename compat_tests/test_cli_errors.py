"""The `trioka` command's answers to a user's mistakes: one line naming the flag, key or value at
fault (Kafka's ConfigException text where Kafka has one), no traceback, and the exit status the
README gives: 2 for a usage error (with the usage of the command at fault), 1 for a setting or
a start Kafka would refuse. Every run is a subprocess (`python -m trioka ...`) with a timeout;
where a mistake used to be accepted silently, stock clients (confluent-kafka, kafka-python) check
what the broker holds afterwards.
"""

import os
import socket
import subprocess
import sys

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from harness import unique
from trioka.testing.process import BrokerProcess

TIMEOUT = 30
pytestmark = pytest.mark.timeout(120)


def trioka(*args, input: bytes = b"", env: dict | None = None,
           timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """`python -m trioka ARGS`, finished: returncode, stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "trioka", *args], input=input,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess, status: int) -> str:
    """The single stderr line of a refused command, which exited with `status`."""
    err = proc.stderr.decode()
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def usage_error(proc: subprocess.CompletedProcess, command: str) -> str:
    """A usage error of `command`: exit 2, that command's usage, then its one error line."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert err.startswith(f"usage: {command} "), err
    last = err.splitlines()[-1]
    assert last.startswith(f"{command}: error: "), err
    return last


def serve(*args, **kw) -> subprocess.CompletedProcess:
    return trioka("serve", "--memory", "--listeners", "PLAINTEXT://127.0.0.1:0", *args, **kw)


# -- settings Kafka refuses at startup: one line, exit 1 ------------------------------------

@pytest.mark.parametrize("args, env, line", [
    (["--override", "num.partitions=abc"], {},
     "trioka: Invalid value abc for configuration num.partitions: Not a number of type INT"),
    ([], {"KAFKA_NUM_PARTITIONS": "banana"},
     "trioka: Invalid value banana for configuration num.partitions: Not a number of type INT"),
    (["--override", "num.partitions=0"], {},
     "trioka: Invalid value 0 for configuration num.partitions: Value must be at least 1"),
    (["--override", "log.segment.bytes=-5"], {},
     "trioka: Invalid value -5 for configuration log.segment.bytes: Value must be at least 14"),
    (["--override", "auto.create.topics.enable=yes"], {},
     "trioka: Invalid value yes for configuration auto.create.topics.enable: Expected value to "
     "be either true or false"),
    (["--override", "compression.type=brotli"], {},
     "trioka: Invalid value brotli for configuration compression.type: String must be one of: "
     "uncompressed, zstd, lz4, snappy, gzip, producer"),
    (["--listeners", "127.0.0.1:19194"], {},
     "trioka: Invalid value 127.0.0.1:19194 for configuration listeners: Unable to parse "
     "127.0.0.1:19194 to a broker endpoint"),
    (["--listeners", "PLAINTEXT://127.0.0.1:99999"], {},
     "trioka: Invalid value PLAINTEXT://127.0.0.1:99999 for configuration listeners: port out "
     "of range:99999"),
    (["--config", "/nonexistent.properties"], {},
     "trioka: --config /nonexistent.properties: No such file or directory"),
])
def test_a_refused_setting_is_one_line_and_exit_1(args, env, line):
    assert one_line(serve(*args, env=env), 1) == line


def test_a_bad_value_in_a_properties_file_names_the_key(tmp_path):
    props = tmp_path / "server.properties"
    props.write_text("# a Kafka server.properties\nlog.retention.hours=forever\n")
    assert one_line(serve("--config", str(props)), 1) == (
        "trioka: Invalid value forever for configuration log.retention.hours: Not a number of "
        "type INT")


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = trioka("serve", "--memory", "--listeners", f"PLAINTEXT://127.0.0.1:{port}")
    assert one_line(proc, 1) == (f"trioka: Socket server failed to bind to 127.0.0.1:{port}: "
                                 f"Address already in use.")


def test_a_data_dir_in_use_by_another_broker_is_one_line(tmp_path):
    data = str(tmp_path / "data")
    with BrokerProcess(data) as first:
        first.start()
        proc = trioka("serve", "--data-dir", data, "--listeners", "PLAINTEXT://127.0.0.1:0")
    assert one_line(proc, 1) == f"trioka: data dir {data} is in use by another broker process"


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    proc = trioka("serve", "--data-dir", str(in_the_way / "data"),
                  "--listeners", "PLAINTEXT://127.0.0.1:0")
    line = one_line(proc, 1)
    assert line.startswith(f"trioka: {in_the_way}"), line
    assert "Not a directory" in line, line


# -- usage: the command at fault, its usage, exit 2 -------------------------------------------

@pytest.mark.parametrize("args, command, message", [
    (["serve", "--bogus"], "trioka serve", "unrecognized arguments: --bogus"),
    (["topic", "create", "foo", "-p", "3"], "trioka topic create",
     "unrecognized arguments: -p 3"),
    (["serve", "--memory", "--override", "num.partitions"], "trioka serve",
     "argument --override: 'num.partitions' is not KEY=VALUE"),
    (["serve", "--memory", "--racks", "a"], "trioka serve",
     "--racks needs --nodes (with one node, set broker.rack)"),
    (["serve", "--log-level", "CHATTY"], "trioka serve", "argument --log-level: invalid choice: "
     "'CHATTY' (choose from 'CRITICAL', 'ERROR', 'WARNING', 'INFO', 'DEBUG')"),
    (["topic", "list", "-b", "127.0.0.1"], "trioka topic list",
     "argument --bootstrap-server/-b: bad bootstrap server '127.0.0.1': expected HOST:PORT"),
    (["-b", "127.0.0.1:1", "topic", "list"], "trioka", "unrecognized arguments: -b 127.0.0.1:1 "
     "(a command's options go after it: trioka topic list -b 127.0.0.1:1)"),
    (["topic", "create", "x", "--partitions", "-1", "-b", "127.0.0.1:1"], "trioka topic create",
     "The partitions must be greater than 0"),
    (["topic", "create", "x", "--replication-factor", "0", "-b", "127.0.0.1:1"],
     "trioka topic create", "The replication factor must be between 1 and 32767"),
    (["control", "add", "delay", "--admin", "http://127.0.0.1:1"], "trioka control add",
     "a delay rule needs --delay-ms"),
])
def test_a_usage_error_names_the_command(args, command, message):
    proc = trioka(*args)
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert err.splitlines()[-1] == f"{command}: error: {message}", err


@pytest.mark.parametrize("args, command", [
    (["serve", "--bogus"], "trioka serve"),
    (["topic", "create", "foo", "-p", "3"], "trioka topic create"),
])
def test_the_usage_shown_is_the_commands(args, command):
    usage_error(trioka(*args), command)


def test_version():
    from trioka import __version__
    proc = trioka("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == f"trioka {__version__}"


# -- the tools against a broker: what Kafka's tools do, checked with stock clients -------------

def test_topic_create_with_bad_counts_creates_nothing(broker):
    name = unique("refused")
    proc = trioka("topic", "create", name, "--partitions", "-1", "-b", broker.bootstrap)
    usage_error(proc, "trioka topic create")
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert name not in admin.list_topics()
    finally:
        admin.close()
    topics = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics
    assert name not in topics


def test_produce_with_no_input_creates_no_topic(broker):
    name = unique("nothing-sent")
    proc = trioka("produce", name, "-b", broker.bootstrap, input=b"")
    assert proc.returncode == 0, proc.stderr
    topics = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics
    assert name not in topics
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert name not in admin.list_topics()
    finally:
        admin.close()


def test_consume_max_messages_minus_one_is_no_limit(broker):
    name = unique("no-limit")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(3):
        producer.produce(name, value=f"v{i}".encode())
    assert producer.flush(TIMEOUT) == 0
    proc = trioka("consume", name, "--from-beginning", "--max-messages", "-1", "-e",
                  "-b", broker.bootstrap)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["v0", "v1", "v2"]


def test_a_line_without_a_key_separator_is_named_as_text(broker):
    name = unique("parse-key")
    proc = trioka("produce", name, "--parse-key", "-b", broker.bootstrap,
                  input=b"k\tv\nno separator \xc3\xa9\n")
    assert one_line(proc, 1) == ("Error: No key separator found on line number 2: "
                                 "'no separator \u00e9'")
    # What came before the bad line was sent, as Kafka's console producer sends it.
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(name, bootstrap_servers=broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        got = [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()
    assert got == [(b"k", b"v")]
