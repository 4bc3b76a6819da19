"""GroupCoordinator (`broker.groups`): the classic group protocol and committed offsets.

Every group id maps to a partition of `__consumer_offsets` whose leader is the group's coordinator;
this broker leads them all, so it coordinates every group. What it does, in Kafka's terms:

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

Static membership (KIP-345). A member with a `group.instance.id` that comes back with an empty
member id replaces its old self: the old member id is fenced (FENCED_INSTANCE_ID), and in a Stable
group whose chosen protocol stays the same it gets its old assignment back without a rebalance.

Offsets. OffsetCommit is checked against the group as apis.md §11 describes, then written to
`__consumer_offsets` before it is acknowledged; OffsetFetch reads them back from memory. The whole
state is replayed from `__consumer_offsets` when the broker starts, so groups and offsets survive
restarts and crashes: a group that was Stable is Stable again with its members, who keep
heartbeating as if nothing had happened.

Timing. Deadlines are on the trio clock (`clock`, seconds). `expire(now)` applies every deadline
that has passed; `run_timers()` is the task (in the broker's nursery) that calls it when the next
deadline comes. State changes are plain `def` (atomic under trio); JoinGroup and SyncGroup wait on
their Waiter's trio.Event, each wait bounded by the deadline that must end it.

KIP-848 consumer groups (ConsumerGroupHeartbeat, `group.protocol=consumer`) live in
`consumer_groups`, beside the classic ones; their model and reconciliation are consumer_group.py,
their assignors assignors.py. A group id belongs to one kind at a time: a ConsumerGroupHeartbeat
for a classic group with members is GROUP_ID_NOT_FOUND, a JoinGroup for a consumer group with
members INCONSISTENT_GROUP_PROTOCOL; an empty group of the other kind is converted (its records
get tombstones, its committed offsets stay).

Offset expiry (`offsets.retention.minutes`, checked every `offsets.retention.check.interval.ms`):
an offset with an explicit expire timestamp (OffsetCommit v2-4 retention) goes when that passes;
others go `offsets.retention.minutes` after the base time: when the group became Empty for a
classic group that used group management, the commit time for standalone commits and for the
topics a live consumer group no longer subscribes to. Groups left empty without offsets go too.

Not done: `group.max.size` beyond refusing new members of a full group; classic members in
consumer groups (KIP-848 online upgrade).
"""

import logging
import math
import time
import uuid

import trio

from trioka.coordinator import assignors, consumer_group
from trioka.coordinator.classic import ClassicGroup, JoinResult, Member, SyncResult, Waiter
from trioka.coordinator.consumer_group import (ConsumerGroup, ConsumerGroupSettings,
                                               HeartbeatRequest, HeartbeatResult)
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.offsets import (GROUP_METADATA_KEY_VERSION, OFFSETS_TOPIC,
                                        OffsetAndMetadata,
                                        OffsetsTopic, decode_key, decode_offset_commit_value,
                                        group_metadata_key, group_metadata_value,
                                        offset_commit_key, offset_commit_value)
from trioka.wire import schema
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.types import DecodeError

log = logging.getLogger("trioka.coordinator")

EMPTY = GroupState.EMPTY
PREPARING_REBALANCE = GroupState.PREPARING_REBALANCE
COMPLETING_REBALANCE = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

# A parked JoinGroup/SyncGroup is answered by the deadline that ends its phase; its own wait gives
# the timer task this much longer before it settles the phase itself.
WAIT_SLACK = 1.0

OFFSET_METADATA_MAX_BYTES = 4096   # Kafka's offset.metadata.max.bytes


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error_join(code: int, member_id: str = "") -> JoinResult:
    return JoinResult(error=code, member_id=member_id)


