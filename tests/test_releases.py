"""Kafka version emulation (wire/releases.py, `trioka.kafka.version`): the release tables are
consistent with one another and with the handlers, the default release is served whole, and a
broker posing as a release advertises, refuses and behaves as that release did. The APIs are
driven through the wire codec (wire_client.py), so each assertion is on what a client reads; the
server's refusal of versions outside the posed table is covered by compat_tests/
test_kafka_versions.py over real sockets."""

import time

import pytest

from controller_cluster import ControllerCluster
from record_batches import make_batch
from trioka.apis import APIS, as_release, table_for
from trioka.config import Config, ConfigSource, finalized, supported_features
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey as K
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.releases import DEFAULT, LONG_MAX, RELEASES, release
from wire_client import WireClient, memory_broker

Produce = protocol.request_class(K.PRODUCE)
ReassignRequest = protocol.request_class(K.ALTER_PARTITION_REASSIGNMENTS)
HbRequest = protocol.request_class(K.CONSUMER_GROUP_HEARTBEAT)


# --- the tables ---------------------------------------------------------------------------

def test_releases_are_in_order_and_ranges_only_grow_or_drop_old_versions():
    versions = [r.version for r in RELEASES.values()]
    assert versions == sorted(versions) and list(RELEASES)[0] == "2.8"
    previous = {}
    for r in RELEASES.values():
        for key, (lo, hi) in r.apis.items():
            assert 0 <= lo <= hi, (r, key)
            if key in previous:
                was_lo, was_hi = previous[key]
                assert hi >= was_hi, (r, key, "newest version went down")
                # Minimums rise only where Kafka removed old versions: 4.0 (KIP-896), except
                # JoinGroup v0-1, which 4.1 advertises again (KAFKA-19444).
                if (r.name, key) != ("4.1", K.JOIN_GROUP):
                    assert lo >= was_lo, (r, key)
                if lo > was_lo:
                    assert r.name == "4.0", (r, key)
        assert set(previous) <= set(r.apis), (r, "an API disappeared")
        previous = r.apis


def test_every_release_advertises_only_what_the_handlers_serve():
    for r in RELEASES.values():
        table = as_release(r)
        assert set(table) <= set(APIS) and set(table) <= set(r.apis)
        for key, api in table.items():
            lo, hi = api.versions
            assert APIS[key].versions[0] <= lo <= hi <= APIS[key].versions[1], (r, key)
            assert r.apis[key][0] <= lo and hi <= r.apis[key][1], (r, key)
            assert api.name == APIS[key].name


def test_the_default_release_is_served_whole():
    r = RELEASES[DEFAULT]
    assert set(r.apis) == set(APIS), "an API served but not in the default release, or back"
    assert {key: api.versions for key, api in as_release(r).items()} == r.apis
    for key, (lo, hi) in r.apis.items():
        assert APIS[key].versions[0] <= lo and hi <= APIS[key].versions[1], key


def test_what_kafka_removed_or_added_shows_in_the_tables():
    kip848 = {K.CONSUMER_GROUP_HEARTBEAT, K.CONSUMER_GROUP_DESCRIBE}
    for r in RELEASES.values():
        assert kip848 <= set(r.apis) if r.version >= (4, 0) else not kip848 & set(r.apis)
        assert (K.DESCRIBE_TOPIC_PARTITIONS in r.apis) == (r.version >= (3, 8))
    assert RELEASES["3.9"].apis[K.FETCH] == (0, 17) and RELEASES["4.0"].apis[K.FETCH] == (4, 17)
    assert RELEASES["4.0"].apis[K.PRODUCE] == (0, 12) and RELEASES["4.1"].apis[K.PRODUCE] == (0, 13)
    assert RELEASES["4.0"].apis[K.JOIN_GROUP] == (2, 9) and RELEASES["4.1"].apis[K.JOIN_GROUP] == (0, 9)
    # Emulated: the versions trioka never serves are cut (Fetch v0-3: message formats v0/v1).
    assert as_release(RELEASES["2.8"])[K.FETCH].versions == (4, 12)
    assert as_release(RELEASES["2.8"])[K.PRODUCE].versions == (0, 9)
    assert as_release(RELEASES["4.2"])[K.LIST_OFFSETS].versions == (1, 10)


