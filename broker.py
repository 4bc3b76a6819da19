"""Broker: the root of all state (logs, topics, fetch sessions, waiters). No sockets here.

Handlers change state only through the owners' methods. Methods that change state are plain `def`
with no `await` inside, so under trio each runs to completion without interleaving (no locks).
Waiters (long-poll Fetch) wait on `data_event()`, a trio.Event that appends set and replace.

This broker is a whole single-node cluster: it is the controller, and every partition's leader,
only replica and ISR, so the high watermark moves with every append.
"""

import trio

from trioka.config import Config, topic_defaults
from trioka.log.manager import LogManager, validate_topic_name
from trioka.log.partition import LogConfig
from trioka.txn.producer_ids import ProducerIdManager
from trioka.wire.errors import ErrorCode, KafkaError

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


class Listener:
    """A listener from `listeners`: its name (security protocol), bind host and port."""
    __slots__ = ("name", "host", "port")

    def __init__(self, name: str, host: str, port: int):
        self.name = name
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


class Broker:
    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.node_id: int = self.config.node_id_value
        self.rack: str | None = self.config.broker_rack or None
        # A single broker never changes leader, so every partition stays at leader epoch 0.
        self.leader_epoch = 0
        self.logs = LogManager(self.config.data_dir, node_id=self.node_id,
                               default_config=self.topic_config_defaults(),
                               cluster_id=self.config.cluster_id or None)
        self.producer_ids = ProducerIdManager(self.config.data_dir)
        self.shutting_down = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.listeners: list[Listener] = []
        self._advertised: dict[str, tuple[str, int]] = {}
        self._data_event = trio.Event()
        from trioka.apis.fetch_sessions import FetchSessionCache
        self.fetch_sessions = FetchSessionCache(
            self.config.max_incremental_fetch_session_cache_slots)

    # --- lifecycle ---

    def open(self) -> None:
        self.logs.open()
        self.producer_ids.open()

    def close(self) -> None:
        self.logs.close()

    def start_background(self, nursery: trio.Nursery) -> None:
        """Timers owned by the broker (checkpoints now; retention and groups later)."""
        nursery.start_soon(self._checkpoint_loop)

    async def _checkpoint_loop(self) -> None:
        while True:
            await trio.sleep(60)
            self.logs.checkpoint()

    def topic_config_defaults(self) -> LogConfig:
        """Topic configs as the broker's settings make them (log.segment.bytes -> segment.bytes)."""
        return LogConfig.from_configs(topic_defaults(self.config))

    @property
    def cluster_id(self) -> str:
        return self.logs.cluster_id

    # --- listeners ---

    def set_listeners(self, listeners: list[Listener], advertised: str = "") -> None:
        """Record the bound listeners; advertise `advertised.listeners` or else the bound address."""
        self.listeners = listeners
        adv = {}
        if advertised:
            from trioka.server import parse_listeners
            for a in parse_listeners(advertised):
                adv[a.name] = (a.host, a.port)
        for lst in listeners:
            if lst.name in adv:
                host, port = adv[lst.name]
                self._advertised[lst.name] = (host, port or lst.port)
            else:
                host = lst.host if lst.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
                self._advertised[lst.name] = (host, lst.port)

    def advertised_address(self, listener: Listener | None) -> tuple[str, int]:
        if listener is not None and listener.name in self._advertised:
            return self._advertised[listener.name]
        return next(iter(self._advertised.values()))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self._advertised.values())

    # --- topics ---

    def validate_topic_name(self, name: str) -> None:
        validate_topic_name(name)

    def topic_names(self) -> list[str]:
        return sorted(t.name for t in self.logs.topics())

    def topic(self, name: str):
        return self.logs.topic(name)

    def topic_by_id(self, topic_id):
        return self.logs.topic_by_id(topic_id)

    def create_topic(self, name: str, num_partitions: int | None = None,
                     configs: dict | None = None):
        self.validate_topic_name(name)
        if self.logs.topic(name) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        n = self.config.num_partitions if num_partitions in (None, -1) else num_partitions
        if n <= 0:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             "Number of partitions must be larger than 0.")
        self.logs.create_topic(name, n, dict(configs or {}))
        return self.logs.topic(name)

    def delete_topic(self, name: str) -> None:
        self.logs.delete_topic(name)
        self.notify_data()   # fetchers waiting on it re-read and report the error

    def create_partitions(self, name: str, total: int) -> None:
        self.logs.create_partitions(name, total)

    def partition(self, name: str, index: int):
        """The PartitionLog of a topic partition, or UNKNOWN_TOPIC_OR_PARTITION."""
        topic = self.logs.topic(name)
        if topic is None or not 0 <= index < topic.num_partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             "This server does not host this topic-partition.")
        return self.logs.partition(name, index)

    # --- waiting for data (long-poll Fetch) ---

    def data_event(self) -> trio.Event:
        """Set at the next append anywhere; fetchers re-check their partitions when it fires."""
        return self._data_event

    def notify_data(self) -> None:
        self._data_event.set()
        self._data_event = trio.Event()
