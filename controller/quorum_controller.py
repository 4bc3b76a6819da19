"""The running KRaft controller: a quorum of one voter that keeps `__cluster_metadata` and answers
the controller RPCs (Kafka's QuorumController with its KafkaRaftClient, for one voter).

The metadata log is an ordinary partition log, `__cluster_metadata-0` under `metadata.log.dir`
(default: the node's log dir), of record batches v2 whose records are metadata records
(metadata/batches.py). Kafka's Raft client keeps its election state in `quorum-state`, a small
JSON file in that partition directory; a voter alone in its quorum elects itself at every start,
so its epoch is the previous one + 1, stamped as the partition leader epoch of every batch it
writes in that epoch.

Operations, as in Kafka:

- `open()` recovers the log (CRC-checked, a torn tail cut), bumps the epoch, replays every record
  into a fresh MetadataImage and the managers (cluster_control.py, replication_control.py), and
  takes everything recovered as committed. A fresh log starts with Kafka's bootstrap records: the
  FeatureLevelRecord of metadata.version.
- `write(records)` appends one batch and replays it at once (Kafka's controller applies its
  records to its in-memory state when it writes them); the high watermark moves once the batch is
  fsynced, which `wait_committed` drives from a worker thread (group commit: writes made while a
  flush runs share the next one). An RPC answers only once its records are committed, so a
  broker never acts on a decision a controller crash could forget.
- The RPCs: BrokerRegistration, BrokerHeartbeat, AlterPartition, CreateTopics, DeleteTopics,
  CreatePartitions, ElectLeaders, IncrementalAlterConfigs, AlterConfigs,
  AlterPartitionReassignments, ListPartitionReassignments, DescribeCluster (of the
  controllers), each `async def` taking the decoded request and the version and returning the
  response message; the rules (codes and messages) are the managers' (configs:
  configuration_control.py).
- `fetch_metadata`: what the leader of the metadata partition answers to a Raft Fetch
  (KafkaRaftClient.handleFetchRequest): the batches from the fetch offset up to the high
  watermark, the high watermark, the log start offset, the leader and epoch, a diverging epoch
  when the fetcher's last fetched epoch does not match the log, long polling up to max_wait_ms
  while nothing new is committed. Brokers are observers: their fetch offsets move nothing here.
- `run()`: the timers of Kafka's controller: fence a broker whose session expired
  (`broker.session.timeout.ms`), elect unclean leaders for leaderless partitions of topics that
  allow it, and the preferred-leader rebalance (`auto.leader.rebalance.enable`, every
  `leader.imbalance.check.interval.seconds`).

Session state (heartbeats) is soft state in cluster_control.py, as in Kafka: a restart gives every
registered broker a fresh session. Not written: Raft control records (LeaderChange, KRaft
voters; a voter alone has no one to tell), snapshots (the log is replayed whole at start),
metadata transactions (KIP-868).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging

import trio

from trioka.clock import Clock
from trioka.config import Config, topic_defaults
from trioka.controller.cluster_control import ClusterControlManager
from trioka.controller.configuration_control import ConfigurationControlManager
from trioka.controller.replication_control import ElectionType, ReplicationControlManager
from trioka.log.batch import AppendOrigin
from trioka.log.checkpoint import random_uuid
from trioka.log.config import LogConfig
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.manager import METADATA_PARTITION_DIR
from trioka.log.partition import PartitionLog
from trioka.metadata import records as r
from trioka.metadata.batches import (METADATA_PARTITION, METADATA_TOPIC, batch_epochs,
                                     decode_batches, encode_batch)
from trioka.metadata.image import MetadataImage
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class
from trioka.wire.types import ZERO_UUID

log = logging.getLogger("trioka.controller")

QUORUM_STATE_FILE = "quorum-state"          # Kafka's FileQuorumStateStore
QUORUM_STATE_DATA_VERSION = 0

# Kafka's QuorumController: the most records one user operation may make; past it the request
# fails with POLICY_VIOLATION (a BoundedListTooLongException).
MAX_RECORDS_PER_USER_OP = 10_000
EXCESSIVE_BATCH_MESSAGE = "Unable to perform excessively large batch operation."

# How often leaderless partitions are looked at for an unclean election when their topic allows
# one (Kafka's controller checks every 5 minutes, besides each time a broker is fenced).
UNCLEAN_LEADER_ELECTION_CHECK_INTERVAL_S = 300.0

# The timers look for a stale broker this long after its session expires: at the expiry instant
# itself the session is still alive.
SESSION_EXPIRY_GRACE_S = 0.001

# A Raft Fetch reads at most this much beyond what it asks when the broker sends a 0 limit.
DEFAULT_FETCH_MAX_BYTES = 8 * 1024 * 1024

# DescribeCluster's endpoint types (Kafka's EndpointType).
ENDPOINT_TYPE_BROKER = 1
ENDPOINT_TYPE_CONTROLLER = 2
ENDPOINT_TYPES = {ENDPOINT_TYPE_BROKER: "BROKER", ENDPOINT_TYPE_CONTROLLER: "CONTROLLER"}

# DescribeConfigs' config sources, as CreateTopics v5+ reports each config of a new topic.
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5


@dataclasses.dataclass
class MetadataFetch:
    """What the metadata partition's leader answers to one Raft Fetch (a partition of a
    FetchResponse; error_code NONE or the partition's error)."""
    error_code: int
    records: bytes
    high_watermark: int
    log_start_offset: int
    leader_id: int
    leader_epoch: int
    diverging_epoch: tuple[int, int] | None = None   # (epoch, end offset)


