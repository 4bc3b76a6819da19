"""LogSegment: one `.log` file of a partition and its two indexes.

A partition's log is a sequence of segments. Each holds the batches from its base offset up to
the next segment's base offset, in three files named by that base offset as a 20-digit
zero-padded decimal (Kafka's layout, so `kafka-dump-log.sh` can read them):

    00000000000000368769.log        the batches, back to back, exactly as sent on the wire
    00000000000000368769.index      OffsetIndex: relative offset -> byte position (sparse)
    00000000000000368769.timeindex  TimeIndex: timestamp -> relative offset (sparse)

Only the last segment (the active one) is appended to. A new one is rolled when the active
segment would grow past `segment.bytes`, is older than `segment.ms`, has a full index, or the
next offsets would not fit its int32 relative offsets.

Batches are never decoded here: appends take already-patched bytes and reads return whole
stored batches as bytes, found through the offset index plus a forward walk over batch headers.
"""

import logging
import struct
from bisect import bisect_right

from trioka.log.batch import HEADER, HEADER_SIZE, LOG_OVERHEAD, BatchInfo, BatchScan, read_header
from trioka.log.files import FileRegion
from trioka.log.index import OffsetIndex, TimeIndex

log = logging.getLogger("trioka.log")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)
# Appended to all of a segment's file names while the log cleaner writes its replacement
# (`00000000000000368769.log.cleaned`), then while it is being swapped in (`.swap`); see
# log/cleaner.py for the steps and how a restart completes or discards them.
CLEANED_FILE_SUFFIX = ".cleaned"
SWAP_FILE_SUFFIX = ".swap"

INT32_MAX = 2**31 - 1

# Header fields needed to walk batches: base_offset, batch_length, then last_offset_delta at 23.
_OFFSET_AND_LENGTH = struct.Struct(">qi")
_INT32 = struct.Struct(">i")
_LAST_OFFSET_DELTA_OFFSET = 23

# How much of the `.log` to read at once when walking headers forward from an index entry.
_LOOKUP_CHUNK = 16 * 1024
# Reads smaller than this are copied (pread): sendfile pays off on large transfers.
_ZERO_COPY_MIN = 64 * 1024


def segment_file_name(base_offset: int, suffix: str) -> str:
    """Kafka's segment file name: the base offset as 20 zero-padded digits, then the suffix."""
    return f"{base_offset:020d}{suffix}"


def parse_segment_file_name(name: str) -> tuple[int, str] | None:
    """(base offset, suffix) of a segment file name, or None if `name` is not one."""
    stem, dot, suffix = name.partition(".")
    if not dot or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem), "." + suffix


