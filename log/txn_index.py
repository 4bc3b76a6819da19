"""The transaction index: where aborted transactions lie, for read_committed consumers.

When an ABORT marker is written, the partition records the aborted transaction (producer id, first
offset of its data, offset of the marker, and the last stable offset once it ended) in the
`.txnindex` file of the segment the marker went to: 34-byte entries, `int16 version (0)`,
`int64 producer id`, `int64 first offset`, `int64 last offset`, `int64 last stable offset`, as
Kafka writes them. A read_committed Fetch returns, beside the records, every aborted transaction
that overlaps them (last offset >= the fetch offset, first offset < the upper bound), so the
consumer can drop those producers' records up to the marker.

The entries of all segments are also kept in memory, ordered by last offset. No trio here.
"""

import bisect
import struct

from trioka.log.segment import TXN_INDEX_SUFFIX, segment_file_name

_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size   # 34
VERSION = 0


class AbortedTxn:
    __slots__ = ("producer_id", "first_offset", "last_offset", "last_stable_offset")

    def __init__(self, producer_id: int, first_offset: int, last_offset: int,
                 last_stable_offset: int):
        self.producer_id = producer_id
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.last_stable_offset = last_stable_offset

    def encode(self) -> bytes:
        return _ENTRY.pack(VERSION, self.producer_id, self.first_offset, self.last_offset,
                           self.last_stable_offset)

    def __repr__(self) -> str:
        return (f"AbortedTxn(pid={self.producer_id}, first={self.first_offset}, "
                f"last={self.last_offset}, lso={self.last_stable_offset})")


class TransactionIndex:
    """The aborted transactions of one partition, over its segments' `.txnindex` files."""

    def __init__(self, files, directory: str):
        self.files = files
        self.directory = directory
        self.entries: list[AbortedTxn] = []     # ordered by last_offset
        self._last_offsets: list[int] = []
        self._segment_of: dict[int, int] = {}   # marker offset -> base offset of its segment

    def _path(self, base_offset: int) -> str:
        return f"{self.directory}/{segment_file_name(base_offset, TXN_INDEX_SUFFIX)}"

    def load(self, segment_bases: list[int], log_end_offset: int) -> None:
        """Read every segment's file; entries past the log end (a truncated tail) are dropped."""
        entries = []
        for base in segment_bases:
            path = self._path(base)
            if not self.files.exists(path):
                continue
            data = self.files.read_small(path)
            whole = len(data) - len(data) % ENTRY_SIZE
            kept = []
            for pos in range(0, whole, ENTRY_SIZE):
                version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
                if last < log_end_offset:
                    kept.append(AbortedTxn(pid, first, last, lso))
            if len(kept) * ENTRY_SIZE != len(data):
                self._rewrite(base, kept)
            for txn in kept:
                self._segment_of[txn.last_offset] = base
            entries.extend(kept)
        entries.sort(key=lambda t: t.last_offset)
        self.entries = entries
        self._last_offsets = [t.last_offset for t in entries]

    def _rewrite(self, base: int, kept: list[AbortedTxn]) -> None:
        path = self._path(base)
        if kept:
            self.files.write_atomic(path, b"".join(t.encode() for t in kept))
        elif self.files.exists(path):
            self.files.remove(path)

    def append(self, segment_base: int, txn: AbortedTxn) -> None:
        if any(t.last_offset == txn.last_offset for t in self.entries[-1:]):
            return    # already recorded (a replay after restart found it again)
        f = self.files.open(self._path(segment_base))
        try:
            f.append(txn.encode())
        finally:
            f.close()
        self._segment_of[txn.last_offset] = segment_base
        i = bisect.bisect_right(self._last_offsets, txn.last_offset)
        self.entries.insert(i, txn)
        self._last_offsets.insert(i, txn.last_offset)

    def has(self, last_offset: int) -> bool:
        i = bisect.bisect_left(self._last_offsets, last_offset)
        return i < len(self._last_offsets) and self._last_offsets[i] == last_offset

    def collect(self, fetch_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [fetch_offset, upper_bound)."""
        i = bisect.bisect_left(self._last_offsets, fetch_offset)
        return [t for t in self.entries[i:] if t.first_offset < upper_bound]

    def truncate_to(self, offset: int) -> None:
        """Forget aborts whose marker is at or past `offset` (the log was truncated there)."""
        i = bisect.bisect_left(self._last_offsets, offset)
        if i == len(self.entries):
            return
        gone = self.entries[i:]
        self.entries = self.entries[:i]
        self._last_offsets = self._last_offsets[:i]
        for base in {self._segment_of.pop(t.last_offset, None) for t in gone} - {None}:
            self._rewrite(base, [t for t in self.entries if self._segment_of.get(t.last_offset)
                                 == base])

    def drop_below(self, log_start_offset: int) -> None:
        """Forget aborts that ended before the log start (their segments were deleted)."""
        i = bisect.bisect_left(self._last_offsets, log_start_offset)
        if i:
            for t in self.entries[:i]:
                self._segment_of.pop(t.last_offset, None)
            del self.entries[:i]
            del self._last_offsets[:i]
