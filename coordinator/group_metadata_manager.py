"""GroupMetadataManager: the groups of one coordinator, of both kinds, and their records.

Kafka's GroupMetadataManager keeps one map of groups and runs both group protocols over it. Here
the map and what every part of the coordinator asks of it are this module; the protocols that
change groups are classic_protocol.py (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and
consumer_protocol.py (ConsumerGroupHeartbeat, KIP-848), committed offsets are
offset_metadata_manager.py, and group_coordinator.py puts them together.

- A group id belongs to one kind at a time: a classic group (`groups`, classic.py) or a consumer
  group (`consumer_groups`, consumer_group.py). An empty group of one kind becomes a group of the
  other kind when a member of that kind arrives: its records get tombstones, its committed offsets
  stay (offsets are kept on the group object). Groups with members change kind online (KIP-848,
  migration.py; `replace_with_classic_group` for a downgrade).
- Offsets committed outside group management (admin clients, consumers using assign()) to an
  unknown group id are kept by a new Empty classic group without a protocol type, as in Kafka.
- Every change is written to the group's partition of `__consumer_offsets` (offsets.py), stamped
  with the clock's wall time.
"""

import logging

from trioka.clock import Clock
from trioka.coordinator.classic import ClassicGroup
from trioka.coordinator.consumer_group import ConsumerGroup
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.offsets import (OffsetsTopic, check_group_id, group_metadata_key,
                                        group_metadata_value)
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")


class GroupMetadataManager:
    def __init__(self, topic: OffsetsTopic, clock: Clock):
        self.topic = topic
        self.clock = clock
        self.groups: dict[str, ClassicGroup] = {}
        self.consumer_groups: dict[str, ConsumerGroup] = {}

    def load(self, groups: dict[str, ClassicGroup],
             consumer_groups: dict[str, ConsumerGroup]) -> None:
        """Add the groups as `__consumer_offsets` left them (see GroupCoordinator.open; a node
        of a cluster loads one partition at a time)."""
        self.groups.update(groups)
        self.consumer_groups.update(consumer_groups)

    # --- lookups ---

    def group(self, group_id: str) -> ClassicGroup | ConsumerGroup | None:
        """The group of either kind with this id; None when there is none."""
        return self.groups.get(group_id) or self.consumer_groups.get(group_id)

    def consumer_group(self, group_id: str) -> ConsumerGroup:
        """The consumer group with this id; KafkaError GROUP_ID_NOT_FOUND when there is none
        (also when the id belongs to a classic group)."""
        group = self.consumer_groups.get(group_id)
        if group is None:
            if group_id in self.groups:
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                                 f"Group {group_id} is not a consumer group.")
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
        return group

    def create_classic_group(self, group_id: str) -> ClassicGroup:
        """A new Empty classic group (a JoinGroup's, or one that only keeps offsets)."""
        check_group_id(group_id)
        group = self.groups[group_id] = ClassicGroup(group_id, self.clock.wall_ms())
        return group

    def get_or_create_group(self, group_id: str) -> ClassicGroup | ConsumerGroup:
        """The group that keeps this id's offsets: the existing one of either kind, else a new
        Empty classic group."""
        return self.group(group_id) or self.create_classic_group(group_id)

    def forget_if_unused(self, group: ClassicGroup) -> None:
        """A classic group nothing refers to (made by a JoinGroup that failed, or whose new member
        never came back with its id) leaves no trace."""
        if (group.is_empty() and not group.offsets and group.generation_id == 0
                and self.groups.get(group.group_id) is group):
            del self.groups[group.group_id]

    def remove_group(self, group: ClassicGroup | ConsumerGroup, now_ms: int) -> None:
        """The group is deleted (DeleteGroups, or empty and without offsets); its tombstones are
        written already."""
        if isinstance(group, ConsumerGroup):
            group.dead = True
            del self.consumer_groups[group.group_id]
        else:
            group.pending_members.clear()
            group.transition_to(GroupState.DEAD, now_ms)
            del self.groups[group.group_id]

    # --- one kind becomes the other ---

    def convert_to_classic_group(self, group_id: str) -> None:
        """An empty consumer group gives its id to a classic group (a JoinGroup arrived):
        tombstones for its records, its offsets move over."""
        group = self.consumer_groups.pop(group_id)
        self.write(group_id, group.deletion_records())
        log.info("group %s: the empty consumer group becomes a classic group", group_id)
        if group.offsets:
            self.create_classic_group(group_id).offsets.update(group.offsets)

    def replace_with_classic_group(self, group: ConsumerGroup, classic: ClassicGroup) -> None:
        """A consumer group with members becomes a classic group (KIP-848 online downgrade,
        migration.py): tombstones for its records, then the classic group's metadata."""
        del self.consumer_groups[group.group_id]
        self.groups[group.group_id] = classic
        self.write(group.group_id, group.deletion_records() + [
            (group_metadata_key(group.group_id), group_metadata_value(classic.to_record()))])

    def add_consumer_group(self, group: ConsumerGroup, records: list) -> None:
        """A new consumer group (its first member joined). An empty classic group with the same
        id becomes this group: a tombstone for its metadata goes first among `records`, its
        offsets stay."""
        classic = self.groups.pop(group.group_id, None)
        if classic is not None:
            log.info("group %s: the empty classic group becomes a consumer group", group.group_id)
            records[:0] = classic.deletion_records()
            group.offsets.update(classic.offsets)
        self.consumer_groups[group.group_id] = group

    # --- records ---

    def append(self, group_id: str, records: list, now_ms: int | None = None, *,
               producer_id: int = -1, producer_epoch: int = -1) -> None:
        """Append the group's records to its `__consumer_offsets` partition as one batch, stamped
        `now_ms` (the wall clock's now by default), part of the producer's transaction when a
        producer id is given; KafkaError when the log refuses them."""
        self.topic.append(group_id, records, self.clock.wall_ms() if now_ms is None else now_ms,
                          producer_id, producer_epoch)

    def write(self, group_id: str, records: list) -> None:
        """Append records of a change already made: a failed write is logged (the group then
        restarts from older records)."""
        if not records:
            return
        try:
            self.append(group_id, records)
        except KafkaError as e:
            log.error("group %s: cannot write its records: %s", group_id, e.message)
