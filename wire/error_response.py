"""Whole-request error answers: the response a broker gives when it fails a request as a whole.

Kafka answers a request it cannot serve at all (a coordinator that is not this broker, a fault a
test injected, an authorization failure of the whole request) with the response of that API
carrying the error everywhere it can: the top-level `error_code` where the version has one, and
every topic, partition, group, coordinator key, config resource or transactional id the request
names, each answered with the code. Offsets, ids and epochs it cannot give are -1.

This is wire knowledge (which response field answers which request field, per API and version),
so it lives with the message definitions; callers pass the request message and the code.
"""

from trioka.wire import schema
from trioka.wire.api_keys import ApiKey


# Response arrays filled from a request array of another name: (api key, response field) -> the
# request fields to read, first present wins. Elsewhere a response array mirrors the request
# array of the same name (`topics` -> `topics`, `partitions` -> `partitions`).
_MIRRORED_FROM = {
    (ApiKey.PRODUCE, "responses"): ("topic_data",),
    (ApiKey.PRODUCE, "partition_responses"): ("partition_data",),
    (ApiKey.FETCH, "responses"): ("topics",),
    (ApiKey.OFFSET_FETCH, "partitions"): ("partition_indexes",),
    (ApiKey.FIND_COORDINATOR, "coordinators"): ("coordinator_keys",),
    (ApiKey.DESCRIBE_CONFIGS, "results"): ("resources",),
    (ApiKey.ALTER_CONFIGS, "responses"): ("resources",),
    (ApiKey.INCREMENTAL_ALTER_CONFIGS, "responses"): ("resources",),
    (ApiKey.DELETE_TOPICS, "responses"): ("topics", "topic_names"),
    (ApiKey.DELETE_GROUPS, "results"): ("groups_names",),
    (ApiKey.CREATE_PARTITIONS, "results"): ("topics",),
    (ApiKey.ADD_PARTITIONS_TO_TXN, "results_by_transaction"): ("transactions",),
    (ApiKey.ADD_PARTITIONS_TO_TXN, "topic_results"): ("topics",),
    (ApiKey.ADD_PARTITIONS_TO_TXN, "results_by_topic_v3_and_below"): ("v3_and_below_topics",),
    (ApiKey.ADD_PARTITIONS_TO_TXN, "results_by_partition"): ("partitions",),
    (ApiKey.DESCRIBE_PRODUCERS, "partitions"): ("partition_indexes",),
    (ApiKey.DESCRIBE_TRANSACTIONS, "transaction_states"): ("transactional_ids",),
    (ApiKey.CREATE_ACLS, "results"): ("creations",),
    (ApiKey.DELETE_ACLS, "filter_results"): ("filters",),
    (ApiKey.ALTER_CLIENT_QUOTAS, "entries"): ("entries",),
    (ApiKey.ALTER_CLIENT_QUOTAS, "entity"): ("entity",),
    (ApiKey.CONSUMER_GROUP_DESCRIBE, "groups"): ("group_ids",),
    (ApiKey.WRITE_TXN_MARKERS, "markers"): ("markers",),
    (ApiKey.WRITE_TXN_MARKERS, "partitions"): ("partition_indexes",),
    # Kafka answers each user asked for, leaving the result's `user` empty.
    (ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, "results"): ("users",),
}
# Response arrays Kafka fills otherwise: (api key, response field) -> the request's entries.
_ENTRIES_OF = {
    # AlterUserScramCredentials: one result per user named, sorted, deletions and upsertions.
    (ApiKey.ALTER_USER_SCRAM_CREDENTIALS, "results"): lambda r: sorted(
        {e.name for e in [*(r.deletions or ()), *(r.upsertions or ())]}),
}
_MIRRORED_SAME_NAME = ("topics", "partitions", "groups", "members")

