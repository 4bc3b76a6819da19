"""Kafka's framing, sans I/O: an int32 size, then that many bytes of request or response.

`FrameReader` turns received bytes into frames and knows nothing of sockets (h11's rule: bytes
in, events out), so every framing case is testable without a connection. It owns the receive
buffer, so a server can read straight into it (`recv_into(reader.free_space())`, then
`reader.received(n)`) and a frame comes back as a memoryview into that buffer, not a copy: produced
batches are validated, patched and written to the log from the very bytes the kernel delivered.

A frame returned by `next_frame()` stays valid until the next call to `free_space()` or `feed()`;
the caller handles it first (Kafka serves one request per connection at a time anyway).

Kafka closes the connection on a size it will not read: negative, or above
`socket.request.max.bytes` (`FrameError`). Memory follows the bytes that actually arrive, not the
size a peer declares: a connection starts with READ_CHUNK bytes, and a frame that does not fit
grows the buffer fourfold at a time toward its declared size, so a client that announces 100 MiB
(or 4 MiB on each of thousands of connections) and sends nothing costs little, while a 1 MB
produce request is copied only three times on the way (16 -> 64 -> 256 KiB -> its size).
"""

import struct

SIZE = struct.Struct(">i")
READ_CHUNK = 16 * 1024             # the buffer a connection starts with
GROWTH = 4                         # how much a buffer grows at a time
SHRINK_ABOVE = 1024 * 1024         # a buffer larger than this is given back when idle


class FrameError(ValueError):
    """A size prefix Kafka refuses to read: the connection must be closed."""


class FrameReader:
    __slots__ = ("max_size", "_buf", "_view", "_start", "_end")

    def __init__(self, max_size: int, initial_size: int = READ_CHUNK):
        if initial_size < 4:
            raise ValueError("a frame reader needs room for a size prefix")
        self.max_size = max_size
        self._buf = bytearray(initial_size)
        self._view = memoryview(self._buf)
        self._start = 0     # first byte not yet returned as (part of) a frame
        self._end = 0       # one past the last byte received

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame."""
        return self._end - self._start

    @property
    def capacity(self) -> int:
        """The size of the receive buffer now (memory a connection holds)."""
        return len(self._buf)

    def next_frame(self) -> memoryview | None:
        """The next whole frame (without its size prefix), or None until more bytes arrive.
        FrameError for a size Kafka does not read."""
        if self._end - self._start < 4:
            return None
        (size,) = SIZE.unpack_from(self._buf, self._start)
        if size < 0 or size > self.max_size:
            raise FrameError(f"declared frame size {size}")
        if self._end - self._start < 4 + size:
            return None
        frame = self._view[self._start + 4:self._start + 4 + size]
        self._start += 4 + size
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buf) > SHRINK_ABOVE:
                # Idle again after a large frame: give the memory back (the frame keeps the old
                # buffer alive for as long as the caller holds it).
                self._buf = bytearray(READ_CHUNK)
                self._view = memoryview(self._buf)
        return frame

    def free_space(self) -> memoryview:
        """Where the next received bytes go (never empty). Invalidates frames returned
        before: the space may be where they were."""
        if self._end == len(self._buf):
            self._make_room()
        return self._view[self._end:]

    def received(self, n: int) -> None:
        """`n` bytes were written at the start of `free_space()`."""
        if n < 0 or self._end + n > len(self._buf):
            raise ValueError(f"received {n} bytes into {len(self._buf) - self._end} of space")
        self._end += n

    def feed(self, data) -> None:
        """Copy `data` in (for transports that hand over bytes rather than filling a buffer)."""
        data = memoryview(data)
        while data:
            space = self.free_space()
            n = min(len(space), len(data))
            space[:n] = data[:n]
            self.received(n)
            data = data[n:]

    def _make_room(self) -> None:
        """The buffer is full up to its end: move the pending bytes to the front, and grow when
        that is not enough for the frame they begin."""
        pending = self._end - self._start
        if self._start:
            self._buf[:pending] = self._view[self._start:self._end]
            self._start, self._end = 0, pending
            if self._end < len(self._buf):
                return
        # Full from the front with one unfinished frame (buffers hold at least 4 bytes, so its
        # size is known): grow toward the frame's size, never past it.
        (size,) = SIZE.unpack_from(self._buf, 0)
        if size < 0 or size > self.max_size:
            raise FrameError(f"declared frame size {size}")
        grown = max(min(4 + size, GROWTH * len(self._buf)), len(self._buf) + 1)
        nbuf = bytearray(grown)
        nbuf[:pending] = self._view[:pending]
        self._buf, self._view = nbuf, memoryview(nbuf)


def frame(chunks: list) -> list:
    """A message's encoded chunks with Kafka's int32 size in front (the writing side)."""
    return [SIZE.pack(sum(len(c) for c in chunks)), *chunks]
