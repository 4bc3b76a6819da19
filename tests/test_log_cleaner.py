"""The log cleaner: compaction of cleanup.policy=compact logs (trioka.log.cleaner)."""

import pytest
import trio

from trioka.log.checkpoint import CLEANER_OFFSET_CHECKPOINT, read_offset_checkpoint
from trioka.log.cleaner import LogCleaner
from trioka.log.config import LogConfig
from trioka.log.files import DiskFiles, MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.records import encode_batch, iter_batches
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000
DAY = 86_400_000
DIRECTORY = "c-0"


@pytest.fixture(params=["disk", "memory"])
def files(request, tmp_path):
    if request.param == "disk":
        return DiskFiles(str(tmp_path / "data"))
    return MemoryFiles()


def compact_config(**overrides) -> dict:
    config = {"cleanup.policy": "compact", "segment.bytes": "1000"}
    config.update({k.replace("_", "."): str(v) for k, v in overrides.items()})
    return config


def open_log(files, config=None, **kwargs) -> PartitionLog:
    return PartitionLog("c", 0, DIRECTORY, files, config or compact_config(), now_ms=NOW,
                        **kwargs)


def reopen(files, config=None) -> PartitionLog:
    """The partition as the next broker process sees it after a crash."""
    return open_log(files, config, clean_shutdown=False)


class Model:
    """What was appended: every record, and each key's last one."""

    def __init__(self):
        self.records: list[tuple[int, bytes, bytes | None, int]] = []  # offset, key, value, ts

    def latest(self, records=None) -> dict[bytes, tuple[int, bytes | None]]:
        out = {}
        for offset, key, value, _ in records if records is not None else self.records:
            out[key] = (offset, value)
        return out

    def compacted(self) -> list[tuple[int, bytes, bytes | None, int]]:
        """What a log holds once every record is compacted: each key's latest record alone (a
        tombstone too, before its horizon), at its offset, with its timestamp."""
        latest = self.latest()
        return sorted(r for r in self.records if latest[r[1]][0] == r[0])


def put(log, model, pairs, *, timestamp=None, **batch_fields) -> int:
    """Append one batch of (key, value) records; returns its base offset."""
    timestamp = NOW if timestamp is None else timestamp
    data = encode_batch([(k, v, [], timestamp + i) for i, (k, v) in enumerate(pairs)],
                        **batch_fields)
    base = log.append(data, now_ms=NOW).base_offset
    for i, (k, v) in enumerate(pairs):
        model.records.append((base + i, k, v, timestamp + i))
    return base


def fill_rounds(log, model, keys=10, rounds=12, tombstones=(b"k0", b"k1")):
    """`rounds` updates of every key (the last key is written in the first round only), one
    record per batch, the last round deleting `tombstones`; then distinct filler keys until the
    updates are all in closed segments."""
    for r in range(rounds):
        for i in range(keys):
            key = f"k{i}".encode()
            if r and i == keys - 1:
                continue
            value = None if r == rounds - 1 and key in tombstones else f"v{r}-{i}".encode()
            put(log, model, [(key, value)], timestamp=NOW + r * 100 + i)
    last_update = log.log_end_offset - 1
    n = 0
    while log.active_segment.base_offset <= last_update:
        put(log, model, [(f"f{n}".encode(), b"filler")])
        n += 1


def stored(log) -> list:
    """Every stored batch from the log start, decoded, as a consumer would fetch them."""
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        batches = list(iter_batches(bytes(log.read(offset, 1 << 20).records)))
        if not batches:
            break
        out.extend(batches)
        offset = batches[-1].next_offset
    return out


def visible(log) -> list[tuple[int, bytes, bytes | None, int]]:
    return [(r.offset, r.key, r.value, r.timestamp) for b in stored(log)
            if not b.is_control_batch for r in b.records]


def cleaner_for(files, *logs, **kwargs) -> LogCleaner:
    return LogCleaner(files, lambda: list(logs), **kwargs)


def leftovers(files) -> list[str]:
    return sorted(n for n in files.listdir(DIRECTORY) if n.endswith((".cleaned", ".swap")))