class QuorumController:
    """The controller of one node (`process.roles` holding `controller`)."""

    def __init__(self, config: Config, clock: Clock, directory: str | None, *,
                 cluster_id: str | None = None, new_topic_id=random_uuid, placer=None,
                 flush_partition=None):
        self.config = config
        # How the metadata log is made durable: the node's `flush_partition(log, upto)` (the
        # fsync in a worker thread, shared by whoever waits meanwhile: group commit); without
        # one (tests), here and now.
        self.flush_partition = flush_partition
        self.clock = clock
        self.node_id = config.node_id_value
        self.directory = directory
        self.cluster_id = cluster_id
        self.files = DiskFiles(directory) if directory is not None else MemoryFiles()
        self.new_topic_id = new_topic_id
        self.placer = placer
        self.log: PartitionLog | None = None
        self.epoch = 0
        self.image = MetadataImage()
        self.cluster_control: ClusterControlManager | None = None
        self.replication_control: ReplicationControlManager | None = None
        self.configuration_control: ConfigurationControlManager | None = None
        # Set (and replaced) whenever the timers must look again: a write, a heartbeat.
        self.timers_wakeup = trio.Event()
        self.next_rebalance = 0.0
        self.next_unclean_check = 0.0
        self.endpoints: list[tuple[str, int]] = []   # (host, port) of the controller listeners
        self._quotas = None     # security/quotas.py's ClientQuotas of the image, once asked for

    # ------------------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Recover the metadata log, elect this voter at the next epoch, replay everything."""
        now_ms = self.clock.wall_ms()
        self.log = PartitionLog(METADATA_TOPIC, METADATA_PARTITION, METADATA_PARTITION_DIR,
                                self.files, now_ms=now_ms, clean_shutdown=False)
        # The high watermark is the quorum's (here: what is fsynced), not each append's.
        self.log.replicated = True
        self.epoch = max(self.read_quorum_state(), self.log.leader_epoch) + 1
        self.write_quorum_state()
        self.image = MetadataImage()
        self.cluster_control = ClusterControlManager(
            self.image, self.clock, cluster_id=self.cluster_id,
            session_timeout_ms=self.config.broker_session_timeout_ms)
        replication = dict(
            node_id=self.node_id,
            default_replication_factor=self.config.default_replication_factor,
            default_num_partitions=self.config.num_partitions,
            min_insync_replicas=self.config.min_insync_replicas,
            unclean_leader_election_enable=self.config.unclean_leader_election_enable,
            new_topic_id=self.new_topic_id)
        if self.placer is not None:
            replication["placer"] = self.placer
        self.replication_control = ReplicationControlManager(self.image, self.cluster_control,
                                                             **replication)
        self.configuration_control = ConfigurationControlManager(self.image, self.config,
                                                                 self.node_id)
        offset = self.log.log_start_offset
        while offset < self.log.log_end_offset:
            read = self.log.read(offset, DEFAULT_FETCH_MAX_BYTES,
                                 isolation_upper=self.log.log_end_offset)
            data = read.records
            if not data:
                break
            last = offset - 1
            for record_offset, record in decode_batches(data):
                self.replay(record_offset, record)
                last = record_offset
            offset = max(last + 1, self.batches_end(data, offset))
        # Everything recovered is durable from here on and so committed: a voter alone is its
        # own majority.
        self.log.flush()
        self.log.set_high_watermark(self.log.log_end_offset)
        if self.log.log_end_offset == 0:
            # Kafka's bootstrap metadata: the cluster starts at this metadata.version.
            self.write([r.feature_level_record(r.METADATA_VERSION, r.METADATA_VERSION_LEVEL)])
            self.log.flush()
            self.log.set_high_watermark(self.log.log_end_offset)
        now = self.clock.monotonic()
        self.next_rebalance = now + self.config.leader_imbalance_check_interval_seconds
        self.next_unclean_check = now + UNCLEAN_LEADER_ELECTION_CHECK_INTERVAL_S
        log.info("controller %d leads the metadata log at epoch %d, high watermark %d",
                 self.node_id, self.epoch, self.log.high_watermark)

    @staticmethod
    def batches_end(data, offset: int) -> int:
        """The offset after the last whole batch of `data` (control batches included)."""
        end = offset
        for _, last_offset, _ in batch_epochs(data):
            end = last_offset + 1
        return end

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def abandon(self) -> None:
        """Let the files go as a killed process would: nothing flushed."""
        if self.log is not None:
            self.log.close_handlers()
            self.log = None

    # ------------------------------------------------------------------------- quorum state

    def quorum_state_path(self) -> str:
        return f"{METADATA_PARTITION_DIR}/{QUORUM_STATE_FILE}"

    def read_quorum_state(self) -> int:
        """The epoch `quorum-state` holds (0 when there is none or it does not read)."""
        try:
            raw = self.files.read_small(self.quorum_state_path())
        except FileNotFoundError:
            return 0
        try:
            return int(json.loads(raw.decode("utf-8"))["leaderEpoch"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable %s; starting from epoch 0", self.quorum_state_path())
            return 0

    def write_quorum_state(self) -> None:
        """Kafka's ElectionState as FileQuorumStateStore writes it: this voter leads."""
        state = {"clusterId": self.cluster_id or "", "leaderId": self.node_id,
                 "leaderEpoch": self.epoch, "votedId": self.node_id, "appliedOffset": 0,
                 "currentVoters": [{"voterId": self.node_id}],
                 "data_version": QUORUM_STATE_DATA_VERSION}
        self.files.write_atomic(self.quorum_state_path(), json.dumps(state).encode("utf-8"))

    # ------------------------------------------------------------------------- the log

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def next_offset(self) -> int:
        """The offset the next record written gets."""
        return self.log.log_end_offset

    @property
    def quotas(self):
        """The client quotas of the controller's image (ClientQuotaRecords), for the
        controller_mutation_rate it enforces on CreateTopics, DeleteTopics and CreatePartitions
        (KIP-599; Kafka's controller keeps its own ControllerMutationQuotaManager). The token
        buckets live as long as the controller."""
        if self._quotas is None:
            from trioka.security.quotas import ClientQuotas
            config = self.config
            self._quotas = ClientQuotas(None, config.quota_window_num,
                                        config.quota_window_size_seconds,
                                        config.controller_quota_window_num,
                                        config.controller_quota_window_size_seconds)
        self._quotas.load_image(self.image.client_quotas)
        return self._quotas

    def replay(self, offset: int, record: r.MetadataRecord) -> None:
        self.image.replay(record.record_type, record.message, offset)
        self.cluster_control.replay(record.record_type, record.message, offset)

    def write(self, records: list[r.MetadataRecord]) -> int:
        """Append `records` as one batch and replay them; the offset of the last one (the
        last offset written so far when there are none). Committed once fsynced:
        `wait_committed`."""
        if not records:
            return self.log.log_end_offset - 1
        first = self.log.log_end_offset
        data = encode_batch(records, base_offset=first, epoch=self.epoch,
                            timestamp_ms=self.clock.wall_ms())
        self.log.append(data, now_ms=self.clock.wall_ms(), leader_epoch=self.epoch,
                        origin=AppendOrigin.COORDINATOR)
        for index, record in enumerate(records):
            self.replay(first + index, record)
        self.wake_timers()
        return first + len(records) - 1

    def commit_flushed(self) -> None:
        """What is fsynced is committed."""
        self.log.set_high_watermark(self.log.recovery_point)

    async def wait_committed(self, offset: int) -> None:
        """Until the record at `offset` is committed: what is fsynced is committed (a quorum
        of one voter)."""
        if self.log is None or self.log.high_watermark > offset:
            return
        if self.flush_partition is not None:
            await self.flush_partition(self.log, offset + 1)
        else:
            self.log.flush()
        if self.log is not None:
            self.commit_flushed()

    async def write_and_commit(self, records: list[r.MetadataRecord]) -> int:
        offset = self.write(records)
        await self.wait_committed(offset)
        return offset

    def wake_timers(self) -> None:
        self.timers_wakeup.set()

    # ------------------------------------------------------------------------- brokers

    async def broker_registration(self, request, version: int):
        Response = response_class(ApiKey.BROKER_REGISTRATION)
        try:
            records, broker_epoch = self.cluster_control.register_broker(
                request.broker_id, request.incarnation_id,
                [(l.name, l.host, l.port, l.security_protocol) for l in request.listeners],
                request.rack,
                [(f.name, f.min_supported_version, f.max_supported_version)
                 for f in request.features],
                self.next_offset, cluster_id=request.cluster_id)
        except KafkaError as e:
            return Response(throttle_time_ms=0, error_code=e.code, broker_epoch=-1)
        await self.write_and_commit(records)
        return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, broker_epoch=broker_epoch)

    async def broker_heartbeat(self, request, version: int):
        Response = response_class(ApiKey.BROKER_HEARTBEAT)
        try:
            records, reply = self.replication_control.process_broker_heartbeat(
                request.broker_id, request.broker_epoch, request.current_metadata_offset,
                request.want_fence, request.want_shut_down, self.next_offset)
        except KafkaError as e:
            return Response(throttle_time_ms=0, error_code=e.code, is_caught_up=False,
                            is_fenced=True, should_shut_down=False)
        self.wake_timers()
        await self.write_and_commit(records)
        return Response(throttle_time_ms=0, error_code=ErrorCode.NONE,
                        is_caught_up=reply.is_caught_up, is_fenced=reply.is_fenced,
                        should_shut_down=reply.should_shut_down)

    async def alter_partition(self, request, version: int):
        Response = response_class(ApiKey.ALTER_PARTITION)
        try:
            self.cluster_control.check_broker_epoch(request.broker_id, request.broker_epoch)
        except KafkaError as e:
            return Response(throttle_time_ms=0, error_code=e.code, topics=[])
        records = []
        topics = []
        for topic in request.topics:
            partitions = []
            for p in topic.partitions:
                if version >= 3:
                    new_isr = [(b.broker_id, b.broker_epoch) for b in p.new_isr_with_epochs]
                else:
                    new_isr = [(b, -1) for b in p.new_isr]
                try:
                    out, result = self.replication_control.alter_partition(
                        request.broker_id, request.broker_epoch, p.partition_index,
                        p.leader_epoch, p.partition_epoch, new_isr,
                        leader_recovery_state=p.leader_recovery_state if version >= 1 else 0,
                        topic_id=topic.topic_id, topic_name=topic.topic_name, version=version)
                except KafkaError as e:
                    partitions.append(Response.TopicData.PartitionData(
                        partition_index=p.partition_index, error_code=e.code))
                    continue
                # Later partitions of the request see this change (one change per partition).
                self.write(out)
                records += out
                if result.error_code != ErrorCode.NONE:
                    partitions.append(Response.TopicData.PartitionData(
                        partition_index=p.partition_index, error_code=result.error_code))
                    continue
                partitions.append(Response.TopicData.PartitionData(
                    partition_index=p.partition_index, error_code=ErrorCode.NONE,
                    leader_id=result.leader_id, leader_epoch=result.leader_epoch,
                    isr=result.isr, leader_recovery_state=result.leader_recovery_state,
                    partition_epoch=result.partition_epoch))
            topics.append(Response.TopicData(topic_name=topic.topic_name,
                                             topic_id=topic.topic_id, partitions=partitions))
        await self.wait_committed(self.next_offset - 1)
        return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, topics=topics)

    # ------------------------------------------------------------------------- topics

    def described_configs(self, configs: dict) -> list:
        """Every config of a new topic with its value and source (CreateTopics v5+)."""
        Result = response_class(ApiKey.CREATE_TOPICS).CreatableTopicResult
        defaults = LogConfig.from_configs(topic_defaults(self.config))
        effective = LogConfig.from_configs(configs, defaults).to_configs()
        return [Result.CreatableTopicConfigs(
                    name=key, value=value, read_only=False, is_sensitive=False,
                    config_source=DYNAMIC_TOPIC_CONFIG if key in configs else DEFAULT_CONFIG)
                for key, value in sorted(effective.items())]

    async def create_topics(self, request, version: int, quota=None):
        """CreateTopics. `quota`: the client's controller_mutation_rate (security/quotas.py's
        MutationQuota), spent by each topic that passed its other checks, validate_only too
        (Kafka's ReplicationControlManager: applyPartitionChangeQuota)."""
        Response = response_class(ApiKey.CREATE_TOPICS)
        Result = Response.CreatableTopicResult
        counts = collections.Counter(t.name for t in request.topics)
        outcomes = {}
        records = []
        for i, t in enumerate(request.topics):
            try:
                if counts[t.name] > 1:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
                out, created = self.replication_control.create_topic(
                    t.name, t.num_partitions, t.replication_factor,
                    [(a.partition_index, list(a.broker_ids)) for a in t.assignments] or None,
                    {c.name: c.value for c in t.configs})
                if quota is not None:
                    quota.record(created.num_partitions)   # strict and exhausted: refused
                outcomes[i] = (created, {c.name: c.value for c in t.configs})
                records += out
            except KafkaError as e:
                outcomes[i] = e
        if len(records) > MAX_RECORDS_PER_USER_OP:
            error = KafkaError(ErrorCode.POLICY_VIOLATION, EXCESSIVE_BATCH_MESSAGE)
            outcomes = dict.fromkeys(outcomes, error)
            records = []
        if not request.validate_only and records:
            await self.write_and_commit(records)
        results = []
        for i, t in enumerate(request.topics):
            outcome = outcomes[i]
            if isinstance(outcome, KafkaError):
                results.append(Result(name=t.name, topic_id=ZERO_UUID, error_code=outcome.code,
                                      error_message=outcome.message, num_partitions=-1,
                                      replication_factor=-1, configs=None))
                continue
            created, configs = outcome
            results.append(Result(
                name=t.name,
                topic_id=ZERO_UUID if request.validate_only else created.topic_id,
                error_code=ErrorCode.NONE, error_message=None,
                num_partitions=created.num_partitions,
                replication_factor=created.replication_factor,
                configs=self.described_configs(configs)))
        return Response(throttle_time_ms=0, topics=results)

    async def delete_topics(self, request, version: int, quota=None):
        """DeleteTopics; `quota` as in create_topics, spent by each topic's partitions."""
        Response = response_class(ApiKey.DELETE_TOPICS)
        Result = Response.DeletableTopicResult
        if version >= 6:
            wanted = [(t.name, t.topic_id if t.topic_id != ZERO_UUID else None)
                      for t in request.topics]
        else:
            wanted = [(name, None) for name in request.topic_names]
        names = collections.Counter(n for n, _ in wanted if n is not None)
        ids = collections.Counter(i for _, i in wanted if i is not None)
        results = []
        records = []
        for name, topic_id in wanted:
            try:
                if name is not None and topic_id is not None:
                    raise KafkaError(ErrorCode.INVALID_REQUEST,
                                     "You may not specify both topic name and topic id.")
                if name is not None and names[name] > 1:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
                if topic_id is not None and ids[topic_id] > 1:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic id.")
                if name is not None:
                    topic = self.image.topic(name)
                    if topic is None:
                        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                         "This server does not host this topic-partition.")
                else:
                    topic = self.image.topics.get(topic_id)
                    if topic is None:
                        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID,
                                         "This server does not host this topic ID.")
                if not self.config.delete_topic_enable:
                    raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED,
                                     "Topic deletion is disabled.")
                if quota is not None:
                    quota.record(len(topic.partitions))
                out = self.replication_control.delete_topic(topic.topic_id)
                self.write(out)
                records += out
            except KafkaError as e:
                results.append(Result(name=name, topic_id=topic_id or ZERO_UUID,
                                      error_code=e.code, error_message=e.message))
                continue
            results.append(Result(name=topic.name, topic_id=topic.topic_id,
                                  error_code=ErrorCode.NONE, error_message=None))
        if records:
            await self.wait_committed(self.next_offset - 1)
        return Response(throttle_time_ms=0, responses=results)

    async def create_partitions(self, request, version: int, quota=None):
        """CreatePartitions; `quota` as in create_topics, spent by the partitions added."""
        Response = response_class(ApiKey.CREATE_PARTITIONS)
        Result = Response.CreatePartitionsTopicResult
        counts = collections.Counter(t.name for t in request.topics)
        results = []
        records = []
        for t in request.topics:
            try:
                if counts[t.name] > 1:
                    raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
                assignments = None if t.assignments is None \
                    else [list(a.broker_ids) for a in t.assignments]
                out = self.replication_control.create_partitions(t.name, t.count, assignments)
                if quota is not None:
                    quota.record(t.count - len(self.image.topic(t.name).partitions))
                if len(records) + len(out) > MAX_RECORDS_PER_USER_OP:
                    raise KafkaError(ErrorCode.POLICY_VIOLATION, EXCESSIVE_BATCH_MESSAGE)
                if not request.validate_only:
                    self.write(out)
                records += out
            except KafkaError as e:
                results.append(Result(name=t.name, error_code=e.code,
                                      error_message=e.message))
                continue
            results.append(Result(name=t.name, error_code=ErrorCode.NONE, error_message=None))
        if records and not request.validate_only:
            await self.wait_committed(self.next_offset - 1)
        return Response(throttle_time_ms=0, results=results)

    async def elect_leaders(self, request, version: int):
        Response = response_class(ApiKey.ELECT_LEADERS)
        election_type = request.election_type if version >= 1 else ElectionType.PREFERRED
        if election_type not in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
            return Response(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST,
                            replica_election_results=[])
        wanted = None
        if request.topic_partitions is not None:
            wanted = {}
            for t in request.topic_partitions:
                wanted.setdefault(t.topic, []).extend(t.partitions)
        records, results = self.replication_control.elect_leaders(ElectionType(election_type),
                                                                  wanted)
        await self.write_and_commit(records)
        by_topic: dict[str, list] = {}
        for result in results:
            by_topic.setdefault(result.topic, []).append(
                Response.ReplicaElectionResult.PartitionResult(
                    partition_id=result.partition_id, error_code=result.error_code,
                    error_message=result.error_message))
        return Response(throttle_time_ms=0, error_code=ErrorCode.NONE,
                        replica_election_results=[
                            Response.ReplicaElectionResult(topic=topic, partition_result=parts)
                            for topic, parts in by_topic.items()])

    # ------------------------------------------------------------------------- configs

    async def alter_configs_of(self, Response, resources, validate_only: bool, change):
        """Both config RPCs: `change(resource)` gives a resource's records or raises; each
        resource's records are written before the next is looked at."""
        Result = Response.AlterConfigsResourceResponse
        results = []
        for resource in resources:
            try:
                records = change(resource)
                if len(records) > MAX_RECORDS_PER_USER_OP:
                    raise KafkaError(ErrorCode.POLICY_VIOLATION, EXCESSIVE_BATCH_MESSAGE)
                if not validate_only:
                    self.write(records)
            except KafkaError as e:
                results.append(Result(error_code=e.code, error_message=e.message,
                                      resource_type=resource.resource_type,
                                      resource_name=resource.resource_name))
                continue
            results.append(Result(error_code=ErrorCode.NONE, error_message=None,
                                  resource_type=resource.resource_type,
                                  resource_name=resource.resource_name))
        await self.wait_committed(self.next_offset - 1)
        return Response(throttle_time_ms=0, responses=results)

    async def incremental_alter_configs(self, request, version: int):
        """IncrementalAlterConfigs (KIP-339): SET / DELETE / APPEND / SUBTRACT per key."""
        control = self.configuration_control
        return await self.alter_configs_of(
            response_class(ApiKey.INCREMENTAL_ALTER_CONFIGS), request.resources,
            request.validate_only,
            lambda res: control.incremental_alter(
                res.resource_type, res.resource_name,
                [(c.name, c.config_operation, c.value) for c in res.configs]))

    async def alter_configs(self, request, version: int):
        """AlterConfigs: each resource's whole new set of overrides."""
        control = self.configuration_control

        def change(res):
            names = [c.name for c in res.configs]
            if len(set(names)) != len(names):
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
            return control.legacy_alter(res.resource_type, res.resource_name,
                                        {c.name: c.value for c in res.configs})
        return await self.alter_configs_of(response_class(ApiKey.ALTER_CONFIGS),
                                           request.resources, request.validate_only, change)

    # ------------------------------------------------------------------------- SCRAM users

    async def alter_user_scram_credentials(self, request, version: int):
        """AlterUserScramCredentials (KIP-554), Kafka's ScramControlManager: each user whose
        operations pass the checks (security/sasl/credentials.py) gets a
        UserScramCredentialRecord per upsertion (salt, StoredKey, ServerKey, iterations; the
        salted password goes no further) and a RemoveUserScramCredentialRecord per deletion,
        written together; a user with any failing operation gets none."""
        from trioka.security.sasl.credentials import check_alterations, credential_of
        Response = response_class(ApiKey.ALTER_USER_SCRAM_CREDENTIALS)
        users = self.image.scram_credentials
        results = check_alterations(request.deletions, request.upsertions,
                                    lambda user, t: t in users.get(user, {}))
        records = [r.remove_user_scram_credential_record(op.name, op.mechanism)
                   for op in request.deletions if results[op.name][0] == 0]
        records += [r.user_scram_credential_record(op.name, op.mechanism, credential_of(op))
                    for op in request.upsertions if results[op.name][0] == 0]
        await self.write_and_commit(records)
        return Response(throttle_time_ms=0, results=[
            Response.AlterUserScramCredentialsResult(user=name, error_code=code,
                                                     error_message=message)
            for name, (code, message) in results.items()])

    # ------------------------------------------------------------------------- ACLs

    async def create_acls(self, request, version: int):
        """CreateAcls, Kafka's AclControlManager: each valid binding not there already becomes
        an AccessControlEntryRecord under a new id, written together; an invalid one is
        INVALID_REQUEST (security/acls.py's checks)."""
        from trioka.apis.create_acls import bindings_of
        from trioka.wire.errors import ErrorCode as E
        Response = response_class(ApiKey.CREATE_ACLS)
        existing = set(self.image.acls.values())
        results, records = [], []
        for b in bindings_of(request, version):
            reason = b.invalid_reason()
            if reason is None and b not in existing:
                existing.add(b)
                records.append(r.access_control_entry_record(random_uuid(), b))
            results.append(Response.AclCreationResult(
                error_code=E.INVALID_REQUEST if reason else E.NONE, error_message=reason))
        await self.write_and_commit(records)
        return Response(throttle_time_ms=0, results=results)

    async def delete_acls(self, request, version: int):
        """DeleteAcls, Kafka's AclControlManager: a RemoveAccessControlEntryRecord for every
        binding a filter matches (once, however many filters match it), written together."""
        from trioka.apis.delete_acls import answer, filters_of
        removed: dict = {}
        results = []
        for f in filters_of(request, version):
            reason = f.invalid_reason()
            if reason is not None:
                results.append((ErrorCode.INVALID_REQUEST, reason, []))
                continue
            matched = [(acl_id, b) for acl_id, b in self.image.acls.items() if f.matches(b)]
            removed.update(matched)
            results.append((ErrorCode.NONE, None, [b for _, b in matched]))
        await self.write_and_commit([r.remove_access_control_entry_record(acl_id)
                                     for acl_id in removed])
        return answer(results)

    # ------------------------------------------------------------------------- client quotas

    async def alter_client_quotas(self, request, version: int):
        """AlterClientQuotas (KIP-546), Kafka's ClientQuotaControlManager: each valid entry's
        operations become ClientQuotaRecords (a removal: remove=true), written together; an
        invalid entry (security/quotas.py's checks) is answered INVALID_REQUEST and writes
        nothing. With validate_only nothing is written."""
        from trioka.apis.alter_client_quotas import answer, components_and_ops
        from trioka.security.quotas import check_entry
        results, records = [], []
        for e in request.entries:
            components, ops = components_and_ops(e)
            _, message = check_entry(components, ops, cluster=True)
            results.append((components, message))
            if message is None:
                records += [r.client_quota_record(components, key, value, remove)
                            for key, value, remove in ops]
        if records and not request.validate_only:
            await self.write_and_commit(records)
        return answer(results)

    # ------------------------------------------------------------------------- reassignments

    async def alter_partition_reassignments(self, request, version: int):
        """AlterPartitionReassignments (KIP-455): per partition, start moving it to the given
        replicas (the new ones are added first, the removed ones leave once every target
        replica is in the ISR), or cancel its reassignment (replicas null). v1 (KIP-860) may
        forbid changing the replication factor; the answer repeats that choice."""
        Response = response_class(ApiKey.ALTER_PARTITION_REASSIGNMENTS)
        Topic = Response.ReassignableTopicResponse
        Part = Topic.ReassignablePartitionResponse
        topics = []
        for t in request.topics:
            parts = []
            for p in t.partitions:
                try:
                    self.write(self.replication_control.alter_partition_reassignment(
                        t.name, p.partition_index, p.replicas,
                        request.allow_replication_factor_change))
                except KafkaError as e:
                    parts.append(Part(partition_index=p.partition_index, error_code=e.code,
                                      error_message=e.message))
                    continue
                parts.append(Part(partition_index=p.partition_index,
                                  error_code=ErrorCode.NONE, error_message=None))
            topics.append(Topic(name=t.name, partitions=parts))
        await self.wait_committed(self.next_offset - 1)
        return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                        allow_replication_factor_change=request.allow_replication_factor_change,
                        responses=topics)

    async def list_partition_reassignments(self, request, version: int):
        """ListPartitionReassignments: the reassignments in progress (of the partitions named,
        or of every partition when topics is null)."""
        Response = response_class(ApiKey.LIST_PARTITION_REASSIGNMENTS)
        Topic = Response.OngoingTopicReassignment
        wanted = None
        if request.topics is not None:
            wanted = {}
            for t in request.topics:
                wanted.setdefault(t.name, []).extend(t.partition_indexes)
        by_topic: dict[str, list] = {}
        for ongoing in self.replication_control.list_partition_reassignments(wanted):
            by_topic.setdefault(ongoing.topic, []).append(Topic.OngoingPartitionReassignment(
                partition_index=ongoing.partition_index, replicas=ongoing.replicas,
                adding_replicas=ongoing.adding_replicas,
                removing_replicas=ongoing.removing_replicas))
        return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                        topics=[Topic(name=name, partitions=parts)
                                for name, parts in by_topic.items()])

    # ------------------------------------------------------------------------- the cluster

    def advertise(self, endpoints: list[tuple[str, int]]) -> None:
        """Where clients reach this controller: (host, port) of its controller listeners."""
        self.endpoints = list(endpoints)

    async def describe_cluster(self, request, version: int):
        """DescribeCluster sent to the controller (KIP-919): it describes the controllers, so
        the request must ask for them (endpoint type 2); the broker endpoint type is
        MISMATCHED_ENDPOINT_TYPE, anything else UNSUPPORTED_ENDPOINT_TYPE."""
        Response = response_class(ApiKey.DESCRIBE_CLUSTER)
        endpoint_type = request.endpoint_type if version >= 1 else ENDPOINT_TYPE_BROKER
        base = dict(throttle_time_ms=0, endpoint_type=endpoint_type,
                    cluster_id=self.cluster_id or "", controller_id=self.node_id)
        if endpoint_type not in ENDPOINT_TYPES:
            return Response(error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
                            error_message=f"Unsupported endpoint type {endpoint_type}", **base)
        if endpoint_type != ENDPOINT_TYPE_CONTROLLER:
            return Response(error_code=ErrorCode.MISMATCHED_ENDPOINT_TYPE,
                            error_message=f"The request was sent to an endpoint of type "
                                          f"CONTROLLER, but we wanted an endpoint of type "
                                          f"{ENDPOINT_TYPES[endpoint_type]}", **base)
        rack = self.config.broker_rack or None
        return Response(error_code=ErrorCode.NONE, error_message=None, brokers=[
            Response.DescribeClusterBroker(broker_id=self.node_id, host=host, port=port,
                                           rack=rack)
            for host, port in self.endpoints[:1]], **base)

    # ------------------------------------------------------------------------- Raft Fetch

    def read_metadata(self, fetch_offset: int, max_bytes: int,
                      last_fetched_epoch: int = -1) -> MetadataFetch:
        """One Raft Fetch answer, now (Kafka's validateOffsetAndEpoch, then the read)."""
        partition = self.log

        def answer(error=ErrorCode.NONE, records=b"", diverging=None) -> MetadataFetch:
            return MetadataFetch(int(error), records, partition.high_watermark,
                                 partition.log_start_offset, self.node_id, self.epoch,
                                 diverging)

        if fetch_offset < 0 or (last_fetched_epoch < 0 and fetch_offset != 0):
            return answer(ErrorCode.INVALID_REQUEST)
        if fetch_offset != 0 or last_fetched_epoch > 0:
            epoch, end_offset = partition.end_offset_for_epoch(last_fetched_epoch)
            if epoch != last_fetched_epoch or end_offset < fetch_offset:
                # The fetcher has records this log has not: it truncates to here.
                return answer(diverging=(epoch, end_offset))
        if fetch_offset < partition.log_start_offset:
            return answer(ErrorCode.OFFSET_OUT_OF_RANGE)
        if fetch_offset >= partition.high_watermark:
            return answer()
        read = partition.read(fetch_offset, max_bytes or DEFAULT_FETCH_MAX_BYTES,
                              isolation_upper=partition.high_watermark)
        return answer(records=bytes(read.records))

    async def fetch_metadata(self, fetch_offset: int, max_bytes: int, max_wait_ms: int,
                             replica_id: int, last_fetched_epoch: int = -1) -> MetadataFetch:
        """A Raft Fetch of `__cluster_metadata-0` from `replica_id` (a broker: an observer):
        the committed records from `fetch_offset`, waiting up to `max_wait_ms` for some when
        there are none yet."""
        deadline = self.clock.monotonic() + max(0, max_wait_ms) / 1000
        while True:
            result = self.read_metadata(fetch_offset, max_bytes, last_fetched_epoch)
            if result.records or result.error_code or result.diverging_epoch is not None \
                    or self.clock.monotonic() >= deadline or self.log is None:
                return result
            moved = trio.Event()
            partition = self.log
            partition.add_waiter(moved)
            try:
                with self.clock.move_on_at(deadline):
                    await moved.wait()
            finally:
                partition.remove_waiter(moved)

    # ------------------------------------------------------------------------- timers

    def run_timers_once(self) -> list[r.MetadataRecord]:
        """One pass of the controller's timers, written (not yet committed): fence the broker
        whose session expired longest ago, unclean elections when due, the leader rebalance
        when due. One write per decision, so each decision sees the last."""
        written = []
        while True:
            records = self.replication_control.maybe_fence_one_stale_broker()
            if not records:
                break
            log.info("fencing broker %s: no heartbeat for %d ms", records[-1].message.broker_id,
                     self.config.broker_session_timeout_ms)
            self.write(records)
            written += records
        now = self.clock.monotonic()
        if now >= self.next_unclean_check:
            self.next_unclean_check = now + UNCLEAN_LEADER_ELECTION_CHECK_INTERVAL_S
            records = self.replication_control.maybe_elect_unclean_leaders()
            self.write(records)
            written += records
        if now >= self.next_rebalance:
            self.next_rebalance = now + self.config.leader_imbalance_check_interval_seconds
            if self.config.auto_leader_rebalance_enable:
                records = self.replication_control.maybe_balance_partition_leaders()
                self.write(records)
                written += records
        return written

    def next_timer(self) -> float:
        """When run_timers_once has something to do next (clock.monotonic() seconds)."""
        due = [self.next_unclean_check, self.next_rebalance]
        expiry = self.cluster_control.next_session_expiry()
        if expiry is not None:
            # A session is alive up to its expiry included (last contact + timeout >= now).
            due.append(expiry + SESSION_EXPIRY_GRACE_S)
        return min(due)

    async def run(self) -> None:
        """The controller's timers, until cancelled (started in the node's nursery)."""
        while self.log is not None:
            wakeup = trio.Event()
            self.timers_wakeup = wakeup
            with self.clock.move_on_at(self.next_timer()):
                await wakeup.wait()
            if self.log is None:
                return
            written = self.run_timers_once()
            if written:
                await self.wait_committed(self.next_offset - 1)

