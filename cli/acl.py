"""`trioka acl`: ACLs, as `kafka-acls.sh --add|--list|--remove` manages them, over CreateAcls,
DescribeAcls and DeleteAcls, so it works against any Kafka cluster with an authorizer.

    trioka acl add --allow-principal User:alice --operation Read --topic orders
    trioka acl add --deny-principal User:bob --deny-host 10.0.0.9 --operation All \\
        --topic orders- --resource-pattern-type prefixed
    trioka acl list [--topic T | --group G | --cluster | --transactional-id T]
                    [--principal User:alice] [--resource-pattern-type any|match|literal|prefixed]
    trioka acl remove --allow-principal User:alice --operation Read --topic orders

The flags are kafka-acls.sh's: principals (`--allow-principal`, `--deny-principal`, each
repeatable), hosts (`--allow-host`, `--deny-host`, default `*`), operations (`--operation`,
repeatable, default All), the resource (`--topic`, `--group`, `--cluster`, `--transactional-id`,
each repeatable but `--cluster`) and `--resource-pattern-type` (literal by default). `add` makes
every combination of principal, host, operation and resource; `remove` deletes the ACLs those
combinations name (without principals: every ACL of the resources). `list` prints each resource
pattern and its ACLs as kafka-acls.sh does.
"""

from trioka.cli import UsageError, connection_args, open_client
from trioka.cli.client.connection import raise_for
from trioka.security import acls as A
from trioka.wire import protocol
from trioka.wire.api_keys import ApiKey


def _operation(text: str) -> int:
    name = text.strip().upper().replace("-", "_")
    # kafka-acls.sh spells them as Kafka's AclOperation, in any case (IdempotentWrite too).
    squashed = {n.replace("_", ""): code for n, code in A.OPERATIONS.items()}
    code = A.OPERATIONS.get(name, squashed.get(name.replace("_", "")))
    if code is None or code in (A.OP_UNKNOWN, A.OP_ANY):
        import argparse
        raise argparse.ArgumentTypeError(f"unknown operation {text!r}")
    return code


def _pattern_type(text: str) -> int:
    code = A.PATTERN_TYPES.get(text.strip().upper())
    if code is None or code == A.PT_UNKNOWN:
        import argparse
        raise argparse.ArgumentTypeError(
            f"unknown resource pattern type {text!r} (literal, prefixed, any or match)")
    return code


def add_parser(sub) -> None:
    p = sub.add_parser("acl", help="add, list and remove ACLs (kafka-acls.sh)",
                       description="ACLs, over CreateAcls, DescribeAcls and DeleteAcls.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, run, what in (("add", add, "add ACLs"), ("list", list_acls, "list ACLs"),
                            ("remove", remove, "remove ACLs")):
        a = actions.add_parser(name, help=what)
        a.add_argument("--topic", action="append", default=[], metavar="TOPIC")
        a.add_argument("--group", action="append", default=[], metavar="GROUP")
        a.add_argument("--transactional-id", action="append", default=[], metavar="ID")
        a.add_argument("--cluster", action="store_true", help="the cluster resource")
        a.add_argument("--resource-pattern-type", type=_pattern_type, default=A.LITERAL,
                       metavar="TYPE", help="literal (default), prefixed; any or match to "
                                            "list or remove")
        if name == "list":
            a.add_argument("--principal", action="append", default=[],
                           help="only the ACLs of this principal")
        else:
            a.add_argument("--allow-principal", action="append", default=[], metavar="P")
            a.add_argument("--deny-principal", action="append", default=[], metavar="P")
            a.add_argument("--allow-host", action="append", default=[], metavar="HOST")
            a.add_argument("--deny-host", action="append", default=[], metavar="HOST")
            a.add_argument("--operation", type=_operation, action="append", default=[],
                           metavar="OP", help="Read, Write, Create, Delete, Alter, Describe, "
                                              "ClusterAction, DescribeConfigs, AlterConfigs, "
                                              "IdempotentWrite, All (default All)")
        a.set_defaults(run=run, command_parser=a)
        connection_args(a)


def _resources(args) -> list[tuple[int, str]]:
    out = [(A.TOPIC, t) for t in args.topic] + [(A.GROUP, g) for g in args.group] + \
          [(A.TRANSACTIONAL_ID, t) for t in args.transactional_id]
    if args.cluster:
        out.append((A.CLUSTER, A.CLUSTER_NAME))
    return out