# ----------------------------------------------------------------------------- compaction

def test_each_key_keeps_its_latest_record_at_its_offset(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    active = log.active_segment
    active_bytes = active.log.pread(0, active.size)
    segments_before, size_before = len(log.segments), log.size
    log_end = log.log_end_offset

    results = cleaner_for(files, log).clean_now(NOW)

    assert [(r.topic, r.partition, r.end_offset) for r in results] == \
        [("c", 0, active.base_offset)]
    got = visible(log)
    latest = model.latest()
    # Exactly one record per key, the latest (tombstones included until their horizon), at its
    # original offset and with its original timestamp.
    assert got == sorted((o, k, v, t) for o, k, v, t in model.records if latest[k][0] == o)
    offsets = [o for o, *_ in got]
    assert offsets == sorted(set(offsets)) and offsets[-1] == log_end - 1
    assert offsets != list(range(offsets[0], offsets[0] + len(offsets)))  # gaps
    assert (b"k0", None) in [(k, v) for _, k, v, _ in got]
    # The active segment is neither replaced nor touched.
    assert log.active_segment is active and active.log.pread(0, active.size) == active_bytes
    assert log.log_end_offset == log.high_watermark == log_end
    assert log.size < size_before / 3 and len(log.segments) < segments_before
    assert leftovers(files) == []


def test_result_survives_a_clean_restart_and_is_stable(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    cleaner = cleaner_for(files, log)
    cleaner.clean_now(NOW)
    after = visible(log)
    log.close()
    log = open_log(files, clean_shutdown=True)
    assert visible(log) == after
    # A second pass over an already clean log changes nothing visible.
    cleaner_for(files, log).clean_now(NOW)
    assert visible(log) == after
    log.close()


def test_tombstones_get_a_delete_horizon_and_go_after_delete_retention_ms(files):
    log = open_log(files, compact_config(delete_retention_ms=1000))
    model = Model()
    fill_rounds(log, model)
    cleaner = cleaner_for(files, log)
    cleaner.clean_now(NOW)
    tombstone_batches = [b for b in stored(log) if any(r.value is None for r in b.records)]
    assert len(tombstone_batches) == 2
    for batch in tombstone_batches:
        # KIP-534: attribute bit 6, the horizon in baseTimestamp, record timestamps unchanged.
        assert batch.attributes & 0x40 and batch.delete_horizon_ms == NOW + 1000
        assert batch.base_timestamp == NOW + 1000
    expected_ts = {o: t for o, _, _, t in model.records}
    assert all(t == expected_ts[o] for o, _, _, t in visible(log))

    assert cleaner.filthiest(NOW + 999) is None         # nothing dirty, horizon not reached
    cleaner.clean_now(NOW + 999)
    assert [k for _, k, v, _ in visible(log) if v is None] == [b"k0", b"k1"]
    assert cleaner.filthiest(NOW + 1000).log is log      # the horizon makes a pass due
    cleaner.clean_now(NOW + 1000)
    got = visible(log)
    assert [k for _, k, v, _ in got if v is None] == []
    assert {k for _, k, _, _ in got}.isdisjoint({b"k0", b"k1"})
    latest = model.latest()
    assert {k: (o, v) for o, k, v, _ in got} == {k: ov for k, ov in latest.items()
                                                 if ov[1] is not None}


def test_active_segment_only_log_is_not_cleaned(files):
    log = open_log(files, compact_config(segment_bytes=1 << 20))
    model = Model()
    for i in range(20):
        put(log, model, [(b"same", str(i).encode())])
    assert cleaner_for(files, log).clean_now(NOW) == []
    assert len(visible(log)) == 20


def test_min_compaction_lag_leaves_recent_segments_dirty(files):
    log = open_log(files, compact_config(min_compaction_lag_ms=60_000))
    model = Model()
    for r in range(6):                       # old: ten minutes ago
        for i in range(5):
            put(log, model, [(f"k{i}".encode(), f"old{r}".encode())], timestamp=NOW - 600_000)
    log.roll(NOW)
    recent_start = log.log_end_offset
    for r in range(6):                       # recent: now
        for i in range(5):
            put(log, model, [(f"k{i}".encode(), f"new{r}".encode())], timestamp=NOW)
    log.roll(NOW)
    put(log, model, [(b"tail", b"x")])

    [result] = cleaner_for(files, log).clean_now(NOW)
    # Only segments whose records are all older than the lag were cleaned.
    assert result.end_offset <= recent_start
    got = visible(log)
    assert [o for o, *_ in got if o >= recent_start] == \
        [o for o, *_ in model.records if o >= recent_start]
    old = [(k, v) for o, k, v, _ in got if o < result.end_offset]
    assert sorted(old) == [(f"k{i}".encode(), b"old5") for i in range(5)]
    # Ten minutes later the recent records are old enough too.
    [later] = cleaner_for(files, log).clean_now(NOW + 600_000)
    assert later.end_offset == log.active_segment.base_offset
    assert sorted((k, v) for _, k, v, _ in visible(log) if k != b"tail") == \
        [(f"k{i}".encode(), b"new5") for i in range(5)]


def test_dirty_ratio_decides_when_the_timer_cleans(files):
    log = open_log(files, compact_config(min_cleanable_dirty_ratio=0.9))
    model = Model()
    fill_rounds(log, model, rounds=20)
    cleaner = cleaner_for(files, log)
    todo = cleaner.filthiest(NOW)
    assert todo.log is log and todo.clean_bytes == 0 and todo.dirty_ratio == 1.0
    for _ in cleaner.clean_steps(NOW):
        pass
    assert cleaner.filthiest(NOW) is None           # all clean now
    clean_size = sum(s.size for s in log.segments[:-1])
    # A little new dirty data: under the ratio, the timer leaves it; compact_now does not.
    while sum(s.size for s in log.segments[:-1]) == clean_size:
        put(log, model, [(b"k3", b"again")])
    todo = cleaner.cleanable(log, NOW)
    assert 0 < todo.dirty_ratio < 0.9 and cleaner.filthiest(NOW) is None
    assert list(cleaner.clean_steps(NOW)) == []
    assert len(cleaner.clean_now(NOW)) == 1
    assert [v for _, k, v, _ in visible(log) if k == b"k3"][-1] == b"again"


def test_checkpoint_records_the_end_of_the_clean_section(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    cleaner_for(files, log).clean_now(NOW)
    checkpoint = read_offset_checkpoint(files, CLEANER_OFFSET_CHECKPOINT)
    assert checkpoint == {("c", 0): log.active_segment.base_offset}
    fresh = cleaner_for(files, log)
    assert fresh.first_dirty_offset(log) == log.active_segment.base_offset
    todo = fresh.cleanable(log, NOW)
    assert todo.cleanable_bytes == 0 and todo.clean_bytes > 0


def test_a_full_offset_map_ends_the_pass_where_it_filled(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model, keys=10, rounds=6)
    # 4 slots of 24 bytes (a 16-byte key hash and an offset), 90% usable: 3 keys a pass.
    cleaner = cleaner_for(files, log, dedupe_buffer_size=4 * 24)
    for _ in cleaner.clean_steps(NOW):                  # one pass of the timer
        pass
    first_end = cleaner.first_dirty_offset(log)
    # Kafka's endOffset: after the last batch the map took (one record a batch here), which may
    # be inside a segment; the next pass goes on from there.
    assert first_end == 3
    # compact_now goes on, pass after pass, to the active segment.
    results = cleaner.clean_now(NOW)
    assert len(results) > 1 and results[0].first_dirty_offset == first_end
    assert [r.end_offset for r in results] == sorted({r.end_offset for r in results})
    assert results[-1].end_offset == log.active_segment.base_offset
    latest = model.latest()
    assert sorted((k, o) for o, k, _, _ in visible(log)) == \
        sorted((k, ov[0]) for k, ov in latest.items())


def test_compressed_batches_are_rebuilt_in_their_codec(files):
    log = open_log(files)
    model = Model()
    put(log, model, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], compression=1)
    put(log, model, [(b"b", b"22")])
    log.roll(NOW)
    put(log, model, [(b"z", b"tail")])
    cleaner_for(files, log).clean_now(NOW)
    first, second, _ = stored(log)
    assert first.compression == 1 and first.base_offset == 0 and first.last_offset_delta == 2
    assert [(r.offset, r.key, r.value) for r in first.records] == [(0, b"a", b"1"),
                                                                    (2, b"c", b"3")]
    assert [(r.offset, r.value) for r in second.records] == [(3, b"22")]


def test_records_without_a_key_are_dropped(files):
    log = open_log(files, {"cleanup.policy": "delete", "segment.bytes": "1000"})
    model = Model()
    put(log, model, [(None, b"keyless"), (b"k", b"v")])
    log.roll(NOW)
    put(log, model, [(b"z", b"tail")])
    log.update_config(LogConfig.from_configs(compact_config()))
    cleaner_for(files, log).clean_now(NOW)
    assert [(o, k) for o, k, _, _ in visible(log)] == [(1, b"k"), (2, b"z")]


def test_an_emptied_first_segment_does_not_stop_retention(files):
    log = open_log(files, compact_config(cleanup_policy="compact,delete", retention_ms=1000))
    model = Model()
    for r in range(40):
        put(log, model, [(f"k{r % 3}".encode(), b"v" * 40)])
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])
    # segment.bytes lowered below every segment's size: each is cleaned on its own, and the
    # first one, all of whose records were overwritten later, comes out empty.
    log.update_config(LogConfig.from_configs(compact_config(
        cleanup_policy="compact,delete", retention_ms=1000, segment_bytes=100)))
    cleaner_for(files, log).clean_now(NOW)
    assert log.segments[0].size == 0 and log.log_start_offset == 0
    segments = len(log.segments)
    assert log.delete_old_segments(NOW + 2000) == segments    # all old: every one goes
    assert log.log_start_offset == log.log_end_offset == 41


