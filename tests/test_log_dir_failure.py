"""A failed disk operation takes the log dir offline (Kafka's LogDirFailureChannel).

Faults here are real file-system errors, made with public means only: a directory where the
broker needs a file (EISDIR on open: an index file opened for its first entry, the leader-epoch
checkpoint's temporary file, the next segment's `.log`), and RLIMIT_FSIZE in a child process (a
short write, then EFBIG). Whatever fails, the batch being appended may or may not be in the
`.log`, but:

- the append answers KAFKA_STORAGE_ERROR and the dir goes offline: every later read or write of
  its partitions is KAFKA_STORAGE_ERROR and writes nothing, so no offset is given twice;
- checkpoints, retention and the cleaner leave it alone, and a shutdown writes no clean-shutdown
  marker;
- the next start recovers the dir: every acknowledged batch is there, at its offset, and appends
  go on after the log end offset.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from record_batches import make_batch
from trioka.clock import ManualClock
from trioka.log.checkpoint import (CLEAN_SHUTDOWN_MARKER, LEADER_EPOCH_CHECKPOINT,
                                   RECOVERY_POINT_CHECKPOINT)
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.manager import LogManager
from trioka.log.records import iter_batches
from trioka.log.segment import INDEX_SUFFIX, LOG_SUFFIX, segment_file_name
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


def open_logs(root) -> LogManager:
    logs = LogManager(str(root), clock=ManualClock(NOW))
    logs.open()
    return logs


def values_of(logs: LogManager, topic: str = "t", partition: int = 0) -> list[tuple[int, bytes]]:
    log = logs.partition(topic, partition)
    out, offset = [], log.log_start_offset
    while offset < log.log_end_offset:
        batches = list(iter_batches(bytes(log.read(offset, 1 << 20).records)))
        for b in batches:
            out.extend((r.offset, r.value) for r in b.records)
            offset = b.next_offset
    return out


def storage_error(fn) -> KafkaError:
    with pytest.raises(KafkaError) as info:
        fn()
    assert info.value.code == ErrorCode.KAFKA_STORAGE_ERROR, info.value
    return info.value


def block(path) -> None:
    """Put a directory where the broker will want a file: opening it fails with EISDIR."""
    if os.path.exists(path):
        os.remove(path)
    os.mkdir(path)


def assert_offline(logs: LogManager, root, topic: str = "t") -> None:
    """Everything the broker could do with the dir is refused, and nothing is written."""
    assert logs.offline
    log_path = os.path.join(root, f"{topic}-0", segment_file_name(0, LOG_SUFFIX))
    size = os.path.getsize(log_path)
    error = storage_error(lambda: logs.partition(topic, 0))
    assert error.message == f"Partition {topic}-0 is in an offline log directory"
    # A log handed out before the failure refuses too, at the files layer.
    held = logs.topic(topic).partitions[0]
    storage_error(lambda: held.append(make_batch([b"late"]), now_ms=NOW))
    # What was stored stays readable: a full disk stops writes, not reads.
    assert logs.partition(topic, 0, reading=True) is held
    if held.log_end_offset > held.log_start_offset:
        assert held.read(held.log_start_offset, 1 << 20).chunks
    assert os.path.getsize(log_path) == size
    storage_error(lambda: logs.create_topic("other", 1, now_ms=NOW))
    storage_error(lambda: logs.delete_topic(topic))
    storage_error(lambda: logs.set_topic_configs(topic, {"retention.ms": "1"}))
    assert list(logs.all_partitions()) == []
    checkpoint = os.path.join(root, RECOVERY_POINT_CHECKPOINT)
    before = open(checkpoint, "rb").read() if os.path.exists(checkpoint) else None
    logs.checkpoint()
    assert (open(checkpoint, "rb").read() if os.path.exists(checkpoint) else None) == before
    assert logs.delete_old_segments(NOW + 10**12) == 0


def test_an_index_write_failing_after_the_log_write_takes_the_dir_offline(tmp_path):
    """The reported bug: the `.log` holds the batch, the index entry fails (EISDIR here; ENOSPC
    or EMFILE in life). Before, the log end offset stayed put and the next append reused the
    batch's offsets; now nothing is appended again until recovery."""
    logs = open_logs(tmp_path)
    logs.create_topic("t", 1, {"index.interval.bytes": "0"}, now_ms=NOW)
    log = logs.partition("t", 0)
    assert log.append(make_batch([b"a0", b"a1"]), now_ms=NOW).base_offset == 0
    block(tmp_path / "t-0" / segment_file_name(0, INDEX_SUFFIX))
    storage_error(lambda: log.append(make_batch([b"b2"]), now_ms=NOW))
    # The batch reached the .log before the index failed: recovery keeps it (its producer was
    # told KAFKA_STORAGE_ERROR, as Kafka's would be, and a retry is recognised by sequence).
    assert_offline(logs, tmp_path)
    logs.close()
    assert not os.path.exists(tmp_path / CLEAN_SHUTDOWN_MARKER)

    os.rmdir(tmp_path / "t-0" / segment_file_name(0, INDEX_SUFFIX))   # the disk is repaired
    again = open_logs(tmp_path)
    assert not again.had_clean_shutdown and not again.offline
    assert values_of(again) == [(0, b"a0"), (1, b"a1"), (2, b"b2")]
    assert again.partition("t", 0).append(make_batch([b"c3"]), now_ms=NOW).base_offset == 3
    again.close()
    third = open_logs(tmp_path)
    assert values_of(third) == [(0, b"a0"), (1, b"a1"), (2, b"b2"), (3, b"c3")]
    third.close()


