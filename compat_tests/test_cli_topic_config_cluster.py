"""`trioka topic alter|trim|offsets`, `trioka config`, `trioka cluster`, produce's --key, --file,
--format json and --progress, $TRIOKA_BROKERS and `serve --port`, run as subprocesses (`python -m
trioka ...`) against a broker process; each result checked with stock clients: confluent-kafka
(librdkafka) and kafka-python see the partitions added, the records deleted, the configs set and
the records produced, and their own answers (watermarks, offsets for times, cluster id, API
versions) are what the tools print.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from kafka import KafkaConsumer

from clients import Rec, consume_confluent, consume_kafka_python, produce_confluent
from harness import create_topic
from trioka.testing.process import BrokerProcess

TIMEOUT = 30
pytestmark = pytest.mark.timeout(180)


def trioka(broker, *args, input: bytes | None = None, check: bool = True, env=None,
           bootstrap: bool = True) -> subprocess.CompletedProcess:
    """`python -m trioka ARGS -b BROKER`: the finished process (stdout and stderr as bytes)."""
    argv = [sys.executable, "-m", "trioka", *args] + (["-b", broker.bootstrap] if bootstrap
                                                      else [])
    environ = {k: v for k, v in os.environ.items() if k != "TRIOKA_BROKERS"}
    environ.update(env or {})
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=60, env=environ)
    if check:
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode())
    return proc


def table(stdout: bytes) -> list[dict]:
    lines = [line for line in stdout.decode().splitlines() if line.strip()]
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def partition_count(broker, topic: str) -> int:
    return len(admin(broker).list_topics(topic, timeout=TIMEOUT).topics[topic].partitions)


def watermarks(broker, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT)
    finally:
        c.close()


# --- topic alter / trim / offsets ---------------------------------------------------------------

def test_alter_adds_partitions_seen_by_confluent_and_kafka_python(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    trioka(broker, "topic", "alter", topic_name, "--partitions", "5")
    assert partition_count(broker, topic_name) == 5
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        assert c.partitions_for_topic(topic_name) == {0, 1, 2, 3, 4}
    finally:
        c.close()
    # Kafka never lowers the count: the broker's refusal, exit 1.
    fewer = trioka(broker, "topics", "alter", "--topic", topic_name, "--partitions", "3",
                   check=False)
    assert fewer.returncode == 1 and b"INVALID_PARTITIONS" in fewer.stderr
    assert b"Traceback" not in fewer.stderr
    assert partition_count(broker, topic_name) == 5


def test_trim_moves_the_log_start_as_the_clients_see_it(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    produce_confluent(broker.bootstrap, topic_name,
                      [Rec(0, None, None, b"v%d" % i) for i in range(10)]
                      + [Rec(1, None, None, b"w%d" % i) for i in range(3)])
    out = trioka(broker, "topic", "trim", topic_name, "--partition", "0", "--offset", "4")
    assert f"partition: {topic_name}-0\tlow_watermark: 4" in out.stdout.decode()
    assert watermarks(broker, topic_name, 0) == (4, 10)
    assert watermarks(broker, topic_name, 1) == (0, 3)
    got = consume_kafka_python(broker.bootstrap, topic_name, [0], 6, start=4)
    assert [(r.offset, r.value) for r in got] == [(i, b"v%d" % i) for i in range(4, 10)]

    rows = table(trioka(broker, "topic", "offsets", topic_name).stdout)
    assert [(r["PARTITION"], r["LOG-START-OFFSET"], r["HIGH-WATERMARK"],
             r["LAST-STABLE-OFFSET"]) for r in rows] == [("0", "4", "10", "10"),
                                                          ("1", "0", "3", "3")]

    out = trioka(broker, "topic", "trim", topic_name, "--all-partitions", "--offset", "-1")
    assert f"{topic_name}-1\tlow_watermark: 3" in out.stdout.decode()
    assert watermarks(broker, topic_name, 0) == (10, 10)
    assert watermarks(broker, topic_name, 1) == (3, 3)
    beyond = trioka(broker, "topic", "trim", topic_name, "-p", "1", "--offset", "99",
                    check=False)
    assert beyond.returncode == 1 and b"OFFSET_OUT_OF_RANGE" in beyond.stderr


def test_offsets_at_a_time_agree_with_confluent(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    base = (int(time.time()) - 600) * 1000
    produce_confluent(broker.bootstrap, topic_name,
                      [Rec(0, None, b"k", b"v%d" % i, (), base + i * 1000) for i in range(6)])
    at = base + 2500
    rows = table(trioka(broker, "topic", "offsets", topic_name, "--time", str(at)).stdout)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    try:
        (theirs,) = c.offsets_for_times([TopicPartition(topic_name, 0, at)], timeout=TIMEOUT)
    finally:
        c.close()
    assert theirs.offset == 3
    assert rows[0]["OFFSET-AT-TIME"] == str(theirs.offset)
    assert rows[0]["TIMESTAMP"] == str(base + 3000)
    later = table(trioka(broker, "topic", "offsets", topic_name, "--time",
                         str(base + 3_600_000)).stdout)
    assert later[0]["OFFSET-AT-TIME"] == "-"


def test_last_stable_offset_stops_at_an_open_transaction(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    produce_confluent(broker.bootstrap, topic_name, [Rec(0, None, None, b"plain")])
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": topic_name})
    p.init_transactions(TIMEOUT)
    p.begin_transaction()
    p.produce(topic_name, b"open", partition=0)
    assert p.flush(TIMEOUT) == 0
    try:
        (row,) = table(trioka(broker, "topic", "offsets", topic_name).stdout)
        assert (row["HIGH-WATERMARK"], row["LAST-STABLE-OFFSET"]) == ("2", "1")
    finally:
        p.commit_transaction(TIMEOUT)
    (row,) = table(trioka(broker, "topic", "offsets", topic_name).stdout)
    assert row["HIGH-WATERMARK"] == row["LAST-STABLE-OFFSET"] == "3"   # the marker counts


# --- config ------------------------------------------------------------------------------------

def test_config_alter_and_describe_against_confluents_view(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    out = trioka(broker, "config", "alter", "--topic", topic_name,
                 "--add-config", "retention.ms=123456,cleanup.policy=[compact,delete]")
    assert out.stdout.decode() == f"Completed updating config for topic {topic_name}.\n"
    res = ConfigResource("topic", topic_name)
    client = admin(broker)     # kept: a collected handle ends its requests
    entries = client.describe_configs([res])[res].result(timeout=TIMEOUT)
    assert entries["retention.ms"].value == "123456"
    assert entries["cleanup.policy"].value == "compact,delete"

    # What confluent sets shows up in kafka-configs.sh's format; only what is set, unless --all.
    theirs = ConfigResource("topic", topic_name, incremental_configs=[ConfigEntry(
        "max.message.bytes", "65536", incremental_operation=AlterConfigOpType.SET)])
    client.incremental_alter_configs([theirs])[theirs].result(timeout=TIMEOUT)
    lines = trioka(broker, "configs", "describe", "--entity-type", "topics", "--entity-name",
                   topic_name).stdout.decode().splitlines()
    assert lines[0] == f"Dynamic configs for topic {topic_name} are:"
    assert sorted(line.split(" ")[2] for line in lines[1:]) == [
        "cleanup.policy=compact,delete", "max.message.bytes=65536", "retention.ms=123456"]
    assert ("  max.message.bytes=65536 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:"
            "max.message.bytes=65536" in lines[1:][1])
    every = trioka(broker, "config", "describe", "--topic", topic_name, "--all").stdout.decode()
    assert every.startswith(f"All configs for topic {topic_name} are:\n")
    assert "  segment.bytes=" in every and "DEFAULT_CONFIG:log.segment.bytes=" in every

    trioka(broker, "config", "alter", "--topic", topic_name, "--delete-config", "retention.ms")
    entries = client.describe_configs([res])[res].result(timeout=TIMEOUT)
    assert entries["retention.ms"].is_default
    bad = trioka(broker, "config", "alter", "--topic", topic_name, "--add-config",
                 "retention.ms=soon", check=False)
    assert bad.returncode == 1 and b"retention.ms" in bad.stderr and b"Traceback" not in bad.stderr


def test_group_and_broker_configs(broker, topic_name):
    group = topic_name + "-g"
    trioka(broker, "config", "alter", "--group", group,
           "--add-config", "consumer.session.timeout.ms=50000")
    res = ConfigResource(ConfigResource.Type.GROUP, group)
    client = admin(broker)
    entries = client.describe_configs([res])[res].result(timeout=TIMEOUT)
    assert entries["consumer.session.timeout.ms"].value == "50000"
    out = trioka(broker, "config", "describe", "--group", group).stdout.decode()
    assert out.splitlines()[0] == f"Dynamic configs for group {group} are:"
    assert "  consumer.session.timeout.ms=50000 sensitive=false synonyms={GROUP_CONFIG:" in out
    out = trioka(broker, "config", "describe", "--broker", "1", "--all").stdout.decode()
    assert out.startswith("All configs for broker 1 are:\n") and "  num.partitions=" in out
    none = trioka(broker, "config", "describe", check=False)
    assert none.returncode == 2 and b"name exactly one of" in none.stderr


# --- cluster -----------------------------------------------------------------------------------

def test_cluster_info_and_api_versions_match_the_clients(broker):
    out = trioka(broker, "cluster", "info").stdout.decode().splitlines()
    metadata = admin(broker).list_topics(timeout=TIMEOUT)
    assert out[0] == f"Cluster ID: {metadata.cluster_id}"
    assert out[1] == f"Controller: {metadata.controller_id}"
    rows = table("\n".join(out[2:]).encode())
    assert [(int(r["ID"]), r["HOST"], int(r["PORT"])) for r in rows] == sorted(
        (b.id, b.host, b.port) for b in metadata.brokers.values())

    text = trioka(broker, "cluster", "api-versions").stdout.decode()
    head, _, body = text.partition(" -> (\n")
    assert head.endswith("(id: 1 rack: null isFenced: false)")
    from kafka import KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        theirs = {int(k): tuple(v) for k, v in kp.api_versions().items()}
        described = kp.describe_cluster()
    finally:
        kp.close()
    assert described["cluster_id"] == metadata.cluster_id
    lines = [line.strip().rstrip(",") for line in body.strip().splitlines()[:-1]]
    ours = {}
    for line in lines:
        name_key, _, versions = line.partition(": ")
        key = int(name_key[name_key.index("(") + 1:-1])
        lo, _, hi = versions.split(" [")[0].partition(" to ")
        ours[key] = (int(lo), int(hi or lo))
    assert ours == theirs
    assert "ApiVersions(18): 0 to " in text and "[usable: " in text


# --- produce -----------------------------------------------------------------------------------

def test_produce_json_round_trip_read_by_confluent(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 3)
    ts = (int(time.time()) - 60) * 1000
    lines = [
        {"key": "a", "value": "/wD+", "value_encoding": "base64", "partition": 2,
         "timestamp": ts, "headers": [{"key": "h", "value": "1"}, {"key": "n", "value": None}]},
        {"key": None, "value": "text é", "partition": 1, "timestamp": ts + 1},
        {"value": None, "partition": 1, "headers": {"x": "y"}},
    ]
    trioka(broker, "produce", topic_name, "--format", "json",
           input="".join(json.dumps(o) + "\n" for o in lines).encode())
    got = sorted(consume_confluent(broker.bootstrap, topic_name, range(3), 3))
    assert [(r.partition, r.offset, r.key, r.value, r.headers) for r in got] == [
        (1, 0, None, "text é".encode(), ()), (1, 1, None, None, (("x", b"y"),)),
        (2, 0, b"a", b"\xff\x00\xfe", (("h", b"1"), ("n", None)))]
    assert got[0].timestamp == ts + 1 and got[2].timestamp == ts

    # consume --format json | produce --format json copies the records to another topic.
    copy = topic_name + "-copy"
    create_topic(broker.bootstrap, copy, 3)
    dump = trioka(broker, "consume", topic_name, "--from-beginning", "-e", "--format", "json")
    trioka(broker, "produce", copy, "--format", "json", input=dump.stdout)
    again = sorted(consume_kafka_python(broker.bootstrap, copy, range(3), 3))
    assert [(r.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp)
            for r in again] == [(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp)
                                for r in got]

    bad = trioka(broker, "produce", topic_name, "--format", "json",
                 input=b'{"value": "ok", "partition": 0}\n{"value": "x", "partition": 7}\n',
                 check=False)
    assert bad.returncode == 1 and b"Invalid partition given with record: 7" in bad.stderr
    assert watermarks(broker, topic_name, 0) == (0, 1)     # what came before was sent


def test_produce_fixed_key_from_a_file_with_progress(broker, topic_name, tmp_path):
    create_topic(broker.bootstrap, topic_name, 4)
    path = tmp_path / "records.txt"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(500)))
    out = trioka(broker, "produce", topic_name, "-k", "user-7", "-f", str(path), "--progress")
    assert out.stderr.decode().splitlines()[-1].startswith("500 records sent (")
    got = consume_confluent(broker.bootstrap, topic_name, range(4), 500)
    assert {r.key for r in got} == {b"user-7"} and len({r.partition for r in got}) == 1
    assert sorted(r.value for r in got) == sorted(b"line %d" % i for i in range(500))
    missing = trioka(broker, "produce", topic_name, "-f", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == \
        f"Error: --file {tmp_path / 'nope'}: No such file or directory"


def test_empty_input_creates_no_topic_and_environment_bootstrap(broker, topic_name):
    trioka(broker, "produce", topic_name, input=b"")
    assert topic_name not in admin(broker).list_topics(timeout=TIMEOUT).topics
    # No -b: $TRIOKA_BROKERS names the broker; a -b flag wins over it.
    env = {"TRIOKA_BROKERS": broker.bootstrap}
    trioka(broker, "produce", topic_name, input=b"via env\n", env=env, bootstrap=False)
    assert [r.value for r in consume_confluent(broker.bootstrap, topic_name, [0], 1)] == \
        [b"via env"]
    listed = trioka(broker, "topic", "list", env={"TRIOKA_BROKERS": "127.0.0.1:1"})
    assert topic_name in listed.stdout.decode().split()
    bad = trioka(broker, "topic", "list", env={"TRIOKA_BROKERS": "nohost"}, bootstrap=False,
                 check=False)
    assert bad.returncode == 2 and b"(from $TRIOKA_BROKERS)" in bad.stderr


class PortBroker(BrokerProcess):
    """A broker started with `serve --port 0` instead of --listeners."""

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--listeners")
        return cmd[:at] + ["--port", "0"] + cmd[at + 2:]


def test_serve_port_keeps_the_default_host():
    with PortBroker(memory=True) as b:
        b.start()
        assert any("PLAINTEXT://127.0.0.1:" in line for line in b.output)
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=TIMEOUT)
        assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.port)]