# -------------------------------------------------------------------- producers, transactions

def test_idempotent_producer_keeps_its_last_batch_as_an_empty_batch(files):
    log = open_log(files)
    model = Model()
    for seq in range(3):                                  # producer 7: offsets 0, 1, 2
        put(log, model, [(b"a", f"p7-{seq}".encode())], producer_id=7, producer_epoch=0,
            base_sequence=seq)
    put(log, model, [(b"x", b"1"), (b"y", b"1")], producer_id=8, producer_epoch=0,
        base_sequence=0)                                  # producer 8: offsets 3-4
    put(log, model, [(b"a", b"plain"), (b"y", b"2")])     # 5-6 supersede a and 8's y
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])                    # 7

    cleaner_for(files, log).clean_now(NOW)
    batches = stored(log)
    headers = [(b.base_offset, b.producer_id, b.base_sequence, b.last_offset_delta,
                b.records_count) for b in batches]
    assert headers == [(2, 7, 2, 0, 0),       # 7's last batch, emptied, sequences kept
                       (3, 8, 0, 1, 1),       # 8's batch keeps x, and its offset range
                       (5, -1, -1, 1, 2), (7, -1, -1, 0, 1)]
    empty = batches[0]
    assert empty.base_timestamp == -1 and empty.max_timestamp == NOW and empty.compression == 0
    assert [(r.offset, r.key) for r in batches[1].records] == [(3, b"x")]

    # Producer state rebuilt from the log alone (no snapshot) still knows both producers.
    log.close()
    for name in files.listdir(DIRECTORY):
        if name.endswith(".snapshot"):
            files.remove(f"{DIRECTORY}/{name}")
    log = reopen(files)
    assert log.producer_state.producers[7].last_seq == 2
    assert log.producer_state.producers[8].last_seq == 1
    retry = encode_batch([(b"a", b"p7-2")], producer_id=7, producer_epoch=0, base_sequence=2)
    assert log.append(retry, now_ms=NOW).base_offset == 2   # answered as a duplicate
    gap = encode_batch([(b"a", b"?")], producer_id=7, producer_epoch=0, base_sequence=4)
    with pytest.raises(KafkaError) as error:
        log.append(gap, now_ms=NOW)
    assert error.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    following = encode_batch([(b"a", b"p7-3")], producer_id=7, producer_epoch=0, base_sequence=3)
    assert log.append(following, now_ms=NOW).base_offset == 8


