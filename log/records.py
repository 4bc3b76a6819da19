"""Record batch v2 (message format "magic 2") down to the individual records, both directions.

The broker's hot path never comes here: produced batches are checked by their 61-byte header and
CRC and stored as bytes, and fetches send stored bytes back. This module is for the places where
the records themselves matter: recompression to a topic's `compression.type`, compaction,
ListOffsets by timestamp, transaction markers written by the broker, tools and tests.

Layout of a batch (all integers big-endian; byte offsets from the start of the batch):

    0  baseOffset int64           offset of the first record (the broker assigns it)
    8  batchLength int32          bytes after this field, so the batch is 12 + batchLength long
   12  partitionLeaderEpoch int32 leader epoch at append; outside the CRC
   16  magic int8                 2; bytes 0-16 mean the same in every format, so byte 16 decides
   17  crc uint32                 CRC-32C (Castagnoli) of byte 21 to the end of the batch
   21  attributes int16           bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control,
                                  6 baseTimestamp holds a delete horizon (set by the log cleaner)
   23  lastOffsetDelta int32      last offset - baseOffset (also the last sequence delta)
   27  baseTimestamp int64        timestamp of the first record (or the delete horizon)
   35  maxTimestamp int64         largest record timestamp, or the append time (LogAppendTime)
   43  producerId int64           -1 unless idempotent / transactional
   51  producerEpoch int16
   53  baseSequence int32         producer sequence of the first record, -1 if none
   57  recordsCount int32
   61  records                    the records, or with a codec one compressed stream of them

Each record is: length varint (bytes that follow), attributes int8 (unused, 0),
timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null, then bytes),
value (same; a null value is a tombstone), headers count varint, then per header a key
(varint length + UTF-8, never null) and a value (varint length, -1 = null, + bytes).
varint / varlong are zig-zag encoded base-128 integers, as in Protocol Buffers' sint32 / sint64.

A record's offset is baseOffset + offsetDelta (compaction leaves gaps in the deltas). Its
timestamp is baseTimestamp + timestampDelta, except in a LogAppendTime batch where every record's
timestamp is the batch's maxTimestamp.

Control batches (attribute bit 5) hold exactly one record whose key and value are fixed-width
structs rather than application data: key = version int16 + type int16 (0 ABORT, 1 COMMIT; the
rest belong to KRaft), and for ABORT/COMMIT the value is the end transaction marker, version int16
+ coordinatorEpoch int32. Consumers never hand control records to applications.

Two ways in. `decode_batch` decodes a whole batch at once (the records section decompressed
whole, within compression.MAX_DECOMPRESSED_BYTES): for control batches, the coordinators' own
topics, tools and tests. `iter_records` walks the records of a batch one at a time out of a
decompressing stream, as Kafka's RecordIterator does, so memory stays at one record whatever the
batch claims: for everything that meets batches written by clients (the log cleaner, ListOffsets,
Kafka's LogValidator in log/validator.py). Its size rule: the records of one batch decompress to
at most MAX_DECOMPRESSED_BYTES; a record's length is checked against what is left of that, less
the MIN_RECORD_SIZE bytes each record still declared after it needs, before a byte of it is
decompressed. So a bomb is refused after at most one 64 KiB piece of output, and a batch whose
records do not match its header gets Kafka's answers (INVALID_RECORD, "Incorrect declared batch
size, premature EOF reached" / "records still remaining in file").

Legacy message sets (magic 0 and 1, before Kafka 0.11) are not decoded here: Produce v3 and
later must carry magic 2, and this broker rejects the older format. Only detection is offered.
"""

import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from trioka.log import batch as _batch   # its crc32c loads the C library on first use
from trioka.log.compression import (MAX_DECOMPRESSED_BYTES, compress, decompress,
                                    decompress_stream)
# The batch header's layout and attribute bits are log/batch.py's; these are their names in
# Kafka's record classes, for readers of this module.
from trioka.log.batch import (ATTRIBUTES_OFFSET, COMPRESSION_CODEC_MASK,
                              CONTROL_FLAG_MASK, CRC_OFFSET, CURRENT_MAGIC,
                              DELETE_HORIZON_FLAG_MASK, LOG_OVERHEAD, MAGIC_OFFSET,
                              MIN_BATCH_LENGTH, MIN_RECORD_SIZE, NO_PARTITION_LEADER_EPOCH,
                              NO_PRODUCER_EPOCH,
                              NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP, TIMESTAMP_TYPE_MASK,
                              TRANSACTIONAL_FLAG_MASK, BatchHeaderFields)
