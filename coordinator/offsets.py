"""Committed offsets, and `__consumer_offsets`, the topic that keeps them and group metadata.

Kafka keeps a group's state as records of a compacted topic rather than in a database: every offset
commit, every completed rebalance and every deletion is a record appended to one partition of
`__consumer_offsets`, and a coordinator that starts reads those partitions back. This broker does
the same, with Kafka's record formats, so the topic could be read with Kafka's own tools.

- The partition of a group is `abs(hashCode(group id)) % partitions`, where hashCode is Java's
  String.hashCode (31 * h + each UTF-16 code unit, in 32-bit two's complement) and abs maps
  Integer.MIN_VALUE to 0. Kafka uses `offsets.topic.num.partitions` (50) partitions.
- The topic is created on the first write, compacted (`cleanup.policy=compact`), with Kafka's
  100 MiB segments for it.
- A record's key and value are an int16 version and then a struct at that version. The key's
  version says which record it is: 0 and 1 are OffsetCommitKey (group, topic, partition) with an
  OffsetCommitValue; 2 is GroupMetadataKey (group) with a GroupMetadataValue; 3 and up belong to
  KIP-848 and share groups (skipped here). Kafka writes OffsetCommitKey v1 + OffsetCommitValue v3
  (v1 when the commit carries an explicit expiry) and GroupMetadataKey v2 + GroupMetadataValue;
  this broker writes value v4, the flexible version.
- A record with a null value (a tombstone) deletes its key: a deleted offset or group.
- Records written in a transaction (TxnOffsetCommit) count only once a COMMIT marker of their
  producer follows them; an ABORT marker drops them.

Loading replays each partition from its log start offset in offset order: the last record of a key
wins, tombstones delete.
"""

import dataclasses
import logging
from collections.abc import Iterator

from trioka.log.batch import AppendOrigin
from trioka.log.records import ControlRecordType, encode_batch, iter_batches
from trioka.log.topics import COORDINATOR_APPEND_ERRORS, OFFSETS_TOPIC, coordinator_append_error
from trioka.wire import schema, types as t
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")

# What the group coordinator answers when `__consumer_offsets` refuses a write, as Kafka's
# (CoordinatorOperationExceptionHelper, GroupMetadataManager) maps the log's error; other codes
# (a batch too large: INVALID_COMMIT_OFFSET_SIZE for OffsetCommit) pass as they are.
LOG_APPEND_ERRORS = COORDINATOR_APPEND_ERRORS

# Kafka's offsets.topic.segment.bytes and the topic configs it creates the topic with.
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "104857600",
                         "compression.type": "producer"}

OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1   # the only version with expireTimestamp
GROUP_METADATA_KEY_VERSION = 2
GROUP_METADATA_VALUE_VERSION = 4

