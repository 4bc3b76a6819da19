"""KIP-848 online migration: a group changes between the classic and the consumer protocol while
its members keep consuming (Kafka's GroupMetadataManager: validateOnlineUpgrade,
convertToConsumerGroup, validateOnlineDowngrade..., convertToClassicGroup, and the
classicGroup*ToConsumerGroup paths).

`group.consumer.migration.policy` (Kafka's ConsumerGroupMigrationPolicy, case-insensitive) says
which way a group may go:

    policy          upgrade (classic -> consumer)   downgrade (consumer -> classic)
    bidirectional   yes                             yes          (the default)
    upgrade         yes                             no
    downgrade       no                              yes
    disabled        no                              no

Upgrade. A ConsumerGroupHeartbeat that joins (member epoch 0) a group id held by a classic group
with members converts it, when the policy allows, the group uses the "consumer" protocol type and
its size is within `group.consumer.max.size`: the consumer group takes the classic group's
generation as its group epoch and assignment epoch, and each classic member becomes a *classic
member* of it, Stable at that epoch, its assignment and target both the partitions of its last
SyncGroup assignment, with its session timeout and JoinGroup protocols kept
(ConsumerGroupMemberMetadataValue.classic_member_metadata). Parked JoinGroup and SyncGroup
requests of the classic group are answered REBALANCE_IN_PROGRESS. Otherwise the heartbeat gets
GROUP_ID_NOT_FOUND ("Group <id> is not a consumer group"). The classic group's record gets a
tombstone and the consumer group's records are written; committed offsets stay.

Classic members of a consumer group keep using JoinGroup, SyncGroup, Heartbeat and LeaveGroup,
served by the consumer group (ConsumerGroup.classic_join and the methods below):

- JoinGroup is answered at once: the member (created with a new member id, after
  MEMBER_ID_REQUIRED for v4+ dynamic members) is updated from its subscription, the group epoch
  goes up when its subscription changed, and it is reconciled one step with the partitions its
  subscription says it owns. The generation is its member epoch, the protocol the first it
  named, and the leader nobody (no client assigns: the coordinator did).
- SyncGroup answers the member's current assignment in the consumer protocol's bytes, at the
  version of its subscription (ILLEGAL_GENERATION unless the generation is its member epoch,
  INCONSISTENT_GROUP_PROTOCOL for another protocol, REBALANCE_IN_PROGRESS when the group epoch
  moved on and it must rejoin).
- Heartbeat keeps its session (its JoinGroup's session timeout) and answers
  REBALANCE_IN_PROGRESS, the classic way to make it rejoin, while the group epoch is ahead of its
  member epoch, while it must revoke partitions, or once partitions it waits for are free.
- LeaveGroup removes it and the group moves to a new epoch.

Downgrade. When the last member using ConsumerGroupHeartbeat leaves or is fenced and the others
all use the classic protocol (at least one left, no more than `group.max.size`), the policy
allowing, the consumer group becomes a classic group again: Stable at the group epoch as its
generation, its members with their protocols and, as assignment, their target partitions in the
consumer protocol's bytes; then it rebalances, so its members rejoin and a leader assigns.

A classic member is fenced (and the group moves to a new epoch) when its session runs out, when
it does not rejoin within its rebalance timeout of being told to (Heartbeat or SyncGroup answered
REBALANCE_IN_PROGRESS), or does not send SyncGroup within it after its JoinGroup.

Not done: the downgrade Kafka makes when a classic static member replaces the last
consumer-protocol member (a static member that rejoins under a new member id).
"""

import enum
import logging
import uuid

from trioka.coordinator import consumer_group as cg
from trioka.coordinator.classic import ClassicGroup, JoinResult, Member, SyncResult
from trioka.coordinator.consumer_group import (ClassicMemberMetadata, ConsumerGroup,
                                               ConsumerGroupMember, MemberState)
from trioka.coordinator.group_state import GroupState
from trioka.wire import schema
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.types import DecodeError

log = logging.getLogger("trioka.coordinator")

# The newest ConsumerProtocolAssignment/Subscription version this broker writes.
MAX_CONSUMER_PROTOCOL_VERSION = 3


