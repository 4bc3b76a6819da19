"""The coordinators on the nodes of a cluster, without sockets: three nodes' replica managers
(in-memory logs) follow the metadata image of a ControllerCluster that holds `__consumer_offsets`
and `__transaction_state`; each node's group and transaction coordinators serve only the keys of
the partitions it leads, load a partition when they come to lead it and unload it when they stop,
answer their writes once the ISR has them, and send transaction markers for other nodes'
partitions with WriteTxnMarkers (here a channel that calls the other node's handler)."""

import types

import pytest
import trio
import trio.testing

from trioka.apis import find_coordinator, write_txn_markers
from trioka.clock import Clock, ManualClock
from trioka.config import Config, finalized
from trioka.coordinator.group_coordinator import GroupCoordinator
from trioka.coordinator.offsets import OffsetAndMetadata, partition_for
from trioka.log.manager import LogManager
from trioka.log.topics import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from trioka.node.cluster_link import ClusterTopic, PartitionView
from trioka.replica import truncation
from trioka.replica.manager import ReplicaManager
from trioka.replica.partition_state import FetchState
from trioka.txn.coordinator import TransactionCoordinator
from trioka.txn.producer_ids import ProducerIdManager
from trioka.txn.states import TransactionState
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import request_class, response_class

from tests.controller_cluster import ControllerCluster
from tests.record_batches import make_batch

PARTITIONS = 3


class Node:
    """What the coordinators use of a broker and its ClusterLink, for one node."""

    def __init__(self, node_id: int, controller: ControllerCluster, clock, nodes: dict):
        self.node_id = node_id
        self.controller = controller
        self.nodes = nodes
        self.clock = clock
        self.network_clock = clock
        self.authorizer = None       # no ACLs: every request allowed
        self.config = Config({"replica.lag.time.max.ms": "10000",
                              "offsets.topic.num.partitions": str(PARTITIONS),
                              "transaction.state.log.num.partitions": str(PARTITIONS),
                              "group.initial.rebalance.delay.ms": "3000"})
        self.features = finalized(self.config)
        self.logs = LogManager(None, clock=clock, node_id=node_id, replicated=True)
        self.logs.open()
        self.replicas = ReplicaManager(
            node_id=node_id, logs=self.logs, clock=clock, config=self.config,
            send_alter_partition=self._send, broker_epoch=lambda: controller.epoch(node_id))
        self.cluster = self          # the ClusterLink side
        self.nursery = None
        self.spawned = []
        self.producer_ids = ProducerIdManager(None, node_id=node_id)
        self.groups = GroupCoordinator(self.config, self.logs, clock=clock, cluster=self,
                                       spawn=self.spawn_coordinator_task)
        self.replicas.leadership_listeners.append(self.groups.on_leadership)
        self.groups.open()
        self.transactions = TransactionCoordinator(self)

    async def _send(self, request):
        raise OSError("not connected in this test")

    def internal_topic_replication_factor(self, key: str) -> int:
        return 3

    # ClusterLink
    @property
    def image(self):
        return self.replicas.image

    def topic(self, name):
        topic = self.image.topic(name) if self.image is not None else None
        if topic is None:
            return None
        return ClusterTopic(name, topic.topic_id, len(topic.partitions), {})

    def topic_names(self):
        return sorted(self.image.topics_by_name)

    def broker_channel(self, node_id: int, purpose: str):
        return Channel(self.nodes[node_id])

    # BrokerState
    def spawn_coordinator_task(self, async_fn, *args) -> bool:
        """Loads wait for the test to run them (COORDINATOR_LOAD_IN_PROGRESS meanwhile)."""
        self.spawned.append((async_fn, args))
        return True

    async def run_spawned(self):
        spawned, self.spawned = self.spawned, []
        for async_fn, args in spawned:
            await async_fn(*args)

    def publish(self):
        self.replicas.publish(self.controller.image)


class Channel:
    """A NodeChannel to another node that runs its WriteTxnMarkers handler."""

    def __init__(self, node: Node):
        self.node = node

    async def request(self, api_key, message, **kw):
        assert api_key == 27
        return await write_txn_markers.handle(self.node, message, None)


