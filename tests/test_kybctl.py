"""kybctl end to end: the real CLI (a child process, as a user runs it) against a real kyb-master and etcd.

Objects the CLI does not create (pods with statuses, nodes, events) are written
directly through the Python client, since no controllers or kubelets run here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.builders import make_pod
from harness.master import REPO, MasterProcess
from harness.ports import free_port
from harness.waiting import until
from kybernetes.ctl.cli.runner import wait_connected
from kybernetes.ctl.client import Client, ConflictError, NotFoundError
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import objects_pb2 as pb

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, team: a}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: kyb/web:1
        ports: [{containerPort: 8080}]
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - name: main
    image: kyb/busybox:1
"""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def _command(server: str | None, args: tuple[str, ...], *, kubeconfig: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "kybernetes.ctl.cli.main", *(["--server", server] if server else []),
            *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), *args]


async def kyb(master: MasterProcess | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
              server: str | None = None, timeout: float = 60.0) -> Result:
    """Run kybctl as a child process and collect its exit code and output."""
    address = server if server is not None else (master.address if master else None)
    proc = await asyncio.create_subprocess_exec(
        *_command(address, args), cwd=REPO,
        env={**os.environ, **({"KYBCONFIG": str(master.kubeconfig)} if master else {}), **(env or {})},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def ok(master: MasterProcess, *args: str, stdin: str | None = None) -> Result:
    """kybctl that must succeed silently on stderr."""
    result = await kyb(master, *args, stdin=stdin)
    assert result.code == 0, (args, result)
    assert "Traceback" not in result.err
    return result


async def fails(master: MasterProcess | None, *args: str, stdin: str | None = None, server: str | None = None,
                env: dict[str, str] | None = None) -> str:
    """kybctl that must fail with exit code 1 and exactly one line on stderr; returns that line."""
    result = await kyb(master, *args, stdin=stdin, server=server, env=env)
    assert result.code == 1, (args, result)
    lines = result.err.splitlines()
    assert len(lines) == 1, (args, result.err)
    return lines[0]


def table(text: str) -> list[dict[str, str]]:
    """Parse a kubectl table by its header's column positions."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    names = re.split(r"\s{2,}", header.strip())
    starts = []
    pos = 0
    for name in names:
        pos = header.index(name, pos)
        starts.append(pos)
        pos += len(name)
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def by_name(rows: list[dict[str, str]], key: str = "NAME") -> dict[str, dict[str, str]]:
    return {row[key]: row for row in rows}


@pytest.fixture
async def master(etcd: EtcdProcess, tmp_path: Path) -> AsyncIterator[MasterProcess]:
    """A kyb-master with its controllers; Nodes made here have no kubelet, so they are never declared lost."""
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "master.log",
                             extra_args=["--node-monitor-grace-period", "3600"]) as proc:
        yield proc


@pytest.fixture
async def client(master: MasterProcess) -> AsyncIterator[Client]:
    """A client of the master, connected before the test starts."""
    async with master.client() as c:
        await wait_connected(c, timeout=10)
        yield c


async def set_pod_status(client: Client, name: str, *, phase: str, ip: str = "",
                         container: dict | None = None) -> pb.Pod:
    """Write a pod's status as a kubelet would (again if the scheduler wrote meanwhile)."""
    for _ in range(20):
        try:
            return await _set_pod_status(client, name, phase=phase, ip=ip, container=container)
        except ConflictError:
            continue
    raise AssertionError(f"pod {name}: status write kept conflicting")


async def _set_pod_status(client: Client, name: str, *, phase: str, ip: str,
                          container: dict | None) -> pb.Pod:
    pod = await client.get("pods", name)
    pod.status.phase = phase
    pod.status.pod_ip = ip
    pod.status.host_ip = "10.0.0.1" if ip else ""
    if container is not None:
        status = pod.status.container_statuses.add(name="main", image="kyb/busybox:1")
        status.ready = container.get("ready", False)
        status.restart_count = container.get("restarts", 0)
        state = container["state"]
        if state == "running":
            status.state.running.started_at.GetCurrentTime()
        elif state.startswith("waiting:"):
            status.state.waiting.reason = state.split(":", 1)[1]
        elif state.startswith("terminated:"):
            status.state.terminated.reason = state.split(":", 1)[1]
            status.state.terminated.exit_code = 0 if state.endswith("Completed") else 1
        if container.get("last_finished_ago") is not None:
            status.last_state.terminated.exit_code = 1
            status.last_state.terminated.reason = "Error"
            status.last_state.terminated.finished_at.FromSeconds(int(time.time()) - container["last_finished_ago"])
    return await client.update_status(pod)


def make_node(name: str, *, ready: str | None = "True", unschedulable: bool = False,
              roles: tuple[str, ...] = ()) -> pb.Node:
    node = pb.Node()
    node.metadata.name = name
    for role in roles:
        node.metadata.labels[f"node-role.kubernetes.io/{role}"] = ""
    node.spec.unschedulable = unschedulable
    if ready is not None:
        node.status.conditions.add(type="Ready", status=ready, reason="KubeletReady")
    node.status.addresses.add(type="InternalIP", address="10.0.0.7")
    node.status.node_info.kubelet_version = "v0.1.0"
    node.status.node_info.os_image = "Debian GNU/Linux 12 (bookworm)"
    node.status.node_info.kernel_version = "6.1.0"
    node.status.node_info.container_runtime_version = "containerd://1.6.20"
    node.status.capacity.update({"cpu": "2", "memory": "4Gi", "pods": "110"})
    return node


# ---------------------------------------------------------------- apply


async def test_apply_fills_defaults_and_is_idempotent(master: MasterProcess, client: Client, tmp_path: Path):
    path = tmp_path / "web.yaml"
    path.write_text(DEPLOYMENT)
    assert (await ok(master, "apply", "-f", str(path))).out == "deployment.apps/web created\n"

    doc = json.loads((await ok(master, "get", "deploy", "web", "-o", "json")).out)
    assert doc["apiVersion"] == "apps/v1" and doc["kind"] == "Deployment"
    assert doc["metadata"]["namespace"] == "default" and doc["metadata"]["uid"]
    spec = doc["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                                            "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert spec["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]

    # The same manifest again changes nothing.
    generation = (await client.get("deployments", "web")).metadata.generation
    assert (await ok(master, "apply", "-f", str(path))).out == "deployment.apps/web unchanged\n"
    assert (await client.get("deployments", "web")).metadata.generation == generation

    # A field owned by someone else (replicas, set by scale) survives an apply that does not mention it.
    await ok(master, "scale", "deployment/web", "--replicas=3")
    assert (await ok(master, "apply", "-f", str(path))).out == "deployment.apps/web unchanged\n"
    scaled = await client.get("deployments", "web")
    assert scaled.spec.replicas == 3 and scaled.metadata.generation == generation + 1

    # A changed manifest is configured: set fields win, a dropped label goes, server fields stay.
    path.write_text(DEPLOYMENT.replace("kyb/web:1", "kyb/web:2").replace(", team: a", ""))
    assert (await ok(master, "apply", "-f", str(path))).out == "deployment.apps/web configured\n"
    live = await client.get("deployments", "web")
    assert live.spec.template.spec.containers[0].image == "kyb/web:2"
    assert dict(live.metadata.labels) == {"app": "web"}
    assert live.spec.replicas == 3 and live.metadata.uid == doc["metadata"]["uid"]
    assert live.metadata.generation == generation + 2
    assert (await ok(master, "apply", "-f", str(path))).out == "deployment.apps/web unchanged\n"

    # A manifest that now sets replicas makes it so.
    path.write_text(path.read_text().replace("spec:\n  selector", "spec:\n  replicas: 2\n  selector", 1))
    assert (await ok(master, "apply", "-f", str(path))).out == "deployment.apps/web configured\n"
    assert (await client.get("deployments", "web")).spec.replicas == 2


async def test_apply_multi_document_directory_and_stdin(master: MasterProcess, client: Client, tmp_path: Path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "b-pods.yaml").write_text(POD.format(name="p1", app="a") + "---\n" + POD.format(name="p2", app="b"))
    (manifests / "a-deploy.yml").write_text(DEPLOYMENT)
    (manifests / "notes.txt").write_text("not a manifest")
    result = await ok(master, "apply", "-f", str(manifests))
    assert result.lines == ["deployment.apps/web created", "pod/p1 created", "pod/p2 created"]

    result = await ok(master, "apply", "-f", "-", "-n", "other", stdin=POD.format(name="p3", app="c"))
    assert result.lines == ["pod/p3 created"]
    assert (await client.get("pods", "p3", namespace="other")).metadata.labels["app"] == "c"

    # Two -f flags; a List document; -o name.
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(POD.format(name="p4", app="d"))]})
    (tmp_path / "list.json").write_text(listed)
    result = await ok(master, "apply", "-f", str(tmp_path / "list.json"), "-f", str(manifests / "b-pods.yaml"))
    assert result.lines == ["pod/p4 created", "pod/p1 unchanged", "pod/p2 unchanged"]
    assert (await ok(master, "apply", "-o", "name", "-f", str(manifests / "b-pods.yaml"))).lines == ["pod/p1",
                                                                                                       "pod/p2"]


