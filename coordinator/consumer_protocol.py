"""The KIP-848 consumer group protocol: ConsumerGroupHeartbeat over consumer groups.

Kafka's GroupMetadataManager runs it as consumerGroupHeartbeat. A client with
`group.protocol=consumer` sends one request to join (member epoch 0), to stay alive and report
what it owns, and to leave (-1; -2 for a static member that will be back). This module checks
the request, finds or creates the group and hands the heartbeat to the group (consumer_group.py:
group epoch, target assignment, reconciliation; assignors.py), then writes the group's records
to `__consumer_offsets` before the answer. The coordinator's timer task expires members whose
session or revocation ran out (`expire`, `next_deadline`).

Group kinds. A heartbeat that joins a group id held by an empty classic group converts it (its
offsets stay); one held by a classic group with members converts it online when
`group.consumer.migration.policy` allows (migration.py), else GROUP_ID_NOT_FOUND, as a heartbeat
or leave for a consumer group that does not exist (group_metadata_manager.py). When the last
member using this protocol leaves or is fenced and the rest are classic members, the group may
become a classic group again (migration.py's downgrade).
"""

import logging
import math
import uuid

from trioka.clock import Clock
from trioka.coordinator.consumer_group import (ConsumerGroup, ConsumerGroupSettings,
                                               HeartbeatRequest, HeartbeatResult,
                                               LEAVE_GROUP_MEMBER_EPOCH,
                                               LEAVE_GROUP_STATIC_MEMBER_EPOCH)
from trioka.coordinator.group_metadata_manager import GroupMetadataManager
from trioka.coordinator.group_config import settings_with
from trioka.coordinator.offsets import check_group_id
from trioka.wire.errors import ErrorCode, KafkaError

log = logging.getLogger("trioka.coordinator")


