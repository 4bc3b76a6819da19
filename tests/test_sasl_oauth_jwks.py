"""OAUTHBEARER with Kafka's OAuthBearerValidatorCallbackHandler: signed JWTs checked against a
JWKS (security/sasl/oauthbearer_jwks.py). Keys are made with cryptography, tokens signed with
PyJWT; the refresh schedule runs on trio's MockClock."""

import json

import pytest
import trio

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402

from trioka.clock import Clock, ManualClock  # noqa: E402
from trioka.config import Config  # noqa: E402
from trioka.security.sasl import SaslAuthenticationError  # noqa: E402
from trioka.security.sasl.authenticator import listener_mechanisms  # noqa: E402
from trioka.security.sasl.oauthbearer import InvalidToken, OAuthBearerServer  # noqa: E402
from trioka.security.sasl.oauthbearer_jwks import (  # noqa: E402
    MISSING_KEY_ID_CACHE_IN_FLIGHT_MS, JwksCache, JwksValidator, listener_validator, parse_jwks)

NOW_MS = 1_700_000_000_000
NOW = NOW_MS // 1000
VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private_key, kid: str, **extra) -> dict:
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    data = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**data, "kid": kid, "use": "sig", **extra}


def key_set(*keys: dict) -> dict:
    return {"keys": list(keys)}


