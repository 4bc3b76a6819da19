"""Disk faults under stock clients: a full disk (short writes, then EFBIG) and a directory the
broker may no longer write to. Nothing acknowledged is lost, and the broker stays up.

RLIMIT_FSIZE makes any file system "full" for one process: a write that would grow a file past the
limit is cut short, and the next one fails with EFBIG (SIGXFSZ, which would kill the process, is
ignored, as Python ignores it anyway). The broker's child process gets the limit from a small
launcher that sets it and then executes the usual `python -m trioka serve` command (the ignored
signal and the limit both survive exec). Without the limit, on the next start, the same data dir
is read back.

What Kafka does, and so the broker: the I/O error takes the log dir offline (Kafka's
LogDirFailureChannel). From then on its partitions answer KAFKA_STORAGE_ERROR to writes, nothing
more is written there, and the process keeps serving Metadata and every other request. Unlike
Kafka, which fails reads of an offline dir too, what was acknowledged stays readable: a full disk
stops writes, not reads. (Kafka halts a broker
whose every log dir failed; a single-node trioka stays up so clients see the error.) The restart
recovers the dir: every acknowledged record is there at the offset it was acknowledged with, and
appends go on after it, no offset given twice.
"""

import logging
import os
import stat
import subprocess
import sys
import time

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

from clients import consume_confluent
from harness import RawConnection, create_topic, stored_batches, wait_for
from trioka.testing.process import BrokerProcess
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

# Sets the limits it is given, then becomes the broker (argv: the file size limit or "-",
# "permissions" or "-", then the command). "permissions" drops root's power to ignore file
# permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, from the capability bounding
# set, so the command runs without them): a read-only directory is then read-only to the broker
# too, while it keeps root's uid (and so its interpreter under /root).
LAUNCHER = """
import ctypes, os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit, permissions = sys.argv[1], sys.argv[2]
if limit != "-":
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
if permissions != "-":
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP = 24
    for capability in (1, 2, 3):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
os.execv(sys.argv[3], sys.argv[3:])
"""


def can_drop_capabilities() -> bool:
    """Whether this process may drop root's file-permission capabilities (root, with
    CAP_SETPCAP): then a launched broker obeys file permissions."""
    if os.geteuid() != 0:
        return False
    check = subprocess.run([sys.executable, "-c", LAUNCHER, "-", "permissions", "/bin/true",
                            "true"], capture_output=True, timeout=30)
    return check.returncode == 0


class LimitedBroker(BrokerProcess):
    """A broker process whose files may not grow past `file_size_limit` bytes, and which obeys
    file permissions as any user would when `obeys_permissions`; None/False lift either for the
    next start."""

    file_size_limit: int | None = None
    obeys_permissions = False

    def command(self) -> list[str]:
        command = super().command()
        if self.file_size_limit is None and not self.obeys_permissions:
            return command
        return [sys.executable, "-c", LAUNCHER,
                "-" if self.file_size_limit is None else str(self.file_size_limit),
                "permissions" if self.obeys_permissions else "-"] + command


class Lines(logging.Handler):
    """librdkafka's log lines, as confluent-kafka hands them to a Python logger."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


def producer_for(b, log: Lines | None = None, **extra) -> confluent_kafka.Producer:
    config = {"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True,
              "linger.ms": 5, "message.timeout.ms": 8000, "retry.backoff.ms": 50,
              "retry.backoff.max.ms": 200, **extra}
    if log is None:
        return confluent_kafka.Producer(config)
    logger = logging.getLogger(f"librdkafka-{id(log)}")
    logger.addHandler(log)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return confluent_kafka.Producer({**config, "debug": "msg"}, logger=logger)


def metadata_topics(b) -> set[str]:
    """The topics a stock admin client gets from the broker's Metadata."""
    return set(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).topics)


