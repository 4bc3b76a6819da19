"""The transaction coordinator's state machine, over a real Broker state root (no sockets)."""

import pytest

from record_batches import make_batch
from trioka.broker import BrokerState
from trioka.config import Config
from trioka.log.batch import TRANSACTIONAL_FLAG_MASK
from trioka.log.topics import TRANSACTION_STATE_TOPIC
from trioka.txn.states import TransactionState as S, VALID_PREVIOUS, can_transition
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


# The broker's coordinators read trio's clock, so these tests run under trio (pytest-trio).
@pytest.fixture
async def broker(tmp_path):
    b = BrokerState(Config({"log.dirs": str(tmp_path), "transaction.state.log.num.partitions": "3",
                       "offsets.topic.num.partitions": "3"}))
    b.open()
    b.create_topic("t", 2)
    yield b
    b.close()


def reopen(b: BrokerState) -> BrokerState:
    b.close()
    again = BrokerState(b.config)
    again.open()
    return again


def code_of(fn) -> ErrorCode:
    with pytest.raises(KafkaError) as info:
        fn()
    return info.value.code


def txn_batch(pid, epoch, seq=0):
    return make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                      attributes=TRANSACTIONAL_FLAG_MASK, base_timestamp=NOW)


def test_state_table():
    assert can_transition(S.ONGOING, S.PREPARE_COMMIT)
    assert not can_transition(S.EMPTY, S.PREPARE_COMMIT)
    assert not can_transition(S.COMPLETE_ABORT, S.COMPLETE_COMMIT)
    assert set(VALID_PREVIOUS) == set(S)


async def test_init_bumps_epoch_and_fences(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert epoch == 0
    assert txn.init_producer_id("app", 60000, -1, -1, NOW) == (pid, 1)
    # KIP-360: naming an old epoch is being fenced.
    assert code_of(lambda: txn.init_producer_id("app", 60000, pid, 0, NOW)) == \
        ErrorCode.PRODUCER_FENCED
    assert code_of(lambda: txn.add_partitions("app", pid, 0, [("t", 0)], NOW)) == \
        ErrorCode.PRODUCER_FENCED
    assert code_of(lambda: txn.init_producer_id("app", 0, -1, -1, NOW)) == \
        ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert code_of(lambda: txn.init_producer_id("app", 10**9, -1, -1, NOW)) == \
        ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert code_of(lambda: txn.init_producer_id("", 1000, -1, -1, NOW)) == \
        ErrorCode.INVALID_REQUEST


async def test_commit_writes_markers_and_moves_the_lso(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert code_of(lambda: txn.end_transaction("app", pid, epoch, True, NOW)) == \
        ErrorCode.INVALID_TXN_STATE                       # nothing open
    txn.add_partitions("app", pid, epoch, [("t", 0), ("t", 1)], NOW)
    assert txn.in_transaction(pid, epoch, "t", 1) and not txn.in_transaction(pid, epoch, "x", 0)
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, epoch), now_ms=NOW)
    assert log.last_stable_offset == 0 and log.high_watermark == 1
    txn.end_transaction("app", pid, epoch, True, NOW)
    assert txn.transactions["app"].state == S.COMPLETE_COMMIT
    assert log.high_watermark == log.last_stable_offset == 2      # data + COMMIT marker
    assert broker.partition("t", 1).high_watermark == 1          # a marker there too
    txn.end_transaction("app", pid, epoch, True, NOW)            # a retry: fine
    assert code_of(lambda: txn.end_transaction("app", pid, epoch, False, NOW)) == \
        ErrorCode.INVALID_TXN_STATE


async def test_new_producer_aborts_the_zombies_transaction(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, [("t", 0)], NOW)
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, epoch), now_ms=NOW)
    assert code_of(lambda: txn.init_producer_id("app", 60000, -1, -1, NOW)) == \
        ErrorCode.CONCURRENT_TRANSACTIONS
    assert log.last_stable_offset == 2 and log.aborted_transactions(0, 2) == [(pid, 0)]
    new_pid, new_epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert (new_pid, new_epoch) == (pid, 2)
    # The zombie's late batch is refused by the partition.
    with pytest.raises(KafkaError) as info:
        log.append(txn_batch(pid, epoch, seq=1), now_ms=NOW)
    assert info.value.code == ErrorCode.INVALID_PRODUCER_EPOCH


