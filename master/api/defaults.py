"""Kubernetes' defaulting, applied by the API server to every object it is asked to write.

`apply_defaults(obj)` fills in place every field the user may leave out and the
rest of the system relies on (restartPolicy, probe periods, the rolling update
strategy, ...), so controllers and kubelets never re-derive defaults themselves.
It only ever fills fields that are empty/zero/unset, which makes it idempotent:
applying it to an already-defaulted (or stored) object changes nothing.

Proto3 has no "unset" for plain scalars, so 0/"" stand for unset except where the
proto declares the field `optional` (replicas, revisionHistoryLimit,
progressDeadlineSeconds), where presence is tested with HasField and an explicit
0 is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kybernetes.core.api.kinds import ApiObject, kind_of
from kybernetes.proto import objects_pb2 as pb

__all__ = ["apply_defaults", "default_image_pull_policy"]

DEFAULT_NAMESPACE = "default"
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_PROBE_PERIOD_SECONDS = 10
DEFAULT_PROBE_TIMEOUT_SECONDS = 1
DEFAULT_PROBE_SUCCESS_THRESHOLD = 1
DEFAULT_PROBE_FAILURE_THRESHOLD = 3
DEFAULT_REPLICAS = 1
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600


def apply_defaults(obj: ApiObject) -> None:
    """Fill Kubernetes' defaults into a concrete object (pb.Pod, pb.Deployment, ...) in place."""
    kind = kind_of(obj)
    if not obj.api_version:
        obj.api_version = kind.api_version
    if not obj.kind:
        obj.kind = kind.kind
    if kind.namespaced and not obj.metadata.namespace:
        obj.metadata.namespace = DEFAULT_NAMESPACE
    defaulter = _DEFAULTERS.get(type(obj))
    if defaulter is not None:
        defaulter(obj)


def default_image_pull_policy(image: str) -> str:
    """Always for ":latest" or untagged images (they move), IfNotPresent for a fixed tag or a digest."""
    name, _, digest = image.partition("@")
    last_component = name.rsplit("/", 1)[-1]
    # A ':' before the last '/' is a registry port, not a tag.
    _, has_tag, tag = last_component.rpartition(":")
    if has_tag:
        return "Always" if tag == "latest" else "IfNotPresent"
    return "IfNotPresent" if digest else "Always"


def _default_probe(probe: pb.Probe) -> None:
    if probe.HasField("http_get"):
        if not probe.http_get.path:
            probe.http_get.path = "/"
        if not probe.http_get.scheme:
            probe.http_get.scheme = "HTTP"
    if probe.period_seconds == 0:
        probe.period_seconds = DEFAULT_PROBE_PERIOD_SECONDS
    if probe.timeout_seconds == 0:
        probe.timeout_seconds = DEFAULT_PROBE_TIMEOUT_SECONDS
    if probe.success_threshold == 0:
        probe.success_threshold = DEFAULT_PROBE_SUCCESS_THRESHOLD
    if probe.failure_threshold == 0:
        probe.failure_threshold = DEFAULT_PROBE_FAILURE_THRESHOLD


def _default_container(container: pb.Container) -> None:
    if not container.image_pull_policy and container.image:
        container.image_pull_policy = default_image_pull_policy(container.image)
    for port in container.ports:
        if not port.protocol:
            port.protocol = "TCP"
    # Only probes the user wrote: an absent probe must stay absent (no probing).
    if container.HasField("liveness_probe"):
        _default_probe(container.liveness_probe)
    if container.HasField("readiness_probe"):
        _default_probe(container.readiness_probe)


def _default_pod_spec(spec: pb.PodSpec) -> None:
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if spec.termination_grace_period_seconds == 0:
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    for container in spec.containers:
        _default_container(container)
    for toleration in spec.tolerations:
        if not toleration.operator:
            toleration.operator = "Equal"


def _default_pod(pod: pb.Pod) -> None:
    _default_pod_spec(pod.spec)


def _default_int_or_percent(value: pb.IntOrString, default: str) -> None:
    if value.WhichOneof("value") is None:
        value.str_val = default


def _default_replica_set(replica_set: pb.ReplicaSet) -> None:
    spec = replica_set.spec
    if not spec.HasField("replicas"):
        spec.replicas = DEFAULT_REPLICAS
    _default_pod_spec(spec.template.spec)


def _default_deployment(deployment: pb.Deployment) -> None:
    spec = deployment.spec
    if not spec.HasField("replicas"):
        spec.replicas = DEFAULT_REPLICAS
    if not spec.strategy.type:
        spec.strategy.type = "RollingUpdate"
    if spec.strategy.type == "RollingUpdate":
        rolling_update = spec.strategy.rolling_update
        _default_int_or_percent(rolling_update.max_surge, DEFAULT_MAX_SURGE)
        _default_int_or_percent(rolling_update.max_unavailable, DEFAULT_MAX_UNAVAILABLE)
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = DEFAULT_PROGRESS_DEADLINE_SECONDS
    _default_pod_spec(spec.template.spec)


def _target_port_unset(target_port: pb.IntOrString) -> bool:
    # 0 and "" are what a YAML `targetPort:` with no value decodes to; both mean "same as port".
    which = target_port.WhichOneof("value")
    return (
        which is None
        or (which == "int_val" and target_port.int_val == 0)
        or (which == "str_val" and not target_port.str_val)
    )


def _default_service(service: pb.Service) -> None:
    spec = service.spec
    if not spec.type:
        spec.type = "ClusterIP"
    if not spec.session_affinity:
        spec.session_affinity = "None"
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        if _target_port_unset(port.target_port) and port.port:
            port.target_port.int_val = port.port


def _default_event(event: pb.Event) -> None:
    if not event.type:
        event.type = "Normal"
    if event.count == 0:
        event.count = 1


def _default_endpoints(endpoints: pb.Endpoints) -> None:
    for subset in endpoints.subsets:
        for port in subset.ports:
            if not port.protocol:
                port.protocol = "TCP"


def _default_binding(binding: pb.RoleBinding | pb.ClusterRoleBinding) -> None:
    if not binding.role_ref.api_group:
        binding.role_ref.api_group = "rbac.authorization.k8s.io"
    for subject in binding.subjects:
        if not subject.api_group and subject.kind in ("User", "Group"):
            subject.api_group = "rbac.authorization.k8s.io"


_DEFAULTERS: dict[type, Callable[[Any], None]] = {
    pb.RoleBinding: _default_binding,
    pb.ClusterRoleBinding: _default_binding,
    pb.Pod: _default_pod,
    pb.ReplicaSet: _default_replica_set,
    pb.Deployment: _default_deployment,
    pb.Service: _default_service,
    pb.Event: _default_event,
    pb.Endpoints: _default_endpoints,
}
