"""The log cleaner: compaction of `cleanup.policy=compact` logs (Kafka's LogCleaner).

A compacted log keeps, for every key, at least the last record written with it. The cleaner
gets there by copying segments without the records that a later record of the same key made
obsolete. Records keep their offsets, so a cleaned log has gaps; consumers skip them.

Sections of a log, in Kafka's words (log-layout.md §11):

* **clean**: from the log start to the `cleaner-offset-checkpoint` of the partition (the "first
  dirty offset"), already compacted by an earlier pass;
* **dirty**: after it. Its cleanable part ends at the **first uncleanable offset**: never in or
  past the active segment, never at or past the last stable offset (an open transaction's records
  may still be aborted), and not in a segment holding records younger than
  `min.compaction.lag.ms`. The cleaner works on whole segments only.

The **dirty ratio** is cleanable dirty bytes / (clean bytes + cleanable dirty bytes). The timer
cleans, once per tick, the log with the highest ratio among those at or above
`min.cleanable.dirty.ratio`, or one whose oldest dirty record waited longer than
`max.compaction.lag.ms`, or one holding tombstones whose delete horizon has passed (known from an
earlier pass of this process). `Broker.compact_now()` cleans every compacted log regardless.

One pass over a log:

1. **Offset map**: read the cleanable dirty section and map each key to the offset of its last
   record there. Control batches (transaction markers) carry no application key, and records of
   aborted transactions (found through the `.txnindex` entries) do not count: a record that was
   never committed must not hide an older committed one. The map is Kafka's SkimpyOffsetMap:
   each key is held as its MD5 hash (16 bytes) beside its offset (8 bytes) in one block of
   `log.cleaner.dedupe.buffer.size` bytes (split across `log.cleaner.threads`), filled to 90%
   at most. When it fills inside a batch, the pass ends before that batch (at its segment's base
   offset if it is the segment's first): this pass cleans below that offset, its checkpoint, and
   the next pass carries on from there, as Kafka's endOffset = map.latestOffset + 1. The map
   never holds more than that (only the first batch of a pass may go past the load factor, so
   that every pass makes progress); keys of the cut batch already mapped point at records that
   exist past the end, so they drop only what those records replace.
2. **Recopy**: every segment from the log start to the end of the mapped section, clean part
   included, into new segments. A new segment takes one old segment after another while what
   the next could add (at most its size) keeps it within `segment.bytes` and its offsets within
   int32 of its base, so runs of small adjacent segments become one; a lone segment that comes
   out unchanged is left as it is. Per batch, the new segment keeps:

   | batch                                   | kept as                                        |
   |-----------------------------------------|------------------------------------------------|
   | control batch (COMMIT / ABORT marker)   | unchanged, or gone once its transaction is     |
   |                                         | (see "Transaction markers" below)              |
   | data of an aborted transaction          | nothing, or an empty batch (see below)         |
   | records                                 | those whose key has no later offset in the map |

   A record without a key is dropped (a compacted log cannot hold one). A tombstone (null value)
   that is the last of its key is kept until its batch's **delete horizon** (KIP-534): the first
   pass that keeps it rewrites the batch with attribute bit 0x40 set and baseTimestamp = now +
   `delete.retention.ms` (record timestamp deltas follow the new base, so timestamps are
   unchanged); a pass after that time drops it. A batch whose records all survive and that needs
   no horizon is copied byte for byte; otherwise it is rebuilt with its original base offset,
   lastOffsetDelta, producer id, epoch, base sequence, partition leader epoch, codec and
   attributes. A batch left with no record disappears, unless it is the last batch its producer
   wrote (per the partition's producer state): then an empty batch stays (recordsCount 0,
   baseTimestamp -1, the old maxTimestamp, same offsets and sequences), so that a restart that
   rebuilds producer state from the log still knows the producer's last sequence.
   **Transaction markers** (Kafka's CleanedTransactionMetadata). Walking the log in order, the
   pass notes, per producer, whether a batch of its open transaction is still in the log (an
   aborted transaction's data is dropped, but a batch kept as its producer's last still counts).
   A marker whose transaction has no batch left is empty: the first pass that sees it so stamps
   it with a delete horizon (now + `delete.retention.ms`, the way tombstones get theirs), and a
   pass after that time drops it, and with an ABORT marker its `.txnindex` entry, so no
   read_committed consumer is told of an aborted transaction whose marker it will never see.
   A marker at the producer's current epoch after its last data batch stays: it is the only
   record of that epoch left, which a restart needs to keep fencing older epochs.
3. **Swap** (PartitionLog.replace_segments, one synchronous step): the new segment is written
   under `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`, and `.txnindex.cleaned`
   holding the aborted transactions of the group's `.txnindex` files) and fsync'd; then its files
   are renamed to `.swap`, the `.log` first (**the commit point**); the old segments' files are
   deleted (large ones renamed `.deleted` and removed right after, as Kafka's asyncDeleteSegment
   does); the `.swap` files get their final names, the `.log` first. The fsync and the removal
   of large segments are steps the broker runs in a worker thread (BlockingStep).
4. The checkpoint moves to the end of the cleaned section.

A restart resolves what a crash left (`complete_interrupted_swaps`, called before a partition
loads its segments), per base offset B:

| left on disk                          | meaning               | done on restart                |
|---------------------------------------|-----------------------|--------------------------------|
| `B.log.swap`                          | committed; old files  | delete every old segment file  |
|                                       | may remain            | in the swap's offset range,    |
|                                       |                       | then give the new final names  |
| `B.log.cleaned` (no `B.log.swap`)     | not committed         | delete the new files           |
| index `.swap` files, `B.log` final    | final renames going   | finish them                    |
| index `.cleaned` files only           | not committed         | delete them                    |

Old files are deleted before any new file takes a final name, so a final name is never
ambiguous, and each step of the restart can itself be interrupted and redone.

Work is done in bounded steps (about `step_bytes` of log read per step) by a generator: the
broker's timer runs one step, lets trio serve requests, and runs the next. A step may hand the
driver blocking work to `run()` in a worker thread before the next step (a BlockingStep: the
fsync of a new segment, the removal of the old ones); a driver that does not run it loses
nothing, the pass then does it itself. Before every step the
pass checks that the segments it works on are still the log's (retention, DeleteRecords or a
topic deletion may have removed them meanwhile) and gives up otherwise. Appends only touch the
active segment, which a pass never cleans. Nothing here waits or imports trio.

Records are read one at a time out of each batch's (decompressing) stream (records.iter_records),
and a step also ends every RECORDS_PER_STEP records, so a batch that decompresses to far more
than it stores costs neither memory nor a stalled event loop. A batch that cannot be read
(corrupt, or a decompression bomb past the limit of log/compression.py) fails the pass: the
partition is marked uncleanable, as Kafka's cleaner does (`uncleanable-partitions`), its data is
left as it is, and the broker and its other logs carry on; after a restart its first pass marks
it again.

Not done: forcing a roll of the active segment when `max.compaction.lag.ms` passes, limits on the size of a group's indexes.
"""

