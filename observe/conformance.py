"""Conformance: how each client uses the Kafka protocol, and where it breaks Kafka's rules.

Kafka keeps no such record; a client author reads it off broker logs and packet captures. trioka
derives it from the request log's entries (request_log.py: the request, what the client got),
in one place, here, so the same facts give the same report whether they are watched live or read
back from the ring:

- in strict mode (`trioka.strict`, `trioka serve --strict`, `trioka.Broker(strict=True)`) every
  entry is fed to the node's `Conformance` as it is logged, also with the ring off
  (`trioka.request.log.size=0`): the report covers the whole session;
- otherwise the report is derived when asked from the entries the ring still holds: nothing is
  done per request, so the broker pays nothing for it.

Per client, the client id with the software name and version it gave in ApiVersions v3+
(KIP-511), the report keeps the APIs and versions it used, the non-zero error codes it was
answered (counted by Kafka's name) and its violations: the first MAX_VIOLATIONS in full, with
the offending request summarised, and a count of all of them.

A violation is one of the kinds in VIOLATIONS. Some are read off the request itself:

    no_api_versions          the connection's first request was not ApiVersions: the client
                             picked versions without asking which the broker serves
    version_not_negotiated   a version outside the range the broker advertised to this
                             connection in its ApiVersions answer (or an API it did not list)
    deprecated_version       a version Kafka's message specs mark deprecated
                             (`deprecatedVersions`: Produce v0-6, Fetch v0-3, Metadata v0-3...)
    request_not_parsed       a request the broker could not decode and closed the connection
                             on: a body that does not parse, a flexible version sent with a
                             non-flexible (v1) request header
    request_too_large        a request declaring more than `socket.request.max.bytes` (Kafka's
                             InvalidReceiveException; the connection is closed)

The others are "the broker answered error X because the client did Y" (ANSWERED): an idempotent
producer's sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER) or stale epoch (INVALID_PRODUCER_EPOCH,
PRODUCER_FENCED), a commit with a stale generation (ILLEGAL_GENERATION) or an unknown member
(UNKNOWN_MEMBER_ID), a fetch session used with the wrong epoch (INVALID_FETCH_SESSION_EPOCH) or
after it was gone (FETCH_SESSION_ID_NOT_FOUND), and a produced batch Kafka's LogValidator
refuses (INVALID_RECORD, CORRUPT_MESSAGE, INVALID_TIMESTAMP; log/validator.py, which strict mode
applies to every record of every batch). A control batch (transaction marker) produced by a
client is refused with INVALID_RECORD as Kafka refuses it, and reported as
`control_batch_from_client`.
"""

import collections

from trioka.observe.messages import error_name as error_name_of
from trioka.wire.api_keys import ApiKey

# The first this many violations of a client are kept in full; all are counted.
MAX_VIOLATIONS = 100
# Connections whose negotiated ranges are remembered (the oldest forgotten first).
MAX_CONNECTIONS = 10_000

VIOLATIONS = {
    "no_api_versions": "requests sent before (or without) asking ApiVersions",
    "version_not_negotiated": "a version outside the range the broker advertised",
    "deprecated_version": "a version Kafka marks deprecated",
    "request_not_parsed": "a request the broker could not decode",
    "request_too_large": "a request larger than socket.request.max.bytes",
    "out_of_order_sequence": "an idempotent producer's sequence gap",
    "producer_epoch": "a producer epoch older than the producer's current one",
    "commit_generation": "a commit with a stale generation",
    "commit_member": "a commit by a member the group does not have",
    "fetch_session_epoch": "a fetch session used with the wrong epoch",
    "fetch_session_id": "a fetch session that does not exist (any more)",
    "invalid_record": "a produced batch Kafka's LogValidator refuses",
    "corrupt_message": "a produced batch whose records do not parse",
    "invalid_timestamp": "a record timestamp outside the topic's allowed range",
    "control_batch_from_client": "a control batch produced by a client",
}

# (API, error answered) -> the violation it means.
ANSWERED = {
    ("Produce", "OUT_OF_ORDER_SEQUENCE_NUMBER"): "out_of_order_sequence",
    ("Produce", "INVALID_PRODUCER_EPOCH"): "producer_epoch",
    ("Produce", "PRODUCER_FENCED"): "producer_epoch",
    ("Produce", "INVALID_RECORD"): "invalid_record",
    ("Produce", "CORRUPT_MESSAGE"): "corrupt_message",
    ("Produce", "INVALID_TIMESTAMP"): "invalid_timestamp",
    ("OffsetCommit", "ILLEGAL_GENERATION"): "commit_generation",
    ("OffsetCommit", "UNKNOWN_MEMBER_ID"): "commit_member",
    ("TxnOffsetCommit", "ILLEGAL_GENERATION"): "commit_generation",
    ("TxnOffsetCommit", "UNKNOWN_MEMBER_ID"): "commit_member",
    ("Fetch", "INVALID_FETCH_SESSION_EPOCH"): "fetch_session_epoch",
    ("Fetch", "FETCH_SESSION_ID_NOT_FOUND"): "fetch_session_id",
}

