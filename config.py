"""Broker configuration under Kafka's own keys, with Kafka's defaults unless noted.

A key is written the Kafka way (`log.segment.bytes`) in server.properties and on the command line,
and as an attribute with dots turned into underscores (`config.log_segment_bytes`). Environment
variables follow the apache/kafka container image: `KAFKA_LOG_SEGMENT_BYTES=...` is
`log.segment.bytes` (after the prefix: `___` is `-`, `__` is `_`, `_` is `.`, all lower-cased).
Unknown keys are warned about, not fatal, so a server.properties written for Kafka loads here.

Deliberate differences from Kafka's defaults, for development: topics are created on first use,
the replication factor is 1, and the first rebalance of a group is not delayed.
"""

import enum
import os
import sys

from trioka.wire.releases import DEFAULT as DEFAULT_RELEASE, release as kafka_release

class ConfigSource(enum.IntEnum):
    """Where a config value comes from, as DescribeConfigs reports it."""
    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6


# key -> (type, default). Types: int, bool, str, list (comma separated).
KEYS: dict[str, tuple[type, object]] = {
    "node.id": (int, 1),
    "broker.id": (int, 1),
    "listeners": (str, "PLAINTEXT://127.0.0.1:9092"),
    "advertised.listeners": (str, ""),
    "listener.security.protocol.map": (str, "PLAINTEXT:PLAINTEXT"),
    "log.dirs": (str, ""),
    "log.dir": (str, "trioka-data"),
    "cluster.id": (str, ""),
    "broker.rack": (str, ""),
    "auto.create.topics.enable": (bool, True),
    "num.partitions": (int, 1),
    "default.replication.factor": (int, 1),
    "min.insync.replicas": (int, 1),
    "delete.topic.enable": (bool, True),
    "socket.request.max.bytes": (int, 104857600),
    # trioka: 4 MiB, not Kafka's 100 KiB, so a whole fetch response goes to the kernel at once
    # (consumers read about 40% faster over loopback); -1 leaves the OS's autotuning.
    "socket.send.buffer.bytes": (int, 4194304),
    "socket.receive.buffer.bytes": (int, 102400),
    "message.max.bytes": (int, 1048588),
    "log.segment.bytes": (int, 1073741824),
    "log.roll.ms": (int, 604800000),
    "log.roll.hours": (int, 168),
    "log.index.interval.bytes": (int, 4096),
    "log.index.size.max.bytes": (int, 10485760),
    "log.message.timestamp.type": (str, "CreateTime"),
    "log.retention.ms": (int, 604800000),
    "log.retention.hours": (int, 168),
    "log.retention.bytes": (int, -1),
    # trioka: every 5 s, not Kafka's 5 minutes, so that development and tests see retention.
    "log.retention.check.interval.ms": (int, 5000),
    "log.cleaner.enable": (bool, True),
    "log.cleaner.backoff.ms": (int, 15000),
    "log.cleaner.io.buffer.size": (int, 524288),
    # The log cleaner's offset map (16-byte key hashes and offsets) takes at most this memory,
    # split across log.cleaner.threads (one cleaner runs here; the split is Kafka's).
    "log.cleaner.dedupe.buffer.size": (int, 134217728),
    "log.cleaner.threads": (int, 1),
    # Kafka's cleaner I/O throttle; a float there (Double.MAX_VALUE), whole bytes here.
    "log.cleaner.io.max.bytes.per.second": (int, 2**63 - 1),   # the pause between log cleaner passes
    "log.cleanup.policy": (str, "delete"),
    # Flushing (fsync), as Kafka: after an append leaves log.flush.interval.messages (topic:
    # flush.messages) unflushed, before the produce answer (1: every acknowledged batch is
    # durable, with group commit); the flusher flushes logs whose last flush is
    # log.flush.interval.ms (flush.ms) old, checking every log.flush.scheduler.interval.ms
    # (Kafka's default: never); the recovery points are checkpointed every
    # log.flush.offset.checkpoint.interval.ms, and trioka flushes every written log first.
    "log.flush.interval.messages": (int, 9223372036854775807),
    "log.flush.interval.ms": (int, 9223372036854775807),
    "log.flush.scheduler.interval.ms": (int, 9223372036854775807),
    "log.flush.offset.checkpoint.interval.ms": (int, 60000),
    "compression.type": (str, "producer"),
    "offsets.topic.num.partitions": (int, 50),
    "offsets.topic.replication.factor": (int, 1),
    "offsets.retention.minutes": (int, 10080),
    "transaction.state.log.num.partitions": (int, 50),
    "transaction.state.log.replication.factor": (int, 1),
    "transaction.state.log.min.isr": (int, 1),
    "transaction.max.timeout.ms": (int, 900000),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (int, 10000),
    # A transactional id with no transaction in progress expires after this long without an
    # update, checked every ...cleanup.interval.ms; idle producers' state in each partition
    # likewise after producer.id.expiration.ms, checked every ...check.interval.ms.
    "transactional.id.expiration.ms": (int, 604800000),
    "transaction.remove.expired.transaction.cleanup.interval.ms": (int, 3600000),
    "producer.id.expiration.ms": (int, 86400000),
    "producer.id.expiration.check.interval.ms": (int, 600000),
    "group.initial.rebalance.delay.ms": (int, 0),
    "group.min.session.timeout.ms": (int, 6000),
    "group.max.session.timeout.ms": (int, 1800000),
    "group.max.size": (int, 2147483647),
    # KIP-848 consumer groups (ConsumerGroupHeartbeat): the interval members are told to heartbeat
    # at, the session timeout the coordinator applies to them, the server-side assignors (the
    # first is the default) and the most members a consumer group may have.
    "group.consumer.heartbeat.interval.ms": (int, 5000),
    "group.consumer.session.timeout.ms": (int, 45000),
    "group.consumer.assignors": (str, "uniform,range"),
    "group.consumer.max.size": (int, 2147483647),
    # How often committed offsets are checked for expiry (offsets.retention.minutes).
    "offsets.retention.check.interval.ms": (int, 600000),
    "fetch.max.bytes": (int, 57671680),
    "replica.fetch.max.bytes": (int, 1048576),
    "max.incremental.fetch.session.cache.slots": (int, 1000),
    "connections.max.idle.ms": (int, 600000),
    # Connection limits (KIP-308, KIP-402): at max.connections the broker stops accepting until
    # one closes; a client address over its limit has its new connection closed at once.
    "max.connections": (int, 2147483647),
    "max.connections.per.ip": (int, 2147483647),
    "max.connections.per.ip.overrides": (str, ""),   # host:count,host:count
    "process.roles": (str, "broker,controller"),
    "controller.quorum.voters": (str, ""),
    "controller.quorum.bootstrap.servers": (str, ""),
    "controller.listener.names": (str, ""),
    "inter.broker.listener.name": (str, ""),
    # The cluster (KRaft, replication). A node is part of a cluster when
    # controller.quorum.voters (or controller.quorum.bootstrap.servers) is set; without it the
    # broker is a whole single-node cluster, as fast as it ever was, and these keys are unused.
    "metadata.log.dir": (str, ""),
    "broker.session.timeout.ms": (int, 9000),
    "broker.heartbeat.interval.ms": (int, 2000),
    "initial.broker.registration.timeout.ms": (int, 60000),
    "replica.lag.time.max.ms": (int, 30000),
    # KIP-392: the class that picks the replica a consumer reads (replica/selector.py); unset,
    # Kafka's default, consumers are never sent to a follower.
    "replica.selector.class": (str, ""),
    "replica.fetch.wait.max.ms": (int, 500),
    "replica.fetch.min.bytes": (int, 1),
    "replica.fetch.response.max.bytes": (int, 10485760),
    "replica.fetch.backoff.ms": (int, 1000),
    "replica.socket.timeout.ms": (int, 30000),
    "request.timeout.ms": (int, 30000),
    "auto.leader.rebalance.enable": (bool, True),
    "leader.imbalance.check.interval.seconds": (int, 300),
    "leader.imbalance.per.broker.percentage": (int, 10),
    "unstable.api.versions.enable": (bool, False),
    "shutdown.grace.ms": (int, 5000),   # trioka: how long in-flight requests may finish on SIGTERM
    # trioka: the finalized level of the `transaction.version` feature (KIP-584), which Kafka
    # fixes when it formats its storage (`kafka-storage format --feature transaction.version=N`).
    # 2, Kafka 4.x's default, lets 4.x clients use transactions v2 (KIP-890 part 2); 0 or 1 keep
    # every client on the classic protocol. See `finalized` below.
    "trioka.transaction.version": (int, 2),
    # trioka: the Kafka release this broker poses as (wire/releases.py): its ApiVersions ranges,
    # feature levels and the behaviour and defaults where releases differ. "3.7", "3.7.0", ...
    "trioka.kafka.version": (str, DEFAULT_RELEASE),
    # trioka: HOST:PORT of the admin endpoint (fault injection over HTTP, controls/endpoint.py);
    # empty: none.
    "trioka.admin.listener": (str, ""),
    # trioka: a JSON file of fault rules in force from the start (controls/fault_file.py, the
    # body of POST /controls: a rule or a list of rules); empty: none.
    "trioka.faults.file": (str, ""),
    # trioka: walk every record of every produced batch, as Kafka's LogValidator does (count
    # against the header, per-record timestamps; log/validator.py). Off, produce checks each
    # batch's header and CRC in constant time and walks records only where a topic needs it
    # (compaction, a compression.type to recompress to), so batches stay zero-copy.
    "trioka.strict.validation": (bool, False),
    # trioka: virtual time (clock.py VirtualClock): the broker's clock does not move by itself;
    # `POST /clock/advance`, `trioka control clock advance 7d` or `Broker.advance_time(ms)` move
    # it and run what falls due on the way (`--virtual-time`; README "Virtual time").
    "trioka.virtual.time": (bool, False),
    # trioka: the request log (observe/request_log.py): every request and its response, decoded.
    # The newest `size` are kept in memory (0: none), every one appended as a JSON line to
    # `file` when set (`--request-log FILE`); `payloads` adds the records of each batch.
    "trioka.request.log.size": (int, 5000),
    "trioka.request.log.file": (str, ""),
    "trioka.request.log.payloads": (bool, False),
}


