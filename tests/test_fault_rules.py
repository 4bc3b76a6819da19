"""Replayable chaos without sockets: seeded probabilities, matching on partition, group,
transactional id and node, per-partition errors split from the rest of a request, throttles,
fault files, the admin endpoint's lists of rules and the node's round-trip delay."""

import json
import random
import uuid

import pytest

from trioka.controls import endpoint
from trioka.controls.fault_file import check_nodes, read_fault_file, rules_from_json
from trioka.controls.rules import Controls, Rule, handle_partly
from trioka.node.controls import MAX_RTT_MS, NodeControls
from trioka.wire import partition_errors, protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import RequestHeader
from trioka.wire.request_names import (request_groups, request_partitions,
                                       request_transactional_ids)
from trioka.apis import APIS
from trioka.apis.context import Connection, RequestContext
from wire_client import memory_broker
from record_batches import make_batch

K = ApiKey
Produce = protocol.request_class(K.PRODUCE)
ProduceData = Produce.TopicProduceData
Fetch = protocol.request_class(K.FETCH)
FetchTopic = Fetch.FetchTopic
FindCoordinator = protocol.request_class(K.FIND_COORDINATOR)
JoinGroup = protocol.request_class(K.JOIN_GROUP)
OffsetFetch = protocol.request_class(K.OFFSET_FETCH)
DescribeGroups = protocol.request_class(K.DESCRIBE_GROUPS)
InitProducerId = protocol.request_class(K.INIT_PRODUCER_ID)
AddPartitionsToTxn = protocol.request_class(K.ADD_PARTITIONS_TO_TXN)
AddOffsetsToTxn = protocol.request_class(K.ADD_OFFSETS_TO_TXN)
EndTxn = protocol.request_class(K.END_TXN)

NLF = ErrorCode.NOT_LEADER_OR_FOLLOWER


def produce(*parts, acks=-1, transactional_id=None, records=b""):
    """A Produce request naming (topic, partition) pairs, in the order given."""
    topics: dict[str, list[int]] = {}
    for topic, partition in parts:
        topics.setdefault(topic, []).append(partition)
    return Produce(transactional_id=transactional_id, acks=acks, timeout_ms=1000, topic_data=[
        ProduceData(name=t, partition_data=[
            ProduceData.PartitionProduceData(index=p, records=records) for p in ps])
        for t, ps in topics.items()])


def header(key, version=9, client_id="app"):
    return RequestHeader(int(key), version, 7, client_id)


def decide(controls, key, request, version=9):
    return controls.decide(header(key, version), request)


def applied_at(controls, requests, key=K.PRODUCE):
    """The 1-based positions, in `requests`, of the requests some fault was applied to."""
    return [i for i, r in enumerate(requests, 1) if decide(controls, key, r) is not None]


# --- probability and seed ---

def test_the_same_seed_applies_faults_to_the_same_requests():
    requests = [produce(("t", 0))] * 400
    runs = []
    for _ in range(2):
        c = Controls()
        rule = c.error("NOT_LEADER_OR_FOLLOWER", api="Produce", probability=0.3, seed=42)
        runs.append((applied_at(c, requests), rule.applied_at))
    assert runs[0] == runs[1]
    positions, recorded = runs[0]
    assert positions == recorded
    assert 80 < len(positions) < 160          # about 30% of 400
    other = Controls()
    other.error("NOT_LEADER_OR_FOLLOWER", probability=0.3, seed=43)
    assert applied_at(other, requests) != positions


def test_one_draw_per_match_composes_with_after_every_and_count():
    """The N-th match gets the N-th draw of random.Random(seed), whether due or not; after,
    every and count pick the due matches as without a probability."""
    c = Controls()
    c.drop_response(api="Produce", topic="t", after=3, every=2, count=10, probability=0.5,
                    seed=7)
    requests = [produce(("t", 0)) if i % 3 else produce(("other", 0)) for i in range(200)]
    got = applied_at(c, requests)
    draws = random.Random(7)
    expected, match = [], 0
    for i, r in enumerate(requests, 1):
        if r.topic_data[0].name != "t":
            continue                   # not a match: no draw
        match += 1
        draw = draws.random()
        if match > 3 and (match - 4) % 2 == 0 and draw < 0.5 and len(expected) < 10:
            expected.append(i)
    assert got == expected and len(got) == 10


