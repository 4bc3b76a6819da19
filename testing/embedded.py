"""A broker inside your own process: for tests and scripts.

    with trioka.Broker() as broker:               # a free port, a temporary data directory
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

    with trioka.Broker(kafka_version="3.7") as broker:   # posing as Kafka 3.7 (wire/releases.py)

    with trioka.Broker(virtual_time=True) as broker:     # a clock that moves only when told:
        broker.advance_time(8 * 24 * 3600 * 1000)        # 8 days pass, timeouts and retention
                                                         # run in order (clock.py); set_time too

The broker runs its own trio loop in a background thread; `Broker` methods are safe to call from
any other thread. Trio code can instead run it in its own nursery:

    from trioka.testing.embedded import open_broker

    async with open_broker() as server:
        ... server.bootstrap_servers ...

A cluster of several nodes (node/cluster.py) the same way, with the node controls:

    with trioka.Cluster(nodes=3) as cluster:      # node ids 1-3, node 1 also the controller
        cluster.bootstrap_servers                 # every node's address, comma separated
        cluster.node(2).kill()                    # as SIGKILL; .start() recovers it from disk
        cluster.node(3).isolate()                 # .heal(), .slow(200), .stop() (controlled)

    with trioka.Cluster(nodes=3, racks=["a", "b", "c"]):   # broker.rack a, b, c for nodes 1-3

    async with open_cluster(nodes=3) as cluster:  # the LocalCluster, in your own trio nursery
        await cluster.node(2).stop()
"""

import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import warnings

import trio

from trioka.config import Config
from trioka.controls.fault_file import check_nodes, read_fault_file, rules_from_json
from trioka.controls.rules import RuleShortcuts
from trioka.node.cluster import LocalCluster, cluster_configs, os_error_in
from trioka.observe.conformance import conformance_report, to_markdown
from trioka.observe.request_log import render_entries, select_entries
from trioka.server import Server

_names = itertools.count(1)


def _config(config: Config | dict | None, memory: bool, data_dir: str | None,
            settings: dict) -> Config:
    if isinstance(config, Config):
        cfg = config
    else:
        cfg = Config(config or {})
    if "kafka_version" in settings:     # the Kafka release to pose as: trioka.kafka.version
        settings = {**settings, "trioka_kafka_version": settings["kafka_version"]}
        del settings["kafka_version"]
    if "virtual_time" in settings:      # a clock that moves only when told: trioka.virtual.time
        settings = {**settings, "trioka_virtual_time": settings["virtual_time"]}
        del settings["virtual_time"]
    if "strict" in settings:            # conformance mode: trioka.strict
        settings = {**settings, "trioka_strict": settings["strict"]}
        del settings["strict"]
    cfg.update({k.replace("_", "."): v for k, v in settings.items()})
    if not cfg.is_set("listeners"):
        cfg.set("listeners", "PLAINTEXT://127.0.0.1:0")
    cfg.memory = memory or cfg.memory
    if data_dir:
        cfg.set("log.dirs", data_dir)
    for text in cfg.warnings:       # an unknown key: warned about, as the command line does
        warnings.warn(f"trioka: {text}", stacklevel=3)
    return cfg


@contextlib.asynccontextmanager
async def open_broker(config: Config | dict | None = None, *, memory: bool = False,
                      data_dir: str | None = None, faults: list | dict | None = None,
                      faults_file: str | None = None, **settings):
    """Run a broker in the current trio nursery; yields the Server (bootstrap_servers, broker).
    `faults` / `faults_file`: fault rules in force from the start, as for Broker."""
    rules = _fault_rules(faults, faults_file, settings)
    tmp = None
    if not memory and not data_dir and not (isinstance(config, Config) and config.is_set(
            "log.dirs")):
        tmp = data_dir = tempfile.mkdtemp(prefix="trioka-")
    cfg = _config(config, memory, data_dir, settings)
    check_nodes(rules, [cfg.node_id_value], "faults")
    try:
        async with trio.open_nursery() as nursery:
            server = Server(cfg)
            server.controls.load(rules)
            server = await nursery.start(server.run)
            try:
                yield server
            finally:
                server.shutdown()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _fault_rules(faults, faults_file: str | None, settings: dict) -> list[dict]:
    """The rules of `faults` (a rule or a list), checked; `faults_file` becomes the config key
    trioka.faults.file in `settings`, its rules checked now (the broker reads it at start)."""
    if faults_file is not None:
        read_fault_file(faults_file)
        settings["trioka_faults_file"] = faults_file
    return [] if faults is None else rules_from_json(faults, "faults")


