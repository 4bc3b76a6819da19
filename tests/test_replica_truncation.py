"""Truncation by leader epoch, KIP-101 and KIP-279 (trioka.replica.truncation), on real partition
logs: each test writes batches in the leader epochs a history of elections gives, lets a follower
truncate by asking its leader's epoch cache, copies what it is missing, and checks that the two
logs end up byte for byte the same with nothing acknowledged lost."""

from record_batches import make_batch
from trioka.clock import ManualClock
from trioka.log import batch
from trioka.log.batch import AppendOrigin
from trioka.log.files import MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.records import iter_batches
from trioka.replica.partition_state import FetchState, Partition
from trioka.replica.truncation import (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, EpochEndOffset,
                                       OffsetTruncationState, epoch_end_offset, latest_epoch,
                                       offset_truncation_state, truncation_without_epochs)
from trioka.wire.errors import ErrorCode

NOW = 1_700_000_000_000


def open_log(name: str) -> PartitionLog:
    return PartitionLog("orders", 0, f"{name}/orders-0", MemoryFiles(), now_ms=NOW)


def write(log: PartitionLog, *values: bytes, epoch: int) -> None:
    """The leader of `epoch` appends one single-record batch per value."""
    for value in values:
        log.append(make_batch([value]), now_ms=NOW, leader_epoch=epoch,
                   origin=AppendOrigin.COORDINATOR)


def contents(log: PartitionLog) -> list[tuple[int, int, bytes]]:
    """(offset, leader epoch, value) of every record."""
    data = bytes(log.read(0, 1 << 20, isolation_upper=log.log_end_offset).records)
    return [(b.base_offset + r.offset_delta, b.partition_leader_epoch, r.value)
            for b in iter_batches(data) for r in b.records]


def stored_bytes(log: PartitionLog) -> bytes:
    return bytes(log.read(0, 1 << 20, isolation_upper=log.log_end_offset).records)


def replicate(leader: PartitionLog, follower: PartitionLog) -> None:
    """A follower's fetch from its log end offset: every batch the leader has from there is
    appended as it is, in the leader epoch it was written in."""
    data = bytes(leader.read(follower.log_end_offset, 1 << 20,
                             isolation_upper=leader.log_end_offset).records)
    for info in batch.validate_batches(data, origin=AppendOrigin.COORDINATOR):
        one = data[info.position:info.position + 12 + info.batch_length]
        follower.append(one, now_ms=NOW, leader_epoch=info.partition_leader_epoch,
                        origin=AppendOrigin.COORDINATOR)


def truncate_by_leader_epoch(follower: PartitionLog, leader: PartitionLog,
                             fetch_offset: int) -> list[OffsetTruncationState]:
    """The follower's truncation phase: ask the leader about its latest epoch, truncate, and ask
    again until the leader's answer is final. Returns each round's state."""
    rounds = []
    while True:
        epoch = latest_epoch(follower)
        if epoch is None:
            state = truncation_without_epochs(fetch_offset)
        else:
            state = offset_truncation_state(follower, epoch_end_offset(leader, epoch),
                                            fetch_offset)
        follower.truncate_to(state.offset, NOW)
        rounds.append(state)
        if state.truncation_completed:
            return rounds


# ------------------------------------------------------------------- the leader's answer

def test_leader_answer_is_the_log_epoch_cache():
    log = open_log("a")
    write(log, b"a", b"b", b"c", epoch=0)
    write(log, b"d", b"e", b"f", epoch=2)
    write(log, b"g", b"h", epoch=5)
    assert log.epoch_entries == [(0, 0), (2, 3), (5, 6)]
    assert epoch_end_offset(log, 5) == EpochEndOffset(5, 8)   # the latest: the log end offset
    assert epoch_end_offset(log, 2) == (2, 6)                 # ended where epoch 5 starts
    assert epoch_end_offset(log, 4) == (2, 6)                 # largest epoch <= 4 is 2
    assert epoch_end_offset(log, 1) == (0, 3)
    assert epoch_end_offset(log, 6) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert epoch_end_offset(log, -1) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    # One rule, the log's (the same answer consumers get from OffsetForLeaderEpoch).
    for epoch in range(-1, 8):
        assert tuple(epoch_end_offset(log, epoch)) == log.end_offset_for_epoch(epoch)


