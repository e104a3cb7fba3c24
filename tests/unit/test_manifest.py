"""Manifest dicts <-> protobuf objects: Kubernetes' shape, field paths in errors, round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kybernetes.core.api import kinds
from kybernetes.core.api.manifest import ManifestError, list_to_dict, load_documents, to_dict, to_proto
from kybernetes.proto import objects_pb2 as pb

DEPLOYMENT_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
    app.kubernetes.io/part-of: shop
  annotations:
    note: "2026-01-02"
  creationTimestamp: "2026-11-28T04:21:06Z"
  ownerReferences:
  - apiVersion: v1
    kind: Thing
    name: owner
    uid: "1234"
    controller: true
  finalizers: [example.com/keep]
  generation: 3
spec:
  replicas: 0
  revisionHistoryLimit: 0
  progressDeadlineSeconds: 600
  minReadySeconds: 5
  selector:
    matchLabels:
      app: web
    matchExpressions:
    - key: tier
      operator: In
      values: [front, edge]
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      nodeSelector:
        disk: ssd
      restartPolicy: Always
      terminationGracePeriodSeconds: 30
      tolerations:
      - key: node.kubernetes.io/unreachable
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 0
      - key: dedicated
        operator: Equal
        value: web
        effect: NoSchedule
      containers:
      - name: web
        image: registry.local/web:1.2
        imagePullPolicy: IfNotPresent
        command: [/bin/web]
        args: ["--port", "8080"]
        workingDir: /srv
        env:
        - name: MODE
          value: production
        ports:
        - name: http
          containerPort: 8080
          protocol: TCP
        resources:
          requests:
            cpu: 250m
            memory: 64Mi
          limits:
            cpu: "1"
            memory: 128Mi
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 5
        livenessProbe:
          tcpSocket:
            port: 8080
          initialDelaySeconds: 10
          failureThreshold: 3
status:
  observedGeneration: 3
  replicas: 2
  readyReplicas: 1
  conditions:
  - type: Available
    status: "True"
    reason: MinimumReplicasAvailable
    lastUpdateTime: "2026-11-28T04:21:06Z"
    lastTransitionTime: "2026-11-28T04:21:07.250Z"
"""


def _deployment_doc() -> dict[str, Any]:
    (doc,) = load_documents(DEPLOYMENT_YAML)
    return doc


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as info:
        to_proto(doc)
    return str(info.value)


# ---------------------------------------------------------------- to_proto


def test_deployment_to_proto_fields() -> None:
    dep = to_proto(_deployment_doc())
    assert isinstance(dep, pb.Deployment)
    assert dep.api_version == "apps/v1" and dep.kind == "Deployment"
    assert dep.metadata.name == "web" and dep.metadata.namespace == "shop"
    assert dict(dep.metadata.labels) == {"app": "web", "app.kubernetes.io/part-of": "shop"}
    assert dep.metadata.annotations["note"] == "2026-01-02"  # not turned into a date by YAML
    assert dep.metadata.creation_timestamp.seconds == 1795839666
    assert dep.metadata.generation == 3
    assert dep.metadata.owner_references[0].uid == "1234"
    spec = dep.spec
    assert spec.HasField("replicas") and spec.replicas == 0
    assert spec.HasField("revision_history_limit") and spec.revision_history_limit == 0
    assert spec.progress_deadline_seconds == 600
    assert spec.selector.match_expressions[0].values == ["front", "edge"]
    rolling = spec.strategy.rolling_update
    assert rolling.max_surge.WhichOneof("value") == "str_val" and rolling.max_surge.str_val == "25%"
    assert rolling.max_unavailable.WhichOneof("value") == "int_val" and rolling.max_unavailable.int_val == 0
    pod = spec.template.spec
    assert pod.tolerations[0].has_toleration_seconds and pod.tolerations[0].toleration_seconds == 0
    assert not pod.tolerations[1].has_toleration_seconds
    container = pod.containers[0]
    assert container.resources.limits["cpu"] == "1"
    assert container.readiness_probe.http_get.port.str_val == "http"
    assert container.liveness_probe.tcp_socket.port.int_val == 8080
    assert dep.status.conditions[0].last_transition_time.nanos == 250_000_000


def test_owner_reference_uid_must_be_string() -> None:
    # YAML reads an unquoted `uid: 1234` as an integer; a string field refuses it with its path.
    doc = _deployment_doc()
    doc["metadata"]["ownerReferences"][0]["uid"] = 1234
    message = _error(doc)
    assert message == "metadata.ownerReferences[0].uid: expected string, got integer 1234"


