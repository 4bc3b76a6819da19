"""Batched requests under an authorizer answer each item on its own, as KafkaApis does: OffsetFetch
v8+ per group (and its topics filtered or TOPIC_AUTHORIZATION_FAILED), FindCoordinator v4+ per
key, DescribeTransactions per id (topics filtered), ListTransactions filtered,
DescribeTopicPartitions (denied topics not told apart from unknown ones), AddPartitionsToTxn v3
per topic. Each request is encoded as a client sends it, decoded, passed through the broker's
authorizer (security/authorizer.serve) and its handler, and the response encoded and decoded
again: the assertions are on what a client would read (no sockets)."""

import pytest

from trioka.apis import APIS
from trioka.apis.context import Connection, RequestContext
from trioka.apis.offset_fetch import authorized_offsets
from trioka.broker import BrokerState
from trioka.config import Config, Listener
from trioka.security import acls as A
from trioka.security.authorizer import STANDARD_AUTHORIZER, serve
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey as K
from trioka.wire.errors import ErrorCode as E

ALICE = "User:alice"


class Wire:
    def __init__(self, broker: BrokerState):
        self.broker = broker
        self.correlation = 0

    async def call(self, api_key: int, version: int, principal: str = ALICE, **fields):
        self.correlation += 1
        key = api_key
        frame = protocol.encode_request(key, version, self.correlation, "unit",
                                        protocol.request_class(key)(**fields))[4:]
        header, pos = protocol.parse_request_header(frame)
        decoded = protocol.decode_request_body(header, frame, pos)
        connection = Connection("10.1.2.3:40000", None)
        connection.principal = principal
        response = await serve(self.broker.authorizer, APIS[key], self.broker, decoded,
                               RequestContext(header, connection))
        data = b"".join(protocol.encode_response(key, version, self.correlation, response))
        return protocol.decode_response(key, version, data[4:])[1]

    async def allow(self, resource_type: int, name: str, operation: int,
                    pattern: int = A.LITERAL) -> None:
        made = await self.broker.authorizer.create(
            [A.AclBinding(resource_type, name, pattern, ALICE, "*", operation, A.ALLOW)])
        assert made == [(E.NONE, None)]


@pytest.fixture
async def wire():
    broker = BrokerState(Config({"memory": True, "listeners": "PLAINTEXT://127.0.0.1:0",
                                 "authorizer.class.name": STANDARD_AUTHORIZER,
                                 "super.users": "User:admin"}))
    broker.open()
    broker.set_listeners([Listener("PLAINTEXT", "127.0.0.1", 9999)])
    for name in ("seen", "hidden"):
        broker.create_topic(name, 1)
    yield Wire(broker)
    broker.close()


def test_authorized_offsets_rule():
    found = {"seen": [(0, "c", 0)], "hidden": [(0, "c", 0), (1, None, 0)]}
    describable = {"seen"}.__contains__
    assert authorized_offsets(found, None, None) is found
    assert authorized_offsets(found, None, describable) == {"seen": [(0, "c", 0)]}
    assert authorized_offsets(found, ["asked"], describable) == {
        "seen": [(0, "c", 0)],
        "hidden": [(p, None, E.TOPIC_AUTHORIZATION_FAILED) for p in (0, 1)]}


OffsetFetch = protocol.request_class(K.OFFSET_FETCH)
FetchGroup = OffsetFetch.OffsetFetchRequestGroup
FetchTopics = FetchGroup.OffsetFetchRequestTopics


async def commit(wire, group: str) -> None:
    Commit = protocol.request_class(K.OFFSET_COMMIT)
    Topic = Commit.OffsetCommitRequestTopic
    answer = await wire.call(K.OFFSET_COMMIT, 8, principal="User:admin", group_id=group,
                             generation_id_or_member_epoch=-1, member_id="",
                             topics=[Topic(name=n, partitions=[Topic.OffsetCommitRequestPartition(
                                 partition_index=0, committed_offset=7)])
                                 for n in ("seen", "hidden")])
    assert {p.error_code for t in answer.topics for p in t.partitions} == {0}


async def test_offset_fetch_v8_answers_each_group_on_its_own(wire):
    for g in ("mine", "theirs"):
        await commit(wire, g)
    await wire.allow(A.GROUP, "mine", A.DESCRIBE)
    await wire.allow(A.TOPIC, "seen", A.DESCRIBE)
    named = [FetchTopics(name=n, partition_indexes=[0]) for n in ("seen", "hidden")]
    answer = await wire.call(K.OFFSET_FETCH, 8, groups=[
        FetchGroup(group_id="theirs", topics=named), FetchGroup(group_id="mine", topics=named),
        FetchGroup(group_id="mine", topics=None)])
    theirs, mine_named, mine_all = answer.groups
    assert (theirs.group_id, theirs.error_code, theirs.topics) == \
        ("theirs", E.GROUP_AUTHORIZATION_FAILED, [])
    assert mine_named.error_code == 0
    assert {t.name: [(p.committed_offset, p.error_code) for p in t.partitions]
            for t in mine_named.topics} == {"seen": [(7, 0)],
                                            "hidden": [(-1, E.TOPIC_AUTHORIZATION_FAILED)]}
    # All partitions: the topic without DESCRIBE is left out.
    assert [(t.name, [p.committed_offset for p in t.partitions]) for t in mine_all.topics] == \
        [("seen", [7])]