def test_epoch_older_than_the_cache_ends_where_the_first_epoch_starts():
    log = open_log("a")
    write(log, b"a", b"b", epoch=3)
    write(log, b"c", epoch=4)
    assert epoch_end_offset(log, 1) == (1, 0)


# ------------------------------------------------------------------- the follower's offset

def test_follower_that_agrees_with_its_leader_truncates_nothing():
    leader, follower = open_log("a"), open_log("b")
    write(leader, b"a", b"b", epoch=0)
    write(leader, b"c", epoch=1)
    replicate(leader, follower)
    answer = epoch_end_offset(leader, latest_epoch(follower))
    assert offset_truncation_state(follower, answer, fetch_offset=1) == (3, True)


def test_follower_with_more_data_than_the_new_leader_truncates():
    # Epoch 1: broker A leads and writes 0..4; B has all five, C only 0..2. A dies; C (in the
    # ISR: behind by less than replica.lag.time.max.ms) leads epoch 2 and writes two records.
    a, b, c = open_log("a"), open_log("b"), open_log("c")
    write(a, b"m0", b"m1", b"m2", b"m3", b"m4", epoch=1)
    replicate(a, b)
    replicate(a, c)
    c.truncate_to(3, NOW)            # C had fetched only up to offset 3
    write(c, b"n3", b"n4", epoch=2)
    rounds = truncate_by_leader_epoch(b, c, fetch_offset=3)
    # B asks about epoch 1: on C it ended at 3, so B drops m3 and m4 (never committed).
    assert rounds == [OffsetTruncationState(3, True)]
    replicate(c, b)
    assert contents(b) == [(0, 1, b"m0"), (1, 1, b"m1"), (2, 1, b"m2"), (3, 2, b"n3"),
                           (4, 2, b"n4")]
    assert stored_bytes(b) == stored_bytes(c) and b.epoch_entries == c.epoch_entries


def test_follower_ahead_of_a_leader_that_has_not_written_yet():
    # The new leader C has written nothing in its epoch yet: its latest epoch is still 1, and
    # it answers with its log end offset.
    b, c = open_log("b"), open_log("c")
    write(b, b"m0", b"m1", b"m2", b"m3", epoch=1)
    write(c, b"m0", b"m1", epoch=1)
    assert truncate_by_leader_epoch(b, c, fetch_offset=1) == [(2, True)]
    assert stored_bytes(b) == stored_bytes(c)


def test_kip101_high_watermark_truncation_would_lose_an_acknowledged_message():
    # KIP-101's first case. A leads, B follows, min.insync.replicas=2, acks=all. B learns the
    # high watermark one fetch late, so when A acknowledges m2, B's HW still says 1.
    clock = ManualClock()
    a_log, b_log = open_log("a"), open_log("b")
    a = Partition("orders", 0, 1, clock, min_insync_replicas=2)
    b = Partition("orders", 0, 2, clock, min_insync_replicas=2)
    a.make_leader(leader_epoch=0, partition_epoch=0, replicas=[1, 2], isr=[1, 2],
                  log_end_offset=0, high_watermark=0)
    b.make_follower(leader_id=1, leader_epoch=0, partition_epoch=0, replicas=[1, 2],
                    log_end_offset=0, high_watermark=0)
    b.truncated(truncation_without_epochs(b.fetch_offset), log_end_offset=b_log.log_end_offset)

    def produce(value: bytes) -> int:
        a.check_append(-1)
        write(a_log, value, epoch=0)
        a.leader_log_appended(a_log.log_end_offset)
        return a_log.log_end_offset            # the offset acks=all waits for

    def b_fetches() -> None:
        leader_high_watermark = a.high_watermark   # read before this fetch moves it, as Kafka
        a.update_follower_fetch_state(2, fetch_offset=b.fetch_offset,
                                      leader_log_end_offset=a_log.log_end_offset,
                                      current_leader_epoch=0)
        replicate(a_log, b_log)
        b.follower_fetched(log_end_offset=b_log.log_end_offset, log_start_offset=0,
                           leader_high_watermark=leader_high_watermark)

    m1 = produce(b"m1")
    b_fetches()
    b_fetches()
    assert a.check_enough_replicas_reach_offset(m1) == (True, ErrorCode.NONE)
    m2 = produce(b"m2")
    b_fetches()
    b_fetches()
    assert a.check_enough_replicas_reach_offset(m2) == (True, ErrorCode.NONE)   # acknowledged
    assert (a.high_watermark, b.high_watermark, b_log.log_end_offset) == (2, 1, 2)

    # B restarts. Truncating to its HW (1) would drop m2, and if A then died, B would lead
    # without it. B asks A instead: epoch 0 ends at 2 on A, so B keeps m2.
    restarted = Partition("orders", 0, 2, clock, min_insync_replicas=2)
    restarted.make_follower(leader_id=1, leader_epoch=0, partition_epoch=0, replicas=[1, 2],
                            log_end_offset=b_log.log_end_offset, high_watermark=1)
    assert restarted.fetch_state is FetchState.TRUNCATING and restarted.fetch_offset == 1
    rounds = truncate_by_leader_epoch(b_log, a_log, fetch_offset=restarted.fetch_offset)
    assert rounds == [(2, True)]
    restarted.truncated(rounds[-1], log_end_offset=b_log.log_end_offset)
    assert restarted.fetch_state is FetchState.FETCHING and restarted.fetch_offset == 2

    # A dies; B leads epoch 1 with every acknowledged message.
    restarted.make_leader(leader_epoch=1, partition_epoch=1, replicas=[1, 2], isr=[2],
                          log_end_offset=b_log.log_end_offset, high_watermark=1)
    assert [value for _, _, value in contents(b_log)] == [b"m1", b"m2"]


