"""The classic group member's "range" assignment (cli/client/group_member.py), computed by the
broker's range assignor over topic names, checked against Kafka's RangeAssignor.
"""

import pytest
from hypothesis import given, settings, strategies as st

from trioka.cli.client import group_member

pytestmark = pytest.mark.timeout(30)


def test_range_assignor():
    plan = group_member.range_assign({"m2": ["t", "u"], "m1": ["t"], "m3": ["t", "u"]},
                                     {"t": 7, "u": 2})
    assert plan == {"m1": [("t", 0), ("t", 1), ("t", 2)],
                    "m2": [("t", 3), ("t", 4), ("u", 0)],
                    "m3": [("t", 5), ("t", 6), ("u", 1)]}
    assert group_member.range_assign({"a": ["t"], "b": ["t"]}, {"t": 1}) == {
        "a": [("t", 0)], "b": []}


def test_range_assignor_skips_topics_without_partition_counts():
    # A subscribed topic the leader's Metadata did not return (it does not exist) is nobody's.
    assert group_member.range_assign({"a": ["t", "gone"], "b": []}, {"t": 2, "other": 3}) == {
        "a": [("t", 0), ("t", 1)], "b": []}


_TOPICS = st.sampled_from(["a", "b", "t", "u", "zz"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.lists(_TOPICS, max_size=4),
                       max_size=6),
       st.dictionaries(_TOPICS, st.integers(0, 12), max_size=5))
def test_range_assignor_is_kafkas(subscriptions, partition_counts):
    """Kafka's RangeAssignor: per topic, the members subscribed to it in member-id order get
    contiguous ranges, in partition order, the first `partitions % members` one more."""
    plan = group_member.range_assign(subscriptions, partition_counts)
    assert list(plan) == list(subscriptions)
    for member, tps in plan.items():
        assert tps == sorted(tps)
    for topic, count in partition_counts.items():
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        got = [[p for t, p in plan[m] if t == topic] for m in members]
        if not members:
            continue
        each, extra = divmod(count, len(members))
        assert [len(ps) for ps in got] == [each + (i < extra) for i in range(len(members))]
        assert [p for ps in got for p in ps] == list(range(count))
    for member, tps in plan.items():
        assert all(t in subscriptions[member] and t in partition_counts for t, _ in tps)