from trioka.log.batch import HEADER as BATCH_HEADER
from trioka.log.batch import HEADER_SIZE as RECORD_BATCH_OVERHEAD
from trioka.wire.errors import ErrorCode, KafkaError

# ---------------------------------------------------------------------------------------------
# Constants (Kafka's names)
# ---------------------------------------------------------------------------------------------

_INT32 = struct.Struct(">i")

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class TimestampType(enum.IntEnum):
    """Attribute bit 3: who set the timestamps (the `message.timestamp.type` topic config)."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class ControlRecordType(enum.IntEnum):
    """The `type` field of a control record's key. Consumers skip types they do not know."""

    ABORT = 0
    COMMIT = 1
    # The rest are written only into KRaft's own metadata log.
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


def _corrupt(message: str) -> KafkaError:
    return KafkaError(ErrorCode.CORRUPT_MESSAGE, message)


# ---------------------------------------------------------------------------------------------
# Zig-zag varints
# ---------------------------------------------------------------------------------------------
#
# Zig-zag maps signed to unsigned so that small magnitudes stay short: 0 -> 0, -1 -> 1, 1 -> 2,
# -2 -> 3, ... i.e. (n << 1) ^ (n >> 63). The unsigned value is then written 7 bits at a time,
# least significant group first, with the high bit set on every byte except the last. A varint
# (int32) takes at most 5 bytes, a varlong (int64) at most 10; Java rejects longer encodings and
# keeps only the low 32 / 64 bits of what it reads, which decode_varint / decode_varlong mirror.

def _write_zigzag(out: bytearray, value: int) -> None:
    """Append `value` (already known to fit in int64) as a zig-zag varint/varlong."""
    u = (value << 1) ^ (value >> 63)
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


def _read_zigzag(buf, pos: int, max_bytes: int) -> tuple[int, int]:
    """Read a zig-zag varint of at most `max_bytes` (5 or 10) starting at `pos`."""
    u = 0
    shift = 0
    limit = pos + max_bytes
    while True:
        if pos >= limit:
            raise _corrupt(f"varint longer than {max_bytes} bytes")
        b = buf[pos]  # IndexError when truncated; callers turn that into CORRUPT_MESSAGE
        pos += 1
        u |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    u &= 0xFFFFFFFF if max_bytes == 5 else 0xFFFFFFFFFFFFFFFF
    return (u >> 1) ^ -(u & 1), pos


def encode_varint(value: int) -> bytes:
    """Zig-zag varint of an int32 (Protocol Buffers sint32)."""
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"{value} does not fit in a varint (int32)")
    out = bytearray()
    _write_zigzag(out, value)
    return bytes(out)


def encode_varlong(value: int) -> bytes:
    """Zig-zag varlong of an int64 (Protocol Buffers sint64)."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{value} does not fit in a varlong (int64)")
    out = bytearray()
    _write_zigzag(out, value)
    return bytes(out)


def decode_varint(buf, pos: int = 0) -> tuple[int, int]:
    """Read a varint at `pos` of a bytes-like object; returns (value, position after it)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
        return _read_zigzag(buf, pos, 5)
    except IndexError:
        raise _corrupt("truncated varint") from None


def decode_varlong(buf, pos: int = 0) -> tuple[int, int]:
    """Read a varlong at `pos` of a bytes-like object; returns (value, position after it)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
        return _read_zigzag(buf, pos, 10)
    except IndexError:
        raise _corrupt("truncated varlong") from None


def size_of_varint(value: int) -> int:
    """Bytes that encode_varint / encode_varlong would use for `value`."""
    u = (value << 1) ^ (value >> 63)
    n = 1
    while u >= 0x80:
        u >>= 7
        n += 1
    return n


size_of_varlong = size_of_varint


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

Header = tuple[str, bytes | None]


@dataclass(slots=True)
class Record:
    """One record of a v2 batch.

    `offset_delta` / `timestamp_delta` are relative to the batch's baseOffset / baseTimestamp.
    `offset` / `timestamp` are absolute; decode fills them in. When encoding, a non-None
    `timestamp` wins over `timestamp_delta`, and `offset` is ignored (`offset_delta` counts).
    Header keys are str; bytes that are not valid UTF-8 survive a decode / encode round trip
    (they are held as surrogate escapes).
    """

    offset_delta: int = 0
    timestamp_delta: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: list[Header] = field(default_factory=list)
    offset: int | None = None
    timestamp: int | None = None


@dataclass(slots=True)
class Batch(BatchHeaderFields):
    """A decoded v2 record batch: the header fields under Kafka's names, and its records."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int
    records: list[Record]

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType((self.attributes & TIMESTAMP_TYPE_MASK) >> 3)

    @property
    def is_control_batch(self) -> bool:
        return self.is_control

    @property
    def delete_horizon_ms(self) -> int | None:
        """Set by the log cleaner: after this time its tombstones and markers may be removed."""
        if self.attributes & DELETE_HORIZON_FLAG_MASK:
            return self.base_timestamp
        return None

    @property
    def size_in_bytes(self) -> int:
        return self.size

    def control_type(self) -> int | None:
        """The ControlRecordType of a control batch's record; None for a data batch."""
        if not self.is_control_batch or not self.records:
            return None
        return decode_control_key(self.records[0].key)[1]


