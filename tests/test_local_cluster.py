"""N nodes in one process (node/cluster.py): the configs `trioka serve --nodes N` gives each node,
the nodes' lifecycle (start in node order, stop, kill as SIGKILL and recovery, a port in use),
the node controls reaching each node, and the admin endpoint's /nodes. What the nodes do together
(registration, replication) is tested with that code; this is the harness around it."""

import json
import os
import socket

import pytest
import trio

from record_batches import make_batch
from trioka.clock import Clock
from trioka.config import Config, parse_listeners, read_properties
from trioka.controls import endpoint
from trioka.log.checkpoint import CLEAN_SHUTDOWN_MARKER, RECOVERY_POINT_CHECKPOINT
from trioka.node.channel import NodeChannel, NodeUnreachable
from trioka.node.cluster import CLUSTER_ID_FILE, LocalCluster, cluster_configs
from trioka.testing.embedded import open_broker, open_cluster
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

# Every wait in these tests ends: long enough for a loaded machine, short of pytest's timeout.
DEADLINE_S = 30
NOW = 1_700_000_000_000


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports nothing listens on now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no consecutive free ports")


async def ask(address: str, api_key: int, message):
    host, port = address.rsplit(":", 1)
    channel = NodeChannel(host, int(port), clock=Clock(), client_id="test",
                          request_timeout_ms=DEADLINE_S * 1000)
    try:
        return await channel.request(api_key, message)
    finally:
        await channel.aclose()


def api_versions_request():
    return protocol.request_class(ApiKey.API_VERSIONS)(client_software_name="trioka-test",
                                                       client_software_version="1")


def metadata_request():
    return protocol.request_class(ApiKey.METADATA)(topics=[])


# ---------------------------------------------------------------------------------- configs

def test_cluster_configs_give_each_node_its_roles_listener_and_log_dir(tmp_path):
    base = Config({"listeners": "PLAINTEXT://127.0.0.1:9092", "log.dirs": str(tmp_path),
                   "num.partitions": 4})
    configs = cluster_configs(base, 3)
    assert [c.node_id_value for c in configs] == [1, 2, 3]
    assert [c.process_roles for c in configs] == ["broker,controller", "broker", "broker"]
    clients = [[lst for lst in parse_listeners(c.listeners) if lst.name == "PLAINTEXT"]
               for c in configs]
    assert [(lst.host, lst.port) for (lst,) in clients] == [("127.0.0.1", p)
                                                           for p in (9092, 9093, 9094)]
    (controller,) = [lst for lst in parse_listeners(configs[0].listeners)
                     if lst.name == "CONTROLLER"]
    assert controller.port > 0
    assert all("CONTROLLER" not in c.listeners for c in configs[1:])
    for c in configs:
        assert c.controller_quorum_voters == f"1@127.0.0.1:{controller.port}"
        assert c.controller_listener_names == "CONTROLLER"
        assert "CONTROLLER:PLAINTEXT" in c.listener_security_protocol_map
        assert c.inter_broker_listener_name == "PLAINTEXT"
        assert c.num_partitions == 4          # the rest of the base config, for every node
    assert [c.data_dir for c in configs] == [str(tmp_path / f"node-{i}") for i in (1, 2, 3)]
    # One cluster id, in Kafka's form, kept in the data dir so that a restart keeps it.
    cluster_id = configs[0].cluster_id
    assert len(cluster_id) == 22 and {c.cluster_id for c in configs} == {cluster_id}
    assert read_properties(str(tmp_path / CLUSTER_ID_FILE))["cluster.id"] == cluster_id
    assert cluster_configs(base, 2)[1].cluster_id == cluster_id
    assert cluster_configs(Config({"log.dirs": str(tmp_path), "cluster.id": "given"}),
                           1)[0].cluster_id == "given"


