"""The command-line tools' client (trioka/client.py) and their parsing and formatting, without a
broker: version negotiation against a scripted fake broker on a socket pair, the partitioner
against kafka-python's, read_committed filtering of hand-built batches, the consumer protocol's
assignment bytes and the range assignor, the console producer's line parsing and the consumer's
output formats.
"""

import base64
import json
import socket
import struct
import threading
import types

import pytest
from hypothesis import given, settings, strategies as st

from trioka import client as kc
from trioka.cli import consume as cli_consume
from trioka.cli import produce as cli_produce
from trioka.cli import topic as cli_topic
from trioka.cli import UsageError
from trioka.log.records import (ControlRecordType, encode_batch, encode_control_batch)
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

pytestmark = pytest.mark.timeout(30)


# --------------------------------------------------------------------------------------------
# A scripted broker on the other end of a socket pair
# --------------------------------------------------------------------------------------------

class FakeBroker:
    """Answers each request with `handlers[api_key](header, request)` -> (version, response) (the
    version the response is encoded at). Records (api key, version) of every request seen."""

    def __init__(self, handlers):
        self.handlers = handlers
        self.seen: list[tuple[int, int]] = []
        self.ours, theirs = socket.socketpair()
        theirs.settimeout(10)
        self.sock = theirs
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self):
        try:
            while True:
                head = self._read(4)
                if head is None:
                    return
                frame = self._read(struct.unpack(">i", head)[0])
                header, pos = protocol.parse_request_header(frame)
                request = protocol.decode_request_body(header, frame, pos)
                self.seen.append((header.api_key, header.api_version))
                version, response = self.handlers[header.api_key](header, request)
                self.sock.sendall(b"".join(protocol.encode_response(
                    header.api_key, version, header.correlation_id, response)))
        except OSError:
            return

    def connect(self) -> kc.BrokerConnection:
        return kc.BrokerConnection("fake", 9092, sock=self.ours, timeout=10)

    def close(self):
        self.sock.close()
        self.ours.close()


ApiVersionsResponse = protocol.response_class(ApiKey.API_VERSIONS)


def api_versions(ranges: dict, *, only_below: int | None = None):
    """An ApiVersions handler advertising `ranges`; requests above `only_below` get KIP-511's v0
    UNSUPPORTED_VERSION answer with our ApiVersions range."""
    entries = [ApiVersionsResponse.ApiVersion(api_key=k, min_version=lo, max_version=hi)
               for k, (lo, hi) in ranges.items()]

    def handle(header, request):
        if only_below is not None and header.api_version > only_below:
            lo, hi = ranges[ApiKey.API_VERSIONS]
            return 0, ApiVersionsResponse(
                error_code=ErrorCode.UNSUPPORTED_VERSION,
                api_keys=[ApiVersionsResponse.ApiVersion(api_key=ApiKey.API_VERSIONS,
                                                         min_version=lo, max_version=hi)])
        return header.api_version, ApiVersionsResponse(error_code=0, api_keys=entries,
                                                       throttle_time_ms=0)
    return handle


MetadataResponse = protocol.response_class(ApiKey.METADATA)


def metadata_handler(header, request):
    names = [t.name for t in request.topics or []]
    Topic = MetadataResponse.MetadataResponseTopic
    Partition = Topic.MetadataResponsePartition
    return header.api_version, MetadataResponse(
        throttle_time_ms=0, cluster_id="fake-cluster", controller_id=7,
        brokers=[MetadataResponse.MetadataResponseBroker(node_id=7, host="fakehost", port=1234)],
        topics=[Topic(error_code=0, name=n, partitions=[
            Partition(error_code=0, partition_index=p, leader_id=7, replica_nodes=[7],
                      isr_nodes=[7], offline_replicas=[]) for p in range(2)]) for n in names])


def test_negotiate_takes_the_newest_common_version_and_drops_the_rest():
    ours = {ApiKey.METADATA: (1, 12), ApiKey.PRODUCE: (3, 12), ApiKey.FETCH: (4, 12),
            ApiKey.LIST_OFFSETS: (1, 10)}
    theirs = {ApiKey.METADATA: (0, 13), ApiKey.PRODUCE: (0, 7), ApiKey.FETCH: (0, 3)}
    assert kc.negotiate(ours, theirs) == {ApiKey.METADATA: 12, ApiKey.PRODUCE: 7}


