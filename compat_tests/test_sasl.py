"""SASL listeners against stock clients: confluent-kafka, kafka-python, aiokafka, KafkaJS and kcat
produce and consume over SASL_PLAINTEXT with PLAIN and SCRAM-SHA-256/512 and with OAUTHBEARER
(unsecured JWTs: librdkafka's own token builder, the others' token providers); confluent-kafka and
kafka-python over SASL_SSL (certificates from `trioka certs`). SCRAM users are made with
confluent-kafka's AlterUserScramCredentials over the PLAINTEXT listener and with `trioka user`;
in a cluster they travel through the controller's metadata log. KIP-368 re-authentication runs
on virtual time. The negative cases (wrong password and unknown user answered alike, a disabled
mechanism, a request before authentication, out-of-order SASL requests, a replayed SCRAM exchange,
an expired token, an oversized frame, config mistakes at start) are checked on what comes back
over the wire, some with raw Kafka requests where no stock client can send them, and the request
log shows the principal and no secret.
"""

import base64
import json
import re
import socket
import struct
import subprocess
import sys
import time

import pytest

from clients import (consume_aiokafka, consume_confluent, consume_kafka_python, consume_kcat,
                     kafkajs, produce_aiokafka, produce_confluent, produce_kafka_python,
                     produce_kcat, run_kafkajs, value_records)
from harness import unique
from trioka.security.sasl.scram import SCRAM_SHA_256, client_proof
from trioka.testing.process import BrokerProcess
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" '
              'user_admin="admin-secret" user_alice="alice-secret";')
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SAME_FAILURE = ("Authentication failed during authentication due to invalid credentials with "
                "SASL mechanism SCRAM-SHA-256")


class SaslBroker(BrokerProcess):
    """A broker process with a PLAINTEXT listener (the one BrokerProcess waits for) and a
    SASL_PLAINTEXT listener on a free port of its own, read from the ready line."""

    def __init__(self, overrides: dict):
        super().__init__(memory=True, overrides=overrides, listeners=("SASL_PLAINTEXT",))

    @property
    def sasl_port(self) -> int:
        return self.listener_port("SASL_PLAINTEXT")

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"


USERS = {"PLAIN": ("alice", "alice-secret"), "SCRAM-SHA-256": ("bob", "bob-secret"),
         "SCRAM-SHA-512": ("carol", "carol-secret")}


@pytest.fixture(scope="module")
def sasl_broker():
    with SaslBroker({"sasl.enabled.mechanisms": ",".join(MECHANISMS) + ",OAUTHBEARER",
                     "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
                     "connection.failed.authentication.delay.ms": "50"}) as b:
        b.start()
        add_scram_users(b.bootstrap, USERS, 8192)
        yield b


def add_scram_users(bootstrap: str, users: dict, iterations: int) -> None:
    """AlterUserScramCredentials through confluent-kafka's admin client: each SCRAM entry of
    `users` ({mechanism: (user, password)}), with `iterations`."""
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(
        getattr(ScramMechanism, mechanism.replace("-", "_")), iterations), password.encode())
        for mechanism, (user, password) in users.items() if mechanism.startswith("SCRAM")]
    for future in admin.alter_user_scram_credentials(upserts).values():
        assert future.result(timeout=20) is None


def confluent_sasl(mechanism: str, user: str, password: str, **extra) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password, **extra}


def kafka_python_sasl(mechanism: str, user: str, password: str) -> dict:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
            "sasl_plain_username": user, "sasl_plain_password": password}


