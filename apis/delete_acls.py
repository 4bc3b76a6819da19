"""DeleteAcls (key 31), v0-3: delete the ACL bindings matching each filter.

Each filter (Kafka's AclBindingFilter, as DescribeAcls reads it) is answered with the bindings it
deleted, each with its own error code (NONE). v0 filters match LITERAL bindings only. A filter
with an UNKNOWN element is INVALID_REQUEST; without an authorizer every filter is
SECURITY_DISABLED. The caller needs ALTER on the cluster.
"""

from trioka.security.acls import LITERAL, AclFilter
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

from trioka.apis.create_acls import NO_AUTHORIZER

Response = response_class(ApiKey.DELETE_ACLS)
FilterResult = Response.DeleteAclsFilterResult
Matching = FilterResult.DeleteAclsMatchingAcl


async def handle(broker, request, ctx):
    if broker.authorizer is None:
        return Response(throttle_time_ms=0, filter_results=[
            FilterResult(error_code=ErrorCode.SECURITY_DISABLED, error_message=NO_AUTHORIZER,
                         matching_acls=[]) for _ in request.filters])
    v0 = ctx.api_version == 0
    filters = [AclFilter(f.resource_type_filter, f.resource_name_filter,
                         LITERAL if v0 else f.pattern_type_filter, f.principal_filter,
                         f.host_filter, f.operation, f.permission_type)
               for f in request.filters]
    results = await broker.authorizer.delete(filters)
    return Response(throttle_time_ms=0, filter_results=[
        FilterResult(error_code=code, error_message=message, matching_acls=[
            Matching(error_code=ErrorCode.NONE, error_message=None,
                     resource_type=b.resource_type, resource_name=b.name,
                     pattern_type=b.pattern_type, principal=b.principal, host=b.host,
                     operation=b.operation, permission_type=b.permission)
            for b in deleted])
        for code, message, deleted in results])
