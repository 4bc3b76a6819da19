"""The per-connection SASL state machine (security/sasl/authenticator.py): what each state
admits, the handshake and token outcomes, KIP-368 session lifetimes and re-authentication,
driven by a hand-moved clock."""

import pytest

from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError
from trioka.security.sasl.authenticator import (ADMITTED, AUTHENTICATE, AUTHENTICATE_RAW,
                                                COMPLETE, FAILED, HANDSHAKE_OR_VERSIONS_REQUEST,
                                                HANDSHAKE_REQUEST, REAUTH_BAD_MECHANISM,
                                                TRANSITIONS, SaslAuthenticator, SaslMechanisms,
                                                listener_mechanisms, raw_token_frame)
from trioka.security.sasl.plain import PlainServer
from trioka.config import Config
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode


class HandClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return int(self.now * 1000)


class Expiring:
    """A mechanism whose credential expires at a given wall time (as an OAUTHBEARER token)."""

    def __init__(self, name: str, expires_ms: int):
        self.complete = False
        self.principal_name = name
        self.lifetime_ms = expires_ms

    def evaluate(self, token: bytes) -> bytes:
        self.complete = True
        return b""


def mechanisms(users=None, expiring=None):
    users = users or {"alice": "pw", "bob": "pw"}
    factories = {"PLAIN": lambda: PlainServer(users)}
    if expiring is not None:
        factories["OAUTHBEARER"] = lambda: Expiring(*expiring())
    return SaslMechanisms(list(factories), factories)


def test_the_table_names_only_known_states():
    states = set(ADMITTED)
    assert {s for s, _ in TRANSITIONS} <= states
    assert set(TRANSITIONS.values()) <= states


def test_before_authentication_only_versions_and_sasl_requests_in_turn():
    auth = SaslAuthenticator(mechanisms(), HandClock())
    assert auth.admits(ApiKey.API_VERSIONS) and auth.admits(ApiKey.SASL_HANDSHAKE)
    assert not auth.admits(ApiKey.PRODUCE) and not auth.admits(ApiKey.SASL_AUTHENTICATE)
    assert auth.refusal(ApiKey.PRODUCE) == \
        "Unexpected Kafka request of type PRODUCE during SASL handshake."
    auth.answered_api_versions()
    assert auth.state == HANDSHAKE_REQUEST and not auth.admits(ApiKey.API_VERSIONS)
    assert auth.handshake("PLAIN", 1) == (ErrorCode.NONE, ["PLAIN"])
    assert auth.state == AUTHENTICATE
    assert auth.admits(ApiKey.SASL_AUTHENTICATE) and not auth.admits(ApiKey.METADATA)
    assert auth.refusal(ApiKey.METADATA) == \
        "Unexpected Kafka request of type METADATA during SASL authentication."
    assert auth.authenticate(b"\0alice\0pw") == (b"", 0)
    assert auth.state == COMPLETE and auth.principal == "User:alice"
    assert auth.admits(ApiKey.PRODUCE) and auth.admits(ApiKey.FETCH)


def test_a_disabled_mechanism_fails_the_connection():
    auth = SaslAuthenticator(mechanisms(), HandClock())
    assert auth.handshake("SCRAM-SHA-256", 1) == (ErrorCode.UNSUPPORTED_SASL_MECHANISM,
                                                  ["PLAIN"])
    assert auth.state == FAILED and not auth.admits(ApiKey.SASL_AUTHENTICATE)


def test_a_failed_token_fails_the_connection():
    auth = SaslAuthenticator(mechanisms(), HandClock())
    auth.handshake("PLAIN", 1)
    with pytest.raises(SaslAuthenticationError):
        auth.authenticate(b"\0alice\0wrong")
    assert auth.state == FAILED and auth.principal == "User:ANONYMOUS"


def test_handshake_v0_uses_raw_tokens():
    auth = SaslAuthenticator(mechanisms(), HandClock())
    auth.handshake("PLAIN", 0)
    assert auth.state == AUTHENTICATE_RAW and auth.expects_raw_token
    assert raw_token_frame(auth, b"\0alice\0pw") == [b"\0\0\0\0"]
    assert auth.authenticated


def test_sasl_requests_after_authentication_without_a_session_lifetime():
    auth = SaslAuthenticator(mechanisms(), HandClock())
    auth.handshake("PLAIN", 1)
    auth.authenticate(b"\0alice\0pw")
    with pytest.raises(IllegalSaslStateError, match="after successful authentication"):
        auth.authenticate(b"\0alice\0pw")
    assert auth.handshake("PLAIN", 1)[0] == ErrorCode.ILLEGAL_SASL_STATE
    assert auth.state == COMPLETE


