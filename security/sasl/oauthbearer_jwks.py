"""SASL/OAUTHBEARER with signed JWTs checked against a JWKS, as Kafka's
OAuthBearerValidatorCallbackHandler does it (KIP-768).

A listener opts in per mechanism, as in Kafka:

    listener.name.<l>.oauthbearer.sasl.server.callback.handler.class=
        org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler

(`org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler`, the
Kafka 3.1-3.3 name, is accepted too). Without it OAUTHBEARER keeps Kafka's default, the
unsecured-JWT validator (oauthbearer.py). The validator reads these keys, each overridable per
listener (`listener.name.<l>.<key>`) and per mechanism (`listener.name.<l>.oauthbearer.<key>`):

  sasl.oauthbearer.jwks.endpoint.url          where the JSON Web Key Set is: https://, http://
                                              or file: (read once at startup, as Kafka's
                                              JwksFileVerificationKeyResolver does)
  sasl.oauthbearer.jwks.endpoint.refresh.ms   how often an http(s) JWKS is fetched again
                                              (3600000)
  sasl.oauthbearer.jwks.endpoint.retry.backoff.ms / .max.ms
                                              a failed fetch is retried after 100 ms, doubling,
                                              until 10000 ms have passed
  sasl.oauthbearer.expected.audience          comma-separated; the token's `aud` must hold one.
                                              Unset: a token that carries `aud` is refused
                                              (jose4j's default, which Kafka keeps)
  sasl.oauthbearer.expected.issuer            the token's `iss` must be this
  sasl.oauthbearer.sub.claim.name             the claim naming the principal ("sub")
  sasl.oauthbearer.scope.claim.name           the claim holding the scope ("scope")
  sasl.oauthbearer.clock.skew.seconds         leeway for `exp` and `nbf` (30)

A token is accepted when (Kafka's BrokerJwtValidator): it is a JWS of three base64url parts
whose `alg` is not `none`; a key of the JWKS matches its `kid` (when it names one), its
algorithm's key type, a `use` of `sig` (or none) and the key's `alg` (when the key names one),
and the signature verifies with it; `exp` and `iat` are present and numbers, `exp` has not passed
and `nbf` (if any) has come, both give or take the clock skew; `aud` and `iss` are as expected;
the sub claim is a non-blank string; the scope claim, when present, is a string (one scope, as
Kafka reads it) or a list of non-blank strings. Signatures are verified by PyJWT (the `oauth`
extra: `pip install 'trioka[oauth]'`), loaded only by a listener that configures this validator.

Whatever check fails, the client learns only what Kafka tells it: the RFC 7628 challenge
`{"status":"invalid_token"}` and then SASL_AUTHENTICATION_FAILED with that text; the reason is
logged on the broker.

An http(s) JWKS is fetched before the listener serves (a failure stops the start) and then every
refresh.ms, always in a worker thread with a bounded timeout, never on the event loop. A token
whose `kid` is not in the set fails, and asks for an early refresh (Kafka's RefreshingHttpsJwks):
at most once a minute per key id, for the 16 key ids seen last, and never for a key id longer
than 1000 characters. An https JWKS is reached with the TLS settings Kafka's JaasOptionsUtils
reads: the `ssl.*` options of the listener's OAUTHBEARER JAAS entry (security/tls.py's
https_context), the system's CAs when it names no truststore.
"""

import http.client
import inspect
import json
import logging
import math
import urllib.parse
import urllib.request
from collections import OrderedDict

import trio

from trioka.security.sasl.oauthbearer import InvalidToken, UnsecuredToken

log = logging.getLogger(__name__)

HANDLER_KEY = "sasl.server.callback.handler.class"
VALIDATOR_CLASSES = frozenset({
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
})
# Kafka's default for OAUTHBEARER, named explicitly (both its package names).
UNSECURED_CLASSES = frozenset({
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
    "OAuthBearerUnsecuredValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.internal.unsecured."
    "OAuthBearerUnsecuredValidatorCallbackHandler",
})

URL_KEY = "sasl.oauthbearer.jwks.endpoint.url"
REFRESH_KEY = "sasl.oauthbearer.jwks.endpoint.refresh.ms"
BACKOFF_KEY = "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms"
BACKOFF_MAX_KEY = "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms"
AUDIENCE_KEY = "sasl.oauthbearer.expected.audience"
ISSUER_KEY = "sasl.oauthbearer.expected.issuer"
SUB_KEY = "sasl.oauthbearer.sub.claim.name"
SCOPE_KEY = "sasl.oauthbearer.scope.claim.name"
SKEW_KEY = "sasl.oauthbearer.clock.skew.seconds"

