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
      trioka-topics.journal              the topic changes made since trioka-topics.json
      <topic>-<partition>/               segments, partition.metadata, leader-epoch-checkpoint

`trioka-topics.json` is this broker's own file: Kafka keeps topic metadata in its KRaft metadata
log, which a single broker does not need. It is JSON, replaced atomically (temp file, fsync,
rename, directory fsync):

    {"version": 1,
     "topics": {"orders": {"topic_id": "<base64url uuid>", "partitions": 3,
                           "configs": {"retention.ms": "3600000"}}}}

A change of one topic (created, grown, its configs altered, deleted) is not a rewrite of that
file but one line appended to `trioka-topics.journal` and fsync'd before the change is
acknowledged, as Kafka appends a record to its metadata log: the topic's whole entry, or
`{"topic": name, "deleted": true}`. Creating N topics thus writes O(N) bytes, where rewriting the
file each time wrote O(N^2). Opening replays the journal over the file. Once the journal holds
as many lines as the file has topics, and at every start and clean shutdown, the file is
rewritten with everything and the journal emptied, in that order: a crash between the two
replays lines the file already has, which changes nothing. A line cut short by a crash was never
acknowledged and is skipped.

The partition dirs stay the truth about what data exists: a `<topic>-<p>` dir missing from the
file is adopted (topic id from its `partition.metadata`, no config overrides), and a partition
the file lists but whose dir is missing is created empty.

Nothing in the file is lost to a value this broker cannot read: an override that fails validation
stays in `configs` verbatim (the topic runs on the default meanwhile), a file that cannot be read
at all is left as it is and set aside as `trioka-topics.json.unreadable` before it is next
rewritten, and a topic whose overrides are so unknown is written with `"configs_unknown": true`.
Retention leaves such a topic alone (a default retention.ms or cleanup.policy in place of its own
could delete what it was meant to keep) until its configs are altered.

`data_dir=None` runs the very same code over MemoryFiles (`--memory`).
"""

import json
import logging
import uuid

from trioka.log.checkpoint import (CLEAN_SHUTDOWN_MARKER, LEADER_EPOCH_CHECKPOINT,
                                   LOG_START_OFFSET_CHECKPOINT, META_PROPERTIES,
                                   PARTITION_METADATA,
                                   RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
                                   CheckpointError, random_uuid, read_meta_properties,
                                   read_offset_checkpoint, read_partition_metadata,
                                   uuid_from_base64, uuid_to_base64, write_clean_shutdown_marker,
                                   write_leader_epoch_checkpoint, write_meta_properties,
                                   write_offset_checkpoint, write_partition_metadata)
from trioka.log.config import LogConfig
from trioka.log.files import DiskFiles, LogDirFailureChannel, MemoryFiles
from trioka.log.partition import INITIAL_LEADER_EPOCH, PartitionLog
from trioka.log.topics import has_collision, validate_topic_name
from trioka.wire.errors import ErrorCode, KafkaError

TOPICS_FILE = "trioka-topics.json"
TOPICS_FILE_VERSION = 1
TOPICS_JOURNAL = "trioka-topics.journal"
# The journal is folded into the file once it has as many lines as this and as the file has
# topics: the file is rewritten after as many changes as it holds, O(1) bytes a change.
TOPICS_JOURNAL_MIN_LINES = 64
# Where an unreadable trioka-topics.json is kept, verbatim, before the file is next replaced.
UNREADABLE_TOPICS_FILE = TOPICS_FILE + ".unreadable"

log = logging.getLogger("trioka.log")


class LogDirError(Exception):
    """The data dir cannot be used: locked by another broker, or its meta.properties belongs to
    another node or cluster. The broker must not start."""


# The KRaft metadata log's directory (controller/quorum_controller.py), which may share the data
# dir (`metadata.log.dir` defaults to it): Kafka's LogManager does not load it as a topic.
METADATA_PARTITION_DIR = "__cluster_metadata-0"


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
    and its partition logs (index = partition number).

    `ignored_configs` are overrides stored in trioka-topics.json that this broker cannot apply
    (an unknown key, a value that fails validation): the topic runs on its defaults for them,
    but they stay in the file verbatim until an AlterConfigs sets those keys, so that a broker
    that cannot read one value never writes the topic back with less than it had.
    `overrides_unknown` is true while some of its stored overrides could not be applied (those,
    or all of them when the file could not be read): retention then leaves the topic alone,
    since a default in place of its own retention.ms or cleanup.policy could delete what it was
    meant to keep."""

    __slots__ = ("name", "topic_id", "configs", "config", "partitions", "ignored_configs",
                 "overrides_unknown")

    def __init__(self, name: str, topic_id: uuid.UUID, configs: dict[str, str],
                 config: LogConfig, partitions: list[PartitionLog],
                 ignored_configs: dict | None = None, overrides_unknown: bool = False):
        self.name = name
        self.topic_id = topic_id
        self.configs = configs
        self.config = config
        self.partitions = partitions
        self.ignored_configs = ignored_configs or {}
        self.overrides_unknown = overrides_unknown

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def logs(self) -> list[PartitionLog]:
        """The partition logs this node holds: all of them on a single node; in a cluster only
        those it has a replica of (`partitions` has None for the others)."""
        return [partition for partition in self.partitions if partition is not None]

    def __repr__(self) -> str:
        return f"TopicInfo({self.name!r}, {uuid_to_base64(self.topic_id)}, {len(self.partitions)})"


