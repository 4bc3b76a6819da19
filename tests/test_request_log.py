"""The request log (observe/request_log.py) and the JSON form of messages (observe/messages.py),
without sockets: messages built with the schema's classes, record batches built byte by byte
(record_batches.make_batch), a ManualClock for times and latencies."""

import base64
import json
import os
import uuid

import pytest
import trio

from record_batches import make_batch
from trioka.apis.context import Connection
from trioka.clock import ManualClock
from trioka.config import Config, Listener
from trioka.controls.rules import Fault, Rule
from trioka.log.files import FileRegion
from trioka.log.records import encode_batch
from trioka.observe import messages, request_log
from trioka.observe.messages import (error_codes, message_json, put_summaries,
                                      records_summaries, summarise, summarise_in_place)
from trioka.observe.request_log import RequestLog, check_config, select_entries
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import RequestHeader

PRODUCE = schema.api(ApiKey.PRODUCE)
FETCH = schema.api(ApiKey.FETCH)


def connection(peer="127.0.0.1:5000", software=None) -> Connection:
    conn = Connection(peer, Listener("PLAINTEXT", "127.0.0.1", 9092),
                      f"127.0.0.1:9092-{peer}-1")
    if software:
        conn.client_software_name, conn.client_software_version = software
    return conn


def produce_request(records, version_topic="orders"):
    Req = PRODUCE.request.cls
    return Req(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[
        Req.TopicProduceData(name=version_topic, partition_data=[
            Req.TopicProduceData.PartitionProduceData(index=2, records=records)])])


def start(rlog: RequestLog, api_key: int, version: int, correlation_id: int, client_id: str,
          request, conn=None):
    """What the server does when a request arrives: the entry, from the decoded request and
    its bytes."""
    body = schema.api(api_key).request.encode(request, version)
    return rlog.start(rlog.arrival(), conn or connection(),
                      RequestHeader(api_key, version, correlation_id, client_id), request,
                      memoryview(body))


def log_one(rlog: RequestLog, conn, api_key: int, version: int, request, response=None, *,
            client_id="app", correlation_id=1, outcome="responded", took_ms=0):
    """What the server does for one request: start, handle (the clock moves), encode, finish."""
    entry = start(rlog, api_key, version, correlation_id, client_id, request, conn)
    rlog.clock.advance(took_ms)
    frame = None
    if response is not None:
        entry.response = response
        frame = protocol.encode_response(api_key, version, correlation_id, response)
    rlog.finish(entry, outcome, frame=frame)
    return entry


# ------------------------------------------------------------------- batch summaries

def test_a_produce_requests_batches_are_summarised_from_their_headers_before_the_buffer_is_reused():
    batch = make_batch([b"a", b"b", b"c"], producer_id=4000, producer_epoch=3, base_sequence=17,
                       attributes=0x10, base_timestamp=1_700_000_000_000,
                       partition_leader_epoch=-1)
    buffer = bytearray(b"\x00" * 10 + batch)
    view = memoryview(buffer)[10:]
    request = produce_request(view)
    summaries = records_summaries(request, PRODUCE.request)
    assert request.topic_data[0].partition_data[0].records is view   # the handler's, untouched
    buffer[:] = b"\xff" * len(buffer)      # the handler patched it, the connection reused it

    put_summaries(request, PRODUCE.request, summaries)    # once handled: no view kept
    assert type(request.topic_data[0].partition_data[0].records) is messages.RecordsSummary
    rendered = message_json(request, PRODUCE.request, 9)
    assert rendered == {
        "transactional_id": None, "acks": -1, "timeout_ms": 30000,
        "topic_data": [{"name": "orders", "partition_data": [{"index": 2, "records": [{
            "base_offset": 0, "last_offset_delta": 2, "records_count": 3, "compression": "none",
            "timestamp_type": "CreateTime", "base_timestamp": 1_700_000_000_000,
            "max_timestamp": 1_700_000_000_002, "producer_id": 4000, "producer_epoch": 3,
            "base_sequence": 17, "partition_leader_epoch": -1, "is_transactional": True,
            "is_control": False, "size_bytes": len(batch)}]}]}]}


