"""The replica fetcher: how a follower copies its leader's log (Kafka's ReplicaFetcherThread).

One fetcher runs per leader this node follows, over its own connection to that leader's
inter-broker listener. Each round:

1. Partitions TRUNCATING (a new leader epoch, or a restart) ask the leader OffsetForLeaderEpoch
   with the latest epoch in their own log and truncate where replica/truncation.py says
   (KIP-101, KIP-279: by leader epoch, never by the high watermark alone); a partition whose
   log has no epoch truncates to its high watermark.
2. Partitions FETCHING send one Fetch with this node's replica id and broker epoch
   (ReplicaState, KIP-903), from their log end offset, long-polling up to
   replica.fetch.wait.max.ms for replica.fetch.min.bytes; the records are appended as they are
   (offsets and epochs the leader gave them; a large append while the disk stalls is written
   from a worker thread, as a leader's is, log/partition.py) and the leader's high watermark
   and log start offset are taken.

Errors per partition, as Kafka's fetcher handles them:

| error                                          | the follower                               |
|------------------------------------------------|--------------------------------------------|
| NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,   | is left out until the metadata changes or  |
| UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION | replica.fetch.backoff.ms has passed (the |
|                                                | leader may not have seen its new epoch)   |
| OFFSET_OUT_OF_RANGE                            | below the leader's log start: starts over  |
|                                                | there; otherwise truncates by epoch again  |
| anything else                                  | retries after replica.fetch.backoff.ms     |

The leader unreachable (down, isolated): the whole round waits replica.fetch.backoff.ms and
tries again. A node made slow (node controls) delays each of its fetches by that much.
"""

import logging

from trioka.node.threads import InThread
from trioka.replica import truncation
from trioka.replica.partition_state import FetchState
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import request_class

log = logging.getLogger("trioka.replica")

FetchRequest = request_class(ApiKey.FETCH)
EpochRequest = request_class(ApiKey.OFFSET_FOR_LEADER_EPOCH)

