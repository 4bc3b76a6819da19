"""One connection's SASL authentication, as Kafka's SaslServerAuthenticator runs it.

A connection of a SASL_PLAINTEXT or SASL_SSL listener starts unauthenticated. Before it is
authenticated the broker reads frames of at most `sasl.server.max.receive.size` bytes and serves
only ApiVersions, SaslHandshake and SaslAuthenticate, each only in its turn (ADMITTED below);
any other request closes the connection unanswered, as Kafka's authenticator throws
IllegalSaslStateException("Unexpected Kafka request of type ... during SASL handshake.").

The states are Kafka's:
  HANDSHAKE_OR_VERSIONS_REQUEST  ApiVersions or SaslHandshake (INITIAL_REQUEST is this too: a
                                 pre-KIP-43 GSSAPI token is not served)
  HANDSHAKE_REQUEST              after ApiVersions: SaslHandshake
  AUTHENTICATE                   SaslAuthenticate requests (SaslHandshake v1, KIP-152)
  AUTHENTICATE_RAW               raw size-prefixed tokens, no request header (SaslHandshake v0)
  REAUTH_BAD_MECHANISM           a re-authentication named another mechanism: the next
                                 SaslAuthenticate fails
  COMPLETE                       authenticated: every request is served
  FAILED                         the connection is closed after the failure's answer
A failed authentication is answered after `connection.failed.authentication.delay.ms` (Kafka's
KIP-306 delay, which slows down password guessing) and the connection is closed.

Re-authentication (KIP-368): with `connections.max.reauth.ms` > 0, or a credential that expires
(an OAUTHBEARER token), the session has a lifetime, sent in SaslAuthenticate v1+
(`session_lifetime_ms`). Before it ends the client sends SaslHandshake and SaslAuthenticate again
on the same connection, with the same mechanism and for the same principal; once it has ended,
any other request closes the connection.
"""

from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

HANDSHAKE_OR_VERSIONS_REQUEST = "HANDSHAKE_OR_VERSIONS_REQUEST"
HANDSHAKE_REQUEST = "HANDSHAKE_REQUEST"
AUTHENTICATE = "AUTHENTICATE"
AUTHENTICATE_RAW = "AUTHENTICATE_RAW"
REAUTH_BAD_MECHANISM = "REAUTH_BAD_MECHANISM"
COMPLETE = "COMPLETE"
FAILED = "FAILED"

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = \
    ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE

# state -> the API keys served in it (None: every key). Anything else closes the connection.
ADMITTED = {
    HANDSHAKE_OR_VERSIONS_REQUEST: frozenset({API_VERSIONS, SASL_HANDSHAKE}),
    HANDSHAKE_REQUEST: frozenset({SASL_HANDSHAKE}),
    AUTHENTICATE: frozenset({SASL_AUTHENTICATE}),
    AUTHENTICATE_RAW: frozenset(),
    REAUTH_BAD_MECHANISM: frozenset({SASL_AUTHENTICATE}),
    COMPLETE: None,
    FAILED: frozenset(),
}

# (state, what happened) -> the next state. What happened: the request answered, or the outcome
# of a handshake ("v0", "v1", "unsupported", "reauth", "reauth_other_mechanism") or of a token
# ("challenge", "done", "failed").
TRANSITIONS = {
    (HANDSHAKE_OR_VERSIONS_REQUEST, "api_versions"): HANDSHAKE_REQUEST,
    (HANDSHAKE_OR_VERSIONS_REQUEST, "v1"): AUTHENTICATE,
    (HANDSHAKE_OR_VERSIONS_REQUEST, "v0"): AUTHENTICATE_RAW,
    (HANDSHAKE_OR_VERSIONS_REQUEST, "unsupported"): FAILED,
    (HANDSHAKE_REQUEST, "v1"): AUTHENTICATE,
    (HANDSHAKE_REQUEST, "v0"): AUTHENTICATE_RAW,
    (HANDSHAKE_REQUEST, "unsupported"): FAILED,
    (AUTHENTICATE, "challenge"): AUTHENTICATE,
    (AUTHENTICATE, "done"): COMPLETE,
    (AUTHENTICATE, "failed"): FAILED,
    (AUTHENTICATE_RAW, "challenge"): AUTHENTICATE_RAW,
    (AUTHENTICATE_RAW, "done"): COMPLETE,
    (AUTHENTICATE_RAW, "failed"): FAILED,
    (COMPLETE, "reauth"): AUTHENTICATE,
    (COMPLETE, "reauth_other_mechanism"): REAUTH_BAD_MECHANISM,
    (REAUTH_BAD_MECHANISM, "failed"): FAILED,
}


