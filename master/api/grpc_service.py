"""The ObjectAPI gRPC service: a thin translation between protobuf requests and `ObjectService`.

Errors map to status codes once, here: invalid input INVALID_ARGUMENT, a
missing object NOT_FOUND, a taken name ALREADY_EXISTS, a stale resourceVersion
ABORTED, etcd down UNAVAILABLE, a compacted watch start OUT_OF_RANGE.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ctl.api import kinds
from master.api.objects import InvalidRequest, ObjectService
from master.store import errors
from proto import api_pb2, api_pb2_grpc
from proto import objects_pb2 as pb

T = TypeVar("T")

_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.TooOld, grpc.StatusCode.OUT_OF_RANGE),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),  # ValidationError, SelectorError
    (errors.StoreError, grpc.StatusCode.INTERNAL),
)


def status_for(err: Exception) -> grpc.StatusCode | None:
    """The gRPC status code of one of our errors, or None for a bug."""
    for cls, code in _CODES:
        if isinstance(err, cls):
            return code
    return None


def _unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(self: ObjectAPIServicer, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except Exception as err:
            code = status_for(err)
            if code is None:
                raise
            await context.abort(code, str(err))
            raise  # unreachable: abort raises

    return wrapper


def _unwrap(envelope: pb.Object) -> Any:
    if envelope.WhichOneof("kind") is None:
        raise InvalidRequest("object: Required value: one of " + ", ".join(k.field for k in kinds.KINDS))
    return kinds.unwrap(envelope)


class ObjectAPIServicer(api_pb2_grpc.ObjectAPIServicer):
    """gRPC front of the object service."""

    def __init__(self, *, service: ObjectService) -> None:
        self.service = service

    @_unary
    async def Create(self, request: api_pb2.CreateRequest, context: grpc.aio.ServicerContext) -> pb.Object:  # noqa: N802
        return kinds.wrap(await self.service.create(_unwrap(request.object)))

    @_unary
    async def Get(self, request: api_pb2.GetRequest, context: grpc.aio.ServicerContext) -> pb.Object:  # noqa: N802
        return kinds.wrap(await self.service.get(request.resource, request.name, request.namespace))

    @_unary
    async def List(self, request: api_pb2.ListRequest, context: grpc.aio.ServicerContext) -> api_pb2.ObjectList:  # noqa: N802
        items, rv = await self.service.list(request.resource, request.namespace,
                                            label_selector=request.label_selector,
                                            field_selector=request.field_selector)
        return api_pb2.ObjectList(items=[kinds.wrap(o) for o in items], resource_version=rv)

    @_unary
    async def Update(self, request: api_pb2.UpdateRequest, context: grpc.aio.ServicerContext) -> pb.Object:  # noqa: N802
        return kinds.wrap(await self.service.update(_unwrap(request.object)))

    @_unary
    async def UpdateStatus(self, request: api_pb2.UpdateRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> pb.Object:
        return kinds.wrap(await self.service.update_status(_unwrap(request.object)))

    @_unary
    async def Delete(self, request: api_pb2.DeleteRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> api_pb2.DeleteResponse:
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        obj, deleted = await self.service.delete(
            request.resource, request.name, request.namespace, resource_version=request.resource_version,
            unconditional=request.unconditional, propagation_policy=request.propagation_policy,
            grace_period_seconds=grace)
        return api_pb2.DeleteResponse(object=kinds.wrap(obj), deleted=deleted)

    async def Watch(self, request: api_pb2.WatchRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.WatchEvent]:
        try:
            async for ev in self.service.watch(request.resource, request.namespace,
                                               label_selector=request.label_selector,
                                               field_selector=request.field_selector,
                                               resource_version=request.resource_version,
                                               bookmarks=request.allow_bookmarks):
                if ev.object is None:
                    yield api_pb2.WatchEvent(type=ev.type, resource_version=ev.resource_version)
                else:
                    yield api_pb2.WatchEvent(type=ev.type, object=kinds.wrap(ev.object),
                                             resource_version=ev.resource_version)
        except Exception as err:
            code = status_for(err)
            if code is None:
                raise
            await context.abort(code, str(err))