class MigrationPolicy(enum.Enum):
    """`group.consumer.migration.policy`; the value is the key's value (case-insensitive)."""
    DISABLED = "disabled"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    BIDIRECTIONAL = "bidirectional"

    @classmethod
    def parse(cls, text: str) -> "MigrationPolicy":
        return cls(text.strip().lower())


# policy -> (upgrade allowed, downgrade allowed): the table of the module's docstring.
ALLOWED: dict[MigrationPolicy, tuple[bool, bool]] = {
    MigrationPolicy.BIDIRECTIONAL: (True, True),
    MigrationPolicy.UPGRADE: (True, False),
    MigrationPolicy.DOWNGRADE: (False, True),
    MigrationPolicy.DISABLED: (False, False),
}


# --- the consumer protocol's embedded bytes (what classic consumers put in JoinGroup/SyncGroup) ---

def decode_subscription(metadata: bytes):
    """(version, ConsumerProtocolSubscription) of a member's protocol metadata; DecodeError."""
    return schema.decode_record("ConsumerProtocolSubscription", metadata)


def decode_assignment(data: bytes) -> list[tuple[str, list[int]]]:
    """(topic, partitions) of a ConsumerProtocolAssignment; nothing for empty bytes."""
    if not data:
        return []
    _, assignment = schema.decode_record("ConsumerProtocolAssignment", data)
    return [(tp.topic, list(tp.partitions)) for tp in assignment.assigned_partitions]


def encode_assignment(partitions: cg.Partitions, names: dict, version: int) -> bytes:
    """A member's partitions (topic id -> partitions) as ConsumerProtocolAssignment bytes at
    `version`; topics no longer known are left out."""
    cls = schema.record("ConsumerProtocolAssignment").cls
    topics = [cls.TopicPartition(topic=names[tid], partitions=sorted(ps))
              for tid, ps in partitions.items() if tid in names]
    topics.sort(key=lambda tp: tp.topic)
    return schema.encode_record("ConsumerProtocolAssignment",
                                cls(assigned_partitions=topics, user_data=None),
                                min(max(version, 0), MAX_CONSUMER_PROTOCOL_VERSION))


def _protocol_version(metadata: bytes) -> int:
    try:
        return decode_subscription(metadata)[0]
    except DecodeError:
        return 0


# --- conversions ---

def to_consumer_group(classic: ClassicGroup, topics: cg.TopicCatalog, now: float,
                      now_ms: int) -> ConsumerGroup:
    """Kafka's ConsumerGroup.fromClassicGroup: the consumer group a classic group becomes
    (nothing is changed; DecodeError when a member's subscription or assignment does not
    parse)."""
    group = ConsumerGroup(classic.group_id, now_ms)
    group.group_epoch = group.assignment_epoch = classic.generation_id
    for m in classic.members.values():
        assigned: dict = {}
        for topic, partitions in decode_assignment(m.assignment):
            if topic in topics:
                assigned.setdefault(topics[topic][0], set()).update(partitions)
        _, subscription = decode_subscription(m.metadata(classic.protocol_name))
        member = ConsumerGroupMember(m.member_id)
        member.member_epoch = member.previous_member_epoch = classic.generation_id
        member.state = MemberState.STABLE
        member.instance_id = m.group_instance_id
        member.rack_id = getattr(subscription, "rack_id", None)
        member.rebalance_timeout_ms = m.rebalance_timeout_ms
        member.client_id, member.client_host = m.client_id, m.client_host
        member.subscribed_topic_names = sorted(set(subscription.topics))
        member.classic = ClassicMemberMetadata(m.session_timeout_ms, tuple(m.protocols))
        member.session_deadline = now + m.session_timeout_ms / 1000
        group.members[m.member_id] = member
        if m.group_instance_id is not None:
            group.static_members[m.group_instance_id] = m.member_id
        group.set_assignment(member, assigned, {})
        group.target[m.member_id] = dict(member.assigned)
    group.member_topics = {mid: m.subscribed_topics(topics) for mid, m in group.members.items()}
    group.subscription_metadata = {name: topics[name] for names in group.member_topics.values()
                                   for name in names}
    group.offsets.update(classic.offsets)
    return group