def test_connection_negotiates_per_api_and_sends_at_that_version():
    broker = FakeBroker({
        ApiKey.API_VERSIONS: api_versions({ApiKey.API_VERSIONS: (0, 3),
                                           ApiKey.METADATA: (0, 8),
                                           ApiKey.PRODUCE: (0, 13),
                                           ApiKey.FETCH: (0, 2)}),
        ApiKey.METADATA: metadata_handler})
    try:
        conn = broker.connect()
        assert broker.seen == [(ApiKey.API_VERSIONS, 3)]
        assert conn.version(ApiKey.METADATA) == 8        # the broker's newest
        assert conn.version(ApiKey.PRODUCE) == 12        # ours
        with pytest.raises(kc.ClientError, match="no Fetch version in common"):
            conn.version(ApiKey.FETCH)                   # broker 0-2, client 4-12
        with pytest.raises(kc.ClientError, match="does not support ListOffsets"):
            conn.version(ApiKey.LIST_OFFSETS)
        Request = protocol.request_class(ApiKey.METADATA)
        response = conn.call(ApiKey.METADATA, Request(
            topics=[Request.MetadataRequestTopic(name="x")], allow_auto_topic_creation=False))
        assert broker.seen[-1] == (ApiKey.METADATA, 8)
        assert response.cluster_id == "fake-cluster"
        assert [(t.name, [p.leader_id for p in t.partitions]) for t in response.topics] == [
            ("x", [7, 7])]
    finally:
        broker.close()


def test_api_versions_too_new_for_the_broker_is_asked_again_at_its_version():
    """KIP-511: a broker that only knows ApiVersions 0-2 answers our v3 at v0 with
    UNSUPPORTED_VERSION and its range; the client asks again at v2."""
    broker = FakeBroker({ApiKey.API_VERSIONS: api_versions(
        {ApiKey.API_VERSIONS: (0, 2), ApiKey.METADATA: (0, 9)}, only_below=2)})
    try:
        conn = broker.connect()
        assert broker.seen == [(ApiKey.API_VERSIONS, 3), (ApiKey.API_VERSIONS, 2)]
        assert conn.version(ApiKey.METADATA) == 9
        assert conn.broker_versions[ApiKey.API_VERSIONS] == (0, 2)
    finally:
        broker.close()


def test_api_versions_error_is_reported():
    def refuse(header, request):
        return header.api_version, ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST)
    broker = FakeBroker({ApiKey.API_VERSIONS: refuse})
    try:
        with pytest.raises(KafkaError, match="INVALID_REQUEST"):
            broker.connect()
    finally:
        broker.close()


def test_a_silent_broker_times_out_instead_of_hanging():
    a, b = socket.socketpair()
    try:
        with pytest.raises(kc.ClientError, match="timed out"):
            kc.BrokerConnection("fake", 1, sock=a, timeout=0.3)
    finally:
        a.close()
        b.close()


def test_parse_bootstrap():
    assert kc.parse_bootstrap("a:1, b:2,PLAINTEXT://c:3,[::1]:4") == [
        ("a", 1), ("b", 2), ("c", 3), ("::1", 4)]
    with pytest.raises(kc.ClientError):
        kc.parse_bootstrap("nohost")


# --------------------------------------------------------------------------------------------
# Partitioning
# --------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_matches_kafka_python(key):
    default = pytest.importorskip("kafka.partitioner.default")
    assert kc.murmur2(key) & 0xFFFFFFFF == default.murmur2(key) & 0xFFFFFFFF
    assert kc.partition_for_key(key, 7) == (default.murmur2(key) & 0x7FFFFFFF) % 7


# --------------------------------------------------------------------------------------------
# Fetched records: control batches and aborted transactions
# --------------------------------------------------------------------------------------------

def _aborted(pid, first):
    return types.SimpleNamespace(producer_id=pid, first_offset=first)