# The request versions Kafka's message specs mark deprecated (`deprecatedVersions`), inclusive,
# of the APIs trioka serves.
DEPRECATED_VERSIONS = {
    ApiKey.PRODUCE: (0, 6), ApiKey.FETCH: (0, 3), ApiKey.LIST_OFFSETS: (0, 0),
    ApiKey.METADATA: (0, 3), ApiKey.OFFSET_COMMIT: (0, 1), ApiKey.OFFSET_FETCH: (0, 0),
    ApiKey.FIND_COORDINATOR: (0, 0), ApiKey.JOIN_GROUP: (0, 1), ApiKey.CREATE_TOPICS: (0, 1),
    ApiKey.DELETE_TOPICS: (0, 0), ApiKey.OFFSET_FOR_LEADER_EPOCH: (0, 1),
    ApiKey.DESCRIBE_CONFIGS: (0, 0), ApiKey.DESCRIBE_LOG_DIRS: (0, 0),
    ApiKey.DELETE_GROUPS: (0, 0),
}

# How a request is summarised in a violation: lists cut to this many items, strings to this
# many characters.
SUMMARY_ITEMS = 3
SUMMARY_CHARS = 80


def client_key(entry: dict) -> tuple:
    """Who sent a request: (client id, software name, software version)."""
    return (entry.get("client_id"), entry.get("client_software_name"),
            entry.get("client_software_version"))


class ClientRecord:
    """What one client did: APIs and versions, errors answered, violations."""
    __slots__ = ("key", "requests", "apis", "errors", "violations", "violation_count")

    def __init__(self, key: tuple):
        self.key = key
        self.requests = 0
        self.apis: dict[str, set] = {}
        self.errors: dict[str, int] = {}
        self.violations: list[dict] = []
        self.violation_count = 0

    def add_violation(self, violation: dict) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(violation)

    def to_json(self) -> dict:
        client_id, name, version = self.key
        kinds = collections.Counter(v["kind"] for v in self.violations)
        return {
            "client_id": client_id, "client_software_name": name,
            "client_software_version": version, "requests": self.requests,
            "apis": {api: sorted(versions) for api, versions in sorted(self.apis.items())},
            "errors": dict(sorted(self.errors.items())),
            "violation_count": self.violation_count,
            "violation_kinds": dict(sorted(kinds.items())),
            "violations": list(self.violations),
        }


class Conformance:
    """One node's conformance record, fed request log entries (as dicts, Entry.to_json)."""

    def __init__(self):
        self.clients: dict[tuple, ClientRecord] = {}
        # connection id -> {API key: (min, max)} advertised to it; None: never asked.
        self._negotiated: collections.OrderedDict = collections.OrderedDict()
        # connection id -> the client key last seen on it (for request_too_large).
        self._last_client: dict[str, tuple] = {}

    def _client(self, key: tuple) -> ClientRecord:
        record = self.clients.get(key)
        if record is None:
            record = self.clients[key] = ClientRecord(key)
        return record

    def _connection(self, connection: str, first_api_key: int):
        """The ranges advertised on this connection: {} just created by an ApiVersions
        request, None when its first request was something else; (ranges, is_new)."""
        known = self._negotiated.get(connection, False)
        if known is not False:
            self._negotiated.move_to_end(connection)
            return known, False
        ranges = {} if first_api_key == ApiKey.API_VERSIONS else None
        self._negotiated[connection] = ranges
        if len(self._negotiated) > MAX_CONNECTIONS:
            gone, _ = self._negotiated.popitem(last=False)
            self._last_client.pop(gone, None)
        return ranges, True

    def observe(self, entry: dict, full=None) -> None:
        """Take one request log entry: count it for its client and derive its violations.
        `full`, when given, renders the entry with its messages, and `entry` is without them:
        most requests need only the header's facts and the error codes, so the messages are
        rendered only where a check reads them (an ApiVersions answer, an error that means a
        violation) or a violation shows its request."""
        key = client_key(entry)
        record = self._client(key)
        record.requests += 1
        api, api_key, version = entry["api"], entry["api_key"], entry["api_version"]
        record.apis.setdefault(api, set()).add(version)
        for name, count in entry.get("error_codes", {}).items():
            record.errors[name] = record.errors.get(name, 0) + count
        connection = entry.get("connection") or ""
        self._last_client[connection] = key
        if full is not None and (api_key == ApiKey.API_VERSIONS or any(
                (api, name) in ANSWERED for name in entry.get("error_codes") or ())):
            entry, full = full(), None
        found = violations_of(entry, *self._connection(connection, api_key))
        if found and full is not None:
            entry = full()
        for kind, detail in found:
            record.add_violation(violation(kind, entry, detail))
        if api_key == ApiKey.API_VERSIONS:
            ranges = advertised_ranges(entry.get("response"))
            if ranges is not None:
                self._negotiated[connection] = ranges

    def request_too_large(self, connection: str, reason: str) -> None:
        """A request refused by its declared size before its header was read: charged to the
        client last seen on the connection."""
        key = self._last_client.get(connection, (None, None, None))
        self._client(key).add_violation({
            "kind": "request_too_large", "api": None, "version": None,
            "correlation_id": None, "connection": connection, "detail": reason,
            "request": None})

    def report(self) -> dict:
        return report_of([self])


