"""Record batches of `__cluster_metadata`: metadata records in and out of record batch v2.

KRaft stores its metadata log as ordinary record batches (magic 2), one metadata record per
Kafka record: the record's key is null and its value is the record framed as Kafka's
MetadataRecordSerde frames it (`MetadataRecord.encode`: frame version, api key, version, then
the message). The controller writes a batch per `write()` (Kafka's BatchAccumulator appends one
batch per scheduled write), uncompressed, without a producer id, with the Raft epoch in the
batch header's partition leader epoch, as KafkaRaftClient does. The same bytes go to the log,
to brokers in Raft Fetch responses, and come back out of both here.

Control batches in the metadata log (Raft's LeaderChange, snapshot header/footer, KRaft voters)
carry no metadata records: `decode_batches` steps over them, as Kafka's RecordsIterator hands
them to the listener separately and the metadata image never sees them.

Pure: no I/O, no trio; the batch codec is log/records.py's.
"""

from collections.abc import Iterable, Iterator

from trioka.log import records as log_records
from trioka.log.checkpoint import METADATA_TOPIC_ID
from trioka.metadata.records import MetadataRecord

# The metadata log is partition 0 of this topic (Kafka's Topic.CLUSTER_METADATA_TOPIC_NAME), whose
# topic id is the fixed Uuid.METADATA_TOPIC_ID (AAAAAAAAAAAAAAAAAAAAAQ), so Raft Fetch requests
# name it by id from Fetch v13.
METADATA_TOPIC = "__cluster_metadata"
METADATA_PARTITION = 0
__all__ = ["METADATA_TOPIC", "METADATA_PARTITION", "METADATA_TOPIC_ID", "encode_batch",
           "decode_batches", "batch_epochs"]


def encode_batch(records: Iterable[MetadataRecord], *, base_offset: int, epoch: int,
                 timestamp_ms: int) -> bytes:
    """One uncompressed record batch v2 holding `records` at consecutive offsets from
    `base_offset`, partition leader epoch `epoch` (the Raft epoch), every record's timestamp
    `timestamp_ms` (the append time, as KafkaRaftClient stamps its batches)."""
    items = [log_records.Record(offset_delta=index, key=None, value=record.encode(),
                                timestamp=timestamp_ms)
             for index, record in enumerate(records)]
    if not items:
        raise ValueError("a metadata batch holds at least one record")
    return log_records.encode_batch(items, base_offset=base_offset,
                                    base_timestamp=timestamp_ms,
                                    partition_leader_epoch=epoch)


def decode_batches(data, *, verify_crc: bool = True) -> Iterator[tuple[int, MetadataRecord]]:
    """The `(offset, MetadataRecord)` of every record in the batches laid end to end in `data`
    (bytes as stored in a segment or as a Fetch response's `records`). A partial batch at the
    end is skipped (a Fetch cuts at its byte limit); control batches are stepped over; a corrupt
    batch raises KafkaError(CORRUPT_MESSAGE) and a record that is not a metadata record frame
    raises what `MetadataRecord.decode` raises."""
    for batch in log_records.iter_batches(data, verify_crc=verify_crc):
        if batch.is_control:
            continue
        for record in batch.records:
            yield record.offset, MetadataRecord.decode(record.value)


def batch_epochs(data) -> Iterator[tuple[int, int, int]]:
    """`(base_offset, last_offset, partition_leader_epoch)` of each whole batch in `data`, control
    batches included: what a follower of the metadata log needs to check epochs and offsets."""
    for batch in log_records.iter_batches(data, verify_crc=False):
        yield batch.base_offset, batch.last_offset, batch.partition_leader_epoch
