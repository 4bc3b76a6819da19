"""Transactions with stock clients: visibility, exactly-once copying, fencing, timeouts, crashes.

A transactional producer (KIP-98) registers its transactional id with InitProducerId, adds each
partition it writes to (AddPartitionsToTxn) and each consumer group whose offsets it commits
(AddOffsetsToTxn, TxnOffsetCommit), and ends with EndTxn: the coordinator writes a COMMIT or ABORT
control record into every partition of the transaction. A read_committed consumer reads only up to
the last stable offset (the first offset of the oldest transaction still open) and drops the
records of aborted transactions (the Fetch response lists them); control records are never handed
to the application. A second producer with the same transactional id fences the first (a new
epoch) and aborts what it left open; a transaction left open longer than transaction.timeout.ms
is aborted by the coordinator.

Every check reads what came back over the wire: records through stock consumers, offsets through
ListOffsets, the coordinator's state through `trioka txn list|describe` and DescribeProducers.
"""

import random
import subprocess
import sys
import threading

import confluent_kafka
import pytest
from confluent_kafka import KafkaException, TopicPartition

from clients import (Rec, consume_aiokafka, consume_confluent, consume_confluent_to,
                     consume_kafka_python, produce_confluent, value_records)
from harness import (ClientProcess, RawConnection, cleaner_checkpoint, create_topic,
                     fetch_raw_batches, segment_base_offsets, unique, wait_for)
from trioka.testing.process import BrokerProcess
from trioka.wire.errors import ErrorCode

READ_UNCOMMITTED, READ_COMMITTED = 0, 1
# librdkafka 2.10+ re-bootstraps when it has lost every broker connection (KIP-1102), which with a
# single broker happens whenever the one connection drops; it then decommissions the broker it
# knew, and a send_offsets_to_transaction() waiting for that broker as group coordinator can hang
# past its timeout (librdkafka issue #5511). The tests' librdkafka clients reconnect instead.
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}
# How often the coordinator looks for timed-out transactions: short, so that the tests see a
# transaction.timeout.ms of a few seconds take effect promptly.
TXN_OVERRIDES = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": 500}


@pytest.fixture(scope="module")
def txn_broker():
    with BrokerProcess(overrides=TXN_OVERRIDES) as b:
        yield b.start()


def bounded(fn, timeout: float = 30.0):
    """Run a blocking client call in a thread (kafka-python's transaction calls wait without a
    bound; a librdkafka call stuck in C would also hold off pytest-timeout's signal); its result,
    its exception, or AssertionError when it takes longer than `timeout`."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:     # handed to the caller
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{getattr(fn, '__name__', fn)} did not return within {timeout} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


# ------------------------------------------------------------------------ reading back

def end_offsets(bootstrap: str, topic: str, partitions, isolation: int) -> dict[int, int]:
    """ListOffsets latest: the high watermark (read_uncommitted) or the last stable offset
    (read_committed) of each partition."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    request_class = protocol.request_class(ApiKey.LIST_OFFSETS)
    t = request_class.ListOffsetsTopic
    request = request_class(replica_id=-1, isolation_level=isolation, topics=[t(
        name=topic, partitions=[t.ListOffsetsPartition(partition_index=p, current_leader_epoch=-1,
                                                       timestamp=-1) for p in partitions])])
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.LIST_OFFSETS, 5, request)
    out = {}
    for part in response.topics[0].partitions:
        assert part.error_code == 0, part
        out[part.partition_index] = part.offset
    return out


def read_all(bootstrap: str, topic: str, partitions, isolation: int,
             timeout: float = 30.0) -> dict[int, list]:
    """Everything a confluent-kafka consumer with this isolation level gets, per partition in
    order (Recs): it reads from the beginning until its position reaches ListOffsets' latest
    offset (librdkafka moves its position past control records and aborted transactions)."""
    ends = end_offsets(bootstrap, topic, list(partitions), isolation)
    return consume_confluent_to(bootstrap, topic, ends, timeout=timeout, config={
        "isolation.level": "read_committed" if isolation else "read_uncommitted"})


def values(read: dict[int, list]) -> dict[int, list[bytes]]:
    return {p: [r.value for r in records] for p, records in read.items()}


def read_committed(consume, bootstrap: str, topic: str, partitions, count: int,
                   fetch_bytes: int = 1 << 20) -> dict[int, list[bytes]]:
    """`count` records read by kafka-python or aiokafka (`consume`, clients.py) in
    read_committed, fetching at most `fetch_bytes` per partition at a time: their values per
    partition."""
    got = consume(bootstrap, topic, partitions, count, config={
        "isolation_level": "read_committed", "max_partition_fetch_bytes": fetch_bytes})
    return {p: [r.value for r in got if r.partition == p] for p in partitions}


def control_offsets(bootstrap: str, topic: str, partition: int) -> set[int]:
    """Offsets of the COMMIT/ABORT control batches stored in a partition (a raw Fetch)."""
    return {b.base_offset for b in fetch_raw_batches(bootstrap, topic, partition)
            if b.is_control_batch}


