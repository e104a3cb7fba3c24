"""The Node authorizer and NodeRestriction, after Kubernetes: a node identity (`system:node:<name>` in
`system:nodes`) acts only as its own Node and only on the pods bound to it.

- it may register, heartbeat and update only the Node named in its identity;
- it receives only the pods whose `spec.nodeName` is its name;
- it reports status and termination only for pods bound to it.

Anything else is refused with a reason naming the identity, for the log and the PERMISSION_DENIED answer.
"""

from __future__ import annotations

from kybernetes.core.identity.certs import Identity
from kybernetes.master.auth.rbac import Decision


def _node(identity: Identity) -> str | None:
    return identity.node_name


def may_register(identity: Identity, node_name: str) -> Decision:
    own = _node(identity)
    if own is None:
        return Decision(False, f'user "{identity.user}" is not a node identity')
    if own != node_name:
        return Decision(False, f'node "{own}" cannot register as node "{node_name}"')
    return Decision(True, f'node "{own}" registers as itself')


def may_update_node(identity: Identity, node_name: str) -> Decision:
    own = _node(identity)
    if own is None or own != node_name:
        who = f'node "{own}"' if own else f'user "{identity.user}"'
        return Decision(False, f'{who} cannot update node "{node_name}"')
    return Decision(True, f'node "{own}" updates itself')


def may_see_pod(identity: Identity, pod_node_name: str) -> bool:
    """Whether a pod bound to `pod_node_name` may be sent to this identity's kubelet."""
    own = _node(identity)
    return own is not None and own == pod_node_name


def may_report_pod(identity: Identity, *, pod: str, pod_node_name: str) -> Decision:
    own = _node(identity)
    if own is None:
        return Decision(False, f'user "{identity.user}" is not a node identity')
    if own != pod_node_name:
        bound = f'node "{pod_node_name}"' if pod_node_name else "no node"
        return Decision(False, f'node "{own}" cannot report status of pod "{pod}" bound to {bound}')
    return Decision(True, f'node "{own}" reports its own pod')
