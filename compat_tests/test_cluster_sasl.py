"""SASL between the nodes of a cluster: `trioka serve --nodes 3` whose only listeners are SASL.

The brokers log in to each other as Kafka's do (security/sasl/broker_login.py): on the
inter-broker listener with `sasl.mechanism.inter.broker.protocol`, on the controller listener
with `sasl.mechanism.controller.protocol`, each with the username and password of the listener's
JAAS entry; an ACL authorizer is on and the broker's principal is a super user. Stock clients
(confluent-kafka, kafka-python) produce with acks=all to a replication-factor-3 topic whose
three replicas are in sync, so every write is acknowledged only once both followers fetched it;
the records are read back from the new leader after the old one is killed. Each node's request
log shows the replica Fetches and the controller traffic arriving with the broker's principal
on the SASL listeners. A wrong inter-broker password: the cluster does not form, and the node
says why in one ERROR line.

- SASL_PLAINTEXT, PLAIN between the nodes (controller listener SASL_PLAINTEXT too);
- SASL_SSL with the certificates of `trioka certs`, SCRAM-SHA-512 between the brokers (the
  broker's credential added over PLAIN by an admin, as Kafka's `kafka-configs --alter
  --add-config SCRAM-SHA-512=...` would) and PLAIN to the controller;
- OAUTHBEARER everywhere, the nodes presenting unsecured tokens naming `broker`.
"""

import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from clients import (consume_confluent, consume_kafka_python, produce_confluent,
                     produce_kafka_python, value_records)
from harness import unique, wait_for
from trioka.testing.process import ClusterProcess

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
USERS = {"broker": "broker-secret", "admin": "admin-secret"}
# confluent-kafka's settings of the admin user over SASL_PLAINTEXT.
ADMIN_OVER_SASL_PLAINTEXT = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                             "sasl.username": "admin", "sasl.password": USERS["admin"]}
MESSAGE_PARTITIONS = 3
# A killed leader leaves the ISR (and the new leader's high watermark moves on) this soon.
FAST_ISR = {"replica.lag.time.max.ms": "3000"}


def plain_jaas(password: str = USERS["broker"]) -> str:
    """The listener's PLAIN entry: the broker's own login (username, password) and the users it
    accepts (user_<name>)."""
    users = " ".join(f'user_{name}="{secret}"' for name, secret in USERS.items())
    return ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="broker" password="{password}" {users};')


def sasl_plaintext_overrides(password: str = USERS["broker"]) -> dict:
    return {
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain_jaas(password),
        "listener.name.controller.plain.sasl.jaas.config": plain_jaas(password),
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:broker;User:admin",
        "connection.failed.authentication.delay.ms": "20",
        **FAST_ISR,
    }


def oauthbearer_overrides(login_jaas: str) -> dict:
    """A cluster whose SASL_PLAINTEXT and CONTROLLER listeners take OAUTHBEARER only, the nodes
    logging in to both with `login_jaas`, an authorizer on and `broker` a super user."""
    return {
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                          "CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
        "sasl.mechanism.controller.protocol": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": login_jaas,
        "listener.name.controller.oauthbearer.sasl.jaas.config": login_jaas,
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:broker;User:admin",
        **FAST_ISR,
    }


def requests_of(cluster: ClusterProcess, api: str) -> list[dict]:
    with urllib.request.urlopen(f"{cluster.admin}/requests?api={api}", timeout=10) as r:
        return json.loads(r.read())["requests"]