def test_scram_credentials_are_described_without_secrets(sasl_broker):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap})
    described = admin.describe_user_scram_credentials(["bob", "carol"])
    infos = {user: [(i.mechanism.name, i.iterations)
                    for i in f.result(timeout=20).scram_credential_infos]
             for user, f in described.items()}
    assert infos == {"bob": [("SCRAM_SHA_256", 8192)], "carol": [("SCRAM_SHA_512", 8192)]}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_over_sasl_plaintext(sasl_broker, mechanism):
    topic = unique("sasl-confluent")
    config = confluent_sasl(mechanism, *USERS[mechanism])
    records = value_records([b"c-%d" % i for i in range(20)])
    reports = produce_confluent(sasl_broker.sasl_bootstrap, topic, records, config=config)
    assert [o for _, o in reports] == list(range(20))
    got = consume_confluent(sasl_broker.sasl_bootstrap, topic, [0], 20, config=config)
    assert [r.value for r in got] == [r.value for r in records]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_over_sasl_plaintext(sasl_broker, mechanism):
    topic = unique("sasl-kafka-python")
    config = kafka_python_sasl(mechanism, *USERS[mechanism])
    produce_kafka_python(sasl_broker.sasl_bootstrap, topic,
                         value_records([b"k-%d" % i for i in range(10)]), config=config)
    got = consume_kafka_python(sasl_broker.sasl_bootstrap, topic, [0], 10, config=config)
    assert [(r.offset, r.value) for r in got] == [(i, b"k-%d" % i) for i in range(10)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka_over_sasl_plaintext(sasl_broker, mechanism):
    topic = unique("sasl-aiokafka")
    config = kafka_python_sasl(mechanism, *USERS[mechanism])
    produce_aiokafka(sasl_broker.sasl_bootstrap, topic,
                     value_records([b"a-%d" % i for i in range(10)]), config=config)
    got = consume_aiokafka(sasl_broker.sasl_bootstrap, topic, [0], 10, config=config)
    assert [r.value for r in got] == [b"a-%d" % i for i in range(10)]


def kafkajs_sasl(mechanism: str, username: str, password: str) -> str:
    """js/secure.js's security argument for KafkaJS's `sasl` option alone (SASL_PLAINTEXT)."""
    return json.dumps({"sasl": {"mechanism": mechanism, "username": username,
                                "password": password}})


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafkajs_over_sasl_plaintext(sasl_broker, mechanism):
    topic = unique("sasl-kafkajs")
    out = kafkajs("secure.js", sasl_broker.sasl_bootstrap, topic, "kafkajs",
                  kafkajs_sasl(mechanism.lower(), *USERS[mechanism]), "5")
    assert out[0] == {"produced": [0]}
    assert out[1] == {"consumed": [f"kafkajs-{i}" for i in range(5)]}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_over_sasl_plaintext(sasl_broker, mechanism):
    topic = unique("sasl-kcat")
    user, password = USERS[mechanism]
    flags = {"security.protocol": "sasl_plaintext", "sasl.mechanisms": mechanism,
             "sasl.username": user, "sasl.password": password}
    produce_kcat(sasl_broker.sasl_bootstrap, topic, value_records([b"one", b"two"]),
                 config=flags)
    got = consume_kcat(sasl_broker.sasl_bootstrap, topic, [0], 2, config=flags)
    assert [r.value for r in got] == [b"one", b"two"]


def test_confluent_oauthbearer_unsecured_jwt(sasl_broker):
    # librdkafka's own unsecured token builder: {"alg":"none"}, sub=alice, exp in an hour.
    topic = unique("sasl-oauth")
    config = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
              "enable.sasl.oauthbearer.unsecure.jwt": True,
              "sasl.oauthbearer.config": "principal=alice lifeSeconds=3600"}
    records = value_records([b"o-%d" % i for i in range(5)])
    reports = produce_confluent(sasl_broker.sasl_bootstrap, topic, records, config=config)
    assert [o for _, o in reports] == list(range(5))
    got = consume_confluent(sasl_broker.sasl_bootstrap, topic, [0], 5, config=config)
    assert [r.value for r in got] == [r.value for r in records]


def unsecured_jwt(claims: dict) -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none'})}.{part(claims)}."


def token_provider(token: str):
    """kafka-python's token provider handing out one fixed token."""
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Fixed(AbstractTokenProvider):
        def token(self):
            return token

    return Fixed()


