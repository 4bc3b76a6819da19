"""The `trioka` command (also `python -m trioka`).

    trioka [serve] [--listeners PLAINTEXT://127.0.0.1:9092 | --port N]
                   [--data-dir DIR | --memory]
                   [--config server.properties] [--override key=value ...]
                   [--admin-listener HOST:PORT] [--faults FILE] [--request-log FILE]
                   [--kafka-version RELEASE] [--nodes N [--racks R1,R2,...]] [--virtual-time]
                   [--strict]

`serve` is the default. Settings are Kafka's keys, read in this order, later winning: defaults,
`--config` (a server.properties), KAFKA_* environment variables (as the apache/kafka image maps
them), `--override`, then the named flags. Once the listeners are bound the command prints one line,

    trioka ready: PLAINTEXT://127.0.0.1:9092 node 1 cluster <id> data <dir>

(ending in ` admin http://HOST:PORT` when the fault-injection admin endpoint is on) and serves
until SIGTERM or SIGINT, which shut it down gracefully. `--faults FILE` starts it with the fault
rules of FILE in force (controls/fault_file.py). `--kafka-version 3.7` poses as that Kafka
release: its API versions, features and behaviour (wire/releases.py). A configuration error (a
bad value, in Kafka's ConfigException words; an unknown Kafka release, a fault file that cannot
be read or holds an invalid rule) stops the start with one line, exit status 1, as does a start
that fails on the user's side: a port in use, a data directory locked by another broker or not
writable. A usage error (an unknown flag, a flag's value of the wrong type or not one of its
choices) prints the usage of the command at fault and one line naming it, exit status 2.

`--nodes N` runs a cluster of N nodes in this one process (node/cluster.py): node ids 1..N, node 1
also the KRaft controller (on a CONTROLLER listener of its own), each node with its own listener
(ports consecutive from the one given; port 0 picks a free one per node) and its own log directory
`<data dir>/node-<id>/`. Each node prints its ready line, in node order; the admin endpoint, when
on, serves the whole process (node controls under /nodes) and ends every line. `--racks a,b,c`
gives the nodes their `broker.rack`, one per node in node order.

`--virtual-time` runs the broker (every node of --nodes, on one clock) on a virtual clock that
moves only when told, through the admin endpoint (POST /clock/advance, `trioka control clock`):
README.md's "Virtual time" says which behaviours follow it.

`--port N` moves the one listener of the settings (by default PLAINTEXT://127.0.0.1:9092) to port
N, its name and host kept.

`--strict` is conformance mode (config key `trioka.strict`, observe/conformance.py): every
produced record is validated as Kafka's LogValidator does, each client's use of the protocol is
checked, and `trioka report` (GET /report on the admin endpoint) lists per client its APIs,
versions, errors and violations.

The other commands are tools that speak the Kafka protocol to any cluster (trioka/cli/): `topic`,
`produce`, `consume`, `group` and `txn`; `trioka COMMAND --help` lists their flags. `control` talks
to a trioka broker's admin endpoint instead: fault injection for tests (cli/control.py).
"""

import argparse
import logging
import signal
import sys

