"""The command-line tools' parsing and formatting, without a broker: the console producer's line
parsing, the consumer's output formats, the topic tool's config lists and topic ids.
"""

import base64
import json
import socket
import types

import pytest

from trioka.cli import UsageError
from trioka.cli import consume as cli_consume
from trioka.cli import produce as cli_produce
from trioka.cli import topic as cli_topic
from trioka.cli.client.cluster import ConsumerRecord

pytestmark = pytest.mark.timeout(30)


def _producer_args(**kw):
    base = dict(parse_key=False, key_separator=None, null_value_marker=None, property=[])
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_line_parser_keys_separators_and_null_markers():
    p = cli_produce.LineParser(_producer_args(parse_key=True))
    assert p.parse(b"k\tv\tw") == (b"k", b"v\tw")
    p = cli_produce.LineParser(_producer_args(key_separator="::", null_value_marker="NULL"))
    assert p.parse(b"a::b") == (b"a", b"b")
    assert p.parse(b"a::NULL") == (b"a", None)
    with pytest.raises(ValueError, match="line number 3"):
        p.parse(b"no separator")
    p = cli_produce.LineParser(_producer_args(property=[("parse.key", "true"),
                                                        ("key.separator", ","),
                                                        ("null.marker", "~")]))
    assert p.parse(b"~,~") == (None, None)
    p = cli_produce.LineParser(_producer_args())
    assert p.parse(b"x\ty") == (None, b"x\ty")
    with pytest.raises(UsageError):
        cli_produce.LineParser(_producer_args(property=[("linger.ms", "5")]))


def test_read_lines_splits_on_newlines_and_keeps_empty_lines():
    r, w = socket.socketpair()
    try:
        w.sendall(b"one\r\n\ntwo\nlast")
        w.close()
        lines = [line for line, _ in cli_produce.read_lines(r.fileno())]
    finally:
        r.close()
    assert lines == [b"one", b"", b"two", b"last"]


def _rec(key, value, headers=(), ts=1700000000000):
    return ConsumerRecord("t", 1, 42, ts, "CreateTime", key, value, list(headers))


def test_json_format_uses_text_or_base64():
    binary = bytes(range(256))
    line = cli_consume.Formatter("json", []).format_record(
        _rec(b"key", binary, [("h", b"text"), ("bin", b"\xff\x00"), ("none", None)]))
    obj = json.loads(line)
    assert obj["topic"] == "t" and obj["partition"] == 1 and obj["offset"] == 42
    assert obj["timestamp"] == 1700000000000 and obj["timestamp_type"] == "CreateTime"
    assert obj["key"] == "key" and "key_encoding" not in obj
    assert obj["value_encoding"] == "base64"
    assert base64.b64decode(obj["value"]) == binary
    assert obj["headers"] == [{"key": "h", "value": "text"},
                              {"key": "bin", "value": "/wA=", "value_encoding": "base64"},
                              {"key": "none", "value": None}]
    obj = json.loads(cli_consume.Formatter("json", []).format_record(_rec(None, None)))
    assert obj["key"] is None and obj["value"] is None and obj["headers"] == []


def test_value_kv_and_property_formats():
    rec = _rec(b"k", b"v", [("a", b"1"), ("b", b"2")])
    assert cli_consume.Formatter("value", []).format_record(rec) == b"v\n"
    assert cli_consume.Formatter("kv", []).format_record(rec) == b"k\tv\n"
    assert cli_consume.Formatter("value", []).format_record(_rec(None, None)) == b"null\n"
    f = cli_consume.Formatter("value", [("print.key", "true"), ("print.timestamp", "true"),
                                        ("print.partition", "true"), ("print.offset", "true"),
                                        ("print.headers", "true"), ("key.separator", "|")])
    assert f.format_record(rec) == b"CreateTime:1700000000000|Partition:1|Offset:42|a:1,b:2|k|v\n"
    assert f.format_record(_rec(None, b"v")) == (
        b"CreateTime:1700000000000|Partition:1|Offset:42|NO_HEADERS|null|v\n")
    with pytest.raises(UsageError):
        cli_consume.Formatter("json", [("print.key", "true")])


def test_config_lists_in_brackets():
    assert cli_topic.split_config_list("a=1,b=[x,y],c=2") == ["a=1", "b=[x,y]", "c=2"]
    assert cli_topic.parse_add_config(["a=1,b=[x,y]", "c="]) == [
        ("a", "1"), ("b", "x,y"), ("c", "")]
    with pytest.raises(UsageError):
        cli_topic.parse_add_config(["novalue"])


def test_topic_id_text_is_kafkas_base64():
    import uuid
    u = uuid.UUID("76232584-501f-4f33-869e-94f731f9a09d")
    assert cli_topic.topic_id_text(u) == base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")
    assert len(cli_topic.topic_id_text(u)) == 22