async def test_timed_out_transaction_is_aborted(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("slow", 1000, -1, -1, NOW)
    txn.add_partitions("slow", pid, epoch, [("t", 0)], NOW)
    broker.partition("t", 0).append(txn_batch(pid, epoch), now_ms=NOW)
    assert txn.expire(NOW + 500) == 0
    assert txn.expire(NOW + 1001) == 1
    assert txn.transactions["slow"].state == S.COMPLETE_ABORT
    assert broker.partition("t", 0).last_stable_offset == 2
    assert code_of(lambda: txn.end_transaction("slow", pid, epoch, True, NOW)) == \
        ErrorCode.PRODUCER_FENCED


async def test_state_survives_restart(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, [("t", 0)], NOW)
    broker.partition("t", 0).append(txn_batch(pid, epoch), now_ms=NOW)
    assert broker.logs.topic(TRANSACTION_STATE_TOPIC) is not None
    broker = reopen(broker)
    meta = broker.transactions.transactions["app"]
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (pid, epoch, S.ONGOING)
    assert meta.partitions == {("t", 0)}
    broker.transactions.end_transaction("app", pid, epoch, False, NOW)
    broker = reopen(broker)
    assert broker.transactions.transactions["app"].state == S.COMPLETE_ABORT
    assert broker.partition("t", 0).aborted_transactions(0, 10) == [(pid, 0)]
    broker.close()


async def test_prepared_transaction_is_completed_at_startup(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    txn.add_partitions("app", pid, epoch, [("t", 0)], NOW)
    broker.partition("t", 0).append(txn_batch(pid, epoch), now_ms=NOW)
    meta = txn.transactions["app"]
    meta.transition(S.PREPARE_COMMIT, NOW)
    txn._persist(meta, NOW)                    # the broker "dies" before writing markers
    broker = reopen(broker)
    assert broker.transactions.transactions["app"].state == S.COMPLETE_COMMIT
    log = broker.partition("t", 0)
    assert log.last_stable_offset == log.high_watermark == 2
    broker.close()


async def test_retried_epoch_bump_gets_the_current_epoch(broker):
    """KIP-360: a producer asking to bump its own epoch, whose answer was lost, asks again with
    the epoch it had; it gets the epoch it was given, not PRODUCER_FENCED. Once another producer
    has taken the id, that retry is fenced."""
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60000, -1, -1, NOW)
    assert txn.init_producer_id("app", 60000, pid, epoch, NOW) == (pid, epoch + 1)
    assert txn.init_producer_id("app", 60000, pid, epoch, NOW) == (pid, epoch + 1)   # retry
    assert txn.init_producer_id("app", 60000, -1, -1, NOW) == (pid, epoch + 2)       # new one
    assert code_of(lambda: txn.init_producer_id("app", 60000, pid, epoch, NOW)) == \
        ErrorCode.PRODUCER_FENCED


# --- transactions v2 (KIP-890 part 2) ---

def test_v2_end_txn_table_covers_every_state():
    from trioka.txn.coordinator import END_TXN
    assert set(END_TXN) == {(state, commit) for state in S for commit in (True, False)}


async def test_v2_produce_adds_the_partition_and_end_txn_bumps_the_epoch(broker):
    """No AddPartitionsToTxn: the leader's verification adds the partition (and starts the
    transaction); EndTxn v5 bumps the epoch, the markers carry the bumped epoch, and the
    producer's next transaction runs at it."""
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("v2", 60000, -1, -1, NOW)
    txn.verify_partition("v2", pid, epoch, "t", 0, True, NOW)
    meta = txn.transactions["v2"]
    assert meta.state == S.ONGOING and meta.partitions == {("t", 0)}
    assert meta.client_transaction_version == 2
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, epoch), now_ms=NOW)
    assert txn.end_transaction("v2", pid, epoch, True, NOW, transaction_version=2) == \
        (pid, epoch + 1)
    assert meta.state == S.COMPLETE_COMMIT and log.last_stable_offset == 2
    marker = log.read(1, 1 << 20)
    from trioka.log.records import iter_batches
    (batch,) = list(iter_batches(marker.records))
    assert batch.is_control and batch.producer_epoch == epoch + 1
    # A late batch of the finished transaction (the old epoch) is refused by the partition...
    with pytest.raises(KafkaError) as info:
        log.append(txn_batch(pid, epoch, seq=1), now_ms=NOW)
    assert info.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    # ... and by the coordinator, when it would add a partition for it.
    assert code_of(lambda: txn.verify_partition("v2", pid, epoch, "t", 1, True, NOW)) == \
        ErrorCode.PRODUCER_FENCED
    # The next transaction, at the new epoch, from sequence 0.
    txn.verify_partition("v2", pid, epoch + 1, "t", 0, True, NOW)
    log.append(txn_batch(pid, epoch + 1, seq=0), now_ms=NOW)
    assert txn.end_transaction("v2", pid, epoch + 1, False, NOW, transaction_version=2) == \
        (pid, epoch + 2)
    assert log.aborted_transactions(0, 10) == [(pid, 2)]


