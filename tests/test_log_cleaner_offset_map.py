"""The log cleaner's offset map (log/cleaner.py SkimpyOffsetMap), Kafka's: each key held as its
16-byte MD5 hash beside its 8-byte offset in one block of `log.cleaner.dedupe.buffer.size` bytes,
filled to 90% at most; when a pass's keys do not fit, the pass cleans what did and the next pass
carries on.
"""

import tracemalloc

import pytest

from trioka.log.cleaner import LogCleaner, SkimpyOffsetMap
from trioka.log.files import MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.records import encode_batch, iter_batches
from wire_client import memory_broker

NOW = 1_700_000_000_000


def test_put_and_get():
    m = SkimpyOffsetMap(1000 * 24)
    assert m.slots == 1000 and m.max_entries == 900
    assert m.get(b"k") == -1 and m.get(b"k", None) is None
    m.put(b"k", 5)
    m.put(b"other", 7)
    m.put(b"k", 9)                                     # a later record of the same key
    assert (m.get(b"k"), m.get(b"other"), len(m)) == (9, 7, 2)
    assert m.get(memoryview(b"k")) == 9                # keys may be views of a batch


def test_every_slot_is_reachable_by_probing():
    m = SkimpyOffsetMap(10 * 24, load_factor=1.0)
    keys = [f"key-{i}".encode() for i in range(10)]
    for i, key in enumerate(keys):
        m.put(key, i)
    assert [m.get(key) for key in keys] == list(range(10))
    with pytest.raises(ValueError):
        m.put(b"one more", 10)                        # no empty slot left
    assert m.get(b"one more") == -1


def test_fits_counts_against_the_load_factor():
    m = SkimpyOffsetMap(10 * 24)                       # 9 keys
    for i in range(8):
        m.put(bytes([i]), i)
    assert m.fits(1) and not m.fits(2)


def test_a_map_too_small_for_one_key_is_refused_as_kafka_does():
    with pytest.raises(ValueError, match="log.cleaner.dedupe.buffer.size"):
        SkimpyOffsetMap(24)
    with pytest.raises(ValueError, match="too small"):
        LogCleaner(MemoryFiles(), lambda: [], dedupe_buffer_size=40)


def test_keys_cost_their_hash_not_their_size():
    m = SkimpyOffsetMap(2000 * 24)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            m.put(bytes([i % 256, i // 256]) * 5000, i)   # 10 KB keys, 10 MB in all
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(m) == 1000
    assert grown < 100_000                             # no key is kept
    assert m.get(bytes([7, 0]) * 5000) == 7


def stored_keys(log) -> list[bytes]:
    out = []
    for segment in log.segments:
        data = segment.log.pread(0, segment.size)
        out += [r.key for b in iter_batches(data) for r in b.records]
    return out


def test_a_small_map_cleans_a_log_over_several_passes():
    files = MemoryFiles()
    log = PartitionLog("c", 0, "c-0", files, {"cleanup.policy": "compact",
                                              "segment.bytes": "2000"}, now_ms=NOW)
    keys = [f"k{i:02d}".encode() for i in range(40)]
    for round_ in range(3):
        for key in keys:
            log.append(encode_batch([(key, b"%d" % round_, [], NOW)]), now_ms=NOW)
    log.roll(NOW)
    log.append(encode_batch([(b"tail", b"x", [], NOW)]), now_ms=NOW)
    cleaner = LogCleaner(files, lambda: [log], dedupe_buffer_size=12 * 24)   # 10 keys a pass
    results = cleaner.clean_now(NOW)
    assert len(results) >= 4
    # Each pass mapped at most 10 keys, so it moved the clean end by at most 10 offsets.
    ends = [r.first_dirty_offset for r in results] + [results[-1].end_offset]
    assert all(0 < b - a <= 10 for a, b in zip(ends, ends[1:]))
    assert results[-1].end_offset == log.active_segment.base_offset
    assert sorted(stored_keys(log)) == sorted(keys + [b"tail"])


def test_the_broker_splits_the_dedupe_buffer_across_cleaner_threads():
    broker = memory_broker({"log.cleaner.dedupe.buffer.size": str(1 << 20),
                            "log.cleaner.threads": "4"})
    try:
        assert broker.cleaner.dedupe_buffer_size == 1 << 18
    finally:
        broker.close()
    defaults = memory_broker()
    try:
        assert defaults.config.log_cleaner_dedupe_buffer_size == 134_217_728
        assert defaults.cleaner.dedupe_buffer_size == 134_217_728
    finally:
        defaults.close()


def test_a_map_filling_inside_a_batch_loses_nothing():
    # Batches of 4 records over 7 keys, a map of 6 keys: passes end inside segments and the map
    # fills inside batches, whose keys already mapped point past the pass's end.
    files = MemoryFiles()
    log = PartitionLog("c", 0, "c-0", files, {"cleanup.policy": "compact",
                                              "segment.bytes": "1500"}, now_ms=NOW)
    keys = [f"key{i}".encode() for i in range(7)]
    latest = {}
    n = 0
    for round_ in range(12):
        records = []
        for _ in range(4):
            key = keys[n % 7]
            records.append((key, b"%d" % n, [], NOW))
            n += 1
        base = log.append(encode_batch(records), now_ms=NOW).base_offset
        for i, (key, value, _, _) in enumerate(records):
            latest[key] = (base + i, value)
    log.roll(NOW)
    log.append(encode_batch([(b"tail", b"x", [], NOW)]), now_ms=NOW)
    latest[b"tail"] = (n, b"x")
    cleaner = LogCleaner(files, lambda: [log], dedupe_buffer_size=7 * 24)   # 6 keys a pass
    results = cleaner.clean_now(NOW)
    assert len(results) > 2
    assert results[-1].end_offset == log.active_segment.base_offset
    kept = {}
    for segment in log.segments:
        for batch in iter_batches(segment.log.pread(0, segment.size)):
            for r in batch.records:
                assert r.key not in kept, "two records of one key survived"
                kept[r.key] = (r.offset, r.value)
    assert kept == latest
