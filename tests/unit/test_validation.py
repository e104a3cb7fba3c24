"""Admission validation: every rule refuses what it should, naming the field path and the rule."""

import json

import pytest

from kybernetes.master.api.defaults import apply_defaults
from kybernetes.master.api.validation import ClusterNetwork, FieldError, ValidationError, validate
from kybernetes.proto import objects_pb2 as pb

DIGEST = "sha256:" + "0123456789abcdef" * 4


# ---------------------------------------------------------------- valid objects


def _pod_spec(spec: pb.PodSpec) -> None:
    container = spec.containers.add(name="app", image="localhost:5000/team/web:1.2")
    container.ports.add(name="http", container_port=8080)
    container.ports.add(name="dns", container_port=53, protocol="UDP", host_port=5353)
    container.env.add(name="MY_VAR.name-1", value="x")
    container.resources.requests.update({"cpu": "250m", "memory": "64Mi"})
    container.resources.limits.update({"cpu": "1", "memory": "64Mi"})
    container.liveness_probe.http_get.port.str_val = "http"
    container.readiness_probe.tcp_socket.port.int_val = 8080
    spec.containers.add(name="sidecar", image="busybox@" + DIGEST).liveness_probe.exec.command.append("true")
    spec.tolerations.add(key="dedicated", operator="Equal", value="web", effect="NoSchedule")
    spec.tolerations.add(operator="Exists")
    spec.tolerations.add(
        key="node.kubernetes.io/unreachable",
        operator="Exists",
        effect="NoExecute",
        toleration_seconds=30,
        has_toleration_seconds=True,
    )
    spec.node_selector["kubernetes.io/hostname"] = "node-1"


def pod() -> pb.Pod:
    obj = pb.Pod()
    obj.metadata.name = "web-1.v2"
    obj.metadata.namespace = "default"
    obj.metadata.labels.update({"app": "web", "example.com/tier": "", "A_b.c-9": "V_1.x-2"})
    obj.metadata.annotations.update({"example.com/note": "free text: anything { } \n goes", "Owner": "Ops Team"})
    obj.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="web", uid="u1", controller=True)
    obj.metadata.finalizers.append("example.com/cleanup")
    _pod_spec(obj.spec)
    return obj


def _replicated(obj: pb.ReplicaSet | pb.Deployment) -> None:
    obj.metadata.name = "web"
    obj.metadata.namespace = "default"
    obj.spec.replicas = 3
    obj.spec.selector.match_labels["app"] = "web"
    obj.spec.selector.match_expressions.add(key="tier", operator="In", values=["front", "edge"])
    obj.spec.selector.match_expressions.add(key="canary", operator="DoesNotExist")
    obj.spec.template.metadata.labels.update({"app": "web", "tier": "front"})
    _pod_spec(obj.spec.template.spec)


def replica_set() -> pb.ReplicaSet:
    obj = pb.ReplicaSet()
    _replicated(obj)
    return obj


def deployment() -> pb.Deployment:
    obj = pb.Deployment()
    _replicated(obj)
    obj.spec.strategy.type = "RollingUpdate"
    obj.spec.strategy.rolling_update.max_surge.int_val = 1
    obj.spec.strategy.rolling_update.max_unavailable.str_val = "0%"
    obj.spec.min_ready_seconds = 5
    obj.spec.revision_history_limit = 0
    obj.spec.progress_deadline_seconds = 60
    return obj


def service() -> pb.Service:
    obj = pb.Service()
    obj.metadata.name = "web"
    obj.metadata.namespace = "default"
    obj.spec.selector["app"] = "web"
    obj.spec.type = "NodePort"
    obj.spec.cluster_ip = "10.96.0.10"
    obj.spec.ports.add(name="http", port=80).target_port.str_val = "http"
    obj.spec.ports.add(name="dns", port=53, protocol="UDP", node_port=30053).target_port.int_val = 53
    obj.spec.ports.add(name="dns-tcp", port=53, protocol="TCP")
    return obj


def node() -> pb.Node:
    obj = pb.Node()
    obj.metadata.name = "node-1.example.com"
    obj.metadata.labels["kubernetes.io/hostname"] = "node-1"
    obj.spec.pod_cidr = "10.244.1.0/24"
    obj.spec.taints.add(key="dedicated", value="web", effect="NoSchedule")
    obj.spec.taints.add(key="dedicated", value="web", effect="NoExecute")
    obj.status.capacity.update({"cpu": "2", "memory": "4022Mi", "pods": "110"})
    obj.status.addresses.add(type="InternalIP", address="192.0.2.7")
    obj.status.addresses.add(type="Hostname", address="node-1")
    return obj


def event() -> pb.Event:
    obj = pb.Event()
    obj.metadata.name = "web.17a2b"
    obj.metadata.namespace = "default"
    obj.involved_object.kind = "Pod"
    obj.involved_object.name = "web"
    obj.type = "Warning"
    obj.count = 2
    return obj


def endpoints() -> pb.Endpoints:
    obj = pb.Endpoints()
    obj.metadata.name = "web"
    obj.metadata.namespace = "default"
    subset = obj.subsets.add()
    subset.addresses.add(ip="10.244.1.5", node_name="node-1")
    subset.not_ready_addresses.add(ip="192.168.7.5")
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return obj


FACTORIES = [pod, replica_set, deployment, service, node, event, endpoints]


@pytest.mark.parametrize("factory", FACTORIES)
def test_valid_objects_pass(factory):
    validate(factory())


@pytest.mark.parametrize("factory", FACTORIES)
def test_valid_objects_pass_after_defaults_and_as_their_own_update(factory):
    obj = factory()
    apply_defaults(obj)
    validate(obj)
    validate(obj, old=obj)


