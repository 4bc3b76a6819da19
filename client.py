"""A small synchronous Kafka client, for the command-line tools; it talks to any Kafka broker.

Plain blocking sockets, every read and write bounded by a deadline. What it does:

- Bootstrap: connect to the first reachable `host:port` of the bootstrap list, ask Metadata for the
  brokers (node id -> advertised address), the controller and the topics' partition leaders.
- Version negotiation, per connection: the first request is ApiVersions (at our newest; a broker
  that does not know it answers at v0 with UNSUPPORTED_VERSION and its own range, KIP-511, and we
  ask again). Each later request goes at min(our newest, the broker's newest) of its API, refused
  when the two ranges do not meet.
- Routing: partition requests (Produce, Fetch, ListOffsets) go to the partition's leader; group
  requests to the group's coordinator and transaction requests to the transactional id's (both
  found with FindCoordinator); admin requests to the controller Metadata names, else any broker.
  "Not the leader / not the coordinator" answers refresh what we know and retry until a deadline.
- Produce: record batches v2 built with `trioka.log.records.encode_batch` in any codec. Fetch:
  batches decoded with `iter_batches`; control batches are never handed out, and in
  read_committed the records of aborted transactions are dropped using the aborted-transaction
  list of the Fetch response (see `_records_of`).
- Consumer groups: `GroupMember` joins a classic group (JoinGroup, SyncGroup, Heartbeat,
  LeaveGroup) with the "range" assignor of the consumer protocol, so it shares partitions with Java,
  librdkafka and other clients in the same group.

Errors that the broker reports become `KafkaError` (the code and the broker's message, if any);
failures on our side (no broker reachable, no version in common, a deadline passed) `ClientError`.
"""

import collections
import itertools
import socket
import struct
import time

from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

CLIENT_SOFTWARE_NAME = "trioka-cli"
CLIENT_SOFTWARE_VERSION = "0.1.0"
DEFAULT_BOOTSTRAP = "localhost:9092"

# The versions of each API this client knows how to fill in and read (min, max). Newer ones are
# left out where they change the shape we rely on: Produce v13 and Fetch v13+ name topics by id.
CLIENT_VERSIONS: dict[int, tuple[int, int]] = {
    ApiKey.PRODUCE: (3, 12),
    ApiKey.FETCH: (4, 12),
    ApiKey.LIST_OFFSETS: (1, 10),
    ApiKey.METADATA: (1, 12),
    ApiKey.OFFSET_COMMIT: (2, 9),
    ApiKey.OFFSET_FETCH: (1, 9),
    ApiKey.FIND_COORDINATOR: (1, 6),
    ApiKey.JOIN_GROUP: (2, 9),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 5),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 5),
    ApiKey.LIST_GROUPS: (0, 5),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    ApiKey.LIST_TRANSACTIONS: (0, 1),
    ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 0),
}

# ListOffsets' special timestamps.
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1

# FindCoordinator key types.
GROUP_KEY, TRANSACTION_KEY = 0, 1

# Fetch isolation levels.
READ_UNCOMMITTED, READ_COMMITTED = 0, 1

# DescribeConfigs / IncrementalAlterConfigs resource types and operations.
TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
SET_CONFIG, DELETE_CONFIG = 0, 1

# Answers meaning "ask again after refreshing who leads / coordinates".
_STALE_LEADER = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.LEADER_NOT_AVAILABLE,
                 ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.FENCED_LEADER_EPOCH,
                 ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.REPLICA_NOT_AVAILABLE}