def test_kafka_python_oauthbearer_unsecured_jwt(sasl_broker):
    topic = unique("sasl-oauth-kp")
    now = int(time.time())
    config = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
              "sasl_oauth_token_provider": token_provider(
                  unsecured_jwt({"sub": "dave", "iat": now, "exp": now + 600}))}
    produce_kafka_python(sasl_broker.sasl_bootstrap, topic,
                         value_records([b"t-%d" % i for i in range(3)]), config=config)
    got = consume_kafka_python(sasl_broker.sasl_bootstrap, topic, [0], 3, config=config)
    assert [r.value for r in got] == [b"t-%d" % i for i in range(3)]


def confluent_auth_error(bootstrap: str, config: dict) -> str:
    """The authentication error librdkafka reports for this configuration."""
    from confluent_kafka import Producer
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "error_cb": errors.append, **config})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        p.poll(0.1)
    assert errors, "no error reported"
    return errors[0].str()


def test_wrong_password_and_unknown_user_fail_alike(sasl_broker):
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        user, _ = USERS[mechanism]
        wrong = confluent_auth_error(sasl_broker.sasl_bootstrap,
                                     confluent_sasl(mechanism, user, "not-the-password"))
        unknown = confluent_auth_error(sasl_broker.sasl_bootstrap,
                                       confluent_sasl(mechanism, "nobody", "whatever"))
        strip = re.compile(r" \(after \d+ms in state \w+\)")
        assert strip.sub("", wrong) == strip.sub("", unknown), (wrong, unknown)
        expected = ("Invalid username or password" if mechanism == "PLAIN"
                    else SAME_FAILURE)
        assert expected in wrong


# --- raw Kafka requests, for what no stock client sends ---

class Raw:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.correlation = 0

    def send(self, key: int, version: int, **fields) -> None:
        self.correlation += 1
        message = protocol.request_class(key)(**fields)
        self.sock.sendall(protocol.encode_request(key, version, self.correlation, "raw",
                                                  message))

    def receive(self, key: int, version: int):
        size = struct.unpack(">i", self.exactly(4))[0]
        _, message = protocol.decode_response(key, version, self.exactly(size))
        return message

    def request(self, key: int, version: int, **fields):
        self.send(key, version, **fields)
        return self.receive(key, version)

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def close(self):
        self.sock.close()


def test_a_request_before_authentication_closes_the_connection(sasl_broker):
    raw = Raw(sasl_broker.sasl_port)
    try:
        raw.send(ApiKey.METADATA, 12, topics=[], allow_auto_topic_creation=False)
        assert raw.closed()
    finally:
        raw.close()


def test_a_disabled_mechanism_is_refused_with_the_enabled_list(sasl_broker):
    raw = Raw(sasl_broker.sasl_port)
    try:
        answer = raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="GSSAPI")
        assert answer.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert answer.mechanisms == [*MECHANISMS, "OAUTHBEARER"]
        assert raw.closed()
    finally:
        raw.close()


def scram_first(raw: Raw, user: str, nonce: str) -> str:
    assert raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="SCRAM-SHA-256").error_code == 0
    answer = raw.request(ApiKey.SASL_AUTHENTICATE, 2,
                         auth_bytes=f"n,,n={user},r={nonce}".encode())
    assert answer.error_code == 0, answer
    return bytes(answer.auth_bytes).decode()


