"""Node health monitoring: lost Nodes become Ready=Unknown, get the unreachable taint, and lose their pods.

Every `monitor_period` the controller compares each Node with the in-memory
liveness table the node link keeps (`NodeLiveness.silent_for`):
- silent for longer than `node_monitor_grace_period` (or its stream broke):
  every condition becomes Unknown (Ready: reason NodeStatusUnknown, "Kubelet
  stopped posting node status."), a NodeNotReady event is recorded and its
  pods' Ready conditions become False, so they stop counting as available and
  leave Service endpoints at once;
- the NoExecute taint matching the Ready condition is kept on the Node:
  node.kubernetes.io/unreachable for Unknown, not-ready for False, none for
  True (so a Node whose link reports it Ready again is untainted at once).
Adding a taint to an untainted Node goes through `EvictionLimiter`: when more
than 2 Nodes and at least `unhealthy_threshold` of all are not Ready, only one
Node per `disrupted_eviction_interval` is tainted (the longest silent first).
The taint's timeAdded starts the pods' eviction clock (see eviction.py).

Ready=True is written by the node link when a kubelet registers; this
controller only ever takes readiness away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ConflictError, NotFoundError
from kybernetes.core.api.objects import copy_of, get_condition, is_pod_ready, now_timestamp
from kybernetes.core.machinery.actors import Actor
from kybernetes.core.machinery.informer import InformerFactory
from kybernetes.master.controllers import indexes
from kybernetes.master.controllers.nodelifecycle.eviction import EvictionLimiter, is_disrupted
from kybernetes.master.controllers.scheduler.filters import NOT_READY_TAINT, UNREACHABLE_TAINT
from kybernetes.master.events import EventRecorder
from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.proto import objects_pb2 as pb

NODE_STATUS_UNKNOWN = "NodeStatusUnknown"
STOPPED_POSTING = "Kubelet stopped posting node status."
CONTROLLER_TAINTS = (UNREACHABLE_TAINT, NOT_READY_TAINT)


def desired_taint(node: pb.Node) -> str | None:
    """The NoExecute taint key the Node's Ready condition calls for."""
    ready = get_condition(node.status.conditions, "Ready")
    status = ready.status if ready is not None else "Unknown"
    if status == "True":
        return None
    return UNREACHABLE_TAINT if status == "Unknown" else NOT_READY_TAINT


def current_taint(node: pb.Node) -> str | None:
    for taint in node.spec.taints:
        if taint.effect == "NoExecute" and taint.key in CONTROLLER_TAINTS:
            return taint.key
    return None


