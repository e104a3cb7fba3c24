"""kybctl's pure parts: kubectl's ages, cells and layout, argument parsing, error wording, apply's merge."""

from __future__ import annotations

import grpc
import pytest

from kybernetes.core.api import kinds, manifest
from kybernetes.ctl.cli import printers
from kybernetes.ctl.cli.apply import LAST_APPLIED, holds, last_applied_text, merge, plan_update, removes_something
from kybernetes.ctl.cli.args import parse_resource_args, resolve_kind, type_name
from kybernetes.ctl.cli.create import container_name, deployment_for
from kybernetes.ctl.cli.describe import Writer
from kybernetes.ctl.cli.edit_cmds import apply_map_change, parse_map_args, set_images
from kybernetes.ctl.cli.errors import CliError, error_line
from kybernetes.ctl.cli.settings import parse_duration
from kybernetes.ctl.client import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from kybernetes.proto import objects_pb2 as pb

MIN, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (125, "2m5s"),
    (9 * MIN + 59, "9m59s"), (10 * MIN + 30, "10m"), (179 * MIN, "179m"), (3 * HOUR, "3h"),
    (3 * HOUR + 30 * MIN, "3h30m"), (8 * HOUR + 5 * MIN, "8h"), (47 * HOUR, "47h"), (48 * HOUR, "2d"),
    (50 * HOUR, "2d2h"), (8 * DAY, "8d"), (400 * DAY, "400d"), (730 * DAY, "2y"), (740 * DAY, "2y10d"),
    (9 * 365 * DAY, "9y"),
])
def test_human_duration_matches_kubectl(seconds: int, shown: str):
    assert printers.human_duration(seconds) == shown


def test_age_of_unset_timestamp_is_unknown():
    assert printers.age(pb.ObjectMeta().creation_timestamp, 1000.0) == "<unknown>"
    meta = pb.ObjectMeta()
    meta.creation_timestamp.FromSeconds(1000)
    assert printers.age(meta.creation_timestamp, 1005.4) == "5s"


def _pod(*states: tuple[str, str], phase: str = "Running", ready: bool = False) -> pb.Pod:
    pod = pb.Pod()
    pod.metadata.name = "p"
    pod.status.phase = phase
    for index, (state, reason) in enumerate(states):
        pod.spec.containers.add(name=f"c{index}", image="i")
        status = pod.status.container_statuses.add(name=f"c{index}", ready=ready)
        if state == "waiting":
            status.state.waiting.reason = reason
        elif state == "terminated":
            status.state.terminated.reason = reason
            if reason == "":
                status.state.terminated.exit_code = 137
        elif state == "signal":
            status.state.terminated.signal = 9
        else:
            status.state.running.SetInParent()
    return pod


def test_pod_status_follows_kubectl():
    assert printers.pod_status(_pod(("waiting", "ContainerCreating"), phase="Pending")) == "ContainerCreating"
    assert printers.pod_status(_pod(("waiting", "CrashLoopBackOff"))) == "CrashLoopBackOff"
    assert printers.pod_status(_pod(("terminated", "Completed"), phase="Succeeded")) == "Completed"
    assert printers.pod_status(_pod(("terminated", "OOMKilled"))) == "OOMKilled"
    assert printers.pod_status(_pod(("terminated", ""))) == "ExitCode:137"
    assert printers.pod_status(_pod(("signal", ""))) == "Signal:9"
    # The first container's reason wins (kubectl walks the statuses backwards).
    assert printers.pod_status(_pod(("waiting", "ErrImagePull"), ("waiting", "ContainerCreating"))) == "ErrImagePull"
    # A completed sidecar next to a running, ready container: Running when the pod is Ready, else NotReady.
    mixed = _pod(("running", ""), ("terminated", "Completed"), ready=True)
    assert printers.pod_status(mixed) == "NotReady"
    mixed.status.conditions.add(type="Ready", status="True")
    assert printers.pod_status(mixed) == "Running"
    running = _pod(("running", ""), ready=True)
    assert printers.pod_status(running) == "Running" and printers.pod_ready(running) == "1/1"
    running.metadata.deletion_timestamp.FromSeconds(5)
    assert printers.pod_status(running) == "Terminating"
    running.status.reason = "NodeLost"
    assert printers.pod_status(running) == "Unknown"
    assert printers.pod_status(pb.Pod()) == "Pending"


def test_restarts_show_time_since_the_last_one():
    pod = _pod(("running", ""), ("running", ""))
    assert printers.pod_restarts(pod, 1000.0) == "0"
    pod.status.container_statuses[0].restart_count = 2
    pod.status.container_statuses[1].restart_count = 1
    pod.status.container_statuses[1].last_state.terminated.finished_at.FromSeconds(990)
    assert printers.pod_restarts(pod, 1000.0) == "3 (10s ago)"


def test_node_status_and_roles():
    node = pb.Node()
    assert printers.node_status(node) == "Unknown" and printers.node_roles(node) == "<none>"
    node.status.conditions.add(type="MemoryPressure", status="False")
    node.status.conditions.add(type="Ready", status="True")
    assert printers.node_status(node) == "Ready"
    node.status.conditions[1].status = "Unknown"
    node.spec.unschedulable = True
    assert printers.node_status(node) == "NotReady,SchedulingDisabled"
    node.metadata.labels.update({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "",
                                 "kubernetes.io/role": "edge"})
    assert printers.node_roles(node) == "control-plane,edge,worker"


