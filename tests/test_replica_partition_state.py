"""A partition's leader and follower state (trioka.replica.partition_state): followers' fetch
positions and caught-up times, the high watermark, ISR shrink and expand through AlterPartition,
acks=all and min.insync.replicas, the follower's fetch position. Driven by a ManualClock that
moves only when a test advances it past replica.lag.time.max.ms."""

from typing import NamedTuple

import pytest

from trioka.clock import ManualClock
from trioka.replica.partition_state import (ALTER_PARTITION_ERRORS, NEVER,
                                            REPLICA_LAG_TIME_MAX_MS, UNKNOWN_OFFSET,
                                            AlterPartitionOutcome, FetchState, IsrState,
                                            Partition)
from trioka.replica.truncation import OffsetTruncationState
from trioka.wire.errors import ErrorCode, KafkaError

LAG = REPLICA_LAG_TIME_MAX_MS


class Broker(NamedTuple):
    """A registered broker as the metadata image keeps one (the fields Partition reads)."""
    epoch: int
    fenced: bool = False
    in_controlled_shutdown: bool = False


def leader(clock, *, replicas=(1, 2, 3), isr=(1, 2, 3), min_isr=1, leo=0, hw=0, epoch=1,
           partition_epoch=1, brokers=None) -> Partition:
    """Broker 1, leading."""
    p = Partition("orders", 0, 1, clock, min_insync_replicas=min_isr, brokers=brokers)
    assert p.make_leader(leader_epoch=epoch, partition_epoch=partition_epoch,
                         replicas=list(replicas), isr=list(isr), log_end_offset=leo,
                         high_watermark=hw)
    return p


def fetch(p: Partition, replica_id: int, offset: int, **kwargs):
    """A follower's Fetch from `offset` in the current epoch."""
    kwargs.setdefault("current_leader_epoch", p.leader_epoch)
    return p.update_follower_fetch_state(replica_id, fetch_offset=offset,
                                         leader_log_end_offset=p.log_end_offset, **kwargs)


def commit(p: Partition, proposal, isr) -> bool:
    """The controller accepts `proposal`: the partition epoch moves on."""
    return p.alter_partition_succeeded(proposal, leader_epoch=p.leader_epoch, isr=isr,
                                       partition_epoch=proposal.partition_epoch + 1)


# ------------------------------------------------------------------------- becoming leader

def test_make_leader_takes_the_metadata():
    clock = ManualClock()
    p = Partition("orders", 0, 1, clock)
    assert p.make_leader(leader_epoch=3, partition_epoch=5, replicas=[2, 1, 3], isr=[1, 2],
                         log_end_offset=40, high_watermark=35)
    assert p.is_leader and (p.leader_epoch, p.partition_epoch) == (3, 5)
    assert p.replicas == [2, 1, 3] and p.isr == {1, 2} and p.isr_state is IsrState.COMMITTED
    assert p.leader_epoch_start_offset == 40
    assert sorted(p.remote_replicas) == [2, 3]
    # A new leader knows nothing of its followers' logs: the HW waits for them.
    assert all(r.log_end_offset == UNKNOWN_OFFSET for r in p.remote_replicas.values())
    assert p.high_watermark == 35
    # The ISR member counts as caught up now, the other as never.
    assert p.remote_replicas[2].last_caught_up_time_ms == 0
    assert p.remote_replicas[3].last_caught_up_time_ms == NEVER

    # The same epoch again (an ISR change through the metadata): not a new epoch.
    assert not p.make_leader(leader_epoch=3, partition_epoch=6, replicas=[2, 1, 3],
                             isr=[1, 2, 3], log_end_offset=41, high_watermark=35)
    assert p.isr == {1, 2, 3} and p.partition_epoch == 6 and p.leader_epoch_start_offset == 40
    # An older partition epoch is stale: skipped.
    assert not p.make_leader(leader_epoch=4, partition_epoch=5, replicas=[1], isr=[1],
                             log_end_offset=41, high_watermark=35)
    assert p.leader_epoch == 3 and p.isr == {1, 2, 3}


