"""A broker's OAUTHBEARER login with client credentials (security/sasl/oauthbearer_login.py),
without sockets: the token endpoint request as Kafka sends it, Kafka's checks of the token it
gets, the settings' one-line refusals, and the token kept until 80% of its life, asked for again
with Kafka's retries, on a ManualClock with an inline fetch."""

import base64
import json
import urllib.parse

import pytest

from trioka.clock import ManualClock
from trioka.config import Config
from trioka.security.sasl.broker_login import broker_login
from trioka.security.sasl.oauthbearer_login import (TokenEndpoint, TokenError, login_endpoint,
                                                    validate_access_token)

HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler"
NOW = 1_700_000_000


def jwt(claims: dict) -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


def config(**values) -> Config:
    base = {"listeners": "SASL_PLAINTEXT://127.0.0.1:9092",
            "sasl.enabled.mechanisms": "OAUTHBEARER",
            "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
            "listener.name.sasl_plaintext.oauthbearer.sasl.login.callback.handler.class":
                HANDLER,
            "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
                'x.OAuthBearerLoginModule required clientId="broker" clientSecret="s3cr:t" '
                'scope="kafka";'}
    base.update(values)
    return Config({k: v for k, v in base.items() if v is not None})


def test_the_request_is_kafkas_client_credentials_grant():
    login = broker_login(config(), "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    request = login.endpoint.request()
    assert request.get_method() == "POST" and request.full_url == "https://idp.example/token"
    assert urllib.parse.parse_qs(request.data.decode()) == {
        "grant_type": ["client_credentials"], "scope": ["kafka"]}
    basic = request.headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic).decode() == "broker:s3cr%3At"     # URL-encoded, as Kafka
    assert "s3cr" not in repr(login) and "s3cr" not in repr(login.endpoint)
    assert login.describe() == "sasl.mechanism.inter.broker.protocol=OAUTHBEARER as User:broker"


@pytest.mark.parametrize("claims, message", [
    ({"sub": "broker"}, "The exp claim is required"),
    ({"exp": NOW + 60}, "The sub claim is required"),
    ({"sub": " ", "exp": NOW + 60}, "The sub claim is required"),
    ({"sub": "broker", "exp": NOW - 1}, "The token expired"),
    ({"sub": "broker", "exp": "soon"}, "The exp claim is required"),
])
def test_a_token_kafkas_client_would_not_use_is_refused(claims, message):
    with pytest.raises(TokenError, match=message):
        validate_access_token(jwt(claims), "sub", NOW)


def test_a_token_that_is_not_a_jwt_is_refused():
    with pytest.raises(TokenError, match="three sections"):
        validate_access_token("opaque-token", "sub", NOW)
    with pytest.raises(TokenError, match="does not parse"):
        validate_access_token("a.!!!.c", "sub", NOW)


def test_the_principal_claim_is_sasl_oauthbearer_sub_claim_name():
    token = validate_access_token(jwt({"client_id": "svc", "exp": NOW + 60}), "client_id", NOW)
    assert (token.principal, token.issued_at_s, token.expires_at_s) == ("svc", NOW, NOW + 60)


