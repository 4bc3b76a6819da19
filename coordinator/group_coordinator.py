"""GroupCoordinator (`broker.groups`): consumer groups and their committed offsets.

Every group id maps to a partition of `__consumer_offsets` whose leader is the group's coordinator.
A single broker leads them all, so it coordinates every group. A node of a cluster coordinates
the groups of the partitions it leads (coordinator/ownership.py): it loads a partition's groups
and offsets when it becomes its leader (COORDINATOR_LOAD_IN_PROGRESS meanwhile), unloads them
when it stops (their parked JoinGroup/SyncGroup answered NOT_COORDINATOR), and answers the groups
of other partitions NOT_COORDINATOR (`check_coordinator`); its writes are answered once the ISR
has them (`replicated`). As Kafka's GroupCoordinatorShard, this
is the composition of the parts, each in its own module:

    group_metadata_manager.py   the groups of both kinds, lookups, conversion between the kinds,
                                their records in `__consumer_offsets`
    migration.py                KIP-848 online upgrade/downgrade of groups with members, and the
                                classic members of consumer groups
    classic_protocol.py         JoinGroup, SyncGroup, Heartbeat, LeaveGroup over classic groups
                                (classic.py, group_state.py)
    consumer_protocol.py        ConsumerGroupHeartbeat over KIP-848 consumer groups
                                (consumer_group.py, assignors.py)
    offset_metadata_manager.py  OffsetCommit, OffsetFetch, OffsetDelete, offset expiry,
                                TxnOffsetCommit and the transaction markers
    static_members.py           group.instance.id rules both group kinds share (KIP-345)
    offsets.py                  the records of `__consumer_offsets` and the topic itself

What is here: the parts as public attributes, which the handlers call directly (`classic`,
`consumer`, `offsets`), the admin operations (ListGroups, DescribeGroups, ConsumerGroupDescribe,
DeleteGroups), loading and unloading, and the timers.

Loading. The whole state is replayed from `__consumer_offsets` when the broker starts, so groups
and offsets survive restarts and crashes: a classic group that was Stable is Stable again with its
members, who keep heartbeating as if nothing had happened; consumer groups come back from their
KIP-848 records; offsets of transactions still open wait for their marker again.

Time. One clock (trioka.clock.Clock): deadlines are its monotonic time in seconds, timestamps its
wall time in milliseconds. `expire(now)` applies every deadline that has passed (sessions, join
and sync phases, KIP-848 revocations, and every `offsets.retention.check.interval.ms` offset
expiry); `run_timers()` is the task (in the broker's nursery) that calls it when the next deadline
comes, woken early when a part sets an earlier one. State changes are plain `def` (atomic under
trio); JoinGroup and SyncGroup wait on their Waiter's trio.Event.
"""

import logging
import math

import trio

from trioka.clock import Clock
from trioka.coordinator import classic, consumer_group
from trioka.coordinator.classic import ClassicGroup
from trioka.coordinator.classic_protocol import ClassicGroupProtocol
from trioka.coordinator.consumer_group import ConsumerGroup, ConsumerGroupSettings
from trioka.coordinator.consumer_protocol import ConsumerGroupProtocol
from trioka.coordinator.group_metadata_manager import GroupMetadataManager
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.migration import GroupMigration
from trioka.coordinator.offset_metadata_manager import Offsets, OffsetMetadataManager
from trioka.coordinator.offsets import (GROUP_METADATA_KEY_VERSION, OffsetsTopic, decode_key,
                                        decode_offset_commit_value)
from trioka.coordinator.ownership import CoordinatorPartitions, replicated
from trioka.log.topics import OFFSETS_TOPIC
from trioka.wire import schema
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.types import DecodeError

log = logging.getLogger("trioka.coordinator")

OFFSET_METADATA_MAX_BYTES = 4096   # Kafka's offset.metadata.max.bytes
# Kafka's offsets.commit.timeout.ms: how long a write of the coordinator may wait for the ISR.
OFFSETS_COMMIT_TIMEOUT_MS = 5000


