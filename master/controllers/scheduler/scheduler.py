"""The scheduler actor: one decision loop, concurrent binds, incremental cache.

The decision for a pod is synchronous and cheap: filter Nodes from a rotating
start index until enough feasible ones are found (all of them in clusters up
to 100 Nodes; a shrinking percentage beyond, as Kubernetes'
percentageOfNodesToScore), score those, pick the best, assume the pod onto it
and hand the bind to a task. The loop then takes the next pod at once; the
bind, the Scheduled event and any status write happen concurrently. A pod
that fits nowhere gets PodScheduled=False/Unschedulable with a message that
counts the reasons, a FailedScheduling event, and waits in the unschedulable
pool until Nodes or bound pods change.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.objects import get_condition
from kybernetes.core.machinery.actors import Actor
from kybernetes.core.machinery.informer import InformerFactory, object_key
from kybernetes.master.controllers import indexes
from kybernetes.master.controllers.scheduler.bind import Binder
from kybernetes.master.controllers.scheduler.cache import NodeInfo, PodInfo, SchedulerCache
from kybernetes.master.controllers.scheduler.filters import fit_error_message, run_filters
from kybernetes.master.controllers.scheduler.queue import SchedulingQueue
from kybernetes.master.controllers.scheduler.scores import select_host
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb

MIN_FEASIBLE_NODES = 100


def feasible_nodes_to_find(total: int) -> int:
    """How many feasible Nodes to look for before scoring (Kubernetes' adaptive percentage)."""
    if total <= MIN_FEASIBLE_NODES:
        return total
    percentage = max(5, 50 - total // 125)
    return max(MIN_FEASIBLE_NODES, total * percentage // 100)


def is_pending(pod: pb.Pod) -> bool:
    """Waiting for the scheduler: unbound, not terminating, not finished."""
    return not pod.spec.node_name and not pod.metadata.HasField("deletion_timestamp") and \
        pod.status.phase not in ("Succeeded", "Failed")


def _node_facts(node: pb.Node) -> tuple[Any, ...]:
    """What about a Node can change where pods fit (not heartbeats)."""
    ready = get_condition(node.status.conditions, "Ready")
    return (node.spec.unschedulable, [(t.key, t.value, t.effect) for t in node.spec.taints],
            sorted(node.metadata.labels.items()), sorted(node.status.allocatable.items()),
            sorted(node.status.capacity.items()), ready.status if ready is not None else "")


class Scheduler(Actor):
    """Binds pending pods to Nodes."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder,
                 bind_concurrency: int = 256,
                 initial_backoff: float = 0.5, max_backoff: float = 5.0, rng: random.Random | None = None) -> None:
        super().__init__(name="scheduler")
        self.client = client
        self.recorder = recorder
        self.pod_informer = informers.informer("pods")
        self.node_informer = informers.informer("nodes")
        indexes.add_pod_indexes(self.pod_informer)
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(initial_backoff=initial_backoff, max_backoff=max_backoff)
        self.binder = Binder(client=client, recorder=recorder, concurrency=bind_concurrency)
        self.rng = rng or random.Random()
        self._next_start = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.scheduled = 0  # pods bound since start (metrics, benchmarks)
        self.node_informer.add_handler(on_add=self._node_added, on_update=self._node_updated,
                                       on_delete=self._node_deleted)
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)

    # ------------------------------------------------------------- handlers

    def _node_added(self, node: pb.Node) -> None:
        self.cache.set_node(node)
        self.queue.move_all_to_active()

    def _node_updated(self, old: pb.Node, new: pb.Node) -> None:
        self.cache.set_node(new)
        if _node_facts(old) != _node_facts(new):
            self.queue.move_all_to_active()

    def _node_deleted(self, node: pb.Node) -> None:
        self.cache.remove_node(node.metadata.name)

    def _pod_added(self, pod: pb.Pod) -> None:
        if pod.spec.node_name:
            self.cache.set_pod(pod)
        elif is_pending(pod):
            self.queue.add(object_key(pod))

    def _pod_updated(self, old: pb.Pod, new: pb.Pod) -> None:
        key = object_key(new)
        if new.spec.node_name:
            self.cache.set_pod(new)
            self.queue.delete(key)
            if old.spec.node_name and new.status.phase in ("Succeeded", "Failed") and \
                    old.status.phase not in ("Succeeded", "Failed"):
                self.queue.move_all_to_active()
            return
        if not is_pending(new):
            self.cache.remove_pod(new)
            self.queue.delete(key)
            return
        # Our own status writes (Unschedulable) change nothing that matters; spec or labels might.
        if old.spec != new.spec or old.metadata.labels != new.metadata.labels or not is_pending(old):
            self.queue.add(key)

    def _pod_deleted(self, pod: pb.Pod) -> None:
        key = object_key(pod)
        self.cache.remove_pod(pod)
        self.queue.delete(key)
        if pod.spec.node_name:
            self.queue.move_all_to_active()

    # ------------------------------------------------------------- decisions

    def find_node(self, info: PodInfo) -> tuple[NodeInfo | None, str]:
        """The chosen Node, or None and the explanation."""
        names = self.cache.node_names()
        total = len(names)
        if total == 0:
            return None, fit_error_message(0, Counter())
        wanted = feasible_nodes_to_find(total)
        feasible: list[NodeInfo] = []
        reasons: Counter[str] = Counter()
        start = self._next_start % total
        examined = 0
        nodes = self.cache.nodes
        # The common case (a plain pod, a healthy untainted Node) is checked inline; anything unusual,
        # and every refusal, goes through the filter chain, which also names the reasons.
        plain_pod = not info.node_selector and not info.host_ports
        cpu, memory = info.cpu, info.memory
        for i in range(total):
            node = nodes[names[(start + i) % total]]
            examined += 1
            if plain_pod and node.ready == "True" and not node.unschedulable and not node.hard_taints and \
                    len(node.pods) < node.allocatable_pods and \
                    (not cpu or node.requested_cpu + cpu <= node.allocatable_cpu) and \
                    (not memory or node.requested_memory + memory <= node.allocatable_memory):
                feasible.append(node)
            else:
                why = run_filters(info, node)
                if why:
                    reasons.update(why)
                    continue
                feasible.append(node)
            if len(feasible) >= wanted:
                break
        self._next_start = (start + examined) % total
        if not feasible:
            return None, fit_error_message(total, reasons)
        return select_host(info, feasible, self.rng), ""

    def schedule_one(self, key: str) -> None:
        pod = self.pod_informer.get(key)
        if pod is None or not is_pending(pod) or self.cache.is_assumed(key):
            return
        info = PodInfo.from_pod(pod)
        node, message = self.find_node(info)
        if node is None:
            self.queue.mark_unschedulable(key)
            self._spawn(self._unschedulable(pod, message))
            return
        self.cache.assume(info, node.name)
        self._spawn(self._bind(pod, node.name))

    async def _bind(self, pod: pb.Pod, node_name: str) -> None:
        key = object_key(pod)
        try:
            bound = await self.binder.bind(pod, node_name)
        except Exception as err:
            self.log.warning("bind failed, retrying", pod=key, node=node_name, error=str(err))
            self.cache.forget(key)
            self.queue.mark_failed(key)
            return
        if not bound:
            self.cache.forget(key)
            return
        self.scheduled += 1
        self.queue.delete(key)

    async def _unschedulable(self, pod: pb.Pod, message: str) -> None:
        self.log.debug("unschedulable", pod=object_key(pod), reason=message)
        await self.recorder.record(pod, type="Warning", reason="FailedScheduling", message=message)
        await self.binder.mark_unschedulable(pod, message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        await self.node_informer.wait_synced()
        await self.pod_informer.wait_synced()
        for pod in self.pod_informer.list():
            if is_pending(pod):
                # After a restart no bind is in flight: an assumption still held is stale.
                self.cache.forget(object_key(pod))
                self.queue.add(object_key(pod))
        flusher = asyncio.create_task(self._flush_loop())
        self.log.info("started")
        try:
            while True:
                key = await self.queue.pop()
                try:
                    self.schedule_one(key)
                except Exception:
                    self.log.exception("scheduling failed", pod=key)
                    self.queue.mark_failed(key)
                finally:
                    self.queue.done(key)
                # Let binds and informers run between decisions.
                await asyncio.sleep(0)
        finally:
            # Binds and status writes in flight are abandoned: etcd holds whatever was written, and
            # the next scheduler (or this one, restarted) starts from that.
            for task in [flusher, *self._tasks]:
                task.cancel()
            await asyncio.gather(flusher, *self._tasks, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.queue.flush_unschedulable()
