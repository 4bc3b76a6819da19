"""`trioka control`: fault injection on a running trioka broker, through its admin endpoint.

    trioka control add error --api Produce --error NOT_LEADER_OR_FOLLOWER --count 3
    trioka control add delay --api Fetch --delay-ms 500
    trioka control add disconnect --when after --api Produce --every 5 --count 10
    trioka control add drop_response --api Heartbeat --client-id my-app
    trioka control add error --topic t --partition 0 --errors NOT_LEADER_OR_FOLLOWER,NONE
    trioka control add error --api Produce --error NOT_LEADER_OR_FOLLOWER --probability 0.3 --seed 7
    trioka control add throttle --api Fetch --throttle-ms 500 --group my-group
    trioka control load FILE          (a fault file: a rule or a list of rules, as JSON)
    trioka control list [--json]
    trioka control clear [ID]
    trioka control down | up
    trioka control node list [--json]
    trioka control node stop | kill | start | isolate | heal ID
    trioka control node slow ID --ms N
    trioka control node rtt ID --ms N
    trioka control clock show [--json]
    trioka control clock advance 7d   (500ms, 30s, 5m, 2h, 7d, 1h30m; a bare number is ms)
    trioka control clock set 2030-01-01T00:00:00Z   (or milliseconds since the epoch)

Every command takes `--admin http://HOST:PORT` (default: $TRIOKA_ADMIN), the address the broker
printed at the end of its ready line when started with `--admin-listener`. Unlike the other tools
this is not Kafka's protocol: it works against trioka only. The rules and what they do are
described in controls.py; `add` prints the rule's id and what it does, `list` a table with how
many requests each rule matched and was applied to. Exit status 0 on success, 1 when the endpoint
refused or could not be reached, 2 for a usage error.

`node` drives the nodes of `trioka serve --nodes N` (node/cluster.py): `stop` is a controlled
shutdown, `kill` an abrupt one as SIGKILL (no flush, no checkpoint), `start` brings the node back
(recovering from its log dir), `isolate` cuts it off from the other nodes (clients still reach
it), `heal` ends its faults, `slow` delays its replica fetches by N ms, `rtt` holds each of its
responses N ms (a round trip). A single broker takes isolate, heal, slow and rtt only.

`clock` shows or moves the clock of a broker started with `--virtual-time` (clock.py): `advance`
moves it forward, running in order what falls due on the way (timeouts, retention,
expirations), and returns once that has run; `set` moves it to a time, never back. A broker on
real time shows its clock and refuses to move it (exit status 1).
"""

import datetime
import fractions
import json
import os
import re
import sys
import urllib.error
import urllib.request

from trioka.cli import UsageError, fail, print_table

ACTIONS = ("error", "delay", "disconnect", "drop_response", "throttle")
NODE_ACTIONS = {
    "stop": "controlled shutdown, then a clean one",
    "kill": "stop at once, as SIGKILL: no flush, no checkpoint, no clean close",
    "start": "start a stopped or killed node (it recovers from its log dir)",
    "isolate": "cut the node off from the other nodes (clients still reach it)",
    "heal": "end the node's faults (isolation, slowness, round-trip delay)",
    "slow": "delay the node's replica fetches",
    "rtt": "hold each of the node's responses (a round-trip delay)",
}


