"""Produce validation and decompression bombs against a real broker process.

A raw Produce of a batch whose header lies about its records is refused over the wire as Kafka
refuses it (INVALID_RECORD), and the stock producers (confluent-kafka, kafka-python) carry on
against the same broker; keyless records on a compacted topic fail one by one (KIP-467
record_errors: librdkafka fails just those with INVALID_RECORD and the rest of their batch with
_INVALID_DIFFERENT_RECORD, as its test 0011 expects); and a zstd bomb stored in a topic that is
then switched to cleanup.policy=compact makes that partition uncleanable, not the broker crash,
neither at once nor across a SIGKILL and restart.
"""

import struct
import time

import pytest
import zstandard
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from clients import (Rec, confluent_assigned, consume_confluent, consume_kafka_python,
                     produce_confluent, produce_kafka_python)
from harness import RawConnection, create_topic, wait_for
from trioka.log.batch import HEADER, crc32c
from trioka.log.records import encode_batch, encode_varint
from trioka.testing.process import BrokerProcess
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

TIMEOUT = 30
MiB = 1 << 20


def raw_produce(bootstrap: str, topic: str, batch: bytes, version: int = 9):
    """One batch to partition 0 with acks=-1; the partition's response as the broker sent it."""
    produce = protocol.request_class(ApiKey.PRODUCE)
    topic_data = produce.TopicProduceData
    request = produce(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        topic_data(name=topic, partition_data=[
            topic_data.PartitionProduceData(index=0, records=batch)])])
    with RawConnection(bootstrap) as conn:
        response = conn.request(ApiKey.PRODUCE, version, request)
    return response.responses[0].partition_responses[0]


def recount(batch: bytes, count: int) -> bytes:
    """The batch with its header claiming `count` records (and a CRC to match)."""
    lie = bytearray(batch)
    struct.pack_into(">i", lie, 23, count - 1)     # last_offset_delta
    struct.pack_into(">i", lie, 57, count)         # records_count
    struct.pack_into(">I", lie, 17, crc32c(memoryview(lie)[21:]))
    return bytes(lie)


def zstd_bomb(value_bytes: int = 1 << 30) -> bytes:
    """A zstd batch of one well-formed record whose value is `value_bytes` zeros: a few dozen
    KiB on the wire, built a MiB at a time."""
    head = b"\x00\x00\x00\x01" + encode_varint(value_bytes)    # attrs, ts, offset, null key
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [compressor.compress(encode_varint(len(head) + value_bytes + 1) + head)]
    zeros = bytes(MiB)
    parts += [compressor.compress(zeros) for _ in range(value_bytes // MiB)]
    parts.append(compressor.compress(b"\x00") + compressor.flush())   # + header count
    section = b"".join(parts)
    now = int(time.time() * 1000)
    out = bytearray(HEADER.size) + section
    HEADER.pack_into(out, 0, 0, len(out) - 12, -1, 2, 0, 4, 0, now, now, -1, -1, -1, 1)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def end_offset(bootstrap: str, topic: str) -> int:
    c = confluent_assigned(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20)[1]
    finally:
        c.close()


def test_a_lying_batch_is_refused_and_stock_producers_carry_on(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    honest = encode_batch([(None, b"")])            # 68 bytes, one record
    part = raw_produce(broker.bootstrap, topic_name, recount(honest, 1_000_000))
    assert part.error_code == KafkaError.INVALID_RECORD and part.base_offset == -1
    # The log end did not move. (A subtler lie, a record or two short, passes the header's
    # constant-time check: only a record walk finds it, see the strict broker below.)
    assert end_offset(broker.bootstrap, topic_name) == 0

    records = [Rec(0, i, b"k%d" % i, b"v%d" % i * 50) for i in range(20)]
    assert produce_confluent(broker.bootstrap, topic_name, records[:10], codec="zstd") == \
        [(0, i) for i in range(10)]
    assert produce_kafka_python(broker.bootstrap, topic_name, records[10:], codec="gzip") == \
        [(0, i) for i in range(10, 20)]
    got = consume_confluent(broker.bootstrap, topic_name, [0], 20)
    assert [(r.offset, r.key, r.value) for r in got] == \
        [(r.offset, r.key, r.value) for r in records]
    got = consume_kafka_python(broker.bootstrap, topic_name, [0], 20)
    assert [(r.offset, r.key) for r in got] == [(r.offset, r.key) for r in records]


def test_keyless_records_on_a_compacted_topic_fail_one_by_one(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, configs={"cleanup.policy": "compact"})
    # Over the wire: the whole batch is refused, record_errors name the keyless records.
    batch = encode_batch([(None if i % 3 == 0 else b"k%d" % i, b"v") for i in range(7)])
    part = raw_produce(broker.bootstrap, topic_name, batch)
    message = f"Compacted topic cannot accept message without key in topic partition " \
              f"{topic_name}-0."
    assert part.error_code == KafkaError.INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in part.record_errors] == \
        [(0, message), (3, message), (6, message)]
    assert part.error_message.startswith("One or more records have been rejected due to 3 "
                                         "record errors in total")

    # librdkafka's test 0011: 100 messages in one batch, every tenth without a key.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1000,
                  "message.timeout.ms": TIMEOUT * 1000})
    errors = []
    for i in range(100):
        p.produce(topic_name, value=b"v%d" % i, key=None if i % 10 == 0 else b"k%d" % i,
                  partition=0, on_delivery=lambda err, msg: errors.append(err and err.code()))
    assert p.flush(TIMEOUT) == 0
    assert errors.count(KafkaError.INVALID_RECORD) == 10
    assert errors.count(KafkaError._INVALID_DIFFERENT_RECORD) == 90

    # With keys, both producers write to it.
    keyed = [Rec(0, i, b"k%d" % i, b"v%d" % i) for i in range(6)]
    assert produce_confluent(broker.bootstrap, topic_name, keyed[:3], codec="lz4") == \
        [(0, 0), (0, 1), (0, 2)]
    assert produce_kafka_python(broker.bootstrap, topic_name, keyed[3:]) == \
        [(0, 3), (0, 4), (0, 5)]


