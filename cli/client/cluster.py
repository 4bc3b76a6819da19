"""The tools' cluster client: connections to the brokers of one cluster, what it knows of them,
and Kafka's requests, each sent where Kafka says it goes.

- Bootstrap: connect to the first reachable `host:port` of the bootstrap list, ask Metadata for the
  brokers (node id -> advertised address), the controller and the topics' partition leaders.
- Routing: partition requests (Produce, Fetch, ListOffsets) go to the partition's leader; group
  requests to the group's coordinator and transaction requests to the transactional id's (both
  found with FindCoordinator); admin requests to the controller Metadata names, else any broker.
  "Not the leader / not the coordinator" answers refresh what we know and retry until a deadline.
- Produce: the caller's record batches v2 (built with `trioka.log.records.encode_batch` in any
  codec), one per partition. Fetch: batches decoded with `iter_batches`; control batches are never
  handed out, and in read_committed the records of aborted transactions are dropped using the
  aborted-transaction list of the Fetch response (`consumer_records`).

Each connection is a `BrokerConnection` (connection.py), which negotiates the versions.
"""

import collections
import time

from trioka.cli.client.connection import (CLIENT_SOFTWARE_NAME, DEFAULT_BOOTSTRAP, BrokerConnection,
                                          ClientError, parse_bootstrap, raise_for)
from trioka.cli.client.security import ClientSecurity
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

# ListOffsets' special timestamps.
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1

# FindCoordinator key types.
GROUP_KEY, TRANSACTION_KEY = 0, 1

# Fetch isolation levels.
READ_UNCOMMITTED, READ_COMMITTED = 0, 1

# DescribeConfigs / IncrementalAlterConfigs resource types and operations.
TOPIC_RESOURCE, BROKER_RESOURCE, GROUP_RESOURCE = 2, 4, 32
SET_CONFIG, DELETE_CONFIG = 0, 1

# Answers meaning "ask again after refreshing who leads / coordinates".
_STALE_LEADER = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.LEADER_NOT_AVAILABLE,
                 ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.FENCED_LEADER_EPOCH,
                 ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.REPLICA_NOT_AVAILABLE}
_STALE_COORDINATOR = {ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
                      ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}

_RETRY_BACKOFF = 0.1


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


# --------------------------------------------------------------------------------------------
# Fetched records
# --------------------------------------------------------------------------------------------

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