def add_parser(sub) -> None:
    p = sub.add_parser("control", help="fault injection on a trioka broker (admin endpoint)",
                       description="Add, list and clear a trioka broker's fault-injection "
                                   "rules, or take it down and up, through its admin endpoint.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a rule")
    add.add_argument("rule_action", choices=ACTIONS, metavar="ACTION",
                     help="error, delay, disconnect, drop_response or throttle")
    add.add_argument("--api", help="only requests of this API (Produce, FIND_COORDINATOR, 0)")
    add.add_argument("--topic", help="only requests naming this topic")
    add.add_argument("--partition", type=int, metavar="N",
                     help="with --topic: only requests naming this partition of it (an error "
                          "fails that partition alone, where the API answers per partition)")
    add.add_argument("--client-id", help="only requests with this client id")
    add.add_argument("--group", help="only requests naming this consumer group")
    add.add_argument("--transactional-id", help="only requests naming this transactional id")
    add.add_argument("--node", type=int, metavar="ID",
                     help="the node.id the rule is for (a cluster: that node's rules)")
    add.add_argument("--probability", type=float, metavar="P",
                     help="apply to this share of the due matches (0 < P <= 1)")
    add.add_argument("--seed", type=int, metavar="N",
                     help="the seed of the probability draws (default: one picked and shown)")
    add.add_argument("--count", type=int, metavar="N", help="apply N times (default: no limit)")
    add.add_argument("--after", type=int, metavar="N", help="skip the first N matches")
    add.add_argument("--every", type=int, metavar="N", help="apply to one match in N")
    add.add_argument("--error", metavar="CODE",
                     help="error: Kafka's error name (NOT_LEADER_OR_FOLLOWER) or code")
    add.add_argument("--errors", metavar="CODE,CODE,...",
                     type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
                     help="error: one code per application, in order (NONE: served normally)")
    add.add_argument("--throttle-ms", type=int, metavar="MS",
                     help="throttle: throttle_time_ms answered, and how long the connection "
                          "is muted")
    add.add_argument("--message", help="error: the error_message, where the response has one")
    add.add_argument("--delay-ms", type=int, metavar="MS", help="delay: how long to hold")
    add.add_argument("--when", choices=("before", "after"),
                     help="disconnect: before handling (default) or after, unanswered")
    add.set_defaults(run=add_rule)
    load = actions.add_parser("load", help="add the rules of a fault file")
    load.add_argument("file", help="a JSON rule or list of rules, as `trioka serve --faults`")
    load.set_defaults(run=load_rules)
    ls = actions.add_parser("list", help="the rules, with their match counts")
    ls.add_argument("--json", action="store_true", help="the admin endpoint's JSON as it is")
    ls.set_defaults(run=list_rules)
    clear = actions.add_parser("clear", help="remove every rule, or one by id")
    clear.add_argument("id", nargs="?", type=int, help="the rule to remove (default: all)")
    clear.set_defaults(run=clear_rules)
    down = actions.add_parser("down", help="close every client connection, refuse new ones")
    down.set_defaults(run=lambda args: set_state(args, "down"))
    retention = actions.add_parser("retention", help="run a retention pass now")
    retention.set_defaults(run=lambda args: run_now(args, "retention"))
    compaction = actions.add_parser("compaction", help="clean every compacted log now")
    compaction.set_defaults(run=lambda args: run_now(args, "compaction"))
    up = actions.add_parser("up", help="serve clients again")
    up.set_defaults(run=lambda args: set_state(args, "up"))
    node = actions.add_parser("node", help="stop, kill, start, isolate, heal or slow a node",
                              description="The node controls of a trioka cluster.")
    node_actions = node.add_subparsers(dest="node_action", metavar="NODE_ACTION", required=True)
    node_parsers = []
    nodes = node_actions.add_parser("list", help="the nodes and their state")
    nodes.add_argument("--json", action="store_true", help="the admin endpoint's JSON as it is")
    nodes.set_defaults(run=list_nodes)
    node_parsers.append(nodes)
    for action, what in NODE_ACTIONS.items():
        q = node_actions.add_parser(action, help=what)
        q.add_argument("id", type=int, help="the node's node.id")
        if action in ("slow", "rtt"):
            q.add_argument("--ms", type=int, required=True, metavar="N",
                           help=f"delay each {'replica fetch' if action == 'slow' else 'response'}"
                                f" by N ms (0: no delay)")
        q.set_defaults(run=lambda args, action=action: node_control(args, action))
        node_parsers.append(q)
    clock = actions.add_parser("clock", help="show or move a virtual clock (--virtual-time)",
                               description="The clock of a trioka broker on virtual time.")
    clock_actions = clock.add_subparsers(dest="clock_action", metavar="CLOCK_ACTION",
                                         required=True)
    show = clock_actions.add_parser("show", help="the broker's clock, virtual or real")
    show.add_argument("--json", action="store_true", help="the admin endpoint's JSON as it is")
    show.set_defaults(run=show_clock)
    advance = clock_actions.add_parser(
        "advance", help="move the virtual clock forward, running what falls due on the way")
    advance.add_argument("duration", metavar="DURATION",
                         help="500ms, 30s, 5m, 2h, 7d, 1w or a sum such as 1h30m; a bare "
                              "number is milliseconds")
    advance.set_defaults(run=advance_clock)
    set_time = clock_actions.add_parser("set", help="move the virtual clock to a time")
    set_time.add_argument("time", metavar="TIME",
                          help="an ISO 8601 time (2030-01-01T00:00:00Z; UTC without a zone) or "
                               "milliseconds since the epoch")
    set_time.set_defaults(run=set_clock)
    clock_parsers = [show, advance, set_time]
    for q in (add, load, ls, clear, down, up, retention, compaction, *node_parsers,
              *clock_parsers):
        q.add_argument("--admin", default=os.environ.get("TRIOKA_ADMIN"),
                       metavar="http://HOST:PORT",
                       help="the broker's admin endpoint (default: $TRIOKA_ADMIN)")
        # A node control waits for the node: a killed node's restart registers only once its
        # old session has expired (broker.session.timeout.ms), as a Kafka broker's does.
        # A clock move runs what falls due on the way: days take about a second (the endpoint
        # gives it up to a minute).
        default_ms = 90000 if q in node_parsers else 70000 if q in clock_parsers else 10000
        q.add_argument("--timeout-ms", type=int, default=default_ms, metavar="MS",
                       help=f"how long the admin endpoint may take (default {default_ms})")


