"""OffsetMetadataManager: committed offsets, their expiry, and offsets committed in transactions.

As Kafka's OffsetMetadataManager, this is the offsets half of the coordinator; the groups are
group_metadata_manager.py's, and each group keeps its own committed offsets (`group.offsets`,
(topic, partition) -> OffsetAndMetadata).

Commits. OffsetCommit is checked against the group as apis.md §11 describes (the group decides:
ClassicGroup.validate_offset_commit, ConsumerGroup.validate_offset_commit), then written to
`__consumer_offsets` before it is acknowledged; OffsetFetch reads them back from memory, and
OffsetDelete removes them with tombstones unless a member still subscribes to their topic.

Transactional offsets (KIP-98, KIP-447). TxnOffsetCommit writes offsets as records of the
producer's transaction. They are pending, invisible to OffsetFetch (which answers
UNSTABLE_OFFSET_COMMIT when asked for stable offsets), until the transaction's marker reaches the
group's partition: COMMIT applies them, ABORT drops them (`complete_transaction`). Offsets of
transactions still open when the broker stopped are pending again after the replay.

Expiry (`offsets.retention.minutes`; the coordinator's timer calls `expire_offsets` every
`offsets.retention.check.interval.ms`): an offset with an explicit expire timestamp (OffsetCommit
v2-4 retention) goes when that passes; others go `offsets.retention.minutes` after the base time:
when the group became Empty for a classic group that used group management, the commit time for
standalone commits and for the topics a live consumer group no longer subscribes to. Groups left
empty without offsets go too. Times here are the clock's wall time in milliseconds.
"""

import logging

from trioka.coordinator.classic import ClassicGroup
from trioka.coordinator.consumer_group import ConsumerGroup
from trioka.coordinator.group_metadata_manager import GroupMetadataManager
from trioka.coordinator.group_state import GroupState
from trioka.coordinator.offsets import OffsetAndMetadata, offset_commit_key, offset_commit_value
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")

Offsets = dict[tuple[str, int], OffsetAndMetadata]


