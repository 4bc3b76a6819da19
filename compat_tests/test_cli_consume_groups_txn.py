"""`trioka consume` (kcat's -f and -o forms, several topics, --include), `trioka group` (describe
views, delete-offsets, reset-offsets --to-current / --by-duration / --from-file / --export) and
`trioka txn` (describe-producers, find-hanging, abort) against a broker process, each result
checked with a stock client: confluent-kafka (librdkafka) writes and reads the data, kcat
(librdkafka's own tool) reads what the tools change, kafka-python commits offsets.

The hanging transaction is made the way Kafka's tool exists for: a transactional batch written by
a producer id that no transaction coordinator knows (accepted by a broker before Kafka 3.6, which
does not ask the coordinator: `--kafka-version 3.5`), so the partition's last stable offset stays
stuck until `txn abort` writes the ABORT marker.
"""

import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clients import kcat_ok
from harness import RawConnection, create_topic, unique
from trioka.log.records import encode_batch
from trioka.testing.process import BrokerProcess
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

TIMEOUT = 30
pytestmark = pytest.mark.timeout(180)


def trioka(bootstrap, *args, check: bool = True, timeout: float = 60):
    proc = subprocess.run([sys.executable, "-m", "trioka", *args, "-b", bootstrap],
                          capture_output=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode())
    return proc


def table(stdout: bytes) -> list[dict]:
    lines = [line for line in stdout.decode().splitlines() if line.strip()]
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def produce_values(bootstrap, topic, values, partition=0, key=None):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for v in values:
        p.produce(topic, v, key=key, partition=partition)
    assert p.flush(TIMEOUT) == 0


