"""Topic configs that need the records decoded on append: compression.type and compaction keys."""

import pytest

from trioka.log.files import MemoryFiles
from trioka.log.partition import PartitionLog
from trioka.log.records import decode_batch, encode_batch, iter_batches
from trioka.wire.errors import ErrorCode, KafkaError

NOW = 1_700_000_000_000


def open_log(configs):
    return PartitionLog("t", 0, "t-0", MemoryFiles(), configs, now_ms=NOW)


def stored(log) -> list:
    read = log.read(0, 1 << 20)
    return list(iter_batches(bytes(read.records)))


@pytest.mark.parametrize("produced", [0, 1, 2, 3])
def test_topic_codec_is_applied_on_append(produced):
    log = open_log({"compression.type": "zstd"})
    data = encode_batch([(b"k%d" % i, b"value-%d" % i * 20, [("h", b"x")], NOW + i)
                         for i in range(50)], compression=produced)
    result = log.append(data, now_ms=NOW)
    assert (result.base_offset, result.last_offset) == (0, 49)
    [batch] = stored(log)
    assert batch.compression == 4
    assert [r.key for r in batch.records] == [b"k%d" % i for i in range(50)]
    assert batch.records[7].value == b"value-7" * 20
    assert batch.records[7].headers == [("h", b"x")]
    assert batch.records[7].timestamp == NOW + 7


def test_producer_codec_is_kept_by_default():
    log = open_log({})
    data = encode_batch([(b"k", b"v" * 100)], compression=3)
    log.append(data, now_ms=NOW)
    [batch] = stored(log)
    assert batch.compression == 3
    assert bytes(log.read(0, 1 << 20).records)[61:] == data[61:]   # stored byte for byte


def test_uncompressed_topic_decompresses():
    log = open_log({"compression.type": "uncompressed"})
    log.append(encode_batch([(b"k", b"v" * 100)], compression=1), now_ms=NOW)
    assert decode_batch(bytes(log.read(0, 1 << 20).records)).compression == 0


def test_compacted_topic_refuses_records_without_key():
    log = open_log({"cleanup.policy": "compact"})
    log.append(encode_batch([(b"k", b"v")]), now_ms=NOW)
    with pytest.raises(KafkaError) as info:
        log.append(encode_batch([(b"k", b"v"), (None, b"no key")]), now_ms=NOW)
    assert info.value.code == ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 1
    log.append(encode_batch([(b"k", None)]), now_ms=NOW)    # a tombstone has a key: fine
    assert log.log_end_offset == 2
