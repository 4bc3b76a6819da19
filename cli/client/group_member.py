"""The tools' consumer as a member of a classic consumer group (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup), with the consumer protocol's "range" assignor, so that it shares partitions with Java,
librdkafka and other clients in the same group.

The member the coordinator elects leader assigns the partitions of every member's subscription:
here with `range_assign`, which is the broker's own range assignor (coordinator/assignors.py, the
one KIP-848 groups use on the server side) over topic names instead of topic ids. Per topic, the
members subscribed to it in member-id order each get one contiguous range of its partitions; the
first `partitions % members` of them get one more, as Kafka's RangeAssignor does. Not done: Kafka's
RangeAssignor puts static members (group.instance.id, KIP-345) first, in instance-id order; here
every member is ordered by member id, as the broker's assignor orders them.
"""

import time
import uuid
from collections.abc import Mapping

from trioka.cli.client.cluster import GROUP_KEY, KafkaClient
from trioka.cli.client.connection import ClientError, raise_for
from trioka.cli.client.consumer_protocol import (CONSUMER_PROTOCOL_TYPE, RANGE_ASSIGNOR,
                                                 decode_assignment, decode_subscription,
                                                 encode_assignment, encode_subscription)
from trioka.coordinator.assignors import MemberSpec, TopicSpec, range_assignor
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import ErrorCode, KafkaError


