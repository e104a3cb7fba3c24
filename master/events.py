"""Events: what the scheduler, the controllers and the kubelets report about objects, counted like Kubernetes.

`EventRecorder.record(pod, type="Normal", reason="Scheduled", message=...)`
writes an Event about `pod`. A repeat of the same event (same involved
object, type, reason, message and source) does not create a new object: the
stored one gets count+1 and a new lastTimestamp, as Kubernetes' event
correlator does, so a pod failing to schedule every few seconds shows
"(x12 over 1m)" instead of twelve Events. The correlation cache is in memory
and bounded (LRU); after a master restart the first repeat starts a new Event.

Event names are `<involved-name>.<hex nanoseconds>` as in Kubernetes; they live
in the involved object's namespace ("default" for cluster-scoped objects such
as Nodes) and expire after an hour through the etcd lease the API attaches.

Recording never raises into the caller: an event is diagnostic, and a failure
to write one (etcd briefly away, say) must not fail a scheduling decision or a
sync. Failures are logged. `record_nowait()` fires and forgets, for hot paths
that must not wait for the write.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.core.api import kinds
from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from kybernetes.core.log import get_logger
from kybernetes.proto import objects_pb2 as pb

log = get_logger("events")

_CorrelationKey = tuple[str, str, str, str, str, str, str, str, str]


def reference_to(obj: Message) -> pb.ObjectReference:
    """An ObjectReference to a concrete object (pb.Pod, pb.Node, …)."""
    kind = kinds.kind_of(obj)
    meta = obj.metadata  # type: ignore[attr-defined]
    return pb.ObjectReference(kind=kind.kind, api_version=kind.api_version, namespace=meta.namespace,
                              name=meta.name, uid=meta.uid, resource_version=meta.resource_version)


def _timestamp(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds))


class EventRecorder:
    """Writes Events for one component (and host), counting repeats instead of duplicating them."""

    def __init__(self, *, client: ObjectClient, component: str, host: str = "", cache_size: int = 4096,
                 concurrency: int = 64, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[_CorrelationKey, pb.Event] = OrderedDict()
        self._locks: dict[_CorrelationKey, asyncio.Lock] = {}
        self._pending: set[asyncio.Task[None]] = set()
        # Events are diagnostics: a burst (a thousand pods scheduled) must not crowd out real work.
        self._slots = asyncio.Semaphore(concurrency)

    async def record(self, obj_or_ref: Message, *, type: str, reason: str, message: str) -> None:
        """Record an event about an object (or an ObjectReference); never raises."""
        try:
            ref = obj_or_ref if isinstance(obj_or_ref, pb.ObjectReference) else reference_to(obj_or_ref)
            event = pb.Event(involved_object=ref, type=type, reason=reason, message=message,
                             source=pb.EventSource(component=self.component, host=self.host), count=1)
        except Exception as err:  # a wrong argument is our bug, but it must not break the caller
            log.warning("cannot build event", reason=reason, error=str(err))
            return
        await self.record_event(event)

    def record_nowait(self, obj_or_ref: Message, *, type: str, reason: str, message: str) -> None:
        """Record in the background (the caller does not wait for the write)."""
        task = asyncio.create_task(self.record(obj_or_ref, type=type, reason=reason, message=message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait for every background write started so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def record_event(self, event: pb.Event) -> None:
        """Record an already built Event (from a kubelet); its source is kept when set. Never raises."""
        try:
            async with self._slots:
                await self._record(event)
        except Exception as err:
            ref = event.involved_object
            log.warning("cannot record event", reason=event.reason, object=f"{ref.kind}/{ref.namespace}/{ref.name}",
                        error=str(err))

    async def _record(self, event: pb.Event) -> None:
        if not event.source.component:
            event.source.component = self.component
            event.source.host = self.host
        ref = event.involved_object
        key: _CorrelationKey = (ref.kind, ref.namespace, ref.name, ref.uid, event.type or "Normal", event.reason,
                                event.message, event.source.component, event.source.host)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        try:
            async with lock:
                previous = self._cache.get(key)
                if previous is not None:
                    updated = await self._bump(previous, max(1, event.count or 1))
                    if updated is not None:
                        self._remember(key, updated)
                        return
                self._remember(key, await self._create(event))
        finally:
            if key not in self._cache and not lock.locked():
                self._locks.pop(key, None)

    async def _bump(self, previous: pb.Event, by: int) -> pb.Event | None:
        """count+by on the stored event; None when it is gone (expired) so a new one is created."""
        current = previous
        for _ in range(3):
            bumped = pb.Event()
            bumped.CopyFrom(current)
            bumped.count = current.count + by
            bumped.last_timestamp.CopyFrom(_timestamp(self._clock()))
            try:
                return await self.client.update(bumped)
            except NotFoundError:
                return None
            except ConflictError:
                try:
                    current = await self.client.get("events", current.metadata.name,
                                                    namespace=current.metadata.namespace)
                except NotFoundError:
                    return None
        raise ApiError(f"event {previous.metadata.name} kept changing under us")

    async def _create(self, event: pb.Event) -> pb.Event:
        now = self._clock()
        new = pb.Event()
        new.CopyFrom(event)
        ref = new.involved_object
        new.metadata.namespace = ref.namespace or "default"
        if not new.HasField("first_timestamp"):
            new.first_timestamp.CopyFrom(_timestamp(now))
        if not new.HasField("last_timestamp"):
            new.last_timestamp.CopyFrom(_timestamp(now))
        new.count = max(1, new.count)
        new.type = new.type or "Normal"
        for attempt in range(5):
            new.metadata.name = f"{ref.name}.{time.time_ns() + attempt:x}"
            try:
                return await self.client.create(new)
            except AlreadyExistsError:
                continue
        raise ApiError(f"no free event name for {ref.name}")

    def _remember(self, key: _CorrelationKey, event: pb.Event) -> None:
        self._cache[key] = event
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            old_key, _ = self._cache.popitem(last=False)
            lock = self._locks.get(old_key)
            if lock is not None and not lock.locked():
                del self._locks[old_key]
