"""Routes pods (and Nodes, for pod routes) from etcd to the kubelets that need them.

The router reads the master's shared pod and Node informers (the same caches
the controllers use, so the master watches and decodes each pod once): the
pod cache's spec.nodeName index gives each kubelet the full set of its pods
when it connects (PodSync), and the informer's handlers send every change
after that (PodUpsert, PodRemove). A pod moving off a node (or deleted) is a
PodRemove there. A re-list turns into the same handler calls, so nothing is
missed. Node changes that matter for routing (podCIDR, InternalIP) are
broadcast, coalesced, to kubelets that asked for them; a NodeSync replaces the
one still pending on a connection (master.nodelink.connections), so a kubelet
that does not read holds one, not one per broadcast.
"""

from __future__ import annotations

import asyncio

from kybernetes.core.log import get_logger
from kybernetes.core.machinery.informer import Informer, InformerFactory
from kybernetes.master.controllers import indexes
from kybernetes.master.nodelink.connections import Connections, NodeConnection
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

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
    """Pods by node from the shared informer, and their fan-out to connections."""

    def __init__(self, *, informers: InformerFactory, connections: Connections) -> None:
        self.connections = connections
        self.pod_informer: Informer = informers.informer("pods")
        self.node_informer: Informer = informers.informer("nodes")
        indexes.add_pod_indexes(self.pod_informer)
        self._by_uid: dict[str, pb.Pod] = {}  # bound pods, for status reports (which name the uid)
        self.nodes: dict[str, tuple[str, str]] = {}
        self._node_views: dict[str, pb.Node] = {}
        self.nodes_synced = asyncio.Event()
        self._nodes_dirty = asyncio.Event()
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                      on_delete=self._pod_deleted)
        self.node_informer.add_handler(on_add=self._node_set, on_update=self._node_updated,
                                       on_delete=self._node_deleted)

    # ------------------------------------------------------------ connections

    async def attach(self, conn: NodeConnection) -> None:
        """Send a new connection its full state (after the caches have synced)."""
        await self.pod_informer.wait_synced()
        pods = self.pod_informer.by_index(indexes.NODE, conn.node)
        conn.send(node_pb2.MasterMessage(pod_sync=node_pb2.PodSync(pods=pods)))
        if conn.watch_nodes:
            await self.nodes_synced.wait()
            conn.send(node_pb2.MasterMessage(node_sync=node_pb2.NodeSync(nodes=list(self._node_views.values()))))

    def pod_of(self, uid: str) -> pb.Pod | None:
        """The cached bound pod with this uid, or None."""
        return self._by_uid.get(uid)

    # --------------------------------------------------------------- pods

    def _pod_added(self, pod: pb.Pod) -> None:
        self._route("", pod)

    def _pod_updated(self, old: pb.Pod, new: pb.Pod) -> None:
        if old.metadata.uid != new.metadata.uid:  # replaced under the same name (seen across a re-list)
            self._pod_deleted(old)
            self._route("", new)
            return
        self._route(old.spec.node_name, new)

    def _pod_deleted(self, pod: pb.Pod) -> None:
        uid = pod.metadata.uid
        self._by_uid.pop(uid, None)
        node = pod.spec.node_name
        conn = self.connections.get(node) if node else None
        if conn:
            conn.send(node_pb2.MasterMessage(pod_remove=node_pb2.PodRemove(
                namespace=pod.metadata.namespace, name=pod.metadata.name, uid=uid)))

    def _route(self, old_node: str, pod: pb.Pod) -> None:
        uid = pod.metadata.uid
        new_node = pod.spec.node_name
        if old_node and old_node != new_node:
            conn = self.connections.get(old_node)
            if conn:
                conn.send(node_pb2.MasterMessage(pod_remove=node_pb2.PodRemove(
                    namespace=pod.metadata.namespace, name=pod.metadata.name, uid=uid)))
        if not new_node:
            self._by_uid.pop(uid, None)
            return
        self._by_uid[uid] = pod
        conn = self.connections.get(new_node)
        if conn:
            conn.send(node_pb2.MasterMessage(pod_upsert=node_pb2.PodUpsert(pod=pod)))

    # -------------------------------------------------------------- nodes

    async def run_nodes(self) -> None:
        """Actor body: after the Node cache's first list, broadcast route changes, coalesced."""
        await self.node_informer.wait_synced()
        self.nodes_synced.set()
        while True:
            await self._nodes_dirty.wait()
            self._nodes_dirty.clear()
            views = list(self._node_views.values())
            for conn in self.connections.all():
                if conn.watch_nodes:
                    conn.send(node_pb2.MasterMessage(node_sync=node_pb2.NodeSync(nodes=views)))
            await asyncio.sleep(0.2)  # coalesce bursts (many Nodes registering at once)

    def _node_updated(self, old: pb.Node, new: pb.Node) -> None:
        self._node_set(new)

    def _node_set(self, node: pb.Node) -> None:
        if node.metadata.labels.get("kybernetes.io/hollow") == "true":
            return  # hollow Nodes run no pods on a network: nothing to route to
        key = _route_key(node)
        if self.nodes.get(node.metadata.name) == key:
            return
        self.nodes[node.metadata.name] = key
        self._node_views[node.metadata.name] = _route_view(node)
        self._nodes_dirty.set()

    def _node_deleted(self, node: pb.Node) -> None:
        if self.nodes.pop(node.metadata.name, None) is not None:
            self._node_views.pop(node.metadata.name, None)
            self._nodes_dirty.set()