def test_cluster_configs_with_port_zero_and_in_memory():
    base = Config({"listeners": "PLAINTEXT://127.0.0.1:0"})
    base.memory = True
    configs = cluster_configs(base, 2)
    assert [parse_listeners(c.listeners)[0].port for c in configs] == [0, 0]
    assert all(c.memory and c.data_dir is None for c in configs)
    assert configs[0].cluster_id == configs[1].cluster_id


@pytest.mark.parametrize("nodes, listeners, message", [
    (0, "PLAINTEXT://127.0.0.1:9092", "at least 1 node"),
    (-2, "PLAINTEXT://127.0.0.1:9092", "at least 1 node"),
    (3, "PLAINTEXT://127.0.0.1:65534", "3 nodes need ports 65534-65536, past 65535"),
    (1, "PLAINTEXT://127.0.0.1:70000", "port out of range:70000"),   # refused by Config itself
    (2, "CONTROLLER://127.0.0.1:9093", "no listener for clients"),
])
def test_cluster_configs_refuse_what_cannot_be_a_cluster(nodes, listeners, message):
    with pytest.raises(ValueError, match=message):
        base = Config({"listeners": listeners, "controller.listener.names": "CONTROLLER"})
        base.memory = True
        cluster_configs(base, nodes)


# -------------------------------------------------------------------------------- lifecycle

async def test_three_nodes_start_on_consecutive_ports_and_each_answers(tmp_path):
    first = consecutive_free_ports(3)
    with trio.fail_after(DEADLINE_S):
        async with open_cluster(3, {"listeners": f"PLAINTEXT://127.0.0.1:{first}"},
                                data_dir=str(tmp_path)) as cluster:
            assert cluster.bootstrap_servers == ",".join(
                f"127.0.0.1:{first + i}" for i in range(3))
            assert [n.state for n in cluster.nodes] == ["running"] * 3
            for node, address in zip(cluster.nodes, cluster.bootstrap_servers.split(",")):
                versions = await ask(address, ApiKey.API_VERSIONS,
                                     api_versions_request())
                assert versions.error_code == 0
                metadata = await ask(address, ApiKey.METADATA, metadata_request())
                assert metadata.cluster_id == cluster.cluster_id
                assert os.path.isdir(tmp_path / f"node-{node.node_id}")
                assert node.server.broker.node_id == node.node_id


def single_node_cluster(data_dir: str) -> LocalCluster:
    """A LocalCluster of one node in single-node mode: the lifecycle without the controller."""
    return LocalCluster([Config({"listeners": "PLAINTEXT://127.0.0.1:0",
                                 "log.dirs": data_dir})])


async def test_kill_leaves_no_clean_close_and_start_recovers_the_data(tmp_path):
    data_dir = str(tmp_path)
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            cluster = await nursery.start(single_node_cluster(data_dir).run)
            node = cluster.node(1)
            broker = node.server.broker
            broker.create_topic("orders", 1, {})
            broker.partition("orders", 0).append(make_batch([b"a", b"b", b"c"]), now_ms=NOW)
            address = node.bootstrap_servers
            node.kill()
            assert node.state == "killed"
            await node.wait_stopped()
            # As SIGKILL leaves it: no clean-shutdown marker, no checkpoint of the appends.
            assert not os.path.exists(os.path.join(data_dir, CLEAN_SHUTDOWN_MARKER))
            checkpoint = os.path.join(data_dir, RECOVERY_POINT_CHECKPOINT)
            assert not os.path.exists(checkpoint) or "orders 0 3" not in open(checkpoint).read()
            with pytest.raises(NodeUnreachable):
                await ask(address, ApiKey.API_VERSIONS,
                          api_versions_request())
            await node.start()
            assert node.state == "running" and node.bootstrap_servers == address
            restarted = node.server.broker
            assert restarted is not broker
            assert restarted.logs.had_clean_shutdown is False
            assert restarted.partition("orders", 0).log_end_offset == 3
            await node.stop()
            assert node.state == "stopped"
            # A stop is a clean shutdown: the marker and the recovery point are written.
            assert os.path.exists(os.path.join(data_dir, CLEAN_SHUTDOWN_MARKER))
            assert "orders 0 3" in open(checkpoint).read()
            await node.start()
            assert node.server.broker.logs.had_clean_shutdown is True
            cluster.shutdown()


