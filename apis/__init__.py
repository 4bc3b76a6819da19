"""The handler table: API key -> module. One module per Kafka API, each with:

- `VERSIONS = (min, max)`: the versions it decodes and serves (ApiVersions advertises these, or
  `ADVERTISED` where Kafka advertises more than it serves);
- `async def handle(broker, request, ctx)`: the response message, or None when none is due.

ApiVersions computes its answer from this table, so only what is here is advertised.
"""

from trioka.apis import (alter_configs, api_versions, create_partitions, create_topics,
                         delete_records, delete_topics, describe_cluster, describe_configs,
                         describe_log_dirs, fetch,
                         incremental_alter_configs, init_producer_id, list_offsets, metadata,
                         offset_for_leader_epoch, produce)
from trioka.apis import (delete_groups, describe_groups, find_coordinator, heartbeat, join_group,
                         leave_group, list_groups, offset_commit, offset_delete, offset_fetch,
                         sync_group)
from trioka.apis import (add_offsets_to_txn, add_partitions_to_txn, describe_producers,
                         describe_transactions, end_txn, list_transactions, txn_offset_commit)
from trioka.wire.api_keys import ApiKey

APIS = {
    ApiKey.PRODUCE: produce,
    ApiKey.FETCH: fetch,
    ApiKey.LIST_OFFSETS: list_offsets,
    ApiKey.METADATA: metadata,
    ApiKey.OFFSET_COMMIT: offset_commit,
    ApiKey.OFFSET_FETCH: offset_fetch,
    ApiKey.FIND_COORDINATOR: find_coordinator,
    ApiKey.JOIN_GROUP: join_group,
    ApiKey.HEARTBEAT: heartbeat,
    ApiKey.LEAVE_GROUP: leave_group,
    ApiKey.SYNC_GROUP: sync_group,
    ApiKey.DESCRIBE_GROUPS: describe_groups,
    ApiKey.LIST_GROUPS: list_groups,
    ApiKey.DELETE_GROUPS: delete_groups,
    ApiKey.OFFSET_DELETE: offset_delete,
    ApiKey.API_VERSIONS: api_versions,
    ApiKey.CREATE_TOPICS: create_topics,
    ApiKey.DELETE_TOPICS: delete_topics,
    ApiKey.INIT_PRODUCER_ID: init_producer_id,
    ApiKey.ADD_PARTITIONS_TO_TXN: add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: add_offsets_to_txn,
    ApiKey.END_TXN: end_txn,
    ApiKey.TXN_OFFSET_COMMIT: txn_offset_commit,
    ApiKey.DESCRIBE_PRODUCERS: describe_producers,
    ApiKey.DESCRIBE_TRANSACTIONS: describe_transactions,
    ApiKey.LIST_TRANSACTIONS: list_transactions,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: offset_for_leader_epoch,
    ApiKey.CREATE_PARTITIONS: create_partitions,
    ApiKey.DESCRIBE_CLUSTER: describe_cluster,
    ApiKey.DESCRIBE_CONFIGS: describe_configs,
    ApiKey.DELETE_RECORDS: delete_records,
    ApiKey.DESCRIBE_LOG_DIRS: describe_log_dirs,
    ApiKey.ALTER_CONFIGS: alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: incremental_alter_configs,
}
