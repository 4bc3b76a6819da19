"""The client side of a SASL exchange, as Kafka's SaslClientAuthenticator runs it (KIP-43, KIP-152).

Used by every Kafka client trioka has: the tools' client (cli/client/connection.py, for
`--command-config`) and a node reaching another node on a SASL listener (node/channel.py, with
the broker's own credentials, security/sasl/broker_login.py). After ApiVersions:

    SaslHandshake v1 naming the mechanism    -> UNSUPPORTED_SASL_MECHANISM with the broker's
                                                enabled list, or none
    SaslAuthenticate(the mechanism's token)   -> the broker's challenge ... until the mechanism
                                                is complete; SASL_AUTHENTICATION_FAILED ends it
                                                with the broker's message

`exchange` is that sequence without I/O (a generator: it yields each request and is sent each
answer), so a blocking client and a trio one run the same steps. `SaslClient` makes the tokens:

  PLAIN        one token `authzid NUL username NUL password` (RFC 4616)
  SCRAM-SHA-*  client-first, client-final with the proof; the server's signature is checked, so
               a broker that does not hold the credential cannot pretend (RFC 5802)
  OAUTHBEARER  the settings object's `oauthbearer_token(now)`: an unsecured JWS (Kafka's
               OAuthBearerUnsecuredLoginCallbackHandler), or for a node whose login asks an
               identity provider, the token it got (security/sasl/oauthbearer_login.py)

The credentials come from any object with `mechanism` and `options` (the JAAS options: username,
password), as both clients hold them.
"""

import base64
import hmac
import secrets

from trioka.security.sasl.scram import BY_NAME as SCRAM_MECHANISMS
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

SASL_HANDSHAKE_VERSION = 1      # v1: the tokens travel in SaslAuthenticate requests (KIP-152)


class SaslExchangeError(Exception):
    """The broker's side of a SASL exchange does not hold up (a SCRAM nonce or signature)."""


class SaslAuthenticationFailed(Exception):
    """The broker ended the exchange with an error: `code` (UNSUPPORTED_SASL_MECHANISM,
    SASL_AUTHENTICATION_FAILED, ...), `message` (the broker's, or Kafka's client wording), `api`
    (SaslHandshake or SaslAuthenticate)."""

    def __init__(self, code: int, message: str | None, api: str):
        try:
            name = ErrorCode(code).name
        except ValueError:      # a code newer than this client
            name = f"error code {code}"
        super().__init__(message or f"{api}: {name}")
        self.code = code
        self.message = message
        self.api = api


def exchange(client: "SaslClient"):
    """The SASL requests of one authentication, without I/O: yields (api key, version or None
    for the newest both sides serve, request) and is sent each decoded answer. Returns the
    session lifetime the broker gave (KIP-368 `session_lifetime_ms`, 0: none). Raises
    SaslAuthenticationFailed for an error answer, SaslExchangeError for a broker whose SCRAM
    answers do not hold up."""
    Handshake = protocol.request_class(ApiKey.SASL_HANDSHAKE)
    response = yield (ApiKey.SASL_HANDSHAKE, SASL_HANDSHAKE_VERSION,
                      Handshake(mechanism=client.mechanism))
    if response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM:
        # Kafka's client words it so (SaslClientAuthenticator).
        raise SaslAuthenticationFailed(
            response.error_code, f"Client SASL mechanism '{client.mechanism}' not enabled in "
            f"the server, enabled mechanisms are {response.mechanisms}", "SaslHandshake")
    if response.error_code:
        raise SaslAuthenticationFailed(response.error_code, None, "SaslHandshake")
    Authenticate = protocol.request_class(ApiKey.SASL_AUTHENTICATE)
    token = client.first()
    lifetime_ms = 0
    while token is not None:
        answer = yield ApiKey.SASL_AUTHENTICATE, None, Authenticate(auth_bytes=token)
        if answer.error_code:
            raise SaslAuthenticationFailed(answer.error_code, answer.error_message,
                                           "SaslAuthenticate")
        lifetime_ms = answer.session_lifetime_ms or 0
        token = client.next(bytes(answer.auth_bytes or b""))
    return lifetime_ms


class SaslClient:
    """One mechanism's exchange, client side: `first()` is the first token; `next(challenge)`
    answers the broker's, None when the exchange is complete (the last answer checked)."""

    def __init__(self, security, clock=None):
        self.mechanism = security.mechanism
        self.security = security
        # wall time, seconds: an unsecured token's iat and exp (None: the settings' own clock)
        self._clock = clock
        self._step = 0

    def first(self) -> bytes:
        o = self.security.options
        if self.mechanism == "PLAIN":
            return f"\0{o['username']}\0{o['password']}".encode()
        if self.mechanism == "OAUTHBEARER":
            now = self._clock() if self._clock is not None else None
            token, extensions = self.security.oauthbearer_token(now)
            ext = "".join(f"{k}={v}\x01" for k, v in extensions.items())
            return f"n,,\x01auth=Bearer {token}\x01{ext}\x01".encode()
        # SCRAM: `,` and `=` in the user name are escaped as RFC 5802's saslname.
        user = o["username"].replace("=", "=3D").replace(",", "=2C")
        self._nonce = secrets.token_hex(16)
        self._client_first_bare = f"n={user},r={self._nonce}"
        return ("n,," + self._client_first_bare).encode()

    def next(self, challenge: bytes) -> bytes | None:
        """The answer to the broker's token; None when no more is due."""
        self._step += 1
        if self.mechanism == "PLAIN":
            return None
        if self.mechanism == "OAUTHBEARER":
            # RFC 7628: an error challenge (JSON) is acknowledged with one 0x01 byte; the
            # broker then fails the authentication with that JSON as the message.
            return b"\x01" if challenge and self._step == 1 else None
        if self._step == 1:
            return self._scram_final(challenge)
        self._scram_check(challenge)
        return None

    def _scram_final(self, server_first: bytes) -> bytes:
        m = SCRAM_MECHANISMS[self.mechanism]
        text = server_first.decode("utf-8", "replace")
        attrs = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
        try:
            nonce, salt = attrs["r"], base64.b64decode(attrs["s"])
            iterations = int(attrs["i"])
        except (KeyError, ValueError):
            raise SaslExchangeError(f"{self.mechanism}: invalid server first message") from None
        if not nonce.startswith(self._nonce) or nonce == self._nonce:
            raise SaslExchangeError(f"{self.mechanism}: invalid server nonce: does not start with "
                              f"client nonce")
        if iterations < m.min_iterations:
            raise SaslExchangeError(f"{self.mechanism}: requested iterations {iterations} is less "
                              f"than the minimum {m.min_iterations}")
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        salted = m.salted_password(self.security.options["password"].encode(), salt, iterations)
        client_key = m.hmac(salted, b"Client Key")
        signature = m.hmac(m.hash(client_key), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = m.hmac(m.hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def _scram_check(self, server_final: bytes) -> None:
        text = server_final.decode("utf-8", "replace")
        if text.startswith("e="):
            raise SaslExchangeError(f"{self.mechanism}: the broker failed the exchange: {text[2:]}")
        try:
            got = base64.b64decode(text[2:]) if text.startswith("v=") else b""
        except ValueError:
            got = b""
        if not hmac.compare_digest(got, self._server_signature):
            raise SaslExchangeError(f"{self.mechanism}: invalid server signature in server final "
                              f"message")
