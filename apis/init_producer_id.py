"""InitProducerId (key 22), v0-5: a producer id and epoch for an idempotent producer.

Without a transactional id (an idempotent producer, the default of Java clients since 3.0 and of
`enable.idempotence=true` elsewhere) the broker hands out a fresh producer id with epoch 0, as Kafka
does; an id and epoch passed in (v3+, KIP-360) are ignored then, since a new id is always safe.

Transactional ids belong to the transaction coordinator, which is not built yet. Answering
COORDINATOR_NOT_AVAILABLE would make clients retry until they time out, so such requests get
TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients report at once as fatal.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

VERSIONS = (0, 5)

Response = response_class(ApiKey.INIT_PRODUCER_ID)


async def handle(broker, request, ctx):
    if request.transactional_id is not None:
        return Response(throttle_time_ms=0,
                        error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        producer_id=-1, producer_epoch=-1)
    return Response(throttle_time_ms=0, error_code=0, producer_id=broker.producer_ids.generate(),
                    producer_epoch=0)