import dataclasses
import hashlib
import logging
import mmap
import struct
import threading
import weakref
from bisect import bisect_right

from trioka.log.batch import (CURRENT_MAGIC, HEADER_SIZE, LOG_OVERHEAD, MAGIC_OFFSET,
                              MIN_BATCH_LENGTH, BatchScan, BatchInfo, read_header)
from trioka.log.checkpoint import (CLEANER_OFFSET_CHECKPOINT, CheckpointError,
                                   read_offset_checkpoint, write_offset_checkpoint)
from trioka.log.records import (NO_TIMESTAMP, ControlRecordType, Record, decode_batch,
                                decode_control_key, encode_batch, iter_records)
from trioka.log.segment import (CLEANED_FILE_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX,
                                SEGMENT_SUFFIXES, SWAP_FILE_SUFFIX, TIME_INDEX_SUFFIX,
                                TXN_INDEX_SUFFIX, LogSegment, parse_segment_file_name,
                                segment_file_name)
from trioka.log.txn_index import ENTRY_SIZE
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.cleaner")

LONG_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# Bytes of log read per step (Kafka's log.cleaner.io.buffer.size is 512 KiB as well).
STEP_BYTES = 512 * 1024
# Records read per step inside one batch: a batch written by a client may hold far more than a
# step's worth once decompressed (it is read one record at a time, records.iter_records), so
# the walk gives the event loop back in between.
RECORDS_PER_STEP = 4096
# Kafka's log.cleaner.dedupe.buffer.size (128 MiB): the memory of the offset map of one pass.
DEDUPE_BUFFER_SIZE = 128 * 1024 * 1024
# Kafka's log.cleaner.io.buffer.load.factor: how full the offset map's slots may get.
DEDUPE_BUFFER_LOAD_FACTOR = 0.9
INDEX_SUFFIXES = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)
DELETED_FILE_SUFFIX = ".deleted"
# A `.txnindex` entry's last offset (its marker's offset): after the version and producer id.
_LAST_OFFSET = struct.Struct(">q")
_LAST_OFFSET_AT = 2 + 8 + 8


class _Interrupted(Exception):
    """The log changed under a pass in a way that makes its work invalid; the pass gives up."""


@dataclasses.dataclass
class LogToClean:
    """A log and the offsets a pass would clean (Kafka's LogToClean)."""

    log: object  # PartitionLog
    first_dirty_offset: int
    first_uncleanable_offset: int  # a segment base offset
    clean_bytes: int
    cleanable_bytes: int
    compaction_due: bool = False  # max.compaction.lag.ms or a passed delete horizon

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0


@dataclasses.dataclass
class CleanResult:
    """What one finished pass did to one partition."""

    topic: str
    partition: int
    first_dirty_offset: int
    end_offset: int  # the new first dirty offset (the checkpoint)
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    records_read: int = 0
    records_kept: int = 0
    empty_batches_kept: int = 0


