"""Background tasks that are never lost: a `TaskSet` keeps a reference to every task it starts and logs the
failure of each with its traceback.

`asyncio.create_task` with no reference kept has two faults: the event loop
holds tasks only weakly, so one may be garbage-collected mid-flight, and an
exception it raises is reported (if at all) as "Task exception was never
retrieved" when the task is collected, without saying what it was doing. Long
loops are `Actor`s under a `Supervisor` (core.machinery.actors), which restarts
them; a `TaskSet` is for one-shot work an owner starts in the background (an
Event write, a pod deletion, a re-registration step). A failed task is logged
(naming its work and whatever fields the owner gives) and `on_failure` is
called, so the owner decides what a failure means: nothing more, a retry, or
failing itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kybernetes.core.log import get_logger

T = TypeVar("T")


class TaskSet:
    """The background tasks of one owner."""

    def __init__(self, *, name: str, on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        self.name = name
        self.log = get_logger(name)
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failures = 0  # tasks that raised so far (tests and metrics)

    def spawn(self, work: Coroutine[Any, Any, T], *, what: str, **fields: Any) -> asyncio.Task[T]:
        """Start `work` in the background; `what` (and `fields`, e.g. object=...) name it in the failure log."""
        task = asyncio.get_running_loop().create_task(work, name=f"{self.name}:{what}")
        self._tasks.add(task)

        def done(t: asyncio.Task[T]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            error = t.exception()
            if error is None:
                return
            self.failures += 1
            self.log.error("background task failed", work=what, exc_info=error, **fields)
            if self._on_failure is not None:
                try:
                    self._on_failure(what, error)
                except Exception:
                    self.log.exception("failure handler failed", work=what, **fields)

        task.add_done_callback(done)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def join(self) -> None:
        """Wait for every task started so far (and those they start)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["TaskSet"]
