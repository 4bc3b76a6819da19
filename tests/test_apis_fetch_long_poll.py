"""Fetch long polling (apis/fetch.py): a Fetch answers as soon as `min_bytes` are there or a
partition has an error, and otherwise waits up to `max_wait_ms`, woken only by changes of the
partitions it reads (PartitionLog.add_waiter): an append, a transaction marker, a deletion.

Time is trio's MockClock (the `mock_clock` fixture, which moves only when the test jumps it), so
"it is still waiting" and "it answered at the deadline" are exact statements, and nothing sleeps.
Each Fetch runs in a task of its own; `wait_all_tasks_blocked` lets everything runnable run before
the test looks.
"""

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from wire_client import WireClient, memory_broker

K = ApiKey
Fetch = protocol.request_class(K.FETCH)
FetchTopic = Fetch.FetchTopic
FetchPartition = FetchTopic.FetchPartition
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData
PartitionProduceData = ProduceData.PartitionProduceData

FETCH_VERSION = 12      # names topics, has sessions (unused here: session 0, epoch -1)
BATCH = make_batch([b"a" * 100])


@pytest.fixture
async def client():
    broker = memory_broker()
    broker.create_topic("events", 2)
    broker.create_topic("other", 1)
    yield WireClient(broker)
    broker.close()


def partitions(*specs):
    """FetchTopics from (topic, partition, fetch_offset) triples, in request order."""
    topics: dict[str, list] = {}
    for topic, index, offset in specs:
        topics.setdefault(topic, []).append(
            FetchPartition(partition=index, fetch_offset=offset, partition_max_bytes=1 << 20))
    return [FetchTopic(topic=t, partitions=ps) for t, ps in topics.items()]


class PendingFetch:
    """A Fetch running in its own task: its response, and the clock when it came back."""

    def __init__(self):
        self.response = None
        self.answered_at: float | None = None

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


def start_fetch(nursery, client, *, min_bytes: int, max_wait_ms: int,
                specs=(("events", 0, 0),)) -> PendingFetch:
    pending = PendingFetch()

    async def run():
        pending.response = await client.call(
            K.FETCH, FETCH_VERSION, replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes,
            max_bytes=50 << 20, isolation_level=0, session_id=0, session_epoch=-1,
            topics=partitions(*specs), forgotten_topics_data=[])
        pending.answered_at = trio.current_time()

    nursery.start_soon(run)
    return pending


async def produce(client, topic: str, index: int, batch: bytes = BATCH) -> int:
    """Append one batch through the Produce handler (which wakes waiting fetches)."""
    r = await client.call(K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=1000,
                          topic_data=[ProduceData(name=topic, partition_data=[
                              PartitionProduceData(index=index, records=batch)])])
    (p,) = r.responses[0].partition_responses
    assert p.error_code == 0
    return p.base_offset


def only_partition(response):
    (topic,) = response.responses
    (p,) = topic.partitions
    return p


async def test_data_already_there_is_answered_without_waiting(client, mock_clock):
    await produce(client, "events", 0)
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=10_000)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered and pending.answered_at == 0
    p = only_partition(pending.response)
    assert (p.error_code, p.high_watermark) == (0, 1)
    # The batch as stored: the broker patched in its offset (0) and leader epoch (0).
    assert bytes(p.records) == BATCH[:12] + (0).to_bytes(4, "big") + BATCH[16:]


async def test_not_enough_data_waits_exactly_max_wait_ms(client, mock_clock):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=500)
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered
        mock_clock.jump(0.499)
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered
        mock_clock.jump(0.002)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    assert 0.5 <= pending.answered_at <= 0.501
    p = only_partition(pending.response)
    # An empty answer, not an error: the consumer simply fetches again.
    assert (pending.response.error_code, p.error_code, p.high_watermark) == (0, 0, 0)
    assert len(p.records) == 0


async def test_an_append_wakes_a_waiting_fetch(client, mock_clock):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=30_000)
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered
        mock_clock.jump(1.0)
        await produce(client, "events", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    assert pending.answered_at == 1.0          # at the append, not at the deadline
    p = only_partition(pending.response)
    assert p.high_watermark == 1 and len(p.records) == len(BATCH)


async def test_appends_elsewhere_do_not_answer_the_fetch(client, mock_clock):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=2_000)
        await trio.testing.wait_all_tasks_blocked()
        await produce(client, "other", 0)
        await produce(client, "events", 1)      # same topic, a partition not fetched
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered
        mock_clock.jump(2.0)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    assert pending.answered_at == 2.0
    assert len(only_partition(pending.response).records) == 0


