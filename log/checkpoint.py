"""Kafka's small metadata files in a data dir, read and written in Kafka's own text formats.

In the data dir (log dir) root:

* `recovery-point-offset-checkpoint`: per partition, the offset up to which the log is known
  flushed to disk; after an unclean shutdown only segments from there on are CRC-scanned.
* `log-start-offset-checkpoint`: per partition, the log start offset when DeleteRecords (or
  retention) moved it past the first segment's base offset.
* `replication-offset-checkpoint`: per partition, the high watermark.
* `cleaner-offset-checkpoint`: per compacted partition, the end of the cleaned section.

All four share one format: a version line (0), a count line, then `topic partition offset`
lines separated by whitespace. They are replaced atomically (tmp file, fsync, rename).

* `meta.properties`: Java properties (`key=value`, `#` comments): version=1, node.id,
  cluster.id, directory.id (KRaft layout).
* `.kafka_cleanshutdown`: present only after a clean shutdown (Kafka writes a small JSON).

In each partition dir:

* `partition.metadata`: `version: 0` and `topic_id: <base64url uuid>` lines.
* `leader-epoch-checkpoint`: version line, count line, `epoch start_offset` lines: the first
  offset written in each leader epoch (serves OffsetForLeaderEpoch).

Kafka writes UUIDs (topic ids, cluster id) as URL-safe base64 of the 16 bytes without padding.
"""

import base64
import json
import uuid

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT = "replication-offset-checkpoint"
CLEANER_OFFSET_CHECKPOINT = "cleaner-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
PARTITION_METADATA = "partition.metadata"
META_PROPERTIES = "meta.properties"
CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"

CHECKPOINT_VERSION = 0

ZERO_UUID = uuid.UUID(int=0)
# Kafka reserves UUID 0...01 for the metadata topic; random ids never take it.
METADATA_TOPIC_ID = uuid.UUID(int=1)


class CheckpointError(ValueError):
    """A checkpoint or metadata file that exists but cannot be parsed."""


# ----------------------------------------------------------------------------------------- UUIDs

def uuid_to_base64(value: uuid.UUID) -> str:
    """Kafka's Uuid.toString(): URL-safe base64 of the 16 bytes, no padding (22 chars)."""
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode("ascii")


def uuid_from_base64(text: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "==")
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"not a base64 UUID: {text!r}") from exc
    if len(raw) != 16:
        raise CheckpointError(f"not a 16-byte UUID: {text!r}")
    return uuid.UUID(bytes=raw)


def random_uuid() -> uuid.UUID:
    """A random UUID as Kafka's Uuid.randomUuid(): never the zero or metadata-topic id, and never
    one whose base64 form starts with '-' (it would read as an option on command lines)."""
    while True:
        value = uuid.uuid4()
        if value in (ZERO_UUID, METADATA_TOPIC_ID) or uuid_to_base64(value).startswith("-"):
            continue
        return value


# ---------------------------------------------------------------------------- offset checkpoints

def write_offset_checkpoint(files, path: str, offsets: dict[tuple[str, int], int]) -> None:
    """Write `topic partition offset` entries in Kafka's checkpoint format, atomically."""
    lines = [str(CHECKPOINT_VERSION), str(len(offsets))]
    for (topic, partition), offset in sorted(offsets.items()):
        lines.append(f"{topic} {partition} {offset}")
    files.write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def read_offset_checkpoint(files, path: str) -> dict[tuple[str, int], int]:
    """{(topic, partition): offset}; {} if the file does not exist; CheckpointError if it is
    malformed (wrong version, count mismatch, bad line)."""
    lines = _read_checkpoint_lines(files, path)
    if lines is None:
        return {}
    offsets = {}
    for line in lines:
        fields = line.split()
        if len(fields) != 3:
            raise CheckpointError(f"{path}: bad entry {line!r}")
        try:
            offsets[(fields[0], int(fields[1]))] = int(fields[2])
        except ValueError as exc:
            raise CheckpointError(f"{path}: bad entry {line!r}") from exc
    return offsets


def write_leader_epoch_checkpoint(files, path: str, entries: list[tuple[int, int]]) -> None:
    """Write `epoch start_offset` entries (Kafka's leader-epoch-checkpoint), atomically."""
    lines = [str(CHECKPOINT_VERSION), str(len(entries))]
    lines += [f"{epoch} {start_offset}" for epoch, start_offset in entries]
    files.write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def read_leader_epoch_checkpoint(files, path: str) -> list[tuple[int, int]]:
    lines = _read_checkpoint_lines(files, path)
    if lines is None:
        return []
    entries = []
    for line in lines:
        fields = line.split()
        if len(fields) != 2:
            raise CheckpointError(f"{path}: bad entry {line!r}")
        try:
            entries.append((int(fields[0]), int(fields[1])))
        except ValueError as exc:
            raise CheckpointError(f"{path}: bad entry {line!r}") from exc
    return entries


def _read_checkpoint_lines(files, path: str) -> list[str] | None:
    try:
        text = files.read_small(path).decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise CheckpointError(f"{path}: missing version or count line")
    if lines[0] != str(CHECKPOINT_VERSION):
        raise CheckpointError(f"{path}: unsupported version {lines[0]!r}")
    try:
        count = int(lines[1])
    except ValueError as exc:
        raise CheckpointError(f"{path}: bad count line {lines[1]!r}") from exc
    entries = lines[2:]
    if count != len(entries):
        raise CheckpointError(f"{path}: count {count} but {len(entries)} entries")
    return entries


# ------------------------------------------------------------------------- partition.metadata

def write_partition_metadata(files, path: str, topic_id: uuid.UUID) -> None:
    text = f"version: 0\ntopic_id: {uuid_to_base64(topic_id)}\n"
    files.write_atomic(path, text.encode("utf-8"))


def read_partition_metadata(files, path: str) -> uuid.UUID | None:
    """The topic id in a partition dir's `partition.metadata`; None if the file is missing."""
    try:
        text = files.read_small(path).decode("utf-8")
    except FileNotFoundError:
        return None
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    if values.get("version") != "0" or "topic_id" not in values:
        raise CheckpointError(f"{path}: unexpected content {text!r}")
    return uuid_from_base64(values["topic_id"])


# ---------------------------------------------------------------------------- meta.properties

def write_meta_properties(files, path: str, properties: dict[str, str]) -> None:
    lines = ["#", "# written by trioka (Kafka KRaft meta.properties layout)"]
    lines += [f"{key}={value}" for key, value in properties.items()]
    files.write_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


def read_meta_properties(files, path: str) -> dict[str, str] | None:
    """The key=value pairs of a Java properties file (simple form: no line continuations)."""
    try:
        text = files.read_small(path).decode("utf-8")
    except FileNotFoundError:
        return None
    properties = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise CheckpointError(f"{path}: bad line {line!r}")
        properties[key.strip()] = value.strip()
    return properties


# ------------------------------------------------------------------------- clean shutdown marker

def write_clean_shutdown_marker(files, path: str, broker_epoch: int = -1) -> None:
    files.write_atomic(path, json.dumps({"version": 0, "brokerEpoch": broker_epoch}).encode())