def _parse(key: str, kind: type, text):
    if not isinstance(text, str):
        return kind(text)
    if kind is bool:
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise ValueError(f"{key}: expected true or false, got {text!r}")
        return low == "true"
    if kind is int:
        return int(text.strip())
    return text.strip()


def env_key(name: str) -> str:
    """KAFKA_LOG_SEGMENT_BYTES -> log.segment.bytes, the apache/kafka image's mapping."""
    rest = name[len("KAFKA_"):]
    return rest.replace("___", "\0").replace("__", "\1").replace("_", ".").replace(
        "\0", "-").replace("\1", "_").lower()


def read_properties(path: str) -> dict[str, str]:
    """A Java .properties file: `key=value` or `key: value` lines, `#` and `!` comments."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#!":
                continue
            for sep in ("=", ":"):
                if sep in line:
                    k, v = line.split(sep, 1)
                    out[k.strip()] = v.strip()
                    break
    return out


class Config:
    """The broker's settings. `Config(**{"log.segment.bytes": 1024})` or keyword underscores."""

    def __init__(self, values: dict | None = None, /, **kw):
        self._values: dict[str, object] = {}      # static: server.properties, env, flags
        # Dynamic settings (AlterConfigs on a broker resource), which win over static ones:
        # this broker's own, and the cluster-wide default (the resource named "").
        self.dynamic_broker: dict[str, object] = {}
        self.dynamic_default: dict[str, object] = {}
        self.memory = False        # trioka: keep every log in memory (--memory)
        self.warnings: list[str] = []
        # The Kafka release posed as (`trioka.kafka.version`): some defaults are that release's.
        self.release = kafka_release(DEFAULT_RELEASE)
        self._release_defaults = self.release.config_defaults
        self.update(values or {})
        self.update({k.replace("_", "."): v for k, v in kw.items()})

    def update(self, values: dict) -> None:
        for key, value in values.items():
            self.set(key, value)

    def set(self, key: str, value) -> None:
        if key == "memory":
            self.memory = bool(value)
            return
        spec = KEYS.get(key)
        if spec is None:
            self.warnings.append(f"unknown config key {key!r} ignored")
            return
        value = _parse(key, spec[0], value)
        if key == "trioka.kafka.version":
            self.release = kafka_release(value)    # ValueError naming the known releases
            self._release_defaults = self.release.config_defaults
        self._values[key] = value

    def get(self, key: str):
        for layer in (self.dynamic_broker, self.dynamic_default, self._values):
            if key in layer:
                return layer[key]
        changed = self._release_defaults      # empty for the default release: one test
        return changed[key] if changed and key in changed else KEYS[key][1]

    def default(self, key: str):
        """The key's default: Kafka's, or the posed release's where it differed."""
        return self.release.config_defaults.get(key, KEYS[key][1])

    def synonyms(self, key: str) -> list[tuple["ConfigSource", object]]:
        """Where the key has a value, in precedence order; the first is the effective one."""
        out = [(source, layer[key]) for source, layer in (
            (ConfigSource.DYNAMIC_BROKER_CONFIG, self.dynamic_broker),
            (ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, self.dynamic_default),
            (ConfigSource.STATIC_BROKER_CONFIG, self._values)) if key in layer]
        out.append((ConfigSource.DEFAULT_CONFIG, self.default(key)))
        return out

    def parse(self, key: str, value):
        """A value for `key` in its type; ValueError when it does not parse."""
        return _parse(key, KEYS[key][0], value)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        key = name.replace("_", ".")
        if key not in KEYS:
            raise AttributeError(name)
        return self.get(key)

    def is_set(self, key: str) -> bool:
        return key in self._values or key in self.dynamic_broker or key in self.dynamic_default

    @property
    def data_dir(self) -> str | None:
        """The log directory (Kafka's log.dirs, first entry), or None in memory mode."""
        if self.memory:
            return None
        dirs = self.get("log.dirs") or self.get("log.dir")
        return dirs.split(",")[0].strip()

    @property
    def node_id_value(self) -> int:
        return self.get("node.id") if self.is_set("node.id") else self.get("broker.id")

    def segment_ms(self) -> int:
        if self.is_set("log.roll.ms"):
            return self.get("log.roll.ms")
        return self.get("log.roll.hours") * 3600 * 1000

    def retention_ms(self) -> int:
        if self.is_set("log.retention.ms"):
            return self.get("log.retention.ms")
        if self.is_set("log.retention.hours"):
            return self.get("log.retention.hours") * 3600 * 1000
        return self.get("log.retention.ms")

    @classmethod
    def load(cls, properties: str | None = None, environ=None, overrides: dict | None = None):
        """Defaults, then server.properties, then KAFKA_* variables, then command-line values."""
        cfg = cls()
        if properties:
            cfg.update(read_properties(properties))
        environ = os.environ if environ is None else environ
        for name, value in environ.items():
            if name.startswith("KAFKA_") and name not in ("KAFKA_OPTS", "KAFKA_HEAP_OPTS",
                                                        "KAFKA_JMX_OPTS", "KAFKA_LOG4J_OPTS"):
                key = env_key(name)
                if key in KEYS:
                    cfg.set(key, value)
        cfg.update(overrides or {})
        return cfg

    def warn(self, stream=None) -> None:
        for w in self.warnings:
            print(f"trioka: warning: {w}", file=stream or sys.stderr)


