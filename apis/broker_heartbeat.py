"""BrokerHeartbeat (key 63), v0-1: a registered broker's sign of life, and its wishes (served on
the controller listener only, as in Kafka).

Every `broker.heartbeat.interval.ms` a broker reports its broker epoch and how far it has read
the metadata log (`current_metadata_offset`), and whether it wants to be fenced or to shut down.
The controller moves it through Kafka's states (controller/cluster_control.py): a fenced broker
caught up with its own registration is unfenced; one that asks to shut down while leading
partitions enters controlled shutdown and is told `should_shut_down` once it leads nothing. A
broker silent for `broker.session.timeout.ms` is fenced by the controller's timer. The answer
waits for the commit of the records the heartbeat made. Errors: STALE_BROKER_EPOCH (an epoch
that is not the registration's, or no registration). v1 adds the offline log dirs (not used).
"""


async def handle(broker, request, ctx):
    return await broker.controller.broker_heartbeat(request, ctx.api_version)