class SkimpyOffsetMap:
    """Kafka's SkimpyOffsetMap: key -> offset of the key's last record, for one cleaning pass,
    in a fixed block of `memory` bytes whatever the keys' sizes.

    A slot is a key's MD5 hash (16 bytes) then the offset (int64); a slot whose hash is all zero
    is empty. A key's slot is found by probing as Kafka's positionOf: attempt n reads a 4-byte
    big-endian int at byte min(n, 12) of the hash, plus max(0, n - 12), modulo the slots. Keys
    whose hashes collide count as one key, as in Kafka (for MD5, never in practice). The block is
    an anonymous mapping: untouched slots cost no memory, and it is given back with the map."""

    HASH_SIZE = 16
    ENTRY_SIZE = HASH_SIZE + 8
    _EMPTY = bytes(HASH_SIZE)
    _OFFSET = struct.Struct(">q")
    _PROBE = struct.Struct(">i")

    def __init__(self, memory: int, load_factor: float = DEDUPE_BUFFER_LOAD_FACTOR):
        self.slots = max(0, memory) // self.ENTRY_SIZE
        if self.slots * load_factor <= 1:
            raise ValueError("offset map is too small to fit in even a single message, so log "
                             "cleaning will never make progress. You can increase "
                             "log.cleaner.dedupe.buffer.size or decrease log.cleaner.threads")
        # Kafka's maxDesiredMapSize: the map counts as full beyond this many keys.
        self.max_entries = int(self.slots * load_factor)
        self.size = 0
        self._bytes = mmap.mmap(-1, self.slots * self.ENTRY_SIZE, flags=mmap.MAP_PRIVATE)

    def fits(self, keys: int) -> bool:
        """Whether `keys` more keys (at most; some may be in already) keep it within its
        load factor."""
        return self.size + keys <= self.max_entries

    def _slot(self, digest: bytes) -> tuple[int, bool]:
        """(byte position of the key's slot, whether it holds the key already); position -1
        when every slot holds another key. From attempt 12 on the probe moves one slot at a
        time, so `slots` more attempts have seen them all."""
        data = self._bytes
        for attempt in range(self.slots + self.HASH_SIZE):
            at = min(attempt, self.HASH_SIZE - 4)
            probe = self._PROBE.unpack_from(digest, at)[0] + max(0, attempt - self.HASH_SIZE + 4)
            position = (abs(probe) % self.slots) * self.ENTRY_SIZE
            stored = data[position:position + self.HASH_SIZE]
            if stored == digest:
                return position, True
            if stored == self._EMPTY:
                return position, False
        return -1, False

    @staticmethod
    def _hash(key) -> bytes:
        return hashlib.md5(key, usedforsecurity=False).digest()

    def put(self, key, offset: int) -> None:
        digest = self._hash(key)
        position, found = self._slot(digest)
        if position < 0:
            raise ValueError("the offset map is full")
        if not found:
            self._bytes[position:position + self.HASH_SIZE] = digest
            self.size += 1
        self._OFFSET.pack_into(self._bytes, position + self.HASH_SIZE, offset)

    def get(self, key, default: int = -1) -> int:
        """The offset of the key's last record in the mapped section, or `default`."""
        position, found = self._slot(self._hash(key))
        if not found:
            return default
        return self._OFFSET.unpack_from(self._bytes, position + self.HASH_SIZE)[0]

    def __len__(self) -> int:
        return self.size

    def close(self) -> None:
        self._bytes.close()