def test_new_leader_epoch_on_the_same_leader_keeps_what_it_knows():
    clock = ManualClock()
    p = leader(clock, isr=(1, 2), leo=10)
    fetch(p, 2, 10)
    fetch(p, 3, 4)
    clock.advance(5_000)
    assert p.make_leader(leader_epoch=2, partition_epoch=2, replicas=[1, 2, 3], isr=[1, 2],
                         log_end_offset=10, high_watermark=10)
    follower, other = p.remote_replicas[2], p.remote_replicas[3]
    assert follower.log_end_offset == 10 and other.log_end_offset == 4
    assert follower.last_caught_up_time_ms == 5_000 and follower.last_fetch_time_ms == 5_000
    assert follower.last_fetch_leader_log_end_offset == 10
    assert other.last_caught_up_time_ms == NEVER and other.last_fetch_time_ms == NEVER


def test_leader_alone_in_the_isr_commits_on_append():
    p = leader(ManualClock(), isr=(1,))
    assert p.leader_log_appended(5)
    assert p.high_watermark == 5
    assert not p.leader_log_appended(5)


# ------------------------------------------------------------------------ high watermark

def test_high_watermark_is_the_smallest_log_end_offset_in_the_isr():
    p = leader(ManualClock())
    assert not p.leader_log_appended(10)       # followers not heard from yet
    assert fetch(p, 2, 10) == (False, None)    # follower 3 still unknown
    assert p.high_watermark == 0
    assert fetch(p, 3, 4) == (True, None)
    assert p.high_watermark == 4
    assert fetch(p, 3, 4) == (False, None)     # same position: no move, nobody to wake
    assert fetch(p, 3, 10).high_watermark_moved and p.high_watermark == 10


def test_high_watermark_never_moves_back():
    p = leader(ManualClock(), isr=(1, 2))
    p.leader_log_appended(10)
    fetch(p, 2, 10)
    assert p.high_watermark == 10
    # The follower restarted from an older position (it lost an unflushed tail).
    assert fetch(p, 2, 7) == (False, None)
    assert p.high_watermark == 10


def test_caught_up_follower_outside_the_isr_holds_the_high_watermark_so_it_can_join():
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2), isr=(1,))
    p.leader_log_appended(10)
    assert p.high_watermark == 10                 # follower 2 has never caught up
    fetch(p, 2, 5)                                # leader's end offset was 10
    clock.advance(1_000)
    p.leader_log_appended(20)
    assert p.high_watermark == 20
    # At 10 it reached the leader's end offset of its previous fetch: caught up, as of then.
    assert fetch(p, 2, 10) == (False, None)
    assert p.remote_replicas[2].last_caught_up_time_ms == 0
    # Now the HW waits for it rather than running ahead to the leader's end offset...
    assert not p.leader_log_appended(30)
    assert p.high_watermark == 20
    # ...so it can reach the HW and join the ISR.
    result = fetch(p, 2, 20)
    assert result.alter_partition is not None and result.alter_partition.new_isr == [1, 2]


def test_fenced_follower_outside_the_isr_does_not_hold_the_high_watermark():
    clock = ManualClock()
    brokers = {1: Broker(7), 2: Broker(8, fenced=True)}
    p = leader(clock, replicas=(1, 2), isr=(1,), brokers=brokers)
    p.leader_log_appended(10)
    fetch(p, 2, 5, broker_epoch=8)
    p.leader_log_appended(20)
    fetch(p, 2, 10, broker_epoch=8)
    assert p.leader_log_appended(30) and p.high_watermark == 30


# ------------------------------------------------------------------- caught up, and lag