async def test_offset_fetch_v7_denies_the_group_and_hides_topics(wire):
    await commit(wire, "mine")
    answer = await wire.call(K.OFFSET_FETCH, 7, group_id="mine", topics=None)
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED and answer.topics == []
    await wire.allow(A.GROUP, "mine", A.READ)
    await wire.allow(A.TOPIC, "seen", A.READ)
    answer = await wire.call(K.OFFSET_FETCH, 7, group_id="mine", topics=None)
    assert answer.error_code == 0 and [t.name for t in answer.topics] == ["seen"]


async def test_find_coordinator_v4_answers_each_key(wire):
    await wire.allow(A.GROUP, "ok-", A.DESCRIBE, A.PREFIXED)
    answer = await wire.call(K.FIND_COORDINATOR, 4, key_type=0,
                             coordinator_keys=["ok-1", "no", "ok-2"])
    assert [(c.key, c.error_code, c.node_id, c.port) for c in answer.coordinators] == [
        ("ok-1", 0, 1, 9999), ("no", E.GROUP_AUTHORIZATION_FAILED, -1, -1),
        ("ok-2", 0, 1, 9999)]
    answer = await wire.call(K.FIND_COORDINATOR, 4, key_type=1, coordinator_keys=["ok-1"])
    assert answer.coordinators[0].error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # Before v4 the one key's denial is the answer's.
    answer = await wire.call(K.FIND_COORDINATOR, 3, key_type=0, key="no")
    assert answer.error_code == E.GROUP_AUTHORIZATION_FAILED and answer.node_id == -1


async def test_transactions_described_per_id_and_listed_filtered(wire):
    for tid in ("tx-mine", "tx-theirs"):
        answer = await wire.call(K.INIT_PRODUCER_ID, 4, principal="User:admin",
                                 transactional_id=tid, transaction_timeout_ms=60000,
                                 producer_id=-1, producer_epoch=-1)
        assert answer.error_code == 0
    await wire.allow(A.TRANSACTIONAL_ID, "tx-mine", A.DESCRIBE)
    answer = await wire.call(K.DESCRIBE_TRANSACTIONS, 0,
                             transactional_ids=["tx-theirs", "tx-mine", "tx-none"])
    assert [(s.transactional_id, s.error_code) for s in answer.transaction_states] == [
        ("tx-theirs", E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), ("tx-mine", 0),
        ("tx-none", E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)]
    listed = await wire.call(K.LIST_TRANSACTIONS, 1)
    assert [s.transactional_id for s in listed.transaction_states] == ["tx-mine"]
    everything = await wire.call(K.LIST_TRANSACTIONS, 1, principal="User:admin")
    assert sorted(s.transactional_id for s in everything.transaction_states) == \
        ["tx-mine", "tx-theirs"]


async def test_describe_topic_partitions_does_not_tell_denied_from_unknown(wire):
    await wire.allow(A.TOPIC, "seen", A.DESCRIBE)
    Req = protocol.request_class(K.DESCRIBE_TOPIC_PARTITIONS)
    named = await wire.call(K.DESCRIBE_TOPIC_PARTITIONS, 0, response_partition_limit=100,
                            topics=[Req.TopicRequest(name=n)
                                    for n in ("hidden", "seen", "nowhere")])
    assert [(t.name, t.error_code, len(t.partitions)) for t in named.topics] == [
        ("seen", 0, 1), ("hidden", E.TOPIC_AUTHORIZATION_FAILED, 0),
        ("nowhere", E.TOPIC_AUTHORIZATION_FAILED, 0)]
    everything = await wire.call(K.DESCRIBE_TOPIC_PARTITIONS, 0, response_partition_limit=100,
                                 topics=[])
    assert [t.name for t in everything.topics] == ["seen"]


async def test_add_partitions_to_txn_v3_needs_write_on_each_topic(wire):
    await wire.allow(A.TRANSACTIONAL_ID, "tx", A.WRITE)
    await wire.allow(A.TOPIC, "seen", A.WRITE)
    init = await wire.call(K.INIT_PRODUCER_ID, 4, transactional_id="tx",
                           transaction_timeout_ms=60000, producer_id=-1, producer_epoch=-1)
    assert init.error_code == 0
    Req = protocol.request_class(K.ADD_PARTITIONS_TO_TXN)
    answer = await wire.call(
        K.ADD_PARTITIONS_TO_TXN, 3, v3_and_below_transactional_id="tx",
        v3_and_below_producer_id=init.producer_id, v3_and_below_producer_epoch=init.producer_epoch,
        v3_and_below_topics=[Req.AddPartitionsToTxnTopic(name=n, partitions=[0])
                             for n in ("seen", "hidden", "__consumer_offsets")])
    assert {t.name: t.results_by_partition[0].partition_error_code
            for t in answer.results_by_topic_v3_and_below} == {
        "seen": E.OPERATION_NOT_ATTEMPTED, "hidden": E.TOPIC_AUTHORIZATION_FAILED,
        "__consumer_offsets": E.TOPIC_AUTHORIZATION_FAILED}
    # v4+ is the brokers': CLUSTER_ACTION.
    answer = await wire.call(K.ADD_PARTITIONS_TO_TXN, 4, transactions=[
        Req.AddPartitionsToTxnTransaction(transactional_id="tx", producer_id=init.producer_id,
                                          producer_epoch=init.producer_epoch, verify_only=True,
                                          topics=[])])
    assert answer.error_code == E.CLUSTER_AUTHORIZATION_FAILED
