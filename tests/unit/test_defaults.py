"""Kubernetes' defaults: each one, that explicit values survive, and idempotence."""

import pytest

from kybernetes.master.api.defaults import apply_defaults, default_image_pull_policy
from kybernetes.proto import objects_pb2 as pb


def _container(**fields) -> pb.Container:
    return pb.Container(name="app", image="busybox:1.36", **fields)


def _pod() -> pb.Pod:
    pod = pb.Pod()
    pod.metadata.name = "web"
    pod.spec.containers.append(_container())
    return pod


def _deployment() -> pb.Deployment:
    deployment = pb.Deployment()
    deployment.metadata.name = "web"
    deployment.spec.selector.match_labels["app"] = "web"
    deployment.spec.template.metadata.labels["app"] = "web"
    deployment.spec.template.spec.containers.append(_container())
    return deployment


def _replica_set() -> pb.ReplicaSet:
    replica_set = pb.ReplicaSet()
    replica_set.metadata.name = "web"
    replica_set.spec.selector.match_labels["app"] = "web"
    replica_set.spec.template.metadata.labels["app"] = "web"
    replica_set.spec.template.spec.containers.append(_container())
    return replica_set


def _service() -> pb.Service:
    service = pb.Service()
    service.metadata.name = "web"
    service.spec.selector["app"] = "web"
    service.spec.ports.append(pb.ServicePort(port=80))
    return service


def _event() -> pb.Event:
    event = pb.Event()
    event.metadata.name = "web.1"
    event.involved_object.kind = "Pod"
    event.involved_object.name = "web"
    return event


def _node() -> pb.Node:
    node = pb.Node()
    node.metadata.name = "node-1"
    return node


def _endpoints() -> pb.Endpoints:
    endpoints = pb.Endpoints()
    endpoints.metadata.name = "web"
    endpoints.subsets.add().ports.add(port=8080)
    return endpoints


ALL_FACTORIES = [_pod, _deployment, _replica_set, _service, _event, _node, _endpoints]


@pytest.mark.parametrize(
    ("factory", "api_version", "kind"),
    [
        (_pod, "v1", "Pod"),
        (_deployment, "apps/v1", "Deployment"),
        (_replica_set, "apps/v1", "ReplicaSet"),
        (_service, "v1", "Service"),
        (_event, "v1", "Event"),
        (_node, "v1", "Node"),
        (_endpoints, "v1", "Endpoints"),
    ],
)
def test_type_meta_from_registry(factory, api_version, kind):
    obj = factory()
    apply_defaults(obj)
    assert (obj.api_version, obj.kind) == (api_version, kind)


@pytest.mark.parametrize("factory", [_pod, _deployment, _replica_set, _service, _event, _endpoints])
def test_namespace_defaults_for_namespaced_kinds(factory):
    obj = factory()
    apply_defaults(obj)
    assert obj.metadata.namespace == "default"
    obj = factory()
    obj.metadata.namespace = "prod"
    apply_defaults(obj)
    assert obj.metadata.namespace == "prod"


def test_node_gets_no_namespace_and_nothing_else():
    node = _node()
    apply_defaults(node)
    expected = _node()
    expected.api_version, expected.kind = "v1", "Node"
    assert node == expected


@pytest.mark.parametrize("factory", ALL_FACTORIES)
def test_idempotent(factory):
    obj = factory()
    apply_defaults(obj)
    once = obj.SerializeToString(deterministic=True)
    apply_defaults(obj)
    assert obj.SerializeToString(deterministic=True) == once


def test_idempotent_on_a_pod_with_every_defaulted_part():
    pod = _pod()
    container = pod.spec.containers[0]
    container.ports.add(container_port=80)
    container.liveness_probe.http_get.port.int_val = 80
    container.readiness_probe.tcp_socket.port.str_val = "http"
    pod.spec.tolerations.add(key="dedicated")
    apply_defaults(pod)
    once = pod.SerializeToString(deterministic=True)
    apply_defaults(pod)
    assert pod.SerializeToString(deterministic=True) == once


def test_pod_spec_defaults():
    pod = _pod()
    apply_defaults(pod)
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.termination_grace_period_seconds == 30


