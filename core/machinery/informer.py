"""Informers, as client-go's: a local, indexed cache of one kind, kept current by list + watch.

An `Informer` lists its kind, then watches from the list's resourceVersion
(through the client's `watch_once`, so it works over gRPC or in-process) and
applies every event to a cache keyed by `namespace/name` (just `name` for
cluster-scoped kinds). When the stream drops it resumes from the last version
it applied; when that version has been compacted (ExpiredError) it lists
again and turns the difference between the cache and the new list into
add/update/delete notifications, so handlers never miss a final state.

Handlers are plain functions called synchronously, in event order, with the
cached objects. They must be quick (put a key into a work queue) and must not
mutate what they are given: the cache shares those objects with every other
reader. Copy an object before changing it.

Indexers map an object to index values (pods by `spec.nodeName`, by owner
uid); `by_index()` answers "which pods are on node n1" without a scan.
`InformerFactory` shares one informer per resource among all controllers of
a process, as client-go's SharedInformerFactory.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast, overload

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ApiError, ExpiredError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.channel import RETRYABLE_CODES
from kybernetes.core.machinery.actors import Actor, Supervisor
from kybernetes.core.machinery.backoff import retry_delay
from kybernetes.proto import objects_pb2 as pb

Indexer = Callable[[Any], Iterable[str]]
T = TypeVar("T", bound=ApiObject)



def object_key(obj: ApiObject) -> str:
    """The cache key of an object: `namespace/name`, or `name` for cluster-scoped kinds."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a cache key; namespace is "" for cluster-scoped kinds."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


def by_namespace(obj: ApiObject) -> list[str]:
    """Indexer: the object's namespace."""
    return [obj.metadata.namespace]


def by_owner_uid(obj: ApiObject) -> list[str]:
    """Indexer: the uids of every owner in the object's ownerReferences."""
    return [ref.uid for ref in obj.metadata.owner_references]


def by_controller_uid(obj: ApiObject) -> list[str]:
    """Indexer: the uid of the object's controlling owner (none for orphans)."""
    return [ref.uid for ref in obj.metadata.owner_references if ref.controller]


def by_node_name(obj: pb.Pod) -> list[str]:
    """Indexer: the node a pod is bound to (unbound pods are not indexed)."""
    node = obj.spec.node_name
    return [node] if node else []


@dataclass(frozen=True, slots=True)
class Handler:
    """Callbacks for cache changes; any of them may be None."""

    on_add: Callable[[Any], None] | None = None
    on_update: Callable[[Any, Any], None] | None = None
    on_delete: Callable[[Any], None] | None = None


