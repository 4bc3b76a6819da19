"""Fetch with KIP-227 sessions (apis/fetch.py over log/fetch_sessions.py), through the wire codec:
opening a session with a full fetch, incremental fetches that carry only changes both ways,
forgotten topics, closing, the session errors, and eviction when the cache is full.

Every fetch here has max_wait_ms 0, so none waits (long polling is test_apis_fetch_long_poll.py).
"""

import pytest

from record_batches import make_batch
from trioka.log.fetch_sessions import FINAL_EPOCH, INITIAL_EPOCH
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

VERSION = 12            # topics by name; v13+ name them by id


def open_client(configs=None):
    broker = memory_broker(configs)
    broker.create_topic("events", 3)
    return WireClient(broker)


@pytest.fixture
async def client():
    c = open_client()
    yield c
    c.broker.close()


def wanted(topic="events", **offsets):
    """FetchTopics from p<index>=fetch_offset keywords: wanted(p0=0, p1=4)."""
    return [FetchTopic(topic=topic, partitions=[
        FetchPartition(partition=int(name[1:]), fetch_offset=offset, partition_max_bytes=1 << 20)
        for name, offset in offsets.items()])]


async def fetch(client, session_id, epoch, topics=(), forgotten=(), version=VERSION):
    return await client.call(K.FETCH, version, replica_id=-1, max_wait_ms=0, min_bytes=1,
                             max_bytes=50 << 20, isolation_level=0, session_id=session_id,
                             session_epoch=epoch, topics=list(topics),
                             forgotten_topics_data=list(forgotten))


def reported(response) -> dict:
    """(topic, partition) -> (error, high watermark, record bytes) of every reported partition."""
    return {(t.topic, p.partition_index): (p.error_code, p.high_watermark, len(p.records))
            for t in response.responses for p in t.partitions}


async def produce(client, index: int, values=(b"x" * 50,)) -> int:
    r = await client.call(K.PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=1000,
                          topic_data=[ProduceData(name="events", partition_data=[
                              ProduceData.PartitionProduceData(index=index,
                                                               records=make_batch(values))])])
    (p,) = r.responses[0].partition_responses
    assert p.error_code == 0
    return len(make_batch(values))


async def open_session(client, **offsets) -> int:
    r = await fetch(client, 0, INITIAL_EPOCH, wanted(**offsets))
    assert r.error_code == 0 and r.session_id > 0
    return r.session_id


async def test_a_full_fetch_opens_a_session_and_reports_every_partition(client):
    size = await produce(client, 1)
    r = await fetch(client, 0, INITIAL_EPOCH, wanted(p0=0, p1=0, p2=0))
    assert r.error_code == 0 and r.session_id > 0
    assert reported(r) == {("events", 0): (0, 0, 0), ("events", 1): (0, 1, size),
                           ("events", 2): (0, 0, 0)}


async def test_a_sessionless_fetch_gets_no_session(client):
    r = await fetch(client, 0, FINAL_EPOCH, wanted(p0=0))
    assert (r.error_code, r.session_id) == (0, 0)
    assert reported(r) == {("events", 0): (0, 0, 0)}


async def test_an_incremental_fetch_reports_only_changed_partitions(client):
    session = await open_session(client, p0=0, p1=0, p2=0)
    # Nothing happened: nothing to say.
    r = await fetch(client, session, 1)
    assert (r.error_code, r.session_id, reported(r)) == (0, session, {})
    size = await produce(client, 2)
    r = await fetch(client, session, 2)
    assert reported(r) == {("events", 2): (0, 1, size)}
    # The client moves its position past what it got: nothing new again.
    r = await fetch(client, session, 3, wanted(p2=1))
    assert reported(r) == {}
    size = await produce(client, 0)
    await produce(client, 2)
    r = await fetch(client, session, 4)
    assert reported(r) == {("events", 0): (0, 1, size), ("events", 2): (0, 2, size)}


async def test_a_partition_added_to_a_session_is_reported(client):
    session = await open_session(client, p0=0)
    r = await fetch(client, session, 1, wanted(p1=0))
    assert reported(r) == {("events", 1): (0, 0, 0)}
    size = await produce(client, 1)
    r = await fetch(client, session, 2)
    assert reported(r) == {("events", 1): (0, 1, size)}


async def test_forgotten_partitions_leave_the_session(client):
    session = await open_session(client, p0=0, p1=0, p2=0)
    r = await fetch(client, session, 1,
                    forgotten=[ForgottenTopic(topic="events", partitions=[0, 2])])
    assert (r.error_code, reported(r)) == (0, {})
    await produce(client, 0)
    await produce(client, 2)
    size = await produce(client, 1)
    r = await fetch(client, session, 2)
    assert reported(r) == {("events", 1): (0, 1, size)}