def increment_sequence(sequence: int, increment: int) -> int:
    """Producer sequences wrap from int32 max back to 0."""
    if sequence > _INT32_MAX - increment:
        return increment - (_INT32_MAX - sequence) - 1
    return sequence + increment


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

def _decode_records(data: bytes, count: int, base_offset: int, base_timestamp: int,
                    log_append_time: int | None) -> list[Record]:
    """Parse exactly `count` records that fill `data` (uncompressed records section)."""
    records: list[Record] = []
    append = records.append
    slow = _read_zigzag
    total = len(data)
    pos = 0
    # Nearly every varint here is one or two bytes long; those are read inline (a function call
    # costs more than the arithmetic), longer ones by `slow`.
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                length = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                length, pos = slow(data, pos, 5)
            end = pos + length
            if length <= 0 or end > total:
                raise _corrupt(f"record length {length} overruns the batch")
            pos += 1  # record attributes: unused
            b = data[pos]
            if b < 0x80:
                timestamp_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                timestamp_delta = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                timestamp_delta, pos = slow(data, pos, 10)
            b = data[pos]
            if b < 0x80:
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                offset_delta = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                offset_delta, pos = slow(data, pos, 5)
            b = data[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                n = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                n, pos = slow(data, pos, 5)
            if n >= 0:
                key = data[pos:pos + n]
                pos += n
            else:
                key = None
            b = data[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                n = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                n, pos = slow(data, pos, 5)
            if n >= 0:
                value = data[pos:pos + n]
                pos += n
            else:
                value = None
            b = data[pos]
            if b == 0:
                headers = []
                pos += 1
            else:
                if b < 0x80:
                    n = (b >> 1) ^ -(b & 1)
                    pos += 1
                else:
                    n, pos = slow(data, pos, 5)
                if n < 0:
                    raise _corrupt(f"negative header count {n}")
                headers = []
                for _ in range(n):
                    b = data[pos]
                    if b < 0x80:
                        hk = (b >> 1) ^ -(b & 1)
                        pos += 1
                    else:
                        hk, pos = slow(data, pos, 5)
                    if hk < 0:
                        raise _corrupt(f"negative header key length {hk}")
                    hkey = data[pos:pos + hk].decode("utf-8", "surrogateescape")
                    pos += hk
                    b = data[pos]
                    if b < 0x80:
                        hv = (b >> 1) ^ -(b & 1)
                        pos += 1
                    else:
                        hv, pos = slow(data, pos, 5)
                    if hv >= 0:
                        headers.append((hkey, data[pos:pos + hv]))
                        pos += hv
                    else:
                        headers.append((hkey, None))
            # Every slice above lies before `end` only if we land exactly on it.
            if pos != end:
                raise _corrupt(f"record declared {length} bytes but its fields take {pos - end + length}")
            append(Record(offset_delta, timestamp_delta, key, value, headers,
                          base_offset + offset_delta,
                          base_timestamp + timestamp_delta if log_append_time is None
                          else log_append_time))
    except IndexError:
        raise _corrupt("record runs past the end of the batch") from None
    if pos != total:
        raise _corrupt(f"{total - pos} bytes left after the {count} records of the batch")
    return records


def _parse(buf, verify_crc: bool) -> tuple[tuple, bytes]:
    """Header fields and the uncompressed records section of exactly one batch."""
    view = memoryview(buf).cast("B")
    size = len(view)
    if size > MAGIC_OFFSET:
        magic = view[MAGIC_OFFSET]
        if magic != CURRENT_MAGIC:
            raise _bad_magic(magic)
    if size < RECORD_BATCH_OVERHEAD:
        raise _corrupt(f"record batch of {size} bytes is shorter than its 61-byte header")
    header = BATCH_HEADER.unpack_from(view)
    batch_length = header[1]
    if LOG_OVERHEAD + batch_length != size:
        raise _corrupt(f"batchLength {batch_length} does not match the {size} bytes given")
    if verify_crc:
        actual = _batch.crc32c(view[ATTRIBUTES_OFFSET:])
        if actual != header[4]:
            raise _corrupt(f"record batch CRC {header[4]:#010x} does not match contents ({actual:#010x})")
    count = header[12]
    if count < 0:
        raise _corrupt(f"negative recordsCount {count}")
    codec = header[5] & COMPRESSION_CODEC_MASK
    section = view[RECORD_BATCH_OVERHEAD:]
    if codec == 0 or (count == 0 and not section):
        # An empty batch (kept by compaction to remember producer state) has no stream at all.
        data = bytes(section)
    else:
        data = decompress(codec, section)
    return header, data


def _bad_magic(magic: int) -> KafkaError:
    if magic in (0, 1):
        return KafkaError(ErrorCode.INVALID_RECORD,
                          f"legacy message format (magic {magic}) is not supported; use magic 2")
    return _corrupt(f"unknown record batch magic {magic}")


def decode_batch(buf, *, verify_crc: bool = True) -> Batch:
    """Decode exactly one v2 batch (bytes-like of exactly 12 + batchLength bytes).

    Decompresses as needed. Corruption (bad length, CRC, compressed stream, record structure)
    raises KafkaError(CORRUPT_MESSAGE); a magic 0/1 message set raises
    KafkaError(INVALID_RECORD).
    """
    header, data = _parse(buf, verify_crc)
    attributes = header[5]
    log_append_time = header[8] if attributes & TIMESTAMP_TYPE_MASK else None
    records = _decode_records(data, header[12], header[0], header[7], log_append_time)
    return Batch(*header, records)


def iter_batches(buf, *, verify_crc: bool = True) -> Iterator[Batch]:
    """Decode the batches laid end to end in a stored segment slice or a fetched `records` field.

    A partial batch at the end is skipped silently: fetch responses cut the last batch at the
    byte limit, and consumers ask again from its offset.
    """
    view = memoryview(buf).cast("B")
    total = len(view)
    pos = 0
    while total - pos >= LOG_OVERHEAD:
        (batch_length,) = _INT32.unpack_from(view, pos + 8)
        if total - pos > MAGIC_OFFSET and view[pos + MAGIC_OFFSET] != CURRENT_MAGIC:
            raise _bad_magic(view[pos + MAGIC_OFFSET])
        if batch_length < MIN_BATCH_LENGTH:
            raise _corrupt(f"batchLength {batch_length} is below the minimum {MIN_BATCH_LENGTH}")
        end = pos + LOG_OVERHEAD + batch_length
        if end > total:
            return
        yield decode_batch(view[pos:end], verify_crc=verify_crc)
        pos = end



# ---------------------------------------------------------------------------------------------
# Streaming: one record at a time out of a (decompressing) stream
# ---------------------------------------------------------------------------------------------

# Kafka's words (DefaultRecordBatch.RecordIterator) for a records count that lies.
PREMATURE_EOF = "Incorrect declared batch size, premature EOF reached"
RECORDS_REMAINING = "Incorrect declared batch size, records still remaining in file"


def _invalid(message: str) -> KafkaError:
    return KafkaError(ErrorCode.INVALID_RECORD, message)


def _more(chunks: Iterator, buf, pos: int, need: int):
    """(buffer, 0) holding the unread bytes buf[pos:] and enough further pieces of `chunks` to
    make `need` bytes, or all there are when the stream ends first."""
    have = len(buf) - pos
    parts = [buf[pos:]] if have else []
    for chunk in chunks:
        parts.append(chunk)
        have += len(chunk)
        if have >= need:
            break
    if len(parts) == 1:
        return parts[0], 0
    return b"".join(parts), 0


def _record_slices(chunks: Iterator, count: int, limit: int) -> Iterator:
    """The bytes of each of the `count` records (length prefix included) that the pieces of a
    records section, as `chunks` yields them, hold; then a check that nothing follows. Pieces
    are pulled only as the records need them, so a decompressing stream decompresses no further
    than the record being read (plus one piece). A records count that does not match is
    INVALID_RECORD with Kafka's words; a record whose length would take the records past `limit`
    bytes in all (counting MIN_RECORD_SIZE for each record still to come) is INVALID_RECORD
    before its bytes are pulled."""
    buf = b""
    pos = 0
    left = limit
    for index in range(count):
        if len(buf) - pos < 5:
            buf, pos = _more(chunks, buf, pos, 5)
            if pos >= len(buf):
                raise _invalid(PREMATURE_EOF)
        try:
            length, after = decode_varint(buf, pos)
        except KafkaError:
            if len(buf) - pos < 5:
                raise _invalid(PREMATURE_EOF) from None   # a length cut by the end
            raise
        if length < MIN_RECORD_SIZE - 1:
            raise _invalid(f"Invalid record size {length} of record {index}")
        size = after - pos + length
        left -= size
        if left < (count - index - 1) * MIN_RECORD_SIZE:
            raise _invalid(f"record {index} of {length} bytes takes the records of the batch "
                           f"past {limit} bytes decompressed, the most this broker reads")
        if len(buf) - pos < size:
            buf, pos = _more(chunks, buf, pos, size)
            if len(buf) < size:
                raise _invalid(PREMATURE_EOF)
        yield buf[pos:pos + size]
        pos += size
    if pos < len(buf) or any(chunks):
        raise _invalid(RECORDS_REMAINING)


def _section_stream(view, codec: int, count: int) -> Iterator:
    """The pieces of a batch's records section (`view`: what follows the header)."""
    if codec == 0:
        return iter((view,))
    if count == 0 and not len(view):
        return iter(())   # an empty batch (kept by compaction) has no stream at all
    return decompress_stream(codec, view)


def _batch_view(batch_bytes, verify_crc: bool):
    """(view of exactly one batch, its header fields), checked as _parse checks them."""
    view = memoryview(batch_bytes).cast("B")
    if len(view) > MAGIC_OFFSET and view[MAGIC_OFFSET] != CURRENT_MAGIC:
        raise _bad_magic(view[MAGIC_OFFSET])
    if len(view) < RECORD_BATCH_OVERHEAD:
        raise _corrupt(f"record batch of {len(view)} bytes is shorter than its 61-byte header")
    header = BATCH_HEADER.unpack_from(view)
    if LOG_OVERHEAD + header[1] != len(view):
        raise _corrupt(f"batchLength {header[1]} does not match the {len(view)} bytes given")
    if verify_crc:
        actual = _batch.crc32c(view[ATTRIBUTES_OFFSET:])
        if actual != header[4]:
            raise _corrupt(f"record batch CRC {header[4]:#010x} does not match contents "
                           f"({actual:#010x})")
    if header[12] < 0:
        raise _corrupt(f"negative recordsCount {header[12]}")
    return view, header


def iter_records(batch_bytes, *, verify_crc: bool = True,
                 limit: int = MAX_DECOMPRESSED_BYTES) -> Iterator[Record]:
    """The records of exactly one v2 batch (bytes-like of 12 + batchLength bytes), one at a time
    (see the module docstring), offsets and timestamps filled in as decode_batch does. The
    header (and its CRC, with verify_crc) is checked at the first step; then errors come as the
    walk meets them: INVALID_RECORD for a records count that does not match or the size limit,
    CORRUPT_MESSAGE for a stream that does not decompress or a record that does not parse."""
    view, header = _batch_view(batch_bytes, verify_crc)
    base_offset, attributes, base_timestamp, count = header[0], header[5], header[7], header[12]
    log_append_time = header[8] if attributes & TIMESTAMP_TYPE_MASK else None
    chunks = _section_stream(view[RECORD_BATCH_OVERHEAD:], attributes & COMPRESSION_CODEC_MASK,
                             count)
    for raw in _record_slices(chunks, count, limit):
        yield _decode_records(bytes(raw), 1, base_offset, base_timestamp, log_append_time)[0]


def _record_deltas(raw) -> tuple[int, int]:
    """(offset_delta, timestamp_delta) of one record's bytes (length prefix included)."""
    _, pos = decode_varint(raw, 0)
    timestamp_delta, pos = decode_varlong(raw, pos + 1)   # + 1: attributes
    offset_delta, _ = decode_varint(raw, pos)
    return offset_delta, timestamp_delta


# ---------------------------------------------------------------------------------------------
# Record headers: the first fields of each record, without decoding the rest
# ---------------------------------------------------------------------------------------------

def record_headers(data, count: int) -> Iterator[tuple[int, int]]:
    """(offset_delta, timestamp_delta) of each of the `count` records of an uncompressed records
    section, in order. Only the start of each record is read (length varint, attributes int8,
    timestampDelta varlong, offsetDelta varint); the rest is skipped by its length. Lazy, so a
    search that stops at a record reads nothing after it. A record that runs past the data or a
    varint longer than its type allows raises KafkaError(CORRUPT_MESSAGE)."""
    pos = 0
    try:
        for _ in range(count):
            length, pos = _read_zigzag(data, pos, 5)
            record_start = pos
            timestamp_delta, pos = _read_zigzag(data, pos + 1, 10)  # + 1: attributes
            offset_delta, pos = _read_zigzag(data, pos, 5)
            yield offset_delta, timestamp_delta
            pos = record_start + length
    except IndexError:
        raise _corrupt("record runs past the end of the batch") from None


def first_record_at_or_after(batch_bytes, header: BatchHeaderFields, timestamp: int,
                             min_offset: int) -> tuple[int, int] | None:
    """ListOffsets by timestamp inside one stored batch: (offset, timestamp) of its first record
    with offset >= `min_offset` and timestamp >= `timestamp`, or None. `header` is the batch's
    (a BatchInfo or a Batch). Records are walked one at a time out of the (decompressing) stream
    and stop at the one found, so nothing after it is decompressed. Records that cannot be read,
    or a stream that does not decompress, are answered at batch granularity: the batch's first
    offset at or after `min_offset`, with its max timestamp."""
    at_batch = max(header.base_offset, min_offset), header.max_timestamp
    if header.is_log_append_time:
        # Every record of a LogAppendTime batch has the batch's max_timestamp.
        if header.max_timestamp < timestamp or header.last_offset < min_offset:
            return None
        return at_batch
    view = memoryview(batch_bytes).cast("B")[RECORD_BATCH_OVERHEAD:header.size]
    try:
        chunks = _section_stream(view, header.compression, header.records_count)
        for raw in _record_slices(chunks, header.records_count, MAX_DECOMPRESSED_BYTES):
            offset_delta, timestamp_delta = _record_deltas(raw)
            offset = header.base_offset + offset_delta
            record_timestamp = header.base_timestamp + timestamp_delta
            if offset >= min_offset and record_timestamp >= timestamp:
                return offset, record_timestamp
    except KafkaError:
        return at_batch
    return None


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _normalize(item, index: int, previous_delta: int):
    """(offset_delta, timestamp or None, timestamp_delta, key, value, headers) of one input."""
    if isinstance(item, Record):
        return (item.offset_delta, item.timestamp, item.timestamp_delta,
                item.key, item.value, item.headers)
    if isinstance(item, dict):
        unknown = item.keys() - {"key", "value", "headers", "timestamp", "offset_delta"}
        if unknown:
            raise ValueError(f"record {index}: unknown fields {sorted(unknown)}")
        return (item.get("offset_delta", previous_delta + 1), item.get("timestamp"), 0,
                item.get("key"), item.get("value"), item.get("headers") or ())
    if isinstance(item, (tuple, list)) and 2 <= len(item) <= 4:
        key, value, headers, timestamp = (*item, None, None)[:4]
        return previous_delta + 1, timestamp, 0, key, value, headers or ()
    raise TypeError(f"record {index}: expected Record, dict or (key, value[, headers[, timestamp]]),"
                    f" got {type(item).__name__}")


def _encode_records(items: list, base_timestamp: int) -> tuple[bytearray, int]:
    """The uncompressed records section, and the largest record timestamp (or NO_TIMESTAMP)."""
    out = bytearray()
    write = _write_zigzag
    max_timestamp = NO_TIMESTAMP
    previous = -1
    for index, (offset_delta, timestamp, timestamp_delta, key, value, headers) in enumerate(items):
        if not (previous < offset_delta <= _INT32_MAX):
            raise ValueError(f"record {index}: offset_delta {offset_delta} must increase, from 0")
        previous = offset_delta
        if timestamp is None:
            timestamp = base_timestamp + timestamp_delta
        else:
            timestamp_delta = timestamp - base_timestamp
        if not _INT64_MIN <= timestamp_delta <= _INT64_MAX:
            raise ValueError(f"record {index}: timestamp {timestamp} too far from the base")
        if timestamp > max_timestamp:
            max_timestamp = timestamp
        body = bytearray(b"\x00")  # record attributes: unused, always 0
        write(body, timestamp_delta)
        write(body, offset_delta)
        for data in (key, value):
            if data is None:
                body.append(1)  # zig-zag -1: null
            elif isinstance(data, _BYTES_LIKE):
                write(body, len(data))
                body += data
            else:
                raise TypeError(f"record {index}: key/value must be bytes or None, not {type(data).__name__}")
        if isinstance(headers, dict):
            headers = headers.items()
        headers = list(headers) if headers else ()
        write(body, len(headers))
        for hkey, hvalue in headers:
            if isinstance(hkey, str):
                hkey = hkey.encode("utf-8", "surrogateescape")
            elif not isinstance(hkey, _BYTES_LIKE):
                raise TypeError(f"record {index}: header key must be str, not {type(hkey).__name__}")
            write(body, len(hkey))
            body += hkey
            if hvalue is None:
                body.append(1)
            elif isinstance(hvalue, _BYTES_LIKE):
                write(body, len(hvalue))
                body += hvalue
            else:
                raise TypeError(f"record {index}: header value must be bytes or None")
        if len(body) > _INT32_MAX:
            raise ValueError(f"record {index} is larger than 2 GiB")
        write(out, len(body))
        out += body
    return out, max_timestamp


def _assemble(section, *, base_offset: int, partition_leader_epoch: int, attributes: int,
              last_offset_delta: int, base_timestamp: int, max_timestamp: int, producer_id: int,
              producer_epoch: int, base_sequence: int, records_count: int) -> bytes:
    """Header + (already compressed) records section, with batchLength and CRC filled in."""
    out = bytearray(RECORD_BATCH_OVERHEAD)
    out += section
    batch_length = len(out) - LOG_OVERHEAD
    if batch_length > _INT32_MAX:
        raise ValueError("record batch larger than 2 GiB")
    BATCH_HEADER.pack_into(out, 0, base_offset, batch_length, partition_leader_epoch,
                           CURRENT_MAGIC, 0, attributes, last_offset_delta, base_timestamp,
                           max_timestamp, producer_id, producer_epoch, base_sequence, records_count)
    crc = _batch.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:])
    struct.pack_into(">I", out, CRC_OFFSET, crc)
    return bytes(out)


