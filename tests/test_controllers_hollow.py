"""The control loops in the real master process with real kubelet processes on the hollow runtime.

Hollow kubelets (`kyb-kubelet --runtime hollow`) register through the real node link,
heartbeat, report pods Running+Ready after a start delay and confirm terminations, but run
no containers: these tests are about the control plane (self-healing, rollouts, a master
crash mid-rollout), so containers would only add time. The master runs with its defaults
(node-monitor-grace-period 5 s, pod-eviction-timeout 5 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.builders import make_deployment
from harness.master import MasterProcess
from harness.waiting import until
from kybernetes.core.machinery.informer import object_key
from kybernetes.ctl.client import Client, ConflictError
from kybernetes.ctl.client.rollout import rollback_deployment
from kybernetes.master.controllers.deployment import util
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import objects_pb2 as pb
from tests.fixtures import kubelet as kubelet_fixtures
from tests.test_controllers_support import is_ready, is_terminating

if TYPE_CHECKING:
    from harness.kubelet import KubeletProcess

kubelets = kubelet_fixtures.kubelets

HOLLOW_ARGS = ["--heartbeat-interval", "0.5", "--no-pod-routes", "--no-proxy"]


@pytest.fixture
async def master(etcd: EtcdProcess, tmp_path: Path) -> AsyncIterator[MasterProcess]:
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "master.log") as proc:
        yield proc


@pytest.fixture
async def client(master: MasterProcess) -> AsyncIterator[Client]:
    async with master.client() as c:
        yield c


async def start_nodes(master: MasterProcess, kubelets: Callable[..., KubeletProcess], names: list[str], *,
                      start_delay: float = 0.2) -> dict[str, KubeletProcess]:
    procs = {name: kubelets(master=await master.join(), node_name=name, runtime="hollow",
                            extra_args=[*HOLLOW_ARGS, "--hollow-start-delay", str(start_delay)]) for name in names}
    await asyncio.gather(*(p.start() for p in procs.values()))
    return procs


async def ready_pods(client: Client, selector: str = "app=hello") -> list[pb.Pod]:
    return [p for p in (await client.list("pods", label_selector=selector)).items
            if not is_terminating(p) and is_ready(p)]


async def complete(client: Client, generation: int = 1) -> pb.Deployment | None:
    d = await client.get("deployments", "hello")
    progressing = next((c for c in d.status.conditions if c.type == "Progressing"), None)
    done = (d.status.observed_generation >= max(generation, d.metadata.generation)
            and d.status.updated_replicas == d.spec.replicas and d.status.replicas == d.spec.replicas
            and d.status.available_replicas == d.spec.replicas and progressing is not None
            and progressing.reason == "NewReplicaSetAvailable")
    return d if done else None


async def set_image(client: Client, image: str) -> None:
    for _ in range(20):
        d = await client.get("deployments", "hello")
        d.spec.template.spec.containers[0].image = image
        try:
            await client.update(d)
            return
        except ConflictError:
            continue
    raise AssertionError("deployment kept changing")


async def test_a_killed_kubelets_pods_are_evicted_and_run_elsewhere(master: MasterProcess, client: Client,
                                                                   kubelets: Callable[..., KubeletProcess]):
    nodes = await start_nodes(master, kubelets, ["node-a", "node-b", "node-c"])
    await client.create(make_deployment("hello", replicas=3))

    async def spread() -> list[pb.Pod]:
        pods = await ready_pods(client)
        return pods if len(pods) == 3 else []

    pods = await until(spread, timeout=30, message="3 ready pods")
    assert sorted(p.spec.node_name for p in pods) == ["node-a", "node-b", "node-c"]
    lost = [p.metadata.name for p in pods if p.spec.node_name == "node-b"]

    await nodes["node-b"].kill()

    async def replaced() -> list[pb.Pod]:
        pods = await ready_pods(client)
        return pods if len(pods) == 3 and all(p.spec.node_name != "node-b" for p in pods) else []

    # (How fast this happens is the failover benchmark's business: bench/failover.py.)
    await until(replaced, timeout=60, interval=0.1, message="replacements Running elsewhere")
    # They moved because node-b was declared lost and its pods evicted: Ready=Unknown, the unreachable
    # taint, and the old pod Terminating on node-b (nobody there confirms it).
    node_b = await client.get("nodes", "node-b", namespace="")
    assert any(c.type == "Ready" and c.status == "Unknown" for c in node_b.status.conditions)
    assert any(t.key == "node.kubernetes.io/unreachable" and t.effect == "NoExecute" for t in node_b.spec.taints)
    stale = await client.get("pods", lost[0])
    assert is_terminating(stale) and stale.spec.node_name == "node-b"

    # The kubelet comes back: its stale pods are stopped (gone from etcd) and the Node is untainted.
    await nodes["node-b"].start()

    async def cleaned() -> bool:
        names = {p.metadata.name for p in (await client.list("pods", label_selector="app=hello")).items}
        node = await client.get("nodes", "node-b", namespace="")
        return not (names & set(lost)) and not any(t.effect == "NoExecute" for t in node.spec.taints)

    await until(cleaned, timeout=20, message="stale pods stopped and taint removed")
    assert len(await ready_pods(client)) == 3


async def test_rolling_update_and_rollback_with_real_kubelets(master: MasterProcess, client: Client,
                                                             kubelets: Callable[..., KubeletProcess]):
    await start_nodes(master, kubelets, ["node-a", "node-b"])
    await client.create(make_deployment("hello", replicas=4, max_surge=1, max_unavailable=1))
    await until(lambda: complete(client), timeout=30)
    await set_image(client, "kyb/hello:v2")
    await until(lambda: complete(client, 2), timeout=30, message="v2 rolled out")
    assert "rolled back" in await rollback_deployment(client, "hello")
    d = await until(lambda: complete(client, 3), timeout=30, message="rolled back to v1")
    assert d.spec.template.spec.containers[0].image == "kyb/hello:v1"
    assert d.metadata.annotations[util.REVISION] == "3"
    images = {p.spec.containers[0].image for p in await ready_pods(client)}
    assert images == {"kyb/hello:v1"}


async def test_master_killed_mid_rollout_completes_after_restart_without_extra_pods(
        master: MasterProcess, client: Client, kubelets: Callable[..., KubeletProcess]):
    # Pods take a second to become ready, so the rollout is still under way when the master dies.
    await start_nodes(master, kubelets, ["node-a", "node-b", "node-c"], start_delay=1.0)
    await client.create(make_deployment("hello", replicas=6, max_surge=1, max_unavailable=1))
    await until(lambda: complete(client), timeout=40)

    pods: dict[str, pb.Pod] = {}
    violations: list[str] = []

    async def watch(rv: str) -> None:
        async for ev in client.watch("pods", label_selector="app=hello", resource_version=rv):
            if ev.type == "DELETED":
                pods.pop(object_key(ev.object), None)
            else:
                pods[object_key(ev.object)] = ev.object
            live = [p for p in pods.values() if not is_terminating(p)]
            if len(live) > 7:
                violations.append(f"{len(live)} pods")

    listed = await client.list("pods", label_selector="app=hello")
    pods.update({object_key(p): p for p in listed.items})
    watcher = asyncio.create_task(watch(listed.resource_version))
    await set_image(client, "kyb/hello:v2")

    async def mid_rollout() -> bool:
        rss = (await client.list("replicasets")).items
        return len([rs for rs in rss if rs.spec.replicas > 0]) == 2

    await until(mid_rollout, timeout=20)
    await master.kill()
    await master.start()
    d = await until(lambda: complete(client, 2), timeout=60, message="rollout completed after the restart")
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert violations == []
    live = [p for p in (await client.list("pods", label_selector="app=hello")).items if not is_terminating(p)]
    assert len(live) == 6 and {p.spec.containers[0].image for p in live} == {"kyb/hello:v2"}
    assert d.metadata.annotations[util.REVISION] == "2"


async def test_a_frozen_kubelet_is_lost_after_the_grace_period_and_ready_at_its_next_heartbeat(
        master: MasterProcess, client: Client, kubelets: Callable[..., KubeletProcess]):
    """SIGSTOP keeps the kubelet's stream open but silent (a starved or frozen process): the Node turns
    Ready=Unknown after the grace period, and after SIGCONT its next heartbeat makes it Ready again at
    once (not only at the coarse lastHeartbeatTime refresh, minutes later)."""
    nodes = await start_nodes(master, kubelets, ["node-a"])
    process = nodes["node-a"].proc
    assert process is not None

    async def ready(status: str) -> bool:
        node = await client.get("nodes", "node-a", namespace="")
        return any(c.type == "Ready" and c.status == status for c in node.status.conditions)

    os.kill(process.pid, signal.SIGSTOP)
    try:
        await until(lambda: ready("Unknown"), timeout=15, message="Ready=Unknown while frozen")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    # The deadline is far below the master's 120 s lastHeartbeatTime refresh: only the heartbeat can do it.
    await until(lambda: ready("True"), timeout=30, interval=0.1, message="Ready=True after SIGCONT")
    assert nodes["node-a"].registrations() == 1  # the same stream: no reconnect did it