async def test_v2_retried_end_txn_gets_the_same_answer(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("v2", 60000, -1, -1, NOW)
    txn.verify_partition("v2", pid, epoch, "t", 0, True, NOW)
    assert txn.end_transaction("v2", pid, epoch, True, NOW, 2) == (pid, epoch + 1)
    # Its answer lost, the producer sends the same EndTxn: the same answer, nothing written.
    end = broker.partition("t", 0).high_watermark
    assert txn.end_transaction("v2", pid, epoch, True, NOW, 2) == (pid, epoch + 1)
    assert broker.partition("t", 0).high_watermark == end
    # The retry of a commit cannot turn into an abort; an older epoch is fenced.
    assert code_of(lambda: txn.end_transaction("v2", pid, epoch, False, NOW, 2)) == \
        ErrorCode.INVALID_TXN_STATE
    assert code_of(lambda: txn.end_transaction("v2", pid, epoch - 1 if epoch else -5, True,
                                               NOW, 2)) == ErrorCode.PRODUCER_FENCED
    # At the current epoch, a commit with nothing open is INVALID_TXN_STATE; an abort is
    # allowed and bumps the epoch (transactions v2 may abort an empty transaction).
    assert code_of(lambda: txn.end_transaction("v2", pid, epoch + 1, True, NOW, 2)) == \
        ErrorCode.INVALID_TXN_STATE
    assert txn.end_transaction("v2", pid, epoch + 1, False, NOW, 2) == (pid, epoch + 2)
    assert txn.transactions["v2"].state == S.COMPLETE_ABORT


async def test_v2_epoch_overflow_hands_over_a_new_producer_id(broker):
    """The bump at the end of the transaction at epoch 32766 takes 32767 (for the markers); the
    producer gets a new producer id at epoch 0, and a retry naming the old id still works."""
    txn = broker.transactions
    pid, _ = txn.init_producer_id("v2", 60000, -1, -1, NOW)
    meta = txn.transactions["v2"]
    meta.producer_epoch = 32766
    txn.verify_partition("v2", pid, 32766, "t", 0, True, NOW)
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, 32766), now_ms=NOW)
    new_pid, new_epoch = txn.end_transaction("v2", pid, 32766, True, NOW, 2)
    assert new_pid != pid and new_epoch == 0
    assert meta.previous_producer_id == pid and meta.next_producer_id == -1
    assert txn.by_producer[new_pid] == "v2" and pid not in txn.by_producer
    assert log.producer_state.producers[pid].producer_epoch == 32767   # the marker's epoch
    assert txn.end_transaction("v2", pid, 32766, True, NOW, 2) == (new_pid, 0)   # a retry
    txn.verify_partition("v2", new_pid, 0, "t", 0, True, NOW)
    assert code_of(lambda: txn.verify_partition("v2", pid, 32766, "t", 0, True, NOW)) == \
        ErrorCode.INVALID_PRODUCER_ID_MAPPING


async def test_v2_fencing_an_open_transaction_bumps_once(broker):
    """A new producer (InitProducerId) fences a v2 transaction left open: its markers carry the
    fencing epoch, one above the data, and that epoch is not bumped again (KAFKA-19367)."""
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("v2", 60000, -1, -1, NOW)
    txn.verify_partition("v2", pid, epoch, "t", 0, True, NOW)
    log = broker.partition("t", 0)
    log.append(txn_batch(pid, epoch), now_ms=NOW)
    assert code_of(lambda: txn.init_producer_id("v2", 60000, -1, -1, NOW)) == \
        ErrorCode.CONCURRENT_TRANSACTIONS
    assert log.producer_state.producers[pid].producer_epoch == epoch + 1
    assert log.aborted_transactions(0, 10) == [(pid, 0)]
    assert txn.init_producer_id("v2", 60000, -1, -1, NOW) == (pid, epoch + 2)


