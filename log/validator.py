"""Kafka's LogValidator: what the records of a produced batch must satisfy, beyond its header.

A produced batch is always checked by its 61-byte header and CRC-32C (`batch.validate_batches`),
including constant-time plausibility checks (the records count against the bytes that must hold
it), and is stored as it came. Kafka also walks every record of every batch; this broker walks
them only where a rule needs the records themselves (`RecordRules.needs_walk`), so the produce
hot path stays zero-copy:

| the topic (or broker) says                     | every record is                              |
|------------------------------------------------|----------------------------------------------|
| `cleanup.policy` includes compact              | walked: it must have a key                   |
| `compression.type` names a codec other than    | walked, then the batch is re-encoded in the  |
| the batch's                                    | topic's codec (header fields kept)           |
| `trioka.strict.validation=true` (broker)       | walked                                       |

A walk (records.iter_records: one record at a time out of the decompressing stream, within the
size limit described in log/compression.py) applies all of Kafka's record rules at once:

* the records must match the header's count: INVALID_RECORD, "Incorrect declared batch size,
  premature EOF reached" / "... records still remaining in file" (a compressed stream that does
  not decompress, or a record that does not parse, is CORRUPT_MESSAGE);
* a compacted topic refuses a record without a key, and a CreateTime record whose timestamp is
  outside [now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms] is
  refused; both are per-record errors: the whole batch is refused and the Produce response (v8+,
  KIP-467) lists each bad record's index and message in `record_errors`, the top-level message
  summing them up as Kafka's processRecordErrors does (INVALID_TIMESTAMP if any record's
  timestamp is bad, else INVALID_RECORD). Clients fail just those records with that error and
  the rest of the batch with "an invalid record in the same batch" (librdkafka's
  _INVALID_DIFFERENT_RECORD).

Not done as Kafka does: records whose offset deltas do not count 0, 1, 2, ... are stored as
they are (Kafka rewrites a compressed batch whose inner offsets are off).

Everything here is pure, bytes in and bytes out, so that the produce handler can run a walk in
a worker thread; the partition applies the result on the event loop.
"""

import dataclasses

from trioka.log.batch import NO_TIMESTAMP, AppendOrigin, validate_batches
from trioka.log.config import LONG_MAX
from trioka.log.records import iter_records, recompress
from trioka.wire.errors import ErrorCode, KafkaError


@dataclasses.dataclass(frozen=True, slots=True)
class RecordError:
    """One bad record of a batch (Kafka's ProduceResponse.RecordError): its index in the batch
    and why."""

    batch_index: int
    message: str | None

    def __str__(self) -> str:
        message = "null" if self.message is None else f"'{self.message}'"
        return f"RecordError(batchIndex={self.batch_index}, message={message})"


class RecordValidationError(KafkaError):
    """Kafka's RecordValidationException: records of a batch broke a rule; the batch is refused
    and `record_errors` name them (the Produce response's `record_errors`, v8+)."""

    def __init__(self, code: ErrorCode, message: str, record_errors: list[RecordError]):
        super().__init__(code, message)
        self.record_errors = record_errors


@dataclasses.dataclass(frozen=True, slots=True)
class RecordRules:
    """What a topic (and the broker's strict mode) asks of each produced record."""

    compact: bool = False
    codec: int | None = None                  # the topic's codec; None: keep the producer's
    strict: bool = False                      # trioka.strict.validation: walk every batch
    timestamp_before_max_ms: int = LONG_MAX   # CreateTime bounds, checked per record in a walk
    timestamp_after_max_ms: int = LONG_MAX

    @classmethod
    def of(cls, config, *, strict: bool = False) -> "RecordRules":
        """The rules of a topic's LogConfig. LogAppendTime topics check no record timestamps
        (the broker stamps the batch)."""
        check_time = not config.log_append_time
        return cls(compact=config.compact, codec=config.compression_codec, strict=strict,
                   timestamp_before_max_ms=(config.message_timestamp_before_max_ms
                                            if check_time else LONG_MAX),
                   timestamp_after_max_ms=(config.message_timestamp_after_max_ms
                                           if check_time else LONG_MAX))

    def needs_walk(self, batches) -> bool:
        """Whether these batches (their headers) must have their records walked."""
        return self.strict or self.compact or (
            self.codec is not None and any(info.compression != self.codec for info in batches))

    @staticmethod
    def walk_needed(config, batches, *, strict: bool = False) -> bool:
        """`RecordRules.of(config, strict=strict).needs_walk(batches)` without building the
        rules: the question every produce asks, so it costs a few attribute reads."""
        if strict or config.compact:
            return True
        codec = config.compression_codec
        return codec is not None and any(info.compression != codec for info in batches)


def validate_records(batch_bytes, rules: RecordRules, topic_partition: str, now_ms: int) -> None:
    """Walk every record of one produced batch (exactly its bytes) and apply Kafka's record
    rules (the module docstring). Raises KafkaError for a batch that cannot be read and
    RecordValidationError listing every bad record."""
    before, after = rules.timestamp_before_max_ms, rules.timestamp_after_max_ms
    check_time = before != LONG_MAX or after != LONG_MAX
    low, high = now_ms - before, now_ms + after
    errors: list[tuple[ErrorCode, RecordError]] = []
    for index, record in enumerate(iter_records(batch_bytes, verify_crc=False)):
        if rules.compact and record.key is None:
            errors.append((ErrorCode.INVALID_RECORD, RecordError(
                index, f"Compacted topic cannot accept message without key in topic partition "
                       f"{topic_partition}.")))
        elif (check_time and record.timestamp != NO_TIMESTAMP
              and not low <= record.timestamp <= high):
            errors.append((ErrorCode.INVALID_TIMESTAMP, RecordError(
                index, f"Timestamp {record.timestamp} of message with offset {record.offset} is "
                       f"out of range. The timestamp should be within [{low}, {high}]")))
    if not errors:
        return
    record_errors = [error for _, error in errors]
    if any(code == ErrorCode.INVALID_TIMESTAMP for code, _ in errors):
        raise RecordValidationError(
            ErrorCode.INVALID_TIMESTAMP,
            "One or more records have been rejected due to invalid timestamp", record_errors)
    shown = ", ".join(str(error) for error in record_errors[:3])
    raise RecordValidationError(
        ErrorCode.INVALID_RECORD,
        f"One or more records have been rejected due to {len(record_errors)} record errors in "
        f"total, and only showing the first three errors at most: [{shown}]", record_errors)


def conform(records, batches, rules: RecordRules, topic_partition: str, now_ms: int):
    """Apply `rules` to the batches of a produced `records` blob whose headers `batches` (from
    validate_batches) are: walk each batch's records and, where the topic names another codec,
    re-encode it. Returns (records, batches) to append: the same objects when nothing changed,
    else the new bytes and their headers. Pure, so it may run in a worker thread."""
    if not rules.needs_walk(batches):
        return records, batches
    out = []
    changed = False
    for info in batches:
        data = records[info.position:info.position + info.size]
        validate_records(data, rules, topic_partition, now_ms)
        if rules.codec is not None and info.compression != rules.codec:
            data = recompress(data, rules.codec)
            changed = True
        out.append(data)
    if not changed:
        return records, batches
    new_records = b"".join(out)
    return new_records, validate_batches(new_records, origin=AppendOrigin.CLIENT)
