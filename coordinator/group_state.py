"""The states of a classic consumer group (JoinGroup/SyncGroup protocol) and the moves between them.

    Empty                no members; committed offsets may remain. A JoinGroup starts a rebalance.
    PreparingRebalance   collecting JoinGroups: every known member must rejoin (or be dropped when
                         the rebalance timeout runs out) before a new generation is formed.
    CompletingRebalance  the generation is formed; waiting for the leader's SyncGroup with the
                         assignment of every member.
    Stable               the assignment is handed out; members heartbeat.
    Dead                 the group is being removed (DeleteGroups, or nothing left of it).

A membership change (a member joins, leaves, changes its protocols or misses its session) sends a
CompletingRebalance or Stable group back to PreparingRebalance. A rebalance that ends with no
member left makes the group Empty (with a new generation all the same).
"""

import enum


class GroupState(enum.Enum):
    """The value is the state's name as Kafka prints it (DescribeGroups, ListGroups)."""
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


E, P, C, S, D = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE,
                 GroupState.COMPLETING_REBALANCE, GroupState.STABLE, GroupState.DEAD)

# state -> the states it may move to.
TRANSITIONS: dict[GroupState, frozenset[GroupState]] = {
    E: frozenset({P, D}),
    P: frozenset({C, E, D}),
    C: frozenset({S, P, D}),
    S: frozenset({P, D}),
    D: frozenset({D}),
}


class IllegalStateTransition(Exception):
    """A move the table does not allow: a bug in the coordinator, never a client's fault."""


def check_transition(current: GroupState, target: GroupState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalStateTransition(f"a classic group cannot go from {current.value} to "
                                     f"{target.value}")
