"""Idempotent producers: the per-partition producer state that makes retries exactly-once.

An idempotent producer stamps every batch with its producer id, epoch and a base sequence that
grows by the batch's record count. Per partition the broker keeps, for each producer, its epoch and
the sequence ranges and offsets of its last five batches (Kafka's `NUM_BATCHES_TO_RETAIN`), and
checks each produced batch, in this order:

1. same epoch and the same (first, last) sequence as a retained batch: a retry of a batch already
   written. It is not written again; the producer is told its original offsets.
2. an older epoch than the producer's: INVALID_PRODUCER_EPOCH (a fenced zombie).
3. a newer epoch: the sequence must start again at 0, unless the producer had no epoch here yet;
   otherwise OUT_OF_ORDER_SEQUENCE_NUMBER.
4. the same epoch: the batch must follow the last one (last sequence + 1, wrapping after
   2^31 - 1 to 0); otherwise OUT_OF_ORDER_SEQUENCE_NUMBER. A producer this partition has no state
   for (new, or its state removed with old data) may start at any sequence (KIP-360).

The state survives restarts the way Kafka keeps it: a `<offset>.snapshot` file (ProducerSnapshot
v1: int16 version, uint32 CRC-32C of what follows, then the entries) written at segment roll and
clean shutdown; on open the newest snapshot at or below the log end offset is loaded and the batch
headers after it are replayed. A snapshot keeps only each producer's last batch, as Kafka's does.

Expiry (Kafka's ProducerStateManager.removeExpiredProducers): a producer whose last batch or
marker here is older than `producer.id.expiration.ms` (by its timestamp, the batch's max
timestamp) and that has no transaction open here is forgotten; the broker checks every
`producer.id.expiration.check.interval.ms`. Its next batch is then taken as a new producer's.

No trio here: plain synchronous code, called from PartitionLog.
"""

import struct

from trioka.wire.errors import ErrorCode, KafkaError

NUM_BATCHES_TO_RETAIN = 5
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
INT32_MAX = 2**31 - 1

_SNAPSHOT_HEAD = struct.Struct(">hI")          # version, crc
_COUNT = struct.Struct(">i")
# producer_id, epoch, last_sequence, last_offset, offset_delta, timestamp, coordinator_epoch,
# current_txn_first_offset
_ENTRY = struct.Struct(">qhiqiqiq")


class BatchMetadata:
    """What is retained of one batch: its sequence range and offsets, and its timestamp."""
    __slots__ = ("first_seq", "last_seq", "first_offset", "last_offset", "timestamp")

    def __init__(self, first_seq: int, last_seq: int, first_offset: int, last_offset: int,
                 timestamp: int):
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.timestamp = timestamp


class ProducerStateEntry:
    __slots__ = ("producer_id", "producer_epoch", "batches", "coordinator_epoch",
                 "current_txn_first_offset", "last_timestamp", "last_data_offset")

    def __init__(self, producer_id: int, producer_epoch: int = NO_PRODUCER_EPOCH):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.batches: list[BatchMetadata] = []   # oldest first, at most NUM_BATCHES_TO_RETAIN
        self.coordinator_epoch = -1
        self.current_txn_first_offset: int | None = None
        self.last_timestamp = -1
        # The last offset of the producer's last data batch at its current epoch (coordinator
        # batches without sequences included); None when it has none, as after a transactions
        # v2 marker raised the epoch. The log cleaner keeps a marker that is all that is left of
        # an epoch.
        self.last_data_offset: int | None = None

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        if epoch != self.producer_epoch:
            return None
        for b in self.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return b
        return None

    def add_batch(self, epoch: int, first_seq: int, last_seq: int, first_offset: int,
                  last_offset: int, timestamp: int) -> None:
        if epoch != self.producer_epoch:
            self.producer_epoch = epoch
            self.batches = []
        self.batches.append(BatchMetadata(first_seq, last_seq, first_offset, last_offset,
                                          timestamp))
        self.last_data_offset = last_offset
        if len(self.batches) > NUM_BATCHES_TO_RETAIN:
            del self.batches[0]
        self.last_timestamp = timestamp


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


def snapshot_file_name(offset: int) -> str:
    return f"{offset:020d}{SNAPSHOT_SUFFIX}"