async def test_min_bytes_counts_every_fetched_partition(client, mock_clock):
    # Two batches are needed; one in each fetched partition makes enough.
    min_bytes = len(BATCH) + 1
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=min_bytes, max_wait_ms=5_000,
                              specs=(("events", 0, 0), ("events", 1, 0)))
        await trio.testing.wait_all_tasks_blocked()
        await produce(client, "events", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered             # one batch is below min_bytes
        mock_clock.jump(0.25)
        await produce(client, "events", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    assert pending.answered_at == 0.25
    (topic,) = pending.response.responses
    assert [(p.partition_index, len(p.records)) for p in topic.partitions] == \
        [(0, len(BATCH)), (1, len(BATCH))]


async def test_below_min_bytes_at_the_deadline_answers_with_what_there_is(client, mock_clock):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1 << 20, max_wait_ms=800)
        await trio.testing.wait_all_tasks_blocked()
        await produce(client, "events", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered
        mock_clock.jump(0.8)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    p = only_partition(pending.response)
    assert p.high_watermark == 1 and len(p.records) == len(BATCH)


@pytest.mark.parametrize("min_bytes, max_wait_ms", [(0, 10_000), (1, 0), (1 << 20, 0)])
async def test_min_bytes_0_or_max_wait_0_never_waits(client, mock_clock, min_bytes,
                                                     max_wait_ms):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=min_bytes, max_wait_ms=max_wait_ms)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered and pending.answered_at == 0
    assert only_partition(pending.response).error_code == 0


@pytest.mark.parametrize("spec, code", [
    (("events", 0, 7), ErrorCode.OFFSET_OUT_OF_RANGE),          # past the log end offset
    (("events", 5, 0), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    (("missing", 0, 0), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
])
async def test_a_partition_error_is_answered_at_once(client, mock_clock, spec, code):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=60_000,
                              specs=(("events", 1, 0), spec))
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered and pending.answered_at == 0
    codes = {(t.topic, p.partition_index): p.error_code
             for t in pending.response.responses for p in t.partitions}
    assert codes == {("events", 1): 0, (spec[0], spec[1]): code}


# --- wake-ups per partition ---

def waiting_on(client, topic: str, index: int) -> set:
    """The waiters registered with a partition: one trio.Event per Fetch waiting on it."""
    return set(client.broker.partition(topic, index).waiters)


async def test_an_append_elsewhere_does_not_make_the_fetch_read_again(client, mock_clock):
    # A Fetch that read its partitions registers one fresh event with each of them, and does so
    # again after every read: an event still registered and unset after appends elsewhere means
    # the Fetch did no work for them.
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=2_000,
                              specs=(("events", 0, 0),))
        await trio.testing.wait_all_tasks_blocked()
        (event,) = waiting_on(client, "events", 0)
        assert waiting_on(client, "events", 1) == set() and waiting_on(client, "other", 0) == set()
        for _ in range(3):
            await produce(client, "other", 0)
            await produce(client, "events", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert not event.is_set() and waiting_on(client, "events", 0) == {event}
        assert not pending.answered
        mock_clock.jump(2.0)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    # Once answered, the Fetch leaves nothing registered.
    assert waiting_on(client, "events", 0) == set()


async def test_an_append_wakes_only_the_fetches_of_its_partition(client, mock_clock):
    async with trio.open_nursery() as nursery:
        on_a = start_fetch(nursery, client, min_bytes=1, max_wait_ms=30_000,
                           specs=(("events", 0, 0), ("events", 1, 0)))
        on_b = start_fetch(nursery, client, min_bytes=1, max_wait_ms=30_000,
                           specs=(("other", 0, 0),))
        await trio.testing.wait_all_tasks_blocked()
        (b_event,) = waiting_on(client, "other", 0)
        mock_clock.jump(0.5)
        await produce(client, "events", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert on_a.answered and on_a.answered_at == 0.5
        assert not on_b.answered and not b_event.is_set()
        assert waiting_on(client, "other", 0) == {b_event}
        assert waiting_on(client, "events", 0) == set() == waiting_on(client, "events", 1)
        mock_clock.jump(0.5)
        await produce(client, "other", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert on_b.answered and on_b.answered_at == 1.0
    (topic,) = on_a.response.responses
    assert [(p.partition_index, len(p.records)) for p in topic.partitions] == \
        [(0, 0), (1, len(BATCH))]


async def test_an_append_below_min_bytes_rereads_and_waits_again(client, mock_clock):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=2 * len(BATCH), max_wait_ms=5_000)
        await trio.testing.wait_all_tasks_blocked()
        (first,) = waiting_on(client, "events", 0)
        await produce(client, "events", 0)
        await trio.testing.wait_all_tasks_blocked()
        (second,) = waiting_on(client, "events", 0)
        assert first.is_set() and second is not first and not pending.answered
        await produce(client, "events", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered
    assert len(only_partition(pending.response).records) == 2 * len(BATCH)


async def test_deleting_the_topic_wakes_its_fetches_with_the_error(client, mock_clock):
    async with trio.open_nursery() as nursery:
        pending = start_fetch(nursery, client, min_bytes=1, max_wait_ms=60_000)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(3.0)
        client.broker.delete_topic("events")
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered and pending.answered_at == 3.0
    assert only_partition(pending.response).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


async def test_a_commit_marker_wakes_a_read_committed_fetch(client, mock_clock):
    broker = client.broker
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60_000, -1, -1, 0)
    txn.add_partitions("app", pid, epoch, [("events", 0)], 0)
    broker.partition("events", 0).append(
        make_batch([b"t"], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                   attributes=0x10), now_ms=0)
    pending = PendingFetch()

    async def run():
        pending.response = await client.call(
            K.FETCH, FETCH_VERSION, replica_id=-1, max_wait_ms=60_000, min_bytes=1,
            max_bytes=50 << 20, isolation_level=1, session_id=0, session_epoch=-1,
            topics=partitions(("events", 0, 0)), forgotten_topics_data=[])
        pending.answered_at = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert not pending.answered                 # the open transaction holds the LSO at 0
        mock_clock.jump(2.0)
        txn.end_transaction("app", pid, epoch, True, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert pending.answered and pending.answered_at == 2.0
    p = only_partition(pending.response)
    assert p.last_stable_offset == 2 and len(p.records) > 0