class SaslAuthenticator:
    """The SASL state of one connection. `mechanisms` (SaslMechanisms) makes a mechanism's
    server and knows each one's connections.max.reauth.ms (`max_reauth_ms` is the one for a
    mechanism it does not name); `clock` is the broker's (monotonic seconds for the session,
    wall ms for tokens)."""

    def __init__(self, mechanisms, clock, max_reauth_ms: int = 0):
        self.mechanisms = mechanisms
        self.clock = clock
        self.max_reauth_ms = max_reauth_ms
        self.state = HANDSHAKE_OR_VERSIONS_REQUEST
        self.mechanism: str | None = None
        self.principal_name: str | None = None
        self.session_expires_at: float | None = None   # monotonic seconds; None: never
        self.reauthenticating = False
        self._server = None
        self._bad_mechanism_message = ""

    def _move(self, event: str) -> None:
        self.state = TRANSITIONS[(self.state, event)]

    @property
    def authenticated(self) -> bool:
        return self.state == COMPLETE

    @property
    def expects_raw_token(self) -> bool:
        return self.state == AUTHENTICATE_RAW

    # --- the gate (server.py asks before decoding each request) ---

    def admits(self, api_key: int) -> bool:
        """Whether a request of this API may be served now."""
        admitted = ADMITTED[self.state]
        if admitted is None:
            expires = self.session_expires_at
            return expires is None or api_key == SASL_HANDSHAKE \
                or self.clock.monotonic() < expires
        return api_key in admitted

    def refusal(self, api_key: int) -> str:
        """Why `admits` said no, in Kafka's words (logged as the connection closes)."""
        try:
            name = ApiKey(api_key).name
        except ValueError:        # a key this codec does not know
            name = str(api_key)
        if self.state == COMPLETE:
            return "the authentication session expired (connections.max.reauth.ms)"
        if self.state in (AUTHENTICATE, REAUTH_BAD_MECHANISM):
            return f"Unexpected Kafka request of type {name} during SASL authentication."
        if self.state == FAILED:
            return "authentication failed"
        return f"Unexpected Kafka request of type {name} during SASL handshake."

    # --- the requests ---

    def answered_api_versions(self) -> None:
        if self.state == HANDSHAKE_OR_VERSIONS_REQUEST:
            self._move("api_versions")

    def handshake(self, mechanism: str, version: int) -> tuple[int, list[str]]:
        """A SaslHandshake: (error code, enabled mechanisms). UNSUPPORTED_SASL_MECHANISM fails
        the authentication; ILLEGAL_SASL_STATE answers a handshake on an authenticated
        connection that has no session to renew (Kafka's KafkaApis answer)."""
        enabled = self.mechanisms.enabled
        if self.state == COMPLETE:
            if self.session_expires_at is None:
                return ErrorCode.ILLEGAL_SASL_STATE, enabled
            self.reauthenticating = True
            if mechanism != self.mechanism:
                self._bad_mechanism_message = (
                    f"SASL mechanism '{mechanism}' requested by client is not supported for "
                    f"re-authentication of mechanism '{self.mechanism}'")
                self._move("reauth_other_mechanism")
                return ErrorCode.NONE, enabled
            self._server = self.mechanisms.server(mechanism)
            self._move("reauth")
            return ErrorCode.NONE, enabled
        if mechanism not in enabled:
            self._move("unsupported")
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM, enabled
        self.mechanism = mechanism
        self._server = self.mechanisms.server(mechanism)
        self._move("v1" if version >= 1 else "v0")
        return ErrorCode.NONE, enabled

    def authenticate(self, token: bytes) -> tuple[bytes, int]:
        """A SaslAuthenticate token (or a raw one): (the mechanism's answer, session lifetime
        ms). SaslAuthenticationError fails the authentication; IllegalSaslStateError answers a
        SaslAuthenticate that is out of turn."""
        if self.state == COMPLETE:
            raise IllegalSaslStateError(
                "SaslAuthenticate request received after successful authentication")
        if self.state == REAUTH_BAD_MECHANISM:
            self._move("failed")
            raise SaslAuthenticationError(self._bad_mechanism_message)
        try:
            challenge = self._server.evaluate(token)
        except (SaslAuthenticationError, IllegalSaslStateError):
            self._move("failed")
            raise
        if not self._server.complete:
            self._move("challenge")
            return challenge, 0
        name = self._server.principal_name
        if self.reauthenticating and name != self.principal_name:
            self._move("failed")
            raise SaslAuthenticationError(
                f"Cannot change principals during re-authentication from User:"
                f"{self.principal_name}: User:{name}")
        lifetime_ms = self._session_lifetime_ms(self._server.lifetime_ms)
        self.principal_name = name
        self.session_expires_at = None if lifetime_ms is None else \
            self.clock.monotonic() + lifetime_ms / 1000
        self.reauthenticating = False
        self._server = None
        self._move("done")
        return challenge, lifetime_ms or 0

    def _session_lifetime_ms(self, credential_expires_ms: int | None) -> int | None:
        """Kafka's rule: the credential's remaining life, `connections.max.reauth.ms`, or the
        shorter of the two; None when neither applies (the session never ends)."""
        limit = self.mechanisms.max_reauth_ms.get(self.mechanism, self.max_reauth_ms)
        max_reauth = limit if limit > 0 else None
        if credential_expires_ms is None and max_reauth is None:
            return None
        remaining = None if credential_expires_ms is None else \
            max(0, credential_expires_ms - self.clock.wall_ms())
        if remaining is None:
            return max_reauth
        return remaining if max_reauth is None else min(remaining, max_reauth)

    @property
    def principal(self) -> str:
        return f"User:{self.principal_name}" if self.principal_name else "User:ANONYMOUS"


