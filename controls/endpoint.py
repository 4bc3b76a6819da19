"""The admin endpoint: `broker.controls` over HTTP/1.1 and JSON, for tests that run the broker as
a process (`--admin-listener HOST:PORT`, config key `trioka.admin.listener`; port 0 picks one,
printed at the end of the ready line as `admin http://HOST:PORT`).

    GET    /controls            {"down": false, "rules": [{"id": 1, "action": "error", ...}]}
    POST   /controls            a rule as JSON -> 201 and the rule with its id; a list of
                                rules (a fault file's, controls/fault_file.py) -> 201 and the
                                list, all added or none
    DELETE /controls            remove every rule -> {"removed": N}
    DELETE /controls/ID         remove one rule -> {"removed": 1}, or 404
    POST   /controls/down       stop serving clients -> the state, as GET /controls
    POST   /controls/up         serve them again -> the state
    POST   /retention           run a retention pass now -> {"segments_deleted": N}
    POST   /compaction          clean every compacted log now -> {"partitions_cleaned": N}
    GET    /requests            the request log (observe/request_log.py), every node's merged:
                                {"requests": [...]}; ?api=Produce&client_id=X narrow it,
                                ?since=SEQ lists what was logged after entry SEQ, ?limit=N the
                                newest N
    GET    /report              the conformance report (observe/conformance.py), every node's
                                merged: {"strict": true, "clients": [...]};
                                ?format=markdown gives it as Markdown

The node controls (node/cluster.py), for the nodes of `trioka serve --nodes N`:

    GET    /nodes               {"nodes": [{"id": 1, "state": "running", "roles": [...],
                                            "listeners": [...], "isolated": false,
                                            "slow_ms": 0}, ...]}
    GET    /nodes/ID            one node, as above
    POST   /nodes/ID/stop       controlled shutdown, then a clean one -> the node
    POST   /nodes/ID/kill       as SIGKILL: no flush, no checkpoint, no clean close -> the node
    POST   /nodes/ID/start      start it again (recovering from its log dir) -> the node
    POST   /nodes/ID/isolate    cut it off from the other nodes -> the node
    POST   /nodes/ID/heal       end its faults -> the node
    POST   /nodes/ID/slow       {"ms": N}: delay its replica fetches -> the node
    POST   /nodes/ID/rtt        {"ms": N}: hold each of its responses N ms (a round trip)
    ...    /nodes/ID/controls, /nodes/ID/retention, /nodes/ID/compaction
                                the routes above, on that node (plain /controls: node 1)

An unknown node is 404, a bad body 400, a control on a node that is not running 409. A single
broker (no --nodes) lists itself as its one node and takes isolate, heal, slow and rtt; it
cannot stop, kill or start itself from its own endpoint (409): signal its process instead. A
rule with a `node` POSTed to /controls goes to that node's rules (400 for a node not there).

Virtual time (clock.py; a broker or cluster started with trioka.virtual.time / --virtual-time):

    GET    /clock               {"wall_ms": N, "virtual": true}
    POST   /clock/advance       {"ms": N}: move the clock N ms forward, running in order what
                                falls due on the way -> the clock, once that has run
    POST   /clock/set           {"wall_ms": N}: move it to N (never back: 400) -> the clock

On a real clock GET /clock shows `"virtual": false` and the POSTs are refused (409).

A rule's JSON is controls.Rule's fields: {"action": "error", "api": "Produce",
"error": "NOT_LEADER_OR_FOLLOWER", "count": 3}; an invalid one is answered 400 with
{"error": "..."}. One request per connection (`Connection: close`); a request must arrive whole
within REQUEST_TIMEOUT_S and stay under the size limits, or the connection is closed. This is not
Kafka's protocol and carries no authentication: bind it to 127.0.0.1.
"""

import json
import logging
import urllib.parse

import trio

from trioka.controls.rules import Controls, Rule
from trioka.observe.conformance import (conformance_report, from_entries, report_of,
                                        to_markdown)
from trioka.observe.request_log import render_entries, select_entries

log = logging.getLogger("trioka.admin")

