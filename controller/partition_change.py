"""How a partition's leader and ISR change: Kafka's PartitionChangeBuilder.

Every change the controller makes to a partition goes through here: an ISR the leader asks for
(AlterPartition), a broker fenced or shutting down (removed from the ISR, its leaderships moved),
a broker unfenced (leaderless partitions get a leader again), ElectLeaders, the auto leader
rebalance, a reassignment. The caller sets the targets (ISR, replicas, adding / removing
replicas, leader recovery state) and the kind of election; `build` gives the one
PartitionChangeRecord that gets there, or None when nothing changes.

The election rules (ELECTIONS below):

- a leader is chosen among the replicas, in replica order, that are in the target ISR and
  acceptable (registered, unfenced, not shutting down; the caller's `is_acceptable_leader`);
- ONLINE keeps the current leader while it stays valid, else takes the first valid replica;
- PREFERRED takes the first replica (the preferred leader) if it is valid, else as ONLINE;
- UNCLEAN is ONLINE, then, if no replica in the ISR can lead, the first acceptable replica
  outside it: the ISR becomes that replica alone and its leader recovery state RECOVERING
  (KIP-704), and whatever only the old ISR had is lost. Only with
  `unclean.leader.election.enable` (or ElectLeaders UNCLEAN).

When no replica qualifies the partition has no leader (-1). The ISR never becomes empty: when
the last ISR member is removed (fenced, shutting down) it stays the ISR, leaderless, so that it
is the one clean choice when it comes back (Kafka before KIP-966's eligible leader replicas).

Epochs are decided by replay (PartitionRegistration.merge): every record bumps the partition
epoch, a record that names a leader bumps the leader epoch. A reassignment that drops replicas
names the current leader to bump the leader epoch, so the dropped replicas' fetches are fenced.
Kafka bumped the leader epoch on ISR shrinks too before metadata.version 3.6 (KAFKA-15021); from
3.6 it does not, and neither does trioka.

A reassignment completes inside `build` once the ISR holds every target replica: the replicas
being removed leave the replica list and the ISR (Kafka's PartitionReassignmentReplicas).
"""

import dataclasses
import enum
from typing import Callable

from trioka.metadata import records
from trioka.metadata.image import LeaderRecoveryState, PartitionRegistration
from trioka.metadata.records import NO_LEADER, NO_LEADER_CHANGE


class Election(enum.Enum):
    PREFERRED = "preferred"   # the first replica if it can lead
    ONLINE = "online"         # keep the partition led, from the ISR
    UNCLEAN = "unclean"       # and from outside the ISR if the ISR cannot


@dataclasses.dataclass(frozen=True)
class ElectionRule:
    preferred_first: bool     # try the first replica before the current leader
    outside_isr: bool         # fall back to an acceptable replica outside the ISR


ELECTIONS = {
    Election.PREFERRED: ElectionRule(preferred_first=True, outside_isr=False),
    Election.ONLINE: ElectionRule(preferred_first=False, outside_isr=False),
    Election.UNCLEAN: ElectionRule(preferred_first=False, outside_isr=True),
}


def contains_all(replicas, others) -> bool:
    return set(others) <= set(replicas)


def complete_reassignment(replicas: list[int], removing: list[int], adding: list[int],
                          isr: list[int]) -> tuple[list[int], list[int]] | None:
    """(replicas, ISR) once an ongoing reassignment can finish with this ISR: every target
    replica is in it. None while it cannot (or when none is ongoing)."""
    if not removing and not adding:
        return None
    new_isr, new_replicas = list(isr), list(replicas)
    if removing:
        new_isr = [b for b in isr if b not in removing]
        new_replicas = [b for b in replicas if b not in removing]
        if not new_isr or not new_replicas:
            return None
    if not contains_all(new_isr, new_replicas):
        return None
    return new_replicas, new_isr


