"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side, as Kafka's
ScramSaslServer.

A credential is what Kafka keeps of a password (its ScramCredential): a random salt, the iteration
count, StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword,
"Server Key"), where SaltedPassword = PBKDF2(password, salt, iterations). The password itself is
never kept. Iterations are 4096 at least (Kafka's minimum for both mechanisms) and 16384 at most
(AlterUserScramCredentials' maximum).

The exchange, two round trips:
  client-first  `n,,n=<user>,r=<client nonce>`          (gs2 header `n,,` or `y,,`; no binding)
  server-first  `r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>`
  client-final  `c=biws,r=<nonce>,p=<proof b64>`          (biws = base64 of the gs2 header)
  server-final  `v=<server signature b64>`
The proof is ClientKey XOR HMAC(StoredKey, AuthMessage); the server checks H(ClientKey) ==
StoredKey. Each exchange has a fresh server nonce, so a client-final replayed from another exchange
names the wrong nonce and fails. As Kafka, an unknown user and a wrong proof fail with the same
message, so a client cannot learn which users exist.
"""

import base64
import hashlib
import hmac
import os

from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError


class ScramMechanism:
    """One of Kafka's SCRAM mechanisms: its name, hash, and the type id its admin API uses."""
    __slots__ = ("name", "hash_name", "type_id", "min_iterations")

    def __init__(self, name: str, hash_name: str, type_id: int):
        self.name = name
        self.hash_name = hash_name
        self.type_id = type_id       # ScramMechanism's type in Describe/AlterUserScramCredentials
        self.min_iterations = 4096

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash_name).digest()

    def salted_password(self, password: bytes, salt: bytes, iterations: int) -> bytes:
        return hashlib.pbkdf2_hmac(self.hash_name, password, salt, iterations)

    def __repr__(self) -> str:
        return self.name


SCRAM_SHA_256 = ScramMechanism("SCRAM-SHA-256", "sha256", 1)
SCRAM_SHA_512 = ScramMechanism("SCRAM-SHA-512", "sha512", 2)
BY_NAME = {m.name: m for m in (SCRAM_SHA_256, SCRAM_SHA_512)}
BY_TYPE = {m.type_id: m for m in (SCRAM_SHA_256, SCRAM_SHA_512)}
MAX_ITERATIONS = 16384    # AlterUserScramCredentials refuses more (Kafka's ScramMechanism)


class ScramCredential:
    """What is kept of one user's password for one mechanism (Kafka's ScramCredential)."""
    __slots__ = ("salt", "stored_key", "server_key", "iterations")

    def __init__(self, salt: bytes, stored_key: bytes, server_key: bytes, iterations: int):
        self.salt = salt
        self.stored_key = stored_key
        self.server_key = server_key
        self.iterations = iterations

    @classmethod
    def from_salted_password(cls, mechanism: ScramMechanism, salt: bytes,
                             salted_password: bytes, iterations: int) -> "ScramCredential":
        """What AlterUserScramCredentials carries (the salted password) made into a credential."""
        client_key = mechanism.hmac(salted_password, b"Client Key")
        return cls(salt, mechanism.hash(client_key),
                   mechanism.hmac(salted_password, b"Server Key"), iterations)

    @classmethod
    def from_password(cls, mechanism: ScramMechanism, password: str, iterations: int = 4096,
                      salt: bytes | None = None) -> "ScramCredential":
        salt = os.urandom(32) if salt is None else salt
        return cls.from_salted_password(
            mechanism, salt, mechanism.salted_password(password.encode(), salt, iterations),
            iterations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _random_nonce() -> str:
    n = int.from_bytes(os.urandom(17), "big")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while n:
        n, d = divmod(n, 36)
        out.append(digits[d])
    return "".join(out) or "0"


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    out = []
    for part in message.split(","):
        name, eq, value = part.partition("=")
        if not eq or len(name) != 1:
            raise SaslAuthenticationError(f"Invalid SCRAM {what} message format")
        out.append((name, value))
    return out


def decode_username(saslname: str) -> str:
    """RFC 5802's saslname: `=2C` is a comma and `=3D` an equals sign; any other `=` is wrong."""
    out, i = [], 0
    while i < len(saslname):
        if saslname[i] == "=":
            code = saslname[i + 1:i + 3]
            if code not in ("2C", "3D"):
                raise SaslAuthenticationError("Invalid username: " + saslname)
            out.append("," if code == "2C" else "=")
            i += 3
        else:
            out.append(saslname[i])
            i += 1
    return "".join(out)


# The server's states, Kafka's ScramSaslServer.State, and the token each one expects.
RECEIVE_CLIENT_FIRST_MESSAGE = "RECEIVE_CLIENT_FIRST_MESSAGE"
RECEIVE_CLIENT_FINAL_MESSAGE = "RECEIVE_CLIENT_FINAL_MESSAGE"
COMPLETE = "COMPLETE"
FAILED = "FAILED"


class ScramServer:
    """One SCRAM exchange. `lookup(user) -> ScramCredential | None` finds the credential."""

    def __init__(self, mechanism: ScramMechanism, lookup, nonce: str | None = None):
        self.mechanism = mechanism
        self._lookup = lookup
        # Letters and digits only, as Kafka's nonces (a 130-bit random number in base 36).
        self._server_nonce = nonce if nonce is not None else _random_nonce()
        self.state = RECEIVE_CLIENT_FIRST_MESSAGE
        self.principal_name: str | None = None
        self.lifetime_ms: int | None = None     # a SCRAM password does not expire
        self._credential: ScramCredential | None = None
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    def _invalid_credentials(self) -> SaslAuthenticationError:
        # Kafka answers every credential failure (an unknown user, a wrong proof) alike.
        self.state = FAILED
        return SaslAuthenticationError(
            "Authentication failed during authentication due to invalid credentials with SASL "
            f"mechanism {self.mechanism.name}")

    def evaluate(self, token: bytes) -> bytes:
        if self.state == RECEIVE_CLIENT_FIRST_MESSAGE:
            return self._client_first(token)
        if self.state == RECEIVE_CLIENT_FINAL_MESSAGE:
            return self._client_final(token)
        raise IllegalSaslStateError(f"Unexpected SCRAM token in state {self.state}")

    def _client_first(self, token: bytes) -> bytes:
        try:
            message = token.decode()
        except UnicodeDecodeError:
            raise self._invalid_credentials() from None
        gs2, _, rest = message.partition(",")
        authzid, _, bare = rest.partition(",")
        if gs2 not in ("n", "y") or not bare:
            # `p=...`: channel binding, which Kafka does not support either.
            raise self._invalid_credentials()
        try:
            attrs = _attributes(bare, "client first")
            if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
                raise SaslAuthenticationError("Invalid SCRAM client first message format")
            user = decode_username(attrs[0][1])
        except SaslAuthenticationError:
            # A message that does not parse is a SaslException in Kafka: answered as any
            # other failure.
            raise self._invalid_credentials() from None
        if authzid and authzid != "a=" + attrs[0][1]:
            self.state = FAILED
            raise SaslAuthenticationError(
                "Authentication failed: Client requested an authorization id that is different "
                "from username")
        credential = self._lookup(user)
        if credential is None:
            raise self._invalid_credentials()
        self.principal_name = user
        self._credential = credential
        self._client_first_bare = bare
        self._nonce = attrs[1][1] + self._server_nonce
        self._server_first = (f"r={self._nonce},s={_b64(credential.salt)},"
                              f"i={credential.iterations}")
        self.state = RECEIVE_CLIENT_FINAL_MESSAGE
        return self._server_first.encode()

    def _client_final(self, token: bytes) -> bytes:
        try:
            message = token.decode()
            attrs = _attributes(message, "client final")
        except (UnicodeDecodeError, SaslAuthenticationError):
            raise self._invalid_credentials() from None
        values = dict(attrs)
        if attrs[-1][0] != "p" or "c" not in values or "r" not in values:
            raise self._invalid_credentials()
        if not values["r"].endswith(self._nonce):
            # Kafka's check (ScramSaslServer): the nonce ends with the server-first one (some
            # librdkafka releases repeat the client nonce in front of it).
            raise self._invalid_credentials()
        without_proof = message[:message.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        m, credential = self.mechanism, self._credential
        try:
            proof = base64.b64decode(values["p"], validate=True)
        except ValueError:
            raise self._invalid_credentials() from None
        signature = m.hmac(credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise self._invalid_credentials()
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(m.hash(client_key), credential.stored_key):
            raise self._invalid_credentials()
        self.state = COMPLETE
        return ("v=" + _b64(m.hmac(credential.server_key, auth_message))).encode()


def client_proof(mechanism: ScramMechanism, password: str, salt: bytes, iterations: int,
                 auth_message: bytes) -> bytes:
    """The client's proof (RFC 5802 section 3), for `trioka user` checks and the tests."""
    salted = mechanism.salted_password(password.encode(), salt, iterations)
    client_key = mechanism.hmac(salted, b"Client Key")
    signature = mechanism.hmac(mechanism.hash(client_key), auth_message)
    return bytes(a ^ b for a, b in zip(client_key, signature))
