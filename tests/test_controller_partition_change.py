"""The election and ISR rules (controller/partition_change.py), checked on the partitions and
expectations of Kafka's PartitionChangeBuilderTest (PartitionChangeRecord v0: no directories,
no eligible leader replicas), and replayed through PartitionRegistration.merge."""

import uuid

import pytest

from trioka.controller.partition_change import Election, PartitionChangeBuilder
from trioka.metadata import records as r
from trioka.metadata.image import LeaderRecoveryState, PartitionRegistration
from trioka.metadata.records import NO_LEADER, NO_LEADER_CHANGE

TOPIC = uuid.UUID(int=0xF00)
RECOVERED, RECOVERING = LeaderRecoveryState.RECOVERED, LeaderRecoveryState.RECOVERING


def partition(replicas, isr, leader, removing=(), adding=(), recovery=RECOVERED):
    return PartitionRegistration(replicas=list(replicas), isr=list(isr),
                                 removing_replicas=list(removing), adding_replicas=list(adding),
                                 leader=leader, leader_recovery_state=recovery, leader_epoch=100,
                                 partition_epoch=200)


FOO = partition([2, 1, 3], [2, 1, 3], leader=1)
BAR = partition([1, 2, 3, 4], [1, 2, 3], leader=1, removing=[1], adding=[4])
BAZ = partition([2, 1, 3], [1, 3], leader=3)
OFFLINE = partition([2, 1, 3], [3], leader=NO_LEADER)


def foo():
    return PartitionChangeBuilder(FOO, TOPIC, 0, lambda b: b != 3)


def bar():
    return PartitionChangeBuilder(BAR, TOPIC, 0, lambda b: b != 3)


def baz():
    return PartitionChangeBuilder(BAZ, TOPIC, 0, lambda b: True)


def offline():
    return PartitionChangeBuilder(OFFLINE, TOPIC, 0, lambda b: b == 1)


def change(**fields):
    """The PartitionChangeRecord expected, v0."""
    return r.partition_change_record(TOPIC, 0, **fields)


@pytest.mark.parametrize("builder,expected", [
    (lambda: foo().set_election(Election.PREFERRED), (2, False)),
    (lambda: foo(), (1, False)),                                   # the leader stays
    (lambda: foo().set_election(Election.UNCLEAN), (1, False)),
    (lambda: foo().set_target_isr([1, 3]), (1, False)),
    (lambda: foo().set_election(Election.UNCLEAN).set_target_isr([1, 3]), (1, False)),
    (lambda: foo().set_target_isr([3]), (NO_LEADER, False)),       # 3 cannot lead
    (lambda: foo().set_election(Election.UNCLEAN).set_target_isr([3]), (2, True)),
    (lambda: foo().set_election(Election.UNCLEAN).set_target_isr([4])
     .set_target_replicas([2, 1, 3, 4]), (4, False)),
    (lambda: baz().set_election(Election.PREFERRED), (3, False)),  # 2 is not in the ISR
    (lambda: baz(), (3, False)),
    (lambda: baz().set_election(Election.UNCLEAN), (3, False)),
])
def test_kafka_elect_leader(builder, expected):
    assert builder().elect_leader() == expected


def test_kafka_no_change_is_no_record():
    assert foo().build() is None
    assert foo().set_election(Election.UNCLEAN).build() is None
    assert bar().build() is None
    assert bar().set_election(Election.UNCLEAN).build() is None
    assert baz().set_election(Election.PREFERRED).build() is None


def test_kafka_isr_change_does_not_bump_the_leader_epoch():
    record = foo().set_target_isr([2, 1]).build()
    assert record == change(isr=[2, 1])
    merged = FOO.merge(record.message)
    assert (merged.isr, merged.leader_epoch, merged.partition_epoch) == ([2, 1], 100, 201)


def test_kafka_isr_expansion_does_not_bump_the_leader_epoch():
    assert foo().set_target_isr([2, 1, 3, 4]).build() == change(isr=[2, 1, 3, 4])


def test_kafka_isr_change_and_leader_change():
    record = foo().set_target_isr([2, 3]).build()
    assert record == change(isr=[2, 3], leader=2)
    merged = FOO.merge(record.message)
    assert (merged.leader, merged.leader_epoch, merged.partition_epoch) == (2, 101, 201)


def test_kafka_reassignment_rearranging_replicas_changes_only_them():
    assert foo().set_target_replicas([3, 2, 1]).build() == change(replicas=[3, 2, 1])


def test_kafka_replicas_leaving_bump_the_leader_epoch():
    """A replica set that drops a replica names the same leader: its epoch is bumped so the
    dropped replica's fetches are fenced."""
    record = foo().set_target_replicas([2, 1, 4]).build()
    assert record.message.leader == 1
    assert FOO.merge(record.message).leader_epoch == 101