# Topic-level configs whose default is a broker setting: topic key -> (broker key, type). A topic
# created without a value takes the broker's; `topic_defaults()` resolves them. The topic configs
# themselves, with validation, are log/config.py's LogConfig.
TOPIC_CONFIGS: dict[str, tuple[str | None, type]] = {
    "cleanup.policy": ("log.cleanup.policy", str),
    "compression.type": ("compression.type", str),
    "delete.retention.ms": ("log.cleaner.delete.retention.ms", int),
    "file.delete.delay.ms": ("log.segment.delete.delay.ms", int),
    "flush.messages": ("log.flush.interval.messages", int),
    "flush.ms": ("log.flush.interval.ms", int),
    "index.interval.bytes": ("log.index.interval.bytes", int),
    "max.compaction.lag.ms": ("log.cleaner.max.compaction.lag.ms", int),
    "max.message.bytes": ("message.max.bytes", int),
    "message.timestamp.after.max.ms": ("log.message.timestamp.after.max.ms", int),
    "message.timestamp.before.max.ms": ("log.message.timestamp.before.max.ms", int),
    "message.timestamp.type": ("log.message.timestamp.type", str),
    "min.cleanable.dirty.ratio": ("log.cleaner.min.cleanable.ratio", str),
    "min.compaction.lag.ms": ("log.cleaner.min.compaction.lag.ms", int),
    "min.insync.replicas": ("min.insync.replicas", int),
    "preallocate": ("log.preallocate", bool),
    "retention.bytes": ("log.retention.bytes", int),
    "retention.ms": ("log.retention.ms", int),
    "segment.bytes": ("log.segment.bytes", int),
    "segment.index.bytes": ("log.index.size.max.bytes", int),
    "segment.jitter.ms": ("log.roll.jitter.ms", int),
    "segment.ms": ("log.roll.ms", int),
    "unclean.leader.election.enable": ("unclean.leader.election.enable", bool),
}