def test_a_rule_without_a_seed_picks_one_and_shows_it_for_a_replay():
    c = Controls()
    first = c.disconnect("after", api="Produce", probability=0.25)
    assert isinstance(first.seed, int)
    requests = [produce(("t", 0))] * 100
    pattern = applied_at(c, requests)
    listed = c.list()[0]
    assert listed["seed"] == first.seed and listed["applied_at"] == pattern
    again = Controls()
    again.load([listed])               # GET /controls output given back: counts ignored
    assert applied_at(again, requests) == pattern
    assert again.list()[0]["matched"] == 100


def test_probability_and_seed_are_checked():
    for bad, complaint in [(0, "more than 0"), (1.5, "at most 1"), ("x", "a number"),
                           (True, "a number")]:
        with pytest.raises(ValueError, match=complaint):
            Rule("drop_response", probability=bad)
    with pytest.raises(ValueError, match="seed must be an integer"):
        Rule("drop_response", probability=0.5, seed="abc")
    assert Rule("drop_response").seed is None          # certain rules draw nothing


# --- matching: partition, group, transactional id, node ---

def test_a_partition_rule_matches_requests_naming_that_partition():
    c = Controls()
    rule = c.delay(5, topic="t", partition=1)
    assert decide(c, K.PRODUCE, produce(("t", 0), ("t", 1))).delay_ms == 5
    assert decide(c, K.PRODUCE, produce(("t", 0), ("u", 1))) is None
    fetch = Fetch(topics=[FetchTopic(topic="t", partitions=[
        FetchTopic.FetchPartition(partition=1)])])
    assert decide(c, K.FETCH, fetch, version=12).delay_ms == 5
    assert rule.matched == 2
    with pytest.raises(ValueError, match="partition needs the topic"):
        Rule("delay", delay_ms=1, partition=0)


def test_partitions_named_by_topic_id_and_in_nested_arrays():
    topic_id = uuid.uuid4()
    fetch = Fetch(topics=[FetchTopic(topic_id=topic_id, partitions=[
        FetchTopic.FetchPartition(partition=3)])])
    assert request_partitions(K.FETCH, fetch, {topic_id: "t"}.get) == {("t", 3)}
    txn = AddPartitionsToTxn(transactions=[AddPartitionsToTxn.AddPartitionsToTxnTransaction(
        transactional_id="tx", topics=[AddPartitionsToTxn.AddPartitionsToTxnTopic(
            name="t", partitions=[0, 2])])])
    assert request_partitions(K.ADD_PARTITIONS_TO_TXN, txn) == {("t", 0), ("t", 2)}


@pytest.mark.parametrize("key, request_, groups", [
    (K.JOIN_GROUP, JoinGroup(group_id="g1"), {"g1"}),
    (K.OFFSET_FETCH, OffsetFetch(groups=[OffsetFetch.OffsetFetchRequestGroup(group_id="g1"),
                                         OffsetFetch.OffsetFetchRequestGroup(group_id="g2")]),
     {"g1", "g2"}),
    (K.FIND_COORDINATOR, FindCoordinator(key="g1", key_type=0), {"g1"}),
    (K.FIND_COORDINATOR, FindCoordinator(key_type=0, coordinator_keys=["g1", "g3"]),
     {"g1", "g3"}),
    (K.FIND_COORDINATOR, FindCoordinator(key="g1", key_type=1), set()),
    (K.DESCRIBE_GROUPS, DescribeGroups(groups=["g1", "g2"]), {"g1", "g2"}),
    (K.ADD_OFFSETS_TO_TXN, AddOffsetsToTxn(transactional_id="tx", group_id="g1"), {"g1"}),
    (K.PRODUCE, produce(("t", 0)), set()),
])
def test_the_groups_a_request_names(key, request_, groups):
    assert request_groups(key, request_) == groups


