"""The round trips every stock client makes, over the one registry of clients.py: confluent-kafka
(librdkafka), kafka-python, aiokafka, kcat and KafkaJS each produce records with keys, null keys,
tombstones, empty values, every byte value, repeated and empty headers and explicit timestamps,
with every codec the client has, and every client reads them back; then acks, idempotence,
broker restarts, reading from a middle offset and batches built byte by byte.

Every assertion is on what came back from the broker: the producers' delivery reports, the records
each consumer read (partition, offset, key, value, headers, timestamp), the batches stored on disk
(their codec, producer id and sequence numbers) and the partitions' watermarks. What only one
client does lives in its own module (test_confluent.py, test_kafka_python.py, test_aiokafka.py,
test_kcat.py, test_kafkajs.py).
"""

import json
import time

import pytest
from confluent_kafka import TopicPartition

from clients import (CODECS, CONSUMERS, PRODUCERS, STAMPS_RECORDS, Rec, by_partition,
                     confluent_assigned, kcat_ok, offsets_of, produce_confluent, sample_records)
from harness import CODEC_IDS, create_topic, produce_raw, stored_batches
from trioka.log.records import encode_batch

# Records with fixed timestamps from years ago would be deleted by retention (retention.ms, 7 days,
# judged by record timestamps) mid-test: topics holding them keep everything.
KEEP = {"retention.ms": "-1"}


def now_ms() -> int:
    return int(time.time() * 1000)


def expected_reports(producer: str, records, acks="all") -> list:
    """What each producer reports of these records (clients.py): the offsets they were
    acknowledged at, except where the client says less."""
    if producer == "kcat":
        return [None] * len(records)            # kcat reports no deliveries
    if acks != 0:
        return offsets_of(records)
    if producer in ("confluent", "kafka-python"):
        # Sent, with no response to carry an offset.
        return [(r.partition, None) for r in records]
    return [None] * len(records)                # aiokafka, KafkaJS: no record metadata at all


def assert_read_back(got, records, producer: str, sent_between: tuple[int, int], reader: str):
    """`got` is `records` as sent: per partition, in order, every field. A producer that stamps
    records itself gave them the time of sending (a second either side for clock rounding)."""
    if producer in STAMPS_RECORDS:
        before, after = sent_between
        assert all(before - 1000 <= r.timestamp <= after + 1000 for r in got), (reader, got)
        got = [r._replace(timestamp=None) for r in got]
        records = [r._replace(timestamp=None) for r in records]
    assert by_partition(got) == by_partition(records), (producer, reader)


def watermarks(bootstrap: str, topic: str, partitions) -> list[tuple[int, int]]:
    c = confluent_assigned(bootstrap)
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=20) for p in partitions]
    finally:
        c.close()


def producer_ids(data_dir: str, topic: str, partitions) -> set[int]:
    return {b.producer_id for p in partitions for b in stored_batches(data_dir, topic, p)}


# --- 1. every codec of every producer, read back by every client --------------------------------

@pytest.mark.parametrize("producer,codec", [(p, c) for p in PRODUCERS for c in CODECS[p]])
def test_every_codec_read_back_by_every_client(broker, topic_name, producer, codec):
    create_topic(broker.bootstrap, topic_name, 3)
    records = sample_records(3, tag=codec)
    before = now_ms()
    reports = PRODUCERS[producer](broker.bootstrap, topic_name, records, codec=codec)
    sent_between = (before, now_ms())
    assert reports == expected_reports(producer, records)
    for reader, consume in CONSUMERS.items():
        if codec in CODECS[reader]:
            got = consume(broker.bootstrap, topic_name, range(3), len(records))
            assert_read_back(got, records, producer, sent_between, reader)
    stored = {b.compression for p in range(3)
              for b in stored_batches(broker.data_dir, topic_name, p)}
    # Clients send a batch uncompressed when compressing does not make it smaller; the large
    # value makes sure at least one batch is compressed. (librdkafka uses lz4 only with brokers
    # that advertise FindCoordinator, its marker for Kafka 0.8.2 where lz4 arrived; without it
    # lz4 batches silently go out uncompressed and this check fails.)
    assert CODEC_IDS[codec] in stored and stored <= {CODEC_IDS["none"], CODEC_IDS[codec]}


# --- 2. reading from a middle offset ----------------------------------------------------------

@pytest.mark.parametrize("consumer", CONSUMERS)
def test_read_from_a_middle_offset(broker, topic_name, consumer):
    """Starting inside a batch: the records before the offset asked for are not handed out."""
    create_topic(broker.bootstrap, topic_name, 1)
    records = sample_records(1)
    produce_confluent(broker.bootstrap, topic_name, records)
    for start in (2, 3, 4):
        got = CONSUMERS[consumer](broker.bootstrap, topic_name, [0], len(records) - start,
                                  start=start)
        assert got == records[start:], start


# --- 3. batches built byte by byte -------------------------------------------------------------

