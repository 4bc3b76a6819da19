"""Client quotas (KIP-13, KIP-55, KIP-124, KIP-219, KIP-599) per user and client id.

Kafka keeps quotas for *entities*: a user (the principal's name, "ANONYMOUS" for an
unauthenticated client), a client id, or both, each of which may also be the *default* entity
(`<default>` in kafka-configs, a null name on the wire). The quota keys are Kafka's:

- `producer_byte_rate`: bytes of produce requests per second;
- `consumer_byte_rate`: bytes of fetch responses per second;
- `request_percentage` (KIP-124): the share of the broker's request handling a client's
  requests may hold, in percent of one thread over the quota window (security/request_time.py
  says what that time is in trioka: the event-loop time of the client's connection task);
- `controller_mutation_rate` (KIP-599): partition mutations per second (a created topic counts
  its partitions, CreatePartitions the partitions added, a deleted topic its partitions).

Which quota applies to a client (user u, client id c) is the first entity holding the key in
Kafka's order (DefaultQuotaCallback):

    /config/users/u/clients/c, /config/users/u/clients/<default>, /config/users/u,
    /config/users/<default>/clients/c, /config/users/<default>/clients/<default>,
    /config/users/<default>, /config/clients/c, /config/clients/<default>

The entity found also says which clients share one rate sensor (Kafka's metric tags): a quota
of user u alone is shared by all u's client ids; a default-client-id quota gives every client id
its own sensor.

A sensor measures a rate as Kafka's `Rate` over a `SampledStat`: `quota.window.num` samples of
`quota.window.size.seconds` each. The bytes are recorded first; when the measured rate is over
the quota, the client is throttled for Kafka's ClientQuotaManager.throttleTime:

    (rate - quota) / quota * window     (window: the span the rate was measured over)

(a byte rate's is not bounded; request_percentage's is bounded by one quota window, Kafka's
ClientRequestQuotaManager.maxThrottleTimeMs, `quota.window.size.seconds`). KIP-219:
the response is sent at once carrying that `throttle_time_ms`, and the broker reads nothing more
from the connection for that long (`Connection.muted_until`, which the server honours); the
client also waits that long before it sends to this broker again. A throttled fetch gets an
empty response (its bytes are taken back from the sensor), as Kafka's KafkaApis sends.

request_percentage is recorded when a response is decided: Produce (not acks=0, as in Kafka)
and Fetch take the larger of their byte-rate and request throttles (a Fetch throttled either way
gets the empty response), every other API gets its request throttle from the server. Exempt, as
in Kafka: cluster actions (the inter-broker and controller RPCs, which Kafka answers with
sendResponseExemptThrottle), a replica's Fetch, every request on a controller listener (Kafka's
controller does not throttle forwarded requests) and the SASL exchange, which Kafka's network
thread serves before a request reaches KafkaApis (ApiVersions before authentication included).

controller_mutation_rate is measured by Kafka's TokenBucket (ControllerMutationQuotaManager):
the bucket holds up to `controller.quota.window.num` * `controller.quota.window.size.seconds` *
quota tokens, refills at the quota per second, and each mutation takes its partition count.
CreateTopics v6+, CreatePartitions v3+ and DeleteTopics v5+ are *strict*: a topic that arrives
while the bucket is below zero is refused with THROTTLING_QUOTA_EXCEEDED (one that arrives while
it is not is accepted, however many partitions it has); older versions are *permissive*: every
topic is accepted and the client is throttled. The throttle is the time the bucket needs to come
back to zero, -tokens / quota seconds, as of the answer. The quota is checked after a topic's
other checks passed, validate_only included, as Kafka's ReplicationControlManager does.

A single broker keeps the quotas in `client-quotas.json` in its log directory, replaced
atomically (written to a temporary file, fsynced, renamed) before the AlterClientQuotas answer.
In a KRaft cluster the controller writes ClientQuotaRecords to the metadata log, as Kafka's
ClientQuotaControlManager does, and every node enforces the quotas of its metadata image.
controller_mutation_rate is spent at the controller (apis/__init__.py's MutationControllerApi),
from the controller's own image: brokers forward CreateTopics, DeleteTopics and CreatePartitions
in an Envelope naming the client (apis/envelope.py), so the controller knows whose quota it is,
and the forwarding broker mutes the client for the throttle time the controller answers.
"""

import json

