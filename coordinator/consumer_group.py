"""A KIP-848 consumer group (Kafka's ConsumerGroup): group epoch, members, target assignment and
the reconciliation of each member towards it.

In the consumer group protocol (`group.protocol=consumer`) a client sends one request,
ConsumerGroupHeartbeat, to join, to stay alive and to leave; the coordinator assigns the partitions
itself (assignors.py) and hands each member its share a step at a time:

- The *group epoch* goes up whenever what the assignment depends on changes: a member joins, leaves
  or is removed, changes its subscription (topic names or regex) or its assignor, or a subscribed
  topic appears, disappears or gets more partitions. Each new group epoch gets a new *target
  assignment*, computed by the group's assignor; the *assignment epoch* is the group epoch it was
  computed for.
- Each member has a *member epoch* and a *current assignment* (what it may consume now). It moves
  towards its target one step per heartbeat, and never takes a partition another member still
  holds: first it gives up what it must lose (revocation, at its current epoch, acknowledged by a
  heartbeat whose `topic_partitions` no longer list those partitions), and only then it gets the
  target epoch and the partitions that are free; partitions whose previous owner has not released
  them yet come on a later heartbeat. When its assignment equals its target, its epoch is the
  target epoch and it is Stable.

Member states (MemberState, persisted with Kafka's numbers in the current-assignment record) and
what one reconciliation step does; the first matching row wins:

    state                  the member...                                  next step when
    STABLE                 holds its whole target at the assignment epoch  a newer target exists
    UNREVOKED_PARTITIONS   must give up partitions; keeps its old epoch    its heartbeat no longer
                                                                           lists them
    UNRELEASED_PARTITIONS  is at the target epoch, waits for partitions    their owners release them
                           other members still hold

    condition (the next assignment)                -> state                  epoch    gets
    it holds partitions its target no longer has      UNREVOKED_PARTITIONS    its own  kept ones
      (and its heartbeat still lists some of them)
    target partitions still held by other members     UNRELEASED_PARTITIONS   target   kept + free
    otherwise                                         STABLE                  target   its target

A member that does not acknowledge a revocation within its rebalance timeout is removed, as is a
member whose heartbeats stop for `group.consumer.session.timeout.ms`. A static member (with an
`instance_id`) may leave "temporarily" (epoch -2): it stays in the group with its partitions, which
nobody else gets, until its session times out or it rejoins with the same instance id under a new
member id and takes its place.

Members of a group upgraded online from a classic group (KIP-848 migration, migration.py) may
use the classic protocol: such a *classic member* keeps its JoinGroup's session timeout and
protocols (`classic`), is reconciled one step on each JoinGroup with the partitions its
subscription says it owns, and is told to rejoin by its Heartbeat's REBALANCE_IN_PROGRESS.

The group's state (ConsumerGroupState) follows from the rest: Empty without members, Assigning
while the group epoch is ahead of the assignment epoch, Reconciling while a member is not Stable at
the assignment epoch, Stable otherwise; Dead once deleted.

Everything the group is, is written to `__consumer_offsets` as Kafka's records (key versions 3-8):
ConsumerGroupMetadata (group epoch), ConsumerGroupPartitionMetadata (the subscribed topics),
ConsumerGroupMemberMetadata (each member's subscription; a classic member's session timeout and
protocols too), ConsumerGroupTargetAssignmentMetadata
(assignment epoch) and ...TargetAssignmentMember, ConsumerGroupCurrentMemberAssignment (each
member's epoch, state and partitions). `load()` rebuilds groups from the last record of each key.
"""

import dataclasses
import enum
import functools
import logging
import uuid
from collections.abc import Mapping

from trioka.coordinator import assignors
from trioka.coordinator.offsets import OffsetAndMetadata
from trioka.coordinator.static_members import StaticMembers
from trioka.wire import schema
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")

GROUP_TYPE = "consumer"        # ListGroups v5+ group type
PROTOCOL_TYPE = "consumer"     # the protocol type ListGroups shows for these groups

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2

# topic id -> partitions
Partitions = dict[uuid.UUID, frozenset[int]]


class MemberState(enum.IntEnum):
    """A member's reconciliation state; the values are Kafka's (persisted)."""
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


# state -> the states one reconciliation step may lead to (see the module's docstring).
MEMBER_TRANSITIONS: dict[MemberState, frozenset[MemberState]] = {
    MemberState.STABLE: frozenset({MemberState.STABLE, MemberState.UNREVOKED_PARTITIONS,
                                   MemberState.UNRELEASED_PARTITIONS}),
    MemberState.UNREVOKED_PARTITIONS: frozenset({MemberState.UNREVOKED_PARTITIONS,
                                                 MemberState.UNRELEASED_PARTITIONS,
                                                 MemberState.STABLE}),
    MemberState.UNRELEASED_PARTITIONS: frozenset({MemberState.UNRELEASED_PARTITIONS,
                                                  MemberState.UNREVOKED_PARTITIONS,
                                                  MemberState.STABLE}),
    # Only a record written by a newer broker leaves a member here; it is reconciled from scratch.
    MemberState.UNKNOWN: frozenset({MemberState.STABLE, MemberState.UNREVOKED_PARTITIONS,
                                    MemberState.UNRELEASED_PARTITIONS}),
}


class ConsumerGroupState(enum.Enum):
    """The value is the state's name as Kafka prints it (ConsumerGroupDescribe, ListGroups)."""
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclasses.dataclass(slots=True)
class ConsumerGroupSettings:
    """The broker settings a consumer group works with (group.consumer.*)."""
    heartbeat_interval_ms: int = 5000
    session_timeout_ms: int = 45000
    assignors: tuple[str, ...] = (assignors.UNIFORM, assignors.RANGE)
    max_size: int = 2147483647

    @property
    def default_assignor(self) -> str:
        return self.assignors[0]

    @classmethod
    def from_config(cls, config) -> "ConsumerGroupSettings":
        """The broker's group.consumer.* keys; assignors this broker does not have are left
        out (none left: uniform)."""
        return cls(
            heartbeat_interval_ms=config.group_consumer_heartbeat_interval_ms,
            session_timeout_ms=config.group_consumer_session_timeout_ms,
            assignors=tuple(name for name in (n.strip() for n in
                                              config.group_consumer_assignors.split(","))
                            if name in assignors.ASSIGNORS) or (assignors.UNIFORM,),
            max_size=config.group_consumer_max_size)


