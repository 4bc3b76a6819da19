"""Kafka's ACL bindings and the rules of its StandardAuthorizer (KIP-11, KIP-290, KIP-801).

An ACL binding is a resource pattern (resource type, name, pattern type) and an access control
entry (principal, host, operation, permission). The codes are Kafka's enums as they travel in
CreateAcls/DescribeAcls/DeleteAcls:

  ResourceType   UNKNOWN 0, ANY 1, TOPIC 2, GROUP 3, CLUSTER 4, TRANSACTIONAL_ID 5,
                 DELEGATION_TOKEN 6, USER 7
  PatternType    UNKNOWN 0, ANY 1, MATCH 2, LITERAL 3, PREFIXED 4
  AclOperation   UNKNOWN 0, ANY 1, ALL 2, READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7,
                 DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
                 IDEMPOTENT_WRITE 12, CREATE_TOKENS 13, DESCRIBE_TOKENS 14, TWO_PHASE_COMMIT 15
  PermissionType UNKNOWN 0, ANY 1, DENY 2, ALLOW 3

How StandardAuthorizer decides whether `principal` from `host` may do `operation` on a resource:
- a super user (`super.users`, `User:alice;User:bob`) may do anything;
- the ACLs that apply are those whose pattern matches the resource: LITERAL with the same name,
  LITERAL `*` (every resource of the type), PREFIXED with a prefix of the name;
  of these, those whose principal is the principal or `User:*` and whose host is the host or `*`;
- a DENY of the operation (or of ALL) wins over any ALLOW;
- an ALLOW of the operation or of ALL allows; an ALLOW of READ, WRITE, DELETE or ALTER also
  allows DESCRIBE, and one of ALTER_CONFIGS allows DESCRIBE_CONFIGS (a DENY implies nothing);
- when no ACL at all matches the resource (whoever it names), the answer is
  `allow.everyone.if.no.acl.found` (false by default): with an authorizer and no ACLs, only super
  users may do anything.

Filters (DescribeAcls, DeleteAcls) match bindings as Kafka's AclBindingFilter: ANY matches every
value, a null name/principal/host matches any; pattern type MATCH matches the LITERAL and
PREFIXED patterns (and LITERAL `*`) that would apply to the filter's name.
"""

# ResourceType
RT_UNKNOWN, RT_ANY, TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN, USER = range(8)
# PatternType
PT_UNKNOWN, PT_ANY, MATCH, LITERAL, PREFIXED = range(5)
# AclOperation
(OP_UNKNOWN, OP_ANY, ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION,
 DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS, DESCRIBE_TOKENS,
 TWO_PHASE_COMMIT) = range(16)
# AclPermissionType
PERM_UNKNOWN, PERM_ANY, DENY, ALLOW = range(4)

RESOURCE_TYPES = {"UNKNOWN": RT_UNKNOWN, "ANY": RT_ANY, "TOPIC": TOPIC, "GROUP": GROUP,
                  "CLUSTER": CLUSTER, "TRANSACTIONAL_ID": TRANSACTIONAL_ID,
                  "DELEGATION_TOKEN": DELEGATION_TOKEN, "USER": USER}
PATTERN_TYPES = {"UNKNOWN": PT_UNKNOWN, "ANY": PT_ANY, "MATCH": MATCH, "LITERAL": LITERAL,
                 "PREFIXED": PREFIXED}
OPERATIONS = {"UNKNOWN": OP_UNKNOWN, "ANY": OP_ANY, "ALL": ALL, "READ": READ, "WRITE": WRITE,
              "CREATE": CREATE, "DELETE": DELETE, "ALTER": ALTER, "DESCRIBE": DESCRIBE,
              "CLUSTER_ACTION": CLUSTER_ACTION, "DESCRIBE_CONFIGS": DESCRIBE_CONFIGS,
              "ALTER_CONFIGS": ALTER_CONFIGS, "IDEMPOTENT_WRITE": IDEMPOTENT_WRITE,
              "CREATE_TOKENS": CREATE_TOKENS, "DESCRIBE_TOKENS": DESCRIBE_TOKENS,
              "TWO_PHASE_COMMIT": TWO_PHASE_COMMIT}
PERMISSIONS = {"UNKNOWN": PERM_UNKNOWN, "ANY": PERM_ANY, "DENY": DENY, "ALLOW": ALLOW}
RESOURCE_TYPE_NAMES = {v: k for k, v in RESOURCE_TYPES.items()}
PATTERN_TYPE_NAMES = {v: k for k, v in PATTERN_TYPES.items()}
OPERATION_NAMES = {v: k for k, v in OPERATIONS.items()}
PERMISSION_NAMES = {v: k for k, v in PERMISSIONS.items()}

WILDCARD = "*"                  # ResourcePattern.WILDCARD_RESOURCE, AccessControlEntry's host
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"  # the one cluster resource's name

# StandardAuthorizerData: ALLOW of one of these implies ALLOW of DESCRIBE / DESCRIBE_CONFIGS.
IMPLIES_DESCRIBE = frozenset({DESCRIBE, READ, WRITE, DELETE, ALTER})
IMPLIES_DESCRIBE_CONFIGS = frozenset({DESCRIBE_CONFIGS, ALTER_CONFIGS})

