"""Kafka's request and response bodies in trioka's compact notation (see wire/generate.py).

Each API key maps to (name, valid versions, flexible versions, unstable latest version,
request fields, response fields). One field a line: `name  type  [versions]  [null=versions]
[tag=N]  [default=value]`; children of a struct are indented by two spaces; versions are
"0+" when not written. RECORDS, at the end, holds Kafka's "data" schemas (coordinator records,
consumer protocol payloads) in the same notation. Written by wire/generate.py; edit the
generator, not this file.
"""

MESSAGES = {
    0: ('Produce', '0-13', '9+', False, """
transactional_id  string  3+  null=3+  default=null
acks  int16
timeout_ms  int32
topic_data  []TopicProduceData
  name  string  0-12
  topic_id  uuid  13+
  partition_data  []PartitionProduceData
    index  int32
    records  records  null=0+
""", """
responses  []TopicProduceResponse
  name  string  0-12
  topic_id  uuid  13+
  partition_responses  []PartitionProduceResponse
    index  int32
    error_code  int16
    base_offset  int64
    log_append_time_ms  int64  2+  default=-1
    log_start_offset  int64  5+  default=-1
    record_errors  []BatchIndexAndErrorMessage  8+
      batch_index  int32  8+
      batch_index_error_message  string  8+  null=8+  default=null
    error_message  string  8+  null=8+  default=null
    current_leader  LeaderIdAndEpoch  10+  tag=0
      leader_id  int32  10+  default=-1
      leader_epoch  int32  10+  default=-1
throttle_time_ms  int32  1+  default=0
node_endpoints  []NodeEndpoint  10+  tag=0
  node_id  int32  10+
  host  string  10+
  port  int32  10+
  rack  string  10+  null=10+  default=null
"""),
    1: ('Fetch', '0-18', '12+', False, """
cluster_id  string  12+  null=12+  tag=0  default=null
replica_id  int32  0-14  default=-1
replica_state  ReplicaState  15+  tag=1
  replica_id  int32  15+  default=-1
  replica_epoch  int64  15+  default=-1
max_wait_ms  int32
min_bytes  int32
max_bytes  int32  3+  default=0x7fffffff
isolation_level  int8  4+  default=0
session_id  int32  7+  default=0
session_epoch  int32  7+  default=-1
topics  []FetchTopic
  topic  string  0-12
  topic_id  uuid  13+
  partitions  []FetchPartition
    partition  int32
    current_leader_epoch  int32  9+  default=-1
    fetch_offset  int64
    last_fetched_epoch  int32  12+  default=-1
    log_start_offset  int64  5+  default=-1
    partition_max_bytes  int32
    replica_directory_id  uuid  17+  tag=0
    high_watermark  int64  18+  tag=1  default=9223372036854775807
forgotten_topics_data  []ForgottenTopic  7+
  topic  string  7-12
  topic_id  uuid  13+
  partitions  []int32  7+
rack_id  string  11+  default=
""", """
throttle_time_ms  int32  1+
error_code  int16  7+
session_id  int32  7+  default=0
responses  []FetchableTopicResponse
  topic  string  0-12
  topic_id  uuid  13+
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    high_watermark  int64
    last_stable_offset  int64  4+  default=-1
    log_start_offset  int64  5+  default=-1
    diverging_epoch  EpochEndOffset  12+  tag=0
      epoch  int32  12+  default=-1
      end_offset  int64  12+  default=-1
    current_leader  LeaderIdAndEpoch  12+  tag=1
      leader_id  int32  12+  default=-1
      leader_epoch  int32  12+  default=-1
    snapshot_id  SnapshotId  12+  tag=2
      end_offset  int64  default=-1
      epoch  int32  default=-1
    aborted_transactions  []AbortedTransaction  4+  null=4+
      producer_id  int64  4+
      first_offset  int64  4+
    preferred_read_replica  int32  11+  default=-1
    records  records  null=0+
node_endpoints  []NodeEndpoint  16+  tag=0
  node_id  int32  16+
  host  string  16+
  port  int32  16+
  rack  string  16+  null=16+  default=null
"""),
    2: ('ListOffsets', '0-10', '6+', False, """
replica_id  int32
isolation_level  int8  2+
topics  []ListOffsetsTopic
  name  string
  partitions  []ListOffsetsPartition
    partition_index  int32
    current_leader_epoch  int32  4+  default=-1
    timestamp  int64
    max_num_offsets  int32  0  default=1
timeout_ms  int32  10+
""", """
throttle_time_ms  int32  2+
topics  []ListOffsetsTopicResponse
  name  string
  partitions  []ListOffsetsPartitionResponse
    partition_index  int32
    error_code  int16
    old_style_offsets  []int64  0
    timestamp  int64  1+  default=-1
    offset  int64  1+  default=-1
    leader_epoch  int32  4+  default=-1
"""),
    3: ('Metadata', '0-13', '9+', False, """
topics  []MetadataRequestTopic  null=1+
  topic_id  uuid  10+
  name  string  null=10+
allow_auto_topic_creation  bool  4+  default=true
include_cluster_authorized_operations  bool  8-10
include_topic_authorized_operations  bool  8+
""", """
throttle_time_ms  int32  3+
brokers  []MetadataResponseBroker
  node_id  int32
  host  string
  port  int32
  rack  string  1+  null=1+  default=null
cluster_id  string  2+  null=2+  default=null
controller_id  int32  1+  default=-1
topics  []MetadataResponseTopic
  error_code  int16
  name  string  null=12+
  topic_id  uuid  10+
  is_internal  bool  1+  default=false
  partitions  []MetadataResponsePartition
    error_code  int16
    partition_index  int32
    leader_id  int32
    leader_epoch  int32  7+  default=-1
    replica_nodes  []int32
    isr_nodes  []int32
    offline_replicas  []int32  5+
  topic_authorized_operations  int32  8+  default=-2147483648
cluster_authorized_operations  int32  8-10  default=-2147483648
error_code  int16  13+
"""),
    8: ('OffsetCommit', '0-9', '8+', False, """
group_id  string
generation_id_or_member_epoch  int32  1+  default=-1
member_id  string  1+
group_instance_id  string  7+  null=7+  default=null
retention_time_ms  int64  2-4  default=-1
topics  []OffsetCommitRequestTopic
  name  string
  partitions  []OffsetCommitRequestPartition
    partition_index  int32
    committed_offset  int64
    committed_leader_epoch  int32  6+  default=-1
    commit_timestamp  int64  1  default=-1
    committed_metadata  string  null=0+
""", """
throttle_time_ms  int32  3+
topics  []OffsetCommitResponseTopic
  name  string
  partitions  []OffsetCommitResponsePartition
    partition_index  int32
    error_code  int16
"""),
    9: ('OffsetFetch', '0-9', '6+', False, """
group_id  string  0-7
topics  []OffsetFetchRequestTopic  0-7  null=2-7
  name  string  0-7
  partition_indexes  []int32  0-7
groups  []OffsetFetchRequestGroup  8+
  group_id  string  8+
  member_id  string  9+  null=9+  default=null
  member_epoch  int32  9+  default=-1
  topics  []OffsetFetchRequestTopics  8+  null=8+
    name  string  8+
    partition_indexes  []int32  8+
require_stable  bool  7+  default=false
""", """
throttle_time_ms  int32  3+
topics  []OffsetFetchResponseTopic  0-7
  name  string  0-7
  partitions  []OffsetFetchResponsePartition  0-7
    partition_index  int32  0-7
    committed_offset  int64  0-7
    committed_leader_epoch  int32  5-7  default=-1
    metadata  string  0-7  null=0-7
    error_code  int16  0-7
error_code  int16  2-7  default=0
groups  []OffsetFetchResponseGroup  8+
  group_id  string  8+
  topics  []OffsetFetchResponseTopics  8+
    name  string  8+
    partitions  []OffsetFetchResponsePartitions  8+
      partition_index  int32  8+
      committed_offset  int64  8+
      committed_leader_epoch  int32  8+  default=-1
      metadata  string  8+  null=8+
      error_code  int16  8+
  error_code  int16  8+  default=0
"""),
    10: ('FindCoordinator', '0-6', '3+', False, """
key  string  0-3
key_type  int8  1+  default=0
coordinator_keys  []string  4+
""", """
throttle_time_ms  int32  1+
error_code  int16  0-3
error_message  string  1-3  null=1-3
node_id  int32  0-3
host  string  0-3
port  int32  0-3
coordinators  []Coordinator  4+
  key  string  4+
  node_id  int32  4+
  host  string  4+
  port  int32  4+
  error_code  int16  4+
  error_message  string  4+  null=4+
"""),
    11: ('JoinGroup', '0-9', '6+', False, """
group_id  string
session_timeout_ms  int32
rebalance_timeout_ms  int32  1+  default=-1
member_id  string
group_instance_id  string  5+  null=5+  default=null
protocol_type  string
protocols  []JoinGroupRequestProtocol
  name  string
  metadata  bytes
reason  string  8+  null=8+  default=null
""", """
throttle_time_ms  int32  2+
error_code  int16
generation_id  int32  default=-1
protocol_type  string  7+  null=7+  default=null
protocol_name  string  null=7+
leader  string
skip_assignment  bool  9+  default=false
member_id  string
members  []JoinGroupResponseMember
  member_id  string
  group_instance_id  string  5+  null=5+  default=null
  metadata  bytes
"""),
    12: ('Heartbeat', '0-4', '4+', False, """
group_id  string
generation_id  int32
member_id  string
group_instance_id  string  3+  null=3+  default=null
""", """
throttle_time_ms  int32  1+
error_code  int16
"""),
    13: ('LeaveGroup', '0-5', '4+', False, """
group_id  string
member_id  string  0-2
members  []MemberIdentity  3+
  member_id  string  3+
  group_instance_id  string  3+  null=3+  default=null
  reason  string  5+  null=5+  default=null
""", """
throttle_time_ms  int32  1+
error_code  int16
members  []MemberResponse  3+
  member_id  string  3+
  group_instance_id  string  3+  null=3+
  error_code  int16  3+
"""),
    14: ('SyncGroup', '0-5', '4+', False, """
group_id  string
generation_id  int32
member_id  string
group_instance_id  string  3+  null=3+  default=null
protocol_type  string  5+  null=5+  default=null
protocol_name  string  5+  null=5+  default=null
assignments  []SyncGroupRequestAssignment
  member_id  string
  assignment  bytes
""", """
throttle_time_ms  int32  1+
error_code  int16
protocol_type  string  5+  null=5+  default=null
protocol_name  string  5+  null=5+  default=null
assignment  bytes
"""),
    15: ('DescribeGroups', '0-6', '5+', False, """
groups  []string
include_authorized_operations  bool  3+
""", """
throttle_time_ms  int32  1+
groups  []DescribedGroup
  error_code  int16
  error_message  string  6+  null=6+  default=null
  group_id  string
  group_state  string
  protocol_type  string
  protocol_data  string
  members  []DescribedGroupMember
    member_id  string
    group_instance_id  string  4+  null=4+  default=null
    client_id  string
    client_host  string
    member_metadata  bytes
    member_assignment  bytes
  authorized_operations  int32  3+  default=-2147483648
"""),
    16: ('ListGroups', '0-5', '3+', False, """
states_filter  []string  4+
types_filter  []string  5+
""", """
throttle_time_ms  int32  1+
error_code  int16
groups  []ListedGroup
  group_id  string
  protocol_type  string
  group_state  string  4+
  group_type  string  5+
"""),
    17: ('SaslHandshake', '0-1', 'none', False, """
mechanism  string
""", """
error_code  int16
mechanisms  []string
"""),
    18: ('ApiVersions', '0-4', '3+', False, """
client_software_name  string  3+
client_software_version  string  3+
""", """
error_code  int16
api_keys  []ApiVersion
  api_key  int16
  min_version  int16
  max_version  int16
throttle_time_ms  int32  1+
supported_features  []SupportedFeatureKey  3+  tag=0
  name  string  3+
  min_version  int16  3+
  max_version  int16  3+
finalized_features_epoch  int64  3+  tag=1  default=-1
finalized_features  []FinalizedFeatureKey  3+  tag=2
  name  string  3+
  max_version_level  int16  3+
  min_version_level  int16  3+
zk_migration_ready  bool  3+  tag=3  default=false
"""),
    19: ('CreateTopics', '0-7', '5+', False, """
topics  []CreatableTopic
  name  string
  num_partitions  int32
  replication_factor  int16
  assignments  []CreatableReplicaAssignment
    partition_index  int32
    broker_ids  []int32
  configs  []CreatableTopicConfig
    name  string
    value  string  null=0+
timeout_ms  int32  default=60000
validate_only  bool  1+  default=false
""", """
throttle_time_ms  int32  2+
topics  []CreatableTopicResult
  name  string
  topic_id  uuid  7+
  error_code  int16
  error_message  string  1+  null=0+
  topic_config_error_code  int16  5+  tag=0
  num_partitions  int32  5+  default=-1
  replication_factor  int16  5+  default=-1
  configs  []CreatableTopicConfigs  5+  null=5+
    name  string  5+
    value  string  5+  null=5+
    read_only  bool  5+
    config_source  int8  5+  default=-1
    is_sensitive  bool  5+
"""),
    20: ('DeleteTopics', '0-6', '4+', False, """
topics  []DeleteTopicState  6+
  name  string  6+  null=6+  default=null
  topic_id  uuid  6+
topic_names  []string  0-5
timeout_ms  int32
""", """
throttle_time_ms  int32  1+
responses  []DeletableTopicResult
  name  string  null=6+
  topic_id  uuid  6+
  error_code  int16
  error_message  string  5+  null=5+  default=null
"""),
    21: ('DeleteRecords', '0-2', '2+', False, """
topics  []DeleteRecordsTopic
  name  string
  partitions  []DeleteRecordsPartition
    partition_index  int32
    offset  int64
timeout_ms  int32
""", """
throttle_time_ms  int32
topics  []DeleteRecordsTopicResult
  name  string
  partitions  []DeleteRecordsPartitionResult
    partition_index  int32
    low_watermark  int64
    error_code  int16
"""),
    22: ('InitProducerId', '0-5', '2+', False, """
transactional_id  string  null=0+
transaction_timeout_ms  int32
producer_id  int64  3+  default=-1
producer_epoch  int16  3+  default=-1
""", """
throttle_time_ms  int32
error_code  int16
producer_id  int64  default=-1
producer_epoch  int16
"""),
    23: ('OffsetForLeaderEpoch', '0-4', '4+', False, """
replica_id  int32  3+  default=-2
topics  []OffsetForLeaderTopic
  topic  string
  partitions  []OffsetForLeaderPartition
    partition  int32
    current_leader_epoch  int32  2+  default=-1
    leader_epoch  int32
""", """
throttle_time_ms  int32  2+
topics  []OffsetForLeaderTopicResult
  topic  string
  partitions  []EpochEndOffset
    error_code  int16
    partition  int32
    leader_epoch  int32  1+  default=-1
    end_offset  int64  default=-1
"""),
    24: ('AddPartitionsToTxn', '0-5', '3+', False, """
transactions  []AddPartitionsToTxnTransaction  4+
  transactional_id  string  4+
  producer_id  int64  4+
  producer_epoch  int16  4+
  verify_only  bool  4+  default=False
  topics  []AddPartitionsToTxnTopic  4+
    name  string
    partitions  []int32
v3_and_below_transactional_id  string  0-3
v3_and_below_producer_id  int64  0-3
v3_and_below_producer_epoch  int16  0-3
v3_and_below_topics  []AddPartitionsToTxnTopic  0-3
  name  string
  partitions  []int32
""", """
throttle_time_ms  int32
error_code  int16  4+
results_by_transaction  []AddPartitionsToTxnResult  4+
  transactional_id  string  4+
  topic_results  []AddPartitionsToTxnTopicResult  4+
    name  string
    results_by_partition  []AddPartitionsToTxnPartitionResult
      partition_index  int32
      partition_error_code  int16
results_by_topic_v3_and_below  []AddPartitionsToTxnTopicResult  0-3
  name  string
  results_by_partition  []AddPartitionsToTxnPartitionResult
    partition_index  int32
    partition_error_code  int16
"""),
    25: ('AddOffsetsToTxn', '0-4', '3+', False, """
transactional_id  string
producer_id  int64
producer_epoch  int16
group_id  string
""", """
throttle_time_ms  int32
error_code  int16
"""),
    26: ('EndTxn', '0-5', '3+', False, """
transactional_id  string
producer_id  int64
producer_epoch  int16
committed  bool
""", """
throttle_time_ms  int32
error_code  int16
producer_id  int64  5+  default=-1
producer_epoch  int16  5+  default=-1
"""),
    27: ('WriteTxnMarkers', '0-1', '1+', False, """
markers  []WritableTxnMarker
  producer_id  int64
  producer_epoch  int16
  transaction_result  bool
  topics  []WritableTxnMarkerTopic
    name  string
    partition_indexes  []int32
  coordinator_epoch  int32
""", """
markers  []WritableTxnMarkerResult
  producer_id  int64
  topics  []WritableTxnMarkerTopicResult
    name  string
    partitions  []WritableTxnMarkerPartitionResult
      partition_index  int32
      error_code  int16
"""),
    28: ('TxnOffsetCommit', '0-5', '3+', False, """
transactional_id  string
group_id  string
producer_id  int64
producer_epoch  int16
generation_id  int32  3+  default=-1
member_id  string  3+  default=
group_instance_id  string  3+  null=3+  default=null
topics  []TxnOffsetCommitRequestTopic
  name  string
  partitions  []TxnOffsetCommitRequestPartition
    partition_index  int32
    committed_offset  int64
    committed_leader_epoch  int32  2+  default=-1
    committed_metadata  string  null=0+
""", """
throttle_time_ms  int32
topics  []TxnOffsetCommitResponseTopic
  name  string
  partitions  []TxnOffsetCommitResponsePartition
    partition_index  int32
    error_code  int16
"""),
    29: ('DescribeAcls', '0-3', '2+', False, """
resource_type_filter  int8
resource_name_filter  string  null=0+
pattern_type_filter  int8  1+  default=3
principal_filter  string  null=0+
host_filter  string  null=0+
operation  int8
permission_type  int8
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
resources  []DescribeAclsResource
  resource_type  int8
  resource_name  string
  pattern_type  int8  1+  default=3
  acls  []AclDescription
    principal  string
    host  string
    operation  int8
    permission_type  int8
"""),
    30: ('CreateAcls', '0-3', '2+', False, """
creations  []AclCreation
  resource_type  int8
  resource_name  string
  resource_pattern_type  int8  1+  default=3
  principal  string
  host  string
  operation  int8
  permission_type  int8
""", """
throttle_time_ms  int32
results  []AclCreationResult
  error_code  int16
  error_message  string  null=0+
"""),
    31: ('DeleteAcls', '0-3', '2+', False, """
filters  []DeleteAclsFilter
  resource_type_filter  int8
  resource_name_filter  string  null=0+
  pattern_type_filter  int8  1+  default=3
  principal_filter  string  null=0+
  host_filter  string  null=0+
  operation  int8
  permission_type  int8
""", """
throttle_time_ms  int32
filter_results  []DeleteAclsFilterResult
  error_code  int16
  error_message  string  null=0+
  matching_acls  []DeleteAclsMatchingAcl
    error_code  int16
    error_message  string  null=0+
    resource_type  int8
    resource_name  string
    pattern_type  int8  1+  default=3
    principal  string
    host  string
    operation  int8
    permission_type  int8
"""),
    32: ('DescribeConfigs', '0-4', '4+', False, """
resources  []DescribeConfigsResource
  resource_type  int8
  resource_name  string
  configuration_keys  []string  null=0+
include_synonyms  bool  1+  default=false
include_documentation  bool  3+  default=false
""", """
throttle_time_ms  int32
results  []DescribeConfigsResult
  error_code  int16
  error_message  string  null=0+
  resource_type  int8
  resource_name  string
  configs  []DescribeConfigsResourceResult
    name  string
    value  string  null=0+
    read_only  bool
    is_default  bool  0
    config_source  int8  1+  default=-1
    is_sensitive  bool
    synonyms  []DescribeConfigsSynonym  1+
      name  string  1+
      value  string  1+  null=0+
      source  int8  1+
    config_type  int8  3+  default=0
    documentation  string  3+  null=0+
"""),
    33: ('AlterConfigs', '0-2', '2+', False, """
resources  []AlterConfigsResource
  resource_type  int8
  resource_name  string
  configs  []AlterableConfig
    name  string
    value  string  null=0+
validate_only  bool
""", """
throttle_time_ms  int32
responses  []AlterConfigsResourceResponse
  error_code  int16
  error_message  string  null=0+
  resource_type  int8
  resource_name  string
"""),
    34: ('AlterReplicaLogDirs', '0-2', '2+', False, """
dirs  []AlterReplicaLogDir
  path  string
  topics  []AlterReplicaLogDirTopic
    name  string
    partitions  []int32
""", """
throttle_time_ms  int32
results  []AlterReplicaLogDirTopicResult
  topic_name  string
  partitions  []AlterReplicaLogDirPartitionResult
    partition_index  int32
    error_code  int16
"""),
    35: ('DescribeLogDirs', '0-4', '2+', False, """
topics  []DescribableLogDirTopic  null=0+
  topic  string
  partitions  []int32
""", """
throttle_time_ms  int32
error_code  int16  3+
results  []DescribeLogDirsResult
  error_code  int16
  log_dir  string
  topics  []DescribeLogDirsTopic
    name  string
    partitions  []DescribeLogDirsPartition
      partition_index  int32
      partition_size  int64
      offset_lag  int64
      is_future_key  bool
  total_bytes  int64  4+  default=-1
  usable_bytes  int64  4+  default=-1
"""),
    36: ('SaslAuthenticate', '0-2', '2+', False, """
auth_bytes  bytes
""", """
error_code  int16
error_message  string  null=0+
auth_bytes  bytes
session_lifetime_ms  int64  1+  default=0
"""),
    37: ('CreatePartitions', '0-3', '2+', False, """
topics  []CreatePartitionsTopic
  name  string
  count  int32
  assignments  []CreatePartitionsAssignment  null=0+
    broker_ids  []int32
timeout_ms  int32
validate_only  bool
""", """
throttle_time_ms  int32
results  []CreatePartitionsTopicResult
  name  string
  error_code  int16
  error_message  string  null=0+  default=null
"""),
    38: ('CreateDelegationToken', '0-3', '2+', False, """
owner_principal_type  string  3+  null=3+
owner_principal_name  string  3+  null=3+
renewers  []CreatableRenewers
  principal_type  string
  principal_name  string
max_lifetime_ms  int64
""", """
error_code  int16
principal_type  string
principal_name  string
token_requester_principal_type  string  3+
token_requester_principal_name  string  3+
issue_timestamp_ms  int64
expiry_timestamp_ms  int64
max_timestamp_ms  int64
token_id  string
hmac  bytes
throttle_time_ms  int32
"""),
    39: ('RenewDelegationToken', '0-2', '2+', False, """
hmac  bytes
renew_period_ms  int64
""", """
error_code  int16
expiry_timestamp_ms  int64
throttle_time_ms  int32
"""),
    40: ('ExpireDelegationToken', '0-2', '2+', False, """
hmac  bytes
expiry_time_period_ms  int64
""", """
error_code  int16
expiry_timestamp_ms  int64
throttle_time_ms  int32
"""),
    41: ('DescribeDelegationToken', '0-3', '2+', False, """
owners  []DescribeDelegationTokenOwner  null=0+
  principal_type  string
  principal_name  string
""", """
error_code  int16
tokens  []DescribedDelegationToken
  principal_type  string
  principal_name  string
  token_requester_principal_type  string  3+
  token_requester_principal_name  string  3+
  issue_timestamp  int64
  expiry_timestamp  int64
  max_timestamp  int64
  token_id  string
  hmac  bytes
  renewers  []DescribedDelegationTokenRenewer
    principal_type  string
    principal_name  string
throttle_time_ms  int32
"""),
    42: ('DeleteGroups', '0-2', '2+', False, """
groups_names  []string
""", """
throttle_time_ms  int32
results  []DeletableGroupResult
  group_id  string
  error_code  int16
"""),
    43: ('ElectLeaders', '0-2', '2+', False, """
election_type  int8  1+
topic_partitions  []TopicPartitions  null=0+
  topic  string
  partitions  []int32
timeout_ms  int32  default=60000
""", """
throttle_time_ms  int32
error_code  int16  1+
replica_election_results  []ReplicaElectionResult
  topic  string
  partition_result  []PartitionResult
    partition_id  int32
    error_code  int16
    error_message  string  null=0+
"""),
    44: ('IncrementalAlterConfigs', '0-1', '1+', False, """
resources  []AlterConfigsResource
  resource_type  int8
  resource_name  string
  configs  []AlterableConfig
    name  string
    config_operation  int8
    value  string  null=0+
validate_only  bool
""", """
throttle_time_ms  int32
responses  []AlterConfigsResourceResponse
  error_code  int16
  error_message  string  null=0+
  resource_type  int8
  resource_name  string
"""),
    45: ('AlterPartitionReassignments', '0-1', '0+', False, """
timeout_ms  int32  default=60000
allow_replication_factor_change  bool  1+  default=true
topics  []ReassignableTopic
  name  string
  partitions  []ReassignablePartition
    partition_index  int32
    replicas  []int32  null=0+  default=null
""", """
throttle_time_ms  int32
allow_replication_factor_change  bool  1+  default=true
error_code  int16
error_message  string  null=0+
responses  []ReassignableTopicResponse
  name  string
  partitions  []ReassignablePartitionResponse
    partition_index  int32
    error_code  int16
    error_message  string  null=0+
"""),
    46: ('ListPartitionReassignments', '0', '0+', False, """
timeout_ms  int32  default=60000
topics  []ListPartitionReassignmentsTopics  null=0+  default=null
  name  string
  partition_indexes  []int32
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
topics  []OngoingTopicReassignment
  name  string
  partitions  []OngoingPartitionReassignment
    partition_index  int32
    replicas  []int32
    adding_replicas  []int32
    removing_replicas  []int32
"""),
    47: ('OffsetDelete', '0', 'none', False, """
group_id  string
topics  []OffsetDeleteRequestTopic
  name  string
  partitions  []OffsetDeleteRequestPartition
    partition_index  int32
""", """
error_code  int16
throttle_time_ms  int32
topics  []OffsetDeleteResponseTopic
  name  string
  partitions  []OffsetDeleteResponsePartition
    partition_index  int32
    error_code  int16
"""),
    48: ('DescribeClientQuotas', '0-1', '1+', False, """
components  []ComponentData
  entity_type  string
  match_type  int8
  match  string  null=0+
strict  bool
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
entries  []EntryData  null=0+
  entity  []EntityData
    entity_type  string
    entity_name  string  null=0+
  values  []ValueData
    key  string
    value  float64
"""),
    49: ('AlterClientQuotas', '0-1', '1+', False, """
entries  []EntryData
  entity  []EntityData
    entity_type  string
    entity_name  string  null=0+
  ops  []OpData
    key  string
    value  float64
    remove  bool
validate_only  bool
""", """
throttle_time_ms  int32
entries  []EntryData
  error_code  int16
  error_message  string  null=0+
  entity  []EntityData
    entity_type  string
    entity_name  string  null=0+
"""),
    50: ('DescribeUserScramCredentials', '0', '0+', False, """
users  []UserName  null=0+
  name  string
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
results  []DescribeUserScramCredentialsResult
  user  string
  error_code  int16
  error_message  string  null=0+
  credential_infos  []CredentialInfo
    mechanism  int8
    iterations  int32
"""),
    51: ('AlterUserScramCredentials', '0', '0+', False, """
deletions  []ScramCredentialDeletion
  name  string
  mechanism  int8
upsertions  []ScramCredentialUpsertion
  name  string
  mechanism  int8
  iterations  int32
  salt  bytes
  salted_password  bytes
""", """
throttle_time_ms  int32
results  []AlterUserScramCredentialsResult
  user  string
  error_code  int16
  error_message  string  null=0+
"""),
    52: ('Vote', '0-1', '0+', False, """
cluster_id  string  null=0+  default=null
voter_id  int32  1+  default=-1
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    candidate_epoch  int32
    candidate_id  int32
    candidate_directory_id  uuid  1+
    voter_directory_id  uuid  1+
    last_offset_epoch  int32
    last_offset  int64
""", """
error_code  int16
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    leader_id  int32
    leader_epoch  int32
    vote_granted  bool
node_endpoints  []NodeEndpoint  1+  tag=0
  node_id  int32  1+
  host  string  1+
  port  uint16  1+
"""),
    53: ('BeginQuorumEpoch', '0-1', '1+', False, """
cluster_id  string  null=0+  default=null
voter_id  int32  1+  default=-1
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    voter_directory_id  uuid  1+
    leader_id  int32
    leader_epoch  int32
leader_endpoints  []LeaderEndpoint  1+
  name  string  1+
  host  string  1+
  port  uint16  1+
""", """
error_code  int16
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    leader_id  int32
    leader_epoch  int32
node_endpoints  []NodeEndpoint  1+  tag=0
  node_id  int32  1+
  host  string  1+
  port  uint16  1+
"""),
    54: ('EndQuorumEpoch', '0-1', '1+', False, """
cluster_id  string  null=0+  default=null
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    leader_id  int32
    leader_epoch  int32
    preferred_successors  []int32  0
    preferred_candidates  []ReplicaInfo  1+
      candidate_id  int32  1+
      candidate_directory_id  uuid  1+
leader_endpoints  []LeaderEndpoint  1+
  name  string  1+
  host  string  1+
  port  uint16  1+
""", """
error_code  int16
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    leader_id  int32
    leader_epoch  int32
node_endpoints  []NodeEndpoint  1+  tag=0
  node_id  int32  1+
  host  string  1+
  port  uint16  1+
"""),
    55: ('DescribeQuorum', '0-2', '0+', False, """
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
""", """
error_code  int16
error_message  string  2+  null=2+
topics  []TopicData
  topic_name  string
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    error_message  string  2+  null=2+
    leader_id  int32
    leader_epoch  int32
    high_watermark  int64
    current_voters  []ReplicaState
      replica_id  int32
      replica_directory_id  uuid  2+
      log_end_offset  int64
      last_fetch_timestamp  int64  1+  default=-1
      last_caught_up_timestamp  int64  1+  default=-1
    observers  []ReplicaState
      replica_id  int32
      replica_directory_id  uuid  2+
      log_end_offset  int64
      last_fetch_timestamp  int64  1+  default=-1
      last_caught_up_timestamp  int64  1+  default=-1
nodes  []Node  2+
  node_id  int32  2+
  listeners  []Listener  2+
    name  string  2+
    host  string  2+
    port  uint16  2+
"""),
    56: ('AlterPartition', '0-3', '0+', False, """
broker_id  int32
broker_epoch  int64  default=-1
topics  []TopicData
  topic_name  string  0-1
  topic_id  uuid  2+
  partitions  []PartitionData
    partition_index  int32
    leader_epoch  int32
    new_isr  []int32  0-2
    new_isr_with_epochs  []BrokerState  3+
      broker_id  int32  3+
      broker_epoch  int64  3+  default=-1
    leader_recovery_state  int8  1+  default=0
    partition_epoch  int32
""", """
throttle_time_ms  int32
error_code  int16
topics  []TopicData
  topic_name  string  0-1
  topic_id  uuid  2+
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    leader_id  int32
    leader_epoch  int32
    isr  []int32
    leader_recovery_state  int8  1+  default=0
    partition_epoch  int32
"""),
    57: ('UpdateFeatures', '0-2', '0+', False, """
timeout_ms  int32  default=60000
feature_updates  []FeatureUpdateKey
  feature  string
  max_version_level  int16
  allow_downgrade  bool  0
  upgrade_type  int8  1+  default=1
validate_only  bool  1+  default=False
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
results  []UpdatableFeatureResult  0-1
  feature  string
  error_code  int16
  error_message  string  null=0+
"""),
    58: ('Envelope', '0', '0+', False, """
request_data  bytes
request_principal  bytes  null=0+
client_host_address  bytes
""", """
response_data  bytes  null=0+  default=null
error_code  int16
"""),
    59: ('FetchSnapshot', '0-1', '0+', False, """
cluster_id  string  null=0+  tag=0  default=null
replica_id  int32  default=-1
max_bytes  int32  default=0x7fffffff
topics  []TopicSnapshot
  name  string
  partitions  []PartitionSnapshot
    partition  int32
    current_leader_epoch  int32
    snapshot_id  SnapshotId
      end_offset  int64
      epoch  int32
    position  int64
    replica_directory_id  uuid  1+  tag=0
""", """
throttle_time_ms  int32
error_code  int16
topics  []TopicSnapshot
  name  string
  partitions  []PartitionSnapshot
    index  int32
    error_code  int16
    snapshot_id  SnapshotId
      end_offset  int64
      epoch  int32
    current_leader  LeaderIdAndEpoch  tag=0
      leader_id  int32
      leader_epoch  int32
    size  int64
    position  int64
    unaligned_records  records
node_endpoints  []NodeEndpoint  1+  tag=0
  node_id  int32  1+
  host  string  1+
  port  uint16  1+
"""),
    60: ('DescribeCluster', '0-2', '0+', False, """
include_cluster_authorized_operations  bool
endpoint_type  int8  1+  default=1
include_fenced_brokers  bool  2+  default=false
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+  default=null
endpoint_type  int8  1+  default=1
cluster_id  string
controller_id  int32  default=-1
brokers  []DescribeClusterBroker
  broker_id  int32
  host  string
  port  int32
  rack  string  null=0+  default=null
  is_fenced  bool  2+  default=false
cluster_authorized_operations  int32  default=-2147483648
"""),
    61: ('DescribeProducers', '0', '0+', False, """
topics  []TopicRequest
  name  string
  partition_indexes  []int32
""", """
throttle_time_ms  int32
topics  []TopicResponse
  name  string
  partitions  []PartitionResponse
    partition_index  int32
    error_code  int16
    error_message  string  null=0+  default=null
    active_producers  []ProducerState
      producer_id  int64
      producer_epoch  int32
      last_sequence  int32  default=-1
      last_timestamp  int64  default=-1
      coordinator_epoch  int32
      current_txn_start_offset  int64  default=-1
"""),
    62: ('BrokerRegistration', '0-4', '0+', False, """
broker_id  int32
cluster_id  string
incarnation_id  uuid
listeners  []Listener
  name  string
  host  string
  port  uint16
  security_protocol  int16
features  []Feature
  name  string
  min_supported_version  int16
  max_supported_version  int16
rack  string  null=0+
is_migrating_zk_broker  bool  1+  default=false
log_dirs  []uuid  2+
previous_broker_epoch  int64  3+  default=-1
""", """
throttle_time_ms  int32
error_code  int16
broker_epoch  int64  default=-1
"""),
    63: ('BrokerHeartbeat', '0-1', '0+', False, """
broker_id  int32
broker_epoch  int64  default=-1
current_metadata_offset  int64
want_fence  bool
want_shut_down  bool
offline_log_dirs  []uuid  1+  tag=0
""", """
throttle_time_ms  int32
error_code  int16
is_caught_up  bool  default=false
is_fenced  bool  default=true
should_shut_down  bool
"""),
    64: ('UnregisterBroker', '0', '0+', False, """
broker_id  int32
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
"""),
    65: ('DescribeTransactions', '0', '0+', False, """
transactional_ids  []string
""", """
throttle_time_ms  int32
transaction_states  []TransactionState
  error_code  int16
  transactional_id  string
  transaction_state  string
  transaction_timeout_ms  int32
  transaction_start_time_ms  int64
  producer_id  int64
  producer_epoch  int16
  topics  []TopicData
    topic  string
    partitions  []int32
"""),
    66: ('ListTransactions', '0-2', '0+', False, """
state_filters  []string
producer_id_filters  []int64
duration_filter  int64  1+  default=-1
transactional_id_pattern  string  2+  null=2+  default=null
""", """
throttle_time_ms  int32
error_code  int16
unknown_state_filters  []string
transaction_states  []TransactionState
  transactional_id  string
  producer_id  int64
  transaction_state  string
"""),
    67: ('AllocateProducerIds', '0', '0+', False, """
broker_id  int32
broker_epoch  int64  default=-1
""", """
throttle_time_ms  int32
error_code  int16
producer_id_start  int64
producer_id_len  int32
"""),
    68: ('ConsumerGroupHeartbeat', '0-1', '0+', True, """
group_id  string
member_id  string
member_epoch  int32
instance_id  string  null=0+  default=null
rack_id  string  null=0+  default=null
rebalance_timeout_ms  int32  default=-1
subscribed_topic_names  []string  null=0+  default=null
subscribed_topic_regex  string  1+  null=1+  default=null
server_assignor  string  null=0+  default=null
topic_partitions  []TopicPartitions  null=0+  default=null
  topic_id  uuid
  partitions  []int32
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+  default=null
member_id  string  null=0+  default=null
member_epoch  int32
heartbeat_interval_ms  int32
assignment  Assignment  null=0+  default=null
  topic_partitions  []TopicPartitions
    topic_id  uuid
    partitions  []int32
"""),
    69: ('ConsumerGroupDescribe', '0-1', '0+', False, """
group_ids  []string
include_authorized_operations  bool
""", """
throttle_time_ms  int32
groups  []DescribedGroup
  error_code  int16
  error_message  string  null=0+  default=null
  group_id  string
  group_state  string
  group_epoch  int32
  assignment_epoch  int32
  assignor_name  string
  members  []Member
    member_id  string
    instance_id  string  null=0+  default=null
    rack_id  string  null=0+  default=null
    member_epoch  int32
    client_id  string
    client_host  string
    subscribed_topic_names  []string
    subscribed_topic_regex  string  null=0+  default=null
    assignment  Assignment
      topic_partitions  []TopicPartitions
        topic_id  uuid
        topic_name  string
        partitions  []int32
    target_assignment  Assignment
      topic_partitions  []TopicPartitions
        topic_id  uuid
        topic_name  string
        partitions  []int32
    member_type  int8  1+  default=-1
  authorized_operations  int32  default=-2147483648
"""),
    70: ('ControllerRegistration', '0', '0+', False, """
controller_id  int32
incarnation_id  uuid
zk_migration_ready  bool
listeners  []Listener
  name  string
  host  string
  port  uint16
  security_protocol  int16
features  []Feature
  name  string
  min_supported_version  int16
  max_supported_version  int16
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
"""),
    71: ('GetTelemetrySubscriptions', '0', '0+', False, """
client_instance_id  uuid
""", """
throttle_time_ms  int32
error_code  int16
client_instance_id  uuid
subscription_id  int32
accepted_compression_types  []int8
push_interval_ms  int32
telemetry_max_bytes  int32
delta_temporality  bool
requested_metrics  []string
"""),
    72: ('PushTelemetry', '0', '0+', False, """
client_instance_id  uuid
subscription_id  int32
terminating  bool
compression_type  int8
metrics  bytes
""", """
throttle_time_ms  int32
error_code  int16
"""),
    73: ('AssignReplicasToDirs', '0', '0+', False, """
broker_id  int32
broker_epoch  int64  default=-1
directories  []DirectoryData
  id  uuid
  topics  []TopicData
    topic_id  uuid
    partitions  []PartitionData
      partition_index  int32
""", """
throttle_time_ms  int32
error_code  int16
directories  []DirectoryData
  id  uuid
  topics  []TopicData
    topic_id  uuid
    partitions  []PartitionData
      partition_index  int32
      error_code  int16
"""),
    74: ('ListClientMetricsResources', '0', '0+', False, """
""", """
throttle_time_ms  int32
error_code  int16
client_metrics_resources  []ClientMetricsResource
  name  string
"""),
    75: ('DescribeTopicPartitions', '0', '0+', False, """
topics  []TopicRequest
  name  string
response_partition_limit  int32  default=2000
cursor  Cursor  null=0+  default=null
  topic_name  string
  partition_index  int32
""", """
throttle_time_ms  int32
topics  []DescribeTopicPartitionsResponseTopic
  error_code  int16
  name  string  null=0+
  topic_id  uuid
  is_internal  bool  default=false
  partitions  []DescribeTopicPartitionsResponsePartition
    error_code  int16
    partition_index  int32
    leader_id  int32
    leader_epoch  int32  default=-1
    replica_nodes  []int32
    isr_nodes  []int32
    eligible_leader_replicas  []int32  null=0+  default=null
    last_known_elr  []int32  null=0+  default=null
    offline_replicas  []int32
  topic_authorized_operations  int32  default=-2147483648
next_cursor  Cursor  null=0+  default=null
  topic_name  string
  partition_index  int32
"""),
    76: ('ShareGroupHeartbeat', '0', '0+', True, """
group_id  string
member_id  string
member_epoch  int32
rack_id  string  null=0+  default=null
subscribed_topic_names  []string  null=0+  default=null
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+  default=null
member_id  string  null=0+  default=null
member_epoch  int32
heartbeat_interval_ms  int32
assignment  Assignment  null=0+  default=null
  topic_partitions  []TopicPartitions
    topic_id  uuid
    partitions  []int32
"""),
    77: ('ShareGroupDescribe', '0', '0+', True, """
group_ids  []string
include_authorized_operations  bool
""", """
throttle_time_ms  int32
groups  []DescribedGroup
  error_code  int16
  error_message  string  null=0+  default=null
  group_id  string
  group_state  string
  group_epoch  int32
  assignment_epoch  int32
  assignor_name  string
  members  []Member
    member_id  string
    rack_id  string  null=0+  default=null
    member_epoch  int32
    client_id  string
    client_host  string
    subscribed_topic_names  []string
    assignment  Assignment
      topic_partitions  []TopicPartitions
        topic_id  uuid
        topic_name  string
        partitions  []int32
  authorized_operations  int32  default=-2147483648
"""),
    78: ('ShareFetch', '0', '0+', True, """
group_id  string  null=0+  default=null
member_id  string  null=0+
share_session_epoch  int32
max_wait_ms  int32
min_bytes  int32
max_bytes  int32  default=0x7fffffff
topics  []FetchTopic
  topic_id  uuid
  partitions  []FetchPartition
    partition_index  int32
    partition_max_bytes  int32
    acknowledgement_batches  []AcknowledgementBatch
      first_offset  int64
      last_offset  int64
      acknowledge_types  []int8
forgotten_topics_data  []ForgottenTopic
  topic_id  uuid
  partitions  []int32
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+  default=null
responses  []ShareFetchableTopicResponse
  topic_id  uuid
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    error_message  string  null=0+  default=null
    acknowledge_error_code  int16
    acknowledge_error_message  string  null=0+  default=null
    current_leader  LeaderIdAndEpoch
      leader_id  int32
      leader_epoch  int32
    records  records  null=0+
    acquired_records  []AcquiredRecords
      first_offset  int64
      last_offset  int64
      delivery_count  int16
node_endpoints  []NodeEndpoint
  node_id  int32
  host  string
  port  int32
  rack  string  null=0+  default=null
"""),
    79: ('ShareAcknowledge', '0', '0+', True, """
group_id  string  null=0+  default=null
member_id  string  null=0+
share_session_epoch  int32
topics  []AcknowledgeTopic
  topic_id  uuid
  partitions  []AcknowledgePartition
    partition_index  int32
    acknowledgement_batches  []AcknowledgementBatch
      first_offset  int64
      last_offset  int64
      acknowledge_types  []int8
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+  default=null
responses  []ShareAcknowledgeTopicResponse
  topic_id  uuid
  partitions  []PartitionData
    partition_index  int32
    error_code  int16
    error_message  string  null=0+  default=null
    current_leader  LeaderIdAndEpoch
      leader_id  int32
      leader_epoch  int32
node_endpoints  []NodeEndpoint
  node_id  int32
  host  string
  port  int32
  rack  string  null=0+  default=null
"""),
    80: ('AddRaftVoter', '0', '0+', False, """
cluster_id  string  null=0+
timeout_ms  int32
voter_id  int32
voter_directory_id  uuid
listeners  []Listener
  name  string
  host  string
  port  uint16
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
"""),
    81: ('RemoveRaftVoter', '0', '0+', False, """
cluster_id  string  null=0+
voter_id  int32
voter_directory_id  uuid
""", """
throttle_time_ms  int32
error_code  int16
error_message  string  null=0+
"""),
    82: ('UpdateRaftVoter', '0', '0+', False, """
cluster_id  string  null=0+
current_leader_epoch  int32
voter_id  int32
voter_directory_id  uuid
listeners  []Listener
  name  string
  host  string
  port  uint16
k_raft_version_feature  KRaftVersionFeature
  min_supported_version  int16
  max_supported_version  int16
""", """
throttle_time_ms  int32
error_code  int16
current_leader  CurrentLeader  tag=0
  leader_id  int32  default=-1
  leader_epoch  int32  default=-1
  host  string
  port  int32
"""),
    83: ('InitializeShareGroupState', '0', '0+', True, """
group_id  string
topics  []InitializeStateData
  topic_id  uuid
  partitions  []PartitionData
    partition  int32
    state_epoch  int32
    start_offset  int64
""", """
results  []InitializeStateResult
  topic_id  uuid
  partitions  []PartitionResult
    partition  int32
    error_code  int16
    error_message  string  null=0+  default=null
"""),
    84: ('ReadShareGroupState', '0', '0+', True, """
group_id  string
topics  []ReadStateData
  topic_id  uuid
  partitions  []PartitionData
    partition  int32
    leader_epoch  int32
""", """
results  []ReadStateResult
  topic_id  uuid
  partitions  []PartitionResult
    partition  int32
    error_code  int16
    error_message  string  null=0+  default=null
    state_epoch  int32
    start_offset  int64
    state_batches  []StateBatch
      first_offset  int64
      last_offset  int64
      delivery_state  int8
      delivery_count  int16
"""),
    85: ('WriteShareGroupState', '0', '0+', True, """
group_id  string
topics  []WriteStateData
  topic_id  uuid
  partitions  []PartitionData
    partition  int32
    state_epoch  int32
    leader_epoch  int32
    start_offset  int64
    state_batches  []StateBatch
      first_offset  int64
      last_offset  int64
      delivery_state  int8
      delivery_count  int16
""", """
results  []WriteStateResult
  topic_id  uuid
  partitions  []PartitionResult
    partition  int32
    error_code  int16
    error_message  string  null=0+  default=null
"""),
    86: ('DeleteShareGroupState', '0', '0+', True, """
group_id  string
topics  []DeleteStateData
  topic_id  uuid
  partitions  []PartitionData
    partition  int32
""", """
results  []DeleteStateResult
  topic_id  uuid
  partitions  []PartitionResult
    partition  int32
    error_code  int16
    error_message  string  null=0+  default=null
"""),
    87: ('ReadShareGroupStateSummary', '0', '0+', True, """
group_id  string
topics  []ReadStateSummaryData
  topic_id  uuid
  partitions  []PartitionData
    partition  int32
    leader_epoch  int32
""", """
results  []ReadStateSummaryResult
  topic_id  uuid
  partitions  []PartitionResult
    partition  int32
    error_code  int16
    error_message  string  null=0+  default=null
    state_epoch  int32
    start_offset  int64
"""),
}