def trioka_cli(bootstrap: str, *args: str) -> list[list[str]]:
    """Run `python -m trioka ARGS --bootstrap-server ...`; the table it prints, split in cells
    (the header row first)."""
    done = subprocess.run([sys.executable, "-m", "trioka", *args, "--bootstrap-server",
                           bootstrap, "--request-timeout-ms", "10000"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return [line.split() for line in done.stdout.splitlines() if line.strip()]


def txn_state(bootstrap: str, transactional_id: str) -> dict[str, str]:
    """`trioka txn describe ID` as a dict of its columns."""
    header, row = trioka_cli(bootstrap, "txn", "describe", transactional_id)
    if len(row) == len(header) - 1:
        row.append("")      # no TopicPartitions
    return dict(zip(header, row))


def txn_list(bootstrap: str) -> dict[str, str]:
    """`trioka txn list`: transactional id -> state."""
    rows = trioka_cli(bootstrap, "txn", "list")
    assert rows[0] == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
    return {r[0]: r[3] for r in rows[1:]}


def open_transactions_in(bootstrap: str, topic: str, partitions) -> dict[int, list]:
    """DescribeProducers: per partition, the (producer id, first offset) of transactions that
    are still open there."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    request_class = protocol.request_class(ApiKey.DESCRIBE_PRODUCERS)
    request = request_class(topics=[request_class.TopicRequest(
        name=topic, partition_indexes=list(partitions))])
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.DESCRIBE_PRODUCERS, 0, request)
    out = {}
    for part in response.topics[0].partitions:
        assert part.error_code == 0, part
        out[part.partition_index] = [(s.producer_id, s.current_txn_start_offset)
                                     for s in part.active_producers
                                     if s.current_txn_start_offset >= 0]
    return out


# ------------------------------------------------------------ transactional producers

class ConfluentTxnProducer:
    """librdkafka's transactional producer behind the calls the tests make."""
    client = "confluent"

    def __init__(self, bootstrap: str, transactional_id: str, client_id: str = "rdkafka",
                 **extra):
        self.producer = confluent_kafka.Producer({
            "bootstrap.servers": bootstrap, "transactional.id": transactional_id,
            "client.id": client_id, "linger.ms": 5, "retry.backoff.ms": 20,
            "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 200, **NO_REBOOTSTRAP,
            **extra})

    def init(self):
        bounded(lambda: self.producer.init_transactions(30), 60)

    def begin(self):
        self.producer.begin_transaction()

    def send(self, topic: str, partition: int, value: bytes, key: bytes | None = None):
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def flush(self):
        assert self.producer.flush(30) == 0

    def commit(self):
        bounded(lambda: self.producer.commit_transaction(30), 60)

    def abort(self):
        bounded(lambda: self.producer.abort_transaction(30), 60)

    def send_offsets(self, offsets: dict[tuple[str, int], int], consumer):
        metadata = consumer.consumer_group_metadata()
        bounded(lambda: self.producer.send_offsets_to_transaction(
            [TopicPartition(t, p, o) for (t, p), o in offsets.items()], metadata, 30), 60)

    def close(self):
        self.producer.flush(5)


class KafkaPythonTxnProducer:
    """kafka-python's KafkaProducer(transactional_id=...); every call bounded."""
    client = "kafka-python"

    def __init__(self, bootstrap: str, transactional_id: str,
                 client_id: str = "kafka-python-producer", **extra):
        from kafka import KafkaProducer
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id,
                                      transactional_id=transactional_id, linger_ms=5,
                                      max_block_ms=30_000, request_timeout_ms=10_000,
                                      retry_backoff_ms=20, reconnect_backoff_ms=10,
                                      reconnect_backoff_max_ms=200, **extra)

    def init(self):
        bounded(self.producer.init_transactions)

    def begin(self):
        self.producer.begin_transaction()

    def send(self, topic: str, partition: int, value: bytes, key: bytes | None = None):
        self.producer.send(topic, value=value, key=key, partition=partition)

    def flush(self):
        bounded(lambda: self.producer.flush(timeout=30))

    def commit(self):
        bounded(self.producer.commit_transaction)

    def abort(self):
        bounded(self.producer.abort_transaction)

    def send_offsets(self, offsets: dict[tuple[str, int], int], consumer):
        from kafka import TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata
        bounded(lambda: self.producer.send_offsets_to_transaction(
            {KTP(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()},
            consumer.group_metadata()))

    def close(self):
        bounded(lambda: self.producer.close(timeout=5))


PRODUCERS = {"confluent": ConfluentTxnProducer, "kafka-python": KafkaPythonTxnProducer}


# ------------------------------------------------------------------- visibility

@pytest.mark.parametrize("client", list(PRODUCERS))
def test_committed_visible_aborted_hidden(txn_broker, topic_name, client):
    """Committed transactions are wholly visible to read_committed consumers; an aborted one,
    interleaved with another producer's committed transaction, is invisible to them and visible
    to read_uncommitted; an open one holds the last stable offset back; control records are never
    delivered."""
    b = txn_broker
    partitions = [0, 1]
    create_topic(b.bootstrap, topic_name, partitions=2)

    def batch(tag: str, n: int = 7) -> dict[int, list[bytes]]:
        return {p: [f"{tag}-{p}-{i}".encode() for i in range(n)] for p in partitions}

    first, aborted, other, last = batch("c"), batch("a"), batch("y"), batch("d")
    producer = PRODUCERS[client](b.bootstrap, unique(f"vis-{client}"))
    other_producer = ConfluentTxnProducer(b.bootstrap, unique("vis-other"))
    try:
        producer.init()
        other_producer.init()

        def write(p, records):
            for part, vs in records.items():
                for v in vs:
                    p.send(topic_name, part, v)

        producer.begin()
        write(producer, first)
        producer.commit()
        # An open transaction: its records are in the log, but the last stable offset stays at
        # its first offset while another producer commits after it.
        start = end_offsets(b.bootstrap, topic_name, partitions, READ_UNCOMMITTED)
        producer.begin()
        write(producer, aborted)
        producer.flush()
        other_producer.begin()
        write(other_producer, other)
        other_producer.commit()
        assert end_offsets(b.bootstrap, topic_name, partitions, READ_COMMITTED) == start
        assert values(read_all(b.bootstrap, topic_name, partitions, READ_COMMITTED)) == first
        producer.abort()
        producer.begin()
        write(producer, last)
        producer.commit()
    finally:
        producer.close()
        other_producer.close()

    committed = {p: first[p] + other[p] + last[p] for p in partitions}
    everything = {p: first[p] + aborted[p] + other[p] + last[p] for p in partitions}
    highs = end_offsets(b.bootstrap, topic_name, partitions, READ_UNCOMMITTED)
    assert end_offsets(b.bootstrap, topic_name, partitions, READ_COMMITTED) == highs
    assert values(read_all(b.bootstrap, topic_name, partitions, READ_COMMITTED)) == committed
    uncommitted = read_all(b.bootstrap, topic_name, partitions, READ_UNCOMMITTED)
    assert values(uncommitted) == everything
    for p in partitions:
        # Four markers per partition (commit, commit, abort, commit), none delivered.
        markers = control_offsets(b.bootstrap, topic_name, p)
        assert len(markers) == 4
        delivered = {r.offset for r in uncommitted[p]}
        assert not delivered & markers
        assert delivered | markers == set(range(highs[p]))
    # kafka-python's read_committed consumer filters the aborted records the same way.
    count = sum(len(v) for v in committed.values())
    assert read_committed(consume_kafka_python, b.bootstrap, topic_name, partitions,
                          count) == committed


def test_aiokafka_transactions(txn_broker, topic_name):
    """aiokafka's transactional producer and read_committed consumer."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    b = txn_broker
    create_topic(b.bootstrap, topic_name, partitions=1)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=b.bootstrap,
                                    transactional_id=unique("aio"), linger_ms=5)
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(5):
                    await producer.send(topic_name, f"c{i}".encode(), partition=0)
            await producer.begin_transaction()
            for i in range(5):
                await producer.send(topic_name, f"a{i}".encode(), partition=0)
            await producer.flush()
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send(topic_name, b"d0", partition=0)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(run(), 60))
    got = read_committed(consume_aiokafka, b.bootstrap, topic_name, [0], 6)
    assert got == {0: [b"c0", b"c1", b"c2", b"c3", b"c4", b"d0"]}
    assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)) == \
        {0: [b"c0", b"c1", b"c2", b"c3", b"c4", b"d0"]}
    assert len(values(read_all(b.bootstrap, topic_name, [0], READ_UNCOMMITTED))[0]) == 11


# -------------------------------------------------------- consume-transform-produce

class ConfluentGroupConsumer:
    client = "confluent"

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.topic = topic
        self.consumer = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100, **NO_REBOOTSTRAP})
        self.consumer.subscribe([topic])

    def poll(self, n: int) -> list[tuple[int, int, bytes]]:
        """(partition, offset, value) of up to `n` records, once there are some."""
        out = []

        def some():
            for m in self.consumer.consume(num_messages=n, timeout=0.2):
                assert not m.error(), m.error()
                out.append((m.partition(), m.offset(), m.value()))
            return out

        return wait_for(some, 30, "records for the group's consumer", interval=0)

    def seek(self, offsets: dict[int, int]):
        for p, o in offsets.items():
            self.consumer.seek(TopicPartition(self.topic, p, o))

    @property
    def group_consumer(self):
        return self.consumer

    def close(self):
        self.consumer.close()


class KafkaPythonGroupConsumer:
    client = "kafka-python"

    def __init__(self, bootstrap: str, group: str, topic: str):
        from kafka import KafkaConsumer
        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                      enable_auto_commit=False, auto_offset_reset="earliest",
                                      isolation_level="read_committed", fetch_max_wait_ms=100,
                                      max_poll_records=10, request_timeout_ms=10_000)
        self.consumer.subscribe([topic])

    def poll(self, n: int) -> list[tuple[int, int, bytes]]:
        """(partition, offset, value) of up to `n` records, once there are some."""
        out = []

        def some():
            for _, msgs in self.consumer.poll(timeout_ms=200, max_records=n).items():
                out.extend((m.partition, m.offset, m.value) for m in msgs)
            return out

        return wait_for(some, 30, "records for the group's consumer", interval=0)

    def seek(self, offsets: dict[int, int]):
        from kafka import TopicPartition as KTP
        for p, o in offsets.items():
            self.consumer.seek(KTP(self.topic, p), o)

    @property
    def group_consumer(self):
        return self.consumer

    def close(self):
        self.consumer.close()


GROUP_CONSUMERS = {"confluent": ConfluentGroupConsumer, "kafka-python": KafkaPythonGroupConsumer}


def committed_offsets(bootstrap: str, group: str, topic: str, partitions, *,
                      require_stable: bool = False) -> dict[int, int]:
    """The group's committed offsets by OffsetFetch (v7): partition -> offset (-1 where nothing
    is committed), or the error code's negative where the partition has one. Without
    require_stable the applied offsets come back; with it (KIP-447), a partition whose offsets
    wait in an open transaction is UNSTABLE_OFFSET_COMMIT."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    request_class = protocol.request_class(ApiKey.OFFSET_FETCH)
    request = request_class(group_id=group, require_stable=require_stable,
                            topics=[request_class.OffsetFetchRequestTopic(
                                name=topic, partition_indexes=list(partitions))])
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.OFFSET_FETCH, 7, request)
    assert response.error_code == 0, response
    return {p.partition_index: -p.error_code if p.error_code else p.committed_offset
            for p in response.topics[0].partitions}