import trio

from trioka.security.request_time import RequestTime
from trioka.wire.errors import ErrorCode, KafkaError

FILE_NAME = "client-quotas.json"

USER = "user"
CLIENT_ID = "client-id"
IP = "ip"

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
BYTE_RATE_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE)
ENFORCED_KEYS = BYTE_RATE_KEYS + (REQUEST_PERCENTAGE, CONTROLLER_MUTATION_RATE)
# Kafka's QuotaConfigs types: the byte rates are longs, the other two doubles.
LONG_KEYS = BYTE_RATE_KEYS
# Kafka's other user/client-id quota keys, refused with a message saying so (none left).
NOT_ENFORCED_KEYS: tuple = ()

# Errors.THROTTLING_QUOTA_EXCEEDED's message, which Kafka's strict quota puts in the exception.
THROTTLING_QUOTA_EXCEEDED_MESSAGE = "The throttling quota has been exceeded."

# APIs exempt from request_percentage: Kafka's cluster actions (the APIs ApiKeys marks
# clusterAction, answered with sendResponseExemptThrottle), and the SASL exchange its network
# thread serves.
EXEMPT_API_KEYS = frozenset((
    4, 5, 6, 7,        # LeaderAndIsr, StopReplica, UpdateMetadata, ControlledShutdown
    27,                # WriteTxnMarkers
    52, 53, 54, 55,    # Vote, BeginQuorumEpoch, EndQuorumEpoch, DescribeQuorum
    56, 57, 58,        # AlterPartition, UpdateFeatures, Envelope
    62, 63, 67,        # BrokerRegistration, BrokerHeartbeat, AllocateProducerIds
    17, 36,            # SaslHandshake, SaslAuthenticate
))


