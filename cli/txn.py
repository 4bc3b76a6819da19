"""`trioka txn`: transactions the coordinators know, as kafka-transactions.sh shows them.

    trioka txn list
    trioka txn describe TRANSACTIONAL_ID
    trioka txn describe-producers --topic T --partition P [--broker-id N]
    trioka txn find-hanging (--topic T [--partition P] | --broker-id N)
                            [--max-transaction-timeout MINUTES]
    trioka txn abort --topic T --partition P (--start-offset O |
                     --producer-id ID --producer-epoch E --coordinator-epoch C)

`list` asks every broker (each coordinates its own share of transactional ids) with
ListTransactions and prints TransactionalId, Coordinator, ProducerId, TransactionState.
`describe` (`--transactional-id ID` works too) finds the id's coordinator and prints
DescribeTransactions' answer: CoordinatorId, TransactionalId, ProducerId, ProducerEpoch,
TransactionState, TransactionTimeoutMs, CurrentTransactionStartTimeMs and TransactionDurationMs
("None" when no transaction is open), TopicPartitions (topic-partition, comma-separated).

`describe-producers` prints a partition's active producers as its leader (or replica
`--broker-id`) keeps them (DescribeProducers): ProducerId, ProducerEpoch, LatestCoordinatorEpoch,
LastSequence, LastTimestamp, CurrentTransactionStartOffset ("None" outside a transaction).

A hanging transaction is one a partition keeps open (its last stable offset stuck, read_committed
consumers waiting) that its coordinator will never end: the coordinator does not know the
producer id, or its transaction does not name the partition. `find-hanging` does what Kafka's
does: the partitions of `--topic` (or `--partition` of it), or every partition with a replica on
`--broker-id`; their producers with an open transaction whose last write is older than
`--max-transaction-timeout` minutes (default 15, the largest transaction timeout in use);
ListTransactions (by producer id) and DescribeTransactions to drop those the coordinator still
owns. It prints Topic, Partition, ProducerId, ProducerEpoch, CoordinatorEpoch, StartOffset,
LastTimestamp, Duration(min).

`abort` ends one with an ABORT marker written by the partition's leader (WriteTxnMarkers, as a
coordinator sends it; Kafka's Admin.abortTransaction). `--start-offset O` finds the producer
whose open transaction starts at O with DescribeProducers; for brokers before Kafka 3.0 the
producer is named with `--producer-id`, `--producer-epoch` and `--coordinator-epoch` (a negative
coordinator epoch is taken as 0, as Kafka does).
"""

import sys
import time

from trioka.cli import (UsageError, connection_args, fail, name_arg, open_client, print_table,
                        resolve_name)

from trioka.wire.errors import ErrorCode, KafkaError

MS_PER_MINUTE = 60_000


