"""One partition's replica on one node, leader or follower: Kafka's kafka.cluster.Partition and
Replica, as plain state.

The controller decides who leads and in which epochs; the metadata image says it (a partition's
leader, leader epoch, partition epoch, replicas, ISR), and the node hands it to `make_leader` or
`make_follower`. A change with a partition epoch older than the one known is stale and skipped
(the AlterPartition answer may have brought the newer one first).

The leader keeps, per follower, a `ReplicaState` that the follower's own Fetch requests update
(`update_follower_fetch_state`: its log end offset (LEO) is the offset it fetches from):

- **Caught up.** `last_caught_up_time_ms` is the latest time at which the follower had everything
  the leader had: a fetch at or past the leader's LEO of *now* sets it to now; a fetch at or past
  the leader's LEO of the *previous* fetch sets it to that fetch's time (so a follower chasing a
  steady stream of small appends still counts as caught up). A follower is in sync while its LEO
  equals the leader's or it caught up within `replica.lag.time.max.ms` (30 s by default).
- **High watermark (HW)** = the smallest LEO among the leader and the "maximal" ISR (the ISR plus
  a replica being added by an AlterPartition in flight, KIP-497: waiting for more replicas is
  always safe), and also among caught-up followers eligible to join (so a follower chasing the HW
  can reach it). It never moves back, and does not move at all while the ISR is smaller than
  min.insync.replicas (KAFKA-15583, Kafka 3.7). Every call that can move it says whether it did,
  so that waiting Fetch and acks=all Produce requests can be woken.
- **ISR shrink** (`maybe_shrink_isr`, run every replica.lag.time.max.ms / 2): followers of the
  ISR out of sync are proposed for removal. **ISR expand** (on a fetch): a follower outside the
  ISR whose LEO reached the HW and the start of the leader's current epoch (so it has truncated
  to this leader's log), and whose broker is registered, unfenced, not shutting down and fetching
  with its registered broker epoch (KIP-903), is proposed for addition.
- **One change in flight.** A proposal is an `AlterPartitionProposal` (one partition of an
  AlterPartition request, with the partition epoch it is based on), returned to the caller to
  send to the controller. Until the answer comes the ISR state is pending (the table
  `ISR_TRANSITIONS`) and no other change is proposed. A pending shrink still counts the replicas
  it removes (the controller may refuse); a pending expand already counts the one it adds.
  The controller's answer commits the new ISR and partition epoch (`alter_partition_succeeded`);
  its errors (`alter_partition_failed`, the table `ALTER_PARTITION_ERRORS`) either reset to the
  committed ISR, or keep the change pending until the metadata image says what happened
  (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION: someone else changed the partition), or ask for
  the same proposal to be sent again.
- **acks=all.** `check_append` refuses a Produce with NOT_ENOUGH_REPLICAS before anything is
  written when the ISR is smaller than min.insync.replicas (capped by the replication factor);
  `check_enough_replicas_reach_offset` says when a Produce that ended at offset O is done (HW >=
  O + 1: every member of the ISR has it), and NOT_ENOUGH_REPLICAS_AFTER_APPEND if by then the ISR
  has shrunk below min.insync.replicas. A Produce still waiting at its timeout gets
  REQUEST_TIMED_OUT from its caller.

The follower keeps its fetch position: after a new leader epoch it first truncates by leader
epoch (trioka.replica.truncation; `truncated`), then fetches from its LEO; each fetch response
gives it the leader's HW, which it takes as its own, bounded by its own log (`follower_fetched`).

Time is the clock's monotonic time in milliseconds. Kafka keeps these times on the wall clock
(with 0 for "never"); a wall-clock step would then shrink the ISR, or keep a dead follower in it,
for no reason, so here "never" is -infinity on the monotonic clock.

Plain `def`, no I/O: the partition's log stays in trioka.log.partition (this module is told its
LEO and HW as numbers), the caller sends the proposals, and `brokers` is read as Kafka reads its
metadata cache. Not here: reassignment's adding/removing replicas beyond keeping them, the
leader recovery state of KIP-704 (always RECOVERED once leading), log start offsets for
DeleteRecords (the low watermark), and eligible leader replicas (KIP-966).
"""

import dataclasses
import enum
import logging
import uuid
from typing import NamedTuple

from trioka.replica.truncation import OffsetTruncationState
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.replica")

