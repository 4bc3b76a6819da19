"""broker.controls without sockets: rules, matching, counting, error responses, the admin API."""

import json
import uuid

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from trioka.apis import APIS
from trioka.controls import endpoint
from trioka.controls.rules import MAX_DELAY_MS, Controls, Rule, encode_error_response
from trioka.wire.error_response import error_response
from trioka.wire.request_names import request_topics
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import RequestHeader

Produce = protocol.request_class(ApiKey.PRODUCE)
Fetch = protocol.request_class(ApiKey.FETCH)
OffsetFetch = protocol.request_class(ApiKey.OFFSET_FETCH)
FindCoordinator = protocol.request_class(ApiKey.FIND_COORDINATOR)
Heartbeat = protocol.request_class(ApiKey.HEARTBEAT)
DescribeConfigs = protocol.request_class(ApiKey.DESCRIBE_CONFIGS)
ListOffsets = protocol.request_class(ApiKey.LIST_OFFSETS)


def produce(*topics, acks=-1, partitions=(0,)):
    return Produce(transactional_id=None, acks=acks, timeout_ms=1000, topic_data=[
        Produce.TopicProduceData(name=t, partition_data=[
            Produce.TopicProduceData.PartitionProduceData(index=p, records=b"")
            for p in partitions]) for t in topics])


def header(key, version=9, client_id="app", correlation_id=7):
    return RequestHeader(int(key), version, correlation_id, client_id)


def decide(controls, key, request, client_id="app", version=9):
    return controls.decide(header(key, version, client_id), request)


def roundtrip(key, version, response):
    """Encode a response as the broker sends it and decode it as a client reads it."""
    frame = b"".join(protocol.encode_response(key, version, 7, response))
    correlation_id, back = protocol.decode_response(key, version, frame[4:])
    assert correlation_id == 7
    return back


# --- rules as data ---

def test_rule_names_are_normalised_and_round_trip_as_json():
    rule = Rule.from_dict({"action": "error", "api": "FIND_COORDINATOR",
                           "error": "coordinator_not_available", "count": "3"})
    assert rule.api == ApiKey.FIND_COORDINATOR
    assert rule.error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert rule.count == 3
    data = json.loads(json.dumps(rule.to_dict()))
    assert data["api"] == "FindCoordinator" and data["error"] == "COORDINATOR_NOT_AVAILABLE"
    given = {k: v for k, v in data.items() if k in Rule.GIVEN}
    again = Rule.from_dict(given)
    assert (again.api, again.error, again.count) == (rule.api, rule.error, rule.count)
    assert Rule("delay", api=1, delay_ms=5).to_dict()["api"] == "Fetch"
    assert Rule("disconnect").when == "before"


@pytest.mark.parametrize("data, complaint", [
    ({"action": "explode"}, "action must be"),
    ({"api": "Produce"}, "needs an action"),
    ({"action": "error"}, "needs an error code"),
    ({"action": "error", "error": "NO_SUCH_ERROR"}, "unknown error code"),
    ({"action": "error", "error": 6, "api": "NoSuchApi"}, "unknown API"),
    ({"action": "delay"}, "needs delay_ms"),
    ({"action": "delay", "delay_ms": MAX_DELAY_MS + 1}, "at most"),
    ({"action": "delay", "delay_ms": -1}, "at least 0"),
    ({"action": "disconnect", "when": "during"}, "before' or 'after"),
    ({"action": "drop_response", "delay_ms": 5}, "does not apply"),
    ({"action": "drop_response", "every": 0}, "every must be at least 1"),
    ({"action": "drop_response", "count": "many"}, "count must be an integer"),
    ({"action": "drop_response", "colour": "red"}, "unknown rule fields: colour"),
    ({"action": "drop_response", "topic": 5}, "topic must be a string"),
])
def test_invalid_rules_are_refused_with_a_reason(data, complaint):
    with pytest.raises(ValueError, match=complaint):
        Rule.from_dict(data)


# --- matching ---

