"""Independent oracles for the wire codec: other codecs, and the bytes real clients send.

1. kafka-python 3 (`kafka.protocol.*`, its own JSON-driven codec) encodes requests that our parser
   must read field by field, and decodes our responses, headers included. A sweep over every API and
   version both codecs know checks byte-for-byte agreement and value-for-value agreement.
2. kafka-python's hand-written classic structs (`kafka.protocol.old.*`), which owe nothing to
   Kafka's JSON schemas, do the same for classic versions.
3. librdkafka: a confluent-kafka Producer and kcat are pointed at a bare TCP socket and the first
   frame they send (ApiVersions) is captured and parsed; the frames captured when this file was
   written are kept below as golden hex, so the test stands without a live capture too.
"""

import importlib
import inspect
import pkgutil
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

import message_values
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.messages import MESSAGES

# kafka-python 3 (the test extra's floor) has the JSON-driven codec these tests drive; 2.x only
# has the classic structs. A missing or older kafka-python fails here, it does not skip.
import kafka.protocol as kafka_protocol
from kafka.protocol.admin import (
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse)
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.consumer import (
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse)
from kafka.protocol.metadata import (
    ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse)
from kafka.protocol.producer import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder


TOPIC_ID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
TOPIC_ID2 = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")


def record_batch(*values: bytes) -> bytes:
    """A real record batch v2, built by kafka-python's own batch builder."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000 + i, key=b"k%d" % i, value=v, headers=[])
    return bytes(b.build())


# --- kafka-python as the client: its request frames, our parser ---

def kp_request(cls, version: int, corr: int, client_id: str, **fields) -> bytes:
    msg = cls[version](**fields)
    msg.with_header(correlation_id=corr, client_id=client_id)
    return bytes(msg.encode(header=True, framed=True))


def parse(frame: bytes, key: int, version: int, corr: int = 7, client_id: str = "golden"):
    """Our parser on a whole frame: size prefix, header, then the body."""
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    view = memoryview(frame)[4:]
    header, pos = protocol.parse_request_header(view)
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (
        key, version, corr, client_id)
    body = protocol.decode_request_body(header, view, pos)
    # The body decoder consumed every byte kafka-python wrote.
    _, end = schema.api(key).request.decode(view, pos, version)
    assert end == len(view)
    return body


def kp_response(cls, version: int, frame: bytes, corr: int = 7):
    """kafka-python on our whole response frame (it picks the header version itself)."""
    obj = cls.decode(frame, version=version, header=True, framed=True)
    assert obj.header.correlation_id == corr
    # kafka-python writes the same frame back: nothing of ours was skipped or left over.
    head = bytes(obj.encode_header(flexible=cls.flexible_version_q(version)))
    header, obj._header = obj._header, None
    body = bytes(obj.encode(version=version))
    obj._header = header
    assert frame == struct.pack(">i", len(head) + len(body)) + head + body
    return obj


def our_response(key: int, version: int, msg, corr: int = 7) -> bytes:
    return b"".join(bytes(c) for c in protocol.encode_response(key, version, corr, msg))


# --- ApiVersions ---

@pytest.mark.parametrize("version", range(0, 5))
def test_api_versions_request_from_kafka_python(version):
    fields = {}
    if version >= 3:
        fields = dict(client_software_name="kafka-python", client_software_version="3.0.12")
    req = parse(kp_request(ApiVersionsRequest, version, 7, "golden", **fields),
                ApiKey.API_VERSIONS, version)
    if version >= 3:
        assert req.client_software_name == "kafka-python"
        assert req.client_software_version == "3.0.12"
    else:
        assert req.client_software_name == ""


@pytest.mark.parametrize("version", range(0, 5))
def test_api_versions_response_to_kafka_python(version):
    R = protocol.response_class(ApiKey.API_VERSIONS)
    msg = R(error_code=0, throttle_time_ms=12, api_keys=[
        R.ApiVersion(api_key=0, min_version=3, max_version=13),
        R.ApiVersion(api_key=18, min_version=0, max_version=4)])
    frame = our_response(ApiKey.API_VERSIONS, version, msg)
    # Header v0 even for the flexible versions 3 and 4.
    assert frame[4:8] == struct.pack(">i", 7) and frame[8:10] == b"\x00\x00"
    obj = kp_response(ApiVersionsResponse, version, frame)
    assert obj.error_code == 0
    assert [(k.api_key, k.min_version, k.max_version) for k in obj.api_keys] == [
        (0, 3, 13), (18, 0, 4)]
    if version >= 1:
        assert obj.throttle_time_ms == 12


def test_api_versions_unsupported_version_answer_is_read_as_v0():
    """KIP-511: a v0 body with UNSUPPORTED_VERSION answers a too-new ApiVersions request."""
    R = protocol.response_class(ApiKey.API_VERSIONS)
    msg = R(error_code=ErrorCode.UNSUPPORTED_VERSION,
            api_keys=[R.ApiVersion(api_key=18, min_version=0, max_version=4)])
    frame = our_response(ApiKey.API_VERSIONS, 0, msg)
    obj = ApiVersionsResponse.decode(frame, version=4, header=True, framed=True)
    assert obj.header.correlation_id == 7
    assert obj.error_code == ErrorCode.UNSUPPORTED_VERSION == 35
    assert [(k.api_key, k.min_version, k.max_version) for k in obj.api_keys] == [(18, 0, 4)]


# --- Metadata ---

@pytest.mark.parametrize("version", range(0, 14))
def test_metadata_request_from_kafka_python(version):
    T = MetadataRequest.MetadataRequestTopic
    topics = [T(name="orders"), T(name="pay-ü")]
    if version >= 10:
        topics = [T(name="orders", topic_id=TOPIC_ID), T(name=None, topic_id=TOPIC_ID2)]
    fields = dict(topics=topics)
    if version >= 4:
        fields["allow_auto_topic_creation"] = False
    if 8 <= version <= 10:
        fields["include_cluster_authorized_operations"] = True
    if version >= 8:
        fields["include_topic_authorized_operations"] = True
    req = parse(kp_request(MetadataRequest, version, 7, "golden", **fields),
                ApiKey.METADATA, version)
    if version >= 10:
        assert [(t.name, t.topic_id) for t in req.topics] == [("orders", TOPIC_ID),
                                                              (None, TOPIC_ID2)]
    else:
        assert [t.name for t in req.topics] == ["orders", "pay-ü"]
    assert req.allow_auto_topic_creation is (version < 4)     # default true before v4
    assert req.include_cluster_authorized_operations is (8 <= version <= 10)
    assert req.include_topic_authorized_operations is (version >= 8)


@pytest.mark.parametrize("version", range(1, 14))
def test_metadata_request_null_topics_means_all(version):
    req = parse(kp_request(MetadataRequest, version, 7, "golden", topics=None),
                ApiKey.METADATA, version)
    assert req.topics is None


@pytest.mark.parametrize("version", range(0, 14))
def test_metadata_response_to_kafka_python(version):
    R = protocol.response_class(ApiKey.METADATA)
    T = R.MetadataResponseTopic
    P = T.MetadataResponsePartition
    msg = R(throttle_time_ms=3,
            brokers=[R.MetadataResponseBroker(node_id=1, host="127.0.0.1", port=9092,
                                              rack="r1"),
                     R.MetadataResponseBroker(node_id=2, host="b2", port=19092, rack=None)],
            cluster_id="clu-ster", controller_id=2,
            topics=[T(error_code=0, name="orders", topic_id=TOPIC_ID, is_internal=False,
                      partitions=[P(error_code=0, partition_index=0, leader_id=1, leader_epoch=5,
                                    replica_nodes=[1, 2], isr_nodes=[1], offline_replicas=[2])],
                      topic_authorized_operations=0x0F8),
                    T(error_code=3, name="gone", partitions=[],
                      topic_authorized_operations=-2147483648)],
            cluster_authorized_operations=-2147483648)
    obj = kp_response(MetadataResponse, version, our_response(ApiKey.METADATA, version, msg))
    assert [(b.node_id, b.host, b.port) for b in obj.brokers] == [(1, "127.0.0.1", 9092),
                                                                 (2, "b2", 19092)]
    if version >= 1:
        assert [b.rack for b in obj.brokers] == ["r1", None]
        assert obj.controller_id == 2
    if version >= 2:
        assert obj.cluster_id == "clu-ster"
    if version >= 3:
        assert obj.throttle_time_ms == 3
    t0, t1 = obj.topics
    assert (t0.error_code, t0.name, t1.error_code, t1.name) == (0, "orders", 3, "gone")
    if version >= 10:
        assert t0.topic_id == TOPIC_ID
    if version >= 1:
        assert t0.is_internal is False
    (p,) = t0.partitions
    assert (p.error_code, p.partition_index, p.leader_id, p.replica_nodes, p.isr_nodes) == (
        0, 0, 1, [1, 2], [1])
    if version >= 5:
        assert p.offline_replicas == [2]
    if version >= 7:
        assert p.leader_epoch == 5
    if version >= 8:
        # kafka-python reads the int32 bit field as a set of operation numbers.
        assert t0.authorized_operations == {3, 4, 5, 6, 7}
    assert t1.partitions == []


# --- Produce ---

@pytest.mark.parametrize("version", range(3, 14))
def test_produce_request_from_kafka_python(version):
    batch = record_batch(b"hello", b"world" * 40)
    D = ProduceRequest.TopicProduceData
    topic = dict(topic_id=TOPIC_ID) if version >= 13 else dict(name="orders")
    frame = kp_request(ProduceRequest, version, 7, "golden", transactional_id="tx-1", acks=-1,
                       timeout_ms=30000, topic_data=[D(partition_data=[
                           D.PartitionProduceData(index=0, records=batch),
                           D.PartitionProduceData(index=4, records=None)], **topic)])
    req = parse(frame, ApiKey.PRODUCE, version)
    assert (req.transactional_id, req.acks, req.timeout_ms) == ("tx-1", -1, 30000)
    (td,) = req.topic_data
    if version >= 13:
        assert td.topic_id == TOPIC_ID
    else:
        assert td.name == "orders"
    p0, p4 = td.partition_data
    assert p0.index == 0 and p4.index == 4 and p4.records is None
    # The records blob is the exact bytes kafka-python built, and a view into the frame.
    assert isinstance(p0.records, memoryview) and p0.records.obj is frame
    assert bytes(p0.records) == batch


@pytest.mark.parametrize("version", range(3, 14))
def test_produce_response_to_kafka_python(version):
    R = protocol.response_class(ApiKey.PRODUCE)
    T = R.TopicProduceResponse
    P = T.PartitionProduceResponse
    msg = R(throttle_time_ms=9, responses=[T(
        name="orders", topic_id=TOPIC_ID, partition_responses=[
            P(index=0, error_code=0, base_offset=1234567890123, log_append_time_ms=1_700_000_000,
              log_start_offset=17),
            P(index=1, error_code=ErrorCode.INVALID_RECORD, base_offset=-1,
              record_errors=[P.BatchIndexAndErrorMessage(batch_index=2,
                                                         batch_index_error_message="bad")],
              error_message="rejected",
              current_leader=P.LeaderIdAndEpoch(leader_id=3, leader_epoch=8))])],
        node_endpoints=[R.NodeEndpoint(node_id=3, host="h3", port=9093, rack=None)])
    obj = kp_response(ProduceResponse, version, our_response(ApiKey.PRODUCE, version, msg))
    (t,) = obj.responses
    if version >= 13:
        assert t.topic_id == TOPIC_ID
    else:
        assert t.name == "orders"
    p0, p1 = t.partition_responses
    assert (p0.index, p0.error_code, p0.base_offset, p0.log_append_time_ms) == (
        0, 0, 1234567890123, 1_700_000_000)
    assert (p1.index, p1.error_code, p1.base_offset) == (1, ErrorCode.INVALID_RECORD, -1)
    assert obj.throttle_time_ms == 9
    if version >= 5:
        assert p0.log_start_offset == 17
    if version >= 8:
        assert [(e.batch_index, e.batch_index_error_message) for e in p1.record_errors] == [
            (2, "bad")]
        assert p1.error_message == "rejected"
    if version >= 10:   # tagged fields (KIP-951)
        assert (p1.current_leader.leader_id, p1.current_leader.leader_epoch) == (3, 8)
        assert [(n.node_id, n.host, n.port, n.rack) for n in obj.node_endpoints] == [
            (3, "h3", 9093, None)]


# --- Fetch ---

@pytest.mark.parametrize("version", range(4, 18))
def test_fetch_request_from_kafka_python(version):
    T = FetchRequest.FetchTopic
    P = T.FetchPartition
    topic = dict(topic_id=TOPIC_ID) if version >= 13 else dict(topic="orders")
    fields = dict(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=52428800,
                  isolation_level=1, session_id=77, session_epoch=3,
                  topics=[T(partitions=[P(partition=2, current_leader_epoch=4, fetch_offset=99,
                                          last_fetched_epoch=3, log_start_offset=10,
                                          partition_max_bytes=1048576)], **topic)],
                  forgotten_topics_data=[FetchRequest.ForgottenTopic(
                      partitions=[5, 6], **(dict(topic_id=TOPIC_ID2) if version >= 13
                                            else dict(topic="old")))],
                  rack_id="rack-a")
    if version >= 12:
        fields["cluster_id"] = "clu"
    if version >= 15:
        del fields["replica_id"]
        fields["replica_state"] = FetchRequest.ReplicaState(replica_id=-1, replica_epoch=-1)
    req = parse(kp_request(FetchRequest, version, 7, "golden", **fields), ApiKey.FETCH, version)
    assert (req.max_wait_ms, req.min_bytes, req.max_bytes, req.isolation_level) == (
        500, 1, 52428800, 1)
    assert req.replica_id == -1
    (t,) = req.topics
    (p,) = t.partitions
    assert (p.partition, p.fetch_offset, p.partition_max_bytes) == (2, 99, 1048576)
    if version >= 13:
        assert t.topic_id == TOPIC_ID
    else:
        assert t.topic == "orders"
    if version >= 5:
        assert p.log_start_offset == 10
    if version >= 7:
        assert (req.session_id, req.session_epoch) == (77, 3)
        (f,) = req.forgotten_topics_data
        assert f.partitions == [5, 6]
        assert (f.topic_id == TOPIC_ID2) if version >= 13 else (f.topic == "old")
    if version >= 9:
        assert p.current_leader_epoch == 4
    if version >= 11:
        assert req.rack_id == "rack-a"
    if version >= 12:
        assert p.last_fetched_epoch == 3
        assert req.cluster_id == "clu"        # a tagged field of the request


@pytest.mark.parametrize("version", range(4, 18))
def test_fetch_response_to_kafka_python(version):
    batch = record_batch(b"a", b"b", b"c")
    R = protocol.response_class(ApiKey.FETCH)
    T = R.FetchableTopicResponse
    P = T.PartitionData
    msg = R(throttle_time_ms=1, error_code=0, session_id=55, responses=[T(
        topic="orders", topic_id=TOPIC_ID, partitions=[
            P(partition_index=0, error_code=0, high_watermark=3, last_stable_offset=2,
              log_start_offset=0, aborted_transactions=[P.AbortedTransaction(
                  producer_id=1000, first_offset=1)], preferred_read_replica=-1,
              records=[batch[:20], memoryview(batch)[20:]]),     # chunks, as Fetch sends them
            P(partition_index=1, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, high_watermark=-1,
              aborted_transactions=None, records=None,
              current_leader=P.LeaderIdAndEpoch(leader_id=2, leader_epoch=6),
              diverging_epoch=P.EpochEndOffset(epoch=4, end_offset=40))])],
        node_endpoints=[R.NodeEndpoint(node_id=2, host="h2", port=9092, rack="r")])
    obj = kp_response(FetchResponse, version, our_response(ApiKey.FETCH, version, msg))
    (t,) = obj.responses
    assert (t.topic_id == TOPIC_ID) if version >= 13 else (t.topic == "orders")
    p0, p1 = t.partitions
    assert (p0.partition_index, p0.error_code, p0.high_watermark) == (0, 0, 3)
    assert bytes(p0.records) == batch
    assert p1.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER and p1.records is None
    assert (p0.last_stable_offset, p0.aborted_transactions[0].producer_id) == (2, 1000)
    assert p1.aborted_transactions is None
    if version >= 7:
        assert (obj.error_code, obj.session_id) == (0, 55)
    if version >= 12:
        assert (p1.current_leader.leader_id, p1.current_leader.leader_epoch) == (2, 6)
        assert (p1.diverging_epoch.epoch, p1.diverging_epoch.end_offset) == (4, 40)
    if version >= 16:
        assert [(n.node_id, n.host, n.rack) for n in obj.node_endpoints] == [(2, "h2", "r")]


# --- ListOffsets ---

@pytest.mark.parametrize("version", range(1, 11))
def test_list_offsets_request_from_kafka_python(version):
    T = ListOffsetsRequest.ListOffsetsTopic
    fields = dict(replica_id=-1, isolation_level=1, timeout_ms=1500, topics=[T(
        name="orders", partitions=[
            T.ListOffsetsPartition(partition_index=0, current_leader_epoch=7, timestamp=-1),
            T.ListOffsetsPartition(partition_index=1, current_leader_epoch=7, timestamp=-2)])])
    req = parse(kp_request(ListOffsetsRequest, version, 7, "golden", **fields),
                ApiKey.LIST_OFFSETS, version)
    assert req.replica_id == -1
    (t,) = req.topics
    assert t.name == "orders"
    assert [(p.partition_index, p.timestamp) for p in t.partitions] == [(0, -1), (1, -2)]
    assert req.isolation_level == (1 if version >= 2 else 0)
    assert t.partitions[0].current_leader_epoch == (7 if version >= 4 else -1)
    assert req.timeout_ms == (1500 if version >= 10 else 0)


@pytest.mark.parametrize("version", range(1, 11))
def test_list_offsets_response_to_kafka_python(version):
    R = protocol.response_class(ApiKey.LIST_OFFSETS)
    T = R.ListOffsetsTopicResponse
    msg = R(throttle_time_ms=4, topics=[T(name="orders", partitions=[
        T.ListOffsetsPartitionResponse(partition_index=0, error_code=0, timestamp=1_700_000_000_000,
                                       offset=42, leader_epoch=6)])])
    obj = kp_response(ListOffsetsResponse, version, our_response(ApiKey.LIST_OFFSETS, version,
                                                                 msg))
    (t,) = obj.topics
    (p,) = t.partitions
    assert (t.name, p.partition_index, p.error_code, p.offset) == ("orders", 0, 0, 42)
    assert p.timestamp == 1_700_000_000_000
    if version >= 2:
        assert obj.throttle_time_ms == 4
    if version >= 4:
        assert p.leader_epoch == 6


# --- CreateTopics ---

@pytest.mark.parametrize("version", range(2, 8))
def test_create_topics_request_from_kafka_python(version):
    T = CreateTopicsRequest.CreatableTopic
    fields = dict(timeout_ms=12000, validate_only=True, topics=[
        T(name="orders", num_partitions=3, replication_factor=1, assignments=[],
          configs=[T.CreatableTopicConfig(name="cleanup.policy", value="compact"),
                   T.CreatableTopicConfig(name="retention.ms", value=None)]),
        T(name="manual", num_partitions=-1, replication_factor=-1, assignments=[
            T.CreatableReplicaAssignment(partition_index=0, broker_ids=[1, 2])], configs=[])])
    req = parse(kp_request(CreateTopicsRequest, version, 7, "golden", **fields),
                ApiKey.CREATE_TOPICS, version)
    assert (req.timeout_ms, req.validate_only) == (12000, True)
    a, b = req.topics
    assert (a.name, a.num_partitions, a.replication_factor, a.assignments) == ("orders", 3, 1, [])
    assert [(c.name, c.value) for c in a.configs] == [("cleanup.policy", "compact"),
                                                      ("retention.ms", None)]
    assert (b.name, b.num_partitions, b.replication_factor) == ("manual", -1, -1)
    assert [(x.partition_index, x.broker_ids) for x in b.assignments] == [(0, [1, 2])]


@pytest.mark.parametrize("version", range(2, 8))
def test_create_topics_response_to_kafka_python(version):
    R = protocol.response_class(ApiKey.CREATE_TOPICS)
    T = R.CreatableTopicResult
    C = T.CreatableTopicConfigs
    msg = R(throttle_time_ms=0, topics=[
        T(name="orders", topic_id=TOPIC_ID, error_code=0, error_message=None, num_partitions=3,
          replication_factor=1, configs=[C(name="cleanup.policy", value="compact",
                                           read_only=False, config_source=5,
                                           is_sensitive=False)]),
        T(name="bad", error_code=ErrorCode.TOPIC_ALREADY_EXISTS, error_message="exists",
          topic_config_error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, configs=None)])
    obj = kp_response(CreateTopicsResponse, version, our_response(ApiKey.CREATE_TOPICS, version,
                                                                  msg))
    a, b = obj.topics
    assert (a.name, a.error_code, a.error_message) == ("orders", 0, None)
    assert (b.name, b.error_code, b.error_message) == ("bad", ErrorCode.TOPIC_ALREADY_EXISTS,
                                                       "exists")
    if version >= 5:
        assert (a.num_partitions, a.replication_factor) == (3, 1)
        assert [(c.name, c.value, c.config_source) for c in a.configs] == [
            ("cleanup.policy", "compact", 5)]
        assert b.configs is None
        assert b.topic_config_error_code == ErrorCode.TOPIC_AUTHORIZATION_FAILED   # tagged
    if version >= 7:
        assert a.topic_id == TOPIC_ID


# --- DeleteTopics ---

@pytest.mark.parametrize("version", range(1, 7))
def test_delete_topics_request_from_kafka_python(version):
    if version >= 6:
        S = DeleteTopicsRequest.DeleteTopicState
        fields = dict(topics=[S(name="orders", topic_id=uuid.UUID(int=0)),
                              S(name=None, topic_id=TOPIC_ID)])
    else:
        fields = dict(topic_names=["orders", "pay-ü"])
    req = parse(kp_request(DeleteTopicsRequest, version, 7, "golden", timeout_ms=5000, **fields),
                ApiKey.DELETE_TOPICS, version)
    assert req.timeout_ms == 5000
    if version >= 6:
        assert [(s.name, s.topic_id) for s in req.topics] == [("orders", uuid.UUID(int=0)),
                                                              (None, TOPIC_ID)]
    else:
        assert req.topic_names == ["orders", "pay-ü"]


@pytest.mark.parametrize("version", range(1, 7))
def test_delete_topics_response_to_kafka_python(version):
    R = protocol.response_class(ApiKey.DELETE_TOPICS)
    D = R.DeletableTopicResult
    msg = R(throttle_time_ms=2, responses=[
        D(name="orders", topic_id=TOPIC_ID, error_code=0),
        D(name="nope", error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, error_message="unknown")])
    obj = kp_response(DeleteTopicsResponse, version, our_response(ApiKey.DELETE_TOPICS, version,
                                                                  msg))
    a, b = obj.responses
    assert (a.name, a.error_code, b.name, b.error_code) == (
        "orders", 0, "nope", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    assert obj.throttle_time_ms == 2
    if version >= 5:
        assert (a.error_message, b.error_message) == (None, "unknown")
    if version >= 6:
        assert a.topic_id == TOPIC_ID


# --- kafka-python's hand-written classic structs (kafka.protocol.old) ---

def old_frame(msg, corr=7, client_id="golden") -> bytes:
    msg.with_header(correlation_id=corr, client_id=client_id)
    return bytes(msg.encode(header=True, framed=True))


def test_old_structs_requests():
    from kafka.protocol.old import admin, api_versions, fetch, list_offsets, metadata, produce
    req = parse(old_frame(api_versions.ApiVersionsRequest_v3(
        client_software_name="old-kp", client_software_version="2.0.2")), 18, 3)
    assert (req.client_software_name, req.client_software_version) == ("old-kp", "2.0.2")

    # Metadata v0 topics are plain strings in the hand-written struct: same bytes as structs.
    req = parse(old_frame(metadata.MetadataRequest_v0(topics=["a", "bc"])), 3, 0)
    assert [t.name for t in req.topics] == ["a", "bc"]
    req = parse(old_frame(metadata.MetadataRequest_v1(topics=None)), 3, 1)
    assert req.topics is None
    req = parse(old_frame(metadata.MetadataRequest_v4(topics=["x"],
                                                      allow_auto_topic_creation=False)), 3, 4)
    assert [t.name for t in req.topics] == ["x"] and req.allow_auto_topic_creation is False

    batch = record_batch(b"v")
    req = parse(old_frame(produce.ProduceRequest_v7(
        transactional_id=None, acks=1, timeout_ms=100,
        topic_data=[("orders", [(3, batch)])])), 0, 7)
    assert (req.transactional_id, req.acks, req.timeout_ms) == (None, 1, 100)
    assert req.topic_data[0].name == "orders"
    p = req.topic_data[0].partition_data[0]
    assert p.index == 3 and p.records == batch

    req = parse(old_frame(fetch.FetchRequest_v4(
        replica_id=-1, max_wait_ms=100, min_bytes=1, max_bytes=1000, isolation_level=1,
        topics=[("orders", [(0, 12, 500), (1, 13, 600)])])), 1, 4)
    assert [(p.partition, p.fetch_offset, p.partition_max_bytes)
            for p in req.topics[0].partitions] == [(0, 12, 500), (1, 13, 600)]
    assert (req.max_bytes, req.isolation_level) == (1000, 1)

    req = parse(old_frame(list_offsets.ListOffsetsRequest_v1(
        replica_id=-1, topics=[("orders", [(0, -2)])])), 2, 1)
    assert (req.topics[0].name, req.topics[0].partitions[0].timestamp) == ("orders", -2)

    req = parse(old_frame(admin.CreateTopicsRequest_v0(
        topics=[("t", 2, 1, [], [("retention.ms", "1000")])], timeout_ms=99)), 19, 0)
    t = req.topics[0]
    assert (t.name, t.num_partitions, t.replication_factor, req.timeout_ms) == ("t", 2, 1, 99)
    assert [(c.name, c.value) for c in t.configs] == [("retention.ms", "1000")]

    req = parse(old_frame(admin.DeleteTopicsRequest_v0(topic_names=["a", "b"],
                                                       timeout_ms=10)), 20, 0)
    assert req.topic_names == ["a", "b"] and req.timeout_ms == 10


def test_old_structs_responses():
    from kafka.protocol.old import admin, api_versions, fetch, list_offsets, metadata, produce

    def decode(old_cls, key, version, msg):
        obj = old_cls.decode(our_response(key, version, msg), header=True, framed=True)
        assert obj.header.correlation_id == 7
        return obj

    R = protocol.response_class(ApiKey.API_VERSIONS)
    obj = decode(api_versions.ApiVersionsResponse_v3, 18, 3, R(
        error_code=0, throttle_time_ms=0,
        api_keys=[R.ApiVersion(api_key=3, min_version=0, max_version=12)]))
    assert obj.error_code == 0 and [tuple(k)[:3] for k in obj.api_keys] == [(3, 0, 12)]

    R = protocol.response_class(ApiKey.METADATA)
    T = R.MetadataResponseTopic
    obj = decode(metadata.MetadataResponse_v5, 3, 5, R(
        brokers=[R.MetadataResponseBroker(node_id=1, host="h", port=9092, rack=None)],
        cluster_id="c", controller_id=1, topics=[T(error_code=0, name="t", partitions=[
            T.MetadataResponsePartition(partition_index=0, leader_id=1, replica_nodes=[1],
                                        isr_nodes=[1], offline_replicas=[])])]))
    assert obj.brokers == [(1, "h", 9092, None)]
    assert (obj.cluster_id, obj.controller_id) == ("c", 1)
    assert obj.topics == [(0, "t", False, [(0, 0, 1, [1], [1], [])])]

    R = protocol.response_class(ApiKey.PRODUCE)
    P = R.TopicProduceResponse.PartitionProduceResponse
    obj = decode(produce.ProduceResponse_v8, 0, 8, R(throttle_time_ms=5, responses=[
        R.TopicProduceResponse(name="t", partition_responses=[P(
            index=0, error_code=0, base_offset=10, log_append_time_ms=-1, log_start_offset=0,
            record_errors=[], error_message=None)])]))
    assert obj.topics == [("t", [(0, 0, 10, -1, 0, [], None)])] and obj.throttle_time_ms == 5

    batch = record_batch(b"x", b"y")
    R = protocol.response_class(ApiKey.FETCH)
    P = R.FetchableTopicResponse.PartitionData
    obj = decode(fetch.FetchResponse_v4, 1, 4, R(throttle_time_ms=0, responses=[
        R.FetchableTopicResponse(topic="t", partitions=[P(
            partition_index=0, error_code=0, high_watermark=2, last_stable_offset=2,
            aborted_transactions=[], records=batch)])]))
    assert obj.topics == [("t", [(0, 0, 2, 2, [], batch)])]

    R = protocol.response_class(ApiKey.LIST_OFFSETS)
    T = R.ListOffsetsTopicResponse
    obj = decode(list_offsets.ListOffsetsResponse_v1, 2, 1, R(topics=[T(name="t", partitions=[
        T.ListOffsetsPartitionResponse(partition_index=0, error_code=0, timestamp=-1,
                                       offset=77)])]))
    assert obj.topics == [("t", [(0, 0, -1, 77)])]

    R = protocol.response_class(ApiKey.CREATE_TOPICS)
    obj = decode(admin.CreateTopicsResponse_v3, 19, 3, R(throttle_time_ms=1, topics=[
        R.CreatableTopicResult(name="t", error_code=36, error_message="exists")]))
    assert obj.topics == [("t", 36, "exists")] and obj.throttle_time_ms == 1

    R = protocol.response_class(ApiKey.DELETE_TOPICS)
    obj = decode(admin.DeleteTopicsResponse_v1, 20, 1, R(throttle_time_ms=1, responses=[
        R.DeletableTopicResult(name="t", error_code=3)]))
    assert obj.topic_error_codes == [("t", 3)]


# --- sweep: every API and version both codecs know ---

def _kafka_python_classes() -> dict:
    classes = {}
    for mod_info in pkgutil.walk_packages(kafka_protocol.__path__, "kafka.protocol."):
        if ".old" in mod_info.name or mod_info.name.endswith("generate_stubs"):
            continue
        try:
            mod = importlib.import_module(mod_info.name)
        except Exception:   # pragma: no cover - an optional part of kafka-python
            continue
        for c in vars(mod).values():
            if (inspect.isclass(c) and issubclass(c, ApiMessage) and c is not ApiMessage
                    and c._class_version is None and getattr(c, "_json", None)):
                classes.setdefault((c.API_KEY, c.type), c)
    return classes


def _version_range(text: str) -> tuple[int, int]:
    return schema.parse_versions(text)


KP = _kafka_python_classes()
SWEEP = [pytest.param(k, kind, v, id=f"{schema.api(k).name}-{kind}-v{v}")
         for k in sorted(MESSAGES)
         for kind in ("request", "response")
         if (k, kind) in KP
         for v in range(max(_version_range(KP[(k, kind)]._json["validVersions"])[0],
                            getattr(schema.api(k), kind).valid[0]),
                        min(_version_range(KP[(k, kind)]._json["validVersions"])[1],
                            getattr(schema.api(k), kind).valid[1]) + 1)]

# kafka-python patches a few field names; (api key, our name) -> theirs.
RENAMED = {(3, "cluster_authorized_operations"): "authorized_operations",
           (3, "topic_authorized_operations"): "authorized_operations",
           (15, "authorized_operations"): "authorized_operations",
           (60, "cluster_authorized_operations"): "authorized_operations",
           (74, "client_metrics_resources"): "config_resources",
           (74, "name"): "resource_name"}


def _ours(key, o, fields, v) -> list:
    """(name, value) pairs in wire order, recursively."""
    out = []
    for f in fields:
        if not message_values.in_version(f, v):
            continue
        x = getattr(o, f.name)
        if f.type == "array" and f.is_struct and x is not None:
            x = [_ours(key, e, f.children, v) for e in x]
        elif f.is_struct and x is not None:
            x = _ours(key, x, f.children, v)
        elif isinstance(x, memoryview):
            x = bytes(x)
        out.append((RENAMED.get((key, f.name), f.name), x))
    return out


def _theirs(d) -> list:
    out = []
    for name, x in d.items():
        if isinstance(x, dict):
            x = _theirs(x)
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            x = [_theirs(e) for e in x]
        elif isinstance(x, set):   # a bit field read as a set of bit numbers: back to an int32
            mask = sum(1 << b for b in x)
            x = mask - (1 << 32) if mask >= 1 << 31 else mask
        out.append((name, x))
    return out


@pytest.mark.parametrize("key,kind,version", SWEEP)
def test_sweep_agrees_with_kafka_python(key, kind, version):
    mt = getattr(schema.api(key), kind)
    kc = KP[(key, kind)]
    for seed, nulls in ((11, False), (12, True)):
        rng = random.Random(f"{key}/{kind}/{version}/{seed}")
        msg = message_values.populate(mt.cls, mt.fields, version, rng, nulls)
        if (key, kind) == (ApiKey.API_VERSIONS, "response"):
            msg.error_code = 0   # kafka-python reads any failed ApiVersions answer as v0
        ours = mt.encode(msg, version)
        obj = kc.decode(ours, version=version)
        obj._header = None
        assert bytes(obj.encode(version=version)) == ours, "kafka-python re-encodes differently"
        assert _theirs(obj.to_dict(json=False)) == _ours(key, msg, mt.fields, version)
        # And our decoder reads kafka-python's encoding back to the same message.
        assert mt.decode(memoryview(bytes(obj.encode(version=version))), 0, version)[0] == msg


def test_sweep_is_broad():
    """The sweep must keep covering the APIs the brief names, flexible versions included."""
    covered = {(p.values[0], p.values[1], p.values[2]) for p in SWEEP}
    for key, version in ((0, 9), (0, 13), (1, 12), (1, 17), (2, 6), (3, 9), (3, 13), (18, 3),
                         (18, 4), (19, 5), (20, 6), (75, 0)):
        assert (key, "request", version) in covered and (key, "response", version) in covered
    assert len(SWEEP) > 400


# --- librdkafka's first frame: captured live, and kept as golden hex ---

# confluent-kafka 2.16.1 (librdkafka 2.16.0), Producer with client.id=golden-test.
GOLDEN_CONFLUENT = (
    "000000440012000300000001000b676f6c64656e2d746573740017636f6e666c75656e742d6b61666b612d"
    "707974686f6e16322e31362e312d72646b61666b612d322e31362e3000")
# kcat 1.7 linked with librdkafka 2.0.2: `kcat -L -b 127.0.0.1:PORT -m 2`.
GOLDEN_KCAT = (
    "000000240012000300000001000772646b61666b61000b6c696272646b61666b6106322e302e3200")


def software_pattern():
    """The pattern apis/api_versions.py holds client software names and versions to (KIP-511).

    The module is loaded from its file alone, so that this wire test does not depend on every
    other API module importing cleanly (apis/__init__.py imports them all).
    """
    import importlib.util
    import pathlib
    path = pathlib.Path(protocol.__file__).parent.parent / "apis" / "api_versions.py"
    spec = importlib.util.spec_from_file_location("_trioka_api_versions_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._SOFTWARE


def check_api_versions_frame(frame: bytes, client_id: str, name: str, version_re: str):
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    view = memoryview(frame)[4:]
    header, pos = protocol.parse_request_header(view)
    assert header.api_key == ApiKey.API_VERSIONS
    assert header.api_version in (3, 4)
    assert schema.api(ApiKey.API_VERSIONS).is_flexible(header.api_version)
    # Request header v2: int16 key, int16 version, int32 correlation id, int16-length client
    # id (never compact), then the header's own tagged-field section.
    assert pos == 8 + 2 + len(client_id.encode()) + 1
    assert header.client_id == client_id
    req = protocol.decode_request_body(header, view, pos)
    assert req.client_software_name == name
    assert re.fullmatch(version_re, req.client_software_version), req.client_software_version
    pattern = software_pattern()
    assert pattern.match(req.client_software_name)
    assert pattern.match(req.client_software_version)
    _, end = schema.api(ApiKey.API_VERSIONS).request.decode(view, pos, header.api_version)
    assert end == len(view)
    return header, req


def test_golden_confluent_kafka_api_versions():
    header, req = check_api_versions_frame(bytes.fromhex(GOLDEN_CONFLUENT), "golden-test",
                                           "confluent-kafka-python",
                                           r"2\.16\.1-rdkafka-2\.16\.0")
    assert (header.api_version, header.correlation_id) == (3, 1)


def test_golden_kcat_api_versions():
    header, req = check_api_versions_frame(bytes.fromhex(GOLDEN_KCAT), "rdkafka",
                                           "librdkafka", r"2\.0\.2")
    assert (header.api_version, header.correlation_id) == (3, 1)


def test_software_pattern_rejects_bad_names():
    pattern = software_pattern()
    for bad in ("", "-x", "x-", "a b", "é"):
        assert not pattern.match(bad), bad


def capture_first_frame(start, timeout: float = 10.0) -> bytes:
    """Listen on 127.0.0.1:0, call start(port), return the first whole frame a client sends."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(timeout)
        stop = start(srv.getsockname()[1])
        try:
            conn, _ = srv.accept()
            with conn:
                buf = b""
                while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("client did not send a whole frame in time")
                    conn.settimeout(left)
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        finally:
            stop()
    (size,) = struct.unpack_from(">i", buf)
    return buf[:4 + size]


