"""Scores: among the Nodes that fit, which is best? First spread, then least allocated.

The issue orders the two: first spread the pods of one owner across Nodes
(fewest pods of the same controller wins), then prefer the least allocated
Node (the most free cpu and memory after placing the pod, averaged, counting
pods without requests at Kubernetes' non-zero defaults). Ties are broken at
random so that equal Nodes share the load.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from kybernetes.master.controllers.scheduler.cache import NodeInfo, PodInfo


def least_allocated(pod: PodInfo, node: NodeInfo) -> float:
    """Free fraction of cpu and memory after placing the pod, averaged (0 … 1)."""
    total = 0.0
    for capacity, used in ((node.allocatable_cpu, node.nonzero_cpu + pod.nonzero_cpu),
                           (node.allocatable_memory, node.nonzero_memory + pod.nonzero_memory)):
        if capacity > 0:
            total += max(0.0, (capacity - used) / capacity)
    return total / 2


def score_key(pod: PodInfo, node: NodeInfo) -> tuple[int, float]:
    """Higher is better: (minus same-owner pods on the Node, least-allocated score)."""
    same_owner = node.owners.get(pod.owner_uid, 0) if pod.owner_uid else 0
    return (-same_owner, least_allocated(pod, node))


def select_host(pod: PodInfo, feasible: Sequence[NodeInfo], rng: random.Random | None = None) -> NodeInfo:
    """The best Node; a uniformly random one among the best when several tie."""
    best: list[NodeInfo] = []
    best_key: tuple[int, float] | None = None
    owner = pod.owner_uid
    pod_cpu, pod_memory = pod.nonzero_cpu, pod.nonzero_memory
    for node in feasible:
        # score_key(), inlined: this loop runs for every feasible Node of every pod.
        spread = -node.owners.get(owner, 0) if owner else 0
        free = 0.0
        cpu = node.allocatable_cpu
        if cpu > 0:
            free += max(0.0, (cpu - node.nonzero_cpu - pod_cpu) / cpu)
        memory = node.allocatable_memory
        if memory > 0:
            free += max(0.0, (memory - node.nonzero_memory - pod_memory) / memory)
        key = (spread, free / 2)
        if best_key is None or key > best_key:
            best, best_key = [node], key
        elif key == best_key:
            best.append(node)  # ties are drawn from once at the end (identical Nodes tie by the hundred)
    assert best, "select_host needs at least one feasible Node"
    return best[0] if len(best) == 1 else (rng or random).choice(best)