def test_aborted_transactions_are_removed_and_never_hide_committed_records(files):
    log = open_log(files)
    model = Model()
    put(log, model, [(b"k", b"good")])                                            # 0
    put(log, model, [(b"k", b"aborted")], producer_id=5, producer_epoch=0,
        base_sequence=0, transactional=True)                                      # 1
    log.append_marker(5, 0, False, 0, NOW)                                        # 2 ABORT
    put(log, model, [(b"j", b"committed")], producer_id=5, producer_epoch=0,
        base_sequence=1, transactional=True)                                      # 3
    log.append_marker(5, 0, True, 0, NOW)                                         # 4 COMMIT
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])                                            # 5
    assert log.aborted_transactions(0, 6) == [(5, 1)]

    cleaner_for(files, log).clean_now(NOW)
    batches = stored(log)
    assert [(b.base_offset, b.is_control_batch) for b in batches] == \
        [(0, False), (2, True), (3, False), (4, True), (5, False)]
    assert [(o, k, v) for o, k, v, _ in visible(log)] == \
        [(0, b"k", b"good"), (3, b"j", b"committed"), (5, b"tail", b"t")]
    # The abort stays indexed for read_committed fetches, also after a restart.
    assert log.aborted_transactions(0, 6) == [(5, 1)]
    log.close()
    assert reopen(files).aborted_transactions(0, 6) == [(5, 1)]


