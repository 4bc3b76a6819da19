"""OAUTHBEARER with Kafka's OAuthBearerValidatorCallbackHandler (KIP-768): a broker process
whose SASL_PLAINTEXT listener checks signed JWTs against a JWKS, read from a file: URL or served
over http by a small server in this test; confluent-kafka (oauth_cb) and kafka-python
(sasl_oauth_token_provider) produce and consume with signed tokens, and a bad token is refused
with Kafka's `{"status":"invalid_token"}`.

The same server is an identity provider's token endpoint (the client credentials grant): a
three-node cluster whose listeners all validate against the JWKS, the nodes logging in to each
other with tokens from it (Kafka's OAuthBearerLoginCallbackHandler), confluent-kafka with
librdkafka's own OIDC client (`sasl.oauthbearer.method=oidc`) and kafka-python with a token
provider asking the endpoint."""

import base64
import json
import urllib.parse
import urllib.request
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402

from clients import (consume_confluent, consume_kafka_python, produce_confluent,  # noqa: E402
                     produce_kafka_python, value_records)
from harness import unique  # noqa: E402
from test_sasl import Raw, SaslBroker, confluent_auth_error  # noqa: E402
from trioka.wire.api_keys import ApiKey  # noqa: E402
from trioka.wire.errors import ErrorCode  # noqa: E402

VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
ISSUER = "https://idp.example"
AUDIENCE = "trioka"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ROTATED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private_key, kid: str) -> dict:
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    return {**algorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid,
            "use": "sig"}


JWKS = {"keys": [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")]}


def signed_token(sub: str, key=RSA_KEY, alg="RS256", kid="rsa-1", **over) -> tuple[str, int]:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE,
              "scope": "kafka"}
    claims.update(over)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid}), claims["exp"]


class JwksBroker(SaslBroker):
    """A broker process with a PLAINTEXT listener and a SASL_PLAINTEXT one whose OAUTHBEARER
    checks tokens against the JWKS at `jwks_url`."""

    def __init__(self, jwks_url: str, **extra):
        prefix = "listener.name.sasl_plaintext.oauthbearer."
        super().__init__({
            **extra,
            "sasl.enabled.mechanisms": "OAUTHBEARER",
            prefix + "sasl.server.callback.handler.class": VALIDATOR,
            prefix + "sasl.oauthbearer.jwks.endpoint.url": jwks_url,
            "sasl.oauthbearer.expected.audience": AUDIENCE,
            "sasl.oauthbearer.expected.issuer": ISSUER,
            "connection.failed.authentication.delay.ms": "50"})


# The identity provider's clients (client credentials grant): id -> secret.
CLIENTS = {"broker": "broker-client-secret", "admin": "admin-client-secret"}