class TopicCreation:
    """A topic being created with its disk work in a worker thread (Kafka's controller answers
    CreateTopics only once the topic's records are durable; its brokers then create the logs):
    LogManager.begin_topic_creation checks it and reserves its name, `make_dirs` (blocking, for
    a worker thread) makes its partition dirs, LogManager.end_topic_creation registers it."""
    __slots__ = ("name", "topic_id", "overrides", "config", "num_partitions", "files",
                 "created_ms", "dirs_made", "partitions", "first")

    def __init__(self, name: str, topic_id: uuid.UUID, overrides: dict, config: LogConfig,
                 num_partitions: int, files, created_ms: int, first: int = 0):
        self.name = name
        self.topic_id = topic_id
        self.overrides = overrides
        self.config = config
        self.num_partitions = num_partitions
        self.files = files
        self.created_ms = created_ms
        self.dirs_made = False
        self.partitions: list[PartitionLog] = []
        # The first partition to make: 0 for a new topic, the current count when one grows
        # (CreatePartitions: LogManager.begin_partition_creation).
        self.first = first

    def make_dirs(self) -> None:
        """Each partition dir (make_partition_dir), the data dir flushed for the new dirs
        themselves (Kafka's LogManager.createLog flushes the parent dir), then the partition
        logs, which create their first segment's files. It touches nothing but files and objects
        no one else sees until end_topic_creation registers them; an I/O error takes the dir
        offline."""
        files = self.files
        indexes = range(self.first, self.num_partitions)
        directories = [make_partition_dir(files, self.name, index, self.topic_id)
                       for index in indexes]
        data_dir = files.open_directory("")
        try:
            data_dir.flush()
        finally:
            data_dir.close()
        self.partitions = [PartitionLog(self.name, index, directory, files, self.config,
                                        clean_shutdown=True, now_ms=self.created_ms)
                           for index, directory in zip(indexes, directories)]
        self.dirs_made = True


class TopicDeletion:
    """A deleted topic's partition dirs, renamed `<topic>-<p>.<uuid hex>-delete` and removed by
    `rename_dirs` and `remove_dirs` (blocking, for a worker thread: they touch nothing but
    files). LogManager.begin_topic_deletion makes one; end_topic_deletion frees the name once
    the dirs are renamed. An I/O error takes the dir offline; a restart removes any `-delete`
    dir left."""
    __slots__ = ("name", "topic_id", "files", "moves", "renamed", "open_logs", "flush_due")

    def __init__(self, name: str, topic_id: uuid.UUID, files, moves: list[tuple[str, str]],
                 open_logs: list, flush_due: set):
        self.name = name
        self.topic_id = topic_id
        self.files = files
        self.moves = moves              # (partition dir, its `-delete` name)
        self.renamed: list[str] = []    # the `-delete` dirs made so far
        self.open_logs = open_logs      # the topic's logs not closed yet (close_logs)
        self.flush_due = flush_due      # the manager's logs with a flush due

    def close_logs(self, limit: int | None = None) -> bool:
        """Close up to `limit` of the topic's logs (None: all) and wake their waiting fetches,
        which look the partition up again: UNKNOWN_TOPIC_OR_PARTITION. True once every log is
        closed, which the renames wait for. (About 20 us a partition, on the event loop: the
        broker closes a topic of thousands in slices.)"""
        n = len(self.open_logs) if limit is None else min(limit, len(self.open_logs))
        for partition in self.open_logs[:n]:
            self.flush_due.discard(partition)
            partition.close(flush=False)
            partition.wake_waiters()
        del self.open_logs[:n]
        return not self.open_logs

    def rename_dirs(self) -> None:
        for directory, doomed in self.moves:
            self.files.rename(directory, doomed)
            self.renamed.append(doomed)

    def remove_dirs(self, others: list[str] = ()) -> None:
        """Remove the renamed dirs, and `others` (renamed dirs of partitions removed before,
        LogManager.take_deleted_dirs)."""
        for doomed in (*self.renamed, *others):
            self.files.remove_tree(doomed)


def make_partition_dir(files, topic: str, index: int, topic_id: uuid.UUID) -> str:
    """A new partition's dir (replacing one left by an interrupted deletion) with its
    `partition.metadata` (whose directory fsync makes every name in the dir durable) and its
    leader-epoch checkpoint: becoming the leader of a new partition starts its leader epoch at
    offset 0 (Kafka's makeLeader -> maybeAssignEpochStartOffset), here and not at the first
    append, so produce never writes this checkpoint. Returns the dir's path."""
    directory = partition_dir_name(topic, index)
    if files.exists(directory):
        files.remove_tree(directory)
    files.mkdir(directory)
    write_partition_metadata(files, f"{directory}/{PARTITION_METADATA}", topic_id)
    write_leader_epoch_checkpoint(files, f"{directory}/{LEADER_EPOCH_CHECKPOINT}",
                                  [(INITIAL_LEADER_EPOCH, 0)])
    return directory


