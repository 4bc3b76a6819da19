"""The broker's authorizer: Kafka's StandardAuthorizer (security/acls.py holds its rules), its
settings, where its ACLs are kept, and the checks KafkaApis makes before serving each API.

Settings (Kafka's names):
  authorizer.class.name            empty: no authorizer (every request allowed, as in Kafka);
                                   org.apache.kafka.metadata.authorizer.StandardAuthorizer (or
                                   kafka.security.authorizer.AclAuthorizer, the ZooKeeper-era
                                   name, accepted as an alias) turns ACLs on; anything else is a
                                   config error.
  super.users                      `User:alice;User:bob`: principals allowed everything.
  allow.everyone.if.no.acl.found   false: a resource no ACL names is denied to all but super users.

The principal is the connection's (apis/context.py: `User:ANONYMOUS` on PLAINTEXT, the SASL user,
or the mapped certificate name under SSL client auth), the host its client's IP address.
Brokers of a cluster talk to their controller on the controller listener, which serves only the
controller's APIs (ControllerApis); those are not checked here: as in Kafka, a cluster's brokers
are configured as super users (or their listener's principal is) for CLUSTER_ACTION.

A single broker keeps its ACLs in `acls.json` in its log directory (in memory with `--memory`),
rewritten whole (written aside, then renamed) after each change; they survive a restart. A
cluster keeps them as Kafka does, AccessControlEntryRecords in its metadata log written by the
controller (brokers forward CreateAcls/DeleteAcls to it, apis/create_acls.py), which every node
replays into its image and authorizes from. A cluster's brokers fetch from each other as
followers, which needs CLUSTER_ACTION: as in Kafka, name the brokers' principal (User:ANONYMOUS
on PLAINTEXT) in `super.users`.

The checks (KafkaApis): a request whose group, transactional id or cluster permission is missing
is answered as a whole with GROUP_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED or
CLUSTER_AUTHORIZATION_FAILED; in requests naming topics each topic the principal may not use is
answered TOPIC_AUTHORIZATION_FAILED and the others are served. Produce (WRITE), Fetch (READ) and
Metadata (DESCRIBE; unauthorized topics left out of an all-topics answer) check their topics in
their handlers, through the decision cache (AclIndex). So do the batched requests Kafka answers
item by item: OffsetFetch v8+ (each group, and its topics), FindCoordinator v4+ (each key),
DescribeTransactions and ListTransactions (each id), DescribeTopicPartitions and
AddPartitionsToTxn v0-3 (each topic).
"""

import copy
import json

import trio

from trioka.security import acls as A
from trioka.wire.api_keys import ApiKey as K
from trioka.wire.error_response import error_response
from trioka.wire.errors import ErrorCode

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ACL_AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
AUTHORIZER_CLASSES = ("", STANDARD_AUTHORIZER, ACL_AUTHORIZER)
FILE_NAME = "acls.json"


def parse_super_users(text: str) -> list[str]:
    """`super.users`: principals separated by ';' (Kafka's format)."""
    return [p.strip() for p in text.split(";") if p.strip()]


