"""ReplicaManager and the follower append, without sockets: three nodes' replica managers (each
with its own in-memory LogManager) follow the metadata image of a ControllerCluster; leader and
followers exchange what the Fetch path and the fetcher would carry, driven by hand and by the
ManualClock."""

import time

import trio
import trio.testing

from trioka.clock import Clock

from trioka.config import Config
from trioka.log.manager import LogManager
from trioka.replica.manager import ReplicaManager
from trioka.replica.partition_state import FetchState
from trioka.replica import truncation
from trioka.wire.errors import ErrorCode, KafkaError

from tests.controller_cluster import ControllerCluster
from tests.record_batches import make_batch


class Node:
    def __init__(self, node_id: int, cluster: ControllerCluster, data_dir=None, **config):
        self.node_id = node_id
        self.config = Config({"replica.lag.time.max.ms": "10000", **config})
        self.logs = LogManager(data_dir, clock=cluster.clock, node_id=node_id, replicated=True)
        self.logs.open()
        self.sent = []
        self.replicas = ReplicaManager(
            node_id=node_id, logs=self.logs, clock=cluster.clock, config=self.config,
            send_alter_partition=self._send, broker_epoch=lambda: cluster.epoch(node_id))

    async def _send(self, request):
        self.sent.append(request)
        raise OSError("not connected in this test")


def three_nodes(rf: int = 3, data_dir=None, **config):
    cluster = ControllerCluster()
    for broker_id in (1, 2, 3):
        cluster.start(broker_id)
    cluster.create_topic("t", 1, rf)
    nodes = {i: Node(i, cluster, None if data_dir is None else f"{data_dir}/node-{i}", **config)
             for i in (1, 2, 3)}
    for node in nodes.values():
        node.replicas.publish(cluster.image)
    return cluster, nodes


def leader_of(cluster, nodes):
    return nodes[cluster.partition("t").leader]


def replicate(leader: Node, follower: Node) -> None:
    """One follower fetch round: the follower's position reaches the leader, then the leader's
    records and HW reach the follower (what replica/fetcher.py and apis/fetch.py carry)."""
    f = follower.replicas.partitions[("t", 0)]
    h = leader.replicas.partitions[("t", 0)]
    if f.state.fetch_state is FetchState.TRUNCATING:
        answer = truncation.epoch_end_offset(h.log, truncation.latest_epoch(f.log) or 0)
        follower.replicas.truncate(f, truncation.offset_truncation_state(
            f.log, answer, f.state.fetch_offset))
    leader.replicas.follower_fetched(h, follower.node_id, fetch_offset=f.log.log_end_offset,
                                     current_leader_epoch=f.state.leader_epoch,
                                     log_start_offset=f.log.log_start_offset, broker_epoch=-1)
    read = h.log.read(f.log.log_end_offset, 1 << 20, isolation_upper=h.log.log_end_offset)
    data = b"".join(bytes(c) for c in read.chunks)
    follower.replicas.append_fetched(f, data, leader_high_watermark=h.log.high_watermark,
                                     leader_log_start_offset=h.log.log_start_offset)


def produce(node: Node, values, acks=-1):
    hosted = node.replicas.check_append("t", 0, acks)
    result = hosted.log.append(make_batch(values), now_ms=0,
                               leader_epoch=hosted.state.leader_epoch)
    node.replicas.appended(hosted)
    return hosted, result