def add_parser(sub) -> None:
    p = sub.add_parser("txn", help="list and describe transactions",
                       description="Transactions, as kafka-transactions.sh shows them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="every transactional id of every coordinator")
    ls.set_defaults(run=list_transactions)
    d = actions.add_parser("describe", help="the state of one transactional id")
    name_arg(d, "the transactional id", "--transactional-id", metavar="TRANSACTIONAL_ID")
    d.set_defaults(run=describe)

    dp = actions.add_parser("describe-producers",
                            help="the active producers of a partition")
    dp.add_argument("--topic", required=True, help="topic name")
    dp.add_argument("--partition", type=int, required=True, help="partition number")
    dp.add_argument("--broker-id", type=int,
                    help="ask this replica instead of the partition's leader")
    dp.set_defaults(run=describe_producers)

    fh = actions.add_parser("find-hanging", help="find hanging transactions")
    fh.add_argument("--broker-id", type=int, help="search the partitions with a replica here")
    fh.add_argument("--topic", help="topic name to limit the search to")
    fh.add_argument("--partition", type=int, help="partition number (with --topic)")
    fh.add_argument("--max-transaction-timeout", type=int, default=15, metavar="MINUTES",
                    help="the largest transaction timeout in use, in minutes (default 15)")
    fh.set_defaults(run=find_hanging)

    ab = actions.add_parser("abort", help="abort a hanging transaction")
    ab.add_argument("--topic", required=True, help="topic name")
    ab.add_argument("--partition", type=int, required=True, help="partition number")
    ab.add_argument("--start-offset", type=int, help="start offset of the transaction to abort")
    ab.add_argument("--producer-id", type=int, help="producer id (brokers before 3.0)")
    ab.add_argument("--producer-epoch", type=int, help="producer epoch (brokers before 3.0)")
    ab.add_argument("--coordinator-epoch", type=int,
                    help="coordinator epoch (brokers before 3.0)")
    ab.set_defaults(run=abort)
    for q in (ls, d, dp, fh, ab):
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


def _start_offset(state) -> str:
    return "None" if state.current_txn_start_offset < 0 else str(state.current_txn_start_offset)


def describe_producers(args) -> int:
    tp = (args.topic, args.partition)
    with open_client(args) as client:
        producers = client.describe_producers([tp], broker_id=args.broker_id)[tp]
    print_table(["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
                 "LastTimestamp", "CurrentTransactionStartOffset"],
                [[s.producer_id, s.producer_epoch, s.coordinator_epoch, s.last_sequence,
                  s.last_timestamp, _start_offset(s)] for s in producers])
    return 0


def hanging(open_txns: list, owned: dict) -> list:
    """Of the open transactions ((topic, partition), ProducerState) found in partitions, those
    no coordinator will end: `owned` maps a producer id to the partitions its coordinator's
    transaction names (absent when no coordinator knows the producer id)."""
    return [(tp, s) for tp, s in open_txns
            if s.producer_id not in owned or tp not in owned[s.producer_id]]


def open_candidates(producers: dict, now_ms: int, max_timeout_minutes: int) -> list:
    """((topic, partition), ProducerState) of each open transaction whose last write is older
    than the largest transaction timeout: the coordinator should have ended it by now."""
    limit = max_timeout_minutes * MS_PER_MINUTE
    return [(tp, s) for tp in sorted(producers) for s in producers[tp]
            if s.current_txn_start_offset >= 0 and now_ms - s.last_timestamp > limit]


def find_hanging(args) -> int:
    if args.topic is None and args.broker_id is None:
        raise UsageError("find-hanging needs --topic or --broker-id to limit the search")
    if args.partition is not None and args.topic is None:
        raise UsageError("--partition needs --topic")
    with open_client(args) as client:
        if args.topic is not None and args.partition is not None:
            tps = [(args.topic, args.partition)]
        else:
            topics = client.metadata([args.topic] if args.topic is not None else None)
            tps = [(t, p) for t, info in sorted(topics.items()) if info.error == 0
                   for p, part in sorted(info.partitions.items())
                   if args.broker_id is None or args.broker_id in part.replicas]
        producers = client.describe_producers(tps, broker_id=args.broker_id) if tps else {}
        now_ms = int(time.time() * 1000)
        candidates = open_candidates(producers, now_ms, args.max_transaction_timeout)
        owned: dict[int, set] = {}
        if candidates:
            listed = client.list_transactions_of(sorted({s.producer_id for _, s in candidates}))
            for _, listing in listed:
                try:
                    _, state = client.describe_transaction(listing.transactional_id)
                except KafkaError as e:
                    if e.code != ErrorCode.TRANSACTIONAL_ID_NOT_FOUND:
                        raise
                    continue
                owned[listing.producer_id] = {(t.topic, p) for t in state.topics
                                              for p in t.partitions}
        found = hanging(candidates, owned)
    print_table(["Topic", "Partition", "ProducerId", "ProducerEpoch", "CoordinatorEpoch",
                 "StartOffset", "LastTimestamp", "Duration(min)"],
                [[tp[0], tp[1], s.producer_id, s.producer_epoch, s.coordinator_epoch,
                  s.current_txn_start_offset, s.last_timestamp,
                  (now_ms - s.last_timestamp) // MS_PER_MINUTE] for tp, s in found])
    return 0


def abort(args) -> int:
    tp = (args.topic, args.partition)
    if args.start_offset is None and args.producer_id is None:
        raise UsageError("The transaction to abort must be identified either with "
                         "--start-offset (for brokers on 3.0 or above) or with --producer-id, "
                         "--producer-epoch, and --coordinator-epoch (for older brokers)")
    with open_client(args) as client:
        if args.start_offset is None:
            for flag in ("producer_epoch", "coordinator_epoch"):
                if getattr(args, flag) is None:
                    raise UsageError(f"Missing required argument --{flag.replace('_', '-')}")
            producer_id, producer_epoch = args.producer_id, args.producer_epoch
            coordinator_epoch = args.coordinator_epoch
        else:
            producers = client.describe_producers([tp])[tp]
            state = next((s for s in producers
                          if s.current_txn_start_offset == args.start_offset), None)
            if state is None:
                return fail(f"Could not find any open transactions starting at offset "
                            f"{args.start_offset} on partition {tp[0]}-{tp[1]}")
            producer_id, producer_epoch = state.producer_id, state.producer_epoch
            coordinator_epoch = state.coordinator_epoch
        # A transaction begun by a new producer id that hung before its first marker has
        # coordinator epoch -1; 0 is at most any coordinator's epoch, so the marker is accepted.
        coordinator_epoch = max(0, coordinator_epoch)
        client.abort_transaction(tp[0], tp[1], producer_id, producer_epoch, coordinator_epoch)
    print(f"Aborted the transaction of producer {producer_id} (epoch {producer_epoch}) on "
          f"{tp[0]}-{tp[1]}", file=sys.stderr)
    return 0
