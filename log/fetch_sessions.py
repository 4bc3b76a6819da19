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

An incremental fetch does work in proportion to what changed, not to the session's size: each
cached partition is registered with its partition log (PartitionLog.add_waiter) and, when the log
changes (an append, a marker, the high watermark, last stable offset or log start offset moving,
truncation, deletion), marks itself `changed` in its session and wakes the fetches waiting on the
session. A fetch examines only the changed partitions and those its request names, in session
order; any other partition would read no records and report nothing new, so leaving it out
changes nothing in the response. A partition stays changed while it has something to say at its
next fetch: records at or above its fetch offset (the client may not have moved, or the byte
budget ran out), or an error. Kafka's FetchSession walks every partition of the session instead
(cachedPartitions in FetchSession.scala); the response is the same.
"""

import collections
import secrets

from trioka.wire.errors import ErrorCode, KafkaError

FINAL_EPOCH = -1
INITIAL_EPOCH = 0


class CachedPartition:
    """What the session remembers of one partition: where the client reads, what it was told."""
    __slots__ = ("topic", "topic_id", "partition", "fetch_offset", "max_bytes",
                 "high_watermark", "last_stable_offset", "log_start_offset",
                 "session", "log", "order")

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
        self.session: "FetchSession | None" = None   # the session holding it, if any
        self.log = None     # the PartitionLog it is registered with, to hear of its changes
        self.order = 0      # its place in the session's order (higher: later)

    def set(self) -> None:
        """The partition log changed (PartitionLog.wake_waiters, which also forgets this
        registration): the session examines the partition at its next fetch."""
        self.log = None
        if self.session is not None:
            self.session.partition_changed(self)

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
    __slots__ = ("session_id", "epoch", "partitions", "uses_topic_ids", "changed", "waiters",
                 "next_order", "leader_epoch", "closed", "partitions_examined")

    def __init__(self, session_id: int, uses_topic_ids: bool):
        self.session_id = session_id
        self.epoch = 1   # the epoch the next incremental request must carry
        self.partitions: collections.OrderedDict = collections.OrderedDict()
        self.uses_topic_ids = uses_topic_ids
        # The cached partitions the next fetch must examine (see the module docstring).
        self.changed: set[CachedPartition] = set()
        # Long-polling fetches of this session (anything with `set()`), set at the next change
        # of any of its partitions: one registration per waiting fetch, not one per partition.
        self.waiters: set = set()
        self.next_order = 0
        self.leader_epoch: int | None = None    # the broker's, when the session last looked
        self.closed = False
        # Partition reads this session's fetches have done, all passes counted: what a fetch
        # costs, for anyone checking that it follows the changes and not the session's size.
        self.partitions_examined = 0

    def next_epoch(self) -> None:
        self.epoch = 1 if self.epoch == 0x7FFFFFFF else self.epoch + 1

    def add(self, key, partition: CachedPartition) -> None:
        """A partition joins the session at its end (replacing one of the same key: a request
        naming a partition twice keeps the last); its first fetch examines it."""
        self.forget(key)
        partition.session = self
        partition.order = self.next_order
        self.next_order += 1
        self.partitions[key] = partition
        self.changed.add(partition)

    def update(self, partition: CachedPartition, fetch_offset: int, max_bytes: int) -> None:
        """The request names a partition of the session again (its position or limits moved)."""
        partition.fetch_offset = fetch_offset
        partition.max_bytes = max_bytes
        self.changed.add(partition)

    def forget(self, key) -> None:
        """forgotten_topics_data: the partition leaves the session."""
        partition = self.partitions.pop(key, None)
        if partition is not None:
            self.changed.discard(partition)
            self._detach(partition)

    def close(self) -> None:
        """The session leaves the cache: its partitions stop listening to their logs. A fetch of
        it still in flight is woken; it then reads and waits as a sessionless fetch does."""
        self.closed = True
        for partition in self.partitions.values():
            self._detach(partition)
        self.partition_changed(None)

    @staticmethod
    def _detach(partition: CachedPartition) -> None:
        if partition.log is not None:
            partition.log.remove_waiter(partition)
            partition.log = None
        partition.session = None

    def partition_changed(self, partition: CachedPartition | None) -> None:
        if partition is not None:
            self.changed.add(partition)
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for waiter in waiters:
                waiter.set()

    def to_examine(self, leader_epoch: int, full: list | None = None) -> list:
        """The partitions a fetch reads now. A full fetch reads what it requested (`full`, in
        its order); an incremental one, in session order, the partitions changed since the
        last response and those the request named, or every partition when the broker's leader
        epoch moved (a partition's `current_leader_epoch` is checked against it)."""
        if full is not None:
            wanted = full
        else:
            if leader_epoch != self.leader_epoch:
                self.changed.update(self.partitions.values())
            wanted = sorted(self.changed, key=_in_session_order)
        self.leader_epoch = leader_epoch
        self.partitions_examined += len(wanted)
        return wanted

    def listen(self, partition: CachedPartition, log) -> None:
        """Register a partition just read with its log (again: a change forgets registrations),
        or with none when it could not be read (it then has an error and stays changed)."""
        if partition.session is not self:
            return      # the session is closed, or a request named the partition twice
        if partition.log is not log and partition.log is not None:
            partition.log.remove_waiter(partition)
        partition.log = log
        if log is not None:
            log.add_waiter(partition)

    def answered(self, partition: CachedPartition, error: int, high_watermark: int) -> None:
        """After a response: the partition needs no new look until its log changes, unless it
        has an error to repeat or records at or above its fetch offset (it stays changed)."""
        if not error and partition.fetch_offset >= high_watermark:
            self.changed.discard(partition)

    def rotate(self, served: list) -> None:
        """Move partitions that returned data to the end, so others get the byte budget next."""
        for key in served:
            partition = self.partitions.get(key)
            if partition is not None:
                self.partitions.move_to_end(key)
                partition.order = self.next_order
                self.next_order += 1


def _in_session_order(partition: CachedPartition) -> int:
    return partition.order


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
            self.sessions.popitem(last=False)[1].close()
        session_id = self.new_session_id()
        session = FetchSession(session_id, uses_topic_ids)
        self.sessions[session_id] = session
        return session

    def remove(self, session_id: int) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()

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
