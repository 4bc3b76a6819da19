"""OAUTHBEARER's login side with an identity provider: Kafka's OAuthBearerLoginCallbackHandler
(KIP-768), the OAuth 2 client credentials grant, as a broker uses it to log in to the other nodes
of its cluster when their listeners validate tokens against a JWKS.

Settings, as Kafka reads them for the listener the broker logs in to
(`listener.name.<l>.oauthbearer.<key>`, then `listener.name.<l>.<key>`, then `<key>`):

  sasl.login.callback.handler.class   OAuthBearerLoginCallbackHandler turns this on (without it
                                      the broker makes unsecured tokens, security/sasl/
                                      oauthbearer.py)
  sasl.oauthbearer.token.endpoint.url the identity provider's token endpoint, http or https
  sasl.login.connect.timeout.ms       10000 here (Kafka leaves it to the JVM)
  sasl.login.read.timeout.ms          10000 here (likewise)
  sasl.login.retry.backoff.ms         100: the first wait after a failed request, doubling ...
  sasl.login.retry.backoff.max.ms     10000: ... until this much time has passed
  sasl.oauthbearer.sub.claim.name     sub: the claim naming the principal

A token is replaced once 80% of its life (iat to exp) has passed, Kafka's default
`sasl.login.refresh.window.factor`; that key and its jitter, buffer and minimum period are not
read.

and the JAAS options of the OAUTHBEARER login module: `clientId` and `clientSecret` (required),
`scope` (optional), and for an https endpoint the `ssl.*` TLS settings (`ssl.truststore.location`,
`ssl.truststore.type`, `ssl.endpoint.identification.algorithm`, a keystore for a client
certificate), as Kafka's JaasOptionsUtils reads them; without them the system's CAs are trusted. The request is Kafka's: POST `grant_type=client_credentials` (and `scope`)
as a form, with HTTP Basic authorization of the URL-encoded id and secret; the answer's
`access_token` is the token. As Kafka's LoginAccessTokenValidator does, the token is checked
before it is used (three base64url parts, an `exp`, a non-empty principal claim, not yet
expired); its signature is the listener's to check.

The request runs in a worker thread; while a node logs in it waits for the token (bounded by the
retry settings). A token is kept and reused for every login until its refresh point.
"""

import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request

import trio

LOGIN_HANDLER_KEY = "sasl.login.callback.handler.class"
LOGIN_HANDLER_CLASSES = frozenset({
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
    # Kafka 3.1-3.9's name, kept by Kafka as a deprecated alias.
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerLoginCallbackHandler",
})
TOKEN_ENDPOINT_KEY = "sasl.oauthbearer.token.endpoint.url"

# A token is replaced once this share of its life has passed: Kafka's default
# sasl.login.refresh.window.factor.
REFRESH_WINDOW_FACTOR = 0.8
# The answer's size bound: a token answer is a few KiB.
MAX_ANSWER_BYTES = 1 << 20
FETCH_ERRORS = (OSError, ValueError, urllib.error.URLError)


class TokenError(ValueError):
    """The identity provider's answer is not a token Kafka's client would use."""


def _claims(token: str) -> dict:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError(f"Malformed JWT provided; expected three sections (header, payload, "
                         f"and signature), but {len(parts)} sections provided")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise TokenError(f"Malformed JWT provided: its payload does not parse: {e}") from None
    if not isinstance(claims, dict):
        raise TokenError("Malformed JWT provided: its payload is not a JSON object")
    return claims


class AccessToken:
    """A token from the endpoint and what the login needs of it."""
    __slots__ = ("value", "principal", "issued_at_s", "expires_at_s")

    def __init__(self, value: str, principal: str, issued_at_s: float, expires_at_s: float):
        self.value = value
        self.principal = principal
        self.issued_at_s = issued_at_s
        self.expires_at_s = expires_at_s


def validate_access_token(value: str, sub_claim: str, now_s: float) -> AccessToken:
    """Kafka's LoginAccessTokenValidator: the token's principal and lifetime, or TokenError."""
    claims = _claims(value)
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or not math.isfinite(exp):
        raise TokenError("The exp claim is required and must be a number")
    principal = claims.get(sub_claim)
    if not isinstance(principal, str) or not principal.strip():
        raise TokenError(f"The {sub_claim} claim is required and must be a non-empty string")
    iat = claims.get("iat")
    issued = iat if isinstance(iat, (int, float)) and not isinstance(iat, bool) else now_s
    if exp <= now_s:
        raise TokenError(f"The token expired at {exp} (now {int(now_s)})")
    return AccessToken(value, principal.strip(), float(issued), float(exp))


