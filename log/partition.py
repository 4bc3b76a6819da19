"""PartitionLog: the log of one topic partition, a sequence of LogSegments (Kafka's UnifiedLog).

Offsets and watermarks, in Kafka's words:

* `log_start_offset`: the first offset still readable. It moves forward when DeleteRecords or
  retention remove data; whole segments below it are deleted.
* `log_end_offset` (LEO): the offset the next appended record gets.
* `high_watermark` (HW): the offset below which records are committed (replicated to the whole
  ISR). This broker is the only replica, so the ISR is the leader alone and HW = LEO after every
  append. Consumers read below HW.
* `last_stable_offset` (LSO): min(HW, first offset of any open transaction). READ_COMMITTED
  consumers read below it. A producer's transaction opens here with its first transactional
  batch and ends with the COMMIT or ABORT marker the coordinator writes (`append_marker`);
  aborted transactions are recorded in the segments' `.txnindex` files (log/txn_index.py).
* `leader_epoch`: stamped into each appended batch's partition_leader_epoch; the first offset of
  every epoch is kept in `leader-epoch-checkpoint` (for OffsetForLeaderEpoch).

Appends and reads never decode records: a produced batch is checked by its header and CRC
(`batch.validate_batches`), its base offset and leader epoch are patched in place and the bytes
are appended; a fetch returns whole stored batches as bytes.

Everything here is synchronous and does no waiting (no trio): under trio one call is atomic.

Flushing (fsync) follows Kafka's UnifiedLog: the `recovery_point` is the offset below which the
log is known durable; `flush.messages` makes an append due for a flush once that many messages
are unflushed, and `flush.ms` (checked by the broker's flusher) once the last flush is that old.
The fsyncs themselves are blocking, so a flush is split in three: `begin_flush` (on the event
loop: duplicate the descriptors of the segments to flush, note what they cover), `LogFlush.run`
(in a worker thread: fsync them), `end_flush` (on the event loop: move the recovery point up).
Appends made while a flush runs are covered by the next one, which every waiter then shares
(group commit).
"""

import dataclasses
import errno
import logging
import threading
import time
from bisect import bisect_right

from trioka.log.batch import (AppendOrigin, BatchInfo, assign_offsets, set_log_append_time,
                              validate_batches)
from trioka.log.checkpoint import (LEADER_EPOCH_CHECKPOINT, CheckpointError,
                                   read_leader_epoch_checkpoint, write_leader_epoch_checkpoint)
from trioka.log.config import LONG_MAX, LogConfig
from trioka.log.producer_state import ProducerStateEntry, ProducerStateManager
from trioka.log.segment import (INDEX_SUFFIX, LOG_SUFFIX, SWAP_FILE_SUFFIX, TIME_INDEX_SUFFIX,
                                TXN_INDEX_SUFFIX, LogSegment, parse_segment_file_name)
from trioka.log.txn_index import AbortedTxn, TransactionIndex
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.log")


# ------------------------------------------------------------------------------------ results

# A new partition's first leader epoch (Kafka's PartitionRecord starts at 0).
INITIAL_LEADER_EPOCH = 0