def test_round_trip_full_deployment() -> None:
    doc = _deployment_doc()
    dep = to_proto(doc)
    back = to_dict(dep)
    # Timestamps print in RFC3339; everything else comes back exactly as written.
    assert back == doc
    assert list(back)[:5] == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert to_proto(back) == dep
    assert to_proto(json.loads(json.dumps(back))) == dep


def test_unset_optionals_and_defaults_are_omitted() -> None:
    dep = to_proto({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}})
    assert isinstance(dep, pb.Deployment)
    assert not dep.HasField("spec") and not dep.spec.HasField("replicas")
    assert to_dict(dep) == {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    dep.spec.replicas = 0
    assert to_dict(dep)["spec"] == {"replicas": 0}
    dep.spec.ClearField("replicas")
    dep.spec.min_ready_seconds = 0
    dep.spec.paused = False
    assert to_dict(dep)["spec"] == {}


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("v1", "Pod"), ("v1", "Node"), ("apps/v1", "ReplicaSet"), ("v1", "Event"), ("v1", "Endpoints")],
)
def test_every_kind_converts(api_version: str, kind: str) -> None:
    obj = to_proto({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})
    assert isinstance(obj, kinds.BY_KIND[kind].message)
    assert to_dict(obj) == {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}


def test_service_int_or_string_and_acronyms() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "alt", "port": 81, "targetPort": 8081},
            ],
        },
    }
    svc = to_proto(doc)
    assert isinstance(svc, pb.Service)
    assert svc.spec.cluster_ip == "10.96.0.10"
    assert svc.spec.ports[0].target_port.str_val == "http"
    assert svc.spec.ports[1].target_port.int_val == 8081
    assert to_dict(svc) == doc
    assert 'unknown field "spec.clusterIp"' in _error(
        {"apiVersion": "v1", "kind": "Service", "spec": {"clusterIp": "1.2.3.4"}}
    )


def test_pod_status_acronyms_and_container_state() -> None:
    pod = pb.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = "p"
    pod.status.pod_ip = "10.0.0.5"
    pod.status.host_ip = "192.168.1.2"
    status = pod.status.container_statuses.add(name="c", container_id="containerd://abc", image_id="sha")
    status.state.running.SetInParent()  # running with no start time yet is still "running"
    out = to_dict(pod)["status"]
    assert out["podIP"] == "10.0.0.5" and out["hostIP"] == "192.168.1.2"
    assert out["containerStatuses"] == [
        {"name": "c", "state": {"running": {}}, "imageID": "sha", "containerID": "containerd://abc"}
    ]
    assert to_proto(to_dict(pod)) == pod


def test_node_quantities_and_pod_cidr() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": 2, "memory": "4Gi", "pods": 110}, "allocatable": {"cpu": 1.5}},
    }
    node = to_proto(doc)
    assert isinstance(node, pb.Node)
    assert node.spec.pod_cidr == "10.244.1.0/24"
    assert dict(node.status.capacity) == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert node.status.allocatable["cpu"] == "1.5"


@pytest.mark.parametrize(("given", "stored"), [(1, "1"), (1000, "1000"), (0.5, "0.5"), (2.0, "2"), ("250m", "250m")])
def test_resource_quantities_accept_numbers(given: object, stored: str) -> None:
    pod = to_proto(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": given}}}]},
        }
    )
    assert isinstance(pod, pb.Pod)
    assert pod.spec.containers[0].resources.requests["cpu"] == stored


def test_toleration_seconds_presence() -> None:
    pod = pb.Pod()
    forever = pod.spec.tolerations.add(key="a", operator="Exists", effect="NoExecute")
    immediate = pod.spec.tolerations.add(key="b", operator="Exists", effect="NoExecute")
    immediate.has_toleration_seconds = True
    stale = pod.spec.tolerations.add(key="c", toleration_seconds=5)  # no has_ flag: unset
    assert forever and stale
    out = to_dict(pod)["spec"]["tolerations"]
    assert out == [
        {"key": "a", "operator": "Exists", "effect": "NoExecute"},
        {"key": "b", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0},
        {"key": "c"},
    ]
    assert "hasTolerationSeconds" in _error(
        {"apiVersion": "v1", "kind": "Pod", "spec": {"tolerations": [{"hasTolerationSeconds": True}]}}
    )


def test_null_means_unset() -> None:
    pod = to_proto(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": None, "labels": None},
            "spec": None,
            "status": {},
        }
    )
    assert isinstance(pod, pb.Pod)
    assert not pod.HasField("spec") and not pod.metadata.HasField("creation_timestamp")
    assert pod.HasField("status")
    assert to_dict(pod) == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {}}


# ---------------------------------------------------------------- to_proto errors


