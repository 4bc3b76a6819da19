"""Replica placement (controller/placement.py), Kafka's StripedReplicaPlacer: replicas spread over
racks first, then brokers; leaders only on unfenced brokers; fenced brokers only when needed."""

import collections
import random

import pytest

from trioka.controller.placement import RackList, StripedReplicaPlacer, UsableBroker
from trioka.wire.errors import ErrorCode, KafkaError


def brokers(*specs):
    """(id, rack) or (id, rack, fenced) tuples -> usable brokers."""
    return [UsableBroker(spec[0], spec[1], spec[2] if len(spec) > 2 else False)
            for spec in specs]


class MockRandom:
    """Kafka's MockRandom: a java.util.Random whose generator is a fixed linear congruence, so
    that the placements of Kafka's own StripedReplicaPlacerTest can be checked here draw for
    draw. `randrange` is Random.nextInt(bound), `shuffle` Collections.shuffle."""

    def __init__(self, state: int = 17):
        self.state = state

    def next_bits(self, bits: int) -> int:
        self.state = (self.state * 2862933555777941757 + 3037000493) & (2**64 - 1)
        return self.state >> (64 - bits)

    def randrange(self, bound: int) -> int:
        r = self.next_bits(31)
        m = bound - 1
        if bound & m == 0:
            return (bound * r) >> 31
        u = r
        while True:
            r = u % bound
            if ((u - r + m + 2**31) % 2**32) - 2**31 >= 0:     # no int32 overflow
                return r
            u = self.next_bits(31)

    def shuffle(self, items: list) -> None:
        for i in range(len(items), 1, -1):
            j = self.randrange(i)
            items[i - 1], items[j] = items[j], items[i - 1]


NINE = brokers(*[(rack * 10 + i, "abc"[rack]) for rack in range(3) for i in range(3)])


@pytest.mark.parametrize("seed", range(5))
def test_each_partition_has_a_replica_in_every_rack(seed):
    placement = StripedReplicaPlacer(random.Random(seed)).place(30, 3, NINE)
    rack_of = {b.id: b.rack for b in NINE}
    for replicas in placement:
        assert len(set(replicas)) == 3
        assert sorted(rack_of[b] for b in replicas) == ["a", "b", "c"]


@pytest.mark.parametrize("seed", range(5))
def test_replicas_spread_evenly_over_brokers(seed):
    placement = StripedReplicaPlacer(random.Random(seed)).place(90, 3, NINE)
    replicas = collections.Counter(b for p in placement for b in p)
    assert set(replicas.values()) == {30}


def test_consecutive_partitions_stripe_across_racks():
    """The starting rack moves by one for each partition: leaders rotate a, b, c."""
    placement = StripedReplicaPlacer(random.Random(1)).place(6, 3, NINE)
    rack_of = {b.id: b.rack for b in NINE}
    first = [rack_of[p[0]] for p in placement]
    assert len(set(first[:3])) == 3 and first[:3] == first[3:]


