"""Who may do what (import name `kybernetes.master.auth`): the decisions, apart from how requests arrive.

- `rbac`: Kubernetes' RBAC: Roles and ClusterRoles of rules (verbs, resources, resourceNames), bound to users
  and groups by RoleBindings (one namespace) and ClusterRoleBindings (everywhere); `system:masters` bypasses;
  the default ClusterRoles `cluster-admin`, `edit` and `view`.
- `node`: Kubernetes' Node authorizer and NodeRestriction: a node identity acts only as itself and only on
  the pods bound to it.

Every decision says why, so a refusal can be logged with the identity and answered PERMISSION_DENIED in
kubectl's words.

Design and the remaining wiring: docs/identity.md.
"""
