"""A broker inside your own process: for tests and scripts.

    with trioka.Broker() as broker:               # a free port, a temporary data directory
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

The broker runs its own trio loop in a background thread; `Broker` methods are safe to call from
any other thread. Trio code can instead run it in its own nursery:

    from trioka.testing.embedded import open_broker

    async with open_broker() as server:
        ... server.bootstrap_servers ...
"""

import contextlib
import itertools
import os
import shutil
import tempfile
import threading

import trio

from trioka.config import Config
from trioka.controls.rules import RuleShortcuts
from trioka.server import Server

_names = itertools.count(1)


def _config(config: Config | dict | None, memory: bool, data_dir: str | None,
            settings: dict) -> Config:
    if isinstance(config, Config):
        cfg = config
    else:
        cfg = Config(config or {})
    cfg.update({k.replace("_", "."): v for k, v in settings.items()})
    if not cfg.is_set("listeners"):
        cfg.set("listeners", "PLAINTEXT://127.0.0.1:0")
    cfg.memory = memory or cfg.memory
    if data_dir:
        cfg.set("log.dirs", data_dir)
    return cfg


@contextlib.asynccontextmanager
async def open_broker(config: Config | dict | None = None, *, memory: bool = False,
                      data_dir: str | None = None, **settings):
    """Run a broker in the current trio nursery; yields the Server (bootstrap_servers, broker)."""
    tmp = None
    if not memory and not data_dir and not (isinstance(config, Config) and config.is_set(
            "log.dirs")):
        tmp = data_dir = tempfile.mkdtemp(prefix="trioka-")
    cfg = _config(config, memory, data_dir, settings)
    try:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(Server(cfg).run)
            try:
                yield server
            finally:
                server.shutdown()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


class Broker:
    """A broker on a free port in a background thread; a context manager.

    `memory=True` keeps the logs in memory; otherwise they go to `data_dir`, or to a temporary
    directory removed on exit. Other keyword arguments are Kafka config keys with underscores
    (`num_partitions=3`).
    """

    def __init__(self, config: Config | dict | None = None, *, memory: bool = False,
                 data_dir: str | None = None, **settings):
        self._tmp = None
        if not memory and not data_dir:
            self._tmp = data_dir = tempfile.mkdtemp(prefix="trioka-")
        self.config = _config(config, memory, data_dir, settings)
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


class ControlsProxy(RuleShortcuts):
    """The embedded broker's `broker.controls`, each call made in the broker's thread. Rules come
    back as dicts (a snapshot: `matched` and `applied` as they were), as from the admin endpoint."""

    def __init__(self, broker: Broker):
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