async def test_a_killed_node_of_three_starts_again_on_its_port(tmp_path):
    with trio.fail_after(DEADLINE_S):
        async with open_cluster(3, data_dir=str(tmp_path)) as cluster:
            node = cluster.node(2)
            address = node.bootstrap_servers
            described = await cluster.act(2, "kill")
            assert described["state"] == "killed"
            assert not os.path.exists(tmp_path / "node-2" / CLEAN_SHUTDOWN_MARKER)
            assert [n.state for n in cluster.nodes] == ["running", "killed", "running"]
            await cluster.act(2, "start")
            assert node.state == "running" and node.bootstrap_servers == address
            assert node.server.broker.logs.had_clean_shutdown is False
            metadata = await ask(address, ApiKey.METADATA, metadata_request())
            assert metadata.cluster_id == cluster.cluster_id
            await cluster.act(3, "stop")
            assert cluster.node(3).state == "stopped"
            assert os.path.exists(tmp_path / "node-3" / CLEAN_SHUTDOWN_MARKER)


async def test_a_port_in_use_fails_the_start_naming_the_node():
    first = consecutive_free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first + 1))
        taken.listen()
        with trio.fail_after(DEADLINE_S):
            with pytest.raises(OSError, match="node 2"):
                async with open_cluster(2, {"listeners": f"PLAINTEXT://127.0.0.1:{first}"},
                                        memory=True):
                    pass
    # Node 1, started before, let go of its port.
    with socket.socket() as again:
        again.bind(("127.0.0.1", first))


async def test_a_controller_port_taken_after_it_was_picked_is_picked_again(monkeypatch):
    """`serve --nodes` picks the controller's port before node 1 binds it; another process can
    bind it in between (seen in CI). A port it picked is picked again; one the user gave is not
    (the start fails naming the node, as for any port in use)."""
    import trioka.node.cluster as cluster_module
    from trioka.node.cluster import controller_port_picked, move_controller_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real_free_port = cluster_module.free_port
        picks = iter([busy])
        monkeypatch.setattr(cluster_module, "free_port",
                            lambda host="127.0.0.1": next(picks, None) or real_free_port(host))
        base = Config({"listeners": "PLAINTEXT://127.0.0.1:0"})
        base.memory = True
        assert controller_port_picked(base)
        configs = cluster_configs(base, 2)
        assert configs[1].controller_quorum_voters == f"1@127.0.0.1:{busy}"
        cluster = LocalCluster(configs, picked_controller_port=True)
        with trio.fail_after(DEADLINE_S):
            async with trio.open_nursery() as nursery:
                await nursery.start(cluster.run)
                voters = {n.config.controller_quorum_voters for n in cluster.nodes}
                (voter,) = voters
                assert voter != f"1@127.0.0.1:{busy}"
                assert f":{voter.rpartition(':')[2]}" in cluster.nodes[0].config.listeners
                cluster.shutdown()
        # The user's own controller port is theirs: not moved.
        given = Config({"listeners": f"PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{busy}"})
        given.memory = True
        assert not controller_port_picked(given)
        with trio.fail_after(DEADLINE_S):
            with pytest.raises(OSError, match="node 1"):
                await LocalCluster(cluster_configs(given, 2)).run()
    assert move_controller_port(cluster_configs(base, 1)) > 0


# --------------------------------------------------------------------------------- controls