class JwksServer:
    """An http JWKS endpoint in a thread of this test process; `document` can be swapped (a key
    rotation) and `requests` counts the fetches. POST /token is a token endpoint: HTTP Basic
    client credentials of CLIENTS get an RS256 token naming the client (`tokens` counts them,
    by client)."""

    def __init__(self, document: dict, tls=None):
        self.document = document
        self.requests = 0
        self.tokens: dict[str, int] = {}
        self.scheme = "https" if tls is not None else "http"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                self.answer(200, owner.document)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                auth = self.headers.get("Authorization", "")
                try:
                    pair = base64.b64decode(auth.removeprefix("Basic ")).decode()
                    client, secret = (urllib.parse.unquote(p) for p in pair.split(":", 1))
                except ValueError:
                    client = secret = None
                if self.path != "/token" or form.get("grant_type") != ["client_credentials"] \
                        or CLIENTS.get(client) != secret:
                    self.answer(401, {"error": "invalid_client"})
                    return
                owner.tokens[client] = owner.tokens.get(client, 0) + 1
                token, exp = signed_token(client, scope=form.get("scope", ["kafka"])[0])
                self.answer(200, {"access_token": token, "token_type": "Bearer",
                                  "expires_in": exp - int(time.time())})

            def answer(self, status: int, document: dict):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    @property
    def token_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/token"

    def token(self, client: str, context=None) -> str:
        """A token for `client`, asked for as an OAuth client would."""
        request = urllib.request.Request(
            self.token_url, data=b"grant_type=client_credentials&scope=kafka", method="POST",
            headers={"Authorization": "Basic " + base64.b64encode(
                f"{client}:{CLIENTS[client]}".encode()).decode(),
                "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return json.loads(answer.read())["access_token"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def file_broker(tmp_path_factory):
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(JWKS))
    with JwksBroker(path.as_uri()) as b:
        yield b.start()


@pytest.fixture(scope="module")
def jwks_server():
    server = JwksServer(JWKS)
    yield server
    server.close()


@pytest.fixture(scope="module")
def http_broker(jwks_server):
    with JwksBroker(jwks_server.url) as b:
        yield b.start()


def confluent_oauth(token_for) -> dict:
    """librdkafka's OAUTHBEARER with a token from `token_for()`: (token, expiry seconds)."""
    def oauth_cb(_config: str):
        return token_for()
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": oauth_cb}


def kafka_python_oauth(token: str) -> dict:
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Fixed(AbstractTokenProvider):
        def token(self):
            return token

    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": Fixed()}


def kafka_python_refused(bootstrap: str, config: dict, caplog) -> None:
    """kafka-python never gets in: its bootstrap times out, and each attempt ended with the
    broker's SASL_AUTHENTICATION_FAILED `{"status":"invalid_token"}` or with the connection the
    broker closed after sending it. (kafka-python drops a response that arrives together with
    the connection's end, as this one does, here as from Kafka: it then logs only "socket
    disconnected".)"""
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError
    with caplog.at_level("WARNING", logger="kafka.net.manager"):
        with pytest.raises(KafkaTimeoutError):
            KafkaProducer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=3000, **config)
    attempts = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("Bootstrap connection to")]
    assert attempts, [r.getMessage() for r in caplog.records]
    for attempt in attempts:
        assert ('SaslAuthenticationFailedError: {"status":"invalid_token"}' in attempt
                or "KafkaConnectionError: socket disconnected" in attempt), attempt


def produce_and_consume_confluent(bootstrap: str, token_for, tag: str) -> None:
    topic = unique(f"jwks-{tag}")
    config = confluent_oauth(token_for)
    records = value_records([b"%s-%d" % (tag.encode(), i) for i in range(5)])
    reports = produce_confluent(bootstrap, topic, records, config=config)
    assert [o for _, o in reports] == list(range(5))
    got = consume_confluent(bootstrap, topic, [0], 5, config=config)
    assert [r.value for r in got] == [r.value for r in records]


def produce_and_consume_kafka_python(bootstrap: str, token: str, tag: str) -> None:
    topic = unique(f"jwks-kp-{tag}")
    config = kafka_python_oauth(token)
    produce_kafka_python(bootstrap, topic, value_records([b"k-%d" % i for i in range(3)]),
                         config=config)
    got = consume_kafka_python(bootstrap, topic, [0], 3, config=config)
    assert [r.value for r in got] == [b"k-%d" % i for i in range(3)]


# --- a JWKS file ---

def test_confluent_with_a_file_jwks(file_broker):
    produce_and_consume_confluent(file_broker.sasl_bootstrap,
                                  lambda: signed_token("alice"), "file")


def test_kafka_python_with_a_file_jwks_and_an_ec_key(file_broker):
    token, _ = signed_token("bob", EC_KEY, "ES256", "ec-1")
    produce_and_consume_kafka_python(file_broker.sasl_bootstrap, token, "file")