def encode_batch(records: Iterable = (), *, base_offset: int = 0, compression: int = 0,
                 base_timestamp: int | None = None, producer_id: int = NO_PRODUCER_ID,
                 producer_epoch: int = NO_PRODUCER_EPOCH, base_sequence: int = NO_SEQUENCE,
                 transactional: bool = False, control: bool = False, timestamp_type: int = 0,
                 partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
                 max_timestamp: int | None = None, last_offset_delta: int | None = None,
                 delete_horizon_ms: int | None = None,
                 compression_level: int | None = None) -> bytes:
    """Build one complete v2 record batch.

    `records` items are Record objects, dicts with keys key / value / headers / timestamp /
    offset_delta, or tuples (key, value[, headers[, timestamp]]). Tuples and dicts without
    offset_delta take the delta after the previous record's; offset deltas must increase.
    Timestamps are absolute milliseconds; a record without one gets baseTimestamp + its
    timestamp_delta (0 for tuples / dicts).

    baseTimestamp is `base_timestamp`, else the first record's timestamp, else NO_TIMESTAMP.
    `delete_horizon_ms` (the log cleaner's KIP-534 horizon) replaces baseTimestamp and sets
    attribute bit 6; record timestamps stay correct because their deltas follow the base.
    maxTimestamp is `max_timestamp` (pass the append time for LogAppendTime), else the largest
    record timestamp. lastOffsetDelta is `last_offset_delta`, else the last record's delta
    (0 for an empty batch). `compression` is the codec id 0-4.
    """
    if compression not in (0, 1, 2, 3, 4):
        raise ValueError(f"unknown compression codec id {compression}")
    if timestamp_type not in (0, 1):
        raise ValueError("timestamp_type must be 0 (CreateTime) or 1 (LogAppendTime)")
    items = []
    previous = -1
    for index, item in enumerate(records):
        normalized = _normalize(item, index, previous)
        previous = normalized[0]
        items.append(normalized)
    if delete_horizon_ms is not None:
        if base_timestamp is not None:
            raise ValueError("delete_horizon_ms is stored in baseTimestamp; do not pass both")
        base_timestamp = delete_horizon_ms
    if base_timestamp is None:
        base_timestamp = items[0][1] if items and items[0][1] is not None else NO_TIMESTAMP
    section, largest = _encode_records(items, base_timestamp)
    if compression and section:
        # An empty batch carries no stream at all, compressed or not.
        section = compress(compression, section, compression_level)
    attributes = compression | (timestamp_type << 3)
    if transactional:
        attributes |= TRANSACTIONAL_FLAG_MASK
    if control:
        attributes |= CONTROL_FLAG_MASK
    if delete_horizon_ms is not None:
        attributes |= DELETE_HORIZON_FLAG_MASK
    if last_offset_delta is None:
        last_offset_delta = items[-1][0] if items else 0
    return _assemble(
        section, base_offset=base_offset, partition_leader_epoch=partition_leader_epoch,
        attributes=attributes, last_offset_delta=last_offset_delta, base_timestamp=base_timestamp,
        max_timestamp=largest if max_timestamp is None else max_timestamp,
        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence,
        records_count=len(items))