KEYS.update({
    "log.cleaner.delete.retention.ms": (int, 86400000),
    "log.segment.delete.delay.ms": (int, 60000),
    "log.cleaner.max.compaction.lag.ms": (int, 9223372036854775807),
    "log.message.timestamp.after.max.ms": (int, 3600000),
    "log.message.timestamp.before.max.ms": (int, 9223372036854775807),
    "log.cleaner.min.cleanable.ratio": (str, "0.5"),
    "log.cleaner.min.compaction.lag.ms": (int, 0),
    "log.preallocate": (bool, False),
    "log.roll.jitter.ms": (int, 0),
    "unclean.leader.election.enable": (bool, False),
})


def topic_defaults(config: Config) -> dict[str, object]:
    """Each topic config's default on this broker (its broker key's value)."""
    out = {}
    for key, (broker_key, _) in TOPIC_CONFIGS.items():
        if broker_key == "log.roll.ms":
            out[key] = config.segment_ms()
        elif broker_key == "log.retention.ms":
            out[key] = config.retention_ms()
        else:
            out[key] = config.get(broker_key)
    return out

# Broker keys AlterConfigs may change at runtime: the defaults of topic configs, as in Kafka's
# dynamic broker configs (KIP-226). Everything else is read-only until a restart.
DYNAMIC_KEYS = frozenset({broker_key for broker_key, _ in TOPIC_CONFIGS.values()}
                         | {"log.retention.hours", "log.roll.hours"})