# replica.lag.time.max.ms: how long a follower of the ISR may go without catching up with the
# leader's log end offset before the leader removes it from the ISR.
REPLICA_LAG_TIME_MAX_MS = 30_000
# min.insync.replicas: the ISR an acks=all Produce needs.
MIN_INSYNC_REPLICAS = 1

NO_LEADER = -1
UNKNOWN_OFFSET = -1        # Kafka's UnifiedLog.UnknownOffset: a follower not yet heard from
NO_BROKER_EPOCH = -1       # a Fetch (before v15) or an ISR entry that carries no broker epoch
NO_LEADER_EPOCH = -1       # a request that names no current leader epoch
NEVER = float("-inf")      # a time that has not happened (see the module docstring)


# ------------------------------------------------------------------------------ the ISR state

class IsrState(enum.Enum):
    """Kafka's PartitionState: the ISR the controller last committed, or a change in flight."""
    COMMITTED = "committed"            # CommittedPartitionState
    PENDING_EXPAND = "pending_expand"  # PendingExpandIsr: adding one in-sync follower
    PENDING_SHRINK = "pending_shrink"  # PendingShrinkIsr: removing out-of-sync followers


# state -> the states it may move to. Only COMMITTED proposes; a pending change ends in
# COMMITTED: the controller's answer, a rejection that was not applied, or new metadata.
ISR_TRANSITIONS: dict[IsrState, frozenset[IsrState]] = {
    IsrState.COMMITTED: frozenset({IsrState.COMMITTED, IsrState.PENDING_EXPAND,
                                   IsrState.PENDING_SHRINK}),
    IsrState.PENDING_EXPAND: frozenset({IsrState.COMMITTED}),
    IsrState.PENDING_SHRINK: frozenset({IsrState.COMMITTED}),
}


class AlterPartitionOutcome(enum.Enum):
    """What the leader does when the controller answers its AlterPartition with an error."""
    RESET = "reset"                      # not applied, and the controller says so: back to
                                         # the committed ISR, free to propose again
    AWAIT_METADATA = "await_metadata"    # stay pending until the metadata image says what
                                         # happened
    RETRY = "retry"                      # send the same proposal again


# Kafka's Partition.handleAlterPartitionError; any error not listed is RETRY.
ALTER_PARTITION_ERRORS: dict[ErrorCode, AlterPartitionOutcome] = {
    ErrorCode.OPERATION_NOT_ATTEMPTED: AlterPartitionOutcome.RESET,
    ErrorCode.INELIGIBLE_REPLICA: AlterPartitionOutcome.RESET,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: AlterPartitionOutcome.AWAIT_METADATA,
    ErrorCode.UNKNOWN_TOPIC_ID: AlterPartitionOutcome.AWAIT_METADATA,
    ErrorCode.FENCED_LEADER_EPOCH: AlterPartitionOutcome.AWAIT_METADATA,
    ErrorCode.INVALID_UPDATE_VERSION: AlterPartitionOutcome.AWAIT_METADATA,
    ErrorCode.INVALID_REQUEST: AlterPartitionOutcome.AWAIT_METADATA,
    # Applied, but a reassignment took this replica out: no longer leader, not yet told so.
    ErrorCode.NEW_LEADER_ELECTED: AlterPartitionOutcome.AWAIT_METADATA,
}


@dataclasses.dataclass(frozen=True, eq=False)
class AlterPartitionProposal:
    """One partition of an AlterPartition request (its PartitionData, v3: the new ISR with each
    member's broker epoch). An answer is matched to the proposal object it answers."""
    topic: str
    topic_id: uuid.UUID | None
    partition: int
    leader_epoch: int
    new_isr_with_epochs: tuple[tuple[int, int], ...]   # (broker id, broker epoch)
    partition_epoch: int                               # the version the change is based on
    leader_recovery_state: int = 0                     # RECOVERED

    @property
    def new_isr(self) -> list[int]:
        return [broker_id for broker_id, _ in self.new_isr_with_epochs]


@dataclasses.dataclass(frozen=True)
class PendingIsrChange:
    """The ISR change in flight: Kafka's PendingExpandIsr / PendingShrinkIsr."""
    state: IsrState                  # PENDING_EXPAND or PENDING_SHRINK
    replicas: frozenset[int]         # the follower being added, or those being removed
    proposal: AlterPartitionProposal


class FollowerFetchResult(NamedTuple):
    """What a follower's fetch changed on the leader: whether the HW moved (wake the waiters),
    and an ISR expansion to send to the controller, if one is due."""
    high_watermark_moved: bool
    alter_partition: AlterPartitionProposal | None


