"""Routes pods (and Nodes, for pod routes) from etcd to the kubelets that need them.

One watch of all pods feeds a cache indexed by spec.nodeName; each connected
kubelet gets the full set of its pods when it connects (PodSync) and then
every change (PodUpsert, PodRemove). A pod moving off a node (or deleted) is a
PodRemove there. Node changes that matter for routing (podCIDR, InternalIP)
are broadcast, coalesced, to kubelets that asked for them.
"""

from __future__ import annotations

import asyncio

from ctl.machinery.log import get_logger
from master.nodelink.connections import Connections, NodeConnection
from proto import node_pb2
from proto import objects_pb2 as pb

log = get_logger("nodelink")


def _route_key(node: pb.Node) -> tuple[str, str]:
    ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    return node.spec.pod_cidr, ip


def _route_view(node: pb.Node) -> pb.Node:
    """Only what a kubelet needs for host-gw routes: name, podCIDR, addresses."""
    out = pb.Node()
    out.metadata.name = node.metadata.name
    out.spec.pod_cidr = node.spec.pod_cidr
    out.status.addresses.extend(node.status.addresses)
    return out


class PodRouter:
    """The pods-by-node cache and its fan-out to connections."""

    def __init__(self, *, client: object, connections: Connections) -> None:
        self.client = client
        self.connections = connections
        self.pods_by_node: dict[str, dict[str, pb.Pod]] = {}
        self._node_of: dict[str, str] = {}  # pod uid → node
        self.nodes: dict[str, tuple[str, str]] = {}
        self._node_views: dict[str, pb.Node] = {}
        self.pods_synced = asyncio.Event()
        self.nodes_synced = asyncio.Event()
        self._nodes_dirty = asyncio.Event()

    # ------------------------------------------------------------ connections

    async def attach(self, conn: NodeConnection) -> None:
        """Send a new connection its full state (after the caches have synced)."""
        await self.pods_synced.wait()
        pods = list(self.pods_by_node.get(conn.node, {}).values())
        conn.send(node_pb2.MasterMessage(pod_sync=node_pb2.PodSync(pods=pods)))
        if conn.watch_nodes:
            await self.nodes_synced.wait()
            conn.send(node_pb2.MasterMessage(node_sync=node_pb2.NodeSync(nodes=list(self._node_views.values()))))

    def pod_of(self, uid: str) -> pb.Pod | None:
        node = self._node_of.get(uid)
        return self.pods_by_node.get(node, {}).get(uid) if node else None

    # --------------------------------------------------------------- pods

    async def run_pods(self) -> None:
        """Actor body: keep the pod cache and push changes to kubelets."""
        listed = await self.client.list("pods")
        self._reset_pods(listed.items)
        self.pods_synced.set()
        async for ev in self.client.watch("pods", resource_version=listed.resource_version):
            self._apply_pod(ev.type, ev.object)

    def _reset_pods(self, pods: list[pb.Pod]) -> None:
        old = self.pods_by_node
        self.pods_by_node, self._node_of = {}, {}
        for pod in pods:
            self._index(pod)
        for conn in self.connections.all():
            if self.pods_by_node.get(conn.node) != old.get(conn.node):
                pods_now = list(self.pods_by_node.get(conn.node, {}).values())
                conn.send(node_pb2.MasterMessage(pod_sync=node_pb2.PodSync(pods=pods_now)))

    def _index(self, pod: pb.Pod) -> None:
        node = pod.spec.node_name
        if node:
            self.pods_by_node.setdefault(node, {})[pod.metadata.uid] = pod
            self._node_of[pod.metadata.uid] = node

    def _apply_pod(self, etype: str, pod: pb.Pod) -> None:
        uid = pod.metadata.uid
        old_node = self._node_of.pop(uid, None)
        if old_node:
            self.pods_by_node.get(old_node, {}).pop(uid, None)
        new_node = pod.spec.node_name if etype != "DELETED" else ""
        if old_node and old_node != new_node:
            conn = self.connections.get(old_node)
            if conn:
                conn.send(node_pb2.MasterMessage(pod_remove=node_pb2.PodRemove(
                    namespace=pod.metadata.namespace, name=pod.metadata.name, uid=uid)))
        if new_node:
            self._index(pod)
            conn = self.connections.get(new_node)
            if conn:
                conn.send(node_pb2.MasterMessage(pod_upsert=node_pb2.PodUpsert(pod=pod)))

    # -------------------------------------------------------------- nodes

    async def run_nodes(self) -> None:
        """Actor body: track route-relevant Node data; broadcast it coalesced when it changes."""
        listed = await self.client.list("nodes")
        for node in listed.items:
            self._set_node(node)
        self.nodes_synced.set()
        broadcaster = asyncio.create_task(self._broadcast_nodes())
        try:
            async for ev in self.client.watch("nodes", resource_version=listed.resource_version):
                if ev.type == "DELETED":
                    if self.nodes.pop(ev.object.metadata.name, None) is not None:
                        self._node_views.pop(ev.object.metadata.name, None)
                        self._nodes_dirty.set()
                elif self._set_node(ev.object):
                    self._nodes_dirty.set()
        finally:
            broadcaster.cancel()

    def _set_node(self, node: pb.Node) -> bool:
        if node.metadata.labels.get("kybernetes.io/hollow") == "true":
            return False  # hollow Nodes run no pods on a network: nothing to route to
        key = _route_key(node)
        if self.nodes.get(node.metadata.name) == key:
            return False
        self.nodes[node.metadata.name] = key
        self._node_views[node.metadata.name] = _route_view(node)
        return True

    async def _broadcast_nodes(self) -> None:
        while True:
            await self._nodes_dirty.wait()
            self._nodes_dirty.clear()
            views = list(self._node_views.values())
            for conn in self.connections.all():
                if conn.watch_nodes:
                    conn.send(node_pb2.MasterMessage(node_sync=node_pb2.NodeSync(nodes=views)))
            await asyncio.sleep(0.2)  # coalesce bursts (many Nodes registering at once)