class ConfigType(enum.IntEnum):
    """DescribeConfigs v3+ `config_type`."""
    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


LIST_KEYS = frozenset({"cleanup.policy", "log.cleanup.policy", "leader.replication.throttled.replicas",
                       "follower.replication.throttled.replicas", "listeners",
                       "advertised.listeners", "log.dirs", "process.roles",
                       "group.consumer.assignors"})
_LONG_KEYS = frozenset({"retention.bytes", "local.retention.bytes", "flush.messages",
                        "log.retention.bytes", "log.flush.interval.messages"})


def config_type(key: str, value) -> ConfigType:
    if key in LIST_KEYS:
        return ConfigType.LIST
    if isinstance(value, bool):
        return ConfigType.BOOLEAN
    if isinstance(value, float) or key.endswith("ratio"):
        return ConfigType.DOUBLE
    if isinstance(value, int):
        return ConfigType.LONG if key.endswith(".ms") or key in _LONG_KEYS else ConfigType.INT
    return ConfigType.STRING


def config_text(value) -> str | None:
    """A value as DescribeConfigs shows it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- listeners (`listeners`, `advertised.listeners`) ---

def in_cluster(config) -> bool:
    """Whether the config makes the node part of a KRaft cluster: a controller is named by
    `controller.quorum.voters` or `controller.quorum.bootstrap.servers`."""
    return bool(config.controller_quorum_voters or config.controller_quorum_bootstrap_servers)


class Listener:
    """A listener from `listeners`: its name (security protocol), bind host and port."""
    __slots__ = ("name", "host", "port")

    def __init__(self, name: str, host: str, port: int):
        self.name = name
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


def parse_listeners(text: str) -> list[Listener]:
    """Kafka's syntax: `NAME://host:port[,NAME://host:port]`; an empty host means all interfaces."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, rest = item.partition("://")
        if not sep:
            raise ValueError(f"listener {item!r} is not NAME://host:port")
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        out.append(Listener(name.upper(), host, int(port)))
    if not out:
        raise ValueError("no listeners")
    return out


