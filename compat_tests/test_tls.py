"""TLS listeners against stock clients: confluent-kafka, kafka-python and kcat over SSL, mutual
TLS (ssl.client.auth), principals from client certificates, PLAINTEXT and SSL listeners side by
side, and the start refused for an unknown protocol or a TLS listener without a keystore.

The certificates come from `trioka certs` (cli/certs.py) run in the test's temporary directory;
a second, unrelated CA from another run makes the untrusted client. The principal a client got
is read back from the broker's request log (its `principal` field), over the admin endpoint.
"""

import json
import subprocess
import sys
import urllib.request

import pytest

from clients import (consume_confluent, consume_kafka_python, consume_kcat, kcat_ok,
                     produce_confluent, produce_kafka_python, produce_kcat, run_kcat,
                     value_records)
from harness import unique
from trioka.testing.process import BrokerProcess



class TlsBroker(BrokerProcess):
    """A broker process with a PLAINTEXT listener (the one BrokerProcess waits for) and an SSL
    listener on a free port of its own, read from the ready line."""

    def __init__(self, overrides: dict, memory: bool = False):
        super().__init__(memory=memory, overrides=overrides, args=["--log-level", "INFO"],
                         listeners=("SSL",))

    @property
    def ssl_port(self) -> int:
        return self.listener_port("SSL")

    @property
    def ssl_bootstrap(self) -> str:
        return f"localhost:{self.ssl_port}"

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.admin}/requests", timeout=10) as r:
            return json.loads(r.read())["requests"]

    def principals(self, client_id: str) -> set[str]:
        return {(e["security_protocol"], e["principal"]) for e in self.requests()
                if e["client_id"] == client_id}


