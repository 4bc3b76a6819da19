"""KIP-392's replica selectors (replica/selector.py): which replica a consumer is sent to, as
Kafka's RackAwareReplicaSelector and ReplicaManager.findPreferredReadReplica decide it, over a
leader's replica state (replica/partition_state.py) driven by a ManualClock, without sockets."""

import pytest

from trioka.clock import ManualClock
from trioka.replica.partition_state import Partition
from trioka.replica.selector import (LEADER_SELECTOR, NO_PREFERRED_REPLICA,
                                     RACK_AWARE_REPLICA_SELECTOR, ClientMetadata,
                                     LeaderSelector, RackAwareReplicaSelector, ReplicaView,
                                     preferred_read_replica, replica_selector)

RACKS = {1: "a", 2: "b", 3: "c", 4: "b"}


def leader(clock, *, replicas=(1, 2, 3), isr=(1, 2, 3), leo=10) -> Partition:
    p = Partition("orders", 0, 1, clock)
    p.make_leader(leader_epoch=1, partition_epoch=1, replicas=list(replicas), isr=list(isr),
                  log_end_offset=leo, high_watermark=0)
    return p


def fetched(p: Partition, replica_id: int, offset: int, leader_leo: int = 10,
            log_start_offset: int = 0) -> None:
    p.update_follower_fetch_state(replica_id, fetch_offset=offset,
                                  leader_log_end_offset=leader_leo, current_leader_epoch=1,
                                  log_start_offset=log_start_offset)


def prefer(p: Partition, rack: str, clock, *, fetch_offset=5, racks=RACKS,
           selector=RACK_AWARE_REPLICA_SELECTOR, leo=10) -> int:
    return preferred_read_replica(replica_selector(selector),
                                  ClientMetadata(rack, "consumer", "PLAINTEXT"), p,
                                  leader_log_end_offset=leo, fetch_offset=fetch_offset,
                                  racks=racks, now_ms=clock.monotonic() * 1000)


def test_the_selector_by_kafka_class_name_none_by_default_and_unknown_refused():
    assert replica_selector("") is None
    assert isinstance(replica_selector(LEADER_SELECTOR), LeaderSelector)
    assert isinstance(replica_selector(RACK_AWARE_REPLICA_SELECTOR), RackAwareReplicaSelector)
    with pytest.raises(ValueError, match="replica.selector.class"):
        replica_selector("com.example.MySelector")


def test_a_consumer_in_a_followers_rack_is_sent_to_that_follower():
    clock = ManualClock()
    p = leader(clock)
    for replica in (2, 3):
        fetched(p, replica, 10)
    assert prefer(p, "b", clock) == 2
    assert prefer(p, "c", clock) == 3


def test_the_leader_when_it_is_in_the_rack_or_no_replica_is_or_the_client_has_no_rack():
    clock = ManualClock()
    p = leader(clock)
    for replica in (2, 3):
        fetched(p, replica, 10)
    assert prefer(p, "a", clock) == NO_PREFERRED_REPLICA      # the leader's own rack
    assert prefer(p, "z", clock) == NO_PREFERRED_REPLICA      # no replica there
    assert prefer(p, "", clock) == NO_PREFERRED_REPLICA       # no client.rack
    assert prefer(p, "b", clock, selector=LEADER_SELECTOR) == NO_PREFERRED_REPLICA
    assert prefer(p, "b", clock, selector="") == NO_PREFERRED_REPLICA   # none configured


def test_only_in_sync_replicas_that_hold_the_fetch_offset_are_offered():
    clock = ManualClock()
    p = leader(clock, isr=(1, 3))
    fetched(p, 2, 10)       # rack b, caught up, but not in the ISR (yet)
    fetched(p, 3, 4)        # rack c, in the ISR, behind the fetch offset
    assert prefer(p, "b", clock) == NO_PREFERRED_REPLICA
    assert prefer(p, "c", clock, fetch_offset=5) == NO_PREFERRED_REPLICA
    assert prefer(p, "c", clock, fetch_offset=4) == 3
    # A follower whose log starts after the fetch offset cannot serve it.
    fetched(p, 3, 10, log_start_offset=6)
    assert prefer(p, "c", clock, fetch_offset=5) == NO_PREFERRED_REPLICA
    assert prefer(p, "c", clock, fetch_offset=6) == 3


def test_a_broker_with_no_endpoint_for_the_client_is_never_chosen():
    clock = ManualClock()
    p = leader(clock)
    for replica in (2, 3):
        fetched(p, replica, 10)
    # Broker 2 fenced, or without the client's listener: not among the live brokers' racks.
    assert prefer(p, "b", clock, racks={1: "a", 3: "c"}) == NO_PREFERRED_REPLICA


def test_within_a_rack_the_most_caught_up_replica_wins():
    clock = ManualClock()
    p = leader(clock, replicas=(1, 2, 4), isr=(1, 2, 4), leo=20)
    fetched(p, 2, 12, leader_leo=20)
    fetched(p, 4, 15, leader_leo=20)
    assert prefer(p, "b", clock, leo=20) == 4     # the higher log end offset
    fetched(p, 2, 15, leader_leo=20)
    clock.advance(1.0)
    fetched(p, 2, 20, leader_leo=20)              # caught up now; 4 at the previous fetch
    fetched(p, 4, 20, leader_leo=25)
    assert prefer(p, "b", clock, leo=25) == 2     # same end offset: the least time behind


def test_the_comparator_is_kafkas():
    a = ReplicaView(2, "b", 10, 5.0)
    b = ReplicaView(4, "b", 10, 1.0)
    c = ReplicaView(3, "b", 9, 0.0)
    assert max([a, b, c], key=ReplicaView.sort_key) is b
    assert max([ReplicaView(2, "b", 10, 1.0), ReplicaView(4, "b", 10, 1.0)],
               key=ReplicaView.sort_key).broker_id == 4   # then the higher id


def test_a_follower_never_sends_consumers_elsewhere():
    clock = ManualClock()
    p = Partition("orders", 0, 2, clock)
    p.make_follower(leader_id=1, leader_epoch=1, partition_epoch=1, replicas=[1, 2, 3],
                    log_end_offset=10, high_watermark=5)
    assert prefer(p, "c", clock) == NO_PREFERRED_REPLICA