def advertised_ranges(response: dict | None) -> dict | None:
    """{API key: (min, max)} of an ApiVersions response (JSON); None when it holds none (an
    error answer, as to a version above the broker's)."""
    if not response or response.get("error_code"):
        return None
    return {k["api_key"]: (k["min_version"], k["max_version"])
            for k in response.get("api_keys") or ()}


def violations_of(entry: dict, ranges: dict | None, first: bool) -> list[tuple[str, str]]:
    """The violations one entry shows, as (kind, detail): `ranges` are what the broker
    advertised on the entry's connection (None: the client never asked), `first` whether it
    is the connection's first request."""
    found = []
    api, api_key, version = entry["api"], entry["api_key"], entry["api_version"]
    if api_key != ApiKey.API_VERSIONS:
        if ranges is None:
            if first:
                found.append(("no_api_versions", f"first request on the connection is "
                              f"{api} v{version}, not ApiVersions"))
        elif ranges:
            span = ranges.get(api_key)
            if span is None:
                found.append(("version_not_negotiated",
                              f"{api} is not in the broker's ApiVersions answer"))
            elif not span[0] <= version <= span[1]:
                found.append(("version_not_negotiated",
                              f"{api} v{version}: the broker advertised v{span[0]}-v{span[1]}"))
    deprecated = DEPRECATED_VERSIONS.get(api_key)
    if deprecated is not None and deprecated[0] <= version <= deprecated[1]:
        found.append(("deprecated_version",
                      f"{api} v{version}: Kafka deprecates v{deprecated[0]}-v{deprecated[1]}"))
    error = entry.get("error")
    if entry.get("outcome") == "disconnected" and error and ": " in error and \
            "is not served" not in error:
        # request_log.refused with a decode failure: "<API> v<N>: <why>".
        found.append(("request_not_parsed", error))
    for name in entry.get("error_codes") or ():
        kind = ANSWERED.get((api, name))
        if kind is not None:
            for where, message in errors_at(entry.get("response"), name):
                if kind == "invalid_record" and control_batch_at(entry.get("request"), where):
                    kind = "control_batch_from_client"
                found.append((kind, f"{name} at {where}" + (f": {message}" if message else "")))
    return found


def errors_at(response, error_name: str) -> list[tuple[str, str | None]]:
    """Where in a response (JSON) error `error_name` was answered: ("topic[partition]" or the
    field path, its error_message)."""
    found = []

    def walk(value, topic, path):
        if isinstance(value, dict):
            topic = value.get("name", value.get("topic", topic))
            for field, v in value.items():
                if field.endswith("error_code") and isinstance(v, int) and v and \
                        error_name_of(v) == error_name:
                    index = value.get("index", value.get("partition_index",
                                                         value.get("partition")))
                    where = path or "response"
                    if topic is not None:
                        where = f"{topic}[{index}]" if index is not None else str(topic)
                    found.append((where, value.get("error_message")))
                elif isinstance(v, (dict, list)):
                    walk(v, topic, f"{path}.{field}" if path else field)
        elif isinstance(value, list):
            for item in value:
                walk(item, topic, path)

    walk(response, None, "")
    return found or [("response", None)]


def control_batch_at(request, where: str) -> bool:
    """Whether a Produce request (JSON) sent a control batch to `where` ("topic[partition]")."""
    for topic in (request or {}).get("topic_data") or ():
        for partition in topic.get("partition_data") or ():
            if f"{topic.get('name')}[{partition.get('index')}]" == where:
                return any(isinstance(b, dict) and b.get("is_control")
                           for b in partition.get("records") or ())
    return False


