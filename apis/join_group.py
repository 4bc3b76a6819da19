"""JoinGroup (key 11), v0-9: join a classic group, or rejoin it for a rebalance.

The group coordinator (coordinator/group_coordinator.py) does the work; this module maps the
request and the answer. The request waits while the group's join phase lasts (until every member
rejoined, or the rebalance timeout). Errors: INVALID_GROUP_ID (empty group id),
INVALID_SESSION_TIMEOUT (outside `group.min.session.timeout.ms`..`group.max.session.timeout.ms`),
INCONSISTENT_GROUP_PROTOCOL (no protocol type or protocols, another protocol type, or no protocol
in common with the group), UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, GROUP_MAX_SIZE_REACHED
(`group.max.size`), COORDINATOR_NOT_AVAILABLE for a group being deleted.

Versions: v0 has no rebalance timeout, so the session timeout is used for both, as Kafka does;
v1 adds it; v2 the throttle time. v4+ (KIP-394) a new dynamic member is first answered MEMBER_ID_REQUIRED with its member
id and must join again with it; v5+ carry `group_instance_id` (KIP-345 static membership); v6 is
the first flexible version; v7+ answer the protocol type and a nullable protocol name; v8 adds a
`reason` (logged nowhere); v9 `skip_assignment` (KIP-814), set for a static leader that rejoined a
Stable group and must not assign again. Only the leader's answer lists the members, each with the
metadata of the chosen protocol; metadata is relayed as the client sent it (any assignor works).
v0-1 were removed in Kafka 4.0 (KIP-896) and advertised again from 4.1 (KAFKA-19444), for the
old clients that still use them.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.error_response import error_response
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.JOIN_GROUP)
ResponseMember = Response.JoinGroupResponseMember


def client_host(ctx) -> str:
    """Kafka shows a member's host as "/" and the client's IP address."""
    return "/" + ctx.connection.peer.rpartition(":")[0]


async def handle(broker, request, ctx):
    version = ctx.api_version
    error = broker.groups.coordinator_error(request.group_id)
    if error:   # a node of a cluster that does not coordinate the group
        return error_response(ApiKey.JOIN_GROUP, version, request, error)
    result = await broker.groups.classic.join_group(
        request.group_id, request.member_id,
        group_instance_id=request.group_instance_id if version >= 5 else None,
        client_id=ctx.client_id, client_host=client_host(ctx),
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=request.rebalance_timeout_ms if version >= 1
        else request.session_timeout_ms,
        protocol_type=request.protocol_type,
        protocols=[(p.name, p.metadata) for p in request.protocols],
        require_known_member_id=version >= 4)
    protocol_name = result.protocol_name
    if protocol_name is None and version < 7:
        protocol_name = ""
    return Response(throttle_time_ms=0, error_code=result.error,
                    generation_id=result.generation_id, protocol_type=result.protocol_type,
                    protocol_name=protocol_name, leader=result.leader,
                    skip_assignment=result.skip_assignment, member_id=result.member_id,
                    members=[ResponseMember(member_id=mid, group_instance_id=iid, metadata=meta)
                             for mid, iid, meta in result.members])