def test_last_caught_up_time_follows_kafka():
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2), isr=(1, 2))
    follower = p.remote_replicas[2]
    assert follower.last_caught_up_time_ms == 0           # in the ISR when the epoch began
    clock.advance(1_000)
    p.leader_log_appended(10)
    fetch(p, 2, 0)
    assert follower.last_caught_up_time_ms == 0           # behind, and no previous fetch
    assert (follower.last_fetch_leader_log_end_offset, follower.last_fetch_time_ms) == (10, 1_000)
    clock.advance(1_000)
    p.leader_log_appended(20)
    fetch(p, 2, 10)       # reached the leader's end offset of the previous fetch (at 1 000)
    assert follower.last_caught_up_time_ms == 1_000
    clock.advance(1_000)
    fetch(p, 2, 20)       # reached the leader's end offset now (3 000)
    assert follower.last_caught_up_time_ms == 3_000
    clock.advance(1_000)
    fetch(p, 2, 20)       # still at the end: caught up now
    assert follower.last_caught_up_time_ms == 4_000


def test_follower_chasing_small_appends_stays_in_the_isr():
    # Each fetch reaches what the leader had at the previous one, never what it has now.
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2), isr=(1, 2))
    previous = 0
    for i in range(1, 101):
        clock.advance(1_000)
        p.leader_log_appended(i * 10)
        fetch(p, 2, previous)
        previous = i * 10
        assert p.maybe_shrink_isr() is None
    assert p.isr == {1, 2} and p.out_of_sync_replicas() == set()


def test_stuck_follower_leaves_the_isr_after_replica_lag_time_max_ms():
    clock = ManualClock()
    p = leader(clock, min_isr=1)
    p.leader_log_appended(10)
    fetch(p, 2, 10)
    fetch(p, 3, 6)
    assert p.high_watermark == 6
    clock.advance(LAG)
    fetch(p, 2, 10)
    assert p.maybe_shrink_isr() is None            # exactly the lag: still in sync
    clock.advance(1)
    assert p.out_of_sync_replicas() == {3}
    proposal = p.maybe_shrink_isr()
    assert proposal.new_isr == [1, 2] and proposal.partition_epoch == 1
    assert proposal.leader_epoch == 1 and (proposal.topic, proposal.partition) == ("orders", 0)
    assert p.isr_state is IsrState.PENDING_SHRINK
    # Until the controller answers, follower 3 still counts (the change may be refused).
    assert p.isr == {1, 2, 3} and p.maximal_isr == {1, 2, 3}
    assert not p.leader_log_appended(12) and p.high_watermark == 6
    assert p.maybe_shrink_isr() is None            # one change in flight at a time
    assert p.out_of_sync_replicas() == set()
    fetch(p, 2, 12)
    assert commit(p, proposal, [1, 2])              # ISR {1, 2}: HW moves to 12
    assert p.isr == {1, 2} and p.isr_state is IsrState.COMMITTED and p.partition_epoch == 2
    assert p.high_watermark == 12


def test_follower_at_the_leaders_end_is_in_sync_however_long_it_is_idle():
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2), isr=(1, 2))
    p.leader_log_appended(10)
    fetch(p, 2, 10)
    clock.advance(10 * LAG)
    assert p.maybe_shrink_isr() is None


def test_follower_that_never_fetched_leaves_the_isr():
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2), isr=(1, 2))
    p.leader_log_appended(1)
    clock.advance(LAG + 1)
    assert p.maybe_shrink_isr().new_isr == [1]


# --------------------------------------------------------------------------- ISR expand

