"""Security negative cases, table-driven: every denial answered with Kafka's error and nothing
leaked, against real broker processes.

One broker (test_acls.AclBroker: Kafka's StandardAuthorizer, `super.users=User:admin`) serves a
PLAINTEXT listener, where clients are User:ANONYMOUS, and a SASL_PLAINTEXT listener with PLAIN,
SCRAM-SHA-256/512 and OAUTHBEARER (unsecured JWTs that must carry the scope `kafka`). The super
user makes topics, groups with committed offsets, transactional ids and the ACLs below; then each
case sends the request a client would (raw Kafka requests where a stock client hides the
per-item code, confluent-kafka and kafka-python where they surface it) and checks the exact code
and that the answer holds nothing the principal may not see (offsets, topic names, configs,
ACLs, users), and, for requests that change something, that nothing changed.

What ANONYMOUS is given (everything else it is denied; no ACL at all names `sec-secret`):
  topic sec-desc DESCRIBE; sec-read READ; sec-write WRITE; sec-deny ALL but a DENY WRITE for
  User:* (deny wins); sec-host WRITE from host 10.0.0.1 only; sec-hostdeny ALL but DENY READ
  from 127.0.0.1; prefixed sec-pre- WRITE; literal sec-lit WRITE; prefixed sec-auto- DESCRIBE
  (not CREATE); group sec-g-desc DESCRIBE; sec-g-read READ; sec-g-del DELETE; transactional id
  sec-tx-desc DESCRIBE; sec-tx-write WRITE. alice (SASL) has no ACL.
Kafka's rules (KafkaApis, AuthHelper): a request whose group, transactional id or cluster
permission is missing is refused as a whole, batched groups/keys/ids each on their own; a topic
the principal may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED whether it exists or not (its
existence is not told) and left out of every listing.

The SASL and TLS cases check the authentication failures: each mechanism's wrong password and
unknown user answered alike after `connection.failed.authentication.delay.ms`, SCRAM messages out
of order or forged, OAUTHBEARER tokens Kafka's unsecured validator refuses, handshakes out of
turn, and a mutual-TLS listener refusing a missing, untrusted or expired client certificate (the
expired one written here with `cryptography`), protocols crossed on the wrong port; the broker
stays up throughout.
"""

import base64
import datetime
import json
import socket
import ssl
import struct
import time

import pytest

from harness import unique
from test_acls import AclBroker, admin_of, binding, create_acls, make_topic
from test_sasl import Raw, unsecured_jwt
from test_tls import TlsBroker, make_certs
from trioka.log.records import encode_batch
from trioka.security.sasl.scram import SCRAM_SHA_256, SCRAM_SHA_512, client_proof
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey as K
from trioka.wire.errors import ErrorCode as E
from trioka.wire.types import ZERO_UUID

T_SECRET, T_DESC, T_READ, T_WRITE = "sec-secret", "sec-desc", "sec-read", "sec-write"
T_DENY, T_HOST, T_HOSTDENY = "sec-deny", "sec-host", "sec-hostdeny"
G_SECRET, G_DESC, G_READ, G_DEL = "sec-g-secret", "sec-g-desc", "sec-g-read", "sec-g-del"
TX_SECRET, TX_DESC, TX_WRITE = "sec-tx-secret", "sec-tx-desc", "sec-tx-write"
ANON = "User:ANONYMOUS"
COMMITTED = 5              # the offset the super user committed in every group
DELAY_MS = 150             # connection.failed.authentication.delay.ms
MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"
OAUTH_JAAS = ('org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
              'unsecuredValidatorRequiredScope="kafka";')
SCRAM_USERS = {"SCRAM-SHA-256": ("bob", "bob-secret"), "SCRAM-SHA-512": ("carol", "carol-secret")}


# --- requests from plain data ----------------------------------------------------------------

def _struct(fields, cls, values: dict):
    by_name = {f.name: f for f in fields}
    kw = {}
    for name, value in values.items():
        f = by_name[name]
        if f.is_struct and value is not None:
            if f.type == "array":
                value = [_struct(f.children, f.struct, v) for v in value]
            else:
                value = _struct(f.children, f.struct, value)
        kw[name] = value
    return cls(**kw)


def ask(raw: Raw, api_key: int, version: int, **fields):
    """Send one request (nested structs given as dicts and lists) and read its answer."""
    key = api_key
    message = _struct(schema.api(key).request.fields, protocol.request_class(key), fields)
    raw.correlation += 1
    raw.sock.sendall(protocol.encode_request(key, version, raw.correlation, "sec", message))
    return raw.receive(key, version)


def no_leak(answer, *secrets) -> None:
    text = repr(answer)
    for secret in secrets:
        assert str(secret) not in text, f"{secret!r} leaked in {text}"


def batch(**kw) -> bytes:
    return encode_batch([(None, b"must-not-land")], **kw)


def fetch_topics(name: str) -> list:
    return [{"topic": name, "partitions": [{"partition": 0, "current_leader_epoch": -1,
                                            "fetch_offset": 0, "last_fetched_epoch": -1,
                                            "log_start_offset": -1,
                                            "partition_max_bytes": 1 << 20}]}]


def fetch(raw, topics, version=12, replica_id=-1):
    return ask(raw, K.FETCH, version, cluster_id=None, replica_id=replica_id, max_wait_ms=0,
               min_bytes=0, max_bytes=1 << 20, isolation_level=0, session_id=0,
               session_epoch=-1, topics=topics, forgotten_topics_data=[], rack_id="")


def metadata(raw, names=None, auto=False, ids=None, ops=False):
    topics = None
    if names is not None:
        topics = [{"topic_id": ZERO_UUID, "name": n} for n in names]
    if ids is not None:
        topics = [{"topic_id": i, "name": None} for i in ids]
    return ask(raw, K.METADATA, 12, topics=topics, allow_auto_topic_creation=auto,
               include_topic_authorized_operations=ops)


def produce(raw, topic, records=None, transactional_id=None):
    return ask(raw, K.PRODUCE, 9, transactional_id=transactional_id, acks=-1, timeout_ms=10000,
               topic_data=[{"name": topic, "partition_data": [
                   {"index": 0, "records": records or batch()}]}])


def partition_codes(topics, parts="partitions", name="name", code="error_code") -> dict:
    return {getattr(t, name): [getattr(p, code) for p in getattr(t, parts)] for t in topics}


def offset_fetch_v8(raw, groups):
    return ask(raw, K.OFFSET_FETCH, 8, require_stable=False, groups=[
        {"group_id": g, "topics": None if topics is None else
         [{"name": t, "partition_indexes": [0]} for t in topics]} for g, topics in groups])


# --- the broker and what the super user set up ------------------------------------------------

class Env:
    def __init__(self, broker):
        self.broker = broker
        self.admin = admin_of(broker.sasl("admin"))

    def anonymous(self) -> Raw:
        return Raw(self.broker.port)

    def sasl(self, user: str, password: str | None = None) -> Raw:
        raw = Raw(self.broker.sasl_port)
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        answer = ask(raw, K.SASL_AUTHENTICATE, 2,
                     auth_bytes=f"\0{user}\0{password or user + '-secret'}".encode())
        assert answer.error_code == 0, answer
        return raw

    def end_offset(self, topic: str) -> int:
        with_admin = self.sasl("admin")
        try:
            answer = ask(with_admin, K.LIST_OFFSETS, 7, replica_id=-1, isolation_level=0,
                         topics=[{"name": topic, "partitions": [
                             {"partition_index": 0, "current_leader_epoch": -1,
                              "timestamp": -1}]}])
            return answer.topics[0].partitions[0].offset
        finally:
            with_admin.close()

    def admin_offsets(self, group: str) -> dict:
        with_admin = self.sasl("admin")
        try:
            g = offset_fetch_v8(with_admin, [(group, None)]).groups[0]
            return {t.name: [p.committed_offset for p in t.partitions] for t in g.topics}
        finally:
            with_admin.close()

    def topic_exists(self, name: str) -> bool:
        return name in self.admin.list_topics(timeout=20).topics


