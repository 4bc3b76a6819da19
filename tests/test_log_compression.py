"""trioka.log.compression against the codec libraries themselves and kafka-python's codec module.

Every codec: round trips, reading what the other writers in the field produce (xerial and raw
snappy, linked / checksummed lz4 frames, zstd frames without a content size, multi-member gzip),
the exact framing Kafka consumers need from what we write, and CORRUPT_MESSAGE on bad data.
"""

import gzip
import io
import os
import random
import struct
import warnings

import lz4.frame
import pytest
import snappy
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # kafka-python's package import emits DeprecationWarnings about importlib.resources.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import codec as kafka_codec

from trioka.log.compression import (
    XERIAL_HEADER,
    CompressionType,
    compress,
    decompress,
)
from trioka.wire.errors import ErrorCode, KafkaError

CODECS = [0, 1, 2, 3, 4]
COMPRESSED = [1, 2, 3, 4]


def _samples():
    rnd = random.Random(1234)
    text = b"".join(b"record-%d:" % i + b"abcdefghij" * (i % 7) for i in range(20000))
    return {
        "empty": b"",
        "one_byte": b"x",
        "small": b"hello kafka",
        "random_100k": bytes(rnd.getrandbits(8) for _ in range(100_000)),
        "text_multi_block": text,  # several 32 KiB / 64 KiB blocks
        "zeros_1m": bytes(1 << 20),
        "exact_32k": b"a" * (32 * 1024),
        "exact_64k_plus_1": b"b" * (64 * 1024 + 1),
    }


SAMPLES = _samples()


def corrupt(excinfo) -> None:
    assert isinstance(excinfo.value, KafkaError)
    assert excinfo.value.code == ErrorCode.CORRUPT_MESSAGE


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(codec, name):
    data = SAMPLES[name]
    packed = compress(codec, data)
    assert isinstance(packed, bytes)
    assert decompress(codec, packed) == data
    if codec == 0:
        assert packed == data


@pytest.mark.parametrize("codec", CODECS)
def test_accepts_any_bytes_like(codec):
    data = SAMPLES["text_multi_block"]
    packed = compress(codec, memoryview(bytearray(data)))
    assert decompress(codec, memoryview(packed)) == data
    assert decompress(codec, bytearray(packed)) == data
    # A slice of a larger buffer, as a batch's records section would be.
    framed = b"\xee" * 61 + packed
    assert decompress(codec, memoryview(framed)[61:]) == data


@pytest.mark.parametrize("codec", COMPRESSED)
def test_compresses(codec):
    data = SAMPLES["zeros_1m"]
    assert len(compress(codec, data)) < len(data) // 15  # snappy tops out near 21:1


@pytest.mark.parametrize("codec", [1, 3, 4])
def test_levels(codec):
    data = SAMPLES["text_multi_block"]
    low, high = {1: (1, 9), 3: (0, 12), 4: (1, 19)}[codec]
    a, b = compress(codec, data, low), compress(codec, data, level=high)
    assert decompress(codec, a) == decompress(codec, b) == data
    assert len(b) <= len(a)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), codec=st.sampled_from(CODECS))
def test_round_trip_property(data, codec):
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", [5, 6, 7, -1, 8])
def test_unknown_codec_is_corrupt_message(codec):
    with pytest.raises(KafkaError) as e:
        decompress(codec, b"abc")
    corrupt(e)
    with pytest.raises(KafkaError) as e:
        compress(codec, b"abc")
    corrupt(e)


def test_codec_ids_are_kafkas():
    assert [c.value for c in CompressionType] == [0, 1, 2, 3, 4]
    assert [c.name_in_config for c in CompressionType] == ["none", "gzip", "snappy", "lz4", "zstd"]


# --- gzip -------------------------------------------------------------------------------------

def test_gzip_is_a_standard_stream():
    data = SAMPLES["text_multi_block"]
    packed = compress(1, data)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == data
    assert decompress(1, gzip.compress(data, compresslevel=1)) == data
    assert decompress(1, kafka_codec.gzip_encode(data)) == data
    assert kafka_codec.gzip_decode(packed) == data


def test_gzip_concatenated_members_and_trailing_garbage():
    a, b = b"first member " * 100, b"second member " * 100
    assert decompress(1, gzip.compress(a) + gzip.compress(b)) == a + b
    # Java's GZIPInputStream stops at bytes that are not another member.
    assert decompress(1, gzip.compress(a) + b"\x00\x00junk") == a


