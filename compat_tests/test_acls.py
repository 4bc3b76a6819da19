"""ACLs (security/authorizer.py) against stock clients.

A broker with Kafka's StandardAuthorizer, `super.users=User:admin`, a SASL_PLAINTEXT listener
where `admin` and `alice` log in with PLAIN, and a PLAINTEXT listener whose clients are
User:ANONYMOUS. confluent-kafka's and kafka-python's admin clients create, describe and delete
ACLs as admin; ANONYMOUS, with no ACL, is denied produce, fetch, metadata, topic creation, groups
and transactions with Kafka's codes, and allowed once ACLs name it; SASL user alice gets only
what her ACLs give. Without an authorizer, librdkafka's describe_topics/describe_cluster with
include_authorized_operations get every operation the resource supports (Kafka's answer), and
the ACL APIs answer SECURITY_DISABLED. The ACLs survive a restart.
"""

import subprocess
import sys
import time

import pytest

from clients import produce_confluent, value_records
from harness import unique, wait_for
from trioka.testing.process import BrokerProcess

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" '
        'user_admin="admin-secret" user_alice="alice-secret";')
STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
OVERRIDES = {"authorizer.class.name": STANDARD, "super.users": "User:admin",
             "sasl.enabled.mechanisms": "PLAIN",
             "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS}


class AclBroker(BrokerProcess):
    """A broker with a PLAINTEXT listener (ANONYMOUS) and a SASL_PLAINTEXT one (PLAIN users)."""

    def __init__(self, data_dir=None, *, memory=False, overrides=None):
        super().__init__(data_dir, memory=memory, overrides={**OVERRIDES, **(overrides or {})},
                         listeners=("SASL_PLAINTEXT",))

    @property
    def sasl_port(self) -> int:
        return self.listener_port("SASL_PLAINTEXT")

    def sasl(self, user: str) -> dict:
        return {"bootstrap.servers": f"127.0.0.1:{self.sasl_port}",
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                "sasl.username": user, "sasl.password": f"{user}-secret"}

    def kafka_python_sasl(self, user: str) -> dict:
        return {"bootstrap_servers": f"127.0.0.1:{self.sasl_port}",
                "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": user, "sasl_plain_password": f"{user}-secret"}


@pytest.fixture(scope="module")
def acl_broker():
    with AclBroker(memory=True) as b:
        yield b.start()


def admin_of(config: dict):
    from confluent_kafka.admin import AdminClient
    return AdminClient(config)


def binding(resource, name, principal, operation, permission="ALLOW", pattern="LITERAL",
            host="*"):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    return AclBinding(getattr(ResourceType, resource), name,
                      getattr(ResourcePatternType, pattern), principal, host,
                      getattr(AclOperation, operation), getattr(AclPermissionType, permission))


def create_acls(admin, bindings):
    for f in admin.create_acls(bindings, request_timeout=20).values():
        assert f.result(timeout=20) is None


def describe(admin, principal=None, resource="ANY", name=None, pattern="ANY"):
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    f = AclBindingFilter(getattr(ResourceType, resource), name,
                         getattr(ResourcePatternType, pattern), principal, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    return admin.describe_acls(f, request_timeout=20).result(timeout=20)


def make_topic(admin, name, partitions=1):
    from confluent_kafka.admin import NewTopic
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        assert f.result(timeout=20) is None


def produce_error(config: dict, topic: str):
    """The error of one record produced with confluent-kafka (None when it was written)."""
    from confluent_kafka import Producer
    p = Producer({**config, "message.timeout.ms": 10000, "enable.idempotence": False})
    out = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: out.append(err))
    p.flush(15)
    assert out, "no delivery report"
    return out[0]


def test_confluent_create_describe_delete_acls(acl_broker):
    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, \
        ResourcePatternType, ResourceType
    admin = admin_of(acl_broker.sasl("admin"))
    who = f"User:{unique('who')}"
    made = [binding("TOPIC", "orders", who, "READ"),
            binding("TOPIC", "orders-", who, "WRITE", pattern="PREFIXED"),
            binding("GROUP", "g1", who, "READ", permission="DENY", host="10.0.0.1")]
    create_acls(admin, made)
    found = describe(admin, principal=who)
    assert sorted(map(str, found)) == sorted(map(str, made))
    # MATCH: the bindings that apply to topic orders-eu (the prefixed one).
    matched = describe(admin, principal=who, resource="TOPIC", name="orders-eu", pattern="MATCH")
    assert [(b.name, b.resource_pattern_type.name) for b in matched] == [("orders-", "PREFIXED")]
    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY, who, None, AclOperation.ANY,
        AclPermissionType.ANY)], request_timeout=20)
    assert sorted(str(b) for f in deleted.values() for b in f.result(timeout=20)) == \
        sorted(map(str, made[:2]))
    assert [b.restype.name for b in describe(admin, principal=who)] == ["GROUP"]