class Informer(Actor, Generic[T]):
    """A list+watch cache of one resource with indexers and event handlers."""

    def __init__(self, *, client: ObjectClient, resource: str, namespace: str = "", label_selector: str = "",
                 field_selector: str = "", indexers: dict[str, Indexer] | None = None,
                 name: str | None = None, max_backoff: float = 2.0) -> None:
        super().__init__(name=name or f"informer-{resource}")
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.max_backoff = max_backoff
        self.resource_version = ""
        self._items: dict[str, T] = {}
        self._indexers: dict[str, Indexer] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._indexed: dict[str, dict[str, tuple[str, ...]]] = {}  # index -> key -> values, for removal
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        for index_name, fn in (indexers or {}).items():
            self.add_indexer(index_name, fn)

    # ------------------------------------------------------------ configuring

    def add_indexer(self, index_name: str, fn: Indexer) -> None:
        """Add an index; objects already cached are indexed at once."""
        if index_name in self._indexers:
            return
        self._indexers[index_name] = fn
        self._indices[index_name] = {}
        self._indexed[index_name] = {}
        for key, obj in self._items.items():
            self._index_one(index_name, key, obj)

    def add_handler(self, *, on_add: Callable[[T], None] | None = None,
                    on_update: Callable[[T, T], None] | None = None,
                    on_delete: Callable[[T], None] | None = None) -> Handler:
        """Register callbacks; a handler added after the first sync gets on_add for every cached object."""
        handler = Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in list(self._items.values()):
                self._call(on_add, obj)
        return handler

    def remove_handler(self, handler: Handler) -> None:
        """Stop calling a handler (its owner stopped); unknown handlers are ignored."""
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    # ---------------------------------------------------------------- reading

    @property
    def has_synced(self) -> bool:
        """Whether the first list has been applied."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait for the first list (TimeoutError after `timeout`)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def get(self, key: str) -> T | None:
        """The cached object with this key, or None."""
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str = "") -> T | None:
        """The cached object `namespace/name` (or `name` for cluster-scoped kinds)."""
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[T]:
        """Every cached object."""
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def index_keys(self, index_name: str, value: str) -> set[str]:
        """Keys of the objects whose `index_name` values include `value` (a copy)."""
        return set(self._indices[index_name].get(value, ()))

    def by_index(self, index_name: str, value: str) -> builtins.list[T]:
        """Objects whose `index_name` values include `value`."""
        items = self._items
        return [items[key] for key in self._indices[index_name].get(value, ()) if key in items]

    def items_by_index(self, index_name: str, value: str) -> builtins.list[tuple[str, T]]:
        """(key, object) pairs whose `index_name` values include `value`."""
        items = self._items
        return [(key, items[key]) for key in self._indices[index_name].get(value, ()) if key in items]

    def index_count(self, index_name: str, value: str) -> int:
        """How many objects `index_name` holds under `value` (without building the list)."""
        return len(self._indices[index_name].get(value, ()))

    def index_values(self, index_name: str) -> builtins.list[str]:
        """Every value that currently has objects in the index."""
        return [value for value, keys in self._indices[index_name].items() if keys]

    # ------------------------------------------------------------------ cache

    def _index_one(self, index_name: str, key: str, obj: ApiObject) -> None:
        values = tuple(self._indexers[index_name](obj))
        index = self._indices[index_name]
        for value in values:
            index.setdefault(value, set()).add(key)
        if values:
            self._indexed[index_name][key] = values

    def _unindex_one(self, index_name: str, key: str) -> None:
        values = self._indexed[index_name].pop(key, ())
        index = self._indices[index_name]
        for value in values:
            keys = index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[value]

    def _store(self, key: str, obj: T) -> T | None:
        old = self._items.get(key)
        self._items[key] = obj
        for index_name in self._indexers:
            if old is not None:
                self._unindex_one(index_name, key)
            self._index_one(index_name, key, obj)
        return old

    def _remove(self, key: str) -> T | None:
        old = self._items.pop(key, None)
        if old is not None:
            for index_name in self._indexers:
                self._unindex_one(index_name, key)
        return old

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a broken handler must not stop the informer or other handlers
            self.log.exception("event handler failed", resource=self.resource)

    def _notify_add(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _notify_update(self, old: T, new: T) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _notify_delete(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def apply(self, etype: str, obj: T) -> None:
        """Apply one watch event to the cache and notify handlers (public for tests and replays)."""
        key = object_key(obj)
        if etype == "DELETED":
            old = self._remove(key)
            # The event carries the last stored state; a synthetic one (name only) falls back to the cache.
            self._notify_delete(obj if obj.metadata.uid or old is None else old)
            return
        old = self._store(key, obj)
        if old is None:
            self._notify_add(obj)
        else:
            self._notify_update(old, obj)

    def replace(self, items: Iterable[T], resource_version: str) -> None:
        """Make the cache exactly `items` (a fresh list), notifying the difference."""
        fresh = {object_key(obj): obj for obj in items}
        for key in [k for k in self._items if k not in fresh]:
            old = self._remove(key)
            if old is not None:
                self._notify_delete(old)
        for key, obj in fresh.items():
            old = self._items.get(key)
            if old is not None and old.metadata.resource_version == obj.metadata.resource_version:
                continue
            self._store(key, obj)
            if old is None:
                self._notify_add(obj)
            else:
                self._notify_update(old, obj)
        self.resource_version = resource_version
        self._synced.set()

    # ------------------------------------------------------------------- loop

    async def run(self) -> None:
        """List, then watch from there; resume after drops; list again when the version expired."""
        attempt = 0
        need_list = True
        while True:
            try:
                if need_list:
                    listed = await self.client.list(self.resource, namespace=self.namespace,
                                                    label_selector=self.label_selector,
                                                    field_selector=self.field_selector)
                    self.replace(listed.items, listed.resource_version)
                    need_list = False
                    attempt = 0
                async for ev in self.client.watch_once(self.resource, namespace=self.namespace,
                                                       label_selector=self.label_selector,
                                                       field_selector=self.field_selector,
                                                       resource_version=self.resource_version, bookmarks=True):
                    attempt = 0
                    if ev.type != "BOOKMARK":
                        self.apply(ev.type, ev.object)
                    if ev.resource_version:
                        self.resource_version = ev.resource_version
            except ExpiredError:
                self.log.info("watch expired, re-listing", resource=self.resource, version=self.resource_version)
                need_list = True
                continue
            except ApiError as err:
                if err.code not in RETRYABLE_CODES:
                    raise
                self.log.debug("watch interrupted, resuming", resource=self.resource, error=err.message)
            attempt += 1
            await asyncio.sleep(retry_delay(attempt, base=0.05, cap=self.max_backoff))


class InformerFactory:
    """One shared informer per resource for every controller of a process."""

    def __init__(self, *, client: ObjectClient) -> None:
        self.client = client
        self._informers: dict[str, Informer[Any]] = {}
        self._started: set[str] = set()

    @overload
    def informer(self, resource: Literal["pods"]) -> Informer[pb.Pod]: ...
    @overload
    def informer(self, resource: Literal["nodes"]) -> Informer[pb.Node]: ...
    @overload
    def informer(self, resource: Literal["replicasets"]) -> Informer[pb.ReplicaSet]: ...
    @overload
    def informer(self, resource: Literal["deployments"]) -> Informer[pb.Deployment]: ...
    @overload
    def informer(self, resource: Literal["services"]) -> Informer[pb.Service]: ...
    @overload
    def informer(self, resource: Literal["endpoints"]) -> Informer[pb.Endpoints]: ...
    @overload
    def informer(self, resource: Literal["events"]) -> Informer[pb.Event]: ...
    @overload
    def informer(self, resource: Literal["roles"]) -> Informer[pb.Role]: ...
    @overload
    def informer(self, resource: Literal["clusterroles"]) -> Informer[pb.ClusterRole]: ...
    @overload
    def informer(self, resource: Literal["rolebindings"]) -> Informer[pb.RoleBinding]: ...
    @overload
    def informer(self, resource: Literal["clusterrolebindings"]) -> Informer[pb.ClusterRoleBinding]: ...
    @overload
    def informer(self, resource: str) -> Informer[Any]: ...
    def informer(self, resource: str) -> Informer[Any]:
        """The shared informer of `resource` (created on first request, started by `start()`)."""
        informer = self._informers.get(resource)
        if informer is None:
            informer = Informer(client=self.client, resource=resource)
            self._informers[resource] = informer
        return informer

    def scoped(self) -> ScopedInformers:
        """A view whose handlers are removed together (`close()`): for loops that stop while the caches go on
        (the control loops of a master that loses its leadership)."""
        return ScopedInformers(self)

    def start(self, supervisor: Supervisor) -> None:
        """Start every informer not yet running as a supervised actor."""
        for resource, informer in self._informers.items():
            if resource not in self._started:
                supervisor.start(informer)
                self._started.add(resource)

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until every informer has applied its first list."""
        await asyncio.wait_for(asyncio.gather(*(i.wait_synced() for i in self._informers.values())), timeout)

    def all(self) -> list[Informer]:
        return list(self._informers.values())