def recompress(batch_bytes, codec: int, *, level: int | None = None) -> bytes:
    """The same batch with its records section compressed by `codec` instead.

    What the broker does when a topic's `compression.type` names a codec other than the
    producer's. The records are decoded (so a corrupt batch raises CORRUPT_MESSAGE here rather
    than reaching the log) but their bytes are kept exactly; every header field and attribute
    except the codec, batchLength and CRC is carried over.
    """
    if codec not in (0, 1, 2, 3, 4):
        raise ValueError(f"unknown compression codec id {codec}")
    header, data = _parse(batch_bytes, True)
    (base_offset, _, partition_leader_epoch, _, _, attributes, last_offset_delta, base_timestamp,
     max_timestamp, producer_id, producer_epoch, base_sequence, records_count) = header
    _decode_records(data, records_count, base_offset, base_timestamp, None)
    section = compress(codec, data, level) if codec and data else data
    return _assemble(
        section, base_offset=base_offset, partition_leader_epoch=partition_leader_epoch,
        attributes=(attributes & ~COMPRESSION_CODEC_MASK) | codec,
        last_offset_delta=last_offset_delta, base_timestamp=base_timestamp,
        max_timestamp=max_timestamp, producer_id=producer_id, producer_epoch=producer_epoch,
        base_sequence=base_sequence, records_count=records_count)