def test_a_rule_matches_on_api_client_id_and_topic():
    c = Controls()
    rule = c.error("NOT_LEADER_OR_FOLLOWER", api="Produce", topic="orders", client_id="app")
    assert decide(c, ApiKey.PRODUCE, produce("orders")).rule is rule
    assert decide(c, ApiKey.PRODUCE, produce("other", "orders")).rule is rule
    assert decide(c, ApiKey.PRODUCE, produce("other")) is None
    assert decide(c, ApiKey.PRODUCE, produce("orders"), client_id="someone") is None
    assert decide(c, ApiKey.FETCH, Fetch(topics=[Fetch.FetchTopic(topic="orders")])) is None
    assert (rule.matched, rule.applied) == (2, 2)


def test_topics_named_by_id_are_resolved_for_matching():
    topic_id = uuid.uuid4()
    c = Controls(topic_name_of=lambda tid: "orders" if tid == topic_id else None)
    rule = c.delay(10, topic="orders")
    by_id = Fetch(topics=[Fetch.FetchTopic(topic_id=topic_id)])
    assert decide(c, ApiKey.FETCH, by_id, version=13).delay_ms == 10
    assert decide(c, ApiKey.FETCH, Fetch(topics=[Fetch.FetchTopic(topic_id=uuid.uuid4())]),
                  version=13) is None
    assert rule.applied == 1


def test_request_topics_finds_nested_and_config_topics():
    nested = OffsetFetch(groups=[OffsetFetch.OffsetFetchRequestGroup(
        group_id="g", topics=[OffsetFetch.OffsetFetchRequestGroup.OffsetFetchRequestTopics(
            name="t1", partition_indexes=[0])])])
    assert request_topics(ApiKey.OFFSET_FETCH, nested) == {"t1"}
    configs = DescribeConfigs(resources=[
        DescribeConfigs.DescribeConfigsResource(resource_type=2, resource_name="t2"),
        DescribeConfigs.DescribeConfigsResource(resource_type=4, resource_name="1")])
    assert request_topics(ApiKey.DESCRIBE_CONFIGS, configs) == {"t2"}
    assert request_topics(ApiKey.HEARTBEAT, Heartbeat(group_id="g")) == set()


def test_a_rule_without_matchers_matches_every_request():
    c = Controls()
    rule = c.drop_response()
    assert decide(c, ApiKey.HEARTBEAT, Heartbeat()).action == "drop_response"
    assert decide(c, ApiKey.PRODUCE, produce("x"), client_id=None).action == "drop_response"
    assert rule.applied == 2


# --- counting: after, every, count ---

def applied_at(controls, n, key=ApiKey.PRODUCE):
    """The 1-based indexes of the n requests a fault was applied to."""
    return [i for i in range(1, n + 1) if decide(controls, key, produce("t")) is not None]


def test_after_every_and_count_pick_exact_requests():
    c = Controls()
    rule = c.disconnect("after", api="Produce", after=2, every=3, count=2)
    assert applied_at(c, 12) == [3, 6]
    assert (rule.matched, rule.applied, rule.exhausted) == (12, 2, True)


@settings(max_examples=60, deadline=None)
@given(after=st.integers(0, 5), every=st.integers(1, 4),
       count=st.one_of(st.none(), st.integers(0, 4)), n=st.integers(0, 30))
def test_counting_is_deterministic(after, every, count, n):
    c = Controls()
    c.drop_response(api="Produce", after=after, every=every, count=count)
    expected = [i for i in range(after + 1, n + 1, every)]
    if count is not None:
        expected = expected[:count]
    assert applied_at(c, n) == expected
    # Requests the rule does not match are not counted.
    assert decide(c, ApiKey.FETCH, Fetch()) is None
    assert c.list()[0]["matched"] == n


def test_delays_add_up_and_the_first_due_outcome_wins():
    c = Controls()
    c.delay(100, api="Produce")
    first = c.error(6, api="Produce", count=1)
    second = c.disconnect("before", api="Produce")
    c.delay(50)
    fault = decide(c, ApiKey.PRODUCE, produce("t"))
    assert (fault.delay_ms, fault.action, fault.rule) == (150, "error", first)
    # The disconnect rule matched but did not act: it counts the match, not an application.
    assert (second.matched, second.applied) == (1, 0)
    fault = decide(c, ApiKey.PRODUCE, produce("t"))
    assert (fault.delay_ms, fault.action, fault.rule) == (150, "disconnect", second)
    assert [r["applied"] for r in c.list()] == [2, 1, 1, 2]


