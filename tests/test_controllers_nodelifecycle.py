"""The node lifecycle controller: lost Nodes, taints, eviction with tolerations, deleted Nodes, full disruption.

Real etcd and the real object service with every controller in-process. The node link is
played by the test: the liveness table is driven directly (a kubelet whose stream breaks, one
that hangs) and kubelets are played through the API (`ApiKubelets`), because what is under
test is the controller's reaction to liveness, not the link itself. Short periods
(grace 1 s, eviction timeout 1 s) keep the tests quick. The last test runs a real kyb-master
process with scripted node links (harness.nodelink) to check `--unhealthy-zone-threshold` end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.builders import make_deployment, make_pod
from harness.master import MasterProcess
from harness.nodelink import ScriptedNode
from harness.waiting import until
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import node_pb2
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
    c = await start_cluster(etcd, grace=GRACE, eviction_timeout=EVICTION)
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




def eviction_taint(n: pb.Node) -> pb.Taint | None:
    """The node lifecycle controller's NoExecute taint (unreachable or not-ready), if the Node has one."""
    return next((t for t in n.spec.taints if t.effect == "NoExecute" and t.key in (
        "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")), None)


async def event(client: Any, reason: str) -> pb.Event | None:
    events = (await client.list("events", namespace="default")).items
    return next((e for e in events if e.reason == reason), None)