class NodeLifecycleController(Actor):
    """Watches Node liveness and applies the consequences."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder,
                 liveness: NodeLiveness,
                 node_monitor_grace_period: float, monitor_period: float | None = None,
                 unhealthy_threshold: float = 0.55, disrupted_eviction_interval: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name="node-lifecycle-controller")
        self.client = client
        self.recorder = recorder
        self.liveness = liveness
        self.grace = node_monitor_grace_period
        self.monitor_period = monitor_period or max(0.1, min(1.0, node_monitor_grace_period / 5))
        self.unhealthy_threshold = unhealthy_threshold
        self.limiter = EvictionLimiter(interval=disrupted_eviction_interval, clock=liveness.now)
        self.clock = clock
        self.node_informer = informers.informer("nodes")
        self.pod_informer = informers.informer("pods")
        indexes.add_pod_indexes(self.pod_informer)
        self.disrupted = False

    async def run(self) -> None:
        await self.node_informer.wait_synced()
        await self.pod_informer.wait_synced()
        self.log.info("started", grace_period=self.grace)
        while True:
            try:
                await self.monitor_once()
            except Exception:  # one bad pass must not stop monitoring
                self.log.exception("node monitor pass failed")
            await asyncio.sleep(self.monitor_period)

    async def monitor_once(self) -> None:
        """One pass over every Node."""
        nodes = self.node_informer.list()
        lost = [n for n in nodes if self.liveness.silent_for(n.metadata.name) > self.grace]
        marked = await asyncio.gather(*(self._mark_unknown(n) for n in lost))
        # The cache may not show our own writes yet: use what they returned.
        fresh = {n.metadata.name: n for n in marked if n is not None}
        nodes = [fresh.get(n.metadata.name, n) for n in self.node_informer.list()]
        lost_names = {n.metadata.name for n in lost}
        not_ready = sum(1 for n in nodes if desired_taint(n) is not None or n.metadata.name in lost_names)
        disrupted = is_disrupted(not_ready=not_ready, total=len(nodes), threshold=self.unhealthy_threshold)
        if disrupted != self.disrupted:
            (self.log.warning if disrupted else self.log.info)(
                "cluster disruption" if disrupted else "cluster disruption over", not_ready=not_ready,
                total=len(nodes))
            self.disrupted = disrupted
        # Longest silent first, so a slow rate evicts the surely-dead Nodes first.
        for node in sorted(nodes, key=lambda n: -self.liveness.silent_for(n.metadata.name)):
            await self._reconcile_taint(node)

    async def _mark_unknown(self, node: pb.Node) -> pb.Node | None:
        """Conditions Unknown and pods not ready; returns the Node as written (None when unchanged)."""
        name = node.metadata.name
        ready = get_condition(node.status.conditions, "Ready")
        updated = None
        if ready is None or ready.status != "Unknown":
            updated = await self._set_conditions_unknown(node)
            if updated is None:
                return None
            self.liveness.marked_unknown(name)
            self.log.warning("node lost", node=name, silent_for=round(self.liveness.silent_for(name), 1))
            self.recorder.record_nowait(updated, type="Normal", reason="NodeNotReady",
                                        message=f"Node {name} status is now: NodeNotReady")
        await self._mark_pods_not_ready(name)
        return updated

    async def _set_conditions_unknown(self, node: pb.Node) -> pb.Node | None:
        for _ in range(3):
            if self.liveness.silent_for(node.metadata.name) <= self.grace:
                return None  # it came back meanwhile
            new = copy_of(node)
            now = now_timestamp(self.clock())
            if get_condition(new.status.conditions, "Ready") is None:
                new.status.conditions.add(type="Ready")
            for condition in new.status.conditions:
                if condition.status != "Unknown":
                    condition.status = "Unknown"
                    condition.last_transition_time.CopyFrom(now)
                condition.reason = NODE_STATUS_UNKNOWN
                condition.message = STOPPED_POSTING
            try:
                return await self.client.update_status(new)
            except NotFoundError:
                return None
            except ConflictError:
                try:
                    node = await self.client.get("nodes", node.metadata.name, namespace="")
                except NotFoundError:
                    return None
        return None

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        pods = [p for p in self.pod_informer.by_index(indexes.NODE, node_name) if is_pod_ready(p)]
        await asyncio.gather(*(self._pod_not_ready(p) for p in pods))

    async def _pod_not_ready(self, pod: pb.Pod) -> None:
        if self.liveness.silent_for(pod.spec.node_name) <= self.grace:
            return
        new = copy_of(pod)
        now = now_timestamp(self.clock())
        for condition in new.status.conditions:
            if condition.type in ("Ready", "ContainersReady") and condition.status == "True":
                condition.status = "False"
                condition.last_transition_time.CopyFrom(now)
        try:
            await self.client.update_status(new)
        except (ConflictError, NotFoundError):
            return  # seen again on the next pass if it still matters
        self.recorder.record_nowait(pod, type="Warning", reason="NodeNotReady", message="Node is not ready")

    async def _reconcile_taint(self, node: pb.Node) -> None:
        want = desired_taint(node)
        have = current_taint(node)
        if want == have:
            return
        if have is None and not self.limiter.try_accept(disrupted=self.disrupted):
            return  # disrupted: this Node waits for its turn
        new = copy_of(node)
        taints = [t for t in new.spec.taints if not (t.effect == "NoExecute" and t.key in CONTROLLER_TAINTS)]
        if want is not None:
            taints.append(pb.Taint(key=want, effect="NoExecute", time_added=now_timestamp(self.clock())))
        del new.spec.taints[:]
        new.spec.taints.extend(taints)
        try:
            await self.client.update(new)
        except (ConflictError, NotFoundError):
            return  # the next pass looks at the fresh Node
        self.log.info("node taint", node=node.metadata.name, taint=want or "-", removed=have or "-")
