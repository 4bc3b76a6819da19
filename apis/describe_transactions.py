"""DescribeTransactions (key 65), v0: the coordinator's view of transactional ids.

For each id: its state as Kafka names it (Empty, Ongoing, PrepareCommit, ...), timeout, start time
of the open transaction (-1 when none), producer id and epoch, and the partitions in the
transaction. An unknown id is TRANSACTIONAL_ID_NOT_FOUND.

With an authorizer (KafkaApis) each id needs DESCRIBE on the transactional id: a denied one is
answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED on its own, the others served; and an answer
names only the topics the principal may DESCRIBE.
"""

from trioka.security.acls import DESCRIBE, TRANSACTIONAL_ID
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_TRANSACTIONS)
State = Response.TransactionState
TopicData = State.TopicData


def describe(broker, transactional_id: str) -> object:
    error = broker.transactions.coordinator_error(transactional_id)
    if error:   # a node of a cluster that does not coordinate the id
        return State(error_code=error, transactional_id=transactional_id, transaction_state="",
                     transaction_timeout_ms=0, transaction_start_time_ms=-1, producer_id=-1,
                     producer_epoch=-1)
    meta = broker.transactions.describe(transactional_id)
    if meta is None:
        return State(error_code=ErrorCode.TRANSACTIONAL_ID_NOT_FOUND,
                     transactional_id=transactional_id, transaction_state="",
                     transaction_timeout_ms=0, transaction_start_time_ms=-1, producer_id=-1,
                     producer_epoch=-1)
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(meta.partitions):
        by_topic.setdefault(topic, []).append(p)
    return State(error_code=0, transactional_id=transactional_id,
                 transaction_state=meta.state.display, transaction_timeout_ms=meta.timeout_ms,
                 transaction_start_time_ms=meta.start_ms, producer_id=meta.producer_id,
                 producer_epoch=meta.producer_epoch,
                 topics=[TopicData(topic=t, partitions=ps) for t, ps in by_topic.items()])


def _denied(transactional_id: str) -> object:
    # Kafka sets the id and the error only: every other field keeps its zero value.
    return State(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                 transactional_id=transactional_id)


async def handle(broker, request, ctx):
    authorizer = broker.authorizer
    if authorizer is None:
        return Response(throttle_time_ms=0, transaction_states=[
            describe(broker, t) for t in request.transactional_ids])
    describable = authorizer.topic_check(ctx, DESCRIBE)
    states = []
    for t in request.transactional_ids:
        if not authorizer.allowed(ctx, DESCRIBE, TRANSACTIONAL_ID, t):
            states.append(_denied(t))
            continue
        state = describe(broker, t)
        state.topics = [topic for topic in state.topics if describable(topic.topic)]
        states.append(state)
    return Response(throttle_time_ms=0, transaction_states=states)
