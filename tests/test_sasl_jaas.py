"""Kafka's JAAS configuration text (security/sasl/jaas.py) and the PLAIN server (plain.py)."""

import pytest

from trioka.security.sasl import SaslAuthenticationError
from trioka.security.sasl.jaas import parse_jaas_config
from trioka.security.sasl.plain import INVALID, PlainServer, users_from_jaas


def test_a_plain_login_module_with_users():
    entry = parse_jaas_config(
        'org.apache.kafka.common.security.plain.PlainLoginModule required\n'
        '  username="admin" password="admin-secret"\n'
        '  user_admin="admin-secret" user_alice="alice \\"quoted\\" secret";')
    assert entry.login_module == "org.apache.kafka.common.security.plain.PlainLoginModule"
    assert entry.flag == "required"
    assert users_from_jaas(entry.options) == {"admin": "admin-secret",
                                              "alice": 'alice "quoted" secret'}


def test_unquoted_values_and_no_options():
    assert parse_jaas_config("a.B optional debug=true;").options == {"debug": "true"}
    assert parse_jaas_config("a.ScramLoginModule required;").options == {}


@pytest.mark.parametrize("text, message", [
    ("a.B required user_x=\"y\"", "not terminated by semi-colon"),
    ("a.B mandatory;", "Invalid control flag: mandatory"),
    ("a.B required x;", "expected '=' after option x"),
    ("a.B required x=\"open;", "unterminated quoted value"),
    ("a.B required; c.D required;", "2 login modules"),
    ("", "not terminated by semi-colon"),
])
def test_malformed_entries(text, message):
    with pytest.raises(ValueError, match=message):
        parse_jaas_config(text)


def test_plain_authenticates_a_user():
    server = PlainServer({"alice": "alice-secret"})
    assert server.evaluate(b"\0alice\0alice-secret") == b""
    assert server.complete and server.principal_name == "alice"


def test_plain_wrong_password_and_unknown_user_fail_alike():
    for token in (b"\0alice\0wrong", b"\0nobody\0alice-secret"):
        with pytest.raises(SaslAuthenticationError) as failure:
            PlainServer({"alice": "alice-secret"}).evaluate(token)
        assert str(failure.value) == INVALID


@pytest.mark.parametrize("token, message", [
    (b"alice\0alice-secret", "expected 3 tokens, got 2"),
    (b"\0\0pw", "username not specified"),
    (b"\0alice\0", "password not specified"),
    (b"bob\0alice\0alice-secret", "authorization id that is different"),
])
def test_plain_malformed_tokens(token, message):
    with pytest.raises(SaslAuthenticationError, match=message):
        PlainServer({"alice": "alice-secret"}).evaluate(token)
