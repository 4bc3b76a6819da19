"""LogManager: all partition logs of the broker's data dir, and the topics they belong to.

The data dir follows Kafka's log dir layout (see log-layout.md):

    <data dir>/
      meta.properties                    version=1, node.id, cluster.id, directory.id
      .lock                              held (flock) while a broker has the dir open
      .kafka_cleanshutdown               written by close(), removed by open()
      recovery-point-offset-checkpoint   per partition: offset known flushed
      log-start-offset-checkpoint        per partition: log start offset (if past segment 0)
      replication-offset-checkpoint      per partition: high watermark
      trioka-topics.json                 topic ids, partition counts and config overrides
      <topic>-<partition>/               segments, partition.metadata, leader-epoch-checkpoint

`trioka-topics.json` is this broker's own file: Kafka keeps topic metadata in its KRaft metadata
log, which a single broker does not need. It is JSON, replaced atomically on every change:

    {"version": 1,
     "topics": {"orders": {"topic_id": "<base64url uuid>", "partitions": 3,
                           "configs": {"retention.ms": "3600000"}}}}

The partition dirs stay the truth about what data exists: a `<topic>-<p>` dir missing from the
file is adopted (topic id from its `partition.metadata`, no config overrides), and a partition
the file lists but whose dir is missing is created empty.

`data_dir=None` runs the very same code over MemoryFiles (`--memory`).
"""

import json
import uuid

from trioka.log.checkpoint import (CLEAN_SHUTDOWN_MARKER, LOG_START_OFFSET_CHECKPOINT,
                                   META_PROPERTIES, PARTITION_METADATA,
                                   RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
                                   CheckpointError, random_uuid, read_meta_properties,
                                   read_offset_checkpoint, read_partition_metadata,
                                   uuid_from_base64, uuid_to_base64, write_clean_shutdown_marker,
                                   write_meta_properties, write_offset_checkpoint,
                                   write_partition_metadata)
from trioka.log.config import LogConfig
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.topics import has_collision, validate_topic_name
from trioka.wire.errors import ErrorCode, KafkaError

TOPICS_FILE = "trioka-topics.json"
TOPICS_FILE_VERSION = 1


class LogDirError(Exception):
    """The data dir cannot be used: locked by another broker, or its meta.properties belongs to
    another node or cluster. The broker must not start."""


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """(topic, partition) of a `<topic>-<partition>` dir name; split at the last '-' since topic
    names may contain '-'."""
    topic, dash, number = name.rpartition("-")
    if not dash or not topic or not number.isdigit():
        return None
    return topic, int(number)


class TopicInfo:
    """A topic: its id, its config overrides (the strings as given) and effective LogConfig,
    and its partition logs (index = partition number)."""

    __slots__ = ("name", "topic_id", "configs", "config", "partitions")

    def __init__(self, name: str, topic_id: uuid.UUID, configs: dict[str, str],
                 config: LogConfig, partitions: list[PartitionLog]):
        self.name = name
        self.topic_id = topic_id
        self.configs = configs
        self.config = config
        self.partitions = partitions

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    def __repr__(self) -> str:
        return f"TopicInfo({self.name!r}, {uuid_to_base64(self.topic_id)}, {len(self.partitions)})"


