"""Deployment helpers with Kubernetes' exact semantics (pkg/controller/deployment/util).

Pure functions over protobuf objects for the controller: maxSurge/maxUnavailable resolution,
new/old ReplicaSet classification, and the completeness / progress / timeout predicates of a rollout.
Pod-template hashing and revision annotations live in `kybernetes.core.api.deployments` (the client's
rollback uses them too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from kybernetes.core.api.deployments import (
    CHANGE_CAUSE as CHANGE_CAUSE,
)
from kybernetes.core.api.deployments import (
    CONTROLLER_ANNOTATIONS as CONTROLLER_ANNOTATIONS,
)
from kybernetes.core.api.deployments import (
    DESIRED_REPLICAS as DESIRED_REPLICAS,
)
from kybernetes.core.api.deployments import (
    MAX_REPLICAS as MAX_REPLICAS,
)
from kybernetes.core.api.deployments import (  # re-exported: the controller's modules use util.X
    POD_TEMPLATE_HASH as POD_TEMPLATE_HASH,
)
from kybernetes.core.api.deployments import (
    REVISION as REVISION,
)
from kybernetes.core.api.deployments import (
    REVISION_HISTORY as REVISION_HISTORY,
)
from kybernetes.core.api.deployments import (
    compute_hash as compute_hash,
)
from kybernetes.core.api.deployments import (
    equal_ignore_hash as equal_ignore_hash,
)
from kybernetes.core.api.deployments import (
    last_revision as last_revision,
)
from kybernetes.core.api.deployments import (
    max_revision as max_revision,
)
from kybernetes.core.api.deployments import (
    revision_of as revision_of,
)
from kybernetes.core.api.deployments import (
    safe_encode as safe_encode,
)
from kybernetes.core.api.deployments import (
    template_without_hash as template_without_hash,
)
from kybernetes.core.api.objects import get_condition
from kybernetes.proto import objects_pb2 as pb

# Condition reasons (Kubernetes' deployment util constants).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
FAILED_RS_CREATE = "ReplicaSetCreateError"

# ---------------------------------------------------------------- replica sets


def _created(rs: pb.ReplicaSet) -> tuple[int, int, str]:
    ts = rs.metadata.creation_timestamp
    return ts.seconds, ts.nanos, rs.metadata.name


def by_creation(rss: Iterable[pb.ReplicaSet]) -> list[pb.ReplicaSet]:
    """Oldest first (ties by name), Kubernetes' ReplicaSetsByCreationTimestamp."""
    return sorted(rss, key=_created)


def find_new_rs(deployment: pb.Deployment, rss: Sequence[pb.ReplicaSet]) -> pb.ReplicaSet | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash label)."""
    for rs in by_creation(rss):
        if equal_ignore_hash(rs.spec.template, deployment.spec.template):
            return rs
    return None


def find_old_rss(new_rs: pb.ReplicaSet | None, rss: Sequence[pb.ReplicaSet]) -> list[pb.ReplicaSet]:
    uid = new_rs.metadata.uid if new_rs is not None else None
    return [rs for rs in rss if rs.metadata.uid != uid]


def replicas_of(rs: pb.ReplicaSet | None) -> int:
    return rs.spec.replicas if rs is not None else 0


def total_replicas(rss: Iterable[pb.ReplicaSet | None]) -> int:
    return sum(replicas_of(rs) for rs in rss)


def active_rss(rss: Iterable[pb.ReplicaSet | None]) -> list[pb.ReplicaSet]:
    return [rs for rs in rss if rs is not None and rs.spec.replicas > 0]


def find_active_or_latest(new_rs: pb.ReplicaSet | None, old_rss: Sequence[pb.ReplicaSet]) -> pb.ReplicaSet | None:
    """The one RS to scale when at most one is active: that one, else the newest (or the new RS)."""
    if new_rs is None and not old_rss:
        return None
    everything = sorted([*old_rss, *([new_rs] if new_rs is not None else [])], key=_created, reverse=True)
    active = active_rss(everything)
    if len(active) == 0:
        return new_rs if new_rs is not None else everything[0]
    if len(active) == 1:
        return active[0]
    return None


# ---------------------------------------------------------------- surge and unavailability


def _scaled(value: pb.IntOrString, total: int, *, round_up: bool) -> int:
    which = value.WhichOneof("value")
    if which is None:
        return 0
    if which == "int_val":
        return value.int_val
    percent = int(value.str_val.rstrip("%"))
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def is_rolling(deployment: pb.Deployment) -> bool:
    return deployment.spec.strategy.type in ("", "RollingUpdate")


def resolve_fenceposts(deployment: pb.Deployment) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts: surge rounds up, unavailable rounds down, never both 0."""
    ru = deployment.spec.strategy.rolling_update
    desired = deployment.spec.replicas
    surge = _scaled(ru.max_surge, desired, round_up=True)
    unavailable = _scaled(ru.max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: pb.Deployment) -> int:
    if not is_rolling(deployment):
        return 0
    return resolve_fenceposts(deployment)[0]


