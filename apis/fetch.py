"""Fetch (key 1), v4-18: read stored batches as they are, long-polling for new data.

Served as Kafka serves a consumer (replica id -1):
- Data starts at the stored batch that contains `fetch_offset` (clients skip the records before
  it) and is whole batches, never decoded: the bytes go from the segment to the socket as stored.
- Limits, as Kafka's KafkaApis and ReplicaManager.readFromLog apply them: the response's budget is
  the request's `max_bytes` capped by the broker's `fetch.max.bytes` (55 MiB), and `min_bytes` is
  capped by that budget; each partition reads up to min(`partition_max_bytes`, what is left of the
  budget), partitions filled in request order. KIP-74: until a partition has returned data, the
  first batch is returned even when it is larger than the limits (up to the topic's
  `max.message.bytes`), so a consumer always makes progress; after that the limits are hard. A
  response is thus at most about `fetch.max.bytes` plus one batch, never the 2 GiB a frame allows.
- The upper bound is the high watermark (read_uncommitted) or the last stable offset
  (read_committed, isolation level 1). A fetch offset below the log start offset or above the log
  end offset is OFFSET_OUT_OF_RANGE. Partitions of a log dir an I/O error took offline are
  KAFKA_STORAGE_ERROR, as in Kafka (log/manager.py).
- Long polling: the answer goes back as soon as `min_bytes` are available or any partition has an
  error; otherwise the request waits up to `max_wait_ms`, and is woken only by a change of the
  partitions it reads (an append, a marker, the log start offset moving, a deletion), as Kafka's
  fetch purgatory is keyed by partition. It then reads its partitions again. A sessionless fetch
  registers with each partition it reads (PartitionLog.add_waiter); a fetch of a session
  registers once with its session, whose partitions stay registered with their logs. The
  deadlines are kept by the broker's fetch purgatory (purgatory.py), whose reaper answers expired
  requests a bounded number per turn of the event loop, so aligned timeouts do not stall it.
- An incremental fetch reads only the session's partitions that changed since its last response
  and those the request names (fetch_sessions.py), so its cost follows the changes, not the
  number of partitions in the session; the response is the one reading them all would give.
- Stored batches read from disk go out with sendfile: the response holds file regions that share
  one duplicated descriptor per segment file (log/files.py), so descriptors do not grow with the
  number of fetches waiting to be sent.
- KIP-227 sessions (v7+): see fetch_sessions.py. v13+ name topics by id (UNKNOWN_TOPIC_ID).
- v9+ `current_leader_epoch`: older than ours is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.

In a cluster (node/cluster_link.py), as Kafka's ReplicaManager.fetchMessages serves consumers:
- A consumer's Fetch v11+ may read any replica of a partition, leader or follower (Kafka's
  FetchParams.fetchOnlyLeader is false for it), older versions only the leader
  (NOT_LEADER_OR_FOLLOWER from a follower). A follower serves up to its own high watermark (or
  last stable offset), which trails the leader's by a replica fetch: an offset between its HW and
  its log end offset gets no records yet, one past its log end offset OFFSET_OUT_OF_RANGE (the
  consumer then checks its position with the leader, KIP-392's case 4). ListOffsets stays with
  the leader.
- KIP-392: with `replica.selector.class` set (replica/selector.py), the leader asks the selector
  which replica each v11+ consumer fetch should read, given its `rack_id` (`client.rack`); when
  that is a follower, the partition is answered at once with `preferred_read_replica` = its id,
  its HW, LSO and log start offset, and no records; an incremental fetch always reports it.
- KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH carries, from v16,
  `current_leader` and the leader's address in the response's `node_endpoints`
  (node/leader_hints.py), as Kafka sends them.
- Follower (replica) fetches are `follower_fetch` below.

Versions 0-3 (message formats v0/v1) were removed in Kafka 4.0 and are not served. v18 (KIP-1166,
Kafka 4.1) adds the high watermark a replica knows to each partition, so that KRaft's leader of
the metadata log need not park a fetch whose replica is behind on it; consumers never set it, and
this broker's Fetch (followers included) does not act on it: v18 is served as v17.
"""

import trio

