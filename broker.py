"""BrokerState: the root of all state of one broker (logs, topics, coordinators, fetch sessions,
controls, the clock, waiters). No sockets here: server.py serves it.

Handlers change state only through the owners' methods. Methods that change state are plain `def`
with no `await` inside, so under trio each runs to completion without interleaving (no locks).
Waiters (long-poll Fetch) register a trio.Event with each partition they read
(`PartitionLog.add_waiter`); the partition sets it at its next append or log start change, so an
append wakes only the fetchers of the partition appended to.

On its own a broker is a whole single-node cluster: the controller, and every partition's
leader, only replica and ISR, so the high watermark moves with every append. With
`controller.quorum.voters` set it is a node of a KRaft cluster (`self.cluster`,
node/cluster_link.py): topics come from the metadata log, it holds the replicas the controller
assigns it, and the replica manager moves high watermarks as the ISR catches up; a node with
`controller` in `process.roles` also runs the controller (`self.controller`).
"""

import json
import logging

import trio

from trioka.clock import Clock, VirtualClock
from trioka.config import DYNAMIC_KEYS, Config, Listener, finalized, in_cluster, \
    parse_listeners, topic_defaults
from trioka.controls.rules import Controls
from trioka.log.config import LogConfig
from trioka.apis.purgatory import FetchPurgatory
from trioka.log.fetch_sessions import FetchSessionCache
from trioka.log.manager import LogManager
from trioka.node.memory import manage_garbage_collection, settle_long_lived_objects
from trioka.node.controls import NodeControls
from trioka.observe.request_log import RequestLog, render_entries, select_entries
from trioka.replica.selector import replica_selector
from trioka.log.topics import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, validate_topic_name
from trioka.txn.producer_ids import ProducerIdManager
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.broker")

# Broker configs changed at runtime, by resource: {"cluster": {...}, "broker": {...}}. Kafka keeps
# them in its metadata log; a single broker keeps them in this file of the data directory.
DYNAMIC_CONFIGS_FILE = "trioka-dynamic-configs.json"


# A background task that fails is started again after this pause: often enough to recover from a
# passing fault (a full disk freed), rarely enough not to flood the log.
RESTART_PAUSE_S = 1.0


async def keep_running(name: str, task, clock: Clock, pause_s: float = RESTART_PAUSE_S) -> None:
    """Run a background loop that must never stop the broker: whatever error escapes one pass
    (a disk error during a checkpoint, a corrupt batch met by the cleaner) is logged and the loop
    starts again after `pause_s`, as Kafka's scheduler keeps its periodic tasks."""
    while True:
        try:
            await task()
            return
        except Exception:
            log.exception("%s failed; it starts again in %g s", name, pause_s)
        await clock.sleep(pause_s)