async def test_v2_state_survives_restart_as_value_version_1(broker):
    from trioka.log.records import iter_batches
    from trioka.wire import schema
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("v2", 60000, -1, -1, NOW)
    txn.verify_partition("v2", pid, epoch, "t", 0, True, NOW)
    broker = reopen(broker)
    meta = broker.transactions.transactions["v2"]
    assert (meta.state, meta.client_transaction_version) == (S.ONGOING, 2)
    values = []
    for p in broker.logs.topic(TRANSACTION_STATE_TOPIC).partitions:
        read = p.read(0, 1 << 20)
        values += [r.value for b in iter_batches(read.records) for r in b.records]
    assert values and all(schema.decode_record("TransactionLogValue", v)[0] == 1
                          for v in values)
    assert broker.transactions.end_transaction("v2", pid, epoch, True, NOW, 2) == \
        (pid, epoch + 1)
    broker.close()


async def test_transaction_version_0_writes_value_version_0(tmp_path):
    from trioka.log.records import iter_batches
    from trioka.wire import schema
    b = BrokerState(Config({"log.dirs": str(tmp_path), "transaction.state.log.num.partitions": "1",
                       "trioka.transaction.version": "0"}))
    b.open()
    assert "transaction.version" not in b.features
    b.transactions.init_producer_id("old", 60000, -1, -1, NOW)
    (p,) = b.logs.topic(TRANSACTION_STATE_TOPIC).partitions
    (batch,) = list(iter_batches(p.read(0, 1 << 20).records))
    assert schema.decode_record("TransactionLogValue", batch.records[0].value)[0] == 0
    b.close()


def test_transaction_version_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError):
        BrokerState(Config({"log.dirs": str(tmp_path), "trioka.transaction.version": "3"}))


async def test_part1_verification_answers_transaction_abortable(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("v1", 60000, -1, -1, NOW)
    assert code_of(lambda: txn.verify_partition("v1", pid, epoch, "t", 0, False, NOW)) == \
        ErrorCode.TRANSACTION_ABORTABLE
    txn.add_partitions("v1", pid, epoch, [("t", 0)], NOW)
    txn.verify_partition("v1", pid, epoch, "t", 0, False, NOW)
    txn.verify_partition(None, pid, epoch, "t", 0, False, NOW)     # no id sent: by producer id
    assert code_of(lambda: txn.verify_partition("v1", pid, epoch + 1, "t", 0, False, NOW)) == \
        ErrorCode.PRODUCER_FENCED
    assert code_of(lambda: txn.verify_partition("other", pid, epoch, "t", 0, False, NOW)) == \
        ErrorCode.INVALID_PRODUCER_ID_MAPPING


async def test_verify_only_answers_which_partitions_are_in_the_transaction(broker):
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("vo", 60000, -1, -1, NOW)
    assert txn.verify_partitions_in_transaction("vo", pid, epoch, [("t", 0), ("t", 1)]) == set()
    txn.add_partitions("vo", pid, epoch, [("t", 0)], NOW)
    assert txn.verify_partitions_in_transaction("vo", pid, epoch, [("t", 0), ("t", 1)]) == \
        {("t", 0)}
    assert code_of(lambda: txn.verify_partitions_in_transaction("vo", pid, epoch + 1,
                                                                [("t", 0)])) == \
        ErrorCode.PRODUCER_FENCED
    assert code_of(lambda: txn.verify_partitions_in_transaction("nope", pid, epoch,
                                                                [("t", 0)])) == \
        ErrorCode.INVALID_PRODUCER_ID_MAPPING
    txn.end_transaction("vo", pid, epoch, True, NOW)
    assert txn.verify_partitions_in_transaction("vo", pid, epoch, [("t", 0)]) == set()


async def test_describe(broker):
    txn = broker.transactions
    assert txn.describe("unknown") is None
    pid, epoch = txn.init_producer_id("d", 60000, -1, -1, NOW)
    txn.add_partitions("d", pid, epoch, [("t", 1)], NOW)
    meta = txn.describe("d")
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (pid, epoch, S.ONGOING)
    assert meta.partitions == {("t", 1)} and meta.start_ms == NOW
    assert [m.transactional_id for m in txn.list()] == ["d"]