class NodeHistory:
    """Every version of every Node the API served from `start()` on: a taint that came and went is seen too."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.versions: list[pb.Node] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listed = await self.client.list("nodes")
        self.versions.extend(listed.items)
        self.task = asyncio.create_task(self._watch(listed.resource_version))

    async def _watch(self, resource_version: str) -> None:
        async for ev in self.client.watch("nodes", resource_version=resource_version):
            if ev.type in ("ADDED", "MODIFIED"):
                self.versions.append(ev.object)

    async def caught_up(self, *names: str) -> bool:
        """The history holds the current version of each of these Nodes."""
        for name in names:
            current = await self.client.get("nodes", name, namespace="")
            seen = {v.metadata.resource_version for v in self.versions if v.metadata.name == name}
            if current.metadata.resource_version not in seen:
                return False
        return True

    def ever_tainted(self, *names: str) -> list[str]:
        return sorted({v.metadata.name for v in self.versions
                       if v.metadata.name in names and eviction_taint(v) is not None})

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def place_pods(c: Cluster, *placements: tuple[str, str]) -> None:
    """Pods bound straight to Nodes (no ReplicaSet: nothing replaces them), Ready once their kubelet says so."""
    for name, node_name in placements:
        await c.client.create(make_pod(name, node=node_name))

    async def all_ready() -> bool:
        return all([is_ready(await c.client.get("pods", name)) for name, _ in placements])

    await until(all_ready, timeout=10, message="the pods Ready")


async def test_two_of_three_nodes_lost_together_is_a_full_disruption_and_nothing_is_evicted(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    await place_pods(cluster, ("p1", "n1"), ("p2", "n2"), ("p3", "n3"))
    history = NodeHistory(cluster.client)
    await history.start()
    try:
        cluster.kubelets.kill("n1")  # both streams break together: the same monitor pass sees both lost
        cluster.kubelets.kill("n2")

        async def lost(name: str) -> pb.Node | None:
            n = await node(cluster, name)
            cond = ready_status(n)
            return n if cond is not None and cond.status == "Unknown" else None

        entered = await until(lambda: event(cluster.client, "FullDisruption"), timeout=5,
                              message="the FullDisruption event")
        assert entered.type == "Warning"
        assert (entered.involved_object.kind, entered.involved_object.name) == ("Namespace", "kube-system")
        assert entered.message.startswith("2 of 3 Nodes not Ready (67%; threshold 55%)")
        n1 = await until(lambda: lost("n1"), timeout=5, message="n1 Ready=Unknown")
        n2 = await until(lambda: lost("n2"), timeout=5, message="n2 Ready=Unknown")
        # Ready=Unknown is still written, and the lost Nodes' pods stop counting as ready (as Kubernetes does).
        for name in ("p1", "p2"):
            await until(lambda name=name: _not_ready(cluster, name), timeout=5, message=f"{name} not ready")

        # Let the eviction timeout pass in the eviction controller's clock (it evicts at a taint's timeAdded,
        # in whole seconds, plus the timeout): any taint from the pass that found n1 and n2 lost, or a later
        # one, would have evicted p1 or p2 by then.
        lost_at = max(ready_status(n).last_transition_time.seconds for n in (n1, n2))
        await until(lambda: time.time() >= lost_at + EVICTION + 2, timeout=10, message="the eviction timeout over")
        await until(lambda: history.caught_up("n1", "n2", "n3"), timeout=5, message="the watch caught up")
        assert history.ever_tainted("n1", "n2", "n3") == []
        for name in ("p1", "p2", "p3"):
            assert not is_terminating(await cluster.client.get("pods", name)), f"{name} was evicted"
        assert await event(cluster.client, "FullDisruptionEnded") is None

        # n1 comes back: 1 of 3 not Ready is below the threshold, and n2's pod is evicted as usual.
        await cluster.kubelets.revive("n1")
        ended = await until(lambda: event(cluster.client, "FullDisruptionEnded"), timeout=5,
                            message="the FullDisruptionEnded event")
        assert ended.type == "Normal" and ended.message.startswith("1 of 3 Nodes not Ready (33%; threshold 55%)")
        await until(lambda: _taint(cluster, "n2"), timeout=5, message="n2 tainted once the disruption is over")

        async def evicted(name: str) -> bool:
            return is_terminating(await cluster.client.get("pods", name))

        await until(lambda: evicted("p2"), timeout=10, message="p2 evicted")
        reasons = {(e.involved_object.name, e.reason) for e in (await cluster.client.list("events")).items}
        assert ("p2", "TaintManagerEviction") in reasons
        assert not await evicted("p1") and not await evicted("p3")
        assert eviction_taint(await node(cluster, "n1")) is None
    finally:
        await history.stop()


async def _not_ready(c: Cluster, name: str) -> bool:
    return not is_ready(await c.client.get("pods", name))


async def test_entering_a_full_disruption_takes_the_taints_off_and_leaving_it_starts_a_fresh_timeout(
        cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    patient = make_pod("patient", node="n1")  # stays through an hour of unreachable: nothing evicts it here
    patient.spec.tolerations.add(key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute",
                                 has_toleration_seconds=True, toleration_seconds=3600)
    await cluster.client.create(patient)
    cluster.kubelets.kill("n1")  # 1 of 3: an ordinary failure
    first = await until(lambda: _taint(cluster, "n1"), timeout=5, message="n1 tainted")

    cluster.kubelets.kill("n2")  # 2 of 3: full disruption

    async def untainted(name: str) -> bool:
        return eviction_taint(await node(cluster, name)) is None

    await until(lambda: event(cluster.client, "FullDisruption"), timeout=5, message="the FullDisruption event")
    await until(lambda: untainted("n1"), timeout=5, message="n1's taint taken off")
    assert await untainted("n2")

    # A fresh taint's timeAdded (whole seconds) can only differ from the first one's a second later.
    await until(lambda: time.time() >= first.time_added.seconds + 1, timeout=5)
    await cluster.kubelets.revive("n2")
    await until(lambda: event(cluster.client, "FullDisruptionEnded"), timeout=5,
                message="the FullDisruptionEnded event")
    again = await until(lambda: _taint(cluster, "n1"), timeout=5, message="n1 tainted again")
    assert again.time_added.seconds > first.time_added.seconds, "the eviction timeout starts afresh"
    assert not is_terminating(await cluster.client.get("pods", "patient"))


async def _heartbeats(node: ScriptedNode) -> None:
    """What a kubelet does all along: a heartbeat every 0.2 s (the master's grace period here is 1 s)."""
    for sequence in range(1, 1_000_000):
        node.send(heartbeat=node_pb2.Heartbeat(sequence=sequence))
        await asyncio.sleep(0.2)


async def test_the_threshold_flag_of_a_real_master(etcd: EtcdProcess, tmp_path: Path):
    """kyb-master --unhealthy-zone-threshold 0.7: 2 of 3 scripted Nodes lost (67 %) are tainted; the third
    lost too (100 %) is a full disruption, which takes their taints off and says so in an Event."""
    args = ["--node-monitor-grace-period", "1", "--pod-eviction-timeout", "1", "--unhealthy-zone-threshold", "0.7"]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "master.log",
                             extra_args=args) as master, master.client() as client:
        nodes = {name: ScriptedNode(master, name) for name in ("a", "b", "c")}
        beating: list[asyncio.Task[None]] = []
        try:
            for scripted in nodes.values():
                await scripted.connect()
                beating.append(asyncio.create_task(_heartbeats(scripted)))

            async def taints() -> dict[str, bool]:
                return {n.metadata.name: eviction_taint(n) is not None for n in (await client.list("nodes")).items}

            async def tainted_exactly(*names: str) -> bool:
                return await taints() == {name: name in names for name in nodes}

            await until(lambda: tainted_exactly(), timeout=15, message="three Nodes registered, none tainted")
            for name in ("a", "b"):
                beating[list(nodes).index(name)].cancel()
                await nodes[name].close()
            await until(lambda: tainted_exactly("a", "b"), timeout=10, message="a and b tainted (67 % < 70 %)")
            assert await event(client, "FullDisruption") is None

            beating[2].cancel()
            await nodes["c"].close()
            entered = await until(lambda: event(client, "FullDisruption"), timeout=10,
                                  message="the FullDisruption event")
            assert entered.message.startswith("3 of 3 Nodes not Ready (100%; threshold 70%)")
            await until(lambda: tainted_exactly(), timeout=10, message="every taint taken off")
        finally:
            for task in beating:
                task.cancel()
            for scripted in nodes.values():
                with contextlib.suppress(Exception):
                    await scripted.close()
