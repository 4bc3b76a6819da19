"""A classic consumer group (Kafka's ClassicGroup): its members, generation, protocol and leader.

This is the state of one group and the questions asked of it; the protocol that changes it
(JoinGroup, SyncGroup, Heartbeat, LeaveGroup, timeouts) is in classic_protocol.py.

- A *member* is one client instance. Its id is chosen by the coordinator: `<client id>-<uuid>`,
  or `<group instance id>-<uuid>` for a static member (KIP-345), which also names itself by a
  `group.instance.id` that survives restarts. `static_members` maps instance ids to member ids
  (static_members.py).
- A *pending* member (KIP-394) has been given a member id by a JoinGroup (v4+) answered with
  MEMBER_ID_REQUIRED and is not a member until it joins again with that id.
- Each member lists the *protocols* it can use (for consumers: assignors such as "range" or
  "cooperative-sticky", each with its subscription as opaque bytes). The group uses one protocol
  type for everyone ("consumer", "connect", ...) and, per generation, the one protocol all members
  support that most of them prefer.
- The *leader* is the member that receives everyone's subscription in its JoinGroup response and
  sends the assignment of every member in its SyncGroup. The broker never looks inside: the
  assignment bytes are stored and handed out as they came.
- Each completed rebalance starts a new *generation*; commits and heartbeats name it.
"""

import dataclasses
import math

import trio

from trioka.coordinator.group_state import GroupState, check_transition
from trioka.coordinator.offsets import GroupMetadataValue, OffsetAndMetadata, group_metadata_key
from trioka.coordinator.static_members import StaticMembers
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.schema import decode_record
from trioka.wire.types import DecodeError

GROUP_TYPE = "classic"   # ListGroups v5+ group type


@dataclasses.dataclass(slots=True)
class JoinResult:
    """What a JoinGroup response carries. `members` (leader only): (member id, group instance id,
    metadata of the chosen protocol)."""
    error: int = ErrorCode.NONE
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: list = dataclasses.field(default_factory=list)
    skip_assignment: bool = False


@dataclasses.dataclass(slots=True)
class SyncResult:
    """What a SyncGroup response carries."""
    error: int = ErrorCode.NONE
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


class Waiter:
    """A parked JoinGroup or SyncGroup: the coordinator sets `result` once and then `event`."""
    __slots__ = ("event", "result")

    def __init__(self):
        self.event = trio.Event()
        self.result = None

    def complete(self, result) -> None:
        if self.result is None:
            self.result = result
            self.event.set()


class Member:
    __slots__ = ("member_id", "group_instance_id", "client_id", "client_host",
                 "rebalance_timeout_ms", "session_timeout_ms", "protocol_type", "protocols",
                 "assignment", "join_waiter", "sync_waiter", "session_deadline")

    def __init__(self, member_id: str, group_instance_id: str | None, client_id: str,
                 client_host: str, rebalance_timeout_ms: int, session_timeout_ms: int,
                 protocol_type: str, protocols: list[tuple[str, bytes]]):
        self.member_id = member_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = protocols            # (name, metadata) in the member's preference order
        self.assignment = b""
        self.join_waiter: Waiter | None = None   # its JoinGroup, parked until the join phase ends
        self.sync_waiter: Waiter | None = None   # its SyncGroup, parked until the leader's arrives
        self.session_deadline = 0.0              # monotonic clock; a heartbeat moves it

    def __repr__(self) -> str:
        return f"Member({self.member_id!r}, instance={self.group_instance_id!r})"

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_waiter is not None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        """Same protocols, same metadata, same order: rejoining changes nothing."""
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]


