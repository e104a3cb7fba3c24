"""The open kubelet streams on this master: one `NodeConnection` (a bounded outbound mailbox) per Node.

A kubelet that stops reading (starved, stopped in a debugger, a half-dead
network) must not make the master hold everything ever sent to it. Two kinds
of message go out, and each is bounded its own way:

* Messages that must all arrive, in order (Registered, PodSync, PodUpsert,
  PodRemove, logs and exec requests): a FIFO bounded in bytes
  (`max_pending_bytes`). A message that would take it over the bound closes
  the connection as `overflowed`; the stream then ends with RESOURCE_EXHAUSTED
  and the kubelet, when it reads again, reconnects and is sent its full state.
* Snapshots, where only the newest matters (ServiceSync, NodeSync: each is the
  whole set): one slot per kind, latest wins. A burst of a thousand Service
  changes costs one pending snapshot per Node, however slowly it reads.

The stream (master.nodelink.service) drains the FIFO first, then the newest
snapshots, and ends the stream itself when a single write makes no progress
for its send timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque

from kybernetes.proto import node_pb2

# A kubelet may fall this far behind on ordered messages before its stream is ended (RESOURCE_EXHAUSTED).
DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024
# Messages where only the newest counts (each is the whole set).
SNAPSHOT_KINDS = ("node_sync", "service_sync")


class NodeConnection:
    """One kubelet's stream: what it asked for, and the messages waiting to be sent to it."""

    def __init__(self, *, node: str, watch_nodes: bool = False, watch_services: bool = False,
                 max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self.node = node
        self.watch_nodes = watch_nodes
        self.watch_services = watch_services
        self.max_pending_bytes = max_pending_bytes
        self.closed = False
        self.overflowed = False  # closed because the kubelet fell too far behind
        self._ordered: deque[tuple[node_pb2.MasterMessage, int]] = deque()
        self._latest: dict[str, node_pb2.MasterMessage] = {}
        self.pending_bytes = 0
        self._ready = asyncio.Event()

    def send(self, message: node_pb2.MasterMessage) -> None:
        """Queue a message for the kubelet (never blocks). Snapshots replace the one pending of their kind; other
        messages queue in order, and one that would go over `max_pending_bytes` closes the connection instead."""
        if self.closed:
            return
        kind = message.WhichOneof("message")
        if kind in SNAPSHOT_KINDS:
            self._latest[kind] = message
            self._ready.set()
            return
        size = message.ByteSize()
        if self._ordered and self.pending_bytes + size > self.max_pending_bytes:
            self.overflowed = True
            self.close()
            return
        self._ordered.append((message, size))
        self.pending_bytes += size
        self._ready.set()

    def close(self) -> None:
        """End the stream: what is still waiting is dropped (a reconnect resends the full state)."""
        self.closed = True
        self._ordered.clear()
        self._latest.clear()
        self.pending_bytes = 0
        self._ready.set()

    def pending(self) -> int:
        """Messages waiting (ordered and snapshots)."""
        return len(self._ordered) + len(self._latest)

    async def next(self) -> node_pb2.MasterMessage | None:
        """The next message to write, waiting for one; None once the connection is closed."""
        while True:
            if self.closed:
                return None
            if self._ordered:
                message, size = self._ordered.popleft()
                self.pending_bytes -= size
                return message
            for kind in SNAPSHOT_KINDS:
                snapshot = self._latest.pop(kind, None)
                if snapshot is not None:
                    return snapshot
            self._ready.clear()
            await self._ready.wait()


class Connections:
    """Node name → its current connection (a reconnect replaces the old one)."""

    def __init__(self) -> None:
        self._by_node: dict[str, NodeConnection] = {}

    def add(self, conn: NodeConnection) -> NodeConnection | None:
        """Register a connection; returns the one it replaces, if any."""
        old = self._by_node.get(conn.node)
        self._by_node[conn.node] = conn
        return old

    def remove(self, conn: NodeConnection) -> bool:
        """Drop a connection if it is still the current one for its node."""
        if self._by_node.get(conn.node) is conn:
            del self._by_node[conn.node]
            return True
        return False

    def get(self, node: str) -> NodeConnection | None:
        return self._by_node.get(node)

    def all(self) -> list[NodeConnection]:
        return list(self._by_node.values())