@pytest.mark.parametrize("values, message", [
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.login.callback.handler.class": "x.Mine"},
     "listener.name.sasl_plaintext.oauthbearer.sasl.login.callback.handler.class: x.Mine is "
     "not served"),
    ({"sasl.oauthbearer.token.endpoint.url": None},
     "sasl.oauthbearer.token.endpoint.url: the OAuth configuration option "
     "sasl.oauthbearer.token.endpoint.url is required by OAuthBearerLoginCallbackHandler"),
    ({"sasl.oauthbearer.token.endpoint.url": "file:///tmp/token"},
     "sasl.oauthbearer.token.endpoint.url: file:///tmp/token: the token endpoint must be an "
     "http or https URL"),
    ({"listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
      'x.OAuthBearerLoginModule required clientId="broker";'},
     "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config: no clientSecret option"),
])
def test_settings_that_cannot_work_are_one_line_naming_the_key(values, message):
    with pytest.raises(ValueError) as caught:
        broker_login(config(**values), "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_without_the_login_handler_the_tokens_are_unsecured():
    c = config(**{"listener.name.sasl_plaintext.oauthbearer.sasl.login.callback.handler.class":
                  None})
    assert login_endpoint(c, "SASL_PLAINTEXT", {}, "k") is None


class Provider:
    """The identity provider, inline: each fetch answers the next of `answers` (a token's
    lifetime in seconds, or an exception) at the clock's time."""

    def __init__(self, clock: ManualClock, answers: list):
        self.clock = clock
        self.answers = list(answers)
        self.fetches = 0

    def fetch(self) -> str:
        self.fetches += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        now = self.clock.wall_ms() // 1000
        return jwt({"sub": "broker", "iat": now, "exp": now + answer})

    async def run_sync(self, fn):
        return fn()


def endpoint(provider: Provider, **settings) -> TokenEndpoint:
    e = TokenEndpoint("https://idp.example/token", "broker", "secret", None, **settings)
    e.fetch = provider.fetch
    return e


async def test_a_token_is_kept_until_80_percent_of_its_life():
    clock = ManualClock()
    provider = Provider(clock, [100, 100])
    e = endpoint(provider)
    first = await e.current(clock, provider.run_sync)
    clock.advance(79_000)
    assert await e.current(clock, provider.run_sync) is first and provider.fetches == 1
    clock.advance(1_000)         # 80 s of 100: replaced
    second = await e.current(clock, provider.run_sync)
    assert second is not first and provider.fetches == 2


async def test_failed_requests_are_retried_with_kafkas_backoff_then_given_up(autojump_clock):
    # The clock the retries wait on is trio's (autojump): each wait passes at once.
    import trio

    class TrioClock(ManualClock):
        def monotonic(self):
            return trio.current_time()

        async def sleep(self, seconds):
            await trio.sleep(seconds)

    clock = TrioClock()
    provider = Provider(clock, [OSError("refused"), OSError("refused"), 600])
    e = endpoint(provider, backoff_ms=100, backoff_max_ms=10_000)
    start = trio.current_time()
    token = await e.current(clock, provider.run_sync)
    assert token.principal == "broker" and provider.fetches == 3
    assert trio.current_time() - start == pytest.approx(0.3)       # 100 ms, then 200 ms
    # An endpoint that keeps failing: given up once backoff_max_ms have passed, with its error.
    provider = Provider(clock, [OSError("down")] * 100)
    e = endpoint(provider, backoff_ms=100, backoff_max_ms=1_000)
    start = trio.current_time()
    with pytest.raises(OSError, match="down"):
        await e.current(clock, provider.run_sync)
    assert trio.current_time() - start == pytest.approx(1.0)
    assert provider.fetches == 5      # waits of 100, 200, 400 and the 300 left of 1,000 ms


# -- an https endpoint's TLS settings: the JAAS entry's ssl.* options (JaasOptionsUtils) ------

def test_an_https_endpoint_trusts_the_jaas_entrys_truststore(tmp_path):
    import ssl

    from trioka.cli.certs import write
    from trioka.security.tls import https_context
    paths = write(str(tmp_path / "certs"))
    context = https_context({"ssl.truststore.location": paths["ca.pem"],
                             "ssl.truststore.type": "PEM"}, "k")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    names = [dict(x[0] for x in c["subject"])["commonName"] for c in context.get_ca_certs()]
    assert names == ["trioka development CA"]
    # Kafka's defaults otherwise: the system's CAs, host names checked unless the algorithm is
    # empty.
    assert not https_context({"ssl.endpoint.identification.algorithm": ""}, "k").check_hostname


def test_a_bad_tls_option_is_one_line_naming_the_entry_and_option(tmp_path):
    c = config(**{"sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
                  "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
                      'x.OAuthBearerLoginModule required clientId="broker" clientSecret="s" '
                      f'ssl.truststore.location="{tmp_path}/none.pem" '
                      'ssl.truststore.type="PEM";'})
    with pytest.raises(ValueError) as caught:
        broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert str(caught.value).startswith(
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config: option "
        f"ssl.truststore.location: cannot read {tmp_path}/none.pem"), str(caught.value)
    # http needs no TLS settings, and none are read.
    c.set("sasl.oauthbearer.token.endpoint.url", "http://idp.example/token")
    assert broker_login(c, "SASL_PLAINTEXT", "SASL_PLAINTEXT").endpoint.context is None