REQUEST_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
# A node control (a stop waits for the controlled and the graceful shutdown) may take this long.
NODE_ACTION_TIMEOUT_S = 60.0
# An advance of the virtual clock runs what falls due on the way: days take about a second.
CLOCK_MOVE_TIMEOUT_S = 60.0
NODE_ACTIONS = ("stop", "kill", "start", "isolate", "heal", "slow", "rtt")
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
            413: "Payload Too Large", 500: "Internal Server Error"}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `http://HOST:PORT`) -> (host, port)."""
    rest = text.strip()
    if rest.startswith("http://"):
        rest = rest[len("http://"):]
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"admin listener {text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """The request line and headers (names lower-cased) of an HTTP/1.1 request head."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return method.upper(), target, headers


def route(controls: Controls, method: str, path: str, body: bytes,
          controls_of=None) -> tuple[int, object]:
    """(status, JSON value) for one request: the whole API of the endpoint, plain `def`.
    `controls_of(node_id)`, where there are nodes, gives the rules of a rule's `node`."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if len(parts) == 1 and parts[0] in ("retention", "compaction"):
        if method != "POST":
            raise HttpError(405, f"{method} /{parts[0]}: use POST")
        count = controls.operations[parts[0]]()
        return 200, {"segments_deleted" if parts[0] == "retention" else "partitions_cleaned":
                     count}
    if not parts or parts[0] != "controls" or len(parts) > 2:
        raise HttpError(404, f"no such resource {path}; see /controls")
    if len(parts) == 1:
        if method == "GET":
            return 200, controls.state()
        if method == "POST":
            try:
                data = json.loads(body or b"null")
            except ValueError as e:
                raise HttpError(400, f"the body is not JSON: {e}") from None
            except RecursionError:
                raise HttpError(400, "the body is not JSON a rule can be: nested too deeply") \
                    from None
            added = _add_rules(controls, data, controls_of)
            return 201, added if isinstance(data, list) else added[0]
        if method == "DELETE":
            return 200, {"removed": controls.clear()}
        raise HttpError(405, f"{method} /controls: use GET, POST or DELETE")
    what = parts[1]
    if what in ("down", "up"):
        if method != "POST":
            raise HttpError(405, f"{method} /controls/{what}: use POST")
        controls.down() if what == "down" else controls.up()
        return 200, controls.state()
    if not what.isdigit():
        raise HttpError(404, f"no such resource {path}")
    if method == "GET":
        rule = controls.rule(int(what))
        if rule is None:
            raise HttpError(404, f"no control {what}")
        return 200, rule.to_dict()
    if method == "DELETE":
        if not controls.remove(int(what)):
            raise HttpError(404, f"no control {what}")
        return 200, {"removed": 1}
    raise HttpError(405, f"{method} /controls/{what}: use GET or DELETE")


def _add_rules(controls: Controls, data, controls_of) -> list[dict]:
    """Add a POSTed rule, or list of rules, each to its node's rules (`node`, where
    `controls_of` knows the nodes), all or none; the rules added, as data."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise HttpError(400, "no rules (an empty list)")
    placed = []
    for number, item in enumerate(items, 1):
        where = f"rule {number}: " if isinstance(data, list) else ""
        try:
            rule = Rule.from_dict(item)
            target = controls
            if controls_of is not None and rule.node is not None:
                target = controls_of(rule.node)
            target.check(rule)
        except (ValueError, TypeError, LookupError) as e:
            raise HttpError(400, where + str(e.args[0] if e.args else e)) from None
        except RuntimeError as e:
            raise HttpError(409, where + str(e)) from None
        placed.append((target, rule))
    return [target.add(rule).to_dict() for target, rule in placed]