def test_unknown_kind_or_version() -> None:
    assert _error({"apiVersion": "v1", "kind": "Deployment"}) == 'no matches for kind "Deployment" in version "v1"'
    assert _error({"apiVersion": "v1", "kind": "CronJob"}) == 'no matches for kind "CronJob" in version "v1"'
    assert _error({"apiVersion": "v1"}) == "kind not set"
    assert _error({"kind": "Pod"}) == 'apiVersion not set for kind "Pod"'


def test_unknown_field_paths() -> None:
    doc = _deployment_doc()
    doc["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    assert _error(doc) == 'unknown field "spec.template.spec.containers[0].imagee"'
    doc["spec"]["replicaz"] = 3
    doc["bogus"] = 1
    with pytest.raises(ManifestError) as info:
        to_proto(doc)
    # Every problem is reported, in document order.
    assert info.value.errors == [
        'unknown field "spec.template.spec.containers[0].imagee"',
        'unknown field "spec.replicaz"',
        'unknown field "bogus"',
    ]
    assert str(info.value) == ", ".join(info.value.errors)


def _pod_doc(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"containers": {"name": "c"}}, "spec.containers: expected array, got object"),
        ({"containers": ["c"]}, 'spec.containers[0]: expected object, got string "c"'),
        ({"containers": [{"name": 7}]}, "spec.containers[0].name: expected string, got integer 7"),
        ({"containers": [{"args": ["a", 1]}]}, "spec.containers[0].args[1]: expected string, got integer 1"),
        ({"hostNetwork": "yes"}, 'spec.hostNetwork: expected boolean, got string "yes"'),
        ({"terminationGracePeriodSeconds": "30"}, 'expected integer, got string "30"'),
        ({"terminationGracePeriodSeconds": True}, "expected integer, got boolean true"),
        ({"terminationGracePeriodSeconds": 1.5}, "expected integer, got number 1.5"),
        (
            {"containers": [{"ports": [{"containerPort": 2**31}]}]},
            "spec.containers[0].ports[0].containerPort: 2147483648 is out of range for int32",
        ),
        (
            {"containers": [{"livenessProbe": {"httpGet": {"port": 8.5}}}]},
            "spec.containers[0].livenessProbe.httpGet.port: expected integer or string, got number 8.5",
        ),
        (
            {"containers": [{"livenessProbe": {"tcpSocket": {"port": [80]}}}]},
            "spec.containers[0].livenessProbe.tcpSocket.port: expected integer or string, got array",
        ),
        (
            {"containers": [{"resources": {"limits": {"memory": True}}}]},
            "spec.containers[0].resources.limits.memory: expected quantity (string or number), got boolean true",
        ),
        ({"nodeSelector": {"disk": 1}}, "spec.nodeSelector.disk: expected string, got integer 1"),
        ({"nodeSelector": ["disk"]}, "spec.nodeSelector: expected object, got array"),
        (
            {"tolerations": [{"tolerationSeconds": "60"}]},
            'spec.tolerations[0].tolerationSeconds: expected integer, got string "60"',
        ),
    ],
)
def test_type_errors_name_path_and_expected_type(spec: dict[str, Any], message: str) -> None:
    assert message in _error(_pod_doc(spec))


def test_label_values_must_be_strings() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {"version": 2, "app.kubernetes.io/enabled": True, "ok": "yes"}},
    }
    with pytest.raises(ManifestError) as info:
        to_proto(doc)
    assert info.value.errors == [
        "metadata.labels.version: expected string, got integer 2",
        "metadata.labels[app.kubernetes.io/enabled]: expected string, got boolean true",
    ]


def test_timestamp_errors() -> None:
    assert 'metadata.creationTimestamp: expected RFC3339 timestamp such as "2026-11-28T04:21:06Z", got "yesterday"' in (
        _error({"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": "yesterday"}})
    )
    assert "metadata.creationTimestamp: expected RFC3339 timestamp string, got integer 5" in _error(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": 5}}
    )


def test_optional_int_wrong_type() -> None:
    message = _error({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"replicas": "3"}})
    assert message == 'spec.replicas: expected integer, got string "3"'


def test_document_not_a_mapping_and_non_string_keys() -> None:
    with pytest.raises(ManifestError, match="expected object, got array"):
        to_proto([1, 2])  # type: ignore[arg-type]
    assert "metadata.labels: keys must be strings, got integer 1" in _error(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {1: "a"}}}
    )


def test_manifest_error_is_value_error() -> None:
    assert issubclass(ManifestError, ValueError)


# ---------------------------------------------------------------- to_dict / list_to_dict


