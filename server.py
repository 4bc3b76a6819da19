"""The only socket code: listeners, one task per connection, dispatch, graceful shutdown.

Kafka's framing is an int32 size and then the request. A connection is served one request at a time
(Kafka's ordering guarantee: responses go back in request order); different connections run
concurrently. A declared size above `socket.request.max.bytes`, a negative size, an unknown API key,
an unsupported version or a body that does not parse closes that connection and nothing else, as
Kafka does. A bug in a handler is logged and closes the connection; the broker keeps running.

Shutdown (SIGTERM, SIGINT, or `Server.shutdown()`): listeners stop accepting, idle connections are
closed, requests in flight get `shutdown.grace.ms` to finish, then the logs are closed cleanly.
"""

import logging
import os
import socket
import ssl

import trio

from trioka.apis import APIS, CONTROLLER_APIS, controller_listener_names, table_for
from trioka.apis.context import Connection, RequestContext
from trioka.broker import BrokerState
from trioka.config import Config, Listener, listeners_of, parse_connection_overrides
from trioka.controls.rules import error_answer, handle_partly
from trioka.log.files import FileRegion
from trioka.observe.request_log import DISCONNECTED, NO_RESPONSE, RESPONDED
from trioka.wire import protocol
from trioka.wire.framing import FrameError, FrameReader
from trioka.wire.api_keys import ApiKey
from trioka.wire.types import DecodeError

log = logging.getLogger("trioka.server")



# Frames from this size on are decoded in a worker thread. Decoding costs about 0.35 ms per KiB
# for frames made of tiny elements (measured: 64 KiB of one-byte topic names, 23 ms on a loaded
# machine), so this bound keeps a decode on the event loop under the 50 ms stall budget. Produce
# is the exception up to 1.1 MB: clients send requests of up to about 1 MB (message.max.bytes,
# max.request.size), made of record batches kept as bytes, each partition entry at least 8 bytes,
# and the thread hop (start, GIL hand-over) measurably cost the 10 KB produce benchmark; a 1.1 MB
# produce frame of the smallest entries decodes in well under 100 ms.
DECODE_IN_THREAD_BYTES = 64 * 1024
PRODUCE_DECODE_IN_THREAD_BYTES = 1_100_000


class CloseConnection(Exception):
    """The peer sent something Kafka answers by closing the connection."""