@dataclasses.dataclass(frozen=True, slots=True)
class ClassicMemberMetadata:
    """What a consumer group keeps of a member using the classic protocol (Kafka's
    ClassicMemberMetadata of ConsumerGroupMemberMetadataValue): the session timeout of its
    JoinGroup and its protocols, (assignor name, subscription bytes) in its order."""
    session_timeout_ms: int
    supported_protocols: tuple[tuple[str, bytes], ...]


@dataclasses.dataclass(slots=True)
class HeartbeatRequest:
    """A ConsumerGroupHeartbeat as the group sees it. None means "unchanged since the last
    heartbeat" for the nullable fields; `owned` is the member's `topic_partitions`."""
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: list[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Partitions | None = None
    client_id: str = ""
    client_host: str = ""


@dataclasses.dataclass(slots=True)
class HeartbeatResult:
    """What a ConsumerGroupHeartbeat response carries; `assignment` None when unchanged."""
    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int = 0
    assignment: Partitions | None = None


# The topics a group may subscribe to: topic name -> (topic id, partition count).
TopicCatalog = Mapping[str, tuple[uuid.UUID, int]]


def _freeze(partitions: Mapping) -> Partitions:
    return {tid: frozenset(ps) for tid, ps in partitions.items() if ps}


def _contains(partitions: Partitions, tid: uuid.UUID, p: int) -> bool:
    return p in partitions.get(tid, ())


@functools.cache
def _re2_options():
    import re2
    options = re2.Options()
    options.log_errors = False      # a client's bad pattern is its answer, not our log line
    return options


def compile_client_regex(pattern: str):
    """A client's regular expression compiled as Kafka compiles it, with RE2 (Kafka's RE2/J):
    its syntax (no backreferences or lookarounds) and its guarantee, matching in time linear in
    the input, so that no pattern can hold the event loop (a backtracking engine takes minutes
    over one topic name with `(a+)+$`). ValueError with RE2's reason when it does not compile.
    (google-re2; imported on first use, so a broker that is never sent a pattern does not load
    it.)"""
    import re2
    try:
        return re2.compile(pattern, _re2_options())
    except re2.error as e:
        reason = e.args[0] if e.args else e
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(reason) from None


def compile_regex(pattern: str):
    """A subscription regex (compile_client_regex); INVALID_REGULAR_EXPRESSION when it does not
    compile."""
    try:
        return compile_client_regex(pattern)
    except ValueError as e:
        raise KafkaError(ErrorCode.INVALID_REGULAR_EXPRESSION,
                         f"SubscribedTopicRegex `{pattern}` is not a valid regular expression: "
                         f"{e}.") from None


class ConsumerGroupMember:
    __slots__ = ("member_id", "instance_id", "rack_id", "client_id", "client_host",
                 "subscribed_topic_names", "subscribed_topic_regex", "rebalance_timeout_ms",
                 "server_assignor", "member_epoch", "previous_member_epoch", "state",
                 "assigned", "pending_revocation", "session_deadline", "revocation_deadline",
                 "classic", "join_deadline", "sync_deadline", "_regex")

    def __init__(self, member_id: str):
        self.member_id = member_id
        self.instance_id: str | None = None
        self.rack_id: str | None = None
        self.client_id = ""
        self.client_host = ""
        self.subscribed_topic_names: list[str] = []
        self.subscribed_topic_regex: str | None = None
        self.rebalance_timeout_ms = -1
        self.server_assignor: str | None = None
        self.member_epoch = 0
        self.previous_member_epoch = -1
        self.state = MemberState.STABLE
        self.assigned: Partitions = {}              # its current assignment
        self.pending_revocation: Partitions = {}    # partitions it must still give up
        self.session_deadline = 0.0                 # monotonic clock; each heartbeat moves it
        self.revocation_deadline: float | None = None   # set while UNREVOKED_PARTITIONS
        # A member using the classic protocol (JoinGroup/SyncGroup/Heartbeat) in this group
        # (KIP-848 online migration, migration.py): its session timeout and its JoinGroup
        # protocols; None for a member using ConsumerGroupHeartbeat.
        self.classic: ClassicMemberMetadata | None = None
        # A classic member told to rejoin must send JoinGroup, and one that joined SyncGroup,
        # within its rebalance timeout, or it is fenced (Kafka's join and sync timeouts).
        self.join_deadline: float | None = None
        self.sync_deadline: float | None = None
        self._regex = None      # the compiled subscribed_topic_regex (compile_regex)

    def __repr__(self) -> str:
        return (f"ConsumerGroupMember({self.member_id!r}, epoch={self.member_epoch}, "
                f"{self.state.name}, assigned={_show(self.assigned)})")

    def metadata(self) -> tuple:
        """What ConsumerGroupMemberMetadataValue stores, to see whether it changed."""
        return (self.instance_id, self.rack_id, self.client_id, self.client_host,
                tuple(self.subscribed_topic_names), self.subscribed_topic_regex,
                self.rebalance_timeout_ms, self.server_assignor, self.classic)

    @property
    def uses_classic_protocol(self) -> bool:
        return self.classic is not None

    def regex(self):
        if not self.subscribed_topic_regex:
            return None
        if self._regex is None or self._regex.pattern != self.subscribed_topic_regex:
            self._regex = compile_regex(self.subscribed_topic_regex)
        return self._regex

    def subscribed_topics(self, topics: TopicCatalog) -> frozenset[str]:
        """The existing topics it subscribes to, by name or through its regex (which must match
        a whole topic name, as Java's Matcher.matches does)."""
        names = {n for n in self.subscribed_topic_names if n in topics}
        pattern = self.regex()
        if pattern is not None:
            names.update(n for n in topics if pattern.fullmatch(n))
        return frozenset(names)


def _show(partitions: Partitions) -> str:
    return "{" + ", ".join(f"{str(tid)[:8]}:{sorted(ps)}" for tid, ps in partitions.items()) + "}"


class ConsumerGroup:
    def __init__(self, group_id: str, now_ms: int = -1):
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerGroupMember] = {}     # in joining order
        self.static_members = StaticMembers()                 # instance id -> member id
        self.target: dict[str, Partitions] = {}               # the target assignment
        # The subscribed topics the target was computed from: name -> (topic id, partitions),
        # and each member's subscribed topic names.
        self.subscription_metadata: dict[str, tuple[uuid.UUID, int]] = {}
        self.member_topics: dict[str, frozenset[str]] = {}
        self.owners: dict[tuple[uuid.UUID, int], str] = {}    # partition -> member holding it
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        self.state_timestamp_ms = now_ms
        self.dead = False

    def __repr__(self) -> str:
        return (f"ConsumerGroup({self.group_id!r}, {self.state.value}, epoch={self.group_epoch}, "
                f"members={list(self.members)})")

    # --- state ---

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for m in self.members.values():
            if m.member_epoch != self.assignment_epoch or m.state != MemberState.STABLE:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def is_empty(self) -> bool:
        return not self.members

    def subscribed_topic_names(self) -> set[str]:
        """Topics some member subscribes to (by name, or matched by a regex)."""
        out: set[str] = set()
        for topics in self.member_topics.values():
            out.update(topics)
        for m in self.members.values():
            out.update(m.subscribed_topic_names)
        return out

    def preferred_assignor(self, settings: ConsumerGroupSettings) -> str:
        """The assignor most members name (ties: the one first in `group.consumer.assignors`),
        else the default."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return settings.default_assignor
        rank = {name: i for i, name in enumerate(settings.assignors)}
        return min(votes, key=lambda n: (-votes[n], rank.get(n, len(rank)), n))

    # --- ownership of partitions ---

    def set_assignment(self, member: ConsumerGroupMember, assigned: Partitions,
                       pending: Partitions) -> None:
        """Replace what a member holds (assigned and pending revocation), keeping `owners` in
        step: a partition is held by one member at a time."""
        for tid, ps in list(member.assigned.items()) + list(member.pending_revocation.items()):
            for p in ps:
                if self.owners.get((tid, p)) == member.member_id:
                    del self.owners[(tid, p)]
        member.assigned = _freeze(assigned)
        member.pending_revocation = _freeze(pending)
        for tid, ps in list(member.assigned.items()) + list(member.pending_revocation.items()):
            for p in ps:
                self.owners[(tid, p)] = member.member_id

    # --- the heartbeat ---

    def heartbeat(self, now: float, req: HeartbeatRequest, topics: TopicCatalog,
                  settings: ConsumerGroupSettings, records: list) -> HeartbeatResult:
        """A heartbeat with member epoch >= 0: join (epoch 0) or carry on. Validates first (a
        KafkaError changes nothing), then updates the member, bumps the group epoch and computes
        a new target when something the assignment depends on changed, and reconciles the
        member one step. Records to write are appended to `records`."""
        joining = req.member_epoch == 0
        if req.subscribed_topic_regex:
            compile_regex(req.subscribed_topic_regex)
        if len(self.members) >= settings.max_size and req.member_id not in self.members:
            raise KafkaError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                             f"The consumer group has reached its maximum capacity of "
                             f"{settings.max_size} members.")
        member, replaced = self._find_member(req, joining)
        if replaced is not None:
            self._replace_static_member(replaced, member, records)

        is_new = member.member_id not in self.members
        before = None if joining else dict(member.assigned)
        old_metadata = None if is_new else member.metadata()
        old_subscription = (tuple(member.subscribed_topic_names), member.subscribed_topic_regex,
                            member.server_assignor)
        if joining and not is_new and replaced is None:
            # A member that rejoins (after being fenced, or having lost its state) has given up
            # everything it held: it starts again from epoch 0.
            self.set_assignment(member, {}, {})
            member.member_epoch, member.previous_member_epoch = 0, -1
            member.state = MemberState.STABLE
            member.revocation_deadline = None
            records.append(current_assignment_record(self.group_id, member))

        if req.instance_id is not None:
            member.instance_id = req.instance_id
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.server_assignor is not None:
            member.server_assignor = req.server_assignor
        if req.subscribed_topic_names is not None:
            member.subscribed_topic_names = sorted(set(req.subscribed_topic_names))
        if req.subscribed_topic_regex is not None:
            member.subscribed_topic_regex = req.subscribed_topic_regex or None
        member.client_id = req.client_id
        member.client_host = req.client_host
        if is_new:
            self.members[member.member_id] = member
            if member.instance_id is not None:
                self.static_members[member.instance_id] = member.member_id
            log.info("group %s: member %s joins (instance %s)", self.group_id, member.member_id,
                     member.instance_id)
        if member.metadata() != old_metadata:
            records.append(member_metadata_record(self.group_id, member))

        bump = self.group_epoch == 0 or is_new or old_subscription != (
            tuple(member.subscribed_topic_names), member.subscribed_topic_regex,
            member.server_assignor)
        self.maybe_bump(topics, settings, records, force=bump)

        self.reconcile(now, member, req.owned, records)
        member.session_deadline = now + settings.session_timeout_ms / 1000

        full = joining or (req.rebalance_timeout_ms != -1
                           and req.subscribed_topic_names is not None and req.owned is not None)
        changed = before is None or before != member.assigned
        return HeartbeatResult(member.member_id, member.member_epoch,
                               settings.heartbeat_interval_ms,
                               dict(member.assigned) if (full or changed) else None)

    def _find_member(self, req: HeartbeatRequest,
                     joining: bool) -> tuple[ConsumerGroupMember, ConsumerGroupMember | None]:
        """(the member the heartbeat is from, or a new one; the static member it replaces)."""
        if req.instance_id is None:
            member = self.members.get(req.member_id)
            if member is None:
                if not joining:
                    raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                                     f"Member {req.member_id} is not a member of group "
                                     f"{self.group_id}.")
                return ConsumerGroupMember(req.member_id), None
            if not joining:
                self._check_epoch(member, req.member_epoch, req.owned)
            return member, None
        if not joining:
            existing = self.members[self.static_members.holder(req.instance_id, req.member_id)]
            self._check_epoch(existing, req.member_epoch, req.owned)
            return existing, None
        existing_id = self.static_members.get(req.instance_id)
        if existing_id is None:
            if req.member_id in self.members:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"Member {req.member_id} is not the static member "
                                 f"{req.instance_id}.")
            return ConsumerGroupMember(req.member_id), None
        existing = self.members[existing_id]
        if existing.member_id == req.member_id:
            return existing, None
        # KIP-848: the instance id is taken over only after its holder left with epoch -2.
        if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise KafkaError(ErrorCode.UNRELEASED_INSTANCE_ID,
                             f"Static member {req.member_id} with instance id "
                             f"{req.instance_id} cannot join the group because the instance "
                             f"id is owned by {existing.member_id} member.")
        return ConsumerGroupMember(req.member_id), existing

    @staticmethod
    def _check_epoch(member: ConsumerGroupMember, epoch: int, owned: Partitions | None) -> None:
        """FENCED_MEMBER_EPOCH for an epoch ahead of the member's, or behind it unless it is the
        previous epoch and the member owns no more than its assignment (the answer with the new
        epoch may have been lost)."""
        if epoch > member.member_epoch:
            raise KafkaError(ErrorCode.FENCED_MEMBER_EPOCH,
                             f"The consumer group member has a greater member epoch ({epoch}) "
                             f"than the one known by the group coordinator "
                             f"({member.member_epoch}). The member must abandon all its "
                             f"partitions and rejoin.")
        if epoch < member.member_epoch:
            subset = owned is not None and all(
                tid in member.assigned and set(ps) <= member.assigned[tid]
                for tid, ps in owned.items() if ps)
            if epoch != member.previous_member_epoch or not subset:
                raise KafkaError(ErrorCode.FENCED_MEMBER_EPOCH,
                                 f"The consumer group member has a smaller member epoch "
                                 f"({epoch}) than the one known by the group coordinator "
                                 f"({member.member_epoch}). The member must abandon all its "
                                 f"partitions and rejoin.")

    def _replace_static_member(self, old: ConsumerGroupMember, new: ConsumerGroupMember,
                               records: list) -> None:
        """A static member back under a new member id takes its old self's place: subscription,
        partitions and target, starting again at epoch 0 (no new group epoch)."""
        for name in ("instance_id", "rack_id", "client_id", "client_host",
                     "subscribed_topic_names", "subscribed_topic_regex", "rebalance_timeout_ms",
                     "server_assignor"):
            setattr(new, name, getattr(old, name))
        assigned = dict(old.assigned)
        target = self.target.get(old.member_id, {})
        topics = self.member_topics.get(old.member_id, frozenset())
        self._remove(old, records)
        new.member_epoch, new.previous_member_epoch = 0, 0
        self.members[new.member_id] = new
        self.static_members[new.instance_id] = new.member_id
        self.set_assignment(new, assigned, {})
        self.target[new.member_id] = target
        self.member_topics[new.member_id] = topics
        records.append(member_metadata_record(self.group_id, new))
        records.append(target_member_record(self.group_id, new.member_id, target))
        records.append(current_assignment_record(self.group_id, new))
        log.info("group %s: static member %s is back as %s (was %s)", self.group_id,
                 new.instance_id, new.member_id, old.member_id)

    # --- members using the classic protocol (KIP-848 online migration, migration.py) ---

    def all_members_use_classic_protocol_except(self, member_id: str) -> bool:
        """Whether every member but `member_id` (which must be a member) uses the classic
        protocol: the group may then become a classic group again when that member goes."""
        return member_id in self.members and \
            not self.members[member_id].uses_classic_protocol and all(
                m.uses_classic_protocol for mid, m in self.members.items() if mid != member_id)

    def supports_classic_protocols(self, protocol_type: str, names: list[str]) -> bool:
        """Whether a JoinGroup with these protocols may join: the "consumer" protocol type and,
        when the group has classic members, a protocol name all of them support."""
        if protocol_type != PROTOCOL_TYPE or not names:
            return False
        classic = [m for m in self.members.values() if m.uses_classic_protocol]
        return not classic or any(
            all(name in {n for n, _ in m.classic.supported_protocols} for m in classic)
            for name in names)

    def waiting_on_unreleased_partition(self, member: ConsumerGroupMember) -> bool:
        """Whether a partition of the member's target it does not have yet is still held by
        another member (so rejoining would not get it any sooner)."""
        for tid, ps in self.target.get(member.member_id, {}).items():
            for p in ps:
                holder = self.owners.get((tid, p))
                if holder is not None and holder != member.member_id:
                    return True
        return False

    def classic_member(self, member_id: str, instance_id: str | None) -> ConsumerGroupMember:
        """The classic member a SyncGroup, Heartbeat or LeaveGroup names (Kafka's
        validateConsumerGroupMember): UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, or UNKNOWN_MEMBER_ID
        for a member using ConsumerGroupHeartbeat."""
        if instance_id is None:
            member = self.members.get(member_id)
            if member is None:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"Member {member_id} is not a member of group {self.group_id}.")
        else:
            holder = self.static_members.get(instance_id)
            if holder is None:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"Member with instance id {instance_id} is not a member of "
                                 f"group {self.group_id}.")
            if member_id and holder != member_id:
                raise KafkaError(ErrorCode.FENCED_INSTANCE_ID,
                                 f"Static member {member_id} with instance id {instance_id} "
                                 f"was fenced by member {holder}.")
            member = self.members[holder]
        if not member.uses_classic_protocol:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                             f"Member {member.member_id} does not use the classic protocol.")
        return member

    def classic_join(self, now: float, member_id: str, instance_id: str | None,
                     rebalance_timeout_ms: int, subscribed_topic_names: list[str],
                     rack_id: str | None, owned: Partitions, classic: ClassicMemberMetadata,
                     client_id: str, client_host: str, topics: TopicCatalog,
                     settings: ConsumerGroupSettings, records: list) -> ConsumerGroupMember:
        """A JoinGroup from a member using the classic protocol (Kafka's
        classicGroupJoinToConsumerGroup): the member is created or updated from its
        subscription, the group epoch goes up when its subscription changed, and the member is
        reconciled one step with the partitions its subscription says it owns (none for an
        eager assignor, which gave everything up before rejoining). Its member epoch is the
        generation of the JoinGroup answer."""
        if len(self.members) >= settings.max_size and member_id not in self.members \
                and not (instance_id is not None and instance_id in self.static_members):
            raise KafkaError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                             f"The consumer group has reached its maximum capacity of "
                             f"{settings.max_size} members.")
        member = self.members.get(member_id)
        if member is not None and not member.uses_classic_protocol:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                             f"Member {member_id} does not use the classic protocol.")
        if member is None:
            member = ConsumerGroupMember(member_id)
            held_by = self.static_members.get(instance_id) if instance_id is not None else None
            if held_by is not None:
                # A static member back under a new member id takes its old self's place.
                self._replace_static_member(self.members[held_by], member, records)
        is_new = member.member_id not in self.members
        old_metadata = None if is_new else member.metadata()
        old_subscription = (tuple(member.subscribed_topic_names), member.subscribed_topic_regex)
        if instance_id is not None:
            member.instance_id = instance_id
        if rack_id is not None:
            member.rack_id = rack_id
        if rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = rebalance_timeout_ms
        member.subscribed_topic_names = sorted(set(subscribed_topic_names))
        member.client_id = client_id
        member.client_host = client_host
        member.classic = classic
        if is_new:
            self.members[member.member_id] = member
            if member.instance_id is not None:
                self.static_members[member.instance_id] = member.member_id
            log.info("group %s: classic member %s joins", self.group_id, member.member_id)
        if member.metadata() != old_metadata:
            records.append(member_metadata_record(self.group_id, member))
        bump = self.group_epoch == 0 or is_new or old_subscription != (
            tuple(member.subscribed_topic_names), member.subscribed_topic_regex)
        self.maybe_bump(topics, settings, records, force=bump)
        self.reconcile(now, member, owned, records)
        member.session_deadline = now + classic.session_timeout_ms / 1000
        return member

    # --- leaving ---

    def leave(self, member_id: str, instance_id: str | None, member_epoch: int,
              topics: TopicCatalog, settings: ConsumerGroupSettings,
              records: list) -> HeartbeatResult:
        """Member epoch -1 (leave) or -2 (a static member leaves for a while)."""
        if instance_id is None:
            member = self.members.get(member_id)
            if member is None:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"Member {member_id} is not a member of group {self.group_id}.")
        else:
            member = self.members[self.static_members.holder(instance_id, member_id)]
            if member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                # It keeps its partitions (nobody else gets them) until it comes back or its
                # session runs out.
                log.info("group %s: static member %s (instance %s) leaves for now",
                         self.group_id, member_id, instance_id)
                member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH
                member.state = MemberState.STABLE
                member.revocation_deadline = None
                self.set_assignment(member, member.assigned, {})
                records.append(current_assignment_record(self.group_id, member))
                return HeartbeatResult(member_id, LEAVE_GROUP_STATIC_MEMBER_EPOCH)
        log.info("group %s: member %s leaves", self.group_id, member.member_id)
        self.remove_member(member, topics, settings, records)
        return HeartbeatResult(member_id, member_epoch)

    def remove_member(self, member: ConsumerGroupMember, topics: TopicCatalog,
                      settings: ConsumerGroupSettings, records: list) -> None:
        """Fence a member (it left, its session or its revocation ran out): it goes with
        everything it held, and the group moves to a new epoch."""
        self._remove(member, records)
        self.maybe_bump(topics, settings, records, force=True)

    def _remove(self, member: ConsumerGroupMember, records: list) -> None:
        self.set_assignment(member, {}, {})
        del self.members[member.member_id]
        self.static_members.release(member.instance_id, member.member_id)
        self.target.pop(member.member_id, None)
        self.member_topics.pop(member.member_id, None)
        records.append((current_assignment_key(self.group_id, member.member_id), None))
        records.append((target_member_key(self.group_id, member.member_id), None))
        records.append((member_metadata_key(self.group_id, member.member_id), None))

    # --- group epoch and target assignment ---

    def maybe_bump(self, topics: TopicCatalog, settings: ConsumerGroupSettings, records: list,
                   *, force: bool = False) -> bool:
        """Look at the subscribed topics again; when they (or, with `force`, the members)
        changed, move to the next group epoch with a new target assignment. True if it moved."""
        member_topics = {mid: m.subscribed_topics(topics) for mid, m in self.members.items()}
        metadata = {}
        for names in member_topics.values():
            for name in names:
                metadata[name] = topics[name]
        if metadata != self.subscription_metadata:
            self.subscription_metadata = metadata
            records.append(partition_metadata_record(self.group_id, metadata))
            force = True
        if member_topics != self.member_topics:
            self.member_topics = member_topics
            force = True
        if not force:
            return False
        self.group_epoch += 1
        records.append(group_metadata_record(self.group_id, self.group_epoch))
        log.info("group %s: group epoch %d", self.group_id, self.group_epoch)
        self._compute_target(settings, records)
        return True

    def _compute_target(self, settings: ConsumerGroupSettings, records: list) -> None:
        name = self.preferred_assignor(settings)
        topic_specs = {tid: assignors.TopicSpec(topic, count)
                       for topic, (tid, count) in self.subscription_metadata.items()}
        member_specs = {
            mid: assignors.MemberSpec(
                {self.subscription_metadata[t][0] for t in self.member_topics.get(mid, ())},
                self.target.get(mid, {}))
            for mid in self.members}
        target = assignors.assignor(name)(member_specs, topic_specs)
        for mid in self.members:
            new = _freeze(target.get(mid, {}))
            if new != self.target.get(mid) or mid not in self.target:
                records.append(target_member_record(self.group_id, mid, new))
            self.target[mid] = new
        self.assignment_epoch = self.group_epoch
        records.append(target_metadata_record(self.group_id, self.assignment_epoch))

    # --- reconciliation ---

    def reconcile(self, now: float, member: ConsumerGroupMember, owned: Partitions | None,
                  records: list) -> None:
        """One step of the member towards its target (the table in the module's docstring)."""
        if member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            return
        target = self.target.get(member.member_id, {})
        if member.state == MemberState.STABLE and member.member_epoch == self.assignment_epoch:
            return
        if member.state == MemberState.UNREVOKED_PARTITIONS and \
                self._still_owns(owned, member.pending_revocation):
            return
        before = (member.member_epoch, member.state, member.assigned, member.pending_revocation)
        state, epoch, assigned, pending = self._next_assignment(member, target, owned)
        if state not in MEMBER_TRANSITIONS[member.state]:
            raise AssertionError(f"member {member.member_id}: {member.state.name} -> "
                                 f"{state.name}")
        if epoch != member.member_epoch:
            member.previous_member_epoch = member.member_epoch
        member.member_epoch = epoch
        if state == MemberState.UNREVOKED_PARTITIONS:
            if member.state != MemberState.UNREVOKED_PARTITIONS or \
                    member.revocation_deadline is None:
                timeout = member.rebalance_timeout_ms if member.rebalance_timeout_ms > 0 else 0
                member.revocation_deadline = now + timeout / 1000
        else:
            member.revocation_deadline = None
        member.state = state
        self.set_assignment(member, assigned, pending)
        if (member.member_epoch, member.state, member.assigned,
                member.pending_revocation) != before:
            records.append(current_assignment_record(self.group_id, member))

    @staticmethod
    def _still_owns(owned: Partitions | None, revoking: Partitions) -> bool:
        """Whether the member's heartbeat still lists any partition it must give up (not sending
        its partitions counts as still owning them)."""
        if owned is None:
            return True
        return any(_contains(revoking, tid, p) for tid, ps in owned.items() for p in ps)

    def _next_assignment(self, member: ConsumerGroupMember, target: Partitions,
                         owned: Partitions | None):
        """(state, epoch, assigned, pending revocation): Kafka's computeNextAssignment."""
        kept: dict[uuid.UUID, set[int]] = {}
        revoke: dict[uuid.UUID, set[int]] = {}
        free: dict[uuid.UUID, set[int]] = {}
        unreleased = False
        for tid in set(target) | set(member.assigned):
            current = member.assigned.get(tid, frozenset())
            wanted = target.get(tid, frozenset())
            kept[tid] = set(current & wanted)
            revoke[tid] = set(current - wanted)
            for p in wanted - current:
                holder = self.owners.get((tid, p))
                if holder is None or holder == member.member_id:
                    free.setdefault(tid, set()).add(p)
                else:
                    unreleased = True
        kept = _freeze(kept)
        revoke = _freeze(revoke)
        if revoke and self._still_owns(owned, revoke):
            return MemberState.UNREVOKED_PARTITIONS, member.member_epoch, kept, revoke
        assigned = {tid: set(ps) for tid, ps in kept.items()}
        for tid, ps in free.items():
            assigned.setdefault(tid, set()).update(ps)
        state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
        return state, self.assignment_epoch, _freeze(assigned), {}

    # --- timers ---

    def next_deadline(self) -> float:
        soonest = float("inf")
        for m in self.members.values():
            soonest = min(soonest, m.session_deadline)
            for deadline in (m.revocation_deadline, m.join_deadline, m.sync_deadline):
                if deadline is not None:
                    soonest = min(soonest, deadline)
        return soonest

    def expire(self, now: float, topics: TopicCatalog, settings: ConsumerGroupSettings,
               records: list) -> list[str]:
        """Remove members whose session ran out, or who did not revoke in time; their ids."""
        gone = []
        for m in self.due_members(now):
            if self.members.get(m.member_id) is not m:
                continue
            self.remove_member(m, topics, settings, records)
            gone.append(m.member_id)
        return gone

    def due_members(self, now: float) -> list[ConsumerGroupMember]:
        """Members to fence at `now`: their session ran out, or they did not revoke in time."""
        due = []
        for m in self.members.values():
            if m.session_deadline <= now:
                log.info("group %s: member %s missed its session timeout", self.group_id,
                         m.member_id)
            elif (m.revocation_deadline is not None and m.revocation_deadline <= now
                  and m.state == MemberState.UNREVOKED_PARTITIONS):
                log.info("group %s: member %s did not revoke its partitions within its "
                         "rebalance timeout", self.group_id, m.member_id)
            elif m.join_deadline is not None and m.join_deadline <= now:
                log.info("group %s: the classic member %s failed to join within the rebalance "
                         "timeout", self.group_id, m.member_id)
            elif m.sync_deadline is not None and m.sync_deadline <= now:
                log.info("group %s: the classic member %s failed to sync within the rebalance "
                         "timeout", self.group_id, m.member_id)
            else:
                continue
            due.append(m)
        return due

    # --- committed offsets ---

    def validate_offset_commit(self, member_id: str, member_epoch: int, api_version: int,
                               transactional: bool = False) -> None:
        """KafkaError unless a commit with this member id and epoch may write offsets: one
        without an epoch only while the group has no members (admin clients, assign()); else
        from a member (UNKNOWN_MEMBER_ID), with OffsetCommit v9+ (UNSUPPORTED_VERSION), at its
        current epoch (STALE_MEMBER_EPOCH)."""
        if member_epoch < 0 and not self.members:
            return
        member = self.members.get(member_id)
        if member is None:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                             f"Member {member_id} is not a member of group {self.group_id}.")
        if not transactional and api_version < 9 and not member.uses_classic_protocol:
            raise KafkaError(ErrorCode.UNSUPPORTED_VERSION,
                             "OffsetCommit version 9 or above must be used by members using "
                             "the consumer group protocol")
        _validate_member_epoch(member, member_epoch)

    def validate_offset_fetch(self, member_id: str | None, member_epoch: int) -> None:
        """OffsetFetch v9: a request naming a member must come from it at its current epoch;
        one without member id and epoch (admin clients) is always answered."""
        if member_id is None and member_epoch < 0:
            return
        member = self.members.get(member_id or "")
        if member is None:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID,
                             f"Member {member_id} is not a member of group {self.group_id}.")
        _validate_member_epoch(member, member_epoch)

    # --- persistence ---

    def creation_records(self) -> list:
        """Every record of the group as it is now (Kafka's createConsumerGroupRecords: a classic
        group converted to this one)."""
        records = [member_metadata_record(self.group_id, m) for m in self.members.values()]
        records.append(partition_metadata_record(self.group_id, self.subscription_metadata))
        records.append(group_metadata_record(self.group_id, self.group_epoch))
        records.extend(target_member_record(self.group_id, mid, self.target.get(mid, {}))
                       for mid in self.members)
        records.append(target_metadata_record(self.group_id, self.assignment_epoch))
        records.extend(current_assignment_record(self.group_id, m)
                       for m in self.members.values())
        return records

    def deletion_records(self) -> list:
        """Tombstones for everything the group wrote (not its offsets)."""
        records = []
        for mid in self.members:
            records.append((current_assignment_key(self.group_id, mid), None))
            records.append((target_member_key(self.group_id, mid), None))
            records.append((member_metadata_key(self.group_id, mid), None))
        records.append((target_metadata_key(self.group_id), None))
        records.append((partition_metadata_key(self.group_id), None))
        records.append((group_metadata_key(self.group_id), None))
        return records