class OneBroker:
    """The nodes of a single broker (no --nodes), as the endpoint sees them: this one. Its
    NodeControls take isolate, heal, slow and rtt; stop, kill and start are refused."""

    def __init__(self, server):
        self.server = server

    def _check(self, node_id: int | None) -> None:
        if node_id is not None and node_id != self.server.broker.node_id:
            raise LookupError(f"no node {node_id} (this broker is node "
                              f"{self.server.broker.node_id})")

    def describe(self) -> list[dict]:
        broker = self.server.broker
        roles = [r.strip() for r in self.server.config.process_roles.split(",") if r.strip()]
        return [{"id": broker.node_id, "state": "running", "roles": roles,
                 "listeners": [repr(lst) for lst in self.server.listeners],
                 **broker.node_controls.state()}]

    def controls_of(self, node_id: int | None = None) -> Controls:
        self._check(node_id)
        return self.server.controls

    def request_logs(self) -> list:
        """This broker's request log (observe/request_log.py), unless it keeps nothing."""
        return [] if self.server.request_log is None else [self.server.request_log]

    def clock_state(self) -> dict:
        return self.server.broker.clock_state()

    async def advance_time(self, ms: int) -> int:
        return await self.server.broker.advance_time(ms)

    async def set_time(self, wall_ms: int) -> int:
        return await self.server.broker.set_time(wall_ms)

    async def act(self, node_id: int, action: str, ms: int | None = None) -> dict:
        self._check(node_id)
        controls = self.server.broker.node_controls
        if action in ("stop", "kill", "start"):
            raise HttpError(409, f"a single broker cannot {action} itself from its own admin "
                                 f"endpoint: signal its process (SIGTERM stops it cleanly, "
                                 f"SIGKILL kills it), or run several nodes with `trioka serve "
                                 f"--nodes N` to control them from here")
        if action == "isolate":
            controls.isolate()
        elif action == "heal":
            controls.heal()
        elif action == "slow":
            controls.slow(ms)
        elif action == "rtt":
            controls.rtt(ms)
        else:
            raise ValueError(f"no node control {action!r}")
        return self.describe()[0]


def _node_id(text: str) -> int:
    if not text.isdigit():
        raise HttpError(404, f"no node {text}: node ids are numbers")
    return int(text)


def _slow_ms(body: bytes) -> int:
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise HttpError(400, 'the body must be JSON: {"ms": N}') from None
    ms = data.get("ms") if isinstance(data, dict) else None
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise HttpError(400, f'the body must be {{"ms": N}} with N a whole number of '
                             f'milliseconds, 0 or more, not {body[:100].decode("latin-1")!r}')
    return ms


def _clock_ms(body: bytes, field: str) -> int:
    """The whole number of milliseconds, 0 or more, of `{"<field>": N}`; HttpError 400."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise HttpError(400, f'the body must be JSON: {{"{field}": N}}') from None
    value = data.get(field) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HttpError(400, f'the body must be {{"{field}": N}} with N a whole number of '
                             f'milliseconds, 0 or more, not {body[:100].decode("latin-1")!r}')
    return value


async def route_clock(nodes, method: str, path: str, body: bytes) -> tuple[int, object]:
    """(status, JSON value) for a /clock request (virtual time, clock.py): GET the clock,
    POST /clock/advance {"ms": N} or /clock/set {"wall_ms": N}; 409 on a real clock."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if nodes is None:
        raise HttpError(404, "no clock here")
    if len(parts) == 1:
        if method != "GET":
            raise HttpError(405, f"{method} /clock: use GET, or POST to /clock/advance or "
                                 f"/clock/set")
        return 200, nodes.clock_state()
    if len(parts) > 2 or parts[1] not in ("advance", "set"):
        raise HttpError(404, f"no such resource {path}; see /clock, /clock/advance, /clock/set")
    if method != "POST":
        raise HttpError(405, f"{method} {path}: use POST")
    if parts[1] == "advance":
        move, amount = nodes.advance_time, _clock_ms(body, "ms")
    else:
        move, amount = nodes.set_time, _clock_ms(body, "wall_ms")
    try:
        with trio.move_on_after(CLOCK_MOVE_TIMEOUT_S) as scope:
            await move(amount)
    except RuntimeError as e:          # a real clock
        raise HttpError(409, str(e)) from None
    except ValueError as e:            # set back
        raise HttpError(400, str(e)) from None
    if scope.cancelled_caught:
        raise HttpError(500, f"the clock did not get there within {CLOCK_MOVE_TIMEOUT_S:g} s; "
                             f"it is at {nodes.clock_state()['wall_ms']}")
    return 200, nodes.clock_state()


REQUESTS_PARAMETERS = ("api", "client_id", "since", "limit")