def test_an_idempotent_retry_after_the_failure_is_not_written_twice(tmp_path):
    logs = open_logs(tmp_path)
    logs.create_topic("t", 1, {"index.interval.bytes": "0"}, now_ms=NOW)
    log = logs.partition("t", 0)
    first = make_batch([b"a0"], producer_id=7, producer_epoch=0, base_sequence=0)
    second = make_batch([b"b1"], producer_id=7, producer_epoch=0, base_sequence=1)
    log.append(first, now_ms=NOW)
    block(tmp_path / "t-0" / segment_file_name(0, INDEX_SUFFIX))
    storage_error(lambda: log.append(second, now_ms=NOW))
    logs.close()
    os.rmdir(tmp_path / "t-0" / segment_file_name(0, INDEX_SUFFIX))
    again = open_logs(tmp_path)
    # The producer retries the batch it was refused: it is in the log already.
    result = again.partition("t", 0).append(second, now_ms=NOW)
    assert result.base_offset == 1
    assert values_of(again) == [(0, b"a0"), (1, b"b1")]
    again.close()


def test_a_leader_epoch_checkpoint_failure_takes_the_dir_offline(tmp_path):
    logs = open_logs(tmp_path)
    logs.create_topic("t", 1, now_ms=NOW)
    log = logs.partition("t", 0)
    log.append(make_batch([b"a0"]), now_ms=NOW, leader_epoch=0)
    block(tmp_path / "t-0" / (LEADER_EPOCH_CHECKPOINT + ".tmp"))
    storage_error(lambda: log.append(make_batch([b"b1"]), now_ms=NOW, leader_epoch=1))
    assert_offline(logs, tmp_path)
    logs.close()
    os.rmdir(tmp_path / "t-0" / (LEADER_EPOCH_CHECKPOINT + ".tmp"))
    again = open_logs(tmp_path)
    assert values_of(again) == [(0, b"a0"), (1, b"b1")]
    assert again.partition("t", 0).append(make_batch([b"c2"]), now_ms=NOW).base_offset == 2
    again.close()


