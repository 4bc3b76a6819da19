"""An incremental fetch costs what changed, not the size of its session (apis/fetch.py over
log/fetch_sessions.py, KIP-227): a session's partitions stay registered with their logs and mark
themselves changed when their log changes, so a fetch reads only those and the partitions its
request names, and a long-polling fetch waits on its session, not on every partition.

The cost is observed through `FetchSession.partitions_examined` (partition reads done for the
session's fetches) and the logs' `waiters`; the semantics through the responses, against what
reading every partition gives (a sessionless fetch of the same positions). Time is trio's
MockClock where a fetch waits.
"""

import random

import pytest
import trio
import trio.testing

from record_batches import make_batch
from trioka.log.fetch_sessions import INITIAL_EPOCH
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from wire_client import WireClient, memory_broker

K = ApiKey
Fetch = protocol.request_class(K.FETCH)
FetchTopic = Fetch.FetchTopic
FetchPartition = FetchTopic.FetchPartition
ForgottenTopic = Fetch.ForgottenTopic
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData

VERSION = 12            # topics by name, sessions
BIG = 5_000             # partitions of the big session
BATCH = make_batch([b"x" * 50])


@pytest.fixture
async def client():
    broker = memory_broker()
    broker.create_topic("events", 3)
    c = WireClient(broker)
    yield c
    broker.close()