def start(clock=None) -> tuple[ControllerCluster, dict[int, Node]]:
    controller = ControllerCluster()
    for broker_id in (1, 2, 3):
        controller.start(broker_id)
    controller.create_topic(OFFSETS_TOPIC, PARTITIONS, 3)
    controller.create_topic(TRANSACTION_STATE_TOPIC, PARTITIONS, 3)
    controller.create_topic("t", 1, 3)
    nodes: dict[int, Node] = {}
    for i in (1, 2, 3):
        nodes[i] = Node(i, controller, clock or ManualClock(), nodes)
    for node in nodes.values():
        node.publish()
    return controller, nodes


async def loaded(nodes):
    for node in nodes.values():
        await node.run_spawned()


def replicate(nodes, topic: str, index: int) -> None:
    """One fetch round of every follower of topic-index (what the fetcher and Fetch carry)."""
    leader = next(n for n in nodes.values()
                  if n.replicas.partitions[(topic, index)].state.is_leader)
    h = leader.replicas.partitions[(topic, index)]
    for follower in nodes.values():
        if follower is leader:
            continue
        f = follower.replicas.partitions[(topic, index)]
        if f.state.fetch_state is FetchState.TRUNCATING:
            answer = truncation.epoch_end_offset(h.log, truncation.latest_epoch(f.log) or 0)
            follower.replicas.truncate(f, truncation.offset_truncation_state(
                f.log, answer, f.state.fetch_offset))
        leader.replicas.follower_fetched(h, follower.node_id,
                                         fetch_offset=f.log.log_end_offset,
                                         current_leader_epoch=f.state.leader_epoch,
                                         log_start_offset=f.log.log_start_offset,
                                         broker_epoch=-1)
        read = h.log.read(f.log.log_end_offset, 1 << 20, isolation_upper=h.log.log_end_offset)
        follower.replicas.append_fetched(f, b"".join(bytes(c) for c in read.chunks),
                                         leader_high_watermark=h.log.high_watermark,
                                         leader_log_start_offset=h.log.log_start_offset)
    # a second round carries the HW the first one moved
    for follower in nodes.values():
        if follower is not leader:
            f = follower.replicas.partitions[(topic, index)]
            leader.replicas.follower_fetched(h, follower.node_id,
                                             fetch_offset=f.log.log_end_offset,
                                             current_leader_epoch=f.state.leader_epoch,
                                             log_start_offset=f.log.log_start_offset,
                                             broker_epoch=-1)
            follower.replicas.append_fetched(f, b"", leader_high_watermark=h.log.high_watermark,
                                             leader_log_start_offset=h.log.log_start_offset)


def leader_of(controller, topic: str, index: int) -> int:
    return controller.partition(topic, index).leader


def move_leadership(controller, nodes, node_id: int) -> None:
    """Controlled shutdown of `node_id`: the controller moves its leaderships away."""
    controller.heartbeat(node_id, want_shut_down=True)
    for node in nodes.values():
        node.publish()


def group_of(index: int) -> str:
    return next(g for g in (f"group-{n}" for n in range(1000))
                if partition_for(g, PARTITIONS) == index)


def commit(node: Node, group_id: str, offset: int) -> None:
    groups = node.groups
    groups.check_coordinator(group_id)
    group = groups.offsets.validate_offset_commit(group_id, -1, "", None, 8)
    groups.offsets.store_offsets(group, {("t", 0): OffsetAndMetadata(offset)})


def committed(node: Node, group_id: str):
    return {(t, p): c.offset for t, parts in node.groups.offsets.fetch_offsets(group_id, None)
            .items() for p, c in parts}


# ------------------------------------------------------------------------ group coordinator

async def test_only_the_leader_of_the_group_partition_coordinates_it_after_loading():
    controller, nodes = start()
    group = group_of(0)
    leader = leader_of(controller, OFFSETS_TOPIC, 0)
    assert nodes[leader].groups.coordinator_error(group) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert nodes[leader].groups.loading()
    await loaded(nodes)
    assert nodes[leader].groups.coordinator_error(group) == ErrorCode.NONE
    assert not nodes[leader].groups.loading()
    for node_id, node in nodes.items():
        if node_id != leader:
            assert node.groups.coordinator_error(group) == ErrorCode.NOT_COORDINATOR
            with pytest.raises(KafkaError) as e:
                commit(node, group, 1)
            assert e.value.code == ErrorCode.NOT_COORDINATOR