from trioka.log.fetch_sessions import FINAL_EPOCH, INITIAL_EPOCH, CachedPartition
from trioka.log.files import FileRegion
from trioka.node.leader_hints import HINTED_ERRORS, LeaderHints
from trioka.replica.selector import ClientMetadata, preferred_read_replica
from trioka.security.acls import READ
from trioka.security.quotas import CONSUMER_BYTE_RATE, request_throttle, skip_request_time, \
    throttle
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError
from trioka.wire.protocol import response_class
from trioka.wire.types import ZERO_UUID

Response = response_class(ApiKey.FETCH)
TopicResponse = Response.FetchableTopicResponse
PartitionData = TopicResponse.PartitionData
AbortedTransaction = PartitionData.AbortedTransaction
# The tagged structs a consumer's partition leaves at their defaults, one instance shared by
# every partition answered (never mutated: the leader hints assign a new `current_leader`): three
# objects fewer per partition to allocate, free, and walk in the garbage collector.
NO_DIVERGING_EPOCH = PartitionData.EpochEndOffset()
NO_CURRENT_LEADER = PartitionData.LeaderIdAndEpoch()
NO_SNAPSHOT_ID = PartitionData.SnapshotId()

READ_COMMITTED = 1
# Fetch v11 added rack_id and preferred_read_replica (KIP-392); from it consumers may read
# followers. v16 added node_endpoints, and Kafka sends the KIP-951 leader hints from it.
FOLLOWER_READS_FROM = 11
LEADER_HINTS_FROM = 16


def _resolve(broker, topic_name, topic_id, uses_ids):
    """(name, id) of a requested topic; name None when unknown."""
    if uses_ids:
        t = broker.topic_by_id(topic_id)
        return (t.name if t else None), topic_id
    t = broker.topic(topic_name)
    return topic_name, (t.topic_id if t else ZERO_UUID)


def _error_partition(index: int, code: int) -> object:
    # Empty records, not null: Kafka sends an empty record set, and librdkafka rejects a null one.
    return PartitionData(partition_index=index, error_code=code, high_watermark=-1,
                         last_stable_offset=-1, log_start_offset=-1, records=b"")


class _Read:
    """One pass over the wanted partitions: what each would return now."""

    def __init__(self):
        self.bytes = 0
        self.errors = False
        self.redirected = False   # a partition was sent to its preferred read replica
        self.results = []   # (CachedPartition, PartitionData, has_records)
        self.logs = []      # (CachedPartition, its PartitionLog or None when it had an error)

    def failed(self, cp, log, code: int) -> None:
        """A partition answered with an error (`log`: its PartitionLog, or None)."""
        self.errors = True
        self.logs.append((cp, log))
        self.results.append((cp, _error_partition(cp.partition, code), False))

    def budget(self, cp, max_bytes: int) -> tuple[int, bool]:
        """What the next partition may read: (its byte limit, whether KIP-74's first batch is
        still due), from the response's `max_bytes` and what was read so far."""
        return min(cp.max_bytes, max(0, max_bytes - self.bytes)), self.bytes == 0

    def took(self, cp, log, read) -> int:
        """A partition read: its log kept (the long poll waits on it), its bytes counted.
        Returns its size."""
        self.logs.append((cp, log))
        self.bytes += read.size
        return read.size

    def release(self) -> None:
        """Let go of the file regions of a pass whose answer is not sent."""
        for _, pd, has_records in self.results:
            if has_records:
                for chunk in pd.records:
                    if type(chunk) is FileRegion:
                        chunk.close()


class _ReadReplicaChoice:
    """KIP-392 for one consumer request: the broker's replica selector, the consumer, and the
    racks of the live brokers on its listener (node id -> rack)."""
    __slots__ = ("selector", "client", "racks")

    def __init__(self, selector, client: ClientMetadata, racks: dict):
        self.selector = selector
        self.client = client
        self.racks = racks


def _replica_to_read(broker, cp, version: int, choice: _ReadReplicaChoice | None):
    """In a cluster: (the PartitionLog a consumer's fetch reads, the preferred read replica or
    -1), or the partition's error (see the module's docstring)."""
    hosted = broker.cluster.replicas.hosted(cp.topic, cp.partition)
    state = hosted.state
    state.check_current_leader_epoch(cp.current_leader_epoch,
                                     require_leader=version < FOLLOWER_READS_FROM)
    log = broker.logs.partition(cp.topic, cp.partition, reading=True)
    preferred = -1
    if choice is not None and state.is_leader:
        preferred = preferred_read_replica(
            choice.selector, choice.client, state, leader_log_end_offset=log.log_end_offset,
            fetch_offset=cp.fetch_offset, racks=choice.racks,
            now_ms=broker.network_clock.monotonic() * 1000)   # the replica manager's clock
    return log, preferred


