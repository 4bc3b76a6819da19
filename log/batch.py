"""The record batch v2 header: what the broker reads and patches on the produce hot path.

A Kafka log stores record batches exactly as producers send them. The broker never needs to look
at the records inside a batch to append or to serve it: everything it needs is in the fixed
61-byte header at the front of every batch:

    offset  size  field
       0     8    base_offset            set by the broker at append (producers send 0)
       8     4    batch_length           bytes after this field (total size = 12 + batch_length)
      12     4    partition_leader_epoch set by the broker at append (producers send -1)
      16     1    magic                  2 for this format; 0/1 are the legacy message sets
      17     4    crc                    CRC-32C of bytes 21..end of the batch
      21     2    attributes             codec, timestamp type, transactional, control, ...
      23     4    last_offset_delta      offset of the last record - base_offset
      27     8    base_timestamp         timestamp of the first record
      35     8    max_timestamp          largest record timestamp (or the broker's append time)
      43     8    producer_id            -1 unless idempotent / transactional
      51     2    producer_epoch
      53     4    base_sequence          sequence number of the first record
      57     4    records_count

Because the CRC starts at byte 21, the broker can set base_offset and partition_leader_epoch in
place without recomputing it. Changing attributes or max_timestamp (LogAppendTime topics) does
require a new CRC.

This module never decodes records (see `trioka.log.records` for that); it is pure and does no
I/O except through the `pread` callable handed to `BatchScan`.
"""

import enum
import struct

from trioka.log.compression import MAX_COMPRESSION_RATIO
from trioka.wire.errors import ErrorCode, KafkaError


def crc32c(data) -> int:
    """CRC-32C (Castagnoli), the checksum of record batch v2 (bytes 21 to the end).

    The C library is imported on the first call, which then replaces this function with it:
    importing it costs about 15 ms, which the broker's startup should not pay.
    """
    global crc32c
    from crc32c import crc32c as native
    crc32c = native
    return native(data)

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
# base_offset + batch_length: the part of every batch (and of legacy message set entries) that
# precedes what batch_length counts.
LOG_OVERHEAD = 12
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49: a batch is at least its header

BASE_OFFSET_OFFSET = 0
BATCH_LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21  # the CRC covers from here to the end of the batch
MAX_TIMESTAMP_OFFSET = 35

CURRENT_MAGIC = 2

# attributes bits
COMPRESSION_CODEC_MASK = 0x07  # 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; 5-7 invalid
TIMESTAMP_TYPE_MASK = 0x08  # 0 CreateTime, 1 LogAppendTime
TRANSACTIONAL_FLAG_MASK = 0x10
CONTROL_FLAG_MASK = 0x20
DELETE_HORIZON_FLAG_MASK = 0x40  # set by the log cleaner only (KIP-534)
MAX_COMPRESSION_CODEC = 4

# The smallest record a v2 batch can hold: one byte each for its length varint, attributes,
# timestampDelta, offsetDelta, key length, value length and header count. So an uncompressed
# batch of N records has at least 7 * N bytes after its header (Kafka finds the same lie only
# by walking the records: "Incorrect declared batch size, premature EOF reached").
MIN_RECORD_SIZE = 7

NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")


class AppendOrigin(enum.Enum):
    """Who is appending: Kafka validates client batches more strictly than its own.

    CLIENT: a Produce request. COORDINATOR: the broker itself (group offsets, transaction
    markers), which may write control batches and several batches at once.
    """

    CLIENT = "client"
    COORDINATOR = "coordinator"


class BatchHeaderFields:
    """What follows from a batch's header fields; shared by BatchInfo (a header read for the
    hot path) and records.Batch (a decoded batch)."""

    __slots__ = ()

    @property
    def size(self) -> int:
        """Total bytes of the batch, header included."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def count(self) -> int:
        """Offsets the batch occupies (last_offset_delta + 1); equals records_count unless
        compaction removed records from the batch."""
        return self.last_offset_delta + 1

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_CODEC_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG_MASK)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & DELETE_HORIZON_FLAG_MASK)

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record: base_sequence advanced by last_offset_delta, wrapping
        past Int32.MAX to 0 as Kafka's producers do."""
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) % (1 << 31)