def raw_produce_and_fetch(b, topic: str) -> tuple[int, int]:
    """The error codes a bare Produce (v9) and Fetch (v12) of partition 0 get."""
    from trioka.log.records import encode_batch
    produce = protocol.request_class(ApiKey.PRODUCE)
    data = produce.TopicProduceData
    fetch = protocol.request_class(ApiKey.FETCH)
    with RawConnection(b.bootstrap) as conn:
        p = conn.request(ApiKey.PRODUCE, 9, produce(
            transactional_id=None, acks=-1, timeout_ms=5000, topic_data=[data(
                name=topic, partition_data=[data.PartitionProduceData(
                    index=0, records=encode_batch([(None, b"raw", [], 0)]))])]))
        f = conn.request(ApiKey.FETCH, 12, fetch(
            replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
            session_id=0, session_epoch=-1, topics=[fetch.FetchTopic(topic=topic, partitions=[
                fetch.FetchTopic.FetchPartition(partition=0, fetch_offset=0,
                                                partition_max_bytes=1 << 20)])],
            forgotten_topics_data=[]))
    return (p.responses[0].partition_responses[0].error_code,
            f.responses[0].partitions[0].error_code)


def high_watermarks(b, topic: str, partitions: int) -> dict[int, int]:
    c = confluent_kafka.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "disk-faults",
                                  "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p),
                                           timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def read_back(b, topic: str, partitions: int) -> dict[tuple[int, int], bytes]:
    """Every record, (partition, offset) -> value, checking the offsets run without a gap."""
    highs = high_watermarks(b, topic, partitions)
    records = consume_confluent(b.bootstrap, topic, list(range(partitions)),
                                sum(highs.values()), timeout=60)
    for p in range(partitions):
        assert [r.offset for r in records if r.partition == p] == list(range(highs[p])), p
    return {(r.partition, r.offset): r.value for r in records}


@pytest.fixture
def limited():
    with LimitedBroker() as b:
        yield b


@pytest.mark.slow
def test_a_full_disk_fails_new_writes_and_loses_nothing_acknowledged(limited, topic_name):
    b = limited
    partitions = 2
    limit = 200_000                 # bytes a file may grow to: each .log fills up at that
    b.file_size_limit = limit
    b.start()
    create_topic(b.bootstrap, topic_name, partitions=partitions)

    log = Lines()
    producer = producer_for(b, log)
    acked: dict[tuple[int, int], bytes] = {}
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            assert (msg.partition(), msg.offset()) not in acked, "an offset given twice"
            acked[(msg.partition(), msg.offset())] = msg.value()

    # Produce until writes fail: 1 KiB records, several per batch, so that one batch crosses
    # the limit (a short write) and the write after it fails (EFBIG).
    sent = 0
    deadline = time.monotonic() + 60
    while not failed:
        assert time.monotonic() < deadline, f"no write failed; {len(acked)} acknowledged"
        if sent < 4 * limit // 1000:
            producer.produce(topic_name, value=b"%06d-" % sent + b"x" * 1000,
                             partition=sent % partitions, on_delivery=on_delivery)
            sent += 1
        producer.poll(0.01)
    try:
        producer.flush(30)
    except confluent_kafka.KafkaException as e:
        pytest.fail(f"the producer failed: {e}; its log: {log.lines[-10:]}; "
                    f"the broker's: {b.output[-10:]}")
    assert len(acked) > 100
    # The broker answered KAFKA_STORAGE_ERROR ("Disk error ..."), which the idempotent producer
    # retries (not persisted) until message.timeout.ms, then fails the records.
    assert any("Disk error when trying to access log file" in line for line in log.lines)
    assert {e.code() for e in failed} == {confluent_kafka.KafkaError._MSG_TIMED_OUT}

    # The broker is up and serving: Metadata, and the partitions' errors, which a producer that
    # does not retry gets as they are.
    assert b.running
    assert topic_name in metadata_topics(b)
    assert raw_produce_and_fetch(b, topic_name) == (ErrorCode.KAFKA_STORAGE_ERROR,
                                                    ErrorCode.NONE)
    # Everything acknowledged is readable while the dir is offline, by both clients.
    stored = read_back(b, topic_name, partitions)
    assert {key: stored[key] for key in acked} == acked
    from kafka import KafkaConsumer, TopicPartition
    kc = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False,
                       auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        kc.assign([TopicPartition(topic_name, p) for p in range(partitions)])
        seen = {(m.partition, m.offset): m.value for m in kc}
    finally:
        kc.close()
    assert {key: seen[key] for key in acked} == acked
    plain = producer_for(b, **{"enable.idempotence": False, "retries": 0})
    errors = []
    plain.produce(topic_name, value=b"late", partition=1,
                  on_delivery=lambda err, msg: errors.append(err))
    plain.flush(30)
    assert [e.code() for e in errors] == [confluent_kafka.KafkaError.KAFKA_STORAGE_ERROR]
    from kafka import KafkaProducer
    from kafka.errors import KafkaStorageError
    kp = KafkaProducer(bootstrap_servers=b.bootstrap, acks="all", retries=0,
                       request_timeout_ms=10_000)
    try:
        with pytest.raises(KafkaStorageError):
            kp.send(topic_name, value=b"late", partition=0).get(timeout=30)
    finally:
        kp.close(timeout=5)
    assert any("offline" in line.lower() for line in b.output), b.output[-20:]

    # The short write was taken back: each .log holds whole batches, within the limit.
    for p in range(partitions):
        path = os.path.join(b.data_dir, f"{topic_name}-{p}", "00000000000000000000.log")
        stored = stored_batches(b.data_dir, topic_name, p)
        assert os.path.getsize(path) == sum(h.size for h in stored) <= limit

    # SIGTERM: a clean stop, but the dir was offline, so the next start recovers it.
    assert b.stop() == 0
    b.file_size_limit = None
    b.start()
    stored = read_back(b, topic_name, partitions)
    assert {key: stored[key] for key in acked} == acked
    values = list(stored.values())
    assert len(values) == len(set(values)), "a record written twice"
    # New writes go on after what is there.
    highs = high_watermarks(b, topic_name, partitions)
    after = {}
    producer = producer_for(b)
    producer.produce(topic_name, value=b"after", partition=0,
                     on_delivery=lambda err, msg: after.update(err=err, offset=msg.offset()))
    producer.flush(30)
    assert after == {"err": None, "offset": highs[0]}