def test_a_roll_that_cannot_create_the_next_segment_takes_the_dir_offline(tmp_path):
    logs = open_logs(tmp_path)
    logs.create_topic("t", 1, {"segment.bytes": "100"}, now_ms=NOW)
    log = logs.partition("t", 0)
    log.append(make_batch([b"a" * 60]), now_ms=NOW)
    block(tmp_path / "t-0" / segment_file_name(1, LOG_SUFFIX))
    storage_error(lambda: log.append(make_batch([b"b" * 60]), now_ms=NOW))
    assert_offline(logs, tmp_path)
    logs.close()
    os.rmdir(tmp_path / "t-0" / segment_file_name(1, LOG_SUFFIX))
    again = open_logs(tmp_path)
    assert values_of(again) == [(0, b"a" * 60)]
    assert again.partition("t", 0).append(make_batch([b"c"]), now_ms=NOW).base_offset == 1
    again.close()


def test_memory_never_goes_offline():
    files = MemoryFiles()
    assert not files.failure_channel.offline
    logs = LogManager(None, clock=ManualClock(NOW))
    logs.open()
    assert not logs.offline
    logs.close()


def test_an_error_reported_once_is_logged_and_the_first_cause_kept(tmp_path, caplog):
    files = DiskFiles(str(tmp_path))
    channel = files.failure_channel
    block(tmp_path / "x")
    with pytest.raises(KafkaError):
        files.open("x")
    first = channel.failure
    assert "x" in first and channel.offline
    with pytest.raises(KafkaError):
        files.read_small("y")       # refused: the dir is offline, no new cause
    assert channel.failure == first
    assert any("Stopping serving logs in dir" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- RLIMIT_FSIZE: EFBIG

SHORT_WRITE = textwrap.dedent("""
    import json, resource, signal, sys
    from trioka.clock import ManualClock
    from trioka.log.manager import LogManager
    from trioka.wire.errors import KafkaError
    sys.path.insert(0, sys.argv[3])
    from record_batches import make_batch

    root, limit = sys.argv[1], int(sys.argv[2])
    logs = LogManager(root, clock=ManualClock(1_700_000_000_000))
    logs.open()
    logs.create_topic("t", 1)
    log = logs.partition("t", 0)
    # From here on no file of this process may grow past `limit` bytes: a write that crosses
    # it is cut short, the next one fails with EFBIG (SIGXFSZ ignored, as Python does).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    acked, error = [], None
    for i in range(1000):
        try:
            result = log.append(make_batch([b"%05d" % i + b"x" * 300]), now_ms=1_700_000_000_000)
        except KafkaError as e:
            error = (int(e.code), e.message)
            break
        acked.append(result.base_offset)
    again = None
    try:
        log.append(make_batch([b"late"]), now_ms=1_700_000_000_000)
    except KafkaError as e:
        again = int(e.code)
    logs.close()
    print(json.dumps({"acked": acked, "error": error, "again": again, "offline": logs.offline}))
""")


def test_a_short_write_then_efbig_keeps_the_log_whole_batch_and_goes_offline(tmp_path):
    root = tmp_path / "data"
    tests_dir = os.path.dirname(__file__)
    limit = 20_000
    out = subprocess.run([sys.executable, "-c", SHORT_WRITE, str(root), str(limit), tests_dir],
                         capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    acked = result["acked"]
    assert result["error"][0] == ErrorCode.KAFKA_STORAGE_ERROR
    assert "File too large" in result["error"][1] or "EFBIG" in result["error"][1]
    assert result["again"] == ErrorCode.KAFKA_STORAGE_ERROR and result["offline"]
    assert acked == list(range(len(acked))) and len(acked) > 10
    # The short write was taken back: the .log holds whole batches only, below the limit.
    size = os.path.getsize(root / "t-0" / segment_file_name(0, LOG_SUFFIX))
    assert size <= limit and size == len(acked) * len(make_batch([b"00000" + b"x" * 300]))
    assert not os.path.exists(root / CLEAN_SHUTDOWN_MARKER)
    logs = open_logs(root)
    assert [o for o, _ in values_of(logs)] == acked
    assert values_of(logs)[-1][1] == b"%05d" % acked[-1] + b"x" * 300
    assert logs.partition("t", 0).append(make_batch([b"next"]), now_ms=NOW).base_offset == \
        len(acked)
    logs.close()
