"""OAUTHBEARER with Kafka's unsecured-JWT validator (security/sasl/oauthbearer.py)."""

import base64
import json

import pytest

from trioka.security.sasl import SaslAuthenticationError
from trioka.security.sasl.oauthbearer import (InvalidToken, OAuthBearerServer,
                                              parse_client_initial_response,
                                              validate_unsecured_jws)

NOW_MS = 1_700_000_000_000


def jws(claims: dict, header=None, signature: str = "") -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part(header or {'alg': 'none'})}.{part(claims)}.{signature}"


def message(token: str, authzid: str = "") -> bytes:
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return f"{gs2}\x01host=broker\x01auth=Bearer {token}\x01\x01".encode()


def test_a_valid_token():
    token = validate_unsecured_jws(
        jws({"sub": "alice", "iat": NOW_MS // 1000 - 10, "exp": NOW_MS // 1000 + 60,
             "scope": "a b"}), {}, NOW_MS)
    assert token.principal_name == "alice"
    assert token.lifetime_ms == NOW_MS + 60_000
    assert token.scope == ["a", "b"]


@pytest.mark.parametrize("claims, options, text", [
    ({"exp": NOW_MS / 1000 + 60}, {}, "Required claim missing or not a string: sub"),
    ({"sub": "a"}, {}, "Required claim missing or not a number: exp"),
    ({"sub": "a", "exp": NOW_MS / 1000 - 1}, {}, "on or after the Expiration Time"),
    ({"sub": "a", "exp": NOW_MS / 1000 + 60, "iat": NOW_MS / 1000 + 30}, {},
     "is after the current time"),
    ({"user": "a", "exp": NOW_MS / 1000 + 60}, {"unsecuredValidatorPrincipalClaimName": "user",
                                               "unsecuredValidatorRequiredScope": "write"},
     "missing a required scope"),
])
def test_invalid_tokens(claims, options, text):
    with pytest.raises(InvalidToken, match=text):
        validate_unsecured_jws(jws(claims), options, NOW_MS)


def test_clock_skew_allows_a_just_expired_token():
    token = jws({"sub": "a", "exp": NOW_MS / 1000 - 1})
    assert validate_unsecured_jws(
        token, {"unsecuredValidatorAllowableClockSkewMs": "5000"}, NOW_MS).principal_name == "a"


def test_signed_or_non_none_tokens_are_refused():
    with pytest.raises(InvalidToken, match="empty signature"):
        validate_unsecured_jws(jws({"sub": "a", "exp": 2e9}, signature="abc"), {}, NOW_MS)
    with pytest.raises(InvalidToken, match="alg none"):
        validate_unsecured_jws(jws({"sub": "a", "exp": 2e9}, header={"alg": "HS256"}), {},
                               NOW_MS)


def test_the_client_message_is_parsed():
    assert parse_client_initial_response(message("abc.def.", "alice")) == \
        ("abc.def.", "alice", {"host": "broker"})
    for bad in (b"n,,auth=Bearer x", b"n,,\x01auth=Basic x\x01\x01", b"x,,\x01\x01"):
        with pytest.raises(SaslAuthenticationError):
            parse_client_initial_response(bad)


def test_the_server_accepts_and_sets_the_lifetime():
    server = OAuthBearerServer({}, lambda: NOW_MS)
    assert server.evaluate(message(jws({"sub": "alice", "exp": NOW_MS / 1000 + 60}))) == b""
    assert server.complete and server.principal_name == "alice"
    assert server.lifetime_ms == NOW_MS + 60_000


def test_an_expired_token_gets_the_json_error_then_fails():
    server = OAuthBearerServer({}, lambda: NOW_MS)
    challenge = server.evaluate(message(jws({"sub": "alice", "exp": NOW_MS / 1000 - 60})))
    assert challenge == b'{"status":"invalid_token"}'
    assert not server.complete
    with pytest.raises(SaslAuthenticationError) as failure:
        server.evaluate(b"\x01")
    assert str(failure.value) == '{"status":"invalid_token"}'


def test_insufficient_scope_names_the_required_scope():
    server = OAuthBearerServer({"unsecuredValidatorRequiredScope": "write"}, lambda: NOW_MS)
    challenge = server.evaluate(message(jws({"sub": "a", "exp": NOW_MS / 1000 + 60})))
    assert challenge == b'{"status":"insufficient_scope","scope":"write"}'


def test_an_authorization_id_other_than_the_principal_fails():
    server = OAuthBearerServer({}, lambda: NOW_MS)
    with pytest.raises(SaslAuthenticationError, match="authorization id"):
        server.evaluate(message(jws({"sub": "alice", "exp": NOW_MS / 1000 + 60}), "bob"))
