"""Full disruption: when much of the cluster is not Ready at once, the node lifecycle controller stops evicting.

Many Nodes going silent together more likely means the master is cut off from them (its own network, a
partition, a switch) than that they all died. Evicting their pods then helps nobody: the replacements have
few or no Nodes to run on, and when the partition heals every workload has been restarted for nothing.
So, as Kubernetes' node lifecycle controller does, evictions stop.

The rule (`is_full_disruption`): at least `MIN_NOT_READY` (2) Nodes, and at least `threshold` of all Nodes,
are not Ready (Ready False or Unknown, or silent for longer than the grace period in this very pass).
`threshold` is `kyb-master --unhealthy-zone-threshold` (0.55 by default, as Kubernetes'). With the default:
1 Node lost of 1, 1 of 2 or 2 of 4 is an ordinary failure and its pods are evicted; 2 of 2, 2 of 3 (67 %),
3 of 5 (60 %) or 11 of 20 (55 %) is a full disruption. The floor of 2 keeps one lost Node the failure the
controller exists for, whatever the cluster size; a threshold of 1 asks for every Node to be not Ready.

Kubernetes (pkg/controller/nodelifecycle, node_lifecycle_controller.go) computes a state per zone
(ComputeZoneState): fullDisruption when no Node of the zone is Ready, partialDisruption when more than 2 and
at least the threshold are not Ready. When every zone is fully disrupted, handleDisruption takes the
NoExecute taints off every Node (markNodeAsReachable) and sets the eviction rate to 0; a partially disrupted
zone of up to 50 Nodes (largeClusterThreshold) gets rate 0 too. Kybernetes has one zone and no eviction rate,
so it takes Kubernetes' threshold (with a floor of 2 instead of 3) and the consequences of its full
disruption: no new taints, and the controller's own taints taken off, so the taint eviction controller
(eviction.py) evicts nothing. On leaving, Kubernetes gives every Node fresh probe timestamps; here the Nodes
still not Ready are tainted afresh (timeAdded now), so their pods get the whole eviction timeout again.

Entering and leaving are each announced by one Event about the control plane (`CLUSTER_REFERENCE`: the
kube-system namespace, so it is listed in "default" with the Nodes' events: `kybctl get events`) and a log
line, both naming the counts and the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from kybernetes.proto import objects_pb2 as pb

MIN_NOT_READY = 2
FULL_DISRUPTION = "FullDisruption"
FULL_DISRUPTION_ENDED = "FullDisruptionEnded"
# What the disruption Events are about: the control plane as a whole, not one Node.
CLUSTER_REFERENCE = pb.ObjectReference(kind="Namespace", api_version="v1", name="kube-system")


def is_full_disruption(*, not_ready: int, total: int, threshold: float) -> bool:
    """At least MIN_NOT_READY Nodes, and at least `threshold` of all `total`, are not Ready."""
    return not_ready >= MIN_NOT_READY and total > 0 and not_ready / total >= threshold


@dataclass(frozen=True, slots=True)
class Announcement:
    """The Event for a change of state: its type, reason and message."""

    type: str
    reason: str
    message: str


def announcement(*, disrupted: bool, not_ready: int, total: int, threshold: float) -> Announcement:
    """What to record when the cluster enters (`disrupted`) or leaves full disruption."""
    counts = f"{not_ready} of {total} Nodes not Ready ({not_ready / max(total, 1):.0%}; threshold {threshold:.0%})"
    if disrupted:
        return Announcement("Warning", FULL_DISRUPTION,
                            f"{counts}: full disruption, the master is more likely cut off than the Nodes dead; "
                            "no pods are evicted and the unreachable/not-ready NoExecute taints are removed")
    return Announcement("Normal", FULL_DISRUPTION_ENDED,
                        f"{counts}: full disruption over; Nodes still not Ready are tainted again and their pods "
                        "evicted after the eviction timeout")
