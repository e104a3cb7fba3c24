"""Giving memory back to the system after pods are gone.

A kubelet that ran a hundred pods and now runs thirty keeps the heap it grew: CPython frees its small-object
arenas only when they are completely empty, and glibc keeps freed chunks in its arenas for reuse. After pods
finish, the pod manager calls `release_free_memory` (on its next relist), which asks glibc to return the
free pages of every arena (`malloc_trim(0)`); elsewhere than glibc it does nothing.

It is throttled per process (a hollow kubelet process runs hundreds of Nodes, each with its own pod
manager) and never forces a full garbage collection: on a large heap that holds the event loop for
tens of milliseconds each time, and hundreds of them in a row starved heartbeats past the grace period.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from functools import cache

MIN_INTERVAL = 30.0  # seconds between two trims in one process
_last_trim = -MIN_INTERVAL


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return free heap pages to the system; True when glibc's malloc_trim ran (at most every MIN_INTERVAL)."""
    global _last_trim
    now = time.monotonic()
    trim = _malloc_trim()
    if trim is None or now - _last_trim < MIN_INTERVAL:
        return False
    _last_trim = now
    trim(0)
    return True