def _read_all(broker, wanted, max_bytes: int, isolation: int, version: int,
              choice: _ReadReplicaChoice | None = None, out: _Read | None = None,
              readable=None) -> _Read:
    """Read `wanted` into `out` (a new _Read, or one a previous slice of the request filled):
    the response's budget is what `max_bytes` leaves after what `out` holds, and KIP-74's first
    batch is due until something was read. `readable` (with an authorizer): topic -> whether
    the client may READ it; a topic it may not is TOPIC_AUTHORIZATION_FAILED."""
    out = _Read() if out is None else out
    cluster = broker.cluster
    for cp in wanted:
        if cp.topic is None:
            out.failed(cp, None, ErrorCode.UNKNOWN_TOPIC_ID)
            continue
        if readable is not None and not readable(cp.topic):
            out.failed(cp, None, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            continue
        log = None
        try:
            if cluster is None:
                log = broker.partition(cp.topic, cp.partition, reading=True)
                if cp.current_leader_epoch not in (-1, broker.leader_epoch):
                    raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH
                                     if cp.current_leader_epoch < broker.leader_epoch
                                     else ErrorCode.UNKNOWN_LEADER_EPOCH)
            else:
                log, preferred = _replica_to_read(broker, cp, version, choice)
                if preferred >= 0:
                    # Kafka skips the read and answers at once: the consumer goes there.
                    out.redirected = True
                    out.logs.append((cp, log))
                    out.results.append((cp, PartitionData(
                        partition_index=cp.partition, error_code=0,
                        high_watermark=log.high_watermark,
                        last_stable_offset=log.last_stable_offset,
                        log_start_offset=log.log_start_offset,
                        aborted_transactions=None if isolation != READ_COMMITTED else [],
                        preferred_read_replica=preferred, records=b""), False))
                    continue
            limit, first = out.budget(cp, max_bytes)
            upper = log.last_stable_offset if isolation == READ_COMMITTED else None
            read = log.read(cp.fetch_offset, limit, min_one_batch=first, isolation_upper=upper,
                            zero_copy=True)
        except KafkaError as e:
            out.failed(cp, log, e.code)
            continue
        size = out.took(cp, log, read)
        aborted = None
        if isolation == READ_COMMITTED:
            # The aborted transactions overlapping what is returned, so the consumer can drop
            # their records (read_uncommitted gets null).
            aborted = [AbortedTransaction(producer_id=pid, first_offset=start)
                       for pid, start in log.aborted_transactions(cp.fetch_offset, upper)] \
                if size else []
        pd = PartitionData(partition_index=cp.partition, error_code=0,
                           high_watermark=read.high_watermark,
                           last_stable_offset=read.last_stable_offset,
                           log_start_offset=read.log_start_offset,
                           aborted_transactions=aborted, preferred_read_replica=-1,
                           records=read.chunks if size else b"",
                           diverging_epoch=NO_DIVERGING_EPOCH, current_leader=NO_CURRENT_LEADER,
                           snapshot_id=NO_SNAPSHOT_ID)
        out.results.append((cp, pd, bool(size)))
    return out


# A fetch of thousands of partitions (a consumer's first full fetch) is read this many
# partitions at a time, with the event loop's other work served in between: one read of 10,000
# partitions is about 80 ms of the loop.
READ_SLICE = 1000


async def _read_paced(broker, wanted, max_bytes: int, isolation: int, version: int,
                      choice: _ReadReplicaChoice | None, readable=None) -> _Read:
    """_read_all, a READ_SLICE of partitions per turn of the event loop."""
    if len(wanted) <= READ_SLICE:
        return _read_all(broker, wanted, max_bytes, isolation, version, choice,
                         readable=readable)
    wanted = list(wanted)
    out = _Read()
    try:
        for start in range(0, len(wanted), READ_SLICE):
            if start:
                await trio.lowlevel.checkpoint()
            _read_all(broker, wanted[start:start + READ_SLICE], max_bytes, isolation, version,
                      choice, out, readable)
    except BaseException:
        out.release()
        raise
    return out


