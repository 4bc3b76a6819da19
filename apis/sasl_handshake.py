"""SaslHandshake (key 17), v0-1: the client names its SASL mechanism (KIP-43, KIP-152).

On a SASL listener, before authentication, the connection's authenticator
(security/sasl/authenticator.py) answers: NONE and the enabled mechanisms when the mechanism is
one of `sasl.enabled.mechanisms`, after which v1 expects SaslAuthenticate requests and v0 raw
size-prefixed tokens; UNSUPPORTED_SASL_MECHANISM with the enabled mechanisms otherwise, after
`connection.failed.authentication.delay.ms`, and the connection is closed. On an authenticated
connection whose session has a lifetime it begins a re-authentication (KIP-368). Anywhere else
(a listener without SASL, a session that never ends) it is ILLEGAL_SASL_STATE, Kafka's KafkaApis
answer.
"""

from trioka.security.sasl.authenticator import failed_authentication_delay
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.SASL_HANDSHAKE)


async def handle(broker, request, ctx):
    auth = ctx.connection.authenticator
    if auth is None:
        return Response(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    code, enabled = auth.handshake(request.mechanism, ctx.api_version)
    if code == ErrorCode.UNSUPPORTED_SASL_MECHANISM:
        await failed_authentication_delay(broker)
        ctx.connection.closing = True
    return Response(error_code=code, mechanisms=list(enabled))
