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
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from harness import (BrokerProcess, consume_confluent, consume_kafka_python, create_topic,
                     fetch_raw_batches)

FAST_CLEANER = {"log.cleaner.backoff.ms": "100"}


@pytest.fixture(scope="module")
def cleaner_broker():
    b = BrokerProcess(overrides=FAST_CLEANER).start()
    yield b
    b.close()


def wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not met within {timeout} s")


def cleaner_checkpoint(data_dir: str, topic: str, partition: int = 0) -> int:
    """The broker's first dirty offset for the partition (-1 when it has not cleaned it)."""
    try:
        with open(os.path.join(data_dir, "cleaner-offset-checkpoint")) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return -1
    for line in lines[2:]:
        fields = line.split()
        if len(fields) == 3 and fields[0] == topic and int(fields[1]) == partition:
            return int(fields[2])
    return -1


def produce(bootstrap: str, topic: str, records, **config) -> list[tuple[int, bytes, bytes]]:
    """Produce (key, value) pairs in order; (offset, key, value) of each, from the acks."""
    acked = []

    def on_delivery(err, msg):
        assert err is None, err
        acked.append((msg.offset(), msg.key(), msg.value()))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", **config})
    for key, value in records:
        p.produce(topic, key=key, value=value, partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    assert len(acked) == len(records)
    return sorted(acked)


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


def compacted_topic(b, name: str, **configs):
    create_topic(b.bootstrap, name, configs={
        "cleanup.policy": "compact", "segment.bytes": "4096",
        "min.cleanable.dirty.ratio": "0.01", **configs})


@pytest.mark.parametrize("consume", [consume_confluent, consume_kafka_python],
                         ids=["confluent", "kafka-python"])
def test_each_key_keeps_its_latest_value_at_its_offset(cleaner_broker, topic_name, consume):
    b = cleaner_broker
    compacted_topic(b, topic_name)
    acked = produce(b.bootstrap, topic_name,
                    [(b"written-once", b"first")] + updates(keys=40, rounds=15, tombstoned=8))
    last_update = acked[-1][0]
    acked += produce(b.bootstrap, topic_name, fillers(40, "a"))
    wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > last_update,
             what="the cleaner reaching the last update")

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
    wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > last_update,
             what="the cleaner reaching the last update")

    expected = [r for r in latest(acked) if r[2] is not None]
    tombstoned = {f"key-{i:04d}".encode() for i in range(10)}
    # The first pass keeps the tombstones (and stamps their delete horizon); a pass after the
    # horizon drops them, and with them every record of those keys.
    wait_for(lambda: read_back(consume_confluent, b.bootstrap, topic_name,
                               len(expected)) == expected,
             what="the tombstones being removed")
    for consume in (consume_confluent, consume_kafka_python):
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
    wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > second[-1][0],
             what="the cleaner reaching the second producer's records")

    batches = fetch_raw_batches(b.bootstrap, topic_name, 0, 0)
    idempotent = [x for x in batches if x.producer_id >= 0]
    assert len(idempotent) == 1
    [empty] = idempotent
    assert empty.records_count == 0 and empty.records == []
    assert empty.last_offset == first[-1][0]             # it still ends at the last offset
    assert empty.base_sequence + empty.last_offset_delta == len(first) - 1
    expected = latest(acked)
    for consume in (consume_confluent, consume_kafka_python):
        assert read_back(consume, b.bootstrap, topic_name, len(expected)) == expected


def test_sigkill_during_compaction_loses_nothing(topic_name):
    # The cleaner reads 16 KiB a step at 256 KiB/s: its first pass takes seconds, so the kill
    # lands in the middle of it however fast or loaded the machine is.
    b = BrokerProcess(overrides={**FAST_CLEANER, "log.cleaner.io.buffer.size": "16384",
                                 "log.cleaner.io.max.bytes.per.second": "262144"}).start()
    try:
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

        assert wait_for(swap_in_progress, what="a cleaner pass writing a segment")
        b.kill()
        assert swap_in_progress()                       # the crash left a pass half done
        b.start()
        assert swap_in_progress() == []                 # resolved on restart

        # Whatever the pass had done, every key's latest value is there at its offset, and
        # nothing else was invented or moved.
        produced = set(acked)
        end = acked[-1][0]
        c = read_until(b.bootstrap, topic_name, end)
        assert set(c) <= produced
        assert {k: (o, v) for o, k, v in c} == {k: (o, v) for o, k, v in latest(acked)}

        # The cleaner finishes after the restart.
        wait_for(lambda: cleaner_checkpoint(b.data_dir, topic_name) > last_update,
                 what="the cleaner finishing after the restart")
        expected = latest(acked)
        for consume in (consume_confluent, consume_kafka_python):
            assert read_back(consume, b.bootstrap, topic_name, len(expected)) == expected
    finally:
        b.close()


def read_until(bootstrap: str, topic: str, last_offset: int, timeout: float = 60.0):
    """Every record from the beginning through `last_offset`, with confluent-kafka."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-reader",
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while (not out or out[-1][0] < last_offset) and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    assert out and out[-1][0] == last_offset, "did not read to the end"
    return out
