"""Relays log and exec sessions between kybctl (PodAPI) and the kubelet that runs the pod.

Each session has a request id; the kubelet's answers (LogChunk, ExecOutput)
come back on its node stream and are delivered to the session's queue. When a
node's stream breaks, its open sessions end with an error instead of hanging.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from kybernetes.proto import node_pb2


@dataclass(eq=False)
class Session:
    request_id: str
    node: str
    replies: asyncio.Queue[node_pb2.LogChunk | node_pb2.ExecOutput | None] = field(default_factory=asyncio.Queue)


class Relay:
    """Open sessions by request id."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(self, node: str) -> Session:
        session = Session(uuid.uuid4().hex, node)
        self._sessions[session.request_id] = session
        return session

    def close(self, session: Session) -> None:
        self._sessions.pop(session.request_id, None)

    def deliver(self, node: str, reply: node_pb2.LogChunk | node_pb2.ExecOutput) -> None:
        """A kubelet's answer; ignored unless it belongs to an open session of that node."""
        session = self._sessions.get(reply.request_id)
        if session is not None and session.node == node:
            session.replies.put_nowait(reply)

    def node_gone(self, node: str) -> None:
        """End every session of a node whose stream broke."""
        for session in [s for s in self._sessions.values() if s.node == node]:
            session.replies.put_nowait(None)
