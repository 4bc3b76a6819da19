"""LogManager: topics, the data dir layout, checkpoints, restarts (trioka.log.manager)."""

import json
import os
import time
import uuid

import pytest

from record_batches import make_batch
from trioka.clock import ManualClock
from trioka.log import checkpoint
from trioka.log.config import LogConfig
from trioka.log.manager import LogDirError, LogManager
from trioka.log.topics import validate_topic_name
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


def produce(log, count, value=b"v" * 30):
    for i in range(count):
        log.append(make_batch([value, value], base_timestamp=NOW + i), now_ms=NOW)


def opened(path, **kwargs) -> LogManager:
    manager = LogManager(str(path), clock=ManualClock(NOW), **kwargs)
    manager.open()
    return manager


def code_of(call, *args, **kwargs) -> ErrorCode:
    with pytest.raises(KafkaError) as error:
        call(*args, **kwargs)
    return error.value.code


def test_layout_and_restart(tmp_path):
    manager = opened(tmp_path)
    topic_id = manager.create_topic("orders", 3, {"segment.bytes": "2000",
                                                  "retention.ms": "3600000"})
    assert isinstance(topic_id, uuid.UUID)
    produce(manager.partition("orders", 1), 50)
    end = manager.partition("orders", 1).log_end_offset
    cluster_id = manager.cluster_id
    assert len(cluster_id) == 22 and "=" not in cluster_id
    manager.close()

    names = set(os.listdir(tmp_path))
    assert {"meta.properties", ".kafka_cleanshutdown", "recovery-point-offset-checkpoint",
            "log-start-offset-checkpoint", "replication-offset-checkpoint", "trioka-topics.json",
            "orders-0", "orders-1", "orders-2"} <= names
    meta = (tmp_path / "meta.properties").read_text()
    assert "version=1" in meta and f"cluster.id={cluster_id}" in meta and "node.id=1" in meta
    partition_metadata = (tmp_path / "orders-1" / "partition.metadata").read_text()
    assert partition_metadata == \
        f"version: 0\ntopic_id: {checkpoint.uuid_to_base64(topic_id)}\n"
    lines = (tmp_path / "recovery-point-offset-checkpoint").read_text().splitlines()
    assert lines[:2] == ["0", "3"] and f"orders 1 {end}" in lines
    assert f"orders 1 {end}" in (tmp_path / "replication-offset-checkpoint").read_text()
    assert len(os.listdir(tmp_path / "orders-1")) > 4  # several segments rolled

    manager = opened(tmp_path)
    assert manager.had_clean_shutdown
    assert not (tmp_path / ".kafka_cleanshutdown").exists()
    assert manager.cluster_id == cluster_id
    topic = manager.topic("orders")
    assert topic.topic_id == topic_id and manager.topic_by_id(topic_id) is topic
    assert topic.configs == {"segment.bytes": "2000", "retention.ms": "3600000"}
    assert topic.config.segment_bytes == 2000 and topic.num_partitions == 3
    log = manager.partition("orders", 1)
    assert log.log_end_offset == end and log.high_watermark == end
    assert log.read(0, 10**7).size == log.size
    manager.close()