JWKS = key_set(jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1"))


def claims(**over) -> dict:
    base = {"sub": "alice", "iat": NOW - 10, "exp": NOW + 600, "iss": "https://issuer",
            "scope": "produce"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict, key=RSA_KEY, alg="RS256", kid="rsa-1") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def validator(jwks=JWKS, clock=None, **options) -> JwksValidator:
    cache = JwksCache("file:jwks.json", lambda: None, 3600000, 100, 10000,
                      clock or ManualClock(), parse_jwks(json.dumps(jwks), jwt))
    settings = {"audience": [], "issuer": None}
    settings.update(options)
    return JwksValidator(jwt, cache, **settings)


def message(token: str) -> bytes:
    return f"n,,\x01auth=Bearer {token}\x01\x01".encode()


# --- tokens that pass ---

def test_an_rsa_signed_token_gives_principal_expiry_and_scope():
    token = validator().validate(sign(claims()), NOW_MS)
    assert token.principal_name == "alice"
    assert token.lifetime_ms == (NOW + 600) * 1000
    assert token.scope == ["produce"]


def test_an_ec_signed_token_is_accepted():
    token = validator().validate(sign(claims(sub="bob"), EC_KEY, "ES256", "ec-1"), NOW_MS)
    assert token.principal_name == "bob"


def test_a_token_without_kid_is_verified_by_the_key_that_fits():
    token = validator().validate(sign(claims(), EC_KEY, "ES256", kid=None), NOW_MS)
    assert token.principal_name == "alice"


def test_scope_as_kafka_reads_it_a_string_is_one_scope_a_list_is_many():
    v = validator()
    assert v.validate(sign(claims(scope="a b")), NOW_MS).scope == ["a b"]
    assert v.validate(sign(claims(scope=["a", "b"])), NOW_MS).scope == ["a", "b"]
    assert v.validate(sign(claims(scope=None)), NOW_MS).scope == []
    custom = validator(scope_claim="scp", sub_claim="client_id")
    token = custom.validate(sign(claims(scp=["w"], client_id="svc", sub=None)), NOW_MS)
    assert (token.principal_name, token.scope) == ("svc", ["w"])


def test_the_clock_skew_lets_a_just_expired_token_in():
    token = sign(claims(exp=NOW - 20))
    assert validator(clock_skew_s=30).validate(token, NOW_MS).principal_name == "alice"
    with pytest.raises(InvalidToken):
        validator(clock_skew_s=0).validate(token, NOW_MS)


def test_expected_audience_and_issuer_pass_when_they_match():
    v = validator(audience=["kafka", "other"], issuer="https://issuer")
    assert v.validate(sign(claims(aud=["kafka"])), NOW_MS).principal_name == "alice"


# --- tokens that fail ---

@pytest.mark.parametrize("case", [
    "expired", "not yet valid", "no exp", "no iat", "exp not a number", "wrong audience",
    "audience not expected", "no audience", "wrong issuer", "no issuer", "missing sub",
    "blank sub", "bad scope", "bad signature", "alg none", "hmac with rsa key",
    "unknown alg", "malformed",
])
def test_invalid_tokens_are_refused(case):
    v = validator(audience=["kafka"], issuer="https://issuer")
    good = claims(aud="kafka")
    tokens = {
        "expired": sign({**good, "exp": NOW - 31}),
        "not yet valid": sign({**good, "nbf": NOW + 60}),
        "no exp": sign(claims(aud="kafka", exp=None)),
        "no iat": sign(claims(aud="kafka", iat=None)),
        "exp not a number": sign({**good, "exp": "soon"}),
        "wrong audience": sign({**good, "aud": "elsewhere"}),
        "audience not expected": None,
        "no audience": sign(claims()),
        "wrong issuer": sign({**good, "iss": "https://evil"}),
        "no issuer": sign(claims(aud="kafka", iss=None)),
        "missing sub": sign(claims(aud="kafka", sub=None)),
        "blank sub": sign({**good, "sub": "  "}),
        "bad scope": sign({**good, "scope": ["ok", 7]}),
        "bad signature": sign(good, OTHER_RSA_KEY),
        "alg none": jwt.encode(good, None, algorithm="none", headers={"kid": "rsa-1"}),
        "hmac with rsa key": jwt.encode(good, "a-shared-secret-of-thirty-two-bytes",
                                        algorithm="HS256", headers={"kid": "rsa-1"}),
        "unknown alg": ".".join([jwt.utils.base64url_encode(
            b'{"alg":"XX256","kid":"rsa-1"}').decode(), *sign(good).split(".")[1:]]),
        "malformed": "not-a-jwt",
    }
    if case == "audience not expected":
        # No expected audience configured: a token carrying `aud` is refused (jose4j's rule).
        with pytest.raises(InvalidToken):
            validator().validate(sign(good), NOW_MS)
        return
    with pytest.raises(InvalidToken) as refused:
        v.validate(tokens[case], NOW_MS)
    assert refused.value.status == "invalid_token"


def test_a_key_for_encryption_or_another_alg_is_not_used():
    v = validator(key_set(jwk(RSA_KEY, "rsa-1", use="enc"), jwk(EC_KEY, "ec-1", alg="ES384")))
    with pytest.raises(InvalidToken):
        v.validate(sign(claims()), NOW_MS)
    with pytest.raises(InvalidToken):
        v.validate(sign(claims(), EC_KEY, "ES256", "ec-1"), NOW_MS)


def test_an_unknown_kid_fails_and_asks_for_one_refresh_a_minute():
    clock = ManualClock(monotonic=100.0)
    v = validator(clock=clock)
    token = sign(claims(), kid="rotated")
    with pytest.raises(InvalidToken):
        v.validate(token, NOW_MS)
    assert v.cache.maybe_expedite_refresh("rotated") is False     # asked just now
    clock.advance(MISSING_KEY_ID_CACHE_IN_FLIGHT_MS)
    assert v.cache.maybe_expedite_refresh("rotated") is True
    assert v.cache.maybe_expedite_refresh("x" * 1001) is False   # too long to remember


def test_a_file_jwks_is_never_refreshed(tmp_path):
    v = listener_validator(sasl_config(tmp_path), "SASL_PLAINTEXT", ManualClock())
    assert not v.cache.refreshing
    with pytest.raises(InvalidToken):
        v.validate(sign(claims(), kid="rotated"), NOW_MS)
    assert v.cache.maybe_expedite_refresh("rotated") is False


def test_the_server_answers_invalid_token_then_fails_as_kafka_does():
    v = validator()
    server = OAuthBearerServer({}, lambda: NOW_MS, v.validate)
    challenge = server.evaluate(message(sign(claims(exp=NOW - 3600))))
    assert challenge == b'{"status":"invalid_token"}'
    with pytest.raises(SaslAuthenticationError) as failure:
        server.evaluate(b"\x01")
    assert str(failure.value) == '{"status":"invalid_token"}'
    ok = OAuthBearerServer({}, lambda: NOW_MS, v.validate)
    assert ok.evaluate(message(sign(claims()))) == b""
    assert ok.complete and ok.principal_name == "alice"
    assert ok.lifetime_ms == (NOW + 600) * 1000


# --- configuration ---

def sasl_config(tmp_path, keys: dict | None = None) -> Config:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(JWKS))
    settings = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0",
                "sasl.enabled.mechanisms": "OAUTHBEARER",
                "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
                    VALIDATOR,
                "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url":
                    path.as_uri()}
    settings.update(keys or {})
    return Config(settings)


