"""AlterClientQuotas (key 49), v0-1 (KIP-546): set or remove quota keys of user and client-id
entities (security/quotas.py). Each entry is checked as Kafka's ClientQuotaControlManager
checks it, an invalid one answered INVALID_REQUEST with Kafka's message (an empty entity, an
unknown entity type, an unknown quota key, a value that is not a positive long); an entry's
operations are applied together or not at all. With `validate_only` nothing changes.

A single broker keeps the quotas in its log directory, written before the answer, so that they
outlive a restart. A node of a KRaft cluster forwards the request to the controller, which
writes ClientQuotaRecords to the metadata log; the answer is given once this node's metadata
image has the change. The new limits apply to the next request measured.
"""

from trioka.security.quotas import check_entry
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ALTER_CLIENT_QUOTAS)
Entry = Response.EntryData


def components_and_ops(e) -> tuple[list, list]:
    return ([(c.entity_type, c.entity_name) for c in e.entity],
            [(op.key, op.value, op.remove) for op in e.ops])


def answer(results) -> object:
    """The response of [(components, INVALID_REQUEST message or None)]."""
    return Response(throttle_time_ms=0, entries=[
        Entry(error_code=ErrorCode.INVALID_REQUEST if message else 0, error_message=message,
              entity=[Entry.EntityData(entity_type=t, entity_name=n) for t, n in components])
        for components, message in results])


async def handle(broker, request, ctx):
    if broker.cluster is not None:
        try:
            response = await broker.cluster.forward(ApiKey.ALTER_CLIENT_QUOTAS, request,
                                                    ctx.api_version)
        except KafkaError as e:    # the controller could not be reached
            return Response(throttle_time_ms=0, entries=[
                Entry(error_code=e.code, error_message=e.message,
                      entity=[Entry.EntityData(entity_type=c.entity_type,
                                               entity_name=c.entity_name) for c in x.entity])
                for x in request.entries])
        if not request.validate_only:
            await broker.cluster.wait_for_metadata(lambda: _in_image(broker, request, response))
        return response
    quotas = broker.client_quotas
    results = []
    changed = False
    for e in request.entries:
        components, ops = components_and_ops(e)
        entity, message = check_entry(components, ops)
        if message is None and not request.validate_only:
            quotas.alter(entity, ops)
            changed = True
        results.append((components, message))
    if changed:
        await quotas.persist()
    return answer(results)


def _in_image(broker, request, response) -> bool:
    """Whether this node's quotas have the changes the controller accepted."""
    quotas = broker.client_quotas
    for e, result in zip(request.entries, response.entries):
        if result.error_code:
            continue
        components, ops = components_and_ops(e)
        entity, _ = check_entry(components, ops)
        values = dict(quotas.entries()).get(entity, {})
        for key, value, remove in ops:
            if (key in values) == remove or (not remove and values[key] != value):
                return False
    return True