def test_publish_makes_one_leader_and_followers_with_logs():
    cluster, nodes = three_nodes()
    leaders = [n for n in nodes.values() if n.replicas.partitions[("t", 0)].state.is_leader]
    assert [n.node_id for n in leaders] == [cluster.partition("t").leader]
    for node in nodes.values():
        hosted = node.replicas.partitions[("t", 0)]
        assert hosted.log.replicated
        assert node.logs.topic("t").num_partitions == 1
    follower = next(n for n in nodes.values() if n not in leaders)
    with_error = None
    try:
        follower.replicas.leader("t", 0)
    except KafkaError as e:
        with_error = e.code
    assert with_error == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_high_watermark_waits_for_the_isr_then_moves():
    cluster, nodes = three_nodes()
    leader = leader_of(cluster, nodes)
    followers = [n for n in nodes.values() if n is not leader]
    hosted, result = produce(leader, [b"a", b"b"])
    assert hosted.log.log_end_offset == 2
    assert hosted.log.high_watermark == 0     # not replicated yet: consumers see nothing
    replicate(leader, followers[0])
    assert hosted.log.high_watermark == 0     # one of two followers
    replicate(leader, followers[1])
    replicate(leader, followers[0])           # their next fetches carry LEO 2
    replicate(leader, followers[1])
    assert hosted.log.high_watermark == 2
    replicate(leader, followers[0])           # a follower learns the HW one fetch late
    for f in followers:
        fp = f.replicas.partitions[("t", 0)]
        assert fp.log.log_end_offset == 2
        assert fp.log.high_watermark == 2
        # The follower's copy is the leader's, offsets and epochs included.
        assert [i.base_offset for _, i in fp.log.batches_from(0)] == [0]


def test_acks_all_waits_until_replicated_and_times_out_otherwise():
    async def main():
        cluster, nodes = three_nodes()
        leader = leader_of(cluster, nodes)
        followers = [n for n in nodes.values() if n is not leader]
        leader.replicas.clock = Clock()   # trio's (mock) clock, for the wait
        hosted, result = produce(leader, [b"x"])
        codes = []

        async def waiter(deadline):
            codes.append(await leader.replicas.wait_for_replicas(
                hosted, result.last_offset + 1, deadline))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, trio.current_time() + 30)
            await trio.testing.wait_all_tasks_blocked()
            assert codes == []
            for f in followers:
                replicate(leader, f)
            for f in followers:
                replicate(leader, f)
        assert codes == [ErrorCode.NONE]
        hosted, result = produce(leader, [b"y"])
        code = await leader.replicas.wait_for_replicas(hosted, result.last_offset + 1,
                                                       trio.current_time() + 30)
        assert code == ErrorCode.REQUEST_TIMED_OUT

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_min_insync_replicas_refuses_acks_all_when_isr_too_small():
    cluster, nodes = three_nodes(**{"min.insync.replicas": "2"})
    leader = leader_of(cluster, nodes)
    hosted = leader.replicas.partitions[("t", 0)]
    # The controller shrinks the ISR to the leader alone (followers fenced).
    for broker_id in (1, 2, 3):
        if broker_id != leader.node_id:
            cluster.apply(cluster.replication.handle_broker_fenced(broker_id))
    leader.replicas.publish(cluster.image)
    assert hosted.state.isr == frozenset({leader.node_id})
    try:
        leader.replicas.check_append("t", 0, -1)
        raise AssertionError("acks=all accepted under min.insync.replicas")
    except KafkaError as e:
        assert e.code == ErrorCode.NOT_ENOUGH_REPLICAS
    leader.replicas.check_append("t", 0, 1)   # acks=1 still works


def test_lagging_follower_is_proposed_out_of_the_isr():
    cluster, nodes = three_nodes()
    leader = leader_of(cluster, nodes)
    followers = [n for n in nodes.values() if n is not leader]
    produce(leader, [b"a"])
    replicate(leader, followers[0])
    replicate(leader, followers[0])
    cluster.clock.advance(11_000)      # past replica.lag.time.max.ms (10 s)
    replicate(leader, followers[0])
    assert leader.replicas.maybe_shrink_isrs() == 1
    proposal = leader.replicas.pending_proposals[-1]
    assert followers[1].node_id not in proposal.new_isr
    assert followers[0].node_id in proposal.new_isr


