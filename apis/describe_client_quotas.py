"""DescribeClientQuotas (key 48), v0-1 (KIP-546): the client quotas whose entity matches a
filter. Each filter component names an entity type ("user", "client-id", "ip") and matches an
exact name (match type 0), the default entity (1) or any entity of that type (2); with
`strict`, an entity must have no other component than those filtered. A filter naming a type
twice, or a type Kafka does not know, is INVALID_REQUEST for the whole request. The entities
and their quotas are those of security/quotas.py; a default entity's name is null.
"""

from trioka.security.quotas import components_of, describe
from trioka.wire.api_keys import ApiKey
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_CLIENT_QUOTAS)
Entry = Response.EntryData


async def handle(broker, request, ctx):
    code, message, found = describe(broker.client_quotas, request.components, request.strict)
    if code:
        return Response(throttle_time_ms=0, error_code=code, error_message=message, entries=None)
    return Response(throttle_time_ms=0, error_code=0, error_message=None, entries=[
        Entry(entity=[Entry.EntityData(entity_type=t, entity_name=n)
                      for t, n in components_of(entity)],
              values=[Entry.ValueData(key=k, value=v) for k, v in sorted(values.items())])
        for entity, values in found])
