"""OffsetForLeaderEpoch (key 23), v2-4: where a leader epoch ended, for consumers' position checks.

Consumers (KIP-320) ask, after a metadata change, for the end offset of the leader epoch they last
fetched in, to detect log truncation. The answer comes from the partition's leader-epoch cache
(`leader-epoch-checkpoint`, (epoch, start offset) pairs; a single broker has epoch 0 from offset 0):

| requested epoch                | answer (leader epoch, end offset)                      |
|--------------------------------|--------------------------------------------------------|
| -1 (undefined)                 | (-1, -1)                                               |
| the latest epoch               | (that epoch, log end offset)                           |
| larger than every cached epoch | (-1, -1)                                               |
| smaller than every epoch       | (requested, start offset of the first cached epoch)    |
| otherwise                      | (largest epoch <= requested, start of the next epoch)  |

`current_leader_epoch` is checked as in Fetch (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH).
Versions 0-1 were removed in Kafka 4.0.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.OFFSET_FOR_LEADER_EPOCH)
TopicResult = Response.OffsetForLeaderTopicResult
EpochEndOffset = TopicResult.EpochEndOffset


def end_offset(broker, topic: str, p) -> object:
    try:
        log = broker.partition(topic, p.partition, reading=True)
        broker.check_leader_epoch(topic, p.partition, p.current_leader_epoch)
    except KafkaError as e:
        return EpochEndOffset(error_code=e.code, partition=p.partition, leader_epoch=-1,
                              end_offset=-1)
    epoch, end = log.end_offset_for_epoch(p.leader_epoch)
    return EpochEndOffset(error_code=0, partition=p.partition, leader_epoch=epoch, end_offset=end)


async def handle(broker, request, ctx):
    if request.replica_id >= 0 and broker.node_controls.isolated:
        # A follower's truncation request to an isolated node: cut, as a network partition.
        ctx.connection.closing = True
        return None
    topics = [TopicResult(topic=t.topic, partitions=[end_offset(broker, t.topic, p)
                                                     for p in t.partitions])
              for t in request.topics]
    return Response(throttle_time_ms=0, topics=topics)
