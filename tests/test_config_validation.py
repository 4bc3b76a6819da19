"""Config values checked at load as Kafka's ConfigDef checks them (type, range, allowed values),
whatever their source: a dict, keywords, server.properties, KAFKA_* variables, the Python API;
the command line's parser and start-failure lines. No sockets: pure logic."""

import errno

import pytest

import trioka
from trioka.__main__ import main, parser, start_failure
from trioka.config import Config, ConfigError, parse_listeners
from trioka.log.manager import LogDirError


@pytest.mark.parametrize("key, value, message", [
    ("num.partitions", "abc", "Invalid value abc for configuration num.partitions: Not a number "
                              "of type INT"),
    ("num.partitions", "0", "Invalid value 0 for configuration num.partitions: Value must be at "
                            "least 1"),
    ("num.partitions", "2147483648", "Invalid value 2147483648 for configuration num.partitions: "
                                     "Not a number of type INT"),
    ("log.retention.ms", "1e3", "Invalid value 1e3 for configuration log.retention.ms: Not a "
                                "number of type LONG"),
    ("log.retention.ms", str(2**63), f"Invalid value {2**63} for configuration log.retention.ms:"
                                     f" Not a number of type LONG"),
    ("log.segment.bytes", -5, "Invalid value -5 for configuration log.segment.bytes: Value must "
                              "be at least 14"),
    ("fetch.max.bytes", "1023", "Invalid value 1023 for configuration fetch.max.bytes: Value "
                                "must be at least 1024"),
    ("delete.topic.enable", "yes", "Invalid value yes for configuration delete.topic.enable: "
                                   "Expected value to be either true or false"),
    ("log.message.timestamp.type", "WallTime", "Invalid value WallTime for configuration "
     "log.message.timestamp.type: String must be one of: CreateTime, LogAppendTime"),
    ("log.cleanup.policy", "compact,shred", "Invalid value compact,shred for configuration "
     "log.cleanup.policy: String must be one of: compact, delete"),
    ("listeners", "127.0.0.1:9092", "Invalid value 127.0.0.1:9092 for configuration listeners: "
                                    "Unable to parse 127.0.0.1:9092 to a broker endpoint"),
    ("listeners", "PLAINTEXT://:70000", "Invalid value PLAINTEXT://:70000 for configuration "
                                        "listeners: port out of range:70000"),
    ("advertised.listeners", "PLAINTEXT://h:x", "Invalid value PLAINTEXT://h:x for "
     "configuration advertised.listeners: Unable to parse PLAINTEXT://h:x to a broker endpoint"),
])
def test_a_bad_value_is_kafkas_config_exception(key, value, message):
    with pytest.raises(ConfigError) as raised:
        Config({key: value})
    assert str(raised.value) == message
    assert raised.value.key == key
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("key, value, parsed", [
    ("num.partitions", " 3 ", 3),
    ("num.partitions", 1, 1),
    ("log.segment.bytes", "14", 14),
    ("log.retention.ms", "-1", -1),
    ("log.retention.ms", str(2**63 - 1), 2**63 - 1),
    ("delete.topic.enable", "FALSE", False),
    ("delete.topic.enable", True, True),
    ("log.cleanup.policy", "compact, delete", "compact, delete"),
    ("log.cleanup.policy", "", ""),
    ("compression.type", "zstd", "zstd"),
    ("listeners", "PLAINTEXT://:0,CONTROLLER://[::1]:9093", "PLAINTEXT://:0,CONTROLLER://[::1]:9093"),
])
def test_a_good_value_is_taken(key, value, parsed):
    assert Config({key: value}).get(key) == parsed


def test_a_value_of_the_wrong_python_type_is_refused():
    with pytest.raises(ConfigError, match="num.partitions: Not a number of type INT"):
        Config(num_partitions=2.5)
    with pytest.raises(ConfigError, match="num.partitions: Not a number of type INT"):
        Config(num_partitions=True)


