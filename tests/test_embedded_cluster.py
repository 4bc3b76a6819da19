"""`trioka.Cluster` (a cluster of nodes in a background thread), the `kafka_cluster` fixture of the
pytest plugin, and `trioka control node` through the cluster's admin endpoint: the nodes start,
each answers on its own address, and the node controls reach them from the test's own thread."""

import json
import signal
import socket
import struct
import subprocess
import sys
import urllib.request

import pytest

import trioka
from trioka.__main__ import main as trioka_main
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey

DEADLINE_S = 20


def api_versions(address: str) -> int:
    """ApiVersions v0 over a plain socket: the error code, or ConnectionError when refused."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as sock:
        request = protocol.request_class(ApiKey.API_VERSIONS)()
        sock.sendall(protocol.encode_request(ApiKey.API_VERSIONS, 0, 7, "t", request))
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">i", data)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
    correlation, response = protocol.decode_response(ApiKey.API_VERSIONS, 0, data[4:])
    assert correlation == 7
    return response.error_code


def refused(address: str) -> bool:
    try:
        api_versions(address)
    except OSError:
        return True
    return False


def test_a_cluster_of_three_starts_and_each_node_answers():
    with trioka.Cluster(nodes=3) as cluster:
        addresses = cluster.bootstrap_servers.split(",")
        assert len(addresses) == 3 and len(set(addresses)) == 3
        assert [node.node_id for node in cluster.nodes] == [1, 2, 3]
        for node, address in zip(cluster.nodes, addresses):
            assert node.state == "running" and node.bootstrap_servers == address
            assert api_versions(address) == 0
        assert cluster.node(2).data_dir.endswith("node-2")
        assert cluster.node(1).call(lambda broker: broker.cluster_id) == cluster.cluster_id
        with pytest.raises(LookupError):
            cluster.node(4)


def test_a_node_killed_and_started_again_answers_on_its_address():
    with trioka.Cluster(nodes=3, memory=True) as cluster:
        node = cluster.node(2)
        address = node.bootstrap_servers
        node.kill()
        assert node.state == "killed" and refused(address)
        assert [n.state for n in cluster.nodes] == ["running", "killed", "running"]
        node.start()
        assert node.state == "running" and api_versions(address) == 0
        node.stop()
        assert node.state == "stopped" and refused(address)
        node.start()
        node.isolate()
        assert node.isolated and node.call(lambda broker: broker.node_controls.isolated)
        node.slow(100)
        assert node.slow_ms == 100
        node.heal()
        assert not node.isolated and node.slow_ms == 0


def test_trioka_control_node_drives_the_nodes_through_the_admin_endpoint(capsys):
    with trioka.Cluster(nodes=3, memory=True) as cluster:
        admin = cluster.admin_url
        assert admin.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(admin + "/nodes", timeout=DEADLINE_S) as response:
            listed = json.loads(response.read())["nodes"]
        assert [(n["id"], n["state"]) for n in listed] == [(1, "running"), (2, "running"),
                                                           (3, "running")]
        assert trioka_main(["control", "node", "kill", "3", "--admin", admin]) == 0
        assert "Node 3 killed" in capsys.readouterr().out
        assert cluster.node(3).state == "killed"
        assert trioka_main(["control", "node", "start", "3", "--admin", admin]) == 0
        assert cluster.node(3).state == "running"
        assert trioka_main(["control", "node", "slow", "2", "--ms", "75", "--admin",
                            admin]) == 0
        assert "Node 2 running (broker), slow 75 ms" in capsys.readouterr().out
        assert trioka_main(["control", "node", "isolate", "1", "--admin", admin]) == 0
        assert cluster.node(1).isolated
        assert trioka_main(["control", "node", "list", "--admin", admin]) == 0
        out = capsys.readouterr().out
        assert "ISOLATED" in out and "broker,controller" in out
        assert trioka_main(["control", "node", "stop", "9", "--admin", admin]) == 1
        assert "no node 9" in capsys.readouterr().err
        # The fault rules: plain /controls are node 1's.
        assert trioka_main(["control", "add", "error", "--api", "Produce", "--error",
                            "NOT_LEADER_OR_FOLLOWER", "--admin", admin]) == 0
        assert len(cluster.node(1).controls.list()) == 1
        assert cluster.node(2).controls.list() == []


def test_the_kafka_cluster_fixture(kafka_cluster):
    assert len(kafka_cluster.bootstrap_servers.split(",")) == 3
    assert [n.state for n in kafka_cluster.nodes] == ["running"] * 3


def test_trioka_serve_nodes_prints_a_ready_line_per_node_in_order():
    command = [sys.executable, "-m", "trioka", "serve", "--nodes", "3", "--memory",
               "--listeners", "PLAINTEXT://127.0.0.1:0", "--admin-listener", "127.0.0.1:0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        assert [line.split(" node ")[1].split()[0] for line in lines] == ["1", "2", "3"]
        admins = {line.rsplit(" admin ", 1)[1].strip() for line in lines}
        assert len(admins) == 1 and all(line.startswith("trioka ready: PLAINTEXT://")
                                        for line in lines)
        assert "CONTROLLER://" in lines[0] and "CONTROLLER://" not in lines[1]
        assert len({line.split(" cluster ")[1].split()[0] for line in lines}) == 1
        with urllib.request.urlopen(admins.pop() + "/nodes", timeout=DEADLINE_S) as response:
            assert len(json.loads(response.read())["nodes"]) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(DEADLINE_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("argv, message", [
    (["--nodes", "3", "--listeners", "PLAINTEXT://127.0.0.1:65534"], "past 65535"),
])
def test_trioka_serve_nodes_refuses_bad_values_in_one_line(argv, message):
    with pytest.raises(SystemExit) as e:
        trioka_main(["serve", "--memory", *argv])
    assert str(e.value).startswith("trioka: ") and message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("argv, message", [
    (["--nodes", "0"], "argument --nodes: must be 1 or more, not 0"),
    (["--nodes", "2", "--node-id", "5"], "--node-id cannot be used with --nodes (the nodes are "
                                         "1..N)"),
])
def test_trioka_serve_nodes_flags_that_do_not_fit_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        trioka_main(["serve", "--memory", *argv])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"trioka serve: error: {message}"
