"""Pod lifecycle on a real node: real master, real kubelet process, real containerd, runc and CNI bridge.

Each test gets its own containerd namespace, bridge and pod /24; HTTP only goes from the host to pod IPs
on that bridge.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import signal
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from harness.builders import make_pod
from harness.waiting import until
from kybernetes.proto import node_pb2, node_pb2_grpc
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from harness.kubelet import Node

pytestmark = pytest.mark.containerd
# The `node` and `cluster_master` fixtures.

BUSYBOX = "kyb/busybox:1"
HELLO = "kyb/hello:v1"


def running(pod: pb.Pod) -> bool:
    return pod.status.phase == "Running" and bool(pod.status.container_statuses) and \
        pod.status.container_statuses[0].state.HasField("running")


def ready(pod: pb.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a pod IP on the test's bridge
        return response.read().decode()


async def test_http_pod_runs_with_a_pod_ip_answering_from_the_host(node: Node):
    await node.create(make_pod("web", image=HELLO, grace_seconds=1))
    pod = await node.pod_where("web", lambda p: running(p) and ready(p), message="web Running and Ready")
    ip = ipaddress.ip_address(pod.status.pod_ip)
    assert ip in ipaddress.ip_network(node.master.pod_cidr)
    assert pod.status.host_ip and pod.status.HasField("start_time")
    status = pod.status.container_statuses[0]
    assert status.container_id in node.container_ids()
    assert status.restart_count == 0 and status.started and status.image == HELLO
    assert {c.type for c in pod.status.conditions} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}

    body = await asyncio.to_thread(http_get, f"http://{pod.status.pod_ip}:8080/")
    # The pod's hostname is its name (the runtime gives each pod its own UTS namespace).
    assert body.strip() == "hello from web version v1"

    events = await node.client.list("events", namespace="default")
    reasons = {e.reason for e in events.items if e.involved_object.name == "web"}
    assert {"Created", "Started"} <= reasons


async def test_host_network_pod_uses_the_node_ip(node: Node):
    pod = make_pod("hostnet", command=["sleep", "3600"], grace_seconds=1)
    pod.spec.host_network = True
    await node.create(pod)
    pod = await node.pod_where("hostnet", running)
    assert pod.status.pod_ip == pod.status.host_ip


async def test_command_args_env_and_working_dir_are_applied(node: Node):
    pod = make_pod("env", command=["sh", "-c"], args=['echo "cwd=$(pwd) greeting=$GREETING"; exec sleep 3600'],
                   working_dir="/bin", grace_seconds=1)
    pod.spec.containers[0].env.add(name="GREETING", value="hello world")
    await node.create(pod)
    await node.pod_where("env", running)

    code, out, _ = await node.exec("env", ["env"])
    assert code == 0
    assert "GREETING=hello world" in out.decode().splitlines()
    logs = await _until_logs(node, "env", b"greeting")
    assert logs.strip() == b"cwd=/bin greeting=hello world"


async def test_cpu_and_memory_limits_reach_the_container_cgroup(node: Node):
    pod = make_pod("limited", command=["sleep", "3600"], grace_seconds=1)
    pod.spec.containers[0].resources.limits.update({"cpu": "250m", "memory": "64Mi"})
    await node.create(pod)
    pod = await node.pod_where("limited", running)
    container_id = pod.status.container_statuses[0].container_id
    cgroup = Path("/sys/fs/cgroup")
    relative = Path(node.containerd.namespace) / container_id
    assert (cgroup / "memory" / relative / "memory.limit_in_bytes").read_text().strip() == str(64 * 2**20)
    assert (cgroup / "cpu" / relative / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (cgroup / "cpu" / relative / "cpu.cfs_period_us").read_text().strip() == "100000"


async def test_containers_of_a_pod_share_localhost(node: Node):
    pod = make_pod("duo", image=HELLO, grace_seconds=1)
    pod.spec.containers.add(name="sidecar", image=BUSYBOX, command=["sleep", "3600"])
    await node.create(pod)
    pod = await node.pod_where("duo", lambda p: p.status.phase == "Running" and ready(p))
    assert [s.name for s in pod.status.container_statuses] == ["main", "sidecar"]

    code, out, _ = await node.exec("duo", ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"], container="sidecar")
    assert (code, out.strip()) == (0, b"hello from duo version v1")
    with pytest.raises(grpc.aio.AioRpcError, match="a container name must be specified"):
        await node.logs("duo")
    logs = await _until_logs(node, "duo", b"serving", container="main")
    assert b"hello v1 serving on :8080 as duo" in logs


async def _until_logs(node: Node, pod: str, needle: bytes, **kwargs: object) -> bytes:
    async def logs_with_needle() -> bytes:
        data = await node.logs(pod, **kwargs)  # type: ignore[arg-type]
        assert needle in data, f"{needle!r} not in the logs: {data!r}"
        return data

    return await until(logs_with_needle, timeout=20, interval=0.2, message=f"{needle!r} in the logs of {pod}")


async def test_exec_streams_output_stdin_and_exit_code(node: Node):
    await node.create(make_pod("ex", command=["sleep", "3600"], grace_seconds=1))
    await node.pod_where("ex", running)
    code, out, err = await node.exec("ex", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (code, out, err) == (7, b"out\n", b"err\n")
    code, out, _ = await node.exec("ex", ["cat"], stdin=b"piped input\n")
    assert (code, out) == (0, b"piped input\n")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await node.exec("ex", ["/bin/no-such-binary"])
    assert "no such file or directory" in (raised.value.details() or "")


async def test_logs_tail_follow_and_previous(node: Node):
    script = 'echo "boot $(cat /proc/sys/kernel/random/uuid)"; for i in 1 2 3 4 5; do echo line $i; done; ' \
             'while true; do echo tick; sleep 0.2; done'
    await node.create(make_pod("logger", command=["sh", "-c", script], grace_seconds=1))
    pod = await node.pod_where("logger", running)
    await _until_logs(node, "logger", b"tick\ntick\n")

    tail = await node.logs("logger", tail=2)
    assert tail.count(b"\n") == 2 and set(tail.splitlines()) == {b"tick"}
    everything = await node.logs("logger")
    assert everything.splitlines()[1:6] == [f"line {i}".encode() for i in range(1, 6)]

    # -f: output keeps coming on one open stream.
    async with node.master.process.channel() as channel:
        stub = node_pb2_grpc.PodAPIStub(channel)
        call = stub.Logs(node_pb2.LogsRequest(namespace="default", pod="logger", follow=True, tail_lines=0))
        seen = b""
        async for chunk in call:
            seen += chunk.data
            if seen.count(b"tick") >= 3:
                break
        call.cancel()
    assert seen.count(b"tick") >= 3

    with pytest.raises(grpc.aio.AioRpcError, match="previous terminated container"):
        await node.logs("logger", previous=True)

    first_boot = everything.splitlines()[0]
    os.kill(node.task_pid(pod.status.container_statuses[0].container_id) or 0, signal.SIGKILL)
    await node.pod_where("logger", lambda p: running(p) and p.status.container_statuses[0].restart_count == 1)
    previous = await node.logs("logger", previous=True)
    assert previous.splitlines()[0] == first_boot
    current = await _until_logs(node, "logger", b"boot")
    assert current.splitlines()[0] != first_boot and current.splitlines()[0].startswith(b"boot ")


async def test_big_log_is_rotated_by_copytruncate(node: Node):
    # ~1.5 MiB, over the node fixture's 1 MiB limit.
    script = 'i=0; while [ $i -lt 30000 ]; do echo "filler $i ........................................"; ' \
             'i=$((i+1)); done; exec sleep 3600'
    pod = await node.create(make_pod("chatty", command=["sh", "-c", script], grace_seconds=1))
    await node.pod_where("chatty", running)
    log_dir = node.containerd.root_dir / "pods" / f"default_chatty_{pod.metadata.uid}" / "main"

    async def rotated() -> bool:
        copy = log_dir / "0.log.1"
        return copy.exists() and copy.stat().st_size > 2**20

    await until(rotated, timeout=30)
    assert (log_dir / "0.log").stat().st_size < 2**20
    assert len(await node.logs("chatty")) < 2**20


async def test_container_killed_from_outside_is_restarted_and_counted(node: Node):
    await node.create(make_pod("victim", command=["sleep", "3600"], grace_seconds=1))
    pod = await node.pod_where("victim", running)
    first_id = pod.status.container_statuses[0].container_id
    pid = node.task_pid(first_id)
    assert pid
    os.kill(pid, signal.SIGKILL)

    pod = await node.pod_where("victim", lambda p: running(p) and p.status.container_statuses[0].restart_count == 1,
                               message="restarted once")
    status = pod.status.container_statuses[0]
    assert status.container_id != first_id
    assert status.last_state.terminated.exit_code == 137
    assert status.last_state.terminated.reason == "Error"
    assert status.last_state.terminated.container_id == first_id
    assert node.task_pid(status.container_id)


async def test_crashing_container_backs_off(node: Node):
    created = await node.create(make_pod("crasher", command=["sh", "-c", "echo crashing; exit 3"], grace_seconds=1))
    # Every status the kubelet reports, from creation on: delay of each back-off -> restart counts seen in it.
    backoffs: dict[float, set[int]] = {}

    async def until_backing_off_for(delay: float) -> pb.Pod:
        async for event in node.client.watch("pods", namespace="default", field_selector="metadata.name=crasher",
                                             resource_version=created.metadata.resource_version):
            statuses = event.object.status.container_statuses
            if statuses and statuses[0].state.waiting.reason == "CrashLoopBackOff":
                shown = float(re.search(r"back-off (\S+)s", statuses[0].state.waiting.message)[1])
                backoffs.setdefault(shown, set()).add(statuses[0].restart_count)
                if shown >= delay:
                    return event.object
        raise AssertionError("watch ended")

    pod = await asyncio.wait_for(until_backing_off_for(4), 60)
    # Back-off 1 s doubling (capped at 8 s in these tests): 1, 2, 4 in that order, one restart between them,
    # and no restart while a back-off runs.
    assert list(backoffs) == [1, 2, 4], backoffs
    assert all(len(counts) == 1 for counts in backoffs.values()), f"restarted during a back-off: {backoffs}"
    counts = [next(iter(backoffs[delay])) for delay in (1, 2, 4)]
    assert counts[1] == counts[0] + 1 and counts[2] == counts[1] + 1, counts
    status = pod.status.container_statuses[0]
    assert "back-off" in status.state.waiting.message
    assert status.last_state.terminated.exit_code == 3 and status.last_state.terminated.reason == "Error"
    assert pod.status.phase == "Running"  # restartPolicy Always: a crash loop is still Running
    assert not ready(pod)
    events = await node.client.list("events", namespace="default")
    backoff = [e for e in events.items if e.involved_object.name == "crasher" and e.reason == "BackOff"]
    assert backoff and backoff[0].type == "Warning"


async def test_restart_policies_and_phases(node: Node):
    await node.create(make_pod("done", command=["sh", "-c", "exit 0"], restart_policy="OnFailure", grace_seconds=1))
    await node.create(make_pod("failed", command=["sh", "-c", "exit 2"], restart_policy="Never", grace_seconds=1))
    done = await node.pod_where("done", lambda p: p.status.phase == "Succeeded", message="Succeeded")
    term = done.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed" and term.HasField("finished_at")
    assert done.status.container_statuses[0].restart_count == 0
    failed = await node.pod_where("failed", lambda p: p.status.phase == "Failed", message="Failed")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 2
    assert failed.status.container_statuses[0].state.terminated.reason == "Error"


async def test_memory_limit_is_enforced_with_oomkilled(node: Node):
    pod = make_pod("hog", command=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                   restart_policy="Never", grace_seconds=1)
    pod.spec.containers[0].resources.limits["memory"] = "16Mi"
    await node.create(pod)
    pod = await node.pod_where("hog", lambda p: p.status.phase == "Failed", message="OOM-killed pod Failed")
    term = pod.status.container_statuses[0].state.terminated
    assert (term.reason, term.exit_code) == ("OOMKilled", 137)


async def test_liveness_probe_failure_restarts_the_container(node: Node):
    probe = pb.Probe(exec=pb.ExecAction(command=["test", "-f", "/tmp/healthy"]), period_seconds=1,
                     failure_threshold=1)
    pod = make_pod("live", command=["sh", "-c", "touch /tmp/healthy; exec sleep 3600"], liveness_probe=probe,
                   grace_seconds=1)
    await node.create(pod)
    pod = await node.pod_where("live", running)
    first_id = pod.status.container_statuses[0].container_id
    code, _, _ = await node.exec("live", ["rm", "/tmp/healthy"])
    assert code == 0
    pod = await node.pod_where("live", lambda p: running(p) and p.status.container_statuses[0].restart_count == 1,
                               message="restarted by the liveness probe")
    assert pod.status.container_statuses[0].container_id != first_id
    events = await node.client.list("events", namespace="default")
    reasons = {(e.reason, e.type) for e in events.items if e.involved_object.name == "live"}
    assert ("Unhealthy", "Warning") in reasons and ("Killing", "Normal") in reasons


async def test_readiness_probe_flips_ready(node: Node):
    probe = pb.Probe(http_get=pb.HTTPGetAction(path="/healthz", port=pb.IntOrString(int_val=8080)),
                     period_seconds=1, failure_threshold=1)
    await node.create(make_pod("rdy", image=HELLO, readiness_probe=probe, grace_seconds=1))
    await node.pod_where("rdy", lambda p: running(p) and ready(p), message="Ready")
    await node.exec("rdy", ["rm", "/www/healthz"])
    pod = await node.pod_where("rdy", lambda p: running(p) and not ready(p), message="not Ready")
    assert not pod.status.container_statuses[0].ready
    assert pod.status.container_statuses[0].restart_count == 0
    await node.exec("rdy", ["sh", "-c", "echo ok > /www/healthz"])
    await node.pod_where("rdy", ready, message="Ready again")


def killed_after_grace(node: Node) -> dict[str, float]:
    """Container id -> grace, for every container the kubelet SIGKILLed because its grace period ran out."""
    killed = {}
    for line in node.kubelet.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "grace period over, killing":
            killed[entry["container"]] = entry["grace"]
    return killed


async def test_graceful_deletion_sigterm_then_sigkill(node: Node):
    # Exits on SIGTERM at once although the grace period is long.
    polite = make_pod("polite", command=["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
                      grace_seconds=60)
    # PID 1 without a handler ignores SIGTERM: only the SIGKILL after the grace period ends it. (A grace
    # period long enough to outlast the polite pod's whole termination, however slow the machine.)
    stubborn = make_pod("stubborn", command=["sleep", "3600"], grace_seconds=10)
    for pod in (polite, stubborn):
        await node.create(pod)
    ids = {}
    for name in ("polite", "stubborn"):
        ids[name] = (await node.pod_where(name, running)).status.container_statuses[0].container_id

    for name in ("polite", "stubborn"):
        pod = await node.client.get("pods", name)
        result = await node.client.delete("pods", name, resource_version=pod.metadata.resource_version)
        assert not result.deleted and result.object.metadata.HasField("deletion_timestamp")

    # Gone long before its 60 s grace period ends: SIGTERM ended it, the kubelet never had to SIGKILL it.
    await node.gone("polite", timeout=30)
    assert ids["polite"] not in killed_after_grace(node)
    # Meanwhile the stubborn one is still there (Terminating), its container running in spite of SIGTERM...
    pod = await node.client.get("pods", "stubborn")
    assert pod.metadata.HasField("deletion_timestamp")
    assert node.task_pid(ids["stubborn"])
    await node.gone("stubborn", timeout=30)
    # ...and went only by the SIGKILL when its grace period was over.
    assert killed_after_grace(node).get(ids["stubborn"], 0) > 0
    assert node.container_ids() == set()
    assert node.containerd.netns_names() == []


async def test_pods_get_service_environment_variables(node: Node):
    svc = pb.Service()
    svc.metadata.name = "redis-primary"
    svc.spec.selector["app"] = "redis"
    port = svc.spec.ports.add(name="db", port=6379)
    port.target_port.int_val = 6379
    svc = await node.client.create(svc)
    ip = svc.spec.cluster_ip
    # The Service reaches the kubelet asynchronously; a pod started after it has arrived gets the variables.
    for attempt in range(5):
        name = f"svcenv{attempt}"
        await node.create(make_pod(name, command=["sleep", "3600"], grace_seconds=1))
        await node.pod_where(name, running)
        code, out, _ = await node.exec(name, ["env"])
        env = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
        if "REDIS_PRIMARY_SERVICE_HOST" in env:
            break
    assert code == 0
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == ip
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_DB"] == "6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP"] == f"tcp://{ip}:6379"
