"""A runtime that runs nothing: `--runtime hollow`, for control-plane scale tests (like kubemark).

It implements `Runtime` in memory. Every image is "present", a sandbox gets the
next address of the node's podCIDR, and a container is "running" `start_delay`
seconds after it was started, forever, until it is stopped (exit 0 after the
stop signal, as a well-behaved process). Exec answers exit 0 with no output.
Nothing survives the process: a restarted hollow kubelet starts its pods again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator

from kybernetes.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_MANAGED,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SANDBOX_ID,
    ContainerConfig,
    ContainerExit,
    ContainerInfo,
    ContainerRuntimeError,
    ExecChunk,
    ExecError,
    ExecResult,
    Sandbox,
    SandboxConfig,
    SandboxError,
)

HOLLOW_VERSION = "hollow://0.1.0"


class HollowExecSession:
    """An exec that succeeds at once without output."""

    def __init__(self, exec_id: str) -> None:
        self.exec_id = exec_id

    @property
    def timed_out(self) -> bool:
        return False

    async def chunks(self) -> AsyncIterator[ExecChunk]:
        return
        yield  # an async generator with nothing in it

    async def wait(self) -> int:
        return 0

    async def collect(self) -> ExecResult:
        return ExecResult(exit_code=0, stdout=b"", stderr=b"", timed_out=False)

    async def cancel(self) -> None:
        return None


class HollowRuntime:
    """`kubelet.runtime.base.Runtime` without containers (see the module docstring)."""

    def __init__(self, *, start_delay: float = 0.5, pod_cidr: str | None = None) -> None:
        self.start_delay = start_delay
        self._pod_cidr: str | None = None
        self._hosts: list[str] = []
        self._free: set[str] = set()
        self._sandboxes: dict[str, Sandbox] = {}
        self._containers: dict[str, ContainerInfo] = {}
        self._exits: asyncio.Queue[ContainerExit] = asyncio.Queue()
        self._ids = itertools.count()
        self.set_pod_cidr(pod_cidr)

    def set_pod_cidr(self, cidr: str | None) -> None:
        if cidr == self._pod_cidr or cidr is None:
            return
        network = ipaddress.ip_network(cidr, strict=False)
        self._pod_cidr = cidr
        # The first address is the bridge's in a real node; keep the same shape.
        self._hosts = [str(ip) for ip in itertools.islice(network.hosts(), 1, None)]
        used = {s.ip for s in self._sandboxes.values()}
        self._free = {ip for ip in self._hosts if ip not in used}

    async def version(self) -> str:
        return HOLLOW_VERSION

    async def ensure_image(self, image: str, *, pull_policy: str) -> str:
        return image

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        sandbox_id = f"{config.name}-{config.pod_uid[:10]}"
        existing = self._sandboxes.get(sandbox_id)
        if existing is not None:
            return existing
        ip = None
        if not config.host_network:
            if self._pod_cidr is None:
                raise SandboxError(f"sandbox {sandbox_id}: the node has no podCIDR yet")
            # Lowest free address first, so the addresses of a hollow node look like a real node's.
            ip = next((candidate for candidate in self._hosts if candidate in self._free), None)
            if ip is None:
                raise SandboxError(f"sandbox {sandbox_id}: no free address in {self._pod_cidr}")
            self._free.discard(ip)
        sandbox = Sandbox(id=sandbox_id, netns_path=None, ip=ip, config=config)
        self._sandboxes[sandbox_id] = sandbox
        return sandbox

    async def remove_sandbox(self, sandbox_id: str) -> None:
        sandbox = self._sandboxes.pop(sandbox_id, None)
        for container_id in [c.id for c in self._containers.values()
                             if c.labels.get(LABEL_SANDBOX_ID) == sandbox_id]:
            self._containers.pop(container_id, None)
        if sandbox is not None and sandbox.ip:
            self._free.add(sandbox.ip)

    async def list_sandboxes(self) -> list[Sandbox]:
        return list(self._sandboxes.values())

    async def start_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        if sandbox.id not in self._sandboxes:
            raise ContainerRuntimeError(f"sandbox {sandbox.id} does not exist")
        await asyncio.sleep(self.start_delay)
        container_id = f"{sandbox.id}-{config.name}-{next(self._ids)}"
        labels = {**config.labels, LABEL_MANAGED: "true", LABEL_SANDBOX_ID: sandbox.id,
                  LABEL_POD_UID: sandbox.config.pod_uid, LABEL_POD_NAMESPACE: sandbox.config.namespace,
                  LABEL_POD_NAME: sandbox.config.name, LABEL_CONTAINER_NAME: config.name}
        self._containers[container_id] = ContainerInfo(
            id=container_id, labels=labels, state="running", pid=None, exit_code=None, started_at=time.time(),
            finished_at=None, oom_killed=False, image=config.image)
        return container_id

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        info = self._containers.get(container_id)
        if info is None or info.state != "running":
            return
        info.state, info.exit_code, info.finished_at = "exited", 0, time.time()
        self._exits.put_nowait(ContainerExit(container_id=container_id, exit_code=0, exited_at=info.finished_at,
                                             oom_killed=False))

    async def remove_container(self, container_id: str) -> None:
        self._containers.pop(container_id, None)

    async def list_containers(self) -> list[ContainerInfo]:
        return list(self._containers.values())

    async def container_info(self, container_id: str) -> ContainerInfo | None:
        return self._containers.get(container_id)

    async def exits(self) -> AsyncIterator[ContainerExit]:
        while True:
            yield await self._exits.get()

    async def exec(self, container_id: str, command: list[str], *, stdin: AsyncIterator[bytes] | None = None,
                   timeout: float | None = None) -> HollowExecSession:
        info = self._containers.get(container_id)
        if info is None or info.state != "running":
            raise ExecError(f"container {container_id} is not running")
        return HollowExecSession(exec_id=f"hollow-{next(self._ids)}")
