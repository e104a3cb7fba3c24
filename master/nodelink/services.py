"""Sends Services and Endpoints to the kubelets whose proxies asked for them (Register.watch_services).

Two watches feed a cache; any change marks it dirty and a broadcaster sends
the whole set (ServiceSync), coalesced to at most one send per interval, so a
burst of endpoint changes during a rollout costs one message per node, while
a change still reaches every proxy well within a second. Each snapshot goes to
a connection's latest-wins slot (master.nodelink.connections), never to a
queue: a kubelet that reads slowly, or not at all, has at most one pending.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kybernetes.core.api.client import ObjectClient
from kybernetes.master.nodelink.connections import Connections, NodeConnection
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb


class ServiceRouter:
    """The Services/Endpoints cache and its fan-out."""

    def __init__(self, *, client: ObjectClient, connections: Connections, interval: float = 0.1) -> None:
        self.client = client
        self.connections = connections
        self.interval = interval
        self.services: dict[str, pb.Service] = {}
        self.endpoints: dict[str, pb.Endpoints] = {}
        self.synced = asyncio.Event()
        self._dirty = asyncio.Event()
        self._synced_kinds: set[str] = set()

    def message(self) -> node_pb2.MasterMessage:
        return node_pb2.MasterMessage(service_sync=node_pb2.ServiceSync(
            services=list(self.services.values()), endpoints=list(self.endpoints.values())))

    async def attach(self, conn: NodeConnection) -> None:
        if not conn.watch_services:
            return
        await self.synced.wait()
        conn.send(self.message())

    async def run(self) -> None:
        """Actor body: both watches and the broadcaster."""
        await asyncio.gather(self._follow("services", self.services), self._follow("endpoints", self.endpoints),
                             self._broadcast())

    async def _follow(self, resource: str, cache: dict[str, Any]) -> None:
        listed = await self.client.list(resource)
        cache.clear()
        cache.update({f"{o.metadata.namespace}/{o.metadata.name}": o for o in listed.items})
        self._synced_kinds.add(resource)
        if len(self._synced_kinds) == 2:
            self.synced.set()
        self._dirty.set()
        async for ev in self.client.watch(resource, resource_version=listed.resource_version):
            key = f"{ev.object.metadata.namespace}/{ev.object.metadata.name}"
            if ev.type == "DELETED":
                cache.pop(key, None)
            else:
                cache[key] = ev.object
            self._dirty.set()

    async def _broadcast(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.synced.is_set():
                message = self.message()
                for conn in self.connections.all():
                    if conn.watch_services:
                        conn.send(message)
            await asyncio.sleep(self.interval)
