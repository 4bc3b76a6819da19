"""DescribeCluster (key 60), v0-2: the cluster id, the controller and the brokers.

A single broker is the whole cluster and its controller. v1 adds `endpoint_type`: 1 asks for
brokers, 2 for controllers; this node answers as both, with the same address. The brokers listed
are the live ones; v2 (KIP-1073, Kafka 4.0) with `include_fenced_brokers` adds the fenced brokers
of a cluster, each answer saying `is_fenced`. Asked for, the cluster's authorized operations are
Kafka's bitfield (1 << operation code): those the principal is allowed (security/authorizer.py),
every operation the cluster supports without an authorizer; else Kafka's "not requested" value.
"""

from trioka.apis.metadata import authorized_operations
from trioka.security.acls import CLUSTER, CLUSTER_NAME
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
    listener = ctx.connection.listener
    brokers = [(entry, False) for entry in broker.brokers_view(listener)]
    if request.include_fenced_brokers:     # v2+ only: older versions read it as false
        brokers = sorted(brokers + [(entry, True)
                                    for entry in broker.fenced_brokers_view(listener)])
    return Response(throttle_time_ms=0, error_code=0, endpoint_type=request.endpoint_type,
                    cluster_id=broker.cluster_id, controller_id=broker.controller_id_for_clients,
                    brokers=[Response.DescribeClusterBroker(broker_id=node, host=host, port=port,
                                                            rack=rack, is_fenced=fenced)
                             for (node, host, port, rack), fenced in brokers],
                    cluster_authorized_operations=authorized_operations(
                        broker, ctx, CLUSTER, CLUSTER_NAME)
                    if request.include_cluster_authorized_operations else -2**31)