@pytest.mark.parametrize("factory", FACTORIES)
def test_bare_metadata_passes_after_defaults(factory):
    """No kind, apiVersion or namespace written: defaulting fills them in and the object is valid."""
    obj = factory()
    minimal = type(obj)()
    minimal.metadata.name = obj.metadata.name
    for field in ("spec", "involved_object"):
        if any(f.name == field for f in minimal.DESCRIPTOR.fields):
            getattr(minimal, field).CopyFrom(getattr(obj, field))
    apply_defaults(minimal)
    validate(minimal)


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:latest",
        "library/busybox:1.36.1",
        "docker.io/library/busybox:1.36",
        "localhost:5000/busybox",
        "127.0.0.1:5000/a/b/c:v1_2-3.x",
        "registry.example.com/my_org/my-app__x.y:TAG",
        "busybox@" + DIGEST,
        "busybox:1.36@" + DIGEST,
        "[::1]:5000/busybox:1",
    ],
)
def test_valid_images(image):
    obj = pod()
    obj.spec.containers[0].image = image
    validate(obj)


# ---------------------------------------------------------------- error shape


def test_message_is_kubernetes_shaped():
    obj = deployment()
    obj.spec.replicas = -1
    with pytest.raises(ValidationError) as info:
        validate(obj)
    error = info.value
    assert str(error) == (
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    )
    assert error.errors == [FieldError("spec.replicas", "Invalid value: -1: must be greater than or equal to 0")]
    assert (error.kind, error.group, error.name) == ("Deployment", "apps", "web")
    assert isinstance(error, ValueError)


def test_several_errors_are_joined():
    obj = pod()
    obj.spec.restart_policy = "Sometimes"
    obj.spec.containers[0].image = ""
    with pytest.raises(ValidationError) as info:
        validate(obj)
    assert str(info.value) == (
        'Pod "web-1.v2" is invalid: spec.containers[0].image: Required value, '
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'
    )


def test_a_long_value_is_shown_cut_and_its_length_said():
    # Found by the API fuzzer: the whole 1.2 MB value went into the message, too big for gRPC's metadata.
    obj = pod()
    obj.spec.containers[0].image = "UPPER" * 240_000
    with pytest.raises(ValidationError) as info:
        validate(obj)
    message = str(info.value)
    assert 'spec.containers[0].image: Invalid value: "UPPERUPPER' in message
    assert "... (1200002 characters)" in message and len(message) < 2000


def test_many_errors_are_listed_up_to_the_message_limit_then_counted():
    obj = pod()
    for i in range(5000):
        obj.metadata.labels[f"bad key {i}"] = "v"
    with pytest.raises(ValidationError) as info:
        validate(obj)
    assert len(info.value.errors) == 5000
    message = str(info.value)
    assert message.startswith('Pod "web-1.v2" is invalid: metadata.labels: Invalid value: "bad key ')
    assert len(message) < 3500 and message.endswith(" more errors")


def test_old_of_another_kind_is_a_programming_error():
    with pytest.raises(TypeError):
        validate(pod(), old=service())


# ---------------------------------------------------------------- one case per rule


def _set(target, **fields):
    for name, value in fields.items():
        setattr(target, name, value)


def _c0(obj):
    """The first container of a pod, or of a template."""
    spec = obj.spec.template.spec if hasattr(obj.spec, "template") else obj.spec
    return spec.containers[0]


def _add_label(key, value="x"):
    return lambda o: o.metadata.labels.update({key: value})


def _int_or_string(target, value):
    if isinstance(value, int):
        target.int_val = value
    else:
        target.str_val = value


def _rolling(surge, unavailable):
    def mutate(o):
        _int_or_string(o.spec.strategy.rolling_update.max_surge, surge)
        _int_or_string(o.spec.strategy.rolling_update.max_unavailable, unavailable)

    return mutate


LABEL_MSG = "a valid label must be an empty string or consist of alphanumeric characters"
NAME_PART_MSG = "name part must consist of alphanumeric characters, '-', '_' or '.'"
SUBDOMAIN_MSG = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
LABEL_DNS_MSG = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
PORT_MSG = "must be between 1 and 65535, inclusive"

C = "spec.containers[0]"
TC = "spec.template.spec.containers[0]"

