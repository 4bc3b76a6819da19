"""The handler table: API key -> the module that serves it, and the versions it serves.

One module per Kafka API, each with `async def handle(broker, request, ctx)` returning the
response message, or None when none is due. The versions are here, in one table, because
ApiVersions advertises exactly this table; a module is imported when its API is first used, so
that the broker answers its first requests without loading every API (startup stays short).

`APIS` says what the handlers serve; a broker listener serves that table as the Kafka release
posed as (`trioka.kafka.version`, wire/releases.py) had it: each API that release advertised,
its range cut to what the handler serves (`as_release`). The default release is served whole
(every version it advertised has a handler), and `tests/test_releases.py` keeps it so.

A node that runs a KRaft controller serves another table, `CONTROLLER_APIS`, on the listeners
named in `controller.listener.names` (Kafka's ControllerApis); `table_for` says which table a
listener serves, and ApiVersions advertises that one.
"""

import importlib

from trioka.wire.api_keys import ApiKey


class Api:
    """One row of the table: the module's name and the versions it decodes and serves."""
    __slots__ = ("name", "versions", "_module")

    def __init__(self, name: str, min_version: int, max_version: int):
        self.name = name
        self.versions = (min_version, max_version)
        self._module = None

    @property
    def module(self):
        if self._module is None:
            self._module = importlib.import_module(f"trioka.apis.{self.name}")
        return self._module

    def handle(self, broker, request, ctx):
        return self.module.handle(broker, request, ctx)

    def narrowed(self, min_version: int, max_version: int) -> "Api":
        """The same API serving fewer versions."""
        return type(self)(self.name, min_version, max_version)


class ControllerApi(Api):
    """A row of the controller listener's table served by the node's QuorumController
    (controller/quorum_controller.py): its method of the same name answers the request with the
    controller's semantics, as Kafka's ControllerApis hands these requests to its controller.
    The module named is the broker's handler of the same API (what ApiVersions' fallback
    answer and the request codec are keyed by)."""
    __slots__ = ("method",)

    def __init__(self, name: str, min_version: int, max_version: int):
        super().__init__(name, min_version, max_version)
        self.method = name

    def handle(self, broker, request, ctx):
        return getattr(broker.controller, self.method)(request, ctx.api_version)


class MutationControllerApi(ControllerApi):
    """A controller row whose request creates or deletes partitions (CreateTopics, DeleteTopics,
    CreatePartitions): the client's `controller_mutation_rate` quota (KIP-599) is spent here,
    where the controller decides, as Kafka's ControllerApis does. The client is the one on the
    connection or, for a request a broker forwarded, the one its Envelope names
    (apis/envelope.py). Strict from the module's STRICT_QUOTA_FROM version, permissive before."""
    __slots__ = ()

    async def handle(self, broker, request, ctx):
        from trioka.security.quotas import mutation_quota, mutation_throttle
        controller = broker.controller
        quota = mutation_quota(broker, ctx, self.module.STRICT_QUOTA_FROM, controller.quotas)
        response = await getattr(controller, self.method)(request, ctx.api_version, quota)
        response.throttle_time_ms = mutation_throttle(broker, ctx, quota)
        return response