class GroupCoordinator:
    def __init__(self, config, logs, *, clock=trio.current_time, on_append=None,
                 offset_metadata_max_bytes: int = OFFSET_METADATA_MAX_BYTES):
        self.initial_rebalance_delay_ms = config.group_initial_rebalance_delay_ms
        self.min_session_timeout_ms = config.group_min_session_timeout_ms
        self.max_session_timeout_ms = config.group_max_session_timeout_ms
        self.max_size = config.group_max_size
        self.offset_metadata_max_bytes = offset_metadata_max_bytes
        self.topic = OffsetsTopic(logs, config.offsets_topic_num_partitions, on_append)
        self.clock = clock
        self.groups: dict[str, ClassicGroup] = {}
        # producer id -> group id -> offsets committed in its open transaction (TxnOffsetCommit)
        self.pending_txn_offsets: dict[int, dict[str, dict]] = {}
        self._wakeup = trio.Event()
        self._armed = math.inf      # when the timer task will next run expire()
        # KIP-848 consumer groups (ConsumerGroupHeartbeat) and their settings.
        self.consumer_groups: dict[str, ConsumerGroup] = {}
        self.consumer_settings = ConsumerGroupSettings(
            heartbeat_interval_ms=config.group_consumer_heartbeat_interval_ms,
            session_timeout_ms=config.group_consumer_session_timeout_ms,
            assignors=tuple(name for name in (n.strip() for n in
                                              config.group_consumer_assignors.split(","))
                            if name in assignors.ASSIGNORS) or (assignors.UNIFORM,),
            max_size=config.group_consumer_max_size)
        # Offset expiry: offsets.retention.minutes, checked every
        # offsets.retention.check.interval.ms (the next check on the trio clock).
        self.offsets_retention_ms = config.offsets_retention_minutes * 60_000
        self.offsets_check_interval_ms = config.offsets_retention_check_interval_ms
        self._next_offsets_check = math.inf

    # ------------------------------------------------------------------------------ loading

    def open(self) -> None:
        """Replay `__consumer_offsets`: the last record of each key wins, tombstones delete."""
        now = self.clock()
        groups: dict[str, object] = {}
        offsets: dict[str, dict] = {}
        consumer_records: dict[tuple, object] = {}
        for key, value in self.topic.replay():
            try:
                version, k = decode_key(key)
                if version in consumer_group.KEY_VERSIONS:
                    self._replay_consumer_group_record(consumer_records, version, key, value)
                    continue
                if k is None:
                    continue
                if version == GROUP_METADATA_KEY_VERSION:
                    groups[k.group] = schema.decode_record("GroupMetadataValue", value)[1] \
                        if value is not None else None
                else:
                    committed = offsets.setdefault(k.group, {})
                    if value is None:
                        committed.pop((k.topic, k.partition), None)
                    else:
                        committed[(k.topic, k.partition)] = decode_offset_commit_value(value)
            except (KafkaError, DecodeError) as e:
                log.warning("skipping a record of %s that does not parse: %s", OFFSETS_TOPIC, e)
        self.groups = {}
        self.consumer_groups = consumer_group.load(consumer_records, now,
                                                   self.consumer_settings, _now_ms())
        for group_id, value in groups.items():
            if value is not None and group_id not in self.consumer_groups:
                self.groups[group_id] = ClassicGroup.from_record(group_id, value, now)
        for group_id, committed in offsets.items():
            if committed:
                group = (self.consumer_groups.get(group_id) or self.groups.get(group_id)
                         or self._create_group(group_id))
                group.offsets.update(committed)
        self._next_offsets_check = now + self.offsets_check_interval_ms / 1000
        # Offsets of transactions still open wait for their marker, as before the restart.
        for producer_id, records in getattr(self.topic, "open_transactions", {}).items():
            for key, value in records:
                try:
                    version, k = decode_key(key)
                except (KafkaError, DecodeError):
                    continue
                if k is None or version == GROUP_METADATA_KEY_VERSION or value is None:
                    continue
                self.pending_txn_offsets.setdefault(producer_id, {}).setdefault(
                    k.group, {})[(k.topic, k.partition)] = decode_offset_commit_value(value)

    def _create_group(self, group_id: str) -> ClassicGroup:
        group = self.groups[group_id] = ClassicGroup(group_id, _now_ms())
        return group

    def _forget_if_unused(self, group: ClassicGroup) -> None:
        """A group nothing refers to (made by a JoinGroup that failed, or whose new member never
        came back with its id) leaves no trace."""
        if (group.is_in(EMPTY) and not group.members and not group.pending_members
                and not group.offsets and group.generation_id == 0
                and self.groups.get(group.group_id) is group):
            del self.groups[group.group_id]

    # ------------------------------------------------------------------------------- timers

    def _schedule(self, deadline: float) -> None:
        """A deadline was set: wake the timer task if it would otherwise sleep past it."""
        if deadline < self._armed:
            self._wakeup.set()

    def next_deadline(self) -> float:
        """The earliest deadline of any group (math.inf when there is none)."""
        soonest = math.inf
        for group in self.groups.values():
            for deadline in group.pending_members.values():
                soonest = min(soonest, deadline)
            for m in group.members.values():
                if not m.awaiting_join and not m.awaiting_sync:
                    soonest = min(soonest, m.session_deadline)
            if group.is_in(PREPARING_REBALANCE) and group.join_deadline is not None:
                soonest = min(soonest, group.join_deadline)
            if group.sync_deadline is not None and group.pending_sync:
                soonest = min(soonest, group.sync_deadline)
        for cgroup in self.consumer_groups.values():
            soonest = min(soonest, cgroup.next_deadline())
        return min(soonest, self._next_offsets_check)

    async def run_timers(self) -> None:
        """The timer task: sleep until the next deadline (or until an earlier one is set), then
        expire what is due."""
        while True:
            self._wakeup = trio.Event()
            self._armed = self.next_deadline()
            with trio.move_on_at(self._armed):
                await self._wakeup.wait()
            self._armed = math.inf
            self.expire(self.clock())

    async def unload_when(self, shutting_down: trio.Event) -> None:
        """Answer every parked request when the broker shuts down (see `unload`)."""
        await shutting_down.wait()
        self.unload()

    def unload(self) -> None:
        """The broker stops coordinating: parked JoinGroup and SyncGroup requests are answered
        NOT_COORDINATOR at once, as Kafka answers them when it unloads a coordinator, so that
        shutdown does not wait for them and their clients look for the coordinator again. The
        groups themselves are as their last records in `__consumer_offsets` left them."""
        for group in self.groups.values():
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
                    self._forget_if_unused(group)
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
        self._expire_consumer_groups(now)
        if now >= self._next_offsets_check:
            self._next_offsets_check = now + self.offsets_check_interval_ms / 1000
            self.expire_offsets(_now_ms())

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
            with trio.move_on_at(deadline + WAIT_SLACK):
                await waiter.event.wait()
            if waiter.result is None:
                self.expire(self.clock())
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
        outcome = self.join(self.clock(), group_id, member_id, group_instance_id, client_id,
                            client_host, session_timeout_ms, rebalance_timeout_ms,
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
        if group_id in self.consumer_groups:
            # A KIP-848 group: classic members may not join it while it has members; an empty
            # one becomes a classic group (its committed offsets stay).
            if not self.consumer_groups[group_id].is_empty():
                return _error_join(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
            self._convert_consumer_group_to_classic(group_id)
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return _error_join(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            group = self._create_group(group_id)
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
            self._forget_if_unused(group)
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
            self._schedule(deadline)
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
        group.transition_to(PREPARING_REBALANCE, _now_ms())
        self._schedule(group.join_deadline)
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
            group.transition_to(EMPTY, _now_ms())
            self._store_group(group)
            return
        group.protocol_name = group.select_protocol()
        group.transition_to(COMPLETING_REBALANCE, _now_ms())
        group.pending_sync = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout_ms() / 1000
        self._schedule(group.sync_deadline)
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
        outcome = self.sync(self.clock(), group_id, generation_id, member_id, group_instance_id,
                            protocol_type, protocol_name, assignments or {})
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
            group.transition_to(STABLE, _now_ms())
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
        return self.heartbeat_now(self.clock(), group_id, generation_id, member_id,
                                  group_instance_id)

    def heartbeat_now(self, now: float, group_id: str, generation_id: int, member_id: str,
                      group_instance_id: str | None = None) -> int:
        """Kafka's Heartbeat: the error code of the answer."""
        log.debug("Heartbeat %s generation %d member %r", group_id, generation_id, member_id)
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
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
        self._schedule(member.session_deadline)

    # ------------------------------------------------------------------------ LeaveGroup

    def leave_group(self, group_id: str,
                    members: list[tuple[str | None, str | None]]) -> tuple[int, list[int]]:
        """Kafka's LeaveGroup for (member id, group instance id) pairs: (group error, one error
        per member). A member named by instance id must not name another member id."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, []
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID, []
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        now = self.clock()
        errors = []
        for member_id, instance_id in members:
            if instance_id is not None:
                current = group.static_members.get(instance_id)
                if current is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                elif member_id and member_id != current:
                    errors.append(ErrorCode.FENCED_INSTANCE_ID)
                else:
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
            self.topic.append(group.group_id, [record], _now_ms())
        except KafkaError as e:
            log.error("group %s: cannot write its metadata: %s", group.group_id, e.message)
            if raise_errors:
                raise

    # ---------------------------------------------------------------------- offsets

    def validate_offset_commit(self, group_id: str, generation_id: int, member_id: str,
                               group_instance_id: str | None, api_version: int) -> ClassicGroup:
        """The group an OffsetCommit may write to, or KafkaError with the code every partition
        of the request gets. A commit outside group management (generation -1, no member id)
        creates an Empty "simple" group."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        if group_id in self.consumer_groups:
            cgroup = self.consumer_groups[group_id]
            cgroup.validate_offset_commit(member_id, generation_id, api_version)
            return cgroup
        group = self.groups.get(group_id)
        if group is None:
            if generation_id < 0:
                return self._create_group(group_id)
            # v9+ says so; older versions keep the answer they always had.
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND if api_version >= 9
                             else ErrorCode.ILLEGAL_GENERATION)
        if group.is_in(DEAD):
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if generation_id < 0 and group.is_in(EMPTY):
            return group
        if generation_id >= 0 or member_id or group_instance_id is not None:
            group.validate_member(member_id, group_instance_id)
            if generation_id != group.generation_id:
                raise KafkaError(ErrorCode.ILLEGAL_GENERATION)
        elif not group.is_in(EMPTY):
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(COMPLETING_REBALANCE):
            raise KafkaError(ErrorCode.REBALANCE_IN_PROGRESS)
        return group

    def store_offsets(self, group: ClassicGroup,
                      offsets: dict[tuple[str, int], OffsetAndMetadata]) -> None:
        """Write committed offsets (one batch) and then keep them; KafkaError if the write
        fails (nothing is kept then)."""
        if not offsets:
            return
        records = [(offset_commit_key(group.group_id, topic, partition),
                    offset_commit_value(committed))
                   for (topic, partition), committed in offsets.items()]
        self.topic.append(group.group_id, records, _now_ms())
        group.offsets.update(offsets)

    def fetch_offsets(self, group_id: str,
                      topics: list[tuple[str, list[int]]] | None) -> dict[str, list]:
        """OffsetFetch: topic -> [(partition, OffsetAndMetadata or None)]; `topics` None means
        every committed partition. An unknown group has no offsets (not an error)."""
        group = self.groups.get(group_id) or self.consumer_groups.get(group_id)
        committed = group.offsets if group is not None else {}
        out: dict[str, list] = {}
        if topics is None:
            for (topic, partition), value in sorted(committed.items()):
                out.setdefault(topic, []).append((partition, value))
            return out
        for topic, partitions in topics:
            out.setdefault(topic, []).extend(
                (p, committed.get((topic, p))) for p in partitions)
        return out

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> dict:
        """OffsetDelete: (topic, partition) -> error code; KafkaError for the whole group
        (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP)."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        group = self.groups.get(group_id) or self.consumer_groups.get(group_id)
        if group is None or group.state.value == "Dead":
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND)
        subscribed: set[str] = set()
        if isinstance(group, ConsumerGroup):
            subscribed = group.subscribed_topic_names() if group.members else set()
        elif not group.is_in(EMPTY):
            topics = group.subscribed_topics()
            if topics is None:
                raise KafkaError(ErrorCode.NON_EMPTY_GROUP)
            subscribed = topics
        results, doomed = {}, []
        for tp in partitions:
            if tp[0] in subscribed:
                results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                results[tp] = ErrorCode.NONE
                if tp in group.offsets:
                    doomed.append(tp)
        if doomed:
            self.topic.append(group_id, [(offset_commit_key(group_id, t, p), None)
                                         for t, p in doomed], _now_ms())
            for tp in doomed:
                del group.offsets[tp]
        return results

    # ========================================== KIP-848 consumer groups (ConsumerGroupHeartbeat)

    def consumer_group_heartbeat(self, group_id: str, member_id: str, member_epoch: int, *,
                                 instance_id: str | None = None, rack_id: str | None = None,
                                 rebalance_timeout_ms: int = -1,
                                 subscribed_topic_names: list[str] | None = None,
                                 subscribed_topic_regex: str | None = None,
                                 server_assignor: str | None = None,
                                 topic_partitions: list | None = None, client_id: str = "",
                                 client_host: str = "", api_version: int = 1) -> HeartbeatResult:
        """Kafka's ConsumerGroupHeartbeat: join (member epoch 0), heartbeat, or leave (-1; -2 for
        a static member that will come back). `topic_partitions` are (topic id, partitions) pairs;
        KafkaError for the response's error code. The group's records are written to
        `__consumer_offsets` before the answer."""
        self._validate_heartbeat(group_id, member_id, member_epoch, instance_id, rack_id,
                                 rebalance_timeout_ms, subscribed_topic_names,
                                 subscribed_topic_regex, server_assignor, topic_partitions,
                                 api_version)
        now = self.clock()
        records: list = []
        catalog = self._topic_catalog()
        settings = self.consumer_settings
        if member_epoch < 0:
            group = self._consumer_group(group_id)
            result = group.leave(member_id, instance_id, member_epoch, catalog, settings, records)
            self._write(group_id, records)
            return result
        group = self.consumer_groups.get(group_id)
        classic = None
        if group is None:
            classic = self.groups.get(group_id)
            if member_epoch != 0:
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                                 f"Consumer group {group_id} not found.")
            if classic is not None and not self._classic_group_is_empty(classic):
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                                 f"Group {group_id} is not a consumer group.")
            group = ConsumerGroup(group_id, _now_ms())
        if not member_id:
            member_id = str(uuid.uuid4())     # v0: the coordinator names new members
        owned = None
        if topic_partitions is not None:
            owned = {}
            for topic_id, partitions in topic_partitions:
                owned.setdefault(topic_id, set()).update(partitions)
        request = HeartbeatRequest(
            member_id=member_id, member_epoch=member_epoch, instance_id=instance_id,
            rack_id=rack_id, rebalance_timeout_ms=rebalance_timeout_ms,
            subscribed_topic_names=subscribed_topic_names,
            subscribed_topic_regex=subscribed_topic_regex, server_assignor=server_assignor,
            owned=owned, client_id=client_id, client_host=client_host)
        result = group.heartbeat(now, request, catalog, settings, records)
        if group_id not in self.consumer_groups:
            if classic is not None:
                # An empty classic group becomes a consumer group; its offsets stay.
                log.info("group %s: the empty classic group becomes a consumer group", group_id)
                records[:0] = [(group_metadata_key(group_id), None)]
                group.offsets.update(classic.offsets)
                del self.groups[group_id]
            self.consumer_groups[group_id] = group
        self._write(group_id, records)
        self._schedule(group.next_deadline())
        return result

    def _validate_heartbeat(self, group_id, member_id, member_epoch, instance_id, rack_id,
                            rebalance_timeout_ms, subscribed_topic_names, subscribed_topic_regex,
                            server_assignor, topic_partitions, api_version) -> None:
        """INVALID_REQUEST for a request Kafka refuses as malformed, UNSUPPORTED_ASSIGNOR for an
        assignor this broker does not have."""
        def invalid(message: str):
            return KafkaError(ErrorCode.INVALID_REQUEST, message)

        def blank(value: str | None) -> bool:
            return value is not None and not value.strip()

        if (api_version >= 1 or member_epoch > 0 or member_epoch == -1) and not member_id.strip():
            raise invalid("MemberId can't be empty.")
        if not group_id.strip():
            raise invalid("GroupId can't be empty.")
        if blank(instance_id):
            raise invalid("InstanceId can't be empty.")
        if blank(rack_id):
            raise invalid("RackId can't be empty.")
        if member_epoch == 0:
            if rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if topic_partitions is None or any(ps for _, ps in topic_partitions):
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if subscribed_topic_names is None and subscribed_topic_regex is None:
                raise invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be "
                              "non-null when (re-)joining.")
        elif member_epoch == -2:
            if instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif member_epoch < -2:
            raise invalid("MemberEpoch is invalid.")
        if server_assignor is not None and server_assignor not in self.consumer_settings.assignors:
            raise KafkaError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                             f"ServerAssignor {server_assignor} is not supported. Supported "
                             f"assignors: {', '.join(self.consumer_settings.assignors)}.")

    def _consumer_group(self, group_id: str) -> ConsumerGroup:
        group = self.consumer_groups.get(group_id)
        if group is None:
            if group_id in self.groups:
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                                 f"Group {group_id} is not a consumer group.")
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
        return group

    @staticmethod
    def _classic_group_is_empty(group: ClassicGroup) -> bool:
        return group.is_in(EMPTY) and not group.members and not group.pending_members

    def _topic_catalog(self) -> dict:
        """Every topic a consumer group may subscribe to: name -> (topic id, partitions)."""
        return {t.name: (t.topic_id, t.num_partitions) for t in self.topic.logs.topics()}

    def _write(self, group_id: str, records: list) -> None:
        """Append a consumer group's records to its `__consumer_offsets` partition. The state
        already changed; a failed write is logged (the group then restarts from older records)."""
        if not records:
            return
        try:
            self.topic.append(group_id, records, _now_ms())
        except KafkaError as e:
            log.error("group %s: cannot write its records: %s", group_id, e.message)

    def _expire_consumer_groups(self, now: float) -> None:
        """Members whose session or revocation ran out leave their groups."""
        catalog = None
        for group in list(self.consumer_groups.values()):
            if group.next_deadline() > now:
                continue
            catalog = catalog if catalog is not None else self._topic_catalog()
            records: list = []
            group.expire(now, catalog, self.consumer_settings, records)
            self._write(group.group_id, records)

    def _replay_consumer_group_record(self, out: dict, version: int, key, value) -> None:
        """Keep the last value of a consumer group record's key (a tombstone removes it)."""
        group_id, member_id = consumer_group.decode_key(version, key)
        if value is None:
            out.pop((version, group_id, member_id), None)
        else:
            out[(version, group_id, member_id)] = consumer_group.decode_value(version, value)

    def _convert_consumer_group_to_classic(self, group_id: str) -> None:
        """An empty consumer group gives its id to a classic group: tombstones for its records,
        its offsets move over."""
        group = self.consumer_groups.pop(group_id)
        self._write(group_id, group.deletion_records())
        log.info("group %s: the empty consumer group becomes a classic group", group_id)
        if group.offsets:
            self._create_group(group_id).offsets.update(group.offsets)

    def _delete_consumer_group(self, group_id: str) -> int:
        """DeleteGroups of a consumer group: only an empty one, with tombstones for its records
        and offsets."""
        group = self.consumer_groups[group_id]
        if not group.is_empty():
            return ErrorCode.NON_EMPTY_GROUP
        records = [(offset_commit_key(group_id, t, p), None) for t, p in group.offsets]
        records.extend(group.deletion_records())
        try:
            self.topic.append(group_id, records, _now_ms())
        except KafkaError as e:
            return e.code
        group.dead = True
        del self.consumer_groups[group_id]
        return ErrorCode.NONE

    def describe_consumer_group(self, group_id: str) -> ConsumerGroup:
        """ConsumerGroupDescribe: the group, or KafkaError (INVALID_GROUP_ID, GROUP_ID_NOT_FOUND
        also for a classic group)."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        return self._consumer_group(group_id)

    def validate_offset_fetch(self, group_id: str, member_id: str | None,
                              member_epoch: int) -> None:
        """OffsetFetch v9 of a consumer group's member: KafkaError unless it is a member at its
        current epoch. Classic groups do not check (their members send no epoch)."""
        group = self.consumer_groups.get(group_id)
        if group is not None:
            group.validate_offset_fetch(member_id, member_epoch)

    # ------------------------------------------------------------------ offset expiry

    def expire_offsets(self, now_ms: int) -> int:
        """Remove committed offsets that expired by `now_ms` (wall clock), with tombstones, and
        the empty groups left without offsets. The number of offsets removed."""
        removed = 0
        for group in list(self.groups.values()) + list(self.consumer_groups.values()):
            base_of, keep = self._offset_expiry(group)
            if base_of is None:
                continue
            expired = [tp for tp, committed in group.offsets.items()
                       if tp[0] not in keep and self._offset_expired(committed, base_of(committed),
                                                                     now_ms)]
            records = [(offset_commit_key(group.group_id, t, p), None) for t, p in expired]
            empty = (group.is_empty() if isinstance(group, ConsumerGroup)
                     else self._classic_group_is_empty(group))
            delete = empty and len(expired) == len(group.offsets)
            if delete:
                records.extend(group.deletion_records() if isinstance(group, ConsumerGroup)
                               else [(group_metadata_key(group.group_id), None)])
            if not records:
                continue
            try:
                self.topic.append(group.group_id, records, now_ms)
            except KafkaError as e:
                log.error("group %s: cannot write offset tombstones: %s", group.group_id,
                          e.message)
                continue
            for tp in expired:
                del group.offsets[tp]
            removed += len(expired)
            if expired:
                log.info("group %s: %d committed offsets expired", group.group_id, len(expired))
            if delete:
                log.info("group %s: removed, empty and without offsets", group.group_id)
                if isinstance(group, ConsumerGroup):
                    group.dead = True
                    del self.consumer_groups[group.group_id]
                else:
                    group.transition_to(DEAD, now_ms)
                    del self.groups[group.group_id]
        return removed

    def _offset_expiry(self, group):
        """(the time an offset's retention counts from, topics whose offsets are kept), or
        (None, ...) when the group's offsets do not expire now. As Kafka: a classic group that
        used group management counts from when it became Empty, and while Stable expires only
        topics its consumers no longer subscribe to; standalone commits and consumer groups
        count from the commit."""
        def committed_at(committed):
            return committed.commit_timestamp_ms

        if isinstance(group, ConsumerGroup):
            return committed_at, group.subscribed_topic_names() if group.members else set()
        if group.is_in(DEAD):
            return None, set()
        if group.protocol_type is None:
            return committed_at, set()
        if self._classic_group_is_empty(group):
            since = group.state_timestamp_ms
            return (lambda c: since if since >= 0 else c.commit_timestamp_ms), set()
        if group.is_in(STABLE):
            topics = group.subscribed_topics()
            if topics is not None:
                return committed_at, topics
        return None, set()

    def _offset_expired(self, committed: OffsetAndMetadata, base_ms: int, now_ms: int) -> bool:
        if committed.expire_timestamp_ms != -1:
            return now_ms >= committed.expire_timestamp_ms
        return now_ms - base_ms >= self.offsets_retention_ms

    # ------------------------------------------------------------------------ admin

    def delete_groups(self, group_ids: list[str]) -> dict[str, int]:
        """DeleteGroups: group id -> error code. Only Empty groups go; their metadata and every
        committed offset get tombstones."""
        results = {}
        for group_id in group_ids:
            group = self.groups.get(group_id)
            if group_id in self.consumer_groups:
                results[group_id] = self._delete_consumer_group(group_id)
                continue
            if not group_id:
                results[group_id] = ErrorCode.INVALID_GROUP_ID
            elif group is None or group.is_in(DEAD):
                results[group_id] = ErrorCode.GROUP_ID_NOT_FOUND
            elif not group.is_in(EMPTY):
                results[group_id] = ErrorCode.NON_EMPTY_GROUP
            else:
                records = [(offset_commit_key(group_id, t, p), None) for t, p in group.offsets]
                records.append((group_metadata_key(group_id), None))
                try:
                    self.topic.append(group_id, records, _now_ms())
                except KafkaError as e:
                    results[group_id] = e.code
                    continue
                group.pending_members.clear()
                group.transition_to(DEAD, _now_ms())
                del self.groups[group_id]
                results[group_id] = ErrorCode.NONE
        return results

    def describe_group(self, group_id: str) -> ClassicGroup | None:
        """The group DescribeGroups describes; None when unknown (described as Dead)."""
        return self.groups.get(group_id)

    def list_groups(self, states: list[str] | None = None,
                    types: list[str] | None = None) -> list[ClassicGroup]:
        """ListGroups: every live group, filtered by state names and group types (both compared
        without regard to case, as Kafka does); empty filters match everything."""
        wanted_states = {s.lower() for s in states or ()}
        wanted_types = {t.lower() for t in types or ()}
        out = []
        for group in self.groups.values():
            if group.is_in(DEAD):
                continue
            if wanted_states and group.state.value.lower() not in wanted_states:
                continue
            if wanted_types and "classic" not in wanted_types:
                continue
            out.append(group)
        for cgroup in self.consumer_groups.values():
            if wanted_states and cgroup.state.value.lower() not in wanted_states:
                continue
            if wanted_types and consumer_group.GROUP_TYPE not in wanted_types:
                continue
            out.append(cgroup)
        return out

    # ---------------------------------------------------- transactional offsets (KIP-98/447)

    def txn_offset_commit(self, group_id: str, producer_id: int, producer_epoch: int,
                          generation_id: int, member_id: str, group_instance_id: str | None,
                          offsets: dict[tuple[str, int], OffsetAndMetadata]) -> None:
        """TxnOffsetCommit: offsets written as part of the producer's transaction. They are
        pending, invisible to OffsetFetch, until the transaction's marker reaches the group's
        partition: COMMIT applies them, ABORT drops them (`complete_transaction`). From v3 a
        member and generation may be given (KIP-447): they are checked as OffsetCommit checks
        them, so a zombie consumer-producer is fenced; the group's state is not."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        if group_id in self.consumer_groups:
            # A KIP-848 group: the generation is the member's epoch.
            self.consumer_groups[group_id].validate_offset_commit(member_id, generation_id, 9,
                                                                  transactional=True)
        else:
            group = self.groups.get(group_id)
            if group is None:
                group = self._create_group(group_id)
            elif group.is_in(DEAD):
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            if generation_id >= 0 or member_id or group_instance_id is not None:
                group.validate_member(member_id, group_instance_id)
                if generation_id != group.generation_id:
                    raise KafkaError(ErrorCode.ILLEGAL_GENERATION)
        if not offsets:
            return
        records = [(offset_commit_key(group_id, topic, partition), offset_commit_value(value))
                   for (topic, partition), value in offsets.items()]
        self.topic.append(group_id, records, _now_ms(), producer_id, producer_epoch)
        self.pending_txn_offsets.setdefault(producer_id, {}).setdefault(group_id, {}).update(
            offsets)

    def complete_transaction(self, producer_id: int, commit: bool) -> None:
        """The producer's transaction ended in the offsets partition: apply or drop its offsets."""
        pending = self.pending_txn_offsets.pop(producer_id, {})
        if not commit:
            return
        for group_id, offsets in pending.items():
            group = (self.consumer_groups.get(group_id) or self.groups.get(group_id)
                     or self._create_group(group_id))
            group.offsets.update(offsets)

    def has_pending_offsets(self, group_id: str, topic: str, partition: int) -> bool:
        """OffsetFetch with require_stable (KIP-447): is a transactional commit in flight?"""
        return any((topic, partition) in groups.get(group_id, ())
                   for groups in self.pending_txn_offsets.values())
