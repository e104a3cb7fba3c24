"""The open kubelet streams on this master: one `NodeConnection` (an outbound mailbox) per Node."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kybernetes.proto import node_pb2


@dataclass(eq=False)
class NodeConnection:
    """One kubelet's stream: what it asked for, and the mailbox of messages to send it."""

    node: str
    watch_nodes: bool = False
    watch_services: bool = False
    outbox: asyncio.Queue[node_pb2.MasterMessage | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def send(self, message: node_pb2.MasterMessage) -> None:
        """Queue a message for the kubelet (never blocks; the stream drains the queue)."""
        if not self.closed:
            self.outbox.put_nowait(message)

    def close(self) -> None:
        self.closed = True
        self.outbox.put_nowait(None)


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