def test_the_table_of_a_listener_is_built_once_per_release():
    config = Config({"trioka.kafka.version": "3.7"})
    assert table_for(config, None) is table_for(Config({"trioka.kafka.version": "3.7.0"}), None)
    assert table_for(config, None) is not table_for(Config(), None)


# --- the setting --------------------------------------------------------------------------

def test_release_names():
    assert release("3.7") is release("3.7.0") is release(" 3.7.2 ") is RELEASES["3.7"]
    assert Config().release is RELEASES[DEFAULT] and Config().trioka_kafka_version == DEFAULT
    for bad in ("2.7", "5.0", "3", "3.x", "latest", "3.7.0.1", ""):
        with pytest.raises(ValueError) as info:
            release(bad)
        assert str(info.value).startswith("trioka.kafka.version: unknown Kafka release")
        assert "2.8, 3.0," in str(info.value) and str(info.value).endswith("4.2")
    with pytest.raises(ValueError, match="trioka.kafka.version"):
        Config({"trioka.kafka.version": "2.7"})


def test_defaults_that_changed_follow_the_release():
    key = "log.message.timestamp.after.max.ms"
    assert Config().get(key) == 3_600_000                       # KIP-1030, Kafka 4.0
    old = Config({"trioka.kafka.version": "3.9"})
    assert old.get(key) == LONG_MAX
    assert old.synonyms(key) == [(ConfigSource.DEFAULT_CONFIG, LONG_MAX)]
    assert Config({"trioka.kafka.version": "3.9", key: 5000}).get(key) == 5000


def test_features_exist_from_kafka_4_0():
    assert supported_features(Config({"trioka.kafka.version": "3.9"})) == {}
    assert finalized(Config({"trioka.kafka.version": "3.9"})) == {}
    assert finalized(Config({"trioka.kafka.version": "3.9",
                             "trioka.transaction.version": 0})) == {}
    with pytest.raises(ValueError, match="needs Kafka 4.0 or later"):
        finalized(Config({"trioka.kafka.version": "3.9", "trioka.transaction.version": 2}))
    four = Config({"trioka.kafka.version": "4.0"})
    assert supported_features(four) == {"group.version": (0, 1), "transaction.version": (0, 2)}
    assert finalized(four) == {"group.version": 1, "transaction.version": 2}


# --- a broker posing as a release -----------------------------------------------------------

@pytest.fixture
def brokers():
    opened = []

    def open_one(kafka_version: str | None = None, **configs):
        if kafka_version is not None:
            configs["trioka.kafka.version"] = kafka_version
        broker = memory_broker(configs)
        broker.create_topic("t", 1)
        opened.append(broker)
        return WireClient(broker)

    yield open_one
    for broker in opened:
        broker.close()


async def api_versions(client: WireClient):
    r = await client.call(K.API_VERSIONS, 3, client_software_name="t",
                          client_software_version="1")
    assert r.error_code == 0
    return r, {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}


async def test_api_versions_are_the_release_s(brokers):
    r, ranges = await api_versions(brokers("2.8"))
    assert ranges == {key: api.versions for key, api in as_release(RELEASES["2.8"]).items()}
    assert ranges[K.PRODUCE] == (0, 9) and ranges[K.FETCH] == (4, 12)
    assert ranges[K.API_VERSIONS] == (0, 3) and K.CONSUMER_GROUP_HEARTBEAT not in ranges
    assert (r.supported_features, r.finalized_features) == ([], [])
    r, ranges = await api_versions(brokers("3.7"))
    assert ranges[K.PRODUCE] == (0, 10) and ranges[K.FETCH] == (4, 16)
    assert K.DESCRIBE_TOPIC_PARTITIONS not in ranges and K.CONSUMER_GROUP_HEARTBEAT not in ranges
    r, ranges = await api_versions(brokers())
    assert ranges == RELEASES[DEFAULT].apis
    assert [(f.name, f.min_version, f.max_version) for f in r.supported_features] == \
        [("group.version", 1, 1), ("transaction.version", 1, 2)]      # v3: minimum 1 at least
    assert [(f.name, f.max_version_level) for f in r.finalized_features] == \
        [("group.version", 1), ("transaction.version", 2)]


