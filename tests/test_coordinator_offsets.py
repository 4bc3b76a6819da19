"""Committed offsets and `__consumer_offsets` (trioka.coordinator.offsets): Kafka's partitioning of
group ids, the record formats byte for byte, commit validation, and what a broker restarting on the
same data dir loads back."""

import struct
import time

import pytest

from trioka.clock import ManualClock
from trioka.config import Config
from trioka.coordinator.group_coordinator import GroupCoordinator
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.offsets import (OFFSETS_TOPIC, OffsetAndMetadata, group_metadata_key,
                                        java_string_hash, offset_commit_key, offset_commit_value,
                                        partition_for)
from trioka.log.batch import AppendOrigin
from trioka.log.manager import LogManager
from trioka.log.records import ControlRecordType, encode_batch, encode_control_batch
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 500.0


def clock_at_now() -> ManualClock:
    """A clock that stays at monotonic NOW, its wall time that of the test's start."""
    return ManualClock(wall_ms=int(time.time() * 1000), monotonic=NOW)


def s16(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def open_coordinator(path, **settings) -> tuple[LogManager, GroupCoordinator]:
    clock = clock_at_now()
    logs = LogManager(str(path), clock=clock)
    logs.open()
    gc = GroupCoordinator(Config(**settings), logs, clock=clock)
    gc.open()
    return logs, gc


def form_group(gc, group_id, instance=None) -> str:
    """One member joined and synced (assignment b"assigned"); its member id."""
    r = gc.classic.join(NOW, group_id, "", instance, "client-1", "/10.0.0.7", 10_000, 30_000,
                        "consumer", [("range", b"subscription")], False)
    s = gc.classic.sync(NOW, group_id, r.generation_id, r.member_id, instance, None, None,
                        {r.member_id: b"assigned"})
    assert s.error == 0 and gc.groups[group_id].state is GroupState.STABLE
    return r.member_id


def test_java_string_hash_and_partition():
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    # 31-based polynomial over UTF-16 units, wrapping at 32 bits.
    h = 0
    for ch in "consumer-group-1":
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    assert java_string_hash("consumer-group-1") == (h - (1 << 32) if h >> 31 else h)
    # A character outside the BMP counts as its two UTF-16 surrogates.
    assert java_string_hash("\U0001F600") == 0xD83D * 31 + 0xDE00
    # "polygenelubricants".hashCode() is Integer.MIN_VALUE, which Kafka's abs maps to 0.
    assert java_string_hash("polygenelubricants") == -(1 << 31)
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50
    assert partition_for("a", 50) == 47


def test_record_formats_are_kafkas():
    assert offset_commit_key("g", "t", 3) == b"\x00\x01" + s16("g") + s16("t") + \
        struct.pack(">i", 3)
    value = offset_commit_value(OffsetAndMetadata(42, 7, "meta", 1_700_000_000_123))
    assert value == b"\x00\x03" + struct.pack(">qi", 42, 7) + s16("meta") + \
        struct.pack(">q", 1_700_000_000_123)
    # An explicit expiry needs value version 1 (the only one with expireTimestamp).
    value = offset_commit_value(OffsetAndMetadata(42, 7, "", 100, 200))
    assert value == b"\x00\x01" + struct.pack(">q", 42) + s16("") + struct.pack(">qq", 100, 200)
    assert group_metadata_key("grp") == b"\x00\x02" + s16("grp")


def test_group_metadata_value_v4(tmp_path):
    logs, gc = open_coordinator(tmp_path)
    member = form_group(gc, "g")
    topic = logs.topic(OFFSETS_TOPIC)
    assert topic.num_partitions == 50 and topic.config.cleanup_policy == "compact"
    log = logs.partition(OFFSETS_TOPIC, partition_for("g", 50))
    from trioka.log.records import iter_batches
    [record] = [r for b in iter_batches(log.read(0, 1 << 20).records) for r in b.records]
    assert record.key == b"\x00\x02" + s16("g")
    v = record.value

    def compact(text: str) -> bytes:
        data = text.encode()
        return bytes([len(data) + 1]) + data

    # currentStateTimestamp: the wall clock when the group's state last changed.
    [stamp] = struct.unpack_from(">q", v, 2 + 9 + 4 + 6 + 1 + len(member))
    assert abs(stamp - time.time() * 1000) < 60_000
    expected = (b"\x00\x04" + compact("consumer") + struct.pack(">i", 1) + compact("range") +
                compact(member) + struct.pack(">q", stamp) + bytes([2]) +
                compact(member) + b"\x00" + compact("client-1") + compact("/10.0.0.7") +
                struct.pack(">ii", 30_000, 10_000) + compact("subscription") +
                compact("assigned") + b"\x00" + b"\x00")
    assert v == expected
    logs.close()


def test_commit_validation():
    clock = clock_at_now()
    logs = LogManager(None, clock=clock)
    logs.open()
    gc = GroupCoordinator(Config(), logs, clock=clock)
    gc.open()

    def code(*args):
        with pytest.raises(KafkaError) as e:
            gc.offsets.validate_offset_commit(*args)
        return e.value.code

    assert code("", -1, "", None, 8) == ErrorCode.INVALID_GROUP_ID
    assert code("nope", 3, "m", None, 8) == ErrorCode.ILLEGAL_GENERATION
    assert code("nope", 3, "m", None, 9) == ErrorCode.GROUP_ID_NOT_FOUND
    simple = gc.offsets.validate_offset_commit("simple", -1, "", None, 8)
    assert simple.state is GroupState.EMPTY and gc.groups["simple"] is simple
    member = form_group(gc, "g")
    assert gc.offsets.validate_offset_commit("g", 1, member, None, 8) is gc.groups["g"]
    assert code("g", 0, member, None, 8) == ErrorCode.ILLEGAL_GENERATION
    assert code("g", 1, "stranger", None, 8) == ErrorCode.UNKNOWN_MEMBER_ID
    assert code("g", -1, "", None, 8) == ErrorCode.UNKNOWN_MEMBER_ID   # not empty
    # CompletingRebalance: the member must sync first.
    gc.classic.join(NOW, "g", member, None, "client-1", "/h", 10_000, 30_000, "consumer",
                    [("range", b"changed")], True)
    assert gc.groups["g"].state is GroupState.COMPLETING_REBALANCE
    assert code("g", 2, member, None, 8) == ErrorCode.REBALANCE_IN_PROGRESS
    # Static members: the instance id must still be theirs.
    s = form_group(gc, "static", instance="i-1")
    assert code("static", 1, "someone-else", "i-1", 8) == ErrorCode.FENCED_INSTANCE_ID
    assert code("static", 1, s, "i-2", 8) == ErrorCode.UNKNOWN_MEMBER_ID
    assert gc.offsets.validate_offset_commit("static", 1, s, "i-1", 8) is gc.groups["static"]


def test_offsets_and_groups_survive_restart(tmp_path):
    logs, gc = open_coordinator(tmp_path)
    member = form_group(gc, "g")
    group = gc.offsets.validate_offset_commit("g", 1, member, None, 8)
    gc.offsets.store_offsets(group, {("orders", 0): OffsetAndMetadata(10, 3, "m0", 111),
                             ("orders", 1): OffsetAndMetadata(20, -1, "", 112)})
    gc.offsets.store_offsets(group, {("orders", 0): OffsetAndMetadata(15, 4, "later", 113)})
    simple = gc.offsets.validate_offset_commit("simple", -1, "", None, 8)
    gc.offsets.store_offsets(simple, {("other", 2): OffsetAndMetadata(5)})
    gc.offsets.store_offsets(gc.offsets.validate_offset_commit("gone", -1, "", None, 8),
                     {("orders", 0): OffsetAndMetadata(1)})
    assert gc.delete_groups(["gone", "g", "missing"]) == {
        "gone": 0, "g": ErrorCode.NON_EMPTY_GROUP, "missing": ErrorCode.GROUP_ID_NOT_FOUND}
    logs.close()

    logs, gc = open_coordinator(tmp_path)
    assert set(gc.groups) == {"g", "simple"}
    g = gc.groups["g"]
    assert g.state is GroupState.STABLE and g.generation_id == 1
    assert (g.protocol_type, g.protocol_name, g.leader_id) == ("consumer", "range", member)
    [m] = g.members.values()
    assert (m.member_id, m.client_id, m.client_host, m.assignment, m.session_timeout_ms,
            m.rebalance_timeout_ms) == (member, "client-1", "/10.0.0.7", b"assigned", 10_000,
                                        30_000)
    assert gc.offsets.fetch_offsets("g", None) == {"orders": [
        (0, OffsetAndMetadata(15, 4, "later", 113)), (1, OffsetAndMetadata(20, -1, "", 112))]}
    assert gc.offsets.fetch_offsets("g", [("orders", [1, 7])]) == {"orders": [
        (1, OffsetAndMetadata(20, -1, "", 112)), (7, None)]}
    assert gc.offsets.fetch_offsets("simple", None) == {"other": [(2, OffsetAndMetadata(5))]}
    assert gc.offsets.fetch_offsets("gone", None) == {}
    assert gc.groups["simple"].state is GroupState.EMPTY
    # The member goes on where it was: same generation, heartbeats accepted.
    assert gc.classic.heartbeat_now(NOW + 1, "g", 1, member) == ErrorCode.NONE
    # Once it leaves, the group can go, offsets and all.
    assert gc.classic.leave_group("g", [(member, None)]) == (0, [0])
    assert gc.groups["g"].state is GroupState.EMPTY
    assert gc.offsets.delete_offsets("simple", [("other", 2)]) == {("other", 2): 0}
    assert gc.delete_groups(["g"]) == {"g": 0}
    logs.close()

    logs, gc = open_coordinator(tmp_path)
    # A group that only ever had offsets leaves nothing once they are deleted.
    assert set(gc.groups) == set() and gc.offsets.fetch_offsets("simple", None) == {}
    assert gc.offsets.fetch_offsets("g", None) == {}
    logs.close()


def test_transactional_offsets_count_only_when_committed(tmp_path):
    logs, gc = open_coordinator(tmp_path)
    gc.offsets.store_offsets(gc.offsets.validate_offset_commit("txg", -1, "", None, 8),
                     {("t", 0): OffsetAndMetadata(1)})   # creates the topic
    log = logs.partition(OFFSETS_TOPIC, partition_for("txg", 50))

    def txn_commit(pid, offset):
        key = offset_commit_key("txg", "t", pid)
        value = offset_commit_value(OffsetAndMetadata(offset, -1, "", 5))
        log.append(encode_batch([(key, value)], producer_id=pid, producer_epoch=0,
                                base_sequence=0, transactional=True), now_ms=5,
                   origin=AppendOrigin.COORDINATOR)

    def marker(pid, kind):
        log.append(encode_control_batch(kind, pid, 0, 0, timestamp=5), now_ms=5,
                   origin=AppendOrigin.COORDINATOR)

    txn_commit(7, 70)
    txn_commit(8, 80)
    marker(7, ControlRecordType.COMMIT)
    marker(8, ControlRecordType.ABORT)
    txn_commit(9, 90)             # still open
    logs.close()
    logs, gc = open_coordinator(tmp_path)
    assert gc.offsets.fetch_offsets("txg", None) == {"t": [(0, OffsetAndMetadata(1)),
                                                   (7, OffsetAndMetadata(70, -1, "", 5))]}
    logs.close()


def test_a_new_coordinator_on_the_same_logs_replays_them():
    clock = clock_at_now()
    logs = LogManager(None, clock=clock)
    logs.open()
    gc = GroupCoordinator(Config(), logs, clock=clock)
    gc.open()
    gc.offsets.store_offsets(gc.offsets.validate_offset_commit("g", -1, "", None, 8),
                     {("t", 0): OffsetAndMetadata(3)})
    again = GroupCoordinator(Config(), logs, clock=clock)
    again.open()                  # same logs: everything replays
    assert again.offsets.fetch_offsets("g", None) == {"t": [(0, OffsetAndMetadata(3))]}