class LogManager:
    """Owner of every partition log of the broker. Synchronous; call `open()` first.

    `clock` is the node's clock (anything with `wall_ms()`, as trioka.clock.Clock): the time
    partitions are opened and created at, for segment ages, when a call does not pass `now_ms`.
    Nothing in log/ reads the system clock, so a manager without a clock must be given `now_ms`
    by every call that opens or creates partitions."""

    def __init__(self, data_dir: str | None, *, clock=None, node_id: int = 1,
                 default_config: LogConfig | None = None, cluster_id: str | None = None):
        self.data_dir = data_dir
        self.clock = clock
        self.files = DiskFiles(data_dir) if data_dir is not None else MemoryFiles()
        self.node_id = node_id
        self.default_config = default_config or LogConfig()
        self.cluster_id = cluster_id
        self.directory_id: uuid.UUID | None = None
        self.had_clean_shutdown: bool | None = None  # known after open()
        self._topics: dict[str, TopicInfo] = {}
        self._topics_by_id: dict[uuid.UUID, TopicInfo] = {}
        self._opened = False

    # -------------------------------------------------------------------------------- startup

    def open(self, now_ms: int | None = None) -> None:
        """Lock the data dir, read meta.properties (creating it and a cluster id on first start),
        load every topic and partition log. After a clean shutdown nothing is CRC-scanned;
        otherwise each partition recovers from its recovery point."""
        if self._opened:
            return
        files = self.files
        if not files.lock():
            raise LogDirError(f"data dir {self.data_dir} is in use by another broker process")
        try:
            self._load_meta_properties()
            self.had_clean_shutdown = files.exists(CLEAN_SHUTDOWN_MARKER)
            self._load_topics(now_ms)
            # From now on a crash must be seen as unclean.
            files.remove(CLEAN_SHUTDOWN_MARKER)
        except BaseException:
            files.unlock()
            raise
        self._opened = True

    def _load_meta_properties(self) -> None:
        try:
            meta = read_meta_properties(self.files, META_PROPERTIES)
        except CheckpointError as exc:
            raise LogDirError(str(exc)) from exc
        if meta is None:
            self.cluster_id = self.cluster_id or uuid_to_base64(random_uuid())
            self.directory_id = random_uuid()
            write_meta_properties(self.files, META_PROPERTIES, {
                "version": "1",
                "node.id": str(self.node_id),
                "cluster.id": self.cluster_id,
                "directory.id": uuid_to_base64(self.directory_id),
            })
            return
        stored_node = meta.get("node.id", meta.get("broker.id"))
        if stored_node is not None and stored_node != str(self.node_id):
            raise LogDirError(f"data dir {self.data_dir} belongs to node {stored_node}, not "
                              f"{self.node_id}")
        stored_cluster = meta.get("cluster.id")
        if self.cluster_id is not None and stored_cluster not in (None, self.cluster_id):
            raise LogDirError(f"data dir {self.data_dir} belongs to cluster {stored_cluster}, "
                              f"not {self.cluster_id}")
        self.cluster_id = stored_cluster or self.cluster_id or uuid_to_base64(random_uuid())
        if "directory.id" in meta:
            self.directory_id = uuid_from_base64(meta["directory.id"])

    def _now_ms(self, now_ms: int | None) -> int:
        """`now_ms` if the caller gave it, else the clock's wall time."""
        if now_ms is not None:
            return now_ms
        if self.clock is None:
            raise TypeError("a LogManager without a clock needs now_ms")
        return self.clock.wall_ms()

    def _read_checkpoint(self, path: str) -> dict[tuple[str, int], int]:
        # A damaged checkpoint is not fatal: without recovery points every partition is fully
        # recovered; without log start offsets they fall back to the first segment.
        try:
            return read_offset_checkpoint(self.files, path)
        except CheckpointError:
            return {}

    def _read_topics_file(self) -> dict:
        try:
            document = json.loads(self.files.read_small(TOPICS_FILE))
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}  # rebuilt from the partition dirs
        if not isinstance(document, dict) or document.get("version") != TOPICS_FILE_VERSION:
            return {}
        return document.get("topics", {})

    def _load_topics(self, now_ms: int | None) -> None:
        files = self.files
        clean = self.had_clean_shutdown
        recovery_points = self._read_checkpoint(RECOVERY_POINT_CHECKPOINT)
        log_start_offsets = self._read_checkpoint(LOG_START_OFFSET_CHECKPOINT)
        stored = self._read_topics_file()
        self._topics = {}
        self._topics_by_id = {}
        found: dict[str, set[int]] = {}
        for name in files.listdir(""):
            if name.endswith("-delete"):
                files.remove_tree(name)  # a topic deletion interrupted by a crash
                continue
            parsed = parse_partition_dir_name(name)
            if parsed is None or not files.is_dir(name):
                continue
            found.setdefault(parsed[0], set()).add(parsed[1])
        changed = False
        for name in sorted(set(stored) | set(found)):
            entry = stored.get(name, {})
            topic_id = None
            if entry.get("topic_id"):
                try:
                    topic_id = uuid_from_base64(entry["topic_id"])
                except CheckpointError:
                    topic_id = None
            if topic_id is None:
                topic_id = self._topic_id_from_dirs(name, found.get(name, ()))
                changed = True
            overrides = {str(k): str(v) for k, v in entry.get("configs", {}).items()}
            try:
                config = LogConfig.from_configs(overrides, base=self.default_config)
            except KafkaError:
                overrides, config = {}, self.default_config
                changed = True
            count = max([int(entry.get("partitions", 0))] + [p + 1 for p in found.get(name, ())])
            if name not in stored or count != entry.get("partitions"):
                changed = True
            partitions = []
            if count:
                now_ms = self._now_ms(now_ms)   # once, for every partition opened
            for index in range(count):
                directory = partition_dir_name(name, index)
                if not files.exists(f"{directory}/{PARTITION_METADATA}"):
                    files.mkdir(directory)
                    write_partition_metadata(files, f"{directory}/{PARTITION_METADATA}", topic_id)
                partitions.append(PartitionLog(
                    name, index, directory, files, config,
                    recovery_point=recovery_points.get((name, index), 0),
                    log_start_offset=log_start_offsets.get((name, index), 0),
                    clean_shutdown=clean, now_ms=now_ms))
            self._register(TopicInfo(name, topic_id, overrides, config, partitions))
        if changed:
            self._write_topics_file()

    def _topic_id_from_dirs(self, name: str, partitions) -> uuid.UUID:
        for index in sorted(partitions):
            try:
                topic_id = read_partition_metadata(
                    self.files, f"{partition_dir_name(name, index)}/{PARTITION_METADATA}")
            except CheckpointError:
                continue
            if topic_id is not None:
                return topic_id
        return random_uuid()

    def _register(self, topic: TopicInfo) -> None:
        self._topics[topic.name] = topic
        self._topics_by_id[topic.topic_id] = topic

    def _write_topics_file(self) -> None:
        document = {"version": TOPICS_FILE_VERSION, "topics": {
            topic.name: {"topic_id": uuid_to_base64(topic.topic_id),
                         "partitions": topic.num_partitions,
                         "configs": topic.configs}
            for topic in self._topics.values()}}
        text = json.dumps(document, indent=1, sort_keys=True)
        self.files.write_atomic(TOPICS_FILE, text.encode("utf-8"))

    # ------------------------------------------------------------------------------- shutdown

    def checkpoint(self) -> None:
        """Periodic (Kafka: every log.flush.offset.checkpoint.interval.ms, default 60 s): fsync
        what was appended since the last time, then write the recovery points, log start offsets
        and high watermarks."""
        for partition in self.all_partitions():
            partition.flush()
        self._write_checkpoints()

    def _write_checkpoints(self) -> None:
        recovery_points = {}
        log_start_offsets = {}
        high_watermarks = {}
        for partition in self.all_partitions():
            key = (partition.topic, partition.partition)
            recovery_points[key] = partition.recovery_point
            high_watermarks[key] = partition.high_watermark
            if partition.log_start_offset > partition.segments[0].base_offset:
                log_start_offsets[key] = partition.log_start_offset
        write_offset_checkpoint(self.files, RECOVERY_POINT_CHECKPOINT, recovery_points)
        write_offset_checkpoint(self.files, LOG_START_OFFSET_CHECKPOINT, log_start_offsets)
        write_offset_checkpoint(self.files, REPLICATION_OFFSET_CHECKPOINT, high_watermarks)

    def close(self) -> None:
        """Clean shutdown: flush and close every log, write the checkpoints, then the
        clean-shutdown marker (so the next open skips recovery), and release the lock."""
        if not self._opened:
            return
        for partition in self.all_partitions():
            partition.close()
        self._write_checkpoints()
        write_clean_shutdown_marker(self.files, CLEAN_SHUTDOWN_MARKER)
        self.files.unlock()
        self._opened = False

    # --------------------------------------------------------------------------------- topics

    def topic(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._topics_by_id.get(topic_id)

    def topics(self) -> list[TopicInfo]:
        return list(self._topics.values())

    def partition(self, topic: str, index: int) -> PartitionLog:
        """The log of topic-partition; KafkaError(UNKNOWN_TOPIC_OR_PARTITION) if there is none."""
        info = self._topics.get(topic)
        if info is None or not 0 <= index < len(info.partitions):
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"this server does not host {topic}-{index}")
        return info.partitions[index]

    def all_partitions(self):
        for info in self._topics.values():
            yield from info.partitions

    def create_topic(self, name: str, num_partitions: int, configs: dict | None = None, *,
                     now_ms: int | None = None) -> uuid.UUID:
        """Create a topic with a new random topic id; returns the id.

        INVALID_TOPIC_EXCEPTION (illegal name, or one that differs from an existing topic only
        by '.' vs '_', which Kafka forbids because metric names would collide),
        TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS (< 1), INVALID_CONFIG (unknown key, bad
        value). Config entries whose value is None are ignored."""
        validate_topic_name(name)
        if name in self._topics:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
        for existing in self._topics:
            if has_collision(name, existing):
                raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                                 f"topic {name!r} collides with existing topic {existing!r}")
        if num_partitions < 1:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"number of partitions must be at least 1, got {num_partitions}")
        overrides = {str(k): str(v) for k, v in (configs or {}).items() if v is not None}
        config = LogConfig.from_configs(overrides, base=self.default_config)
        topic_id = random_uuid()
        while topic_id in self._topics_by_id:
            topic_id = random_uuid()
        now_ms = self._now_ms(now_ms)
        topic = TopicInfo(name, topic_id, overrides, config, [])
        for index in range(num_partitions):
            topic.partitions.append(self._new_partition(topic, index, now_ms))
        self._register(topic)
        self._write_topics_file()
        return topic_id

    def _new_partition(self, topic: TopicInfo, index: int, now_ms: int) -> PartitionLog:
        directory = partition_dir_name(topic.name, index)
        if self.files.exists(directory):
            self.files.remove_tree(directory)  # left over from an interrupted deletion
        self.files.mkdir(directory)
        write_partition_metadata(self.files, f"{directory}/{PARTITION_METADATA}", topic.topic_id)
        return PartitionLog(topic.name, index, directory, self.files, topic.config,
                            clean_shutdown=True, now_ms=now_ms)

    def create_partitions(self, name: str, new_total: int, *, now_ms: int | None = None) -> None:
        """CreatePartitions: grow the topic to `new_total` partitions.
        UNKNOWN_TOPIC_OR_PARTITION, or INVALID_PARTITIONS if new_total is not larger."""
        topic = self._topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}")
        current = topic.num_partitions
        if new_total == current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"topic {name!r} already has {current} partitions")
        if new_total < current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"topic {name!r} has {current} partitions; the count can only grow, "
                             f"{new_total} requested")
        now_ms = self._now_ms(now_ms)
        for index in range(current, new_total):
            topic.partitions.append(self._new_partition(topic, index, now_ms))
        self._write_topics_file()

    def delete_topic(self, name: str) -> uuid.UUID:
        """Delete a topic and its data; returns its id. As Kafka does, each partition dir is
        first renamed to `<topic>-<p>.<random uuid hex>-delete` (so a crash midway leaves no
        half-deleted partition that could be loaded again), then removed."""
        topic = self._topics.pop(name, None)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}")
        self._topics_by_id.pop(topic.topic_id, None)
        self._write_topics_file()
        for partition in topic.partitions:
            partition.close(flush=False)
            suffix = f"-{partition.partition}.{uuid.uuid4().hex}-delete"
            doomed = name[:255 - len(suffix)] + suffix
            self.files.rename(partition.directory, doomed)
            self.files.remove_tree(doomed)
        return topic.topic_id

    def set_default_config(self, default_config: LogConfig) -> None:
        """New broker-level defaults (a dynamic broker config change): every topic's effective
        config is its overrides over the new defaults."""
        self.default_config = default_config
        for topic in self._topics.values():
            topic.config = LogConfig.from_configs(topic.configs, base=default_config)
            for partition in topic.partitions:
                partition.update_config(topic.config)

    def set_topic_configs(self, name: str, configs: dict) -> LogConfig:
        """Replace the topic's config overrides (AlterConfigs; an incremental alter computes the
        new full set first). INVALID_CONFIG leaves everything unchanged. Returns the effective
        config, which applies to the partitions' next appends and rolls."""
        topic = self._topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}")
        overrides = {str(k): str(v) for k, v in configs.items() if v is not None}
        config = LogConfig.from_configs(overrides, base=self.default_config)
        topic.configs = overrides
        topic.config = config
        for partition in topic.partitions:
            partition.update_config(config)
        self._write_topics_file()
        return config

    def delete_old_segments(self, now_ms: int) -> int:
        """Retention pass over every partition (Kafka: every log.retention.check.interval.ms).
        Returns the number of segments deleted."""
        return sum(p.delete_old_segments(now_ms) for p in self.all_partitions())