def test_kip101_replicas_do_not_diverge_after_two_hard_failures():
    # KIP-101's second case. A leads epoch 0 alone in the ISR; B has m1 only. A writes m2
    # (its HW moves to 2). Both lose power; B comes back first and leads epoch 1, writing m3 at
    # offset 1. A comes back as a follower with HW 2: truncating to its HW would keep m2 at the
    # offset where the leader has m3, and the logs would differ for ever.
    clock = ManualClock()
    a_log, b_log = open_log("a"), open_log("b")
    a = Partition("orders", 0, 1, clock)
    a.make_leader(leader_epoch=0, partition_epoch=0, replicas=[1, 2], isr=[1],
                  log_end_offset=0, high_watermark=0)
    write(a_log, b"m1", epoch=0)
    replicate(a_log, b_log)
    write(a_log, b"m2", epoch=0)
    assert a.leader_log_appended(a_log.log_end_offset) and a.high_watermark == 2

    write(b_log, b"m3", epoch=1)          # B, leader of epoch 1
    a.make_follower(leader_id=2, leader_epoch=1, partition_epoch=1, replicas=[1, 2],
                    log_end_offset=a_log.log_end_offset, high_watermark=2)
    rounds = truncate_by_leader_epoch(a_log, b_log, fetch_offset=a.fetch_offset)
    # A asks about epoch 0: it ended at 1 on B, below A's HW.
    assert rounds == [(1, True)] and a.fetch_offset == 2
    a.truncated(rounds[-1], log_end_offset=a_log.log_end_offset)
    assert a.high_watermark == 1 and a.fetch_offset == 1
    replicate(b_log, a_log)
    assert contents(a_log) == [(0, 0, b"m1"), (1, 1, b"m3")]
    assert stored_bytes(a_log) == stored_bytes(b_log) and a_log.epoch_entries == b_log.epoch_entries


def test_kip279_diverged_after_two_leader_changes_takes_two_rounds():
    # Epoch 1: A leads, writes m0 m1, B copies them. Epoch 2: A leads again and writes a2 a3,
    # which B never gets. Epoch 3: B leads (a quick election) and writes b2 b3 b4. Epoch 4: A
    # leads again and writes a4. B comes back as A's follower.
    a, b = open_log("a"), open_log("b")
    write(a, b"m0", b"m1", epoch=1)
    replicate(a, b)
    write(a, b"a2", b"a3", epoch=2)
    write(b, b"b2", b"b3", b"b4", epoch=3)
    write(a, b"a4", epoch=4)
    assert a.epoch_entries == [(1, 0), (2, 2), (4, 4)]
    assert b.epoch_entries == [(1, 0), (3, 2)]

    # B asks about epoch 3; A answers with epoch 2, ended at 4: an epoch B never had. Taking
    # min(4, B's end) alone would keep b2 b3. B steps back to the end of its epoch 1 (offset 2)
    # and asks again about epoch 1, which both have and which ended at 2.
    assert epoch_end_offset(a, 3) == (2, 4)
    rounds = truncate_by_leader_epoch(b, a, fetch_offset=2)
    assert rounds == [OffsetTruncationState(2, False), OffsetTruncationState(2, True)]
    replicate(a, b)
    assert contents(b) == [(0, 1, b"m0"), (1, 1, b"m1"), (2, 2, b"a2"), (3, 2, b"a3"),
                           (4, 4, b"a4")]
    assert stored_bytes(b) == stored_bytes(a) and b.epoch_entries == a.epoch_entries