def _validate_member_epoch(member: ConsumerGroupMember, epoch: int) -> None:
    """A commit or fetch must name the member's epoch: ILLEGAL_GENERATION for a classic member
    (its generation is its member epoch), STALE_MEMBER_EPOCH for a consumer member."""
    if epoch == member.member_epoch:
        return
    if member.uses_classic_protocol:
        raise KafkaError(ErrorCode.ILLEGAL_GENERATION,
                         f"The received generation id {epoch} does not match the expected "
                         f"member epoch {member.member_epoch}.")
    raise KafkaError(ErrorCode.STALE_MEMBER_EPOCH,
                     f"The received member epoch {epoch} does not match the expected member "
                     f"epoch {member.member_epoch}.")


# --- records (key versions 3-8 of __consumer_offsets) ---

GROUP_METADATA_KEY_VERSION = 3
PARTITION_METADATA_KEY_VERSION = 4
MEMBER_METADATA_KEY_VERSION = 5
TARGET_METADATA_KEY_VERSION = 6
TARGET_MEMBER_KEY_VERSION = 7
CURRENT_ASSIGNMENT_KEY_VERSION = 8
KEY_VERSIONS = range(3, 9)
VALUE_VERSION = 0

_KEYS = {
    GROUP_METADATA_KEY_VERSION: "ConsumerGroupMetadata",
    PARTITION_METADATA_KEY_VERSION: "ConsumerGroupPartitionMetadata",
    MEMBER_METADATA_KEY_VERSION: "ConsumerGroupMemberMetadata",
    TARGET_METADATA_KEY_VERSION: "ConsumerGroupTargetAssignmentMetadata",
    TARGET_MEMBER_KEY_VERSION: "ConsumerGroupTargetAssignmentMember",
    CURRENT_ASSIGNMENT_KEY_VERSION: "ConsumerGroupCurrentMemberAssignment",
}


