"""Bad input over raw sockets: the broker answers or closes that one connection, and keeps serving.

What Kafka does, and so what is checked here:
- a frame that cannot be a request (garbage, a size below zero or above socket.request.max.bytes,
  an unknown API key, an unsupported version, a body that does not parse) closes the connection;
- ApiVersions newer than the broker knows is answered at v0 with UNSUPPORTED_VERSION (35) and
  the ApiVersions range, so the client can retry (KIP-511);
- problems with the data of a well-formed Produce are errors of that partition: Produce v0-2
  UNSUPPORTED_VERSION, a bad CRC CORRUPT_MESSAGE, a batch above max.message.bytes
  MESSAGE_TOO_LARGE, acks outside -1/0/1 INVALID_REQUIRED_ACKS; nothing is appended. With acks=0
  there is no response to carry the error, so the broker closes the connection instead.

After every abuse the broker process is alive and a confluent-kafka producer and consumer on
other connections round-trip a record; one test runs all the abuse while a client is working.
Every socket has a hard timeout (RawConnection).
"""

import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import confluent_kafka
import pytest

from clients import consume_confluent
from harness import RawConnection, create_topic, fetch_raw_batches, unique
from trioka.testing.process import BrokerProcess
from trioka.log.records import encode_batch
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

TIMEOUT = 5.0
MAX_REQUEST = 100 * 1024 * 1024    # socket.request.max.bytes, Kafka's default

Produce = protocol.request_class(ApiKey.PRODUCE)
TopicData = Produce.TopicProduceData
PartitionData = TopicData.PartitionProduceData


@pytest.fixture(scope="module")
def target():
    """A broker of this module's own, so that a crash here cannot break other modules' tests,
    and a topic whose max.message.bytes is small."""
    with BrokerProcess() as b:
        b.start()
        b.small_topic = unique("bad-input-small")
        create_topic(b.bootstrap, b.small_topic, configs={"max.message.bytes": "2000"})
        yield b


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def header(api_key: int, version: int, correlation_id: int = 1,
           client_id: bytes = b"bad-input") -> bytes:
    """A v1 request header (api key, version, correlation id, client id) by hand, for keys and
    versions trioka's encoder has no definition of."""
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def produce_request(topic: str, batches: dict[int, bytes], *, acks: int = -1):
    return Produce(transactional_id=None, acks=acks, timeout_ms=10_000, topic_data=[
        TopicData(name=topic, partition_data=[PartitionData(index=p, records=data)
                                              for p, data in batches.items()])])


def batch(n: int = 3, value_size: int = 10) -> bytes:
    return encode_batch([(f"k{i}".encode(), b"v" * value_size) for i in range(n)])


def assert_closed(conn: RawConnection) -> None:
    assert conn.closed_by_broker(), "the broker answered instead of closing the connection"


def fresh_topic(b, partitions: int = 1) -> str:
    name = unique("bad-input")
    create_topic(b.bootstrap, name, partitions=partitions)
    return name


def assert_nothing_appended(b, topic: str, partitions=(0,)) -> None:
    for p in partitions:
        assert fetch_raw_batches(b.bootstrap, topic, p) == []


