"""Record batches v2 built byte by byte, for the tests of the log and of the handlers above it.

`make_batch` writes Kafka's layout (record-batch.md) with `struct` and `crc32c` alone, not with
trioka.log.records, so a test of the storage code never checks that code against itself. Test
modules import it by name (`from record_batches import make_batch`): this directory is on
`sys.path` while pytest runs (its conftest.py puts it there), and the name does not start with
`test_`, so pytest does not collect it as a test module.
"""

import struct

import crc32c


def zigzag(value: int) -> bytes:
    """A zig-zag varint/varlong as used by record fields."""
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def make_record(offset_delta: int, timestamp_delta: int, key: bytes | None,
                value: bytes | None) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += zigzag(timestamp_delta) + zigzag(offset_delta)
    body += zigzag(-1) if key is None else zigzag(len(key)) + key
    body += zigzag(-1) if value is None else zigzag(len(value)) + value
    body += zigzag(0)  # no headers
    return zigzag(len(body)) + bytes(body)


def make_batch(values=(b"v",), *, base_offset=0, base_timestamp=1_000, timestamps=None,
               producer_id=-1, producer_epoch=-1, base_sequence=-1, attributes=0,
               partition_leader_epoch=-1, records_count=None, last_offset_delta=None,
               magic=2, keys=None) -> bytes:
    """An uncompressed record batch v2 holding one record per value."""
    values = list(values)
    if timestamps is None:
        timestamps = [base_timestamp + i for i in range(len(values))]
    keys = keys or [None] * len(values)
    records = b"".join(make_record(i, timestamps[i] - base_timestamp, keys[i], v)
                       for i, v in enumerate(values))
    count = len(values) if records_count is None else records_count
    delta = len(values) - 1 if last_offset_delta is None else last_offset_delta
    after_crc = struct.pack(">hiqqqhii", attributes, delta, base_timestamp,
                            max(timestamps) if timestamps else -1, producer_id, producer_epoch,
                            base_sequence, count) + records
    batch_length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", base_offset, batch_length, partition_leader_epoch, magic,
                       crc32c.crc32c(after_crc)) + after_crc
