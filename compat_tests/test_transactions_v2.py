"""Transactions v2 (KIP-890 part 2) on the wire, read back by stock consumers.

Kafka 4.x producers switch to transactions v2 when a broker finalizes the `transaction.version`
feature at 2 (in ApiVersions) and serves Produce v12 and TxnOffsetCommit v5: they send no
AddPartitionsToTxn or AddOffsetsToTxn (the partition leader and the group coordinator add the
partition when the data or the offsets arrive), and every EndTxn (v5) bumps the producer epoch, so
that a late write of a finished transaction is refused instead of landing in the next one. None of
the Python or JavaScript clients here speaks v2 (the Java client does), so `V2Producer` below sends
exactly the requests a Java 4.x producer sends, built with trioka's wire codec; everything it wrote
is then read back by confluent-kafka and kafka-python consumers, and the group offsets it
committed by their `committed()`. The classic clients keep working against the same broker: the
other transaction tests run with the feature advertised.
"""

import pytest
from confluent_kafka import Consumer, TopicPartition

from trioka.log.records import encode_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

from clients import consume_kafka_python
from harness import RawConnection, create_topic, unique
from test_transactions import (READ_COMMITTED, READ_UNCOMMITTED, TXN_OVERRIDES,
                               control_offsets, end_offsets, read_all, read_committed,
                               txn_state, values)
from trioka.testing.process import BrokerProcess


def request(api_key, **fields):
    return protocol.request_class(api_key)(**fields)


class V2Producer:
    """A transactional producer speaking transactions v2 the way Kafka 4.x's Java client does:
    ApiVersions v4, InitProducerId v5, Produce v12 (no AddPartitionsToTxn), TxnOffsetCommit v5
    (no AddOffsetsToTxn) and EndTxn v5, taking the producer id and epoch the EndTxn answer gives
    and starting its sequences again at 0."""

    def __init__(self, bootstrap: str, transactional_id: str):
        self.conn = RawConnection(bootstrap)
        self.transactional_id = transactional_id
        versions = self.conn.request(ApiKey.API_VERSIONS, 4, request(
            ApiKey.API_VERSIONS, client_software_name="apache-kafka-java",
            client_software_version="4.1.0"))
        finalized = {f.name: f.max_version_level for f in versions.finalized_features or []}
        assert finalized.get("transaction.version") == 2, finalized
        answer = self.conn.request(ApiKey.INIT_PRODUCER_ID, 5, request(
            ApiKey.INIT_PRODUCER_ID, transactional_id=transactional_id,
            transaction_timeout_ms=60_000, producer_id=-1, producer_epoch=-1))
        assert answer.error_code == 0, answer
        self.producer_id, self.epoch = answer.producer_id, answer.producer_epoch
        self.sequences: dict[tuple[str, int], int] = {}

    def close(self) -> None:
        self.conn.close()

    def produce(self, topic: str, partition: int, values: list[bytes], *, epoch: int | None = None,
                sequence: int | None = None, version: int = 12) -> tuple[int, int]:
        """One transactional batch: (error code, base offset)."""
        seq = self.sequences.get((topic, partition), 0) if sequence is None else sequence
        batch = encode_batch([(None, v) for v in values], producer_id=self.producer_id,
                             producer_epoch=self.epoch if epoch is None else epoch,
                             base_sequence=seq, transactional=True)
        r = protocol.request_class(ApiKey.PRODUCE)
        answer = self.conn.request(ApiKey.PRODUCE, version, r(
            transactional_id=self.transactional_id, acks=-1, timeout_ms=10_000,
            topic_data=[r.TopicProduceData(name=topic, partition_data=[
                r.TopicProduceData.PartitionProduceData(index=partition, records=batch)])]))
        part = answer.responses[0].partition_responses[0]
        if part.error_code == 0 and sequence is None:
            self.sequences[(topic, partition)] = seq + len(values)
        return part.error_code, part.base_offset

    def send_offsets(self, group: str, topic: str, offsets: dict[int, int], *,
                     version: int = 5) -> list[int]:
        """TxnOffsetCommit (v5: with no AddOffsetsToTxn before it) to the group coordinator,
        found first as a producer finds it (FindCoordinator, which on a single broker also
        makes `__consumer_offsets` and waits for it); the partitions' error codes."""
        found = self.conn.request(ApiKey.FIND_COORDINATOR, 4, request(
            ApiKey.FIND_COORDINATOR, key_type=0, coordinator_keys=[group]))
        assert [c.error_code for c in found.coordinators] == [0]
        r = protocol.request_class(ApiKey.TXN_OFFSET_COMMIT)
        answer = self.conn.request(ApiKey.TXN_OFFSET_COMMIT, version, r(
            transactional_id=self.transactional_id, group_id=group,
            producer_id=self.producer_id, producer_epoch=self.epoch, generation_id=-1,
            member_id="", group_instance_id=None, topics=[r.TxnOffsetCommitRequestTopic(
                name=topic, partitions=[
                    r.TxnOffsetCommitRequestTopic.TxnOffsetCommitRequestPartition(
                        partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                        committed_metadata="") for p, o in offsets.items()])]))
        return [p.error_code for t in answer.topics for p in t.partitions]

    def end(self, commit: bool, *, epoch: int | None = None) -> tuple[int, int, int]:
        """EndTxn v5: (error code, producer id, epoch) of the answer, which the producer adopts
        when it succeeds."""
        answer = self.conn.request(ApiKey.END_TXN, 5, request(
            ApiKey.END_TXN, transactional_id=self.transactional_id,
            producer_id=self.producer_id,
            producer_epoch=self.epoch if epoch is None else epoch, committed=commit))
        if answer.error_code == 0:
            self.producer_id, self.epoch = answer.producer_id, answer.producer_epoch
            self.sequences.clear()
        return answer.error_code, answer.producer_id, answer.producer_epoch


