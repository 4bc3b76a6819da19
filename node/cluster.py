"""A cluster of N nodes in one process: `trioka serve --nodes N`, `trioka.Cluster`, and the node
controls a test drives (stop, kill, start, isolate, heal, slow).

Each node is a whole `trioka.server.Server` with its own listener, its own Kafka-layout log
directory `<data dir>/node-<id>/` and its own `BrokerState`; nodes reach each other only through
Kafka RPCs over TCP, exactly as separate processes do, so one process and three processes run the
same code. `cluster_configs` writes the configs three server.properties would hold:

    node.id=1                       process.roles=broker,controller
    listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:<free port>
    controller.listener.names=CONTROLLER
    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
    controller.quorum.voters=1@127.0.0.1:<that port>
    inter.broker.listener.name=PLAINTEXT
    log.dirs=<data dir>/node-1      cluster.id=<one id for all>

and nodes 2..N the same with `process.roles=broker`, their own node.id, log dir and client port
(consecutive from the one given; port 0 picks a free port per node, kept across restarts). A
`broker.rack` in the base config puts every node in that rack; `racks` (`--racks a,b,c`) gives
each node its own `broker.rack`, in node order, as each server.properties would. One
cluster id serves every node: the given `cluster.id`, or the one kept in
`<data dir>/trioka-cluster.properties`, or a new one (Kafka's base64 form), kept there so that a
restart of the whole cluster finds the same.

A node's lifecycle, as the admin endpoint and `trioka.Cluster` show it:

    state       start()             stop()                  kill()
    stopped     running             stopped                 stopped
    running     running             stopped (controlled)    killed
    killed      running (recovers)  killed                  killed

`stop()` is Kafka's controlled shutdown (the broker asks the controller to move its leaderships
away, when the broker can) and then the ordinary graceful shutdown, which flushes, checkpoints
and writes the clean-shutdown marker. `kill()` is SIGKILL: the node's tasks are cancelled, its
sockets dropped, its files closed with nothing flushed or marked clean, its memory discarded;
`start()` recovers it from its log dir as after a crash. `isolate()`, `heal()`, `slow(ms)` and
`rtt(ms)` set the node's `NodeControls` (node/controls.py), which live as long as the cluster,
across restarts.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
import socket

import trio

from trioka.clock import Clock, VirtualClock
from trioka.config import KEYS, Config, parse_listeners, read_properties
from trioka.log.checkpoint import random_uuid, uuid_to_base64
from trioka.node.controls import NodeControls
from trioka.server import Server

log = logging.getLogger("trioka.node.cluster")

CONTROLLER_LISTENER = "CONTROLLER"
CLUSTER_ID_FILE = "trioka-cluster.properties"
MAX_PORT = 65535

# How long a node's stop() may take (controlled shutdown, then the graceful shutdown's
# shutdown.grace.ms) before the node is killed instead.
STOP_TIMEOUT_S = 30.0
# How long start() waits for a killed node's last task to let go of its files and ports.
LET_GO_TIMEOUT_S = 30.0

# The cluster configs set per node; the same keys in the base config are replaced.
PER_NODE_KEYS = ("node.id", "broker.id", "process.roles", "listeners", "advertised.listeners",
                 "controller.listener.names", "listener.security.protocol.map",
                 "controller.quorum.voters", "controller.quorum.bootstrap.servers",
                 "inter.broker.listener.name", "log.dirs", "log.dir", "metadata.log.dir",
                 "cluster.id", "trioka.admin.listener")

RUNNING, STOPPED, KILLED = "running", "stopped", "killed"


# ------------------------------------------------------------------------------------ configs

def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's pick), for a listener every node must know
    before it is bound: the controller's, named in controller.quorum.voters."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# How often LocalCluster picks another controller port when the one cluster_configs picked was
# bound by another process between the pick and the controller's bind (free_port's race).
PICKED_PORT_ATTEMPTS = 5


def controller_port_picked(base: Config) -> bool:
    """Whether cluster_configs picks the controller's port (no controller listener with a port
    in `base`'s listeners), so that another may be picked if it is taken meanwhile."""
    names = _controller_names(base)
    return not any(lst.name in names and lst.port
                   for lst in parse_listeners(base.listeners))


