"""Waiting with a deadline: poll a condition until it holds, or fail saying what was last seen."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def until(predicate: Callable[[], Awaitable[T | None]], *, timeout: float = ..., interval: float = ...,
                message: str = ...) -> T: ...
@overload
async def until(predicate: Callable[[], T | None], *, timeout: float = ..., interval: float = ...,
                message: str = ...) -> T: ...
async def until(predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05,
                message: str = "condition") -> Any:
    """Poll `predicate` (async or plain) until it returns something truthy, and return that.

    An exception from the predicate counts as "not yet" (e.g. NotFound while the object is being created,
    UNAVAILABLE while a server starts); at the deadline this raises AssertionError naming `message` and the
    last value or error seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        error: Exception | None = None
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
        except Exception as err:  # not yet true
            value, error = None, err
        if value:
            return value
        if loop.time() > deadline:
            last = f"last error: {error!r}" if error is not None else f"last value: {value!r}"
            raise AssertionError(f"{message} not met within {timeout}s ({last})")
        await asyncio.sleep(interval)


__all__ = ["until"]
