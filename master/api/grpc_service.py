"""The ObjectAPI gRPC service: a thin translation between protobuf requests and `ObjectService`.

Errors are `kybernetes.core.api.errors.ApiError`s from the store and validation up, each with its status
code (invalid input INVALID_ARGUMENT, a missing object NOT_FOUND, a taken name ALREADY_EXISTS, a stale
resourceVersion ABORTED, etcd down UNAVAILABLE, a compacted watch start OUT_OF_RANGE, one watch more than an
identity may hold RESOURCE_EXHAUSTED); any other exception is a bug, answered INTERNAL and logged with its
traceback.

Watches are counted per caller identity (master.api.limits): one more than `--max-watches-per-user` is refused
before anything is read from etcd.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from kybernetes.core.api import kinds
from kybernetes.core.api.errors import ApiError, code_of
from kybernetes.core.log import get_logger
from kybernetes.master.api.limits import WatchLimit
from kybernetes.master.api.objects import InvalidRequest, ObjectService
from kybernetes.master.auth.access import AccessControl
from kybernetes.proto import api_pb2, api_pb2_grpc
from kybernetes.proto import objects_pb2 as pb

T = TypeVar("T")
log = get_logger("api")


# The status message travels in the grpc-message trailer, percent-encoded (3 bytes for each byte outside
# printable ASCII); clients drop a response whose metadata exceeds 8-16 KiB, so a refusal is cut to fit.
MAX_STATUS_MESSAGE_BYTES = 6 * 1024


def fit_status_message(message: str, limit: int = MAX_STATUS_MESSAGE_BYTES) -> str:
    """`message` as sent in grpc-message, cut (at a character) to at most `limit` bytes once percent-encoded."""
    size = 0
    for i, char in enumerate(message):
        size += 1 if " " <= char <= "~" and char != "%" else 3 * len(char.encode("utf-8", "surrogatepass"))
        if size > limit - 40:
            return f"{message[:i]}... (message cut: {len(message)} characters)"
    return message


async def _abort(context: grpc.aio.ServicerContext, err: Exception, method: str) -> None:
    """Answer an error: an `ApiError` with its own code (errors.code_of), anything else as INTERNAL.

    Anything that is not an `ApiError` is our bug, never the caller's fault: it is logged with its traceback
    and answered INTERNAL, never INVALID_ARGUMENT. The message is cut to what a client's metadata limit lets
    through (fit_status_message).
    """
    if isinstance(err, ApiError):
        await context.abort(code_of(err), fit_status_message(err.message))
    log.error("internal error", method=method, error=repr(err), exc_info=err)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")


def unary_rpc(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A unary method of any servicer: ApiErrors answered with their code, anything else INTERNAL (logged)."""
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await _abort(context, err, fn.__name__)
            raise  # unreachable: abort raises

    return wrapper


def _unconfined(obj: Any) -> bool:
    """Whether a pod, or the pod template of a workload, asks for no seccomp filter anywhere."""
    if isinstance(obj, pb.Pod):
        spec = obj.spec
    elif isinstance(obj, (pb.ReplicaSet, pb.Deployment)):
        spec = obj.spec.template.spec
    else:
        return False
    return spec.security_context.seccomp_profile.type == "Unconfined" or any(
        c.security_context.seccomp_profile.type == "Unconfined" for c in spec.containers)


def _unwrap(envelope: pb.Object) -> Any:
    if envelope.WhichOneof("kind") is None:
        raise InvalidRequest("object: Required value: one of " + ", ".join(k.field for k in kinds.KINDS))
    return kinds.unwrap(envelope)


class ObjectAPIServicer(api_pb2_grpc.ObjectAPIServicer):
    """gRPC front of the object service."""

    def __init__(self, *, service: ObjectService, access: AccessControl, watches: WatchLimit | None = None) -> None:
        self.service = service
        self.access = access
        self.watches = watches or WatchLimit()

    def _allow_object(self, verb: str, obj: Any, *, subresource: str = "") -> None:
        kind = kinds.kind_of(obj)
        namespace = (obj.metadata.namespace or "default") if kind.namespaced else ""
        resource = f"{kind.resource}/{subresource}" if subresource else kind.resource
        self.access.require(verb=verb, resource=resource, namespace=namespace, name=obj.metadata.name)
        if not subresource and _unconfined(obj):
            # Opting out of the default seccomp profile is a privilege of its own (PodSecurity's "privileged").
            self.access.require(verb="use", resource="seccompprofiles", namespace=namespace, name="unconfined")

    @unary_rpc
    async def Create(self, request: api_pb2.CreateRequest, context: grpc.aio.ServicerContext) -> pb.Object:  # noqa: N802
        obj = _unwrap(request.object)
        self._allow_object("create", obj)
        return kinds.wrap(await self.service.create(obj))

    @unary_rpc
    async def Get(self, request: api_pb2.GetRequest, context: grpc.aio.ServicerContext) -> pb.Object:  # noqa: N802
        self.access.require(verb="get", resource=request.resource, namespace=request.namespace, name=request.name)
        return kinds.wrap(await self.service.get(request.resource, request.name, request.namespace))

    @unary_rpc
    async def List(self, request: api_pb2.ListRequest, context: grpc.aio.ServicerContext) -> api_pb2.ObjectList:  # noqa: N802
        self.access.require(verb="list", resource=request.resource, namespace=request.namespace)
        items, rv, token = await self.service.list_page(request.resource, request.namespace,
                                                        label_selector=request.label_selector,
                                                        field_selector=request.field_selector, limit=request.limit,
                                                        continue_token=request.continue_token)
        return api_pb2.ObjectList(items=[kinds.wrap(o) for o in items], resource_version=rv, continue_token=token)

    @unary_rpc
    async def Update(self, request: api_pb2.UpdateRequest, context: grpc.aio.ServicerContext) -> pb.Object:  # noqa: N802
        obj = _unwrap(request.object)
        self._allow_object("update", obj)
        return kinds.wrap(await self.service.update(obj))

    @unary_rpc
    async def UpdateStatus(self, request: api_pb2.UpdateRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> pb.Object:
        obj = _unwrap(request.object)
        self._allow_object("update", obj, subresource="status")
        return kinds.wrap(await self.service.update_status(obj))

    @unary_rpc
    async def Delete(self, request: api_pb2.DeleteRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> api_pb2.DeleteResponse:
        self.access.require(verb="delete", resource=request.resource, namespace=request.namespace,
                            name=request.name)
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        obj, deleted = await self.service.delete(
            request.resource, request.name, request.namespace, resource_version=request.resource_version,
            unconditional=request.unconditional, propagation_policy=request.propagation_policy,
            grace_period_seconds=grace)
        return api_pb2.DeleteResponse(object=kinds.wrap(obj), deleted=deleted)

    async def Watch(self, request: api_pb2.WatchRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext) -> AsyncIterator[api_pb2.WatchEvent]:
        try:
            identity = self.access.require(verb="watch", resource=request.resource, namespace=request.namespace)
            with self.watches.hold(identity, resource=request.resource):
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
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await _abort(context, err, "Watch")
