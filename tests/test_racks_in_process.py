"""Racks in a cluster of three nodes in one process (node/cluster.py `racks`), end to end over
Kafka RPCs: each node's `broker.rack` registered with the controller and reported by Metadata
and DescribeCluster, replica placement across racks, KIP-392 fetching from the closest replica
(`replica.selector.class`, `rack_id`, a follower serving consumers up to its high watermark) and
KIP-951's leader hints in Produce and Fetch answers of a node that does not lead."""

import pytest
import trio

from record_batches import make_batch
from trioka.__main__ import main as trioka_main
from trioka.clock import Clock
from trioka.node.cluster import cluster_configs, parse_racks
from trioka.node.channel import NodeChannel
from trioka.replica.selector import RACK_AWARE_REPLICA_SELECTOR
from trioka.testing.embedded import open_cluster
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

DEADLINE_S = 30
Fetch = protocol.request_class(ApiKey.FETCH)
Produce = protocol.request_class(ApiKey.PRODUCE)
CreateTopics = protocol.request_class(ApiKey.CREATE_TOPICS)


class Client:
    """One connection per node, as a client keeps them."""

    def __init__(self, cluster):
        self.channels = {}
        for node in cluster.nodes:
            host, port = node.bootstrap_servers.split(",")[0].rsplit(":", 1)
            self.channels[node.node_id] = NodeChannel(
                host, int(port), clock=Clock(), client_id="rack-test",
                request_timeout_ms=DEADLINE_S * 1000)
        self.addresses = {node.node_id: node.bootstrap_servers for node in cluster.nodes}

    async def ask(self, node_id: int, api_key: int, message, version: int | None = None):
        return await self.channels[node_id].request(api_key, message, version=version)

    async def aclose(self):
        for channel in self.channels.values():
            await channel.aclose()


async def create_topic(client, name: str, partitions: int = 1, rf: int = 3,
                       assignment=None) -> None:
    topic = CreateTopics.CreatableTopic(
        name=name, num_partitions=-1 if assignment else partitions,
        replication_factor=-1 if assignment else rf, configs=[],
        assignments=[CreateTopics.CreatableTopic.CreatableReplicaAssignment(
            partition_index=i, broker_ids=list(b)) for i, b in enumerate(assignment or [])])
    response = await client.ask(1, ApiKey.CREATE_TOPICS, CreateTopics(
        topics=[topic], timeout_ms=DEADLINE_S * 1000, validate_only=False))
    assert response.topics[0].error_code == 0, response


async def everywhere(cluster, condition) -> None:
    """Wait until every node's metadata image satisfies `condition(broker)`."""
    for node in cluster.nodes:
        broker = node.server.broker
        assert await broker.cluster.wait_for_metadata(lambda: condition(broker), DEADLINE_S)


def partition_of(cluster, name: str, index: int = 0):
    image = cluster.nodes[0].server.broker.cluster.image
    return image.topic(name).partitions[index]


def fetch_request(topic_id, *, offset=0, rack="", leader_epoch=-1, max_wait_ms=0, name="t"):
    return Fetch(max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                 session_id=0, session_epoch=-1, rack_id=rack, topics=[Fetch.FetchTopic(
                     topic=name, topic_id=topic_id, partitions=[Fetch.FetchTopic.FetchPartition(
                         partition=0, current_leader_epoch=leader_epoch, fetch_offset=offset,
                         partition_max_bytes=1 << 20)])])


def produce_request(name, topic_id, values, acks=-1):
    return Produce(acks=acks, timeout_ms=DEADLINE_S * 1000, topic_data=[
        Produce.TopicProduceData(name=name, topic_id=topic_id, partition_data=[
            Produce.TopicProduceData.PartitionProduceData(index=0, records=make_batch(values))])])


