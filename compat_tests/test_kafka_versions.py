"""Kafka version emulation against stock clients: `trioka serve --kafka-version 2.8` and `3.7`
(wire/releases.py) and the default release.

For each release: the ApiVersions answer read over a raw connection is that release's table (cut
to what trioka serves); kafka-python infers the release from it and picks that release's versions;
librdkafka (confluent-kafka) produces and consumes in a group at the versions the release had, as
its own protocol log says request by request ("Sent ProduceRequest (v9, ..."); and the broker
closes a connection that asks a version or an API the release did not have, as Kafka does. A
KIP-848 consumer (`group.protocol=consumer`) is refused before 4.0, as those releases refused it:
librdkafka finds no ConsumerGroupHeartbeat in ApiVersions ("ConsumerGroupHeartbeatRequest not
supported by broker"), keeps looking for a coordinator and never gets an assignment; against the
default release the same consumer reads the records.
"""

import logging
import re
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.producer import ProduceRequest

from harness import RawConnection, create_topic, unique, wait_for
from trioka.apis import as_release
from trioka.log.records import encode_batch
from trioka.testing.process import BrokerProcess
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.releases import DEFAULT, RELEASES

TIMEOUT = 30
POSED = ("2.8", "3.7")


@pytest.fixture(scope="module")
def posing():
    """One broker process per release posed as: {release: BrokerProcess}."""
    procs = {}
    try:
        for name in POSED:
            procs[name] = BrokerProcess(memory=True, args=["--kafka-version", name]).start()
        yield procs
    finally:
        for proc in procs.values():
            proc.close()


def advertised(bootstrap: str):
    """The ApiVersions v3 answer: ({api key: (min, max)}, the answer)."""
    Request = protocol.request_class(ApiKey.API_VERSIONS)
    with RawConnection(bootstrap) as conn:
        r = conn.request(ApiKey.API_VERSIONS, 3, Request(client_software_name="raw",
                                                        client_software_version="1"))
    assert r.error_code == 0
    return {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}, r


def expected(name: str) -> dict:
    return {key: api.versions for key, api in as_release(RELEASES[name]).items()}