def test_max_reauth_sets_the_session_lifetime_and_expiry_closes():
    clock = HandClock()
    auth = SaslAuthenticator(mechanisms(), clock, max_reauth_ms=5000)
    auth.handshake("PLAIN", 1)
    assert auth.authenticate(b"\0alice\0pw") == (b"", 5000)
    clock.now += 4.9
    assert auth.admits(ApiKey.PRODUCE)
    clock.now += 0.2
    assert not auth.admits(ApiKey.PRODUCE)
    assert auth.refusal(ApiKey.PRODUCE).startswith("the authentication session expired")
    # Re-authentication is still let in, and renews the session.
    assert auth.admits(ApiKey.SASL_HANDSHAKE)
    assert auth.handshake("PLAIN", 1) == (ErrorCode.NONE, ["PLAIN"])
    assert auth.state == AUTHENTICATE
    assert auth.authenticate(b"\0alice\0pw") == (b"", 5000)
    assert auth.admits(ApiKey.PRODUCE)


def test_reauthentication_keeps_the_mechanism_and_the_principal():
    clock = HandClock()
    auth = SaslAuthenticator(mechanisms(expiring=lambda: ("alice", 10**12)), clock,
                             max_reauth_ms=1000)
    auth.handshake("PLAIN", 1)
    auth.authenticate(b"\0alice\0pw")
    auth.handshake("OAUTHBEARER", 1)
    assert auth.state == REAUTH_BAD_MECHANISM
    with pytest.raises(SaslAuthenticationError, match="not supported for re-authentication"):
        auth.authenticate(b"anything")
    assert auth.state == FAILED
    other = SaslAuthenticator(mechanisms(), clock, max_reauth_ms=1000)
    other.handshake("PLAIN", 1)
    other.authenticate(b"\0alice\0pw")
    other.handshake("PLAIN", 1)
    with pytest.raises(SaslAuthenticationError, match="Cannot change principals"):
        other.authenticate(b"\0bob\0pw")


def test_a_credential_expiry_bounds_the_session():
    clock = HandClock()
    expires = clock.wall_ms() + 3000
    auth = SaslAuthenticator(mechanisms(expiring=lambda: ("alice", expires)), clock)
    auth.handshake("OAUTHBEARER", 1)
    assert auth.authenticate(b"token") == (b"", 3000)
    capped = SaslAuthenticator(mechanisms(expiring=lambda: ("alice", expires)), clock,
                               max_reauth_ms=1000)
    capped.handshake("OAUTHBEARER", 1)
    assert capped.authenticate(b"token") == (b"", 1000)


def test_listener_mechanisms_from_config():
    config = Config({"sasl.enabled.mechanisms": "plain,SCRAM-SHA-512",
                     "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                         'x.PlainLoginModule required user_alice="pw";'})
    built = listener_mechanisms(config, "SASL_PLAINTEXT", lambda user, t: None, lambda: 0)
    assert built.enabled == ["PLAIN", "SCRAM-SHA-512"]
    assert built.server("PLAIN").evaluate(b"\0alice\0pw") == b""


@pytest.mark.parametrize("values, message", [
    ({}, "SASL mechanism GSSAPI is not served"),
    ({"sasl.enabled.mechanisms": "PLAIN"}, "enables PLAIN but has no JAAS configuration"),
    ({"sasl.enabled.mechanisms": "PLAIN",
      "listener.name.sasl_plaintext.plain.sasl.jaas.config": "x required"},
     "listener.name.sasl_plaintext.plain.sasl.jaas.config: JAAS config entry not terminated"),
    ({"sasl.enabled.mechanisms": " "}, "enables no mechanism"),
])
def test_listener_mechanisms_config_mistakes(values, message):
    with pytest.raises(ValueError, match=message):
        listener_mechanisms(Config(values), "SASL_PLAINTEXT", lambda user, t: None, lambda: 0)


def test_max_reauth_is_read_per_listener_and_mechanism():
    config = Config({"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
                     "connections.max.reauth.ms": "1000",
                     "listener.name.sasl_plaintext.plain.connections.max.reauth.ms": "7000",
                     "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                         'x.PlainLoginModule required user_alice="pw";'})
    built = listener_mechanisms(config, "SASL_PLAINTEXT", lambda user, t: None, lambda: 0)
    assert built.max_reauth_ms == {"PLAIN": 7000, "SCRAM-SHA-256": 1000}
    auth = SaslAuthenticator(built, HandClock())
    auth.handshake("PLAIN", 1)
    assert auth.authenticate(b"\0alice\0pw") == (b"", 7000)