def range_assign(subscriptions: Mapping[str, list[str]],
                 partition_counts: Mapping[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Member id -> its (topic, partition) pairs in topic and partition order, from the members'
    subscribed topics and the partition count of each topic that exists.

    The broker's assignor names topics by id and orders them by name; the consumer protocol names
    them by name only, so each topic gets a stand-in id here, and the answer is turned back into
    names."""
    ids = {name: uuid.UUID(int=i) for i, name in enumerate(sorted(partition_counts), 1)}
    names = {tid: name for name, tid in ids.items()}
    members = {m: MemberSpec(ids[t] for t in topics if t in ids)
               for m, topics in subscriptions.items()}
    topics = {ids[t]: TopicSpec(t, count) for t, count in partition_counts.items()}
    plan = range_assignor(members, topics)
    return {m: sorted((names[tid], p) for tid, ps in plan[m].items() for p in ps)
            for m in subscriptions}


class RebalanceNeeded(Exception):
    """The group is rebalancing (or forgot us): join again."""


class GroupMember:
    """This process as a member of a classic consumer group using the "range" assignor.

    `join()` runs JoinGroup (again with the member id the coordinator hands out, KIP-394) and
    SyncGroup; when elected leader it assigns every member's subscription. `heartbeat_if_due()`
    between fetches keeps the membership; it raises RebalanceNeeded when the group rebalances,
    and the caller commits what it has and joins again. `leave()` on the way out.
    """

    def __init__(self, client: KafkaClient, group: str, topics: list[str], *,
                 session_timeout_ms: int = 10000, rebalance_timeout_ms: int = 30000,
                 heartbeat_interval_ms: int = 3000, group_instance_id: str | None = None):
        self.client = client
        self.group = group
        self.topics = list(topics)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = heartbeat_interval_ms / 1000
        self.group_instance_id = group_instance_id
        self.member_id = ""
        self.generation_id = -1
        self.protocol_name: str | None = None
        self.assignment: list[tuple[str, int]] = []
        self._next_heartbeat = 0.0

    def _call(self, api_key: int, message, *, timeout: float | None = None):
        response, version = self.client.coordinator_call(
            self.group, GROUP_KEY, api_key, message, lambda r, v: r.error_code, timeout=timeout)
        return response, version

    def join(self) -> list[tuple[str, int]]:
        """Join (or rejoin) the group; the partitions assigned to this member."""
        deadline = time.monotonic() + self.rebalance_timeout_ms / 1000 + self.client.timeout
        while True:
            if time.monotonic() >= deadline:
                raise ClientError(f"could not join group {self.group!r} in time")
            try:
                return self._join_once()
            except RebalanceNeeded:
                continue

    def _join_once(self) -> list[tuple[str, int]]:
        Join = protocol.request_class(ApiKey.JOIN_GROUP)
        request = Join(group_id=self.group, session_timeout_ms=self.session_timeout_ms,
                       rebalance_timeout_ms=self.rebalance_timeout_ms, member_id=self.member_id,
                       group_instance_id=self.group_instance_id,
                       protocol_type=CONSUMER_PROTOCOL_TYPE,
                       protocols=[Join.JoinGroupRequestProtocol(
                           name=RANGE_ASSIGNOR, metadata=encode_subscription(self.topics))],
                       reason=None)
        wait = self.rebalance_timeout_ms / 1000 + self.client.timeout
        response, _ = self._call(ApiKey.JOIN_GROUP, request, timeout=wait)
        code = response.error_code
        if code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = response.member_id
            raise RebalanceNeeded()
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
            self.member_id, self.generation_id = "", -1
            raise RebalanceNeeded()
        if code == ErrorCode.REBALANCE_IN_PROGRESS:
            raise RebalanceNeeded()
        raise_for(code, what=f"JoinGroup {self.group!r}")
        self.member_id = response.member_id
        self.generation_id = response.generation_id
        self.protocol_name = response.protocol_name or RANGE_ASSIGNOR
        assignments = []
        if response.leader == self.member_id and not response.skip_assignment:
            assignments = self._assign(response.members)
        Sync = protocol.request_class(ApiKey.SYNC_GROUP)
        sync = Sync(group_id=self.group, generation_id=self.generation_id,
                    member_id=self.member_id, group_instance_id=self.group_instance_id,
                    protocol_type=CONSUMER_PROTOCOL_TYPE, protocol_name=self.protocol_name,
                    assignments=[Sync.SyncGroupRequestAssignment(member_id=m, assignment=a)
                                 for m, a in assignments])
        response, _ = self._call(ApiKey.SYNC_GROUP, sync, timeout=wait)
        code = response.error_code
        if code in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            raise RebalanceNeeded()
        if code == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id, self.generation_id = "", -1
            raise RebalanceNeeded()
        raise_for(code, what=f"SyncGroup {self.group!r}")
        self.assignment = sorted(decode_assignment(response.assignment))
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        return self.assignment

    def _assign(self, members) -> list[tuple[str, bytes]]:
        subscriptions = {m.member_id: decode_subscription(m.metadata) for m in members}
        topics = sorted({t for ts in subscriptions.values() for t in ts})
        infos = self.client.metadata(topics)
        counts = {t: len(i.partitions) for t, i in infos.items() if i.error == 0}
        plan = range_assign(subscriptions, counts)
        return [(m, encode_assignment(tps)) for m, tps in plan.items()]

    def heartbeat_if_due(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        Request = protocol.request_class(ApiKey.HEARTBEAT)
        response, _ = self._call(ApiKey.HEARTBEAT, Request(
            group_id=self.group, generation_id=self.generation_id, member_id=self.member_id,
            group_instance_id=self.group_instance_id))
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        code = response.error_code
        if code in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            raise RebalanceNeeded()
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID):
            self.member_id, self.generation_id = "", -1
            raise RebalanceNeeded()
        raise_for(code, what=f"Heartbeat {self.group!r}")

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit as this member of the current generation."""
        if offsets:
            self.client.offset_commit(self.group, offsets, generation_id=self.generation_id,
                                      member_id=self.member_id,
                                      group_instance_id=self.group_instance_id)

    def leave(self) -> None:
        if not self.member_id or self.group_instance_id is not None:
            return   # a static member keeps its place until its session times out
        Request = protocol.request_class(ApiKey.LEAVE_GROUP)
        request = Request(group_id=self.group, member_id=self.member_id,
                          members=[Request.MemberIdentity(member_id=self.member_id,
                                                          reason="the consumer is closing")])
        try:
            self._call(ApiKey.LEAVE_GROUP, request)
        except (ClientError, KafkaError):
            pass
        self.member_id, self.generation_id = "", -1

