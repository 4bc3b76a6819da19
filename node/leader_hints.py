"""KIP-951: the current leader, told to a client that asked the wrong node.

A Produce (v10+) or Fetch (v16+) partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH
carries `current_leader` (leader id and leader epoch, as this node knows them), and the response's
`node_endpoints` lists those leaders at their address on the listener the client came in on, so
the client goes straight to the new leader instead of first asking for metadata.

What this node knows is Kafka's KafkaApis.getCurrentLeader: the partition's replica here when it
holds one (its leader and leader epoch), else the metadata image (-1 and -1 for a partition it
does not know). The endpoint is given only for a leader that is a live (unfenced) broker with
that listener; the leader id and epoch are given either way.
"""

from trioka.wire.errors import ErrorCode

# The errors whose answers carry the hint.
HINTED_ERRORS = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH})

NO_LEADER = -1


class LeaderHints:
    """The hints of one response: `current_leader` per partition, then `node_endpoints`."""

    def __init__(self, broker, listener):
        self.broker = broker
        self.listener = listener
        self.endpoints: dict[int, tuple[str, int, str | None]] = {}
        self.live: dict | None = None     # node id -> (host, port, rack), read once

    def current_leader(self, topic: str | None, index: int) -> tuple[int, int]:
        """(leader id, leader epoch) of topic-index; remembers the leader's endpoint."""
        cluster = self.broker.cluster
        leader, epoch = NO_LEADER, -1
        hosted = cluster.replicas.partitions.get((topic, index)) if topic is not None else None
        if hosted is not None:
            leader, epoch = hosted.state.leader_id, hosted.state.leader_epoch
        else:
            image = cluster.image
            image_topic = image.topic(topic) if image is not None and topic is not None else None
            registration = image_topic.partitions.get(index) if image_topic is not None else None
            if registration is not None:
                leader, epoch = registration.leader, registration.leader_epoch
        if leader >= 0:
            if self.live is None:
                self.live = {node: (host, port, rack)
                             for node, host, port, rack in self.broker.brokers_view(self.listener)}
            endpoint = self.live.get(leader)
            if endpoint is not None:
                self.endpoints[leader] = endpoint
        return leader, epoch

    def node_endpoints(self, node_endpoint_class) -> list:
        """The response's `node_endpoints`: the leaders hinted at, by node id."""
        return [node_endpoint_class(node_id=node, host=host, port=port, rack=rack)
                for node, (host, port, rack) in sorted(self.endpoints.items())]
