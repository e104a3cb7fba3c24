"""Registration: a kubelet's Register message becomes its Node object in etcd.

The kubelet owns what it can observe (labels it sets, addresses, capacity,
allocatable, nodeInfo); the master owns spec (podCIDR, unschedulable, taints)
and the Ready condition with its lastHeartbeatTime. Ready and the heartbeat
time are written on change and then refreshed only coarsely, so an idle Node
costs almost no etcd writes.
"""

from __future__ import annotations

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import AlreadyExistsError, ConflictError, NotFoundError
from kybernetes.core.api.objects import now_timestamp
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.master.nodelink.podcidr import PodCIDRAllocator
from kybernetes.proto import objects_pb2 as pb

log = get_logger("nodelink")


def set_ready(node: pb.Node, *, status: str, reason: str, message: str, heartbeat: bool = True) -> bool:
    """Set the Ready condition; returns whether anything but the heartbeat time changed."""
    now = now_timestamp()
    for cond in node.status.conditions:
        if cond.type == "Ready":
            changed = (cond.status, cond.reason, cond.message) != (status, reason, message)
            if changed:
                cond.status, cond.reason, cond.message = status, reason, message
                cond.last_transition_time.CopyFrom(now)
            if heartbeat:
                cond.last_heartbeat_time.CopyFrom(now)
            return changed
    node.status.conditions.add(type="Ready", status=status, reason=reason, message=message,
                               last_transition_time=now, last_heartbeat_time=now)
    return True


class Registrar:
    """Creates or refreshes Node objects for connecting kubelets."""

    def __init__(self, *, client: ObjectClient, pod_cidrs: PodCIDRAllocator) -> None:
        self.client = client
        self.pod_cidrs = pod_cidrs

    async def register(self, reported: pb.Node) -> pb.Node:
        """The Node as stored after this registration (created, or updated with the kubelet's view)."""
        name = reported.metadata.name
        for _ in range(10):
            try:
                current = await self.client.get("nodes", name)
            except NotFoundError:
                node = pb.Node()
                node.CopyFrom(reported)
                node.metadata.ClearField("resource_version")
                node.spec.pod_cidr = await self.pod_cidrs.allocate(name)
                set_ready(node, status="True", reason="KubeletReady", message="kubelet is posting ready status")
                try:
                    created = await self.client.create(node)
                except AlreadyExistsError:
                    continue
                log.info("node registered", object=obj_ref("nodes", name), pod_cidr=created.spec.pod_cidr)
                return created
            try:
                return await self._refresh(current, reported)
            except ConflictError:
                continue
        raise RuntimeError(f"could not register node {name}: too many conflicts")

    async def _refresh(self, current: pb.Node, reported: pb.Node) -> pb.Node:
        name = current.metadata.name
        node = pb.Node()
        node.CopyFrom(current)
        node.metadata.labels.update(reported.metadata.labels)
        if not node.spec.pod_cidr:
            node.spec.pod_cidr = await self.pod_cidrs.allocate(name)
        if node != current:
            node = await self.client.update(node)
        status_node = pb.Node()
        status_node.CopyFrom(node)
        status = status_node.status
        status.capacity.clear()
        status.capacity.update(reported.status.capacity)
        status.allocatable.clear()
        status.allocatable.update(reported.status.allocatable)
        del status.addresses[:]
        status.addresses.extend(reported.status.addresses)
        status.node_info.CopyFrom(reported.status.node_info)
        set_ready(status_node, status="True", reason="KubeletReady", message="kubelet is posting ready status")
        stored = await self.client.update_status(status_node)
        log.info("node re-registered", object=obj_ref("nodes", name), pod_cidr=stored.spec.pod_cidr)
        return stored

    async def refresh_heartbeat(self, name: str) -> None:
        """The coarse lastHeartbeatTime refresh (and Ready=True if something else had changed it)."""
        for _ in range(5):
            try:
                node = await self.client.get("nodes", name)
                set_ready(node, status="True", reason="KubeletReady", message="kubelet is posting ready status")
                await self.client.update_status(node)
                return
            except ConflictError:
                continue
            except NotFoundError:
                return
