"""The tools' broker connection (cli/client/connection.py), against a scripted fake broker on a
socket pair: per-API version negotiation, KIP-511's second ApiVersions, errors and deadlines; the
bootstrap list and error codes.
"""

import socket
import struct
import threading

import pytest

from trioka.cli.client import connection
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

    def connect(self) -> connection.BrokerConnection:
        return connection.BrokerConnection("fake", 9092, sock=self.ours, timeout=10)

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
    assert connection.negotiate(ours, theirs) == {ApiKey.METADATA: 12, ApiKey.PRODUCE: 7}


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
        with pytest.raises(connection.ClientError, match="no Fetch version in common"):
            conn.version(ApiKey.FETCH)                   # broker 0-2, client 4-12
        with pytest.raises(connection.ClientError, match="does not support ListOffsets"):
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
        with pytest.raises(connection.ClientError, match="timed out"):
            connection.BrokerConnection("fake", 1, sock=a, timeout=0.3)
    finally:
        a.close()
        b.close()


def test_parse_bootstrap():
    assert connection.parse_bootstrap("a:1, b:2,PLAINTEXT://c:3,[::1]:4") == [
        ("a", 1), ("b", 2), ("c", 3), ("::1", 4)]
    with pytest.raises(connection.ClientError):
        connection.parse_bootstrap("nohost")


def test_raise_for_names_the_code_and_keeps_the_brokers_message():
    connection.raise_for(0, "ignored", what="nothing")
    with pytest.raises(KafkaError,
                       match=r"^produce to t-0: NOT_LEADER_OR_FOLLOWER \(moved\)$") as e:
        connection.raise_for(ErrorCode.NOT_LEADER_OR_FOLLOWER, "moved", what="produce to t-0")
    assert e.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_raise_for_an_error_code_this_client_does_not_know():
    with pytest.raises(KafkaError, match=r"^Fetch: error code 32767$") as e:
        connection.raise_for(32767, what="Fetch")
    assert e.value.code == ErrorCode.UNKNOWN_SERVER_ERROR
