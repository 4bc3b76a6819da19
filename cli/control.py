"""`trioka control`: fault injection on a running trioka broker, through its admin endpoint.

    trioka control add error --api Produce --error NOT_LEADER_OR_FOLLOWER --count 3
    trioka control add delay --api Fetch --delay-ms 500
    trioka control add disconnect --when after --api Produce --every 5 --count 10
    trioka control add drop_response --api Heartbeat --client-id my-app
    trioka control list [--json]
    trioka control clear [ID]
    trioka control down | up
    trioka control node list [--json]
    trioka control node stop | kill | start | isolate | heal ID
    trioka control node slow ID --ms N

Every command takes `--admin http://HOST:PORT` (default: $TRIOKA_ADMIN), the address the broker
printed at the end of its ready line when started with `--admin-listener`. Unlike the other tools
this is not Kafka's protocol: it works against trioka only. The rules and what they do are
described in controls.py; `add` prints the rule's id and what it does, `list` a table with how
many requests each rule matched and was applied to. Exit status 0 on success, 1 when the endpoint
refused or could not be reached, 2 for a usage error.

`node` drives the nodes of `trioka serve --nodes N` (node/cluster.py): `stop` is a controlled
shutdown, `kill` an abrupt one as SIGKILL (no flush, no checkpoint), `start` brings the node back
(recovering from its log dir), `isolate` cuts it off from the other nodes (clients still reach
it), `heal` ends its faults, `slow` delays its replica fetches by N ms. A single broker takes
isolate, heal and slow only.
"""

import json
import os
import sys
import urllib.error
import urllib.request

from trioka.cli import UsageError, fail, print_table

ACTIONS = ("error", "delay", "disconnect", "drop_response")
NODE_ACTIONS = {
    "stop": "controlled shutdown, then a clean one",
    "kill": "stop at once, as SIGKILL: no flush, no checkpoint, no clean close",
    "start": "start a stopped or killed node (it recovers from its log dir)",
    "isolate": "cut the node off from the other nodes (clients still reach it)",
    "heal": "end the node's faults (isolation, slowness)",
    "slow": "delay the node's replica fetches",
}


def add_parser(sub) -> None:
    p = sub.add_parser("control", help="fault injection on a trioka broker (admin endpoint)",
                       description="Add, list and clear a trioka broker's fault-injection "
                                   "rules, or take it down and up, through its admin endpoint.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a rule")
    add.add_argument("rule_action", choices=ACTIONS, metavar="ACTION",
                     help="error, delay, disconnect or drop_response")
    add.add_argument("--api", help="only requests of this API (Produce, FIND_COORDINATOR, 0)")
    add.add_argument("--topic", help="only requests naming this topic")
    add.add_argument("--client-id", help="only requests with this client id")
    add.add_argument("--count", type=int, metavar="N", help="apply N times (default: no limit)")
    add.add_argument("--after", type=int, metavar="N", help="skip the first N matches")
    add.add_argument("--every", type=int, metavar="N", help="apply to one match in N")
    add.add_argument("--error", metavar="CODE",
                     help="error: Kafka's error name (NOT_LEADER_OR_FOLLOWER) or code")
    add.add_argument("--message", help="error: the error_message, where the response has one")
    add.add_argument("--delay-ms", type=int, metavar="MS", help="delay: how long to hold")
    add.add_argument("--when", choices=("before", "after"),
                     help="disconnect: before handling (default) or after, unanswered")
    add.set_defaults(run=add_rule)
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
        if action == "slow":
            q.add_argument("--ms", type=int, required=True, metavar="N",
                           help="delay each replica fetch by N ms (0: no delay)")
        q.set_defaults(run=lambda args, action=action: node_control(args, action))
        node_parsers.append(q)
    for q in (add, ls, clear, down, up, retention, compaction, *node_parsers):
        q.add_argument("--admin", default=os.environ.get("TRIOKA_ADMIN"),
                       metavar="http://HOST:PORT",
                       help="the broker's admin endpoint (default: $TRIOKA_ADMIN)")
        # A node control waits for the node: a killed node's restart registers only once its
        # old session has expired (broker.session.timeout.ms), as a Kafka broker's does.
        default_ms = 90000 if q in node_parsers else 10000
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
    if action == "error":
        return f"error {rule.get('error')}"
    if action == "delay":
        return f"delay {rule.get('delay_ms')} ms"
    if action == "disconnect":
        return f"disconnect {rule.get('when')} handling"
    return action


def describe(rule: dict) -> str:
    """`error NOT_LEADER_OR_FOLLOWER on Produce, count 3`, from a rule's JSON."""
    parts = [fault(rule), f"on {rule['api']}" if rule.get("api") else "on every request"]
    if rule.get("topic"):
        parts.append(f"naming topic {rule['topic']}")
    if rule.get("client_id"):
        parts.append(f"from client id {rule['client_id']}")
    extra = []
    if rule.get("after"):
        extra.append(f"after {rule['after']}")
    if rule.get("every", 1) != 1:
        extra.append(f"every {rule['every']}")
    if rule.get("count") is not None:
        extra.append(f"count {rule['count']}")
    return " ".join(parts) + (", " + ", ".join(extra) if extra else "")


@_run
def add_rule(args) -> int:
    body = {"action": args.rule_action}
    for field in ("api", "topic", "client_id", "count", "after", "every", "error", "message",
                  "delay_ms", "when"):
        value = getattr(args, field)
        if value is not None:
            body[field] = value
    rule = call(args, "POST", "/controls", body)
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
    rows = [[r["id"], r["action"], fault(r), r.get("api") or "*",
             r.get("topic") or "*", r.get("client_id") or "*", r["after"], r["every"],
             "-" if r["count"] is None else r["count"], r["matched"], r["applied"]]
            for r in state["rules"]]
    print_table(["ID", "ACTION", "FAULT", "API", "TOPIC", "CLIENT-ID", "AFTER", "EVERY", "COUNT",
                 "MATCHED", "APPLIED"], rows)
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
        ([f"slow {node['slow_ms']} ms"] if node.get("slow_ms") else [])
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
             "yes" if n["isolated"] else "no", n["slow_ms"]] for n in state["nodes"]]
    print_table(["ID", "STATE", "ROLES", "LISTENERS", "ISOLATED", "SLOW-MS"], rows)
    return 0


@_run
def node_control(args, action: str) -> int:
    if args.id < 0:
        raise UsageError(f"node id {args.id} is not a node.id")
    body = {"ms": args.ms} if action == "slow" else None
    if action == "slow" and args.ms < 0:
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