def _controller_names(config: Config) -> list[str]:
    """controller.listener.names, upper-cased; CONTROLLER when it names none."""
    return [n.strip().upper() for n in config.controller_listener_names.split(",")
            if n.strip()] or [CONTROLLER_LISTENER]


def move_controller_port(configs: list[Config]) -> int:
    """Give the controller listener cluster_configs picked another free port, in the listeners
    of the node that runs it and in every node's controller.quorum.voters (before the nodes
    start: they read both when they start). The new port."""
    voter_id, _, address = configs[0].controller_quorum_voters.partition("@")
    host, _, old = address.rpartition(":")
    port = free_port(host.strip("[]") or "127.0.0.1")
    for config in configs:
        config.set("controller.quorum.voters", f"{voter_id}@{host}:{port}")
        names = _controller_names(config)
        listeners = parse_listeners(config.listeners)
        if any(lst.name in names for lst in listeners):
            config.set("listeners", ",".join(
                f"{lst.name}://{lst.host}:{port if lst.name in names else lst.port}"
                for lst in listeners))
    return port


def _shifted(listeners, offset: int) -> str:
    """`listeners` with each fixed port moved up by `offset` (port 0 stays 0: a free port)."""
    return ",".join(f"{lst.name}://{lst.host}:{lst.port + offset if lst.port else 0}"
                    for lst in listeners)


