"""AddPartitionsToTxn (key 24), v0-5: partitions join the producer's ongoing transaction.

v0-3 carry one transaction (what clients send); v4+ batch several (`transactions`), with
`verify_only` for a partition leader asking whether partitions are already in a transaction
(answered TRANSACTION_ABORTABLE for those that are not, INVALID_TXN_STATE before v5); a v4+
request that adds comes from a leader adding partitions for a transactions v2 producer (KIP-890
part 2), and the transaction is then a v2 one. Checks, for the whole transaction: an empty
transactional id is INVALID_REQUEST; an unknown one or another producer id
INVALID_PRODUCER_ID_MAPPING; another epoch PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2,
KIP-588); a transaction being completed CONCURRENT_TRANSACTIONS. An unknown topic partition is
UNKNOWN_TOPIC_OR_PARTITION and then nothing is added: the other partitions get
OPERATION_NOT_ATTEMPTED. Every error is reported on every partition of the transaction.

With an authorizer (KafkaApis) v0-3, sent by producers, need WRITE on the transactional id
(security/authorizer.py) and on each topic: a topic without it (an internal topic always) is
TOPIC_AUTHORIZATION_FAILED and nothing is added, the other partitions OPERATION_NOT_ATTEMPTED.
v4+ come from brokers, which need CLUSTER_ACTION.
"""

from trioka.log.topics import INTERNAL_TOPICS
from trioka.security.acls import WRITE
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.ADD_PARTITIONS_TO_TXN)
TxnResult = Response.AddPartitionsToTxnResult
TopicResult = TxnResult.AddPartitionsToTxnTopicResult
PartitionResult = TopicResult.AddPartitionsToTxnPartitionResult


def fenced_code(version: int, code: int, fenced_from: int) -> int:
    """KIP-588: versions before `fenced_from` know INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED."""
    if code == ErrorCode.PRODUCER_FENCED and version < fenced_from:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def add(broker, transactional_id, producer_id, producer_epoch, topics, verify_only,
        version, writable=None) -> list:
    """TopicResults for one transaction; `writable` (topic -> allowed): the authorizer's WRITE
    check of each topic, None when there is none to make."""
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    codes: dict[tuple[str, int], int] = {}
    denied = set() if writable is None else {
        name for name, _ in wanted if name in INTERNAL_TOPICS or not writable(name)}
    unknown = [tp for tp in wanted if tp[0] not in denied and (
        broker.topic(tp[0]) is None or not 0 <= tp[1] < broker.topic(tp[0]).num_partitions)]
    txn = broker.transactions
    try:
        if unknown or denied:
            codes = {tp: (ErrorCode.TOPIC_AUTHORIZATION_FAILED if tp[0] in denied
                          else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown
                          else ErrorCode.OPERATION_NOT_ATTEMPTED) for tp in wanted}
        elif verify_only:
            added = txn.verify_partitions_in_transaction(transactional_id, producer_id,
                                                         producer_epoch, wanted)
            missing = ErrorCode.TRANSACTION_ABORTABLE if version >= 5 else \
                ErrorCode.INVALID_TXN_STATE
            codes = {tp: 0 if tp in added else missing for tp in wanted}
        else:
            txn.add_partitions(transactional_id, producer_id, producer_epoch, wanted,
                               broker.clock.wall_ms(),
                               transaction_version=2 if version >= 4 else 0)
    except KafkaError as e:
        code = fenced_code(version, e.code, 2)
        codes = {tp: code for tp in wanted}
    by_topic: dict[str, list] = {}
    for name, p in wanted:
        by_topic.setdefault(name, []).append(
            PartitionResult(partition_index=p, partition_error_code=codes.get((name, p), 0)))
    return [TopicResult(name=name, results_by_partition=parts) for name, parts in by_topic.items()]


async def _replicated(broker, transactional_id, results: list) -> list:
    """The partitions added are answered once the ISR has the id's new state (acks=-1, on a
    node of a cluster): its error on every partition otherwise."""
    if any(p.partition_error_code for r in results for p in r.results_by_partition):
        return results
    error = await broker.transactions.replicated(transactional_id)
    if error:
        for r in results:
            for p in r.results_by_partition:
                p.partition_error_code = error
    return results


async def handle(broker, request, ctx):
    version = ctx.api_version
    if version <= 3:
        tid = request.v3_and_below_transactional_id
        authorizer = broker.authorizer
        results = add(broker, tid, request.v3_and_below_producer_id,
                      request.v3_and_below_producer_epoch, request.v3_and_below_topics, False,
                      version, authorizer.topic_check(ctx, WRITE) if authorizer else None)
        results = await _replicated(broker, tid, results)
        return Response(throttle_time_ms=0, results_by_topic_v3_and_below=results)
    out = []
    for t in request.transactions:
        results = add(broker, t.transactional_id, t.producer_id, t.producer_epoch, t.topics,
                      t.verify_only, version)
        if not t.verify_only:
            results = await _replicated(broker, t.transactional_id, results)
        out.append(TxnResult(transactional_id=t.transactional_id, topic_results=results))
    return Response(throttle_time_ms=0, error_code=0, results_by_transaction=out)