class Broker:
    """A broker on a free port in a background thread; a context manager.

    `memory=True` keeps the logs in memory; otherwise they go to `data_dir`, or to a temporary
    directory removed on exit. `virtual_time=True` (config key `trioka.virtual.time`) runs it
    on a virtual clock: `advance_time(ms)`, `set_time(wall_ms)`. `strict=True` (config key
    `trioka.strict`) is conformance mode: `conformance_report()`. `faults` (a rule or a list of
    rules, as POST /controls takes them) and `faults_file` (config key `trioka.faults.file`) are
    fault rules in force from the start (controls/fault_file.py); ValueError here for an
    invalid one. Other keyword arguments are Kafka config keys with underscores
    (`num_partitions=3`).
    """

    def __init__(self, config: Config | dict | None = None, *, memory: bool = False,
                 data_dir: str | None = None, faults: list | dict | None = None,
                 faults_file: str | None = None, **settings):
        self._faults = _fault_rules(faults, faults_file, settings)
        self._tmp = None
        if not memory and not data_dir:
            self._tmp = data_dir = tempfile.mkdtemp(prefix="trioka-")
        try:
            self.config = _config(config, memory, data_dir, settings)   # ConfigError: a bad value
        except ValueError:
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        check_nodes(self._faults, [self.config.node_id_value], "faults")
        self.data_dir = self.config.data_dir
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: Server | None = None
        self._token = None
        self._error: BaseException | None = None

    # --- lifecycle ---

    def start(self, timeout: float = 10.0) -> "Broker":
        self._thread = threading.Thread(target=self._run, name="trioka-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the broker did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError("the broker failed to start") from self._error
        return self

    def _run(self) -> None:
        async def main():
            self._token = trio.lowlevel.current_trio_token()
            server = Server(self.config)
            server.controls.load(self._faults)
            async with trio.open_nursery() as nursery:
                self._server = await nursery.start(server.run)
                self._ready.set()
        try:
            trio.run(main)
        except BaseException as e:  # reported to start() or stop()
            self._error = e
        finally:
            self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._server is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._server.shutdown, trio_token=self._token)
        self._thread.join(timeout)
        self._thread = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what tests use ---

    @property
    def bootstrap_servers(self) -> str:
        return self._server.bootstrap_servers

    @property
    def port(self) -> int:
        return int(self.bootstrap_servers.rsplit(":", 1)[1])

    def call(self, fn, *args):
        """Run fn(broker_state, *args) in the broker's thread and return its result."""
        return trio.from_thread.run_sync(lambda: fn(self._server.broker, *args),
                                         trio_token=self._token)

    def create_topic(self, name: str | None = None, partitions: int = 1,
                     configs: dict | None = None) -> str:
        """Create a topic (a unique name when none is given) and return its name."""
        name = name or self.unique_topic_name()
        self.call(lambda b: b.create_topic(name, partitions, configs or {}))
        return name

    def enforce_retention(self) -> int:
        """Run a retention pass now; the number of segments deleted."""
        return self.call(lambda b: b.enforce_retention())

    def compact_now(self) -> int:
        """Run the log cleaner over every compacted topic now; the partitions cleaned."""
        return self.call(lambda b: b.compact_now())

    # --- virtual time (Broker(virtual_time=True); clock.py VirtualClock) ---

    def advance_time(self, ms: int) -> int:
        """Move the broker's virtual clock `ms` milliseconds forward, running in order what
        falls due on the way (timeouts, retention, expirations); returns once that has run,
        with the clock's wall time. RuntimeError on a real clock, ValueError for ms < 0."""
        return trio.from_thread.run(lambda: self._server.broker.advance_time(ms),
                                    trio_token=self._token)

    def set_time(self, wall_ms: int) -> int:
        """Move the virtual clock to `wall_ms` (ms since the epoch), as advance_time does;
        ValueError for a time before the clock's."""
        return trio.from_thread.run(lambda: self._server.broker.set_time(wall_ms),
                                    trio_token=self._token)

    def wall_ms(self) -> int:
        """The broker's clock: milliseconds since the epoch (virtual or real)."""
        return self.call(lambda b: b.clock.wall_ms())

    def unique_topic_name(self, prefix: str = "topic") -> str:
        return f"{prefix}-{os.getpid()}-{next(_names)}"

    @property
    def admin_url(self) -> str | None:
        """The admin endpoint (`trioka_admin_listener="127.0.0.1:0"`), for `trioka control`."""
        address = self._server.admin_address
        return None if address is None else "http://%s:%d" % address

    @property
    def controls(self) -> "ControlsProxy":
        """Fault injection (controls/rules.py): `broker.controls.error("NOT_LEADER_OR_FOLLOWER",
        api="Produce", count=3)`, run in the broker's thread."""
        return ControlsProxy(self)

    def requests(self, api=None, client_id: str | None = None, since: int | None = None,
                 limit: int | None = None) -> list[dict]:
        """The request log (observe/request_log.py): every request served and its response as
        dicts, oldest first; `api` (Produce, PRODUCE or 0), `client_id`, `since` (an entry's
        `seq`: those logged after it) and `limit` (the newest N) narrow it. The entries are
        chosen in the broker's thread and rendered in the caller's, so reading a long log does
        not hold up the broker."""
        def chosen(b):
            logs = [] if b.request_log is None else [b.request_log]
            return select_entries(logs, api, client_id, since, limit)
        return render_entries(self.call(chosen))

    def conformance_report(self, markdown: bool = False) -> dict | str:
        """The conformance report (observe/conformance.py): per client, the APIs and versions
        it used, the errors it got and its violations; of the whole session with
        `strict=True` (config key `trioka.strict`), else derived from the request log.
        `markdown=True`: as Markdown."""
        report = self.call(lambda b: b.conformance_report())
        return to_markdown(report) if markdown else report