def test_an_uneven_rack_still_gets_a_replica_of_every_partition():
    """Racks come first: the lone broker of rack c is in every partition (Kafka's documented
    behaviour for uneven racks)."""
    usable = brokers((1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c"))
    for replicas in StripedReplicaPlacer(random.Random(7)).place(12, 3, usable):
        assert 6 in replicas


def test_leaders_are_never_fenced_and_fenced_brokers_are_used_last():
    usable = brokers((1, None), (2, None, True), (3, None), (4, None, True))
    placement = StripedReplicaPlacer(random.Random(3)).place(20, 2, usable)
    for replicas in placement:
        assert replicas[0] in (1, 3)
        assert sorted(replicas) == [1, 3]          # two unfenced brokers are enough
    placement = StripedReplicaPlacer(random.Random(3)).place(20, 3, usable)
    for replicas in placement:
        assert replicas[0] in (1, 3) and {1, 3} <= set(replicas)


def test_brokers_without_a_rack_form_one_rack():
    usable = brokers((1, None), (2, None), (3, None))
    placement = StripedReplicaPlacer(random.Random(0)).place(3, 3, usable)
    assert all(sorted(p) == [1, 2, 3] for p in placement)
    assert sorted(p[0] for p in placement) == [1, 2, 3]


def test_the_same_seed_places_the_same_way():
    one = StripedReplicaPlacer(random.Random(42)).place(10, 2, NINE)
    two = StripedReplicaPlacer(random.Random(42)).place(10, 2, NINE)
    assert one == two


@pytest.mark.parametrize("rf,usable,message", [
    (4, brokers((1, None), (2, None), (3, None)),
     "The target replication factor of 4 cannot be reached because only 3 broker(s) are "
     "registered."),
    (2, brokers((1, None, True), (2, None, True)), "All brokers are currently fenced."),
    (0, brokers((1, None)), "Invalid replication factor 0: the replication factor must be "
                            "positive."),
])
def test_impossible_placements_are_invalid_replication_factor(rf, usable, message):
    with pytest.raises(KafkaError) as info:
        StripedReplicaPlacer(random.Random(0)).place(1, rf, usable)
    assert info.value.code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert info.value.message == message


# Kafka's StripedReplicaPlacerTest, the same brokers and the same random draws.

def test_kafka_avoid_fenced_replica_if_possible_on_single_rack():
    rack_list = RackList(MockRandom(), brokers((3, None), (1, None, True), (0, None), (4, None),
                                               (2, None)))
    assert (rack_list.num_total_brokers, rack_list.num_unfenced_brokers) == (5, 4)
    assert [rack_list.place(4) for _ in range(5)] == [
        [3, 4, 0, 2], [4, 0, 2, 3], [0, 2, 3, 4], [2, 3, 4, 0], [0, 4, 3, 2]]


def test_kafka_placement_on_fenced_replica_on_single_rack():
    rack_list = RackList(MockRandom(), brokers((3, None), (1, None, True), (2, None)))
    assert [rack_list.place(3) for _ in range(4)] == [[3, 2, 1], [2, 3, 1], [3, 2, 1], [2, 3, 1]]


def test_kafka_rack_list_with_multiple_racks():
    rack_list = RackList(MockRandom(), brokers((11, "1"), (10, "1"), (30, "3"), (31, "3"),
                                               (21, "2"), (20, "2", True)))
    assert rack_list.rack_names == ["1", "2", "3"]
    assert [rack_list.place(4) for _ in range(3)] == [
        [11, 21, 31, 10], [21, 30, 10, 20], [31, 11, 21, 30]]


def test_kafka_rack_list_with_invalid_racks():
    rack_list = RackList(MockRandom(), brokers((11, "1"), (10, "1"), (30, "3", True),
                                               (31, "3", True), (20, "2", True), (21, "2", True),
                                               (41, "4"), (40, "4", True)))
    assert (rack_list.num_total_brokers, rack_list.num_unfenced_brokers) == (8, 3)
    assert [rack_list.place(4) for _ in range(3)] == [
        [41, 11, 21, 30], [10, 20, 31, 41], [41, 21, 30, 11]]


def test_kafka_successful_placement():
    placer = StripedReplicaPlacer(MockRandom())
    assert placer.place(5, 3, brokers((0, None), (3, None), (2, None), (1, None))) == [
        [2, 3, 0], [3, 0, 1], [0, 1, 2], [1, 2, 3], [1, 0, 2]]


def test_kafka_multi_partition_topic_placement_on_single_unfenced_broker():
    placer = StripedReplicaPlacer(MockRandom())
    assert placer.place(3, 1, brokers((0, None), (1, None, True))) == [[0], [0], [0]]


def test_kafka_even_distribution():
    placer = StripedReplicaPlacer(MockRandom())
    placement = placer.place(200, 2, brokers((0, None), (1, None), (2, None), (3, None)))
    counts = collections.Counter(tuple(p) for p in placement)
    assert counts == {(0, 1): 14, (0, 2): 22, (0, 3): 14, (1, 0): 17, (1, 2): 17, (1, 3): 16,
                      (2, 0): 13, (2, 1): 17, (2, 3): 20, (3, 0): 20, (3, 1): 19, (3, 2): 11}