@pytest.mark.parametrize("key, request_, ids", [
    (K.INIT_PRODUCER_ID, InitProducerId(transactional_id="tx"), {"tx"}),
    (K.INIT_PRODUCER_ID, InitProducerId(transactional_id=None), set()),
    (K.PRODUCE, produce(("t", 0), transactional_id="tx"), {"tx"}),
    (K.ADD_PARTITIONS_TO_TXN, AddPartitionsToTxn(v3_and_below_transactional_id="tx"), {"tx"}),
    (K.ADD_PARTITIONS_TO_TXN, AddPartitionsToTxn(transactions=[
        AddPartitionsToTxn.AddPartitionsToTxnTransaction(transactional_id="a"),
        AddPartitionsToTxn.AddPartitionsToTxnTransaction(transactional_id="b")]), {"a", "b"}),
    (K.END_TXN, EndTxn(transactional_id="tx"), {"tx"}),
    (K.FIND_COORDINATOR, FindCoordinator(key_type=1, coordinator_keys=["tx"]), {"tx"}),
    (K.FIND_COORDINATOR, FindCoordinator(key="tx", key_type=0), set()),
])
def test_the_transactional_ids_a_request_names(key, request_, ids):
    assert request_transactional_ids(key, request_) == ids


def test_rules_match_on_group_and_transactional_id():
    c = Controls()
    blocked = c.error("COORDINATOR_NOT_AVAILABLE", api="FindCoordinator", group="blocked")
    txn = c.error("CONCURRENT_TRANSACTIONS", transactional_id="tx")
    fault = decide(c, K.FIND_COORDINATOR, FindCoordinator(key="blocked", key_type=0),
                   version=3)
    assert fault.rule is blocked and fault.error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert decide(c, K.FIND_COORDINATOR, FindCoordinator(key="free", key_type=0),
                  version=3) is None
    # The same key as a transactional id is not the group.
    assert decide(c, K.FIND_COORDINATOR, FindCoordinator(key="blocked", key_type=1),
                  version=3) is None
    assert decide(c, K.END_TXN, EndTxn(transactional_id="tx"), version=3).rule is txn
    assert decide(c, K.END_TXN, EndTxn(transactional_id="other"), version=3) is None
    assert (blocked.matched, txn.matched) == (1, 1)


def test_a_node_takes_only_its_own_rules():
    c = Controls(node_id=2)
    assert c.add("delay", delay_ms=1, node=2).node == 2
    with pytest.raises(ValueError, match="for node 3, this is node 2"):
        c.add("delay", delay_ms=1, node=3)
    added = c.load([{"action": "delay", "delay_ms": 1, "node": 3},
                    {"action": "delay", "delay_ms": 2}], only_this_node=True)
    assert [r.delay_ms for r in added] == [2]
    with pytest.raises(ValueError, match="rule 1: the rule is for node 3"):
        c.load([{"action": "delay", "delay_ms": 1, "node": 3}])


# --- partition errors ---

def test_partition_errors_fail_named_partitions_only():
    c = Controls()
    first = c.error(NLF, topic="t", partition=0)
    second = c.error("KAFKA_STORAGE_ERROR", topic="t", partition=0)   # same partition
    third = c.error("UNKNOWN_TOPIC_OR_PARTITION", topic="u", partition=2, message="gone")
    fault = decide(c, K.PRODUCE, produce(("t", 0), ("t", 1), ("u", 2)))
    assert fault.action is None and fault.rule is None
    assert fault.failed_partitions == {
        ("t", 0): (NLF, f"NOT_LEADER_OR_FOLLOWER injected by trioka control {first.id}"),
        ("u", 2): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "gone")}
    # The second rule matched and was due, but the partition was taken: not applied.
    assert [(r.matched, r.applied) for r in (first, second, third)] == [(1, 1), (1, 0), (1, 1)]
    # On an API not answered per partition, a partition rule fails the whole request.
    offsets = OffsetFetch(groups=[OffsetFetch.OffsetFetchRequestGroup(
        group_id="g", topics=[OffsetFetch.OffsetFetchRequestGroup.OffsetFetchRequestTopics(
            name="t", partition_indexes=[0])])])
    fault = decide(c, K.OFFSET_FETCH, offsets)
    assert (fault.action, fault.rule, fault.error) == ("error", first, NLF)


