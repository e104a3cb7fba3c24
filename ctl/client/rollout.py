"""What kubectl runs on the client side for `rollout history` and `rollout undo`, over any client.

    from kybernetes.ctl.client.rollout import history, rollback_deployment
    message = await rollback_deployment(client, "web", "default", to_revision=0)

Each revision is a ReplicaSet the Deployment controls, numbered by its
deployment.kubernetes.io/revision annotation; an RS reused by a rollback
carries its earlier numbers in revision-history and shows under its newest.

A rollback copies an old revision's pod template into the Deployment. The
controller then sees a template equal to an existing ReplicaSet's, scales
that ReplicaSet back up as the new one and gives it the next revision number
(its old number goes to revision-history), exactly as Kubernetes does. No
server-side rollback API is needed. The update carries the Deployment's
resourceVersion, so a concurrent change makes it fail with a conflict rather
than be lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from kybernetes.core.api import deployments as util
from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ConflictError
from kybernetes.core.api.objects import controller_of, copy_of
from kybernetes.proto import objects_pb2 as pb

CONFLICT_RETRIES = 10


class RollbackError(ValueError):
    """The rollback cannot be done as asked (no such revision, no history)."""


async def rollback_deployment(client: ObjectClient, name: str, namespace: str = "default", to_revision: int = 0) -> str:
    """Roll a Deployment back to `to_revision` (0: the previous one); returns kubectl's message.

    Raises RollbackError when the revision does not exist, and the client's
    errors (NotFoundError, …) as they come. A conflict with a concurrent write
    (the controller updates status all the time) is retried from a fresh read,
    which is what kubectl's patch achieves.
    """
    for _ in range(CONFLICT_RETRIES - 1):
        try:
            return await _rollback_once(client, name, namespace, to_revision)
        except ConflictError:
            continue
    return await _rollback_once(client, name, namespace, to_revision)


async def _rollback_once(client: ObjectClient, name: str, namespace: str, to_revision: int) -> str:
    if to_revision < 0:
        raise RollbackError(f"revision: Invalid value: {to_revision}: must be 0 (the previous) or a revision number")
    deployment = await client.get("deployments", name, namespace=namespace)
    if deployment.spec.paused:
        raise RollbackError(f'you cannot rollback a paused deployment; resume it first with '
                            f'"kybctl rollout resume deployment/{name}" and try again')
    revisions = await history(client, name, namespace)
    if to_revision == 0:
        target_number = util.last_revision([r.replica_set for r in revisions])
        if target_number == 0:
            raise RollbackError("no rollout history found for deployment " + repr(name))
    else:
        target_number = to_revision
    target = next((r for r in revisions if r.number == target_number), None)
    if target is None:
        raise RollbackError(f"unable to find specified revision {to_revision} in history")
    if util.equal_ignore_hash(deployment.spec.template, target.replica_set.spec.template):
        return f"deployment.apps/{name} skipped rollback (current template already matches revision {target_number})"
    new = copy_of(deployment)
    new.spec.template.CopyFrom(target.template)
    # kubectl carries the revision's own annotations (change-cause) back to the Deployment.
    for key, value in target.replica_set.metadata.annotations.items():
        if key not in util.CONTROLLER_ANNOTATIONS:
            new.metadata.annotations[key] = value
    await client.update(new)
    return f"deployment.apps/{name} rolled back"


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


async def owned_replica_sets(client: ObjectClient, deployment: pb.Deployment) -> list[pb.ReplicaSet]:
    """The ReplicaSets whose controller is this Deployment (by uid)."""
    listed = await client.list("replicasets", namespace=deployment.metadata.namespace)
    out = []
    for rs in listed.items:
        ref = controller_of(rs)
        if ref is not None and ref.uid == deployment.metadata.uid:
            out.append(rs)
    return out


async def history(client: ObjectClient, name: str, namespace: str = "default") -> list[Revision]:
    """Every revision of a Deployment, oldest first."""
    deployment = await client.get("deployments", name, namespace=namespace)
    revisions = [Revision(util.revision_of(rs), rs, rs.metadata.annotations.get(util.CHANGE_CAUSE, ""))
                 for rs in await owned_replica_sets(client, deployment)]
    return sorted((r for r in revisions if r.number > 0), key=lambda r: r.number)
