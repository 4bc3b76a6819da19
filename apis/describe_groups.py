"""DescribeGroups (key 15), v0-6: the state, protocol and members of groups.

State names as Kafka prints them: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
Members come with member id, group instance id (v4+), client id, client host ("/" + IP), and, when
the group is Stable, the chosen protocol's name and each member's metadata and assignment bytes as
the clients sent them (in the other states these are empty, as in Kafka). Up to v5 an unknown group
is described as Dead with no members and no error, and so is a KIP-848 consumer group, which is
not a classic group (ConsumerGroupDescribe describes it); v6 (KIP-1043, Kafka 4.0) answers both
GROUP_ID_NOT_FOUND with Kafka's message ("Group g not found." / "Group g is not a classic
group."). An empty group id is INVALID_GROUP_ID.

v3+ may ask for authorized operations: Kafka's bitfield of those the principal is allowed on the
group (security/authorizer.py), every operation a group supports without an authorizer. v5 is
the first flexible version.
"""

from trioka.coordinator.group_state import GroupState
from trioka.apis.metadata import authorized_operations
from trioka.security.acls import GROUP
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_GROUPS)
Described = Response.DescribedGroup
DescribedMember = Described.DescribedGroupMember


NOT_FOUND_FROM = 6     # KIP-1043: GROUP_ID_NOT_FOUND instead of a Dead group


def describe(broker, group_id: str, version: int) -> object:
    if not group_id:
        return Described(error_code=ErrorCode.INVALID_GROUP_ID, group_id=group_id,
                         group_state=GroupState.DEAD.value, members=[])
    error = broker.groups.coordinator_error(group_id)
    if error:   # a node of a cluster that does not coordinate the group
        return Described(error_code=error, group_id=group_id, group_state="",
                         protocol_type="", protocol_data="", members=[])
    group = broker.groups.describe_group(group_id)
    if group is None and version >= NOT_FOUND_FROM:
        message = f"Group {group_id} is not a classic group." \
            if broker.groups.is_consumer_group(group_id) else f"Group {group_id} not found."
        return Described(error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=message,
                         group_id=group_id, group_state=GroupState.DEAD.value,
                         protocol_type="", protocol_data="", members=[])
    if group is None:
        return Described(error_code=0, group_id=group_id, group_state=GroupState.DEAD.value,
                         protocol_type="", protocol_data="", members=[])
    stable = group.is_in(GroupState.STABLE)
    protocol = group.protocol_name if stable else ""
    members = [DescribedMember(member_id=m.member_id, group_instance_id=m.group_instance_id,
                               client_id=m.client_id, client_host=m.client_host,
                               member_metadata=m.metadata(protocol) if stable else b"",
                               member_assignment=m.assignment if stable else b"")
               for m in group.members.values()]
    return Described(error_code=0, group_id=group_id, group_state=group.state.value,
                     protocol_type=group.protocol_type or "", protocol_data=protocol or "",
                     members=members)


async def handle(broker, request, ctx):
    groups = [describe(broker, g, ctx.api_version) for g in request.groups]
    # v3+: the operations the client may do on each group, as Kafka's bitfield.
    if ctx.api_version >= 3 and request.include_authorized_operations:
        for g in groups:
            if g.error_code == 0:
                g.authorized_operations = authorized_operations(broker, ctx, GROUP, g.group_id)
    return Response(throttle_time_ms=0, groups=groups)