_STALE_COORDINATOR = {ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
                      ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_RETRY_BACKOFF = 0.1


class ClientError(Exception):
    """A failure on the client's side: nothing reachable, no common version, a deadline passed."""


def raise_for(code: int, message: str | None = None, what: str = "") -> None:
    """KafkaError for a non-zero error code, with the broker's message when it gave one."""
    if code:
        known = code in ErrorCode._value2member_map_
        name = ErrorCode(code).name if known else f"error code {code}"
        text = f"{what}: {name}" if what else name
        if message:
            text += f" ({message})"
        raise KafkaError(code if known else ErrorCode.UNKNOWN_SERVER_ERROR, text)


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` -> addresses; an IPv6 host may be written in brackets."""
    out = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" in item:    # a listener spec such as PLAINTEXT://host:port
            item = item.split("://", 1)[1]
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ClientError(f"bad bootstrap server {item!r}: expected HOST:PORT")
        out.append((host.strip("[]") or "localhost", int(port)))
    if not out:
        raise ClientError("no bootstrap servers given")
    return out


def negotiate(ours: dict[int, tuple[int, int]],
              theirs: dict[int, tuple[int, int]]) -> dict[int, int]:
    """The version to use per API: the newest both sides serve. APIs without a common version
    are left out."""
    out = {}
    for key, (lo, hi) in ours.items():
        if key not in theirs:
            continue
        their_lo, their_hi = theirs[key]
        if max(lo, their_lo) <= min(hi, their_hi):
            out[key] = min(hi, their_hi)
    return out


def api_name(key: int) -> str:
    try:
        return schema.api(key).name
    except KeyError:
        return f"api {key}"


# --------------------------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------------------------

class BrokerConnection:
    """One TCP connection to one broker; requests go one at a time (Kafka answers in order)."""

    def __init__(self, host: str, port: int, *, client_id: str = CLIENT_SOFTWARE_NAME,
                 timeout: float = 30.0, sock: socket.socket | None = None):
        self.host, self.port = host, port
        self.client_id = client_id
        self.timeout = timeout
        self._correlation = itertools.count(1)
        if sock is None:
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as e:
                raise ClientError(f"cannot connect to {host}:{port}: {e}") from None
        self.sock = sock
        self.broker_versions: dict[int, tuple[int, int]] = {}
        self.versions: dict[int, int] = {}
        try:
            self._api_versions()
        except BaseException:
            self.close()
            raise

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- version negotiation --

    def _api_versions(self) -> None:
        """KIP-511: ask at our newest; a broker that does not serve it answers at v0 with
        UNSUPPORTED_VERSION and its own ApiVersions range, and we ask once more within it."""
        Request = protocol.request_class(ApiKey.API_VERSIONS)
        request = Request(client_software_name=CLIENT_SOFTWARE_NAME,
                          client_software_version=CLIENT_SOFTWARE_VERSION)
        version = CLIENT_VERSIONS[ApiKey.API_VERSIONS][1]
        for _ in range(2):
            frame = self._round_trip(ApiKey.API_VERSIONS, version, request)
            (code,) = _INT16.unpack_from(frame, 4)
            if code == ErrorCode.UNSUPPORTED_VERSION:
                # The error answer is always a v0 body: error code and the broker's ranges.
                _, response = protocol.decode_response(ApiKey.API_VERSIONS, 0, frame)
                theirs = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
                common = negotiate({ApiKey.API_VERSIONS: CLIENT_VERSIONS[ApiKey.API_VERSIONS]},
                                   theirs)
                if ApiKey.API_VERSIONS not in common or common[ApiKey.API_VERSIONS] == version:
                    raise ClientError(f"{self.host}:{self.port}: no ApiVersions version in common")
                version = common[ApiKey.API_VERSIONS]
                continue
            _, response = protocol.decode_response(ApiKey.API_VERSIONS, version, frame)
            raise_for(response.error_code, what="ApiVersions")
            self.broker_versions = {k.api_key: (k.min_version, k.max_version)
                                    for k in response.api_keys}
            self.versions = negotiate(CLIENT_VERSIONS, self.broker_versions)
            return
        raise ClientError(f"{self.host}:{self.port}: ApiVersions negotiation failed")

    def version(self, api_key: int) -> int:
        """The version this connection uses for an API; ClientError when there is none."""
        v = self.versions.get(api_key)
        if v is None:
            if api_key not in self.broker_versions:
                raise ClientError(f"the broker at {self.host}:{self.port} does not support "
                                  f"{api_name(api_key)}")
            lo, hi = self.broker_versions[api_key]
            ours = CLIENT_VERSIONS.get(api_key)
            raise ClientError(f"no {api_name(api_key)} version in common with {self.host}:"
                              f"{self.port} (broker {lo}-{hi}, client "
                              f"{'none' if ours is None else f'{ours[0]}-{ours[1]}'})")
        return v

    # -- requests --

    def call(self, api_key: int, message, *, version: int | None = None,
             timeout: float | None = None, expect_response: bool = True):
        """Send one request and return the decoded response (None when none is due)."""
        if version is None:
            version = self.version(api_key)
        frame = self._round_trip(api_key, version, message, timeout=timeout,
                                 expect_response=expect_response)
        if frame is None:
            return None
        _, response = protocol.decode_response(api_key, version, frame)
        return response

    def _round_trip(self, api_key: int, version: int, message, *, timeout: float | None = None,
                    expect_response: bool = True):
        correlation_id = next(self._correlation)
        data = protocol.encode_request(api_key, version, correlation_id, self.client_id, message)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            self._settimeout(deadline)
            self.sock.sendall(data)
            if not expect_response:
                return None
            (size,) = _INT32.unpack(self._read_exactly(4, deadline))
            frame = self._read_exactly(size, deadline)
        except socket.timeout:
            self.close()
            raise ClientError(f"{api_name(api_key)} to {self}: timed out") from None
        except OSError as e:
            self.close()
            raise ClientError(f"{api_name(api_key)} to {self}: {e}") from None
        except BaseException:
            # Interrupted (Ctrl-C) between request and answer: the answer would come in front
            # of the next request's, so this connection is done.
            self.close()
            raise
        (got,) = _INT32.unpack_from(frame, 0)
        if got != correlation_id:
            self.close()
            raise ClientError(f"{self.host}:{self.port} answered correlation id {got}, "
                              f"expected {correlation_id}")
        return frame

    def _settimeout(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)

    def _read_exactly(self, n: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < n:
            self._settimeout(deadline)
            chunk = self.sock.recv(min(n - got, 1 << 20))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Cluster metadata
# --------------------------------------------------------------------------------------------

PartitionInfo = collections.namedtuple("PartitionInfo",
                                       "partition leader leader_epoch replicas isr offline error")


class TopicInfo:
    __slots__ = ("name", "topic_id", "is_internal", "error", "partitions")

    def __init__(self, name, topic_id, is_internal, error, partitions):
        self.name, self.topic_id, self.is_internal = name, topic_id, is_internal
        self.error = error
        self.partitions: dict[int, PartitionInfo] = partitions


ConsumerRecord = collections.namedtuple(
    "ConsumerRecord", "topic partition offset timestamp timestamp_type key value headers")


class FetchedPartition:
    """One partition of a Fetch answer: its error, watermarks, the records to hand out, and the
    offset to fetch next (past control batches and aborted data too)."""
    __slots__ = ("error", "high_watermark", "last_stable_offset", "log_start_offset", "records",
                 "next_offset")

    def __init__(self, error, high_watermark, last_stable_offset, log_start_offset, records,
                 next_offset):
        self.error = error
        self.high_watermark = high_watermark
        self.last_stable_offset = last_stable_offset
        self.log_start_offset = log_start_offset
        self.records = records
        self.next_offset = next_offset


def _records_of(topic: str, partition: int, data, fetch_offset: int, isolation_level: int,
                aborted) -> tuple[list[ConsumerRecord], int]:
    """The records of a fetched `records` field from `fetch_offset` on, and the next offset.

    A compressed batch is fetched whole, so records before `fetch_offset` are dropped. Control
    batches (transaction markers) are never records for the application. In read_committed the
    Fetch answer lists the aborted transactions that overlap the data, as (producer id, first
    offset); a transactional batch of a producer with an aborted transaction that started at or
    before the batch is dropped, until that producer's ABORT marker closes the transaction.
    """
    from trioka.log.records import ControlRecordType, TimestampType, iter_batches
    out: list[ConsumerRecord] = []
    next_offset = fetch_offset
    pending = sorted(((a.first_offset, a.producer_id) for a in (aborted or ())), reverse=True)
    aborting: set[int] = set()
    for batch in iter_batches(bytes(data or b"")):
        next_offset = max(next_offset, batch.next_offset)
        if isolation_level == READ_COMMITTED:
            while pending and pending[-1][0] <= batch.last_offset:
                aborting.add(pending.pop()[1])
        if batch.is_control_batch:
            if batch.control_type() == ControlRecordType.ABORT:
                aborting.discard(batch.producer_id)
            continue
        if (isolation_level == READ_COMMITTED and batch.is_transactional
                and batch.producer_id in aborting):
            continue
        ts_type = ("LogAppendTime" if batch.timestamp_type == TimestampType.LOG_APPEND_TIME
                   else "CreateTime")
        for r in batch.records:
            if r.offset < fetch_offset:
                continue
            out.append(ConsumerRecord(topic, partition, r.offset, r.timestamp, ts_type, r.key,
                                      r.value, list(r.headers)))
    return out, next_offset


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------

class KafkaClient:
    """Connections to the brokers of one cluster, what it knows of them, and Kafka's requests."""

    def __init__(self, bootstrap_servers: str = DEFAULT_BOOTSTRAP, *,
                 client_id: str = CLIENT_SOFTWARE_NAME, timeout: float = 30.0):
        self.bootstrap = parse_bootstrap(bootstrap_servers)
        self.client_id = client_id
        self.timeout = timeout
        self._connections: dict[tuple[str, int], BrokerConnection] = {}
        self.brokers: dict[int, tuple[str, int]] = {}
        self.controller_id = -1
        self.cluster_id: str | None = None
        self.topics: dict[str, TopicInfo] = {}
        self._coordinators: dict[tuple[int, str], tuple[str, int]] = {}

    def __enter__(self) -> "KafkaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    # -- connections --

    def connect(self, host: str, port: int) -> BrokerConnection:
        conn = self._connections.get((host, port))
        if conn is not None and conn.sock.fileno() >= 0:
            return conn
        conn = BrokerConnection(host, port, client_id=self.client_id, timeout=self.timeout)
        self._connections[(host, port)] = conn
        return conn

    def any_connection(self) -> BrokerConnection:
        """A live connection: one already open, else a bootstrap server, else a known broker."""
        for conn in self._connections.values():
            if conn.sock.fileno() >= 0:
                return conn
        errors = []
        for host, port in self.bootstrap + list(self.brokers.values()):
            try:
                return self.connect(host, port)
            except ClientError as e:
                errors.append(str(e))
        raise ClientError("no broker reachable: " + "; ".join(errors))

    def node(self, node_id: int) -> BrokerConnection:
        if node_id not in self.brokers:
            self.metadata(list(self.topics))
        if node_id not in self.brokers:
            raise ClientError(f"broker {node_id} is not in the cluster's metadata")
        return self.connect(*self.brokers[node_id])

    def controller(self) -> BrokerConnection:
        """Where admin requests go: the controller Metadata names, else any broker."""
        if self.controller_id < 0 and not self.brokers:
            self.metadata([])
        if self.controller_id in self.brokers:
            try:
                return self.node(self.controller_id)
            except ClientError:
                pass
        return self.any_connection()

    def _call_any(self, api_key: int, message, **kw):
        conn = self.any_connection()
        try:
            return conn.call(api_key, message, **kw)
        except ClientError:
            if conn.sock.fileno() >= 0:
                raise
            # The connection broke: one more try on another (or a new) connection.
            return self.any_connection().call(api_key, message, **kw)

    # -- metadata --

    def metadata(self, topics: list[str] | None = None, *,
                 allow_auto_topic_creation: bool = False) -> dict[str, TopicInfo]:
        """Ask for the brokers and the given topics (None: every topic); cache and return them."""
        Request = protocol.request_class(ApiKey.METADATA)
        request = Request(
            topics=None if topics is None else [Request.MetadataRequestTopic(name=t)
                                                for t in topics],
            allow_auto_topic_creation=allow_auto_topic_creation,
            include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False)
        response = self._call_any(ApiKey.METADATA, request)
        self.brokers = {b.node_id: (b.host, b.port) for b in response.brokers}
        self.controller_id = response.controller_id
        self.cluster_id = response.cluster_id
        out = {}
        for t in response.topics:
            parts = {p.partition_index: PartitionInfo(p.partition_index, p.leader_id,
                                                      p.leader_epoch, list(p.replica_nodes),
                                                      list(p.isr_nodes),
                                                      list(p.offline_replicas), p.error_code)
                     for p in t.partitions}
            info = TopicInfo(t.name, t.topic_id, t.is_internal, t.error_code, parts)
            out[t.name] = info
            if t.error_code == 0:
                self.topics[t.name] = info
            else:
                self.topics.pop(t.name, None)
        return out

    def topic(self, name: str, *, auto_create: bool = False,
              deadline: float | None = None) -> TopicInfo:
        """A topic with a leader for every partition, waiting (until the deadline) while the
        cluster elects them; KafkaError when the topic does not exist."""
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        while True:
            info = self.metadata([name], allow_auto_topic_creation=auto_create).get(name)
            code = info.error if info is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            ready = (code == 0 and info.partitions
                     and all(p.leader >= 0 for p in info.partitions.values()))
            if ready:
                return info
            retriable = code in (ErrorCode.LEADER_NOT_AVAILABLE, 0) or (
                auto_create and code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            if not retriable or time.monotonic() >= deadline:
                raise_for(code or ErrorCode.LEADER_NOT_AVAILABLE, what=f"topic {name!r}")
            time.sleep(_RETRY_BACKOFF)

    def leader(self, topic: str, partition: int) -> int:
        info = self.topics.get(topic)
        if info is None or partition not in info.partitions or (
                info.partitions[partition].leader < 0):
            info = self.topic(topic)   # waits while a leader is elected
        if partition not in info.partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"topic {topic!r} has no partition {partition}")
        return info.partitions[partition].leader

    def _by_leader(self, tps) -> dict[int, list]:
        out: dict[int, list] = {}
        for tp in tps:
            out.setdefault(self.leader(*tp), []).append(tp)
        return out

    # -- coordinators --

    def coordinator(self, key: str, key_type: int = GROUP_KEY, *,
                    refresh: bool = False) -> BrokerConnection:
        """The connection to the coordinator of a group (key type 0) or transactional id (1)."""
        cached = self._coordinators.get((key_type, key))
        if cached is not None and not refresh:
            return self.connect(*cached)
        Request = protocol.request_class(ApiKey.FIND_COORDINATOR)
        deadline = time.monotonic() + self.timeout
        while True:
            conn = self.any_connection()
            version = conn.version(ApiKey.FIND_COORDINATOR)
            response = conn.call(ApiKey.FIND_COORDINATOR,
                                 Request(key=key, key_type=key_type, coordinator_keys=[key]),
                                 version=version)
            if version >= 4:
                c = response.coordinators[0]
                code, message, host, port = c.error_code, c.error_message, c.host, c.port
            else:
                code, message = response.error_code, response.error_message
                host, port = response.host, response.port
            if code == 0:
                self._coordinators[(key_type, key)] = (host, port)
                return self.connect(host, port)
            if code not in _STALE_COORDINATOR or time.monotonic() >= deadline:
                raise_for(code, message, what=f"FindCoordinator {key!r}")
            time.sleep(_RETRY_BACKOFF)

    def coordinator_call(self, key: str, key_type: int, api_key: int, message, error_of,
                         *, timeout: float | None = None):
        """A request to a coordinator, asked again of a new coordinator while the answer's error
        (`error_of(response, version)`) says it moved or is loading."""
        deadline = time.monotonic() + self.timeout
        refresh = False
        while True:
            conn = self.coordinator(key, key_type, refresh=refresh)
            version = conn.version(api_key)
            response = conn.call(api_key, message, version=version, timeout=timeout)
            code = error_of(response, version)
            if code not in _STALE_COORDINATOR or time.monotonic() >= deadline:
                return response, version
            refresh = True
            time.sleep(_RETRY_BACKOFF)

    # -- producing --

    def produce(self, batches: dict[tuple[str, int], bytes], *, acks: int = -1,
                timeout_ms: int = 30000, transactional_id: str | None = None) -> dict:
        """Send one batch per partition to the partitions' leaders. (topic, partition) -> base
        offset (-1 with acks=0). KafkaError for the first partition that failed; partitions whose
        leader moved are sent again to the new one."""
        Request = protocol.request_class(ApiKey.PRODUCE)
        TopicData = Request.TopicProduceData
        PartitionData = TopicData.PartitionProduceData
        results: dict = {}
        todo = dict(batches)
        deadline = time.monotonic() + self.timeout
        while todo:
            retry: dict = {}
            for node, tps in self._by_leader(todo).items():
                by_topic: dict[str, list] = {}
                for topic, p in tps:
                    by_topic.setdefault(topic, []).append(
                        PartitionData(index=p, records=todo[(topic, p)]))
                request = Request(transactional_id=transactional_id, acks=acks,
                                  timeout_ms=timeout_ms,
                                  topic_data=[TopicData(name=t, partition_data=ps)
                                              for t, ps in by_topic.items()])
                response = self.node(node).call(ApiKey.PRODUCE, request,
                                                expect_response=acks != 0,
                                                timeout=self.timeout + timeout_ms / 1000)
                if response is None:
                    results.update({tp: -1 for tp in tps})
                    continue
                for t in response.responses:
                    for p in t.partition_responses:
                        tp = (t.name, p.index)
                        if p.error_code in _STALE_LEADER and time.monotonic() < deadline:
                            retry[tp] = todo[tp]
                            continue
                        raise_for(p.error_code, p.error_message,
                                  what=f"produce to {t.name}-{p.index}")
                        results[tp] = p.base_offset
            todo = retry
            if todo:
                time.sleep(_RETRY_BACKOFF)
                for topic in {t for t, _ in todo}:
                    self.topic(topic, deadline=deadline)
        return results

    # -- offsets and fetching --

    def list_offsets(self, specs: dict[tuple[str, int], int], *,
                     isolation_level: int = READ_UNCOMMITTED) -> dict:
        """(topic, partition) -> (offset, timestamp) for a timestamp each: EARLIEST_TIMESTAMP,
        LATEST_TIMESTAMP or milliseconds (the first offset at or after it; -1 when none)."""
        Request = protocol.request_class(ApiKey.LIST_OFFSETS)
        Topic = Request.ListOffsetsTopic
        Partition = Topic.ListOffsetsPartition
        out: dict = {}
        todo = dict(specs)
        deadline = time.monotonic() + self.timeout
        while todo:
            retry = {}
            for node, tps in self._by_leader(todo).items():
                by_topic: dict[str, list] = {}
                for topic, p in tps:
                    by_topic.setdefault(topic, []).append(
                        Partition(partition_index=p, timestamp=todo[(topic, p)]))
                request = Request(replica_id=-1, isolation_level=isolation_level,
                                  topics=[Topic(name=t, partitions=ps)
                                          for t, ps in by_topic.items()],
                                  timeout_ms=int(self.timeout * 1000))
                response = self.node(node).call(ApiKey.LIST_OFFSETS, request)
                for t in response.topics:
                    for p in t.partitions:
                        tp = (t.name, p.partition_index)
                        if (p.error_code in _STALE_LEADER | {ErrorCode.OFFSET_NOT_AVAILABLE}
                                and time.monotonic() < deadline):
                            retry[tp] = todo[tp]
                            continue
                        raise_for(p.error_code, what=f"ListOffsets {t.name}-{p.partition_index}")
                        out[tp] = (p.offset, p.timestamp)
            todo = retry
            if todo:
                time.sleep(_RETRY_BACKOFF)
                for topic in {t for t, _ in todo}:
                    self.topic(topic, deadline=deadline)
        return out

    def fetch(self, positions: dict[tuple[str, int], int], *, max_wait_ms: int = 500,
              isolation_level: int = READ_UNCOMMITTED, max_bytes: int = 50 << 20,
              partition_max_bytes: int = 1 << 20) -> dict[tuple[str, int], FetchedPartition]:
        """One full Fetch (no fetch session) per leader of the partitions, from the positions.
        With several leaders each is asked in turn, so their waits add up."""
        Request = protocol.request_class(ApiKey.FETCH)
        Topic = Request.FetchTopic
        Partition = Topic.FetchPartition
        out: dict = {}
        groups = self._by_leader(positions)
        wait = max_wait_ms if len(groups) == 1 else min(max_wait_ms, 100)
        for node, tps in groups.items():
            by_topic: dict[str, list] = {}
            for topic, p in tps:
                by_topic.setdefault(topic, []).append(Partition(
                    partition=p, fetch_offset=positions[(topic, p)],
                    partition_max_bytes=partition_max_bytes))
            request = Request(replica_id=-1, max_wait_ms=wait, min_bytes=1, max_bytes=max_bytes,
                              isolation_level=isolation_level, session_id=0, session_epoch=-1,
                              topics=[Topic(topic=t, partitions=ps) for t, ps in by_topic.items()],
                              forgotten_topics_data=[], rack_id="")
            response = self.node(node).call(ApiKey.FETCH, request,
                                            timeout=self.timeout + wait / 1000)
            raise_for(response.error_code, what="Fetch")
            for t in response.responses:
                for p in t.partitions:
                    tp = (t.topic, p.partition_index)
                    position = positions[tp]
                    records, next_offset = [], position
                    if p.error_code == 0:
                        records, next_offset = _records_of(t.topic, p.partition_index, p.records,
                                                           position, isolation_level,
                                                           p.aborted_transactions)
                    out[tp] = FetchedPartition(p.error_code, p.high_watermark,
                                               p.last_stable_offset, p.log_start_offset, records,
                                               next_offset)
                    if p.error_code in _STALE_LEADER:
                        self.topics.pop(t.topic, None)
        return out

    # -- committed offsets --

    def offset_fetch(self, group: str, tps: list[tuple[str, int]] | None = None) -> dict:
        """(topic, partition) -> committed offset (-1 when none) of a group; None asks for every
        partition it has committed."""
        Request = protocol.request_class(ApiKey.OFFSET_FETCH)
        by_topic: dict[str, list[int]] = {}
        for topic, p in tps or ():
            by_topic.setdefault(topic, []).append(p)
        V1Topic = Request.OffsetFetchRequestTopic
        V8Group = Request.OffsetFetchRequestGroup
        V8Topic = V8Group.OffsetFetchRequestTopics
        request = Request(
            group_id=group,
            topics=None if tps is None else [V1Topic(name=t, partition_indexes=ps)
                                             for t, ps in by_topic.items()],
            groups=[V8Group(group_id=group, topics=None if tps is None else [
                V8Topic(name=t, partition_indexes=ps) for t, ps in by_topic.items()])],
            require_stable=False)

        def error_of(response, version):
            if version >= 8:
                return response.groups[0].error_code if response.groups else 0
            return response.error_code if version >= 2 else 0

        if tps is None and self.coordinator(group).version(ApiKey.OFFSET_FETCH) < 2:
            raise ClientError("the broker's OffsetFetch cannot list every committed partition")
        response, version = self.coordinator_call(group, GROUP_KEY, ApiKey.OFFSET_FETCH, request,
                                                  error_of)
        raise_for(error_of(response, version), what=f"OffsetFetch {group!r}")
        topics = response.groups[0].topics if version >= 8 else response.topics
        out = {}
        for t in topics:
            for p in t.partitions:
                raise_for(p.error_code, what=f"OffsetFetch {t.name}-{p.partition_index}")
                out[(t.name, p.partition_index)] = p.committed_offset
        return out

    def offset_commit(self, group: str, offsets: dict[tuple[str, int], int], *,
                      generation_id: int = -1, member_id: str = "",
                      group_instance_id: str | None = None) -> None:
        """Commit offsets for a group; generation -1 and no member id is a commit from outside
        the group's management (admin tools, consumers using assign()), which Kafka accepts only
        while the group has no members."""
        Request = protocol.request_class(ApiKey.OFFSET_COMMIT)
        Topic = Request.OffsetCommitRequestTopic
        Partition = Topic.OffsetCommitRequestPartition
        by_topic: dict[str, list] = {}
        for (topic, p), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append(Partition(
                partition_index=p, committed_offset=offset, committed_metadata=""))
        request = Request(group_id=group, generation_id_or_member_epoch=generation_id,
                          member_id=member_id, group_instance_id=group_instance_id,
                          topics=[Topic(name=t, partitions=ps) for t, ps in by_topic.items()])

        def error_of(response, version):
            for t in response.topics:
                for p in t.partitions:
                    if p.error_code:
                        return p.error_code
            return 0

        response, _ = self.coordinator_call(group, GROUP_KEY, ApiKey.OFFSET_COMMIT, request,
                                            error_of)
        for t in response.topics:
            for p in t.partitions:
                raise_for(p.error_code, what=f"OffsetCommit {group!r} {t.name}-{p.partition_index}")

    # -- groups --

    def list_groups(self) -> list:
        """Every group of every broker (each coordinates its own): ListedGroup entries."""
        Request = protocol.request_class(ApiKey.LIST_GROUPS)
        self.metadata([])
        out = []
        for node in sorted(self.brokers):
            response = self.node(node).call(ApiKey.LIST_GROUPS,
                                            Request(states_filter=[], types_filter=[]))
            raise_for(response.error_code, what=f"ListGroups on broker {node}")
            out.extend(response.groups)
        return out

    def describe_group(self, group: str):
        """The DescribedGroup of a group (state "Dead" when it does not exist)."""
        Request = protocol.request_class(ApiKey.DESCRIBE_GROUPS)
        response, _ = self.coordinator_call(
            group, GROUP_KEY, ApiKey.DESCRIBE_GROUPS,
            Request(groups=[group], include_authorized_operations=False),
            lambda r, v: r.groups[0].error_code)
        described = response.groups[0]
        raise_for(described.error_code, what=f"DescribeGroups {group!r}")
        return described

    def describe_consumer_group(self, group: str):
        """The ConsumerGroupDescribe entry of a KIP-848 consumer group; None when the broker
        does not serve the API or the group is not a consumer group (a classic group is
        GROUP_ID_NOT_FOUND there and is described by DescribeGroups)."""
        Request = protocol.request_class(ApiKey.CONSUMER_GROUP_DESCRIBE)
        try:
            response, _ = self.coordinator_call(
                group, GROUP_KEY, ApiKey.CONSUMER_GROUP_DESCRIBE,
                Request(group_ids=[group], include_authorized_operations=False),
                lambda r, v: r.groups[0].error_code)
        except ClientError:
            return None
        described = response.groups[0]
        return None if described.error_code else described

    def delete_groups(self, groups: list[str]) -> dict[str, int]:
        """group -> error code of its deletion."""
        Request = protocol.request_class(ApiKey.DELETE_GROUPS)
        out = {}
        for group in groups:
            response, _ = self.coordinator_call(group, GROUP_KEY, ApiKey.DELETE_GROUPS,
                                                Request(groups_names=[group]),
                                                lambda r, v: r.results[0].error_code)
            out[group] = response.results[0].error_code
        return out

    # -- topics and configs --

    def create_topic(self, name: str, *, partitions: int = -1, replication_factor: int = -1,
                     configs: dict[str, str] | None = None, validate_only: bool = False):
        """Create a topic; KafkaError (e.g. TOPIC_ALREADY_EXISTS) when the broker refuses."""
        Request = protocol.request_class(ApiKey.CREATE_TOPICS)
        Topic = Request.CreatableTopic
        conn = self.controller()
        if conn.version(ApiKey.CREATE_TOPICS) < 4:
            # The broker's defaults (-1) came with v4 (KIP-464).
            partitions = 1 if partitions < 0 else partitions
            replication_factor = 1 if replication_factor < 0 else replication_factor
        request = Request(topics=[Topic(
            name=name, num_partitions=partitions, replication_factor=replication_factor,
            assignments=[], configs=[Topic.CreatableTopicConfig(name=k, value=v)
                                     for k, v in (configs or {}).items()])],
            timeout_ms=int(self.timeout * 1000), validate_only=validate_only)
        response = conn.call(ApiKey.CREATE_TOPICS, request)
        result = response.topics[0]
        raise_for(result.error_code, result.error_message, what=f"create topic {name!r}")
        return result

    def delete_topic(self, name: str) -> None:
        Request = protocol.request_class(ApiKey.DELETE_TOPICS)
        request = Request(topics=[Request.DeleteTopicState(name=name)], topic_names=[name],
                          timeout_ms=int(self.timeout * 1000))
        response = self.controller().call(ApiKey.DELETE_TOPICS, request)
        result = response.responses[0]
        raise_for(result.error_code, result.error_message, what=f"delete topic {name!r}")
        self.topics.pop(name, None)

    def describe_configs(self, resource_type: int, name: str) -> list:
        """The DescribeConfigsResourceResult entries of one topic or broker."""
        Request = protocol.request_class(ApiKey.DESCRIBE_CONFIGS)
        request = Request(resources=[Request.DescribeConfigsResource(
            resource_type=resource_type, resource_name=name, configuration_keys=None)],
            include_synonyms=False, include_documentation=False)
        conn = self.node(int(name)) if resource_type == BROKER_RESOURCE else self.any_connection()
        response = conn.call(ApiKey.DESCRIBE_CONFIGS, request)
        result = response.results[0]
        raise_for(result.error_code, result.error_message, what=f"describe configs of {name!r}")
        return result.configs

    def incremental_alter_configs(self, resource_type: int, name: str,
                                  ops: list[tuple[str, int, str | None]]) -> None:
        """Apply (config name, operation, value) changes to one topic or broker."""
        Request = protocol.request_class(ApiKey.INCREMENTAL_ALTER_CONFIGS)
        Resource = Request.AlterConfigsResource
        request = Request(resources=[Resource(
            resource_type=resource_type, resource_name=name,
            configs=[Resource.AlterableConfig(name=k, config_operation=op, value=v)
                     for k, op, v in ops])], validate_only=False)
        conn = self.node(int(name)) if resource_type == BROKER_RESOURCE else self.controller()
        response = conn.call(ApiKey.INCREMENTAL_ALTER_CONFIGS, request)
        result = response.responses[0]
        raise_for(result.error_code, result.error_message, what=f"alter configs of {name!r}")

    # -- transactions --

    def list_transactions(self) -> list[tuple[int, object]]:
        """(coordinator node id, TransactionState entry) from every broker."""
        Request = protocol.request_class(ApiKey.LIST_TRANSACTIONS)
        self.metadata([])
        out = []
        for node in sorted(self.brokers):
            response = self.node(node).call(ApiKey.LIST_TRANSACTIONS, Request(
                state_filters=[], producer_id_filters=[], duration_filter=-1))
            raise_for(response.error_code, what=f"ListTransactions on broker {node}")
            out.extend((node, s) for s in response.transaction_states)
        return out

    def describe_transaction(self, transactional_id: str):
        """(coordinator node id, TransactionState entry) of one transactional id."""
        Request = protocol.request_class(ApiKey.DESCRIBE_TRANSACTIONS)
        response, _ = self.coordinator_call(
            transactional_id, TRANSACTION_KEY, ApiKey.DESCRIBE_TRANSACTIONS,
            Request(transactional_ids=[transactional_id]),
            lambda r, v: r.transaction_states[0].error_code)
        state = response.transaction_states[0]
        raise_for(state.error_code, what=f"DescribeTransactions {transactional_id!r}")
        host, port = self._coordinators[(TRANSACTION_KEY, transactional_id)]
        node = next((n for n, addr in self.brokers.items() if addr == (host, port)), -1)
        if node < 0:
            self.metadata([])
            node = next((n for n, addr in self.brokers.items() if addr == (host, port)), -1)
        return node, state


# --------------------------------------------------------------------------------------------
# Partitioning
# --------------------------------------------------------------------------------------------

def murmur2(data: bytes) -> int:
    """MurmurHash2 (32-bit, seed 0x9747b28c) as Kafka's default partitioner computes it over a
    record key, returned as a signed int32 like Java's."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's Java producer picks for a keyed record: the positive part of the
    key's murmur2 hash modulo the partition count."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


# --------------------------------------------------------------------------------------------
# Consumer groups: the consumer protocol and the range assignor
# --------------------------------------------------------------------------------------------

CONSUMER_PROTOCOL_TYPE = "consumer"
RANGE_ASSIGNOR = "range"


def encode_subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0: the topics a member wants."""
    cls = schema.record("ConsumerProtocolSubscription").cls
    return schema.encode_record("ConsumerProtocolSubscription",
                                cls(topics=list(topics), user_data=None), 0)


def decode_subscription(data) -> list[str]:
    _, sub = schema.decode_record("ConsumerProtocolSubscription", bytes(data))
    return list(sub.topics)


def encode_assignment(partitions: list[tuple[str, int]]) -> bytes:
    """ConsumerProtocolAssignment v0: the partitions given to a member."""
    cls = schema.record("ConsumerProtocolAssignment").cls
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        by_topic.setdefault(topic, []).append(p)
    return schema.encode_record("ConsumerProtocolAssignment", cls(
        assigned_partitions=[cls.TopicPartition(topic=t, partitions=ps)
                             for t, ps in by_topic.items()], user_data=None), 0)


def decode_assignment(data) -> list[tuple[str, int]]:
    """The (topic, partition) pairs of a ConsumerProtocolAssignment (v0-3: int16 version, then
    [topic, [partition]], then user data); empty bytes (a member between rebalances) is none."""
    if not data:
        return []
    _, assignment = schema.decode_record("ConsumerProtocolAssignment", bytes(data))
    return [(tp.topic, p) for tp in assignment.assigned_partitions for p in tp.partitions]


def range_assign(subscriptions: dict[str, list[str]],
                 partition_counts: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Kafka's "range" assignor: for each topic, its members in member-id order get consecutive
    runs of partitions, the first (count % members) of them one more than the rest."""
    out: dict[str, list[tuple[str, int]]] = {m: [] for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for topic in topics:
        count = partition_counts.get(topic, 0)
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if not members or count <= 0:
            continue
        each, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            n = each + (1 if i < extra else 0)
            out[member].extend((topic, p) for p in range(start, start + n))
            start += n
    return out


class RebalanceNeeded(Exception):
    """The group is rebalancing (or forgot us): join again."""


class GroupMember:
    """This process as a member of a classic consumer group using the "range" assignor.

    `join()` runs JoinGroup (again with the member id the coordinator hands out, KIP-394) and
    SyncGroup; when elected leader it assigns every member's subscription. `heartbeat_if_due()`
    between fetches keeps the membership; it raises RebalanceNeeded when the group rebalances,
    and the caller commits what it has and joins again. `leave()` on the way out.
    """

    def __init__(self, client: KafkaClient, group: str, topics: list[str], *,
                 session_timeout_ms: int = 10000, rebalance_timeout_ms: int = 30000,
                 heartbeat_interval_ms: int = 3000, group_instance_id: str | None = None):
        self.client = client
        self.group = group
        self.topics = list(topics)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = heartbeat_interval_ms / 1000
        self.group_instance_id = group_instance_id
        self.member_id = ""
        self.generation_id = -1
        self.protocol_name: str | None = None
        self.assignment: list[tuple[str, int]] = []
        self._next_heartbeat = 0.0

    def _call(self, api_key: int, message, *, timeout: float | None = None):
        response, version = self.client.coordinator_call(
            self.group, GROUP_KEY, api_key, message, lambda r, v: r.error_code, timeout=timeout)
        return response, version

    def join(self) -> list[tuple[str, int]]:
        """Join (or rejoin) the group; the partitions assigned to this member."""
        deadline = time.monotonic() + self.rebalance_timeout_ms / 1000 + self.client.timeout
        while True:
            if time.monotonic() >= deadline:
                raise ClientError(f"could not join group {self.group!r} in time")
            try:
                return self._join_once()
            except RebalanceNeeded:
                continue

    def _join_once(self) -> list[tuple[str, int]]:
        Join = protocol.request_class(ApiKey.JOIN_GROUP)
        request = Join(group_id=self.group, session_timeout_ms=self.session_timeout_ms,
                       rebalance_timeout_ms=self.rebalance_timeout_ms, member_id=self.member_id,
                       group_instance_id=self.group_instance_id,
                       protocol_type=CONSUMER_PROTOCOL_TYPE,
                       protocols=[Join.JoinGroupRequestProtocol(
                           name=RANGE_ASSIGNOR, metadata=encode_subscription(self.topics))],
                       reason=None)
        wait = self.rebalance_timeout_ms / 1000 + self.client.timeout
        response, _ = self._call(ApiKey.JOIN_GROUP, request, timeout=wait)
        code = response.error_code
        if code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = response.member_id
            raise RebalanceNeeded()
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
            self.member_id, self.generation_id = "", -1
            raise RebalanceNeeded()
        if code == ErrorCode.REBALANCE_IN_PROGRESS:
            raise RebalanceNeeded()
        raise_for(code, what=f"JoinGroup {self.group!r}")
        self.member_id = response.member_id
        self.generation_id = response.generation_id
        self.protocol_name = response.protocol_name or RANGE_ASSIGNOR
        assignments = []
        if response.leader == self.member_id and not response.skip_assignment:
            assignments = self._assign(response.members)
        Sync = protocol.request_class(ApiKey.SYNC_GROUP)
        sync = Sync(group_id=self.group, generation_id=self.generation_id,
                    member_id=self.member_id, group_instance_id=self.group_instance_id,
                    protocol_type=CONSUMER_PROTOCOL_TYPE, protocol_name=self.protocol_name,
                    assignments=[Sync.SyncGroupRequestAssignment(member_id=m, assignment=a)
                                 for m, a in assignments])
        response, _ = self._call(ApiKey.SYNC_GROUP, sync, timeout=wait)
        code = response.error_code
        if code in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            raise RebalanceNeeded()
        if code == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id, self.generation_id = "", -1
            raise RebalanceNeeded()
        raise_for(code, what=f"SyncGroup {self.group!r}")
        self.assignment = sorted(decode_assignment(response.assignment))
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        return self.assignment

    def _assign(self, members) -> list[tuple[str, bytes]]:
        subscriptions = {m.member_id: decode_subscription(m.metadata) for m in members}
        topics = sorted({t for ts in subscriptions.values() for t in ts})
        infos = self.client.metadata(topics)
        counts = {t: len(i.partitions) for t, i in infos.items() if i.error == 0}
        plan = range_assign(subscriptions, counts)
        return [(m, encode_assignment(tps)) for m, tps in plan.items()]

    def heartbeat_if_due(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        Request = protocol.request_class(ApiKey.HEARTBEAT)
        response, _ = self._call(ApiKey.HEARTBEAT, Request(
            group_id=self.group, generation_id=self.generation_id, member_id=self.member_id,
            group_instance_id=self.group_instance_id))
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        code = response.error_code
        if code in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            raise RebalanceNeeded()
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
            self.member_id, self.generation_id = "", -1
            raise RebalanceNeeded()
        raise_for(code, what=f"Heartbeat {self.group!r}")

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit as this member of the current generation."""
        if offsets:
            self.client.offset_commit(self.group, offsets, generation_id=self.generation_id,
                                      member_id=self.member_id,
                                      group_instance_id=self.group_instance_id)

    def leave(self) -> None:
        if not self.member_id or self.group_instance_id is not None:
            return   # a static member keeps its place until its session times out
        Request = protocol.request_class(ApiKey.LEAVE_GROUP)
        request = Request(group_id=self.group, member_id=self.member_id,
                          members=[Request.MemberIdentity(member_id=self.member_id,
                                                          reason="the consumer is closing")])
        try:
            self._call(ApiKey.LEAVE_GROUP, request)
        except (ClientError, KafkaError):
            pass
        self.member_id, self.generation_id = "", -1
