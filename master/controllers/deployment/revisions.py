"""A Deployment's revision history, read through any client (for `kybctl rollout history` and undo).

Each revision is a ReplicaSet the Deployment controls, numbered by its
deployment.kubernetes.io/revision annotation; an RS reused by a rollback
carries its earlier numbers in revision-history and shows under its newest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from master.controllers.deployment import util
from master.controllers.podutil import controller_of
from proto import objects_pb2 as pb


@dataclass(frozen=True, slots=True)
class Revision:
    """One entry of `rollout history`."""

    number: int
    replica_set: pb.ReplicaSet
    change_cause: str

    @property
    def template(self) -> pb.PodTemplateSpec:
        """The pod template of this revision, without the pod-template-hash label."""
        return util.template_without_hash(self.replica_set.spec.template)


async def owned_replica_sets(client: Any, deployment: pb.Deployment) -> list[pb.ReplicaSet]:
    """The ReplicaSets whose controller is this Deployment (by uid)."""
    listed = await client.list("replicasets", namespace=deployment.metadata.namespace)
    out = []
    for rs in listed.items:
        ref = controller_of(rs)
        if ref is not None and ref.uid == deployment.metadata.uid:
            out.append(rs)
    return out


async def history(client: Any, name: str, namespace: str = "default") -> list[Revision]:
    """Every revision of a Deployment, oldest first."""
    deployment = await client.get("deployments", name, namespace=namespace)
    revisions = [Revision(util.revision_of(rs), rs, rs.metadata.annotations.get(util.CHANGE_CAUSE, ""))
                 for rs in await owned_replica_sets(client, deployment)]
    return sorted((r for r in revisions if r.number > 0), key=lambda r: r.number)