class LogCleaner:
    """Compacts the logs that `partitions()` returns (PartitionLogs) when their topic has
    `cleanup.policy` compact. Keeps `cleaner-offset-checkpoint` in `files`. Each pass maps keys
    in a SkimpyOffsetMap of `dedupe_buffer_size` bytes (capped at 2^31 - 1, as Kafka caps it)."""

    def __init__(self, files, partitions, *, dedupe_buffer_size: int = DEDUPE_BUFFER_SIZE,
                 step_bytes: int = STEP_BYTES):
        self.files = files
        self.partitions = partitions
        self.dedupe_buffer_size = min(dedupe_buffer_size, INT32_MAX)
        SkimpyOffsetMap(self.dedupe_buffer_size).close()   # too small: refused, as Kafka does
        self.step_bytes = step_bytes
        self._checkpoints: dict[tuple[str, int], int] | None = None
        # Logs whose pass failed on corrupt data, as Kafka marks them: the timer skips them.
        self._uncleanable = weakref.WeakSet()
        # The earliest delete horizon each log's last pass wrote or kept: a pass is due then.
        self._delete_horizons = weakref.WeakKeyDictionary()
        self._current = None  # the generator of the pass in progress

    # ---------------------------------------------------------------------------- checkpoint

    def _checkpoint(self) -> dict[tuple[str, int], int]:
        if self._checkpoints is None:
            try:
                self._checkpoints = read_offset_checkpoint(self.files, CLEANER_OFFSET_CHECKPOINT)
            except CheckpointError:
                self._checkpoints = {}  # every log is then dirty from its start: only slower
        return self._checkpoints

    def _write_checkpoint(self) -> None:
        live = {(p.topic, p.partition) for p in self.partitions()}
        offsets = {tp: offset for tp, offset in self._checkpoint().items() if tp in live}
        self._checkpoints = offsets
        write_offset_checkpoint(self.files, CLEANER_OFFSET_CHECKPOINT, offsets)

    def first_dirty_offset(self, partition_log) -> int:
        """The checkpointed end of the clean section, within [log start, log end]; the log start
        when there is none (a checkpoint too high or too low belongs to an older log)."""
        offset = self._checkpoint().get((partition_log.topic, partition_log.partition))
        if offset is None or offset > partition_log.log_end_offset:
            return partition_log.log_start_offset
        return max(offset, partition_log.log_start_offset)

    # ------------------------------------------------------------------------------ choosing

    def cleanable(self, partition_log, now_ms: int) -> LogToClean | None:
        """The sections of a compacted log, or None when it has no closed segment to clean."""
        config = partition_log.config
        if not config.compact or not partition_log.segments:
            return None
        segments = partition_log.segments
        first_dirty = self.first_dirty_offset(partition_log)
        limit = min(partition_log.last_stable_offset, partition_log.active_segment.base_offset)
        lag = config.min_compaction_lag_ms
        end = segments[0].base_offset
        clean_bytes = cleanable_bytes = 0
        earliest_dirty_timestamp = None
        for segment, following in zip(segments, segments[1:]):
            segment_end = following.base_offset
            if segment_end > limit:
                break
            if segment_end <= first_dirty:
                clean_bytes += segment.size
            else:
                if lag > 0 and segment.max_timestamp > now_ms - lag:
                    break  # this segment and everything after it is too recent
                if earliest_dirty_timestamp is None:
                    earliest_dirty_timestamp = segment.rolling_based_timestamp()
                cleanable_bytes += segment.size
            end = segment_end
        if end == segments[0].base_offset:
            return None
        due = False
        max_lag = config.max_compaction_lag_ms
        if max_lag < LONG_MAX and earliest_dirty_timestamp is not None \
                and 0 <= earliest_dirty_timestamp < now_ms - max_lag:
            due = True
        horizon = self._delete_horizons.get(partition_log)
        if horizon is not None and horizon <= now_ms:
            due = True
        return LogToClean(partition_log, min(first_dirty, end), end, clean_bytes,
                          cleanable_bytes, due)

    def filthiest(self, now_ms: int) -> LogToClean | None:
        """Kafka's grabFilthiestCompactedLog: the log most worth cleaning now, if any."""
        best = None
        for partition_log in self.partitions():
            if partition_log in self._uncleanable:
                continue
            todo = self.cleanable(partition_log, now_ms)
            if todo is None:
                continue
            worth = (todo.cleanable_bytes > 0
                     and todo.dirty_ratio >= partition_log.config.min_cleanable_dirty_ratio)
            if not (worth or todo.compaction_due):
                continue
            if best is None or (worth, todo.dirty_ratio) > (best[0], best[1].dirty_ratio):
                best = (worth, todo)
        return None if best is None else best[1]

    # ----------------------------------------------------------------------------- running

    def clean_steps(self, now_ms: int):
        """One tick of the timer: a generator that cleans the filthiest log (if any) one bounded
        step per iteration. Any pass still in progress is abandoned first. A step yields None,
        or blocking work (BlockingStep) for the driver to `run()` in a worker thread before it
        asks for the next step."""
        self.abort()
        todo = self.filthiest(now_ms)
        if todo is None:
            return iter(())
        self._current = self._pass(todo, now_ms)
        return self._current

    def clean_now(self, now_ms: int) -> list[CleanResult]:
        """Clean every compacted log up to its first uncleanable offset now, whatever its dirty
        ratio (the test knob behind Broker.compact_now), in as many passes as the offset map
        needs. Returns what each finished pass did."""
        self.abort()
        results = []
        for partition_log in list(self.partitions()):
            self._uncleanable.discard(partition_log)
            todo = self.cleanable(partition_log, now_ms)
            while todo is not None:
                steps = self._pass(todo, now_ms)
                try:
                    while True:
                        next(steps)
                except StopIteration as done:
                    result = done.value
                if result is None:
                    break
                results.append(result)
                if result.end_offset >= todo.first_uncleanable_offset:
                    break
                todo = self.cleanable(partition_log, now_ms)  # the offset map was full
        return results

    def abort(self) -> None:
        """Abandon the pass in progress, removing its `.cleaned` files."""
        current, self._current = self._current, None
        if current is not None:
            current.close()

    def _pass(self, todo: LogToClean, now_ms: int):
        partition_log = todo.log
        try:
            result = yield from self._clean(todo, now_ms)
        except _Interrupted as reason:
            log.info("cleaning of %s-%d given up: %s", partition_log.topic,
                     partition_log.partition, reason)
            return None
        except Exception:
            # Kafka marks such a partition uncleanable (corrupt data, a storage error) rather
            # than retrying it forever; the broker and its other logs carry on.
            log.exception("cleaning of %s-%d failed, marking it uncleanable",
                          partition_log.topic, partition_log.partition)
            self._uncleanable.add(partition_log)
            return None
        log.info("cleaned %s-%d offsets [%d, %d): %d -> %d bytes, %d -> %d segments, "
                 "%d of %d records kept", result.topic, result.partition,
                 result.first_dirty_offset, result.end_offset, result.bytes_before,
                 result.bytes_after, result.segments_before, result.segments_after,
                 result.records_kept, result.records_read)
        return result

    # ------------------------------------------------------------------------------ a pass

    def _clean(self, todo: LogToClean, now_ms: int):
        plog = todo.log
        config = plog.config
        first_dirty = todo.first_dirty_offset
        end = todo.first_uncleanable_offset
        watched = _segments_up_to(plog, end)
        aborted_entries = plog.txn_index.collect(0, end)
        aborted = _AbortedTransactions(aborted_entries)

        # 1. The offset map over the cleanable dirty section, as far as it holds.
        offset_map = SkimpyOffsetMap(self.dedupe_buffer_size)
        full = False
        for index, segment in enumerate(watched[:-1]):
            segment_end = watched[index + 1].base_offset
            if segment_end <= first_dirty:
                continue
            position = 0
            while not full:
                _check(plog, watched)
                batches, position = _read_batches(segment, position, self.step_bytes)
                if not batches:
                    break
                for info, data in batches:
                    if (info.last_offset < first_dirty or info.is_control
                            or info.records_count == 0 or aborted.holds(info)):
                        continue
                    # Where the pass ends if the map fills in this batch: before it (before its
                    # segment when it is the segment's first). Records of the batch already
                    # mapped then stay: they are later records that exist, past the end.
                    stop_at = segment.base_offset if info.position == 0 else info.base_offset
                    for n, record in enumerate(iter_records(data), 1):
                        if record.key is not None and record.offset >= first_dirty:
                            if stop_at > first_dirty and not offset_map.fits(1):
                                full = True   # Kafka's maxDesiredMapSize reached
                                break
                            offset_map.put(record.key, record.offset)
                        if n % RECORDS_PER_STEP == 0:
                            yield
                    if full:
                        end = stop_at
                        break
                yield
            if full:
                break
        # The segments holding offsets below `end` (the last only in part when the map filled
        # inside it), then the one after them: the bound of this pass.
        bound = next(i for i, s in enumerate(watched) if s.base_offset >= end)
        watched = watched[:bound + 1]
        limit = watched[-1].base_offset
        result = CleanResult(plog.topic, plog.partition, first_dirty, end, len(watched) - 1, 0,
                             sum(s.size for s in watched[:-1]), 0)

        # 2. Recopy from the log start into new segments, each swapped in when full.
        context = _Context(offset_map, aborted, now_ms,
                           min(now_ms + config.delete_retention_ms, LONG_MAX),
                           plog.producer_state, result, aborted_entries)
        i = 0
        while i < len(watched) - 1:
            _check(plog, watched)
            first = i
            group: list[LogSegment] = []
            changed = False
            cleaned = LogSegment.create(
                plog.files, plog.directory, watched[first].base_offset,
                index_interval_bytes=config.index_interval_bytes,
                segment_index_bytes=config.segment_index_bytes,
                created_ms=watched[first].created_ms, file_suffix=CLEANED_FILE_SUFFIX)
            try:
                while i < len(watched) - 1:
                    segment = watched[i]
                    # The next segment joins if what it could add keeps the new one within
                    # segment.bytes and its offsets within int32 of the base.
                    if group and (cleaned.size + segment.size > config.segment_bytes
                                  or watched[i + 1].base_offset - 1 - cleaned.base_offset
                                  > INT32_MAX):
                        break
                    group.append(segment)
                    cleaned.created_ms = max(cleaned.created_ms, segment.created_ms)
                    i += 1
                    position = 0
                    while True:
                        batches, position = _read_batches(segment, position, self.step_bytes)
                        if not batches:
                            break
                        for info, data in batches:
                            kept = yield from _clean_batch(info, data, context)
                            if kept is not data:
                                changed = True
                            if kept is not None:
                                header = read_header(kept)
                                cleaned.append(kept, header.base_offset, header.last_offset,
                                               header.max_timestamp, header.base_offset)
                        yield
                        _check(plog, watched)
                if changed or len(group) > 1:
                    _write_txn_index(plog.files, group, cleaned, context.dropped_markers)
                    big = sum(segment.size for segment in group) >= SYNC_IN_THREAD_BYTES
                    if cleaned.size >= SYNC_IN_THREAD_BYTES:
                        # The fsync of the new segment (up to segment.bytes of data: seconds) is
                        # a step of its own, for the driver to run in a worker thread;
                        # replace_segments then has next to nothing left to flush.
                        step = _sync_step(cleaned)
                        try:
                            yield step
                        finally:
                            step.close()
                        _check(plog, watched)
                    plog.replace_segments(group, cleaned,
                                          keep_old_as=DELETED_FILE_SUFFIX if big else None)
                    if big:
                        # And the old segments' files are removed by another.
                        step = _removal_step(group)
                        try:
                            yield step
                        finally:
                            step.close()
            finally:
                if cleaned.file_suffix == CLEANED_FILE_SUFFIX:
                    cleaned.delete()  # not swapped in: unchanged, abandoned or failed
            watched = _segments_up_to(plog, limit)
            i = first + 1
            result.bytes_after += watched[first].size
            yield

        # 3. The clean section now ends where this pass stopped.
        result.segments_after = len(watched) - 1
        self._checkpoint()[(plog.topic, plog.partition)] = end
        self._write_checkpoint()
        if context.earliest_horizon is None:
            self._delete_horizons.pop(plog, None)
        else:
            self._delete_horizons[plog] = context.earliest_horizon
        return result


