"""LeaveGroup (key 13), v0-5: members leave a classic group at once, without waiting for their
session to run out. The group rebalances without them (or becomes Empty).

v0-2 name one member by `member_id`; its error is the response's error code. v3+ (KIP-345) name a
batch of members, each by member id or by `group_instance_id` (static members; an admin client may
remove one by instance id alone), and each gets its own error: UNKNOWN_MEMBER_ID when there is no
such member or instance, FENCED_INSTANCE_ID when the instance id belongs to another member id.
The top-level error is for the group: INVALID_GROUP_ID, UNKNOWN_MEMBER_ID (no such group),
COORDINATOR_NOT_AVAILABLE (group being deleted). v4 is the first flexible version; v5 adds a
per-member `reason` (KIP-800), which is not kept.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.error_response import error_response
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.LEAVE_GROUP)
MemberResponse = Response.MemberResponse


async def handle(broker, request, ctx):
    error = broker.groups.coordinator_error(request.group_id)
    if error:   # a node of a cluster that does not coordinate the group
        return error_response(ApiKey.LEAVE_GROUP, ctx.api_version, request, error)
    if ctx.api_version < 3:
        error, errors = broker.groups.classic.leave_group(request.group_id, [(request.member_id, None)])
        error = error or await broker.groups.replicated(request.group_id)
        return Response(throttle_time_ms=0, error_code=error or (errors[0] if errors else 0))
    error, errors = broker.groups.classic.leave_group(
        request.group_id, [(m.member_id, m.group_instance_id) for m in request.members])
    error = error or await broker.groups.replicated(request.group_id)
    members = [MemberResponse(member_id=m.member_id, group_instance_id=m.group_instance_id,
                              error_code=code)
               for m, code in zip(request.members, errors)]
    return Response(throttle_time_ms=0, error_code=error, members=members)