CASES = [
    # metadata
    (pod, lambda o: o.metadata.ClearField("name"), "metadata.name",
     "Required value: name or generateName is required"),
    (pod, lambda o: _set(o.metadata, name="Web_1"), "metadata.name", f'Invalid value: "Web_1": {SUBDOMAIN_MSG}'),
    (pod, lambda o: _set(o.metadata, name="a" * 254), "metadata.name", "must be no more than 253 characters"),
    (node, lambda o: _set(o.metadata, name="Node_1"), "metadata.name", SUBDOMAIN_MSG),
    (deployment, lambda o: _set(o.metadata, name="web/1"), "metadata.name", SUBDOMAIN_MSG),
    (service, lambda o: _set(o.metadata, name="1web"), "metadata.name", 'Invalid value: "1web": a DNS-1035 label'),
    (service, lambda o: _set(o.metadata, name="web.v1"), "metadata.name", "a DNS-1035 label must consist"),
    (service, lambda o: _set(o.metadata, name="a" * 64), "metadata.name", "must be no more than 63 characters"),
    (pod, lambda o: _set(o.metadata, generate_name="Web-"), "metadata.generateName", SUBDOMAIN_MSG),
    (pod, lambda o: _set(o.metadata, namespace=""), "metadata.namespace", "Required value"),
    (pod, lambda o: _set(o.metadata, namespace="team.a"), "metadata.namespace", LABEL_DNS_MSG),
    (pod, lambda o: _set(o.metadata, namespace="n" * 64), "metadata.namespace", "must be no more than 63 characters"),
    (node, lambda o: _set(o.metadata, namespace="default"), "metadata.namespace",
     "Forbidden: not allowed on this type"),
    (pod, _add_label("bad key"), "metadata.labels", f'Invalid value: "bad key": {NAME_PART_MSG}'),
    (pod, _add_label("-app"), "metadata.labels", NAME_PART_MSG),
    (pod, _add_label("k" * 64), "metadata.labels", "name part must be no more than 63 characters"),
    (pod, _add_label("Example.com/app"), "metadata.labels", f"prefix part {SUBDOMAIN_MSG}"),
    (pod, _add_label("/app"), "metadata.labels", "prefix part must be non-empty"),
    (pod, _add_label("example.com/"), "metadata.labels", "name part must be non-empty"),
    (pod, _add_label("a/b/c"), "metadata.labels", "a qualified name must consist of"),
    (pod, _add_label("app", "-web"), "metadata.labels", f'Invalid value: "-web": {LABEL_MSG}'),
    (pod, _add_label("app", "has space"), "metadata.labels", LABEL_MSG),
    (pod, _add_label("app", "v" * 64), "metadata.labels", "must be no more than 63 characters"),
    (pod, lambda o: o.metadata.annotations.update({"bad key": "v"}), "metadata.annotations", NAME_PART_MSG),
    (pod, lambda o: o.metadata.annotations.update({"big": "x" * 262144}), "metadata.annotations",
     "Too long: must have at most 262144 bytes"),
    (pod, lambda o: _set(o.metadata.owner_references[0], uid=""), "metadata.ownerReferences[0].uid",
     "Required value"),
    (pod, lambda o: o.metadata.owner_references.add(api_version="v1", kind="X", name="x", uid="2", controller=True),
     "metadata.ownerReferences", "Only one reference can have Controller set to true"),
    (pod, lambda o: o.metadata.finalizers.append("bad finalizer"), "metadata.finalizers[1]", NAME_PART_MSG),
    (pod, lambda o: _set(o, kind="Service"), "kind", 'Unsupported value: "Service": supported values: "Pod"'),
    (deployment, lambda o: _set(o, api_version="apps/v1beta1"), "apiVersion",
     'Unsupported value: "apps/v1beta1": supported values: "apps/v1"'),
    # pods
    (pod, lambda o: o.spec.ClearField("containers"), "spec.containers", "Required value"),
    (pod, lambda o: o.spec.containers.add(name="app", image="busybox"), "spec.containers[2].name",
     'Duplicate value: "app"'),
    (pod, lambda o: _set(_c0(o), name=""), f"{C}.name", "Required value"),
    (pod, lambda o: _set(_c0(o), name="App"), f"{C}.name", f'Invalid value: "App": {LABEL_DNS_MSG}'),
    (pod, lambda o: _set(_c0(o), name="a.b"), f"{C}.name", LABEL_DNS_MSG),
    (pod, lambda o: _set(_c0(o), image=""), f"{C}.image", "Required value"),
    (pod, lambda o: _set(_c0(o), image="Busybox"), f"{C}.image",
     'Invalid value: "Busybox": must be a valid image reference'),
    (pod, lambda o: _set(_c0(o), image="busybox:"), f"{C}.image", "must be a valid image reference"),
    (pod, lambda o: _set(_c0(o), image="busybox:-x"), f"{C}.image", "must be a valid image reference"),
    (pod, lambda o: _set(_c0(o), image="busybox:" + "t" * 129), f"{C}.image", "must be a valid image reference"),
    (pod, lambda o: _set(_c0(o), image="busybox@sha256:abc"), f"{C}.image", "must be a valid image reference"),
    (pod, lambda o: _set(_c0(o), image="busy box"), f"{C}.image", "must be a valid image reference"),
    (pod, lambda o: _set(_c0(o), image="a/" * 130 + "b"), f"{C}.image",
     "repository name must not be more than 255 characters"),
    (pod, lambda o: _set(_c0(o), image_pull_policy="Sometimes"), f"{C}.imagePullPolicy",
     'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"'),
    (pod, lambda o: _set(_c0(o).ports[0], container_port=0), f"{C}.ports[0].containerPort", "Required value"),
    (pod, lambda o: _set(_c0(o).ports[0], container_port=70000), f"{C}.ports[0].containerPort",
     f"Invalid value: 70000: {PORT_MSG}"),
    (pod, lambda o: _set(_c0(o).ports[0], container_port=-1), f"{C}.ports[0].containerPort", PORT_MSG),
    (pod, lambda o: _set(_c0(o).ports[1], host_port=65536), f"{C}.ports[1].hostPort",
     f"Invalid value: 65536: {PORT_MSG}"),
    (pod, lambda o: _set(_c0(o).ports[0], protocol="SCTP"), f"{C}.ports[0].protocol",
     'Unsupported value: "SCTP": supported values: "TCP", "UDP"'),
    (pod, lambda o: _set(_c0(o).ports[0], name="a-very-long-name"), f"{C}.ports[0].name",
     "must be no more than 15 characters"),
    (pod, lambda o: _set(_c0(o).ports[0], name="Http"), f"{C}.ports[0].name",
     "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    (pod, lambda o: _set(_c0(o).ports[0], name="web--x"), f"{C}.ports[0].name",
     "must not contain consecutive hyphens"),
    (pod, lambda o: _set(_c0(o).ports[0], name="8080"), f"{C}.ports[0].name",
     "must contain at least one letter (a-z)"),
    (pod, lambda o: _set(_c0(o).ports[0], name="web-"), f"{C}.ports[0].name",
     "must not begin or end with a hyphen"),
    (pod, lambda o: o.spec.containers[1].ports.add(name="http", container_port=9090),
     "spec.containers[1].ports[0].name", 'Duplicate value: "http"'),
    (pod, lambda o: _set(_c0(o).env[0], name=""), f"{C}.env[0].name", "Required value"),
    (pod, lambda o: _set(_c0(o).env[0], name="1BAD"), f"{C}.env[0].name",
     'Invalid value: "1BAD": a valid environment variable name must consist of'),
    (pod, lambda o: _set(_c0(o).env[0], name="A=B"), f"{C}.env[0].name", "a valid environment variable name"),
    (pod, lambda o: _c0(o).resources.limits.update({"gpu": "1"}), f"{C}.resources.limits[gpu]",
     'Unsupported value: "gpu": supported values: "cpu", "memory"'),
    (pod, lambda o: _c0(o).resources.requests.update({"memory": "64MB"}), f"{C}.resources.requests[memory]",
     'Invalid value: "64MB": quantities must match the regular expression'),
    (pod, lambda o: _c0(o).resources.requests.update({"cpu": "-1"}), f"{C}.resources.requests[cpu]",
     'Invalid value: "-1": must be greater than or equal to 0'),
    (pod, lambda o: _c0(o).resources.requests.update({"cpu": "1500m"}), f"{C}.resources.requests[cpu]",
     'Invalid value: "1500m": must be less than or equal to cpu limit of 1'),
    (pod, lambda o: _c0(o).resources.requests.update({"memory": "65Mi"}), f"{C}.resources.requests[memory]",
     "must be less than or equal to memory limit of 64Mi"),
    (pod, lambda o: _c0(o).liveness_probe.ClearField("http_get"), f"{C}.livenessProbe",
     "Required value: must specify a handler type"),
    (pod, lambda o: _c0(o).liveness_probe.exec.command.append("true"), f"{C}.livenessProbe.httpGet",
     "Forbidden: may not specify more than 1 handler type"),
    (pod, lambda o: o.spec.containers[1].liveness_probe.exec.ClearField("command"),
     "spec.containers[1].livenessProbe.exec.command", "Required value"),
    (pod, lambda o: _c0(o).liveness_probe.http_get.ClearField("port"), f"{C}.livenessProbe.httpGet.port",
     "Required value"),
    (pod, lambda o: _set(_c0(o).liveness_probe.http_get.port, int_val=0), f"{C}.livenessProbe.httpGet.port",
     f"Invalid value: 0: {PORT_MSG}"),
    (pod, lambda o: _set(_c0(o).liveness_probe.http_get.port, str_val="HTTP"), f"{C}.livenessProbe.httpGet.port",
     "must contain only alpha-numeric characters"),
    (pod, lambda o: _set(_c0(o).liveness_probe.http_get, scheme="FTP"), f"{C}.livenessProbe.httpGet.scheme",
     'Unsupported value: "FTP": supported values: "HTTP", "HTTPS"'),
    (pod, lambda o: _set(_c0(o).readiness_probe.tcp_socket.port, int_val=65536),
     f"{C}.readinessProbe.tcpSocket.port", PORT_MSG),
    (pod, lambda o: _set(_c0(o).readiness_probe, period_seconds=-1), f"{C}.readinessProbe.periodSeconds",
     "Invalid value: -1: must be greater than or equal to 0"),
    (pod, lambda o: _set(_c0(o).readiness_probe, initial_delay_seconds=-5),
     f"{C}.readinessProbe.initialDelaySeconds", "must be greater than or equal to 0"),
    (pod, lambda o: _set(_c0(o).readiness_probe, timeout_seconds=-1), f"{C}.readinessProbe.timeoutSeconds",
     "must be greater than or equal to 0"),
    (pod, lambda o: _set(_c0(o).readiness_probe, failure_threshold=-1), f"{C}.readinessProbe.failureThreshold",
     "must be greater than or equal to 0"),
    (pod, lambda o: _set(_c0(o).readiness_probe, success_threshold=-1), f"{C}.readinessProbe.successThreshold",
     "must be greater than or equal to 0"),
    (pod, lambda o: _set(_c0(o).liveness_probe, success_threshold=2), f"{C}.livenessProbe.successThreshold",
     "Invalid value: 2: must be 1"),
    (pod, lambda o: _set(o.spec, restart_policy="Sometimes"), "spec.restartPolicy",
     'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    (pod, lambda o: _set(o.spec, termination_grace_period_seconds=-1), "spec.terminationGracePeriodSeconds",
     "Invalid value: -1: must be greater than or equal to 0"),
    (pod, lambda o: _set(o.spec.tolerations[0], operator="Like"), "spec.tolerations[0].operator",
     'Unsupported value: "Like": supported values: "Equal", "Exists"'),
    (pod, lambda o: _set(o.spec.tolerations[0], operator="Exists"), "spec.tolerations[0].operator",
     "Invalid value: \"web\": value must be empty when `operator` is 'Exists'"),
    (pod, lambda o: _set(o.spec.tolerations[0], key=""), "spec.tolerations[0].operator",
     "operator must be Exists when `key` is empty"),
    (pod, lambda o: _set(o.spec.tolerations[0], key="bad key"), "spec.tolerations[0].key", NAME_PART_MSG),
    (pod, lambda o: _set(o.spec.tolerations[0], value="bad value"), "spec.tolerations[0].value", LABEL_MSG),
    (pod, lambda o: _set(o.spec.tolerations[0], effect="NoWay"), "spec.tolerations[0].effect",
     'Unsupported value: "NoWay": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"'),
    (pod, lambda o: _set(o.spec.tolerations[0], has_toleration_seconds=True), "spec.tolerations[0].effect",
     "effect must be 'NoExecute' when `tolerationSeconds` is set"),
    (pod, lambda o: o.spec.node_selector.update({"bad key": "x"}), "spec.nodeSelector", NAME_PART_MSG),
    (pod, lambda o: o.spec.node_selector.update({"disk": "bad value"}), "spec.nodeSelector", LABEL_MSG),
    (pod, lambda o: _set(o.spec, node_name="Node_1"), "spec.nodeName", SUBDOMAIN_MSG),
    (pod, lambda o: _set(o.spec, hostname="a.b"), "spec.hostname", LABEL_DNS_MSG),
    (pod, lambda o: _set(o.status, phase="Sleeping"), "status.phase",
     'Unsupported value: "Sleeping": supported values: "Pending", "Running", "Succeeded", "Failed", "Unknown"'),
    # replica sets and deployments
    (replica_set, lambda o: _set(o.spec, replicas=-1), "spec.replicas",
     "Invalid value: -1: must be greater than or equal to 0"),
    (deployment, lambda o: _set(o.spec, replicas=-1), "spec.replicas",
     "Invalid value: -1: must be greater than or equal to 0"),
    (replica_set, lambda o: o.spec.ClearField("selector"), "spec.selector", "Required value"),
    (deployment, lambda o: o.spec.ClearField("selector"), "spec.selector", "Required value"),
    (replica_set, lambda o: o.spec.template.metadata.labels.update({"app": "other"}), "spec.template.metadata.labels",
     'Invalid value: {"app":"other","tier":"front"}: selector does not match template labels'),
    (deployment, lambda o: o.spec.template.metadata.labels.update({"tier": "back"}), "spec.template.metadata.labels",
     "selector does not match template labels"),
    (deployment, lambda o: o.spec.template.metadata.labels.update({"canary": "yes"}),
     "spec.template.metadata.labels", "selector does not match template labels"),
    (deployment, lambda o: o.spec.template.metadata.labels.update({"bad key": "x"}),
     "spec.template.metadata.labels", NAME_PART_MSG),
    (deployment, lambda o: o.spec.selector.match_labels.update({"app": "bad value"}), "spec.selector.matchLabels",
     LABEL_MSG),
    (deployment, lambda o: _set(o.spec.selector.match_expressions[0], operator="Within"),
     "spec.selector.matchExpressions[0].operator",
     'Unsupported value: "Within": supported values: "In", "NotIn", "Exists", "DoesNotExist"'),
    (deployment, lambda o: o.spec.selector.match_expressions[0].ClearField("values"),
     "spec.selector.matchExpressions[0].values", "Required value"),
    (deployment, lambda o: o.spec.selector.match_expressions[1].values.append("x"),
     "spec.selector.matchExpressions[1].values", "Forbidden: may not be specified when `operator` is 'Exists'"),
    (deployment, lambda o: _set(o.spec.selector.match_expressions[0], key=""),
     "spec.selector.matchExpressions[0].key", "Required value"),
    (deployment, lambda o: _set(_c0(o), image="Bad Image"), f"{TC}.image", "must be a valid image reference"),
    (replica_set, lambda o: _set(_c0(o).ports[0], container_port=0), f"{TC}.ports[0].containerPort",
     "Required value"),
    (deployment, lambda o: _set(o.spec.template.spec, restart_policy="Never"), "spec.template.spec.restartPolicy",
     'Unsupported value: "Never": supported values: "Always"'),
    (replica_set, lambda o: _set(o.spec, min_ready_seconds=-1), "spec.minReadySeconds",
     "must be greater than or equal to 0"),
    (deployment, lambda o: _set(o.spec, min_ready_seconds=-1), "spec.minReadySeconds",
     "must be greater than or equal to 0"),
    (deployment, lambda o: _set(o.spec.strategy, type="BlueGreen"), "spec.strategy.type",
     'Unsupported value: "BlueGreen": supported values: "RollingUpdate", "Recreate"'),
    (deployment, lambda o: _set(o.spec.strategy, type="Recreate"), "spec.strategy.rollingUpdate",
     "Forbidden: may not be specified when strategy `type` is 'Recreate'"),
    (deployment, _rolling("abc", 1), "spec.strategy.rollingUpdate.maxSurge",
     "Invalid value: \"abc\": a valid percent string must be a numeric string followed by an ending '%'"),
    (deployment, _rolling(1, "101%"), "spec.strategy.rollingUpdate.maxUnavailable",
     "must not be greater than 100%"),
    (deployment, _rolling(-1, 1), "spec.strategy.rollingUpdate.maxSurge",
     "Invalid value: -1: must be greater than or equal to 0"),
    (deployment, _rolling(0, 0), "spec.strategy.rollingUpdate.maxUnavailable",
     "Invalid value: 0: may not be 0 when `maxSurge` is 0"),
    (deployment, _rolling("0%", "0%"), "spec.strategy.rollingUpdate.maxUnavailable",
     'Invalid value: "0%": may not be 0 when `maxSurge` is 0'),
    (deployment, lambda o: _set(o.spec, revision_history_limit=-1), "spec.revisionHistoryLimit",
     "Invalid value: -1: must be greater than or equal to 0"),
    (deployment, lambda o: _set(o.spec, progress_deadline_seconds=5), "spec.progressDeadlineSeconds",
     "Invalid value: 5: must be greater than minReadySeconds"),
    # services
    (service, lambda o: o.spec.ClearField("ports"), "spec.ports", "Required value"),
    (service, lambda o: _set(o.spec.ports[0], name=""), "spec.ports[0].name", "Required value"),
    (service, lambda o: _set(o.spec.ports[1], name="http"), "spec.ports[1].name", 'Duplicate value: "http"'),
    (service, lambda o: _set(o.spec.ports[0], name="Http"), "spec.ports[0].name", LABEL_DNS_MSG),
    (service, lambda o: _set(o.spec.ports[0], port=0), "spec.ports[0].port", f"Invalid value: 0: {PORT_MSG}"),
    (service, lambda o: _set(o.spec.ports[0], port=65536), "spec.ports[0].port", PORT_MSG),
    (service, lambda o: _set(o.spec.ports[2], port=80), "spec.ports[2]", 'Duplicate value: "80/TCP"'),
    (service, lambda o: _set(o.spec.ports[0].target_port, int_val=70000), "spec.ports[0].targetPort",
     f"Invalid value: 70000: {PORT_MSG}"),
    (service, lambda o: _set(o.spec.ports[0].target_port, str_val="Bad_Name"), "spec.ports[0].targetPort",
     "must contain only alpha-numeric characters"),
    (service, lambda o: _set(o.spec.ports[0], node_port=80), "spec.ports[0].nodePort",
     "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"),
    (service, lambda o: _set(o.spec.ports[0], node_port=32768), "spec.ports[0].nodePort",
     "provided port is not in the valid range"),
    (service, lambda o: _set(o.spec.ports[0], node_port=30053, protocol="UDP", port=54), "spec.ports[1].nodePort",
     "Duplicate value: 30053"),
    (service, lambda o: _set(o.spec, type="ClusterIP"), "spec.ports[1].nodePort",
     "Forbidden: may not be used when `type` is 'ClusterIP'"),
    (service, lambda o: _set(o.spec, type="LoadBalancer"), "spec.type",
     'Unsupported value: "LoadBalancer": supported values: "ClusterIP", "NodePort"'),
    (service, lambda o: _set(o.spec, session_affinity="Sticky"), "spec.sessionAffinity",
     'Unsupported value: "Sticky": supported values: "None", "ClientIP"'),
    (service, lambda o: _set(o.spec.ports[0], protocol="SCTP"), "spec.ports[0].protocol",
     'Unsupported value: "SCTP": supported values: "TCP", "UDP"'),
    (service, lambda o: _set(o.spec, cluster_ip="10.96.0"), "spec.clusterIP",
     'Invalid value: "10.96.0": must be a valid IP address'),
    (service, lambda o: o.spec.selector.update({"app": "bad value"}), "spec.selector", LABEL_MSG),
    # nodes
    (node, lambda o: _set(o.spec.taints[0], effect="NoWay"), "spec.taints[0].effect",
     'Unsupported value: "NoWay": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"'),
    (node, lambda o: _set(o.spec.taints[0], effect=""), "spec.taints[0].effect", "Required value"),
    (node, lambda o: _set(o.spec.taints[0], key=""), "spec.taints[0].key", "Required value"),
    (node, lambda o: _set(o.spec.taints[0], key="bad key"), "spec.taints[0].key", NAME_PART_MSG),
    (node, lambda o: _set(o.spec.taints[0], value="bad value"), "spec.taints[0].value", LABEL_MSG),
    (node, lambda o: _set(o.spec.taints[1], effect="NoSchedule"), "spec.taints[1]",
     'Duplicate value: "dedicated:NoSchedule"'),
    (node, lambda o: _set(o.spec, pod_cidr="10.244.1.0/33"), "spec.podCIDR", "must be a valid CIDR"),
    (node, lambda o: o.status.capacity.update({"cpu": "two"}), "status.capacity[cpu]",
     'Invalid value: "two": quantities must match the regular expression'),
    # events
    (event, lambda o: _set(o.involved_object, kind=""), "involvedObject.kind", "Required value"),
    (event, lambda o: _set(o.involved_object, name=""), "involvedObject.name", "Required value"),
    (event, lambda o: _set(o, type="Info"), "type", 'Unsupported value: "Info": supported values: "Normal", "Warning"'),
    (event, lambda o: _set(o, count=-1), "count", "must be greater than or equal to 0"),
    # endpoints
    (endpoints, lambda o: _set(o.subsets[0].addresses[0], ip="10.244.1"), "subsets[0].addresses[0].ip",
     "must be a valid IPv4 address"),
    (endpoints, lambda o: _set(o.subsets[0].not_ready_addresses[0], ip=""), "subsets[0].notReadyAddresses[0].ip",
     "must be a valid IPv4 address"),
    (endpoints, lambda o: _set(o.subsets[0].ports[0], port=0), "subsets[0].ports[0].port", PORT_MSG),
    (endpoints, lambda o: _set(o.subsets[0].ports[0], protocol="SCTP"), "subsets[0].ports[0].protocol",
     "Unsupported value"),
    (endpoints, lambda o: _set(o.subsets[0].ports[0], name="Http"), "subsets[0].ports[0].name", LABEL_DNS_MSG),
]