class _Default:
    """The default entity of a type (a null entity name; `<default>` in kafka-configs)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


DEFAULT = _Default()


def resolution_order(user: str, client_id: str) -> tuple:
    """The entities whose quota may apply to (user, client id), in Kafka's order, each with
    the (user, client id) tags of the sensor its quota is measured by."""
    u, c = user, client_id
    return (
        ((u, c), (u, c)),
        ((u, DEFAULT), (u, c)),
        ((u, None), (u, "")),
        ((DEFAULT, c), (u, c)),
        ((DEFAULT, DEFAULT), (u, c)),
        ((DEFAULT, None), (u, "")),
        ((None, c), ("", c)),
        ((None, DEFAULT), ("", c)),
    )


class Rate:
    """Kafka's metrics `Rate` of a `SampledStat` of totals: `samples` windows of `window_ms`;
    the oldest is reused once all are used, and a window older than samples * window_ms
    no longer counts."""
    __slots__ = ("samples", "window_ms", "_starts", "_values", "_current")

    def __init__(self, samples: int = 11, window_ms: int = 1000):
        self.samples = samples
        self.window_ms = window_ms
        self._starts: list[float] = []
        self._values: list[float] = []
        self._current = 0

    def record(self, value: float, now_ms: float) -> None:
        if not self._starts:
            self._starts.append(now_ms)
            self._values.append(0.0)
            self._current = 0
        elif now_ms - self._starts[self._current] >= self.window_ms:
            # SampledStat.advance: the next sample, new or reset.
            self._current = (self._current + 1) % self.samples
            if self._current >= len(self._starts):
                self._starts.append(now_ms)
                self._values.append(0.0)
            else:
                self._starts[self._current] = now_ms
                self._values[self._current] = 0.0
        self._values[self._current] += value

    def _purge(self, now_ms: float) -> None:
        expire = self.samples * self.window_ms
        for i, start in enumerate(self._starts):
            if now_ms - start >= expire:
                self._starts[i] = now_ms
                self._values[i] = 0.0

    def window_size_ms(self, now_ms: float) -> float:
        """Rate.windowSize: the span measured, counted as at least samples - 1 full windows
        (so a first burst is not read as a huge rate), never less than 1 ms."""
        self._purge(now_ms)
        oldest = min(self._starts) if self._starts else now_ms
        elapsed = now_ms - oldest
        full = int(elapsed // self.window_ms)
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return max(elapsed, 1.0)

    def measure(self, now_ms: float) -> float:
        """Units per second over the window."""
        window = self.window_size_ms(now_ms)
        return sum(self._values) / (window / 1000.0)


class TokenBucket:
    """Kafka's metrics `TokenBucket` (KIP-599): up to `burst` tokens (samples * window * quota),
    refilled at `quota` per second; a recording takes tokens and may take the bucket below
    zero. It starts full."""
    __slots__ = ("quota", "burst", "tokens", "_last_ms")

    def __init__(self, quota: float, samples: int = 11, window_ms: int = 1000):
        self.quota = quota
        self.burst = samples * (window_ms / 1000.0) * quota
        self.tokens = self.burst
        self._last_ms: float | None = None

    def _refill(self, now_ms: float) -> None:
        if self._last_ms is not None:
            self.tokens = min(self.burst,
                              self.tokens + self.quota * (now_ms - self._last_ms) / 1000.0)
        self._last_ms = now_ms

    def measure(self, now_ms: float) -> float:
        """The tokens left (negative: the quota is exhausted)."""
        self._refill(now_ms)
        return self.tokens

    def record(self, value: float, now_ms: float) -> None:
        self._refill(now_ms)
        self.tokens = min(self.burst, self.tokens - value)

    def throttle_time_ms(self, now_ms: float) -> int:
        """ControllerMutationQuotaManager.throttleTimeMs: the time to bring the bucket back to
        zero at the refill rate, 0 when it is not below zero."""
        tokens = self.measure(now_ms)
        return 0 if tokens >= 0 else round(-tokens / self.quota * 1000)


class MutationQuota:
    """Kafka's Strict- or PermissiveControllerMutationQuota: the controller_mutation_rate of
    one client for the time of one request."""
    __slots__ = ("bucket", "strict", "clock_ms", "_last_throttle_ms", "_last_recorded_ms")

    def __init__(self, bucket: TokenBucket, strict: bool, clock_ms):
        self.bucket = bucket
        self.strict = strict
        self.clock_ms = clock_ms     # () -> the broker's monotonic time in ms
        self._last_throttle_ms = 0
        self._last_recorded_ms = 0.0

    def record(self, partitions: int) -> None:
        """Count `partitions` mutations. A strict quota first checks the bucket and, when it
        is below zero, refuses them: KafkaError(THROTTLING_QUOTA_EXCEEDED); a permissive one
        counts them and only remembers the throttle."""
        now = self.clock_ms()
        if self.strict:
            # Sensor.checkQuotas: a token bucket below zero is a violation.
            if self.bucket.measure(now) < 0:
                ms = self.bucket.throttle_time_ms(now)
                self._last_throttle_ms, self._last_recorded_ms = ms, now
                raise KafkaError(ErrorCode.THROTTLING_QUOTA_EXCEEDED,
                                 THROTTLING_QUOTA_EXCEEDED_MESSAGE)
            self.bucket.record(partitions, now)
        else:
            self.bucket.record(partitions, now)
            ms = self.bucket.throttle_time_ms(now)
            if ms:
                self._last_throttle_ms, self._last_recorded_ms = ms, now

    def throttle_time_ms(self) -> int:
        """The throttle last found, less the time since (the request may have waited since)."""
        elapsed = self.clock_ms() - self._last_recorded_ms
        return max(0, round(self._last_throttle_ms - elapsed))


def throttle_time_ms(rate: Rate, quota: float, now_ms: float) -> int:
    """ClientQuotaManager.throttleTime (QuotaUtils.throttleTime): 0 when within quota. Kafka
    bounds it by one quota window only for request_percentage and connection quotas; a byte
    rate's throttle is not bounded."""
    value = rate.measure(now_ms)
    if value <= quota:
        return 0
    window = rate.window_size_ms(now_ms)
    return round((value - quota) / quota * window)


def user_of(principal: str) -> str:
    """The user name of a principal "User:<name>" (KafkaPrincipal.getName)."""
    return principal.split(":", 1)[1] if ":" in principal else principal


def _name_of(part):
    return None if part is DEFAULT else part


def _part_of(name):
    return DEFAULT if name is None else name