def client_host(peer: str) -> str:
    """The client's IP address from Connection.peer ("host:port", "[v6]:port")."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host[1:-1] if host.startswith("[") else host


class Authorizer:
    """The ACLs and the decisions. A single broker's ACLs are its own (`files`: its log dir's
    DiskFiles or MemoryFiles, where FILE_NAME keeps them; None: not kept); a node of a cluster
    reads them from its metadata image (`image_of`), re-indexed when the image's ACLs change."""

    def __init__(self, files, super_users=(), allow_if_no_acl: bool = False, image_of=None):
        self.files = files
        self._super_users = super_users
        self._allow_if_no_acl = allow_if_no_acl
        self._index = A.AclIndex(super_users, allow_if_no_acl)
        self._image_of = image_of
        self._seen = None       # the image's (acls dict, acls_version) the index was built from
        self._writing = trio.Lock()
        if files is not None and image_of is None:
            self._load()

    @classmethod
    def from_config(cls, config, image_of=None, files=None) -> "Authorizer | None":
        """The authorizer `authorizer.class.name` names, or None; a single broker's ACLs are
        kept in `files` (its log dir's), a cluster node's come from `image_of`."""
        if not config.authorizer_class_name:
            return None
        return cls(None if image_of is not None else files,
                   parse_super_users(config.super_users), config.allow_everyone_if_no_acl_found,
                   image_of)

    @property
    def index(self) -> A.AclIndex:
        if self._image_of is not None:
            image = self._image_of()
            seen = (id(image.acls), image.acls_version)
            if seen != self._seen:
                self._index = A.AclIndex(self._super_users, self._allow_if_no_acl)
                for b in image.acls.values():
                    self._index.add(b)
                self._seen = seen
        return self._index

    def bindings(self) -> list[A.AclBinding]:
        return self.index.bindings()

    # -- decisions ---------------------------------------------------------------------------

    def allowed(self, ctx, operation: int, resource_type: int, name: str) -> bool:
        conn = ctx.connection
        return self.index.authorize(conn.principal, client_host(conn.peer), operation,
                                    resource_type, name)

    def allowed_any(self, ctx, operation: int, resource_type: int) -> bool:
        conn = ctx.connection
        return self.index.authorize_any(conn.principal, client_host(conn.peer), operation,
                                        resource_type)

    def topic_check(self, ctx, operation: int):
        """A function topic name -> allowed, for a handler checking many topics."""
        authorize = self.index.authorize
        principal, host = ctx.connection.principal, client_host(ctx.connection.peer)
        return lambda name: authorize(principal, host, operation, A.TOPIC, name)

    def operations(self, ctx, resource_type: int, name: str) -> int:
        """The authorized-operations bitfield of a resource for this connection."""
        return A.operations_bitfield(
            resource_type, lambda op: self.allowed(ctx, op, resource_type, name))

    # -- the ACLs ----------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads(self.files.read_small(FILE_NAME))
        except FileNotFoundError:
            return
        for d in data.get("acls", []):
            self.index.add(A.AclBinding.from_json(d))

    async def _persist(self) -> None:
        if self.files is None or self._image_of is not None:
            return
        content = json.dumps({"version": 1, "acls": [b.to_json() for b in self.index.bindings()]},
                             indent=1).encode()
        async with self._writing:
            await trio.to_thread.run_sync(self.files.write_atomic, FILE_NAME, content)

    async def create(self, bindings: list[A.AclBinding]) -> list[tuple[int, str | None]]:
        """Add bindings; per binding (error code, message), as CreateAcls answers."""
        results = []
        for b in bindings:
            reason = b.invalid_reason()
            if reason is not None:
                results.append((ErrorCode.INVALID_REQUEST, reason))
                continue
            self.index.add(b)
            results.append((ErrorCode.NONE, None))
        await self._persist()
        return results

    def describe(self, f: A.AclFilter) -> list[A.AclBinding]:
        return self.index.matching(f)

    async def delete(self, filters: list[A.AclFilter]) -> list:
        """Per filter: (error code, message, the bindings it deleted)."""
        out = []
        for f in filters:
            reason = f.invalid_reason()
            if reason is not None:
                out.append((ErrorCode.INVALID_REQUEST, reason, []))
                continue
            matched = self.index.matching(f)
            for b in matched:
                self.index.remove(b)
            out.append((ErrorCode.NONE, None, matched))
        await self._persist()
        return out


# -- the checks KafkaApis makes ----------------------------------------------------------------

TOPIC_DENIED = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_DENIED = ErrorCode.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
TXN_DENIED = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def _group(r, v):
    return [r.group_id]


def _txn(r, v):
    return [r.transactional_id] if r.transactional_id else []


# api key -> the whole-request checks: (resource type, the names of the request, operation,
# the error). A CLUSTER check names the cluster.
_CLUSTER = lambda r, v: [A.CLUSTER_NAME]   # noqa: E731
def _follower(r, v):
    """A follower's Fetch (a replica id) needs CLUSTER_ACTION: its partitions are answered
    TOPIC_AUTHORIZATION_FAILED otherwise, as KafkaApis answers them."""
    replica_id = r.replica_state.replica_id if v >= 15 else r.replica_id
    return [A.CLUSTER_NAME] if replica_id >= 0 else []


