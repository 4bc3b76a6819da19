"""PartitionLog: offsets, reads, rolls, recovery, timestamps (trioka.log.partition)."""

import os
import subprocess
import sys
import textwrap

import pytest

from record_batches import make_batch
from trioka.log import batch
from trioka.log.batch import AppendOrigin
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.config import LogConfig
from trioka.log.partition import PartitionLog
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


@pytest.fixture(params=["disk", "memory"])
def files(request, tmp_path):
    if request.param == "disk":
        return DiskFiles(str(tmp_path / "data"))
    return MemoryFiles()


def open_log(files, config=None, **kwargs):
    return PartitionLog("orders", 0, "orders-0", files, config, now_ms=NOW, **kwargs)


def produce(log, count, *, values_per_batch=3, value=b"x" * 40, timestamp=NOW, **kwargs):
    results = []
    for i in range(count):
        data = make_batch([value] * values_per_batch, base_timestamp=timestamp + i)
        results.append(log.append(data, now_ms=NOW, **kwargs))
    return results


def stored_batches(records) -> list:
    """Headers of the batches in fetched bytes."""
    data = bytes(records)
    return batch.validate_batches(data, origin=AppendOrigin.COORDINATOR)


def test_offsets_assigned_and_headers_patched(files):
    log = open_log(files)
    results = produce(log, 3, leader_epoch=4)
    assert [(r.base_offset, r.last_offset) for r in results] == [(0, 2), (3, 5), (6, 8)]
    assert results[0].log_append_time_ms == -1
    assert results[0].log_start_offset == 0
    assert log.log_end_offset == log.high_watermark == log.last_stable_offset == 9
    fetched = log.read(0, 1_000_000)
    headers = stored_batches(fetched.records)
    assert [(h.base_offset, h.partition_leader_epoch) for h in headers] == [(0, 4), (3, 4), (6, 4)]
    assert fetched.high_watermark == 9 and fetched.log_start_offset == 0


def test_append_is_all_or_nothing(files):
    log = open_log(files)
    produce(log, 1)
    bad = bytearray(make_batch([b"a", b"b"]))
    bad[-1] ^= 1
    with pytest.raises(KafkaError) as error:
        log.append(bytes(bad), now_ms=NOW)
    assert error.value.code is ErrorCode.CORRUPT_MESSAGE
    with pytest.raises(KafkaError) as error:
        log.append(b"", now_ms=NOW)
    assert error.value.code is ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 3
    assert log.read(0, 10**6).size == log.size


def test_message_too_large(files):
    log = open_log(files, {"max.message.bytes": "500"})
    with pytest.raises(KafkaError) as error:
        log.append(make_batch([b"x" * 600]), now_ms=NOW)
    assert error.value.code is ErrorCode.MESSAGE_TOO_LARGE
    log.append(make_batch([b"x" * 100]), now_ms=NOW)
    assert log.log_end_offset == 1


def test_log_append_time(files):
    log = open_log(files, {"message.timestamp.type": "LogAppendTime"})
    result = log.append(make_batch([b"a", b"b"], base_timestamp=5), now_ms=NOW + 7)
    assert result.log_append_time_ms == NOW + 7
    (header,) = stored_batches(log.read(0, 10**6).records)
    assert header.is_log_append_time and header.max_timestamp == NOW + 7
    assert log.offset_for_timestamp(NOW) == (0, NOW + 7)


def test_timestamp_bounds(files):
    log = open_log(files, {"message.timestamp.before.max.ms": "1000"})
    with pytest.raises(KafkaError) as error:
        log.append(make_batch([b"a"], base_timestamp=NOW - 5000), now_ms=NOW)
    assert error.value.code is ErrorCode.INVALID_TIMESTAMP
    log.append(make_batch([b"a"], base_timestamp=NOW - 500), now_ms=NOW)