@pytest.fixture(scope="module")
def env():
    overrides = {"sasl.enabled.mechanisms": MECHANISMS,
                 "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": OAUTH_JAAS,
                 "connection.failed.authentication.delay.ms": str(DELAY_MS)}
    with AclBroker(memory=True, overrides=overrides) as broker:
        broker.start()
        e = Env(broker)
        for name in (T_SECRET, T_DESC, T_READ, T_WRITE, T_DENY, T_HOST, T_HOSTDENY):
            make_topic(e.admin, name)
        create_acls(e.admin, [
            binding("TOPIC", T_DESC, ANON, "DESCRIBE"),
            binding("TOPIC", T_READ, ANON, "READ"),
            binding("TOPIC", T_WRITE, ANON, "WRITE"),
            binding("TOPIC", T_DENY, ANON, "ALL"),
            binding("TOPIC", T_DENY, "User:*", "WRITE", permission="DENY"),
            binding("TOPIC", T_HOST, ANON, "WRITE", host="10.0.0.1"),
            binding("TOPIC", T_HOSTDENY, ANON, "ALL"),
            binding("TOPIC", T_HOSTDENY, ANON, "READ", permission="DENY", host="127.0.0.1"),
            binding("TOPIC", "sec-pre-", ANON, "WRITE", pattern="PREFIXED"),
            binding("TOPIC", "sec-lit", ANON, "WRITE"),
            binding("TOPIC", "sec-auto-", ANON, "DESCRIBE", pattern="PREFIXED"),
            binding("GROUP", G_DESC, ANON, "DESCRIBE"),
            binding("GROUP", G_READ, ANON, "READ"),
            binding("GROUP", G_DEL, ANON, "DELETE"),
            binding("TRANSACTIONAL_ID", TX_DESC, ANON, "DESCRIBE"),
            binding("TRANSACTIONAL_ID", TX_WRITE, ANON, "WRITE")])
        for name in ("sec-pre-x", "sec-lit-x"):
            make_topic(e.admin, name)
        from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                           UserScramCredentialUpsertion)
        upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(
            getattr(ScramMechanism, mechanism.replace("-", "_")), 4096), password.encode())
            for mechanism, (user, password) in SCRAM_USERS.items()]
        for future in e.admin.alter_user_scram_credentials(upserts).values():
            assert future.result(timeout=20) is None
        admin = e.sasl("admin")
        try:
            # Records and committed offsets the others must not see.
            for topic in (T_SECRET, T_READ):
                assert partition_codes(produce(admin, topic, encode_batch(
                    [(None, b"secret-%d" % i) for i in range(COMMITTED)])).responses,
                    "partition_responses") == {topic: [0]}
            for group in (G_SECRET, G_DESC, G_READ, G_DEL):
                committed = ask(admin, K.OFFSET_COMMIT, 8, group_id=group,
                                generation_id_or_member_epoch=-1, member_id="",
                                group_instance_id=None, topics=[
                                    {"name": t, "partitions": [{
                                        "partition_index": 0, "committed_offset": COMMITTED,
                                        "committed_leader_epoch": -1,
                                        "committed_metadata": "m"}]}
                                    for t in (T_SECRET, T_READ)])
                assert {c for cs in partition_codes(committed.topics).values() for c in cs} == {0}
            for tid in (TX_SECRET, TX_DESC, TX_WRITE):
                assert ask(admin, K.INIT_PRODUCER_ID, 4, transactional_id=tid,
                           transaction_timeout_ms=60000, producer_id=-1,
                           producer_epoch=-1).error_code == 0
            e.secret_id = metadata(admin, [T_SECRET]).topics[0].topic_id
        finally:
            admin.close()
        yield e


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# --- Produce ---------------------------------------------------------------------------------

@case
def produce_needs_write(env):
    raw = env.anonymous()
    answer = produce(raw, T_DESC)
    assert partition_codes(answer.responses, "partition_responses") == \
        {T_DESC: [E.TOPIC_AUTHORIZATION_FAILED]}
    assert answer.responses[0].partition_responses[0].base_offset == -1
    assert env.end_offset(T_DESC) == 0


@case
def produce_to_unknown_topic_is_not_told_apart(env):
    name = unique("sec-nowhere")
    answer = produce(env.anonymous(), name)
    assert partition_codes(answer.responses, "partition_responses") == \
        {name: [E.TOPIC_AUTHORIZATION_FAILED]}


@case
def produce_denied_topic_beside_allowed_one(env):
    raw = env.anonymous()
    answer = ask(raw, K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=10000,
                 topic_data=[{"name": t, "partition_data": [{"index": 0, "records": batch()}]}
                             for t in (T_WRITE, T_SECRET)])
    assert partition_codes(answer.responses, "partition_responses") == \
        {T_WRITE: [0], T_SECRET: [E.TOPIC_AUTHORIZATION_FAILED]}
    assert env.end_offset(T_SECRET) == COMMITTED


@case
def produce_transactional_without_transactional_id_write(env):
    answer = produce(env.anonymous(), T_WRITE, batch(producer_id=1, producer_epoch=0,
                                                     base_sequence=0, transactional=True),
                     transactional_id=TX_SECRET)
    assert partition_codes(answer.responses, "partition_responses") == \
        {T_WRITE: [E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED]}


@case
def produce_deny_wins_over_allow_all(env):
    answer = produce(env.anonymous(), T_DENY)
    assert answer.responses[0].partition_responses[0].error_code == \
        E.TOPIC_AUTHORIZATION_FAILED
    assert env.end_offset(T_DENY) == 0


@case
def produce_acl_for_another_host(env):
    answer = produce(env.anonymous(), T_HOST)
    assert answer.responses[0].partition_responses[0].error_code == \
        E.TOPIC_AUTHORIZATION_FAILED


@case
def produce_literal_acl_does_not_cover_longer_names(env):
    raw = env.anonymous()
    assert produce(raw, "sec-pre-x").responses[0].partition_responses[0].error_code == 0
    assert produce(raw, "sec-lit-x").responses[0].partition_responses[0].error_code == \
        E.TOPIC_AUTHORIZATION_FAILED


@case
def produce_sasl_user_without_acls_while_super_user_writes(env):
    assert produce(env.sasl("alice"), T_SECRET).responses[0].partition_responses[0] \
        .error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert produce(env.sasl("admin"), "sec-pre-x").responses[0].partition_responses[0] \
        .error_code == 0


# --- Fetch, ListOffsets, OffsetForLeaderEpoch --------------------------------------------------

@case
def fetch_needs_read(env):
    answer = fetch(env.anonymous(), fetch_topics(T_DESC) + fetch_topics(T_SECRET))
    got = {r.topic: (r.partitions[0].error_code, bytes(r.partitions[0].records or b""),
                     r.partitions[0].high_watermark) for r in answer.responses}
    assert got == {T_DESC: (E.TOPIC_AUTHORIZATION_FAILED, b"", -1),
                   T_SECRET: (E.TOPIC_AUTHORIZATION_FAILED, b"", -1)}
    no_leak(answer, b"secret-")


@case
def fetch_of_unknown_topic_is_not_told_apart(env):
    name = unique("sec-nowhere")
    answer = fetch(env.anonymous(), fetch_topics(name))
    assert answer.responses[0].partitions[0].error_code == E.TOPIC_AUTHORIZATION_FAILED


