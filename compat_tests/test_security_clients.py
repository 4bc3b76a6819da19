"""Every stock client over every security protocol it supports, with the client's ordinary,
documented configuration: the same settings an application uses against a Kafka cluster.

One broker serves three listeners, as a production Kafka broker often does:

- PLAINTEXT, for the test's own setup (SCRAM users made with AlterUserScramCredentials);
- SASL_SSL with PLAIN (users from the listener's JAAS configuration), SCRAM-SHA-256,
  SCRAM-SHA-512 and OAUTHBEARER (unsecured JWTs, Kafka's development validator);
- SSL with `ssl.client.auth=required` (mutual TLS), the principal drawn from the client
  certificate's subject by `ssl.principal.mapping.rules`.

`ssl.client.auth=required` is set broker-wide, unprefixed, as server.properties files commonly
write it: Kafka applies the unprefixed key to SSL listeners only (KIP-684), so SASL_SSL clients
connect without a certificate of their own. The certificates come from `trioka certs`.

Over SASL_SSL each of confluent-kafka, kafka-python, aiokafka, KafkaJS and kcat produces
distinct messages with each mechanism and reads them back; over mutual TLS aiokafka and KafkaJS
do the same (confluent-kafka, kafka-python and kcat over mutual TLS are in test_tls.py; all five
over SASL_PLAINTEXT in test_sasl.py). Every test then checks in the broker's request log
(`GET /requests` on the admin endpoint) that its Produce and Fetch requests came over the
expected protocol as the expected principal.
"""

import base64
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from clients import (consume_aiokafka, consume_confluent, consume_kafka_python, consume_kcat,
                     kafkajs, produce_aiokafka, produce_confluent, produce_kafka_python,
                     produce_kcat, value_records)
from harness import unique
from test_sasl import add_scram_users
from trioka.testing.process import BrokerProcess

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" user_alice="alice-secret";')
# Who authenticates with each mechanism: PLAIN from the JAAS text, SCRAM users made at setup,
# OAUTHBEARER the `sub` of the token (Kafka's unsecured validator's principal claim).
USERS = {"PLAIN": ("alice", "alice-secret"), "SCRAM-SHA-256": ("bob", "bob-secret"),
         "SCRAM-SHA-512": ("carol", "carol-secret"), "OAUTHBEARER": ("dave", None)}
PASSWORD = "trioka-dev"          # the stores `trioka certs` writes
PORTS = {"SASL_SSL": re.compile(r"SASL_SSL://[\d.]+:(\d+)"),
         "SSL": re.compile(r"(?<![A-Z_])SSL://[\d.]+:(\d+)")}