class SaslMechanisms:
    """A listener's SASL mechanisms (`sasl.enabled.mechanisms`) and what each authenticates
    against, built once per listener at startup."""

    def __init__(self, enabled: list[str], factories: dict,
                 max_reauth_ms: dict[str, int] | None = None, background=()):
        self.enabled = enabled
        self._factories = factories
        # Tasks the listener needs running before it serves, each `async fn(task_status=)`
        # reporting started once ready (the JWKS refresh of OAUTHBEARER's validator).
        self.background = list(background)
        # mechanism -> its connections.max.reauth.ms, where the listener sets one
        # (`listener.name.<l>.<mechanism>.connections.max.reauth.ms`, as Kafka reads it).
        self.max_reauth_ms = max_reauth_ms or {}

    def server(self, mechanism: str):
        return self._factories[mechanism]()


async def failed_authentication_delay(broker) -> None:
    """KIP-306: a failed authentication is answered `connection.failed.authentication.delay.ms`
    late (on the sockets' clock, real time even under virtual time)."""
    delay_ms = broker.config.connection_failed_authentication_delay_ms
    if delay_ms > 0:
        await broker.network_clock.sleep(delay_ms / 1000)


def raw_token_frame(auth: SaslAuthenticator, token: bytes) -> list:
    """The answer to a raw token (after SaslHandshake v0): the mechanism's challenge, size
    prefixed, with no response header. Failures raise, and the connection is closed unanswered
    (a raw exchange has no way to carry an error)."""
    challenge, _ = auth.authenticate(token)
    return [len(challenge).to_bytes(4, "big", signed=True) + challenge]