@case
def fetch_by_topic_id_needs_read(env):
    topics = fetch_topics(T_SECRET)
    topics[0] = {"topic_id": env.secret_id, "partitions": topics[0]["partitions"]}
    answer = fetch(env.anonymous(), topics, version=13)
    assert answer.responses[0].partitions[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    no_leak(answer, b"secret-")


@case
def fetch_deny_from_this_host_wins(env):
    raw = env.anonymous()
    answer = fetch(raw, fetch_topics(T_HOSTDENY))
    assert answer.responses[0].partitions[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    # DESCRIBE (from ALL) is still allowed: the topic is described.
    assert metadata(raw, [T_HOSTDENY]).topics[0].error_code == 0


@case
def fetch_as_a_follower_needs_cluster_action(env):
    answer = fetch(env.anonymous(), fetch_topics(T_READ), replica_id=2)
    assert answer.responses[0].partitions[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    no_leak(answer, b"secret-")


@case
def list_offsets_needs_describe(env):
    answer = ask(env.anonymous(), K.LIST_OFFSETS, 7, replica_id=-1, isolation_level=0, topics=[
        {"name": t, "partitions": [{"partition_index": 0, "current_leader_epoch": -1,
                                    "timestamp": -1}]} for t in (T_SECRET, T_DESC)])
    assert {t.name: (t.partitions[0].error_code, t.partitions[0].offset)
            for t in answer.topics} == {T_SECRET: (E.TOPIC_AUTHORIZATION_FAILED, -1),
                                        T_DESC: (0, 0)}


@case
def offset_for_leader_epoch_needs_describe(env):
    answer = ask(env.anonymous(), K.OFFSET_FOR_LEADER_EPOCH, 4, replica_id=-1, topics=[
        {"topic": T_SECRET, "partitions": [{"partition": 0, "current_leader_epoch": -1,
                                            "leader_epoch": 0}]}])
    p = answer.topics[0].partitions[0]
    assert (p.error_code, p.end_offset) == (E.TOPIC_AUTHORIZATION_FAILED, -1)


# --- Metadata, DescribeTopicPartitions ----------------------------------------------------------

@case
def metadata_all_topics_leaves_undescribable_out(env):
    answer = metadata(env.anonymous())
    names = {t.name for t in answer.topics}
    assert T_DESC in names and T_READ in names
    assert not names & {T_SECRET, T_HOST, "__consumer_offsets"}


@case
def metadata_named_topic_without_describe(env):
    answer = metadata(env.anonymous(), [T_SECRET])
    t = answer.topics[0]
    assert (t.error_code, t.name, t.topic_id, t.partitions) == \
        (E.TOPIC_AUTHORIZATION_FAILED, T_SECRET, ZERO_UUID, [])


@case
def metadata_unknown_topic_is_not_told_apart(env):
    name = unique("sec-nowhere")
    for auto in (False, True):
        answer = metadata(env.anonymous(), [name], auto=auto)
        assert answer.topics[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert not env.topic_exists(name)


@case
def metadata_auto_creation_needs_create(env):
    name = unique("sec-auto-")
    raw = env.anonymous()
    assert metadata(raw, [name], auto=False).topics[0].error_code == \
        E.UNKNOWN_TOPIC_OR_PARTITION     # DESCRIBE: its absence may be told
    assert metadata(raw, [name], auto=True).topics[0].error_code == \
        E.TOPIC_AUTHORIZATION_FAILED
    assert not env.topic_exists(name)


@case
def metadata_by_topic_id_without_describe(env):
    t = metadata(env.anonymous(), ids=[env.secret_id]).topics[0]
    assert (t.error_code, t.name, t.partitions) == (E.TOPIC_AUTHORIZATION_FAILED, None, [])


@case
def metadata_authorized_operations_only_the_granted(env):
    t = metadata(env.anonymous(), [T_DESC], ops=True).topics[0]
    assert t.error_code == 0 and t.topic_authorized_operations == 1 << 8    # DESCRIBE only


@case
def describe_topic_partitions_hides_and_refuses(env):
    name = unique("sec-nowhere")
    raw = env.anonymous()
    named = ask(raw, K.DESCRIBE_TOPIC_PARTITIONS, 0, response_partition_limit=100, cursor=None,
                topics=[{"name": n} for n in (T_SECRET, T_DESC, name)])
    assert [(t.name, t.error_code, t.topic_id) for t in named.topics] == [
        (T_DESC, 0, named.topics[0].topic_id), (name, E.TOPIC_AUTHORIZATION_FAILED, ZERO_UUID),
        (T_SECRET, E.TOPIC_AUTHORIZATION_FAILED, ZERO_UUID)]
    everything = ask(raw, K.DESCRIBE_TOPIC_PARTITIONS, 0, response_partition_limit=100,
                     cursor=None, topics=[])
    assert T_SECRET not in {t.name for t in everything.topics}


# --- Groups -----------------------------------------------------------------------------------

@case
def join_group_needs_read(env):
    answer = ask(env.anonymous(), K.JOIN_GROUP, 7, group_id=G_DESC, session_timeout_ms=10000,
                 rebalance_timeout_ms=10000, member_id="", group_instance_id=None,
                 protocol_type="consumer", protocols=[{"name": "range", "metadata": b""}])
    assert (answer.error_code, answer.member_id, answer.members) == \
        (E.GROUP_AUTHORIZATION_FAILED, "", [])


@case
def sync_group_needs_read(env):
    answer = ask(env.anonymous(), K.SYNC_GROUP, 5, group_id=G_SECRET, generation_id=1,
                 member_id="m", group_instance_id=None, protocol_type="consumer",
                 protocol_name="range", assignments=[])
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED


@case
def heartbeat_needs_read(env):
    answer = ask(env.anonymous(), K.HEARTBEAT, 4, group_id=G_SECRET, generation_id=1,
                 member_id="m", group_instance_id=None)
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED


@case
def leave_group_needs_read(env):
    answer = ask(env.anonymous(), K.LEAVE_GROUP, 5, group_id=G_DESC, members=[
        {"member_id": "m", "group_instance_id": None, "reason": None}])
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED


@case
def offset_commit_needs_group_read(env):
    answer = ask(env.anonymous(), K.OFFSET_COMMIT, 8, group_id=G_SECRET,
                 generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
                 topics=[{"name": T_READ, "partitions": [{
                     "partition_index": 0, "committed_offset": 99, "committed_leader_epoch": -1,
                     "committed_metadata": ""}]}])
    assert partition_codes(answer.topics) == {T_READ: [E.GROUP_AUTHORIZATION_FAILED]}
    assert env.admin_offsets(G_SECRET)[T_READ] == [COMMITTED]


@case
def offset_commit_needs_topic_read(env):
    answer = ask(env.anonymous(), K.OFFSET_COMMIT, 8, group_id=G_READ,
                 generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
                 topics=[{"name": t, "partitions": [{
                     "partition_index": 0, "committed_offset": COMMITTED,
                     "committed_leader_epoch": -1, "committed_metadata": ""}]}
                     for t in (T_READ, T_SECRET)])
    assert partition_codes(answer.topics) == {T_READ: [0],
                                              T_SECRET: [E.TOPIC_AUTHORIZATION_FAILED]}


@case
def offset_fetch_v8_answers_each_group_on_its_own(env):
    answer = offset_fetch_v8(env.anonymous(), [(G_SECRET, [T_READ]), (G_READ, [T_READ, T_SECRET]),
                                               (G_READ, None)])
    secret, named, every = answer.groups
    assert (secret.group_id, secret.error_code, secret.topics) == \
        (G_SECRET, E.GROUP_AUTHORIZATION_FAILED, [])
    assert named.error_code == 0
    assert {t.name: [(p.committed_offset, p.error_code) for p in t.partitions]
            for t in named.topics} == {T_READ: [(COMMITTED, 0)],
                                       T_SECRET: [(-1, E.TOPIC_AUTHORIZATION_FAILED)]}
    assert [t.name for t in every.topics] == [T_READ]      # the secret topic is left out


@case
def offset_fetch_v7_group_without_describe(env):
    answer = ask(env.anonymous(), K.OFFSET_FETCH, 7, group_id=G_SECRET, topics=None,
                 require_stable=False)
    assert (answer.error_code, answer.topics) == (E.GROUP_AUTHORIZATION_FAILED, [])


@case
def offset_fetch_v7_topic_without_describe(env):
    answer = ask(env.anonymous(), K.OFFSET_FETCH, 7, group_id=G_DESC, require_stable=False,
                 topics=[{"name": T_SECRET, "partition_indexes": [0]}])
    p = answer.topics[0].partitions[0]
    assert (answer.error_code, p.error_code, p.committed_offset, p.metadata) == \
        (0, E.TOPIC_AUTHORIZATION_FAILED, -1, "")


@case
def describe_groups_each_group_on_its_own(env):
    answer = ask(env.anonymous(), K.DESCRIBE_GROUPS, 5, groups=[G_SECRET, G_DESC],
                 include_authorized_operations=True)
    by_id = {g.group_id: g for g in answer.groups}
    assert by_id[G_SECRET].error_code == E.GROUP_AUTHORIZATION_FAILED
    assert (by_id[G_SECRET].members, by_id[G_SECRET].protocol_type) == ([], "")
    assert by_id[G_DESC].error_code == 0
    assert by_id[G_DESC].authorized_operations == 1 << 8      # DESCRIBE


@case
def list_groups_lists_only_describable(env):
    listed = {g.group_id for g in ask(env.anonymous(), K.LIST_GROUPS, 4,
                                      states_filter=[]).groups}
    assert {G_DESC, G_READ} <= listed and G_SECRET not in listed


@case
def delete_groups_needs_delete(env):
    answer = ask(env.anonymous(), K.DELETE_GROUPS, 2, groups_names=[G_DESC, G_SECRET])
    assert {r.group_id: r.error_code for r in answer.results} == {
        G_DESC: E.GROUP_AUTHORIZATION_FAILED, G_SECRET: E.GROUP_AUTHORIZATION_FAILED}
    assert env.admin_offsets(G_DESC)[T_READ] == [COMMITTED]


@case
def offset_delete_needs_group_delete(env):
    answer = ask(env.anonymous(), K.OFFSET_DELETE, 0, group_id=G_READ, topics=[
        {"name": T_READ, "partitions": [{"partition_index": 0}]}])
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED
    assert env.admin_offsets(G_READ)[T_READ] == [COMMITTED]


@case
def offset_delete_needs_topic_read(env):
    answer = ask(env.anonymous(), K.OFFSET_DELETE, 0, group_id=G_DEL, topics=[
        {"name": T_SECRET, "partitions": [{"partition_index": 0}]}])
    assert answer.error_code == 0
    assert partition_codes(answer.topics) == {T_SECRET: [E.TOPIC_AUTHORIZATION_FAILED]}
    assert env.admin_offsets(G_DEL)[T_SECRET] == [COMMITTED]


@case
def consumer_group_heartbeat_needs_read(env):
    answer = ask(env.anonymous(), K.CONSUMER_GROUP_HEARTBEAT, 0, group_id=G_DESC,
                 member_id="", member_epoch=0, instance_id=None, rack_id=None,
                 rebalance_timeout_ms=10000, subscribed_topic_names=[T_READ],
                 server_assignor=None, topic_partitions=[])
    assert (answer.error_code, answer.member_id, answer.assignment) == \
        (E.GROUP_AUTHORIZATION_FAILED, None, None)


@case
def consumer_group_describe_each_group_on_its_own(env):
    answer = ask(env.anonymous(), K.CONSUMER_GROUP_DESCRIBE, 0, group_ids=[G_SECRET, G_DESC],
                 include_authorized_operations=False)
    codes = {g.group_id: g.error_code for g in answer.groups}
    assert codes[G_SECRET] == E.GROUP_AUTHORIZATION_FAILED
    assert codes[G_DESC] != E.GROUP_AUTHORIZATION_FAILED


@case
def find_coordinator_v3_group_without_describe(env):
    answer = ask(env.anonymous(), K.FIND_COORDINATOR, 3, key=G_SECRET, key_type=0)
    assert (answer.error_code, answer.node_id, answer.port) == \
        (E.GROUP_AUTHORIZATION_FAILED, -1, -1)


@case
def find_coordinator_v4_answers_each_group_key(env):
    answer = ask(env.anonymous(), K.FIND_COORDINATOR, 4, key_type=0,
                 coordinator_keys=[G_DESC, G_SECRET, G_READ])
    assert [(c.key, c.error_code) for c in answer.coordinators] == [
        (G_DESC, 0), (G_SECRET, E.GROUP_AUTHORIZATION_FAILED), (G_READ, 0)]
    assert (answer.coordinators[1].node_id, answer.coordinators[1].host) == (-1, "")
    assert answer.coordinators[0].port == env.broker.port


@case
def find_coordinator_v4_answers_each_transactional_id(env):
    answer = ask(env.anonymous(), K.FIND_COORDINATOR, 4, key_type=1,
                 coordinator_keys=[TX_SECRET, TX_DESC])
    assert [(c.key, c.error_code) for c in answer.coordinators] == [
        (TX_SECRET, E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), (TX_DESC, 0)]


# --- Transactions -----------------------------------------------------------------------------

@case
def init_producer_id_needs_transactional_id_write(env):
    raw = env.anonymous()
    for tid in (TX_SECRET, TX_DESC):      # DESCRIBE is not enough
        answer = ask(raw, K.INIT_PRODUCER_ID, 4, transactional_id=tid,
                     transaction_timeout_ms=60000, producer_id=-1, producer_epoch=-1)
        assert (answer.error_code, answer.producer_id) == \
            (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1)


@case
def idempotent_init_producer_id_needs_a_writable_topic(env):
    fields = dict(transactional_id=None, transaction_timeout_ms=60000, producer_id=-1,
                  producer_epoch=-1)
    # alice has no ACL: neither IDEMPOTENT_WRITE on the cluster nor WRITE on any topic.
    assert ask(env.sasl("alice"), K.INIT_PRODUCER_ID, 4, **fields).error_code == \
        E.CLUSTER_AUTHORIZATION_FAILED
    # ANONYMOUS may WRITE some topics (KIP-679): allowed.
    assert ask(env.anonymous(), K.INIT_PRODUCER_ID, 4, **fields).error_code == 0


@case
def add_partitions_to_txn_needs_transactional_id_write(env):
    answer = ask(env.anonymous(), K.ADD_PARTITIONS_TO_TXN, 3,
                 v3_and_below_transactional_id=TX_SECRET, v3_and_below_producer_id=1,
                 v3_and_below_producer_epoch=0,
                 v3_and_below_topics=[{"name": T_WRITE, "partitions": [0]}])
    assert partition_codes(answer.results_by_topic_v3_and_below, "results_by_partition",
                           code="partition_error_code") == \
        {T_WRITE: [E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED]}


@case
def add_partitions_to_txn_needs_topic_write(env):
    raw = env.anonymous()
    init = ask(raw, K.INIT_PRODUCER_ID, 4, transactional_id=TX_WRITE,
               transaction_timeout_ms=60000, producer_id=-1, producer_epoch=-1)
    assert init.error_code == 0
    answer = ask(raw, K.ADD_PARTITIONS_TO_TXN, 3, v3_and_below_transactional_id=TX_WRITE,
                 v3_and_below_producer_id=init.producer_id,
                 v3_and_below_producer_epoch=init.producer_epoch,
                 v3_and_below_topics=[{"name": t, "partitions": [0]}
                                      for t in (T_WRITE, T_SECRET)])
    assert partition_codes(answer.results_by_topic_v3_and_below, "results_by_partition",
                           code="partition_error_code") == \
        {T_WRITE: [E.OPERATION_NOT_ATTEMPTED], T_SECRET: [E.TOPIC_AUTHORIZATION_FAILED]}


@case
def add_partitions_to_txn_v4_is_for_brokers(env):
    answer = ask(env.anonymous(), K.ADD_PARTITIONS_TO_TXN, 4, transactions=[
        {"transactional_id": TX_WRITE, "producer_id": 1, "producer_epoch": 0,
         "verify_only": True, "topics": [{"name": T_WRITE, "partitions": [0]}]}])
    assert answer.error_code == E.CLUSTER_AUTHORIZATION_FAILED


@case
def add_offsets_to_txn_needs_transactional_id_write(env):
    answer = ask(env.anonymous(), K.ADD_OFFSETS_TO_TXN, 3, transactional_id=TX_DESC,
                 producer_id=1, producer_epoch=0, group_id=G_READ)
    assert answer.error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


@case
def add_offsets_to_txn_needs_group_read(env):
    answer = ask(env.anonymous(), K.ADD_OFFSETS_TO_TXN, 3, transactional_id=TX_WRITE,
                 producer_id=1, producer_epoch=0, group_id=G_DESC)
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED


def txn_commit(raw, tid, group, topics):
    return ask(raw, K.TXN_OFFSET_COMMIT, 3, transactional_id=tid, group_id=group,
               producer_id=1, producer_epoch=0, generation_id=-1, member_id="",
               group_instance_id=None, topics=[{"name": t, "partitions": [{
                   "partition_index": 0, "committed_offset": 1, "committed_leader_epoch": -1,
                   "committed_metadata": ""}]} for t in topics])


@case
def txn_offset_commit_needs_transactional_id_write(env):
    answer = txn_commit(env.anonymous(), TX_SECRET, G_READ, [T_READ])
    assert partition_codes(answer.topics) == {T_READ: [E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED]}


@case
def txn_offset_commit_needs_group_read(env):
    answer = txn_commit(env.anonymous(), TX_WRITE, G_SECRET, [T_READ])
    assert partition_codes(answer.topics) == {T_READ: [E.GROUP_AUTHORIZATION_FAILED]}
    assert env.admin_offsets(G_SECRET)[T_READ] == [COMMITTED]


@case
def txn_offset_commit_needs_topic_read(env):
    answer = txn_commit(env.anonymous(), TX_WRITE, G_READ, [T_SECRET])
    assert partition_codes(answer.topics) == {T_SECRET: [E.TOPIC_AUTHORIZATION_FAILED]}


@case
def end_txn_needs_transactional_id_write(env):
    answer = ask(env.anonymous(), K.END_TXN, 3, transactional_id=TX_SECRET, producer_id=1,
                 producer_epoch=0, committed=True)
    assert answer.error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


@case
def describe_transactions_each_id_on_its_own(env):
    answer = ask(env.anonymous(), K.DESCRIBE_TRANSACTIONS, 0,
                 transactional_ids=[TX_SECRET, TX_DESC])
    states = {s.transactional_id: s for s in answer.transaction_states}
    secret = states[TX_SECRET]
    assert (secret.error_code, secret.producer_id, secret.transaction_state, secret.topics) == \
        (E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 0, "", [])
    assert (states[TX_DESC].error_code, states[TX_DESC].transaction_state) == (0, "Empty")


@case
def list_transactions_lists_only_describable(env):
    listed = {s.transactional_id for s in ask(env.anonymous(), K.LIST_TRANSACTIONS, 1,
                                              state_filters=[], producer_id_filters=[],
                                              duration_filter=-1).transaction_states}
    assert listed == {TX_DESC, TX_WRITE}


@case
def write_txn_markers_needs_cluster_action(env):
    answer = ask(env.anonymous(), K.WRITE_TXN_MARKERS, 1, markers=[
        {"producer_id": 1, "producer_epoch": 0, "transaction_result": True,
         "topics": [{"name": T_WRITE, "partition_indexes": [0]}], "coordinator_epoch": 0}])
    assert [(m.producer_id, partition_codes(m.topics)) for m in answer.markers] == \
        [(1, {T_WRITE: [E.CLUSTER_AUTHORIZATION_FAILED]})]


@case
def describe_producers_needs_read(env):
    answer = ask(env.anonymous(), K.DESCRIBE_PRODUCERS, 0, topics=[
        {"name": T_DESC, "partition_indexes": [0]}])
    p = answer.topics[0].partitions[0]
    assert (p.error_code, p.active_producers) == (E.TOPIC_AUTHORIZATION_FAILED, [])


# --- Topic administration and configs ----------------------------------------------------------

@case
def create_topics_needs_create(env):
    name = unique("sec-new")
    answer = ask(env.anonymous(), K.CREATE_TOPICS, 7, timeout_ms=10000, validate_only=False,
                 topics=[{"name": name, "num_partitions": 1, "replication_factor": 1,
                          "assignments": [], "configs": []}])
    t = answer.topics[0]
    assert (t.error_code, t.topic_id, t.num_partitions) == \
        (E.TOPIC_AUTHORIZATION_FAILED, ZERO_UUID, -1)
    assert not env.topic_exists(name)


@case
def delete_topics_needs_delete(env):
    answer = ask(env.anonymous(), K.DELETE_TOPICS, 6, timeout_ms=10000, topics=[
        {"name": T_DESC, "topic_id": ZERO_UUID}])
    assert answer.responses[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert env.topic_exists(T_DESC)


@case
def create_partitions_needs_alter(env):
    answer = ask(env.anonymous(), K.CREATE_PARTITIONS, 3, timeout_ms=10000,
                 validate_only=False, topics=[{"name": T_DESC, "count": 3, "assignments": None}])
    assert answer.results[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert len(env.admin.list_topics(timeout=20).topics[T_DESC].partitions) == 1


@case
def delete_records_needs_delete(env):
    answer = ask(env.anonymous(), K.DELETE_RECORDS, 2, timeout_ms=10000, topics=[
        {"name": T_READ, "partitions": [{"partition_index": 0, "offset": 3}]}])
    p = answer.topics[0].partitions[0]
    assert (p.error_code, p.low_watermark) == (E.TOPIC_AUTHORIZATION_FAILED, -1)
    got = fetch(env.sasl("admin"), fetch_topics(T_READ)).responses[0].partitions[0]
    assert got.log_start_offset == 0


@case
def describe_configs_per_resource(env):
    answer = ask(env.anonymous(), K.DESCRIBE_CONFIGS, 4, include_synonyms=False,
                 include_documentation=False, resources=[
                     {"resource_type": 2, "resource_name": T_SECRET, "configuration_keys": None},
                     {"resource_type": 4, "resource_name": "1", "configuration_keys": None},
                     {"resource_type": 32, "resource_name": G_SECRET,
                      "configuration_keys": None}])
    assert {(r.resource_type, r.resource_name): (r.error_code, r.configs)
            for r in answer.results} == {
        (2, T_SECRET): (E.TOPIC_AUTHORIZATION_FAILED, []),
        (4, "1"): (E.CLUSTER_AUTHORIZATION_FAILED, []),
        (32, G_SECRET): (E.GROUP_AUTHORIZATION_FAILED, [])}
    no_leak(answer, "retention.ms", "log.dirs")


@case
def alter_configs_needs_alter_configs(env):
    answer = ask(env.anonymous(), K.ALTER_CONFIGS, 2, validate_only=False, resources=[
        {"resource_type": 2, "resource_name": T_DESC,
         "configs": [{"name": "retention.ms", "value": "1000"}]}])
    assert answer.responses[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    from confluent_kafka.admin import ConfigResource
    described = env.admin.describe_configs([ConfigResource("topic", T_DESC)])
    configs = next(iter(described.values())).result(timeout=20)
    assert configs["retention.ms"].value != "1000"


@case
def incremental_alter_configs_of_the_broker_needs_cluster_alter_configs(env):
    answer = ask(env.anonymous(), K.INCREMENTAL_ALTER_CONFIGS, 1, validate_only=False,
                 resources=[{"resource_type": 4, "resource_name": "", "configs": [
                     {"name": "log.retention.ms", "config_operation": 0, "value": "1000"}]},
                     {"resource_type": 32, "resource_name": G_DESC, "configs": [
                         {"name": "consumer.session.timeout.ms", "config_operation": 0,
                          "value": "50000"}]}])
    assert {r.resource_type: r.error_code for r in answer.responses} == {
        4: E.CLUSTER_AUTHORIZATION_FAILED, 32: E.GROUP_AUTHORIZATION_FAILED}


# --- ACLs, users, quotas, the cluster ---------------------------------------------------------

ANY_FILTER = dict(resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                  principal_filter=None, host_filter=None, operation=1, permission_type=1)


@case
def create_acls_needs_cluster_alter(env):
    answer = ask(env.anonymous(), K.CREATE_ACLS, 3, creations=[
        {"resource_type": 2, "resource_name": T_SECRET, "resource_pattern_type": 3,
         "principal": ANON, "host": "*", "operation": 2, "permission_type": 3}])
    assert [r.error_code for r in answer.results] == [E.CLUSTER_AUTHORIZATION_FAILED]
    assert produce(env.anonymous(), T_SECRET).responses[0].partition_responses[0].error_code \
        == E.TOPIC_AUTHORIZATION_FAILED


@case
def describe_acls_needs_cluster_describe(env):
    answer = ask(env.anonymous(), K.DESCRIBE_ACLS, 3, **ANY_FILTER)
    assert (answer.error_code, answer.resources) == (E.CLUSTER_AUTHORIZATION_FAILED, [])


@case
def delete_acls_needs_cluster_alter(env):
    answer = ask(env.anonymous(), K.DELETE_ACLS, 3, filters=[ANY_FILTER])
    assert [(r.error_code, r.matching_acls) for r in answer.filter_results] == \
        [(E.CLUSTER_AUTHORIZATION_FAILED, [])]
    assert metadata(env.anonymous(), [T_DESC]).topics[0].error_code == 0   # ACLs still there


@case
def describe_user_scram_credentials_needs_cluster_describe(env):
    answer = ask(env.anonymous(), K.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, users=None)
    assert (answer.error_code, answer.results) == (E.CLUSTER_AUTHORIZATION_FAILED, [])
    no_leak(answer, "bob", "carol")


@case
def alter_user_scram_credentials_needs_cluster_alter(env):
    answer = ask(env.anonymous(), K.ALTER_USER_SCRAM_CREDENTIALS, 0, upsertions=[],
                 deletions=[{"name": "bob", "mechanism": 1}])
    assert [(r.user, r.error_code) for r in answer.results] == \
        [("bob", E.CLUSTER_AUTHORIZATION_FAILED)]
    raw = Raw(env.broker.sasl_port)      # bob still logs in
    assert scram_login(raw, "SCRAM-SHA-256", "bob", "bob-secret").error_code == 0


@case
def describe_client_quotas_needs_cluster_describe_configs(env):
    answer = ask(env.anonymous(), K.DESCRIBE_CLIENT_QUOTAS, 1, components=[], strict=False)
    assert answer.error_code == E.CLUSTER_AUTHORIZATION_FAILED and not answer.entries


@case
def alter_client_quotas_needs_cluster_alter_configs(env):
    answer = ask(env.anonymous(), K.ALTER_CLIENT_QUOTAS, 1, validate_only=False, entries=[
        {"entity": [{"entity_type": "user", "entity_name": "alice"}],
         "ops": [{"key": "producer_byte_rate", "value": 1000.0, "remove": False}]}])
    assert [e.error_code for e in answer.entries] == [E.CLUSTER_AUTHORIZATION_FAILED]


@case
def elect_leaders_needs_cluster_alter(env):
    answer = ask(env.anonymous(), K.ELECT_LEADERS, 2, election_type=0, timeout_ms=10000,
                 topic_partitions=[{"topic": T_DESC, "partitions": [0]}])
    assert answer.error_code == E.CLUSTER_AUTHORIZATION_FAILED


@case
def alter_partition_reassignments_needs_cluster_alter(env):
    answer = ask(env.anonymous(), K.ALTER_PARTITION_REASSIGNMENTS, 0, timeout_ms=10000,
                 topics=[{"name": T_DESC, "partitions": [{"partition_index": 0,
                                                          "replicas": [1]}]}])
    assert answer.error_code == E.CLUSTER_AUTHORIZATION_FAILED


@case
def list_partition_reassignments_needs_cluster_describe(env):
    answer = ask(env.anonymous(), K.LIST_PARTITION_REASSIGNMENTS, 0, timeout_ms=10000,
                 topics=None)
    assert (answer.error_code, answer.topics) == (E.CLUSTER_AUTHORIZATION_FAILED, [])


@case
def describe_log_dirs_needs_cluster_describe(env):
    answer = ask(env.anonymous(), K.DESCRIBE_LOG_DIRS, 4, topics=None)
    assert (answer.error_code, answer.results) == (E.CLUSTER_AUTHORIZATION_FAILED, [])


# --- stock clients surface the same codes -----------------------------------------------------

@case
def confluent_consumer_of_a_group_without_read(env):
    from confluent_kafka import Consumer, KafkaError
    c = Consumer({"bootstrap.servers": env.broker.bootstrap, "group.id": G_DESC,
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe([T_READ])
        deadline, error = time.monotonic() + 20, None
        while error is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is not None:
                error = m.error()
        assert error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        c.close()


@case
def confluent_admin_denials(env):
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError
    anonymous = admin_of({"bootstrap.servers": env.broker.bootstrap})
    deleted = anonymous.delete_topics([T_DESC], operation_timeout=10)
    assert deleted[T_DESC].exception(timeout=20).args[0].code() == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    offsets = anonymous.list_consumer_group_offsets([ConsumerGroupTopicPartitions(G_SECRET)])
    assert offsets[G_SECRET].exception(timeout=20).args[0].code() == \
        KafkaError.GROUP_AUTHORIZATION_FAILED
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion
    altered = anonymous.alter_user_scram_credentials(
        [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)])
    assert altered["bob"].exception(timeout=20).args[0].code() == \
        KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert env.topic_exists(T_DESC)


@case
def kafka_python_denials(env):
    from kafka.admin import KafkaAdminClient
    from kafka.errors import (ClusterAuthorizationFailedError, GroupAuthorizationFailedError,
                              TopicAuthorizationFailedError)
    from kafka import KafkaConsumer, TopicPartition
    admin = KafkaAdminClient(bootstrap_servers=env.broker.bootstrap, request_timeout_ms=20000)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            admin.list_group_offsets(G_SECRET)
        with pytest.raises(ClusterAuthorizationFailedError):
            admin.describe_acls(_kafka_python_any_filter())
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=env.broker.bootstrap)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.end_offsets([TopicPartition(T_SECRET, 0)])
    finally:
        consumer.close()


def _kafka_python_any_filter():
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePatternFilter, ResourceType)
    return ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                     permission_type=ACLPermissionType.ANY,
                     resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                            ACLResourcePatternType.ANY))


# --- SASL ---------------------------------------------------------------------------------------

def scram_client_first(raw, mechanism: str, user: str, nonce: str = "clientnonce", gs2="n,,"):
    assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism=mechanism).error_code == 0
    return ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=f"{gs2}n={user},r={nonce}".encode())


def scram_final_message(mechanism, user, password, nonce, server_first, *, tamper=None):
    m = SCRAM_SHA_256 if mechanism == "SCRAM-SHA-256" else SCRAM_SHA_512
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    combined = attrs["r"] if tamper != "nonce" else nonce + "forged"
    without_proof = f"c=biws,r={combined}"
    auth_message = f"n={user},r={nonce},{server_first},{without_proof}".encode()
    proof = client_proof(m, password, base64.b64decode(attrs["s"]), int(attrs["i"]),
                         auth_message)
    if tamper == "proof":
        proof = bytes([proof[0] ^ 1]) + proof[1:]
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def scram_login(raw, mechanism, user, password, tamper=None):
    first = scram_client_first(raw, mechanism, user)
    if first.error_code:
        return first
    final = scram_final_message(mechanism, user, password, "clientnonce",
                                bytes(first.auth_bytes).decode(), tamper=tamper)
    return ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=final)


def failed_login(env, mechanism: str, user: str, password: str):
    """(error code, message, seconds taken) of a login that fails; the connection closes."""
    raw = Raw(env.broker.sasl_port)
    try:
        started = time.monotonic()
        if mechanism == "PLAIN":
            assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
            answer = ask(raw, K.SASL_AUTHENTICATE, 2,
                         auth_bytes=f"\0{user}\0{password}".encode())
        else:
            answer = scram_login(raw, mechanism, user, password)
        took = time.monotonic() - started
        assert raw.closed()
        return answer.error_code, answer.error_message, took
    finally:
        raw.close()


def assert_wrong_password_like_unknown_user(env, mechanism, user, password):
    wrong = failed_login(env, mechanism, user, password + "-not")
    unknown = failed_login(env, mechanism, unique("nobody"), password)
    assert wrong[:2] == unknown[:2]
    assert wrong[0] == E.SASL_AUTHENTICATION_FAILED
    assert min(wrong[2], unknown[2]) >= DELAY_MS / 1000 * 0.9
    expected = ("Authentication failed: Invalid username or password" if mechanism == "PLAIN"
                else "Authentication failed during authentication due to invalid credentials "
                     f"with SASL mechanism {mechanism}")
    assert wrong[1] == expected
    no_leak(wrong[1], user)


@case
def sasl_plain_wrong_password_like_unknown_user(env):
    assert_wrong_password_like_unknown_user(env, "PLAIN", "alice", "alice-secret")


@case
def sasl_scram_sha_256_wrong_password_like_unknown_user(env):
    assert_wrong_password_like_unknown_user(env, "SCRAM-SHA-256", *SCRAM_USERS["SCRAM-SHA-256"])


@case
def sasl_scram_sha_512_wrong_password_like_unknown_user(env):
    assert_wrong_password_like_unknown_user(env, "SCRAM-SHA-512", *SCRAM_USERS["SCRAM-SHA-512"])


@case
def sasl_scram_user_of_the_other_mechanism_is_unknown(env):
    # carol has SCRAM-SHA-512 credentials only.
    code, message, _ = failed_login(env, "SCRAM-SHA-256", "carol", "carol-secret")
    assert code == E.SASL_AUTHENTICATION_FAILED and "invalid credentials" in message


@case
def sasl_mechanism_names_are_case_sensitive(env):
    raw = Raw(env.broker.sasl_port)
    try:
        answer = ask(raw, K.SASL_HANDSHAKE, 1, mechanism="plain")
        assert answer.error_code == E.UNSUPPORTED_SASL_MECHANISM
        assert answer.mechanisms == MECHANISMS.split(",")
        assert raw.closed()
    finally:
        raw.close()


def expect_scram_failure(env, build_final, mechanism="SCRAM-SHA-256"):
    user, password = SCRAM_USERS[mechanism]
    raw = Raw(env.broker.sasl_port)
    try:
        first = scram_client_first(raw, mechanism, user)
        assert first.error_code == 0
        final = build_final(user, password, bytes(first.auth_bytes).decode())
        answer = ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=final)
        assert answer.error_code == E.SASL_AUTHENTICATION_FAILED
        assert answer.auth_bytes == b""
        assert raw.closed()
        return answer
    finally:
        raw.close()