def test_live_confluent_kafka_first_frame():
    import confluent_kafka
    import logging
    quiet = logging.getLogger("trioka.tests.librdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    holder = {}

    def start(port):
        def run():
            # librdkafka connects to the bootstrap server as soon as the producer exists.
            holder["p"] = confluent_kafka.Producer({
                "bootstrap.servers": f"127.0.0.1:{port}", "api.version.request": True,
                "client.id": "golden-test", "socket.timeout.ms": 2000}, logger=quiet)
        th = threading.Thread(target=run, daemon=True)
        th.start()
        return lambda: th.join(10)

    frame = capture_first_frame(start)
    holder.pop("p", None)
    version, lib = confluent_kafka.version(), confluent_kafka.libversion()[0]
    check_api_versions_frame(frame, "golden-test", "confluent-kafka-python",
                             re.escape(f"{version}-rdkafka-{lib}"))


def test_live_kcat_first_frame():
    if shutil.which("kcat") is None:
        pytest.fail("kcat is not installed (.ci/run installs it with apt)")
    procs = []

    def start(port):
        procs.append(subprocess.Popen(["kcat", "-L", "-b", f"127.0.0.1:{port}", "-m", "2"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def stop():
            procs[0].kill()
            procs[0].wait(timeout=10)
        return stop

    frame = capture_first_frame(start)
    header, req = check_api_versions_frame(frame, "rdkafka", "librdkafka",
                                           r"\d+\.\d+\.\d+(-[0-9A-Za-z.\-]+)?")
    if req.client_software_version == "2.0.2":   # Debian's kcat: the frame is the golden one
        assert frame == bytes.fromhex(GOLDEN_KCAT)


def test_transaction_log_value_versions():
    """TransactionLogValue v0 has no tagged fields at all (Kafka 3.x reads it); v1 is flexible,
    with the previous and next producer ids and the client's transaction version as tags 0-2,
    each written only when not its default."""
    from trioka.wire import schema
    value = schema.record("TransactionLogValue").cls(
        producer_id=1, producer_epoch=2, transaction_timeout_ms=3, transaction_status=1,
        transaction_partitions=[], transaction_last_update_timestamp_ms=5,
        transaction_start_timestamp_ms=6, previous_producer_id=7, next_producer_id=-1,
        client_transaction_version=2)
    assert schema.encode_record("TransactionLogValue", value, 0).hex() == (
        "0000" "0000000000000001" "0002" "00000003" "01" "00000000"
        "0000000000000005" "0000000000000006")
    assert schema.encode_record("TransactionLogValue", value, 1).hex() == (
        "0001" "0000000000000001" "0002" "00000003" "01" "01"
        "0000000000000005" "0000000000000006"
        "02" "00" "08" "0000000000000007" "02" "02" "0002")