def test_service_ports_and_endpoints():
    svc = pb.Service()
    assert printers.service_ports(svc) == "<none>"
    svc.spec.ports.add(port=80, node_port=30080)
    svc.spec.ports.add(port=53, protocol="UDP")
    assert printers.service_ports(svc) == "80:30080/TCP,53/UDP"
    ep = pb.Endpoints()
    assert printers.endpoints_string(ep) == "<none>"
    subset = ep.subsets.add()
    subset.addresses.add(ip="10.0.0.1")
    assert printers.endpoints_string(ep) == "10.0.0.1"
    subset.ports.add(port=80)
    subset.ports.add(port=443)
    subset.addresses.add(ip="10.0.0.2")
    assert printers.endpoints_string(ep) == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."


def test_tabulate_pads_like_tabwriter():
    lines = printers.tabulate([["NAME", "IP", "AGE"], ["a-long-name", "10.0.0.1", "5s"]])
    assert lines == ["NAME          IP         AGE", "a-long-name   10.0.0.1   5s"]
    assert printers.tabulate([["A", "B"]]) == ["A     B"]  # minimum width 6
    assert printers.tabulate([["A", "B"]], widths=[10]) == ["A         B"]


def test_table_options_add_columns():
    pod = _pod(("running", ""), ready=True)
    pod.metadata.namespace = "ns"
    pod.metadata.labels.update({"app": "web", "tier": "fe"})
    kind = kinds.lookup("pods")
    options = printers.TableOptions(all_namespaces=True, show_kind=True, show_labels=True, label_columns=("app",),
                                    watch_events=True)
    table = printers.Table(kind, options)
    assert table.header() == ["EVENT", "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "LABELS"]
    row = table.row(pod, 0.0, event="ADDED")
    assert row[:3] == ["ADDED", "ns", "pod/p"] and row[-2:] == ["web", "app=web,tier=fe"]
    assert printers.Table(kinds.lookup("no"), printers.TableOptions(all_namespaces=True)).header()[0] == "NAME"


def test_writer_aligns_blocks_of_keys():
    w = Writer()
    w.item(0, "Name", "web")
    w.mapping(0, "Labels", {"b": "2", "a": "1"})
    w.item(0, "Containers")
    w.item(1, "main")
    w.item(2, "Image", "x")
    w.item(2, "Restart Count", 0)
    assert w.render().splitlines() == [
        "Name:    web", "Labels:  a=1", "         b=2", "Containers:", "  main:", "    Image:          x",
        "    Restart Count:  0"]


# ---------------------------------------------------------------- arguments and errors


def test_resource_arguments():
    parsed = parse_resource_args(["po,deploy", "a", "b"])
    assert [k.kind for k in parsed.kinds] == ["Pod", "Deployment"]
    assert [(t.kind.kind, t.name) for t in parsed.targets] == [("Pod", "a"), ("Pod", "b"), ("Deployment", "a"),
                                                                ("Deployment", "b")]
    parsed = parse_resource_args(["pod/a", "deployments.apps/b"])
    assert [(t.kind.kind, t.name) for t in parsed.targets] == [("Pod", "a"), ("Deployment", "b")]
    assert [k.resource for k in parse_resource_args(["all"], allow_all=True).kinds] == [
        "pods", "services", "deployments", "replicasets"]
    with pytest.raises(CliError, match="no need to specify a resource type as a separate argument"):
        parse_resource_args(["pods", "pod/a"])
    with pytest.raises(CliError, match='resource type "deployments.core"'):
        resolve_kind("deployments.core")
    assert resolve_kind("Deployment.apps").kind == "Deployment" and resolve_kind("svc").kind == "Service"
    assert type_name(resolve_kind("rs")) == "replicaset.apps" and type_name(resolve_kind("ep")) == "endpoints"


def test_durations():
    assert parse_duration("90", flag="--timeout") == 90
    assert parse_duration("2m", flag="--timeout") == 120
    assert parse_duration("500ms", flag="--timeout") == 0.5
    with pytest.raises(CliError, match='invalid argument "soon" for "--timeout" flag'):
        parse_duration("soon", flag="--timeout")


def test_error_lines_in_kubectl_form():
    assert error_line(NotFoundError('pods "x" not found')) == 'Error from server (NotFound): pods "x" not found'
    assert error_line(AlreadyExistsError('pods "x" already\nexists')) == \
        'Error from server (AlreadyExists): pods "x" already exists'
    assert error_line(ConflictError("stale")) == "Error from server (Conflict): stale"
    assert error_line(InvalidError('Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be '
                                   "greater than or equal to 0")) == \
        'The Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    assert error_line(InvalidError("field label not supported: x")) == \
        "Error from server (BadRequest): field label not supported: x"
    refused = UnavailableError("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
                               "Failed to connect to remote host: Connection refused")
    assert error_line(refused, server="127.0.0.1:1") == \
        "Unable to connect to the server: dial tcp 127.0.0.1:1: connect: connection refused"
    timeout = UnavailableError("Deadline Exceeded", code=grpc.StatusCode.DEADLINE_EXCEEDED)
    assert error_line(timeout) == "Unable to connect to the server: Deadline Exceeded"
    assert error_line(UnavailableError("etcd unavailable: x")) == \
        "Error from server (ServiceUnavailable): etcd unavailable: x"
    assert error_line(ApiError("boom")) == "Error from server (InternalError): boom"


def test_label_changes_and_overwrite_rule():
    change = parse_map_args(["app=web", "old-"], what="label", validate=True)
    assert change.set == {"app": "web"} and change.remove == ("old",)
    with pytest.raises(CliError, match="invalid label spec"):
        parse_map_args(["Bad Key=1"], what="label", validate=True)
    with pytest.raises(CliError, match="both modify and remove"):
        parse_map_args(["a=1", "a-"], what="label", validate=True)
    labels = {"app": "web", "old": "x"}
    with pytest.raises(CliError, match=r"^error: 'app' already has a value \(web\), and --overwrite is false$"):
        apply_map_change(labels, parse_map_args(["app=db"], what="label", validate=True), overwrite=False,
                         what="label")
    assert labels == {"app": "web", "old": "x"}
    assert apply_map_change(labels, change, overwrite=False, what="label") is True and labels == {"app": "web"}
    assert apply_map_change(labels, change, overwrite=False, what="label") is False


def test_set_images():
    spec = pb.PodSpec()
    spec.containers.add(name="web", image="a:1")
    spec.containers.add(name="side", image="b:1")
    assert set_images(spec, {"web": "a:2"}) and [c.image for c in spec.containers] == ["a:2", "b:1"]
    assert set_images(spec, {"*": "c:1", "side": "s:9"})
    assert [c.image for c in spec.containers] == ["c:1", "s:9"]
    assert not set_images(spec, {"web": "c:1"})
    with pytest.raises(CliError, match='unable to find container named "nope"'):
        set_images(spec, {"nope": "x"})


def test_create_deployment_generator():
    assert container_name("registry.local:5000/team/hello:1.2") == "hello"
    assert container_name("busybox@sha256:abc") == "busybox"
    assert container_name("my_app") == "my-app"
    d = deployment_for(name="web", images=["a/web:1", "b/web:2"], replicas=2, port=80, command=["sleep", "1"],
                       namespace="ns")
    assert [c.name for c in d.spec.template.spec.containers] == ["web", "web-2"]
    first = d.spec.template.spec.containers[0]
    assert [p.container_port for p in first.ports] == [80] and list(first.command) == ["sleep", "1"]
    assert dict(d.spec.selector.match_labels) == {"app": "web"} == dict(d.spec.template.metadata.labels)
    assert d.spec.HasField("replicas") and d.spec.replicas == 2


# ---------------------------------------------------------------- apply's three-way merge


def test_merge_sets_new_fields_keeps_others_and_drops_removed_ones():
    live = {"spec": {"replicas": 5, "paused": True, "template": {"x": [1, 2]}}, "metadata": {"labels": {"a": "1"}}}
    new = {"spec": {"template": {"x": [3]}}, "metadata": {"labels": {"b": "2"}}}
    last = {"spec": {"paused": True}, "metadata": {"labels": {"a": "1"}}}
    assert merge(live, new, last) == {"spec": {"replicas": 5, "template": {"x": [3]}},
                                      "metadata": {"labels": {"b": "2"}}}
    assert merge(live, new, None)["spec"]["paused"] is True
    assert holds({"a": {"b": 1, "c": 2}, "l": [{"x": 1, "y": 2}]}, {"a": {"b": 1}, "l": [{"x": 1}]})
    assert not holds({"l": [{"x": 1}, {"x": 2}]}, {"l": [{"x": 1}]})
    assert removes_something(live, new, last) and not removes_something(live, last, last)


def _manifest_deployment(image: str) -> pb.Deployment:
    return manifest.to_proto({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}})


def test_plan_update_is_none_when_the_live_object_already_matches():
    applied = _manifest_deployment("web:1")
    live = pb.Deployment()
    live.CopyFrom(applied)
    live.metadata.uid, live.metadata.resource_version = "u1", "7"
    live.metadata.annotations[LAST_APPLIED] = last_applied_text(applied)
    live.metadata.annotations["deployment.kubernetes.io/revision"] = "1"  # set by a controller
    live.spec.replicas = 4  # scaled by someone else
    live.spec.template.spec.containers[0].image_pull_policy = "IfNotPresent"  # a server default
    live.status.replicas = 4
    assert plan_update(live, applied) is None

    desired = plan_update(live, _manifest_deployment("web:2"))
    assert desired is not None
    assert desired.spec.template.spec.containers[0].image == "web:2"
    assert desired.spec.replicas == 4 and desired.metadata.uid == "u1" and desired.metadata.resource_version == "7"
    assert desired.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert '"image":"web:2"' in desired.metadata.annotations[LAST_APPLIED]
