"""The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) over classic groups.

Kafka's GroupMetadataManager runs it as classicGroupJoin, classicGroupSync, classicGroupHeartbeat
and classicGroupLeave; the group it changes is classic.py's ClassicGroup, whose states are
group_state.py's table.

Join phase (JoinGroup). A JoinGroup with an empty member id from a dynamic member (v4+, KIP-394)
is answered at once with MEMBER_ID_REQUIRED and a new member id, remembered as *pending* for one
session timeout; the member joins again with it. Any join of a new member, a leader's join, or a
member with changed protocols moves the group to PreparingRebalance; every member must then send
JoinGroup again, and those requests wait. The phase ends when all members and no pending ones have
joined, or when the rebalance timeout (the largest of the members') runs out: dynamic members that
did not rejoin are dropped, static ones keep their place. The first rebalance of an Empty group
waits `group.initial.rebalance.delay.ms` for more members first (trioka's default 0). Then the
generation goes up, a protocol is chosen by vote, a leader is chosen (the old one if it rejoined),
and every waiting JoinGroup is answered; only the leader's answer lists the members.

Sync phase (SyncGroup). Followers wait for the leader's SyncGroup, which carries every member's
assignment (opaque bytes: the client's assignor decided it). The group metadata with all
assignments is written to `__consumer_offsets`, the group becomes Stable and each waiting member
gets its own assignment. A member that sends no SyncGroup within the rebalance timeout is dropped.

Liveness. Each member must send Heartbeat (or JoinGroup or SyncGroup) within its session timeout;
one that does not is dropped and the others rebalance. A Heartbeat during PreparingRebalance is
answered REBALANCE_IN_PROGRESS, which tells the member to rejoin. LeaveGroup drops members at once.

Static membership (KIP-345, static_members.py). A member with a `group.instance.id` that comes
back with an empty member id replaces its old self: the old member id is fenced
(FENCED_INSTANCE_ID), and in a Stable group whose chosen protocol stays the same it gets its old
assignment back without a rebalance.

Group kinds. A JoinGroup for the id of a KIP-848 consumer group with members is
INCONSISTENT_GROUP_PROTOCOL; an empty one becomes a classic group (group_metadata_manager.py).

Timing. Deadlines are times of the clock's monotonic time (seconds). The synchronous half of each
request (`join`, `sync`, `heartbeat_now`, `leave_group`) is a plain `def`, atomic under trio;
`expire(now)` applies the deadlines that passed, and the coordinator's timer task calls it when
the next one (`next_deadline`) comes. A JoinGroup or SyncGroup that must wait parks on its
Waiter's trio.Event, each wait bounded by the deadline that must end it.

Not done: `group.max.size` beyond refusing new members of a full group.
"""

import logging
import math
import uuid

from trioka.clock import Clock
from trioka.coordinator.classic import ClassicGroup, JoinResult, Member, SyncResult, Waiter
from trioka.coordinator.group_metadata_manager import GroupMetadataManager
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.offsets import group_metadata_key, group_metadata_value
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")

EMPTY = GroupState.EMPTY
PREPARING_REBALANCE = GroupState.PREPARING_REBALANCE
COMPLETING_REBALANCE = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

# A parked JoinGroup/SyncGroup is answered by the deadline that ends its phase; its own wait gives
# the timer task this much longer before it settles the phase itself.
WAIT_SLACK = 1.0


def _error_join(code: int, member_id: str = "") -> JoinResult:
    return JoinResult(error=code, member_id=member_id)