# The requests of a transaction whose answers `lost_answers` loses: handled by the broker, the
# connection closed before the answer, so the client sends them again.
TRANSACTION_APIS = ("Produce", "AddPartitionsToTxn", "AddOffsetsToTxn", "TxnOffsetCommit",
                    "EndTxn")


@pytest.mark.parametrize("lost_answers", [False, True], ids=["clean", "lost-answers"])
@pytest.mark.parametrize("client", list(PRODUCERS))
def test_consume_transform_produce_exactly_once(txn_broker, topic_name, client, lost_answers):
    """Read a topic in a group, write transformed records and the group's offsets in one
    transaction: the offsets move only when the transaction commits; an aborted transaction
    leaves them and its output invisible; at the end the output is the input transformed, each
    record once, in order per partition. With lost answers, one answer in three to each
    transactional request of the producer is lost after the broker handled it: the retries
    change nothing."""
    b = txn_broker
    partitions = [0, 1]
    source, sink = topic_name + "-in", topic_name + "-out"
    create_topic(b.bootstrap, source, partitions=2)
    create_topic(b.bootstrap, sink, partitions=2)
    inputs = {p: [f"r-{p}-{i}".encode() for i in range(40)] for p in partitions}
    produce_confluent(b.bootstrap, source, [r for p, vs in inputs.items()
                                            for r in value_records(vs, p)])

    group = unique(f"ctp-{client}")
    consumer = GROUP_CONSUMERS[client](b.bootstrap, group, source)
    client_id = unique("ctp-producer")
    rules = []
    if lost_answers:
        rules = [b.controls.disconnect("after", api=api, client_id=client_id, every=3, count=6)
                 for api in TRANSACTION_APIS]
    producer = PRODUCERS[client](b.bootstrap, unique(f"ctp-{client}"), client_id=client_id)
    transactions = aborted = 0
    try:
        producer.init()
        done = 0
        while done < sum(len(v) for v in inputs.values()):
            records = consumer.poll(10)
            assert records, "the consumer got nothing"
            before = committed_offsets(b.bootstrap, group, source, partitions)
            producer.begin()
            for p, _, value in records:
                producer.send(sink, p, value.upper())
            positions = {}
            for p, offset, _ in records:
                positions[(source, p)] = max(positions.get((source, p), 0), offset + 1)
            producer.send_offsets(positions, consumer.group_consumer)
            producer.flush()
            # Sent, not committed: the group's offsets have not moved, and a consumer that
            # asks for stable offsets is told to wait.
            assert committed_offsets(b.bootstrap, group, source, partitions) == before
            unstable = committed_offsets(b.bootstrap, group, source, partitions,
                                         require_stable=True)
            for (_, p) in positions:
                assert unstable[p] == -ErrorCode.UNSTABLE_OFFSET_COMMIT
            transactions += 1
            if transactions % 3 == 2:
                producer.abort()
                aborted += 1
                assert committed_offsets(b.bootstrap, group, source, partitions) == before
                # Start again from what the group committed, as an application would.
                consumer.seek({p: max(o, 0) for p, o in before.items()})
                continue
            producer.commit()
            after = committed_offsets(b.bootstrap, group, source, partitions)
            for (_, p), o in positions.items():
                assert after[p] == o
            done += len(records)
    finally:
        producer.close()
        consumer.close()
    assert aborted >= 2
    for rule in rules:
        assert b.controls.rule(rule["id"])["applied"] >= 2, rule
    assert committed_offsets(b.bootstrap, group, source, partitions) == \
        {p: len(v) for p, v in inputs.items()}
    assert values(read_all(b.bootstrap, sink, partitions, READ_COMMITTED)) == \
        {p: [v.upper() for v in vs] for p, vs in inputs.items()}
    # The aborted output is in the log, for read_uncommitted consumers only.
    uncommitted = values(read_all(b.bootstrap, sink, partitions, READ_UNCOMMITTED))
    assert sum(len(v) for v in uncommitted.values()) > sum(len(v) for v in inputs.values())