APIS = {
    ApiKey.PRODUCE: Api("produce", 0, 13),
    ApiKey.FETCH: Api("fetch", 4, 18),
    ApiKey.LIST_OFFSETS: Api("list_offsets", 1, 10),
    ApiKey.METADATA: Api("metadata", 0, 13),
    ApiKey.OFFSET_COMMIT: Api("offset_commit", 2, 9),
    ApiKey.OFFSET_FETCH: Api("offset_fetch", 1, 9),
    ApiKey.FIND_COORDINATOR: Api("find_coordinator", 0, 6),
    ApiKey.JOIN_GROUP: Api("join_group", 0, 9),
    ApiKey.HEARTBEAT: Api("heartbeat", 0, 4),
    ApiKey.LEAVE_GROUP: Api("leave_group", 0, 5),
    ApiKey.SYNC_GROUP: Api("sync_group", 0, 5),
    ApiKey.DESCRIBE_GROUPS: Api("describe_groups", 0, 6),
    ApiKey.LIST_GROUPS: Api("list_groups", 0, 5),
    ApiKey.DELETE_GROUPS: Api("delete_groups", 0, 2),
    ApiKey.OFFSET_DELETE: Api("offset_delete", 0, 0),
    ApiKey.API_VERSIONS: Api("api_versions", 0, 4),
    ApiKey.CREATE_TOPICS: Api("create_topics", 2, 7),
    ApiKey.DELETE_TOPICS: Api("delete_topics", 1, 6),
    ApiKey.INIT_PRODUCER_ID: Api("init_producer_id", 0, 5),
    ApiKey.ADD_PARTITIONS_TO_TXN: Api("add_partitions_to_txn", 0, 5),
    ApiKey.ADD_OFFSETS_TO_TXN: Api("add_offsets_to_txn", 0, 4),
    ApiKey.END_TXN: Api("end_txn", 0, 5),
    ApiKey.WRITE_TXN_MARKERS: Api("write_txn_markers", 0, 1),
    ApiKey.TXN_OFFSET_COMMIT: Api("txn_offset_commit", 0, 5),
    ApiKey.DESCRIBE_PRODUCERS: Api("describe_producers", 0, 0),
    ApiKey.DESCRIBE_TRANSACTIONS: Api("describe_transactions", 0, 0),
    ApiKey.LIST_TRANSACTIONS: Api("list_transactions", 0, 2),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: Api("offset_for_leader_epoch", 2, 4),
    ApiKey.CREATE_PARTITIONS: Api("create_partitions", 0, 3),
    ApiKey.DESCRIBE_CLUSTER: Api("describe_cluster", 0, 2),
    ApiKey.ELECT_LEADERS: Api("elect_leaders", 0, 2),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: Api("describe_topic_partitions", 0, 0),
    ApiKey.DESCRIBE_CONFIGS: Api("describe_configs", 1, 4),
    ApiKey.DELETE_RECORDS: Api("delete_records", 0, 2),
    ApiKey.DESCRIBE_LOG_DIRS: Api("describe_log_dirs", 1, 4),
    ApiKey.ALTER_CONFIGS: Api("alter_configs", 0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: Api("incremental_alter_configs", 0, 1),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: Api("alter_partition_reassignments", 0, 1),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: Api("list_partition_reassignments", 0, 0),
    ApiKey.CONSUMER_GROUP_HEARTBEAT: Api("consumer_group_heartbeat", 0, 1),
    ApiKey.CONSUMER_GROUP_DESCRIBE: Api("consumer_group_describe", 0, 1),
    # SASL (security/sasl/): on a SASL listener the only requests before authentication.
    ApiKey.SASL_HANDSHAKE: Api("sasl_handshake", 0, 1),
    ApiKey.SASL_AUTHENTICATE: Api("sasl_authenticate", 0, 2),
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: Api("describe_user_scram_credentials", 0, 0),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: Api("alter_user_scram_credentials", 0, 0),
    # Client quotas (security/quotas.py), KIP-546.
    ApiKey.DESCRIBE_CLIENT_QUOTAS: Api("describe_client_quotas", 0, 1),
    ApiKey.ALTER_CLIENT_QUOTAS: Api("alter_client_quotas", 0, 1),
    # ACLs (security/authorizer.py); SECURITY_DISABLED without an authorizer, as in Kafka.
    ApiKey.DESCRIBE_ACLS: Api("describe_acls", 0, 3),
    ApiKey.CREATE_ACLS: Api("create_acls", 0, 3),
    ApiKey.DELETE_ACLS: Api("delete_acls", 0, 3),
}

# The controller listener's table (a listener named in `controller.listener.names`), Kafka's
# ControllerApis: what brokers send their controller (registration, heartbeats, ISR changes, the
# Raft Fetch of `__cluster_metadata`) and the admin requests that change the metadata, which
# brokers forward and KIP-919 clients send straight to the controller.
CONTROLLER_APIS = {
    ApiKey.API_VERSIONS: Api("api_versions", 0, 4),
    # A SASL controller listener authenticates the brokers as any SASL listener does
    # (ControllerApis serves SaslHandshake and SaslAuthenticate too).
    ApiKey.SASL_HANDSHAKE: Api("sasl_handshake", 0, 1),
    ApiKey.SASL_AUTHENTICATE: Api("sasl_authenticate", 0, 2),
    ApiKey.FETCH: Api("metadata_fetch", 12, 17),
    ApiKey.BROKER_REGISTRATION: Api("broker_registration", 0, 4),
    ApiKey.BROKER_HEARTBEAT: Api("broker_heartbeat", 0, 1),
    ApiKey.ALTER_PARTITION: Api("alter_partition", 0, 3),
    ApiKey.CREATE_TOPICS: MutationControllerApi("create_topics", 2, 7),
    ApiKey.DELETE_TOPICS: MutationControllerApi("delete_topics", 1, 6),
    ApiKey.CREATE_PARTITIONS: MutationControllerApi("create_partitions", 0, 3),
    ApiKey.ELECT_LEADERS: ControllerApi("elect_leaders", 0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: ControllerApi("incremental_alter_configs", 0, 1),
    ApiKey.ALTER_CONFIGS: ControllerApi("alter_configs", 0, 2),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: ControllerApi("alter_partition_reassignments", 0, 1),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: ControllerApi("list_partition_reassignments", 0, 0),
    ApiKey.DESCRIBE_CLUSTER: ControllerApi("describe_cluster", 0, 2),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: ControllerApi("alter_user_scram_credentials", 0, 0),
    ApiKey.CREATE_ACLS: ControllerApi("create_acls", 0, 3),
    ApiKey.DELETE_ACLS: ControllerApi("delete_acls", 0, 3),
    ApiKey.ALTER_CLIENT_QUOTAS: ControllerApi("alter_client_quotas", 0, 1),
    # A client's request a broker forwards, with the client's identity (KIP-590).
    ApiKey.ENVELOPE: Api("envelope", 0, 0),
}


def controller_listener_names(config) -> frozenset[str]:
    """The listeners named in `controller.listener.names`."""
    return frozenset(name.strip() for name in config.controller_listener_names.split(",")
                     if name.strip())


def runs_controller(config) -> bool:
    """Whether the node runs a KRaft controller: `process.roles` holds `controller` and the node
    is part of a cluster (`controller.quorum.voters` set; a single node is its own cluster)."""
    roles = {role.strip() for role in config.process_roles.split(",")}
    return "controller" in roles and bool(config.controller_quorum_voters.strip())


def as_release(release) -> dict:
    """`APIS` as a broker of the Kafka release serves it: the APIs the release advertised, each
    with the versions both the release and the handler have. Built once per release."""
    table = _AS_RELEASE.get(release.name)
    if table is None:
        table = {}
        for key, api in APIS.items():
            if key not in release.apis:
                continue
            lo = max(api.versions[0], release.apis[key][0])
            hi = min(api.versions[1], release.apis[key][1])
            if lo <= hi:
                table[key] = api if (lo, hi) == api.versions else api.narrowed(lo, hi)
        _AS_RELEASE[release.name] = table
    return table


_AS_RELEASE: dict[str, dict] = {}


def table_for(config, listener) -> dict:
    """The API table of a connection's listener: the controller's on a controller listener of
    a node that runs a controller, the broker's (as the release posed as) elsewhere."""
    if listener is not None and listener.name in controller_listener_names(config) \
            and runs_controller(config):
        return CONTROLLER_APIS
    return as_release(config.release)
