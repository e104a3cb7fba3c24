"""An in-process client of the object service, with the same interface and errors as
`kybernetes.ctl.client.Client` (both satisfy `kybernetes.core.api.client.ObjectClient`).

The master's own control loops use it: they get Kubernetes' API semantics
(defaulting, validation, optimistic concurrency) without a loopback gRPC hop.
Code written against `Client` runs unchanged on either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from kybernetes.core.api import client as api
from kybernetes.core.api.kinds import ApiObject, as_api_object
from kybernetes.core.api.objects import copy_of
from kybernetes.master.api.objects import ObjectService


class LocalClient:
    """`kybernetes.ctl.client.Client`'s interface over an in-process `ObjectService`."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service

    async def close(self) -> None:
        """Nothing to close: kept for interface parity."""

    async def create(self, obj: Message | ApiObject) -> Any:
        return await self.service.create(as_api_object(copy_of(obj)))

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Any:
        return await self.service.get(resource, name, namespace)

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> api.ListResult:
        items, rv = await self.service.list(resource, namespace, label_selector=label_selector,
                                                  field_selector=field_selector)
        return api.ListResult(items, rv)

    async def update(self, obj: Message | ApiObject) -> Any:
        return await self.service.update(as_api_object(copy_of(obj)))

    async def update_status(self, obj: Message | ApiObject) -> Any:
        return await self.service.update_status(as_api_object(copy_of(obj)))

    async def delete(self, resource: str, name: str, *, namespace: str = "default", resource_version: str = "",
                     unconditional: bool = False, propagation_policy: str = "",
                     grace_period_seconds: int | None = None) -> api.DeleteResult:
        obj, deleted = await self.service.delete(
            resource, name, namespace, resource_version=resource_version, unconditional=unconditional,
            propagation_policy=propagation_policy, grace_period_seconds=grace_period_seconds)
        return api.DeleteResult(obj, deleted)

    async def watch_once(self, resource: str, *, namespace: str = "", label_selector: str = "",
                         field_selector: str = "", resource_version: str = "",
                         bookmarks: bool = True) -> AsyncIterator[api.WatchEvent]:
        stream = self.service.watch(resource, namespace, label_selector=label_selector,
                                    field_selector=field_selector, resource_version=resource_version,
                                    bookmarks=bookmarks)
        try:
            async for ev in stream:
                yield api.WatchEvent(ev.type, ev.object, ev.resource_version)
        finally:
            await stream.aclose()

    async def watch(self, resource: str, *, namespace: str = "", label_selector: str = "",
                    field_selector: str = "", resource_version: str = "",
                    max_backoff: float = 2.0) -> AsyncIterator[api.WatchEvent]:
        """Same resilient semantics as `Client.watch` (shared implementation)."""
        async for ev in api.resilient_watch(self, resource, namespace=namespace, label_selector=label_selector,
                                            field_selector=field_selector, resource_version=resource_version,
                                            max_backoff=max_backoff):
            yield ev

