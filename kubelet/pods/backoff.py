"""Kubernetes' restart and image-pull back-off: the first retry is immediate, then base, doubling, capped.

`Backoff.ready(now)` says whether a retry may happen now; `Backoff.next(now)`
records that one did, so the following failure has to wait `delay` seconds.
A container that ran for longer than twice the cap resets its back-off, as
the kubelet does after a long healthy run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    base: float
    cap: float
    delay: float = 0.0
    until: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.until

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)

    def next(self, now: float) -> None:
        """A retry happens now: the next one waits base, 2×base, … up to cap."""
        self.delay = self.base if self.delay == 0 else min(self.cap, self.delay * 2)
        self.until = now + self.delay

    def reset(self) -> None:
        self.delay = 0.0
        self.until = 0.0

    def reset_after_run(self, ran_for: float) -> None:
        if ran_for > 2 * self.cap:
            self.reset()