def test_a_fetch_responses_chunks_and_file_regions_are_summarised_in_order(tmp_path):
    first = encode_batch([(b"k", b"v" * 100)] * 5, base_offset=10, compression=1,
                         base_timestamp=5)
    second = make_batch([b"x"], base_offset=15, attributes=0x08)   # LogAppendTime
    third = make_batch([b"y", b"z"], base_offset=16)
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(b"junk" + first + second)
    fd = os.open(path, os.O_RDONLY)
    region = FileRegion(fd, 4, len(first) + len(second))
    Resp = FETCH.response.cls
    Part = Resp.FetchableTopicResponse.PartitionData
    response = Resp(responses=[Resp.FetchableTopicResponse(topic="orders", partitions=[
        Part(partition_index=0, high_watermark=18, records=[region, third]),
        Part(partition_index=1, records=b"")])])
    try:
        summarise_in_place(response, FETCH.response)   # once encoded, before it is sent
    finally:
        region.close()
        os.close(fd)
    shown = message_json(response, FETCH.response, 12)["responses"][0]["partitions"]
    assert shown[1]["records"] == []
    batches = shown[0]["records"]
    assert [(b["base_offset"], b["records_count"], b["compression"], b["timestamp_type"],
             b["size_bytes"]) for b in batches] == [
        (10, 5, "gzip", "CreateTime", len(first)), (15, 1, "none", "LogAppendTime", len(second)),
        (16, 2, "none", "CreateTime", len(third))]


def test_bytes_that_are_not_v2_batches_and_batches_past_the_cap_are_counted_not_read():
    batch = make_batch([b"v"])
    legacy = make_batch([b"old"], magic=1)
    assert summarise(batch + legacy).to_json()[-1] == {"unsummarised_bytes": len(legacy)}
    assert summarise(batch + batch[:30]).to_json()[-1] == {"unsummarised_bytes": 30}
    many = b"".join(make_batch([b"v"], base_offset=i) for i in range(messages.MAX_BATCHES + 3))
    out = summarise(many).to_json()
    assert len(out) == messages.MAX_BATCHES + 1
    assert out[-1] == {"unsummarised_bytes": 3 * len(batch)}
    assert summarise(b"").to_json() == [] and summarise(None) is None


def test_with_payloads_asked_for_each_batch_shows_its_records():
    batch = make_batch([b"hello", None], keys=[b"k1", None], base_offset=7,
                       base_timestamp=1000, timestamps=[1000, 1004])
    [shown] = summarise(memoryview(batch), payloads=True).to_json()
    assert shown["records"] == [
        {"offset": 7, "timestamp": 1000, "key": base64.b64encode(b"k1").decode(),
         "value": base64.b64encode(b"hello").decode(), "headers": []},
        {"offset": 8, "timestamp": 1004, "key": None, "value": None, "headers": []}]
    assert "records" not in summarise(batch).to_json()[0]


# ------------------------------------------------------------------------ messages

def test_fields_are_those_of_the_version_used():
    request = produce_request(None)
    request.topic_data[0].topic_id = uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)
    v3 = message_json(request, PRODUCE.request, 3)
    v13 = message_json(request, PRODUCE.request, 13)
    assert v3["topic_data"][0] == {"name": "orders",
                                   "partition_data": [{"index": 2, "records": None}]}
    # Kafka's Uuid.toString(): URL-safe base64 without padding.
    assert v13["topic_data"][0] == {"topic_id": "ASNFZ4mrze8BI0VniavN7w",
                                    "partition_data": [{"index": 2, "records": None}]}


def test_bytes_fields_are_base64():
    api = schema.api(ApiKey.SYNC_GROUP)
    response = api.response.cls(error_code=0, assignment=b"\x00\x01assignment")
    shown = message_json(response, api.response, 3)
    assert shown["assignment"] == base64.b64encode(b"\x00\x01assignment").decode()
    assert shown["error_code"] == 0


def test_error_codes_count_every_nonzero_code_at_any_depth_by_kafka_name():
    Resp = PRODUCE.response.cls
    Part = Resp.TopicProduceResponse.PartitionProduceResponse
    response = Resp(responses=[
        Resp.TopicProduceResponse(name="a", partition_responses=[
            Part(index=i, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER) for i in range(3)]),
        Resp.TopicProduceResponse(name="b", partition_responses=[
            Part(index=0, error_code=0), Part(index=1, error_code=ErrorCode.CORRUPT_MESSAGE),
            Part(index=2, error_code=999)])])
    assert error_codes(response, PRODUCE.response, 9) == {
        "999": 1, "CORRUPT_MESSAGE": 1, "NOT_LEADER_OR_FOLLOWER": 3}
    assert error_codes(Resp(responses=[]), PRODUCE.response, 9) == {}
    assert error_codes(None, PRODUCE.response, 9) == {}


