"""The transaction coordinator: transactional ids, producer epochs, and ending transactions.

A transactional producer first calls InitProducerId with its transactional id: the coordinator
gives it a producer id and a new epoch, which fences every older producer with the same id (their
requests now fail with PRODUCER_FENCED, and their batches with INVALID_PRODUCER_EPOCH), and aborts
a transaction such a zombie left open. Each transaction then adds its partitions
(AddPartitionsToTxn) and consumer-group offsets (AddOffsetsToTxn, the group's `__consumer_offsets`
partition), and ends with EndTxn: the coordinator moves to PrepareCommit/PrepareAbort, writes a
COMMIT or ABORT marker to every partition of the transaction, and moves to
CompleteCommit/CompleteAbort. On one broker the markers are written directly (in Kafka they go
to the partitions' leaders with WriteTxnMarkers), so EndTxn usually returns with the transaction
complete. A marker that cannot be written (KAFKA_STORAGE_ERROR) keeps the transaction prepared
and is retried on a timer until it is, as Kafka's TransactionMarkerChannelManager retries; a
state `__transaction_state` refuses is not applied (the client gets NOT_COORDINATOR and retries).

Every state change is first written to the compacted internal topic `__transaction_state`
(partition `abs(hashCode(transactional id)) % 50`, TransactionLogKey/TransactionLogValue records,
as Kafka writes them); at startup the coordinator reads it back and finishes any transaction that
was in PrepareCommit/PrepareAbort when the broker stopped. Transactions left open longer than
their timeout are aborted by `expire(now)` with the producer's epoch bumped, so the zombie is
fenced. A transactional id with no transaction in progress and no update for
`transactional.id.expiration.ms` (7 days) expires: a tombstone in `__transaction_state` and it
is forgotten (`expire_transactional_ids(now)`, every
`transaction.remove.expired.transaction.cleanup.interval.ms`). The state machine is in
txn/states.py.

A node of a cluster coordinates the transactional ids of the `__transaction_state` partitions
it leads (coordinator/ownership.py): it loads a partition when it becomes its leader (and finishes
the transactions it finds prepared), answers its ids COORDINATOR_LOAD_IN_PROGRESS meanwhile, drops
them when it stops leading it, and answers the ids of other partitions NOT_COORDINATOR. Its
coordinator epoch for a partition is the partition's leader epoch, as in Kafka. Its state changes
are answered once the ISR has them (`replicated`). Markers for partitions another node leads go
there with WriteTxnMarkers (one sender task per transaction, retried until every marker is
written or the transaction is no longer this node's), and the transaction completes when the
last one is written.

All methods that change state are plain `def`: under trio each runs without interleaving.
"""

import logging

import trio

from trioka.config import TRANSACTION_VERSION
from trioka.coordinator.offsets import partition_for
from trioka.coordinator.ownership import CoordinatorPartitions, InternalTopicCreation, replicated
from trioka.log.batch import AppendOrigin
from trioka.log.records import encode_batch, iter_batches
from trioka.log.topics import (COORDINATOR_APPEND_ERRORS, OFFSETS_TOPIC,
                               TRANSACTION_STATE_TOPIC, coordinator_append_error)
from trioka.txn.states import TransactionState as S, can_transition
from trioka.wire import schema, types as t
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.txn")

TRANSACTION_STATE_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600",
                             "compression.type": "producer"}
MAX_EPOCH = 32767

# What the coordinator answers when `__transaction_state` refuses a write, as Kafka's
# TransactionStateManager.appendTransactionToLog maps the log's error: the coordinators' common
# map (log/topics.py), and a batch too large is UNKNOWN_SERVER_ERROR.
LOG_APPEND_ERRORS = {
    **COORDINATOR_APPEND_ERRORS,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.RECORD_LIST_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
}

# Transaction markers, as Kafka's TransactionMarkerChannelManager and its completion handler
# treat a marker's failure: a newer epoch of the producer (or of the coordinator) already wrote
# there, so this marker is stale and dropped; any other error (KAFKA_STORAGE_ERROR, ...) leaves
# the marker pending, and it is written again until it is, while the transaction stays in
# PrepareCommit/PrepareAbort (its partitions' last stable offsets wait for it). A partition
# whose topic is gone needs no marker.
STALE_MARKER_ERRORS = frozenset({ErrorCode.INVALID_PRODUCER_EPOCH,
                                 ErrorCode.TRANSACTION_COORDINATOR_FENCED})
# The pause between two tries of pending markers (Kafka's clients' retry.backoff.ms).
MARKER_RETRY_BACKOFF_MS = 100
# The states in which a transactional id may expire (Kafka's TransactionState.isExpirationAllowed):
# no transaction in progress.
EXPIRATION_ALLOWED = frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT})

# What EndTxn does, by state and outcome asked (True: commit), in three columns: the classic
# protocol; transactions v2 (EndTxn v5+) when the request is a retry of one already carried out
# (its epoch is the one before the bump); transactions v2 when it is not. A classic retry is told
# apart by the state alone. Transactions v2 may abort with no partition added: the epoch is bumped
# all the same.
_DONE, _END, _END_EMPTY, _INVALID, _CONCURRENT = "done", "end", "end-empty", "invalid", "busy"
END_TXN: dict[tuple[S, bool], tuple[str, str, str]] = {
    (S.ONGOING, True): (_END, _END, _END),
    (S.ONGOING, False): (_END, _END, _END),
    (S.EMPTY, True): (_INVALID, _INVALID, _INVALID),
    (S.EMPTY, False): (_INVALID, _END_EMPTY, _END_EMPTY),
    (S.COMPLETE_COMMIT, True): (_DONE, _DONE, _INVALID),
    (S.COMPLETE_COMMIT, False): (_INVALID, _INVALID, _END_EMPTY),
    (S.COMPLETE_ABORT, True): (_INVALID, _INVALID, _INVALID),
    (S.COMPLETE_ABORT, False): (_DONE, _DONE, _END_EMPTY),
    (S.PREPARE_COMMIT, True): (_CONCURRENT, _CONCURRENT, _CONCURRENT),
    (S.PREPARE_COMMIT, False): (_CONCURRENT, _CONCURRENT, _CONCURRENT),
    (S.PREPARE_ABORT, True): (_CONCURRENT, _CONCURRENT, _CONCURRENT),
    (S.PREPARE_ABORT, False): (_CONCURRENT, _CONCURRENT, _CONCURRENT),
    (S.PREPARE_EPOCH_FENCE, True): (_CONCURRENT, _CONCURRENT, _CONCURRENT),
    (S.PREPARE_EPOCH_FENCE, False): (_CONCURRENT, _CONCURRENT, _CONCURRENT),
    (S.DEAD, True): (_INVALID, _INVALID, _INVALID),
    (S.DEAD, False): (_INVALID, _INVALID, _INVALID),
}
KEY_VERSION = 0

