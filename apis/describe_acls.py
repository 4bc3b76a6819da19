"""DescribeAcls (key 29), v0-3: the ACL bindings matching a filter, grouped by resource pattern.

The filter is Kafka's AclBindingFilter (security/acls.py): ANY (1) matches every resource type,
pattern type, operation or permission; a null name, principal or host matches any; pattern type
MATCH finds the bindings that apply to the named resource (its LITERAL name, LITERAL `*`, and
PREFIXED prefixes of it). v0 has no pattern type filter: it describes LITERAL bindings. A filter
with an UNKNOWN element is INVALID_REQUEST; without an authorizer the answer is
SECURITY_DISABLED. The caller needs DESCRIBE on the cluster.
"""

from trioka.security.acls import LITERAL, AclFilter
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

from trioka.apis.create_acls import NO_AUTHORIZER

Response = response_class(ApiKey.DESCRIBE_ACLS)
Resource = Response.DescribeAclsResource
Description = Resource.AclDescription


async def handle(broker, request, ctx):
    if broker.authorizer is None:
        return Response(throttle_time_ms=0, error_code=ErrorCode.SECURITY_DISABLED,
                        error_message=NO_AUTHORIZER, resources=[])
    f = AclFilter(request.resource_type_filter, request.resource_name_filter,
                  request.pattern_type_filter if ctx.api_version >= 1 else LITERAL,
                  request.principal_filter, request.host_filter, request.operation,
                  request.permission_type)
    reason = f.invalid_reason()
    if reason is not None:
        return Response(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST,
                        error_message=reason, resources=[])
    resources: dict[tuple, list] = {}
    for b in broker.authorizer.describe(f):
        resources.setdefault((b.resource_type, b.name, b.pattern_type), []).append(
            Description(principal=b.principal, host=b.host, operation=b.operation,
                        permission_type=b.permission))
    return Response(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message=None,
                    resources=[Resource(resource_type=rt, resource_name=name, pattern_type=pt,
                                        acls=acls)
                               for (rt, name, pt), acls in resources.items()])