def _refused(obj, *, old=None, network=None) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(obj, old=old) if network is None else validate(obj, old=old, network=network)
    return info.value


@pytest.mark.parametrize(
    ("factory", "mutate", "path", "rule"),
    CASES,
    ids=[f"{factory.__name__}:{path}:{rule[:40]}" for factory, _, path, rule in CASES],
)
def test_rule(factory, mutate, path, rule):
    obj = factory()
    validate(obj)  # the rule, not some other problem, is what refuses the object below
    mutate(obj)
    error = _refused(obj)
    assert any(e.path == path and rule in e.rule for e in error.errors), error.errors
    assert f"{path}: " in str(error)
    assert rule in str(error)


# ---------------------------------------------------------------- update rules


def test_namespace_immutable():
    old = pod()
    new = pod()
    new.metadata.namespace = "prod"
    error = _refused(new, old=old)
    assert 'metadata.namespace: Invalid value: "prod": field is immutable' in str(error)


def test_uid_immutable_but_may_be_left_out():
    old = pod()
    old.metadata.uid = "u-old"
    new = pod()
    validate(new, old=old)
    new.metadata.uid = "u-other"
    assert 'metadata.uid: Invalid value: "u-other": field is immutable' in str(_refused(new, old=old))


@pytest.mark.parametrize("factory", [replica_set, deployment])
def test_selector_immutable(factory):
    old = factory()
    new = factory()
    new.spec.replicas = 7  # other spec changes are fine
    validate(new, old=old)
    new.spec.selector.match_labels["extra"] = "x"
    new.spec.template.metadata.labels["extra"] = "x"
    error = _refused(new, old=old)
    assert error.errors == [
        FieldError(
            "spec.selector",
            'Invalid value: {"matchExpressions":[{"key":"tier","operator":"In","values":["front","edge"]},'
            '{"key":"canary","operator":"DoesNotExist","values":[]}],"matchLabels":{"app":"web","extra":"x"}}: '
            "field is immutable",
        )
    ]
    validate(new)  # the same object is fine on create


