"""Topics, partitions, their replicas, ISRs and leaders: Kafka's ReplicationControlManager.

What the controller decides about partitions, each as a method that reads the metadata image and
returns the records to write (they take effect when replayed) and the response's values, or
raises KafkaError with Kafka's code and message:

- CreateTopics (`create_topic`, one topic at a time: the handler collects the records of a
  request and refuses duplicate names in it), CreatePartitions, DeleteTopics: placement by the
  StripedReplicaPlacer over the usable brokers, or the request's manual assignment; a new
  partition's ISR is its active replicas and its leader the first of them, at leader epoch 0 and
  partition epoch 0. `default.replication.factor` and `num.partitions` stand in for -1.
- AlterPartition: the leader's ISR changes, checked as Kafka checks them (broker epoch, leader
  epoch, partition epoch, the leader itself in the ISR, new members registered, unfenced, not
  shutting down and at the epoch the leader saw). The ISR may shrink to the leader alone: what
  acks=all needs (min.insync.replicas) is the leader's business, not the controller's.
- Brokers leaving: fenced (session expired, or asked), shutting down, unregistered. Each leaves
  every ISR it is in, except the last member of one, and its leaderships move to the next
  replica in the ISR; with `unclean.leader.election.enable` (topic config, else the broker
  default) a partition left without a leader takes one from outside the ISR. A broker unfenced
  takes the lead of the leaderless partitions it can lead.
- BrokerHeartbeat (`process_broker_heartbeat`): the state table of cluster_control.py and the
  records each transition makes; `maybe_fence_one_stale_broker` for expired sessions.
- ElectLeaders PREFERRED and UNCLEAN, the auto leader rebalance
  (`maybe_balance_partition_leaders`) and unclean elections of leaderless partitions when the
  config allows (`maybe_elect_unclean_leaders`).
- AlterPartitionReassignments / ListPartitionReassignments: a reassignment first adds the new
  replicas (replicas = target + removing, with adding / removing set); it completes when the
  ISR holds every target replica (partition_change.py), dropping the removed ones.

One change per partition per call: a caller applying the records of one call before the next
never builds two records from the same stale partition. Stale brokers are fenced one at a time
for that reason, as in Kafka.

Configs (IncrementalAlterConfigs, AlterConfigs) are configuration_control.py's; the topic
configs read here (min.insync.replicas, unclean.leader.election.enable) come from its records.
Not here (yet): topic creation policies, controller mutation quotas, AllocateProducerIds, log
directories (KIP-858) and eligible leader replicas (KIP-966).
"""

import dataclasses
import enum
import uuid

from trioka.controller.cluster_control import (BROKER_STATES, BrokerControlState,
                                               BrokerHeartbeatReply, ClusterControlManager)
from trioka.controller.partition_change import Election, PartitionChangeBuilder
from trioka.controller.placement import StripedReplicaPlacer
from trioka.log.checkpoint import random_uuid
from trioka.log.config import LogConfig
from trioka.log.topics import has_collision, validate_topic_name
from trioka.metadata import records as r
from trioka.metadata.image import (ConfigResourceType, LeaderRecoveryState, MetadataImage,
                                   PartitionRegistration)
from trioka.wire.errors import ErrorCode, KafkaError

MIN_INSYNC_REPLICAS = "min.insync.replicas"
UNCLEAN_LEADER_ELECTION_ENABLE = "unclean.leader.election.enable"


class ElectionType(enum.IntEnum):
    """ElectLeaders' election_type (Kafka's ElectionType)."""
    PREFERRED = 0
    UNCLEAN = 1


@dataclasses.dataclass(frozen=True)
class CreatedTopic:
    name: str
    topic_id: uuid.UUID
    num_partitions: int
    replication_factor: int