def parse_connection_overrides(text: str) -> dict[str, int]:
    """`max.connections.per.ip.overrides`: `host:count[,host:count]` -> {host: count}."""
    out = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        host, sep, count = item.rpartition(":")
        if not sep or not host.strip() or not count.strip().isdigit():
            raise ValueError(f"max.connections.per.ip.overrides: {item!r} is not host:count")
        out[host.strip()] = int(count)
    return out


# --- feature levels (KIP-584) ---

# Feature versions (KIP-584): what ApiVersions (v3+) tells clients the cluster has turned on.
#
# A Kafka cluster keeps a finalized level per feature; clients read it from the ApiVersions answer
# and pick protocols by it. Two features here change what clients do:
#
# - `transaction.version`: at level 2, Kafka 4.x producers use transactions v2 (KIP-890 part 2):
#   no AddPartitionsToTxn or AddOffsetsToTxn (Produce v12+ and TxnOffsetCommit v5+ add the partition
#   to the transaction), and EndTxn v5+ bumps the producer epoch at the end of every transaction.
#   Level 1 only changes how `__transaction_state` values are written (flexible, version 1). Its
#   level is the config `trioka.transaction.version` (Kafka sets it when formatting storage).
# - `group.version`: level 1 means the KIP-848 consumer group protocol (ConsumerGroupHeartbeat) is
#   on, which it always is here when the release posed as has it (4.0 on).
#
# `SUPPORTED` is the range trioka could run at, `supported_features` the range of the Kafka release
# posed as (wire/releases.py: neither feature exists before 4.0), `finalized` the level it runs at.
# A level of 0 is "off" and is not listed among the finalized features, as in Kafka.

TRANSACTION_VERSION = "transaction.version"
GROUP_VERSION = "group.version"

# feature -> (lowest, highest) level this broker supports
SUPPORTED: dict[str, tuple[int, int]] = {
    GROUP_VERSION: (0, 1),
    TRANSACTION_VERSION: (0, 2),
}


def supported_features(config) -> dict[str, tuple[int, int]]:
    """feature -> the (lowest, highest) level a broker of the posed release supports."""
    return config.release.supported_features


