"""KIP-392: which replica a consumer should fetch from, `replica.selector.class`.

A consumer names its location in Fetch v11+ (`rack_id`, the client's `client.rack`). When the
broker has a replica selector, the leader of a partition asks it, for every consumer fetch, which
replica that consumer should read; when the answer is a follower, the leader returns no records
for the partition, only `preferred_read_replica` = that follower's id (and its HW, LSO and log
start offset), and the consumer fetches from the follower from then on. A follower serves a
consumer's fetch up to its own high watermark (apis/fetch.py).

The replicas offered to the selector are Kafka's (ReplicaManager.findPreferredReadReplica):

- the leader itself, always;
- each follower that is in the ISR and holds the fetch offset (its log start offset <= the fetch
  offset <= its log end offset, as the leader last heard from its fetches);
- each with the endpoint of its broker on the listener the consumer came in on: an unregistered
  or fenced broker, or one without that listener, has no endpoint (Kafka's Node.noNode()), so it
  matches no rack and is never chosen.

Selectors, by Kafka's class names:

| replica.selector.class                                    | chooses                           |
|-----------------------------------------------------------|-----------------------------------|
| (unset: Kafka's default)                                  | nothing: consumers read leaders   |
| org.apache.kafka.common.replica.LeaderSelector            | the leader                        |
| org.apache.kafka.common.replica.RackAwareReplicaSelector  | a client without a rack, or in a  |
|                                                           | rack with no replica: the leader; |
|                                                           | the leader if it is in the        |
|                                                           | client's rack; else the replica   |
|                                                           | of that rack most caught up       |

"Most caught up" is Kafka's ReplicaView.comparator: the highest log end offset, then the least
time since the replica was last caught up, then the highest broker id. The leader is never sent
as a preferred read replica (-1 means "keep fetching here").

Plain `def`, no I/O: the caller gives the partition's replica state (replica/partition_state.py),
the racks of the live brokers on the client's listener, and the time.
"""

import dataclasses
import functools
from typing import NamedTuple

LEADER_SELECTOR = "org.apache.kafka.common.replica.LeaderSelector"
RACK_AWARE_REPLICA_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"

NO_PREFERRED_REPLICA = -1     # Kafka's FetchResponse.INVALID_PREFERRED_REPLICA_ID
NO_NODE = -1                  # Kafka's Node.noNode() id


class ClientMetadata(NamedTuple):
    """What a consumer's Fetch says of it (Kafka's DefaultClientMetadata)."""
    rack_id: str
    client_id: str
    listener_name: str | None


@dataclasses.dataclass(frozen=True)
class ReplicaView:
    """One replica as a selector sees it (Kafka's DefaultReplicaView)."""
    broker_id: int                 # NO_NODE when its broker has no endpoint for the client
    rack: str | None
    log_end_offset: int
    time_since_last_caught_up_ms: float
    is_leader: bool = False

    def sort_key(self) -> tuple:
        """Kafka's ReplicaView.comparator: the greatest is the most caught up."""
        return (self.log_end_offset, -self.time_since_last_caught_up_ms, self.broker_id)


class LeaderSelector:
    """Always the leader (Kafka's LeaderSelector, the behaviour before KIP-392)."""

    def select(self, client: ClientMetadata, leader: ReplicaView,
               replicas: list[ReplicaView]) -> ReplicaView | None:
        return leader


class RackAwareReplicaSelector:
    """The closest replica by rack (Kafka's RackAwareReplicaSelector; see the module's table)."""

    def select(self, client: ClientMetadata, leader: ReplicaView,
               replicas: list[ReplicaView]) -> ReplicaView | None:
        if not client.rack_id:
            return leader
        same_rack = [r for r in replicas if r.rack == client.rack_id]
        if not same_rack or leader in same_rack:
            return leader
        return max(same_rack, key=ReplicaView.sort_key)


SELECTORS = {
    LEADER_SELECTOR: LeaderSelector,
    RACK_AWARE_REPLICA_SELECTOR: RackAwareReplicaSelector,
}


@functools.lru_cache(maxsize=None)
def replica_selector(class_name: str):
    """The selector `replica.selector.class` names; None when unset (consumers read leaders
    only). ValueError for a class trioka does not have, as Kafka fails to start on a class it
    cannot load."""
    name = (class_name or "").strip()
    if not name:
        return None
    selector = SELECTORS.get(name)
    if selector is None:
        raise ValueError(f"replica.selector.class: no replica selector {name!r}; the ones "
                         f"available are {', '.join(sorted(SELECTORS))}")
    return selector()


def preferred_read_replica(selector, client: ClientMetadata, state, *,
                           leader_log_end_offset: int, fetch_offset: int, racks: dict,
                           now_ms: float) -> int:
    """The replica `selector` prefers for a consumer fetching `fetch_offset` from the
    partition whose leader-side state is `state` (replica/partition_state.Partition); `racks`
    maps each live broker with an endpoint on the client's listener to its rack (None: no
    rack). NO_PREFERRED_REPLICA when that is the leader itself, or nothing."""
    if selector is None or not state.is_leader:
        return NO_PREFERRED_REPLICA
    leader_id = state.local_broker_id
    leader = ReplicaView(leader_id if leader_id in racks else NO_NODE, racks.get(leader_id),
                         leader_log_end_offset, 0, is_leader=True)
    views = [leader]
    isr = state.isr
    for broker_id, replica in state.remote_replicas.items():
        # Followers out of the ISR may lag behind, and one without the offset cannot serve it.
        if broker_id in isr and replica.log_end_offset >= fetch_offset and \
                replica.log_start_offset <= fetch_offset:
            views.append(ReplicaView(
                broker_id if broker_id in racks else NO_NODE, racks.get(broker_id),
                replica.log_end_offset, now_ms - replica.last_caught_up_time_ms))
    selected = selector.select(client, leader, views)
    if selected is None or selected.is_leader or selected.broker_id == NO_NODE:
        return NO_PREFERRED_REPLICA
    return selected.broker_id