def max_unavailable(deployment: pb.Deployment) -> int:
    if not is_rolling(deployment) or deployment.spec.replicas == 0:
        return 0
    return min(resolve_fenceposts(deployment)[1], deployment.spec.replicas)


def new_rs_new_replicas(deployment: pb.Deployment, all_rss: Sequence[pb.ReplicaSet], new_rs: pb.ReplicaSet) -> int:
    """How many replicas the new RS may have now (Kubernetes' NewRSNewReplicas)."""
    if not is_rolling(deployment):
        return deployment.spec.replicas
    surge = resolve_fenceposts(deployment)[0]
    current = total_replicas(all_rss)
    max_total = deployment.spec.replicas + surge
    if current >= max_total:
        return new_rs.spec.replicas
    scale_up = min(max_total - current, deployment.spec.replicas - new_rs.spec.replicas)
    return new_rs.spec.replicas + max(0, scale_up)


def is_saturated(deployment: pb.Deployment, rs: pb.ReplicaSet | None) -> bool:
    if rs is None:
        return False
    try:
        desired = int(rs.metadata.annotations.get(DESIRED_REPLICAS, ""))
    except ValueError:
        return False
    return (rs.spec.replicas == deployment.spec.replicas and desired == deployment.spec.replicas
            and rs.status.available_replicas == deployment.spec.replicas)


def replica_annotations_changed(rs: pb.ReplicaSet, desired: int, maximum: int) -> bool:
    return (rs.metadata.annotations.get(DESIRED_REPLICAS) != str(desired)
            or rs.metadata.annotations.get(MAX_REPLICAS) != str(maximum))


def set_replica_annotations(rs: pb.ReplicaSet, desired: int, maximum: int) -> bool:
    changed = replica_annotations_changed(rs, desired, maximum)
    rs.metadata.annotations[DESIRED_REPLICAS] = str(desired)
    rs.metadata.annotations[MAX_REPLICAS] = str(maximum)
    return changed


def get_proportion(rs: pb.ReplicaSet, deployment: pb.Deployment, to_add: int, added: int) -> int:
    """This RS's share of a proportional scale (Kubernetes' GetProportion)."""
    if rs.spec.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _rs_fraction(rs, deployment)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _rs_fraction(rs: pb.ReplicaSet, deployment: pb.Deployment) -> int:
    if deployment.spec.replicas == 0:
        return -rs.spec.replicas
    deployment_replicas = deployment.spec.replicas + max_surge(deployment)
    try:
        annotated = int(rs.metadata.annotations.get(MAX_REPLICAS, ""))
    except ValueError:
        annotated = deployment.status.replicas
    if annotated <= 0:
        annotated = max(1, deployment.status.replicas)
    size = rs.spec.replicas * deployment_replicas / annotated
    return int(math.floor(size + 0.5)) - rs.spec.replicas


# ---------------------------------------------------------------- rollout predicates


def deployment_complete(deployment: pb.Deployment, status: pb.DeploymentStatus) -> bool:
    """Every replica updated and available, and the latest generation observed."""
    replicas = deployment.spec.replicas
    return (status.updated_replicas == replicas and status.replicas == replicas
            and status.available_replicas == replicas
            and status.observed_generation >= deployment.metadata.generation)


def deployment_progressing(deployment: pb.Deployment, new: pb.DeploymentStatus) -> bool:
    old = deployment.status
    old_old_replicas = old.replicas - old.updated_replicas
    new_old_replicas = new.replicas - new.updated_replicas
    return (new.updated_replicas > old.updated_replicas or new_old_replicas < old_old_replicas
            or new.ready_replicas > deployment.status.ready_replicas
            or new.available_replicas > deployment.status.available_replicas)


def has_progress_deadline(deployment: pb.Deployment) -> bool:
    return deployment.spec.HasField("progress_deadline_seconds") and deployment.spec.progress_deadline_seconds > 0


def deployment_timed_out(deployment: pb.Deployment, status: pb.DeploymentStatus, now: float) -> bool:
    if not has_progress_deadline(deployment):
        return False
    condition = get_condition(status.conditions, "Progressing")
    if condition is None:
        return False
    if condition.reason == NEW_RS_AVAILABLE:
        return False
    if condition.reason == TIMED_OUT:
        return True
    return condition.last_update_time.seconds + deployment.spec.progress_deadline_seconds < now
