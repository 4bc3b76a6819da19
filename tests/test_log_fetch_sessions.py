"""The fetch session cache (log/fetch_sessions.py, KIP-227) on its own: session ids and epochs,
the errors Kafka answers, least-recently-used eviction, and what an incremental response must
report. The handler's use of it is in test_apis_fetch_sessions.py."""

import pytest

from trioka.log.fetch_sessions import CachedPartition, FetchSessionCache
from trioka.wire.errors import ErrorCode, KafkaError


def error_of(cache: FetchSessionCache, session_id: int, epoch: int) -> int:
    with pytest.raises(KafkaError) as info:
        cache.get(session_id, epoch)
    return info.value.code


def test_a_new_session_has_a_positive_id_and_expects_epoch_1():
    cache = FetchSessionCache(slots=10)
    sessions = [cache.new_session(uses_topic_ids=False) for _ in range(5)]
    ids = [s.session_id for s in sessions]
    assert len(set(ids)) == 5 and all(0 < i <= 0x7FFFFFFF for i in ids)
    assert all(s.epoch == 1 for s in sessions)
    assert cache.get(ids[2], 1) is sessions[2]


def test_unknown_session_and_wrong_epoch_are_kafkas_errors():
    cache = FetchSessionCache(slots=10)
    session = cache.new_session(uses_topic_ids=True)
    assert error_of(cache, session.session_id + 1, 1) == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    for wrong in (0, 2, -1):
        assert error_of(cache, session.session_id, wrong) == \
            ErrorCode.INVALID_FETCH_SESSION_EPOCH
    # A wrong epoch leaves the session as it was.
    assert cache.get(session.session_id, 1) is session


def test_epochs_advance_and_wrap_to_1_after_int32_max():
    cache = FetchSessionCache(slots=1)
    session = cache.new_session(uses_topic_ids=False)
    session.next_epoch()
    assert session.epoch == 2
    assert error_of(cache, session.session_id, 1) == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    session.epoch = 0x7FFFFFFF
    session.next_epoch()
    assert session.epoch == 1       # never 0 (that opens a session) nor negative


def test_removed_sessions_are_gone():
    cache = FetchSessionCache(slots=4)
    session = cache.new_session(uses_topic_ids=False)
    cache.remove(session.session_id)
    cache.remove(session.session_id)        # removing twice is harmless
    assert error_of(cache, session.session_id, 1) == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_a_full_cache_evicts_the_least_recently_used_session():
    cache = FetchSessionCache(slots=3)
    a, b, c = (cache.new_session(uses_topic_ids=False) for _ in range(3))
    cache.get(a.session_id, 1)      # a is used: b is now the least recently used
    d = cache.new_session(uses_topic_ids=False)
    assert d is not None
    assert error_of(cache, b.session_id, 1) == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    for s in (a, c, d):
        assert cache.get(s.session_id, 1) is s
    # Now a, c and d were used in that order: a goes next.
    cache.new_session(uses_topic_ids=False)
    assert error_of(cache, a.session_id, 1) == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert len(cache.sessions) == 3


def test_no_slots_means_no_sessions():
    cache = FetchSessionCache(slots=0)
    assert cache.new_session(uses_topic_ids=False) is None
    assert cache.sessions == {}


def test_an_incremental_response_reports_only_what_changed():
    cp = CachedPartition("events", None, 0, fetch_offset=0, max_bytes=1 << 20)
    # Never reported: the first answer always includes it.
    assert cp.must_report(False, 0, 0, 0, 0)
    assert not cp.must_report(False, 0, 0, 0, 0)
    assert cp.must_report(True, 0, 0, 0, 0)             # records
    assert cp.must_report(False, 0, 5, 0, 0)            # high watermark
    assert cp.must_report(False, 0, 5, 3, 0)            # last stable offset
    assert cp.must_report(False, 0, 5, 3, 2)            # log start offset
    assert not cp.must_report(False, 0, 5, 3, 2)


def test_an_error_is_reported_and_the_partition_again_once_it_clears():
    cp = CachedPartition("events", None, 0, fetch_offset=0, max_bytes=1 << 20)
    assert cp.must_report(False, 0, 4, 4, 0)
    assert cp.must_report(False, ErrorCode.OFFSET_OUT_OF_RANGE, -1, -1, -1)
    # Same offsets as reported before the error: sent again, the client dropped its view.
    assert cp.must_report(False, 0, 4, 4, 0)
    assert not cp.must_report(False, 0, 4, 4, 0)


def test_partitions_that_returned_data_go_to_the_back():
    cache = FetchSessionCache(slots=1)
    session = cache.new_session(uses_topic_ids=False)
    for i in range(4):
        session.partitions[("events", i)] = CachedPartition("events", None, i, 0, 1 << 20)
    session.rotate([("events", 0), ("events", 2), ("gone", 9)])
    assert list(session.partitions) == [("events", 1), ("events", 3), ("events", 0),
                                        ("events", 2)]


def test_session_ids_are_random_positive_int32s_unique_in_the_cache():
    # Kafka draws session ids at random: one client cannot guess the next one another gets.
    cache = FetchSessionCache(slots=2000)
    ids = [cache.new_session(False).session_id for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(0 < i <= 0x7FFFFFFF for i in ids)
    steps = {b - a for a, b in zip(ids, ids[1:])}
    assert len(steps) > 1000          # a counter would give one step
    assert max(ids) - min(ids) > 1 << 28


def test_a_new_session_id_is_never_one_in_use():
    cache = FetchSessionCache(slots=10)
    in_use = {cache.new_session(False).session_id for _ in range(10)}
    for _ in range(1000):
        assert cache.new_session_id() not in set(cache.sessions)
    assert set(cache.sessions) == in_use