def listener_mechanisms(config, listener_name: str, scram_lookup, wall_ms,
                        network_clock=None) -> SaslMechanisms:
    """A SASL listener's mechanisms from `sasl.enabled.mechanisms` and the JAAS configuration
    (`listener.name.<l>.<mechanism>.sasl.jaas.config`). `scram_lookup(user, type id)` finds a
    SCRAM credential, `wall_ms()` is the time tokens are checked against, `network_clock` (real
    time) paces the JWKS refresh of OAUTHBEARER's validator. ValueError, one line naming the
    key, for a mechanism trioka does not serve or a JAAS text that does not parse."""
    from trioka.security.sasl import MECHANISMS
    from trioka.security.sasl.jaas import parse_jaas_config
    from trioka.security.sasl.oauthbearer import OAuthBearerServer
    from trioka.security.sasl.plain import PlainServer, users_from_jaas
    from trioka.security.sasl.scram import BY_NAME, ScramServer

    key = "sasl.enabled.mechanisms"
    text = config.listener_value(listener_name, key)
    enabled = [m.strip().upper() for m in text.split(",") if m.strip()]
    for mechanism in enabled:
        if mechanism not in MECHANISMS:
            raise ValueError(f"{key}: SASL mechanism {mechanism} is not served on listener "
                             f"{listener_name} (trioka serves {', '.join(MECHANISMS)})")
    if not enabled:
        raise ValueError(f"{key}: listener {listener_name} uses SASL but enables no mechanism")
    factories = {}
    background = []
    max_reauth_ms = {m: config.listener_value(listener_name, "connections.max.reauth.ms",
                                              mechanism=m) for m in enabled}
    for mechanism in enabled:
        jaas_key = f"listener.name.{listener_name.lower()}.{mechanism.lower()}.sasl.jaas.config"
        jaas = config.listener_value(listener_name, "sasl.jaas.config", mechanism=mechanism)
        try:
            options = parse_jaas_config(jaas).options if jaas else {}
        except ValueError as e:
            raise ValueError(f"{jaas_key}: {e}") from None
        if mechanism == "PLAIN":
            if not jaas:
                raise ValueError(f"{jaas_key}: listener {listener_name} enables PLAIN but has no "
                                 f"JAAS configuration naming its users (user_<name>=\"...\")")
            users = users_from_jaas(options)
            factories[mechanism] = lambda users=users: PlainServer(users)
        elif mechanism in BY_NAME:
            scram = BY_NAME[mechanism]
            factories[mechanism] = lambda scram=scram: ScramServer(
                scram, lambda user: scram_lookup(user, scram.type_id))
        else:
            # Kafka's OAuthBearerValidatorCallbackHandler when the listener names it (PyJWT
            # is loaded only then), else the unsecured-JWT validator.
            from trioka.clock import Clock
            from trioka.security.sasl.oauthbearer_jwks import listener_validator
            validator = listener_validator(config, listener_name, network_clock or Clock())
            validate = validator.validate if validator is not None else None
            if validator is not None and validator.cache.refreshing:
                background.append(validator.cache.run)
            factories[mechanism] = lambda options=options, validate=validate: \
                OAuthBearerServer(options, wall_ms, validate)
    return SaslMechanisms(enabled, factories, max_reauth_ms, background)


def check_config(config) -> None:
    """Each SASL listener's mechanisms and JAAS configuration as the broker will build them, so
    that a mistake stops `trioka serve` with one line naming the key (ValueError)."""
    from trioka.config import listeners_of
    for listener in listeners_of(config):
        if listener.uses_sasl:
            listener_mechanisms(config, listener.name, lambda user, t: None, lambda: 0)
