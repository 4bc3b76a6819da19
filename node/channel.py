"""The inter-node client: one connection from this node to another node, Kafka's NetworkClient as
a broker uses it to reach the controller (BrokerRegistration, BrokerHeartbeat, AlterPartition,
the metadata Fetch) and the partition leaders (replica Fetch, OffsetForLeaderEpoch).

Nodes speak only Kafka RPCs to each other, so this is the ordinary client protocol:

- Connecting is bounded by the request's timeout; the first request on a new connection is
  ApiVersions (v3, the version Kafka's own clients open with). A peer that does not serve that
  version answers at v0 with UNSUPPORTED_VERSION and the ApiVersions range it does serve
  (KIP-511), and we ask once more within that range.
- Each later request goes at min(our newest, the peer's newest) of its API unless the caller
  names a version; an API the peer does not serve, or with no version in common, is refused
  before anything is sent.
- Requests go one at a time (a lock; Kafka answers a connection's requests in order, and an
  inter-node caller waits for its answer anyway); a caller that wants requests in parallel opens
  several channels, as Kafka's replica fetcher threads each hold their own connection. Each
  request carries the next correlation id, and the answer must carry it back.
- Every request is bounded by `request.timeout.ms` (or the caller's `timeout_ms`). Any failure
  (refused, reset, closed by the peer, timed out, an answer that does not decode, a wrong
  correlation id) closes the connection and raises `NodeUnreachable`, naming the peer and the
  API; the next request reconnects. Callers back off and retry, as Kafka's do.
- On a SASL listener the node authenticates right after ApiVersions, with the broker's own
  login (security/sasl/broker_login.py: sasl.mechanism.inter.broker.protocol or
  sasl.mechanism.controller.protocol, the listener's JAAS username and password), running the
  exchange every Kafka client runs (security/sasl/client.py). A refusal raises
  `NodeAuthenticationFailed` (a NodeUnreachable: callers retry as for any failure), logged
  once at ERROR with the broker's message (once for all the channels sharing the login),
  until a login succeeds again. A session the peer limits (KIP-368 `session_lifetime_ms`) is
  renewed on the same connection before it ends, as Kafka's clients re-authenticate.
- `NodeControls.isolated` (node/controls.py) cuts the node off: a request fails at once with
  `NodeUnreachable` and the open connection is dropped; an answer that arrives after the node was
  isolated is dropped too. (`slow_ms` is applied by the replica fetcher, not here.)
"""

from __future__ import annotations

import itertools
import logging
import ssl
import struct

import trio

from trioka.node.controls import NodeControls
from trioka.wire import framing, protocol, schema
from trioka.wire import types as wire_types
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

log = logging.getLogger("trioka.node.channel")

CLIENT_SOFTWARE_NAME = "trioka-node"
CLIENT_SOFTWARE_VERSION = "0.1.0"
API_VERSIONS_VERSION = 3            # the version the first request of a connection is sent at
MAX_RESPONSE_BYTES = 1 << 30        # a sanity bound on a declared response size
RECV_CHUNK = 64 * 1024

_INT16 = struct.Struct(">h")


class NodeUnreachable(OSError):
    """A request to another node failed on the way (connection, timeout, isolation, an answer
    that does not parse, no version in common). The caller backs off and retries."""


class NodeAuthenticationFailed(NodeUnreachable):
    """The peer refused this node's SASL login (a wrong password, a mechanism it does not
    enable), or its SCRAM answers did not hold up."""


def api_name(api_key: int) -> str:
    """Kafka's name of an API (`BrokerHeartbeat`)."""
    try:
        return schema.api(api_key).name
    except KeyError:
        return f"api {api_key}"


def our_versions(api_key: int) -> tuple[int, int]:
    """The versions of an API this node's codec reads and writes."""
    return schema.api(api_key).valid


