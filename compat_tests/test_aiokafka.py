"""aiokafka against trioka: AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer (assigned).

aiokafka runs on asyncio while pytest-trio owns `async def` tests here, so every test is a plain
function that runs its coroutine with `asyncio.run` under `asyncio.wait_for`. Consumers are
manually assigned: no group is joined, nothing is committed. Every assertion is on what the
broker sent back.
"""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from harness import (CODEC_IDS, CONSUMERS, SAMPLE_TIMESTAMP, by_partition, cluster_id_of,
                     consume_aiokafka, sample_records, stored_batches, unique)

TIMEOUT = 20

# Kafka's error codes (errors.md) as they come back in admin responses.
NONE = 0
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40


def run(coro, timeout: float = 60):
    """Run an asyncio coroutine to completion, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def open_admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000)
    await admin.start()
    return admin


async def create_codes(admin, topics: list, validate_only: bool = False):
    r = await admin.create_topics(topics, validate_only=validate_only)
    return [(name, code) for name, code, *_ in r.topic_errors]


def create(bootstrap: str, name: str, partitions: int, configs: dict | None = None) -> None:
    async def go():
        admin = await open_admin(bootstrap)
        try:
            return await create_codes(admin, [NewTopic(name, partitions, 1,
                                                       topic_configs=configs or {})])
        finally:
            await admin.close()
    assert run(go()) == [(name, NONE)]


def produce(bootstrap: str, topic: str, records, **conf) -> list[tuple[int, int]]:
    """Send records as given; the (partition, offset) of each acknowledged send, in send order."""
    async def go():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                             request_timeout_ms=TIMEOUT * 1000, **conf)
        await p.start()
        try:
            futures = [await p.send(topic, value=r.value, key=r.key, partition=r.partition,
                                    timestamp_ms=r.timestamp, headers=list(r.headers))
                       for r in records]
            results = await asyncio.gather(*futures)
        finally:
            await p.stop()
        return [None if m is None else (m.partition, m.offset) for m in results]
    return run(go())


def offsets_of(records) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


# --- 1. the round trip --------------------------------------------------------------------------

def test_produce_consume_keys_headers_tombstones_timestamps(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    records = sample_records(3)
    assert produce(broker.bootstrap, topic_name, records) == offsets_of(records)
    got = consume_aiokafka(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)


def test_consume_from_a_middle_offset(broker, topic_name):
    create(broker.bootstrap, topic_name, 1)
    records = sample_records(1)
    produce(broker.bootstrap, topic_name, records)
    got = consume_aiokafka(broker.bootstrap, topic_name, [0], len(records) - 2, start=2)
    assert got == records[2:]


# --- 2. every codec, read back by every client ----------------------------------------------------

@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_codec_roundtrip_and_cross_client(broker, topic_name, codec):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2, tag=codec)
    sent = produce(broker.bootstrap, topic_name, records,
                   compression_type=None if codec == "none" else codec)
    assert sent == offsets_of(records)
    for client, consume in CONSUMERS.items():
        got = consume(broker.bootstrap, topic_name, range(2), len(records))
        assert by_partition(got) == by_partition(records), client
    stored = {b.codec for p in range(2)
              for b in stored_batches(broker.data_dir, topic_name, p)}
    # Clients send a batch uncompressed when compressing does not make it smaller; the large
    # value makes sure at least one batch is compressed.
    assert CODEC_IDS[codec] in stored and stored <= {CODEC_IDS["none"], CODEC_IDS[codec]}


# --- 3. across a broker restart ------------------------------------------------------------------

@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill"])
def test_restart_keeps_records_and_offsets(own_broker, topic_name, kill):
    create(own_broker.bootstrap, topic_name, 2)
    first = sample_records(2, tag="a")
    produce(own_broker.bootstrap, topic_name, first, compression_type="gzip")
    own_broker.restart(kill=kill)
    got = consume_aiokafka(own_broker.bootstrap, topic_name, range(2), len(first))
    assert by_partition(got) == by_partition(first)
    second = sample_records(2, tag="b", first_offset=6)
    assert produce(own_broker.bootstrap, topic_name, second) == offsets_of(second)
    everything = first + second
    got = consume_aiokafka(own_broker.bootstrap, topic_name, range(2), len(everything))
    assert by_partition(got) == by_partition(everything)


# --- 4. admin ------------------------------------------------------------------------------------

def test_admin(broker):
    name, rf3, cfg, bad = unique("aio-admin"), unique("rf3"), unique("cfg"), "bad name"

    async def go():
        admin = await open_admin(broker.bootstrap)
        try:
            out = {}
            out["validate"] = await create_codes(admin, [NewTopic(name, 2, 1)], True)
            out["listed_after_validate"] = name in await admin.list_topics()
            out["create"] = await create_codes(admin, [NewTopic(name, 2, 1)])
            out["again"] = await create_codes(admin, [NewTopic(name, 2, 1)])
            out["bad"] = await create_codes(admin, [NewTopic(bad, 1, 1)])
            out["rf3"] = await create_codes(admin, [NewTopic(rf3, 1, 3)])
            out["cfg"] = await create_codes(
                admin, [NewTopic(cfg, 1, 1, topic_configs={"no.such.key": "x"})])
            [out["described"]] = await admin.describe_topics([name])
            await admin.create_partitions({name: NewPartitions(total_count=4)})
            [out["grown"]] = await admin.describe_topics([name])
            out["cluster"] = await admin.describe_cluster()
            r = await admin.delete_topics([name])
            out["delete"] = list(r.topic_error_codes)
            out["listed_after_delete"] = name in await admin.list_topics()
            [out["described_after_delete"]] = await admin.describe_topics([name])
            return out
        finally:
            await admin.close()

    out = run(go())
    assert out["validate"] == [(name, NONE)] and not out["listed_after_validate"]
    assert out["create"] == [(name, NONE)]
    assert out["again"] == [(name, TOPIC_ALREADY_EXISTS)]
    assert out["bad"] == [(bad, INVALID_TOPIC_EXCEPTION)]
    assert out["rf3"] == [(rf3, INVALID_REPLICATION_FACTOR)]
    assert out["cfg"] == [(cfg, INVALID_CONFIG)]
    d = out["described"]
    assert (d["topic"], d["error_code"]) == (name, NONE)
    assert sorted((p["partition"], p["leader"], p["replicas"], p["isr"]) for p in d["partitions"]) \
        == [(0, 1, [1], [1]), (1, 1, [1], [1])]
    assert sorted(p["partition"] for p in out["grown"]["partitions"]) == [0, 1, 2, 3]
    c = out["cluster"]
    assert (c["cluster_id"], c["controller_id"]) == (cluster_id_of(broker), 1)
    assert [(b["node_id"], b["host"], b["port"]) for b in c["brokers"]] \
        == [(1, "127.0.0.1", broker.port)]
    assert out["delete"] == [(name, NONE)] and not out["listed_after_delete"]
    # aiokafka's Metadata allows auto-creation and the broker's auto.create.topics.enable is on:
    # describing the deleted name creates a new topic, with num.partitions (1), not the old 4.
    again = out["described_after_delete"]
    assert (again["error_code"], len(again["partitions"])) == (NONE, 1)


# --- 5. list offsets -----------------------------------------------------------------------------

def test_list_offsets(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2)
    produce(broker.bootstrap, topic_name, records)
    p0 = [r for r in records if r.partition == 0]
    tp0, tp1 = TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)

    async def go():
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             request_timeout_ms=TIMEOUT * 1000)
        await c.start()
        try:
            return (await c.beginning_offsets([tp0, tp1]), await c.end_offsets([tp0, tp1]),
                    await c.offsets_for_times({tp0: p0[4].timestamp, tp1: SAMPLE_TIMESTAMP}),
                    await c.offsets_for_times({tp0: p0[4].timestamp + 1,
                                               tp1: 2 * SAMPLE_TIMESTAMP}))
        finally:
            await c.stop()

    beginning, end, at, after = run(go())
    assert beginning == {tp0: 0, tp1: 0}
    assert end == {tp0: 6, tp1: 6}
    assert (at[tp0].offset, at[tp0].timestamp) == (4, p0[4].timestamp)
    assert (at[tp1].offset, at[tp1].timestamp) == (0, SAMPLE_TIMESTAMP + 100_000)
    assert (after[tp0].offset, after[tp1]) == (5, None)


# --- 6. acks and the idempotent producer ---------------------------------------------------------

@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(broker, topic_name, acks):
    create(broker.bootstrap, topic_name, 3)
    records = sample_records(3, tag=str(acks))
    sent = produce(broker.bootstrap, topic_name, records, acks=acks)
    if acks == 0:
        # No response, so no record metadata at all.
        assert sent == [None] * len(records)
    else:
        assert sent == offsets_of(records)
    got = consume_aiokafka(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)


def test_idempotent_producer(broker, topic_name):
    create(broker.bootstrap, topic_name, 3)
    records = [r for n in range(10) for r in sample_records(3, tag=f"i{n}", first_offset=6 * n)]
    records.sort(key=lambda r: (r.offset, r.partition))
    sent = produce(broker.bootstrap, topic_name, records, enable_idempotence=True,
                   compression_type="lz4")
    assert sent == offsets_of(records)
    ids = set()
    for p in range(3):
        for b in stored_batches(broker.data_dir, topic_name, p):
            ids.add((b.producer_id, b.producer_epoch))
            assert b.base_sequence == b.base_offset, b   # sequences run with a fresh log's offsets
    assert len(ids) == 1 and min(ids)[0] >= 0, ids
    got = consume_aiokafka(broker.bootstrap, topic_name, range(3), len(records))
    assert by_partition(got) == by_partition(records)
