"""Pods: the pod spec (containers, images, ports, env, resources, probes, tolerations), pod status, and
what an update may change.

`validate_pod_spec` is shared with the workload kinds, whose pod templates
carry a pod spec (`kybernetes.master.api.validation.apps`). Port rules come from
`ports`, taint effects from `nodes`, and the name and image syntax from
`kybernetes.core.api.formats`.

Addresses the kubelet acts on are judged against the cluster's pod range
(`network`): a probe's `httpGet.host` / `tcpSocket.host`, when given, must be an
IPv4 address in it (empty means the pod IP, the default), so no pod author can
make a kubelet connect anywhere from the Node's namespace; `status.podIP` is an
IPv4 address in it, except for a hostNetwork pod, whose IP is its Node's
(`status.hostIP`).

Updates follow Kubernetes' ValidatePodUpdate: a pod's spec is fixed once it
exists, except container images, added tolerations, and nodeName, which is set
once (the binding) and never changed after; the router would otherwise move a
running pod. Anything else is `spec: Forbidden: pod updates may not change
fields other than ...`, naming the fields that changed.
"""

from __future__ import annotations

from decimal import Decimal

from kybernetes.core.api import formats
from kybernetes.core.api.quantity import QuantityError, parse_quantity
from kybernetes.master.api.validation.errors import Errors
from kybernetes.master.api.validation.meta import validate_labels
from kybernetes.master.api.validation.network import ClusterNetwork, pod_range_ip
from kybernetes.master.api.validation.nodes import TAINT_EFFECTS
from kybernetes.master.api.validation.ports import PROTOCOLS, validate_int_or_string_port, validate_port_number
from kybernetes.proto import objects_pb2 as pb

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_RESOURCE_NAMES = ("cpu", "memory")
_TOLERATION_OPERATORS = ("Equal", "Exists")
_HTTP_SCHEMES = ("HTTP", "HTTPS")
_POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _image(errors: Errors, path: str, image: str) -> None:
    if not image:
        errors.required(path)
        return
    errors.check(path, image, formats.image_reference)