def test_confluent_with_an_expired_token_is_refused(file_broker):
    error = confluent_auth_error(file_broker.sasl_bootstrap, confluent_oauth(
        lambda: (signed_token("alice", exp=int(time.time()) - 3600)[0],
                 int(time.time()) + 600)))
    assert '{"status":"invalid_token"}' in error, error


def test_kafka_python_with_a_wrong_issuer_is_refused(file_broker, caplog):
    token, _ = signed_token("bob", iss="https://someone-else")
    kafka_python_refused(file_broker.sasl_bootstrap, kafka_python_oauth(token), caplog)


# --- a JWKS served over http ---

def test_confluent_with_an_http_jwks(http_broker, jwks_server):
    assert jwks_server.requests >= 1      # fetched before the broker said it was ready
    produce_and_consume_confluent(http_broker.sasl_bootstrap,
                                  lambda: signed_token("carol"), "http")


def test_kafka_python_with_an_http_jwks(http_broker):
    token, _ = signed_token("dave")
    produce_and_consume_kafka_python(http_broker.sasl_bootstrap, token, "http")


def test_a_token_signed_by_an_unknown_key_is_refused(http_broker, caplog):
    token, _ = signed_token("eve", ROTATED_KEY, kid="not-published")
    kafka_python_refused(http_broker.sasl_bootstrap, kafka_python_oauth(token), caplog)
    error = confluent_auth_error(http_broker.sasl_bootstrap, confluent_oauth(
        lambda: signed_token("eve", ROTATED_KEY, kid="also-not-published")))
    assert '{"status":"invalid_token"}' in error, error


def test_a_rotated_key_is_picked_up_once_a_token_names_it(http_broker, jwks_server):
    # The provider publishes a new key; the first token naming it fails and makes the broker
    # fetch the set at once (not an hour later); then the same token is accepted.
    jwks_server.document = {"keys": [*JWKS["keys"], jwk(ROTATED_KEY, "rsa-2")]}
    before = jwks_server.requests
    token_for = lambda: signed_token("frank", ROTATED_KEY, kid="rsa-2")  # noqa: E731
    error = confluent_auth_error(http_broker.sasl_bootstrap, confluent_oauth(token_for))
    assert '{"status":"invalid_token"}' in error, error
    assert _accepted_within(http_broker, token_for, 10), "the rotated key was never fetched"
    assert jwks_server.requests > before     # on demand, not refresh.ms (an hour) later
    produce_and_consume_confluent(http_broker.sasl_bootstrap, token_for, "rotated")


def _accepted_within(broker, token_for, seconds: float) -> bool:
    """Whether the broker accepts the token within `seconds` (the expedited refresh runs in the
    background, so the key may land a moment after the failure that asked for it)."""
    deadline = time.monotonic() + seconds
    while True:
        answers = sasl_exchange(broker.sasl_port, token_for()[0])
        if len(answers) == 2 and answers[1].error_code == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


# --- the exchange on the wire, byte for byte ---