def test_a_whole_request_fault_leaves_partition_errors_unapplied():
    c = Controls()
    part = c.error(NLF, topic="t", partition=0)
    c.disconnect("before", api="Produce", count=1)
    fault = decide(c, K.PRODUCE, produce(("t", 0)))
    assert fault.action == "disconnect" and fault.failed_partitions is None
    assert (part.matched, part.applied) == (1, 0)
    fault = decide(c, K.PRODUCE, produce(("t", 0)))
    assert fault.action is None and ("t", 0) in fault.failed_partitions
    # Handled, then never answered: the partition errors apply with the drop.
    c.drop_response(api="Produce", count=1)
    fault = decide(c, K.PRODUCE, produce(("t", 0)))
    assert fault.action == "drop_response" and ("t", 0) in fault.failed_partitions
    assert part.applied_at == [2, 3]


def test_a_list_of_errors_is_answered_one_per_application():
    """librdkafka's push_request_errors: each matching request takes the next code; NONE is
    served normally; the rule ends with the list."""
    c = Controls()
    rule = c.error([NLF, "NONE", "REQUEST_TIMED_OUT"], topic="t", partition=0)
    got = []
    for _ in range(5):
        fault = decide(c, K.PRODUCE, produce(("t", 0), ("t", 1)))
        got.append(None if fault is None else fault.failed_partitions[("t", 0)][0])
    assert got == [NLF, None, ErrorCode.REQUEST_TIMED_OUT, None, None]
    assert (rule.count, rule.applied, rule.matched, rule.exhausted) == (3, 3, 5, True)
    assert rule.to_dict()["errors"] == ["NOT_LEADER_OR_FOLLOWER", "NONE", "REQUEST_TIMED_OUT"]
    whole = Controls()
    whole.error(["REBALANCE_IN_PROGRESS", "NONE"], api="Heartbeat")
    heartbeat = protocol.request_class(K.HEARTBEAT)(group_id="g")
    assert decide(whole, K.HEARTBEAT, heartbeat).error == ErrorCode.REBALANCE_IN_PROGRESS
    assert decide(whole, K.HEARTBEAT, heartbeat) is None
    with pytest.raises(ValueError, match="count 4 is more than the 2 errors"):
        Rule("error", errors=[6, 0], count=4)
    with pytest.raises(ValueError, match="needs an error code, or a list"):
        Rule("error", error=6, errors=[6])


def test_split_takes_the_failed_partitions_out_and_merge_restores_request_order():
    request = produce(("a", 0), ("a", 1), ("b", 0), ("b", 1))
    failed = {("a", 1): (NLF, "m"), ("b", 0): (NLF, "m")}
    handled, failing = partition_errors.split(K.PRODUCE, request, failed)
    assert [(t.name, [p.index for p in t.partition_data]) for t in handled.topic_data] == [
        ("a", [0]), ("b", [1])]
    assert [(t.name, [p.index for p in t.partition_data]) for t in failing.topic_data] == [
        ("a", [1]), ("b", [0])]
    assert [len(t.partition_data) for t in request.topic_data] == [2, 2]   # left as it was
    everything = {(t, p): (NLF, "m") for t in "ab" for p in (0, 1)}
    assert partition_errors.split(K.PRODUCE, request, everything)[0] is None
    # Fetch is read whole (its session keeps every partition), without waiting.
    fetch = Fetch(max_wait_ms=500, topics=[FetchTopic(topic="a", partitions=[
        FetchTopic.FetchPartition(partition=0), FetchTopic.FetchPartition(partition=1)])])
    handled, failing = partition_errors.split(K.FETCH, fetch, {("a", 1): (NLF, "m")})
    assert len(handled.topics[0].partitions) == 2 and handled.max_wait_ms == 0
    assert fetch.max_wait_ms == 500
    assert [p.partition for p in failing.topics[0].partitions] == [1]