def test_a_listener_with_a_file_jwks_validates_signed_tokens(tmp_path):
    config = sasl_config(tmp_path, {"sasl.oauthbearer.expected.audience": "kafka,other"})
    mechanisms = listener_mechanisms(config, "SASL_PLAINTEXT", None, lambda: NOW_MS)
    assert mechanisms.background == []         # a file is read once, at startup
    server = mechanisms.server("OAUTHBEARER")
    assert server.evaluate(message(sign(claims(aud="kafka")))) == b""
    assert server.principal_name == "alice"
    unsecured = jwt.encode(claims(aud="kafka"), None, algorithm="none")
    assert mechanisms.server("OAUTHBEARER").evaluate(message(unsecured)) == \
        b'{"status":"invalid_token"}'


def test_without_the_handler_class_oauthbearer_stays_unsecured(tmp_path):
    config = Config({"sasl.enabled.mechanisms": "OAUTHBEARER"})
    assert listener_validator(config, "SASL_PLAINTEXT", Clock()) is None


def test_an_http_jwks_is_fetched_by_a_background_task(tmp_path):
    config = sasl_config(tmp_path, {
        "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url":
            "http://127.0.0.1:1/jwks"})
    mechanisms = listener_mechanisms(config, "SASL_PLAINTEXT", None, lambda: NOW_MS)
    assert len(mechanisms.background) == 1


@pytest.mark.parametrize("key, value, named", [
    ("listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url", "",
     "sasl.oauthbearer.jwks.endpoint.url"),
    ("listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url",
     "ftp://host/jwks", "sasl.oauthbearer.jwks.endpoint.url"),
    ("listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url",
     "file:/nonexistent/jwks.json", "sasl.oauthbearer.jwks.endpoint.url"),
    ("listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class",
     "com.example.Mine", "sasl.server.callback.handler.class"),
    ("sasl.oauthbearer.jwks.endpoint.refresh.ms", "0", "sasl.oauthbearer.jwks.endpoint.refresh.ms"),
    ("sasl.oauthbearer.sub.claim.name", " ", "sasl.oauthbearer.sub.claim.name"),
])
def test_a_bad_setting_is_one_line_naming_the_key(tmp_path, key, value, named):
    config = sasl_config(tmp_path, {key: value})
    with pytest.raises(ValueError) as error:
        listener_mechanisms(config, "SASL_PLAINTEXT", None, lambda: NOW_MS)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_jwks_file_that_is_not_a_key_set_is_refused(tmp_path):
    config = sasl_config(tmp_path)
    (tmp_path / "jwks.json").write_text('{"no": "keys"}')
    with pytest.raises(ValueError, match="sasl.oauthbearer.jwks.endpoint.url.*keys"):
        listener_mechanisms(config, "SASL_PLAINTEXT", None, lambda: NOW_MS)


# --- the refresh schedule (RefreshingHttpsJwks), on trio's MockClock ---

async def inline(fn, **_):
    return fn()


