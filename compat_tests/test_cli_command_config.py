"""`--command-config FILE` ($TRIOKA_COMMAND_CONFIG): the `trioka` tools' own client on SSL (client
authentication required; PEM and PKCS12 stores), SASL_PLAINTEXT (PLAIN, SCRAM-SHA-512,
OAUTHBEARER) and SASL_SSL listeners, configured with Kafka's client settings in a properties file.
`trioka topic create/list`, `produce` and `consume` go through the secured listeners; what they
wrote is read back with confluent-kafka and kafka-python configured the same way, and what
confluent-kafka wrote is read with `trioka consume`. A wrong password ends with Kafka's
SASL_AUTHENTICATION_FAILED message and exit 1; a missing file, a bad value, an untrusted broker
are one line each.
"""

import os
import re
import subprocess
import sys

import pytest

from clients import consume_confluent, consume_kafka_python, produce_confluent, value_records
from harness import unique
from trioka.testing.process import BrokerProcess

PORTS = {name: re.compile(rf"(?<![A-Z_]){name}://[\d.]+:(\d+)")
         for name in ("SSL", "SASL_PLAINTEXT", "SASL_SSL")}
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" '
              'user_admin="admin-secret" user_alice="alice-secret";')


class SecuredBroker(BrokerProcess):
    """PLAINTEXT (the one BrokerProcess waits for), SSL with client certificates required,
    SASL_PLAINTEXT and SASL_SSL, each on a free port read from the ready line."""

    def __init__(self, overrides: dict):
        super().__init__(memory=True, overrides=overrides)
        self.listener_ports = {name: 0 for name in PORTS}

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--listeners") + 1
        cmd[at] += "".join(f",{name}://127.0.0.1:{port}"
                           for name, port in self.listener_ports.items())
        return cmd

    def start(self, timeout: float = 30.0) -> "SecuredBroker":
        super().start(timeout)
        ready = next(line for line in self.output if line.startswith("trioka ready:"))
        for name, pattern in PORTS.items():
            self.listener_ports[name] = int(pattern.search(ready).group(1))
        return self

    def at(self, listener: str) -> str:
        return f"localhost:{self.listener_ports[listener]}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    made = subprocess.run([sys.executable, "-m", "trioka", "certs", str(directory)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    paths = {name: str(directory / name) for name in (
        "ca.pem", "broker.p12", "truststore.p12", "client.pem", "client.key")}
    # A Kafka PEM keystore is one file: the private key and the certificate chain.
    paths["client-keystore.pem"] = str(directory / "client-keystore.pem")
    with open(paths["client-keystore.pem"], "w") as out:
        out.write(open(paths["client.key"]).read() + open(paths["client.pem"]).read())
    # And the same as a PKCS12 keystore.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    key = serialization.load_pem_private_key(open(paths["client.key"], "rb").read(), None)
    cert = x509.load_pem_x509_certificate(open(paths["client.pem"], "rb").read())
    paths["client.p12"] = str(directory / "client.p12")
    with open(paths["client.p12"], "wb") as out:
        out.write(pkcs12.serialize_key_and_certificates(
            b"client", key, cert, None, serialization.BestAvailableEncryption(b"client-pass")))
    return paths


@pytest.fixture(scope="module")
def broker(certs):
    with SecuredBroker({
            "ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
            "ssl.keystore.password": "trioka-dev", "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": certs["truststore.p12"],
            "ssl.truststore.password": "trioka-dev",
            "listener.name.ssl.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512,OAUTHBEARER",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
            "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
            "connection.failed.authentication.delay.ms": "50"}) as b:
        b.start()
        added = trioka("user", "add", "carol", "--password", "carol-secret", "--mechanism",
                       "SCRAM-SHA-512", "-b", b.bootstrap)
        assert added.returncode == 0, added.stderr
        yield b


def trioka(*args, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "trioka", *args], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def write_properties(tmp_path, text: str) -> str:
    path = tmp_path / f"{unique('client')}.properties"
    path.write_text(text)
    return str(path)


def jaas(module: str, user: str, password: str) -> str:
    return (f'sasl.jaas.config=org.apache.kafka.common.security.{module} required \\\n'
            f'    username="{user}" password="{password}";\n')