class PartitionChangeBuilder:
    """One change of one partition. Set the targets, then `build`."""

    def __init__(self, partition: PartitionRegistration, topic_id, partition_id: int,
                 is_acceptable_leader: Callable[[int], bool]):
        self.partition = partition
        self.topic_id = topic_id
        self.partition_id = partition_id
        self.is_acceptable_leader = is_acceptable_leader
        self.election = Election.ONLINE
        self.target_isr = list(partition.isr)
        self.target_replicas = list(partition.replicas)
        self.target_removing = list(partition.removing_replicas)
        self.target_adding = list(partition.adding_replicas)
        self.target_leader_recovery_state = partition.leader_recovery_state

    def set_election(self, election: Election) -> "PartitionChangeBuilder":
        self.election = election
        return self

    def set_target_isr(self, isr) -> "PartitionChangeBuilder":
        self.target_isr = list(isr)
        return self

    def set_target_replicas(self, replicas) -> "PartitionChangeBuilder":
        self.target_replicas = list(replicas)
        return self

    def set_target_removing(self, removing) -> "PartitionChangeBuilder":
        self.target_removing = list(removing)
        return self

    def set_target_adding(self, adding) -> "PartitionChangeBuilder":
        self.target_adding = list(adding)
        return self

    def set_target_leader_recovery_state(self, state) -> "PartitionChangeBuilder":
        self.target_leader_recovery_state = LeaderRecoveryState(state)
        return self

    # ----------------------------------------------------------------------------- election

    def is_valid_new_leader(self, replica: int) -> bool:
        return replica in self.target_isr and self.is_acceptable_leader(replica)

    def elect_leader(self) -> tuple[int, bool]:
        """(the leader, whether the election was unclean) under this builder's election."""
        rule = ELECTIONS[self.election]
        if rule.preferred_first and self.target_replicas and \
                self.is_valid_new_leader(self.target_replicas[0]):
            return self.target_replicas[0], False
        if self.is_valid_new_leader(self.partition.leader):
            return self.partition.leader, False
        for replica in self.target_replicas:
            if self.is_valid_new_leader(replica):
                return replica, False
        if rule.outside_isr:
            for replica in self.target_replicas:
                if self.is_acceptable_leader(replica):
                    return replica, True
        return NO_LEADER, False

    # ----------------------------------------------------------------------------- build

    def build(self) -> records.MetadataRecord | None:
        """The PartitionChangeRecord that makes the targets true, or None if nothing changes."""
        completed = complete_reassignment(self.target_replicas, self.target_removing,
                                          self.target_adding, self.target_isr)
        if completed is not None:
            self.target_replicas, self.target_isr = completed
            self.target_removing, self.target_adding = [], []

        leader = NO_LEADER_CHANGE
        isr = None
        recovery = records.LEADER_RECOVERY_STATE_NO_CHANGE
        new_leader, unclean = self.elect_leader()
        if new_leader != self.partition.leader:
            leader = new_leader
            if unclean:
                # The ISR is forced to the new leader alone: data only the old ISR had is lost.
                isr = [new_leader]
                if self.partition.leader_recovery_state != LeaderRecoveryState.RECOVERING:
                    recovery = LeaderRecoveryState.RECOVERING
        # Replicas leaving: bump the leader epoch (by naming the same leader) so that the
        # removed replicas' fetches are fenced.
        if leader == NO_LEADER_CHANGE and \
                not contains_all(self.target_replicas, self.partition.replicas):
            leader = self.partition.leader
        # Without eligible leader replicas the ISR is never emptied: the last member stays.
        if isr is None and self.target_isr and self.target_isr != self.partition.isr:
            isr = self.target_isr

        replicas = removing = adding = None
        if self.target_replicas and self.target_replicas != self.partition.replicas:
            replicas = self.target_replicas
        if self.target_removing != self.partition.removing_replicas:
            removing = self.target_removing
        if self.target_adding != self.partition.adding_replicas:
            adding = self.target_adding
        if self.target_leader_recovery_state != self.partition.leader_recovery_state:
            recovery = self.target_leader_recovery_state

        record = records.partition_change_record(
            self.topic_id, self.partition_id, isr=isr, leader=leader, replicas=replicas,
            removing_replicas=removing, adding_replicas=adding,
            leader_recovery_state=int(recovery))
        return None if records.is_no_op(record.message) else record