class GroupCoordinator:
    def __init__(self, config, logs, *, clock: Clock | None = None, on_append=None,
                 offset_metadata_max_bytes: int = OFFSET_METADATA_MAX_BYTES, cluster=None,
                 topic_creation=None, spawn=None):
        self.clock = clock if clock is not None else Clock()
        self.offset_metadata_max_bytes = offset_metadata_max_bytes
        self.topic = OffsetsTopic(logs, config.offsets_topic_num_partitions, on_append, cluster)
        self.consumer_settings = ConsumerGroupSettings.from_config(config)
        self.metadata = GroupMetadataManager(self.topic, self.clock)
        self.classic = ClassicGroupProtocol(config, self.metadata, self.clock, self._schedule)
        self.consumer = ConsumerGroupProtocol(self.consumer_settings, self.metadata,
                                              logs if cluster is None else _ClusterTopics(cluster),
                                              self.clock, self._schedule)
        # KIP-848 online migration between the two kinds (group.consumer.migration.policy).
        self.migration = GroupMigration(config, self.metadata, self.classic, self.consumer)
        self.classic.migration = self.consumer.migration = self.migration
        # A node of a cluster: the partitions of `__consumer_offsets` it coordinates (None on a
        # single broker, which coordinates every group), the creation of the topic through the
        # controller (FindCoordinator starts it), and `spawn(async_fn, *args) -> bool` to load
        # a partition in the background (None, or False returned: it loads at once).
        self.cluster = cluster
        self.partitions = CoordinatorPartitions(OFFSETS_TOPIC) if cluster is not None else None
        self.topic_creation = topic_creation
        self.spawn = spawn
        self.write_timeout_ms = OFFSETS_COMMIT_TIMEOUT_MS
        self.offsets = OffsetMetadataManager(config, self.metadata)
        self._wakeup = trio.Event()
        self._armed = math.inf      # when the timer task will next run expire()
        # Offset expiry runs every offsets.retention.check.interval.ms (the next run: monotonic).
        self.offsets_check_interval_ms = config.offsets_retention_check_interval_ms
        self._next_offsets_check = math.inf

    @property
    def groups(self) -> dict[str, ClassicGroup]:
        """The classic groups, by group id."""
        return self.metadata.groups

    @property
    def consumer_groups(self) -> dict[str, ConsumerGroup]:
        """The KIP-848 consumer groups, by group id."""
        return self.metadata.consumer_groups

    def partition_for(self, group_id: str) -> int:
        """The group's `__consumer_offsets` partition (FindCoordinator, AddOffsetsToTxn,
        TxnOffsetCommit)."""
        return self.topic.partition_for(group_id)

    # ------------------------------------------------------------------------------ loading

    def open(self) -> None:
        """Replay `__consumer_offsets`: the last record of each key wins, tombstones delete. A
        node of a cluster loads nothing now: each partition loads when it becomes its leader."""
        now = self.clock.monotonic()
        if self.partitions is None:
            self._load(self.topic.replay())
        self._next_offsets_check = now + self.offsets_check_interval_ms / 1000

    def _load(self, records) -> None:
        """Add the groups and offsets of `records` (the last record of each key wins,
        tombstones delete; `self.topic.open_transactions` holds what they left open)."""
        now = self.clock.monotonic()
        classic_values: dict[str, object] = {}
        committed: dict[str, Offsets] = {}
        consumer_records: dict[tuple, object] = {}
        for key, value in records:
            try:
                version, k = decode_key(key)
                if version in consumer_group.KEY_VERSIONS:
                    _replay_consumer_group_record(consumer_records, version, key, value)
                    continue
                if k is None:
                    continue
                if version == GROUP_METADATA_KEY_VERSION:
                    classic_values[k.group] = None if value is None else \
                        schema.decode_record("GroupMetadataValue", value)[1]
                else:
                    group_offsets = committed.setdefault(k.group, {})
                    if value is None:
                        group_offsets.pop((k.topic, k.partition), None)
                    else:
                        group_offsets[(k.topic, k.partition)] = decode_offset_commit_value(value)
            except (KafkaError, DecodeError) as e:
                log.warning("skipping a record of %s that does not parse: %s", OFFSETS_TOPIC, e)
        consumer_groups = consumer_group.load(consumer_records, now, self.consumer_settings,
                                              self.clock.wall_ms())
        self.metadata.load({group_id: ClassicGroup.from_record(group_id, value, now)
                            for group_id, value in classic_values.items()
                            if value is not None and group_id not in consumer_groups},
                           consumer_groups)
        # Offsets of transactions still open wait for their marker, as before the restart.
        pending: dict[int, dict[str, Offsets]] = {}
        for producer_id, records in self.topic.open_transactions.items():
            for key, value in records:
                try:
                    version, k = decode_key(key)
                except (KafkaError, DecodeError):
                    continue
                if k is None or version == GROUP_METADATA_KEY_VERSION or value is None:
                    continue
                pending.setdefault(producer_id, {}).setdefault(
                    k.group, {})[(k.topic, k.partition)] = decode_offset_commit_value(value)
        self.offsets.load(committed, pending)

    # ------------------------------------------------------- a node of a cluster: ownership

    def check_coordinator(self, group_id: str) -> None:
        """KafkaError NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS unless this node
        coordinates the group now (always does on a single broker)."""
        if self.partitions is not None:
            self.partitions.check(self.partition_for(group_id))

    def loading(self) -> bool:
        """Whether a partition this node coordinates is still loading (ListGroups says so)."""
        return self.partitions is not None and \
            len(self.partitions.active()) < len(self.partitions.states)

    def coordinator_error(self, group_id: str) -> int:
        """The code `check_coordinator` would raise; ErrorCode.NONE (0) when served."""
        if self.partitions is None:
            return ErrorCode.NONE
        return self.partitions.error(self.partition_for(group_id))

    async def replicated(self, group_id: str) -> int:
        """Wait until what was written to the group's partition is on the whole ISR (acks=-1);
        ErrorCode.NONE at once on a single broker. See ownership.replicated."""
        if self.cluster is None:
            return ErrorCode.NONE
        return await replicated(self.cluster.replicas, OFFSETS_TOPIC,
                                self.partition_for(group_id), self.write_timeout_ms)

    def on_leadership(self, hosted, is_leader: bool) -> None:
        """The replica manager's leadership event: load a `__consumer_offsets` partition this
        node now leads, unload one it no longer leads."""
        if hosted.topic != OFFSETS_TOPIC:
            return
        if is_leader:
            epoch = hosted.state.leader_epoch
            if self.partitions.leads(hosted.index, epoch):
                return
            self.unload_partition(hosted.index)   # a new epoch: load again from the log
            self.partitions.became_leader(hosted.index, epoch)
            if self.spawn is None or not self.spawn(self._load_soon, hosted.index, epoch):
                self.load_partition(hosted.index, epoch)
        elif self.partitions.stopped_leading(hosted.index):
            self.unload_partition(hosted.index)

    async def _load_soon(self, index: int, epoch: int) -> None:
        await trio.lowlevel.checkpoint()
        self.load_partition(index, epoch)

    def load_partition(self, index: int, epoch: int) -> bool:
        """Replay the partition's groups and offsets (to its log end) and start serving them,
        unless the leadership of `epoch` ended meanwhile. True when loaded."""
        if not self.partitions.is_loading(index, epoch):
            return False
        try:
            self._load(self.topic.replay_partition(index))
        except KafkaError as e:
            log.error("%s-%d could not be loaded: %s", OFFSETS_TOPIC, index, e.message)
            return False
        self.partitions.loaded(index, epoch)
        self._schedule(self.clock.monotonic())   # the timers look at the loaded groups
        log.info("loaded the groups of %s-%d (leader epoch %d)", OFFSETS_TOPIC, index, epoch)
        return True

    def unload_partition(self, index: int) -> None:
        """Forget the groups and offsets of a partition this node no longer coordinates; their
        parked requests are answered NOT_COORDINATOR."""
        def mine(group_id: str) -> bool:
            return self.partition_for(group_id) == index
        for group_id in [g for g in self.groups if mine(g)]:
            self.classic.unload_group(self.groups.pop(group_id))
        for group_id in [g for g in self.consumer_groups if mine(g)]:
            del self.consumer_groups[group_id]
        self.offsets.forget_pending(mine)

    async def unload_when(self, shutting_down: trio.Event) -> None:
        """Answer every parked request when the broker shuts down (see `unload`)."""
        await shutting_down.wait()
        self.unload()

    def unload(self) -> None:
        """The broker stops coordinating: parked JoinGroup and SyncGroup requests are answered
        NOT_COORDINATOR at once, as Kafka answers them when it unloads a coordinator, so that
        shutdown does not wait for them and their clients look for the coordinator again. The
        groups themselves are as their last records in `__consumer_offsets` left them."""
        self.classic.unload()

    # ------------------------------------------------------------------------------- timers

    def _schedule(self, deadline: float) -> None:
        """A deadline was set: wake the timer task if it would otherwise sleep past it."""
        if deadline < self._armed:
            self._wakeup.set()

    def next_deadline(self) -> float:
        """The earliest deadline of any group or of the offset expiry (math.inf when none)."""
        return min(self.classic.next_deadline(), self.consumer.next_deadline(),
                   self._next_offsets_check)

    async def run_timers(self) -> None:
        """The timer task: sleep until the next deadline (or until an earlier one is set), then
        expire what is due."""
        while True:
            self._wakeup = trio.Event()
            self._armed = self.next_deadline()
            with self.clock.move_on_at(self._armed):
                await self._wakeup.wait()
            self._armed = math.inf
            self.expire(self.clock.monotonic())

    def expire(self, now: float) -> None:
        """Apply every deadline at or before `now` (monotonic): classic groups' sessions and
        phases, consumer groups' sessions and revocations, and the offset expiry when due."""
        self.classic.expire(now)
        self.consumer.expire(now)
        if now >= self._next_offsets_check:
            self._next_offsets_check = now + self.offsets_check_interval_ms / 1000
            self.offsets.expire_offsets(self.clock.wall_ms())

    # ------------------------------------------------------------------------ admin

    def describe_group(self, group_id: str) -> ClassicGroup | None:
        """The group DescribeGroups describes; None when unknown (described as Dead)."""
        return self.groups.get(group_id)

    def is_consumer_group(self, group_id: str) -> bool:
        """Whether the id names a KIP-848 consumer group (which DescribeGroups does not
        describe)."""
        return group_id in self.consumer_groups

    def describe_consumer_group(self, group_id: str) -> ConsumerGroup:
        """ConsumerGroupDescribe: the group, or KafkaError (INVALID_GROUP_ID, GROUP_ID_NOT_FOUND
        also for a classic group)."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        self.check_coordinator(group_id)
        return self.metadata.consumer_group(group_id)

    def list_groups(self, states: list[str] | None = None,
                    types: list[str] | None = None) -> list[ClassicGroup | ConsumerGroup]:
        """ListGroups: every live group, filtered by state names and group types (both compared
        without regard to case, as Kafka does); empty filters match everything."""
        wanted_states = {s.lower() for s in states or ()}
        wanted_types = {t.lower() for t in types or ()}
        out = []
        for group in self.groups.values():
            if group.is_in(GroupState.DEAD):
                continue
            if wanted_states and group.state.value.lower() not in wanted_states:
                continue
            if wanted_types and classic.GROUP_TYPE not in wanted_types:
                continue
            out.append(group)
        for cgroup in self.consumer_groups.values():
            if wanted_states and cgroup.state.value.lower() not in wanted_states:
                continue
            if wanted_types and consumer_group.GROUP_TYPE not in wanted_types:
                continue
            out.append(cgroup)
        return out

    def delete_groups(self, group_ids: list[str]) -> dict[str, int]:
        """DeleteGroups: group id -> error code. Only groups without members go (a classic group
        must be Empty, a consumer group have no members); their records and every committed
        offset get tombstones."""
        return {group_id: self._delete_group(group_id) for group_id in group_ids}

    def _delete_group(self, group_id: str) -> int:
        error = self.coordinator_error(group_id)
        if error:
            return error
        group = self.consumer_groups.get(group_id)
        if group is not None:
            if not group.is_empty():
                return ErrorCode.NON_EMPTY_GROUP
        else:
            if not group_id:
                return ErrorCode.INVALID_GROUP_ID
            group = self.groups.get(group_id)
            if group is None or group.is_in(GroupState.DEAD):
                return ErrorCode.GROUP_ID_NOT_FOUND
            if not group.is_in(GroupState.EMPTY):
                return ErrorCode.NON_EMPTY_GROUP
        now_ms = self.clock.wall_ms()
        try:
            self.metadata.append(group_id, self.offsets.tombstones(group)
                                 + group.deletion_records(), now_ms)
        except KafkaError as e:
            return e.code
        self.metadata.remove_group(group, now_ms)
        return ErrorCode.NONE


def _replay_consumer_group_record(out: dict, version: int, key, value) -> None:
    """Keep the last value of a consumer group record's key (a tombstone removes it)."""
    group_id, member_id = consumer_group.decode_key(version, key)
    if value is None:
        out.pop((version, group_id, member_id), None)
    else:
        out[(version, group_id, member_id)] = consumer_group.decode_value(version, value)


class _ClusterTopics:
    """The topics a consumer group may subscribe to, on a node of a cluster: the metadata
    image's (the log manager holds only the partitions assigned to this node)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def topics(self):
        return [t for t in map(self.cluster.topic, self.cluster.topic_names()) if t is not None]