async def route_requests(nodes, method: str, target: str) -> tuple[int, bytes]:
    """GET /requests?api=&client_id=&since=&limit=: the request log (observe/request_log.py) of
    the broker, or of every node of a cluster merged, as {"requests": [...]}. The entries are
    chosen on the event loop and rendered to JSON in a worker thread."""
    path, _, query = target.partition("?")
    if [p for p in path.split("/") if p] != ["requests"]:
        raise HttpError(404, f"no such resource {path}; see /requests")
    if method != "GET":
        raise HttpError(405, f"{method} /requests: use GET")
    params = {}
    for name, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if name not in REQUESTS_PARAMETERS:
            raise HttpError(400, f"unknown parameter {name!r}; /requests takes "
                                 f"{', '.join(REQUESTS_PARAMETERS)}")
        if len(values) > 1:
            raise HttpError(400, f"{name} given {len(values)} times")
        params[name] = values[0]
    for name in ("since", "limit"):
        if name in params:
            if not params[name].isdigit():
                raise HttpError(400, f"{name} must be a whole number, 0 or more, not "
                                     f"{params[name]!r}")
            params[name] = int(params[name])
    logs = [] if nodes is None else nodes.request_logs()
    try:
        entries = select_entries(logs, params.get("api"), params.get("client_id"),
                                 params.get("since"), params.get("limit"))
    except ValueError as e:
        raise HttpError(400, str(e)) from None

    def body() -> bytes:
        return json.dumps({"requests": render_entries(entries)}).encode() + b"\n"
    return 200, await trio.to_thread.run_sync(body)


async def route_report(nodes, method: str, target: str) -> tuple[int, object]:
    """GET /report[?format=json|markdown]: the conformance report (observe/conformance.py) of
    the broker, or of every node of a cluster merged; built in a worker thread (without strict
    mode it is derived from the request log's entries)."""
    path, _, query = target.partition("?")
    if [p for p in path.split("/") if p] != ["report"]:
        raise HttpError(404, f"no such resource {path}; see /report")
    if method != "GET":
        raise HttpError(405, f"{method} /report: use GET")
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    for name in params:
        if name != "format":
            raise HttpError(400, f"unknown parameter {name!r}; /report takes format")
    form = params.get("format", ["json"])[-1]
    if form not in ("json", "markdown"):
        raise HttpError(400, f"format must be json or markdown, not {form!r}")
    logs = [] if nodes is None else nodes.request_logs()
    # Strict mode's records are summed up on the event loop (the broker changes them); a report
    # derived from the ring renders its entries in the worker thread, over a copy of the ring.
    strict = bool(logs) and all(log.conformance is not None for log in logs)
    report = conformance_report(logs) if strict else None
    entries = None if strict else sorted((e for log in logs for e in log.ring),
                                         key=lambda e: e.seq)

    def build():
        done = report or report_of([from_entries(e.to_json() for e in entries)], strict=False)
        if form == "markdown":
            return to_markdown(done)
        return json.dumps(done).encode() + b"\n"
    return 200, await trio.to_thread.run_sync(build)