def roundtrip(key, version, response):
    frame = b"".join(protocol.encode_response(key, version, 7, response))
    return protocol.decode_response(key, version, frame[4:])[1]


@pytest.mark.parametrize("version", [3, 9, 13])
async def test_a_produce_with_a_failed_partition_appends_the_others(version):
    """Through the Produce handler of an in-memory broker: the failed partition is answered
    with the error and nothing is appended to it; the others are appended as usual."""
    broker = memory_broker()
    try:
        broker.create_topic("a", 2)
        broker.create_topic("b", 1)
        ids = {broker.logs.topic(name).topic_id: name for name in ("a", "b")}
        by_id = {name: tid for tid, name in ids.items()}

        def topic(name, indexes):
            return ProduceData(name=name if version < 13 else "",
                               topic_id=by_id[name] if version >= 13 else None,
                               partition_data=[ProduceData.PartitionProduceData(
                                   index=i, records=make_batch([b"v"])) for i in indexes])

        request = Produce(transactional_id=None, acks=-1, timeout_ms=1000,
                          topic_data=[topic("a", [0, 1]), topic("b", [0])])
        c = Controls(topic_name_of=ids.get)
        c.error(NLF, topic="a", partition=1, message="moved")
        h = header(K.PRODUCE, version)
        connection = Connection("10.1.2.3:40000", None)
        fault = c.decide(h, request)

        async def handle(rest):
            return await APIS[K.PRODUCE].handle(broker, rest, RequestContext(h, connection))

        response = roundtrip(K.PRODUCE, version, await handle_partly(
            h, request, fault.failed_partitions, handle, ids.get))
        got = [(t.name if version < 13 else ids[t.topic_id], p.index, p.error_code,
                p.base_offset) for t in response.responses for p in t.partition_responses]
        assert got == [("a", 0, 0, 0), ("a", 1, NLF, -1), ("b", 0, 0, 0)]
        if version >= 8:
            assert response.responses[0].partition_responses[1].error_message == "moved"
        ends = {(t, p): broker.logs.partition(t, p).high_watermark
                for t, p in (("a", 0), ("a", 1), ("b", 0))}
        assert ends == {("a", 0): 1, ("a", 1): 0, ("b", 0): 1}
    finally:
        broker.close()


async def test_every_partition_failed_answers_without_the_handler():
    c = Controls()
    c.error(NLF, topic="a", partition=0)
    request = produce(("a", 0))
    fault = decide(c, K.PRODUCE, request)

    async def handle(rest):
        raise AssertionError("nothing is left to handle")

    response = roundtrip(K.PRODUCE, 9, await handle_partly(
        header(K.PRODUCE), request, fault.failed_partitions, handle))
    assert [(t.name, p.index, p.error_code) for t in response.responses
            for p in t.partition_responses] == [("a", 0, NLF)]


def test_merge_keeps_the_partitions_of_a_fetch_session_the_request_did_not_name():
    fetch = Fetch(topics=[FetchTopic(topic="a", partitions=[
        FetchTopic.FetchPartition(partition=1)])])
    Response = protocol.response_class(K.FETCH)
    Topic = Response.FetchableTopicResponse
    Part = Topic.PartitionData
    # An incremental fetch's answer: partition 0 is in the session, not in the request.
    handled = Response(responses=[Topic(topic="a", partitions=[
        Part(partition_index=0, high_watermark=5, records=b""),
        Part(partition_index=1, high_watermark=7, records=b"")])])
    failed = {("a", 1): (NLF, "m")}
    _, failing = partition_errors.split(K.FETCH, fetch, failed)
    answers = partition_errors.failed_answers(K.FETCH, 12, failing, failed)
    merged = roundtrip(K.FETCH, 12, partition_errors.merge(K.FETCH, fetch, handled, answers))
    assert [(p.partition_index, p.error_code, p.high_watermark)
            for t in merged.responses for p in t.partitions] == [(1, NLF, -1), (0, 0, 5)]


