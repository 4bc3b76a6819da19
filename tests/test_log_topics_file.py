"""trioka-topics.json that cannot be wholly read loses nothing (log/manager.py).

Before, one override failing validation dropped all of its topic's overrides and wrote the loss
back (a compacted topic silently became a 7-day delete topic), and an unreadable file was replaced
by one without any override. Now: what is valid applies, what is not is kept verbatim in the file
and named in a warning, retention leaves such a topic alone until its configs are altered, and
an unreadable file is kept as it is, then set aside before the file is next written.

Topic changes go to `trioka-topics.journal` first; a clean shutdown folds them into the file, so
the tests read the file after one.
"""

import json
import logging
import os

from record_batches import make_batch
from trioka.clock import ManualClock
from trioka.log.manager import TOPICS_FILE, UNREADABLE_TOPICS_FILE, LogManager

NOW = 1_700_000_000_000
DAY = 86_400_000


def open_logs(root) -> LogManager:
    logs = LogManager(str(root), clock=ManualClock(NOW))
    logs.open()
    return logs


def read_document(root) -> dict:
    with open(os.path.join(root, TOPICS_FILE)) as f:
        return json.load(f)


def edit_configs(root, topic: str, configs: dict) -> None:
    document = read_document(root)
    document["topics"][topic]["configs"] = configs
    with open(os.path.join(root, TOPICS_FILE), "w") as f:
        json.dump(document, f)


def old_data(logs, topic: str) -> None:
    """A segment of records a month old, then a roll: retention.ms (7 days) would delete it."""
    log = logs.partition(topic, 0)
    log.append(make_batch([b"k"], keys=[b"k"], base_timestamp=NOW - 30 * DAY), now_ms=NOW)
    log.roll(NOW)


