"""Topic names: Kafka's rules for them, and the internal topics the broker keeps its own state in.

What Kafka keeps in its `Topic` class:

- a topic name is 1 to 249 characters from [a-zA-Z0-9._-], and neither "." nor "..";
- two names that differ only by '.' against '_' collide (their metric names would be the same),
  so a topic may not be created next to one it collides with;
- the internal topics hold the coordinators' state: committed offsets and group metadata in
  `__consumer_offsets`, transactions in `__transaction_state`. Clients may not produce to them
  or delete them, and Metadata marks them `is_internal`.
"""

import re

from trioka.wire.errors import ErrorCode, KafkaError

OFFSETS_TOPIC = "__consumer_offsets"            # the group coordinator's state
TRANSACTION_STATE_TOPIC = "__transaction_state"  # the transaction coordinator's state
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC})

MAX_TOPIC_NAME_LENGTH = 249
LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: str) -> None:
    """Kafka's topic name rules: 1 to 249 characters from [a-zA-Z0-9._-], and not "." or "..".
    Raises KafkaError(INVALID_TOPIC_EXCEPTION)."""
    if not name:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, "topic name must not be empty")
    if name in (".", ".."):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, 'topic name must not be "." or ".."')
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                         f"topic name is {len(name)} characters long; at most "
                         f"{MAX_TOPIC_NAME_LENGTH} are allowed")
    if not LEGAL_TOPIC_NAME.fullmatch(name):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                         f"topic name {name!r} may only contain ASCII letters, digits, '.', '_' "
                         f"and '-'")


def has_collision(name: str, other: str) -> bool:
    """Whether two topic names differ only by '.' against '_' (Kafka's Topic.hasCollision)."""
    return name.replace(".", "_") == other.replace(".", "_")


# What a coordinator answers when its internal topic's partition refuses a write, as Kafka's
# coordinators map the log's error (the group coordinator's CoordinatorOperationExceptionHelper,
# the transaction coordinator's TransactionStateManager): NOT_COORDINATOR and
# COORDINATOR_NOT_AVAILABLE send the client to find the coordinator again and retry. Each
# coordinator adds its own entries; other codes pass as they are.
COORDINATOR_APPEND_ERRORS = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
}


def coordinator_append_error(error: KafkaError, what: str,
                             errors: dict = COORDINATOR_APPEND_ERRORS) -> KafkaError:
    """The error a coordinator answers for `error` from its internal topic's log (`errors`
    maps the codes; others pass as they are), with `what` it could not write in the message."""
    code = errors.get(error.code)
    if code is None:
        return error
    return KafkaError(code, f"{what}: {error.message or error.code.name}")