@pytest.fixture(scope="module")
def v2_broker():
    with BrokerProcess(overrides=TXN_OVERRIDES) as b:
        yield b.start()


def test_api_versions_advertise_transaction_version(v2_broker):
    """The features of ApiVersions v3+: `transaction.version` and `group.version` supported from
    level 0 (from 1 below v4, which older Java clients need, KAFKA-17011) and finalized at 2 and
    1, with an epoch; the versions transactions v2 needs are served."""
    with RawConnection(v2_broker.bootstrap) as conn:
        for version, low in ((4, 0), (3, 1)):
            answer = conn.request(ApiKey.API_VERSIONS, version, request(
                ApiKey.API_VERSIONS, client_software_name="apache-kafka-java",
                client_software_version="4.1.0"))
            supported = {f.name: (f.min_version, f.max_version)
                         for f in answer.supported_features}
            assert supported == {"transaction.version": (low, 2), "group.version": (low, 1)}
            assert {f.name: (f.min_version_level, f.max_version_level)
                    for f in answer.finalized_features} == \
                {"transaction.version": (2, 2), "group.version": (1, 1)}
            assert answer.finalized_features_epoch > 0
            keys = {k.api_key: k.max_version for k in answer.api_keys}
            assert keys[ApiKey.PRODUCE] >= 12 and keys[ApiKey.TXN_OFFSET_COMMIT] >= 5
            assert keys[ApiKey.END_TXN] >= 5


def test_v2_transactions_read_back_by_stock_consumers(v2_broker, topic_name):
    """Three transactions over two partitions with no AddPartitionsToTxn: committed, aborted,
    committed. Each EndTxn bumps the epoch; the markers carry the bumped epoch;
    confluent-kafka and kafka-python read_committed consumers get exactly the committed
    records, read_uncommitted gets everything, and no marker is delivered."""
    b = v2_broker
    partitions = [0, 1]
    create_topic(b.bootstrap, topic_name, partitions=2)
    tid = unique("v2-vis")
    producer = V2Producer(b.bootstrap, tid)
    try:
        pid, epoch = producer.producer_id, producer.epoch
        txns = [("c", True), ("a", False), ("d", True)]
        written = {}
        for n, (tag, commit) in enumerate(txns):
            written[tag] = {p: [f"{tag}-{p}-{i}".encode() for i in range(5)] for p in partitions}
            for p in partitions:
                for i in range(0, 5, 2):   # batches of 2, 2, 1 records
                    code, _ = producer.produce(topic_name, p, written[tag][p][i:i + 2])
                    assert code == 0
            if n == 0:
                # The partitions joined the transaction with the data (no AddPartitionsToTxn).
                state = txn_state(b.bootstrap, tid)
                assert state["TransactionState"] == "Ongoing"
                assert set(state["TopicPartitions"].split(",")) == \
                    {f"{topic_name}-{p}" for p in partitions}
            assert producer.end(commit) == (0, pid, epoch + n + 1)
        assert txn_state(b.bootstrap, tid)["ProducerEpoch"] == str(epoch + 3)
    finally:
        producer.close()

    committed = {p: written["c"][p] + written["d"][p] for p in partitions}
    everything = {p: written["c"][p] + written["a"][p] + written["d"][p] for p in partitions}
    assert values(read_all(b.bootstrap, topic_name, partitions, READ_COMMITTED)) == committed
    uncommitted = read_all(b.bootstrap, topic_name, partitions, READ_UNCOMMITTED)
    assert values(uncommitted) == everything
    assert end_offsets(b.bootstrap, topic_name, partitions, READ_COMMITTED) == \
        end_offsets(b.bootstrap, topic_name, partitions, READ_UNCOMMITTED)
    for p in partitions:
        assert len(control_offsets(b.bootstrap, topic_name, p)) == 3
    assert read_committed(consume_kafka_python, b.bootstrap, topic_name, partitions,
                          20) == committed