@dataclasses.dataclass(slots=True)
class AppendResult:
    """What a Produce response needs for one partition.

    `batches` are the appended batches' headers with their assigned base offsets (positions are
    within the appended `records` blob): the producer-state layer reads producer ids and
    sequences from them."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    batches: list[BatchInfo]


@dataclasses.dataclass(slots=True)
class ReadResult:
    """What a Fetch response needs for one partition. `chunks` are whole stored batches, in
    offset order, possibly from several segments; send them back to back."""

    chunks: list
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int
    log_end_offset: int

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    @property
    def records(self):
        """All chunks as one bytes-like (no copy when there is a single chunk)."""
        if not self.chunks:
            return b""
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)


class LogFlush:
    """One flush of a partition log in flight (PartitionLog.begin_flush): it makes everything
    below `upto` durable by flushing `handles` (duplicated descriptors: a segment rolled, deleted
    or closed meanwhile stays safe to flush). `waiters` (anything with `set()`) are set when it
    ends, completed or not."""
    __slots__ = ("upto", "handles", "truncations", "waiters")

    def __init__(self, upto: int, handles: list, truncations: int):
        self.upto = upto
        self.handles = handles
        self.truncations = truncations
        self.waiters: list = []

    def run(self) -> None:
        """The blocking part, for a worker thread: fsync every handle, then close them all. It
        touches nothing else; a failure takes the log dir offline (log/files.py) and raises
        KAFKA_STORAGE_ERROR."""
        try:
            for handle in self.handles:
                handle.flush()
        finally:
            for handle in self.handles:
                handle.close()

    def add_waiter(self, waiter) -> None:
        self.waiters.append(waiter)

    def wake_waiters(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.set()


# -------------------------------------------------------------------------------- the log

# Appends of this many bytes or more to a disk log write from a worker thread
# (PartitionLog.begin_append) while its dir's writes stall (DiskFiles.note_write); smaller ones,
# and all of them while the disk keeps up, write on the event loop, where the copy into the page
# cache is cheapest (the thread's copy is about half as dear again: the bytes were received on
# the loop's core).
OFF_LOOP_WRITE_BYTES = 32 * 1024


class PendingAppend:
    """An append between `begin_append` and `end_append`: its batches have offsets, its
    segment is chosen; its bytes are written by `write` (in a worker thread)."""

    __slots__ = ("segment", "buf", "batches", "first_offset", "next_offset", "epoch",
                 "max_timestamp", "offset_of_max_timestamp", "log_append_time_ms", "position",
                 "written", "written_bytes", "error", "result", "failure", "took", "follower")

    def __init__(self, segment, buf, batches, first_offset, next_offset, epoch, max_timestamp,
                 offset_of_max_timestamp, log_append_time_ms):
        self.segment = segment
        self.buf = buf
        self.batches = batches
        self.first_offset = first_offset
        self.next_offset = next_offset
        self.epoch = epoch
        self.max_timestamp = max_timestamp
        self.offset_of_max_timestamp = offset_of_max_timestamp
        self.log_append_time_ms = log_append_time_ms
        self.position = 0
        self.written = threading.Event()
        self.written_bytes = 0
        self.error: OSError | None = None
        self.result: AppendResult | None = None
        self.failure: KafkaError | None = None
        self.took = 0.0          # seconds the write took
        self.follower = False    # a follower's append (begin_append_as_follower)

    def write(self) -> None:
        """The `.log` write (nothing else: safe in a worker thread). Whatever stops it is the
        append's failure: an OSError as the files layer reports it, anything else as an I/O
        error, so the append ends failed (KAFKA_STORAGE_ERROR, its offsets never reused)."""
        started = time.perf_counter()
        try:
            self.written_bytes, self.error = self.segment.write_at_end(self.buf)
        except BaseException as e:
            self.error = OSError(errno.EIO, f"the write stopped: {e!r}")
        finally:
            self.took = time.perf_counter() - started
            self.written.set()


class PartitionLog:
    """The log of one partition in directory `directory` (e.g. "orders-0") of `files`
    (DiskFiles or MemoryFiles).

    Opening loads the segments. After a clean shutdown (`clean_shutdown=True`) only the tail of
    the last segment is read. Otherwise every segment from the one holding `recovery_point` on
    is recovered: CRC-checked batch by batch, truncated at a torn or corrupt tail, its indexes
    rebuilt. Index files that are missing or insane are rebuilt in any case (lazily, when the
    segment is first used).

    Time comes from the caller: `now_ms` (wall-clock milliseconds, the node's clock) is the
    creation time of the segments opened or created here, and every method that needs the time
    takes it the same way. This module never reads a clock.
    """

    def __init__(self, topic: str, partition: int, directory: str, files, config=None, *,
                 now_ms: int, recovery_point: int = 0, log_start_offset: int = 0,
                 clean_shutdown: bool = False):
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.files = files
        if not isinstance(config, LogConfig):
            config = LogConfig.from_configs(config or {})
        self.config = config
        self.segments: list[LogSegment] = []
        self._base_offsets: list[int] = []  # of self.segments, for bisect
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.high_watermark = 0
        self.recovery_point = 0
        # Offset of the first batch of the oldest open transaction (set by the transaction
        # layer); None when there is none, and then last_stable_offset == high_watermark.
        self.first_unstable_offset: int | None = None
        self.leader_epoch = INITIAL_LEADER_EPOCH
        self.epoch_entries: list[tuple[int, int]] = []  # (epoch, start offset), increasing
        self.producer_state = ProducerStateManager(files, directory)
        self.txn_index = TransactionIndex(files, directory)
        # Long-polling readers of this partition (Kafka's delayed fetches keyed by partition):
        # anything with a `set()` method, set at the next change they must see.
        self.waiters: set = set()
        # Flushing (see the module docstring). `on_flush_due(log)`, set by the log manager while
        # the broker's flusher runs, is called when an append leaves flush.messages unflushed
        # (the high watermark then waits for the flush), and at every roll (Kafka flushes the
        # rolled segment in the background).
        self.on_flush_due = None
        self.flushing: LogFlush | None = None   # the flush in flight, begun and not ended
        self.flushes = 0                        # flushes completed (begin_flush .. end_flush)
        self.flush_required_upto = 0            # the high watermark waits for a flush to here
        self.last_flush_ms = now_ms             # Kafka's lastFlushTime, for flush.ms
        self._truncations = 0                   # a flush begun before one covers nothing
        # Whether the high watermark is replication's (a node of a cluster: replica/manager.py
        # moves it with `set_high_watermark` as the ISR catches up) or, on a single node, the
        # log end offset after each append (the leader alone is the whole ISR).
        self.replicated = False
        self.pending_append: PendingAppend | None = None    # its write in a worker thread
        self._load(recovery_point, log_start_offset, clean_shutdown, now_ms)

    def __repr__(self) -> str:
        return (f"PartitionLog({self.topic}-{self.partition}, log_start_offset="
                f"{self.log_start_offset}, log_end_offset={self.log_end_offset}, "
                f"segments={len(self.segments)})")

    # ------------------------------------------------------------------------ waiting readers

    def add_waiter(self, waiter) -> None:
        """Have `waiter.set()` called (a long-polling Fetch's trio.Event) at the next change a
        reader of this partition must see: an append (a transaction marker included, so the
        last stable offset too), the log start offset moving (DeleteRecords, retention),
        truncation, the partition's deletion. Only this partition's readers wake, as Kafka's
        purgatory completes the delayed fetches watching the partition appended to."""
        self.waiters.add(waiter)

    def remove_waiter(self, waiter) -> None:
        self.waiters.discard(waiter)

    def wake_waiters(self) -> None:
        """Set every registered waiter once and forget it (a waiter registers again for the
        next change)."""
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for waiter in waiters:
                waiter.set()

    # ------------------------------------------------------------------------------- loading

    def _segment_params(self, now_ms: int) -> dict:
        return {"index_interval_bytes": self.config.index_interval_bytes,
                "segment_index_bytes": self.config.segment_index_bytes,
                "created_ms": now_ms}

    def _load(self, recovery_point: int, log_start_offset: int, clean_shutdown: bool,
              now_ms: int) -> None:
        files = self.files
        files.mkdir(self.directory)
        names = files.listdir(self.directory)
        if any(name.endswith((".cleaned", ".swap", ".deleted")) for name in names):
            # A segment swap of the log cleaner cut short by a crash is completed or discarded
            # first. (The cleaner's code is loaded only then: it is not needed to start.)
            from trioka.log.cleaner import complete_interrupted_swaps
            complete_interrupted_swaps(files, self.directory)
            names = files.listdir(self.directory)
        bases = set()
        for name in names:
            parsed = parse_segment_file_name(name)
            if parsed is None:
                if name.endswith((".deleted", ".cleaned", ".swap", ".tmp")):
                    # Left-overs of an interrupted delete, compaction or atomic write.
                    files.remove(f"{self.directory}/{name}")
                continue
            if parsed[1] == LOG_SUFFIX:
                bases.add(parsed[0])
        for name in names:
            parsed = parse_segment_file_name(name)
            if parsed and parsed[1] in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX) \
                    and parsed[0] not in bases:
                files.remove(f"{self.directory}/{name}")  # an index without its .log
        params = self._segment_params(now_ms)
        if not bases:
            self._set_segments([LogSegment.create(files, self.directory, max(0, log_start_offset),
                                                  **params)])
        else:
            ordered = sorted(bases)
            segments = [LogSegment.open(files, self.directory, base, **params) for base in ordered]
            for segment, next_segment in zip(segments, segments[1:]):
                segment.next_offset = next_segment.base_offset
            self._set_segments(segments)
            if clean_shutdown:
                self.active_segment.load_tail()
            else:
                self.recover(recovery_point)
                recovery_point = self.active_segment.next_offset
        self.log_end_offset = self.active_segment.next_offset
        self.log_start_offset = min(max(log_start_offset, self.segments[0].base_offset),
                                    self.log_end_offset)
        self.high_watermark = self.log_end_offset
        self.recovery_point = min(recovery_point, self.log_end_offset)
        self._load_epoch_entries()
        self._load_producer_state(clean_shutdown)

    def _load_producer_state(self, clean_shutdown: bool) -> None:
        """The aborted-transaction index, then the producers: after a clean shutdown the snapshot
        at the log end is the whole state (none was written when no producer had written
        here); otherwise the newest snapshot, then the batch headers after it are replayed."""
        self.txn_index.load(self._base_offsets, self.log_end_offset)
        if clean_shutdown and not self.producer_state.snapshot_offsets():
            return
        self._rebuild_producer_state()

    def _rebuild_producer_state(self) -> None:
        start = self.producer_state.load(self.log_start_offset, self.log_end_offset)
        for segment, info in self.batches_from(start):
            if info.producer_id < 0:
                continue
            if info.is_control:
                self._end_transaction(segment, info, *self._control_marker(segment, info))
            else:
                self.producer_state.update(info)
        self.first_unstable_offset = self.producer_state.first_unstable_offset()

    def _control_marker(self, segment: LogSegment, info: BatchInfo) -> tuple[int, int]:
        """(control record type, coordinator epoch) of a stored control batch; the epoch is
        -1 where the record is not a transaction marker."""
        from trioka.log.records import (ControlRecordType, decode_batch, decode_control_key,
                                        decode_end_txn_marker)
        batch = decode_batch(segment.read_batch(info), verify_crc=False)
        if not batch.records:
            return -1, -1
        record = batch.records[0]
        kind = decode_control_key(record.key)[1]
        if kind not in (ControlRecordType.COMMIT, ControlRecordType.ABORT) or record.value is None:
            return kind, -1
        try:
            return kind, decode_end_txn_marker(record.value).coordinator_epoch
        except KafkaError:
            return kind, -1

    def batches_from(self, offset: int):
        """(segment, header) of the stored batches from the one holding `offset` on, in order."""
        start = max(0, bisect_right(self._base_offsets, offset) - 1)
        for i in range(start, len(self.segments)):
            segment = self.segments[i]
            position = 0
            if i == start:
                found = segment.translate_offset(offset)
                if found is None:
                    continue
                position = found[0]
            for info in segment.batches(position):
                yield segment, info

    def _set_segments(self, segments: list[LogSegment]) -> None:
        self.segments = segments
        self._base_offsets = [segment.base_offset for segment in segments]

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    def recover(self, recovery_point: int = 0) -> int:
        """Kafka's log recovery after an unclean shutdown: recover every segment from the one
        holding `recovery_point` to the end (CRC check, truncate a torn tail, rebuild indexes).
        If a segment that is not the last has a bad batch, it is truncated there and every later
        segment is deleted, since offsets must stay contiguous. The recovered segments are then
        fsync'd. Returns the number of bytes removed."""
        removed = 0
        start = max(0, bisect_right(self._base_offsets, recovery_point) - 1)
        i = start
        while i < len(self.segments):
            segment = self.segments[i]
            log.info("Recovering unflushed segment %d of %s-%d (%d/%d, recovery point %d)",
                     segment.base_offset, self.topic, self.partition, i - start + 1,
                     len(self.segments) - start, recovery_point)
            truncated = segment.recover()
            removed += truncated
            if truncated and i < len(self.segments) - 1:
                later = self.segments[i + 1:]
                log.warning("Corruption found in segment %d of %s-%d, truncating to offset %d; "
                            "deleting the %d segments after it as part of log recovery: %s",
                            segment.base_offset, self.topic, self.partition,
                            segment.next_offset, len(later),
                            ", ".join(str(s.base_offset) for s in later))
                for doomed in later:
                    removed += doomed.size
                    doomed.delete()
                self._set_segments(self.segments[:i + 1])
            i += 1
        for segment in self.segments[start:]:
            segment.flush()
        self.log_end_offset = self.active_segment.next_offset
        self.high_watermark = min(self.high_watermark, self.log_end_offset)
        (log.warning if removed else log.info)(
            "Recovered %s-%d: log end offset %d, %d bytes removed", self.topic, self.partition,
            self.log_end_offset, removed)
        return removed

    def _load_epoch_entries(self) -> None:
        path = f"{self.directory}/{LEADER_EPOCH_CHECKPOINT}"
        try:
            entries = read_leader_epoch_checkpoint(self.files, path)
        except CheckpointError:
            entries = []
        kept = [(epoch, start) for epoch, start in entries if start <= self.log_end_offset]
        self.epoch_entries = kept
        if kept:
            self.leader_epoch = max(self.leader_epoch, kept[-1][0])
        if kept != entries:
            self._write_epoch_entries()

    def assign_epoch_start_offset(self, epoch: int, start_offset: int) -> bool:
        """Kafka's LeaderEpochFileCache.assign: record that leader `epoch` starts at
        `start_offset` (a new leader does this before it writes anything in its epoch, so that
        followers asking OffsetForLeaderEpoch get an answer). Entries that the new one makes
        non-monotonic (an epoch at or above it, or a start offset at or above its start) are
        dropped, as Kafka drops them. Nothing changes when the latest entry is the same epoch
        with a start no later; returns whether the entries (and their checkpoint) changed."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"leader epoch {epoch} at offset {start_offset}: both must be >= 0")
        if self.epoch_entries:
            latest_epoch, latest_start = self.epoch_entries[-1]
            if epoch == latest_epoch and start_offset >= latest_start:
                return False
        kept = [(e, s) for e, s in self.epoch_entries if e < epoch and s < start_offset]
        if len(kept) < len(self.epoch_entries):
            log.warning("%s-%d: leader epoch %d at offset %d removes the entries %s",
                        self.topic, self.partition, epoch, start_offset,
                        self.epoch_entries[len(kept):])
        self.epoch_entries = kept + [(epoch, start_offset)]
        self.leader_epoch = max(self.leader_epoch, epoch)
        self._write_epoch_entries()
        return True

    def _write_epoch_entries(self) -> None:
        write_leader_epoch_checkpoint(self.files, f"{self.directory}/{LEADER_EPOCH_CHECKPOINT}",
                                      self.epoch_entries)

    # -------------------------------------------------------------------------------- append

    @property
    def last_stable_offset(self) -> int:
        if self.first_unstable_offset is None:
            return self.high_watermark
        return min(self.high_watermark, self.first_unstable_offset)

    def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                      coordinator_epoch: int, now_ms: int, transaction_version: int = 0) -> int:
        """Write a transaction's COMMIT or ABORT marker (a control batch) and end the producer's
        transaction here; an abort is recorded in the transaction index. Returns its offset.
        A marker older than the producer's epoch is INVALID_PRODUCER_EPOCH (see
        ProducerStateManager.check_marker for transactions v2's stricter rule)."""
        from trioka.log.records import ControlRecordType, encode_control_batch
        self.producer_state.check_marker(producer_id, producer_epoch, transaction_version)
        kind = ControlRecordType.COMMIT if commit else ControlRecordType.ABORT
        data = encode_control_batch(kind, producer_id, producer_epoch, coordinator_epoch,
                                    now_ms)
        result = self.append(data, now_ms=now_ms, origin=AppendOrigin.COORDINATOR,
                             log_append_time=False)
        self._end_transaction(self.active_segment, result.batches[0], kind, coordinator_epoch)
        return result.base_offset

    def _end_transaction(self, segment: LogSegment, marker: BatchInfo, kind: int,
                         coordinator_epoch: int) -> None:
        first = self.producer_state.end_transaction(marker.producer_id, marker.producer_epoch,
                                                    marker.max_timestamp, coordinator_epoch)
        self.first_unstable_offset = self.producer_state.first_unstable_offset()
        if kind == 0 and first is not None and not self.txn_index.has(marker.base_offset):
            # ABORT: read_committed consumers must skip this producer's records from `first`
            # up to the marker.
            lso = marker.base_offset + 1 if self.first_unstable_offset is None else \
                min(self.first_unstable_offset, marker.base_offset + 1)
            self.txn_index.append(segment.base_offset,
                                  AbortedTxn(marker.producer_id, first, marker.base_offset, lso))

    def has_producer(self, producer_id: int) -> bool:
        """Whether this partition keeps state for the producer (it has written here, and that
        state was not removed with old data)."""
        return self.producer_state.last_entry(producer_id) is not None

    def active_producers(self) -> list[ProducerStateEntry]:
        """The producers this partition keeps state for (DescribeProducers)."""
        return self.producer_state.active_producers()

    def next_producer_expiry_ms(self, expiration_ms: int) -> int | None:
        """When `remove_expired_producers` would first forget a producer here (None: never,
        while nothing changes)."""
        return self.producer_state.next_expiry_ms(expiration_ms)

    def remove_expired_producers(self, now_ms: int, expiration_ms: int) -> list[int]:
        """Forget the producers idle for `producer.id.expiration.ms` with no transaction open
        here (ProducerStateManager.remove_expired_producers); their ids."""
        return self.producer_state.remove_expired_producers(now_ms, expiration_ms)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions overlapping a read_committed
        read of [fetch_offset, upper_bound)."""
        return [(t.producer_id, t.first_offset)
                for t in self.txn_index.collect(fetch_offset, upper_bound)]

    def validate(self, records, *, origin: AppendOrigin = AppendOrigin.CLIENT) -> list[BatchInfo]:
        """Check a produced `records` blob (see batch.validate_batches) and this topic's size
        limit; returns the batch headers to hand back to `append(batches=...)`."""
        batches = validate_batches(records, origin=origin) if records is not None else []
        if not batches:
            raise KafkaError(ErrorCode.INVALID_RECORD, "no record batch to append")
        limit = self.config.max_message_bytes
        for info in batches:
            if info.size > limit:
                raise KafkaError(ErrorCode.MESSAGE_TOO_LARGE,
                                 f"record batch of {info.size} bytes exceeds max.message.bytes "
                                 f"{limit}")
        return batches

    def append(self, records, *, now_ms: int, leader_epoch: int | None = None,
               log_append_time: bool | None = None,
               origin: AppendOrigin = AppendOrigin.CLIENT,
               batches: list[BatchInfo] | None = None,
               conformed: bool = False) -> AppendResult:
        """Append the batches of a produced `records` blob; all or nothing.

        Validates them (unless `batches` from `validate()` are given), applies the topic's record
        rules (log/validator.py; unless `conformed`: the caller already did, from a worker
        thread, with this log's current config), enforces
        max.message.bytes per batch (MESSAGE_TOO_LARGE) and the CreateTime bounds
        message.timestamp.before/after.max.ms (INVALID_TIMESTAMP, checked on the batch's
        base and max timestamps), assigns offsets from log_end_offset, stamps
        `leader_epoch` (default: self.leader_epoch) and, for LogAppendTime (default: the topic's
        message.timestamp.type), the append time; rolls a new segment if due; writes the bytes
        with one unbuffered write. A storage failure is KAFKA_STORAGE_ERROR and takes the log
        dir offline (log/files.py): the log is not written again until a restart recovers it.
        """
        return self.begin_append(records, now_ms=now_ms, leader_epoch=leader_epoch,
                                 log_append_time=log_append_time, origin=origin,
                                 batches=batches, conformed=conformed, off_loop=False)

    # An append whose `.log` write may block (a disk under writeback can hold a write() for
    # 100 ms and more) is split in three, as a flush is: `begin_append` on the event loop does
    # everything up to the write (validation, offsets, the roll) and returns a PendingAppend;
    # `PendingAppend.write` runs in a worker thread; `end_append` on the loop does everything
    # after it (indexes, producer state, log end offset, high watermark, waking readers).
    # Meanwhile the log's state is as before the append: readers see none of it. One pending
    # append at a time per log: its caller holds the log's append turn (log/writer.py), and
    # every other change to the log first settles it (`settle`: waits for the write, then
    # ends the append), so nothing else sees or moves the log under a write in flight.

    def begin_append(self, records, *, now_ms: int, leader_epoch: int | None = None,
                     log_append_time: bool | None = None,
                     origin: AppendOrigin = AppendOrigin.CLIENT,
                     batches: list[BatchInfo] | None = None, conformed: bool = False,
                     off_loop: bool = True) -> "AppendResult | PendingAppend":
        """`append` up to its write. An AppendResult when the append is already complete (a
        duplicate, a memory log, a write under OFF_LOOP_WRITE_BYTES, a dir whose writes do not
        stall, or `off_loop` False); otherwise a PendingAppend to `write` in a worker thread and
        end with `end_append`."""
        self.settle()
        if batches is None:
            batches = self.validate(records, origin=origin)
        if origin is AppendOrigin.CLIENT:
            if not conformed:
                records, batches = self._conform(records, batches, now_ms)
            for info in batches:
                if info.producer_id >= 0:
                    duplicate = self.producer_state.check(info)
                    if duplicate is not None:
                        # A retry of a batch already in the log: answer with where it went.
                        return AppendResult(duplicate.first_offset, duplicate.last_offset, -1,
                                            self.log_start_offset, batches)
        if log_append_time is None:
            log_append_time = self.config.log_append_time
        if origin is AppendOrigin.CLIENT and not log_append_time:
            self._check_timestamps(batches, now_ms)
        epoch = self.leader_epoch if leader_epoch is None else leader_epoch
        # Patch offsets and leader epoch in place when the records are a writable view of the
        # request's own buffer (the server hands them so): the batch is written with no copy.
        if type(records) is memoryview and not records.readonly:
            buf = records
        else:
            buf = bytearray(records)
        first_offset = self.log_end_offset
        next_offset = assign_offsets(buf, batches, first_offset, epoch)
        if log_append_time:
            for info in batches:
                set_log_append_time(buf, info, now_ms)
        max_timestamp, offset_of_max_timestamp = -1, first_offset
        for info in batches:
            if info.max_timestamp > max_timestamp:
                max_timestamp, offset_of_max_timestamp = info.max_timestamp, info.base_offset
        # A storage failure anywhere from here on (the roll, the `.log` write, an index entry,
        # the leader-epoch checkpoint) raises KAFKA_STORAGE_ERROR from the files layer and takes
        # the log dir offline, so no later append can reuse these offsets; the restart's
        # recovery then keeps or cuts what reached the `.log` (log/files.py).
        segment = self._maybe_roll(len(buf), max_timestamp, next_offset - 1, now_ms)
        pending = PendingAppend(segment, buf, batches, first_offset, next_offset, epoch,
                                max_timestamp, offset_of_max_timestamp,
                                now_ms if log_append_time else -1)
        return self._write_or_pend(pending, off_loop)

    def _write_or_pend(self, pending: "PendingAppend", off_loop: bool):
        """The write of a begun append: left pending for a worker thread when it is large and
        the dir's writes stall (DiskFiles.writes_stall), else done here and the append ended."""
        pending.position = pending.segment.prepare_write()
        if off_loop and len(pending.buf) >= OFF_LOOP_WRITE_BYTES and \
                self.files.writes_stall(time.perf_counter()):
            self.pending_append = pending
            return pending
        pending.write()
        self.files.note_write(pending.took, time.perf_counter(), len(pending.buf))
        return self._end(pending)

    def settle(self) -> None:
        """End the pending append, if there is one, waiting for its write (blocking the event
        loop only for what is left of it): the first step of every change to the log."""
        pending = self.pending_append
        if pending is not None:
            pending.written.wait()
            try:
                self._end(pending)
            except KafkaError as e:      # for the append's own caller, from end_append
                pending.failure = e

    def end_append(self, pending: "PendingAppend") -> AppendResult:
        """After `pending.write` returned: the append's result, an AppendResult (a follower's
        append: the log end offset; KafkaError when its write failed). Ends it unless `settle`
        already has."""
        self.files.note_write(pending.took, time.perf_counter(), len(pending.buf))
        if pending.result is None and pending.failure is None:
            self._end(pending)
        if pending.failure is not None:
            raise pending.failure
        return pending.result

    def _end(self, pending: "PendingAppend") -> AppendResult:
        if self.pending_append is pending:
            self.pending_append = None
        if pending.follower:
            return self._end_as_follower(pending)
        segment, buf, batches = pending.segment, pending.buf, pending.batches
        first_offset, next_offset, epoch = pending.first_offset, pending.next_offset, \
            pending.epoch
        segment.finish_write(pending.position, buf, pending.written_bytes, pending.error,
                             next_offset - 1, pending.max_timestamp,
                             pending.offset_of_max_timestamp)
        if not self.epoch_entries or epoch > self.epoch_entries[-1][0]:
            self.assign_epoch_start_offset(epoch, first_offset)
        if epoch > self.leader_epoch:
            self.leader_epoch = epoch
        for info in batches:
            if info.producer_id >= 0 and not info.is_control:
                self.producer_state.update(info)
        self.first_unstable_offset = self.producer_state.first_unstable_offset()
        self.log_end_offset = next_offset
        if self.replicated:
            # The ISR commits it (set_high_watermark); flush.messages still flushes, but as in
            # Kafka the high watermark does not wait for the flush: replicas are the durability.
            if self.on_flush_due is not None and self._due_for_flush(next_offset):
                self.on_flush_due(self)
        elif self.on_flush_due is not None and \
                next_offset - self.recovery_point >= self.config.flush_messages and \
                self._due_for_flush(next_offset):
            # Kafka's UnifiedLog.append: unflushedMessages >= flushInterval -> flush, before the
            # high watermark moves; here end_flush moves it, once these offsets are durable.
            self.flush_required_upto = next_offset
            self.on_flush_due(self)
        elif self.recovery_point >= self.flush_required_upto:
            # The leader is the whole ISR, so what it has written is committed.
            self.high_watermark = next_offset
        self.wake_waiters()
        pending.result = AppendResult(first_offset, next_offset - 1, pending.log_append_time_ms,
                                      self.log_start_offset, batches)
        return pending.result

    def append_as_follower(self, records, *, now_ms: int) -> int:
        """A follower's append of what it fetched from its leader (Kafka's appendAsFollower):
        the batches keep the offsets, leader epochs and timestamps the leader gave them, and are
        written as they are. Their offsets must not go back (a batch below the log end offset
        is OFFSET_OUT_OF_RANGE, Kafka's UnexpectedAppendOffsetException; compaction may leave
        gaps). The producer state, the aborted-transaction index and the leader-epoch cache
        follow, so a follower that becomes leader dedupes and serves read_committed as its
        leader did. The high watermark is the leader's, set by the caller. Returns the new
        log end offset."""
        return self.begin_append_as_follower(records, now_ms=now_ms, off_loop=False)

    def begin_append_as_follower(self, records, *, now_ms: int,
                                 off_loop: bool = True) -> "int | PendingAppend":
        """`append_as_follower` up to its write, as `begin_append` is the leader's: the new log
        end offset when the append is complete (nothing fetched, a small write, a disk that
        keeps up, or `off_loop` False); otherwise a PendingAppend to `write` in a worker thread
        and end with `end_append` (which then returns the log end offset)."""
        self.settle()
        batches = validate_batches(records, origin=AppendOrigin.COORDINATOR) \
            if records is not None else []
        if not batches:
            return self.log_end_offset
        first = batches[0]
        if first.base_offset < self.log_end_offset:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE,
                             f"{self.topic}-{self.partition}: fetched batch at offset "
                             f"{first.base_offset} is below the log end offset "
                             f"{self.log_end_offset}")
        previous_end = None
        max_timestamp, offset_of_max_timestamp = -1, first.base_offset
        for info in batches:
            if previous_end is not None and info.base_offset < previous_end:
                raise KafkaError(ErrorCode.CORRUPT_MESSAGE,
                                 f"{self.topic}-{self.partition}: fetched batches out of order "
                                 f"at offset {info.base_offset}")
            previous_end = info.base_offset + info.last_offset_delta + 1
            if info.max_timestamp > max_timestamp:
                max_timestamp, offset_of_max_timestamp = info.max_timestamp, info.base_offset
        view = memoryview(records)
        data = view[first.position:batches[-1].position + batches[-1].size]
        segment = self._maybe_roll(len(data), max_timestamp, previous_end - 1, now_ms)
        pending = PendingAppend(segment, data, batches, first.base_offset, previous_end, -1,
                                max_timestamp, offset_of_max_timestamp, -1)
        pending.follower = True
        return self._write_or_pend(pending, off_loop)

    def _end_as_follower(self, pending: "PendingAppend") -> int:
        """`_end` of a follower's append: what append_as_follower does after its write."""
        segment, batches, first = pending.segment, pending.batches, pending.batches[0]
        position = segment.finish_write(pending.position, pending.buf, pending.written_bytes,
                                        pending.error, pending.next_offset - 1,
                                        pending.max_timestamp, pending.offset_of_max_timestamp)
        for info in batches:
            epoch = info.partition_leader_epoch
            if epoch >= 0 and (not self.epoch_entries or epoch > self.epoch_entries[-1][0]):
                self.assign_epoch_start_offset(epoch, info.base_offset)
            if info.producer_id < 0:
                continue
            if info.is_control:
                # The marker as stored: its header with the position in the segment file.
                start = info.position - first.position
                stored = BatchInfo(position + start, *[getattr(info, f) for f in
                                                       BatchInfo.__slots__[1:]])
                self._end_transaction(segment, stored, *self._control_marker(segment, stored))
            else:
                self.producer_state.update(info)
        self.first_unstable_offset = self.producer_state.first_unstable_offset()
        self.log_end_offset = pending.next_offset
        if self.on_flush_due is not None and self._due_for_flush(pending.next_offset):
            self.on_flush_due(self)
        pending.result = self.log_end_offset
        return pending.result

    def set_high_watermark(self, offset: int) -> bool:
        """Replication's high watermark (a leader's: the ISR has everything below it; a
        follower's: its leader's), bounded by this log's start and end. Readers waiting on the
        partition wake when it moves (consumers read below it). True if it moved."""
        offset = max(self.log_start_offset, min(offset, self.log_end_offset))
        if offset == self.high_watermark:
            return False
        self.high_watermark = offset
        self.wake_waiters()
        return True

    def _conform(self, records, batches: list[BatchInfo], now_ms: int):
        """Kafka's LogValidator where the records must be walked, on topics that ask for it
        (compacted: keys; compression.type: recompression; see log/validator.py). Returns the
        records and batch headers to append."""
        from trioka.log.validator import RecordRules, conform
        if not RecordRules.walk_needed(self.config, batches):
            return records, batches
        return conform(records, batches, RecordRules.of(self.config),
                       f"{self.topic}-{self.partition}", now_ms)

    def _check_timestamps(self, batches: list[BatchInfo], now_ms: int) -> None:
        """Kafka rejects CreateTime timestamps outside [now - before.max, now + after.max]. It
        checks every record; without decoding, the batch's base and max timestamps are checked
        (the first record's timestamp and the largest one)."""
        before = self.config.message_timestamp_before_max_ms
        after = self.config.message_timestamp_after_max_ms
        if before == LONG_MAX and after == LONG_MAX:
            return
        for info in batches:
            for timestamp in (info.base_timestamp, info.max_timestamp):
                if timestamp < 0:
                    continue
                if timestamp < now_ms - before or timestamp > now_ms + after:
                    raise KafkaError(ErrorCode.INVALID_TIMESTAMP,
                                     f"timestamp {timestamp} of batch is out of range "
                                     f"[now - {before}, now + {after}] (now = {now_ms})")

    def _maybe_roll(self, incoming_size: int, incoming_max_timestamp: int,
                    incoming_last_offset: int, now_ms: int) -> LogSegment:
        segment = self.active_segment
        config = self.config
        if segment.should_roll(incoming_size=incoming_size,
                               incoming_max_timestamp=incoming_max_timestamp,
                               incoming_last_offset=incoming_last_offset, now_ms=now_ms,
                               segment_bytes=config.segment_bytes, segment_ms=config.segment_ms):
            return self.roll(now_ms)
        return segment

    def roll(self, now_ms: int) -> LogSegment:
        """Start a new active segment at log_end_offset (no-op if the active one is empty),
        created at `now_ms`."""
        self.settle()
        active = self.active_segment
        if active.size == 0 and active.base_offset == self.log_end_offset:
            return active
        new_base = self.log_end_offset
        if active.size == 0:
            # An empty active segment at a stale base offset: replace it.
            active.delete()
            self._set_segments(self.segments[:-1])
        else:
            active.seal()
        if self.producer_state.producers:
            # As Kafka does at every roll, so a restart replays at most one segment's headers.
            self.producer_state.take_snapshot(new_base)
        segment = LogSegment.create(self.files, self.directory, new_base,
                                    **self._segment_params(now_ms))
        self._set_segments(self.segments + [segment])
        if self.on_flush_due is not None:
            self.on_flush_due(self)   # Kafka's roll: flush up to the new segment, in the background
        return segment

    # ---------------------------------------------------------------------------------- reads

    def _segment_index_for(self, offset: int) -> int:
        return max(0, bisect_right(self._base_offsets, offset) - 1)

    def read(self, fetch_offset: int, max_bytes: int, *, min_one_batch: bool = True,
             isolation_upper: int | None = None, zero_copy: bool = False) -> ReadResult:
        """Whole stored batches from the one holding `fetch_offset`, up to `max_bytes` in total,
        below `isolation_upper` (default: the high watermark; pass last_stable_offset for
        READ_COMMITTED). With `min_one_batch` (KIP-74) the first batch is returned even if it is
        larger than max_bytes, so a consumer always progresses. Continues into the following
        segments while bytes remain.

        OFFSET_OUT_OF_RANGE if fetch_offset < log_start_offset or > log_end_offset; a fetch at
        log_end_offset returns no records. The first batch may start before fetch_offset (a
        batch is never split); consumers skip the records below the offset they asked for.
        With `zero_copy`, large reads from disk come back as FileRegions (for sendfile) rather
        than bytes; only a caller that sends `chunks` to a socket should ask for that.
        """
        if fetch_offset < self.log_start_offset or fetch_offset > self.log_end_offset:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE,
                             f"fetch offset {fetch_offset} is outside [{self.log_start_offset}, "
                             f"{self.log_end_offset}] of {self.topic}-{self.partition}")
        upper = self.high_watermark if isolation_upper is None else isolation_upper
        chunks = []
        if fetch_offset < upper:
            remaining = max_bytes
            first = min_one_batch
            offset = fetch_offset
            i = self._segment_index_for(fetch_offset)
            while i < len(self.segments):
                data, exhausted = self.segments[i].read(offset, remaining, max_offset=upper,
                                                        min_one_batch=first, zero_copy=zero_copy)
                if data:
                    chunks.append(data)
                    remaining -= len(data)
                    first = False
                if not exhausted or remaining <= 0:
                    break
                i += 1
                if i < len(self.segments):
                    offset = self.segments[i].base_offset
        return ReadResult(chunks, self.high_watermark, self.log_start_offset,
                          self.last_stable_offset, self.log_end_offset)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """ListOffsets by timestamp: (offset, timestamp) of the earliest record at or after
        log_start_offset whose timestamp is >= `timestamp`; None if there is none.

        The time index finds the first batch whose max_timestamp >= target (`timestamp_batch`);
        the record is then found inside that one batch by walking its records' timestamp
        deltas (records.first_record_at_or_after, streaming if compressed). For LogAppendTime
        batches every record has the batch's max_timestamp. apis/list_offsets.py runs the same
        steps with the walk in a worker thread.
        """
        from trioka.log.records import first_record_at_or_after
        search_from = self.log_start_offset
        while (candidate := self.timestamp_batch(timestamp, search_from)) is not None:
            info, data = candidate
            found = first_record_at_or_after(data, info, timestamp, self.log_start_offset)
            if found is not None:
                return found
            search_from = info.next_offset
        return None

    def timestamp_batch(self, timestamp: int, search_from: int) -> tuple[BatchInfo, bytes] | None:
        """One step of ListOffsets by timestamp: the first stored batch holding offsets at or
        after `search_from` (and the log start offset) whose max timestamp is >= `timestamp`,
        with its bytes; None if there is none. When the batch's records hold no match, the search
        goes on from its next_offset."""
        start = max(search_from, self.log_start_offset)
        for segment in self.segments[self._segment_index_for(start):]:
            if segment.max_timestamp < timestamp:
                continue
            info = segment.find_batch_by_timestamp(timestamp, start)
            if info is not None:
                return info, segment.read_batch(info)
        return None

    def largest_timestamp(self) -> int:
        """The largest record timestamp in the log (from the segments' max timestamps); -1 if
        no record has one."""
        best = -1
        for segment in self.segments[self._segment_index_for(self.log_start_offset):]:
            best = max(best, segment.max_timestamp)
        return best

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """ListOffsets MAX_TIMESTAMP (-3, KIP-734): (offset, timestamp) of the first record with
        the largest timestamp in the log; None if no record has a timestamp."""
        best = self.largest_timestamp()
        if best < 0:
            return None
        return self.offset_for_timestamp(best)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch, as Kafka's leader-epoch cache answers it:

        | requested epoch                | (leader epoch, end offset)                       |
        |--------------------------------|--------------------------------------------------|
        | -1 (undefined)                 | (-1, -1)                                         |
        | the latest epoch               | (latest, log end offset)                         |
        | larger than every epoch        | (-1, -1)                                         |
        | smaller than every epoch       | (requested, start offset of the first epoch)     |
        | otherwise                      | (largest epoch <= requested, next epoch's start) |
        """
        entries = self.epoch_entries or [(self.leader_epoch, self.log_start_offset)]
        latest = entries[-1][0]
        if epoch < 0:
            return -1, -1
        if epoch == latest:
            return latest, self.log_end_offset
        if epoch > latest:
            return -1, -1
        higher = next(i for i, (e, _) in enumerate(entries) if e > epoch)
        if higher == 0:
            return epoch, entries[0][1]
        return entries[higher - 1][0], entries[higher][1]

    # ------------------------------------------------------------------- truncation / deletion

    def truncate_to(self, offset: int, now_ms: int) -> None:
        """Remove everything at and after `offset` (the whole batch holding it goes, as in
        Kafka; log_end_offset becomes that batch's base offset). When nothing is left, the new
        empty segment is created at `now_ms`."""
        self.settle()
        if offset >= self.log_end_offset:
            return
        log.info("Truncating %s-%d to offset %d (log end offset %d)", self.topic, self.partition,
                 offset, self.log_end_offset)
        if offset <= self.segments[0].base_offset:
            self.truncate_fully_and_start_at(max(offset, 0), now_ms)
            return
        keep = self._segment_index_for(offset)
        if self.segments[keep].base_offset == offset and keep > 0:
            keep -= 1
        for segment in self.segments[keep + 1:]:
            segment.delete()
        self._set_segments(self.segments[:keep + 1])
        active = self.active_segment
        active.truncate_to(offset)
        active.load_tail()
        self._after_truncation()

    def truncate_fully_and_start_at(self, offset: int, now_ms: int) -> None:
        """Delete every segment and start an empty log at `offset`, its segment created at
        `now_ms`."""
        self.settle()
        for segment in self.segments:
            segment.delete()
        self._set_segments([LogSegment.create(self.files, self.directory, offset,
                                              **self._segment_params(now_ms))])
        self.log_start_offset = offset
        self._after_truncation()

    def _after_truncation(self) -> None:
        self._truncations += 1
        self.log_end_offset = self.active_segment.next_offset
        # A replica keeps the high watermark it knew, within the log (Kafka's truncateTo).
        self.high_watermark = min(self.high_watermark, self.log_end_offset) if self.replicated \
            else self.log_end_offset
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self.flush_required_upto = min(self.flush_required_upto, self.log_end_offset)
        self.txn_index.truncate_to(self.log_end_offset)
        self._rebuild_producer_state()
        kept = [(e, s) for e, s in self.epoch_entries if s < self.log_end_offset]
        if kept != self.epoch_entries:
            self.epoch_entries = kept
            self._write_epoch_entries()
        self.wake_waiters()

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move log_start_offset up to `offset` and delete the segments that are
        now wholly below it. OFFSET_OUT_OF_RANGE if offset > high_watermark. Returns the new
        log_start_offset (the response's low watermark)."""
        self.settle()
        if offset > self.high_watermark or offset < 0:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE,
                             f"cannot delete records before {offset}: high watermark is "
                             f"{self.high_watermark}")
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self._delete_segments_below_log_start()
            self.txn_index.drop_below(self.log_start_offset)
            self.wake_waiters()   # readers below the new log start get OFFSET_OUT_OF_RANGE
        return self.log_start_offset

    def _delete_segments_below_log_start(self) -> int:
        """Delete leading segments whose next segment starts at or below log_start_offset."""
        count = 0
        while len(self.segments) > 1 and self.segments[1].base_offset <= self.log_start_offset:
            self.segments[0].delete()
            self._set_segments(self.segments[1:])
            count += 1
        return count

    def next_retention_ms(self) -> int | None:
        """The wall time from which `delete_old_segments` would delete something, as the log is
        now (a time already past when it would at once; None when only a change of the log,
        its high watermark or its config could make it). Kafka's retention runs on a timer;
        this lets a virtual clock (clock.py) skip the passes that would do nothing."""
        if len(self.segments) > 1 and self.segments[1].base_offset <= self.log_start_offset:
            return 0
        if not self.config.delete:
            return None
        segment = self.segments[0]
        is_active = len(self.segments) == 1
        if segment.size == 0 and is_active:
            return None
        segment_end = self.log_end_offset if is_active else self.segments[1].base_offset
        if segment_end > self.high_watermark:
            return None
        retention_bytes = self.config.retention_bytes
        if retention_bytes >= 0 and self.size - retention_bytes >= segment.size:
            return 0
        if self.config.retention_ms < 0:
            return None
        timestamp = segment.max_timestamp
        if timestamp < 0:
            timestamp = segment.created_ms
        return timestamp + self.config.retention_ms + 1   # delete_old_segments: age > retention

    def delete_old_segments(self, now_ms: int) -> int:
        """Retention (cleanup.policy=delete): delete the oldest segments while they are older
        than retention.ms (by their largest timestamp, or creation time without timestamps) or
        the log is bigger than retention.bytes, and only segments wholly below the high
        watermark. The active segment may go too if non-empty: a new empty one is rolled first.
        Also applies the log_start_offset rule for any policy. Returns segments deleted."""
        self.settle()
        deleted = self._delete_segments_below_log_start()
        if not self.config.delete:
            return deleted
        retention_ms = self.config.retention_ms
        retention_bytes = self.config.retention_bytes
        total = self.size
        while True:
            segment = self.segments[0]
            is_active = len(self.segments) == 1
            if segment.size == 0 and is_active:
                break
            segment_end = self.log_end_offset if is_active else self.segments[1].base_offset
            if segment_end > self.high_watermark:
                break
            timestamp = segment.max_timestamp
            if timestamp < 0:
                timestamp = segment.created_ms
            too_old = retention_ms >= 0 and now_ms - timestamp > retention_ms
            too_big = retention_bytes >= 0 and total - retention_bytes >= segment.size
            if not (too_old or too_big):
                break
            if is_active:
                self.roll(now_ms)
            total -= segment.size
            segment.delete()
            self._set_segments(self.segments[1:])
            self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
            deleted += 1
        if deleted:
            self.txn_index.drop_below(self.log_start_offset)
            self.wake_waiters()   # readers below the new log start get OFFSET_OUT_OF_RANGE
        return deleted

    def replace_segments(self, old: list[LogSegment], cleaned: LogSegment, *,
                         keep_old_as: str | None = None) -> None:
        """Swap in `cleaned`, a segment the log cleaner wrote under `.cleaned` file names with
        the surviving batches of `old` (consecutive segments, never the active one), in Kafka's
        steps: fsync it, rename its files to `.swap` (the `.log` first: from then on a restart
        completes the swap), delete the old segments, rename the `.swap` files to their final
        names. One synchronous call, so reads see either the old segments or the new one.
        With `keep_old_as` (`.deleted`) the old segments' files are renamed with that suffix
        instead of deleted, for the caller to delete (`segment.delete()`) off the event loop, as
        Kafka's asyncDeleteSegment; a restart removes any left.
        See log/cleaner.py for what a restart does with each intermediate state."""
        self.settle()
        first = next(i for i, segment in enumerate(self.segments) if segment is old[0])
        after = first + len(old)
        if self.segments[first:after] != old or after >= len(self.segments):
            raise ValueError("replace_segments: not consecutive closed segments of this log")
        cleaned.flush()
        cleaned.seal()
        cleaned.next_offset = self.segments[after].base_offset
        cleaned.change_file_suffix(SWAP_FILE_SUFFIX)
        self._set_segments(self.segments[:first] + [cleaned] + self.segments[after:])
        for segment in old:
            if keep_old_as is None:
                segment.delete()
            else:
                segment.change_file_suffix(keep_old_as)
        cleaned.change_file_suffix("")
        # The aborted transactions of the old segments now live in the cleaned one's .txnindex.
        self.txn_index.load(self._base_offsets, self.log_end_offset)

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def size(self) -> int:
        return sum(segment.size for segment in self.segments)

    def update_config(self, config) -> None:
        """A topic config change (AlterConfigs): applies to the next appends and rolls."""
        self.config = config if isinstance(config, LogConfig) else LogConfig.from_configs(config)
        for segment in self.segments:
            segment.index_interval_bytes = self.config.index_interval_bytes

    @property
    def unflushed_messages(self) -> int:
        """Kafka's unflushedMessages: offsets written above the recovery point."""
        return self.log_end_offset - self.recovery_point

    def _due_for_flush(self, next_offset: int) -> bool:
        """Whether an append ending at `next_offset` leaves flush.messages unflushed, not
        counting what a flush in flight covers (in Kafka such an append waits for that flush,
        behind the log's lock, and counts after it)."""
        covered = self.recovery_point
        if self.flushing is not None and self.flushing.upto > covered:
            covered = self.flushing.upto
        return next_offset - covered >= self.config.flush_messages

    def awaits_flush(self, upto: int) -> bool:
        """Whether an append of the offsets below `upto` waits for a flush before it is
        answered, as Kafka's append flushes before it returns once flush.messages are
        unflushed: they are not committed yet (the high watermark waits for a flush), or
        flush.messages are unflushed and they are among them."""
        upto = min(upto, self.log_end_offset)
        if self.replicated:
            # The high watermark is the ISR's, not a flush's.
            return self.recovery_point < upto and \
                self.log_end_offset - self.recovery_point >= self.config.flush_messages
        return self.high_watermark < upto or (
            self.recovery_point < upto and
            self.log_end_offset - self.recovery_point >= self.config.flush_messages)

    def flush(self) -> None:
        """fsync, here and now, every segment written since the last flush (those from the one
        holding the recovery point on, and any other written since); everything below
        log_end_offset is then durable, so the recovery point moves there. For shutdown and
        tests: at run time the broker flushes with begin_flush/end_flush, off the event loop."""
        first = self._segment_index_for(self.recovery_point)
        for i, segment in enumerate(self.segments):
            if segment.dirty or i >= first:
                segment.flush()
        self.recovery_point = self.log_end_offset
        self._commit_flushed()

    def begin_flush(self, *, handles: bool = True) -> "LogFlush | None":
        """Start a flush of everything below the log end offset (Kafka's flush(false)): the
        LogFlush to `run()` in a worker thread, then to hand to `end_flush`. It covers the
        segments from the one holding the recovery point on, and the partition directory if
        one of them is new since then (Kafka's LocalLog.flush). None when nothing is unflushed,
        or while another flush runs (`flushing`: wait for it, then ask again).
        KAFKA_STORAGE_ERROR once the log dir is offline. `handles` False: a flush with no
        descriptors, made durable by a sync of the whole file system (the checkpoint's sweep:
        a descriptor each for 10,000 logs would pass the process's limit)."""
        if self.flushing is not None or self.recovery_point >= self.log_end_offset:
            return None
        self.files.failure_channel.check()
        opened = []
        try:
            new_segment = False
            for segment in self.segments[self._segment_index_for(self.recovery_point):]:
                opened.extend(segment.flush_handles(handles=handles))
                new_segment = new_segment or segment.base_offset >= self.recovery_point
            if new_segment and opened:
                opened.append(self.files.open_directory(self.directory))
        except BaseException:
            for handle in opened:
                handle.close()
            raise
        self.flushing = LogFlush(self.log_end_offset, opened, self._truncations)
        return self.flushing

    def end_flush(self, flush: "LogFlush", now_ms: int, *, completed: bool = True) -> None:
        """The flush from `begin_flush` is over; `completed` if its fsyncs all returned. Then
        the recovery point moves up to what it covered (Kafka's markFlushed; not if the log was
        truncated meanwhile) and whoever waited for it is woken."""
        if self.flushing is flush:
            self.flushing = None
        if completed:
            self.flushes += 1
            self.last_flush_ms = now_ms
            if flush.truncations == self._truncations:
                self.recovery_point = max(self.recovery_point,
                                          min(flush.upto, self.log_end_offset))
                self._commit_flushed()
        flush.wake_waiters()

    def _commit_flushed(self) -> None:
        """Move the high watermark held back for a flush (flush.messages): everything once the
        flush it waited for is done (appends after it were not due one), else what is durable."""
        if self.replicated:
            return
        committed = self.log_end_offset if self.recovery_point >= self.flush_required_upto \
            else self.recovery_point
        if committed > self.high_watermark:
            self.high_watermark = committed
            self.wake_waiters()

    def close(self, *, flush: bool = True) -> None:
        """Flush (unless told not to, e.g. before deleting) and close all files; the caller then
        writes the checkpoints."""
        self.settle()
        if flush:
            self.flush()
            if self.producer_state.producers:
                self.producer_state.take_snapshot(self.log_end_offset)
        for segment in self.segments:
            segment.close()

    def close_handlers(self) -> None:
        """Close every file without writing anything (Kafka's closeHandlers): a log of an
        offline dir is let go this way, with no flush and no producer snapshot."""
        self.settle()
        for segment in self.segments:
            segment.close_handlers()

    def delete(self) -> None:
        """Close and remove the partition directory with all its files."""
        self.settle()
        for segment in self.segments:
            segment.delete()
        self.segments = []
        self._base_offsets = []
        self.files.remove_tree(self.directory)
        self.wake_waiters()   # they look the partition up again and report it gone