@case
def sasl_scram_final_with_a_forged_nonce(env):
    expect_scram_failure(env, lambda u, p, sf: scram_final_message(
        "SCRAM-SHA-256", u, p, "clientnonce", sf, tamper="nonce"))


@case
def sasl_scram_final_with_a_bad_proof(env):
    answer = expect_scram_failure(env, lambda u, p, sf: scram_final_message(
        "SCRAM-SHA-512", u, p, "clientnonce", sf, tamper="proof"), "SCRAM-SHA-512")
    assert "invalid credentials" in answer.error_message


@case
def sasl_scram_final_without_a_proof(env):
    expect_scram_failure(env, lambda u, p, sf: f"c=biws,r={sf.split(',')[0][2:]}".encode())


@case
def sasl_scram_client_final_before_client_first(env):
    raw = Raw(env.broker.sasl_port)
    try:
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="SCRAM-SHA-256").error_code == 0
        answer = ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=b"c=biws,r=abc,p=AAAA")
        assert answer.error_code == E.SASL_AUTHENTICATION_FAILED
        assert raw.closed()
    finally:
        raw.close()


@case
def sasl_scram_channel_binding_is_refused(env):
    raw = Raw(env.broker.sasl_port)
    try:
        answer = scram_client_first(raw, "SCRAM-SHA-256", "bob", gs2="p=tls-unique,,")
        assert answer.error_code == E.SASL_AUTHENTICATION_FAILED
        assert raw.closed()
    finally:
        raw.close()