class BatchInfo(BatchHeaderFields):
    """The header fields of one batch plus where it sits in its buffer or file.

    `position` is the byte position of the batch in the buffer it was read from (a produced
    `records` blob or a `.log` file). Field names are the header's, in snake_case.
    """

    __slots__ = ("position", "base_offset", "batch_length", "partition_leader_epoch", "magic",
                 "crc", "attributes", "last_offset_delta", "base_timestamp", "max_timestamp",
                 "producer_id", "producer_epoch", "base_sequence", "records_count")

    def __init__(self, position, base_offset, batch_length, partition_leader_epoch, magic, crc,
                 attributes, last_offset_delta, base_timestamp, max_timestamp, producer_id,
                 producer_epoch, base_sequence, records_count):
        self.position = position
        self.base_offset = base_offset
        self.batch_length = batch_length
        self.partition_leader_epoch = partition_leader_epoch
        self.magic = magic
        self.crc = crc
        self.attributes = attributes
        self.last_offset_delta = last_offset_delta
        self.base_timestamp = base_timestamp
        self.max_timestamp = max_timestamp
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.records_count = records_count

    def __repr__(self) -> str:
        return (f"BatchInfo(position={self.position}, base_offset={self.base_offset}, "
                f"size={self.size}, count={self.count}, records_count={self.records_count}, "
                f"max_timestamp={self.max_timestamp}, producer_id={self.producer_id})")


def read_header(buf, position: int = 0) -> BatchInfo:
    """Unpack the 61-byte header at `position` (no checks; the bytes must be there)."""
    return BatchInfo(position, *HEADER.unpack_from(buf, position))


# Produce looks at a batch before validating it: at its codec (zstd needs Produce v7) and, for a
# transactional batch, at the producer in its header (the coordinator is asked first, KIP-890).

def peek_codec(buf) -> int | None:
    """The codec id of the batch at the start of `buf`, nothing checked; None when `buf` is too
    short to hold it (the codec bits are in the low byte of the big-endian attributes)."""
    if len(buf) <= ATTRIBUTES_OFFSET + 1:
        return None
    return buf[ATTRIBUTES_OFFSET + 1] & COMPRESSION_CODEC_MASK


def peek_header(buf) -> BatchInfo | None:
    """The header of the batch at the start of `buf`, nothing checked; None when `buf` is
    shorter than a header."""
    if len(buf) < HEADER_SIZE:
        return None
    return read_header(buf, 0)


def _corrupt(message: str) -> KafkaError:
    return KafkaError(ErrorCode.CORRUPT_MESSAGE, message)


def _bad_magic(magic: int, position: int) -> KafkaError:
    # Produce v3+ may only carry magic 2 batches (Kafka answers INVALID_RECORD); a magic that is
    # no format at all is corruption.
    if magic in (0, 1):
        return KafkaError(ErrorCode.INVALID_RECORD,
                          f"legacy message format (magic {magic}) at byte {position} is not "
                          f"supported; use magic 2")
    return _corrupt(f"unknown record batch magic {magic} at byte {position}")


