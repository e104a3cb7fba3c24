"""RBAC objects (rbac.authorization.k8s.io/v1): Roles and ClusterRoles of rules, and the bindings that grant
them to users and groups, with Kubernetes' rules:

- a rule names at least one verb and one resource; verbs are Kubernetes' (or "*");
- a binding's roleRef names a Role or ClusterRole (a ClusterRoleBinding only a ClusterRole) and cannot change
  once made (delete and create the binding again, as in Kubernetes);
- subjects are Users or Groups with a name (identities come from client certificates: CN and O).
"""

from __future__ import annotations

from typing import Any

from kybernetes.master.api.validation.errors import Errors
from kybernetes.master.api.validation.network import ClusterNetwork
from kybernetes.proto import objects_pb2 as pb

RBAC_GROUP = "rbac.authorization.k8s.io"
KNOWN_VERBS = ("*", "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
               "impersonate")
SUBJECT_KINDS = ("User", "Group")


def path_segment_name(value: str) -> list[str]:
    """Kubernetes' rule for RBAC object names (they hold colons: `system:node`): a path segment."""
    if value in (".", ".."):
        return [f'may not be "{value}"']
    if "/" in value or "%" in value:
        return ["may not contain '/' or '%'"]
    if len(value) > 253:
        return ["must be no more than 253 characters"]
    return []


def _rules(errors: Errors, rules: Any) -> None:
    for i, rule in enumerate(rules):
        path = f"rules[{i}]"
        if not rule.verbs:
            errors.required(f"{path}.verbs", "verbs must contain at least one value")
        for j, verb in enumerate(rule.verbs):
            if verb not in KNOWN_VERBS:
                errors.unsupported(f"{path}.verbs[{j}]", verb, KNOWN_VERBS)
        if not rule.resources:
            errors.required(f"{path}.resources", "resources must contain at least one value")
        for j, resource in enumerate(rule.resources):
            if not resource or " " in resource or resource.count("/") > 1:
                errors.invalid(f"{path}.resources[{j}]", resource, "must be a resource, resource/subresource or *")


def validate_role(errors: Errors, role: pb.Role | pb.ClusterRole, old: Any, *,
                  network: ClusterNetwork) -> None:
    _rules(errors, role.rules)


def _binding(errors: Errors, binding: pb.RoleBinding | pb.ClusterRoleBinding, old: Any, *,
             role_kinds: tuple[str, ...]) -> None:
    ref = binding.role_ref
    if ref.api_group not in ("", RBAC_GROUP):
        errors.unsupported("roleRef.apiGroup", ref.api_group, (RBAC_GROUP,))
    if not ref.kind:
        errors.required("roleRef.kind")
    elif ref.kind not in role_kinds:
        errors.unsupported("roleRef.kind", ref.kind, role_kinds)
    if not ref.name:
        errors.required("roleRef.name")
    if old is not None and (old.role_ref.kind, old.role_ref.name) != (ref.kind, ref.name):
        errors.invalid("roleRef", f"{ref.kind}/{ref.name}", "cannot change roleRef")
    for i, subject in enumerate(binding.subjects):
        if subject.kind not in SUBJECT_KINDS:
            errors.unsupported(f"subjects[{i}].kind", subject.kind, SUBJECT_KINDS)
        if not subject.name:
            errors.required(f"subjects[{i}].name")


def validate_role_binding(errors: Errors, binding: pb.RoleBinding, old: pb.RoleBinding | None, *,
                          network: ClusterNetwork) -> None:
    _binding(errors, binding, old, role_kinds=("Role", "ClusterRole"))


def validate_cluster_role_binding(errors: Errors, binding: pb.ClusterRoleBinding,
                                  old: pb.ClusterRoleBinding | None, *,
                                  network: ClusterNetwork) -> None:
    _binding(errors, binding, old, role_kinds=("ClusterRole",))
