"""Static membership (KIP-345, and KIP-848 for consumer groups): members named by a
`group.instance.id`.

A client configured with `group.instance.id` is the same member across restarts. The group maps
each instance id to the member id that holds it now; both kinds of group (classic.py,
consumer_group.py) keep that map and ask it the same two questions, answered here once:

- A request that names an instance id must come from the member id that holds it: an instance id
  the group does not know is UNKNOWN_MEMBER_ID, one held by another member id is
  FENCED_INSTANCE_ID (the request comes from an older incarnation of the instance, a "zombie").
- A static member that comes back under a new member id takes the instance id over; the old member
  id is fenced from then on. Removing a member frees its instance id only if it still holds it.

What a group does on a replacement differs by protocol (a classic group hands back the old
assignment, maybe without rebalancing; a consumer group refuses UNRELEASED_INSTANCE_ID while the
old member has not left with epoch -2) and stays in those modules.
"""

from trioka.wire.errors import ErrorCode, KafkaError


class StaticMembers(dict[str, str]):
    """A group's static members: group instance id -> the member id that holds it."""

    def holder(self, instance_id: str, member_id: str | None) -> str:
        """The member id that holds `instance_id`; KafkaError UNKNOWN_MEMBER_ID when none does,
        FENCED_INSTANCE_ID when it is not `member_id` (None: any member id will do, as for an
        admin's LeaveGroup by instance id alone)."""
        current = self.get(instance_id)
        if current is None:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if member_id is not None and current != member_id:
            raise KafkaError(ErrorCode.FENCED_INSTANCE_ID,
                             f"Static member {member_id} with instance id {instance_id} was "
                             f"fenced by member {current}.")
        return current

    def release(self, instance_id: str | None, member_id: str) -> None:
        """A member left the group: its instance id is free, unless another member id holds it
        already."""
        if instance_id is not None and self.get(instance_id) == member_id:
            del self[instance_id]
