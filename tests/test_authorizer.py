"""StandardAuthorizer's rules (security/acls.py), as Kafka's StandardAuthorizerTest checks them:
deny wins, literal, prefixed and wildcard patterns, wildcard principals and hosts, implied
operations, super users, allow.everyone.if.no.acl.found; filters; the checks' tables."""

import pytest

from trioka.security import acls as A
from trioka.security.authorizer import client_host, parse_super_users

ALICE, BOB = "User:alice", "User:bob"
HOST = "192.168.0.1"


def acl(name, op, perm=A.ALLOW, principal=ALICE, host="*", rt=A.TOPIC, pt=A.LITERAL):
    return A.AclBinding(rt, name, pt, principal, host, op, perm)


def index(*bindings, super_users=(), allow_if_no_acl=False):
    idx = A.AclIndex(super_users, allow_if_no_acl)
    for b in bindings:
        idx.add(b)
    return idx


def can(idx, op, name, principal=ALICE, host=HOST, rt=A.TOPIC):
    return idx.authorize(principal, host, op, rt, name)


def test_no_acls_denies_everyone_but_super_users():
    idx = index(super_users=["User:admin"])
    assert not can(idx, A.READ, "foo")
    assert can(idx, A.READ, "foo", principal="User:admin")
    assert can(idx, A.CLUSTER_ACTION, A.CLUSTER_NAME, principal="User:admin", rt=A.CLUSTER)


def test_allow_everyone_if_no_acl_found_only_where_no_acl_names_the_resource():
    idx = index(acl("foo", A.READ, principal=BOB), allow_if_no_acl=True)
    assert can(idx, A.WRITE, "bar")             # no ACL on bar
    assert not can(idx, A.READ, "foo")          # an ACL on foo, for bob only


def test_literal_acl_matches_only_its_name():
    idx = index(acl("foo", A.READ))
    assert can(idx, A.READ, "foo")
    assert not can(idx, A.READ, "foobar")
    assert not can(idx, A.WRITE, "foo")
    assert not can(idx, A.READ, "foo", principal=BOB)


def test_prefixed_and_wildcard_patterns():
    idx = index(acl("fo", A.READ, pt=A.PREFIXED), acl("*", A.WRITE, principal=BOB))
    assert can(idx, A.READ, "foo") and can(idx, A.READ, "fo")
    assert not can(idx, A.READ, "bar")
    assert can(idx, A.WRITE, "anything", principal=BOB)
    assert not can(idx, A.WRITE, "anything")


def test_deny_wins_over_allow():
    idx = index(acl("foo", A.ALL), acl("f", A.WRITE, perm=A.DENY, pt=A.PREFIXED))
    assert can(idx, A.READ, "foo")
    assert not can(idx, A.WRITE, "foo")
    idx.add(acl("*", A.ALL, perm=A.DENY, principal="User:*"))
    assert not can(idx, A.READ, "foo")


def test_wildcard_principal_and_hosts():
    idx = index(acl("foo", A.READ, principal="User:*", host=HOST),
                acl("foo", A.READ, perm=A.DENY, principal=BOB, host="10.0.0.9"))
    assert can(idx, A.READ, "foo", principal=BOB)
    assert not can(idx, A.READ, "foo", host="10.0.0.1")
    assert not can(idx, A.READ, "foo", principal=BOB, host="10.0.0.9")


@pytest.mark.parametrize("granted", [A.READ, A.WRITE, A.DELETE, A.ALTER, A.DESCRIBE, A.ALL])
def test_operations_that_imply_describe(granted):
    assert can(index(acl("foo", granted)), A.DESCRIBE, "foo")


def test_alter_configs_implies_describe_configs_and_deny_implies_nothing():
    idx = index(acl("foo", A.ALTER_CONFIGS))
    assert can(idx, A.DESCRIBE_CONFIGS, "foo")
    assert not can(idx, A.DESCRIBE, "foo")
    idx = index(acl("foo", A.ALL), acl("foo", A.DESCRIBE, perm=A.DENY))
    assert not can(idx, A.DESCRIBE, "foo")
    assert can(idx, A.READ, "foo")     # a DENY of DESCRIBE does not deny READ