class OffsetMetadataManager:
    def __init__(self, config, metadata: GroupMetadataManager):
        self.metadata = metadata
        self.offsets_retention_ms = config.offsets_retention_minutes * 60_000
        # producer id -> group id -> offsets committed in its open transaction (TxnOffsetCommit)
        self.pending_txn_offsets: dict[int, dict[str, Offsets]] = {}

    def load(self, committed: dict[str, Offsets],
             pending: dict[int, dict[str, Offsets]]) -> None:
        """The offsets as `__consumer_offsets` left them: committed ones by group id (a group
        that has none of its own records yet keeps them as a new Empty classic group), and those
        of transactions still open by producer id."""
        for group_id, offsets in committed.items():
            if offsets:
                self.metadata.get_or_create_group(group_id).offsets.update(offsets)
        for producer_id, groups in pending.items():
            self.pending_txn_offsets.setdefault(producer_id, {}).update(groups)

    def forget_pending(self, is_unloaded) -> None:
        """Drop the pending transactional offsets of the groups `is_unloaded(group_id)` says
        this node no longer coordinates."""
        for producer_id in list(self.pending_txn_offsets):
            groups = self.pending_txn_offsets[producer_id]
            for group_id in [g for g in groups if is_unloaded(g)]:
                del groups[group_id]
            if not groups:
                del self.pending_txn_offsets[producer_id]

    # ---------------------------------------------------------------------- commits

    def validate_offset_commit(self, group_id: str, generation_id: int, member_id: str,
                               group_instance_id: str | None,
                               api_version: int) -> ClassicGroup | ConsumerGroup:
        """The group an OffsetCommit may write to, or KafkaError with the code every partition
        of the request gets. A commit outside group management (generation -1) to an unknown
        group creates an Empty "simple" group."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        cgroup = self.metadata.consumer_groups.get(group_id)
        if cgroup is not None:
            cgroup.validate_offset_commit(member_id, generation_id, api_version)
            return cgroup
        group = self.metadata.groups.get(group_id)
        if group is None:
            if generation_id < 0:
                return self.metadata.create_classic_group(group_id)
            # v9+ says so; older versions keep the answer they always had.
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND if api_version >= 9
                             else ErrorCode.ILLEGAL_GENERATION)
        if group.is_in(GroupState.DEAD):
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        group.validate_offset_commit(member_id, group_instance_id, generation_id)
        return group

    def store_offsets(self, group: ClassicGroup | ConsumerGroup, offsets: Offsets) -> None:
        """Write committed offsets (one batch) and then keep them; KafkaError if the write
        fails (nothing is kept then)."""
        if not offsets:
            return
        records = [(offset_commit_key(group.group_id, topic, partition),
                    offset_commit_value(committed))
                   for (topic, partition), committed in offsets.items()]
        self.metadata.append(group.group_id, records)
        group.offsets.update(offsets)

    # ---------------------------------------------------------------------- fetches

    def fetch_offsets(self, group_id: str,
                      topics: list[tuple[str, list[int]]] | None) -> dict[str, list]:
        """OffsetFetch: topic -> [(partition, OffsetAndMetadata or None)]; `topics` None means
        every committed partition. An unknown group has no offsets (not an error)."""
        group = self.metadata.group(group_id)
        committed = group.offsets if group is not None else {}
        out: dict[str, list] = {}
        if topics is None:
            for (topic, partition), value in sorted(committed.items()):
                out.setdefault(topic, []).append((partition, value))
            return out
        for topic, partitions in topics:
            out.setdefault(topic, []).extend(
                (p, committed.get((topic, p))) for p in partitions)
        return out

    def validate_offset_fetch(self, group_id: str, member_id: str | None,
                              member_epoch: int) -> None:
        """OffsetFetch v9 of a consumer group's member: KafkaError unless it is a member at its
        current epoch. Classic groups do not check (their members send no epoch)."""
        group = self.metadata.consumer_groups.get(group_id)
        if group is not None:
            group.validate_offset_fetch(member_id, member_epoch)

    # ---------------------------------------------------------------------- deletes

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> dict:
        """OffsetDelete: (topic, partition) -> error code; KafkaError for the whole group
        (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP)."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        group = self.metadata.group(group_id)
        if group is None or group.state.value == "Dead":
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND)
        subscribed: set[str] = set()
        if isinstance(group, ConsumerGroup):
            subscribed = group.subscribed_topic_names() if group.members else set()
        elif not group.is_in(GroupState.EMPTY):
            topics = group.subscribed_topics()
            if topics is None:
                raise KafkaError(ErrorCode.NON_EMPTY_GROUP)
            subscribed = topics
        results, doomed = {}, []
        for tp in partitions:
            if tp[0] in subscribed:
                results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                results[tp] = ErrorCode.NONE
                if tp in group.offsets:
                    doomed.append(tp)
        if doomed:
            self.metadata.append(group_id, [(offset_commit_key(group_id, t, p), None)
                                            for t, p in doomed])
            for tp in doomed:
                del group.offsets[tp]
        return results

    @staticmethod
    def tombstones(group: ClassicGroup | ConsumerGroup) -> list:
        """Tombstones for every offset the group committed (the group is being deleted)."""
        return [(offset_commit_key(group.group_id, t, p), None) for t, p in group.offsets]

    # ---------------------------------------------------------------------- expiry

    def expire_offsets(self, now_ms: int) -> int:
        """Remove committed offsets that expired by `now_ms` (wall clock), with tombstones, and
        the empty groups left without offsets. The number of offsets removed."""
        removed = 0
        groups = list(self.metadata.groups.values()) + \
            list(self.metadata.consumer_groups.values())
        for group in groups:
            base_of, keep = self._offset_expiry(group)
            if base_of is None:
                continue
            expired = [tp for tp, committed in group.offsets.items()
                       if tp[0] not in keep and self._offset_expired(committed, base_of(committed),
                                                                     now_ms)]
            records = [(offset_commit_key(group.group_id, t, p), None) for t, p in expired]
            delete = group.is_empty() and len(expired) == len(group.offsets)
            if delete:
                records.extend(group.deletion_records())
            if not records:
                continue
            try:
                self.metadata.append(group.group_id, records, now_ms)
            except KafkaError as e:
                log.error("group %s: cannot write offset tombstones: %s", group.group_id,
                          e.message)
                continue
            for tp in expired:
                del group.offsets[tp]
            removed += len(expired)
            if expired:
                log.info("group %s: %d committed offsets expired", group.group_id, len(expired))
            if delete:
                log.info("group %s: removed, empty and without offsets", group.group_id)
                self.metadata.remove_group(group, now_ms)
        return removed

    def _offset_expiry(self, group):
        """(the time an offset's retention counts from, topics whose offsets are kept), or
        (None, ...) when the group's offsets do not expire now. As Kafka: a classic group that
        used group management counts from when it became Empty, and while Stable expires only
        topics its consumers no longer subscribe to; standalone commits and consumer groups
        count from the commit."""
        def committed_at(committed):
            return committed.commit_timestamp_ms

        if isinstance(group, ConsumerGroup):
            return committed_at, group.subscribed_topic_names() if group.members else set()
        if group.is_in(GroupState.DEAD):
            return None, set()
        if group.protocol_type is None:
            return committed_at, set()
        if group.is_empty():
            since = group.state_timestamp_ms
            return (lambda c: since if since >= 0 else c.commit_timestamp_ms), set()
        if group.is_in(GroupState.STABLE):
            topics = group.subscribed_topics()
            if topics is not None:
                return committed_at, topics
        return None, set()

    def _offset_expired(self, committed: OffsetAndMetadata, base_ms: int, now_ms: int) -> bool:
        if committed.expire_timestamp_ms != -1:
            return now_ms >= committed.expire_timestamp_ms
        return now_ms - base_ms >= self.offsets_retention_ms

    # ---------------------------------------------------- transactional offsets (KIP-98/447)

    def txn_offset_commit(self, group_id: str, producer_id: int, producer_epoch: int,
                          generation_id: int, member_id: str, group_instance_id: str | None,
                          offsets: Offsets) -> None:
        """TxnOffsetCommit: offsets written as part of the producer's transaction, pending until
        its marker (`complete_transaction`). From v3 a member and generation may be given
        (KIP-447): they are checked as OffsetCommit checks them, so a zombie consumer-producer is
        fenced; the group's state is not."""
        if not group_id:
            raise KafkaError(ErrorCode.INVALID_GROUP_ID)
        cgroup = self.metadata.consumer_groups.get(group_id)
        if cgroup is not None:
            # A KIP-848 group: the generation is the member's epoch.
            cgroup.validate_offset_commit(member_id, generation_id, 9, transactional=True)
        else:
            group = self.metadata.groups.get(group_id)
            if group is None:
                group = self.metadata.create_classic_group(group_id)
            elif group.is_in(GroupState.DEAD):
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            group.validate_offset_commit(member_id, group_instance_id, generation_id,
                                         transactional=True)
        if not offsets:
            return
        records = [(offset_commit_key(group_id, topic, partition), offset_commit_value(value))
                   for (topic, partition), value in offsets.items()]
        self.metadata.append(group_id, records, producer_id=producer_id,
                             producer_epoch=producer_epoch)
        self.pending_txn_offsets.setdefault(producer_id, {}).setdefault(group_id, {}).update(
            offsets)

    def complete_transaction(self, producer_id: int, commit: bool) -> None:
        """The producer's transaction ended in the offsets partition: apply or drop its offsets."""
        pending = self.pending_txn_offsets.pop(producer_id, {})
        if not commit:
            return
        for group_id, offsets in pending.items():
            self.metadata.get_or_create_group(group_id).offsets.update(offsets)

    def has_pending_offsets(self, group_id: str, topic: str, partition: int) -> bool:
        """OffsetFetch with require_stable (KIP-447): is a transactional commit in flight?"""
        return any((topic, partition) in groups.get(group_id, ())
                   for groups in self.pending_txn_offsets.values())
