"""The metadata records of `__cluster_metadata`, built by name so callers never spell a class.

KRaft keeps the cluster's metadata as a log of records (KIP-631): a broker registers
(RegisterBrokerRecord), is fenced and unfenced (BrokerRegistrationChangeRecord), topics are
created (TopicRecord, then a PartitionRecord per partition), ISRs and leaders change
(PartitionChangeRecord), configs are set (ConfigRecord). The record classes are the wire codec's
(`trioka.wire.schema.metadata_record(record_type).cls`), so a record built here is what is
written to the log with `MetadataRecord.encode` and read back with `MetadataRecord.decode`.

Versions: trioka writes each record at the version Kafka writes it at metadata.version 3.7-IV1
(feature level 16), the last before KIP-858's directory assignment: no log directories in
registrations or partitions, and no eligible leader replicas (KIP-966, 4.0-IV1). Records of any
version decode and replay all the same.
"""

from typing import NamedTuple

from trioka.wire import schema

REGISTER_BROKER_RECORD = schema.metadata_record_type("RegisterBrokerRecord")
UNREGISTER_BROKER_RECORD = schema.metadata_record_type("UnregisterBrokerRecord")
TOPIC_RECORD = schema.metadata_record_type("TopicRecord")
PARTITION_RECORD = schema.metadata_record_type("PartitionRecord")
CONFIG_RECORD = schema.metadata_record_type("ConfigRecord")
PARTITION_CHANGE_RECORD = schema.metadata_record_type("PartitionChangeRecord")
FENCE_BROKER_RECORD = schema.metadata_record_type("FenceBrokerRecord")
UNFENCE_BROKER_RECORD = schema.metadata_record_type("UnfenceBrokerRecord")
REMOVE_TOPIC_RECORD = schema.metadata_record_type("RemoveTopicRecord")
FEATURE_LEVEL_RECORD = schema.metadata_record_type("FeatureLevelRecord")
PRODUCER_IDS_RECORD = schema.metadata_record_type("ProducerIdsRecord")
BROKER_REGISTRATION_CHANGE_RECORD = schema.metadata_record_type("BrokerRegistrationChangeRecord")
NO_OP_RECORD = schema.metadata_record_type("NoOpRecord")
USER_SCRAM_CREDENTIAL_RECORD = schema.metadata_record_type("UserScramCredentialRecord")
REMOVE_USER_SCRAM_CREDENTIAL_RECORD = schema.metadata_record_type(
    "RemoveUserScramCredentialRecord")
CLIENT_QUOTA_RECORD = schema.metadata_record_type("ClientQuotaRecord")
ACCESS_CONTROL_ENTRY_RECORD = schema.metadata_record_type("AccessControlEntryRecord")
REMOVE_ACCESS_CONTROL_ENTRY_RECORD = schema.metadata_record_type(
    "RemoveAccessControlEntryRecord")

# The feature level of metadata.version 3.7-IV1, whose record versions are the ones below.
METADATA_VERSION = "metadata.version"
METADATA_VERSION_LEVEL = 16

# record type -> the version trioka writes it at
VERSIONS = {
    REGISTER_BROKER_RECORD: 2,             # 1 adds InControlledShutdown, 2 IsMigratingZkBroker
    UNREGISTER_BROKER_RECORD: 0,
    TOPIC_RECORD: 0,
    PARTITION_RECORD: 0,                   # 1 adds Directories (KIP-858), 2 ELR (KIP-966)
    CONFIG_RECORD: 0,
    PARTITION_CHANGE_RECORD: 0,            # likewise
    FENCE_BROKER_RECORD: 0,
    UNFENCE_BROKER_RECORD: 0,
    REMOVE_TOPIC_RECORD: 0,
    FEATURE_LEVEL_RECORD: 0,
    PRODUCER_IDS_RECORD: 0,
    BROKER_REGISTRATION_CHANGE_RECORD: 1,  # 1 adds InControlledShutdown
    NO_OP_RECORD: 0,
    USER_SCRAM_CREDENTIAL_RECORD: 0,
    REMOVE_USER_SCRAM_CREDENTIAL_RECORD: 0,
    CLIENT_QUOTA_RECORD: 0,
    ACCESS_CONTROL_ENTRY_RECORD: 0,
    REMOVE_ACCESS_CONTROL_ENTRY_RECORD: 0,
}

# Kafka's LeaderConstants: a partition without a leader, and "the leader did not change" in a
# PartitionChangeRecord.
NO_LEADER = -1
NO_LEADER_CHANGE = -2