class LogSegment:
    """One segment. Use `LogSegment.create` for a new, empty one, `LogSegment.open` for one on
    disk (whose state is then loaded by `load_tail`, `recover` or lazily on first use)."""

    def __init__(self, files, directory: str, base_offset: int, *, index_interval_bytes: int,
                 segment_index_bytes: int, created_ms: int, file_suffix: str = "",
                 existing: bool = False):
        self.files = files
        self.directory = directory
        self.base_offset = base_offset
        self.file_suffix = file_suffix  # "" or CLEANED_FILE_SUFFIX / SWAP_FILE_SUFFIX
        self.index_interval_bytes = index_interval_bytes
        self.created_ms = created_ms
        self.log = files.open(self._path(LOG_SUFFIX))
        self.offset_index = OffsetIndex(files, self._path(INDEX_SUFFIX), base_offset,
                                        max(1, segment_index_bytes // OffsetIndex.ENTRY_SIZE))
        self.time_index = TimeIndex(files, self._path(TIME_INDEX_SUFFIX), base_offset,
                                    max(1, segment_index_bytes // TimeIndex.ENTRY_SIZE))
        # The offset after the last batch. For a segment that is not the last one the partition
        # sets it to the next segment's base offset when opening (no scan needed).
        self.next_offset = base_offset
        # Largest batch max_timestamp in the segment and the base offset of the batch where it
        # was first reached: -1 (none) in a new segment; None in an `existing` one until known
        # (loaded lazily from the time index).
        self._max_timestamp: int | None = None if existing else -1
        self._offset_of_max_timestamp = base_offset
        # Kafka's rollingBasedTimestamp: max timestamp of the first appended batch(es), the
        # clock of time-based rolls. None = not read yet; -1 = the segment has no timestamp.
        self._rolling_based_timestamp: int | None = None
        self.bytes_since_last_index_entry = 0
        self.dirty = False  # appended since the last flush (fsync)
        # Index entries written since the last flush (a new segment's empty files included).
        self.indexes_dirty = not existing

    def _path(self, suffix: str) -> str:
        return f"{self.directory}/{segment_file_name(self.base_offset, suffix)}{self.file_suffix}"

    # -------------------------------------------------------------------------------- lifecycle

    @classmethod
    def create(cls, files, directory: str, base_offset: int, *, index_interval_bytes: int,
               segment_index_bytes: int, created_ms: int,
               file_suffix: str = "") -> "LogSegment":
        """A new, empty active segment (left-over files with that name are emptied).
        `file_suffix` names the files of a segment the log cleaner is writing (".cleaned")."""
        segment = cls(files, directory, base_offset, index_interval_bytes=index_interval_bytes,
                      segment_index_bytes=segment_index_bytes, created_ms=created_ms,
                      file_suffix=file_suffix)
        if segment.log.size:
            segment.log.truncate(0)
        segment.offset_index.create_empty()
        segment.time_index.create_empty()
        return segment

    @classmethod
    def open(cls, files, directory: str, base_offset: int, *, index_interval_bytes: int,
             segment_index_bytes: int, created_ms: int) -> "LogSegment":
        """An existing segment. Nothing is read yet; max timestamp and indexes load lazily."""
        return cls(files, directory, base_offset, index_interval_bytes=index_interval_bytes,
                   segment_index_bytes=segment_index_bytes, created_ms=created_ms, existing=True)

    @property
    def size(self) -> int:
        return self.log.size

    @property
    def max_timestamp(self) -> int:
        """Largest timestamp in the segment (Kafka's largestTimestamp / maxTimestampSoFar);
        -1 if no batch has one."""
        if self._max_timestamp is None:
            self._ensure_indexes()
            if self._max_timestamp is None:
                self._max_timestamp, self._offset_of_max_timestamp = self.time_index.last_entry()
        return self._max_timestamp

    @property
    def offset_of_max_timestamp(self) -> int:
        self.max_timestamp  # noqa: B018 - loads it
        return self._offset_of_max_timestamp

    def _ensure_indexes(self) -> None:
        """Load both indexes from their files; rebuild them from the `.log` if either file is
        missing or fails its sanity check."""
        if self.offset_index.loaded and self.time_index.loaded:
            return
        size = self.log.size
        # The end offset is known for a segment that is not the last one (the next one's base).
        end = self.next_offset if self.next_offset > self.base_offset else None
        if not self.offset_index.load(size, end):
            log.warning("Found a missing or corrupted offset index %s of log file %s, "
                        "rebuilding index files...", self.offset_index.path, self.log.path)
            self._rebuild(verify_crc=False)
        elif not self.time_index.load(size, end):
            log.warning("Found a missing or corrupted time index %s of log file %s, "
                        "rebuilding index files...", self.time_index.path, self.log.path)
            self._rebuild(verify_crc=False)

    def load_tail(self) -> int:
        """Make the last segment ready for appends after a clean shutdown, without a full scan.

        Walks the batch headers after the last offset-index entry (at most ~index.interval.bytes
        plus one append) to find `next_offset`, the max timestamp and the index counter. If the
        indexes disagree with the `.log` they are rebuilt from it. A broken tail (which a clean
        shutdown should never leave) is truncated. Returns the number of bytes truncated.
        """
        self._ensure_indexes()
        entry_offset, position = self.offset_index.last_entry()
        has_entry = len(self.offset_index) > 0
        max_timestamp, offset_of_max = self.time_index.last_entry()
        next_offset = self.base_offset
        size = self.log.size
        scan = BatchScan(self.log.pread, position, size, verify_crc=False, chunk_size=1 << 16)
        first = True
        for info in scan:
            if first and has_entry and not (self.base_offset <= info.base_offset <= entry_offset):
                return self._rebuild_disagreeing_indexes()
            first = False
            if info.base_offset < next_offset or info.last_offset - self.base_offset > INT32_MAX:
                break
            if info.max_timestamp > max_timestamp:
                max_timestamp, offset_of_max = info.max_timestamp, info.base_offset
            next_offset = info.next_offset
        if has_entry and entry_offset >= next_offset:
            return self._rebuild_disagreeing_indexes()
        if len(self.time_index) and self.time_index.last_entry()[1] >= next_offset:
            return self._rebuild_disagreeing_indexes()
        truncated = size - scan.valid_end
        if truncated:
            log.warning("Found invalid messages in log segment %s at byte offset %d: "
                        "truncating to offset %d (%d bytes removed)", self.log.path,
                        scan.valid_end, next_offset, truncated)
            self._truncate_files(scan.valid_end, next_offset)
        self.next_offset = next_offset
        self._max_timestamp, self._offset_of_max_timestamp = max_timestamp, offset_of_max
        self.bytes_since_last_index_entry = scan.valid_end - position
        return truncated

    def _rebuild_disagreeing_indexes(self) -> int:
        log.warning("Found index files of log file %s that do not match it, rebuilding index "
                    "files...", self.log.path)
        return self._rebuild(verify_crc=False)

    def recover(self) -> int:
        """Kafka's segment recovery after an unclean shutdown: walk every batch checking its
        size fields and CRC-32C and that offsets increase, truncate the `.log` at the first bad
        or torn batch, and rebuild both indexes. Returns the number of bytes truncated."""
        return self._rebuild(verify_crc=True)

    def _rebuild(self, *, verify_crc: bool) -> int:
        offset_entries: list[tuple[int, int]] = []
        time_entries: list[tuple[int, int]] = []
        max_timestamp, offset_of_max = -1, self.base_offset
        last_entry_position = 0
        next_offset = self.base_offset
        rolling_based_timestamp = None
        size = self.log.size
        scan = BatchScan(self.log.pread, 0, size, verify_crc=verify_crc)
        for info in scan:
            if info.base_offset < next_offset or info.last_offset - self.base_offset > INT32_MAX:
                break  # offsets must increase inside a segment: treat the rest as corrupt
            if rolling_based_timestamp is None:
                rolling_based_timestamp = info.max_timestamp
            if info.max_timestamp > max_timestamp:
                max_timestamp, offset_of_max = info.max_timestamp, info.base_offset
            if info.position - last_entry_position > self.index_interval_bytes:
                offset_entries.append((info.last_offset, info.position))
                # As TimeIndex.maybe_append: only a timestamp larger than the last entry's
                # (an empty index counts as -1, "no timestamp").
                if max_timestamp > (time_entries[-1][0] if time_entries else -1):
                    time_entries.append((max_timestamp, offset_of_max))
                last_entry_position = info.position
            next_offset = info.next_offset
        valid_end = scan.valid_end
        truncated = size - valid_end
        if truncated:
            log.warning("Found invalid messages in log segment %s at byte offset %d: "
                        "truncating to offset %d (%d bytes removed)", self.log.path, valid_end,
                        next_offset, truncated)
            self.log.truncate(valid_end)
        self.indexes_dirty = True
        self.offset_index.replace(offset_entries)
        self.time_index.replace(time_entries)
        self.next_offset = next_offset
        self._max_timestamp, self._offset_of_max_timestamp = max_timestamp, offset_of_max
        self._rolling_based_timestamp = rolling_based_timestamp
        self.bytes_since_last_index_entry = valid_end - last_entry_position
        return truncated

    # ------------------------------------------------------------------------------ append/roll

    def append(self, data, base_offset: int, last_offset: int, max_timestamp: int,
               offset_of_max_timestamp: int) -> int:
        """Append already-patched batches (bytes of one or more whole batches) covering offsets
        base_offset..last_offset. Returns the byte position they start at.

        Index rule (Kafka's LogSegment.append): if more than index.interval.bytes were appended
        since the last entry, add an offset-index entry (last_offset -> start position of this
        append) and a time-index entry (max timestamp so far, where it was reached).
        """
        self._ensure_indexes()
        position = self.log.append(data)
        self.record_append(position, len(data), last_offset, max_timestamp,
                           offset_of_max_timestamp)
        return position

    # An append whose write runs in a worker thread (PartitionLog.append_off_loop): the loop
    # prepares (`prepare_write`), the thread writes (`write_at_end`), the loop finishes
    # (`finish_write`), which does what `append` does after its write.

    def prepare_write(self) -> int:
        """Before a write in a worker thread: the position it will start at."""
        self._ensure_indexes()
        self.log.check_writable()
        return self.log.size

    def write_at_end(self, data) -> tuple[int, OSError | None]:
        return self.log.write_at_end(data)

    def finish_write(self, position: int, data, written: int, error: OSError | None,
                     last_offset: int, max_timestamp: int, offset_of_max_timestamp: int) -> int:
        position = self.log.appended(position, data, written, error)
        self.record_append(position, len(data), last_offset, max_timestamp,
                           offset_of_max_timestamp)
        return position

    def record_append(self, position: int, size: int, last_offset: int, max_timestamp: int,
                      offset_of_max_timestamp: int) -> None:
        """The segment's state and indexes after `size` bytes of batches up to `last_offset`
        were written at `position`."""
        self.dirty = True
        # The segment holds these offsets from now on, even if an index write below fails (and
        # takes the dir offline): reads bound by the partition's log end offset then stop
        # before them, as they are not the partition's.
        self.next_offset = last_offset + 1
        if position == 0:
            self._rolling_based_timestamp = max_timestamp
        if max_timestamp > self.max_timestamp:
            self._max_timestamp = max_timestamp
            self._offset_of_max_timestamp = offset_of_max_timestamp
        if self.bytes_since_last_index_entry > self.index_interval_bytes:
            self.indexes_dirty = True
            self.offset_index.append(last_offset, position)
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
            self.bytes_since_last_index_entry = 0
        self.bytes_since_last_index_entry += size

    def rolling_based_timestamp(self) -> int:
        if self._rolling_based_timestamp is None:
            if self.log.size >= HEADER_SIZE:
                first = read_header(self.log.pread(0, HEADER_SIZE))
                self._rolling_based_timestamp = first.max_timestamp
            else:
                self._rolling_based_timestamp = -1
        return self._rolling_based_timestamp

    def should_roll(self, *, incoming_size: int, incoming_max_timestamp: int,
                    incoming_last_offset: int, now_ms: int, segment_bytes: int,
                    segment_ms: int, roll_jitter_ms: int = 0) -> bool:
        """Kafka's LogSegment.shouldRoll: roll before appending when the segment would exceed
        segment.bytes, is due by segment.ms, has a full index, or the incoming offsets cannot be
        expressed relative to the base offset in an int32.

        The time rule measures from the first batch's timestamp to the incoming batch's max
        timestamp when the segment has timestamps, else from the segment's creation to now.
        The size and time rules never roll an empty segment.
        """
        size = self.log.size
        if size > 0 and size > segment_bytes - incoming_size:
            return True
        if size > 0:
            first_timestamp = self.rolling_based_timestamp()
            if first_timestamp >= 0:
                waited = incoming_max_timestamp - first_timestamp
            else:
                waited = now_ms - self.created_ms
            if waited > segment_ms - roll_jitter_ms:
                return True
        self._ensure_indexes()
        if self.offset_index.is_full or self.time_index.is_full:
            return True
        return incoming_last_offset - self.base_offset > INT32_MAX

    def seal(self) -> None:
        """The segment stops being the active one (Kafka's onBecomeInactiveSegment): add a last
        time-index entry for its max timestamp and close the index files (entries stay in
        memory for lookups)."""
        if self.offset_index.loaded and self.time_index.loaded:
            self.indexes_dirty = True
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        self.offset_index.close()
        self.time_index.close()

    # ------------------------------------------------------------------------------------ reads

    def translate_offset(self, offset: int) -> tuple[int, BatchInfo] | None:
        """Position and header of the first batch whose last offset is >= `offset` (the batch
        holding `offset`, or the next one after a gap); None if the segment has none."""
        if offset >= self.next_offset:
            return None
        self._ensure_indexes()
        _, position = self.offset_index.lookup(offset)
        pread = self.log.pread
        size = self.log.size
        chunk = b""
        chunk_start = position
        while position + HEADER_SIZE <= size:
            local = position - chunk_start
            if local + HEADER_SIZE > len(chunk):
                chunk = pread(position, min(_LOOKUP_CHUNK, size - position))
                chunk_start = position
                local = 0
            base_offset, batch_length = _OFFSET_AND_LENGTH.unpack_from(chunk, local)
            (last_offset_delta,) = _INT32.unpack_from(chunk, local + _LAST_OFFSET_DELTA_OFFSET)
            if base_offset + last_offset_delta >= offset:
                return position, BatchInfo(position, *HEADER.unpack_from(chunk, local))
            if batch_length < HEADER_SIZE - LOG_OVERHEAD:
                return None  # not a batch: the log is corrupt past here
            position += LOG_OVERHEAD + batch_length
        return None

    def read(self, start_offset: int, max_bytes: int, *, max_offset: int | None = None,
             max_position: int | None = None, min_one_batch: bool = True,
             zero_copy: bool = False) -> tuple[bytes, bool]:
        """Whole stored batches from the one holding `start_offset`, at most `max_bytes` of them
        (but the first batch even if larger, when `min_one_batch`: KIP-74), stopping before any
        batch whose base offset is >= `max_offset` or that ends past byte `max_position`.

        Returns (data, exhausted): `exhausted` is True when data runs to the end of the segment,
        so a read with bytes to spare may go on into the next segment.
        """
        found = self.translate_offset(start_offset)
        if found is None:
            return b"", True
        position, first = found
        log_size = self.log.size
        limit = log_size if max_position is None else min(max_position, log_size)
        first_size = first.size
        if (max_offset is not None and first.base_offset >= max_offset) \
                or position + first_size > limit:
            return b"", False
        if first_size > max_bytes:
            if not min_one_batch:
                return b"", False
            if zero_copy and self.log.fileno() is not None:
                return (FileRegion(self.log.fileno(), position, first_size),
                        position + first_size >= log_size)
            data = self.log.pread(position, first_size)
            return data, position + first_size >= log_size
        if zero_copy and max_bytes >= _ZERO_COPY_MIN and self.log.fileno() is not None:
            region = self._region(position, first_size, max_bytes, limit, max_offset)
            if region is not None:
                return region
        data = self.log.pread(position, min(max_bytes, limit - position))
        available = len(data)
        end = first_size
        stopped = False
        while end + LOG_OVERHEAD <= available:
            base_offset, batch_length = _OFFSET_AND_LENGTH.unpack_from(data, end)
            size = LOG_OVERHEAD + batch_length
            if (max_offset is not None and base_offset >= max_offset) or size < HEADER_SIZE:
                stopped = True
                break
            if end + size > available:
                break
            end += size
        if end < available:
            data = memoryview(data)[:end]
        return data, not stopped and position + end >= log_size

    def _region(self, position: int, first_size: int, max_bytes: int, limit: int,
                max_offset: int | None):
        """(FileRegion of whole batches, exhausted) without reading them, or None to read.

        Batch boundaries come from what is known without touching the data: the end of the log
        and the upper bound offset's batch are boundaries, and so is every offset-index entry
        (each points at the start of a batch)."""
        log_size = self.log.size
        if max_offset is not None and max_offset < self.next_offset:
            found = self.translate_offset(max_offset)
            if found is not None:
                limit = min(limit, found[0])
        want = position + max_bytes
        if want >= limit:
            end, exhausted = limit, limit >= log_size
        else:
            positions = self.offset_index.positions
            i = bisect_right(positions, want) - 1
            # The first batch's end is a boundary too; from the last boundary known, whole
            # batches that still fit are added by their 12-byte offset-and-length prefixes
            # (large batches, each with an index entry of its own, leave no entry in between).
            end = max(position + first_size, positions[i] if i >= 0 else 0)
            end, exhausted = self._whole_batches_to(end, min(want, limit), max_offset), False
        if end <= position:
            return None
        return FileRegion(self.log.fileno(), position, end - position), exhausted

    # Batches added to a region by their prefixes, at most: each is a 12-byte pread.
    _PREFIX_WALK = 64

    def _whole_batches_to(self, end: int, bound: int, max_offset: int | None) -> int:
        """From a batch boundary `end`, the end of the whole batches that follow it, end at or
        before `bound` and start below `max_offset`."""
        for _ in range(self._PREFIX_WALK):
            if end + LOG_OVERHEAD > bound:
                break
            prefix = self.log.pread(end, LOG_OVERHEAD)
            if len(prefix) < LOG_OVERHEAD:
                break
            base_offset, batch_length = _OFFSET_AND_LENGTH.unpack(prefix)
            size = LOG_OVERHEAD + batch_length
            if size < HEADER_SIZE or end + size > bound or \
                    (max_offset is not None and base_offset >= max_offset):
                break
            end += size
        return end

    def find_batch_by_timestamp(self, timestamp: int, start_offset: int) -> BatchInfo | None:
        """The first batch at or after `start_offset` whose max timestamp is >= `timestamp`
        (via the time index, then a header walk); None if there is none in this segment."""
        self._ensure_indexes()
        offset = max(self.time_index.lookup(timestamp), start_offset)
        _, position = self.offset_index.lookup(offset)
        scan = BatchScan(self.log.pread, position, self.log.size, verify_crc=False,
                         chunk_size=1 << 16)
        for info in scan:
            if info.last_offset >= start_offset and info.max_timestamp >= timestamp:
                return info
        return None

    def read_batch(self, info: BatchInfo) -> bytes:
        """The stored bytes of one batch found by a scan of this segment."""
        return self.log.pread(info.position, info.size)

    def batches(self, start_position: int = 0) -> BatchScan:
        """Walk the headers of the stored batches (no CRC check)."""
        return BatchScan(self.log.pread, start_position, self.log.size, verify_crc=False)

    # ------------------------------------------------------------------------------- truncation

    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose last offset is >= `offset` (so the batch holding `offset` goes
        whole, as in Kafka). Returns the number of bytes removed; `next_offset` is updated."""
        found = self.translate_offset(offset)
        if found is None:
            return 0
        position, info = found
        removed = self.log.size - position
        self._truncate_files(position, info.base_offset)
        self.dirty = True
        # Recompute the max timestamp and the index counter from what is left.
        self._max_timestamp = None
        self.load_tail()
        if position == 0:
            self._rolling_based_timestamp = None
        return removed

    def _truncate_files(self, position: int, next_offset: int) -> None:
        self.indexes_dirty = True
        self.log.truncate(position)
        self.offset_index.truncate_to(next_offset, position)
        self.time_index.truncate_to(next_offset)
        self.next_offset = next_offset

    # --------------------------------------------------------------------------- flush / close

    def flush(self) -> None:
        """fsync the `.log` (and any open index file), here and now: for shutdown, recovery
        and the cleaner. The broker's flushes at run time take `flush_handles()` instead."""
        self.log.flush()
        self.offset_index.flush()
        self.time_index.flush()
        self.dirty = False

    def flush_handles(self, *, handles: bool = True) -> list:
        """What a worker thread must flush, then close, to make everything written to this
        segment so far durable (Kafka's LogSegment.flush: the log and its indexes): a duplicate
        of the `.log` descriptor, and handles on the index files when entries were written
        since the last flush. A segment whose files are closed (deleted meanwhile) has none.
        `handles` False: none either, for a flush that syncs the whole file system instead
        (the segment is counted as flushed all the same)."""
        if self.log.closed or not handles:
            self.indexes_dirty = self.dirty = False
            return []
        handles = [self.log.duplicate()]
        try:
            if self.indexes_dirty:
                for path in (self.offset_index.path, self.time_index.path):
                    if self.files.exists(path):
                        handles.append(self.files.open(path))
        except BaseException:
            for handle in handles:
                handle.close()
            raise
        self.indexes_dirty = False
        self.dirty = False
        return handles

    def close(self) -> None:
        self.seal()
        self.log.close()

    def close_handlers(self) -> None:
        """Close the files without writing anything (Kafka's closeHandlers): how the segments
        of an offline log dir are let go."""
        self.offset_index.close()
        self.time_index.close()
        self.log.close()

    def change_file_suffix(self, file_suffix: str) -> None:
        """Rename every file of the segment that exists from its current suffix to
        `file_suffix` (Kafka's changeFileSuffixes: `.cleaned` -> `.swap` -> final names while the
        log cleaner swaps a segment in). The `.log` goes first: its name is what a restart
        reads to decide whether a swap had committed. Index entries stay in memory."""
        self.offset_index.close()
        self.time_index.close()
        self.log.close()
        for suffix in SEGMENT_SUFFIXES:
            source = self._path(suffix)
            target = f"{self.directory}/{segment_file_name(self.base_offset, suffix)}{file_suffix}"
            if self.files.exists(source):
                self.files.rename(source, target)
        self.file_suffix = file_suffix
        self.log = self.files.open(self._path(LOG_SUFFIX))
        self.offset_index.path = self._path(INDEX_SUFFIX)
        self.time_index.path = self._path(TIME_INDEX_SUFFIX)

    def delete(self) -> None:
        """Close and remove all files of the segment."""
        self.offset_index.close()
        self.time_index.close()
        self.log.close()
        for suffix in SEGMENT_SUFFIXES:
            self.files.remove(self._path(suffix))

    def __repr__(self) -> str:
        return (f"LogSegment(base_offset={self.base_offset}, size={self.log.size}, "
                f"next_offset={self.next_offset})")