async def test_isolate_heal_and_slow_reach_the_node_and_outlive_a_restart():
    with trio.fail_after(DEADLINE_S):
        async with open_cluster(3, memory=True) as cluster:
            node = cluster.node(2)
            await cluster.act(2, "isolate")
            assert node.server.broker.node_controls.isolated is True
            assert cluster.node(1).server.broker.node_controls.isolated is False
            await cluster.act(2, "slow", 250)
            assert node.server.broker.node_controls.slow_ms == 250
            node.kill()
            await node.start()
            # The faults are the network's, not the process's: a restarted node keeps them.
            assert node.server.broker.node_controls is node.controls
            assert node.describe()["isolated"] is True and node.describe()["slow_ms"] == 250
            await cluster.act(2, "heal")
            assert node.server.broker.node_controls.isolated is False
            assert node.server.broker.node_controls.slow_ms == 0
            with pytest.raises(ValueError):
                await cluster.act(2, "slow", -1)
            with pytest.raises(LookupError):
                await cluster.act(7, "kill")


async def test_the_admin_endpoint_serves_the_nodes_of_the_process():
    with trio.fail_after(DEADLINE_S):
        async with open_cluster(3, memory=True) as cluster:
            status, value = await endpoint.route_nodes(cluster, "GET", "/nodes", b"")
            assert status == 200
            assert [(n["id"], n["state"], n["roles"]) for n in value["nodes"]] == [
                (1, "running", ["broker", "controller"]), (2, "running", ["broker"]),
                (3, "running", ["broker"])]
            assert all({"listeners", "isolated", "slow_ms"} <= set(n) for n in value["nodes"])
            status, value = await endpoint.route_nodes(cluster, "POST", "/nodes/3/slow",
                                                       json.dumps({"ms": 40}).encode())
            assert (status, value["slow_ms"]) == (200, 40)
            status, value = await endpoint.route_nodes(cluster, "POST", "/nodes/2/kill", b"")
            assert (status, value["state"]) == (200, "killed")
            # The fault rules of a stopped node cannot be reached; a running node's can.
            for path, code in (("/nodes/2/controls", 409), ("/nodes/9/isolate", 404),
                               ("/nodes/x/isolate", 404), ("/nodes/2/reboot", 404)):
                with pytest.raises(endpoint.HttpError) as e:
                    await endpoint.route_nodes(cluster, "POST", path, b"")
                assert e.value.status == code, path
            for body in (b"", b"{}", b'{"ms": "5"}', b'{"ms": -5}', b"[1]", b"nope"):
                with pytest.raises(endpoint.HttpError) as e:
                    await endpoint.route_nodes(cluster, "POST", "/nodes/3/slow", body)
                assert e.value.status == 400, body
            status, value = await endpoint.route_nodes(cluster, "GET", "/nodes/3/controls", b"")
            assert status == 200 and value["rules"] == []
            status, value = await endpoint.route_nodes(cluster, "POST", "/nodes/2/start", b"")
            assert (status, value["state"]) == (200, "running")


async def test_a_single_broker_lists_itself_and_refuses_to_stop_itself():
    with trio.fail_after(DEADLINE_S):
        async with open_broker(memory=True) as server:
            nodes = endpoint.OneBroker(server)
            status, value = await endpoint.route_nodes(nodes, "GET", "/nodes", b"")
            assert status == 200 and len(value["nodes"]) == 1
            assert value["nodes"][0]["id"] == server.broker.node_id
            assert value["nodes"][0]["state"] == "running"
            for action in ("stop", "kill", "start"):
                with pytest.raises(endpoint.HttpError) as e:
                    await endpoint.route_nodes(nodes, "POST", f"/nodes/1/{action}", b"")
                assert e.value.status == 409 and "single broker" in str(e.value)
            status, value = await endpoint.route_nodes(nodes, "POST", "/nodes/1/isolate", b"")
            assert value["isolated"] is True and server.broker.node_controls.isolated
            await endpoint.route_nodes(nodes, "POST", "/nodes/1/heal", b"")
            assert not server.broker.node_controls.isolated
            with pytest.raises(endpoint.HttpError) as e:
                await endpoint.route_nodes(nodes, "POST", "/nodes/2/isolate", b"")
            assert e.value.status == 404
