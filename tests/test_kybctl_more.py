"""kybctl logs, exec, rollout, cordon/uncordon/drain and expose: the real CLI as a child process.

Which backing each test uses, and why:
- logs and exec need containers that really print and run commands: the `node`
  fixture (a real master, a real kubelet process on the test's own containerd).
- rollout and drain are about control logic: a real master with its
  controllers (`control_plane`) and hollow kubelet processes, which register
  over the real node link, run pods "Running" after a delay and confirm their
  termination, but start no containers. Its node-monitor grace period is long
  so that a Node made by a test without a kubelet is never declared lost.
- expose only writes a Service: the API-only `master` fixture.

Pure pieces (status lines, kubectl's pod order, drain's rules, the Service
generator) are also tested directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from harness.builders import make_deployment, make_pod
from harness.master import REPO, MasterProcess
from harness.waiting import until
from kybernetes.ctl.cli.errors import CliError
from kybernetes.ctl.cli.expose import ExposeOptions, service_for
from kybernetes.ctl.cli.nodes import go_duration, plan_drain
from kybernetes.ctl.cli.podselect import logging_order_key
from kybernetes.ctl.cli.rollout import restarted_at, status_message
from kybernetes.ctl.client import Client, ConflictError, NotFoundError
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import objects_pb2 as pb
from tests.test_kybctl import _command, fails, kyb, ok

if TYPE_CHECKING:
    from harness.kubelet import KubeletProcess, Node

HOLLOW_ARGS = ["--heartbeat-interval", "0.5", "--no-pod-routes", "--no-proxy"]
WAITING = re.compile(r'^Waiting for deployment "hello" rollout to finish: (\d+ out of \d+ new replicas have been '
                     r"updated|\d+ old replicas are pending termination|\d+ of \d+ updated replicas are "
                     r"available)\.\.\.$|^Waiting for deployment spec update to be observed\.\.\.$")
ROLLED_OUT = 'deployment "hello" successfully rolled out'


@pytest.fixture
async def control_plane(etcd: EtcdProcess, tmp_path: Path) -> AsyncIterator[MasterProcess]:
    """A kyb-master with every controller; Nodes without a kubelet are not declared lost during a test."""
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "control-plane.log",
                             extra_args=["--node-monitor-grace-period", "3600"]) as proc:
        yield proc


@pytest.fixture
async def api(control_plane: MasterProcess) -> AsyncIterator[Client]:
    async with control_plane.client() as c:
        yield c


async def hollow_nodes(master: MasterProcess, kubelets: Callable[..., KubeletProcess], names: list[str], *,
                       start_delay: float = 0.2) -> None:
    procs = [kubelets(master=await master.join(), node_name=name, runtime="hollow",
                      extra_args=[*HOLLOW_ARGS, "--hollow-start-delay", str(start_delay)]) for name in names]
    await asyncio.gather(*(p.start() for p in procs))


async def rolled_out(master: MasterProcess, name: str = "hello") -> list[str]:
    """`rollout status` until done: every line but the last is a waiting line."""
    result = await ok(master, "rollout", "status", f"deployment/{name}", "--timeout", "60s")
    *waiting, last = result.lines
    assert last == f'deployment "{name}" successfully rolled out', result
    assert all(WAITING.match(line.replace(f'"{name}"', '"hello"')) for line in waiting), result
    return result.lines


async def update_deployment(client: Client, name: str, change: Callable[[pb.Deployment], None]) -> None:
    for _ in range(20):
        d = await client.get("deployments", name)
        change(d)
        try:
            await client.update(d)
            return
        except ConflictError:
            continue
    raise AssertionError("the deployment kept changing")


async def replica_sets(client: Client, name: str = "hello") -> list[pb.ReplicaSet]:
    return [rs for rs in (await client.list("replicasets")).items if rs.metadata.name.startswith(f"{name}-")]


def container_pod(name: str, *, command: list[str], env: dict[str, str] | None = None) -> pb.Pod:
    pod = pb.Pod()
    pod.metadata.name = name
    pod.spec.termination_grace_period_seconds = 1
    container = pod.spec.containers.add(name="main", image="kyb/busybox:1", command=command)
    for key, value in (env or {}).items():
        container.env.add(name=key, value=value)
    return pod


def running(pod: pb.Pod) -> bool:
    return pod.status.phase == "Running" and bool(pod.status.container_statuses) and \
        pod.status.container_statuses[0].state.HasField("running")


# ---------------------------------------------------------------- logs and exec (real containers)


@pytest.mark.containerd
async def test_logs_tail_follow_and_errors(node: Node):
    script = "for i in 1 2 3 4 5; do echo line $i; done; while true; do echo tick; sleep 0.2; done"
    await node.create(container_pod("logger", command=["sh", "-c", script]))
    await node.pod_where("logger", running)

    async def ticked() -> list[str]:
        lines = (await ok(node.master, "logs", "logger")).lines
        return lines if lines.count("tick") >= 2 else []

    everything = await until(ticked, timeout=20)
    assert everything[:5] == [f"line {i}" for i in range(1, 6)]
    assert (await ok(node.master, "logs", "logger", "--tail", "2")).lines == ["tick", "tick"]
    assert (await ok(node.master, "logs", "pod/logger", "-c", "main", "--tail=1")).lines == ["tick"]
    assert (await ok(node.master, "logs", "logger", "main", "--tail=1")).lines == ["tick"]
    assert (await ok(node.master, "logs", "logger", "--tail=0")).out == ""

    # -f keeps the stream open and prints new lines as they come, until interrupted.
    for extra in ((), ("--tail=0",)):
        proc = await asyncio.create_subprocess_exec(
            *_command(node.master.address, ("logs", "-f", "logger", "--tail", "1", *extra),
                     kubeconfig=node.master.process.kubeconfig), cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            lines = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(4)]
            assert lines == [b"tick\n"] * 4
            assert proc.returncode is None
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            assert await proc.stderr.read() == b""
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert await fails(node.master, "logs", "nope") == 'Error from server (NotFound): pods "nope" not found'
    assert await fails(node.master, "logs", "logger", "-c", "nope") == \
        "error: container nope is not valid for pod logger"
    assert await fails(node.master, "logs", "logger", "--previous") == \
        'Error from server (BadRequest): previous terminated container "main" in pod "logger" not found'
    assert await fails(node.master, "logs", "node/x") == \
        'Error from server (NotFound): nodes "x" not found'
    nowhere = container_pod("nowhere", command=["sleep", "1"])
    nowhere.spec.node_selector["no-such"] = "node"
    await node.client.create(nowhere)  # not through node.create, which binds it
    assert await fails(node.master, "logs", "nowhere") == \
        "Error from server (BadRequest): pod nowhere does not have a host assigned"


@pytest.mark.containerd
async def test_exec_env_exit_code_stdin_and_errors(node: Node):
    await node.create(container_pod("ex", command=["sleep", "3600"], env={"GREETING": "hello world"}))
    await node.pod_where("ex", running)

    env = await ok(node.master, "exec", "ex", "--", "env")
    assert "GREETING=hello world" in env.lines and env.err == ""

    failed = await kyb(node.master, "exec", "ex", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (failed.code, failed.out, failed.err) == (7, "out\n", "err\ncommand terminated with exit code 7\n")

    piped = await kyb(node.master, "exec", "-i", "pod/ex", "-c", "main", "--", "cat", stdin="piped input\n")
    assert (piped.code, piped.out, piped.err) == (0, "piped input\n", "")
    # kubectl's habitual -it works, without a terminal (the node link has none), and says so.
    shell = await kyb(node.master, "exec", "-it", "ex", "--", "sh", "-c", "read x; echo got $x", stdin="hi\n")
    assert (shell.code, shell.out) == (0, "got hi\n")
    assert shell.err == "Unable to use a TTY - the node link does not carry terminals\n"
    # Options after the pod, arguments that look like options after `--`.
    listed = await ok(node.master, "exec", "ex", "--", "ls", "-d", "/bin")
    assert listed.out == "/bin\n"

    line = await fails(node.master, "exec", "ex", "--", "/bin/no-such-binary")
    assert line.startswith("error: ") and "no such file or directory" in line, line
    assert await fails(node.master, "exec", "ex", "env") == \
        "error: exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"
    assert await fails(node.master, "exec", "ex") == "error: you must specify at least one command for the container"
    assert await fails(node.master, "exec", "ex", "-c", "nope", "--", "true") == \
        "error: container nope is not valid for pod ex out of: main"
    assert await fails(node.master, "exec", "nope", "--", "true") == \
        'Error from server (NotFound): pods "nope" not found'


# ---------------------------------------------------------------- rollout (hollow kubelets)


async def test_rollout_status_history_and_undo(control_plane: MasterProcess, api: Client,
                                               kubelets: Callable[..., KubeletProcess]):
    await hollow_nodes(control_plane, kubelets, ["node-a", "node-b"], start_delay=0.3)
    deployment = make_deployment("hello", replicas=3)
    deployment.metadata.annotations["kubernetes.io/change-cause"] = "create v1"
    await api.create(deployment)
    await rolled_out(control_plane)

    # logs/exec of a deployment use its first pod, and say so when there was a choice (hollow pods log nothing).
    pods = {p.metadata.name for p in (await api.list("pods", label_selector="app=hello")).items}
    chosen = await ok(control_plane, "logs", "deployment/hello")
    match = re.fullmatch(r"Found 3 pods, using pod/(\S+)\n", chosen.err)
    assert match and match[1] in pods and chosen.out == "", chosen
    assert re.fullmatch(r"Found 3 pods, using pod/\S+\n", (await ok(control_plane, "exec", "deploy/hello", "--",
                                                                    "true")).err)

    # As with kubectl, the change-cause is annotated after the change (it goes to the current ReplicaSet).
    await ok(control_plane, "set", "image", "deployment/hello", "main=kyb/hello:v2")
    await ok(control_plane, "annotate", "deploy", "hello", "kubernetes.io/change-cause=image v2", "--overwrite")
    await rolled_out(control_plane)

    async def cause_recorded() -> bool:
        return any(rs.metadata.annotations.get("kubernetes.io/change-cause") == "image v2"
                   for rs in await replica_sets(api))

    await until(cause_recorded, timeout=20)
    history = await ok(control_plane, "rollout", "history", "deployment/hello")
    assert history.out == ("deployment.apps/hello \nREVISION  CHANGE-CAUSE\n1         create v1\n"
                           "2         image v2\n\n")
    detail = (await ok(control_plane, "rollout", "history", "deploy", "hello", "--revision", "2")).out
    assert detail.startswith("deployment.apps/hello with revision #2\nPod Template:\n")
    assert re.search(r"^\s+Image:\s+kyb/hello:v2$", detail, re.M)
    assert re.search(r"^\s+Labels:\s+app=hello$", detail, re.M)
    assert await fails(control_plane, "rollout", "history", "deploy/hello", "--revision", "5") == \
        "error: unable to find the specified revision"

    assert (await ok(control_plane, "rollout", "undo", "deployment/hello")).out == \
        "deployment.apps/hello rolled back\n"
    await rolled_out(control_plane)
    d = await api.get("deployments", "hello")
    assert d.spec.template.spec.containers[0].image == "kyb/hello:v1"
    history = await ok(control_plane, "rollout", "history", "deployment/hello")
    assert history.lines[1:4] == ["REVISION  CHANGE-CAUSE", "2         image v2", "3         create v1"]
    assert (await ok(control_plane, "rollout", "undo", "deployment/hello", "--to-revision", "2")).out == \
        "deployment.apps/hello rolled back\n"
    await rolled_out(control_plane)
    assert (await api.get("deployments", "hello")).spec.template.spec.containers[0].image == "kyb/hello:v2"

    assert await fails(control_plane, "rollout", "undo", "deployment/hello", "--to-revision", "9") == \
        "error: unable to find specified revision 9 in history"
    rs_name = (await replica_sets(api))[0].metadata.name
    assert await fails(control_plane, "rollout", "undo", f"rs/{rs_name}") == \
        'error: no rollbacker has been implemented for "ReplicaSet.apps"'
    assert await fails(control_plane, "rollout", "history", f"rs/{rs_name}") == \
        'error: no history viewer has been implemented for "ReplicaSet.apps"'
    assert await fails(control_plane, "rollout", "status", "deployment/nope") == \
        'Error from server (NotFound): deployments "nope" not found'
    assert await fails(control_plane, "rollout", "undo", "deployment/nope") == \
        'Error from server (NotFound): deployments "nope" not found'


async def test_rollout_pause_resume_and_restart(control_plane: MasterProcess, api: Client,
                                                kubelets: Callable[..., KubeletProcess]):
    await hollow_nodes(control_plane, kubelets, ["node-a"])
    await api.create(make_deployment("hello", replicas=2))
    await rolled_out(control_plane)

    assert (await ok(control_plane, "rollout", "pause", "deployment/hello")).out == "deployment.apps/hello paused\n"
    assert await fails(control_plane, "rollout", "pause", "deployment/hello") == \
        'error: deployments.apps "hello" is already paused'
    assert await fails(control_plane, "rollout", "restart", "deployment/hello") == \
        'error: deployments.apps "hello" can\'t restart paused deployment (run rollout resume first)'
    await ok(control_plane, "set", "image", "deployment/hello", "main=kyb/hello:v2")

    async def stalled() -> bool:
        out = (await ok(control_plane, "rollout", "status", "deployment/hello", "--watch=false")).out
        return out == 'Waiting for deployment "hello" rollout to finish: 0 out of 2 new replicas have been updated...\n'

    await until(stalled, timeout=20)
    assert len(await replica_sets(api)) == 1

    assert (await ok(control_plane, "rollout", "resume", "deploy/hello")).out == "deployment.apps/hello resumed\n"
    assert await fails(control_plane, "rollout", "resume", "deploy/hello") == \
        'error: deployments.apps "hello" is not paused'
    await rolled_out(control_plane)
    assert len(await replica_sets(api)) == 2

    assert (await ok(control_plane, "rollout", "restart", "deployment/hello")).out == \
        "deployment.apps/hello restarted\n"
    stamp = (await api.get("deployments", "hello")).spec.template.metadata.annotations[
        "kubectl.kubernetes.io/restartedAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", stamp), stamp
    await rolled_out(control_plane)
    assert len(await replica_sets(api)) == 3
    live = [p for p in (await api.list("pods", label_selector="app=hello")).items
            if not p.metadata.HasField("deletion_timestamp")]
    assert len(live) == 2
    assert all(p.metadata.annotations.get("kubectl.kubernetes.io/restartedAt") == stamp for p in live)

    rs_name = (await replica_sets(api))[0].metadata.name
    assert await fails(control_plane, "rollout", "pause", f"replicaset/{rs_name}") == \
        f'error: replicasets.apps "{rs_name}" pausing is not supported'
    assert await fails(control_plane, "rollout", "status", f"rs/{rs_name}") == \
        "error: no status viewer has been implemented for ReplicaSet.apps"
    assert await fails(control_plane, "rollout", "pause", "deployment/nope") == \
        'Error from server (NotFound): deployments "nope" not found'


async def test_rollout_status_fails_past_the_progress_deadline_and_times_out(
        control_plane: MasterProcess, api: Client, kubelets: Callable[..., KubeletProcess]):
    await hollow_nodes(control_plane, kubelets, ["node-a"])
    await api.create(make_deployment("hello", replicas=2, progress_deadline=2))
    await rolled_out(control_plane)
    assert await fails(control_plane, "rollout", "status", "deployment/hello", "--revision", "2") == \
        "error: desired revision (2) is different from the running revision (1)"

    # A template no Node can run (its cpu request): the new pod stays Pending and the deadline passes.
    def unschedulable(d: pb.Deployment) -> None:
        d.spec.template.spec.containers[0].resources.requests["cpu"] = "640"

    await update_deployment(api, "hello", unschedulable)
    # The progress deadline ends the wait (not --timeout, which would say "timed out waiting").
    result = await kyb(control_plane, "rollout", "status", "deployment/hello", "--timeout", "60s")
    assert result.code == 1, result
    assert result.err == 'error: deployment "hello" exceeded its progress deadline\n'
    assert all(WAITING.match(line) for line in result.lines), result
    assert any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
               for c in (await api.get("deployments", "hello")).status.conditions)

    # Stuck, but within its deadline: --timeout ends the wait.
    stuck = make_deployment("stuck", replicas=1, cpu="640")
    await api.create(stuck)
    # Without --timeout (0s: no limit) nothing would end this wait; with it, the timeout does.
    result = await kyb(control_plane, "rollout", "status", "deployment/stuck", "--timeout", "1s")
    assert (result.code, result.err) == (1, "error: timed out waiting for the condition\n"), result
    assert result.lines and all(line.startswith("Waiting for deployment") for line in result.lines), result
    assert not any(c.reason == "ProgressDeadlineExceeded"
                   for c in (await api.get("deployments", "stuck")).status.conditions)


# ---------------------------------------------------------------- cordon, uncordon, drain (hollow kubelets)


async def pods_on(client: Client, node: str) -> list[pb.Pod]:
    return (await client.list("pods", field_selector=f"spec.nodeName={node}")).items


async def test_cordon_uncordon_and_drain(control_plane: MasterProcess, api: Client,
                                         kubelets: Callable[..., KubeletProcess]):
    await hollow_nodes(control_plane, kubelets, ["node-a", "node-b"])
    await api.create(make_deployment("hello", replicas=4))
    await rolled_out(control_plane)
    bare = make_pod("bare", node="node-a")
    bare.spec.termination_grace_period_seconds = 1
    await api.create(bare)

    async def unschedulable(name: str) -> bool:
        return (await api.get("nodes", name, namespace="")).spec.unschedulable

    assert (await ok(control_plane, "cordon", "node-a")).out == "node/node-a cordoned\n"
    assert await unschedulable("node-a")
    assert (await ok(control_plane, "cordon", "node/node-a")).out == "node/node-a already cordoned\n"
    assert (await ok(control_plane, "uncordon", "node-a")).out == "node/node-a uncordoned\n"
    assert not await unschedulable("node-a")
    assert (await ok(control_plane, "uncordon", "node-a")).out == "node/node-a already uncordoned\n"
    assert await fails(control_plane, "cordon", "nope") == 'Error from server (NotFound): nodes "nope" not found'

    # A pod nothing would recreate stops the drain (after the cordon, which stays), unless --force.
    refused = await kyb(control_plane, "drain", "node-a")
    assert (refused.code, refused.out) == (1, "node/node-a cordoned\n"), refused
    assert refused.err == ('error: unable to drain node "node-a" due to error: cannot delete Pods that declare no '
                           "controller (use --force to override): default/bare\n")
    assert await unschedulable("node-a")
    assert not any(p.metadata.HasField("deletion_timestamp") for p in await pods_on(api, "node-a"))

    on_a = sorted(p.metadata.name for p in await pods_on(api, "node-a"))
    assert "bare" in on_a and len(on_a) >= 2
    drained = await kyb(control_plane, "drain", "node-a", "--force", "--timeout", "60s")
    assert drained.code == 0, drained
    assert drained.err == "Warning: deleting Pods that declare no controller: default/bare\n"
    lines = drained.lines
    assert lines[0] == "node/node-a already cordoned" and lines[-1] == "node/node-a drained"
    assert lines[1:1 + len(on_a)] == [f"evicting pod default/{name}" for name in on_a]
    assert sorted(lines[1 + len(on_a):-1]) == [f"pod/{name} evicted" for name in on_a]
    assert await pods_on(api, "node-a") == []

    # The Deployment's pods are back, all on the Node that is left.
    async def moved() -> bool:
        pods = [p for p in (await api.list("pods", label_selector="app=hello")).items
                if not p.metadata.HasField("deletion_timestamp")]
        return len(pods) == 4 and all(p.spec.node_name == "node-b" for p in pods)

    await until(moved, timeout=30)
    await rolled_out(control_plane)
    with pytest.raises(NotFoundError):
        await api.get("pods", "bare")
    assert (await ok(control_plane, "uncordon", "node-a")).out == "node/node-a uncordoned\n"


async def test_drain_honours_grace_periods_and_its_timeout(control_plane: MasterProcess, api: Client):
    """A Node with no kubelet: nobody confirms the terminations, so drain waits for them (or times out)."""
    ghost = pb.Node()
    ghost.metadata.name = "ghost"
    ghost.status.conditions.add(type="Ready", status="True", reason="KubeletReady")
    await api.create(ghost)
    slow = make_pod("slow", node="ghost")
    slow.spec.termination_grace_period_seconds = 17
    await api.create(slow)

    result = await kyb(control_plane, "drain", "ghost", "--force", "--timeout", "1s")
    assert result.code == 1, result
    assert result.lines == ["node/ghost cordoned", "evicting pod default/slow"]
    assert result.err.splitlines()[-1] == \
        'error: unable to drain node "ghost" due to error: drain did not complete within 1s'
    pod = await api.get("pods", "slow")
    assert pod.metadata.deletion_grace_period_seconds == 17  # the pod's own terminationGracePeriodSeconds

    line = (await kyb(control_plane, "drain", "ghost", "--force", "--grace-period", "3", "--timeout",
                      "500ms")).err.splitlines()[-1]
    assert line == 'error: unable to drain node "ghost" due to error: drain did not complete within 500ms'
    assert (await api.get("pods", "slow")).metadata.deletion_grace_period_seconds == 3

    # Without a timeout drain waits until the pod is gone: the kubelet's confirmation, played here.
    proc = await asyncio.create_subprocess_exec(
        *_command(control_plane.address, ("drain", "ghost", "--force"), kubeconfig=control_plane.kubeconfig), cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        for expected in (b"node/ghost already cordoned\n", b"evicting pod default/slow\n"):
            assert await asyncio.wait_for(proc.stdout.readline(), 20) == expected
        assert proc.returncode is None
        await api.delete("pods", "slow", unconditional=True, grace_period_seconds=0)
        rest, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert rest == b"pod/slow evicted\nnode/ghost drained\n"
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------- expose (API only)


async def test_expose_deployment_pod_and_service(master: MasterProcess, client: Client):
    await ok(master, "create", "deployment", "web", "--image=kyb/web:1", "--port=8080")
    assert (await ok(master, "expose", "deployment/web", "--port", "80", "--target-port", "8080",
                     "--type", "NodePort")).out == "service/web exposed\n"
    svc = await client.get("services", "web")
    assert dict(svc.spec.selector) == {"app": "web"} and dict(svc.metadata.labels) == {"app": "web"}
    assert svc.spec.type == "NodePort" and svc.spec.cluster_ip
    (port,) = svc.spec.ports
    assert (port.port, port.target_port.int_val, port.protocol) == (80, 8080, "TCP")
    assert 30000 <= port.node_port <= 32767

    # No --port: the container's port; a named target port; several ports.
    await ok(master, "expose", "deployment", "web", "--name", "web-auto")
    (port,) = (await client.get("services", "web-auto")).spec.ports
    assert (port.port, port.target_port.int_val) == (8080, 8080)
    await ok(master, "expose", "deploy/web", "--port=81", "--target-port=http", "--protocol=UDP", "--name=named")
    (port,) = (await client.get("services", "named")).spec.ports
    assert (port.port, port.target_port.str_val, port.protocol) == (81, "http", "UDP")
    await ok(master, "expose", "deploy/web", "--port=80,443", "--name=multi", "-l", "team=x")
    multi = await client.get("services", "multi")
    assert [(p.name, p.port, p.target_port.int_val) for p in multi.spec.ports] == [("port-1", 80, 80),
                                                                                   ("port-2", 443, 443)]
    assert dict(multi.metadata.labels) == {"team": "x"}

    await client.create(make_pod("solo", labels={"app": "solo", "tier": "x"}))
    assert (await ok(master, "expose", "pod/solo", "--port", "9000")).out == "service/solo exposed\n"
    assert dict((await client.get("services", "solo")).spec.selector) == {"app": "solo", "tier": "x"}
    await ok(master, "expose", "svc/web", "--name", "web-copy")
    copy = await client.get("services", "web-copy")
    assert dict(copy.spec.selector) == {"app": "web"}
    assert [(p.port, p.target_port.int_val) for p in copy.spec.ports] == [(80, 8080)]

    dry = await ok(master, "expose", "deployment/web", "--port", "80", "--name", "dry", "--dry-run=client",
                   "-o", "yaml")
    doc = yaml.safe_load(dry.out)
    assert doc["kind"] == "Service" and doc["spec"]["ports"][0]["port"] == 80
    with pytest.raises(NotFoundError):
        await client.get("services", "dry")

    await client.create(make_pod("nolabels"))
    await ok(master, "create", "deployment", "portless", "--image=kyb/web:1")
    errors = {
        ("expose", "deployment/web", "--port", "80"): 'Error from server (AlreadyExists): services "web" already '
                                                      "exists",
        ("expose", "deploy/nope", "--port", "1"): 'Error from server (NotFound): deployments "nope" not found',
        ("expose", "node/n1", "--port", "1"): "error: cannot expose a Node",
        ("expose", "pod/nolabels", "--port", "1"): "error: couldn't retrieve selectors via --selector flag or "
                                                   "introspection: the pod has no labels and cannot be exposed",
        ("expose", "deployment/portless"): "error: couldn't find port via --port flag or introspection",
        ("expose", "deployment/web", "--port", "http", "--name", "x"): 'error: invalid argument "http" for "--port" '
                                                                       "flag: a port number between 1 and 65535",
        ("expose",): "error: You must provide one or more resources by argument or filename.",
    }
    for args, expected in errors.items():
        assert await fails(master, *args) == expected, args
    line = await fails(master, "expose", "deployment/web", "--port", "80", "--type", "Bogus", "--name", "bogus")
    assert line.startswith('The Service "bogus" is invalid: spec.type: '), line


async def test_logs_and_exec_targets_without_kubelets(master: MasterProcess, client: Client):
    """What logs/exec say before any kubelet is asked: missing pods, kinds without pods, several containers."""
    await ok(master, "create", "deployment", "web", "--image=kyb/web:1")  # no controllers here: it gets no pods
    # logs TYPE/NAME waits up to --pod-running-timeout for a pod to appear. A wait of an hour, started
    # first, outlives a wait of a second, which gives up; then a pod appears and the long wait takes it.
    # (Were the flag ignored, both would wait the 20 s default and the first started would end first.)
    patient = await asyncio.create_subprocess_exec(
        *_command(master.address, ("logs", "deployment/web", "--pod-running-timeout=1h"),
                 kubeconfig=master.kubeconfig), cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert await fails(master, "logs", "deployment/web", "--pod-running-timeout=1s") == \
            "error: timed out waiting for the condition"
        await client.create(make_pod("web-late", labels={"app": "web"}))
        _, err = await asyncio.wait_for(patient.communicate(), 60)
        assert (patient.returncode, err.decode()) == (
            1, "Error from server (BadRequest): pod web-late does not have a host assigned\n")
    finally:
        if patient.returncode is None:
            patient.kill()
            await patient.wait()
    bare = pb.Service()
    bare.metadata.name = "bare"
    bare.spec.ports.add(port=80)
    await client.create(bare)
    assert await fails(master, "logs", "svc/bare") == \
        "error: cannot get the logs from *v1.Service: invalid service 'bare': Service is defined without a selector"
    node = pb.Node()
    node.metadata.name = "n1"
    await client.create(node)
    assert await fails(master, "exec", "node/n1", "--", "true") == \
        "error: cannot attach to *v1.Node: selector for *v1.Node not implemented"

    duo = make_pod("duo", node="n1")
    duo.spec.containers.add(name="side", image="kyb/busybox:1")
    await client.create(duo)
    result = await kyb(master, "logs", "duo")
    assert result.code == 1
    assert result.err == ('Defaulted container "main" out of: main, side\n'
                          'Error from server (ServiceUnavailable): node "n1" is not connected\n')
    duo.metadata.name = "annotated"
    duo.metadata.annotations["kubectl.kubernetes.io/default-container"] = "side"
    await client.create(duo)
    assert await fails(master, "exec", "annotated", "--", "true") == \
        'Error from server (ServiceUnavailable): node "n1" is not connected'
    finished = make_pod("finished", node="n1")
    await client.create(finished)
    finished = await client.get("pods", "finished")
    finished.status.phase = "Succeeded"
    await client.update_status(finished)
    assert await fails(master, "exec", "finished", "--", "true") == \
        "error: cannot exec into a container in a completed pod; current phase is Succeeded"


async def test_usage_errors_are_one_line(master: MasterProcess):
    expectations = {
        ("logs",): "error: expected POD or TYPE/NAME as an argument",
        ("logs", "a", "b", "c"): "error: expected at most POD or TYPE/NAME and a CONTAINER as arguments",
        ("logs", "a", "--tail", "-5"): None,
        ("exec",): "error: pod, type/name or --filename must be specified",
        ("rollout", "status"): "error: required resource not specified",
        ("rollout", "status", "deploy/a", "deploy/b"): "error: rollout status takes exactly one deployment",
        ("rollout", "frobnicate"): None,
        ("rollout", "status", "deploy/a", "--timeout", "soon"): None,
        ("cordon",): None,
        ("drain",): None,
        ("drain", "n1", "--timeout", "x"): None,
        ("expose", "deploy/a", "deploy/b"): "error: only one object can be exposed at a time",
    }
    for args, expected in expectations.items():
        line = await fails(master, *args)
        assert line.startswith("error: "), (args, line)
        if expected is not None:
            assert line == expected, args


# ---------------------------------------------------------------- pure pieces


def deployment_with(*, replicas: int = 3, generation: int = 2, observed: int = 2, updated: int = 3, total: int = 3,
                    available: int = 3, progressing: str = "") -> pb.Deployment:
    d = pb.Deployment()
    d.metadata.name = "hello"
    d.metadata.generation = generation
    d.spec.replicas = replicas
    d.status.observed_generation = observed
    d.status.updated_replicas, d.status.replicas, d.status.available_replicas = updated, total, available
    if progressing:
        d.status.conditions.add(type="Progressing", status="False", reason=progressing)
    return d


def test_status_message_follows_kubectls_order():
    assert status_message(deployment_with(observed=1)) == \
        ("Waiting for deployment spec update to be observed...", False)
    assert status_message(deployment_with(updated=1, total=4, available=3)) == (
        'Waiting for deployment "hello" rollout to finish: 1 out of 3 new replicas have been updated...', False)
    assert status_message(deployment_with(total=5)) == (
        'Waiting for deployment "hello" rollout to finish: 2 old replicas are pending termination...', False)
    assert status_message(deployment_with(available=1)) == (
        'Waiting for deployment "hello" rollout to finish: 1 of 3 updated replicas are available...', False)
    assert status_message(deployment_with()) == (ROLLED_OUT, True)
    with pytest.raises(CliError, match='deployment "hello" exceeded its progress deadline'):
        status_message(deployment_with(updated=1, progressing="ProgressDeadlineExceeded"))


def test_pod_order_for_logs_prefers_bound_running_ready_then_older():
    def pod(name: str, *, node: str = "n", phase: str = "Running", ready_at: int | None = None, restarts: int = 0,
            created: int = 100) -> pb.Pod:
        p = make_pod(name, node=node)
        p.status.phase = phase
        if ready_at is not None:
            p.status.conditions.add(type="Ready", status="True").last_transition_time.FromSeconds(ready_at)
        p.status.container_statuses.add(name="main", restart_count=restarts)
        p.metadata.creation_timestamp.FromSeconds(created)
        return p

    pods = [pod("unbound", node="", phase="Pending"), pod("pending", phase="Pending"), pod("unknown", phase="Unknown"),
            pod("notready"), pod("ready-late", ready_at=50), pod("ready-early", ready_at=10),
            pod("restarted", restarts=3), pod("older", created=1)]
    order = [p.metadata.name for p in sorted(pods, key=logging_order_key)]
    assert order == ["ready-early", "ready-late", "restarted", "older", "notready", "unknown", "pending", "unbound"]


def test_drain_plan_rules():
    owned = make_pod("owned")
    owned.metadata.owner_references.add(kind="ReplicaSet", name="rs", controller=True)
    daemon = make_pod("daemon")
    daemon.metadata.owner_references.add(kind="DaemonSet", name="ds", controller=True)
    done = make_pod("done")
    done.status.phase = "Succeeded"
    bare = make_pod("bare")
    plan = plan_drain([owned, daemon, done, bare], force=False, ignore_daemonsets=False)
    assert plan.errors == [
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/daemon",
        "cannot delete Pods that declare no controller (use --force to override): default/bare"]
    plan = plan_drain([owned, daemon, done, bare], force=True, ignore_daemonsets=True)
    assert plan.errors == []
    assert [p.metadata.name for p in plan.evict] == ["bare", "done", "owned"]
    assert plan.warnings == ["ignoring DaemonSet-managed Pods: default/daemon",
                             "deleting Pods that declare no controller: default/bare"]
    assert [go_duration(s) for s in (0.5, 1, 90, 7200.5)] == ["500ms", "1s", "1m30s", "2h0m0.5s"]


def test_restarted_at_is_rfc3339_like_go():
    assert restarted_at(dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.UTC)) == "2024-05-01T10:00:00Z"
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert restarted_at(dt.datetime(2024, 5, 1, 10, 0, 0, 123, tzinfo=plus_two)) == "2024-05-01T10:00:00+02:00"


def test_service_generator_matches_kubectls():
    d = make_deployment("web")
    d.spec.template.spec.containers[0].ports.add(container_port=8080, protocol="UDP")
    svc = service_for(d, ExposeOptions(), namespace="ns")
    assert (svc.metadata.name, svc.metadata.namespace, dict(svc.spec.selector)) == ("web", "ns", {"app": "web"})
    assert [(p.name, p.port, p.target_port.int_val, p.protocol) for p in svc.spec.ports] == [("", 8080, 8080, "UDP")]
    d.spec.selector.match_expressions.add(key="tier", operator="In", values=["a", "b"])
    with pytest.raises(CliError, match=r"couldn't convert expressions - \[tier In \(a,b\)\]"):
        service_for(d, ExposeOptions(port="80"), namespace="ns")
    svc = service_for(d, ExposeOptions(port="80", selector="app=web,tier=a"), namespace="ns")
    assert dict(svc.spec.selector) == {"app": "web", "tier": "a"}
