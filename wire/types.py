"""Kafka's primitive wire types: readers and writers the compiled codecs call.

Readers take a memoryview and a position and return (value, new position); they raise
`DecodeError` on a length that runs past the frame or a null where none is allowed, which makes the
server close that connection (Kafka's answer to a frame it cannot parse). Writers append bytes to a
list that the caller joins once.

Classic (non-flexible) versions prefix strings with an int16 length and bytes and arrays with an
int32 count, -1 meaning null. Flexible versions (KIP-482) use an unsigned varint of length + 1, 0
meaning null, and end every struct with a section of tagged fields.
"""

import struct
import uuid

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
# The longest string a non-flexible (int16-length) field carries, in UTF-8 bytes.
MAX_STRING_BYTES = (1 << 15) - 1
UINT16 = struct.Struct(">H")
INT32 = struct.Struct(">i")
UINT32 = struct.Struct(">I")
INT64 = struct.Struct(">q")
FLOAT64 = struct.Struct(">d")

# struct format characters of the fixed-width types, so runs of them read with one Struct.
FIXED = {"bool": "?", "int8": "b", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
         "int64": "q", "float64": "d"}

ZERO_UUID = uuid.UUID(int=0)


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the message: the connection is closed."""


# --- unsigned varints (compact lengths, tagged-field tags and sizes) ---

def read_uvarint(buf, pos):
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos + 1
        shift += 7
        if shift > 28:
            raise DecodeError("unsigned varint longer than 5 bytes")


def uvarint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes([i]) for i in range(0x80)]


# --- readers ---

def _null(n: int, what: str) -> None:
    """A negative length is null only as -1; anything below is a corrupt frame."""
    if n != -1:
        raise DecodeError(f"{what} length {n}: only -1 (null) may be negative")
    return None


def _take(buf, pos, n):
    end = pos + n
    if n < 0 or end > len(buf):
        raise DecodeError(f"length {n} at {pos} runs past the end of a {len(buf)}-byte frame")
    return end


def fits_string(s: str) -> bool:
    """Whether `s` fits a non-flexible string field (and so every record key that holds it)."""
    return len(s) <= MAX_STRING_BYTES // 4 or len(s.encode("utf-8")) <= MAX_STRING_BYTES


def read_string(buf, pos):
    (n,) = INT16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        raise DecodeError("null string where the field is not nullable")
    end = _take(buf, pos, n)
    return str(buf[pos:end], "utf-8"), end


def read_nullable_string(buf, pos):
    (n,) = INT16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        return _null(n, "string"), pos
    end = _take(buf, pos, n)
    return str(buf[pos:end], "utf-8"), end


def read_compact_string(buf, pos):
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("null string where the field is not nullable")
    end = _take(buf, pos, n - 1)
    return str(buf[pos:end], "utf-8"), end


def read_compact_nullable_string(buf, pos):
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _take(buf, pos, n - 1)
    return str(buf[pos:end], "utf-8"), end


def read_bytes(buf, pos):
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        raise DecodeError("null bytes where the field is not nullable")
    end = _take(buf, pos, n)
    return bytes(buf[pos:end]), end


def read_nullable_bytes(buf, pos):
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return _null(n, "bytes"), pos
    end = _take(buf, pos, n)
    return bytes(buf[pos:end]), end


def read_compact_bytes(buf, pos):
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("null bytes where the field is not nullable")
    end = _take(buf, pos, n - 1)
    return bytes(buf[pos:end]), end


def read_compact_nullable_bytes(buf, pos):
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _take(buf, pos, n - 1)
    return bytes(buf[pos:end]), end


def read_records(buf, pos):
    """Record batches stay bytes: a zero-copy slice of the request frame."""
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return _null(n, "records"), pos
    end = _take(buf, pos, n)
    return buf[pos:end], end


def read_compact_records(buf, pos):
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = _take(buf, pos, n - 1)
    return buf[pos:end], end


def read_uuid(buf, pos):
    end = _take(buf, pos, 16)
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def read_count(buf, pos):
    """A classic array count: int32, -1 for null. Bounded by the bytes left in the frame."""
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < -1:
        raise DecodeError(f"array count {n}: only -1 (null) may be negative")
    if n > len(buf) - pos:
        raise DecodeError(f"array of {n} elements in {len(buf) - pos} bytes")
    return n, pos


def read_compact_count(buf, pos):
    n, pos = read_uvarint(buf, pos)
    n -= 1
    if n > len(buf) - pos:
        raise DecodeError(f"array of {n} elements in {len(buf) - pos} bytes")
    return n, pos


def skip_tagged_fields(buf, pos):
    n, pos = read_uvarint(buf, pos)
    for _ in range(n):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos = _take(buf, pos, size)
    return pos


# --- writers ---

_NULL16 = INT16.pack(-1)
_NULL32 = INT32.pack(-1)
_ZERO = b"\x00"


def write_string(out, s):
    if s is None:
        out.append(b"\x00\x00")
        return
    b = s.encode("utf-8")
    out.append(INT16.pack(len(b)))
    out.append(b)


def write_nullable_string(out, s):
    if s is None:
        out.append(_NULL16)
        return
    b = s.encode("utf-8")
    out.append(INT16.pack(len(b)))
    out.append(b)


def write_compact_string(out, s):
    if s is None:
        out.append(b"\x01")
        return
    b = s.encode("utf-8")
    out.append(uvarint(len(b) + 1))
    out.append(b)


def write_compact_nullable_string(out, s):
    if s is None:
        out.append(_ZERO)
        return
    b = s.encode("utf-8")
    out.append(uvarint(len(b) + 1))
    out.append(b)


def write_bytes(out, b):
    if b is None:
        b = b""
    out.append(INT32.pack(len(b)))
    out.append(b)


def write_nullable_bytes(out, b):
    if b is None:
        out.append(_NULL32)
        return
    out.append(INT32.pack(len(b)))
    out.append(b)


def write_compact_bytes(out, b):
    if b is None:
        b = b""
    out.append(uvarint(len(b) + 1))
    out.append(b)


def write_compact_nullable_bytes(out, b):
    if b is None:
        out.append(_ZERO)
        return
    out.append(uvarint(len(b) + 1))
    out.append(b)


def write_records(out, r):
    """`r` is bytes, a memoryview, or a list of chunks (several stored batches read for a Fetch)."""
    if r is None:
        out.append(_NULL32)
    elif type(r) is list:
        out.append(INT32.pack(sum(len(c) for c in r)))
        out.extend(r)
    else:
        out.append(INT32.pack(len(r)))
        out.append(r)


def write_compact_records(out, r):
    if r is None:
        out.append(_ZERO)
    elif type(r) is list:
        out.append(uvarint(sum(len(c) for c in r) + 1))
        out.extend(r)
    else:
        out.append(uvarint(len(r) + 1))
        out.append(r)


def write_uuid(out, u):
    out.append(u.bytes if u is not None else ZERO_UUID.bytes)