def _resources(errors: Errors, path: str, resources: pb.ResourceRequirements) -> None:
    parsed: dict[str, dict[str, Decimal]] = {}
    for section, values in (("requests", resources.requests), ("limits", resources.limits)):
        parsed[section] = {}
        for name, text in values.items():
            item_path = f"{path}.{section}[{name}]"
            if name not in _RESOURCE_NAMES:
                errors.unsupported(item_path, name, _RESOURCE_NAMES)
                continue
            try:
                quantity = parse_quantity(text)
            except QuantityError as exc:
                errors.invalid(item_path, text, str(exc))
                continue
            if quantity < 0:
                errors.invalid(item_path, text, "must be greater than or equal to 0")
                continue
            parsed[section][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            errors.invalid(
                f"{path}.requests[{name}]",
                resources.requests[name],
                f"must be less than or equal to {name} limit of {resources.limits[name]}",
            )


def _probe(errors: Errors, path: str, probe: pb.Probe, *, liveness: bool, network: ClusterNetwork) -> None:
    handlers = [field for field in ("exec", "http_get", "tcp_socket") if probe.HasField(field)]
    if not handlers:
        errors.required(path, "must specify a handler type")
    for extra in handlers[1:]:
        errors.forbidden(f"{path}.{_CAMEL[extra]}", "may not specify more than 1 handler type")
    if probe.HasField("exec") and not probe.exec.command:
        errors.required(f"{path}.exec.command")
    if probe.HasField("http_get"):
        validate_int_or_string_port(errors, f"{path}.httpGet.port", probe.http_get.port, required=True)
        errors.enum(f"{path}.httpGet.scheme", probe.http_get.scheme, _HTTP_SCHEMES)
        if probe.http_get.host:
            pod_range_ip(errors, f"{path}.httpGet.host", probe.http_get.host, network)
    if probe.HasField("tcp_socket"):
        validate_int_or_string_port(errors, f"{path}.tcpSocket.port", probe.tcp_socket.port, required=True)
        if probe.tcp_socket.host:
            pod_range_ip(errors, f"{path}.tcpSocket.host", probe.tcp_socket.host, network)
    for field in (
        "initial_delay_seconds",
        "period_seconds",
        "timeout_seconds",
        "success_threshold",
        "failure_threshold",
    ):
        errors.non_negative(f"{path}.{_CAMEL[field]}", getattr(probe, field))
    # Kubernetes: a liveness probe that needs several successes would keep killing a recovering container.
    if liveness and probe.success_threshold not in (0, 1):
        errors.invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1")


_CAMEL = {
    "exec": "exec",
    "http_get": "httpGet",
    "tcp_socket": "tcpSocket",
    "initial_delay_seconds": "initialDelaySeconds",
    "period_seconds": "periodSeconds",
    "timeout_seconds": "timeoutSeconds",
    "success_threshold": "successThreshold",
    "failure_threshold": "failureThreshold",
}


# Localhost profiles (files on the Node) are not supported: RuntimeDefault is containerd's profile.
SECCOMP_TYPES = ("RuntimeDefault", "Unconfined")


def _container(errors: Errors, path: str, container: pb.Container, port_names: set[str], *,
               network: ClusterNetwork) -> None:
    if not container.name:
        errors.required(f"{path}.name")
    else:
        errors.check(f"{path}.name", container.name, formats.dns1123_label)
    _image(errors, f"{path}.image", container.image)
    errors.enum(f"{path}.imagePullPolicy", container.image_pull_policy, _PULL_POLICIES)
    errors.enum(f"{path}.securityContext.seccompProfile.type", container.security_context.seccomp_profile.type,
                SECCOMP_TYPES)
    for i, port in enumerate(container.ports):
        port_path = f"{path}.ports[{i}]"
        if port.name:
            errors.check(f"{port_path}.name", port.name, formats.iana_svc_name)
            if port.name in port_names:
                errors.duplicate(f"{port_path}.name", port.name)
            port_names.add(port.name)
        if port.container_port == 0:
            errors.required(f"{port_path}.containerPort")
        else:
            validate_port_number(errors, f"{port_path}.containerPort", port.container_port)
        if port.host_port != 0:
            validate_port_number(errors, f"{port_path}.hostPort", port.host_port)
        errors.enum(f"{port_path}.protocol", port.protocol, PROTOCOLS)
    for i, env in enumerate(container.env):
        env_path = f"{path}.env[{i}].name"
        if not env.name:
            errors.required(env_path)
        else:
            errors.check(env_path, env.name, formats.env_var_name)
    if container.HasField("resources"):
        _resources(errors, f"{path}.resources", container.resources)
    if container.HasField("liveness_probe"):
        _probe(errors, f"{path}.livenessProbe", container.liveness_probe, liveness=True, network=network)
    if container.HasField("readiness_probe"):
        _probe(errors, f"{path}.readinessProbe", container.readiness_probe, liveness=False, network=network)


def _toleration(errors: Errors, path: str, toleration: pb.Toleration) -> None:
    operator = toleration.operator or "Equal"
    if toleration.key:
        errors.check(f"{path}.key", toleration.key, formats.qualified_name)
    elif operator == "Equal":
        errors.invalid(
            f"{path}.operator",
            operator,
            'operator must be Exists when `key` is empty, which means "match all values and all keys"',
        )
    if toleration.operator and toleration.operator not in _TOLERATION_OPERATORS:
        errors.unsupported(f"{path}.operator", toleration.operator, _TOLERATION_OPERATORS)
    elif operator == "Exists" and toleration.value:
        errors.invalid(f"{path}.operator", toleration.value, "value must be empty when `operator` is 'Exists'")
    elif operator == "Equal":
        errors.check(f"{path}.value", toleration.value, formats.label_value)
    errors.enum(f"{path}.effect", toleration.effect, TAINT_EFFECTS)
    if toleration.has_toleration_seconds and toleration.effect != "NoExecute":
        errors.invalid(
            f"{path}.effect", toleration.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"
        )


def validate_pod_spec(errors: Errors, path: str, spec: pb.PodSpec, *, network: ClusterNetwork) -> None:
    if not spec.containers:
        errors.required(f"{path}.containers")
    container_names: set[str] = set()
    port_names: set[str] = set()
    for i, container in enumerate(spec.containers):
        container_path = f"{path}.containers[{i}]"
        if container.name:
            if container.name in container_names:
                errors.duplicate(f"{container_path}.name", container.name)
            container_names.add(container.name)
        _container(errors, container_path, container, port_names, network=network)
    errors.enum(f"{path}.restartPolicy", spec.restart_policy, _RESTART_POLICIES)
    errors.enum(f"{path}.securityContext.seccompProfile.type", spec.security_context.seccomp_profile.type,
                SECCOMP_TYPES)
    errors.non_negative(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds)
    for i, toleration in enumerate(spec.tolerations):
        _toleration(errors, f"{path}.tolerations[{i}]", toleration)
    validate_labels(errors, f"{path}.nodeSelector", spec.node_selector)
    if spec.node_name:
        errors.check(f"{path}.nodeName", spec.node_name, formats.dns1123_subdomain)
    if spec.hostname:
        errors.check(f"{path}.hostname", spec.hostname, formats.dns1123_label)


def validate_pod(errors: Errors, pod: pb.Pod, old: pb.Pod | None, *,
                 network: ClusterNetwork) -> None:
    validate_pod_spec(errors, "spec", pod.spec, network=network)
    _status(errors, pod, network=network)
    if old is not None:
        _spec_update(errors, pod.spec, old.spec)


def _status(errors: Errors, pod: pb.Pod, *, network: ClusterNetwork) -> None:
    status = pod.status
    errors.enum("status.phase", status.phase, _POD_PHASES)
    if status.host_ip:
        errors.check("status.hostIP", status.host_ip, formats.ipv4_address)
    if not status.pod_ip:
        return
    if not pod.spec.host_network:
        pod_range_ip(errors, "status.podIP", status.pod_ip, network)
    elif errors.check("status.podIP", status.pod_ip, formats.ipv4_address) and status.host_ip and \
            status.pod_ip != status.host_ip:
        errors.invalid("status.podIP", status.pod_ip, "must be equal to status.hostIP for a hostNetwork pod")


# What Kubernetes lets a pod update change, as its message names them (we have no initContainers and no
# activeDeadlineSeconds; nodeName is ours: the scheduler binds by update, once).
_POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`, "
                   "`spec.tolerations` (only additions to existing tolerations) and `spec.nodeName` "
                   "(only to bind an unbound pod)")


def _spec_update(errors: Errors, spec: pb.PodSpec, old: pb.PodSpec) -> None:
    """Kubernetes' ValidatePodUpdate: the new spec, with the mutable fields taken from the old, must equal it."""
    if old.node_name and spec.node_name != old.node_name:
        errors.invalid("spec.nodeName", spec.node_name, f'field is immutable once set (bound to "{old.node_name}")')
    mutable = pb.PodSpec()
    mutable.CopyFrom(spec)
    mutable.node_name = old.node_name
    if len(mutable.containers) == len(old.containers):
        for container, old_container in zip(mutable.containers, old.containers, strict=True):
            container.image = old_container.image
    if all(toleration in spec.tolerations for toleration in old.tolerations):
        del mutable.tolerations[:]
        mutable.tolerations.extend(old.tolerations)
    else:
        errors.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
        del mutable.tolerations[:]
        mutable.tolerations.extend(old.tolerations)
    if mutable != old:
        changed = sorted(f"spec.{field.json_name}" for field in pb.PodSpec.DESCRIPTOR.fields
                         if getattr(mutable, field.name) != getattr(old, field.name))
        errors.forbidden("spec", f"{_POD_UPDATE_MSG}; changed: {', '.join(changed)}")
