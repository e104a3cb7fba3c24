"""Deployment revisions and pod-template hashing, with Kubernetes' exact semantics
(pkg/controller/deployment/util): shared by the Deployment controller on the master and by the client-side
`rollout history` / `rollout undo` (`kybernetes.ctl.client.rollout`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kybernetes.core.api.objects import copy_of
from kybernetes.proto import objects_pb2 as pb

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"

# Annotations of a ReplicaSet that are the controller's bookkeeping, not copied to or from Deployments.
CONTROLLER_ANNOTATIONS = frozenset({REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                                    "kubectl.kubernetes.io/last-applied-configuration"})

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
