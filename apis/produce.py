"""Produce (key 0), v0-13: v3-13 served, and v0-2 too when posing as a Kafka release before 4.0.

Each partition's `records` is one record batch (magic 2) that stays bytes: the log validates its
header and CRC-32C (with constant-time checks that its records count can be true), patches the
base offset and leader epoch into it and appends it (log/batch.py). Records are walked only where
Kafka's LogValidator rules need them (log/validator.py: compacted topics, a topic
`compression.type` other than the batch's codec, the broker's `trioka.strict.validation`); that
walk, with any recompression, runs in a worker thread, since a small compressed batch may
decompress to a great deal. The append happens on the event loop, except a large batch's write
to a disk log, which runs in a worker thread (a disk under writeback can hold a write() for
100 ms and more); that partition's next append waits for it (`append_records`).

- `acks`: 1 and -1 answer after the append on a single broker (it is the whole ISR, so "all" is
  reached at once, unless `min.insync.replicas` > 1: NOT_ENOUGH_REPLICAS); 0 sends no response
  at all, and as in Kafka a partition error then closes the connection so the client notices.
  Any other value is INVALID_REQUIRED_ACKS. On a node of a cluster only the partition's leader
  takes the write (NOT_LEADER_OR_FOLLOWER, with the KIP-951 leader hint); acks=all is refused
  with NOT_ENOUGH_REPLICAS while the ISR is below `min.insync.replicas`, and answered once the
  whole ISR has the batch (the high watermark passed it: NOT_ENOUGH_REPLICAS_AFTER_APPEND if the
  ISR shrank below min.insync.replicas meanwhile, REQUEST_TIMED_OUT at the request's
  `timeout_ms`), as Kafka's delayed produce.
- Flushing: as Kafka's append flushes before it returns once `flush.messages` are unflushed
  (`log.flush.interval.messages`), the answer waits for the flush covering the batch; the fsync
  runs in a worker thread, the partitions of one request flush concurrently, and requests that
  append meanwhile share the next flush (group commit). `flush.messages=1` thus answers only
  what is on disk. A failed flush answers KAFKA_STORAGE_ERROR.
- Per partition: TOPIC_AUTHORIZATION_FAILED with an authorizer and no WRITE on the topic
  (security/authorizer.py), UNKNOWN_TOPIC_OR_PARTITION (Produce never creates topics), INVALID_TOPIC_EXCEPTION
  for internal topics, CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE (`max.message.bytes`),
  UNSUPPORTED_COMPRESSION_TYPE for zstd before v7; v8+ adds an error message. Records refused one
  by one (a record without a key on a compacted topic, a CreateTime timestamp out of bounds in a
  walk) refuse the whole batch, and v8+ lists them in `record_errors` (KIP-467) with Kafka's
  summary as the error message, so clients fail only those records with INVALID_RECORD (or
  INVALID_TIMESTAMP).
- KAFKA_STORAGE_ERROR once an I/O error took the log dir offline (log/files.py): the failed write
  and every later one, until a restart recovers the dir.
- Idempotent producers: a retried batch already written is answered with its original offsets;
  OUT_OF_ORDER_SEQUENCE_NUMBER and INVALID_PRODUCER_EPOCH as Kafka checks them (log/producer_state.py).
- Transactional batches are checked with the transaction coordinator before they are written
  (KIP-890). Up to v11 the partition must already be in the producer's ongoing transaction (part
  1): TRANSACTION_ABORTABLE otherwise, INVALID_TXN_STATE before v11. From v12 (part 2,
  transactions v2) the write itself adds the partition to the transaction, starting one if none
  is open, so the producer sends no AddPartitionsToTxn; its first batch in a partition it has no
  state in must then start at sequence 0. A fenced epoch is INVALID_PRODUCER_EPOCH.
- The response carries the base offset, the log append time (-1 unless the topic uses
  LogAppendTime) and the log start offset.
- In a cluster, KIP-951: from v10 a partition answered NOT_LEADER_OR_FOLLOWER or
  FENCED_LEADER_EPOCH carries `current_leader` (the leader id and epoch this node knows) and the
  response's `node_endpoints` the leader's address on the client's listener
  (node/leader_hints.py), so the producer sends its retry to the new leader at once.
- Versions 0-2 (message formats v0/v1) were removed in Kafka 4.0, but Kafka still advertises
  Produce from v0 because librdkafka refuses to produce compressed batches otherwise
  (KAFKA-18659); a v0-2 request is answered with UNSUPPORTED_VERSION. Posing as an older release
  (`trioka.kafka.version`, wire/releases.py), v0-2 are served as Kafka 3.x served them when they
  carry record batches (magic 2: Kafka checked the magic only from v3); a legacy message set
  (magic 0/1) is INVALID_RECORD, since trioka does not convert message formats. Transactional
  batches are checked with the coordinator (KIP-890 part 1) from Kafka 3.6 on, as Kafka does.
  v12 is v11 with transactions v2 (KIP-890); v13 names topics by id (KIP-516), UNKNOWN_TOPIC_ID
  when unknown.
"""

