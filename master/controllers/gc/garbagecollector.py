"""Garbage collection through ownerReferences (Kubernetes' garbage collector, for our kinds).

The collector watches every kind that owns or is owned (Deployments,
ReplicaSets, pods) and keeps a uid -> object map over their caches, which
together form the ownership graph (dependents are found through each cache's
owner-uid index). Work items are objects, keyed `resource|namespace/name`:

- *A dependent* is checked when it appears or an owner of it disappears. An
  owner counts as absent only when a fresh read says so (NotFound, or a new
  object with another uid): the caches of different kinds lag differently. A
  dependent with no live owner left is deleted (background); one with some
  live owners just loses the references to the absent ones. A dependent of an
  owner being deleted in the foreground is deleted in the foreground too.
- *An owner being deleted* with the `orphan` finalizer has the references to
  it removed from all its dependents, then the finalizer removed, so the
  dependents stay (`--cascade=orphan`). With `foregroundDeletion` its
  dependents are deleted first, and the finalizer goes once no dependent with
  blockOwnerDeletion=true is left.
- Background deletion (the default) needs no finalizer: the owner goes at
  once and its dependents follow when their check finds it absent.
"""

from __future__ import annotations

import functools
from typing import Any

from kybernetes.core.api import kinds
from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import ConflictError, NotFoundError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.api.objects import copy_of, is_terminating
from kybernetes.core.machinery.actors import Actor
from kybernetes.core.machinery.informer import Informer, InformerFactory, object_key, split_key
from kybernetes.core.machinery.workqueue import ExponentialBackoff, WorkQueue, run_workers
from kybernetes.master.controllers import indexes
from kybernetes.proto import objects_pb2 as pb

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
MONITORED = ("deployments", "replicasets", "pods")


def _item(resource: str, key: str) -> str:
    return f"{resource}|{key}"


def _parse_item(item: str) -> tuple[str, str]:
    resource, _, key = item.partition("|")
    return resource, key