async def test_offsets_follow_the_partition_leadership():
    controller, nodes = start()
    await loaded(nodes)
    group = group_of(1)
    old = leader_of(controller, OFFSETS_TOPIC, 1)
    commit(nodes[old], group, 42)
    assert committed(nodes[old], group) == {("t", 0): 42}
    # The leader hears of every change of its partition (an ISR change too): same epoch, the
    # groups stay as they are.
    nodes[old].groups.on_leadership(nodes[old].replicas.partitions[(OFFSETS_TOPIC, 1)], True)
    assert nodes[old].groups.coordinator_error(group) == ErrorCode.NONE
    assert committed(nodes[old], group) == {("t", 0): 42}
    replicate(nodes, OFFSETS_TOPIC, 1)
    move_leadership(controller, nodes, old)
    new = leader_of(controller, OFFSETS_TOPIC, 1)
    assert new not in (old, -1)
    # The old leader forgot the group; its writes now fail NOT_COORDINATOR.
    assert nodes[old].groups.coordinator_error(group) == ErrorCode.NOT_COORDINATOR
    assert group not in nodes[old].groups.groups
    with pytest.raises(KafkaError) as e:
        nodes[old].groups.topic.append(group, [(b"k", b"v")], 0)
    assert e.value.code == ErrorCode.NOT_COORDINATOR
    # The new leader loads the partition it now leads, and has the commit.
    assert nodes[new].groups.coordinator_error(group) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    await loaded(nodes)
    assert committed(nodes[new], group) == {("t", 0): 42}
    commit(nodes[new], group, 43)
    assert committed(nodes[new], group) == {("t", 0): 43}


async def test_a_parked_join_is_answered_not_coordinator_when_the_partition_moves():
    controller, nodes = start(Clock())
    await loaded(nodes)
    group = group_of(2)
    leader = leader_of(controller, OFFSETS_TOPIC, 2)
    results = []

    async def join(member_id):
        results.append(await nodes[leader].groups.classic.join_group(
            group, member_id, group_instance_id=None, client_id="c", client_host="/h",
            session_timeout_ms=30000, rebalance_timeout_ms=60000, protocol_type="consumer",
            protocols=[("range", b"")], require_known_member_id=False))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(join, "")
        await trio.testing.wait_all_tasks_blocked()
        assert not results     # waits for the initial rebalance delay
        move_leadership(controller, nodes, leader)
        await trio.testing.wait_all_tasks_blocked()
    assert results[0].error == ErrorCode.NOT_COORDINATOR
    assert group not in nodes[leader].groups.groups


async def test_a_commit_is_answered_once_the_isr_has_it(autojump_clock):
    controller, nodes = start(Clock())
    await loaded(nodes)
    group = group_of(0)
    leader = nodes[leader_of(controller, OFFSETS_TOPIC, 0)]
    commit(leader, group, 7)
    answers = []

    async def answer():
        answers.append(await leader.groups.replicated(group))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        await trio.testing.wait_all_tasks_blocked()
        assert answers == []      # the followers do not have it yet
        replicate(nodes, OFFSETS_TOPIC, 0)
    assert answers == [ErrorCode.NONE]
    # With nothing new written, the answer is immediate.
    assert await leader.groups.replicated(group) == ErrorCode.NONE
    # Never replicated: COORDINATOR_NOT_AVAILABLE at the coordinator's write timeout.
    commit(leader, group, 8)
    start_time = trio.current_time()
    assert await leader.groups.replicated(group) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert trio.current_time() - start_time == pytest.approx(5.0)


# --------------------------------------------------------------------------- FindCoordinator

def find_request(key_type: int, keys: list[str]):
    Request = request_class(10)
    return Request(key_type=key_type, coordinator_keys=keys)


def find_context():
    return types.SimpleNamespace(api_version=4,
                                 connection=types.SimpleNamespace(listener=None))


