"""PodAPI: `kybctl logs` and `kybctl exec`, relayed to the pod's kubelet over its node link.

Nodes open no extra port: the master finds the node the pod is bound to and
asks its kubelet through the stream the kubelet already holds.

With several masters a kubelet holds its stream to one of them. A master asked for a pod whose Node is on
another master (which every master publishes: master.nodelink.presence) checks the caller's rights itself,
then relays the whole call to that master with its own identity (system:masters), marked `kyb-relayed` so
that it is never relayed twice.

Limits (docs/limits.md): output flows under the relay's credit (master.nodelink.relay), so a client that stops
reading holds at most a few chunks here and the kubelet stops reading the log or the command; a chunk is
credited back once it is written to the client. At most `max_exec_sessions` exec sessions are open per Node (one
more is RESOURCE_EXHAUSTED naming --max-exec-sessions-per-node), and an exec session that moves no byte either
way for `exec_idle_timeout` (no input, no output written: a silent command, or a client that stopped reading) is
ended with RESOURCE_EXHAUSTED naming --exec-idle-timeout. Both are enforced by the master that holds the Node's
stream (a relayed call is counted there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ApiError
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.nodelink.connections import Connections, NodeConnection
from kybernetes.master.nodelink.relay import (
    DEFAULT_EXEC_IDLE_TIMEOUT,
    DEFAULT_MAX_EXEC_SESSIONS_PER_NODE,
    MAX_CHUNK_BYTES,
    Overrun,
    Relay,
    Session,
)
from kybernetes.proto import node_pb2, node_pb2_grpc

T = TypeVar("T")
log = get_logger("podapi")


class Idle(Exception):  # noqa: N818 - a state, not an error
    """An exec session moved no byte for the idle timeout."""


async def _unless_idle(session: Session, operation: Awaitable[T], *, timeout: float) -> T:
    """The result of `operation`, unless the session stays idle (no `touch`) for `timeout` first: then the
    operation is cancelled and Idle raised. Activity meanwhile (input from the client) moves the deadline."""
    task = asyncio.ensure_future(operation)
    try:
        while True:
            remaining = session.last_activity + timeout - time.monotonic()
            if remaining <= 0:
                raise Idle()
            done, _ = await asyncio.wait({task}, timeout=remaining)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with a status (grpc's abort raises; this says so to the type checker)."""
    await context.abort(code, message)
    raise AssertionError("context.abort returned")


RELAYED = "kyb-relayed"


class MasterRelay:
    """Calls to the other masters' PodAPI: where a Node is (`locate`), and one channel per master."""

    def __init__(self, *, locate: Callable[[str], str | None], credentials: Callable[[], Credentials]) -> None:
        self.locate = locate
        self._credentials = credentials
        self._stubs: dict[str, node_pb2_grpc.PodAPIStub] = {}

    def stub(self, address: str) -> node_pb2_grpc.PodAPIStub:
        if address not in self._stubs:
            self._stubs[address] = node_pb2_grpc.PodAPIStub(secure_channel(address, self._credentials()))
        return self._stubs[address]


