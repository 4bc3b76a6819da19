"""ListPartitionReassignments (key 46), v0: the partition reassignments in progress (KIP-455).

`topics` names the partitions to look at, or is null for every partition; each reassignment in
progress is listed with its replicas (the target followed by the replicas leaving), the replicas
being added and those being removed. Partitions of unknown topics and partitions with no
reassignment are left out, as Kafka's controller leaves them out.

In a cluster the controller answers (it knows every reassignment at once; this node's image may
lag). A single broker never has a reassignment in progress (see
alter_partition_reassignments.py), so its answer is always empty.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.LIST_PARTITION_REASSIGNMENTS)


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        return await broker.cluster.list_partition_reassignments(request, ctx.api_version)
    return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None, topics=[])