def sasl_exchange(port: int, token: str) -> list:
    """SaslHandshake v1 and SaslAuthenticate v2 with `token`; on a challenge, the client's
    0x01 acknowledgement (RFC 7628). The responses, in order."""
    raw = Raw(port)
    try:
        answers = [raw.request(ApiKey.SASL_HANDSHAKE, 1, mechanism="OAUTHBEARER")]
        assert answers[0].error_code == 0
        answers.append(raw.request(ApiKey.SASL_AUTHENTICATE, 2,
                                   auth_bytes=f"n,,\x01auth=Bearer {token}\x01\x01".encode()))
        if answers[1].error_code == 0 and bytes(answers[1].auth_bytes):
            answers.append(raw.request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\x01"))
        return answers
    finally:
        raw.close()


@pytest.mark.parametrize("why", ["expired", "wrong audience", "unknown key", "bad signature"])
def test_a_refused_token_gets_kafkas_challenge_then_the_failure(file_broker, why):
    now = int(time.time())
    token = {"expired": lambda: signed_token("g", exp=now - 3600, iat=now - 7200)[0],
             "wrong audience": lambda: signed_token("g", aud="someone-else")[0],
             "unknown key": lambda: signed_token("g", ROTATED_KEY, kid="rsa-9")[0],
             "bad signature": lambda: signed_token("g", ROTATED_KEY)[0]}[why]()
    _, challenge, failure = sasl_exchange(file_broker.sasl_port, token)
    assert (challenge.error_code, bytes(challenge.auth_bytes)) == \
        (0, b'{"status":"invalid_token"}')
    assert (failure.error_code, failure.error_message) == \
        (ErrorCode.SASL_AUTHENTICATION_FAILED, '{"status":"invalid_token"}')


def test_an_accepted_token_sets_the_session_lifetime_to_its_expiry(file_broker):
    token, exp = signed_token("henry")
    _, done = sasl_exchange(file_broker.sasl_port, token)
    assert done.error_code == 0 and bytes(done.auth_bytes) == b""
    assert abs(done.session_lifetime_ms - (exp * 1000 - time.time() * 1000)) < 5000


# --- the nodes of a cluster log in with tokens from the identity provider ---

def cluster_overrides(jwks_server, client_secret: str = CLIENTS["broker"]) -> dict:
    """A cluster whose SASL_PLAINTEXT and CONTROLLER listeners validate tokens against the JWKS,
    the nodes asking the token endpoint for theirs (Kafka's login handler)."""
    from test_cluster_sasl import oauthbearer_overrides
    login = ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
             f'clientId="broker" clientSecret="{client_secret}" scope="kafka";')
    overrides = {
        **oauthbearer_overrides(login),
        "sasl.oauthbearer.jwks.endpoint.url": jwks_server.url,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.expected.issuer": ISSUER,
        "sasl.oauthbearer.token.endpoint.url": jwks_server.token_url,
        "sasl.login.retry.backoff.max.ms": "2000",
    }
    for listener in ("sasl_plaintext", "controller"):
        prefix = f"listener.name.{listener}.oauthbearer."
        overrides[prefix + "sasl.server.callback.handler.class"] = VALIDATOR
        overrides[prefix + "sasl.login.callback.handler.class"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler")
    return overrides


def test_a_cluster_whose_nodes_log_in_with_client_credentials(tmp_path, jwks_server):
    from test_cluster_sasl import replicate_and_fail_over, requests_of
    from trioka.testing.process import ClusterProcess
    before = jwks_server.tokens.get("broker", 0)
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=cluster_overrides(jwks_server),
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])
    try:
        cluster.start()
        # The nodes asked the token endpoint as `broker`: one token per node and listener,
        # reused for every connection while fresh.
        assert 1 <= jwks_server.tokens["broker"] - before <= 12, jwks_server.tokens
        confluent = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                     "sasl.oauthbearer.method": "oidc",
                     "sasl.oauthbearer.client.id": "admin",
                     "sasl.oauthbearer.client.secret": CLIENTS["admin"],
                     "sasl.oauthbearer.scope": "kafka",
                     "sasl.oauthbearer.token.endpoint.url": jwks_server.token_url}
        kafka_python = kafka_python_oauth(jwks_server.token("admin"))
        asked = jwks_server.tokens["admin"]
        replicate_and_fail_over(cluster, confluent, kafka_python)
        assert jwks_server.tokens["admin"] > asked     # librdkafka's own OIDC client asked
        handshakes = [e for e in requests_of(cluster, "SaslHandshake")
                      if e["client_id"].startswith("trioka-node-")]
        assert {(e["listener"], e["request"]["mechanism"]) for e in handshakes} == \
            {("SASL_PLAINTEXT", "OAUTHBEARER"), ("CONTROLLER", "OAUTHBEARER")}
        assert not [line for line in cluster.output if "failed authentication" in line]
    finally:
        cluster.close()


