"""CreateAcls (key 30), v0-3: add ACL bindings to the authorizer (security/authorizer.py).

Each creation is answered on its own, in order: NONE, or INVALID_REQUEST with Kafka's reason (an
operation the resource type does not support, a pattern type other than LITERAL/PREFIXED, a
CLUSTER resource not named kafka-cluster, a principal without a type...). v0 has no pattern type:
its bindings are LITERAL. A binding that exists already is not added twice. Without an authorizer
every creation is SECURITY_DISABLED "No Authorizer is configured.", as in Kafka. The caller needs
ALTER on the cluster (checked before this handler, security/authorizer.py). A single broker keeps
the ACLs itself; a node of a cluster forwards the request to the controller, which writes
AccessControlEntryRecords to the metadata log, and answers once its own image has them.
"""

from trioka.security.acls import LITERAL, AclBinding
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.CREATE_ACLS)
Result = Response.AclCreationResult

NO_AUTHORIZER = "No Authorizer is configured."


def bindings_of(request, version: int) -> list[AclBinding]:
    return [AclBinding(c.resource_type, c.resource_name,
                       c.resource_pattern_type if version >= 1 else LITERAL,
                       c.principal, c.host, c.operation, c.permission_type)
            for c in request.creations]


async def handle(broker, request, ctx):
    authorizer = broker.authorizer
    if authorizer is None:
        return Response(throttle_time_ms=0, results=[
            Result(error_code=ErrorCode.SECURITY_DISABLED, error_message=NO_AUTHORIZER)
            for _ in request.creations])
    if broker.cluster is not None:
        # A cluster's ACLs are AccessControlEntryRecords the controller writes; answered once
        # this node's image has them.
        try:
            response = await broker.cluster.forward(ApiKey.CREATE_ACLS, request,
                                                    ctx.api_version)
        except KafkaError as e:
            return Response(throttle_time_ms=0, results=[
                Result(error_code=e.code, error_message=e.message) for _ in request.creations])
        made = [b for b, res in zip(bindings_of(request, ctx.api_version), response.results)
                if res.error_code == 0]
        await broker.cluster.wait_for_metadata(
            lambda: all(b in authorizer.bindings() for b in made))
        return response
    results = await authorizer.create(bindings_of(request, ctx.api_version))
    return Response(throttle_time_ms=0, results=[Result(error_code=code, error_message=message)
                                                 for code, message in results])
