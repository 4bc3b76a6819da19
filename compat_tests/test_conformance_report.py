"""Conformance mode (`trioka serve --strict`, observe/conformance.py) against a broker process:
sessions of confluent-kafka, kafka-python, aiokafka, KafkaJS and kcat are each listed in the
report (GET /report, `trioka report`) under the software name they gave in ApiVersions with the
APIs and versions they used, and a deliberately broken raw client (a socket and
trioka.wire.protocol) finds each of its violations in the report, the malformed batches answered
with Kafka's errors over the wire."""

import json
import os
import struct
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from clients import (Rec, consume_confluent, produce_aiokafka, produce_confluent,
                     produce_kafka_python, produce_kafkajs, produce_kcat, value_records)
from harness import RawConnection, create_topic, unique
from trioka.log.batch import crc32c
from trioka.log.records import encode_batch
from trioka.testing.process import BrokerProcess
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def strict():
    with BrokerProcess(memory=True, args=["--strict"]) as b:
        b.start()
        yield b


def report(broker) -> dict:
    return broker.controls.call("GET", "/report")


def clients_named(report: dict, software: str) -> list[dict]:
    return [c for c in report["clients"] if c["client_software_name"] == software]


def test_stock_clients_are_listed_with_their_apis_and_versions(strict):
    topic = unique("stock")
    create_topic(strict.bootstrap, topic, 1)
    records = [Rec(0, None, b"k%d" % i, b"v%d" % i) for i in range(3)]
    produce_confluent(strict.bootstrap, topic, records)
    consume_confluent(strict.bootstrap, topic, [0], 3)
    produce_kafka_python(strict.bootstrap, topic, records)
    produce_aiokafka(strict.bootstrap, topic, records)
    produce_kafkajs(strict.bootstrap, topic, records)
    produce_kcat(strict.bootstrap, topic, records[:1])

    got = report(strict)
    assert got["strict"] is True
    # Each client as it named itself: the software name of ApiVersions v3+ (KIP-511), or, for
    # aiokafka and KafkaJS, which send ApiVersions v0-2 without one, its client id.
    sessions = {
        "confluent-kafka": lambda c: c["client_software_name"] == "confluent-kafka-python",
        "kafka-python": lambda c: c["client_software_name"] == "kafka-python",
        "kcat": lambda c: c["client_software_name"] == "librdkafka",
        "aiokafka": lambda c: c["client_software_name"] is None
        and (c["client_id"] or "").startswith("aiokafka"),
        "KafkaJS": lambda c: c["client_software_name"] is None
        and c["client_id"] == "trioka-compat-producer",
    }
    for name, is_it in sessions.items():
        found = [c for c in got["clients"] if is_it(c)]
        assert found, (name, [(c["client_id"], c["client_software_name"])
                              for c in got["clients"]])
        apis = {}
        for c in found:
            for api, versions in c["apis"].items():
                apis.setdefault(api, set()).update(versions)
        assert {"ApiVersions", "Metadata", "Produce"} <= set(apis), (name, apis)
        assert all(v >= 3 for v in apis["Produce"]), (name, apis)
    # The consumer's group APIs are listed with the versions librdkafka picked.
    [confluent_consumer] = [c for c in clients_named(got, "confluent-kafka-python")
                            if "JoinGroup" in c["apis"] or "ConsumerGroupHeartbeat" in c["apis"]
                            or "Fetch" in c["apis"]][:1]
    assert "Fetch" in confluent_consumer["apis"]
    # Well-behaved clients: none of them broke a rule.
    for c in got["clients"]:
        assert c["violation_kinds"].keys() <= {"deprecated_version"}, c

    # The same report as Markdown, over the admin endpoint and from `trioka report`.
    with urllib.request.urlopen(strict.admin + "/report?format=markdown", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/markdown")
        text = r.read().decode()
    assert "# Conformance report (strict mode)" in text
    assert "(kafka-python " in text and "(confluent-kafka-python " in text
    assert "| Produce |" in text
    cli = subprocess.run([sys.executable, "-m", "trioka", "report", "--json", "--admin",
                          strict.admin], capture_output=True, timeout=30, text=True)
    assert cli.returncode == 0, cli.stderr
    # No Kafka request came in between: the command prints the report the endpoint gave.
    assert [(c["client_id"], c["client_software_name"], c["apis"])
            for c in json.loads(cli.stdout)["clients"]] == \
        [(c["client_id"], c["client_software_name"], c["apis"]) for c in got["clients"]]
    cli = subprocess.run([sys.executable, "-m", "trioka", "report", "--admin", strict.admin],
                         capture_output=True, timeout=30, text=True)
    assert cli.returncode == 0 and "## " in cli.stdout and "| Produce |" in cli.stdout
    # Mistakes: one line naming what is at fault.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(strict.admin + "/report?format=xml", timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"] == \
        "format must be json or markdown, not 'xml'"
    cli = subprocess.run([sys.executable, "-m", "trioka", "report"], capture_output=True,
                         timeout=30, text=True, env={k: v for k, v in os.environ.items()
                                                     if k != "TRIOKA_ADMIN"})
    assert cli.returncode == 2
    assert cli.stderr.splitlines()[-1] == \
        "trioka report: error: --admin http://HOST:PORT is required (or set TRIOKA_ADMIN)"


def produce_request(topic: str, batch: bytes):
    produce = protocol.request_class(ApiKey.PRODUCE)
    data = produce.TopicProduceData
    return produce(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        data(name=topic, partition_data=[data.PartitionProduceData(index=0, records=batch)])])


