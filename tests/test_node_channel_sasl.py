"""A node's channel on a SASL controller listener, in process: a node with
`process.roles=broker,controller` whose CONTROLLER listener is SASL_PLAINTEXT (PLAIN), and
NodeChannels with the broker's login (security/sasl/broker_login.py) that register a broker
after SaslHandshake and SaslAuthenticate; with a wrong password the channels get
NodeAuthenticationFailed with the controller's message, said once at ERROR for all of them."""

import logging
import socket
import uuid

import pytest
import trio

from trioka.clock import Clock
from trioka.config import Config
from trioka.metadata import records as r
from trioka.node.channel import NodeAuthenticationFailed, NodeChannel
from trioka.security.sasl.broker_login import cluster_logins
from trioka.server import Server
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

CLUSTER_ID = "Wq3pQk1eS0GdY5v0c8dCfA"


def jaas(password: str) -> str:
    return ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="broker" password="{password}" user_broker="broker-secret";')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_config(port: int, tmp_path, password: str = "broker-secret") -> Config:
    return Config({
        "node.id": 1, "process.roles": "broker,controller", "cluster.id": CLUSTER_ID,
        "controller.quorum.voters": f"1@127.0.0.1:{port}",
        "listeners": f"PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "controller.listener.names": "CONTROLLER", "log.dir": str(tmp_path),
        "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": jaas(password),
        "connection.failed.authentication.delay.ms": 0})


def registration(broker_id: int):
    Registration = protocol.request_class(ApiKey.BROKER_REGISTRATION)
    return Registration(
        broker_id=broker_id, cluster_id=CLUSTER_ID, incarnation_id=uuid.uuid4(),
        listeners=[Registration.Listener(name="PLAINTEXT", host="127.0.0.1", port=19092,
                                         security_protocol=0)],
        features=[Registration.Feature(name=r.METADATA_VERSION, min_supported_version=1,
                                       max_supported_version=r.METADATA_VERSION_LEVEL)],
        rack=None)


def channel(port: int, login, purpose: str) -> NodeChannel:
    return NodeChannel("127.0.0.1", port, clock=Clock(), client_id=f"trioka-node-2-{purpose}",
                       request_timeout_ms=10_000, sasl=login)


async def test_a_node_registers_over_a_sasl_controller_listener(tmp_path):
    port = free_port()
    config = node_config(port, tmp_path)
    server = Server(config)
    login = cluster_logins(config)["CONTROLLER"]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            heartbeat = channel(port, login, "heartbeat")
            answer = await heartbeat.request(ApiKey.BROKER_REGISTRATION, registration(2))
            assert answer.error_code == ErrorCode.NONE and answer.broker_epoch > 0
            assert heartbeat.connections == 1
            entries = [e for e in server.broker.requests(client_id="trioka-node-2-heartbeat")]
            assert [e["api"] for e in entries] == \
                ["ApiVersions", "SaslHandshake", "SaslAuthenticate", "BrokerRegistration"]
            assert {(e["listener"], e["principal"]) for e in entries[2:]} == \
                {("CONTROLLER", "User:broker")}
            await heartbeat.aclose()
            nursery.cancel_scope.cancel()


async def test_a_wrong_password_fails_every_channel_and_is_said_once(tmp_path, caplog):
    port = free_port()
    server = Server(node_config(port, tmp_path))
    # Node 2's config: the same listener, another password.
    login = cluster_logins(node_config(port, tmp_path, password="wrong"))["CONTROLLER"]
    caplog.set_level(logging.ERROR, logger="trioka.node.channel")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            channels = [channel(port, login, purpose) for purpose in ("heartbeat", "metadata")]
            for _ in range(2):
                for c in channels:
                    with pytest.raises(NodeAuthenticationFailed) as caught:
                        await c.request(ApiKey.BROKER_REGISTRATION, registration(2))
                    assert "failed authentication due to: Authentication failed: Invalid " \
                           "username or password (sasl.mechanism.controller.protocol=PLAIN as " \
                           "User:broker)" in str(caught.value)
                    assert not c.connected
            said = [rec.getMessage() for rec in caplog.records
                    if rec.name == "trioka.node.channel"]
            assert len(said) == 1 and "wrong" not in said[0]
            # Nothing but the SASL requests was served to those connections.
            served = {e["api"] for e in server.broker.requests()
                      if e["client_id"].startswith("trioka-node-2-")}
            assert served == {"ApiVersions", "SaslHandshake", "SaslAuthenticate"}
            for c in channels:
                await c.aclose()
            nursery.cancel_scope.cancel()


class AheadClock(Clock):
    """The real clock, `ahead` seconds later: the channel's view of time moves on while the
    server's does not (its sessions have not really aged)."""

    def __init__(self):
        super().__init__()
        self.ahead = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.ahead


async def test_a_session_that_could_end_during_a_long_poll_is_renewed_first(tmp_path):
    """A 2 s session: renewed at 85% (1.7 s), or earlier when the request's quiet time (a long
    poll, a heartbeat interval) would reach its end; on the same connection either way."""
    port = free_port()
    config = node_config(port, tmp_path)
    config.set("connections.max.reauth.ms", 2000)
    server = Server(config)
    login = cluster_logins(config)["CONTROLLER"]
    clock = AheadClock()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            c = NodeChannel("127.0.0.1", port, clock=clock, client_id="trioka-node-2-metadata",
                            request_timeout_ms=10_000, sasl=login)

            def handshakes() -> int:
                return len(server.broker.requests(api="SaslHandshake",
                                                  client_id="trioka-node-2-metadata"))
            await c.request(ApiKey.BROKER_REGISTRATION, registration(2))
            assert handshakes() == 1
            clock.ahead = 1.6          # before 85%, and a quick request: nothing to renew
            await c.request(ApiKey.BROKER_REGISTRATION, registration(3))
            assert handshakes() == 1
            # The same moment, but the peer may hold this one 500 ms: past the session's end.
            await c.request(ApiKey.BROKER_REGISTRATION, registration(4), quiet_ms=500)
            assert handshakes() == 2 and c.connections == 1
            await c.aclose()
            nursery.cancel_scope.cancel()
