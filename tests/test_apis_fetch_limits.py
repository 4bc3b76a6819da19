"""Fetch response limits (apis/fetch.py), as Kafka applies them: the request's `max_bytes` is
capped by the broker's `fetch.max.bytes` and `min_bytes` by that; partitions share what is left
of the budget in request order, each up to its `partition_max_bytes`; the first batch found is
returned whatever its size (KIP-74), so a consumer progresses, and after it the limits hold.

Through the wire codec (wire_client), so the sizes are those a client reads.
"""

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from wire_client import WireClient, memory_broker

K = ApiKey
Fetch = protocol.request_class(K.FETCH)
FetchTopic = Fetch.FetchTopic
FetchPartition = FetchTopic.FetchPartition
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData

VERSION = 12
BATCH = make_batch([b"x" * 1000])          # 1,069 bytes stored
FETCH_MAX_BYTES = 3 * len(BATCH) + 100     # room for three whole batches, not four


def open_client(fetch_max_bytes=FETCH_MAX_BYTES) -> WireClient:
    broker = memory_broker({"fetch.max.bytes": str(fetch_max_bytes),
                            "message.max.bytes": str(1 << 20)})
    broker.create_topic("events", 2)
    return WireClient(broker)


@pytest.fixture
async def client():
    c = open_client()
    yield c
    c.broker.close()


async def produce(client, index: int, batch: bytes = BATCH, times: int = 1) -> None:
    for _ in range(times):
        r = await client.call(K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=1000,
                              topic_data=[ProduceData(name="events", partition_data=[
                                  ProduceData.PartitionProduceData(index=index,
                                                                   records=batch)])])
        assert r.responses[0].partition_responses[0].error_code == 0


async def fetch(client, *, max_bytes=50 << 20, partition_max_bytes=1 << 20, min_bytes=1,
                max_wait_ms=0, indexes=(0, 1)):
    return await client.call(
        K.FETCH, VERSION, replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes,
        max_bytes=max_bytes, isolation_level=0, session_id=0, session_epoch=-1,
        topics=[FetchTopic(topic="events", partitions=[
            FetchPartition(partition=i, fetch_offset=0, partition_max_bytes=partition_max_bytes)
            for i in indexes])],
        forgotten_topics_data=[])


def sizes(response) -> list[int]:
    return [len(p.records) for t in response.responses for p in t.partitions]


async def test_fetch_max_bytes_caps_the_request_max_bytes(client):
    await produce(client, 0, times=5)
    await produce(client, 1, times=5)
    r = await fetch(client, max_bytes=50 << 20)
    # Whole batches up to fetch.max.bytes: three from partition 0, none left for partition 1.
    assert sizes(r) == [3 * len(BATCH), 0]
    assert sum(sizes(r)) <= FETCH_MAX_BYTES


async def test_a_smaller_request_max_bytes_is_kept(client):
    await produce(client, 0, times=2)
    await produce(client, 1, times=2)
    assert sizes(await fetch(client, max_bytes=len(BATCH) + 10)) == [len(BATCH), 0]


async def test_partitions_share_the_budget_in_request_order(client):
    await produce(client, 0, times=2)
    await produce(client, 1, times=5)
    r = await fetch(client)
    assert sizes(r) == [2 * len(BATCH), len(BATCH)]


async def test_a_batch_larger_than_fetch_max_bytes_is_returned_first_and_alone(client):
    big = make_batch([b"y" * (2 * FETCH_MAX_BYTES)])
    await produce(client, 0, batch=big)
    await produce(client, 0)
    await produce(client, 1)
    r = await fetch(client, partition_max_bytes=100)
    # KIP-74: the consumer gets the big batch whole, and then the limits are hard.
    assert sizes(r) == [len(big), 0]


async def test_the_first_batch_comes_from_the_first_partition_with_data(client):
    await produce(client, 1)
    r = await fetch(client, max_bytes=10, partition_max_bytes=10)
    assert sizes(r) == [0, len(BATCH)]


async def test_min_bytes_is_capped_by_fetch_max_bytes(mock_clock):
    # min_bytes above fetch.max.bytes could never be met; Kafka caps it, so a full response is
    # answered at once instead of at max_wait_ms.
    client = open_client(fetch_max_bytes=3 * len(BATCH))
    await produce(client, 0, times=4)
    answered = []

    async def run():
        answered.append((trio.current_time(),
                         await fetch(client, min_bytes=100 << 20, max_wait_ms=30_000,
                                     indexes=(0,))))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()
            assert answered, "the fetch waited although fetch.max.bytes of data were there"
    finally:
        client.broker.close()
    ((at, r),) = answered
    assert at == 0 and sizes(r) == [3 * len(BATCH)]


async def test_the_default_is_kafkas_55_mib():
    client = WireClient(memory_broker())
    try:
        assert client.broker.config.fetch_max_bytes == 57671680
    finally:
        client.broker.close()
