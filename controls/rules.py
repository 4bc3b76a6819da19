"""Fault injection: `broker.controls`, the rules that make this broker misbehave on purpose.

Kafka clients are built to survive brokers that answer with retriable errors, answer late, drop
connections or go away; testing that code against a real Kafka means killing processes and hoping
the timing works out. Here a test states the fault and the broker applies it deterministically:

- `error`: answer a matching request with a Kafka error code instead of handling it. The response
  is built from the request, as Kafka builds the answer to a request it fails as a whole: every
  topic / partition / group / key the request names comes back with the code, and so does the
  top-level `error_code` where the response version has one. Produce with acks=0 has no response
  to carry the code, so the connection is closed (what Kafka does when such a produce fails).
- `delay`: hold the request `delay_ms` before handling it (up to MAX_DELAY_MS; a shutdown or
  `down` ends the wait and closes the connection).
- `disconnect`: close the connection `before` handling the request (nothing is applied) or
  `after` handling it, before the response is sent (applied but never acknowledged: the case an
  idempotent producer's retries exist for).
- `drop_response`: handle the request and never answer; the client's request timeout fires.
- `down()` / `up()`: the broker stops serving: every client connection is closed and new ones are
  closed as soon as they are accepted, until `up()`. Logs, groups and transactions are kept (a
  broker that is unreachable, not one that restarted).

A rule matches on the API (Kafka's name, `Produce` or `PRODUCE`, or the key), a topic the request
names, and the client id of the request header; a match on nothing matches every request. Rules
are applied deterministically: `after` skips the first N matches, `every` applies to one match in
N from there, `count` stops after N applications (unlimited by default). Rules are an ordered
list: a matching request gets the delays of every rule due, then the first due `error`,
`disconnect` or `drop_response`; each rule counts its own matches whichever rule acted.

The same engine is reached from Python (`broker.controls`, `trioka.Broker().controls`), from the
admin endpoint (controls/endpoint.py, HTTP and JSON) and from `trioka control` (cli/control.py).
Everything here is plain `def`: the server asks `decide()` once per request while `active` is
true, and does the waiting and the closing itself.
"""

from __future__ import annotations

import logging

import trio

from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.error_response import error_response, request_topics
from trioka.wire.errors import ErrorCode

log = logging.getLogger("trioka.controls")

ACTIONS = ("error", "delay", "disconnect", "drop_response")
WHEN = ("before", "after")
MAX_DELAY_MS = 600_000      # a held request still ends: ten minutes at most

# Kafka's API names without case or underscores -> key: "FindCoordinator", "FIND_COORDINATOR".
_API_BY_NAME = {k.name.replace("_", "").lower(): int(k) for k in ApiKey}


def api_key_of(value) -> int:
    """An API given as Kafka's name (`Produce`, `FIND_COORDINATOR`) or its key, as the key."""
    if isinstance(value, bool):
        raise ValueError(f"not an API: {value!r}")
    if isinstance(value, int):
        return int(ApiKey(value))
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(ApiKey(int(text)))
    key = _API_BY_NAME.get(text.replace("_", "").lower())
    if key is None:
        raise ValueError(f"unknown API {value!r}")
    return key


def api_name(key: int) -> str:
    """Kafka's name for an API key (`FindCoordinator`)."""
    return schema.api(key).name if schema.known(key) else ApiKey(key).name


