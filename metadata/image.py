"""The metadata image: what every node knows of the cluster (Kafka's MetadataImage).

A KRaft node learns the cluster by replaying the records of `__cluster_metadata` in order; the
image is the result: the registered brokers, the topics and their partitions (replicas, ISR,
leader, epochs, reassignment), the configs of topics and brokers, the finalized features and the
next producer id block. Brokers answer Metadata, DescribeCluster and DescribeTopicPartitions from
it; the controller decides from it.

`replay(record_type, record)` applies one record, in the order of the log, as Kafka's
MetadataDelta / ClusterControlManager / ReplicationControlManager replay it. A record that does
not fit the image (a fence for an epoch that is not the broker's, a change of an unknown
partition) is a corrupt log: ValueError, as Kafka throws. Records of what trioka does not keep
(ACLs, SCRAM credentials, quotas, delegation tokens, controller registrations) are skipped, and
so are the markers of KIP-868 metadata transactions: trioka's controller writes none, so the
image applies records one by one.

Not kept: log directories (KIP-858) and the eligible leader replicas of KIP-966 are carried as
the records give them but nothing here reasons about them.
"""

import dataclasses
import enum
import uuid

from trioka.metadata import records as r
from trioka.security.sasl.scram import ScramCredential
from trioka.wire import schema


class LeaderRecoveryState(enum.IntEnum):
    """Whether a leader elected uncleanly is still recovering (KIP-704): RECOVERING until it
    tells the controller, with AlterPartition, that it has recovered."""
    RECOVERED = 0
    RECOVERING = 1


class ConfigResourceType(enum.IntEnum):
    """Kafka's ConfigResource.Type: what a ConfigRecord's resource name names."""
    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8
    CLIENT_METRICS = 16
    GROUP = 32


@dataclasses.dataclass(frozen=True)
class BrokerEndpoint:
    name: str
    host: str
    port: int
    security_protocol: int


@dataclasses.dataclass(frozen=True)
class BrokerRegistration:
    """A registered broker (Kafka's BrokerRegistration). `epoch` is the broker epoch the
    controller gave this incarnation; `fenced` brokers lead nothing and are in no new ISR;
    `in_controlled_shutdown` is set when it asked to shut down and stays until it registers
    again."""
    id: int
    epoch: int
    incarnation_id: uuid.UUID
    listeners: dict            # listener name -> BrokerEndpoint
    supported_features: dict   # feature name -> (min_supported_version, max_supported_version)
    rack: str | None
    fenced: bool
    in_controlled_shutdown: bool

    @property
    def active(self) -> bool:
        """Neither fenced nor shutting down: may lead and join ISRs (Kafka's isActive)."""
        return not self.fenced and not self.in_controlled_shutdown


@dataclasses.dataclass(frozen=True)
class PartitionRegistration:
    """A partition as the controller registered it (Kafka's PartitionRegistration)."""
    replicas: list
    isr: list
    removing_replicas: list
    adding_replicas: list
    leader: int
    leader_recovery_state: LeaderRecoveryState
    leader_epoch: int
    partition_epoch: int
    eligible_leader_replicas: list = dataclasses.field(default_factory=list)
    last_known_elr: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_record(cls, record) -> "PartitionRegistration":
        return cls(replicas=list(record.replicas), isr=list(record.isr),
                   removing_replicas=list(record.removing_replicas),
                   adding_replicas=list(record.adding_replicas), leader=record.leader,
                   leader_recovery_state=LeaderRecoveryState(record.leader_recovery_state),
                   leader_epoch=record.leader_epoch, partition_epoch=record.partition_epoch,
                   eligible_leader_replicas=list(record.eligible_leader_replicas or []),
                   last_known_elr=list(record.last_known_elr or []))

    def merge(self, change) -> "PartitionRegistration":
        """This partition after a PartitionChangeRecord, as Kafka's PartitionRegistration.merge:
        only the fields the record carries change; every change bumps the partition epoch, and
        a record that names a leader (even the same one) bumps the leader epoch. The controller
        uses a leader field equal to the current leader to force a leader epoch bump (a
        reassignment that removes replicas)."""
        def pick(new, old):
            return old if new is None else list(new)

        if change.leader == r.NO_LEADER_CHANGE:
            leader, leader_epoch = self.leader, self.leader_epoch
        else:
            leader, leader_epoch = change.leader, self.leader_epoch + 1
        if change.leader_recovery_state == r.LEADER_RECOVERY_STATE_NO_CHANGE:
            recovery = self.leader_recovery_state
        else:
            recovery = LeaderRecoveryState(change.leader_recovery_state)
        return PartitionRegistration(
            replicas=pick(change.replicas, self.replicas),
            isr=pick(change.isr, self.isr),
            removing_replicas=pick(change.removing_replicas, self.removing_replicas),
            adding_replicas=pick(change.adding_replicas, self.adding_replicas),
            leader=leader, leader_recovery_state=recovery, leader_epoch=leader_epoch,
            partition_epoch=self.partition_epoch + 1,
            eligible_leader_replicas=pick(change.eligible_leader_replicas,
                                          self.eligible_leader_replicas),
            last_known_elr=pick(change.last_known_elr, self.last_known_elr))

    @property
    def has_leader(self) -> bool:
        return self.leader != r.NO_LEADER

    @property
    def preferred_replica(self) -> int:
        """The first replica: the leader when the cluster is balanced."""
        return self.replicas[0] if self.replicas else r.NO_LEADER

    @property
    def has_preferred_leader(self) -> bool:
        return self.leader == self.preferred_replica

    @property
    def is_reassigning(self) -> bool:
        return bool(self.removing_replicas or self.adding_replicas)


