"""The request log: every request a broker serves and what it answered, decoded, in a bounded ring
and optionally appended to a file as JSON lines, so a test can assert on what a client really
did ("sent exactly one InitProducerId", "never used Produce below v9", "committed its offsets
before it closed").

Kafka has the same thing as the `kafka.request.logger` log4j logger at DEBUG/TRACE; trioka keeps
it in memory, queryable: `broker.requests(api=None, client_id=None, since=None, limit=None)`,
`GET /requests` on the admin endpoint, `trioka requests`. Each entry is a dict:

    seq                      a number that grows with every entry logged in this process
                             (across the nodes of an embedded cluster too): `since` takes it
    time_ms                  when the whole request had arrived (the broker's clock, wall ms)
    node, listener           the node id, and the listener's name (PLAINTEXT, CONTROLLER, ...)
    connection               Kafka's connection id: local address-peer address-index
    client_address           the peer, host:port
    client_id                the request header's client id
    client_software_name,    what the client said it is in ApiVersions v3+ (KIP-511), e.g.
    client_software_version  "confluent-kafka-python" "2.16.1-rdkafka-2.16.0", as the connection
                             holds it; null for a client that sends ApiVersions v0-2
    security_protocol,       the listener's protocol (PLAINTEXT, SSL, ...) and the client's
    principal                KafkaPrincipal ("User:ANONYMOUS", "User:<name>" from its TLS
                             certificate or SASL), as Kafka's request logger prints them
    api, api_key, api_version   Kafka's API name (Produce), key and the version used
    correlation_id
    latency_ms               from the whole request read to its response ready to send (Kafka's
                             totalTimeMs also counts the send), on the broker's monotonic clock
    outcome                  "responded"; "no_response" (acks=0 produce, or a drop_response
                             control); "disconnected" (the broker closed the connection instead:
                             a request it cannot parse or does not serve, a disconnect or down
                             control, a handler failure)
    error_codes              {error name: count} of every non-zero error code in the response
                             (messages.py), {} when none
    fault                    the fault-injection control applied (controls/rules.py): {"rule",
                             "action", "delay_ms", "error", "throttle_ms"}, or null. An `error`
                             control's answer is logged as the response the client got.
    error                    why the connection was closed, for "disconnected"; else null
    request, response        the messages as JSON (messages.py); null when there is none

Entries are listed in the order they were logged, which is when each was answered (a long-poll
Fetch is logged when it returns, after requests that arrived later): so `since=SEQ` never misses
one, and `--follow` polls with the last seq it saw. `limit` keeps the newest N of what matched.

Configuration: `trioka.request.log.size` entries are kept (default 5000; 0 keeps none),
`trioka.request.log.file` appends every entry as a JSON line to a file (`--request-log FILE`;
default none), `trioka.request.log.payloads` adds each batch's records to the log (default false:
batch headers only).

Cost: logging a request does no decoding and no JSON; entries are rendered only when the log is
read. A request or response without record batches is kept as a copy of its bytes (one object,
which Python's garbage collector never walks, unlike the message's tree of objects), decoded
again when read. One with batches, a Produce request or a Fetch response, is used as its
objects, and what would not survive the request, the batches (a view into the connection's
reused read buffer, which the handler patches; file regions sent with sendfile), is summarised
from their headers (messages.RecordsFields), in time proportional to the number of batches; the
summaries replace the batches, and the message is kept frozen into bytes (messages._freezers;
a log of thousands of messages as objects made each middle-generation collection walk them:
30-40 ms pauses of the event loop under load). The file is written by a background task,
the JSON rendered and written in a worker thread, in batches of whatever was logged while the
previous batch was being written; if the file falls more than MAX_FILE_BACKLOG entries behind,
entries are dropped from it and a `{"dropped_entries": N}` line says how many.

Strict mode (`trioka.strict`) also hands every entry, rendered, to the node's conformance record
(conformance.py) as it is logged, whether or not the ring keeps it.
"""

import collections
import itertools
import json
import logging
import os

import trio

from trioka.controls.rules import api_key_of, api_name
from trioka.observe.messages import error_codes, message_json, records_fields
from trioka.wire import protocol, schema

log = logging.getLogger("trioka.requests")

DEFAULT_SIZE = 5000
# Entries waiting for the file beyond this many are dropped (counted in a line of the file).
MAX_FILE_BACKLOG = 100_000