@pytest.mark.slow
def test_a_directory_the_broker_may_not_write_fails_the_roll(limited, topic_name):
    """Without root's power over file permissions, a partition dir made read-only refuses the
    next segment's files (EACCES) when the active segment is full."""
    if not can_drop_capabilities():
        pytest.skip("needs root with CAP_SETPCAP, to drop its power over file permissions")
    b = limited
    b.obeys_permissions = True
    b.start()
    create_topic(b.bootstrap, topic_name, partitions=1, configs={"segment.bytes": "20000"})
    producer = producer_for(b, **{"linger.ms": 0})
    acked, failed = {}, []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked[msg.offset()] = msg.value()

    for i in range(10):
        producer.produce(topic_name, value=b"%04d-" % i + b"y" * 1000, partition=0,
                         on_delivery=on_delivery)
    assert producer.flush(30) == 0 and len(acked) == 10
    partition_dir = os.path.join(b.data_dir, f"{topic_name}-0")
    os.chmod(partition_dir, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
             | stat.S_IROTH | stat.S_IXOTH)
    try:
        i = 10
        deadline = time.monotonic() + 60
        while not failed:
            assert time.monotonic() < deadline, "the roll never failed"
            try:
                producer.produce(topic_name, value=b"%04d-" % i + b"y" * 1000, partition=0,
                                 on_delivery=on_delivery)
                i += 1
                producer.poll(0.02)
            except confluent_kafka.KafkaException as e:
                # On a loaded machine retries can outlive message.timeout.ms, and an idempotent
                # librdkafka producer then gives up for good (_INCONSISTENT): a failure too.
                failed.append(e)
        try:
            producer.flush(30)
        except confluent_kafka.KafkaException:
            pass
        assert b.running and topic_name in metadata_topics(b)
        wait_for(lambda: raw_produce_and_fetch(b, topic_name)[0] ==
                 ErrorCode.KAFKA_STORAGE_ERROR, 10, "Produce answering KAFKA_STORAGE_ERROR")
        b.stop()
    finally:
        os.chmod(partition_dir, 0o755)
    b.obeys_permissions = False
    b.start()
    stored = read_back(b, topic_name, 1)
    assert {offset: stored[(0, offset)] for offset in acked} == acked