def produce(client, version: int, batch: bytes, topic: str = "t", transactional_id=None):
    return client.call(K.PRODUCE, version, transactional_id=transactional_id, acks=1,
                       timeout_ms=5000, topic_data=[Produce.TopicProduceData(
                           name=topic, partition_data=[
                               Produce.TopicProduceData.PartitionProduceData(index=0,
                                                                             records=batch)])])


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_produce_v0_to_2_is_served_before_kafka_4_0(brokers):
    old = brokers("3.7")
    for version, offset in ((0, 0), (1, 1), (2, 2)):
        r = await produce(old, version, make_batch([b"x"], base_timestamp=now_ms()))
        part = r.responses[0].partition_responses[0]
        assert (part.error_code, part.base_offset) == (0, offset), version
    # A legacy message set (magic 1) would need converting, which trioka does not do.
    r = await produce(old, 2, make_batch([b"x"], magic=1))
    assert r.responses[0].partition_responses[0].error_code == ErrorCode.INVALID_RECORD
    r = await produce(brokers("4.0"), 2, make_batch([b"x"], base_timestamp=now_ms()))
    part = r.responses[0].partition_responses[0]
    assert part.error_code == ErrorCode.UNSUPPORTED_VERSION


async def test_timestamps_ahead_are_refused_from_kafka_4_0(brokers):
    ahead = make_batch([b"x"], base_timestamp=now_ms() + 2 * 3600 * 1000)
    r = await produce(brokers("3.9"), 9, ahead)
    assert r.responses[0].partition_responses[0].error_code == 0
    r = await produce(brokers("4.0"), 9, ahead)
    assert r.responses[0].partition_responses[0].error_code == ErrorCode.INVALID_TIMESTAMP


async def test_transactional_batches_are_verified_from_kafka_3_6(brokers):
    """A transactional batch for a partition its transaction never added: written by a broker
    before 3.6 (the hanging transaction KIP-890 closed), refused from 3.6."""
    results = {}
    for kafka_version in ("3.5", "3.6"):
        client = brokers(kafka_version)
        init = await client.call(K.INIT_PRODUCER_ID, 4, transactional_id="tx",
                                 transaction_timeout_ms=60_000, producer_id=-1,
                                 producer_epoch=-1)
        batch = make_batch([b"x"], base_timestamp=now_ms(), producer_id=init.producer_id,
                           producer_epoch=init.producer_epoch, base_sequence=0,
                           attributes=0x10)      # transactional
        r = await produce(client, 9, batch, transactional_id="tx")
        results[kafka_version] = r.responses[0].partition_responses[0].error_code
    assert results == {"3.5": 0, "3.6": ErrorCode.INVALID_TXN_STATE}


# --- the versions the default release added to the handlers ----------------------------------

async def test_describe_groups_v6_says_group_id_not_found(brokers):
    client = brokers()
    await client.call(K.CONSUMER_GROUP_HEARTBEAT, 0, group_id="cg", member_id="",
                      member_epoch=0, rebalance_timeout_ms=30_000,
                      subscribed_topic_names=["t"], topic_partitions=[])
    r = await client.call(K.DESCRIBE_GROUPS, 6, groups=["nope", "cg", ""])
    assert [(g.group_id, g.error_code, g.error_message, g.group_state) for g in r.groups] == [
        ("nope", ErrorCode.GROUP_ID_NOT_FOUND, "Group nope not found.", "Dead"),
        ("cg", ErrorCode.GROUP_ID_NOT_FOUND, "Group cg is not a classic group.", "Dead"),
        ("", ErrorCode.INVALID_GROUP_ID, None, "Dead")]
    r = await client.call(K.DESCRIBE_GROUPS, 5, groups=["nope", "cg"])
    assert [(g.error_code, g.group_state) for g in r.groups] == [(0, "Dead"), (0, "Dead")]


async def test_consumer_group_describe_v1_gives_the_member_type(brokers):
    client = brokers()
    hb = await client.call(K.CONSUMER_GROUP_HEARTBEAT, 0, group_id="cg", member_id="",
                           member_epoch=0, rebalance_timeout_ms=30_000,
                           subscribed_topic_names=["t"], topic_partitions=[])
    for version, member_type in ((1, 1), (0, -1)):     # v0 has no such field: its default
        r = await client.call(K.CONSUMER_GROUP_DESCRIBE, version, group_ids=["cg"],
                              include_authorized_operations=False)
        [member] = r.groups[0].members
        assert (member.member_id, member.member_type) == (hb.member_id, member_type)