class _ScopedInformer:
    """An Informer seen through a ScopedInformers: add_handler is recorded, everything else passes through."""

    def __init__(self, informer: Informer[Any], added: list[tuple[Informer[Any], Handler]]) -> None:
        self._informer = informer
        self._added = added

    def add_handler(self, **callbacks: Any) -> Handler:
        handler = self._informer.add_handler(**callbacks)
        self._added.append((self._informer, handler))
        return handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._informer, name)


class ScopedInformers(InformerFactory):
    """The shared informers of a factory, with every handler added through this view removable at once.

    The caches (and their watches) belong to the factory and keep running; `start` starts informers under
    the supervisor the factory's owner gave (`keep_under`), never under the scope's own.
    """

    def __init__(self, factory: InformerFactory) -> None:  # noqa: D107 - shares the factory's state
        self._factory = factory
        self._added: list[tuple[Informer[Any], Handler]] = []
        self.keep_under: Supervisor | None = None
        self.client = factory.client

    def informer(self, resource: str) -> Informer[Any]:
        return cast(Informer[Any], _ScopedInformer(self._factory.informer(resource), self._added))

    def start(self, supervisor: Supervisor) -> None:
        self._factory.start(self.keep_under or supervisor)

    async def wait_synced(self, timeout: float | None = None) -> None:
        await self._factory.wait_synced(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)

    def close(self) -> None:
        """Remove every handler added through this view."""
        for informer, handler in self._added:
            informer.remove_handler(handler)
        self._added.clear()