async def test_stale_update_is_refused(master: MasterProcess, client: Client, tmp_path: Path):
    await ok(master, "apply", "-f", "-", stdin=DEPLOYMENT)
    stale = (await client.get("deployments", "web")).metadata.resource_version
    await ok(master, "label", "deploy", "web", "x=1")
    path = tmp_path / "stale.yaml"
    path.write_text(DEPLOYMENT.replace("  name: web\n", f"  name: web\n  resourceVersion: \"{stale}\"\n")
                    .replace("kyb/web:1", "kyb/web:9"))
    line = await fails(master, "apply", "-f", str(path))
    assert line == ('Error from server (Conflict): Operation cannot be fulfilled on deployments "web": the object has '
                    "been modified; please apply your changes to the latest version and try again")
    assert (await client.get("deployments", "web")).spec.template.spec.containers[0].image == "kyb/web:1"
    line = await fails(master, "label", "deploy", "web", "y=2", "--resource-version", stale)
    assert line.startswith("Error from server (Conflict): Operation cannot be fulfilled")
    assert "y" not in (await client.get("deployments", "web")).metadata.labels


async def test_malformed_manifests_are_one_line_errors_and_write_nothing(master: MasterProcess, client: Client,
                                                                         tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(POD.format(name="ok", app="a"))
    cases = {
        "bad-yaml.yaml": ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n",
                          r'^error: error parsing .*bad-yaml.yaml: error parsing YAML at line \d+, column \d+: '),
        "unknown-field.yaml": (DEPLOYMENT.replace("  selector:", "  foo: 1\n  selector:"),
                               r'^error: error validating ".*unknown-field.yaml": unknown field "spec.foo"$'),
        "wrong-kind.yaml": ("apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n",
                            r'^error: resource mapping not found for name: "x" namespace: "" from '
                            r'".*wrong-kind.yaml": no matches for kind "Deployment" in version "v1"$'),
        "no-kind.yaml": ("apiVersion: v1\nmetadata: {name: x}\n",
                         r'^error: error validating ".*no-kind.yaml": error validating data: kind not set$'),
        "bad-type.yaml": (DEPLOYMENT.replace("containerPort: 8080", "containerPort: http"),
                          r'^error: error validating ".*bad-type.yaml": spec.template.spec.containers\[0\].ports\[0\]'
                          r'.containerPort: expected integer, got string "http"$'),
    }
    for file_name, (text, pattern) in cases.items():
        path = tmp_path / file_name
        path.write_text(text)
        # The good file comes first: a bad one anywhere means nothing is applied.
        line = await fails(master, "apply", "-f", str(good), "-f", str(path))
        assert re.match(pattern, line), (file_name, line)
    assert await fails(master, "apply", "-f", str(tmp_path / "missing.yaml")) == \
        f'error: the path "{tmp_path / "missing.yaml"}" does not exist'
    assert (await client.list("pods")).items == []
    # Valid YAML the server refuses: kubectl's "is invalid" form, on one line.
    bad_selector = DEPLOYMENT.replace("matchLabels: {app: web}", "matchLabels: {app: other}")
    line = await fails(master, "apply", "-f", "-", stdin=bad_selector)
    assert line.startswith('The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: ')