def _cluster_setup(nodes: int, config: Config | dict | None, memory: bool,
                   data_dir: str | None, settings: dict,
                   racks: list[str] | None = None) -> tuple[list[Config], str | None, bool]:
    """The node configs of an embedded cluster, the temporary data dir made for it, and whether
    the controller's port is picked for it (node/cluster.py's controller_port_picked)."""
    tmp = None
    if not memory and not data_dir and not (isinstance(config, Config) and config.is_set(
            "log.dirs")):
        tmp = data_dir = tempfile.mkdtemp(prefix="trioka-cluster-")
    try:
        from trioka.node.cluster import controller_port_picked
        base = _config(config, memory, data_dir, settings)
        return cluster_configs(base, nodes, racks), tmp, controller_port_picked(base)
    except BaseException:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.asynccontextmanager
async def open_cluster(nodes: int = 3, config: Config | dict | None = None, *,
                       memory: bool = False, data_dir: str | None = None,
                       admin_listener: str | None = None, racks: list[str] | None = None,
                       **settings):
    """Run a cluster of `nodes` nodes in the current trio nursery; yields the LocalCluster
    (bootstrap_servers, node(id) with its async stop() and start(), kill(), isolate(), heal(),
    slow(ms)). Ports are free ones; the data goes to `data_dir`, or a temporary directory;
    `racks` gives each node its broker.rack, in node order."""
    configs, tmp, picked = _cluster_setup(nodes, config, memory, data_dir, settings, racks)
    started = False
    try:
        async with trio.open_nursery() as nursery:
            cluster = await nursery.start(LocalCluster(
                configs, admin_listener, picked_controller_port=picked).run)
            started = True
            try:
                yield cluster
            finally:
                cluster.shutdown()
    except BaseExceptionGroup as group:
        failure = None if started else os_error_in(group)   # a port in use, say
        if failure is None:
            raise
        raise failure from None
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


