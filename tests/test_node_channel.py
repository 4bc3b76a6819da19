"""NodeChannel against a tiny in-process trio TCP server that answers raw Kafka frames:
request/response, version negotiation (KIP-511 fallback, min of both sides), timeouts,
reconnecting after the peer closes, isolation."""

import trio

import pytest

from trioka.clock import Clock
from trioka.node.channel import NodeChannel, NodeUnreachable
from trioka.node.controls import NodeControls
from trioka.wire import framing, protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

HEARTBEAT = ApiKey.BROKER_HEARTBEAT


def api_versions_response(ranges: dict[int, tuple[int, int]], error_code: int = 0):
    Response = protocol.response_class(ApiKey.API_VERSIONS)
    keys = [Response.ApiVersion(api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in ranges.items()]
    return Response(error_code=error_code, api_keys=keys, throttle_time_ms=0)


class FakeNode:
    """A node that serves ApiVersions with `ranges` and BrokerHeartbeat with `answer`."""

    def __init__(self, ranges=None, api_versions_max: int = 4):
        self.ranges = ranges or {ApiKey.API_VERSIONS: (0, api_versions_max), HEARTBEAT: (0, 1)}
        self.api_versions_max = api_versions_max
        self.requests: list = []          # (header, message)
        self.mode = "answer"              # "answer", "silent", "close"
        self.connections = 0
        self.port = None
        self.open_streams: list = []

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self.handle, listeners, task_status=task_status)

    async def handle(self, stream):
        self.connections += 1
        self.open_streams.append(stream)
        reader = framing.FrameReader(1 << 20)
        try:
            while True:
                frame = reader.next_frame()
                if frame is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    reader.feed(data)
                    continue
                header, pos = protocol.parse_request_header(frame)
                message = protocol.decode_request_body(header, frame, pos)
                self.requests.append((header, message))
                if header.api_key == ApiKey.API_VERSIONS:
                    if header.api_version > self.api_versions_max:
                        response = api_versions_response(
                            {ApiKey.API_VERSIONS: (0, self.api_versions_max)},
                            ErrorCode.UNSUPPORTED_VERSION)
                        version = 0
                    else:
                        response = api_versions_response(self.ranges)
                        version = header.api_version
                    await stream.send_all(b"".join(protocol.encode_response(
                        ApiKey.API_VERSIONS, version, header.correlation_id, response)))
                    continue
                if self.mode == "silent":
                    continue
                if self.mode == "close":
                    await stream.aclose()
                    return
                Response = protocol.response_class(header.api_key)
                response = Response(throttle_time_ms=0, error_code=0, is_caught_up=True,
                                    is_fenced=False, should_shut_down=False)
                await stream.send_all(b"".join(protocol.encode_response(
                    header.api_key, header.api_version, header.correlation_id, response)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


def heartbeat(broker_id=1):
    return protocol.request_class(HEARTBEAT)(broker_id=broker_id, broker_epoch=5,
                                            current_metadata_offset=10, want_fence=False,
                                            want_shut_down=False)


async def start(nursery, node: FakeNode, **kw) -> NodeChannel:
    await nursery.start(node.serve)
    kw.setdefault("request_timeout_ms", 5000)
    return NodeChannel("127.0.0.1", node.port, clock=Clock(), client_id="broker-1", **kw)


async def test_request_and_response():
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node)
        response = await channel.request(HEARTBEAT, heartbeat())
        assert response.error_code == 0 and response.is_fenced is False
        response = await channel.request(HEARTBEAT, heartbeat(2))
        assert response.is_caught_up is True
        # One connection; ApiVersions first (v3), then the requests at min(ours 1, theirs 1).
        assert node.connections == 1 and channel.connections == 1
        kinds = [(h.api_key, h.api_version) for h, _ in node.requests]
        assert kinds == [(ApiKey.API_VERSIONS, 3), (HEARTBEAT, 1), (HEARTBEAT, 1)]
        assert [h.client_id for h, _ in node.requests] == ["broker-1"] * 3
        ids = [h.correlation_id for h, _ in node.requests]
        assert len(set(ids)) == 3
        assert node.requests[2][1].broker_id == 2
        await channel.aclose()
        with pytest.raises(NodeUnreachable):
            await channel.request(HEARTBEAT, heartbeat())
        nursery.cancel_scope.cancel()


async def test_version_is_min_of_both_sides_or_given():
    node = FakeNode(ranges={ApiKey.API_VERSIONS: (0, 4), HEARTBEAT: (0, 0)})
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node)
        await channel.request(HEARTBEAT, heartbeat())
        assert node.requests[-1][0].api_version == 0
        assert channel.peer_versions[HEARTBEAT] == (0, 0)
        await channel.request(HEARTBEAT, heartbeat(), version=1)   # the caller's choice
        assert node.requests[-1][0].api_version == 1
        # An API the peer does not serve is refused before anything is sent.
        before = len(node.requests)
        with pytest.raises(NodeUnreachable, match="does not serve AlterPartition"):
            await channel.request(ApiKey.ALTER_PARTITION,
                                  protocol.request_class(ApiKey.ALTER_PARTITION)())
        assert len(node.requests) == before
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_api_versions_falls_back_as_kip_511_says():
    node = FakeNode(api_versions_max=2)
    node.ranges[ApiKey.API_VERSIONS] = (0, 2)
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node)
        await channel.request(HEARTBEAT, heartbeat())
        kinds = [(h.api_key, h.api_version) for h, _ in node.requests]
        assert kinds == [(ApiKey.API_VERSIONS, 3), (ApiKey.API_VERSIONS, 2), (HEARTBEAT, 1)]
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_timeout_closes_the_connection_and_the_next_request_reconnects():
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node, request_timeout_ms=200)
        node.mode = "silent"
        with pytest.raises(NodeUnreachable, match=r"BrokerHeartbeat to 127\.0\.0\.1:\d+: no "
                                                  r"answer within 200 ms"):
            await channel.request(HEARTBEAT, heartbeat())
        assert not channel.connected
        node.mode = "answer"
        response = await channel.request(HEARTBEAT, heartbeat(), timeout_ms=5000)
        assert response.error_code == 0
        assert channel.connections == 2 and node.connections == 2
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_peer_closing_raises_and_the_next_request_reconnects():
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node)
        await channel.request(HEARTBEAT, heartbeat())
        node.mode = "close"
        with pytest.raises(NodeUnreachable, match="BrokerHeartbeat to 127.0.0.1"):
            await channel.request(HEARTBEAT, heartbeat())
        node.mode = "answer"
        assert (await channel.request(HEARTBEAT, heartbeat())).error_code == 0
        assert channel.connections == 2
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_refused_connection():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()        # nothing listens there now
    channel = NodeChannel("127.0.0.1", port, clock=Clock(), client_id="b",
                          request_timeout_ms=2000)
    with pytest.raises(NodeUnreachable, match=f"127.0.0.1:{port}: cannot connect"):
        await channel.request(HEARTBEAT, heartbeat())
    assert isinstance(NodeUnreachable("x"), OSError)