# ---------------------------------------------------------------- usage errors


async def test_usage_errors_are_one_line_with_exit_code_1(master: MasterProcess):
    expectations = {
        ("get", "pods", "--bogus"): "error: unknown flag: --bogus",
        ("frobnicate",): 'error: unknown command "frobnicate" for "kybctl"',
        ("get", "foo"): 'error: the server doesn\'t have a resource type "foo"',
        ("get",): 'error: You must specify the type of resource to get. Use "kybctl api-resources" for a complete '
                  "list of supported resources.",
        ("get", "po", "-o", "table"): 'error: unable to match a printer suitable for the output format "table", '
                                      "allowed formats are: json,name,wide,yaml",
        ("get", "po", "-l", "app in (a"): None,
        ("scale", "deploy/web"): None,
        ("scale", "deploy/web", "--replicas", "two"): None,
        ("scale", "po/x", "--replicas=2"): "error: cannot scale pods: only deployments and replicasets have replicas",
        ("delete", "pods"): "error: resource(s) were provided, but no name was specified",
        ("delete",): "error: You must provide one or more resources by argument or filename.",
        ("delete", "po", "x", "--cascade=sideways"): 'error: invalid cascade value (sideways). Must be "background", '
                                                     '"foreground", or "orphan".',
        ("create", "deployment", "web"): None,
        ("label", "po", "x", "Bad Key=1"): None,
        ("apply",): None,
        ("get", "po", "--request-timeout", "soon"): None,
    }
    for args, expected in expectations.items():
        line = await fails(master, *args)
        assert line.startswith("error: "), (args, line)
        if expected is not None:
            assert line == expected, args


async def test_not_found_and_unreachable_server(master: MasterProcess, client: Client):
    assert await fails(master, "get", "po", "nope") == 'Error from server (NotFound): pods "nope" not found'
    assert await fails(master, "get", "deploy/nope") == 'Error from server (NotFound): deployments "nope" not found'
    assert await fails(master, "describe", "node", "nope") == 'Error from server (NotFound): nodes "nope" not found'
    assert await fails(master, "delete", "svc", "nope") == 'Error from server (NotFound): services "nope" not found'
    assert await fails(master, "scale", "rs", "nope", "--replicas=1") == \
        'Error from server (NotFound): replicasets "nope" not found'
    await client.create(make_pod("here"))
    # One found, one missing: the found one is printed, the missing one reported, exit code 1.
    result = await kyb(master, "get", "po", "here", "nope", "-o", "name")
    assert (result.code, result.out, result.err) == (1, "pod/here\n", 'Error from server (NotFound): pods "nope" '
                                                                      'not found\n')
    assert (await ok(master, "get", "po", "nope", "--ignore-not-found")).out == ""
    await client.create(make_pod("dup"))
    line = await fails(master, "create", "-f", "-", stdin=POD.format(name="dup", app="a"))
    assert line == 'Error from server (AlreadyExists): pods "dup" already exists'

    dead = f"127.0.0.1:{free_port()}"
    creds = {"KYBCONFIG": str(master.kubeconfig)}
    line = await fails(None, "get", "pods", server=dead, env=creds)
    assert line == f"Unable to connect to the server: dial tcp {dead}: connect: connection refused"
    # The refusal itself ends the command, not a timeout running out: with no request timeout at all
    # (0 = none) it still ends, with the same line.
    assert await fails(None, "get", "pods", "--request-timeout=0", server=dead, env=creds) == line
    # $KYB_SERVER is used when --server is not given; --server wins over it.
    result = await kyb(None, "get", "po", "-o", "name", env={"KYB_SERVER": master.address, **creds})
    assert (result.code, result.lines) == (0, ["pod/dup", "pod/here"])
    line = await fails(None, "get", "po", server=dead, env={"KYB_SERVER": master.address, **creds})
    assert line.startswith("Unable to connect to the server")


