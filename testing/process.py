"""A trioka broker as a child process: `python -m trioka serve` on a free port, for the compat tests
(compat_tests/) and the benchmark (bench/run.py), which both need the real command rather than
the embedded broker (embedded.py).

    with BrokerProcess(overrides={"log.cleaner.backoff.ms": 100}) as b:
        b.start()
        ... b.bootstrap, b.admin, b.controls.delay(500, api="Fetch") ...
        b.restart(kill=True)          # SIGKILL, then the same port and data directory again

`start` waits, with a deadline, for the line the command prints once its listeners are bound
(`trioka ready: PLAINTEXT://127.0.0.1:PORT node 1 cluster ID data DIR [admin http://...]`, see
__main__.py) and reads the port, the cluster id and the admin endpoint from it; the process's
output (stdout and stderr) is kept in `output` the whole time, so the broker never blocks on a
full pipe. `stop` is SIGTERM, the graceful shutdown, with a deadline; `kill` is SIGKILL.

`controls` reaches the broker's fault injection through its admin endpoint (controls/endpoint.py):
the same rules as the broker's own `Controls` and the embedded broker's proxy.
"""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from trioka.controls.rules import RuleShortcuts

READY = re.compile(r"trioka ready: \S+://[\d.]+:(?P<port>\d+) .*?cluster (?P<cluster>\S+)")
ADMIN = re.compile(r" admin (?P<url>http://\S+)")


class LineReader:
    """The lines of a child process's pipe, each wait bounded by a deadline."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.fd = pipe.fileno()
        self.buf = b""

    def readline(self, deadline: float) -> str | None:
        """The next line (without its newline), or None at end of file; TimeoutError once
        `deadline` (time.monotonic()) has passed."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the child process in time")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line.decode(errors="replace")
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")

    def drain(self, sink: list) -> None:
        """Append every further line to `sink` until end of file (run it in a thread)."""
        if self.buf:
            sink.extend(self.buf.decode(errors="replace").splitlines())
            self.buf = b""
        for line in self.pipe:
            sink.append(line.decode(errors="replace").rstrip())


class BrokerProcess:
    """`python -m trioka serve` in a subprocess with its own data directory (a temporary one,
    removed by `close`, unless `data_dir` is given) or `--memory`, on 127.0.0.1 port 0 at first
    and the same port on every restart.

    `overrides` are Kafka config keys (`--override key=value`); `args` more command-line flags;
    `python_options` go between the interpreter and `-m trioka` (the benchmark's
    `-m cProfile -o FILE`). `admin_listener` serves the admin endpoint on a free port.
    `listeners` names more listeners beside the PLAINTEXT one BrokerProcess waits for (security
    protocols, or names the `listener.security.protocol.map` override maps), each on a free port
    read from the ready line and kept on restarts: `listener_port(name)`."""

    def __init__(self, data_dir: str | None = None, *, memory: bool = False,
                 overrides: dict | None = None, args=(), python_options=(),
                 admin_listener: bool = True, listeners=()):
        self.own_data_dir = data_dir is None and not memory
        self.data_dir = tempfile.mkdtemp(prefix="trioka-broker-") if self.own_data_dir \
            else data_dir
        self.in_memory = memory          # --memory: no data directory at all
        self.overrides = dict(overrides or {})
        self.args = list(args)
        self.python_options = list(python_options)
        self.admin_listener = admin_listener
        self.port = 0
        self.listener_ports = {name: 0 for name in listeners}   # the other listeners' ports
        self.ports: list[int] = []       # every node's port, once started (see ready_lines)
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []      # every line the process printed, across restarts
        self.admin: str | None = None    # the admin endpoint's URL, once started with one
        self.cluster_id: str | None = None
        self.spawned_at = 0.0            # time.perf_counter() at the spawn and at the ready line
        self.ready_at = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def listener_port(self, name: str) -> int:
        """The port of the listener `name` (one of `listeners`), once started."""
        return self.listener_ports[name]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"] + [
            f"{name}://127.0.0.1:{port}" for name, port in self.listener_ports.items()]
        cmd = [sys.executable, *self.python_options, "-m", "trioka", "serve",
               "--listeners", ",".join(listeners)]
        if self.admin_listener:
            cmd += ["--admin-listener", "127.0.0.1:0"]
        cmd += ["--memory"] if self.in_memory else ["--data-dir", self.data_dir]
        for key, value in self.overrides.items():
            cmd += ["--override", f"{key}={value}"]
        return cmd + self.args

    def read_listener_ports(self, ready_line: str) -> None:
        for name in self.listener_ports:
            found = re.search(rf"(?<![\w]){re.escape(name)}://[^\s,]+:(\d+)", ready_line)
            if found is None:
                raise RuntimeError(f"no {name} listener in the ready line {ready_line!r}")
            self.listener_ports[name] = int(found.group(1))

    # Ready lines to wait for: one a node (ClusterProcess: one per node).
    ready_lines = 1

    def start(self, timeout: float = 30.0) -> "BrokerProcess":
        """Spawn the broker and wait up to `timeout` seconds for its ready line(s); `ports`
        are the nodes' ports in node order, `port` the first."""
        if self.running:
            raise RuntimeError("the broker process is already running")
        self.spawned_at = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        lines = LineReader(self.proc.stdout)
        deadline = time.monotonic() + timeout
        ports = []
        try:
            while len(ports) < self.ready_lines:
                line = lines.readline(deadline)
                if line is None:
                    raise RuntimeError("the broker exited before it was ready")
                self.output.append(line)
                ready = READY.search(line)
                if ready:
                    if not ports:
                        self.read_listener_ports(line)
                    ports.append(int(ready["port"]))
                    self.cluster_id = ready["cluster"]
                    admin = ADMIN.search(line)
                    self.admin = admin["url"] if admin else None
        except (RuntimeError, TimeoutError) as e:
            self.kill()
            raise RuntimeError(f"{e} (waited up to {timeout} s for {self.ready_lines} ready "
                               f"line(s)):\n" + "\n".join(self.output[-30:])) from None
        self.ready_at = time.perf_counter()
        self.ports = ports
        self.port = ports[0]
        threading.Thread(target=lines.drain, args=(self.output,), daemon=True).start()
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, the graceful shutdown; the exit status. A broker still running after
        `timeout` seconds is killed (SIGKILL) and TimeoutError raised."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise TimeoutError(f"the broker did not stop within {timeout} s of SIGTERM:\n"
                               + "\n".join(self.output[-30:])) from None

    def kill(self) -> None:
        """SIGKILL: an unclean stop, as a crash or a power cut leaves the files."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.kill()
            proc.wait(10)

    def restart(self, *, kill: bool = False, timeout: float = 30.0) -> "BrokerProcess":
        """Stop (SIGTERM, or SIGKILL with kill=True) and start again on the same port and data
        directory."""
        self.kill() if kill else self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Kill the process if it runs and remove the data directory if it is the broker's own."""
        self.kill()
        if self.own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "BrokerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def controls(self) -> "ControlsClient":
        """The broker's fault injection over its admin endpoint."""
        if self.admin is None:
            raise RuntimeError("the broker is not running with an admin endpoint")
        return ControlsClient(self.admin)


