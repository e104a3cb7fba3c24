"""Object builders for the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from kybernetes.proto import objects_pb2 as pb


def make_pod(name: str, *, namespace: str = "default", labels: dict[str, str] | None = None, node: str = "",
             image: str = "kyb/busybox:1", command: Sequence[str] = (), args: Sequence[str] = (),
             restart_policy: str = "", grace_seconds: int = 0, host_network: bool = False,
             node_selector: dict[str, str] | None = None, finalizers: Sequence[str] = (), cpu: str = "",
             memory: str = "", host_port: int = 0, **container_fields: object) -> pb.Pod:
    """A valid pod with one container named "main".

    Left at their zero values, `restart_policy` and `grace_seconds` get the API's defaults (Always, 30 s):
    pods that really run pass a short grace period. `cpu`/`memory` are resource requests, `host_port` maps
    container port 80. Any other keyword sets that field of the container: a message is copied, a repeated
    field extended, a scalar assigned (e.g. `readiness_probe=probe`, `working_dir="/bin"`).
    """
    pod = pb.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.labels.update(labels or {})
    pod.metadata.finalizers.extend(finalizers)
    pod.spec.node_name = node
    pod.spec.node_selector.update(node_selector or {})
    pod.spec.restart_policy = restart_policy
    pod.spec.termination_grace_period_seconds = grace_seconds
    pod.spec.host_network = host_network
    container = pod.spec.containers.add(name="main", image=image, command=list(command), args=list(args))
    if cpu:
        container.resources.requests["cpu"] = cpu
    if memory:
        container.resources.requests["memory"] = memory
    if host_port:
        container.ports.add(container_port=80, host_port=host_port)
    for key, value in container_fields.items():
        field = getattr(container, key)
        if hasattr(field, "CopyFrom"):
            field.CopyFrom(value)
        elif hasattr(field, "extend"):
            field.extend(value)
        else:
            setattr(container, key, value)
    return pod


__all__ = ["make_deployment", "make_pod"]


def make_deployment(name: str, *, replicas: int = 3, image: str = "kyb/hello:v1", namespace: str = "default",
                    command: Sequence[str] = (), host_network: bool = False, strategy: str = "RollingUpdate",
                    max_surge: int | str = 1, max_unavailable: int | str = 0, min_ready_seconds: int = 0,
                    progress_deadline: int | None = None, revision_history_limit: int | None = None,
                    cpu: str = "", grace_seconds: int = 1) -> pb.Deployment:
    """A Deployment of `replicas` single-container pods ("main") labelled and selected by app=<name>.

    maxSurge and maxUnavailable take a number or a percentage ("25%"); they are set only for RollingUpdate.
    """
    d = pb.Deployment()
    d.metadata.name = name
    d.metadata.namespace = namespace
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    container = d.spec.template.spec.containers.add(name="main", image=image)
    container.command.extend(command)
    if cpu:
        container.resources.requests["cpu"] = cpu
    d.spec.template.spec.host_network = host_network
    d.spec.template.spec.termination_grace_period_seconds = grace_seconds
    d.spec.strategy.type = strategy
    if strategy == "RollingUpdate":
        for field, value in ((d.spec.strategy.rolling_update.max_surge, max_surge),
                             (d.spec.strategy.rolling_update.max_unavailable, max_unavailable)):
            if isinstance(value, int):
                field.int_val = value
            else:
                field.str_val = value
    d.spec.min_ready_seconds = min_ready_seconds
    if progress_deadline is not None:
        d.spec.progress_deadline_seconds = progress_deadline
    if revision_history_limit is not None:
        d.spec.revision_history_limit = revision_history_limit
    return d