def test_markers_of_emptied_transactions_get_a_horizon_then_go(files):
    """A marker stays while a batch of its transaction is in the log; the first pass that
    finds none stamps it with a delete horizon, a pass after the horizon drops it, and with an
    ABORT marker its .txnindex entry, so read_committed consumers are not told of it."""
    log = open_log(files, compact_config(delete_retention_ms=1000))
    model = Model()
    txn = dict(producer_id=5, producer_epoch=0, transactional=True)
    put(log, model, [(b"a", b"aborted")], base_sequence=0, **txn)               # 0
    log.append_marker(5, 0, False, 0, NOW)                                      # 1 ABORT
    put(log, model, [(b"b", b"b1")], base_sequence=1, **txn)                    # 2
    log.append_marker(5, 0, True, 0, NOW)                                       # 3 COMMIT
    put(log, model, [(b"c", b"c1")], base_sequence=2, **txn)                    # 4
    log.append_marker(5, 0, True, 0, NOW)                                       # 5 COMMIT
    put(log, model, [(b"b", b"b2")])                                            # 6
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])                                          # 7
    cleaner = cleaner_for(files, log)

    def markers():
        return [(b.base_offset, b.delete_horizon_ms) for b in stored(log) if b.is_control_batch]

    cleaner.clean_now(NOW)           # the transactions' data was still there: markers kept
    assert markers() == [(1, None), (3, None), (5, None)]
    assert [o for o, _, _, _ in visible(log)] == [4, 6, 7]
    cleaner.clean_now(NOW)           # now their transactions are empty: horizons
    assert markers() == [(1, NOW + 1000), (3, NOW + 1000), (5, None)]
    assert log.aborted_transactions(0, 8) == [(5, 0)]
    assert cleaner.filthiest(NOW + 1000).log is log      # the horizon makes a pass due
    cleaner.clean_now(NOW + 1000)
    assert markers() == [(5, None)]
    assert log.aborted_transactions(0, 8) == []
    assert [(o, k, v) for o, k, v, _ in visible(log)] == \
        [(4, b"c", b"c1"), (6, b"b", b"b2"), (7, b"tail", b"t")]
    log.close()
    log = reopen(files)
    assert log.aborted_transactions(0, 8) == [] and log.last_stable_offset == 8


