"""Relays log and exec sessions between kybctl (PodAPI) and the kubelet that runs the pod, with flow control.

Each session has a request id; the kubelet's answers (LogChunk, ExecOutput) come back on its node stream and are
delivered to the session's queue. When a node's stream breaks, its open sessions end with an error instead of
hanging.

Flow control (docs/limits.md): the master may not read the node stream more slowly for one slow client (every
other session, heartbeat and status report of that Node shares it), so each session's queue is bounded by
credit instead. The request gives the kubelet a window of `window` chunks; the kubelet sends at most that many
chunks with data beyond those credited back, and the servicer credits one back (`passed_on`) when it has
written it to the client. A client that stops reading thus holds at most `window` chunks (of at most
`MAX_CHUNK_BYTES`) here, and the kubelet stops reading the log file or the command's output. A kubelet that
sends more than its window, or a larger chunk, ends its session with `Overrun` (RESOURCE_EXHAUSTED) instead of
growing the queue. Exec input flows the other way under the same window: the master sends at most `window`
input chunks beyond those the kubelet has credited back (`take_input_credit`).

Exec sessions are counted per Node (`count`) for `--max-exec-sessions-per-node`; each session records its last
activity (`touch`) for `--exec-idle-timeout`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from kybernetes.core.log import get_logger, obj_ref
from kybernetes.proto import node_pb2

log = get_logger("nodelink")

# Chunks a kubelet may send ahead of the master's credit, per session (and input chunks the other way).
DEFAULT_WINDOW = 4
# The most data one chunk may carry (the kubelet's log reads and exec output slices are this size).
MAX_CHUNK_BYTES = 64 * 1024
# A cap per Node: each exec session costs the Node a process (ctr exec and the command) and the master a task.
DEFAULT_MAX_EXEC_SESSIONS_PER_NODE = 32
# kubelet's --streaming-connection-idle-timeout: an exec session that moves no byte for this long is ended.
DEFAULT_EXEC_IDLE_TIMEOUT = 4 * 3600.0

Kind = Literal["logs", "exec"]
Reply = node_pb2.LogChunk | node_pb2.ExecOutput


class Overrun:
    """The kubelet sent more than the session's window (or a chunk over MAX_CHUNK_BYTES): the session ends."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(eq=False)
class Session:
    request_id: str
    node: str
    kind: Kind
    window: int
    # At most `window` chunks with data, one final message (eof / exited), and one end marker (None: the node
    # went away; Overrun) wait here.
    replies: asyncio.Queue[Reply | Overrun | None] = field(default_factory=asyncio.Queue)
    outstanding: int = 0  # chunks with data received and not yet credited back
    finished: bool = False  # the final message (or an end marker) is queued: nothing more is taken
    input_credit: int = 0
    _input_ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_activity: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.input_credit = self.window

    def touch(self) -> None:
        """Data moved (input from the client, output to it): the session is not idle."""
        self.last_activity = time.monotonic()

    def passed_on(self) -> node_pb2.MasterMessage:
        """A chunk with data was written to the client: the Credit that lets the kubelet send one more."""
        self.outstanding -= 1
        return node_pb2.MasterMessage(credit=node_pb2.Credit(request_id=self.request_id, chunks=1))

    async def take_input_credit(self) -> None:
        """Wait until the kubelet may take one more input chunk, and count it as sent."""
        while self.input_credit <= 0:
            self._input_ready.clear()
            await self._input_ready.wait()
        self.input_credit -= 1

    def give_input_credit(self, chunks: int) -> None:
        self.input_credit = min(self.window, self.input_credit + max(chunks, 0))
        self._input_ready.set()


def _final(reply: Reply) -> bool:
    return reply.eof if isinstance(reply, node_pb2.LogChunk) else reply.exited


class Relay:
    """Open sessions by request id."""

    def __init__(self, *, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._sessions: dict[str, Session] = {}

    def open(self, node: str, *, kind: Kind) -> Session:
        session = Session(uuid.uuid4().hex, node, kind, self.window)
        self._sessions[session.request_id] = session
        return session

    def close(self, session: Session) -> None:
        self._sessions.pop(session.request_id, None)

    def count(self, node: str, *, kind: Kind) -> int:
        """Open sessions of a kind on a Node."""
        return sum(1 for s in self._sessions.values() if s.node == node and s.kind == kind)

    def deliver(self, node: str, reply: Reply) -> None:
        """A kubelet's answer; ignored unless it belongs to an open session of that node."""
        session = self._sessions.get(reply.request_id)
        if session is None or session.node != node or session.finished:
            return
        if reply.data:
            if len(reply.data) > MAX_CHUNK_BYTES:
                self._overrun(session, f"a chunk of {len(reply.data)} bytes, more than {MAX_CHUNK_BYTES}")
                return
            if session.outstanding >= session.window:
                self._overrun(session, f"more than {session.window} chunks ahead of the master's credit")
                return
            session.outstanding += 1
        elif not _final(reply):
            return  # nothing to pass on
        session.finished = _final(reply)
        session.replies.put_nowait(reply)

    def credit(self, node: str, credit: node_pb2.Credit) -> None:
        """The kubelet passed input chunks on to an exec session's command."""
        session = self._sessions.get(credit.request_id)
        if session is not None and session.node == node:
            session.give_input_credit(credit.chunks)

    def _overrun(self, session: Session, reason: str) -> None:
        log.warning("session overrun: the kubelet ignores flow control", object=obj_ref("nodes", session.node),
                    request_id=session.request_id, session=session.kind, reason=reason)
        session.finished = True
        session.replies.put_nowait(Overrun(reason))

    def node_gone(self, node: str) -> None:
        """End every session of a node whose stream broke."""
        for session in [s for s in self._sessions.values() if s.node == node]:
            session.finished = True
            session.replies.put_nowait(None)
