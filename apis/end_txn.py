"""EndTxn (key 26), v0-5: commit or abort the producer's transaction.

The coordinator moves the transaction to PrepareCommit or PrepareAbort, writes the COMMIT or ABORT
marker to every partition in it (and applies or drops the offsets it committed to groups), then
moves to CompleteCommit or CompleteAbort; here that is all done before the answer. A retried
EndTxn of a transaction already completed the same way succeeds; the opposite outcome, or ending
a transaction that is not open, is INVALID_TXN_STATE. Unknown id or another producer id:
INVALID_PRODUCER_ID_MAPPING; another epoch: PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2).

Version 5 is transactions v2 (KIP-890 part 2): the coordinator bumps the producer's epoch as the
transaction ends (a new producer id at epoch 0 once the epochs run out), writes the markers with
that epoch and answers with the producer id and epoch to use from now on; a lost answer's retry,
which names the epoch before the bump, gets them again. It may also abort when no transaction is
open. The rules are in txn/coordinator.py.
"""

from trioka.apis.add_partitions_to_txn import fenced_code
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.END_TXN)


async def handle(broker, request, ctx):
    try:
        pid, epoch = broker.transactions.end_transaction(
            request.transactional_id, request.producer_id, request.producer_epoch,
            request.committed, broker.clock.wall_ms(),
            transaction_version=2 if ctx.api_version >= 5 else 0)
    except KafkaError as e:
        return Response(throttle_time_ms=0, error_code=fenced_code(ctx.api_version, e.code, 2),
                        producer_id=-1, producer_epoch=-1)
    error = await broker.transactions.replicated(request.transactional_id)   # acks=-1
    if error:
        return Response(throttle_time_ms=0, error_code=error, producer_id=-1, producer_epoch=-1)
    return Response(throttle_time_ms=0, error_code=0, producer_id=pid, producer_epoch=epoch)
