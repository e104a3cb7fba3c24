"""Container runtime layer of the kubelet: a small interface (`base`) and its containerd implementation.

The node logic imports from here only:
    from kybernetes.kubelet.runtime import ContainerdRuntime, ContainerConfig, SandboxConfig, ...
"""

from kybernetes.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_MANAGED,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SANDBOX_ID,
    PULL_POLICIES,
    ContainerConfig,
    ContainerExit,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    ExecChunk,
    ExecError,
    ExecResult,
    ExecSession,
    ImageNeverPulled,
    ImagePullError,
    Runtime,
    RuntimeUnavailableError,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from kybernetes.kubelet.runtime.containerd import ContainerdExecSession, ContainerdRuntime, CtrError

__all__ = [
    "LABEL_CONTAINER_NAME",
    "LABEL_MANAGED",
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "LABEL_SANDBOX_ID",
    "PULL_POLICIES",
    "ContainerConfig",
    "ContainerExit",
    "ContainerInfo",
    "ContainerRuntimeError",
    "ContainerStartError",
    "ContainerState",
    "ContainerdExecSession",
    "ContainerdRuntime",
    "CtrError",
    "ExecChunk",
    "ExecError",
    "ExecResult",
    "ExecSession",
    "ImageNeverPulled",
    "ImagePullError",
    "Runtime",
    "RuntimeUnavailableError",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
]
