"""RBAC from the API objects: the Roles, ClusterRoles and their bindings the master's informers cache become
the authorizer's rules, rebuilt once per burst of changes, and the default ClusterRoles exist as objects.

Each change of any of the four kinds marks the set dirty; one rebuild runs on the next turn of the event
loop (a list of a thousand bindings at start is one rebuild, not a thousand). The master waits for the four
caches to sync before it serves, so a restarted master never refuses a bound user for want of its bindings.

`ensure_defaults` creates, when missing, what Kubernetes' API server bootstraps: the ClusterRoles
`cluster-admin`, `edit`, `view` and `system:node`, and the ClusterRoleBindings `cluster-admin` (group
system:masters) and `system:node` (group system:nodes). The same roles are also built into the authorizer
(master.auth.rbac), so they hold even before the objects exist.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import AlreadyExistsError
from kybernetes.core.identity.certs import MASTERS_GROUP, NODES_GROUP
from kybernetes.core.log import get_logger
from kybernetes.core.machinery.informer import Informer, InformerFactory
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.auth.rbac import DEFAULT_CLUSTER_ROLES, SYSTEM_NODE_ROLE, Binding, PolicyRule, Role, Subject
from kybernetes.proto import objects_pb2 as pb

log = get_logger("auth")

RBAC_RESOURCES = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
_API_VERSION = "rbac.authorization.k8s.io/v1"


def role_of(obj: pb.Role | pb.ClusterRole) -> Role:
    rules = tuple(PolicyRule(verbs=tuple(r.verbs), resources=tuple(r.resources),
                             resource_names=tuple(r.resource_names)) for r in obj.rules)
    return Role(obj.metadata.name, rules, namespace=obj.metadata.namespace if isinstance(obj, pb.Role) else "")


def binding_of(obj: pb.RoleBinding | pb.ClusterRoleBinding) -> Binding:
    return Binding(obj.metadata.name, role_kind=obj.role_ref.kind, role_name=obj.role_ref.name,
                   subjects=tuple(Subject(s.kind, s.name) for s in obj.subjects),
                   namespace=obj.metadata.namespace if isinstance(obj, pb.RoleBinding) else "")


class RbacSync:
    """Keeps AccessControl equal to the RBAC objects in the informers' caches."""

    def __init__(self, *, access: AccessControl, informers: InformerFactory) -> None:
        self.access = access
        self.informers: list[Informer[Any]] = [informers.informer(r) for r in RBAC_RESOURCES]
        self._scheduled = False
        self.rebuilds = 0
        for informer in self.informers:
            informer.add_handler(on_add=self._changed, on_update=lambda _old, _new: self._changed(None),
                                 on_delete=self._changed)

    def _changed(self, _obj: object) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.rebuild)

    def rebuild(self) -> None:
        self._scheduled = False
        roles, cluster_roles, bindings, cluster_bindings = (i.list() for i in self.informers)
        self.access.replace(roles=[role_of(r) for r in (*roles, *cluster_roles)],
                            bindings=[binding_of(b) for b in (*bindings, *cluster_bindings)])
        self.rebuilds += 1
        log.debug("rbac rebuilt", roles=len(roles) + len(cluster_roles), bindings=len(bindings) +
                  len(cluster_bindings))

    async def wait_synced(self, timeout: float) -> None:
        for informer in self.informers:
            await informer.wait_synced(timeout)
        self.rebuild()


def _rule_message(rule: PolicyRule) -> pb.PolicyRule:
    return pb.PolicyRule(verbs=list(rule.verbs), api_groups=["*"], resources=list(rule.resources),
                         resource_names=list(rule.resource_names))


async def ensure_defaults(client: ObjectClient) -> None:
    """Create the default ClusterRoles and ClusterRoleBindings that are missing (never overwrite)."""
    objects: list[Any] = []
    for role in (*DEFAULT_CLUSTER_ROLES, SYSTEM_NODE_ROLE):
        obj = pb.ClusterRole(api_version=_API_VERSION, kind="ClusterRole",
                             rules=[_rule_message(r) for r in role.rules])
        obj.metadata.name = role.name
        obj.metadata.labels["kubernetes.io/bootstrapping"] = "rbac-defaults"
        objects.append(obj)
    for name, group in (("cluster-admin", MASTERS_GROUP), ("system:node", NODES_GROUP)):
        binding = pb.ClusterRoleBinding(api_version=_API_VERSION, kind="ClusterRoleBinding",
                                        role_ref=pb.RoleRef(api_group="rbac.authorization.k8s.io",
                                                            kind="ClusterRole", name=name),
                                        subjects=[pb.Subject(kind="Group", name=group,
                                                             api_group="rbac.authorization.k8s.io")])
        binding.metadata.name = name
        binding.metadata.labels["kubernetes.io/bootstrapping"] = "rbac-defaults"
        objects.append(binding)
    for obj in objects:
        try:
            await client.create(obj)
        except AlreadyExistsError:
            continue
