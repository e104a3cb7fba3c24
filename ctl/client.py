"""The Kybernetes Python client: typed asyncio calls to the master's object API.

    async with Client("127.0.0.1:6443") as kyb:
        pods = await kyb.list("pods", namespace="default", label_selector="app=web")
        async for event in kyb.watch("pods", resource_version=pods.resource_version):
            print(event.type, event.object.metadata.name)

Errors are `ApiError` subclasses named after Kubernetes' reasons (NotFound,
AlreadyExists, Conflict, Invalid, ServiceUnavailable, Expired). `watch()`
never ends by itself: it resumes from the last version it delivered after a
dropped connection, and when that version has been compacted it re-lists and
sends the difference as events, so a consumer sees every change at least in
its final state and never the same revision twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from ctl.api import kinds
from proto import api_pb2, api_pb2_grpc


class ApiError(Exception):
    """An error answered by the API (or the absence of one)."""

    reason = "InternalError"
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFoundError(ApiError):
    reason, code = "NotFound", grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ApiError):
    reason, code = "AlreadyExists", grpc.StatusCode.ALREADY_EXISTS


class ConflictError(ApiError):
    reason, code = "Conflict", grpc.StatusCode.ABORTED


class InvalidError(ApiError):
    reason, code = "Invalid", grpc.StatusCode.INVALID_ARGUMENT


class UnavailableError(ApiError):
    reason, code = "ServiceUnavailable", grpc.StatusCode.UNAVAILABLE


class ExpiredError(ApiError):
    """A watch's resourceVersion has been compacted: re-list."""

    reason, code = "Expired", grpc.StatusCode.OUT_OF_RANGE


_BY_CODE: dict[grpc.StatusCode, type[ApiError]] = {
    c.code: c for c in (NotFoundError, AlreadyExistsError, ConflictError, InvalidError, UnavailableError,
                        ExpiredError)
}
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = UnavailableError


def error_from_rpc(err: grpc.RpcError) -> ApiError:
    """Our error type for a gRPC error."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, ApiError)
    return cls(details or code.name, code=code)


@dataclass(frozen=True, slots=True)
class ListResult:
    """A list's items and its resourceVersion (where a watch should start)."""

    items: list[Any]
    resource_version: str


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """The deleted object's last state; `deleted` is False while it is only terminating."""

    object: Any
    deleted: bool


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """ADDED, MODIFIED, DELETED (with the object) or BOOKMARK (object None)."""

    type: str
    object: Any
    resource_version: str


# No min_reconnect_backoff here: gRPC also uses it as the connect timeout, and a short one makes a
# new channel to a busy master fail with UNAVAILABLE before the handshake completes.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]

_RETRYABLE_WATCH = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}


