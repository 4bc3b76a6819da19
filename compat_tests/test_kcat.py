"""kcat (librdkafka 2.0 underneath) against trioka: what only kcat does.

kcat is the tool people reach for first: `-L` lists what Metadata says, `-P` produces lines from
stdin (or whole files) with keys (-K), headers (-H), null values (-Z), a chosen partition (-p) and a
compression codec (-z), `-C` consumes from an offset (-o: absolute, relative, by time, the end)
and `-G` joins a consumer group. The round trips every client makes, kcat among them (every codec,
acks, restarts, batches built byte by byte), are in test_round_trips.py. Every assertion is on
what came back from the broker: kcat's output, a confluent-kafka consumer's records, or the
batches of a raw Fetch.
"""

import json
import selectors
import subprocess
import time

import confluent_kafka
import pytest

from clients import (KCAT_FORMAT, Rec, consume_confluent, consume_kcat, kcat_ok, parse_kcat,
                     produce_confluent, value_records)
from harness import create_topic, fetch_raw_batches, wait_for

# kcat's -z names and the codec ids in a batch's attributes (record-batch.md).
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
# Records here carry fixed timestamps from years ago, and retention (retention.ms, 7 days, judged
# by record timestamps and checked every few seconds) would delete them mid-test: keep them.
KEEP = {"retention.ms": "-1"}


def now_ms() -> int:
    return int(time.time() * 1000)


def kcat_consume(bootstrap: str, topic: str, *args: str) -> list[Rec]:
    return parse_kcat(kcat_ok("-C", "-b", bootstrap, "-t", topic, "-f", KCAT_FORMAT, *args))


# ------------------------------------------------------------------------------------ metadata

def test_metadata_lists_brokers_topics_and_partitions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3, configs=KEEP)
    meta = json.loads(kcat_ok("-L", "-J", "-b", broker.bootstrap, "-t", topic_name))
    assert meta["brokers"] == [{"id": 1, "name": broker.bootstrap}]
    assert meta["controllerid"] == 1
    [topic] = meta["topics"]
    assert topic["topic"] == topic_name and "error" not in topic
    assert [p["partition"] for p in topic["partitions"]] == [0, 1, 2]
    for p in topic["partitions"]:
        assert p["leader"] == 1
        assert p["replicas"] == [{"id": 1}] and p["isrs"] == [{"id": 1}]

    text = kcat_ok("-L", "-b", broker.bootstrap).decode()
    assert f"broker 1 at {broker.bootstrap} (controller)" in text
    assert f'topic "{topic_name}" with 3 partitions:' in text
    assert "partition 2, leader 1, replicas: 1, isrs: 1" in text


# ------------------------------------------------------------------------------------ produce

def test_keys_headers_null_values_and_explicit_partitions(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=3, configs=KEEP)
    before = now_ms()
    for p in (2, 0, 1):
        # With -Z an empty key or value is sent as null; "-K:" splits key and value at ':'.
        lines = f"k{p}a:v{p}a\nk{p}b:\n:nokey{p}\n".encode()
        kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", str(p), "-K:", "-Z",
                "-H", f"origin=kcat-{p}", "-H", "empty=", input=lines)
    after = now_ms()

    def sent(p):
        return [(f"k{p}a".encode(), f"v{p}a".encode()), (f"k{p}b".encode(), None),
                (None, f"nokey{p}".encode())]

    got = kcat_consume(broker.bootstrap, topic_name, "-o", "beginning", "-e")
    assert len(got) == 9, got
    by_p = {}
    for r in got:
        by_p.setdefault(r.partition, []).append(r)
    for p in range(3):
        records = by_p[p]
        assert [r.offset for r in records] == [0, 1, 2]
        assert [(r.key, r.value) for r in records] == sent(p)
        for r in records:
            assert r.headers == (("origin", f"kcat-{p}".encode()), ("empty", b""))
            assert before - 1000 <= r.timestamp <= after + 1000

    # The same records through another client: the headers as bytes, nulls as None.
    recs = consume_confluent(broker.bootstrap, topic_name, [0, 1, 2], 9)
    assert sorted((r.partition, r.offset, r.key, r.value, r.headers) for r in recs) == sorted(
        (p, i, k, v, (("origin", f"kcat-{p}".encode()), ("empty", b"")))
        for p in range(3) for i, (k, v) in enumerate(sent(p)))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_every_codec_of_a_line_stream(broker, topic_name, codec):
    """-z with lines from stdin, batched (linger.ms 200): every batch the broker keeps and
    serves is compressed with the codec, as kcat sent it."""
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    # Compressible values: librdkafka sends a batch uncompressed if the codec does not shrink it.
    values = [f"{codec}-{i}-" + "abcdefgh" * 40 for i in range(50)]
    lines = "".join(f"key{i}\t{v}\n" for i, v in enumerate(values)).encode()
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", "0", "-K\t", "-z", codec,
            "-X", "linger.ms=200", input=lines)

    batches = fetch_raw_batches(broker.bootstrap, topic_name)
    # kcat's librdkafka (2.0.2) takes FindCoordinator v0 as its sign that a broker knows lz4
    # (both came with Kafka 0.8.2); Kafka 4.x and this broker serve it, so lz4 stays lz4.
    assert batches and {b.compression for b in batches} == {CODECS[codec]}
    stored = [(r.offset, r.key, r.value) for b in batches for r in b.records]
    assert stored == [(i, f"key{i}".encode(), v.encode()) for i, v in enumerate(values)]
    for consume in (consume_kcat, consume_confluent):
        got = consume(broker.bootstrap, topic_name, [0], 50)
        assert [(r.offset, r.key, r.value) for r in got] == stored, consume.__name__