class ClassicGroup:
    def __init__(self, group_id: str, now_ms: int = -1):
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.state_timestamp_ms = now_ms        # wall clock of the last state change
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}    # in joining order
        self.static_members = StaticMembers()           # group instance id -> member id
        self.pending_members: dict[str, float] = {}     # KIP-394 member id -> expiry (monotonic)
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        # The join phase (PreparingRebalance) ends at `join_deadline` at the latest. The first
        # rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more members,
        # again each time one arrived, while `initial_delay_remaining_ms` of the rebalance timeout
        # is left.
        self.join_deadline: float | None = None
        self.initial_delay = False
        self.initial_delay_remaining_ms = 0
        self.new_member_added = False
        # After a join phase every member must send SyncGroup by `sync_deadline`.
        self.pending_sync: set[str] = set()
        self.sync_deadline: float | None = None

    def __repr__(self) -> str:
        return (f"ClassicGroup({self.group_id!r}, {self.state.value}, generation="
                f"{self.generation_id}, members={list(self.members)})")

    # --- state ---

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def transition_to(self, target: GroupState, now_ms: int) -> None:
        check_transition(self.state, target)
        self.state = target
        self.state_timestamp_ms = now_ms

    def is_empty(self) -> bool:
        """Empty, without members and without members to be (what may be deleted, converted to
        a consumer group, or have its offsets expire from when it emptied)."""
        return self.is_in(GroupState.EMPTY) and not self.members and not self.pending_members

    def next_deadline(self) -> float:
        """The earliest deadline the timer must act on (math.inf when there is none): a pending
        member's, the session of a member not parked in JoinGroup or SyncGroup, the end of the
        join phase, the end of the sync phase."""
        soonest = math.inf
        for deadline in self.pending_members.values():
            soonest = min(soonest, deadline)
        for m in self.members.values():
            if not m.awaiting_join and not m.awaiting_sync:
                soonest = min(soonest, m.session_deadline)
        if self.is_in(GroupState.PREPARING_REBALANCE) and self.join_deadline is not None:
            soonest = min(soonest, self.join_deadline)
        if self.sync_deadline is not None and self.pending_sync:
            soonest = min(soonest, self.sync_deadline)
        return soonest

    # --- members ---

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def add_member(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove_member(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        self.static_members.release(member.group_instance_id, member_id)
        self.pending_sync.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static_member(self, old_id: str, new: Member) -> Member:
        """A static member came back under a new member id: it takes the old one's place (and
        assignment, and leadership); the old id is fenced from now on."""
        old = self.members[old_id]
        new.assignment = old.assignment
        self.members = {(new.member_id if mid == old_id else mid): (new if mid == old_id else m)
                        for mid, m in self.members.items()}
        self.static_members[new.group_instance_id] = new.member_id
        if self.leader_id == old_id:
            self.leader_id = new.member_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new.member_id)
        return old

    def validate_member(self, member_id: str, group_instance_id: str | None) -> Member:
        """The member a request names; FENCED_INSTANCE_ID when the instance id now belongs to
        another member id, UNKNOWN_MEMBER_ID when there is no such member."""
        if group_instance_id is not None:
            self.static_members.holder(group_instance_id, member_id)
        member = self.members.get(member_id)
        if member is None:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID, f"unknown member id {member_id!r}")
        return member

    def validate_offset_commit(self, member_id: str, group_instance_id: str | None,
                               generation_id: int, transactional: bool = False) -> None:
        """KafkaError unless a commit naming this member and generation may write offsets
        (apis.md §11). One that names a generation, a member id or an instance id must come from
        a member of the current generation (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
        ILLEGAL_GENERATION). An OffsetCommit that names none of them is accepted only while the
        group is Empty (admin clients, consumers using assign()), and none while the group waits
        for its SyncGroups (REBALANCE_IN_PROGRESS). A TxnOffsetCommit (KIP-447) is checked for
        its member and generation only, so that a zombie consumer-producer is fenced."""
        if not transactional and generation_id < 0 and self.is_in(GroupState.EMPTY):
            return
        if generation_id >= 0 or member_id or group_instance_id is not None:
            self.validate_member(member_id, group_instance_id)
            if generation_id != self.generation_id:
                raise KafkaError(ErrorCode.ILLEGAL_GENERATION)
        elif not transactional and not self.is_in(GroupState.EMPTY):
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
        if not transactional and self.is_in(GroupState.COMPLETING_REBALANCE):
            raise KafkaError(ErrorCode.REBALANCE_IN_PROGRESS)

    def all_members_joined(self) -> bool:
        return (not self.pending_members
                and all(m.awaiting_join for m in self.members.values()))

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # --- protocols ---

    def _candidate_protocols(self, members=None) -> list[str]:
        """Protocols every member supports, in the first member's order of preference."""
        members = list(self.members.values()) if members is None else members
        if not members:
            return []
        common = set(members[0].protocol_names())
        for m in members[1:]:
            common &= set(m.protocol_names())
        return [name for name in members[0].protocol_names() if name in common]

    def supports_protocols(self, protocol_type: str, names: list[str]) -> bool:
        """Whether a member with these protocols may join: the first one only needs a type and at
        least one protocol; later ones the group's type and one protocol everyone supports."""
        if not protocol_type or not names:
            return False
        if not self.members:
            return True
        return protocol_type == self.protocol_type and bool(
            set(names) & set(self._candidate_protocols()))

    def select_protocol(self) -> str | None:
        """Each member votes for the first protocol of its list that all members support; the one
        with most votes wins (a tie goes to the one the first member prefers)."""
        candidates = self._candidate_protocols()
        if not candidates:
            return None
        votes = dict.fromkeys(candidates, 0)
        for m in self.members.values():
            choice = next(name for name in m.protocol_names() if name in votes)
            votes[choice] += 1
        return max(candidates, key=lambda name: votes[name])

    def current_member_metadata(self) -> list[tuple[str, str | None, bytes]]:
        """The leader's member list: (member id, group instance id, metadata of the protocol)."""
        return [(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
                for m in self.members.values()]

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to, read from their consumer protocol subscriptions;
        None when the group does not use the consumer protocol."""
        if self.protocol_type != "consumer":
            return None
        topics = set()
        for m in self.members.values():
            try:
                _, sub = decode_record("ConsumerProtocolSubscription",
                                       m.metadata(self.protocol_name))
            except DecodeError:   # a payload this broker cannot read subscribes to nothing
                continue
            topics.update(sub.topics)
        return topics

    # --- persistence ---

    def deletion_records(self) -> list:
        """The tombstone for the group's metadata (not its offsets)."""
        return [(group_metadata_key(self.group_id), None)]

    def to_record(self):
        """The GroupMetadataValue Kafka writes after a rebalance."""
        MemberMetadata = GroupMetadataValue.MemberMetadata
        return GroupMetadataValue(
            protocol_type=self.protocol_type or "", generation=self.generation_id,
            protocol=self.protocol_name, leader=self.leader_id,
            current_state_timestamp=self.state_timestamp_ms,
            members=[MemberMetadata(member_id=m.member_id, group_instance_id=m.group_instance_id,
                             client_id=m.client_id, client_host=m.client_host,
                             rebalance_timeout=m.rebalance_timeout_ms,
                             session_timeout=m.session_timeout_ms,
                             subscription=m.metadata(self.protocol_name),
                             assignment=m.assignment)
                     for m in self.members.values()])

    @classmethod
    def from_record(cls, group_id: str, value, now: float) -> "ClassicGroup":
        """A group as its last GroupMetadataValue left it: Stable with its members (each with a
        fresh session timeout), or Empty."""
        group = cls(group_id, value.current_state_timestamp)
        group.generation_id = value.generation
        group.protocol_type = value.protocol_type or None
        group.protocol_name = value.protocol
        for r in value.members:
            rebalance_timeout = r.rebalance_timeout if r.rebalance_timeout >= 0 \
                else r.session_timeout
            m = Member(r.member_id, r.group_instance_id, r.client_id, r.client_host,
                       rebalance_timeout, r.session_timeout, group.protocol_type or "",
                       [(value.protocol or "", bytes(r.subscription))])
            m.assignment = bytes(r.assignment)
            m.session_deadline = now + r.session_timeout / 1000
            group.members[m.member_id] = m
            if m.group_instance_id is not None:
                group.static_members[m.group_instance_id] = m.member_id
        if group.members:
            group.state = GroupState.STABLE
            group.leader_id = value.leader if value.leader in group.members \
                else next(iter(group.members))
        return group