def validate_batches(buf, *, origin: AppendOrigin = AppendOrigin.CLIENT) -> list[BatchInfo]:
    """Check the batches of a produced `records` blob and return their headers, in order.

    Structural problems (truncated header or batch, batch_length below the minimum, CRC-32C
    mismatch, invalid codec, negative counts) raise KafkaError(CORRUPT_MESSAGE); magic 0/1 raises
    INVALID_RECORD. For `AppendOrigin.CLIENT` Kafka's producer rules apply too (record-batch.md
    §5), all INVALID_RECORD unless noted: exactly one batch per partition; records_count > 0 and
    equal to last_offset_delta + 1; no control batches; an idempotent producer id needs a
    base_sequence; a batch flagged LogAppendTime is INVALID_TIMESTAMP.

    Nothing is copied: the CRC runs over a memoryview slice. An empty blob returns [].
    """
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    end = len(view)
    batches: list[BatchInfo] = []
    position = 0
    while position < end:
        remaining = end - position
        if remaining > MAGIC_OFFSET and view[position + MAGIC_OFFSET] != CURRENT_MAGIC:
            raise _bad_magic(view[position + MAGIC_OFFSET], position)
        if remaining < HEADER_SIZE:
            raise _corrupt(f"truncated record batch: {remaining} bytes at byte {position} are "
                           f"less than the {HEADER_SIZE}-byte header")
        info = BatchInfo(position, *HEADER.unpack_from(view, position))
        if info.batch_length < MIN_BATCH_LENGTH:
            raise _corrupt(f"batch_length {info.batch_length} at byte {position} is below the "
                           f"minimum {MIN_BATCH_LENGTH}")
        size = LOG_OVERHEAD + info.batch_length
        if size > remaining:
            raise _corrupt(f"truncated record batch at byte {position}: batch_length says "
                           f"{size} bytes, {remaining} present")
        actual = crc32c(view[position + ATTRIBUTES_OFFSET:position + size])
        if actual != info.crc:
            raise _corrupt(f"record batch CRC {info.crc:#010x} at byte {position} does not match "
                           f"its contents ({actual:#010x})")
        if info.attributes & COMPRESSION_CODEC_MASK > MAX_COMPRESSION_CODEC:
            raise _corrupt(f"invalid compression codec {info.attributes & COMPRESSION_CODEC_MASK}")
        if info.records_count < 0 or info.last_offset_delta < 0:
            raise _corrupt(f"negative records_count ({info.records_count}) or last_offset_delta "
                           f"({info.last_offset_delta})")
        _check_records_fit(info)
        if origin is AppendOrigin.CLIENT:
            _check_client_batch(info)
        batches.append(info)
        position += size
    if origin is AppendOrigin.CLIENT and len(batches) > 1:
        raise KafkaError(ErrorCode.INVALID_RECORD,
                         f"a produce request may carry exactly one record batch per partition, "
                         f"got {len(batches)}")
    return batches


def _check_records_fit(info: BatchInfo) -> None:
    """Constant time: can the records section hold records_count records at all? Uncompressed,
    each record takes at least MIN_RECORD_SIZE bytes; compressed, the section inflates at most
    MAX_COMPRESSION_RATIO times. A batch that passes may still lie (only a walk of its records
    tells), but one that fails cannot be read: Kafka's answer when it walks it is INVALID_RECORD,
    "Incorrect declared batch size, premature EOF reached"."""
    section = info.batch_length - MIN_BATCH_LENGTH
    codec = info.attributes & COMPRESSION_CODEC_MASK
    capacity = section * MAX_COMPRESSION_RATIO[codec] if codec else section
    if info.records_count * MIN_RECORD_SIZE > capacity:
        raise KafkaError(ErrorCode.INVALID_RECORD,
                         f"Incorrect declared batch size, premature EOF reached: "
                         f"{info.records_count} records cannot fit in the {section} bytes of "
                         f"the batch at byte {info.position}")


def _check_client_batch(info: BatchInfo) -> None:
    """Kafka's rules for batches coming from producers (LogValidator)."""
    if info.records_count == 0 or info.records_count != info.last_offset_delta + 1:
        raise KafkaError(ErrorCode.INVALID_RECORD,
                         f"records_count {info.records_count} does not match last_offset_delta "
                         f"{info.last_offset_delta} + 1")
    if info.is_control:
        raise KafkaError(ErrorCode.INVALID_RECORD, "clients may not produce control batches")
    if info.producer_id >= 0 and info.base_sequence < 0:
        raise KafkaError(ErrorCode.INVALID_RECORD,
                         f"producer id {info.producer_id} sent a batch without a base_sequence")
    if info.is_log_append_time:
        raise KafkaError(ErrorCode.INVALID_TIMESTAMP,
                         "producers may not set the timestamp type to LogAppendTime")


def assign_offsets(buf: bytearray, batches: list[BatchInfo], first_offset: int,
                   partition_leader_epoch: int) -> int:
    """Write the broker-assigned base_offset and partition_leader_epoch into each batch header.

    Offsets are consecutive: each batch takes last_offset_delta + 1 of them. Neither field is
    covered by the CRC, so the batches stay valid. The BatchInfo objects are updated to match.
    Returns the next offset after the last batch.
    """
    offset = first_offset
    for info in batches:
        _INT64.pack_into(buf, info.position + BASE_OFFSET_OFFSET, offset)
        _INT32.pack_into(buf, info.position + PARTITION_LEADER_EPOCH_OFFSET, partition_leader_epoch)
        info.base_offset = offset
        info.partition_leader_epoch = partition_leader_epoch
        offset += info.last_offset_delta + 1
    return offset


