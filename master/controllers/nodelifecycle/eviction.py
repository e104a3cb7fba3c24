"""NoExecute taint eviction (Kubernetes' taint manager).

A Node with a NoExecute taint loses the pods that do not tolerate it:
- a pod without a matching toleration is evicted when the taint has been there
  for `pod_eviction_timeout` if the taint is node.kubernetes.io/unreachable or
  not-ready (Kubernetes gives every pod such a toleration with
  tolerationSeconds=300 by admission; the timeout is ours), and at once for
  any other NoExecute taint;
- a matching toleration with tolerationSeconds delays that, one without keeps
  the pod bound forever; with several taints the earliest eviction wins.
Eviction is a normal, graceful delete: a pod on a lost Node stays Terminating
(its kubelet confirms when it comes back), is no longer counted by its
ReplicaSet, and so is replaced at once.

Work is keyed by Node: a Node's pods are looked at when its taints change, a
pod lands on it, or the earliest pending eviction falls due (`add_after`).

This controller does not know about lost Nodes: the node lifecycle
controller (monitor.py) decides which Nodes carry the unreachable/not-ready
taints, and takes them off in a full disruption (disruption.py), which stops
the evictions here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import NotFoundError
from kybernetes.core.machinery.informer import InformerFactory, object_key
from kybernetes.master.controllers import indexes
from kybernetes.master.controllers.base import QueueController
from kybernetes.master.controllers.scheduler.filters import NOT_READY_TAINT, UNREACHABLE_TAINT, tolerates
from kybernetes.master.events import EventRecorder
from kybernetes.proto import objects_pb2 as pb

DEFAULT_TOLERATED_TAINTS = (UNREACHABLE_TAINT, NOT_READY_TAINT)


def eviction_time(pod: pb.Pod, taints: Iterable[pb.Taint], *, default_timeout: float) -> float | None:
    """When (epoch seconds) the pod must leave a Node with these taints; None: it may stay forever."""
    earliest: float | None = None
    for taint in taints:
        if taint.effect != "NoExecute":
            continue
        added = float(taint.time_added.seconds)
        matching = [t for t in pod.spec.tolerations
                    if tolerates(t, key=taint.key, value=taint.value, effect=taint.effect)]
        if not matching:
            seconds: float | None = default_timeout if taint.key in DEFAULT_TOLERATED_TAINTS else 0.0
        elif any(not t.has_toleration_seconds for t in matching):
            seconds = None
        else:
            seconds = float(max(0, min(t.toleration_seconds for t in matching)))
        if seconds is None:
            continue
        at = added + seconds
        earliest = at if earliest is None else min(earliest, at)
    return earliest


class TaintEvictionController(QueueController):
    """Evicts pods from Nodes whose NoExecute taints they do not tolerate (long enough)."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder,
                 pod_eviction_timeout: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_informer = informers.informer("nodes")
        self.pod_informer = informers.informer("pods")
        super().__init__(name="taint-eviction-controller", primary=self.node_informer,
                         waits_for=[self.pod_informer], workers=4)
        indexes.add_pod_indexes(self.pod_informer)
        self.client = client
        self.recorder = recorder
        self.pod_eviction_timeout = pod_eviction_timeout
        self.clock = clock
        self.node_informer.add_handler(on_add=self._node_changed, on_update=self._node_updated)
        self.pod_informer.add_handler(on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new))

    def _node_changed(self, node: pb.Node) -> None:
        if any(t.effect == "NoExecute" for t in node.spec.taints):
            self.enqueue(node)

    def _node_updated(self, old: pb.Node, new: pb.Node) -> None:
        if list(old.spec.taints) != list(new.spec.taints):
            self._node_changed(new)

    def _pod_changed(self, pod: pb.Pod) -> None:
        if pod.spec.node_name and not pod.metadata.HasField("deletion_timestamp"):
            node = self.node_informer.get(pod.spec.node_name)
            if node is not None and any(t.effect == "NoExecute" for t in node.spec.taints):
                self.queue.add(pod.spec.node_name)

    async def sync(self, key: str) -> None:
        node = self.node_informer.get(key)
        if node is None:
            return
        taints = [t for t in node.spec.taints if t.effect == "NoExecute"]
        if not taints:
            return
        now = self.clock()
        next_due: float | None = None
        for pod in self.pod_informer.by_index(indexes.NODE, key):
            if pod.metadata.HasField("deletion_timestamp"):
                continue
            at = eviction_time(pod, taints, default_timeout=self.pod_eviction_timeout)
            if at is None:
                continue
            if at <= now:
                await self.evict(pod)
            else:
                next_due = at if next_due is None else min(next_due, at)
        if next_due is not None:
            self.queue.add_after(key, next_due - now + 0.05)

    async def evict(self, pod: pb.Pod) -> None:
        try:
            await self.client.delete("pods", pod.metadata.name, namespace=pod.metadata.namespace,
                                     unconditional=True)
        except NotFoundError:
            return
        self.log.info("evicted", pod=object_key(pod), node=pod.spec.node_name)
        self.recorder.record_nowait(pod, type="Normal", reason="TaintManagerEviction",
                                    message=f"Marking for deletion Pod {object_key(pod)}")
