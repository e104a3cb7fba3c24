"""The Kybernetes Python client: typed asyncio calls to the master's object API.

    async with Client() as kyb:                      # the current context of $KYBCONFIG or ~/.kyb/config
        pods = await kyb.list("pods", namespace="default", label_selector="app=web")

    async with Client(kubeconfig="/var/lib/kybernetes/admin.conf") as kyb: ...
    async with Client("10.0.0.5:6443", credentials=Credentials(ca=..., certificate=..., key=...)) as kyb:
        async for event in kyb.watch("pods", resource_version=pods.resource_version):
            print(event.type, event.object.metadata.name)

Every connection is mutual TLS with the credentials of a kubeconfig context (core.identity.kubeconfig) or
given directly; `server` overrides the context's address.

Errors are `ApiError` subclasses named after Kubernetes' reasons (NotFound,
AlreadyExists, Conflict, Invalid, ServiceUnavailable, Expired). `watch()`
never ends by itself: it resumes from the last version it delivered after a
dropped connection, and when that version has been compacted it re-lists and
sends the difference as events, so a consumer sees every change at least in
its final state and never the same revision twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from kybernetes.core.api import kinds
from kybernetes.core.api.client import DeleteResult, ListResult, WatchEvent, resilient_watch
from kybernetes.core.api.errors import error_from_rpc
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.channel import CHANNEL_OPTIONS
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.core.identity.kubeconfig import default_path, resolve
from kybernetes.proto import api_pb2, api_pb2_grpc


class Client:
    """An asyncio client of one master."""

    def __init__(self, server: str | None = None, *, credentials: Credentials | None = None,
                 kubeconfig: str | Path | None = None, context: str = "", timeout: float = 10.0) -> None:
        """Without `credentials`, read them (and the server, unless given) from a kubeconfig context:
        `kubeconfig`, else $KYBCONFIG, else ~/.kyb/config (KubeConfigError when it can't be read)."""
        self.namespace = ""
        if credentials is None:
            target = resolve(Path(kubeconfig).expanduser() if kubeconfig else default_path(), context=context)
            credentials, server = target.credentials, server or target.server
            self.namespace = target.namespace
        if not server:
            raise ValueError("server: Required value (with credentials given directly)")
        self.server = server
        self.credentials = credentials
        self.timeout = timeout
        self.channel = secure_channel(server, credentials, options=CHANNEL_OPTIONS)
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

    async def create(self, obj: Message | ApiObject) -> Any:
        """Create an object; returns it as stored (uid, resourceVersion, defaults)."""
        out = await self._call(self._stub.Create, api_pb2.CreateRequest(object=kinds.wrap(obj)))
        return kinds.unwrap(out)

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Any:
        """One object by name."""
        out = await self._call(self._stub.Get, api_pb2.GetRequest(resource=resource, name=name,
                                                                  namespace=namespace))
        return kinds.unwrap(out)

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "") -> ListResult:
        """Objects of a kind: in one namespace, or all when namespace is empty. With `limit`, one page of at most
        that many; the result's continue_token (when set) asks for the next one."""
        out = await self._call(self._stub.List, api_pb2.ListRequest(
            resource=resource, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, limit=limit, continue_token=continue_token))
        return ListResult([kinds.unwrap(o) for o in out.items], out.resource_version, out.continue_token)

    async def list_chunked(self, resource: str, *, namespace: str = "", label_selector: str = "",
                           field_selector: str = "", chunk_size: int = 500) -> ListResult:
        """The whole list, read in pages of `chunk_size` (kubectl's --chunk-size; 0: one request). The pages
        are one consistent list at the first page's resourceVersion."""
        page = await self.list(resource, namespace=namespace, label_selector=label_selector,
                               field_selector=field_selector, limit=chunk_size)
        items, rv = list(page.items), page.resource_version
        while page.continue_token:
            page = await self.list(resource, namespace=namespace, label_selector=label_selector,
                                   field_selector=field_selector, limit=chunk_size,
                                   continue_token=page.continue_token)
            items.extend(page.items)
        return ListResult(items, rv)

    async def update(self, obj: Message | ApiObject) -> Any:
        """Replace metadata and spec; obj.metadata.resource_version is the precondition."""
        out = await self._call(self._stub.Update, api_pb2.UpdateRequest(object=kinds.wrap(obj)))
        return kinds.unwrap(out)

    async def update_status(self, obj: Message | ApiObject) -> Any:
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
