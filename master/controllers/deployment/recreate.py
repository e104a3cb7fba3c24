"""The Recreate strategy (Kubernetes' recreate.go): every old pod gone before any new one starts.

Scale all old ReplicaSets to zero; wait until none of their pods is left in a
non-terminal phase (terminating pods count: their containers may still run);
then create or scale the new ReplicaSet to spec.replicas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kybernetes.master.controllers.deployment import util
from kybernetes.master.controllers.deployment.progress import sync_rollout_status
from kybernetes.master.controllers.deployment.sync import DeploymentSync
from kybernetes.proto import objects_pb2 as pb


def old_pods_running(new_rs: pb.ReplicaSet | None, old_rss: Sequence[pb.ReplicaSet],
                     pods_by_rs: Mapping[str, Sequence[pb.Pod]]) -> bool:
    if sum(rs.status.replicas for rs in old_rss) > 0:
        return True
    new_uid = new_rs.metadata.uid if new_rs is not None else None
    for uid, pods in pods_by_rs.items():
        if uid == new_uid:
            continue
        if any(pod.status.phase not in ("Succeeded", "Failed") for pod in pods):
            return True
    return False


async def rollout_recreate(ctx: DeploymentSync, deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet],
                           pods_by_rs: Mapping[str, Sequence[pb.Pod]]) -> None:
    deployment, new_rs, old_rss = await ctx.get_all_rss(deployment, rss, create=False)
    all_rss = [*old_rss, *([new_rs] if new_rs else [])]
    scaled_down = False
    for rs in util.active_rss(old_rss):
        scaled, _ = await ctx.scale_rs_and_record(rs, 0, deployment)
        scaled_down = scaled_down or scaled
    if scaled_down or old_pods_running(new_rs, old_rss, pods_by_rs):
        await sync_rollout_status(ctx, deployment, all_rss, new_rs)
        return
    if new_rs is None:
        deployment, new_rs, old_rss = await ctx.get_all_rss(deployment, rss, create=True)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
    if new_rs is not None:
        await ctx.scale_rs_and_record(new_rs, deployment.spec.replicas, deployment)
    if util.deployment_complete(deployment, deployment.status):
        await ctx.cleanup(deployment, old_rss)
    await sync_rollout_status(ctx, deployment, all_rss, new_rs)