# --- the rule list, down and up ---

def test_active_follows_the_rules_and_the_down_state():
    c = Controls()
    assert not c.active
    changed = c.changed()
    rule = c.delay(5)
    assert c.active and changed.is_set()
    assert c.remove(rule.id) and not c.remove(rule.id)
    assert not c.active
    c.down()
    assert c.active and c.is_down
    assert decide(c, ApiKey.API_VERSIONS, None).action == "down"
    c.add("error", error="REBALANCE_IN_PROGRESS", api="Heartbeat")
    c.add(Rule("drop_response", api="Fetch"))
    assert [r["id"] for r in c.list()] == [2, 3]
    assert c.state()["down"] is True
    c.up()
    assert c.active and decide(c, ApiKey.HEARTBEAT, Heartbeat()).action == "error"
    assert c.clear() == 2 and not c.active and c.list() == []


# --- the answer of an error rule ---

def test_every_served_api_and_version_has_an_encodable_error_response():
    for key, api in APIS.items():
        lo, hi = api.versions
        top_level = [f for f in schema.api(key).response.fields if f.name == "error_code"]
        for version in range(lo, hi + 1):
            request = protocol.request_class(key)()
            back = roundtrip(key, version, error_response(
                key, version, request, ErrorCode.NOT_LEADER_OR_FOLLOWER, "injected"))
            if any(f.present(version) for f in top_level):
                assert back.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, (key, version)


@pytest.mark.parametrize("version", [3, 9, 12])
def test_produce_errors_are_per_partition(version):
    request = produce("a", "b", partitions=(0, 2))
    back = roundtrip(ApiKey.PRODUCE, version, error_response(
        ApiKey.PRODUCE, version, request, ErrorCode.NOT_LEADER_OR_FOLLOWER, "m"))
    got = [(t.name, p.index, p.error_code, p.base_offset)
           for t in back.responses for p in t.partition_responses]
    assert got == [(t, p, 6, -1) for t in ("a", "b") for p in (0, 2)]
    if version >= 8:
        assert back.responses[0].partition_responses[0].error_message == "m"


def test_fetch_and_list_offsets_errors_carry_the_partitions_asked_for():
    request = Fetch(topics=[Fetch.FetchTopic(topic="t", partitions=[
        Fetch.FetchTopic.FetchPartition(partition=4, fetch_offset=10)])])
    back = roundtrip(ApiKey.FETCH, 12, error_response(ApiKey.FETCH, 12, request, 6))
    [part] = back.responses[0].partitions
    assert (back.responses[0].topic, part.partition_index, part.error_code) == ("t", 4, 6)
    assert part.high_watermark == -1 and bytes(part.records or b"") == b""
    request = ListOffsets(topics=[ListOffsets.ListOffsetsTopic(name="t", partitions=[
        ListOffsets.ListOffsetsTopic.ListOffsetsPartition(partition_index=1, timestamp=-1)])])
    back = roundtrip(ApiKey.LIST_OFFSETS, 7, error_response(ApiKey.LIST_OFFSETS, 7, request, 6))
    [part] = back.topics[0].partitions
    assert (part.partition_index, part.error_code, part.offset, part.timestamp) == (1, 6, -1, -1)


def test_find_coordinator_errors_at_both_shapes():
    code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    back = roundtrip(ApiKey.FIND_COORDINATOR, 2, error_response(
        ApiKey.FIND_COORDINATOR, 2, FindCoordinator(key="g", key_type=0), code))
    assert (back.error_code, back.node_id, back.port) == (code, -1, -1)
    back = roundtrip(ApiKey.FIND_COORDINATOR, 4, error_response(
        ApiKey.FIND_COORDINATOR, 4, FindCoordinator(key_type=0, coordinator_keys=["g1", "g2"]),
        code))
    assert [(c.key, c.error_code, c.node_id) for c in back.coordinators] == [
        ("g1", code, -1), ("g2", code, -1)]


