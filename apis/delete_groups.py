"""DeleteGroups (key 42), v0-2: delete groups and their committed offsets.

Only a group without members can go: NON_EMPTY_GROUP otherwise, GROUP_ID_NOT_FOUND for one that
does not exist, INVALID_GROUP_ID for an empty group id. Deleting writes tombstones to
`__consumer_offsets` for the group's metadata and every offset it committed, so the group stays
gone after a restart. KIP-848 consumer groups alike: only without members, and every record they
wrote gets a tombstone. v1 is v0 (throttling aside); v2 is the first flexible version. KIP-896
marked v0 for removal, but Kafka 4.x brokers still advertise it.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DELETE_GROUPS)
Result = Response.DeletableGroupResult


async def handle(broker, request, ctx):
    results = broker.groups.delete_groups(list(request.groups_names))
    for group_id, code in results.items():
        if code == 0:   # answered once the ISR has the tombstones (a node of a cluster)
            results[group_id] = await broker.groups.replicated(group_id)
    return Response(throttle_time_ms=0, results=[
        Result(group_id=g, error_code=results[g]) for g in request.groups_names])