def test_follower_joins_the_isr_when_it_reaches_the_high_watermark():
    clock = ManualClock()
    p = leader(clock, isr=(1, 2))
    p.leader_log_appended(10)
    fetch(p, 2, 10)
    assert p.high_watermark == 10
    assert fetch(p, 3, 5) == (False, None)
    result = fetch(p, 3, 10)
    assert result.alter_partition.new_isr == [1, 2, 3]
    assert result.alter_partition.partition_epoch == 1
    assert p.isr_state is IsrState.PENDING_EXPAND
    # The HW already waits for it (maximal ISR), before the controller confirms, even if it
    # falls behind meanwhile.
    assert p.isr == {1, 2} and p.maximal_isr == {1, 2, 3}
    clock.advance(LAG + 1)
    p.leader_log_appended(15)
    fetch(p, 2, 15)
    assert p.high_watermark == 10
    assert not commit(p, result.alter_partition, [1, 2, 3])
    assert p.isr == {1, 2, 3} and p.partition_epoch == 2


def test_follower_joins_only_once_it_reached_the_start_of_the_leaders_epoch():
    # The leader took over at offset 10 with a HW of 4: a follower at 8 has the HW but may
    # still hold records of the previous epoch this leader does not have.
    clock = ManualClock()
    p = leader(clock, isr=(1, 2), leo=10, hw=4)
    assert fetch(p, 3, 8).alter_partition is None
    assert fetch(p, 3, 10).alter_partition.new_isr == [1, 2, 3]


def test_only_one_isr_change_in_flight():
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2, 3, 4), isr=(1, 2))
    p.leader_log_appended(10)
    fetch(p, 2, 10)
    assert fetch(p, 3, 10).alter_partition is not None
    assert fetch(p, 4, 10).alter_partition is None      # 3's change is in flight
    clock.advance(LAG + 1)
    assert p.maybe_shrink_isr() is None


def test_alter_partition_error_table():
    assert ALTER_PARTITION_ERRORS[ErrorCode.OPERATION_NOT_ATTEMPTED] is AlterPartitionOutcome.RESET
    assert ALTER_PARTITION_ERRORS[ErrorCode.INELIGIBLE_REPLICA] is AlterPartitionOutcome.RESET
    for code in (ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.INVALID_UPDATE_VERSION,
                 ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NEW_LEADER_ELECTED):
        assert ALTER_PARTITION_ERRORS[code] is AlterPartitionOutcome.AWAIT_METADATA


def expanding(clock) -> tuple[Partition, object]:
    """A leader with ISR {1, 2} proposing to add follower 3."""
    p = leader(clock, isr=(1, 2))
    p.leader_log_appended(10)
    fetch(p, 2, 10)
    return p, fetch(p, 3, 10).alter_partition


@pytest.mark.parametrize("error", [ErrorCode.OPERATION_NOT_ATTEMPTED,
                                   ErrorCode.INELIGIBLE_REPLICA])
def test_refused_and_not_applied_resets_to_the_committed_isr(error):
    p, proposal = expanding(ManualClock())
    assert not p.alter_partition_failed(proposal, error)
    assert p.isr_state is IsrState.COMMITTED and p.isr == {1, 2} and p.maximal_isr == {1, 2}
    again = fetch(p, 3, 10).alter_partition           # free to propose again
    assert again is not None and again is not proposal


@pytest.mark.parametrize("error", [ErrorCode.FENCED_LEADER_EPOCH,
                                   ErrorCode.INVALID_UPDATE_VERSION])
def test_stale_leader_or_version_waits_for_the_metadata(error):
    p, proposal = expanding(ManualClock())
    assert not p.alter_partition_failed(proposal, error)
    assert p.isr_state is IsrState.PENDING_EXPAND
    assert fetch(p, 3, 10).alter_partition is None
    # The metadata says what happened: the controller moved the partition on (epoch 2 with
    # ISR {1, 2} after some other change); that replaces the pending change.
    assert not p.make_leader(leader_epoch=1, partition_epoch=2, replicas=[1, 2, 3], isr=[1, 2],
                             log_end_offset=10, high_watermark=10)
    assert p.isr_state is IsrState.COMMITTED and p.isr == {1, 2}
    # The stale answer to the old proposal changes nothing now.
    assert not commit(p, proposal, [1, 2, 3]) and p.isr == {1, 2}
    assert fetch(p, 3, 10).alter_partition.partition_epoch == 2