# --- throttle ---

def test_throttle_rules_give_the_longest_throttle_and_count_as_applied():
    c = Controls()
    short = c.throttle(100, api="Fetch")
    long = c.throttle(700, api="Fetch", count=1)
    fault = decide(c, K.FETCH, Fetch(), version=12)
    assert (fault.throttle_ms, fault.action, fault.delay_ms) == (700, None, 0)
    assert decide(c, K.FETCH, Fetch(), version=12).throttle_ms == 100
    assert (short.applied, long.applied) == (2, 1)
    assert c.list()[1]["throttle_ms"] == 700
    for bad, complaint in [({}, "needs throttle_ms"), ({"throttle_ms": 0}, "at least 1"),
                           ({"throttle_ms": 600_001}, "at most")]:
        with pytest.raises(ValueError, match=complaint):
            Rule.from_dict({"action": "throttle", **bad})
    with pytest.raises(ValueError, match="throttle_ms does not apply"):
        Rule("delay", delay_ms=1, throttle_ms=5)


# --- fault files ---

def test_a_fault_file_holds_a_rule_or_a_list_of_rules(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"action": "error", "api": "Produce", "error": 6}))
    assert read_fault_file(str(one)) == [{"action": "error", "api": "Produce", "error": 6}]
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"action": "delay", "delay_ms": 5},
                                {"action": "throttle", "throttle_ms": 9, "node": 1}]))
    rules = read_fault_file(str(many))
    assert len(rules) == 2
    check_nodes(rules, [1], "f")
    with pytest.raises(ValueError, match="f: rule 2: no node 1 \\(the node ids are 2, 3\\)"):
        check_nodes(rules, [2, 3], "f")


@pytest.mark.parametrize("content, complaint", [
    ("{", "fault file .*bad.json: not JSON"),
    ("[]", "fault file .*bad.json: no rules"),
    ('[{"action": "delay", "delay_ms": 1}, {"action": "error", "api": "Prodcue", "error": 6}]',
     "fault file .*bad.json: rule 2: unknown API 'Prodcue'"),
    ('[{"action": "delay", "delay_ms": 1}, 5]', "rule 2: a rule is a JSON object"),
])
def test_a_bad_fault_file_names_the_file_and_the_rule(tmp_path, content, complaint):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=complaint):
        read_fault_file(str(path))


def test_an_unreadable_fault_file_says_why(tmp_path):
    with pytest.raises(ValueError, match="fault file .*missing.json: No such file"):
        read_fault_file(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="faults: rule 1: needs an action|faults: rule 1: a "
                                         "rule needs an action"):
        rules_from_json({"api": "Produce"}, "faults")


def test_a_broker_starts_with_the_rules_of_its_fault_file(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"action": "throttle", "api": "Fetch", "throttle_ms": 50},
                                {"action": "delay", "delay_ms": 1, "node": 1}]))
    broker = memory_broker({"trioka.faults.file": str(path)})
    try:
        assert [r["action"] for r in broker.controls.list()] == ["throttle", "delay"]
        assert broker.controls.active
    finally:
        broker.close()
    path.write_text(json.dumps({"action": "delay", "delay_ms": 1, "node": 2}))
    with pytest.raises(ValueError, match="fault file .*: rule 1: the rule is for node 2"):
        memory_broker({"trioka.faults.file": str(path)})


# --- the admin endpoint: lists of rules, rules for a node ---

def test_a_list_of_rules_is_added_all_or_none():
    c = Controls(node_id=1)
    body = json.dumps([{"action": "delay", "delay_ms": 5},
                       {"action": "throttle", "throttle_ms": 10}]).encode()
    status, rules = endpoint.route(c, "POST", "/controls", body)
    assert status == 201 and [r["id"] for r in rules] == [1, 2]
    bad = json.dumps([{"action": "delay", "delay_ms": 5}, {"action": "nope"}]).encode()
    with pytest.raises(endpoint.HttpError, match="rule 2: action must be") as e:
        endpoint.route(c, "POST", "/controls", bad)
    assert e.value.status == 400 and len(c.list()) == 2