RESPONDED = "responded"
NO_RESPONSE = "no_response"
DISCONNECTED = "disconnected"

# One sequence for the whole process, so the entries of several nodes in one process merge in
# the order they were logged.
_sequence = itertools.count(1)


class Entry:
    """One request and what the client got; rendered to JSON only when read (to_json).

    What is kept is chosen for the garbage collector as much as for memory: a message without
    record batches is kept as its bytes (one object the collector never walks, decoded again
    when read) rather than as its tree of objects; a message with batches (a Produce request,
    a Fetch response) frozen into bytes too (messages._freezers), the batches replaced by
    their summaries, made objects again when read."""
    __slots__ = ("seq", "arrived", "node", "connection", "api_key", "api_version",
                 "correlation_id", "client_id", "latency_ms", "outcome", "request",
                 "request_body", "request_records", "response", "response_frame",
                 "response_version", "fault", "error")

    def __init__(self, arrived: tuple[float, int], node: int, connection, header):
        self.arrived = arrived       # (monotonic seconds, wall ms), RequestLog.arrival()
        self.node = node
        self.connection = connection   # its fields are read when the entry is rendered
        self.api_key = header.api_key
        self.api_version = self.response_version = header.api_version
        self.correlation_id = header.correlation_id
        self.client_id = header.client_id
        self.request = None          # the request message, when it has records fields
                                     # (frozen into bytes once logged: finish())
        self.request_body = None     # else its bytes
        self.request_records = None  # its batches' summaries until it is handled
        # Set by the server when it encodes the handler's response (server._encode).
        self.response = None
        self.response_frame = None   # the response's bytes (no size prefix), when kept so
        self.fault = None            # the controls' decision (controls.rules.Fault)
        self.error = None

    def to_json(self, messages: bool = True) -> dict:
        """The entry as the module's docstring describes it; `messages=False` leaves the request
        and the response out (null), for a reader that needs only the rest (conformance.py)."""
        conn = self.connection
        api = schema.api(self.api_key)
        request, response = self.request, self.response
        # Messages with records fields are kept frozen (messages._freezers), others as bytes.
        if type(request) is bytes:
            request = records_fields(api.request).thaw(request)
        if type(response) is bytes:
            response = records_fields(api.response).thaw(response)
        if request is None and self.request_body is not None and messages:
            request, _ = api.request.decode(memoryview(self.request_body), 0, self.api_version)
        if response is None and self.response_frame is not None:
            _, response = protocol.decode_response(self.api_key, self.response_version,
                                                   self.response_frame)
        fault = self.fault
        return {
            "seq": self.seq, "time_ms": self.arrived[1], "node": self.node,
            "listener": conn.listener.name, "connection": conn.id,
            "client_address": conn.peer, "client_id": self.client_id,
            "client_software_name": conn.client_software_name,
            "client_software_version": conn.client_software_version,
            "security_protocol": conn.security_protocol, "principal": conn.principal,
            "api": api.name, "api_key": self.api_key, "api_version": self.api_version,
            "correlation_id": self.correlation_id, "latency_ms": round(self.latency_ms, 3),
            "outcome": self.outcome,
            "error_codes": error_codes(response, api.response, self.response_version),
            "fault": None if fault is None else {
                "rule": fault.rule.id if fault.rule is not None else None,
                "action": fault.action or "delay", "delay_ms": fault.delay_ms,
                "error": None if fault.error is None else fault.error.name,
                "throttle_ms": fault.throttle_ms},
            "error": self.error,
            "request": message_json(request, api.request, self.api_version) if messages
            else None,
            "response": message_json(response, api.response, self.response_version) if messages
            else None,
        }


def _frozen(fields, message):
    """The message frozen into bytes (messages._freezers), or the message itself should a value
    in it be one marshal does not take (a broker bug, logged: the entry is still kept)."""
    try:
        return fields.freeze(message)
    except (ValueError, TypeError):
        log.exception("request log: cannot freeze %s", type(message).__name__)
        return message