def test_each_node_gets_its_rack_in_node_order():
    configs = cluster_configs({"listeners": "PLAINTEXT://127.0.0.1:0", "memory": True}, 3, ["a", "b", "c"])
    assert [c.broker_rack for c in configs] == ["a", "b", "c"]
    # broker.rack in the base config is every node's, as one server.properties for all.
    configs = cluster_configs({"listeners": "PLAINTEXT://127.0.0.1:0", "broker.rack": "z", "memory": True}, 2)
    assert [c.broker_rack for c in configs] == ["z", "z"]
    assert parse_racks("a, b,c") == ["a", "b", "c"] and parse_racks(None) is None


@pytest.mark.parametrize("racks", [["a", "b"], ["a", "b", "c", "d"], ["a", "", "c"]])
def test_racks_must_name_one_rack_per_node(racks):
    with pytest.raises(ValueError, match="one rack per node"):
        cluster_configs({"listeners": "PLAINTEXT://127.0.0.1:0", "memory": True}, 3, racks)


def test_trioka_serve_refuses_racks_that_do_not_fit(capsys):
    with pytest.raises(SystemExit) as usage:       # a usage error: exit 2, the command named
        trioka_main(["serve", "--memory", "--racks", "a"])
    assert usage.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "trioka serve: error: --racks needs --nodes (with one node, set broker.rack)"
    with pytest.raises(SystemExit, match="one rack per node"):
        trioka_main(["serve", "--memory", "--nodes", "3", "--racks", "a,b"])


async def test_racks_are_registered_reported_and_spread_replicas(tmp_path):
    with trio.fail_after(DEADLINE_S * 2):
        async with open_cluster(3, {"listeners": "PLAINTEXT://127.0.0.1:0"},
                                data_dir=str(tmp_path), racks=["a", "b", "b"]) as cluster:
            assert [n.describe()["rack"] for n in cluster.nodes] == ["a", "b", "b"]
            client = Client(cluster)
            try:
                metadata = await client.ask(2, ApiKey.METADATA,
                                            protocol.request_class(ApiKey.METADATA)(topics=[]))
                assert {b.node_id: b.rack for b in metadata.brokers} == \
                    {1: "a", 2: "b", 3: "b"}
                described = await client.ask(
                    3, ApiKey.DESCRIBE_CLUSTER,
                    protocol.request_class(ApiKey.DESCRIBE_CLUSTER)())
                assert {b.broker_id: b.rack for b in described.brokers} == \
                    {1: "a", 2: "b", 3: "b"}
                # Two replicas of each partition: one must be in rack a, node 1 alone there.
                await create_topic(client, "spread", partitions=6, rf=2)
                image = cluster.nodes[0].server.broker.cluster.image
                for registration in image.topic("spread").partitions.values():
                    assert 1 in registration.replicas, registration
            finally:
                await client.aclose()


async def test_a_consumer_is_sent_to_the_follower_in_its_rack_which_serves_it(tmp_path):
    config = {"listeners": "PLAINTEXT://127.0.0.1:0",
              "replica.selector.class": RACK_AWARE_REPLICA_SELECTOR}
    with trio.fail_after(DEADLINE_S * 2):
        async with open_cluster(3, config, data_dir=str(tmp_path),
                                racks=["a", "b", "c"]) as cluster:
            client = Client(cluster)
            try:
                await create_topic(client, "t", assignment=[[1, 2, 3]])
                await everywhere(cluster, lambda b: b.topic("t") is not None)
                topic_id = cluster.nodes[0].server.broker.topic("t").topic_id
                produced = await client.ask(1, ApiKey.PRODUCE, produce_request(
                    "t", topic_id, [b"x", b"y", b"z"]))
                assert produced.responses[0].partition_responses[0].error_code == 0

                # The leader (node 1, rack a) sends a rack-c consumer to node 3, with no records.
                answer = await client.ask(1, ApiKey.FETCH, fetch_request(topic_id, rack="c"))
                pd = answer.responses[0].partitions[0]
                assert (pd.error_code, pd.preferred_read_replica) == (0, 3)
                assert not pd.records and pd.high_watermark == 3
                # A consumer of the leader's rack, or with no rack, reads the leader.
                for rack in ("a", ""):
                    answer = await client.ask(1, ApiKey.FETCH, fetch_request(topic_id, rack=rack))
                    pd = answer.responses[0].partitions[0]
                    assert pd.preferred_read_replica == -1 and pd.records

                # Node 3 serves it, up to its high watermark (a long poll until it has it).
                answer = await client.ask(3, ApiKey.FETCH, fetch_request(
                    topic_id, rack="c", max_wait_ms=DEADLINE_S * 1000))
                pd = answer.responses[0].partitions[0]
                assert (pd.error_code, pd.preferred_read_replica) == (0, -1)
                assert pd.high_watermark == 3 and pd.records
                # Past its log end offset: OFFSET_OUT_OF_RANGE (the consumer checks with the
                # leader); before v11 only leaders serve consumers.
                answer = await client.ask(3, ApiKey.FETCH, fetch_request(topic_id, offset=9))
                assert answer.responses[0].partitions[0].error_code == \
                    ErrorCode.OFFSET_OUT_OF_RANGE
                answer = await client.ask(3, ApiKey.FETCH,
                                          fetch_request(topic_id, name="t"), version=10)
                assert answer.responses[0].partitions[0].error_code == \
                    ErrorCode.NOT_LEADER_OR_FOLLOWER
            finally:
                await client.aclose()


