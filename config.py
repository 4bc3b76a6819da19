"""Broker configuration under Kafka's own keys, with Kafka's defaults unless noted.

A key is written the Kafka way (`log.segment.bytes`) in server.properties and on the command line,
and as an attribute with dots turned into underscores (`config.log_segment_bytes`). Environment
variables follow the apache/kafka container image: `KAFKA_LOG_SEGMENT_BYTES=...` is
`log.segment.bytes` (after the prefix: `___` is `-`, `__` is `_`, `_` is `.`, all lower-cased).
Unknown keys are warned about, not fatal, so a server.properties written for Kafka loads here.
Every known key's value is checked as it is set, whatever its source, as Kafka's ConfigDef checks
it at startup: its type (INT, LONG, boolean), its range (RANGES) and its allowed values
(CHOICES); a bad one is a ConfigError carrying Kafka's ConfigException text, `Invalid value 0 for
configuration num.partitions: Value must be at least 1`.

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
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8


# key -> (type, default). Types: int, bool, str, list (comma separated).
KEYS: dict[str, tuple[type, object]] = {
    "node.id": (int, 1),
    "broker.id": (int, 1),
    "listeners": (str, "PLAINTEXT://127.0.0.1:9092"),
    "advertised.listeners": (str, ""),
    # listener name -> security protocol; Kafka's default maps each protocol's name to itself.
    # Per-listener settings are `listener.name.<lowercased name>.<key>` (Config.listener_value).
    "listener.security.protocol.map": (str, "PLAINTEXT:PLAINTEXT,SSL:SSL,"
                                            "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
    # The protocol of the listener brokers use among themselves when inter.broker.listener.name
    # is not set (Kafka allows one of the two, not both).
    "security.inter.broker.protocol": (str, "PLAINTEXT"),
    # TLS (security/tls.py), on SSL and SASL_SSL listeners, each overridable per listener.
    # Key and certificates: a PKCS12 file, or PEM (a file, or inline text in
    # ssl.keystore.certificate.chain / ssl.keystore.key). JKS is Kafka's default type; as
    # Java does, a PKCS12 file loads under it, a real JKS file is refused.
    "ssl.keystore.type": (str, "JKS"),
    "ssl.keystore.location": (str, ""),
    "ssl.keystore.password": (str, ""),
    "ssl.key.password": (str, ""),
    "ssl.keystore.certificate.chain": (str, ""),
    "ssl.keystore.key": (str, ""),
    # The CAs trusted for client (and, between brokers, server) certificates.
    "ssl.truststore.type": (str, "JKS"),
    "ssl.truststore.location": (str, ""),
    "ssl.truststore.password": (str, ""),
    "ssl.truststore.certificates": (str, ""),
    "ssl.client.auth": (str, "none"),                 # none, requested, required
    "ssl.protocol": (str, "TLSv1.3"),
    "ssl.enabled.protocols": (str, "TLSv1.2,TLSv1.3"),
    # How a client certificate's subject becomes the principal's name (KIP-371).
    "ssl.principal.mapping.rules": (str, "DEFAULT"),
    # A broker connecting to another broker over TLS checks the host name against the
    # certificate ("https"), or not (empty).
    "ssl.endpoint.identification.algorithm": (str, "https"),
    # SASL (security/sasl/), on SASL_PLAINTEXT and SASL_SSL listeners, each overridable per
    # listener (`listener.name.<l>.sasl.enabled.mechanisms`) and, for sasl.jaas.config, per
    # mechanism (`listener.name.<l>.<mechanism>.sasl.jaas.config`). Kafka's default mechanism
    # is GSSAPI (Kerberos), which trioka does not serve: a SASL listener names its mechanisms.
    "sasl.enabled.mechanisms": (str, "GSSAPI"),
    "sasl.jaas.config": (str, ""),
    # The mechanism a broker logs in with to the other nodes on a SASL inter-broker listener
    # and on a SASL controller listener (security/sasl/broker_login.py); GSSAPI is Kafka's
    # default, which trioka does not serve: name PLAIN or SCRAM-SHA-256/512.
    "sasl.mechanism.inter.broker.protocol": (str, "GSSAPI"),
    "sasl.mechanism.controller.protocol": (str, "GSSAPI"),
    # Frames read before a connection is authenticated are at most this size (KAFKA-4493).
    "sasl.server.max.receive.size": (int, 524288),
    # OAUTHBEARER (KIP-768), set per mechanism as
    # `listener.name.<l>.oauthbearer.sasl.server.callback.handler.class`: empty for Kafka's
    # unsecured-JWT validator, or Kafka's OAuthBearerValidatorCallbackHandler to check signed
    # tokens against a JWKS with the sasl.oauthbearer.* keys (security/sasl/oauthbearer_jwks.py).
    "sasl.server.callback.handler.class": (str, ""),
    "sasl.oauthbearer.jwks.endpoint.url": (str, ""),
    "sasl.oauthbearer.jwks.endpoint.refresh.ms": (int, 3600000),
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": (int, 100),
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": (int, 10000),
    "sasl.oauthbearer.expected.audience": (str, ""),      # comma-separated
    "sasl.oauthbearer.expected.issuer": (str, ""),
    "sasl.oauthbearer.sub.claim.name": (str, "sub"),
    "sasl.oauthbearer.scope.claim.name": (str, "scope"),
    "sasl.oauthbearer.clock.skew.seconds": (int, 30),
    # OAUTHBEARER's login side for a broker logging in to the other nodes: empty for Kafka's
    # unsecured tokens, or Kafka's OAuthBearerLoginCallbackHandler to ask the token endpoint
    # with client credentials (security/sasl/oauthbearer_login.py).
    "sasl.login.callback.handler.class": (str, ""),
    "sasl.oauthbearer.token.endpoint.url": (str, ""),
    "sasl.login.connect.timeout.ms": (int, 10000),
    "sasl.login.read.timeout.ms": (int, 10000),
    "sasl.login.retry.backoff.ms": (int, 100),
    "sasl.login.retry.backoff.max.ms": (int, 10000),
    # KIP-368: a SASL session lasts at most this long before the client re-authenticates on
    # the same connection; 0: sessions last as long as their credential.
    "connections.max.reauth.ms": (int, 0),
    # KIP-306: a failed authentication is answered (and the connection closed) this much later.
    "connection.failed.authentication.delay.ms": (int, 100),
    # Authorization (security/authorizer.py): empty, or Kafka's StandardAuthorizer class name
    # (kafka.security.authorizer.AclAuthorizer accepted as an alias) to check ACLs.
    "authorizer.class.name": (str, ""),
    "super.users": (str, ""),          # `User:alice;User:bob`: allowed everything
    "allow.everyone.if.no.acl.found": (bool, False),
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
    # The bounds of a group's own consumer.session.timeout.ms / consumer.heartbeat.interval.ms
    # (group configs, coordinator/group_config.py).
    "group.consumer.min.session.timeout.ms": (int, 45000),
    "group.consumer.max.session.timeout.ms": (int, 60000),
    "group.consumer.min.heartbeat.interval.ms": (int, 5000),
    "group.consumer.max.heartbeat.interval.ms": (int, 15000),
    "group.consumer.assignors": (str, "uniform,range"),
    "group.consumer.max.size": (int, 2147483647),
    # KIP-848 online migration of groups with members between the classic and the consumer
    # protocol (coordinator/migration.py): bidirectional, upgrade, downgrade or disabled.
    "group.consumer.migration.policy": (str, "bidirectional"),
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
    # Client quotas (security/quotas.py): the rate sensors' samples and their length.
    "quota.window.num": (int, 11),
    "quota.window.size.seconds": (int, 1),
    # controller_mutation_rate's token bucket (KIP-599): its burst is num * size * the quota.
    "controller.quota.window.num": (int, 11),
    "controller.quota.window.size.seconds": (int, 1),
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
    # trioka: conformance mode (observe/conformance.py; `--strict`): the LogValidator walk of
    # trioka.strict.validation on every produce, plus each client's use of the protocol checked
    # (versions against its ApiVersions answer, deprecated versions, sequences, generations,
    # fetch session epochs, request sizes) and kept per client for the conformance report.
    "trioka.strict": (bool, False),
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


class ConfigError(ValueError):
    """A config value Kafka would refuse at startup; the message is Kafka's ConfigException text,
    one line naming the key and the value: `Invalid value abc for configuration num.partitions:
    Not a number of type INT`."""

    def __init__(self, key: str, value, reason: str = ""):
        self.key = key
        self.value = value
        super().__init__(f"Invalid value {value} for configuration {key}"
                         + (f": {reason}" if reason else ""))


# The broker keys Kafka types as LONG (64-bit); every other int key is an INT (32-bit), and a
# value outside that type's range is "Not a number of type INT", as Kafka's ConfigDef parses it.
LONG_KEYS = frozenset({
    "log.roll.ms", "log.retention.ms", "log.retention.bytes", "log.retention.check.interval.ms",
    "log.cleaner.backoff.ms", "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.max.bytes.per.second", "log.flush.interval.messages", "log.flush.interval.ms",
    "log.flush.scheduler.interval.ms", "offsets.retention.check.interval.ms",
    "connections.max.idle.ms", "replica.lag.time.max.ms", "connections.max.reauth.ms",
    "leader.imbalance.check.interval.seconds", "log.cleaner.delete.retention.ms",
    "log.segment.delete.delay.ms", "log.cleaner.max.compaction.lag.ms",
    "log.message.timestamp.after.max.ms", "log.message.timestamp.before.max.ms",
    "log.cleaner.min.compaction.lag.ms", "log.roll.jitter.ms"})

# The lowest (and highest) value Kafka's ConfigDef accepts for a key (its Range.atLeast /
# Range.between validators in KafkaConfig and LogConfig); below it Kafka refuses to start.
RANGES: dict[str, tuple[int | None, int | None]] = {
    "num.partitions": (1, None),
    "min.insync.replicas": (1, None),
    "socket.request.max.bytes": (1, None),
    "message.max.bytes": (0, None),
    "log.segment.bytes": (14, None),          # LegacyRecord.RECORD_OVERHEAD_V0
    "log.roll.hours": (1, None),
    "log.index.interval.bytes": (0, None),
    "log.index.size.max.bytes": (4, None),
    "log.retention.check.interval.ms": (1, None),
    "log.cleaner.backoff.ms": (0, None),
    "log.cleaner.io.buffer.size": (0, None),
    "log.cleaner.threads": (0, None),
    "log.flush.interval.messages": (1, None),
    "log.flush.offset.checkpoint.interval.ms": (0, None),
    "offsets.topic.num.partitions": (1, None),
    "offsets.topic.replication.factor": (1, None),
    "offsets.retention.minutes": (1, None),
    "offsets.retention.check.interval.ms": (1, None),
    "transaction.state.log.num.partitions": (1, None),
    "transaction.state.log.replication.factor": (1, None),
    "transaction.state.log.min.isr": (1, None),
    "transaction.max.timeout.ms": (1, None),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (1, None),
    "transactional.id.expiration.ms": (1, None),
    "transaction.remove.expired.transaction.cleanup.interval.ms": (1, None),
    "producer.id.expiration.ms": (1, None),
    "producer.id.expiration.check.interval.ms": (1, None),
    "group.initial.rebalance.delay.ms": (0, None),
    "group.max.size": (1, None),
    "group.consumer.heartbeat.interval.ms": (1, None),
    "group.consumer.session.timeout.ms": (1, None),
    "group.consumer.min.session.timeout.ms": (1, None),
    "group.consumer.max.session.timeout.ms": (1, None),
    "group.consumer.min.heartbeat.interval.ms": (1, None),
    "group.consumer.max.heartbeat.interval.ms": (1, None),
    "group.consumer.max.size": (1, None),
    "fetch.max.bytes": (1024, None),
    "replica.fetch.max.bytes": (0, None),
    "replica.fetch.response.max.bytes": (0, None),
    "replica.fetch.backoff.ms": (0, None),
    "max.incremental.fetch.session.cache.slots": (0, None),
    "max.connections": (0, None),
    "max.connections.per.ip": (0, None),
    "quota.window.num": (1, None),
    "quota.window.size.seconds": (1, None),
    "controller.quota.window.num": (1, None),
    "sasl.login.connect.timeout.ms": (0, None),
    "sasl.login.read.timeout.ms": (0, None),
    "sasl.login.retry.backoff.ms": (0, None),
    "sasl.login.retry.backoff.max.ms": (0, None),
    "controller.quota.window.size.seconds": (1, None),
    "leader.imbalance.check.interval.seconds": (1, None),
    "log.cleaner.delete.retention.ms": (0, None),
    "log.segment.delete.delay.ms": (0, None),
    "log.cleaner.max.compaction.lag.ms": (1, None),
    "log.message.timestamp.after.max.ms": (0, None),
    "log.message.timestamp.before.max.ms": (0, None),
    "log.cleaner.min.compaction.lag.ms": (0, None),
    "log.roll.jitter.ms": (0, None),
    "shutdown.grace.ms": (0, None),
    "connection.failed.authentication.delay.ms": (0, None),
}

# Keys whose value is one of a set (ConfigDef's ValidString; ValidList for each item of a list).
CHOICES: dict[str, tuple[str, ...]] = {
    "compression.type": ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    "log.message.timestamp.type": ("CreateTime", "LogAppendTime"),
    "log.cleanup.policy": ("compact", "delete"),
    "authorizer.class.name": ("", "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                              "kafka.security.authorizer.AclAuthorizer"),
}
# Keys whose value is one of a set, whatever its case (ConfigDef's CaseInsensitiveValidString).
CASE_INSENSITIVE_CHOICES: dict[str, tuple[str, ...]] = {
    "group.consumer.migration.policy": ("DISABLED", "DOWNGRADE", "UPGRADE", "BIDIRECTIONAL"),
}

_INT_RANGE = (-2**31, 2**31 - 1)
_LONG_RANGE = (-2**63, 2**63 - 1)


def _parse(key: str, kind: type, text):
    """A value for `key` in its type, checked as Kafka's ConfigDef checks it: ConfigError."""
    if kind is bool:
        if isinstance(text, bool):
            return text
        low = str(text).strip().lower()
        if low not in ("true", "false"):
            raise ConfigError(key, text, "Expected value to be either true or false")
        return low == "true"
    if kind is int:
        long = key in LONG_KEYS
        try:
            if isinstance(text, bool) or isinstance(text, float) and not text.is_integer():
                raise ValueError(text)
            value = int(text.strip()) if isinstance(text, str) else int(text)
        except (TypeError, ValueError):
            raise ConfigError(key, text, f"Not a number of type {'LONG' if long else 'INT'}") \
                from None
        lo, hi = _LONG_RANGE if long else _INT_RANGE
        if not lo <= value <= hi:
            raise ConfigError(key, text, f"Not a number of type {'LONG' if long else 'INT'}")
        least, most = RANGES.get(key, (None, None))
        if least is not None and value < least:
            raise ConfigError(key, text, f"Value must be at least {least}")
        if most is not None and value > most:
            raise ConfigError(key, text, f"Value must be no more than {most}")
        return value
    value = str(text).strip()
    allowed = CHOICES.get(key)
    if allowed is not None:
        items = [i.strip() for i in value.split(",") if i.strip()] if key in LIST_KEYS \
            else [value]
        if any(i not in allowed for i in items):
            raise ConfigError(key, text, f"String must be one of: {', '.join(allowed)}")
    allowed = CASE_INSENSITIVE_CHOICES.get(key)
    if allowed is not None and value.upper() not in allowed:
        raise ConfigError(key, text,
                          f"String must be one of (case insensitive): {', '.join(allowed)}")
    return value


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
        if spec is None and key.startswith(LISTENER_PREFIX):
            # `listener.name.<listener>.<key>`: kept as written, typed when looked up.
            self._values[key] = value.strip() if isinstance(value, str) else value
            return
        if spec is None:
            self.warnings.append(f"unknown config key {key!r} ignored")
            return
        value = _parse(key, spec[0], value)
        if key in ("listeners", "advertised.listeners") and value:
            parse_listeners(value, key)     # Kafka refuses a listener it cannot parse at start
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

    def listener_value(self, listener_name: str, key: str, default=None, *,
                       mechanism: str | None = None):
        """A setting as a listener sees it, Kafka's override order: for a SASL mechanism,
        `listener.name.<listener>.<mechanism>.<key>`; then `listener.name.<listener>.<key>`;
        then `<key>` itself (names lower-cased). A key of KEYS without a value anywhere gives
        its default, or `default` when one is passed; an unknown key gives `default`."""
        prefix = f"{LISTENER_PREFIX}{listener_name.lower()}."
        candidates = [f"{prefix}{key}"]
        if mechanism:
            candidates.insert(0, f"{prefix}{mechanism.lower()}.{key}")
        for name in candidates:
            if name in self._values:
                value = self._values[name]
                return _parse(name, KEYS[key][0], value) if key in KEYS else value
        if key in KEYS and (default is None or self.is_set(key)):
            return self.get(key)
        return default

    def listener_overrides(self) -> dict[str, object]:
        """Every `listener.name.<listener>.<key>` setting, as written."""
        return {k: v for k, v in self._values.items() if k.startswith(LISTENER_PREFIX)}

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
                       "group.consumer.assignors", "ssl.enabled.protocols"})
