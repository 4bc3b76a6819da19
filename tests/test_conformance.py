"""The conformance record (observe/conformance.py): violations derived from request log entries,
the report's shape per client, its merge across nodes, and its Markdown."""

from trioka.observe import conformance
from trioka.observe.conformance import (MAX_VIOLATIONS, Conformance, from_entries, report_of,
                                        to_markdown)
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

CLIENT = ("app", "librdkafka", "2.16.0")


def entry(api: str, key: int, version: int, *, connection="c1", correlation_id=1,
          request=None, response=None, error_codes=None, outcome="responded", error=None,
          client=CLIENT) -> dict:
    """A request log entry as Entry.to_json renders it (the fields conformance reads)."""
    return {"client_id": client[0], "client_software_name": client[1],
            "client_software_version": client[2], "connection": connection, "api": api,
            "api_key": key, "api_version": version, "correlation_id": correlation_id,
            "outcome": outcome, "error": error, "error_codes": error_codes or {},
            "request": request, "response": response}


def api_versions(connection="c1", produce=(3, 13)) -> dict:
    return entry("ApiVersions", ApiKey.API_VERSIONS, 3, connection=connection, response={
        "error_code": 0, "api_keys": [
            {"api_key": ApiKey.PRODUCE, "min_version": produce[0], "max_version": produce[1]},
            {"api_key": ApiKey.METADATA, "min_version": 0, "max_version": 13},
            {"api_key": ApiKey.OFFSET_COMMIT, "min_version": 2, "max_version": 9},
            {"api_key": ApiKey.HEARTBEAT, "min_version": 0, "max_version": 4},
            {"api_key": ApiKey.FETCH, "min_version": 4, "max_version": 18}]})


def produce_answer(error: ErrorCode, message=None, topic="t", index=0, control=False):
    request = {"acks": -1, "topic_data": [{"name": topic, "partition_data": [
        {"index": index, "records": [{"base_offset": 0, "records_count": 3,
                                      "is_control": control}]}]}]}
    response = {"responses": [{"name": topic, "partition_responses": [
        {"index": index, "error_code": int(error), "error_message": message}]}]}
    return request, response


def kinds(report: dict) -> list[str]:
    [client] = report["clients"]
    return [v["kind"] for v in client["violations"]]


def test_a_well_behaved_session_has_apis_and_versions_and_no_violations():
    c = from_entries([api_versions(),
                      entry("Metadata", ApiKey.METADATA, 12, correlation_id=2),
                      entry("Produce", ApiKey.PRODUCE, 9, correlation_id=3),
                      entry("Produce", ApiKey.PRODUCE, 10, correlation_id=4,
                            error_codes={"NOT_LEADER_OR_FOLLOWER": 2})])
    [client] = c.report()["clients"]
    assert client["client_id"] == "app"
    assert (client["client_software_name"], client["client_software_version"]) == CLIENT[1:]
    assert client["apis"] == {"ApiVersions": [3], "Metadata": [12], "Produce": [9, 10]}
    assert client["errors"] == {"NOT_LEADER_OR_FOLLOWER": 2}
    assert client["requests"] == 4
    assert client["violation_count"] == 0 and client["violations"] == []


def test_versions_outside_the_advertised_range_and_deprecated_ones():
    report = from_entries([
        api_versions(produce=(3, 11)),
        entry("Produce", ApiKey.PRODUCE, 12, correlation_id=7, outcome="disconnected",
              error="PRODUCE v12 is not served"),
        entry("Produce", ApiKey.PRODUCE, 5, correlation_id=8),
        entry("FindCoordinator", ApiKey.FIND_COORDINATOR, 4, correlation_id=9),
    ]).report()
    [client] = report["clients"]
    assert [(v["kind"], v["version"], v["correlation_id"]) for v in client["violations"]] == [
        ("version_not_negotiated", 12, 7), ("deprecated_version", 5, 8),
        ("version_not_negotiated", 4, 9)]
    assert client["violations"][0]["detail"] == "Produce v12: the broker advertised v3-v11"
    assert client["violations"][1]["detail"] == "Produce v5: Kafka deprecates v0-v6"
    assert client["violations"][2]["detail"] == \
        "FindCoordinator is not in the broker's ApiVersions answer"
    assert client["violation_kinds"] == {"deprecated_version": 1, "version_not_negotiated": 2}


