"""A scripted kubelet: one NodeLink stream under a test's control, speaking the protocol message by message.

It presents a node certificate issued by the master's admin (`system:node:<identity>`, by default its own
name), so tests can also pose as another Node with a real certificate and see the master refuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from harness.master import MasterProcess
from kybernetes.core.identity.certs import node_identity
from kybernetes.ctl.client import Credentials
from kybernetes.ctl.client.identity import issue_certificate
from kybernetes.proto import node_pb2, node_pb2_grpc
from kybernetes.proto import objects_pb2 as pb


class ScriptedNode:
    """One NodeLink stream under the test's control."""

    def __init__(self, master: MasterProcess, name: str, *, credentials: Credentials | None = None,
                 identity: str = "") -> None:
        self.master = master
        self.credentials = credentials
        self.channel: grpc.aio.Channel | None = None
        self.name = name
        self.identity = identity or name  # the Node whose certificate this stream presents
        self.outbox: asyncio.Queue[node_pb2.NodeMessage | None] = asyncio.Queue()
        self.inbox: asyncio.Queue[node_pb2.MasterMessage] = asyncio.Queue()
        self.call: Any = None
        self.ended: asyncio.Future[grpc.aio.AioRpcError] = asyncio.get_running_loop().create_future()
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """The channel, with this node's own certificate (issued by the admin) unless other credentials were given."""
        if self.channel is None:
            if self.credentials is None:
                async with self.master.client() as admin:
                    self.credentials = await issue_certificate(admin, node_identity(self.identity))
            self.channel = self.master.channel(self.credentials)
            self.stub = node_pb2_grpc.NodeLinkStub(self.channel)

    async def connect(self, *, watch_nodes: bool = False, watch_services: bool = False) -> node_pb2.Registered:
        await self.open()
        node = pb.Node()
        node.metadata.name = self.name
        node.metadata.labels["kubernetes.io/hostname"] = self.name
        node.status.capacity.update({"cpu": "2", "memory": "4Gi", "pods": "110"})
        node.status.allocatable.update({"cpu": "2", "memory": "4Gi", "pods": "110"})
        node.status.addresses.add(type="InternalIP", address="127.0.0.1")
        self.outbox.put_nowait(node_pb2.NodeMessage(register=node_pb2.Register(
            node=node, watch_nodes=watch_nodes, watch_services=watch_services)))

        async def requests() -> AsyncIterator[node_pb2.NodeMessage]:
            while True:
                msg = await self.outbox.get()
                if msg is None:
                    return
                yield msg

        self.call = self.stub.Connect(requests())

        async def read() -> None:
            try:
                async for msg in self.call:
                    self.inbox.put_nowait(msg)
            except grpc.aio.AioRpcError as err:
                self.ended.set_result(err)

        self.reader = asyncio.create_task(read())
        first = await self.expect("registered")
        return first.registered

    async def refused(self, *, timeout: float = 10.0) -> grpc.aio.AioRpcError:
        """Send Register and return the error the master ends the stream with (it must end it)."""
        registering = asyncio.create_task(self.connect())
        try:
            return await asyncio.wait_for(asyncio.shield(self.ended), timeout)
        finally:
            registering.cancel()
            await asyncio.gather(registering, return_exceptions=True)

    def send(self, **kwargs: Any) -> None:
        self.outbox.put_nowait(node_pb2.NodeMessage(**kwargs))

    async def expect(self, kind: str, timeout: float = 10.0,
                     where: Callable[[node_pb2.MasterMessage], bool] = lambda msg: True) -> node_pb2.MasterMessage:
        """The next message of a kind (and matching `where`), skipping others."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            msg = await asyncio.wait_for(self.inbox.get(), max(remaining, 0.01))
            if msg.WhichOneof("message") == kind and where(msg):
                return msg

    async def hang_up(self, *, timeout: float = 10.0) -> None:
        """Say Goodbye and end our side of the stream, as a kubelet that stops does, and wait for the master to
        end its side."""
        self.outbox.put_nowait(node_pb2.NodeMessage(goodbye=node_pb2.Goodbye(reason="test")))
        self.outbox.put_nowait(None)
        if self.reader is not None:
            await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        await self.close()

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        if self.call is not None:
            self.call.cancel()
        if self.reader is not None:
            self.reader.cancel()
        if self.channel is not None:
            await self.channel.close()


__all__ = ["ScriptedNode"]