def test_cluster_ip_immutable():
    old = service()
    new = service()
    new.spec.ports[0].port = 8080  # other spec changes are fine
    validate(new, old=old)
    new.spec.cluster_ip = "10.96.0.11"
    assert 'spec.clusterIP: Invalid value: "10.96.0.11": field is immutable' in str(_refused(new, old=old))
    new.spec.cluster_ip = ""
    assert 'spec.clusterIP: Invalid value: "": field is immutable' in str(_refused(new, old=old))


def test_cluster_ip_may_be_set_when_unallocated():
    old = service()
    old.spec.cluster_ip = ""
    validate(service(), old=old)


# ---------------------------------------------------------------- hardening: Node podCIDR and addresses


@pytest.mark.parametrize(("cidr", "rule"), [
    ("0.0.0.0/1", "must lie within the cluster CIDR 10.244.0.0/16"),
    ("10.245.1.0/24", "must lie within the cluster CIDR 10.244.0.0/16"),
    ("10.244.0.0/15", "must lie within the cluster CIDR 10.244.0.0/16"),
    ("fd00::/64", "must be an IPv4 network"),
    ("10.244.1.0/33", "must be a valid CIDR"),
])
def test_node_pod_cidr_must_lie_inside_the_cluster_cidr(cidr, rule):
    obj = node()
    obj.spec.pod_cidr = cidr
    error = _refused(obj)
    assert [e.path for e in error.errors] == ["spec.podCIDR"], error.errors
    assert f'spec.podCIDR: Invalid value: "{cidr}": {rule}' in str(error)


