"""SyncGroup (key 14), v0-5: the leader hands in the assignment, every member gets its own.

In CompletingRebalance the followers' requests wait for the leader's; the leader's carries each
member's assignment (opaque bytes from the client's assignor; a member it leaves out gets empty
bytes). The group's metadata with all assignments is written to `__consumer_offsets`, the group
becomes Stable and every waiting member is answered with its assignment. In Stable a SyncGroup is
answered at once with the member's current assignment.

Errors, in Kafka's order: INVALID_GROUP_ID; UNKNOWN_MEMBER_ID (no such group or member, or the
group is Empty); COORDINATOR_NOT_AVAILABLE (group being deleted); FENCED_INSTANCE_ID (the static
member's instance id belongs to a newer member id); ILLEGAL_GENERATION; INCONSISTENT_GROUP_PROTOCOL
(v5+: protocol type or name given and not the group's); REBALANCE_IN_PROGRESS (the group went back
to PreparingRebalance: rejoin).

Versions: v3+ `group_instance_id` (KIP-345); v4 first flexible; v5 protocol type and name in the
request and the answer (KIP-559).
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.error_response import error_response
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.SYNC_GROUP)


async def handle(broker, request, ctx):
    version = ctx.api_version
    error = broker.groups.coordinator_error(request.group_id)
    if error:   # a node of a cluster that does not coordinate the group
        return error_response(ApiKey.SYNC_GROUP, version, request, error)
    result = await broker.groups.classic.sync_group(
        request.group_id, request.generation_id, request.member_id,
        group_instance_id=request.group_instance_id if version >= 3 else None,
        protocol_type=request.protocol_type if version >= 5 else None,
        protocol_name=request.protocol_name if version >= 5 else None,
        assignments={a.member_id: a.assignment for a in request.assignments})
    if result.error == 0:
        # The group's new generation is answered once the ISR has its record (acks=-1).
        error = await broker.groups.replicated(request.group_id)
        if error:
            return error_response(ApiKey.SYNC_GROUP, version, request, error)
    return Response(throttle_time_ms=0, error_code=result.error,
                    protocol_type=result.protocol_type, protocol_name=result.protocol_name,
                    assignment=result.assignment)