def test_new_leader_after_failover_and_old_leader_truncates_its_unreplicated_tail():
    cluster, nodes = three_nodes()
    old = leader_of(cluster, nodes)
    followers = [n for n in nodes.values() if n is not old]
    produce(old, [b"committed"])
    for f in followers:
        replicate(old, f)
    for f in followers:
        replicate(old, f)
    # Written by the old leader only, never replicated, never acknowledged to acks=all.
    produce(old, [b"lost-1", b"lost-2"])
    assert old.replicas.partitions[("t", 0)].log.log_end_offset == 3
    cluster.apply(cluster.replication.handle_broker_fenced(old.node_id))
    for node in nodes.values():
        node.replicas.publish(cluster.image)
    new = leader_of(cluster, nodes)
    assert new is not old
    new_hosted = new.replicas.partitions[("t", 0)]
    assert new_hosted.state.leader_epoch == 1
    assert new_hosted.log.epoch_entries[-1] == (1, 1)
    produce(new, [b"after"])
    # The old leader comes back as a follower: truncation by leader epoch, then fetch.
    cluster.apply(cluster.replication.handle_broker_unfenced(old.node_id,
                                                             cluster.epoch(old.node_id)))
    old.replicas.publish(cluster.image)
    old_hosted = old.replicas.partitions[("t", 0)]
    assert not old_hosted.state.is_leader
    assert old_hosted.state.fetch_state is FetchState.TRUNCATING
    replicate(new, old)
    assert old_hosted.log.log_end_offset == 2
    values = []
    from trioka.log.records import decode_batch
    for segment, info in old_hosted.log.batches_from(0):
        values += [r.value for r in decode_batch(segment.read_batch(info)).records]
    assert values == [b"committed", b"after"]


def test_follower_append_refuses_offsets_going_back():
    cluster, nodes = three_nodes()
    leader = leader_of(cluster, nodes)
    follower = next(n for n in nodes.values() if n is not leader)
    fp = follower.replicas.partitions[("t", 0)]
    fp.log.append_as_follower(make_batch([b"a"], base_offset=0), now_ms=0)
    try:
        fp.log.append_as_follower(make_batch([b"b"], base_offset=0), now_ms=0)
        raise AssertionError("an offset was reused")
    except KafkaError as e:
        assert e.code == ErrorCode.OFFSET_OUT_OF_RANGE
    # Gaps (compaction) are kept as the leader gave them.
    assert fp.log.append_as_follower(make_batch([b"c"], base_offset=5), now_ms=0) == 6


def test_topic_removed_from_metadata_drops_its_logs():
    cluster, nodes = three_nodes()
    topic_id = cluster.image.topic("t").topic_id
    cluster.apply(cluster.replication.delete_topic(topic_id))
    for node in nodes.values():
        node.replicas.publish(cluster.image)
        assert node.replicas.partitions == {}
        assert node.logs.topic("t") is None


async def test_a_followers_large_append_on_a_stalling_disk_is_written_from_a_worker_thread(
        tmp_path, monkeypatch):
    """The replica fetcher's append while its dir's writes stall (log/partition.py
    begin_append_as_follower): the write runs outside the event loop's thread, then the
    follower has the leader's batch and takes its high watermark, as on the loop."""
    import threading
    import types
    from trioka.log.partition import OFF_LOOP_WRITE_BYTES, PendingAppend
    from trioka.replica.fetcher import ReplicaFetcher
    cluster, nodes = three_nodes(data_dir=str(tmp_path))
    leader = leader_of(cluster, nodes)
    follower = next(n for n in nodes.values() if n is not leader)
    hosted, _ = produce(leader, [b"v" * OFF_LOOP_WRITE_BYTES])
    f = follower.replicas.partitions[("t", 0)]
    f.state.fetch_state = FetchState.FETCHING
    follower.logs.files.note_write(1.0, time.perf_counter())     # a write took a second
    writers = []
    write = PendingAppend.write
    monkeypatch.setattr(PendingAppend, "write",
                        lambda self: (writers.append(threading.get_ident()), write(self))[1])
    read = hosted.log.read(0, 1 << 20, isolation_upper=hosted.log.log_end_offset)
    answer = types.SimpleNamespace(error_code=0, records=b"".join(bytes(c) for c in read.chunks),
                                   high_watermark=1, log_start_offset=0)
    fetcher = ReplicaFetcher(node_id=follower.node_id, leader_id=leader.node_id, channel=None,
                             replicas=follower.replicas, clock=cluster.clock,
                             config=follower.config, broker_epoch=lambda: 1)
    with trio.fail_after(10):
        await fetcher._fetched(f, answer)
    assert writers and writers[0] != threading.get_ident()
    assert (f.log.log_end_offset, f.log.high_watermark, f.log.pending_append) == (1, 1, None)
    assert bytes(f.log.read(0, 1 << 20, isolation_upper=1).records) == answer.records