def _log():
    """Offsets 0-1 producer 1 (aborted), 2-3 producer 2 (committed), 4 ABORT marker of 1,
    5 COMMIT marker of 2, 6-7 a plain gzip batch, 8 producer 1 again (a later, open
    transaction)."""
    return b"".join([
        encode_batch([(b"k0", b"aborted-0"), (b"k1", b"aborted-1")], base_offset=0,
                     producer_id=1, producer_epoch=0, base_sequence=0, transactional=True),
        encode_batch([(b"k2", b"committed-2"), (None, b"committed-3", [("h", b"v")])],
                     base_offset=2, producer_id=2, producer_epoch=0, base_sequence=0,
                     transactional=True),
        encode_control_batch(ControlRecordType.ABORT, 1, 0, 0, 1000, base_offset=4),
        encode_control_batch(ControlRecordType.COMMIT, 2, 0, 0, 1000, base_offset=5),
        encode_batch([(b"k6", b"plain-6"), (b"k7", None)], base_offset=6, compression=1),
        encode_batch([(b"k8", b"open-8")], base_offset=8, producer_id=1, producer_epoch=0,
                     base_sequence=2, transactional=True),
    ])


def test_read_committed_drops_aborted_records_and_markers():
    records, next_offset = kc._records_of("t", 0, _log(), 0, kc.READ_COMMITTED,
                                          [_aborted(1, 0)])
    assert [(r.offset, r.key, r.value) for r in records] == [
        (2, b"k2", b"committed-2"), (3, None, b"committed-3"), (6, b"k6", b"plain-6"),
        (7, b"k7", None), (8, b"k8", b"open-8")]
    assert records[1].headers == [("h", b"v")]
    assert next_offset == 9


def test_read_uncommitted_keeps_aborted_records_and_still_drops_markers():
    records, next_offset = kc._records_of("t", 0, _log(), 0, kc.READ_UNCOMMITTED,
                                          [_aborted(1, 0)])
    assert [r.offset for r in records] == [0, 1, 2, 3, 6, 7, 8]
    assert next_offset == 9


def test_records_before_the_fetch_offset_are_dropped_and_markers_advance_the_position():
    records, next_offset = kc._records_of("t", 0, _log(), 7, kc.READ_UNCOMMITTED, [])
    assert [r.offset for r in records] == [7, 8]
    markers_only = encode_control_batch(ControlRecordType.COMMIT, 2, 0, 0, 1000, base_offset=5)
    records, next_offset = kc._records_of("t", 0, markers_only, 5, kc.READ_COMMITTED, [])
    assert records == [] and next_offset == 6


def test_an_abort_that_starts_later_does_not_hide_earlier_batches():
    # Producer 1's aborted transaction starts at 8: its batch at 0-1 was committed earlier.
    records, _ = kc._records_of("t", 0, _log(), 0, kc.READ_COMMITTED, [_aborted(1, 8)])
    assert [r.offset for r in records] == [0, 1, 2, 3, 6, 7]


# --------------------------------------------------------------------------------------------
# The consumer protocol and the range assignor
# --------------------------------------------------------------------------------------------

def _string(s: str) -> bytes:
    return struct.pack(">h", len(s)) + s.encode()


def test_decode_assignment_of_hand_built_bytes_v0_and_v3():
    body = (struct.pack(">i", 2) + _string("a") + struct.pack(">iii", 2, 0, 2)
            + _string("b") + struct.pack(">ii", 1, 5))
    v0 = struct.pack(">h", 0) + body + struct.pack(">i", -1)
    v3 = struct.pack(">h", 3) + body + struct.pack(">i", 3) + b"xyz"
    for data in (v0, v3):
        assert kc.decode_assignment(data) == [("a", 0), ("a", 2), ("b", 5)]
    assert kc.decode_assignment(b"") == []


def test_assignment_and_subscription_round_trip():
    data = kc.encode_assignment([("b", 1), ("a", 0), ("a", 3)])
    assert data[:2] == b"\x00\x00"
    assert kc.decode_assignment(data) == [("a", 0), ("a", 3), ("b", 1)]
    assert kc.decode_subscription(kc.encode_subscription(["x", "y"])) == ["x", "y"]


def test_range_assignor():
    plan = kc.range_assign({"m2": ["t", "u"], "m1": ["t"], "m3": ["t", "u"]},
                           {"t": 7, "u": 2})
    assert plan == {"m1": [("t", 0), ("t", 1), ("t", 2)],
                    "m2": [("t", 3), ("t", 4), ("u", 0)],
                    "m3": [("t", 5), ("t", 6), ("u", 1)]}
    assert kc.range_assign({"a": ["t"], "b": ["t"]}, {"t": 1}) == {"a": [("t", 0)], "b": []}


# --------------------------------------------------------------------------------------------
# The tools' parsing and formatting
# --------------------------------------------------------------------------------------------