def replicate_and_fail_over(cluster: ClusterProcess, client_conf: dict,
                            kafka_python_conf: dict) -> None:
    """Produce with acks=all to an RF=3 topic with two clients, check the inter-node requests'
    principal, kill a leader and read everything back from the others."""
    from confluent_kafka.admin import AdminClient, NewTopic
    bootstrap = cluster.bootstrap.replace("127.0.0.1", "localhost")
    admin = AdminClient({"bootstrap.servers": bootstrap, **client_conf})
    topic = unique("sasl-replicated")
    admin.create_topics([NewTopic(topic, MESSAGE_PARTITIONS, 3,
                                  config={"min.insync.replicas": "2"})])[topic].result(30)

    def in_sync() -> bool:
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
        return all(sorted(m.isrs) == [1, 2, 3] for m in parts.values())

    wait_for(in_sync, 30, lambda: f"ISRs of {topic}: not all three replicas in sync")
    first = [r._replace(partition=i % MESSAGE_PARTITIONS)
             for i, r in enumerate(value_records([b"c-%d" % i for i in range(30)]))]
    second = [r._replace(partition=i % MESSAGE_PARTITIONS)
              for i, r in enumerate(value_records([b"k-%d" % i for i in range(30)]))]
    # acks=all with all three in the ISR: acknowledged only once both followers have it.
    assert len(produce_confluent(bootstrap, topic, first, config=client_conf)) == 30
    assert len(produce_kafka_python(bootstrap, topic, second, config=kafka_python_conf)) == 30
    assert in_sync()

    # Each node leads a partition, so each got replica Fetches from the other two; all came in
    # on the SASL listener as the broker.
    fetches = [e for e in requests_of(cluster, "Fetch")
               if e["client_id"].startswith("trioka-node-") and e["listener"] != "CONTROLLER"]
    assert {e["node"] for e in fetches} == {1, 2, 3}
    assert {(e["security_protocol"], e["principal"]) for e in fetches} == \
        {(client_conf["security.protocol"], "User:broker")}
    heartbeats = requests_of(cluster, "BrokerHeartbeat")
    assert {e["client_id"] for e in heartbeats} >= {f"trioka-node-{n}-heartbeat" for n in (1, 2, 3)}
    assert {e["principal"] for e in heartbeats} == {"User:broker"}

    leaders = {p: m.leader for p, m in
               admin.list_topics(topic, timeout=10).topics[topic].partitions.items()}
    victim = leaders[0] if leaders[0] != 1 else leaders[1]   # node 1 is the controller
    cluster.node(victim, "kill")
    others = ",".join(f"localhost:{port}" for n, port in enumerate(cluster.ports, 1)
                      if n != victim)
    survivors = AdminClient({"bootstrap.servers": others, **client_conf})

    def moved() -> bool:
        parts = survivors.list_topics(topic, timeout=10).topics[topic].partitions
        return all(m.leader not in (victim, -1) for m in parts.values())

    wait_for(moved, 30, lambda: f"{topic}: no new leader after node {victim} was killed")
    want = sorted(r.value for r in first + second)
    got = consume_confluent(others, topic, range(MESSAGE_PARTITIONS), 60, config=client_conf)
    assert sorted(r.value for r in got) == want
    got = consume_kafka_python(others, topic, range(MESSAGE_PARTITIONS), 60,
                               config=kafka_python_conf)
    assert sorted(r.value for r in got) == want


def test_sasl_plaintext_cluster_replicates_as_the_broker_user(tmp_path):
    """PLAIN between the nodes, and sessions of 1.5 s (KIP-368): the nodes log in again on the
    same connection before a session ends, and replication carries on."""
    overrides = {**sasl_plaintext_overrides(), "connections.max.reauth.ms": "1500"}
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])
    try:
        cluster.start()
        conf = ADMIN_OVER_SASL_PLAINTEXT
        kafka_python = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                        "sasl_plain_username": "admin", "sasl_plain_password": USERS["admin"]}
        replicate_and_fail_over(cluster, conf, kafka_python)
        handshakes: dict[str, int] = {}
        for e in requests_of(cluster, "SaslHandshake"):
            if e["client_id"].startswith("trioka-node-"):
                handshakes[e["connection"]] = handshakes.get(e["connection"], 0) + 1
        assert max(handshakes.values()) >= 2, handshakes     # re-authenticated in place
        assert not [line for line in cluster.output if "failed authentication" in line]
    finally:
        cluster.close()


