"""The topics journal (log/manager.py): a topic change is one line appended to
`trioka-topics.journal` and fsync'd, not a rewrite of `trioka-topics.json`, so creating N topics
writes O(N) bytes; the file is rewritten only once the journal holds as many changes as the file
has topics, and at every start and clean shutdown. What was acknowledged survives a crash.

A crash is a manager dropped without close(): its lock released as a dying process's is.
"""

import json
import os

import pytest

from trioka.clock import ManualClock
from trioka.log.manager import TOPICS_FILE, TOPICS_JOURNAL, TOPICS_JOURNAL_MIN_LINES, LogManager

NOW = 1_700_000_000_000


def opened(path) -> LogManager:
    manager = LogManager(str(path), clock=ManualClock(NOW))
    manager.open()
    return manager


def crash(manager: LogManager) -> None:
    manager.files.unlock()


def journal_lines(path) -> list[dict]:
    with open(os.path.join(path, TOPICS_JOURNAL), "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def file_topics(path) -> dict:
    with open(os.path.join(path, TOPICS_FILE), "rb") as f:
        return json.load(f)["topics"]


def state(manager: LogManager) -> dict:
    return {t.name: (t.topic_id, t.num_partitions, t.configs) for t in manager.topics()}


def test_a_change_appends_one_line_and_the_file_is_rewritten_geometrically(tmp_path):
    manager = opened(tmp_path)
    n = 300
    file_bytes = journal_bytes = rewrites = 0
    previous_file = previous_journal = 0
    for i in range(n):
        manager.create_topic(f"t{i:03d}", 1)
        journal = os.path.getsize(tmp_path / TOPICS_JOURNAL)
        size = os.path.getsize(tmp_path / TOPICS_FILE) if (tmp_path / TOPICS_FILE).exists() else 0
        if size != previous_file:                 # the file was rewritten, the journal emptied
            rewrites += 1
            file_bytes += size
        else:
            journal_bytes += journal - previous_journal   # one line appended
        previous_file, previous_journal = size, journal
    # The file is rewritten by the change that finds the journal holding max(64, the file's
    # topics) lines: the 65th, 131st and 263rd topics; three rewrites for 300 topics.
    assert rewrites == 3
    assert len(file_topics(tmp_path)) == 263
    assert len(journal_lines(tmp_path)) == n - 263
    # O(N) bytes in all: what a rewrite per topic would have written is about N^2 / 2 entries.
    entry = size / 263
    assert file_bytes + journal_bytes < 4 * n * entry
    crash(manager)


def test_everything_acknowledged_survives_a_crash(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("a", 1)
    manager.create_topic("b", 2, {"retention.ms": "1000"})
    manager.create_topic("c", 1)
    manager.create_partitions("a", 3)
    manager.set_topic_configs("c", {"cleanup.policy": "compact"})
    manager.delete_topic("b")
    before = state(manager)
    assert [line["topic"] for line in journal_lines(tmp_path)] == ["a", "b", "c", "a", "c", "b"]
    crash(manager)
    again = opened(tmp_path)
    assert state(again) == before
    assert again.topic("c").config.compact and again.topic("b") is None
    # Opening folded the journal into the file.
    assert journal_lines(tmp_path) == [] and set(file_topics(tmp_path)) == {"a", "c"}
    again.close()


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("kept", 1, {"retention.ms": "5000"})
    crash(manager)
    with open(tmp_path / TOPICS_JOURNAL, "ab") as f:
        f.write(b'{"topic": "torn", "partitions": 1, "configs": {"retent')   # never acknowledged
    again = opened(tmp_path)
    assert again.topic("kept").configs == {"retention.ms": "5000"}
    assert again.topic("torn") is None
    again.create_topic("later", 1)
    crash(again)
    third = opened(tmp_path)
    assert {t.name for t in third.topics()} == {"kept", "later"}
    third.close()


def test_a_crash_between_the_rewrite_and_emptying_the_journal_changes_nothing(tmp_path):
    manager = opened(tmp_path)
    for i in range(10):
        manager.create_topic(f"t{i}", 1)
    manager.set_topic_configs("t3", {"retention.ms": "7"})
    manager.delete_topic("t5")
    before = state(manager)
    journal = (tmp_path / TOPICS_JOURNAL).read_bytes()
    manager.close()                            # the file now holds everything
    (tmp_path / TOPICS_JOURNAL).write_bytes(journal)   # as if the journal had not been emptied
    again = opened(tmp_path)
    assert state(again) == before
    again.close()


def test_a_clean_shutdown_leaves_every_topic_in_the_file(tmp_path):
    manager = opened(tmp_path)
    manager.create_topic("x", 2, {"segment.bytes": "2000"})
    manager.close()
    assert file_topics(tmp_path)["x"]["partitions"] == 2
    assert journal_lines(tmp_path) == []


def test_memory_files_run_the_same_journal():
    manager = LogManager(None, clock=ManualClock(NOW))
    manager.open()
    for i in range(TOPICS_JOURNAL_MIN_LINES + 5):
        manager.create_topic(f"m{i}", 1)
    assert len(manager.topics()) == TOPICS_JOURNAL_MIN_LINES + 5
    manager.close()


@pytest.mark.parametrize("count", [1, 65])
def test_a_fresh_manager_reads_file_and_journal(tmp_path, count):
    manager = opened(tmp_path)
    for i in range(count):
        manager.create_topic(f"t{i}", 1)
    before = state(manager)
    crash(manager)
    assert state(opened(tmp_path)) == before
