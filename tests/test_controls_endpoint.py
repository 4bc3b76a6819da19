"""The admin endpoint's error paths (controls/endpoint.py), over HTTP on in-memory streams: what a
client that sends something wrong gets back (400, 404, 405, 411, 413, with a JSON reason), and that
a request which does not arrive whole in REQUEST_TIMEOUT_S loses its connection at that moment,
however it trickles in. The routes themselves and the happy paths are in test_controls.py.

Time is trio's MockClock (`mock_clock`: it moves only when the test jumps it), so "still open" and
"closed at the deadline" are exact.
"""

import json

import pytest
import trio
import trio.testing

from trioka.controls import endpoint
from trioka.controls.rules import Controls

TIMEOUT = endpoint.REQUEST_TIMEOUT_S


class Connection:
    """One client connection to `handle_connection`, served in a task of its own."""

    def __init__(self, nursery, controls: Controls):
        self.client, server = trio.testing.memory_stream_pair()
        self.closed_at: float | None = None

        async def serve():
            await endpoint.handle_connection(controls, server)
            self.closed_at = trio.current_time()

        nursery.start_soon(serve)

    async def answer(self) -> bytes:
        """Everything the endpoint sent until it closed the connection."""
        received = b""
        while chunk := await self.client.receive_some():
            received += chunk
        return received


