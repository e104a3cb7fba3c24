"""Small, shared facts about objects: pod readiness and availability, conditions, controller references.

These are Kubernetes' definitions (pkg/api/v1/pod, pkg/controller): a pod is
*active* while it is neither terminal (Succeeded/Failed) nor terminating
(deletionTimestamp set), *ready* when its Ready condition is True, and
*available* once it has been ready for minReadySeconds. A terminating pod is
never active, so it never counts towards replicas or availability, and a
controller replaces it at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar, overload

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.core.api.kinds import ApiObject
from kybernetes.proto import objects_pb2 as pb

API_VERSIONS = {"ReplicaSet": "apps/v1", "Deployment": "apps/v1", "Pod": "v1", "Node": "v1"}


def now_timestamp(clock: float | None = None) -> Timestamp:
    """A second-precision timestamp (Kubernetes' metav1.Time precision)."""
    return Timestamp(seconds=int(time.time() if clock is None else clock))


def is_terminating(obj: ApiObject) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


def is_pod_active(pod: pb.Pod) -> bool:
    """Counted by controllers: not terminal and not terminating."""
    return pod.status.phase not in ("Succeeded", "Failed") and not pod.metadata.HasField("deletion_timestamp")


def get_condition(conditions: Iterable[pb.Condition], kind: str) -> pb.Condition | None:
    for condition in conditions:
        if condition.type == kind:
            return condition
    return None


def is_pod_ready(pod: pb.Pod) -> bool:
    condition = get_condition(pod.status.conditions, "Ready")
    return condition is not None and condition.status == "True"


def ready_since(pod: pb.Pod) -> float | None:
    """When the pod last became ready (epoch seconds), or None when it is not ready."""
    condition = get_condition(pod.status.conditions, "Ready")
    if condition is None or condition.status != "True":
        return None
    stamp = condition.last_transition_time
    return stamp.seconds + stamp.nanos / 1e9


def is_pod_available(pod: pb.Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least minReadySeconds (and active)."""
    if not is_pod_active(pod):
        return False
    since = ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds <= 0 or since + min_ready_seconds <= now


def controller_of(obj: ApiObject) -> pb.OwnerReference | None:
    """The ownerReference with controller=true, if any."""
    for ref in obj.metadata.owner_references:
        if ref.controller:
            return ref
    return None


def controller_ref(owner: ApiObject, kind: str) -> pb.OwnerReference:
    """The controller reference an owner puts on what it creates or adopts."""
    return pb.OwnerReference(api_version=API_VERSIONS[kind], kind=kind, name=owner.metadata.name,
                             uid=owner.metadata.uid, controller=True, block_owner_deletion=True)


_M = TypeVar("_M", bound=Message)


@overload
def copy_of(obj: _M) -> _M: ...
@overload
def copy_of(obj: ApiObject) -> ApiObject: ...
def copy_of(obj: Any) -> Any:
    """A deep copy of a message (cached objects are shared and must not be changed in place)."""
    out = type(obj)()
    out.CopyFrom(obj)
    return out


def set_condition(conditions: Any, new: pb.Condition) -> bool:
    """Set a condition in a repeated field, keeping lastTransitionTime when the status is unchanged.

    Returns whether anything changed. Kubernetes' SetCondition does not touch a
    condition whose status and reason are the same.
    """
    current = get_condition(conditions, new.type)
    if current is not None and current.status == new.status and current.reason == new.reason:
        return False
    if current is not None and current.status == new.status:
        new.last_transition_time.CopyFrom(current.last_transition_time)
    remaining = [c for c in conditions if c.type != new.type]
    del conditions[:]
    conditions.extend(remaining)
    conditions.append(new)
    return True


def remove_condition(conditions: Any, kind: str) -> bool:
    remaining = [c for c in conditions if c.type != kind]
    if len(remaining) == len(conditions):
        return False
    del conditions[:]
    conditions.extend(remaining)
    return True