class NodeChannel:
    """One connection to one node, reconnected on demand; requests one at a time."""

    def __init__(self, host: str, port: int, *, clock, client_id: str, request_timeout_ms: int,
                 controls: NodeControls | None = None, ssl_context=None, sasl=None):
        self.host = host
        self.port = port
        # The broker's SASL login (security/sasl/broker_login.py BrokerLogin) when the peer's
        # listener is SASL_PLAINTEXT or SASL_SSL; None: no SASL.
        self.sasl = sasl
        # KIP-368: when to log in again on the connection, and when its session ends (after
        # which the peer closes the connection at the next request): monotonic seconds.
        self._reauthenticate_at: float | None = None
        self._session_ends_at: float | None = None
        # The client TLS context when the peer's listener is SSL or SASL_SSL
        # (security/tls.py client_context): the connection's first bytes are a TLS handshake.
        self.ssl_context = ssl_context
        self._socket = None             # the TCP socket under the stream (TLS or not)
        self.clock = clock
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.controls = controls
        self.peer_versions: dict[int, tuple[int, int]] = {}   # of the current connection
        self.connections = 0            # connections opened so far (observability)
        self._stream: trio.SocketStream | None = None
        self._reader: framing.FrameReader | None = None
        self._correlation = itertools.count(1)
        self._lock = trio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"NodeChannel({self.host}:{self.port}, client_id={self.client_id!r})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._stream is not None

    # -- the one public operation --

    async def request(self, api_key: int, message, *, version: int | None = None,
                      timeout_ms: int | None = None, quiet_ms: int = 0):
        """Send one request and return the decoded response message. NodeUnreachable on any
        failure on the way (the connection is then closed; the next request reconnects).

        `quiet_ms`: how long the channel may go before its next request after this one (a long
        poll the peer may hold, a heartbeat's interval). A SASL session that could end in that
        time is renewed before this request, not found ended at the next one: the peer would
        close the connection then (KIP-368), and the node would have to connect again."""
        name = api_name(api_key)
        self._check_isolation(name)
        if self._closed:
            raise NodeUnreachable(f"{name} to {self.address}: the channel is closed")
        timeout_s = (self.request_timeout_ms if timeout_ms is None else timeout_ms) / 1000
        response = None
        with self.clock.move_on_after(timeout_s) as scope:
            async with self._lock:
                self._check_isolation(name)
                try:
                    if self._stream is None:
                        await self._connect(name)
                    elif self._reauthenticate_at is not None and (
                            self.clock.monotonic() >= self._reauthenticate_at or
                            self.clock.monotonic() + quiet_ms / 1000 >= self._session_ends_at):
                        if self.clock.monotonic() >= self._session_ends_at:
                            await self._drop()       # too late: a new connection
                            await self._connect(name)
                        else:
                            await self._authenticate()
                    if version is None:
                        version = self._negotiate(api_key, name)
                    response = await self._round_trip(api_key, version, message, name)
                except NodeUnreachable:
                    await self._drop()
                    raise
                except BaseException:
                    # Cancelled (our deadline or the caller's) between the request and its
                    # answer: the answer would arrive in front of the next one, so the
                    # connection is done.
                    await self._drop()
                    raise
        if scope.cancelled_caught:
            raise NodeUnreachable(f"{name} to {self.address}: no answer within "
                                  f"{int(timeout_s * 1000)} ms")
        if self.controls is not None and self.controls.isolated:
            await self._drop()
            raise NodeUnreachable(f"{name} to {self.address}: this node is isolated")
        return response

    async def aclose(self) -> None:
        """Close the connection; later requests fail."""
        self._closed = True
        await self._drop()

    # -- inside --

    def _check_isolation(self, name: str) -> None:
        if self.controls is not None and self.controls.isolated:
            # Dropping the connection closes its socket (a sync close: no await needed, and
            # the next request, once healed, reconnects).
            self._forget()
            raise NodeUnreachable(f"{name} to {self.address}: this node is isolated")

    def _forget(self) -> None:
        socket, self._socket, self._stream, self._reader = self._socket, None, None, None
        self.peer_versions = {}
        if socket is not None:
            socket.close()

    async def _drop(self) -> None:
        stream, self._stream, self._reader, self._socket = self._stream, None, None, None
        self.peer_versions = {}
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def _connect(self, name: str) -> None:
        try:
            stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as e:
            raise NodeUnreachable(f"{name} to {self.address}: cannot connect: {e}") from None
        self._socket = stream.socket
        if self.ssl_context is not None:
            stream = trio.SSLStream(stream, self.ssl_context, server_hostname=self.host)
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as e:
                self._socket.close()
                self._socket = None
                cause = e.__cause__ or e
                raise NodeUnreachable(f"{name} to {self.address}: TLS handshake failed: "
                                      f"{getattr(cause, 'reason', None) or cause}") from None
        self._stream = stream
        self._reader = framing.FrameReader(MAX_RESPONSE_BYTES, RECV_CHUNK)
        self.connections += 1
        log.debug("connected to %s", self.address)
        await self._api_versions()
        if self.sasl is not None:
            await self._authenticate()

    async def _authenticate(self) -> None:
        """The SASL exchange (security/sasl/client.py) with the broker's own login; the
        session's end, when the peer gives one, is noted to renew it before then."""
        from trioka.security.sasl.client import (SaslAuthenticationFailed, SaslExchangeError,
                                                 exchange)
        try:
            await self.sasl.prepare(self.clock)
        except (OSError, ValueError) as e:
            raise self._refused(f"connection to node at {self.address}: no OAUTHBEARER token "
                                f"from {self.sasl.endpoint.url}: {e}") from None
        steps = exchange(self.sasl.client(lambda: self.clock.wall_ms() / 1000))
        response = None
        try:
            while True:
                api_key, version, request = steps.send(response)
                name = api_name(api_key)
                if version is None:
                    version = self._negotiate(api_key, name)
                elif not self._serves(api_key, version):
                    raise NodeUnreachable(f"{name} v{version} to {self.address}: the peer does "
                                          f"not serve it")
                response = await self._round_trip(api_key, version, request, name)
        except StopIteration as done:
            lifetime_ms = done.value or 0
        except (SaslAuthenticationFailed, SaslExchangeError) as e:
            raise self._refused(f"connection to node at {self.address} failed authentication "
                                f"due to: {e}") from None
        self.sasl.accepted()
        # Renew at 85% of the session, as Kafka's clients pick a point in 85-95% of it.
        now = self.clock.monotonic()
        self._reauthenticate_at = None if lifetime_ms <= 0 else now + lifetime_ms * 0.85 / 1000
        self._session_ends_at = None if lifetime_ms <= 0 else now + lifetime_ms / 1000

    def _refused(self, why: str) -> NodeAuthenticationFailed:
        """A login that failed: said at ERROR once until one succeeds (the other channels and
        the retries stay quiet), and the exception to raise."""
        message = f"{why} ({self.sasl.describe()})"
        if self.sasl.refused():
            log.error("%s", message)
        return NodeAuthenticationFailed(message)

    async def _api_versions(self) -> None:
        """KIP-511: ask at v3; a peer that does not serve it answers at v0 with
        UNSUPPORTED_VERSION and its own ApiVersions range, and we ask once more within it."""
        Request = protocol.request_class(ApiKey.API_VERSIONS)
        request = Request(client_software_name=CLIENT_SOFTWARE_NAME,
                          client_software_version=CLIENT_SOFTWARE_VERSION)
        name = api_name(ApiKey.API_VERSIONS)
        version = API_VERSIONS_VERSION
        for _ in range(2):
            frame = await self._exchange(ApiKey.API_VERSIONS, version, request, name)
            try:
                (code,) = _INT16.unpack_from(frame, 4)
                if code == ErrorCode.UNSUPPORTED_VERSION:
                    # The error answer is always a v0 body: the code and the peer's ranges.
                    _, response = protocol.decode_response(ApiKey.API_VERSIONS, 0, frame)
                else:
                    _, response = protocol.decode_response(ApiKey.API_VERSIONS, version, frame)
            except (wire_types.DecodeError, struct.error, ValueError) as e:
                raise NodeUnreachable(f"{name} from {self.address}: bad answer: {e}") from None
            theirs = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
            if code == ErrorCode.UNSUPPORTED_VERSION:
                lo, hi = theirs.get(ApiKey.API_VERSIONS, (0, -1))
                retry = min(hi, API_VERSIONS_VERSION)
                if retry < max(lo, 0) or retry == version:
                    raise NodeUnreachable(f"{name} to {self.address}: no ApiVersions version "
                                          f"in common (peer {lo}-{hi})")
                version = retry
                continue
            if code:
                raise NodeUnreachable(f"{name} to {self.address}: error code {code}")
            self.peer_versions = theirs
            return
        raise NodeUnreachable(f"{name} to {self.address}: version negotiation failed")

    def _serves(self, api_key: int, version: int) -> bool:
        lo, hi = self.peer_versions.get(api_key, (0, -1))
        return lo <= version <= hi

    def _negotiate(self, api_key: int, name: str) -> int:
        """min(our newest, the peer's newest), when the two ranges meet."""
        theirs = self.peer_versions.get(api_key)
        if theirs is None:
            raise NodeUnreachable(f"{name} to {self.address}: the peer does not serve {name}")
        lo, hi = our_versions(api_key)
        if max(lo, theirs[0]) > min(hi, theirs[1]):
            raise NodeUnreachable(f"{name} to {self.address}: no version in common (peer "
                                  f"{theirs[0]}-{theirs[1]}, ours {lo}-{hi})")
        return min(hi, theirs[1])

    async def _round_trip(self, api_key: int, version: int, message, name: str):
        frame = await self._exchange(api_key, version, message, name)
        try:
            _, response = protocol.decode_response(api_key, version, frame)
        except (wire_types.DecodeError, struct.error, ValueError, IndexError) as e:
            raise NodeUnreachable(f"{name} v{version} from {self.address}: bad answer: "
                                  f"{e}") from None
        return response

    async def _exchange(self, api_key: int, version: int, message, name: str) -> bytes:
        """Send one request frame and read its answer's frame (without the size prefix)."""
        correlation_id = next(self._correlation) & 0x7FFFFFFF
        try:
            data = protocol.encode_request(api_key, version, correlation_id, self.client_id,
                                           message)
        except Exception as e:   # a message the codec cannot write: the caller's mistake
            raise ValueError(f"cannot encode {name} v{version}: {e}") from e
        stream, reader = self._stream, self._reader
        try:
            await stream.send_all(data)
            while True:
                frame = reader.next_frame()
                if frame is not None:
                    break
                if self.ssl_context is None:
                    n = await stream.socket.recv_into(reader.free_space())
                else:
                    space = reader.free_space()
                    data = await stream.receive_some(len(space))
                    n = len(data)
                    space[:n] = data
                if n == 0:
                    raise NodeUnreachable(f"{name} to {self.address}: the peer closed the "
                                          f"connection")
                reader.received(n)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if isinstance(e, NodeUnreachable):
                raise
            raise NodeUnreachable(f"{name} to {self.address}: {e or type(e).__name__}") from None
        except framing.FrameError as e:
            raise NodeUnreachable(f"{name} from {self.address}: {e}") from None
        frame = bytes(frame)
        if len(frame) < 4:
            raise NodeUnreachable(f"{name} from {self.address}: a truncated answer")
        (got,) = struct.unpack_from(">i", frame, 0)
        if got != correlation_id:
            raise NodeUnreachable(f"{name} from {self.address}: correlation id {got}, "
                                  f"expected {correlation_id}")
        return frame
