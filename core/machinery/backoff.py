"""Exponential back-off with jitter: the one formula every retry loop uses.

`exponential(attempt, base=, cap=)` is base × 2^attempt, capped; `jittered(delay)` spreads a delay
uniformly over [delay/2, delay) so that many clients retrying at once (kubelets after a master restart,
informers after a compaction) do not come back in lockstep; `retry_delay` is both. Every retry loop of
the master, the kubelet and the client sleeps `retry_delay(...)` or `exponential(...)`; the work queue's
per-key rate limiter (`workqueue.ExponentialBackoff`) uses `exponential` without jitter, as client-go does.
"""

from __future__ import annotations

import random

# 2^62 × any base we use is far above any cap: the exponent is bounded only to keep the float finite.
_MAX_DOUBLINGS = 62


def exponential(attempt: int, *, base: float, cap: float) -> float:
    """base × 2^attempt (attempt counts from 0), never above cap."""
    return min(cap, base * 2 ** min(max(attempt, 0), _MAX_DOUBLINGS))


def jittered(delay: float) -> float:
    """A delay drawn uniformly from [delay/2, delay)."""
    return delay * (0.5 + random.random() / 2)


def retry_delay(attempt: int, *, base: float, cap: float) -> float:
    """The jittered exponential back-off before retry number `attempt` (counted from 0)."""
    return jittered(exponential(attempt, base=base, cap=cap))
