"""The RollingUpdate strategy (Kubernetes' rolling.go): surge the new ReplicaSet, drain the old ones.

Each sync takes at most one kind of step, then writes status:
1. scale the new RS up, as far as maxSurge allows over spec.replicas
   (counting every RS's spec.replicas);
2. otherwise scale old RSs down, as far as maxUnavailable allows under
   spec.replicas (counting available replicas from RS status), first the
   old RSs' unhealthy replicas, then healthy ones, oldest RS first;
3. once complete, trim history.
Old RSs are only scaled down on statuses that have observed their RS's
latest spec, so a scale-down in flight is never counted twice as available.
"""

from __future__ import annotations

from collections.abc import Sequence

from kybernetes.master.controllers.deployment import util
from kybernetes.master.controllers.deployment.progress import sync_rollout_status
from kybernetes.master.controllers.deployment.sync import DeploymentSync
from kybernetes.proto import objects_pb2 as pb


async def rollout_rolling(ctx: DeploymentSync, deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet]) -> None:
    deployment, new_rs, old_rss = await ctx.get_all_rss(deployment, rss, create=True)
    assert new_rs is not None
    all_rss = [*old_rss, new_rs]
    if await _reconcile_new(ctx, deployment, all_rss, new_rs):
        await sync_rollout_status(ctx, deployment, all_rss, new_rs)
        return
    if await _reconcile_old(ctx, deployment, all_rss, util.active_rss(old_rss), new_rs):
        await sync_rollout_status(ctx, deployment, all_rss, new_rs)
        return
    if util.deployment_complete(deployment, deployment.status):
        await ctx.cleanup(deployment, old_rss)
    await sync_rollout_status(ctx, deployment, all_rss, new_rs)


async def _reconcile_new(ctx: DeploymentSync, deployment: pb.Deployment, all_rss: list[pb.ReplicaSet],
                         new_rs: pb.ReplicaSet) -> bool:
    desired = deployment.spec.replicas
    if new_rs.spec.replicas == desired:
        return False
    if new_rs.spec.replicas > desired:
        scaled, _ = await ctx.scale_rs_and_record(new_rs, desired, deployment)
        return scaled
    scaled, _ = await ctx.scale_rs_and_record(new_rs, util.new_rs_new_replicas(deployment, all_rss, new_rs),
                                              deployment)
    return scaled


def _status_current(rs: pb.ReplicaSet) -> bool:
    return rs.status.observed_generation >= rs.metadata.generation


async def _reconcile_old(ctx: DeploymentSync, deployment: pb.Deployment, all_rss: list[pb.ReplicaSet],
                         old_rss: list[pb.ReplicaSet], new_rs: pb.ReplicaSet) -> bool:
    if util.total_replicas(old_rss) == 0:
        return False
    if not all(_status_current(rs) for rs in all_rss if rs.spec.replicas > 0 or rs.status.replicas > 0):
        # An RS has not yet acted on its latest size: its availability is about to change. The status
        # update it writes next wakes us again.
        return False
    all_pods = util.total_replicas(all_rss)
    min_available = deployment.spec.replicas - util.max_unavailable(deployment)
    new_unavailable = new_rs.spec.replicas - new_rs.status.available_replicas
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    old_rss, cleaned = await _cleanup_unhealthy(ctx, deployment, old_rss, max_scaled_down)
    scaled = await _scale_down_old(ctx, deployment, [*old_rss, new_rs], old_rss)
    return cleaned + scaled > 0


async def _cleanup_unhealthy(ctx: DeploymentSync, deployment: pb.Deployment, old_rss: list[pb.ReplicaSet],
                             max_cleanup: int) -> tuple[list[pb.ReplicaSet], int]:
    """Scale down old RSs' unavailable replicas first: removing them costs no availability."""
    old_rss = util.by_creation(old_rss)
    total = 0
    for i, rs in enumerate(old_rss):
        if total >= max_cleanup:
            break
        if rs.spec.replicas == 0 or rs.spec.replicas == rs.status.available_replicas:
            continue
        count = min(max_cleanup - total, rs.spec.replicas - rs.status.available_replicas)
        _, old_rss[i] = await ctx.scale_rs_and_record(rs, rs.spec.replicas - count, deployment)
        total += count
    return old_rss, total


async def _scale_down_old(ctx: DeploymentSync, deployment: pb.Deployment, all_rss: list[pb.ReplicaSet],
                          old_rss: list[pb.ReplicaSet]) -> int:
    min_available = deployment.spec.replicas - util.max_unavailable(deployment)
    available = sum(rs.status.available_replicas for rs in all_rss)
    if available <= min_available:
        return 0
    to_scale_down = available - min_available
    total = 0
    for rs in util.by_creation(old_rss):
        if total >= to_scale_down:
            break
        if rs.spec.replicas == 0:
            continue
        count = min(rs.spec.replicas, to_scale_down - total)
        await ctx.scale_rs_and_record(rs, rs.spec.replicas - count, deployment)
        total += count
    return total
