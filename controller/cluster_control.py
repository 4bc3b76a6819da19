"""Brokers as the controller sees them: registration, heartbeats, sessions (Kafka's
ClusterControlManager and BrokerHeartbeatManager).

Registration (BrokerRegistration): a broker registers with its id, an incarnation id (new each
time the process starts), its listeners, rack and supported features. A new incarnation gets a
new broker epoch -- the offset its RegisterBrokerRecord will have in `__cluster_metadata`, as
in Kafka -- and starts fenced. The same incarnation registering again keeps its epoch and its
fenced / shutting-down state. Another incarnation of an id whose session is still alive is
refused (DUPLICATE_BROKER_REGISTRATION): two processes must not share a broker id; once the old
session has expired (or the old broker was fenced) the new one takes over.

Heartbeats (BrokerHeartbeat) move a broker between the states of BROKER_STATES below. A fenced
broker is unfenced when it asks (want_fence false) and has caught up with the metadata log up to
its own registration record (current_metadata_offset >= that record's offset). An unfenced
broker that asks to shut down while it leads partitions enters controlled shutdown: it leaves
every ISR and its leaderships move to other replicas first; it is told to shut down
(should_shut_down) once it leads nothing and every active broker has caught up with the records
that moved them. A broker silent for `broker.session.timeout.ms` (default 9000) is fenced.

Session state (last contact, reported metadata offset, controlled shutdown offset) is soft state,
kept only here and never written to the log, as in Kafka: a controller that restarts gives every
registered broker a fresh session.

The records a heartbeat makes (fencing removes the broker from ISRs, ...) are the
ReplicationControlManager's: `process_broker_heartbeat` lives there, as in Kafka.
"""

import dataclasses
import enum

from trioka.clock import Clock
from trioka.controller.placement import UsableBroker
from trioka.metadata import records as r
from trioka.metadata.image import MetadataImage
from trioka.wire.errors import ErrorCode, KafkaError

DEFAULT_SESSION_TIMEOUT_MS = 9000   # broker.session.timeout.ms


class BrokerControlState(enum.Enum):
    FENCED = "fenced"
    UNFENCED = "unfenced"
    CONTROLLED_SHUTDOWN = "controlled_shutdown"
    SHUTDOWN_NOW = "shutdown_now"


S = BrokerControlState


@dataclasses.dataclass(frozen=True)
class StateFlags:
    """What a heartbeat response says in each state."""
    fenced: bool
    in_controlled_shutdown: bool
    should_shut_down: bool


BROKER_STATES = {
    S.FENCED: StateFlags(fenced=True, in_controlled_shutdown=False, should_shut_down=False),
    S.UNFENCED: StateFlags(fenced=False, in_controlled_shutdown=False, should_shut_down=False),
    S.CONTROLLED_SHUTDOWN: StateFlags(fenced=False, in_controlled_shutdown=True,
                                      should_shut_down=False),
    S.SHUTDOWN_NOW: StateFlags(fenced=True, in_controlled_shutdown=False, should_shut_down=True),
}

# state -> the states one heartbeat may move a broker to (Kafka's calculateNextBrokerState)
TRANSITIONS = {
    S.FENCED: frozenset({S.FENCED, S.UNFENCED, S.SHUTDOWN_NOW}),
    S.UNFENCED: frozenset({S.UNFENCED, S.FENCED, S.CONTROLLED_SHUTDOWN, S.SHUTDOWN_NOW}),
    S.CONTROLLED_SHUTDOWN: frozenset({S.CONTROLLED_SHUTDOWN, S.SHUTDOWN_NOW}),
}


@dataclasses.dataclass(frozen=True)
class BrokerHeartbeatReply:
    """The values of a BrokerHeartbeat response."""
    is_caught_up: bool
    is_fenced: bool
    in_controlled_shutdown: bool
    should_shut_down: bool


