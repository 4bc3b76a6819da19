"""The Kafka releases trioka can pose as, and what tells one from another.

A client meets a release through its broker's ApiVersions answer: the version range of every API
(and, from Kafka 3.3 on, the KIP-584 feature levels). Clients pick their versions and features
from it, and some infer the release itself (kafka-python: Produce v13 means 4.1). So a broker
posing as one release advertises exactly that release's ranges and features, refuses what that
release refused, and behaves where it behaved differently. `trioka.kafka.version` picks the
release (`trioka serve --kafka-version 3.7`, `trioka.Broker(kafka_version="3.7")`).

RELEASES holds, for every API trioka serves on a broker listener, the range a broker of each
release advertised with its default settings, written as each release's changes on the one
before. The facts come from Kafka's message specs at each release tag (the validVersions of the
APIs a broker listener serves, less a newest version marked unstable) and, for 4.0 on, from what
4.x brokers answer to ApiVersions. APIs trioka does not serve (delegation
tokens, telemetry, share and streams groups, KRaft voters) are left out: no release can
make trioka advertise them.

What a table holds is Kafka's; what trioka advertises is that range cut to what its handlers
serve (apis/__init__.py). For the default release the two are the same; for older releases the
cut drops versions trioka never serves: Fetch v0-3 (message formats v0/v1, which trioka would
have to down-convert to), ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0, CreateTopics v0-1,
DeleteTopics v0, OffsetForLeaderEpoch v0-1, DescribeConfigs v0, DescribeLogDirs v0 (the versions
Kafka 4.0 removed, KIP-896); 4.2's ListOffsets v11, OffsetCommit v10, OffsetFetch v10 and
WriteTxnMarkers v2 are not served either.

Where releases behave differently (besides the versions themselves), `Release` says so:
- `consumer_group_protocol`: KIP-848's ConsumerGroupHeartbeat and ConsumerGroupDescribe, from 4.0.
  Kafka 3.7-3.9 had them behind `group.coordinator.rebalance.protocols`, off by default; trioka
  poses as the default, so a KIP-848 consumer is refused as those releases refused it.
- `supported_features`: `group.version` (KIP-848) and `transaction.version` (KIP-890 part 2,
  transactions v2) exist from 4.0; earlier releases advertise neither, so 4.x clients keep to the
  classic protocols.
- `serves_produce_v0_to_2`: Produce v0-2 carrying record batches (magic 2) is served before 4.0;
  4.0 removed those versions (KIP-896) and answers them UNSUPPORTED_VERSION, though it still
  advertises Produce from v0 (KAFKA-18659).
- `verifies_transactions`: from 3.6 (KIP-890 part 1) a transactional batch is written only into
  a partition its transaction has; earlier brokers wrote it without asking the coordinator.
- `config_defaults`: broker settings whose default changed. `log.message.timestamp.after.max.ms`
  became one hour in 4.0 (KIP-1030); before, a timestamp any distance ahead was accepted.
"""

from trioka.wire.api_keys import ApiKey as K

LONG_MAX = 2**63 - 1