class GarbageCollector(Actor):
    """Deletes dependents whose owners are gone; honours orphan and foregroundDeletion finalizers."""

    def __init__(self, *, client: ObjectClient, informers: InformerFactory, workers: int = 10,
                 resources: tuple[str, ...] = MONITORED) -> None:
        super().__init__(name="garbage-collector")
        self.client = client
        self.workers = workers
        self.informers: dict[str, Informer] = {r: informers.informer(r) for r in resources}
        self.queue: WorkQueue[str] = WorkQueue(name="garbage-collector",
                                               rate_limiter=ExponentialBackoff(base_delay=0.01, max_delay=30.0))
        self._uids: dict[str, tuple[str, str]] = {}  # uid -> (resource, key)
        for resource, informer in self.informers.items():
            informer.add_indexer(indexes.OWNER, _owner_uids)
            informer.add_handler(on_add=functools.partial(self._seen, resource),
                                 on_update=functools.partial(self._updated, resource),
                                 on_delete=functools.partial(self._gone, resource))

    # ------------------------------------------------------------- handlers

    def _seen(self, resource: str, obj: ApiObject) -> None:
        self._uids[obj.metadata.uid] = (resource, object_key(obj))
        if obj.metadata.owner_references or self._has_gc_finalizer(obj):
            self.queue.add(_item(resource, object_key(obj)))

    def _updated(self, resource: str, old: Any, new: Any) -> None:
        self._uids[new.metadata.uid] = (resource, object_key(new))
        changed_refs = list(old.metadata.owner_references) != list(new.metadata.owner_references)
        started_deleting = is_terminating(new) and not is_terminating(old)
        if self._has_gc_finalizer(new) and (started_deleting or
                                            list(old.metadata.finalizers) != list(new.metadata.finalizers)):
            self.queue.add(_item(resource, object_key(new)))
        elif changed_refs and new.metadata.owner_references:
            self.queue.add(_item(resource, object_key(new)))
        if started_deleting or changed_refs:
            # An owner waiting for its dependents (foreground) may be able to finish now.
            self._enqueue_owners(new)

    def _gone(self, resource: str, obj: ApiObject) -> None:
        uid = obj.metadata.uid
        if self._uids.get(uid, (None, None))[1] == object_key(obj):
            self._uids.pop(uid, None)
        for dependent_resource, dependents in self._dependents(uid):
            for dependent in dependents:
                self.queue.add(_item(dependent_resource, object_key(dependent)))
        self._enqueue_owners(obj)

    def _enqueue_owners(self, obj: ApiObject) -> None:
        for ref in obj.metadata.owner_references:
            found = self._uids.get(ref.uid)
            if found is not None:
                self.queue.add(_item(*found))

    @staticmethod
    def _has_gc_finalizer(obj: ApiObject) -> bool:
        return ORPHAN in obj.metadata.finalizers or FOREGROUND in obj.metadata.finalizers

    def _dependents(self, uid: str) -> list[tuple[str, list[Any]]]:
        return [(resource, informer.by_index(indexes.OWNER, uid)) for resource, informer in self.informers.items()]

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        for informer in self.informers.values():
            await informer.wait_synced()
        for resource, informer in self.informers.items():
            for obj in informer.list():
                if obj.metadata.owner_references or self._has_gc_finalizer(obj):
                    self.queue.add(_item(resource, object_key(obj)))
        self.log.info("started", resources=",".join(self.informers))
        await run_workers(self.queue, self.sync, workers=self.workers, name=self.name, quiet=(ConflictError,))

    async def sync(self, item: str) -> None:
        resource, key = _parse_item(item)
        informer = self.informers.get(resource)
        obj = informer.get(key) if informer is not None else None
        if obj is None:
            return
        if is_terminating(obj):
            if ORPHAN in obj.metadata.finalizers:
                await self._orphan_dependents(resource, obj)
            elif FOREGROUND in obj.metadata.finalizers:
                await self._delete_dependents_first(resource, obj)
            return
        if obj.metadata.owner_references:
            await self._check_owners(resource, obj)

    # -------------------------------------------------------------- owners

    async def _owner_state(self, obj: ApiObject, ref: pb.OwnerReference) -> str:
        """"solid", "absent", or "waiting" (being deleted in the foreground)."""
        kind = kinds.BY_KIND.get(ref.kind)
        if kind is None:
            return "solid"  # not a kind we know: never collect on its account
        namespace = obj.metadata.namespace if kind.namespaced else ""
        cached = self._uids.get(ref.uid)
        owner = None
        if cached is not None:
            informer = self.informers.get(cached[0])
            owner = informer.get(cached[1]) if informer is not None else None
        if owner is None or owner.metadata.uid != ref.uid:
            try:
                owner = await self.client.get(kind.resource, ref.name, namespace=namespace)
            except NotFoundError:
                return "absent"
            if owner.metadata.uid != ref.uid:
                return "absent"
        if is_terminating(owner) and FOREGROUND in owner.metadata.finalizers:
            return "waiting"
        return "solid"

    async def _check_owners(self, resource: str, obj: ApiObject) -> None:
        states = {ref.uid: await self._owner_state(obj, ref) for ref in obj.metadata.owner_references}
        if all(state == "solid" for state in states.values()):
            return
        if any(state == "solid" for state in states.values()):
            # Other owners keep it alive: only drop the references to the absent (or leaving) ones.
            await self._remove_refs(resource, obj, {uid for uid, state in states.items() if state != "solid"})
            return
        policy = "Foreground" if any(state == "waiting" for state in states.values()) else "Background"
        await self._delete(resource, obj, policy)

    async def _delete(self, resource: str, obj: ApiObject, policy: str) -> None:
        namespace, name = split_key(object_key(obj))
        try:
            await self.client.delete(resource, name, namespace=namespace,
                                     resource_version=obj.metadata.resource_version,
                                     propagation_policy=policy if resource != "pods" else "")
        except NotFoundError:
            return
        self.log.info("collected", object=f"{resource}/{object_key(obj)}", propagation=policy)

    async def _remove_refs(self, resource: str, obj: ApiObject, uids: set[str]) -> None:
        new = copy_of(obj)
        keep = [ref for ref in new.metadata.owner_references if ref.uid not in uids]
        del new.metadata.owner_references[:]
        new.metadata.owner_references.extend(keep)
        try:
            await self.client.update(new)
        except NotFoundError:
            pass

    async def _remove_finalizer(self, obj: ApiObject, finalizer: str) -> None:
        new = copy_of(obj)
        keep = [f for f in new.metadata.finalizers if f != finalizer]
        del new.metadata.finalizers[:]
        new.metadata.finalizers.extend(keep)
        try:
            await self.client.update(new)
        except NotFoundError:
            pass

    async def _orphan_dependents(self, resource: str, owner: ApiObject) -> None:
        uid = owner.metadata.uid
        for dependent_resource, dependents in self._dependents(uid):
            for dependent in dependents:
                await self._remove_refs(dependent_resource, dependent, {uid})
        await self._remove_finalizer(owner, ORPHAN)
        self.log.info("orphaned dependents", owner=f"{resource}/{object_key(owner)}")

    async def _delete_dependents_first(self, resource: str, owner: ApiObject) -> None:
        uid = owner.metadata.uid
        blocking = 0
        for dependent_resource, dependents in self._dependents(uid):
            for dependent in dependents:
                ref = next((r for r in dependent.metadata.owner_references if r.uid == uid), None)
                if ref is None:
                    continue
                if ref.block_owner_deletion:
                    blocking += 1
                if not is_terminating(dependent):
                    await self._delete(dependent_resource, dependent, "Foreground")
        if blocking == 0:
            await self._remove_finalizer(owner, FOREGROUND)
            self.log.info("foreground deletion done", owner=f"{resource}/{object_key(owner)}")


def _owner_uids(obj: ApiObject) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references]