class ClassicGroupProtocol:
    def __init__(self, config, metadata: GroupMetadataManager, clock: Clock, schedule):
        self.initial_rebalance_delay_ms = config.group_initial_rebalance_delay_ms
        self.min_session_timeout_ms = config.group_min_session_timeout_ms
        self.max_session_timeout_ms = config.group_max_session_timeout_ms
        self.max_size = config.group_max_size
        self.metadata = metadata
        self.clock = clock
        self.schedule = schedule     # schedule(deadline): the timer task must wake by then
        # KIP-848 online migration (migration.py): serves JoinGroup, SyncGroup, Heartbeat and
        # LeaveGroup of classic members of consumer groups; None: they are refused.
        self.migration = None

    @property
    def groups(self) -> dict[str, ClassicGroup]:
        return self.metadata.groups

    # ------------------------------------------------------------------------------- timers

    def next_deadline(self) -> float:
        """The earliest deadline of any classic group (math.inf when there is none)."""
        return min((group.next_deadline() for group in self.groups.values()), default=math.inf)

    def unload(self) -> None:
        """Answer every parked JoinGroup and SyncGroup NOT_COORDINATOR (the coordinator stops)."""
        for group in self.groups.values():
            self.unload_group(group)

    def unload_group(self, group: ClassicGroup) -> None:
        """Answer the group's parked JoinGroup and SyncGroup NOT_COORDINATOR (this node no
        longer coordinates it: its members look for the coordinator again)."""
        for m in group.members.values():
            if m.join_waiter is not None:
                m.join_waiter.complete(_error_join(ErrorCode.NOT_COORDINATOR, m.member_id))
            if m.sync_waiter is not None:
                m.sync_waiter.complete(SyncResult(error=ErrorCode.NOT_COORDINATOR))

    def expire(self, now: float) -> None:
        """Apply every deadline at or before `now`: pending members and sessions that ran out,
        join phases that reached their end, members that did not sync in time."""
        for group in list(self.groups.values()):
            for member_id, deadline in list(group.pending_members.items()):
                if deadline <= now:
                    del group.pending_members[member_id]
                    self._try_complete_join(group, now)
                    self.metadata.forget_if_unused(group)
            for m in list(group.members.values()):
                if (not m.awaiting_join and not m.awaiting_sync and m.session_deadline <= now
                        and group.members.get(m.member_id) is m):
                    log.info("group %s: member %s missed its session timeout", group.group_id,
                             m.member_id)
                    self._remove_member_and_update(group, m.member_id, now)
            if (group.is_in(PREPARING_REBALANCE) and group.join_deadline is not None
                    and group.join_deadline <= now):
                if (group.initial_delay and group.new_member_added
                        and group.initial_delay_remaining_ms > 0):
                    # More members arrived during the initial delay: wait once more.
                    delay = min(self.initial_rebalance_delay_ms, group.initial_delay_remaining_ms)
                    group.initial_delay_remaining_ms -= delay
                    group.new_member_added = False
                    group.join_deadline = now + delay / 1000
                else:
                    self._complete_join(group, now)
            if (group.sync_deadline is not None and group.sync_deadline <= now
                    and group.is_in(COMPLETING_REBALANCE, STABLE)):
                group.sync_deadline = None
                late = list(group.pending_sync)
                group.pending_sync.clear()
                if late:
                    log.info("group %s: members %s sent no SyncGroup in time", group.group_id,
                             late)
                    for member_id in late:
                        self._drop_member(group, member_id)
                    self._prepare_rebalance(group, now)

    async def _wait(self, group: ClassicGroup, waiter: Waiter, phase: GroupState,
                    deadline_of, timed_out):
        """Wait for a parked request's answer: at most until the deadline that ends its phase
        (`deadline_of(group)`), plus WAIT_SLACK for the timer task to act. Should the timer task
        not act, the wait settles the phase itself; should even that not answer it, the member
        stops waiting and gets `timed_out`."""
        while waiter.result is None:
            if self.groups.get(group.group_id) is not group or not group.is_in(phase):
                break
            deadline = deadline_of(group)
            if deadline is None:
                break
            with self.clock.move_on_at(deadline + WAIT_SLACK):
                await waiter.event.wait()
            if waiter.result is None:
                self.expire(self.clock.monotonic())
                if deadline_of(group) == deadline:
                    break
        if waiter.result is None:
            waiter.complete(timed_out)
            for m in group.members.values():
                if m.join_waiter is waiter:
                    m.join_waiter = None
                if m.sync_waiter is waiter:
                    m.sync_waiter = None
        return waiter.result

    # ------------------------------------------------------------------------- JoinGroup

    async def join_group(self, group_id: str, member_id: str, *,
                         group_instance_id: str | None = None, client_id: str = "",
                         client_host: str = "", session_timeout_ms: int,
                         rebalance_timeout_ms: int = -1, protocol_type: str,
                         protocols: list[tuple[str, bytes]],
                         require_known_member_id: bool = True) -> JoinResult:
        """Kafka's JoinGroup. `require_known_member_id` is v4+ (KIP-394)."""
        if rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms   # v0 has no rebalance timeout
        log.debug("JoinGroup %s member %r instance %r", group_id, member_id, group_instance_id)
        outcome = self.join(self.clock.monotonic(), group_id, member_id, group_instance_id,
                            client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                            protocol_type, [(n, bytes(m)) for n, m in protocols],
                            require_known_member_id)
        if isinstance(outcome, JoinResult):
            return outcome
        return await self._wait(self.groups[group_id], outcome, PREPARING_REBALANCE,
                                lambda g: g.join_deadline,
                                _error_join(ErrorCode.REBALANCE_IN_PROGRESS, member_id))

    def join(self, now: float, group_id: str, member_id: str, group_instance_id: str | None,
             client_id: str, client_host: str, session_timeout_ms: int,
             rebalance_timeout_ms: int, protocol_type: str, protocols: list[tuple[str, bytes]],
             require_known_member_id: bool) -> JoinResult | Waiter:
        """The synchronous part of JoinGroup: an answer now, or a Waiter for the end of the join
        phase."""
        if not group_id:
            return _error_join(ErrorCode.INVALID_GROUP_ID, member_id)
        if not self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms:
            return _error_join(ErrorCode.INVALID_SESSION_TIMEOUT, member_id)
        consumer_group = self.metadata.consumer_groups.get(group_id)
        if consumer_group is not None:
            # A KIP-848 group with members serves the classic member itself (migration.py); an
            # empty one becomes a classic group (its committed offsets stay).
            if not consumer_group.is_empty():
                if self.migration is None:
                    return _error_join(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
                return self.migration.classic_join(
                    now, consumer_group, member_id, group_instance_id, client_id, client_host,
                    session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols,
                    require_known_member_id)
            self.metadata.convert_to_classic_group(group_id)
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return _error_join(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            group = self.metadata.create_classic_group(group_id)
        try:
            if group.is_in(DEAD):
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            if not group.supports_protocols(protocol_type, [n for n, _ in protocols]):
                raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            if (member_id not in group.members and len(group.members) >= self.max_size
                    and not (group_instance_id is not None and not member_id
                             and group_instance_id in group.static_members)):
                raise KafkaError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                 f"group {group_id} already has {len(group.members)} members")
            new = Member(member_id, group_instance_id, client_id, client_host,
                         rebalance_timeout_ms, session_timeout_ms, protocol_type, protocols)
            if not member_id:
                return self._join_new_member(group, now, new, require_known_member_id)
            return self._join_existing_member(group, now, new)
        except KafkaError as e:
            self.metadata.forget_if_unused(group)
            return _error_join(e.code, member_id)

    def _join_new_member(self, group: ClassicGroup, now: float, new: Member,
                         require_known_member_id: bool) -> JoinResult | Waiter:
        new.member_id = f"{new.group_instance_id or new.client_id}-{uuid.uuid4()}"
        if new.is_static:
            old_id = group.static_members.get(new.group_instance_id)
            if old_id is not None:
                return self._replace_static_member(group, now, old_id, new)
            return self._add_member_and_rebalance(group, now, new)
        if require_known_member_id:
            # KIP-394: hand out the id; the member becomes one when it joins again with it.
            deadline = now + new.session_timeout_ms / 1000
            group.pending_members[new.member_id] = deadline
            self.schedule(deadline)
            return _error_join(ErrorCode.MEMBER_ID_REQUIRED, new.member_id)
        return self._add_member_and_rebalance(group, now, new)

    def _join_existing_member(self, group: ClassicGroup, now: float,
                              new: Member) -> JoinResult | Waiter:
        member_id = new.member_id
        if member_id in group.pending_members and not new.is_static:
            del group.pending_members[member_id]
            return self._add_member_and_rebalance(group, now, new)
        member = group.validate_member(member_id, new.group_instance_id) \
            if new.is_static else group.members.get(member_id)
        if member is None or group.is_in(EMPTY, DEAD):
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
        self._heartbeat(member, now)
        if group.is_in(PREPARING_REBALANCE):
            return self._update_member_and_await_join(group, now, member, new)
        if group.is_in(COMPLETING_REBALANCE):
            if member.matches(new.protocols):
                # The member did not get (or lost) the answer of the join phase: repeat it.
                return self._join_answer(group, member)
            return self._update_member_and_rebalance(group, now, member, new)
        # Stable
        if group.is_leader(member_id) or not member.matches(new.protocols):
            return self._update_member_and_rebalance(group, now, member, new)
        return self._join_answer(group, member)

    def _replace_static_member(self, group: ClassicGroup, now: float, old_id: str,
                               new: Member) -> JoinResult | Waiter:
        old = group.replace_static_member(old_id, new)
        log.info("group %s: static member %s is back as %s", group.group_id,
                 new.group_instance_id, new.member_id)
        fenced = ErrorCode.FENCED_INSTANCE_ID
        if old.join_waiter is not None:
            old.join_waiter.complete(_error_join(fenced, old_id))
        if old.sync_waiter is not None:
            old.sync_waiter.complete(SyncResult(error=fenced))
        self._heartbeat(new, now)
        if group.is_in(STABLE):
            if group.select_protocol() == group.protocol_name:
                # Nothing the group agreed on changes: keep the generation and the assignment.
                self._store_group(group)
                is_leader = group.is_leader(new.member_id)
                answer = self._join_answer(group, new)
                answer.skip_assignment = is_leader
                return answer
            return self._prepare_rebalance_and_await_join(group, now, new)
        if group.is_in(COMPLETING_REBALANCE):
            # The leader may be assigning to the old member id: run the rebalance again.
            return self._prepare_rebalance_and_await_join(group, now, new)
        return self._await_join(group, now, new)

    def _add_member_and_rebalance(self, group: ClassicGroup, now: float,
                                  member: Member) -> JoinResult | Waiter:
        group.add_member(member)
        group.new_member_added = True
        self._heartbeat(member, now)
        return self._prepare_rebalance_and_await_join(group, now, member)

    def _update_member_and_rebalance(self, group, now, member, new) -> JoinResult | Waiter:
        self._update_member(member, new)
        return self._prepare_rebalance_and_await_join(group, now, member)

    def _update_member_and_await_join(self, group, now, member, new) -> JoinResult | Waiter:
        self._update_member(member, new)
        return self._await_join(group, now, member)

    @staticmethod
    def _update_member(member: Member, new: Member) -> None:
        member.protocols = new.protocols
        member.rebalance_timeout_ms = new.rebalance_timeout_ms
        member.session_timeout_ms = new.session_timeout_ms
        member.client_id = new.client_id
        member.client_host = new.client_host

    def _prepare_rebalance_and_await_join(self, group, now, member) -> JoinResult | Waiter:
        if group.is_in(EMPTY, STABLE, COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now)
        return self._await_join(group, now, member)

    def _await_join(self, group: ClassicGroup, now: float, member: Member) -> JoinResult | Waiter:
        if member.join_waiter is not None:
            # A second JoinGroup of the same member replaces the first, which must still end.
            member.join_waiter.complete(_error_join(ErrorCode.REBALANCE_IN_PROGRESS,
                                                    member.member_id))
        waiter = member.join_waiter = Waiter()
        self._try_complete_join(group, now)
        return waiter.result if waiter.result is not None else waiter

    def _join_answer(self, group: ClassicGroup, member: Member) -> JoinResult:
        leader = group.is_leader(member.member_id)
        return JoinResult(member_id=member.member_id, generation_id=group.generation_id,
                          protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                          leader=group.leader_id or "",
                          members=group.current_member_metadata() if leader else [])

    def _prepare_rebalance(self, group: ClassicGroup, now: float) -> None:
        """Start a join phase (from Empty, CompletingRebalance or Stable)."""
        if group.is_in(COMPLETING_REBALANCE):
            # The leader's assignment will not come for this generation any more.
            for m in group.members.values():
                m.assignment = b""
            self._complete_syncs(group, SyncResult(error=ErrorCode.REBALANCE_IN_PROGRESS))
        rebalance_ms = group.rebalance_timeout_ms()
        delay = self.initial_rebalance_delay_ms
        if group.is_in(EMPTY) and delay > 0:
            group.initial_delay = True
            group.initial_delay_remaining_ms = max(rebalance_ms - delay, 0)
            group.join_deadline = now + min(delay, rebalance_ms) / 1000
        else:
            group.initial_delay = False
            group.join_deadline = now + rebalance_ms / 1000
        group.new_member_added = False
        group.pending_sync.clear()
        group.sync_deadline = None
        group.transition_to(PREPARING_REBALANCE, self.clock.wall_ms())
        self.schedule(group.join_deadline)
        # Nobody may be left to wait for (the last member just left).
        self._try_complete_join(group, now)

    def _try_complete_join(self, group: ClassicGroup, now: float) -> None:
        if group.is_in(PREPARING_REBALANCE) and not group.initial_delay \
                and group.all_members_joined():
            self._complete_join(group, now)

    def _complete_join(self, group: ClassicGroup, now: float) -> None:
        """End the join phase: drop dynamic members that did not rejoin, start the next
        generation, answer every waiting JoinGroup."""
        for m in list(group.members.values()):
            if not m.awaiting_join and not m.is_static:
                log.info("group %s: member %s did not rejoin in time", group.group_id,
                         m.member_id)
                self._drop_member(group, m.member_id)
        leader = group.members.get(group.leader_id)
        if leader is None or not leader.awaiting_join:
            joined = [m for m in group.members.values() if m.awaiting_join]
            if joined:
                group.leader_id = joined[0].member_id
            elif leader is None:
                group.leader_id = next(iter(group.members), None)
        group.join_deadline = None
        group.initial_delay = False
        group.generation_id += 1
        if not group.members:
            group.protocol_name = None
            group.transition_to(EMPTY, self.clock.wall_ms())
            self._store_group(group)
            return
        group.protocol_name = group.select_protocol()
        group.transition_to(COMPLETING_REBALANCE, self.clock.wall_ms())
        group.pending_sync = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout_ms() / 1000
        self.schedule(group.sync_deadline)
        for m in group.members.values():
            if m.join_waiter is not None:
                self._heartbeat(m, now)
                waiter, m.join_waiter = m.join_waiter, None
                waiter.complete(self._join_answer(group, m))

    # ------------------------------------------------------------------------- SyncGroup

    async def sync_group(self, group_id: str, generation_id: int, member_id: str, *,
                         group_instance_id: str | None = None, protocol_type: str | None = None,
                         protocol_name: str | None = None,
                         assignments: dict[str, bytes] | None = None) -> SyncResult:
        log.debug("SyncGroup %s generation %d member %r", group_id, generation_id, member_id)
        outcome = self.sync(self.clock.monotonic(), group_id, generation_id, member_id,
                            group_instance_id, protocol_type, protocol_name, assignments or {})
        if isinstance(outcome, SyncResult):
            return outcome
        return await self._wait(self.groups[group_id], outcome, COMPLETING_REBALANCE,
                                lambda g: g.sync_deadline,
                                SyncResult(error=ErrorCode.REBALANCE_IN_PROGRESS))

    def sync(self, now: float, group_id: str, generation_id: int, member_id: str,
             group_instance_id: str | None, protocol_type: str | None,
             protocol_name: str | None, assignments: dict[str, bytes]) -> SyncResult | Waiter:
        """The synchronous part of SyncGroup: an answer now, or a Waiter for the leader's."""
        try:
            if not group_id:
                raise KafkaError(ErrorCode.INVALID_GROUP_ID)
            consumer_group = self.metadata.consumer_groups.get(group_id)
            if consumer_group is not None and self.migration is not None:
                if consumer_group.is_empty():
                    raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
                return self.migration.classic_sync(now, consumer_group, generation_id,
                                                   member_id, group_instance_id, protocol_type,
                                                   protocol_name)
            group = self.groups.get(group_id)
            if group is None:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
            if group.is_in(DEAD):
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            member = group.validate_member(member_id, group_instance_id)
            if generation_id != group.generation_id:
                raise KafkaError(ErrorCode.ILLEGAL_GENERATION)
            if (protocol_type is not None and protocol_type != group.protocol_type) or \
                    (protocol_name is not None and protocol_name != group.protocol_name):
                raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            if group.is_in(PREPARING_REBALANCE):
                raise KafkaError(ErrorCode.REBALANCE_IN_PROGRESS)
            if group.is_in(EMPTY):
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
        except KafkaError as e:
            return SyncResult(error=e.code)
        self._heartbeat(member, now)
        group.pending_sync.discard(member_id)
        if group.is_in(STABLE):
            return self._sync_answer(group, member)
        # CompletingRebalance
        waiter = member.sync_waiter = Waiter()
        if group.is_leader(member_id):
            for m in group.members.values():
                m.assignment = bytes(assignments.get(m.member_id, b""))
            try:
                self._store_group(group, raise_errors=True)
            except KafkaError as e:
                # Kafka answers everyone with the storage error and starts over.
                for m in group.members.values():
                    m.assignment = b""
                log.error("group %s: rebalancing again: %s", group_id, e.message)
                self._complete_syncs(group, SyncResult(error=ErrorCode.COORDINATOR_NOT_AVAILABLE))
                self._prepare_rebalance(group, now)
                return waiter.result
            group.transition_to(STABLE, self.clock.wall_ms())
            for m in group.members.values():
                if m.sync_waiter is not None:
                    w, m.sync_waiter = m.sync_waiter, None
                    w.complete(self._sync_answer(group, m))
        return waiter.result if waiter.result is not None else waiter

    @staticmethod
    def _sync_answer(group: ClassicGroup, member: Member) -> SyncResult:
        return SyncResult(protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                          assignment=member.assignment)

    @staticmethod
    def _complete_syncs(group: ClassicGroup, result: SyncResult) -> None:
        for m in group.members.values():
            if m.sync_waiter is not None:
                w, m.sync_waiter = m.sync_waiter, None
                w.complete(result)

    # ------------------------------------------------------------------------- Heartbeat

    async def heartbeat(self, group_id: str, generation_id: int, member_id: str, *,
                        group_instance_id: str | None = None) -> int:
        return self.heartbeat_now(self.clock.monotonic(), group_id, generation_id, member_id,
                                  group_instance_id)

    def heartbeat_now(self, now: float, group_id: str, generation_id: int, member_id: str,
                      group_instance_id: str | None = None) -> int:
        """Kafka's Heartbeat: the error code of the answer."""
        log.debug("Heartbeat %s generation %d member %r", group_id, generation_id, member_id)
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        consumer_group = self.metadata.consumer_groups.get(group_id)
        if consumer_group is not None and self.migration is not None:
            return self.migration.classic_heartbeat(now, consumer_group, generation_id,
                                                    member_id, group_instance_id)
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            member = group.validate_member(member_id, group_instance_id)
        except KafkaError as e:
            return e.code
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_in(EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._heartbeat(member, now)
        if group.is_in(PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def _heartbeat(self, member: Member, now: float) -> None:
        member.session_deadline = now + member.session_timeout_ms / 1000
        self.schedule(member.session_deadline)

    # ------------------------------------------------------------------------ LeaveGroup

    def leave_group(self, group_id: str,
                    members: list[tuple[str | None, str | None]]) -> tuple[int, list[int]]:
        """Kafka's LeaveGroup for (member id, group instance id) pairs: (group error, one error
        per member). A member named by instance id must not name another member id."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, []
        consumer_group = self.metadata.consumer_groups.get(group_id)
        if consumer_group is not None and self.migration is not None:
            return self.migration.classic_leave(consumer_group, members)
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID, []
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        now = self.clock.monotonic()
        errors = []
        for member_id, instance_id in members:
            if instance_id is not None:
                # An admin client may name the instance id alone.
                try:
                    current = group.static_members.holder(instance_id, member_id or None)
                except KafkaError as e:
                    errors.append(e.code)
                    continue
                self._remove_member_and_update(group, current, now)
                errors.append(ErrorCode.NONE)
            elif member_id in group.pending_members:
                del group.pending_members[member_id]
                self._try_complete_join(group, now)
                errors.append(ErrorCode.NONE)
            elif member_id in group.members:
                self._remove_member_and_update(group, member_id, now)
                errors.append(ErrorCode.NONE)
            else:
                errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
        return ErrorCode.NONE, errors

    # ------------------------------------------------------------ online migration (KIP-848)

    @staticmethod
    def complete_waiters(group: ClassicGroup, code: int) -> None:
        """Answer the group's parked JoinGroup and SyncGroup requests with `code` (the group
        becomes a consumer group: they must rejoin)."""
        for m in group.members.values():
            if m.join_waiter is not None:
                waiter, m.join_waiter = m.join_waiter, None
                waiter.complete(_error_join(code, m.member_id))
            if m.sync_waiter is not None:
                waiter, m.sync_waiter = m.sync_waiter, None
                waiter.complete(SyncResult(error=code))

    def rebalance_after_downgrade(self, group: ClassicGroup) -> None:
        """A consumer group just became this Stable classic group: its members' sessions run
        from now and it rebalances, so that they rejoin and a leader assigns."""
        now = self.clock.monotonic()
        for m in group.members.values():
            self.schedule(m.session_deadline)
        self._prepare_rebalance(group, now)

    def _drop_member(self, group: ClassicGroup, member_id: str) -> None:
        """Remove a member; its parked requests are answered UNKNOWN_MEMBER_ID."""
        member = group.remove_member(member_id)
        if member is None:
            return
        if member.join_waiter is not None:
            member.join_waiter.complete(_error_join(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
            member.join_waiter = None
        if member.sync_waiter is not None:
            member.sync_waiter.complete(SyncResult(error=ErrorCode.UNKNOWN_MEMBER_ID))
            member.sync_waiter = None

    def _remove_member_and_update(self, group: ClassicGroup, member_id: str, now: float) -> None:
        """A member left or died: the others rebalance."""
        self._drop_member(group, member_id)
        if group.is_in(STABLE, COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now)
        elif group.is_in(PREPARING_REBALANCE):
            self._try_complete_join(group, now)

    # --------------------------------------------------------------------- persistence

    def _store_group(self, group: ClassicGroup, *, raise_errors: bool = False) -> None:
        """Write the group's metadata (generation, protocol, leader, members with their
        assignments) to its `__consumer_offsets` partition."""
        record = (group_metadata_key(group.group_id), group_metadata_value(group.to_record()))
        try:
            self.metadata.append(group.group_id, [record])
        except KafkaError as e:
            log.error("group %s: cannot write its metadata: %s", group.group_id, e.message)
            if raise_errors:
                raise