class TokenEndpoint:
    """A login's identity provider and the token it last gave."""

    def __init__(self, url: str, client_id: str, client_secret: str, scope: str | None, *,
                 connect_timeout_ms: int = 10000, read_timeout_ms: int = 10000,
                 backoff_ms: int = 100, backoff_max_ms: int = 10000,
                 sub_claim: str = "sub", context=None):
        self.url = url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        # urllib has one timeout for the connection and each read: the larger of the two.
        self.timeout_s = max(connect_timeout_ms, read_timeout_ms) / 1000
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.sub_claim = sub_claim
        self.token: AccessToken | None = None
        self._lock = trio.Lock()
        # The TLS context of an https endpoint (the JAAS entry's ssl.* options).
        self.context = context

    def __repr__(self) -> str:      # never the secret
        return f"TokenEndpoint({self.url}, client {self.client_id!r})"

    def request(self) -> urllib.request.Request:
        """Kafka's HttpAccessTokenRetriever request."""
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        user = urllib.parse.quote(self.client_id, safe="")
        secret = urllib.parse.quote(self._secret, safe="")
        basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
        return urllib.request.Request(
            self.url, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json",
                     "Cache-Control": "no-cache",
                     "Content-Type": "application/x-www-form-urlencoded"})

    def fetch(self) -> str:
        """One request to the endpoint (blocking: a worker thread runs it); the access token."""
        with urllib.request.urlopen(self.request(), timeout=self.timeout_s,
                                    context=self.context) as answer:
            body = answer.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            raise TokenError(f"the token endpoint's answer is over {MAX_ANSWER_BYTES} bytes")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise TokenError(f"the token endpoint's answer is not JSON: {e}") from None
        value = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(value, str) or not value:
            raise TokenError("the token endpoint's answer has no access_token")
        return value

    def fresh(self, now_s: float) -> bool:
        """Whether the kept token may still be used: before its refresh point."""
        t = self.token
        if t is None:
            return False
        life = t.expires_at_s - t.issued_at_s
        return now_s < t.issued_at_s + life * REFRESH_WINDOW_FACTOR and now_s < t.expires_at_s

    async def current(self, clock, run_sync=None) -> AccessToken:
        """The token to log in with: the kept one while fresh, else a new one, asked for with
        Kafka's retries (`backoff_ms` doubling until `backoff_max_ms` have passed; the last
        failure is raised). `clock`: the node's (wall_ms, monotonic, sleep)."""
        async with self._lock:
            if self.fresh(clock.wall_ms() / 1000):
                return self.token
            run_sync = run_sync or trio.to_thread.run_sync
            start = clock.monotonic()
            attempt = 0
            while True:
                try:
                    value = await run_sync(self.fetch)
                    self.token = validate_access_token(value, self.sub_claim,
                                                       clock.wall_ms() / 1000)
                    return self.token
                except FETCH_ERRORS:
                    elapsed_ms = (clock.monotonic() - start) * 1000
                    wait_ms = min(self.backoff_ms * 2 ** attempt,
                                  self.backoff_max_ms - elapsed_ms)
                    if wait_ms <= 0:
                        raise
                    attempt += 1
                    await clock.sleep(wait_ms / 1000)


def login_endpoint(config, listener_name: str, options: dict[str, str], jaas_key: str
                   ) -> TokenEndpoint | None:
    """The token endpoint a broker's OAUTHBEARER login to `listener_name` uses, or None when
    `sasl.login.callback.handler.class` does not name Kafka's OAuthBearerLoginCallbackHandler
    (unsecured tokens). ValueError, one line naming the key, for settings that cannot work."""
    mechanism = "OAUTHBEARER"
    prefix = f"listener.name.{listener_name.lower()}.{mechanism.lower()}."

    def value(key: str, default=None):
        return config.listener_value(listener_name, key, default, mechanism=mechanism)

    handler = str(value(LOGIN_HANDLER_KEY, "") or "").strip()
    if not handler:
        return None
    if handler not in LOGIN_HANDLER_CLASSES:
        raise ValueError(f"{prefix}{LOGIN_HANDLER_KEY}: {handler} is not served (trioka serves "
                         f"{sorted(LOGIN_HANDLER_CLASSES)[0]} and the unsecured default)")
    url = str(value(TOKEN_ENDPOINT_KEY, "") or "").strip()
    if not url:
        raise ValueError(f"{TOKEN_ENDPOINT_KEY}: the OAuth configuration option "
                         f"{TOKEN_ENDPOINT_KEY} is required by OAuthBearerLoginCallbackHandler "
                         f"(listener {listener_name})")
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ValueError(f"{TOKEN_ENDPOINT_KEY}: {url}: the token endpoint must be an http or "
                         f"https URL")
    context = None
    if urllib.parse.urlsplit(url).scheme.lower() == "https":
        from trioka.security.tls import https_context
        context = https_context(options, jaas_key)
    missing = [name for name in ("clientId", "clientSecret") if not options.get(name)]
    if missing:
        raise ValueError(f"{jaas_key}: no {' and no '.join(missing)} option: the client "
                         f"credentials OAuthBearerLoginCallbackHandler sends to {url}")
    # Config parses them (ints, with Kafka's defaults); a listener-prefixed one is not
    # range-checked there.
    numbers = {key: value(key) for key in ("sasl.login.connect.timeout.ms",
                                           "sasl.login.read.timeout.ms",
                                           "sasl.login.retry.backoff.ms",
                                           "sasl.login.retry.backoff.max.ms")}
    for key, number in numbers.items():
        if number < 0:
            raise ValueError(f"{key}: {number!r} must not be negative")
    return TokenEndpoint(url, options["clientId"], options["clientSecret"],
                         options.get("scope") or None,
                         connect_timeout_ms=numbers["sasl.login.connect.timeout.ms"],
                         read_timeout_ms=numbers["sasl.login.read.timeout.ms"],
                         backoff_ms=numbers["sasl.login.retry.backoff.ms"],
                         backoff_max_ms=numbers["sasl.login.retry.backoff.max.ms"],
                         sub_claim=str(value("sasl.oauthbearer.sub.claim.name", "sub")),
                         context=context)
