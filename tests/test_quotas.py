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
    ("request_percentage", 50, False, None),
    ("request_percentage", 0.5, False, None),      # a double, as in Kafka
    ("controller_mutation_rate", 2.5, False, None),
    ("request_percentage", 0, False, "must be positive"),
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


def test_a_cluster_takes_every_quota_key():
    # The controller knows the client of a forwarded request (apis/envelope.py).
    assert q.check_op("controller_mutation_rate", 5, False, cluster=True) is None
    assert q.check_op("controller_mutation_rate", 0, True, cluster=True) is None
    assert q.check_op("request_percentage", 5, False, cluster=True) is None
    assert "Invalid configuration key" in q.check_op("bogus", 5, False, cluster=True)


# -- request_percentage (KIP-124) -------------------------------------------------------------

def test_active_flags_follow_the_keys_held():
    quotas = ClientQuotas(None)
    assert not (quotas.active or quotas.requests_active or quotas.mutations_active)
    quotas.alter((None, "app"), [(q.REQUEST_PERCENTAGE, 10, False)])
    assert quotas.requests_active and not quotas.active and not quotas.mutations_active
    quotas.alter(("bob", None), [(q.CONTROLLER_MUTATION_RATE, 1, False)])
    assert quotas.mutations_active
    quotas.alter((None, "app"), [(q.REQUEST_PERCENTAGE, 0, True)])
    assert not quotas.requests_active and quotas.mutations_active


def test_request_time_is_recorded_as_percent_of_a_thread():
    # 0.5 s of handling measured over Kafka's 10 s minimum window: 5 % of one thread.
    quotas = ClientQuotas(None)
    quotas.alter((None, "app"), [(q.REQUEST_PERCENTAGE, 10, False)])
    assert quotas.record_request_time("User:ANONYMOUS", "app", 0.5, 0) == 0
    # 1.5 s more: 20 % against a quota of 10 %: (20 - 10) / 10 * 10 s, bounded by one
    # quota window (ClientRequestQuotaManager.maxThrottleTimeMs).
    assert quotas.record_request_time("User:ANONYMOUS", "app", 1.5, 0) == 1000


def test_request_throttle_is_bounded_by_the_quota_window():
    quotas = ClientQuotas(None, samples=11, window_seconds=2)
    quotas.alter((DEFAULT, None), [(q.REQUEST_PERCENTAGE, 1, False)])
    assert quotas.record_request_time("User:alice", "x", 0.11, 0) == 0   # 11 %s / 20 s
    ms = quotas.record_request_time("User:alice", "x", 5.0, 0)
    assert ms == 2000


def test_request_throttle_unbounded_formula_below_the_window():
    # Just over the quota: the throttle is Kafka's formula, below the bound.
    quotas = ClientQuotas(None)
    quotas.alter((None, "app"), [(q.REQUEST_PERCENTAGE, 10, False)])
    # 1.01 s = 101 percent-seconds over 10 s = 10.1 %: (10.1 - 10) / 10 * 10 s = 100 ms.
    assert quotas.record_request_time("User:ANONYMOUS", "app", 1.01, 0) == 100
    # Another client id has no quota.
    assert quotas.record_request_time("User:ANONYMOUS", "other", 100.0, 0) == 0


def test_a_client_held_to_its_request_percentage():
    # A client costing 20 ms per request that sends again as soon as its throttle ends
    # averages its quota (10 % of the loop) over two minutes.
    quotas = ClientQuotas(None)
    quotas.alter((None, "app"), [(q.REQUEST_PERCENTAGE, 10, False)])
    now, busy = 0.0, 0.0
    while now < 120_000:
        busy += 0.020
        now += 20
        now += quotas.record_request_time("User:ANONYMOUS", "app", 0.020, now)
    assert busy / (now / 1000) * 100 == pytest.approx(10, rel=0.10)


class _Header:
    def __init__(self, api_key):
        self.api_key = api_key


class _Auth:
    def __init__(self, authenticated):
        self.authenticated = authenticated


class _Conn:
    def __init__(self, authenticator=None):
        self.authenticator = authenticator


class _Ctx:
    def __init__(self, api_key, authenticator=None):
        self.header = _Header(api_key)
        self.connection = _Conn(authenticator)


@pytest.mark.parametrize("api_key,auth,exempt", [
    (0, None, False),                 # Produce
    (3, None, False),                 # Metadata
    (18, None, False),                # ApiVersions after (or without) authentication
    (18, _Auth(False), True),         # ApiVersions before SASL authentication
    (18, _Auth(True), False),
    (17, _Auth(False), True),         # SaslHandshake
    (36, _Auth(True), True),          # SaslAuthenticate (re-authentication too)
    (27, None, True),                 # WriteTxnMarkers: a cluster action
    (56, None, True),                 # AlterPartition
    (63, None, True),                 # BrokerHeartbeat
    (19, None, False),                # CreateTopics
])
def test_exempt_from_request_quota(api_key, auth, exempt):
    assert q.exempt_from_request_quota(_Ctx(api_key, auth)) is exempt