class RdkafkaLog(logging.Handler):
    """librdkafka's log lines (its `logger`), and the requests it says it sent, by name."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self.logger = logging.getLogger(f"rdkafka-{unique()}")
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())

    def sent(self) -> dict[str, set[int]]:
        """Request name -> the versions sent ("Sent ProduceRequest (v9, 123 bytes @ 0, ...")."""
        out: dict[str, set[int]] = {}
        for line in self.lines:
            for name, version in re.findall(r"Sent (\w+)Request \(v(\d+),", line):
                out.setdefault(name, set()).add(int(version))
        return out


# --- what the broker advertises and refuses -----------------------------------------------------

@pytest.mark.parametrize("name", POSED)
def test_api_versions_are_the_release_s(posing, name):
    ranges, answer = advertised(posing[name].bootstrap)
    assert ranges == expected(name)
    assert answer.supported_features == [] and answer.finalized_features == []
    assert ApiKey.CONSUMER_GROUP_HEARTBEAT not in ranges
    assert ranges[ApiKey.PRODUCE] == RELEASES[name].apis[ApiKey.PRODUCE]


def test_the_default_release_is_advertised_whole(broker):
    ranges, answer = advertised(broker.bootstrap)
    assert ranges == RELEASES[DEFAULT].apis
    assert {f.name: f.max_version_level for f in answer.finalized_features} == \
        {"group.version": 1, "transaction.version": 2}


def test_versions_and_apis_the_release_lacked_close_the_connection(posing):
    Produce = protocol.request_class(ApiKey.PRODUCE)
    Heartbeat = protocol.request_class(ApiKey.CONSUMER_GROUP_HEARTBEAT)
    topic = unique("vt-refused")
    create_topic(posing["2.8"].bootstrap, topic)
    batch = encode_batch([(None, b"v", [], 0)], base_timestamp=0)
    produce = Produce(acks=1, timeout_ms=5000, topic_data=[Produce.TopicProduceData(
        name=topic, partition_data=[Produce.TopicProduceData.PartitionProduceData(
            index=0, records=batch)])])
    with RawConnection(posing["2.8"].bootstrap) as conn:
        r = conn.request(ApiKey.PRODUCE, 9, produce)      # 2.8's newest
        assert r.responses[0].partition_responses[0].error_code == 0
        with pytest.raises(ConnectionError):
            conn.request(ApiKey.PRODUCE, 10, produce)     # 3.7's
    with RawConnection(posing["3.7"].bootstrap) as conn:
        with pytest.raises(ConnectionError):
            conn.request(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, Heartbeat(
                group_id="g", member_id="", member_epoch=0, rebalance_timeout_ms=30_000,
                subscribed_topic_names=[topic], topic_partitions=[]))


def test_produce_v2_is_served_before_4_0(posing):
    Produce = protocol.request_class(ApiKey.PRODUCE)
    topic = unique("vt-v2")
    create_topic(posing["3.7"].bootstrap, topic)
    batch = encode_batch([(b"k", b"old client", [], 0)], base_timestamp=0)
    request = Produce(acks=1, timeout_ms=5000, topic_data=[Produce.TopicProduceData(
        name=topic, partition_data=[Produce.TopicProduceData.PartitionProduceData(
            index=0, records=batch)])])
    with RawConnection(posing["3.7"].bootstrap) as conn:
        part = conn.request(ApiKey.PRODUCE, 2, request).responses[0].partition_responses[0]
    assert (part.error_code, part.base_offset) == (0, 0)
    got = consume_kafka_python(posing["3.7"].bootstrap, topic, 1)
    assert [(m.key, m.value) for m in got] == [(b"k", b"old client")]


# --- kafka-python -----------------------------------------------------------------------------

def consume_kafka_python(bootstrap: str, topic: str, count: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=TIMEOUT * 1000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        got = []

        def read_all():
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
            return len(got) >= count

        wait_for(read_all, TIMEOUT, lambda: f"{len(got)} of {count} records", interval=0)
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("name", POSED)
def test_kafka_python_infers_the_release_and_uses_its_versions(posing, name):
    bootstrap = posing[name].bootstrap
    topic = unique(f"vt-kp-{name}")
    create_topic(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000)
    try:
        metadata = producer.send(topic, key=b"k", value=name.encode()).get(timeout=TIMEOUT)
        assert metadata.offset == 0
        # The release kafka-python inferred from ApiVersions, and the versions its network
        # client picks for each request it sends (there is no public accessor for those).
        assert producer.config["api_version"] == tuple(int(p) for p in name.split("."))
        client = producer._sender._client
        ranges = expected(name)
        for request, key in ((ProduceRequest, ApiKey.PRODUCE), (FetchRequest, ApiKey.FETCH)):
            newest = request.max_version     # (passed: a None there fails in kafka-python 3.0)
            assert client.api_version(request, max_version=newest) == \
                min(ranges[key][1], newest), request
    finally:
        producer.close()
    got = consume_kafka_python(bootstrap, topic, 1)
    assert [(m.key, m.value) for m in got] == [(b"k", name.encode())]


# --- confluent-kafka --------------------------------------------------------------------------

@pytest.mark.parametrize("name", POSED)
def test_librdkafka_produces_and_consumes_at_the_release_s_versions(posing, name):
    bootstrap = posing[name].bootstrap
    ranges = expected(name)
    topic = unique(f"vt-rdk-{name}")
    create_topic(bootstrap, topic)
    log = RdkafkaLog()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "debug": "protocol", "logger": log.logger})
    reports = []
    producer.produce(topic, key=b"k", value=name.encode(),
                     on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert producer.flush(TIMEOUT) == 0 and reports == [(None, 0)]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("vt-group"),
                         "auto.offset.reset": "earliest", "debug": "protocol",
                         "logger": log.logger})
    try:
        consumer.subscribe([topic])
        got = []

        def read():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append((message.key(), message.value()))
            return got

        wait_for(read, TIMEOUT, "the record, through the group", interval=0)
        assert got == [(b"k", name.encode())]
    finally:
        consumer.close()
    sent = log.sent()
    for request, key in (("Produce", ApiKey.PRODUCE), ("Fetch", ApiKey.FETCH),
                         ("Metadata", ApiKey.METADATA), ("JoinGroup", ApiKey.JOIN_GROUP),
                         ("InitProducerId", ApiKey.INIT_PRODUCER_ID)):
        assert sent.get(request), (request, sent)
        lo, hi = ranges[key]
        assert all(lo <= v <= hi for v in sent[request]), (request, sent[request], (lo, hi))
    # librdkafka uses its newest version the release has of these.
    assert sent["Produce"] == {ranges[ApiKey.PRODUCE][1]}
    assert sent["Fetch"] == {ranges[ApiKey.FETCH][1]}


def kip848_consumer(bootstrap: str, topic: str, log: RdkafkaLog) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("vt-848"),
                         "group.protocol": "consumer", "auto.offset.reset": "earliest",
                         "debug": "cgrp", "logger": log.logger})
    consumer.subscribe([topic])
    return consumer


@pytest.mark.parametrize("name", POSED)
def test_a_kip_848_consumer_is_refused_before_4_0(posing, name):
    bootstrap = posing[name].bootstrap
    topic = unique(f"vt-848-{name}")
    create_topic(bootstrap, topic)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=b"unread")
    assert producer.flush(TIMEOUT) == 0
    log = RdkafkaLog()
    consumer = kip848_consumer(bootstrap, topic, log)
    refusal = "ConsumerGroupHeartbeatRequest not supported by broker"
    try:
        got = []

        def refused():
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message.value())
            return any(refusal in line for line in log.lines)

        wait_for(refused, TIMEOUT, f"librdkafka logging {refusal!r}", interval=0)
        assert consumer.assignment() == [] and got == []
    finally:
        consumer.close()


def test_a_kip_848_consumer_reads_from_the_default_release(broker):
    topic = unique("vt-848-default")
    create_topic(broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value=b"read")
    assert producer.flush(TIMEOUT) == 0
    log = RdkafkaLog()
    consumer = kip848_consumer(broker.bootstrap, topic, log)
    try:
        got = []

        def read():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message.value())
            return got

        wait_for(read, TIMEOUT, "the record, through a KIP-848 group", interval=0)
        assert got == [b"read"]
        assert not any("not supported by broker" in line for line in log.lines)
    finally:
        consumer.close()


def test_an_unknown_release_stops_the_start_with_one_line():
    done = subprocess.run([sys.executable, "-m", "trioka", "serve", "--memory",
                           "--listeners", "PLAINTEXT://127.0.0.1:0", "--kafka-version", "2.7"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "trioka: trioka.kafka.version: unknown Kafka release '2.7'; known: 2.8, 3.0, 3.1, 3.2, "
        "3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1, 4.2"]
