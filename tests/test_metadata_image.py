"""The metadata image (metadata/image.py): every record type the controller writes, replayed as
Kafka replays it, from the objects and from their bytes in `__cluster_metadata`."""

import uuid

import pytest

from trioka.metadata import records as r
from trioka.metadata.image import (BrokerEndpoint, ConfigResourceType, LeaderRecoveryState,
                                   MetadataImage)
from trioka.security.acls import AclBinding
from trioka.security.sasl.scram import SCRAM_SHA_512, ScramCredential
from trioka.wire import schema

FOO = uuid.UUID("00000000-0000-4000-8000-0000000000f0")
BAR = uuid.UUID("00000000-0000-4000-8000-0000000000b0")
INC = [uuid.UUID(int=1000 + i) for i in range(5)]


def endpoint(broker_id):
    return [("PLAINTEXT", "127.0.0.1", 9090 + broker_id, 0)]


def a_cluster_history() -> list[r.MetadataRecord]:
    """Three brokers register and are unfenced, topics come and go, broker 2 fails over."""
    return [
        r.feature_level_record(r.METADATA_VERSION, r.METADATA_VERSION_LEVEL),
        r.feature_level_record("transaction.version", 2),
        r.register_broker_record(1, INC[1], 10, endpoint(1),
                                 [(r.METADATA_VERSION, 1, 16)], "rack-a"),
        r.register_broker_record(2, INC[2], 11, endpoint(2), [], "rack-b"),
        r.register_broker_record(3, INC[3], 12, endpoint(3), [], None),
        r.broker_registration_change_record(1, 10, fenced=False),
        r.unfence_broker_record(2, 11),                       # the pre-3.3 way
        r.broker_registration_change_record(3, 12, fenced=False),
        r.topic_record("foo", FOO),
        r.config_record(ConfigResourceType.TOPIC, "foo", "min.insync.replicas", "2"),
        r.config_record(ConfigResourceType.TOPIC, "foo", "retention.ms", "1000"),
        r.partition_record(FOO, 0, [1, 2, 3], [1, 2, 3], leader=1),
        r.partition_record(FOO, 1, [2, 3, 1], [2, 3, 1], leader=2),
        r.topic_record("bar", BAR),
        r.partition_record(BAR, 0, [3, 1], [3, 1], leader=3),
        # broker 2 fails: out of foo-0's ISR, foo-1 led by 3
        r.partition_change_record(FOO, 0, isr=[1, 3]),
        r.partition_change_record(FOO, 1, isr=[3, 1], leader=3),
        r.broker_registration_change_record(2, 11, fenced=True),
        r.fence_broker_record(2, 11),                         # fencing twice changes nothing
        # configs: a delete, a broker default, a broker's own
        r.config_record(ConfigResourceType.TOPIC, "foo", "retention.ms", None),
        r.config_record(ConfigResourceType.BROKER, "", "unclean.leader.election.enable", "true"),
        r.config_record(ConfigResourceType.BROKER, "1", "log.retention.ms", "5"),
        r.producer_ids_record(1, 10, 1000),
        r.producer_ids_record(3, 12, 2000),
        # bar is deleted, with its configs
        r.config_record(ConfigResourceType.TOPIC, "bar", "cleanup.policy", "compact"),
        r.remove_topic_record(BAR),
        # broker 3 shuts down, broker 1 leads foo-1
        r.broker_registration_change_record(3, 12, in_controlled_shutdown=True),
        r.partition_change_record(FOO, 0, isr=[1]),
        r.partition_change_record(FOO, 1, isr=[1], leader=1),
        r.broker_registration_change_record(3, 12, fenced=True),
        r.feature_level_record("transaction.version", 0),
        # a broker that came and went
        r.register_broker_record(4, INC[4], 40, endpoint(4), [], None),
        r.unregister_broker_record(4, 40),
        r.build(r.NO_OP_RECORD),
        # SCRAM users (AlterUserScramCredentials): alice keeps SCRAM-SHA-512 only
        r.user_scram_credential_record("alice", 1, SCRAM),
        r.user_scram_credential_record("alice", 2, SCRAM),
        r.remove_user_scram_credential_record("alice", 1),
        # ACLs (CreateAcls, DeleteAcls): bob's READ on foo stays
        r.access_control_entry_record(ACL_IDS[0], AclBinding(2, "foo", 3, "User:bob", "*", 3, 3)),
        r.access_control_entry_record(ACL_IDS[1], AclBinding(3, "g", 4, "User:bob", "*", 2, 2)),
        r.remove_access_control_entry_record(ACL_IDS[1]),
        # Client quotas (AlterClientQuotas): the default client id keeps its producer quota only
        r.client_quota_record([("client-id", None)], "producer_byte_rate", 1024.0, False),
        r.client_quota_record([("client-id", None)], "consumer_byte_rate", 2048.0, False),
        r.client_quota_record([("client-id", None)], "consumer_byte_rate", 0.0, True),
        r.client_quota_record([("user", "bob")], "consumer_byte_rate", 10.0, False),
        r.client_quota_record([("user", "bob")], "consumer_byte_rate", 0.0, True),
    ]