def test_node_pod_cidr_is_judged_against_the_configured_cluster_cidr():
    obj = node()
    obj.spec.pod_cidr = "10.200.3.0/24"
    validate(obj, network=ClusterNetwork.of(cluster_cidr="10.200.0.0/16"))
    error = _refused(node(), network=ClusterNetwork.of(cluster_cidr="10.200.0.0/16"))
    assert 'must lie within the cluster CIDR 10.200.0.0/16' in str(error)


def test_node_pod_cidr_may_be_set_once_and_is_immutable_after():
    unset = node()
    unset.spec.pod_cidr = ""
    validate(node(), old=unset)  # "" -> a range: the allocation
    for changed in ("10.244.2.0/24", ""):
        new = node()
        new.spec.pod_cidr = changed
        error = _refused(new, old=node())
        assert f'spec.podCIDR: Invalid value: "{changed}": field is immutable' in str(error)


@pytest.mark.parametrize(("kind", "address", "rule"), [
    ("InternalIP", "not-an-ip", "must be a valid IP address"),
    ("InternalIP", "", "Required value"),
    ("ExternalIP", "10.0.0.1/24", "must be a valid IP address"),
    ("Elsewhere", "10.0.0.1", 'Unsupported value: "Elsewhere"'),
])
def test_node_addresses_must_be_ips(kind, address, rule):
    obj = node()
    obj.status.addresses.add(type=kind, address=address)
    error = _refused(obj)
    assert any(e.path.startswith("status.addresses[2]") and rule in e.rule for e in error.errors), error.errors


