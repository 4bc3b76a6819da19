"""A broker's life as the controller sees it: registration, heartbeats, controlled shutdown
(Kafka's BrokerLifecycleManager).

- Registration: at start the broker sends BrokerRegistration with its id, a new incarnation id
  (one per process start, so the controller tells a restart from a retry), its listeners, rack
  and supported features. The controller answers with the broker epoch (the offset of the
  RegisterBrokerRecord it wrote) and the broker starts fenced. Any failure is retried with
  Kafka's exponential backoff (100 ms doubling, up to half `broker.session.timeout.ms`):
  DUPLICATE_BROKER_REGISTRATION (a previous incarnation of this id is still in session) clears
  once that session expires.
- Heartbeats (BrokerHeartbeat) every `broker.heartbeat.interval.ms` (2000) carry the offset of
  the last metadata record this broker has applied (`current_metadata_offset`), `want_fence`
  while the broker has not yet caught up with the metadata log up to its own registration
  (`metadata_offset() < broker_epoch`: it could not serve what it does not know), and
  `want_shut_down` in controlled shutdown. The controller unfences a caught-up broker that does
  not want to be fenced and fences one silent for `broker.session.timeout.ms` (9000); the next
  heartbeat then unfences it again. A failed heartbeat is retried with the same backoff.
  A heartbeat answered STALE_BROKER_EPOCH means the controller has no registration of this
  epoch (its metadata log was lost): the broker registers again.
- States, Kafka's BrokerState (TRANSITIONS below): STARTING until a heartbeat answer says the
  broker has caught up (heartbeats every 10 ms meanwhile, so that a broker with nothing to
  recover starts quickly), RECOVERY until the controller unfences it, RUNNING. Controlled
  shutdown (`controlled_shutdown`) from RUNNING: PENDING_CONTROLLED_SHUTDOWN, heartbeats with
  want_shut_down until the controller answers should_shut_down (it has moved this broker's
  leaderships away and the other brokers have seen that), then SHUTTING_DOWN and heartbeats
  stop. From any other state the broker shuts down at once, as Kafka's does.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable

import trio

from trioka.node.channel import NodeAuthenticationFailed, NodeChannel, NodeUnreachable
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode

log = logging.getLogger("trioka.node.lifecycle")

DEFAULT_HEARTBEAT_INTERVAL_MS = 2000       # broker.heartbeat.interval.ms
DEFAULT_SESSION_TIMEOUT_MS = 9000          # broker.session.timeout.ms
INITIAL_BACKOFF_MS = 100                   # Kafka's resend backoff: 100 ms, doubling ...
BACKOFF_MULTIPLIER = 2
# Kafka's SecurityProtocol ids, as BrokerRegistration carries them.
SECURITY_PROTOCOLS = {"PLAINTEXT": 0, "SSL": 1, "SASL_PLAINTEXT": 2, "SASL_SSL": 3}
STARTING_HEARTBEAT_MS = 10                 # the pace while catching up (Kafka's 10 ms)
FIRST_SHUTDOWN_HEARTBEAT_MS = 50           # the heartbeat after the first controlled-shutdown one


class BrokerState(enum.Enum):
    """Kafka's BrokerState, as far as the lifecycle manager moves it."""
    STARTING = 1
    RECOVERY = 2
    RUNNING = 3
    PENDING_CONTROLLED_SHUTDOWN = 6
    SHUTTING_DOWN = 7


B = BrokerState

# state -> the states the broker may move to from there
TRANSITIONS = {
    B.STARTING: frozenset({B.RECOVERY, B.SHUTTING_DOWN}),
    B.RECOVERY: frozenset({B.RUNNING, B.SHUTTING_DOWN}),
    B.RUNNING: frozenset({B.PENDING_CONTROLLED_SHUTDOWN, B.SHUTTING_DOWN}),
    B.PENDING_CONTROLLED_SHUTDOWN: frozenset({B.SHUTTING_DOWN}),
    B.SHUTTING_DOWN: frozenset(),
}


def security_protocol_id(value: int | str) -> int:
    """A listener's security protocol as BrokerRegistration's int16: Kafka's name or id."""
    if isinstance(value, str):
        try:
            return SECURITY_PROTOCOLS[value.upper()]
        except KeyError:
            raise ValueError(f"unknown security protocol {value!r}") from None
    return int(value)


class ExponentialBackoff:
    """Kafka's ExponentialBackoff without jitter: 100 ms, 200 ms, ... up to `max_ms`."""

    def __init__(self, max_ms: int, initial_ms: int = INITIAL_BACKOFF_MS,
                 multiplier: int = BACKOFF_MULTIPLIER):
        self.initial_ms = initial_ms
        self.max_ms = max(max_ms, initial_ms)
        self.multiplier = multiplier
        self.attempts = 0

    def next_ms(self) -> int:
        delay = min(self.initial_ms * self.multiplier ** min(self.attempts, 30), self.max_ms)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


