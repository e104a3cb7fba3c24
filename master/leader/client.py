"""The control loops' object client while their master leads: every write is fenced.

It wraps the master's in-process client; reads pass through, and each write runs inside `fenced(fence)`,
so the store adds the election key's create revision to the write's etcd transaction. When another master
has been elected since, the write fails with FencedError and changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from kybernetes.core.api.client import DeleteResult, ListResult, ObjectClient, WatchEvent
from kybernetes.core.api.kinds import ApiObject
from kybernetes.master.store.fencing import Fence, fenced


class FencedClient:
    """An ObjectClient whose writes commit only while `fence` holds."""

    def __init__(self, inner: ObjectClient, fence: Fence) -> None:
        self.inner = inner
        self.fence = fence

    async def create(self, obj: Message | ApiObject) -> Any:
        with fenced(self.fence):
            return await self.inner.create(obj)

    async def update(self, obj: Message | ApiObject) -> Any:
        with fenced(self.fence):
            return await self.inner.update(obj)

    async def update_status(self, obj: Message | ApiObject) -> Any:
        with fenced(self.fence):
            return await self.inner.update_status(obj)

    async def delete(self, resource: str, name: str, **kwargs: Any) -> DeleteResult:
        with fenced(self.fence):
            return await self.inner.delete(resource, name, **kwargs)

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Any:
        return await self.inner.get(resource, name, namespace=namespace)

    async def list(self, resource: str, **kwargs: Any) -> ListResult:
        return await self.inner.list(resource, **kwargs)

    def watch_once(self, resource: str, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        return self.inner.watch_once(resource, **kwargs)

    def watch(self, resource: str, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(resource, **kwargs)

    async def close(self) -> None:
        return None
