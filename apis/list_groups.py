"""ListGroups (key 16), v0-5: every group of this coordinator.

Each group with its protocol type ("consumer" for consumers; "" for a group that only has
committed offsets), its state (v4+) and its type (v5+): "classic" for JoinGroup groups, "consumer"
for KIP-848 groups (ConsumerGroupHeartbeat), whose protocol type is "consumer" and whose states are
Empty, Assigning, Reconciling and Stable. v4+ may filter by state names and v5+ by group types
(KIP-518, KIP-848), compared without regard to case; an empty filter lets every group through. v3
is the first flexible version.

A node of a cluster lists the groups of the `__consumer_offsets` partitions it leads; while one
of them is loading the answer has COORDINATOR_LOAD_IN_PROGRESS with the groups loaded so far, as
Kafka's.
"""

from trioka.coordinator import classic, consumer_group
from trioka.security.acls import CLUSTER, CLUSTER_NAME, DESCRIBE, GROUP
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.LIST_GROUPS)
Listed = Response.ListedGroup


def _group_type(group) -> str:
    if isinstance(group, consumer_group.ConsumerGroup):
        return consumer_group.GROUP_TYPE
    return classic.GROUP_TYPE


def _protocol_type(group) -> str:
    if isinstance(group, consumer_group.ConsumerGroup):
        return consumer_group.PROTOCOL_TYPE
    return group.protocol_type or ""


async def handle(broker, request, ctx):
    version = ctx.api_version
    groups = broker.groups.list_groups(request.states_filter if version >= 4 else None,
                                       request.types_filter if version >= 5 else None)
    error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if broker.groups.loading() else 0
    authorizer = broker.authorizer
    # With an authorizer (KafkaApis): DESCRIBE on the cluster lists every group, else only
    # the groups the client may DESCRIBE.
    if authorizer is not None and not authorizer.allowed(ctx, DESCRIBE, CLUSTER, CLUSTER_NAME):
        groups = [g for g in groups if authorizer.allowed(ctx, DESCRIBE, GROUP, g.group_id)]
    return Response(throttle_time_ms=0, error_code=error, groups=[
        Listed(group_id=g.group_id, protocol_type=_protocol_type(g),
               group_state=g.state.value, group_type=_group_type(g))
        for g in sorted(groups, key=lambda g: g.group_id)])