class Endpoint:
    """A JWKS endpoint whose answers the test scripts: a key set, or an error."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[float] = []

    def fetch(self):
        self.calls.append(trio.current_time())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return parse_jwks(json.dumps(answer), jwt)


async def test_the_set_is_fetched_at_start_then_every_refresh_ms(autojump_clock):
    endpoint = Endpoint(key_set(jwk(RSA_KEY, "rsa-1")), JWKS)
    cache = JwksCache("http://jwks", endpoint.fetch, 60000, 100, 10000, Clock(),
                      run_sync=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert [k.kid for k in cache.keys] == ["rsa-1"]
        await trio.sleep(61)
        assert [k.kid for k in cache.keys] == ["rsa-1", "ec-1"]
        assert endpoint.calls == [0, 60]
        nursery.cancel_scope.cancel()


async def test_an_unknown_kid_refreshes_at_once_and_the_rotated_key_then_verifies(
        autojump_clock):
    endpoint = Endpoint(JWKS, key_set(jwk(OTHER_RSA_KEY, "rsa-2")))
    cache = JwksCache("http://jwks", endpoint.fetch, 3600000, 100, 10000, Clock(),
                      run_sync=inline)
    v = JwksValidator(jwt, cache, audience=[], issuer=None)
    token = sign(claims(), OTHER_RSA_KEY, kid="rsa-2")
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        with pytest.raises(InvalidToken):
            v.validate(token, NOW_MS)
        await trio.sleep(1)
        assert len(endpoint.calls) == 2             # the expedited refresh, not an hour later
        assert v.validate(token, NOW_MS).principal_name == "alice"
        nursery.cancel_scope.cancel()


async def test_a_failed_fetch_is_retried_with_backoff(autojump_clock):
    endpoint = Endpoint(OSError("refused"), OSError("refused"), JWKS)
    cache = JwksCache("http://jwks", endpoint.fetch, 3600000, 100, 10000, Clock(),
                      run_sync=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert endpoint.calls == pytest.approx([0, 0.1, 0.3])   # 100 ms, then 200 ms
        assert len(cache.keys) == 2
        nursery.cancel_scope.cancel()


async def test_a_refresh_that_fails_keeps_the_keys_held(autojump_clock):
    endpoint = Endpoint(JWKS, OSError("down"))
    cache = JwksCache("http://jwks", endpoint.fetch, 60000, 100, 1000, Clock(),
                      run_sync=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await trio.sleep(120)
        assert len(cache.keys) == 2 and cache.refreshes == 1
        nursery.cancel_scope.cancel()


async def test_a_first_fetch_that_keeps_failing_stops_the_start(autojump_clock):
    cache = JwksCache("http://jwks", Endpoint(OSError("refused")).fetch, 3600000, 100, 1000,
                      Clock(), run_sync=inline)
    with pytest.raises(OSError, match="sasl.oauthbearer.jwks.endpoint.url.*refused"):
        await cache.run()
    # attempts at 0, 100, 300 and 700 ms, a last one when the 1000 ms are up, then it gives up
    assert trio.current_time() == pytest.approx(1.0)


def test_without_pyjwt_the_start_stops_with_one_line_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "jwt", None)     # as if not installed
    with pytest.raises(ValueError) as error:
        listener_mechanisms(sasl_config(tmp_path), "SASL_PLAINTEXT", None, lambda: NOW_MS)
    assert str(error.value) == (
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class: "
        "OAuthBearerValidatorCallbackHandler needs PyJWT with cryptography: "
        "pip install 'trioka[oauth]'")


@pytest.mark.parametrize("token", [
    sign(claims(exp=NOW - 3600)), sign(claims(), OTHER_RSA_KEY), sign(claims(), kid="gone"),
    sign(claims(iss="https://evil")), sign(claims(sub=None)),
], ids=["expired", "other key", "unknown kid", "wrong issuer", "no sub"])
def test_every_failure_answers_the_same_challenge(token):
    server = OAuthBearerServer({}, lambda: NOW_MS, validator(issuer="https://issuer").validate)
    assert server.evaluate(message(token)) == b'{"status":"invalid_token"}'
