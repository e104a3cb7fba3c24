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
The taint's timeAdded starts the pods' eviction clock (see eviction.py).

Full disruption (disruption.py): when at least 2 Nodes and at least
`unhealthy_threshold` of all are not Ready, the pass still marks lost Nodes
Unknown and their pods not ready, but the taint wanted on every Node is none:
no Node is tainted and the taints already there come off, so no pod is
evicted. An Event and a log line mark entering and leaving. A controller taint
older than the end of the last full disruption (one whose removal failed) is
replaced by a fresh one, so a Node still lost then gets a whole eviction
timeout from that moment.

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
from kybernetes.master.controllers.nodelifecycle.disruption import CLUSTER_REFERENCE, announcement, is_full_disruption
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


def current_taint(node: pb.Node) -> pb.Taint | None:
    """The unreachable/not-ready NoExecute taint on the Node, if any."""
    for taint in node.spec.taints:
        if taint.effect == "NoExecute" and taint.key in CONTROLLER_TAINTS:
            return taint
    return None


class NodeLifecycleController(Actor):
    """Watches Node liveness and applies the consequences."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder,
                 liveness: NodeLiveness,
                 node_monitor_grace_period: float, monitor_period: float | None = None,
                 unhealthy_threshold: float = 0.55,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name="node-lifecycle-controller")
        self.client = client
        self.recorder = recorder
        self.liveness = liveness
        self.grace = node_monitor_grace_period
        self.monitor_period = monitor_period or max(0.1, min(1.0, node_monitor_grace_period / 5))
        self.unhealthy_threshold = unhealthy_threshold
        self.clock = clock
        self.node_informer = informers.informer("nodes")
        self.pod_informer = informers.informer("pods")
        indexes.add_pod_indexes(self.pod_informer)
        self.disrupted = False  # in full disruption (as of the last pass)
        # When the last full disruption ended (epoch seconds): controller taints added before are stale.
        self.resumed_at: int | None = None

    async def run(self) -> None:
        await self.node_informer.wait_synced()
        await self.pod_informer.wait_synced()
        self.log.info("started", grace_period=self.grace, unhealthy_zone_threshold=self.unhealthy_threshold)
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
        disrupted = is_full_disruption(not_ready=not_ready, total=len(nodes), threshold=self.unhealthy_threshold)
        if disrupted != self.disrupted:
            self._announce(disrupted, not_ready=not_ready, total=len(nodes))
        for node in nodes:
            await self._reconcile_taint(node)

    def _announce(self, disrupted: bool, *, not_ready: int, total: int) -> None:
        """Entering or leaving full disruption: the new state, a log line and an Event."""
        self.disrupted = disrupted
        if not disrupted:
            self.resumed_at = int(self.clock())
        (self.log.warning if disrupted else self.log.info)(
            "full disruption: evictions stop" if disrupted else "full disruption over: evictions resume",
            not_ready=not_ready, nodes=total, threshold=self.unhealthy_threshold)
        event = announcement(disrupted=disrupted, not_ready=not_ready, total=total,
                             threshold=self.unhealthy_threshold)
        self.recorder.record_nowait(CLUSTER_REFERENCE, type=event.type, reason=event.reason, message=event.message)

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
        want = None if self.disrupted else desired_taint(node)
        taint = current_taint(node)
        have = taint.key if taint is not None else None
        stale = taint is not None and self.resumed_at is not None and taint.time_added.seconds < self.resumed_at
        if want == have and not stale:
            return
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
        self.log.info("node taint", node=node.metadata.name, taint=want or "-", removed=have or "-",
                      full_disruption=self.disrupted)
