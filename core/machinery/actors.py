"""Actors: long-lived asyncio tasks with a mailbox, supervised and restarted when they fail.

Every loop in Kybernetes (API watch fan-out, controllers, the kubelet's link to
the master, its pod workers) is an `Actor`. An actor's `run()` is its whole
life; a `Supervisor` starts it, and when `run()` raises, logs the traceback
and starts it again after an exponential back-off, so a bug shows up in the
logs and never leaves a component silently dead. Messages reach an actor
through `tell()`, which puts them in its mailbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kybernetes.core.log import get_logger
from kybernetes.core.machinery.backoff import retry_delay


class Actor:
    """A long-lived task with a mailbox. Subclasses implement `run()`."""

    name: str = "actor"

    def __init__(self, *, name: str | None = None, mailbox_size: int = 0) -> None:
        if name:
            self.name = name
        self.mailbox: asyncio.Queue[Any] = asyncio.Queue(mailbox_size)
        self.log = get_logger(self.name)

    def tell(self, message: Any) -> None:
        """Deliver a message without waiting (an unbounded mailbox never blocks)."""
        self.mailbox.put_nowait(message)

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class _Child:
    actor: Actor
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    stopping: bool = False


@dataclass
class Supervisor:
    """Runs actors, restarting each after a crash with a capped, jittered exponential back-off."""

    name: str = "supervisor"
    base_backoff: float = 0.2
    max_backoff: float = 10.0
    _children: dict[str, _Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = get_logger(self.name)

    def start(self, actor: Actor) -> None:
        """Start supervising an actor; its name must be unique within this supervisor."""
        if actor.name in self._children:
            raise ValueError(f"actor {actor.name!r} already running")
        child = _Child(actor)
        self._children[actor.name] = child
        child.task = asyncio.create_task(self._keep_alive(child), name=f"actor:{actor.name}")

    def start_fn(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """Supervise a plain coroutine function as an actor."""
        self.start(_FnActor(name=name, fn=fn))

    async def _keep_alive(self, child: _Child) -> None:
        actor = child.actor
        while not child.stopping:
            try:
                await actor.run()
                if child.stopping:
                    return
                self.log.warning("actor returned, restarting", actor=actor.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("actor crashed, restarting", actor=actor.name, restarts=child.restarts)
            child.restarts += 1
            delay = retry_delay(child.restarts, base=self.base_backoff, cap=self.max_backoff)
            await asyncio.sleep(delay)

    async def stop(self, name: str) -> None:
        """Stop one actor and wait for it."""
        child = self._children.pop(name, None)
        if child is None or child.task is None:
            return
        child.stopping = True
        child.task.cancel()
        await asyncio.gather(child.task, return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop every actor (used on shutdown), newest first."""
        for name in reversed(list(self._children)):
            await self.stop(name)

    def restarts(self, name: str) -> int:
        """How often an actor has been restarted (for tests and metrics)."""
        child = self._children.get(name)
        return child.restarts if child else 0


class _FnActor(Actor):
    def __init__(self, *, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        super().__init__(name=name)
        self._fn = fn

    async def run(self) -> None:
        await self._fn()
