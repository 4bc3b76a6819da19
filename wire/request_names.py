"""What a request names: its topics, topic-partitions, groups and transactional ids.

A Kafka request is about some things, each spelt in fields that changed across versions: topics
by name or (Produce and Fetch v13+) by topic id, partitions as `index`, `partition` or
`partition_index` structs or as plain int32 arrays; a consumer group as `group_id`, an array of
names (DescribeGroups `groups`, DeleteGroups `groups_names`, ConsumerGroupDescribe `group_ids`),
an array of structs (OffsetFetch v8+ `groups`) or a coordinator key (FindCoordinator, key_type 0);
a transactional id as `transactional_id`, AddPartitionsToTxn's v0-3 field and v4+ `transactions`
array, DescribeTransactions' `transactional_ids` or a coordinator key of key_type 1.

This is wire knowledge (which field of which request names what), so it lives with the message
definitions. The fault rules (controls/rules.py) match requests on these names; each function
reads only the decoded request and is asked only when a rule needs it.
"""

from trioka.wire.api_keys import ApiKey

# Request fields that hold the topics a request is about: arrays of topic structs (with `name`,
# `topic` or `topic_id`) or of topic names. `transactions` (AddPartitionsToTxn v4+) and `groups`
# (OffsetFetch v8+) hold such arrays one level down.
_TOPIC_ARRAYS = ("topic_data", "topics", "topic_names", "v3_and_below_topics")
_NESTING_ARRAYS = ("transactions", "groups")
# The partitions of one topic entry: structs or int32 partition indexes.
_PARTITION_ARRAYS = ("partition_data", "partitions", "partition_indexes")
# A partition index has three spellings across the APIs.
PARTITION_FIELDS = ("partition_index", "partition", "index")

# FindCoordinator's key_type (KIP-98): 0 a consumer group, 1 a transactional id.
KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1


def _topic_entries(request):
    """Every topic entry of a request (structs or names), nested ones included."""
    holders = [request]
    for field in _NESTING_ARRAYS:
        holders.extend(item for item in getattr(request, field, None) or ()
                       if not isinstance(item, str))
    for holder in holders:
        for field in _TOPIC_ARRAYS:
            yield from getattr(holder, field, None) or ()


def topic_name(entry, topic_name_of) -> str | None:
    """The name of a request's topic entry: its `name` / `topic`, or its resolved topic id."""
    if isinstance(entry, str):
        return entry
    name = getattr(entry, "name", None) or getattr(entry, "topic", None)
    if isinstance(name, str) and name:
        return name
    if getattr(entry, "topic_id", None) is not None:
        return topic_name_of(entry.topic_id) or None
    return None


def partition_index(entry) -> int:
    """The partition a request's or response's partition entry is about."""
    if isinstance(entry, int):
        return entry
    for field in PARTITION_FIELDS:
        value = getattr(entry, field, None)
        if value is not None:
            return value
    raise ValueError(f"no partition index in {entry!r}")


def request_topics(api_key: int, request, topic_name_of=lambda topic_id: None) -> set[str]:
    """The names of the topics a request names (by name, or by id where it uses ids)."""
    out: set[str] = set()
    for entry in _topic_entries(request):
        name = topic_name(entry, topic_name_of)
        if name:
            out.add(name)
    if api_key in (ApiKey.DESCRIBE_CONFIGS, ApiKey.ALTER_CONFIGS,
                   ApiKey.INCREMENTAL_ALTER_CONFIGS):
        # Config resources of type 2 are topics.
        out.update(r.resource_name for r in request.resources if r.resource_type == 2)
    return out


def request_partitions(api_key: int, request,
                       topic_name_of=lambda topic_id: None) -> set[tuple[str, int]]:
    """The (topic, partition) pairs a request names."""
    out: set[tuple[str, int]] = set()
    for entry in _topic_entries(request):
        if isinstance(entry, str):
            continue
        name = topic_name(entry, topic_name_of)
        if not name:
            continue
        for field in _PARTITION_ARRAYS:
            partitions = getattr(entry, field, None)
            if partitions:
                out.update((name, partition_index(p)) for p in partitions)
                break
    return out


def _coordinator_keys(request, key_type: int) -> list[str]:
    """FindCoordinator's keys of one type: `key` (v0-3) or `coordinator_keys` (v4+)."""
    if request.key_type != key_type:
        return []
    return [k for k in (request.coordinator_keys or [request.key]) if k]


def request_groups(api_key: int, request) -> set[str]:
    """The consumer groups a request names (group APIs, offsets, a coordinator key)."""
    if api_key == ApiKey.FIND_COORDINATOR:
        return set(_coordinator_keys(request, KEY_TYPE_GROUP))
    out: set[str] = set()
    group_id = getattr(request, "group_id", None)
    if isinstance(group_id, str) and group_id:
        out.add(group_id)
    for field in ("groups", "groups_names", "group_ids"):
        for item in getattr(request, field, None) or ():
            name = item if isinstance(item, str) else getattr(item, "group_id", None)
            if isinstance(name, str) and name:
                out.add(name)
    return out


def request_transactional_ids(api_key: int, request) -> set[str]:
    """The transactional ids a request names (transaction APIs, a transactional Produce, a
    coordinator key)."""
    if api_key == ApiKey.FIND_COORDINATOR:
        return set(_coordinator_keys(request, KEY_TYPE_TRANSACTION))
    out: set[str] = set()
    for field in ("transactional_id", "v3_and_below_transactional_id"):
        value = getattr(request, field, None)
        if isinstance(value, str) and value:
            out.add(value)
    for item in getattr(request, "transactions", None) or ():
        value = getattr(item, "transactional_id", None)
        if isinstance(value, str) and value:
            out.add(value)
    out.update(t for t in getattr(request, "transactional_ids", None) or () if t)
    return out
