"""Rollout progress: the Progressing condition and the progress deadline (Kubernetes' progress.go).

While a rollout moves (more updated, ready or available replicas, fewer old
ones) Progressing is True with reason ReplicaSetUpdated and a fresh
lastUpdateTime. When it completes, reason NewReplicaSetAvailable. When
progressDeadlineSeconds pass after the last progress without completion,
Progressing becomes False with reason ProgressDeadlineExceeded, and
`kybctl rollout status` exits 1. The controller re-queues a stuck Deployment
for the moment its deadline passes, so the condition flips on time without
any event.
"""

from __future__ import annotations

from collections.abc import Sequence

from kybernetes.core.api.objects import get_condition, remove_condition, set_condition
from kybernetes.master.controllers.deployment import util
from kybernetes.master.controllers.deployment.sync import DeploymentSync, calculate_status, new_condition
from kybernetes.proto import objects_pb2 as pb


async def sync_rollout_status(ctx: DeploymentSync, deployment: pb.Deployment, all_rss: Sequence[pb.ReplicaSet],
                              new_rs: pb.ReplicaSet | None) -> None:
    now = ctx.clock()
    status = calculate_status(all_rss, new_rs, deployment, now)
    if not util.has_progress_deadline(deployment):
        remove_condition(status.conditions, "Progressing")
    current = get_condition(deployment.status.conditions, "Progressing")
    complete_already = status.replicas == status.updated_replicas and current is not None and \
        current.reason == util.NEW_RS_AVAILABLE
    if util.has_progress_deadline(deployment) and not complete_already:
        name = f'ReplicaSet "{new_rs.metadata.name}"' if new_rs is not None else \
            f'Deployment "{deployment.metadata.name}"'
        if util.deployment_complete(deployment, status):
            set_condition(status.conditions, new_condition("Progressing", "True", util.NEW_RS_AVAILABLE,
                                                           f"{name} has successfully progressed.", now))
        elif util.deployment_progressing(deployment, status):
            condition = new_condition("Progressing", "True", util.RS_UPDATED, f"{name} is progressing.", now)
            if current is not None:
                if current.status == "True":
                    condition.last_transition_time.CopyFrom(current.last_transition_time)
                remove_condition(status.conditions, "Progressing")
            set_condition(status.conditions, condition)
        elif util.deployment_timed_out(deployment, status, now):
            set_condition(status.conditions, new_condition("Progressing", "False", util.TIMED_OUT,
                                                           f"{name} has timed out progressing.", now))
    failure = _replica_failure(all_rss, new_rs)
    if failure is not None:
        set_condition(status.conditions, failure)
    else:
        remove_condition(status.conditions, "ReplicaFailure")
    if status == deployment.status:
        _requeue_stuck(ctx, deployment, status, now)
        return
    await ctx.update_status(deployment, status)


def _replica_failure(all_rss: Sequence[pb.ReplicaSet], new_rs: pb.ReplicaSet | None) -> pb.Condition | None:
    ordered = ([new_rs] if new_rs is not None else []) + [rs for rs in all_rss if rs is not new_rs]
    for rs in ordered:
        condition = get_condition(rs.status.conditions, "ReplicaFailure")
        if condition is not None and condition.status == "True":
            out = pb.Condition()
            out.CopyFrom(condition)
            return out
    return None


def _requeue_stuck(ctx: DeploymentSync, deployment: pb.Deployment, status: pb.DeploymentStatus, now: float) -> None:
    """Look at a Deployment again when its progress deadline passes."""
    current = get_condition(deployment.status.conditions, "Progressing")
    if not util.has_progress_deadline(deployment) or current is None:
        return
    if util.deployment_complete(deployment, status) or current.reason == util.TIMED_OUT:
        return
    after = current.last_update_time.seconds + deployment.spec.progress_deadline_seconds - now
    ctx.requeue_key(deployment, max(0.0, after) + 1.0)