def test_follower_epoch_that_ended_earlier_than_on_the_leader():
    # Epoch 1: A writes m0 m1 (B copies them), then m2 m3 (B does not). B leads epoch 3 and
    # writes b2 b3 b4; A leads epoch 4 and writes a4. B asks about 3: A's largest epoch below
    # is 1, which ended at 4 on A; but on B epoch 1 ended at 2, where b2 begins.
    a, b = open_log("a"), open_log("b")
    write(a, b"m0", b"m1", epoch=1)
    replicate(a, b)
    write(a, b"m2", b"m3", epoch=1)
    write(b, b"b2", b"b3", b"b4", epoch=3)
    write(a, b"a4", epoch=4)
    assert epoch_end_offset(a, 3) == (1, 4)
    assert truncate_by_leader_epoch(b, a, fetch_offset=2) == [(2, True)]
    replicate(a, b)
    assert [value for _, _, value in contents(b)] == [b"m0", b"m1", b"m2", b"m3", b"a4"]
    assert stored_bytes(b) == stored_bytes(a)


def test_kip279_intermediate_truncation_then_the_shared_epoch():
    # The follower's epoch unknown to the leader ended later than the shared one: the first
    # round cuts back to the end of the shared epoch on the follower, the second to the end of
    # that epoch on the leader.
    a, b = open_log("a"), open_log("b")
    # In epoch 1 A wrote m0..m3 and B copied them all; A lost m3 in a crash (it was not
    # flushed) and led epoch 2 from offset 3. B led epoch 3, A epoch 4.
    write(a, b"m0", b"m1", b"m2", epoch=1)
    write(b, b"m0", b"m1", b"m2", b"m3", epoch=1)
    write(a, b"a3", epoch=2)
    write(b, b"b4", epoch=3)
    write(a, b"a4", b"a5", epoch=4)
    # Round 1: B asks about 3, A answers (2, 4), an epoch B never had: B cuts back to the end
    # of its own epoch 1 (offset 4, dropping b4) and asks about 1. Round 2: A answers (1, 3):
    # m3 is not in A's epoch 1, so B drops it too.
    rounds = truncate_by_leader_epoch(b, a, fetch_offset=0)
    assert rounds == [(4, False), (3, True)]
    replicate(a, b)
    assert stored_bytes(b) == stored_bytes(a)


# ------------------------------------------------------------------------ the edge answers

def test_leader_with_no_such_epoch_falls_back_to_the_fetch_offset():
    follower = open_log("b")
    write(follower, b"x", b"y", b"z", epoch=4)
    answer = EpochEndOffset(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert offset_truncation_state(follower, answer, fetch_offset=1) == (1, True)


def test_answer_without_an_epoch_uses_the_offset_alone():
    follower = open_log("b")
    write(follower, b"x", b"y", b"z", epoch=4)
    assert offset_truncation_state(follower, EpochEndOffset(UNDEFINED_EPOCH, 2), 0) == (2, True)
    assert offset_truncation_state(follower, EpochEndOffset(UNDEFINED_EPOCH, 9), 0) == (3, True)


def test_truncation_offset_never_beyond_the_follower_log_end():
    follower = open_log("b")
    write(follower, b"x", epoch=2)
    # The leader's epoch 2 went on to offset 10; the follower only has offset 0.
    assert offset_truncation_state(follower, EpochEndOffset(2, 10), 0) == (1, True)
    # An epoch the follower's cache has nothing at or below: the leader's offset, capped.
    empty = open_log("c")
    assert latest_epoch(empty) is None
    assert offset_truncation_state(empty, EpochEndOffset(3, 10), 0) == (0, True)


def test_follower_without_epochs_truncates_to_its_fetch_offset():
    assert latest_epoch(open_log("b")) is None
    assert truncation_without_epochs(5) == OffsetTruncationState(5, True)
