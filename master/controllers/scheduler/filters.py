"""Filters: can this pod run on this Node? Each returns the reasons it cannot (empty: it can).

The reasons are Kubernetes' own wording, so the FailedScheduling message reads
as in Kubernetes ("0/3 nodes are available: 2 Insufficient memory, 1 node(s)
were unschedulable."). Filters run in a fixed order and a Node is refused by
the first that fails; the resource filter reports every insufficient
resource at once, as Kubernetes' NodeResourcesFit does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from kybernetes.master.controllers.scheduler.cache import NodeInfo, PodInfo
from kybernetes.proto import objects_pb2 as pb

UNSCHEDULABLE = "node(s) were unschedulable"
NOT_READY = "node(s) were not ready"
SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
PORTS_TAKEN = "node(s) didn't have free ports for the requested pod ports"
INSUFFICIENT_CPU = "Insufficient cpu"
INSUFFICIENT_MEMORY = "Insufficient memory"
TOO_MANY_PODS = "Too many pods"

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def tolerates(toleration: pb.Toleration, *, key: str, value: str, effect: str) -> bool:
    """Kubernetes' ToleratesTaint."""
    if toleration.effect and toleration.effect != effect:
        return False
    if toleration.key and toleration.key != key:
        return False
    if toleration.operator == "Exists":
        return True
    return toleration.value == value


def tolerates_taint(tolerations: Iterable[pb.Toleration], taint: pb.Taint) -> bool:
    return any(tolerates(t, key=taint.key, value=taint.value, effect=taint.effect) for t in tolerations)


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> list[str]:
    if node.unschedulable and not any(
            tolerates(t, key=UNSCHEDULABLE_TAINT, value="", effect="NoSchedule") for t in pod.tolerations):
        return [UNSCHEDULABLE]
    return []


def node_ready(pod: PodInfo, node: NodeInfo) -> list[str]:
    if node.ready == "True":
        return []
    taint_key = UNREACHABLE_TAINT if node.ready == "Unknown" else NOT_READY_TAINT
    if any(tolerates(t, key=taint_key, value="", effect="NoSchedule") for t in pod.tolerations):
        return []
    return [NOT_READY]


def node_selector(pod: PodInfo, node: NodeInfo) -> list[str]:
    labels = node.labels
    for key, value in pod.node_selector.items():
        if labels.get(key) != value:
            return [SELECTOR_MISMATCH]
    return []


def taints(pod: PodInfo, node: NodeInfo) -> list[str]:
    for taint in node.hard_taints:
        if not tolerates_taint(pod.tolerations, taint):
            return [f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"]
    return []


def host_ports(pod: PodInfo, node: NodeInfo) -> list[str]:
    for port in pod.host_ports:
        if node.host_ports.get(port):
            return [PORTS_TAKEN]
    return []


def resources(pod: PodInfo, node: NodeInfo) -> list[str]:
    reasons = []
    if len(node.pods) + 1 > node.allocatable_pods:
        reasons.append(TOO_MANY_PODS)
    if pod.cpu and node.requested_cpu + pod.cpu > node.allocatable_cpu:
        reasons.append(INSUFFICIENT_CPU)
    if pod.memory and node.requested_memory + pod.memory > node.allocatable_memory:
        reasons.append(INSUFFICIENT_MEMORY)
    return reasons


Filter = Callable[[PodInfo, NodeInfo], list[str]]

FILTERS: tuple[Filter, ...] = (node_unschedulable, node_ready, node_selector, taints, host_ports, resources)


def run_filters(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Why `pod` cannot run on `node` ([] when it can)."""
    for check in FILTERS:
        reasons = check(pod, node)
        if reasons:
            return reasons
    return []


def fit_error_message(total_nodes: int, reasons: Counter[str]) -> str:
    """`0/3 nodes are available: 2 Insufficient memory, 1 node(s) were unschedulable.`"""
    if total_nodes == 0:
        return "0/0 nodes are available: no nodes available to schedule pods."
    parts = [f"{count} {reason}" for reason, count in sorted(reasons.items(), key=lambda rc: (-rc[1], rc[0]))]
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."
