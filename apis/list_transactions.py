"""ListTransactions (key 66), v0-2: transactional ids known to the coordinator, filtered.

Filters combine: by state names (Kafka's: Empty, Ongoing, PrepareCommit, PrepareAbort,
CompleteCommit, CompleteAbort, PrepareEpochFence, Dead; names it does not know come back in
`unknown_state_filters`), by producer id, (v1, KIP-994) by duration: only transactions open for
longer than `duration_filter` ms, and (v2, KIP-1152, Kafka 4.1) by `transactional_id_pattern`, a
regular expression the whole id must match (null or empty: no filter; one that does not compile
is INVALID_REGULAR_EXPRESSION, with nothing listed). It is compiled and matched by RE2, as KIP-848
subscription regexes are (coordinator/consumer_group.py's compile_client_regex): the common
syntax (classes, groups, alternation, quantifiers) means what it means to Kafka, and matching
takes time linear in each id, whatever the pattern. A Dead id is never listed, as in Kafka, so "Dead" is a known filter that lists nothing.
With an authorizer (KafkaApis) only the ids the principal may DESCRIBE are listed.
"""

from trioka.coordinator.consumer_group import compile_client_regex
from trioka.security.acls import DESCRIBE, TRANSACTIONAL_ID
from trioka.txn.states import TransactionState
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.LIST_TRANSACTIONS)
State = Response.TransactionState

_NAMES = {s.display: s for s in TransactionState}


async def handle(broker, request, ctx):
    unknown = [name for name in request.state_filters if name not in _NAMES]
    pattern = None
    if request.transactional_id_pattern:     # v2+ only: null in older versions
        try:
            pattern = compile_client_regex(request.transactional_id_pattern)
        except ValueError:
            return Response(throttle_time_ms=0, error_code=ErrorCode.INVALID_REGULAR_EXPRESSION,
                            unknown_state_filters=unknown, transaction_states=[])
    states = {_NAMES[name] for name in request.state_filters if name in _NAMES}
    pids = set(request.producer_id_filters)
    now_ms = broker.clock.wall_ms()
    out = []
    authorizer = broker.authorizer
    for meta in broker.transactions.list():
        if meta.state == TransactionState.DEAD:
            continue
        if authorizer is not None and not authorizer.allowed(ctx, DESCRIBE, TRANSACTIONAL_ID,
                                                             meta.transactional_id):
            continue
        if request.state_filters and meta.state not in states:
            continue
        if pids and meta.producer_id not in pids:
            continue
        if request.duration_filter >= 0 and (meta.start_ms < 0 or
                                             now_ms - meta.start_ms <= request.duration_filter):
            continue
        if pattern is not None and not pattern.fullmatch(meta.transactional_id):
            continue
        out.append(State(transactional_id=meta.transactional_id, producer_id=meta.producer_id,
                         transaction_state=meta.state.display))
    # A node of a cluster lists the ids of the partitions it coordinates; while one of them
    # loads, Kafka says so with what it has.
    error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if broker.transactions.loading() else 0
    return Response(throttle_time_ms=0, error_code=error, unknown_state_filters=unknown,
                    transaction_states=out)
