"""ConsumerGroupDescribe (key 69), v0-1: KIP-848 consumer groups as they are.

For each group id: the state (Empty, Assigning, Reconciling, Stable), the group epoch, the
assignment epoch and the assignor the group uses (the one most members asked for, else the first
of `group.consumer.assignors`), and each member with its member epoch, instance id, rack, client id
and host ("/" + IP), subscription (topic names, regex) and both its current and its target
assignment as topic id, topic name and partitions. A topic deleted since is left out of them.
Errors per group: GROUP_ID_NOT_FOUND (no consumer group by that id, also for a classic group, as
Kafka answers so that admin clients fall back to DescribeGroups), INVALID_GROUP_ID for an empty id.

v1 (KIP-1099, Kafka 4.0) gives each member's type: 1, a consumer member; 0, a classic member of
a consumer group (a classic consumer in a group upgraded online, KIP-848:
coordinator/migration.py).

`include_authorized_operations` gets each group's authorized operations as Kafka's bitfield:
those the principal is allowed (security/authorizer.py), all a group supports without an
authorizer.
"""

from trioka.apis.metadata import authorized_operations
from trioka.security.acls import GROUP
from trioka.wire.api_keys import ApiKey
from trioka.wire.errors import KafkaError
from trioka.wire.protocol import response_class

Response = response_class(ApiKey.CONSUMER_GROUP_DESCRIBE)
Described = Response.DescribedGroup
Member = Described.Member
Assignment = Member.Assignment
TopicPartitions = Assignment.TopicPartitions

CLASSIC_MEMBER = 0     # member_type (v1+): 0 a classic member, 1 a consumer member
CONSUMER_MEMBER = 1


def _assignment(broker, partitions) -> object:
    out = []
    for tid, ps in sorted(partitions.items(), key=lambda kv: kv[0].bytes):
        topic = broker.topic_by_id(tid)
        if topic is not None:
            out.append(TopicPartitions(topic_id=tid, topic_name=topic.name, partitions=sorted(ps)))
    out.sort(key=lambda tp: tp.topic_name)
    return Assignment(topic_partitions=out)


def describe(broker, group_id: str) -> object:
    try:
        group = broker.groups.describe_consumer_group(group_id)
    except KafkaError as e:
        return Described(error_code=e.code, error_message=e.message or None, group_id=group_id,
                         group_state="", group_epoch=-1, assignment_epoch=-1, assignor_name="",
                         members=[])
    members = [Member(member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                      member_epoch=m.member_epoch, client_id=m.client_id,
                      client_host=m.client_host,
                      subscribed_topic_names=list(m.subscribed_topic_names),
                      subscribed_topic_regex=m.subscribed_topic_regex,
                      assignment=_assignment(broker, m.assigned),
                      target_assignment=_assignment(broker, group.target.get(m.member_id, {})),
                      member_type=CLASSIC_MEMBER if m.uses_classic_protocol
                      else CONSUMER_MEMBER)
               for m in group.members.values()]
    return Described(error_code=0, error_message=None, group_id=group_id,
                     group_state=group.state.value, group_epoch=group.group_epoch,
                     assignment_epoch=group.assignment_epoch,
                     assignor_name=group.preferred_assignor(broker.groups.consumer_settings),
                     members=members)


async def handle(broker, request, ctx):
    groups = [describe(broker, g) for g in request.group_ids]
    if request.include_authorized_operations:
        for g in groups:
            if g.error_code == 0:
                g.authorized_operations = authorized_operations(broker, ctx, GROUP, g.group_id)
    return Response(throttle_time_ms=0, groups=groups)
