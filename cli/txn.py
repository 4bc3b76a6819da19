"""`trioka txn`: transactions the coordinators know, as kafka-transactions.sh shows them.

    trioka txn list
    trioka txn describe TRANSACTIONAL_ID

`list` asks every broker (each coordinates its own share of transactional ids) with
ListTransactions and prints TransactionalId, Coordinator, ProducerId, TransactionState.
`describe` (`--transactional-id ID` works too) finds the id's coordinator and prints
DescribeTransactions' answer: CoordinatorId, TransactionalId, ProducerId, ProducerEpoch,
TransactionState, TransactionTimeoutMs, CurrentTransactionStartTimeMs and TransactionDurationMs
("None" when no transaction is open), TopicPartitions (topic-partition, comma-separated).
"""

import time

from trioka.cli import connection_args, name_arg, open_client, print_table, resolve_name


def add_parser(sub) -> None:
    p = sub.add_parser("txn", help="list and describe transactions",
                       description="Transactions, as kafka-transactions.sh shows them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="every transactional id of every coordinator")
    ls.set_defaults(run=list_transactions)
    d = actions.add_parser("describe", help="the state of one transactional id")
    name_arg(d, "the transactional id", "--transactional-id", metavar="TRANSACTIONAL_ID")
    d.set_defaults(run=describe)
    for q in (ls, d):
        connection_args(q)


def list_transactions(args) -> int:
    with open_client(args) as client:
        found = client.list_transactions()
    rows = [[s.transactional_id, node, s.producer_id, s.transaction_state]
            for node, s in sorted(found, key=lambda x: x[1].transactional_id)]
    print_table(["TransactionalId", "Coordinator", "ProducerId", "TransactionState"], rows)
    return 0


def describe(args) -> int:
    transactional_id = resolve_name(args)
    with open_client(args) as client:
        node, s = client.describe_transaction(transactional_id)
    start = s.transaction_start_time_ms
    if start < 0:
        start_text = duration = "None"
    else:
        start_text = start
        duration = max(0, int(time.time() * 1000) - start)
    partitions = ",".join(f"{t.topic}-{p}" for t in s.topics for p in t.partitions)
    print_table(["CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch",
                 "TransactionState", "TransactionTimeoutMs", "CurrentTransactionStartTimeMs",
                 "TransactionDurationMs", "TopicPartitions"],
                [[node, s.transactional_id, s.producer_id, s.producer_epoch,
                  s.transaction_state, s.transaction_timeout_ms, start_text, duration,
                  partitions]])
    return 0