def test_unexpected_error_sends_the_same_proposal_again():
    p, proposal = expanding(ManualClock())
    assert p.alter_partition_failed(proposal, ErrorCode.UNKNOWN_SERVER_ERROR)
    assert p.isr_state is IsrState.PENDING_EXPAND and p.pending.proposal is proposal


def test_answers_out_of_date_are_ignored():
    p, proposal = expanding(ManualClock())
    # Another leader epoch, or an older partition epoch: stay pending.
    assert not p.alter_partition_succeeded(proposal, leader_epoch=2, isr=[1, 2, 3],
                                           partition_epoch=2)
    assert not p.alter_partition_succeeded(proposal, leader_epoch=1, isr=[1, 2, 3],
                                           partition_epoch=0)
    assert p.isr_state is IsrState.PENDING_EXPAND
    # The same partition epoch: the controller had nothing to change; commit what it says.
    p.alter_partition_succeeded(proposal, leader_epoch=1, isr=[1, 2, 3], partition_epoch=1)
    assert p.isr_state is IsrState.COMMITTED and p.isr == {1, 2, 3}
    # A second answer to the same proposal finds nothing pending.
    assert not p.alter_partition_failed(proposal, ErrorCode.UNKNOWN_SERVER_ERROR)


# ------------------------------------------------------------------------ acks=all

def test_acks_all_waits_for_every_isr_member():
    p = leader(ManualClock(), min_isr=2)
    p.check_append(-1)
    p.leader_log_appended(5)
    assert p.check_enough_replicas_reach_offset(5) == (False, ErrorCode.NONE)
    fetch(p, 2, 5)
    assert p.check_enough_replicas_reach_offset(5) == (False, ErrorCode.NONE)
    assert fetch(p, 3, 5).high_watermark_moved
    assert p.check_enough_replicas_reach_offset(5) == (True, ErrorCode.NONE)


def test_not_enough_replicas_before_append():
    clock = ManualClock()
    p = leader(clock, min_isr=2)
    p.leader_log_appended(5)
    fetch(p, 2, 5)
    fetch(p, 3, 5)
    p.leader_log_appended(6)           # then both followers stop fetching
    clock.advance(LAG + 1)
    proposal = p.maybe_shrink_isr()
    assert proposal.new_isr == [1]
    p.check_append(-1)                 # the shrink is not committed yet
    commit(p, proposal, [1])
    with pytest.raises(KafkaError) as e:
        p.check_append(-1)
    assert e.value.code == ErrorCode.NOT_ENOUGH_REPLICAS
    assert "min.isr requirement of 2" in e.value.message
    p.check_append(1)                  # acks=1 and acks=0 are written all the same
    p.check_append(0)
    # Below min.insync.replicas the HW stands still: what acks=1 wrote is not yet visible,
    # and an acks=all Produce would wait (its caller answers REQUEST_TIMED_OUT at the timeout).
    assert p.is_under_min_isr
    assert not p.leader_log_appended(8) and p.high_watermark == 5
    assert p.check_enough_replicas_reach_offset(8) == (False, ErrorCode.NONE)
    # Follower 2 catches up and rejoins: the HW moves on.
    result = fetch(p, 2, 8)
    assert result.alter_partition.new_isr == [1, 2] and not result.high_watermark_moved
    assert commit(p, result.alter_partition, [1, 2]) and p.high_watermark == 8
    assert p.check_enough_replicas_reach_offset(8) == (True, ErrorCode.NONE)


def test_not_enough_replicas_after_append():
    # The HW reached the Produce's offset, but before the waiting Produce was looked at, the
    # controller took a replica out of the ISR (its broker was fenced).
    p = leader(ManualClock(), min_isr=3)
    p.check_append(-1)
    p.leader_log_appended(5)
    fetch(p, 2, 5)
    assert fetch(p, 3, 5).high_watermark_moved
    p.make_leader(leader_epoch=1, partition_epoch=2, replicas=[1, 2, 3], isr=[1, 2],
                  log_end_offset=5, high_watermark=5)
    assert p.check_enough_replicas_reach_offset(5) == (
        True, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND)


