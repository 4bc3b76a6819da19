"""Metadata records in record batches (metadata/batches.py): what the controller appends to
`__cluster_metadata` and brokers fetch, encoded and decoded through log/records.py's codec."""

import uuid

import pytest

from trioka.log import records as log_records
from trioka.metadata import records as r
from trioka.metadata.batches import batch_epochs, decode_batches, encode_batch
from trioka.wire.errors import ErrorCode, KafkaError

FOO = uuid.UUID("00000000-0000-4000-8000-0000000000f0")
INC = uuid.UUID(int=77)


def some_records():
    return [
        r.feature_level_record(r.METADATA_VERSION, r.METADATA_VERSION_LEVEL),
        r.register_broker_record(1, INC, 1, [("PLAINTEXT", "127.0.0.1", 9092, 0)],
                                 [(r.METADATA_VERSION, 1, 16)], None),
        r.topic_record("foo", FOO),
        r.partition_record(FOO, 0, [1], [1], leader=1),
    ]


def test_round_trip_one_batch():
    records = some_records()
    data = encode_batch(records, base_offset=0, epoch=3, timestamp_ms=1_700_000_000_000)
    decoded = list(decode_batches(data))
    assert [offset for offset, _ in decoded] == [0, 1, 2, 3]
    assert [record for _, record in decoded] == records
    batch = log_records.decode_batch(data)
    assert batch.partition_leader_epoch == 3
    assert batch.producer_id == -1 and batch.compression == 0
    assert batch.base_timestamp == batch.max_timestamp == 1_700_000_000_000
    assert all(record.key is None for record in batch.records)


def test_several_batches_at_offsets_above_zero():
    records = some_records()
    data = (encode_batch(records[:2], base_offset=10, epoch=1, timestamp_ms=5)
            + encode_batch(records[2:3], base_offset=12, epoch=2, timestamp_ms=6)
            + encode_batch(records[3:], base_offset=13, epoch=2, timestamp_ms=7))
    decoded = list(decode_batches(data))
    assert [offset for offset, _ in decoded] == [10, 11, 12, 13]
    assert [record for _, record in decoded] == records
    assert list(batch_epochs(data)) == [(10, 11, 1), (12, 12, 2), (13, 13, 2)]


def test_partial_last_batch_is_skipped_and_control_batches_stepped_over():
    records = some_records()
    first = encode_batch(records[:1], base_offset=0, epoch=1, timestamp_ms=5)
    control = log_records.encode_batch(
        [log_records.Record(key=log_records.encode_control_key(
            log_records.ControlRecordType.LEADER_CHANGE), value=b"\x00\x00")],
        base_offset=1, control=True, partition_leader_epoch=1)
    last = encode_batch(records[1:], base_offset=2, epoch=1, timestamp_ms=5)
    data = first + control + last[:-3]
    assert [offset for offset, _ in decode_batches(data)] == [0]
    assert [offset for offset, _ in decode_batches(first + control + last)] == [0, 2, 3, 4]


def test_corrupt_batch_is_refused():
    data = bytearray(encode_batch(some_records(), base_offset=0, epoch=1, timestamp_ms=5))
    data[-1] ^= 0xFF
    with pytest.raises(KafkaError) as failure:
        list(decode_batches(bytes(data)))
    assert failure.value.code == ErrorCode.CORRUPT_MESSAGE


def test_an_empty_batch_is_not_written():
    with pytest.raises(ValueError):
        encode_batch([], base_offset=0, epoch=1, timestamp_ms=5)