class BrokerLifecycleManager:
    """One broker's registration and heartbeats with the controller."""

    def __init__(self, *, node_id: int, cluster_id: str | None, rack: str | None,
                 listeners: list[tuple[str, str, int, int | str]], channel: NodeChannel, clock,
                 heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS,
                 session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
                 metadata_offset: Callable[[], int],
                 features: dict[str, tuple[int, int]],
                 log_dirs: list[uuid.UUID] | None = None):
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.rack = rack
        self.listeners = [(name, host, port, security_protocol_id(protocol))
                          for name, host, port, protocol in listeners]
        self.channel = channel
        self.clock = clock
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self.metadata_offset = metadata_offset
        self.features = dict(features)
        self.log_dirs = list(log_dirs or [])
        self.incarnation_id = uuid.uuid4()
        self.broker_epoch = -1
        self.state = BrokerState.STARTING
        self.fenced = True
        self.unfenced = trio.Event()      # set while unfenced; replaced when fenced again
        self.caught_up = trio.Event()     # the controller said we caught up (left STARTING)
        self.shut_down = trio.Event()     # SHUTTING_DOWN reached
        self.last_error: str | None = None
        self.heartbeats_sent = 0
        self._backoff = ExponentialBackoff(session_timeout_ms // 2)
        self._wake = trio.Event()
        self._got_shutdown_answer = False
        self.controlled_shutdown_complete = False    # the controller said should_shut_down

    def __repr__(self) -> str:
        return (f"BrokerLifecycleManager(node {self.node_id}, {self.state.name}, "
                f"epoch {self.broker_epoch}, fenced={self.fenced})")

    # -- state (mutated here, waited on in async defs) --

    def _move(self, new: BrokerState) -> None:
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"broker {self.node_id}: no transition {self.state.name} -> "
                                 f"{new.name}")
        log.info("broker %d: %s -> %s", self.node_id, self.state.name, new.name)
        self.state = new
        if new is BrokerState.SHUTTING_DOWN:
            self.shut_down.set()
        self._wake_up()

    def _wake_up(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def _set_fenced(self, fenced: bool) -> None:
        if fenced and not self.fenced:
            log.info("broker %d: fenced by the controller", self.node_id)
            self.unfenced = trio.Event()
        elif not fenced and self.fenced:
            log.info("broker %d: unfenced", self.node_id)
            self.unfenced.set()
        self.fenced = fenced

    def ready_to_unfence(self) -> bool:
        """Caught up with the metadata log up to this broker's own registration."""
        return self.broker_epoch >= 0 and self.metadata_offset() >= self.broker_epoch

    def registration_request(self):
        Request = protocol.request_class(ApiKey.BROKER_REGISTRATION)
        return Request(
            broker_id=self.node_id, cluster_id=self.cluster_id or "",
            incarnation_id=self.incarnation_id,
            listeners=[Request.Listener(name=name, host=host, port=port,
                                        security_protocol=security_protocol)
                       for name, host, port, security_protocol in self.listeners],
            features=[Request.Feature(name=name, min_supported_version=lo,
                                      max_supported_version=hi)
                      for name, (lo, hi) in sorted(self.features.items())],
            rack=self.rack, is_migrating_zk_broker=False, log_dirs=self.log_dirs,
            previous_broker_epoch=-1)

    def heartbeat_request(self):
        Request = protocol.request_class(ApiKey.BROKER_HEARTBEAT)
        return Request(broker_id=self.node_id, broker_epoch=self.broker_epoch,
                       current_metadata_offset=self.metadata_offset(),
                       want_fence=not self.ready_to_unfence(),
                       want_shut_down=self.state is BrokerState.PENDING_CONTROLLED_SHUTDOWN)

    def on_registered(self, broker_epoch: int) -> None:
        log.info("broker %d registered with the controller: incarnation %s, broker epoch %d",
                 self.node_id, self.incarnation_id, broker_epoch)
        self.broker_epoch = broker_epoch
        self.last_error = None
        self._backoff.reset()

    def on_heartbeat_response(self, response) -> int:
        """Apply a successful heartbeat answer; the delay (ms) before the next heartbeat."""
        self.last_error = None
        self._backoff.reset()
        self._set_fenced(response.is_fenced)
        delay = self.heartbeat_interval_ms
        if self.state is BrokerState.STARTING:
            if response.is_caught_up:
                self.caught_up.set()
                self._move(BrokerState.RECOVERY)
            else:
                delay = STARTING_HEARTBEAT_MS
        if self.state is BrokerState.RECOVERY:
            if not response.is_fenced:
                self._move(BrokerState.RUNNING)
            else:
                # Caught up but still fenced: ask again soon rather than a whole interval on.
                delay = STARTING_HEARTBEAT_MS if self.ready_to_unfence() else delay
        elif self.state is BrokerState.PENDING_CONTROLLED_SHUTDOWN:
            if response.should_shut_down:
                log.info("broker %d: the controller has asked us to exit controlled shutdown",
                         self.node_id)
                self.controlled_shutdown_complete = True
                self._move(BrokerState.SHUTTING_DOWN)
            elif not self._got_shutdown_answer:
                delay = FIRST_SHUTDOWN_HEARTBEAT_MS
            self._got_shutdown_answer = True
        return delay

    def on_failure(self, what: str, *, reported: bool = False) -> int:
        """A failed registration or heartbeat; the backoff (ms) before the next try.
        `reported`: the channel has said why already (a refused SASL login, logged once at
        ERROR), so each retry is only a debug line."""
        self.last_error = what
        delay = self._backoff.next_ms()
        log.log(logging.DEBUG if reported else logging.WARNING,
                "broker %d: %s; retrying in %d ms", self.node_id, what, delay)
        return delay

    def begin_controlled_shutdown(self) -> None:
        """Kafka's BeginControlledShutdownEvent: from RUNNING ask the controller first; from
        any other state shut down at once."""
        if self.state is BrokerState.RUNNING:
            log.info("broker %d: beginning controlled shutdown", self.node_id)
            self._got_shutdown_answer = False
            self._move(BrokerState.PENDING_CONTROLLED_SHUTDOWN)
        elif self.state is not BrokerState.PENDING_CONTROLLED_SHUTDOWN:
            log.info("broker %d: skipping controlled shutdown in state %s", self.node_id,
                     self.state.name)
            self._move(BrokerState.SHUTTING_DOWN)

    def begin_shutdown(self) -> None:
        self._move(BrokerState.SHUTTING_DOWN)

    # -- the task --

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Register, report started, then heartbeat until SHUTTING_DOWN (a shutdown before
        the registration went through ends it too, reported started all the same)."""
        await self._register()
        task_status.started()
        while self.state is not BrokerState.SHUTTING_DOWN:
            delay_ms = await self._heartbeat()
            await self._pause(delay_ms)

    async def _pause(self, delay_ms: int) -> None:
        """Wait `delay_ms`, or less if the state changes meanwhile."""
        if self.state is BrokerState.SHUTTING_DOWN:
            return
        wake = self._wake
        with self.clock.move_on_after(delay_ms / 1000):
            await wake.wait()

    async def controlled_shutdown(self, timeout_s: float) -> bool:
        """Ask the controller to move this broker's leaderships away, waiting at most
        `timeout_s`; True when it answered should_shut_down. The broker is SHUTTING_DOWN
        afterwards either way (heartbeats stop)."""
        self.begin_controlled_shutdown()
        with self.clock.move_on_after(timeout_s):
            await self.shut_down.wait()
        if not self.shut_down.is_set():
            log.warning("broker %d: controlled shutdown did not complete within %.1f s",
                        self.node_id, timeout_s)
            self.begin_shutdown()
        return self.controlled_shutdown_complete

    async def _register(self) -> None:
        while self.state is not BrokerState.SHUTTING_DOWN:
            try:
                response = await self.channel.request(ApiKey.BROKER_REGISTRATION,
                                                      self.registration_request())
            except NodeUnreachable as e:
                delay_ms = self.on_failure(f"registration failed: {e}",
                                           reported=isinstance(e, NodeAuthenticationFailed))
            else:
                if response.error_code == ErrorCode.NONE:
                    self.on_registered(response.broker_epoch)
                    return
                delay_ms = self.on_failure(
                    f"registration refused: {_error_name(response.error_code)}")
            await self._pause(delay_ms)

    async def _heartbeat(self) -> int:
        """Send one heartbeat; the delay (ms) before the next."""
        request = self.heartbeat_request()
        self.heartbeats_sent += 1
        try:
            response = await self.channel.request(ApiKey.BROKER_HEARTBEAT, request,
                                                  quiet_ms=self.heartbeat_interval_ms)
        except NodeUnreachable as e:
            return self.on_failure(f"heartbeat failed: {e}",
                                   reported=isinstance(e, NodeAuthenticationFailed))
        if response.error_code == ErrorCode.NONE:
            return self.on_heartbeat_response(response)
        delay_ms = self.on_failure(f"heartbeat refused: {_error_name(response.error_code)}")
        if response.error_code == ErrorCode.STALE_BROKER_EPOCH:
            # The controller has no registration of this epoch: register again.
            await self._pause(delay_ms)
            await self._register()
            return 0
        return delay_ms


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"