# ---------------------------------------------------------------------------------- a batch

class _Context:
    """What deciding the fate of each batch needs during one pass."""

    def __init__(self, offset_map, aborted, now_ms, new_horizon, producer_state, result,
                 aborted_entries=()):
        self.offset_map = offset_map
        self.aborted = aborted
        self.now_ms = now_ms
        self.new_horizon = new_horizon  # now + delete.retention.ms
        self.producer_state = producer_state
        self.result = result
        self.earliest_horizon: int | None = None
        # The transactions met so far in the walk: producers whose committed transaction still
        # has a batch, and producers in an aborted transaction -> whether a batch of it is left.
        self._aborted_queue = sorted(aborted_entries, key=lambda t: t.first_offset)
        self._next_aborted = 0
        self.ongoing_committed: set[int] = set()
        self.ongoing_aborted: dict[int, bool] = {}
        self.dropped_markers: set[int] = set()   # offsets of the markers this pass removes

    def _enter_aborted_up_to(self, offset: int) -> None:
        queue = self._aborted_queue
        while self._next_aborted < len(queue) and \
                queue[self._next_aborted].first_offset <= offset:
            self.ongoing_aborted[queue[self._next_aborted].producer_id] = False
            self._next_aborted += 1

    def on_data_batch(self, info: BatchInfo) -> None:
        """A data batch met in the walk (whatever becomes of its records)."""
        self._enter_aborted_up_to(info.last_offset)
        if info.is_transactional:
            if info.producer_id in self.ongoing_aborted:
                self.ongoing_aborted[info.producer_id] = True
            else:
                self.ongoing_committed.add(info.producer_id)

    def marker_is_empty(self, info: BatchInfo, kind: int) -> bool:
        """A marker met in the walk: whether no batch of its transaction is left."""
        self._enter_aborted_up_to(info.last_offset)
        if kind == ControlRecordType.ABORT:
            return not self.ongoing_aborted.pop(info.producer_id, False)
        if kind == ControlRecordType.COMMIT:
            if info.producer_id in self.ongoing_committed:
                self.ongoing_committed.discard(info.producer_id)
                return False
            return True
        return kind < 0     # a marker without a record: already emptied

    def is_current_epoch_marker(self, info: BatchInfo) -> bool:
        """Whether this marker is all that is left of its producer's current epoch: the
        producer has no data batch at that epoch (Kafka's "last record of the producer")."""
        entry = self.producer_state.last_entry(info.producer_id)
        return bool(entry is not None and entry.last_data_offset is None
                    and entry.producer_epoch == info.producer_epoch)

    def is_last_of_producer(self, info: BatchInfo) -> bool:
        """Whether this batch is the last one its producer wrote (Kafka keeps it, if need be
        empty, so producer state rebuilt from the log keeps the last sequence)."""
        if info.producer_id < 0:
            return False
        entry = self.producer_state.last_entry(info.producer_id)
        return bool(entry is not None and entry.batches
                    and entry.batches[-1].last_offset == info.last_offset)

    def note_horizon(self, horizon: int) -> None:
        if self.earliest_horizon is None or horizon < self.earliest_horizon:
            self.earliest_horizon = horizon