@pytest.mark.timeout(240)
def test_interleaved_transactions_across_segments_and_a_restart(topic_name):
    """Four transactional producers (three librdkafka, one kafka-python) and an idempotent one
    write one partition, their transactions interleaved and committed or aborted as a seeded
    random sequence decides, over small segments (so aborted transactions and open ones span
    segment files) and a SIGKILL of the broker halfway (producers keep their transactions open
    across it). read_committed consumers of three clients, fetching a little at a time, get
    exactly the committed records in log order; read_uncommitted gets everything."""
    rng = random.Random(20240)
    b = BrokerProcess(overrides=TXN_OVERRIDES).start()
    producers = []
    try:
        create_topic(b.bootstrap, topic_name, partitions=1,
                     configs={"segment.bytes": "4096", "retention.ms": "-1"})
        producers = [ConfluentTxnProducer(b.bootstrap, unique(f"mix-{i}")) for i in range(3)]
        producers.append(KafkaPythonTxnProducer(b.bootstrap, unique("mix-kp")))
        plain = confluent_kafka.Producer({"bootstrap.servers": b.bootstrap,
                                          "enable.idempotence": True, "linger.ms": 0,
                                          **NO_REBOOTSTRAP})
        for p in producers:
            p.init()
        outcome: dict[bytes, str | bool] = {}     # value -> its transaction, then True/False
        open_txn: list[str | None] = [None] * len(producers)
        n = 0

        def settle(i: int, committed: bool):
            for v, t in outcome.items():
                if t == open_txn[i]:
                    outcome[v] = committed
            open_txn[i] = None

        for step in range(240):
            if step == 120:
                b.restart(kill=True)
            i = rng.randrange(len(producers) + 1)
            if i == len(producers):
                n += 1
                value = b"plain-%d" % n
                plain.produce(topic_name, value=value, partition=0)
                assert plain.flush(30) == 0
                outcome[value] = True
                continue
            p = producers[i]
            if open_txn[i] is None:
                p.begin()
                open_txn[i] = f"t{step}-{i}"
            action = rng.random()
            if action < 0.6:
                for _ in range(rng.randrange(1, 4)):
                    n += 1
                    value = f"{open_txn[i]}-{n}".encode()
                    p.send(topic_name, 0, value)
                    outcome[value] = open_txn[i]
                p.flush()
            elif action < 0.8:
                p.commit()
                settle(i, True)
            else:
                p.abort()
                settle(i, False)
        for i, p in enumerate(producers):
            if open_txn[i] is not None:
                p.commit()
                settle(i, True)
    finally:
        for p in producers:
            p.close()

    try:
        everything = values(read_all(b.bootstrap, topic_name, [0], READ_UNCOMMITTED))[0]
        assert sorted(everything) == sorted(outcome)          # each record once
        committed = [v for v in everything if outcome[v] is True]
        assert 0 < len(committed) < len(everything)
        assert len(segment_base_offsets(b.data_dir, topic_name)) > 3
        assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED))[0] == committed
        for consume in (consume_kafka_python, consume_aiokafka):
            assert read_committed(consume, b.bootstrap, topic_name, [0], len(committed),
                                  fetch_bytes=512)[0] == committed
    finally:
        b.close()


