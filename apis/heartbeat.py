"""Heartbeat (key 12), v0-4: a member of a classic group says it is alive.

Each Heartbeat (like each JoinGroup and SyncGroup) restarts the member's session timeout; a member
that lets it run out is removed and the group rebalances. The answer tells the member what to do:
NONE (carry on, in CompletingRebalance and Stable), REBALANCE_IN_PROGRESS (the group is in
PreparingRebalance: rejoin), ILLEGAL_GENERATION (an old generation), UNKNOWN_MEMBER_ID (no such
member or group, or the group is Empty), FENCED_INSTANCE_ID (v3+: the static member's instance id
belongs to a newer member id), COORDINATOR_NOT_AVAILABLE (group being deleted), INVALID_GROUP_ID.

Versions: v3 adds `group_instance_id` (KIP-345); v4 is the first flexible version.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.HEARTBEAT)


async def handle(broker, request, ctx):
    error = broker.groups.coordinator_error(request.group_id)
    if error:   # a node of a cluster that does not coordinate the group
        return Response(throttle_time_ms=0, error_code=error)
    error = await broker.groups.classic.heartbeat(
        request.group_id, request.generation_id, request.member_id,
        group_instance_id=request.group_instance_id if ctx.api_version >= 3 else None)
    return Response(throttle_time_ms=0, error_code=error)