def _clean_batch(info: BatchInfo, data, context: _Context):
    """The bytes to keep of one stored batch, or None to drop it (the table in the module
    docstring). A generator: the records are read one at a time out of the (decompressing)
    stream, and the pass yields every RECORDS_PER_STEP of them."""
    result = context.result
    if info.is_control:
        return _clean_marker(info, data, context)
    context.on_data_batch(info)
    if info.records_count == 0 or context.aborted.holds(info):
        result.records_read += info.records_count
        if context.is_last_of_producer(info):
            result.empty_batches_kept += 1
            return data if info.records_count == 0 else _empty_batch(info)
        return None
    horizon = info.base_timestamp if info.has_delete_horizon else None
    offset_map = context.offset_map
    kept = []
    read = 0
    tombstones = False
    for record in iter_records(data):
        read += 1
        if read % RECORDS_PER_STEP == 0:
            yield
        if record.key is None:
            continue
        if offset_map.get(record.key, -1) > record.offset:
            continue  # a later record of this key exists
        if record.value is None:
            if horizon is not None and context.now_ms >= horizon:
                continue  # the tombstone outlived delete.retention.ms
            tombstones = True
        kept.append(record)
    result.records_read += read
    result.records_kept += len(kept)
    if not kept:
        if context.is_last_of_producer(info):
            result.empty_batches_kept += 1
            return _empty_batch(info)
        return None
    if tombstones:
        if horizon is None:
            horizon = context.new_horizon
        context.note_horizon(horizon)
        if len(kept) == read and info.has_delete_horizon:
            return data
    elif len(kept) == read:
        return data
    else:
        horizon = None
    return _rebuilt_batch(info, kept, horizon)


def _clean_marker(info: BatchInfo, data, context: _Context):
    """A transaction marker: kept, stamped with a delete horizon, or dropped (the module
    docstring's "Transaction markers")."""
    batch = decode_batch(data)
    kind = decode_control_key(batch.records[0].key)[1] if batch.records else -1
    if not context.marker_is_empty(info, kind) or context.is_current_epoch_marker(info):
        return data
    horizon = batch.delete_horizon_ms
    if horizon is not None and context.now_ms >= horizon:
        context.dropped_markers.add(info.base_offset)
        return None
    if horizon is not None:
        context.note_horizon(horizon)
        return data
    context.note_horizon(context.new_horizon)
    records = [Record(r.offset_delta, 0, r.key, r.value, r.headers, None,
                      batch.base_timestamp + r.timestamp_delta) for r in batch.records]
    return encode_batch(
        records, base_offset=batch.base_offset, producer_id=batch.producer_id,
        producer_epoch=batch.producer_epoch, base_sequence=batch.base_sequence,
        transactional=True, control=True, partition_leader_epoch=batch.partition_leader_epoch,
        last_offset_delta=batch.last_offset_delta, delete_horizon_ms=context.new_horizon)