# RefreshingHttpsJwks: how an unknown key id asks for an early refresh.
MISSING_KEY_ID_CACHE_MAX_ENTRIES = 16
MISSING_KEY_ID_CACHE_IN_FLIGHT_MS = 60000
MISSING_KEY_ID_MAX_KEY_LENGTH = 1000

# One fetch of the JWKS: connect and read each bounded (jose4j's Get has such timeouts too), and
# a document of at most this size.
FETCH_TIMEOUT_S = 10.0
MAX_JWKS_BYTES = 1 << 20
# What a failed fetch raises: no connection, an HTTP error status, a broken answer, not a JWKS.
FETCH_ERRORS = (OSError, http.client.HTTPException, ValueError)

# JWS `alg` -> the JWK key type (`kty`) that verifies it; `none` is never accepted (jose4j's
# DISALLOW_NONE, which Kafka sets).
KEY_TYPE_OF_ALG = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC", "ES256K": "EC",
    "EdDSA": "OKP",
    "HS256": "oct", "HS384": "oct", "HS512": "oct",
}


def uses_validator(handler_class: str) -> bool:
    """Whether `sasl.server.callback.handler.class` names Kafka's JWKS validator (True), its
    unsecured one or nothing (False). ValueError for a class trioka does not serve."""
    name = (handler_class or "").strip()
    if not name or name in UNSECURED_CLASSES:
        return False
    if name in VALIDATOR_CLASSES:
        return True
    raise ValueError(f"OAUTHBEARER callback handler {name} is not served (trioka serves "
                     f"{sorted(VALIDATOR_CLASSES)[0]} and the unsecured default)")


def load_pyjwt(key: str):
    """PyJWT, or ValueError naming the key that asked for it when the `oauth` extra is missing."""
    try:
        import jwt
        import jwt.algorithms   # noqa: F401  (the RSA and EC verifiers need `cryptography`)
    except ImportError:
        raise ValueError(f"{key}: OAuthBearerValidatorCallbackHandler needs PyJWT with "
                         f"cryptography: pip install 'trioka[oauth]'") from None
    if not getattr(jwt.algorithms, "has_crypto", False):
        raise ValueError(f"{key}: OAuthBearerValidatorCallbackHandler needs the cryptography "
                         f"package: pip install 'trioka[oauth]'")
    return jwt


class JwkEntry:
    """One usable key of the set: its JWK fields and the public key PyJWT verifies with."""
    __slots__ = ("kid", "kty", "use", "alg", "key")

    def __init__(self, kid, kty, use, alg, key):
        self.kid, self.kty, self.use, self.alg, self.key = kid, kty, use, alg, key


