"""SaslAuthenticate (key 36), v0-2: one SASL token of the exchange and the server's answer
(KIP-152); v1 adds `session_lifetime_ms` (KIP-368), v2 is the flexible form.

The connection's authenticator (security/sasl/authenticator.py) hands the token to the
mechanism's server. A token that fails is answered SASL_AUTHENTICATION_FAILED with the
mechanism's message (the same for an unknown user and a wrong password) after
`connection.failed.authentication.delay.ms`, and the connection is closed. Once the exchange is
complete the connection's principal is `User:<name>` and the answer carries the session's
lifetime in milliseconds (0: it does not end). On a connection that is not authenticating
(a listener without SASL, an authenticated connection) it is ILLEGAL_SASL_STATE, as Kafka's
KafkaApis answers.
"""

from trioka.security.sasl import IllegalSaslStateError, SaslAuthenticationError
from trioka.security.sasl.authenticator import failed_authentication_delay
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.SASL_AUTHENTICATE)

AFTER_AUTHENTICATION = "SaslAuthenticate request received after successful authentication"


async def handle(broker, request, ctx):
    conn = ctx.connection
    auth = conn.authenticator
    if auth is None:
        return Response(error_code=ErrorCode.ILLEGAL_SASL_STATE,
                        error_message=AFTER_AUTHENTICATION, auth_bytes=b"")
    was_authenticated = auth.authenticated
    try:
        challenge, lifetime_ms = auth.authenticate(bytes(request.auth_bytes))
    except IllegalSaslStateError as e:
        if was_authenticated:
            return Response(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message=str(e),
                            auth_bytes=b"")
        await failed_authentication_delay(broker)
        conn.closing = True
        return Response(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message=str(e),
                        auth_bytes=b"")
    except SaslAuthenticationError as e:
        await failed_authentication_delay(broker)
        conn.closing = True
        return Response(error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=str(e),
                        auth_bytes=b"")
    if auth.authenticated:
        conn.principal = auth.principal
    return Response(error_code=ErrorCode.NONE, error_message=None, auth_bytes=challenge,
                    session_lifetime_ms=lifetime_ms)
