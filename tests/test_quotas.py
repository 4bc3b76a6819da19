"""Client quotas (security/quotas.py): Kafka's rate windows, throttle time and entity order,
driven by an explicit clock (milliseconds passed in), no sockets."""

import pytest

from trioka.security import quotas as q
from trioka.log.files import DiskFiles
from trioka.security.quotas import DEFAULT, ClientQuotas, Rate, throttle_time_ms


def test_rate_counts_at_least_samples_minus_one_windows():
    # Kafka's Rate.windowSize: with 11 samples of 1 s, a first burst is measured over 10 s.
    rate = Rate(11, 1000)
    rate.record(5_000_000, 0)
    assert rate.window_size_ms(0) == 10_000
    assert rate.measure(0) == 500_000
    assert rate.window_size_ms(500) == 10_500


def test_rate_uses_elapsed_time_once_windows_are_full():
    rate = Rate(11, 1000)
    for second in range(12):
        rate.record(1000, second * 1000)
    # 11 samples in use; the oldest began 1 s in (the first was reused at 11 s).
    assert rate.window_size_ms(11_500) == 10_500
    assert rate.measure(11_500) == pytest.approx(11_000 / 10.5)


def test_old_samples_expire():
    rate = Rate(3, 1000)
    rate.record(9000, 0)
    assert rate.measure(1000) == 9000 / 2
    # samples * window later the burst no longer counts.
    assert rate.measure(3000) == 0


def test_throttle_time_is_kafkas_formula():
    # (rate - quota) / quota * window: 2 MB/s measured against 1 MB/s over 10 s -> 10 s.
    rate = Rate(11, 1000)
    rate.record(20_000_000, 0)
    assert throttle_time_ms(rate, 1_000_000, 0) == 10_000
    within = Rate(11, 1000)
    within.record(9_000_000, 0)
    assert throttle_time_ms(within, 1_000_000, 0) == 0


def test_throttle_keeps_long_run_rate_at_the_quota():
    # A client that sends as soon as its throttle ends averages the quota (within 5%).
    quotas = ClientQuotas(None)
    quotas.alter((None, "app"), [(q.PRODUCER_BYTE_RATE, 1_000_000, False)])
    now, sent = 0, 0
    while now < 120_000:
        sent += 100_000
        now += max(quotas.record(q.PRODUCER_BYTE_RATE, "User:ANONYMOUS", "app", 100_000, now),
                   10)
    assert sent / (now / 1000) == pytest.approx(1_000_000, rel=0.10)


ORDER = [
    (("alice", "app"), ("alice", "app")),
    (("alice", DEFAULT), ("alice", "app")),
    (("alice", None), ("alice", "")),
    ((DEFAULT, "app"), ("alice", "app")),
    ((DEFAULT, DEFAULT), ("alice", "app")),
    ((DEFAULT, None), ("alice", "")),
    ((None, "app"), ("", "app")),
    ((None, DEFAULT), ("", "app")),
]


def test_entity_resolution_order():
    quotas = ClientQuotas(None)
    for i, (entity, _) in enumerate(ORDER):
        quotas.alter(entity, [(q.CONSUMER_BYTE_RATE, 1000 * (8 - i), False)])
    # Remove the most specific entity each time: the next in Kafka's order applies.
    for i, (entity, tags) in enumerate(ORDER):
        assert quotas.quota_for(q.CONSUMER_BYTE_RATE, "alice", "app") == (1000 * (8 - i), tags)
        quotas.alter(entity, [(q.CONSUMER_BYTE_RATE, 0, True)])
    assert quotas.quota_for(q.CONSUMER_BYTE_RATE, "alice", "app") is None
    assert not quotas.active


def test_keys_resolve_independently():
    quotas = ClientQuotas(None)
    quotas.alter(("bob", None), [(q.PRODUCER_BYTE_RATE, 500, False)])
    quotas.alter((None, DEFAULT), [(q.CONSUMER_BYTE_RATE, 700, False)])
    assert quotas.quota_for(q.PRODUCER_BYTE_RATE, "bob", "x")[0] == 500
    assert quotas.quota_for(q.CONSUMER_BYTE_RATE, "bob", "x")[0] == 700
    assert quotas.quota_for(q.PRODUCER_BYTE_RATE, "carol", "x") is None


def test_user_quota_is_shared_by_its_client_ids():
    quotas = ClientQuotas(None)
    quotas.alter(("bob", None), [(q.PRODUCER_BYTE_RATE, 1000, False)])
    assert quotas.record(q.PRODUCER_BYTE_RATE, "User:bob", "a", 9000, 0) == 0
    # The same sensor (user bob): a second client id pushes it over.
    assert quotas.record(q.PRODUCER_BYTE_RATE, "User:bob", "b", 2000, 0) == 1000
    # Another user is not limited.
    assert quotas.record(q.PRODUCER_BYTE_RATE, "User:eve", "a", 10 ** 9, 0) == 0