# What identifies an entry, copied from the request entry to its answer. A partition index has
# three spellings across the APIs.
_PARTITION_FIELDS = ("partition_index", "partition", "index")
_NAME_FIELDS = ("name", "topic", "group_id", "transactional_id", "key", "resource_name", "user")
_IDENTITY_FIELDS = _NAME_FIELDS + ("topic_id", "resource_type", "member_id",
                                   "group_instance_id", "entity_type", "entity_name")
_ERROR_FIELDS = ("error_code", "partition_error_code")
# Kafka answers -1 for the offsets, ids and epochs it cannot give with an error.
_UNKNOWN_IS_MINUS_ONE = frozenset({
    "base_offset", "high_watermark", "last_stable_offset", "log_start_offset", "offset",
    "timestamp", "leader_epoch", "leader_id", "node_id", "port", "producer_id",
    "producer_epoch", "generation_id", "end_offset", "committed_offset", "low_watermark",
    "committed_leader_epoch", "preferred_read_replica"})


def error_response(api_key: int, version: int, request, code: int, message: str | None = None):
    """The response to `request` failing with `code` throughout: top-level error_code where the
    version has one, and every entry the request names (topic, partition, group, coordinator
    key, config resource, transactional id) answered with the code."""
    api = schema.api(api_key)
    response = api.response.cls()
    _fill(api_key, version, api.response.fields, response, request, int(code), message)
    return response


def _fill(api_key, version, fields, out, source, code, message) -> None:
    """Set the error fields of struct `out` and mirror its arrays from the request struct
    `source` (None where there is no counterpart)."""
    for f in fields:
        if not f.present(version):
            continue
        if f.name in _ERROR_FIELDS and f.type == "int16":
            setattr(out, f.name, code)
        elif f.name == "error_message" and f.type == "string":
            setattr(out, f.name, message if message is not None or f.is_nullable(version)
                    else "")
        elif f.type == "records":
            # Empty records, not null: Kafka sends an empty set, librdkafka rejects a null one.
            setattr(out, f.name, b"")
        elif f.name in _UNKNOWN_IS_MINUS_ONE and f.type in ("int16", "int32", "int64"):
            setattr(out, f.name, -1)
        elif f.type == "array" and f.is_struct and source is not None:
            entries = _entries(api_key, version, f, source)
            if entries:
                setattr(out, f.name, [_entry(api_key, version, f, e, code, message)
                                      for e in entries])


def _entries(api_key, version, f, source) -> list:
    """The request entries a response array answers, or []."""
    entries_of = _ENTRIES_OF.get((api_key, f.name))
    if entries_of is not None:
        return entries_of(source)
    for name in _MIRRORED_FROM.get((api_key, f.name),
                                   (f.name,) if f.name in _MIRRORED_SAME_NAME else ()):
        value = getattr(source, name, None)
        if value:
            return list(value)
    return []


def _entry(api_key, version, f, item, code, message):
    """One response entry answering request entry `item` (a struct, a name or an index)."""
    out = f.struct()
    present = [c for c in f.children if c.present(version)]
    names = {c.name for c in present}
    if isinstance(item, (str, int)):
        wanted = _NAME_FIELDS if isinstance(item, str) else _PARTITION_FIELDS
        target = next((n for n in wanted if n in names), None)
        if target is not None:
            setattr(out, target, item)
        item = None
    else:
        for name in _IDENTITY_FIELDS:
            if name in names and hasattr(item, name):
                setattr(out, name, getattr(item, name))
        given = next((getattr(item, n) for n in _PARTITION_FIELDS if hasattr(item, n)), None)
        target = next((n for n in _PARTITION_FIELDS if n in names), None)
        if given is not None and target is not None:
            setattr(out, target, given)
    _fill(api_key, version, present, out, item, code, message)
    # An entry the request names by producer id (WriteTxnMarkers' markers) keeps it: the -1 of
    # _fill is for ids the broker could not give.
    if item is not None and "producer_id" in names and hasattr(item, "producer_id"):
        out.producer_id = item.producer_id
    return out