def read_committed_values(bootstrap, topic, partition=0, expect=1) -> list[bytes]:
    """What a confluent read_committed consumer gets from the start (bounded)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("rc"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    out, deadline = [], time.monotonic() + 10
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                out.append(m.value())
    finally:
        c.close()
    return out


# --- txn ------------------------------------------------------------------------------------------

@pytest.fixture
def broker35():
    with BrokerProcess(memory=True, args=["--kafka-version", "3.5"]) as b:
        yield b.start()


def hang_a_transaction(bootstrap, topic, partition) -> tuple[int, int]:
    """A transactional batch from an idempotent producer id (no coordinator knows it), written
    20 minutes in the past: (producer id, its offset)."""
    init = protocol.request_class(ApiKey.INIT_PRODUCER_ID)(
        transactional_id=None, transaction_timeout_ms=60_000, producer_id=-1, producer_epoch=-1)
    produce = protocol.request_class(ApiKey.PRODUCE)
    topic_data = produce.TopicProduceData
    old = int(time.time() * 1000) - 20 * 60_000
    with RawConnection(bootstrap) as conn:
        answer = conn.request(ApiKey.INIT_PRODUCER_ID, 4, init)
        assert answer.error_code == 0
        batch = encode_batch([(None, b"hanging", [], old)], producer_id=answer.producer_id,
                             producer_epoch=answer.producer_epoch, base_sequence=0,
                             transactional=True)
        request = produce(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
            topic_data(name=topic, partition_data=[
                topic_data.PartitionProduceData(index=partition, records=batch)])])
        [part] = conn.request(ApiKey.PRODUCE, 9, request).responses[0].partition_responses
        assert part.error_code == 0, part
    return answer.producer_id, part.base_offset


def test_find_hanging_and_abort_lets_read_committed_proceed(broker35):
    bootstrap = broker35.bootstrap
    topic = unique("hang")
    create_topic(bootstrap, topic, 2)
    produce_values(bootstrap, topic, [b"before"], partition=0)
    pid, offset = hang_a_transaction(bootstrap, topic, 0)
    produce_values(bootstrap, topic, [b"after"], partition=0)
    # An open transaction its coordinator owns, on partition 1: open, but not hanging.
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("owned"),
                    "linger.ms": 0})
    txn.init_transactions(TIMEOUT)
    txn.begin_transaction()
    txn.produce(topic, b"owned", partition=1)
    assert txn.flush(TIMEOUT) == 0
    try:
        # The last stable offset is stuck at the hanging batch: read_committed sees "before".
        assert read_committed_values(bootstrap, topic, expect=2) == [b"before"]

        producers = table(trioka(bootstrap, "txn", "describe-producers", "--topic", topic,
                                 "--partition", "0").stdout)
        mine = [r for r in producers if r["ProducerId"] == str(pid)]
        assert mine and mine[0]["CurrentTransactionStartOffset"] == str(offset), producers

        # Over 15 minutes old, unknown to every coordinator: hanging.
        found = table(trioka(bootstrap, "txn", "find-hanging", "--topic", topic).stdout)
        assert [(r["Partition"], r["ProducerId"], r["StartOffset"]) for r in found] == [
            ("0", str(pid), str(offset))], found
        assert int(found[0]["Duration(min)"]) >= 19
        # With no age limit the owned transaction is a candidate too, and still not hanging.
        found = table(trioka(bootstrap, "txn", "find-hanging", "--broker-id", "1",
                             "--max-transaction-timeout", "0").stdout)
        assert [(r["Topic"], r["Partition"]) for r in found] == [(topic, "0")], found

        missing = trioka(bootstrap, "txn", "abort", "--topic", topic, "--partition", "0",
                         "--start-offset", str(offset + 100), check=False)
        assert missing.returncode == 1
        assert b"Could not find any open transactions starting at offset" in missing.stderr
        trioka(bootstrap, "txn", "abort", "--topic", topic, "--partition", "0",
               "--start-offset", str(offset))
        assert read_committed_values(bootstrap, topic, expect=2) == [b"before", b"after"]
        assert table(trioka(bootstrap, "txn", "find-hanging", "--topic", topic).stdout) == []
        # kcat (read_committed through librdkafka) reads past the aborted batch too.
        kcat = kcat_ok("-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning",
                       "-e", "-X", "isolation.level=read_committed", "-f", "%s\\n")
        assert kcat.split() == [b"before", b"after"]
    finally:
        txn.abort_transaction(TIMEOUT)


def test_txn_usage_errors(broker35):
    proc = trioka(broker35.bootstrap, "txn", "find-hanging", check=False)
    assert proc.returncode == 2 and b"--topic or --broker-id" in proc.stderr
    proc = trioka(broker35.bootstrap, "txn", "abort", "--topic", "t", "--partition", "0",
                  check=False)
    assert proc.returncode == 2 and b"--start-offset" in proc.stderr


# --- consume --------------------------------------------------------------------------------------

FMT = r"%t|%p|%o|%k|%K|%s|%S|%T|%h\n"


def test_consume_kcat_format_matches_kcat(broker, topic_name):
    """-f prints what kcat prints for the same format string, byte for byte."""
    create_topic(broker.bootstrap, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    p.produce(topic_name, b"v1", key=b"k1", partition=0, headers=[("h", b"x"), ("g", b"y")])
    p.produce(topic_name, b"", partition=0, timestamp=1_700_000_000_000)
    p.produce(topic_name, None, key=b"only-key", partition=0)
    assert p.flush(TIMEOUT) == 0
    ours = trioka(broker.bootstrap, "consume", topic_name, "-o", "beginning", "-e",
                  "-f", FMT).stdout
    theirs = kcat_ok("-C", "-b", broker.bootstrap, "-t", topic_name, "-o", "beginning", "-e",
                     "-f", FMT)
    assert ours == theirs
    lines = ours.decode().splitlines()
    assert lines[0].split("|")[:8] == [topic_name, "0", "0", "k1", "2", "v1", "2",
                                       lines[0].split("|")[7]]
    assert lines[0].split("|")[8] == "h=x,g=y"
    assert lines[1].split("|")[3:8] == ["", "-1", "", "0", "1700000000000"]
    assert lines[2].split("|")[3:7] == ["only-key", "8", "", "-1"]
    # Relative to the end, as kcat's -o -N: the last two records.
    ours = trioka(broker.bootstrap, "consume", topic_name, "-o", "-2", "-e", "-f", FMT).stdout
    theirs = kcat_ok("-C", "-b", broker.bootstrap, "-t", topic_name, "-o", "-2", "-e",
                     "-f", FMT)
    assert ours == theirs and len(ours.splitlines()) == 2


def test_consume_offsets_several_topics_and_include(broker, topic_name):
    a, b = f"{topic_name}-a", f"{topic_name}-b"
    create_topic(broker.bootstrap, a, 1)
    create_topic(broker.bootstrap, b, 2)
    produce_values(broker.bootstrap, a, [b"a0", b"a1", b"a2"])
    now = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for part in (0, 1):
        p.produce(b, b"old%d" % part, partition=part, timestamp=now - 3_600_000)
        p.produce(b, b"new%d" % part, partition=part, timestamp=now)
    assert p.flush(TIMEOUT) == 0

    def values(*args) -> list[str]:
        out = trioka(broker.bootstrap, "consume", *args, "-e", "-f", r"%t:%p:%s\n").stdout
        return sorted(out.decode().split())

    everything = sorted([f"{a}:0:a0", f"{a}:0:a1", f"{a}:0:a2", f"{b}:0:old0", f"{b}:0:new0",
                         f"{b}:1:old1", f"{b}:1:new1"])
    assert values(a, b, "-o", "beginning") == everything
    assert values("--topic", a, "--topic", b, "--from-beginning") == everything
    assert values("--include", f"{topic_name}-[ab]", "-o", "beginning") == everything
    assert values("--include", f"{topic_name}-b", "-o", "-1") == [f"{b}:0:new0", f"{b}:1:new1"]
    # -N never goes before the start of a partition.
    assert values(a, "-o", "-10") == [f"{a}:0:a0", f"{a}:0:a1", f"{a}:0:a2"]
    assert values(b, "-o", f"s@{now - 60_000}") == [f"{b}:0:new0", f"{b}:1:new1"]
    assert values(a, "-o", "1") == [f"{a}:0:a1", f"{a}:0:a2"]
    assert values(a, "-o", "end") == []
    # --max-messages -1 is no limit.
    assert values(a, "-o", "beginning", "--max-messages", "-1") == everything[:3]
    assert values(a, "-o", "beginning", "-c", "2") == [f"{a}:0:a0", f"{a}:0:a1"]

    # `stored`: the group's committed offset, committed here by a confluent consumer.
    group = unique("stored")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    c.commit(offsets=[TopicPartition(a, 0, 2)], asynchronous=False)
    c.close()
    assert values(a, "-o", "stored", "--group", group) == [f"{a}:0:a2"]

    for bad, words in ((["-o", "nowhere"], b"--offset 'nowhere'"),
                       (["-o", "stored"], b"--offset stored needs --group"),
                       (["-f", "%q"], b"unsupported token %q"),
                       (["--include", "("], b"--include")):
        proc = trioka(broker.bootstrap, "consume", a, *bad, "-e", check=False)
        if bad[0] == "--include":
            proc = trioka(broker.bootstrap, "consume", *bad, "-e", check=False)
        assert proc.returncode == 2 and words in proc.stderr, (bad, proc.stderr)
        assert b"Traceback" not in proc.stderr
    proc = trioka(broker.bootstrap, "consume", "--include", f"{topic_name}-nothing-.*", "-e",
                  check=False)
    assert proc.returncode == 1 and b"no topic matches" in proc.stderr


# --- groups ---------------------------------------------------------------------------------------

def committed(bootstrap, group, topic, partitions) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=TIMEOUT)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got}


def test_group_views_delete_offsets_and_reset_by_file(broker, topic_name, tmp_path):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    now = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for part in (0, 1):
        for i in range(3):
            p.produce(topic_name, b"old", partition=part, timestamp=now - 7_200_000 + i)
        for i in range(2):
            p.produce(topic_name, b"new", partition=part, timestamp=now + i)
    assert p.flush(TIMEOUT) == 0
    group = unique("views")
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                       "client.id": "views-client", "enable.auto.commit": False,
                       "auto.offset.reset": "earliest"})
    member.subscribe([topic_name])
    deadline = time.monotonic() + TIMEOUT
    while not member.assignment() and time.monotonic() < deadline:
        member.poll(0.2)
    assert member.assignment()
    member.commit(offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 1)],
                  asynchronous=False)
    try:
        out = trioka(bootstrap, "groups", "describe", group, "--members", "--verbose").stdout
        [row] = table(out)
        assert row["CLIENT-ID"] == "views-client" and row["#PARTITIONS"] == "2"
        assert row["ASSIGNMENT"] == f"{topic_name}(0,1)"
        state = trioka(bootstrap, "group", "describe", group, "--state").stdout.decode()
        header, line = state.splitlines()
        assert header.split()[:3] == ["GROUP", "COORDINATOR", "(ID)"]
        assert line.split()[0] == group and line.split()[-2:] == ["Stable", "1"]
        assert line.split()[-3] == "range"     # librdkafka's default assignor list begins so
        # Offsets of a subscribed topic cannot be deleted (GROUP_SUBSCRIBED_TO_TOPIC).
        proc = trioka(bootstrap, "group", "delete-offsets", group, "--topic", topic_name,
                      check=False)
        assert proc.returncode == 1 and b"GROUP_SUBSCRIBED_TO_TOPIC" in proc.stdout
    finally:
        member.close()

    everyone = trioka(bootstrap, "group", "describe", "--all-groups").stdout
    assert {(r["GROUP"], r["PARTITION"], r["CURRENT-OFFSET"]) for r in table(everyone)
            if r["GROUP"] == group} == {(group, "0", "4"), (group, "1", "1")}
    [state] = [line.split() for line in trioka(bootstrap, "group", "describe", "--all-groups",
                                               "--state").stdout.decode().splitlines()
               if line.startswith(group + " ")]
    assert state[-2:] == ["Empty", "0"], state

    # --to-current --export: the committed offsets as Kafka's CSV.
    current = trioka(bootstrap, "group", "reset-offsets", group, "--all-topics",
                     "--to-current", "--export").stdout
    assert current.decode().splitlines() == [f"{topic_name},0,4", f"{topic_name},1,1"]
    # --by-duration PT1H: the first records of the last hour, offset 3 of each partition.
    trioka(bootstrap, "group", "reset-offsets", group, "--topic", topic_name,
           "--by-duration", "PT1H", "--execute")
    assert committed(bootstrap, group, topic_name, [0, 1]) == {0: 3, 1: 3}
    # --from-file: what --export wrote, read back and committed.
    plan = tmp_path / "plan.csv"
    plan.write_bytes(current)
    trioka(bootstrap, "group", "reset-offsets", group, "--from-file", str(plan), "--execute")
    assert committed(bootstrap, group, topic_name, [0, 1]) == {0: 4, 1: 1}
    # kcat as a member of the group starts where the file put it.
    got = kcat_ok("-b", bootstrap, "-G", group, "-e", "-X", "enable.auto.commit=false",
                  "-f", r"%p:%o\n", topic_name)
    assert sorted(got.decode().split()) == ["0:4", "1:1", "1:2", "1:3", "1:4"]

    deleted = trioka(bootstrap, "group", "delete-offsets", group, "--topic",
                     f"{topic_name}:1")
    assert b"Successful" in deleted.stdout
    after = committed(bootstrap, group, topic_name, [0, 1])
    assert after[1] == -1001 and after[0] >= 4, after     # -1001: no offset (kcat commits too)
    proc = trioka(bootstrap, "group", "delete-offsets", unique("nobody"), "--topic",
                  topic_name, check=False)
    assert proc.returncode == 1 and b"does not exist" in proc.stderr
    proc = trioka(bootstrap, "group", "reset-offsets", group, "--all-topics",
                  "--by-duration", "1 hour", check=False)
    assert proc.returncode == 2 and b"--by-duration '1 hour'" in proc.stderr