def scram_final(user: str, password: str, nonce: str, server_first: str) -> bytes:
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"n={user},r={nonce},{server_first},{without_proof}".encode()
    proof = client_proof(SCRAM_SHA_256, password, base64.b64decode(attrs["s"]),
                         int(attrs["i"]), auth_message)
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def test_a_replayed_scram_exchange_fails(sasl_broker):
    user, password = USERS["SCRAM-SHA-256"]
    first = Raw(sasl_broker.sasl_port)
    try:
        server_first = scram_first(first, user, "fixednonce")
        final = scram_final(user, password, "fixednonce", server_first)
        answer = first.request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=final)
        assert answer.error_code == 0 and bytes(answer.auth_bytes).startswith(b"v=")
        # Authenticated: a Metadata request is served.
        assert first.request(ApiKey.METADATA, 12, topics=[],
                             allow_auto_topic_creation=False).brokers
        # The same final message again on this connection: out of turn.
        again = first.request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=final)
        assert again.error_code == ErrorCode.ILLEGAL_SASL_STATE
    finally:
        first.close()
    # A new exchange with the same client nonce gets a new server nonce: the replayed final
    # message fails.
    second = Raw(sasl_broker.sasl_port)
    try:
        scram_first(second, user, "fixednonce")
        answer = second.request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=final)
        assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert second.closed()
    finally:
        second.close()


def test_an_expired_token_fails_with_kafkas_json_error(sasl_broker):
    raw = Raw(sasl_broker.sasl_port)
    now = int(time.time())
    token = unsecured_jwt({"sub": "dave", "exp": now - 60})
    try:
        assert raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="OAUTHBEARER").error_code == 0
        challenge = raw.request(ApiKey.SASL_AUTHENTICATE, 2,
                                auth_bytes=f"n,,\x01auth=Bearer {token}\x01\x01".encode())
        assert challenge.error_code == 0
        assert bytes(challenge.auth_bytes) == b'{"status":"invalid_token"}'
        failure = raw.request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\x01")
        assert failure.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert failure.error_message == '{"status":"invalid_token"}'
        assert raw.closed()
    finally:
        raw.close()


def test_a_frame_over_the_pre_authentication_cap_closes_the_connection(sasl_broker):
    raw = Raw(sasl_broker.sasl_port)
    try:
        raw.sock.sendall(struct.pack(">i", 524288 + 1) + b"\x00" * 64)
        assert raw.closed()
    finally:
        raw.close()


def test_kafkajs_wrong_password_fails(sasl_broker):
    r = run_kafkajs("secure.js", sasl_broker.sasl_bootstrap, unique("sasl-kafkajs-bad"),
                    "kafkajs", kafkajs_sasl("scram-sha-256", "bob", "wrong"), "1")
    assert r.returncode != 0
    fatal = json.loads(r.stdout.decode().splitlines()[-1])["fatal"]
    assert SAME_FAILURE in fatal["message"], fatal


def trioka_user(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trioka", "user", *args], capture_output=True,
                          text=True, timeout=60)


def test_trioka_user_adds_lists_and_removes_scram_users(sasl_broker):
    added = trioka_user("add", "erin", "--password", "erin-secret", "--mechanism",
                        "SCRAM-SHA-512", "--iterations", "5000", "-b", sasl_broker.bootstrap)
    assert added.returncode == 0, added.stderr
    listed = trioka_user("list", "erin", "-b", sasl_broker.bootstrap)
    assert listed.stdout.split("\n")[1].split() == ["erin", "SCRAM-SHA-512", "5000"]
    topic = unique("sasl-cli-user")
    config = confluent_sasl("SCRAM-SHA-512", "erin", "erin-secret")
    produce_confluent(sasl_broker.sasl_bootstrap, topic, value_records([b"x"]), config=config)
    removed = trioka_user("remove", "erin", "-b", sasl_broker.bootstrap)
    assert removed.returncode == 0, removed.stderr
    assert "invalid credentials" in confluent_auth_error(sasl_broker.sasl_bootstrap, config)
    missing = trioka_user("list", "erin", "-b", sasl_broker.bootstrap)
    assert missing.returncode == 1
    assert "RESOURCE_NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr
    too_few = trioka_user("add", "frank", "--password", "p", "--iterations", "10",
                          "-b", sasl_broker.bootstrap)
    assert too_few.returncode == 1 and "Too few iterations" in too_few.stderr


# --- KIP-368 re-authentication, on virtual time ---