def parse_jwks(text: bytes | str, jwt) -> list[JwkEntry]:
    """The usable keys of a JWKS document (RFC 7517). Keys of a type PyJWT cannot load are
    skipped, as jose4j skips them; a document that is not a key set is ValueError."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the JWKS is not JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise ValueError('the JWKS has no "keys" array')
    out = []
    for data in keys:
        if not isinstance(data, dict):
            continue
        try:
            jwk = jwt.PyJWK(data)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        out.append(JwkEntry(data.get("kid"), data.get("kty"), data.get("use"), data.get("alg"),
                            jwk.key))
    return out


def read_jwks_url(url: str, jwt, timeout: float = FETCH_TIMEOUT_S,
                  context=None) -> list[JwkEntry]:
    """Fetch and parse the JWKS at `url` (blocking: call from a worker thread, or at startup for
    a file); `context`: the TLS context of an https URL. OSError or ValueError on failure."""
    with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
        body = answer.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    return parse_jwks(body, jwt)


# trio 0.23 renamed to_thread.run_sync's `cancellable` to `abandon_on_cancel` (trio 0.22 knows
# only the first, later releases warn on it). Either way a cancelled wait leaves the thread to
# finish alone, so a broker shutting down does not wait out a slow JWKS endpoint; the fetch
# itself is bounded by FETCH_TIMEOUT_S.
_ABANDON_ON_CANCEL = ("abandon_on_cancel"
                      if "abandon_on_cancel" in inspect.signature(trio.to_thread.run_sync).parameters
                      else "cancellable")


async def run_abandoning_on_cancel(fetch):
    """Run the blocking `fetch` in a worker thread that a cancellation abandons."""
    return await trio.to_thread.run_sync(fetch, **{_ABANDON_ON_CANCEL: True})


class JwksCache:
    """The verification keys, kept fresh as Kafka's RefreshingHttpsJwks keeps them: `keys` is
    always a complete set (replaced whole, never blocking a reader); `run` fetches the set
    before the listener serves, then every `refresh_ms`, or sooner when `maybe_expedite_refresh`
    asks. `fetch()` is the blocking read (a worker thread calls it); `clock` is the broker's
    network clock (real time)."""

    def __init__(self, location: str, fetch, refresh_ms: int, backoff_ms: int,
                 backoff_max_ms: int, clock, keys: list[JwkEntry] | None = None,
                 refreshing: bool = True, run_sync=None):
        self.location = location
        # How the blocking fetch is run: in a worker thread (trio.to_thread.run_sync); tests of
        # the refresh schedule pass a runner that calls it inline, so only their clock moves.
        self._run_sync = run_sync
        # False for a file: JWKS, read once at startup (no `run` task).
        self.refreshing = refreshing
        self._fetch = fetch
        self.refresh_ms = refresh_ms
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.clock = clock
        self.keys: list[JwkEntry] = keys or []
        self.refreshes = 0           # completed fetches, for the logs and tests
        self._missing: OrderedDict[str, float] = OrderedDict()   # key id -> next check (ms)
        self._wake = None            # trio.Event the refresh loop waits on

    def maybe_expedite_refresh(self, kid: str) -> bool:
        """An unknown key id: refresh now unless this key id asked within the last minute
        (never for a file: JWKS, which is read once)."""
        if not self.refreshing:
            return False
        if len(kid) > MISSING_KEY_ID_MAX_KEY_LENGTH:
            log.warning("Key ID %s... was too long to cache", kid[:MISSING_KEY_ID_MAX_KEY_LENGTH])
            return False
        now_ms = self.clock.monotonic() * 1000
        next_check = self._missing.get(kid)
        if next_check is not None and next_check > now_ms:
            return False
        self._missing[kid] = now_ms + MISSING_KEY_ID_CACHE_IN_FLIGHT_MS
        self._missing.move_to_end(kid)
        while len(self._missing) > MISSING_KEY_ID_CACHE_MAX_ENTRIES:
            self._missing.popitem(last=False)
        if self._wake is not None:
            self._wake.set()
        return True

    async def _fetch_with_retry(self) -> list[JwkEntry]:
        """One refresh: attempts `backoff_ms` apart, doubling, until `backoff_max_ms` have
        passed (Kafka's Retry); the last failure is raised."""
        run_sync = self._run_sync or run_abandoning_on_cancel
        start = self.clock.monotonic()
        attempt = 0
        while True:
            try:
                return await run_sync(self._fetch)
            except FETCH_ERRORS as e:
                elapsed_ms = (self.clock.monotonic() - start) * 1000
                wait_ms = min(self.backoff_ms * 2 ** attempt,
                              max(0.0, self.backoff_max_ms - elapsed_ms))
                if wait_ms <= 0 or elapsed_ms >= self.backoff_max_ms:
                    raise
                log.info("JWKS fetch from %s failed (%s); retrying in %d ms",
                         self.location, e, wait_ms)
                attempt += 1
                await self.clock.sleep(wait_ms / 1000)

    async def refresh(self) -> bool:
        """Fetch the set again; on failure keep the keys held (Kafka logs and carries on)."""
        try:
            keys = await self._fetch_with_retry()
        except FETCH_ERRORS as e:
            log.warning("OAuth JWKS refresh of %s encountered an error; not updating local "
                        "JWKS cache: %s", self.location, e)
            return False
        self.keys = keys
        for entry in keys:
            if entry.kid is not None:
                self._missing.pop(entry.kid, None)
        self.refreshes += 1
        return True

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The first fetch (its failure stops the listener's start: OSError naming the key),
        then the refresh loop, until cancelled."""
        self._wake = trio.Event()
        try:
            self.keys = await self._fetch_with_retry()
            self.refreshes += 1
        except FETCH_ERRORS as e:
            raise OSError(f"{URL_KEY}: could not fetch the JWKS from {self.location}: "
                          f"{e}") from None
        task_status.started()
        while True:
            with self.clock.move_on_after(self.refresh_ms / 1000):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.refresh()


class JwksValidator:
    """Kafka's BrokerJwtValidator over a JwksCache: `validate(token, now_ms)` gives the token's
    principal, expiry and scope, or raises InvalidToken (always `invalid_token`)."""

    def __init__(self, jwt, cache: JwksCache, *, audience: list[str], issuer: str | None,
                 sub_claim: str = "sub", scope_claim: str = "scope", clock_skew_s: int = 30):
        self._jwt = jwt
        self.cache = cache
        self.audience = audience
        self.issuer = issuer
        self.sub_claim = sub_claim
        self.scope_claim = scope_claim
        self.clock_skew_s = clock_skew_s

    def _candidates(self, kid, alg: str) -> list[JwkEntry]:
        kty = KEY_TYPE_OF_ALG[alg]
        return [k for k in self.cache.keys
                if (kid is None or k.kid == kid) and k.kty == kty
                and k.use in (None, "sig") and k.alg in (None, alg)]

    def validate(self, token: str, now_ms: int) -> UnsecuredToken:
        try:
            return self._validate(token, now_ms)
        except InvalidToken as e:
            # The client hears only `invalid_token`; the reason is for the broker's operator
            # (Kafka's OAuthBearerValidatorCallbackHandler logs it the same way).
            log.warning("OAUTHBEARER token refused: %s", e)
            raise

    def _validate(self, token: str, now_ms: int) -> UnsecuredToken:
        jwt = self._jwt
        if token.count(".") != 2:
            raise InvalidToken("Malformed JWT provided; expected three sections (header, "
                               "payload, and signature)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(f"Could not validate the access token: {e}") from None
        alg = header.get("alg")
        if alg not in KEY_TYPE_OF_ALG:       # `none` included: DISALLOW_NONE
            raise InvalidToken(f"Could not validate the access token: the JWS algorithm "
                               f"{alg!r} is not permitted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("Could not validate the access token: kid is not a string")
        candidates = self._candidates(kid, alg)
        if not candidates:
            if kid is not None and self.cache.maybe_expedite_refresh(kid):
                log.debug("Refreshing JWKs from %s as no suitable verification key for JWS "
                          "w/ kid %s was found", self.cache.location, kid)
            raise InvalidToken(f"Could not validate the access token: unable to find a "
                               f"suitable verification key for JWS w/ header {header}")
        claims = None
        error = None
        for entry in candidates:
            try:
                claims = jwt.decode(
                    token, entry.key, algorithms=[alg],
                    audience=self.audience or None, issuer=self.issuer,
                    # the times are checked below, against the broker's clock
                    options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                             "verify_sub": False, "verify_jti": False})
                break
            except jwt.PyJWTError as e:
                error = e
            except (ValueError, TypeError) as e:      # a key PyJWT cannot use for this alg
                error = e
        if claims is None:
            raise InvalidToken(f"Could not validate the access token: {error}")
        return self._claims(claims, now_ms)

    def _claims(self, claims: dict, now_ms: int) -> UnsecuredToken:
        skew_ms = self.clock_skew_s * 1000

        def number(name: str, required: bool):
            value = claims.get(name)
            if value is None:
                if required:
                    raise InvalidToken(f"Could not validate the access token: No {name} claim "
                                       f"is present.")
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise InvalidToken(f"Could not extract the '{name}' claim from the access "
                                   f"token")
            return int(value * 1000)

        exp_ms = number("exp", True)
        number("iat", True)
        nbf_ms = number("nbf", False)
        if now_ms >= exp_ms + skew_ms:
            raise InvalidToken(f"Could not validate the access token: The JWT is no longer "
                               f"valid - the evaluation time {now_ms} ms is on or after the "
                               f"Expiration Time {exp_ms} ms with allowed clock skew of "
                               f"{self.clock_skew_s} seconds")
        if nbf_ms is not None and now_ms + skew_ms < nbf_ms:
            raise InvalidToken(f"Could not validate the access token: The JWT is not yet "
                               f"valid as the evaluation time {now_ms} ms is before the "
                               f"NotBefore {nbf_ms} ms with allowed clock skew of "
                               f"{self.clock_skew_s} seconds")
        sub = claims.get(self.sub_claim)
        if not isinstance(sub, str) or not sub.strip():
            raise InvalidToken(f"{self.sub_claim} value must be non-null and non-empty")
        raw_scope = claims.get(self.scope_claim)
        if isinstance(raw_scope, str):
            raw_scope = [raw_scope]
        elif not isinstance(raw_scope, list):
            raw_scope = []        # absent, or a type Kafka reads as no scope
        scope = []
        for value in raw_scope:
            if not isinstance(value, str) or not value.strip():
                raise InvalidToken(f"{self.scope_claim} value must be non-null and non-empty")
            if value.strip() not in scope:
                scope.append(value.strip())
        return UnsecuredToken(sub.strip(), exp_ms, scope, claims)


def listener_validator(config, listener_name: str, clock) -> JwksValidator | None:
    """The JWKS validator a listener's OAUTHBEARER uses, or None for Kafka's default unsecured
    one. Reads the keys above as the listener sees them; a file: JWKS is read here. ValueError,
    one line naming the key, for a value that does not do."""
    mechanism = "OAUTHBEARER"
    prefix = f"listener.name.{listener_name.lower()}.{mechanism.lower()}."

    def value(key: str):
        return config.listener_value(listener_name, key, mechanism=mechanism)

    try:
        enabled = uses_validator(value(HANDLER_KEY))
    except ValueError as e:
        raise ValueError(f"{prefix}{HANDLER_KEY}: {e}") from None
    if not enabled:
        return None
    jwt = load_pyjwt(prefix + HANDLER_KEY)
    url = (value(URL_KEY) or "").strip()
    if not url:
        raise ValueError(f"{URL_KEY}: the OAuth configuration option {URL_KEY} is required "
                         f"by OAuthBearerValidatorCallbackHandler on listener {listener_name}")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    numbers = {}
    for key in (REFRESH_KEY, BACKOFF_KEY, BACKOFF_MAX_KEY, SKEW_KEY):
        numbers[key] = value(key)
    if numbers[REFRESH_KEY] <= 0:
        raise ValueError(f"{REFRESH_KEY}: must be positive, not {numbers[REFRESH_KEY]}")
    for key in (BACKOFF_KEY, BACKOFF_MAX_KEY, SKEW_KEY):
        if numbers[key] < 0:
            raise ValueError(f"{key}: must be 0 or more, not {numbers[key]}")
    if scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        try:
            with open(path, "rb") as f:
                keys = parse_jwks(f.read(MAX_JWKS_BYTES + 1), jwt)
        except OSError as e:
            raise ValueError(f"{URL_KEY}: the OAuth configuration option {URL_KEY} contains a "
                             f"file ({path}) that cannot be read: {e.strerror or e}") from None
        except ValueError as e:
            raise ValueError(f"{URL_KEY}: {path}: {e}") from None

        def no_refresh():
            return keys
        cache = JwksCache(url, no_refresh, numbers[REFRESH_KEY], numbers[BACKOFF_KEY],
                          numbers[BACKOFF_MAX_KEY], clock, keys, refreshing=False)
    elif scheme in ("http", "https"):
        context = None
        if scheme == "https":
            # Kafka reads the endpoint's TLS settings from the listener's OAUTHBEARER JAAS
            # options (JaasOptionsUtils), not from the listener's own ssl.* keys.
            from trioka.security.sasl.jaas import parse_jaas_config
            from trioka.security.tls import https_context
            jaas = value("sasl.jaas.config") or ""
            try:
                options = parse_jaas_config(jaas).options if jaas.strip() else {}
            except ValueError as e:
                raise ValueError(f"{prefix}sasl.jaas.config: {e}") from None
            context = https_context(options, f"{prefix}sasl.jaas.config")
        cache = JwksCache(url, lambda: read_jwks_url(url, jwt, context=context),
                          numbers[REFRESH_KEY], numbers[BACKOFF_KEY], numbers[BACKOFF_MAX_KEY],
                          clock)
    else:
        raise ValueError(f"{URL_KEY}: the OAuth configuration option {URL_KEY} contains a URL "
                         f"({url}) that is not https://, http:// or file:")
    audience = [a.strip() for a in (value(AUDIENCE_KEY) or "").split(",") if a.strip()]
    issuer = (value(ISSUER_KEY) or "").strip() or None
    sub_claim = (value(SUB_KEY) or "").strip()
    scope_claim = (value(SCOPE_KEY) or "").strip()
    for key, name in ((SUB_KEY, sub_claim), (SCOPE_KEY, scope_claim)):
        if not name:
            raise ValueError(f"{key}: the OAuth configuration option {key} value must be "
                             f"non-empty")
    return JwksValidator(jwt, cache, audience=audience, issuer=issuer, sub_claim=sub_claim,
                         scope_claim=scope_claim, clock_skew_s=numbers[SKEW_KEY])