# ----------------------------------------------------------------------- the log

def test_an_entry_carries_the_request_its_response_and_who_sent_it():
    rlog = RequestLog(ManualClock(wall_ms=1_700_000_000_000), node_id=3)
    conn = connection("10.0.0.7:40000", ("confluent-kafka-python", "2.16.1-rdkafka-2.16.0"))
    Resp = PRODUCE.response.cls
    response = Resp(responses=[Resp.TopicProduceResponse(name="orders", partition_responses=[
        Resp.TopicProduceResponse.PartitionProduceResponse(
            index=2, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER)])])
    log_one(rlog, conn, ApiKey.PRODUCE, 9, produce_request(make_batch()), response,
            client_id="rdkafka", correlation_id=41, took_ms=12)
    [entry] = rlog.requests()
    assert {k: v for k, v in entry.items() if k not in ("request", "response", "seq")} == {
        "time_ms": 1_700_000_000_000, "node": 3, "listener": "PLAINTEXT",
        "connection": "127.0.0.1:9092-10.0.0.7:40000-1", "client_address": "10.0.0.7:40000",
        "client_id": "rdkafka", "client_software_name": "confluent-kafka-python",
        "client_software_version": "2.16.1-rdkafka-2.16.0",
        "security_protocol": "PLAINTEXT", "principal": "User:ANONYMOUS",
        "api": "Produce", "api_key": 0,
        "api_version": 9, "correlation_id": 41, "latency_ms": 12.0, "outcome": "responded",
        "error_codes": {"NOT_LEADER_OR_FOLLOWER": 1}, "fault": None, "error": None}
    assert entry["request"]["topic_data"][0]["partition_data"][0]["records"][0][
        "records_count"] == 1
    assert entry["response"]["responses"][0]["partition_responses"][0]["error_code"] == 6
    json.dumps(entry)   # JSON all the way down


def test_the_ring_keeps_the_newest_entries_and_seq_grows():
    rlog = RequestLog(ManualClock(), node_id=1, size=3)
    api = schema.api(ApiKey.HEARTBEAT)
    for i in range(5):
        log_one(rlog, connection(), ApiKey.HEARTBEAT, 4, api.request.cls(group_id="g"),
                api.response.cls(), correlation_id=i)
    kept = rlog.requests()
    assert [e["correlation_id"] for e in kept] == [2, 3, 4]
    assert kept[0]["seq"] < kept[1]["seq"] < kept[2]["seq"]


def test_filters_by_api_client_id_since_and_limit():
    rlog = RequestLog(ManualClock(), node_id=1)
    hb = schema.api(ApiKey.HEARTBEAT)
    for i, (key, client) in enumerate([(ApiKey.PRODUCE, "a"), (ApiKey.HEARTBEAT, "b"),
                                       (ApiKey.PRODUCE, "b"), (ApiKey.PRODUCE, "a")]):
        request = produce_request(b"") if key == ApiKey.PRODUCE else hb.request.cls()
        log_one(rlog, connection(), key, 9 if key == ApiKey.PRODUCE else 4, request,
                client_id=client, correlation_id=i)

    def corr(**filters):
        return [e["correlation_id"] for e in rlog.requests(**filters)]

    assert corr(api="Produce") == corr(api="PRODUCE") == corr(api=0) == [0, 2, 3]
    assert corr(client_id="b") == [1, 2]
    assert corr(api="Produce", client_id="a") == [0, 3]
    first = rlog.requests()[0]["seq"]
    assert corr(since=first) == [1, 2, 3]
    assert corr(limit=2) == [2, 3] and corr(limit=0) == []
    assert corr(api="Produce", since=first, limit=1) == [3]
    with pytest.raises(ValueError, match="unknown API"):
        rlog.requests(api="Prodce")


def test_the_logs_of_several_nodes_merge_in_the_order_logged():
    one, two = RequestLog(ManualClock(), node_id=1), RequestLog(ManualClock(), node_id=2)
    hb = schema.api(ApiKey.HEARTBEAT)
    for i, rlog in enumerate([one, two, two, one]):
        log_one(rlog, connection(), ApiKey.HEARTBEAT, 4, hb.request.cls(), correlation_id=i)
    merged = select_entries([one, two])
    assert [(e.node, e.correlation_id) for e in merged] == [(1, 0), (2, 1), (2, 2), (1, 3)]
    assert [e.correlation_id for e in select_entries([one, two], since=merged[1].seq,
                                                     limit=1)] == [3]