class _Wanted(CachedPartition):
    """A partition of this request (sessionless fetches use it without a session)."""
    __slots__ = ("current_leader_epoch",)

    def __init__(self, topic, topic_id, partition, fetch_offset, max_bytes, leader_epoch=-1):
        super().__init__(topic, topic_id, partition, fetch_offset, max_bytes)
        self.current_leader_epoch = leader_epoch


def _requested(broker, request, uses_ids: bool) -> list:
    out = []
    for t in request.topics:
        name, tid = _resolve(broker, t.topic, t.topic_id, uses_ids)
        for p in t.partitions:
            out.append(_Wanted(name, tid, p.partition, p.fetch_offset, p.partition_max_bytes,
                               p.current_leader_epoch))
    return out


def _response(version, session_id, results, uses_ids, error=ErrorCode.NONE,
              hints: LeaderHints | None = None) -> object:
    """The Fetch response of `results`; with `hints` (a cluster, v16+), KIP-951's current
    leader on each partition answered NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH."""
    topics: list = []
    last = None
    for cp, pd, _ in results:
        key = cp.topic_id if uses_ids else cp.topic
        if last is None or last[0] != key:
            last = (key, TopicResponse(topic=cp.topic if not uses_ids else None,
                                       topic_id=cp.topic_id, partitions=[]))
            topics.append(last[1])
        if hints is not None and pd.error_code in HINTED_ERRORS:
            leader, epoch = hints.current_leader(cp.topic, cp.partition)
            pd.current_leader = PartitionData.LeaderIdAndEpoch(leader_id=leader,
                                                               leader_epoch=epoch)
        last[1].partitions.append(pd)
    response = Response(throttle_time_ms=0, error_code=error, session_id=session_id,
                        responses=topics)
    if hints is not None and hints.endpoints:
        response.node_endpoints = hints.node_endpoints(Response.NodeEndpoint)
    return response


def _leader_hints(broker, ctx) -> LeaderHints | None:
    if broker.cluster is None or ctx.api_version < LEADER_HINTS_FROM:
        return None
    return LeaderHints(broker, ctx.connection.listener)


def _read_replica_choice(broker, request, ctx) -> _ReadReplicaChoice | None:
    """KIP-392's inputs for a consumer's fetch, None when no replica selector applies (a
    single broker, no `replica.selector.class`, a Fetch before v11)."""
    selector = broker.replica_selector
    if selector is None or broker.cluster is None or ctx.api_version < FOLLOWER_READS_FROM:
        return None
    listener = ctx.connection.listener
    client = ClientMetadata(request.rack_id or "", ctx.client_id,
                            listener.name if listener is not None else None)
    racks = {node: rack for node, _, _, rack in broker.brokers_view(listener)}
    return _ReadReplicaChoice(selector, client, racks)


def replica_id_of(request, version: int) -> tuple[int, int]:
    """(replica id, broker epoch) of a Fetch: a follower's node id (>= 0), or -1 for a
    consumer; v15+ carry them in ReplicaState (KIP-903)."""
    if version >= 15:
        return request.replica_state.replica_id, request.replica_state.replica_epoch
    return request.replica_id, -1


