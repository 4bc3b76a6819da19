"""Kafka's size-prefixed framing without sockets: bytes in, frames out (wire/framing.py)."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from trioka.wire.framing import GROWTH, READ_CHUNK, SHRINK_ABOVE, FrameError, FrameReader, frame


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def drain(reader: FrameReader) -> list[bytes]:
    out = []
    while (f := reader.next_frame()) is not None:
        out.append(bytes(f))
    return out


def receive(reader: FrameReader, data: bytes) -> None:
    """What a server does: read into the reader's free space, as much as fits each time."""
    while data:
        space = reader.free_space()
        n = min(len(space), len(data))
        space[:n] = data[:n]
        reader.received(n)
        data = data[n:]


def test_a_frame_split_at_every_byte_comes_out_whole_once():
    payload = bytes(range(200))
    wire = framed(payload)
    for cut in range(len(wire) + 1):
        reader = FrameReader(1024, initial_size=64)
        receive(reader, wire[:cut])
        got = drain(reader)
        receive(reader, wire[cut:])
        got += drain(reader)
        assert got == [payload], cut
        assert reader.buffered == 0


def test_several_frames_in_one_read():
    payloads = [b"a", b"", b"bc" * 50, b"\x00" * 7]
    reader = FrameReader(1024)
    receive(reader, b"".join(framed(p) for p in payloads))
    assert drain(reader) == payloads


def test_a_partial_next_frame_stays_buffered():
    reader = FrameReader(1024)
    receive(reader, framed(b"one") + framed(b"two")[:5])
    assert drain(reader) == [b"one"]
    assert reader.buffered == 5
    receive(reader, framed(b"two")[5:])
    assert drain(reader) == [b"two"]


def test_a_size_prefix_split_across_the_end_of_a_full_buffer():
    # The buffer fills with one frame and the first 2 bytes of the next size prefix.
    first = framed(b"x" * 58)            # 62 bytes
    second = framed(b"second")
    reader = FrameReader(1024, initial_size=64)
    receive(reader, first + second[:2])
    assert drain(reader) == [b"x" * 58]
    receive(reader, second[2:])
    assert drain(reader) == [b"second"]


@pytest.mark.parametrize("size", [-1, -2**31, 1025, 2**31 - 1])
def test_negative_and_oversize_declared_sizes_are_refused(size):
    reader = FrameReader(1024)
    receive(reader, struct.pack(">i", size))
    with pytest.raises(FrameError, match=str(size)):
        reader.next_frame()


def test_the_size_limit_itself_is_allowed():
    reader = FrameReader(1024, initial_size=64)
    receive(reader, framed(b"z" * 1024))
    assert drain(reader) == [b"z" * 1024]


def test_an_empty_reader_has_no_frame():
    reader = FrameReader(1024)
    assert reader.next_frame() is None
    receive(reader, b"\x00\x00")
    assert reader.next_frame() is None


def test_memory_follows_the_bytes_that_arrive_not_the_declared_size():
    """A client announcing 100 MiB and sending little holds little memory."""
    reader = FrameReader(200 * 1024 * 1024)
    receive(reader, struct.pack(">i", 100 * 1024 * 1024) + b"\x00" * (READ_CHUNK - 4))
    reader.free_space()
    assert reader.capacity == GROWTH * READ_CHUNK
    receive(reader, b"\x00" * (reader.capacity - reader.buffered))
    reader.free_space()
    assert reader.capacity == GROWTH * GROWTH * READ_CHUNK


def test_a_buffer_never_grows_past_the_frame_it_holds():
    size = GROWTH * READ_CHUNK + 10
    reader = FrameReader(100 * 1024 * 1024)
    receive(reader, struct.pack(">i", size) + b"\x01" * (GROWTH * READ_CHUNK))
    reader.free_space()
    assert reader.capacity == 4 + size


def test_a_1_mb_produce_request_is_copied_only_a_few_times():
    size = 1_000_000
    reader = FrameReader(100 * 1024 * 1024)
    wire = struct.pack(">i", size) + b"p" * size
    capacities = set()
    pos = 0
    while pos < len(wire):
        space = reader.free_space()
        capacities.add(reader.capacity)
        n = min(len(space), len(wire) - pos)
        space[:n] = wire[pos:pos + n]
        reader.received(n)
        pos += n
    assert sorted(capacities) == [READ_CHUNK, GROWTH * READ_CHUNK,
                                  GROWTH ** 2 * READ_CHUNK, 4 + size]
    assert drain(reader) == [b"p" * size]


def test_memory_is_given_back_after_a_large_frame():
    reader = FrameReader(100 * 1024 * 1024)
    big = b"b" * (3 * SHRINK_ABOVE)
    receive(reader, framed(big))
    assert drain(reader) == [big]
    assert reader.capacity == READ_CHUNK


def test_a_frame_is_a_view_into_the_buffer_not_a_copy():
    reader = FrameReader(1024)
    receive(reader, framed(b"patch me"))
    f = reader.next_frame()
    assert isinstance(f, memoryview)
    f[0:5] = b"PATCH"
    assert bytes(f) == b"PATCH me"


def test_feed_copies_bytes_in():
    reader = FrameReader(1024, initial_size=16)
    reader.feed(framed(b"a" * 40) + framed(b"b"))
    assert drain(reader) == [b"a" * 40, b"b"]


def test_received_beyond_the_free_space_is_a_bug():
    reader = FrameReader(1024, initial_size=16)
    with pytest.raises(ValueError):
        reader.received(len(reader.free_space()) + 1)


def test_frame_puts_the_size_in_front():
    assert b"".join(frame([b"ab", b"cde"])) == b"\x00\x00\x00\x05abcde"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12), st.lists(st.integers(1, 97), min_size=1))
def test_any_chunking_of_any_frames_gives_the_frames_back(payloads, chunks):
    wire = b"".join(framed(p) for p in payloads)
    reader = FrameReader(1024, initial_size=32)
    got, pos, i = [], 0, 0
    while pos < len(wire):
        n = chunks[i % len(chunks)]
        i += 1
        receive(reader, wire[pos:pos + n])
        pos += n
        got += drain(reader)
    assert got == payloads
    assert reader.buffered == 0