def test_the_marker_holding_a_producers_epoch_stays(files):
    """Transactions v2: the marker of the last transaction carries an epoch no data has. Once
    the transaction's data is gone it is the only record of that epoch, so it stays, and a
    restart that rebuilds producer state from the log still fences the older epoch."""
    log = open_log(files, compact_config(delete_retention_ms=0))
    model = Model()
    put(log, model, [(b"x", b"v")], producer_id=9, producer_epoch=0, base_sequence=0,
        transactional=True)                                                     # 0
    log.append_marker(9, 1, True, 0, NOW, transaction_version=2)                # 1 COMMIT
    put(log, model, [(b"x", b"newer")])                                         # 2
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])                                          # 3
    cleaner = cleaner_for(files, log)
    for _ in range(3):
        cleaner.clean_now(NOW + 1)
    assert [(b.base_offset, b.producer_epoch) for b in stored(log) if b.is_control_batch] == \
        [(1, 1)]
    log.close()
    for name in files.listdir(DIRECTORY):
        if name.endswith(".snapshot"):
            files.remove(f"{DIRECTORY}/{name}")
    log = reopen(files)
    zombie = encode_batch([(b"x", b"late")], producer_id=9, producer_epoch=0, base_sequence=1,
                          transactional=True)
    with pytest.raises(KafkaError) as error:
        log.append(zombie, now_ms=NOW)
    assert error.value.code == ErrorCode.INVALID_PRODUCER_EPOCH


def test_cleaning_stops_at_the_last_stable_offset(files):
    log = open_log(files)
    model = Model()
    put(log, model, [(b"k", b"1")])
    put(log, model, [(b"k", b"2")])
    log.roll(NOW)
    put(log, model, [(b"k", b"open")], producer_id=9, producer_epoch=0, base_sequence=0,
        transactional=True)                                    # 2: transaction left open
    log.roll(NOW)
    put(log, model, [(b"k", b"3")])
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])
    assert log.last_stable_offset == 2
    [result] = cleaner_for(files, log).clean_now(NOW)
    assert result.end_offset == 2
    assert [(o, v) for o, k, v, _ in visible(log) if k == b"k"] == [(1, b"2"), (2, b"open"),
                                                                    (3, b"3")]


# ------------------------------------------------------------------- steps, aborts, give-ups