class FindBroker:
    """The BrokerState face FindCoordinator reads, over a node of the test cluster."""

    def __init__(self, node: Node):
        self.node = node
        self.cluster = node
        self.groups = node.groups
        self.transactions = node.transactions
        self.authorizer = None      # no ACLs: every key is answered
        self.created = []
        creation = types.SimpleNamespace(request=lambda: self.created.append(True))
        self.groups.topic_creation = creation
        self.transactions.topic_creation = creation

    def topic(self, name):
        return self.node.topic(name)

    def partitions_view(self, name, listener=None):
        topic = self.node.image.topic(name)
        return [PartitionView(i, p.leader, p.leader_epoch, list(p.replicas), list(p.isr), [])
                for i, p in sorted(topic.partitions.items())]

    def brokers_view(self, listener=None):
        return [(b, "127.0.0.1", 9091 + b, None) for b, r in sorted(self.node.image.brokers.items())
                if not r.fenced]


async def test_find_coordinator_answers_the_leader_of_the_key_partition():
    controller, nodes = start()
    broker = FindBroker(nodes[1])
    groups = [group_of(i) for i in range(PARTITIONS)]
    response = await find_coordinator.handle(broker, find_request(0, groups), find_context())
    for i, c in enumerate(response.coordinators):
        leader = leader_of(controller, OFFSETS_TOPIC, i)
        assert (c.key, c.error_code, c.node_id, c.port) == (groups[i], 0, leader, 9091 + leader)
    txn = await find_coordinator.handle(broker, find_request(1, ["tx"]), find_context())
    leader = leader_of(controller, TRANSACTION_STATE_TOPIC, partition_for("tx", PARTITIONS))
    assert txn.coordinators[0].node_id == leader


async def test_find_coordinator_creates_the_internal_topic_and_is_unavailable_until_then():
    controller = ControllerCluster()
    for broker_id in (1, 2, 3):
        controller.start(broker_id)
    node = Node(1, controller, ManualClock(), {})
    node.publish()
    broker = FindBroker(node)
    response = await find_coordinator.handle(broker, find_request(0, ["g"]), find_context())
    c = response.coordinators[0]
    assert (c.error_code, c.node_id, c.host, c.port) == \
        (ErrorCode.COORDINATOR_NOT_AVAILABLE, -1, "", -1)
    assert broker.created == [True]
    # Created, with partitions and a replication factor as asked, through the controller.
    controller.create_topic(OFFSETS_TOPIC, PARTITIONS, 3)
    node.publish()
    response = await find_coordinator.handle(broker, find_request(0, ["g"]), find_context())
    assert response.coordinators[0].error_code == 0


# ---------------------------------------------------------------------- transaction coordinator

async def test_transactions_follow_the_state_partition_and_markers_go_to_other_leaders(
        autojump_clock):
    controller, nodes = start(Clock())
    await loaded(nodes)
    # A transactional id whose coordinator does not lead "t"-0: its marker goes over the wire.
    tid = next(t for t in (f"tx-{n}" for n in range(100))
               if leader_of(controller, TRANSACTION_STATE_TOPIC, partition_for(t, PARTITIONS))
               != leader_of(controller, "t", 0))
    index = partition_for(tid, PARTITIONS)
    coordinator = nodes[leader_of(controller, TRANSACTION_STATE_TOPIC, index)]
    for node in nodes.values():
        if node is not coordinator:
            with pytest.raises(KafkaError) as e:
                node.transactions.init_producer_id(tid, 60000, -1, -1, 0)
            assert e.value.code == ErrorCode.NOT_COORDINATOR
    pid, epoch = coordinator.transactions.init_producer_id(tid, 60000, -1, -1, 0)
    assert pid % (1 << 16) == coordinator.node_id      # ids apart from the other nodes'
    # A transactional batch on "t"-0, wherever its leader is.
    data_leader = nodes[leader_of(controller, "t", 0)]
    coordinator.transactions.add_partitions(tid, pid, epoch, [("t", 0)], 0)
    hosted = data_leader.replicas.check_append("t", 0, 1)
    transactional = 0x10     # the batch attribute
    hosted.log.append(make_batch([b"v"], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                                 attributes=transactional), now_ms=0,
                      leader_epoch=hosted.state.leader_epoch)
    data_leader.replicas.appended(hosted)

    async with trio.open_nursery() as nursery:
        coordinator.nursery = nursery

        def spawn(async_fn, *args):
            nursery.start_soon(async_fn, *args)
            return True
        coordinator.spawn_coordinator_task = spawn

        async def keep_replicating():
            while True:
                await trio.testing.wait_all_tasks_blocked()
                replicate(nodes, "t", 0)
                await trio.sleep(0.01)
        scope = trio.CancelScope()

        async def replicator():
            with scope:
                await keep_replicating()
        nursery.start_soon(replicator)
        coordinator.transactions.end_transaction(tid, pid, epoch, True, 0)
        meta = coordinator.transactions.describe(tid)
        with trio.fail_after(5):
            while meta.state != TransactionState.COMPLETE_COMMIT:
                await trio.sleep(0.01)
        scope.cancel()
    # The COMMIT marker is in the partition's log, after the batch.
    assert data_leader.replicas.partitions[("t", 0)].log.log_end_offset == 2
    assert data_leader.replicas.partitions[("t", 0)].log.last_stable_offset == 2
    # Leadership of the state partition moves: the new coordinator has the id, the old does not.
    replicate(nodes, TRANSACTION_STATE_TOPIC, index)
    move_leadership(controller, nodes, coordinator.node_id)
    new = nodes[leader_of(controller, TRANSACTION_STATE_TOPIC, index)]
    assert coordinator.transactions.coordinator_error(tid) == ErrorCode.NOT_COORDINATOR
    assert coordinator.transactions.describe(tid) is None
    await loaded(nodes)
    assert new.transactions.describe(tid).state == TransactionState.COMPLETE_COMMIT
    assert new.transactions.coordinator_epoch_of(tid) == \
        controller.partition(TRANSACTION_STATE_TOPIC, index).leader_epoch


