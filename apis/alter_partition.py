"""AlterPartition (key 56), v0-3: a partition leader asks the controller to change the ISR
(served on the controller listener only, as in Kafka).

The leader sends, per partition, its leader epoch, the partition epoch it last saw and the new
ISR; the controller checks it (controller/replication_control.py: FENCED_LEADER_EPOCH,
INVALID_UPDATE_VERSION, INELIGIBLE_REPLICA (OPERATION_NOT_ATTEMPTED before v2), INVALID_REQUEST,
UNKNOWN_TOPIC_ID / UNKNOWN_TOPIC_OR_PARTITION, NEW_LEADER_ELECTED when the change completed a
reassignment that moved the leadership), writes a PartitionChangeRecord and answers, once it is
committed, with the partition as it now stands (leader, leader epoch, ISR, recovery state,
partition epoch). A broker epoch that is not the leader's registration fails the whole request
with STALE_BROKER_EPOCH. v1 adds the leader recovery state (KIP-704), v2 names topics by id
(KIP-841), v3 gives each new ISR member's broker epoch (KIP-903).
"""


async def handle(broker, request, ctx):
    return await broker.controller.alter_partition(request, ctx.api_version)