def test_offset_fetch_v8_errors_per_group_and_partition():
    request = OffsetFetch(groups=[OffsetFetch.OffsetFetchRequestGroup(
        group_id="g", topics=[OffsetFetch.OffsetFetchRequestGroup.OffsetFetchRequestTopics(
            name="t", partition_indexes=[0, 1])])])
    back = roundtrip(ApiKey.OFFSET_FETCH, 8, error_response(ApiKey.OFFSET_FETCH, 8, request, 15))
    [group] = back.groups
    assert (group.group_id, group.error_code) == ("g", 15)
    assert [(p.partition_index, p.error_code, p.committed_offset)
            for p in group.topics[0].partitions] == [(0, 15, -1), (1, 15, -1)]


def test_encoded_error_answers_the_request_and_acks_0_gets_none():
    c = Controls()
    rule = c.error("REBALANCE_IN_PROGRESS", api="Heartbeat")
    h = header(ApiKey.HEARTBEAT, 4)
    frame = b"".join(encode_error_response(h, Heartbeat(group_id="g"), rule))
    correlation_id, back = protocol.decode_response(ApiKey.HEARTBEAT, 4, frame[4:])
    assert (correlation_id, back.error_code) == (7, ErrorCode.REBALANCE_IN_PROGRESS)
    produce_rule = c.error(6, api="Produce")
    assert encode_error_response(header(ApiKey.PRODUCE), produce("t", acks=0),
                                 produce_rule) is None


# --- the admin endpoint, over in-memory streams ---

def test_routes_of_the_admin_endpoint():
    c = Controls()
    status, rule = endpoint.route(c, "POST", "/controls", json.dumps(
        {"action": "error", "api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER"}).encode())
    assert status == 201 and rule["id"] == 1 and rule["error"] == "NOT_LEADER_OR_FOLLOWER"
    assert endpoint.route(c, "GET", "/controls/1", b"")[1]["api"] == "Produce"
    assert endpoint.route(c, "POST", "/controls/down", b"") == (
        200, {"down": True, "rules": c.list()})
    assert c.is_down
    assert endpoint.route(c, "POST", "/controls/up", b"")[1]["down"] is False
    for method, path, body, status in [("POST", "/controls", b"{", 400),
                                       ("POST", "/controls", b'{"action": "x"}', 400),
                                       ("GET", "/controls/9", b"", 404),
                                       ("DELETE", "/controls/9", b"", 404),
                                       ("GET", "/elsewhere", b"", 404),
                                       ("PUT", "/controls", b"", 405),
                                       ("GET", "/controls/down", b"", 405)]:
        with pytest.raises(endpoint.HttpError) as e:
            endpoint.route(c, method, path, body)
        assert e.value.status == status, (method, path)
    assert endpoint.route(c, "DELETE", "/controls/1", b"") == (200, {"removed": 1})
    assert endpoint.route(c, "DELETE", "/controls", b"") == (200, {"removed": 0})


async def http(controls, raw: bytes) -> tuple[int, object]:
    """Send raw bytes to the endpoint's connection handler; the status and JSON it answers."""
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(endpoint.handle_connection, controls, server)
        await client.send_all(raw)
        answer = b""
        while chunk := await client.receive_some():
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    return int(head.split()[1]), json.loads(body)


async def test_http_requests_are_answered_with_json():
    c = Controls()
    body = json.dumps({"action": "delay", "api": "Fetch", "delay_ms": 250}).encode()
    status, rule = await http(c, b"POST /controls HTTP/1.1\r\nHost: x\r\nContent-Length: "
                              + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert status == 201 and rule["delay_ms"] == 250 and c.rule(rule["id"]).delay_ms == 250
    status, state = await http(c, b"GET /controls HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and [r["api"] for r in state["rules"]] == ["Fetch"]
    status, error = await http(c, b"GARBAGE\r\n\r\n")
    assert status == 400 and "request line" in error["error"]
    status, error = await http(c, b"POST /controls HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    assert status == 413


async def test_a_stalled_http_client_is_dropped(autojump_clock):
    c = Controls()
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(endpoint.REQUEST_TIMEOUT_S + 5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(endpoint.handle_connection, c, server)
            await client.send_all(b"POST /controls HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
    assert await client.receive_some() == b""      # closed without an answer
    assert c.list() == []


def test_admin_addresses_parse():
    assert endpoint.parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert endpoint.parse_address("http://localhost:8080/") == ("localhost", 8080)
    assert endpoint.parse_address(":9") == ("127.0.0.1", 9)
    with pytest.raises(ValueError):
        endpoint.parse_address("nowhere")