@pytest.mark.parametrize("bad", [b"", b"\x1f\x8b", b"not gzip at all", "truncated", "bitflip"])
def test_gzip_corrupt(bad):
    good = gzip.compress(SAMPLES["text_multi_block"])
    if bad == "truncated":
        bad = good[: len(good) // 2]
    elif bad == "bitflip":
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        bad = bytes(bad)
    with pytest.raises(KafkaError) as e:
        decompress(1, bad)
    corrupt(e)


# --- snappy -----------------------------------------------------------------------------------

def _parse_xerial(packed: bytes) -> list[bytes]:
    """Independent reading of xerial framing: header, then [int32 length][raw block]..."""
    assert packed[:16] == bytes.fromhex("82534e41505059000000000100000001")
    blocks, pos = [], 16
    while pos < len(packed):
        (size,) = struct.unpack_from(">i", packed, pos)
        blocks.append(packed[pos + 4: pos + 4 + size])
        pos += 4 + size
    assert pos == len(packed)
    return blocks


def test_snappy_writes_xerial_framing_like_the_java_client():
    data = SAMPLES["text_multi_block"]
    packed = compress(2, data)
    assert packed.startswith(XERIAL_HEADER)
    blocks = _parse_xerial(packed)
    raw = [snappy.uncompress(b) for b in blocks]
    assert b"".join(raw) == data
    # snappy-java cuts the input into 32 KiB blocks.
    assert all(len(r) == 32 * 1024 for r in raw[:-1]) and 0 < len(raw[-1]) <= 32 * 1024
    assert len(blocks) == -(-len(data) // (32 * 1024))
    # kafka-python's reader (what it shares with the Java client: xerial detection).
    assert kafka_codec.snappy_decode(packed) == data


def test_snappy_empty_is_header_only():
    assert compress(2, b"") == XERIAL_HEADER
    assert decompress(2, XERIAL_HEADER) == b""


@pytest.mark.parametrize("name", ["small", "text_multi_block", "random_100k", "zeros_1m"])
def test_snappy_reads_both_xerial_and_raw(name):
    data = SAMPLES[name]
    # Raw snappy, as librdkafka writes it.
    assert decompress(2, snappy.compress(data)) == data
    assert decompress(2, kafka_codec.snappy_encode(data, xerial_compatible=False)) == data
    # Xerial framing with kafka-python's writer (default 32 KiB blocks, and a custom size).
    assert decompress(2, kafka_codec.snappy_encode(data)) == data
    assert decompress(2, kafka_codec.snappy_encode(data, xerial_blocksize=4096)) == data


def test_snappy_hand_built_xerial_with_uneven_blocks():
    parts = [b"a" * 10, b"b" * 70000, b"", b"c" * 5]
    blob = XERIAL_HEADER + b"".join(
        struct.pack(">i", len(c)) + c for c in (snappy.compress(p) for p in parts))
    assert decompress(2, blob) == b"".join(parts)


def test_snappy_official_framing_format_is_not_kafkas():
    # The `sNaPpY` stream format is a different thing; neither Java nor librdkafka reads it.
    framed = snappy.StreamCompressor().add_chunk(b"hello" * 100)
    with pytest.raises(KafkaError) as e:
        decompress(2, framed)
    corrupt(e)


@pytest.mark.parametrize("bad", ["raw_garbage", "truncated_block", "truncated_length",
                                 "short_header", "negative_length", "bad_block"])
def test_snappy_corrupt(bad):
    good = compress(2, SAMPLES["text_multi_block"])
    blob = {
        "raw_garbage": b"\xff\xff\xff\xff\x0fgarbage",
        "truncated_block": good[:-10],
        "truncated_length": XERIAL_HEADER + b"\x00\x00",
        "short_header": XERIAL_HEADER[:12],
        "negative_length": XERIAL_HEADER + struct.pack(">i", -5) + b"xxxxx",
        "bad_block": XERIAL_HEADER + struct.pack(">i", 5) + b"\xff\xff\xff\xff\x0f",
    }[bad]
    with pytest.raises(KafkaError) as e:
        decompress(2, blob)
    corrupt(e)


# --- lz4 --------------------------------------------------------------------------------------

def test_lz4_frame_header_is_what_java_reads():
    data = SAMPLES["text_multi_block"]
    packed = compress(3, data)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic 0x184D2204, little-endian
    flg, bd = packed[4], packed[5]
    assert flg >> 6 == 0b01  # frame format version 1
    assert flg & 0x20  # block independence: Java rejects dependent blocks
    assert not flg & 0x10  # no block checksums
    assert not flg & 0x08  # no content size
    assert not flg & 0x04  # no content checksum
    assert flg & 0x03 == 0  # reserved
    assert (bd >> 4) & 0x07 == 4  # 64 KiB maximum block size
    assert lz4.frame.decompress(packed) == data
    assert kafka_codec.lz4_decode(packed) == data


def test_lz4_reads_other_writers():
    data = SAMPLES["text_multi_block"]
    # lz4's defaults: linked blocks, content size; plus checksums of both kinds.
    assert decompress(3, lz4.frame.compress(data)) == data
    assert decompress(3, lz4.frame.compress(data, content_checksum=True, block_checksum=True,
                                            block_size=lz4.frame.BLOCKSIZE_MAX4MB)) == data
    assert decompress(3, kafka_codec.lz4_encode(data)) == data
    # Two frames back to back read as one stream.
    assert decompress(3, compress(3, b"ab" * 100) + compress(3, b"cd" * 100)) == b"ab" * 100 + b"cd" * 100


@pytest.mark.parametrize("bad", ["", "garbage", "truncated", "header_only", "bitflip_checksum"])
def test_lz4_corrupt(bad):
    data = SAMPLES["text_multi_block"]
    good = compress(3, data)
    if bad == "truncated":
        blob = good[:-7]
    elif bad == "header_only":
        blob = good[:7]
    elif bad == "garbage":
        blob = b"\x04\x22\x4d\x18garbage-garbage"
    elif bad == "bitflip_checksum":
        blob = bytearray(lz4.frame.compress(data, content_checksum=True))
        blob[-1] ^= 0xFF
        blob = bytes(blob)
    else:
        blob = b""
    with pytest.raises(KafkaError) as e:
        decompress(3, blob)
    corrupt(e)


# --- zstd -------------------------------------------------------------------------------------

def test_zstd_reads_frames_without_content_size():
    data = SAMPLES["text_multi_block"]
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert zstandard.frame_content_size(no_size) == -1
    assert decompress(4, no_size) == data
    # A streaming writer, like Java's ZstdOutputStream / librdkafka.
    sink = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(sink, closefd=False) as writer:
        for i in range(0, len(data), 1000):
            writer.write(data[i:i + 1000])
    streamed = sink.getvalue()
    assert zstandard.frame_content_size(streamed) == -1
    assert decompress(4, streamed) == data
    # Highly compressible data without a size: the output is far larger than the input.
    zeros = SAMPLES["zeros_1m"] * 20
    assert decompress(4, zstandard.ZstdCompressor(write_content_size=False).compress(zeros)) == zeros


def test_zstd_with_content_size_and_multiple_frames():
    a, b = b"alpha" * 1000, b"beta" * 3000
    with_size = zstandard.ZstdCompressor().compress(a)
    assert zstandard.frame_content_size(with_size) == len(a)
    assert decompress(4, with_size) == a
    assert decompress(4, with_size + zstandard.ZstdCompressor(write_content_size=False).compress(b)) == a + b
    # A skippable frame (magic 0x184D2A5?) carries no data.
    skippable = struct.pack("<II", 0x184D2A50, 3) + b"abc"
    assert decompress(4, skippable + with_size) == a
    assert decompress(4, kafka_codec.zstd_encode(b)) == b


def test_zstd_output_is_readable_by_streaming_readers():
    data = SAMPLES["text_multi_block"]
    packed = compress(4, data)
    assert packed[:4] == b"\x28\xb5\x2f\xfd"
    assert kafka_codec.zstd_decode(packed) == data
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed)) as reader:
        assert reader.read() == data


@pytest.mark.parametrize("bad", ["", "garbage", "truncated", "truncated_no_size", "trailing_junk"])
def test_zstd_corrupt(bad):
    data = SAMPLES["text_multi_block"]
    good = zstandard.ZstdCompressor().compress(data)
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    blob = {
        "": b"",
        "garbage": b"\x28\xb5\x2f\xfdgarbage-garbage",
        "truncated": good[:-9],
        "truncated_no_size": no_size[:-9],
        "trailing_junk": good + b"junk",
    }[bad]
    with pytest.raises(KafkaError) as e:
        decompress(4, blob)
    corrupt(e)


def test_random_bytes_never_crash_the_decoders():
    rnd = random.Random(7)
    for _ in range(300):
        blob = os.urandom(rnd.randrange(0, 200))
        for codec in COMPRESSED:
            try:
                decompress(codec, blob)
            except KafkaError as exc:
                assert exc.code == ErrorCode.CORRUPT_MESSAGE