async def test_join_group_v0_uses_the_session_timeout_for_the_rebalance(brokers):
    client = brokers()
    Join = protocol.request_class(K.JOIN_GROUP)
    r = await client.call(K.JOIN_GROUP, 0, group_id="old", session_timeout_ms=10_000,
                          member_id="", protocol_type="consumer",
                          protocols=[Join.JoinGroupRequestProtocol(name="range", metadata=b"m")])
    assert r.error_code == 0 and r.generation_id == 1 and r.leader == r.member_id
    group = client.broker.groups.describe_group("old")
    assert group.members[r.member_id].rebalance_timeout_ms == 10_000
    d = await client.call(K.DELETE_GROUPS, 0, groups_names=["nope"])
    assert [(x.group_id, x.error_code) for x in d.results] == \
        [("nope", ErrorCode.GROUP_ID_NOT_FOUND)]


async def test_describe_cluster_v2_and_alter_partition_reassignments_v1(brokers):
    client = brokers()
    r = await client.call(K.DESCRIBE_CLUSTER, 2, include_cluster_authorized_operations=False,
                          endpoint_type=1, include_fenced_brokers=True)
    assert [(b.broker_id, b.is_fenced) for b in r.brokers] == [(1, False)]
    topic = ReassignRequest.ReassignableTopic
    r = await client.call(K.ALTER_PARTITION_REASSIGNMENTS, 1, timeout_ms=1000,
                          allow_replication_factor_change=False,
                          topics=[topic(name="t", partitions=[
                              topic.ReassignablePartition(partition_index=0, replicas=[1])])])
    assert r.allow_replication_factor_change is False
    assert r.responses[0].partitions[0].error_code == 0


def test_a_reassignment_may_be_kept_from_changing_the_replication_factor():
    c = ControllerCluster()
    for broker_id in (1, 2, 3, 4):
        c.start(broker_id)
    c.create_topic("foo", assignments=[(0, [1, 2])])
    with pytest.raises(KafkaError) as info:
        c.replication.alter_partition_reassignment("foo", 0, [1, 2, 3], False)
    assert (info.value.code, info.value.message) == (
        ErrorCode.INVALID_REPLICATION_FACTOR, "The replication factor is changed from 2 to 3")
    c.apply(c.replication.alter_partition_reassignment("foo", 0, [3, 4], False))
    # Mid-reassignment the partition is heading for [3, 4]: two replicas still.
    with pytest.raises(KafkaError) as info:
        c.replication.alter_partition_reassignment("foo", 0, [3], False)
    assert info.value.message == "The replication factor is changed from 2 to 1"
    c.apply(c.replication.alter_partition_reassignment("foo", 0, [2, 3], False))
    assert c.replication.alter_partition_reassignment("foo", 0, [1, 2, 3])   # allowed (v0)


async def test_list_transactions_v2_filters_by_a_whole_id_pattern(brokers):
    client = brokers()
    for tid in ("orders-1", "xorders-1", "payments"):
        r = await client.call(K.INIT_PRODUCER_ID, 4, transactional_id=tid,
                              transaction_timeout_ms=60_000, producer_id=-1, producer_epoch=-1)
        assert r.error_code == 0

    async def listed(pattern, version=2):
        r = await client.call(K.LIST_TRANSACTIONS, version, state_filters=[],
                              producer_id_filters=[], duration_filter=-1,
                              transactional_id_pattern=pattern)
        return r.error_code, sorted(t.transactional_id for t in r.transaction_states)

    assert await listed("orders-.*") == (0, ["orders-1"])          # the whole id, not a part
    assert await listed("orders-1") == (0, ["orders-1"])
    assert await listed(".*orders.*|pay.*") == (0, ["orders-1", "payments", "xorders-1"])
    assert await listed(None) == await listed("") == (0, ["orders-1", "payments", "xorders-1"])
    assert await listed("[") == (ErrorCode.INVALID_REGULAR_EXPRESSION, [])
    # RE2's syntax and its linear time: no lookaround; a pattern a backtracking engine would
    # spend hours on over a long id is answered at once.
    assert await listed("(?!pay).*") == (ErrorCode.INVALID_REGULAR_EXPRESSION, [])
    assert await listed("(x*)*" + "y" * 30) == (0, [])