# ---------------------------------------------------------------------------------------------
# Control records
# ---------------------------------------------------------------------------------------------

_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_MARKER = struct.Struct(">hi")
CONTROL_RECORD_KEY_VERSION = 0
END_TXN_MARKER_VERSION = 0


@dataclass(slots=True, frozen=True)
class EndTransactionMarker:
    """The value of an ABORT / COMMIT control record."""

    version: int
    coordinator_epoch: int


def encode_control_key(control_type: int, version: int = CONTROL_RECORD_KEY_VERSION) -> bytes:
    return _CONTROL_KEY.pack(version, control_type)


def decode_control_key(key) -> tuple[int, int]:
    """(version, type) of a control record key. Versions above 0 are read as version 0."""
    if key is None or len(key) < _CONTROL_KEY.size:
        raise _corrupt("control record key shorter than 4 bytes")
    version, control_type = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise _corrupt(f"negative control record key version {version}")
    return version, control_type


def encode_end_txn_marker(coordinator_epoch: int, version: int = END_TXN_MARKER_VERSION) -> bytes:
    return _END_TXN_MARKER.pack(version, coordinator_epoch)


def decode_end_txn_marker(value) -> EndTransactionMarker:
    """The end transaction marker in an ABORT / COMMIT record's value (later versions are read
    as version 0, whose fields they begin with)."""
    if value is None or len(value) < _END_TXN_MARKER.size:
        raise _corrupt("end transaction marker shorter than 6 bytes")
    version, coordinator_epoch = _END_TXN_MARKER.unpack_from(value)
    if version < 0:
        raise _corrupt(f"negative end transaction marker version {version}")
    return EndTransactionMarker(version, coordinator_epoch)