OffsetCommitKey = schema.record("OffsetCommitKey").cls
OffsetCommitValue = schema.record("OffsetCommitValue").cls
GroupMetadataKey = schema.record("GroupMetadataKey").cls
GroupMetadataValue = schema.record("GroupMetadataValue").cls


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: over UTF-16 code units, wrapping as a signed 32-bit int."""
    data = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(group_id: str, num_partitions: int) -> int:
    """The `__consumer_offsets` partition of a group, as Kafka computes it."""
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % num_partitions


@dataclasses.dataclass(slots=True)
class OffsetAndMetadata:
    """A committed offset: what OffsetFetch answers and OffsetCommitValue stores."""
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = -1
    expire_timestamp_ms: int = -1     # -1: expires by offsets.retention.minutes


# --- record encoding ---

def check_group_id(group_id: str) -> None:
    """A group's records in `__consumer_offsets` are keyed by its id as an int16-length string,
    so a longer id (only flexible requests can carry one) can never be stored: INVALID_GROUP_ID
    before anything is created, rather than a group that exists but cannot be written."""
    if not t.fits_string(group_id):
        raise KafkaError(ErrorCode.INVALID_GROUP_ID,
                         f"The group id is longer than {t.MAX_STRING_BYTES} bytes, which "
                         f"__consumer_offsets cannot hold.")


def offset_commit_key(group_id: str, topic: str, partition: int) -> bytes:
    return schema.encode_record(
        "OffsetCommitKey", OffsetCommitKey(group=group_id, topic=topic, partition=partition),
        OFFSET_COMMIT_KEY_VERSION)


def offset_commit_value(committed: OffsetAndMetadata) -> bytes:
    value = OffsetCommitValue(offset=committed.offset, leader_epoch=committed.leader_epoch,
                              metadata=committed.metadata or "",
                              commit_timestamp=committed.commit_timestamp_ms,
                              expire_timestamp=committed.expire_timestamp_ms)
    version = (OFFSET_COMMIT_VALUE_VERSION if committed.expire_timestamp_ms == -1
               else OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY)
    return schema.encode_record("OffsetCommitValue", value, version)


def group_metadata_key(group_id: str) -> bytes:
    return schema.encode_record("GroupMetadataKey", GroupMetadataKey(group=group_id),
                                GROUP_METADATA_KEY_VERSION)


def group_metadata_value(value) -> bytes:
    """`value` is a GroupMetadataValue (see ClassicGroup.to_record)."""
    return schema.encode_record("GroupMetadataValue", value, GROUP_METADATA_VALUE_VERSION)


def decode_offset_commit_value(data) -> OffsetAndMetadata:
    _, v = schema.decode_record("OffsetCommitValue", data)
    return OffsetAndMetadata(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp,
                             v.expire_timestamp)


def decode_key(data) -> tuple[int, object | None]:
    """(key version, OffsetCommitKey or GroupMetadataKey); None for the record types of KIP-848
    and share groups, which this coordinator does not keep."""
    if len(data) < 2:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "coordinator record key shorter than 2 bytes")
    version = int.from_bytes(data[:2], "big", signed=True)
    if version in (0, 1):
        return version, schema.decode_record("OffsetCommitKey", data)[1]
    if version == GROUP_METADATA_KEY_VERSION:
        return version, schema.decode_record("GroupMetadataKey", data)[1]
    return version, None


# --- the topic ---

class OffsetsTopic:
    """The `__consumer_offsets` partitions of a LogManager: appends and the replay at startup."""

    def __init__(self, logs, num_partitions: int = 50, on_append=None, cluster=None):
        self.logs = logs
        self.configured_partitions = num_partitions
        self.on_append = on_append     # called after every append (wakes long-polling fetches)
        # A node of a cluster (node/cluster_link.py): the topic is the controller's (created by
        # FindCoordinator), and records go only to partitions this node leads.
        self.cluster = cluster

    @property
    def num_partitions(self) -> int:
        """The topic's partition count once it exists (it is not changed afterwards)."""
        topic = self.logs.topic(OFFSETS_TOPIC) if self.cluster is None else \
            self.cluster.topic(OFFSETS_TOPIC)
        return topic.num_partitions if topic is not None else self.configured_partitions

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def append(self, group_id: str, records: list[tuple[bytes, bytes | None]],
               now_ms: int, producer_id: int = -1, producer_epoch: int = -1) -> None:
        """Append (key, value) records of one group as one batch; KafkaError if the log fails
        (with the coordinator's code, LOG_APPEND_ERRORS). With a producer id the batch is
        transactional, part of that producer's transaction (TxnOffsetCommit): it counts once
        the transaction's COMMIT marker follows it."""
        if not records:
            return
        hosted = None
        try:
            if self.cluster is not None:
                # Only the leader writes, with enough replicas in sync for acks=all.
                hosted = self.cluster.replicas.check_append(
                    OFFSETS_TOPIC, self.partition_for(group_id), -1)
                partition = hosted.log
            else:
                self.logs.ensure_internal_topic(OFFSETS_TOPIC, self.configured_partitions,
                                                dict(OFFSETS_TOPIC_CONFIGS), now_ms=now_ms)
                partition = self.logs.partition(OFFSETS_TOPIC, self.partition_for(group_id))
            batch = encode_batch([(key, value, [], now_ms) for key, value in records],
                                 producer_id=producer_id, producer_epoch=producer_epoch,
                                 transactional=producer_id >= 0)
            partition.append(batch, now_ms=now_ms, origin=AppendOrigin.COORDINATOR)
            if hosted is not None:
                self.cluster.replicas.appended(hosted)   # the HW may move at once
        except KafkaError as e:
            mapped = coordinator_append_error(
                e, f"Cannot write the records of group {group_id} to {OFFSETS_TOPIC}",
                LOG_APPEND_ERRORS)
            if mapped is e:
                raise
            raise mapped from e
        if self.on_append is not None:
            self.on_append()

    def replay(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Every record that counts, (key, value), partition by partition in offset order.
        Records of transactions still open at the end of the log are left in
        `open_transactions` (producer id -> records), for their marker to decide."""
        self.open_transactions: dict[int, list] = {}
        if self.logs.topic(OFFSETS_TOPIC) is None:
            return
        for index in range(self.num_partitions):
            yield from self._replay_partition(self.logs.partition(OFFSETS_TOPIC, index),
                                              self.open_transactions)

    def replay_partition(self, index: int) -> Iterator[tuple[bytes, bytes | None]]:
        """Every record that counts of one partition this node has just become the leader of,
        to its log end (Kafka's coordinator loads a partition to its end: the new leader's log
        is what the ISR has). Transactions still open are left in `open_transactions`."""
        self.open_transactions = {}
        partition = self.logs.partition(OFFSETS_TOPIC, index, reading=True)
        yield from self._replay_partition(partition, self.open_transactions,
                                          partition.log_end_offset)

    @staticmethod
    def _replay_partition(partition, left_open: dict,
                          upto: int | None = None) -> Iterator[tuple[bytes, bytes | None]]:
        pending: dict[int, list] = {}     # producer id -> records of its open transaction
        offset = partition.log_start_offset
        end = partition.high_watermark if upto is None else upto
        while offset < end:
            read = partition.read(offset, 1 << 20, isolation_upper=end)
            try:
                batches = list(iter_batches(read.records))
            except KafkaError as e:
                log.error("%s-%d: cannot read past offset %d: %s", partition.topic,
                          partition.partition, offset, e.message)
                return
            if not batches:
                return
            for batch in batches:
                if batch.next_offset <= offset:
                    continue
                offset = batch.next_offset
                if batch.is_control_batch:
                    done = pending.pop(batch.producer_id, [])
                    if batch.control_type() == ControlRecordType.COMMIT:
                        yield from done
                    continue
                records = [(r.key, r.value) for r in batch.records if r.key is not None]
                if batch.is_transactional:
                    pending.setdefault(batch.producer_id, []).extend(records)
                else:
                    yield from records
        for producer_id, records in pending.items():
            left_open.setdefault(producer_id, []).extend(records)