class AdminError(Exception):
    """The admin endpoint refused the request or could not be reached."""


def call(args, method: str, path: str, body: dict | None = None):
    """One request to the admin endpoint; its JSON answer."""
    if not args.admin:
        raise UsageError("--admin http://HOST:PORT is required (or set TRIOKA_ADMIN)")
    base = args.admin if "://" in args.admin else f"http://{args.admin}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout_ms / 1000) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("error", e.reason)
        except (ValueError, AttributeError):
            detail = e.reason
        raise AdminError(f"{detail} (HTTP {e.code})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise AdminError(f"cannot reach the admin endpoint {base}: {reason}") from None


def _run(fn):
    """Exit 1 with a message when the endpoint refuses or is unreachable."""
    def wrapped(args, *more) -> int:
        try:
            return fn(args, *more)
        except AdminError as e:
            return fail(str(e))
    return wrapped


def fault(rule: dict) -> str:
    """What a rule does: `error NOT_LEADER_OR_FOLLOWER`, `delay 500 ms`."""
    action = rule["action"]
    if action == "error" and rule.get("errors"):
        return "errors " + ",".join(rule["errors"])
    if action == "error":
        return f"error {rule.get('error')}"
    if action == "delay":
        return f"delay {rule.get('delay_ms')} ms"
    if action == "throttle":
        return f"throttle {rule.get('throttle_ms')} ms"
    if action == "disconnect":
        return f"disconnect {rule.get('when')} handling"
    return action


def describe(rule: dict) -> str:
    """`error NOT_LEADER_OR_FOLLOWER on Produce, count 3`, from a rule's JSON."""
    parts = [fault(rule), f"on {rule['api']}" if rule.get("api") else "on every request"]
    if rule.get("topic"):
        parts.append(f"naming topic {rule['topic']}" if rule.get("partition") is None else
                     f"naming partition {rule['topic']}-{rule['partition']}")
    for field, label in (("group", "group"), ("transactional_id", "transactional id"),
                         ("client_id", "from client id"), ("node", "on node")):
        if rule.get(field) is not None:
            parts.append(f"{label} {rule[field]}")
    extra = []
    if rule.get("after"):
        extra.append(f"after {rule['after']}")
    if rule.get("every", 1) != 1:
        extra.append(f"every {rule['every']}")
    if rule.get("count") is not None:
        extra.append(f"count {rule['count']}")
    if rule.get("probability", 1) != 1:
        extra.append(f"probability {rule['probability']:g}, seed {rule['seed']}")
    return " ".join(parts) + (", " + ", ".join(extra) if extra else "")


# The flag a rule's action cannot go without (the rule's field named in the flag's words).
RULE_NEEDS = {"delay": ("--delay-ms",), "throttle": ("--throttle-ms",),
              "error": ("--error", "--errors")}


@_run
def add_rule(args) -> int:
    needs = RULE_NEEDS.get(args.rule_action, ())
    if needs and all(getattr(args, flag[2:].replace("-", "_")) is None for flag in needs):
        article = "an" if args.rule_action[0] in "aeiou" else "a"
        raise UsageError(f"{article} {args.rule_action} rule needs {' or '.join(needs)}")
    body = {"action": args.rule_action}
    for field in ("api", "topic", "partition", "client_id", "group", "transactional_id", "node",
                  "count", "after", "every", "probability", "seed", "error", "errors",
                  "message", "delay_ms", "throttle_ms", "when"):
        value = getattr(args, field)
        if value is not None:
            body[field] = value
    rule = call(args, "POST", "/controls", body)
    print(f"Added control {rule['id']}: {describe(rule)}")
    return 0


def _where(rule: dict) -> str:
    """What a rule's requests must name: `orders-0 group g`, or `*`."""
    parts = []
    if rule.get("topic"):
        parts.append(rule["topic"] if rule.get("partition") is None else
                     f"{rule['topic']}-{rule['partition']}")
    for field, label in (("group", "group"), ("transactional_id", "txn"), ("node", "node")):
        if rule.get(field) is not None:
            parts.append(f"{label} {rule[field]}")
    return " ".join(parts) or "*"


@_run
def load_rules(args) -> int:
    from trioka.controls.fault_file import read_fault_file
    try:
        rules = read_fault_file(args.file)
    except ValueError as e:
        raise UsageError(str(e)) from None
    added = call(args, "POST", "/controls", rules)
    for rule in added:
        print(f"Added control {rule['id']}: {describe(rule)}")
    return 0


@_run
def list_rules(args) -> int:
    state = call(args, "GET", "/controls")
    if args.json:
        json.dump(state, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"Broker: {'down' if state['down'] else 'up'}")
    rows = [[r["id"], fault(r), r.get("api") or "*", _where(r),
             r.get("client_id") or "*", r["after"], r["every"],
             "-" if r["count"] is None else r["count"],
             "-" if r.get("probability", 1) == 1 else f"{r['probability']:g}/{r['seed']}",
             r["matched"], r["applied"]]
            for r in state["rules"]]
    print_table(["ID", "FAULT", "API", "NAMING", "CLIENT-ID", "AFTER", "EVERY", "COUNT",
                 "P/SEED", "MATCHED", "APPLIED"], rows)
    return 0


@_run
def clear_rules(args) -> int:
    if args.id is None:
        result = call(args, "DELETE", "/controls")
        print(f"Removed {result['removed']} controls.")
    else:
        call(args, "DELETE", f"/controls/{args.id}")
        print(f"Removed control {args.id}.")
    return 0


@_run
def set_state(args, state: str) -> int:
    call(args, "POST", f"/controls/{state}")
    print("The broker is down: client connections are closed until `trioka control up`."
          if state == "down" else "The broker is up.")
    return 0


def node_summary(node: dict) -> str:
    """`node 2 running (broker), isolated, slow 200 ms`, from a node's JSON."""
    faults = (["isolated"] if node.get("isolated") else []) + \
        ([f"slow {node['slow_ms']} ms"] if node.get("slow_ms") else []) + \
        ([f"rtt {node['rtt_ms']} ms"] if node.get("rtt_ms") else [])
    return (f"Node {node['id']} {node['state']} ({','.join(node.get('roles', []))})"
            + "".join(f", {f}" for f in faults))


@_run
def list_nodes(args) -> int:
    state = call(args, "GET", "/nodes")
    if args.json:
        json.dump(state, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    rows = [[n["id"], n["state"], ",".join(n["roles"]), " ".join(n["listeners"]),
             "yes" if n["isolated"] else "no", n["slow_ms"], n.get("rtt_ms", 0)]
            for n in state["nodes"]]
    print_table(["ID", "STATE", "ROLES", "LISTENERS", "ISOLATED", "SLOW-MS", "RTT-MS"], rows)
    return 0


@_run
def node_control(args, action: str) -> int:
    if args.id < 0:
        raise UsageError(f"node id {args.id} is not a node.id")
    body = {"ms": args.ms} if action in ("slow", "rtt") else None
    if action in ("slow", "rtt") and args.ms < 0:
        raise UsageError(f"--ms {args.ms}: a delay is 0 or more milliseconds")
    node = call(args, "POST", f"/nodes/{args.id}/{action}", body)
    print(node_summary(node) + ".")
    return 0


@_run
def run_now(args, operation: str) -> int:
    """Retention or compaction now, instead of at the broker's next timer tick."""
    result = call(args, "POST", f"/{operation}")
    count, = result.values()
    what = "segments deleted" if operation == "retention" else "partitions cleaned"
    print(f"{operation.capitalize()} done: {count} {what}.")
    return 0


# --- virtual time (`trioka control clock`) ---

_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                      "w": 604_800_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> int:
    """`500ms`, `30s`, `5m`, `2h`, `7d`, `1w`, sums such as `1h30m`, or a bare number of
    milliseconds: the whole number of milliseconds; UsageError otherwise."""
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        return int(cleaned)
    total, at = fractions.Fraction(0), 0
    for part in _DURATION_PART.finditer(cleaned):
        if part.start() != at:
            break
        total += fractions.Fraction(part[1]) * _DURATION_UNITS_MS[part[2]]
        at = part.end()
    if not cleaned or at != len(cleaned):
        raise UsageError(f"duration {text!r}: use a number and a unit (500ms, 30s, 5m, 2h, 7d, "
                         f"1w), or a sum of them (1h30m)")
    if total.denominator != 1:
        raise UsageError(f"duration {text!r} is not a whole number of milliseconds")
    return int(total)


def parse_time(text: str) -> int:
    """An ISO 8601 time (UTC when it names no zone) or milliseconds since the epoch: the
    milliseconds since the epoch; UsageError otherwise."""
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned)
    try:
        when = datetime.datetime.fromisoformat(cleaned)
    except ValueError:
        raise UsageError(f"time {text!r}: use an ISO 8601 time (2030-01-01T00:00:00Z) or "
                         f"milliseconds since the epoch") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return round(when.timestamp() * 1000)


def clock_summary(state: dict) -> str:
    """`Virtual clock at 2030-01-01T00:00:00.000Z (1893456000000 ms)`, from GET /clock."""
    wall_ms = state["wall_ms"]
    when = datetime.datetime.fromtimestamp(wall_ms / 1000, datetime.timezone.utc)
    kind = "Virtual" if state["virtual"] else "Real"
    return f"{kind} clock at {when.isoformat(timespec='milliseconds')[:-6]}Z ({wall_ms} ms)"


@_run
def show_clock(args) -> int:
    state = call(args, "GET", "/clock")
    if args.json:
        json.dump(state, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(clock_summary(state) + ".")
    return 0


@_run
def advance_clock(args) -> int:
    ms = parse_duration(args.duration)
    before = call(args, "GET", "/clock")
    state = call(args, "POST", "/clock/advance", {"ms": ms})
    print(f"Advanced {state['wall_ms'] - before['wall_ms']} ms: {clock_summary(state)}.")
    return 0


@_run
def set_clock(args) -> int:
    state = call(args, "POST", "/clock/set", {"wall_ms": parse_time(args.time)})
    print(f"Set: {clock_summary(state)}.")
    return 0