def test_create_acls_refuses_invalid_binding_and_non_admins(acl_broker):
    from confluent_kafka.error import KafkaException
    admin = admin_of(acl_broker.sasl("admin"))
    bad = binding("TOPIC", "t", "User:x", "IDEMPOTENT_WRITE")   # not a topic operation
    with pytest.raises(KafkaException, match="INVALID_REQUEST|not supported"):
        create_acls(admin, [bad])
    alice = admin_of(acl_broker.sasl("alice"))
    with pytest.raises(KafkaException, match="CLUSTER_AUTHORIZATION_FAILED|authoriz"):
        create_acls(alice, [binding("TOPIC", "t", "User:alice", "ALL")])


def test_kafka_python_create_and_describe_acls(acl_broker):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                             ResourcePatternFilter, ResourceType)
    who = f"User:{unique('kp')}"
    admin = KafkaAdminClient(**acl_broker.kafka_python_sasl("admin"), request_timeout_ms=20000)
    try:
        acl = ACL(principal=who, host="*", operation=ACLOperation.WRITE,
                  permission_type=ACLPermissionType.ALLOW,
                  resource_pattern=ResourcePattern(ResourceType.TOPIC, "kp-topic",
                                                   ACLResourcePatternType.LITERAL))
        result = admin.create_acls([acl])
        assert not result["failed"] and len(result["succeeded"]) == 1
        found, error = admin.describe_acls(ACLFilter(
            principal=who, host=None, operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                   ACLResourcePatternType.ANY)))
        assert error.errno == 0
        assert [(a.principal, a.operation, a.resource_pattern.resource_name) for a in found] == \
            [(who, ACLOperation.WRITE, "kp-topic")]
    finally:
        admin.close()