def test_a_pass_runs_in_steps_between_which_the_log_serves_and_grows(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    cleaner = cleaner_for(files, log, step_bytes=256)
    steps = 0
    for _ in cleaner.clean_steps(NOW):
        steps += 1
        put(log, model, [(b"during", str(steps).encode())])   # appends go on meanwhile
        assert visible(log)[-1][1:3] == (b"during", str(steps).encode())
    assert steps > 10
    got = visible(log)
    assert {k: (o, v) for o, k, v, _ in got} == model.latest()
    assert set(got) <= set(model.records)


def test_abort_removes_the_cleaned_files_and_changes_nothing(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    before = visible(log)
    cleaner = cleaner_for(files, log, step_bytes=256)
    steps = cleaner.clean_steps(NOW)
    for _ in range(200):
        next(steps)
        if leftovers(files):
            break
    assert "00000000000000000000.log.cleaned" in leftovers(files)
    cleaner.abort()
    assert leftovers(files) == []
    assert visible(log) == before
    assert read_offset_checkpoint(files, CLEANER_OFFSET_CHECKPOINT) == {}
    assert list(steps) == []              # the abandoned generator is finished


def test_a_pass_gives_up_when_retention_deletes_its_segments(files):
    log = open_log(files, compact_config(cleanup_policy="compact,delete"))
    model = Model()
    fill_rounds(log, model)
    cleaner = cleaner_for(files, log, step_bytes=256)
    steps = cleaner.clean_steps(NOW)
    for _ in range(200):
        next(steps)
        if leftovers(files):
            break
    assert leftovers(files)
    new_start = log.segments[2].base_offset
    log.delete_records_before(new_start)
    assert list(steps) == []
    assert leftovers(files) == []
    assert visible(log) == [r for r in model.records if r[0] >= new_start]
    # The next pass starts from the new log start and finishes.
    assert len(cleaner.clean_now(NOW)) == 1
    assert visible(log)[0][0] >= new_start


def test_a_pass_gives_up_when_its_log_is_closed(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    cleaner = cleaner_for(files, log, step_bytes=256)
    steps = cleaner.clean_steps(NOW)
    for _ in range(200):
        next(steps)
        if leftovers(files):
            break
    log.close()                                 # as when its topic is deleted
    assert list(steps) == []
    assert leftovers(files) == []
    assert cleaner.filthiest(NOW) is not None   # not marked uncleanable


def test_corrupt_segment_marks_the_partition_uncleanable(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    victim = log.segments[1]
    data = bytearray(victim.log.pread(0, victim.size))
    data[70] ^= 0xFF                            # inside the first record: the CRC fails
    victim.log.truncate(0)
    victim.log.append(bytes(data))
    before = [s.base_offset for s in log.segments]
    cleaner = cleaner_for(files, log)
    assert cleaner.clean_now(NOW) == []
    assert [s.base_offset for s in log.segments] == before and leftovers(files) == []
    assert cleaner.filthiest(NOW) is None       # skipped by the timer from now on


# --------------------------------------------------------------------------- crash recovery

class SimulatedCrash(BaseException):
    """The broker process dies: nothing after it runs."""


class CrashingFiles:
    """The files of a log, with the process dying at the `crash_at`-th rename or remove (and
    every file operation failing after that)."""

    def __init__(self, inner):
        self.inner = inner
        self.crash_at: int | None = None
        self.count = 0
        self.dead = False

    def _step(self):
        if self.dead:
            raise SimulatedCrash()
        if self.crash_at is not None:
            if self.count == self.crash_at:
                self.dead = True
                raise SimulatedCrash()
            self.count += 1

    def rename(self, source, target):
        self._step()
        self.inner.rename(source, target)

    def remove(self, path):
        self._step()
        self.inner.remove(path)

    def write_atomic(self, path, data):
        self._step()
        self.inner.write_atomic(path, data)

    def open(self, path):
        if self.dead:
            raise SimulatedCrash()
        return self.inner.open(path)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def build_crash_scenario(files) -> tuple[PartitionLog, Model]:
    """Small segments, several groups of them per cleaned segment, an aborted transaction whose
    index entry must survive, an idempotent producer and tombstones."""
    log = open_log(files, compact_config(segment_bytes=400))
    model = Model()
    put(log, model, [(b"t", b"committed")])
    put(log, model, [(b"t", b"aborted")], producer_id=5, producer_epoch=0, base_sequence=0,
        transactional=True)
    log.append_marker(5, 0, False, 0, NOW)
    for r in range(6):
        for i in range(4):
            value = None if r == 5 and i == 0 else f"v{r}-{i}".encode()
            put(log, model, [(f"k{i}".encode(), value)], producer_id=7 if i == 3 else -1,
                producer_epoch=0 if i == 3 else -1, base_sequence=r if i == 3 else -1)
    log.roll(NOW)
    put(log, model, [(b"tail", b"t")])
    log.update_config(LogConfig.from_configs(compact_config(segment_bytes=1200)))
    return log, model


def latest_values(records) -> dict:
    """Each key's last value, as a read_committed consumer sees them (the scenario's aborted
    record, which the cleaner may or may not have removed yet, left out)."""
    out = {}
    for offset, key, value, _ in records:
        if value != b"aborted":
            out[key] = value
    return out


def test_the_swap_steps_are_counted(tmp_path):
    files = CrashingFiles(MemoryFiles())
    log, _ = build_crash_scenario(files)
    files.crash_at = 10**9
    [result] = cleaner_for(files, log).clean_now(NOW)
    assert result.segments_after < result.segments_before
    assert files.count > 20


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_a_crash_at_any_step_of_a_pass_loses_nothing(kind, tmp_path):
    # How many renames and removes a whole pass makes, then a crash before each one of them.
    counting = CrashingFiles(MemoryFiles())
    log, _ = build_crash_scenario(counting)
    counting.crash_at = 10**9
    cleaner_for(counting, log).clean_now(NOW)
    total = counting.count
    reference = visible(log)

    for crash_at in range(total):
        inner = DiskFiles(str(tmp_path / f"d{crash_at}")) if kind == "disk" else MemoryFiles()
        files = CrashingFiles(inner)
        log, model = build_crash_scenario(files)
        before = visible(log)
        aborted = log.aborted_transactions(0, log.log_end_offset)
        files.crash_at = crash_at
        with pytest.raises(SimulatedCrash):
            cleaner_for(files, log).clean_now(NOW)

        recovered = reopen(inner)
        assert leftovers(inner) == [], crash_at
        got = visible(recovered)
        # Nothing invented, nothing moved, every key's latest value still there.
        assert set(got) <= set(before), crash_at
        assert latest_values(got) == latest_values(before), crash_at
        assert [o for o, *_ in got] == sorted({o for o, *_ in got}), crash_at
        assert recovered.log_end_offset == log.log_end_offset, crash_at
        assert recovered.aborted_transactions(0, recovered.log_end_offset) == aborted, crash_at
        assert recovered.producer_state.producers[7].last_seq == 5, crash_at
        # And the next pass completes to the same result as an uninterrupted one.
        cleaner_for(inner, recovered).clean_now(NOW)
        assert visible(recovered) == reference, crash_at
        recovered.close()
        abandon(log)


def abandon(log):
    """Close the descriptors of a log whose process "died" (no file operation)."""
    for segment in log.segments:
        segment.offset_index.close()
        segment.time_index.close()
        segment.log.close()


def test_leftover_files_without_a_committed_swap_are_removed(files):
    log = open_log(files)
    model = Model()
    fill_rounds(log, model)
    before = visible(log)
    log.close()
    base = "00000000000000000000"
    for name in (f"{base}.log.cleaned", f"{base}.index.cleaned", f"{base}.timeindex.cleaned",
                 "00000000000000000999.index.swap", "00000000000000000999.txnindex.swap",
                 f"{base}.log.deleted"):
        f = files.open(f"{DIRECTORY}/{name}")
        f.append(b"junk" * 10)
        f.close()
    log = reopen(files)
    assert leftovers(files) == [] and not any(n.endswith(".deleted")
                                              for n in files.listdir(DIRECTORY))
    assert visible(log) == before


# ------------------------------------------------------------------------------- the broker

def memory_broker(**settings):
    from trioka.broker import BrokerState
    from trioka.config import Config
    config = Config({k.replace("_", "."): v for k, v in settings.items()})
    config.memory = True
    broker = BrokerState(config)
    broker.open()
    return broker


def fill_topic(broker, name):
    broker.create_topic(name, 1, compact_config(segment_bytes=600))
    partition = broker.partition(name, 0)
    model = Model()
    fill_rounds(partition, model, keys=5, rounds=8)
    return partition, model


async def test_broker_compact_now():
    broker = memory_broker()
    try:
        partition, model = fill_topic(broker, "compacted")
        broker.create_topic("plain", 1, {"segment.bytes": "600"})
        plain = broker.partition("plain", 0)
        fill_rounds(plain, Model(), keys=5, rounds=8)
        plain_before = visible(plain)
        assert len(visible(partition)) == len(model.records)
        assert broker.compact_now() == 1
        # Only each key's latest record is left, at its offset: every older one was removed.
        assert visible(partition) == model.compacted()
        assert len(model.compacted()) < len(model.records)
        assert visible(plain) == plain_before                    # cleanup.policy=delete
    finally:
        broker.close()


async def test_cleaner_timer_cleans_every_backoff_under_mock_clock(autojump_clock):
    broker = memory_broker(log_cleaner_backoff_ms=15000)
    try:
        partition, model = fill_topic(broker, "compacted")
        size = partition.size
        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(broker._cleaner_loop)
                start = trio.current_time()
                while broker.cleaner.first_dirty_offset(partition) == 0:
                    await trio.sleep(1)
                waited = trio.current_time() - start
                nursery.cancel_scope.cancel()
        assert 15 <= waited < 30
        assert partition.size < size
        assert visible(partition) == model.compacted()
    finally:
        broker.close()