@case
def sasl_scram_authorization_id_of_another_user(env):
    raw = Raw(env.broker.sasl_port)
    try:
        answer = scram_client_first(raw, "SCRAM-SHA-256", "bob", gs2="n,a=admin,")
        assert answer.error_code == E.SASL_AUTHENTICATION_FAILED
        assert "authorization id that is different from username" in answer.error_message
        assert raw.closed()
    finally:
        raw.close()


@case
def sasl_scram_credentials_with_too_few_iterations_are_refused(env):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    user = unique("weak")
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(
        ScramMechanism.SCRAM_SHA_256, 1000), b"weak-secret")
    error = env.admin.alter_user_scram_credentials([upsert])[user].exception(timeout=20)
    assert error.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    assert "Too few iterations" in error.args[0].str()
    code, _, _ = failed_login(env, "SCRAM-SHA-256", user, "weak-secret")
    assert code == E.SASL_AUTHENTICATION_FAILED


@case
def sasl_plain_authorization_id_of_another_user(env):
    raw = Raw(env.broker.sasl_port)
    try:
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        answer = ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=b"admin\0alice\0alice-secret")
        assert answer.error_code == E.SASL_AUTHENTICATION_FAILED
        assert "authorization id that is different from username" in answer.error_message
        assert raw.closed()
    finally:
        raw.close()