def cluster_id_for(base: Config) -> str:
    """The cluster id of a cluster started from `base`: its `cluster.id`, or the one kept in
    `<data dir>/trioka-cluster.properties`, or the one a node's meta.properties holds, or a new
    one in Kafka's form (22 characters of URL-safe base64), then kept in that file."""
    if base.cluster_id:
        return base.cluster_id
    data_dir = base.data_dir
    if data_dir is None or base.memory:
        # A cluster kept in memory writes nothing to disk, its cluster id included.
        return uuid_to_base64(random_uuid())
    path = os.path.join(data_dir, CLUSTER_ID_FILE)
    if os.path.exists(path):
        stored = read_properties(path).get("cluster.id")
        if stored:
            return stored
    cluster_id = None
    if os.path.isdir(data_dir):
        for name in sorted(os.listdir(data_dir)):
            meta = os.path.join(data_dir, name, "meta.properties")
            if name.startswith("node-") and os.path.exists(meta):
                cluster_id = read_properties(meta).get("cluster.id")
                if cluster_id:
                    break
    cluster_id = cluster_id or uuid_to_base64(random_uuid())
    os.makedirs(data_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# the cluster id of the nodes in node-*/ (trioka serve --nodes)\n"
                f"cluster.id={cluster_id}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return cluster_id


def parse_racks(text: str | None) -> list[str] | None:
    """`--racks a,b,c`: one rack per node, in node order (None when not given)."""
    if text is None:
        return None
    return [rack.strip() for rack in text.split(",")]


def cluster_configs(base: Config | dict | None, nodes: int,
                    racks: list[str] | None = None) -> list[Config]:
    """The configs of a cluster of `nodes` nodes made from `base` (see the module docstring);
    `racks`, one per node in node order, sets each node's `broker.rack`. ValueError for what
    cannot make one: fewer than one node, ports past 65535, no broker listener, not one rack
    per node."""
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"a cluster needs at least 1 node, not {nodes!r}")
    if racks is not None:
        racks = list(racks)
        if len(racks) != nodes or not all(isinstance(r, str) and r.strip() for r in racks):
            raise ValueError(f"racks must name one rack per node ({nodes}), not {racks!r}")
    base = base if isinstance(base, Config) else Config(base or {})
    controller_names = _controller_names(base)
    listeners = parse_listeners(base.listeners)
    client = [lst for lst in listeners if lst.name not in controller_names]
    if not client:
        raise ValueError(f"listeners {base.listeners!r} name no listener for clients, only the "
                         f"controller's ({','.join(controller_names)})")
    for lst in client:
        if not 0 <= lst.port <= MAX_PORT:
            raise ValueError(f"listener {lst!r}: port {lst.port} is out of range 0-{MAX_PORT}")
        if lst.port and lst.port + nodes - 1 > MAX_PORT:
            raise ValueError(f"listener {lst!r}: {nodes} nodes need ports {lst.port}-"
                             f"{lst.port + nodes - 1}, past {MAX_PORT}")
    advertised = parse_listeners(base.advertised_listeners) if base.advertised_listeners else []
    given = [lst for lst in listeners if lst.name in controller_names]
    controller_name = given[0].name if given else controller_names[0]
    controller_host = (given[0].host if given else "") or "127.0.0.1"
    controller_port = given[0].port if given and given[0].port else free_port(controller_host)
    controller = f"{controller_name}://{controller_host}:{controller_port}"
    protocol_map = base.listener_security_protocol_map
    if controller_name not in [entry.split(":")[0].strip().upper()
                               for entry in protocol_map.split(",") if entry.strip()]:
        protocol_map = f"{protocol_map},{controller_name}:PLAINTEXT" if protocol_map \
            else f"{controller_name}:PLAINTEXT"
    cluster_id = cluster_id_for(base)
    data_dir = base.data_dir
    static = {key: base.get(key) for key in KEYS
              if base.is_set(key) and key not in PER_NODE_KEYS}
    static.update(base.listener_overrides())     # listener.name.<l>.* (TLS, SASL), for all
    # The inter-broker listener: named, or left to security.inter.broker.protocol (Kafka
    # refuses both at once).
    inter_broker = {} if base.is_set("security.inter.broker.protocol") else {
        "inter.broker.listener.name": base.inter_broker_listener_name or client[0].name}
    configs = []
    for node_id in range(1, nodes + 1):
        values = dict(static)
        roles = "broker,controller" if node_id == 1 else "broker"
        node_listeners = _shifted(client, node_id - 1)
        if node_id == 1:
            node_listeners += "," + controller
        values.update({
            "node.id": node_id,
            "process.roles": roles,
            "listeners": node_listeners,
            "controller.listener.names": controller_name,
            "listener.security.protocol.map": protocol_map,
            "controller.quorum.voters": f"1@{controller_host}:{controller_port}",
            "cluster.id": cluster_id,
            **inter_broker,
        })
        if advertised:
            values["advertised.listeners"] = _shifted(advertised, node_id - 1)
        if racks is not None:
            values["broker.rack"] = racks[node_id - 1].strip()
        if data_dir is not None:
            values["log.dirs"] = os.path.join(data_dir, f"node-{node_id}")
            if base.metadata_log_dir:
                values["metadata.log.dir"] = os.path.join(base.metadata_log_dir,
                                                          f"node-{node_id}")
        config = Config(values)
        config.memory = base.memory
        configs.append(config)
    return configs


# -------------------------------------------------------------------------------------- nodes

class _Started:
    """The task_status a node's Server reports readiness through, remembering that it did."""

    def __init__(self, task_status):
        self.task_status = task_status
        self.done = False

    def started(self, value=None) -> None:
        self.done = True
        self.task_status.started(value)