def test_strict_validation_refuses_what_only_a_record_walk_finds(topic_name):
    with BrokerProcess(overrides={"trioka.strict.validation": "true"}) as b:
        b.start()
        create_topic(b.bootstrap, topic_name)
        # Three records of 24 bytes claiming to be four: the header check lets it through.
        lie = recount(encode_batch([(b"a", b"1" * 20), (b"b", b"2" * 20), (b"c", b"3" * 20)]),
                      4)
        part = raw_produce(b.bootstrap, topic_name, lie)
        assert (part.error_code, part.error_message) == (
            KafkaError.INVALID_RECORD, "Incorrect declared batch size, premature EOF reached")
        records = [Rec(0, i, b"k%d" % i, b"v%d" % i) for i in range(5)]
        assert produce_confluent(b.bootstrap, topic_name, records, codec="snappy") == \
            [(0, i) for i in range(5)]
        assert [r.value for r in consume_confluent(b.bootstrap, topic_name, [0], 5)] == \
            [r.value for r in records]


def _peak_rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


@pytest.mark.timeout(180)
def test_a_stored_zstd_bomb_never_crash_loops_the_broker(topic_name):
    uncleanable = f"cleaning of {topic_name}-0 failed, marking it uncleanable"
    with BrokerProcess(overrides={"log.cleaner.backoff.ms": "100"}) as b:
        b.start()
        create_topic(b.bootstrap, topic_name, configs={
            "cleanup.policy": "delete", "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01"})
        first = [Rec(0, 0, b"k", b"before")]
        assert produce_confluent(b.bootstrap, topic_name, first) == [(0, 0)]
        bomb = zstd_bomb()
        assert len(bomb) < MiB
        part = raw_produce(b.bootstrap, topic_name, bomb)      # a delete topic stores it
        assert (part.error_code, part.base_offset) == (0, 1)
        after = [Rec(0, 2 + i, b"k", b"after-%d" % i) for i in range(3)]
        assert produce_confluent(b.bootstrap, topic_name, after) == [(0, 2), (0, 3), (0, 4)]

        # The same bomb produced to a compacted topic is refused, after one piece of output.
        compacted = topic_name + "-c"
        create_topic(b.bootstrap, compacted, configs={"cleanup.policy": "compact"})
        assert raw_produce(b.bootstrap, compacted, bomb).error_code == KafkaError.INVALID_RECORD

        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
            ConfigEntry("cleanup.policy", "compact",
                        incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(15)

        for restart in range(2):
            wait_for(lambda: any(uncleanable in line for line in b.output), 60,
                     f"the cleaner marking {topic_name}-0 uncleanable (start {restart + 1})")
            assert b.running
            # Still serving: the records around the bomb, new writes, ListOffsets by time.
            got = consume_confluent(b.bootstrap, topic_name, [0], 1, start=2)
            assert (got[0].offset, got[0].value) == (2, b"after-0")
            more = [Rec(0, None, b"k", b"restart-%d" % restart)]
            produce_confluent(b.bootstrap, topic_name, more)
            c = confluent_assigned(b.bootstrap)
            try:
                [found] = c.offsets_for_times([TopicPartition(topic_name, 0, 1)], timeout=20)
                assert found.offset == 0
            finally:
                c.close()
            assert _peak_rss_mib(b.pid) < 1024     # the GiB of zeros was never inflated
            b.output.clear()
            b.restart(kill=True)
        assert b.running