@dataclasses.dataclass(frozen=True)
class AlterPartitionResult:
    """One partition of an AlterPartition response. `error_code` is NONE, or
    NEW_LEADER_ELECTED (FENCED_LEADER_EPOCH before v2) when the change completed a reassignment
    that moved the leadership away: the records are written all the same, and Kafka answers
    with the code alone."""
    error_code: ErrorCode
    leader_id: int
    leader_epoch: int
    isr: list
    leader_recovery_state: int
    partition_epoch: int


@dataclasses.dataclass(frozen=True)
class ElectionResult:
    topic: str
    partition_id: int
    error_code: ErrorCode
    error_message: str | None


@dataclasses.dataclass(frozen=True)
class OngoingReassignment:
    topic: str
    partition_index: int
    replicas: list
    adding_replicas: list
    removing_replicas: list


def check_replication_factor_unchanged(partition, target_size: int) -> None:
    """KIP-860: a reassignment that may not change the replication factor. A partition being
    reassigned is heading for its replicas and those being added, less those being removed."""
    if partition.is_reassigning:
        current = len((set(partition.replicas) | set(partition.adding_replicas))
                      - set(partition.removing_replicas))
    else:
        current = len(partition.replicas)
    if current != target_size:
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                         f"The replication factor is changed from {current} to {target_size}")


def check_manual_assignment(broker_ids, registered, replication_factor: int | None = None
                            ) -> None:
    """A partition's replicas as a request assigns them (CreateTopics, CreatePartitions,
    AlterPartitionReassignments): not empty, each a `registered` broker, none twice, and as
    many as the other partitions' (`replication_factor`), with Kafka's messages."""
    if not broker_ids:
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                         "The manual partition assignment includes an empty replica list.")
    previous = None
    for broker_id in sorted(broker_ids):
        if broker_id not in registered:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             f"The manual partition assignment includes broker {broker_id}, "
                             f"but no such broker is registered.")
        if broker_id == previous:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             f"The manual partition assignment includes the broker "
                             f"{previous} more than once.")
        previous = broker_id
    if replication_factor is not None and len(broker_ids) != replication_factor:
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                         f"The manual partition assignment includes a partition with "
                         f"{len(broker_ids)} replica(s), but this is not consistent with "
                         f"previous partitions, which have {replication_factor} "
                         f"replica(s).")


