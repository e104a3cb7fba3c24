"""Node liveness, in memory: when each kubelet last spoke, and whether its stream is open.

Heartbeats arrive every second from every Node. Writing each to etcd would be
a thousand writes a second at a thousand Nodes, so they only touch this table;
the Node's Ready condition in etcd changes only when liveness changes (and
lastHeartbeatTime is refreshed coarsely). The node lifecycle controller reads
this table to decide when a Node is lost.

After a master restart the table is empty; every Node then counts as last seen
when the master started, which gives kubelets the grace period to reconnect
before anything is declared lost.

A stream that breaks (keepalive: a power cut, a cut cable) makes its Node lost
at once, without the grace period. With other masters around, "at once" means
after `reconnect_window`: a master cut off from a Node's network (while the Node
is fine) sees that stream break too, and its kubelet, which notices within a
second (kubelet/main.py's keepalive), needs that long to reconnect to another
master and show up in that master's presence. A power cut then costs the
window more; a master cut off from its Nodes evicts nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kybernetes.core.machinery.informer import Informer
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from kybernetes.master.nodelink.presence import PresenceView


class NodeLiveness:
    """Last-heard times and open streams of the kubelets connected to this master."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, reconnect_window: float = 0.0) -> None:
        self._clock = clock
        self.reconnect_window = reconnect_window
        # The other masters' Nodes (master.nodelink.presence); None on a master that shares no etcd view.
        self.elsewhere: PresenceView | None = None
        self.started_at = clock()
        self._last_seen: dict[str, float] = {}
        self._connected: dict[str, int] = {}  # open streams per node (a reconnect may overlap the old one)
        # Streams that broke, and when: lost at once (or after reconnect_window), without the grace period.
        self._lost: dict[str, float] = {}
        # Nodes the lifecycle controller wrote Ready=Unknown for while their stream stayed open (a kubelet
        # starved of CPU for longer than the grace period): their next message sets Ready=True again.
        self._marked_unknown: set[str] = set()
        self._registering: dict[str, int] = {}  # registrations in flight per node
        self.changed = asyncio.Event()

    def now(self) -> float:
        """The clock this table uses (monotonic seconds)."""
        return self._clock()

    def heartbeat(self, node: str) -> bool:
        """The kubelet spoke (a heartbeat or any message); True when it had been marked Unknown."""
        self._last_seen[node] = self._clock()
        if node in self._marked_unknown:
            self._marked_unknown.discard(node)
            return True
        return False

    def marked_unknown(self, node: str) -> None:
        """The lifecycle controller wrote Ready=Unknown for this node."""
        self._marked_unknown.add(node)

    def registering(self, node: str) -> None:
        """A kubelet opened a stream and is registering. Until `connected` or `registration_failed` it is not
        silent: registration writes Ready=True, and with a thousand Nodes registering at once that write can
        come seconds after the kubelet spoke; the lifecycle controller must not take it for a lost Node."""
        self._registering[node] = self._registering.get(node, 0) + 1
        self._lost.pop(node, None)
        self.heartbeat(node)

    def registration_failed(self, node: str) -> None:
        self._registering_done(node)
        self.heartbeat(node)  # the grace period runs from now

    def _registering_done(self, node: str) -> None:
        count = self._registering.get(node, 0) - 1
        if count > 0:
            self._registering[node] = count
        else:
            self._registering.pop(node, None)

    def connected(self, node: str) -> None:
        """A kubelet's stream opened."""
        self._connected[node] = self._connected.get(node, 0) + 1
        self._lost.pop(node, None)
        self._marked_unknown.discard(node)  # registration has just written Ready=True
        self._registering_done(node)
        self.heartbeat(node)
        self.changed.set()

    def disconnected(self, node: str, *, graceful: bool = False) -> None:
        """A kubelet's stream closed: unless another stream is open, the node is lost now. A kubelet that closed
        its stream itself (`graceful`: a restart, an upgrade, a new certificate) is only silent from now: it has
        the grace period to come back before anything is judged."""
        count = self._connected.get(node, 0) - 1
        if count > 0:
            self._connected[node] = count
            return
        self._connected.pop(node, None)
        if graceful:
            self._last_seen[node] = self._clock()
        else:
            self._lost[node] = self._clock()
        self.changed.set()

    def reported_ready(self, node: str) -> None:
        """A master (maybe another one) wrote this Node Ready=True with a new heartbeat time: its registration, or
        a status refresh. Its kubelet spoke just now, wherever its stream is; this covers the moment before the
        other master's presence is read (master.nodelink.presence)."""
        if node in self._connected:
            return
        self._last_seen[node] = max(self._last_seen.get(node, self.started_at), self._clock())
        self._lost.pop(node, None)

    def fresh_grace(self) -> None:
        """A newly elected leader judges no Node before a full grace period of its own: every Node not heard
        of since counts as last seen now (streams that broke stay lost)."""
        self.started_at = self._clock()
        for node in self._last_seen:
            self._last_seen[node] = max(self._last_seen[node], self.started_at)
        self.changed.set()

    def forget(self, node: str) -> None:
        """The Node object was deleted."""
        self._last_seen.pop(node, None)
        self._connected.pop(node, None)
        self._lost.pop(node, None)
        self._marked_unknown.discard(node)
        self._registering.pop(node, None)

    def is_connected(self, node: str) -> bool:
        return node in self._connected

    def silent_for(self, node: str) -> float:
        """Seconds since the node was last heard of, here or by another master; infinite when its stream here
        broke and no other master has it."""
        if node in self._registering:
            return 0.0
        elsewhere = self.elsewhere
        if node not in self._connected and elsewhere is not None and elsewhere.is_present_elsewhere(node):
            return 0.0
        last = self._last_seen.get(node, self.started_at)
        gone = elsewhere.gone_at(node) if elsewhere is not None else None
        broke = self._lost.get(node)
        if broke is not None and (gone is None or gone <= last) and self._window_over(broke):
            return float("inf")
        lost_at = elsewhere.lost_elsewhere_at(node) if elsewhere is not None else None
        if node not in self._connected and lost_at is not None and lost_at >= last and self._window_over(lost_at):
            return float("inf")  # its stream broke on another master (a power cut), since it was last heard here
        if gone is not None:
            last = max(last, gone)
        return max(0.0, self._clock() - last)

    def _window_over(self, broke_at: float) -> bool:
        """Whether a Node whose stream broke at `broke_at` has had its chance to reconnect to another master
        (no other master: nowhere to go, so no window)."""
        if self.elsewhere is None or not self.elsewhere.has_other_masters():
            return True
        return self._clock() - broke_at >= self.reconnect_window

    def silent_connected(self, grace: float) -> set[str]:
        """Nodes whose stream here is open but which have said nothing for longer than `grace`."""
        now = self._clock()
        return {n for n in self._connected if now - self._last_seen.get(n, self.started_at) > grace}

    def lost_nodes(self) -> set[str]:
        """Nodes whose stream here broke (not closed by their kubelet) and that have not come back here."""
        return set(self._lost) - set(self._connected)

    def connected_nodes(self) -> list[str]:
        return list(self._connected)


