"""Adoption and release, as Kubernetes' ControllerRefManager.

An owner (ReplicaSet, Deployment) *claims* the candidates it could own:
- an object whose controller reference names the owner stays owned while the
  owner's selector matches it, and is released (the reference removed) when
  its labels stop matching;
- an orphan (no controller reference) that matches is adopted, by adding a
  controller reference, but only after a fresh read confirms that the owner
  still exists with the same uid and is not being deleted: the cache may be
  stale, and adopting into a dying owner would get the object collected;
- an object controlled by someone else is never touched.
Both writes are optimistic updates at the version read; a conflict propagates
so the caller's sync is retried from fresh caches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import NotFoundError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.api.objects import controller_of, controller_ref, copy_of, is_terminating
from kybernetes.core.api.selectors import LabelSelector


def owner_checker(client: ObjectClient, *, resource: str, owner: ApiObject) -> Callable[[], Awaitable[bool]]:
    """A once-per-sync check that `owner` still exists with its uid and is not being deleted."""
    verdict: list[bool] = []

    async def can_adopt() -> bool:
        if not verdict:
            try:
                fresh = await client.get(resource, owner.metadata.name, namespace=owner.metadata.namespace)
                verdict.append(fresh.metadata.uid == owner.metadata.uid and not is_terminating(fresh))
            except NotFoundError:
                verdict.append(False)
        return verdict[0]

    return can_adopt


async def claim(*, client: ObjectClient, owner: ApiObject, owner_kind: str, selector: LabelSelector,
                candidates: Iterable[Any],
                can_adopt: Callable[[], Awaitable[bool]]) -> list[Any]:
    """The candidates `owner` controls after adopting matching orphans and releasing non-matching ones."""
    owned: list[Any] = []
    owner_uid = owner.metadata.uid
    owner_dying = is_terminating(owner)
    for obj in candidates:
        ref = controller_of(obj)
        matches = selector.matches(obj.metadata.labels)
        if ref is not None:
            if ref.uid != owner_uid:
                continue
            if matches:
                owned.append(obj)
            elif not owner_dying:
                await _release(client, obj, owner_uid)
            continue
        if owner_dying or not matches or is_terminating(obj) or obj.metadata.namespace != owner.metadata.namespace:
            continue
        if not await can_adopt():
            continue
        adopted = await _adopt(client, obj, owner, owner_kind)
        if adopted is not None:
            owned.append(adopted)
    return owned


async def _adopt(client: ObjectClient, obj: ApiObject, owner: ApiObject, owner_kind: str) -> Any | None:
    new = copy_of(obj)
    new.metadata.owner_references.append(controller_ref(owner, owner_kind))
    try:
        return await client.update(new)
    except NotFoundError:
        return None


async def _release(client: ObjectClient, obj: ApiObject, owner_uid: str) -> None:
    new = copy_of(obj)
    refs = [r for r in new.metadata.owner_references if r.uid != owner_uid]
    del new.metadata.owner_references[:]
    new.metadata.owner_references.extend(refs)
    try:
        await client.update(new)
    except NotFoundError:
        pass