async def test_write_txn_markers_refuses_a_partition_not_led_here():
    controller, nodes = start(Clock())
    follower = next(n for n in nodes.values() if n.node_id != leader_of(controller, "t", 0))
    Request = request_class(27)
    request = Request(markers=[Request.WritableTxnMarker(
        producer_id=5, producer_epoch=0, transaction_result=True, coordinator_epoch=0,
        topics=[Request.WritableTxnMarker.WritableTxnMarkerTopic(name="t",
                                                                 partition_indexes=[0])])])
    response = await write_txn_markers.handle(follower, request, None)
    assert response.markers[0].topics[0].partitions[0].error_code == \
        ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert isinstance(response, response_class(27))


async def test_the_group_apis_of_a_node_that_does_not_coordinate_answer_not_coordinator():
    from trioka.apis import describe_groups, heartbeat, join_group, list_groups, offset_commit
    controller, nodes = start()
    await loaded(nodes)
    group = group_of(0)
    other = next(n for n in nodes.values()
                 if n.node_id != leader_of(controller, OFFSETS_TOPIC, 0))
    ctx = types.SimpleNamespace(api_version=5, client_id="c")
    Join = request_class(11)
    response = await join_group.handle(other, Join(
        group_id=group, session_timeout_ms=30000, rebalance_timeout_ms=60000, member_id="",
        protocol_type="consumer", protocols=[]), ctx)
    assert response.error_code == ErrorCode.NOT_COORDINATOR
    Heartbeat = request_class(12)
    response = await heartbeat.handle(other, Heartbeat(group_id=group, generation_id=1,
                                                       member_id="m"), ctx)
    assert response.error_code == ErrorCode.NOT_COORDINATOR
    Commit = request_class(8)
    response = await offset_commit.handle(other, Commit(
        group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
            Commit.OffsetCommitRequestTopic(name="t", partitions=[
                Commit.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                    partition_index=0, committed_offset=5)])]), ctx)
    assert response.topics[0].partitions[0].error_code == ErrorCode.NOT_COORDINATOR
    Describe = request_class(15)
    response = await describe_groups.handle(other, Describe(groups=[group]), ctx)
    assert response.groups[0].error_code == ErrorCode.NOT_COORDINATOR
    leader = nodes[leader_of(controller, OFFSETS_TOPIC, 0)]
    commit(leader, group, 3)
    List = request_class(16)
    listed = await list_groups.handle(other, List(), ctx)
    assert group not in [g.group_id for g in listed.groups]
    listed = await list_groups.handle(leader, List(), ctx)
    assert [g.group_id for g in listed.groups] == [group]
