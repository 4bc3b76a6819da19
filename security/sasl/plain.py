"""SASL/PLAIN (RFC 4616), the server side, as Kafka's PlainSaslServer with its default callback
handler (PlainServerCallbackHandler): the one token is `[authzid] NUL authcid NUL password`, and
the user's password is the JAAS option `user_<authcid>` of the listener's PLAIN login module.

An unknown user and a wrong password fail with the same message, and passwords are compared in
constant time, so neither the answer nor its timing says which users exist.
"""

import hmac

from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError

INVALID = "Authentication failed: Invalid username or password"


class PlainServer:
    """One PLAIN exchange; `users` maps a user name to its password."""

    def __init__(self, users: dict[str, str]):
        self._users = users
        self.complete = False
        self.principal_name: str | None = None
        self.lifetime_ms: int | None = None

    def evaluate(self, token: bytes) -> bytes:
        if self.complete:
            raise IllegalSaslStateError("PLAIN authentication already completed")
        parts = bytes(token).decode("utf-8", "replace").split("\0")
        if len(parts) != 3:
            raise SaslAuthenticationError(
                f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(parts)}")
        authzid, username, password = parts
        if not username:
            raise SaslAuthenticationError("Authentication failed: username not specified")
        if not password:
            raise SaslAuthenticationError("Authentication failed: password not specified")
        expected = self._users.get(username)
        # Compared even for an unknown user, against itself, so the time taken is alike.
        ok = hmac.compare_digest((expected if expected is not None else password).encode(),
                                 password.encode())
        if expected is None or not ok:
            raise SaslAuthenticationError(INVALID)
        if authzid and authzid != username:
            raise SaslAuthenticationError("Authentication failed: Client requested an "
                                          "authorization id that is different from username")
        self.principal_name = username
        self.complete = True
        return b""


def users_from_jaas(options: dict[str, str]) -> dict[str, str]:
    """The PLAIN users of a login module's options: `user_<name>="<password>"`."""
    return {k[len("user_"):]: v for k, v in options.items() if k.startswith("user_")}