# ---------------------------------------------------------------- hardening: pod updates


def _bound_pod(node_name: str = "node-1") -> pb.Pod:
    obj = pod()
    obj.spec.node_name = node_name
    return obj


@pytest.mark.parametrize("change", [
    lambda o: _set(_c0(o), image="localhost:5000/team/web:1.3"),
    lambda o: _set(o.spec.containers[1], image="busybox:1.36"),
    lambda o: o.metadata.labels.update({"release": "canary"}),
    lambda o: o.metadata.annotations.update({"example.com/why": "rollout"}),
    lambda o: o.spec.tolerations.add(key="extra", operator="Exists"),
], ids=["image", "second-image", "labels", "annotations", "added-toleration"])
def test_pod_update_may_change_images_metadata_and_add_tolerations(change):
    new = _bound_pod()
    change(new)
    validate(new, old=_bound_pod())


FORBIDDEN_POD_UPDATE = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"


@pytest.mark.parametrize(("change", "changed"), [
    (lambda o: _set(o.spec, host_network=True), "hostNetwork"),
    (lambda o: _c0(o).command.append("/bin/sh"), "containers"),
    (lambda o: o.spec.containers.add(name="extra", image="busybox"), "containers"),
    (lambda o: _set(o.spec, restart_policy="Never"), "restartPolicy"),
    (lambda o: o.spec.node_selector.update({"disk": "ssd"}), "nodeSelector"),
    (lambda o: _set(o.spec, termination_grace_period_seconds=5), "terminationGracePeriodSeconds"),
    (lambda o: _c0(o).resources.limits.update({"cpu": "2"}), "containers"),
], ids=["hostNetwork", "command", "added-container", "restartPolicy", "nodeSelector", "grace", "limits"])
def test_pod_update_may_not_change_anything_else(change, changed):
    new = _bound_pod()
    change(new)
    validate(new)  # a valid pod: only the update is refused
    error = _refused(new, old=_bound_pod())
    assert FORBIDDEN_POD_UPDATE in str(error), str(error)
    assert f"spec.{changed}" in next(e.rule for e in error.errors if e.path == "spec")


