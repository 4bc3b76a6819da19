"""`trioka requests`: the request log of a running trioka broker, through its admin endpoint.

    trioka requests [--api Fetch] [--client-id ID] [--since SEQ] [--limit N] [--json]
    trioka requests --follow [--interval-ms 500] ...

Every request the broker served, oldest first, one aligned line each (here cut in two):

    12:24:43.417  1   copier               127.0.0.1:44244       Produce v10
                #2          8.3 ms  NOT_LEADER_OR_FOLLOWER x1

time (the broker's clock when the request arrived, local time), node id, client id, client
address, API and version, correlation id, latency, and the error codes of the response ("-" when
none; "no_response" or "disconnected: why" when the client got no answer). `--json` prints each
entry as one JSON object a line (the admin endpoint's entries, as in the broker's request log
file). `--api` (Kafka's name, Produce or PRODUCE, or the key) and `--client-id` narrow the list,
`--since SEQ` starts after the entry numbered SEQ (each entry's `seq`), `--limit N` keeps the
newest N. `--follow` keeps printing what is logged next, polling every `--interval-ms`, until
Ctrl-C (exit status 130).

Every command takes `--admin http://HOST:PORT` (default: $TRIOKA_ADMIN), the address the broker
printed at the end of its ready line when started with `--admin-listener`. Exit status 0 on
success, 1 when the endpoint refused or could not be reached, 2 for a usage error. The log itself
is described in observe/request_log.py.
"""

import json
import os
import sys
import time
import urllib.parse

from trioka.cli import UsageError, fail
from trioka.cli.control import AdminError, call


def add_parser(sub) -> None:
    p = sub.add_parser("requests", help="the request log of a trioka broker (admin endpoint)",
                       description="Every request a trioka broker served and what it "
                                   "answered, through its admin endpoint.")
    p.add_argument("--api", help="only requests of this API (Fetch, FIND_COORDINATOR, 10)")
    p.add_argument("--client-id", help="only requests with this client id")
    p.add_argument("--since", type=int, metavar="SEQ",
                   help="only entries logged after the one numbered SEQ")
    p.add_argument("--limit", type=int, metavar="N", help="only the newest N entries")
    p.add_argument("--json", action="store_true",
                   help="one JSON object a line, every field of every entry")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new entries until Ctrl-C")
    p.add_argument("--interval-ms", type=int, default=500, metavar="MS",
                   help="with --follow: how often to ask for new entries (default 500)")
    p.add_argument("--admin", default=os.environ.get("TRIOKA_ADMIN"), metavar="http://HOST:PORT",
                   help="the broker's admin endpoint (default: $TRIOKA_ADMIN)")
    p.add_argument("--timeout-ms", type=int, default=10000, metavar="MS",
                   help="how long the admin endpoint may take (default 10000)")
    p.set_defaults(run=show)


def show(args) -> int:
    for name in ("since", "limit"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UsageError(f"--{name} {value}: must be 0 or more")
    if args.interval_ms <= 0:
        raise UsageError(f"--interval-ms {args.interval_ms}: must be more than 0")
    since, limit = args.since, args.limit
    out = sys.stdout
    try:
        while True:
            params = {k: v for k, v in (("api", args.api), ("client_id", args.client_id),
                                        ("since", since), ("limit", limit)) if v is not None}
            entries = call(args, "GET", "/requests?" + urllib.parse.urlencode(params))["requests"]
            for entry in entries:
                out.write(json.dumps(entry) if args.json else line(entry))
                out.write("\n")
            out.flush()
            if entries:
                since = entries[-1]["seq"]
            if not args.follow:
                return 0
            # The newest N at first; then whatever comes.
            limit = None
            time.sleep(args.interval_ms / 1000)
    except AdminError as e:
        return fail(str(e))


def line(entry: dict) -> str:
    """One entry as an aligned line (see the module's docstring)."""
    ms = entry["time_ms"]
    when = time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"
    api = f"{entry['api']} v{entry['api_version']}"
    return (f"{when}  {entry['node']:<3} {entry['client_id'] or '-':<20} "
            f"{entry['client_address']:<21} {api:<26} #{entry['correlation_id']:<7}"
            f"{entry['latency_ms']:>8.1f} ms  {outcome(entry)}")


def outcome(entry: dict) -> str:
    """The error codes of the response, or what the client got instead of one."""
    if entry["outcome"] == "disconnected":
        return f"disconnected: {entry['error']}" if entry.get("error") else "disconnected"
    if entry["outcome"] != "responded":
        return entry["outcome"]
    errors = entry["error_codes"]
    return ", ".join(f"{name} x{count}" for name, count in errors.items()) if errors else "-"
