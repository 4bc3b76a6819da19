"""The compression codecs of record batches: turn a batch's records section into bytes and back.

In a v2 record batch the low three bits of `attributes` name the codec (0 none, 1 gzip, 2 snappy,
3 lz4, 4 zstd; 5-7 are invalid). With a codec, everything after the 61-byte header is one
compressed stream whose content is the records laid end to end; the header itself, `batchLength`
and the CRC all see the compressed bytes. The broker normally never looks inside: batches are
stored and fetched as they came. These functions serve the places that must look (a topic whose
`compression.type` differs from the producer's, compaction, tools and tests).

What each codec means on the wire, and what the clients in the field actually write:

* gzip: an ordinary gzip stream (RFC 1952). Java reads it with `GZIPInputStream`, which follows
  concatenated members and stops quietly at trailing bytes that are not another member.
* snappy: the Java client writes snappy-java's *xerial block framing*: a 16-byte header
  (`0x82 "SNAPPY" 0x00`, then int32 version 1 and int32 minimum compatible version 1) followed by
  blocks of [int32 compressed length][raw snappy block], each block holding up to 32 KiB of input.
  librdkafka writes one bare raw snappy block instead. Readers check for the 8-byte magic and
  accept both; Kafka's output (and ours) is the xerial form, which every client reads. This is
  not Snappy's official "framing format" (the `sNaPpY` stream chunks), which Kafka never uses.
* lz4: the standard LZ4 frame format. Java's reader refuses frames whose blocks depend on earlier
  blocks, so writers use independent blocks; Java and librdkafka use 64 KiB blocks, no content
  size and no checksums. (Magic 0 message sets had a broken frame header checksum; that quirk
  does not exist for magic 1 and 2, and this module only serves magic 2.)
* zstd: standard zstd frames. Streaming writers (Java's `ZstdOutputStream`, librdkafka) do not
  record the content size in the frame header, so the reader must be able to stream.

Corrupt compressed data, and codec ids 5-7, are CORRUPT_MESSAGE: the batch cannot be read.

Bounded output: decompression is a stream
-----------------------------------------
A compressed records section is untrusted: 1 MiB of zstd can claim tens of GiB of output (a
"decompression bomb"), and a stored one would be met again by every later reader (ListOffsets,
the log cleaner at every start). Kafka never inflates a batch whole: it reads records one at a
time from a decompressing stream, so its memory is one record, whatever the batch claims. The
same here: `decompress_stream` yields the output in pieces of at most `CHUNK_SIZE` bytes and
decompresses only as far as its reader pulls, and the record walker (`records.iter_records`)
pulls one record at a time, so nothing after the record it needs is ever decompressed. Per codec:

* gzip: `zlib.decompressobj` with `max_length`; concatenated members in turn.
* zstd: a `decompressobj` fed the input a few hundred bytes at a time: a zstd block
  regenerates at most 128 KiB, so each feed yields a bounded amount however the frame lies
  (zstandard's stream reader would bound the output too, but cannot tell a truncated frame).
* lz4: `LZ4FrameDecompressor` with `max_length`; concatenated frames in turn.
* snappy: xerial framing is chunked (each block is one raw snappy block); a raw block declares
  its length up front, which is checked before the block is inflated: against snappy's largest
  possible ratio and against the ceiling below.

On top of the streaming there is a hard ceiling, `MAX_DECOMPRESSED_BYTES` (128 MiB) for the
records of one batch. Kafka has none, but the clients in the field do: librdkafka (and with it
confluent-kafka, kcat and the Go and .NET clients) refuses to decompress a batch to more than
`receive.message.max.bytes`, 100,000,000 bytes by default, so no consumer of those could read a
larger one anyway; 128 MiB stays above that. `decompress` (the whole section at once, for
decode_batch) raises CORRUPT_MESSAGE past it; the record walker turns it into INVALID_RECORD on
produce (see records.py), and the log cleaner marks such a partition uncleanable.
`MAX_COMPRESSION_RATIO` holds each codec's largest possible output per input byte, which lets
a batch header's record count be checked in constant time (log/batch.py).
"""

import enum
import functools
import struct
import zlib
from collections.abc import Iterator

from trioka.wire.errors import ErrorCode, KafkaError


# The codec libraries load on first use: the broker never decompresses on produce or fetch, and
# importing them all would lengthen its startup.

@functools.cache
def _snappy():
    import snappy
    return snappy


@functools.cache
def _lz4():
    import lz4.frame
    return lz4.frame


@functools.cache
def _zstd():
    import zstandard
    return zstandard


