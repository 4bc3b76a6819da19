"""BrokerRegistration (key 62), v0-4: a broker joins the cluster (served on the controller
listener only, as in Kafka).

A broker registers at every start with its id, the cluster id, a new incarnation id, its
listeners, rack and the feature levels it supports. The controller answers with the broker epoch:
the offset of the RegisterBrokerRecord it wrote, once that record is committed. A new
incarnation starts fenced; the same incarnation registering again keeps its epoch. Errors, from
controller/cluster_control.py: INCONSISTENT_CLUSTER_ID (another cluster's broker),
DUPLICATE_BROKER_REGISTRATION (another live process already holds the id), UNSUPPORTED_VERSION
(it cannot run at a finalized feature level); the broker epoch is then -1. v1 adds
IsMigratingZkBroker, v2 the log dirs (KIP-858), v3 the previous broker epoch, v4 lists features
whose range starts at 0: all are accepted and not used.
"""


async def handle(broker, request, ctx):
    return await broker.controller.broker_registration(request, ctx.api_version)