def parse(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Connection"] == "close" and headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split(" ")[1]), json.loads(body)


async def http(controls: Controls, raw: bytes) -> tuple[int, dict]:
    """Send `raw` as one client; the status and JSON body of the answer."""
    async with trio.open_nursery() as nursery:
        connection = Connection(nursery, controls)
        await connection.client.send_all(raw)
        answer = await connection.answer()
    return parse(answer)


def post(body: bytes, path: str = "/controls", extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
            + extra + b"\r\n" + body)


# --- what a malformed request is answered with ---

@pytest.mark.parametrize("raw, status, reason", [
    (b"GET /controls\r\n\r\n", 400, "malformed request line"),
    (b"GET /controls HTTP/1.1 extra\r\n\r\n", 400, "malformed request line"),
    (b"\r\n\r\n", 400, "malformed request line"),
    (b"GET /controls HTTP/1.1\r\nHost x\r\n\r\n", 400, "malformed header line"),
    (b"POST /controls HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400, "bad Content-Length"),
    (b"POST /controls HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 413, "at most"),
    (b"POST /controls HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (endpoint.MAX_BODY_BYTES + 1),
     413, "at most"),
    (b"POST /controls HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n0\r\n\r\n", 411,
     "Content-Length"),
])
async def test_malformed_requests_are_answered_with_the_reason(raw, status, reason):
    c = Controls()
    got, body = await http(c, raw)
    assert (got, reason in body["error"]) == (status, True), body
    assert c.list() == []


async def test_a_head_without_an_end_is_refused_once_it_is_too_large():
    c = Controls()
    raw = b"GET /controls HTTP/1.1\r\n" + b"X-Padding: " + b"p" * endpoint.MAX_HEAD_BYTES
    assert await http(c, raw) == (413, {"error": "request head too large"})


async def test_a_body_at_the_size_limit_is_read():
    c = Controls()
    rule = json.dumps({"action": "error", "api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER"})
    body = rule.encode().ljust(endpoint.MAX_BODY_BYTES)       # JSON allows trailing spaces
    status, created = await http(c, post(body))
    assert status == 201 and created["api"] == "Produce" and len(c.list()) == 1


async def test_a_post_without_content_length_has_an_empty_body():
    # HTTP/1.1: no Content-Length and no Transfer-Encoding is a body of 0 bytes, so the bytes
    # after the head are not read as the rule.
    c = Controls()
    status, body = await http(c, b"POST /controls HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b'{"action": "disconnect"}')
    assert status == 400 and "JSON object" in body["error"]
    assert c.list() == []


async def test_only_content_length_bytes_are_the_body():
    c = Controls()
    rule = b'{"action": "drop_response", "api": "Fetch"}'
    status, created = await http(c, post(rule) + b"GARBAGE")
    assert status == 201 and created["action"] == "drop_response"


@pytest.mark.parametrize("body, reason", [
    (b"{", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b'"error"', "JSON object"),
    (b'{"action": "explode"}', "explode"),
    (b'{"action": "error", "api": "NoSuchApi", "error": "NOT_LEADER_OR_FOLLOWER"}', "NoSuchApi"),
    (b'{"action": "error", "api": "Produce", "error": "NO_SUCH_ERROR"}', "NO_SUCH_ERROR"),
    (b'{"action": "delay", "delay_ms": -5}', "delay_ms"),
])
async def test_bad_json_and_invalid_rules_are_400_and_change_nothing(body, reason):
    c = Controls()
    c.add("delay", api="Fetch", delay_ms=1)
    before = c.list()
    status, answer = await http(c, post(body))
    assert status == 400 and reason in answer["error"], answer
    assert c.list() == before


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 404),
    (b"GET /control HTTP/1.1\r\n\r\n", 404),
    (b"GET /controls/1/2 HTTP/1.1\r\n\r\n", 404),
    (b"GET /controls/first HTTP/1.1\r\n\r\n", 404),
    (b"GET /controls/77 HTTP/1.1\r\n\r\n", 404),
    (b"DELETE /controls/77 HTTP/1.1\r\n\r\n", 404),
    (b"PUT /controls HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 405),
    (b"PATCH /controls/1 HTTP/1.1\r\n\r\n", 405),
    (b"GET /controls/down HTTP/1.1\r\n\r\n", 405),
    (b"DELETE /controls/up HTTP/1.1\r\n\r\n", 405),
    (b"GET /retention HTTP/1.1\r\n\r\n", 405),
    (b"DELETE /compaction HTTP/1.1\r\n\r\n", 405),
])
async def test_unknown_resources_are_404_and_wrong_methods_405(raw, status):
    c = Controls()
    c.add("delay", api="Fetch", delay_ms=1)
    got, body = await http(c, raw)
    assert got == status and body["error"]
    assert len(c.list()) == 1 and not c.is_down


# --- requests that do not arrive whole in time ---

async def test_a_body_that_stops_coming_is_dropped_at_the_deadline(mock_clock):
    c = Controls()
    async with trio.open_nursery() as nursery:
        connection = Connection(nursery, c)
        await connection.client.send_all(b"POST /controls HTTP/1.1\r\nContent-Length: 30\r\n\r\n"
                                         b'{"action": ')
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(TIMEOUT - 0.001)
        await trio.testing.wait_all_tasks_blocked()
        assert connection.closed_at is None
        mock_clock.jump(0.001)
        await trio.testing.wait_all_tasks_blocked()
        assert connection.closed_at == TIMEOUT
        assert await connection.answer() == b""        # closed without an answer
    assert c.list() == []


async def test_a_trickle_does_not_extend_the_deadline(mock_clock):
    # One byte a second: the connection is never idle, but the whole request is late.
    c = Controls()
    raw = post(b'{"action": "disconnect", "api": "Produce"}')
    async with trio.open_nursery() as nursery:
        connection = Connection(nursery, c)
        for i, byte in enumerate(raw):
            if connection.closed_at is not None:
                break
            await connection.client.send_all(bytes([byte]))
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(1.0)
            await trio.testing.wait_all_tasks_blocked()
        assert connection.closed_at == TIMEOUT and i == TIMEOUT
        assert await connection.answer() == b""
    assert c.list() == []


async def test_a_head_that_never_ends_is_dropped_at_the_deadline(mock_clock):
    c = Controls()
    async with trio.open_nursery() as nursery:
        connection = Connection(nursery, c)
        await connection.client.send_all(b"GET /controls HTTP/1.1\r\nHost: x\r\n")
        mock_clock.jump(TIMEOUT)
        await trio.testing.wait_all_tasks_blocked()
        assert connection.closed_at == TIMEOUT
        assert await connection.answer() == b""


async def test_a_request_in_pieces_within_the_deadline_is_served(mock_clock):
    c = Controls()
    raw = post(b'{"action": "error", "api": "Metadata", "error": "BROKER_NOT_AVAILABLE"}')
    async with trio.open_nursery() as nursery:
        connection = Connection(nursery, c)
        for piece in (raw[:10], raw[10:60], raw[60:-5], raw[-5:]):
            await connection.client.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(TIMEOUT / 5)
        answer = await connection.answer()
    status, created = parse(answer)
    assert status == 201 and created["error"] == "BROKER_NOT_AVAILABLE"
    assert [r["api"] for r in c.list()] == ["Metadata"]


async def test_a_client_that_hangs_up_mid_body_gets_nothing_and_changes_nothing(mock_clock):
    c = Controls()
    async with trio.open_nursery() as nursery:
        connection = Connection(nursery, c)
        await connection.client.send_all(b"POST /controls HTTP/1.1\r\nContent-Length: 40\r\n\r\n"
                                         b'{"action": "disconnect"')
        await connection.client.send_eof()
        await trio.testing.wait_all_tasks_blocked()
        assert connection.closed_at == 0               # at once, not at the deadline
        assert await connection.answer() == b""
    assert c.list() == []