# Persisted and embedded structs (Kafka's "data" schemas): name -> (valid versions,
# flexible versions, fields). Stored as an int16 version and then the struct at that version.
RECORDS = {
    'ConsumerGroupCurrentMemberAssignmentKey': ('8', 'none', """
group_id  string  8
member_id  string  8
"""),
    'ConsumerGroupCurrentMemberAssignmentValue': ('0', '0+', """
member_epoch  int32
previous_member_epoch  int32
state  int8
assigned_partitions  []TopicPartitions
  topic_id  uuid
  partitions  []int32
partitions_pending_revocation  []TopicPartitions
  topic_id  uuid
  partitions  []int32
"""),
    'ConsumerGroupMemberMetadataKey': ('5', 'none', """
group_id  string  5
member_id  string  5
"""),
    'ConsumerGroupMemberMetadataValue': ('0', '0+', """
instance_id  string  null=0+
rack_id  string  null=0+
client_id  string
client_host  string
subscribed_topic_names  []string
subscribed_topic_regex  string  null=0+
rebalance_timeout_ms  int32  default=-1
server_assignor  string  null=0+
classic_member_metadata  ClassicMemberMetadata  null=0+  tag=0
  session_timeout_ms  int32
  supported_protocols  []ClassicProtocol
    name  string
    metadata  bytes
"""),
    'ConsumerGroupMetadataKey': ('3', 'none', """
group_id  string  3
"""),
    'ConsumerGroupMetadataValue': ('0', '0+', """
epoch  int32
"""),
    'ConsumerGroupPartitionMetadataKey': ('4', 'none', """
group_id  string  4
"""),
    'ConsumerGroupPartitionMetadataValue': ('0', '0+', """
topics  []TopicMetadata
  topic_id  uuid
  topic_name  string
  num_partitions  int32
  partition_metadata  []PartitionMetadata
    partition  int32
    racks  []string
"""),
    'ConsumerGroupTargetAssignmentMemberKey': ('7', 'none', """
group_id  string  7
member_id  string  7
"""),
    'ConsumerGroupTargetAssignmentMemberValue': ('0', '0+', """
topic_partitions  []TopicPartition
  topic_id  uuid
  partitions  []int32
"""),
    'ConsumerGroupTargetAssignmentMetadataKey': ('6', 'none', """
group_id  string  6
"""),
    'ConsumerGroupTargetAssignmentMetadataValue': ('0', '0+', """
assignment_epoch  int32
"""),
    'ConsumerProtocolAssignment': ('0-3', 'none', """
assigned_partitions  []TopicPartition
  topic  string
  partitions  []int32
user_data  bytes  null=0+  default=null
"""),
    'ConsumerProtocolSubscription': ('0-3', 'none', """
topics  []string
user_data  bytes  null=0+  default=null
owned_partitions  []TopicPartition  1+
  topic  string  1+
  partitions  []int32  1+
generation_id  int32  2+  default=-1
rack_id  string  3+  null=3+  default=null
"""),
    'GroupMetadataKey': ('2', 'none', """
group  string  2
"""),
    'GroupMetadataValue': ('0-4', '4+', """
protocol_type  string
generation  int32
protocol  string  null=0+
leader  string  null=0+
current_state_timestamp  int64  2+  default=-1
members  []MemberMetadata
  member_id  string
  group_instance_id  string  3+  null=3+  default=null
  client_id  string
  client_host  string
  rebalance_timeout  int32  1+  default=-1
  session_timeout  int32
  subscription  bytes
  assignment  bytes
"""),
    'OffsetCommitKey': ('0-1', 'none', """
group  string  0-1
topic  string  0-1
partition  int32  0-1
"""),
    'OffsetCommitValue': ('0-4', '4+', """
offset  int64
leader_epoch  int32  3+  default=-1
metadata  string
commit_timestamp  int64
expire_timestamp  int64  1  default=-1
"""),
    'ProducerSnapshot': ('1', 'none', """
crc  uint32  1
producer_entries  []ProducerEntry  1
  producer_id  int64  1
  epoch  int16  1
  last_sequence  int32  1
  last_offset  int64  1
  offset_delta  int32  1
  timestamp  int64  1
  coordinator_epoch  int32  1
  current_txn_first_offset  int64  1
"""),
    'ShareGroupCurrentMemberAssignmentKey': ('14', 'none', """
group_id  string  14
member_id  string  14
"""),
    'ShareGroupCurrentMemberAssignmentValue': ('0', '0+', """
member_epoch  int32
previous_member_epoch  int32
state  int8
assigned_partitions  []TopicPartitions
  topic_id  uuid
  partitions  []int32
"""),
    'ShareGroupMemberMetadataKey': ('10', 'none', """
group_id  string  10
member_id  string  10
"""),
    'ShareGroupMemberMetadataValue': ('0', '0+', """
rack_id  string  null=0+
client_id  string
client_host  string
subscribed_topic_names  []string
"""),
    'ShareGroupMetadataKey': ('11', 'none', """
group_id  string  11
"""),
    'ShareGroupMetadataValue': ('0', '0+', """
epoch  int32
"""),
    'ShareGroupPartitionMetadataKey': ('9', 'none', """
group_id  string  9
"""),
    'ShareGroupPartitionMetadataValue': ('0', '0+', """
topics  []TopicMetadata
  topic_id  uuid
  topic_name  string
  num_partitions  int32
  partition_metadata  []PartitionMetadata
    partition  int32
    racks  []string
"""),
    'ShareGroupStatePartitionMetadataKey': ('15', 'none', """
group_id  string  15
"""),
    'ShareGroupStatePartitionMetadataValue': ('0', '0+', """
initialized_topics  []TopicPartitionsInfo
  topic_id  uuid
  topic_name  string
  partitions  []int32
deleting_topics  []TopicInfo
  topic_id  uuid
  topic_name  string
"""),
    'ShareGroupTargetAssignmentMemberKey': ('13', 'none', """
group_id  string  13
member_id  string  13
"""),
    'ShareGroupTargetAssignmentMemberValue': ('0', '0+', """
topic_partitions  []TopicPartition
  topic_id  uuid
  partitions  []int32
"""),
    'ShareGroupTargetAssignmentMetadataKey': ('12', 'none', """
group_id  string  12
"""),
    'ShareGroupTargetAssignmentMetadataValue': ('0', '0+', """
assignment_epoch  int32
"""),
    'TransactionLogKey': ('0', 'none', """
transactional_id  string  0
"""),
    'TransactionLogValue': ('0-1', '1+', """
producer_id  int64
previous_producer_id  int64  1+  tag=0  default=-1
next_producer_id  int64  1+  tag=1  default=-1
producer_epoch  int16
transaction_timeout_ms  int32
transaction_status  int8
transaction_partitions  []PartitionsSchema  null=0+
  topic  string
  partition_ids  []int32
transaction_last_update_timestamp_ms  int64
transaction_start_timestamp_ms  int64
client_transaction_version  int16  1+  tag=2  default=0
"""),
}