class ClientQuotas:
    """The broker's client quotas (entity -> key -> value) and their rate sensors. An entity
    is a (user, client id) pair, each a name, DEFAULT, or None (not part of the entity)."""

    def __init__(self, files, samples: int = 11, window_seconds: int = 1,
                 controller_samples: int = 11, controller_window_seconds: int = 1):
        # The log dir's files (DiskFiles or MemoryFiles) FILE_NAME is kept in; None: not kept.
        self.files = files
        self.samples = samples
        self.window_ms = window_seconds * 1000
        self.controller_samples = controller_samples
        self.controller_window_ms = controller_window_seconds * 1000
        self._quotas: dict[tuple, dict[str, float]] = {}
        # (quota key, user tag, client tag) -> Rate, or TokenBucket for controller_mutation_rate
        self._sensors: dict[tuple, Rate | TokenBucket] = {}
        self._writing = trio.Lock()
        # The hot paths' checks, one attribute each: False while no entity holds a byte-rate
        # quota (active), a request_percentage (requests_active), a controller_mutation_rate
        # (mutations_active).
        self.active = False
        self.requests_active = False
        self.mutations_active = False
        # The connection tasks' event-loop time, measured while requests_active.
        self.request_time = RequestTime()
        if files is not None:
            self._load()

    # -- the quotas ------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads(self.files.read_small(FILE_NAME))
        except FileNotFoundError:
            return
        for entry in data:
            key = (_part_of(entry[USER]) if USER in entry else None,
                   _part_of(entry.get(CLIENT_ID)) if CLIENT_ID in entry else None)
            self._quotas[key] = {k: float(v) for k, v in entry["quotas"].items()}
        self._refresh()

    def snapshot(self) -> bytes:
        out = []
        for (user, client), values in self._quotas.items():
            entry: dict = {}
            if user is not None:
                entry[USER] = _name_of(user)
            if client is not None:
                entry[CLIENT_ID] = _name_of(client)
            entry["quotas"] = values
            out.append(entry)
        return json.dumps(out, indent=1).encode()

    def write(self, content: bytes) -> None:
        """Replace the file with `content`, atomically (blocking: call from a worker thread)."""
        if self.files is not None:
            self.files.write_atomic(FILE_NAME, content)

    async def persist(self) -> None:
        async with self._writing:
            await trio.to_thread.run_sync(self.write, self.snapshot())

    def _refresh(self) -> None:
        held = {k for v in self._quotas.values() for k in v}
        self.active = any(k in held for k in BYTE_RATE_KEYS)
        self.requests_active = REQUEST_PERCENTAGE in held
        self.mutations_active = CONTROLLER_MUTATION_RATE in held
        self.request_time.enable(self.requests_active)
        self._sensors.clear()   # a changed quota is measured afresh

    def load_image(self, image_quotas: dict) -> None:
        """A cluster node's quotas: those of its metadata image (ClientQuotaRecords), whose
        entities are ((entity_type, entity_name), ...)."""
        quotas = {}
        for components, values in image_quotas.items():
            entity, _ = entity_of(components)
            if entity is not None and values:
                quotas[entity] = dict(values)
        if quotas != self._quotas:
            self._quotas = quotas
            self._refresh()

    def entries(self) -> list[tuple[tuple, dict[str, float]]]:
        return [(k, dict(v)) for k, v in self._quotas.items() if v]

    def alter(self, entity: tuple, ops) -> None:
        """Apply checked operations (key, value, remove) to one entity."""
        values = self._quotas.setdefault(entity, {})
        for key, value, remove in ops:
            if remove:
                values.pop(key, None)
            else:
                values[key] = float(value)
        if not values:
            del self._quotas[entity]
        self._refresh()

    def quota_for(self, key: str, user: str, client_id: str) -> tuple[float, tuple] | None:
        """The quota of `key` that applies to (user, client id) and its sensor's tags."""
        for entity, tags in resolution_order(user, client_id):
            values = self._quotas.get(entity)
            if values is not None and key in values:
                return values[key], tags
        return None

    # -- enforcement -----------------------------------------------------------------------

    def record(self, key: str, principal: str, client_id: str, value: float,
               now_ms: float) -> int:
        """Record `value` bytes for the client and return its throttle time (ms): 0 when no
        quota applies or the rate is within it."""
        found = self.quota_for(key, user_of(principal), client_id)
        if found is None:
            return 0
        quota, tags = found
        sensor = self._sensors.get((key,) + tags)
        if sensor is None:
            sensor = self._sensors[(key,) + tags] = Rate(self.samples, self.window_ms)
        sensor.record(value, now_ms)
        return throttle_time_ms(sensor, quota, now_ms)

    def record_request_time(self, principal: str, client_id: str, seconds: float,
                            now_ms: float) -> int:
        """Record `seconds` of request handling for the client (as Kafka records thread time:
        percent of one thread times seconds) and return its request_percentage throttle,
        bounded by one quota window (ClientRequestQuotaManager.maxThrottleTimeMs)."""
        ms = self.record(REQUEST_PERCENTAGE, principal, client_id, seconds * 100.0, now_ms)
        return min(ms, self.window_ms)

    def mutation_quota(self, principal: str, client_id: str, strict: bool,
                       clock_ms) -> MutationQuota | None:
        """The client's controller_mutation_rate for one request (strict or permissive), or
        None when no such quota applies to it (Kafka's UnboundedControllerMutationQuota)."""
        found = self.quota_for(CONTROLLER_MUTATION_RATE, user_of(principal), client_id)
        if found is None:
            return None
        quota, tags = found
        key = (CONTROLLER_MUTATION_RATE,) + tags
        bucket = self._sensors.get(key)
        if bucket is None:
            bucket = self._sensors[key] = TokenBucket(quota, self.controller_samples,
                                                      self.controller_window_ms)
        return MutationQuota(bucket, strict, clock_ms)

    def unrecord(self, key: str, principal: str, client_id: str, value: float,
                 now_ms: float) -> None:
        """Take back bytes recorded for a response that was not sent (a throttled fetch)."""
        found = self.quota_for(key, user_of(principal), client_id)
        if found is not None:
            sensor = self._sensors.get((key,) + found[1])
            if sensor is not None:
                sensor.record(-value, now_ms)