async def follower_fetch(broker, request, ctx, replica_id: int, broker_epoch: int):
    """A follower's Fetch (Kafka's fetchRecords for a replica): each partition must be led here
    in the follower's `current_leader_epoch`; the follower's fetch offset is its log end offset,
    recorded first (the high watermark may move, the follower may rejoin the ISR:
    replica/manager.py); records are read up to the log end offset, not the high watermark;
    no sessions; long-polls as a consumer's fetch does. An isolated node (node controls)
    answers no replica: the connection is closed, as a network partition would cut it."""
    version = ctx.api_version
    if broker.node_controls.isolated:
        ctx.connection.closing = True
        return None
    uses_ids = version >= 13
    wanted = _requested(broker, request, uses_ids)
    if broker.cluster is None:
        # A single broker has no followers: Kafka's answer to a replica it does not know.
        return _response(version, 0, [
            (cp, _error_partition(cp.partition, ErrorCode.UNKNOWN_LEADER_EPOCH
                                  if cp.current_leader_epoch >= 0
                                  else ErrorCode.NOT_LEADER_OR_FOLLOWER), False)
            for cp in wanted], uses_ids)
    hints = _leader_hints(broker, ctx)
    replicas = broker.cluster.replicas
    starts = {}
    for t in request.topics:
        for p in t.partitions:
            starts[(t.topic_id if uses_ids else t.topic, p.partition)] = p.log_start_offset
    max_bytes = request.max_bytes
    # Replication is the cluster's machinery: a follower's long poll keeps real time, also
    # under virtual time (broker.network_clock), as the follower's own request timeout does.
    clock = broker.network_clock
    deadline = clock.monotonic() + max(0, request.max_wait_ms) / 1000
    first_pass = True
    while True:
        out = _Read()
        for cp in wanted:
            log = None
            try:
                if cp.topic is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID)
                hosted = replicas.leader(cp.topic, cp.partition, cp.current_leader_epoch)
                log = hosted.log
                if first_pass:
                    replicas.follower_fetched(
                        hosted, replica_id, fetch_offset=cp.fetch_offset,
                        current_leader_epoch=cp.current_leader_epoch,
                        log_start_offset=starts.get((cp.topic_id if uses_ids else cp.topic,
                                                     cp.partition), -1),
                        broker_epoch=broker_epoch)
                limit, first = out.budget(cp, max_bytes)
                read = log.read(cp.fetch_offset, limit, min_one_batch=first,
                                isolation_upper=log.log_end_offset, zero_copy=True)
            except KafkaError as e:
                out.failed(cp, log, e.code)
                continue
            size = out.took(cp, log, read)
            out.results.append((cp, PartitionData(
                partition_index=cp.partition, error_code=0, high_watermark=log.high_watermark,
                last_stable_offset=log.last_stable_offset, log_start_offset=log.log_start_offset,
                aborted_transactions=None, preferred_read_replica=-1,
                records=read.chunks if size else b""), bool(size)))
        first_pass = False
        if (out.bytes >= request.min_bytes or out.errors or request.max_wait_ms <= 0
                or clock.monotonic() >= deadline or broker.shutting_down.is_set()):
            break
        out.release()
        changed = trio.Event()
        logs = [log for _, log in out.logs if log is not None]
        for log in logs:
            log.add_waiter(changed)
        try:
            with clock.move_on_at(deadline):
                await changed.wait()
        finally:
            for log in logs:
                log.remove_waiter(changed)
    return _response(version, 0, out.results, uses_ids, hints=hints)