@pytest.fixture(scope="module")
def reauth_broker():
    with SaslBroker({"sasl.enabled.mechanisms": "PLAIN",
                     "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
                     "connections.max.reauth.ms": "60000"}) as b:
        b.args.append("--virtual-time")
        yield b.start()


def plain_login(raw: Raw, user: str, password: str, version: int = 2):
    assert raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
    return raw.request(ApiKey.SASL_AUTHENTICATE, version,
                       auth_bytes=f"\0{user}\0{password}".encode())


def advance_clock(broker, ms: int) -> None:
    import urllib.request
    request = urllib.request.Request(f"{broker.admin}/clock/advance", method="POST",
                                     data=json.dumps({"ms": ms}).encode())
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200


def test_session_lifetime_reauthentication_and_expiry(reauth_broker):
    raw = Raw(reauth_broker.sasl_port)
    try:
        answer = plain_login(raw, "alice", "alice-secret")
        assert answer.error_code == 0 and answer.session_lifetime_ms == 60000
        metadata = dict(topics=[], allow_auto_topic_creation=False)
        assert raw.request(ApiKey.METADATA, 12, **metadata).brokers
        # Re-authentication on the same connection renews the session.
        advance_clock(reauth_broker, 50_000)
        again = plain_login(raw, "alice", "alice-secret")
        assert again.error_code == 0 and again.session_lifetime_ms == 60000
        advance_clock(reauth_broker, 50_000)
        assert raw.request(ApiKey.METADATA, 12, **metadata).brokers
        # Another principal may not take the connection over.
        other = plain_login(raw, "admin", "admin-secret")
        assert other.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert "Cannot change principals" in other.error_message
        assert raw.closed()
    finally:
        raw.close()
    # Once the session has ended, any request but a re-authentication closes the connection.
    raw = Raw(reauth_broker.sasl_port)
    try:
        assert plain_login(raw, "alice", "alice-secret").error_code == 0
        advance_clock(reauth_broker, 61_000)
        raw.send(ApiKey.METADATA, 12, **metadata)
        assert raw.closed()
    finally:
        raw.close()


def test_confluent_produces_with_reauthentication_on(reauth_broker):
    topic = unique("sasl-reauth")
    config = confluent_sasl("PLAIN", "alice", "alice-secret")
    records = value_records([b"r-%d" % i for i in range(10)])
    reports = produce_confluent(reauth_broker.sasl_bootstrap, topic, records, config=config)
    assert [o for _, o in reports] == list(range(10))


# --- SASL_SSL ---



class SaslSslBroker(BrokerProcess):
    def __init__(self, overrides: dict):
        super().__init__(memory=True, overrides=overrides, listeners=("SASL_SSL",))

    @property
    def port_sasl_ssl(self) -> int:
        return self.listener_port("SASL_SSL")