TransactionLogKey = schema.record("TransactionLogKey").cls
TransactionLogValue = schema.record("TransactionLogValue").cls
PartitionsSchema = TransactionLogValue.PartitionsSchema


class TransactionMetadata:
    """What the coordinator knows of one transactional id."""
    __slots__ = ("transactional_id", "producer_id", "previous_producer_id", "next_producer_id",
                 "producer_epoch", "last_producer_epoch", "timeout_ms", "state", "partitions",
                 "start_ms", "last_update_ms", "client_transaction_version")

    def __init__(self, transactional_id: str, producer_id: int, timeout_ms: int, now_ms: int):
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.previous_producer_id = -1
        # Transactions v2: the producer id the transaction being completed hands over to, when
        # its epoch bump exhausted the current one.
        self.next_producer_id = -1
        self.producer_epoch = -1
        self.last_producer_epoch = -1
        self.timeout_ms = timeout_ms
        self.state = S.EMPTY
        self.partitions: set[tuple[str, int]] = set()
        self.start_ms = -1
        self.last_update_ms = now_ms
        # The transaction protocol the producer speaks (the request versions it uses): 2 for
        # transactions v2, whose markers carry an epoch one above the transaction's data.
        self.client_transaction_version = 0

    def saved(self) -> tuple:
        """Every field, for `restore` to put back when `__transaction_state` refuses a change:
        Kafka applies a transition only once its log has it."""
        return tuple(set(value) if type(value) is set else value
                     for value in (getattr(self, name) for name in self.__slots__))

    def restore(self, saved: tuple) -> None:
        for name, value in zip(self.__slots__, saved):
            setattr(self, name, value)

    def transition(self, target: S, now_ms: int) -> None:
        if not can_transition(self.state, target):
            raise KafkaError(ErrorCode.INVALID_TXN_STATE,
                             f"Transaction {self.transactional_id} cannot go from "
                             f"{self.state.display} to {target.display}")
        self.state = target
        self.last_update_ms = now_ms

    def bump_epoch(self, new_producer_id) -> None:
        """The next epoch; a new producer id once the epoch would overflow."""
        if self.producer_epoch >= MAX_EPOCH - 1:
            self.previous_producer_id, self.last_producer_epoch = self.producer_id, self.producer_epoch
            self.producer_id = new_producer_id()
            self.producer_epoch = 0
        else:
            self.last_producer_epoch = self.producer_epoch
            self.producer_epoch += 1

    def fence_epoch(self) -> None:
        """The epoch above the current one, to fence the producer: up to 32767, an epoch no
        client is ever given (see bump_epoch), so fencing never needs a new producer id."""
        self.last_producer_epoch = -1
        self.producer_epoch += 1

    def to_record(self):
        by_topic: dict[str, list[int]] = {}
        for topic, p in sorted(self.partitions):
            by_topic.setdefault(topic, []).append(p)
        return TransactionLogValue(
            producer_id=self.producer_id, producer_epoch=self.producer_epoch,
            transaction_timeout_ms=self.timeout_ms, transaction_status=int(self.state),
            transaction_partitions=[PartitionsSchema(topic=t, partition_ids=ps)
                                    for t, ps in by_topic.items()],
            transaction_last_update_timestamp_ms=self.last_update_ms,
            transaction_start_timestamp_ms=self.start_ms,
            previous_producer_id=self.previous_producer_id,
            next_producer_id=self.next_producer_id,
            client_transaction_version=self.client_transaction_version)