def test_min_insync_replicas_is_capped_by_the_replication_factor():
    p = leader(ManualClock(), replicas=(1,), isr=(1,), min_isr=2)
    assert p.effective_min_isr == 1
    p.check_append(-1)
    assert p.leader_log_appended(3)
    assert p.check_enough_replicas_reach_offset(3) == (True, ErrorCode.NONE)


def test_a_follower_takes_no_produce():
    p = leader(ManualClock())
    p.make_follower(leader_id=2, leader_epoch=2, partition_epoch=2, replicas=[1, 2, 3],
                    log_end_offset=0, high_watermark=0)
    with pytest.raises(KafkaError) as e:
        p.check_append(1)
    assert e.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert p.check_enough_replicas_reach_offset(1) == (False, ErrorCode.NOT_LEADER_OR_FOLLOWER)


# ------------------------------------------------------------ fetch epochs and brokers

@pytest.mark.parametrize("current_leader_epoch, code", [
    (0, ErrorCode.FENCED_LEADER_EPOCH),
    (2, ErrorCode.UNKNOWN_LEADER_EPOCH),
])
def test_fetch_in_another_leader_epoch(current_leader_epoch, code):
    p = leader(ManualClock(), epoch=1)
    with pytest.raises(KafkaError) as e:
        fetch(p, 2, 0, current_leader_epoch=current_leader_epoch)
    assert e.value.code == code
    assert p.remote_replicas[2].log_end_offset == UNKNOWN_OFFSET
    fetch(p, 2, 0, current_leader_epoch=-1)          # no epoch named: served
    assert p.remote_replicas[2].log_end_offset == 0


def test_fetch_from_a_broker_that_is_not_a_replica():
    p = leader(ManualClock(), replicas=(1, 2), isr=(1, 2))
    with pytest.raises(KafkaError) as e:
        fetch(p, 9, 0)
    assert e.value.code == ErrorCode.UNKNOWN_LEADER_EPOCH
    with pytest.raises(KafkaError) as e:
        fetch(p, 9, 0, current_leader_epoch=-1)
    assert e.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_fetch_to_a_follower():
    p = Partition("orders", 0, 1, ManualClock())
    p.make_follower(leader_id=2, leader_epoch=1, partition_epoch=1, replicas=[1, 2],
                    log_end_offset=0, high_watermark=0)
    with pytest.raises(KafkaError) as e:
        p.update_follower_fetch_state(2, fetch_offset=0, leader_log_end_offset=0)
    assert e.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    p.check_current_leader_epoch(1, require_leader=False)


def test_fetch_from_an_older_incarnation_of_the_broker_is_fenced():
    brokers = {1: Broker(7), 2: Broker(12)}
    p = leader(ManualClock(), replicas=(1, 2), isr=(1, 2), brokers=brokers)
    with pytest.raises(KafkaError) as e:
        fetch(p, 2, 0, broker_epoch=11)
    assert e.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert p.remote_replicas[2].log_end_offset == UNKNOWN_OFFSET
    fetch(p, 2, 0, broker_epoch=12)
    assert p.remote_replicas[2].broker_epoch == 12


@pytest.mark.parametrize("registration, joins", [
    (Broker(12), True),
    (Broker(12, fenced=True), False),
    (Broker(12, in_controlled_shutdown=True), False),
    (Broker(10), False),            # fetching with an epoch the controller does not know yet
    (None, False),                  # not registered
])
def test_only_an_eligible_broker_joins_the_isr(registration, joins):
    brokers = {1: Broker(7)}
    if registration is not None:
        brokers[2] = registration
    p = leader(ManualClock(), replicas=(1, 2), isr=(1,), brokers=brokers)
    result = fetch(p, 2, 0, broker_epoch=12)
    assert (result.alter_partition is not None) == joins