@dataclasses.dataclass
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: dict = dataclasses.field(default_factory=dict)   # id -> PartitionRegistration


class MetadataImage:
    """The cluster as the records so far say it is. Mutated only by `replay`."""

    def __init__(self):
        self.brokers: dict[int, BrokerRegistration] = {}
        self.topics: dict[uuid.UUID, TopicImage] = {}
        self.topics_by_name: dict[str, uuid.UUID] = {}
        # (ConfigResourceType, resource name) -> {config name: value}; a broker's resource name
        # is its id as a string, "" the default of every broker.
        self.configs: dict[tuple[ConfigResourceType, str], dict[str, str]] = {}
        self.features: dict[str, int] = {}       # finalized feature levels above 0
        self.next_producer_id = -1               # -1 until a ProducerIdsRecord
        # user -> SCRAM mechanism type -> ScramCredential (security/sasl/scram.py), from
        # UserScramCredentialRecords: what SASL/SCRAM authenticates against in a cluster.
        self.scram_credentials: dict[str, dict] = {}
        # ((entity_type, entity_name), ...) sorted -> {quota key: value}, from
        # ClientQuotaRecords (security/quotas.py enforces them on every node).
        self.client_quotas: dict[tuple, dict[str, float]] = {}
        # ACL id -> AclBinding (security/acls.py), from AccessControlEntryRecords: what every
        # node's authorizer checks; `acls_version` counts their changes.
        self.acls: dict = {}
        self.acls_version = 0
        self.offset = -1                         # the log offset of the last record replayed
        # record type -> how the image applies it
        self._replayers = {
            r.REGISTER_BROKER_RECORD: self._replay_register_broker,
            r.UNREGISTER_BROKER_RECORD: self._replay_unregister_broker,
            r.FENCE_BROKER_RECORD: self._replay_fence_broker,
            r.UNFENCE_BROKER_RECORD: self._replay_unfence_broker,
            r.BROKER_REGISTRATION_CHANGE_RECORD: self._replay_broker_registration_change,
            r.TOPIC_RECORD: self._replay_topic,
            r.PARTITION_RECORD: self._replay_partition,
            r.PARTITION_CHANGE_RECORD: self._replay_partition_change,
            r.REMOVE_TOPIC_RECORD: self._replay_remove_topic,
            r.CONFIG_RECORD: self._replay_config,
            r.FEATURE_LEVEL_RECORD: self._replay_feature_level,
            r.PRODUCER_IDS_RECORD: self._replay_producer_ids,
            r.USER_SCRAM_CREDENTIAL_RECORD: self._replay_user_scram_credential,
            r.REMOVE_USER_SCRAM_CREDENTIAL_RECORD: self._replay_remove_user_scram_credential,
            r.CLIENT_QUOTA_RECORD: self._replay_client_quota,
            r.ACCESS_CONTROL_ENTRY_RECORD: self._replay_access_control_entry,
            r.REMOVE_ACCESS_CONTROL_ENTRY_RECORD: self._replay_remove_access_control_entry,
        }

    # --------------------------------------------------------------------------- reading

    def topic(self, name: str) -> TopicImage | None:
        topic_id = self.topics_by_name.get(name)
        return None if topic_id is None else self.topics[topic_id]

    def partition(self, topic_id: uuid.UUID, partition_id: int) -> PartitionRegistration | None:
        topic = self.topics.get(topic_id)
        return None if topic is None else topic.partitions.get(partition_id)

    def partitions(self):
        """(topic, partition id, registration) for every partition."""
        for topic in self.topics.values():
            for partition_id, partition in topic.partitions.items():
                yield topic, partition_id, partition

    def topic_configs(self, name: str) -> dict[str, str]:
        """The configs set on a topic (its overrides; defaults are not listed)."""
        return self.configs.get((ConfigResourceType.TOPIC, name), {})

    def broker_configs(self, resource_name: str) -> dict[str, str]:
        """The dynamic configs of a broker ("1") or of every broker ("")."""
        return self.configs.get((ConfigResourceType.BROKER, resource_name), {})

    def group_configs(self, group_id: str) -> dict[str, str]:
        """The configs set on a group (KIP-848 group configs, coordinator/group_config.py)."""
        return self.configs.get((ConfigResourceType.GROUP, group_id), {})

    def offline_replicas(self, partition: PartitionRegistration,
                         listener_name: str | None = None) -> list[int]:
        """The replicas Metadata reports offline, as KRaft brokers do: on brokers that are not
        registered, fenced, or without the listener the client came in on."""
        out = []
        for replica in partition.replicas:
            broker = self.brokers.get(replica)
            if broker is None or broker.fenced or \
                    (listener_name is not None and listener_name not in broker.listeners):
                out.append(replica)
        return out

    # --------------------------------------------------------------------------- replay

    def replay(self, record_type: int, record, offset: int | None = None) -> None:
        """Apply one record of `__cluster_metadata` (at `offset` in the log, when known)."""
        replayer = self._replayers.get(record_type)
        if replayer is not None:
            replayer(record)
        elif record_type not in SKIPPED:
            raise ValueError(f"Unable to replay a record of unknown type {record_type}")
        if offset is not None:
            self.offset = offset

    def _registered(self, broker_id: int, epoch: int, record) -> BrokerRegistration:
        broker = self.brokers.get(broker_id)
        if broker is None:
            raise ValueError(f"Unable to replay {record!r}: no broker registration found for "
                             f"that id")
        if broker.epoch != epoch:
            raise ValueError(f"Unable to replay {record!r}: no broker registration with that "
                             f"epoch found")
        return broker

    def _replay_register_broker(self, record) -> None:
        self.brokers[record.broker_id] = BrokerRegistration(
            id=record.broker_id, epoch=record.broker_epoch,
            incarnation_id=record.incarnation_id,
            listeners={e.name: BrokerEndpoint(e.name, e.host, e.port, e.security_protocol)
                       for e in record.end_points},
            supported_features={f.name: (f.min_supported_version, f.max_supported_version)
                                for f in record.features},
            rack=record.rack, fenced=record.fenced,
            in_controlled_shutdown=record.in_controlled_shutdown)

    def _replay_unregister_broker(self, record) -> None:
        self._registered(record.broker_id, record.broker_epoch, record)
        del self.brokers[record.broker_id]

    def _change_registration(self, broker_id, epoch, record, fenced, in_controlled_shutdown):
        broker = self._registered(broker_id, epoch, record)
        self.brokers[broker_id] = dataclasses.replace(
            broker, fenced=broker.fenced if fenced is None else fenced,
            in_controlled_shutdown=(broker.in_controlled_shutdown if in_controlled_shutdown is None
                                    else in_controlled_shutdown))

    def _replay_fence_broker(self, record) -> None:
        self._change_registration(record.id, record.epoch, record, True, None)

    def _replay_unfence_broker(self, record) -> None:
        self._change_registration(record.id, record.epoch, record, False, None)

    def _replay_broker_registration_change(self, record) -> None:
        if record.fenced not in r.FENCING_CHANGE:
            raise ValueError(f"Unable to replay {record!r}: unknown value for fenced field")
        if record.in_controlled_shutdown not in r.IN_CONTROLLED_SHUTDOWN_CHANGE:
            raise ValueError(f"Unable to replay {record!r}: unknown value for "
                             f"inControlledShutdown field")
        self._change_registration(record.broker_id, record.broker_epoch, record,
                                  r.FENCING_CHANGE[record.fenced],
                                  r.IN_CONTROLLED_SHUTDOWN_CHANGE[record.in_controlled_shutdown])

    def _replay_topic(self, record) -> None:
        if record.name in self.topics_by_name:
            raise ValueError(f"Found duplicate TopicRecord for {record.name}")
        self.topics_by_name[record.name] = record.topic_id
        self.topics[record.topic_id] = TopicImage(record.name, record.topic_id)

    def _topic_of(self, record) -> TopicImage:
        topic = self.topics.get(record.topic_id)
        if topic is None:
            raise ValueError(f"Tried to create partition {record.topic_id}:"
                             f"{record.partition_id}, but no topic with that ID was found.")
        return topic

    def _replay_partition(self, record) -> None:
        self._topic_of(record).partitions[record.partition_id] = \
            PartitionRegistration.from_record(record)

    def _replay_partition_change(self, record) -> None:
        topic = self._topic_of(record)
        partition = topic.partitions.get(record.partition_id)
        if partition is None:
            raise ValueError(f"Tried to create partition {record.topic_id}:"
                             f"{record.partition_id}, but no partition with that id was found.")
        topic.partitions[record.partition_id] = partition.merge(record)

    def _replay_remove_topic(self, record) -> None:
        topic = self.topics.pop(record.topic_id, None)
        if topic is None:
            raise ValueError(f"Can't find topic with ID {record.topic_id} to remove.")
        del self.topics_by_name[topic.name]
        # A topic's configs go with it (Kafka's ConfigurationsDelta on RemoveTopicRecord).
        self.configs.pop((ConfigResourceType.TOPIC, topic.name), None)

    def _replay_config(self, record) -> None:
        key = (ConfigResourceType(record.resource_type), record.resource_name)
        if record.value is None:
            configs = self.configs.get(key, {})
            configs.pop(record.name, None)
            if not configs:
                self.configs.pop(key, None)
        else:
            self.configs.setdefault(key, {})[record.name] = record.value

    def _replay_feature_level(self, record) -> None:
        if record.feature_level == 0:
            self.features.pop(record.name, None)
        else:
            self.features[record.name] = record.feature_level

    def _replay_producer_ids(self, record) -> None:
        self.next_producer_id = record.next_producer_id

    def _replay_user_scram_credential(self, record) -> None:
        self.scram_credentials.setdefault(record.name, {})[record.mechanism] = ScramCredential(
            bytes(record.salt), bytes(record.stored_key), bytes(record.server_key),
            record.iterations)

    def _replay_client_quota(self, record) -> None:
        entity = tuple(sorted((e.entity_type, e.entity_name) for e in record.entity))
        values = self.client_quotas.setdefault(entity, {})
        if record.remove:
            values.pop(record.key, None)
        else:
            values[record.key] = record.value
        if not values:
            del self.client_quotas[entity]

    def _replay_access_control_entry(self, record) -> None:
        from trioka.security.acls import AclBinding
        self.acls[record.id] = AclBinding(record.resource_type, record.resource_name,
                                          record.pattern_type, record.principal, record.host,
                                          record.operation, record.permission_type)
        self.acls_version += 1

    def _replay_remove_access_control_entry(self, record) -> None:
        if self.acls.pop(record.id, None) is None:
            raise ValueError(f"Unable to replay {record!r}: no acl with that ID found")
        self.acls_version += 1

    def _replay_remove_user_scram_credential(self, record) -> None:
        mechanisms = self.scram_credentials.get(record.name, {})
        if mechanisms.pop(record.mechanism, None) is None:
            raise ValueError(f"Unable to replay {record!r}: no such SCRAM credential")
        if not mechanisms:
            del self.scram_credentials[record.name]


# Record types the image does not keep: read past, not refused.
SKIPPED = frozenset(schema.metadata_record_type(name) for name in (
    "NoOpRecord", "DelegationTokenRecord", "RemoveDelegationTokenRecord",
    "AccessControlEntryRecord", "RemoveAccessControlEntryRecord", "ZkMigrationStateRecord",
    "BeginTransactionRecord", "EndTransactionRecord", "AbortTransactionRecord",
    "RegisterControllerRecord"))