def cli_round_trip(bootstrap: str, properties: str, topic: str) -> list[bytes]:
    """Create, list, produce and consume with `trioka` over the secured listener; the values."""
    created = trioka("topic", "create", topic, "--partitions", "1", "-b", bootstrap,
                     "--command-config", properties)
    assert created.returncode == 0, created.stderr
    listed = trioka("topic", "list", "-b", bootstrap, "--command-config", properties)
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout.split()
    values = [f"{topic}-{i}" for i in range(5)]
    produced = trioka("produce", topic, "-b", bootstrap, "--command-config", properties,
                      stdin="".join(v + "\n" for v in values))
    assert produced.returncode == 0, produced.stderr
    consumed = trioka("consume", topic, "--from-beginning", "--max-messages", "5",
                      "--timeout-ms", "20000", "-b", bootstrap, "--command-config", properties)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == values
    return [v.encode() for v in values]


@pytest.mark.parametrize("keystore", ["PEM", "PKCS12"])
def test_ssl_with_client_certificate(broker, certs, tmp_path, keystore):
    if keystore == "PEM":
        stores = (f"ssl.truststore.type=PEM\nssl.truststore.location={certs['ca.pem']}\n"
                  f"ssl.keystore.type=PEM\nssl.keystore.location={certs['client-keystore.pem']}\n")
    else:
        stores = (f"ssl.truststore.type=PKCS12\nssl.truststore.location="
                  f"{certs['truststore.p12']}\nssl.truststore.password=trioka-dev\n"
                  f"ssl.keystore.type=PKCS12\nssl.keystore.location={certs['client.p12']}\n"
                  f"ssl.keystore.password=client-pass\n")
    properties = write_properties(tmp_path, "# mutual TLS\nsecurity.protocol=SSL\n" + stores)
    topic = unique("cc-ssl")
    values = cli_round_trip(broker.at("SSL"), properties, topic)
    got = consume_confluent(broker.at("SSL"), topic, [0], 5, config={
        "security.protocol": "SSL", "ssl.ca.location": certs["ca.pem"],
        "ssl.certificate.location": certs["client.pem"], "ssl.key.location": certs["client.key"]})
    assert [r.value for r in got] == values


def test_ssl_without_client_certificate_is_refused(broker, certs, tmp_path):
    properties = write_properties(tmp_path, f"security.protocol=SSL\nssl.truststore.type=PEM\n"
                                            f"ssl.truststore.location={certs['ca.pem']}\n")
    out = trioka("topic", "list", "-b", broker.at("SSL"), "--command-config", properties)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1


def test_untrusted_broker_certificate_fails_the_handshake(broker, tmp_path):
    # The system CAs do not sign the development CA's certificates.
    properties = write_properties(tmp_path, "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                                            + jaas("plain.PlainLoginModule", "alice",
                                                   "alice-secret"))
    out = trioka("topic", "list", "-b", broker.at("SASL_SSL"), "--command-config", properties)
    assert out.returncode == 1
    assert "SSL handshake" in out.stderr and "certificate verify failed" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("mechanism,module,user,password", [
    ("PLAIN", "plain.PlainLoginModule", "alice", "alice-secret"),
    ("SCRAM-SHA-512", "scram.ScramLoginModule", "carol", "carol-secret")])
def test_sasl_plaintext(broker, tmp_path, mechanism, module, user, password):
    properties = write_properties(tmp_path, f"security.protocol=SASL_PLAINTEXT\n"
                                            f"sasl.mechanism={mechanism}\n"
                                            + jaas(module, user, password))
    topic = unique("cc-sasl")
    values = cli_round_trip(broker.at("SASL_PLAINTEXT"), properties, topic)
    confluent = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                 "sasl.username": user, "sasl.password": password}
    got = consume_confluent(broker.at("SASL_PLAINTEXT"), topic, [0], 5, config=confluent)
    assert [r.value for r in got] == values
    kafka_python = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
                    "sasl_plain_username": user, "sasl_plain_password": password}
    got = consume_kafka_python(broker.at("SASL_PLAINTEXT"), topic, [0], 5, config=kafka_python)
    assert [r.value for r in got] == values