# BrokerRegistrationChangeRecord's Fenced field (Kafka's BrokerRegistrationFencingChange) and
# InControlledShutdown field (BrokerRegistrationInControlledShutdownChange).
FENCING_CHANGE = {1: True, 0: None, -1: False}
IN_CONTROLLED_SHUTDOWN_CHANGE = {1: True, 0: None}

# PartitionChangeRecord's LeaderRecoveryState when it did not change.
LEADER_RECOVERY_STATE_NO_CHANGE = -1


class MetadataRecord(NamedTuple):
    """One record of `__cluster_metadata` with its type and the version it is written at
    (Kafka's ApiMessageAndVersion)."""
    record_type: int
    version: int
    message: object

    def encode(self) -> bytes:
        """The record value as KRaft frames it in the log."""
        return schema.encode_metadata_record(self.record_type, self.message, self.version)

    @classmethod
    def decode(cls, data) -> "MetadataRecord":
        record_type, version, message = schema.decode_metadata_record(data)
        return cls(record_type, version, message)


def build(record_type: int, **fields) -> MetadataRecord:
    """A record of `record_type` at the version trioka writes, with the given fields."""
    message = schema.metadata_record(record_type).cls(**fields)
    return MetadataRecord(record_type, VERSIONS[record_type], message)


# ----------------------------------------------------------------------------------- brokers

def register_broker_record(broker_id: int, incarnation_id, broker_epoch: int, end_points,
                           features, rack: str | None, fenced: bool = True,
                           in_controlled_shutdown: bool = False) -> MetadataRecord:
    """A broker's registration. `end_points` are (name, host, port, security_protocol) and
    `features` (name, min_supported_version, max_supported_version) tuples."""
    cls = schema.metadata_record(REGISTER_BROKER_RECORD).cls
    return build(REGISTER_BROKER_RECORD, broker_id=broker_id, incarnation_id=incarnation_id,
                 broker_epoch=broker_epoch,
                 end_points=[cls.BrokerEndpoint(name=n, host=h, port=p, security_protocol=s)
                             for n, h, p, s in end_points],
                 features=[cls.BrokerFeature(name=n, min_supported_version=lo,
                                             max_supported_version=hi)
                           for n, lo, hi in features],
                 rack=rack, fenced=fenced, in_controlled_shutdown=in_controlled_shutdown)


def unregister_broker_record(broker_id: int, broker_epoch: int) -> MetadataRecord:
    return build(UNREGISTER_BROKER_RECORD, broker_id=broker_id, broker_epoch=broker_epoch)


def broker_registration_change_record(broker_id: int, broker_epoch: int,
                                      fenced: bool | None = None,
                                      in_controlled_shutdown: bool = False) -> MetadataRecord:
    """A change of a registration: fenced True (fence), False (unfence) or None (no change);
    in_controlled_shutdown True enters controlled shutdown (there is no way back but a new
    registration)."""
    return build(BROKER_REGISTRATION_CHANGE_RECORD, broker_id=broker_id,
                 broker_epoch=broker_epoch,
                 fenced={True: 1, None: 0, False: -1}[fenced],
                 in_controlled_shutdown=1 if in_controlled_shutdown else 0)


def fence_broker_record(broker_id: int, broker_epoch: int) -> MetadataRecord:
    """The pre-3.3 way to fence a broker (BrokerRegistrationChangeRecord replaced it)."""
    return build(FENCE_BROKER_RECORD, id=broker_id, epoch=broker_epoch)


def unfence_broker_record(broker_id: int, broker_epoch: int) -> MetadataRecord:
    return build(UNFENCE_BROKER_RECORD, id=broker_id, epoch=broker_epoch)


# ------------------------------------------------------------------------ topics, partitions

def topic_record(name: str, topic_id) -> MetadataRecord:
    return build(TOPIC_RECORD, name=name, topic_id=topic_id)


def remove_topic_record(topic_id) -> MetadataRecord:
    return build(REMOVE_TOPIC_RECORD, topic_id=topic_id)


def partition_record(topic_id, partition_id: int, replicas, isr, leader: int,
                     leader_epoch: int = 0, partition_epoch: int = 0, removing_replicas=(),
                     adding_replicas=(), leader_recovery_state: int = 0) -> MetadataRecord:
    """A partition's whole registration (a new partition, or a snapshot of one)."""
    return build(PARTITION_RECORD, partition_id=partition_id, topic_id=topic_id,
                 replicas=list(replicas), isr=list(isr),
                 removing_replicas=list(removing_replicas),
                 adding_replicas=list(adding_replicas), leader=leader,
                 leader_recovery_state=leader_recovery_state, leader_epoch=leader_epoch,
                 partition_epoch=partition_epoch)