class CompressionType(enum.IntEnum):
    """Codec ids as they appear in `attributes & 0x07` (Kafka's `CompressionType`)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @property
    def name_in_config(self) -> str:
        """The value of the `compression.type` topic / producer config naming this codec."""
        return self.name.lower()



# Pieces of output handed to a reader at a time.
CHUNK_SIZE = 64 * 1024
# The most bytes the records of one batch may decompress to (see the module docstring).
MAX_DECOMPRESSED_BYTES = 128 * 1024 * 1024
# The largest output per input byte each codec's format can express; a sound bound, so a batch
# within it may still be a lie, but one beyond it cannot be true. deflate: a 258-byte match in
# 2 bits; snappy: a 64-byte copy in a 3-byte element; lz4: 255 more match bytes per length byte;
# zstd: an RLE block regenerates 128 KiB from 4 bytes.
MAX_COMPRESSION_RATIO = {1: 1032, 2: 22, 3: 256, 4: 32768}


def _corrupt(codec: int, exc: BaseException | str) -> KafkaError:
    name = CompressionType(codec).name.lower()
    return KafkaError(ErrorCode.CORRUPT_MESSAGE, f"invalid {name} compressed records: {exc}")


# ---------------------------------------------------------------------------------------------
# gzip
# ---------------------------------------------------------------------------------------------

# zlib's wbits for "gzip header and trailer, 32 KiB window".
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"


def _gzip_compress(data, level: int | None) -> bytes:
    # Java's GZIPOutputStream uses Deflater's default level unless the producer sets
    # `compression.gzip.level` (KIP-390); zlib's -1 is that same default (6).
    return zlib.compress(data, -1 if level is None else level, wbits=_GZIP_WBITS)


def _gzip_stream(data, chunk_size: int) -> Iterator[bytes]:
    rest = data
    while True:
        d = zlib.decompressobj(_GZIP_WBITS)
        pending = rest
        try:
            while not d.eof:
                out = d.decompress(pending, chunk_size)
                if out:
                    yield out
                elif not pending and not d.eof:
                    raise _corrupt(CompressionType.GZIP, "truncated gzip stream")
                pending = d.unconsumed_tail
        except zlib.error as exc:
            raise _corrupt(CompressionType.GZIP, exc) from None
        rest = d.unused_data
        # Like Java's GZIPInputStream: another member may follow; anything else ends the stream.
        if not rest.startswith(_GZIP_MAGIC):
            return


# ---------------------------------------------------------------------------------------------
# snappy
# ---------------------------------------------------------------------------------------------

# snappy-java's stream header: magic, then int32 version and int32 min compatible version.
XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
# snappy-java's default block size: each block compresses at most this much input.
XERIAL_BLOCK_SIZE = 32 * 1024
_INT32 = struct.Struct(">i")


def _snappy_compress(data) -> bytes:
    view = memoryview(data).cast("B")
    out = [XERIAL_HEADER]
    pack = _INT32.pack
    for start in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = _snappy().compress(view[start:start + XERIAL_BLOCK_SIZE])
        out.append(pack(len(block)))
        out.append(block)
    return b"".join(out)


def _snappy_block(block, chunk_size: int) -> Iterator[bytes]:
    """One raw snappy block, after checking the length its preamble declares: snappy allocates
    that much up front, and no block can inflate more than MAX_COMPRESSION_RATIO times."""
    declared, shift, pos = 0, 0, 0
    while True:
        if pos >= len(block) or pos == 5:
            raise _corrupt(CompressionType.SNAPPY, "bad raw snappy length preamble")
        b = block[pos]
        declared |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if b < 0x80:
            break
    if declared > min(len(block) * MAX_COMPRESSION_RATIO[CompressionType.SNAPPY],
                      MAX_DECOMPRESSED_BYTES):
        raise _corrupt(CompressionType.SNAPPY, f"a raw snappy block of {len(block)} bytes "
                                               f"declares {declared} bytes of output")
    try:
        out = _snappy().uncompress(block)
    except _snappy().UncompressError as exc:
        raise _corrupt(CompressionType.SNAPPY, exc.__cause__ or exc) from None
    if len(out) <= chunk_size:
        if out:
            yield out
        return
    view = memoryview(out)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start:start + chunk_size])


def _snappy_stream(data, chunk_size: int) -> Iterator[bytes]:
    view = memoryview(data).cast("B")
    if view[:8] != XERIAL_MAGIC:
        # librdkafka and other non-Java writers: a single raw snappy block.
        yield from _snappy_block(view, chunk_size)
        return
    # Bytes 8..16 are version / min compatible version; every version so far (1) is read the
    # same way, so like the clients we do not insist on particular values.
    if len(view) < len(XERIAL_HEADER):
        raise _corrupt(CompressionType.SNAPPY, "truncated xerial header")
    pos = len(XERIAL_HEADER)
    end = len(view)
    while pos < end:
        if end - pos < 4:
            raise _corrupt(CompressionType.SNAPPY, "truncated xerial block length")
        (size,) = _INT32.unpack_from(view, pos)
        pos += 4
        if size < 0 or pos + size > end:
            raise _corrupt(CompressionType.SNAPPY, f"xerial block of {size} bytes overruns")
        yield from _snappy_block(view[pos:pos + size], chunk_size)
        pos += size


# ---------------------------------------------------------------------------------------------
# lz4
# ---------------------------------------------------------------------------------------------

def _lz4_compress(data, level: int | None) -> bytes:
    # Independent 64 KiB blocks, no content size, no checksums: what Java's
    # KafkaLZ4BlockOutputStream and librdkafka write, and what Java's reader requires.
    return _lz4().compress(
        data,
        compression_level=0 if level is None else level,
        block_size=_lz4().BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )


def _lz4_stream(data, chunk_size: int) -> Iterator[bytes]:
    rest = bytes(data)
    if not rest:
        raise _corrupt(CompressionType.LZ4, "empty lz4 stream")
    try:
        # One frame is what every writer produces; concatenated frames are read as one stream.
        while rest:
            d = _lz4().LZ4FrameDecompressor()
            pending = rest
            while not d.eof:
                out = d.decompress(pending, max_length=chunk_size)
                pending = b""
                if out:
                    yield out
                elif d.needs_input and not d.eof:
                    raise _corrupt(CompressionType.LZ4, "truncated lz4 frame")
            rest = d.unused_data
    except RuntimeError as exc:
        raise _corrupt(CompressionType.LZ4, exc) from None


# ---------------------------------------------------------------------------------------------
# zstd
# ---------------------------------------------------------------------------------------------

# Input fed to the zstd decoder per call: a block takes at least 4 bytes and regenerates at most
# 128 KiB, so one call yields at most 8 MiB, however the frame lies.
_ZSTD_FEED = 256
_ZSTD_COMPRESSORS: dict = {}


def _zstd_compress(data, level: int | None) -> bytes:
    # Kafka's default zstd level is zstd's own default, 3 (KIP-390 makes it configurable).
    level = 3 if level is None else level
    compressor = _ZSTD_COMPRESSORS.get(level)
    if compressor is None:
        compressor = _ZSTD_COMPRESSORS[level] = _zstd().ZstdCompressor(level=level)
    return compressor.compress(data)


def _zstd_stream(data, chunk_size: int) -> Iterator[bytes]:
    view = memoryview(data).cast("B")
    pos, end = 0, len(view)
    if not end:
        raise _corrupt(CompressionType.ZSTD, "empty zstd stream")
    try:
        while pos < end:
            d = _zstd().ZstdDecompressor().decompressobj()
            while not d.eof:
                if pos >= end:
                    raise _corrupt(CompressionType.ZSTD, "truncated zstd frame")
                out = d.decompress(view[pos:pos + _ZSTD_FEED])
                pos += _ZSTD_FEED
                for start in range(0, len(out), chunk_size):
                    yield out[start:start + chunk_size] if len(out) > chunk_size else out
            # Whatever came after the end of the frame starts the next one.
            pos = min(pos, end) - len(d.unused_data)
    except _zstd().ZstdError as exc:
        raise _corrupt(CompressionType.ZSTD, exc) from None


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def _unknown(codec: int) -> KafkaError:
    return KafkaError(ErrorCode.CORRUPT_MESSAGE, f"unknown compression codec id {codec}")


def compress(codec: int, data, level: int | None = None) -> bytes:
    """Compress a records section with Kafka codec `codec` (0-4) the way Kafka clients write it.

    `data` is any bytes-like object. `level` is the codec's own level (gzip 1-9, lz4 0-16,
    zstd -131072..22; ignored for snappy); None means the library default. Codec 0 returns the
    data unchanged (as bytes).
    """
    if codec == 0:
        return bytes(data)
    if codec == 1:
        return _gzip_compress(data, level)
    if codec == 2:
        return _snappy_compress(data)
    if codec == 3:
        return _lz4_compress(data, level)
    if codec == 4:
        return _zstd_compress(data, level)
    raise _unknown(codec)


_STREAMS = {1: _gzip_stream, 2: _snappy_stream, 3: _lz4_stream, 4: _zstd_stream}


def decompress_stream(codec: int, data, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The decompressed content of a records section written with codec `codec` (0-4), lazily,
    in pieces of at most `chunk_size` bytes (snappy: of at most one block's output); a reader
    that stops pulling stops the decompression. Corrupt or truncated data and unknown codec ids
    raise KafkaError(CORRUPT_MESSAGE) when the reader gets to them."""
    if codec == 0:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start:start + chunk_size])
        return
    stream = _STREAMS.get(codec)
    if stream is None:
        raise _unknown(codec)
    yield from stream(data, chunk_size)


def decompress(codec: int, data, max_size: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Decompress a records section written with Kafka codec `codec` (0-4), whole.

    Accepts every form the clients in the field write (see the module docstring). Corrupt or
    truncated data, unknown codec ids and output beyond `max_size` bytes (decompression stops
    there) raise KafkaError(CORRUPT_MESSAGE).
    """
    if codec == 0:
        return bytes(data)
    if codec not in _STREAMS:
        raise _unknown(codec)
    parts = []
    total = 0
    for piece in _STREAMS[codec](data, CHUNK_SIZE):
        total += len(piece)
        if total > max_size:
            raise _corrupt(codec, f"decompresses to more than {max_size} bytes")
        parts.append(piece)
    return parts[0] if len(parts) == 1 else b"".join(parts)