import trio

from trioka.log.batch import BatchInfo, peek_codec, peek_header
from trioka.log.compression import CompressionType
from trioka.log.partition import AppendResult
from trioka.log.topics import INTERNAL_TOPICS
from trioka.log.validator import RecordRules, RecordValidationError, conform
from trioka.node.leader_hints import HINTED_ERRORS, LeaderHints
from trioka.security.acls import WRITE
from trioka.node.threads import InThread
from trioka.security.quotas import PRODUCER_BYTE_RATE, request_throttle, skip_request_time, \
    throttle
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class

SERVED_FROM = 3
LEADER_HINTS_FROM = 10     # KIP-951's current_leader and node_endpoints

Response = response_class(ApiKey.PRODUCE)
TopicResponse = Response.TopicProduceResponse
PartitionResponse = TopicResponse.PartitionProduceResponse


def _error(index: int, code: int, message: str | None = None, record_errors=(),
           log_start_offset: int = -1) -> object:
    return PartitionResponse(
        index=index, error_code=code, base_offset=-1, log_append_time_ms=-1,
        log_start_offset=log_start_offset, error_message=message,
        record_errors=[PartitionResponse.BatchIndexAndErrorMessage(
            batch_index=e.batch_index, batch_index_error_message=e.message)
            for e in record_errors])


def verify_transaction(broker, transactional_id, log, topic: str, index: int,
                       header: BatchInfo, version: int) -> None:
    """KIP-890: the coordinator's word on a transactional batch (see the module's docstring)."""
    add = version >= 12
    if add and header.base_sequence != 0 and not log.has_producer(header.producer_id):
        raise KafkaError(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                         f"Invalid sequence number {header.base_sequence} for producer "
                         f"{header.producer_id} in {topic}-{index}: a transactions v2 producer "
                         f"with no state here starts at 0")
    try:
        broker.transactions.verify_partition(transactional_id, header.producer_id,
                                             header.producer_epoch, topic, index, add,
                                             broker.clock.wall_ms())
    except KafkaError as e:
        # How Kafka's partition leaders pass the coordinator's answer on to producers.
        if e.code == ErrorCode.PRODUCER_FENCED:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_EPOCH, e.message) from None
        if e.code == ErrorCode.TRANSACTION_ABORTABLE and version < 11:
            raise KafkaError(ErrorCode.INVALID_TXN_STATE, e.message) from None
        raise


# Kafka's AddPartitionsToTxnManager: a coordinator that cannot answer now is, for the producer,
# a retriable NOT_ENOUGH_REPLICAS (its batch is retried, not failed).
COORDINATOR_UNAVAILABLE = frozenset({ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                     ErrorCode.NOT_COORDINATOR,
                                     ErrorCode.COORDINATOR_LOAD_IN_PROGRESS})


async def verify_transaction_in_cluster(broker, transactional_id, log, topic: str, index: int,
                                        header: BatchInfo, version: int) -> None:
    """verify_transaction on a node of a cluster: the id's coordinator may be on another node,
    asked with AddPartitionsToTxn (verify only, or adding the partition from v12), as Kafka's
    partition leaders ask it."""
    add = version >= 12
    if add and header.base_sequence != 0 and not log.has_producer(header.producer_id):
        verify_transaction(broker, transactional_id, log, topic, index, header, version)
    try:
        await broker.transactions.verify_partition_anywhere(
            transactional_id, header.producer_id, header.producer_epoch, topic, index, add,
            broker.clock.wall_ms())
    except KafkaError as e:
        if e.code in COORDINATOR_UNAVAILABLE:
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS, e.message) from None
        if e.code == ErrorCode.PRODUCER_FENCED:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_EPOCH, e.message) from None
        if e.code == ErrorCode.TRANSACTION_ABORTABLE and version < 11:
            raise KafkaError(ErrorCode.INVALID_TXN_STATE, e.message) from None
        raise