@pytest.mark.parametrize("consumer", CONSUMERS)
def test_batches_of_every_codec_built_by_trioka(broker, topic_name, consumer):
    """Batches compressed with each codec by trioka's own record codec (so lz4 is really lz4,
    whatever a client's producer would decide), produced over a bare connection, come back to
    each client intact, also when it starts inside a batch."""
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    expected = []
    for codec in CODECS[consumer]:
        records = [(f"{codec}-k{i}".encode(), (f"{codec}-v{i}-" * 30).encode(),
                    [("codec", codec.encode())], 1_690_000_000_000 + len(expected) + i)
                   for i in range(5)]
        base = produce_raw(broker.bootstrap, topic_name, 0,
                           encode_batch(records, compression=CODEC_IDS[codec]))
        assert base == len(expected)
        expected += [Rec(0, base + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(records)]
    got = CONSUMERS[consumer](broker.bootstrap, topic_name, [0], len(expected))
    assert got == expected
    got = CONSUMERS[consumer](broker.bootstrap, topic_name, [0], len(expected) - 7, start=7)
    assert got == expected[7:]


# --- 4. across a broker restart ----------------------------------------------------------------

RESTART_CODEC = {"confluent": "zstd", "kafka-python": "snappy", "aiokafka": "gzip",
                 "kcat": "gzip", "kafkajs": "lz4"}


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill"])
@pytest.mark.parametrize("client", PRODUCERS)
def test_restart_keeps_records_and_offsets(own_broker, topic_name, client, kill):
    produce, consume = PRODUCERS[client], CONSUMERS[client]
    bootstrap = own_broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    first = sample_records(2, tag="a")
    before = now_ms()
    produce(bootstrap, topic_name, first, codec=RESTART_CODEC[client])
    own_broker.restart(kill=kill)
    got = consume(bootstrap, topic_name, range(2), len(first))
    assert_read_back(got, first, client, (before, now_ms()), client)
    # Offsets continue after the restart: none is handed out twice.
    second = sample_records(2, tag="b", first_offset=6)
    assert produce(bootstrap, topic_name, second) == expected_reports(client, second)
    everything = first + second
    got = consume(bootstrap, topic_name, range(2), len(everything))
    assert_read_back(got, everything, client, (before, now_ms()), client)
    assert watermarks(bootstrap, topic_name, range(2)) == [(0, 12), (0, 12)]
    # The restarted broker describes itself at the same address.
    meta = json.loads(kcat_ok("-L", "-J", "-b", bootstrap, "-t", topic_name))
    assert meta["brokers"] == [{"id": 1, "name": bootstrap}]
    assert [p["partition"] for p in meta["topics"][0]["partitions"]] == [0, 1]


# --- 5. acks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("acks", [0, 1, "all"])
@pytest.mark.parametrize("client", PRODUCERS)
def test_acks(broker, topic_name, client, acks):
    create_topic(broker.bootstrap, topic_name, 3)
    records = sample_records(3, tag=str(acks))
    before = now_ms()
    reports = PRODUCERS[client](broker.bootstrap, topic_name, records, acks=acks,
                                idempotent=False)
    sent_between = (before, now_ms())
    assert reports == expected_reports(client, records, acks)
    got = CONSUMERS[client](broker.bootstrap, topic_name, range(3), len(records))
    assert_read_back(got, records, client, sent_between, client)
    # Not idempotent: batches without a producer id (read once the records are all there: with
    # acks=0 the producer returns before the broker has appended them).
    assert producer_ids(broker.data_dir, topic_name, range(3)) == {-1}


# --- 6. the idempotent producer ------------------------------------------------------------------

# Per client: rounds of sample records, the codec, and settings that split each partition's
# records into several batches (kcat is not here: it sends one run per record, and every run
# is a producer of its own, with a producer id of its own).
IDEMPOTENT = {
    "confluent": (20, "zstd", {"batch.num.messages": 7}),
    "kafka-python": (10, "gzip", {"max_in_flight_requests_per_connection": 5}),
    "aiokafka": (10, "lz4", {}),
    "kafkajs": (10, "gzip", {"send_size": 7}),
}


@pytest.mark.parametrize("client", IDEMPOTENT)
def test_idempotent_producer(broker, topic_name, client):
    rounds, codec, config = IDEMPOTENT[client]
    create_topic(broker.bootstrap, topic_name, 3)
    records = [r for n in range(rounds)
               for r in sample_records(3, tag=f"i{n}", first_offset=6 * n)]
    records.sort(key=lambda r: (r.offset, r.partition))
    reports = PRODUCERS[client](broker.bootstrap, topic_name, records, codec=codec,
                                idempotent=True, config=config)
    assert reports == offsets_of(records)
    # One producer (an id from InitProducerId, epoch 0) whose sequence numbers start at 0 and
    # run on with the offsets of a fresh partition, over several batches.
    ids = set()
    for p in range(3):
        batches = stored_batches(broker.data_dir, topic_name, p)
        assert len(batches) > 1, p
        for b in batches:
            ids.add((b.producer_id, b.producer_epoch))
            assert b.base_sequence == b.base_offset, b
    assert len(ids) == 1 and min(ids)[0] >= 0 and min(ids)[1] == 0, ids
    got = CONSUMERS[client](broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)