class ControlsClient(RuleShortcuts):
    """A broker's fault-injection rules through its admin endpoint (controls/endpoint.py). Rules
    are dicts as the endpoint answers them: `id`, `action`, `matched`, `applied`, ..."""

    def __init__(self, admin: str, timeout: float = 10.0):
        self.admin = admin.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict | None = None):
        """One request to the endpoint; its JSON answer (AssertionError on an HTTP error)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.admin + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"admin endpoint: HTTP {e.code} {e.read()!r}") from None

    def add(self, action: str, **fields) -> dict:
        """A rule: `add("error", api="Produce", error="NOT_LEADER_OR_FOLLOWER", count=3)`."""
        return self.call("POST", "/controls", {"action": action, **fields})

    def watch(self, **match) -> dict:
        """A rule that changes nothing (a delay of 0 ms): its `matched` counts the requests
        that match, so a test can see what a client sent the broker."""
        return self.add("delay", delay_ms=0, **match)

    def list(self) -> list:
        return self.call("GET", "/controls")["rules"]

    def rule(self, rule_id: int) -> dict:
        return self.call("GET", f"/controls/{rule_id}")

    def matched(self, rule_id: int) -> int:
        return self.rule(rule_id)["matched"]

    def is_down(self) -> bool:
        return self.call("GET", "/controls")["down"]

    def remove(self, rule_id: int) -> None:
        self.call("DELETE", f"/controls/{rule_id}")

    def clear(self) -> int:
        return self.call("DELETE", "/controls")["removed"]

    def down(self) -> None:
        self.call("POST", "/controls/down")

    def up(self) -> None:
        self.call("POST", "/controls/up")

    def retention(self) -> int:
        """Run a retention pass now; the number of segments it deleted."""
        return self.call("POST", "/retention")["segments_deleted"]

    def compaction(self) -> int:
        """Clean every compacted log now; the number of partitions cleaned."""
        return self.call("POST", "/compaction")["partitions_cleaned"]


class ClusterProcess(BrokerProcess):
    """`python -m trioka serve --nodes N`: N nodes of a cluster in one child process (node 1 the
    controller too), each printing its ready line; `bootstrap` lists every node. `node(id,
    action)` drives the node controls through the admin endpoint (`stop`, `kill`, `start`,
    `isolate`, `heal`, or `slow` and `rtt` with `ms`); `nodes()` is what GET /nodes says."""

    def __init__(self, nodes: int = 3, data_dir: str | None = None, *, overrides=None, args=()):
        super().__init__(data_dir, overrides=overrides, args=["--nodes", str(nodes), *args])
        self.ready_lines = nodes

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout: float = 60.0) -> "ClusterProcess":
        return super().start(timeout)

    def node(self, node_id: int, action: str, ms: int | None = None) -> dict:
        body = {"ms": ms} if action in ("slow", "rtt") else None
        return ControlsClient(self.admin, timeout=60).call("POST", f"/nodes/{node_id}/{action}",
                                                           body)

    def nodes(self) -> list:
        return ControlsClient(self.admin).call("GET", "/nodes")["nodes"]