async def append_partition(broker, topic: str, index: int, records, version: int, acks: int,
                           transactional_id: str | None = None, flushes: list | None = None,
                           replication: list | None = None):
    """Validate and append one partition's batch; the PartitionProduceResponse for it. When the
    append waits for a flush (see the module's docstring), (response, log, end offset) is added
    to `flushes`; in a cluster, an acks=all append adds (response, replica, end offset) to
    `replication`, to wait for the ISR."""
    log = hosted = None
    replicas = broker.cluster.replicas if broker.cluster is not None else None
    try:
        if topic in INTERNAL_TOPICS:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                             f"Cannot append to internal topic {topic}")
        log = broker.partition(topic, index)
        if records is None or len(records) == 0:
            raise KafkaError(ErrorCode.INVALID_RECORD, "Produce request has no record batch")
        if replicas is not None:
            # NOT_LEADER_OR_FOLLOWER, or NOT_ENOUGH_REPLICAS under min.insync.replicas.
            replicas.check_append(topic, index, acks)
        elif acks == -1 and broker.config.min_insync_replicas > 1:
            # The in-sync replica set of a single broker is just itself.
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS,
                             "The size of the current ISR 1 is insufficient to satisfy the "
                             f"min.isr requirement of {broker.config.min_insync_replicas}")
        if version < 7 and peek_codec(records) == CompressionType.ZSTD:
            # zstd came with Produce v7 (KIP-110).
            raise KafkaError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                             "zstd-compressed batches need Produce v7 or later")
        header = peek_header(records)
        # Every record walked: trioka.strict.validation, or conformance mode (trioka.strict).
        strict = broker.strict or broker.config.trioka_strict_validation
        batches, conformed = None, False
        if header is not None and RecordRules.walk_needed(log.config, [header], strict=strict):
            # Kafka's LogValidator record walk, off the event loop (mutate in def: the thread
            # only computes; the log is looked up again and appended to here).
            rules = RecordRules.of(log.config, strict=strict)
            batches = log.validate(records)
            records, batches = await trio.to_thread.run_sync(
                conform, records, batches, rules, f"{topic}-{index}", broker.clock.wall_ms())
            log = broker.partition(topic, index)
            conformed = RecordRules.of(log.config, strict=strict) == rules
        if header is not None and header.is_transactional and \
                broker.config.release.verifies_transactions:     # from Kafka 3.6
            if replicas is None:
                verify_transaction(broker, transactional_id, log, topic, index, header, version)
            else:
                await verify_transaction_in_cluster(broker, transactional_id, log, topic, index,
                                                    header, version)
                log = broker.partition(topic, index)   # again, after the wait
        if replicas is None:
            result = await append_records(log, records, leader_epoch=broker.leader_epoch,
                                          now_ms=broker.clock.wall_ms(), batches=batches,
                                          conformed=conformed)
        else:
            hosted = replicas.check_append(topic, index, acks)   # again, after any await
            result = await append_records(log, records, leader_epoch=hosted.state.leader_epoch,
                                          now_ms=broker.clock.wall_ms(), batches=batches,
                                          conformed=conformed)
            replicas.appended(hosted)
    except RecordValidationError as e:
        return _error(index, e.code, e.message, e.record_errors, log.log_start_offset)
    except KafkaError as e:
        return _error(index, e.code, e.message)
    response = PartitionResponse(index=index, error_code=0, base_offset=result.base_offset,
                                 log_append_time_ms=result.log_append_time_ms,
                                 log_start_offset=result.log_start_offset)
    if flushes is not None and log.awaits_flush(result.last_offset + 1):
        flushes.append((response, log, result.last_offset + 1))
    if replication is not None and hosted is not None:
        replication.append((response, hosted, result.last_offset + 1))
    return response


# The appends whose write is in a worker thread, each with the event its log's next
# appender waits for.
_pending_appends: dict = {}


async def append_records(log, records, **kwargs) -> AppendResult:
    """The log's append, with a large write in a worker thread (PartitionLog.begin_append): a
    disk that holds a write() for a while then holds only this partition's appends, not the
    event loop. Appends to one partition stay one at a time, in the order they came."""
    while log.pending_append is not None:
        ended = _pending_appends.get(log.pending_append)
        if ended is None:       # not one of ours: finish it here
            log.settle()
        else:
            await ended.wait()
    begun = log.begin_append(records, **kwargs)
    if type(begun) is AppendResult:
        return begun
    ended = _pending_appends[begun] = trio.Event()
    try:
        # Started in this step (InThread, not trio.to_thread, whose wait for a thread slot
        # would let other tasks run first): a change to the log that settles this append
        # (`settle` waits for the write on the event loop) always finds its write under way.
        await InThread(begun.write).result()
        return log.end_append(begun)
    finally:
        del _pending_appends[begun]
        ended.set()


async def wait_for_replication(broker, waits: list, timeout_ms: int) -> None:
    """acks=all in a cluster: each partition's answer waits until the ISR has its batch
    (Kafka's delayed produce), all of them up to the request's `timeout_ms`."""
    # On the replica manager's clock: replication keeps real time, also under virtual time.
    replicas = broker.cluster.replicas
    deadline = replicas.clock.monotonic() + max(0, timeout_ms) / 1000

    async def wait_one(response, hosted, upto: int) -> None:
        code = await replicas.wait_for_replicas(hosted, upto, deadline)
        if code:
            response.error_code = code
            response.error_message = {
                ErrorCode.REQUEST_TIMED_OUT: "Timed out waiting for the in-sync replicas",
            }.get(code)

    async with trio.open_nursery() as nursery:
        for item in waits:
            nursery.start_soon(wait_one, *item)


