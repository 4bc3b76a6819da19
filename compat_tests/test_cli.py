"""The `trioka` command-line tools (topic, produce, consume, group, txn) against a broker process,
each result cross-checked with a stock client: confluent-kafka (librdkafka) and kcat read what
`trioka produce` wrote and write what `trioka consume` reads; confluent's AdminClient sees what
`trioka topic` changed; a confluent consumer's commits show up in `trioka group describe`, and
what `trioka group reset-offsets` commits is what confluent's consumer finds. The tools run as
subprocesses (`python -m trioka ...`), every one with a timeout.
"""

import base64
import datetime
import json
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from clients import (Rec, by_partition, consume_confluent, polled, produce_confluent, run_kcat,
                     sample_records)
from harness import CODEC_IDS, create_topic, fetch_raw_batches, unique, wait_for
from trioka.cli.client.partitioner import partition_for_key

TIMEOUT = 30
pytestmark = pytest.mark.timeout(180)


def trioka(broker, *args, input: bytes | None = None, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m trioka ARGS -b BROKER`: the finished process (stdout and stderr as bytes)."""
    proc = subprocess.run([sys.executable, "-m", "trioka", *args, "-b", broker.bootstrap],
                          input=input, capture_output=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode())
    return proc


def table(stdout: bytes) -> list[dict]:
    """Rows of a padded table the tools print (a header line, then one row a line)."""
    lines = [line for line in stdout.decode().splitlines() if line.strip()]
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        rows.append(dict(zip(header, cells + ["" for _ in range(len(header) - len(cells))])))
    return rows


def json_records(stdout: bytes) -> list[Rec]:
    """`--format json` lines back into Recs (base64 fields decoded)."""
    def field(obj, name):
        value = obj[name]
        if value is None:
            return None
        if obj.get(name + "_encoding") == "base64":
            return base64.b64decode(value)
        return value.encode()

    out = []
    for line in stdout.decode().splitlines():
        obj = json.loads(line)
        assert obj["timestamp_type"] == "CreateTime", obj
        headers = [(h["key"], field(h, "value")) for h in obj["headers"]]
        out.append(Rec(obj["partition"], obj["offset"], field(obj, "key"), field(obj, "value"),
                       headers, obj["timestamp"]))
    return out


def committed(bootstrap: str, group: str, topic: str, partitions) -> dict[int, int]:
    """The group's committed offsets as confluent's consumer reads them (without joining)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {tp.partition: tp.offset for tp in
                c.committed([TopicPartition(topic, p) for p in partitions], timeout=TIMEOUT)}
    finally:
        c.close()


# --- produce -> confluent / kcat ---------------------------------------------------------------

@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_keys_headers_and_codec_read_by_confluent(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name, 3)
    keys = [f"key-{i}".encode() for i in range(30)]
    lines = b"".join(k + b"\t" + f"value {i} \xc3\xa9".encode() + b"\n"
                     for i, k in enumerate(keys))
    trioka(broker, "produce", topic_name, "--parse-key", "--header", "source=cli",
           "-H", "n=2", "--compression", codec, input=lines)
    got = consume_confluent(broker.bootstrap, topic_name, range(3), len(keys))
    assert len(got) == len(keys)
    by_key = {r.key: r for r in got}
    for i, key in enumerate(keys):
        r = by_key[key]
        assert r.value == f"value {i} \xc3\xa9".encode()
        assert r.headers == (("source", b"cli"), ("n", b"2"))
        # Where Kafka's Java producer (murmur2) puts the key.
        assert r.partition == partition_for_key(key, 3)
    for p, recs in by_partition(got).items():
        assert [r.offset for r in recs] == list(range(len(recs)))
        stored = fetch_raw_batches(broker.bootstrap, topic_name, p)
        assert stored and all(b.compression == CODEC_IDS[codec] for b in stored)


def test_key_partitioning_agrees_with_librdkafkas_murmur2(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 5)
    keys = [f"user-{i}" for i in range(40)]
    trioka(broker, "produce", topic_name, "-K", ":",
           input="".join(f"{k}:cli\n" for k in keys).encode())
    other = unique("murmur2")
    create_topic(broker.bootstrap, other, 5)
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2"})
    for k in keys:
        p.produce(other, b"confluent", k.encode())
    assert p.flush(TIMEOUT) == 0
    ours = {r.key: r.partition for r in consume_confluent(broker.bootstrap, topic_name,
                                                          range(5), len(keys))}
    theirs = {r.key: r.partition for r in consume_confluent(broker.bootstrap, other,
                                                            range(5), len(keys))}
    assert len(ours) == len(keys) and ours == theirs


def test_produce_to_a_partition_with_separator_and_null_marker(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 3)
    trioka(broker, "produce", topic_name, "--partition", "2", "--key-separator", "::",
           "--null-value-marker", "NULL", input=b"a::x\nb::NULL\nc::\n::only value\n")
    got = consume_confluent(broker.bootstrap, topic_name, [2], 4)
    assert [(r.partition, r.offset, r.key, r.value) for r in got] == [
        (2, 0, b"a", b"x"), (2, 1, b"b", None), (2, 2, b"c", b""), (2, 3, b"", b"only value")]
    # Lines without keys: values only, empty lines kept, no extra record for the final newline.
    trioka(broker, "produce", topic_name, "-p", "1", "--acks", "1", input=b"one\n\nthree\n")
    got = consume_confluent(broker.bootstrap, topic_name, [1], 3)
    assert [(r.key, r.value) for r in got] == [(None, b"one"), (None, b""), (None, b"three")]


def test_produce_read_by_kcat(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    trioka(broker, "produce", topic_name, "-K", "=", "-H", "h=v", "-z", "lz4",
           input=b"k1=v1\nk2=v2\n")
    out = run_kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-q",
                   "-f", "%p %o %k %s %h\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["0 0 k1 v1 h=v", "0 1 k2 v2 h=v"]


def test_produce_failures_exit_non_zero(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    bad = trioka(broker, "produce", topic_name, "--partition", "5", input=b"x\n", check=False)
    assert bad.returncode != 0 and b"partition 5" in bad.stderr
    # A line without the key separator stops the producer; what came before it is sent.
    bad = trioka(broker, "produce", topic_name, "--parse-key", input=b"k\tgood\nno-tab\n",
                 check=False)
    assert bad.returncode == 1 and b"line number 2: 'no-tab'" in bad.stderr
    assert [(r.key, r.value) for r in consume_confluent(broker.bootstrap, topic_name, [0], 1)] \
        == [(b"k", b"good")]
    # Nothing listens there: a failure that ends by itself, not a hang.
    try:
        dead = subprocess.run([sys.executable, "-m", "trioka", "topic", "list", "-b",
                               "127.0.0.1:1"], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("trioka topic list kept trying 127.0.0.1:1 for 60 s") from None
    assert dead.returncode == 1 and b"127.0.0.1:1" in dead.stderr


# --- confluent / kcat -> consume ---------------------------------------------------------------

def test_consume_every_format_of_what_confluent_produced(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 3)
    expected = sample_records(3)
    produce_confluent(broker.bootstrap, topic_name, expected, config={"linger.ms": 5})
    out = trioka(broker, "consume", topic_name, "--from-beginning", "--format", "json", "-e")
    got = json_records(out.stdout)
    assert by_partition(got) == by_partition(expected)
    assert b"Processed a total of 18 messages" in out.stderr

    p0 = [r for r in expected if r.partition == 0]
    out = trioka(broker, "consume", topic_name, "--partition", "0", "--offset", "earliest",
                 "--format", "kv", "--max-messages", str(len(p0)))
    assert out.stdout == b"".join((r.key if r.key is not None else b"null") + b"\t"
                                  + (r.value if r.value is not None else b"null") + b"\n"
                                  for r in p0)
    out = trioka(broker, "consume", topic_name, "-p", "0", "--from-beginning", "-c",
                 str(len(p0)))
    assert out.stdout == b"".join((r.value if r.value is not None else b"null") + b"\n"
                                  for r in p0)
    out = trioka(broker, "consume", topic_name, "-p", "0", "--from-beginning", "-c", "1",
                 "--property", "print.key=true", "--property", "print.offset=true",
                 "--property", "print.headers=true", "--property", "key.separator=|")
    first = p0[0]
    assert out.stdout == (b"Offset:0|h1:one,h2:|" + first.key + b"|" + first.value + b"\n")
    out = trioka(broker, "consume", topic_name, "-p", "0", "--from-beginning", "-c", "2",
                 "--print-offsets")
    assert out.stdout == b"".join(b"Partition:0\tOffset:%d\t" % i
                                  + (r.value if r.value is not None else b"null") + b"\n"
                                  for i, r in enumerate(p0[:2]))


def test_consume_from_offset_timestamp_latest_and_timeout(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    base = (int(time.time()) - 600) * 1000
    recs = [Rec(1, i, f"k{i}".encode(), f"v{i}".encode(), [], base + i * 1000)
            for i in range(10)]
    produce_confluent(broker.bootstrap, topic_name, recs, config={"linger.ms": 5})
    out = trioka(broker, "consume", topic_name, "--partition", "1", "--offset", "4", "-c", "3",
                 "--format", "json")
    assert [(r.offset, r.value) for r in json_records(out.stdout)] == [
        (4, b"v4"), (5, b"v5"), (6, b"v6")]
    out = trioka(broker, "consume", topic_name, "--timestamp", str(base + 6500), "-c", "2",
                 "--format", "json")
    got = json_records(out.stdout)
    assert [(r.partition, r.offset, r.timestamp) for r in got] == [
        (1, 7, base + 7000), (1, 8, base + 8000)]
    # At the end already: --exit-at-end returns at once; --timeout-ms returns after the wait.
    out = trioka(broker, "consume", topic_name, "--offset", "latest", "-e")
    assert out.stdout == b""
    started = time.monotonic()
    out = trioka(broker, "consume", topic_name, "--timeout-ms", "700")
    assert out.stdout == b"" and b"Processed a total of 0 messages" in out.stderr
    assert time.monotonic() - started >= 0.7
    missing = trioka(broker, "consume", unique("no-such-topic"), "-e", check=False)
    assert missing.returncode == 1 and b"UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr


def test_consume_what_kcat_produced(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    out = run_kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-p", "0", "-K", ":",
                   "-H", "from=kcat", "-z", "snappy", input=b"a:1\nb:2\nc:3\n")
    assert out.returncode == 0, out.stderr
    out = trioka(broker, "consume", topic_name, "--from-beginning", "-c", "3", "--format",
                 "json")
    got = json_records(out.stdout)
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == [
        (0, b"a", b"1", (("from", b"kcat"),)), (1, b"b", b"2", (("from", b"kcat"),)),
        (2, b"c", b"3", (("from", b"kcat"),))]


def test_read_committed_skips_aborted_transactions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    txn_id = unique("cli-txn")
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id,
                  "linger.ms": 5})
    p.init_transactions(TIMEOUT)
    p.begin_transaction()
    for v in (b"c1", b"c2", b"c3"):
        p.produce(topic_name, v, partition=0)
    p.commit_transaction(TIMEOUT)
    p.begin_transaction()
    for v in (b"a1", b"a2"):
        p.produce(topic_name, v, partition=0)
    assert p.flush(TIMEOUT) == 0        # written, so that there is something to abort
    p.abort_transaction(TIMEOUT)
    p.begin_transaction()
    p.produce(topic_name, b"open", partition=0)
    assert p.flush(TIMEOUT) == 0
    try:
        committed_only = trioka(broker, "consume", topic_name, "--from-beginning", "-e",
                                "--isolation-level", "read_committed")
        assert committed_only.stdout.split() == [b"c1", b"c2", b"c3"]
        everything = trioka(broker, "consume", topic_name, "--from-beginning", "-e")
        assert everything.stdout.split() == [b"c1", b"c2", b"c3", b"a1", b"a2", b"open"]

        listed = table(trioka(broker, "txn", "list").stdout)
        mine = [r for r in listed if r["TransactionalId"] == txn_id]
        assert len(mine) == 1 and mine[0]["TransactionState"] == "Ongoing", listed
        [described] = table(trioka(broker, "txn", "describe", txn_id).stdout)
        assert described["TransactionState"] == "Ongoing"
        assert described["ProducerId"] == mine[0]["ProducerId"]
        assert described["TopicPartitions"] == f"{topic_name}-0"
        assert int(described["CurrentTransactionStartTimeMs"]) > 0
        missing = trioka(broker, "txn", "describe", unique("nobody"), check=False)
        assert missing.returncode == 1 and b"TRANSACTIONAL_ID_NOT_FOUND" in missing.stderr
    finally:
        p.commit_transaction(TIMEOUT)
    after = trioka(broker, "consume", topic_name, "--from-beginning", "-e",
                   "--isolation-level", "read_committed")
    assert after.stdout.split() == [b"c1", b"c2", b"c3", b"open"]
    [described] = table(trioka(broker, "txn", "describe", txn_id).stdout)
    assert described["TransactionState"] in ("CompleteCommit", "Empty")
    assert described["CurrentTransactionStartTimeMs"] == "None"


# --- topic admin <-> confluent AdminClient --------------------------------------------------------

def _configs(admin, topic) -> dict:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(timeout=TIMEOUT)
    return {k: (e.value, e.is_default) for k, e in entries.items()}


def test_topic_create_list_describe_alter_delete(broker, topic_name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    out = trioka(broker, "topic", "create", topic_name, "--partitions", "4",
                 "--replication-factor", "1", "--config", "retention.ms=3600000",
                 "--config", "segment.bytes=1048576")
    assert out.stdout.decode().strip() == f"Created topic {topic_name}."
    meta = admin.list_topics(topic_name, timeout=TIMEOUT).topics[topic_name]
    assert meta.error is None and sorted(meta.partitions) == [0, 1, 2, 3]
    configs = _configs(admin, topic_name)
    assert configs["retention.ms"] == ("3600000", False)
    assert configs["segment.bytes"] == ("1048576", False)

    again = trioka(broker, "topic", "create", topic_name, check=False)
    assert again.returncode == 1 and b"TOPIC_ALREADY_EXISTS" in again.stderr
    trioka(broker, "topic", "create", "--topic", topic_name, "--if-not-exists")
    assert topic_name in trioka(broker, "topic", "list").stdout.decode().split()

    lines = trioka(broker, "topic", "describe", topic_name).stdout.decode().splitlines()
    head = dict(f.split(": ", 1) for f in lines[0].split("\t"))
    assert head["Topic"] == topic_name and head["PartitionCount"] == "4"
    assert head["ReplicationFactor"] == "1"
    shown = dict(kv.split("=", 1) for kv in head["Configs"].split(","))
    assert shown == {"retention.ms": "3600000", "segment.bytes": "1048576"}
    parts = [dict(f.split(": ", 1) for f in line.strip().split("\t")) for line in lines[1:]]
    assert [p["Partition"] for p in parts] == ["0", "1", "2", "3"]
    leader = str(next(iter(admin.list_topics(timeout=TIMEOUT).brokers)))
    assert all(p["Leader"] == leader and p["Replicas"] == leader and p["Isr"] == leader
               for p in parts)

    out = trioka(broker, "topic", "alter-config", topic_name, "--add-config",
                 "cleanup.policy=compact,max.message.bytes=2048", "--delete-config",
                 "retention.ms")
    assert out.stdout.decode().strip() == f"Completed updating config for topic {topic_name}."
    configs = _configs(admin, topic_name)
    assert configs["cleanup.policy"] == ("compact", False)
    assert configs["max.message.bytes"] == ("2048", False)
    assert configs["retention.ms"][1] is True            # back to the default
    assert configs["segment.bytes"] == ("1048576", False)

    trioka(broker, "topic", "delete", topic_name)
    wait_for(lambda: topic_name not in admin.list_topics(timeout=TIMEOUT).topics, TIMEOUT,
             "the deleted topic to be gone from the metadata")
    assert topic_name not in trioka(broker, "topic", "list").stdout.decode().split()
    gone = trioka(broker, "topic", "describe", topic_name, check=False)
    assert gone.returncode == 1 and b"does not exist" in gone.stderr
    trioka(broker, "topic", "delete", topic_name, "--if-exists")


def test_topic_describe_shows_configs_set_by_confluent(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2, {"cleanup.policy": "compact"})
    lines = trioka(broker, "topic", "describe", "--topic", topic_name).stdout.decode()
    assert f"PartitionCount: 2" in lines and "Configs: cleanup.policy=compact\n" in lines


# --- groups -------------------------------------------------------------------------------------

def _fill(broker, topic, partitions, per_partition, base_ts=None):
    base_ts = base_ts or (int(time.time()) - 600) * 1000
    recs = [Rec(p, i, None, f"{p}-{i}".encode(), [], base_ts + i * 1000)
            for p in range(partitions) for i in range(per_partition)]
    produce_confluent(broker.bootstrap, topic, recs, config={"linger.ms": 5})
    return base_ts


def _describe(broker, group) -> dict:
    rows = table(trioka(broker, "group", "describe", group).stdout)
    assert all(r["GROUP"] == group for r in rows)
    return {(r["TOPIC"], r["PARTITION"]): r for r in rows}


def test_group_describe_lag_and_reset_offsets(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 3)
    base = _fill(broker, topic_name, 3, 10)
    group = unique("cli-group")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "client.id": "cli-test-client", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 200, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "partition.assignment.strategy": "range"})
    try:
        c.subscribe([topic_name])
        wait_for(polled([c], lambda: len(c.assignment()) == 3), TIMEOUT, "the assignment",
                 interval=0)
        c.commit(offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 10)],
                 asynchronous=False)
        rows = _describe(broker, group)
        assert {k: (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for k, r in rows.items()} \
            == {(topic_name, "0"): ("4", "10", "6"), (topic_name, "1"): ("10", "10", "0"),
                (topic_name, "2"): ("-", "10", "-")}
        member = c.memberid()
        assert all(r["CONSUMER-ID"] == member and r["CLIENT-ID"] == "cli-test-client"
                   and r["HOST"] == "/127.0.0.1" for r in rows.values()), rows
        active = trioka(broker, "group", "reset-offsets", group, "--topic", topic_name,
                        "--to-earliest", "--execute", check=False)
        assert active.returncode == 1
        assert (f"Assignments can only be reset if the group '{group}' is inactive, but the "
                f"current state is Stable.").encode() in active.stderr
        assert group in trioka(broker, "group", "list").stdout.decode().split()
        states = {r["GROUP"]: r["STATE"] for r in
                  table(trioka(broker, "group", "list", "--state").stdout)}
        assert states[group] == "Stable"
        busy = trioka(broker, "group", "delete", group, check=False)
        assert busy.returncode == 1 and b"NON_EMPTY_GROUP" in busy.stderr
    finally:
        c.close()

    rows = _describe(broker, group)
    assert {k: (r["CURRENT-OFFSET"], r["LAG"], r["CONSUMER-ID"]) for k, r in rows.items()} == {
        (topic_name, "0"): ("4", "6", "-"), (topic_name, "1"): ("10", "0", "-")}

    # Dry run (the default): the plan, nothing committed.
    plan = table(trioka(broker, "group", "reset-offsets", group, "--topic", topic_name,
                        "--to-earliest").stdout)
    assert [(r["PARTITION"], r["NEW-OFFSET"]) for r in plan] == [("0", "0"), ("1", "0"),
                                                                 ("2", "0")]
    assert committed(broker.bootstrap, group, topic_name, range(3)) == {0: 4, 1: 10, 2: -1001}

    def reset(*how) -> dict[int, int]:
        trioka(broker, "group", "reset-offsets", "--group", group, *how, "--execute")
        return committed(broker.bootstrap, group, topic_name, range(3))

    assert reset("--topic", f"{topic_name}:0,1", "--to-offset", "7") == {0: 7, 1: 7, 2: -1001}
    assert reset("--topic", topic_name, "--to-latest") == {0: 10, 1: 10, 2: 10}
    assert reset("--topic", f"{topic_name}:2", "--to-offset", "99") == {0: 10, 1: 10, 2: 10}
    assert reset("--topic", f"{topic_name}:1", "--to-timestamp", str(base + 3500)) == {
        0: 10, 1: 4, 2: 10}
    iso = datetime.datetime.fromtimestamp((base + 5500) / 1000, datetime.timezone.utc)
    assert reset("--topic", f"{topic_name}:0", "--to-datetime", iso.isoformat()) == {
        0: 6, 1: 4, 2: 10}
    assert reset("--all-topics", "--shift-by", "-3") == {0: 3, 1: 1, 2: 7}
    rows = _describe(broker, group)
    assert {k[1]: (r["CURRENT-OFFSET"], r["LAG"]) for k, r in rows.items()} == {
        "0": ("3", "7"), "1": ("1", "9"), "2": ("7", "3")}

    out = trioka(broker, "group", "delete", group)
    assert f"'{group}'" in out.stdout.decode() and b"successful" in out.stdout
    assert group not in trioka(broker, "group", "list").stdout.decode().split()
    gone = trioka(broker, "group", "describe", group, check=False)
    assert gone.returncode == 1 and b"does not exist" in gone.stderr


def test_consume_with_group_commits_and_resumes(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    _fill(broker, topic_name, 2, 5)
    group = unique("cli-consumer")
    first = trioka(broker, "consume", topic_name, "--group", group, "--from-beginning",
                   "-c", "6")
    second = trioka(broker, "consume", topic_name, "--group", group, "--from-beginning",
                    "-c", "4")
    seen = first.stdout.split() + second.stdout.split()
    assert sorted(seen) == sorted(f"{p}-{i}".encode() for p in range(2) for i in range(5))
    assert committed(broker.bootstrap, group, topic_name, range(2)) == {0: 5, 1: 5}
    rows = _describe(broker, group)
    assert {k[1]: (r["CURRENT-OFFSET"], r["LAG"], r["CONSUMER-ID"]) for k, r in rows.items()} \
        == {"0": ("5", "0", "-"), "1": ("5", "0", "-")}
    # Nothing new: a third run waits for the timeout and prints nothing.
    third = trioka(broker, "consume", topic_name, "--group", group, "--timeout-ms", "500")
    assert third.stdout == b""
    # Standalone (--partition): committed with generation -1.
    trioka(broker, "group", "reset-offsets", group, "--topic", f"{topic_name}:1",
           "--to-offset", "2", "--execute")
    out = trioka(broker, "consume", topic_name, "--group", group, "--partition", "1", "-e")
    assert out.stdout.split() == [b"1-2", b"1-3", b"1-4"]
    assert committed(broker.bootstrap, group, topic_name, range(2)) == {0: 5, 1: 5}


def test_consume_group_shares_partitions_with_a_confluent_member(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 2)
    _fill(broker, topic_name, 2, 5)
    group = unique("cli-shared")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "partition.assignment.strategy": "range"})
    proc = None
    try:
        c.subscribe([topic_name])
        wait_for(polled([c], lambda: len(c.assignment()) == 2), TIMEOUT, "the assignment",
                 interval=0)
        proc = subprocess.Popen([sys.executable, "-m", "trioka", "consume", topic_name,
                                 "--group", group, "--from-beginning", "-e", "-b",
                                 broker.bootstrap], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        sizes = []

        def finished():         # librdkafka rebalances from poll()
            sizes.append(len(c.assignment()))
            return proc.poll() is not None

        wait_for(polled([c], finished), 60, "trioka consume to finish", interval=0)
        shared = 1 in sizes
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert shared, "the confluent member never gave up a partition"
        values = out.split()
        partitions = {v.split(b"-")[0] for v in values}
        assert len(partitions) == 1, values
        p = partitions.pop().decode()
        assert values == [f"{p}-{i}".encode() for i in range(5)]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        c.close()


def test_consume_ctrl_c_commits_and_leaves_the_group(broker, topic_name):
    import select
    import signal
    create_topic(broker.bootstrap, topic_name, 1)
    _fill(broker, topic_name, 1, 5)
    group = unique("cli-interrupted")
    proc = subprocess.Popen([sys.executable, "-m", "trioka", "consume", topic_name, "--group",
                             group, "--from-beginning", "-b", broker.bootstrap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = b""

        def printed_five():
            nonlocal out
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = proc.stdout.read1(65536)
                assert chunk, "the consumer exited early"
                out += chunk
            return out.count(b"\n") >= 5

        wait_for(printed_five, TIMEOUT, lambda: f"five records printed; only {out!r}",
                 interval=0)
        assert out.split() == [f"0-{i}".encode() for i in range(5)]
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert b"Processed a total of 5 messages" in err
    assert committed(broker.bootstrap, group, topic_name, [0]) == {0: 5}
    states = {r["GROUP"]: r["STATE"] for r in
              table(trioka(broker, "group", "list", "--state").stdout)}
    assert states[group] == "Empty"


def test_group_describe_lists_a_member_without_partitions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, 1)
    group = unique("cli-idle")
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 200,
            "enable.auto.commit": False, "partition.assignment.strategy": "range"}
    a = Consumer({**conf, "client.id": "member-a"})
    b = Consumer({**conf, "client.id": "member-b"})
    try:
        a.subscribe([topic_name])
        b.subscribe([topic_name])

        def settled():
            if sorted([len(a.assignment()), len(b.assignment())]) != [0, 1]:
                return None
            # Stable once the broker hands out the assignment too (a rebalance may follow
            # the first one while the second member joins).
            rows = table(trioka(broker, "group", "describe", group).stdout)
            return sorted(r["TOPIC"] for r in rows) == sorted(["-", topic_name]) and rows

        described = wait_for(polled([a, b], settled), TIMEOUT, "the group to settle",
                             interval=0)
        owner, idle = (a, b) if a.assignment() else (b, a)
        by_member = {r["CONSUMER-ID"]: r for r in described}
        assert by_member[owner.memberid()]["TOPIC"] == topic_name
        assert by_member[owner.memberid()]["PARTITION"] == "0"
        assert by_member[owner.memberid()]["CURRENT-OFFSET"] == "-"
        assert by_member[idle.memberid()]["TOPIC"] == "-"
        assert by_member[idle.memberid()]["PARTITION"] == "-"
        assert by_member[idle.memberid()]["CLIENT-ID"] == (
            "member-a" if idle is a else "member-b")
    finally:
        a.close()
        b.close()


def test_group_describe_of_a_kip848_consumer_group(broker, topic_name):
    """A group of the consumer protocol (group.protocol=consumer) is described through
    ConsumerGroupDescribe: its member, the partitions it holds and the lag of each."""
    create_topic(broker.bootstrap, topic_name, 2)
    _fill(broker, topic_name, 2, 5)
    group = unique("cli-kip848")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "group.protocol": "consumer", "client.id": "kip848-client",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic_name])
        wait_for(polled([c], lambda: len(c.assignment()) == 2), TIMEOUT, "the assignment",
                 interval=0)
        c.commit(offsets=[TopicPartition(topic_name, 0, 2), TopicPartition(topic_name, 1, 5)],
                 asynchronous=False)
        rows = _describe(broker, group)
        assert {k: (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for k, r in rows.items()} \
            == {(topic_name, "0"): ("2", "5", "3"), (topic_name, "1"): ("5", "5", "0")}
        assert all(r["CONSUMER-ID"] == c.memberid() and r["CLIENT-ID"] == "kip848-client"
                   for r in rows.values()), rows
    finally:
        c.close()