def _rebuilt_batch(batch: BatchInfo, kept: list[Record], horizon: int | None) -> bytes:
    """The batch with only `kept` records; every header field keeps its value except the
    record count, the timestamps' base (the horizon, if any) and, for CreateTime, the max."""
    log_append_time = batch.is_log_append_time
    records = [Record(r.offset_delta, 0, r.key, r.value, r.headers, None,
                      batch.base_timestamp + r.timestamp_delta) for r in kept]
    return encode_batch(
        records, base_offset=batch.base_offset, compression=batch.compression,
        producer_id=batch.producer_id, producer_epoch=batch.producer_epoch,
        base_sequence=batch.base_sequence, transactional=batch.is_transactional,
        timestamp_type=int(log_append_time),
        partition_leader_epoch=batch.partition_leader_epoch,
        max_timestamp=batch.max_timestamp if log_append_time else None,
        last_offset_delta=batch.last_offset_delta, delete_horizon_ms=horizon)


def _empty_batch(info: BatchInfo) -> bytes:
    """Kafka's empty batch header: no records, baseTimestamp -1, the old maxTimestamp, the same
    offsets, producer id, epoch and base sequence."""
    return encode_batch(
        (), base_offset=info.base_offset, compression=0, base_timestamp=NO_TIMESTAMP,
        max_timestamp=info.max_timestamp, producer_id=info.producer_id,
        producer_epoch=info.producer_epoch, base_sequence=info.base_sequence,
        transactional=info.is_transactional, timestamp_type=int(info.is_log_append_time),
        partition_leader_epoch=info.partition_leader_epoch,
        last_offset_delta=info.last_offset_delta)


class _AbortedTransactions:
    """Aborted transactions by producer id: (first offset, marker offset) ranges."""

    def __init__(self, entries):
        self._ranges: dict[int, list[tuple[int, int]]] = {}
        for txn in entries:
            self._ranges.setdefault(txn.producer_id, []).append((txn.first_offset,
                                                                 txn.last_offset))
        for ranges in self._ranges.values():
            ranges.sort()

    def holds(self, info: BatchInfo) -> bool:
        """Whether a data batch belongs to an aborted transaction."""
        if not info.is_transactional or info.is_control:
            return False
        ranges = self._ranges.get(info.producer_id)
        if not ranges:
            return False
        i = bisect_right(ranges, (info.base_offset, LONG_MAX)) - 1
        return i >= 0 and ranges[i][0] <= info.base_offset < ranges[i][1]


# ---------------------------------------------------------------------------- segment helpers

def _segments_up_to(partition_log, end: int) -> list[LogSegment]:
    """The log's segments below `end` and the one starting at `end` (a pass checks that this
    list is still the head of the log before each step)."""
    return [s for s in partition_log.segments if s.base_offset <= end]


# A cleaned segment from this size on is fsync'd in a worker thread before the swap, and old
# segments of this size in all are removed in one after it (measured on the project's VM: 7-25
# ms to fsync 20 MiB, more under write load; 17 ms to unlink three segments of 64 MiB); smaller
# ones are done by the swap itself, which costs less than the thread hop.
SYNC_IN_THREAD_BYTES = 1 << 20


class BlockingStep:
    """Blocking work of a pass, handed to its driver: `run()` (in a worker thread) does
    `work`; `close()`, which the pass always calls when it goes on, does `otherwise` unless
    `run` has begun (the driver ignored it, or the pass was abandoned), so nothing is done
    twice or under a thread still doing it. It touches files only; an I/O error takes the log
    dir offline (log/files.py)."""
    __slots__ = ("_work", "_otherwise", "_lock", "_taken")

    def __init__(self, work, otherwise):
        self._work = work
        self._otherwise = otherwise
        self._lock = threading.Lock()
        self._taken = False

    def _take(self) -> bool:
        with self._lock:
            taken, self._taken = self._taken, True
        return not taken

    def run(self) -> None:
        if self._take():
            self._work()

    def close(self) -> None:
        if self._take():
            self._otherwise()


def _sync_step(segment: LogSegment) -> BlockingStep:
    """The fsync of a cleaned segment's files through duplicated descriptors
    (LogSegment.flush_handles); not run, they are just closed (the swap flushes anyway)."""
    handles = segment.flush_handles()

    def flush() -> None:
        try:
            for handle in handles:
                handle.flush()
        finally:
            close()

    def close() -> None:
        for handle in handles:
            handle.close()
    return BlockingStep(flush, close)


def _removal_step(segments: list[LogSegment]) -> BlockingStep:
    """The removal of swapped-out segments, renamed `.deleted` (Kafka's asyncDeleteSegment): an
    unlink frees the whole file, milliseconds for a large one."""
    def delete() -> None:
        for segment in segments:
            segment.delete()
    return BlockingStep(delete, delete)


def _check(partition_log, watched: list[LogSegment]) -> None:
    if not partition_log.config.compact:
        raise _Interrupted("the topic is no longer compacted")
    if partition_log.segments[:len(watched)] != watched:
        raise _Interrupted("segments were deleted or replaced meanwhile")
    if any(segment.log.closed for segment in watched):
        raise _Interrupted("the log was closed (topic deleted or broker stopping)")


def _read_batches(segment: LogSegment, position: int, budget: int):
    """([(header, bytes)], next position): whole stored batches from byte `position` of the
    segment, about `budget` bytes of them but at least one. A closed segment was recovered when
    the broker started, so anything that is not a whole batch here is corruption."""
    size = segment.size
    if position >= size:
        return [], position
    data = segment.log.pread(position, min(max(budget, HEADER_SIZE), size - position))
    view = memoryview(data)
    out = []
    local = 0
    while local + HEADER_SIZE <= len(data):
        if data[local + MAGIC_OFFSET] != CURRENT_MAGIC:
            raise _corrupt(segment, position + local)
        info = read_header(data, local)
        total = LOG_OVERHEAD + info.batch_length
        if info.batch_length < MIN_BATCH_LENGTH:
            raise _corrupt(segment, position + local)
        if local + total > len(data):
            if out:
                break
            data = segment.log.pread(position, total)  # one batch larger than the budget
            if len(data) < total:
                raise _corrupt(segment, position)
            view = memoryview(data)
        info.position = position + local
        out.append((info, view[local:local + total]))
        local += total
    if not out:
        raise _corrupt(segment, position)
    return out, position + local


