"""The Deployment sync's shared steps (Kubernetes' pkg/controller/deployment/sync.go).

- `get_all_rss`: classify the Deployment's ReplicaSets into the new one (its
  template equals the Deployment's, ignoring the pod-template-hash label) and
  the old ones; create the new one when asked, named `<deployment>-<hash>`;
  keep the revision annotations (the new RS gets max(old)+1; an old RS brought
  back by a rollback records its previous numbers in revision-history).
- `scale` (proportional scaling when spec.replicas changes mid-rollout) and
  `scale_rs` (one RS, with the desired/max-replicas annotations and a
  ScalingReplicaSet event).
- `sync` (paused Deployments and pure scaling events), `sync_status_only`,
  `calculate_status`, `cleanup` (revisionHistoryLimit) and the paused
  conditions.

Every write is an optimistic update at the version read from the cache; a
conflict fails the sync, which is retried from fresher caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import AlreadyExistsError, NotFoundError
from kybernetes.core.api.objects import (
    controller_of,
    controller_ref,
    copy_of,
    get_condition,
    now_timestamp,
    set_condition,
)
from kybernetes.core.machinery.informer import object_key
from kybernetes.master.controllers.deployment import util
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb

# Kubernetes caps the revision-history annotation's length.
REVISION_HISTORY_LIMIT_CHARS = 2000


def new_condition(kind: str, status: str, reason: str, message: str, now: float) -> pb.Condition:
    ts = now_timestamp(now)
    return pb.Condition(type=kind, status=status, reason=reason, message=message, last_update_time=ts,
                        last_transition_time=ts)


def copy_deployment_annotations(deployment: pb.Deployment, rs: pb.ReplicaSet) -> bool:
    """Copy the Deployment's own annotations (change-cause, …) onto the RS; returns whether any changed."""
    changed = False
    for key, value in deployment.metadata.annotations.items():
        if key in util.CONTROLLER_ANNOTATIONS or rs.metadata.annotations.get(key) == value:
            continue
        rs.metadata.annotations[key] = value
        changed = True
    return changed


def set_new_rs_annotations(deployment: pb.Deployment, rs: pb.ReplicaSet, new_revision: int, *, exists: bool) -> bool:
    """Kubernetes' SetNewReplicaSetAnnotations: annotations, revision (with history) and replica annotations."""
    changed = copy_deployment_annotations(deployment, rs)
    old_text = rs.metadata.annotations.get(util.REVISION, "")
    old_revision = util.revision_of(rs)
    if old_revision < new_revision:
        rs.metadata.annotations[util.REVISION] = str(new_revision)
        changed = True
        if old_text:
            # An old RS brought back (rollback): remember the numbers it had.
            history = rs.metadata.annotations.get(util.REVISION_HISTORY, "")
            revisions = [r for r in history.split(",") if r]
            while revisions and len(",".join([*revisions, old_text])) > REVISION_HISTORY_LIMIT_CHARS:
                revisions.pop(0)
            rs.metadata.annotations[util.REVISION_HISTORY] = ",".join([*revisions, old_text])
    if not exists:
        desired = deployment.spec.replicas
        util.set_replica_annotations(rs, desired, desired + util.max_surge(deployment))
        changed = True
    return changed


def calculate_status(all_rss: Sequence[pb.ReplicaSet], new_rs: pb.ReplicaSet | None, deployment: pb.Deployment,
                     now: float) -> pb.DeploymentStatus:
    available = sum(rs.status.available_replicas for rs in all_rss)
    total = util.total_replicas(all_rss)
    status = pb.DeploymentStatus(
        observed_generation=deployment.metadata.generation,
        replicas=sum(rs.status.replicas for rs in all_rss),
        updated_replicas=new_rs.status.replicas if new_rs is not None else 0,
        ready_replicas=sum(rs.status.ready_replicas for rs in all_rss),
        available_replicas=available,
        unavailable_replicas=max(0, total - available),
        collision_count=deployment.status.collision_count,
    )
    status.conditions.extend(deployment.status.conditions)
    if available >= deployment.spec.replicas - util.max_unavailable(deployment):
        set_condition(status.conditions, new_condition("Available", "True", util.MIN_AVAILABLE,
                                                       "Deployment has minimum availability.", now))
    else:
        set_condition(status.conditions, new_condition("Available", "False", util.MIN_UNAVAILABLE,
                                                       "Deployment does not have minimum availability.", now))
    return status