async def flush_appended(broker, flushes: list) -> None:
    """Wait for the flushes the appends of `flushes` wait for (broker.flush_appended), each
    partition in a task of its own; a partition whose flush fails answers KAFKA_STORAGE_ERROR."""
    async def flush_one(response, log, upto: int) -> None:
        try:
            await broker.flush_appended(log, upto)
        except KafkaError as e:
            response.error_code = e.code
            response.error_message = e.message
            response.base_offset = -1
            response.log_append_time_ms = -1

    if len(flushes) == 1:
        await flush_one(*flushes[0])
        return
    async with trio.open_nursery() as nursery:
        for item in flushes:
            nursery.start_soon(flush_one, *item)


def add_leader_hints(broker, ctx, response, names: list) -> None:
    """KIP-951 (v10+, in a cluster): the current leader of every partition answered
    NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH, and those leaders' endpoints."""
    hints = LeaderHints(broker, ctx.connection.listener)
    for name, topic in zip(names, response.responses):
        for pr in topic.partition_responses:
            if pr.error_code in HINTED_ERRORS:
                leader, epoch = hints.current_leader(name, pr.index)
                pr.current_leader = PartitionResponse.LeaderIdAndEpoch(leader_id=leader,
                                                                       leader_epoch=epoch)
    if hints.endpoints:
        response.node_endpoints = hints.node_endpoints(Response.NodeEndpoint)


def _request_bytes(request) -> int:
    """The record bytes a Produce request carries (what producer_byte_rate measures)."""
    return sum(len(pd.records) for td in request.topic_data for pd in td.partition_data
               if pd.records is not None)


async def handle(broker, request, ctx):
    version = ctx.api_version
    acks = request.acks
    topics = []
    names = []
    failed = False
    flushes = []
    replication = [] if broker.cluster is not None and acks == -1 else None
    # With an authorizer, each topic needs WRITE (TOPIC_AUTHORIZATION_FAILED otherwise).
    writable = broker.authorizer.topic_check(ctx, WRITE) if broker.authorizer is not None \
        else None
    for td in request.topic_data:
        name = td.name
        if version >= 13:
            t = broker.topic_by_id(td.topic_id)
            name = t.name if t else None
        parts = []
        for pd in td.partition_data:
            if version < SERVED_FROM and not broker.config.release.serves_produce_v0_to_2:
                pr = _error(pd.index, ErrorCode.UNSUPPORTED_VERSION,
                            f"Produce v{version} is not supported; use v{SERVED_FROM} or later")
            elif acks not in (0, 1, -1):
                pr = _error(pd.index, ErrorCode.INVALID_REQUIRED_ACKS)
            elif name is None:
                pr = _error(pd.index, ErrorCode.UNKNOWN_TOPIC_ID)
            elif writable is not None and not writable(name):
                pr = _error(pd.index, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            else:
                pr = await append_partition(broker, name, pd.index, pd.records, version, acks,
                                            request.transactional_id, flushes, replication)
            if pr.error_code:
                failed = True
            parts.append(pr)
        topics.append(TopicResponse(name=td.name, topic_id=td.topic_id, partition_responses=parts))
        names.append(name)
    if flushes:
        await flush_appended(broker, flushes)
        failed = failed or any(response.error_code for response, _, _ in flushes)
    if replication:
        await wait_for_replication(broker, replication, request.timeout_ms)
    # Client quotas (security/quotas.py): the request's bytes count against the client's
    # producer_byte_rate once appended; over it, the connection is muted (even for acks=0) and
    # the response says for how long.
    throttle_ms = 0 if not broker.client_quotas.active else \
        throttle(broker, ctx, PRODUCER_BYTE_RATE, _request_bytes(request))
    if broker.client_quotas.requests_active:
        # request_percentage (KIP-124): the larger throttle wins; an acks=0 produce is not
        # counted, as in Kafka (it has no response to carry a throttle).
        if acks == 0:
            skip_request_time(broker)
        else:
            throttle_ms = max(throttle_ms, request_throttle(broker, ctx))
    if acks == 0:
        if failed:
            ctx.connection.closing = True
        return None
    response = Response(responses=topics, throttle_time_ms=throttle_ms)
    if broker.cluster is not None and version >= LEADER_HINTS_FROM:
        add_leader_hints(broker, ctx, response, names)
    return response
