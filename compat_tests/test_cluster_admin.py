"""Metadata-changing admin requests in a three-node cluster (`trioka serve --nodes 3`, node 1 the
only controller voter), through the controller as in KRaft, with confluent-kafka's AdminClient
and kafka-python's KafkaAdminClient:

- topic and broker configs (IncrementalAlterConfigs, AlterConfigs) become ConfigRecords every
  node sees in DescribeConfigs, and a topic's min.insync.replicas reaches its leader's acks=all;
- ElectLeaders PREFERRED moves a leadership back to the first replica, and the controller's
  auto leader rebalance does it by itself;
- AlterPartitionReassignments copies a partition to its new replicas before the old one goes,
  ListPartitionReassignments shows it in progress;
- with unclean.leader.election.enable a partition whose ISR is only a dead node gets a leader
  from outside the ISR: what that replica lacked is lost, no more, and the old leader truncates
  to agree with it when it comes back.
"""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic, ResourceType)

from compat_tests.harness import RawConnection, wait_for
from trioka.testing.process import ClusterProcess

pytestmark = pytest.mark.timeout(300)

FAST_FAILURE = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "3000",
    "default.replication.factor": "3",
}


def start_cluster(tmp_path, **overrides) -> ClusterProcess:
    return ClusterProcess(3, str(tmp_path / "data"),
                          overrides={**FAST_FAILURE, **overrides}).start()


@pytest.fixture
def cluster(tmp_path):
    c = start_cluster(tmp_path, **{"auto.leader.rebalance.enable": "false"})
    yield c
    c.close()


def partition_info(admin, topic, partition=0):
    return admin.list_topics(topic, timeout=10).topics[topic].partitions.get(partition)


def node_admin(cluster, node_id) -> AdminClient:
    """An AdminClient that talks to one node only."""
    return AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.ports[node_id - 1]}"})


def describe(admin, resource_type, name) -> dict:
    resource = ConfigResource(resource_type, name)
    return admin.describe_configs([resource])[resource].result(30)


def topic_config(admin, topic) -> dict:
    return describe(admin, ResourceType.TOPIC, topic)


def produce(bootstrap, topic, values, acks="all", retries=True):
    settings = {"bootstrap.servers": bootstrap, "acks": acks, "message.timeout.ms": 20000,
                "enable.idempotence": acks == "all" and retries}
    if not retries:
        settings["retries"] = 0
    producer = Producer(settings)
    acked, errors = [], []
    for value in values:
        producer.produce(topic, value, partition=0,
                         on_delivery=lambda e, m: (errors if e else acked).append(
                             e or (m.offset(), m.value())))
    producer.flush(30)
    return acked, errors