def test_anonymous_is_denied_everything_until_acls_name_it(acl_broker):
    from confluent_kafka import KafkaError
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import NewTopic
    topic, group = unique("anon"), unique("anon-group")
    admin = admin_of(acl_broker.sasl("admin"))
    make_topic(admin, topic)
    anonymous = {"bootstrap.servers": acl_broker.bootstrap}
    anonymous_admin = admin_of(anonymous)
    # Metadata: the topic is left out of an all-topics answer.
    listed = anonymous_admin.list_topics(timeout=20).topics
    assert topic not in listed
    assert topic in admin.list_topics(timeout=20).topics
    # Produce: TOPIC_AUTHORIZATION_FAILED.
    err = produce_error(anonymous, topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # CreateTopics: TOPIC_AUTHORIZATION_FAILED.
    futures = anonymous_admin.create_topics([NewTopic(unique("nope"), 1, 1)])
    for f in futures.values():
        assert f.exception(timeout=20).args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Groups: GROUP_AUTHORIZATION_FAILED on describe.
    described = anonymous_admin.describe_consumer_groups([group])
    for f in described.values():
        assert f.exception(timeout=20).args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED

    create_acls(admin, [binding("TOPIC", topic, "User:ANONYMOUS", "WRITE"),
                        binding("TOPIC", topic, "User:ANONYMOUS", "READ"),
                        binding("GROUP", group, "User:ANONYMOUS", "READ")])
    assert topic in anonymous_admin.list_topics(timeout=20).topics   # WRITE implies DESCRIBE
    records = value_records([b"a-%d" % i for i in range(5)])
    produce_confluent(acl_broker.bootstrap, topic, records, idempotent=True)
    # A group member (FindCoordinator, JoinGroup, SyncGroup, OffsetCommit: READ on the group).
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": acl_broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is None, m.error()
                got.append(m.value())
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert got == [r.value for r in records]
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    assert [tp.offset for tp in offsets[group].result(timeout=20).topic_partitions] == [5]


def test_kafka_python_denials(acl_broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import TopicAuthorizationFailedError
    topic = unique("kp-denied")
    admin = admin_of(acl_broker.sasl("admin"))
    make_topic(admin, topic)
    producer = KafkaProducer(bootstrap_servers=acl_broker.bootstrap, max_block_ms=10000,
                             retries=0, enable_idempotence=False)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, b"x").get(timeout=15)
    finally:
        producer.close(timeout=5)
    # Fetch with only DESCRIBE on the topic: the partition answers TOPIC_AUTHORIZATION_FAILED.
    create_acls(admin, [binding("TOPIC", topic, "User:ANONYMOUS", "DESCRIBE")])
    consumer = KafkaConsumer(bootstrap_servers=acl_broker.bootstrap, consumer_timeout_ms=5000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek(TopicPartition(topic, 0), 0)
        with pytest.raises(TopicAuthorizationFailedError):
            for _ in range(20):
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def test_sasl_user_gets_only_her_acls_and_deny_wins(acl_broker):
    from confluent_kafka import KafkaError
    topic = unique("alice")
    admin = admin_of(acl_broker.sasl("admin"))
    make_topic(admin, topic)
    alice = acl_broker.sasl("alice")
    assert produce_error(alice, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(admin, [binding("TOPIC", topic[:6], "User:alice", "ALL", pattern="PREFIXED")])
    assert produce_error(alice, topic) is None
    create_acls(admin, [binding("TOPIC", topic, "User:*", "WRITE", permission="DENY")])
    assert produce_error(alice, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(acl_broker.sasl("admin"), topic) is None     # a super user


def test_transactions_denied_without_transactional_id_acl(acl_broker):
    from confluent_kafka import KafkaException, Producer
    topic, txn = unique("txn"), unique("txn-id")
    admin = admin_of(acl_broker.sasl("admin"))
    make_topic(admin, topic)
    create_acls(admin, [binding("TOPIC", topic, "User:ANONYMOUS", "WRITE")])
    p = Producer({"bootstrap.servers": acl_broker.bootstrap, "transactional.id": txn})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(15)
    assert e.value.args[0].name() == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    create_acls(admin, [binding("TRANSACTIONAL_ID", txn, "User:ANONYMOUS", "WRITE")])
    p = Producer({"bootstrap.servers": acl_broker.bootstrap, "transactional.id": txn})
    p.init_transactions(15)
    p.begin_transaction()
    p.produce(topic, b"in-txn")
    p.commit_transaction(15)


def test_authorized_operations_without_an_authorizer(broker, topic_name):
    """librdkafka 0081: with no authorizer Kafka reports every supported operation."""
    from confluent_kafka import TopicCollection
    admin = admin_of({"bootstrap.servers": broker.bootstrap})
    make_topic(admin, topic_name)
    described = admin.describe_topics(TopicCollection([topic_name]),
                                      include_authorized_operations=True)
    ops = {op.name for op in described[topic_name].result(timeout=20).authorized_operations}
    assert ops == {"READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE",
                   "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=20)
    assert {op.name for op in cluster.authorized_operations} == {
        "CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE",
        "ALTER", "DESCRIBE"}
    from confluent_kafka.error import KafkaException
    with pytest.raises(KafkaException, match="SECURITY_DISABLED|No Authorizer"):
        create_acls(admin, [binding("TOPIC", "t", "User:x", "READ")])


def test_authorized_operations_with_acls(acl_broker):
    from confluent_kafka import TopicCollection
    topic = unique("ops")
    admin = admin_of(acl_broker.sasl("admin"))
    make_topic(admin, topic)
    create_acls(admin, [binding("TOPIC", topic, "User:alice", "READ")])
    alice = admin_of(acl_broker.sasl("alice"))
    described = alice.describe_topics(TopicCollection([topic]),
                                      include_authorized_operations=True)
    ops = {op.name for op in described[topic].result(timeout=20).authorized_operations}
    assert ops == {"READ", "DESCRIBE"}


def test_acls_survive_a_restart(tmp_path):
    with AclBroker(str(tmp_path / "data")) as b:
        b.start()
        admin = admin_of(b.sasl("admin"))
        made = binding("GROUP", "kept", "User:bob", "READ", pattern="PREFIXED")
        create_acls(admin, [made])
        b.restart()
        admin = admin_of(b.sasl("admin"))
        found = describe(admin, principal="User:bob")
        assert list(map(str, found)) == [str(made)]


def trioka_acl(bootstrap: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trioka", "acl", *args, "-b", bootstrap],
                          capture_output=True, timeout=60)


def test_trioka_acl_cli(acl_broker):
    """`trioka acl` (kafka-acls.sh's flags) speaks CreateAcls/DescribeAcls/DeleteAcls; what it
    adds, confluent-kafka describes. Over PLAINTEXT it is User:ANONYMOUS: refused until an ACL
    gives ANONYMOUS ALTER and DESCRIBE on the cluster."""
    admin = admin_of(acl_broker.sasl("admin"))
    who = f"User:{unique('cli')}"
    refused = trioka_acl(acl_broker.bootstrap, "add", "--allow-principal", who,
                         "--operation", "Read", "--topic", "cli-topic")
    assert refused.returncode == 1
    assert b"CLUSTER_AUTHORIZATION_FAILED" in refused.stderr
    # confluent-kafka names the cluster resource type BROKER (4).
    cluster_alter = binding("BROKER", "kafka-cluster", "User:ANONYMOUS", "ALTER")
    create_acls(admin, [cluster_alter])
    added = trioka_acl(acl_broker.bootstrap, "add", "--allow-principal", who, "--operation",
                       "Read", "--cluster")
    assert added.returncode == 1 and b"INVALID_REQUEST" in added.stderr   # READ: not a cluster's
    added = trioka_acl(acl_broker.bootstrap, "add", "--allow-principal", who, "--operation",
                       "Read", "--topic", "cli-", "--resource-pattern-type", "prefixed")
    assert added.returncode == 0, added.stderr
    assert [(b.name, b.resource_pattern_type.name, b.operation.name)
            for b in describe(admin, principal=who)] == [("cli-", "PREFIXED", "READ")]
    listed = trioka_acl(acl_broker.bootstrap, "list", "--topic", "cli-x",
                        "--resource-pattern-type", "match")
    assert listed.returncode == 0, listed.stderr     # ALTER on the cluster implies DESCRIBE
    assert f"(principal={who}, host=*, operation=READ, permissionType=ALLOW)".encode() \
        in listed.stdout
    removed = trioka_acl(acl_broker.bootstrap, "remove", "--allow-principal", who,
                         "--operation", "Read", "--topic", "cli-", "--resource-pattern-type",
                         "prefixed")
    assert removed.returncode == 0 and b"Removed 1 ACL(s)" in removed.stdout
    assert describe(admin, principal=who) == []
    from confluent_kafka.admin import AclBindingFilter
    deleted = admin.delete_acls([AclBindingFilter(*[getattr(cluster_alter, f) for f in (
        "restype", "name", "resource_pattern_type", "principal", "host", "operation",
        "permission_type")])])
    assert [str(b) for f in deleted.values() for b in f.result(timeout=20)] == [str(cluster_alter)]


def test_groups_described_listed_and_operations_per_group(acl_broker):
    """DescribeGroups answers each group on its own (GROUP_AUTHORIZATION_FAILED for a group
    without DESCRIBE) with its authorized operations; ListGroups lists only the groups the
    client may DESCRIBE (confluent-kafka and kafka-python)."""
    from confluent_kafka import KafkaError
    mine, other = unique("g-mine"), unique("g-other")
    admin = admin_of(acl_broker.sasl("admin"))
    # Both groups exist: each has a committed offset (made by the super user).
    topic = unique("g-topic")
    make_topic(admin, topic)
    from confluent_kafka import Consumer, TopicPartition
    for group in (mine, other):
        c = Consumer({**acl_broker.sasl("admin"), "group.id": group})
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        c.close()
    create_acls(admin, [binding("GROUP", mine, "User:alice", "READ")])
    alice = admin_of(acl_broker.sasl("alice"))
    described = alice.describe_consumer_groups([mine, other],
                                               include_authorized_operations=True)
    ops = {op.name for op in described[mine].result(timeout=20).authorized_operations}
    assert ops == {"READ", "DESCRIBE"}
    assert described[other].exception(timeout=20).args[0].code() == \
        KafkaError.GROUP_AUTHORIZATION_FAILED
    listed = {g.group_id for g in alice.list_consumer_groups().result(timeout=20).valid}
    assert mine in listed and other not in listed
    from kafka.admin import KafkaAdminClient
    kp = KafkaAdminClient(**acl_broker.kafka_python_sasl("alice"), request_timeout_ms=20000)
    try:
        assert {g["group_id"] for g in kp.list_groups()} & {mine, other} == {mine}
    finally:
        kp.close()


def test_acls_in_a_cluster_go_through_the_metadata_log(tmp_path):
    """In a cluster CreateAcls/DeleteAcls go to the controller (AccessControlEntryRecords,
    RemoveAccessControlEntryRecords) and every node describes the same ACLs, also a node killed
    and started again; the brokers' principal (ANONYMOUS over PLAINTEXT) is a super user so that
    followers may fetch (CLUSTER_ACTION), as Kafka's brokers must be."""
    from trioka.testing.process import ClusterProcess
    from harness import FAST_FAILURE
    overrides = {**FAST_FAILURE, "authorizer.class.name": STANDARD,
                 "super.users": "User:ANONYMOUS"}
    with ClusterProcess(3, str(tmp_path / "data"), overrides=overrides) as c:
        c.start()
        nodes = [f"127.0.0.1:{port}" for port in c.ports]
        first = admin_of({"bootstrap.servers": nodes[0]})
        made = [binding("TOPIC", "orders", "User:alice", "READ"),
                binding("GROUP", "g-", "User:bob", "ALL", pattern="PREFIXED")]
        create_acls(first, made)
        admins = [admin_of({"bootstrap.servers": n}) for n in nodes]
        for admin in admins:   # each node answers from its own image
            assert sorted(map(str, describe(admin))) == sorted(map(str, made))
        # A node killed and started again has them back from its copy of the metadata log.
        c.node(3, "kill")
        c.node(3, "start")
        wait_for(lambda: sorted(map(str, describe(admin_of({"bootstrap.servers": nodes[2]}))))
                 == sorted(map(str, made)), 30, "node 3 did not describe the ACLs again")
        from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                           ResourcePatternType, ResourceType)
        deleted = admins[1].delete_acls([AclBindingFilter(
            ResourceType.TOPIC, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
            AclPermissionType.ANY)], request_timeout=20)
        assert [str(b) for f in deleted.values() for b in f.result(timeout=20)] == [str(made[0])]
        for admin in admins:
            assert list(map(str, describe(admin))) == [str(made[1])]


def test_kafka_python_transactions_and_admin_denied(acl_broker):
    """kafka-python: a transactional producer without WRITE on its transactional id gets
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED; an admin without CREATE gets
    TOPIC_AUTHORIZATION_FAILED from CreateTopics; DescribeConfigs of a topic without
    DESCRIBE_CONFIGS (asked with confluent-kafka), TOPIC_AUTHORIZATION_FAILED."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import (TopicAuthorizationFailedError,
                              TransactionalIdAuthorizationFailedError)
    topic = unique("kp-txn")
    make_topic(admin_of(acl_broker.sasl("admin")), topic)
    producer = KafkaProducer(bootstrap_servers=acl_broker.bootstrap,
                             transactional_id=unique("kp-txn-id"), max_block_ms=15000)
    try:
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            producer.init_transactions()
    finally:
        producer.close(timeout=5)
    admin = KafkaAdminClient(bootstrap_servers=acl_broker.bootstrap, request_timeout_ms=20000)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            admin.create_topics([NewTopic(unique("kp-nope"), 1, 1)])
    finally:
        admin.close()
    # DescribeConfigs (kafka-python leaves a resource's error out of its answer: confluent-kafka).
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import ConfigResource as Resource
    anonymous = admin_of({"bootstrap.servers": acl_broker.bootstrap})
    futures = anonymous.describe_configs([Resource("topic", topic)], request_timeout=20)
    for f in futures.values():
        assert f.exception(timeout=20).args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