@dataclasses.dataclass
class BrokerHeartbeatState:
    """One broker's session: the soft state of Kafka's BrokerHeartbeatManager."""
    id: int
    fenced: bool = True
    last_contact: float = 0.0          # clock.monotonic() of the last heartbeat
    metadata_offset: int = -1          # the metadata offset it last reported
    controlled_shutdown_offset: int = -1   # -1 unless shutting down

    @property
    def shutting_down(self) -> bool:
        return self.controlled_shutdown_offset >= 0


class BrokerHeartbeatManager:
    """Sessions of the registered brokers: who is alive, who is stale, who may shut down."""

    def __init__(self, clock: Clock, session_timeout_ms: int):
        self.clock = clock
        self.session_timeout = session_timeout_ms / 1000
        self.brokers: dict[int, BrokerHeartbeatState] = {}

    def register(self, broker_id: int, fenced: bool) -> None:
        """Track a broker (a new session if it was not tracked) in the given fencing state,
        keeping the metadata offset it last reported."""
        broker = self.brokers.setdefault(broker_id, BrokerHeartbeatState(broker_id))
        self.touch(broker_id, fenced, broker.metadata_offset)

    def remove(self, broker_id: int) -> None:
        self.brokers.pop(broker_id, None)

    def fence(self, broker_id: int) -> None:
        broker = self.brokers.get(broker_id)
        if broker is not None:
            broker.fenced = True

    def touch(self, broker_id: int, fenced: bool, metadata_offset: int) -> None:
        """A sign of life: the session is renewed."""
        broker = self.brokers.get(broker_id)
        if broker is None:
            raise KafkaError(ErrorCode.BROKER_ID_NOT_REGISTERED,
                             f"Broker {broker_id} is not registered.")
        broker.last_contact = self.clock.monotonic()
        broker.metadata_offset = metadata_offset
        broker.fenced = fenced
        if fenced:
            # A fenced broker leaves controlled shutdown: its next heartbeat shuts it down.
            broker.controlled_shutdown_offset = -1

    def has_valid_session(self, broker_id: int) -> bool:
        broker = self.brokers.get(broker_id)
        return broker is not None and self.session_alive(broker)

    def session_alive(self, broker: BrokerHeartbeatState) -> bool:
        return not broker.fenced and \
            broker.last_contact + self.session_timeout >= self.clock.monotonic()

    def maybe_update_controlled_shutdown_offset(self, broker_id: int, offset: int) -> None:
        """The broker entered controlled shutdown with records up to `offset`: it may shut down
        once every active broker has caught up with them."""
        broker = self.brokers[broker_id]
        if broker.fenced:
            raise ValueError("Fenced brokers cannot enter controlled shutdown.")
        if broker.controlled_shutdown_offset < 0:
            broker.controlled_shutdown_offset = offset

    def lowest_active_offset(self) -> float:
        """The lowest metadata offset reported by an active broker (unfenced, not shutting
        down); infinity when there is none."""
        offsets = [b.metadata_offset for b in self.brokers.values()
                   if not b.fenced and not b.shutting_down]
        return min(offsets) if offsets else float("inf")

    def next_check_time(self) -> float | None:
        """When the oldest unfenced session expires (clock.monotonic() seconds), or None."""
        unfenced = [b.last_contact for b in self.brokers.values() if not b.fenced]
        return min(unfenced) + self.session_timeout if unfenced else None

    def find_one_stale_broker(self) -> int | None:
        """The unfenced broker silent for longest, if its session has expired."""
        unfenced = [b for b in self.brokers.values() if not b.fenced]
        if not unfenced:
            return None
        oldest = min(unfenced, key=lambda b: (b.last_contact, b.id))
        return None if self.session_alive(oldest) else oldest.id

    def current_state(self, broker_id: int) -> BrokerControlState:
        broker = self.brokers.get(broker_id)
        if broker is None:
            raise KafkaError(ErrorCode.BROKER_ID_NOT_REGISTERED,
                             f"Broker {broker_id} is not registered.")
        if broker.shutting_down:
            return S.CONTROLLED_SHUTDOWN
        return S.FENCED if broker.fenced else S.UNFENCED

    def next_state(self, broker_id: int, want_fence: bool, want_shut_down: bool,
                   current_metadata_offset: int, register_broker_record_offset: int,
                   has_leaderships) -> tuple[BrokerControlState, BrokerControlState]:
        """(current state, next state) of a broker that just sent a heartbeat.
        `has_leaderships()` says whether it still leads a partition."""
        current = self.current_state(broker_id)
        if current is S.FENCED:
            if want_shut_down:
                nxt = S.SHUTDOWN_NOW
            elif not want_fence and current_metadata_offset >= register_broker_record_offset:
                nxt = S.UNFENCED      # caught up with its own registration
            else:
                nxt = S.FENCED
        elif current is S.UNFENCED:
            if want_fence:
                nxt = S.SHUTDOWN_NOW if want_shut_down else S.FENCED
            elif want_shut_down:
                nxt = S.CONTROLLED_SHUTDOWN if has_leaderships() else S.SHUTDOWN_NOW
            else:
                nxt = S.UNFENCED
        else:
            broker = self.brokers[broker_id]
            if has_leaderships() or \
                    broker.controlled_shutdown_offset > self.lowest_active_offset():
                nxt = S.CONTROLLED_SHUTDOWN
            else:
                nxt = S.SHUTDOWN_NOW
        assert nxt in TRANSITIONS[current], (current, nxt)
        return current, nxt


