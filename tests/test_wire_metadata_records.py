"""KRaft metadata records (`__cluster_metadata`): every record type in every version survives
encode -> decode, framed as Kafka's MetadataRecordSerde frames it (frame version 1, record type,
version, as unsigned varints), and bytes Kafka wrote decode to the right fields."""

import random
import uuid

import pytest

from message_values import populate
from trioka.wire import schema, types as t
from trioka.wire.messages import METADATA_RECORDS

CASES = [pytest.param(record_type, v, id=f"{name}-v{v}")
         for record_type, (name, valid, _flex, _text) in sorted(METADATA_RECORDS.items())
         for v in range(schema.parse_versions(valid)[0], schema.parse_versions(valid)[1] + 1)]


@pytest.mark.parametrize("record_type,version", CASES)
def test_every_metadata_record_round_trips(record_type, version):
    mt = schema.metadata_record(record_type)
    for seed in range(3):
        message = populate(mt.cls, mt.fields, version, random.Random(f"{record_type}/{seed}"))
        data = schema.encode_metadata_record(record_type, message, version)
        assert data[:1] == b"\x01"                      # frame version 1
        assert schema.decode_metadata_record(data) == (record_type, version, message)


def test_a_partition_record_as_kafka_frames_it():
    """PartitionRecord v0 for partition 2 of a topic, replicas [1, 2, 3], ISR [1, 2], leader 1,
    epochs 5 and 7: the bytes written field by field from the schema's order."""
    topic_id = uuid.UUID("5b7a4f8e-0000-4000-8000-000000000001")
    body = (b"\x00\x00\x00\x02" + topic_id.bytes
            + b"\x04" + b"\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"   # replicas
            + b"\x03" + b"\x00\x00\x00\x01\x00\x00\x00\x02"                   # isr
            + b"\x01" + b"\x01"                                              # removing, adding
            + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x05" + b"\x00\x00\x00\x07"  # leader, epochs
            + b"\x00")                                                       # no tagged fields
    data = b"\x01\x03\x00" + body
    record_type, version, record = schema.decode_metadata_record(data)
    assert (record_type, version) == (3, 0)
    assert schema.metadata_record_type("PartitionRecord") == 3
    assert (record.partition_id, record.topic_id, record.replicas, record.isr, record.leader,
            record.leader_epoch, record.partition_epoch) == (2, topic_id, [1, 2, 3], [1, 2], 1,
                                                             5, 7)
    assert schema.encode_metadata_record(3, record, 0) == data


@pytest.mark.parametrize("data,what", [
    (b"", "truncated"),
    (b"\x00\x03\x00", "frame version 0"),
    (b"\x01\x7f\x00", "record type 127"),
    (b"\x01\x03\x09", "version 9"),
    (b"\x01\x03\x00\x00", "runs past"),
])
def test_bad_frames_are_decode_errors(data, what):
    with pytest.raises(t.DecodeError):
        schema.decode_metadata_record(data)


def test_trailing_bytes_are_a_decode_error():
    fence = schema.metadata_record_type("FenceBrokerRecord")
    data = schema.encode_metadata_record(fence, schema.metadata_record(fence).cls(id=1, epoch=2),
                                         0)
    with pytest.raises(t.DecodeError, match="after the record"):
        schema.decode_metadata_record(data + b"\x00")