def test_to_dict_from_envelope_and_registry_kind() -> None:
    pod = pb.Pod()
    pod.metadata.name = "p"
    pod.metadata.labels["b"] = "2"
    pod.metadata.labels["a"] = "1"
    out = to_dict(kinds.wrap(pod))
    # apiVersion/kind come from the registry even when the stored object lacks them.
    assert out == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}
    assert list(out["metadata"]["labels"]) == ["a", "b"]


def test_to_dict_event_top_level_fields_and_int64_numbers() -> None:
    event = pb.Event(reason="Scheduled", message="assigned", count=2, type="Normal")
    event.metadata.name = "ev"
    event.metadata.deletion_grace_period_seconds = 2**40
    event.involved_object.kind = "Pod"
    event.involved_object.name = "p"
    event.first_timestamp.FromJsonString("2026-11-28T04:21:06Z")
    out = to_dict(event)
    assert list(out) == [
        "apiVersion",
        "kind",
        "metadata",
        "involvedObject",
        "reason",
        "message",
        "firstTimestamp",
        "count",
        "type",
    ]
    assert out["firstTimestamp"] == "2026-11-28T04:21:06Z"
    assert out["metadata"]["deletionGracePeriodSeconds"] == 2**40
    event.api_version, event.kind = "v1", "Event"
    assert to_proto(out) == event


def test_to_dict_int_or_string_zero_and_empty() -> None:
    dep = pb.Deployment()
    dep.spec.strategy.rolling_update.max_unavailable.int_val = 0
    dep.spec.strategy.rolling_update.max_surge.SetInParent()  # neither int nor string: omitted
    assert to_dict(dep)["spec"] == {"strategy": {"rollingUpdate": {"maxUnavailable": 0}}}


def test_list_to_dict() -> None:
    pod = pb.Pod()
    pod.metadata.name = "p"
    svc = pb.Service()
    svc.metadata.name = "s"
    assert list_to_dict([pod, svc], resource_version="42") == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
        ],
        "metadata": {"resourceVersion": "42"},
    }
    assert list_to_dict([])["metadata"] == {"resourceVersion": ""}


def test_output_dumps_to_yaml_and_loads_back() -> None:
    dep = to_proto(_deployment_doc())
    text = yaml.safe_dump(to_dict(dep), sort_keys=False)
    (loaded,) = load_documents(text)
    assert to_proto(loaded) == dep


# ---------------------------------------------------------------- load_documents


def test_load_multi_document_yaml_skips_empty() -> None:
    text = """
---
# only a comment
---
apiVersion: v1
kind: Pod
metadata: {name: a}
---
---
apiVersion: v1
kind: Service
metadata: {name: b}
...
"""
    docs = load_documents(text)
    assert [d["metadata"]["name"] for d in docs] == ["a", "b"]
    assert load_documents("") == []


def test_load_expands_lists() -> None:
    listing = list_to_dict([pb.Pod(metadata=pb.ObjectMeta(name="a")), pb.Pod(metadata=pb.ObjectMeta(name="b"))])
    text = yaml.safe_dump(listing) + "---\napiVersion: v1\nkind: Node\nmetadata: {name: n}\n"
    docs = load_documents(text)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Pod", "a"), ("Pod", "b"), ("Node", "n")]
    typed = load_documents("apiVersion: v1\nkind: PodList\nitems:\n- {apiVersion: v1, kind: Pod}\n")
    assert typed == [{"apiVersion": "v1", "kind": "Pod"}]


def test_load_json() -> None:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p\tq"}}
    assert load_documents(json.dumps(doc, indent="\t")) == [doc]
    assert load_documents(json.dumps(doc) + "\n" + json.dumps(doc)) == [doc, doc]


def test_load_keeps_dates_as_strings() -> None:
    (doc,) = load_documents("a: 2026-01-02\nb: 2026-11-28T04:21:06Z\nc: 1\nd: true\n")
    assert doc == {"a": "2026-01-02", "b": "2026-11-28T04:21:06Z", "c": 1, "d": True}


def test_load_yaml_error_names_line() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   bad: indent\n"
    with pytest.raises(ManifestError) as info:
        load_documents(text)
    assert str(info.value).startswith("error parsing YAML at line 5, column 7: ")
    with pytest.raises(ManifestError, match=r"line 2"):
        load_documents("a: [1, 2\nb: c\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "document 1: expected an object, got array"),
        ("a: 1\n---\njust a string\n", 'document 2: expected an object, got string "just a string"'),
        ("kind: List\nitems: {a: 1}\n", "document 1.items: expected array, got object"),
        ("kind: List\nitems: [1]\n", "document 1.items[0]: expected an object, got integer 1"),
    ],
)
def test_load_rejects_non_objects(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_documents(text)
    assert str(info.value) == message
