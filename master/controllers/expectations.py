"""Controller expectations: what a controller has asked for and not yet seen in its caches.

A ReplicaSet sync that creates 3 pods must not create 3 more when it runs
again before the informer has delivered those pods (a slow watch). So before
creating, the controller records "expect 3 creations"; every pod ADDED event it
observes lowers the count; while expectations are pending the sync only
updates status. Deletions are tracked by pod key, because a pod being deleted
is observed once it is terminating. Expectations expire after `ttl` so a lost
event can never wedge a controller (Kubernetes uses 5 minutes).

Expectations live in memory only: after a restart there are none, and the
first sync counts what exists, which is exactly right.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Expectation:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    at: float = 0.0


class Expectations:
    """Pending creations (counted) and deletions (by key), per controller key."""

    def __init__(self, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._pending: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        """Whether the controller may act on `key` (nothing pending, or pending for too long)."""
        exp = self._pending.get(key)
        if exp is None:
            return True
        if exp.adds <= 0 and not exp.deletes:
            return True
        return self._clock() - exp.at > self.ttl

    def expect_creations(self, key: str, count: int) -> None:
        self._pending[key] = _Expectation(adds=count, at=self._clock())

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._pending[key] = _Expectation(deletes=set(pod_keys), at=self._clock())

    def creation_observed(self, key: str, count: int = 1) -> None:
        exp = self._pending.get(key)
        if exp is not None:
            exp.adds -= count

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._pending.get(key)
        if exp is not None:
            exp.deletes.discard(pod_key)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected (for tests and logs)."""
        exp = self._pending.get(key)
        return (max(0, exp.adds), len(exp.deletes)) if exp else (0, 0)

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)