def _key(version: int, group_id: str, member_id: str | None = None) -> bytes:
    name = _KEYS[version] + "Key"
    fields = {"group_id": group_id}
    if member_id is not None:
        fields["member_id"] = member_id
    return schema.encode_record(name, schema.record(name).cls(**fields), version)


def _value(version: int, **fields) -> bytes:
    name = _KEYS[version] + "Value"
    return schema.encode_record(name, schema.record(name).cls(**fields), VALUE_VERSION)


def group_metadata_key(group_id: str) -> bytes:
    return _key(GROUP_METADATA_KEY_VERSION, group_id)


def partition_metadata_key(group_id: str) -> bytes:
    return _key(PARTITION_METADATA_KEY_VERSION, group_id)


def member_metadata_key(group_id: str, member_id: str) -> bytes:
    return _key(MEMBER_METADATA_KEY_VERSION, group_id, member_id)


def target_metadata_key(group_id: str) -> bytes:
    return _key(TARGET_METADATA_KEY_VERSION, group_id)


def target_member_key(group_id: str, member_id: str) -> bytes:
    return _key(TARGET_MEMBER_KEY_VERSION, group_id, member_id)


def current_assignment_key(group_id: str, member_id: str) -> bytes:
    return _key(CURRENT_ASSIGNMENT_KEY_VERSION, group_id, member_id)