class Client:
    """An asyncio client of one master."""

    def __init__(self, server: str = "127.0.0.1:6443", *, timeout: float = 10.0) -> None:
        self.server = server
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(server, options=CHANNEL_OPTIONS)
        self._stub = api_pb2_grpc.ObjectAPIStub(self.channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; open watches end."""
        await self.channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    # ------------------------------------------------------------- the calls

    async def create(self, obj: Message) -> Any:
        """Create an object; returns it as stored (uid, resourceVersion, defaults)."""
        out = await self._call(self._stub.Create, api_pb2.CreateRequest(object=kinds.wrap(obj)))
        return kinds.unwrap(out)

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Any:
        """One object by name."""
        out = await self._call(self._stub.Get, api_pb2.GetRequest(resource=resource, name=name,
                                                                  namespace=namespace))
        return kinds.unwrap(out)

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> ListResult:
        """Objects of a kind: in one namespace, or all when namespace is empty."""
        out = await self._call(self._stub.List, api_pb2.ListRequest(
            resource=resource, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector))
        return ListResult([kinds.unwrap(o) for o in out.items], out.resource_version)

    async def update(self, obj: Message) -> Any:
        """Replace metadata and spec; obj.metadata.resource_version is the precondition."""
        out = await self._call(self._stub.Update, api_pb2.UpdateRequest(object=kinds.wrap(obj)))
        return kinds.unwrap(out)

    async def update_status(self, obj: Message) -> Any:
        """Replace status only; obj.metadata.resource_version is the precondition."""
        out = await self._call(self._stub.UpdateStatus, api_pb2.UpdateRequest(object=kinds.wrap(obj)))
        return kinds.unwrap(out)

    async def delete(self, resource: str, name: str, *, namespace: str = "default", resource_version: str = "",
                     unconditional: bool = False, propagation_policy: str = "",
                     grace_period_seconds: int | None = None) -> DeleteResult:
        """Delete at the version read (or unconditionally, when asked explicitly)."""
        req = api_pb2.DeleteRequest(resource=resource, name=name, namespace=namespace,
                                    resource_version=resource_version, unconditional=unconditional,
                                    propagation_policy=propagation_policy)
        if grace_period_seconds is not None:
            req.grace_period_seconds = grace_period_seconds
        out = await self._call(self._stub.Delete, req)
        return DeleteResult(kinds.unwrap(out.object), out.deleted)

    # ----------------------------------------------------------------- watch

    async def watch_once(self, resource: str, *, namespace: str = "", label_selector: str = "",
                         field_selector: str = "", resource_version: str = "",
                         bookmarks: bool = True) -> AsyncIterator[WatchEvent]:
        """One watch stream, exactly as the server sends it; ends or raises when the stream does."""
        call = self._stub.Watch(api_pb2.WatchRequest(
            resource=resource, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, resource_version=resource_version, allow_bookmarks=bookmarks))
        try:
            async for ev in call:
                obj = kinds.unwrap(ev.object) if ev.object.WhichOneof("kind") else None
                yield WatchEvent(ev.type, obj, ev.resource_version)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        finally:
            call.cancel()

    async def watch(self, resource: str, *, namespace: str = "", label_selector: str = "",
                    field_selector: str = "", resource_version: str = "",
                    max_backoff: float = 2.0) -> AsyncIterator[WatchEvent]:
        """A watch that never ends: it resumes after disconnects and re-lists when its version is compacted.

        BOOKMARK events are consumed here, not yielded.
        """
        async for ev in resilient_watch(self, resource, namespace=namespace, label_selector=label_selector,
                                        field_selector=field_selector, resource_version=resource_version,
                                        max_backoff=max_backoff):
            yield ev


async def resilient_watch(source: Any, resource: str, *, namespace: str = "", label_selector: str = "",
                          field_selector: str = "", resource_version: str = "",
                          max_backoff: float = 2.0) -> AsyncIterator[WatchEvent]:
    """The never-ending watch over any client with `watch_once` and `list` (remote or in-process)."""
    rv = resource_version
    # Until the initial list's BOOKMARK arrives, a reconnect starts the initial list again
    # (skipping what was already delivered) rather than resuming from a half-sent list.
    synced = bool(resource_version)
    known: dict[tuple[str, str], str] = {}
    attempt = 0
    while True:
        try:
            async for ev in source.watch_once(resource, namespace=namespace, label_selector=label_selector,
                                              field_selector=field_selector,
                                              resource_version=rv if synced else ""):
                attempt = 0
                if ev.type == "BOOKMARK":
                    rv, synced = ev.resource_version, True
                    continue
                key = (ev.object.metadata.namespace, ev.object.metadata.name)
                if not synced and known.get(key) == ev.object.metadata.resource_version:
                    continue
                rv = ev.resource_version or rv
                if ev.type == "DELETED":
                    known.pop(key, None)
                else:
                    known[key] = ev.object.metadata.resource_version
                yield ev
        except ExpiredError:
            listed = await _list_retrying(source, resource, namespace, label_selector, field_selector)
            current = {(o.metadata.namespace, o.metadata.name): o for o in listed.items}
            for key in [k for k in known if k not in current]:
                gone = kinds.lookup(resource).message()
                gone.metadata.namespace, gone.metadata.name = key
                gone.metadata.resource_version = listed.resource_version
                known.pop(key)
                yield WatchEvent("DELETED", gone, listed.resource_version)
            for key, obj in current.items():
                if known.get(key) != obj.metadata.resource_version:
                    etype = "MODIFIED" if key in known else "ADDED"
                    known[key] = obj.metadata.resource_version
                    yield WatchEvent(etype, obj, obj.metadata.resource_version)
            rv, synced = listed.resource_version, True
            continue
        except ApiError as err:
            if err.code not in _RETRYABLE_WATCH:
                raise
        attempt += 1
        await asyncio.sleep(min(max_backoff, 0.05 * 2 ** min(attempt, 8)) * (0.5 + random.random() / 2))


async def _list_retrying(source: Any, resource: str, namespace: str, label_selector: str,
                         field_selector: str) -> ListResult:
    attempt = 0
    while True:
        try:
            return await source.list(resource, namespace=namespace, label_selector=label_selector,
                                     field_selector=field_selector)
        except UnavailableError:
            attempt += 1
            await asyncio.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)))