def test_an_override_failing_validation_is_kept_and_the_others_applied(tmp_path, caplog):
    logs = open_logs(tmp_path)
    logs.create_topic("state", 1, {"cleanup.policy": "compact", "retention.ms": "-1"},
                      now_ms=NOW)
    old_data(logs, "state")
    logs.close()
    # A value this broker refuses (a newer version's, or a hand edit), next to valid ones.
    edit_configs(tmp_path, "state", {"cleanup.policy": "compact,archive", "retention.ms": "-1",
                                     "segment.bytes": 1048576})
    before = read_document(tmp_path)

    with caplog.at_level(logging.WARNING, logger="trioka.log"):
        logs = open_logs(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("state" in w and "cleanup.policy" in w and "compact,archive" in w
               for w in warnings), warnings
    topic = logs.topic("state")
    assert topic.configs == {"retention.ms": "-1", "segment.bytes": "1048576"}
    assert topic.config.retention_ms == -1 and topic.config.segment_bytes == 1048576
    assert topic.ignored_configs == {"cleanup.policy": "compact,archive"}
    assert read_document(tmp_path) == before            # the file is not rewritten at all
    # With its cleanup.policy unknown, retention keeps its hands off the topic.
    assert logs.delete_old_segments(NOW) == 0
    assert len(logs.partition("state", 0).segments) == 2

    # Other changes keep the value verbatim in the file.
    logs.create_topic("other", 1, now_ms=NOW)
    logs.set_topic_configs("state", {"retention.ms": "-1", "segment.bytes": "2097152"})
    assert logs.topic("state").overrides_unknown
    logs.close()
    stored = read_document(tmp_path)["topics"]["state"]["configs"]
    assert stored == {"cleanup.policy": "compact,archive", "retention.ms": "-1",
                      "segment.bytes": "2097152"}
    # Setting the key itself is the admin's decision: from then on the topic is whole again.
    logs = open_logs(tmp_path)
    logs.set_topic_configs("state", {"cleanup.policy": "compact", "retention.ms": "-1"})
    assert not logs.topic("state").overrides_unknown
    logs.close()
    assert read_document(tmp_path)["topics"]["state"]["configs"] == {
        "cleanup.policy": "compact", "retention.ms": "-1"}


def test_a_compacted_topic_never_becomes_a_delete_topic(tmp_path):
    logs = open_logs(tmp_path)
    logs.create_topic("state", 1, {"cleanup.policy": "compact"}, now_ms=NOW)
    old_data(logs, "state")
    logs.close()
    edit_configs(tmp_path, "state", {"cleanup.policy": "compact", "unknown.key": "1"})
    for _ in range(2):                                   # and again after a restart
        logs = open_logs(tmp_path)
        assert logs.topic("state").config.compact
        assert logs.topic("state").configs == {"cleanup.policy": "compact"}
        assert logs.delete_old_segments(NOW) == 0
        logs.close()
    assert read_document(tmp_path)["topics"]["state"]["configs"] == {
        "cleanup.policy": "compact", "unknown.key": "1"}


def test_an_unreadable_file_is_kept_and_set_aside_before_it_is_replaced(tmp_path, caplog):
    logs = open_logs(tmp_path)
    logs.create_topic("state", 2, {"cleanup.policy": "compact"}, now_ms=NOW)
    old_data(logs, "state")
    logs.close()
    path = os.path.join(tmp_path, TOPICS_FILE)
    with open(path, "rb") as f:
        damaged = f.read()[:-20]                        # cut: not JSON any more
    with open(path, "wb") as f:
        f.write(damaged)

    with caplog.at_level(logging.WARNING, logger="trioka.log"):
        logs = open_logs(tmp_path)
    assert any(TOPICS_FILE in r.getMessage() for r in caplog.records)
    # The topic is adopted from its partition dirs (same id, same partitions) ...
    topic = logs.topic("state")
    assert topic.num_partitions == 2 and topic.overrides_unknown
    # ... the file is left as it was, and retention leaves the topic alone.
    with open(path, "rb") as f:
        assert f.read() == damaged
    assert logs.delete_old_segments(NOW) == 0
    # A change goes to the journal; the file is kept as it was ...
    logs.create_topic("new", 1, now_ms=NOW)
    with open(path, "rb") as f:
        assert f.read() == damaged
    logs.close()
    # ... until it is rewritten (here at the clean shutdown), the unreadable bytes set aside
    # first.
    with open(os.path.join(tmp_path, UNREADABLE_TOPICS_FILE), "rb") as f:
        assert f.read() == damaged
    document = read_document(tmp_path)["topics"]
    assert set(document) == {"state", "new"}
    # That the topic's overrides are unknown is kept too: retention still leaves it alone after
    # the restart, until its configs are altered.
    assert document["state"]["configs_unknown"] is True and "configs_unknown" not in \
        document["new"]
    # Restarting with a good file again: the file set aside is not touched.
    logs = open_logs(tmp_path)
    assert set(t.name for t in logs.topics()) == {"state", "new"}
    assert logs.topic("state").overrides_unknown and logs.delete_old_segments(NOW) == 0
    logs.set_topic_configs("state", {"cleanup.policy": "compact"})
    assert not logs.topic("state").overrides_unknown
    logs.close()
    assert "configs_unknown" not in read_document(tmp_path)["topics"]["state"]
    with open(os.path.join(tmp_path, UNREADABLE_TOPICS_FILE), "rb") as f:
        assert f.read() == damaged


def test_a_damaged_entry_keeps_the_file_aside(tmp_path, caplog):
    logs = open_logs(tmp_path)
    logs.create_topic("a", 1, {"retention.ms": "1000"}, now_ms=NOW)
    logs.create_topic("b", 1, {"retention.ms": "2000"}, now_ms=NOW)
    logs.close()
    document = read_document(tmp_path)
    document["topics"]["a"]["partitions"] = "three"
    document["topics"]["b"]["configs"] = ["not", "a", "map"]
    original = json.dumps(document).encode()
    with open(os.path.join(tmp_path, TOPICS_FILE), "wb") as f:
        f.write(original)
    with caplog.at_level(logging.WARNING, logger="trioka.log"):
        logs = open_logs(tmp_path)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "topic a" in messages and "topic b" in messages
    assert logs.topic("a").num_partitions == 1
    assert logs.topic("a").config.retention_ms == 1000
    assert logs.topic("b").overrides_unknown
    logs.create_topic("c", 1, now_ms=NOW)
    logs.close()
    with open(os.path.join(tmp_path, UNREADABLE_TOPICS_FILE), "rb") as f:
        assert f.read() == original
    assert read_document(tmp_path)["topics"]["b"]["configs"] == {}
    assert read_document(tmp_path)["topics"]["b"]["configs_unknown"] is True
