"""An in-process client of the object service, with the same interface and errors as `ctl.client.Client`.

The master's own control loops use it: they get Kubernetes' API semantics
(defaulting, validation, optimistic concurrency) without a loopback gRPC hop.
Code written against `Client` runs unchanged on either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from google.protobuf.message import Message

from ctl import client as api
from master.api.objects import InvalidRequest, ObjectService
from master.store import errors

T = TypeVar("T")

_ERRORS: tuple[tuple[type[Exception], type[api.ApiError]], ...] = (
    (errors.NotFound, api.NotFoundError),
    (errors.AlreadyExists, api.AlreadyExistsError),
    (errors.Conflict, api.ConflictError),
    (errors.Unavailable, api.UnavailableError),
    (errors.TooOld, api.ExpiredError),
    (InvalidRequest, api.InvalidError),
    (ValueError, api.InvalidError),
    (errors.StoreError, api.ApiError),
)


def _translate(err: Exception) -> api.ApiError | None:
    for cls, out in _ERRORS:
        if isinstance(err, cls):
            return out(str(err))
    return None


async def _call(aw: Awaitable[T]) -> T:
    try:
        return await aw
    except Exception as err:
        mapped = _translate(err)
        if mapped is None:
            raise
        raise mapped from None


def _copy(obj: Message) -> Message:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


class LocalClient:
    """`ctl.client.Client`'s interface over an in-process `ObjectService`."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service

    async def close(self) -> None:
        """Nothing to close: kept for interface parity."""

    async def create(self, obj: Message) -> Any:
        return await _call(self.service.create(_copy(obj)))

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Any:
        return await _call(self.service.get(resource, name, namespace))

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> api.ListResult:
        items, rv = await _call(self.service.list(resource, namespace, label_selector=label_selector,
                                                  field_selector=field_selector))
        return api.ListResult(items, rv)

    async def update(self, obj: Message) -> Any:
        return await _call(self.service.update(_copy(obj)))

    async def update_status(self, obj: Message) -> Any:
        return await _call(self.service.update_status(_copy(obj)))

    async def delete(self, resource: str, name: str, *, namespace: str = "default", resource_version: str = "",
                     unconditional: bool = False, propagation_policy: str = "",
                     grace_period_seconds: int | None = None) -> api.DeleteResult:
        obj, deleted = await _call(self.service.delete(
            resource, name, namespace, resource_version=resource_version, unconditional=unconditional,
            propagation_policy=propagation_policy, grace_period_seconds=grace_period_seconds))
        return api.DeleteResult(obj, deleted)

    async def watch_once(self, resource: str, *, namespace: str = "", label_selector: str = "",
                         field_selector: str = "", resource_version: str = "",
                         bookmarks: bool = True) -> AsyncIterator[api.WatchEvent]:
        stream = self.service.watch(resource, namespace, label_selector=label_selector,
                                    field_selector=field_selector, resource_version=resource_version,
                                    bookmarks=bookmarks)
        try:
            while True:
                try:
                    ev = await stream.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as err:
                    mapped = _translate(err)
                    if mapped is None:
                        raise
                    raise mapped from None
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

