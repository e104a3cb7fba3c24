"""Exit detection: the `/tasks/exit` event stream, its reconcile with `ctr tasks ls`, OOM kills (docs/containerd.md §7).

`exits()` follows one long-running `ctr events` filtered to our namespace's `/tasks/exit` and
`/tasks/oom` topics and yields each container's main-process exit once (exec processes exit with
their exec id, not the container id). The stream neither replays nor survives a containerd restart,
so it is restarted with back-off, and every (re)connect is followed by a reconcile: each STOPPED task
not yet reported is read with `ctr shim state`; the first reconcile is repeated after 1 s, then every
EXIT_RECONCILE_INTERVAL seconds.

A container counts as OOM-killed when it exited 137 and either an `/tasks/oom` event named it or the
kernel's oom_kill counter of its cgroup is non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from kybernetes.kubelet.runtime.base import ContainerExit, ContainerRuntimeError
from kybernetes.kubelet.runtime.containerd.ctr import CtrCalls, ctr_message, parse_timestamp

log = structlog.get_logger(__name__)

EXIT_RECONCILE_INTERVAL = 10.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_oom_kills(cgroups_path: str) -> int:
    """The kernel's OOM-kill counter of a container cgroup (v1 memory.oom_control or v2 memory.events)."""
    relative = cgroups_path.lstrip("/")
    for path in (CGROUP_ROOT / "memory" / relative / "memory.oom_control",
                 CGROUP_ROOT / relative / "memory.events"):
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return 0


class ExitsMixin(CtrCalls):
    """Exit detection of `ContainerdRuntime` (see the module docstring)."""

    # Set by ContainerdRuntime.__init__: containers named by an /tasks/oom event.
    _oom_seen: set[str]

    if TYPE_CHECKING:  # from ContainersMixin
        _records: dict[str, dict[str, Any]]

        async def _shim_state(self, container_id: str) -> dict[str, Any] | None: ...
        async def _task_table(self) -> dict[str, tuple[int | None, str]]: ...

    def _cgroups_path(self, container_id: str) -> str:
        record = self._records.get(container_id) or {}
        path = (((record.get("Spec") or {}).get("linux") or {}).get("cgroupsPath"))
        return path or f"/{self.namespace}/{container_id}"

    def _oom_killed(self, container_id: str, exit_code: int | None) -> bool:
        """Exit 137 after the kernel OOM-killed in the container's cgroup (or an /tasks/oom event)."""
        if exit_code != 137:
            return False
        return container_id in self._oom_seen or cgroup_oom_kills(self._cgroups_path(container_id)) > 0

    async def exits(self) -> AsyncIterator[ContainerExit]:
        """Main-process exits of our containers, forever.

        Each container's exit is reported once per iterator; exits missed while the stream was down
        (or before it started) are found by reconciling against `ctr t ls` on every (re)connect and
        every EXIT_RECONCILE_INTERVAL seconds.
        """
        reported: set[str] = set()
        backoff = 0.1
        while True:
            argv = self._ctr_argv(
                "events",
                f'namespace=={self.namespace},topic=="/tasks/exit"',
                f'namespace=={self.namespace},topic=="/tasks/oom"',
            )
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            assert process.stdout is not None
            try:
                next_reconcile = 0.0
                reconciles = 0
                while True:
                    if time.monotonic() >= next_reconcile:
                        try:
                            for found in await self._reconcile_exits(reported):
                                yield found
                            backoff = 0.1
                        except ContainerRuntimeError as error:
                            log.warning("exit reconcile failed", error=str(error))
                        # The first pass may run before ctr's subscription is live: look again soon.
                        reconciles += 1
                        next_reconcile = time.monotonic() + (1.0 if reconciles == 1 else EXIT_RECONCILE_INTERVAL)
                    try:
                        line = await asyncio.wait_for(process.stdout.readline(),
                                                      max(0.0, next_reconcile - time.monotonic()))
                    except TimeoutError:
                        continue
                    if not line:
                        break
                    parsed = self._parse_event(line.decode(errors="replace"), reported)
                    if parsed is not None:
                        yield parsed
            finally:
                if process.returncode is None:
                    process.kill()
                with contextlib.suppress(Exception):
                    await process.wait()
            stderr = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
            log.warning("ctr events ended, restarting", error=ctr_message(stderr), backoff=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _parse_event(self, line: str, reported: set[str]) -> ContainerExit | None:
        parts = line.rstrip("\n").split(" ", 6)
        if len(parts) < 7:
            return None
        topic = parts[5]
        try:
            payload = json.loads(parts[6])
        except ValueError:
            return None
        container_id = payload.get("container_id", "")
        if topic == "/tasks/oom":
            self._oom_seen.add(container_id)
            return None
        if topic != "/tasks/exit" or payload.get("id") != container_id or container_id in reported:
            return None
        reported.add(container_id)
        exit_code = int(payload.get("exit_status", 0))
        return ContainerExit(container_id=container_id, exit_code=exit_code,
                             exited_at=parse_timestamp(payload.get("exited_at")),
                             oom_killed=self._oom_killed(container_id, exit_code))

    async def _reconcile_exits(self, reported: set[str]) -> list[ContainerExit]:
        tasks = await self._task_table()
        reported.intersection_update(tasks)
        found = []
        for container_id, (_pid, status) in tasks.items():
            if status != "STOPPED" or container_id in reported:
                continue
            shim = await self._shim_state(container_id)
            if shim is None or shim.get("status") != 3:
                continue
            reported.add(container_id)
            exit_code = int(shim.get("exit_status", 0))
            found.append(ContainerExit(container_id=container_id, exit_code=exit_code,
                                       exited_at=parse_timestamp(shim.get("exited_at")),
                                       oom_killed=self._oom_killed(container_id, exit_code)))
        return found
