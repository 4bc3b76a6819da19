"""Truncation by leader epoch (KIP-101, KIP-279): how a follower finds where its log stops agreeing
with its leader's, so it never truncates by the high watermark alone.

Every batch carries the leader epoch it was written in, and every replica keeps the first offset
of each epoch (its leader-epoch cache, `leader-epoch-checkpoint`: (epoch, start offset) pairs).
Before fetching from a new leader (or after a restart) a follower sends OffsetForLeaderEpoch with
the latest epoch in its own log; the leader answers with the end offset of the largest epoch it
knows that is <= the one asked for:

    follower  --OffsetForLeaderEpoch(latest epoch F)-->  leader
    follower  <--(L = largest leader epoch <= F, where L ended on the leader)--  leader

| leader's answer                             | the follower truncates to               |
|---------------------------------------------|-----------------------------------------|
| end offset -1 (no epoch <= F on the leader) | its fetch offset, the high watermark it |
|                                             | started from (Kafka's fallback)         |
| epoch -1 with an offset (a v0 answer)       | min(that offset, own log end)           |
| epoch L that the follower has too           | min(leader's end of L, own end of L,    |
|                                             | own log end)                            |
| epoch L that the follower never had         | min(own end of its largest epoch < L,   |
|                                             | own log end), then it asks again with   |
|                                             | its new latest epoch                    |
| epoch L, and no epoch <= L in the follower  | min(leader's end of L, own log end)     |

("Own end of L" is what the follower's own cache answers for L; for an epoch older than all it
keeps, that is the start of its first epoch, as in Kafka.)

The fourth row is KIP-279: after quick successive leader changes the leader may answer with an
epoch the follower never saw, and one answer is not enough; the follower steps back to the epoch
they share and asks again, until both logs agree (`truncation_completed`).

Why not the high watermark (KIP-101's two failure cases): a follower learns the leader's high
watermark one fetch late, so truncating to it on restart can drop a message the leader already
acknowledged to an acks=all producer (lost if that follower then becomes leader); and after two
hard failures a replica whose high watermark covers an unreplicated message keeps it at an offset
where the new leader wrote something else (the logs diverge for ever). Epochs say which writes
the leader really has.

A leader answers for its own epoch from the moment it leads, before it writes anything: Kafka's
makeLeader puts (new epoch, log end offset) in the cache at once, or a follower that holds a later
epoch than any the new leader wrote (two quick elections) would get -1 and fall back to its high
watermark. `Partition.make_leader` (partition_state.py) returns whether the epoch is new and keeps
its `leader_epoch_start_offset` for that entry.

The epoch cache is trioka.log.partition.PartitionLog's (`epoch_entries`, `end_offset_for_epoch`,
`log_end_offset`); the leader's answer is exactly what it already gives consumers (KIP-320), so it
is wrapped here, not written twice. Nothing here truncates: the caller truncates the log to the
offset returned and fetches from there.
"""

from typing import NamedTuple

# Kafka's OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET: "no such epoch".
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class EpochEndOffset(NamedTuple):
    """One partition's OffsetForLeaderEpoch answer: the largest epoch <= the one asked for and
    the offset where it ended (the next epoch's start offset, or the log end offset for the
    latest epoch); (-1, -1) when there is none."""
    leader_epoch: int
    end_offset: int


class OffsetTruncationState(NamedTuple):
    """Where a follower truncates to (and fetches from next), and whether that is final (Kafka's
    OffsetTruncationState). Not final: truncate, then ask again with the new latest epoch."""
    offset: int
    truncation_completed: bool


def epoch_end_offset(log, requested_epoch: int) -> EpochEndOffset:
    """What a replica's leader-epoch cache answers for `requested_epoch` (Kafka's
    LeaderEpochFileCache.endOffsetFor through UnifiedLog.endOffsetForEpoch): the leader's reply to
    a follower's OffsetForLeaderEpoch, and the follower's own end of an epoch. `log` is a
    PartitionLog; its `end_offset_for_epoch` is the one implementation of the rule."""
    return EpochEndOffset(*log.end_offset_for_epoch(requested_epoch))


def latest_epoch(log) -> int | None:
    """The epoch a follower asks about: the latest one in its own log's cache (Kafka's
    UnifiedLog.latestEpoch). None when the cache is empty (a log holding no batch, or one whose
    checkpoint was lost): Kafka then has nothing to ask and truncates to the high watermark
    (AbstractFetcherThread.truncateToHighWatermark), which `truncation_without_epochs` gives."""
    return log.epoch_entries[-1][0] if log.epoch_entries else None


def truncation_without_epochs(fetch_offset: int) -> OffsetTruncationState:
    """A follower with no leader epoch to ask about truncates to its fetch offset, the high
    watermark it started fetching from (Kafka's truncateToHighWatermark). With record batches v2
    only, every batch carries an epoch, so this happens only to a log with no epoch entries."""
    return OffsetTruncationState(fetch_offset, True)


def offset_truncation_state(log, leader: EpochEndOffset,
                            fetch_offset: int) -> OffsetTruncationState:
    """The follower's truncation offset from the leader's OffsetForLeaderEpoch answer (Kafka's
    AbstractFetcherThread.getOffsetTruncationState; the table in the module docstring).

    `log` is the follower's PartitionLog; `fetch_offset` is where it was to start fetching (its
    high watermark), used only when the leader knows no epoch at or below the one asked for. The
    result never lies beyond the follower's log end offset."""
    replica_end_offset = log.log_end_offset
    if leader.end_offset == UNDEFINED_EPOCH_OFFSET:
        # The leader has no epoch <= the requested one: its cache starts later, is empty, or
        # misses its own current epoch (see the module docstring).
        return OffsetTruncationState(fetch_offset, True)
    if leader.leader_epoch == UNDEFINED_EPOCH:
        # An answer without an epoch (OffsetForLeaderEpoch v0): the offset alone.
        return OffsetTruncationState(min(leader.end_offset, replica_end_offset), True)
    own = epoch_end_offset(log, leader.leader_epoch)
    if own.end_offset == UNDEFINED_EPOCH_OFFSET:
        # The follower's cache knows nothing of that epoch (it is empty): the leader's offset
        # is all there is to go by.
        return OffsetTruncationState(min(leader.end_offset, replica_end_offset), True)
    if own.leader_epoch != leader.leader_epoch:
        # KIP-279: the leader answered with an epoch this follower never had. Step back to the
        # end of the largest epoch below it that the follower has, and ask again.
        return OffsetTruncationState(min(own.end_offset, replica_end_offset), False)
    return OffsetTruncationState(min(own.end_offset, leader.end_offset, replica_end_offset), True)