class DeploymentSync:
    """The API-facing steps of a Deployment sync; one instance serves every worker."""

    def __init__(self, *, client: ObjectClient, recorder: EventRecorder, requeue_after: Callable[[str, float], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.recorder = recorder
        self.requeue_after = requeue_after
        self.clock = clock

    # ------------------------------------------------------------ writes

    async def update_status(self, deployment: pb.Deployment, status: pb.DeploymentStatus) -> pb.Deployment:
        new = copy_of(deployment)
        new.status.CopyFrom(status)
        return await self.client.update_status(new)

    async def set_revision(self, deployment: pb.Deployment, revision: str) -> pb.Deployment:
        """Write the Deployment's revision annotation (metadata: an update, not a status write)."""
        if deployment.metadata.annotations.get(util.REVISION) == revision:
            return deployment
        new = copy_of(deployment)
        new.metadata.annotations[util.REVISION] = revision
        return await self.client.update(new)

    # ------------------------------------------------------- replica sets

    async def get_all_rss(self, deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet], *,
                          create: bool) -> tuple[pb.Deployment, pb.ReplicaSet | None, list[pb.ReplicaSet]]:
        """(deployment as updated, new RS or None, old RSs), creating the new RS when `create`."""
        existing = util.find_new_rs(deployment, rss)
        old_rss = util.find_old_rss(existing, rss)
        new_revision = util.max_revision(old_rss) + 1
        now = self.clock()
        if existing is not None:
            rs = copy_of(existing)
            annotations_changed = set_new_rs_annotations(deployment, rs, new_revision, exists=True)
            if annotations_changed or rs.spec.min_ready_seconds != deployment.spec.min_ready_seconds:
                rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
                existing = await self.client.update(rs)
            deployment = await self.set_revision(deployment, existing.metadata.annotations.get(util.REVISION, ""))
            if util.has_progress_deadline(deployment) and get_condition(deployment.status.conditions,
                                                                        "Progressing") is None:
                status = copy_of(deployment.status)
                set_condition(status.conditions, new_condition(
                    "Progressing", "True", util.FOUND_NEW_RS,
                    f'Found new replica set "{existing.metadata.name}"', now))
                deployment = await self.update_status(deployment, status)
            return deployment, existing, old_rss
        if not create:
            return deployment, None, old_rss
        return await self._create_new_rs(deployment, old_rss, new_revision, now)

    async def _create_new_rs(self, deployment: pb.Deployment, old_rss: list[pb.ReplicaSet], new_revision: int,
                             now: float) -> tuple[pb.Deployment, pb.ReplicaSet | None, list[pb.ReplicaSet]]:
        template_hash = util.compute_hash(deployment.spec.template, deployment.status.collision_count)
        rs = pb.ReplicaSet()
        rs.metadata.name = f"{deployment.metadata.name}-{template_hash}"
        rs.metadata.namespace = deployment.metadata.namespace
        rs.metadata.owner_references.append(controller_ref(deployment, "Deployment"))
        rs.spec.template.CopyFrom(deployment.spec.template)
        rs.spec.template.metadata.labels[util.POD_TEMPLATE_HASH] = template_hash
        rs.metadata.labels.update(rs.spec.template.metadata.labels)
        rs.spec.selector.CopyFrom(deployment.spec.selector)
        rs.spec.selector.match_labels[util.POD_TEMPLATE_HASH] = template_hash
        rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
        rs.spec.replicas = 0
        rs.spec.replicas = util.new_rs_new_replicas(deployment, [*old_rss, rs], rs)
        set_new_rs_annotations(deployment, rs, new_revision, exists=False)
        try:
            created = await self.client.create(rs)
        except AlreadyExistsError:
            live = await self.client.get("replicasets", rs.metadata.name, namespace=rs.metadata.namespace)
            ref = controller_of(live)
            if ref is not None and ref.uid == deployment.metadata.uid and \
                    util.equal_ignore_hash(live.spec.template, deployment.spec.template):
                # Ours, created by an earlier sync the cache has not shown yet.
                return deployment, live, old_rss
            # A different template hashed to the same name: bump collisionCount and retry with a new hash.
            status = copy_of(deployment.status)
            status.collision_count += 1
            await self.update_status(deployment, status)
            raise
        if created.spec.replicas > 0:
            self.recorder.record_nowait(deployment, type="Normal", reason="ScalingReplicaSet",
                                        message=f"Scaled up replica set {created.metadata.name} to "
                                                f"{created.spec.replicas}")
        deployment = await self.set_revision(deployment, str(new_revision))
        if util.has_progress_deadline(deployment):
            status = copy_of(deployment.status)
            set_condition(status.conditions, new_condition(
                "Progressing", "True", util.NEW_RS_CREATED, f'Created new replica set "{created.metadata.name}"',
                now))
            deployment = await self.update_status(deployment, status)
        return deployment, created, old_rss

    async def scale_rs(self, rs: pb.ReplicaSet, new_scale: int, deployment: pb.Deployment, *,
                       operation: str = "") -> tuple[bool, pb.ReplicaSet]:
        """Set an RS's replicas (and replica annotations); returns (scaled, rs as written)."""
        size_changed = rs.spec.replicas != new_scale
        desired = deployment.spec.replicas
        maximum = desired + util.max_surge(deployment)
        if not size_changed and not util.replica_annotations_changed(rs, desired, maximum):
            return False, rs
        new = copy_of(rs)
        new.spec.replicas = new_scale
        util.set_replica_annotations(new, desired, maximum)
        updated = await self.client.update(new)
        if size_changed:
            operation = operation or ("up" if new_scale > rs.spec.replicas else "down")
            self.recorder.record_nowait(deployment, type="Normal", reason="ScalingReplicaSet",
                                        message=f"Scaled {operation} replica set {rs.metadata.name} to {new_scale} "
                                                f"from {rs.spec.replicas}")
        return size_changed, updated

    async def scale_rs_and_record(self, rs: pb.ReplicaSet, new_scale: int,
                                  deployment: pb.Deployment) -> tuple[bool, pb.ReplicaSet]:
        if rs.spec.replicas == new_scale:
            return False, rs
        return await self.scale_rs(rs, new_scale, deployment)

    async def scale(self, deployment: pb.Deployment, new_rs: pb.ReplicaSet | None,
                    old_rss: list[pb.ReplicaSet]) -> None:
        """Scale for a changed spec.replicas, proportionally across the active RSs mid-rollout."""
        target = util.find_active_or_latest(new_rs, old_rss)
        if target is not None:
            if target.spec.replicas != deployment.spec.replicas:
                await self.scale_rs_and_record(target, deployment.spec.replicas, deployment)
            return
        if util.is_saturated(deployment, new_rs):
            for old in util.active_rss(old_rss):
                await self.scale_rs_and_record(old, 0, deployment)
            return
        if not util.is_rolling(deployment):
            return
        all_rss = util.active_rss([*old_rss, new_rs])
        all_replicas = util.total_replicas(all_rss)
        allowed = deployment.spec.replicas + util.max_surge(deployment) if deployment.spec.replicas > 0 else 0
        to_add = allowed - all_replicas
        if to_add > 0:
            # Larger first; among equals, newer first when scaling up.
            all_rss.sort(key=lambda rs: (-rs.spec.replicas, -rs.metadata.creation_timestamp.seconds))
            operation = "up"
        elif to_add < 0:
            # Larger first; among equals, older first when scaling down.
            all_rss.sort(key=lambda rs: (-rs.spec.replicas, rs.metadata.creation_timestamp.seconds))
            operation = "down"
        else:
            operation = ""
        sizes: dict[str, int] = {}
        added = 0
        for rs in all_rss:
            if to_add != 0:
                proportion = util.get_proportion(rs, deployment, to_add, added)
                sizes[rs.metadata.name] = rs.spec.replicas + proportion
                added += proportion
            else:
                sizes[rs.metadata.name] = rs.spec.replicas
        for i, rs in enumerate(all_rss):
            if i == 0 and to_add != 0:
                sizes[rs.metadata.name] = max(0, sizes[rs.metadata.name] + to_add - added)
            await self.scale_rs(rs, sizes[rs.metadata.name], deployment, operation=operation)

    def is_scaling_event(self, deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet]) -> bool:
        """Whether an active RS was sized for a different spec.replicas than the Deployment's now."""
        new_rs = util.find_new_rs(deployment, rss)
        old_rss = util.find_old_rss(new_rs, rss)
        for rs in util.active_rss([*old_rss, new_rs]):
            desired = rs.metadata.annotations.get(util.DESIRED_REPLICAS)
            if desired is not None and desired != str(deployment.spec.replicas):
                return True
        return False

    # -------------------------------------------------------------- syncs

    async def sync(self, deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet]) -> None:
        """Paused Deployments and scaling events: resize without rolling out, then status."""
        deployment, new_rs, old_rss = await self.get_all_rss(deployment, rss, create=False)
        await self.scale(deployment, new_rs, old_rss)
        if deployment.spec.paused:
            await self.cleanup(deployment, old_rss)
        await self.sync_status(deployment, [*old_rss, *([new_rs] if new_rs else [])], new_rs)

    async def sync_status_only(self, deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet]) -> None:
        deployment, new_rs, old_rss = await self.get_all_rss(deployment, rss, create=False)
        await self.sync_status(deployment, [*old_rss, *([new_rs] if new_rs else [])], new_rs)

    async def sync_status(self, deployment: pb.Deployment, all_rss: Sequence[pb.ReplicaSet],
                          new_rs: pb.ReplicaSet | None) -> None:
        status = calculate_status(all_rss, new_rs, deployment, self.clock())
        if status != deployment.status:
            await self.update_status(deployment, status)

    async def check_paused_conditions(self, deployment: pb.Deployment) -> pb.Deployment:
        """Progressing=Unknown DeploymentPaused/DeploymentResumed, so a pause never counts as no progress."""
        if not util.has_progress_deadline(deployment):
            return deployment
        condition = get_condition(deployment.status.conditions, "Progressing")
        if condition is not None and condition.reason == util.TIMED_OUT:
            return deployment
        paused_condition = condition is not None and condition.reason == util.PAUSED
        now = self.clock()
        status = copy_of(deployment.status)
        if deployment.spec.paused and not paused_condition:
            set_condition(status.conditions, new_condition("Progressing", "Unknown", util.PAUSED,
                                                           "Deployment is paused", now))
        elif not deployment.spec.paused and paused_condition:
            set_condition(status.conditions, new_condition("Progressing", "Unknown", util.RESUMED,
                                                           "Deployment is resumed", now))
        else:
            return deployment
        return await self.update_status(deployment, status)

    async def cleanup(self, deployment: pb.Deployment, old_rss: Sequence[pb.ReplicaSet]) -> None:
        """Delete the oldest fully scaled-down old RSs beyond revisionHistoryLimit."""
        if not deployment.spec.HasField("revision_history_limit"):
            return
        alive = [rs for rs in old_rss if not rs.metadata.HasField("deletion_timestamp")]
        excess = len(alive) - deployment.spec.revision_history_limit
        if excess <= 0:
            return
        alive.sort(key=lambda rs: (util.revision_of(rs), rs.metadata.creation_timestamp.seconds,
                                   rs.metadata.name))
        for rs in alive[:excess]:
            if rs.status.replicas != 0 or rs.spec.replicas != 0 or \
                    rs.metadata.generation > rs.status.observed_generation:
                continue
            try:
                await self.client.delete("replicasets", rs.metadata.name, namespace=rs.metadata.namespace,
                                         resource_version=rs.metadata.resource_version)
            except NotFoundError:
                continue

    def requeue_key(self, deployment: pb.Deployment, delay: float) -> None:
        self.requeue_after(object_key(deployment), delay)