def _producer_args(**kw):
    base = dict(parse_key=False, key_separator=None, null_value_marker=None, property=[])
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_line_parser_keys_separators_and_null_markers():
    p = cli_produce.LineParser(_producer_args(parse_key=True))
    assert p.parse(b"k\tv\tw") == (b"k", b"v\tw")
    p = cli_produce.LineParser(_producer_args(key_separator="::", null_value_marker="NULL"))
    assert p.parse(b"a::b") == (b"a", b"b")
    assert p.parse(b"a::NULL") == (b"a", None)
    with pytest.raises(ValueError, match="line 3"):
        p.parse(b"no separator")
    p = cli_produce.LineParser(_producer_args(property=[("parse.key", "true"),
                                                        ("key.separator", ","),
                                                        ("null.marker", "~")]))
    assert p.parse(b"~,~") == (None, None)
    p = cli_produce.LineParser(_producer_args())
    assert p.parse(b"x\ty") == (None, b"x\ty")
    with pytest.raises(UsageError):
        cli_produce.LineParser(_producer_args(property=[("linger.ms", "5")]))


def test_read_lines_splits_on_newlines_and_keeps_empty_lines():
    r, w = socket.socketpair()
    try:
        w.sendall(b"one\r\n\ntwo\nlast")
        w.close()
        lines = [line for line, _ in cli_produce.read_lines(r.fileno())]
    finally:
        r.close()
    assert lines == [b"one", b"", b"two", b"last"]


def _rec(key, value, headers=(), ts=1700000000000):
    return kc.ConsumerRecord("t", 1, 42, ts, "CreateTime", key, value, list(headers))


def test_json_format_uses_text_or_base64():
    binary = bytes(range(256))
    line = cli_consume.Formatter("json", []).format_record(
        _rec(b"key", binary, [("h", b"text"), ("bin", b"\xff\x00"), ("none", None)]))
    obj = json.loads(line)
    assert obj["topic"] == "t" and obj["partition"] == 1 and obj["offset"] == 42
    assert obj["timestamp"] == 1700000000000 and obj["timestamp_type"] == "CreateTime"
    assert obj["key"] == "key" and "key_encoding" not in obj
    assert obj["value_encoding"] == "base64"
    assert base64.b64decode(obj["value"]) == binary
    assert obj["headers"] == [{"key": "h", "value": "text"},
                              {"key": "bin", "value": "/wA=", "value_encoding": "base64"},
                              {"key": "none", "value": None}]
    obj = json.loads(cli_consume.Formatter("json", []).format_record(_rec(None, None)))
    assert obj["key"] is None and obj["value"] is None and obj["headers"] == []


def test_value_kv_and_property_formats():
    rec = _rec(b"k", b"v", [("a", b"1"), ("b", b"2")])
    assert cli_consume.Formatter("value", []).format_record(rec) == b"v\n"
    assert cli_consume.Formatter("kv", []).format_record(rec) == b"k\tv\n"
    assert cli_consume.Formatter("value", []).format_record(_rec(None, None)) == b"null\n"
    f = cli_consume.Formatter("value", [("print.key", "true"), ("print.timestamp", "true"),
                                        ("print.partition", "true"), ("print.offset", "true"),
                                        ("print.headers", "true"), ("key.separator", "|")])
    assert f.format_record(rec) == b"CreateTime:1700000000000|Partition:1|Offset:42|a:1,b:2|k|v\n"
    assert f.format_record(_rec(None, b"v")) == (
        b"CreateTime:1700000000000|Partition:1|Offset:42|NO_HEADERS|null|v\n")
    with pytest.raises(UsageError):
        cli_consume.Formatter("json", [("print.key", "true")])


def test_config_lists_in_brackets():
    assert cli_topic.split_config_list("a=1,b=[x,y],c=2") == ["a=1", "b=[x,y]", "c=2"]
    assert cli_topic.parse_add_config(["a=1,b=[x,y]", "c="]) == [
        ("a", "1"), ("b", "x,y"), ("c", "")]
    with pytest.raises(UsageError):
        cli_topic.parse_add_config(["novalue"])


def test_topic_id_text_is_kafkas_base64():
    import uuid
    u = uuid.UUID("76232584-501f-4f33-869e-94f731f9a09d")
    assert cli_topic.topic_id_text(u) == base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")
    assert len(cli_topic.topic_id_text(u)) == 22
