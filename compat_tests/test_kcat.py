"""kcat (librdkafka 2.0 underneath) against trioka: metadata, producing and consuming.

kcat is the tool people reach for first: `-L` lists what Metadata says, `-P` produces lines from
stdin (or whole files) with keys (-K), headers (-H), null values (-Z), a chosen partition (-p) and a
compression codec (-z), and `-C` consumes from an offset (-o) and prints records with a format
(-f). Every assertion is on what came back from the broker: kcat's output, a confluent-kafka
consumer's records, or the batches of a raw Fetch.
"""

import json
import selectors
import subprocess
import time

import confluent_kafka
import pytest

from harness import consume_confluent, create_topic, fetch_raw_batches, produce_raw, run_kcat

# %K / %S are the key / value sizes, -1 for null; fields are separated by '|', records by '\n'.
FORMAT = "%p|%o|%T|%K|%k|%S|%s|%h\\n"

# kcat's -z names and the codec ids in a batch's attributes (record-batch.md).
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
# Records here carry fixed timestamps from years ago, and retention (retention.ms, 7 days, judged
# by record timestamps and checked every few seconds) would delete them mid-test: keep them.
KEEP = {"retention.ms": "-1"}


def now_ms() -> int:
    return int(time.time() * 1000)


def kcat_ok(*args, input: bytes | None = None) -> bytes:
    r = run_kcat(*args, input=input)
    assert r.returncode == 0, (args, r.stderr.decode(errors="replace"))
    return r.stdout


def parse_format(stdout: bytes) -> list[dict]:
    """kcat's FORMAT output as dicts; keys and values as bytes, None when null."""
    out = []
    for line in stdout.split(b"\n"):
        if not line:
            continue
        p, o, ts, ksize, key, vsize, value, headers = line.split(b"|", 7)
        out.append({
            "partition": int(p), "offset": int(o), "timestamp": int(ts),
            "key": None if int(ksize) == -1 else key,
            "value": None if int(vsize) == -1 else value,
            "headers": headers.decode(),
        })
        assert int(ksize) in (-1, len(key)) and int(vsize) in (-1, len(value)), line
    return out


def kcat_consume(bootstrap: str, topic: str, *args: str) -> list[dict]:
    return parse_format(kcat_ok("-C", "-b", bootstrap, "-t", topic, "-f", FORMAT, *args))


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

    got = kcat_consume(broker.bootstrap, topic_name, "-o", "beginning", "-e")
    assert len(got) == 9, got
    by_p = {}
    for r in got:
        by_p.setdefault(r["partition"], []).append(r)
    for p in range(3):
        records = by_p[p]
        assert [r["offset"] for r in records] == [0, 1, 2]
        assert [(r["key"], r["value"]) for r in records] == [
            (f"k{p}a".encode(), f"v{p}a".encode()),
            (f"k{p}b".encode(), None),
            (None, f"nokey{p}".encode())]
        for r in records:
            assert r["headers"] == f"origin=kcat-{p},empty="
            assert before - 1000 <= r["timestamp"] <= after + 1000

    # The same records through another client: the headers as bytes, nulls as None.
    recs = consume_confluent(broker.bootstrap, topic_name, [0, 1, 2], 9)
    assert sorted((r.partition, r.offset, r.key, r.value, r.headers) for r in recs) == sorted(
        (p, i, k, v, (("origin", f"kcat-{p}".encode()), ("empty", b"")))
        for p in range(3)
        for i, (k, v) in enumerate([(f"k{p}a".encode(), f"v{p}a".encode()),
                                    (f"k{p}b".encode(), None), (None, f"nokey{p}".encode())]))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_every_codec(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    # Compressible values: librdkafka sends a batch uncompressed if the codec does not shrink it.
    values = [f"{codec}-{i}-" + "abcdefgh" * 40 for i in range(50)]
    lines = "".join(f"key{i}\t{v}\n" for i, v in enumerate(values)).encode()
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", "0", "-K\t", "-z", codec,
            "-X", "linger.ms=200", input=lines)

    # The broker keeps and serves the producer's batches as they are: compressed with the codec.
    batches = fetch_raw_batches(broker.bootstrap, topic_name)
    # kcat's librdkafka (2.0.2) takes FindCoordinator v0 as its sign that a broker knows lz4
    # (both came with Kafka 0.8.2); Kafka 4.x and this broker serve it, so lz4 stays lz4.
    expected_codec = CODECS[codec]
    assert batches and {b.compression for b in batches} == {expected_codec}
    stored = [(r.offset, r.key, r.value) for b in batches for r in b.records]
    assert stored == [(i, f"key{i}".encode(), v.encode()) for i, v in enumerate(values)]

    got = kcat_consume(broker.bootstrap, topic_name, "-o", "beginning", "-e")
    assert [(r["offset"], r["key"], r["value"]) for r in got] == stored
    recs = consume_confluent(broker.bootstrap, topic_name, [0], 50)
    assert [(r.offset, r.key, r.value) for r in recs] == stored


def test_kcat_reads_batches_of_every_codec(broker, topic_name):
    """Batches compressed with each codec (built with trioka's record codec, so lz4 is really
    lz4 whatever librdkafka's producer decides) come back to kcat's consumer intact."""
    from trioka.log.records import encode_batch
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    expected = []
    for codec, codec_id in sorted(CODECS.items()):
        records = [(f"{codec}-k{i}".encode(), (f"{codec}-v{i}-" * 30).encode(),
                    [("codec", codec.encode())], 1_690_000_000_000 + len(expected) + i)
                   for i in range(5)]
        base = produce_raw(broker.bootstrap, topic_name, 0,
                           encode_batch(records, compression=codec_id))
        assert base == len(expected)
        expected += [(base + i, k, v, f"codec={codec}", ts)
                     for i, (k, v, _, ts) in enumerate(records)]
    got = kcat_consume(broker.bootstrap, topic_name, "-o", "beginning", "-e")
    assert [(r["offset"], r["key"], r["value"], r["headers"], r["timestamp"]) for r in got] \
        == expected