@case
def sasl_plain_malformed_message(env):
    raw = Raw(env.broker.sasl_port)
    try:
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        answer = ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=b"alice-secret")
        assert answer.error_code == E.SASL_AUTHENTICATION_FAILED
        assert raw.closed()
    finally:
        raw.close()


@case
def sasl_second_handshake_after_success(env):
    raw = env.sasl("alice")
    try:
        # No session lifetime (connections.max.reauth.ms=0): no re-authentication; KafkaApis
        # answers a SaslHandshake on an authenticated connection ILLEGAL_SASL_STATE.
        answer = ask(raw, K.SASL_HANDSHAKE, 1, mechanism="PLAIN")
        assert answer.error_code == E.ILLEGAL_SASL_STATE
        assert metadata(raw, []).brokers       # still authenticated as alice
    finally:
        raw.close()


@case
def sasl_handshake_of_an_unsupported_version(env):
    raw = Raw(env.broker.sasl_port)
    try:
        frame = bytearray(protocol.encode_request(
            K.SASL_HANDSHAKE, 1, 1, "sec", protocol.request_class(K.SASL_HANDSHAKE)(
                mechanism="PLAIN")))
        frame[6:8] = struct.pack(">h", 9)         # the header's api version
        raw.sock.sendall(bytes(frame))
        assert raw.closed()
    finally:
        raw.close()


