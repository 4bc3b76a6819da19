"""Log compaction (cleanup.policy=compact) seen by stock clients.

A compacted topic keeps at least the last record of every key. The broker's cleaner runs every
log.cleaner.backoff.ms (shortened here) over closed segments only; records keep their offsets, so
consumers reading from the beginning see increasing offsets with gaps. Tombstones (null values)
stay for delete.retention.ms after the cleaner first keeps them, then go. The checks read back over
the wire with confluent-kafka (librdkafka) and kafka-python.

The tests wait for the cleaner by polling the broker's `cleaner-offset-checkpoint` (Kafka's file,
in the data directory) until it covers what they produced, with a deadline; nothing sleeps.
"""

import os

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from clients import CONSUMERS, Rec, confluent_assigned, consume_confluent_to, produce_confluent
from harness import cleaner_checkpoint, create_topic, fetch_raw_batches, wait_for
from trioka.testing.process import BrokerProcess

FAST_CLEANER = {"log.cleaner.backoff.ms": "100"}
# How long a test waits for the cleaner (it runs every 100 ms here).
CLEANER_WAIT = 60


@pytest.fixture(scope="module")
def cleaner_broker():
    with BrokerProcess(overrides=FAST_CLEANER) as b:
        yield b.start()


def produce(bootstrap: str, topic: str, records, **config) -> list[tuple[int, bytes, bytes]]:
    """Produce (key, value) pairs in order to partition 0 with acks=all; (offset, key, value)
    of each, from the acks."""
    reports = produce_confluent(bootstrap, topic, [Rec(0, None, k, v) for k, v in records],
                                config={"linger.ms": 5, **config})
    return sorted((offset, key, value) for (_, offset), (key, value) in zip(reports, records))


def updates(keys: int, rounds: int, tombstoned: int, size: int = 40):
    """Every key `rounds` times; the first `tombstoned` keys end with a tombstone."""
    out = []
    for r in range(rounds):
        for i in range(keys):
            key = f"key-{i:04d}".encode()
            if r == rounds - 1 and i < tombstoned:
                out.append((key, None))
            else:
                out.append((key, f"r{r}-{i}-".encode().ljust(size, b"x")))
    return out


def fillers(count: int, tag: str):
    """Keys written once: they push the updates out of the active segment, which the cleaner
    never touches."""
    return [(f"filler-{tag}-{i}".encode(), b"f" * 200) for i in range(count)]


def latest(acked) -> list[tuple[int, bytes, bytes | None]]:
    """The records a fully compacted log holds: each key's last, at its offset."""
    last = {}
    for offset, key, value in acked:
        last[key] = (offset, key, value)
    return sorted(last.values())


def read_back(consume, bootstrap: str, topic: str, count: int):
    return [(r.offset, r.key, r.value) for r in consume(bootstrap, topic, [0], count)]


def fully_compacted(bootstrap: str, topic: str, last_offset: int | None = None):
    """(offset, key, value) of every record from the beginning of partition 0 through
    `last_offset` (default: the last one there), read with confluent-kafka: the count is not
    known beforehand, since compaction leaves gaps."""
    if last_offset is None:
        c = confluent_assigned(bootstrap)
        try:
            last_offset = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20)[1] - 1
        finally:
            c.close()
    [records] = consume_confluent_to(bootstrap, topic, {0: last_offset + 1}).values()
    return [(r.offset, r.key, r.value) for r in records]


def compacted_topic(b, name: str, **configs):
    create_topic(b.bootstrap, name, configs={
        "cleanup.policy": "compact", "segment.bytes": "4096",
        "min.cleanable.dirty.ratio": "0.01", **configs})


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_each_key_keeps_its_latest_value_at_its_offset(cleaner_broker, topic_name, consumer):
    b = cleaner_broker
    consume = CONSUMERS[consumer]
    compacted_topic(b, topic_name)
    acked = produce(b.bootstrap, topic_name,
                    [(b"written-once", b"first")] + updates(keys=40, rounds=15, tombstoned=8))
    last_update = acked[-1][0]
    acked += produce(b.bootstrap, topic_name, fillers(40, "a"))
    wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > last_update, CLEANER_WAIT,
             "the cleaner reaching the last update")

    expected = latest(acked)
    got = read_back(consume, b.bootstrap, topic_name, len(expected))
    assert got == expected
    offsets = [offset for offset, _, _ in got]
    assert offsets == sorted(set(offsets))                      # strictly increasing
    assert offsets[0] == 0 and offsets[1] > 1                  # with gaps
    # delete.retention.ms is a day: the deletes are still there, as tombstones.
    assert [key for _, key, value in got if value is None] == \
        [f"key-{i:04d}".encode() for i in range(8)]