def consumer_records(topic: str, partition: int, data, fetch_offset: int, isolation_level: int,
                     aborted_transactions) -> tuple[list[ConsumerRecord], int]:
    """What a consumer hands out of one partition of a Fetch answer: the records of its `records`
    field from `fetch_offset` on, and the offset to fetch next.

    A compressed batch is fetched whole, so records before `fetch_offset` are dropped. Control
    batches (transaction markers) are never records for the application. In read_committed the
    Fetch answer lists the aborted transactions that overlap the data, as (producer id, first
    offset); a transactional batch of a producer with an aborted transaction that started at or
    before the batch is dropped, until that producer's ABORT marker closes the transaction.
    """
    from trioka.log.records import ControlRecordType, TimestampType, iter_batches
    out: list[ConsumerRecord] = []
    next_offset = fetch_offset
    pending = sorted(((a.first_offset, a.producer_id) for a in (aborted_transactions or ())),
                     reverse=True)
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
                 client_id: str = CLIENT_SOFTWARE_NAME, timeout: float = 30.0,
                 security: ClientSecurity | None = None):
        self.bootstrap = parse_bootstrap(bootstrap_servers)
        self.client_id = client_id
        self.timeout = timeout
        self.security = security      # TLS and SASL for every connection (security.py)
        self._connections: dict[tuple[str, int], BrokerConnection] = {}
        self.brokers: dict[int, tuple[str, int]] = {}
        self.racks: dict[int, str | None] = {}
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
        conn = BrokerConnection(host, port, client_id=self.client_id, timeout=self.timeout,
                                security=self.security)
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
        self.racks = {b.node_id: b.rack for b in response.brokers}
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

    def _to_leaders(self, action: str, todo: dict, send, *,
                    retriable=frozenset(_STALE_LEADER)) -> dict:
        """Send each partition's value in `todo` ((topic, partition) -> value) to that
        partition's leader: `send(node, {tp: value})` returns (tp, error code, message, result)
        for each partition it answered. A partition whose answer is `retriable` (its leader
        moved) is sent again, to the new leader, until the client's timeout; any other error
        raises, named by `action` ("produce to", "ListOffsets"). (topic, partition) -> result."""
        results: dict = {}
        deadline = time.monotonic() + self.timeout
        while todo:
            retry: dict = {}
            for node, tps in self._by_leader(todo).items():
                for tp, code, message, result in send(node, {tp: todo[tp] for tp in tps}):
                    if code in retriable and time.monotonic() < deadline:
                        retry[tp] = todo[tp]
                        continue
                    raise_for(code, message, what=f"{action} {tp[0]}-{tp[1]}")
                    results[tp] = result
            todo = retry
            if todo:
                time.sleep(_RETRY_BACKOFF)
                for topic in {t for t, _ in todo}:
                    self.topic(topic, deadline=deadline)
        return results

    @staticmethod
    def _by_topic(values: dict, make) -> dict[str, list]:
        """topic -> [make(partition, value), ...] for (topic, partition) -> value."""
        out: dict[str, list] = {}
        for (topic, p), value in values.items():
            out.setdefault(topic, []).append(make(p, value))
        return out

    # -- producing --

    def produce(self, batches: dict[tuple[str, int], bytes], *, acks: int = -1,
                timeout_ms: int = 30000, transactional_id: str | None = None) -> dict:
        """Send one batch per partition to the partitions' leaders. (topic, partition) -> base
        offset (-1 with acks=0). KafkaError for the first partition that failed; partitions whose
        leader moved are sent again to the new one."""
        Request = protocol.request_class(ApiKey.PRODUCE)
        TopicData = Request.TopicProduceData
        PartitionData = TopicData.PartitionProduceData

        def send(node: int, batch: dict):
            by_topic = self._by_topic(batch, lambda p, records: PartitionData(index=p,
                                                                              records=records))
            request = Request(transactional_id=transactional_id, acks=acks,
                              timeout_ms=timeout_ms,
                              topic_data=[TopicData(name=t, partition_data=ps)
                                          for t, ps in by_topic.items()])
            response = self.node(node).call(ApiKey.PRODUCE, request,
                                            expect_response=acks != 0,
                                            timeout=self.timeout + timeout_ms / 1000)
            if response is None:
                return [(tp, 0, None, -1) for tp in batch]
            return [((t.name, p.index), p.error_code, p.error_message, p.base_offset)
                    for t in response.responses for p in t.partition_responses]

        return self._to_leaders("produce to", dict(batches), send)

    # -- offsets and fetching --

    def list_offsets(self, specs: dict[tuple[str, int], int], *,
                     isolation_level: int = READ_UNCOMMITTED) -> dict:
        """(topic, partition) -> (offset, timestamp) for a timestamp each: EARLIEST_TIMESTAMP,
        LATEST_TIMESTAMP or milliseconds (the first offset at or after it; -1 when none)."""
        Request = protocol.request_class(ApiKey.LIST_OFFSETS)
        Topic = Request.ListOffsetsTopic
        Partition = Topic.ListOffsetsPartition

        def send(node: int, timestamps: dict):
            by_topic = self._by_topic(timestamps, lambda p, timestamp: Partition(
                partition_index=p, timestamp=timestamp))
            request = Request(replica_id=-1, isolation_level=isolation_level,
                              topics=[Topic(name=t, partitions=ps) for t, ps in by_topic.items()],
                              timeout_ms=int(self.timeout * 1000))
            response = self.node(node).call(ApiKey.LIST_OFFSETS, request)
            return [((t.name, p.partition_index), p.error_code, None, (p.offset, p.timestamp))
                    for t in response.topics for p in t.partitions]

        # OFFSET_NOT_AVAILABLE: a new leader not caught up yet (KIP-207); ask again.
        return self._to_leaders("ListOffsets", dict(specs), send, retriable=frozenset(
            _STALE_LEADER | {ErrorCode.OFFSET_NOT_AVAILABLE}))

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
                        records, next_offset = consumer_records(
                            t.topic, p.partition_index, p.records, position, isolation_level,
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

    def create_partitions(self, name: str, count: int, *, validate_only: bool = False) -> None:
        """Raise a topic's partition count to `count` (CreatePartitions, on the controller); the
        broker places the new partitions' replicas. Kafka never lowers a count: asking for fewer
        is INVALID_PARTITIONS."""
        Request = protocol.request_class(ApiKey.CREATE_PARTITIONS)
        request = Request(topics=[Request.CreatePartitionsTopic(name=name, count=count,
                                                                assignments=None)],
                          timeout_ms=int(self.timeout * 1000), validate_only=validate_only)
        response = self.controller().call(ApiKey.CREATE_PARTITIONS, request)
        result = response.results[0]
        raise_for(result.error_code, result.error_message,
                  what=f"create partitions of {name!r}")
        self.topics.pop(name, None)

    def delete_records(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """DeleteRecords, to each partition's leader: move the log start offset up to the given
        offset (-1: the high watermark). (topic, partition) -> the new low watermark."""
        Request = protocol.request_class(ApiKey.DELETE_RECORDS)
        Topic = Request.DeleteRecordsTopic
        Partition = Topic.DeleteRecordsPartition

        def send(node: int, todo: dict):
            by_topic = self._by_topic(todo, lambda p, offset: Partition(partition_index=p,
                                                                        offset=offset))
            request = Request(topics=[Topic(name=t, partitions=ps) for t, ps in by_topic.items()],
                              timeout_ms=int(self.timeout * 1000))
            response = self.node(node).call(ApiKey.DELETE_RECORDS, request)
            return [((t.name, p.partition_index), p.error_code, None, p.low_watermark)
                    for t in response.topics for p in t.partitions]

        return self._to_leaders("DeleteRecords", dict(offsets), send)

    def describe_cluster(self):
        """The DescribeCluster answer (KIP-700: cluster id, controller, brokers with racks), or
        None from a broker without the API, whose caller falls back to Metadata."""
        conn = self.any_connection()
        if ApiKey.DESCRIBE_CLUSTER not in conn.versions:
            return None
        Request = protocol.request_class(ApiKey.DESCRIBE_CLUSTER)
        response = conn.call(ApiKey.DESCRIBE_CLUSTER, Request(
            include_cluster_authorized_operations=False, endpoint_type=1,
            include_fenced_brokers=True))
        raise_for(response.error_code, response.error_message, what="DescribeCluster")
        return response

    def describe_configs(self, resource_type: int, name: str, *,
                         include_synonyms: bool = False) -> list:
        """The DescribeConfigsResourceResult entries of one topic, broker or group."""
        Request = protocol.request_class(ApiKey.DESCRIBE_CONFIGS)
        request = Request(resources=[Request.DescribeConfigsResource(
            resource_type=resource_type, resource_name=name, configuration_keys=None)],
            include_synonyms=include_synonyms, include_documentation=False)
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


    def describe_producers(self, tps: list[tuple[str, int]], *,
                           broker_id: int | None = None) -> dict:
        """DescribeProducers: (topic, partition) -> the ProducerState entries of the partition's
        active producers, asked of its leader (or of replica `broker_id`, as Kafka's
        DescribeProducersOptions.brokerId does)."""
        Request = protocol.request_class(ApiKey.DESCRIBE_PRODUCERS)

        def request_for(todo) -> object:
            by_topic = self._by_topic({tp: None for tp in todo}, lambda p, _: p)
            return Request(topics=[Request.TopicRequest(name=t, partition_indexes=ps)
                                   for t, ps in by_topic.items()])

        def answers(response):
            return [((t.name, p.partition_index), p.error_code, p.error_message,
                     list(p.active_producers)) for t in response.topics for p in t.partitions]

        if broker_id is not None:
            out = {}
            response = self.node(broker_id).call(ApiKey.DESCRIBE_PRODUCERS, request_for(tps))
            for tp, code, message, producers in answers(response):
                raise_for(code, message, what=f"DescribeProducers {tp[0]}-{tp[1]}")
                out[tp] = producers
            return out

        def send(node: int, todo: dict):
            return answers(self.node(node).call(ApiKey.DESCRIBE_PRODUCERS, request_for(todo)))

        return self._to_leaders("DescribeProducers", {tp: None for tp in tps}, send)

    def list_transactions_of(self, producer_ids: list[int]) -> list[tuple[int, object]]:
        """ListTransactions filtered by producer id, on every broker: (node, TransactionState)."""
        Request = protocol.request_class(ApiKey.LIST_TRANSACTIONS)
        self.metadata([])
        out = []
        for node in sorted(self.brokers):
            response = self.node(node).call(ApiKey.LIST_TRANSACTIONS, Request(
                state_filters=[], producer_id_filters=list(producer_ids), duration_filter=-1))
            raise_for(response.error_code, what=f"ListTransactions on broker {node}")
            out.extend((node, s) for s in response.transaction_states)
        return out

    def abort_transaction(self, topic: str, partition: int, producer_id: int,
                          producer_epoch: int, coordinator_epoch: int) -> None:
        """Kafka's Admin.abortTransaction: WriteTxnMarkers with an ABORT marker for one producer,
        sent to the partition's leader as a transaction coordinator would send it."""
        Request = protocol.request_class(ApiKey.WRITE_TXN_MARKERS)
        Marker = Request.WritableTxnMarker
        request = Request(markers=[Marker(
            producer_id=producer_id, producer_epoch=producer_epoch, transaction_result=False,
            topics=[Marker.WritableTxnMarkerTopic(name=topic, partition_indexes=[partition])],
            coordinator_epoch=coordinator_epoch)])

        def send(node: int, todo: dict):
            response = self.node(node).call(ApiKey.WRITE_TXN_MARKERS, request)
            return [((t.name, p.partition_index), p.error_code, None, None)
                    for m in response.markers for t in m.topics for p in t.partitions]

        self._to_leaders("WriteTxnMarkers", {(topic, partition): None}, send)

    def offset_delete(self, group: str, tps: list[tuple[str, int]]) -> dict:
        """OffsetDelete (KIP-496): remove a group's committed offsets of these partitions, which
        Kafka allows only for partitions the group is not subscribed to. The group-level error
        raises; (topic, partition) -> error code of each partition."""
        Request = protocol.request_class(ApiKey.OFFSET_DELETE)
        Topic = Request.OffsetDeleteRequestTopic
        by_topic = self._by_topic({tp: None for tp in tps},
                                  lambda p, _: Topic.OffsetDeleteRequestPartition(
                                      partition_index=p))
        request = Request(group_id=group, topics=[Topic(name=t, partitions=ps)
                                                  for t, ps in by_topic.items()])
        response, _ = self.coordinator_call(group, GROUP_KEY, ApiKey.OFFSET_DELETE, request,
                                            lambda r, v: r.error_code)
        raise_for(response.error_code, what=f"OffsetDelete {group!r}")
        return {(t.name, p.partition_index): p.error_code
                for t in response.topics for p in t.partitions}

    def coordinator_node(self, key: str, key_type: int = GROUP_KEY) -> tuple[int, str, int]:
        """(node id, host, port) of a group's or transactional id's coordinator (-1 when the
        address is not among the brokers Metadata lists)."""
        self.coordinator(key, key_type)
        host, port = self._coordinators[(key_type, key)]
        if (host, port) not in self.brokers.values():
            self.metadata([])
        node = next((n for n, addr in self.brokers.items() if addr == (host, port)), -1)
        return node, host, port