def test_compaction_keeps_committed_values_over_aborted_ones(topic_name):
    """On a compacted topic an aborted transaction's record never stands for its key: after the
    cleaner went over every closed segment, each key keeps its last committed value, the aborted
    records are gone even for read_uncommitted, and read_committed consumers agree."""
    b = BrokerProcess(overrides={**TXN_OVERRIDES, "log.cleaner.backoff.ms": "100"}).start()
    try:
        create_topic(b.bootstrap, topic_name, partitions=1, configs={
            "cleanup.policy": "compact", "segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01", "retention.ms": "-1"})
        producer = ConfluentTxnProducer(b.bootstrap, unique("compacted"))
        producer.init()
        latest: dict[bytes, bytes] = {}

        def transaction(pairs, commit: bool):
            producer.begin()
            for key, value in pairs:
                producer.send(topic_name, 0, value, key=key)
            producer.flush()
            if commit:
                producer.commit()
                latest.update(pairs)
            else:
                producer.abort()

        transaction([(b"k1", b"one"), (b"k2", b"one")], True)
        transaction([(b"k1", b"ABORTED"), (b"k3", b"ABORTED")], False)
        transaction([(b"k2", b"two")], True)
        for i in range(60):     # enough to fill several 1 KiB segments
            transaction([(b"f%d" % (i % 5), b"%d-" % i + b"x" * 50)], i % 3 != 0)
        producer.close()
        active = segment_base_offsets(b.data_dir, topic_name)[-1]
        wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) >= active, 30,
                   "the cleaner to clean every closed segment")
        committed = read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)[0]
        everything = read_all(b.bootstrap, topic_name, [0], READ_UNCOMMITTED)[0]
        kept: dict[bytes, bytes] = {}
        for r in committed:
            kept[r.key] = r.value
        assert kept == latest
        assert b"ABORTED" not in [r.value for r in everything]
        assert b"k3" not in [r.key for r in everything]
        # Below the active segment each key is there once.
        cleaned = [r.key for r in committed if r.offset < active]
        assert len(cleaned) == len(set(cleaned))
        assert read_committed(consume_kafka_python, b.bootstrap, topic_name, [0],
                              len(committed))[0] == [r.value for r in committed]
    finally:
        b.close()


def test_compaction_removes_markers_of_emptied_transactions(topic_name):
    """Once compaction has removed every record of a transaction, its marker goes too (after
    `delete.retention.ms`, here 0): the log keeps no control batch for it and no aborted
    transaction entry, and read_committed consumers (confluent-kafka, kafka-python) still read
    exactly the committed values. The marker of each producer's last transaction stays."""
    b = BrokerProcess(overrides=TXN_OVERRIDES).start()
    try:
        create_topic(b.bootstrap, topic_name, partitions=1, configs={
            "cleanup.policy": "compact", "segment.bytes": "1024", "delete.retention.ms": "0",
            "min.cleanable.dirty.ratio": "0.01", "retention.ms": "-1"})
        latest: dict[bytes, bytes] = {}
        for name in ("one", "two"):
            producer = ConfluentTxnProducer(b.bootstrap, unique(f"markers-{name}"))
            producer.init()
            for i in range(30):     # the same five keys again and again: most transactions empty
                producer.begin()
                key, value = b"k%d" % (i % 5), b"%s-%d-" % (name.encode(), i) + b"x" * 40
                producer.send(topic_name, 0, value, key=key)
                producer.flush()
                if i % 4 == 3:
                    producer.abort()
                else:
                    producer.commit()
                    latest[key] = value
            producer.close()
        before = control_offsets(b.bootstrap, topic_name, 0)
        assert len(before) == 60
        for _ in range(3):      # keep, stamp with the horizon, remove
            b.controls.compaction()
        after = control_offsets(b.bootstrap, topic_name, 0)
        active = segment_base_offsets(b.data_dir, topic_name)[-1]
        assert len([o for o in after if o < active]) <= 2 + len(latest), sorted(after)
        assert len(after) < len(before) // 2
        committed = read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)[0]
        kept: dict[bytes, bytes] = {}
        for r in committed:
            kept[r.key] = r.value
        assert kept == latest
        assert read_committed(consume_kafka_python, b.bootstrap, topic_name, [0],
                              len(committed))[0] == [r.value for r in committed]
    finally:
        b.close()


# -------------------------------------------------------------------------- fencing

def test_confluent_second_producer_fences_the_first(txn_broker, topic_name):
    """InitProducerId with the same transactional id fences the first producer: its open
    transaction is aborted and its next call fails with a fatal fenced error."""
    b = txn_broker
    create_topic(b.bootstrap, topic_name)
    tid = unique("fence")
    first = ConfluentTxnProducer(b.bootstrap, tid)
    first.init()
    first.begin()
    first.send(topic_name, 0, b"zombie")
    first.flush()
    second = ConfluentTxnProducer(b.bootstrap, tid)
    second.init()
    second.begin()
    second.send(topic_name, 0, b"winner")
    second.commit()
    with pytest.raises(KafkaException) as raised:
        first.commit()
    error = raised.value.args[0]
    assert error.code() in (confluent_kafka.KafkaError._FENCED,
                            confluent_kafka.KafkaError.PRODUCER_FENCED), error
    assert error.fatal(), error
    assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)) == {0: [b"winner"]}
    assert values(read_all(b.bootstrap, topic_name, [0], READ_UNCOMMITTED)) == \
        {0: [b"zombie", b"winner"]}
    state = txn_state(b.bootstrap, tid)
    assert state["TransactionState"] == "CompleteCommit"
    # Epoch 0 was fenced by bumping it to 1 for the abort; the second producer's retried
    # InitProducerId then got epoch 2, as in Kafka.
    assert state["ProducerEpoch"] == "2"


def test_kafka_python_second_producer_fences_the_first(txn_broker, topic_name):
    from kafka import errors as kerrors
    b = txn_broker
    create_topic(b.bootstrap, topic_name)
    tid = unique("fence-kp")
    first = KafkaPythonTxnProducer(b.bootstrap, tid)
    second = KafkaPythonTxnProducer(b.bootstrap, tid)
    try:
        first.init()
        first.begin()
        first.send(topic_name, 0, b"zombie")
        first.flush()
        second.init()
        second.begin()
        second.send(topic_name, 0, b"winner")
        second.commit()
        with pytest.raises((kerrors.ProducerFencedError, kerrors.InvalidProducerEpochError)):
            first.commit()
    finally:
        second.close()
        try:
            first.close()
        except Exception:
            pass    # a fenced producer may refuse to close cleanly
    assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)) == {0: [b"winner"]}


