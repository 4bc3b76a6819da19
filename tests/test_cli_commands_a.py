"""The parsing and formatting of `topic alter|trim|offsets`, `config`, `cluster`, produce's
--key / --format json / progress line, `serve --port` and $TRIOKA_BROKERS, without a broker.
"""

import argparse
import io
import types

import pytest

from trioka.__main__ import parser as main_parser
from trioka.cli import BROKERS_ENV, UsageError, bootstrap_servers, default_bootstrap
from trioka.cli import cluster as cli_cluster
from trioka.cli import config as cli_config
from trioka.cli import consume as cli_consume
from trioka.cli import produce as cli_produce
from trioka.cli import topic as cli_topic
from trioka.cli.client.cluster import (BROKER_RESOURCE, ConsumerRecord, GROUP_RESOURCE,
                                       TOPIC_RESOURCE)
from trioka.cli.client.connection import DEFAULT_BOOTSTRAP
from trioka.config import ConfigError, listeners_on_port
from trioka.wire import schema
from trioka.wire.api_keys import ApiKey

pytestmark = pytest.mark.timeout(30)


# --- produce --format json: the mirror of consume --format json --------------------------------

def test_json_input_reads_back_what_consume_prints():
    binary = bytes(range(256))
    rec = ConsumerRecord("other", 2, 77, 1700000000123, "CreateTime", b"k\xc3\xa9", binary,
                         [("h", b"text"), ("bin", b"\xff\x00"), ("none", None)])
    line = cli_consume.Formatter("json", []).format_record(rec)
    key, value, headers, partition, timestamp = cli_produce.JsonParser().parse(line.rstrip())
    assert key == b"k\xc3\xa9" and value == binary
    assert headers == [("h", b"text"), ("bin", b"\xff\x00"), ("none", None)]
    assert partition == 2 and timestamp == 1700000000123
    null = cli_consume.Formatter("json", []).format_record(
        ConsumerRecord("t", 0, 0, 5, "CreateTime", None, None, []))
    assert cli_produce.JsonParser().parse(null.rstrip()) == (None, None, [], 0, 5)


def test_json_input_defaults_fixed_key_and_header_object():
    p = cli_produce.JsonParser("fixed")
    assert p.parse(b'{"value": "v"}') == (b"fixed", b"v", None, None, None)
    assert p.parse(b'{"key": "own", "value": "v", "headers": {"a": "1"}}') == (
        b"own", b"v", [("a", b"1")], None, None)
    assert p.parse(b"   ") is None      # a blank line carries no record
    assert p.line_number == 3


@pytest.mark.parametrize("line, message", [
    (b"not json", "line number 1: not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"value": "v", "colour": "red"}', "unknown field(s) colour"),
    (b'{"value": 5}', "'value' must be a string or null"),
    (b'{"value": "!!", "value_encoding": "base64"}', "'value' is not valid base64"),
    (b'{"value": "x", "value_encoding": "hex"}', "unknown value_encoding 'hex'"),
    (b'{"partition": -1}', "'partition' must be a number 0 or more"),
    (b'{"timestamp": "now"}', "'timestamp' must be a number 0 or more"),
    (b'{"headers": [{"value": "x"}]}', "a header without a key"),
    (b'{"headers": "a=b"}', "'headers' must be a list"),
])
def test_json_input_errors_name_the_line_and_field(line, message):
    with pytest.raises(ValueError) as e:
        cli_produce.JsonParser().parse(line)
    assert message in str(e.value)


def _producer_args(**kw):
    base = dict(parse_key=False, key_separator=None, null_value_marker=None, property=[],
                fixed_key=None)
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_fixed_key_on_every_line_and_not_with_key_parsing():
    p = cli_produce.LineParser(_producer_args(fixed_key="user-1"))
    assert p.parse(b"a\tb") == (b"user-1", b"a\tb")
    with pytest.raises(UsageError, match="--key and key parsing"):
        cli_produce.LineParser(_producer_args(fixed_key="k", parse_key=True))


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_once_a_second_and_at_the_end():
    clock, out = FakeClock(), io.StringIO()
    progress = cli_produce.Progress(out, terminal=False, clock=clock)
    progress.sent(10, 500)
    assert out.getvalue() == ""          # less than a second in
    clock.now += 1.0
    progress.sent(10, 500)
    assert out.getvalue() == "20 records sent (1000 bytes), 20 records/s\n"
    clock.now += 0.5
    progress.sent(30, 100)
    assert out.getvalue().count("\n") == 1
    clock.now += 0.5
    progress.finish()
    assert out.getvalue().splitlines()[-1] == "50 records sent (1100 bytes), 25 records/s"


def test_progress_on_a_terminal_rewrites_one_line_and_says_nothing_for_nothing():
    clock, out = FakeClock(), io.StringIO()
    progress = cli_produce.Progress(out, terminal=True, clock=clock)
    clock.now += 2
    progress.sent(4, 40)
    progress.finish()
    assert out.getvalue() == ("\r4 records sent (40 bytes), 2 records/s\x1b[K"
                              "\r4 records sent (40 bytes), 2 records/s\x1b[K\n")
    quiet = io.StringIO()
    cli_produce.Progress(quiet, terminal=True, clock=clock).finish()
    assert quiet.getvalue() == ""


# --- topic offsets / trim / alter ----------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("earliest", -2), ("latest", -1), ("LATEST", -1),
                                         ("max-timestamp", -3), ("-2", -2),
                                         ("1700000000000", 1700000000000)])
