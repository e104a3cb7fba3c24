"""The scheduling queue: pending pods waiting for a decision, with back-off and an unschedulable pool.

- New or changed pending pods go to the active queue (a `WorkQueue`, so a pod is
  queued once and never decided on twice at the same time).
- A pod that fits nowhere waits in the unschedulable pool until the cluster
  changes in a way that may help (a Node added or changed, a bound pod deleted
  or finished); then every pod in the pool goes back, each after its own
  exponential back-off. Pods also leave the pool after `flush_after` seconds,
  in case an event that would have helped was missed.
- A cluster change that happens while a pod is being decided on is not lost:
  such a pod goes back with back-off instead of into the pool (Kubernetes'
  moveRequestCycle).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kybernetes.core.machinery.workqueue import WorkQueue


class SchedulingQueue:
    """Active queue + unschedulable pool with per-pod back-off."""

    def __init__(self, *, initial_backoff: float = 0.5, max_backoff: float = 5.0, flush_after: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.active: WorkQueue[str] = WorkQueue(name="scheduler")
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.flush_after = flush_after
        self._clock = clock
        self._attempts: dict[str, int] = {}
        self._last_attempt: dict[str, float] = {}
        self._unschedulable: dict[str, float] = {}
        self._move_cycle = 0
        self._popped_cycle: dict[str, int] = {}

    def add(self, key: str) -> None:
        """A new or changed pending pod: straight to the active queue."""
        self._unschedulable.pop(key, None)
        self.active.add(key)

    def delete(self, key: str) -> None:
        """The pod is gone or bound: forget its back-off."""
        self._unschedulable.pop(key, None)
        self._attempts.pop(key, None)
        self._last_attempt.pop(key, None)

    def backoff_remaining(self, key: str) -> float:
        attempts = self._attempts.get(key, 0)
        if attempts == 0:
            return 0.0
        duration = min(self.max_backoff, self.initial_backoff * 2 ** (attempts - 1))
        return max(0.0, self._last_attempt.get(key, 0.0) + duration - self._clock())

    def requeue_with_backoff(self, key: str) -> None:
        self._unschedulable.pop(key, None)
        self.active.add_after(key, self.backoff_remaining(key))

    async def pop(self) -> str:
        """The next pod to decide on; call `done(key)` after."""
        key = await self.active.get()
        self._popped_cycle[key] = self._move_cycle
        return key

    def done(self, key: str) -> None:
        self._popped_cycle.pop(key, None)
        self.active.done(key)

    def mark_unschedulable(self, key: str) -> None:
        """The pod fits nowhere now: into the pool (or back with back-off if the cluster changed meanwhile)."""
        self._attempts[key] = self._attempts.get(key, 0) + 1
        self._last_attempt[key] = self._clock()
        if self._popped_cycle.get(key, self._move_cycle) < self._move_cycle:
            self.requeue_with_backoff(key)
        else:
            self._unschedulable[key] = self._clock()

    def mark_failed(self, key: str) -> None:
        """The decision could not be carried out (bind error): retry after back-off."""
        self._attempts[key] = self._attempts.get(key, 0) + 1
        self._last_attempt[key] = self._clock()
        self.requeue_with_backoff(key)

    def move_all_to_active(self) -> None:
        """The cluster changed in a way that may help: every unschedulable pod is tried again."""
        self._move_cycle += 1
        for key in list(self._unschedulable):
            self.requeue_with_backoff(key)

    def flush_unschedulable(self) -> None:
        """Retry pods that have waited in the pool for longer than `flush_after`."""
        now = self._clock()
        for key, since in list(self._unschedulable.items()):
            if now - since >= self.flush_after:
                self.requeue_with_backoff(key)

    def is_unschedulable(self, key: str) -> bool:
        return key in self._unschedulable

    def __len__(self) -> int:
        return len(self.active)
