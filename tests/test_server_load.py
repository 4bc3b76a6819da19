"""Load from many connections, over real sockets to an in-process broker: thousands of idle
connections, a client that never reads, and partial frames held open (slowloris) must not keep
the broker from answering everyone else promptly."""

import resource
import socket
import struct

import trio

from trioka.testing.embedded import open_broker
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

IDLE_CONNECTIONS = 5000
DEADLINE_S = 60


def raise_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= needed, f"this machine allows {hard} open files; the test needs {needed}"
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def address(server) -> tuple[str, int]:
    host, port = server.bootstrap_servers.split(",")[0].rsplit(":", 1)
    return host, int(port)


async def round_trip_s(server, api_key=ApiKey.METADATA, version=1, **fields) -> float:
    """Seconds from connecting to the whole answer of one request on a fresh connection."""
    start = trio.current_time()
    stream = await trio.open_tcp_stream(*address(server))
    request = protocol.request_class(api_key)(**fields)
    await stream.send_all(protocol.encode_request(api_key, version, 1, "probe", request))
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
        chunk = await stream.receive_some(65536)
        assert chunk, "the broker closed a well-behaved connection"
        buf += chunk
    await stream.aclose()
    return trio.current_time() - start


async def open_raw(server, n: int) -> list[socket.socket]:
    """n plain connected sockets (no trio stream objects: cheap to hold by thousands)."""
    socks = []
    host, port = address(server)
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        socks.append(s)
    for s in socks:
        await trio.lowlevel.wait_writable(s)
    return socks


async def test_metadata_is_answered_promptly_beside_5000_idle_connections():
    raise_descriptor_limit(2 * IDLE_CONNECTIONS + 200)
    async with open_broker(memory=True) as server:
        with trio.fail_after(DEADLINE_S):
            idle = await open_raw(server, IDLE_CONNECTIONS)
            # Every one of them accepted and being served (the broker has a task for each).
            while server.limits.open < IDLE_CONNECTIONS:
                await trio.sleep(0.01)     # polling the accept count, bounded by fail_after
            worst = max([await round_trip_s(server, topics=None) for _ in range(5)])
        assert worst < 0.5, f"Metadata took {worst * 1000:.0f} ms beside 5000 idle connections"
        for s in idle:
            s.close()


async def test_partial_frames_held_open_do_not_block_others():
    """Slowloris: a thousand connections each send a size prefix and a few bytes, then wait."""
    raise_descriptor_limit(2500)
    async with open_broker(memory=True) as server:
        with trio.fail_after(DEADLINE_S):
            held = await open_raw(server, 1000)
            for s in held:
                s.send(struct.pack(">i", 1000) + b"\x00\x03")
            worst = max([await round_trip_s(server, ApiKey.API_VERSIONS, 0)
                         for _ in range(5)])
        assert worst < 0.5, f"ApiVersions took {worst * 1000:.0f} ms beside held frames"
        for s in held:
            s.close()


async def test_a_client_that_never_reads_does_not_slow_others():
    async with open_broker(memory=True) as server:
        greedy = socket.socket()
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.connect(address(server))
        greedy.setblocking(False)
        request = protocol.encode_request(ApiKey.METADATA, 1, 1, "greedy",
                                          protocol.request_class(ApiKey.METADATA)(topics=None))
        with trio.fail_after(DEADLINE_S):
            # Send requests until the broker stops reading them (its answers fill the buffers).
            sent = 0
            while True:
                try:
                    sent += greedy.send(request * 100)
                except BlockingIOError:
                    with trio.move_on_after(0.5):
                        await trio.lowlevel.wait_writable(greedy)
                        continue
                    break
            worst = max([await round_trip_s(server, topics=None) for _ in range(10)])
        assert sent > 0
        assert worst < 0.5, f"Metadata took {worst * 1000:.0f} ms beside a client not reading"
        greedy.close()
