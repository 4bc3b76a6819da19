"""What one connection can do to the broker, over real sockets to an in-process server: at most
lose that connection. Bad frames, responses that cannot be encoded and errors in background work
never stop the broker; connection limits and idle expiry behave as Kafka's do."""

import socket
import struct

import trio

from trioka.broker import keep_running
from trioka.clock import Clock
from trioka.testing.embedded import open_broker
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

# Every wait in these tests ends: long enough for a loaded machine, short of pytest's timeout.
DEADLINE_S = 20


async def connect(server) -> trio.SocketStream:
    host, port = server.bootstrap_servers.split(",")[0].rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def read_frame(stream: trio.SocketStream) -> bytes | None:
    """One response frame, or None when the broker closed the connection."""
    buf = b""
    while True:
        if len(buf) >= 4:
            (size,) = struct.unpack_from(">i", buf)
            if len(buf) >= 4 + size:
                return buf[4:4 + size]
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buf += chunk


async def api_versions(stream: trio.SocketStream, correlation_id: int = 1):
    cls = protocol.request_class(ApiKey.API_VERSIONS)
    await stream.send_all(protocol.encode_request(ApiKey.API_VERSIONS, 0, correlation_id,
                                                  "t", cls()))
    frame = await read_frame(stream)
    assert frame is not None, "the broker closed a healthy connection"
    corr, response = protocol.decode_response(ApiKey.API_VERSIONS, 0, frame)
    assert corr == correlation_id and response.error_code == 0
    return response


async def closed_by_broker(stream: trio.SocketStream) -> bool:
    """True once the broker closes the connection (reading to EOF)."""
    with trio.move_on_after(DEADLINE_S):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return True
            if not chunk:
                return True
    return False


async def test_a_response_that_cannot_be_encoded_closes_only_that_connection():
    """CreateTopics v4 (non-flexible) naming one 32,760-character topic twice: the duplicate
    error message quoting the name cannot fit an int16-length string."""
    async with open_broker(memory=True) as server:
        bystander = await connect(server)
        await api_versions(bystander)
        cls = protocol.request_class(ApiKey.CREATE_TOPICS)
        name = "t" * 32760
        topic = cls.CreatableTopic(name=name, num_partitions=1, replication_factor=1,
                                   assignments=[], configs=[])
        request = cls(topics=[topic, topic], timeout_ms=1000, validate_only=False)
        hostile = await connect(server)
        await hostile.send_all(protocol.encode_request(ApiKey.CREATE_TOPICS, 4, 9, "x", request))
        assert await closed_by_broker(hostile)
        await api_versions(bystander, 2)        # the broker and other connections carry on
        await api_versions(await connect(server), 3)


async def test_a_negative_length_below_minus_one_closes_the_connection():
    async with open_broker(memory=True) as server:
        bystander = await connect(server)
        # Metadata v1: topics is a nullable array; -2 is no count Kafka writes.
        body = struct.pack(">hhi", ApiKey.METADATA, 1, 5) + struct.pack(">h", 1) + b"c" + \
            struct.pack(">i", -2)
        hostile = await connect(server)
        await hostile.send_all(struct.pack(">i", len(body)) + body)
        assert await closed_by_broker(hostile)
        await api_versions(bystander)


async def test_an_idle_connection_is_closed_after_connections_max_idle_ms():
    async with open_broker(memory=True, connections_max_idle_ms=300) as server:
        stream = await connect(server)
        await api_versions(stream)
        start = trio.current_time()
        assert await closed_by_broker(stream)
        assert trio.current_time() - start >= 0.25


async def test_a_client_address_over_max_connections_per_ip_is_closed_at_once():
    async with open_broker(memory=True, max_connections_per_ip=2) as server:
        first, second = await connect(server), await connect(server)
        await api_versions(first)
        await api_versions(second)
        third = await connect(server)
        assert await closed_by_broker(third)
        await first.aclose()
        # A slot is free again once the broker has seen the close.
        with trio.fail_after(DEADLINE_S):
            while True:
                again = await connect(server)
                try:
                    await api_versions(again)
                    break
                except (AssertionError, trio.BrokenResourceError):
                    await trio.sleep(0.05)   # polling for the broker to notice the close
        await api_versions(second, 4)


async def test_overrides_set_a_limit_per_host():
    async with open_broker(memory=True, max_connections_per_ip=100,
                           max_connections_per_ip_overrides="127.0.0.1:1") as server:
        first = await connect(server)
        await api_versions(first)
        assert await closed_by_broker(await connect(server))


async def test_at_max_connections_the_broker_waits_for_a_slot():
    async with open_broker(memory=True, max_connections=1) as server:
        first = await connect(server)
        await api_versions(first)
        waiting = await connect(server)   # in the kernel's backlog, not yet accepted
        cls = protocol.request_class(ApiKey.API_VERSIONS)
        await waiting.send_all(protocol.encode_request(ApiKey.API_VERSIONS, 0, 7, "t", cls()))
        with trio.move_on_after(0.3) as unanswered:
            await read_frame(waiting)
        assert unanswered.cancelled_caught, "answered beyond max.connections"
        await first.aclose()
        with trio.fail_after(DEADLINE_S):
            frame = await read_frame(waiting)
        assert frame is not None
        assert protocol.decode_response(ApiKey.API_VERSIONS, 0, frame)[0] == 7


async def test_a_failing_background_task_is_logged_and_started_again(caplog):
    """An error escaping a periodic task (here a full disk, twice) is logged and the task runs
    again; it never reaches the nursery that holds the broker."""
    passes = []

    async def task():
        passes.append(trio.current_time())
        if len(passes) <= 2:
            raise OSError(28, "No space left on device")

    with trio.fail_after(DEADLINE_S):
        await keep_running("the test task", task, Clock(), pause_s=0.01)
    assert len(passes) == 3
    assert passes[2] - passes[1] >= 0.01
    assert sum("the test task failed" in r.getMessage() for r in caplog.records) == 2


async def test_a_client_that_never_reads_is_closed_after_connections_max_idle_ms():
    """Responses pile up in the socket buffers of a client that sends requests and never reads;
    once nothing moves for connections.max.idle.ms the broker closes it, freeing what its
    responses hold. Another client is served meanwhile."""
    async with open_broker(memory=True, connections_max_idle_ms=500,
                           socket_send_buffer_bytes=4096) as server:
        greedy = await connect(server)
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        cls = protocol.request_class(ApiKey.API_VERSIONS)
        requests = b"".join(protocol.encode_request(ApiKey.API_VERSIONS, 3, i, "c", cls(
            client_software_name="x", client_software_version="1")) for i in range(100))
        closed = False
        with trio.move_on_after(DEADLINE_S):
            while not closed:       # until the broker closes it: sending fails
                try:
                    await greedy.send_all(requests)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    closed = True
        assert closed, "the broker never closed a client that does not read"
        await api_versions(await connect(server))