def test_kafka_isr_enlargement_completes_reassignment():
    record = bar().set_target_isr([1, 2, 3, 4]).build()
    assert record == change(replicas=[2, 3, 4], isr=[2, 3, 4], leader=2, removing_replicas=[],
                            adding_replicas=[])
    merged = BAR.merge(record.message)
    assert not merged.is_reassigning and merged.leader == 2


def test_kafka_revert_reassignment():
    record = bar().set_target_replicas([1, 2, 3]).set_target_isr([1, 2, 3]) \
        .set_target_removing([]).set_target_adding([]).build()
    assert record == change(replicas=[1, 2, 3], leader=1, removing_replicas=[],
                            adding_replicas=[])


def test_kafka_removing_replica_reassignment():
    record = foo().set_target_replicas([1, 2, 3]).set_target_removing([3]).build()
    assert record == change(replicas=[1, 2], isr=[2, 1], leader=1)


def test_kafka_adding_replica_reassignment():
    record = foo().set_target_replicas([1, 2, 3, 4]).set_target_adding([4]).build()
    assert record == change(replicas=[1, 2, 3, 4], adding_replicas=[4])


def test_kafka_unclean_leader_election():
    record = foo().set_election(Election.UNCLEAN).set_target_isr([3]).build()
    assert record == change(isr=[2], leader=2, leader_recovery_state=RECOVERING)
    expected = change(isr=[1], leader=1, leader_recovery_state=RECOVERING)
    assert offline().set_election(Election.UNCLEAN).build() == expected
    assert offline().set_election(Election.UNCLEAN).set_target_isr([2]).build() == expected


def test_without_unclean_election_an_offline_partition_stays_offline():
    assert offline().build() is None


def test_kafka_the_last_isr_member_stays_and_a_recovering_leader_keeps_recovering():
    """The last ISR member leaving: no leader, the ISR keeps it (no eligible leader replicas);
    when it comes back it leads again, still RECOVERING."""
    part = partition([1, 2, 3], [1], leader=1, recovery=RECOVERING)
    record = PartitionChangeBuilder(part, TOPIC, 0, lambda b: False).set_target_isr([]).build()
    assert record == change(leader=NO_LEADER)
    part = part.merge(record.message)
    assert (part.leader, part.isr, part.leader_recovery_state) == (NO_LEADER, [1], RECOVERING)
    record = PartitionChangeBuilder(part, TOPIC, 0, lambda b: True).build()
    assert record == change(leader=1)
    part = part.merge(record.message)
    assert (part.leader, part.isr, part.leader_recovery_state) == (1, [1], RECOVERING)
    assert part.leader_epoch == 102


def test_kafka_unclean_sets_the_leader_recovering():
    part = partition([1, 2, 3], [2, 3], leader=NO_LEADER)
    record = PartitionChangeBuilder(part, TOPIC, 0, lambda b: b == 1) \
        .set_election(Election.UNCLEAN).build()
    assert record == change(isr=[1], leader=1, leader_recovery_state=RECOVERING)
    part = part.merge(record.message)
    assert (part.leader, part.isr, part.leader_recovery_state) == (1, [1], RECOVERING)


def test_kafka_stopped_leader_is_demoted_when_the_reassignment_completes():
    """Reassigning [0, 1] to [2, 3] with none of the new replicas able to lead: the old leader
    must not stay leader of a partition it is no longer a replica of."""
    part = partition([2, 3, 0, 1], [0, 1], leader=0, removing=[0, 1], adding=[2, 3])
    record = PartitionChangeBuilder(part, TOPIC, 0, lambda b: False) \
        .set_target_isr([0, 1, 2, 3]).build()
    assert record == change(replicas=[2, 3], isr=[2, 3], removing_replicas=[],
                            adding_replicas=[], leader=NO_LEADER)


def test_the_leader_recovery_state_follows_the_target():
    part = partition([1, 2], [1], leader=1, recovery=RECOVERING)
    record = PartitionChangeBuilder(part, TOPIC, 0, lambda b: True) \
        .set_target_leader_recovery_state(RECOVERED).build()
    assert record == change(leader_recovery_state=RECOVERED)
    assert part.merge(record.message).leader_recovery_state is RECOVERED


def test_a_preferred_election_moves_the_leader_back_to_the_first_replica():
    part = partition([1, 2, 3], [1, 2, 3], leader=2)
    record = PartitionChangeBuilder(part, TOPIC, 0, lambda b: True) \
        .set_election(Election.PREFERRED).build()
    assert record == change(leader=1)
    # an online election keeps the current leader
    assert PartitionChangeBuilder(part, TOPIC, 0, lambda b: True).build() is None


def test_no_record_change_is_a_no_op():
    assert r.is_no_op(change().message)
    assert not r.is_no_op(change(leader=NO_LEADER).message)
    assert not r.is_no_op(change(isr=[]).message)
    assert change().message.leader == NO_LEADER_CHANGE