def set_log_append_time(buf: bytearray, info: BatchInfo, now_ms: int) -> None:
    """Stamp a batch for a `message.timestamp.type=LogAppendTime` topic.

    Kafka sets the timestamp-type attribute bit and max_timestamp := the broker's clock; readers
    then take every record's timestamp to be max_timestamp (base_timestamp and the record deltas
    are left as the producer wrote them). Both fields are inside the CRC, so it is recomputed.
    """
    position = info.position
    attributes = info.attributes | TIMESTAMP_TYPE_MASK
    _INT16.pack_into(buf, position + ATTRIBUTES_OFFSET, attributes)
    _INT64.pack_into(buf, position + MAX_TIMESTAMP_OFFSET, now_ms)
    view = memoryview(buf)
    crc = crc32c(view[position + ATTRIBUTES_OFFSET:position + info.size])
    view.release()
    _UINT32.pack_into(buf, position + CRC_OFFSET, crc)
    info.attributes = attributes
    info.max_timestamp = now_ms
    info.crc = crc


def batch_crc_ok(buf, position: int, info: BatchInfo) -> bool:
    """True when the stored CRC-32C matches bytes 21..end of the batch at `position` in buf."""
    view = memoryview(buf)
    ok = crc32c(view[position + ATTRIBUTES_OFFSET:position + info.size]) == info.crc
    view.release()
    return ok


class BatchScan:
    """Walk the batches stored in a file region, stopping quietly at the first bad one.

    Used by recovery and index building. `pread(position, n)` returns up to n bytes of the file;
    `start`/`end` bound the region. Iterating yields a BatchInfo per valid batch (positions are
    file positions). When iteration stops, `valid_end` is the position just after the last valid
    batch and `stop_reason` says why the walk ended before `end` (None when it reached `end`):
    a torn tail (a half-written header or batch, as left by a crash mid-write), a bad magic or
    batch_length, or (with verify_crc) a CRC mismatch.

    Reads go in chunks of `chunk_size`; a header-only walk (verify_crc=False) never reads the body
    of a batch larger than the chunk.
    """

    def __init__(self, pread, start: int, end: int, *, verify_crc: bool,
                 chunk_size: int = 1 << 20):
        self._pread = pread
        self.start = start
        self.end = end
        self.verify_crc = verify_crc
        self.chunk_size = max(chunk_size, HEADER_SIZE)
        self.valid_end = start
        self.stop_reason: str | None = None

    def __iter__(self):
        pread = self._pread
        end = self.end
        chunk = b""
        chunk_start = self.start  # file position of chunk[0]
        position = self.start
        while position < end:
            local = position - chunk_start
            if local + HEADER_SIZE > len(chunk):
                if end - position < HEADER_SIZE:
                    self.stop_reason = f"torn batch header at byte {position}"
                    return
                chunk = pread(position, min(self.chunk_size, end - position))
                chunk_start = position
                local = 0
                if len(chunk) < HEADER_SIZE:
                    self.stop_reason = f"short read at byte {position}"
                    return
            if chunk[local + MAGIC_OFFSET] != CURRENT_MAGIC:
                self.stop_reason = f"bad magic {chunk[local + MAGIC_OFFSET]} at byte {position}"
                return
            info = BatchInfo(position, *HEADER.unpack_from(chunk, local))
            if info.batch_length < MIN_BATCH_LENGTH:
                self.stop_reason = f"bad batch_length {info.batch_length} at byte {position}"
                return
            size = LOG_OVERHEAD + info.batch_length
            if position + size > end:
                self.stop_reason = f"torn batch at byte {position} ({size} bytes declared)"
                return
            if self.verify_crc:
                if local + size > len(chunk):
                    chunk = pread(position, max(size, min(self.chunk_size, end - position)))
                    chunk_start = position
                    local = 0
                    if len(chunk) < size:
                        self.stop_reason = f"short read at byte {position}"
                        return
                if not batch_crc_ok(chunk, local, info):
                    self.stop_reason = f"CRC mismatch in batch at byte {position}"
                    return
            yield info
            position += size
            self.valid_end = position