class ProducerStateManager:
    """The producers of one partition, keyed by producer id."""

    def __init__(self, files, directory: str):
        self.files = files
        self.directory = directory
        self.producers: dict[int, ProducerStateEntry] = {}
        # Producers with a transaction open in this partition -> the offset of its first batch;
        # the smallest holds back the last stable offset.
        self.ongoing: dict[int, int] = {}

    def first_unstable_offset(self) -> int | None:
        return min(self.ongoing.values()) if self.ongoing else None

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        """What this partition keeps of the producer (Kafka's lastEntry); None if nothing."""
        return self.producers.get(producer_id)

    def active_producers(self) -> list[ProducerStateEntry]:
        """Every producer this partition keeps state for (DescribeProducers)."""
        return list(self.producers.values())

    # --- the checks on the produce path ---

    def check(self, info) -> BatchMetadata | None:
        """Check a client batch (a BatchInfo with a producer id); the retained batch it
        duplicates, if it is a retry; raises KafkaError when it is out of order or fenced."""
        entry = self.producers.get(info.producer_id)
        if entry is None:
            return None
        first_seq = info.base_sequence
        last_seq = info.last_sequence
        duplicate = entry.find_duplicate(info.producer_epoch, first_seq, last_seq)
        if duplicate is not None:
            return duplicate
        epoch = info.producer_epoch
        if epoch < entry.producer_epoch:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_EPOCH,
                             f"Epoch {epoch} of producer {info.producer_id} is older than its "
                             f"current epoch {entry.producer_epoch}")
        if epoch != entry.producer_epoch:
            if first_seq != 0 and entry.producer_epoch != NO_PRODUCER_EPOCH:
                raise KafkaError(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                                 f"Invalid sequence number {first_seq} for new epoch {epoch} of "
                                 f"producer {info.producer_id}: expected 0")
        elif entry.batches and not in_sequence(entry.last_seq, first_seq):
            raise KafkaError(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                             f"Out of order sequence number for producer {info.producer_id}: "
                             f"got {first_seq}, expected {entry.last_seq + 1}")
        return None

    def update(self, info) -> None:
        """Record a batch just appended (its BatchInfo carries the assigned base offset)."""
        entry = self.producers.get(info.producer_id)
        if entry is None:
            entry = self.producers[info.producer_id] = ProducerStateEntry(info.producer_id)
        if info.base_sequence < 0:
            # A batch without sequence (the coordinator's transactional offset commits): only
            # the epoch, and the transaction it may open.
            if info.producer_epoch > entry.producer_epoch:
                entry.producer_epoch = info.producer_epoch
                entry.batches = []
            entry.last_data_offset = info.last_offset
            entry.last_timestamp = info.max_timestamp
        else:
            entry.add_batch(info.producer_epoch, info.base_sequence, info.last_sequence,
                            info.base_offset, info.last_offset, info.max_timestamp)
        if info.is_transactional and entry.current_txn_first_offset is None:
            # The producer's first batch of a transaction here: the partition becomes unstable.
            entry.current_txn_first_offset = info.base_offset
            self.ongoing[info.producer_id] = info.base_offset

    def check_marker(self, producer_id: int, producer_epoch: int,
                     transaction_version: int) -> None:
        """May the coordinator write a COMMIT/ABORT marker of this producer at this epoch?
        Classic markers carry the transaction's epoch: not below the producer's. A
        transactions v2 marker carries the epoch bumped at the transaction's end, so it must be
        above the producer's; one equal to it with no transaction open is the same marker
        written again (the coordinator retrying after a restart), which is allowed."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        current = entry.producer_epoch
        if transaction_version >= 2:
            if producer_epoch > current or (producer_epoch == current and
                                            entry.current_txn_first_offset is None):
                return
        elif producer_epoch >= current:
            return
        raise KafkaError(ErrorCode.INVALID_PRODUCER_EPOCH,
                         f"Marker epoch {producer_epoch} of producer {producer_id} is "
                         f"{'<=' if transaction_version >= 2 else '<'} its current epoch "
                         f"{current} (transaction version {transaction_version})")

    def end_transaction(self, producer_id: int, producer_epoch: int,
                        timestamp: int | None = None, coordinator_epoch: int = -1) -> int | None:
        """A COMMIT or ABORT marker of the producer (written at `timestamp` by the coordinator
        of `coordinator_epoch`): its open transaction here is over. As Kafka's
        appendEndTxnMarker, the producer's last timestamp and coordinator epoch become the
        marker's. The transaction's first offset, or None when it had written nothing here."""
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerStateEntry(producer_id, producer_epoch)
        if timestamp is not None:
            entry.last_timestamp = timestamp
        if coordinator_epoch >= 0:
            entry.coordinator_epoch = coordinator_epoch
        if producer_epoch > entry.producer_epoch:
            entry.producer_epoch = producer_epoch
            entry.batches = []
            entry.last_data_offset = None
        first = entry.current_txn_first_offset
        entry.current_txn_first_offset = None
        self.ongoing.pop(producer_id, None)
        return first

    # --- expiry ---

    def is_expired(self, entry: ProducerStateEntry, now_ms: int, expiration_ms: int) -> bool:
        """Kafka's isProducerExpired: no transaction open here, and the last timestamp at
        least `expiration_ms` old."""
        return (entry.current_txn_first_offset is None
                and now_ms - entry.last_timestamp >= expiration_ms)

    def next_expiry_ms(self, expiration_ms: int) -> int | None:
        """When the first producer here expires (`is_expired` holds from then on, while
        nothing else changes); None when none can (none, or each with a transaction open)."""
        return min((entry.last_timestamp + expiration_ms for entry in self.producers.values()
                    if entry.current_txn_first_offset is None), default=None)

    def remove_expired_producers(self, now_ms: int, expiration_ms: int) -> list[int]:
        """Forget every expired producer; their ids."""
        expired = [pid for pid, entry in self.producers.items()
                   if self.is_expired(entry, now_ms, expiration_ms)]
        for pid in expired:
            del self.producers[pid]
        return expired

    # --- snapshots ---

    def snapshot_offsets(self) -> list[int]:
        """The offsets of this partition's snapshot files, oldest first."""
        out = []
        for name in self.files.listdir(self.directory):
            if name.endswith(SNAPSHOT_SUFFIX):
                stem = name[:-len(SNAPSHOT_SUFFIX)]
                if len(stem) == 20 and stem.isdigit():
                    out.append(int(stem))
        return sorted(out)

    def encode_snapshot(self) -> bytes:
        body = [_COUNT.pack(len(self.producers))]
        for e in self.producers.values():
            last = e.batches[-1] if e.batches else None
            body.append(_ENTRY.pack(
                e.producer_id, e.producer_epoch,
                last.last_seq if last else NO_SEQUENCE,
                last.last_offset if last else -1,
                (last.last_seq - last.first_seq) if last else 0,
                e.last_timestamp, e.coordinator_epoch,
                -1 if e.current_txn_first_offset is None else e.current_txn_first_offset))
        data = b"".join(body)
        from trioka.log.batch import crc32c
        return _SNAPSHOT_HEAD.pack(SNAPSHOT_VERSION, crc32c(data)) + data

    def decode_snapshot(self, blob: bytes) -> dict[int, ProducerStateEntry]:
        """Entries of a snapshot file; ValueError if it is damaged."""
        from trioka.log.batch import crc32c
        if len(blob) < _SNAPSHOT_HEAD.size + _COUNT.size:
            raise ValueError("snapshot too short")
        version, crc = _SNAPSHOT_HEAD.unpack_from(blob, 0)
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {version}")
        data = blob[_SNAPSHOT_HEAD.size:]
        if crc32c(data) != crc:
            raise ValueError("snapshot CRC mismatch")
        (count,) = _COUNT.unpack_from(data, 0)
        if count < 0 or _COUNT.size + count * _ENTRY.size != len(data):
            raise ValueError("snapshot length does not match its entry count")
        out = {}
        for i in range(count):
            (pid, epoch, last_seq, last_offset, delta, timestamp, coord_epoch,
             txn_first) = _ENTRY.unpack_from(data, _COUNT.size + i * _ENTRY.size)
            e = ProducerStateEntry(pid, epoch)
            if last_offset >= 0:
                e.batches.append(BatchMetadata(last_seq - delta, last_seq,
                                               last_offset - delta, last_offset, timestamp))
                e.last_data_offset = last_offset
            e.last_timestamp = timestamp
            e.coordinator_epoch = coord_epoch
            e.current_txn_first_offset = None if txn_first < 0 else txn_first
            out[pid] = e
        return out

    def take_snapshot(self, offset: int, keep: int = 2) -> None:
        """Write `<offset>.snapshot` with the state as of `offset` and keep the newest `keep`."""
        self.files.write_atomic(f"{self.directory}/{snapshot_file_name(offset)}",
                                self.encode_snapshot())
        for old in self.snapshot_offsets()[:-keep]:
            self.files.remove(f"{self.directory}/{snapshot_file_name(old)}")

    def load(self, log_start_offset: int, log_end_offset: int) -> int:
        """Load the newest valid snapshot at or below the log end offset and return the offset
        from which the caller must replay batch headers (the snapshot's, or the log start).
        Snapshots past the log end (left by a truncated log) are removed."""
        self.producers = {}
        self.ongoing = {}
        start = log_start_offset
        for offset in reversed(self.snapshot_offsets()):
            path = f"{self.directory}/{snapshot_file_name(offset)}"
            if offset > log_end_offset:
                self.files.remove(path)
                continue
            try:
                self.producers = self.decode_snapshot(self.files.read_small(path))
            except ValueError:
                self.files.remove(path)
                continue
            start = max(offset, log_start_offset)
            break
        self.ongoing = {pid: e.current_txn_first_offset for pid, e in self.producers.items()
                        if e.current_txn_first_offset is not None}
        return start