def test_sasl_ssl_cluster_with_scram_between_brokers(tmp_path):
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    certs = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "trioka", "certs", str(certs)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    overrides = {
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL",
        "ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(certs / "broker.p12"),
        "ssl.keystore.password": "trioka-dev", "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(certs / "truststore.p12"),
        "ssl.truststore.password": "trioka-dev",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": plain_jaas(),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            'org.apache.kafka.common.security.scram.ScramLoginModule required '
            'username="broker" password="broker-scram-secret";',
        "listener.name.controller.plain.sasl.jaas.config": plain_jaas(),
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:broker;User:admin",
        **FAST_ISR,
    }
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SASL_SSL://127.0.0.1:0"])
    try:
        cluster.start()
        bootstrap = cluster.bootstrap.replace("127.0.0.1", "localhost")
        conf = {"security.protocol": "SASL_SSL", "ssl.ca.location": str(certs / "ca.pem"),
                "sasl.mechanism": "PLAIN", "sasl.username": "admin",
                "sasl.password": USERS["admin"]}
        # The brokers' SCRAM credential, in the metadata log before the first replica fetches.
        admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
        upsert = UserScramCredentialUpsertion("broker", ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_512, 4096), b"broker-scram-secret")
        for future in admin.alter_user_scram_credentials([upsert]).values():
            assert future.result(timeout=30) is None
        kafka_python = {"security_protocol": "SASL_SSL", "ssl_cafile": str(certs / "ca.pem"),
                        "sasl_mechanism": "PLAIN", "sasl_plain_username": "admin",
                        "sasl_plain_password": USERS["admin"]}
        replicate_and_fail_over(cluster, conf, kafka_python)
        handshakes = [e for e in requests_of(cluster, "SaslHandshake")
                      if e["client_id"].startswith("trioka-node-")]
        assert {(e["listener"], e["request"]["mechanism"]) for e in handshakes} == \
            {("SASL_SSL", "SCRAM-SHA-512"), ("CONTROLLER", "PLAIN")}
        assert not [line for line in cluster.output if "failed authentication" in line]
    finally:
        cluster.close()


def test_oauthbearer_between_the_nodes(tmp_path):
    """OAUTHBEARER on every listener, the controller's included: the nodes log in with the
    unsecured tokens Kafka's default login handler makes (`unsecuredLoginStringClaim_sub`), the
    listeners validate them with Kafka's default unsecured validator, and the clients log in
    with their own unsecured tokens (confluent-kafka's `principal=admin`, kafka-python's token
    provider). Sessions of 6 s: each re-authentication presents a fresh token. (A node
    re-authenticates in place between 85% of its session and its end; the metadata log's long
    polls come every 500 ms, so the session is long enough for one to fall in that window.)"""
    from test_sasl import token_provider, unsecured_jwt
    login = ('org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
             'unsecuredLoginStringClaim_sub="broker";')
    overrides = {**oauthbearer_overrides(login), "connections.max.reauth.ms": "6000"}
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])
    try:
        cluster.start()
        conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                "enable.sasl.oauthbearer.unsecure.jwt": True,
                "sasl.oauthbearer.config": "principal=admin"}
        now = int(time.time())
        kafka_python = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
                        "sasl_oauth_token_provider": token_provider(
                            unsecured_jwt({"sub": "admin", "iat": now, "exp": now + 600}))}
        replicate_and_fail_over(cluster, conf, kafka_python)

        def handshakes() -> list[dict]:
            return [e for e in requests_of(cluster, "SaslHandshake")
                    if e["client_id"].startswith("trioka-node-")]

        def reauthenticated() -> bool:
            per_connection: dict[str, int] = {}
            for e in handshakes():
                per_connection[e["connection"]] = per_connection.get(e["connection"], 0) + 1
            return max(per_connection.values()) >= 2
        # The metadata channels live from the start: past 85% of a session they log in again
        # on the same connection.
        wait_for(reauthenticated, 15, "a node logging in again on the same connection")
        assert {(e["listener"], e["request"]["mechanism"]) for e in handshakes()} == \
            {("SASL_PLAINTEXT", "OAUTHBEARER"), ("CONTROLLER", "OAUTHBEARER")}
        assert not [line for line in cluster.output if "failed authentication" in line]
    finally:
        cluster.close()


