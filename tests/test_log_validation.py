"""Unbounded work from small inputs: decompression bombs of every codec, record batches whose
header lies about their records, and Kafka's LogValidator rules with per-record errors.

The bombs are built here from streams (1 GiB of zeros goes through each compressor a MiB at a
time), so the tests themselves stay small in memory; what the broker does with them is measured
with tracemalloc (the Python heap: a batch inflated whole would show there).
"""

import functools
import struct
import time
import tracemalloc
import zlib

import lz4.frame
import pytest
import snappy
import zstandard

from trioka.log.batch import (HEADER, MIN_RECORD_SIZE, AppendOrigin, crc32c, read_header,
                              validate_batches)
from trioka.log.cleaner import LogCleaner
from trioka.log.compression import (MAX_DECOMPRESSED_BYTES, XERIAL_HEADER, decompress,
                                    decompress_stream)
from trioka.log.config import LogConfig
from trioka.log.files import MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.records import (PREMATURE_EOF, RECORDS_REMAINING, encode_batch, encode_varint,
                                first_record_at_or_after, iter_records)
from trioka.log.validator import (RecordError, RecordRules, RecordValidationError, conform,
                                  validate_records)
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from wire_client import WireClient, memory_broker

NOW = 1_700_000_000_000
MiB = 1 << 20
GiB = 1 << 30
ZEROS = bytes(MiB)


# ------------------------------------------------------------------------------ bomb builders

def _stream(head: bytes, zeros: int):
    """`head`, then `zeros` zero bytes, a MiB at a time."""
    yield head
    for _ in range(zeros // MiB):
        yield ZEROS
    if zeros % MiB:
        yield bytes(zeros % MiB)


def _gzip(pieces) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join([c.compress(p) for p in pieces] + [c.flush()])


def _zstd(pieces) -> bytes:
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join([c.compress(p) for p in pieces] + [c.flush()])


def _lz4(pieces) -> bytes:
    c = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX64KB)
    return b"".join([c.begin()] + [c.compress(p) for p in pieces] + [c.flush()])


def _snappy(pieces) -> bytes:
    # The xerial framing the Java client writes: 32 KiB blocks, each a raw snappy block.
    out = [XERIAL_HEADER]
    for piece in pieces:
        for start in range(0, len(piece), 32 * 1024):
            block = snappy.compress(piece[start:start + 32 * 1024])
            out.append(struct.pack(">i", len(block)) + block)
    return b"".join(out)


# Output sizes: 1 GiB where the codec's ratio keeps the bomb small; snappy cannot shrink more
# than about 21:1, so its bomb is the smallest that passes the ceiling.
BOMBS = {1: (_gzip, GiB), 2: (_snappy, MAX_DECOMPRESSED_BYTES + 32 * MiB), 3: (_lz4, GiB),
         4: (_zstd, GiB)}
