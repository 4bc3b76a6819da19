"""SASL authentication, as Kafka's broker does it (KIP-43, KIP-152, KIP-368).

On a listener whose security protocol is SASL_PLAINTEXT or SASL_SSL a client authenticates before
anything else: ApiVersions (optional), SaslHandshake naming a mechanism from
`sasl.enabled.mechanisms`, then SaslAuthenticate requests carrying the mechanism's tokens until the
server says it is done (authenticator.py holds the per-connection state machine). The mechanisms:
PLAIN (plain.py, users from the JAAS configuration, jaas.py), SCRAM-SHA-256/512 (scram.py, with
credentials managed by AlterUserScramCredentials, credentials.py) and OAUTHBEARER with Kafka's
unsecured-JWT validator (oauthbearer.py) or, where a listener names it, Kafka's
OAuthBearerValidatorCallbackHandler checking signed JWTs against a JWKS (oauthbearer_jwks.py).

Every mechanism server is a small object with `evaluate(token) -> challenge bytes`, `complete`,
`principal_name` and `lifetime_ms` (the credential's expiry, for KIP-368 re-authentication), and
raises `SaslAuthenticationError` with the message Kafka sends back.
"""

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


class SaslAuthenticationError(Exception):
    """Authentication failed: the client gets SASL_AUTHENTICATION_FAILED with this message
    (Kafka's SaslAuthenticationException)."""


class IllegalSaslStateError(Exception):
    """A request the SASL exchange did not expect: Kafka closes the connection
    (IllegalSaslStateException)."""