def round_trip(b) -> None:
    """The broker still works for a well-behaved client on other connections."""
    assert b.proc is not None and b.proc.poll() is None, "the broker process died"
    topic = fresh_topic(b)
    producer = confluent_kafka.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    reports = []
    value = f"still-serving-{time.monotonic_ns()}".encode()
    producer.produce(topic, key=b"k", value=value, partition=0,
                     on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert producer.flush(15) == 0
    assert reports == [(None, 0)]
    [rec] = consume_confluent(b.bootstrap, topic, [0], 1)
    assert (rec.offset, rec.key, rec.value) == (0, b"k", value)


# --------------------------------------------------------------------------- the abuse cases
# Each takes the broker and checks the broker's reaction on its own connection.

def http_request(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        # "GET " read as a frame size is about 1.2 GB: above socket.request.max.bytes.
        conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert_closed(conn)


def garbage_frame(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(frame(b"\xde\xad\xbe\xef" * 16))   # api key -8531
        assert_closed(conn)


def empty_frame(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(frame(b""))
        assert_closed(conn)


def short_header(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(frame(b"\x00\x03\x00"))
        assert_closed(conn)


def truncated_frame_half_closed(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(struct.pack(">i", 100) + b"0123456789")
        conn.sock.shutdown(socket.SHUT_WR)
        assert_closed(conn)


def truncated_frame_closed(b):
    conn = RawConnection(b.bootstrap, TIMEOUT)
    conn.send(struct.pack(">i", 100) + b"0123456789")
    conn.close()


def huge_declared_size(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(struct.pack(">i", MAX_REQUEST + 1) + header(ApiKey.METADATA, 1))
        assert_closed(conn)
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(struct.pack(">i", 2**31 - 1))
        assert_closed(conn)


def negative_size(b):
    for size in (-1, -(2**31)):
        with RawConnection(b.bootstrap, TIMEOUT) as conn:
            conn.send(struct.pack(">i", size) + b"\x00" * 16)
            assert_closed(conn)


def unknown_api_key(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(frame(header(999, 0)))
        assert_closed(conn)


def unsupported_metadata_version(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(frame(header(ApiKey.METADATA, 99) + b"\x00"))
        assert_closed(conn)


def unsupported_api_versions_version(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        request = protocol.request_class(ApiKey.API_VERSIONS)(
            client_software_name="bad-input", client_software_version="1")
        answer = conn.request(ApiKey.API_VERSIONS, 99, request, decode_version=0)
        assert answer.error_code == ErrorCode.UNSUPPORTED_VERSION == 35
        [only] = answer.api_keys
        # The connection stays open, and the range offered is the one the broker serves.
        normal = conn.request(ApiKey.API_VERSIONS, 3, request)
        assert normal.error_code == 0
        [served] = [k for k in normal.api_keys if k.api_key == ApiKey.API_VERSIONS]
        assert (only.api_key, only.min_version, only.max_version) == (
            ApiKey.API_VERSIONS, served.min_version, served.max_version)
        assert served.min_version == 0 and served.max_version >= 3


def unparsable_body(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        # Metadata v1: a topics array claiming 0x7fffffff entries, then nothing.
        conn.send(frame(header(ApiKey.METADATA, 1) + b"\x7f\xff\xff\xff"))
        assert_closed(conn)
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        # Produce v9 whose last partition's records are cut off in the middle.
        whole = protocol.encode_request(ApiKey.PRODUCE, 9, 1, "bad-input",
                                        produce_request("t", {0: batch()}))
        conn.send(frame(whole[4:-20]))
        assert_closed(conn)


def produce_v2(b):
    topic = fresh_topic(b, partitions=2)
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        answer = conn.request(ApiKey.PRODUCE, 2, produce_request(topic, {0: batch(), 1: batch()}))
        [t] = answer.responses
        assert sorted((p.index, p.error_code) for p in t.partition_responses) == [
            (0, ErrorCode.UNSUPPORTED_VERSION), (1, ErrorCode.UNSUPPORTED_VERSION)]
    assert_nothing_appended(b, topic, (0, 1))


def corrupt_crc(b):
    topic = fresh_topic(b)
    data = bytearray(batch())
    data[-1] ^= 0x55          # a record byte: covered by the CRC-32C
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        answer = conn.request(ApiKey.PRODUCE, 9, produce_request(topic, {0: bytes(data)}))
        [part] = answer.responses[0].partition_responses
        assert part.error_code == ErrorCode.CORRUPT_MESSAGE == 2
        assert part.base_offset == -1
        # The same connection still takes good data, at offset 0: nothing was appended before.
        answer = conn.request(ApiKey.PRODUCE, 9, produce_request(topic, {0: batch()}))
        [part] = answer.responses[0].partition_responses
        assert (part.error_code, part.base_offset) == (0, 0)


def oversize_batch(b):
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        big = batch(4, value_size=1000)            # about 4 KB; the topic allows 2000 bytes
        answer = conn.request(ApiKey.PRODUCE, 9, produce_request(b.small_topic, {0: big}))
        [part] = answer.responses[0].partition_responses
        assert part.error_code == ErrorCode.MESSAGE_TOO_LARGE == 10
    topic = fresh_topic(b)
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        # Above the broker's message.max.bytes (1048588) on a topic without an override.
        huge = encode_batch([(b"k", bytes(1_100_000))])
        answer = conn.request(ApiKey.PRODUCE, 9, produce_request(topic, {0: huge}))
        [part] = answer.responses[0].partition_responses
        assert part.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert_nothing_appended(b, topic)


def invalid_acks(b):
    topic = fresh_topic(b)
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        answer = conn.request(ApiKey.PRODUCE, 9, produce_request(topic, {0: batch()}, acks=5))
        [part] = answer.responses[0].partition_responses
        assert part.error_code == ErrorCode.INVALID_REQUIRED_ACKS == 21
    assert_nothing_appended(b, topic)


def acks_zero_corrupt(b):
    topic = fresh_topic(b)
    data = bytearray(batch())
    data[-1] ^= 0x55
    with RawConnection(b.bootstrap, TIMEOUT) as conn:
        conn.send(protocol.encode_request(ApiKey.PRODUCE, 9, 1, "bad-input",
                                          produce_request(topic, {0: bytes(data)}, acks=0)))
        assert_closed(conn)
    assert_nothing_appended(b, topic)


ABUSE = [http_request, garbage_frame, empty_frame, short_header, truncated_frame_half_closed,
         truncated_frame_closed, huge_declared_size, negative_size, unknown_api_key,
         unsupported_metadata_version, unsupported_api_versions_version, unparsable_body,
         produce_v2, corrupt_crc, oversize_batch, invalid_acks, acks_zero_corrupt]


@pytest.mark.parametrize("abuse", ABUSE, ids=[f.__name__ for f in ABUSE])
def test_abuse_then_round_trip(target, abuse):
    abuse(target)
    round_trip(target)


@pytest.mark.timeout(240)
def test_abuse_while_a_client_works(target):
    """Every abuse, from four threads at once, while a confluent-kafka producer keeps
    producing; afterwards every acknowledged record is there, at its acknowledged offset."""
    topic = fresh_topic(target)
    producer = confluent_kafka.Producer({"bootstrap.servers": target.bootstrap,
                                         "linger.ms": 1, "acks": "all"})
    acked: dict[int, bytes] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.offset()] = msg.value()

    done = threading.Event()

    def keep_producing():
        i = 0
        # At least 200 records, and on until the abuse is over (`done` is set however the
        # test ends).
        while i < 200 or not done.is_set():
            producer.produce(topic, value=f"steady-{i}".encode(), partition=0,
                             on_delivery=on_delivery)
            producer.poll(0.005)
            i += 1
        producer.flush(15)

    worker = threading.Thread(target=keep_producing)
    worker.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(abuse, target) for _ in range(4) for abuse in ABUSE]
            finished, unfinished = wait(futures, timeout=120)
            assert not unfinished, f"{len(unfinished)} abuses still running after 120 s"
            for f in finished:
                f.result()
    finally:
        done.set()
        worker.join(60)
    assert not worker.is_alive()
    assert errors == []
    assert len(acked) >= 200
    assert sorted(acked) == list(range(len(acked)))
    got = consume_confluent(target.bootstrap, topic, [0], len(acked))
    assert {r.offset: r.value for r in got} == acked
    assert [r.value for r in got] == [f"steady-{i}".encode() for i in range(len(acked))]
    round_trip(target)
