"""The consumer protocol's embedded formats: what consumers of a classic group put in the opaque
bytes of JoinGroup and SyncGroup.

A classic group's coordinator does not read these bytes: JoinGroup carries each member's
ConsumerProtocolSubscription (the topics it wants) under the protocol type "consumer" and an
assignor's name ("range" here); the leader it elects computes the assignment and hands each member
a ConsumerProtocolAssignment (its partitions) through SyncGroup. Kafka's definitions of both are
records of the wire schema (`schema.record`), so every client in a group reads the others' bytes.
"""

from trioka.wire import schema

CONSUMER_PROTOCOL_TYPE = "consumer"
RANGE_ASSIGNOR = "range"


def encode_subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0: the topics a member wants."""
    cls = schema.record("ConsumerProtocolSubscription").cls
    return schema.encode_record("ConsumerProtocolSubscription",
                                cls(topics=list(topics), user_data=None), 0)


def decode_subscription(data) -> list[str]:
    _, sub = schema.decode_record("ConsumerProtocolSubscription", bytes(data))
    return list(sub.topics)


def encode_assignment(partitions: list[tuple[str, int]]) -> bytes:
    """ConsumerProtocolAssignment v0: the partitions given to a member."""
    cls = schema.record("ConsumerProtocolAssignment").cls
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        by_topic.setdefault(topic, []).append(p)
    return schema.encode_record("ConsumerProtocolAssignment", cls(
        assigned_partitions=[cls.TopicPartition(topic=t, partitions=ps)
                             for t, ps in by_topic.items()], user_data=None), 0)


def decode_assignment(data) -> list[tuple[str, int]]:
    """The (topic, partition) pairs of a ConsumerProtocolAssignment (v0-3: int16 version, then
    [topic, [partition]], then user data); empty bytes (a member between rebalances) is none."""
    if not data:
        return []
    _, assignment = schema.decode_record("ConsumerProtocolAssignment", bytes(data))
    return [(tp.topic, p) for tp in assignment.assigned_partitions for p in tp.partitions]
