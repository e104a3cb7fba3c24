"""Fenced writes: a write made on behalf of the elected leader commits only while that leadership holds.

A leader's claim is its election key and that key's create revision in etcd (`Fence`). Every etcd transaction
the store runs while a fence is set (a context variable: `fenced(fence)` around the call) also compares the
election key's create revision with the fence's, in the same transaction. A deposed leader, even one that
does not know it yet (paused, partitioned, slow), then cannot change anything: its transaction fails, the
store sees the election key is no longer its own and raises `FencedError`, and nothing is written. This is
the fencing token Jepsen asks etcd locks for, kept by etcd itself.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from kybernetes.core.api.errors import ApiError


@dataclass(frozen=True, slots=True)
class Fence:
    key: bytes
    create_revision: int


class FencedError(ApiError):
    """The write was refused because this process no longer holds the leadership it wrote for."""

    reason, code = "Fenced", grpc.StatusCode.FAILED_PRECONDITION


_fence: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("fence", default=None)


def current_fence() -> Fence | None:
    return _fence.get()


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Writes made inside (in this task) are conditional on `fence`."""
    token = _fence.set(fence)
    try:
        yield
    finally:
        _fence.reset(token)
