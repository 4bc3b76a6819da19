"""Which partitions of a coordinator's internal topic this node coordinates (a node of a cluster).

Kafka runs a group coordinator and a transaction coordinator on every broker; each serves only
the keys (group ids, transactional ids) whose partition of its internal topic
(`__consumer_offsets`, `__transaction_state`) the broker leads. The keys of other partitions are
answered NOT_COORDINATOR, so the client asks FindCoordinator again. A broker that becomes a
partition's leader first loads its state by replaying the partition to its end, and answers its
keys COORDINATOR_LOAD_IN_PROGRESS meanwhile; a broker that stops leading it unloads that state.

The state of one partition, by the leadership events of the replica manager
(replica/manager.py `leadership_listeners`) and the end of the load:

| state       | event                  | next state | requests for its keys          |
|-------------|------------------------|------------|--------------------------------|
| (absent)    | became leader          | LOADING    | NOT_COORDINATOR                |
| LOADING     | loaded (same epoch)    | ACTIVE     | COORDINATOR_LOAD_IN_PROGRESS   |
| LOADING     | became leader again    | LOADING    | COORDINATOR_LOAD_IN_PROGRESS   |
|             | (a newer leader epoch) |            |                                |
| ACTIVE      | became leader again    | LOADING    | served                         |
|             | (a newer leader epoch) |            |                                |
| LOADING,    | became leader again    | unchanged  |                                |
| ACTIVE      | (the same epoch)       |            |                                |
| any         | stopped leading        | (absent)   |                                |

A load is identified by the partition's leader epoch: a load that finishes after the partition
was lost, or after a newer leadership began, changes nothing.

Writes. A coordinator appends its records with required acks -1, as Kafka's do: the request is
answered once every replica of the ISR has the records (`replicated`). The in-memory state has
already changed then; a write that cannot be replicated answers the coordinator's error
(NOT_COORDINATOR when the leadership moved meanwhile, COORDINATOR_NOT_AVAILABLE otherwise).

A single broker leads every partition of both topics: it has no CoordinatorPartitions, and
nothing here runs for it.
"""

import enum
import logging

import trio

from trioka.log.topics import COORDINATOR_APPEND_ERRORS
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")


class LoadState(enum.Enum):
    LOADING = "Loading"
    ACTIVE = "Active"


class CoordinatorPartitions:
    """The partitions of `topic` this node coordinates, with their load state and the leader
    epoch in which it leads them."""

    def __init__(self, topic: str):
        self.topic = topic
        self.states: dict[int, LoadState] = {}
        self.epochs: dict[int, int] = {}

    def check(self, partition: int) -> None:
        """KafkaError NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS unless this node serves
        the keys of `partition` now."""
        state = self.states.get(partition)
        if state is LoadState.ACTIVE:
            return
        if state is LoadState.LOADING:
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                             f"The coordinator is loading {self.topic}-{partition}")
        raise KafkaError(ErrorCode.NOT_COORDINATOR,
                         f"This node is not the coordinator of {self.topic}-{partition}")

    def error(self, partition: int) -> int:
        """The code `check` would raise, ErrorCode.NONE when served."""
        state = self.states.get(partition)
        if state is LoadState.ACTIVE:
            return ErrorCode.NONE
        return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if state is LoadState.LOADING \
            else ErrorCode.NOT_COORDINATOR

    def active(self) -> set[int]:
        return {p for p, s in self.states.items() if s is LoadState.ACTIVE}

    def became_leader(self, partition: int, leader_epoch: int) -> None:
        self.states[partition] = LoadState.LOADING
        self.epochs[partition] = leader_epoch

    def loaded(self, partition: int, leader_epoch: int) -> bool:
        """The load of `leader_epoch` is complete: True when it is still the current one (the
        partition is ACTIVE now); False when the partition was lost or led anew meanwhile."""
        if self.states.get(partition) is not LoadState.LOADING or \
                self.epochs.get(partition) != leader_epoch:
            return False
        self.states[partition] = LoadState.ACTIVE
        return True

    def leads(self, partition: int, leader_epoch: int) -> bool:
        """Already loading or serving the partition in this leader epoch (the replica manager
        tells a leader of every change of its partition, an ISR change too)."""
        return partition in self.states and self.epochs.get(partition) == leader_epoch

    def is_loading(self, partition: int, leader_epoch: int) -> bool:
        return self.states.get(partition) is LoadState.LOADING and \
            self.epochs.get(partition) == leader_epoch

    def stopped_leading(self, partition: int) -> bool:
        """True when the partition was coordinated here (its state must be unloaded)."""
        self.epochs.pop(partition, None)
        return self.states.pop(partition, None) is not None