def test_unclean_restart_recovers(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("t", 1)
    log = manager.partition("t", 0)
    produce(log, 10)
    end = log.log_end_offset
    manager.checkpoint()
    produce(log, 5)
    log.active_segment.log.append(make_batch([b"torn" * 50])[:100])
    # The process dies: no close(), no clean-shutdown marker, the lock goes with it.
    manager.files.unlock()

    manager = opened(tmp_path)
    assert manager.had_clean_shutdown is False
    log = manager.partition("t", 0)
    assert log.log_end_offset == end + 10
    manager.close()


def test_checkpoint_format_roundtrip(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("a.b-c", 2)
    produce(manager.partition("a.b-c", 0), 4)
    manager.partition("a.b-c", 0).delete_records_before(3)
    manager.checkpoint()
    assert checkpoint.read_offset_checkpoint(manager.files, "log-start-offset-checkpoint") == \
        {("a.b-c", 0): 3}
    assert checkpoint.read_offset_checkpoint(manager.files, "recovery-point-offset-checkpoint") \
        == {("a.b-c", 0): 8, ("a.b-c", 1): 0}
    manager.close()
    manager = opened(tmp_path)
    assert manager.partition("a.b-c", 0).log_start_offset == 3
    manager.close()


def test_bad_checkpoint_is_an_error():
    files = LogManager(None).files
    files.write_atomic("x", b"0\n2\nt 0 5\n")
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.read_offset_checkpoint(files, "x")


def test_topic_errors(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("orders", 1)
    assert code_of(manager.create_topic, "orders", 1) is ErrorCode.TOPIC_ALREADY_EXISTS
    assert code_of(manager.create_topic, "x", 0) is ErrorCode.INVALID_PARTITIONS
    assert code_of(manager.create_topic, "bad name", 1) is ErrorCode.INVALID_TOPIC_EXCEPTION
    assert code_of(manager.create_topic, "y", 1, {"segment.bytes": "x"}) is ErrorCode.INVALID_CONFIG
    assert code_of(manager.create_topic, "y", 1, {"nope": "1"}) is ErrorCode.INVALID_CONFIG
    manager.create_topic("a.b", 1)
    assert code_of(manager.create_topic, "a_b", 1) is ErrorCode.INVALID_TOPIC_EXCEPTION
    assert code_of(manager.partition, "orders", 1) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert code_of(manager.partition, "nope", 0) is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert code_of(manager.delete_topic, "nope") is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert code_of(manager.create_partitions, "orders", 1) is ErrorCode.INVALID_PARTITIONS
    assert not os.path.exists(tmp_path / "y-0")
    manager.close()


def test_topic_name_rules():
    for good in ("a", "A-b_c.9", "x" * 249, "__consumer_offsets"):
        validate_topic_name(good)
    for bad in ("", ".", "..", "x" * 250, "a/b", "a b", "ü"):
        assert code_of(validate_topic_name, bad) is ErrorCode.INVALID_TOPIC_EXCEPTION


def test_create_partitions_and_delete_topic(tmp_path):
    manager = opened(tmp_path)
    topic_id = manager.create_topic("t", 1)
    manager.create_partitions("t", 3)
    assert manager.topic("t").num_partitions == 3
    produce(manager.partition("t", 2), 3)
    assert (tmp_path / "t-2" / "partition.metadata").exists()
    manager.close()
    manager = opened(tmp_path)
    assert manager.topic("t").num_partitions == 3
    assert manager.partition("t", 2).log_end_offset == 6
    assert manager.delete_topic("t") == topic_id
    assert manager.topic("t") is None and manager.topic_by_id(topic_id) is None
    assert not any(name.startswith("t-") for name in os.listdir(tmp_path))
    manager.close()
    manager = opened(tmp_path)
    assert manager.topics() == []
    # Recreating gets a fresh id and an empty log.
    assert manager.create_topic("t", 1) != topic_id
    assert manager.partition("t", 0).log_end_offset == 0
    manager.close()


def test_interrupted_delete_is_finished_on_open(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("t", 1)
    manager.close()
    os.rename(tmp_path / "t-0", tmp_path / f"t-0.{uuid.uuid4().hex}-delete")
    doc = json.loads((tmp_path / "trioka-topics.json").read_text())
    del doc["topics"]["t"]
    (tmp_path / "trioka-topics.json").write_text(json.dumps(doc))
    manager = opened(tmp_path)
    assert manager.topics() == [] and os.listdir(tmp_path).count("t-0") == 0
    assert not any(name.endswith("-delete") for name in os.listdir(tmp_path))
    manager.close()


def test_adopts_partition_dirs_without_topics_file(tmp_path):
    manager = opened(tmp_path)
    topic_id = manager.create_topic("t", 2)
    produce(manager.partition("t", 1), 2)
    manager.close()
    os.remove(tmp_path / "trioka-topics.json")
    manager = opened(tmp_path)
    assert manager.topic("t").topic_id == topic_id
    assert manager.partition("t", 1).log_end_offset == 4
    manager.close()


def test_set_topic_configs(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("t", 2, {"retention.ms": "1000"})
    config = manager.set_topic_configs("t", {"segment.bytes": "4096"})
    assert config.segment_bytes == 4096 and config.retention_ms == 604800000
    assert manager.partition("t", 1).config is config
    assert code_of(manager.set_topic_configs, "t", {"segment.ms": "0"}) is ErrorCode.INVALID_CONFIG
    assert manager.topic("t").config is config
    manager.close()
    manager = opened(tmp_path)
    assert manager.topic("t").configs == {"segment.bytes": "4096"}
    manager.close()


def test_default_config_applies(tmp_path):
    defaults = LogConfig.from_configs({"segment.bytes": "12345"})
    manager = LogManager(str(tmp_path), clock=ManualClock(NOW), default_config=defaults)
    manager.open()
    manager.create_topic("t", 1, {"retention.ms": "5"})
    assert manager.topic("t").config.segment_bytes == 12345
    assert manager.topic("t").config.retention_ms == 5
    manager.close()


def test_data_dir_lock_and_node_id(tmp_path):
    manager = opened(tmp_path)
    with pytest.raises(LogDirError):
        opened(tmp_path)
    manager.close()
    with pytest.raises(LogDirError):
        opened(tmp_path, node_id=2)
    with pytest.raises(LogDirError):
        opened(tmp_path, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")
    opened(tmp_path).close()


def test_memory_mode():
    manager = LogManager(None, clock=ManualClock(NOW))
    manager.open()
    topic_id = manager.create_topic("t", 2, {"segment.bytes": "1000"})
    log = manager.partition("t", 0)
    produce(log, 30)
    assert len(log.segments) > 1
    assert log.read(0, 10**6).size == log.size
    assert manager.topic_by_id(topic_id).name == "t"
    manager.checkpoint()
    manager.delete_topic("t")
    assert manager.topics() == []
    manager.close()


def test_open_is_fast(tmp_path):
    manager = opened(tmp_path)
    for t in range(20):
        manager.create_topic(f"topic-{t}", 3, {"segment.bytes": "3000"})
        for p in range(3):
            produce(manager.partition(f"topic-{t}", p), 40)
    manager.create_topic("__consumer_offsets", 50, {"cleanup.policy": "compact"})
    manager.close()
    start = time.perf_counter()
    manager = opened(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(manager.topics()) == 21
    assert manager.partition("topic-7", 2).log_end_offset == 80
    manager.close()
    assert elapsed < 0.25, f"open took {elapsed:.3f}s"


def test_time_comes_from_the_clock(tmp_path):
    """Segments are created at the clock's time, or at the now_ms a call passes; a manager
    without a clock reads no other."""
    clock = ManualClock(NOW)
    manager = LogManager(str(tmp_path), clock=clock)
    manager.open()
    manager.create_topic("t", 1)
    clock.advance(5000)
    manager.create_partitions("t", 2)
    manager.create_topic("u", 1, now_ms=NOW + 7)
    assert manager.partition("t", 0).active_segment.created_ms == NOW
    assert manager.partition("t", 1).active_segment.created_ms == NOW + 5000
    assert manager.partition("u", 0).active_segment.created_ms == NOW + 7
    manager.close()
    clockless = LogManager(None)
    clockless.open()    # nothing to load: no time needed
    with pytest.raises(TypeError):
        clockless.create_topic("t", 1)
    clockless.create_topic("t", 1, now_ms=NOW)
    assert clockless.partition("t", 0).active_segment.created_ms == NOW