def make_certs(directory) -> dict:
    out = subprocess.run([sys.executable, "-m", "trioka", "certs", str(directory)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ssl.keystore.location=" in out.stdout
    return {name: str(directory / name) for name in (
        "ca.pem", "broker.p12", "truststore.p12", "broker-keystore.pem", "client.pem",
        "client.key")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def mtls_broker(certs):
    """ssl.client.auth=required, PKCS12 stores, CN mapped to the principal name."""
    with TlsBroker({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
                    "ssl.keystore.password": "trioka-dev", "ssl.truststore.type": "PKCS12",
                    "ssl.truststore.location": certs["truststore.p12"],
                    "ssl.truststore.password": "trioka-dev", "ssl.client.auth": "required",
                    "ssl.principal.mapping.rules": "RULE:^CN=(.*?),O=.*$/$1/L,DEFAULT",
                    }) as b:
        yield b.start()


def confluent_ssl(certs, *, client_cert: bool = True, **extra) -> dict:
    conf = {"security.protocol": "SSL", "ssl.ca.location": certs["ca.pem"], **extra}
    if client_cert:
        conf.update({"ssl.certificate.location": certs["client.pem"],
                     "ssl.key.location": certs["client.key"]})
    return conf


def kafka_python_ssl(certs) -> dict:
    return {"security_protocol": "SSL", "ssl_cafile": certs["ca.pem"],
            "ssl_certfile": certs["client.pem"], "ssl_keyfile": certs["client.key"]}


def test_confluent_produces_and_consumes_over_mutual_tls(mtls_broker, certs):
    topic = unique("tls-confluent")
    records = value_records([b"secret-%d" % i * 50 for i in range(200)])
    client_id = unique("tls-client")
    reports = produce_confluent(mtls_broker.ssl_bootstrap, topic, records,
                                config=confluent_ssl(certs, **{"client.id": client_id}))
    assert [o for _, o in reports] == list(range(200))
    got = consume_confluent(mtls_broker.ssl_bootstrap, topic, [0], 200,
                            config=confluent_ssl(certs))
    assert [r.value for r in got] == [r.value for r in records]
    # The client certificate's subject is CN=client,O=trioka; the rule keeps the CN.
    assert mtls_broker.principals(client_id) == {("SSL", "User:client")}


def test_large_fetches_from_disk_over_tls(mtls_broker, certs):
    """Fetches of stored segments go through TLS without sendfile: regions over 1 MiB are read
    in a worker thread, in 256 KiB pieces; every byte must arrive intact."""
    topic = unique("tls-large")
    values = [bytes([i]) * 200_000 + b"%d" % i for i in range(40)]      # about 8 MB
    produce_confluent(mtls_broker.ssl_bootstrap, topic, value_records(values),
                      config=confluent_ssl(certs))
    got = consume_confluent(mtls_broker.ssl_bootstrap, topic, [0], 40,
                            config=confluent_ssl(certs, **{"fetch.max.bytes": 8_000_000,
                                                           "max.partition.fetch.bytes":
                                                           8_000_000}))
    assert [r.value for r in got] == values


def test_kafka_python_produces_and_consumes_over_mutual_tls(mtls_broker, certs):
    topic = unique("tls-kafka-python")
    records = value_records([b"kp-%d" % i for i in range(50)])
    produce_kafka_python(mtls_broker.ssl_bootstrap, topic, records,
                         config=kafka_python_ssl(certs))
    got = consume_kafka_python(mtls_broker.ssl_bootstrap, topic, [0], 50,
                               config=kafka_python_ssl(certs))
    assert [(r.offset, r.value) for r in got] == [(i, b"kp-%d" % i) for i in range(50)]


def test_kcat_over_ssl(mtls_broker, certs):
    topic = unique("tls-kcat")
    flags = {"security.protocol": "ssl", "ssl.ca.location": certs["ca.pem"],
             "ssl.certificate.location": certs["client.pem"],
             "ssl.key.location": certs["client.key"]}
    produce_kcat(mtls_broker.ssl_bootstrap, topic, value_records([b"one", b"two"]),
                 config=flags)
    got = consume_kcat(mtls_broker.ssl_bootstrap, topic, [0], 2, config=flags)
    assert [r.value for r in got] == [b"one", b"two"]
    # Metadata over the SSL listener names the SSL listener's port.
    listing = kcat_ok("-L", "-b", mtls_broker.ssl_bootstrap,
                      *[a for k, v in flags.items() for a in ("-X", f"{k}={v}")])
    assert f":{mtls_broker.ssl_port}".encode() in listing


def test_plaintext_and_ssl_listeners_serve_the_same_data(mtls_broker, certs):
    topic = unique("tls-both")
    records = value_records([b"plain-%d" % i for i in range(20)])
    plain_id = unique("plain-client")
    produce_confluent(mtls_broker.bootstrap, topic, records, config={"client.id": plain_id})
    got = consume_confluent(mtls_broker.ssl_bootstrap, topic, [0], 20,
                            config=confluent_ssl(certs))
    assert [r.value for r in got] == [r.value for r in records]
    assert mtls_broker.principals(plain_id) == {("PLAINTEXT", "User:ANONYMOUS")}


def test_client_without_certificate_is_refused(mtls_broker, certs):
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import KafkaException
    admin = AdminClient(confluent_ssl(certs, client_cert=False, **{
        "bootstrap.servers": mtls_broker.ssl_bootstrap}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    # kcat without a certificate fails the same way.
    r = run_kcat("-L", "-b", mtls_broker.ssl_bootstrap, "-m", "3", "-X",
                 "security.protocol=ssl", "-X", f"ssl.ca.location={certs['ca.pem']}")
    assert r.returncode != 0
    assert any("SSL handshake failed" in line for line in mtls_broker.output)


def test_untrusted_client_certificate_is_refused(mtls_broker, certs, tmp_path):
    other = make_certs(tmp_path / "other-ca")      # a CA the broker does not trust
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import KafkaException
    conf = confluent_ssl(certs, client_cert=False, **{
                         "bootstrap.servers": mtls_broker.ssl_bootstrap,
                                   "ssl.certificate.location": other["client.pem"],
                                   "ssl.key.location": other["client.key"]})
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=3)
    # The trusted certificate still gets in.
    ok = AdminClient({**conf, "ssl.certificate.location": certs["client.pem"],
                      "ssl.key.location": certs["client.key"]}).list_topics(timeout=10)
    assert ok.brokers


def test_client_auth_requested_with_pem_keystore(certs):
    """ssl.client.auth=requested and PEM stores: a client without a certificate is ANONYMOUS,
    one with a certificate is its whole DN (the DEFAULT rule)."""
    with TlsBroker({"ssl.keystore.type": "PEM",
                    "ssl.keystore.location": certs["broker-keystore.pem"],
                    "ssl.truststore.type": "PEM", "ssl.truststore.location": certs["ca.pem"],
                    "ssl.client.auth": "requested"}, memory=True) as b:
        b.start()
        topic = unique("tls-requested")
        anonymous, named = unique("anonymous"), unique("named")
        produce_confluent(b.ssl_bootstrap, topic, value_records([b"a"]),
                          config=confluent_ssl(certs, client_cert=False,
                                               **{"client.id": anonymous}))
        produce_confluent(b.ssl_bootstrap, topic, value_records([b"b"]),
                          config=confluent_ssl(certs, **{"client.id": named}))
        assert b.principals(anonymous) == {("SSL", "User:ANONYMOUS")}
        assert b.principals(named) == {("SSL", "User:CN=client,O=trioka")}
        got = consume_kafka_python(b.ssl_bootstrap, topic, [0], 2,
                                   config={"security_protocol": "SSL",
                                           "ssl_cafile": certs["ca.pem"]})
        assert [r.value for r in got] == [b"a", b"b"]


def test_tls_1_2_only_listener(certs):
    """ssl.enabled.protocols=TLSv1.2: clients get TLS 1.2, a client that insists on TLS 1.3
    cannot connect."""
    import socket
    import ssl
    from confluent_kafka.admin import AdminClient
    with TlsBroker({"ssl.keystore.type": "PEM",
                    "ssl.keystore.location": certs["broker-keystore.pem"],
                    "ssl.enabled.protocols": "TLSv1.2"}, memory=True) as b:
        b.start()
        assert AdminClient({"bootstrap.servers": b.ssl_bootstrap, "security.protocol": "SSL",
                            "ssl.ca.location": certs["ca.pem"]}).list_topics(timeout=10).brokers

        def handshake(version: ssl.TLSVersion) -> str:
            ctx = ssl.create_default_context(cafile=certs["ca.pem"])
            ctx.minimum_version = version
            with socket.create_connection(("127.0.0.1", b.ssl_port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="localhost") as tls:
                    return tls.version()

        assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        with pytest.raises(ssl.SSLError):
            handshake(ssl.TLSVersion.TLSv1_3)


@pytest.mark.parametrize("args, message", [
    (["--listeners", "FOO://127.0.0.1:0"], "No security protocol defined for listener FOO"),
    (["--listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"],
     "listener SASL_SSL uses TLS but has no keystore"),
    (["--listeners", "X://127.0.0.1:0", "--override", "listener.security.protocol.map=X:TLS"],
     "unknown security protocol 'TLS' for listener X"),
    (["--listeners", "SSL://127.0.0.1:0", "--override", "ssl.keystore.type=PEM",
      "--override", "ssl.keystore.location=/nonexistent/k.pem"],
     "ssl.keystore.location (listener SSL): cannot read /nonexistent/k.pem"),
])
def test_bad_security_settings_stop_the_start(args, message):
    r = subprocess.run([sys.executable, "-m", "trioka", "serve", "--memory", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_three_node_cluster_replicates_over_ssl(certs, tmp_path):
    """`trioka serve --nodes 3` with only an SSL listener: the brokers reach each other over
    TLS with their own keystore as client certificate (ssl.client.auth=required), replicate a
    replication-factor-3 topic, and every replica stays in sync."""
    from confluent_kafka.admin import AdminClient, NewTopic
    from harness import wait_for
    from trioka.testing.process import ClusterProcess
    overrides = {"ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
                 "ssl.keystore.password": "trioka-dev", "ssl.truststore.type": "PKCS12",
                 "ssl.truststore.location": certs["truststore.p12"],
                 "ssl.truststore.password": "trioka-dev", "ssl.client.auth": "required"}
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SSL://127.0.0.1:0"])
    try:
        cluster.start()
        bootstrap = ",".join(f"localhost:{p}" for p in cluster.ports)
        conf = confluent_ssl(certs, **{"bootstrap.servers": bootstrap})
        admin = AdminClient(conf)
        topic = unique("tls-replicated")
        admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(30)
        records = [r._replace(partition=i % 3) for i, r in
                   enumerate(value_records([b"r-%d" % i for i in range(60)]))]
        produce_confluent(bootstrap, topic, records, config=conf)

        def in_sync():
            partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
            return all(sorted(p.isrs) == [1, 2, 3] for p in partitions.values())

        wait_for(in_sync, 30, lambda: f"ISRs of {topic}: not all three replicas in sync")
        got = consume_confluent(bootstrap, topic, [0, 1, 2], 60, config=conf)
        assert sorted(r.value for r in got) == sorted(r.value for r in records)
        assert not [line for line in cluster.output if "Failed authentication" in line]
    finally:
        cluster.close()