class ConsumerGroupProtocol:
    def __init__(self, settings: ConsumerGroupSettings, metadata: GroupMetadataManager, logs,
                 clock: Clock, schedule):
        self.settings = settings
        self.metadata = metadata
        self.logs = logs
        self.clock = clock
        self.schedule = schedule     # schedule(deadline): the timer task must wake by then
        self.migration = None        # migration.GroupMigration (online upgrade and downgrade)
        # group id -> the group's own configs (group_config.py), None: no group has any.
        self.group_overrides = None

    def settings_for(self, group_id: str) -> ConsumerGroupSettings:
        """The broker's settings with the group's own session timeout and heartbeat interval
        (group configs, KIP-848), as Kafka reads them for each heartbeat."""
        if self.group_overrides is None:
            return self.settings
        return settings_with(self.settings, self.group_overrides(group_id))

    def consumer_group_heartbeat(self, group_id: str, member_id: str, member_epoch: int, *,
                                 instance_id: str | None = None, rack_id: str | None = None,
                                 rebalance_timeout_ms: int = -1,
                                 subscribed_topic_names: list[str] | None = None,
                                 subscribed_topic_regex: str | None = None,
                                 server_assignor: str | None = None,
                                 topic_partitions: list | None = None, client_id: str = "",
                                 client_host: str = "", api_version: int = 1) -> HeartbeatResult:
        """Kafka's ConsumerGroupHeartbeat: join (member epoch 0), heartbeat, or leave (-1; -2 for
        a static member that will come back). `topic_partitions` are (topic id, partitions) pairs;
        KafkaError for the response's error code. The group's records are written to
        `__consumer_offsets` before the answer."""
        self._validate_heartbeat(group_id, member_id, member_epoch, instance_id, rack_id,
                                 rebalance_timeout_ms, subscribed_topic_names,
                                 subscribed_topic_regex, server_assignor, topic_partitions,
                                 api_version)
        now = self.clock.monotonic()
        records: list = []
        catalog = self.topic_catalog()
        if member_epoch < 0:
            group = self.metadata.consumer_group(group_id)
            if (member_epoch == LEAVE_GROUP_MEMBER_EPOCH and member_id in group.members
                    and self.migration is not None
                    and self.migration.maybe_downgrade(group, member_id)):
                return HeartbeatResult(member_id, member_epoch)
            result = group.leave(member_id, instance_id, member_epoch, catalog, self.settings,
                                 records)
            self.metadata.write(group_id, records)
            return result
        group = self.metadata.consumer_groups.get(group_id)
        upgrading = None
        if group is None:
            classic = self.metadata.groups.get(group_id)
            if member_epoch != 0:
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                                 f"Group {group_id} is not a consumer group"
                                 if classic is not None else
                                 f"Consumer group {group_id} not found.")
            if classic is not None and not classic.is_empty():
                if self.migration is None:
                    raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND,
                                     f"Group {group_id} is not a consumer group")
                group, records = self.migration.upgrade(classic, catalog)
                upgrading = classic
            else:
                check_group_id(group_id)
                group = ConsumerGroup(group_id, self.clock.wall_ms())
        if not member_id:
            member_id = str(uuid.uuid4())     # v0: the coordinator names new members
        owned = None
        if topic_partitions is not None:
            owned = {}
            for topic_id, partitions in topic_partitions:
                owned.setdefault(topic_id, set()).update(partitions)
        request = HeartbeatRequest(
            member_id=member_id, member_epoch=member_epoch, instance_id=instance_id,
            rack_id=rack_id, rebalance_timeout_ms=rebalance_timeout_ms,
            subscribed_topic_names=subscribed_topic_names,
            subscribed_topic_regex=subscribed_topic_regex, server_assignor=server_assignor,
            owned=owned, client_id=client_id, client_host=client_host)
        result = group.heartbeat(now, request, catalog, self.settings_for(group_id), records)
        if group_id not in self.metadata.consumer_groups:
            self.metadata.add_consumer_group(group, records)
            if upgrading is not None:
                self.migration.upgraded(upgrading)
        self.metadata.write(group_id, records)
        self.schedule(group.next_deadline())
        return result

    def _validate_heartbeat(self, group_id, member_id, member_epoch, instance_id, rack_id,
                            rebalance_timeout_ms, subscribed_topic_names, subscribed_topic_regex,
                            server_assignor, topic_partitions, api_version) -> None:
        """INVALID_REQUEST for a request Kafka refuses as malformed, UNSUPPORTED_ASSIGNOR for an
        assignor this broker does not have. Whether the member, its epoch and its instance id
        are right is the group's question (ConsumerGroup.heartbeat and leave)."""
        def invalid(message: str):
            return KafkaError(ErrorCode.INVALID_REQUEST, message)

        def blank(value: str | None) -> bool:
            return value is not None and not value.strip()

        if (api_version >= 1 or member_epoch > 0 or member_epoch == LEAVE_GROUP_MEMBER_EPOCH) \
                and not member_id.strip():
            raise invalid("MemberId can't be empty.")
        if not group_id.strip():
            raise invalid("GroupId can't be empty.")
        if blank(instance_id):
            raise invalid("InstanceId can't be empty.")
        if blank(rack_id):
            raise invalid("RackId can't be empty.")
        if member_epoch == 0:
            if rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if topic_partitions is None or any(ps for _, ps in topic_partitions):
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if subscribed_topic_names is None and subscribed_topic_regex is None:
                raise invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be "
                              "non-null when (re-)joining.")
        elif member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise invalid("MemberEpoch is invalid.")
        if server_assignor is not None and server_assignor not in self.settings.assignors:
            raise KafkaError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                             f"ServerAssignor {server_assignor} is not supported. Supported "
                             f"assignors: {', '.join(self.settings.assignors)}.")

    def topic_catalog(self) -> dict:
        """Every topic a consumer group may subscribe to: name -> (topic id, partitions)."""
        return {t.name: (t.topic_id, t.num_partitions) for t in self.logs.topics()}

    # ------------------------------------------------------------------------------- timers

    def next_deadline(self) -> float:
        """The earliest deadline of any consumer group (math.inf when there is none)."""
        return min((group.next_deadline() for group in self.metadata.consumer_groups.values()),
                   default=math.inf)

    def expire(self, now: float) -> None:
        """Members whose session or revocation ran out leave their groups."""
        catalog = None
        for group in list(self.metadata.consumer_groups.values()):
            if group.next_deadline() > now:
                continue
            catalog = catalog if catalog is not None else self.topic_catalog()
            records: list = []
            for member in group.due_members(now):
                if group.members.get(member.member_id) is not member:
                    continue
                if self.migration is not None and \
                        group.all_members_use_classic_protocol_except(member.member_id):
                    # What was removed so far goes first: the downgrade writes tombstones.
                    self.metadata.write(group.group_id, records)
                    records = []
                    if self.migration.maybe_downgrade(group, member.member_id):
                        break   # the group is a classic group now, which keeps its sessions
                group.remove_member(member, catalog, self.settings, records)
            self.metadata.write(group.group_id, records)