# ---------------------------------------------------------------- get: tables and formats


async def test_pod_table_statuses_wide_and_all_namespaces(master: MasterProcess, client: Client):
    for name in ("running", "crashing", "completed", "creating", "pulling", "oom"):
        await client.create(make_pod(name, node="n1"))
    await client.create(make_pod("elsewhere", namespace="other"))
    await client.create(make_pod("leaving", finalizers=("example.com/hold",)))
    await set_pod_status(client, "running", phase="Running", ip="10.244.0.5",
                         container={"state": "running", "ready": True})
    await set_pod_status(client, "crashing", phase="Running", ip="10.244.0.6",
                         container={"state": "waiting:CrashLoopBackOff", "restarts": 3, "last_finished_ago": 5})
    await set_pod_status(client, "completed", phase="Succeeded", container={"state": "terminated:Completed"})
    await set_pod_status(client, "creating", phase="Pending", container={"state": "waiting:ContainerCreating"})
    await set_pod_status(client, "pulling", phase="Pending", container={"state": "waiting:ImagePullBackOff"})
    await set_pod_status(client, "oom", phase="Running", container={"state": "terminated:OOMKilled"})
    await ok(master, "delete", "pod", "leaving", "--wait=false")

    result = await ok(master, "get", "pods")
    assert result.lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = by_name(table(result.out))
    assert sorted(rows) == ["completed", "crashing", "creating", "leaving", "oom", "pulling", "running"]
    assert rows["running"]["READY"] == "1/1" and rows["running"]["STATUS"] == "Running"
    assert rows["crashing"]["STATUS"] == "CrashLoopBackOff" and rows["crashing"]["READY"] == "0/1"
    assert re.fullmatch(r"3 \(\d+s ago\)", rows["crashing"]["RESTARTS"]), rows["crashing"]
    assert rows["completed"]["STATUS"] == "Completed"
    assert rows["creating"]["STATUS"] == "ContainerCreating"
    assert rows["pulling"]["STATUS"] == "ImagePullBackOff"
    assert rows["oom"]["STATUS"] == "OOMKilled"
    assert rows["leaving"]["STATUS"] == "Terminating"
    assert re.fullmatch(r"\d+s", rows["running"]["AGE"])

    wide = table((await ok(master, "get", "po", "-o", "wide")).out)
    assert list(wide[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert by_name(wide)["running"]["IP"] == "10.244.0.5" and by_name(wide)["running"]["NODE"] == "n1"
    assert by_name(wide)["leaving"]["IP"] == "<none>" and by_name(wide)["leaving"]["NODE"] == "<none>"

    everywhere = table((await ok(master, "get", "po", "-A")).out)
    assert list(everywhere[0])[:2] == ["NAMESPACE", "NAME"]
    assert {(r["NAMESPACE"], r["NAME"]) for r in everywhere} >= {("other", "elsewhere"), ("default", "running")}
    assert [r["NAME"] for r in table((await ok(master, "get", "po", "-n", "other")).out)] == ["elsewhere"]
    assert [r["NAME"] for r in table((await ok(master, "-n", "other", "get", "po")).out)] == ["elsewhere"]
    assert [r["NAME"] for r in table((await ok(master, "get", "po", "--field-selector",
                                                "status.phase=Succeeded")).out)] == ["completed"]

    empty = await kyb(master, "get", "po", "-n", "empty")
    assert (empty.code, empty.out, empty.err) == (0, "", "No resources found in empty namespace.\n")
    empty = await kyb(master, "get", "po", "-l", "app=none", "-A")
    assert (empty.code, empty.out, empty.err) == (0, "", "No resources found\n")


async def test_workload_node_service_endpoint_and_event_tables(master: MasterProcess, client: Client):
    await ok(master, "create", "deployment", "web", "--image=kyb/web:1", "--replicas=3")
    await client.create(make_node("n1", roles=("control-plane",)))
    await client.create(make_node("n2", ready="False", unschedulable=True))
    await client.create(make_node("n3", ready=None))
    svc = pb.Service()
    svc.metadata.name = "web"
    svc.spec.type = "NodePort"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(port=80, target_port=pb.IntOrString(int_val=8080), node_port=30080, protocol="TCP")
    await client.create(svc)
    ep = pb.Endpoints()
    ep.metadata.name = "manual"  # "web" belongs to the endpoints controller (for the service)
    subset = ep.subsets.add()
    for i in range(5):
        subset.addresses.add(ip=f"10.244.0.{i + 1}")
    subset.ports.add(port=8080, protocol="TCP")
    await client.create(ep)
    event = pb.Event()
    event.metadata.name = "web.1"
    event.involved_object.CopyFrom(pb.ObjectReference(kind="Deployment", name="web", namespace="default"))
    event.reason, event.message, event.type = "Tested", "Looked at by a test", "Warning"
    event.last_timestamp.GetCurrentTime()
    await client.create(event)

    # The controllers roll the deployment out: a ReplicaSet of 3, pods bound to n1 but never ready (no kubelet).
    async def rolled_out() -> bool:
        d = await client.get("deployments", "web")
        return d.status.updated_replicas == 3 and d.status.replicas == 3
    await until(rolled_out)
    deploys = table((await ok(master, "get", "deploy")).out)
    assert deploys == [{"NAME": "web", "READY": "0/3", "UP-TO-DATE": "3", "AVAILABLE": "0",
                        "AGE": deploys[0]["AGE"]}]
    wide = table((await ok(master, "get", "deployments.apps", "-o", "wide")).out)
    assert (wide[0]["CONTAINERS"], wide[0]["IMAGES"], wide[0]["SELECTOR"]) == ("web", "kyb/web:1", "app=web")

    async def replica_set_full() -> list[dict[str, str]]:
        rows = table((await ok(master, "get", "rs")).out)
        return rows if rows and rows[0]["CURRENT"] == "3" else []
    (rs_row,) = await until(replica_set_full)
    assert rs_row["NAME"].startswith("web-") and (rs_row["DESIRED"], rs_row["READY"]) == ("3", "0")

    nodes = table((await ok(master, "get", "no")).out)
    assert list(nodes[0]) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [(n["NAME"], n["STATUS"], n["ROLES"], n["VERSION"]) for n in nodes] == [
        ("n1", "Ready", "control-plane", "v0.1.0"),
        ("n2", "NotReady,SchedulingDisabled", "<none>", "v0.1.0"),
        ("n3", "Unknown", "<none>", "v0.1.0"),
    ]
    wide_nodes = table((await ok(master, "get", "nodes", "n1", "-o", "wide")).out)
    assert list(wide_nodes[0]) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                                   "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert wide_nodes[0]["INTERNAL-IP"] == "10.0.0.7"
    assert wide_nodes[0]["OS-IMAGE"] == "Debian GNU/Linux 12 (bookworm)"
    assert wide_nodes[0]["CONTAINER-RUNTIME"] == "containerd://1.6.20"

    services = table((await ok(master, "get", "svc")).out)
    assert list(services[0]) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert (services[0]["NAME"], services[0]["TYPE"], services[0]["PORT(S)"]) == ("web", "NodePort", "80:30080/TCP")
    endpoints = by_name(table((await ok(master, "get", "ep")).out))
    assert endpoints["manual"]["ENDPOINTS"] == "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more..."

    events = table((await ok(master, "get", "events")).out)
    assert list(events[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    mine = by_name(events, "REASON")["Tested"]
    assert (mine["TYPE"], mine["OBJECT"], mine["MESSAGE"]) == ("Warning", "deployment/web", "Looked at by a test")
    # The deployment controller recorded its own event about the same object.
    assert any(e["OBJECT"] == "deployment/web" and e["REASON"] == "ScalingReplicaSet" for e in events)

    # Several kinds at once: one table each, names prefixed with their kind.
    both = await ok(master, "get", "deploy,svc")
    assert "deployment.apps/web" in both.out and "service/web" in both.out and "\n\n" in both.out


async def test_output_name_json_and_yaml(master: MasterProcess, client: Client):
    await client.create(make_pod("a", labels={"app": "x"}))
    await client.create(make_pod("b", labels={"app": "y"}))
    await ok(master, "create", "deployment", "web", "--image=kyb/web:1", "--replicas=0")
    assert (await ok(master, "get", "po", "-o", "name")).lines == ["pod/a", "pod/b"]
    assert (await ok(master, "get", "deploy", "-o", "name")).lines == ["deployment.apps/web"]
    assert (await ok(master, "get", "pod/a", "deploy/web", "-o", "name")).lines == ["pod/a", "deployment.apps/web"]

    listed = yaml.safe_load((await ok(master, "get", "po", "-o", "yaml")).out)
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert all(i["kind"] == "Pod" and i["status"]["phase"] == "Pending" for i in listed["items"])
    one = yaml.safe_load((await ok(master, "get", "po", "a", "-o", "yaml")).out)
    assert one["kind"] == "Pod" and one["metadata"]["labels"] == {"app": "x"}
    selected = json.loads((await ok(master, "get", "po", "-l", "app=y", "-o", "json")).out)
    assert [i["metadata"]["name"] for i in selected["items"]] == ["b"]
    # What -o yaml prints, apply accepts. Like kubectl, the first apply of an object made otherwise
    # only adds the last-applied annotation (with a warning); then the round trip changes nothing.
    first = await ok(master, "apply", "-f", "-", stdin=yaml.safe_dump(one))
    assert first.lines == ["pod/a configured"] and "last-applied-configuration" in first.err
    assert (await ok(master, "apply", "-f", "-", stdin=yaml.safe_dump(one))).lines == ["pod/a unchanged"]
    assert dict((await client.get("pods", "a")).metadata.labels) == {"app": "x"}


async def test_get_watch_streams_changes_until_interrupted(master: MasterProcess, client: Client):
    # Bound to a (kubelet-less) node, so that no scheduler writes interleave with the test's own changes.
    await client.create(make_pod("first", node="n1"))
    proc = await asyncio.create_subprocess_exec(
        *_command(master.address, ("get", "po", "-w"), kubeconfig=master.kubeconfig), cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None

    async def next_line() -> str:
        return (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().rstrip("\n")

    try:
        assert (await next_line()).split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert (await next_line()).split()[:3] == ["first", "0/1", "Pending"]
        # Changes made after the listing arrive as lines, in order.
        await client.create(make_pod("second", node="n1"))
        assert (await next_line()).split()[:3] == ["second", "0/1", "Pending"]
        await set_pod_status(client, "first", phase="Running", container={"state": "running", "ready": True})
        assert (await next_line()).split()[:3] == ["first", "1/1", "Running"]
        await client.delete("pods", "second", unconditional=True, grace_period_seconds=0)
        assert (await next_line()).split()[0] == "second"
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0
        assert (await proc.stderr.read()) == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_get_watch_of_one_object_with_event_column(master: MasterProcess, client: Client):
    await client.create(make_pod("watched", node="n1"))
    await client.create(make_pod("ignored", node="n1"))
    proc = await asyncio.create_subprocess_exec(
        *_command(master.address, ("get", "pod/watched", "-w", "--output-watch-events"),
                 kubeconfig=master.kubeconfig), cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None

    async def next_line() -> list[str]:
        return (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()

    try:
        assert (await next_line())[:2] == ["EVENT", "NAME"]
        assert (await next_line())[:2] == ["ADDED", "watched"]
        await ok(master, "label", "pod", "ignored", "x=1")
        await ok(master, "label", "pod", "watched", "x=1")
        assert (await next_line())[:2] == ["MODIFIED", "watched"]
    finally:
        proc.kill()
        await proc.wait()


# ---------------------------------------------------------------- changes


async def test_label_scale_and_set_image(master: MasterProcess, client: Client):
    await client.create(make_pod("p", labels={"app": "web"}))
    assert (await ok(master, "label", "pod", "p", "tier=fe", "env=dev")).out == "pod/p labeled\n"
    line = await fails(master, "label", "po", "p", "app=db")
    assert line == "error: 'app' already has a value (web), and --overwrite is false"
    assert (await ok(master, "label", "po/p", "app=db", "--overwrite", "env-")).out == "pod/p labeled\n"
    assert dict((await client.get("pods", "p")).metadata.labels) == {"app": "db", "tier": "fe"}
    assert (await ok(master, "label", "po", "p", "tier-")).out == "pod/p unlabeled\n"
    assert (await ok(master, "label", "po", "p", "app=db")).out == "pod/p not labeled\n"
    assert (await ok(master, "annotate", "po", "p", "note=hello world")).out == "pod/p annotated\n"
    assert (await client.get("pods", "p")).metadata.annotations["note"] == "hello world"
    await client.create(make_pod("q", labels={"app": "db"}))
    assert (await ok(master, "label", "pods", "-l", "app=db", "seen=yes")).lines == ["pod/p labeled",
                                                                                      "pod/q labeled"]

    await ok(master, "create", "deployment", "web", "--image=kyb/web:1", "--image=kyb/side:1")
    assert (await ok(master, "scale", "deployment/web", "--replicas=4")).out == "deployment.apps/web scaled\n"
    assert (await client.get("deployments", "web")).spec.replicas == 4
    assert await fails(master, "scale", "deploy", "web", "--replicas=2", "--current-replicas=3") == \
        "error: Expected replicas to be 3, was 4"
    rs = pb.ReplicaSet()
    rs.metadata.name = "rs1"
    rs.spec.selector.match_labels["a"] = "b"
    rs.spec.template.metadata.labels["a"] = "b"
    rs.spec.template.spec.containers.add(name="c", image="kyb/c:1")
    await client.create(rs)
    assert (await ok(master, "scale", "rs/rs1", "--replicas=0")).out == "replicaset.apps/rs1 scaled\n"
    stored = await client.get("replicasets", "rs1")
    assert stored.spec.HasField("replicas") and stored.spec.replicas == 0

    result = await ok(master, "set", "image", "deployment/web", "web=kyb/web:2")
    assert result.out == "deployment.apps/web image updated\n"
    images = [c.image for c in (await client.get("deployments", "web")).spec.template.spec.containers]
    assert images == ["kyb/web:2", "kyb/side:1"]
    await ok(master, "set", "image", "deploy", "web", "*=kyb/all:3")
    images = [c.image for c in (await client.get("deployments", "web")).spec.template.spec.containers]
    assert images == ["kyb/all:3", "kyb/all:3"]
    assert await fails(master, "set", "image", "deploy/web", "nope=x:1") == \
        'error: unable to find container named "nope"'


async def test_read_modify_write_commands_survive_concurrent_writers(master: MasterProcess, client: Client):
    """Many label commands at once on one object: each retries its conflicts, none is lost."""
    await client.create(make_pod("busy"))
    results = await asyncio.gather(*(kyb(master, "label", "po", "busy", f"k{i}=v") for i in range(8)))
    assert all(r.code == 0 for r in results), results
    labels = (await client.get("pods", "busy")).metadata.labels
    assert sorted(labels) == sorted(f"k{i}" for i in range(8))


async def test_create_deployment_like_kubectl(master: MasterProcess, client: Client):
    result = await ok(master, "create", "deployment", "hello", "--image=registry.local:5000/team/hello:1.2",
                      "--replicas=2", "--port=8080", "--", "sh", "-c", "sleep 3600")
    assert result.out == "deployment.apps/hello created\n"
    d = await client.get("deployments", "hello")
    assert dict(d.metadata.labels) == {"app": "hello"}
    assert dict(d.spec.selector.match_labels) == {"app": "hello"}
    assert dict(d.spec.template.metadata.labels) == {"app": "hello"}
    assert d.spec.replicas == 2
    (container,) = d.spec.template.spec.containers
    assert (container.name, container.image) == ("hello", "registry.local:5000/team/hello:1.2")
    assert [p.container_port for p in container.ports] == [8080]
    assert list(container.command) == ["sh", "-c", "sleep 3600"]
    # create deploy is an alias; --dry-run=client prints without creating.
    dry = await ok(master, "create", "deploy", "dry", "--image=kyb/x@sha256:" + "a" * 64, "--dry-run=client",
                   "-o", "yaml")
    doc = yaml.safe_load(dry.out)
    assert doc["spec"]["template"]["spec"]["containers"][0]["name"] == "x"
    with pytest.raises(NotFoundError):
        await client.get("deployments", "dry")
    assert await fails(master, "create", "deployment", "hello", "--image=kyb/hello:1") == \
        'Error from server (AlreadyExists): deployments "hello" already exists'


# ---------------------------------------------------------------- delete


async def test_delete_by_name_selector_and_file(master: MasterProcess, client: Client, tmp_path: Path):
    for name, app in (("a", "web"), ("b", "web"), ("c", "db"), ("d", "db")):
        await client.create(make_pod(name, labels={"app": app}))
    assert (await ok(master, "delete", "pod", "a")).out == 'pod "a" deleted\n'
    assert (await ok(master, "delete", "po", "-l", "app=web")).out == 'pod "b" deleted\n'
    path = tmp_path / "c.yaml"
    path.write_text(POD.format(name="c", app="db"))
    assert (await ok(master, "delete", "-f", str(path))).out == 'pod "c" deleted\n'
    assert [p.metadata.name for p in (await client.list("pods")).items] == ["d"]
    nothing = await kyb(master, "delete", "po", "-l", "app=none")
    assert (nothing.code, nothing.out, nothing.err) == (0, "", "No resources found in default namespace.\n")
    assert (await ok(master, "delete", "pod", "a", "--ignore-not-found")).out == ""

    await ok(master, "create", "deployment", "web", "--image=kyb/web:1", "--replicas=0")
    assert (await ok(master, "delete", "deploy/web", "pod/d")).lines == ['deployment.apps "web" deleted',
                                                                         'pod "d" deleted']
    assert (await client.list("pods")).items == [] and (await client.list("deployments")).items == []


async def test_delete_waits_for_graceful_termination(master: MasterProcess, client: Client):
    # A pod bound to a node only goes when its kubelet confirms; delete --wait waits for that.
    await client.create(make_pod("bound", node="n1"))
    proc = await asyncio.create_subprocess_exec(
        *_command(master.address, ("delete", "pod", "bound"), kubeconfig=master.kubeconfig), cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line == b'pod "bound" deleted\n'
        pod = await client.get("pods", "bound")
        assert pod.metadata.HasField("deletion_timestamp")
        assert proc.returncode is None, "delete returned before the pod was gone"
        await client.delete("pods", "bound", unconditional=True, grace_period_seconds=0)  # the kubelet's part
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    await client.create(make_pod("stuck", node="n1"))
    # --timeout ends the wait; without it the wait would last the 60 s default, past this deadline.
    result = await kyb(master, "delete", "pod", "stuck", "--timeout=1s", timeout=45)
    assert (result.code, result.out, result.err) == (
        1, 'pod "stuck" deleted\n', "error: timed out waiting for the condition on pods/stuck\n")
    # It gave up on a pod that is still there, Terminating: nobody confirmed it.
    assert (await client.get("pods", "stuck")).metadata.HasField("deletion_timestamp")
    assert (await ok(master, "delete", "pod", "stuck", "--wait=false")).out == 'pod "stuck" deleted\n'
    assert (await ok(master, "delete", "pod", "stuck", "--force", "--grace-period=0")).out == 'pod "stuck" deleted\n'
    with pytest.raises(NotFoundError):
        await client.get("pods", "stuck")


async def test_delete_cascade_maps_to_propagation_policy(master: MasterProcess, client: Client):
    """Orphan keeps the ReplicaSet; foreground removes it before the deployment (the CLI waits for that)."""

    async def replica_set_of(name: str) -> pb.ReplicaSet | None:
        items = (await client.list("replicasets")).items
        return next((r for r in items if r.metadata.name.startswith(f"{name}-")), None)

    await ok(master, "create", "deployment", "kept", "--image=kyb/web:1", "--replicas=0")
    await until(lambda: replica_set_of("kept"))
    assert (await ok(master, "delete", "deploy", "kept", "--cascade=orphan")).out == \
        'deployment.apps "kept" deleted\n'
    with pytest.raises(NotFoundError):
        await client.get("deployments", "kept")
    orphan = await replica_set_of("kept")
    assert orphan is not None and list(orphan.metadata.owner_references) == []

    await ok(master, "create", "deployment", "fg", "--image=kyb/web:1", "--replicas=0")
    await until(lambda: replica_set_of("fg"))
    await ok(master, "delete", "deploy", "fg", "--cascade=foreground")
    with pytest.raises(NotFoundError):
        await client.get("deployments", "fg")
    assert await replica_set_of("fg") is None


# ---------------------------------------------------------------- describe and misc


async def test_describe_shows_details_and_the_objects_events(master: MasterProcess, client: Client):
    await client.create(make_pod("web-1", labels={"app": "web"}, node="n1"))
    await set_pod_status(client, "web-1", phase="Running", ip="10.244.0.9",
                         container={"state": "running", "ready": True, "restarts": 1})
    await client.create(make_pod("quiet", node="n1"))
    pod = await client.get("pods", "web-1")
    for index, (reason, message) in enumerate((("Scheduled", "Successfully assigned default/web-1 to n1"),
                                               ("Started", "Started container main"))):
        event = pb.Event()
        event.metadata.name = f"web-1.{index}"
        event.involved_object.CopyFrom(pb.ObjectReference(kind="Pod", name="web-1", namespace="default",
                                                          uid=pod.metadata.uid))
        event.reason, event.message, event.type = reason, message, "Normal"
        event.source.component = "kubelet"
        event.last_timestamp.GetCurrentTime()
        await client.create(event)
    await client.create(make_node("n1"))

    out = (await ok(master, "describe", "pod", "web-1")).out
    assert re.search(r"^Name:\s+web-1$", out, re.M)
    assert re.search(r"^Namespace:\s+default$", out, re.M)
    assert re.search(r"^Node:\s+n1/10.0.0.1$", out, re.M)
    assert re.search(r"^Labels:\s+app=web$", out, re.M)
    assert re.search(r"^Status:\s+Running$", out, re.M)
    assert re.search(r"^IP:\s+10.244.0.9$", out, re.M)
    assert re.search(r"^\s+Image:\s+kyb/busybox:1$", out, re.M)
    assert re.search(r"^\s+State:\s+Running$", out, re.M)
    assert re.search(r"^\s+Restart Count:\s+1$", out, re.M)
    events = out[out.index("Events:"):].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[3].split()[:2] == ["Normal", "Scheduled"] and events[3].endswith("to n1")
    assert events[4].split()[:2] == ["Normal", "Started"]
    assert re.search(r"^Events:\s+<none>$", (await ok(master, "describe", "po/quiet")).out, re.M)

    out = (await ok(master, "describe", "node", "n1")).out
    assert re.search(r"^\s+Ready\s+True\s+", out, re.M)
    assert re.search(r"^\s+InternalIP:\s+10.0.0.7$", out, re.M)
    assert re.search(r"^\s+cpu:\s+2$", out, re.M)
    assert re.search(r"^Non-terminated Pods:\s+\(2 in total\)$", out, re.M)

    await ok(master, "create", "deployment", "web", "--image=kyb/web:1", "--replicas=3")

    async def rolled_out() -> str:
        text = (await ok(master, "describe", "deploy", "web")).out
        return text if re.search(r"^NewReplicaSet:\s+web-\S+ \(3/3 replicas created\)$", text, re.M) else ""
    out = await until(rolled_out)
    assert re.search(r"^Replicas:\s+3 desired \| 3 updated \| 3 total \| 0 available \| 3 unavailable$", out,
                     re.M), out
    assert re.search(r"^StrategyType:\s+RollingUpdate$", out, re.M)
    assert re.search(r"^RollingUpdateStrategy:\s+25% max unavailable, 25% max surge$", out, re.M)
    assert re.search(r"^OldReplicaSets:\s+<none>$", out, re.M)
    assert re.search(r"^\s+Normal\s+ScalingReplicaSet\s+", out, re.M)


async def test_version_and_api_resources_through_the_console_script(master: MasterProcess):
    script = Path(sys.executable).with_name("kybctl")
    proc = await asyncio.create_subprocess_exec(
        str(script), "version", env={**os.environ, "KYBCONFIG": str(master.kubeconfig)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["Client Version: v0.1.0",
                                         f"Server Version: kyb-master at {master.address} (SERVING)"]
    rows = table((await ok(master, "api-resources")).out)
    assert list(rows[0]) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert {"NAME": "deployments", "SHORTNAMES": "deploy", "APIVERSION": "apps/v1", "NAMESPACED": "true",
            "KIND": "Deployment"} in rows
    assert {"NAME": "nodes", "SHORTNAMES": "no", "APIVERSION": "v1", "NAMESPACED": "false", "KIND": "Node"} in rows