class SecureBroker(BrokerProcess):
    """A broker process with a PLAINTEXT listener (the one BrokerProcess waits for), a SASL_SSL
    and an SSL listener, each on a free port read from the ready line."""

    def __init__(self, overrides: dict):
        super().__init__(memory=True, overrides=overrides)
        self.ports = {"SASL_SSL": 0, "SSL": 0}

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--listeners") + 1
        cmd[at] += ",SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0"
        return cmd

    def start(self, timeout: float = 30.0) -> "SecureBroker":
        super().start(timeout)
        ready = next(line for line in self.output if line.startswith("trioka ready:"))
        self.ports = {name: int(pattern.search(ready).group(1))
                      for name, pattern in PORTS.items()}
        return self

    def bootstrap_of(self, protocol: str) -> str:
        # The certificate names localhost and 127.0.0.1; every client checks the host name.
        return f"localhost:{self.ports[protocol]}"

    def principals(self, client_id: str) -> set[tuple[str, str]]:
        """(security protocol, principal) of every Produce and Fetch this client sent."""
        query = urllib.parse.urlencode({"client_id": client_id})
        with urllib.request.urlopen(f"{self.admin}/requests?{query}", timeout=10) as r:
            entries = json.loads(r.read())["requests"]
        seen = {e["api"] for e in entries}
        assert {"Produce", "Fetch"} <= seen, f"{client_id} sent {sorted(seen)}"
        return {(e["security_protocol"], e["principal"]) for e in entries
                if e["api"] in ("Produce", "Fetch")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("certs")
    made = subprocess.run([sys.executable, "-m", "trioka", "certs", str(directory)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return {name: str(directory / name) for name in
            ("ca.pem", "broker.p12", "truststore.p12", "client.pem", "client.key")}


@pytest.fixture(scope="module")
def broker(certs):
    with SecureBroker({
            "sasl.enabled.mechanisms": ",".join(MECHANISMS),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
            "ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
            "ssl.keystore.password": PASSWORD,
            "ssl.truststore.type": "PKCS12", "ssl.truststore.location": certs["truststore.p12"],
            "ssl.truststore.password": PASSWORD,
            "ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=(.*?),O=.*$/$1/L,DEFAULT"}) as b:
        b.start()
        add_scram_users(b.bootstrap, USERS, 4096)
        yield b


def unsecured_jwt(subject: str, lifetime_s: int = 600) -> tuple[str, int]:
    """An unsecured JWT ({"alg":"none"}, no signature) for `subject`, and its expiry (epoch s),
    as the token providers of kafka-python, aiokafka and KafkaJS hand one out."""
    now = int(time.time())

    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    claims = {"sub": subject, "iat": now, "exp": now + lifetime_s}
    return f"{part({'alg': 'none'})}.{part(claims)}.", now + lifetime_s


# --- each client's documented configuration for a mechanism over SASL_SSL ---

def librdkafka_sasl_ssl(mechanism: str, certs, *, callback: bool) -> dict:
    """confluent-kafka's and kcat's configuration (both are librdkafka). For OAUTHBEARER,
    confluent-kafka hands out the token from its `oauth_cb`; kcat, a command line, cannot
    take a callback and uses librdkafka's own unsecured-token builder instead."""
    conf = {"security.protocol": "SASL_SSL", "ssl.ca.location": certs["ca.pem"],
            "sasl.mechanism": mechanism}
    user, password = USERS[mechanism]
    if mechanism != "OAUTHBEARER":
        return {**conf, "sasl.username": user, "sasl.password": password}
    if callback:
        token, expiry = unsecured_jwt(user)
        # oauth_cb returns (token, expiry in epoch seconds, principal name, extensions).
        return {**conf, "oauth_cb": lambda _config: (token, float(expiry), user, {})}
    return {**conf, "enable.sasl.oauthbearer.unsecure.jwt": "true",
            "sasl.oauthbearer.config": f"principal={user} lifeSeconds=600"}


def kafka_python_sasl_ssl(mechanism: str, certs) -> dict:
    conf = {"security_protocol": "SASL_SSL", "ssl_cafile": certs["ca.pem"],
            "sasl_mechanism": mechanism}
    user, password = USERS[mechanism]
    if mechanism != "OAUTHBEARER":
        return {**conf, "sasl_plain_username": user, "sasl_plain_password": password}
    from kafka.net.sasl.oauth import AbstractTokenProvider
    token, _ = unsecured_jwt(user)

    class Provider(AbstractTokenProvider):
        def token(self):
            return token

    return {**conf, "sasl_oauth_token_provider": Provider()}


def aiokafka_sasl_ssl(mechanism: str, certs) -> dict:
    # aiokafka takes TLS settings only as an SSLContext (its documented create_ssl_context).
    from aiokafka.helpers import create_ssl_context
    conf = {"security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=certs["ca.pem"]),
            "sasl_mechanism": mechanism}
    user, password = USERS[mechanism]
    if mechanism != "OAUTHBEARER":
        return {**conf, "sasl_plain_username": user, "sasl_plain_password": password}
    from aiokafka.abc import AbstractTokenProvider
    token, _ = unsecured_jwt(user)

    class Provider(AbstractTokenProvider):
        async def token(self):
            return token

    return {**conf, "sasl_oauth_token_provider": Provider()}


def kafkajs_sasl_ssl(mechanism: str, certs) -> dict:
    user, password = USERS[mechanism]
    sasl = ({"mechanism": "oauthbearer", "token": unsecured_jwt(user)[0]}
            if mechanism == "OAUTHBEARER"
            else {"mechanism": mechanism.lower(), "username": user, "password": password})
    return {"ssl": {"ca": certs["ca.pem"]}, "sasl": sasl}


# --- produce distinct messages, read them back: the values read ---

def round_trip(client: str, bootstrap: str, client_id: str, config, count: int) -> list[bytes]:
    topic = unique(f"secure-{client}")
    values = [b"%s-%d" % (client_id.encode(), i) for i in range(count)]
    records = value_records(values)
    if client == "kafkajs":
        out = kafkajs("secure.js", bootstrap, topic, client_id, json.dumps(config), str(count))
        assert out[0] == {"produced": [0]}
        return [v.encode() for v in out[1]["consumed"]]
    id_key, produce, consume, reports_offsets = PYTHON_AND_KCAT[client]
    config = {**config, id_key: client_id}
    reports = produce(bootstrap, topic, records, config=config)
    if reports_offsets:
        assert [o for _, o in reports] == list(range(count))
    got = consume(bootstrap, topic, [0], count, config=config)
    assert [r.offset for r in got] == list(range(count))
    return [r.value for r in got]


CLIENTS = ("confluent", "kafka-python", "aiokafka", "kafkajs", "kcat")
# How round_trip drives each client but KafkaJS: its client id key, its produce and consume, and
# whether its produce reports offsets.
PYTHON_AND_KCAT = {
    "confluent": ("client.id", produce_confluent, consume_confluent, True),
    "kafka-python": ("client_id", produce_kafka_python, consume_kafka_python, False),
    "aiokafka": ("client_id", produce_aiokafka, consume_aiokafka, True),
    "kcat": ("client.id", produce_kcat, consume_kcat, False),
}


def sasl_ssl_config(client: str, mechanism: str, certs):
    if client in ("confluent", "kcat"):
        return librdkafka_sasl_ssl(mechanism, certs, callback=client == "confluent")
    return {"kafka-python": kafka_python_sasl_ssl, "aiokafka": aiokafka_sasl_ssl,
            "kafkajs": kafkajs_sasl_ssl}[client](mechanism, certs)


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_client_over_sasl_ssl(broker, certs, client, mechanism):
    client_id = unique(f"{client}-{mechanism.lower()}")
    count = 2 if client == "kcat" else 5          # kcat runs once a record
    got = round_trip(client, broker.bootstrap_of("SASL_SSL"), client_id,
                     sasl_ssl_config(client, mechanism, certs), count)
    assert got == [b"%s-%d" % (client_id.encode(), i) for i in range(count)]
    user, _ = USERS[mechanism]
    assert broker.principals(client_id) == {("SASL_SSL", f"User:{user}")}


# --- mutual TLS: the principal from the client certificate (CN=client,O=trioka -> client) ---

def test_aiokafka_over_mutual_tls(broker, certs):
    from aiokafka.helpers import create_ssl_context
    client_id = unique("aiokafka-mtls")
    config = {"security_protocol": "SSL",
              "ssl_context": create_ssl_context(cafile=certs["ca.pem"],
                                                certfile=certs["client.pem"],
                                                keyfile=certs["client.key"])}
    got = round_trip("aiokafka", broker.bootstrap_of("SSL"), client_id, config, 5)
    assert got == [b"%s-%d" % (client_id.encode(), i) for i in range(5)]
    assert broker.principals(client_id) == {("SSL", "User:client")}


def test_kafkajs_over_mutual_tls(broker, certs):
    client_id = unique("kafkajs-mtls")
    config = {"ssl": {"ca": certs["ca.pem"], "cert": certs["client.pem"],
                      "key": certs["client.key"]}}
    got = round_trip("kafkajs", broker.bootstrap_of("SSL"), client_id, config, 5)
    assert got == [b"%s-%d" % (client_id.encode(), i) for i in range(5)]
    assert broker.principals(client_id) == {("SSL", "User:client")}


def test_the_ssl_listener_refuses_a_client_without_a_certificate(broker, certs):
    """The unprefixed ssl.client.auth=required holds on the SSL listener: KafkaJS without a
    client certificate fails its TLS handshake there (it got in over SASL_SSL above)."""
    from clients import run_kafkajs
    topic = unique("secure-no-cert")
    r = run_kafkajs("secure.js", broker.bootstrap_of("SSL"), topic, unique("no-cert"),
                    json.dumps({"ssl": {"ca": certs["ca.pem"]}}), "1")
    assert r.returncode != 0
    assert "fatal" in r.stdout.decode()