class ClusterControlManager:
    """The registered brokers and their sessions. Reads the image; `replay` keeps the
    controller-only state (registration offsets, sessions) in step with the records."""

    def __init__(self, image: MetadataImage, clock: Clock, cluster_id: str | None = None,
                 session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS):
        self.image = image
        self.clock = clock
        self.cluster_id = cluster_id
        self.heartbeats = BrokerHeartbeatManager(clock, session_timeout_ms)
        # broker id -> the log offset of its RegisterBrokerRecord: it is unfenced only once it
        # has caught up with it.
        self.register_broker_record_offsets: dict[int, int] = {}
        # A controller taking over (or restarting) gives every registered broker a session.
        for broker in image.brokers.values():
            self.heartbeats.register(broker.id, broker.fenced)

    # -------------------------------------------------------------------------- registration

    def register_broker(self, broker_id: int, incarnation_id, listeners, rack: str | None,
                        features, new_broker_epoch: int, cluster_id: str | None = None
                        ) -> tuple[list[r.MetadataRecord], int]:
        """BrokerRegistration: (records, the broker epoch). `listeners` are (name, host, port,
        security_protocol) and `features` (name, min_version, max_version) tuples;
        `new_broker_epoch` is the offset the next record written to the metadata log gets."""
        if self.cluster_id is not None and cluster_id != self.cluster_id:
            raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID,
                             f"Expected cluster ID {self.cluster_id}, but got cluster ID "
                             f"{cluster_id}")
        existing = self.image.brokers.get(broker_id)
        if existing is not None and self.heartbeats.has_valid_session(broker_id) and \
                existing.incarnation_id != incarnation_id:
            raise KafkaError(ErrorCode.DUPLICATE_BROKER_REGISTRATION,
                             "Another broker is registered with that broker id.")
        features = list(features)
        self.check_features(features)
        if existing is not None and existing.incarnation_id == incarnation_id:
            # The same process registering again: its epoch and state stay.
            record = r.register_broker_record(
                broker_id, incarnation_id, existing.epoch, listeners, features, rack,
                fenced=existing.fenced, in_controlled_shutdown=existing.in_controlled_shutdown)
        else:
            record = r.register_broker_record(broker_id, incarnation_id, new_broker_epoch,
                                              listeners, features, rack)
        return [record], record.message.broker_epoch

    def check_features(self, features) -> None:
        """Every finalized feature's level must be one the broker supports (a broker that does
        not list metadata.version supports only its first level)."""
        supported = {name: (lo, hi) for name, lo, hi in features}
        supported.setdefault(r.METADATA_VERSION, (1, 1))
        for name, (lo, hi) in supported.items():
            finalized = self.image.features.get(name, 1 if name == r.METADATA_VERSION else 0)
            if not lo <= finalized <= hi:
                raise KafkaError(ErrorCode.UNSUPPORTED_VERSION,
                                 f"Unable to register because the broker does not support "
                                 f"finalized version {finalized} of {name}. The broker wants a "
                                 f"version between {lo} and {hi}, inclusive.")
        for name, level in self.image.features.items():
            if name not in supported:
                raise KafkaError(ErrorCode.UNSUPPORTED_VERSION,
                                 f"Unable to register because the broker does not support "
                                 f"finalized version {level} of {name}. The broker wants a "
                                 f"version between 0 and 0, inclusive.")

    def check_broker_epoch(self, broker_id: int, broker_epoch: int) -> None:
        broker = self.image.brokers.get(broker_id)
        if broker is None:
            raise KafkaError(ErrorCode.STALE_BROKER_EPOCH,
                             f"No broker registration found for broker id {broker_id}")
        if broker.epoch != broker_epoch:
            raise KafkaError(ErrorCode.STALE_BROKER_EPOCH,
                             f"Expected broker epoch {broker.epoch}, but got broker epoch "
                             f"{broker_epoch}")

    def register_broker_record_offset(self, broker_id: int) -> int:
        offset = self.register_broker_record_offsets.get(broker_id)
        if offset is None:
            raise KafkaError(ErrorCode.STALE_BROKER_EPOCH,
                             f"Receive a heartbeat from broker {broker_id} before registration")
        return offset

    # -------------------------------------------------------------------------- reading

    def is_unfenced(self, broker_id: int) -> bool:
        broker = self.image.brokers.get(broker_id)
        return broker is not None and not broker.fenced

    def in_controlled_shutdown(self, broker_id: int) -> bool:
        broker = self.image.brokers.get(broker_id)
        return broker is not None and broker.in_controlled_shutdown

    def is_active(self, broker_id: int) -> bool:
        """Registered, unfenced and not shutting down: may lead and join an ISR."""
        broker = self.image.brokers.get(broker_id)
        return broker is not None and broker.active

    def usable_brokers(self) -> list[UsableBroker]:
        """The brokers new replicas may go to: registered, fenced or not, but not in a
        controlled shutdown this controller is running (Kafka asks its heartbeat manager, so a
        broker the image shows shutting down from before a controller restart still counts;
        the new partition's ISR leaves it out all the same)."""
        out = []
        for broker in self.image.brokers.values():
            session = self.heartbeats.brokers.get(broker.id)
            if session is not None and session.shutting_down:
                continue
            out.append(UsableBroker(broker.id, broker.rack, broker.fenced))
        return out

    def next_session_expiry(self) -> float | None:
        """When to look for a stale broker next (clock.monotonic() seconds), or None."""
        return self.heartbeats.next_check_time()

    # -------------------------------------------------------------------------- replay

    def replay(self, record_type: int, record, offset: int) -> None:
        """Keep the sessions and registration offsets in step with a record the image has just
        replayed (call after `image.replay`)."""
        if record_type == r.REGISTER_BROKER_RECORD:
            self.register_broker_record_offsets[record.broker_id] = offset
            self.heartbeats.remove(record.broker_id)
            self.heartbeats.register(record.broker_id, record.fenced)
        elif record_type == r.UNREGISTER_BROKER_RECORD:
            self.register_broker_record_offsets.pop(record.broker_id, None)
            self.heartbeats.remove(record.broker_id)
        elif record_type in (r.FENCE_BROKER_RECORD, r.UNFENCE_BROKER_RECORD):
            self.heartbeats.register(record.id, self.image.brokers[record.id].fenced)
        elif record_type == r.BROKER_REGISTRATION_CHANGE_RECORD:
            self.heartbeats.register(record.broker_id,
                                     self.image.brokers[record.broker_id].fenced)