class RequestLog:
    """One node's request log: the ring (`size` newest entries) and the file writer."""

    def __init__(self, clock, node_id: int, *, size: int = DEFAULT_SIZE, file: str = "",
                 payloads: bool = False):
        if size < 0:
            raise ValueError(f"trioka.request.log.size must be 0 or more, not {size}")
        self.clock = clock
        self._monotonic, self._wall_ms = clock.monotonic, clock.wall_ms
        self._by_api: dict[int, tuple] = {}
        self.node_id = node_id
        self.size = size
        self.ring: collections.deque = collections.deque(maxlen=size)
        self.payloads = payloads
        self.file = file or None
        self._fd = open_log_file(self.file) if self.file else None
        self._backlog: list[Entry] = []
        self.max_backlog = MAX_FILE_BACKLOG
        self._dropped = 0
        self._wake = trio.Event()
        # Strict mode's conformance record (conformance.py), fed every entry; None otherwise.
        self.conformance = None

    @classmethod
    def from_config(cls, config, clock, node_id: int) -> "RequestLog | None":
        """The log the config asks for; None when it keeps nothing (size 0, no file) and the
        broker is not in strict mode (`trioka.strict`, whose conformance record it feeds)."""
        size, file = config.trioka_request_log_size, config.trioka_request_log_file
        if size == 0 and not file and not config.trioka_strict:
            return None
        request_log = cls(clock, node_id, size=size, file=file,
                          payloads=config.trioka_request_log_payloads)
        if config.trioka_strict:
            # Loaded only in strict mode (startup).
            from trioka.observe.conformance import Conformance
            request_log.conformance = Conformance()
        return request_log

    # --- capture (the server, per request) ---

    def arrival(self) -> tuple[float, int]:
        """Now, as an entry's start: (monotonic seconds, wall ms)."""
        return self._monotonic(), self._wall_ms()

    def _kinds(self, api_key: int) -> tuple:
        """(the API's schema, its request's RecordsFields, its response's), per API key."""
        found = self._by_api.get(api_key)
        if found is None:
            api = schema.api(api_key)
            found = self._by_api[api_key] = (api, records_fields(api.request),
                                             records_fields(api.response))
        return found

    def start(self, arrived: tuple[float, int], connection, header, request, body) -> Entry:
        """An entry for a request about to be handled (`body`: its bytes after the header, a
        view into the connection's read buffer). A request with record batches has them
        summarised now, before the handler patches them and the buffer is reused; any other
        is kept as a copy of its bytes."""
        entry = Entry(arrived, self.node_id, connection, header)
        fields = (self._by_api.get(header.api_key) or self._kinds(header.api_key))[1]
        if fields is None:
            entry.request_body = bytes(body)
        else:
            entry.request = request
            entry.request_records = records = []
            fields.collect(request, records, self.payloads)
        return entry

    def finish(self, entry: Entry, outcome: str, *, frame=None,
               error: str | None = None) -> None:
        """Log `entry` with what the client got: `frame`, the encoded response (whose message
        the server put on the entry), or none. From here on the log owns the request and the
        response messages: their records fields are replaced by their batches' summaries."""
        entry.latency_ms = (self._monotonic() - entry.arrived[0]) * 1000
        entry.outcome = outcome
        entry.error = error
        _, request_fields, response_fields = \
            self._by_api.get(entry.api_key) or self._kinds(entry.api_key)
        if entry.request_records is not None:
            request_fields.put(entry.request, iter(entry.request_records))
            entry.request_records = None
            entry.request = _frozen(request_fields, entry.request)
        response, entry.response = entry.response, None
        if outcome == RESPONDED:
            if response_fields is not None and response is not None:
                response_fields.in_place(response, self.payloads)
                entry.response = _frozen(response_fields, response)
            elif frame is not None:
                # The frame's chunks after the int32 size (wire/framing.frame puts it first).
                entry.response_frame = b"".join(frame[1:]) if len(frame[0]) == 4 else \
                    b"".join(frame)[4:]
        entry.seq = next(_sequence)
        if self.conformance is not None:
            self._conform(entry)
        if self.size:
            self.ring.append(entry)
        if self._fd is not None:
            if len(self._backlog) >= self.max_backlog:
                self._dropped += 1
            else:
                self._backlog.append(entry)
                self._wake.set()

    def _conform(self, entry: Entry) -> None:
        """Strict mode: the entry, rendered, to the conformance record. A failure here is a
        bug of the broker's, logged; the request is answered all the same."""
        try:
            self.conformance.observe(entry.to_json(messages=False), entry.to_json)
        except Exception:
            log.exception("conformance: cannot take request log entry %d (%s)", entry.seq,
                          api_name(entry.api_key))

    def frame_refused(self, connection, reason: str) -> None:
        """A request refused by its declared size before its header was read (the connection
        is closed): a `request_too_large` violation in strict mode."""
        if self.conformance is not None:
            self.conformance.request_too_large(connection.id, reason)

    def refused(self, arrived: tuple[float, int], connection, header, error: str) -> None:
        """Log a request the broker closed the connection on without handling it (an API or
        version it does not serve, a body that does not parse)."""
        self.finish(Entry(arrived, self.node_id, connection, header), DISCONNECTED,
                    error=error)

    def answered_unhandled(self, arrived: tuple[float, int], connection, header, frame,
                           version: int) -> None:
        """Log a request answered without a handler, with `frame` encoded at `version`: an
        ApiVersions of a version above the broker's, answered at v0 with UNSUPPORTED_VERSION
        (KIP-511)."""
        entry = Entry(arrived, self.node_id, connection, header)
        entry.response_version = version
        self.finish(entry, RESPONDED, frame=frame)

    # --- reading ---

    def select(self, api=None, client_id: str | None = None, since: int | None = None,
               limit: int | None = None) -> list[Entry]:
        """The entries kept that match, oldest first: of API `api` (Kafka's name, Produce or
        PRODUCE, or the key; ValueError for an unknown one), with this client id, logged after
        the entry numbered `since`; the newest `limit` of them."""
        return select_entries([self], api, client_id, since, limit)

    def requests(self, api=None, client_id: str | None = None, since: int | None = None,
                 limit: int | None = None) -> list[dict]:
        """select(), rendered: the dicts described in the module's docstring."""
        return render_entries(self.select(api, client_id, since, limit))

    # --- the file ---

    async def write_file(self) -> None:
        """Append the logged entries to the file until cancelled, rendered and written in a
        worker thread, a batch at a time; what is left is written on the way out."""
        try:
            while True:
                if not self._backlog and not self._dropped:
                    self._wake = trio.Event()
                    await self._wake.wait()
                await self._write_batch()
        finally:
            if self._backlog or self._dropped:
                await self._write_batch()

    async def _write_batch(self) -> None:
        """Write what was logged so far; once taken, a batch is written even if the writer is
        being cancelled (shutdown)."""
        batch, dropped = self._take()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._write, batch, dropped)

    def close(self) -> None:
        """Close the file (once the writer has stopped)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _take(self) -> tuple[list, int]:
        batch, self._backlog = self._backlog, []
        dropped, self._dropped = self._dropped, 0
        return batch, dropped

    def _write(self, batch: list, dropped: int) -> None:
        lines = []
        for entry in batch:
            try:
                lines.append(json.dumps(entry.to_json()))
            except Exception:
                log.exception("cannot render request log entry %d (%s)", entry.seq,
                              api_name(entry.api_key))
        if dropped:
            lines.append(json.dumps({"dropped_entries": dropped}))
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        try:
            view = memoryview(data)
            while view and self._fd is not None:
                view = view[os.write(self._fd, view):]
        except OSError as e:
            log.warning("cannot append to the request log %s: %s", self.file, e)


def open_log_file(path: str) -> int:
    """The request log file opened for appending (created if missing); ValueError naming the
    key and the file when it cannot be."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise ValueError(f"trioka.request.log.file: cannot open {path}: "
                         f"{e.strerror or e}") from None


def check_config(config) -> None:
    """ValueError, naming the key, for a request log setting the broker cannot use."""
    size = config.trioka_request_log_size
    if size < 0:
        raise ValueError(f"trioka.request.log.size must be 0 or more, not {size}")
    if config.trioka_request_log_file:
        os.close(open_log_file(config.trioka_request_log_file))


def select_entries(logs, api=None, client_id: str | None = None, since: int | None = None,
           limit: int | None = None) -> list[Entry]:
    """RequestLog.select over several logs (the nodes of a cluster), merged in seq order."""
    key = None if api is None else api_key_of(api)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    found = []
    for request_log in logs:
        for entry in reversed(request_log.ring):
            if since is not None and entry.seq <= since:
                break
            if (key is None or entry.api_key == key) and \
                    (client_id is None or entry.client_id == client_id):
                found.append(entry)
    found.sort(key=lambda e: e.seq)
    if limit is not None:
        found = found[len(found) - limit:] if limit else []
    return found


def render_entries(entries: list[Entry]) -> list[dict]:
    """The entries as the dicts of the module's docstring."""
    return [entry.to_json() for entry in entries]
