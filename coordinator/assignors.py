"""The server-side assignors of KIP-848 consumer groups: `uniform` (the default) and `range`.

In the consumer group protocol the coordinator, not a client, decides which member consumes which
partition. Each time the group epoch moves (a member joins, leaves or changes its subscription, a
subscribed topic appears, disappears or gets partitions), the coordinator runs the group's assignor
over the members' subscriptions and gets the *target assignment*: member id -> topic id ->
partitions. Members then converge on it (consumer_group.py). Members name an assignor with
`server_assignor`; the group uses the one most of its members name, else the first of
`group.consumer.assignors`.

Both assignors are deterministic: the same members, subscriptions, topics and previous target give
the same result, whatever order the inputs came in (members are ordered by member id, topics by
name). A member only gets partitions of topics it subscribes to, and every partition of a topic
someone subscribes to goes to exactly one member.

uniform  Balanced and sticky. Every member keeps the partitions it had in the previous target as
         long as it still subscribes to their topic; partitions nobody has go to the least loaded
         member that may take them (the most constrained partitions first); then partitions move,
         one at a time, from the most loaded member to a member with at least two fewer that also
         subscribes to their topic, until no such move is left. With identical subscriptions every
         member ends with floor(P/M) or ceil(P/M) partitions, and a member that joins or leaves
         moves only the partitions needed to get there.
range    Per topic, like the classic range assignor: the members subscribed to the topic, ordered
         by member id, each get one contiguous range of its partitions; the first P % M members
         get one more. It does not look at the previous target. The tools' consumer
         (cli/client/group_member.py) uses it as the classic protocol's "range" assignor too.
"""

import uuid
from collections.abc import Mapping

# member id -> topic id -> partitions
Assignment = dict[str, dict[uuid.UUID, frozenset[int]]]

UNIFORM = "uniform"
RANGE = "range"


class MemberSpec:
    """What an assignor knows of a member: the ids of the existing topics it subscribes to and
    the partitions the previous target assignment gave it."""
    __slots__ = ("subscribed", "current")

    def __init__(self, subscribed, current: Mapping[uuid.UUID, frozenset[int]] | None = None):
        self.subscribed = frozenset(subscribed)
        self.current = dict(current or {})


class TopicSpec:
    """A subscribed topic as the assignor sees it: its name (for ordering) and partition count."""
    __slots__ = ("name", "num_partitions")

    def __init__(self, name: str, num_partitions: int):
        self.name = name
        self.num_partitions = num_partitions


def _ordered_topics(topics: Mapping[uuid.UUID, TopicSpec]) -> list[uuid.UUID]:
    return sorted(topics, key=lambda tid: (topics[tid].name, tid.bytes))


def _as_assignment(owned: dict[str, list[tuple[uuid.UUID, int]]]) -> Assignment:
    out: Assignment = {}
    for member_id, parts in owned.items():
        per_topic: dict[uuid.UUID, set[int]] = {}
        for tid, p in parts:
            per_topic.setdefault(tid, set()).add(p)
        out[member_id] = {tid: frozenset(ps) for tid, ps in per_topic.items()}
    return out


def uniform(members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, TopicSpec]) -> Assignment:
    """The uniform assignor (see the module's docstring)."""
    member_ids = sorted(members)
    order = {tid: i for i, tid in enumerate(_ordered_topics(topics))}

    def rank(tp: tuple[uuid.UUID, int]) -> tuple[int, int]:
        return order[tp[0]], tp[1]

    subscribers: dict[uuid.UUID, list[str]] = {
        tid: [m for m in member_ids if tid in members[m].subscribed] for tid in topics}
    owned: dict[str, list[tuple[uuid.UUID, int]]] = {m: [] for m in member_ids}
    owner: dict[tuple[uuid.UUID, int], str] = {}

    # 1. Stickiness: keep what the previous target gave, where it is still valid.
    for m in member_ids:
        spec = members[m]
        for tid in sorted(spec.current, key=lambda t: order.get(t, -1)):
            if tid not in topics or tid not in spec.subscribed:
                continue
            for p in sorted(spec.current[tid]):
                if p < topics[tid].num_partitions and (tid, p) not in owner:
                    owner[(tid, p)] = m
                    owned[m].append((tid, p))

    # 2. Partitions without an owner, the most constrained first, to the least loaded member.
    free = [(tid, p) for tid in order for p in range(topics[tid].num_partitions)
            if (tid, p) not in owner and subscribers[tid]]
    free.sort(key=lambda tp: (len(subscribers[tp[0]]), rank(tp)))
    for tp in free:
        m = min(subscribers[tp[0]], key=lambda c: (len(owned[c]), c))
        owner[tp] = m
        owned[m].append(tp)

    # 3. Balance: move single partitions from the most loaded members to members with at least
    # two fewer that subscribe to their topic. Each move lowers the sum of squared loads, so
    # this ends.
    moved = True
    while moved:
        moved = False
        for a in sorted(member_ids, key=lambda c: (-len(owned[c]), c)):
            for tp in sorted(owned[a], key=rank, reverse=True):
                candidates = [c for c in subscribers[tp[0]] if c != a]
                if not candidates:
                    continue
                b = min(candidates, key=lambda c: (len(owned[c]), c))
                if len(owned[b]) + 1 < len(owned[a]):
                    owned[a].remove(tp)
                    owned[b].append(tp)
                    owner[tp] = b
                    moved = True
                    break
            if moved:
                break
    return _as_assignment(owned)


def range_assignor(members: Mapping[str, MemberSpec],
                   topics: Mapping[uuid.UUID, TopicSpec]) -> Assignment:
    """The range assignor (see the module's docstring)."""
    owned: dict[str, list[tuple[uuid.UUID, int]]] = {m: [] for m in sorted(members)}
    for tid in _ordered_topics(topics):
        subscribed = [m for m in sorted(members) if tid in members[m].subscribed]
        if not subscribed:
            continue
        count = topics[tid].num_partitions
        share, extra = divmod(count, len(subscribed))
        start = 0
        for i, m in enumerate(subscribed):
            size = share + (1 if i < extra else 0)
            owned[m].extend((tid, p) for p in range(start, start + size))
            start += size
    return _as_assignment(owned)


ASSIGNORS = {UNIFORM: uniform, RANGE: range_assignor}


def assignor(name: str):
    """The assignor function of a name; KeyError for one this broker does not have."""
    return ASSIGNORS[name]
