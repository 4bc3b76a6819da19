"""The two sparse indexes of a log segment: OffsetIndex (`.index`) and TimeIndex (`.timeindex`).

Kafka does not index every batch. While appending, a segment adds one entry to each index once
more than `index.interval.bytes` (default 4096) bytes of log have been written since the last
entry, so a lookup lands at most ~4 KiB before the batch wanted and the segment scans batch
headers forward from there.

On-disk layout (Kafka's, big-endian, no header, no checksum; the files can always be rebuilt
from the `.log`):

* `.index`: 8-byte entries `relative_offset int32, position int32`. An entry (O, P) says the
  appended batches that start at byte P of the `.log` end at offset base_offset + O. Offsets and
  positions strictly increase.
* `.timeindex`: 12-byte entries `timestamp int64, relative_offset int32`. An entry (T, O) says
  T is the largest timestamp in the segment before offset base_offset + O, and O is where T was
  first reached; so every record with a timestamp > T is at or after O. Timestamps strictly
  increase.

Kafka preallocates and memory-maps these files and trims them at roll/close; here entries are
appended as they are made (so the file never has unused space) and held in memory arrays for
binary search. Entries load lazily on first use, so opening a broker with many segments reads
no index at all.
"""

import struct
import sys
from array import array
from bisect import bisect_right

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


def _big_endian_int32s(data: bytes) -> array:
    values = array("i")
    values.frombytes(data)
    if sys.byteorder == "little":
        values.byteswap()
    return values


