"""The ReplicaSet controller against real etcd and the real object service, controllers in-process.

Kubelets are played through the API (`ApiKubelets`: pods become Running+Ready, terminations
are confirmed): these tests are about the controller's counting, naming, ownership and
ordering, not about containers.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from harness.builders import make_pod
from harness.waiting import until
from kybernetes.ctl.client import ListResult
from kybernetes.master.controllers.replicaset.sync import NAME_ALPHABET
from kybernetes.proto import objects_pb2 as pb
from tests import test_controllers_support as support
from tests.test_controllers_support import (
    Cluster,
    edit,
    is_ready,
    is_terminating,
    make_replicaset,
    start_cluster,
)

cluster = support.cluster


async def rs_status(c: Cluster, name: str) -> pb.ReplicaSetStatus:
    return (await c.client.get("replicasets", name)).status


async def active(c: Cluster, selector: str) -> list[pb.Pod]:
    return [p for p in await c.pods(label_selector=selector) if not is_terminating(p)]


async def test_creates_named_owned_pods_and_reports_status(cluster: Cluster):
    await cluster.add_nodes("n1", "n2")
    rs = await cluster.client.create(make_replicaset("web", replicas=3))

    async def all_ready() -> pb.ReplicaSetStatus | None:
        status = await rs_status(cluster, "web")
        return status if status.ready_replicas == 3 and status.available_replicas == 3 else None

    status = await until(all_ready, message="3 ready replicas")
    assert status.replicas == 3 and status.fully_labeled_replicas == 3 and status.observed_generation == 1
    pods = await active(cluster, "app=web")
    assert len(pods) == 3
    for pod in pods:
        assert re.fullmatch(rf"web-[{NAME_ALPHABET}]{{5}}", pod.metadata.name), pod.metadata.name
        (ref,) = pod.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion, ref.api_version) == \
            ("ReplicaSet", "web", rs.metadata.uid, True, True, "apps/v1")
    events = [e for e in (await cluster.client.list("events")).items if e.reason == "SuccessfulCreate"]
    assert sorted(e.message for e in events) == sorted(f"Created pod: {p.metadata.name}" for p in pods)

    # Scale down to 1: status follows, observedGeneration too.
    await edit(cluster.client, "replicasets", "web", lambda rs: setattr(rs.spec, "replicas", 1))

    async def scaled() -> bool:
        status = await rs_status(cluster, "web")
        return status.replicas == 1 and status.observed_generation == 2 and len(await active(cluster, "app=web")) == 1

    await until(scaled, message="scaled to 1")
    assert any(e.reason == "SuccessfulDelete" for e in (await cluster.client.list("events")).items)


async def test_scale_down_deletes_unscheduled_then_not_ready_then_newest(cluster: Cluster):
    await cluster.add_nodes("n1")
    await cluster.add_nodes("quiet", act=False)  # heartbeats, but never makes a pod ready

    unscheduled = make_pod("a-unscheduled", labels={"app": "web"}, node_selector={"disk": "none"})
    not_ready = make_pod("b-not-ready", labels={"app": "web"})
    not_ready.spec.node_name = "quiet"
    old_ready = make_pod("c-old-ready", labels={"app": "web"})
    old_ready.spec.node_name = "n1"
    new_ready = make_pod("d-new-ready", labels={"app": "web"})
    new_ready.spec.node_name = "n1"
    for pod in (unscheduled, not_ready, old_ready):
        await cluster.client.create(pod)
    await until(lambda: _ready(cluster, "c-old-ready"))
    # Ready times have one-second resolution: let the clock move on before the second one.
    start = time.time()
    await until(lambda: _after(start + 1.1))
    await cluster.client.create(new_ready)
    await until(lambda: _ready(cluster, "d-new-ready"))

    await cluster.client.create(make_replicaset("web", replicas=4))

    async def names() -> list[str]:
        return sorted(p.metadata.name for p in await active(cluster, "app=web"))

    async def adopted() -> bool:
        pods = await active(cluster, "app=web")
        return len(pods) == 4 and all(p.metadata.owner_references for p in pods)

    await until(adopted, message="all four adopted")
    assert await names() == ["a-unscheduled", "b-not-ready", "c-old-ready", "d-new-ready"]
    for replicas, gone in ((3, "a-unscheduled"), (2, "b-not-ready"), (1, "d-new-ready")):
        await edit(cluster.client, "replicasets", "web", lambda rs, n=replicas: setattr(rs.spec, "replicas", n))

        async def scaled(n: int = replicas) -> list[str]:
            current = await names()
            return current if len(current) == n else []

        assert gone not in await until(scaled, message=f"scaled to {replicas}")
    assert await names() == ["c-old-ready"]


async def _ready(c: Cluster, name: str) -> bool:
    return is_ready(await c.client.get("pods", name))


async def _after(moment: float) -> bool:
    return time.time() >= moment


async def test_adopts_orphans_and_releases_pods_that_stop_matching(cluster: Cluster):
    await cluster.add_nodes("n1")
    await cluster.client.create(make_pod("orphan", labels={"app": "web"}))
    rs = await cluster.client.create(make_replicaset("web", replicas=2))

    async def owned() -> list[pb.Pod]:
        pods = await active(cluster, "app=web")
        return pods if len(pods) == 2 and all(p.metadata.owner_references for p in pods) else []

    pods = await until(owned, message="orphan adopted plus one created")
    orphan = next(p for p in pods if p.metadata.name == "orphan")
    assert orphan.metadata.owner_references[0].uid == rs.metadata.uid

    # Relabel one pod: it is released (reference removed) and replaced.
    await edit(cluster.client, "pods", "orphan", lambda pod: pod.metadata.labels.update({"app": "other"}))

    async def released() -> bool:
        pod = await cluster.client.get("pods", "orphan")
        return not pod.metadata.owner_references and len(await active(cluster, "app=web")) == 2

    await until(released, message="released and replaced")


async def test_a_terminating_pod_does_not_count_and_is_replaced_at_once(cluster: Cluster):
    await cluster.add_nodes("n1", act=False)  # nothing confirms terminations: pods stay Terminating
    await cluster.client.create(make_replicaset("web", replicas=2))
    pods = await until(lambda: _active_n(cluster, 2, bound=True))
    victim = pods[0]  # bound: its deletion waits for a kubelet that never confirms
    await cluster.client.delete("pods", victim.metadata.name, unconditional=True)

    async def replaced() -> bool:
        all_pods = await cluster.pods(label_selector="app=web")
        terminating = [p for p in all_pods if is_terminating(p)]
        status = await rs_status(cluster, "web")
        return len(terminating) == 1 and len(all_pods) == 3 and status.replicas == 2

    await until(replaced, timeout=5, message="replacement while the old pod is still terminating")


async def _active_n(c: Cluster, n: int, *, bound: bool = False) -> list[pb.Pod]:
    pods = await active(c, "app=web")
    if bound and not all(p.spec.node_name for p in pods):
        return []
    return pods if len(pods) == n else []


async def test_min_ready_seconds_delays_availability(cluster: Cluster):
    await cluster.add_nodes("n1")
    rs = make_replicaset("web", replicas=2)
    rs.spec.min_ready_seconds = 2
    await cluster.client.create(rs)
    # Beside it, the same pods with an hour's minReadySeconds.
    slow = make_replicaset("slow", replicas=2)
    slow.spec.min_ready_seconds = 3600
    await cluster.client.create(slow)
    status = await until(lambda: _status_where(cluster, lambda s: s.ready_replicas == 2))
    assert status.available_replicas == 0  # ready, but not yet for minReadySeconds
    await until(lambda: _status_where(cluster, lambda s: s.available_replicas == 2), timeout=10)
    # Readiness alone did not do it: "slow"'s pods are ready too, and not available.
    slow_status = await until(lambda: _status_where(cluster, lambda s: s.ready_replicas == 2, name="slow"))
    assert slow_status.available_replicas == 0


async def _status_where(c: Cluster, predicate: Any, *, name: str = "web") -> pb.ReplicaSetStatus | None:
    status = await rs_status(c, name)
    return status if predicate(status) else None


class SlowPodWatch:
    """The controllers' client, with pod watch events delivered a second late (a slow watch)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list(self, resource: str, **kwargs: Any) -> ListResult:
        return await self.inner.list(resource, **kwargs)

    async def watch_once(self, resource: str, **kwargs: Any):
        async for ev in self.inner.watch_once(resource, **kwargs):
            if resource == "pods" and ev.type != "BOOKMARK":
                await asyncio.sleep(1.0)
            yield ev


async def test_expectations_prevent_double_creates_when_the_watch_is_slow(etcd):
    c = await start_cluster(etcd, wrap=SlowPodWatch)
    try:
        await c.add_nodes("n1")
        await c.client.create(make_replicaset("web", replicas=5))
        seen_max = 0
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            pods = await c.pods(label_selector="app=web")
            seen_max = max(seen_max, len(pods))
            status = await rs_status(c, "web")
            if status.replicas == 5 and len(pods) == 5:
                break
            await asyncio.sleep(0.05)
        assert seen_max == 5
        # Status writes and pod events keep triggering syncs meanwhile; still exactly five.
        await until(lambda: _status_where(c, lambda s: s.ready_replicas == 5), timeout=20)
        assert len(await c.pods(label_selector="app=web")) == 5
    finally:
        await c.stop()
