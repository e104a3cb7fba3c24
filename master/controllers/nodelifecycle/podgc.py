"""Pods of Nodes that no longer exist are deleted at once, with force (Kubernetes' pod GC for orphaned pods).

A deleted Node has no kubelet left to confirm a graceful deletion, so its
pods are deleted with a zero grace period: they disappear from etcd and their
ReplicaSets replace them. A pod bound to a Node name the cache has never seen
(set by hand, or the Node deleted while the master was down) waits for a
quarantine first, in case the Node is only about to register; the Node's
absence is always confirmed with a fresh read before anything is deleted.
"""

from __future__ import annotations

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import NotFoundError
from kybernetes.core.machinery.informer import InformerFactory, object_key
from kybernetes.master.controllers import indexes
from kybernetes.master.controllers.base import QueueController
from kybernetes.master.events import EventRecorder
from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.proto import objects_pb2 as pb

QUARANTINE_SECONDS = 40.0


class OrphanedPodCollector(QueueController):
    """Force-deletes the pods of deleted Nodes (work keyed by Node name)."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, recorder: EventRecorder,
                 liveness: NodeLiveness | None,
                 quarantine: float = QUARANTINE_SECONDS) -> None:
        self.node_informer = informers.informer("nodes")
        self.pod_informer = informers.informer("pods")
        super().__init__(name="pod-garbage-collector", primary=self.node_informer, waits_for=[self.pod_informer],
                         workers=2)
        indexes.add_pod_indexes(self.pod_informer)
        self.client = client
        self.recorder = recorder
        self.liveness = liveness
        self.quarantine = quarantine
        self.node_informer.add_handler(on_delete=self._node_deleted)
        self.pod_informer.add_handler(on_add=self._pod_seen, on_update=lambda old, new: self._pod_seen(new))

    def _node_deleted(self, node: pb.Node) -> None:
        if self.liveness is not None:
            self.liveness.forget(node.metadata.name)
        self.queue.add(node.metadata.name)

    def _pod_seen(self, pod: pb.Pod) -> None:
        node = pod.spec.node_name
        if node and self.node_informer.has_synced and self.node_informer.get(node) is None:
            self.queue.add_after(node, self.quarantine)

    async def run(self) -> None:
        await self.node_informer.wait_synced()
        await self.pod_informer.wait_synced()
        for node in self.pod_informer.index_values(indexes.NODE):
            if self.node_informer.get(node) is None:
                self.queue.add_after(node, self.quarantine)
        await super().run()

    async def sync(self, key: str) -> None:
        if not key or self.node_informer.get(key) is not None:
            return
        pods = self.pod_informer.by_index(indexes.NODE, key)
        if not pods:
            return
        try:
            await self.client.get("nodes", key, namespace="")
            return  # it exists after all (the cache is behind)
        except NotFoundError:
            pass
        for pod in pods:
            try:
                await self.client.delete("pods", pod.metadata.name, namespace=pod.metadata.namespace,
                                         unconditional=True, grace_period_seconds=0)
            except NotFoundError:
                continue
            self.log.info("deleted pod of a deleted node", pod=object_key(pod), node=key)
            self.recorder.record_nowait(pod, type="Normal", reason="NodeDeleted",
                                        message=f"Deleting pod {object_key(pod)}: its node {key} no longer exists")