class FetchState(enum.Enum):
    """A follower's fetch position (Kafka's fetcher states): after a new leader epoch it
    TRUNCATES (OffsetForLeaderEpoch, maybe several rounds), then FETCHES from its log end."""
    TRUNCATING = "truncating"
    FETCHING = "fetching"


# ------------------------------------------------------------------------- a remote replica

@dataclasses.dataclass(slots=True)
class ReplicaState:
    """A follower as its leader sees it (Kafka's Replica and ReplicaState)."""
    broker_id: int
    log_start_offset: int = UNKNOWN_OFFSET
    log_end_offset: int = UNKNOWN_OFFSET
    # The leader's LEO when this follower's previous fetch came, and that fetch's time.
    last_fetch_leader_log_end_offset: int = 0
    last_fetch_time_ms: float = NEVER
    # The latest time at which this follower had everything the leader had.
    last_caught_up_time_ms: float = NEVER
    # The broker epoch its fetches carry (KIP-903); None until it fetched from this leader.
    broker_epoch: int | None = None

    def is_caught_up(self, leader_end_offset: int, now_ms: float,
                     replica_lag_time_max_ms: int) -> bool:
        """Kafka's ReplicaState.isCaughtUp: at the leader's LEO, or caught up within the lag."""
        return (leader_end_offset == self.log_end_offset
                or now_ms - self.last_caught_up_time_ms <= replica_lag_time_max_ms)

    def update_fetch_state(self, fetch_offset: int, log_start_offset: int, now_ms: float,
                           leader_end_offset: int, broker_epoch: int) -> None:
        """A fetch from `fetch_offset` received at `now_ms` while the leader's LEO was
        `leader_end_offset` (Kafka's Replica.updateFetchStateOrThrow)."""
        if fetch_offset >= leader_end_offset:
            self.last_caught_up_time_ms = max(self.last_caught_up_time_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_log_end_offset:
            self.last_caught_up_time_ms = max(self.last_caught_up_time_ms,
                                              self.last_fetch_time_ms)
        self.log_start_offset = log_start_offset
        self.log_end_offset = fetch_offset
        self.last_fetch_leader_log_end_offset = max(leader_end_offset,
                                                    self.last_fetch_leader_log_end_offset)
        self.last_fetch_time_ms = now_ms
        self.broker_epoch = broker_epoch

    def reset(self, now_ms: float, leader_end_offset: int, is_new_leader: bool,
              in_sync: bool) -> None:
        """A new leader epoch on this leader (Kafka's Replica.resetReplicaState). A member of
        the ISR counts as caught up now; any other follower as never, so it holds back
        neither the HW nor (before it fetches) its own return to the ISR. A leader that just
        took over knows nothing of its followers' logs yet."""
        self.last_caught_up_time_ms = now_ms if in_sync else NEVER
        if is_new_leader:
            self.log_start_offset = UNKNOWN_OFFSET
            self.log_end_offset = UNKNOWN_OFFSET
            self.last_fetch_leader_log_end_offset = UNKNOWN_OFFSET
            self.last_fetch_time_ms = NEVER
            self.broker_epoch = None
        else:
            self.last_fetch_leader_log_end_offset = leader_end_offset
            self.last_fetch_time_ms = now_ms if in_sync else NEVER


# ------------------------------------------------------------------------------ the partition

class Partition:
    """A partition's replica on this node (broker `local_broker_id`), in whatever role the
    metadata gives it (Kafka's kafka.cluster.Partition).

    `brokers` is the metadata image's registered brokers (broker id -> a registration with
    `epoch`, `fenced` and `in_controlled_shutdown`, as trioka.metadata.image keeps them), read at
    each decision; None (single node, tests) treats every follower as an eligible broker of
    unknown epoch."""

    def __init__(self, topic: str, partition: int, local_broker_id: int, clock, *,
                 topic_id: uuid.UUID | None = None,
                 replica_lag_time_max_ms: int = REPLICA_LAG_TIME_MAX_MS,
                 min_insync_replicas: int = MIN_INSYNC_REPLICAS, brokers=None):
        self.topic = topic
        self.partition = partition
        self.topic_id = topic_id
        self.local_broker_id = local_broker_id
        self.clock = clock
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self.min_insync_replicas = min_insync_replicas   # the topic's; may change at run time
        self.brokers = brokers
        # What the metadata says (Kafka starts a partition at leader epoch -1, partition epoch 0).
        self.leader_id = NO_LEADER
        self.leader_epoch = -1
        self.partition_epoch = 0
        self.replicas: list[int] = []
        self.adding_replicas: list[int] = []
        self.removing_replicas: list[int] = []
        # This replica's log, as the caller reports it (the log keeps the HW across roles).
        self.log_end_offset = 0
        self.high_watermark = 0
        # Leader only.
        self.remote_replicas: dict[int, ReplicaState] = {}
        self.isr: frozenset[int] = frozenset()       # committed by the controller
        self.pending: PendingIsrChange | None = None
        self.leader_epoch_start_offset: int | None = None
        # Follower only.
        self.fetch_state: FetchState | None = None
        self.fetch_offset = 0

    def __repr__(self) -> str:
        role = "leader" if self.is_leader else f"follower of {self.leader_id}"
        return (f"Partition({self.topic}-{self.partition} on {self.local_broker_id}: {role}, "
                f"leader epoch {self.leader_epoch}, partition epoch {self.partition_epoch}, "
                f"ISR {sorted(self.isr)} {self.isr_state.value}, HW {self.high_watermark}, "
                f"LEO {self.log_end_offset})")

    # ---------------------------------------------------------------------------- reading

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.local_broker_id

    @property
    def isr_state(self) -> IsrState:
        return IsrState.COMMITTED if self.pending is None else self.pending.state

    @property
    def maximal_isr(self) -> frozenset[int]:
        """The ISR the HW and acks=all wait for: the committed ISR plus a follower being added
        (a shrink in flight still counts the followers it removes)."""
        if self.pending is not None and self.pending.state is IsrState.PENDING_EXPAND:
            return self.isr | self.pending.replicas
        return self.isr

    @property
    def effective_min_isr(self) -> int:
        """min.insync.replicas, capped by the replication factor (Kafka's effectiveMinIsr)."""
        return min(self.min_insync_replicas, len(self.remote_replicas) + 1)

    @property
    def is_under_min_isr(self) -> bool:
        return self.is_leader and len(self.isr) < self.effective_min_isr

    def _now_ms(self) -> int:
        return round(self.clock.monotonic() * 1000)

    def _describe(self) -> str:
        return f"{self.topic}-{self.partition}"

    # ----------------------------------------------------------------------- role changes

    def make_leader(self, *, leader_epoch: int, partition_epoch: int, replicas, isr,
                    log_end_offset: int, high_watermark: int, adding_replicas=(),
                    removing_replicas=()) -> bool:
        """Lead, as the metadata says (Kafka's Partition.makeLeader). `log_end_offset` and
        `high_watermark` are the local log's. Returns True when the leader epoch is new: the
        caller then records (leader_epoch, leader_epoch_start_offset) in the log's epoch cache
        at once, before any write (see trioka.replica.truncation), and restarts what depends on
        the epoch. False also when the change is stale (older partition epoch) and skipped."""
        if partition_epoch < self.partition_epoch:
            log.info("Skipped the become-leader state change for %s: partition epoch %d is older "
                     "than %d", self._describe(), partition_epoch, self.partition_epoch)
            return False
        now_ms = self._now_ms()
        is_new_leader = not self.is_leader
        is_new_leader_epoch = leader_epoch > self.leader_epoch
        self._update_assignment_and_isr(replicas, True, isr, adding_replicas, removing_replicas)
        self.log_end_offset = log_end_offset
        # The HW the log kept from the follower days; a leader's own never moves back.
        self.high_watermark = (high_watermark if is_new_leader
                               else max(self.high_watermark, high_watermark))
        self.fetch_state = None
        if is_new_leader_epoch:
            # The epoch starts at the log end; followers are measured afresh from here.
            for replica in self.remote_replicas.values():
                replica.reset(now_ms, log_end_offset, is_new_leader,
                              replica.broker_id in self.isr)
            log.info("Leader %s starts at leader epoch %d from offset %d with partition epoch "
                     "%d, high watermark %d, ISR %s. Previous leader epoch was %d.",
                     self._describe(), leader_epoch, log_end_offset, partition_epoch,
                     high_watermark, sorted(self.isr), self.leader_epoch)
            self.leader_epoch = leader_epoch
            self.leader_epoch_start_offset = log_end_offset
        self.partition_epoch = partition_epoch
        self.leader_id = self.local_broker_id
        # The ISR may be down to the leader alone.
        self._maybe_increment_leader_high_watermark(now_ms)
        return is_new_leader_epoch

    def make_follower(self, *, leader_id: int, leader_epoch: int, partition_epoch: int, replicas,
                      log_end_offset: int, high_watermark: int, adding_replicas=(),
                      removing_replicas=()) -> bool:
        """Follow `leader_id`, as the metadata says (Kafka's Partition.makeFollower); a follower
        keeps no ISR. Returns True when the leader epoch is new: the follower then starts over
        by truncating (`fetch_state` TRUNCATING, from its high watermark, Kafka's initial fetch
        offset without truncation-on-fetch). False also when the change is stale and skipped."""
        if partition_epoch < self.partition_epoch:
            log.info("Skipped the become-follower state change for %s: partition epoch %d is "
                     "older than %d", self._describe(), partition_epoch, self.partition_epoch)
            return False
        is_new_leader_epoch = leader_epoch > self.leader_epoch
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch
        self.leader_epoch_start_offset = None
        self.partition_epoch = partition_epoch
        self._update_assignment_and_isr(replicas, False, (), adding_replicas, removing_replicas)
        self.log_end_offset = log_end_offset
        self.high_watermark = high_watermark
        if is_new_leader_epoch:
            log.info("Follower %s starts at leader epoch %d from offset %d with partition epoch "
                     "%d and high watermark %d. Current leader is %d.", self._describe(),
                     leader_epoch, log_end_offset, partition_epoch, high_watermark, leader_id)
            self.fetch_state = FetchState.TRUNCATING
            self.fetch_offset = high_watermark
        return is_new_leader_epoch

    def _update_assignment_and_isr(self, replicas, is_leader: bool, isr, adding_replicas,
                                   removing_replicas) -> None:
        """Kafka's updateAssignmentAndIsr: a leader tracks every follower of the assignment
        (new ones start empty, removed ones are forgotten); the metadata's ISR replaces any
        change in flight."""
        if is_leader:
            followers = [r for r in replicas if r != self.local_broker_id]
            for broker_id in followers:
                self.remote_replicas.setdefault(broker_id, ReplicaState(broker_id))
            for broker_id in [r for r in self.remote_replicas if r not in followers]:
                del self.remote_replicas[broker_id]
        else:
            self.remote_replicas.clear()
        self.replicas = list(replicas)
        self.adding_replicas = list(adding_replicas)
        self.removing_replicas = list(removing_replicas)
        self._move_isr(IsrState.COMMITTED, isr=frozenset(isr))

    def _move_isr(self, target: IsrState, *, isr: frozenset[int] | None = None,
                  pending: PendingIsrChange | None = None) -> None:
        if target not in ISR_TRANSITIONS[self.isr_state]:
            raise AssertionError(f"{self._describe()}: ISR state {self.isr_state.value} cannot "
                                 f"become {target.value}")
        if isr is not None:
            self.isr = isr
        self.pending = pending

    # --------------------------------------------------------------- leader: epochs, fetches

    def check_current_leader_epoch(self, current_leader_epoch: int, *,
                                   require_leader: bool = True) -> None:
        """A Fetch or OffsetForLeaderEpoch naming `current_leader_epoch` (-1: none): an older
        epoch is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH (this node has not seen
        it yet), and NOT_LEADER_OR_FOLLOWER when a leader is required and this is not it
        (Kafka's Partition.getLocalLog)."""
        error = None
        if current_leader_epoch != NO_LEADER_EPOCH:
            if current_leader_epoch < self.leader_epoch:
                error = ErrorCode.FENCED_LEADER_EPOCH
            elif current_leader_epoch > self.leader_epoch:
                error = ErrorCode.UNKNOWN_LEADER_EPOCH
        if error is None and require_leader and not self.is_leader:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        if error is not None:
            raise KafkaError(error, f"Failed to find {'leader ' if require_leader else ''}log "
                                    f"for partition {self._describe()} with leader epoch "
                                    f"{current_leader_epoch}. The current leader is "
                                    f"{self.leader_id} and the current epoch {self.leader_epoch}")

    def update_follower_fetch_state(self, replica_id: int, *, fetch_offset: int,
                                    leader_log_end_offset: int,
                                    current_leader_epoch: int = NO_LEADER_EPOCH,
                                    log_start_offset: int = UNKNOWN_OFFSET,
                                    broker_epoch: int = NO_BROKER_EPOCH) -> FollowerFetchResult:
        """A Fetch from follower `replica_id` (its fetch offset is its LEO) that found the
        leader's LEO at `leader_log_end_offset` (Kafka's fetchRecords for a follower, then
        updateFollowerFetchState): checks the epoch and the replica, records the fetch, maybe
        proposes adding the follower to the ISR, and moves the HW if it can.

        FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER for a fetch in
        another epoch or to a non-leader; UNKNOWN_LEADER_EPOCH (NOT_LEADER_OR_FOLLOWER without
        a current epoch) from a broker that is not a replica; NOT_LEADER_OR_FOLLOWER from an
        older incarnation of the follower's broker (its broker epoch is below the registered
        one, KIP-903)."""
        self.check_current_leader_epoch(current_leader_epoch, require_leader=True)
        replica = self.remote_replicas.get(replica_id)
        if replica is None:
            code = (ErrorCode.UNKNOWN_LEADER_EPOCH if current_leader_epoch != NO_LEADER_EPOCH
                    else ErrorCode.NOT_LEADER_OR_FOLLOWER)
            raise KafkaError(code, f"Replica {replica_id} is not recognized as a valid replica "
                                   f"of {self._describe()} in leader epoch {self.leader_epoch} "
                                   f"with partition epoch {self.partition_epoch}")
        registered = self._alive_broker_epoch(replica_id)
        if broker_epoch != NO_BROKER_EPOCH and registered is not None and registered > broker_epoch:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"Received stale fetch state update. broker epoch={broker_epoch} "
                             f"vs expected={registered}")
        now_ms = self._now_ms()
        previous_end_offset = replica.log_end_offset
        replica.update_fetch_state(fetch_offset, log_start_offset, now_ms, leader_log_end_offset,
                                   broker_epoch)
        proposal = self._maybe_expand_isr(replica)
        moved = False
        if replica.log_end_offset != previous_end_offset:
            moved = self._maybe_increment_leader_high_watermark(now_ms)
        return FollowerFetchResult(moved, proposal)

    def _alive_broker_epoch(self, broker_id: int) -> int | None:
        """The registered epoch of an unfenced broker (Kafka's getAliveBrokerEpoch)."""
        if self.brokers is None:
            return None
        registration = self.brokers.get(broker_id)
        if registration is None or registration.fenced:
            return None
        return registration.epoch

    def _is_replica_isr_eligible(self, replica: ReplicaState) -> bool:
        """Kafka's isReplicaIsrEligible (KRaft): the follower's broker is registered, not fenced,
        not in controlled shutdown, and fetches with its registered broker epoch (or with
        none)."""
        if self.brokers is None:
            return True
        registration = self.brokers.get(replica.broker_id)
        if registration is None or registration.fenced or registration.in_controlled_shutdown:
            return False
        return replica.broker_epoch is not None and \
            replica.broker_epoch in (NO_BROKER_EPOCH, registration.epoch)

    def _is_follower_in_sync(self, replica: ReplicaState) -> bool:
        """Kafka's isFollowerInSync: the follower has the HW and has reached the start of this
        leader's epoch (it truncated to this leader's log), so adding it can lose nothing."""
        return (self.leader_epoch_start_offset is not None
                and replica.log_end_offset >= self.high_watermark
                and replica.log_end_offset >= self.leader_epoch_start_offset)

    def _maybe_expand_isr(self, replica: ReplicaState) -> AlterPartitionProposal | None:
        if self.pending is not None or replica.broker_id in self.isr:
            return None
        if not self._is_replica_isr_eligible(replica) or not self._is_follower_in_sync(replica):
            return None
        log.info("Expanding ISR of %s from %s to add %d", self._describe(), sorted(self.isr),
                 replica.broker_id)
        return self._prepare_isr_change(IsrState.PENDING_EXPAND, frozenset({replica.broker_id}),
                                        self.isr | {replica.broker_id})

    # ------------------------------------------------------------------ leader: the HW

    def _maybe_increment_leader_high_watermark(self, now_ms: float) -> bool:
        """Kafka's maybeIncrementLeaderHW: the smallest LEO among the leader, the maximal ISR and
        the caught-up followers eligible to join it; only ever forward, and not while under
        min.insync.replicas. True if the HW moved."""
        if not self.is_leader or self.is_under_min_isr:
            return False
        maximal_isr = self.maximal_isr
        new_high_watermark = self.log_end_offset
        for replica in self.remote_replicas.values():
            if replica.log_end_offset >= new_high_watermark:
                continue
            if replica.broker_id in maximal_isr or (
                    replica.is_caught_up(self.log_end_offset, now_ms,
                                         self.replica_lag_time_max_ms)
                    and self._is_replica_isr_eligible(replica)):
                new_high_watermark = replica.log_end_offset
        if new_high_watermark > self.high_watermark:
            self.high_watermark = new_high_watermark
            return True
        return False

    # --------------------------------------------------------------- leader: ISR changes

    def out_of_sync_replicas(self) -> frozenset[int]:
        """Followers of the ISR not caught up within replica.lag.time.max.ms: stuck (no fetch
        reached the leader's LEO for that long) or slow (fetching, but never reaching it).
        Empty while a change is in flight (Kafka's getOutOfSyncReplicas)."""
        if not self.is_leader or self.pending is not None:
            return frozenset()
        now_ms = self._now_ms()
        out = set()
        for broker_id in self.isr - {self.local_broker_id}:
            replica = self.remote_replicas.get(broker_id)
            if replica is None or not replica.is_caught_up(self.log_end_offset, now_ms,
                                                           self.replica_lag_time_max_ms):
                out.add(broker_id)
        return frozenset(out)

    def maybe_shrink_isr(self) -> AlterPartitionProposal | None:
        """The periodic ISR check (Kafka's maybeShrinkIsr, every replica.lag.time.max.ms / 2):
        propose removing the out-of-sync followers, if any and nothing is in flight."""
        out = self.out_of_sync_replicas()
        if not out:
            return None
        lagging = ", ".join(f"(broker {b}: end offset {self._replica_end_offset(b)})"
                            for b in sorted(out))
        log.info("Shrinking ISR of %s from %s to %s. Leader: (high watermark: %d, end offset: "
                 "%d). Out of sync replicas: %s.", self._describe(), sorted(self.isr),
                 sorted(self.isr - out), self.high_watermark, self.log_end_offset, lagging)
        return self._prepare_isr_change(IsrState.PENDING_SHRINK, out, self.isr - out)

    def _replica_end_offset(self, broker_id: int) -> int:
        replica = self.remote_replicas.get(broker_id)
        return UNKNOWN_OFFSET if replica is None else replica.log_end_offset

    def _prepare_isr_change(self, state: IsrState, replicas: frozenset[int],
                            new_isr: frozenset[int]) -> AlterPartitionProposal:
        proposal = AlterPartitionProposal(
            topic=self.topic, topic_id=self.topic_id, partition=self.partition,
            leader_epoch=self.leader_epoch,
            new_isr_with_epochs=self._isr_with_broker_epochs(new_isr),
            partition_epoch=self.partition_epoch)
        self._move_isr(state, pending=PendingIsrChange(state, replicas, proposal))
        return proposal

    def _isr_with_broker_epochs(self, isr: frozenset[int]) -> tuple[tuple[int, int], ...]:
        """Each member with the broker epoch it last fetched with (Kafka's addBrokerEpochToIsr):
        the controller refuses the change if a member has restarted since (KIP-903). The
        leader's own is its registered epoch; -1 where none is known. In replica order."""
        ordered = [r for r in self.replicas if r in isr] + sorted(isr - set(self.replicas))
        members = []
        for broker_id in ordered:
            if self.brokers is None:
                epoch = NO_BROKER_EPOCH
            elif broker_id == self.local_broker_id:
                registration = self.brokers.get(broker_id)
                epoch = NO_BROKER_EPOCH if registration is None else registration.epoch
            else:
                replica = self.remote_replicas.get(broker_id)
                known = None if replica is None else replica.broker_epoch
                epoch = NO_BROKER_EPOCH if known is None else known
            members.append((broker_id, epoch))
        return tuple(members)

    def alter_partition_succeeded(self, proposal: AlterPartitionProposal, *, leader_epoch: int,
                                  isr, partition_epoch: int) -> bool:
        """The controller's answer to `proposal`: the partition's leader epoch, ISR and partition
        epoch now (Kafka's handleAlterPartitionUpdate). Commits them unless the answer is out of
        date (the state changed since, or it names another leader epoch or an older partition
        epoch: then the change stays pending until the metadata says more). True if the HW
        moved (the ISR may be down to the leader)."""
        if self.pending is None or self.pending.proposal is not proposal:
            log.debug("Ignoring the AlterPartition answer for %s: the state changed since",
                      self._describe())
            return False
        if leader_epoch != self.leader_epoch:
            log.debug("Ignoring new ISR %s for %s since we have a stale leader epoch %d",
                      list(isr), self._describe(), self.leader_epoch)
            return False
        if partition_epoch < self.partition_epoch:
            log.debug("Ignoring new ISR %s for %s since we have a newer version %d",
                      list(isr), self._describe(), self.partition_epoch)
            return False
        self._move_isr(IsrState.COMMITTED, isr=frozenset(isr))
        self.partition_epoch = partition_epoch
        log.info("ISR of %s updated to %s%s and version updated to %d", self._describe(),
                 sorted(self.isr), " (under-min-isr)" if self.is_under_min_isr else "",
                 partition_epoch)
        return self._maybe_increment_leader_high_watermark(self._now_ms())

    def alter_partition_failed(self, proposal: AlterPartitionProposal, error: ErrorCode) -> bool:
        """The controller refused `proposal` with `error` (Kafka's handleAlterPartitionError;
        the table ALTER_PARTITION_ERRORS). True: send the same proposal again."""
        if self.pending is None or self.pending.proposal is not proposal:
            return False
        outcome = ALTER_PARTITION_ERRORS.get(ErrorCode(error), AlterPartitionOutcome.RETRY)
        log.info("Failed to alter the ISR of %s to %s: %s (%s)", self._describe(),
                 proposal.new_isr, ErrorCode(error).name, outcome.value)
        if outcome is AlterPartitionOutcome.RESET:
            self._move_isr(IsrState.COMMITTED)
        return outcome is AlterPartitionOutcome.RETRY

    # ------------------------------------------------------------------ leader: Produce

    def check_append(self, required_acks: int) -> None:
        """Before a Produce is written (Kafka's appendRecordsToLeader): NOT_LEADER_OR_FOLLOWER
        if this is not the leader, NOT_ENOUGH_REPLICAS for acks=all when the ISR is smaller than
        min.insync.replicas (acks=0 and acks=1 are written all the same)."""
        if not self.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"Leader not local for partition {self._describe()} on broker "
                             f"{self.local_broker_id}")
        min_isr = self.effective_min_isr
        if required_acks == -1 and len(self.isr) < min_isr:
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS,
                             f"The size of the current ISR {sorted(self.isr)} is insufficient to "
                             f"satisfy the min.isr requirement of {min_isr} for partition "
                             f"{self._describe()}")

    def leader_log_appended(self, log_end_offset: int) -> bool:
        """The leader's log now ends at `log_end_offset` (after an append). True if the HW
        moved (an ISR of the leader alone commits at once)."""
        self.log_end_offset = log_end_offset
        return self._maybe_increment_leader_high_watermark(self._now_ms())

    def check_enough_replicas_reach_offset(self, required_offset: int) -> tuple[bool, ErrorCode]:
        """Whether an acks=all Produce whose last offset is required_offset - 1 is done (Kafka's
        checkEnoughReplicasReachOffset): (True, NONE) once the HW reached it, (True,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND) if by then the ISR is below min.insync.replicas,
        (False, NONE) while waiting, (False, NOT_LEADER_OR_FOLLOWER) when no longer leader."""
        if not self.is_leader:
            return False, ErrorCode.NOT_LEADER_OR_FOLLOWER
        if self.high_watermark >= required_offset:
            if self.effective_min_isr <= len(self.maximal_isr):
                return True, ErrorCode.NONE
            return True, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return False, ErrorCode.NONE

    # ------------------------------------------------------------------------ follower

    def truncated(self, state: OffsetTruncationState, *, log_end_offset: int) -> None:
        """The follower truncated its log as `state` says (trioka.replica.truncation) and now
        ends at `log_end_offset`: fetch from there once truncation is complete, else ask the
        leader again. A HW above the new end comes down to it (Kafka's UnifiedLog.truncateTo)."""
        self.log_end_offset = log_end_offset
        self.high_watermark = min(self.high_watermark, log_end_offset)
        self.fetch_offset = log_end_offset
        self.fetch_state = (FetchState.FETCHING if state.truncation_completed
                            else FetchState.TRUNCATING)

    def follower_fetched(self, *, log_end_offset: int, log_start_offset: int,
                         leader_high_watermark: int) -> bool:
        """A fetch response was appended: the follower's log now ends at `log_end_offset`, and
        the leader's HW was `leader_high_watermark`. The follower's HW is the leader's, within
        its own log (Kafka's UnifiedLog.updateHighWatermark: not below the log start offset, not
        above the log end offset; it follows the leader's even down). True if it changed."""
        self.log_end_offset = log_end_offset
        self.fetch_offset = log_end_offset
        if leader_high_watermark < log_start_offset:
            new_high_watermark = log_start_offset
        else:
            new_high_watermark = min(leader_high_watermark, log_end_offset)
        moved = new_high_watermark != self.high_watermark
        self.high_watermark = new_high_watermark
        return moved