async def test_isolated_fails_at_once_and_drops_the_connection():
    node = FakeNode()
    controls = NodeControls()
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node, controls=controls)
        await channel.request(HEARTBEAT, heartbeat())
        assert channel.connected
        sent = len(node.requests)
        changed = controls.changed()
        controls.isolate()
        assert changed.is_set()
        with pytest.raises(NodeUnreachable, match="isolated"):
            await channel.request(HEARTBEAT, heartbeat())
        assert not channel.connected and len(node.requests) == sent
        controls.heal()
        assert (await channel.request(HEARTBEAT, heartbeat())).error_code == 0
        assert channel.connections == 2
        await channel.aclose()
        nursery.cancel_scope.cancel()


async def test_requests_go_one_at_a_time():
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        channel = await start(nursery, node)
        results = []

        async def one(i):
            results.append((await channel.request(HEARTBEAT, heartbeat(i))).error_code)

        async with trio.open_nursery() as callers:
            for i in range(5):
                callers.start_soon(one, i)
        assert results == [0] * 5 and node.connections == 1
        assert sorted(m.broker_id for h, m in node.requests[1:]) == [0, 1, 2, 3, 4]
        await channel.aclose()
        nursery.cancel_scope.cancel()


def test_controls_validate_slow():
    controls = NodeControls()
    controls.slow(250)
    assert controls.state() == {"isolated": False, "slow_ms": 250, "rtt_ms": 0}
    with pytest.raises(ValueError):
        controls.slow(-1)
    controls.heal()
    assert controls.state() == {"isolated": False, "slow_ms": 0, "rtt_ms": 0}