# release -> the APIs whose range changed from the release before (the first: every API).
_CHANGES = (
    ("2.8", {
        K.PRODUCE: (0, 9), K.FETCH: (0, 12), K.LIST_OFFSETS: (0, 6), K.METADATA: (0, 11),
        K.OFFSET_COMMIT: (0, 8), K.OFFSET_FETCH: (0, 7), K.FIND_COORDINATOR: (0, 3),
        K.JOIN_GROUP: (0, 7), K.HEARTBEAT: (0, 4), K.LEAVE_GROUP: (0, 4), K.SYNC_GROUP: (0, 5),
        K.DESCRIBE_GROUPS: (0, 5), K.LIST_GROUPS: (0, 4), K.API_VERSIONS: (0, 3),
        K.CREATE_TOPICS: (0, 7), K.DELETE_TOPICS: (0, 6), K.DELETE_RECORDS: (0, 2),
        K.INIT_PRODUCER_ID: (0, 4), K.OFFSET_FOR_LEADER_EPOCH: (0, 4),
        K.ADD_PARTITIONS_TO_TXN: (0, 3), K.ADD_OFFSETS_TO_TXN: (0, 3), K.END_TXN: (0, 3),
        K.WRITE_TXN_MARKERS: (0, 1), K.TXN_OFFSET_COMMIT: (0, 3), K.DESCRIBE_CONFIGS: (0, 4),
        K.ALTER_CONFIGS: (0, 2), K.DESCRIBE_LOG_DIRS: (0, 2), K.CREATE_PARTITIONS: (0, 3),
        K.DELETE_GROUPS: (0, 2), K.ELECT_LEADERS: (0, 2), K.INCREMENTAL_ALTER_CONFIGS: (0, 1),
        K.ALTER_PARTITION_REASSIGNMENTS: (0, 0), K.LIST_PARTITION_REASSIGNMENTS: (0, 0),
        K.OFFSET_DELETE: (0, 0), K.DESCRIBE_CLUSTER: (0, 0), K.DESCRIBE_PRODUCERS: (0, 0),
        K.SASL_HANDSHAKE: (0, 1), K.SASL_AUTHENTICATE: (0, 2),   # KIP-43, KIP-152, KIP-368
        K.DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0), K.ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
        K.DESCRIBE_CLIENT_QUOTAS: (0, 1), K.ALTER_CLIENT_QUOTAS: (0, 1),   # KIP-546
        K.DESCRIBE_ACLS: (0, 2), K.CREATE_ACLS: (0, 2), K.DELETE_ACLS: (0, 2),   # KIP-290
    }),
    ("3.0", {
        K.LIST_OFFSETS: (0, 7),            # KIP-734: the max timestamp query
        K.OFFSET_FETCH: (0, 8),            # KIP-709: several groups in one request
        K.FIND_COORDINATOR: (0, 4),        # KIP-699: several keys in one request
        K.DESCRIBE_TRANSACTIONS: (0, 0),   # KIP-664
        K.LIST_TRANSACTIONS: (0, 0),       # KIP-664
    }),
    ("3.1", {
        K.FETCH: (0, 13),                  # KIP-516: topics by id
        K.METADATA: (0, 12),               # KIP-516: topics by id
    }),
    ("3.2", {
        K.JOIN_GROUP: (0, 9),              # KIP-800 reason, KIP-814 skip_assignment
        K.LEAVE_GROUP: (0, 5),             # KIP-800 reason
        K.DESCRIBE_LOG_DIRS: (0, 3),       # KIP-784: a top-level error code
    }),
    ("3.3", {
        K.DESCRIBE_LOG_DIRS: (0, 4),       # KIP-827: total and usable bytes
        K.DESCRIBE_ACLS: (0, 3), K.CREATE_ACLS: (0, 3), K.DELETE_ACLS: (0, 3),   # flexible
    }),
    ("3.4", {}),
    ("3.5", {
        K.FETCH: (0, 15),                  # KIP-405 tiered storage (v14), KIP-903 (v15)
        K.LIST_OFFSETS: (0, 8),            # KIP-405: the earliest local offset
    }),
    ("3.6", {
        K.ADD_PARTITIONS_TO_TXN: (0, 4),   # KIP-890 part 1: batched, verify_only
    }),
    ("3.7", {
        K.PRODUCE: (0, 10),                # KIP-951: leader discovery
        K.FETCH: (0, 16),                  # KIP-951
        K.OFFSET_COMMIT: (0, 9),           # KIP-848: member epochs
        K.OFFSET_FETCH: (0, 9),            # KIP-848
        K.DESCRIBE_CLUSTER: (0, 1),        # KIP-919: the endpoint type
    }),
    ("3.8", {
        K.PRODUCE: (0, 11),                # KIP-890: TRANSACTION_ABORTABLE, in all these
        K.INIT_PRODUCER_ID: (0, 5),
        K.ADD_PARTITIONS_TO_TXN: (0, 5),
        K.ADD_OFFSETS_TO_TXN: (0, 4),
        K.END_TXN: (0, 4),
        K.TXN_OFFSET_COMMIT: (0, 4),
        K.FIND_COORDINATOR: (0, 5),
        K.LIST_GROUPS: (0, 5),             # KIP-848: the group type filter
        K.LIST_TRANSACTIONS: (0, 1),       # KIP-994: the duration filter
        K.DESCRIBE_TOPIC_PARTITIONS: (0, 0),   # KIP-966
    }),
    ("3.9", {
        K.FETCH: (0, 17),                  # KIP-853: the replica directory id
        K.LIST_OFFSETS: (0, 9),            # KIP-1005: the latest tiered offset
        K.FIND_COORDINATOR: (0, 6),        # KIP-932: the share coordinator key type
        K.API_VERSIONS: (0, 4),            # KAFKA-17011: supported features from level 0
    }),
    ("4.0", {
        # KIP-896 removed old versions, so the minimums rise (Produce v0-2 stays advertised,
        # though refused: KAFKA-18659).
        K.FETCH: (4, 17), K.OFFSET_COMMIT: (2, 9), K.OFFSET_FETCH: (1, 9), K.JOIN_GROUP: (2, 9),
        K.CREATE_TOPICS: (2, 7), K.DELETE_TOPICS: (1, 6), K.OFFSET_FOR_LEADER_EPOCH: (2, 4),
        K.WRITE_TXN_MARKERS: (1, 1), K.DESCRIBE_CONFIGS: (1, 4), K.DESCRIBE_LOG_DIRS: (1, 4),
        K.LIST_OFFSETS: (1, 10),           # and v10, KIP-1075: timeout_ms
        K.PRODUCE: (0, 12),                # KIP-890 part 2: transactions v2
        K.END_TXN: (0, 5),                 # KIP-890 part 2
        K.TXN_OFFSET_COMMIT: (0, 5),       # KIP-890 part 2
        K.METADATA: (0, 13),               # KIP-1102: a top-level error code
        K.DESCRIBE_GROUPS: (0, 6),         # KIP-1043: GROUP_ID_NOT_FOUND, error messages
        K.DESCRIBE_CLUSTER: (0, 2),        # KIP-1073: fenced brokers
        K.CONSUMER_GROUP_HEARTBEAT: (0, 1),    # KIP-848 generally available
        K.CONSUMER_GROUP_DESCRIBE: (0, 1),     # KIP-848; v1 the member type (KIP-1099)
    }),
    ("4.1", {
        K.PRODUCE: (0, 13),                # KIP-516: topics by id
        K.FETCH: (4, 18),                  # KIP-1166: the follower's high watermark
        K.JOIN_GROUP: (0, 9),              # KAFKA-19444: v0-1 back for old clients
        K.ALTER_PARTITION_REASSIGNMENTS: (0, 1),   # KIP-860: allow_replication_factor_change
        K.LIST_TRANSACTIONS: (0, 2),       # KIP-1152: the transactional id pattern
    }),
    ("4.2", {
        K.LIST_OFFSETS: (1, 11),           # KIP-1023: the earliest pending upload offset
        K.OFFSET_COMMIT: (2, 10),          # KIP-848: topics by id
        K.OFFSET_FETCH: (1, 10),           # KIP-848: topics by id
        K.WRITE_TXN_MARKERS: (1, 2),       # KIP-1228: the transaction version
    }),
)

