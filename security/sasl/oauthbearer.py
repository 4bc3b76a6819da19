"""SASL/OAUTHBEARER (RFC 7628, KIP-255) with Kafka's unsecured-JWT validator
(OAuthBearerUnsecuredValidatorCallbackHandler), the broker's default for this mechanism.

The client's one message is `<gs2 header>\\x01auth=Bearer <token>\\x01[key=value\\x01...]\\x01`.
The token is an unsecured JWS (RFC 7515): base64url header `{"alg":"none"}`, base64url claims and
an empty signature. The validator's options are the JAAS options of the listener's OAUTHBEARER
login module:
  unsecuredValidatorPrincipalClaimName   the claim naming the principal (default `sub`)
  unsecuredValidatorScopeClaimName       the claim holding the scope (default `scope`)
  unsecuredValidatorRequiredScope        space-separated scope values the token must hold
  unsecuredValidatorAllowableClockSkewMs the leeway for `iat` and `exp` (default 0)
`exp` is required (a number, seconds since the epoch) and must not have passed; `iat`, when
present, must not be in the future and must precede `exp`.

The client side's unsecured token (`unsecured_login_token`) is Kafka's
OAuthBearerUnsecuredLoginCallbackHandler, from the JAAS options of the client's login module:
  unsecuredLoginStringClaim_<name>   a string claim (`sub`, the principal, is required)
  unsecuredLoginNumberClaim_<name>   a number claim
  unsecuredLoginListClaim_<name>     a list claim; the value's first character separates items
  unsecuredLoginExtension_<name>     a SASL extension sent beside the token
  unsecuredLoginPrincipalClaimName   the claim naming the principal (default `sub`)
  unsecuredLoginLifetimeSeconds      `exp` - `iat` (default 3600)
Both the tools' client (`--command-config`) and a broker logging in to the other nodes of its
cluster (security/sasl/broker_login.py) use it.

A token that fails is answered as RFC 7628 says and Kafka does: the server's challenge is a JSON
error (`{"status":"invalid_token"}`, or `{"status":"insufficient_scope","scope":"..."}`), the
client acknowledges with a single 0x01 byte, and then authentication fails with that JSON as the
message. The session's lifetime (KIP-368) is the token's `exp`.
"""

import base64
import json

from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError

SEPARATOR = "\x01"


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _login_principal_claim(options: dict[str, str]) -> str:
    return options.get("unsecuredLoginPrincipalClaimName", "sub").strip() or "sub"


def unsecured_login_token(options: dict[str, str], now: float) -> tuple[str, dict[str, str]]:
    """(the unsecured JWS, the SASL extensions) that Kafka's
    OAuthBearerUnsecuredLoginCallbackHandler makes of the JAAS `options`, issued at `now` (wall
    seconds); ValueError naming the option at fault."""
    principal_claim = _login_principal_claim(options)
    try:
        lifetime = int(options.get("unsecuredLoginLifetimeSeconds", "3600"))
    except ValueError:
        raise ValueError("unsecuredLoginLifetimeSeconds is not a number") from None
    claims: dict = {"iat": now, "exp": now + lifetime}
    extensions: dict[str, str] = {}
    for name, value in options.items():
        for prefix in ("unsecuredLoginStringClaim_", "unsecuredLoginNumberClaim_",
                       "unsecuredLoginListClaim_", "unsecuredLoginExtension_"):
            if not name.startswith(prefix) or len(name) == len(prefix):
                continue
            claim = name[len(prefix):]
            if prefix == "unsecuredLoginStringClaim_":
                claims[claim] = value
            elif prefix == "unsecuredLoginNumberClaim_":
                try:
                    claims[claim] = float(value) if "." in value else int(value)
                except ValueError:
                    raise ValueError(f"{name}: {value!r} is not a number") from None
            elif prefix == "unsecuredLoginListClaim_":
                claims[claim] = list(value[1:].split(value[:1])) if value else []
            else:
                extensions[claim] = value
    if not isinstance(claims.get(principal_claim), str) or not claims[principal_claim]:
        raise ValueError(f"OAUTHBEARER needs the principal: "
                         f"unsecuredLoginStringClaim_{principal_claim}=\"NAME\"")

    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none'})}.{part(claims)}.", extensions


def unsecured_login_principal(options: dict[str, str]) -> str:
    """The principal name an unsecured login token names (its principal claim's value)."""
    return options.get(f"unsecuredLoginStringClaim_{_login_principal_claim(options)}", "")


class InvalidToken(Exception):
    """The token fails validation: `status` and `scope` go into the JSON error."""

    def __init__(self, message: str, status: str = "invalid_token", scope: str | None = None):
        super().__init__(message)
        self.status = status
        self.scope = scope


class UnsecuredToken:
    __slots__ = ("principal_name", "lifetime_ms", "scope", "claims")

    def __init__(self, principal_name: str, lifetime_ms: int, scope: list[str], claims: dict):
        self.principal_name = principal_name
        self.lifetime_ms = lifetime_ms
        self.scope = scope
        self.claims = claims