async def replicated(replicas, topic: str, partition: int, timeout_ms: int) -> int:
    """Wait until every record appended so far to `topic-partition` is on the whole ISR
    (Kafka's coordinator appends with required acks -1). ErrorCode.NONE, or the coordinator's
    code: NOT_COORDINATOR when the partition is no longer led here, COORDINATOR_NOT_AVAILABLE
    when the ISR shrank below min.insync.replicas or `timeout_ms` passed."""
    partitions = replicas.partitions
    hosted = partitions.get((topic, partition))
    if hosted is None or not hosted.state.is_leader:
        return ErrorCode.NOT_COORDINATOR
    upto = hosted.log.log_end_offset
    if hosted.log.high_watermark >= upto:
        return ErrorCode.NONE
    # On the replica manager's clock: replication keeps real time, also under virtual time.
    deadline = replicas.clock.monotonic() + timeout_ms / 1000
    code = await replicas.wait_for_replicas(hosted, upto, deadline)
    if code == ErrorCode.NONE and not hosted.state.is_leader:
        code = ErrorCode.NOT_LEADER_OR_FOLLOWER
    if code == ErrorCode.NONE:
        return code
    return COORDINATOR_APPEND_ERRORS.get(code, ErrorCode.COORDINATOR_NOT_AVAILABLE)


class InternalTopicCreation:
    """Kafka creates `__consumer_offsets` and `__transaction_state` when the first
    FindCoordinator needs them (answering COORDINATOR_NOT_AVAILABLE until they have leaders):
    through the controller, with the topic's partition count, replication factor and configs.
    One creation at a time runs in the broker's nursery; a failed one (too few brokers for the
    replication factor, the controller unreachable) is tried again by the next FindCoordinator.

    A single broker creates the topic itself, its partition dirs in a worker thread (50 of
    them: 150 ms and more of file creation and fsyncs the event loop would otherwise wait
    for, in the middle of a group's first SyncGroup), and its FindCoordinator waits for that
    (`wait_created`) and answers with itself, the coordinator always available."""

    def __init__(self, broker, name: str, num_partitions: int, replication_factor: int,
                 configs: dict):
        self.broker = broker
        self.name = name
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.configs = dict(configs)
        self.running = False
        self._ended = None        # trio.Event of the creation running, set when it ends

    def request(self) -> None:
        """Start the creation unless one runs (or the broker has no nursery yet)."""
        nursery = self.broker.nursery
        if self.running or nursery is None:
            return
        self.running = True
        self._ended = trio.Event()
        nursery.start_soon(self._create)

    async def wait_created(self, timeout_s: float) -> None:
        """Start the creation unless one runs, and wait up to `timeout_s` for it to end (made,
        or failed: the records' first append then makes the topic itself, log/manager.py)."""
        self.request()
        if self._ended is not None:
            # On real time, also under virtual time: the disk's pace, not the clients'.
            with self.broker.network_clock.move_on_after(timeout_s):
                await self._ended.wait()

    async def _create(self) -> None:
        try:
            await self.broker.create_topic_async(
                self.name, self.num_partitions, self.configs,
                replication_factor=self.replication_factor)
        except KafkaError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                log.warning("%s could not be created: %s", self.name,
                            e.message or e.code.name)
        except Exception:
            log.exception("creating %s failed", self.name)
        finally:
            self.running = False
            self._ended.set()