def test_isr_proposal_carries_broker_epochs():
    brokers = {1: Broker(7), 2: Broker(12), 3: Broker(13)}
    p = leader(ManualClock(), isr=(1, 2), brokers=brokers)
    proposal = fetch(p, 3, 0, broker_epoch=13).alter_partition
    # The leader's registered epoch; follower 2 has not fetched from this leader yet (-1);
    # follower 3 with the epoch it fetched with.
    assert proposal.new_isr_with_epochs == ((1, 7), (2, -1), (3, 13))


def test_isr_follows_the_replica_order():
    p = leader(ManualClock(), replicas=(3, 1, 2), isr=(1, 3))
    proposal = fetch(p, 2, 0).alter_partition
    assert proposal.new_isr == [3, 1, 2]


# ------------------------------------------------------------------------------ follower

def test_follower_truncates_then_fetches():
    p = Partition("orders", 0, 2, ManualClock())
    assert p.make_follower(leader_id=1, leader_epoch=4, partition_epoch=4, replicas=[1, 2],
                           log_end_offset=30, high_watermark=20)
    assert not p.is_leader and p.isr == set() and p.remote_replicas == {}
    assert (p.fetch_state, p.fetch_offset) == (FetchState.TRUNCATING, 20)
    p.truncated(OffsetTruncationState(25, False), log_end_offset=25)
    assert (p.fetch_state, p.fetch_offset) == (FetchState.TRUNCATING, 25)
    p.truncated(OffsetTruncationState(18, True), log_end_offset=18)
    assert (p.fetch_state, p.fetch_offset) == (FetchState.FETCHING, 18)
    assert p.high_watermark == 18                 # came down with the log end
    # The same leader epoch again (an ISR change): the follower carries on.
    assert not p.make_follower(leader_id=1, leader_epoch=4, partition_epoch=5, replicas=[1, 2],
                               log_end_offset=18, high_watermark=18)
    assert p.fetch_state is FetchState.FETCHING


def test_follower_high_watermark_comes_from_the_leader_within_its_own_log():
    p = Partition("orders", 0, 2, ManualClock())
    p.make_follower(leader_id=1, leader_epoch=1, partition_epoch=1, replicas=[1, 2],
                    log_end_offset=0, high_watermark=0)
    p.truncated(OffsetTruncationState(0, True), log_end_offset=0)
    assert p.follower_fetched(log_end_offset=10, log_start_offset=0, leader_high_watermark=8)
    assert (p.high_watermark, p.fetch_offset) == (8, 10)
    # The leader is further on than this follower's log: its own end is the limit.
    assert p.follower_fetched(log_end_offset=12, log_start_offset=0, leader_high_watermark=50)
    assert p.high_watermark == 12
    assert not p.follower_fetched(log_end_offset=12, log_start_offset=0,
                                  leader_high_watermark=50)
    # A new leader whose HW lags: the follower's follows it down, as Kafka's does.
    assert p.follower_fetched(log_end_offset=12, log_start_offset=0, leader_high_watermark=9)
    assert p.high_watermark == 9
    # Never below the log start offset.
    p.follower_fetched(log_end_offset=12, log_start_offset=11, leader_high_watermark=9)
    assert p.high_watermark == 11


def test_leader_becoming_follower_drops_its_isr_change():
    p, proposal = expanding(ManualClock())
    p.make_follower(leader_id=2, leader_epoch=2, partition_epoch=2, replicas=[1, 2, 3],
                    log_end_offset=10, high_watermark=10)
    assert p.pending is None and p.remote_replicas == {} and p.maybe_shrink_isr() is None
    assert not p.alter_partition_succeeded(proposal, leader_epoch=1, isr=[1, 2, 3],
                                           partition_epoch=2)
    assert not p.is_leader