def test_offset_time_values(text, value):
    assert cli_topic.offset_time(text) == value


@pytest.mark.parametrize("text", ["yesterday", "-4", "1.5"])
def test_offset_time_refuses_what_is_not_a_time(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli_topic.offset_time(text)


def test_offsets_table_rows():
    header, rows = cli_topic.offsets_table("t", [0, 1], {0: 2, 1: 0}, {0: 9, 1: 4},
                                           {0: 7, 1: 4}, None)
    assert header == ["TOPIC", "PARTITION", "LOG-START-OFFSET", "HIGH-WATERMARK",
                      "LAST-STABLE-OFFSET"]
    assert rows == [["t", 0, 2, 9, 7], ["t", 1, 0, 4, 4]]
    header, rows = cli_topic.offsets_table("t", [0, 1], {0: 2, 1: 0}, {0: 9, 1: 4},
                                           {0: 7, 1: 4}, {0: (5, 1700), 1: (-1, -1)})
    assert header[-2:] == ["OFFSET-AT-TIME", "TIMESTAMP"]
    assert rows == [["t", 0, 2, 9, 7, 5, 1700], ["t", 1, 0, 4, 4, "-", "-"]]


def _parse(*argv):
    return main_parser().parse_args(list(argv))


def test_topic_commands_parse_and_topics_is_an_alias():
    args = _parse("topics", "trim", "orders", "--all-partitions", "--offset", "-1")
    assert args.run is cli_topic.trim and args.all_partitions and args.offset == -1
    args = _parse("topic", "offsets", "--topic", "orders", "--time", "earliest")
    assert args.run is cli_topic.offsets and args.name_flag == "orders" and args.time == -2
    args = _parse("topic", "alter", "orders", "--partitions", "6")
    assert args.run is cli_topic.alter and args.partitions == 6
    with pytest.raises(SystemExit):    # --partition and --all-partitions: one of them
        _parse("topic", "trim", "orders", "-p", "0", "--all-partitions", "--offset", "3")


# --- config --------------------------------------------------------------------------------------

def _config_args(*argv):
    return _parse("config", *argv)


@pytest.mark.parametrize("argv, expected", [
    (["describe", "--topic", "orders"], (TOPIC_RESOURCE, "orders", "topic")),
    (["describe", "--broker", "1"], (BROKER_RESOURCE, "1", "broker")),
    (["alter", "--group", "g"], (GROUP_RESOURCE, "g", "group")),
    (["describe", "--entity-type", "topics", "--entity-name", "x"], (TOPIC_RESOURCE, "x",
                                                                     "topic")),
    (["describe", "--entity-type", "group", "--entity-name", "g"], (GROUP_RESOURCE, "g",
                                                                    "group")),
])
def test_config_resource_from_flags(argv, expected):
    assert cli_config.resource(_config_args(*argv)) == expected


@pytest.mark.parametrize("argv, message", [
    (["describe"], "name exactly one of"),
    (["describe", "--topic", "a", "--group", "b"], "name exactly one of"),
    (["describe", "--entity-type", "topics"], "go together"),
    (["describe", "--broker", "one"], "a broker is named by its node id"),
])
def test_config_resource_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        cli_config.resource(_config_args(*argv))


def _entry(name, value, source, synonyms=(), sensitive=False):
    return types.SimpleNamespace(
        name=name, value=value, config_source=source, is_sensitive=sensitive,
        synonyms=[types.SimpleNamespace(name=n, value=v, source=s) for s, n, v in synonyms])


def test_config_lines_as_kafka_configs_prints_them():
    entries = [_entry("retention.ms", "1000", 1, [(1, "retention.ms", "1000"),
                                                  (5, "log.retention.ms", "604800000")]),
               _entry("cleanup.policy", "delete", 5, [(5, "log.cleanup.policy", "delete")]),
               _entry("secret", "hidden", 1, [(1, "secret", "hidden")], sensitive=True)]
    assert cli_config.config_lines(entries, TOPIC_RESOURCE, False) == [
        "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000, "
        "DEFAULT_CONFIG:log.retention.ms=604800000}",
        "  secret=null sensitive=true synonyms={DYNAMIC_TOPIC_CONFIG:secret=null}"]
    every = cli_config.config_lines(entries, TOPIC_RESOURCE, True)
    assert [line.split("=")[0] for line in every] == ["  cleanup.policy", "  retention.ms",
                                                      "  secret"]
    assert cli_config.config_lines(entries, GROUP_RESOURCE, False) == []


# --- cluster -------------------------------------------------------------------------------------

def test_api_version_lines_in_kafka_broker_api_versions_words():
    lo, hi = schema.api(ApiKey.PRODUCE).valid
    assert cli_cluster.api_version_text(ApiKey.PRODUCE, 3, hi + 5) == \
        f"Produce(0): 3 to {hi + 5} [usable: {hi}]"
    assert cli_cluster.api_version_text(ApiKey.PRODUCE, 3, 3) == "Produce(0): 3 [usable: 3]"
    assert cli_cluster.api_version_text(ApiKey.PRODUCE, hi + 1, hi + 2).endswith(
        "[unusable: node too new]")
    assert cli_cluster.api_version_text(9999, 0, 1) == "UNKNOWN(9999): 0 to 1"
    block = cli_cluster.api_versions_block(
        cli_cluster.node_text("h", 9092, 1, None, False),
        {ApiKey.FETCH: (4, 12), ApiKey.PRODUCE: (3, 3)})
    assert block == ("h:9092 (id: 1 rack: null isFenced: false) -> (\n"
                     "\tProduce(0): 3 [usable: 3],\n"
                     "\tFetch(1): 4 to 12 [usable: 12]\n)\n")


# --- bootstrap from the environment, serve --port ------------------------------------------------

def test_bootstrap_precedence_flag_then_environment_then_default(monkeypatch):
    assert default_bootstrap({}) == DEFAULT_BOOTSTRAP
    assert default_bootstrap({BROKERS_ENV: "  "}) == DEFAULT_BOOTSTRAP
    assert default_bootstrap({BROKERS_ENV: "k1:9093,k2:9093"}) == "k1:9093,k2:9093"
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(from \$TRIOKA_BROKERS\)"):
        bootstrap_servers(default_bootstrap({BROKERS_ENV: "nohost"}))
    monkeypatch.setenv(BROKERS_ENV, "envhost:1234")
    assert _parse("topic", "list").bootstrap_server == "envhost:1234"
    assert _parse("cluster", "info", "-b", "flag:1").bootstrap_server == "flag:1"
    monkeypatch.delenv(BROKERS_ENV)
    assert _parse("config", "describe").bootstrap_server == DEFAULT_BOOTSTRAP


def test_listeners_on_port_keeps_name_and_host():
    assert listeners_on_port("PLAINTEXT://127.0.0.1:9092", 0) == "PLAINTEXT://127.0.0.1:0"
    assert listeners_on_port("SSL://[::1]:9093", 19093) == "SSL://[::1]:19093"
    with pytest.raises(ValueError, match="--port needs a single listener"):
        listeners_on_port("PLAINTEXT://:9092,SSL://:9093", 1)
    with pytest.raises(ConfigError):
        listeners_on_port("nonsense", 1)


def test_serve_port_builds_the_listener_and_refuses_listeners_too(capsys):
    from trioka.__main__ import load_config
    args = _parse("serve", "--memory", "--port", "0")
    assert load_config(args).listeners == "PLAINTEXT://127.0.0.1:0"
    args = _parse("serve", "--memory", "--port", "1", "--listeners", "PLAINTEXT://:2")
    with pytest.raises(SystemExit) as e:
        load_config(args)
    assert e.value.code == 2 and "--port and --listeners" in capsys.readouterr().err