def _entries(args) -> list[tuple[str, str, int, int]]:
    """(principal, host, operation, permission) for every combination the flags name."""
    operations = list(dict.fromkeys(args.operation)) or [A.ALL]
    out = []
    for principals, hosts, permission in ((args.allow_principal, args.allow_host, A.ALLOW),
                                          (args.deny_principal, args.deny_host, A.DENY)):
        for principal in principals:
            for host in hosts or ["*"]:
                for op in operations:
                    out.append((principal, host, op, permission))
    return out


def add(args) -> int:
    resources = _resources(args)
    if not resources:
        raise UsageError("name a resource: --topic, --group, --transactional-id or --cluster")
    if args.resource_pattern_type not in (A.LITERAL, A.PREFIXED):
        raise UsageError("--resource-pattern-type must be literal or prefixed to add ACLs")
    entries = _entries(args)
    if not entries:
        raise UsageError("name a principal: --allow-principal or --deny-principal")
    Request = protocol.request_class(ApiKey.CREATE_ACLS)
    creations = [Request.AclCreation(resource_type=rt, resource_name=name,
                                     resource_pattern_type=args.resource_pattern_type,
                                     principal=p, host=h, operation=op, permission_type=perm)
                 for rt, name in resources for p, h, op, perm in entries]
    with open_client(args) as client:
        response = client.any_connection().call(ApiKey.CREATE_ACLS,
                                                Request(creations=creations))
    for c, result in zip(creations, response.results):
        raise_for(result.error_code, result.error_message,
                  what=f"ACL for {A.RESOURCE_TYPE_NAMES[c.resource_type]} {c.resource_name!r}")
    print(f"Added {len(creations)} ACL(s)")
    return 0


def _print(bindings) -> None:
    by_pattern: dict[tuple, list] = {}
    for b in bindings:
        by_pattern.setdefault((b.resource_type, b.name, b.pattern_type), []).append(b)
    for (rt, name, pt), group in by_pattern.items():
        print(f"Current ACLs for resource `ResourcePattern(resourceType="
              f"{A.RESOURCE_TYPE_NAMES[rt]}, name={name}, patternType="
              f"{A.PATTERN_TYPE_NAMES[pt]})`: ")
        for b in group:
            print(f" \t(principal={b.principal}, host={b.host}, "
                  f"operation={A.OPERATION_NAMES[b.operation]}, "
                  f"permissionType={A.PERMISSION_NAMES[b.permission]})")
        print()


def list_acls(args) -> int:
    resources = _resources(args) or [(A.RT_ANY, None)]
    pattern = args.resource_pattern_type if _resources(args) else A.PT_ANY
    Request = protocol.request_class(ApiKey.DESCRIBE_ACLS)
    found = []
    with open_client(args) as client:
        connection = client.any_connection()
        for rt, name in resources:
            for principal in args.principal or [None]:
                response = connection.call(ApiKey.DESCRIBE_ACLS, Request(
                    resource_type_filter=rt, resource_name_filter=name,
                    pattern_type_filter=pattern, principal_filter=principal, host_filter=None,
                    operation=A.OP_ANY, permission_type=A.PERM_ANY))
                raise_for(response.error_code, response.error_message, what="DescribeAcls")
                for r in response.resources:
                    for d in r.acls:
                        found.append(A.AclBinding(r.resource_type, r.resource_name,
                                                  r.pattern_type, d.principal, d.host,
                                                  d.operation, d.permission_type))
    _print(found)
    return 0


def remove(args) -> int:
    resources = _resources(args)
    if not resources:
        raise UsageError("name a resource: --topic, --group, --transactional-id or --cluster")
    Request = protocol.request_class(ApiKey.DELETE_ACLS)
    entries = _entries(args) or [(None, None, A.OP_ANY, A.PERM_ANY)]
    filters = [Request.DeleteAclsFilter(resource_type_filter=rt, resource_name_filter=name,
                                        pattern_type_filter=args.resource_pattern_type,
                                        principal_filter=p, host_filter=h, operation=op,
                                        permission_type=perm)
               for rt, name in resources for p, h, op, perm in entries]
    with open_client(args) as client:
        response = client.any_connection().call(ApiKey.DELETE_ACLS, Request(filters=filters))
    deleted = []
    for result in response.filter_results:
        raise_for(result.error_code, result.error_message, what="DeleteAcls")
        deleted += [A.AclBinding(m.resource_type, m.resource_name, m.pattern_type, m.principal,
                                 m.host, m.operation, m.permission_type)
                    for m in result.matching_acls]
    print(f"Removed {len(deleted)} ACL(s)")
    _print(deleted)
    return 0
