"""ElectLeaders (key 43), v0-2: move partition leadership to the preferred (or any) replica.

On a single broker every partition's leader is already its preferred replica and its only
replica, so each named partition is answered ELECTION_NOT_NEEDED, as Kafka answers a partition
whose leader is already the one the election would pick; unknown partitions are
UNKNOWN_TOPIC_OR_PARTITION. Asking for every partition (null) elects nothing and, as in Kafka,
lists only partitions where an election happened: none. Election types (v1+): 0 preferred,
1 unclean; anything else is INVALID_REQUEST.

In a cluster the request goes to the controller (controller/replication_control.py decides):
PREFERRED makes each partition's first replica its leader when it is in the ISR and alive
(ELECTION_NOT_NEEDED when it already leads, PREFERRED_LEADER_NOT_AVAILABLE when it cannot);
UNCLEAN gives a leaderless partition a leader, from outside the ISR if no ISR member is alive
(ELECTION_NOT_NEEDED when it has a leader, ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica is
alive): the records the new leader lacks are lost, as in Kafka. The answer comes once this node's
image shows the leaders elected.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

PREFERRED, UNCLEAN = 0, 1

Response = response_class(ApiKey.ELECT_LEADERS)
Result = Response.ReplicaElectionResult
PartitionResult = Result.PartitionResult


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        return await broker.cluster.elect_leaders(
            request, preferred=request.election_type == PREFERRED, version=ctx.api_version)
    if request.election_type not in (PREFERRED, UNCLEAN):
        return Response(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST,
                        replica_election_results=[])
    results = []
    for t in request.topic_partitions or []:
        topic = broker.topic(t.topic)
        parts = []
        for p in t.partitions:
            if topic is None or not 0 <= p < topic.num_partitions:
                parts.append(PartitionResult(partition_id=p,
                                             error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                             error_message="The partition does not exist."))
            else:
                parts.append(PartitionResult(partition_id=p,
                                             error_code=ErrorCode.ELECTION_NOT_NEEDED,
                                             error_message="Leader election not needed for "
                                                           f"topic partition {t.topic}-{p}"))
        results.append(Result(topic=t.topic, partition_result=parts))
    return Response(throttle_time_ms=0, error_code=0, replica_election_results=results)