def test_a_node_refused_by_the_identity_provider_says_so_once(tmp_path, jwks_server):
    """Wrong client credentials: the endpoint answers 401, no node can log in, so the cluster
    never forms, and each node says why in one ERROR line naming the endpoint."""
    from trioka.testing.process import ClusterProcess
    cluster = ClusterProcess(3, str(tmp_path / "data"),
                             overrides=cluster_overrides(jwks_server, "not-the-secret"),
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0",
                                   "--log-level", "INFO"])
    try:
        with pytest.raises(RuntimeError):
            cluster.start(timeout=8)
        refused = [line for line in cluster.output
                   if "no OAUTHBEARER token from " + jwks_server.token_url in line]
        assert refused and all("ERROR" in line for line in refused), cluster.output[-20:]
        assert "HTTP Error 401" in refused[0] and "not-the-secret" not in "".join(cluster.output)
    finally:
        cluster.close()


# --- https endpoints: their TLS settings are the JAAS entry's ssl.* options, as in Kafka ---

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from trioka.cli.certs import write
    return write(str(tmp_path_factory.mktemp("idp-certs")))


@pytest.fixture(scope="module")
def https_server(tls_files):
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tls_files["broker.pem"], tls_files["broker.key"])
    server = JwksServer(JWKS, tls=tls)
    yield server
    server.close()


def trusting(ca: str) -> str:
    return ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            f'ssl.truststore.location="{ca}" ssl.truststore.type="PEM";')


def test_an_https_jwks_trusted_through_the_jaas_entry(https_server, tls_files):
    before = https_server.requests
    with JwksBroker(https_server.url, **{
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
                trusting(tls_files["ca.pem"])}) as b:
        b.start()
        assert https_server.requests > before       # fetched over TLS before it was ready
        produce_and_consume_confluent(b.sasl_bootstrap, lambda: signed_token("gina"), "https")
        produce_and_consume_kafka_python(b.sasl_bootstrap, signed_token("hal")[0], "https")


def test_an_https_jwks_the_broker_does_not_trust_stops_the_start(https_server):
    """Without the JAAS entry's truststore the development CA is not trusted (the system's CAs
    are): the first fetch fails, and the start stops with one line naming the endpoint."""
    with JwksBroker(https_server.url, **{
            "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": "300"}) as b:
        with pytest.raises(RuntimeError):
            b.start(timeout=20)
        said = "\n".join(b.output)
    assert "CERTIFICATE_VERIFY_FAILED" in said and https_server.url in said, said[-2000:]
    assert "Traceback" not in said


def test_nodes_ask_an_https_token_endpoint(tmp_path, https_server, tls_files):
    """The cluster of test_a_cluster_whose_nodes_log_in_with_client_credentials over https:
    the JWKS fetches and the nodes' token requests trust the JAAS entry's truststore."""
    import ssl

    from test_cluster_sasl import replicate_and_fail_over
    from trioka.testing.process import ClusterProcess
    overrides = cluster_overrides(https_server)
    for listener in ("sasl_plaintext", "controller"):
        overrides[f"listener.name.{listener}.oauthbearer.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            f'clientId="broker" clientSecret="{CLIENTS["broker"]}" scope="kafka" '
            f'ssl.truststore.location="{tls_files["ca.pem"]}" ssl.truststore.type="PEM";')
    before = https_server.tokens.get("broker", 0)
    cluster = ClusterProcess(3, str(tmp_path / "data"), overrides=overrides,
                             args=["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])
    try:
        cluster.start()
        assert https_server.tokens["broker"] > before
        token = https_server.token("admin", ssl.create_default_context(
            cafile=tls_files["ca.pem"]))
        confluent = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                     "oauth_cb": lambda _config: signed_token("admin")}
        replicate_and_fail_over(cluster, confluent, kafka_python_oauth(token))
    finally:
        cluster.close()