async def handle(broker, request, ctx):
    version = ctx.api_version
    replica_id, broker_epoch = replica_id_of(request, version)
    if replica_id >= 0:
        if broker.client_quotas.requests_active:
            # A replica's Fetch is exempt from request_percentage, as in Kafka (a replica's
            # connection carries only its fetches, so what it held so far is dropped here).
            skip_request_time(broker)
        return await follower_fetch(broker, request, ctx, replica_id, broker_epoch)
    uses_ids = version >= 13
    cache = broker.fetch_sessions
    session = None
    session_id, epoch = (request.session_id, request.session_epoch) if version >= 7 else (0, -1)

    if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
        # A full fetch; it may close an old session and open a new one.
        if session_id:
            cache.remove(session_id)
        wanted = requested = _requested(broker, request, uses_ids)
        if epoch == INITIAL_EPOCH and version >= 7:
            session = cache.new_session(uses_ids)
            if session is not None:
                for w in wanted:
                    session.add((w.topic_id if uses_ids else w.topic, w.partition), w)
        incremental = False
    else:
        try:
            session = cache.get(session_id, epoch)
        except KafkaError as e:
            return Response(throttle_time_ms=0, error_code=e.code, session_id=0, responses=[])
        if session.uses_topic_ids != uses_ids:
            return Response(throttle_time_ms=0, error_code=ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR,
                            session_id=0, responses=[])
        for w in _requested(broker, request, uses_ids):
            key = (w.topic_id if uses_ids else w.topic, w.partition)
            cached = session.partitions.get(key)
            if cached is None:
                session.add(key, w)
            else:
                session.update(cached, w.fetch_offset, w.max_bytes)
                cached.current_leader_epoch = w.current_leader_epoch
        for f in request.forgotten_topics_data:
            name, tid = _resolve(broker, f.topic, f.topic_id, uses_ids)
            for p in f.partitions:
                session.forget((tid if uses_ids else f.topic, p))
        if session.partitions:
            session.next_epoch()
            incremental = True
        else:
            # Kafka's FetchManager.newContext: a session left without partitions is closed and
            # the request served sessionless (session id 0), with nothing to fetch.
            cache.remove(session.session_id)
            session = None
            wanted = requested = []
            incremental = False

    cluster = broker.cluster
    choice = _read_replica_choice(broker, request, ctx) if cluster is not None else None
    # With an authorizer, each topic needs READ (KafkaApis.handleFetchRequest).
    readable = broker.authorizer.topic_check(ctx, READ) if broker.authorizer is not None \
        else None
    # KafkaApis: fetch.max.bytes caps the request's max_bytes, and min_bytes is capped by that.
    max_bytes = min(request.max_bytes, broker.config.fetch_max_bytes)
    min_bytes = min(request.min_bytes, max_bytes)
    # Long poll: answer at once when enough is there, else wait for a change of the partitions
    # read until max_wait_ms.
    deadline = broker.clock.monotonic() + max(0, request.max_wait_ms) / 1000
    while True:
        # An incremental fetch reads what changed in its session; one whose session was closed
        # meanwhile (evicted) no longer hears of changes, so it reads all the session holds.
        listening = session is not None and not session.closed
        if listening:
            wanted = session.to_examine(broker.leader_epoch, None if incremental else requested)
        elif incremental:
            wanted = list(session.partitions.values())
        read = await _read_paced(broker, wanted, max_bytes, request.isolation_level, version,
                                 choice, readable)
        if listening:
            for cp, log in read.logs:
                session.listen(cp, log)
        if (read.bytes >= min_bytes or read.errors or read.redirected
                or request.max_wait_ms <= 0 or broker.clock.monotonic() >= deadline
                or broker.shutting_down.is_set()):
            break
        read.release()
        # A DelayedFetch of the broker's fetch purgatory (apis/purgatory.py): woken by a change
        # or at the deadline, a bounded number of requests per turn of the event loop.
        changed = broker.fetch_purgatory.delayed(deadline)
        logs = () if listening else [log for _, log in read.logs if log is not None]
        if listening:
            session.waiters.add(changed)
        for log in logs:
            log.add_waiter(changed)
        try:
            await broker.fetch_purgatory.wait(changed)
        finally:
            if listening:
                session.waiters.discard(changed)
            for log in logs:
                log.remove_waiter(changed)

    quotas = broker.client_quotas
    if (quotas.active and read.bytes) or quotas.requests_active:
        # Client quotas (security/quotas.py): the response's bytes count against the client's
        # consumer_byte_rate, the request's event-loop time against its request_percentage.
        # Over either, Kafka takes the bytes back and answers with no data, the larger
        # throttle time set and the connection muted that long; the client fetches the same
        # offsets again afterwards.
        counted = quotas.active and read.bytes
        throttle_ms = throttle(broker, ctx, CONSUMER_BYTE_RATE, read.bytes) if counted else 0
        if quotas.requests_active:
            throttle_ms = max(throttle_ms, request_throttle(broker, ctx))
        if throttle_ms:
            if counted:
                quotas.unrecord(CONSUMER_BYTE_RATE, ctx.connection.principal, ctx.client_id,
                                read.bytes, broker.network_clock.monotonic() * 1000)
            read.release()
            response = _response(version, session.session_id if session else 0, [], uses_ids)
            response.throttle_time_ms = throttle_ms
            return response
    results = read.results
    if session is not None:
        session.rotate([(cp.topic_id if uses_ids else cp.topic, cp.partition)
                        for cp, _, has in results if has])
        reported = []
        for cp, pd, has in results:
            must = cp.must_report(has, pd.error_code, pd.high_watermark, pd.last_stable_offset,
                                  pd.log_start_offset)
            session.answered(cp, pd.error_code, pd.high_watermark)
            # Kafka's FetchSession reports a partition sent to a preferred read replica.
            if must or not incremental or pd.preferred_read_replica >= 0:
                reported.append((cp, pd, has))
        results = reported
    # A response of thousands of partitions is encoded off the event loop (server.py).
    ctx.large_response = len(results) > READ_SLICE
    return _response(version, session.session_id if session else 0, results, uses_ids,
                     hints=_leader_hints(broker, ctx) if cluster is not None else None)
