"""AlterClientQuotas (key 49), v0-1 (KIP-546): set or remove quota keys of user and client-id
entities (security/quotas.py). Each entry is checked as Kafka's ClientQuotaControlManager
checks it, an invalid one answered INVALID_REQUEST with Kafka's message (an empty entity, an
unknown entity type, an unknown quota key, a value that is not a positive long); an entry's
operations are applied together or not at all. With `validate_only` nothing changes.

A single broker keeps the quotas in its log directory, written before the answer, so that they
outlive a restart; the new limits apply to the next request measured.
"""

from trioka.security.quotas import check_op, entity_of
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ALTER_CLIENT_QUOTAS)
Entry = Response.EntryData


async def handle(broker, request, ctx):
    quotas = broker.client_quotas
    entries = []
    changed = False
    for e in request.entries:
        components = [(c.entity_type, c.entity_name) for c in e.entity]
        entity, message = entity_of(components)
        if message is None:
            keys = [op.key for op in e.ops]
            if len(set(keys)) != len(keys):
                message = "Duplicate quota key in the request"
        if message is None:
            for op in e.ops:
                message = check_op(op.key, op.value, op.remove)
                if message is not None:
                    break
        if message is None and not request.validate_only:
            quotas.alter(entity, [(op.key, op.value, op.remove) for op in e.ops])
            changed = True
        entries.append(Entry(
            error_code=ErrorCode.INVALID_REQUEST if message else 0, error_message=message,
            entity=[Entry.EntityData(entity_type=t, entity_name=n) for t, n in components]))
    if changed:
        await quotas.persist()
    return Response(throttle_time_ms=0, entries=entries)
