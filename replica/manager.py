"""ReplicaManager: the replicas a node of a cluster holds, leader or follower (Kafka's
ReplicaManager with its BrokerMetadataPublisher side).

The metadata image says, for every partition, its replicas, ISR, leader and epochs. After each
batch of records the MetadataLoader replays, `publish` brings this node in line with it, per
partition of which this node is a replica:

| the image says                       | this node                                              |
|--------------------------------------|--------------------------------------------------------|
| a replica here, led here             | opens (or creates) the log; `Partition.make_leader`;   |
|                                      | a new leader epoch starts at the log end offset in the |
|                                      | leader-epoch cache before anything is written          |
| a replica here, led elsewhere        | opens the log; `Partition.make_follower`; its fetcher  |
|                                      | (one per leader, replica/fetcher.py) truncates by      |
|                                      | leader epoch, then fetches                             |
| a replica here, no leader            | a follower of nobody: nothing is fetched               |
| no longer a replica here             | the log is closed and its dir removed                  |
| the topic is gone                    | every log of it is closed and removed                  |

The leader side:
- Produce: `check_append` (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS under
  min.insync.replicas for acks=all), the append, then `appended` (the HW may move at once when
  the ISR is the leader alone), and for acks=all `wait_for_replicas` until the HW covers the
  batch (NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below min.insync.replicas by then,
  REQUEST_TIMED_OUT at the request's timeout), as Kafka's delayed produce.
- Follower fetches (`follower_fetched`): each tells the leader the follower's log end offset,
  which moves the HW (consumers see more), may add the follower to the ISR, and wakes the
  produce requests waiting for it.
- ISR shrink: every replica.lag.time.max.ms / 2, followers that have not caught up within
  replica.lag.time.max.ms are proposed for removal.
- ISR changes go to the controller as AlterPartition, one request at a time with every pending
  proposal (Kafka's AlterPartitionManager), answered per partition (partition_state.py decides
  what an error means).

The follower side is replica/fetcher.py's, through `follower_partitions`, `truncate` and
`append_fetched` (or, with its write in a worker thread, `begin_append_fetched` and
`take_leader_offsets`).

Every change of a partition's high watermark goes through `PartitionLog.set_high_watermark`,
which wakes the fetch requests waiting on the partition.
"""

import logging

import trio

from trioka.replica.partition_state import FetchState, Partition
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.replica")


class HostedPartition:
    """One partition this node has a replica of: its log and its replica state."""

    __slots__ = ("topic", "index", "topic_id", "log", "state", "changed")

    def __init__(self, topic: str, index: int, topic_id, partition_log, state: Partition):
        self.topic = topic
        self.index = index
        self.topic_id = topic_id
        self.log = partition_log
        self.state = state
        # Set (and replaced) whenever the HW moves or the role changes: acks=all waiters.
        self.changed = trio.Event()

    def signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def __repr__(self) -> str:
        return f"HostedPartition({self.state!r})"


