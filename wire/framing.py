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
size a peer declares: a frame up to EXACT_ALLOC_LIMIT gets its whole buffer at once (produce
requests are read without a copy while growing); beyond that the buffer doubles as bytes come, so
a client that announces 100 MiB and sends nothing costs little.
"""

import struct

SIZE = struct.Struct(">i")
READ_CHUNK = 256 * 1024            # the buffer a connection starts with
EXACT_ALLOC_LIMIT = 4 * 1024 * 1024


class FrameError(ValueError):
    """A size prefix Kafka refuses to read: the connection must be closed."""


class FrameReader:
    __slots__ = ("max_size", "_buf", "_view", "_start", "_end")

    def __init__(self, max_size: int, initial_size: int = READ_CHUNK):
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
            if len(self._buf) > 4 * READ_CHUNK:
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
        # Full from the front. With a size prefix, grow toward the frame's size; without one
        # (under 4 bytes in a full buffer cannot happen: buffers hold at least 4) just double.
        size = SIZE.unpack_from(self._buf, 0)[0] if pending >= 4 else 0
        if size < 0 or size > self.max_size:
            raise FrameError(f"declared frame size {size}")
        if size <= EXACT_ALLOC_LIMIT:
            grown = max(4 + size, len(self._buf) + 1)
        else:
            grown = min(4 + size, max(2 * len(self._buf), READ_CHUNK))
        nbuf = bytearray(max(grown, len(self._buf) + 1))
        nbuf[:pending] = self._view[:pending]
        self._buf, self._view = nbuf, memoryview(nbuf)


def frame(chunks: list) -> list:
    """A message's encoded chunks with Kafka's int32 size in front (the writing side)."""
    return [SIZE.pack(sum(len(c) for c in chunks)), *chunks]
