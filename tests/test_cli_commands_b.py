"""The pure parts of the consume / group / txn tools: kcat's format strings and offset forms,
Java durations, kafka-consumer-groups.sh's CSV, and which open transactions are hanging."""

import collections

import pytest

from trioka.cli import UsageError
from trioka.cli.consume import (OFFSET_ABSOLUTE, OFFSET_EARLIEST, OFFSET_FROM_END, OFFSET_LATEST,
                                OFFSET_STORED, OFFSET_TIMESTAMP, KcatFormatter, include_topics,
                                parse_offset_spec, start_offset)
from trioka.cli.group import assignment_text, export_csv, parse_duration, parse_offsets_csv
from trioka.cli.txn import hanging, open_candidates

Rec = collections.namedtuple("Rec", "topic partition offset timestamp timestamp_type key value "
                                    "headers")
State = collections.namedtuple("State", "producer_id producer_epoch coordinator_epoch "
                                        "last_sequence last_timestamp current_txn_start_offset")


def fmt(f: str, rec: Rec) -> bytes:
    return KcatFormatter(f).format_record(rec)


REC = Rec("orders", 3, 42, 1700000000123, "CreateTime", b"k", b"value",
          [("a", b"1"), ("b", None)])


def test_every_kcat_token():
    assert fmt(r"%t %p %o %k %K %s %S %T %h\n", REC) == (
        b"orders 3 42 k 1 value 5 1700000000123 a=1,b=\n")
    assert fmt("%R", REC) == (5).to_bytes(4, "big")


def test_null_key_and_value_are_empty_with_length_minus_one():
    rec = REC._replace(key=None, value=None, headers=[])
    assert fmt("[%k|%K|%s|%S|%h]", rec) == b"[|-1||-1|]"
    assert fmt("%R", rec) == (-1).to_bytes(4, "big", signed=True)


def test_escapes_and_literal_percent():
    assert fmt(r"%%\t\r\n\\\x41\x7e", REC) == b"%\t\r\n\\A~"
    assert fmt("no newline", REC) == b"no newline"
    assert fmt("%", REC) == b"%"          # a lone % at the end is literal


@pytest.mark.parametrize("bad", ["%q", r"\xZZ"])
def test_bad_format_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        KcatFormatter(bad)


@pytest.mark.parametrize("text, expected", [
    ("beginning", (OFFSET_EARLIEST, None)), ("earliest", (OFFSET_EARLIEST, None)),
    ("end", (OFFSET_LATEST, None)), ("latest", (OFFSET_LATEST, None)),
    ("stored", (OFFSET_STORED, None)), ("0", (OFFSET_ABSOLUTE, 0)),
    ("17", (OFFSET_ABSOLUTE, 17)), ("-10", (OFFSET_FROM_END, 10)),
    ("s@1700000000000", (OFFSET_TIMESTAMP, 1700000000000)),
])
def test_offset_forms(text, expected):
    assert parse_offset_spec(text) == expected


@pytest.mark.parametrize("bad", ["", "start", "s@", "s@-1", "1.5", "e@5"])
def test_bad_offsets_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_offset_spec(bad)


def test_relative_offsets_stay_within_the_partition():
    assert start_offset(OFFSET_FROM_END, 10, 0, 100) == 90
    assert start_offset(OFFSET_FROM_END, 10, 95, 100) == 95
    assert start_offset(OFFSET_FROM_END, 10, 0, 3) == 0
    assert start_offset(OFFSET_ABSOLUTE, 7, 0, 3) == 7     # out of range: reset on fetch


def test_include_matches_whole_names_and_leaves_internal_topics_out():
    names = ["orders", "orders-eu", "xorders", "__consumer_offsets", "__transaction_state"]
    assert include_topics(names, "orders.*") == ["orders", "orders-eu"]
    assert include_topics(names, ".*") == ["orders", "orders-eu", "xorders"]
    with pytest.raises(UsageError):
        include_topics(names, "(")


@pytest.mark.parametrize("text, ms", [
    ("PT15M", 900_000), ("P1DT2H", 93_600_000), ("PT0.5S", 500), ("pt1h30m", 5_400_000),
    ("-PT1M", -60_000), ("PT-1.5S", -1500), ("P0D", 0),
])
def test_java_durations(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["P", "PT", "15M", "P1H", "PT1D", "1 hour", "P1DT"])
def test_bad_durations(bad):
    with pytest.raises(UsageError):
        parse_duration(bad)


def test_offsets_csv_round_trip_and_group_column():
    import io
    out = io.StringIO()
    export_csv({("t", 1): 7, ("t", 0): 5}, out)
    assert out.getvalue() == "t,0,5\nt,1,7\n"
    assert parse_offsets_csv(out.getvalue(), "g", "f") == {("t", 0): 5, ("t", 1): 7}
    assert parse_offsets_csv("g,t,0,1\nh,t,0,9\n\n", "g", "f") == {("t", 0): 1}
    with pytest.raises(UsageError, match="f line 1"):
        parse_offsets_csv("t,zero,1\n", "g", "f")


def test_assignment_column():
    assert assignment_text([("b", 0), ("a", 1), ("a", 0)]) == "a(0,1),b(0)"
    assert assignment_text([]) == "-"


def test_open_transactions_older_than_the_timeout_are_candidates():
    now = 10 * 60_000
    producers = {("t", 0): [State(1, 0, -1, 0, 0, 5),           # open for 10 min
                            State(2, 0, -1, 0, 0, -1)],          # no open transaction
                 ("t", 1): [State(3, 0, 2, 4, now - 1000, 9)]}   # open for a second
    assert [(tp, s.producer_id) for tp, s in open_candidates(producers, now, 5)] == [
        (("t", 0), 1)]
    assert [s.producer_id for _, s in open_candidates(producers, now, 0)] == [1, 3]
    assert open_candidates(producers, now, 10) == []           # exactly the limit: not over


def test_hanging_unless_the_coordinator_names_the_partition():
    a, b = State(1, 0, -1, 0, 0, 5), State(2, 0, 0, 0, 0, 7)
    open_txns = [(("t", 0), a), (("t", 1), b), (("t", 2), b)]
    # Producer 1 is unknown to every coordinator; producer 2's transaction names t-1 only.
    assert hanging(open_txns, {2: {("t", 1)}}) == [(("t", 0), a), (("t", 2), b)]
    assert hanging(open_txns, {1: {("t", 0)}, 2: {("t", 1), ("t", 2)}}) == []
