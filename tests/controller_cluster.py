"""A controller and its metadata log, without sockets: what the controller tests drive.

`ControllerCluster` holds a metadata image, a ClusterControlManager and a
ReplicationControlManager on a ManualClock, and a list standing for `__cluster_metadata`.
`apply(records)` does what a one-voter KRaft controller does with the records of an operation:
append them (each encoded as it would be written and decoded back, so every test also checks
the wire form) and replay them, in order, into the image and the cluster control. Brokers are
registered and unfenced the way a broker does it: BrokerRegistration, then heartbeats that report
the log's end.
"""

import random
import uuid

from trioka.clock import ManualClock
from trioka.controller.cluster_control import ClusterControlManager
from trioka.controller.placement import StripedReplicaPlacer
from trioka.controller.replication_control import ReplicationControlManager
from trioka.metadata.image import MetadataImage
from trioka.metadata.records import MetadataRecord

PLAINTEXT = 0   # security protocol id


class ControllerCluster:
    def __init__(self, session_timeout_ms: int = 9000, seed: int = 0, **replication):
        self.clock = ManualClock()
        self.image = MetadataImage()
        self.log: list[MetadataRecord] = []
        self.cluster = ClusterControlManager(self.image, self.clock,
                                             session_timeout_ms=session_timeout_ms)
        self.topic_ids = (uuid.UUID(int=(seed << 64) + n) for n in range(1000, 10**6))
        self.replication = ReplicationControlManager(
            self.image, self.cluster, placer=StripedReplicaPlacer(random.Random(seed)),
            new_topic_id=lambda: next(self.topic_ids), **replication)
        self.incarnations: dict[int, uuid.UUID] = {}

    @property
    def next_offset(self) -> int:
        return len(self.log)

    @property
    def end_offset(self) -> int:
        """The offset of the last record: what a caught-up broker reports."""
        return len(self.log) - 1

    def apply(self, records) -> list:
        for record in records:
            offset = len(self.log)
            written = MetadataRecord.decode(record.encode())
            assert written == record
            self.log.append(written)
            self.image.replay(written.record_type, written.message, offset)
            self.cluster.replay(written.record_type, written.message, offset)
        return records

    # ------------------------------------------------------------------------- brokers

    def register(self, broker_id: int, rack: str | None = None,
                 incarnation_id: uuid.UUID | None = None) -> int:
        """BrokerRegistration; the broker epoch."""
        incarnation_id = incarnation_id or uuid.UUID(int=broker_id * 1000 + len(self.log))
        self.incarnations[broker_id] = incarnation_id
        records, epoch = self.cluster.register_broker(
            broker_id, incarnation_id, [("PLAINTEXT", "127.0.0.1", 9091 + broker_id, PLAINTEXT)],
            rack, [], self.next_offset)
        self.apply(records)
        return epoch

    def epoch(self, broker_id: int) -> int:
        return self.image.brokers[broker_id].epoch

    def heartbeat(self, broker_id: int, want_fence: bool = False, want_shut_down: bool = False,
                  offset: int | None = None):
        """BrokerHeartbeat reporting `offset` (default: caught up); the reply."""
        records, reply = self.replication.process_broker_heartbeat(
            broker_id, self.epoch(broker_id),
            self.end_offset if offset is None else offset, want_fence, want_shut_down,
            self.next_offset)
        self.apply(records)
        return reply

    def start(self, broker_id: int, rack: str | None = None) -> int:
        """Register and heartbeat until unfenced, as a starting broker does."""
        epoch = self.register(broker_id, rack)
        reply = self.heartbeat(broker_id)
        assert not reply.is_fenced, reply
        return epoch

    def heartbeat_all(self, *except_ids: int) -> None:
        """Every unfenced broker but `except_ids` sends a (caught-up) heartbeat."""
        for broker_id, broker in sorted(self.image.brokers.items()):
            if broker_id not in except_ids and not broker.fenced:
                self.heartbeat(broker_id)

    # ------------------------------------------------------------------------- topics

    def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                     **kw):
        records, created = self.replication.create_topic(name, num_partitions,
                                                         replication_factor, **kw)
        self.apply(records)
        return created

    def partition(self, topic: str, partition_id: int = 0):
        return self.image.topic(topic).partitions[partition_id]