@pytest.fixture(scope="module")
def sasl_ssl(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    made = subprocess.run([sys.executable, "-m", "trioka", "certs", str(directory)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    with SaslSslBroker({"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
                        "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
                        "ssl.keystore.type": "PKCS12",
                        "ssl.keystore.location": str(directory / "broker.p12"),
                        "ssl.keystore.password": "trioka-dev"}) as b:
        b.start()
        added = subprocess.run([sys.executable, "-m", "trioka", "user", "add", "carol",
                                "--password", "carol-secret", "--mechanism", "SCRAM-SHA-512",
                                "-b", b.bootstrap], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        yield b, str(directory / "ca.pem")


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_confluent_and_kafka_python_over_sasl_ssl(sasl_ssl, mechanism):
    broker, ca = sasl_ssl
    bootstrap = f"localhost:{broker.port_sasl_ssl}"
    user, password = USERS[mechanism]
    topic = unique("sasl-ssl")
    config = confluent_sasl(mechanism, user, password, **{"security.protocol": "SASL_SSL",
                                                          "ssl.ca.location": ca})
    produce_confluent(bootstrap, topic, value_records([b"s-%d" % i for i in range(5)]),
                      config=config)
    kp = {**kafka_python_sasl(mechanism, user, password), "security_protocol": "SASL_SSL",
          "ssl_cafile": ca}
    got = consume_kafka_python(bootstrap, topic, [0], 5, config=kp)
    assert [r.value for r in got] == [b"s-%d" % i for i in range(5)]


def test_the_request_log_shows_the_principal_and_no_secret(sasl_broker):
    import urllib.request
    client_id = unique("sasl-logged")
    topic = unique("sasl-logged")
    config = confluent_sasl("PLAIN", "alice", "alice-secret", **{"client.id": client_id})
    produce_confluent(sasl_broker.sasl_bootstrap, topic, value_records([b"x"]), config=config)
    with urllib.request.urlopen(f"{sasl_broker.admin}/requests", timeout=10) as r:
        text = r.read().decode()
    entries = [e for e in json.loads(text)["requests"] if e["client_id"] == client_id]
    authenticate = [e for e in entries if e["api"] == "SaslAuthenticate"]
    assert authenticate and authenticate[0]["request"]["auth_bytes"] == "REDACTED"
    produced = [e for e in entries if e["api"] == "Produce"]
    assert {(e["security_protocol"], e["principal"]) for e in produced} == \
        {("SASL_PLAINTEXT", "User:alice")}
    assert "alice-secret" not in text
    assert base64.b64encode(b"\0alice\0alice-secret").decode() not in text


# --- a cluster: credentials in the metadata log ---

def test_scram_users_of_a_cluster_live_in_its_metadata_log():
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)
    from trioka.testing.embedded import Cluster
    with Cluster(3, {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
                     "sasl.enabled.mechanisms": "SCRAM-SHA-256"}, memory=True) as cluster:
        def listener(node_id: int, name: str) -> str:
            found = cluster.call(lambda c: c.node(node_id).listeners)
            return next(x for x in found if x.startswith(name + "://")).split("://")[1]
        # Altered through node 3 (forwarded to the controller, node 1) ...
        admin = AdminClient({"bootstrap.servers": listener(3, "PLAINTEXT")})
        upsert = UserScramCredentialUpsertion("bob", ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_256, 4096), b"bob-secret")
        for future in admin.alter_user_scram_credentials([upsert]).values():
            assert future.result(timeout=30) is None
        # ... authenticates on node 2, which has it from the metadata log.
        sasl = listener(2, "SASL_PLAINTEXT")
        config = confluent_sasl("SCRAM-SHA-256", "bob", "bob-secret")
        topic = unique("sasl-cluster")
        reports = produce_confluent(sasl, topic, value_records([b"one", b"two"]),
                                    config=config)
        assert [o for _, o in reports] == [0, 1]
        other = AdminClient({"bootstrap.servers": listener(2, "PLAINTEXT")})
        described = other.describe_user_scram_credentials(["bob"])["bob"].result(timeout=30)
        assert [(i.mechanism.name, i.iterations) for i in described.scram_credential_infos] \
            == [("SCRAM_SHA_256", 4096)]
        deletion = UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            assert future.result(timeout=30) is None
        assert "invalid credentials" in confluent_auth_error(listener(3, "SASL_PLAINTEXT"),
                                                             config)


@pytest.mark.parametrize("overrides, message", [
    ({}, "trioka: sasl.enabled.mechanisms: SASL mechanism GSSAPI is not served on listener "
         "SASL_PLAINTEXT"),
    ({"sasl.enabled.mechanisms": "PLAIN"},
     "trioka: listener.name.sasl_plaintext.plain.sasl.jaas.config: listener SASL_PLAINTEXT "
     "enables PLAIN but has no JAAS configuration"),
    ({"sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": "x.Plain required user_a=\"b\""},
     "JAAS config entry not terminated by semi-colon"),
])
def test_sasl_config_mistakes_stop_the_start_with_one_line(overrides, message):
    args = [sys.executable, "-m", "trioka", "serve", "--memory",
            "--listeners", "SASL_PLAINTEXT://127.0.0.1:0"]
    for key, value in overrides.items():
        args += ["--override", f"{key}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_out_of_order_sasl_requests_close_the_connection(sasl_broker):
    # SaslAuthenticate before SaslHandshake.
    raw = Raw(sasl_broker.sasl_port)
    try:
        raw.send(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\0alice\0alice-secret")
        assert raw.closed()
    finally:
        raw.close()
    # A second SaslHandshake in the middle of the exchange.
    raw = Raw(sasl_broker.sasl_port)
    try:
        assert raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        raw.send(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN")
        assert raw.closed()
    finally:
        raw.close()


def test_sasl_requests_on_a_plaintext_listener_are_illegal_state(sasl_broker):
    raw = Raw(sasl_broker.port)
    try:
        handshake = raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN")
        assert handshake.error_code == ErrorCode.ILLEGAL_SASL_STATE
        authenticate = raw.request(ApiKey.SASL_AUTHENTICATE, 1, auth_bytes=b"x")
        assert authenticate.error_code == ErrorCode.ILLEGAL_SASL_STATE
        assert raw.request(ApiKey.METADATA, 12, topics=[],
                           allow_auto_topic_creation=False).brokers
    finally:
        raw.close()


def test_handshake_v0_then_raw_tokens(sasl_broker):
    raw = Raw(sasl_broker.sasl_port)
    try:
        answer = raw.request(ApiKey.SASL_HANDSHAKE, 0, mechanism="PLAIN")
        assert answer.error_code == 0
        token = b"\0alice\0alice-secret"
        raw.sock.sendall(struct.pack(">i", len(token)) + token)
        assert raw.exactly(4) == b"\0\0\0\0"       # PLAIN's empty answer, size-prefixed
        assert raw.request(ApiKey.METADATA, 12, topics=[],
                           allow_auto_topic_creation=False).brokers
    finally:
        raw.close()
    raw = Raw(sasl_broker.sasl_port)
    try:
        raw.request(ApiKey.SASL_HANDSHAKE, 0, mechanism="PLAIN")
        token = b"\0alice\0wrong"
        raw.sock.sendall(struct.pack(">i", len(token)) + token)
        assert raw.closed()        # a raw exchange has no way to carry an error
    finally:
        raw.close()


def test_aiokafka_kafkajs_and_kcat_with_oauthbearer(sasl_broker):
    from aiokafka.abc import AbstractTokenProvider
    now = int(time.time())
    token = unsecured_jwt({"sub": "dave", "iat": now, "exp": now + 600})

    class Fixed(AbstractTokenProvider):
        async def token(self):
            return token

    topic = unique("sasl-oauth-aiokafka")
    config = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
              "sasl_oauth_token_provider": Fixed()}
    produce_aiokafka(sasl_broker.sasl_bootstrap, topic, value_records([b"a", b"b"]),
                     config=config)
    got = consume_aiokafka(sasl_broker.sasl_bootstrap, topic, [0], 2, config=config)
    assert [r.value for r in got] == [b"a", b"b"]

    topic = unique("sasl-oauth-kafkajs")
    out = kafkajs("secure.js", sasl_broker.sasl_bootstrap, topic, "kafkajs",
                  json.dumps({"sasl": {"mechanism": "oauthbearer", "token": token}}), "3")
    assert out == [{"produced": [0]}, {"consumed": ["kafkajs-0", "kafkajs-1", "kafkajs-2"]}]

    topic = unique("sasl-oauth-kcat")
    flags = {"security.protocol": "sasl_plaintext", "sasl.mechanisms": "OAUTHBEARER",
             "enable.sasl.oauthbearer.unsecure.jwt": "true",
             "sasl.oauthbearer.config": "principal=erin"}
    produce_kcat(sasl_broker.sasl_bootstrap, topic, value_records([b"k"]), config=flags)
    assert [r.value for r in consume_kcat(sasl_broker.sasl_bootstrap, topic, [0], 1,
                                          config=flags)] == [b"k"]