class ReplicaManager:
    """`send_alter_partition(request) -> response` sends an AlterPartition request to the
    controller (raising OSError when it cannot be reached); `broker_epoch()` is this node's
    broker epoch (-1 before registration)."""

    def __init__(self, *, node_id: int, logs, clock, config, send_alter_partition,
                 broker_epoch):
        self.node_id = node_id
        self.logs = logs
        # Replication's waits and the ISR's lag times: the cluster's liveness, on real time
        # also under virtual time; what the logs record (roll and truncation times) is on the
        # logs' clock, the broker's.
        self.clock = clock
        self.config = config
        self.send_alter_partition = send_alter_partition
        self.broker_epoch = broker_epoch
        self.image = None
        self.partitions: dict[tuple[str, int], HostedPartition] = {}
        # AlterPartition proposals waiting to be sent, and a wakeup for the sender.
        self.pending_proposals: list = []
        self._proposal_wakeup = trio.Event()
        # Followers by leader, for the fetchers; a fetcher waits on `follower_change` for its
        # set of partitions to change.
        self.follower_change = trio.Event()
        # Called as `on_leadership(hosted, is_leader)` when this node starts or stops leading a
        # partition (the coordinators load and unload their partitions of the internal topics).
        self.leadership_listeners: list = []

    # ---------------------------------------------------------------------------- metadata

    def publish(self, image, records=()) -> None:
        """Bring the hosted replicas in line with the metadata image (the table above)."""
        self.image = image
        brokers = image.brokers
        wanted: set[tuple[str, int]] = set()
        followers_changed = False
        for topic in image.topics.values():
            count = len(topic.partitions)
            overrides = image.topic_configs(topic.name)
            for index, registration in topic.partitions.items():
                if self.node_id not in registration.replicas:
                    continue
                key = (topic.name, index)
                wanted.add(key)
                hosted = self.partitions.get(key)
                if hosted is None or hosted.topic_id != topic.topic_id:
                    if hosted is not None:
                        self._drop(key, delete=True)
                    hosted = self._host(topic.name, topic.topic_id, index, count, overrides)
                    followers_changed = True
                if self._apply(hosted, registration, brokers):
                    followers_changed = True
        for key in [k for k in self.partitions if k not in wanted]:
            self._drop(key, delete=True)
            followers_changed = True
        for name in [t.name for t in self.logs.topics()]:
            if image.topic(name) is None:
                self.logs.forget_topic(name, delete=True)
        for topic in image.topics.values():
            if self.logs.topic(topic.name) is not None:
                self.logs.set_hosted_topic_configs(topic.name, image.topic_configs(topic.name))
        if followers_changed:
            self.follower_change.set()
            self.follower_change = trio.Event()

    def _host(self, name, topic_id, index, count, overrides) -> HostedPartition:
        partition_log, high_watermark = self.logs.host_partition(name, topic_id, index, count,
                                                                 overrides)
        if high_watermark is not None:
            partition_log.high_watermark = max(partition_log.log_start_offset,
                                               min(high_watermark, partition_log.log_end_offset))
        state = Partition(name, index, self.node_id, self.clock, topic_id=topic_id,
                          replica_lag_time_max_ms=self.config.replica_lag_time_max_ms,
                          min_insync_replicas=self._min_insync_replicas(name),
                          brokers=self.image.brokers if self.image is not None else None)
        hosted = HostedPartition(name, index, topic_id, partition_log, state)
        self.partitions[(name, index)] = hosted
        return hosted

    def _min_insync_replicas(self, name: str) -> int:
        value = None
        if self.image is not None:
            value = self.image.topic_configs(name).get("min.insync.replicas")
        return int(value) if value is not None else self.config.min_insync_replicas

    def _drop(self, key, *, delete: bool) -> None:
        hosted = self.partitions.pop(key)
        was_leader = hosted.state.is_leader
        hosted.state.leader_id = -1
        if was_leader:
            for listener in self.leadership_listeners:
                listener(hosted, False)
        hosted.signal()
        self.logs.stop_hosting(hosted.topic, hosted.index, delete=delete)

    def _apply(self, hosted: HostedPartition, registration, brokers) -> bool:
        """Make the replica leader or follower as the registration says. True when what the
        fetchers follow changed."""
        state = hosted.state
        state.brokers = brokers
        state.min_insync_replicas = self._min_insync_replicas(hosted.topic)
        plog = hosted.log
        if (registration.leader_epoch, registration.partition_epoch) == \
                (state.leader_epoch, state.partition_epoch) and \
                registration.leader == state.leader_id:
            return False
        was_follower_of = None if state.is_leader else state.leader_id
        if registration.leader == self.node_id:
            new_epoch = state.make_leader(
                leader_epoch=registration.leader_epoch,
                partition_epoch=registration.partition_epoch,
                replicas=registration.replicas, isr=registration.isr,
                log_end_offset=plog.log_end_offset, high_watermark=plog.high_watermark,
                adding_replicas=registration.adding_replicas,
                removing_replicas=registration.removing_replicas)
            if new_epoch:
                plog.assign_epoch_start_offset(state.leader_epoch, plog.log_end_offset)
            plog.set_high_watermark(state.high_watermark)
        else:
            state.make_follower(
                leader_id=registration.leader, leader_epoch=registration.leader_epoch,
                partition_epoch=registration.partition_epoch, replicas=registration.replicas,
                log_end_offset=plog.log_end_offset, high_watermark=plog.high_watermark,
                adding_replicas=registration.adding_replicas,
                removing_replicas=registration.removing_replicas)
        hosted.signal()
        plog.wake_waiters()   # fetches of a former leader answer NOT_LEADER_OR_FOLLOWER now
        if (was_follower_of is None) != state.is_leader or registration.leader == self.node_id:
            for listener in self.leadership_listeners:
                listener(hosted, state.is_leader)
        # A follower's leader or epoch may have changed; a new leader no longer follows anyone.
        return not state.is_leader or was_follower_of is not None

    # ------------------------------------------------------------------------ lookups

    def hosted(self, topic: str, index: int) -> HostedPartition:
        """The replica of topic-index here, or Kafka's error: UNKNOWN_TOPIC_OR_PARTITION when
        the metadata has no such partition, NOT_LEADER_OR_FOLLOWER when this node holds no
        replica of it."""
        hosted = self.partitions.get((topic, index))
        if hosted is not None:
            return hosted
        image_topic = self.image.topic(topic) if self.image is not None else None
        if image_topic is None or index not in image_topic.partitions:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                             "This server does not host this topic-partition.")
        raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                         f"Broker {self.node_id} has no replica of {topic}-{index}")

    def leader(self, topic: str, index: int, current_leader_epoch: int = -1) -> HostedPartition:
        """The replica of topic-index if this node leads it in `current_leader_epoch` (-1: any),
        else FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER."""
        hosted = self.hosted(topic, index)
        hosted.state.check_current_leader_epoch(current_leader_epoch, require_leader=True)
        return hosted

    # --------------------------------------------------------------------- leader: Produce

    def check_append(self, topic: str, index: int, acks: int) -> HostedPartition:
        hosted = self.hosted(topic, index)
        hosted.state.check_append(acks)
        return hosted

    def appended(self, hosted: HostedPartition) -> None:
        """The leader's log grew: with an ISR of the leader alone the HW moves at once."""
        if hosted.state.leader_log_appended(hosted.log.log_end_offset):
            self._high_watermark_moved(hosted)

    def _high_watermark_moved(self, hosted: HostedPartition) -> None:
        hosted.log.set_high_watermark(hosted.state.high_watermark)
        hosted.signal()

    async def wait_for_replicas(self, hosted: HostedPartition, required_offset: int,
                                deadline: float) -> ErrorCode:
        """acks=all: wait until the ISR has every offset below `required_offset` (Kafka's
        DelayedProduce): NONE, NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER when
        leadership moved meanwhile, REQUEST_TIMED_OUT at `deadline` (the clock's monotonic
        time)."""
        while True:
            done, error = hosted.state.check_enough_replicas_reach_offset(required_offset)
            if done or error != ErrorCode.NONE:
                return error
            if (hosted.topic, hosted.index) not in self.partitions:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            with self.clock.move_on_at(deadline) as waiting:
                await hosted.changed.wait()
            if waiting.cancelled_caught:
                done, error = hosted.state.check_enough_replicas_reach_offset(required_offset)
                return error if done or error != ErrorCode.NONE else ErrorCode.REQUEST_TIMED_OUT

    # ---------------------------------------------------------------- leader: follower fetch

    def follower_fetched(self, hosted: HostedPartition, replica_id: int, *, fetch_offset: int,
                         current_leader_epoch: int, log_start_offset: int,
                         broker_epoch: int) -> None:
        """A follower's Fetch of this partition (before its records are read): record its
        position; the HW may move, and the follower may be proposed for the ISR. Raises the
        partition's error (FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, ...)."""
        result = hosted.state.update_follower_fetch_state(
            replica_id, fetch_offset=fetch_offset,
            leader_log_end_offset=hosted.log.log_end_offset,
            current_leader_epoch=current_leader_epoch, log_start_offset=log_start_offset,
            broker_epoch=broker_epoch)
        if result.high_watermark_moved:
            self._high_watermark_moved(hosted)
        if result.alter_partition is not None:
            self._propose(result.alter_partition)

    def _propose(self, proposal) -> None:
        self.pending_proposals.append(proposal)
        self._proposal_wakeup.set()

    def maybe_shrink_isrs(self) -> int:
        """Kafka's isr-expiration task: propose removing the followers out of sync. Returns the
        number of proposals."""
        count = 0
        for hosted in self.partitions.values():
            if hosted.state.is_leader:
                proposal = hosted.state.maybe_shrink_isr()
                if proposal is not None:
                    self._propose(proposal)
                    count += 1
        return count

    async def run_isr_expiration(self) -> None:
        interval = self.config.replica_lag_time_max_ms / 2 / 1000
        while True:
            await self.clock.sleep(interval)
            self.maybe_shrink_isrs()

    async def run_alter_partition_sender(self) -> None:
        """Kafka's AlterPartitionManager: send the pending proposals to the controller, one
        request at a time; retry (after a pause) what could not be sent or must be sent again."""
        from trioka.wire.api_keys import ApiKey
        from trioka.wire.protocol import request_class
        Request = request_class(ApiKey.ALTER_PARTITION)
        while True:
            if not self.pending_proposals:
                self._proposal_wakeup = trio.Event()
                await self._proposal_wakeup.wait()
                continue
            proposals, self.pending_proposals = self.pending_proposals, []
            by_topic: dict = {}
            for proposal in proposals:
                by_topic.setdefault((proposal.topic, proposal.topic_id), []).append(proposal)
            request = Request(broker_id=self.node_id, broker_epoch=self.broker_epoch(), topics=[
                Request.TopicData(topic_name=topic, topic_id=topic_id, partitions=[
                    Request.TopicData.PartitionData(
                        partition_index=p.partition, leader_epoch=p.leader_epoch,
                        new_isr=list(p.new_isr),
                        new_isr_with_epochs=[
                            Request.TopicData.PartitionData.BrokerState(
                                broker_id=b, broker_epoch=e) for b, e in p.new_isr_with_epochs],
                        leader_recovery_state=0, partition_epoch=p.partition_epoch)
                    for p in group])
                for (topic, topic_id), group in by_topic.items()])
            try:
                response = await self.send_alter_partition(request)
            except OSError as e:
                log.info("AlterPartition not sent (%s); retrying", e)
                self.pending_proposals = proposals + self.pending_proposals
                await self.clock.sleep(0.1)
                continue
            retry = self._alter_partition_answered(proposals, response)
            if retry:
                self.pending_proposals = retry + self.pending_proposals
                await self.clock.sleep(0.05)

    def _alter_partition_answered(self, proposals, response) -> list:
        """Apply the controller's answer to each proposal; the proposals to send again."""
        retry = []
        if response.error_code:
            for proposal in proposals:
                hosted = self.partitions.get((proposal.topic, proposal.partition))
                if hosted is not None and hosted.state.alter_partition_failed(
                        proposal, ErrorCode(response.error_code)):
                    retry.append(proposal)
            return retry
        # Answers by (topic id, partition) and by (topic name, partition): v2+ name topics by
        # id, earlier versions by name.
        answers = {}
        for topic in response.topics:
            for p in topic.partitions:
                answers[(topic.topic_id, p.partition_index)] = p
                answers[(topic.topic_name, p.partition_index)] = p
        for proposal in proposals:
            hosted = self.partitions.get((proposal.topic, proposal.partition))
            if hosted is None:
                continue
            answer = answers.get((proposal.topic_id, proposal.partition)) or \
                answers.get((proposal.topic, proposal.partition))
            if answer is None:
                if hosted.state.alter_partition_failed(proposal, ErrorCode.UNKNOWN_SERVER_ERROR):
                    retry.append(proposal)
                continue
            if answer.error_code:
                if hosted.state.alter_partition_failed(proposal, ErrorCode(answer.error_code)):
                    retry.append(proposal)
                continue
            if hosted.state.alter_partition_succeeded(
                    proposal, leader_epoch=answer.leader_epoch, isr=answer.isr,
                    partition_epoch=answer.partition_epoch):
                self._high_watermark_moved(hosted)
            else:
                hosted.signal()   # the ISR changed: acks=all waiters look again
        return retry

    # ---------------------------------------------------------------------- follower side

    def follower_partitions(self, leader_id: int) -> list[HostedPartition]:
        """The replicas here that follow `leader_id` (for its fetcher)."""
        return [h for h in self.partitions.values()
                if not h.state.is_leader and h.state.leader_id == leader_id]

    def leaders_followed(self) -> set[int]:
        return {h.state.leader_id for h in self.partitions.values()
                if not h.state.is_leader and h.state.leader_id >= 0}

    def truncate(self, hosted: HostedPartition, truncation_state) -> None:
        """Truncate a follower's log where truncation by leader epoch says (fetcher)."""
        plog = hosted.log
        if truncation_state.offset < plog.log_end_offset:
            log.warning("Truncating %s-%d to offset %d (log end offset %d): it diverged from "
                        "leader %d", hosted.topic, hosted.index, truncation_state.offset,
                        plog.log_end_offset, hosted.state.leader_id)
            plog.truncate_to(truncation_state.offset, self.logs.clock.wall_ms())
        hosted.state.truncated(truncation_state, log_end_offset=plog.log_end_offset)
        plog.set_high_watermark(hosted.state.high_watermark)

    def truncate_fully_and_start_at(self, hosted: HostedPartition, offset: int) -> None:
        """The leader no longer has what this follower has (its log start is past our end):
        start over from the leader's log start offset."""
        log.warning("%s-%d: the leader's log starts at %d, past this replica's end %d; "
                    "starting over there", hosted.topic, hosted.index, offset,
                    hosted.log.log_end_offset)
        hosted.log.truncate_fully_and_start_at(offset, self.logs.clock.wall_ms())
        hosted.state.follower_fetched(log_end_offset=hosted.log.log_end_offset,
                                      log_start_offset=hosted.log.log_start_offset,
                                      leader_high_watermark=offset)
        hosted.state.fetch_state = FetchState.FETCHING

    def append_fetched(self, hosted: HostedPartition, records, *, leader_high_watermark: int,
                       leader_log_start_offset: int) -> None:
        """A follower appends what it fetched, then takes the leader's HW (within its log) and
        log start offset."""
        if records is not None and len(records):
            hosted.log.append_as_follower(records, now_ms=self.logs.clock.wall_ms())
        self.take_leader_offsets(hosted, leader_high_watermark=leader_high_watermark,
                                 leader_log_start_offset=leader_log_start_offset)

    def begin_append_fetched(self, hosted: HostedPartition, records):
        """`append_fetched`'s append, for a fetcher that writes a large one from a worker thread
        while the disk stalls (PartitionLog.begin_append_as_follower): a PendingAppend to write
        and end, or None when the append is complete. Then `take_leader_offsets`."""
        if records is None or not len(records):
            return None
        begun = hosted.log.begin_append_as_follower(records, now_ms=self.logs.clock.wall_ms())
        return None if type(begun) is int else begun

    def take_leader_offsets(self, hosted: HostedPartition, *, leader_high_watermark: int,
                            leader_log_start_offset: int) -> None:
        """After a follower's append: the leader's HW (within this log) and log start offset."""
        plog = hosted.log
        if leader_log_start_offset > plog.log_start_offset and \
                leader_log_start_offset <= plog.high_watermark:
            plog.delete_records_before(leader_log_start_offset)
        hosted.state.follower_fetched(log_end_offset=plog.log_end_offset,
                                      log_start_offset=plog.log_start_offset,
                                      leader_high_watermark=leader_high_watermark)
        plog.set_high_watermark(hosted.state.high_watermark)