def test_what_the_client_got_when_not_a_handlers_response():
    rlog = RequestLog(ManualClock(), node_id=1)
    conn = connection()
    header = RequestHeader(ApiKey.METADATA, 12, 5, "app")
    rlog.refused(rlog.arrival(), conn, header, "Metadata v12: truncated")
    log_one(rlog, conn, ApiKey.PRODUCE, 9, produce_request(b""), outcome="no_response")
    entry = start(rlog, ApiKey.PRODUCE, 9, 7, "app", produce_request(b""), conn)
    entry.fault = Fault(0, "disconnect", Rule("disconnect", api="Produce", when="after"))
    rlog.finish(entry, "disconnected", error="control 1: disconnect after handling")

    refused, silent, cut = rlog.requests()
    assert (refused["outcome"], refused["error"], refused["request"], refused["response"]) == (
        "disconnected", "Metadata v12: truncated", None, None)
    assert (silent["outcome"], silent["response"], silent["error_codes"]) == (
        "no_response", None, {})
    assert cut["outcome"] == "disconnected"
    assert cut["fault"] == {"rule": entry.fault.rule.id, "action": "disconnect", "delay_ms": 0,
                            "error": None, "throttle_ms": 0}


def test_an_encoded_answer_is_decoded_when_read():
    rlog = RequestLog(ManualClock(), node_id=1)
    conn = connection()
    api = schema.api(ApiKey.FIND_COORDINATOR)
    answer = api.response.cls(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    frame = protocol.encode_response(ApiKey.FIND_COORDINATOR, 2, 9, answer)
    entry = start(rlog, ApiKey.FIND_COORDINATOR, 2, 9, "a", api.request.cls(key="g"), conn)
    rlog.finish(entry, "responded", frame=frame)
    [shown] = rlog.requests()
    assert shown["response"]["error_code"] == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert shown["error_codes"] == {"COORDINATOR_NOT_AVAILABLE": 1}


def test_an_apiversions_above_the_brokers_is_logged_with_its_v0_answer():
    from trioka.apis.api_versions import unsupported_version_response
    rlog = RequestLog(ManualClock(), node_id=1)
    rlog.answered_unhandled(rlog.arrival(), connection(),
                            RequestHeader(ApiKey.API_VERSIONS, 9, 0, "new-client"),
                            protocol.encode_response(ApiKey.API_VERSIONS, 0, 0,
                                                     unsupported_version_response((0, 4))), 0)
    [shown] = rlog.requests()
    assert (shown["api"], shown["api_version"], shown["request"]) == ("ApiVersions", 9, None)
    assert shown["error_codes"] == {"UNSUPPORTED_VERSION": 1}
    assert set(shown["response"]) == {"error_code", "api_keys"}   # the v0 fields


def test_the_client_software_is_read_when_the_request_is_answered():
    """ApiVersions v3+ tells the broker who the client is while it is handled (KIP-511)."""
    rlog = RequestLog(ManualClock(), node_id=1)
    conn = connection()
    api = schema.api(ApiKey.API_VERSIONS)
    entry = start(rlog, ApiKey.API_VERSIONS, 3, 0, "x",
                  api.request.cls(client_software_name="kafka-python",
                                  client_software_version="3.0.12"), conn)
    conn.client_software_name, conn.client_software_version = "kafka-python", "3.0.12"
    rlog.finish(entry, "responded")
    [shown] = rlog.requests()
    assert (shown["client_software_name"], shown["client_software_version"]) == (
        "kafka-python", "3.0.12")
    assert shown["request"] == {"client_software_name": "kafka-python",
                                "client_software_version": "3.0.12"}


async def test_the_file_gets_one_json_line_an_entry_written_off_the_event_loop(tmp_path):
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(ManualClock(), node_id=1, size=0, file=str(path))
    hb = schema.api(ApiKey.HEARTBEAT)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rlog.write_file)
        for i in range(3):
            log_one(rlog, connection(), ApiKey.HEARTBEAT, 4, hb.request.cls(group_id="g"),
                    hb.response.cls(error_code=ErrorCode.REBALANCE_IN_PROGRESS),
                    correlation_id=i)
        await trio.testing.wait_all_tasks_blocked()
        rlog.max_backlog = 1
        log_one(rlog, connection(), ApiKey.HEARTBEAT, 4, hb.request.cls(), correlation_id=3)
        log_one(rlog, connection(), ApiKey.HEARTBEAT, 4, hb.request.cls(), correlation_id=4)
        nursery.cancel_scope.cancel()   # what is left is written on the way out
    rlog.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("correlation_id") for line in lines] == [0, 1, 2, 3, None]
    assert lines[0]["request"] == {"group_id": "g", "generation_id": 0, "member_id": "",
                                   "group_instance_id": None}
    assert lines[0]["error_codes"] == {"REBALANCE_IN_PROGRESS": 1}
    assert lines[-1] == {"dropped_entries": 1}
    assert rlog.requests() == []    # size 0: the ring keeps nothing