_LONG_KEYS = frozenset({"retention.bytes", "local.retention.bytes", "flush.messages",
                        "log.retention.bytes", "log.flush.interval.messages"})


# Kafka's PASSWORD-typed keys: DescribeConfigs shows them as sensitive, with no value.
_PASSWORD_KEYS = frozenset({"ssl.keystore.password", "ssl.key.password", "ssl.keystore.key",
                            "ssl.keystore.certificate.chain", "ssl.truststore.password",
                            "ssl.truststore.certificates", "sasl.jaas.config"})


def is_sensitive(key: str) -> bool:
    """Whether a key (or its `listener.name.<l>.` form) holds a secret."""
    if key.startswith(LISTENER_PREFIX):
        key = key[len(LISTENER_PREFIX):].partition(".")[2]
    return key in _PASSWORD_KEYS or key.rpartition(".")[2] == "password" \
        or key.endswith("sasl.jaas.config")


def config_type(key: str, value) -> ConfigType:
    if is_sensitive(key):
        return ConfigType.PASSWORD
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


LISTENER_PREFIX = "listener.name."

# Kafka's security protocols (SecurityProtocol): TLS or not, SASL or not.
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class Listener:
    """A listener from `listeners`: its name, bind host and port, and the security protocol
    `listener.security.protocol.map` gives that name (`listeners_of` resolves it)."""
    __slots__ = ("name", "host", "port", "security_protocol")

    def __init__(self, name: str, host: str, port: int, security_protocol: str = "PLAINTEXT"):
        self.name = name
        self.host = host
        self.port = port
        self.security_protocol = security_protocol

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def __repr__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