class _IndexFile:
    """What both indexes do with their file: open it only to append or rewrite, flush, close.
    The entries stay in memory for lookups after close."""

    def __init__(self, files, path: str, base_offset: int, max_entries: int):
        self.files = files
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_entries
        self.loaded = False
        self._file = None  # opened only to append (active segment) or rewrite

    def _open(self):
        if self._file is None:
            self._file = self.files.open(self.path)
        return self._file

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file (the entries stay in memory for lookups)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class OffsetIndex(_IndexFile):
    """Maps offsets to byte positions in the segment's `.log` (Kafka's OffsetIndex)."""

    ENTRY_SIZE = 8

    def __init__(self, files, path: str, base_offset: int, max_entries: int):
        super().__init__(files, path, base_offset, max_entries)
        self.relative_offsets = array("i")
        self.positions = array("i")

    def __len__(self) -> int:
        return len(self.relative_offsets)

    @property
    def is_full(self) -> bool:
        return len(self.relative_offsets) >= self.max_entries

    def create_empty(self) -> None:
        """A brand-new segment: an empty file and no entries."""
        self._open().truncate(0)
        self.close()  # reopened by the first append: idle partitions hold no index descriptors
        self.relative_offsets = array("i")
        self.positions = array("i")
        self.loaded = True

    def load(self, log_size: int, end_offset: int | None = None) -> bool:
        """Read the entries from the file; False if it is missing or not sane (rebuild it).

        Sane means: a whole number of entries, offsets and positions strictly increasing and
        non-negative, every position inside the `.log` (of `log_size` bytes) and, when the
        segment's end offset is known, every offset below it.
        """
        try:
            data = self.files.read_small(self.path)
        except FileNotFoundError:
            return log_size == 0 and self._accept(array("i"), array("i"))
        if len(data) % self.ENTRY_SIZE:
            return False
        values = _big_endian_int32s(data)
        offsets, positions = values[0::2], values[1::2]
        previous_offset = -1
        previous_position = -1
        for offset, position in zip(offsets, positions):
            if offset <= previous_offset or position <= previous_position:
                return False
            previous_offset, previous_position = offset, position
        if positions and positions[-1] >= log_size:
            return False
        if offsets and end_offset is not None and self.base_offset + offsets[-1] >= end_offset:
            return False
        return self._accept(offsets, positions)

    def _accept(self, offsets: array, positions: array) -> bool:
        self.relative_offsets = offsets
        self.positions = positions
        self.loaded = True
        return True

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry with offset <= `offset`, else (base_offset, 0)."""
        i = bisect_right(self.relative_offsets, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self.relative_offsets[i], self.positions[i]

    def last_entry(self) -> tuple[int, int]:
        if not self.relative_offsets:
            return self.base_offset, 0
        return self.base_offset + self.relative_offsets[-1], self.positions[-1]

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        self.relative_offsets.append(relative)
        self.positions.append(position)
        self._open().append(_OFFSET_ENTRY.pack(relative, position))

    def replace(self, entries: list[tuple[int, int]]) -> None:
        """Rewrite the index with (offset, position) entries (after a rebuild)."""
        self.relative_offsets = array("i", [o - self.base_offset for o, _ in entries])
        self.positions = array("i", [p for _, p in entries])
        self.loaded = True
        file = self._open()
        file.truncate(0)
        file.append(b"".join(_OFFSET_ENTRY.pack(o - self.base_offset, p) for o, p in entries))
        self.close()

    def truncate_to(self, offset: int, position: int) -> None:
        """Drop entries at or after `offset` or pointing at or after byte `position`."""
        keep = len(self.relative_offsets)
        relative = offset - self.base_offset
        while keep and (self.relative_offsets[keep - 1] >= relative
                        or self.positions[keep - 1] >= position):
            keep -= 1
        if keep < len(self.relative_offsets):
            del self.relative_offsets[keep:]
            del self.positions[keep:]
            self._open().truncate(keep * self.ENTRY_SIZE)



class TimeIndex(_IndexFile):
    """Maps timestamps to offsets (Kafka's TimeIndex)."""

    ENTRY_SIZE = 12

    def __init__(self, files, path: str, base_offset: int, max_entries: int):
        super().__init__(files, path, base_offset, max_entries)
        self.timestamps = array("q")
        self.relative_offsets = array("i")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def is_full(self) -> bool:
        return len(self.timestamps) >= self.max_entries

    def create_empty(self) -> None:
        self._open().truncate(0)
        self.close()
        self.timestamps = array("q")
        self.relative_offsets = array("i")
        self.loaded = True

    def load(self, log_size: int, end_offset: int | None = None) -> bool:
        """Read the entries; False if missing or not sane (timestamps strictly increasing,
        offsets non-decreasing and non-negative and, when the segment's end offset is known,
        below it)."""
        try:
            data = self.files.read_small(self.path)
        except FileNotFoundError:
            return log_size == 0 and self._accept(array("q"), array("i"))
        if len(data) % self.ENTRY_SIZE:
            return False
        timestamps = array("q")
        offsets = array("i")
        previous_timestamp = None
        previous_offset = 0
        for timestamp, offset in _TIME_ENTRY.iter_unpack(data):
            if offset < previous_offset or (previous_timestamp is not None
                                            and timestamp <= previous_timestamp):
                return False
            timestamps.append(timestamp)
            offsets.append(offset)
            previous_timestamp, previous_offset = timestamp, offset
        if offsets and end_offset is not None and self.base_offset + offsets[-1] >= end_offset:
            return False
        return self._accept(timestamps, offsets)

    def _accept(self, timestamps: array, offsets: array) -> bool:
        self.timestamps = timestamps
        self.relative_offsets = offsets
        self.loaded = True
        return True

    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry; (-1, base_offset) when empty, as in Kafka."""
        if not self.timestamps:
            return -1, self.base_offset
        return self.timestamps[-1], self.base_offset + self.relative_offsets[-1]

    def lookup(self, timestamp: int) -> int:
        """The offset to start scanning from for the first record with timestamp >= `timestamp`:
        the offset of the last entry whose timestamp <= `timestamp` (every record before it is
        older than the target), or base_offset."""
        i = bisect_right(self.timestamps, timestamp) - 1
        if i < 0:
            return self.base_offset
        return self.base_offset + self.relative_offsets[i]

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add (timestamp, offset) if the timestamp is larger than the last entry's."""
        if timestamp <= self.last_entry()[0]:
            return
        relative = offset - self.base_offset
        self.timestamps.append(timestamp)
        self.relative_offsets.append(relative)
        self._open().append(_TIME_ENTRY.pack(timestamp, relative))

    def replace(self, entries: list[tuple[int, int]]) -> None:
        """Rewrite the index with (timestamp, offset) entries (after a rebuild)."""
        self.timestamps = array("q", [t for t, _ in entries])
        self.relative_offsets = array("i", [o - self.base_offset for _, o in entries])
        self.loaded = True
        file = self._open()
        file.truncate(0)
        file.append(b"".join(_TIME_ENTRY.pack(t, o - self.base_offset) for t, o in entries))
        self.close()

    def truncate_to(self, offset: int) -> None:
        """Drop entries pointing at or after `offset`."""
        keep = len(self.timestamps)
        relative = offset - self.base_offset
        while keep and self.relative_offsets[keep - 1] >= relative:
            keep -= 1
        if keep < len(self.timestamps):
            del self.timestamps[keep:]
            del self.relative_offsets[keep:]
            self._open().truncate(keep * self.ENTRY_SIZE)

