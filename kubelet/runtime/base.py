"""The kubelet's container runtime interface: a small Protocol plus plain dataclasses and errors.

The node logic (pod lifecycle, restarts, probes) is written against `Runtime` only. Nothing here knows
Kybernetes' protos: a pod is a `SandboxConfig` (identity + network mode) and a container is a
`ContainerConfig` (image, process, limits, labels, log file). Implementations own the mapping onto a real
runtime (see `kubelet.runtime.containerd`).

Identity: a sandbox id is derived from the pod's name and uid, a container id from the sandbox id, the
container name and an instance number, so `ctr c ls` stays readable and ids never collide. The runtime
labels every container with `LABEL_*` below, so a restarted kubelet can adopt what it finds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

ContainerState = Literal["created", "running", "exited", "unknown"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
PULL_POLICIES: tuple[str, ...] = ("Always", "IfNotPresent", "Never")

LABEL_MANAGED = "io.kybernetes.managed"
LABEL_SANDBOX_ID = "io.kybernetes.sandbox.id"
LABEL_POD_UID = "io.kybernetes.pod.uid"
LABEL_POD_NAMESPACE = "io.kybernetes.pod.namespace"
LABEL_POD_NAME = "io.kybernetes.pod.name"
LABEL_CONTAINER_NAME = "io.kybernetes.container.name"


@dataclass(frozen=True)
class ContainerConfig:
    """One container instance to start in a sandbox.

    `command` replaces the image entrypoint and `args` the image cmd (Kubernetes semantics): with a
    command, the process is command + args; with only args, it is the image entrypoint + args; with
    neither, the image default. `cpu_millis`/`memory_bytes` are limits (None = unlimited).
    """

    name: str
    image: str
    log_path: Path
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    cpu_millis: int | None = None
    memory_bytes: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # containerd's default seccomp profile (Kubernetes' RuntimeDefault); False only for Unconfined.
    seccomp: bool = True


@dataclass(frozen=True)
class SandboxConfig:
    """A pod's shared environment: its network namespace (or the host network) and identity."""

    pod_uid: str
    namespace: str
    name: str
    host_network: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Sandbox:
    """A created sandbox. `ready` is False when a rediscovered sandbox lost its netns (e.g. host reboot)."""

    id: str
    netns_path: str | None
    ip: str | None
    config: SandboxConfig
    ready: bool = True


@dataclass
class ContainerInfo:
    id: str
    labels: dict[str, str]
    state: ContainerState
    pid: int | None
    exit_code: int | None
    started_at: float | None
    finished_at: float | None
    oom_killed: bool
    image: str


@dataclass(frozen=True)
class ContainerExit:
    """The main process of a container exited (exec exits are not reported)."""

    container_id: str
    exit_code: int
    exited_at: float | None
    oom_killed: bool


@dataclass(frozen=True)
class ExecChunk:
    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool


class ExecSession(Protocol):
    """A running exec. Consume `chunks()` (once) and then `wait()`, or just `collect()`."""

    exec_id: str

    @property
    def timed_out(self) -> bool: ...

    def chunks(self) -> AsyncIterator[ExecChunk]:
        """Output as it arrives; ends when the process's stdout and stderr are closed."""
        ...

    async def wait(self) -> int:
        """The exit code. Raises ExecError when the exec could not run (e.g. executable not found)."""
        ...

    async def collect(self) -> ExecResult:
        """Drain the output and wait: the whole result at once."""
        ...

    async def cancel(self) -> None:
        """Stop the exec'd process (TERM, then KILL) and release its resources."""
        ...


class ContainerRuntimeError(Exception):
    """Base class of every error the runtime raises."""


class RuntimeUnavailableError(ContainerRuntimeError):
    """The runtime daemon cannot be reached (socket missing or refusing connections)."""


class ImagePullError(ContainerRuntimeError):
    """The image could not be pulled; the message says why (not found, unreachable registry, ...)."""


class ImageNeverPulled(ContainerRuntimeError):  # noqa: N818 - name follows Kubernetes' ErrImageNeverPull
    """Pull policy is Never and the image is not present."""


class SandboxError(ContainerRuntimeError):
    """The sandbox (network namespace, CNI) could not be set up."""


class ContainerStartError(ContainerRuntimeError):
    """The container could not be created or started. `reason` is a short CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ExecError(ContainerRuntimeError):
    """The exec could not run (container not running, executable not found, ...)."""


class Runtime(Protocol):
    async def version(self) -> str: ...

    async def ensure_image(self, image: str, *, pull_policy: str) -> str:
        """Make the image present according to the policy; return the reference to start containers from."""
        ...

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox: ...

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox's containers, network and namespaces. Idempotent."""
        ...

    async def list_sandboxes(self) -> list[Sandbox]: ...

    async def start_container(self, sandbox: Sandbox, config: ContainerConfig) -> str: ...

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None: ...

    async def remove_container(self, container_id: str) -> None: ...

    async def list_containers(self) -> list[ContainerInfo]: ...

    async def container_info(self, container_id: str) -> ContainerInfo | None: ...

    def exits(self) -> AsyncIterator[ContainerExit]: ...

    async def exec(
        self,
        container_id: str,
        command: list[str],
        *,
        stdin: AsyncIterator[bytes] | None = None,
        timeout: float | None = None,
    ) -> ExecSession: ...