def error_code_of(value) -> ErrorCode:
    """An error given as Kafka's name (`NOT_LEADER_OR_FOLLOWER`) or its code."""
    if isinstance(value, bool):
        raise ValueError(f"not an error code: {value!r}")
    if isinstance(value, int):
        return ErrorCode(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return ErrorCode(int(text))
    try:
        return ErrorCode[text.upper()]
    except KeyError:
        raise ValueError(f"unknown error code {value!r}") from None


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


class Rule:
    """One fault: what to do (`action` and its parameter), to which requests, how many times.

    `matched` counts the requests that matched, `applied` those the fault was applied to."""
    __slots__ = ("action", "api", "topic", "client_id", "count", "after", "every", "error",
                 "message", "delay_ms", "when", "id", "matched", "applied")

    def __init__(self, action: str, *, api=None, topic: str | None = None,
                 client_id: str | None = None, count: int | None = None, after: int = 0,
                 every: int = 1, error=None, message: str | None = None,
                 delay_ms: int | None = None, when: str | None = None):
        self.action = action
        self.api = api                  # an API key; None: every API
        self.topic = topic              # a topic the request names; None: any request
        self.client_id = client_id      # the request header's client id; None: any client
        self.count = count              # apply this many times; None: no limit
        self.after = after              # skip this many matches first
        self.every = every              # then apply to one match in `every`
        self.error = error              # action "error": the code answered
        self.message = message          # action "error": error_message where the response has one
        self.delay_ms = delay_ms        # action "delay"
        self.when = when                # action "disconnect": "before" or "after" handling
        self.id = 0
        self.matched = 0
        self.applied = 0
        self._validate()

    def __repr__(self) -> str:
        return f"Rule({self.id}: {self.describe()}, matched {self.matched}, " \
               f"applied {self.applied})"

    # The fields a rule is given by (the rest are the engine's bookkeeping).
    GIVEN = ("action", "api", "topic", "client_id", "count", "after", "every", "error",
             "message", "delay_ms", "when")

    def _validate(self) -> None:
        """Check the fields and bring them to one form (API keys, ErrorCode); ValueError."""
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.api is not None:
            self.api = api_key_of(self.api)
        for name in ("topic", "client_id", "message"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, not {value!r}")
        if self.count is not None:
            self.count = _count("count", self.count, 0)
        self.after = _count("after", self.after, 0)
        self.every = _count("every", self.every, 1)
        parameters = {"error": ("error", "message"), "delay": ("delay_ms",),
                      "disconnect": ("when",), "drop_response": ()}[self.action]
        for name in ("error", "message", "delay_ms", "when"):
            if name not in parameters and getattr(self, name) is not None:
                raise ValueError(f"{name} does not apply to a {self.action} rule")
        if self.action == "error":
            if self.error is None:
                raise ValueError("an error rule needs an error code")
            self.error = error_code_of(self.error)
        elif self.action == "delay":
            if self.delay_ms is None:
                raise ValueError("a delay rule needs delay_ms")
            self.delay_ms = _count("delay_ms", self.delay_ms, 0)
            if self.delay_ms > MAX_DELAY_MS:
                raise ValueError(f"delay_ms is at most {MAX_DELAY_MS}")
        elif self.action == "disconnect":
            self.when = self.when or "before"
            if self.when not in WHEN:
                raise ValueError(f"when must be 'before' or 'after', not {self.when!r}")

    @classmethod
    def from_dict(cls, data: dict) -> Rule:
        """A rule from its JSON form (names for `api` and `error`); ValueError when invalid."""
        if not isinstance(data, dict):
            raise ValueError("a rule is a JSON object")
        unknown = sorted(set(data) - set(cls.GIVEN))
        if unknown:
            raise ValueError(f"unknown rule fields: {', '.join(unknown)}")
        if "action" not in data:
            raise ValueError("a rule needs an action")
        return cls(**data)

    def to_dict(self) -> dict:
        """The rule as JSON-ready data: Kafka's names for the API and the error code."""
        out = {"id": self.id, "action": self.action,
               "api": None if self.api is None else api_name(self.api),
               "topic": self.topic, "client_id": self.client_id, "count": self.count,
               "after": self.after, "every": self.every, "matched": self.matched,
               "applied": self.applied}
        if self.action == "error":
            out["error"] = self.error.name
            out["message"] = self.message
        elif self.action == "delay":
            out["delay_ms"] = self.delay_ms
        elif self.action == "disconnect":
            out["when"] = self.when
        return out

    def describe(self) -> str:
        """One line for logs and the command line: `error NOT_LEADER_OR_FOLLOWER on Produce`."""
        what = {"error": lambda: f"error {self.error.name}",
                "delay": lambda: f"delay {self.delay_ms} ms",
                "disconnect": lambda: f"disconnect {self.when} handling",
                "drop_response": lambda: "drop_response"}[self.action]()
        where = [f"on {api_name(self.api)}" if self.api is not None else "on every request"]
        if self.topic is not None:
            where.append(f"naming topic {self.topic}")
        if self.client_id is not None:
            where.append(f"from client id {self.client_id}")
        return " ".join([what] + where)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def matches(self, api_key: int, client_id: str | None, topics) -> bool:
        """Whether a request is one this rule is about; `topics()` lists the topics it names."""
        if self.api is not None and self.api != api_key:
            return False
        if self.client_id is not None and self.client_id != (client_id or ""):
            return False
        if self.topic is not None and self.topic not in topics():
            return False
        return True

    def due(self) -> bool:
        """Count one more match; whether the fault applies to it (after / every / count)."""
        self.matched += 1
        if self.exhausted or self.matched <= self.after:
            return False
        return (self.matched - self.after - 1) % self.every == 0


class Fault:
    """What decide() asks of the server for one request: hold it `delay_ms`, then `action`
    (None: handle it normally; "down": close the connection) as `rule` says."""
    __slots__ = ("delay_ms", "action", "rule")

    def __init__(self, delay_ms: int = 0, action: str | None = None, rule: Rule | None = None):
        self.delay_ms = delay_ms
        self.action = action
        self.rule = rule

    def __repr__(self) -> str:
        return f"Fault(delay_ms={self.delay_ms}, action={self.action!r}, rule={self.rule!r})"


_DOWN = Fault(action="down")


class RuleShortcuts:
    """The one-action forms of `add(action, **fields)`, for every face of the controls: the
    broker's own (Controls), the embedded broker's proxy and the admin endpoint's client."""

    def add(self, action, **fields):
        raise NotImplementedError

    def error(self, error, **match):
        """Answer matching requests with `error` (a name or a code)."""
        return self.add("error", error=error, **match)

    def delay(self, delay_ms: int, **match):
        """Hold matching requests `delay_ms` before handling them."""
        return self.add("delay", delay_ms=delay_ms, **match)

    def disconnect(self, when: str = "before", **match):
        """Close the connection before (not applied) or after (applied, not answered) handling."""
        return self.add("disconnect", when=when, **match)

    def drop_response(self, **match):
        """Handle matching requests and never answer them."""
        return self.add("drop_response", **match)


class Controls(RuleShortcuts):
    """The rule list and the down state of one broker. `active` is the one thing the server
    reads per request: true while there is any rule, or the broker is down."""

    def __init__(self, topic_name_of=None, operations=None):
        # Resolves a topic id (Produce v13+, Fetch v13+) to its name for topic matching.
        self._topic_name_of = topic_name_of or (lambda topic_id: None)
        # Maintenance a test may run at once rather than wait for its timer:
        # name -> callable returning a count ("retention", "compaction").
        self.operations = dict(operations or {})
        self._rules: list[Rule] = []
        self._next_id = 1
        self.is_down = False
        self.active = False
        self._changed = trio.Event()

    # --- changing the rules (plain def: atomic under trio) ---

    def add(self, action: str | Rule, **fields) -> Rule:
        """Add a rule at the end of the list: `add("error", api="Produce", error=6, count=3)`
        or `add(Rule(...))`. Returns the rule, which keeps counting its matches."""
        rule = action if isinstance(action, Rule) else Rule(action, **fields)
        if isinstance(action, Rule) and fields:
            raise TypeError("give either a Rule or its fields")
        rule.id = self._next_id
        self._next_id += 1
        self._rules.append(rule)
        log.info("control %d added: %s", rule.id, rule.describe())
        self._update()
        return rule

    def remove(self, rule_id: int) -> bool:
        """Remove one rule by id; whether it was there."""
        for i, rule in enumerate(self._rules):
            if rule.id == rule_id:
                del self._rules[i]
                log.info("control %d removed", rule_id)
                self._update()
                return True
        return False

    def clear(self) -> int:
        """Remove every rule (the down state is `up()`'s business); how many there were."""
        n = len(self._rules)
        self._rules.clear()
        if n:
            log.info("controls cleared (%d rules)", n)
        self._update()
        return n

    def list(self) -> list[dict]:
        """The rules in order, as data (with their match and application counts)."""
        return [rule.to_dict() for rule in self._rules]

    def state(self) -> dict:
        """Everything the admin endpoint and `trioka control list` show."""
        return {"down": self.is_down, "rules": self.list()}

    def rule(self, rule_id: int) -> Rule | None:
        for rule in self._rules:
            if rule.id == rule_id:
                return rule
        return None

    def down(self) -> None:
        """Stop serving clients: the server closes every connection and refuses new ones."""
        if not self.is_down:
            log.info("controls: broker down (client connections closed until up)")
        self.is_down = True
        self._update()

    def up(self) -> None:
        """Serve clients again."""
        if self.is_down:
            log.info("controls: broker up")
        self.is_down = False
        self._update()

    def changed(self) -> trio.Event:
        """Set at the next change of the rules or of the down state (then replaced)."""
        return self._changed

    def _update(self) -> None:
        self.active = self.is_down or bool(self._rules)
        self._changed.set()
        self._changed = trio.Event()

    # --- the one place requests are matched ---

    def decide(self, header, request) -> Fault | None:
        """What to do with one decoded request; None: nothing, handle it as usual."""
        if self.is_down:
            return _DOWN
        key = header.api_key
        client_id = header.client_id
        named = None

        def topics():
            nonlocal named
            if named is None:
                named = request_topics(key, request, self._topic_name_of)
            return named

        delay_ms = 0
        outcome = None
        for rule in self._rules:
            if not rule.matches(key, client_id, topics) or not rule.due():
                continue
            if rule.action == "delay":
                delay_ms += rule.delay_ms
            elif outcome is None:
                outcome = rule
            else:
                continue        # another fault already answers this request: not applied
            rule.applied += 1
            log.info("control %d applied (%d of %s): %s; %s v%d from %r, correlation id %d",
                     rule.id, rule.applied, rule.count if rule.count is not None else "no limit",
                     rule.describe(), api_name(key), header.api_version, client_id,
                     header.correlation_id)
        if outcome is None:
            return Fault(delay_ms) if delay_ms else None
        return Fault(delay_ms, outcome.action, outcome)


# --- the answer of an `error` rule ---

def encode_error_response(header, request, rule: Rule) -> list | None:
    """The response frame an `error` rule answers with, or None where no response is due
    (Produce with acks=0: Kafka closes the connection instead, the caller's business)."""
    if header.api_key == ApiKey.PRODUCE and request.acks == 0:
        return None
    message = rule.message if rule.message is not None else \
        f"{rule.error.name} injected by trioka control {rule.id}"
    response = error_response(header.api_key, header.api_version, request, rule.error, message)
    return protocol.encode_response(header.api_key, header.api_version, header.correlation_id,
                                    response)