async def test_not_leader_answers_carry_the_current_leader_and_its_endpoint(tmp_path):
    with trio.fail_after(DEADLINE_S * 2):
        async with open_cluster(3, {"listeners": "PLAINTEXT://127.0.0.1:0"},
                                data_dir=str(tmp_path), racks=["a", "b", "c"]) as cluster:
            client = Client(cluster)
            try:
                await create_topic(client, "t", assignment=[[3, 2]])
                await everywhere(cluster, lambda b: b.topic("t") is not None)
                topic_id = cluster.nodes[0].server.broker.topic("t").topic_id
                epoch = partition_of(cluster, "t").leader_epoch
                host, port = client.addresses[3].rsplit(":", 1)
                endpoint = (3, host, int(port), "c")

                # Produce to a follower (node 2) and to a node with no replica (node 1).
                for node in (2, 1):
                    answer = await client.ask(node, ApiKey.PRODUCE,
                                              produce_request("t", topic_id, [b"v"], acks=1))
                    pr = answer.responses[0].partition_responses[0]
                    assert pr.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
                    assert (pr.current_leader.leader_id, pr.current_leader.leader_epoch) == \
                        (3, epoch)
                    assert [(e.node_id, e.host, e.port, e.rack)
                            for e in answer.node_endpoints] == [endpoint]
                # Before v10 there is nowhere to put them.
                answer = await client.ask(2, ApiKey.PRODUCE,
                                          produce_request("t", topic_id, [b"v"], acks=1),
                                          version=9)
                pr = answer.responses[0].partition_responses[0]
                assert pr.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
                assert pr.current_leader.leader_id == -1 and not answer.node_endpoints

                # Fetch v16+: a node without a replica, and a stale leader epoch.
                answer = await client.ask(1, ApiKey.FETCH, fetch_request(topic_id))
                pd = answer.responses[0].partitions[0]
                assert pd.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
                assert (pd.current_leader.leader_id, pd.current_leader.leader_epoch) == (3, epoch)
                assert [(e.node_id, e.host, e.port, e.rack)
                        for e in answer.node_endpoints] == [endpoint]
                if epoch > 0:
                    answer = await client.ask(3, ApiKey.FETCH,
                                              fetch_request(topic_id, leader_epoch=epoch - 1))
                    pd = answer.responses[0].partitions[0]
                    assert pd.error_code == ErrorCode.FENCED_LEADER_EPOCH
                    assert pd.current_leader.leader_id == 3
                # A leader's consumers get neither hints nor a preferred replica.
                answer = await client.ask(3, ApiKey.FETCH, fetch_request(topic_id))
                pd = answer.responses[0].partitions[0]
                assert pd.error_code == 0 and pd.current_leader.leader_id == -1
                assert pd.preferred_read_replica == -1 and not answer.node_endpoints
            finally:
                await client.aclose()