class ReplicaFetcher:
    """Fetches every partition this node follows from `leader_id` over `channel` (a
    NodeChannel). `broker_epoch()` is this node's; `controls` (NodeControls or None) may slow
    it."""

    def __init__(self, *, node_id: int, leader_id: int, channel, replicas, clock, config,
                 broker_epoch, controls=None):
        self.node_id = node_id
        self.leader_id = leader_id
        self.channel = channel
        self.replicas = replicas
        self.clock = clock
        self.config = config
        self.broker_epoch = broker_epoch
        self.controls = controls
        # (topic, index, leader epoch) of partitions that wait for new metadata -> the time
        # (monotonic) they are tried again anyway.
        self.stalled: dict = {}

    def _partitions(self):
        now = self.clock.monotonic()
        self.stalled = {key: until for key, until in self.stalled.items()
                        if until > now and self._still_stalled(key)}
        return [hosted for hosted in self.replicas.follower_partitions(self.leader_id)
                if (hosted.topic, hosted.index, hosted.state.leader_epoch) not in self.stalled]

    async def run(self) -> None:
        """Fetch until no partition follows this leader any more (the caller starts a new
        fetcher when one does again)."""
        backoff = self.config.replica_fetch_backoff_ms / 1000
        while True:
            partitions = self._partitions()
            if not self.replicas.follower_partitions(self.leader_id):
                return
            if not partitions:
                with self.clock.move_on_after(backoff):
                    await self.replicas.follower_change.wait()
                continue
            try:
                if self.controls is not None and self.controls.slow_ms:
                    await self.clock.sleep(self.controls.slow_ms / 1000)
                truncating = [h for h in partitions
                              if h.state.fetch_state is FetchState.TRUNCATING]
                if truncating:
                    await self._truncate(truncating)
                    continue
                await self._fetch(partitions)
            except OSError as e:
                log.info("Fetch from leader %d failed: %s; retrying in %g s", self.leader_id, e,
                         backoff)
                await self.clock.sleep(backoff)

    def _still_stalled(self, key) -> bool:
        topic, index, epoch = key
        hosted = self.replicas.partitions.get((topic, index))
        return hosted is not None and hosted.state.leader_epoch == epoch and \
            hosted.state.leader_id == self.leader_id

    def _stall(self, hosted, error) -> None:
        """Delay the partition replica.fetch.backoff.ms, or until new metadata gives it another
        leader epoch (the answer to NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, ...)."""
        try:
            name = ErrorCode(error).name
        except ValueError:      # a code newer than this codec
            name = f"error code {error}"
        log.info("%s-%d: leader %d answered %s; retrying in %d ms or on new metadata",
                 hosted.topic, hosted.index, self.leader_id, name,
                 self.config.replica_fetch_backoff_ms)
        self.stalled[(hosted.topic, hosted.index, hosted.state.leader_epoch)] = \
            self.clock.monotonic() + self.config.replica_fetch_backoff_ms / 1000

    # ---------------------------------------------------------------------- truncation

    async def _truncate(self, partitions) -> None:
        asked = {}
        by_topic: dict = {}
        for hosted in partitions:
            epoch = truncation.latest_epoch(hosted.log)
            if epoch is None:
                self.replicas.truncate(hosted, truncation.truncation_without_epochs(
                    hosted.state.fetch_offset))
                continue
            asked[(hosted.topic, hosted.index)] = (hosted, hosted.state.leader_epoch)
            by_topic.setdefault(hosted.topic, []).append(
                EpochRequest.OffsetForLeaderTopic.OffsetForLeaderPartition(
                    partition=hosted.index, current_leader_epoch=hosted.state.leader_epoch,
                    leader_epoch=epoch))
        if not by_topic:
            return
        request = EpochRequest(replica_id=self.node_id, topics=[
            EpochRequest.OffsetForLeaderTopic(topic=topic, partitions=parts)
            for topic, parts in by_topic.items()])
        response = await self.channel.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, request)
        for topic in response.topics:
            for p in topic.partitions:
                entry = asked.get((topic.topic, p.partition))
                if entry is None:
                    continue
                hosted, epoch = entry
                if self.replicas.partitions.get((hosted.topic, hosted.index)) is not hosted or \
                        hosted.state.leader_epoch != epoch:
                    continue   # the metadata moved on meanwhile
                if p.error_code:
                    # Any error delays the partition (Kafka's delayPartitions), so a refusal
                    # (an authorization failure) is not asked again in a tight loop.
                    self._stall(hosted, p.error_code)
                    continue
                state = truncation.offset_truncation_state(
                    hosted.log, truncation.EpochEndOffset(p.leader_epoch, p.end_offset),
                    hosted.state.fetch_offset)
                self.replicas.truncate(hosted, state)

    # --------------------------------------------------------------------------- fetching

    async def _fetch(self, partitions) -> None:
        sent = {}
        by_topic: dict = {}
        for hosted in partitions:
            plog = hosted.log
            # By topic id (v13+ answers) and by name (earlier versions).
            sent[hosted.topic_id, hosted.index] = sent[hosted.topic, hosted.index] = (
                hosted, hosted.state.leader_epoch, plog.log_end_offset)
            by_topic.setdefault((hosted.topic, hosted.topic_id), []).append(
                FetchRequest.FetchTopic.FetchPartition(
                    partition=hosted.index, current_leader_epoch=hosted.state.leader_epoch,
                    fetch_offset=plog.log_end_offset, last_fetched_epoch=-1,
                    log_start_offset=plog.log_start_offset,
                    partition_max_bytes=self.config.replica_fetch_max_bytes))
        broker_epoch = self.broker_epoch()
        request = FetchRequest(
            replica_id=self.node_id,
            replica_state=FetchRequest.ReplicaState(replica_id=self.node_id,
                                                    replica_epoch=broker_epoch),
            max_wait_ms=self.config.replica_fetch_wait_max_ms,
            min_bytes=self.config.replica_fetch_min_bytes,
            max_bytes=self.config.replica_fetch_response_max_bytes, isolation_level=0,
            session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=topic, topic_id=topic_id, partitions=parts)
                    for (topic, topic_id), parts in by_topic.items()],
            forgotten_topics_data=[], rack_id="")
        timeout_ms = self.config.replica_fetch_wait_max_ms + \
            self.config.replica_socket_timeout_ms
        response = await self.channel.request(ApiKey.FETCH, request, timeout_ms=timeout_ms,
                                              quiet_ms=self.config.replica_fetch_wait_max_ms)
        if response.error_code:
            raise OSError(f"Fetch from leader {self.leader_id}: "
                          f"{ErrorCode(response.error_code).name}")
        for topic in response.responses:
            for p in topic.partitions:
                entry = sent.get((topic.topic_id, p.partition_index)) or \
                    sent.get((topic.topic, p.partition_index))
                if entry is None:
                    continue
                hosted, epoch, fetch_offset = entry
                if self.replicas.partitions.get((hosted.topic, hosted.index)) is not hosted or \
                        hosted.state.leader_epoch != epoch or \
                        hosted.log.log_end_offset != fetch_offset or \
                        hosted.state.fetch_state is not FetchState.FETCHING:
                    continue   # the metadata or the log moved on meanwhile
                await self._fetched(hosted, p)

    async def _fetched(self, hosted, p) -> None:
        error = p.error_code
        if error == ErrorCode.NONE:
            try:
                begun = self.replicas.begin_append_fetched(hosted, p.records)
                if begun is not None:
                    # A large write while the disk stalls: from a worker thread (started in
                    # this step, see apis/produce.append_records), the loop serving meanwhile.
                    # The fetched bytes are the answer's own (node/channel.py copies each).
                    epoch = hosted.state.leader_epoch
                    await InThread(begun.write).result()
                    hosted.log.end_append(begun)
                    if self.replicas.partitions.get((hosted.topic, hosted.index)) is not \
                            hosted or hosted.state.leader_epoch != epoch:
                        return   # the metadata moved on meanwhile: not this leader's offsets
                self.replicas.take_leader_offsets(hosted, leader_high_watermark=p.high_watermark,
                                                  leader_log_start_offset=p.log_start_offset)
            except Exception as e:   # a corrupt fetch: log it, fetch again
                log.warning("%s-%d: cannot append what leader %d sent: %s", hosted.topic,
                            hosted.index, self.leader_id, e)
            return
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            if p.log_start_offset > hosted.log.log_end_offset:
                self.replicas.truncate_fully_and_start_at(hosted, p.log_start_offset)
            else:
                hosted.state.fetch_state = FetchState.TRUNCATING
            return
        # Any other error delays the partition (Kafka's handlePartitionsWithErrors).
        self._stall(hosted, error)
