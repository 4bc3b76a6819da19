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
- `throttle`: handle the request, answer with `throttle_time_ms` = `throttle_ms` (in the versions
  that have the field), then read nothing more from that connection for `throttle_ms`: what
  Kafka's quota managers do since KIP-219 (Kafka 2.0), the response sent at once and the
  channel muted until the throttle time has passed.
- `down()` / `up()`: the broker stops serving: every client connection is closed and new ones are
  closed as soon as they are accepted, until `up()`. Logs, groups and transactions are kept (a
  broker that is unreachable, not one that restarted).

A rule matches on the API (Kafka's name, `Produce` or `PRODUCE`, or the key), a topic the request
names, a `partition` of that topic, the client id of the request header, a consumer `group` and a
`transactional_id` the request names (wire/request_names.py says which fields name them); a match
on nothing matches every request. `node` is the node.id the rule is for: a rule given to a
cluster goes to that node, and a node refuses a rule for another.

An `error` rule with a `topic` and a `partition`, on an API answered partition by partition
(Produce, Fetch, ListOffsets, OffsetCommit, TxnOffsetCommit, DeleteRecords), fails that
partition alone: the others of the same request are handled as usual (wire/partition_errors.py),
as librdkafka's mock cluster does with `partition_push_request_errors`. `errors`, a list of codes
instead of one `error`, answers one code per application, in order (`NONE`: that one is served
normally), and the rule ends with the list.

Rules are applied deterministically: `after` skips the first N matches, `every` applies to one
match in N from there, `count` stops after N applications (unlimited by default). `probability`
(0 < p <= 1, default 1) then applies a due fault to that share of them, drawn from the rule's
own `random.Random(seed)`: one draw for every match, whether due or not, so the N-th match of a
rule gets the N-th draw and the same seed over the same sequence of matching requests applies
faults to the same ones (`applied_at` lists the match numbers, the first APPLIED_AT_KEPT). A
rule given a probability and no seed picks one and shows it, so a run can be replayed.

Rules are an ordered list: a matching request gets the delays of every rule due and the longest
throttle, the first due `error`, `disconnect` or `drop_response`, and the partition errors due
(one rule a partition, the first), which a whole-request error or a disconnect before handling
leave unapplied. Each rule counts its own matches whichever rule acted.

The same engine is reached from Python (`broker.controls`, `trioka.Broker().controls`), from the
admin endpoint (controls/endpoint.py, HTTP and JSON), from `trioka control` (cli/control.py) and
from a fault file read at start (controls/fault_file.py, `trioka serve --faults FILE`).
Everything here is plain `def`: the server asks `decide()` once per request while `active` is
true, and does the waiting and the closing itself.
"""

from __future__ import annotations

import logging
import random

import trio

from trioka.wire import partition_errors, protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.error_response import error_response
from trioka.wire.errors import ErrorCode
from trioka.wire.request_names import (request_groups, request_partitions, request_topics,
                                       request_transactional_ids)

log = logging.getLogger("trioka.controls")

ACTIONS = ("error", "delay", "disconnect", "drop_response", "throttle")
WHEN = ("before", "after")
MAX_DELAY_MS = 600_000      # a held request still ends: ten minutes at most
APPLIED_AT_KEPT = 1000      # the match numbers of a rule's first applications, kept to compare

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
        try:
            return ErrorCode(value)
        except ValueError:
            raise ValueError(f"unknown error code {value!r}") from None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return error_code_of(int(text))
    try:
        return ErrorCode[text.upper()]
    except KeyError:
        raise ValueError(f"unknown error code {value!r}") from None


def _count(name: str, value, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _probability(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"probability must be a number, not {value!r}")
    try:
        p = float(value)
    except ValueError:
        raise ValueError(f"probability must be a number, not {value!r}") from None
    if not 0 < p <= 1:
        raise ValueError(f"probability must be more than 0 and at most 1, not {value!r}")
    return p


class RequestNames:
    """What one request names, worked out on first use: rules ask only for what they match on,
    and a request no rule asks about is never walked."""
    __slots__ = ("api_key", "request", "topic_name_of", "_topics", "_partitions", "_groups",
                 "_transactional_ids")

    def __init__(self, api_key: int, request, topic_name_of):
        self.api_key = api_key
        self.request = request
        self.topic_name_of = topic_name_of
        self._topics = self._partitions = self._groups = self._transactional_ids = None

    def topics(self) -> set[str]:
        if self._topics is None:
            self._topics = request_topics(self.api_key, self.request, self.topic_name_of)
        return self._topics

    def partitions(self) -> set[tuple[str, int]]:
        if self._partitions is None:
            self._partitions = request_partitions(self.api_key, self.request,
                                                  self.topic_name_of)
        return self._partitions

    def groups(self) -> set[str]:
        if self._groups is None:
            self._groups = request_groups(self.api_key, self.request)
        return self._groups

    def transactional_ids(self) -> set[str]:
        if self._transactional_ids is None:
            self._transactional_ids = request_transactional_ids(self.api_key, self.request)
        return self._transactional_ids


class Rule:
    """One fault: what to do (`action` and its parameter), to which requests, how many times.

    `matched` counts the requests that matched, `applied` those the fault was applied to, and
    `applied_at` the match numbers (1-based) of the first APPLIED_AT_KEPT applications."""
    __slots__ = ("action", "api", "topic", "partition", "client_id", "group",
                 "transactional_id", "node", "count", "after", "every", "probability", "seed",
                 "error", "errors", "message", "delay_ms", "throttle_ms", "when", "id",
                 "matched", "applied", "applied_at", "_random")

    def __init__(self, action: str, *, api=None, topic: str | None = None,
                 partition: int | None = None, client_id: str | None = None,
                 group: str | None = None, transactional_id: str | None = None,
                 node: int | None = None, count: int | None = None, after: int = 0,
                 every: int = 1, probability: float = 1.0, seed: int | None = None,
                 error=None, errors=None, message: str | None = None,
                 delay_ms: int | None = None, throttle_ms: int | None = None,
                 when: str | None = None):
        self.action = action
        self.api = api                  # an API key; None: every API
        self.topic = topic              # a topic the request names; None: any request
        self.partition = partition      # with topic: a partition of it the request names
        self.client_id = client_id      # the request header's client id; None: any client
        self.group = group              # a consumer group the request names
        self.transactional_id = transactional_id    # a transactional id the request names
        self.node = node                # the node.id the rule is for; None: the one given it
        self.count = count              # apply this many times; None: no limit
        self.after = after              # skip this many matches first
        self.every = every              # then apply to one match in `every`
        self.probability = probability  # then to this share of those, drawn from seed
        self.seed = seed
        self.error = error              # action "error": the code answered
        self.errors = errors            # action "error": or one code per application
        self.message = message          # action "error": error_message where the response has one
        self.delay_ms = delay_ms        # action "delay"
        self.throttle_ms = throttle_ms  # action "throttle"
        self.when = when                # action "disconnect": "before" or "after" handling
        self.id = 0
        self.matched = 0
        self.applied = 0
        self.applied_at: list[int] = []
        self._validate()
        self._random = random.Random(self.seed) if self.probability < 1 else None

    def __repr__(self) -> str:
        return f"Rule({self.id}: {self.describe()}, matched {self.matched}, " \
               f"applied {self.applied})"

    # The fields a rule is given by (the rest are the engine's bookkeeping).
    GIVEN = ("action", "api", "topic", "partition", "client_id", "group", "transactional_id",
             "node", "count", "after", "every", "probability", "seed", "error", "errors",
             "message", "delay_ms", "throttle_ms", "when")
    # Each action's own fields; any other action refuses them.
    PARAMETERS = {"error": ("error", "errors", "message"), "delay": ("delay_ms",),
                  "disconnect": ("when",), "drop_response": (), "throttle": ("throttle_ms",)}

    def _validate(self) -> None:
        """Check the fields and bring them to one form (API keys, ErrorCode); ValueError."""
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.api is not None:
            self.api = api_key_of(self.api)
        for name in ("topic", "client_id", "group", "transactional_id", "message"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, not {value!r}")
        if self.partition is not None:
            self.partition = _count("partition", self.partition, 0)
            if self.topic is None:
                raise ValueError("partition needs the topic it is a partition of")
        if self.node is not None:
            self.node = _count("node", self.node, 0)
        if self.count is not None:
            self.count = _count("count", self.count, 0)
        self.after = _count("after", self.after, 0)
        self.every = _count("every", self.every, 1)
        self.probability = _probability(self.probability)
        if self.seed is not None:
            self.seed = _count("seed", self.seed, None)
        elif self.probability < 1:
            # No seed given: one picked now and shown, so that the run can be replayed.
            self.seed = random.SystemRandom().randrange(1 << 32)
        parameters = self.PARAMETERS[self.action]
        for name in ("error", "errors", "message", "delay_ms", "throttle_ms", "when"):
            if name not in parameters and getattr(self, name) is not None:
                raise ValueError(f"{name} does not apply to a {self.action} rule")
        if self.action == "error":
            if (self.error is None) == (self.errors is None):
                raise ValueError("an error rule needs an error code, or a list of them "
                                 "(errors)")
            if self.errors is not None:
                if not isinstance(self.errors, (list, tuple)) or not self.errors:
                    raise ValueError(f"errors must be a list of error codes, not "
                                     f"{self.errors!r}")
                self.errors = [error_code_of(e) for e in self.errors]
                if self.count is None:
                    self.count = len(self.errors)
                elif self.count > len(self.errors):
                    raise ValueError(f"count {self.count} is more than the {len(self.errors)} "
                                     f"errors listed")
            else:
                self.error = error_code_of(self.error)
        elif self.action == "delay":
            if self.delay_ms is None:
                raise ValueError("a delay rule needs delay_ms")
            self.delay_ms = _count("delay_ms", self.delay_ms, 0)
            if self.delay_ms > MAX_DELAY_MS:
                raise ValueError(f"delay_ms is at most {MAX_DELAY_MS}")
        elif self.action == "throttle":
            if self.throttle_ms is None:
                raise ValueError("a throttle rule needs throttle_ms")
            self.throttle_ms = _count("throttle_ms", self.throttle_ms, 1)
            if self.throttle_ms > MAX_DELAY_MS:
                raise ValueError(f"throttle_ms is at most {MAX_DELAY_MS}")
        elif self.action == "disconnect":
            self.when = self.when or "before"
            if self.when not in WHEN:
                raise ValueError(f"when must be 'before' or 'after', not {self.when!r}")

    @classmethod
    def from_dict(cls, data: dict) -> Rule:
        """A rule from its JSON form (names for `api` and `error`); ValueError when invalid.
        The engine's bookkeeping (`id`, `matched`, `applied`, `applied_at`), as GET /controls
        shows it, is ignored, so a listed rule can be given again."""
        if not isinstance(data, dict):
            raise ValueError("a rule is a JSON object")
        unknown = sorted(set(data) - set(cls.GIVEN) - {"id", "matched", "applied",
                                                      "applied_at"})
        if unknown:
            raise ValueError(f"unknown rule fields: {', '.join(unknown)}")
        if "action" not in data:
            raise ValueError("a rule needs an action")
        return cls(**{k: v for k, v in data.items() if k in cls.GIVEN and v is not None})

    def to_dict(self) -> dict:
        """The rule as JSON-ready data: Kafka's names for the API and the error code."""
        out = {"id": self.id, "action": self.action,
               "api": None if self.api is None else api_name(self.api),
               "topic": self.topic, "partition": self.partition, "client_id": self.client_id,
               "group": self.group, "transactional_id": self.transactional_id,
               "node": self.node, "count": self.count, "after": self.after,
               "every": self.every, "probability": self.probability, "seed": self.seed,
               "matched": self.matched, "applied": self.applied,
               "applied_at": list(self.applied_at)}
        if self.action == "error":
            out["error"] = None if self.error is None else self.error.name
            out["errors"] = None if self.errors is None else [e.name for e in self.errors]
            out["message"] = self.message
        elif self.action == "delay":
            out["delay_ms"] = self.delay_ms
        elif self.action == "throttle":
            out["throttle_ms"] = self.throttle_ms
        elif self.action == "disconnect":
            out["when"] = self.when
        return out

    def describe(self) -> str:
        """One line for logs and the command line: `error NOT_LEADER_OR_FOLLOWER on Produce`."""
        what = {"error": lambda: f"error {self.error.name}" if self.errors is None else
                "errors " + ",".join(e.name for e in self.errors),
                "delay": lambda: f"delay {self.delay_ms} ms",
                "throttle": lambda: f"throttle {self.throttle_ms} ms",
                "disconnect": lambda: f"disconnect {self.when} handling",
                "drop_response": lambda: "drop_response"}[self.action]()
        where = [f"on {api_name(self.api)}" if self.api is not None else "on every request"]
        if self.topic is not None:
            where.append(f"naming topic {self.topic}" if self.partition is None else
                         f"naming partition {self.topic}-{self.partition}")
        for name, label in (("group", "group"), ("transactional_id", "transactional id"),
                            ("client_id", "from client id"), ("node", "on node")):
            if getattr(self, name) is not None:
                where.append(f"{label} {getattr(self, name)}")
        if self.probability < 1:
            where.append(f"with probability {self.probability:g} (seed {self.seed})")
        return " ".join([what] + where)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def matches(self, api_key: int, client_id: str | None, names: RequestNames) -> bool:
        """Whether a request is one this rule is about; `names` what the request names."""
        if self.api is not None and self.api != api_key:
            return False
        if self.client_id is not None and self.client_id != (client_id or ""):
            return False
        if self.topic is not None:
            if self.partition is None:
                if self.topic not in names.topics():
                    return False
            elif (self.topic, self.partition) not in names.partitions():
                return False
        if self.group is not None and self.group not in names.groups():
            return False
        if self.transactional_id is not None and \
                self.transactional_id not in names.transactional_ids():
            return False
        return True

    def due(self) -> bool:
        """Count one more match; whether the fault applies to it (after / every / count, then
        probability: one draw per match, so the pattern depends on the matches alone)."""
        self.matched += 1
        draw = self._random.random() if self._random is not None else 0.0
        if self.exhausted or self.matched <= self.after:
            return False
        if (self.matched - self.after - 1) % self.every:
            return False
        return draw < self.probability

    def next_error(self) -> ErrorCode:
        """An error rule's code for the application about to be counted."""
        return self.error if self.errors is None else self.errors[self.applied]

    def error_message(self, code: ErrorCode) -> str:
        return self.message if self.message is not None else \
            f"{code.name} injected by trioka control {self.id}"

    def count_application(self) -> None:
        self.applied += 1
        if len(self.applied_at) < APPLIED_AT_KEPT:
            self.applied_at.append(self.matched)


class Fault:
    """What decide() asks of the server for one request: hold it `delay_ms`, then `action`
    (None: handle it normally; "down": close the connection) as `rule` says, answering `error`
    with `message` for an error; fail the partitions of `failed_partitions` ({(topic,
    partition): (code, message)}) alone; answer with `throttle_ms` and mute the connection."""
    __slots__ = ("delay_ms", "action", "rule", "error", "message", "throttle_ms",
                 "failed_partitions")

    def __init__(self, delay_ms: int = 0, action: str | None = None, rule: Rule | None = None,
                 *, error: ErrorCode | None = None, message: str | None = None,
                 throttle_ms: int = 0, failed_partitions: dict | None = None):
        self.delay_ms = delay_ms
        self.action = action
        self.rule = rule
        self.error = error
        self.message = message
        self.throttle_ms = throttle_ms
        self.failed_partitions = failed_partitions

    def __repr__(self) -> str:
        return (f"Fault(delay_ms={self.delay_ms}, action={self.action!r}, rule={self.rule!r}, "
                f"error={self.error!r}, throttle_ms={self.throttle_ms}, "
                f"failed_partitions={self.failed_partitions!r})")


_DOWN = Fault(action="down")


class RuleShortcuts:
    """The one-action forms of `add(action, **fields)`, for every face of the controls: the
    broker's own (Controls), the embedded broker's proxy and the admin endpoint's client."""

    def add(self, action, **fields):
        raise NotImplementedError

    def error(self, error, **match):
        """Answer matching requests with `error` (a name or a code), or with each code of a
        list in turn (`errors`)."""
        if isinstance(error, (list, tuple)):
            return self.add("error", errors=list(error), **match)
        return self.add("error", error=error, **match)

    def delay(self, delay_ms: int, **match):
        """Hold matching requests `delay_ms` before handling them."""
        return self.add("delay", delay_ms=delay_ms, **match)

    def throttle(self, throttle_ms: int, **match):
        """Answer matching requests with throttle_time_ms and mute their connection that long."""
        return self.add("throttle", throttle_ms=throttle_ms, **match)

    def disconnect(self, when: str = "before", **match):
        """Close the connection before (not applied) or after (applied, not answered) handling."""
        return self.add("disconnect", when=when, **match)

    def drop_response(self, **match):
        """Handle matching requests and never answer them."""
        return self.add("drop_response", **match)


class Controls(RuleShortcuts):
    """The rule list and the down state of one broker. `active` is the one thing the server
    reads per request: true while there is any rule, or the broker is down."""

    def __init__(self, topic_name_of=None, operations=None, node_id: int | None = None):
        # Resolves a topic id (Produce v13+, Fetch v13+) to its name for topic matching.
        self._topic_name_of = topic_name_of or (lambda topic_id: None)
        # Maintenance a test may run at once rather than wait for its timer:
        # name -> callable returning a count ("retention", "compaction").
        self.operations = dict(operations or {})
        self.node_id = node_id          # the node.id of the broker these rules are for
        self._rules: list[Rule] = []
        self._next_id = 1
        self.is_down = False
        self.active = False
        self._changed = trio.Event()

    def topic_name(self, topic_id) -> str | None:
        """The name of the topic with this id, for matching requests that name topics by id."""
        return self._topic_name_of(topic_id)

    # --- changing the rules (plain def: atomic under trio) ---

    def check(self, rule: Rule) -> None:
        """ValueError when this broker cannot take the rule (one for another node)."""
        if rule.node is not None and rule.node != self.node_id:
            raise ValueError(f"the rule is for node {rule.node}, this is node {self.node_id}")

    def add(self, action: str | Rule, **fields) -> Rule:
        """Add a rule at the end of the list: `add("error", api="Produce", error=6, count=3)`
        or `add(Rule(...))`. Returns the rule, which keeps counting its matches."""
        rule = action if isinstance(action, Rule) else Rule(action, **fields)
        if isinstance(action, Rule) and fields:
            raise TypeError("give either a Rule or its fields")
        self.check(rule)
        rule.id = self._next_id
        self._next_id += 1
        self._rules.append(rule)
        log.info("control %d added: %s", rule.id, rule.describe())
        self._update()
        return rule

    def load(self, rules: list[dict], *, only_this_node: bool = False) -> list[Rule]:
        """Add rules given as JSON data (a fault file's, controls/fault_file.py), all or none
        (ValueError naming the rule at fault). `only_this_node`: skip the rules for other
        nodes (a node of a cluster takes the rules for it and those for any node)."""
        built = []
        for number, data in enumerate(rules, 1):
            try:
                rule = Rule.from_dict(data)
                if only_this_node and rule.node is not None and rule.node != self.node_id:
                    continue
                self.check(rule)
            except (ValueError, TypeError) as e:
                raise ValueError(f"rule {number}: {e}") from None
            built.append(rule)
        return [self.add(rule) for rule in built]

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

    def _applied(self, rule: Rule, header) -> None:
        rule.count_application()
        log.info("control %d applied (%d of %s): %s; %s v%d from %r, correlation id %d",
                 rule.id, rule.applied, rule.count if rule.count is not None else "no limit",
                 rule.describe(), api_name(header.api_key), header.api_version,
                 header.client_id, header.correlation_id)

    def decide(self, header, request) -> Fault | None:
        """What to do with one decoded request; None: nothing, handle it as usual."""
        if self.is_down:
            return _DOWN
        key = header.api_key
        client_id = header.client_id
        names = RequestNames(key, request, self._topic_name_of)
        delay_ms = throttle_ms = 0
        outcome = error = None
        per_partition: list[Rule] = []
        for rule in self._rules:
            if not rule.matches(key, client_id, names) or not rule.due():
                continue
            action = rule.action
            if action == "delay":
                delay_ms += rule.delay_ms
            elif action == "throttle":
                throttle_ms = max(throttle_ms, rule.throttle_ms)
            elif action == "error" and rule.partition is not None \
                    and partition_errors.answers_per_partition(key):
                per_partition.append(rule)      # applied below, unless the request is failed
                continue
            elif outcome is not None:
                continue        # another fault already answers this request: not applied
            elif action == "error" and rule.next_error() == ErrorCode.NONE:
                pass            # NONE in a list of errors: this one is served normally
            else:
                outcome = rule
                if action == "error":
                    error = rule.next_error()
            self._applied(rule, header)
        failed = None
        if per_partition and not (outcome is not None and (
                outcome.action == "error" or outcome.when == "before")):
            failed, claimed = {}, set()
            for rule in per_partition:
                at = (rule.topic, rule.partition)
                if at in claimed:
                    continue    # an earlier rule answers this partition: not applied
                claimed.add(at)
                code = rule.next_error()
                if code != ErrorCode.NONE:      # NONE: this partition is served normally
                    failed[at] = (code, rule.error_message(code))
                self._applied(rule, header)
        if outcome is None and not (delay_ms or throttle_ms or failed):
            return None
        return Fault(delay_ms, None if outcome is None else outcome.action, outcome,
                     error=error, message=None if error is None else outcome.error_message(error),
                     throttle_ms=throttle_ms, failed_partitions=failed or None)


# --- the answer of an `error` rule ---

async def handle_partly(header, request, failed: dict, handle, topic_name_of=lambda tid: None):
    """The response to a request some of whose partitions an `error` rule fails
    (`failed`: {(topic, partition): (code, message)}): `await handle(request)` serves the
    others (wire/partition_errors.py splits the request), then the failed partitions' answers
    are merged in, in request order. None when the handler gives no response."""
    key, version = header.api_key, header.api_version
    handled, failing = partition_errors.split(key, request, failed, topic_name_of)
    response = partition_errors.empty_response(key) if handled is None else \
        await handle(handled)
    if response is None:
        return None
    answers = partition_errors.failed_answers(key, version, failing, failed, topic_name_of)
    return partition_errors.merge(key, request, response, answers)


def error_answer(header, request, error: ErrorCode, message: str | None):
    """The response message an `error` rule answers with, or None where no response is due
    (Produce with acks=0: Kafka closes the connection instead, the caller's business)."""
    if header.api_key == ApiKey.PRODUCE and request.acks == 0:
        return None
    return error_response(header.api_key, header.api_version, request, error, message)


def encode_error_response(header, request, rule: Rule) -> list | None:
    """The response frame an `error` rule with one code answers with (see error_answer)."""
    response = error_answer(header, request, rule.error, rule.error_message(rule.error))
    if response is None:
        return None
    return protocol.encode_response(header.api_key, header.api_version, header.correlation_id,
                                    response)