def _corrupt(segment: LogSegment, position: int) -> KafkaError:
    return KafkaError(ErrorCode.CORRUPT_MESSAGE,
                      f"no valid batch at byte {position} of segment {segment.base_offset} in "
                      f"{segment.directory}")


def _write_txn_index(files, group: list[LogSegment], cleaned: LogSegment,
                     dropped_markers: set[int] = frozenset()) -> None:
    """The aborted transactions of the group's `.txnindex` files, for the cleaned segment, but
    those whose ABORT marker this pass dropped."""
    name = segment_file_name(cleaned.base_offset, TXN_INDEX_SUFFIX) + CLEANED_FILE_SUFFIX
    path = f"{cleaned.directory}/{name}"
    files.remove(path)
    parts = []
    for segment in group:
        source = f"{segment.directory}/{segment_file_name(segment.base_offset, TXN_INDEX_SUFFIX)}"
        if files.exists(source):
            data = files.read_small(source)
            data = data[:len(data) - len(data) % ENTRY_SIZE]
            parts.extend(data[pos:pos + ENTRY_SIZE] for pos in range(0, len(data), ENTRY_SIZE)
                         if _LAST_OFFSET.unpack_from(data, pos + _LAST_OFFSET_AT)[0]
                         not in dropped_markers)
    if any(parts):
        f = files.open(path)
        try:
            f.append(b"".join(parts))
            f.flush()
        finally:
            f.close()


# ----------------------------------------------------------------------------------- restart

def complete_interrupted_swaps(files, directory: str) -> None:
    """Resolve what a crash during a segment swap left in a partition directory (the table in
    the module docstring). Called when a partition is opened, before it lists its segments."""
    leftovers: dict[int, set[str]] = {}
    for name in files.listdir(directory):
        parsed = parse_segment_file_name(name)
        if parsed is None or not parsed[1].endswith(
                (CLEANED_FILE_SUFFIX, SWAP_FILE_SUFFIX, DELETED_FILE_SUFFIX)):
            continue
        leftovers.setdefault(parsed[0], set()).add(parsed[1])
    for base in sorted(leftovers):
        kinds = leftovers[base]

        def path(suffix: str, base=base) -> str:
            return f"{directory}/{segment_file_name(base, suffix)}"

        for kind in kinds:
            if kind.endswith(DELETED_FILE_SUFFIX):
                files.remove(path(kind))
        if LOG_SUFFIX + SWAP_FILE_SUFFIX in kinds:
            # Committed. Index files may still be `.cleaned`; they were complete before the
            # `.log` was renamed, so they join the swap.
            for suffix in INDEX_SUFFIXES:
                if suffix + CLEANED_FILE_SUFFIX in kinds:
                    files.rename(path(suffix + CLEANED_FILE_SUFFIX),
                                 path(suffix + SWAP_FILE_SUFFIX))
            end = max(_end_offset(files, path(LOG_SUFFIX + SWAP_FILE_SUFFIX), base), base + 1)
            for name in files.listdir(directory):
                parsed = parse_segment_file_name(name)
                if parsed and parsed[1] in SEGMENT_SUFFIXES and base <= parsed[0] < end:
                    files.remove(f"{directory}/{name}")  # an old segment the swap replaces
            files.rename(path(LOG_SUFFIX + SWAP_FILE_SUFFIX), path(LOG_SUFFIX))
            for suffix in INDEX_SUFFIXES:
                if files.exists(path(suffix + SWAP_FILE_SUFFIX)):
                    files.rename(path(suffix + SWAP_FILE_SUFFIX), path(suffix))
        elif LOG_SUFFIX + CLEANED_FILE_SUFFIX in kinds:
            # Not committed: the old segments are whole; the new files go.
            for kind in kinds:
                if kind.endswith((CLEANED_FILE_SUFFIX, SWAP_FILE_SUFFIX)):
                    files.remove(path(kind))
        else:
            # The `.log` already has its final name (renamed after the old files went): finish
            # the index renames. A `.cleaned` index without a committed `.log` is an orphan.
            has_log = files.exists(path(LOG_SUFFIX))
            for suffix in INDEX_SUFFIXES:
                if suffix + SWAP_FILE_SUFFIX in kinds:
                    if has_log:
                        files.rename(path(suffix + SWAP_FILE_SUFFIX), path(suffix))
                    else:
                        files.remove(path(suffix + SWAP_FILE_SUFFIX))
                if suffix + CLEANED_FILE_SUFFIX in kinds:
                    files.remove(path(suffix + CLEANED_FILE_SUFFIX))


def _end_offset(files, path: str, base: int) -> int:
    """The offset after the last whole batch of a segment file (its base if it has none)."""
    f = files.open(path)
    try:
        end = base
        for info in BatchScan(f.pread, 0, f.size, verify_crc=False):
            end = info.next_offset
        return end
    finally:
        f.close()