def recount(batch: bytes, count: int) -> bytes:
    """The batch with its header claiming `count` records (and a CRC to match)."""
    lie = bytearray(batch)
    struct.pack_into(">i", lie, 23, count - 1)     # last_offset_delta
    struct.pack_into(">i", lie, 57, count)         # records_count
    struct.pack_into(">I", lie, 17, crc32c(memoryview(lie)[21:]))
    return bytes(lie)


def partition_answer(response):
    return response.responses[0].partition_responses[0]


def test_a_broken_raw_client_finds_each_of_its_violations(strict):
    topic = unique("raw")
    create_topic(strict.bootstrap, topic, 1)
    client = unique("broken")
    api_versions = protocol.request_class(ApiKey.API_VERSIONS)(
        client_software_name="broken-client", client_software_version="0.1")
    with RawConnection(strict.bootstrap) as conn:
        def send(key, version, message):
            return conn.request(key, version, message, client_id=client)
        answer = send(ApiKey.API_VERSIONS, 3, api_versions)
        [produce_range] = [(k.min_version, k.max_version) for k in answer.api_keys
                           if k.api_key == ApiKey.PRODUCE]

        # A deprecated version (Produce v3; Kafka deprecates v0-6): served, and noted.
        part = partition_answer(send(ApiKey.PRODUCE, 3, produce_request(
            topic, encode_batch([(b"k", b"v")]))))
        assert part.error_code == 0

        # An idempotent producer skipping sequence numbers.
        init = protocol.request_class(ApiKey.INIT_PRODUCER_ID)(
            transactional_id=None, transaction_timeout_ms=60_000, producer_id=-1,
            producer_epoch=-1)
        pid = send(ApiKey.INIT_PRODUCER_ID, 4, init)
        assert pid.error_code == 0
        for sequence, expected in ((0, ErrorCode.NONE),
                                   (10, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)):
            part = partition_answer(send(ApiKey.PRODUCE, 9, produce_request(topic, encode_batch(
                [(b"k", b"v")], producer_id=pid.producer_id, producer_epoch=pid.producer_epoch,
                base_sequence=sequence))))
            assert part.error_code == expected

        # A batch whose header counts three records and holds two: Kafka's LogValidator.
        lie = recount(encode_batch([(b"a", b"1" * 20), (b"b", b"2" * 20)]), 3)
        part = partition_answer(send(ApiKey.PRODUCE, 9, produce_request(topic, lie)))
        assert (part.error_code, part.error_message) == (
            ErrorCode.INVALID_RECORD, "Incorrect declared batch size, premature EOF reached")

        # A control batch (a transaction marker) produced by a client.
        marker = encode_batch([{"key": b"\x00\x00\x00\x01", "value": b"\x00\x00\x00\x00\x00\x00"}],
                              control=True, transactional=True, producer_id=pid.producer_id,
                              producer_epoch=pid.producer_epoch)
        part = partition_answer(send(ApiKey.PRODUCE, 9, produce_request(topic, marker)))
        assert part.error_code == ErrorCode.INVALID_RECORD

        # A commit with a generation the group never had.
        commit = protocol.request_class(ApiKey.OFFSET_COMMIT)
        topic_commit = commit.OffsetCommitRequestTopic
        answer = send(ApiKey.OFFSET_COMMIT, 8, commit(
            group_id=unique("nogroup"), generation_id_or_member_epoch=7, member_id="ghost",
            group_instance_id=None, retention_time_ms=-1, topics=[topic_commit(
                name=topic, partitions=[topic_commit.OffsetCommitRequestPartition(
                    partition_index=0, committed_offset=1, committed_leader_epoch=-1,
                    commit_timestamp=-1, committed_metadata="")])]))
        commit_error = answer.topics[0].partitions[0].error_code
        assert commit_error in (ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID)

        # A version above what the broker advertised: the connection is closed.
        with pytest.raises(ConnectionError):
            send(ApiKey.PRODUCE, produce_range[1] + 1,
                 produce_request(topic, encode_batch([(b"k", b"v")])))

    [broken] = [c for c in report(strict)["clients"] if c["client_id"] == client]
    assert (broken["client_software_name"], broken["client_software_version"]) == \
        ("broken-client", "0.1")
    assert broken["apis"]["Produce"] == [3, 9, produce_range[1] + 1]
    kinds = [v["kind"] for v in broken["violations"]]
    assert kinds == ["deprecated_version", "out_of_order_sequence", "invalid_record",
                     "control_batch_from_client",
                     {ErrorCode.ILLEGAL_GENERATION: "commit_generation",
                      ErrorCode.UNKNOWN_MEMBER_ID: "commit_member"}[commit_error],
                     "version_not_negotiated"]
    by_kind = {v["kind"]: v for v in broken["violations"]}
    assert by_kind["invalid_record"]["detail"] == \
        f"INVALID_RECORD at {topic}[0]: Incorrect declared batch size, premature EOF reached"
    # The offending request, summarised from the batch header the client sent.
    [batch] = by_kind["invalid_record"]["request"]["topic_data"][0]["partition_data"][0]["records"]
    assert batch["records_count"] == 3
    assert by_kind["control_batch_from_client"]["request"]["topic_data"][0][
        "partition_data"][0]["records"][0]["is_control"] is True
    assert by_kind["version_not_negotiated"]["detail"] == \
        f"Produce v{produce_range[1] + 1}: the broker advertised " \
        f"v{produce_range[0]}-v{produce_range[1]}"
    assert broken["errors"]["INVALID_RECORD"] == 2
    assert broken["errors"]["OUT_OF_ORDER_SEQUENCE_NUMBER"] == 1