def test_file_as_one_binary_message(broker, topic_name, tmp_path):
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    blob = bytes(range(256)) * 400 + b"\n\n|end"
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", "0", "-z", "lz4", str(path))
    [rec] = consume_confluent(broker.bootstrap, topic_name, [0], 1)
    assert (rec.offset, rec.key, rec.value) == (0, None, blob)


# ------------------------------------------------------------------------------------ consume

def test_consume_from_offsets(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    base_ts = 1_600_000_000_000
    produce_confluent(broker.bootstrap, topic_name, [
        Rec(0, i, f"k{i}".encode(), f"m{i}".encode(), [("n", str(i).encode())],
            base_ts + i * 1000) for i in range(10)])

    def values(*args):
        return [r.value.decode() for r in kcat_consume(broker.bootstrap, topic_name, *args)]

    everything = kcat_consume(broker.bootstrap, topic_name, "-o", "beginning", "-e")
    assert [(r.offset, r.key, r.value, r.timestamp, r.headers) for r in everything] == [
        (i, f"k{i}".encode(), f"m{i}".encode(), base_ts + i * 1000, (("n", str(i).encode()),))
        for i in range(10)]
    assert values("-o", "7", "-e") == ["m7", "m8", "m9"]            # an absolute offset
    assert values("-o", "-3", "-e") == ["m7", "m8", "m9"]           # relative to the end
    assert values("-o", "4", "-c", "2") == ["m4", "m5"]             # a count, no -e
    assert values("-o", "end", "-e") == []
    assert values("-o", f"s@{base_ts + 5000}", "-e") == ["m5", "m6", "m7", "m8", "m9"]
    assert values("-o", f"s@{base_ts + 4500}", "-o", f"e@{base_ts + 8000}", "-e") == [
        "m5", "m6", "m7"]


def test_consume_from_end_sees_only_new_records(broker, topic_name):
    """`-o end` without -e waits for records produced after it started, and only those."""
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    produce_confluent(broker.bootstrap, topic_name, value_records([b"old-0", b"old-1", b"old-2"]))
    proc = subprocess.Popen(["kcat", "-C", "-b", broker.bootstrap, "-t", topic_name, "-o", "end",
                             "-c", "1", "-f", KCAT_FORMAT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    produced = []

    def printed_one():
        # kcat gives no sign of when it has looked up the end offset, so keep producing (each
        # round waits for output or half a second) until it prints one record.
        value = f"new-{len(produced)}"
        producer.produce(topic_name, value=value.encode(), partition=0)
        assert producer.flush(10) == 0
        produced.append(value)
        return bool(sel.select(timeout=0.5))

    try:
        wait_for(printed_one, 30, "kcat -o end to print a record produced after it started",
                 interval=0)
        out, err = proc.communicate(timeout=15)
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    [rec] = parse_kcat(out)
    assert rec.value.decode() in produced
    assert rec.offset == 3 + produced.index(rec.value.decode())


def test_kcat_balanced_consumer_group(broker, topic_name):
    """kcat -G joins a consumer group (librdkafka 2.0.2's classic protocol), reads every
    partition, and commits: a second run of the same group starts where the first stopped."""
    create_topic(broker.bootstrap, topic_name, partitions=3)
    lines = "".join(f"k{i}\tv{i}\n" for i in range(30)).encode()
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-K\t", input=lines)
    group = f"{topic_name}-group"
    got = kcat_ok("-b", broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
                  "-c", "30", "-f", "%k\\n", topic_name)
    assert sorted(got.decode().split()) == sorted(f"k{i}" for i in range(30))
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-K\t", input=b"k30\tv30\n")
    got = kcat_ok("-b", broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
                  "-c", "1", "-f", "%k\\n", topic_name)
    assert got.decode().split() == ["k30"]
