"""Partition-level error answers: some partitions of a request fail, the others are served.

Kafka reports most failures of a Produce, Fetch, ListOffsets, OffsetCommit, TxnOffsetCommit or
DeleteRecords partition by partition: one partition's leader moved (NOT_LEADER_OR_FOLLOWER)
while the others of the same request are appended, read or committed as usual. librdkafka's mock
cluster injects exactly that (`rd_kafka_mock_partition_push_request_errors`); this module is the
wire half of it for trioka's fault rules (controls/rules.py):

- `split` takes the partitions to fail out of the request, so the handler serves the others
  (for Produce, OffsetCommit and the like nothing is written for a failed partition). Fetch is
  not split: a fetch session (KIP-227) must keep every partition the client listed, and a read
  changes nothing, so the whole request is read and the failed partitions' answers replaced.
  Kafka answers a fetch with a failed partition at once rather than waiting for `min_bytes`,
  so the fetch is served with `max_wait_ms` 0.
- `merge` puts the failed partitions' answers (built as wire/error_response.py builds them:
  offsets -1, empty records) into the handler's response, in the request's order, the
  top-level fields as the handler set them.

The request message given is never changed: split works on shallow copies.
"""

from __future__ import annotations

import copy

from trioka.wire import schema
from trioka.wire.api_keys import ApiKey
from trioka.wire.error_response import error_response
from trioka.wire.request_names import partition_index, topic_name


class Shape:
    """Where the topic-partitions of one API's request and response are: the request's topic
    array and each topic's partition array, the response's two, and whether the request is
    split (the failed partitions are not handled) or read whole (Fetch)."""
    __slots__ = ("request_topics", "request_partitions", "response_topics",
                 "response_partitions", "split")

    def __init__(self, request_topics, request_partitions, response_topics,
                 response_partitions, split=True):
        self.request_topics = request_topics
        self.request_partitions = request_partitions
        self.response_topics = response_topics
        self.response_partitions = response_partitions
        self.split = split


SHAPES = {
    ApiKey.PRODUCE: Shape("topic_data", "partition_data", "responses", "partition_responses"),
    ApiKey.FETCH: Shape("topics", "partitions", "responses", "partitions", split=False),
    ApiKey.LIST_OFFSETS: Shape("topics", "partitions", "topics", "partitions"),
    ApiKey.OFFSET_COMMIT: Shape("topics", "partitions", "topics", "partitions"),
    ApiKey.TXN_OFFSET_COMMIT: Shape("topics", "partitions", "topics", "partitions"),
    ApiKey.DELETE_RECORDS: Shape("topics", "partitions", "topics", "partitions"),
}


def answers_per_partition(api_key: int) -> bool:
    """Whether this API's partitions can fail one by one (see SHAPES)."""
    return api_key in SHAPES


def _topic_key(entry):
    """What identifies a topic entry in both a request and its response of the same version:
    the name (`name` or `topic`), or from v13 of Produce and Fetch, which have no name, the
    topic id."""
    name = getattr(entry, "name", None) or getattr(entry, "topic", None)
    return name if name else getattr(entry, "topic_id", None)


def _with_partitions(entry, field: str, partitions: list):
    out = copy.copy(entry)
    setattr(out, field, partitions)
    return out


def split(api_key: int, request, failed, topic_name_of=lambda topic_id: None):
    """(the request to handle, the request of the failed partitions), both copies of `request`.
    `failed` holds (topic name, partition) pairs. The first is None when nothing is left to
    handle; for Fetch it is the whole request, with max_wait_ms 0."""
    shape = SHAPES[api_key]
    keep, fail = [], []
    for topic in getattr(request, shape.request_topics) or ():
        name = topic_name(topic, topic_name_of)
        partitions = getattr(topic, shape.request_partitions) or []
        mine = [p for p in partitions if (name, partition_index(p)) in failed]
        rest = [p for p in partitions if (name, partition_index(p)) not in failed]
        if mine:
            fail.append(_with_partitions(topic, shape.request_partitions, mine))
        if rest or not mine:
            keep.append(topic if not mine else
                        _with_partitions(topic, shape.request_partitions, rest))
    failing = copy.copy(request)
    setattr(failing, shape.request_topics, fail)
    if not shape.split:
        handled = copy.copy(request)
        handled.max_wait_ms = 0
        return handled, failing
    if not keep:
        return None, failing
    handled = copy.copy(request)
    setattr(handled, shape.request_topics, keep)
    return handled, failing


def empty_response(api_key: int):
    """The response to a request none of whose partitions was handled, before `merge`."""
    return schema.api(api_key).response.cls()


def failed_answers(api_key: int, version: int, failing, codes, topic_name_of=lambda tid: None):
    """The response entries of the failed partitions: {(topic key, partition): (topic entry,
    partition entry)}; `codes` maps (topic name, partition) to (error code, error message)."""
    shape = SHAPES[api_key]
    answered = error_response(api_key, version, failing, 0)
    out = {}
    for req_topic, topic in zip(getattr(failing, shape.request_topics),
                                getattr(answered, shape.response_topics) or ()):
        name = topic_name(req_topic, topic_name_of)
        for part in getattr(topic, shape.response_partitions) or ():
            code, message = codes[(name, partition_index(part))]
            part.error_code = int(code)
            if hasattr(part, "error_message"):
                part.error_message = message
            out[(_topic_key(topic), partition_index(part))] = (topic, part)
    return out


def merge(api_key: int, request, response, failed_entries: dict):
    """Put the failed partitions' answers (`failed_answers`) into the handler's `response`:
    every partition the request names, in request order, answered by its failed entry or the
    handler's; then any partition the handler answered that the request did not name (those
    of a fetch session). Returns `response`."""
    shape = SHAPES[api_key]
    handled = {}            # (topic key, partition) -> partition entry
    handled_topics = {}     # topic key -> the handler's topic entry
    handled_order = []
    for topic in getattr(response, shape.response_topics) or ():
        key = _topic_key(topic)
        handled_topics.setdefault(key, topic)
        for part in getattr(topic, shape.response_partitions) or ():
            handled[(key, partition_index(part))] = part
            handled_order.append((key, partition_index(part)))
    out = {}                # topic key -> the merged topic entry (insertion: request order)
    placed = set()

    def place(key, part, template):
        entry = out.get(key)
        if entry is None:
            entry = out[key] = _with_partitions(template, shape.response_partitions, [])
        getattr(entry, shape.response_partitions).append(part)

    for topic in getattr(request, shape.request_topics) or ():
        key = _topic_key(topic)
        for p in getattr(topic, shape.request_partitions) or ():
            at = (key, partition_index(p))
            if at in placed:
                continue
            if at in failed_entries:
                template, part = failed_entries[at]
                place(key, part, handled_topics.get(key, template))
            elif at in handled:
                place(key, handled[at], handled_topics[key])
            else:
                continue
            placed.add(at)
    for at in handled_order:
        if at not in placed:
            place(at[0], handled[at], handled_topics[at[0]])
            placed.add(at)
    setattr(response, shape.response_topics, list(out.values()))
    return response