def finalized(config) -> dict[str, int]:
    """feature -> its finalized level, for the features whose level is above 0. Before 4.0 there
    are none: `trioka.transaction.version` set above 0 is then a mistake (Kafka 3.x cannot
    format its storage with it), left unset it is 0."""
    supported = supported_features(config)
    tv = config.trioka_transaction_version
    if TRANSACTION_VERSION not in supported:
        if config.is_set("trioka.transaction.version") and tv > 0:
            raise ValueError(f"trioka.transaction.version {tv} needs Kafka 4.0 or later "
                             f"(trioka.kafka.version is {config.release.name})")
        return {}
    lo, hi = supported[TRANSACTION_VERSION]
    if not lo <= tv <= hi:
        raise ValueError(f"trioka.transaction.version must be between {lo} and {hi}, not {tv}")
    levels = {GROUP_VERSION: 1, TRANSACTION_VERSION: tv}
    return {name: level for name, level in levels.items() if level > 0}


# What each topic config does, in a sentence (DescribeConfigs v3+ `documentation`).
TOPIC_CONFIG_DOCS = {
    "cleanup.policy": "How old data goes: 'delete' drops old segments, 'compact' keeps the "
                      "latest record of each key; both may be listed.",
    "compression.type": "The codec batches are stored in: 'producer' keeps the producer's, or "
                        "uncompressed, gzip, snappy, lz4, zstd.",
    "compression.gzip.level": "The gzip level used when the broker compresses with gzip.",
    "compression.lz4.level": "The lz4 level used when the broker compresses with lz4.",
    "compression.zstd.level": "The zstd level used when the broker compresses with zstd.",
    "delete.retention.ms": "How long tombstones stay in a compacted topic.",
    "file.delete.delay.ms": "How long a deleted segment's files wait before removal.",
    "flush.messages": "Records between forced fsyncs of the log.",
    "flush.ms": "Milliseconds between forced fsyncs of the log.",
    "follower.replication.throttled.replicas": "Replicas whose follower fetching is throttled.",
    "index.interval.bytes": "Bytes of log between entries of the offset index.",
    "leader.replication.throttled.replicas": "Replicas whose leader-side replication is "
                                             "throttled.",
    "local.retention.bytes": "Bytes kept locally when tiered storage is on (-2: retention.bytes).",
    "local.retention.ms": "Time kept locally when tiered storage is on (-2: retention.ms).",
    "max.compaction.lag.ms": "The longest a record may stay uncompacted.",
    "max.message.bytes": "The largest record batch the topic accepts.",
    "message.timestamp.after.max.ms": "How far a CreateTime timestamp may be ahead of the "
                                      "broker's clock.",
    "message.timestamp.before.max.ms": "How far a CreateTime timestamp may be behind the "
                                       "broker's clock.",
    "message.timestamp.type": "CreateTime keeps the producer's timestamps; LogAppendTime "
                              "stamps the broker's append time.",
    "min.cleanable.dirty.ratio": "The share of uncompacted log that makes a log worth "
                                 "compacting.",
    "min.compaction.lag.ms": "The shortest a record stays uncompacted.",
    "min.insync.replicas": "Replicas that must have a write for acks=all to succeed.",
    "preallocate": "Whether new segment files are preallocated.",
    "remote.log.copy.disable": "Stop copying segments to tiered storage.",
    "remote.log.delete.on.disable": "Delete tiered data when tiered storage is turned off.",
    "remote.storage.enable": "Whether the topic uses tiered storage.",
    "retention.bytes": "The largest size of a partition before old segments go (-1: no limit).",
    "retention.ms": "How long segments are kept before deletion (-1: forever).",
    "segment.bytes": "The size at which a new segment file starts.",
    "segment.index.bytes": "The largest size of a segment's offset index.",
    "segment.jitter.ms": "Random time taken off segment.ms so segments do not roll together.",
    "segment.ms": "The age at which a new segment file starts.",
    "unclean.leader.election.enable": "Whether an out-of-sync replica may become leader.",
}
