"""The cluster client's reading of a Fetch answer (cli/client/cluster.py, `consumer_records`):
control batches and aborted transactions in hand-built batches.
"""

import types

import pytest

from trioka.cli.client.cluster import READ_COMMITTED, READ_UNCOMMITTED, consumer_records
from trioka.log.records import ControlRecordType, encode_batch, encode_control_batch

pytestmark = pytest.mark.timeout(30)


def _aborted(pid, first):
    return types.SimpleNamespace(producer_id=pid, first_offset=first)


def _log():
    """Offsets 0-1 producer 1 (aborted), 2-3 producer 2 (committed), 4 ABORT marker of 1,
    5 COMMIT marker of 2, 6-7 a plain gzip batch, 8 producer 1 again (a later, open
    transaction)."""
    return b"".join([
        encode_batch([(b"k0", b"aborted-0"), (b"k1", b"aborted-1")], base_offset=0,
                     producer_id=1, producer_epoch=0, base_sequence=0, transactional=True),
        encode_batch([(b"k2", b"committed-2"), (None, b"committed-3", [("h", b"v")])],
                     base_offset=2, producer_id=2, producer_epoch=0, base_sequence=0,
                     transactional=True),
        encode_control_batch(ControlRecordType.ABORT, 1, 0, 0, 1000, base_offset=4),
        encode_control_batch(ControlRecordType.COMMIT, 2, 0, 0, 1000, base_offset=5),
        encode_batch([(b"k6", b"plain-6"), (b"k7", None)], base_offset=6, compression=1),
        encode_batch([(b"k8", b"open-8")], base_offset=8, producer_id=1, producer_epoch=0,
                     base_sequence=2, transactional=True),
    ])


def test_read_committed_drops_aborted_records_and_markers():
    records, next_offset = consumer_records("t", 0, _log(), 0, READ_COMMITTED, [_aborted(1, 0)])
    assert [(r.offset, r.key, r.value) for r in records] == [
        (2, b"k2", b"committed-2"), (3, None, b"committed-3"), (6, b"k6", b"plain-6"),
        (7, b"k7", None), (8, b"k8", b"open-8")]
    assert records[1].headers == [("h", b"v")]
    assert next_offset == 9


def test_read_uncommitted_keeps_aborted_records_and_still_drops_markers():
    records, next_offset = consumer_records("t", 0, _log(), 0, READ_UNCOMMITTED,
                                            [_aborted(1, 0)])
    assert [r.offset for r in records] == [0, 1, 2, 3, 6, 7, 8]
    assert next_offset == 9


def test_records_before_the_fetch_offset_are_dropped_and_markers_advance_the_position():
    records, next_offset = consumer_records("t", 0, _log(), 7, READ_UNCOMMITTED, [])
    assert [r.offset for r in records] == [7, 8]
    markers_only = encode_control_batch(ControlRecordType.COMMIT, 2, 0, 0, 1000, base_offset=5)
    records, next_offset = consumer_records("t", 0, markers_only, 5, READ_COMMITTED, [])
    assert records == [] and next_offset == 6


def test_an_abort_that_starts_later_does_not_hide_earlier_batches():
    # Producer 1's aborted transaction starts at 8: its batch at 0-1 was committed earlier.
    records, _ = consumer_records("t", 0, _log(), 0, READ_COMMITTED, [_aborted(1, 8)])
    assert [r.offset for r in records] == [0, 1, 2, 3, 6, 7]
