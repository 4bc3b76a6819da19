"""The transaction coordinator's state machine, one per transactional id.

The numbers are how the state is stored in `__transaction_state` (TransactionLogValue's
TransactionStatus). A transaction goes Empty -> Ongoing (first AddPartitionsToTxn) ->
PrepareCommit or PrepareAbort (EndTxn) -> CompleteCommit or CompleteAbort (every marker written),
and Ongoing again with the next transaction. PrepareEpochFence is the step before aborting the
transaction of a producer being fenced by a new one with the same transactional id.
"""

import enum


class TransactionState(enum.IntEnum):
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display(self) -> str:
        """The name Kafka's tools print: Empty, Ongoing, PrepareCommit, ..."""
        return "".join(w.capitalize() for w in self.name.split("_"))


S = TransactionState

# target state -> the states it may be entered from
VALID_PREVIOUS: dict[TransactionState, frozenset[TransactionState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    # Transactions v2 may abort when no transaction is open (the epoch is bumped all the same).
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE, S.EMPTY, S.COMPLETE_COMMIT,
                                S.COMPLETE_ABORT}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}


def can_transition(source: TransactionState, target: TransactionState) -> bool:
    return source in VALID_PREVIOUS[target]