def consume(bootstrap, topic, timeout=30):
    """Every record of partition 0 up to its end, as (offset, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "admin-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        tp = TopicPartition(topic, 0)
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []

        def done():
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
            return len(got) >= high
        wait_for(done, timeout, lambda: f"{len(got)} of {high} records", interval=0)
        return got
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------- configs

def test_topic_and_broker_configs_go_through_the_controller_to_every_node(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("configured", num_partitions=1,
                                  replica_assignment=[[1, 2, 3]])])["configured"].result(30)
    resource = ConfigResource(ResourceType.TOPIC, "configured", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([resource])[resource].result(30)
    # Every node answers from its own metadata image.
    for node_id in (1, 2, 3):
        configs = topic_config(node_admin(cluster, node_id), "configured")
        assert configs["retention.ms"].value == "3600000"
        assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        assert configs["cleanup.policy"].value == "delete,compact"
        assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    # Kafka's errors, from the controller.
    bad = ConfigResource(ResourceType.TOPIC, "configured", incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception) as failure:
        admin.incremental_alter_configs([bad])[bad].result(30)
    assert "INVALID_CONFIG" in str(failure.value) or "Invalid value" in str(failure.value)

    # AlterConfigs replaces the whole set: retention.ms goes back to its default.
    replace = ConfigResource(ResourceType.TOPIC, "configured",
                             set_config={"cleanup.policy": "compact"})
    admin.alter_configs([replace])[replace].result(30)
    configs = topic_config(node_admin(cluster, 3), "configured")
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # A dynamic broker config of node 2 (kafka-python), and the cluster-wide default.
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType, KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","))
    try:
        kp.alter_configs([KpResource(ConfigResourceType.BROKER, "2",
                                     configs={"log.retention.ms": "7200000"})])
    finally:
        kp.close()
    # The cluster-wide default (resource name "", which neither client sends): raw, to node 1.
    from trioka.wire.api_keys import ApiKey
    from trioka.wire.protocol import request_class
    Request = request_class(ApiKey.INCREMENTAL_ALTER_CONFIGS)
    Resource = Request.AlterConfigsResource
    with RawConnection(f"127.0.0.1:{cluster.ports[0]}", timeout=40) as conn:
        response = conn.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, Request(
            resources=[Resource(resource_type=4, resource_name="", configs=[
                Resource.AlterableConfig(name="log.retention.bytes", config_operation=0,
                                         value="123456789")])], validate_only=False))
    assert [r.error_code for r in response.responses] == [0]
    configs = describe(node_admin(cluster, 2), ResourceType.BROKER, "2")
    assert configs["log.retention.ms"].value == "7200000"
    assert configs["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    node3 = node_admin(cluster, 3)     # node 3 learns it from the metadata log, soon after
    wait_for(lambda: describe(node3, ResourceType.BROKER, "3")["log.retention.bytes"].source
             == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value, 30,
             "the cluster-wide default on node 3")
    assert describe(node3, ResourceType.BROKER, "3")["log.retention.bytes"].value == \
        "123456789"
    # A topic without an override follows the new default on every node.
    assert topic_config(node3, "configured")["retention.bytes"].value == "123456789"


def test_a_topics_min_insync_replicas_reaches_its_leader(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("strict", num_partitions=1,
                                  replica_assignment=[[1, 2, 3]])])["strict"].result(30)
    node1 = f"127.0.0.1:{cluster.ports[0]}"
    acked, errors = produce(node1, "strict", [b"before"])
    assert errors == [] and len(acked) == 1
    cluster.node(3, "kill")
    wait_for(lambda: 3 not in partition_info(admin, "strict").isrs, 60, "node 3 out of the ISR")
    assert produce(node1, "strict", [b"two of three"])[1] == []
    resource = ConfigResource(ResourceType.TOPIC, "strict", incremental_configs=[
        ConfigEntry("min.insync.replicas", "3", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(30)
    _, errors = produce(node1, "strict", [b"refused"], retries=False)
    assert errors and errors[0].name() == "NOT_ENOUGH_REPLICAS", errors


# -------------------------------------------------------------------------------- elections

def test_preferred_leader_election_through_the_controller(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("preferred", num_partitions=1,
                                  replica_assignment=[[2, 1, 3]])])["preferred"].result(30)
    assert partition_info(admin, "preferred").leader == 2
    cluster.node(2, "kill")
    wait_for(lambda: partition_info(admin, "preferred").leader == 1, 30, "node 1 leads")
    cluster.node(2, "start")
    wait_for(lambda: 2 in partition_info(admin, "preferred").isrs, 60, "node 2 back in the ISR")
    assert partition_info(admin, "preferred").leader == 1   # no auto rebalance here

    from confluent_kafka import ElectionType
    result = admin.elect_leaders(ElectionType.PREFERRED,
                                 [TopicPartition("preferred", 0)]).result(30)
    assert result[TopicPartition("preferred", 0)] is None
    assert partition_info(admin, "preferred").leader == 2   # answered once the image shows it
    # Already there: ELECTION_NOT_NEEDED, per partition (kafka-python).
    from kafka.admin import KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","))
    try:
        response = kp.elect_leaders(0, {"preferred": [0]}, raise_errors=False)
        [(_, [(partition, code, _)])] = response.replica_election_results
        assert (partition, code) == (0, 84)     # ELECTION_NOT_NEEDED
    finally:
        kp.close()


def test_auto_leader_rebalance_brings_the_preferred_leader_back(tmp_path):
    cluster = start_cluster(tmp_path, **{"leader.imbalance.check.interval.seconds": "2"})
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("balanced", num_partitions=1,
                                      replica_assignment=[[3, 1, 2]])])["balanced"].result(30)
        cluster.node(3, "kill")
        wait_for(lambda: partition_info(admin, "balanced").leader == 1, 30, "node 1 leads")
        cluster.node(3, "start")
        wait_for(lambda: partition_info(admin, "balanced").leader == 3, 60,
                 lambda: f"node 3 leading again: {partition_info(admin, 'balanced')}")
    finally:
        cluster.close()


# ------------------------------------------------------------------------------ reassignment

def test_reassignment_copies_the_data_before_dropping_the_old_replica(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("moving", num_partitions=1,
                                  replica_assignment=[[1, 2]])])["moving"].result(30)
    values = [f"v{i}".encode() * 100 for i in range(2000)]
    acked, errors = produce(cluster.bootstrap, "moving", values)
    assert errors == [] and len(acked) == len(values)

    from kafka import TopicPartition as KpTp
    from kafka.admin import KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","))
    try:
        # Node 3 is slowed so the reassignment is seen in progress.
        cluster.node(3, "slow", ms=1500)
        result = kp.alter_partition_reassignments({KpTp("moving", 0): [2, 3]})
        assert result == {KpTp("moving", 0): None}
        ongoing = kp.list_partition_reassignments({"moving": [0]})
        if ongoing:    # it may already be done
            state = ongoing[KpTp("moving", 0)]
            assert state["adding_replicas"] == [3] and state["removing_replicas"] == [1]
            assert state["replicas"] == [2, 3, 1]
        cluster.node(3, "slow", ms=0)
        wait_for(lambda: sorted(partition_info(admin, "moving").replicas) == [2, 3], 60,
                 lambda: f"the reassignment done: {partition_info(admin, 'moving')}")
        assert kp.list_partition_reassignments() == {}
        errors = kp.alter_partition_reassignments({KpTp("moving", 0): [2, 9]})
        assert errors[KpTp("moving", 0)].errno == 39       # INVALID_REPLICA_ASSIGNMENT
    finally:
        kp.close()
    p = partition_info(admin, "moving")
    assert sorted(p.isrs) == [2, 3] and p.leader in (2, 3)
    # Node 1 no longer has it; node 3 has every record: kill node 2, node 3 alone serves all.
    cluster.node(2, "kill")
    wait_for(lambda: partition_info(admin, "moving").leader == 3, 30, "node 3 leads")
    got = consume(f"127.0.0.1:{cluster.ports[2]}", "moving")
    assert [v for _, v in got] == values


# ------------------------------------------------------------------------ unclean election

def test_unclean_election_loses_what_the_new_leader_lacked_and_no_more(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("unclean", num_partitions=1, replica_assignment=[[2, 3]],
                                  config={"unclean.leader.election.enable": "true"})]
                        )["unclean"].result(30)
    clean, errors = produce(cluster.bootstrap, "unclean", [f"a{i}".encode() for i in range(100)])
    assert errors == [] and len(clean) == 100
    # Node 3 falls behind (its fetches stall) while node 2 takes more records alone (acks=1),
    # and leaves the ISR.
    cluster.node(3, "slow", ms=60000)
    lone, errors = produce(cluster.bootstrap, "unclean", [f"b{i}".encode() for i in range(100)],
                           acks="1")
    assert errors == []
    wait_for(lambda: partition_info(admin, "unclean").isrs == [2], 60, "node 3 out of the ISR")
    # Node 2 dies with the only in-sync copy: node 3 is elected from outside the ISR.
    cluster.node(2, "kill")
    cluster.node(3, "slow", ms=0)
    wait_for(lambda: partition_info(admin, "unclean").leader == 3, 30,
             lambda: f"node 3 elected: {partition_info(admin, 'unclean')}")
    survived = consume(cluster.bootstrap, "unclean")
    values = [v for _, v in survived]
    assert [o for o, _ in survived] == list(range(len(survived)))
    # Everything acknowledged by the ISR of both survives; of node 2's lone records only what
    # node 3 had fetched (a prefix) does: the rest is lost, no more.
    assert values[:100] == [v for _, v in clean]
    lone_values = [v for _, v in lone]
    assert values[100:] == lone_values[:len(values) - 100]
    more, errors = produce(cluster.bootstrap, "unclean", [f"c{i}".encode() for i in range(50)])
    assert errors == []
    # The old leader comes back, truncates to agree with node 3, and catches up.
    cluster.node(2, "start")
    wait_for(lambda: sorted(partition_info(admin, "unclean").isrs) == [2, 3], 60,
             lambda: f"node 2 back in the ISR: {partition_info(admin, 'unclean')}")
    from confluent_kafka import ElectionType
    admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("unclean", 0)]).result(30)
    assert partition_info(admin, "unclean").leader == 2
    after = consume(f"127.0.0.1:{cluster.ports[1]}", "unclean")
    assert after == survived + [(len(survived) + i, v) for i, (_, v) in enumerate(more)]