def group_metadata_record(group_id: str, epoch: int) -> tuple[bytes, bytes]:
    return group_metadata_key(group_id), _value(GROUP_METADATA_KEY_VERSION, epoch=epoch)


def partition_metadata_record(group_id: str,
                              metadata: Mapping[str, tuple[uuid.UUID, int]]) -> tuple:
    cls = schema.record("ConsumerGroupPartitionMetadataValue").cls
    topics = [cls.TopicMetadata(topic_id=tid, topic_name=name, num_partitions=count,
                                partition_metadata=[])
              for name, (tid, count) in sorted(metadata.items())]
    return partition_metadata_key(group_id), _value(PARTITION_METADATA_KEY_VERSION,
                                                    topics=topics)


def member_metadata_record(group_id: str, m: ConsumerGroupMember) -> tuple[bytes, bytes]:
    return member_metadata_key(group_id, m.member_id), _value(
        MEMBER_METADATA_KEY_VERSION, instance_id=m.instance_id, rack_id=m.rack_id,
        client_id=m.client_id, client_host=m.client_host,
        subscribed_topic_names=list(m.subscribed_topic_names),
        subscribed_topic_regex=m.subscribed_topic_regex,
        rebalance_timeout_ms=m.rebalance_timeout_ms, server_assignor=m.server_assignor,
        classic_member_metadata=_classic_metadata_value(m.classic))