def test_sasl_ssl_with_librdkafka_style_credentials_from_the_environment(broker, certs,
                                                                          tmp_path):
    properties = write_properties(tmp_path, f"security.protocol=SASL_SSL\n"
                                            f"sasl.mechanism=SCRAM-SHA-512\n"
                                            f"sasl.username=carol\nsasl.password=carol-secret\n"
                                            f"ssl.truststore.type=PEM\n"
                                            f"ssl.truststore.location={certs['ca.pem']}\n")
    topic = unique("cc-sasl-ssl")
    config = {"security.protocol": "SASL_SSL", "ssl.ca.location": certs["ca.pem"],
              "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "carol",
              "sasl.password": "carol-secret"}
    produce_confluent(broker.at("SASL_SSL"), topic, value_records([b"c-%d" % i for i in range(3)]),
                      config=config)
    env = {"TRIOKA_COMMAND_CONFIG": properties, "TRIOKA_BROKERS": broker.at("SASL_SSL")}
    out = trioka("consume", topic, "--from-beginning", "--max-messages", "3", "--timeout-ms",
                 "20000", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["c-0", "c-1", "c-2"]


def test_oauthbearer_unsecured_token(broker, tmp_path):
    properties = write_properties(tmp_path, (
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\nsasl.jaas.config="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        "unsecuredLoginStringClaim_sub=\"alice\";\n"))
    topic = unique("cc-oauth")
    values = cli_round_trip(broker.at("SASL_PLAINTEXT"), properties, topic)
    got = consume_confluent(broker.at("SASL_PLAINTEXT"), topic, [0], 5, config={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": True,
        "sasl.oauthbearer.config": "principal=alice"})
    assert [r.value for r in got] == values


@pytest.mark.parametrize("mechanism,module,user", [
    ("PLAIN", "plain.PlainLoginModule", "alice"),
    ("SCRAM-SHA-512", "scram.ScramLoginModule", "carol")])
def test_wrong_password_is_kafkas_authentication_failure(broker, tmp_path, mechanism, module,
                                                          user):
    properties = write_properties(tmp_path, f"security.protocol=SASL_PLAINTEXT\n"
                                            f"sasl.mechanism={mechanism}\n"
                                            + jaas(module, user, "wrong"))
    out = trioka("topic", "list", "-b", broker.at("SASL_PLAINTEXT"),
                 "--command-config", properties)
    assert out.returncode == 1
    expected = ("Authentication failed: Invalid username or password" if mechanism == "PLAIN"
                else "Authentication failed during authentication due to invalid credentials "
                     "with SASL mechanism SCRAM-SHA-512")
    assert out.stderr == f"Error: {expected}\n"


def test_mechanism_the_listener_does_not_enable(broker, tmp_path):
    properties = write_properties(tmp_path, "security.protocol=SASL_PLAINTEXT\n"
                                            "sasl.mechanism=SCRAM-SHA-256\n"
                                            "sasl.username=carol\nsasl.password=x\n")
    out = trioka("topic", "list", "-b", broker.at("SASL_PLAINTEXT"),
                 "--command-config", properties)
    assert out.returncode == 1
    assert out.stderr.startswith("Error: Client SASL mechanism 'SCRAM-SHA-256' not enabled in "
                                 "the server, enabled mechanisms are [")


def test_config_mistakes_are_one_line(broker, tmp_path):
    missing = str(tmp_path / "nope.properties")
    out = trioka("topic", "list", "-b", broker.at("SSL"), "--command-config", missing)
    assert (out.returncode, out.stderr) == (
        1, f"Error: --command-config {missing}: cannot read {missing}: "
           f"No such file or directory\n")
    out = trioka("topic", "list", "-b", broker.at("SSL"),
                 env={"TRIOKA_COMMAND_CONFIG": missing})
    assert out.returncode == 1 and f"(from $TRIOKA_COMMAND_CONFIG)" in out.stderr
    bad = write_properties(tmp_path, "security.protocol=TLS\n")
    out = trioka("topic", "list", "-b", broker.at("SSL"), "--command-config", bad)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "security.protocol: 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL" \
        in out.stderr


def test_unknown_keys_are_warned_about(broker, tmp_path):
    properties = write_properties(tmp_path, "security.protocol=PLAINTEXT\nlinger.ms=5\n")
    out = trioka("topic", "list", "-b", broker.bootstrap, "--command-config", properties)
    assert out.returncode == 0, out.stderr
    assert ("Warning: The configuration 'linger.ms' was supplied but isn't a known config"
            in out.stderr)