def test_late_write_of_a_finished_transaction_is_fenced(v2_broker, topic_name):
    """The point of part 2: a batch of a committed transaction that arrives late (a retry after
    a timeout, say) carries the old epoch and is refused, at any Produce version, instead of
    joining the next transaction; so is an EndTxn at the old epoch once the next transaction
    has started. A lost EndTxn answer's retry gets the same answer."""
    b = v2_broker
    create_topic(b.bootstrap, topic_name)
    producer = V2Producer(b.bootstrap, unique("v2-zombie"))
    try:
        old = producer.epoch
        assert producer.produce(topic_name, 0, [b"first"])[0] == 0
        code, pid, new = producer.end(True)
        assert (code, new) == (0, old + 1)
        # The EndTxn again, as after a lost answer: the same producer id and epoch.
        assert producer.end(True, epoch=old) == (0, pid, new)
        for version in (12, 11, 9):
            code, _ = producer.produce(topic_name, 0, [b"late"], epoch=old, sequence=1,
                                       version=version)
            assert code == ErrorCode.INVALID_PRODUCER_EPOCH, (version, code)
        assert producer.produce(topic_name, 0, [b"second"])[0] == 0      # epoch new, seq 0
        assert producer.end(True, epoch=old)[0] == ErrorCode.PRODUCER_FENCED
        # A first batch at a partition the producer never wrote to must start at sequence 0.
        create_topic(b.bootstrap, topic_name + "-b")
        code, _ = producer.produce(topic_name + "-b", 0, [b"x"], sequence=5)
        assert code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert producer.end(True) == (0, pid, new + 1)
    finally:
        producer.close()
    got = read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)
    assert values(got) == {0: [b"first", b"second"]}


def test_classic_produce_gets_transaction_abortable_for_a_partition_not_added(v2_broker,
                                                                             topic_name):
    """KIP-890 part 1 still holds for Produce v11 and below: a transactional batch for a
    partition the producer did not add is refused, TRANSACTION_ABORTABLE from v11 and
    INVALID_TXN_STATE before; nothing is written."""
    b = v2_broker
    create_topic(b.bootstrap, topic_name)
    producer = V2Producer(b.bootstrap, unique("v1-unadded"))
    try:
        assert producer.produce(topic_name, 0, [b"x"], version=11)[0] == \
            ErrorCode.TRANSACTION_ABORTABLE
        assert producer.produce(topic_name, 0, [b"x"], version=10)[0] == \
            ErrorCode.INVALID_TXN_STATE
    finally:
        producer.close()
    assert end_offsets(b.bootstrap, topic_name, [0], READ_UNCOMMITTED) == {0: 0}