class ReplicationControlManager:
    """The controller's decisions about topics and partitions. Reads `image`; returns records."""

    def __init__(self, image: MetadataImage, cluster_control: ClusterControlManager, *,
                 node_id: int | None = None, default_replication_factor: int = 1,
                 default_num_partitions: int = 1, min_insync_replicas: int = 1,
                 unclean_leader_election_enable: bool = False,
                 placer: StripedReplicaPlacer | None = None, new_topic_id=random_uuid):
        self.image = image
        self.cluster = cluster_control
        self.node_id = node_id
        self.default_replication_factor = default_replication_factor
        self.default_num_partitions = default_num_partitions
        # The controller's static broker configs that topic configs fall back to.
        self.static_config = {
            MIN_INSYNC_REPLICAS: str(min_insync_replicas),
            UNCLEAN_LEADER_ELECTION_ENABLE: "true" if unclean_leader_election_enable else "false",
        }
        self.placer = placer or StripedReplicaPlacer()
        self.new_topic_id = new_topic_id

    # ------------------------------------------------------------------------------ configs

    def topic_config(self, topic_name: str, key: str) -> str:
        """A topic config as the controller resolves it: the topic's own value, else this
        controller's dynamic broker config, else the cluster-wide dynamic default, else the
        static config."""
        layers = [self.image.topic_configs(topic_name)]
        if self.node_id is not None:
            layers.append(self.image.broker_configs(str(self.node_id)))
        layers.append(self.image.broker_configs(""))
        for configs in layers:
            if key in configs:
                return configs[key]
        return self.static_config[key]

    def unclean_leader_election_enabled(self, topic_name: str) -> bool:
        return self.topic_config(topic_name, UNCLEAN_LEADER_ELECTION_ENABLE).strip().lower() \
            == "true"

    def effective_min_isr(self, topic_name: str) -> int:
        """min.insync.replicas, capped at the topic's replication factor (Kafka's
        getTopicEffectiveMinIsr)."""
        topic = self.image.topic(topic_name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        min_isr = int(self.topic_config(topic_name, MIN_INSYNC_REPLICAS))
        return min(min_isr, len(topic.partitions[0].replicas))

    # ------------------------------------------------------------------------------ topics

    def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                     assignments=None, configs=None
                     ) -> tuple[list[r.MetadataRecord], CreatedTopic]:
        """CreateTopics for one topic. `assignments` are (partition index, broker ids) pairs
        of a manual assignment (then both counts must be -1); `configs` maps config names to
        values. Records: TopicRecord, its ConfigRecords, a PartitionRecord per partition."""
        validate_topic_name(name)
        for existing in self.image.topics_by_name:
            if existing != name and has_collision(name, existing):
                raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                                 f"Topic '{name}' collides with existing topic: {existing}")
        if name in self.image.topics_by_name:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        configs = dict(configs or {})
        nulls = [key for key, value in configs.items() if value is None]
        if nulls:
            raise KafkaError(ErrorCode.INVALID_CONFIG,
                             f"Null value not supported for topic configs: {','.join(nulls)}")
        LogConfig.from_configs(configs)     # INVALID_CONFIG for an unknown name or a bad value

        if assignments:
            parts = self.manual_partitions(replication_factor, num_partitions, assignments)
        elif replication_factor < -1 or replication_factor == 0:
            raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                             "Replication factor must be larger than 0, or -1 to use the "
                             "default value.")
        elif num_partitions < -1 or num_partitions == 0:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             "Number of partitions was set to an invalid non-positive value.")
        else:
            count = self.default_num_partitions if num_partitions == -1 else num_partitions
            rf = self.default_replication_factor if replication_factor == -1 \
                else replication_factor
            parts = self.placed_partitions(count, rf)

        topic_id = self.new_topic_id()
        out = [r.topic_record(name, topic_id)]
        # ConfigRecords go after the TopicRecord and before the PartitionRecords.
        out += [r.config_record(ConfigResourceType.TOPIC, name, key, value)
                for key, value in sorted(configs.items())]
        out += [r.partition_record(topic_id, partition_id, replicas, isr, leader=isr[0])
                for partition_id, (replicas, isr) in sorted(parts.items())]
        return out, CreatedTopic(name, topic_id, len(parts), len(parts[0][0]))

    def manual_partitions(self, replication_factor, num_partitions, assignments) -> dict:
        if replication_factor != -1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "A manual partition assignment was specified, but replication "
                             "factor was not set to -1.")
        if num_partitions != -1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "A manual partition assignment was specified, but numPartitions "
                             "was not set to -1.")
        parts = {}
        rf = None
        for partition_index, broker_ids in assignments:
            if partition_index in parts:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"Found multiple manual partition assignments for partition "
                                 f"{partition_index}")
            self.validate_manual_assignment(broker_ids, rf)
            rf = len(broker_ids)
            isr = [b for b in broker_ids if self.cluster.is_active(b)]
            if not isr:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                 f"All brokers specified in the manual partition assignment for "
                                 f"partition {partition_index} are fenced or in controlled "
                                 f"shutdown.")
            parts[partition_index] = (list(broker_ids), isr)
        if sorted(parts) != list(range(len(parts))):
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             "partitions should be a consecutive 0-based integer sequence")
        return parts

    def placed_partitions(self, count: int, replication_factor: int) -> dict:
        try:
            placements = self.placer.place(count, replication_factor,
                                           self.cluster.usable_brokers())
        except KafkaError as e:
            raise KafkaError(e.code, f"Unable to replicate the partition {replication_factor} "
                                     f"time(s): {e.message}") from None
        return {partition_id: (replicas, self._initial_isr(replicas, replication_factor))
                for partition_id, replicas in enumerate(placements)}

    def _initial_isr(self, replicas: list[int], replication_factor: int) -> list[int]:
        """A new partition's ISR: its active replicas. None active (every placed broker fenced
        or shutting down) is refused as the placer refuses it."""
        isr = [b for b in replicas if self.cluster.is_active(b)]
        if not isr:
            raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR,
                             f"Unable to replicate the partition {replication_factor} time(s): "
                             f"All brokers are currently fenced or in controlled shutdown.")
        return isr

    def validate_manual_assignment(self, broker_ids, replication_factor: int | None) -> None:
        check_manual_assignment(broker_ids, self.image.brokers, replication_factor)

    def delete_topic(self, topic_id: uuid.UUID) -> list[r.MetadataRecord]:
        """DeleteTopics for one topic (by id: the handler looks names up in the image,
        UNKNOWN_TOPIC_OR_PARTITION for a name it does not find)."""
        if topic_id not in self.image.topics:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID,
                             "This server does not host this topic ID.")
        return [r.remove_topic_record(topic_id)]

    def create_partitions(self, name: str, count: int,
                          assignments=None) -> list[r.MetadataRecord]:
        """CreatePartitions for one topic: grow it to `count` partitions; `assignments` lists
        the broker ids of each new partition (else they are placed)."""
        topic = self.image.topic(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        current = len(topic.partitions)
        if count == current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"Topic already has {current} partition(s).")
        if count < current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"The topic {name} currently has {current} partition(s); {count} "
                             f"would not be an increase.")
        additional = count - current
        if assignments is not None and len(assignments) != additional:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                             f"Attempted to add {additional} additional partition(s), but only "
                             f"{len(assignments)} assignment(s) were specified.")
        replication_factor = len(topic.partitions[0].replicas)
        if assignments is not None:
            placements = []
            for i, broker_ids in enumerate(assignments):
                self.validate_manual_assignment(broker_ids, replication_factor)
                if not any(self.cluster.is_active(b) for b in broker_ids):
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                     f"All brokers specified in the manual partition assignment "
                                     f"for partition {current + i} are fenced or in controlled "
                                     f"shutdown.")
                placements.append(list(broker_ids))
        else:
            placements = self.placer.place(additional, replication_factor,
                                           self.cluster.usable_brokers())
        out = []
        for i, replicas in enumerate(placements):
            isr = self._initial_isr(replicas, replication_factor)
            out.append(r.partition_record(topic.topic_id, current + i, replicas, isr,
                                          leader=isr[0]))
        return out

    # ------------------------------------------------------------------------------ ISR

    def alter_partition(self, broker_id: int, broker_epoch: int, partition_index: int,
                        leader_epoch: int, partition_epoch: int, new_isr,
                        leader_recovery_state: int = 0, topic_id: uuid.UUID | None = None,
                        topic_name: str | None = None, version: int = 3
                        ) -> tuple[list[r.MetadataRecord], AlterPartitionResult]:
        """One partition of an AlterPartition request from its leader. `new_isr` holds
        (broker id, broker epoch) pairs, the epoch -1 where the request has none (before v3).
        Topics are named by id from v2, by name before. A STALE_BROKER_EPOCH is the whole
        request's error; the others are the partition's."""
        self.cluster.check_broker_epoch(broker_id, broker_epoch)
        topic = self.image.topics.get(topic_id) if version > 1 else self.image.topic(topic_name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID if version > 1
                             else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        partition = topic.partitions.get(partition_index)
        new_isr = [(b, e) for b, e in new_isr]
        self.validate_alter_partition(broker_id, partition, leader_epoch, partition_epoch,
                                      new_isr, leader_recovery_state, version)
        builder = PartitionChangeBuilder(partition, topic.topic_id, partition_index,
                                         self.cluster.is_active)
        if self.unclean_leader_election_enabled(topic.name):
            builder.set_election(Election.UNCLEAN)
        builder.set_target_isr([b for b, _ in new_isr])
        builder.set_target_leader_recovery_state(leader_recovery_state)
        record = builder.build()
        out = []
        error = ErrorCode.NONE
        if record is not None:
            out.append(record)
            change = record.message
            partition = partition.merge(change)
            if change.leader not in (broker_id, r.NO_LEADER_CHANGE):
                # Only a reassignment completed by this ISR moves the leadership: the records
                # stand, and the old leader learns it must refresh its metadata.
                error = ErrorCode.NEW_LEADER_ELECTED if version > 1 \
                    else ErrorCode.FENCED_LEADER_EPOCH
        return out, AlterPartitionResult(error, partition.leader, partition.leader_epoch,
                                         list(partition.isr),
                                         int(partition.leader_recovery_state),
                                         partition.partition_epoch)

    def validate_alter_partition(self, broker_id, partition: PartitionRegistration | None,
                                 leader_epoch, partition_epoch, new_isr, leader_recovery_state,
                                 version) -> None:
        if partition is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        # Epochs ahead of ours: this controller is behind; the leader should look for another.
        if leader_epoch > partition.leader_epoch or partition_epoch > partition.partition_epoch:
            raise KafkaError(ErrorCode.NOT_CONTROLLER)
        if leader_epoch < partition.leader_epoch:
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH)
        if broker_id != partition.leader:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"Broker {broker_id} is not the leader; {partition.leader} is.")
        if partition_epoch < partition.partition_epoch:
            raise KafkaError(ErrorCode.INVALID_UPDATE_VERSION)
        isr = [b for b, _ in new_isr]
        if len(set(isr)) != len(isr) or any(b < 0 or b not in partition.replicas for b in isr):
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Invalid ISR {isr}.")
        if partition.leader not in isr:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"The ISR {isr} does not include the leader.")
        if leader_recovery_state == LeaderRecoveryState.RECOVERING and len(isr) > 1:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "The ISR of a leader still recovering from an unclean election "
                             "has only the leader.")
        if partition.leader_recovery_state == LeaderRecoveryState.RECOVERED and \
                leader_recovery_state == LeaderRecoveryState.RECOVERING:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             "The leader recovery state cannot change from RECOVERED to "
                             "RECOVERING.")
        ineligible = self.ineligible_replicas(new_isr)
        if ineligible:
            raise KafkaError(ErrorCode.INELIGIBLE_REPLICA if version > 1
                             else ErrorCode.OPERATION_NOT_ATTEMPTED,
                             f"Ineligible replicas in the new ISR {isr}: "
                             f"{', '.join(ineligible)}")

    def ineligible_replicas(self, new_isr) -> list[str]:
        """Why each new ISR member may not be in it: not registered, shutting down, fenced, or
        registered again since the leader saw it (a broker epoch of -1 is not checked)."""
        out = []
        for broker_id, broker_epoch in new_isr:
            broker = self.image.brokers.get(broker_id)
            if broker is None:
                out.append(f"{broker_id} (not registered)")
            elif broker.in_controlled_shutdown:
                out.append(f"{broker_id} (shutting down)")
            elif broker.fenced:
                out.append(f"{broker_id} (fenced)")
            elif broker_epoch != -1 and broker.epoch != broker_epoch:
                out.append(f"{broker_id} (broker epoch mismatch: requested={broker_epoch} VS "
                           f"expected={broker.epoch})")
        return out

    # ------------------------------------------------------------------------------ brokers

    def partitions_with_broker_in_isr(self, broker_id: int) -> list:
        return [p for p in self.image.partitions() if broker_id in p[2].isr]

    def partitions_with_no_leader(self) -> list:
        return [p for p in self.image.partitions() if not p[2].has_leader]

    def has_leaderships(self, broker_id: int) -> bool:
        return any(p.leader == broker_id for _, _, p in self.image.partitions())

    def leader_and_isr_updates(self, partitions, broker_to_remove: int | None = None,
                               broker_to_add: int | None = None) -> list[r.MetadataRecord]:
        """The changes of `partitions` ((topic, partition id, registration) triples) when
        `broker_to_remove` leaves the ISRs and may lead nothing, and `broker_to_add` may lead
        although the image does not show it unfenced yet."""
        def acceptable(b: int) -> bool:
            return b != broker_to_remove and (b == broker_to_add or self.cluster.is_active(b))

        out = []
        for topic, partition_id, partition in list(partitions):
            builder = PartitionChangeBuilder(partition, topic.topic_id, partition_id, acceptable)
            if self.unclean_leader_election_enabled(topic.name):
                builder.set_election(Election.UNCLEAN)
            builder.set_target_isr([b for b in partition.isr if b != broker_to_remove])
            record = builder.build()
            if record is not None:
                out.append(record)
        return out

    def registration(self, broker_id: int):
        broker = self.image.brokers.get(broker_id)
        if broker is None:
            raise KafkaError(ErrorCode.BROKER_ID_NOT_REGISTERED,
                             f"Broker ID {broker_id} is not currently registered")
        return broker

    def handle_broker_fenced(self, broker_id: int) -> list[r.MetadataRecord]:
        """A broker fenced: out of every ISR, its leaderships moved, then the fence."""
        broker = self.registration(broker_id)
        out = self.leader_and_isr_updates(self.partitions_with_broker_in_isr(broker_id),
                                          broker_to_remove=broker_id)
        out.append(r.broker_registration_change_record(broker_id, broker.epoch, fenced=True))
        return out

    def handle_broker_unfenced(self, broker_id: int, broker_epoch: int) -> list[r.MetadataRecord]:
        """A broker unfenced: the unfence, then leaders for the leaderless partitions it can
        lead."""
        out = [r.broker_registration_change_record(broker_id, broker_epoch, fenced=False)]
        out += self.leader_and_isr_updates(self.partitions_with_no_leader(),
                                           broker_to_add=broker_id)
        return out

    def handle_broker_in_controlled_shutdown(self, broker_id: int,
                                             broker_epoch: int) -> list[r.MetadataRecord]:
        """A broker starting a controlled shutdown: marked so, out of every ISR, its
        leaderships moved."""
        out = []
        if not self.cluster.in_controlled_shutdown(broker_id):
            out.append(r.broker_registration_change_record(broker_id, broker_epoch,
                                                           in_controlled_shutdown=True))
        out += self.leader_and_isr_updates(self.partitions_with_broker_in_isr(broker_id),
                                           broker_to_remove=broker_id)
        return out

    def unregister_broker(self, broker_id: int) -> list[r.MetadataRecord]:
        """UnregisterBroker: out of every ISR, then gone."""
        broker = self.registration(broker_id)
        out = self.leader_and_isr_updates(self.partitions_with_broker_in_isr(broker_id),
                                          broker_to_remove=broker_id)
        out.append(r.unregister_broker_record(broker_id, broker.epoch))
        return out

    def process_broker_heartbeat(self, broker_id: int, broker_epoch: int,
                                 current_metadata_offset: int, want_fence: bool,
                                 want_shut_down: bool, next_offset: int
                                 ) -> tuple[list[r.MetadataRecord], BrokerHeartbeatReply]:
        """BrokerHeartbeat. `next_offset` is the offset the next record written to the metadata
        log gets: a broker entering controlled shutdown may go once every active broker has
        caught up with the records this heartbeat makes."""
        register_offset = self.cluster.register_broker_record_offset(broker_id)
        self.cluster.check_broker_epoch(broker_id, broker_epoch)
        heartbeats = self.cluster.heartbeats
        current, state = heartbeats.next_state(
            broker_id, want_fence, want_shut_down, current_metadata_offset, register_offset,
            lambda: self.has_leaderships(broker_id))
        out = []
        if current != state:
            if state in (BrokerControlState.FENCED, BrokerControlState.SHUTDOWN_NOW):
                out = self.handle_broker_fenced(broker_id)
            elif state is BrokerControlState.UNFENCED:
                out = self.handle_broker_unfenced(broker_id, broker_epoch)
            elif state is BrokerControlState.CONTROLLED_SHUTDOWN:
                out = self.handle_broker_in_controlled_shutdown(broker_id, broker_epoch)
        flags = BROKER_STATES[state]
        heartbeats.touch(broker_id, flags.fenced, current_metadata_offset)
        if state is BrokerControlState.CONTROLLED_SHUTDOWN:
            heartbeats.maybe_update_controlled_shutdown_offset(broker_id,
                                                               next_offset + len(out) - 1)
        return out, BrokerHeartbeatReply(
            is_caught_up=current_metadata_offset >= register_offset, is_fenced=flags.fenced,
            in_controlled_shutdown=flags.in_controlled_shutdown,
            should_shut_down=flags.should_shut_down)

    def maybe_fence_one_stale_broker(self) -> list[r.MetadataRecord]:
        """Fence the broker silent for longest if its session expired (one per call: the next
        is decided on the image after these records)."""
        broker_id = self.cluster.heartbeats.find_one_stale_broker()
        if broker_id is None:
            return []
        out = self.handle_broker_fenced(broker_id)
        self.cluster.heartbeats.fence(broker_id)
        return out

    # ------------------------------------------------------------------------------ elections

    def elect_leader(self, topic_name: str, partition_id: int,
                     election_type: ElectionType) -> list[r.MetadataRecord]:
        """ElectLeaders for one partition: PREFERRED makes the first replica the leader if it
        is in the ISR and can lead; UNCLEAN gives a leaderless partition a leader, from outside
        the ISR if need be."""
        topic = self.image.topic(topic_name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"No such topic as {topic_name}")
        partition = topic.partitions.get(partition_id)
        if partition is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"No such partition as {topic_name}-{partition_id}")
        election_type = ElectionType(election_type)
        if (election_type is ElectionType.PREFERRED and partition.has_preferred_leader) or \
                (election_type is ElectionType.UNCLEAN and partition.has_leader):
            raise KafkaError(ErrorCode.ELECTION_NOT_NEEDED)
        election = Election.PREFERRED if election_type is ElectionType.PREFERRED \
            else Election.UNCLEAN
        record = PartitionChangeBuilder(partition, topic.topic_id, partition_id,
                                        self.cluster.is_active).set_election(election).build()
        if record is None:
            raise KafkaError(ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
                             if election_type is ElectionType.PREFERRED
                             else ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE)
        return [record]

    def elect_leaders(self, election_type: ElectionType, topic_partitions=None
                      ) -> tuple[list[r.MetadataRecord], list[ElectionResult]]:
        """ElectLeaders: `topic_partitions` maps topic names to partition ids; None means every
        partition, and then partitions that need no election are left out of the results."""
        everything = topic_partitions is None
        if everything:
            topic_partitions = {t.name: sorted(t.partitions) for t in self.image.topics.values()}
        out, results = [], []
        for topic_name, partition_ids in topic_partitions.items():
            for partition_id in partition_ids:
                try:
                    out += self.elect_leader(topic_name, partition_id, election_type)
                    results.append(ElectionResult(topic_name, partition_id, ErrorCode.NONE, None))
                except KafkaError as e:
                    if everything and e.code == ErrorCode.ELECTION_NOT_NEEDED:
                        continue
                    results.append(ElectionResult(topic_name, partition_id, e.code, e.message))
        return out, results

    def maybe_balance_partition_leaders(self, max_elections: int = 1000
                                        ) -> list[r.MetadataRecord]:
        """auto.leader.rebalance.enable: a preferred election for each partition led by
        another replica than its first, where the first can lead (at most `max_elections`)."""
        out = []
        for topic, partition_id, partition in self.image.partitions():
            if len(out) >= max_elections:
                break
            if partition.has_preferred_leader:
                continue
            record = PartitionChangeBuilder(partition, topic.topic_id, partition_id,
                                            self.cluster.is_active) \
                .set_election(Election.PREFERRED).build()
            if record is not None:
                out.append(record)
        return out

    def maybe_elect_unclean_leaders(self, max_elections: int = 1000) -> list[r.MetadataRecord]:
        """Leaderless partitions of topics allowing unclean elections get a leader from outside
        the ISR (at most `max_elections`)."""
        out = []
        for topic, partition_id, _ in self.partitions_with_no_leader():
            if len(out) >= max_elections:
                break
            if not self.unclean_leader_election_enabled(topic.name):
                continue
            try:
                out += self.elect_leader(topic.name, partition_id, ElectionType.UNCLEAN)
            except KafkaError:
                continue
        return out

    # ------------------------------------------------------------------------------ reassignment

    def alter_partition_reassignment(self, topic_name: str, partition_index: int,
                                     replicas, allow_replication_factor_change: bool = True
                                     ) -> list[r.MetadataRecord]:
        """AlterPartitionReassignments for one partition: move it to `replicas`, or cancel the
        ongoing reassignment when `replicas` is None. Without
        `allow_replication_factor_change` (v1+, KIP-860) the move must keep the number of
        replicas the partition is heading for: INVALID_REPLICATION_FACTOR otherwise."""
        topic = self.image.topic(topic_name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"Unable to find a topic named {topic_name}.")
        partition = topic.partitions.get(partition_index)
        if partition is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"Unable to find partition {topic_name}:{partition_index}.")
        builder = PartitionChangeBuilder(partition, topic.topic_id, partition_index,
                                         self.cluster.is_active)
        unclean_allowed = self.unclean_leader_election_enabled(topic_name)
        if replicas is None:
            if not partition.is_reassigning:
                raise KafkaError(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS)
            # Back to the replicas before the reassignment: those being added leave.
            original = [b for b in partition.replicas if b not in partition.adding_replicas]
            isr = [b for b in partition.isr if b not in partition.adding_replicas]
            if not isr:
                # Only added replicas are in sync: going back means an unclean election.
                if not unclean_allowed:
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                     f"Unable to revert partition assignment for {topic_name}:"
                                     f"{partition_index} because it would require an unclean "
                                     f"leader election.")
                isr = [original[0]]
            if unclean_allowed:
                builder.set_election(Election.UNCLEAN)
            builder.set_target_isr(isr).set_target_replicas(original)
            builder.set_target_removing([]).set_target_adding([])
        else:
            replicas = list(replicas)
            self.validate_manual_assignment(replicas, None)
            if not allow_replication_factor_change:
                check_replication_factor_unchanged(partition, len(replicas))
            removing = sorted(set(partition.replicas) - set(replicas))
            adding = sorted(set(replicas) - set(partition.replicas))
            target = replicas + removing
            if target != partition.replicas:
                builder.set_target_replicas(target)
            if removing:
                builder.set_target_removing(removing)
            if adding:
                builder.set_target_adding(adding)
        record = builder.build()
        return [] if record is None else [record]

    def list_partition_reassignments(self, topics=None) -> list[OngoingReassignment]:
        """ListPartitionReassignments: the ongoing ones, of every partition or of the given
        {topic name: partition ids}."""
        if topics is None:
            topics = {t.name: sorted(t.partitions) for t in self.image.topics.values()}
        out = []
        for topic_name, partition_ids in topics.items():
            topic = self.image.topic(topic_name)
            if topic is None:
                continue
            for partition_id in partition_ids:
                partition = topic.partitions.get(partition_id)
                if partition is not None and partition.is_reassigning:
                    out.append(OngoingReassignment(topic_name, partition_id,
                                                   list(partition.replicas),
                                                   list(partition.adding_replicas),
                                                   list(partition.removing_replicas)))
        return out