def test_init_producer_id_epoch_bumps_over_the_wire(txn_broker):
    """KIP-360 on the wire: a producer naming its current producer id and epoch gets the next
    epoch; the same request sent again (its answer lost) gets that epoch again instead of being
    fenced; a new producer (no id) bumps the epoch and fences the older one for good."""
    from trioka.wire import protocol
    from trioka.wire.api_keys import ApiKey
    tid = unique("kip360")
    request_class = protocol.request_class(ApiKey.INIT_PRODUCER_ID)

    def init(conn, pid, epoch):
        answer = conn.request(ApiKey.INIT_PRODUCER_ID, 4, request_class(
            transactional_id=tid, transaction_timeout_ms=60_000, producer_id=pid,
            producer_epoch=epoch))
        return answer.error_code, answer.producer_id, answer.producer_epoch

    with RawConnection(txn_broker.bootstrap) as conn:
        code, pid, epoch = init(conn, -1, -1)
        assert (code, epoch) == (0, 0)
        assert init(conn, pid, 0) == (0, pid, 1)        # bump by the producer itself
        assert init(conn, pid, 0) == (0, pid, 1)        # its retry: the same answer
        assert init(conn, pid, 1) == (0, pid, 2)
        assert init(conn, -1, -1) == (0, pid, 3)        # a new producer fences epoch 2
        assert init(conn, pid, 2)[0] == ErrorCode.PRODUCER_FENCED
        assert init(conn, pid, 1)[0] == ErrorCode.PRODUCER_FENCED
        assert init(conn, pid, 3) == (0, pid, 4)
    assert txn_state(txn_broker.bootstrap, tid)["ProducerEpoch"] == "4"


# ------------------------------------------------- a producer that crashed mid-transaction

CRASHING_PRODUCER = r"""
import json, signal, sys
import confluent_kafka
bootstrap, topic, tid = sys.argv[1:4]
p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                              "transaction.timeout.ms": 3000, "linger.ms": 5})
p.init_transactions(30)
p.begin_transaction()
for i in range(20):
    p.produce(topic, value=b"lost-%d" % i, partition=0)
assert p.flush(30) == 0
print(json.dumps({"open": tid}), flush=True)
signal.pause()      # until the test kills this process
"""


def test_transaction_of_crashed_producer_is_aborted_after_its_timeout(txn_broker, topic_name):
    """A producer SIGKILLed with a transaction open holds the last stable offset back until the
    coordinator aborts the transaction after transaction.timeout.ms (3 s); then read_committed
    consumers get the later committed data and never the crashed producer's records."""
    b = txn_broker
    create_topic(b.bootstrap, topic_name)
    tid = unique("crashed")
    producer = ClientProcess(CRASHING_PRODUCER, b.bootstrap, topic_name, tid)
    try:
        wait_for(lambda: producer.alive() and producer.latest("open"), 30,
                 "the producer's open transaction")
    finally:
        producer.kill()
    assert end_offsets(b.bootstrap, topic_name, [0], READ_UNCOMMITTED) == {0: 20}
    assert txn_state(b.bootstrap, tid)["TransactionState"] == "Ongoing"
    later = ConfluentTxnProducer(b.bootstrap, unique("after-crash"))
    later.init()
    later.begin()
    for i in range(5):
        later.send(topic_name, 0, b"later-%d" % i)
    later.commit()
    # The crashed producer's transaction starts at 0: the last stable offset is stuck there.
    assert end_offsets(b.bootstrap, topic_name, [0], READ_COMMITTED) == {0: 0}
    assert open_transactions_in(b.bootstrap, topic_name, [0])[0][0][1] == 0
    # Aborted by the coordinator after 3 s (checked every 0.5 s): the LSO reaches the end.
    wait_for(lambda: end_offsets(b.bootstrap, topic_name, [0], READ_COMMITTED) ==
               end_offsets(b.bootstrap, topic_name, [0], READ_UNCOMMITTED), 20,
               "the timed-out transaction to be aborted")
    state = txn_state(b.bootstrap, tid)
    assert state["TransactionState"] == "CompleteAbort"
    assert state["ProducerEpoch"] == "1"       # bumped: the zombie is fenced
    assert open_transactions_in(b.bootstrap, topic_name, [0]) == {0: []}
    assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)) == \
        {0: [b"later-%d" % i for i in range(5)]}
    got = consume_confluent(b.bootstrap, topic_name, [0], 5, timeout=15,
                            config={"isolation.level": "read_committed"})
    assert [r.value for r in got] == [b"later-%d" % i for i in range(5)]


def test_producer_outliving_its_transaction_timeout_is_fenced(txn_broker, topic_name):
    """A live producer whose transaction stays open past transaction.timeout.ms (2 s) finds it
    aborted by the coordinator (its epoch bumped): committing fails with librdkafka's fatal
    fenced error, and what it wrote stays invisible to read_committed consumers."""
    b = txn_broker
    create_topic(b.bootstrap, topic_name)
    tid = unique("slow")
    producer = ConfluentTxnProducer(b.bootstrap, tid, **{"transaction.timeout.ms": 2000})
    producer.init()
    producer.begin()
    producer.send(topic_name, 0, b"too late")
    producer.flush()
    wait_for(lambda: txn_state(b.bootstrap, tid)["TransactionState"] == "CompleteAbort", 20,
               "the coordinator to abort the transaction")
    with pytest.raises(KafkaException) as raised:
        producer.commit()
    error = raised.value.args[0]
    assert error.code() == confluent_kafka.KafkaError._FENCED, error
    assert error.fatal(), error
    assert values(read_all(b.bootstrap, topic_name, [0], READ_COMMITTED)) == {0: []}
    assert values(read_all(b.bootstrap, topic_name, [0], READ_UNCOMMITTED)) == {0: [b"too late"]}
    assert end_offsets(b.bootstrap, topic_name, [0], READ_COMMITTED) == {0: 2}


# ------------------------------------------------------------- broker SIGKILL