def ready_heartbeat(node: pb.Node) -> tuple[int, int] | None:
    """The Ready=True condition's heartbeat time (seconds, nanos), or None when the Node is not Ready=True."""
    for condition in node.status.conditions:
        if condition.type == "Ready" and condition.status == "True":
            return condition.last_heartbeat_time.seconds, condition.last_heartbeat_time.nanos
    return None


def follow_ready_reports(nodes: Informer[pb.Node], liveness: NodeLiveness, *, grace: float,
                         reassert: Callable[[str], None] | None = None) -> None:
    """Tell `liveness` of every new Ready=True heartbeat written to a Node (by this master or another).

    And the other way round: when another master (the leader) writes a Node not Ready while that Node's stream
    is here and its kubelet spoke within the grace period (the leader judged it before it saw this master's
    presence), `reassert(name)` writes Ready=True again at once instead of at the next coarse refresh.
    """
    def on_update(old: pb.Node, new: pb.Node) -> None:
        name = new.metadata.name
        beat = ready_heartbeat(new)
        if beat is not None and beat != ready_heartbeat(old):
            liveness.reported_ready(name)
        elif (beat is None and ready_heartbeat(old) is not None and reassert is not None
              and liveness.is_connected(name) and liveness.silent_for(name) <= grace):
            reassert(name)

    def on_add(node: pb.Node) -> None:
        if ready_heartbeat(node) is not None:
            liveness.reported_ready(node.metadata.name)

    nodes.add_handler(on_add=on_add, on_update=on_update)