def test_request_time_counts_steps_not_waits():
    """The instrument counts what the tracked task held the loop, not its time parked in an
    await (a virtual 30 s wait here), nor other tasks' steps."""
    import time

    import trio
    import trio.testing

    from trioka.security.request_time import RequestTime

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    results = {}

    async def other():
        spin(0.05)          # another task's step: not ours

    async def main():
        timer = RequestTime()
        timer.enable(True)
        timer.track()
        timer.take()
        spin(0.02)
        await trio.sleep(30)           # parked (virtual time): not counted
        spin(0.02)
        results["first"] = timer.take()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
        results["second"] = timer.take()
        timer.untrack()
        timer.enable(False)
        results["after"] = timer.take()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 0.04 <= results["first"] < 0.045 + 0.02
    assert results["second"] < 0.01
    assert results["after"] == 0.0


# -- controller_mutation_rate (KIP-599) -------------------------------------------------------

def test_token_bucket_is_kafkas():
    # Quota 5/s, 11 samples of 1 s: a burst of 55 tokens, refilled at 5 per second.
    bucket = q.TokenBucket(5, 11, 1000)
    assert bucket.measure(0) == 55
    bucket.record(60, 0)
    assert bucket.measure(0) == -5
    assert bucket.throttle_time_ms(0) == 1000      # -(-5) / 5 s
    assert bucket.measure(500) == pytest.approx(-2.5)
    assert bucket.throttle_time_ms(1000) == 0
    assert bucket.measure(100_000) == 55            # never above the burst


class _Clock:
    def __init__(self):
        self.ms = 0.0

    def __call__(self):
        return self.ms


def test_strict_quota_accepts_until_exhausted_then_refuses():
    from trioka.wire.errors import ErrorCode, KafkaError
    quotas = ClientQuotas(None)
    quotas.alter((None, "admin"), [(q.CONTROLLER_MUTATION_RATE, 2, False)])
    clock = _Clock()
    quota = quotas.mutation_quota("User:ANONYMOUS", "admin", True, clock)
    quota.record(20)            # 22 tokens: accepted, 2 left
    quota.record(10)            # accepted although it takes the bucket to -8
    assert quota.throttle_time_ms() == 0   # a strict quota throttles only when it refuses
    with pytest.raises(KafkaError) as e:
        quota.record(1)
    assert e.value.code == ErrorCode.THROTTLING_QUOTA_EXCEEDED
    assert e.value.message == "The throttling quota has been exceeded."
    assert quota.throttle_time_ms() == 4000          # 8 tokens at 2 per second
    clock.ms = 1500
    assert quota.throttle_time_ms() == 2500          # less the time since
    # The bucket is the client's: the next request sees it too, and is let in once refilled.
    clock.ms = 4000
    later = quotas.mutation_quota("User:ANONYMOUS", "admin", True, clock)
    later.record(1)
    # No quota for another client id: unbounded.
    assert quotas.mutation_quota("User:ANONYMOUS", "other", True, clock) is None


def test_permissive_quota_accepts_and_throttles():
    quotas = ClientQuotas(None, controller_samples=2, controller_window_seconds=1)
    quotas.alter((DEFAULT, None), [(q.CONTROLLER_MUTATION_RATE, 10, False)])
    clock = _Clock()
    quota = quotas.mutation_quota("User:bob", "", False, clock)
    quota.record(15)            # burst 20: 5 left
    assert quota.throttle_time_ms() == 0
    quota.record(15)            # -10: accepted, throttled for 1 s
    assert quota.throttle_time_ms() == 1000


def test_worker_thread_time_counts_for_the_task():
    """The CPU time of a worker thread the server runs a large decode or encode in counts for
    the connection's task; while nothing is measured the call is a plain to_thread call."""
    import time

    import trio

    from trioka.security.request_time import RequestTime

    def work(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        return "done"

    results = {}

    async def main():
        timer = RequestTime()
        timer.track()
        results["off"] = await timer.run_in_thread(work, 0.001)
        timer.enable(True)
        timer.take()
        results["on"] = await timer.run_in_thread(work, 0.03)
        results["taken"] = timer.take()
        timer.enable(False)

    trio.run(main)
    assert results["off"] == results["on"] == "done"
    assert results["taken"] >= 0.03