@case
def sasl_authenticate_on_a_failed_connection_is_never_answered(env):
    raw = Raw(env.broker.sasl_port)
    try:
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        assert ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=b"\0alice\0wrong").error_code == \
            E.SASL_AUTHENTICATION_FAILED
        try:
            raw.send(K.SASL_AUTHENTICATE, 2, auth_bytes=b"\0alice\0alice-secret")
        except OSError:
            pass
        assert raw.closed()
    finally:
        raw.close()


def oauth_failure(env, token: str) -> tuple:
    """(the server's JSON challenge, the final failure) for an OAUTHBEARER token."""
    raw = Raw(env.broker.sasl_port)
    try:
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="OAUTHBEARER").error_code == 0
        challenge = ask(raw, K.SASL_AUTHENTICATE, 2,
                        auth_bytes=f"n,,\x01auth=Bearer {token}\x01\x01".encode())
        assert challenge.error_code == 0
        failure = ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=b"\x01")
        assert failure.error_code == E.SASL_AUTHENTICATION_FAILED
        assert failure.error_message == bytes(challenge.auth_bytes).decode()
        assert raw.closed()
        return json.loads(bytes(challenge.auth_bytes)), failure
    finally:
        raw.close()


def _b64json(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "dave", "iat": now, "exp": now + 600, "scope": "kafka", **extra}