def validate_unsecured_jws(token: str, options: dict[str, str], now_ms: int) -> UnsecuredToken:
    """The token's principal, expiry and scope, or InvalidToken (Kafka's OAuthBearerUnsecuredJws
    and OAuthBearerValidationUtils)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("An unsecured JWS must have 3 dot-separated Base64URL-encoded values")
    if parts[2]:
        raise InvalidToken("An unsecured JWS must have an empty signature")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("The token is not Base64URL-encoded JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "none":
        raise InvalidToken("An unsecured JWS must have alg none")
    if not isinstance(claims, dict):
        raise InvalidToken("The token's claims are not a JSON object")
    principal_claim = options.get("unsecuredValidatorPrincipalClaimName", "sub").strip() or "sub"
    scope_claim = options.get("unsecuredValidatorScopeClaimName", "scope").strip() or "scope"
    try:
        skew_ms = int(options.get("unsecuredValidatorAllowableClockSkewMs", "0") or 0)
    except ValueError:
        raise InvalidToken("Invalid value for unsecuredValidatorAllowableClockSkewMs") from None
    principal = claims.get(principal_claim)
    if not isinstance(principal, str) or not principal.strip():
        raise InvalidToken(f"Required claim missing or not a string: {principal_claim}")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise InvalidToken("Required claim missing or not a number: exp")
    exp_ms = int(exp * 1000)
    iat = claims.get("iat")
    if iat is not None:
        if isinstance(iat, bool) or not isinstance(iat, (int, float)):
            raise InvalidToken("Claim is not a number: iat")
        iat_ms = int(iat * 1000)
        if iat_ms > now_ms + skew_ms:
            raise InvalidToken(f"The Issued At value ({iat_ms} ms) is after the current time "
                               f"({now_ms} ms) plus the allowed clock skew ({skew_ms} ms)")
        if exp_ms <= iat_ms:
            raise InvalidToken(f"The Expiration Time ({exp_ms} ms) is not after the Issued At "
                               f"time ({iat_ms} ms)")
    if now_ms - skew_ms >= exp_ms:
        raise InvalidToken(f"The indicated time ({now_ms} ms) minus allowable clock skew "
                           f"({skew_ms} ms) is on or after the Expiration Time ({exp_ms} ms)")
    scope_value = claims.get(scope_claim)
    if scope_value is None:
        scope: list[str] = []
    elif isinstance(scope_value, str):
        scope = scope_value.split()
    elif isinstance(scope_value, list) and all(isinstance(s, str) for s in scope_value):
        scope = list(scope_value)
    else:
        raise InvalidToken(f"Claim is not a string or a list of strings: {scope_claim}")
    required = options.get("unsecuredValidatorRequiredScope", "").split()
    missing = [s for s in required if s not in scope]
    if missing:
        raise InvalidToken(f"The provided scope ({scope}) is missing a required scope "
                           f"({missing})", status="insufficient_scope",
                           scope=" ".join(required))
    return UnsecuredToken(principal, exp_ms, scope, claims)


def json_error(status: str, scope: str | None) -> bytes:
    """Kafka's RFC 7628 error challenge, byte for byte."""
    text = '{"status":"%s"' % status
    if scope is not None:
        text += ',"scope":"%s"' % scope
    return (text + "}").encode()


def parse_client_initial_response(token: bytes) -> tuple[str, str, dict[str, str]]:
    """(token, authorization id, extensions) of the client's message
    (Kafka's OAuthBearerClientInitialResponse)."""
    try:
        text = bytes(token).decode()
    except UnicodeDecodeError:
        raise SaslAuthenticationError("Invalid OAUTHBEARER client first message") from None
    gs2, sep, rest = text.partition(SEPARATOR)
    fields = gs2.split(",")
    if not sep or len(fields) != 3 or fields[0] not in ("n", "y") or fields[2] \
            or not rest.endswith(SEPARATOR + SEPARATOR) and rest != SEPARATOR:
        raise SaslAuthenticationError("Invalid OAUTHBEARER client first message")
    authzid = fields[1][2:] if fields[1].startswith("a=") else ""
    values: dict[str, str] = {}
    for pair in filter(None, rest.split(SEPARATOR)):
        key, eq, value = pair.partition("=")
        if not eq:
            raise SaslAuthenticationError("Invalid OAUTHBEARER client first message")
        values[key] = value
    auth = values.pop("auth", "")
    scheme, _, bearer = auth.partition(" ")
    if scheme.lower() != "bearer" or not bearer:
        raise SaslAuthenticationError("Invalid OAUTHBEARER client first message")
    return bearer.strip(), authzid, values


class OAuthBearerServer:
    """One OAUTHBEARER exchange, validating unsecured JWTs, or with `validate(token, now_ms)`
    (Kafka's JWKS validator, oauthbearer_jwks.py) when the listener configures one. `now_ms()`
    is the broker's wall clock (the token's times are wall times)."""

    def __init__(self, options: dict[str, str], now_ms, validate=None):
        self._options = options
        self._now_ms = now_ms
        self._validate = validate or (lambda token, now: validate_unsecured_jws(token, options,
                                                                                now))
        self.complete = False
        self.principal_name: str | None = None
        self.lifetime_ms: int | None = None
        self._error: bytes | None = None

    def evaluate(self, token: bytes) -> bytes:
        if self.complete:
            raise IllegalSaslStateError("OAUTHBEARER authentication already completed")
        if bytes(token) == SEPARATOR.encode() and self._error is not None:
            # The client's acknowledgement of our error challenge: now it fails.
            raise SaslAuthenticationError(self._error.decode())
        self._error = None
        value, authzid, _extensions = parse_client_initial_response(token)
        try:
            validated = self._validate(value, self._now_ms())
        except InvalidToken as e:
            self._error = json_error(e.status, e.scope)
            return self._error
        if authzid and authzid != validated.principal_name:
            raise SaslAuthenticationError(
                f"Authentication failed: Client requested an authorization id ({authzid}) that "
                f"is different from the token's principal name ({validated.principal_name})")
        self.principal_name = validated.principal_name
        self.lifetime_ms = validated.lifetime_ms
        self.complete = True
        return b""