def throttle(broker, ctx, key: str, size: int) -> int:
    """Record `size` bytes of the connection's client against `key` and, when over its quota,
    mute the connection for the throttle time (KIP-219); the throttle time in ms."""
    clock = broker.network_clock
    conn = ctx.connection
    ms = broker.client_quotas.record(key, conn.principal, ctx.client_id, size,
                                     clock.monotonic() * 1000)
    mute(broker, ctx, ms)
    return ms


def mute(broker, ctx, ms: int) -> None:
    """KIP-219: read nothing more from the connection for `ms` (the longest throttle wins)."""
    if ms:
        conn = ctx.connection
        conn.muted_until = max(conn.muted_until, broker.network_clock.monotonic() + ms / 1000)


def request_throttle(broker, ctx) -> int:
    """request_percentage: record the time the connection's task held the event loop since
    the last response (security/request_time.py) against its client and return the throttle
    (ms), muting the connection that long. Call only while `client_quotas.requests_active`."""
    quotas = broker.client_quotas
    seconds = quotas.request_time.take()
    conn = ctx.connection
    ms = quotas.record_request_time(conn.principal, ctx.client_id, seconds,
                                    broker.network_clock.monotonic() * 1000)
    mute(broker, ctx, ms)
    return ms


def skip_request_time(broker) -> None:
    """An exempt request: its time is taken and not counted against the client."""
    broker.client_quotas.request_time.take()


def exempt_from_request_quota(ctx) -> bool:
    """Whether Kafka exempts this request from request_percentage (see the module's notes;
    a replica's Fetch is decided by the Fetch handler)."""
    if ctx.header.api_key in EXEMPT_API_KEYS:
        return True
    auth = ctx.connection.authenticator
    return auth is not None and not auth.authenticated


def mutation_quota(broker, ctx, strict_since: int,
                   quotas: "ClientQuotas | None" = None) -> MutationQuota | None:
    """The request's controller_mutation_rate quota (KIP-599): strict from `strict_since` (the
    API version that can carry THROTTLING_QUOTA_EXCEEDED), permissive before; None when no
    quota applies to its client. `quotas`: the controller's (its metadata image's), or the
    broker's own by default."""
    if quotas is None:
        quotas = broker.client_quotas
    if not quotas.mutations_active:
        return None
    clock = broker.network_clock
    return quotas.mutation_quota(ctx.connection.principal, ctx.client_id,
                                 ctx.api_version >= strict_since,
                                 lambda: clock.monotonic() * 1000)


def mutation_throttle(broker, ctx, quota: MutationQuota | None) -> int:
    """The throttle time a mutation request's response carries for its quota, the connection
    muted that long (Kafka's sendResponseMaybeThrottleWithControllerQuota)."""
    if quota is None:
        return 0
    ms = quota.throttle_time_ms()
    mute(broker, ctx, ms)
    return ms


