"""CreateAcls (key 30), v0-3: add ACL bindings to the authorizer (security/authorizer.py).

Each creation is answered on its own, in order: NONE, or INVALID_REQUEST with Kafka's reason (an
operation the resource type does not support, a pattern type other than LITERAL/PREFIXED, a
CLUSTER resource not named kafka-cluster, a principal without a type...). v0 has no pattern type:
its bindings are LITERAL. A binding that exists already is not added twice. Without an authorizer
every creation is SECURITY_DISABLED "No Authorizer is configured.", as in Kafka. The caller needs
ALTER on the cluster (checked before this handler, security/authorizer.py).
"""

from trioka.security.acls import LITERAL, AclBinding
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.CREATE_ACLS)
Result = Response.AclCreationResult

NO_AUTHORIZER = "No Authorizer is configured."


async def handle(broker, request, ctx):
    authorizer = broker.authorizer
    if authorizer is None:
        return Response(throttle_time_ms=0, results=[
            Result(error_code=ErrorCode.SECURITY_DISABLED, error_message=NO_AUTHORIZER)
            for _ in request.creations])
    bindings = [AclBinding(c.resource_type, c.resource_name,
                           c.resource_pattern_type if ctx.api_version >= 1 else LITERAL,
                           c.principal, c.host, c.operation, c.permission_type)
                for c in request.creations]
    results = await authorizer.create(bindings)
    return Response(throttle_time_ms=0, results=[Result(error_code=code, error_message=message)
                                                 for code, message in results])
