"""Deployment helpers with Kubernetes' exact semantics (pkg/controller/deployment/util).

Pure functions over protobuf objects, shared by the controller and by the
client-side rollback helper: pod-template hashing, revision annotations,
maxSurge/maxUnavailable resolution, new/old ReplicaSet classification, and
the completeness / progress / timeout predicates of a rollout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from master.controllers.podutil import copy_of, get_condition
from proto import objects_pb2 as pb

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"

# Annotations of a ReplicaSet that are the controller's bookkeeping, not copied to or from Deployments.
CONTROLLER_ANNOTATIONS = frozenset({REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                                    "kubectl.kubernetes.io/last-applied-configuration"})

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

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def _fnv32a(data: bytes, h: int = _FNV_OFFSET) -> int:
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """Kubernetes' rand.SafeEncodeString: each byte mapped into an alphabet without vowels or 0/1/3."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def compute_hash(template: pb.PodTemplateSpec, collision_count: int = 0) -> str:
    """The pod-template-hash: fnv32a of the template's canonical bytes (and the collision count), encoded safely."""
    h = _fnv32a(template.SerializeToString(deterministic=True))
    if collision_count:
        h = _fnv32a(collision_count.to_bytes(4, "little"), h)
    return safe_encode(str(h))


def template_without_hash(template: pb.PodTemplateSpec) -> pb.PodTemplateSpec:
    out = copy_of(template)
    out.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    return out


def equal_ignore_hash(a: pb.PodTemplateSpec, b: pb.PodTemplateSpec) -> bool:
    """Templates equal apart from the pod-template-hash label."""
    return template_without_hash(a) == template_without_hash(b)


# ---------------------------------------------------------------- revisions


def revision_of(obj: pb.ReplicaSet | pb.Deployment) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: Iterable[pb.ReplicaSet]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def last_revision(rss: Iterable[pb.ReplicaSet]) -> int:
    """The second highest revision: where `rollout undo` goes."""
    revisions = sorted({revision_of(rs) for rs in rss})
    return revisions[-2] if len(revisions) >= 2 else 0


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