def test_every_source_is_checked(tmp_path):
    props = tmp_path / "server.properties"
    props.write_text("num.partitions=3\nlog.roll.hours=0\n")
    with pytest.raises(ConfigError, match="^Invalid value 0 for configuration log.roll.hours: "
                                          "Value must be at least 1$"):
        Config.load(str(props), environ={})
    with pytest.raises(ConfigError, match="^Invalid value banana for configuration "
                                          "num.partitions: Not a number of type INT$"):
        Config.load(None, environ={"KAFKA_NUM_PARTITIONS": "banana"})
    with pytest.raises(ConfigError, match="max.connections: Value must be at least 0"):
        Config.load(None, environ={}, overrides={"max.connections": "-1"})
    cfg = Config.load(None, environ={"KAFKA_NUM_PARTITIONS": "4"}, overrides={})
    assert cfg.num_partitions == 4


def test_dynamic_values_are_checked_too():
    cfg = Config()
    with pytest.raises(ConfigError, match="log.retention.bytes: Not a number of type LONG"):
        cfg.parse("log.retention.bytes", "lots")
    assert cfg.parse("log.retention.bytes", "10") == 10


def test_an_unknown_key_is_a_warning_not_an_error():
    cfg = Config({"bogus.key": 1})
    assert cfg.warnings == ["unknown config key 'bogus.key' ignored"]


def test_the_python_api_refuses_bad_values_and_warns_of_unknown_keys():
    with pytest.raises(ConfigError, match="^Invalid value abc for configuration num.partitions: "
                                          "Not a number of type INT$"):
        trioka.Broker(num_partitions="abc")
    with pytest.warns(UserWarning, match="unknown config key 'bogus.key' ignored"):
        trioka.Broker(bogus_key=1, memory=True)


def test_parse_listeners():
    [a, b] = parse_listeners("plaintext://127.0.0.1:9092, CONTROLLER://:0")
    assert (a.name, a.host, a.port) == ("PLAINTEXT", "127.0.0.1", 9092)
    assert (b.name, b.host, b.port) == ("CONTROLLER", "", 0)


def test_dir_of_the_package_lists_its_lazy_names():
    assert {"Broker", "Cluster", "Config", "serve", "__version__"} <= set(dir(trioka))


# -- the command line ------------------------------------------------------------------------

def test_start_failures_are_one_line():
    bind = OSError(errno.EADDRINUSE, "Socket server failed to bind to 127.0.0.1:9092: Address "
                                     "already in use.")
    group = BaseExceptionGroup("", [BaseExceptionGroup("", [bind])])
    assert start_failure(group) == ("Socket server failed to bind to 127.0.0.1:9092: Address "
                                    "already in use.")
    locked = LogDirError("data dir d is in use by another broker process")
    assert start_failure(BaseExceptionGroup("", [locked])) == str(locked)
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/meta.properties")
    assert start_failure(denied) == "/data/meta.properties: Permission denied"
    assert start_failure(BaseExceptionGroup("", [KeyError("bug")])) is None


@pytest.mark.parametrize("argv, command, message", [
    (["serve", "--bogus"], "trioka serve", "unrecognized arguments: --bogus"),
    (["topic", "create", "t", "-p", "3"], "trioka topic create", "unrecognized arguments: -p 3"),
    (["group", "list", "-b", "nohost"], "trioka group list",
     "argument --bootstrap-server/-b: bad bootstrap server 'nohost': expected HOST:PORT"),
    (["--memory", "-b", "h:1", "txn", "list"], "trioka",
     "unrecognized arguments: --memory -b h:1 (a command's options go after it: trioka txn "
     "list --memory -b h:1)"),
])
def test_a_usage_error_is_the_commands(argv, command, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {command} ")
    assert err.splitlines()[-1] == f"{command}: error: {message}"


def test_log_level_is_one_of_pythons():
    args = parser(tools=False).parse_args(["serve", "--log-level", "debug"])
    assert args.log_level == "DEBUG"