def _classic_metadata_value(classic: ClassicMemberMetadata | None):
    if classic is None:
        return None
    cls = schema.record("ConsumerGroupMemberMetadataValue").cls.ClassicMemberMetadata
    return cls(session_timeout_ms=classic.session_timeout_ms,
               supported_protocols=[cls.ClassicProtocol(name=n, metadata=bytes(md))
                                    for n, md in classic.supported_protocols])


def _topic_partitions(cls, partitions: Partitions) -> list:
    return [cls(topic_id=tid, partitions=sorted(ps))
            for tid, ps in sorted(partitions.items(), key=lambda kv: kv[0].bytes)]


def target_metadata_record(group_id: str, epoch: int) -> tuple[bytes, bytes]:
    return target_metadata_key(group_id), _value(TARGET_METADATA_KEY_VERSION,
                                                 assignment_epoch=epoch)


def target_member_record(group_id: str, member_id: str, target: Partitions) -> tuple:
    cls = schema.record("ConsumerGroupTargetAssignmentMemberValue").cls.TopicPartition
    return target_member_key(group_id, member_id), _value(
        TARGET_MEMBER_KEY_VERSION, topic_partitions=_topic_partitions(cls, target))


def current_assignment_record(group_id: str, m: ConsumerGroupMember) -> tuple[bytes, bytes]:
    cls = schema.record("ConsumerGroupCurrentMemberAssignmentValue").cls.TopicPartitions
    return current_assignment_key(group_id, m.member_id), _value(
        CURRENT_ASSIGNMENT_KEY_VERSION, member_epoch=m.member_epoch,
        previous_member_epoch=m.previous_member_epoch, state=int(m.state),
        assigned_partitions=_topic_partitions(cls, m.assigned),
        partitions_pending_revocation=_topic_partitions(cls, m.pending_revocation))