class PodAPIServicer(node_pb2_grpc.PodAPIServicer):
    """Logs and exec through the master."""

    def __init__(self, *, client: ObjectClient, connections: Connections, relay: Relay,
                 access: AccessControl, masters: MasterRelay | None = None,
                 max_exec_sessions: int = DEFAULT_MAX_EXEC_SESSIONS_PER_NODE,
                 exec_idle_timeout: float = DEFAULT_EXEC_IDLE_TIMEOUT) -> None:
        self.client = client
        self.access = access
        self.connections = connections
        self.relay = relay
        self.masters = masters
        self.max_exec_sessions = max_exec_sessions
        self.exec_idle_timeout = exec_idle_timeout

    async def _node_of(self, namespace: str, pod_name: str, context: grpc.aio.ServicerContext, *,
                       verb: str, subresource: str) -> NodeConnection | node_pb2_grpc.PodAPIStub:
        """The pod's Node's stream here, or the stub of the master that holds it."""
        try:
            self.access.require(verb=verb, resource=f"pods/{subresource}", namespace=namespace or "default",
                                name=pod_name)
            pod = await self.client.get("pods", pod_name, namespace=namespace or "default")
        except ApiError as err:
            await _abort(context, err.code, err.message)
        if not pod.spec.node_name:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                                f'pod "{pod_name}" is not scheduled to a node yet')
        conn = self.connections.get(pod.spec.node_name)
        if conn is not None:
            return conn
        relayed = any(key == RELAYED for key, _ in context.invocation_metadata() or ())
        address = self.masters.locate(pod.spec.node_name) if self.masters is not None and not relayed else None
        if self.masters is None or address is None:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f'node "{pod.spec.node_name}" is not connected')
        return self.masters.stub(address)

    async def Logs(self, request: node_pb2.LogsRequest,  # noqa: N802
                   context: grpc.aio.ServicerContext) -> AsyncIterator[node_pb2.LogChunk]:
        conn = await self._node_of(request.namespace, request.pod, context, verb="get", subresource="log")
        if isinstance(conn, node_pb2_grpc.PodAPIStub):
            try:
                async for chunk in conn.Logs(request, metadata=((RELAYED, "1"),)):
                    yield chunk
            except grpc.RpcError as err:
                await _abort(context, err.code(), err.details() or "")
            return
        session = self.relay.open(conn.node, kind="logs")
        ask = node_pb2.LogRequest(request_id=session.request_id, namespace=request.namespace or "default",
                                  pod=request.pod, container=request.container, follow=request.follow,
                                  previous=request.previous, window=session.window)
        if request.HasField("tail_lines"):
            ask.tail_lines = request.tail_lines
        conn.send(node_pb2.MasterMessage(log_request=ask))
        try:
            while True:
                chunk = await session.replies.get()
                if isinstance(chunk, Overrun):
                    await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f'node "{conn.node}" sent logs beyond flow control ({chunk.reason})')
                if not isinstance(chunk, node_pb2.LogChunk):  # None: the node went away
                    await _abort(context, grpc.StatusCode.UNAVAILABLE, f'node "{conn.node}" disconnected')
                if chunk.error:
                    await _abort(context, grpc.StatusCode.NOT_FOUND, chunk.error)
                if chunk.data:
                    # Returns once the client's HTTP/2 window took it: then the kubelet may send one more.
                    yield node_pb2.LogChunk(data=chunk.data)
                    conn.send(session.passed_on())
                if chunk.eof:
                    return
        finally:
            self.relay.close(session)
            conn.send(node_pb2.MasterMessage(cancel=node_pb2.Cancel(request_id=session.request_id)))

    async def Exec(self, request_iterator: AsyncIterator[node_pb2.ExecClientMessage],  # noqa: N802
                   context: grpc.aio.ServicerContext) -> None:
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "start" or not first.start.command:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "command: Required value")
        start = first.start
        conn = await self._node_of(start.namespace, start.pod, context, verb="create", subresource="exec")
        if isinstance(conn, node_pb2_grpc.PodAPIStub):
            async def messages() -> AsyncIterator[node_pb2.ExecClientMessage]:
                yield first
                async for msg in request_iterator:
                    yield msg

            try:
                async for out in conn.Exec(messages(), metadata=((RELAYED, "1"),)):
                    await context.write(out)
            except grpc.RpcError as err:
                await _abort(context, err.code(), err.details() or "")
            return
        pod = obj_ref("pods", start.pod, start.namespace or "default")
        open_here = self.relay.count(conn.node, kind="exec")
        if open_here >= self.max_exec_sessions:
            log.warning("exec refused: too many exec sessions on the node", object=pod, node=conn.node,
                        open=open_here, limit=self.max_exec_sessions)
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f'node "{conn.node}" already has {open_here} exec sessions open, the most '
                         f"--max-exec-sessions-per-node allows ({self.max_exec_sessions}); retry when one ends")
        session = self.relay.open(conn.node, kind="exec")
        sent = node_pb2.ExecStart()
        sent.CopyFrom(start)
        sent.request_id = session.request_id
        sent.namespace = start.namespace or "default"
        sent.window = session.window
        conn.send(node_pb2.MasterMessage(exec_start=sent))

        async def forward_input() -> None:
            """The client's input to the kubelet, in chunks of at most MAX_CHUNK_BYTES, each under credit: while
            the command does not read, this stops reading the client (HTTP/2 flow control holds it)."""
            async for msg in request_iterator:
                if msg.WhichOneof("message") != "input" or not start.stdin:
                    continue
                session.touch()
                data = bytes(msg.input.data)
                for offset in range(0, len(data), MAX_CHUNK_BYTES):
                    await session.take_input_credit()
                    conn.send(node_pb2.MasterMessage(exec_input=node_pb2.ExecInput(
                        request_id=session.request_id, data=data[offset:offset + MAX_CHUNK_BYTES])))
                if msg.input.eof:
                    conn.send(node_pb2.MasterMessage(exec_input=node_pb2.ExecInput(
                        request_id=session.request_id, eof=True)))

        forwarder = asyncio.create_task(forward_input())
        finished = False
        idle = self.exec_idle_timeout
        try:
            while True:
                out = await _unless_idle(session, session.replies.get(), timeout=idle)
                if isinstance(out, Overrun):
                    await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f'node "{conn.node}" sent exec output beyond flow control ({out.reason})')
                if not isinstance(out, node_pb2.ExecOutput):  # None: the node went away
                    await _abort(context, grpc.StatusCode.UNAVAILABLE, f'node "{conn.node}" disconnected')
                if out.exited and out.error:
                    finished = True
                    await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, out.error)
                # Written once the client's HTTP/2 window took it: then the kubelet may send one more.
                await _unless_idle(session, context.write(node_pb2.ExecServerMessage(
                    stream=out.stream, data=out.data, exited=out.exited, exit_code=out.exit_code)), timeout=idle)
                if out.data:
                    session.touch()
                    conn.send(session.passed_on())
                if out.exited:
                    finished = True
                    return
        except Idle:
            log.info("exec session idle: ended", object=pod, node=conn.node, idle_timeout=idle)
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"exec session ended: no input or output for {idle:g}s (--exec-idle-timeout)")
        finally:
            forwarder.cancel()
            self.relay.close(session)
            if not finished:
                conn.send(node_pb2.MasterMessage(cancel=node_pb2.Cancel(request_id=session.request_id)))