def test_pod_update_may_not_remove_or_change_a_toleration():
    new = _bound_pod()
    del new.spec.tolerations[0]
    error = _refused(new, old=_bound_pod())
    assert "spec.tolerations: Forbidden: existing toleration can not be modified" in str(error)


def test_pod_node_name_may_be_set_once_then_never_changed():
    unbound = _bound_pod("")
    validate(_bound_pod("node-1"), old=unbound)  # the binding
    for changed in ("node-2", ""):
        error = _refused(_bound_pod(changed), old=_bound_pod("node-1"))
        assert f'spec.nodeName: Invalid value: "{changed}": field is immutable once set' in str(error)


def test_pod_status_update_with_an_unchanged_spec_passes():
    old = _bound_pod()
    new = _bound_pod()
    new.status.phase = "Running"
    new.status.pod_ip = "10.244.1.5"
    new.status.host_ip = "192.0.2.7"
    validate(new, old=old)


# ---------------------------------------------------------------- hardening: pod IPs and Endpoints addresses


@pytest.mark.parametrize(("ip", "rule"), [
    ("10.9.9.9", "must be an IPv4 address in the cluster's pod range 10.244.0.0/16"),
    ("fd00::1", "must be an IPv4 address in the cluster's pod range"),
    ("10.244.1", "must be an IPv4 address in the cluster's pod range"),
    ("10.244.1.5 ", "must be an IPv4 address in the cluster's pod range"),
])
def test_pod_ip_must_be_ipv4_in_the_pod_range(ip, rule):
    obj = _bound_pod()
    obj.status.pod_ip = ip
    error = _refused(obj)
    assert f"status.podIP: Invalid value: {json.dumps(ip)}: {rule}" in str(error)


def test_host_network_pod_ip_is_its_host_ip():
    obj = _bound_pod()
    obj.spec.host_network = True
    obj.status.host_ip = obj.status.pod_ip = "192.0.2.7"
    validate(obj)
    obj.status.pod_ip = "192.0.2.8"
    assert 'status.podIP: Invalid value: "192.0.2.8": must be equal to status.hostIP' in str(_refused(obj))
    obj.status.pod_ip = obj.status.host_ip = "fd00::7"
    assert "status.podIP" in str(_refused(obj))


def test_host_ip_must_be_an_ip():
    obj = _bound_pod()
    obj.status.host_ip = "node-1"
    assert 'status.hostIP: Invalid value: "node-1": must be a valid IPv4 address' in str(_refused(obj))


@pytest.mark.parametrize(("ip", "rule"), [
    ("127.0.0.1", "may not be in the loopback range (127.0.0.0/8)"),
    ("169.254.169.254", "may not be in the link-local range (169.254.0.0/16)"),
    ("169.254.3.4", "may not be in the link-local range (169.254.0.0/16)"),
    ("224.0.0.1", "may not be in the multicast range (224.0.0.0/4)"),
    ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
    ("255.255.255.255", "may not be the broadcast address"),
    ("fd00::5", "must be a valid IPv4 address"),
    ("10.244.1.5 -j ACCEPT", "must be a valid IPv4 address"),
    ("010.244.1.5", "must be a valid IPv4 address"),
])
@pytest.mark.parametrize("field", ["addresses", "not_ready_addresses"])
def test_endpoints_addresses_refuse_what_a_proxy_must_never_reach(ip, rule, field):
    obj = endpoints()
    getattr(obj.subsets[0], field)[0].ip = ip
    error = _refused(obj)
    camel = {"addresses": "addresses", "not_ready_addresses": "notReadyAddresses"}[field]
    assert f"subsets[0].{camel}[0].ip: Invalid value: {json.dumps(ip)}: {rule}" in str(error), str(error)


# ---------------------------------------------------------------- hardening: probe hosts


@pytest.mark.parametrize("host", ["169.254.169.254", "127.0.0.1", "example.com", "10.96.0.1", "fd00::1"])
@pytest.mark.parametrize("factory", [pod, deployment])
def test_probe_hosts_outside_the_pod_range_are_refused(host, factory):
    obj = factory()
    _c0(obj).liveness_probe.http_get.host = host
    _c0(obj).readiness_probe.tcp_socket.host = host
    error = _refused(obj)
    prefix = TC if factory is deployment else C
    rule = f"Invalid value: {json.dumps(host)}: must be an IPv4 address in the cluster's pod range 10.244.0.0/16"
    assert f"{prefix}.livenessProbe.httpGet.host: {rule}" in str(error), str(error)
    assert f"{prefix}.readinessProbe.tcpSocket.host: {rule}" in str(error), str(error)


def test_probe_host_inside_the_pod_range_or_empty_passes():
    obj = pod()
    _c0(obj).liveness_probe.http_get.host = "10.244.3.7"
    validate(obj)


# ---------------------------------------------------------------- hardening: sizes and maxSurge


def test_an_object_over_one_mib_is_refused_naming_it():
    obj = event()
    obj.message = "x" * (1024 * 1024)
    error = _refused(obj)
    assert str(error).startswith('Event "web.17a2b" is invalid: message: Too long: the object is ')
    assert "bytes serialized, more than the 1 MiB limit (1048576 bytes)" in str(error)
    obj.message = "x" * (1024 * 1024 - 200)
    validate(obj)


@pytest.mark.parametrize("surge", ["150%", "1000%", 50])
def test_max_surge_may_exceed_100_percent_as_in_kubernetes(surge):
    obj = deployment()
    _rolling(surge, 0)(obj)
    validate(obj)