# -- the admin requests' checks (Kafka's ClientQuotaControlManager) ----------------------------

def entity_of(components) -> tuple[tuple | None, str | None]:
    """An AlterClientQuotas entity ([(entity_type, entity_name)]) as a key, or (None, the
    INVALID_REQUEST message)."""
    user = client = None
    seen = set()
    if not components:
        return None, "Invalid empty client quota entity"
    for entity_type, name in components:
        if entity_type in seen:
            return None, f"Invalid empty client quota entity: duplicate entity type {entity_type}"
        seen.add(entity_type)
        if entity_type == USER:
            user = _part_of(name)
        elif entity_type == CLIENT_ID:
            client = _part_of(name)
        elif entity_type == IP:
            return None, ("ip quotas (connection_creation_rate) are not supported by "
                          "this broker")
        else:
            return None, f"Unhandled client quota entity type: {entity_type}"
    return (user, client), None


def check_op(key: str, value: float, remove: bool, cluster: bool = False) -> str | None:
    """An operation's INVALID_REQUEST message, or None when it is valid (`cluster`: asked of a
    KRaft cluster's controller, which names itself so in the message)."""
    if key in NOT_ENFORCED_KEYS:
        return f"Quota {key} is not supported by this {'cluster' if cluster else 'broker'}"
    if key not in ENFORCED_KEYS:
        return f"Invalid configuration key {key}"
    if remove:
        return None
    if value != value or value <= 0 or value == float("inf"):
        return f"Invalid value {value} for configuration {key}: the quota must be positive"
    if key in LONG_KEYS and value != int(value):
        return f"Invalid value {value} for configuration {key}: must be a long"
    return None


def check_entry(components, ops, cluster: bool = False) -> tuple[tuple | None, str | None]:
    """An AlterClientQuotas entry (its entity's (type, name) pairs and its (key, value,
    remove) operations) as (entity key, None), or (None, the INVALID_REQUEST message)."""
    entity, message = entity_of(components)
    if message is not None:
        return None, message
    keys = [key for key, _, _ in ops]
    if len(set(keys)) != len(keys):
        return None, "Duplicate quota key in the request"
    for key, value, remove in ops:
        message = check_op(key, value, remove, cluster)
        if message is not None:
            return None, message
    return entity, None


def describe(quotas: ClientQuotas, components, strict: bool):
    """DescribeClientQuotas's filter: (error code, message, [(entity, values)])."""
    MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2
    wanted: dict[str, object] = {}
    for c in components:
        if c.entity_type in wanted:
            return ErrorCode.INVALID_REQUEST, \
                f"Duplicate entity type in filter: {c.entity_type}", []
        if c.entity_type not in (USER, CLIENT_ID, IP):
            return ErrorCode.INVALID_REQUEST, \
                f"Custom entity type '{c.entity_type}' not supported", []
        if c.match_type == MATCH_EXACT:
            if c.match is None:
                return ErrorCode.INVALID_REQUEST, \
                    f"Unexpected null match for entity type {c.entity_type}", []
            wanted[c.entity_type] = c.match
        elif c.match_type == MATCH_DEFAULT:
            wanted[c.entity_type] = DEFAULT
        elif c.match_type == MATCH_SPECIFIED:
            wanted[c.entity_type] = MATCH_SPECIFIED
        else:
            return ErrorCode.INVALID_REQUEST, f"Unknown match type {c.match_type}", []
    if IP in wanted:
        return ErrorCode.NONE, None, []   # no ip quotas are kept
    found = []
    for (user, client), values in quotas.entries():
        parts = {USER: user, CLIENT_ID: client}
        ok = True
        for entity_type, want in wanted.items():
            have = parts[entity_type]
            if have is None or (want is not MATCH_SPECIFIED and have != want):
                ok = False
        if strict and any(parts[t] is not None and t not in wanted for t in parts):
            ok = False
        if ok:
            found.append(((user, client), values))
    return ErrorCode.NONE, None, found


def components_of(entity: tuple) -> list[tuple[str, str | None]]:
    """An entity key as (entity_type, entity_name) pairs, names null for defaults."""
    user, client = entity
    out = []
    if user is not None:
        out.append((USER, _name_of(user)))
    if client is not None:
        out.append((CLIENT_ID, _name_of(client)))
    return out