def test_a_client_that_skips_api_versions_and_sends_too_much(strict):
    client = unique("rude")
    metadata = protocol.request_class(ApiKey.METADATA)(
        topics=[], allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    with RawConnection(strict.bootstrap) as conn:
        assert conn.request(ApiKey.METADATA, 12, metadata, client_id=client).brokers
        # A request declaring more than socket.request.max.bytes (100 MiB): closed unread.
        conn.send(struct.pack(">i", 200 << 20))
        assert conn.closed_by_broker()
    with RawConnection(strict.bootstrap) as conn:
        conn.request(ApiKey.API_VERSIONS, 3, protocol.request_class(ApiKey.API_VERSIONS)(
            client_software_name="rude-client", client_software_version="1"), client_id=client)
        # Metadata v12 is flexible: its header is v2, with tagged fields after the client id.
        # Sent with a v1 header (the tagged fields left out), it does not parse.
        frame = protocol.encode_request(ApiKey.METADATA, 12, 2, client, metadata)[4:]
        tags_at = 10 + len(client.encode())
        assert frame[tags_at] == 0
        frame = frame[:tags_at] + frame[tags_at + 1:]
        conn.send(struct.pack(">i", len(frame)) + frame)
        assert conn.closed_by_broker()
    got = {c["client_software_name"]: c for c in report(strict)["clients"]
           if c["client_id"] == client}
    assert [v["kind"] for v in got[None]["violations"]] == \
        ["no_api_versions", "request_too_large"]
    assert got[None]["violations"][1]["detail"] == \
        "declared frame size 209715200; socket.request.max.bytes is 104857600"
    [not_parsed] = got["rude-client"]["violations"]
    assert (not_parsed["kind"], not_parsed["api"], not_parsed["version"]) == \
        ("request_not_parsed", "Metadata", 12)


def test_without_strict_mode_the_report_comes_from_the_request_log():
    """A broker not in strict mode pays nothing per request for the report: it is derived, when
    asked, from the requests its request log holds."""
    from trioka.testing.embedded import Broker
    with Broker(memory=True) as b:
        topic = b.create_topic(unique("plain"))
        records = value_records([b"a", b"b"])
        produce_confluent(b.bootstrap_servers, topic, records)
        produce_kafka_python(b.bootstrap_servers, topic, records)
        got = b.conformance_report()
        markdown = b.conformance_report(markdown=True)
    assert got["strict"] is False
    by_software = {c["client_software_name"]: c for c in got["clients"]}
    assert "Produce" in by_software["confluent-kafka-python"]["apis"]
    assert "Produce" in by_software["kafka-python"]["apis"]
    assert markdown.startswith("# Conformance report (from the request log)")


def test_a_strict_cluster_merges_its_nodes_reports_by_client():
    """Every node keeps its own record; the cluster's report merges them by client. The nodes'
    own traffic to the controller (registration, heartbeats, the metadata log) is reported as
    clients too, and it keeps Kafka's rules."""
    from trioka.testing.embedded import Cluster
    with Cluster(nodes=2, memory=True, strict=True) as cluster:
        topic = unique("merged")
        create_topic(cluster.bootstrap_servers, topic, 2)
        records = [Rec(p, None, b"k", b"v%d" % p) for p in (0, 1)]
        produce_confluent(cluster.bootstrap_servers, topic, records)
        produce_kafka_python(cluster.bootstrap_servers, topic, records)
        got = cluster.conformance_report()
    assert got["strict"] is True
    names = [c["client_software_name"] for c in got["clients"]]
    # One entry per client, however many nodes it spoke to.
    assert names.count("confluent-kafka-python") >= 1
    kafka_python = [c for c in got["clients"] if c["client_software_name"] == "kafka-python"
                    and "Produce" in c["apis"]]
    assert len({c["client_id"] for c in kafka_python}) == len(kafka_python) == 1
    nodes = [c for c in got["clients"] if c["client_software_name"] == "trioka-node"]
    assert any("BrokerHeartbeat" in c["apis"] for c in nodes)
    assert all(c["violation_count"] == 0 for c in nodes), nodes
