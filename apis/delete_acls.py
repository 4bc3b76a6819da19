"""DeleteAcls (key 31), v0-3: delete the ACL bindings matching each filter.

Each filter (Kafka's AclBindingFilter, as DescribeAcls reads it) is answered with the bindings it
deleted, each with its own error code (NONE). v0 filters match LITERAL bindings only. A filter
with an UNKNOWN element is INVALID_REQUEST; without an authorizer every filter is
SECURITY_DISABLED. The caller needs ALTER on the cluster. A node of a cluster forwards the
request to the controller, which writes RemoveAccessControlEntryRecords.
"""

from trioka.security.acls import LITERAL, AclFilter
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

from trioka.apis.create_acls import NO_AUTHORIZER

Response = response_class(ApiKey.DELETE_ACLS)
FilterResult = Response.DeleteAclsFilterResult
Matching = FilterResult.DeleteAclsMatchingAcl


def filters_of(request, version: int) -> list[AclFilter]:
    return [AclFilter(f.resource_type_filter, f.resource_name_filter,
                      LITERAL if version == 0 else f.pattern_type_filter, f.principal_filter,
                      f.host_filter, f.operation, f.permission_type)
            for f in request.filters]


async def handle(broker, request, ctx):
    authorizer = broker.authorizer
    if authorizer is None:
        return Response(throttle_time_ms=0, filter_results=[
            FilterResult(error_code=ErrorCode.SECURITY_DISABLED, error_message=NO_AUTHORIZER,
                         matching_acls=[]) for _ in request.filters])
    if broker.cluster is not None:
        # RemoveAccessControlEntryRecords from the controller; answered once this node's image
        # no longer has the bindings.
        try:
            response = await broker.cluster.forward(ApiKey.DELETE_ACLS, request,
                                                    ctx.api_version)
        except KafkaError as e:
            return Response(throttle_time_ms=0, filter_results=[
                FilterResult(error_code=e.code, error_message=e.message, matching_acls=[])
                for _ in request.filters])
        gone = [(m.resource_type, m.resource_name, m.pattern_type, m.principal, m.host,
                 m.operation, m.permission_type)
                for fr in response.filter_results for m in fr.matching_acls]
        await broker.cluster.wait_for_metadata(
            lambda: not {b.key() for b in authorizer.bindings()} & set(gone))
        return response
    return answer(await authorizer.delete(filters_of(request, ctx.api_version)))


def answer(results) -> object:
    """The response of (error code, message, the bindings deleted) per filter."""
    return Response(throttle_time_ms=0, filter_results=[
        FilterResult(error_code=code, error_message=message, matching_acls=[
            Matching(error_code=ErrorCode.NONE, error_message=None,
                     resource_type=b.resource_type, resource_name=b.name,
                     pattern_type=b.pattern_type, principal=b.principal, host=b.host,
                     operation=b.operation, permission_type=b.permission)
            for b in deleted])
        for code, message, deleted in results])
