"""`trioka report`: the conformance report of a running trioka broker, through its admin endpoint.

    trioka report [--markdown | --json] [--admin http://HOST:PORT]

Per client (client id, and the software name and version it gave in ApiVersions, KIP-511): the
APIs and versions it used, the error codes it was answered with their counts, and the violations
of the protocol the broker saw, each with the request that showed it. Markdown by default (one
section per client, tables of APIs and violations); `--json` prints GET /report's JSON. A broker
started with `--strict` (config key `trioka.strict`) reports every request since it started;
otherwise the report is derived from the requests its request log still holds. The checks and
their names are described in observe/conformance.py.

Exit status 0 on success, 1 when the endpoint refused or could not be reached, 2 for a usage
error (no --admin and no $TRIOKA_ADMIN).
"""

import json
import os
import sys

from trioka.cli import fail
from trioka.cli.control import AdminError, call
from trioka.observe.conformance import to_markdown


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="the conformance report of a trioka broker (admin "
                                      "endpoint)",
                       description="Per client: the APIs and versions it used, the errors it "
                                   "got and its violations of the Kafka protocol.")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="Markdown (the default)")
    form.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--admin", default=os.environ.get("TRIOKA_ADMIN"), metavar="http://HOST:PORT",
                   help="the broker's admin endpoint (default: $TRIOKA_ADMIN)")
    p.add_argument("--timeout-ms", type=int, default=10000, metavar="MS",
                   help="how long the admin endpoint may take (default 10000)")
    p.set_defaults(run=show)


def show(args) -> int:
    try:
        report = call(args, "GET", "/report")
    except AdminError as e:
        return fail(str(e))
    out = sys.stdout
    out.write(json.dumps(report, indent=2) + "\n" if args.json else to_markdown(report) + "\n")
    out.flush()
    return 0