class LogManager:
    """Owner of every partition log of the broker. Synchronous; call `open()` first.

    `clock` is the node's clock (anything with `wall_ms()`, as trioka.clock.Clock): the time
    partitions are opened and created at, for segment ages, when a call does not pass `now_ms`.
    Nothing in log/ reads the system clock, so a manager without a clock must be given `now_ms`
    by every call that opens or creates partitions."""

    def __init__(self, data_dir: str | None, *, clock=None, node_id: int = 1,
                 default_config: LogConfig | None = None, cluster_id: str | None = None,
                 replicated: bool = False):
        self.data_dir = data_dir
        # A node of a cluster: the metadata log is the registry of topics (no topics file), and
        # the node holds only the partitions it has a replica of (see host_partition).
        self.replicated = replicated
        self.cluster_id_made_up = False   # see adopt_cluster_id
        self._stored_offsets: dict[str, dict[tuple[str, int], int]] = {}
        self.clock = clock
        self.files = DiskFiles(data_dir) if data_dir is not None else MemoryFiles()
        # Kafka's LogDirFailureChannel: every I/O error of the files takes the dir offline.
        self.failure_channel: LogDirFailureChannel = self.files.failure_channel
        self.node_id = node_id
        self.default_config = default_config or LogConfig()
        self.cluster_id = cluster_id
        self.directory_id: uuid.UUID | None = None
        self.had_clean_shutdown: bool | None = None  # known after open()
        self._topics: dict[str, TopicInfo] = {}
        self._topics_by_id: dict[uuid.UUID, TopicInfo] = {}
        # The bytes of a trioka-topics.json this broker could not wholly read, kept aside
        # (UNREADABLE_TOPICS_FILE) before the file is next replaced.
        self._unreadable_topics_file: bytes | None = None
        # The open topics journal (appended to) and how many changes it holds.
        self._journal = None
        self._journal_lines = 0
        self._topics_in_file = 0
        self._opened = False
        # Partitions due for a flush, for the broker's flusher (see schedule_flushes); it sets
        # `flush_wakeup` (anything with `set()`) to be told when one is added.
        self.flush_due: set[PartitionLog] = set()
        self.flush_wakeup = None
        self._flushes_scheduled = False
        # Topics being created (TopicCreation), by name: reserved until registered.
        self._creating: dict[str, TopicCreation] = {}
        # Dirs of deleted partitions, renamed `...-delete`, for the caller to remove.
        self._deleted_dirs: list[str] = []
        # Topics whose dirs are being renamed in a worker thread (TopicDeletion), by name.
        self._deleting: dict[str, TopicDeletion] = {}

    # -------------------------------------------------------------------------------- startup

    def open(self, now_ms: int | None = None) -> None:
        """Lock the data dir, read meta.properties (creating it and a cluster id on first start),
        load every topic and partition log. After a clean shutdown nothing is CRC-scanned;
        otherwise each partition recovers from its recovery point. An I/O error while loading
        is LogDirError: the broker does not start (Kafka shuts down when all its log dirs
        failed)."""
        if self._opened:
            return
        files = self.files
        if not files.lock():
            raise LogDirError(f"data dir {self.data_dir} is in use by another broker process")
        try:
            self._load_meta_properties()
            self.had_clean_shutdown = files.exists(CLEAN_SHUTDOWN_MARKER)
            if self.replicated:
                # Logs open as the metadata assigns them (host_partition), from these.
                self._stored_offsets = {
                    path: self._read_checkpoint(path) for path in (
                        RECOVERY_POINT_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT,
                        REPLICATION_OFFSET_CHECKPOINT)}
            else:
                self._load_topics(now_ms)
            # From now on a crash must be seen as unclean.
            files.remove(CLEAN_SHUTDOWN_MARKER)
        except KafkaError as exc:
            files.unlock()
            if exc.code != ErrorCode.KAFKA_STORAGE_ERROR:
                raise
            raise LogDirError(f"data dir {self.data_dir} cannot be loaded: {exc.message}") \
                from exc
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
            # A cluster id made up here (none configured) may still be replaced by the one of
            # the cluster this node joins (adopt_cluster_id).
            self.cluster_id_made_up = not self.cluster_id
            self.cluster_id = self.cluster_id or uuid_to_base64(random_uuid())
            self.directory_id = random_uuid()
            self._write_meta_properties()
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

    def _write_meta_properties(self) -> None:
        write_meta_properties(self.files, META_PROPERTIES, {
            "version": "1",
            "node.id": str(self.node_id),
            "cluster.id": self.cluster_id,
            "directory.id": uuid_to_base64(self.directory_id),
        })

    def adopt_cluster_id(self, cluster_id: str) -> None:
        """A node joining a cluster with a log dir formatted just now, without a configured
        cluster.id, takes the cluster's (what `kafka-storage format -t` does for a Kafka
        node). A dir that already belongs to a cluster never changes hands: LogDirError."""
        if cluster_id == self.cluster_id:
            return
        if not self.cluster_id_made_up:
            raise LogDirError(f"data dir {self.data_dir} belongs to cluster {self.cluster_id}, "
                              f"not to the controller's cluster {cluster_id}")
        self.cluster_id = cluster_id
        self._write_meta_properties()
        self.cluster_id_made_up = False

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
        """The topics of trioka-topics.json. A file that cannot be read (not JSON, another
        version) gives none: the topics are adopted from their partition dirs, and the file is
        kept as it is (then aside, before it is next replaced)."""
        try:
            raw = self.files.read_small(TOPICS_FILE)
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("version") != TOPICS_FILE_VERSION:
                raise ValueError(f"not a version {TOPICS_FILE_VERSION} topics document")
            topics = document.get("topics", {})
            if not isinstance(topics, dict):
                raise ValueError("'topics' is not an object")
        except ValueError as exc:
            log.warning("%s cannot be read (%s): topics are loaded from their partition dirs "
                        "without their config overrides; the file is kept as it is",
                        TOPICS_FILE, exc)
            self._unreadable_topics_file = raw
            return {}
        return topics

    def _entry_damaged(self, name: str, what: str) -> None:
        """Part of a topic's entry in trioka-topics.json cannot be used: say so, and keep the
        file's bytes so that they are set aside before it is replaced."""
        log.warning("topic %s: %s in %s; the file is kept aside as %s before it is next "
                    "written", name, what, TOPICS_FILE, UNREADABLE_TOPICS_FILE)
        if self._unreadable_topics_file is None:
            self._unreadable_topics_file = self.files.read_small(TOPICS_FILE)

    def _stored_overrides(self, name: str, stored) -> tuple[dict, dict, bool]:
        """(overrides, ignored, complete): the topic's stored config overrides that pass
        validation, as strings; those that do not, verbatim (each named in a warning); whether
        all of them could be applied."""
        if not isinstance(stored, dict):
            self._entry_damaged(name, f"'configs' is not an object ({stored!r}); retention "
                                      f"leaves the topic alone until its configs are altered")
            return {}, {}, False
        overrides, ignored = {}, {}
        for key, value in stored.items():
            try:
                LogConfig.from_configs({str(key): str(value)}, base=self.default_config)
            except KafkaError as exc:
                log.warning("topic %s: config override %s=%r in %s is ignored: %s; the file "
                            "keeps the value, and retention leaves the topic alone until its "
                            "configs are altered", name, key, value, TOPICS_FILE, exc.message)
                ignored[str(key)] = value
                continue
            overrides[str(key)] = str(value)
        return overrides, ignored, not ignored

    def _load_topics(self, now_ms: int | None) -> None:
        files = self.files
        clean = self.had_clean_shutdown
        recovery_points = self._read_checkpoint(RECOVERY_POINT_CHECKPOINT)
        log_start_offsets = self._read_checkpoint(LOG_START_OFFSET_CHECKPOINT)
        stored = self._replay_topics_journal(self._read_topics_file())
        unreadable = self._unreadable_topics_file is not None
        self._topics = {}
        self._topics_by_id = {}
        found: dict[str, set[int]] = {}
        for name in files.listdir(""):
            if name.endswith("-delete"):
                files.remove_tree(name)  # a topic deletion interrupted by a crash
                continue
            parsed = parse_partition_dir_name(name)
            if parsed is None or name == METADATA_PARTITION_DIR or not files.is_dir(name):
                continue   # not a partition; the KRaft metadata log is the controller's
            found.setdefault(parsed[0], set()).add(parsed[1])
        where = self.data_dir if self.data_dir is not None else "memory"
        count = sum(len(partitions) for partitions in found.values())
        if not count:
            log.info("No logs found to be loaded in %s", where)
        elif clean:
            log.info("Skipping recovery of %d logs from %s since clean shutdown file was found",
                     count, where)
        else:
            log.info("Recovering %d logs from %s since no clean shutdown file was found",
                     count, where)
        changed = self._journal_lines > 0   # folded into the file now
        for name in sorted(set(stored) | set(found)):
            entry = stored.get(name, {})
            if not isinstance(entry, dict):
                self._entry_damaged(name, f"the entry is not an object ({entry!r})")
                entry = {}
            topic_id = None
            if entry.get("topic_id"):
                try:
                    topic_id = uuid_from_base64(str(entry["topic_id"]))
                except CheckpointError:
                    self._entry_damaged(name, f"topic_id {entry['topic_id']!r} is not a UUID")
            if topic_id is None:
                topic_id = self._topic_id_from_dirs(name, found.get(name, ()))
                changed = True
            overrides, ignored, complete = self._stored_overrides(name,
                                                                  entry.get("configs", {}))
            if (name not in stored and unreadable) or entry.get("configs_unknown") is True:
                # Its overrides, if it had any, were in a file that could not be read.
                log.warning("topic %s: its config overrides are unknown (%s could not be read; "
                            "see %s); retention leaves the topic alone until its configs are "
                            "altered", name, TOPICS_FILE, UNREADABLE_TOPICS_FILE)
                complete = False
            config = LogConfig.from_configs(overrides, base=self.default_config)
            stored_count = entry.get("partitions", 0)
            if type(stored_count) is not int or stored_count < 0:
                self._entry_damaged(name, f"partitions {stored_count!r} is not a count")
                stored_count = 0
            count = max([stored_count] + [p + 1 for p in found.get(name, ())])
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
            self._register(TopicInfo(name, topic_id, overrides, config, partitions, ignored,
                                     overrides_unknown=not complete))
        # The file is rewritten only to add what it lacked; one that could not be wholly read is
        # kept as it is until something changes (and then kept aside first).
        if changed and self._unreadable_topics_file is None:
            self._write_topics_file()
        log.info("Loaded %d logs in %s", sum(t.num_partitions for t in self._topics.values()),
                 where)

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
        if self._flushes_scheduled:
            for partition in topic.logs:
                partition.on_flush_due = self._flush_due

    def _write_topics_file(self) -> None:
        if self._unreadable_topics_file is not None:
            self.files.write_atomic(UNREADABLE_TOPICS_FILE, self._unreadable_topics_file)
            log.warning("the %s this broker could not wholly read is kept as %s", TOPICS_FILE,
                        UNREADABLE_TOPICS_FILE)
            self._unreadable_topics_file = None
        document = {"version": TOPICS_FILE_VERSION, "topics": {
            topic.name: self._topic_entry(topic) for topic in self._topics.values()}}
        text = json.dumps(document, indent=1, sort_keys=True)
        self.files.write_atomic(TOPICS_FILE, text.encode("utf-8"))
        self._empty_topics_journal()

    @staticmethod
    def _topic_entry(topic: TopicInfo) -> dict:
        """A topic as trioka-topics.json and its journal keep it."""
        entry = {"topic_id": uuid_to_base64(topic.topic_id), "partitions": topic.num_partitions,
                 "configs": {**topic.ignored_configs, **topic.configs}}
        if topic.overrides_unknown:
            entry["configs_unknown"] = True
        return entry

    # The topics journal (module docstring): one fsync'd line per topic change.

    def _replay_topics_journal(self, stored: dict) -> dict:
        """`stored` (the topics of trioka-topics.json) with the journal's lines applied in
        order; lines that are not whole JSON objects (cut short by a crash) are skipped."""
        self._journal_lines = 0
        self._topics_in_file = len(stored)
        try:
            raw = self.files.read_small(TOPICS_JOURNAL)
        except FileNotFoundError:
            return stored
        stored = dict(stored)
        for line in raw.split(b"\n"):
            if not line:
                continue
            try:
                change = json.loads(line)
                name = change["topic"]
            except (ValueError, TypeError, KeyError):
                log.warning("skipping a damaged line of %s (a write cut short by a crash)",
                            TOPICS_JOURNAL)
                continue
            self._journal_lines += 1
            if change.get("deleted"):
                stored.pop(name, None)
            else:
                stored[name] = {k: v for k, v in change.items() if k != "topic"}
        return stored

    def _record_topic(self, name: str) -> None:
        """Make the current state of topic `name` (or its deletion) durable: one line appended
        to the journal and fsync'd; the file is rewritten instead once the journal is longer
        the file."""
        if self._journal_lines >= max(TOPICS_JOURNAL_MIN_LINES, self._topics_in_file):
            self._write_topics_file()
            return
        topic = self._topics.get(name)
        change = {"topic": name, **self._topic_entry(topic)} if topic is not None else \
            {"topic": name, "deleted": True}
        if self._journal is None:
            if not self.files.exists(TOPICS_JOURNAL):
                self.files.write_atomic(TOPICS_JOURNAL, b"")   # its name made durable first
            self._journal = self.files.open(TOPICS_JOURNAL)
            if self._journal.size and self._journal.pread(self._journal.size - 1, 1) != b"\n":
                self._journal.append(b"\n")   # end a line a crash cut short, so it stays apart
        self._journal.append(json.dumps(change, sort_keys=True).encode("utf-8") + b"\n")
        self._journal.flush()
        self._journal_lines += 1

    def _empty_topics_journal(self) -> None:
        """After the file was rewritten with everything: start an empty journal."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._journal_lines or self.files.exists(TOPICS_JOURNAL):
            self.files.write_atomic(TOPICS_JOURNAL, b"")
        self._journal_lines = 0
        self._topics_in_file = len(self._topics)

    # ------------------------------------------------------------------------------- flushing

    def schedule_flushes(self) -> None:
        """The broker's flusher runs from now on: a partition due for a flush (an append left
        flush.messages unflushed, or it rolled a segment) is added to `flush_due` and
        `flush_wakeup` is set; such an append's high watermark waits for that flush, as Kafka's
        does. Without a flusher (a log manager used on its own) nothing waits."""
        self._flushes_scheduled = True
        for info in self._topics.values():
            for partition in info.logs:
                partition.on_flush_due = self._flush_due

    def _flush_due(self, partition: PartitionLog) -> None:
        self.flush_due.add(partition)
        if self.flush_wakeup is not None:
            self.flush_wakeup.set()

    def take_flush_due(self) -> list[PartitionLog]:
        """The partitions due for a flush since the last call (see schedule_flushes)."""
        due, self.flush_due = self.flush_due, set()
        return [partition for partition in due if not self.failure_channel.offline]

    def flush_due_by_time(self, now_ms: int) -> list[PartitionLog]:
        """Kafka's flushDirtyLogs test: the partitions with unflushed messages whose last flush
        is at least their flush.ms old."""
        return [partition for partition in self.all_partitions()
                if partition.unflushed_messages > 0
                and now_ms - partition.last_flush_ms >= partition.config.flush_ms]

    # ------------------------------------------------------------------------------- shutdown

    def checkpoint(self) -> None:
        """fsync what was appended since the last flush, then write the recovery points, log
        start offsets and high watermarks, all here and now (tests, tools). The broker does the
        same every log.flush.offset.checkpoint.interval.ms with the disk work in worker threads
        (BrokerState.checkpoint). Nothing is written to an offline dir (Kafka checkpoints only
        its live dirs)."""
        if self.failure_channel.offline:
            return
        for partition in self.all_partitions():
            partition.flush()
        self._write_checkpoints()

    def checkpoint_offsets(self) -> dict[str, dict[tuple[str, int], int]] | None:
        """What the checkpoint files hold now, by file: the recovery points, the log start
        offsets (past their first segment) and the high watermarks. None once the dir is
        offline (nothing is written to it)."""
        if self.failure_channel.offline:
            return None
        recovery_points = {}
        log_start_offsets = {}
        high_watermarks = {}
        for partition in self.all_partitions():
            key = (partition.topic, partition.partition)
            recovery_points[key] = partition.recovery_point
            high_watermarks[key] = partition.high_watermark
            if partition.log_start_offset > partition.segments[0].base_offset:
                log_start_offsets[key] = partition.log_start_offset
        return {RECOVERY_POINT_CHECKPOINT: recovery_points,
                LOG_START_OFFSET_CHECKPOINT: log_start_offsets,
                REPLICATION_OFFSET_CHECKPOINT: high_watermarks}

    def write_checkpoint_offsets(self, offsets: dict[str, dict[tuple[str, int], int]]) -> None:
        """Write `checkpoint_offsets()`, each file replaced atomically (temp file, fsync,
        rename, directory fsync): blocking, so the broker calls it from a worker thread. It
        reads nothing but `offsets`; a failure takes the dir offline (KAFKA_STORAGE_ERROR)."""
        for path, entries in offsets.items():
            write_offset_checkpoint(self.files, path, entries)

    def _write_checkpoints(self) -> None:
        offsets = self.checkpoint_offsets()
        if offsets is not None:
            self.write_checkpoint_offsets(offsets)

    def close(self) -> None:
        """Clean shutdown: flush and close every log, write the checkpoints, then the
        clean-shutdown marker (so the next open skips recovery), and release the lock.
        An offline dir gets none of that: its files are closed as they are, and without the
        marker the next start recovers it."""
        if not self._opened:
            return
        if self._journal_lines and not self.failure_channel.offline:
            self._write_topics_file()   # a clean shutdown leaves every topic in the file
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self.failure_channel.offline:
            for info in self._topics.values():
                for partition in info.logs:
                    partition.close_handlers()
            log.warning("Log dir %s was offline: no checkpoint or clean-shutdown marker is "
                        "written, so the next start recovers it", self.failure_channel.log_dir)
            self.files.unlock()
            self._opened = False
            return
        for partition in self.all_partitions():
            partition.close()
        self._write_checkpoints()
        write_clean_shutdown_marker(self.files, CLEAN_SHUTDOWN_MARKER)
        self.files.unlock()
        self._opened = False

    def abandon(self) -> None:
        """What a killed process (SIGKILL) leaves behind: every file closed with nothing more
        written (no flush, producer snapshot, checkpoint, topics file or clean-shutdown
        marker), and the dir's lock released, as the kernel releases a dead process's locks.
        The next open recovers each log from its recovery point."""
        if not self._opened:
            return
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        for info in self._topics.values():
            for partition in info.logs:
                partition.close_handlers()
        self.files.unlock()
        self._opened = False

    # --------------------------------------------------------------------------------- topics

    def topic(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._topics_by_id.get(topic_id)

    def topics(self) -> list[TopicInfo]:
        return list(self._topics.values())

    def partition(self, topic: str, index: int, *, reading: bool = False) -> PartitionLog:
        """The log of topic-partition; KafkaError(UNKNOWN_TOPIC_OR_PARTITION) if there is none,
        KAFKA_STORAGE_ERROR once the log dir is offline. Every request that writes a partition
        (Produce, DeleteRecords, the coordinators' writes) gets its log here, so all of them
        answer that error. Readers (`reading=True`: Fetch, ListOffsets, OffsetForLeaderEpoch,
        DescribeProducers) keep reading what was stored: a full disk stops writes, not reads
        (where Kafka stops both, this broker's acceptance asks that what was acknowledged stays
        readable); a read that fails itself still answers KAFKA_STORAGE_ERROR."""
        info = self._topics.get(topic)
        if info is None or not 0 <= index < len(info.partitions):
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"this server does not host {topic}-{index}")
        if self.failure_channel.failure is not None and not reading:
            # Kafka's words for a partition of an offline log dir (ReplicaManager).
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR,
                             f"Partition {topic}-{index} is in an offline log directory")
        partition = info.partitions[index]
        if partition is None:
            # A cluster's partition this node has no replica of (Kafka's ReplicaManager).
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"This server does not host {topic}-{index}")
        return partition

    @property
    def offline(self) -> bool:
        """Whether the log dir is offline (an I/O error took it; until the broker restarts)."""
        return self.failure_channel.offline

    def all_partitions(self):
        """Every partition log of the live dir; none once it is offline, so that checkpoints,
        retention and the cleaner leave it alone (Kafka drops an offline dir's logs)."""
        if self.failure_channel.failure is not None:
            return
        for info in self._topics.values():
            yield from info.logs

    def create_topic(self, name: str, num_partitions: int, configs: dict | None = None, *,
                     now_ms: int | None = None) -> uuid.UUID:
        """Create a topic with a new random topic id; returns the id.

        INVALID_TOPIC_EXCEPTION (illegal name, or one that differs from an existing topic only
        by '.' vs '_', which Kafka forbids because metric names would collide),
        TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS (< 1), INVALID_CONFIG (unknown key, bad
        value). Config entries whose value is None are ignored. The partition dirs are made
        here and now; begin_topic_creation makes them in a worker thread instead."""
        overrides, config, topic_id = self._check_new_topic(name, num_partitions, configs)
        now_ms = self._now_ms(now_ms)
        topic = TopicInfo(name, topic_id, overrides, config, [])
        for index in range(num_partitions):
            topic.partitions.append(self._new_partition(topic, index, now_ms))
        self._register(topic)
        self._record_topic(name)
        return topic_id

    def ensure_internal_topic(self, name: str, num_partitions: int, configs: dict, *,
                              now_ms: int | None = None) -> None:
        """A coordinator's first record to `__consumer_offsets` or `__transaction_state` on a
        single broker: the topic is made here and now unless it exists. While the first
        FindCoordinator is making it in a worker thread (begin_topic_creation), the record
        cannot be written yet: UNKNOWN_TOPIC_OR_PARTITION, which the coordinators answer as
        COORDINATOR_NOT_AVAILABLE (log/topics.py), and the client asks again."""
        if name in self._topics:
            return
        if name in self._creating:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             f"{name} is being created")
        self.create_topic(name, num_partitions, configs, now_ms=now_ms)

    def _check_new_topic(self, name: str, num_partitions: int,
                         configs: dict | None) -> tuple[dict, LogConfig, uuid.UUID]:
        """create_topic's checks (its errors); the overrides, config and a new topic id."""
        validate_topic_name(name)
        if name in self._topics or name in self._creating:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
        if name in self._deleting:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS,
                             f"Topic '{name}' is marked for deletion.")
        for existing in (*self._topics, *self._creating):
            if has_collision(name, existing):
                raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                                 f"topic {name!r} collides with existing topic {existing!r}")
        if num_partitions < 1:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"number of partitions must be at least 1, got {num_partitions}")
        overrides = {str(k): str(v) for k, v in (configs or {}).items() if v is not None}
        config = LogConfig.from_configs(overrides, base=self.default_config)
        self.failure_channel.check()
        topic_id = random_uuid()
        while topic_id in self._topics_by_id:
            topic_id = random_uuid()
        return overrides, config, topic_id

    def begin_topic_creation(self, name: str, num_partitions: int, configs: dict | None = None,
                             *, now_ms: int | None = None) -> TopicCreation:
        """create_topic in three steps, so that the disk work (about 3 ms a partition: files
        created, fsyncs) runs in a worker thread: this checks the topic as create_topic does
        and reserves its name (TOPIC_ALREADY_EXISTS for anyone else meanwhile); then
        `creation.make_dirs()` in a worker thread; then end_topic_creation."""
        overrides, config, topic_id = self._check_new_topic(name, num_partitions, configs)
        creation = TopicCreation(name, topic_id, overrides, config, num_partitions, self.files,
                                 self._now_ms(now_ms))
        self._creating[name] = creation
        return creation

    def end_topic_creation(self, creation: TopicCreation) -> uuid.UUID | None:
        """Register a topic whose dirs and logs `make_dirs` made (the journal line fsync'd) and
        return its id; None, with the name free again, if they were not made."""
        if self._creating.get(creation.name) is creation:
            del self._creating[creation.name]
        if not creation.dirs_made:
            return None
        self.failure_channel.check()
        topic = TopicInfo(creation.name, creation.topic_id, creation.overrides, creation.config,
                          creation.partitions)
        self._register(topic)
        self._record_topic(creation.name)
        return creation.topic_id

    def _new_partition(self, topic: TopicInfo, index: int, now_ms: int) -> PartitionLog:
        directory = make_partition_dir(self.files, topic.name, index, topic.topic_id)
        return PartitionLog(topic.name, index, directory, self.files, topic.config,
                            clean_shutdown=True, now_ms=now_ms)

    def create_partitions(self, name: str, new_total: int, *, now_ms: int | None = None) -> None:
        """CreatePartitions: grow the topic to `new_total` partitions.
        UNKNOWN_TOPIC_OR_PARTITION, or INVALID_PARTITIONS if new_total is not larger. The
        partition dirs are made here and now; begin_partition_creation makes them in a worker
        thread instead."""
        creation = self.begin_partition_creation(name, new_total, now_ms=now_ms)
        creation.make_dirs()
        self.end_partition_creation(creation)

    def begin_partition_creation(self, name: str, new_total: int, *,
                                 now_ms: int | None = None) -> TopicCreation:
        """create_partitions in three steps, as begin_topic_creation: this checks the growth
        (its errors); then `creation.make_dirs()` in a worker thread makes the new partitions'
        dirs and logs (about 3 ms a partition); then end_partition_creation adds them to the
        topic. One growth of a topic at a time (the broker applies CreatePartitions one after
        another, as Kafka's controller does)."""
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
        self.failure_channel.check()
        return TopicCreation(name, topic.topic_id, topic.configs, topic.config, new_total,
                             self.files, self._now_ms(now_ms), first=current)

    def end_partition_creation(self, creation: TopicCreation) -> None:
        """Add the partitions `make_dirs` made to their topic, the change fsync'd in the
        journal. Nothing if they were not made (an I/O error took the dir offline). If the
        topic changed meanwhile (deleted, or grown by someone else), the new dirs are renamed
        `-delete` for removal and the answer is UNKNOWN_TOPIC_OR_PARTITION or
        INVALID_PARTITIONS."""
        if not creation.dirs_made:
            return
        topic = self._topics.get(creation.name)
        if topic is None or topic.topic_id != creation.topic_id \
                or topic.num_partitions != creation.first:
            for partition in creation.partitions:
                partition.close(flush=False)
                suffix = f"-{partition.partition}.{uuid.uuid4().hex}-delete"
                doomed = creation.name[:255 - len(suffix)] + suffix
                self.files.rename(partition.directory, doomed)
                self._deleted_dirs.append(doomed)
            if topic is None or topic.topic_id != creation.topic_id:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"topic {creation.name!r} was deleted meanwhile")
            raise KafkaError(ErrorCode.INVALID_PARTITIONS,
                             f"topic {creation.name!r} has {topic.num_partitions} partitions "
                             f"now")
        self.failure_channel.check()
        for partition in creation.partitions:
            topic.partitions.append(partition)
            if self._flushes_scheduled:
                partition.on_flush_due = self._flush_due
        self._record_topic(creation.name)

    def delete_topic(self, name: str, *, remove_now: bool = True) -> uuid.UUID:
        """Delete a topic and its data; returns its id. As Kafka does, each partition dir is
        first renamed to `<topic>-<p>.<random uuid hex>-delete` (so a crash midway leaves no
        half-deleted partition that could be loaded again), then removed: here, or, with
        `remove_now=False`, by whoever takes `take_deleted_dirs()`. The broker instead does the
        renames and removals in a worker thread (begin_topic_deletion). KAFKA_STORAGE_ERROR once
        the log dir is offline."""
        deletion = self.begin_topic_deletion(name)
        try:
            deletion.rename_dirs()
        finally:
            self.end_topic_deletion(deletion)
        if remove_now:
            deletion.remove_dirs()
        else:
            self._deleted_dirs.extend(deletion.renamed)
        return deletion.topic_id

    def begin_topic_deletion(self, name: str, *, close: bool = True) -> TopicDeletion:
        """delete_topic in three steps, so that the disk work (a rename per partition, then
        thousands of files removed) runs in a worker thread: this makes the topic gone at once
        (unregistered, its deletion in the journal, its logs closed and its waiting fetches
        woken) and reserves its name until `end_topic_deletion` (a new topic of that name
        meanwhile is TOPIC_ALREADY_EXISTS, as Kafka answered for a topic marked for deletion);
        then `deletion.rename_dirs()` and `deletion.remove_dirs()` in a worker thread. With
        `close=False` the logs are left for `deletion.close_logs()` to close, in slices."""
        if name not in self._topics:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}")
        self.failure_channel.check()
        topic = self._topics.pop(name)
        self._topics_by_id.pop(topic.topic_id, None)
        self._record_topic(name)
        moves = []
        logs = topic.logs
        for partition in logs:
            suffix = f"-{partition.partition}.{uuid.uuid4().hex}-delete"
            moves.append((partition.directory, name[:255 - len(suffix)] + suffix))
        deletion = TopicDeletion(name, topic.topic_id, self.files, moves, list(logs),
                                 self.flush_due)
        self._deleting[name] = deletion
        if close:
            deletion.close_logs()
        return deletion

    def end_topic_deletion(self, deletion: TopicDeletion) -> None:
        """The deleted topic's dirs are renamed (or renaming failed: the dir went offline):
        its name is free for a new topic."""
        if self._deleting.get(deletion.name) is deletion:
            del self._deleting[deletion.name]

    def take_deleted_dirs(self) -> list[str]:
        """The renamed dirs of deleted partitions not removed yet (delete_topic with
        `remove_now=False`); removing them is the caller's. A restart removes any left."""
        taken, self._deleted_dirs = self._deleted_dirs, []
        return taken

    def set_default_config(self, default_config: LogConfig) -> None:
        """New broker-level defaults (a dynamic broker config change): every topic's effective
        config is its overrides over the new defaults."""
        self.default_config = default_config
        for topic in self._topics.values():
            topic.config = LogConfig.from_configs(topic.configs, base=default_config)
            for partition in topic.logs:
                partition.update_config(topic.config)

    def set_topic_configs(self, name: str, configs: dict) -> LogConfig:
        """Replace the topic's config overrides (AlterConfigs; an incremental alter computes the
        new full set first). INVALID_CONFIG leaves everything unchanged. Returns the effective
        config, which applies to the partitions' next appends and rolls.

        Stored overrides this broker could not apply (TopicInfo.ignored_configs) stay in the
        file unless the new set names their key; once none is left the topic's overrides are
        known again (and retention applies to it again)."""
        topic = self._topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}")
        overrides = {str(k): str(v) for k, v in configs.items() if v is not None}
        config = LogConfig.from_configs(overrides, base=self.default_config)
        self.failure_channel.check()
        topic.configs = overrides
        topic.config = config
        topic.ignored_configs = {k: v for k, v in topic.ignored_configs.items()
                                 if k not in configs}
        topic.overrides_unknown = bool(topic.ignored_configs)
        for partition in topic.logs:
            partition.update_config(config)
        self._record_topic(name)
        return config

    def remove_expired_producers(self, now_ms: int, expiration_ms: int) -> int:
        """Kafka's periodic producer expiration check over every partition (every
        producer.id.expiration.check.interval.ms): producers idle longer than `expiration_ms`
        with no transaction open are forgotten. Returns how many entries went."""
        return sum(len(p.remove_expired_producers(now_ms, expiration_ms))
                   for p in self.all_partitions())

    def next_producer_expiry_ms(self, expiration_ms: int) -> int | None:
        """When `remove_expired_producers` would first forget a producer (None: never, while
        nothing changes), for a virtual clock to skip the checks before (clock.py)."""
        return min((t for p in self.all_partitions()
                    if (t := p.next_producer_expiry_ms(expiration_ms)) is not None),
                   default=None)

    def next_retention_ms(self) -> int | None:
        """When `delete_old_segments` would first delete something (PartitionLog's
        next_retention_ms; None: not while nothing changes), for a virtual clock to skip the
        retention passes before (clock.py)."""
        if self.failure_channel.offline:
            return None
        return min((t for info in self._topics.values() if not info.overrides_unknown
                    for p in info.logs if (t := p.next_retention_ms()) is not None),
                   default=None)

    def delete_old_segments(self, now_ms: int) -> int:
        """Retention pass over every partition (Kafka: every log.retention.check.interval.ms),
        but those of topics whose stored overrides could not all be applied
        (TopicInfo.overrides_unknown). Returns the number of segments deleted."""
        return sum(self.retention_steps(now_ms, per_step=None))

    def retention_steps(self, now_ms: int, per_step: int | None = 1000):
        """The retention pass in steps of `per_step` partitions (None: one step), yielding the
        segments each step deleted: the broker's retention task serves clients in between, as
        a pass over 10,000 partitions is some 30 ms. A topic deleted between two steps is
        skipped."""
        if self.failure_channel.offline:
            return
        topics = [info for info in self._topics.values() if not info.overrides_unknown]
        deleted = done = 0
        for info in topics:
            index = 0
            # The topic and each log are looked up again after every step: a topic deleted or
            # a replica dropped meanwhile is not touched.
            while self._topics.get(info.name) is info and index < len(info.partitions):
                log = info.partitions[index]
                index += 1
                if log is None:
                    continue
                deleted += log.delete_old_segments(now_ms)
                done += 1
                if per_step is not None and done >= per_step:
                    yield deleted
                    deleted = done = 0
                    if self.failure_channel.offline:
                        return
        yield deleted

    # ---------------------------------------------------------------------- a node of a cluster
    #
    # Kafka's KRaft brokers learn topics from the metadata log and open the log of each
    # partition they have a replica of when the metadata says so. The topic registry here is
    # then a copy of the metadata image's: TopicInfo.partitions has None for the partitions
    # this node holds no replica of.

    def host_partition(self, name: str, topic_id: uuid.UUID, index: int, num_partitions: int,
                       overrides: dict[str, str], *, now_ms: int | None = None
                       ) -> tuple[PartitionLog, int | None]:
        """The log of a partition this node has a replica of: opened from its dir (recovered
        from its recovery point after an unclean shutdown, as at a single broker's start), or
        created empty. A dir of the same name holding another topic id (a deleted topic of the
        same name) is removed first. Returns the log and the high watermark last checkpointed
        for it (None if none), which the replica starts from."""
        self.failure_channel.check()
        topic = self._topics.get(name)
        if topic is not None and topic.topic_id != topic_id:
            self.forget_topic(name, delete=True)
            topic = None
        if topic is None:
            overrides = dict(overrides)
            topic = TopicInfo(name, topic_id, overrides,
                              LogConfig.from_configs(overrides, base=self.default_config),
                              [None] * num_partitions)
            self._topics[name] = topic
            self._topics_by_id[topic_id] = topic
        while len(topic.partitions) < num_partitions:
            topic.partitions.append(None)
        existing = topic.partitions[index]
        if existing is not None:
            return existing, None
        now_ms = self._now_ms(now_ms)
        directory = partition_dir_name(name, index)
        key = (name, index)
        stored_id = None
        if self.files.exists(f"{directory}/{PARTITION_METADATA}"):
            try:
                stored_id = read_partition_metadata(self.files,
                                                    f"{directory}/{PARTITION_METADATA}")
            except CheckpointError:
                stored_id = None
        if stored_id == topic_id:
            partition = PartitionLog(
                name, index, directory, self.files, topic.config,
                recovery_point=self._stored_offsets.get(RECOVERY_POINT_CHECKPOINT, {}).get(key, 0),
                log_start_offset=self._stored_offsets.get(LOG_START_OFFSET_CHECKPOINT,
                                                          {}).get(key, 0),
                clean_shutdown=bool(self.had_clean_shutdown), now_ms=now_ms)
            high_watermark = self._stored_offsets.get(REPLICATION_OFFSET_CHECKPOINT, {}).get(key)
        else:
            if stored_id is not None:
                log.info("Removing %s: it holds topic id %s, the metadata says %s", directory,
                         uuid_to_base64(stored_id), uuid_to_base64(topic_id))
            directory = make_partition_dir(self.files, name, index, topic_id)
            partition = PartitionLog(name, index, directory, self.files, topic.config,
                                     clean_shutdown=True, now_ms=now_ms)
            high_watermark = 0
        partition.replicated = True
        if self._flushes_scheduled:
            partition.on_flush_due = self._flush_due
        topic.partitions[index] = partition
        return partition, high_watermark

    def stop_hosting(self, name: str, index: int, *, delete: bool) -> None:
        """This node no longer has a replica of the partition (reassigned away, or its topic
        deleted): close its log, and remove its dir when `delete` (renamed first, as
        delete_topic does, and removed by whoever takes take_deleted_dirs)."""
        topic = self._topics.get(name)
        if topic is None or not 0 <= index < len(topic.partitions):
            return
        partition = topic.partitions[index]
        if partition is None:
            return
        topic.partitions[index] = None
        self.flush_due.discard(partition)
        partition.close(flush=not delete and not self.failure_channel.offline)
        partition.wake_waiters()
        if delete and not self.failure_channel.offline:
            suffix = f"-{index}.{uuid.uuid4().hex}-delete"
            doomed = name[:255 - len(suffix)] + suffix
            self.files.rename(partition.directory, doomed)
            self._deleted_dirs.append(doomed)

    def forget_topic(self, name: str, *, delete: bool) -> None:
        """The metadata no longer has the topic (or has another of the same name): stop hosting
        each of its partitions and drop it from the registry."""
        topic = self._topics.get(name)
        if topic is None:
            return
        for index in range(len(topic.partitions)):
            self.stop_hosting(name, index, delete=delete)
        self._topics.pop(name, None)
        self._topics_by_id.pop(topic.topic_id, None)

    def set_hosted_topic_configs(self, name: str, overrides: dict[str, str]) -> None:
        """A topic's config overrides as the metadata has them (ConfigRecords)."""
        topic = self._topics.get(name)
        if topic is None:
            return
        topic.configs = dict(overrides)
        topic.config = LogConfig.from_configs(topic.configs, base=self.default_config)
        for partition in topic.logs:
            partition.update_config(topic.config)