@pytest.fixture(scope="module")
def big_broker():
    """One broker with BIG partitions for the module (creating them takes seconds); each test
    opens a session of its own and appends to partitions no other test looks at."""
    broker = memory_broker()
    for i in range(BIG // 1000):
        broker.create_topic(f"big-{i}", 1000)
    yield broker
    broker.close()


@pytest.fixture
async def big(big_broker):
    return WireClient(big_broker)


def topics_of(positions: dict) -> list:
    """FetchTopics from {(topic, partition): fetch_offset}, in that order."""
    out: dict[str, list] = {}
    for (topic, index), offset in positions.items():
        out.setdefault(topic, []).append(
            FetchPartition(partition=index, fetch_offset=offset, partition_max_bytes=1 << 20))
    return [FetchTopic(topic=t, partitions=ps) for t, ps in out.items()]


async def fetch(client, session_id, epoch, positions=None, *, forgotten=(), max_wait_ms=0,
                min_bytes=1, max_bytes=50 << 20, isolation_level=0):
    return await client.call(K.FETCH, VERSION, replica_id=-1, max_wait_ms=max_wait_ms,
                             min_bytes=min_bytes, max_bytes=max_bytes,
                             isolation_level=isolation_level, session_id=session_id,
                             session_epoch=epoch, topics=topics_of(positions or {}),
                             forgotten_topics_data=list(forgotten))


async def produce(client, topic: str, index: int, batch: bytes = BATCH) -> None:
    r = await client.call(K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=1000,
                          topic_data=[ProduceData(name=topic, partition_data=[
                              ProduceData.PartitionProduceData(index=index, records=batch)])])
    assert r.responses[0].partition_responses[0].error_code == 0


def reported(response) -> dict:
    """(topic, partition) -> (error, hw, lso, log start, records) of each reported partition."""
    return {(t.topic, p.partition_index): (p.error_code, p.high_watermark, p.last_stable_offset,
                                           p.log_start_offset, bytes(p.records))
            for t in response.responses for p in t.partitions}


class Session:
    """A client's side of one session: its id, the next epoch, and the broker's session."""

    def __init__(self, client, response):
        assert response.error_code == 0 and response.session_id > 0
        self.client = client
        self.id = response.session_id
        self.epoch = 1
        self.state = client.broker.fetch_sessions.sessions[self.id]

    async def fetch(self, positions=None, **kw):
        r = await fetch(self.client, self.id, self.epoch, positions, **kw)
        assert r.error_code == 0, r.error_code
        self.epoch += 1
        return r

    def examined_by(self, before: int) -> int:
        return self.state.partitions_examined - before


async def open_big_session(client) -> Session:
    # Every position at the end of its log: nothing to read until something is appended.
    positions = {(f"big-{i}", p): client.broker.partition(f"big-{i}", p).high_watermark
                 for i in range(BIG // 1000) for p in range(1000)}
    r = await fetch(client, 0, INITIAL_EPOCH, positions)
    assert len(reported(r)) == BIG
    return Session(client, r)


# ------------------------------------------------------------------------------- the cost

async def test_an_incremental_fetch_examines_the_changed_partition_not_the_session(big):
    session = await open_big_session(big)
    before = session.state.partitions_examined
    assert reported(await session.fetch()) == {}
    assert session.examined_by(before) == 0

    await produce(big, "big-3", 417)
    before = session.state.partitions_examined
    r = await session.fetch()
    assert session.examined_by(before) == 1
    assert {k: v[:4] for k, v in reported(r).items()} == {("big-3", 417): (0, 1, 1, 0)}
    # The batch as stored: the broker patched in its offset (0) and leader epoch (0).
    assert reported(r)[("big-3", 417)][4] == bytes(BATCH[:12]) + bytes(4) + BATCH[16:]

    # The client moves on: the partition it names is examined, and says nothing new.
    before = session.state.partitions_examined
    assert reported(await session.fetch({("big-3", 417): 1})) == {}
    assert session.examined_by(before) == 1
    before = session.state.partitions_examined
    assert reported(await session.fetch()) == {}
    assert session.examined_by(before) == 0


async def test_a_waiting_fetch_registers_once_and_examines_what_changed(big, mock_clock):
    logs = [big.broker.partition(f"big-{i}", p) for i in range(BIG // 1000) for p in range(1000)]
    earlier = [len(log.waiters) for log in logs]    # other tests' sessions of the module
    session = await open_big_session(big)
    # Each partition log holds one registration of the session, whatever the fetches do.
    registered = [len(log.waiters) for log in logs]
    assert registered == [n + 1 for n in earlier]
    before = session.state.partitions_examined
    result = {}

    async def run():
        result["r"] = await session.fetch(max_wait_ms=30_000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert "r" not in result
        assert len(session.state.waiters) == 1          # one registration for the wait
        assert [len(log.waiters) for log in logs] == registered
        mock_clock.jump(1.0)
        await produce(big, "big-0", 9)
        await trio.testing.wait_all_tasks_blocked()
        assert "r" in result
    assert list(reported(result["r"])) == [("big-0", 9)]
    assert session.examined_by(before) == 1
    assert len(session.state.waiters) == 0
    # Still one registration of this session on every log, the one appended to included (the
    # append forgot the other sessions' registrations there until they fetch again).
    keys = [(f"big-{i}", p) for i in range(BIG // 1000) for p in range(1000)]
    assert all(session.state.partitions[key] in log.waiters for key, log in zip(keys, logs))
    assert [n for key, n, log in zip(keys, registered, logs) if key != ("big-0", 9)] == \
        [len(log.waiters) for key, log in zip(keys, logs) if key != ("big-0", 9)]


async def test_a_closed_or_evicted_session_lets_go_of_its_logs(client):
    logs = [client.broker.partition("events", p) for p in range(3)]
    first = Session(client, await fetch(client, 0, INITIAL_EPOCH,
                                        {("events", p): 0 for p in range(3)}))
    assert [len(log.waiters) for log in logs] == [1, 1, 1]
    # A new full fetch naming the old session closes it and opens another.
    second = Session(client, await fetch(client, first.id, INITIAL_EPOCH,
                                         {("events", 0): 0, ("events", 1): 0}))
    assert [len(log.waiters) for log in logs] == [1, 1, 0]
    r = await fetch(client, second.id, 1, forgotten=[ForgottenTopic(topic="events",
                                                                   partitions=[0])])
    assert (r.error_code, r.session_id) == (0, second.id)
    assert [len(log.waiters) for log in logs] == [0, 1, 0]
    # A forgotten partition's changes are not reported (nor examined).
    await produce(client, "events", 0)
    before = second.state.partitions_examined
    second.epoch = 2
    assert reported(await second.fetch()) == {}
    assert second.examined_by(before) == 0
    # Forgetting the last partition closes the session (Kafka's FetchManager): session id 0.
    r = await fetch(client, second.id, 3, forgotten=[ForgottenTopic(topic="events",
                                                                   partitions=[1])])
    assert (r.error_code, r.session_id) == (0, 0)
    assert [len(log.waiters) for log in logs] == [0, 0, 0]


async def test_eviction_releases_registrations(client):
    broker = memory_broker({"max.incremental.fetch.session.cache.slots": 1})
    try:
        broker.create_topic("events", 2)
        c = WireClient(broker)
        log = broker.partition("events", 0)
        await fetch(c, 0, INITIAL_EPOCH, {("events", 0): 0})
        assert len(log.waiters) == 1
        await fetch(c, 0, INITIAL_EPOCH, {("events", 1): 0})     # evicts the first session
        assert len(log.waiters) == 0
    finally:
        broker.close()


async def test_a_fetch_waiting_on_a_session_evicted_meanwhile_still_wakes_at_data(mock_clock):
    broker = memory_broker({"max.incremental.fetch.session.cache.slots": 1})
    try:
        broker.create_topic("events", 2)
        c = WireClient(broker)
        session = Session(c, await fetch(c, 0, INITIAL_EPOCH, {("events", 0): 0}))
        result = {}

        async def run():
            result["r"] = await session.fetch(max_wait_ms=30_000)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()
            await fetch(c, 0, INITIAL_EPOCH, {("events", 1): 0})     # evicts it
            await trio.testing.wait_all_tasks_blocked()
            assert "r" not in result
            mock_clock.jump(1.0)
            await produce(c, "events", 0)
            await trio.testing.wait_all_tasks_blocked()
            assert "r" in result
        assert list(reported(result["r"])) == [("events", 0)]
    finally:
        broker.close()


# -------------------------------------------------------------------------- the semantics

async def test_records_not_taken_are_returned_again_without_a_change(client):
    await produce(client, "events", 1)
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH,
                                          {("events", p): 0 for p in range(3)}))
    # The client did not move its position: the same records come back, every time.
    for _ in range(2):
        r = reported(await session.fetch())
        assert list(r) == [("events", 1)] and len(r[("events", 1)][4]) == len(BATCH)


async def test_partitions_left_out_by_the_byte_budget_are_served_next(client):
    for p in range(3):
        await produce(client, "events", p)
    positions = {("events", p): 0 for p in range(3)}
    # max_bytes 1: only the first partition's first batch (KIP-74), the others nothing.
    r = await fetch(client, 0, INITIAL_EPOCH, positions, max_bytes=1)
    session = Session(client, r)
    assert [len(v[4]) for v in reported(r).values()] == [len(BATCH), 0, 0]
    # Neither 1 nor 2 changed nor is named, yet they hold records: the next fetches serve them,
    # in the session's order (partitions that returned data move to its end).
    r = reported(await session.fetch({("events", 0): 1}, max_bytes=1))
    assert [(k, len(v[4])) for k, v in r.items()] == [(("events", 1), len(BATCH))]
    r = reported(await session.fetch({("events", 1): 1}, max_bytes=1))
    assert [(k, len(v[4])) for k, v in r.items()] == [(("events", 2), len(BATCH))]
    assert reported(await session.fetch({("events", 2): 1}, max_bytes=1)) == {}


async def test_a_log_start_offset_move_alone_is_reported(client):
    for _ in range(2):
        await produce(client, "events", 0)
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, {("events", 0): 2}))
    client.broker.partition("events", 0).delete_records_before(1)
    assert reported(await session.fetch()) == {("events", 0): (0, 2, 2, 1, b"")}
    assert reported(await session.fetch()) == {}


async def test_a_last_stable_offset_move_is_reported_to_read_committed(client):
    broker = client.broker
    txn = broker.transactions
    pid, epoch = txn.init_producer_id("app", 60_000, -1, -1, 0)
    txn.add_partitions("app", pid, epoch, [("events", 0)], 0)
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, {("events", 0): 0},
                                          isolation_level=1))
    broker.partition("events", 0).append(
        make_batch([b"t"], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                   attributes=0x10), now_ms=0)
    # The high watermark moved, the last stable offset not: reported once, without records.
    assert reported(await session.fetch(isolation_level=1)) == {("events", 0): (0, 1, 0, 0, b"")}
    assert reported(await session.fetch(isolation_level=1)) == {}
    txn.end_transaction("app", pid, epoch, True, 0)
    ((error, hw, lso, start, records),) = reported(await session.fetch(isolation_level=1)).values()
    assert (error, hw, lso, start) == (0, 2, 2, 0) and records


async def test_errors_are_repeated_until_they_clear(client):
    broker = client.broker
    broker.create_topic("other", 1)
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, {("other", 0): 0}))
    broker.delete_topic("other")
    gone = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1, -1, -1, b"")
    for _ in range(2):
        assert reported(await session.fetch()) == {("other", 0): gone}
    broker.create_topic("other", 1)
    assert reported(await session.fetch()) == {("other", 0): (0, 0, 0, 0, b"")}
    assert reported(await session.fetch()) == {}
    # The new log's changes reach the session.
    await produce(client, "other", 0)
    assert reported(await session.fetch())[("other", 0)][:4] == (0, 1, 1, 0)


