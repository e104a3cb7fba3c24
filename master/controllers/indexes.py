"""The cache indexes controllers share, under fixed names so every controller registers the same ones.

- NODE: pods by spec.nodeName (scheduler accounting, node lifecycle eviction);
- CONTROLLER: objects by their controlling owner's uid (a ReplicaSet's pods, a Deployment's ReplicaSets);
- OWNER: objects by any owner's uid (garbage collection);
- ORPHANS: objects without a controller, by namespace (adoption candidates);
- NAMESPACE: objects by namespace (owners whose selector may match an orphan).
"""

from __future__ import annotations

from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.machinery.informer import Informer, by_controller_uid, by_namespace, by_node_name, by_owner_uid

NODE = "node"
CONTROLLER = "controller"
OWNER = "owner"
ORPHANS = "orphans"
NAMESPACE = "namespace"


def orphans_by_namespace(obj: ApiObject) -> list[str]:
    """Indexer: the namespace of an object that has no controller reference."""
    if any(ref.controller for ref in obj.metadata.owner_references):
        return []
    return [obj.metadata.namespace]


def add_owned_indexes(informer: Informer) -> None:
    """Indexes of a kind that controllers own (pods, replica sets)."""
    informer.add_indexer(CONTROLLER, by_controller_uid)
    informer.add_indexer(OWNER, by_owner_uid)
    informer.add_indexer(ORPHANS, orphans_by_namespace)
    informer.add_indexer(NAMESPACE, by_namespace)


def add_pod_indexes(informer: Informer) -> None:
    add_owned_indexes(informer)
    informer.add_indexer(NODE, by_node_name)


def add_namespace_index(informer: Informer) -> None:
    informer.add_indexer(NAMESPACE, by_namespace)