class TransactionCoordinator:
    def __init__(self, broker):
        self.broker = broker
        self.transactions: dict[str, TransactionMetadata] = {}
        # producer id -> transactional id, for the produce path's "is this partition in the
        # transaction" check (KIP-890 part 1).
        self.by_producer: dict[int, str] = {}
        self.coordinator_epoch = 0
        # Transactions in PrepareCommit/PrepareAbort with markers still to write (their
        # `partitions` are the partitions still without one), and whether a timer retries them.
        self.pending_markers: set[str] = set()
        self._marker_retry_scheduled = False
        # A node of a cluster (see the module's docstring); None on a single broker.
        self.cluster = broker.cluster
        self.partitions = None
        # Made when the first FindCoordinator needs it (coordinator/ownership.py).
        self.topic_creation = InternalTopicCreation(
            broker, TRANSACTION_STATE_TOPIC, broker.config.transaction_state_log_num_partitions,
            broker.internal_topic_replication_factor("transaction.state.log.replication.factor"),
            TRANSACTION_STATE_CONFIGS)
        if self.cluster is not None:
            self.partitions = CoordinatorPartitions(TRANSACTION_STATE_TOPIC)
            self.cluster.replicas.leadership_listeners.append(self.on_leadership)
            # Transactions whose markers to other nodes' partitions are being sent.
            self.marker_senders: set[str] = set()
            self._channels: dict = {}

    # --- the internal topic ---

    @property
    def num_partitions(self) -> int:
        topic = self.broker.logs.topic(TRANSACTION_STATE_TOPIC) if self.cluster is None else \
            self.cluster.topic(TRANSACTION_STATE_TOPIC)
        return topic.num_partitions if topic else \
            self.broker.config.transaction_state_log_num_partitions

    def _persist(self, meta: TransactionMetadata, now_ms: int) -> None:
        """Write the transactional id's state to `__transaction_state`; the coordinator's error
        (LOG_APPEND_ERRORS) if the log refuses it."""
        try:
            self._append_to_log(meta, now_ms)
        except KafkaError as e:
            mapped = coordinator_append_error(
                e, f"Cannot write the state of {meta.transactional_id} to "
                   f"{TRANSACTION_STATE_TOPIC}", LOG_APPEND_ERRORS)
            if mapped is e:
                raise
            raise mapped from e

    def _append_to_log(self, meta: TransactionMetadata, now_ms: int) -> None:
        logs = self.broker.logs
        if self.cluster is None:
            logs.ensure_internal_topic(TRANSACTION_STATE_TOPIC, self.num_partitions,
                                       dict(TRANSACTION_STATE_CONFIGS), now_ms=now_ms)
        key = schema.encode_record("TransactionLogKey",
                                   TransactionLogKey(transactional_id=meta.transactional_id),
                                   KEY_VERSION)
        # transaction.version 1+ writes the flexible value (version 1) with the producer ids and
        # the client's transaction version as tagged fields; level 0, Kafka 3.x's version 0.
        value_version = 1 if self.broker.features.get(TRANSACTION_VERSION, 0) >= 1 else 0
        value = None if meta.state == S.DEAD else schema.encode_record(
            "TransactionLogValue", meta.to_record(), value_version)
        index = partition_for(meta.transactional_id, self.num_partitions)
        if self.cluster is not None:
            # Only the leader writes, with enough replicas in sync for acks=all.
            hosted = self.cluster.replicas.check_append(TRANSACTION_STATE_TOPIC, index, -1)
            hosted.log.append(encode_batch([(key, value, [], now_ms)]), now_ms=now_ms,
                              origin=AppendOrigin.COORDINATOR)
            self.cluster.replicas.appended(hosted)
            return
        partition = logs.partition(TRANSACTION_STATE_TOPIC, index)
        partition.append(encode_batch([(key, value, [], now_ms)]), now_ms=now_ms,
                         origin=AppendOrigin.COORDINATOR)

    def load(self, now_ms: int) -> None:
        """Read `__transaction_state` back; finish transactions caught in Prepare*. (A node of
        a cluster loads each partition when it becomes its leader: `on_leadership`.)"""
        topic = self.broker.logs.topic(TRANSACTION_STATE_TOPIC)
        if topic is None or self.cluster is not None:
            return
        for partition in topic.logs:
            self._replay_partition(partition, partition.high_watermark)
        self._complete_prepared(self.transactions.values(), now_ms)

    def _replay_partition(self, partition, upto: int) -> None:
        offset = partition.log_start_offset
        while offset < upto:
            read = partition.read(offset, 1 << 20, isolation_upper=upto)
            if not read.size:
                break
            for batch in iter_batches(read.records):
                offset = batch.next_offset
                for record in batch.records:
                    self._replay(record.key, record.value)

    def _complete_prepared(self, transactions, now_ms: int) -> None:
        for meta in list(transactions):
            if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                log.info("completing transaction %s left in %s", meta.transactional_id,
                         meta.state.display)
                self._write_markers(meta, meta.state == S.PREPARE_COMMIT, now_ms)

    def _replay(self, key, value) -> None:
        _, k = schema.decode_record("TransactionLogKey", key)
        tid = k.transactional_id
        if value is None:
            old = self.transactions.pop(tid, None)
            if old is not None:
                self.by_producer.pop(old.producer_id, None)
            return
        _, v = schema.decode_record("TransactionLogValue", value)
        meta = TransactionMetadata(tid, v.producer_id, v.transaction_timeout_ms,
                                   v.transaction_last_update_timestamp_ms)
        meta.producer_epoch = v.producer_epoch
        meta.state = S(v.transaction_status)
        meta.partitions = {(p.topic, i) for p in v.transaction_partitions or [] for i in
                           p.partition_ids}
        meta.start_ms = v.transaction_start_timestamp_ms
        meta.previous_producer_id = v.previous_producer_id
        meta.next_producer_id = v.next_producer_id
        meta.client_transaction_version = v.client_transaction_version
        old = self.transactions.get(tid)
        if old is not None:
            self.by_producer.pop(old.producer_id, None)
        self.transactions[tid] = meta
        self.by_producer[meta.producer_id] = tid

    # --- a node of a cluster: the partitions it coordinates ---

    def partition_of(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.num_partitions)

    def check_coordinator(self, transactional_id: str) -> None:
        """KafkaError NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS unless this node
        coordinates the transactional id now (a single broker coordinates every id)."""
        if self.partitions is not None:
            self.partitions.check(self.partition_of(transactional_id))

    def coordinator_error(self, transactional_id: str) -> int:
        if self.partitions is None:
            return ErrorCode.NONE
        return self.partitions.error(self.partition_of(transactional_id))

    def coordinator_epoch_of(self, transactional_id: str) -> int:
        """The epoch markers carry: on a node of a cluster the leader epoch of the id's
        `__transaction_state` partition (Kafka's coordinator epoch)."""
        if self.partitions is None:
            return self.coordinator_epoch
        return self.partitions.epochs.get(self.partition_of(transactional_id),
                                          self.coordinator_epoch)

    def loading(self) -> bool:
        return self.partitions is not None and \
            len(self.partitions.active()) < len(self.partitions.states)

    async def replicated(self, transactional_id: str) -> int:
        """Wait until the id's state written so far is on the whole ISR (acks=-1);
        ErrorCode.NONE at once on a single broker. See ownership.replicated."""
        if self.cluster is None:
            return ErrorCode.NONE
        return await replicated(self.cluster.replicas,
                                TRANSACTION_STATE_TOPIC, self.partition_of(transactional_id),
                                self.broker.config.request_timeout_ms)

    def on_leadership(self, hosted, is_leader: bool) -> None:
        """The replica manager's leadership event: load a `__transaction_state` partition this
        node now leads, unload one it no longer leads."""
        if hosted.topic != TRANSACTION_STATE_TOPIC:
            return
        if is_leader:
            epoch = hosted.state.leader_epoch
            if self.partitions.leads(hosted.index, epoch):
                return
            self.unload_partition(hosted.index)
            self.partitions.became_leader(hosted.index, epoch)
            if not self.broker.spawn_coordinator_task(self._load_soon, hosted.index, epoch):
                self.load_partition(hosted.index, epoch, self.broker.clock.wall_ms())
        elif self.partitions.stopped_leading(hosted.index):
            self.unload_partition(hosted.index)

    async def _load_soon(self, index: int, epoch: int) -> None:
        await trio.lowlevel.checkpoint()
        self.load_partition(index, epoch, self.broker.clock.wall_ms())

    def load_partition(self, index: int, epoch: int, now_ms: int) -> bool:
        """Replay one partition to its log end and serve its ids; transactions it left
        prepared are completed (their markers written again). False when the leadership of
        `epoch` ended meanwhile."""
        if not self.partitions.is_loading(index, epoch):
            return False
        try:
            partition = self.broker.logs.partition(TRANSACTION_STATE_TOPIC, index, reading=True)
            self._replay_partition(partition, partition.log_end_offset)
        except KafkaError as e:
            log.error("%s-%d could not be loaded: %s", TRANSACTION_STATE_TOPIC, index, e.message)
            return False
        self.partitions.loaded(index, epoch)
        log.info("loaded the transactions of %s-%d (coordinator epoch %d)",
                 TRANSACTION_STATE_TOPIC, index, epoch)
        self._complete_prepared([m for tid, m in self.transactions.items()
                                 if self.partition_of(tid) == index], now_ms)
        return True

    def unload_partition(self, index: int) -> None:
        """Forget the ids of a partition this node no longer coordinates (their marker senders
        stop at their next round)."""
        for tid in [tid for tid in self.transactions if self.partition_of(tid) == index]:
            meta = self.transactions.pop(tid)
            if self.by_producer.get(meta.producer_id) == tid:
                del self.by_producer[meta.producer_id]
            self.pending_markers.discard(tid)

    # --- InitProducerId ---

    def init_producer_id(self, transactional_id: str, timeout_ms: int, producer_id: int,
                         producer_epoch: int, now_ms: int) -> tuple[int, int]:
        """(producer id, epoch) for a transactional producer, or KafkaError."""
        if transactional_id == "":
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Empty transactional id")
        if not t.fits_string(transactional_id):
            # The key of `__transaction_state` holds the id as an int16-length string.
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"The transactional id is longer than {t.MAX_STRING_BYTES} bytes, "
                             f"which __transaction_state cannot hold")
        self.check_coordinator(transactional_id)
        if timeout_ms <= 0 or timeout_ms > self.broker.config.transaction_max_timeout_ms:
            raise KafkaError(ErrorCode.INVALID_TRANSACTION_TIMEOUT,
                             f"Transaction timeout {timeout_ms} ms is not in (0, "
                             f"{self.broker.config.transaction_max_timeout_ms}]")
        meta = self.transactions.get(transactional_id)
        if meta is None:
            meta = TransactionMetadata(transactional_id, self.broker.producer_ids.generate(),
                                       timeout_ms, now_ms)
            meta.producer_epoch = 0
            self._store(meta, now_ms)
            return meta.producer_id, meta.producer_epoch
        retry = False
        if producer_id != -1:
            # KIP-360: a producer resuming after an error names what it had and gets the next
            # epoch. Sent again because that answer was lost, it names the epoch it had before
            # the bump (with the old producer id when the epoch overflowed): it gets the
            # current epoch again. Anything else is an older incarnation.
            current = (producer_id, producer_epoch) == (meta.producer_id, meta.producer_epoch)
            retry = meta.last_producer_epoch >= 0 and \
                producer_epoch == meta.last_producer_epoch and \
                producer_id in (meta.producer_id, meta.previous_producer_id)
            if not (current or retry):
                raise KafkaError(ErrorCode.PRODUCER_FENCED,
                                 f"Producer {producer_id} epoch {producer_epoch} of "
                                 f"{transactional_id} is fenced")
        if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT, S.PREPARE_EPOCH_FENCE):
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS,
                             f"Transaction {transactional_id} is completing")
        if meta.state == S.ONGOING:
            # Fence the previous producer and abort what it left open; the client retries.
            self._abort_with_bumped_epoch(meta, now_ms)
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS,
                             f"Aborted the open transaction of {transactional_id}; retry")
        if retry:
            return meta.producer_id, meta.producer_epoch
        old_pid = meta.producer_id
        meta.bump_epoch(self.broker.producer_ids.generate)
        if producer_id == -1:
            # A new producer fenced every earlier one: none of them may come back as a retry.
            meta.last_producer_epoch = -1
        meta.timeout_ms = timeout_ms
        meta.partitions = set()
        meta.start_ms = -1
        meta.transition(S.EMPTY, now_ms)
        if old_pid != meta.producer_id:
            self.by_producer.pop(old_pid, None)
        self._store(meta, now_ms)
        return meta.producer_id, meta.producer_epoch

    def _store(self, meta: TransactionMetadata, now_ms: int) -> None:
        self.transactions[meta.transactional_id] = meta
        self.by_producer[meta.producer_id] = meta.transactional_id
        self._persist(meta, now_ms)

    # --- the transaction's partitions ---

    def _producer(self, transactional_id: str, producer_id: int, producer_epoch: int):
        """The metadata of the transactional id, if this producer is its current one."""
        if not transactional_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Empty transactional id")
        self.check_coordinator(transactional_id)
        meta = self.transactions.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                             f"Producer id {producer_id} does not belong to {transactional_id}")
        if producer_epoch != meta.producer_epoch:
            raise KafkaError(ErrorCode.PRODUCER_FENCED,
                             f"Epoch {producer_epoch} of {transactional_id} is fenced by epoch "
                             f"{meta.producer_epoch}")
        return meta

    def _validate(self, transactional_id: str, producer_id: int, producer_epoch: int):
        """As _producer, and the transaction must not be completing."""
        meta = self._producer(transactional_id, producer_id, producer_epoch)
        if meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT, S.PREPARE_EPOCH_FENCE):
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS,
                             f"Transaction {transactional_id} is completing")
        return meta

    def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                       partitions: list[tuple[str, int]], now_ms: int,
                       transaction_version: int = 0) -> None:
        """AddPartitionsToTxn: validated first (KafkaError for the whole request). With
        transactions v2 (`transaction_version` 2) the partitions come from a Produce or a
        TxnOffsetCommit that adds them implicitly, and the first one starts the transaction."""
        meta = self._validate(transactional_id, producer_id, producer_epoch)
        new = set(partitions) - meta.partitions
        if not new and meta.state == S.ONGOING:
            return
        saved = meta.saved()
        meta.transition(S.ONGOING, now_ms)
        meta.client_transaction_version = transaction_version
        if meta.start_ms < 0 or not meta.partitions:
            meta.start_ms = now_ms
        meta.partitions |= new
        # Refused, the partitions are not in the transaction: a retry must write them.
        self._persist_or_restore(meta, saved, now_ms)

    def verify_partitions_in_transaction(self, transactional_id: str, producer_id: int,
                                         producer_epoch: int,
                                         partitions: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """AddPartitionsToTxn with `verify_only` (Kafka's handleVerifyPartitionsInTransaction): a
        partition leader asks which of `partitions` are in the producer's transaction; those
        are returned. The producer is checked as for add_partitions (KafkaError for the whole
        request)."""
        meta = self._validate(transactional_id, producer_id, producer_epoch)
        return {tp for tp in partitions if tp in meta.partitions}

    def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                    group_id: str, now_ms: int) -> None:
        """AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction."""
        groups = self.broker.groups
        self.add_partitions(transactional_id, producer_id, producer_epoch,
                            [(OFFSETS_TOPIC, groups.partition_for(group_id))], now_ms)

    def in_transaction(self, producer_id: int, producer_epoch: int, topic: str,
                       partition: int) -> bool:
        """Is the partition in this producer's ongoing transaction, at this epoch?"""
        tid = self.by_producer.get(producer_id)
        meta = self.transactions.get(tid) if tid is not None else None
        return (meta is not None and meta.state == S.ONGOING
                and meta.producer_epoch == producer_epoch and (topic, partition) in meta.partitions)

    def verify_partition(self, transactional_id: str | None, producer_id: int,
                         producer_epoch: int, topic: str, partition: int, add: bool,
                         now_ms: int) -> None:
        """KIP-890: what a partition leader asks the coordinator before it appends a
        transactional batch (or the group coordinator before it writes transactional offsets).
        Part 1 (`add` false, the classic protocol) only verifies: the partition must be in the
        producer's transaction, else TRANSACTION_ABORTABLE. Part 2 (`add` true: Produce v12+,
        TxnOffsetCommit v5+) adds it, starting the transaction if none is open. Either way an
        unknown transactional id or another producer id is INVALID_PRODUCER_ID_MAPPING, another
        epoch PRODUCER_FENCED and a transaction being completed CONCURRENT_TRANSACTIONS.
        Without a transactional id (a client that sent none) the producer id names it."""
        if transactional_id is None:
            transactional_id = self.by_producer.get(producer_id, "")
            if not transactional_id:
                raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                                 f"Producer {producer_id} has no transactional id")
        if add:
            self.add_partitions(transactional_id, producer_id, producer_epoch,
                                [(topic, partition)], now_ms, transaction_version=2)
            return
        meta = self._validate(transactional_id, producer_id, producer_epoch)
        if (topic, partition) not in meta.partitions:
            raise KafkaError(ErrorCode.TRANSACTION_ABORTABLE,
                             f"Partition {topic}-{partition} was not added to the transaction "
                             f"of {transactional_id}")

    async def verify_partition_anywhere(self, transactional_id: str | None, producer_id: int,
                                        producer_epoch: int, topic: str, partition: int,
                                        add: bool, now_ms: int) -> None:
        """`verify_partition`, asked of the id's coordinator wherever it runs: here on a single
        broker or when this node coordinates the id; else, on a node of a cluster, with
        AddPartitionsToTxn v4+ to the leader of the id's `__transaction_state` partition
        (`verify_only` unless `add`), as Kafka's AddPartitionsToTxnManager asks it. KafkaError
        with the coordinator's answer; COORDINATOR_NOT_AVAILABLE when it cannot be reached."""
        if self.cluster is None or not transactional_id or \
                self.coordinator_error(transactional_id) != ErrorCode.NOT_COORDINATOR:
            self.verify_partition(transactional_id, producer_id, producer_epoch, topic,
                                  partition, add, now_ms)
            return
        from trioka.wire.api_keys import ApiKey
        from trioka.wire.protocol import request_class
        Request = request_class(ApiKey.ADD_PARTITIONS_TO_TXN)
        Transaction = Request.AddPartitionsToTxnTransaction
        unavailable = KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                 f"The coordinator of {transactional_id} is not available")
        view = self.cluster.image.topic(TRANSACTION_STATE_TOPIC) if self.cluster.image else None
        registration = None if view is None else \
            view.partitions.get(partition_for(transactional_id, len(view.partitions)))
        if registration is None or registration.leader < 0:
            raise unavailable
        channel = self._channel(registration.leader, "txn-verify")
        if channel is None:
            raise unavailable
        request = Request(transactions=[Transaction(
            transactional_id=transactional_id, producer_id=producer_id,
            producer_epoch=producer_epoch, verify_only=not add,
            topics=[Request.AddPartitionsToTxnTopic(name=topic, partitions=[partition])])])
        try:
            response = await channel.request(ApiKey.ADD_PARTITIONS_TO_TXN, request)
        except OSError as e:
            log.debug("AddPartitionsToTxn to node %d failed: %s", registration.leader, e)
            raise unavailable from None
        code = response.error_code
        for result in response.results_by_transaction:
            for topic_result in result.topic_results:
                for p in topic_result.results_by_partition:
                    code = code or p.partition_error_code
        if code:
            raise KafkaError(code, f"The coordinator of {transactional_id} answered "
                                   f"{ErrorCode(code).name} for {topic}-{partition}")

    # --- ending ---

    def end_transaction(self, transactional_id: str, producer_id: int, producer_epoch: int,
                        commit: bool, now_ms: int, transaction_version: int = 0
                        ) -> tuple[int, int]:
        """EndTxn: PrepareCommit/PrepareAbort, markers everywhere, CompleteCommit/Abort (the
        END_TXN table). The producer id and epoch the producer goes on with: new ones only with
        transactions v2 (`transaction_version` 2, EndTxn v5+), where the epoch goes up by one as
        the transaction ends and its markers carry the new epoch, so that nothing the producer
        sent in this transaction can land in the next one."""
        if transaction_version >= 2:
            meta, retry = self._v2_producer(transactional_id, producer_id, producer_epoch)
            column = 1 if retry else 2
        else:
            meta, column = self._producer(transactional_id, producer_id, producer_epoch), 0
        state = meta.state
        action = END_TXN[(state, commit)][column]
        if action is _DONE:
            return meta.producer_id, meta.producer_epoch    # a retry of an EndTxn that finished
        if action is _CONCURRENT:
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS,
                             f"Transaction {transactional_id} is completing")
        if action is _INVALID:
            raise KafkaError(ErrorCode.INVALID_TXN_STATE,
                             f"EndTxn({'commit' if commit else 'abort'}) of {transactional_id} "
                             f"in state {state.display}")
        saved = meta.saved()
        if transaction_version >= 2:
            if meta.producer_epoch >= MAX_EPOCH - 1:
                # The bump takes the last epoch (never given to a client); the transaction's
                # end hands the producer a new id at epoch 0.
                meta.next_producer_id = self.broker.producer_ids.generate()
            meta.last_producer_epoch = meta.producer_epoch
            meta.producer_epoch += 1
        meta.client_transaction_version = transaction_version
        if action is _END_EMPTY:
            meta.start_ms = now_ms
        meta.transition(S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, now_ms)
        self._persist_or_restore(meta, saved, now_ms)
        self._write_markers(meta, commit, now_ms)
        return meta.producer_id, meta.producer_epoch

    def _persist_or_restore(self, meta: TransactionMetadata, saved: tuple, now_ms: int) -> None:
        """Write the state; if the log refuses it, the metadata is as it was (`saved`) and the
        error goes to the caller (the client retries, as with Kafka's NOT_COORDINATOR)."""
        try:
            self._persist(meta, now_ms)
        except KafkaError:
            meta.restore(saved)
            raise

    def _v2_producer(self, transactional_id: str, producer_id: int, producer_epoch: int):
        """The metadata an EndTxn v5+ of this producer acts on, and whether the request is a
        retry: the same epoch is the current transaction; a retry of an EndTxn whose answer was
        lost names the epoch before the bump or, when that bump exhausted the epochs of the
        producer id, the id before it."""
        if not transactional_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Empty transactional id")
        self.check_coordinator(transactional_id)
        meta = self.transactions.get(transactional_id)
        if meta is None:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                             f"Unknown transactional id {transactional_id}")
        retry_on_bump = meta.producer_epoch == producer_epoch + 1
        retry_on_overflow = (meta.previous_producer_id == producer_id and meta.producer_epoch == 0
                             and producer_epoch == MAX_EPOCH - 1)
        if meta.producer_id != producer_id and not retry_on_overflow:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                             f"Producer id {producer_id} does not belong to {transactional_id}")
        # Which retries each state allows; any other epoch than the current one is fenced.
        allowed = {S.PREPARE_COMMIT: retry_on_bump, S.PREPARE_ABORT: retry_on_bump,
                   S.COMPLETE_COMMIT: retry_on_bump or retry_on_overflow,
                   S.COMPLETE_ABORT: retry_on_bump or retry_on_overflow}.get(meta.state, False)
        if not (allowed or producer_epoch == meta.producer_epoch):
            raise KafkaError(ErrorCode.PRODUCER_FENCED,
                             f"Epoch {producer_epoch} of {transactional_id} is fenced by epoch "
                             f"{meta.producer_epoch}")
        return meta, retry_on_bump or retry_on_overflow

    def _write_markers(self, meta: TransactionMetadata, commit: bool, now_ms: int) -> None:
        """A marker to every partition of the transaction that has none yet (they leave
        `meta.partitions` as they get one), then the Complete state. A marker that cannot be
        written now stays pending (STALE_MARKER_ERRORS above): the transaction stays in
        PrepareCommit/PrepareAbort and `retry_markers` tries again on a timer."""
        first_try = meta.transactional_id not in self.pending_markers
        elsewhere = False     # partitions other nodes lead: WriteTxnMarkers (a sender task)
        for topic, index in sorted(meta.partitions):
            try:
                hosted = None
                if self.cluster is not None:
                    hosted = self._led_here(topic, index)
                    if hosted is None:
                        elsewhere = True
                        continue
                    partition = hosted.log
                else:
                    partition = self.broker.logs.partition(topic, index)
                partition.append_marker(meta.producer_id, meta.producer_epoch, commit,
                                        self.coordinator_epoch_of(meta.transactional_id), now_ms,
                                        transaction_version=meta.client_transaction_version)
                if hosted is not None:
                    self.cluster.replicas.appended(hosted)
            except KafkaError as e:
                if e.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    meta.partitions.discard((topic, index))  # deleted meanwhile: nothing to mark
                elif e.code in STALE_MARKER_ERRORS:
                    log.warning("transaction marker of %s for %s-%d refused: %s",
                                meta.transactional_id, topic, index, e.message)
                    meta.partitions.discard((topic, index))
                else:
                    (log.warning if first_try else log.debug)(
                        "transaction marker of %s for %s-%d not written (%s); the transaction "
                        "stays in %s and the marker is retried", meta.transactional_id, topic,
                        index, e.message or e.code.name, meta.state.display)
                continue
            meta.partitions.discard((topic, index))
            if topic == OFFSETS_TOPIC:
                self.broker.groups.offsets.complete_transaction(meta.producer_id, commit)
        if elsewhere:
            self._start_marker_sender(meta.transactional_id)
        if meta.partitions:
            self.pending_markers.add(meta.transactional_id)
            self._schedule_marker_retry()
            return
        saved, producer_id = meta.saved(), meta.producer_id
        meta.transition(S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT, now_ms)
        meta.partitions = set()
        meta.start_ms = -1
        if meta.next_producer_id >= 0:
            # Transactions v2 ran out of epochs: the next transaction is the new id's, from 0.
            meta.previous_producer_id = meta.producer_id
            meta.producer_id, meta.producer_epoch = meta.next_producer_id, 0
            meta.next_producer_id = -1
        try:
            self._persist(meta, now_ms)
        except KafkaError as e:
            # Every marker is written but not the Complete state: the transaction stays
            # prepared, and the completion is retried with the markers (Kafka's
            # retryLogAppends); the client's EndTxn was answered once Prepare* was written.
            meta.restore(saved)
            log.warning("transaction %s: its markers are written but not its completion (%s); "
                        "retried", meta.transactional_id, e.message or e.code.name)
            self.pending_markers.add(meta.transactional_id)
            self._schedule_marker_retry()
        else:
            self.pending_markers.discard(meta.transactional_id)
            if meta.producer_id != producer_id:
                self.by_producer.pop(producer_id, None)
                self.by_producer[meta.producer_id] = meta.transactional_id

    # --- markers to other nodes (a node of a cluster) ---

    def _led_here(self, topic: str, index: int):
        """The hosted replica if this node leads topic-index; None when another node does (or
        none yet); KafkaError UNKNOWN_TOPIC_OR_PARTITION when the metadata has no such
        partition (it was deleted: no marker is needed)."""
        hosted = self.cluster.replicas.partitions.get((topic, index))
        if hosted is not None and hosted.state.is_leader:
            return hosted
        info = self.cluster.topic(topic)
        if info is None or not 0 <= index < info.num_partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"{topic}-{index} does not exist")
        return None

    def _start_marker_sender(self, transactional_id: str) -> None:
        if transactional_id in self.marker_senders:
            return
        if self.broker.spawn_coordinator_task(self._send_markers_until_written,
                                              transactional_id):
            self.marker_senders.add(transactional_id)

    def _channel(self, node_id: int, purpose: str):
        """This coordinator's channel to another node for `purpose` (None while the node is
        unknown); kept for the next request."""
        channel = self._channels.get((node_id, purpose))
        if channel is None:
            channel = self.cluster.broker_channel(node_id, purpose)
            if channel is not None:
                self._channels[(node_id, purpose)] = channel
        return channel

    async def _send_markers_until_written(self, transactional_id: str) -> None:
        """Kafka's TransactionMarkerChannelManager for one transaction: send WriteTxnMarkers to
        the current leader of each partition other nodes lead, again and again until every
        marker is written (a newer epoch having written there, or the partition being gone,
        also ends its marker); then complete the transaction. Ends early when the transaction
        is no longer prepared here (completed, or its partition unloaded)."""
        try:
            while True:
                meta = self.transactions.get(transactional_id)
                if meta is None or meta.state not in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                    return
                by_leader: dict[int, list[tuple[str, int]]] = {}
                local = False
                for topic, index in sorted(meta.partitions):
                    view = self.cluster.image.topic(topic) if self.cluster.image else None
                    registration = view.partitions.get(index) if view is not None else None
                    leader = registration.leader if registration is not None else -1
                    if leader == self.broker.node_id or registration is None:
                        local = True     # written (or dropped) by _write_markers
                    elif leader >= 0:
                        by_leader.setdefault(leader, []).append((topic, index))
                if not by_leader:
                    if local or not meta.partitions:
                        self._write_markers(meta, meta.state == S.PREPARE_COMMIT,
                                            self.broker.clock.wall_ms())
                    if not meta.partitions or meta.state not in (S.PREPARE_COMMIT,
                                                                 S.PREPARE_ABORT):
                        return
                for leader, partitions in by_leader.items():
                    await self._send_markers(meta, leader, partitions)
                if self.transactions.get(transactional_id) is not meta:
                    return
                if not meta.partitions and meta.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                    self._write_markers(meta, meta.state == S.PREPARE_COMMIT,
                                        self.broker.clock.wall_ms())
                    return
                # Delivering markers is the machinery between nodes: the cluster link's real
                # time, also under virtual time (the markers' timestamps are the broker's).
                await self.cluster.clock.sleep(MARKER_RETRY_BACKOFF_MS / 1000)
        finally:
            self.marker_senders.discard(transactional_id)

    async def _send_markers(self, meta: TransactionMetadata, leader: int,
                            partitions: list[tuple[str, int]]) -> None:
        """One WriteTxnMarkers to `leader`; then `_markers_answered`."""
        from trioka.wire.api_keys import ApiKey
        from trioka.wire.protocol import request_class
        Request = request_class(ApiKey.WRITE_TXN_MARKERS)
        channel = self._channel(leader, "txn-markers")
        if channel is None:
            return
        commit, state, epoch = meta.state == S.PREPARE_COMMIT, meta.state, meta.producer_epoch
        by_topic: dict[str, list[int]] = {}
        for topic, index in partitions:
            by_topic.setdefault(topic, []).append(index)
        request = Request(markers=[Request.WritableTxnMarker(
            producer_id=meta.producer_id, producer_epoch=epoch, transaction_result=commit,
            coordinator_epoch=self.coordinator_epoch_of(meta.transactional_id),
            topics=[Request.WritableTxnMarker.WritableTxnMarkerTopic(
                name=topic, partition_indexes=indexes) for topic, indexes in by_topic.items()])])
        try:
            response = await channel.request(ApiKey.WRITE_TXN_MARKERS, request)
        except OSError as e:
            log.debug("transaction markers of %s to node %d not sent: %s",
                      meta.transactional_id, leader, e)
            return
        self._markers_answered(meta, state, epoch, leader, response)

    def _markers_answered(self, meta: TransactionMetadata, state: S, epoch: int, leader: int,
                          response) -> None:
        """The partitions a WriteTxnMarkers wrote (or that need no marker) leave
        `meta.partitions`, unless the transaction moved on while it was sent."""
        if meta.state is not state or meta.producer_epoch != epoch:
            return
        for result in response.markers:
            for topic in result.topics:
                for p in topic.partitions:
                    code = p.error_code
                    if code == ErrorCode.NONE or code in STALE_MARKER_ERRORS or \
                            code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        if code != ErrorCode.NONE:
                            log.warning("transaction marker of %s for %s-%d refused by node "
                                        "%d: %s", meta.transactional_id, topic.name,
                                        p.partition_index, leader, ErrorCode(code).name)
                        meta.partitions.discard((topic.name, p.partition_index))

    def _abort_with_bumped_epoch(self, meta: TransactionMetadata, now_ms: int) -> None:
        """Fence the current producer of an Ongoing transaction (epoch + 1, through
        PrepareEpochFence) and abort the transaction; the markers carry the fencing epoch. If
        the log refuses the PrepareAbort state, nothing has changed (KafkaError)."""
        saved = meta.saved()
        meta.transition(S.PREPARE_EPOCH_FENCE, now_ms)
        meta.fence_epoch()
        meta.transition(S.PREPARE_ABORT, now_ms)
        self._persist_or_restore(meta, saved, now_ms)
        self._write_markers(meta, False, now_ms)

    def retry_markers(self, now_ms: int) -> int:
        """Write the pending markers of every transaction left in PrepareCommit/PrepareAbort,
        and then the Complete state of those that have all of theirs. Returns how many
        transactions still wait."""
        for tid in sorted(self.pending_markers):
            meta = self.transactions.get(tid)
            if meta is None or meta.state not in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                self.pending_markers.discard(tid)
                continue
            self._write_markers(meta, meta.state == S.PREPARE_COMMIT, now_ms)
        return len(self.pending_markers)

    def _schedule_marker_retry(self) -> None:
        """Start the timer that retries pending markers, once, in the broker's nursery (none
        yet while the broker opens: `expire`, the coordinator's periodic task, starts it
        then)."""
        nursery = self.broker.nursery
        if self._marker_retry_scheduled or nursery is None:
            return
        self._marker_retry_scheduled = True
        nursery.start_soon(self._retry_markers_until_written)

    async def _retry_markers_until_written(self) -> None:
        # Retrying a write is machinery (real time, also under virtual time); the markers'
        # timestamps are the broker's clock's.
        clock = self.broker.clock
        try:
            while self.pending_markers:
                await self.broker.network_clock.sleep(MARKER_RETRY_BACKOFF_MS / 1000)
                try:
                    self.retry_markers(clock.wall_ms())
                except Exception:
                    log.exception("retrying transaction markers failed")
        finally:
            self._marker_retry_scheduled = False

    # --- timeouts ---

    def next_timeout_ms(self) -> int | None:
        """The wall time from which `expire` would do something (abort a transaction open
        longer than its timeout; 0 while markers wait for a retry), None while no transaction
        is open: a virtual clock (clock.py) skips the checks before."""
        if self.pending_markers:
            return 0
        return min((meta.start_ms + meta.timeout_ms + 1 for meta in self.transactions.values()
                    if meta.state == S.ONGOING and meta.start_ms >= 0), default=None)

    def expire(self, now_ms: int) -> int:
        """Abort every transaction open longer than its timeout; the number aborted. (It also
        makes sure pending markers are being retried.)"""
        if self.pending_markers:
            self._schedule_marker_retry()
        aborted = 0
        for meta in list(self.transactions.values()):
            if meta.state == S.ONGOING and meta.start_ms >= 0 and \
                    now_ms - meta.start_ms > meta.timeout_ms:
                log.info("aborting transaction %s: open for more than %d ms",
                         meta.transactional_id, meta.timeout_ms)
                try:
                    self._abort_with_bumped_epoch(meta, now_ms)
                except KafkaError as e:
                    log.warning("transaction %s not aborted (%s); tried again at the next check",
                                meta.transactional_id, e.message or e.code.name)
                    continue
                aborted += 1
        return aborted

    # --- transactional id expiration ---

    def next_transactional_id_expiry_ms(self) -> int | None:
        """When `expire_transactional_ids` would first expire an id (None: none can, while
        nothing changes), for a virtual clock to skip the checks before (clock.py)."""
        expiration_ms = self.broker.config.transactional_id_expiration_ms
        return min((meta.last_update_ms + expiration_ms for meta in self.transactions.values()
                    if meta.state in EXPIRATION_ALLOWED), default=None)

    def expire_transactional_ids(self, now_ms: int) -> int:
        """Kafka's TransactionStateManager.removeExpiredTransactionalIds: every id whose state
        allows expiry (no transaction in progress) and whose last update is at least
        `transactional.id.expiration.ms` old goes Dead, is written as a tombstone to
        `__transaction_state` (so a restart and the log cleaner forget it too) and leaves the
        cache. An id whose tombstone cannot be written stays, for the next check. Returns the
        number expired."""
        expiration_ms = self.broker.config.transactional_id_expiration_ms
        expired = 0
        for meta in list(self.transactions.values()):
            if meta.state not in EXPIRATION_ALLOWED or \
                    meta.last_update_ms > now_ms - expiration_ms:
                continue
            saved, last_update_ms = meta.saved(), meta.last_update_ms
            meta.transition(S.DEAD, now_ms)
            try:
                self._persist_or_restore(meta, saved, now_ms)
            except KafkaError as e:
                log.warning("transactional id %s not expired: %s", meta.transactional_id,
                            e.message)
                continue
            log.info("transactional id %s expired: no update for %d ms", meta.transactional_id,
                     now_ms - last_update_ms)
            del self.transactions[meta.transactional_id]
            if self.by_producer.get(meta.producer_id) == meta.transactional_id:
                del self.by_producer[meta.producer_id]
            expired += 1
        return expired

    # --- admin ---

    def describe(self, transactional_id: str) -> TransactionMetadata | None:
        """DescribeTransactions: what the coordinator knows of the id; None if nothing."""
        return self.transactions.get(transactional_id)

    def list(self) -> list[TransactionMetadata]:
        """ListTransactions: every transactional id the coordinator knows."""
        return list(self.transactions.values())