# The newest release whose every advertised version trioka serves: the default.
DEFAULT = "4.1"

# KIP-584 features and the range of levels a broker supports, by the release they came with.
_FEATURES = {
    "4.0": {"group.version": (0, 1), "transaction.version": (0, 2)},
}

# Broker settings whose default changed, by the release that changed it: key -> default before.
_DEFAULT_CHANGES = {
    "4.0": {"log.message.timestamp.after.max.ms": LONG_MAX},   # then 3600000 (KIP-1030)
}


class Release:
    """One Kafka release as a broker of it presents itself."""
    __slots__ = ("name", "version", "apis", "supported_features", "config_defaults")

    def __init__(self, name: str, apis: dict, supported_features: dict, config_defaults: dict):
        self.name = name
        self.version = _version(name)
        self.apis: dict[int, tuple[int, int]] = apis
        self.supported_features: dict[str, tuple[int, int]] = supported_features
        self.config_defaults: dict[str, object] = config_defaults

    def __repr__(self) -> str:
        return f"Release({self.name})"

    @property
    def consumer_group_protocol(self) -> bool:
        """KIP-848's consumer groups are on by default (4.0)."""
        return K.CONSUMER_GROUP_HEARTBEAT in self.apis

    @property
    def serves_produce_v0_to_2(self) -> bool:
        """Produce v0-2 is served, with record batches (before 4.0, KIP-896)."""
        return self.version < (4, 0)

    @property
    def verifies_transactions(self) -> bool:
        """A transactional batch is checked against its transaction (3.6, KIP-890 part 1)."""
        return self.version >= (3, 6)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("."))


def _build() -> dict[str, Release]:
    out = {}
    apis: dict[int, tuple[int, int]] = {}
    features: dict = {}
    for name, changes in _CHANGES:
        apis = {**apis, **changes}
        features = {**features, **_FEATURES.get(name, {})}
        # A changed default holds in the releases before the change.
        defaults = {}
        for changed_in, before in _DEFAULT_CHANGES.items():
            if _version(name) < _version(changed_in):
                defaults.update(before)
        out[name] = Release(name, apis, features, defaults)
    return out


RELEASES: dict[str, Release] = _build()


def release(text: str) -> Release:
    """The release named "3.7", "3.7.0" or "3.7.2"; ValueError naming the known ones."""
    parts = str(text).strip().split(".")
    name = ".".join(parts[:2])
    found = RELEASES.get(name) if len(parts) in (2, 3) and all(p.isdigit() for p in parts) \
        else None
    if found is None:
        raise ValueError(f"trioka.kafka.version: unknown Kafka release {text!r}; known: "
                         f"{', '.join(RELEASES)}")
    return found