def partition_change_record(topic_id, partition_id: int, isr=None,
                            leader: int = NO_LEADER_CHANGE, replicas=None,
                            removing_replicas=None, adding_replicas=None,
                            leader_recovery_state: int = LEADER_RECOVERY_STATE_NO_CHANGE
                            ) -> MetadataRecord:
    """A change of a partition: only the fields given change (None / NO_LEADER_CHANGE /
    LEADER_RECOVERY_STATE_NO_CHANGE: unchanged). Replaying it bumps the partition epoch, and
    the leader epoch when a leader is given (even the same one)."""
    return build(PARTITION_CHANGE_RECORD, partition_id=partition_id, topic_id=topic_id,
                 isr=None if isr is None else list(isr), leader=leader,
                 replicas=None if replicas is None else list(replicas),
                 removing_replicas=None if removing_replicas is None else list(removing_replicas),
                 adding_replicas=None if adding_replicas is None else list(adding_replicas),
                 leader_recovery_state=leader_recovery_state)


def is_no_op(change) -> bool:
    """Whether a PartitionChangeRecord changes nothing (Kafka's changeRecordIsNoOp)."""
    return (change.isr is None and change.leader == NO_LEADER_CHANGE
            and change.replicas is None and change.removing_replicas is None
            and change.adding_replicas is None
            and change.leader_recovery_state == LEADER_RECOVERY_STATE_NO_CHANGE
            and change.eligible_leader_replicas is None and change.last_known_elr is None
            and change.directories is None)


# ------------------------------------------------------------------ configs, features, ids

def config_record(resource_type: int, resource_name: str, name: str,
                  value: str | None) -> MetadataRecord:
    """Set a config of a resource (a topic, a broker, "" for the cluster's broker default);
    value None deletes it."""
    return build(CONFIG_RECORD, resource_type=resource_type, resource_name=resource_name,
                 name=name, value=value)


def user_scram_credential_record(name: str, mechanism: int, credential) -> MetadataRecord:
    """A user's SCRAM credential for one mechanism (a ScramCredential: salt, keys, iterations;
    never the password)."""
    return build(USER_SCRAM_CREDENTIAL_RECORD, name=name, mechanism=mechanism,
                 salt=credential.salt, stored_key=credential.stored_key,
                 server_key=credential.server_key, iterations=credential.iterations)


def remove_user_scram_credential_record(name: str, mechanism: int) -> MetadataRecord:
    return build(REMOVE_USER_SCRAM_CREDENTIAL_RECORD, name=name, mechanism=mechanism)


def access_control_entry_record(acl_id, b) -> MetadataRecord:
    """An ACL binding (security/acls.py's AclBinding) under its id, as Kafka's AclControlManager
    writes it."""
    return build(ACCESS_CONTROL_ENTRY_RECORD, id=acl_id, resource_type=b.resource_type,
                 resource_name=b.name, pattern_type=b.pattern_type, principal=b.principal,
                 host=b.host, operation=b.operation, permission_type=b.permission)


def remove_access_control_entry_record(acl_id) -> MetadataRecord:
    return build(REMOVE_ACCESS_CONTROL_ENTRY_RECORD, id=acl_id)


def client_quota_record(entity, key: str, value: float, remove: bool) -> MetadataRecord:
    """One quota key of a client quota entity set or removed; `entity` is (entity_type,
    entity_name) pairs, a null name the default entity (security/quotas.py)."""
    return build(CLIENT_QUOTA_RECORD, entity=[
        schema.metadata_record(CLIENT_QUOTA_RECORD).cls.EntityData(entity_type=t, entity_name=n)
        for t, n in entity], key=key, value=value, remove=remove)


def feature_level_record(name: str, feature_level: int) -> MetadataRecord:
    """Finalize a feature at a level; level 0 turns it off."""
    return build(FEATURE_LEVEL_RECORD, name=name, feature_level=feature_level)


def producer_ids_record(broker_id: int, broker_epoch: int,
                        next_producer_id: int) -> MetadataRecord:
    """A block of producer ids handed to a broker: ids below `next_producer_id` are taken."""
    return build(PRODUCER_IDS_RECORD, broker_id=broker_id, broker_epoch=broker_epoch,
                 next_producer_id=next_producer_id)