def test_the_settings_come_from_kafka_style_keys():
    assert RequestLog.from_config(Config({"trioka.request.log.size": 0}), ManualClock(), 1) \
        is None
    rlog = RequestLog.from_config(Config({"trioka.request.log.payloads": "true"}),
                                  ManualClock(), 1)
    assert (rlog.size, rlog.file, rlog.payloads) == (request_log.DEFAULT_SIZE, None, True)
    with pytest.raises(ValueError, match="trioka.request.log.size must be 0 or more"):
        check_config(Config({"trioka.request.log.size": -1}))
    with pytest.raises(ValueError, match="trioka.request.log.file: cannot open /nonexistent/"):
        check_config(Config({"trioka.request.log.file": "/nonexistent/dir/log.jsonl"}))


def test_messages_without_batches_are_kept_as_bytes_and_those_with_batches_as_summaries():
    """What the garbage collector would walk: a message without record batches is kept as
    one bytes object, decoded again when read; a Produce request, its batches replaced by their
    summaries once it is handled, is kept frozen into bytes."""
    rlog = RequestLog(ManualClock(), node_id=1)
    hb = schema.api(ApiKey.HEARTBEAT)
    entry = log_one(rlog, connection(), ApiKey.HEARTBEAT, 4, hb.request.cls(group_id="g"),
                    hb.response.cls(error_code=ErrorCode.UNKNOWN_MEMBER_ID))
    assert (entry.request, type(entry.request_body)) == (None, bytes)
    assert (entry.response, type(entry.response_frame)) == (None, bytes)
    [shown] = rlog.requests()
    assert shown["request"]["group_id"] == "g"
    assert shown["error_codes"] == {"UNKNOWN_MEMBER_ID": 1}

    request = produce_request(make_batch([b"v"]))
    entry = log_one(rlog, connection(), ApiKey.PRODUCE, 9, request,
                    PRODUCE.response.cls(responses=[]))
    assert type(entry.request) is bytes and entry.request_body is None
    [_, shown] = rlog.requests()
    assert shown["request"]["topic_data"][0]["partition_data"][0]["records"][0][
        "records_count"] == 1


def test_a_frozen_message_thaws_to_the_same_message():
    """messages._freezers: every kind of field (numbers, enum members, strings, nullable
    arrays, nested structs, topic ids, records summaries with payloads) survives freeze (into
    bytes, which the garbage collector never walks) and thaw."""
    topic_id = uuid.UUID(int=0x1234_5678_9ABC)
    batch = make_batch([b"a", b"b"], base_offset=40)
    Resp = FETCH.response.cls
    Part = Resp.FetchableTopicResponse.PartitionData
    response = Resp(throttle_time_ms=3, error_code=0, session_id=77, responses=[
        Resp.FetchableTopicResponse(topic="orders", topic_id=topic_id, partitions=[
            Part(partition_index=0, high_watermark=42, last_stable_offset=42,
                 aborted_transactions=[Part.AbortedTransaction(producer_id=9, first_offset=1)],
                 preferred_read_replica=-1, records=batch),
            Part(partition_index=1, error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
                 aborted_transactions=None, records=None)])])
    fields = messages.records_fields(FETCH.response)
    fields.in_place(response, True)
    expected = {v: message_json(response, FETCH.response, v) for v in (4, 12, 16)}
    frozen = fields.freeze(response)
    assert type(frozen) is bytes
    thawed = fields.thaw(frozen)
    assert {v: message_json(thawed, FETCH.response, v) for v in (4, 12, 16)} == expected
    assert expected[16]["responses"][0]["topic_id"] == "AAAAAAAAAAAAABI0VniavA"
    assert expected[16]["responses"][0]["partitions"][0]["records"][0]["records"][1][
        "offset"] == 41
    assert thawed.responses[0].partitions[1].aborted_transactions is None
    assert thawed.responses[0].topic_id == topic_id