def test_resource_types_are_separate():
    idx = index(acl("foo", A.READ, rt=A.GROUP))
    assert can(idx, A.READ, "foo", rt=A.GROUP)
    assert not can(idx, A.READ, "foo", rt=A.TOPIC)


def test_decisions_cached_until_the_acls_change():
    b = acl("foo", A.READ)
    idx = index(b)
    assert can(idx, A.READ, "foo")
    idx.remove(b)
    assert not can(idx, A.READ, "foo")


def test_authorize_any_kip_679():
    idx = index(acl("foo", A.WRITE))
    assert idx.authorize_any(ALICE, HOST, A.WRITE, A.TOPIC)
    assert not idx.authorize_any(BOB, HOST, A.WRITE, A.TOPIC)
    idx.add(acl("*", A.WRITE, perm=A.DENY))
    assert not idx.authorize_any(ALICE, HOST, A.WRITE, A.TOPIC)
    idx = index(acl("foo", A.WRITE), acl("bar", A.WRITE, perm=A.DENY))
    assert idx.authorize_any(ALICE, HOST, A.WRITE, A.TOPIC)


def test_filters():
    lit, pre = acl("foo", A.READ), acl("fo", A.WRITE, pt=A.PREFIXED, principal=BOB)
    idx = index(lit, pre, acl("bar", A.READ, rt=A.GROUP))
    any_ = A.AclFilter(A.RT_ANY, None, A.PT_ANY, None, None, A.OP_ANY, A.PERM_ANY)
    assert len(idx.matching(any_)) == 3
    match = A.AclFilter(A.TOPIC, "foo", A.MATCH, None, None, A.OP_ANY, A.PERM_ANY)
    assert set(idx.matching(match)) == {lit, pre}
    literal = A.AclFilter(A.TOPIC, "foo", A.LITERAL, None, None, A.OP_ANY, A.PERM_ANY)
    assert idx.matching(literal) == [lit]
    by_principal = A.AclFilter(A.RT_ANY, None, A.PT_ANY, BOB, None, A.OP_ANY, A.PERM_ANY)
    assert idx.matching(by_principal) == [pre]
    assert A.AclFilter(A.RT_UNKNOWN, None, A.PT_ANY, None, None, A.OP_ANY,
                       A.PERM_ANY).invalid_reason()


def test_invalid_bindings():
    assert acl("foo", A.IDEMPOTENT_WRITE).invalid_reason()     # not a topic operation
    assert acl("foo", A.READ, pt=A.MATCH).invalid_reason()
    assert acl("other", A.ALTER, rt=A.CLUSTER).invalid_reason()
    assert acl("foo", A.READ, principal="alice").invalid_reason()
    assert acl(A.CLUSTER_NAME, A.ALTER, rt=A.CLUSTER).invalid_reason() is None


def test_operations_bitfield():
    assert A.operations_bitfield(A.TOPIC) == sum(1 << op for op in (
        A.READ, A.WRITE, A.CREATE, A.DELETE, A.ALTER, A.DESCRIBE, A.DESCRIBE_CONFIGS,
        A.ALTER_CONFIGS))
    assert A.operations_bitfield(A.TOPIC, lambda op: op == A.READ) == 1 << A.READ


def test_json_round_trip_and_helpers():
    b = acl("fo", A.WRITE, pt=A.PREFIXED, perm=A.DENY)
    assert A.AclBinding.from_json(b.to_json()) == b
    assert parse_super_users("User:a; User:b;") == ["User:a", "User:b"]
    assert client_host("127.0.0.1:5555") == "127.0.0.1"
    assert client_host("[::1]:5555") == "::1"