class BrokerState:
    def __init__(self, config: Config | None = None, *, clock: Clock | None = None,
                 node_controls: NodeControls | None = None):
        self.config = config or Config()
        # Every read of time and every timer of this broker goes through this clock (clock.py):
        # with trioka.virtual.time a VirtualClock, which moves only when told (advance_time).
        self.clock = clock or (VirtualClock() if self.config.trioka_virtual_time else Clock())
        # The machinery of sockets and of the nodes' liveness (connections.max.idle.ms, send
        # deadlines, node registration and heartbeats, replica fetchers, the controller, flushes
        # and checkpoints) stays on real time even when the clock is virtual, or a virtual
        # cluster would freeze; the same clock otherwise.
        self.network_clock = Clock() if self.clock.virtual else self.clock
        # The faults injected into this node's links to the other nodes (node/controls.py); a
        # node of a LocalCluster keeps the same one across its restarts.
        self.node_controls = node_controls or NodeControls()
        self.node_id: int = self.config.node_id_value
        self.rack: str | None = self.config.broker_rack or None
        # KIP-392's replica.selector.class (replica/selector.py); ValueError for an unknown one.
        self.replica_selector = replica_selector(self.config.replica_selector_class)
        # A single broker never changes leader, so every partition stays at leader epoch 0.
        self.leader_epoch = 0
        # A node of a KRaft cluster (node/cluster_link.py): topics come from the metadata log
        # and only the partitions assigned here are held; None on a single broker.
        clustered = in_cluster(self.config) and "broker" in self.config.process_roles
        self.logs = LogManager(self.config.data_dir, clock=self.clock, node_id=self.node_id,
                               default_config=self.topic_config_defaults(),
                               cluster_id=self.config.cluster_id or None, replicated=clustered)
        self.cluster = None
        # The KRaft controller of a node whose process.roles hold `controller`
        # (controller/quorum_controller.py), opened with the logs; None otherwise.
        self.controller = None
        if clustered:
            from trioka.node.cluster_link import ClusterLink
            self.cluster = ClusterLink(self)
        # In a cluster each node hands out its own ids, apart from the others' (producer_ids.py).
        self.producer_ids = ProducerIdManager(
            self.config.data_dir, node_id=self.node_id if self.cluster is not None else None)
        # Finalized feature levels (features.py) and their epoch: clients keep the levels of the
        # highest epoch they have seen, so a restart with other levels must come with a higher
        # one; the start time in milliseconds is (real time: a virtual clock set ahead must not
        # hold back the epoch of the next start).
        self.features = finalized(self.config)
        self.features_epoch = self.network_clock.wall_ms()
        # The coordinators and the log cleaner are built on first use (see their properties).
        self._cleaner = None
        self._groups = None
        self._group_configs = None      # coordinator/group_config.py's store (single broker)
        self._transactions = None
        self._scram_credentials = None    # security/sasl/credentials.py, on first use
        # The ACL authorizer (security/authorizer.py) when `authorizer.class.name` names one;
        # None: every request is allowed, as in Kafka without an authorizer.
        self.authorizer = None
        if self.config.authorizer_class_name:
            from trioka.security.authorizer import Authorizer
            # A node of a cluster authorizes from its metadata image's ACLs.
            self.authorizer = Authorizer.from_config(
                self.config, (lambda: self.cluster.image) if self.cluster is not None else None,
                self.logs.files)
        # Client quotas (security/quotas.py): produce and fetch check `client_quotas.active`.
        # A single broker keeps them in its log directory; a cluster node has its metadata
        # image's (node/cluster_link.py loads them).
        from trioka.security.quotas import ClientQuotas
        self.client_quotas = ClientQuotas(
            self.logs.files if self.cluster is None else None,
            self.config.quota_window_num, self.config.quota_window_size_seconds,
            self.config.controller_quota_window_num,
            self.config.controller_quota_window_size_seconds)
        self.shutting_down = trio.Event()
        # One checkpoint at a time: the checkpoint files are replaced from a worker thread.
        self._checkpoint_lock = trio.Lock()
        # Fault injection for tests (controls/rules.py): rules the server applies to requests.
        self.controls = Controls(
            topic_name_of=lambda topic_id: getattr(self.logs.topic_by_id(topic_id), "name", None),
            operations={"retention": self.enforce_retention, "compaction": self.compact_now},
            node_id=self.node_id)
        if self.config.trioka_faults_file:
            # The rules in force from the start (controls/fault_file.py); a node of a cluster
            # takes those for it and those for any node. ValueError names the file and rule.
            from trioka.controls.fault_file import read_fault_file
            path = self.config.trioka_faults_file
            try:
                self.controls.load(read_fault_file(path),
                                   only_this_node=in_cluster(self.config))
            except ValueError as e:
                raise ValueError(str(e) if str(e).startswith("fault file") else
                                 f"fault file {path}: {e}") from None
        self.nursery: trio.Nursery | None = None
        self.listeners: list[Listener] = []
        self._advertised: dict[str, tuple[str, int]] = {}
        self._partitions_since_freeze = 0    # see _settle_long_lived_objects
        self.fetch_sessions = FetchSessionCache(
            self.config.max_incremental_fetch_session_cache_slots)
        # Waiting Fetch requests' deadlines and the reaper that answers them (apis/purgatory.py).
        self.fetch_purgatory = FetchPurgatory(self.clock)
        # Every request served and its response (observe/request_log.py); None when off.
        self.request_log = RequestLog.from_config(self.config, self.clock, self.node_id)
        # Conformance mode (`trioka.strict`, observe/conformance.py): every produced record
        # walked, every request's use of the protocol checked and kept for the report.
        self.strict = self.config.trioka_strict
        # CreatePartitions and DeleteTopics change a topic one at a time (their disk work runs
        # in worker threads).
        self._topic_changes = trio.Lock()

    # --- lifecycle ---

    def open(self) -> None:
        self.logs.open()
        self._open_controller()
        self.producer_ids.open()
        self._load_dynamic_configs()
        # Coordinators with state on disk load now, as Kafka loads its coordinator partitions;
        # without it they load on their first request. A node of a cluster has them from the
        # start: they load the partitions it comes to lead.
        if self.cluster is not None or self.logs.topic(OFFSETS_TOPIC) is not None:
            self.groups
        if self.cluster is not None or self.logs.topic(TRANSACTION_STATE_TOPIC) is not None:
            self.transactions
        self._settle_long_lived_objects()

    # Python's cyclic garbage collector walks every tracked object at each full collection: with
    # 10,000 partitions (segments, indexes, producer states...) that is a 200 ms pause of the
    # event loop, again and again, over objects that live as long as the broker. Once the logs
    # are loaded, and again each time this many partitions have been added, they are moved out
    # of its sight, so full collections only walk what came after (node/memory.py).
    FREEZE_EVERY_PARTITIONS = 1000

    def _settle_long_lived_objects(self) -> None:
        settle_long_lived_objects()
        self._partitions_since_freeze = 0

    def _partitions_added(self, count: int) -> None:
        self._partitions_since_freeze += count
        if self._partitions_since_freeze >= self.FREEZE_EVERY_PARTITIONS:
            self._settle_long_lived_objects()

    def _open_controller(self) -> None:
        """The controller's metadata log lives in `metadata.log.dir`, else the log dir; it is
        the cluster id of the log dir's meta.properties that brokers must register with."""
        from trioka.apis import runs_controller
        if not runs_controller(self.config):
            return
        from trioka.controller.quorum_controller import QuorumController
        directory = None if self.config.memory else \
            (self.config.metadata_log_dir or self.config.data_dir)
        # The controller's timers (broker sessions, leader balance) are the cluster's liveness:
        # real time.
        controller = QuorumController(self.config, self.network_clock, directory,
                                      cluster_id=self.logs.cluster_id,
                                      flush_partition=self.flush_partition)
        controller.open()
        self.controller = controller

    def close(self) -> None:
        if self._cleaner is not None:
            self._cleaner.abort()
        if self.controller is not None:
            self.controller.close()
        self.logs.close()
        if self.request_log is not None:
            self.request_log.close()

    def abandon(self) -> None:
        """Let go of everything as a killed process would (SIGKILL): the files are closed with
        nothing flushed, checkpointed or marked clean, so the next start recovers the logs."""
        if self._cleaner is not None:
            self._cleaner.abort()
        if self.controller is not None:
            self.controller.abandon()
        self.logs.abandon()
        if self.request_log is not None:
            self.request_log.close()

    # Built on first use, so that a broker that has no groups, transactions or compacted topics
    # never loads their code and starts faster.

    @property
    def scram_credentials(self):
        """The SCRAM credentials SASL authenticates against and AlterUserScramCredentials
        changes (security/sasl/credentials.py), loaded on first use."""
        if self._scram_credentials is None:
            from trioka.security.sasl import credentials
            # A node of a cluster reads them from its metadata image (UserScramCredentialRecords).
            self._scram_credentials = \
                credentials.ImageScramCredentials(lambda: self.cluster.image) \
                if self.cluster is not None else \
                credentials.ScramCredentialStore(self.logs.files)
        return self._scram_credentials

    @property
    def groups(self):
        """The group coordinator (coordinator/group_coordinator.py)."""
        if self._groups is None:
            from trioka.coordinator.group_coordinator import GroupCoordinator
            from trioka.coordinator.offsets import OFFSETS_TOPIC_CONFIGS
            from trioka.coordinator.ownership import InternalTopicCreation
            creation = InternalTopicCreation(
                self, OFFSETS_TOPIC, self.config.offsets_topic_num_partitions,
                self.internal_topic_replication_factor("offsets.topic.replication.factor"),
                OFFSETS_TOPIC_CONFIGS)
            if self.cluster is None:
                groups = GroupCoordinator(self.config, self.logs, clock=self.clock,
                                          topic_creation=creation)
            else:
                groups = GroupCoordinator(
                    self.config, self.logs, clock=self.clock, cluster=self.cluster,
                    spawn=self.spawn_coordinator_task, topic_creation=creation)
                self.cluster.replicas.leadership_listeners.append(groups.on_leadership)
            groups.consumer.group_overrides = self.group_configs
            groups.open()
            self._groups = groups
            if self.nursery is not None:
                self._start_group_timers(self.nursery)
        return self._groups

    @property
    def transactions(self):
        """The transaction coordinator (txn/coordinator.py)."""
        if self._transactions is None:
            from trioka.txn.coordinator import TransactionCoordinator
            self._transactions = TransactionCoordinator(self)
            self._transactions.load(self.clock.wall_ms())
        return self._transactions

    @property
    def cleaner(self):
        """The log cleaner (log/cleaner.py), for compacted topics."""
        if self._cleaner is None:
            from trioka.log.cleaner import LogCleaner
            self._cleaner = LogCleaner(
                self.logs.files, self.logs.all_partitions,
                step_bytes=self.config.log_cleaner_io_buffer_size,
                dedupe_buffer_size=self.config.log_cleaner_dedupe_buffer_size //
                max(1, self.config.log_cleaner_threads))
        return self._cleaner

    def start_background(self, nursery: trio.Nursery) -> None:
        """Timers owned by the broker: checkpoints, retention, the cleaner, coordinators,
        producer and transactional id expiration; in a cluster, the link to the others."""
        if self.controller is not None:
            from trioka.apis import controller_listener_names
            names = controller_listener_names(self.config)
            self.controller.advertise([self.advertised_address(listener)
                                       for listener in self.listeners if listener.name in names])
            nursery.start_soon(self._keep_running, "the controller's timers", self.controller.run)
        if self.cluster is not None:
            nursery.start_soon(self.cluster.run)
        nursery.start_soon(self._keep_running, "the checkpoint task", self._checkpoint_loop)
        nursery.start_soon(self._keep_running, "the log flusher", self._log_flusher_loop)
        nursery.start_soon(self._keep_running, "the retention task", self._retention_loop)
        if self.config.log_cleaner_enable:
            nursery.start_soon(self._keep_running, "the log cleaner", self._cleaner_loop)
        if self._groups is not None:
            self._start_group_timers(nursery)
        nursery.start_soon(self._keep_running, "the transaction timeout task",
                           self._transaction_timeout_loop)
        nursery.start_soon(self._keep_running, "the producer expiration task",
                           self._producer_expiration_loop)
        nursery.start_soon(self._keep_running, "the transactional id expiration task",
                           self._transactional_id_expiration_loop)
        if self.request_log is not None and self.request_log.file:
            nursery.start_soon(self._keep_running, "the request log's file writer",
                               self.request_log.write_file)
        nursery.start_soon(manage_garbage_collection, self.network_clock)

    def _start_group_timers(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._keep_running, "the group coordinator's timers",
                           self._groups.run_timers)
        nursery.start_soon(self._groups.unload_when, self.shutting_down)

    def spawn_coordinator_task(self, async_fn, *args) -> bool:
        """Start a coordinator's background task (loading a partition it now leads) in the
        broker's nursery; False when there is none yet (the caller then does it at once)."""
        if self.nursery is None:
            return False
        self.nursery.start_soon(async_fn, *args)
        return True

    async def _keep_running(self, name: str, task) -> None:
        # The pause before a failed loop starts again is the broker's machinery: real time.
        await keep_running(name, task, self.network_clock)

    # Each periodic loop below tells its clock from when a run would do something (clock.py
    # periodic_sleep), so that a virtual clock skips the runs that would not.

    def _next_transaction_timeout_ms(self) -> int | None:
        return None if self._transactions is None else self._transactions.next_timeout_ms()

    async def _transaction_timeout_loop(self) -> None:
        interval = self.config.transaction_abort_timed_out_transaction_cleanup_interval_ms
        while True:
            await self.clock.periodic_sleep(interval / 1000,
                                            next_due=self._next_transaction_timeout_ms)
            if self._transactions is not None:
                self._transactions.expire(self.clock.wall_ms())

    async def _producer_expiration_loop(self) -> None:
        """Kafka's PeriodicProducerExpirationCheck: every
        producer.id.expiration.check.interval.ms, every partition forgets the producers idle
        for producer.id.expiration.ms with no transaction open."""
        while True:
            await self.clock.periodic_sleep(
                self.config.producer_id_expiration_check_interval_ms / 1000,
                next_due=self._next_producer_expiry_ms)
            self.logs.remove_expired_producers(self.clock.wall_ms(),
                                               self.config.producer_id_expiration_ms)

    def _next_producer_expiry_ms(self) -> int | None:
        return self.logs.next_producer_expiry_ms(self.config.producer_id_expiration_ms)

    def _next_transactional_id_expiry_ms(self) -> int | None:
        return None if self._transactions is None else \
            self._transactions.next_transactional_id_expiry_ms()

    async def _transactional_id_expiration_loop(self) -> None:
        """Kafka's transactionalId-expiration task: every
        transaction.remove.expired.transaction.cleanup.interval.ms, the coordinator (if loaded)
        expires the ids idle for transactional.id.expiration.ms."""
        interval = self.config.transaction_remove_expired_transaction_cleanup_interval_ms
        while True:
            await self.clock.periodic_sleep(interval / 1000,
                                            next_due=self._next_transactional_id_expiry_ms)
            if self._transactions is not None:
                self._transactions.expire_transactional_ids(self.clock.wall_ms())

    # --- flushing and checkpoints: every fsync runs in a worker thread ---
    #
    # A flush is begun on the event loop (PartitionLog.begin_flush duplicates the descriptors
    # to flush), run in a worker thread (LogFlush.run) and ended on the event loop
    # (PartitionLog.end_flush moves the recovery point), so state changes only in `def`s and
    # the loop never waits for a disk. One flush per partition runs at a time; whoever needs
    # one meanwhile waits for it and then shares the next (group commit).

    async def _flush_round(self, partition) -> None:
        """Wait for the partition's flush in flight, or run one over everything appended."""
        running = partition.flushing
        if running is not None:
            done = trio.Event()
            running.add_waiter(done)
            await done.wait()
            return
        flush = partition.begin_flush()
        if flush is None:
            return
        completed = False
        try:
            await trio.to_thread.run_sync(flush.run)
            completed = True
        finally:
            partition.end_flush(flush, self.clock.wall_ms(), completed=completed)

    async def flush_partition(self, partition, upto: int | None = None) -> None:
        """Make the partition durable below `upto` (default: its log end offset now): Kafka's
        UnifiedLog.flush. KafkaError(KAFKA_STORAGE_ERROR) if the log dir is or goes offline."""
        upto = partition.log_end_offset if upto is None else upto
        while partition.recovery_point < min(upto, partition.log_end_offset):
            await self._flush_round(partition)

    async def flush_appended(self, partition, upto: int) -> None:
        """Kafka's flush on append, for an append of the offsets below `upto`: flush while it
        waits for one (PartitionLog.awaits_flush: flush.messages unflushed, or its high
        watermark held back for a flush). With flush.messages=1 the append is durable when
        this returns; appends that arrive during a flush share the next one (group commit)."""
        while partition.awaits_flush(upto):
            await self._flush_round(partition)

    async def _log_flusher_loop(self) -> None:
        """Kafka's kafka-log-flusher task: every log.flush.scheduler.interval.ms (Kafka's
        default: never), flush the logs whose last flush is flush.ms old. It also flushes, as
        soon as they are due, the logs an append left with flush.messages unflushed (the
        coordinators' writes; a produce request flushes its own) and those that rolled a
        segment (Kafka flushes a rolled segment in the background). Durability is against
        crashes, which come in real time: it checks on the network clock; flush.ms ages are
        the broker's clock's, as the flush times it records."""
        clock = self.network_clock
        interval = self.config.log_flush_scheduler_interval_ms / 1000
        next_check = clock.monotonic() + interval
        self.logs.schedule_flushes()
        while True:
            wakeup = trio.Event()
            self.logs.flush_wakeup = wakeup
            if not self.logs.flush_due:
                with clock.move_on_at(next_check):
                    await wakeup.wait()
            due = self.logs.take_flush_due()
            if clock.monotonic() >= next_check:
                due += self.logs.flush_due_by_time(self.clock.wall_ms())
                next_check = clock.monotonic() + interval
            for partition in due:
                await self._flush_logged(partition)

    async def _flush_logged(self, partition) -> None:
        """flush_partition for a background task: a failure (the dir goes offline) is logged
        and the task goes on with the next partition, as Kafka's flushDirtyLogs does."""
        try:
            await self.flush_partition(partition)
        except KafkaError as e:
            log.error("Error flushing %s-%d: %s", partition.topic, partition.partition,
                      e.message)

    # The checkpoint syncs the whole file system instead of fsyncing each written log from this
    # many logs on: fewer are cheaper alone, and leave other programs' writes to the same file
    # system unsynced.
    SWEEP_SYNCFS_MIN_LOGS = 32

    async def _sweep_flush(self, partitions: list) -> list:
        """Flush `partitions` together: each one's flush begun (what it covers fixed now), one
        syncfs of the dir's file system in a worker thread, then each ended, its recovery point
        moved. Returns those left to flush on their own (a flush of theirs was in flight). A
        failed sync takes the dir offline (logged, as any background flush failure)."""
        begun, left = [], []
        for partition in partitions:
            try:
                flush = partition.begin_flush(handles=False)
            except KafkaError as e:
                log.error("Error flushing %s-%d: %s", partition.topic, partition.partition,
                          e.message)
                continue
            if flush is None:
                left.append(partition)
            else:
                begun.append((partition, flush))
        if not begun:
            return left

        completed = False
        try:
            await trio.to_thread.run_sync(self.logs.files.sync_filesystem)
            completed = True
        except KafkaError as e:
            log.error("Error flushing %d logs of %s: %s", len(begun), self.logs.files.root,
                      e.message)
        finally:
            now_ms = self.clock.wall_ms()
            for partition, flush in begun:
                partition.end_flush(flush, now_ms, completed=completed)
        return left

    async def checkpoint(self, *, flush: bool = True) -> None:
        """Kafka's recovery-point checkpoint (every log.flush.offset.checkpoint.interval.ms),
        with the log start offsets and high watermarks. Unlike Kafka, which leaves fsyncs to
        flush.messages, flush.ms and rolls, it first flushes (`flush`) every log written since
        its last flush: a power cut then loses at most one interval of acknowledged writes,
        and a restart recovers at most that much, where Kafka's defaults risk a whole segment.
        The fsyncs and the files' writes run in worker threads. On a file system that can be
        synced whole (DiskFiles.sync_filesystem: syncfs), SWEEP_SYNCFS_MIN_LOGS written logs or
        more are made durable by one sync, not an fsync each."""
        async with self._checkpoint_lock:
            if flush:
                partitions = list(self.logs.all_partitions())
                written = [p for p in partitions if p.unflushed_messages > 0]
                if self.logs.files.syncs_file_system and \
                        len(written) >= self.SWEEP_SYNCFS_MIN_LOGS:
                    partitions = await self._sweep_flush(written)
                for partition in partitions:
                    if partition.unflushed_messages > 0:
                        await self._flush_logged(partition)
            offsets = self.logs.checkpoint_offsets()
            if offsets is not None:
                await trio.to_thread.run_sync(self.logs.write_checkpoint_offsets, offsets)

    async def _checkpoint_loop(self) -> None:
        # Durability against crashes, which come in real time: on the network clock.
        interval = self.config.log_flush_offset_checkpoint_interval_ms / 1000
        while True:
            await self.network_clock.sleep(interval)
            await self.checkpoint()

    async def _retention_loop(self) -> None:
        while True:
            await self.clock.periodic_sleep(self.config.log_retention_check_interval_ms / 1000,
                                            next_due=self.logs.next_retention_ms)
            deleted = 0
            for step in self.logs.retention_steps(self.clock.wall_ms()):
                deleted += step
                await trio.lowlevel.checkpoint()
            if deleted:
                await self.checkpoint(flush=False)   # the new log start offsets

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """One retention pass (Kafka runs one every log.retention.check.interval.ms): segments
        older than retention.ms or beyond retention.bytes go, log start offsets move up. Tests
        call it to see retention happen without waiting. Returns the segments deleted. (The
        log start offsets reach their checkpoint file at the next checkpoint; until then a
        restart finds them from the first remaining segment.)"""
        now_ms = self.clock.wall_ms() if now_ms is None else now_ms
        return self.logs.delete_old_segments(now_ms)

    async def _cleaner_loop(self) -> None:
        """Kafka's log cleaner thread: every log.cleaner.backoff.ms, clean the compacted log most
        worth it, in bounded steps with the requests of clients served in between. A tick with
        no log to clean does nothing, which lets a virtual clock skip it."""
        while True:
            await self.clock.periodic_sleep(self.config.log_cleaner_backoff_ms / 1000,
                                            due=self._cleaning_due)
            # Each step reads up to log.cleaner.io.buffer.size bytes; the pause after it keeps
            # the pass under log.cleaner.io.max.bytes.per.second, as Kafka's throttle does (a
            # disk rate: real time).
            pause = self.config.log_cleaner_io_buffer_size / \
                self.config.log_cleaner_io_max_bytes_per_second
            for step in self.cleaner.clean_steps(self.clock.wall_ms()):
                if step is not None:
                    # Blocking work of the pass (the fsync of a cleaned segment, log/cleaner.py).
                    await trio.to_thread.run_sync(step.run)
                await self.network_clock.sleep(pause)

    def _cleaning_due(self, now_ms: int) -> bool:
        """Whether a cleaner tick at `now_ms` would clean a log (Kafka's
        grabFilthiestCompactedLog finds one)."""
        return self.cleaner.filthiest(now_ms) is not None

    def compact_now(self, now_ms: int | None = None) -> int:
        """Clean every compacted log now, whatever its dirty ratio (the active segment and
        anything past the last stable offset excepted). Tests call it to see compaction without
        waiting for the timer. Returns the number of partitions cleaned."""
        now_ms = self.clock.wall_ms() if now_ms is None else now_ms
        return len({(r.topic, r.partition) for r in self.cleaner.clean_now(now_ms)})

    # --- virtual time (clock.py VirtualClock, trioka.virtual.time) ---

    def _virtual_clock(self):
        if not self.clock.virtual:
            raise RuntimeError("the broker's clock is real time: start it with virtual time "
                               "(trioka.virtual.time=true, `trioka serve --virtual-time`, "
                               "trioka.Broker(virtual_time=True)) to move it")
        return self.clock

    async def advance_time(self, ms: int) -> int:
        """Move the virtual clock `ms` milliseconds forward, running in order everything that
        falls due on the way (session and transaction timeouts, retention, expirations, fetch
        long-polls...); returns the clock's wall time after. RuntimeError on real time,
        ValueError for a negative `ms`."""
        await self._virtual_clock().advance(ms)
        return self.clock.wall_ms()

    async def set_time(self, wall_ms: int) -> int:
        """Move the virtual clock to `wall_ms` (milliseconds since the epoch), as advance_time
        does; ValueError for a time before the clock's (time does not go back)."""
        await self._virtual_clock().set_time(wall_ms)
        return self.clock.wall_ms()

    def clock_state(self) -> dict:
        """The clock as GET /clock shows it: {"wall_ms": ..., "virtual": ...}."""
        return {"wall_ms": self.clock.wall_ms(), "virtual": self.clock.virtual}

    def topic_config_defaults(self) -> LogConfig:
        """Topic configs as the broker's settings make them (log.segment.bytes -> segment.bytes)."""
        return LogConfig.from_configs(topic_defaults(self.config))

    @property
    def cluster_id(self) -> str:
        return self.logs.cluster_id

    # --- dynamic configs (AlterConfigs / IncrementalAlterConfigs) ---

    def _load_dynamic_configs(self) -> None:
        """Broker configs altered at runtime, kept in DYNAMIC_CONFIGS_FILE of the data dir."""
        files = self.logs.files
        if not files.exists(DYNAMIC_CONFIGS_FILE):
            return
        try:
            stored = json.loads(files.read_small(DYNAMIC_CONFIGS_FILE))
            for layer, values in ((self.config.dynamic_default, stored.get("cluster", {})),
                                  (self.config.dynamic_broker, stored.get("broker", {}))):
                layer.update({k: self.config.parse(k, v) for k, v in values.items()
                              if k in DYNAMIC_KEYS})
        except (ValueError, AttributeError) as e:
            log.warning("ignoring damaged %s: %s", DYNAMIC_CONFIGS_FILE, e)
            return
        self.logs.set_default_config(self.topic_config_defaults())

    def check_broker_configs(self, resource_name: str, values: dict) -> dict:
        """Typed values for one dynamic layer, or KafkaError as Kafka answers it."""
        if resource_name not in ("", str(self.node_id)):
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Unexpected broker id, expected {self.node_id} or empty string, "
                             f"but received {resource_name}")
        from trioka.controller.configuration_control import validate_broker_configs
        return validate_broker_configs(self.config, values)

    def apply_dynamic_configs(self, cluster_default: dict, own: dict) -> None:
        """In a cluster: the dynamic broker configs the metadata holds (ConfigRecords of the
        resource "" and of this node's id) become this node's dynamic layers."""
        from trioka.controller.configuration_control import with_dynamic_layers
        view = with_dynamic_layers(self.config, cluster_default, own)
        if view.dynamic_default == self.config.dynamic_default and \
                view.dynamic_broker == self.config.dynamic_broker:
            return
        old = (dict(self.config.dynamic_default), dict(self.config.dynamic_broker))
        self.config.dynamic_default.clear()
        self.config.dynamic_default.update(view.dynamic_default)
        self.config.dynamic_broker.clear()
        self.config.dynamic_broker.update(view.dynamic_broker)
        try:
            defaults = self.topic_config_defaults()
        except KafkaError as e:
            log.warning("dynamic broker configs not applied: %s", e.message)
            for layer, values in zip((self.config.dynamic_default, self.config.dynamic_broker),
                                     old):
                layer.clear()
                layer.update(values)
            return
        self.logs.set_default_config(defaults)

    def set_broker_configs(self, resource_name: str, values: dict,
                           validate_only: bool = False) -> None:
        """Replace the dynamic configs of this broker ("<node id>") or of the cluster ("")."""
        typed = self.check_broker_configs(resource_name, values)
        if validate_only:
            return
        layer = self.config.dynamic_default if resource_name == "" else self.config.dynamic_broker
        old = dict(layer)
        layer.clear()
        layer.update(typed)
        try:
            defaults = self.topic_config_defaults()   # INVALID_CONFIG if the mix is invalid
        except KafkaError:
            layer.clear()
            layer.update(old)
            raise
        self.logs.set_default_config(defaults)
        stored = {"cluster": {k: str(v) for k, v in self.config.dynamic_default.items()},
                  "broker": {k: str(v) for k, v in self.config.dynamic_broker.items()}}
        self.logs.files.write_atomic(DYNAMIC_CONFIGS_FILE,
                                     json.dumps(stored, indent=1, sort_keys=True).encode())

    def broker_configs(self, resource_name: str) -> dict:
        """The dynamic configs of one broker resource, as strings."""
        layer = self.config.dynamic_default if resource_name == "" else self.config.dynamic_broker
        return {k: str(v) for k, v in layer.items()}

    def group_configs(self, group_id: str) -> dict[str, str]:
        """The configs set on a group (coordinator/group_config.py): in a cluster the metadata
        image's (ConfigRecords of type GROUP), on a single broker its group config file's."""
        if self.cluster is not None:
            image = self.cluster.image
            return image.group_configs(group_id) if image is not None else {}
        return self._group_config_store().overrides(group_id)

    def set_group_configs(self, group_id: str, configs: dict,
                          validate_only: bool = False) -> None:
        """Replace a group's configs on a single broker (INVALID_CONFIG, INVALID_REQUEST)."""
        self._group_config_store().set(self.config, group_id, configs, validate_only)

    def _group_config_store(self):
        if self._group_configs is None:
            from trioka.coordinator.group_config import GroupConfigStore
            self._group_configs = GroupConfigStore(self.logs.files)
        return self._group_configs

    def set_topic_configs(self, name: str, configs: dict, validate_only: bool = False) -> None:
        """Replace a topic's config overrides (INVALID_CONFIG, UNKNOWN_TOPIC_OR_PARTITION)."""
        if self.logs.topic(name) is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"Topic {name} does not exist")
        for key, value in configs.items():
            if value is None:
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Null value not supported for topic configs: {key}")
        LogConfig.from_configs(configs, self.logs.default_config)
        if not validate_only:
            self.logs.set_topic_configs(name, configs)

    # --- listeners ---

    def set_listeners(self, listeners: list[Listener], advertised: str = "") -> None:
        """Record the bound listeners; advertise `advertised.listeners` or else the bound address."""
        self.listeners = listeners
        adv = {}
        if advertised:
            for a in parse_listeners(advertised):
                adv[a.name] = (a.host, a.port)
        for lst in listeners:
            if lst.name in adv:
                host, port = adv[lst.name]
                self._advertised[lst.name] = (host, port or lst.port)
            else:
                host = lst.host if lst.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
                self._advertised[lst.name] = (host, lst.port)

    def advertised_address(self, listener: Listener | None) -> tuple[str, int]:
        if listener is not None and listener.name in self._advertised:
            return self._advertised[listener.name]
        return next(iter(self._advertised.values()))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self._advertised.values())

    # --- topics ---

    def validate_topic_name(self, name: str) -> None:
        validate_topic_name(name)

    def topic_names(self) -> list[str]:
        if self.cluster is not None:
            return self.cluster.topic_names()
        return sorted(t.name for t in self.logs.topics())

    def topic(self, name: str):
        if self.cluster is not None:
            return self.cluster.topic(name)
        return self.logs.topic(name)

    def topic_by_id(self, topic_id):
        if self.cluster is not None:
            return self.cluster.topic_by_id(topic_id)
        return self.logs.topic_by_id(topic_id)

    def _partitions_of_new_topic(self, name: str, num_partitions: int | None) -> int:
        """The partition count a new topic gets (-1 or None: num.partitions), or Kafka's error
        for the name or the count."""
        self.validate_topic_name(name)
        if self.logs.topic(name) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        n = self.config.num_partitions if num_partitions in (None, -1) else num_partitions
        if n <= 0:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             "Number of partitions must be larger than 0.")
        return n

    def create_topic(self, name: str, num_partitions: int | None = None,
                     configs: dict | None = None):
        n = self._partitions_of_new_topic(name, num_partitions)
        self.logs.create_topic(name, n, dict(configs or {}))
        return self.logs.topic(name)

    async def create_topic_async(self, name: str, num_partitions: int | None = None,
                                 configs: dict | None = None, *, replication_factor: int = -1):
        """create_topic with its disk work (partition dirs, files, fsyncs: about 3 ms a
        partition) in a worker thread, so that a request creating many topics does not stall
        the event loop: CreateTopics and Metadata's auto-creation call this. In a cluster the
        controller creates it (CreateTopics), and this returns once the metadata is here."""
        if self.cluster is not None:
            return await self._create_topic_in_cluster(name, num_partitions, configs,
                                                       replication_factor)
        n = self._partitions_of_new_topic(name, num_partitions)
        creation = self.logs.begin_topic_creation(name, n, dict(configs or {}))
        try:
            await trio.to_thread.run_sync(creation.make_dirs)
        finally:
            # Registered even if this task was cancelled once its dirs were made, so that no
            # dir is left that a restart would adopt as a topic nobody created.
            self.logs.end_topic_creation(creation)
        self._partitions_added(n)
        return self.logs.topic(name)

    def delete_topic(self, name: str) -> None:
        self.logs.delete_topic(name)

    CLOSE_LOGS_SLICE = 250

    async def delete_topic_async(self, name: str) -> None:
        """delete_topic with its disk work in a worker thread: the topic is gone at once; its
        partition dirs are renamed `...-delete` (a rename each, 30-40 ms for 1,000 on the loop)
        and then removed (thousands of files) off the event loop; the name is free again once
        the renames are done."""
        async with self._topic_changes:
            deletion = self.logs.begin_topic_deletion(name, close=False)
            try:
                # The topic is gone for clients already; its logs close a slice at a time,
                # with other requests served in between (20 ms for 1,000 in one piece).
                while not deletion.close_logs(self.CLOSE_LOGS_SLICE):
                    await trio.lowlevel.checkpoint()
                await trio.to_thread.run_sync(deletion.rename_dirs)
            finally:
                # Even if this task was cancelled meanwhile: the thread finished its renames.
                self.logs.end_topic_deletion(deletion)
        # With any other renamed dir not removed yet (a partition this node stopped hosting).
        await trio.to_thread.run_sync(deletion.remove_dirs, self.logs.take_deleted_dirs())

    def create_partitions(self, name: str, total: int) -> None:
        self.logs.create_partitions(name, total)

    async def create_partitions_async(self, name: str, total: int) -> None:
        """create_partitions with its disk work (partition dirs, files, fsyncs: about 3 ms a
        partition) in a worker thread, as create_topic_async: CreatePartitions calls this.
        Growths and deletions of topics are applied one at a time, as Kafka's controller
        applies them, so that none sees a topic another is half-way through changing."""
        async with self._topic_changes:
            creation = self.logs.begin_partition_creation(name, total)
            try:
                await trio.to_thread.run_sync(creation.make_dirs)
            finally:
                # Added even if this task was cancelled once its dirs were made, so that no
                # dir is left that a restart would adopt as a partition nobody created.
                self.logs.end_partition_creation(creation)
            self._partitions_added(total - creation.first)

    def partition(self, name: str, index: int, *, reading: bool = False):
        """The PartitionLog of a topic partition, or UNKNOWN_TOPIC_OR_PARTITION;
        KAFKA_STORAGE_ERROR for writers (not `reading`) once the log dir is offline. In a
        cluster, only of a partition this node leads (NOT_LEADER_OR_FOLLOWER otherwise)."""
        if self.cluster is not None:
            self.cluster.replicas.leader(name, index)
            return self.logs.partition(name, index, reading=reading)
        topic = self.logs.topic(name)
        if topic is None or not 0 <= index < topic.num_partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             "This server does not host this topic-partition.")
        return self.logs.partition(name, index, reading=reading)

    # --- a node of a cluster (node/cluster_link.py) ---

    def check_leader_epoch(self, name: str, index: int, current_leader_epoch: int) -> int:
        """A request naming the partition's `current_leader_epoch` (-1: none), as Kafka checks it
        (KIP-320): an older epoch is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH; in a
        cluster NOT_LEADER_OR_FOLLOWER when this node does not lead it. Returns the epoch."""
        if self.cluster is not None:
            return self.cluster.replicas.leader(name, index, current_leader_epoch).state.leader_epoch
        epoch = self.leader_epoch
        if current_leader_epoch not in (-1, epoch):
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH if current_leader_epoch < epoch
                             else ErrorCode.UNKNOWN_LEADER_EPOCH)
        return epoch

    def leader_epoch_of(self, name: str, index: int) -> int:
        """The partition's current leader epoch (0 on a single broker, which never changes
        leader)."""
        if self.cluster is None:
            return self.leader_epoch
        return self.cluster.replicas.hosted(name, index).state.leader_epoch

    async def _create_topic_in_cluster(self, name: str, num_partitions: int | None,
                                       configs: dict | None, replication_factor: int = -1):
        from trioka.wire.protocol import request_class
        from trioka.wire.api_keys import ApiKey
        Request = request_class(ApiKey.CREATE_TOPICS)
        self.validate_topic_name(name)
        request = Request(timeout_ms=self.config.request_timeout_ms, validate_only=False, topics=[
            Request.CreatableTopic(
                name=name, num_partitions=-1 if num_partitions is None else num_partitions,
                replication_factor=replication_factor, assignments=[],
                configs=[Request.CreatableTopic.CreatableTopicConfig(name=k, value=str(v))
                         for k, v in (configs or {}).items()])])
        response = await self.cluster.forward(ApiKey.CREATE_TOPICS, request)
        result = response.topics[0]
        if result.error_code and result.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:
            raise KafkaError(result.error_code, result.error_message)
        if not await self.cluster.wait_for_metadata(lambda: self.topic(name) is not None):
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT,
                             f"Topic {name} was created but its metadata has not arrived")
        if result.error_code:
            raise KafkaError(result.error_code, result.error_message)
        return self.topic(name)

    def internal_topic_replication_factor(self, key: str) -> int:
        """offsets.topic.replication.factor / transaction.state.log.replication.factor: as set;
        unset, 1 on a single broker (trioka's default, one broker) and Kafka's 3 in a
        cluster."""
        if self.cluster is not None and not self.config.is_set(key):
            return 3
        return self.config.get(key)

    async def wait_ready(self) -> None:
        """Until this node may serve clients: at once on a single broker; in a cluster once it
        has registered, caught up with the metadata and been unfenced. A node that is not, within
        initial.broker.registration.timeout.ms, does not start (as Kafka's broker gives up)."""
        if self.cluster is None:
            return
        timeout_ms = self.config.initial_broker_registration_timeout_ms
        with self.network_clock.move_on_after(timeout_ms / 1000):
            await self.cluster.ready.wait()
        if not self.cluster.ready.is_set():
            raise RuntimeError(
                f"node {self.node_id} was not registered and unfenced by the controller at "
                f"{self.cluster.controller_host}:{self.cluster.controller_port} within "
                f"initial.broker.registration.timeout.ms ({timeout_ms} ms)")

    async def controlled_shutdown(self, timeout_s: float = 30.0) -> None:
        """Kafka's controlled shutdown before a clean stop: a node of a cluster first has the
        controller move its leaderships to other replicas, so producers and consumers fail over
        without waiting for its session to expire. Nothing to do on a single broker."""
        if self.cluster is not None:
            await self.cluster.controlled_shutdown(timeout_s)

    def partitions_view(self, name: str, listener=None) -> list:
        """Every partition of a topic as Metadata reports it (node/cluster_link.PartitionView):
        on a single broker it leads them all, alone, at leader epoch 0."""
        from trioka.node.cluster_link import PartitionView
        if self.cluster is not None:
            return self.cluster.partitions_of(name, listener.name if listener else None)
        node = self.node_id
        return [PartitionView(p, node, self.leader_epoch, [node], [node], [])
                for p in range(self.logs.topic(name).num_partitions)]

    def brokers_view(self, listener=None) -> list[tuple[int, str, int, str | None]]:
        """(id, host, port, rack) of the live brokers, at their address on `listener`."""
        if self.cluster is not None:
            return self.cluster.live_brokers(listener.name if listener else None)
        host, port = self.advertised_address(listener)
        return [(self.node_id, host, port, self.rack)]

    def fenced_brokers_view(self, listener=None) -> list[tuple[int, str, int, str | None]]:
        """(id, host, port, rack) of the registered brokers that are fenced (DescribeCluster v2,
        KIP-1073); a single broker is never fenced."""
        if self.cluster is not None:
            return self.cluster.registered_brokers(listener.name if listener else None,
                                                   fenced=True)
        return []

    @property
    def controller_id_for_clients(self) -> int:
        """The controller id Metadata and DescribeCluster give clients."""
        if self.cluster is not None:
            return self.cluster.controller_id_for_clients()
        return self.node_id

    def requests(self, api=None, client_id: str | None = None, since: int | None = None,
                 limit: int | None = None) -> list[dict]:
        """The request log (observe/request_log.py), oldest first, as dicts with Kafka's field
        names: the requests of API `api` (Produce, PRODUCE or 0), of this client id, logged
        after the entry whose `seq` is `since`; the newest `limit` of them. Empty when the log
        keeps nothing (trioka.request.log.size=0)."""
        logs = [] if self.request_log is None else [self.request_log]
        return render_entries(select_entries(logs, api, client_id, since, limit))

    def conformance_report(self) -> dict:
        """The conformance report (observe/conformance.py): per client, the APIs and versions
        it used, the errors it was answered and its violations of the protocol. In strict mode
        (`trioka.strict`) of every request since the start; otherwise derived from the
        requests the request log still holds."""
        from trioka.observe.conformance import conformance_report
        return conformance_report([self.request_log] if self.request_log is not None else [])