def test_pod_spec_explicit_values_kept():
    pod = _pod()
    pod.spec.restart_policy = "Never"
    pod.spec.termination_grace_period_seconds = 5
    apply_defaults(pod)
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.termination_grace_period_seconds == 5


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("localhost:5000/busybox", "Always"),
        ("localhost:5000/busybox:latest", "Always"),
        ("busybox:1.36", "IfNotPresent"),
        ("localhost:5000/team/busybox:1.36", "IfNotPresent"),
        ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
        ("busybox:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_image_pull_policy(image, policy):
    assert default_image_pull_policy(image) == policy
    pod = _pod()
    pod.spec.containers[0].image = image
    apply_defaults(pod)
    assert pod.spec.containers[0].image_pull_policy == policy


def test_image_pull_policy_explicit_kept():
    pod = _pod()
    pod.spec.containers[0].image = "busybox"
    pod.spec.containers[0].image_pull_policy = "Never"
    apply_defaults(pod)
    assert pod.spec.containers[0].image_pull_policy == "Never"


def test_container_port_protocol():
    pod = _pod()
    pod.spec.containers[0].ports.add(container_port=80)
    pod.spec.containers[0].ports.add(container_port=53, protocol="UDP")
    apply_defaults(pod)
    assert [p.protocol for p in pod.spec.containers[0].ports] == ["TCP", "UDP"]


def test_probe_defaults():
    pod = _pod()
    pod.spec.containers[0].liveness_probe.http_get.port.int_val = 80
    apply_defaults(pod)
    probe = pod.spec.containers[0].liveness_probe
    assert (probe.period_seconds, probe.timeout_seconds, probe.success_threshold, probe.failure_threshold) == (
        10,
        1,
        1,
        3,
    )
    assert (probe.http_get.path, probe.http_get.scheme) == ("/", "HTTP")


def test_probe_explicit_values_kept_and_absent_probe_stays_absent():
    pod = _pod()
    probe = pod.spec.containers[0].readiness_probe
    probe.exec.command.append("true")
    probe.period_seconds, probe.timeout_seconds, probe.success_threshold, probe.failure_threshold = 2, 3, 4, 5
    apply_defaults(pod)
    probe = pod.spec.containers[0].readiness_probe
    assert (probe.period_seconds, probe.timeout_seconds, probe.success_threshold, probe.failure_threshold) == (
        2,
        3,
        4,
        5,
    )
    assert not pod.spec.containers[0].HasField("liveness_probe")


def test_toleration_operator():
    pod = _pod()
    pod.spec.tolerations.add(key="a")
    pod.spec.tolerations.add(operator="Exists")
    apply_defaults(pod)
    assert [t.operator for t in pod.spec.tolerations] == ["Equal", "Exists"]


def test_deployment_defaults():
    deployment = _deployment()
    apply_defaults(deployment)
    spec = deployment.spec
    assert spec.HasField("replicas") and spec.replicas == 1
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_surge.str_val == "25%"
    assert spec.strategy.rolling_update.max_unavailable.str_val == "25%"
    assert spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    assert spec.template.spec.restart_policy == "Always"
    assert spec.template.spec.termination_grace_period_seconds == 30
    assert spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_deployment_explicit_zeroes_kept():
    deployment = _deployment()
    spec = deployment.spec
    spec.replicas = 0
    spec.revision_history_limit = 0
    spec.progress_deadline_seconds = 30
    spec.strategy.rolling_update.max_surge.int_val = 0
    apply_defaults(deployment)
    assert (spec.replicas, spec.revision_history_limit, spec.progress_deadline_seconds) == (0, 0, 30)
    assert spec.strategy.rolling_update.max_surge.WhichOneof("value") == "int_val"
    assert spec.strategy.rolling_update.max_surge.int_val == 0
    assert spec.strategy.rolling_update.max_unavailable.str_val == "25%"


def test_deployment_recreate_gets_no_rolling_update():
    deployment = _deployment()
    deployment.spec.strategy.type = "Recreate"
    apply_defaults(deployment)
    assert not deployment.spec.strategy.HasField("rolling_update")


def test_replica_set_defaults():
    replica_set = _replica_set()
    apply_defaults(replica_set)
    assert replica_set.spec.HasField("replicas") and replica_set.spec.replicas == 1
    assert replica_set.spec.template.spec.restart_policy == "Always"
    replica_set = _replica_set()
    replica_set.spec.replicas = 0
    apply_defaults(replica_set)
    assert replica_set.spec.replicas == 0


def test_service_defaults():
    service = _service()
    service.spec.ports.add(name="named", port=443, protocol="UDP").target_port.str_val = "https"
    service.spec.ports.add(name="zero", port=8080).target_port.int_val = 0
    apply_defaults(service)
    spec = service.spec
    assert (spec.type, spec.session_affinity) == ("ClusterIP", "None")
    assert [p.protocol for p in spec.ports] == ["TCP", "UDP", "TCP"]
    assert spec.ports[0].target_port.int_val == 80
    assert spec.ports[1].target_port.str_val == "https"
    assert spec.ports[2].target_port.int_val == 8080


def test_service_explicit_values_kept():
    service = _service()
    service.spec.type, service.spec.session_affinity = "NodePort", "ClientIP"
    service.spec.ports[0].target_port.int_val = 8080
    apply_defaults(service)
    assert (service.spec.type, service.spec.session_affinity) == ("NodePort", "ClientIP")
    assert service.spec.ports[0].target_port.int_val == 8080


def test_event_defaults():
    event = _event()
    apply_defaults(event)
    assert (event.type, event.count) == ("Normal", 1)
    event = _event()
    event.type, event.count = "Warning", 7
    apply_defaults(event)
    assert (event.type, event.count) == ("Warning", 7)


def test_endpoints_port_protocol():
    endpoints = _endpoints()
    apply_defaults(endpoints)
    assert endpoints.subsets[0].ports[0].protocol == "TCP"


def test_refuses_non_objects():
    with pytest.raises(TypeError):
        apply_defaults(pb.PodSpec())