def test_a_rule_for_a_node_goes_to_that_nodes_rules():
    nodes = {1: Controls(node_id=1), 2: Controls(node_id=2)}

    def controls_of(node_id):
        if node_id not in nodes:
            raise LookupError(f"no node {node_id}")
        return nodes[node_id]

    body = json.dumps({"action": "delay", "delay_ms": 5, "node": 2}).encode()
    status, rule = endpoint.route(nodes[1], "POST", "/controls", body, controls_of)
    assert status == 201 and rule["node"] == 2
    assert (nodes[1].list(), len(nodes[2].list())) == ([], 1)
    with pytest.raises(endpoint.HttpError, match="no node 7") as e:
        endpoint.route(nodes[1], "POST", "/controls", json.dumps(
            {"action": "delay", "delay_ms": 5, "node": 7}).encode(), controls_of)
    assert e.value.status == 400
    # Without the nodes (a node's own /nodes/ID/controls), another node's rule is refused.
    with pytest.raises(endpoint.HttpError, match="is for node 2, this is node 1"):
        endpoint.route(nodes[1], "POST", "/controls", body)


# --- the node's round-trip delay ---

def test_rtt_is_a_node_control_ended_by_heal():
    n = NodeControls()
    changed = n.changed()
    n.rtt(40)
    assert changed.is_set() and n.state() == {"isolated": False, "slow_ms": 0, "rtt_ms": 40}
    n.heal()
    assert n.rtt_ms == 0
    for bad in (-1, MAX_RTT_MS + 1, 1.5, True):
        with pytest.raises(ValueError, match="rtt_ms must be an integer"):
            n.rtt(bad)


# --- the nodes of a cluster: each takes its own rules ---

async def test_each_node_of_a_cluster_takes_its_rules_from_the_fault_file(tmp_path):
    import trio
    from trioka.node.cluster import LocalCluster, cluster_configs
    from trioka.testing.embedded import open_cluster
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"action": "delay", "delay_ms": 1, "api": "Fetch"},
                                {"action": "throttle", "throttle_ms": 5, "node": 2}]))
    with trio.fail_after(30):
        async with open_cluster(2, {"trioka.faults.file": str(path)}, memory=True) as cluster:
            listed = {n: [(r["action"], r["node"]) for r in cluster.controls_of(n).list()]
                      for n in (1, 2)}
            assert listed == {1: [("delay", None)], 2: [("delay", None), ("throttle", 2)]}
            # A rule POSTed with a node goes to that node's rules.
            body = json.dumps({"action": "drop_response", "api": "Heartbeat", "node": 2})
            status, rule = endpoint.route(cluster.controls_of(None), "POST", "/controls",
                                          body.encode(), cluster.controls_of)
            assert status == 201 and rule["node"] == 2
            assert [r["action"] for r in cluster.controls_of(2).list()][-1] == "drop_response"
            assert len(cluster.controls_of(1).list()) == 1
            # The round-trip delay is a node control, kept across a restart.
            await cluster.act(2, "rtt", 30)
            node = cluster.node(2)
            await cluster.act(2, "stop")
            await node.start()
            assert node.describe()["rtt_ms"] == 30
            assert node.server.broker.node_controls.rtt_ms == 30
            # A restarted node reads the fault file again: its rules from the start.
            assert [(r["action"], r["matched"]) for r in cluster.controls_of(2).list()] == [
                ("delay", 0), ("throttle", 0)]
    path.write_text(json.dumps({"action": "delay", "delay_ms": 1, "node": 3}))
    with pytest.raises(ValueError, match="rule 1: no node 3 \\(the node ids are 1, 2\\)"):
        LocalCluster(cluster_configs({"trioka.faults.file": str(path),
                                      "log.dirs": str(tmp_path / "data")}, 2))
