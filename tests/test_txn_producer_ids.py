"""Producer ids (txn/producer_ids.py): a block is reserved in `producer-id-block` through the log
dir's files (temp file, fsync, rename, directory fsync), so no id is handed out twice across
restarts, and a failed write is the log dir's KAFKA_STORAGE_ERROR."""

import os

import pytest

from trioka.log.files import DiskFiles, MemoryFiles
from trioka.txn.producer_ids import BLOCK_SIZE, FILE_NAME, ProducerIdManager
from trioka.wire.errors import ErrorCode, KafkaError


def test_ids_are_never_reused_across_restarts(tmp_path):
    seen = []
    for _ in range(3):
        ids = ProducerIdManager(str(tmp_path))
        ids.open()
        seen += [ids.generate() for _ in range(5)]
    assert len(set(seen)) == len(seen)
    assert seen[5] == BLOCK_SIZE and seen[10] == 2 * BLOCK_SIZE
    assert open(tmp_path / FILE_NAME).read() == f"{3 * BLOCK_SIZE}\n"
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]      # no temporary file left


def test_the_block_goes_through_the_log_dirs_files(tmp_path):
    files = DiskFiles(str(tmp_path))
    ids = ProducerIdManager(None, files=files)
    ids.open()
    assert ids.generate() == 0
    assert files.read_small(FILE_NAME) == f"{BLOCK_SIZE}\n".encode()
    os.remove(tmp_path / FILE_NAME)
    os.mkdir(tmp_path / FILE_NAME)     # the rename over it fails: the dir goes offline
    for _ in range(BLOCK_SIZE - 1):    # the rest of the block, then the next one is needed
        ids.generate()
    with pytest.raises(KafkaError) as info:
        ids.generate()
    assert info.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    assert files.failure_channel.offline


def test_in_memory_ids_start_from_zero():
    ids = ProducerIdManager(None, files=MemoryFiles())
    ids.open()
    assert [ids.generate() for _ in range(3)] == [0, 1, 2]
