"""The scheduler's view of the cluster: per-Node accounting, updated incrementally.

Every Node has a `NodeInfo` with what the scheduler needs precomputed: its
allocatable cpu (millicores), memory (bytes) and pod slots, readiness,
cordon, hard taints and labels, and the running sums of what its pods request,
the host ports they hold and how many pods of each owner it runs (for
spreading). Pod events add or subtract one pod's `PodInfo`; nothing ever scans
all pods, so scheduling a pod costs O(nodes examined), whatever the number of
pods in the cluster.

A pod the scheduler has decided on is *assumed* onto its Node at once, before
the bind is written, so the next pod already sees the capacity as taken; when
the informer then shows the pod bound, the assumption is confirmed (replaced
by the real pod); when the bind fails it is forgotten. Terminal pods
(Succeeded/Failed) hold nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from kybernetes.core.api.objects import controller_of, get_condition
from kybernetes.core.api.quantity import QuantityError, parse_cpu, parse_memory
from kybernetes.core.machinery.informer import object_key
from kybernetes.proto import objects_pb2 as pb

DEFAULT_MAX_PODS = 110
# What a container without requests counts as when scoring (Kubernetes' non-zero defaults), so empty
# pods still spread instead of piling onto one Node.
DEFAULT_NONZERO_CPU = 100
DEFAULT_NONZERO_MEMORY = 200 * 1024 * 1024


def _quantity(values: object, name: str, parse: object) -> int | None:
    text = values.get(name)  # type: ignore[attr-defined]
    if text is None:
        return None
    try:
        return parse(text)  # type: ignore[operator]
    except QuantityError:
        return None


@dataclass(slots=True)
class PodInfo:
    """What scheduling needs from a pod, computed once."""

    key: str
    uid: str
    cpu: int
    memory: int
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: tuple[tuple[str, int], ...]
    owner_uid: str
    node_selector: dict[str, str]
    tolerations: tuple[pb.Toleration, ...]
    pod: pb.Pod

    @classmethod
    def from_pod(cls, pod: pb.Pod) -> PodInfo:
        cpu = memory = nonzero_cpu = nonzero_memory = 0
        ports: list[tuple[str, int]] = []
        for container in pod.spec.containers:
            res = container.resources
            # A limit without a request requests the limit (Kubernetes' defaulting).
            c = _quantity(res.requests, "cpu", parse_cpu)
            if c is None:
                c = _quantity(res.limits, "cpu", parse_cpu)
            m = _quantity(res.requests, "memory", parse_memory)
            if m is None:
                m = _quantity(res.limits, "memory", parse_memory)
            cpu += c or 0
            memory += m or 0
            nonzero_cpu += c if c else DEFAULT_NONZERO_CPU
            nonzero_memory += m if m else DEFAULT_NONZERO_MEMORY
            for port in container.ports:
                if port.host_port:
                    ports.append((port.protocol or "TCP", port.host_port))
        owner = controller_of(pod)
        return cls(key=object_key(pod), uid=pod.metadata.uid, cpu=cpu, memory=memory, nonzero_cpu=nonzero_cpu,
                   nonzero_memory=nonzero_memory, host_ports=tuple(ports), owner_uid=owner.uid if owner else "",
                   node_selector=dict(pod.spec.node_selector), tolerations=tuple(pod.spec.tolerations), pod=pod)


@dataclass(slots=True)
class NodeInfo:
    """One Node and the running totals of the pods on it."""

    name: str
    node: pb.Node | None = None
    allocatable_cpu: int = 0
    allocatable_memory: int = 0
    allocatable_pods: int = DEFAULT_MAX_PODS
    ready: str = "Unknown"  # the Ready condition's status
    unschedulable: bool = False
    hard_taints: tuple[pb.Taint, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    requested_cpu: int = 0
    requested_memory: int = 0
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    host_ports: Counter[tuple[str, int]] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    pods: dict[str, PodInfo] = field(default_factory=dict)

    def set_node(self, node: pb.Node) -> None:
        self.node = node
        status = node.status
        alloc = status.allocatable if status.allocatable else status.capacity
        self.allocatable_cpu = _quantity(alloc, "cpu", parse_cpu) or 0
        self.allocatable_memory = _quantity(alloc, "memory", parse_memory) or 0
        pods = alloc.get("pods")
        try:
            self.allocatable_pods = int(pods) if pods is not None else DEFAULT_MAX_PODS
        except ValueError:
            self.allocatable_pods = DEFAULT_MAX_PODS
        ready = get_condition(status.conditions, "Ready")
        self.ready = ready.status if ready is not None else "Unknown"
        self.unschedulable = node.spec.unschedulable
        self.hard_taints = tuple(t for t in node.spec.taints if t.effect in ("NoSchedule", "NoExecute"))
        self.labels = dict(node.metadata.labels)

    def add(self, info: PodInfo) -> None:
        self.pods[info.key] = info
        self.requested_cpu += info.cpu
        self.requested_memory += info.memory
        self.nonzero_cpu += info.nonzero_cpu
        self.nonzero_memory += info.nonzero_memory
        for port in info.host_ports:
            self.host_ports[port] += 1
        if info.owner_uid:
            self.owners[info.owner_uid] += 1

    def remove(self, key: str) -> PodInfo | None:
        info = self.pods.pop(key, None)
        if info is None:
            return None
        self.requested_cpu -= info.cpu
        self.requested_memory -= info.memory
        self.nonzero_cpu -= info.nonzero_cpu
        self.nonzero_memory -= info.nonzero_memory
        for port in info.host_ports:
            self.host_ports[port] -= 1
            if self.host_ports[port] <= 0:
                del self.host_ports[port]
        if info.owner_uid:
            self.owners[info.owner_uid] -= 1
            if self.owners[info.owner_uid] <= 0:
                del self.owners[info.owner_uid]
        return info


def _holds_resources(pod: pb.Pod) -> bool:
    return bool(pod.spec.node_name) and pod.status.phase not in ("Succeeded", "Failed")


class SchedulerCache:
    """NodeInfos by name, where each bound (or assumed) pod is accounted."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._order: list[str] = []  # Node names with a Node object, for round-robin search
        self._pod_node: dict[str, str] = {}  # pod key -> node it is accounted on
        self._assumed: set[str] = set()

    # ------------------------------------------------------------------ nodes

    def _info(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name=name)
        return info

    def set_node(self, node: pb.Node) -> None:
        info = self._info(node.metadata.name)
        if info.node is None:
            self._order.append(node.metadata.name)
        info.set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        if info.node is not None:
            self._order.remove(name)
        info.node = None
        if not info.pods:
            del self.nodes[name]

    def node_names(self) -> list[str]:
        """Names of the Nodes that exist (have a Node object), in a stable order."""
        return self._order

    def schedulable_nodes(self) -> Iterator[NodeInfo]:
        for name in self._order:
            yield self.nodes[name]

    # ------------------------------------------------------------------- pods

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def node_of(self, key: str) -> str | None:
        return self._pod_node.get(key)

    def assume(self, info: PodInfo, node_name: str) -> None:
        """Account a pod on the Node chosen for it before the bind is written."""
        self._unaccount(info.key)
        self._info(node_name).add(info)
        self._pod_node[info.key] = node_name
        self._assumed.add(info.key)

    def forget(self, key: str) -> None:
        """Drop an assumption whose bind failed."""
        if key in self._assumed:
            self._assumed.discard(key)
            self._unaccount(key)

    def set_pod(self, pod: pb.Pod) -> None:
        """A pod as the informer shows it: account it where it is bound (or nowhere)."""
        key = object_key(pod)
        if key in self._assumed and not pod.spec.node_name:
            return  # the bind is in flight; this is an older view of the pod
        self._assumed.discard(key)
        self._unaccount(key)
        if _holds_resources(pod):
            self._info(pod.spec.node_name).add(PodInfo.from_pod(pod))
            self._pod_node[key] = pod.spec.node_name

    def remove_pod(self, pod: pb.Pod) -> None:
        key = object_key(pod)
        self._assumed.discard(key)
        self._unaccount(key)

    def _unaccount(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        if node_name is None:
            return
        info = self.nodes.get(node_name)
        if info is not None:
            info.remove(key)
            if info.node is None and not info.pods:
                del self.nodes[node_name]
