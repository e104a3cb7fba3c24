"""Containers: one `ctr run -d` to create and start, stop with a grace period, remove, and status.

`start_container` turns a `ContainerConfig` into one `ctr run -d --log-uri file://...` (always `--`
before the image) with the pod's identity as labels, limits, and the sandbox's netns, UTS namespace
and /etc files (`--net-host` for hostNetwork pods); a taken id moves on to the next index, and any
other failure removes what the attempt left behind (docs/containerd.md §4). `stop_container` sends
the stop signal, waits for the main pid with a pidfd up to the grace, then SIGKILLs; the stopped task
is kept until `remove_container` so its exit status stays readable (§8).

Status (§7): `ctr shim --id ID state` (answers while containerd is down) for one container,
`ctr tasks ls` + `ctr containers ls -q` for all; labels and image come from `ctr containers info`,
cached because a container never changes. An exited container's final state is read once and kept.
The start time is our own `containers/<id>.json` (containerd keeps none), else /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog

from kybernetes.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_MANAGED,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SANDBOX_ID,
    ContainerConfig,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    Sandbox,
    SandboxConfig,
)
from kybernetes.kubelet.runtime.containerd.ctr import CtrCalls, CtrError, ctr_message, id_part, parse_timestamp
from kybernetes.kubelet.runtime.containerd.state import _atomic_write_json, _read_json

log = structlog.get_logger(__name__)

CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000
MAX_ID_LENGTH = 64
SHIM_SOCKET_DIR = Path("/run/containerd/s")
# `ctr shim state` status codes as the task status names `ctr tasks ls` prints (then mapped by _TASK_STATUS).
_SHIM_STATUS: dict[int, str] = {1: "CREATED", 2: "RUNNING", 3: "STOPPED", 4: "PAUSED"}
_TASK_STATUS: dict[str, ContainerState] = {
    "CREATED": "created", "RUNNING": "running", "STOPPED": "exited", "PAUSED": "running", "PAUSING": "running",
}


def _process_start_time(pid: int) -> float | None:
    """Start time of a live process, from /proc (clock ticks since boot + boot time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        boot_time = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                         if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot_time + ticks / os.sysconf("SC_CLK_TCK")


async def wait_pid_exit(pid: int, timeout: float) -> bool:
    """Wait (without polling) until a process that is not our child exits, via a pidfd."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(descriptor, readable)
    try:
        await asyncio.wait_for(exited, max(timeout, 0.0))
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(descriptor)
        os.close(descriptor)


def _start_failure_reason(message: str) -> str:
    """Kubernetes' waiting reason for a container that `ctr run` could not create or start."""
    if "executable file not found" in message or "no such file or directory" in message:
        return "ExecutableNotFound"
    if "failed to create shim task" in message or "OCI runtime" in message:
        return "StartError"
    return "CreateContainerError"


class ContainersMixin(CtrCalls):
    """Containers of `ContainerdRuntime` (see the module docstring)."""

    # Set by ContainerdRuntime.__init__.
    root_dir: Path
    _known_ids: set[str] | None
    _next_index: dict[str, int]
    _records: dict[str, dict[str, Any]]
    _final_states: dict[str, dict[str, Any]]

    if TYPE_CHECKING:  # from ImagesMixin, SandboxesMixin and ExitsMixin
        _oom_seen: set[str]

        def forget_image(self, image: str) -> None: ...
        async def _image_entrypoint(self, image: str) -> list[str]: ...
        def _load_sandbox_record(self, sandbox_id: str) -> dict[str, Any] | None: ...
        def _etc_dir(self, sandbox_id: str) -> Path: ...
        def _oom_killed(self, container_id: str, exit_code: int | None) -> bool: ...

    @property
    def _container_dir(self) -> Path:
        return self.root_dir / "containers"

    async def _allocate_container_id(self, base: str) -> str:
        """`<base>-<n>` with n one above any instance seen; monotonic within this runtime object."""
        if self._known_ids is None:
            result = await self._ctr("containers", "ls", "-q")
            self._known_ids = set(result.stdout.split())
        index = self._next_index.get(base)
        if index is None:
            pattern = re.compile(re.escape(base) + r"-(\d+)")
            used = [int(m.group(1)) for known in self._known_ids if (m := pattern.fullmatch(known))]
            index = max(used, default=-1) + 1
        self._next_index[base] = index + 1
        container_id = f"{base}-{index}"
        self._known_ids.add(container_id)
        return container_id

    async def _process_args(self, config: ContainerConfig) -> list[str]:
        if config.command:
            return [*config.command, *config.args]
        if config.args:
            return [*(await self._image_entrypoint(config.image)), *config.args]
        return []

    def _validate(self, config: ContainerConfig) -> None:
        if not config.name:
            raise ContainerStartError("CreateContainerError", "container name: must not be empty")
        if not config.image:
            raise ContainerStartError("CreateContainerError", f"container {config.name}: image: must not be empty")
        if config.memory_bytes is not None and config.memory_bytes <= 0:
            raise ContainerStartError("CreateContainerError",
                                      f"container {config.name}: memory limit: must be positive")
        if config.cpu_millis is not None and config.cpu_millis <= 0:
            raise ContainerStartError("CreateContainerError", f"container {config.name}: cpu limit: must be positive")
        for key in config.env:
            if not key or "=" in key:
                raise ContainerStartError("CreateContainerError",
                                          f"container {config.name}: env name {key!r}: must be non-empty without '='")
        if not config.log_path.is_absolute():
            raise ContainerStartError("CreateContainerError",
                                      f"container {config.name}: log_path: {config.log_path} must be absolute")

    async def start_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        """Create and start one container in the sandbox; return its id.

        Raises ContainerStartError: reason CreateContainerError (bad config, missing image, sandbox gone),
        ExecutableNotFound, or StartError (anything else runc refused). Nothing is left behind on failure.
        """
        self._validate(config)
        record = self._load_sandbox_record(sandbox.id)
        if record is None:
            raise ContainerStartError("CreateContainerError", f"sandbox {sandbox.id} does not exist")
        sandbox_config = SandboxConfig(**record["config"])
        labels = {
            **{str(k): str(v) for k, v in config.labels.items()},
            LABEL_MANAGED: "true",
            LABEL_SANDBOX_ID: sandbox.id,
            LABEL_POD_UID: sandbox_config.pod_uid,
            LABEL_POD_NAMESPACE: sandbox_config.namespace,
            LABEL_POD_NAME: sandbox_config.name,
            LABEL_CONTAINER_NAME: config.name,
        }
        flags: list[str] = []
        for key, value in labels.items():
            flags += ["--label", f"{key}={value}"]
        for key, value in config.env.items():
            flags += ["--env", f"{key}={value}"]
        if config.working_dir:
            flags += ["--cwd", config.working_dir]
        if config.seccomp:
            # containerd's default profile; ctr's default spec already keeps only the runtime's default
            # capabilities (no --privileged, no --cap-add ever): docs/containerd.md §12.
            flags.append("--seccomp")
        if config.memory_bytes is not None:
            flags += ["--memory-limit", str(config.memory_bytes)]
        if config.cpu_millis is not None:
            quota = max(MIN_CPU_QUOTA_US, config.cpu_millis * CPU_PERIOD_US // 1000)
            flags += ["--cpu-quota", str(quota), "--cpu-period", str(CPU_PERIOD_US)]
        if sandbox_config.host_network:
            flags.append("--net-host")
        else:
            netns = record.get("netns_path")
            if not netns or not Path(netns).exists():
                raise ContainerStartError("CreateContainerError", f"sandbox {sandbox.id} has no network namespace")
            flags += ["--with-ns", f"network:{netns}"]
            uts = record.get("uts_path")
            if uts and Path(uts).exists():
                flags += ["--with-ns", f"uts:{uts}"]
            etc = self._etc_dir(sandbox.id)
            for file_name in ("hosts", "hostname", "resolv.conf"):
                if (etc / file_name).exists():
                    flags += ["--mount", f"type=bind,src={etc / file_name},dst=/etc/{file_name},options=rbind:ro"]
        try:
            process_args = await self._process_args(config)
        except CtrError as error:
            raise ContainerStartError("CreateContainerError", f"image {config.image}: {error.message}") from error

        # One `ctr run -d` creates the container and starts its task: one process instead of
        # `containers create` + `tasks start` (each ctr is a Go binary start, ~20 ms of CPU), which is what
        # a batch of pods on a 2-core Node is bound by. `--` keeps the process's own flags away from ctr.
        try:
            config.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ContainerStartError("CreateContainerError", f"log directory: {error}") from error
        log_uri = "file://" + quote(str(config.log_path))
        base = f"{sandbox.id}-{id_part(config.name, limit=MAX_ID_LENGTH - len(sandbox.id) - 6)}"
        for _attempt in range(5):
            container_id = await self._allocate_container_id(base)
            try:
                await self._ctr("run", "-d", "--log-uri", log_uri, *flags, "--", config.image, container_id,
                                *process_args, expensive=True)
                break
            except CtrError as error:
                message = error.message
                if "already exists" in message:
                    continue  # someone else's container (or snapshot) has this id: leave it alone
            if "not found" in message:
                self.forget_image(config.image)
            # Anything else may have left the container (and its snapshot) behind: remove ours.
            with contextlib.suppress(ContainerRuntimeError):
                await self.remove_container(container_id)
            raise ContainerStartError(_start_failure_reason(message), message)
        else:
            raise ContainerStartError("CreateContainerError", f"no free container id for {base}")

        state_path = self._container_dir / f"{container_id}.json"
        _atomic_write_json(state_path, {"started_at": time.time(), "log_path": str(config.log_path)})
        log.info("container started", container=container_id, image=config.image)
        return container_id

    async def _shim_state(self, container_id: str) -> dict[str, Any] | None:
        """The task's state straight from its shim (works while containerd is down); None without a task."""
        result = await self._ctr("shim", "--id", container_id, "state", check=False)
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        """Stop signal (SIGTERM unless the image says otherwise), wait up to the grace, then SIGKILL.

        Returns once the task is stopped (or absent); the stopped task is kept for its exit status.
        """
        state = await self._shim_state(container_id)
        if state is None or state.get("status") not in (1, 2, 4):
            return
        pid = int(state.get("pid") or 0)
        await self._ctr("tasks", "kill", container_id, check=False)
        if pid and await wait_pid_exit(pid, grace_seconds):
            await self._wait_task_stopped(container_id, timeout=5.0)
            return
        log.info("grace period over, killing", container=container_id, grace=grace_seconds)
        await self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", container_id, check=False)
        if pid:
            await wait_pid_exit(pid, 10.0)
        await self._wait_task_stopped(container_id, timeout=10.0)

    async def _wait_task_stopped(self, container_id: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            state = await self._shim_state(container_id)
            if state is None or state.get("status") == 3:
                return
            if time.monotonic() >= deadline:
                raise ContainerRuntimeError(f"container {container_id} did not stop within {timeout:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def remove_container(self, container_id: str) -> None:
        """Kill if needed, delete task and container (and its snapshot). Idempotent."""
        task = await self._ctr("tasks", "rm", "-f", container_id, expensive=True, check=False)
        if task.returncode != 0 and "not found" not in ctr_message(task.stderr):
            log.warning("task delete failed", container=container_id, error=ctr_message(task.stderr))
        container = await self._ctr("containers", "rm", container_id, expensive=True, check=False)
        if container.returncode != 0 and "not found" not in ctr_message(container.stderr):
            raise CtrError(["containers", "rm", container_id], container)
        (self._container_dir / f"{container_id}.json").unlink(missing_ok=True)
        self._records.pop(container_id, None)
        self._final_states.pop(container_id, None)
        self._oom_seen.discard(container_id)
        # A SIGKILLed shim leaves its socket behind (docs/containerd.md §8).
        socket_name = hashlib.sha256(f"{self.address}/{self.namespace}/{container_id}".encode()).hexdigest()
        with contextlib.suppress(OSError):
            (SHIM_SOCKET_DIR / socket_name).unlink()

    async def _container_record(self, container_id: str) -> dict[str, Any] | None:
        """`ctr c info` (labels, image, spec), cached: we never change a container after creating it."""
        if container_id in self._records:
            return self._records[container_id]
        result = await self._ctr("containers", "info", container_id, check=False)
        if result.returncode != 0:
            if "not found" in ctr_message(result.stderr):
                return None
            raise CtrError(["containers", "info", container_id], result)
        record = json.loads(result.stdout)
        self._records[container_id] = record
        return record

    def _started_at(self, container_id: str, pid: int | None) -> float | None:
        state = _read_json(self._container_dir / f"{container_id}.json")
        if isinstance(state, dict) and isinstance(state.get("started_at"), (int, float)):
            return float(state["started_at"])
        return _process_start_time(pid) if pid else None

    async def _build_info(self, container_id: str, task_status: str | None, pid: int | None) -> ContainerInfo | None:
        """Combine the container record with its task state (task_status None = no task)."""
        record = await self._container_record(container_id)
        if record is None:
            return None
        state: ContainerState = _TASK_STATUS.get(task_status or "", "unknown")
        exit_code = finished_at = None
        oom_killed = False
        if state == "exited":
            final = self._final_states.get(container_id)
            if final is None:
                shim = await self._shim_state(container_id)
                if shim is not None and shim.get("status") == 3:
                    exit_code = int(shim.get("exit_status", 0))
                    final = {"exit_code": exit_code, "finished_at": parse_timestamp(shim.get("exited_at")),
                             "oom_killed": self._oom_killed(container_id, exit_code), "pid": shim.get("pid")}
                    self._final_states[container_id] = final
            if final is not None:
                exit_code, finished_at, oom_killed = final["exit_code"], final["finished_at"], final["oom_killed"]
                pid = final.get("pid") or pid
            else:
                state = "unknown"
        return ContainerInfo(
            id=container_id,
            labels=dict(record.get("Labels") or {}),
            state=state,
            pid=pid if state in ("running", "created") else None,
            exit_code=exit_code,
            started_at=self._started_at(container_id, pid) if state != "created" else None,
            finished_at=finished_at,
            oom_killed=oom_killed,
            image=record.get("Image", ""),
        )

    async def _task_table(self) -> dict[str, tuple[int | None, str]]:
        result = await self._ctr("tasks", "ls")
        table: dict[str, tuple[int | None, str]] = {}
        for line in result.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                table[parts[0]] = (int(parts[1]) if parts[1].isdigit() and parts[1] != "0" else None, parts[2])
        return table

    async def list_containers(self) -> list[ContainerInfo]:
        """Every container in our namespace with its labels and state (for adoption after a restart)."""
        ids = (await self._ctr("containers", "ls", "-q")).stdout.split()
        tasks = await self._task_table()
        infos = await asyncio.gather(*(
            self._build_info(cid, tasks.get(cid, (None, None))[1], tasks.get(cid, (None, None))[0]) for cid in ids
        ))
        return [info for info in infos if info is not None]

    async def container_info(self, container_id: str) -> ContainerInfo | None:
        """One container's state, or None if it does not exist. No task (e.g. shim killed) -> "unknown"."""
        record = await self._container_record(container_id)
        if record is None:
            return None
        shim = await self._shim_state(container_id)
        status = None
        pid = None
        if shim is not None:
            status = _SHIM_STATUS.get(int(shim.get("status", 0)))
            pid = int(shim["pid"]) if shim.get("pid") else None
        return await self._build_info(container_id, status, pid)