class Cluster:
    """A cluster of `nodes` nodes (ids 1..N, node 1 also the controller) in a background
    thread, on free ports; a context manager. The data goes to `data_dir` (node-<id>/ in it),
    or to a temporary directory removed on exit; `memory=True` keeps it in memory (a killed
    node then starts empty, as a process would). Other keyword arguments are Kafka config keys
    with underscores (`min_insync_replicas=2`). The admin endpoint runs on `admin_listener`
    (default: a free port on 127.0.0.1; None for none): `admin_url`, for `trioka control`.
    `racks` (`["a", "b", "c"]`) gives each node its `broker.rack`, in node order."""

    def __init__(self, nodes: int = 3, config: Config | dict | None = None, *,
                 memory: bool = False, data_dir: str | None = None,
                 admin_listener: str | None = "127.0.0.1:0", racks: list[str] | None = None,
                 **settings):
        self._configs, self._tmp, self._picked = _cluster_setup(nodes, config, memory, data_dir,
                                                                settings, racks)
        self.data_dir = data_dir or self._tmp
        self._admin_listener = admin_listener
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._cluster: LocalCluster | None = None
        self._token = None
        self._error: BaseException | None = None

    # --- lifecycle ---

    def start(self, timeout: float = 30.0) -> "Cluster":
        self._thread = threading.Thread(target=self._run, name="trioka-cluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the cluster did not start within {timeout} s")
        if self._error is not None:
            error, self._error = self._error, None
            self._cleanup()
            raise RuntimeError(f"the cluster failed to start: {error}") from error
        return self

    def _run(self) -> None:
        async def main():
            self._token = trio.lowlevel.current_trio_token()
            cluster = LocalCluster(self._configs, self._admin_listener,
                                   picked_controller_port=self._picked)
            async with trio.open_nursery() as nursery:
                self._cluster = await nursery.start(cluster.run)
                self._ready.set()
        try:
            trio.run(main)
        except BaseException as e:  # reported to start()
            self._error = e
        finally:
            self._ready.set()

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread is None:
            return
        if self._cluster is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cluster.shutdown, trio_token=self._token)
        self._thread.join(timeout)
        self._thread = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what tests use ---

    def run(self, async_fn, *args):
        """Run `await async_fn(local_cluster, *args)` in the cluster's thread; its result."""
        return trio.from_thread.run(lambda: async_fn(self._cluster, *args),
                                    trio_token=self._token)

    def call(self, fn, *args):
        """Run `fn(local_cluster, *args)` in the cluster's thread; its result."""
        return trio.from_thread.run_sync(lambda: fn(self._cluster, *args),
                                         trio_token=self._token)

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, comma separated (the stopped ones too)."""
        return self.call(lambda c: c.bootstrap_servers)

    @property
    def cluster_id(self) -> str:
        return self._cluster.cluster_id

    @property
    def nodes(self) -> list["NodeProxy"]:
        return [NodeProxy(self, node.node_id) for node in self._cluster.nodes]

    def node(self, node_id: int) -> "NodeProxy":
        """The node with this node.id; LookupError for another."""
        self._cluster.node(node_id)
        return NodeProxy(self, node_id)

    @property
    def admin_url(self) -> str | None:
        return self._cluster.admin_url

    def describe(self) -> list[dict]:
        """Every node as the admin endpoint's GET /nodes shows it."""
        return self.call(lambda c: c.describe())

    # --- virtual time (Cluster(virtual_time=True): one virtual clock for every node) ---

    def advance_time(self, ms: int) -> int:
        """Move the nodes' virtual clock `ms` milliseconds forward, as Broker.advance_time."""
        return self.run(lambda c: c.advance_time(ms))

    def set_time(self, wall_ms: int) -> int:
        """Move the nodes' virtual clock to `wall_ms`, as Broker.set_time."""
        return self.run(lambda c: c.set_time(wall_ms))

    def wall_ms(self) -> int:
        """The nodes' clock: milliseconds since the epoch (virtual or real)."""
        return self.call(lambda c: c.clock_state()["wall_ms"])

    def requests(self, api=None, client_id: str | None = None, since: int | None = None,
                 limit: int | None = None) -> list[dict]:
        """Every node's request log merged in the order the entries were logged (each names
        its `node`); the filters of Broker.requests. A restarted node's log starts anew."""
        return render_entries(self.call(
            lambda c: select_entries(c.request_logs(), api, client_id, since, limit)))

    def conformance_report(self, markdown: bool = False) -> dict | str:
        """Broker.conformance_report over every node, merged by client."""
        report = self.call(lambda c: conformance_report(c.request_logs()))
        return to_markdown(report) if markdown else report


