"""Small helpers shared by the integration tests: object builders and waiting with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from proto import objects_pb2 as pb


def make_pod(name: str, *, labels: dict[str, str] | None = None, node: str = "", image: str = "kyb/busybox:1",
             namespace: str = "default") -> pb.Pod:
    """A minimal valid pod."""
    pod = pb.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.labels.update(labels or {})
    pod.spec.node_name = node
    c = pod.spec.containers.add()
    c.name = "main"
    c.image = image
    return pod


async def until(predicate: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = await predicate()
        except Exception as err:  # the condition may raise while not yet true (e.g. UNAVAILABLE)
            value, last_error = None, err
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")
        await asyncio.sleep(interval)
