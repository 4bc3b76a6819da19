"""The admin endpoint: `broker.controls` over HTTP/1.1 and JSON, for tests that run the broker as
a process (`--admin-listener HOST:PORT`, config key `trioka.admin.listener`; port 0 picks one,
printed at the end of the ready line as `admin http://HOST:PORT`).

    GET    /controls            {"down": false, "rules": [{"id": 1, "action": "error", ...}]}
    POST   /controls            a rule as JSON -> 201 and the rule with its id
    DELETE /controls            remove every rule -> {"removed": N}
    DELETE /controls/ID         remove one rule -> {"removed": 1}, or 404
    POST   /controls/down       stop serving clients -> the state, as GET /controls
    POST   /controls/up         serve them again -> the state
    POST   /retention           run a retention pass now -> {"segments_deleted": N}
    POST   /compaction          clean every compacted log now -> {"partitions_cleaned": N}

A rule's JSON is controls.Rule's fields: {"action": "error", "api": "Produce",
"error": "NOT_LEADER_OR_FOLLOWER", "count": 3}; an invalid one is answered 400 with
{"error": "..."}. One request per connection (`Connection: close`); a request must arrive whole
within REQUEST_TIMEOUT_S and stay under the size limits, or the connection is closed. This is not
Kafka's protocol and carries no authentication: bind it to 127.0.0.1.
"""

import json
import logging

import trio

from trioka.controls.rules import Controls, Rule

log = logging.getLogger("trioka.admin")

REQUEST_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
            500: "Internal Server Error"}


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


def route(controls: Controls, method: str, path: str, body: bytes) -> tuple[int, object]:
    """(status, JSON value) for one request: the whole API of the endpoint, plain `def`."""
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
            try:
                rule = controls.add(Rule.from_dict(data))
            except (ValueError, TypeError) as e:
                raise HttpError(400, str(e)) from None
            return 201, rule.to_dict()
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


def answer(controls: Controls, method: str, path: str, body: bytes) -> tuple[int, object]:
    """`route`, with any failure of the operation answered 500: whatever one request does,
    the endpoint (and the broker it runs in) stays up."""
    try:
        return route(controls, method, path, body)
    except HttpError:
        raise
    except Exception as e:
        log.exception("admin endpoint: %s %s failed", method, path)
        return 500, {"error": f"{type(e).__name__}: {e}"}


def response_bytes(status: int, value) -> bytes:
    body = json.dumps(value, indent=None).encode() + b"\n"
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
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


async def handle_connection(controls: Controls, stream) -> None:
    """Serve one request on `stream` (any trio stream) and close it."""
    try:
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            method = target = "?"
            try:
                method, target, body = await _read_request(stream)
                status, value = answer(controls, method, target, body)
            except HttpError as e:
                status, value = e.status, {"error": str(e)}
            log.info("admin endpoint: %s %s -> %d", method, target, status)
            await stream.send_all(response_bytes(status, value))
    except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(controls: Controls, address: str, *,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen on `address` (HOST:PORT, port 0 for a free one) until cancelled; reports the bound
    (host, port) through task_status."""
    host, port = parse_address(address)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    task_status.started((host, bound[1]))
    await trio.serve_listeners(lambda stream: handle_connection(controls, stream), listeners)