ACL_IDS = [uuid.UUID(int=1), uuid.UUID(int=2)]


SCRAM = ScramCredential.from_password(SCRAM_SHA_512, "alice-secret", 4096, b"salt" * 4)


def check_history(image: MetadataImage) -> None:
    assert sorted(image.brokers) == [1, 2, 3]
    one, two, three = image.brokers[1], image.brokers[2], image.brokers[3]
    assert (one.epoch, one.incarnation_id, one.rack, one.fenced) == (10, INC[1], "rack-a", False)
    assert one.listeners == {"PLAINTEXT": BrokerEndpoint("PLAINTEXT", "127.0.0.1", 9091, 0)}
    assert one.supported_features == {r.METADATA_VERSION: (1, 16)}
    assert one.active
    assert two.fenced and not two.in_controlled_shutdown and not two.active
    assert three.rack is None and three.fenced and three.in_controlled_shutdown

    assert image.acls == {ACL_IDS[0]: AclBinding(2, "foo", 3, "User:bob", "*", 3, 3)}
    assert image.topics_by_name == {"foo": FOO}
    assert image.topic("bar") is None and BAR not in image.topics
    foo0, foo1 = image.partition(FOO, 0), image.partition(FOO, 1)
    # foo-0: two ISR changes, no leader change: partition epoch 2, leader epoch 0
    assert (foo0.replicas, foo0.isr, foo0.leader) == ([1, 2, 3], [1], 1)
    assert (foo0.leader_epoch, foo0.partition_epoch) == (0, 2)
    # foo-1: two leader changes
    assert (foo1.replicas, foo1.isr, foo1.leader) == ([2, 3, 1], [1], 1)
    assert (foo1.leader_epoch, foo1.partition_epoch) == (2, 2)
    assert foo1.preferred_replica == 2 and not foo1.has_preferred_leader
    assert foo0.leader_recovery_state is LeaderRecoveryState.RECOVERED
    assert image.offline_replicas(foo0) == [2, 3]
    assert image.offline_replicas(foo0, "PLAINTEXT") == [2, 3]
    assert image.offline_replicas(foo0, "SSL") == [1, 2, 3]

    assert image.topic_configs("foo") == {"min.insync.replicas": "2"}
    assert image.topic_configs("bar") == {}
    assert image.broker_configs("") == {"unclean.leader.election.enable": "true"}
    assert image.broker_configs("1") == {"log.retention.ms": "5"}
    assert image.features == {r.METADATA_VERSION: 16}
    assert image.next_producer_id == 2000
    assert list(image.scram_credentials) == ["alice"]
    assert image.scram_credentials["alice"][2].stored_key == SCRAM.stored_key
    assert list(image.scram_credentials["alice"]) == [2]
    assert image.client_quotas == {(("client-id", None),): {"producer_byte_rate": 1024.0}}


def test_a_cluster_history_replays_to_the_image():
    image = MetadataImage()
    for offset, record in enumerate(a_cluster_history()):
        image.replay(record.record_type, record.message, offset)
    check_history(image)
    assert image.offset == len(a_cluster_history()) - 1


def test_the_records_as_written_to_the_log_replay_to_the_same_image():
    image = MetadataImage()
    for record in a_cluster_history():
        data = record.encode()
        assert data[:1] == b"\x01"                   # KRaft's frame version
        record_type, version, message = schema.decode_metadata_record(data)
        assert (record_type, version) == (record.record_type, r.VERSIONS[record.record_type])
        assert message == record.message
        image.replay(record_type, message)
    check_history(image)


def test_every_record_type_the_controller_writes_is_in_the_history():
    written = {record.record_type for record in a_cluster_history()}
    assert written == set(r.VERSIONS)