def test_a_connection_that_never_asked_api_versions_is_noted_once():
    report = from_entries([
        entry("Metadata", ApiKey.METADATA, 12, connection="c9", correlation_id=1),
        entry("Metadata", ApiKey.METADATA, 12, connection="c9", correlation_id=2),
        api_versions(connection="c10"),
        entry("Metadata", ApiKey.METADATA, 12, connection="c10", correlation_id=3),
    ]).report()
    assert kinds(report) == ["no_api_versions"]
    [client] = report["clients"]
    assert client["violations"][0]["detail"] == \
        "first request on the connection is Metadata v12, not ApiVersions"


def test_answers_that_mean_the_client_broke_a_rule():
    seq_req, seq_resp = produce_answer(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
    rec_req, rec_resp = produce_answer(
        ErrorCode.INVALID_RECORD, "Incorrect declared batch size, premature EOF reached")
    ctl_req, ctl_resp = produce_answer(ErrorCode.INVALID_RECORD, "control", control=True)
    commit = {"responses": [{"name": "t", "partitions": [
        {"partition_index": 0, "error_code": int(ErrorCode.ILLEGAL_GENERATION)}]}]}
    fetch = {"error_code": int(ErrorCode.INVALID_FETCH_SESSION_EPOCH), "responses": []}
    report = from_entries([
        api_versions(),
        entry("Produce", ApiKey.PRODUCE, 9, request=seq_req, response=seq_resp,
              error_codes={"OUT_OF_ORDER_SEQUENCE_NUMBER": 1}),
        entry("Produce", ApiKey.PRODUCE, 9, request=rec_req, response=rec_resp,
              error_codes={"INVALID_RECORD": 1}),
        entry("Produce", ApiKey.PRODUCE, 9, request=ctl_req, response=ctl_resp,
              error_codes={"INVALID_RECORD": 1}),
        entry("OffsetCommit", ApiKey.OFFSET_COMMIT, 8, response=commit,
              error_codes={"ILLEGAL_GENERATION": 1}),
        # Heartbeat's ILLEGAL_GENERATION is a rebalance under way, not a violation.
        entry("Heartbeat", ApiKey.HEARTBEAT, 4, response={"error_code": 22},
              error_codes={"ILLEGAL_GENERATION": 1}),
        entry("Fetch", ApiKey.FETCH, 15, response=fetch,
              error_codes={"INVALID_FETCH_SESSION_EPOCH": 1}),
    ]).report()
    [client] = report["clients"]
    found = [(v["kind"], v["detail"]) for v in client["violations"]]
    assert found == [
        ("out_of_order_sequence", "OUT_OF_ORDER_SEQUENCE_NUMBER at t[0]"),
        ("invalid_record", "INVALID_RECORD at t[0]: Incorrect declared batch size, premature "
                           "EOF reached"),
        ("control_batch_from_client", "INVALID_RECORD at t[0]: control"),
        ("commit_generation", "ILLEGAL_GENERATION at t[0]"),
        ("fetch_session_epoch", "INVALID_FETCH_SESSION_EPOCH at response"),
    ]
    assert client["errors"] == {"ILLEGAL_GENERATION": 2, "INVALID_FETCH_SESSION_EPOCH": 1,
                                "INVALID_RECORD": 2, "OUT_OF_ORDER_SEQUENCE_NUMBER": 1}
    # The offending request, summarised.
    assert client["violations"][0]["request"]["topic_data"][0]["partition_data"][0][
        "records"][0]["records_count"] == 3


def test_an_unparsable_request_and_one_too_large():
    c = Conformance()
    c.observe(api_versions())
    c.observe(entry("Metadata", ApiKey.METADATA, 12, outcome="disconnected",
                    error="METADATA v12: unexpected end of data"))
    c.request_too_large("c1", "declared frame size 104857601")
    c.request_too_large("c-unknown", "declared frame size -1")
    report = c.report()
    by_id = {client["client_id"]: client for client in report["clients"]}
    assert [(v["kind"], v["detail"]) for v in by_id["app"]["violations"]] == [
        ("request_not_parsed", "METADATA v12: unexpected end of data"),
        ("request_too_large", "declared frame size 104857601")]
    assert [v["kind"] for v in by_id[None]["violations"]] == ["request_too_large"]


def test_violations_are_kept_up_to_the_bound_and_all_counted():
    c = Conformance()
    for i in range(MAX_VIOLATIONS + 5):
        c.observe(entry("Produce", ApiKey.PRODUCE, 3, connection=f"c{i}", correlation_id=i))
    [client] = c.report()["clients"]
    # Each: no_api_versions (first on its connection) and deprecated_version.
    assert client["violation_count"] == 2 * (MAX_VIOLATIONS + 5)
    assert len(client["violations"]) == MAX_VIOLATIONS
    assert client["violation_kinds"] == {"deprecated_version": MAX_VIOLATIONS // 2,
                                         "no_api_versions": MAX_VIOLATIONS // 2}


def test_requests_are_summarised():
    summary = conformance.summarise({"topics": [{"name": "x" * 200}] * 5, "n": 1})
    assert summary["topics"][:3] == [{"name": "x" * 80 + "..."}] * 3
    assert summary["topics"][3] == "... 2 more"
    assert summary["n"] == 1


def test_clients_are_told_apart_and_nodes_merged():
    other = ("app", "kafka-python", "2.2.0")
    node1 = from_entries([api_versions(), entry("Produce", ApiKey.PRODUCE, 5)])
    node2 = from_entries([entry("Fetch", ApiKey.FETCH, 12, client=other, connection="x"),
                          api_versions(connection="y"),
                          entry("Produce", ApiKey.PRODUCE, 9, connection="y")])
    report = report_of([node1, node2])
    assert [(c["client_software_name"], c["apis"], c["violation_count"])
            for c in report["clients"]] == [
        ("kafka-python", {"Fetch": [12]}, 1),
        ("librdkafka", {"ApiVersions": [3], "Produce": [5, 9]}, 1)]
    assert report["strict"] is True


def test_markdown_has_a_section_per_client_with_its_apis_and_violations():
    text = to_markdown(from_entries([
        api_versions(), entry("Produce", ApiKey.PRODUCE, 5, correlation_id=42)]).report())
    assert "## app (librdkafka 2.16.0)" in text
    assert "| Produce | 5 |" in text
    assert "| deprecated_version | Produce v5 #42 | Produce v5: Kafka deprecates v0-v6 |" in text
    assert to_markdown({"strict": False, "clients": []}).endswith("No requests.")


def test_strict_mode_keeps_a_record_even_with_the_ring_off():
    """The request log's hook: strict mode keeps a conformance record with the ring off (the
    log exists for it); without strict mode there is none, and nothing to feed."""
    from trioka.clock import ManualClock
    from trioka.config import Config
    from trioka.observe.request_log import RequestLog
    clock = ManualClock()
    strict = RequestLog.from_config(
        Config({"trioka.strict": True, "trioka.request.log.size": 0}), clock, 1)
    assert strict is not None and strict.conformance is not None and strict.size == 0
    assert RequestLog.from_config(Config({"trioka.request.log.size": 0}), clock, 1) is None
    assert RequestLog.from_config(Config(), clock, 1).conformance is None