class Server:
    def __init__(self, config: Config, broker: BrokerState | None = None, *,
                 node_controls=None, clock=None):
        self.config = config
        # node_controls (node/controls.py): the faults injected into this node's links to the
        # other nodes of a cluster, kept by whoever restarts the node (node/cluster.py).
        # `clock` (clock.py): the broker's, e.g. the virtual clock the nodes of a cluster share.
        self.broker = broker or BrokerState(config, clock=clock, node_controls=node_controls)
        if node_controls is not None:
            self.broker.node_controls = node_controls
        # Each listener with its security protocol (listener.security.protocol.map); a name
        # the map does not know, or a TLS listener without a usable keystore, stops the start.
        self.listeners = listeners_of(config)
        self._tls = {listener.name: _tls_setup(config, listener.name)
                     for listener in self.listeners if listener.uses_tls}
        # Each SASL listener's mechanisms (security/sasl/); a mechanism trioka does not serve
        # or a JAAS configuration that does not parse stops the start.
        self._sasl = {listener.name: _sasl_setup(config, listener.name, self.broker)
                      for listener in self.listeners if listener.uses_sasl}
        # Each listener's API table: the controller's on a controller listener.
        self._tables = {listener.name: table_for(config, listener) for listener in self.listeners}
        self._stop = trio.Event()
        # Set once the shutdown stops serving connections (after a cluster node's controlled
        # shutdown, during which its controller listener, and its own, keep serving).
        self._closing = trio.Event()
        self._idle: set[trio.CancelScope] = set()
        self._busy = 0
        self._no_busy = trio.Event()
        # Fault injection (controls/rules.py): one attribute read per request while no rule is set.
        self.controls = self.broker.controls
        # The request log (observe/request_log.py): None when it keeps nothing.
        self.request_log = self.broker.request_log
        self._connection_index = 0   # the last part of Kafka's connection ids
        self._connections: set[trio.CancelScope] = set()   # every client connection's scope
        self.limits = ConnectionLimits(config)
        self.admin_address: tuple[str, int] | None = None   # the admin endpoint, when enabled
        self._killed = False
        self._scope: trio.CancelScope | None = None   # run()'s, cancelled by kill()

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in
                        (self.broker.advertised_address(lst) for lst in self.listeners))

    def shutdown(self) -> None:
        """Begin a graceful shutdown (call from the trio thread)."""
        self._stop.set()

    def kill(self) -> None:
        """Stop at once, as SIGKILL stops a process (call from the trio thread): every task is
        cancelled, the sockets are dropped, and the broker is abandoned, not closed (nothing
        flushed, checkpointed or marked clean), so the next start recovers from the log dir."""
        self._killed = True
        if self._scope is not None:
            self._scope.cancel()

    @property
    def killed(self) -> bool:
        return self._killed

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED, wait_ready: bool = True) -> None:
        """Open the broker, listen, report readiness through task_status, serve until shutdown.
        A node of a cluster is ready once registered and unfenced; with `wait_ready=False` it
        reports as soon as its listeners are bound (a node restarted while isolated, which
        serves clients only once it can reach the controller)."""
        self.broker.open()
        sockets = []
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                if self._killed:
                    nursery.cancel_scope.cancel()
                self.broker.nursery = nursery
                # What a SASL listener needs before it serves: OAUTHBEARER's JWKS, fetched
                # (a failure stops the start) and then kept fresh.
                for mechanisms in self._sasl.values():
                    for task in mechanisms.background:
                        await nursery.start(task)
                for listener in self.listeners:
                    try:
                        socks = await trio.open_tcp_listeners(listener.port,
                                                              host=listener.host or None)
                    except OSError as e:    # Kafka's words, naming the address at fault
                        raise OSError(e.errno, f"Socket server failed to bind to "
                                      f"{listener.host}:{listener.port}: {e.strerror}.") from e
                    listener.port = socks[0].socket.getsockname()[1]
                    sockets.append((listener, socks))
                self.broker.set_listeners(self.listeners, self.config.advertised_listeners)
                if self.config.trioka_admin_listener:
                    from trioka.controls import endpoint
                    self.admin_address = await nursery.start(
                        endpoint.serve, self.controls, self.config.trioka_admin_listener,
                        endpoint.OneBroker(self))
                nursery.start_soon(self._close_connections_when_down)
                async with trio.open_nursery() as conns:
                    # A node of a cluster serves clients once it has registered, caught up with
                    # the metadata and been unfenced (Kafka's broker opens its client listeners
                    # then); its controller listener serves from the start, since the brokers,
                    # this one included, register through it.
                    controller_names = controller_listener_names(self.config)
                    for listener, socks in sockets:
                        if listener.name in controller_names:
                            for s in socks:
                                conns.start_soon(self._accept, s, listener, conns)
                    self.broker.start_background(nursery)
                    if not wait_ready:
                        task_status.started(self)
                    await self.broker.wait_ready()
                    for listener, socks in sockets:
                        if listener.name not in controller_names:
                            for s in socks:
                                conns.start_soon(self._accept, s, listener, conns)
                    if wait_ready:
                        task_status.started(self)
                    await self._stop.wait()
                    # A node of a cluster first has its leaderships moved to other replicas
                    # (Kafka's controlled shutdown), bounded by the shutdown grace.
                    await self.broker.controlled_shutdown(self.config.shutdown_grace_ms / 1000)
                    self._closing.set()
                    # Stop accepting, close idle connections, let busy ones finish.
                    for _, socks in sockets:
                        for s in socks:
                            await s.aclose()
                    for scope in list(self._idle):
                        scope.cancel()
                    self.broker.shutting_down.set()
                    with self.broker.network_clock.move_on_after(
                            self.config.shutdown_grace_ms / 1000):
                        while self._busy:
                            await self._no_busy.wait()
                    conns.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
        finally:
            for _, socks in sockets:
                for s in socks:
                    s.socket.close()
            with trio.CancelScope(shield=True):
                if self._killed:
                    self.broker.abandon()
                else:
                    self.broker.close()

    async def _accept(self, listener_socket, listener: Listener, nursery) -> None:
        while True:
            # At max.connections, stop accepting until a connection closes (Kafka's acceptor
            # waits for a slot the same way; the kernel's backlog holds the rest).
            await self.limits.wait_for_slot()
            try:
                stream = await listener_socket.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as e:
                log.warning("accept failed: %s", e)
                await self.broker.network_clock.sleep(0.01)   # EMFILE and the like: let it ease
                continue
            if self.controls.is_down:
                stream.socket.close()    # a down broker (controls/rules.py) refuses every connection
                continue
            host = _peer_host(stream.socket)
            if not self.limits.admit(host):
                log.info("closing a connection from %s: over max.connections.per.ip (%d)",
                         host, self.limits.limit_for(host))
                stream.socket.close()
                continue
            nursery.start_soon(self._serve_connection, stream, listener, host)

    async def _serve_connection(self, stream: trio.SocketStream, listener: Listener,
                                host: str) -> None:
        # A scope per connection, so that `controls.down()` can close busy connections too.
        with trio.CancelScope() as scope:
            self._connections.add(scope)
            try:
                if self.controls.is_down:
                    stream.socket.close()
                    return
                await self._connection(stream, listener)
            except Exception:
                # The last line of defence, and the reason no client can stop the broker: a
                # connection's task never lets an error out into the nursery that holds every
                # other connection. Known failures close the connection earlier with a reason.
                log.exception("connection from a %s listener failed", listener.name)
                stream.socket.close()
            finally:
                self._connections.discard(scope)
                self.limits.release(host)

    async def _close_connections_when_down(self) -> None:
        while True:
            changed = self.controls.changed()
            if self.controls.is_down:
                for scope in list(self._connections):
                    scope.cancel()
            await changed.wait()

    async def _connection(self, stream: trio.SocketStream, listener: Listener) -> None:
        sock = stream.socket
        _set_buffer_sizes(sock, self.config)
        try:
            peer = "%s:%s" % sock.getpeername()[:2]
            local = "%s:%s" % sock.getsockname()[:2]
        except OSError:
            peer = local = "?"
        self._connection_index += 1
        conn = Connection(peer, listener, f"{local}-{peer}-{self._connection_index}")
        reader = FrameReader(self.config.socket_request_max_bytes)
        sasl = self._sasl.get(listener.name)
        if sasl is not None:
            # A SASL listener's client authenticates first (security/sasl/authenticator.py);
            # until it has, frames are capped at sasl.server.max.receive.size.
            from trioka.security.sasl.authenticator import SaslAuthenticator
            conn.authenticator = SaslAuthenticator(sasl, self.broker.clock)
            reader.max_size = min(reader.max_size, self.config.sasl_server_max_receive_size)
        # Sockets keep real time, also under virtual time (broker.network_clock).
        clock = self.broker.network_clock
        # request_percentage (security/request_time.py): this task's event-loop time is
        # measured while some client has that quota.
        request_time = self.broker.client_quotas.request_time
        request_time.track()
        idle_s = self.config.connections_max_idle_ms / 1000
        node_controls = self.broker.node_controls    # its rtt_ms: node/controls.py
        # What requests are read from and responses written to: the socket itself, or on an SSL
        # or SASL_SSL listener the TLS stream (security/tls.py; no sendfile through TLS).
        transport, send = sock, _send_all
        try:
            if listener.uses_tls:
                transport = await self._tls_handshake(stream, listener, conn, idle_s)
                if transport is None:
                    return
                send = type(transport).send_all
            while not self._closing.is_set():
                # Read until a whole frame is buffered. Only this wait is cancelled on shutdown,
                # and it ends the connection after connections.max.idle.ms with no bytes from
                # the client, as Kafka's selector closes idle connections.
                scope = clock.move_on_at(clock.monotonic() + idle_s)
                self._idle.add(scope)
                try:
                    with scope:
                        if conn.muted_until:
                            # A throttle (KIP-219; a throttle control or a client quota,
                            # security/quotas.py): the connection is muted, nothing more is
                            # read from it, until the throttle time has passed.
                            scope.deadline = conn.muted_until + idle_s
                            await clock.sleep_until(conn.muted_until)
                            conn.muted_until = 0.0
                        while (frame := reader.next_frame()) is None:
                            n = await transport.recv_into(reader.free_space())
                            if n == 0:
                                return
                            reader.received(n)
                            scope.deadline = clock.monotonic() + idle_s
                finally:
                    self._idle.discard(scope)
                if scope.cancelled_caught:
                    if not self._closing.is_set():
                        log.info("closing connection from %s: idle for %d ms", peer,
                                 self.config.connections_max_idle_ms)
                    return
                # `frame` is a view into the reader's buffer, not a copy: the request is handled
                # before the reader is touched again, and produced batches are patched and
                # written from it.
                self._busy += 1
                try:
                    response = await self._dispatch(conn, frame)
                    if conn.authenticator is not None and conn.authenticator.authenticated:
                        reader.max_size = self.config.socket_request_max_bytes
                    if response is not None:
                        if node_controls.rtt_ms:
                            # The node's round-trip delay (node/controls.py): the way there
                            # and back as one wait before the response goes out.
                            await clock.sleep(node_controls.rtt_ms / 1000)
                        # A client that stops reading holds what its response pins (memory,
                        # the file regions of a fetch) only up to connections.max.idle.ms.
                        with clock.move_on_after(idle_s) as sending:
                            await send(transport, response)
                        if sending.cancelled_caught:
                            raise CloseConnection(f"the client took no response bytes for "
                                                  f"{self.config.connections_max_idle_ms} ms")
                finally:
                    self._busy -= 1
                    if not self._busy:
                        self._no_busy.set()
                        self._no_busy = trio.Event()
                if conn.closing:
                    return
        except (CloseConnection, FrameError) as e:
            log.info("closing connection from %s: %s", peer, e)
            if isinstance(e, FrameError) and self.request_log is not None:
                # Before SASL authentication the cap is sasl.server.max.receive.size.
                limit = "socket.request.max.bytes" if conn.authenticator is None or \
                    conn.authenticator.authenticated else "sasl.server.max.receive.size"
                self.request_log.frame_refused(conn, f"{e}; {limit} is {reader.max_size}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, OSError):
            pass
        finally:
            request_time.untrack()
            sock.close()

    async def _tls_handshake(self, stream, listener: Listener, conn: Connection, timeout_s):
        """The TLS handshake of a connection to an SSL or SASL_SSL listener, bounded by
        connections.max.idle.ms: the transport, or None when the client cannot come in (no
        or an untrusted certificate under ssl.client.auth=required, no common protocol, a
        certificate no ssl.principal.mapping.rules rule maps). A client certificate names
        the connection's principal (Kafka's DefaultKafkaPrincipalBuilder)."""
        from trioka.security import tls
        context, rules = self._tls[listener.name]
        with self.broker.network_clock.move_on_after(timeout_s):
            try:
                transport, name = await tls.accept_tls(stream, context, rules)
            except (ssl.SSLError, trio.BrokenResourceError, tls.NoMatchingRule) as e:
                # Kafka's words for it, at INFO: the client's failure, not the broker's.
                cause = e.__cause__ or e     # trio wraps the ssl module's error
                log.info("Failed authentication with %s (SSL handshake failed: %s)",
                         conn.peer, getattr(cause, "reason", None) or cause)
                return None
            if name is not None:
                conn.principal = f"User:{name}"
            return transport
        log.info("Failed authentication with %s (SSL handshake timed out)", conn.peer)
        return None

    async def _dispatch(self, conn: Connection, frame: bytes):
        """Decode, run the handler, encode: the response bytes, or None when none is due."""
        request_log = self.request_log
        arrived = None if request_log is None else request_log.arrival()
        auth = conn.authenticator    # None but on a SASL listener
        if auth is not None and auth.expects_raw_token:
            return await self._raw_sasl_token(conn, frame)
        try:
            header, pos = protocol.parse_request_header(frame)
        except DecodeError as e:
            raise CloseConnection(str(e)) from None
        key, version = header.api_key, header.api_version
        if auth is not None and not auth.admits(key):
            # Before authentication only ApiVersions and the SASL requests, in their turn;
            # after an expired session (KIP-368), only a re-authentication. Kafka closes the
            # connection unanswered.
            raise self._refuse(arrived, conn, header, auth.refusal(key))
        table = self._tables.get(conn.listener.name, APIS)
        if table is CONTROLLER_APIS and self.broker.node_controls.isolated:
            # An isolated node (node/controls.py) is cut off from the other nodes.
            raise self._refuse(arrived, conn, header, "the node is isolated from the cluster")
        api = table.get(key)
        if api is None:
            raise self._refuse(arrived, conn, header, f"API key {key} is not served")
        lo, hi = api.versions
        if not lo <= version <= hi:
            if key == ApiKey.API_VERSIONS and version > hi:
                answer = protocol.encode_response(
                    key, 0, header.correlation_id,
                    api.module.unsupported_version_response(api.versions))
                if arrived is not None:
                    request_log.answered_unhandled(arrived, conn, header, answer, 0)
                return answer
            raise self._refuse(arrived, conn, header,
                               f"{ApiKey(key).name} v{version} is not served")
        try:
            if len(frame) < (PRODUCE_DECODE_IN_THREAD_BYTES if key == ApiKey.PRODUCE
                             else DECODE_IN_THREAD_BYTES):
                request = protocol.decode_request_body(header, frame, pos)
            else:
                # A large frame may hold hundreds of thousands of tiny elements: decoded in a
                # worker thread, so other connections are served meanwhile. (Decoding builds
                # new objects only; nothing of the broker's state is touched.) The thread's
                # time counts for request_percentage (security/request_time.py).
                request = await self.broker.client_quotas.request_time.run_in_thread(
                    protocol.decode_request_body, header, frame, pos)
        except DecodeError as e:
            raise self._refuse(arrived, conn, header,
                               f"{ApiKey(key).name} v{version}: {e}") from None
        ctx = RequestContext(header, conn)
        if arrived is not None:
            return await self._logged(arrived, api, request, ctx, frame[pos:])
        return await self._respond(api, request, ctx)

    async def _raw_sasl_token(self, conn: Connection, frame) -> list:
        """A raw SASL token (after SaslHandshake v0): the size-prefixed challenge, no header.
        A failure closes the connection after connection.failed.authentication.delay.ms."""
        from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError
        from trioka.security.sasl.authenticator import failed_authentication_delay, \
            raw_token_frame
        try:
            answer = raw_token_frame(conn.authenticator, bytes(frame))
        except (SaslAuthenticationError, IllegalSaslStateError) as e:
            await failed_authentication_delay(self.broker)
            raise CloseConnection(f"Failed authentication with {conn.peer} ({e})") from None
        if conn.authenticator.authenticated:
            conn.principal = conn.authenticator.principal
        if self.broker.client_quotas.requests_active:
            # Kafka's network thread serves the SASL exchange: not charged to
            # request_percentage (security/request_time.py).
            self.broker.client_quotas.request_time.take()
        return answer

    async def _respond(self, api, request, ctx: RequestContext):
        """Handle a decoded request as the controls decide: the response frame, or None."""
        if self.controls.active:
            fault = self.controls.decide(ctx.header, request)
            if fault is not None:
                if ctx.log_entry is not None:
                    ctx.log_entry.fault = fault
                return await self._apply_fault(fault, api, request, ctx)
        response = await self._handle(api, request, ctx)
        if response is None:
            return None
        if self.broker.client_quotas.requests_active:
            self._request_quota(api, ctx, response)
        if ctx.large_response:
            # Tens of milliseconds of encoding: in a worker thread, which gives the event loop
            # the interpreter back every few milliseconds (sys.getswitchinterval). The response
            # is the handler's own new objects; nothing else touches them meanwhile.
            return await self.broker.client_quotas.request_time.run_in_thread(
                self._encode, ctx, response)
        return self._encode(ctx, response)

    def _request_quota(self, api, ctx: RequestContext, response) -> None:
        """request_percentage (security/quotas.py): the request's event-loop time counts
        against its client, unless Kafka exempts it; over the quota the response carries the
        throttle time and the connection is muted (KIP-219). Produce and Fetch decide in their
        handlers, where the byte-rate throttle is decided with it."""
        from trioka.security import quotas
        key = ctx.header.api_key
        if key == ApiKey.PRODUCE or key == ApiKey.FETCH:
            return
        if api is CONTROLLER_APIS.get(key) or quotas.exempt_from_request_quota(ctx):
            quotas.skip_request_time(self.broker)
            return
        ms = quotas.request_throttle(self.broker, ctx)
        if ms and hasattr(response, "throttle_time_ms"):
            response.throttle_time_ms = max(response.throttle_time_ms or 0, ms)

    async def _logged(self, arrived, api, request, ctx: RequestContext, body):
        """_respond, with the request (`body`: its bytes) and what the client got in the
        request log. Once logged, the request and response messages are the log's (it replaces
        their record batches by summaries): nothing here uses them after."""
        request_log = self.request_log
        entry = ctx.log_entry = request_log.start(arrived, ctx.connection, ctx.header, request,
                                                  body)
        try:
            frame = await self._respond(api, request, ctx)
        except CloseConnection as e:
            request_log.finish(entry, DISCONNECTED, error=str(e))
            raise
        request_log.finish(entry, NO_RESPONSE if frame is None else RESPONDED, frame=frame)
        return frame

    def _refuse(self, arrived, conn: Connection, header, reason: str) -> CloseConnection:
        """The connection is closed without handling the request: logged, when the request
        log is on, and the exception to raise."""
        if arrived is not None:
            self.request_log.refused(arrived, conn, header, reason)
        return CloseConnection(reason)

    def _encode(self, ctx: RequestContext, response) -> list:
        """The response frame. A response this version cannot carry (a string over 32767 bytes
        in a non-flexible version, say) is a broker bug or a hostile request's doing: it closes
        this connection, as any failure while answering one request does."""
        header = ctx.header
        if ctx.log_entry is not None:
            ctx.log_entry.response = response
        try:
            return protocol.encode_response(header.api_key, header.api_version,
                                            header.correlation_id, response)
        except Exception as e:
            log.warning("cannot encode the %s v%d response to %s: %s",
                        ApiKey(header.api_key).name, header.api_version, ctx.connection.peer, e)
            raise CloseConnection("response could not be encoded") from None

    async def _handle(self, api, request, ctx: RequestContext):
        """The handler's response message. A bug in a handler is logged and closes this
        connection; the broker and its other connections carry on."""
        try:
            authorizer = self.broker.authorizer
            # The controller listener's APIs (ControllerApis) are not checked: see
            # security/authorizer.py.
            if authorizer is not None and api is not CONTROLLER_APIS.get(ctx.header.api_key):
                # Imported here: a broker without an authorizer never loads it (startup).
                from trioka.security.authorizer import serve as authorizer_serve
                return await authorizer_serve(authorizer, api, self.broker, request, ctx)
            return await api.handle(self.broker, request, ctx)
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("handler %s v%d failed on a request from %s",
                          ApiKey(ctx.header.api_key).name, ctx.api_version, ctx.connection.peer)
            raise CloseConnection("internal error") from None

    async def _apply_fault(self, fault, api, request, ctx: RequestContext):
        """Serve a request the way broker.controls decided (controls/rules.py)."""
        header = ctx.header
        if fault.delay_ms:
            with self.broker.network_clock.move_on_after(fault.delay_ms / 1000):
                await self.broker.shutting_down.wait()
                raise CloseConnection("shutting down while a control held the request")
        rule = fault.rule
        if fault.action == "down":
            raise CloseConnection("the broker is down (controls)")
        if fault.action == "error":
            response = error_answer(header, request, fault.error, fault.message)
            if response is None:
                raise CloseConnection(f"control {rule.id}: a failed acks=0 produce")
        elif fault.action == "disconnect" and rule.when == "before":
            raise CloseConnection(f"control {rule.id}: disconnect before handling")
        elif fault.failed_partitions:
            # Some partitions fail, the others are handled, in one response.
            response = await handle_partly(header, request, fault.failed_partitions,
                                           lambda rest: self._handle(api, rest, ctx),
                                           self.controls.topic_name)
            if header.api_key == ApiKey.PRODUCE and request.acks == 0:
                # No response carries a failed acks=0 produce: Kafka closes the connection.
                raise CloseConnection("a control failed partitions of an acks=0 produce")
        else:
            response = await self._handle(api, request, ctx)
        if fault.action == "disconnect":
            raise CloseConnection(f"control {rule.id}: disconnect after handling")
        if fault.action == "drop_response" or response is None:
            return None
        if fault.throttle_ms:
            # KIP-219: the response says how long the client is throttled, goes out at once,
            # and the connection is muted that long (_connection reads nothing meanwhile).
            if hasattr(response, "throttle_time_ms"):
                response.throttle_time_ms = max(response.throttle_time_ms or 0,
                                                fault.throttle_ms)
            ctx.connection.muted_until = \
                self.broker.network_clock.monotonic() + fault.throttle_ms / 1000
        return self._encode(ctx, response)


def _tls_setup(config: Config, listener_name: str):
    """A TLS listener's server context and principal mapping rules, made at startup so that a
    bad keystore or rule stops the start (ValueError: one line naming the key)."""
    from trioka.security import tls
    return tls.server_context(config, listener_name), tls.mapping_rules(config, listener_name)


def _sasl_setup(config: Config, listener_name: str, broker):
    """A SASL listener's mechanisms (security/sasl/authenticator.py), made at startup so that a
    bad mechanism or JAAS text stops the start (ValueError: one line naming the key). The SASL
    modules are loaded only by a broker with a SASL listener."""
    from trioka.security.sasl.authenticator import listener_mechanisms
    return listener_mechanisms(config, listener_name,
                               lambda user, mechanism: broker.scram_credentials.lookup(
                                   user, mechanism),
                               broker.clock.wall_ms, broker.network_clock)


def _peer_host(sock) -> str:
    try:
        return sock.getpeername()[0]
    except OSError:
        return "?"


class ConnectionLimits:
    """max.connections and max.connections.per.ip (with max.connections.per.ip.overrides):
    how many client connections are open, in all and per client address."""

    def __init__(self, config: Config):
        self.max_connections = config.max_connections
        self.max_per_ip = config.max_connections_per_ip
        self.overrides = parse_connection_overrides(config.max_connections_per_ip_overrides)
        self.open = 0
        self.per_host: dict[str, int] = {}
        self._slot_freed = trio.Event()

    def limit_for(self, host: str) -> int:
        return self.overrides.get(host, self.max_per_ip)

    def admit(self, host: str) -> bool:
        """Count a new connection from `host`, or refuse it (False) over the host's limit."""
        if self.per_host.get(host, 0) >= self.limit_for(host):
            return False
        self.per_host[host] = self.per_host.get(host, 0) + 1
        self.open += 1
        return True

    def release(self, host: str) -> None:
        self.open -= 1
        left = self.per_host[host] - 1
        if left:
            self.per_host[host] = left
        else:
            del self.per_host[host]
        self._slot_freed.set()
        self._slot_freed = trio.Event()

    async def wait_for_slot(self) -> None:
        while self.open >= self.max_connections:
            await self._slot_freed.wait()


def _set_buffer_sizes(sock, config: Config) -> None:
    """Kafka's socket.send.buffer.bytes / socket.receive.buffer.bytes (-1: the OS default).
    A send buffer that holds a whole fetch response lets the broker hand it to the kernel in
    one go instead of waiting for the consumer to drain it piece by piece."""
    for option, size in ((socket.SO_SNDBUF, config.socket_send_buffer_bytes),
                         (socket.SO_RCVBUF, config.socket_receive_buffer_bytes)):
        if size > 0:
            sock.setsockopt(socket.SOL_SOCKET, option, size)


_BIG_CHUNK = 32 * 1024
_IOV_MAX = 512


def _gather(chunks: list) -> list:
    """Small encoded pieces joined, large ones (stored batches read for a Fetch) kept apart, so a
    response goes out with gathered writes and no copy of the record data; file regions stay
    apart too, for sendfile."""
    out: list = []
    small: list = []
    for c in chunks:
        if type(c) is FileRegion or len(c) >= _BIG_CHUNK:
            if small:
                out.append(b"".join(small))
                small = []
            out.append(c)
        else:
            small.append(c)
    if small:
        out.append(b"".join(small))
    return out


async def _send_all(sock, chunks: list) -> None:
    parts = _gather(chunks)
    try:
        i = 0
        while i < len(parts):
            if type(parts[i]) is FileRegion:
                await _send_region(sock, parts[i])
                i += 1
                continue
            # The run of in-memory parts up to the next file region, in one gathered write.
            j = i
            while j < len(parts) and type(parts[j]) is not FileRegion:
                j += 1
            views = [memoryview(p) for p in parts[i:j]]
            while views:
                sent = await sock.sendmsg(views[:_IOV_MAX])
                # Drop what went out; a partial write leaves the rest of a part for next time.
                while views and sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                if sent:
                    views[0] = views[0][sent:]
            i = j
    finally:
        for p in parts:
            if type(p) is FileRegion:
                p.close()


async def _send_region(sock, region: FileRegion) -> None:
    """os.sendfile from the segment file to the socket: the kernel copies, Python does not."""
    fd = sock.fileno()
    offset, remaining = region.offset, region.length
    while remaining:
        try:
            n = os.sendfile(fd, region.fd, offset, remaining)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        if n == 0:
            raise trio.BrokenResourceError("the file region ended early")
        offset += n
        remaining -= n
    await trio.lowlevel.checkpoint()


async def serve(config: Config | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a broker until cancelled; `await nursery.start(serve, config)` returns the Server."""
    server = Server(config or Config())
    await server.run(task_status=task_status)


