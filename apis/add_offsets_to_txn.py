"""AddOffsetsToTxn (key 25), v0-4: a consumer group's offsets join the transaction.

The group's `__consumer_offsets` partition is added to the transaction, so that the offsets the
producer then commits with TxnOffsetCommit become visible exactly when the transaction commits
(the COMMIT marker is also written there). Checks as AddPartitionsToTxn; PRODUCER_FENCED is
INVALID_PRODUCER_EPOCH before v2 (KIP-588).
"""

from trioka.apis.add_partitions_to_txn import fenced_code
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ADD_OFFSETS_TO_TXN)


async def handle(broker, request, ctx):
    try:
        broker.transactions.add_offsets(request.transactional_id, request.producer_id,
                                        request.producer_epoch, request.group_id,
                                        broker.clock.wall_ms())
    except KafkaError as e:
        return Response(throttle_time_ms=0, error_code=fenced_code(ctx.api_version, e.code, 2))
    error = await broker.transactions.replicated(request.transactional_id)   # acks=-1
    return Response(throttle_time_ms=0, error_code=error)
