"""How a broker logs in to the other nodes on SASL listeners (security/sasl/broker_login.py), and
the client-side exchange it shares with the tools' client (security/sasl/client.py), without
sockets: the config resolution and its one-line refusals, the logins each node of
`cluster_configs` gets, and the exchange driven through the wire codec against the broker's own
SaslHandshake / SaslAuthenticate handlers and mechanisms."""

import types

import pytest
import trio

from trioka.apis import sasl_authenticate, sasl_handshake
from trioka.clock import ManualClock
from trioka.config import Config
from trioka.node.cluster import cluster_configs
from trioka.security.sasl.authenticator import SaslAuthenticator, listener_mechanisms
from trioka.security.sasl.broker_login import BrokerLogin, broker_login, cluster_logins
from trioka.security.sasl.client import SaslAuthenticationFailed, exchange
from trioka.security.sasl.scram import BY_NAME, ScramCredential
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="broker" password="broker-secret" user_broker="broker-secret" '
              'user_alice="alice-secret";')
SCRAM_JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
              'username="broker" password="scram-secret";')
OAUTH_JAAS = ('org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required '
              'unsecuredLoginStringClaim_sub="broker";')
SASL_LISTENER = "SASL_PLAINTEXT://127.0.0.1:9092"


def config(**values) -> Config:
    base = {"listeners": SASL_LISTENER, "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    return Config({k: v for k, v in base.items() if v is not None})


# ---------------------------------------------------------------------- config resolution

def test_the_login_is_the_jaas_entrys_username_and_password():
    login = broker_login(config(), "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert (login.mechanism, login.options) == \
        ("PLAIN", {"username": "broker", "password": "broker-secret"})
    assert login.principal == "User:broker"
    assert login.describe() == "sasl.mechanism.inter.broker.protocol=PLAIN as User:broker"
    assert "broker-secret" not in repr(login)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_no_login_on_a_listener_without_sasl(protocol):
    assert broker_login(config(), "SASL_PLAINTEXT", protocol) is None


def test_the_jaas_entry_follows_kafkas_override_order():
    # The mechanism's entry first, then the listener's, then the broker's sasl.jaas.config.
    listener_level = PLAIN_JAAS.replace('password="broker-secret"', 'password="listener"')
    broker_level = PLAIN_JAAS.replace('password="broker-secret"', 'password="broker"')
    c = config(**{"listener.name.sasl_plaintext.plain.sasl.jaas.config": None,
                  "listener.name.sasl_plaintext.sasl.jaas.config": listener_level,
                  "sasl.jaas.config": broker_level})
    assert broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT").options["password"] == "listener"
    c = config(**{"listener.name.sasl_plaintext.plain.sasl.jaas.config": None,
                  "sasl.jaas.config": broker_level})
    assert broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT").options["password"] == "broker"


def test_scram_between_brokers_reads_the_scram_entry():
    c = config(**{"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
                  "sasl.mechanism.inter.broker.protocol": "scram-sha-512",
                  "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": SCRAM_JAAS})
    login = broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert (login.mechanism, login.options["password"]) == ("SCRAM-SHA-512", "scram-secret")


def test_oauthbearer_between_brokers_is_an_unsecured_token_naming_the_broker():
    c = config(**{"sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER",
                  "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
                  "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": OAUTH_JAAS})
    login = broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert login.mechanism == "OAUTHBEARER" and login.principal == "User:broker"
    assert login.describe() == "sasl.mechanism.inter.broker.protocol=OAUTHBEARER as User:broker"
    token, extensions = login.oauthbearer_token(1_700_000_000)
    assert token.endswith(".") and extensions == {}


def test_the_controller_listener_uses_its_own_mechanism_key():
    c = config(**{"listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                  "listener.name.controller.plain.sasl.jaas.config": PLAIN_JAAS})
    with pytest.raises(ValueError, match=r"^sasl\.mechanism\.controller\.protocol: GSSAPI"):
        broker_login(c, "CONTROLLER", "SASL_PLAINTEXT", controller=True)
    c.set("sasl.mechanism.controller.protocol", "PLAIN")
    login = broker_login(c, "CONTROLLER", "SASL_PLAINTEXT", controller=True)
    assert login.describe() == "sasl.mechanism.controller.protocol=PLAIN as User:broker"


@pytest.mark.parametrize("values, message", [
    # Kafka's default mechanism, GSSAPI (Kerberos), is not served.
    ({"sasl.mechanism.inter.broker.protocol": None},
     "sasl.mechanism.inter.broker.protocol: GSSAPI (Kerberos, Kafka's default) is not "
     "supported: set PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER for listener "
     "SASL_PLAINTEXT"),
    ({"sasl.mechanism.inter.broker.protocol": "DIGEST-MD5",
      "sasl.enabled.mechanisms": "PLAIN,DIGEST-MD5"},
     "sasl.mechanism.inter.broker.protocol: DIGEST-MD5 is not a mechanism a broker can log "
     "in with to another node (one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"),
    # OAUTHBEARER: the unsecured token needs its principal claim.
    ({"sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
      "sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER",
      "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
          'x.OAuthBearerLoginModule required unsecuredLoginStringClaim_aud="kafka";'},
     "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config: OAUTHBEARER needs the "
     "principal: unsecuredLoginStringClaim_sub=\"NAME\" "
     "(sasl.mechanism.inter.broker.protocol=OAUTHBEARER)"),
    # ... and a listener that validates against a JWKS would refuse it.
    ({"sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
      "sasl.enabled.mechanisms": "OAUTHBEARER",
      "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": OAUTH_JAAS,
      "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
          "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"},
     "sasl.mechanism.inter.broker.protocol=OAUTHBEARER: listener SASL_PLAINTEXT validates "
     "tokens against a JWKS"),
    ({"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256"},
     "sasl.mechanism.inter.broker.protocol must be included in sasl.enabled.mechanisms when "
     "SASL is used for inter-broker communication (listener SASL_PLAINTEXT enables PLAIN)"),
    ({"listener.name.sasl_plaintext.plain.sasl.jaas.config": None},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config: not set; the broker logs in"),
    ({"listener.name.sasl_plaintext.plain.sasl.jaas.config":
      'x.PlainLoginModule required user_broker="broker-secret";'},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config: no username and no password "
     "option"),
    ({"listener.name.sasl_plaintext.plain.sasl.jaas.config":
      'x.PlainLoginModule required username="broker";'},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config: no password option"),
    ({"listener.name.sasl_plaintext.plain.sasl.jaas.config": 'x.Plain required a="b"'},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config: JAAS config entry not terminated"),
])
def test_a_login_that_cannot_work_is_one_line_naming_the_key(values, message):
    with pytest.raises(ValueError) as caught:
        broker_login(config(**values), "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text and "secret" not in text


def test_each_node_of_a_cluster_logs_in_on_its_sasl_listeners():
    # The controller listener cluster_configs adds is PLAINTEXT: only the inter-broker login.
    nodes = cluster_configs(config(**{"listeners": "SASL_PLAINTEXT://127.0.0.1:0"}), 3)
    for node in nodes:
        logins = cluster_logins(node)
        assert list(logins) == ["SASL_PLAINTEXT"]
        assert logins["SASL_PLAINTEXT"].key == "sasl.mechanism.inter.broker.protocol"
    # A SASL controller listener gets its own login, with sasl.mechanism.controller.protocol.
    base = config(**{"listeners": "SASL_PLAINTEXT://127.0.0.1:0",
                     "listener.security.protocol.map":
                         "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                     "sasl.mechanism.controller.protocol": "PLAIN",
                     "listener.name.controller.plain.sasl.jaas.config": PLAIN_JAAS})
    for node in cluster_configs(base, 3):
        logins = cluster_logins(node)
        assert sorted(logins) == ["CONTROLLER", "SASL_PLAINTEXT"]
        assert logins["CONTROLLER"].key == "sasl.mechanism.controller.protocol"


def test_security_inter_broker_protocol_picks_the_sasl_listener():
    c = config(**{"listeners": "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093",
                  "security.inter.broker.protocol": "SASL_SSL",
                  "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS})
    assert list(cluster_logins(c)) == ["SASL_SSL"]
    c.set("security.inter.broker.protocol", "PLAINTEXT")
    assert cluster_logins(c) == {}


def test_a_refused_login_is_news_once_until_one_succeeds():
    login = BrokerLogin("SASL_PLAINTEXT", "PLAIN", {"username": "b", "password": "p"}, "k")
    assert login.refused() is True
    assert login.refused() is False     # the other channels, the retries: already said
    login.accepted()
    assert login.refused() is True


# ---------------------------------------------------------------------- the exchange

class BrokerSide:
    """A SASL listener's side of one connection: the broker's handlers and mechanisms, every
    request and answer through the wire codec."""

    def __init__(self, c: Config, scram: dict | None = None):
        self.clock = ManualClock()
        mechanisms = listener_mechanisms(
            c, "SASL_PLAINTEXT", lambda user, type_id: (scram or {}).get((user, type_id)),
            self.clock.wall_ms)
        auth = SaslAuthenticator(mechanisms, self.clock, c.connections_max_reauth_ms)
        self.connection = types.SimpleNamespace(authenticator=auth, closing=False,
                                                principal="User:ANONYMOUS")
        self.broker = types.SimpleNamespace(
            config=types.SimpleNamespace(connection_failed_authentication_delay_ms=0))
        self.correlation = 0

    def answer(self, api_key: int, version: int, request):
        self.correlation += 1
        frame = bytes(protocol.encode_request(api_key, version, self.correlation,
                                              "trioka-node-2-fetcher", request))[4:]
        header, pos = protocol.parse_request_header(frame)
        decoded = protocol.decode_request_body(header, frame, pos)
        handler = {ApiKey.SASL_HANDSHAKE: sasl_handshake.handle,
                   ApiKey.SASL_AUTHENTICATE: sasl_authenticate.handle}[api_key]
        ctx = types.SimpleNamespace(connection=self.connection, api_version=version)
        response = trio.run(handler, self.broker, decoded, ctx)
        out = b"".join(bytes(part) for part in protocol.encode_response(
            api_key, version, self.correlation, response))[4:]
        return protocol.decode_response(api_key, version, out)[1]


def run_exchange(login: BrokerLogin, broker: BrokerSide, skew_s: float = 0) -> int:
    """The client's exchange against the broker side: the session lifetime it returned. The
    client's wall clock is the broker side's, `skew_s` behind."""
    steps = exchange(login.client(lambda: broker.clock.wall_ms() / 1000 - skew_s))
    response = None
    try:
        while True:
            api_key, version, request = steps.send(response)
            response = broker.answer(api_key, 2 if version is None else version, request)
    except StopIteration as done:
        return done.value


def test_plain_between_brokers_authenticates_as_the_broker():
    c = config()
    broker = BrokerSide(c)
    assert run_exchange(broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT"), broker) == 0
    assert broker.connection.principal == "User:broker"


def test_a_wrong_password_fails_with_the_brokers_message():
    c = config()
    wrong = config(**{"listener.name.sasl_plaintext.plain.sasl.jaas.config":
                      PLAIN_JAAS.replace('password="broker-secret"', 'password="nope"')})
    broker = BrokerSide(c)
    with pytest.raises(SaslAuthenticationFailed) as caught:
        run_exchange(broker_login(wrong, "SASL_PLAINTEXT", "SASL_PLAINTEXT"), broker)
    assert caught.value.code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert caught.value.message == "Authentication failed: Invalid username or password"
    assert broker.connection.closing and broker.connection.principal == "User:ANONYMOUS"


def test_a_mechanism_the_peer_does_not_enable_is_refused_with_its_list():
    peer = config()
    ours = config(**{"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
                     "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
                     "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS})
    with pytest.raises(SaslAuthenticationFailed) as caught:
        run_exchange(broker_login(ours, "SASL_PLAINTEXT", "SASL_PLAINTEXT"), BrokerSide(peer))
    assert caught.value.code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert str(caught.value) == ("Client SASL mechanism 'SCRAM-SHA-256' not enabled in the "
                                 "server, enabled mechanisms are ['PLAIN']")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_between_brokers_with_the_session_lifetime(mechanism):
    c = config(**{"sasl.enabled.mechanisms": mechanism,
                  "sasl.mechanism.inter.broker.protocol": mechanism,
                  f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config":
                      SCRAM_JAAS, "connections.max.reauth.ms": 60_000})
    scram = BY_NAME[mechanism]
    credentials = {("broker", scram.type_id):
                   ScramCredential.from_password(scram, "scram-secret", 4096)}
    broker = BrokerSide(c, credentials)
    login = broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert run_exchange(login, broker) == 60_000      # KIP-368: the node renews before then
    assert broker.connection.principal == "User:broker"
    # Re-authentication on the same connection: the same exchange again.
    assert run_exchange(login, broker) == 60_000
    # A credential made from another password does not let the broker in.
    other = {("broker", scram.type_id): ScramCredential.from_password(scram, "other", 4096)}
    with pytest.raises(SaslAuthenticationFailed) as caught:
        run_exchange(login, BrokerSide(c, other))
    assert caught.value.code == ErrorCode.SASL_AUTHENTICATION_FAILED


def test_oauthbearer_between_brokers_with_the_tokens_lifetime():
    c = config(**{"sasl.enabled.mechanisms": "OAUTHBEARER",
                  "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
                  "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": OAUTH_JAAS,
                  "connections.max.reauth.ms": 60_000})
    broker = BrokerSide(c)
    login = broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert run_exchange(login, broker) == 60_000     # the token's hour, capped by reauth.ms
    assert broker.connection.principal == "User:broker"
    # A re-authentication an hour and a half later presents a fresh token.
    broker.clock.advance(90 * 60 * 1000)
    assert run_exchange(login, broker) == 60_000
    # A node whose clock is two hours behind issues a token that has already expired.
    with pytest.raises(SaslAuthenticationFailed) as caught:
        run_exchange(login, BrokerSide(c), skew_s=2 * 3600)
    assert caught.value.code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert "invalid_token" in caught.value.message