def test_tombstones_go_after_delete_retention_ms(cleaner_broker, topic_name):
    b = cleaner_broker
    compacted_topic(b, topic_name, **{"delete.retention.ms": "1000"})
    acked = produce(b.bootstrap, topic_name, updates(keys=30, rounds=10, tombstoned=10))
    last_update = acked[-1][0]
    acked += produce(b.bootstrap, topic_name, fillers(40, "b"))
    wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > last_update, CLEANER_WAIT,
             "the cleaner reaching the last update")

    expected = [r for r in latest(acked) if r[2] is not None]
    tombstoned = {f"key-{i:04d}".encode() for i in range(10)}
    # The first pass keeps the tombstones (and stamps their delete horizon); a pass after the
    # horizon drops them, and with them every record of those keys.
    wait_for(lambda: fully_compacted(b.bootstrap, topic_name) == expected, CLEANER_WAIT,
             "the tombstones being removed")
    for consume in CONSUMERS.values():
        got = read_back(consume, b.bootstrap, topic_name, len(expected))
        assert got == expected
        assert not tombstoned & {key for _, key, _ in got}
        assert all(value is not None for _, _, value in got)


def test_an_idempotent_producers_last_batch_stays_as_an_empty_batch(cleaner_broker,
                                                                    topic_name):
    b = cleaner_broker
    compacted_topic(b, topic_name)
    first = produce(b.bootstrap, topic_name, updates(keys=20, rounds=5, tombstoned=0),
                    **{"enable.idempotence": True})
    # Another producer overwrites every key, so all of the first producer's records go; its
    # last batch must stay (empty) so its sequence numbers are still known.
    second = produce(b.bootstrap, topic_name,
                     [(k, b"second") for k in sorted({k for _, k, _ in first})])
    acked = first + second + produce(b.bootstrap, topic_name, fillers(40, "c"))
    wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > second[-1][0], CLEANER_WAIT,
             "the cleaner reaching the second producer's records")

    batches = fetch_raw_batches(b.bootstrap, topic_name, 0, 0)
    idempotent = [x for x in batches if x.producer_id >= 0]
    assert len(idempotent) == 1
    [empty] = idempotent
    assert empty.records_count == 0 and empty.records == []
    assert empty.last_offset == first[-1][0]             # it still ends at the last offset
    assert empty.base_sequence + empty.last_offset_delta == len(first) - 1
    expected = latest(acked)
    for consume in CONSUMERS.values():
        assert read_back(consume, b.bootstrap, topic_name, len(expected)) == expected


@pytest.mark.slow
def test_sigkill_during_compaction_loses_nothing(topic_name):
    # The cleaner reads 16 KiB a step at 256 KiB/s: its first pass takes seconds, so the kill
    # lands in the middle of it however fast or loaded the machine is.
    with BrokerProcess(overrides={**FAST_CLEANER, "log.cleaner.io.buffer.size": "16384",
                                  "log.cleaner.io.max.bytes.per.second": "262144"}) as b:
        b.start()
        # A big log written under the delete policy, then switched to compact: the first
        # cleaner pass has the whole of it to do.
        keys, rounds = 150, 40
        configs = {"cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": "16384"}
        create_topic(b.bootstrap, topic_name, configs=configs)
        acked = produce(b.bootstrap, topic_name, updates(keys, rounds, tombstoned=0, size=100),
                        **{"batch.num.messages": 50})
        last_update = acked[-1][0]
        acked += produce(b.bootstrap, topic_name, fillers(100, "d"))
        directory = os.path.join(b.data_dir, f"{topic_name}-0")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        resource = ConfigResource("topic", topic_name, incremental_configs=[ConfigEntry(
            "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(15)

        def swap_in_progress():
            try:
                return [n for n in os.listdir(directory) if n.endswith((".cleaned", ".swap"))]
            except FileNotFoundError:
                return []

        assert wait_for(swap_in_progress, CLEANER_WAIT, "a cleaner pass writing a segment")
        b.kill()
        assert swap_in_progress()                       # the crash left a pass half done
        b.start()
        assert swap_in_progress() == []                 # resolved on restart

        # Whatever the pass had done, every key's latest value is there at its offset, and
        # nothing else was invented or moved.
        produced = set(acked)
        end = acked[-1][0]
        c = fully_compacted(b.bootstrap, topic_name, end)
        assert set(c) <= produced
        assert {k: (o, v) for o, k, v in c} == {k: (o, v) for o, k, v in latest(acked)}

        # The cleaner finishes after the restart.
        wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > last_update,
                 CLEANER_WAIT, "the cleaner finishing after the restart")
        expected = latest(acked)
        for consume in CONSUMERS.values():
            assert read_back(consume, b.bootstrap, topic_name, len(expected)) == expected