def committed_by_consumers(bootstrap: str, group: str, topic: str, partitions) -> dict:
    """The group's committed offsets as confluent-kafka and kafka-python report them (they must
    agree); -1001 / None where nothing is committed become -1. The confluent consumer reads
    uncommitted: a read_committed one asks for stable offsets (KIP-447) and waits while a
    transaction holds offsets of the group."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "isolation.level": "read_uncommitted"})
    try:
        got = {tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in
               c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)}
    finally:
        c.close()
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    k = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        theirs = {p: k.committed(KTP(topic, p)) for p in partitions}
    finally:
        k.close()
    assert {p: -1 if o is None else o for p, o in theirs.items()} == got, (theirs, got)
    return got


def test_offsets_join_the_transaction_without_add_offsets(v2_broker, topic_name):
    """Consume-transform-produce the v2 way: TxnOffsetCommit v5 with no AddOffsetsToTxn. The
    offsets stay invisible until the commit; an aborted transaction's offsets are dropped."""
    b = v2_broker
    create_topic(b.bootstrap, topic_name, partitions=2)
    group = unique("v2-group")
    producer = V2Producer(b.bootstrap, unique("v2-offsets"))
    try:
        assert producer.produce(topic_name, 0, [b"out-1"])[0] == 0
        assert producer.send_offsets(group, topic_name, {0: 10, 1: 20}) == [0, 0]
        assert committed_by_consumers(b.bootstrap, group, topic_name, [0, 1]) == {0: -1, 1: -1}
        assert producer.end(True)[0] == 0
        assert committed_by_consumers(b.bootstrap, group, topic_name, [0, 1]) == {0: 10, 1: 20}
        stable = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
        try:    # read_committed: asks for stable offsets, which they now are
            assert [tp.offset for tp in stable.committed(
                [TopicPartition(topic_name, p) for p in (0, 1)], timeout=10)] == [10, 20]
        finally:
            stable.close()
        # Offsets alone make a transaction too; this one is aborted.
        assert producer.send_offsets(group, topic_name, {0: 99}) == [0]
        assert producer.end(False)[0] == 0
        assert committed_by_consumers(b.bootstrap, group, topic_name, [0, 1]) == {0: 10, 1: 20}
        # A classic TxnOffsetCommit (v4) for a group not added to the transaction is refused.
        assert producer.send_offsets(group, topic_name, {0: 5}, version=4) == \
            [ErrorCode.TRANSACTION_ABORTABLE]
    finally:
        producer.close()


def test_v2_transaction_survives_a_broker_kill(topic_name):
    """SIGKILL with a v2 transaction open: after the restart the coordinator still knows the
    transaction (and that it is a v2 one), the producer commits it with EndTxn v5 and gets the
    bumped epoch, and consumers read it; the finished transaction's epoch stays fenced."""
    b = BrokerProcess(overrides=TXN_OVERRIDES).start()
    try:
        create_topic(b.bootstrap, topic_name)
        tid = unique("v2-kill")
        producer = V2Producer(b.bootstrap, tid)
        assert producer.produce(topic_name, 0, [b"one"])[0] == 0
        assert producer.end(True)[0] == 0
        assert producer.produce(topic_name, 0, [b"two", b"three"])[0] == 0
        pid, epoch = producer.producer_id, producer.epoch
        producer.close()
        b.restart(kill=True)
        assert txn_state(b.bootstrap, tid)["TransactionState"] == "Ongoing"
        again = V2Producer.__new__(V2Producer)
        again.conn = RawConnection(b.bootstrap)
        again.transactional_id, again.producer_id, again.epoch = tid, pid, epoch
        again.sequences = {(topic_name, 0): 2}
        try:
            assert again.end(True) == (0, pid, epoch + 1)
            assert again.produce(topic_name, 0, [b"late"], epoch=epoch, sequence=2)[0] == \
                ErrorCode.INVALID_PRODUCER_EPOCH
        finally:
            again.close()
        got = read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)
        assert values(got) == {0: [b"one", b"two", b"three"]}
        assert read_committed(consume_kafka_python, b.bootstrap, topic_name, [0], 3) == \
            {0: [b"one", b"two", b"three"]}
    finally:
        b.close()


def test_transaction_version_1_keeps_clients_on_the_classic_protocol(topic_name):
    """`trioka.transaction.version=1` (as a Kafka cluster formatted so): ApiVersions finalizes
    level 1, so 4.x clients stay on transactions v1, and a confluent-kafka transaction works."""
    import confluent_kafka
    b = BrokerProcess(overrides={**TXN_OVERRIDES, "trioka.transaction.version": 1}).start()
    try:
        with RawConnection(b.bootstrap) as conn:
            answer = conn.request(ApiKey.API_VERSIONS, 4, request(
                ApiKey.API_VERSIONS, client_software_name="apache-kafka-java",
                client_software_version="4.1.0"))
        assert {f.name: f.max_version_level for f in answer.finalized_features} == \
            {"transaction.version": 1, "group.version": 1}
        create_topic(b.bootstrap, topic_name)
        p = confluent_kafka.Producer({"bootstrap.servers": b.bootstrap,
                                      "transactional.id": unique("tv1"),
                                      "metadata.recovery.strategy": "none"})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(topic_name, b"kept", partition=0)
        p.commit_transaction(30)
        assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)) == {0: [b"kept"]}
    finally:
        b.close()