def test_read_ranges_and_limits(files):
    log = open_log(files)
    produce(log, 10)
    batch_size = log.size // 10
    with pytest.raises(KafkaError) as error:
        log.read(31, 1000)
    assert error.value.code is ErrorCode.OFFSET_OUT_OF_RANGE
    with pytest.raises(KafkaError):
        log.read(-1, 1000)
    assert log.read(30, 1000).chunks == []
    result = log.read(4, batch_size * 2 + 10)
    assert [h.base_offset for h in stored_batches(result.records)] == [3, 6]
    result = log.read(4, 10)
    assert [h.base_offset for h in stored_batches(result.records)] == [3]
    assert log.read(4, 10, min_one_batch=False).chunks == []
    # isolation_upper (e.g. the last stable offset) stops before batches starting there.
    result = log.read(0, 10**6, isolation_upper=9)
    assert [h.base_offset for h in stored_batches(result.records)] == [0, 3, 6]


def test_roll_and_read_across_segments(files):
    log = open_log(files, {"segment.bytes": "1000"})
    produce(log, 30)
    assert len(log.segments) > 3
    names = sorted(n for n in files.listdir("orders-0") if n.endswith(".log"))
    assert names[0] == "00000000000000000000.log"
    assert [int(n[:20]) for n in names] == [s.base_offset for s in log.segments]
    assert all(len(n) == len("00000000000000000000.log") for n in names)
    for segment in log.segments[:-1]:
        assert segment.size <= 1000
    # One read spans several segments, whole batches only, in order.
    result = log.read(0, 10**6)
    assert len(result.chunks) == len(log.segments)
    assert [h.base_offset for h in stored_batches(result.records)] == list(range(0, 90, 3))
    # Starting in the middle of the second segment.
    second = log.segments[1]
    result = log.read(second.base_offset + 1, 10**6)
    assert stored_batches(result.records)[0].base_offset == second.base_offset
    # max_bytes applies across segments.
    result = log.read(0, 2500)
    assert result.size <= 2500 and result.size >= 2500 - 2 * (log.size // 30)


def test_roll_on_segment_ms(files):
    log = open_log(files, {"segment.ms": "1000"})
    log.append(make_batch([b"a"], base_timestamp=NOW), now_ms=NOW)
    log.append(make_batch([b"a"], base_timestamp=NOW + 500), now_ms=NOW)
    assert len(log.segments) == 1
    log.append(make_batch([b"a"], base_timestamp=NOW + 1001), now_ms=NOW)
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_clean_restart_keeps_everything(files):
    log = open_log(files, {"segment.bytes": "2000"})
    produce(log, 40)
    before = bytes(log.read(0, 10**7).records)
    end = log.log_end_offset
    log.close()
    log = open_log(files, {"segment.bytes": "2000"}, recovery_point=end, clean_shutdown=True)
    assert log.log_end_offset == end and log.high_watermark == end
    assert bytes(log.read(0, 10**7).records) == before
    assert produce(log, 1)[0].base_offset == end


def test_unclean_restart_truncates_torn_tail(files):
    log = open_log(files, {"segment.bytes": "2000"})
    produce(log, 40)
    before = bytes(log.read(0, 10**7).records)
    end = log.log_end_offset
    active = log.active_segment
    # A crash in the middle of writing a batch leaves half of it.
    active.log.append(make_batch([b"y" * 300])[:150])
    active.log.append(b"\x00" * 3)
    log = open_log(files, {"segment.bytes": "2000"})
    assert log.log_end_offset == end
    assert bytes(log.read(0, 10**7).records) == before
    assert produce(log, 1)[0].base_offset == end


def test_recovery_drops_segments_after_corruption(files):
    log = open_log(files, {"segment.bytes": "1000"})
    produce(log, 20)
    second = log.segments[1]
    path = f"orders-0/{second.base_offset:020d}.log"
    raw = bytearray(files.read_small(path))
    raw[100] ^= 0xFF
    handle = files.open(path)
    handle.truncate(0)
    handle.append(bytes(raw))
    handle.close()
    log = open_log(files, {"segment.bytes": "1000"})
    # Only the batches before the damaged one remain, contiguous.
    assert len(log.segments) == 2
    assert log.log_end_offset < second.next_offset
    offsets = [h.base_offset for h in stored_batches(log.read(0, 10**7).records)]
    assert offsets == list(range(0, log.log_end_offset, 3))


def test_missing_index_rebuilt_on_open(files):
    log = open_log(files, {"segment.bytes": "3000", "index.interval.bytes": "200"})
    produce(log, 40)
    expected = bytes(log.read(50, 10**7).records)
    entries = [list(s.offset_index.positions) for s in log.segments]
    log.close()
    for name in files.listdir("orders-0"):
        if name.endswith((".index", ".timeindex")):
            files.remove(f"orders-0/{name}")
    log = open_log(files, {"segment.bytes": "3000", "index.interval.bytes": "200"},
                   clean_shutdown=True)
    assert bytes(log.read(50, 10**7).records) == expected
    # Indexes load (and rebuild) lazily, when a segment is first used.
    assert log.read(0, 10**7).size == log.size
    assert [list(s.offset_index.positions) for s in log.segments] == entries
    assert all(files.exists(f"orders-0/{s.base_offset:020d}.index") for s in log.segments)


def test_acknowledged_appends_survive_sigkill(tmp_path):
    """Appends are plain os.write calls: a killed process loses nothing it acknowledged."""
    root = str(tmp_path / "data")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from record_batches import make_batch
        from trioka.log.files import DiskFiles
        from trioka.log.partition import PartitionLog
        log = PartitionLog("orders", 0, "orders-0", DiskFiles({root!r}),
                           {{"segment.bytes": "5000"}}, now_ms=0)
        for i in range(200):
            log.append(make_batch([b"v%d" % i]), now_ms=0)
        print(log.log_end_offset, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert run.returncode == -9
    assert run.stdout.strip() == b"200"
    log = PartitionLog("orders", 0, "orders-0", DiskFiles(root), {"segment.bytes": "5000"},
                       now_ms=NOW)
    assert log.log_end_offset == 200
    assert [h.base_offset for h in stored_batches(log.read(0, 10**7).records)] == list(range(200))


def test_offset_for_timestamp(files):
    log = open_log(files, {"segment.bytes": "600", "index.interval.bytes": "100"})
    # Batches of three records with timestamps t, t+10, t+5 (not in order inside a batch).
    for i in range(20):
        base = 10_000 + i * 100
        log.append(make_batch([b"a", b"b", b"c"], base_timestamp=base,
                              timestamps=[base, base + 10, base + 5]), now_ms=NOW)
    assert len(log.segments) > 2
    assert log.offset_for_timestamp(0) == (0, 10_000)
    assert log.offset_for_timestamp(10_000) == (0, 10_000)
    assert log.offset_for_timestamp(10_001) == (1, 10_010)
    assert log.offset_for_timestamp(10_006) == (1, 10_010)
    assert log.offset_for_timestamp(10_011) == (3, 10_100)
    assert log.offset_for_timestamp(11_207) == (37, 11_210)
    assert log.offset_for_timestamp(11_911) is None
    assert log.max_timestamp_offset() == (58, 11_910)
    # Records below the log start offset are never answered.
    log.delete_records_before(4)
    assert log.offset_for_timestamp(0) == (4, 10_110)


def test_offset_for_timestamp_empty_log(files):
    log = open_log(files)
    assert log.offset_for_timestamp(0) is None
    assert log.max_timestamp_offset() is None


def test_delete_records_before(files):
    log = open_log(files, {"segment.bytes": "1000"})
    produce(log, 30)
    third = log.segments[2].base_offset
    assert log.delete_records_before(third + 1) == third + 1
    assert log.log_start_offset == third + 1
    assert log.segments[0].base_offset == third
    with pytest.raises(KafkaError) as error:
        log.read(third, 1000)
    assert error.value.code is ErrorCode.OFFSET_OUT_OF_RANGE
    # Reading at the log start offset returns the whole batch that holds it.
    assert stored_batches(log.read(third + 1, 100).records)[0].base_offset == third
    with pytest.raises(KafkaError) as error:
        log.delete_records_before(log.high_watermark + 1)
    assert error.value.code is ErrorCode.OFFSET_OUT_OF_RANGE
    assert log.delete_records_before(0) == third + 1  # never moves backwards
    assert log.delete_records_before(log.high_watermark) == log.log_end_offset
    assert log.read(log.log_end_offset, 100).chunks == []


def test_truncate_to(files):
    log = open_log(files, {"segment.bytes": "1000"})
    produce(log, 30)
    third = log.segments[2].base_offset
    log.truncate_to(third + 1, NOW)
    assert log.log_end_offset == third and log.high_watermark == third
    assert len(log.segments) == 3 and log.active_segment.size == 0
    assert produce(log, 1)[0].base_offset == third
    log.truncate_to(0, NOW)
    assert log.log_end_offset == 0 and len(log.segments) == 1
    assert produce(log, 1)[0].base_offset == 0


def test_retention(files):
    log = open_log(files, {"segment.bytes": "1000", "retention.ms": "60000"})
    produce(log, 10, timestamp=NOW - 120_000)
    produce(log, 10, timestamp=NOW)
    assert log.delete_old_segments(NOW) > 0
    assert log.log_start_offset == log.segments[0].base_offset > 0
    assert log.read(log.log_start_offset, 10**6).size > 0
    # retention.bytes removes oldest first until the log fits.
    bases = [s.base_offset for s in log.segments]
    log_end = log.log_end_offset
    data_from = {base: log.read(base, 10**6).records for base in bases}
    log.update_config(LogConfig.from_configs({"segment.bytes": "1000", "retention.bytes": "1500"}))
    assert log.delete_old_segments(NOW) > 0
    assert log.size - log.active_segment.size <= 1500
    # Only the oldest went: the newest segments stay, at least retention.bytes of them, with
    # their data unchanged.
    assert log.size >= 1500
    assert [s.base_offset for s in log.segments] == bases[-len(log.segments):]
    assert log.log_start_offset == log.segments[0].base_offset
    assert log.log_end_offset == log.high_watermark == log_end
    assert log.read(log.log_start_offset, 10**6).records == data_from[log.log_start_offset]


def test_leader_epochs(files):
    log = open_log(files)
    produce(log, 2, leader_epoch=0)
    produce(log, 2, leader_epoch=3)
    assert log.epoch_entries == [(0, 0), (3, 6)]
    assert log.end_offset_for_epoch(0) == (0, 6)
    assert log.end_offset_for_epoch(2) == (0, 6)
    assert log.end_offset_for_epoch(3) == (3, 12)
    assert log.end_offset_for_epoch(9) == (-1, -1)    # newer than any epoch: undefined
    assert log.end_offset_for_epoch(-1) == (-1, -1)
    log.close()
    log = open_log(files, clean_shutdown=True)
    assert log.epoch_entries == [(0, 0), (3, 6)] and log.leader_epoch == 3


def test_memory_and_disk_give_identical_bytes(tmp_path):
    config = {"segment.bytes": "1500", "index.interval.bytes": "300"}
    logs = [PartitionLog("t", 0, "t-0", DiskFiles(str(tmp_path)), config, now_ms=NOW),
            PartitionLog("t", 0, "t-0", MemoryFiles(), config, now_ms=NOW)]
    for log in logs:
        for i in range(25):
            log.append(make_batch([b"%d" % i] * (1 + i % 4), base_timestamp=NOW + i),
                       now_ms=NOW, leader_epoch=i // 10)
        log.delete_records_before(7)
    disk, memory = logs
    assert [s.base_offset for s in disk.segments] == [s.base_offset for s in memory.segments]
    for offset in (7, 20, 33, disk.log_end_offset):
        for max_bytes in (1, 500, 10**6):
            assert bytes(disk.read(offset, max_bytes).records) == \
                bytes(memory.read(offset, max_bytes).records)
    assert disk.offset_for_timestamp(NOW + 12) == memory.offset_for_timestamp(NOW + 12)


def test_config_parsing():
    config = LogConfig.from_configs({"segment.bytes": "1024", "cleanup_policy": "compact,delete"})
    assert config.segment_bytes == 1024 and config.compact and config.delete
    assert config.to_configs()["segment.bytes"] == "1024"
    assert config.to_configs()["preallocate"] == "false"
    for bad in ({"segment.bytes": "abc"}, {"segment.bytes": "1"}, {"no.such.config": "1"},
                {"message.timestamp.type": "Wrong"}, {"cleanup.policy": "keep"}):
        with pytest.raises(KafkaError) as error:
            LogConfig.from_configs(bad)
        assert error.value.code is ErrorCode.INVALID_CONFIG


def test_config_names_the_codec_batches_are_stored_with():
    assert LogConfig().compression_codec is None                    # "producer": as sent
    assert [LogConfig.from_configs({"compression.type": name}).compression_codec
            for name in ("uncompressed", "gzip", "snappy", "lz4", "zstd")] == [0, 1, 2, 3, 4]
