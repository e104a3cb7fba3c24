"""RBAC decisions with Kubernetes' semantics (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac).

A request (who, verb, resource, namespace, name) is allowed when any rule reachable from a binding of one
of the requester's subjects covers it:

- a ClusterRoleBinding grants its ClusterRole everywhere: every namespace and the cluster-scoped kinds;
- a RoleBinding grants its Role (of the same namespace) or a ClusterRole in its own namespace only;
- a rule covers a request when its verbs hold the verb (or `*`), its resources hold the resource (or `*`,
  or `<resource>/*` for a subresource such as `pods/log`), and its resourceNames, when given, hold the name
  (so a rule with names never covers create, or list and watch of everything);
- the group `system:masters` is allowed everything without any binding, as in Kubernetes.

Nothing is denied explicitly: what no rule allows is refused, and the decision says so in kubectl's words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kybernetes.core.identity.certs import MASTERS_GROUP, Identity

VERBS = ("get", "list", "watch", "create", "update", "delete")
READ_VERBS = ("get", "list", "watch")
# What `edit` and `view` cover: every namespaced kind of ours (Kubernetes' aggregate roles cover the same).
WORKLOAD_RESOURCES = ("pods", "pods/log", "pods/exec", "pods/status", "replicasets", "deployments",
                      "services", "endpoints", "events")


@dataclass(frozen=True, slots=True)
class PolicyRule:
    verbs: tuple[str, ...]
    resources: tuple[str, ...]
    resource_names: tuple[str, ...] = ()

    def covers(self, *, verb: str, resource: str, name: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if not _resource_matches(self.resources, resource):
            return False
        return not self.resource_names or (bool(name) and name in self.resource_names)


def _resource_matches(resources: tuple[str, ...], resource: str) -> bool:
    if "*" in resources or resource in resources:
        return True
    parent, slash, _ = resource.partition("/")
    return bool(slash) and f"{parent}/*" in resources


@dataclass(frozen=True, slots=True)
class Role:
    """A Role (namespace set) or a ClusterRole (namespace empty)."""

    name: str
    rules: tuple[PolicyRule, ...]
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Subject:
    kind: str  # "User" or "Group"
    name: str

    def matches(self, identity: Identity) -> bool:
        if self.kind == "User":
            return identity.user == self.name
        if self.kind == "Group":
            return self.name in identity.groups
        return False


@dataclass(frozen=True, slots=True)
class Binding:
    """A RoleBinding (namespace set) or a ClusterRoleBinding (namespace empty)."""

    name: str
    role_kind: str  # "Role" or "ClusterRole"
    role_name: str
    subjects: tuple[Subject, ...]
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Request:
    identity: Identity
    verb: str
    resource: str  # "pods", "pods/log", "nodes", ...
    namespace: str = ""  # empty for cluster-scoped kinds, or a request across all namespaces
    name: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


DEFAULT_CLUSTER_ROLES = (
    Role("cluster-admin", (PolicyRule(verbs=("*",), resources=("*",)),)),
    Role("edit", (PolicyRule(verbs=VERBS, resources=WORKLOAD_RESOURCES),)),
    Role("view", (PolicyRule(verbs=READ_VERBS, resources=tuple(r for r in WORKLOAD_RESOURCES
                                                                if r not in ("pods/exec", "pods/status"))),)),
)


# What every kubelet identity may read through the object API (its pods and stream come over the node link):
# the Nodes, so that a Node machine can check its own readiness (Kubernetes' system:node role reads them too).
SYSTEM_NODE_ROLE = Role("system:node", (PolicyRule(verbs=READ_VERBS, resources=("nodes",)),))
DEFAULT_BINDINGS = (
    Binding("system:node", "ClusterRole", "system:node", (Subject("Group", "system:nodes"),)),
)


@dataclass
class Authorizer:
    """RBAC over a set of roles and bindings (the master keeps them from its informers)."""

    roles: Iterable[Role] = ()
    bindings: Iterable[Binding] = ()
    _roles: dict[tuple[str, str, str], Role] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for role in (*DEFAULT_CLUSTER_ROLES, SYSTEM_NODE_ROLE, *self.roles):
            kind = "Role" if role.namespace else "ClusterRole"
            self._roles[(kind, role.namespace, role.name)] = role
        self.bindings = (*DEFAULT_BINDINGS, *self.bindings)

    def authorize(self, request: Request) -> Decision:
        if MASTERS_GROUP in request.identity.groups:
            return Decision(True, f"group {MASTERS_GROUP}")
        for binding in self.bindings:
            if binding.namespace and binding.namespace != request.namespace:
                continue
            if not any(subject.matches(request.identity) for subject in binding.subjects):
                continue
            role_namespace = binding.namespace if binding.role_kind == "Role" else ""
            role = self._roles.get((binding.role_kind, role_namespace, binding.role_name))
            if role is None:
                continue
            for rule in role.rules:
                if rule.covers(verb=request.verb, resource=request.resource, name=request.name):
                    kind = "RoleBinding" if binding.namespace else "ClusterRoleBinding"
                    return Decision(True, f'{kind} "{binding.name}" of {binding.role_kind} "{binding.role_name}"')
        return Decision(False, forbidden_message(request))


def forbidden_message(request: Request) -> str:
    """kubectl's wording of a refusal (after `Error from server (Forbidden): `)."""
    resource, _, subresource = request.resource.partition("/")
    what = f'{resource} "{request.name}"' if request.name else resource
    scope = f' in the namespace "{request.namespace}"' if request.namespace else " at the cluster scope"
    sub = f' with subresource "{subresource}"' if subresource else ""
    return (f'{what} is forbidden: User "{request.identity.user}" cannot {request.verb} resource '
            f'"{resource}"{sub}{scope}')