def test_default_client_quota_gives_each_client_id_its_own_sensor():
    quotas = ClientQuotas(None)
    quotas.alter((None, DEFAULT), [(q.PRODUCER_BYTE_RATE, 1000, False)])
    assert quotas.record(q.PRODUCER_BYTE_RATE, "User:ANONYMOUS", "a", 10_000, 0) == 0
    assert quotas.record(q.PRODUCER_BYTE_RATE, "User:ANONYMOUS", "b", 10_000, 0) == 0
    assert quotas.record(q.PRODUCER_BYTE_RATE, "User:ANONYMOUS", "a", 1000, 0) == 1000


def test_unrecord_takes_bytes_back():
    quotas = ClientQuotas(None)
    quotas.alter((None, "c"), [(q.CONSUMER_BYTE_RATE, 1000, False)])
    assert quotas.record(q.CONSUMER_BYTE_RATE, "User:ANONYMOUS", "c", 20_000, 0) == 10_000
    quotas.unrecord(q.CONSUMER_BYTE_RATE, "User:ANONYMOUS", "c", 20_000, 0)
    assert quotas.record(q.CONSUMER_BYTE_RATE, "User:ANONYMOUS", "c", 1000, 0) == 0


@pytest.mark.parametrize("components,message", [
    ([], "Invalid empty client quota entity"),
    ([("group", "g")], "Unhandled client quota entity type: group"),
    ([("user", "a"), ("user", "b")], "duplicate entity type user"),
])
def test_invalid_entities(components, message):
    entity, error = q.entity_of(components)
    assert entity is None and message in error


def test_entities_and_defaults():
    assert q.entity_of([("user", None), ("client-id", "x")]) == ((DEFAULT, "x"), None)
    assert q.components_of((DEFAULT, "x")) == [("user", None), ("client-id", "x")]


@pytest.mark.parametrize("key,value,remove,message", [
    ("producer_byte_rate", 1024, False, None),
    ("consumer_byte_rate", 0, True, None),
    ("bogus", 1, False, "Invalid configuration key bogus"),
    ("producer_byte_rate", -1, False, "must be positive"),
    ("producer_byte_rate", 0, False, "must be positive"),
    ("producer_byte_rate", 1.5, False, "must be a long"),
    ("request_percentage", 50, False, "not supported"),
])
def test_check_op(key, value, remove, message):
    error = q.check_op(key, value, remove)
    assert error is None if message is None else message in error


class Filter:
    def __init__(self, entity_type, match_type, match=None):
        self.entity_type, self.match_type, self.match = entity_type, match_type, match


def test_describe_filters():
    quotas = ClientQuotas(None)
    quotas.alter(("alice", None), [(q.PRODUCER_BYTE_RATE, 1, False)])
    quotas.alter(("alice", "app"), [(q.PRODUCER_BYTE_RATE, 2, False)])
    quotas.alter((DEFAULT, None), [(q.PRODUCER_BYTE_RATE, 3, False)])
    quotas.alter((None, "app"), [(q.CONSUMER_BYTE_RATE, 4, False)])

    def found(components, strict=False):
        code, _, entries = q.describe(quotas, components, strict)
        assert code == 0
        return sorted(str(e) for e, _ in entries)

    assert found([Filter("user", 0, "alice")]) == sorted(["('alice', None)", "('alice', 'app')"])
    assert found([Filter("user", 0, "alice")], strict=True) == ["('alice', None)"]
    assert found([Filter("user", 1)]) == ["(<default>, None)"]
    assert found([Filter("client-id", 2)]) == sorted(["('alice', 'app')", "(None, 'app')"])
    assert len(found([])) == 4
    code, message, _ = q.describe(quotas, [Filter("user", 1), Filter("user", 2)], False)
    assert code == 42 and "Duplicate" in message


def test_persisted_and_reloaded(tmp_path):
    import trio
    quotas = ClientQuotas(DiskFiles(str(tmp_path)))
    quotas.alter((DEFAULT, "x"), [(q.PRODUCER_BYTE_RATE, 2048, False)])
    quotas.alter(("u", None), [(q.CONSUMER_BYTE_RATE, 4096, False)])
    trio.run(quotas.persist)
    again = ClientQuotas(DiskFiles(str(tmp_path)))
    assert sorted(again.entries(), key=str) == sorted(quotas.entries(), key=str)
    assert again.active
    assert not (tmp_path / (q.FILE_NAME + ".tmp")).exists()