# The operations each resource type supports (Kafka's AclEntry.supportedOperations): what a
# binding may name (else INVALID_REQUEST) and what "authorized operations" reports.
SUPPORTED_OPERATIONS = {
    TOPIC: (READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    GROUP: (READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    CLUSTER: (CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER,
              DESCRIBE),
    TRANSACTIONAL_ID: (DESCRIBE, WRITE, TWO_PHASE_COMMIT),
    DELEGATION_TOKEN: (DESCRIBE,),
    USER: (CREATE_TOKENS, DESCRIBE_TOKENS),
}


def operations_bitfield(resource_type: int, allowed=None) -> int:
    """The authorized-operations bitfield (1 << operation code) Metadata, DescribeCluster and
    DescribeGroups report: every supported operation when `allowed` is None (no authorizer)."""
    bits = 0
    for op in SUPPORTED_OPERATIONS[resource_type]:
        if allowed is None or allowed(op):
            bits |= 1 << op
    return bits


class AclBinding:
    """One ACL: a resource pattern and an access control entry; hashable (a set of them is the
    authorizer's state, as Kafka keeps no duplicates)."""
    __slots__ = ("resource_type", "name", "pattern_type", "principal", "host", "operation",
                 "permission")

    def __init__(self, resource_type: int, name: str, pattern_type: int, principal: str,
                 host: str, operation: int, permission: int):
        self.resource_type = resource_type
        self.name = name
        self.pattern_type = pattern_type
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission

    def key(self) -> tuple:
        return (self.resource_type, self.name, self.pattern_type, self.principal, self.host,
                self.operation, self.permission)

    def __eq__(self, other):
        return isinstance(other, AclBinding) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return (f"(pattern=ResourcePattern(resourceType={RESOURCE_TYPE_NAMES[self.resource_type]}"
                f", name={self.name}, patternType={PATTERN_TYPE_NAMES[self.pattern_type]}), "
                f"entry=(principal={self.principal}, host={self.host}, "
                f"operation={OPERATION_NAMES[self.operation]}, "
                f"permissionType={PERMISSION_NAMES[self.permission]}))")

    def to_json(self) -> dict:
        return {"resourceType": RESOURCE_TYPE_NAMES[self.resource_type], "name": self.name,
                "patternType": PATTERN_TYPE_NAMES[self.pattern_type],
                "principal": self.principal, "host": self.host,
                "operation": OPERATION_NAMES[self.operation],
                "permissionType": PERMISSION_NAMES[self.permission]}

    @classmethod
    def from_json(cls, d: dict) -> "AclBinding":
        return cls(RESOURCE_TYPES[d["resourceType"]], d["name"], PATTERN_TYPES[d["patternType"]],
                   d["principal"], d["host"], OPERATIONS[d["operation"]],
                   PERMISSIONS[d["permissionType"]])

    def invalid_reason(self) -> str | None:
        """Why Kafka refuses to create this binding (INVALID_REQUEST), or None."""
        if self.resource_type not in SUPPORTED_OPERATIONS:
            return f"Invalid resource type {self.resource_type}"
        if self.pattern_type not in (LITERAL, PREFIXED):
            return "Invalid pattern type: must be LITERAL or PREFIXED"
        if self.permission not in (ALLOW, DENY):
            return "Invalid permission type"
        if self.operation != ALL and \
                self.operation not in SUPPORTED_OPERATIONS[self.resource_type]:
            return (f"Operation {OPERATION_NAMES.get(self.operation, self.operation)} is not "
                    f"supported for resource type "
                    f"{RESOURCE_TYPE_NAMES[self.resource_type]}")
        if not self.name:
            return "Resource name must not be empty"
        if self.resource_type == CLUSTER and self.name != CLUSTER_NAME:
            return "The only valid name for the CLUSTER resource is kafka-cluster"
        if ":" not in self.principal:
            return f"Could not parse principal from `{self.principal}` (no colon is found " \
                   f"between principal type and principal name)"
        if self.pattern_type == PREFIXED and self.name == WILDCARD:
            return "Cannot create a PREFIXED pattern with the wildcard name"
        return None


class AclFilter:
    """Kafka's AclBindingFilter: each field a value to match, or ANY (None for strings)."""
    __slots__ = ("resource_type", "name", "pattern_type", "principal", "host", "operation",
                 "permission")

    def __init__(self, resource_type: int, name: str | None, pattern_type: int,
                 principal: str | None, host: str | None, operation: int, permission: int):
        self.resource_type = resource_type
        self.name = name
        self.pattern_type = pattern_type
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission

    def invalid_reason(self) -> str | None:
        for value, unknown in ((self.resource_type, RT_UNKNOWN), (self.pattern_type, PT_UNKNOWN),
                               (self.operation, OP_UNKNOWN), (self.permission, PERM_UNKNOWN)):
            if value == unknown:
                return "Filter contains UNKNOWN elements"
        return None

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type != RT_ANY and self.resource_type != b.resource_type:
            return False
        if self.pattern_type == MATCH:
            if self.name is not None and not (
                    (b.pattern_type == LITERAL and b.name in (self.name, WILDCARD))
                    or (b.pattern_type == PREFIXED and self.name.startswith(b.name))):
                return False
        else:
            if self.pattern_type != PT_ANY and self.pattern_type != b.pattern_type:
                return False
            if self.name is not None and self.name != b.name:
                return False
        if self.principal is not None and self.principal != b.principal:
            return False
        if self.host is not None and self.host != b.host:
            return False
        if self.operation != OP_ANY and self.operation != b.operation:
            return False
        if self.permission != PERM_ANY and self.permission != b.permission:
            return False
        return True


def _allows(acl_operation: int, operation: int) -> bool:
    """Whether an ALLOW of `acl_operation` covers `operation` (StandardAuthorizerData)."""
    if acl_operation == ALL or acl_operation == operation:
        return True
    if operation == DESCRIBE:
        return acl_operation in IMPLIES_DESCRIBE
    if operation == DESCRIBE_CONFIGS:
        return acl_operation in IMPLIES_DESCRIBE_CONFIGS
    return False


class AclIndex:
    """The ACLs, indexed for authorization: (resource type, LITERAL name) -> bindings and, per
    resource type, the PREFIXED ones; decisions cached per (principal, host, operation,
    resource type, name) until the ACLs change, so a produce or fetch of a topic checks a dict."""

    CACHE_LIMIT = 100_000

    def __init__(self, super_users=(), allow_if_no_acl: bool = False):
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._bindings: set[AclBinding] = set()
        self._literal: dict[tuple[int, str], list[AclBinding]] = {}
        self._prefixed: dict[int, list[AclBinding]] = {}
        self._cache: dict[tuple, bool] = {}

    def __len__(self):
        return len(self._bindings)

    def bindings(self) -> list[AclBinding]:
        return sorted(self._bindings, key=AclBinding.key)

    def add(self, b: AclBinding) -> bool:
        """Add a binding; False when it was there already (Kafka keeps one)."""
        if b in self._bindings:
            return False
        self._bindings.add(b)
        if b.pattern_type == LITERAL:
            self._literal.setdefault((b.resource_type, b.name), []).append(b)
        else:
            self._prefixed.setdefault(b.resource_type, []).append(b)
        self._cache.clear()
        return True

    def remove(self, b: AclBinding) -> None:
        self._bindings.discard(b)
        if b.pattern_type == LITERAL:
            found = self._literal.get((b.resource_type, b.name), [])
        else:
            found = self._prefixed.get(b.resource_type, [])
        if b in found:
            found.remove(b)
        self._cache.clear()

    def matching(self, f: AclFilter) -> list[AclBinding]:
        return [b for b in self.bindings() if f.matches(b)]

    def _applying(self, resource_type: int, name: str):
        yield from self._literal.get((resource_type, name), ())
        if name != WILDCARD:
            yield from self._literal.get((resource_type, WILDCARD), ())
        for b in self._prefixed.get(resource_type, ()):
            if name.startswith(b.name):
                yield b

    def authorize(self, principal: str, host: str, operation: int, resource_type: int,
                  name: str) -> bool:
        key = (principal, host, operation, resource_type, name)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(principal, host, operation, resource_type, name)
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def _decide(self, principal, host, operation, resource_type, name) -> bool:
        if principal in self.super_users:
            return True
        found_any = allowed = False
        for b in self._applying(resource_type, name):
            found_any = True
            if b.principal != principal and b.principal != WILDCARD_PRINCIPAL:
                continue
            if b.host != host and b.host != WILDCARD:
                continue
            if b.permission == DENY:
                if b.operation == ALL or b.operation == operation:
                    return False        # deny wins
            elif _allows(b.operation, operation):
                allowed = True
        if not found_any:
            return self.allow_if_no_acl
        return allowed

    def authorize_any(self, principal: str, host: str, operation: int,
                      resource_type: int) -> bool:
        """Kafka's authorizeByResourceType (KIP-679): whether some resource of the type could be
        done `operation` on: an ALLOW that applies to the principal and host and is not covered
        by a DENY (a LITERAL `*` or PREFIXED deny covering its pattern, or the same LITERAL)."""
        if principal in self.super_users:
            return True
        applies = [b for b in self._bindings
                   if b.resource_type == resource_type
                   and b.principal in (principal, WILDCARD_PRINCIPAL)
                   and b.host in (host, WILDCARD)]
        denies = [b for b in applies if b.permission == DENY
                  and b.operation in (ALL, operation)]
        for b in applies:
            if b.permission != ALLOW or not _allows(b.operation, operation):
                continue
            if not any(_covers(d, b) for d in denies):
                return True
        if not any(b.resource_type == resource_type for b in self._bindings):
            return self.allow_if_no_acl
        return False


def _covers(deny: AclBinding, allow: AclBinding) -> bool:
    if deny.pattern_type == LITERAL:
        return deny.name == WILDCARD or (allow.pattern_type == LITERAL and
                                         deny.name == allow.name)
    return allow.name.startswith(deny.name)