CODEC_NAMES = {1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


@functools.cache
def bomb(codec: int, kind: str) -> bytes:
    """A compressed records section. "zeros": only zeros (no record can be read from it);
    "record": one well-formed record whose value is all the zeros."""
    build, size = BOMBS[codec]
    if kind == "zeros":
        return build(_stream(b"", size))
    value_length = size
    body_head = b"\x00\x00\x00\x01" + encode_varint(value_length)   # attrs, ts, offset, null key
    length = len(body_head) + value_length + 1                       # + header count
    return build(_stream(encode_varint(length) + body_head, value_length))


def batch_with_section(section: bytes, codec: int, count: int, *, base_timestamp: int = NOW,
                       max_timestamp: int = NOW) -> bytes:
    """A v2 batch around an arbitrary records section, header and CRC as a producer writes
    them."""
    out = bytearray(HEADER.size) + section
    HEADER.pack_into(out, 0, 0, len(out) - 12, -1, 2, 0, codec, count - 1, base_timestamp,
                     max_timestamp, -1, -1, -1, count)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def heap_peak(fn) -> tuple[object, int]:
    """fn()'s result (or the exception it raised) and the peak of the Python heap meanwhile."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:   # noqa: BLE001 - the caller checks what it was
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def open_log(files=None, configs=None) -> PartitionLog:
    # The gzip and snappy bombs are a few MiB: allow batches that large.
    configs = {"max.message.bytes": str(64 * MiB), **(configs or {})}
    return PartitionLog("t", 0, "t-0", files or MemoryFiles(), configs, now_ms=NOW)


CODECS = [1, 2, 3, 4]


# ------------------------------------------------------------------------------- the ceiling

@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_decompress_refuses_a_bomb_at_the_ceiling(codec):
    data = bomb(codec, "zeros")
    assert len(data) < 16 * MiB
    error, peak = heap_peak(lambda: decompress(codec, data))
    assert isinstance(error, KafkaError) and error.code == ErrorCode.CORRUPT_MESSAGE
    assert "decompresses to more than" in error.message
    # What was inflated stays within the ceiling (and the pieces it came in).
    assert peak < MAX_DECOMPRESSED_BYTES + 16 * MiB


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_the_stream_decompresses_only_what_is_pulled(codec):
    data = bomb(codec, "zeros")
    started = time.perf_counter()
    pieces, peak = heap_peak(lambda: [len(p) for _, p in zip(range(3), decompress_stream(codec,
                                                                                        data))])
    assert sum(pieces) <= 3 * 64 * 1024 and time.perf_counter() - started < 1
    assert peak < 8 * MiB + len(data)


def test_a_raw_snappy_block_declaring_gigabytes_is_refused_before_it_is_inflated():
    block = snappy.compress(b"x" * 100)
    lying = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + block[1:]   # preamble: 4 GiB
    with pytest.raises(KafkaError) as error:
        decompress(2, lying)
    assert error.value.code == ErrorCode.CORRUPT_MESSAGE and "declares" in error.value.message


# --------------------------------------------------------------------- walking a bomb's records

@pytest.mark.parametrize("kind", ["zeros", "record"])
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_walking_a_bomb_stops_at_its_first_record(codec, kind):
    data = batch_with_section(bomb(codec, kind), codec, 1)
    started = time.perf_counter()
    error, peak = heap_peak(lambda: list(iter_records(data)))
    assert isinstance(error, KafkaError) and error.code == ErrorCode.INVALID_RECORD, error
    assert time.perf_counter() - started < 2
    assert peak < 8 * MiB + 2 * len(data)   # one piece of output, not the bomb


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_a_bomb_produced_to_a_compacted_topic_is_refused(codec):
    log = open_log(configs={"cleanup.policy": "compact"})
    data = batch_with_section(bomb(codec, "record"), codec, 1)
    (error, peak) = heap_peak(lambda: log.append(data, now_ms=NOW))
    assert isinstance(error, KafkaError) and error.code == ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 0 and peak < 8 * MiB + 3 * len(data)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_a_bomb_is_not_recompressed(codec):
    other = 4 if codec != 4 else 1
    log = open_log(configs={"compression.type": CODEC_NAMES[other]})
    with pytest.raises(KafkaError) as error:
        log.append(batch_with_section(bomb(codec, "record"), codec, 1), now_ms=NOW)
    assert error.value.code == ErrorCode.INVALID_RECORD


def test_a_stored_bomb_makes_the_partition_uncleanable_not_the_cleaner_fail():
    files = MemoryFiles()
    log = open_log(files, {"cleanup.policy": "delete", "segment.bytes": "100000000"})
    log.append(encode_batch([(b"k", b"v1")], base_timestamp=NOW), now_ms=NOW)
    log.append(batch_with_section(bomb(4, "record"), 4, 1), now_ms=NOW)   # delete: stored
    log.roll(NOW)
    log.append(encode_batch([(b"k", b"v2")], base_timestamp=NOW), now_ms=NOW)
    log.update_config(LogConfig.from_configs({"cleanup.policy": "compact"}))
    cleaner = LogCleaner(files, lambda: [log])
    results, peak = heap_peak(lambda: cleaner.clean_now(NOW))
    assert results == [] and peak < 16 * MiB
    assert cleaner.filthiest(NOW) is None          # skipped by the timer from now on
    assert log.log_end_offset == 3                 # nothing lost, still readable
    stored = validate_batches(bytes(log.read(0, 1 << 30).records),
                              origin=AppendOrigin.COORDINATOR)
    assert [(h.base_offset, h.compression) for h in stored] == [(0, 0), (1, 4), (2, 0)]


def test_list_offsets_in_a_bomb_answers_at_batch_granularity():
    log = open_log()
    log.append(encode_batch([(b"k", b"v")], base_timestamp=NOW - 10), now_ms=NOW)
    data = batch_with_section(bomb(4, "zeros"), 4, 1, base_timestamp=NOW, max_timestamp=NOW + 5)
    log.append(data, now_ms=NOW)
    found, peak = heap_peak(lambda: log.offset_for_timestamp(NOW + 1))
    assert found == (1, NOW + 5) and peak < 8 * MiB + 3 * len(data)
    info = read_header(data)
    assert first_record_at_or_after(data, info, NOW + 1, 0) == (0, NOW + 5)


# ---------------------------------------------------------------- headers that lie: constant time

def test_the_million_record_lie_is_refused_in_constant_time():
    honest = encode_batch([(None, b"")])               # 68 bytes: one 7-byte record
    assert len(honest) == 68
    lie = bytearray(honest)
    struct.pack_into(">i", lie, 23, 999_999)           # last_offset_delta
    struct.pack_into(">i", lie, 57, 1_000_000)         # records_count
    struct.pack_into(">I", lie, 17, crc32c(memoryview(lie)[21:]))
    with pytest.raises(KafkaError) as error:
        validate_batches(bytes(lie))
    assert error.value.code == ErrorCode.INVALID_RECORD
    assert error.value.message.startswith(PREMATURE_EOF)
    log = open_log()
    with pytest.raises(KafkaError):
        log.append(bytes(lie), now_ms=NOW)
    assert log.log_end_offset == 0
    log.append(honest, now_ms=NOW)
    assert log.log_end_offset == 1


@pytest.mark.parametrize("codec", [0] + CODECS)
def test_counts_up_to_what_the_bytes_can_hold_pass_the_header_check(codec):
    records = [(b"k%d" % i, b"v" * 10) for i in range(100)]
    data = encode_batch(records, compression=codec)
    assert [i.records_count for i in validate_batches(data)] == [100]
    section = len(data) - HEADER.size
    ratio = {0: 1, 1: 1032, 2: 22, 3: 256, 4: 32768}[codec]
    too_many = section * ratio // MIN_RECORD_SIZE + 1
    lie = bytearray(data)
    struct.pack_into(">i", lie, 23, too_many - 1)
    struct.pack_into(">i", lie, 57, too_many)
    struct.pack_into(">I", lie, 17, crc32c(memoryview(lie)[21:]))
    if too_many < 2**31:
        with pytest.raises(KafkaError) as error:
            validate_batches(bytes(lie), origin=AppendOrigin.COORDINATOR)
        assert error.value.code == ErrorCode.INVALID_RECORD


# ---------------------------------------------------------- headers that lie: the record walk

def _recount(data: bytes, count: int) -> bytes:
    lie = bytearray(data)
    struct.pack_into(">i", lie, 23, count - 1)
    struct.pack_into(">i", lie, 57, count)
    struct.pack_into(">I", lie, 17, crc32c(memoryview(lie)[21:]))
    return bytes(lie)


STRICT = RecordRules(strict=True)


@pytest.mark.parametrize("codec", [0] + CODECS)
def test_a_walk_finds_a_count_that_lies_either_way(codec):
    data = encode_batch([(b"a", b"1" * 20), (b"b", b"2" * 20), (b"c", b"3" * 20)],
                        compression=codec)
    validate_records(data, STRICT, "t-0", NOW)
    for count, message in ((4, PREMATURE_EOF), (2, RECORDS_REMAINING)):
        lie = _recount(data, count)
        validate_batches(lie)                      # plausible: only the walk can tell
        with pytest.raises(KafkaError) as error:
            validate_records(lie, STRICT, "t-0", NOW)
        assert (error.value.code, error.value.message) == (ErrorCode.INVALID_RECORD, message)


def test_strict_mode_refuses_on_append_what_the_header_check_lets_through():
    lie = _recount(encode_batch([(b"a", b"1" * 20), (b"b", b"2" * 20)]), 3)
    log = open_log()
    batches = log.validate(lie)
    with pytest.raises(KafkaError) as error:
        conform(lie, batches, STRICT, "t-0", NOW)
    assert error.value.code == ErrorCode.INVALID_RECORD
    # Without a rule that needs the records, the walk is not done and the bytes stay as given.
    records = memoryview(bytearray(encode_batch([(b"a", b"1")])))
    same = conform(records, log.validate(records), RecordRules(), "t-0", NOW)
    assert same[0] is records


def test_a_record_past_the_limit_is_refused_from_its_length():
    data = encode_batch([(b"k", b"v" * 1000)])
    with pytest.raises(KafkaError) as error:
        list(iter_records(data, limit=500))
    assert error.value.code == ErrorCode.INVALID_RECORD and "past 500 bytes" in error.value.message
    # The records still declared after it count too: each needs MIN_RECORD_SIZE bytes.
    first_size = len(data) - HEADER.size              # the bytes of its one record
    two = encode_batch([(b"k", b"v" * 1000), (b"j", b"")])
    walk = iter_records(two, limit=first_size + MIN_RECORD_SIZE - 1)
    with pytest.raises(KafkaError) as error:
        next(walk)                                    # refused before the second is read
    assert "record 0 " in error.value.message
    assert len(list(iter_records(two, limit=len(two) - HEADER.size))) == 2


# ------------------------------------------------------------- per-record errors (KIP-467)

def test_compacted_topic_keyless_records_are_listed_one_by_one():
    rules = RecordRules(compact=True)
    records = [(None if i % 10 == 0 else b"k%d" % i, b"v%d" % i) for i in range(100)]
    for codec in (0, 4):
        with pytest.raises(RecordValidationError) as error:
            validate_records(encode_batch(records, compression=codec), rules, "t-0", NOW)
        e = error.value
        assert e.code == ErrorCode.INVALID_RECORD
        assert [r.batch_index for r in e.record_errors] == list(range(0, 100, 10))
        message = ("Compacted topic cannot accept message without key in topic partition t-0.")
        assert all(r.message == message for r in e.record_errors)
        shown = ", ".join(f"RecordError(batchIndex={i}, message='{message}')" for i in (0, 10, 20))
        assert e.message == ("One or more records have been rejected due to 10 record errors in "
                             f"total, and only showing the first three errors at most: [{shown}]")
    assert str(RecordError(3, None)) == "RecordError(batchIndex=3, message=null)"


def test_record_timestamps_are_checked_one_by_one_in_a_walk():
    config = LogConfig.from_configs({"cleanup.policy": "compact",
                                     "message.timestamp.after.max.ms": "1000"})
    rules = RecordRules.of(config)
    records = [(b"a", b"1", None, NOW), (b"b", b"2", None, NOW + 5000), (b"c", b"3", None, NOW)]
    with pytest.raises(RecordValidationError) as error:
        validate_records(encode_batch(records), rules, "t-0", NOW)
    assert error.value.code == ErrorCode.INVALID_TIMESTAMP
    assert error.value.message == "One or more records have been rejected due to invalid timestamp"
    assert [r.batch_index for r in error.value.record_errors] == [1]
    assert error.value.record_errors[0].message.startswith(f"Timestamp {NOW + 5000} of message")


@pytest.fixture
def broker():
    b = memory_broker({"auto.create.topics.enable": False})
    yield b
    b.close()


async def produce(broker, topic: str, data: bytes, version: int = 9):
    Produce = ApiKey.PRODUCE
    from trioka.wire.protocol import request_class
    request = request_class(Produce)
    topic_data = request.TopicProduceData
    response = await WireClient(broker).call(
        Produce, version, transactional_id=None, acks=-1, timeout_ms=1000,
        topic_data=[topic_data(name=topic, partition_data=[
            topic_data.PartitionProduceData(index=0, records=data)])])
    return response.responses[0].partition_responses[0]


async def test_produce_response_lists_record_errors(broker):
    broker.create_topic("compacted", 1, {"cleanup.policy": "compact"})
    records = [(None if i % 10 == 0 else b"k%d" % i, b"v") for i in range(30)]
    part = await produce(broker, "compacted", encode_batch(records, compression=1))
    assert part.error_code == ErrorCode.INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in part.record_errors] == [
        (i, "Compacted topic cannot accept message without key in topic partition "
            "compacted-0.") for i in (0, 10, 20)]
    assert part.error_message.startswith("One or more records have been rejected due to 3 ")
    assert part.base_offset == -1 and part.log_start_offset == 0
    ok = await produce(broker, "compacted", encode_batch([(b"k", b"v")]))
    assert (ok.error_code, ok.base_offset) == (0, 0)


async def test_produce_refuses_lies_and_bombs(broker):
    broker.create_topic("plain", 1, {})
    broker.create_topic("compacted", 1, {"cleanup.policy": "compact",
                                         "max.message.bytes": str(64 * MiB)})
    lie = bytearray(encode_batch([(None, b"")]))
    struct.pack_into(">i", lie, 23, 999_999)
    struct.pack_into(">i", lie, 57, 1_000_000)
    struct.pack_into(">I", lie, 17, crc32c(memoryview(lie)[21:]))
    part = await produce(broker, "plain", bytes(lie))
    assert part.error_code == ErrorCode.INVALID_RECORD and part.record_errors == []
    part = await produce(broker, "compacted", batch_with_section(bomb(4, "record"), 4, 1))
    assert part.error_code == ErrorCode.INVALID_RECORD
    assert broker.partition("plain", 0).log_end_offset == 0
    assert broker.partition("compacted", 0).log_end_offset == 0


async def test_strict_validation_walks_every_batch():
    b = memory_broker({"trioka.strict.validation": True})
    try:
        b.create_topic("plain", 1, {})
        lie = _recount(encode_batch([(b"a", b"1" * 20), (b"b", b"2" * 20)]), 3)
        part = await produce(b, "plain", lie)
        assert (part.error_code, part.error_message) == (ErrorCode.INVALID_RECORD, PREMATURE_EOF)
        ok = await produce(b, "plain", encode_batch([(b"a", b"1")], compression=3))
        assert ok.error_code == 0
    finally:
        b.close()


async def list_offsets(broker, topic: str, timestamp: int):
    from trioka.wire.protocol import request_class
    request = request_class(ApiKey.LIST_OFFSETS)
    t = request.ListOffsetsTopic
    response = await WireClient(broker).call(
        ApiKey.LIST_OFFSETS, 7, replica_id=-1, isolation_level=0, topics=[t(
            name=topic, partitions=[t.ListOffsetsPartition(partition_index=0,
                                                           current_leader_epoch=-1,
                                                           timestamp=timestamp)])])
    part = response.topics[0].partitions[0]
    return part.error_code, part.offset, part.timestamp


async def test_list_offsets_walks_compressed_batches_off_the_loop(broker):
    broker.create_topic("times", 1, {"max.message.bytes": str(64 * MiB)})
    records = [(b"k%d" % i, b"v", None, NOW + 10 * i) for i in range(50)]
    assert (await produce(broker, "times", encode_batch(records, compression=4))).error_code == 0
    assert await list_offsets(broker, "times", NOW + 101) == (0, 11, NOW + 110)
    assert await list_offsets(broker, "times", -3) == (0, 49, NOW + 490)
    assert await list_offsets(broker, "times", NOW + 10_000) == (0, -1, -1)
    # A stored bomb after it: answered at batch granularity, the broker inflating nothing.
    bomb_batch = batch_with_section(bomb(4, "zeros"), 4, 1, base_timestamp=NOW + 1000,
                                    max_timestamp=NOW + 1000)
    assert (await produce(broker, "times", bomb_batch)).error_code == 0
    assert await list_offsets(broker, "times", NOW + 999) == (0, 50, NOW + 1000)