def test_a_wrong_inter_broker_password_stops_the_cluster_forming_with_one_line(tmp_path):
    """The brokers' JAAS password is not the one the listeners accept: no node registers, so
    no ready line comes, and the node says why once, at ERROR, naming the key."""
    overrides = sasl_plaintext_overrides(password="not-the-secret")
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0",
                                   "--log-level", "INFO"])
    try:
        try:
            cluster.start(timeout=8)
            raise AssertionError("the cluster formed with a wrong inter-broker password")
        except RuntimeError as e:
            output = str(e)
        refused = [line for line in output.splitlines() if "failed authentication" in line]
        assert len(refused) == 1, output
        assert re.search(r"ERROR trioka\.node\.channel: connection to node at 127\.0\.0\.1:\d+ "
                         r"failed authentication due to: Authentication failed: Invalid "
                         r"username or password \(sasl\.mechanism\.controller\.protocol=PLAIN "
                         r"as User:broker\)", refused[0]), refused[0]
        assert "not-the-secret" not in output and "Traceback" not in output
    finally:
        cluster.close()


def test_brokers_that_are_not_super_users_cannot_replicate(tmp_path):
    """As in Kafka, the brokers' principal needs CLUSTER_ACTION (super.users): without it, the
    followers' requests (OffsetForLeaderEpoch, then Fetch) are refused over an authenticated
    connection, as User:broker, and retried after replica.fetch.backoff.ms, not in a loop."""
    from confluent_kafka.admin import AdminClient, NewTopic
    overrides = {**sasl_plaintext_overrides(), "super.users": "User:admin"}
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])
    try:
        cluster.start()
        conf = ADMIN_OVER_SASL_PLAINTEXT
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap, **conf})
        topic = unique("sasl-not-super")
        admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(30)
        denied = {"CLUSTER_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"}

        def refused() -> list:
            return [e for api in ("OffsetForLeaderEpoch", "Fetch")
                    for e in requests_of(cluster, api)
                    if e["client_id"].startswith("trioka-node-") and e["listener"] != "CONTROLLER"
                    and denied & set(e["error_codes"])]

        wait_for(lambda: len(refused()) >= 4, 30, "the followers' requests were not refused")
        entries = sorted(refused(), key=lambda e: e["seq"])
        assert {e["principal"] for e in entries} == {"User:broker"}
        # Two followers, one request per replica.fetch.backoff.ms (1 s) each at most.
        span_s = (entries[-1]["time_ms"] - entries[0]["time_ms"]) / 1000
        assert len(entries) <= 2 * (span_s + 2), (len(entries), span_s)
    finally:
        cluster.close()


def sasl_cluster_start(*overrides: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "trioka", "serve", "--nodes", "3", "--memory",
            "--listeners", "SASL_PLAINTEXT://127.0.0.1:0",
            "--override", "sasl.enabled.mechanisms=PLAIN",
            "--override", f"listener.name.sasl_plaintext.plain.sasl.jaas.config={plain_jaas()}"]
    for item in overrides:
        args += ["--override", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("overrides, message", [
    ((), "trioka: --nodes 3: sasl.mechanism.inter.broker.protocol: GSSAPI (Kerberos, Kafka's "
         "default) is not supported"),
    (("sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",),
     "trioka: --nodes 3: sasl.mechanism.inter.broker.protocol must be included in "
     "sasl.enabled.mechanisms when SASL is used for inter-broker communication"),
    (("sasl.mechanism.inter.broker.protocol=PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config="
      'x.PlainLoginModule required user_broker="broker-secret";'),
     "trioka: --nodes 3: listener.name.sasl_plaintext.plain.sasl.jaas.config: no username and "
     "no password option"),
    (("sasl.mechanism.inter.broker.protocol=PLAIN",
      "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
      "sasl.mechanism.controller.protocol=PLAIN"),
     "trioka: --nodes 3: listener.name.controller.plain.sasl.jaas.config: not set"),
])
def test_an_inter_broker_login_that_cannot_work_stops_the_start_with_one_line(overrides,
                                                                              message):
    out = sasl_cluster_start(*overrides)
    assert out.returncode == 1, out.stderr[-2000:]
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