class NodeProxy:
    """One node of an embedded Cluster; each call runs in the cluster's thread and returns once
    done: `stop()` (controlled shutdown), `kill()` (as SIGKILL), `start()` (recovers from its
    log dir), `isolate()`, `heal()`, `slow(ms)`, `rtt(ms)`."""

    def __init__(self, cluster: Cluster, node_id: int):
        self.cluster = cluster
        self.node_id = node_id

    def __repr__(self) -> str:
        return f"NodeProxy({self.node_id})"

    def _act(self, action: str, ms: int | None = None) -> dict:
        return self.cluster.run(lambda c: c.act(self.node_id, action, ms))

    def stop(self) -> None:
        self._act("stop")

    def kill(self) -> None:
        self._act("kill")

    def start(self) -> None:
        self._act("start")

    def isolate(self) -> None:
        self._act("isolate")

    def heal(self) -> None:
        self._act("heal")

    def slow(self, ms: int) -> None:
        self._act("slow", ms)

    def rtt(self, ms: int) -> None:
        """Hold each response of the node `ms` milliseconds (a round trip; 0: none)."""
        self._act("rtt", ms)

    def describe(self) -> dict:
        return self.cluster.call(lambda c: c.node(self.node_id).describe())

    @property
    def state(self) -> str:
        """"running", "stopped" or "killed"."""
        return self.describe()["state"]

    @property
    def isolated(self) -> bool:
        return self.describe()["isolated"]

    @property
    def slow_ms(self) -> int:
        return self.describe()["slow_ms"]

    @property
    def rtt_ms(self) -> int:
        return self.describe()["rtt_ms"]

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.call(lambda c: c.node(self.node_id).bootstrap_servers)

    @property
    def data_dir(self) -> str | None:
        return self.cluster.call(lambda c: c.node(self.node_id).data_dir)

    def call(self, fn, *args):
        """Run fn(broker_state, *args) in the cluster's thread, on this (running) node."""
        def on_node(c):
            node = c.node(self.node_id)
            if node.state != "running":
                raise RuntimeError(f"node {self.node_id} is {node.state}")
            return fn(node.server.broker, *args)
        return self.cluster.call(on_node)

    @property
    def controls(self) -> "ControlsProxy":
        """This node's fault rules (controls/rules.py), as `Broker.controls`."""
        return ControlsProxy(self)


class ControlsProxy(RuleShortcuts):
    """The embedded broker's `broker.controls`, each call made in the broker's thread. Rules come
    back as dicts (a snapshot: `matched` and `applied` as they were), as from the admin endpoint."""

    def __init__(self, broker: "Broker | NodeProxy"):
        self._broker = broker

    def add(self, action: str, **fields) -> dict:
        return self._broker.call(lambda b: b.controls.add(action, **fields).to_dict())

    def list(self) -> list[dict]:
        return self._broker.call(lambda b: b.controls.list())

    def rule(self, rule_id: int) -> dict | None:
        def snapshot(b):
            rule = b.controls.rule(rule_id)
            return None if rule is None else rule.to_dict()
        return self._broker.call(snapshot)

    def remove(self, rule_id: int) -> bool:
        return self._broker.call(lambda b: b.controls.remove(rule_id))

    def clear(self) -> int:
        return self._broker.call(lambda b: b.controls.clear())

    @property
    def is_down(self) -> bool:
        return self._broker.call(lambda b: b.controls.is_down)

    def down(self) -> None:
        self._broker.call(lambda b: b.controls.down())

    def up(self) -> None:
        self._broker.call(lambda b: b.controls.up())
