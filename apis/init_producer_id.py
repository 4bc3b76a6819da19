"""InitProducerId (key 22), v0-5: a producer id and epoch for idempotent and transactional producers.

Without a transactional id (an idempotent producer, the default of Java clients since 3.0 and of
`enable.idempotence=true` elsewhere) the broker hands out a fresh producer id with epoch 0, as Kafka
does; an id and epoch passed in (v3+, KIP-360) are ignored then, since a new id is always safe.

With a transactional id the transaction coordinator answers (txn/coordinator.py): a new id gets a
producer id and epoch 0; a known one gets the next epoch, which fences older producers with that
id, and an open transaction of theirs is aborted first (CONCURRENT_TRANSACTIONS: the client retries).
Errors: INVALID_REQUEST for an empty id, INVALID_TRANSACTION_TIMEOUT outside (0,
`transaction.max.timeout.ms`], PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v4, KIP-588) for a
producer id and epoch (v3+) that are not the current ones.
"""

from trioka.apis.add_partitions_to_txn import fenced_code
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.INIT_PRODUCER_ID)


async def handle(broker, request, ctx):
    if request.transactional_id is None:
        return Response(throttle_time_ms=0, error_code=0,
                        producer_id=broker.producer_ids.generate(), producer_epoch=0)
    try:
        pid, epoch = broker.transactions.init_producer_id(
            request.transactional_id, request.transaction_timeout_ms, request.producer_id,
            request.producer_epoch, broker.clock.wall_ms())
    except KafkaError as e:
        return Response(throttle_time_ms=0, error_code=fenced_code(ctx.api_version, e.code, 4),
                        producer_id=-1, producer_epoch=-1)
    error = await broker.transactions.replicated(request.transactional_id)   # acks=-1
    if error:
        return Response(throttle_time_ms=0, error_code=error, producer_id=-1, producer_epoch=-1)
    return Response(throttle_time_ms=0, error_code=0, producer_id=pid, producer_epoch=epoch)
