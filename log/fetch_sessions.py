"""Incremental fetch sessions (KIP-227), the state behind Fetch v7+.

A consumer that fetches the same partitions over and over opens a session with a full fetch
(session id 0, epoch 0); the broker remembers the partitions and their fetch positions under a new
session id, and later requests (same id, next epoch) list only partitions whose position changed,
plus `forgotten_topics_data` to drop. Responses then carry only partitions with something to say:
records, a changed high watermark, last stable offset or log start offset, or an error.

| session id | epoch | meaning                                                           |
|------------|-------|-------------------------------------------------------------------|
| 0          | -1    | sessionless full fetch (Fetch v0-6 are always this)               |
| 0          | 0     | full fetch that opens a new session                               |
| id         | -1    | close session id; this request is a sessionless full fetch        |
| id         | 0     | close session id and open a new one with this full fetch          |
| id         | n > 0 | incremental fetch: n must be the session's next expected epoch    |

The cache holds `max.incremental.fetch.session.cache.slots` sessions; when it is full the least
recently used session is evicted, so a new full fetch can always get one.

Session ids are drawn at random, as Kafka's FetchSessionCache draws them: a positive int32 not
0 and not in use. An id is all an incremental fetch presents, so a sequence would let any client
guess, read through and disturb another consumer's session.
"""

import collections
import secrets

from trioka.wire.errors import ErrorCode, KafkaError

FINAL_EPOCH = -1
INITIAL_EPOCH = 0


class CachedPartition:
    """What the session remembers of one partition: where the client reads, what it was told."""
    __slots__ = ("topic", "topic_id", "partition", "fetch_offset", "max_bytes",
                 "high_watermark", "last_stable_offset", "log_start_offset")

    def __init__(self, topic, topic_id, partition, fetch_offset, max_bytes):
        self.topic = topic
        self.topic_id = topic_id
        self.partition = partition
        self.fetch_offset = fetch_offset
        self.max_bytes = max_bytes
        # -1: never reported, so the first answer always includes the partition.
        self.high_watermark = -1
        self.last_stable_offset = -1
        self.log_start_offset = -1

    def must_report(self, has_records: bool, error: int, hw: int, lso: int, lso_start: int) -> bool:
        """Whether an incremental response must include this partition; remembers what it tells."""
        changed = (hw != self.high_watermark or lso != self.last_stable_offset
                   or lso_start != self.log_start_offset)
        if error:
            # Forget what was reported, so the partition is sent again once the error clears.
            self.high_watermark = self.last_stable_offset = self.log_start_offset = -1
            return True
        self.high_watermark, self.last_stable_offset, self.log_start_offset = hw, lso, lso_start
        return has_records or changed


class FetchSession:
    __slots__ = ("session_id", "epoch", "partitions", "uses_topic_ids")

    def __init__(self, session_id: int, uses_topic_ids: bool):
        self.session_id = session_id
        self.epoch = 1   # the epoch the next incremental request must carry
        self.partitions: collections.OrderedDict = collections.OrderedDict()
        self.uses_topic_ids = uses_topic_ids

    def next_epoch(self) -> None:
        self.epoch = 1 if self.epoch == 0x7FFFFFFF else self.epoch + 1

    def rotate(self, served: list) -> None:
        """Move partitions that returned data to the end, so others get the byte budget next."""
        for key in served:
            if key in self.partitions:
                self.partitions.move_to_end(key)


class FetchSessionCache:
    def __init__(self, slots: int):
        self.slots = slots
        self.sessions: collections.OrderedDict[int, FetchSession] = collections.OrderedDict()

    def new_session_id(self) -> int:
        """A random id in [1, 2^31 - 1] that no session in the cache has."""
        while True:
            session_id = secrets.randbelow(0x7FFFFFFF) + 1
            if session_id not in self.sessions:
                return session_id

    def new_session(self, uses_topic_ids: bool) -> FetchSession | None:
        if self.slots <= 0:
            return None
        while len(self.sessions) >= self.slots:
            self.sessions.popitem(last=False)
        session_id = self.new_session_id()
        session = FetchSession(session_id, uses_topic_ids)
        self.sessions[session_id] = session
        return session

    def remove(self, session_id: int) -> None:
        self.sessions.pop(session_id, None)

    def get(self, session_id: int, epoch: int) -> FetchSession:
        """The session of an incremental fetch; raises with the code Kafka answers otherwise."""
        session = self.sessions.get(session_id)
        if session is None:
            raise KafkaError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
                             f"Fetch session {session_id} is not known")
        if epoch != session.epoch:
            raise KafkaError(ErrorCode.INVALID_FETCH_SESSION_EPOCH,
                             f"Fetch session {session_id} expected epoch {session.epoch}, "
                             f"got {epoch}")
        self.sessions.move_to_end(session_id)
        return session