# KRaft metadata records (`__cluster_metadata`): record type -> (name, valid versions,
# flexible versions, fields).
METADATA_RECORDS = {
    0: ('RegisterBrokerRecord', '0-3', '0+', """
broker_id  int32
is_migrating_zk_broker  bool  2+  default=false
incarnation_id  uuid
broker_epoch  int64
end_points  []BrokerEndpoint
  name  string
  host  string
  port  uint16
  security_protocol  int16
features  []BrokerFeature
  name  string
  min_supported_version  int16
  max_supported_version  int16
rack  string  null=0+
fenced  bool  default=true
in_controlled_shutdown  bool  1+  default=false
log_dirs  []uuid  3+  tag=0
"""),
    1: ('UnregisterBrokerRecord', '0', '0+', """
broker_id  int32
broker_epoch  int64
"""),
    2: ('TopicRecord', '0', '0+', """
name  string
topic_id  uuid
"""),
    3: ('PartitionRecord', '0-2', '0+', """
partition_id  int32  default=-1
topic_id  uuid
replicas  []int32
isr  []int32
removing_replicas  []int32
adding_replicas  []int32
leader  int32  default=-1
leader_recovery_state  int8  tag=0  default=0
leader_epoch  int32  default=-1
partition_epoch  int32  default=-1
directories  []uuid  1+
eligible_leader_replicas  []int32  2+  null=2+  tag=1  default=null
last_known_elr  []int32  2+  null=2+  tag=2  default=null
"""),
    4: ('ConfigRecord', '0', '0+', """
resource_type  int8
resource_name  string
name  string
value  string  null=0+
"""),
    5: ('PartitionChangeRecord', '0-2', '0+', """
partition_id  int32  default=-1
topic_id  uuid
isr  []int32  null=0+  tag=0  default=null
leader  int32  tag=1  default=-2
replicas  []int32  null=0+  tag=2  default=null
removing_replicas  []int32  null=0+  tag=3  default=null
adding_replicas  []int32  null=0+  tag=4  default=null
leader_recovery_state  int8  tag=5  default=-1
directories  []uuid  1+  null=1+  tag=8  default=null
eligible_leader_replicas  []int32  2+  null=2+  tag=6  default=null
last_known_elr  []int32  2+  null=2+  tag=7  default=null
"""),
    7: ('FenceBrokerRecord', '0', '0+', """
id  int32
epoch  int64
"""),
    8: ('UnfenceBrokerRecord', '0', '0+', """
id  int32
epoch  int64
"""),
    9: ('RemoveTopicRecord', '0', '0+', """
topic_id  uuid
"""),
    10: ('DelegationTokenRecord', '0', '0+', """
owner  string
requester  string
renewers  []string
issue_timestamp  int64
max_timestamp  int64
expiration_timestamp  int64
token_id  string
"""),
    11: ('UserScramCredentialRecord', '0', '0+', """
name  string
mechanism  int8
salt  bytes
stored_key  bytes
server_key  bytes
iterations  int32
"""),
    12: ('FeatureLevelRecord', '0', '0+', """
name  string
feature_level  int16
"""),
    14: ('ClientQuotaRecord', '0', '0+', """
entity  []EntityData
  entity_type  string
  entity_name  string  null=0+
key  string
value  float64
remove  bool
"""),
    15: ('ProducerIdsRecord', '0', '0+', """
broker_id  int32
broker_epoch  int64  default=-1
next_producer_id  int64
"""),
    17: ('BrokerRegistrationChangeRecord', '0-2', '0+', """
broker_id  int32
broker_epoch  int64
fenced  int8  tag=0
in_controlled_shutdown  int8  1+  tag=1
log_dirs  []uuid  2+  tag=2
"""),
    18: ('AccessControlEntryRecord', '0', '0+', """
id  uuid
resource_type  int8
resource_name  string
pattern_type  int8
principal  string
host  string
operation  int8
permission_type  int8
"""),
    19: ('RemoveAccessControlEntryRecord', '0', '0+', """
id  uuid
"""),
    20: ('NoOpRecord', '0', '0+', """
"""),
    21: ('ZkMigrationStateRecord', '0', '0+', """
zk_migration_state  int8
"""),
    22: ('RemoveUserScramCredentialRecord', '0', '0+', """
name  string
mechanism  int8
"""),
    23: ('BeginTransactionRecord', '0', '0+', """
name  string  null=0+  tag=0  default=null
"""),
    24: ('EndTransactionRecord', '0', '0+', """
"""),
    25: ('AbortTransactionRecord', '0', '0+', """
reason  string  null=0+  tag=0  default=null
"""),
    26: ('RemoveDelegationTokenRecord', '0', '0+', """
token_id  string
"""),
    27: ('RegisterControllerRecord', '0', '0+', """
controller_id  int32
incarnation_id  uuid
zk_migration_ready  bool
end_points  []ControllerEndpoint
  name  string
  host  string
  port  uint16
  security_protocol  int16
features  []ControllerFeature
  name  string
  min_supported_version  int16
  max_supported_version  int16
"""),
}