def encode_control_batch(kind: int, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                         timestamp: int, *, base_offset: int = 0,
                         partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH) -> bytes:
    """A transaction marker batch as the broker writes it when a transaction ends.

    `kind` is ControlRecordType.COMMIT or ABORT. Uncompressed, CreateTime, transactional and
    control bits set, baseSequence -1, one record at offset delta 0 with the marker's time,
    key = control record key, value = end transaction marker, no headers.
    """
    if kind not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise ValueError(f"transaction markers are ABORT or COMMIT, not {kind!r}")
    record = Record(0, 0, encode_control_key(kind), encode_end_txn_marker(coordinator_epoch),
                    [], None, timestamp)
    return encode_batch([record], base_offset=base_offset, producer_id=producer_id,
                        producer_epoch=producer_epoch, base_sequence=NO_SEQUENCE,
                        transactional=True, control=True,
                        partition_leader_epoch=partition_leader_epoch)


# ---------------------------------------------------------------------------------------------
# Legacy message sets (magic 0 / 1): detection only
# ---------------------------------------------------------------------------------------------

def read_magic(buf, pos: int = 0) -> int:
    """The magic byte of the batch or legacy message starting at `pos`.

    The first 17 bytes line up in every format: offset int64, size int32, then v2's
    partitionLeaderEpoch or the legacy message's CRC, so the magic is always at +16.
    """
    if len(buf) - pos <= MAGIC_OFFSET:
        raise _corrupt("too short to hold a magic byte")
    return buf[pos + MAGIC_OFFSET]


def is_legacy_message_set(buf, pos: int = 0) -> bool:
    """True if the data at `pos` is a magic 0 or 1 message set (pre-0.11 clients)."""
    return read_magic(buf, pos) in (0, 1)
