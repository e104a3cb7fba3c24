"""PodAPI: `kybctl logs` and `kybctl exec`, relayed to the pod's kubelet over its node link.

Nodes open no extra port: the master finds the node the pod is bound to and
asks its kubelet through the stream the kubelet already holds.

With several masters a kubelet holds its stream to one of them. A master asked for a pod whose Node is on
another master (which every master publishes: master.nodelink.presence) checks the caller's rights itself,
then relays the whole call to that master with its own identity (system:masters), marked `kyb-relayed` so
that it is never relayed twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import grpc

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ApiError
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.nodelink.connections import Connections, NodeConnection
from kybernetes.master.nodelink.relay import Relay
from kybernetes.proto import node_pb2, node_pb2_grpc


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
                 access: AccessControl, masters: MasterRelay | None = None) -> None:
        self.client = client
        self.access = access
        self.connections = connections
        self.relay = relay
        self.masters = masters

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
        session = self.relay.open(conn.node)
        ask = node_pb2.LogRequest(request_id=session.request_id, namespace=request.namespace or "default",
                                  pod=request.pod, container=request.container, follow=request.follow,
                                  previous=request.previous)
        if request.HasField("tail_lines"):
            ask.tail_lines = request.tail_lines
        conn.send(node_pb2.MasterMessage(log_request=ask))
        try:
            while True:
                chunk = await session.replies.get()
                if not isinstance(chunk, node_pb2.LogChunk):  # None: the node went away
                    await _abort(context, grpc.StatusCode.UNAVAILABLE, f'node "{conn.node}" disconnected')
                if chunk.error:
                    await _abort(context, grpc.StatusCode.NOT_FOUND, chunk.error)
                if chunk.data:
                    yield node_pb2.LogChunk(data=chunk.data)
                if chunk.eof:
                    return
        finally:
            self.relay.close(session)
            conn.send(node_pb2.MasterMessage(cancel=node_pb2.Cancel(request_id=session.request_id)))

    async def Exec(self, request_iterator: AsyncIterator[node_pb2.ExecClientMessage],  # noqa: N802
                   context: grpc.aio.ServicerContext) -> AsyncIterator[node_pb2.ExecServerMessage]:
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
                    yield out
            except grpc.RpcError as err:
                await _abort(context, err.code(), err.details() or "")
            return
        session = self.relay.open(conn.node)
        sent = node_pb2.ExecStart()
        sent.CopyFrom(start)
        sent.request_id = session.request_id
        sent.namespace = start.namespace or "default"
        conn.send(node_pb2.MasterMessage(exec_start=sent))

        async def forward_input() -> None:
            async for msg in request_iterator:
                if msg.WhichOneof("message") == "input":
                    data = node_pb2.ExecInput()
                    data.CopyFrom(msg.input)
                    data.request_id = session.request_id
                    conn.send(node_pb2.MasterMessage(exec_input=data))

        forwarder = asyncio.create_task(forward_input())
        finished = False
        try:
            while True:
                out = await session.replies.get()
                if not isinstance(out, node_pb2.ExecOutput):  # None: the node went away
                    await _abort(context, grpc.StatusCode.UNAVAILABLE, f'node "{conn.node}" disconnected')
                if out.exited and out.error:
                    await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, out.error)
                yield node_pb2.ExecServerMessage(stream=out.stream, data=out.data, exited=out.exited,
                                                 exit_code=out.exit_code)
                if out.exited:
                    finished = True
                    return
        finally:
            forwarder.cancel()
            self.relay.close(session)
            if not finished:
                conn.send(node_pb2.MasterMessage(cancel=node_pb2.Cancel(request_id=session.request_id)))
