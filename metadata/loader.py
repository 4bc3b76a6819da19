"""Keeping a broker's metadata image current (Kafka's MetadataLoader, fed the way a KRaft
observer's Raft client feeds it).

A broker learns the cluster by following `__cluster_metadata`, the controller's log, as a Raft
observer: it fetches the log's one partition (topic id AAAAAAAAAAAAAAAAAAAAAQ, i.e. uuid 0...01,
partition 0) from the controller with Fetch, as followers fetch, naming itself in
`replica_state.replica_id` and giving the cluster id, from the offset after the last record it has
and with the epoch of that record's batch (`last_fetched_epoch`, so the leader can tell a log that
diverged). The controller holds the fetch up to `max_wait_ms` (500) while there is nothing new.

- Records are applied only up to the high watermark (committed records; a one-voter quorum
  commits as soon as it has written them), in log order, into the `MetadataImage`
  (`image.replay`), and the subscriber is told once per fetch answer that brought records
  (`publish(image, records)`), as the MetadataLoader publishes once per batch of commits.
- `caught_up` is set once the loader has applied everything up to the high watermark the
  controller reported at the first answer: the broker then knows at least what the cluster knew
  when it started (BrokerLifecycleManager waits for it before asking to be unfenced).
- The answer's `current_leader` gives the Raft epoch sent back as `current_leader_epoch`;
  FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH and NOT_LEADER_OR_FOLLOWER are retried at once with
  the epoch learnt. A `diverging_epoch` says the controller's log no longer holds what was
  applied past its `end_offset`: an image cannot take records back, so the loader builds a new
  image from the start of the log (Kafka's loader would load a snapshot) and publishes that.
  So it does when the controller's log no longer holds what was applied in other ways: a high
  watermark below the records applied, or no records at all from an offset below the high
  watermark (the controller knows none of our epochs: the log was lost and written anew).
- A `snapshot_id` answer (the log no longer starts where the loader must read) would need
  FetchSnapshot, which trioka's controller never requires (it keeps its whole metadata log): it
  is reported in `last_error` and retried.
- An unreachable controller (`NodeUnreachable`) or an error answer is retried after a backoff
  that doubles from 100 ms up to 1 s (Kafka's replica.fetch.backoff.ms).
- A record the image cannot apply is logged and skipped, as Kafka's loader hands it to a
  non-fatal fault handler; the loader goes on with the next.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import trio

from trioka.metadata.batches import batch_epochs, decode_batches
from trioka.metadata.image import MetadataImage
from trioka.metadata.records import MetadataRecord
from trioka.node.channel import NodeChannel, NodeUnreachable
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.metadata.loader")

METADATA_TOPIC = "__cluster_metadata"
METADATA_TOPIC_ID = uuid.UUID(int=1)          # Kafka's Topic.CLUSTER_METADATA_TOPIC_ID
METADATA_PARTITION = 0
FETCH_MAX_BYTES = 8 * 1024 * 1024             # KafkaRaftClient's MAX_FETCH_SIZE_BYTES
INITIAL_BACKOFF_MS = 100
MAX_BACKOFF_MS = 1000
MIN_FETCH_INTERVAL_MS = 50                    # answers that bring nothing: at most 20 a second

# Partition errors that only mean "ask again with the epoch the answer gives".
EPOCH_ERRORS = frozenset({ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH,
                          ErrorCode.NOT_LEADER_OR_FOLLOWER})


class MetadataLoader:
    """Follows `__cluster_metadata` on the controller and keeps `image` current."""

    def __init__(self, *, node_id: int, cluster_id: str | None, channel: NodeChannel, clock,
                 publish: Callable[[MetadataImage, list[MetadataRecord]], None],
                 fetch_max_wait_ms: int = 500):
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.channel = channel
        self.clock = clock
        self.publish = publish
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.image = MetadataImage()
        self.next_offset = 0                  # the offset after the last record applied
        self.last_fetched_epoch = -1          # the Raft epoch of that record's batch
        self.high_watermark = -1              # as the controller last reported it
        self.leader_epoch = -1                # the Raft epoch of the controller, once known
        self.caught_up = trio.Event()
        self.catch_up_offset: int | None = None   # the high watermark of the first answer
        self.fetches = 0
        self.replay_errors = 0
        self.reloads = 0
        self.last_error: str | None = None
        self._backoff_ms = 0

    def __repr__(self) -> str:
        return (f"MetadataLoader(node {self.node_id}, next offset {self.next_offset}, "
                f"high watermark {self.high_watermark})")

    # -- requests and answers (plain defs: the state changes) --

    def fetch_request(self):
        Request = protocol.request_class(ApiKey.FETCH)
        partition = Request.FetchTopic.FetchPartition(
            partition=METADATA_PARTITION, current_leader_epoch=self.leader_epoch,
            fetch_offset=self.next_offset, last_fetched_epoch=self.last_fetched_epoch,
            log_start_offset=-1, partition_max_bytes=FETCH_MAX_BYTES)
        return Request(
            cluster_id=self.cluster_id, replica_id=self.node_id,
            replica_state=Request.ReplicaState(replica_id=self.node_id, replica_epoch=-1),
            max_wait_ms=self.fetch_max_wait_ms, min_bytes=1, max_bytes=FETCH_MAX_BYTES,
            isolation_level=0, session_id=0, session_epoch=-1,
            topics=[Request.FetchTopic(topic=METADATA_TOPIC, topic_id=METADATA_TOPIC_ID,
                                       partitions=[partition])],
            forgotten_topics_data=[], rack_id="")

    def handle_response(self, response) -> bool:
        """Apply one Fetch answer; True when it moved the loader on (records applied, or an
        epoch to retry with at once), False when the next fetch should back off."""
        if response.error_code:
            return self._failed(f"Fetch of {METADATA_TOPIC} refused: "
                                f"{_error_name(response.error_code)}")
        data = self._partition_of(response)
        if data is None:
            return self._failed(f"the Fetch answer has no {METADATA_TOPIC}-0")
        known_epoch = self.leader_epoch
        leader = data.current_leader
        if leader is not None and leader.leader_epoch is not None and leader.leader_epoch >= 0:
            self.leader_epoch = leader.leader_epoch
        if data.error_code in EPOCH_ERRORS:
            error = self._failed(f"Fetch of {METADATA_TOPIC}-0: {_error_name(data.error_code)}")
            return self.leader_epoch != known_epoch or error   # a new epoch: ask again at once
        if data.error_code:
            return self._failed(f"Fetch of {METADATA_TOPIC}-0: {_error_name(data.error_code)}")
        diverging = data.diverging_epoch
        if diverging is not None and diverging.epoch is not None and diverging.epoch >= 0 \
                and diverging.end_offset is not None and diverging.end_offset >= 0:
            self._reload(f"the controller's log diverges from offset {diverging.end_offset} "
                         f"(epoch {diverging.epoch})")
            return True
        snapshot = data.snapshot_id
        if snapshot is not None and snapshot.end_offset is not None and snapshot.end_offset >= 0:
            return self._failed(f"the controller asks for its snapshot at offset "
                                f"{snapshot.end_offset}; trioka fetches no snapshots")
        if data.high_watermark < self.next_offset:
            self._reload(f"the controller's high watermark {data.high_watermark} is below the "
                         f"records applied here (up to {self.next_offset - 1})")
            return True
        self.high_watermark = data.high_watermark
        if self.catch_up_offset is None:
            self.catch_up_offset = data.high_watermark
        try:
            applied = self._apply(data.records, data.high_watermark)
        except (KafkaError, ValueError) as e:
            return self._failed(f"bad records in the Fetch answer: {e}")
        if not applied and data.high_watermark > self.next_offset:
            # Committed records are there but none came: the controller found our epoch in
            # none of its own (a diverging epoch that cannot be told on the wire).
            if self.next_offset == 0:
                return self._failed(f"no records from offset 0 below the high watermark "
                                    f"{data.high_watermark}")
            self._reload(f"no records from offset {self.next_offset} (epoch "
                         f"{self.last_fetched_epoch}) below the high watermark "
                         f"{data.high_watermark}")
            return True
        self.last_error = None
        self._backoff_ms = 0
        if not self.caught_up.is_set() and self.next_offset >= self.catch_up_offset:
            log.info("node %d: metadata caught up at offset %d", self.node_id, self.next_offset)
            self.caught_up.set()
        if applied:
            self.publish(self.image, applied)
        return bool(applied)

    def _partition_of(self, response):
        for topic in response.responses or []:
            if topic.topic_id == METADATA_TOPIC_ID or topic.topic == METADATA_TOPIC:
                for partition in topic.partitions or []:
                    if partition.partition_index == METADATA_PARTITION:
                        return partition
        return None

    def _apply(self, records, high_watermark: int) -> list[MetadataRecord]:
        """Replay the records from next_offset below the high watermark; the ones applied."""
        if not records:
            return []
        epochs = list(batch_epochs(records))
        applied = []
        for offset, record in decode_batches(records):
            if offset < self.next_offset:
                continue        # a batch we had part of already
            if offset >= high_watermark:
                break           # not committed yet: fetched again once it is
            try:
                self.image.replay(record.record_type, record.message, offset)
            except Exception as e:      # noqa: BLE001 (Kafka's non-fatal fault handler)
                self.replay_errors += 1
                log.error("node %d: error replaying metadata log record at offset %d: %r",
                          self.node_id, offset, e)
            applied.append(record)
            self.next_offset = offset + 1
            self.last_fetched_epoch = _epoch_of(epochs, offset, self.last_fetched_epoch)
        return applied

    def _reload(self, why: str) -> None:
        log.warning("node %d: %s; loading the metadata again from the start", self.node_id, why)
        self.last_error = why
        self.reloads += 1
        self.image = MetadataImage()
        self.next_offset = 0
        self.last_fetched_epoch = -1

    def _failed(self, what: str) -> bool:
        self.last_error = what
        return False

    def next_backoff_ms(self) -> int:
        self._backoff_ms = min(MAX_BACKOFF_MS, max(INITIAL_BACKOFF_MS, self._backoff_ms * 2))
        return self._backoff_ms

    # -- the task --

    async def run(self) -> None:
        """Fetch and apply until cancelled."""
        while True:
            started = self.clock.monotonic()
            self.fetches += 1
            try:
                response = await self.channel.request(ApiKey.FETCH, self.fetch_request(),
                                                      quiet_ms=self.fetch_max_wait_ms)
            except NodeUnreachable as e:
                self._failed(f"Fetch of {METADATA_TOPIC}: {e}")
                delay_ms = self.next_backoff_ms()
                log.debug("node %d: %s; retrying in %d ms", self.node_id, self.last_error,
                          delay_ms)
                await self.clock.sleep(delay_ms / 1000)
                continue
            if self.handle_response(response):
                continue
            if self.last_error is not None:
                delay_ms = self.next_backoff_ms()
                log.warning("node %d: %s; retrying in %d ms", self.node_id, self.last_error,
                            delay_ms)
                await self.clock.sleep(delay_ms / 1000)
            else:
                # Nothing new: the controller held the fetch already; an answer that came back
                # at once is not asked again sooner than MIN_FETCH_INTERVAL_MS.
                await self.clock.sleep_until(started + MIN_FETCH_INTERVAL_MS / 1000)


def _epoch_of(epochs, offset: int, default: int) -> int:
    for base, last, epoch in epochs:
        if base <= offset <= last:
            return epoch
    return default


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"