async def route_nodes(nodes, method: str, path: str, body: bytes) -> tuple[int, object]:
    """(status, JSON value) for a /nodes request; `nodes` is a LocalCluster or a OneBroker."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if nodes is None:
        raise HttpError(404, "no nodes here")
    try:
        if len(parts) == 1:
            if method != "GET":
                raise HttpError(405, f"{method} /nodes: use GET")
            return 200, {"nodes": nodes.describe()}
        node_id = _node_id(parts[1])
        if len(parts) == 2:
            if method != "GET":
                raise HttpError(405, f"{method} {path}: use GET, or POST to /nodes/{node_id}/"
                                     f"ACTION")
            for node in nodes.describe():
                if node["id"] == node_id:
                    return 200, node
            raise LookupError(f"no node {node_id}")
        if parts[2] in ("controls", "retention", "compaction"):
            controls = nodes.controls_of(node_id)
            return answer(controls, method, "/" + "/".join(parts[2:]), body)
        if len(parts) > 3 or parts[2] not in NODE_ACTIONS:
            raise HttpError(404, f"no such resource {path}; the node controls are "
                                 f"{', '.join(NODE_ACTIONS)}")
        if method != "POST":
            raise HttpError(405, f"{method} {path}: use POST")
        ms = _slow_ms(body) if parts[2] in ("slow", "rtt") else None
        with trio.move_on_after(NODE_ACTION_TIMEOUT_S) as scope:
            node = await nodes.act(node_id, parts[2], ms)
        if scope.cancelled_caught:
            raise HttpError(500, f"{parts[2]} of node {node_id} took longer than "
                                 f"{NODE_ACTION_TIMEOUT_S:g} s")
        return 200, node
    except LookupError as e:
        raise HttpError(404, str(e.args[0] if e.args else e)) from None
    except ValueError as e:
        raise HttpError(400, str(e)) from None
    except RuntimeError as e:
        raise HttpError(409, str(e)) from None


def answer(controls: Controls, method: str, path: str, body: bytes,
           controls_of=None) -> tuple[int, object]:
    """`route`, with any failure of the operation answered 500: whatever one request does,
    the endpoint (and the broker it runs in) stays up."""
    try:
        return route(controls, method, path, body, controls_of)
    except HttpError:
        raise
    except Exception as e:
        log.exception("admin endpoint: %s %s failed", method, path)
        return 500, {"error": f"{type(e).__name__}: {e}"}


def response_bytes(status: int, value) -> bytes:
    """The HTTP response; `value` is JSON data, or bytes already JSON (route_requests'), or a
    str of Markdown (route_report's)."""
    content_type = "application/json"
    if isinstance(value, str):
        body, content_type = value.encode(), "text/markdown; charset=utf-8"
    else:
        body = value if isinstance(value, bytes) else \
            json.dumps(value, indent=None).encode() + b"\n"
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n")
    return head.encode("latin-1") + body


async def _read_request(stream) -> tuple[str, str, bytes]:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD_BYTES:
            raise HttpError(413, "request head too large")
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    method, target, headers = parse_head(bytes(buf[:end]))
    body = bytearray(buf[end + 4:])
    if "transfer-encoding" in headers:
        raise HttpError(411, "send a Content-Length, not a chunked body")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "bad Content-Length") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise HttpError(413, f"bodies are at most {MAX_BODY_BYTES} bytes")
    while len(body) < length:
        chunk = await stream.receive_some(length - len(body))
        if not chunk:
            raise EOFError
        body += chunk
    return method, target, bytes(body[:length])


async def handle_connection(controls: Controls | None, stream, nodes=None) -> None:
    """Serve one request on `stream` (any trio stream) and close it. `controls` None: the
    default node's (`nodes.controls_of()`, node 1 of a cluster)."""
    try:
        method = target = "?"
        status = value = None
        with trio.move_on_after(REQUEST_TIMEOUT_S) as reading:
            try:
                method, target, body = await _read_request(stream)
            except HttpError as e:
                status, value = e.status, {"error": str(e)}
        if reading.cancelled_caught:
            return
        if status is None:
            try:
                if target.split("?", 1)[0].strip("/").split("/")[0] == "requests":
                    status, value = await route_requests(nodes, method, target)
                elif target.split("?", 1)[0].strip("/").split("/")[0] == "report":
                    status, value = await route_report(nodes, method, target)
                elif target.split("?", 1)[0].strip("/").split("/")[0] == "clock":
                    status, value = await route_clock(nodes, method, target, body)
                elif target.split("?", 1)[0].strip("/").split("/")[0] == "nodes":
                    status, value = await route_nodes(nodes, method, target, body)
                else:
                    if controls is None:
                        try:
                            controls = nodes.controls_of(None)
                        except RuntimeError as e:
                            raise HttpError(409, str(e)) from None
                    status, value = answer(controls, method, target, body,
                                           None if nodes is None else nodes.controls_of)
            except HttpError as e:
                status, value = e.status, {"error": str(e)}
            except Exception as e:
                log.exception("admin endpoint: %s %s failed", method, target)
                status, value = 500, {"error": f"{type(e).__name__}: {e}"}
        log.info("admin endpoint: %s %s -> %d", method, target, status)
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            await stream.send_all(response_bytes(status, value))
    except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(controls: Controls | None, address: str, nodes=None, *,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen on `address` (HOST:PORT, port 0 for a free one) until cancelled; reports the bound
    (host, port) through task_status. `nodes` (a LocalCluster, or OneBroker) serves /nodes;
    `controls` None serves /controls from the default node of `nodes`."""
    host, port = parse_address(address)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        raise OSError(e.errno, f"admin listener {address}: {e.strerror}") from e
    bound = listeners[0].socket.getsockname()
    task_status.started((host, bound[1]))
    try:
        await trio.serve_listeners(lambda stream: handle_connection(controls, stream, nodes),
                                   listeners)
    finally:
        for listener in listeners:
            listener.socket.close()