def to_classic_group(group: ConsumerGroup, leaving_member_id: str, names: dict, now: float,
                     now_ms: int) -> ClassicGroup:
    """Kafka's ClassicGroup.fromConsumerGroup: the classic group a consumer group becomes when
    `leaving_member_id` goes. Stable at the group epoch; each member's assignment is its target
    partitions, in the consumer protocol at the version of its subscription."""
    classic = ClassicGroup(group.group_id, now_ms)
    classic.state = GroupState.STABLE
    classic.generation_id = group.group_epoch
    for mid, m in group.members.items():
        if mid == leaving_member_id:
            continue
        member = Member(mid, m.instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms,
                        m.classic.session_timeout_ms, cg.PROTOCOL_TYPE,
                        list(m.classic.supported_protocols))
        member.session_deadline = now + m.classic.session_timeout_ms / 1000
        classic.add_member(member)
    classic.protocol_type = cg.PROTOCOL_TYPE
    classic.protocol_name = classic.select_protocol()
    for mid, member in classic.members.items():
        member.assignment = encode_assignment(
            group.target.get(mid, {}), names,
            _protocol_version(member.metadata(classic.protocol_name)))
    classic.offsets.update(group.offsets)
    return classic


class GroupMigration:
    """The conversions between the group kinds and the classic members of consumer groups, for
    one coordinator (wired to its two protocols by GroupCoordinator)."""

    def __init__(self, config, metadata, classic_protocol, consumer_protocol):
        self.policy = MigrationPolicy.parse(config.group_consumer_migration_policy)
        self.classic_max_size = config.group_max_size
        self.metadata = metadata
        self.classic_protocol = classic_protocol
        self.consumer_protocol = consumer_protocol

    @property
    def upgrade_enabled(self) -> bool:
        return ALLOWED[self.policy][0]

    @property
    def downgrade_enabled(self) -> bool:
        return ALLOWED[self.policy][1]

    # --- upgrade ---

    def validate_online_upgrade(self, classic: ClassicGroup) -> bool:
        """Kafka's validateOnlineUpgrade."""
        if not self.upgrade_enabled:
            log.info("Cannot upgrade classic group %s to consumer group because the online "
                     "upgrade is disabled.", classic.group_id)
            return False
        if classic.protocol_type != cg.PROTOCOL_TYPE:
            log.info("Cannot upgrade classic group %s to consumer group because the group does "
                     "not use the consumer embedded protocol.", classic.group_id)
            return False
        if len(classic.members) > self.consumer_protocol.settings.max_size:
            log.info("Cannot upgrade classic group %s to consumer group because the group size "
                     "exceeds the consumer group maximum size.", classic.group_id)
            return False
        return True

    def upgrade(self, classic: ClassicGroup, topics: cg.TopicCatalog) -> tuple[ConsumerGroup,
                                                                                 list]:
        """(the consumer group a classic group with members becomes, its records) or
        GROUP_ID_NOT_FOUND. Nothing changes until `upgraded` is called."""
        if not self.validate_online_upgrade(classic):
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                             f"Group {classic.group_id} is not a consumer group")
        try:
            group = to_consumer_group(classic, topics, self.consumer_protocol.clock.monotonic(),
                                      self.consumer_protocol.clock.wall_ms())
        except DecodeError as e:
            log.warning("Cannot upgrade the classic group %s to consumer group because the "
                        "embedded consumer protocol is malformed: %s.", classic.group_id, e)
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                             f"Cannot upgrade the classic group {classic.group_id} to consumer "
                             f"group because the embedded consumer protocol is "
                             f"malformed.") from None
        return group, group.creation_records()

    def upgraded(self, classic: ClassicGroup) -> None:
        """The upgrade took place: the classic group's parked requests learn of the rebalance."""
        log.info("group %s: the classic group becomes a consumer group (online upgrade)",
                 classic.group_id)
        self.classic_protocol.complete_waiters(classic, ErrorCode.REBALANCE_IN_PROGRESS)

    # --- downgrade ---

    def validate_online_downgrade(self, group: ConsumerGroup, leaving_member_id: str) -> bool:
        """Kafka's validateOnlineDowngradeWithFencedMember."""
        if not group.all_members_use_classic_protocol_except(leaving_member_id):
            return False
        if len(group.members) <= 1:
            return False
        if not self.downgrade_enabled:
            log.info("Cannot downgrade consumer group %s to classic group because the online "
                     "downgrade is disabled.", group.group_id)
            return False
        if len(group.members) - 1 > self.classic_max_size:
            log.info("Cannot downgrade consumer group %s to classic group because its group "
                     "size is greater than classic group max size.", group.group_id)
            return False
        return True

    def maybe_downgrade(self, group: ConsumerGroup, leaving_member_id: str) -> bool:
        """When `leaving_member_id` (leaving or fenced) is the last member using the consumer
        protocol, make the group a classic group that rebalances; True if it did."""
        if not self.validate_online_downgrade(group, leaving_member_id):
            return False
        names = {tid: name for name, (tid, _) in self.consumer_protocol.topic_catalog().items()}
        clock = self.consumer_protocol.clock
        classic = to_classic_group(group, leaving_member_id, names, clock.monotonic(),
                                   clock.wall_ms())
        self.metadata.replace_with_classic_group(group, classic)
        log.info("group %s: the consumer group becomes a classic group (online downgrade)",
                 group.group_id)
        self.classic_protocol.rebalance_after_downgrade(classic)
        return True

    # --- classic members of consumer groups ---

    def classic_join(self, now: float, group: ConsumerGroup, member_id: str,
                     instance_id: str | None, client_id: str, client_host: str,
                     session_timeout_ms: int, rebalance_timeout_ms: int, protocol_type: str,
                     protocols: list[tuple[str, bytes]],
                     require_known_member_id: bool) -> JoinResult:
        """JoinGroup to a consumer group with members (classicGroupJoinToConsumerGroup)."""
        new_id = member_id or str(uuid.uuid4())
        settings = self.consumer_protocol.settings
        try:
            if new_id not in group.members and len(group.members) >= settings.max_size:
                raise KafkaError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                 f"The consumer group has reached its maximum capacity of "
                                 f"{settings.max_size} members.")
            if not group.supports_classic_protocols(protocol_type, [n for n, _ in protocols]):
                raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                                 f"Member {new_id}'s protocols are not supported.")
            if not member_id and instance_id is None and require_known_member_id:
                return JoinResult(error=ErrorCode.MEMBER_ID_REQUIRED, member_id=new_id)
            try:
                _, subscription = decode_subscription(protocols[0][1])
            except DecodeError:
                raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR,
                                 "Malformed embedded consumer protocol in subscription "
                                 "deserialization.") from None
            topics = self.consumer_protocol.topic_catalog()
            owned: dict = {}
            for tp in getattr(subscription, "owned_partitions", None) or ():
                if tp.topic in topics:
                    owned.setdefault(topics[tp.topic][0], set()).update(tp.partitions)
            records: list = []
            member = group.classic_join(
                now, new_id, instance_id, rebalance_timeout_ms, list(subscription.topics),
                getattr(subscription, "rack_id", None), owned,
                ClassicMemberMetadata(session_timeout_ms, tuple(protocols)), client_id,
                client_host, topics, settings, records)
        except KafkaError as e:
            return JoinResult(error=e.code, member_id=member_id)
        self.metadata.write(group.group_id, records)
        member.join_deadline = None
        member.sync_deadline = now + _rebalance_timeout_ms(member) / 1000
        self.consumer_protocol.schedule(group.next_deadline())
        return JoinResult(member_id=member.member_id, generation_id=member.member_epoch,
                          protocol_type=cg.PROTOCOL_TYPE,
                          protocol_name=member.classic.supported_protocols[0][0], leader="")

    def classic_sync(self, now: float, group: ConsumerGroup, generation_id: int, member_id: str,
                     instance_id: str | None, protocol_type: str | None,
                     protocol_name: str | None) -> SyncResult:
        """SyncGroup to a consumer group (classicGroupSyncToConsumerGroup)."""
        try:
            member = group.classic_member(member_id, instance_id)
            _check_generation(member, generation_id)
            name = member.classic.supported_protocols[0][0]
            if protocol_type is not None and protocol_type != cg.PROTOCOL_TYPE:
                raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                                 f"The protocol type {protocol_type} from member "
                                 f"{member.member_id} request is not equal to the group "
                                 f"protocol type {cg.PROTOCOL_TYPE}.")
            if protocol_name is not None and protocol_name != name:
                raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                                 f"The protocol name {protocol_name} from member "
                                 f"{member.member_id} request is not equal to the protocol "
                                 f"name {name} returned in the join response.")
            if group.group_epoch > member.member_epoch and \
                    member.state != MemberState.UNREVOKED_PARTITIONS:
                self._expect_rejoin(now, member)
                raise KafkaError(ErrorCode.REBALANCE_IN_PROGRESS,
                                 f"A new rebalance is triggered in group {group.group_id} and "
                                 f"member {member.member_id} should rejoin to catch up.")
        except KafkaError as e:
            return SyncResult(error=e.code)
        member.session_deadline = now + member.classic.session_timeout_ms / 1000
        member.sync_deadline = None
        self.consumer_protocol.schedule(member.session_deadline)
        names = {tid: n for n, (tid, _) in self.consumer_protocol.topic_catalog().items()}
        version = _protocol_version(member.classic.supported_protocols[0][1])
        return SyncResult(protocol_type=protocol_type, protocol_name=protocol_name,
                          assignment=encode_assignment(member.assigned, names, version))

    def classic_heartbeat(self, now: float, group: ConsumerGroup, generation_id: int,
                          member_id: str, instance_id: str | None) -> int:
        """Heartbeat to a consumer group (classicGroupHeartbeatToConsumerGroup): the error
        code."""
        try:
            member = group.classic_member(member_id, instance_id)
            _check_generation(member, generation_id)
        except KafkaError as e:
            return e.code
        member.session_deadline = now + member.classic.session_timeout_ms / 1000
        self.consumer_protocol.schedule(member.session_deadline)
        if member.member_epoch < group.group_epoch or \
                member.state == MemberState.UNREVOKED_PARTITIONS or \
                (member.state == MemberState.UNRELEASED_PARTITIONS
                 and not group.waiting_on_unreleased_partition(member)):
            self._expect_rejoin(now, member)
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def _expect_rejoin(self, now: float, member: ConsumerGroupMember) -> None:
        """The member was told to rejoin: it is fenced unless it does within its rebalance
        timeout (the first such answer starts the wait)."""
        if member.join_deadline is None:
            member.join_deadline = now + _rebalance_timeout_ms(member) / 1000
            self.consumer_protocol.schedule(member.join_deadline)

    def classic_leave(self, group: ConsumerGroup,
                      members: list[tuple[str | None, str | None]]) -> tuple[int, list[int]]:
        """LeaveGroup to a consumer group (classicGroupLeaveToConsumerGroup): one error per
        member; the group moves to a new epoch without those who left."""
        topics = self.consumer_protocol.topic_catalog()
        settings = self.consumer_protocol.settings
        records: list = []
        errors = []
        for member_id, instance_id in members:
            try:
                member = group.classic_member(member_id or "", instance_id)
            except KafkaError as e:
                errors.append(e.code)
                continue
            log.info("group %s: classic member %s leaves", group.group_id, member.member_id)
            group.remove_member(member, topics, settings, records)
            errors.append(ErrorCode.NONE)
        self.metadata.write(group.group_id, records)
        return ErrorCode.NONE, errors


def _rebalance_timeout_ms(member: ConsumerGroupMember) -> int:
    return member.rebalance_timeout_ms if member.rebalance_timeout_ms > 0 \
        else member.classic.session_timeout_ms


def _check_generation(member: ConsumerGroupMember, generation_id: int) -> None:
    if generation_id != member.member_epoch:
        raise KafkaError(ErrorCode.ILLEGAL_GENERATION,
                         f"The request generation id {generation_id} is not equal to the member "
                         f"epoch {member.member_epoch} of member {member.member_id}.")
