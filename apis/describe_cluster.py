"""DescribeCluster (key 60), v0-1: the cluster id, the controller and the brokers.

This broker is the whole cluster and its controller. v1 adds `endpoint_type`: 1 asks for brokers,
2 for controllers; this node answers as both, with the same address. Authorized operations are not
computed (no ACLs), so they stay Kafka's "not requested" value.
"""

from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.DESCRIBE_CLUSTER)

BROKERS, CONTROLLERS = 1, 2


async def handle(broker, request, ctx):
    if request.endpoint_type not in (BROKERS, CONTROLLERS):
        return Response(error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
                        error_message=f"Unknown endpoint type {request.endpoint_type}",
                        endpoint_type=request.endpoint_type, cluster_id=broker.cluster_id)
    return Response(throttle_time_ms=0, error_code=0, endpoint_type=request.endpoint_type,
                    cluster_id=broker.cluster_id, controller_id=broker.controller_id_for_clients,
                    brokers=[Response.DescribeClusterBroker(broker_id=node, host=host, port=port,
                                                            rack=rack)
                             for node, host, port, rack in
                             broker.brokers_view(ctx.connection.listener)])