def test_file_as_one_binary_message(broker, topic_name, tmp_path):
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    blob = bytes(range(256)) * 400 + b"\n\n|end"
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", "0", "-z", "lz4", str(path))
    [rec] = consume_confluent(broker.bootstrap, topic_name, [0], 1)
    assert (rec.offset, rec.key, rec.value) == (0, None, blob)


# ------------------------------------------------------------------------------------ consume

def produce_timestamped(bootstrap: str, topic: str, count: int, base_ts: int) -> None:
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        p.produce(topic, key=f"k{i}".encode(), value=f"m{i}".encode(), partition=0,
                  timestamp=base_ts + i * 1000, headers=[("n", str(i).encode())])
    assert p.flush(15) == 0


def test_consume_from_offsets(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, configs=KEEP)
    base_ts = 1_600_000_000_000
    produce_timestamped(broker.bootstrap, topic_name, 10, base_ts)

    def values(*args):
        return [r["value"].decode() for r in kcat_consume(broker.bootstrap, topic_name, *args)]

    everything = kcat_consume(broker.bootstrap, topic_name, "-o", "beginning", "-e")
    assert [(r["offset"], r["key"], r["value"], r["timestamp"], r["headers"]) for r in everything] \
        == [(i, f"k{i}".encode(), f"m{i}".encode(), base_ts + i * 1000, f"n={i}")
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
    produce_timestamped(broker.bootstrap, topic_name, 3, now_ms())
    proc = subprocess.Popen(["kcat", "-C", "-b", broker.bootstrap, "-t", topic_name, "-o", "end",
                             "-c", "1", "-f", FORMAT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    produced = []
    try:
        # kcat gives no sign of when it has looked up the end offset, so keep producing (each
        # round waits for output or half a second) until it prints one record.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            value = f"new-{len(produced)}"
            producer.produce(topic_name, value=value.encode(), partition=0)
            assert producer.flush(10) == 0
            produced.append(value)
            if sel.select(timeout=0.5):
                break
        out, err = proc.communicate(timeout=15)
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    [rec] = parse_format(out)
    assert rec["value"].decode() in produced
    assert rec["offset"] == 3 + produced.index(rec["value"].decode())


# ---------------------------------------------------------------------- kcat <-> confluent-kafka

def test_kcat_and_confluent_kafka_read_each_other(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2, configs=KEEP)
    kcat_ok("-P", "-b", broker.bootstrap, "-t", topic_name, "-p", "1", "-K=", "-H", "via=kcat",
            "-z", "snappy", input=b"a=1\nb=2\nc=3\n")
    recs = consume_confluent(broker.bootstrap, topic_name, [1], 3)
    assert [(r.partition, r.offset, r.key, r.value, r.headers) for r in recs] == [
        (1, i, k, v, (("via", b"kcat"),)) for i, (k, v) in
        enumerate([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])]

    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap,
                                         "compression.type": "zstd"})
    sent = [(b"x", b"10", 1_650_000_000_000), (b"y", None, 1_650_000_000_500),
            (None, b"30", 1_650_000_001_000)]
    for key, value, ts in sent:
        producer.produce(topic_name, key=key, value=value, partition=0, timestamp=ts,
                         headers=[("via", b"confluent"), ("ts", str(ts).encode())])
    assert producer.flush(15) == 0
    got = kcat_consume(broker.bootstrap, topic_name, "-p", "0", "-o", "beginning", "-e")
    assert [(r["partition"], r["offset"], r["key"], r["value"], r["timestamp"], r["headers"])
            for r in got] == [(0, i, k, v, ts, f"via=confluent,ts={ts}")
                              for i, (k, v, ts) in enumerate(sent)]


# ------------------------------------------------------------------------------------ restart

def test_data_survives_restarts(own_broker, topic_name):
    b = own_broker
    create_topic(b.bootstrap, topic_name, partitions=2, configs=KEEP)
    for p in (0, 1):
        kcat_ok("-P", "-b", b.bootstrap, "-t", topic_name, "-p", str(p), "-K:", "-z", "gzip",
                input=b"".join(f"k{p}{i}:before-{p}-{i}\n".encode() for i in range(5)))
    expected = {(p, i, f"k{p}{i}".encode(), f"before-{p}-{i}".encode())
                for p in (0, 1) for i in range(5)}

    def stored():
        got = kcat_consume(b.bootstrap, topic_name, "-o", "beginning", "-e")
        return {(r["partition"], r["offset"], r["key"], r["value"]) for r in got}

    assert stored() == expected
    b.restart()                      # SIGTERM: a clean shutdown
    assert stored() == expected

    kcat_ok("-P", "-b", b.bootstrap, "-t", topic_name, "-p", "1", "-K:",
            input=b"k1x:after-clean\n")
    expected.add((1, 5, b"k1x", b"after-clean"))
    b.restart(kill=True)             # SIGKILL: recovery from the segment files
    assert stored() == expected

    kcat_ok("-P", "-b", b.bootstrap, "-t", topic_name, "-p", "0", "-K:",
            input=b"k0y:after-kill\n")
    expected.add((0, 5, b"k0y", b"after-kill"))
    assert stored() == expected
    meta = json.loads(kcat_ok("-L", "-J", "-b", b.bootstrap, "-t", topic_name))
    assert meta["brokers"] == [{"id": 1, "name": b.bootstrap}]
    assert [p["partition"] for p in meta["topics"][0]["partitions"]] == [0, 1]


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
