"""Running a command's API work: `run(settings, body)` opens one `Client`, waits until the server answers
and closes it; `retry_on_conflict` and `read_modify_write` redo a whole read + change + update when another
writer got there first (a stale resourceVersion).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kybernetes.ctl.cli.args import Target
from kybernetes.ctl.cli.settings import Settings

if TYPE_CHECKING:
    from kybernetes.ctl.client import Client


T = TypeVar("T")



def run(settings: Settings, body: Callable[[Client], Awaitable[T]]) -> T:
    """Run `body(client)` on a fresh event loop with a Client of the configured master."""
    from kybernetes.ctl.client import Client

    async def main() -> T:
        target = settings.target()
        async with Client(settings.server, credentials=target.credentials,
                          timeout=settings.request_timeout) as client:
            await wait_connected(client, timeout=min(settings.request_timeout, CONNECT_TIMEOUT))
            return await body(client)

    return asyncio.run(main())


CONNECT_TIMEOUT = 5.0


async def wait_connected(client: Client, *, timeout: float) -> None:
    """Give the channel up to `timeout` to connect before the first call.

    The client's channel gives up a connection attempt after a short handshake
    deadline, so the first call of a fresh process can fail against a busy but
    healthy master. Waiting for READY rides that out; a refused TCP connection
    is detected at once, so an unreachable master still fails fast (the first
    call then reports it).
    """
    import grpc

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channel = client.channel
    state = channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.READY:
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not await _accepts_tcp(client.server):
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            return
        state = channel.get_state(try_to_connect=True)


async def _accepts_tcp(server: str) -> bool:
    """Whether host:port (the first of several) accepts a TCP connection (True when it is not host:port)."""
    if "," in server:
        return True  # several masters: the channel tries each; let the call say what happened
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or "/" in server:
        return True
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], *, attempts: int = 8) -> T:
    """Run `attempt` again (reading afresh) while the server answers Conflict; re-raise after `attempts`."""
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    from kybernetes.ctl.client import ConflictError

    result: T
    async for trial in AsyncRetrying(retry=retry_if_exception_type(ConflictError),
                                     stop=stop_after_attempt(attempts),
                                     wait=wait_random_exponential(multiplier=0.02, max=0.5), reraise=True):
        with trial:
            result = await attempt()
    return result


async def read_modify_write(client: Client, target: Target, *, settings: Settings,
                            change: Callable[[Any], bool], resource_version: str = "") -> tuple[Any, bool]:
    """Get an object, let `change` edit it in place, update it; retried on Conflict.

    `change` returns whether it changed anything (no update is sent otherwise) and
    may raise CliError to refuse. With `resource_version` (kubectl's
    --resource-version) the update carries that precondition and a Conflict is
    final, not retried.
    """
    namespace = settings.namespace_for(target.kind, target.namespace)

    async def attempt() -> tuple[Any, bool]:
        obj = await client.get(target.kind.resource, target.name, namespace=namespace)
        if resource_version:
            obj.metadata.resource_version = resource_version
        if not change(obj):
            return obj, False
        return await client.update(obj), True

    if resource_version:
        return await attempt()
    return await retry_on_conflict(attempt)