def violation(kind: str, entry: dict, detail: str) -> dict:
    return {"kind": kind, "api": entry["api"], "version": entry["api_version"],
            "correlation_id": entry.get("correlation_id"),
            "connection": entry.get("connection"), "detail": detail,
            "request": summarise(entry.get("request"))}


def summarise(value, depth: int = 0):
    """A request (JSON) cut down to read in a report: the first SUMMARY_ITEMS items of each
    list (a last item counts the rest), strings and base64 bytes cut to SUMMARY_CHARS."""
    if isinstance(value, dict):
        if depth > 6:
            return "{...}"
        return {k: summarise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        out = [summarise(v, depth + 1) for v in value[:SUMMARY_ITEMS]]
        if len(value) > SUMMARY_ITEMS:
            out.append(f"... {len(value) - SUMMARY_ITEMS} more")
        return out
    if isinstance(value, str) and len(value) > SUMMARY_CHARS:
        return value[:SUMMARY_CHARS] + "..."
    return value


def from_entries(entries) -> Conformance:
    """A Conformance fed the given entries (dicts, oldest first): the report of a broker not in
    strict mode, from what its request log holds."""
    conformance = Conformance()
    for entry in entries:
        conformance.observe(entry)
    return conformance


def report_of(conformances, *, strict: bool = True) -> dict:
    """The report of one or more nodes' records (a cluster's, merged by client):
    {"strict": bool, "clients": [one object per client, by client id then software]}."""
    merged: dict[tuple, dict] = {}
    for conformance in conformances:
        for key, record in conformance.clients.items():
            data = record.to_json()
            into = merged.get(key)
            if into is None:
                merged[key] = data
                continue
            into["requests"] += data["requests"]
            for api, versions in data["apis"].items():
                into["apis"][api] = sorted(set(into["apis"].get(api, ())) | set(versions))
            for name, count in data["errors"].items():
                into["errors"][name] = into["errors"].get(name, 0) + count
            for kind, count in data["violation_kinds"].items():
                into["violation_kinds"][kind] = into["violation_kinds"].get(kind, 0) + count
            into["violation_count"] += data["violation_count"]
            into["violations"] = (into["violations"] + data["violations"])[:MAX_VIOLATIONS]
    clients = sorted(merged.values(), key=lambda c: tuple(
        "" if v is None else str(v) for v in (c["client_id"], c["client_software_name"],
                                              c["client_software_version"])))
    for c in clients:
        c["apis"] = dict(sorted(c["apis"].items()))
        c["errors"] = dict(sorted(c["errors"].items()))
        c["violation_kinds"] = dict(sorted(c["violation_kinds"].items()))
    return {"strict": strict, "clients": clients}


def to_markdown(report: dict) -> str:
    """The report as Markdown: one section per client, its APIs and versions, errors and
    violations (each with its request summarised as one line of JSON)."""
    mode = "strict mode" if report.get("strict") else "from the request log"
    lines = [f"# Conformance report ({mode})", ""]
    if not report["clients"]:
        lines.append("No requests.")
    for c in report["clients"]:
        software = c["client_software_name"] or "unknown software"
        if c["client_software_version"]:
            software += f" {c['client_software_version']}"
        lines += [f"## {c['client_id'] or '(no client id)'} ({software})", "",
                  f"{c['requests']} requests, {c['violation_count']} violations", "",
                  "| API | versions |", "|---|---|"]
        lines += [f"| {api} | {', '.join(map(str, versions))} |"
                  for api, versions in c["apis"].items()]
        if c["errors"]:
            lines += ["", "Errors: " + ", ".join(f"{name} x{count}"
                                                for name, count in c["errors"].items())]
        if c["violations"]:
            lines += ["", "| violation | request | detail |", "|---|---|---|"]
            for v in c["violations"]:
                request = "" if v["api"] is None else \
                    f"{v['api']} v{v['version']} #{v['correlation_id']}"
                detail = v["detail"].replace("|", "\\|")
                lines.append(f"| {v['kind']} | {request} | {detail} |")
            if c["violation_count"] > len(c["violations"]):
                lines.append(f"\n... and {c['violation_count'] - len(c['violations'])} more")
        lines.append("")
    return "\n".join(lines)


def conformance_report(request_logs) -> dict:
    """The report of the nodes with these request logs: their strict mode records when they
    keep them, else derived from the entries their rings hold (oldest first)."""
    logs = list(request_logs)
    if logs and all(log.conformance is not None for log in logs):
        return report_of([log.conformance for log in logs], strict=True)
    entries = []
    for log in logs:
        entries.extend(log.ring)
    entries.sort(key=lambda e: e.seq)
    return report_of([from_entries(e.to_json() for e in entries)], strict=False)
