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
"""

import enum
import functools
import struct
import zlib

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


def _gzip_decompress(data) -> bytes:
    parts = []
    rest = data
    while True:
        d = zlib.decompressobj(_GZIP_WBITS)
        try:
            parts.append(d.decompress(rest))
        except zlib.error as exc:
            raise _corrupt(CompressionType.GZIP, exc) from None
        if not d.eof:
            raise _corrupt(CompressionType.GZIP, "truncated gzip stream")
        rest = d.unused_data
        # Like Java's GZIPInputStream: another member may follow; anything else ends the stream.
        if not rest.startswith(_GZIP_MAGIC):
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


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


def _snappy_decompress(data) -> bytes:
    view = memoryview(data).cast("B")
    try:
        if view[:8] != XERIAL_MAGIC:
            # librdkafka and other non-Java writers: a single raw snappy block.
            return _snappy().uncompress(view)
        # Bytes 8..16 are version / min compatible version; every version so far (1) is read the
        # same way, so like the clients we do not insist on particular values.
        if len(view) < len(XERIAL_HEADER):
            raise _corrupt(CompressionType.SNAPPY, "truncated xerial header")
        parts = []
        pos = len(XERIAL_HEADER)
        end = len(view)
        while pos < end:
            if end - pos < 4:
                raise _corrupt(CompressionType.SNAPPY, "truncated xerial block length")
            (size,) = _INT32.unpack_from(view, pos)
            pos += 4
            if size < 0 or pos + size > end:
                raise _corrupt(CompressionType.SNAPPY, f"xerial block of {size} bytes overruns")
            parts.append(_snappy().uncompress(view[pos:pos + size]))
            pos += size
    except _snappy().UncompressError as exc:
        raise _corrupt(CompressionType.SNAPPY, exc.__cause__ or exc) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


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


def _lz4_decompress(data) -> bytes:
    view = memoryview(data).cast("B")
    parts = []
    pos = 0
    try:
        # One frame is what every writer produces; concatenated frames are read as one stream.
        while True:
            out, used = _lz4().decompress(view[pos:], return_bytes_read=True)
            parts.append(out)
            pos += used
            if pos >= len(view) or used == 0:
                break
    except RuntimeError as exc:
        raise _corrupt(CompressionType.LZ4, exc) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


# ---------------------------------------------------------------------------------------------
# zstd
# ---------------------------------------------------------------------------------------------

# Above this claimed size we do not let the one-shot decoder allocate the whole output up front
# from a number in an untrusted frame header; the streaming path grows as data really arrives.
_ZSTD_ONE_SHOT_LIMIT = 16 * 1024 * 1024
_ZSTD_COMPRESSORS: dict = {}


def _zstd_compress(data, level: int | None) -> bytes:
    # Kafka's default zstd level is zstd's own default, 3 (KIP-390 makes it configurable).
    level = 3 if level is None else level
    compressor = _ZSTD_COMPRESSORS.get(level)
    if compressor is None:
        compressor = _ZSTD_COMPRESSORS[level] = _zstd().ZstdCompressor(level=level)
    return compressor.compress(data)


def _zstd_decompress(data) -> bytes:
    try:
        size = _zstd().frame_content_size(data)
    except _zstd().ZstdError:
        size = -1  # e.g. a skippable frame first: let the streaming path judge
    if 0 <= size <= _ZSTD_ONE_SHOT_LIMIT:
        try:
            return _zstd().ZstdDecompressor().decompress(data, allow_extra_data=False)
        except _zstd().ZstdError:
            pass  # more than one frame, or corrupt: the streaming path sorts out which
    parts = []
    rest = data
    try:
        while True:
            d = _zstd().ZstdDecompressor().decompressobj()
            parts.append(d.decompress(rest))
            if not d.eof:
                raise _corrupt(CompressionType.ZSTD, "truncated zstd frame")
            rest = d.unused_data
            if not rest:
                break
    except _zstd().ZstdError as exc:
        raise _corrupt(CompressionType.ZSTD, exc) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


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


def decompress(codec: int, data) -> bytes:
    """Decompress a records section written with Kafka codec `codec` (0-4).

    Accepts every form the clients in the field write (see the module docstring). Corrupt or
    truncated data and unknown codec ids raise KafkaError(CORRUPT_MESSAGE).
    """
    if codec == 0:
        return bytes(data)
    if codec == 1:
        return _gzip_decompress(data)
    if codec == 2:
        return _snappy_decompress(data)
    if codec == 3:
        return _lz4_decompress(data)
    if codec == 4:
        return _zstd_decompress(data)
    raise _unknown(codec)
