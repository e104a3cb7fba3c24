"""A work queue keyed by object, as client-go's rate-limited delaying queue.

Controllers never act on events directly: an event handler only puts the key
of the object that needs attention ("default/web") into the queue, and workers
take keys out and reconcile the object from the informer's cache. This gives
three guarantees that make level-triggered reconciliation correct and cheap:

- a key waiting in the queue is there once, however many events arrive
  (ten pod updates for one ReplicaSet cause one sync);
- a key is never processed by two workers at once: a key added while it is
  being processed is marked dirty and queued again when the worker is done;
- a failed key is retried after a per-key exponential back-off, reset by
  `forget()` once it succeeds, so one broken object never spins a loop.

`add_after()` schedules a key for later (minReadySeconds, progress deadlines,
toleration timeouts); if the key is already scheduled the earlier time wins.
`run_workers()` runs N workers so different keys proceed in parallel.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from kybernetes.core.log import get_logger
from kybernetes.core.machinery.backoff import exponential

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down: `get()` has nothing more to give."""


class ExponentialBackoff(Generic[K]):
    """Per-key exponential back-off: base, 2·base, 4·base, … up to max_delay."""

    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 30.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """The delay before the next retry of `key`, counting this failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return exponential(failures, base=self.base_delay, cap=self.max_delay)

    def forget(self, key: K) -> None:
        """`key` succeeded: its next failure starts from the base delay again."""
        self._failures.pop(key, None)

    def retries(self, key: K) -> int:
        """How many times `key` has failed in a row."""
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """Deduplicating FIFO of keys with per-key exclusivity, delays and rate-limited retries."""

    def __init__(self, *, name: str = "queue", rate_limiter: ExponentialBackoff[K] | None = None) -> None:
        self.name = name
        self.rate_limiter: ExponentialBackoff[K] = rate_limiter or ExponentialBackoff()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # queued, or added again while processing
        self._processing: set[K] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False

    # ------------------------------------------------------------------ adding

    def add(self, key: K) -> None:
        """Queue `key` unless it is already waiting; a key being processed is queued again when done."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending schedule of the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= at:
                return
            pending[1].cancel()
        self._delayed[key] = (at, loop.call_at(at, self._fire, key))

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` after its back-off (a retry after a failure)."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """Reset `key`'s back-off (it was processed successfully)."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """Failures of `key` since it last succeeded."""
        return self.rate_limiter.retries(key)

    # ---------------------------------------------------------------- taking

    async def get(self) -> K:
        """The next key; the caller must call `done(key)` when finished with it. Raises ShutDown."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # If we were woken and cancelled at once, pass the wake-up on so no key is stranded.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        """Processing of `key` finished; if it was added meanwhile it is queued again now."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -------------------------------------------------------------- lifecycle

    def shutdown(self) -> None:
        """Stop accepting keys and wake every waiting `get()` (which raise ShutDown once the queue drains)."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._queue)

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def is_waiting(self, key: K) -> bool:
        """Whether `key` is queued now or scheduled for later."""
        return key in self._dirty or key in self._delayed


async def run_workers(queue: WorkQueue[K], handler: Callable[[K], Awaitable[Any]], *, workers: int,
                      name: str = "", quiet: tuple[type[BaseException], ...] = ()) -> None:
    """Run `workers` workers that call `handler(key)` until cancelled (or the queue shuts down).

    A handler that raises has its key retried after the key's back-off; a
    handler that returns resets the back-off. Exceptions of the `quiet` types
    (conflicts, say) are expected and logged without a traceback.
    """
    log = get_logger(name or queue.name)

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await handler(key)
            except asyncio.CancelledError:
                raise
            except quiet as err:
                log.debug("retrying", key=str(key), error=str(err), retries=queue.num_requeues(key))
                queue.add_rate_limited(key)
            except Exception:
                log.exception("sync failed, retrying", key=str(key), retries=queue.num_requeues(key))
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    tasks = [asyncio.create_task(worker(), name=f"{name or queue.name}-worker-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