WHOLE = {
    K.PRODUCE: [(A.TRANSACTIONAL_ID, _txn, A.WRITE, TXN_DENIED)],
    K.FETCH: [(A.CLUSTER, _follower, A.CLUSTER_ACTION, TOPIC_DENIED)],
    K.JOIN_GROUP: [(A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.SYNC_GROUP: [(A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.HEARTBEAT: [(A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.LEAVE_GROUP: [(A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.OFFSET_COMMIT: [(A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.OFFSET_DELETE: [(A.GROUP, _group, A.DELETE, GROUP_DENIED)],
    K.CONSUMER_GROUP_HEARTBEAT: [(A.GROUP, _group, A.READ, GROUP_DENIED)],
    # OffsetFetch v8+ and FindCoordinator v4+ batch groups and keys: each is answered on its
    # own in the handler (apis/offset_fetch.py, apis/find_coordinator.py), as KafkaApis does.
    K.OFFSET_FETCH: [(A.GROUP, lambda r, v: [r.group_id] if v < 8 else [], A.DESCRIBE,
                      GROUP_DENIED)],
    K.FIND_COORDINATOR: [
        (A.GROUP, lambda r, v: [r.key] if v < 4 and r.key_type == 0 else [], A.DESCRIBE,
         GROUP_DENIED),
        (A.TRANSACTIONAL_ID, lambda r, v: [r.key] if v < 4 and r.key_type == 1 else [],
         A.DESCRIBE, TXN_DENIED)],
    # v0-3 come from producers (WRITE on the id; each topic's WRITE in the handler); v4+ only
    # from brokers, which need CLUSTER_ACTION.
    K.ADD_PARTITIONS_TO_TXN: [
        (A.TRANSACTIONAL_ID, lambda r, v: [r.v3_and_below_transactional_id] if v < 4 else [],
         A.WRITE, TXN_DENIED),
        (A.CLUSTER, lambda r, v: [A.CLUSTER_NAME] if v >= 4 else [], A.CLUSTER_ACTION,
         CLUSTER_DENIED)],
    K.ADD_OFFSETS_TO_TXN: [(A.TRANSACTIONAL_ID, _txn, A.WRITE, TXN_DENIED),
                           (A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.END_TXN: [(A.TRANSACTIONAL_ID, _txn, A.WRITE, TXN_DENIED)],
    K.TXN_OFFSET_COMMIT: [(A.TRANSACTIONAL_ID, _txn, A.WRITE, TXN_DENIED),
                          (A.GROUP, _group, A.READ, GROUP_DENIED)],
    K.WRITE_TXN_MARKERS: [(A.CLUSTER, _CLUSTER, A.CLUSTER_ACTION, CLUSTER_DENIED)],
    K.ELECT_LEADERS: [(A.CLUSTER, _CLUSTER, A.ALTER, CLUSTER_DENIED)],
    K.ALTER_PARTITION_REASSIGNMENTS: [(A.CLUSTER, _CLUSTER, A.ALTER, CLUSTER_DENIED)],
    K.LIST_PARTITION_REASSIGNMENTS: [(A.CLUSTER, _CLUSTER, A.DESCRIBE, CLUSTER_DENIED)],
    K.DESCRIBE_LOG_DIRS: [(A.CLUSTER, _CLUSTER, A.DESCRIBE, CLUSTER_DENIED)],
    K.CREATE_ACLS: [(A.CLUSTER, _CLUSTER, A.ALTER, CLUSTER_DENIED)],
    K.DELETE_ACLS: [(A.CLUSTER, _CLUSTER, A.ALTER, CLUSTER_DENIED)],
    K.DESCRIBE_ACLS: [(A.CLUSTER, _CLUSTER, A.DESCRIBE, CLUSTER_DENIED)],
    K.ALTER_USER_SCRAM_CREDENTIALS: [(A.CLUSTER, _CLUSTER, A.ALTER, CLUSTER_DENIED)],
    K.DESCRIBE_USER_SCRAM_CREDENTIALS: [(A.CLUSTER, _CLUSTER, A.DESCRIBE, CLUSTER_DENIED)],
    K.ALTER_CLIENT_QUOTAS: [(A.CLUSTER, _CLUSTER, A.ALTER_CONFIGS, CLUSTER_DENIED)],
    K.DESCRIBE_CLIENT_QUOTAS: [(A.CLUSTER, _CLUSTER, A.DESCRIBE_CONFIGS, CLUSTER_DENIED)],
}

# api key -> the per-entry check: (the request's array, the entry's name field (None: the
# entries are names), the resource type, the operation). Denied entries are answered
# TOPIC_AUTHORIZATION_FAILED (GROUP_AUTHORIZATION_FAILED for groups), the others served.
# CreateTopics is allowed by CREATE on the cluster or on each topic.
PER_ENTRY = {
    K.LIST_OFFSETS: ("topics", "name", A.TOPIC, A.DESCRIBE),
    K.OFFSET_COMMIT: ("topics", "name", A.TOPIC, A.READ),
    K.TXN_OFFSET_COMMIT: ("topics", "name", A.TOPIC, A.READ),
    K.OFFSET_DELETE: ("topics", "name", A.TOPIC, A.READ),
    K.OFFSET_FOR_LEADER_EPOCH: ("topics", "topic", A.TOPIC, A.DESCRIBE),
    K.CREATE_TOPICS: ("topics", "name", A.TOPIC, A.CREATE),
    K.DELETE_TOPICS: ("topics", "name", A.TOPIC, A.DELETE),
    K.CREATE_PARTITIONS: ("topics", "name", A.TOPIC, A.ALTER),
    K.DELETE_RECORDS: ("topics", "name", A.TOPIC, A.DELETE),
    K.DESCRIBE_PRODUCERS: ("topics", "name", A.TOPIC, A.READ),
    K.DESCRIBE_GROUPS: ("groups", None, A.GROUP, A.DESCRIBE),
    K.CONSUMER_GROUP_DESCRIBE: ("group_ids", None, A.GROUP, A.DESCRIBE),
    K.DELETE_GROUPS: ("groups_names", None, A.GROUP, A.DELETE),
}
_DENIED = {A.TOPIC: TOPIC_DENIED, A.GROUP: GROUP_DENIED}

# ConfigResource types (DescribeConfigs, AlterConfigs): TOPIC 2, BROKER 4, BROKER_LOGGER 8,
# GROUP 32; each checked on its own resource, a broker's on the cluster.
CONFIG_CHECKS = {K.DESCRIBE_CONFIGS: A.DESCRIBE_CONFIGS, K.ALTER_CONFIGS: A.ALTER_CONFIGS,
                 K.INCREMENTAL_ALTER_CONFIGS: A.ALTER_CONFIGS}
_CONFIG_RESOURCES = {2: (A.TOPIC, TOPIC_DENIED), 4: (A.CLUSTER, CLUSTER_DENIED),
                     8: (A.CLUSTER, CLUSTER_DENIED), 32: (A.GROUP, GROUP_DENIED)}


def whole_request_denial(authorizer: Authorizer, api_key: int, request, ctx) -> int:
    """The error answering the whole request, or 0 when the request may go on."""
    version = ctx.api_version
    for resource_type, names, operation, code in WHOLE.get(api_key, ()):
        for name in names(request, version):
            if name is not None and not authorizer.allowed(ctx, operation, resource_type, name):
                return code
    if api_key == K.INIT_PRODUCER_ID:
        if request.transactional_id:
            if not authorizer.allowed(ctx, A.WRITE, A.TRANSACTIONAL_ID,
                                      request.transactional_id):
                return TXN_DENIED
        # KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on
        # some topic.
        elif not (authorizer.allowed(ctx, A.IDEMPOTENT_WRITE, A.CLUSTER, A.CLUSTER_NAME)
                  or authorizer.allowed_any(ctx, A.WRITE, A.TOPIC)):
            return CLUSTER_DENIED
    return 0


def _entries_of(api_key: int, version: int):
    field, name_field, _, _ = PER_ENTRY[api_key]
    if api_key == K.DELETE_TOPICS and version < 6:
        return "topic_names", None
    return field, name_field


def split_denied_topics(authorizer: Authorizer, api_key: int, request, ctx):
    """For a PER_ENTRY or config API: the request entries denied (removed from `request`, which
    keeps the allowed ones) as (field name, denied entries, error), or None."""
    version = ctx.api_version
    if api_key in CONFIG_CHECKS:
        operation = CONFIG_CHECKS[api_key]
        allowed, denied = [], {}
        for r in request.resources:
            resource_type, error = _CONFIG_RESOURCES.get(r.resource_type, (None, 0))
            name = A.CLUSTER_NAME if resource_type == A.CLUSTER else r.resource_name
            if resource_type is None or authorizer.allowed(ctx, operation, resource_type, name):
                allowed.append(r)
            else:
                denied.setdefault(error, []).append(r)
        if not denied:
            return None
        request.resources = allowed
        return [("resources", entries, code) for code, entries in denied.items()]
    if api_key not in PER_ENTRY:
        return None
    field, name_field = _entries_of(api_key, version)
    _, _, resource_type, operation = PER_ENTRY[api_key]
    if api_key == K.CREATE_TOPICS and authorizer.allowed(ctx, A.CREATE, A.CLUSTER,
                                                         A.CLUSTER_NAME):
        return None
    entries = getattr(request, field) or []
    allowed, denied = [], []
    for e in entries:
        name = e if name_field is None else getattr(e, name_field)
        if name is None or authorizer.allowed(ctx, operation, resource_type, name):
            allowed.append(e)
        else:
            denied.append(e)
    if not denied:
        return None
    setattr(request, field, allowed)
    return [(field, denied, _DENIED[resource_type])]


async def serve(authorizer: Authorizer, api, broker, request, ctx):
    """Serve a request of a broker listener as KafkaApis does with an authorizer: the whole
    request refused, or its denied entries answered with their error and the rest served."""
    api_key, version = ctx.header.api_key, ctx.api_version
    code = whole_request_denial(authorizer, api_key, request, ctx)
    if code:
        return error_response(api_key, version, request, code)
    split = split_denied_topics(authorizer, api_key, request, ctx)
    response = await api.handle(broker, request, ctx)
    if split is None or response is None:
        return response
    for field, denied, code in split:
        subset = copy.copy(request)
        setattr(subset, field, denied)
        failed = error_response(api_key, version, subset, code)
        # The denied entries' answers join the served ones in the response's arrays.
        for name in type(failed).__slots__:
            value = getattr(failed, name, None)
            if isinstance(value, list) and value:
                setattr(response, name, value + list(getattr(response, name) or []))
    return response