@case
def oauthbearer_token_with_a_signature_algorithm(env):
    signed = f"{_b64json({'alg': 'HS256'})}.{_b64json(claims())}.c2lnbmF0dXJl"
    assert oauth_failure(env, signed)[0] == {"status": "invalid_token"}


@case
def oauthbearer_token_without_a_subject(env):
    c = claims()
    del c["sub"]
    assert oauth_failure(env, unsecured_jwt(c))[0] == {"status": "invalid_token"}


@case
def oauthbearer_token_not_yet_valid(env):
    now = int(time.time())
    token = unsecured_jwt(claims(iat=now + 3600, exp=now + 7200))
    assert oauth_failure(env, token)[0] == {"status": "invalid_token"}


@case
def oauthbearer_token_without_expiry(env):
    c = claims()
    del c["exp"]
    assert oauth_failure(env, unsecured_jwt(c))[0] == {"status": "invalid_token"}


@case
def oauthbearer_token_of_the_wrong_scope(env):
    challenge, _ = oauth_failure(env, unsecured_jwt(claims(scope="other")))
    assert challenge == {"status": "insufficient_scope", "scope": "kafka"}


@case
def oauthbearer_token_with_the_scope_is_accepted(env):
    raw = Raw(env.broker.sasl_port)      # the control: the same claims with the scope pass
    try:
        assert ask(raw, K.SASL_HANDSHAKE, 1, mechanism="OAUTHBEARER").error_code == 0
        answer = ask(raw, K.SASL_AUTHENTICATE, 2, auth_bytes=(
            f"n,,\x01auth=Bearer {unsecured_jwt(claims())}\x01\x01").encode())
        assert answer.error_code == 0
        # dave has no ACL: authenticated, and denied like anyone else.
        assert metadata(raw, [T_SECRET]).topics[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    finally:
        raw.close()


@case
def confluent_scram_wrong_password(env):
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": f"127.0.0.1:{env.broker.sasl_port}",
                  "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                  "sasl.username": "carol", "sasl.password": "wrong", "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        p.poll(0.1)
    assert errors and "invalid credentials with SASL mechanism SCRAM-SHA-512" in errors[0].str()


@case
def kcat_plain_wrong_password(env):
    from clients import run_kcat
    r = run_kcat("-L", "-b", f"127.0.0.1:{env.broker.sasl_port}", "-m", "5",
                 "-X", "security.protocol=sasl_plaintext", "-X", "sasl.mechanisms=PLAIN",
                 "-X", "sasl.username=alice", "-X", "sasl.password=wrong")
    assert r.returncode != 0
    assert b"Authentication failed: Invalid username or password" in r.stderr + r.stdout


# --- TLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sec-certs")
    certs = make_certs(directory)
    certs["expired.pem"], certs["expired.key"] = write_expired_client(directory)
    with TlsBroker({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
                    "ssl.keystore.password": "trioka-dev", "ssl.truststore.type": "PKCS12",
                    "ssl.truststore.location": certs["truststore.p12"],
                    "ssl.truststore.password": "trioka-dev", "ssl.client.auth": "required"},
                   memory=True) as b:
        b.start()
        other = make_certs(directory / "other-ca")
        yield b, certs, other


def write_expired_client(directory) -> tuple[str, str]:
    """A client certificate signed by the broker's trusted CA that expired yesterday."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "expired.pem", directory / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def api_versions_frame() -> bytes:
    return protocol.encode_request(K.API_VERSIONS, 3, 1, "sec",
                                   protocol.request_class(K.API_VERSIONS)(
                                       client_software_name="sec", client_software_version="1"))


def tls_exchange(port: int, ca: str, cert: str | None = None, key: str | None = None) -> bytes:
    """What a Kafka ApiVersions request over TLS gets back: b"" (or an exception) when the
    broker refuses the client."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(api_versions_frame())
            return t.recv(4)


def assert_refused(fn) -> None:
    try:
        got = fn()
    except (ssl.SSLError, ConnectionError, OSError):
        return
    assert got == b"", got


def assert_serving(broker, certs) -> None:
    """The broker still answers: over TLS with the good certificate and over PLAINTEXT."""
    size = tls_exchange(broker.ssl_port, certs["ca.pem"], certs["client.pem"], certs["client.key"])
    assert len(size) == 4 and struct.unpack(">i", size)[0] > 0
    assert metadata(Raw(broker.port), []).brokers


def tls_case(fn):
    CASES[fn.__name__] = fn
    fn.needs_tls = True
    return fn


@tls_case
def tls_client_without_a_certificate(tls):
    broker, certs, _ = tls
    assert_refused(lambda: tls_exchange(broker.ssl_port, certs["ca.pem"]))
    assert_serving(broker, certs)


@tls_case
def tls_client_certificate_of_an_untrusted_ca(tls):
    broker, certs, other = tls
    assert_refused(lambda: tls_exchange(broker.ssl_port, certs["ca.pem"], other["client.pem"],
                                        other["client.key"]))
    assert_serving(broker, certs)


@tls_case
def tls_expired_client_certificate(tls):
    broker, certs, _ = tls
    assert_refused(lambda: tls_exchange(broker.ssl_port, certs["ca.pem"], certs["expired.pem"],
                                        certs["expired.key"]))
    assert_serving(broker, certs)


@tls_case
def tls_client_on_the_plaintext_port(tls):
    broker, certs, _ = tls
    assert_refused(lambda: tls_exchange(broker.port, certs["ca.pem"], certs["client.pem"],
                                        certs["client.key"]))
    assert_serving(broker, certs)


@tls_case
def plaintext_request_on_the_tls_port(tls):
    broker, certs, _ = tls
    with socket.create_connection(("127.0.0.1", broker.ssl_port), timeout=10) as s:
        s.sendall(api_versions_frame())
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    # Nothing but, at most, a TLS alert record (content type 21) before the close.
    assert got == b"" or got[0] == 21, got[:16]
    assert_serving(broker, certs)


@tls_case
def confluent_client_without_a_certificate(tls):
    from confluent_kafka import KafkaException
    broker, certs, _ = tls
    admin = admin_of({"bootstrap.servers": broker.ssl_bootstrap, "security.protocol": "SSL",
                      "ssl.ca.location": certs["ca.pem"]})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    assert_serving(broker, certs)


@pytest.mark.parametrize("name", list(CASES))
def test_negative_case(name, request):
    fn = CASES[name]
    fixture = "tls" if getattr(fn, "needs_tls", False) else "env"
    fn(request.getfixturevalue(fixture))


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60, len(CASES)
