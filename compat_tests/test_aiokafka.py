"""aiokafka against trioka: what only this client does, its AIOKafkaAdminClient and its list-offsets
calls. The round trips every client makes (every codec, acks, idempotence, restarts) are in
test_round_trips.py.

aiokafka runs on asyncio while pytest-trio owns `async def` tests here, so every test is a plain
function that runs its coroutine with `asyncio.run` under `asyncio.wait_for`. Consumers are
manually assigned: no group is joined, nothing is committed. Every assertion is on what the
broker sent back.
"""

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from clients import SAMPLE_TIMESTAMP, produce_aiokafka, sample_records
from harness import unique

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


# --- admin ----------------------------------------------------------------------------------------

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
    assert (c["cluster_id"], c["controller_id"]) == (broker.cluster_id, 1)
    assert [(b["node_id"], b["host"], b["port"]) for b in c["brokers"]] \
        == [(1, "127.0.0.1", broker.port)]
    assert out["delete"] == [(name, NONE)] and not out["listed_after_delete"]
    # aiokafka's Metadata allows auto-creation and the broker's auto.create.topics.enable is on:
    # describing the deleted name creates a new topic, with num.partitions (1), not the old 4.
    again = out["described_after_delete"]
    assert (again["error_code"], len(again["partitions"])) == (NONE, 1)


# --- list offsets ---------------------------------------------------------------------------------

def test_list_offsets(broker, topic_name):
    create(broker.bootstrap, topic_name, 2)
    records = sample_records(2)
    produce_aiokafka(broker.bootstrap, topic_name, records)
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