@pytest.mark.timeout(240)
def test_broker_sigkill_in_the_middle_of_transactions(topic_name):
    """SIGKILL the broker with transactions committed, aborted and open, and an idempotent
    producer mid-stream. After the restart: committed data visible, aborted hidden, the open
    transaction of a producer that went on is committed by it, the one of a producer that never
    came back is aborted at its timeout, nothing is left hanging, and the idempotent stream has no
    duplicate."""
    b = BrokerProcess(overrides=TXN_OVERRIDES).start()
    try:
        partitions = [0, 1]
        create_topic(b.bootstrap, topic_name, partitions=2)
        stream_topic = topic_name + "-stream"
        create_topic(b.bootstrap, stream_topic, partitions=1)
        tids = {name: unique(f"kill-{name}") for name in ("a", "b", "c")}
        a = ConfluentTxnProducer(b.bootstrap, tids["a"], **{"message.timeout.ms": 60_000,
                                                            "transaction.timeout.ms": 60_000})
        bb = ConfluentTxnProducer(b.bootstrap, tids["b"])
        c = ConfluentTxnProducer(b.bootstrap, tids["c"], **{"transaction.timeout.ms": 4000})
        for p in (a, bb, c):
            p.init()

        def write(producer, tag):
            producer.begin()
            for part in partitions:
                for i in range(5):
                    producer.send(topic_name, part, f"{tag}-{part}-{i}".encode())
            producer.flush()

        write(a, "a1")
        a.commit()
        write(bb, "b1")
        bb.abort()
        write(a, "a2")         # open at the kill; A carries on afterwards
        write(c, "c1")         # open at the kill; C never comes back

        # An idempotent producer mid-stream.
        stream = confluent_kafka.Producer({
            "bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 2,
            "batch.num.messages": 50, "message.timeout.ms": 60_000,
            "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500})
        reports: dict[bytes, int] = {}

        def on_delivery(err, msg):
            assert err is None, err
            reports[msg.value()] = msg.offset()

        # A's and C's transactions are open: the last stable offset waits at A2's first record
        # (a1 at 0-4, its COMMIT at 5, b1 at 6-10, its ABORT at 11, a2 from 12).
        assert end_offsets(b.bootstrap, topic_name, partitions, READ_COMMITTED) == \
            {p: 12 for p in partitions}

        sent = [b"s-%05d" % i for i in range(6000)]
        for i, v in enumerate(sent):
            stream.produce(stream_topic, value=v, partition=0, on_delivery=on_delivery)
            if i == 3000:
                def acknowledged():
                    stream.poll(0.05)
                    return len(reports) >= 1000
                wait_for(acknowledged, 30, "the first acknowledgements", interval=0)
                b.restart(kill=True)
        wait_for(lambda: stream.flush(1) == 0, 60, "the idempotent stream to be delivered",
                 interval=0)
        assert [reports[v] for v in sent] == list(range(len(sent)))

        # Recovered from the log: the open transactions still hold the last stable offset.
        assert end_offsets(b.bootstrap, topic_name, partitions, READ_COMMITTED) == \
            {p: 12 for p in partitions}
        # DescribeProducers: A's transaction from 12; C's from 17 unless its 4 s ran out.
        for p, txns in open_transactions_in(b.bootstrap, topic_name, partitions).items():
            firsts = sorted(first for _, first in txns)
            assert firsts in ([12], [12, 17]), (p, firsts)
        a.commit()             # the same producer object finishes its transaction
        write(a, "a3")
        a.commit()
        expected = {p: [f"{t}-{p}-{i}".encode() for t in ("a1", "a2", "a3") for i in range(5)]
                    for p in partitions}
        # C's transaction times out (4 s) and is aborted: nothing is left open.
        wait_for(lambda: txn_list(b.bootstrap).get(tids["c"]) == "CompleteAbort", 30,
                   "the abandoned transaction to be aborted")
        states = txn_list(b.bootstrap)
        assert states[tids["a"]] == "CompleteCommit"
        assert states[tids["b"]] == "CompleteAbort"
        assert "Ongoing" not in states.values()
        assert open_transactions_in(b.bootstrap, topic_name, partitions) == {0: [], 1: []}
        assert end_offsets(b.bootstrap, topic_name, partitions, READ_COMMITTED) == \
            end_offsets(b.bootstrap, topic_name, partitions, READ_UNCOMMITTED)
        assert values(read_all(b.bootstrap, topic_name, partitions, READ_COMMITTED)) == expected
        assert values(read_all(b.bootstrap, stream_topic, [0], READ_UNCOMMITTED)) == {0: sent}
        a.close()
        bb.close()
    finally:
        b.close()


# ------------------------------------------------------------------ the copier

COPIER = r"""
import json, sys, time
import confluent_kafka
from confluent_kafka import KafkaException, TopicPartition

bootstrap, source, sink, group, tid, gate_path = sys.argv[1:7]
BATCH = 200
# metadata.recovery.strategy=none: when every broker is down (our single broker restarting),
# librdkafka 2.10+ otherwise re-bootstraps and decommissions the broker it knew, and
# send_offsets_to_transaction() can then wait forever for that broker as group coordinator
# (librdkafka issue #5511). Without re-bootstrap the client reconnects to the same broker.
common = {"bootstrap.servers": bootstrap, "metadata.recovery.strategy": "none",
          "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}
# A static member (KIP-345): a copier started after one was killed takes over its membership
# and assignment at once instead of waiting for the dead one's session to time out.
consumer = confluent_kafka.Consumer({
    **common, "group.id": group, "group.instance.id": tid + "-member",
    "isolation.level": "read_committed", "enable.auto.commit": False,
    "auto.offset.reset": "earliest", "session.timeout.ms": 10000, "fetch.wait.max.ms": 100})
producer = confluent_kafka.Producer({**common, "transactional.id": tid,
                                     "transaction.timeout.ms": 30000, "linger.ms": 5})
producer.init_transactions(60)
consumer.subscribe([source])
copied = 0


def say(**event):
    print(json.dumps(event), flush=True)


def gate():
    # "<limit> hold": once `limit` records are committed, copy one more batch in a
    # transaction with its offsets, flush it, say "holding", and commit it only when the
    # limit is raised.
    try:
        with open(gate_path) as f:
            limit, mode = f.read().split()
        return int(limit), mode
    except (OSError, ValueError):
        return None, ""


def retrying(call):
    # Retriable errors (the broker is restarting) are retried; others go to the caller.
    for attempt in range(240):
        try:
            return call()
        except KafkaException as e:
            if not e.args[0].retriable():
                raise
            time.sleep(0.25)
    raise RuntimeError("still failing")


def rewind():
    # Back to what the group committed: the aborted transaction's input is read again.
    assignment = consumer.assignment()
    for tp in retrying(lambda: consumer.committed(assignment, timeout=10)):
        consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))


while True:
    limit, mode = gate()
    msgs = [m for m in consumer.consume(num_messages=BATCH, timeout=0.5) if not m.error()]
    if not msgs:
        continue
    try:
        producer.begin_transaction()
        for m in msgs:
            while True:
                try:
                    producer.produce(sink, key=m.key(), value=m.value(), partition=m.partition())
                    break
                except BufferError:
                    producer.poll(0.05)
        positions = {}
        for m in msgs:
            positions[m.partition()] = m.offset() + 1
        offsets = [TopicPartition(source, p, o) for p, o in positions.items()]
        retrying(lambda: producer.send_offsets_to_transaction(
            offsets, consumer.consumer_group_metadata(), 30))
        if limit is not None and copied >= limit and mode == "hold":
            assert producer.flush(30) == 0
            say(holding=copied)
            while gate() == (limit, mode):
                time.sleep(0.05)
        retrying(lambda: producer.commit_transaction(30))
    except KafkaException as e:
        if not e.args[0].txn_requires_abort():
            raise
        say(aborted=str(e))
        retrying(lambda: producer.abort_transaction(30))
        rewind()
        continue
    copied += len(msgs)
    say(copied=copied)
"""


def wait_holding(copier: ClientProcess, at_least: int, timeout: float) -> int:
    """Wait until the copier holds a transaction open after `at_least` records; how many."""
    return wait_for(lambda: copier.alive() and copier.latest("holding", -1) >= at_least and
                    copier.latest("holding"), timeout,
                    f"the copier to hold a transaction after {at_least} records")


@pytest.mark.timeout(360)
def test_slow_copier_exactly_once_across_broker_and_client_kills(topic_name, tmp_path):
    """A copier reads topic A (3 partitions, 20k records) read_committed in a group and writes
    topic B in transactions with send_offsets_to_transaction. The broker is SIGKILLed while the
    copier has a transaction open (records and offsets written, not committed), and the copier
    commits it after the restart; later the copier itself is SIGKILLed with a transaction open,
    and a new one starts with the same transactional id and group (the old transaction is
    aborted, its input read again). At the end B is A: every record once, in order per
    partition."""
    b = BrokerProcess(overrides=TXN_OVERRIDES).start()
    copiers = []
    try:
        source, sink = topic_name + "-a", topic_name + "-b"
        create_topic(b.bootstrap, source, partitions=3)
        create_topic(b.bootstrap, sink, partitions=3)
        total = 20_000
        produce_confluent(b.bootstrap, source, [Rec(i % 3, None, b"k%05d" % i, b"v%05d" % i)
                                                for i in range(total)], idempotent=True)
        gate = tmp_path / "gate"
        gate.write_text("5000 hold")
        group = unique("copier-group")
        args = (b.bootstrap, source, sink, group, unique("copier"), str(gate))

        copiers.append(ClientProcess(COPIER, *args))
        wait_holding(copiers[-1], 5000, 60)
        b.restart(kill=True)
        gate.write_text("12000 hold")
        assert wait_holding(copiers[-1], 12000, 90) < total
        copiers[-1].kill()
        gate.write_text("none")
        copiers.append(ClientProcess(COPIER, *args))
        ends = end_offsets(b.bootstrap, source, [0, 1, 2], READ_UNCOMMITTED)
        assert sum(ends.values()) == total
        wait_for(lambda: copiers[-1].alive() and
                   committed_offsets(b.bootstrap, group, source, [0, 1, 2]) == ends, 90,
                   "the copier to commit the end of A", interval=0.5)
        copiers[-1].kill()
        source_records = read_all(b.bootstrap, source, [0, 1, 2], READ_COMMITTED)
        sink_records = read_all(b.bootstrap, sink, [0, 1, 2], READ_COMMITTED)
        for p in range(3):
            want = [(r.key, r.value) for r in source_records[p]]
            got = [(r.key, r.value) for r in sink_records[p]]
            assert len(want) == ends[p]
            assert got == want, (p, len(got), len(want))
        assert open_transactions_in(b.bootstrap, sink, [0, 1, 2]) == {0: [], 1: [], 2: []}
        # The killed copier's open transaction was aborted: its records are in B, unread by
        # read_committed consumers.
        uncommitted = read_all(b.bootstrap, sink, [0, 1, 2], READ_UNCOMMITTED)
        assert sum(len(v) for v in uncommitted.values()) > total
    finally:
        for c in copiers:
            c.kill()
        b.close()


# ------------------------------------------------------------------------ the CLI

def test_txn_cli_shows_ongoing_then_completed(txn_broker, topic_name):
    """`trioka txn list` and `trioka txn describe` while a transaction is open and after."""
    b = txn_broker
    create_topic(b.bootstrap, topic_name, partitions=2)
    tid = unique("cli")
    producer = ConfluentTxnProducer(b.bootstrap, tid, **{"transaction.timeout.ms": 45_000})
    producer.init()
    state = txn_state(b.bootstrap, tid)
    assert state["TransactionState"] == "Empty"
    assert state["CurrentTransactionStartTimeMs"] == "None"
    producer.begin()
    producer.send(topic_name, 0, b"x")
    producer.send(topic_name, 1, b"y")
    producer.flush()
    assert txn_list(b.bootstrap)[tid] == "Ongoing"
    state = txn_state(b.bootstrap, tid)
    assert state["TransactionState"] == "Ongoing"
    assert state["TransactionTimeoutMs"] == "45000"
    assert state["ProducerEpoch"] == "0"
    assert int(state["CurrentTransactionStartTimeMs"]) > 0
    assert int(state["TransactionDurationMs"]) >= 0
    assert sorted(state["TopicPartitions"].split(",")) == [f"{topic_name}-0", f"{topic_name}-1"]
    producer.commit()
    assert txn_list(b.bootstrap)[tid] == "CompleteCommit"
    state = txn_state(b.bootstrap, tid)
    assert state["TransactionState"] == "CompleteCommit"
    assert state["CurrentTransactionStartTimeMs"] == "None"
    assert state["TopicPartitions"] == ""
    assert values(read_all(b.bootstrap, topic_name, [0, 1], READ_COMMITTED)) == \
        {0: [b"x"], 1: [b"y"]}