def decode_key(version: int, data) -> tuple[str, str | None]:
    """(group id, member id or None) of a key of versions 3-8."""
    _, key = schema.decode_record(_KEYS[version] + "Key", data)
    return key.group_id, getattr(key, "member_id", None)


def decode_value(version: int, data):
    return schema.decode_record(_KEYS[version] + "Value", data)[1]


def _partitions_of(topic_partitions) -> Partitions:
    return _freeze({tp.topic_id: set(tp.partitions) for tp in topic_partitions})


def load(records: Mapping[tuple[int, str, str | None], object], now: float,
         settings: ConsumerGroupSettings, now_ms: int = -1) -> dict[str, ConsumerGroup]:
    """Groups from the last value of each key (key version, group id, member id) -> decoded
    value; tombstoned keys are absent. Members get a fresh session timeout from `now`."""
    groups: dict[str, ConsumerGroup] = {}
    for (version, group_id, _), value in records.items():
        if version == GROUP_METADATA_KEY_VERSION:
            group = groups[group_id] = ConsumerGroup(group_id, now_ms)
            group.group_epoch = value.epoch
    for (version, group_id, member_id), value in records.items():
        group = groups.get(group_id)
        if group is None or version != MEMBER_METADATA_KEY_VERSION:
            continue
        m = ConsumerGroupMember(member_id)
        m.instance_id, m.rack_id = value.instance_id, value.rack_id
        m.client_id, m.client_host = value.client_id, value.client_host
        m.subscribed_topic_names = sorted(value.subscribed_topic_names)
        m.subscribed_topic_regex = value.subscribed_topic_regex or None
        m.rebalance_timeout_ms = value.rebalance_timeout_ms
        m.server_assignor = value.server_assignor
        c = value.classic_member_metadata
        # A record without the tagged field decodes to an empty one: a classic member always
        # has a protocol.
        if c is not None and c.supported_protocols:
            m.classic = ClassicMemberMetadata(c.session_timeout_ms, tuple(
                (p.name, bytes(p.metadata)) for p in c.supported_protocols))
        m.session_deadline = now + (m.classic.session_timeout_ms if m.classic is not None
                                    else settings.session_timeout_ms) / 1000
        group.members[member_id] = m
        if m.instance_id is not None:
            group.static_members[m.instance_id] = member_id
    for (version, group_id, member_id), value in records.items():
        group = groups.get(group_id)
        if group is None:
            continue
        if version == PARTITION_METADATA_KEY_VERSION:
            group.subscription_metadata = {t.topic_name: (t.topic_id, t.num_partitions)
                                           for t in value.topics}
        elif version == TARGET_METADATA_KEY_VERSION:
            group.assignment_epoch = value.assignment_epoch
        elif version == TARGET_MEMBER_KEY_VERSION and member_id in group.members:
            group.target[member_id] = _partitions_of(value.topic_partitions)
        elif version == CURRENT_ASSIGNMENT_KEY_VERSION and member_id in group.members:
            m = group.members[member_id]
            m.member_epoch = value.member_epoch
            m.previous_member_epoch = value.previous_member_epoch
            try:
                m.state = MemberState(value.state)
            except ValueError:
                m.state = MemberState.UNKNOWN
            group.set_assignment(m, _partitions_of(value.assigned_partitions),
                                  _partitions_of(value.partitions_pending_revocation))
    for group in groups.values():
        for mid, m in group.members.items():
            group.target.setdefault(mid, {})
            # The topics the target was computed from: those of its subscription among the
            # group's subscribed topics then.
            group.member_topics[mid] = m.subscribed_topics(group.subscription_metadata)
            if m.state == MemberState.UNREVOKED_PARTITIONS:
                timeout = m.rebalance_timeout_ms if m.rebalance_timeout_ms > 0 else 0
                m.revocation_deadline = now + timeout / 1000
    return groups