async def test_an_out_of_range_position_is_an_error_every_time(client):
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, {("events", 0): 5}))
    for _ in range(2):
        assert reported(await session.fetch())[("events", 0)][0] == ErrorCode.OFFSET_OUT_OF_RANGE
    assert reported(await session.fetch({("events", 0): 0})) == {("events", 0): (0, 0, 0, 0, b"")}


async def test_min_bytes_waits_for_enough_from_several_partitions(client, mock_clock):
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH,
                                          {("events", p): 0 for p in range(3)}))
    result = {}

    async def run():
        result["r"] = await session.fetch(max_wait_ms=30_000, min_bytes=len(BATCH) + 1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        await produce(client, "events", 2)
        await trio.testing.wait_all_tasks_blocked()
        assert "r" not in result                        # one batch is not min_bytes
        mock_clock.jump(1.0)
        await produce(client, "events", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert "r" in result
    assert [(k, len(v[4])) for k, v in reported(result["r"]).items()] == \
        [(("events", 0), len(BATCH)), (("events", 2), len(BATCH))]


async def test_max_wait_ms_ends_a_wait_with_nothing_new(client, mock_clock):
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, {("events", 0): 0}))
    result = {}

    async def run():
        result["r"] = await session.fetch(max_wait_ms=500)
        result["at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.499)
        await trio.testing.wait_all_tasks_blocked()
        assert "r" not in result
        mock_clock.jump(0.002)
        await trio.testing.wait_all_tasks_blocked()
    assert reported(result["r"]) == {} and 0.5 <= result["at"] <= 0.501


async def test_session_errors_are_unchanged(client):
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, {("events", 0): 0}))
    r = await fetch(client, session.id, 5)
    assert (r.error_code, r.session_id) == (ErrorCode.INVALID_FETCH_SESSION_EPOCH, 0)
    r = await fetch(client, session.id + 1, 1)
    assert r.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert reported(await session.fetch()) == {}


