"""What every queue-driven controller shares: an actor with a keyed work queue, workers and shared caches.

`run()` waits for the informers it reads to sync, puts every key of its
primary kind into the queue (level-triggered: a restarted controller looks at
everything once) and runs the workers. When the supervisor restarts a crashed
controller, the queue and caches survive, and the full re-enqueue repairs
anything the crash interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

from kybernetes.core.api.errors import ConflictError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.machinery.actors import Actor
from kybernetes.core.machinery.informer import Informer, object_key
from kybernetes.core.machinery.workqueue import ExponentialBackoff, WorkQueue, run_workers


class QueueController(Actor):
    """Base class: subclasses set `primary`, `waits_for` and implement `sync(key)`."""

    def __init__(self, *, name: str, primary: Informer, waits_for: Sequence[Informer], workers: int) -> None:
        super().__init__(name=name)
        self.primary = primary
        self.waits_for = list(waits_for)
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue(name=name,
                                               rate_limiter=ExponentialBackoff(base_delay=0.005, max_delay=30.0))

    def enqueue(self, obj: ApiObject) -> None:
        self.queue.add(object_key(obj))

    async def sync(self, key: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run(self) -> None:
        for informer in {id(i): i for i in [self.primary, *self.waits_for]}.values():
            await informer.wait_synced()
        for key in self.primary.keys():
            self.queue.add(key)
        self.log.info("started", workers=self.workers)
        await run_workers(self.queue, self.sync, workers=self.workers, name=self.name, quiet=(ConflictError,))
