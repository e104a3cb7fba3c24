"""The client contract that the remote `Client` and the master's in-process `LocalClient` both satisfy,
the result types of its calls, and the never-ending watch built on any such client.

`resilient_watch` resumes from the last version it delivered after a dropped stream, and when that version
has been compacted it re-lists and sends the difference as events, so a consumer sees every change at
least in its final state and never the same revision twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from kybernetes.core.api import kinds
from kybernetes.core.api.errors import ApiError, ExpiredError, UnavailableError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.channel import RETRYABLE_CODES
from kybernetes.core.machinery.backoff import exponential, retry_delay


@dataclass(frozen=True, slots=True)
class ListResult:
    """A list's items and its resourceVersion (where a watch should start)."""

    items: list[Any]
    resource_version: str
    # Set when the list was asked for a page (limit) and more items follow: the next page's continue token.
    continue_token: str = ""


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


class ObjectClient(Protocol):
    """The object API's calls, remote (`kybernetes.ctl.client.Client`) or in-process (the master's)."""

    async def create(self, obj: Message | ApiObject) -> Any: ...

    async def get(self, resource: str, name: str, *, namespace: str = "default") -> Any: ...

    async def list(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> ListResult: ...

    async def update(self, obj: Message | ApiObject) -> Any: ...

    async def update_status(self, obj: Message | ApiObject) -> Any: ...

    async def delete(self, resource: str, name: str, *, namespace: str = "default", resource_version: str = "",
                     unconditional: bool = False, propagation_policy: str = "",
                     grace_period_seconds: int | None = None) -> DeleteResult: ...

    def watch_once(self, resource: str, *, namespace: str = "", label_selector: str = "",
                   field_selector: str = "", resource_version: str = "",
                   bookmarks: bool = True) -> AsyncIterator[WatchEvent]: ...

    def watch(self, resource: str, *, namespace: str = "", label_selector: str = "",
              field_selector: str = "", resource_version: str = "",
              max_backoff: float = 2.0) -> AsyncIterator[WatchEvent]: ...


async def resilient_watch(source: ObjectClient, resource: str, *, namespace: str = "", label_selector: str = "",
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
            if err.code not in RETRYABLE_CODES:
                raise
        attempt += 1
        await asyncio.sleep(retry_delay(attempt, base=0.05, cap=max_backoff))


async def _list_retrying(source: ObjectClient, resource: str, namespace: str, label_selector: str,
                         field_selector: str) -> ListResult:
    attempt = 0
    while True:
        try:
            return await source.list(resource, namespace=namespace, label_selector=label_selector,
                                     field_selector=field_selector)
        except UnavailableError:
            attempt += 1
            await asyncio.sleep(exponential(attempt, base=0.05, cap=2.0))