async def test_incremental_responses_equal_reading_every_partition(client):
    """Random appends, log start moves, positions moving or not, partitions forgotten and
    added, topic deletion and recreation: each incremental response reports exactly what
    comparing a full read of every partition with what the client was told would."""
    broker = client.broker
    broker.create_topic("other", 2)
    rng = random.Random(227)
    everything = [("events", p) for p in range(3)] + [("other", p) for p in range(2)]
    positions = {tp: 0 for tp in everything[:3]}
    told: dict = {}
    session = Session(client, await fetch(client, 0, INITIAL_EPOCH, dict(positions)))
    for tp in positions:
        told[tp] = (0, 0, 0)
    other_exists = True
    moved: dict = {}
    for step in range(300):
        action = rng.random()
        topic, index = tp = rng.choice(everything)
        if action < 0.35:
            if topic == "events" or other_exists:
                await produce(client, topic, index)
        elif action < 0.42 and (topic == "events" or other_exists):
            log = broker.partition(topic, index)
            if log.high_watermark > log.log_start_offset:
                log.delete_records_before(rng.randint(log.log_start_offset + 1,
                                                      log.high_watermark))
        elif action < 0.45 and topic == "other":
            if other_exists:
                broker.delete_topic("other")
            else:
                broker.create_topic("other", 2)
            other_exists = not other_exists
        named = dict(moved)                             # the client names what it moved
        moved = {}
        forgotten = []
        for p in list(positions):
            roll = rng.random()
            if roll < 0.3:
                named[p] = positions[p]                 # named, position unchanged
            elif roll < 0.5:
                named[p] = positions[p] = rng.randint(0, 12)
            elif roll < 0.55 and len(positions) > 1:
                forgotten.append(p)
        for p in forgotten:
            del positions[p]
            told.pop(p, None)
            named.pop(p, None)
        if rng.random() < 0.2:
            extra = rng.choice(everything)
            if extra not in positions and extra not in forgotten:
                named[extra] = positions[extra] = 0
        isolation = rng.choice((0, 1))
        by_topic: dict = {}
        for t, p in forgotten:
            by_topic.setdefault(t, []).append(p)
        r = await session.fetch(named, isolation_level=isolation,
                                forgotten=[ForgottenTopic(topic=t, partitions=ps)
                                           for t, ps in by_topic.items()])
        # The oracle: a sessionless fetch of every position, compared with what was told.
        full = reported(await fetch(client, 0, -1, dict(positions), isolation_level=isolation))
        expected = {}
        for p, (error, hw, lso, start, records) in full.items():
            if error:
                expected[p] = full[p]
                told.pop(p, None)
            else:
                if records or told.get(p) != (hw, lso, start):
                    expected[p] = full[p]
                told[p] = (hw, lso, start)
        assert reported(r) == expected, step
        for p, (error, hw, lso, start, records) in expected.items():
            if not error and records and rng.random() < 0.7:
                positions[p] = moved[p] = hw if isolation == 0 else lso    # consumed


async def test_a_full_fetch_naming_a_partition_twice_reports_both_and_keeps_the_last(client):
    await produce(client, "events", 0)
    r = await client.call(K.FETCH, VERSION, replica_id=-1, max_wait_ms=0, min_bytes=1,
                          max_bytes=50 << 20, isolation_level=0, session_id=0,
                          session_epoch=INITIAL_EPOCH, topics=[FetchTopic(
                              topic="events", partitions=[
                                  FetchPartition(partition=0, fetch_offset=offset,
                                                 partition_max_bytes=1 << 20)
                                  for offset in (0, 1)])],
                          forgotten_topics_data=[])
    assert [(p.partition_index, len(p.records)) for p in r.responses[0].partitions] == \
        [(0, len(BATCH)), (0, 0)]
    session = Session(client, r)
    assert len(client.broker.partition("events", 0).waiters) == 1
    # The session holds the last (at offset 1): nothing new until the next append.
    assert reported(await session.fetch()) == {}
    await produce(client, "events", 0)
    r = reported(await session.fetch())
    assert list(r) == [("events", 0)] and r[("events", 0)][1] == 2
