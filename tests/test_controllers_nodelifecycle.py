"""The node lifecycle controller: lost Nodes, taints, eviction with tolerations, deleted Nodes, mass outages.

Real etcd and the real object service with every controller in-process. The node link is
played by the test: the liveness table is driven directly (a kubelet whose stream breaks, one
that hangs) and kubelets are played through the API (`ApiKubelets`), because what is under
test is the controller's reaction to liveness, not the link itself. Short periods
(grace 1 s, eviction timeout 1 s) keep the tests quick.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.builders import make_deployment, make_pod
from harness.waiting import until
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import objects_pb2 as pb
from tests.test_controllers_support import (
    Cluster,
    is_ready,
    is_terminating,
    make_replicaset,
    start_cluster,
)

GRACE = 1.0
EVICTION = 1.0


@pytest.fixture
async def cluster(etcd: EtcdProcess) -> AsyncIterator[Cluster]:
    c = await start_cluster(etcd, grace=GRACE, eviction_timeout=EVICTION, disrupted_eviction_interval=3.0)
    try:
        yield c
    finally:
        await c.stop()


async def node(c: Cluster, name: str) -> pb.Node:
    return await c.client.get("nodes", name, namespace="")


def ready_status(n: pb.Node) -> pb.Condition | None:
    return next((x for x in n.status.conditions if x.type == "Ready"), None)


def unreachable(n: pb.Node) -> pb.Taint | None:
    return next((t for t in n.spec.taints if t.key == "node.kubernetes.io/unreachable"
                 and t.effect == "NoExecute"), None)


async def ready_pods(c: Cluster, selector: str) -> list[pb.Pod]:
    return [p for p in await c.pods(label_selector=selector) if not is_terminating(p) and is_ready(p)]


async def test_a_dead_kubelets_pods_are_replaced_and_its_stale_pods_stopped_when_it_returns(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    await cluster.client.create(make_deployment("web", replicas=3))
    pods = await until(lambda: _n_ready(cluster, 3), message="3 ready pods")
    assert sorted(p.spec.node_name for p in pods) == ["n1", "n2", "n3"]
    lost = next(p for p in pods if p.spec.node_name == "n1")

    cluster.kubelets.kill("n1")  # the stream breaks: noticed at once

    async def unknown() -> pb.Node | None:
        n = await node(cluster, "n1")
        cond = ready_status(n)
        return n if cond is not None and cond.status == "Unknown" and unreachable(n) is not None else None

    n1 = await until(unknown, timeout=5, message="n1 Ready=Unknown and tainted")
    assert ready_status(n1).reason == "NodeStatusUnknown"
    assert ready_status(n1).message == "Kubelet stopped posting node status."
    # Its pod stops counting as ready at once, then is evicted (Terminating: nobody confirms).
    pod = await cluster.client.get("pods", lost.metadata.name)
    assert not is_ready(pod) or is_terminating(pod)

    async def replaced() -> list[pb.Pod]:
        live = await ready_pods(cluster, "app=web")
        return live if len(live) == 3 and all(p.spec.node_name != "n1" for p in live) else []

    await until(replaced, timeout=30, message="replacements ready elsewhere")
    stale = await cluster.client.get("pods", lost.metadata.name)
    assert is_terminating(stale)
    reasons = {(e.involved_object.name, e.reason) for e in (await cluster.client.list("events")).items}
    assert ("n1", "NodeNotReady") in reasons and (lost.metadata.name, "TaintManagerEviction") in reasons

    await cluster.kubelets.revive("n1")

    async def recovered() -> bool:
        n = await node(cluster, "n1")
        names = {p.metadata.name for p in await cluster.pods(label_selector="app=web")}
        return unreachable(n) is None and lost.metadata.name not in names

    await until(recovered, timeout=10, message="taint removed and the stale pod stopped")


async def _n_ready(c: Cluster, n: int) -> list[pb.Pod]:
    live = await ready_pods(c, "app=web")
    return live if len(live) == n else []


async def test_a_hung_kubelet_is_lost_only_after_the_grace_period(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    # The liveness table's clock, stopped: a silence lasts only as long as the test lets its clock run.
    clock = [cluster.liveness.now()]
    cluster.liveness._clock = lambda: clock[0]
    for name in ("n1", "n3"):
        cluster.liveness.heartbeat(name)  # n1's last word
    cluster.kubelets.hang("n1")  # the stream stays open, but it says nothing more
    cluster.kubelets.kill("n2")  # a broken stream: lost at once, whatever the clock says

    async def status(name: str) -> str:
        cond = ready_status(await node(cluster, name))
        return cond.status if cond is not None else ""

    async def unknown(name: str) -> bool:
        return await status(name) == "Unknown"

    # The monitor pass that found n2 lost looked at n1 too: silent, but not for longer than the grace period.
    await until(lambda: unknown("n2"), timeout=5)
    assert await status("n1") == "True"
    clock[0] += GRACE + 0.5  # now it is; n3 speaks at once, as its kubelet would have all along
    cluster.liveness.heartbeat("n3")
    await until(lambda: unknown("n1"), timeout=5)
    assert await status("n3") == "True"


async def test_tolerations_decide_how_long_pods_stay_on_an_unreachable_node(cluster: Cluster):
    await cluster.add_nodes("n1")
    specs = {"plain": None, "forever": (False, 0), "short": (True, 3), "long": (True, 3600)}
    for name, toleration in specs.items():
        pod = make_pod(name)
        pod.spec.node_name = "n1"
        if toleration is not None:
            has_seconds, seconds = toleration
            pod.spec.tolerations.add(key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute",
                                     has_toleration_seconds=has_seconds, toleration_seconds=seconds)
        await cluster.client.create(pod)
    cluster.kubelets.kill("n1")
    taint = await until(lambda: _taint(cluster, "n1"), timeout=5)

    async def terminating(name: str) -> bool:
        return is_terminating(await cluster.client.get("pods", name))

    await until(lambda: terminating("plain"), timeout=5)
    await until(lambda: terminating("short"), timeout=8)
    # When each was evicted, as the eviction's deletion recorded it (deletionTimestamp is the deletion's time
    # plus its grace period): "short" after its 3 s toleration, "plain" after the eviction timeout.
    evicted = {}
    for name in ("plain", "short"):
        meta = (await cluster.client.get("pods", name)).metadata
        evicted[name] = meta.deletion_timestamp.seconds - meta.deletion_grace_period_seconds
    assert evicted["short"] >= taint.time_added.seconds + 3
    assert evicted["plain"] >= taint.time_added.seconds + EVICTION
    assert not await terminating("forever") and not await terminating("long")


async def _taint(c: Cluster, name: str) -> pb.Taint | None:
    return unreachable(await node(c, name))


async def test_a_deleted_nodes_pods_are_deleted_at_once_and_replaced(cluster: Cluster):
    await cluster.add_nodes("n1", "n2")
    await cluster.client.create(make_replicaset("web", replicas=2))
    pods = await until(lambda: _n_ready(cluster, 2))
    on_n1 = [p.metadata.name for p in pods if p.spec.node_name == "n1"]
    assert on_n1
    await cluster.client.delete("nodes", "n1", unconditional=True)

    async def replaced() -> bool:
        names = {p.metadata.name for p in await cluster.pods(label_selector="app=web")}
        live = await ready_pods(cluster, "app=web")
        return not (names & set(on_n1)) and len(live) == 2 and all(p.spec.node_name == "n2" for p in live)

    await until(replaced, timeout=10, message="n1's pods gone from etcd and replaced on n2")


async def test_mass_outage_taints_nodes_slowly(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3", "n4")
    for name in ("n1", "n2", "n3"):
        cluster.kubelets.kill(name)

    async def unknown_count() -> int:
        nodes = [await node(cluster, n) for n in ("n1", "n2", "n3")]
        return sum(1 for n in nodes if ready_status(n).status == "Unknown")

    await until(lambda: _equals(unknown_count(), 3), timeout=5, message="all three marked Unknown")
    first = await until(lambda: _tainted(cluster), timeout=5)
    assert len(first) == 1, "disrupted: one node at a time"
    taints = await until(lambda: _all_tainted(cluster, 3), timeout=15, message="all tainted eventually")
    added = sorted(t.time_added.seconds for t in taints)
    assert added[1] - added[0] >= 2 and added[2] - added[1] >= 2  # 3 s apart, one-second resolution
    assert unreachable(await node(cluster, "n4")) is None


async def _equals(aw: object, value: int) -> bool:
    return await aw == value  # type: ignore[misc]


async def _tainted(c: Cluster) -> list[pb.Taint]:
    return [t for n in ("n1", "n2", "n3") if (t := unreachable(await node(c, n))) is not None]


async def _all_tainted(c: Cluster, count: int) -> list[pb.Taint]:
    taints = await _tainted(c)
    return taints if len(taints) == count else []