async def test_a_partition_error_is_reported_every_time(client):
    session = await open_session(client, p0=0)
    r = await fetch(client, session, 1, wanted(p0=5))
    assert reported(r) == {("events", 0): (ErrorCode.OFFSET_OUT_OF_RANGE, -1, 0)}
    r = await fetch(client, session, 2)
    assert reported(r) == {("events", 0): (ErrorCode.OFFSET_OUT_OF_RANGE, -1, 0)}
    # Back in range: reported again even though the high watermark did not change.
    r = await fetch(client, session, 3, wanted(p0=0))
    assert reported(r) == {("events", 0): (0, 0, 0)}


async def test_an_unknown_session_is_fetch_session_id_not_found(client):
    session = await open_session(client, p0=0)
    r = await fetch(client, session + 1, 1, wanted(p0=0))
    assert (r.error_code, r.session_id, r.responses) == \
        (ErrorCode.FETCH_SESSION_ID_NOT_FOUND, 0, [])


async def test_a_wrong_epoch_is_invalid_fetch_session_epoch_and_harmless(client):
    session = await open_session(client, p0=0)
    for wrong in (2, 7):
        r = await fetch(client, session, wrong, wanted(p0=0))
        assert (r.error_code, r.session_id, r.responses) == \
            (ErrorCode.INVALID_FETCH_SESSION_EPOCH, 0, [])
    r = await fetch(client, session, 1)
    assert (r.error_code, r.session_id) == (0, session)
    # An epoch is used once.
    r = await fetch(client, session, 1)
    assert r.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH


async def test_epoch_minus_1_closes_the_session_and_is_served_sessionless(client):
    session = await open_session(client, p0=0, p1=0)
    size = await produce(client, 0)
    r = await fetch(client, session, FINAL_EPOCH, wanted(p0=0, p1=0))
    assert (r.error_code, r.session_id) == (0, 0)
    assert reported(r) == {("events", 0): (0, 1, size), ("events", 1): (0, 0, 0)}
    r = await fetch(client, session, 1)
    assert r.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


async def test_epoch_0_with_a_session_id_replaces_the_session(client):
    old = await open_session(client, p0=0)
    r = await fetch(client, old, INITIAL_EPOCH, wanted(p1=0))
    new = r.session_id
    assert r.error_code == 0 and new not in (0, old)
    assert reported(r) == {("events", 1): (0, 0, 0)}
    assert (await fetch(client, old, 1)).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    await produce(client, 0)
    size = await produce(client, 1)
    r = await fetch(client, new, 1)
    assert reported(r) == {("events", 1): (0, 1, size)}    # the old session's p0 is not in it


async def test_names_and_ids_cannot_be_mixed_in_one_session(client):
    session = await open_session(client, p0=0)
    r = await fetch(client, session, 1, version=13)
    assert (r.error_code, r.session_id) == (ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR, 0)


async def test_sessions_by_topic_id_report_changes_by_id(client):
    topic_id = client.broker.topic("events").topic_id
    r = await fetch(client, 0, INITIAL_EPOCH, [FetchTopic(topic_id=topic_id, partitions=[
        FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])], version=13)
    assert r.error_code == 0 and r.session_id > 0
    size = await produce(client, 0)
    r2 = await fetch(client, r.session_id, 1, version=13)
    assert [(t.topic_id, [(p.partition_index, len(p.records)) for p in t.partitions])
            for t in r2.responses] == [(topic_id, [(0, size)])]


async def test_a_full_cache_evicts_the_least_recently_used_session():
    client = open_client({"max.incremental.fetch.session.cache.slots": 2})
    try:
        a = await open_session(client, p0=0)
        b = await open_session(client, p1=0)
        assert (await fetch(client, a, 1)).error_code == 0     # a used after b
        c = await open_session(client, p2=0)                    # evicts b
        assert (await fetch(client, b, 1)).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        assert (await fetch(client, a, 2)).error_code == 0
        assert (await fetch(client, c, 1)).error_code == 0
    finally:
        client.broker.close()


async def test_no_cache_slots_means_every_full_fetch_is_sessionless():
    client = open_client({"max.incremental.fetch.session.cache.slots": 0})
    try:
        r = await fetch(client, 0, INITIAL_EPOCH, wanted(p0=0))
        assert (r.error_code, r.session_id) == (0, 0)
        assert reported(r) == {("events", 0): (0, 0, 0)}
    finally:
        client.broker.close()


async def test_forgetting_every_partition_closes_the_session(client):
    session = await open_session(client, p0=0)
    r = await fetch(client, session, 1, forgotten=[ForgottenTopic(topic="events",
                                                                 partitions=[0])])
    assert (r.error_code, r.session_id) == (0, 0)
    assert (await fetch(client, session, 2)).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