def test_a_partition_change_changes_only_the_fields_it_carries():
    """Kafka's PartitionRegistration.merge: every change bumps the partition epoch; naming a
    leader, even the same one, bumps the leader epoch; -1 is no leader."""
    image = MetadataImage()
    for record in (r.topic_record("foo", FOO),
                   r.partition_record(FOO, 0, [1, 2, 3], [1, 2], leader=1, leader_epoch=4,
                                      partition_epoch=7)):
        image.replay(record.record_type, record.message)

    def change(**fields):
        record = r.partition_change_record(FOO, 0, **fields)
        image.replay(record.record_type, record.message)
        return image.partition(FOO, 0)

    p = change(isr=[1, 2, 3])
    assert (p.isr, p.leader, p.leader_epoch, p.partition_epoch) == ([1, 2, 3], 1, 4, 8)
    p = change(leader=1)                                    # the same leader: an epoch bump
    assert (p.leader, p.leader_epoch, p.partition_epoch) == (1, 5, 9)
    p = change(leader=r.NO_LEADER)
    assert (p.leader, p.has_leader, p.leader_epoch) == (-1, False, 6)
    p = change(leader=3, isr=[3], leader_recovery_state=LeaderRecoveryState.RECOVERING)
    assert (p.leader, p.isr, p.leader_epoch, p.partition_epoch) == (3, [3], 7, 11)
    assert p.leader_recovery_state is LeaderRecoveryState.RECOVERING
    p = change(replicas=[3, 4, 5, 1, 2], adding_replicas=[4, 5], removing_replicas=[1, 2])
    assert (p.replicas, p.adding_replicas, p.removing_replicas) == ([3, 4, 5, 1, 2], [4, 5],
                                                                      [1, 2])
    assert p.is_reassigning and p.isr == [3] and p.leader_epoch == 7
    assert p.leader_recovery_state is LeaderRecoveryState.RECOVERING    # -1: unchanged
    p = change(leader_recovery_state=LeaderRecoveryState.RECOVERED)
    assert p.leader_recovery_state is LeaderRecoveryState.RECOVERED and p.partition_epoch == 13


def test_a_new_registration_replaces_the_old_one():
    image = MetadataImage()
    for record in (r.register_broker_record(1, INC[1], 5, endpoint(1), [], None),
                   r.broker_registration_change_record(1, 5, fenced=False),
                   r.register_broker_record(1, INC[2], 9, endpoint(1), [], "r")):
        image.replay(record.record_type, record.message)
    broker = image.brokers[1]
    assert (broker.epoch, broker.incarnation_id, broker.fenced, broker.rack) == (9, INC[2], True,
                                                                               "r")


@pytest.mark.parametrize("record", [
    r.fence_broker_record(1, 6),                            # not the broker's epoch
    r.unfence_broker_record(2, 5),                          # not registered
    r.broker_registration_change_record(1, 6, fenced=False),
    r.unregister_broker_record(1, 4),
    r.partition_record(BAR, 0, [1], [1], leader=1),         # no such topic
    r.partition_change_record(FOO, 1, isr=[1]),             # no such partition
    r.remove_topic_record(BAR),
    r.topic_record("foo", BAR),                             # the name is taken
], ids=lambda rec: type(rec.message).__name__)
def test_a_record_that_does_not_fit_the_image_is_refused(record):
    image = MetadataImage()
    for setup in (r.register_broker_record(1, INC[1], 5, endpoint(1), [], None),
                  r.topic_record("foo", FOO), r.partition_record(FOO, 0, [1], [1], leader=1)):
        image.replay(setup.record_type, setup.message)
    with pytest.raises(ValueError):
        image.replay(record.record_type, record.message)


def test_unregistering_removes_the_broker():
    image = MetadataImage()
    for record in (r.register_broker_record(1, INC[1], 5, endpoint(1), [], None),
                   r.unregister_broker_record(1, 5)):
        image.replay(record.record_type, record.message)
    assert image.brokers == {}


def test_records_the_image_does_not_keep_are_read_past_and_unknown_types_refused():
    image = MetadataImage()
    acl = schema.metadata_record_type("AccessControlEntryRecord")
    image.replay(acl, schema.metadata_record(acl).cls(), 3)
    assert image.offset == 3 and image.brokers == {}
    with pytest.raises(ValueError):
        image.replay(99, object())


def test_an_unknown_fencing_value_is_refused():
    image = MetadataImage()
    register = r.register_broker_record(1, INC[1], 5, endpoint(1), [], None)
    image.replay(register.record_type, register.message)
    change = r.broker_registration_change_record(1, 5)
    change.message.fenced = 7
    with pytest.raises(ValueError, match="fenced"):
        image.replay(change.record_type, change.message)