def parse_listeners(text: str, key: str = "listeners") -> list[Listener]:
    """Kafka's syntax: `NAME://host:port[,NAME://host:port]`; an empty host means all interfaces.
    A listener that does not parse, or a port outside 0-65535, is a ConfigError naming `key`."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, rest = item.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or not name or not colon or not port.strip().isdigit():
            raise ConfigError(key, text, f"Unable to parse {item} to a broker endpoint")
        if int(port) > 65535:
            raise ConfigError(key, text, f"port out of range:{int(port)}")
        out.append(Listener(name.upper(), host.strip("[]"), int(port)))
    if not out:
        raise ConfigError(key, text, "no listeners")
    return out


def listeners_on_port(text: str, port: int) -> str:
    """`trioka serve --port N`: the one broker listener of `listeners`, its name and host kept,
    on port N. ValueError when there are several: which one to move would be a guess."""
    listeners = parse_listeners(text)
    if len(listeners) != 1:
        raise ValueError(f"--port needs a single listener, but listeners is {text} "
                         f"(give --listeners instead)")
    (listener,) = listeners
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"{listener.name}://{host}:{port}"


def security_protocol_map(config) -> dict[str, str]:
    """`listener.security.protocol.map` as {listener name: protocol}. Kafka's rules: each entry
    is NAME:PROTOCOL, a name appears once, the protocol is one of Kafka's four. When the map is
    left at its default, a controller listener (`controller.listener.names`) missing from it is
    PLAINTEXT, as KRaft brokers treat it."""
    text = config.listener_security_protocol_map
    out: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, protocol = entry.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not name or not protocol:
            raise ValueError(f"listener.security.protocol.map: {entry!r} is not NAME:PROTOCOL")
        if protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"listener.security.protocol.map: unknown security protocol "
                             f"{protocol!r} for listener {name} (one of "
                             f"{', '.join(SECURITY_PROTOCOLS)})")
        if name in out:
            raise ValueError(f"listener.security.protocol.map: listener {name} appears twice")
        out[name] = protocol
    if not config.is_set("listener.security.protocol.map"):
        for name in config.controller_listener_names.split(","):
            if name.strip():
                out.setdefault(name.strip().upper(), "PLAINTEXT")
    return out


def listeners_of(config, text: str | None = None) -> list[Listener]:
    """The listeners of `listeners` (or `text`), each with its security protocol. A listener
    whose name the protocol map does not know stops the start, with Kafka's message."""
    protocols = security_protocol_map(config)
    listeners = parse_listeners(config.listeners if text is None else text)
    for listener in listeners:
        protocol = protocols.get(listener.name)
        if protocol is None:
            raise ValueError(f"No security protocol defined for listener {listener.name} "
                             f"(listener.security.protocol.map: "
                             f"{config.listener_security_protocol_map})")
        listener.security_protocol = protocol
    return listeners


def inter_broker_listener(config, listeners: list[Listener]) -> str:
    """The name of the listener brokers reach each other on: `inter.broker.listener.name`, or
    else the first listener whose protocol is `security.inter.broker.protocol` (Kafka's rule;
    setting both is an error there). Falls back to the first non-controller listener."""
    name = config.inter_broker_listener_name.strip().upper()
    if name:
        if config.is_set("security.inter.broker.protocol"):
            raise ValueError("Only one of inter.broker.listener.name and "
                             "security.inter.broker.protocol should be set.")
        return name
    protocol = config.security_inter_broker_protocol.strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"security.inter.broker.protocol: unknown security protocol "
                         f"{protocol!r} (one of {', '.join(SECURITY_PROTOCOLS)})")
    controllers = {n.strip().upper() for n in config.controller_listener_names.split(",")}
    brokers = [lst for lst in listeners if lst.name not in controllers]
    for listener in brokers:
        if listener.security_protocol == protocol:
            return listener.name
    if config.is_set("security.inter.broker.protocol"):
        raise ValueError(f"security.inter.broker.protocol {protocol}: no listener in "
                         f"{config.listeners!r} uses that protocol")
    return brokers[0].name if brokers else "PLAINTEXT"


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
