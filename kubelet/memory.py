"""Giving memory back to the system after pods are gone.

A kubelet that ran a hundred pods and now runs thirty keeps the heap it grew: CPython frees its small-object
arenas only when they are completely empty, and glibc keeps freed chunks in its arenas for reuse. After pods
finish, the pod manager calls `release_free_memory` once (on its next relist), which collects garbage and
asks glibc to return the free pages of every arena (`malloc_trim(0)`). Elsewhere than glibc it only collects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache


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
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Collect garbage and return free heap pages to the system; True when glibc's malloc_trim ran."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