class LocalNode:
    """One node of a LocalCluster: its config, its faults, and the Server running it."""

    def __init__(self, cluster: LocalCluster, config: Config):
        self.cluster = cluster
        self.config = config
        self.node_id: int = config.node_id_value
        self.controls = NodeControls()   # kept across restarts, as a network fault would be
        self.server: Server | None = None
        self.state = STOPPED
        self.bootstrap_servers = ""      # this node's client listeners, known once it started
        self._let_go = trio.Event()      # set when the last run's task has ended
        self._let_go.set()

    def __repr__(self) -> str:
        return f"LocalNode({self.node_id}, {self.state})"

    @property
    def roles(self) -> list[str]:
        return [role.strip() for role in self.config.process_roles.split(",") if role.strip()]

    @property
    def controller_listener_names(self) -> list[str]:
        return [n.strip().upper() for n in self.config.controller_listener_names.split(",")
                if n.strip()]

    @property
    def listeners(self) -> list[str]:
        if self.server is not None:
            return [repr(lst) for lst in self.server.listeners]
        return [repr(lst) for lst in parse_listeners(self.config.listeners)]

    @property
    def data_dir(self) -> str | None:
        return self.config.data_dir

    def describe(self) -> dict:
        """The node as GET /nodes shows it."""
        return {"id": self.node_id, "state": self.state, "roles": self.roles,
                "listeners": self.listeners, "rack": self.config.broker_rack or None,
                "isolated": self.controls.isolated,
                "slow_ms": self.controls.slow_ms, "rtt_ms": self.controls.rtt_ms}

    # --- lifecycle ---

    async def start(self) -> None:
        """Start the node (after a kill, it recovers from its log dir); returns once its
        listeners are bound. OSError, naming the node, when it cannot start (a port in use)."""
        if self.state == RUNNING:
            return
        await self.wait_stopped()
        server = Server(self.config, node_controls=self.controls, clock=self.cluster.broker_clock)
        try:
            await self.cluster.nursery.start(self._serve, server)
        except (OSError, BaseExceptionGroup) as e:
            failure = os_error_in(e)
            if failure is None:
                raise
            raise OSError(failure.errno, f"node {self.node_id} cannot start on "
                                         f"{' '.join(self.listeners)}: "
                                         f"{failure.strerror or failure}") from e
        self.server = server
        self.state = RUNNING
        # A port 0 listener keeps the port it got, so clients find the node after a restart.
        self.config.set("listeners", ",".join(repr(lst) for lst in server.listeners))
        controller_names = self.controller_listener_names
        self.bootstrap_servers = ",".join(
            "%s:%d" % server.broker.advertised_address(lst) for lst in server.listeners
            if lst.name not in controller_names)

    async def _serve(self, server: Server, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        let_go = self._let_go = trio.Event()
        status = _Started(task_status)
        try:
            # A node restarted while isolated cannot register until healed: it reports
            # started once its listeners are bound, and serves clients once it is registered.
            await server.run(task_status=status, wait_ready=not self.controls.isolated)
        except Exception:
            if not status.done:
                raise   # to start(): the node did not come up
            # A node that fails stops alone; the others carry on, as separate processes would.
            log.exception("node %d stopped on an error", self.node_id)
        finally:
            let_go.set()
            if self.server is server and self.state == RUNNING:
                self.state = STOPPED

    async def wait_stopped(self) -> None:
        """Wait until the node's last run has let go of its files and ports."""
        with self.cluster.clock.move_on_after(LET_GO_TIMEOUT_S):
            await self._let_go.wait()
        if not self._let_go.is_set():
            raise TimeoutError(f"node {self.node_id} did not stop within {LET_GO_TIMEOUT_S} s")

    async def stop(self, *, controlled: bool = True, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Controlled shutdown (when `controlled` and the broker offers it), then the graceful
        shutdown; killed instead if that takes longer than `timeout_s`."""
        if self.state != RUNNING:
            await self.wait_stopped()
            return
        server = self.server
        with self.cluster.clock.move_on_after(timeout_s):
            if controlled:
                await _controlled_shutdown(server.broker, timeout_s)
            server.shutdown()
            await self._let_go.wait()
        if not self._let_go.is_set():
            log.warning("node %d did not stop within %g s: killed", self.node_id, timeout_s)
            server.kill()
        await self.wait_stopped()
        self.state = STOPPED

    def kill(self) -> None:
        """SIGKILL, in the same process: see the module docstring. `wait_stopped()` returns
        once the node has let go of its files."""
        if self.state != RUNNING:
            return
        self.server.kill()
        self.state = KILLED

    # --- faults (node/controls.py) ---

    def isolate(self) -> None:
        self.controls.isolate()

    def heal(self) -> None:
        self.controls.heal()

    def slow(self, ms: int) -> None:
        self.controls.slow(ms)

    def rtt(self, ms: int) -> None:
        self.controls.rtt(ms)


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError a failed start raised (a port in use), even inside an exception group."""
    if isinstance(error, OSError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = os_error_in(inner)
            if found is not None:
                return found
    return None


async def _controlled_shutdown(broker, timeout_s: float) -> None:
    """Kafka's controlled shutdown, where the broker has it (a node of a cluster asks the
    controller to move its leaderships away before it goes)."""
    shutdown = getattr(broker, "controlled_shutdown", None)
    if shutdown is None:
        return
    names = list(inspect.signature(shutdown).parameters)
    timeout = int(timeout_s * 1000) if names and names[0].endswith("ms") else timeout_s
    result = shutdown(timeout)
    if inspect.isawaitable(result):
        await result


# ------------------------------------------------------------------------------------ cluster

class LocalCluster:
    """N nodes in one trio process. `await nursery.start(cluster.run)` starts them in node
    order and returns the cluster; `shutdown()` stops them all (brokers first, then the
    controller). With `admin_listener` (HOST:PORT) one admin endpoint serves the whole process:
    /nodes for the node controls, /controls for node 1's fault rules."""

    def __init__(self, configs: list[Config], admin_listener: str | None = None, *,
                 picked_controller_port: bool = False,
                 clock: Clock | None = None):
        if not configs:
            raise ValueError("a cluster needs at least 1 node")
        # The cluster's own waits (a node's stop, its let-go): real time.
        self.clock = clock or Clock()
        # With trioka.virtual.time every node's broker runs on this one virtual clock (across
        # restarts too), so that one advance moves the whole cluster; None: each its own real
        # clock. The nodes' links to each other keep real time (BrokerState.network_clock).
        self.broker_clock = VirtualClock() if configs[0].trioka_virtual_time else None
        self.nodes = [LocalNode(self, config) for config in configs]
        self._by_id = {node.node_id: node for node in self.nodes}
        if len(self._by_id) != len(self.nodes):
            raise ValueError("two nodes have the same node.id")
        faults = configs[0].trioka_faults_file
        if faults:
            # Each node takes its rules from the fault file when it starts; a rule for a node
            # that is not in the cluster would never apply (controls/fault_file.py).
            from trioka.controls.fault_file import check_nodes, read_fault_file
            check_nodes(read_fault_file(faults), self._by_id, f"fault file {faults}")
        self.admin_listener = admin_listener or None
        # cluster_configs picked the controller's port (none was given): if another process
        # binds it first, another is picked (_start_first_time).
        self.picked_controller_port = picked_controller_port
        self.admin_address: tuple[str, int] | None = None
        self.cluster_id = configs[0].cluster_id
        self.nursery: trio.Nursery | None = None
        self._stop = trio.Event()

    def node(self, node_id: int) -> LocalNode:
        """The node with this node.id; LookupError for another."""
        try:
            return self._by_id[node_id]
        except KeyError:
            raise LookupError(f"no node {node_id} (the nodes are "
                              f"{', '.join(str(n) for n in self._by_id)})") from None

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client listeners, comma separated (known once the nodes started)."""
        return ",".join(node.bootstrap_servers for node in self.nodes if node.bootstrap_servers)

    @property
    def admin_url(self) -> str | None:
        return None if self.admin_address is None else "http://%s:%d" % self.admin_address

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start every node in node order, then the admin endpoint; serve until shutdown().
        A node that cannot start (a port in use) stops the others and raises its OSError."""
        started = False
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for node in self.nodes:
                    await self._start_first_time(node)
                if self.admin_listener:
                    from trioka.controls import endpoint
                    self.admin_address = await nursery.start(
                        endpoint.serve, None, self.admin_listener, self)
                started = True
                task_status.started(self)
                await self._stop.wait()
                await self._stop_all()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            failure = None if started else os_error_in(group)
            if failure is None:
                raise
            raise failure from None

    async def _start_first_time(self, node: LocalNode) -> None:
        """node.start(); when the controller's port was picked for it (picked_controller_port)
        and another process bound it before the controller did, the port is picked again."""
        for attempt in range(1, PICKED_PORT_ATTEMPTS + 1):
            voters = node.config.controller_quorum_voters
            try:
                await node.start()
                return
            except OSError as e:
                taken = f":{voters.rpartition(':')[2]}:" in str(e)     # "host:port: ..."
                if not (self.picked_controller_port and e.errno == errno.EADDRINUSE and
                        "controller" in node.roles and taken) or \
                        attempt == PICKED_PORT_ATTEMPTS:
                    raise
                port = move_controller_port([n.config for n in self.nodes])
                log.info("node %d: the controller port picked for it was taken meanwhile; "
                         "trying %d", node.node_id, port)

    def shutdown(self) -> None:
        """Begin stopping every node (call from the trio thread)."""
        self._stop.set()

    async def _stop_all(self) -> None:
        """Brokers first, together, then the controllers, so no broker is left without one."""
        for controllers in (False, True):
            async with trio.open_nursery() as nursery:
                for node in self.nodes:
                    if ("controller" in node.roles) == controllers:
                        nursery.start_soon(functools.partial(node.stop, controlled=False))

    # --- the admin endpoint's view (controls/endpoint.py) ---

    def describe(self) -> list[dict]:
        return [node.describe() for node in self.nodes]

    # --- virtual time (clock.py VirtualClock): the one clock of every node ---

    def clock_state(self) -> dict:
        """The nodes' clock as GET /clock shows it: {"wall_ms": ..., "virtual": ...}."""
        clock = self.broker_clock or self.clock
        return {"wall_ms": clock.wall_ms(), "virtual": clock.virtual}

    def _virtual_clock(self) -> VirtualClock:
        if self.broker_clock is None:
            raise RuntimeError("the cluster's clock is real time: start it with virtual time "
                               "(trioka.virtual.time=true, `trioka serve --nodes N "
                               "--virtual-time`) to move it")
        return self.broker_clock

    async def advance_time(self, ms: int) -> int:
        """Move every node's virtual clock `ms` milliseconds forward (BrokerState.advance_time);
        the wall time after."""
        clock = self._virtual_clock()
        await clock.advance(ms)
        return clock.wall_ms()

    async def set_time(self, wall_ms: int) -> int:
        """Move every node's virtual clock to `wall_ms` (not back); the wall time after."""
        clock = self._virtual_clock()
        await clock.set_time(wall_ms)
        return clock.wall_ms()

    def request_logs(self) -> list:
        """The request logs (observe/request_log.py) of the nodes that have run, stopped ones
        included (a restarted node's starts anew)."""
        return [node.server.request_log for node in self.nodes
                if node.server is not None and node.server.request_log is not None]

    def controls_of(self, node_id: int | None = None):
        """The fault rules (controls/rules.py) of a running node; node 1's by default."""
        node = self.nodes[0] if node_id is None else self.node(node_id)
        if node.state != RUNNING:
            raise RuntimeError(f"node {node.node_id} is {node.state}")
        return node.server.controls

    async def act(self, node_id: int, action: str, ms: int | None = None) -> dict:
        """Do one node control (stop, kill, start, isolate, heal, slow, rtt) and return the node as
        it is after. LookupError for an unknown node, ValueError for a bad action or `ms`."""
        node = self.node(node_id)
        if action == "stop":
            await node.stop()
        elif action == "kill":
            node.kill()
            await node.wait_stopped()
        elif action == "start":
            await node.start()
        elif action == "isolate":
            node.isolate()
        elif action == "heal":
            node.heal()
        elif action == "slow":
            node.slow(ms)
        elif action == "rtt":
            node.rtt(ms)
        else:
            raise ValueError(f"no node control {action!r}")
        return node.describe()