# `--log-level`: Python's logging levels (Kafka's log4j names, TRACE aside).
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class CommandParser(argparse.ArgumentParser):
    """argparse, with a command's mistakes reported by that command: `trioka topic create foo
    -p 3` prints `trioka topic create`'s usage and `trioka topic create: error: unrecognized
    arguments: -p 3` (exit 2), where plain argparse leaves unknown flags to the top-level parser.
    Sub-parsers are made with the parser's own class, so every command gets this for free."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        # The innermost command's parser (`trioka topic create`), for the usage errors found
        # after parsing (cli.UsageError): the deepest sub-parser's default wins.
        self.set_defaults(command_parser=self)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != TOP:
            self.error("unrecognized arguments: " + " ".join(extras))
        return parsed, extras


TOP = "trioka"


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listeners", help="Kafka listeners, e.g. PLAINTEXT://127.0.0.1:9092 "
                   "(port 0 picks a free port)")
    p.add_argument("--port", type=int, metavar="N",
                   help="the listener's port, its host kept (default listener "
                        "PLAINTEXT://127.0.0.1:9092; port 0 picks a free port)")
    p.add_argument("--advertised-listeners", help="addresses clients are told to use")
    p.add_argument("--data-dir", help="the log directory (default: ./trioka-data, kept "
                   "between runs)")
    p.add_argument("--memory", action="store_true", help="keep everything in memory")
    p.add_argument("--config", help="a server.properties file")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a Kafka config key (repeatable)")
    p.add_argument("--node-id", type=int)
    p.add_argument("--nodes", type=int, metavar="N",
                   help="run a cluster of N nodes in this process (node 1 is also the "
                        "controller)")
    p.add_argument("--racks", metavar="R1,R2,...",
                   help="with --nodes: each node's broker.rack, one per node in node order")
    p.add_argument("--admin-listener", metavar="HOST:PORT",
                   help="serve the fault-injection admin endpoint here (port 0 picks one); "
                        "config key trioka.admin.listener")
    p.add_argument("--request-log", metavar="FILE",
                   help="append every request and its response to FILE as JSON lines; "
                        "config key trioka.request.log.file")
    p.add_argument("--faults", metavar="FILE",
                   help="fault rules in force from the start: a JSON rule or list of rules, "
                        "as POST /controls takes them; config key trioka.faults.file")
    p.add_argument("--kafka-version", metavar="RELEASE",
                   help="pose as this Kafka release (2.8 to 4.2; default: the newest trioka "
                        "serves whole): its API versions, features and behaviour; config key "
                        "trioka.kafka.version")
    p.add_argument("--virtual-time", action="store_true",
                   help="run on a virtual clock that moves only when told (POST /clock/advance "
                        "on the admin endpoint, `trioka control clock advance 7d`); config key "
                        "trioka.virtual.time")
    p.add_argument("--strict", action="store_true",
                   help="conformance mode: validate every produced record as Kafka's "
                        "LogValidator does and check each client's use of the protocol "
                        "(`trioka report`); config key trioka.strict")
    p.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS,
                   help="how much the broker logs to stderr (default WARNING)")


def parser(tools: bool = True) -> argparse.ArgumentParser:
    """The command line; `tools` adds the client tools' sub-commands (not loaded to serve)."""
    from trioka import __version__
    p = CommandParser(prog=TOP, description="A Kafka-compatible broker on trio.")
    p.add_argument("--version", action="version", version=f"trioka {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _serve_args(sub.add_parser("serve", help="run the broker (the default)"))
    if tools:
        from trioka.cli import add_commands, control
        add_commands(sub)
        control.add_parser(sub)
    return p


# `trioka serve` flags that set a config key (given flags win over --override and the files).
SERVE_FLAG_KEYS = (
    ("listeners", "listeners"), ("advertised_listeners", "advertised.listeners"),
    ("data_dir", "log.dirs"), ("node_id", "node.id"),
    ("admin_listener", "trioka.admin.listener"), ("virtual_time", "trioka.virtual.time"),
    ("strict", "trioka.strict"), ("faults", "trioka.faults.file"),
    ("request_log", "trioka.request.log.file"), ("kafka_version", "trioka.kafka.version"),
)


def load_config(args):
    from trioka.config import Config
    overrides = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:     # a usage error: the flag's value is not its form
            args.command_parser.error(f"argument --override: {item!r} is not KEY=VALUE")
        overrides[key.strip()] = value.strip()
    for flag, key in SERVE_FLAG_KEYS:
        value = getattr(args, flag)
        if value is None or value is False or value == "":
            continue                # not given (node id 0 is given)
        overrides[key] = "true" if value is True else value
    if args.port is not None:
        if args.listeners:
            args.command_parser.error("--port and --listeners do not go together")
        if not 0 <= args.port <= 65535:
            args.command_parser.error(f"argument --port: {args.port} is not a port (0-65535)")
    try:
        cfg = Config.load(args.config, overrides=overrides)
        if args.port is not None:   # the listener the settings name, moved to the port
            from trioka.config import listeners_on_port
            overrides["listeners"] = listeners_on_port(cfg.listeners, args.port)
            cfg = Config.load(args.config, overrides=overrides)
    except ValueError as e:     # a value that does not parse, an unknown Kafka release
        raise SystemExit(f"trioka: {e}") from None
    except OSError as e:        # --config: a file that cannot be read
        raise SystemExit(f"trioka: --config {args.config}: {e.strerror or e}") from None
    cfg.memory = args.memory
    from trioka.config import finalized, parse_connection_overrides
    try:
        finalized(cfg)
        parse_connection_overrides(cfg.max_connections_per_ip_overrides)
        from trioka.observe.request_log import check_config
        check_config(cfg)     # a request log size below 0, a file that cannot be opened
        # Listener protocols and the inter-broker listener; then, only for the listeners that
        # use them (so a plaintext broker does not load the TLS and SASL modules), keystores,
        # principal mapping rules, SASL mechanisms and JAAS configurations.
        from trioka.config import inter_broker_listener, listeners_of
        listeners = listeners_of(cfg)
        inter_broker_listener(cfg, listeners)
        if any(listener.uses_tls for listener in listeners):
            from trioka.security import tls
            tls.check_config(cfg)
        if any(listener.uses_sasl for listener in listeners):
            from trioka.security.sasl.authenticator import check_config as check_sasl
            check_sasl(cfg)
            if cfg.controller_quorum_voters or cfg.controller_quorum_bootstrap_servers:
                # A cluster node: how it logs in to the others (security/sasl/broker_login.py).
                from trioka.security.sasl.broker_login import cluster_logins
                cluster_logins(cfg)
        if cfg.trioka_faults_file:
            # A bad fault file stops the start here, with one line naming the file and rule.
            from trioka.controls.fault_file import check_nodes, read_fault_file
            path = cfg.trioka_faults_file
            check_nodes(read_fault_file(path), range(1, args.nodes + 1) if args.nodes else
                        [cfg.node_id_value], f"fault file {path}")
    except ValueError as e:
        raise SystemExit(f"trioka: {e}") from None
    return cfg


# The commands' names; a flag before one of them is a misplaced flag, not `serve`'s.
COMMAND_NAMES = ("topic", "produce", "consume", "group", "txn", "requests", "control",
                 "certs", "user", "topics", "config", "configs", "cluster", "groups",
                 "acl")


def ready_line(server, admin_address) -> str:
    """The line printed once a node's listeners are bound."""
    listeners = " ".join(repr(lst) for lst in server.listeners)
    where = server.config.data_dir or "memory"
    admin = "" if admin_address is None else " admin http://%s:%d" % admin_address
    return (f"trioka ready: {listeners} node {server.broker.node_id} "
            f"cluster {server.broker.cluster_id} data {where}{admin}")


def serve_nodes(args, config) -> int:
    """`trioka serve --nodes N`: N nodes in this process (node/cluster.py)."""
    if args.node_id is not None:
        args.command_parser.error("--node-id cannot be used with --nodes (the nodes are 1..N)")
    import trio
    from trioka.node.cluster import (LocalCluster, cluster_configs, controller_port_picked,
                                     parse_racks)
    try:
        configs = cluster_configs(config, args.nodes, parse_racks(args.racks))
        # How each node logs in to the others on SASL listeners: a mistake is one line here.
        from trioka.security.sasl.broker_login import cluster_logins
        for node_config in configs:
            cluster_logins(node_config)
    except ValueError as e:
        raise SystemExit(f"trioka: --nodes {args.nodes}: {e}") from None
    except OSError as e:
        raise SystemExit(f"trioka: {e}") from None
    cluster = LocalCluster(configs, admin_listener=config.trioka_admin_listener or None,
                           picked_controller_port=controller_port_picked(config))

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(cluster.run)
            for node in cluster.nodes:
                print(ready_line(node.server, cluster.admin_address), flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    cluster.shutdown()
                    break

    try:
        trio.run(main)
    except BaseException as e:     # start_failure picks out the user's mistakes; the rest raise
        failure = start_failure(e)    # a node that could not start: a port in use, say
        if failure is None:
            raise
        print(f"trioka: {failure}", file=sys.stderr)
        return 1
    return 0


def serve(args) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.nodes is not None and args.nodes < 1:
        args.command_parser.error(f"argument --nodes: must be 1 or more, not {args.nodes}")
    if getattr(args, "racks", None) is not None and args.nodes is None:
        args.command_parser.error("--racks needs --nodes (with one node, set broker.rack)")
    config = load_config(args)
    config.warn()
    if args.nodes is not None:
        return serve_nodes(args, config)

    import trio
    from trioka.server import Server

    async def main():
        server = Server(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            print(ready_line(server, server.admin_address), flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    server.shutdown()
                    break

    try:
        trio.run(main)
    except BaseException as e:     # start_failure picks out the user's mistakes; the rest raise
        failure = start_failure(e)
        if failure is None:
            raise
        print(f"trioka: {failure}", file=sys.stderr)
        return 1
    return 0


def start_failure(error: BaseException) -> str | None:
    """Why the broker could not start, in one line, when that is the user's to fix: a port in
    use, a data directory locked by another broker or not writable. None for anything else (a
    bug, whose traceback is wanted), even inside trio's exception groups."""
    from trioka.log.manager import LogDirError
    if isinstance(error, LogDirError):
        return str(error)
    if isinstance(error, OSError):
        if error.filename is not None:      # the data directory: permission, not a directory
            return f"{error.filename}: {error.strerror}"
        return error.strerror if error.errno is not None and error.args[1:] else str(error)
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = start_failure(inner)
            if found is not None:
                return found
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help", "--version"):
        parser().parse_args(argv[:1])      # prints the help or the version, exits 0
    if not argv or argv[0].startswith("-"):
        command = next((a for a in argv if a in COMMAND_NAMES), None)
        if command is not None:     # `trioka -b X topic list`: the flags belong after the name
            at = argv.index(command)
            parser().error(f"unrecognized arguments: {' '.join(argv[:at])} (a command's "
                           f"options go after it: trioka {' '.join(argv[at:] + argv[:at])})")
        argv = ["serve"] + list(argv)
    args = parser(tools=argv[0] != "serve").parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if getattr(args, "run", None) is not None:
        from trioka.cli import run
        return run(args)
    parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
