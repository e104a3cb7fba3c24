"""The kubelet's settings: everything `kyb-kubelet` takes on its command line, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT_DIR = Path("/var/lib/kybernetes/kubelet")
DEFAULT_CONTAINERD_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_CONTAINERD_NAMESPACE = "kyb"
DEFAULT_POD_BRIDGE = "kyb0"


@dataclass(frozen=True)
class KubeletConfig:
    """One kubelet's configuration (a hollow kubelet group shares one, with derived node names)."""

    master: str = "127.0.0.1:6443"
    node_name: str = ""
    node_ip: str = ""
    root_dir: Path = DEFAULT_ROOT_DIR
    runtime: str = "containerd"  # containerd | hollow
    containerd_address: str = DEFAULT_CONTAINERD_ADDRESS
    containerd_namespace: str = DEFAULT_CONTAINERD_NAMESPACE
    insecure_registries: tuple[str, ...] = ()
    pod_bridge: str = DEFAULT_POD_BRIDGE
    heartbeat_interval: float = 1.0
    # Kubernetes' CrashLoopBackOff and ImagePullBackOff: base doubling up to max.
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    # How often the runtime's container list is compared with what the workers believe (a missed exit event).
    relist_interval: float = 5.0
    max_pods: int = 110
    container_log_max_bytes: int = 10 * 2**20
    hollow_start_delay: float = 0.5
    hollow_count: int = 1
    # Reconnection to the master: jittered exponential back-off from min to max seconds.
    reconnect_min: float = 0.1
    reconnect_max: float = 3.0
    extra_labels: dict[str, str] = field(default_factory=dict)
    # Host-gw routes to the other Nodes' pod CIDRs (NodeSync) and the Service proxy (ServiceSync).
    pod_routes: bool = True
    proxy: bool = True
    # Kubernetes' kubelet --seccomp-default: RuntimeDefault for pods that name no profile (ours is on by default).
    seccomp_default: bool = True

    @property
    def hollow(self) -> bool:
        return self.runtime == "hollow"

    @property
    def wants_routes(self) -> bool:
        return self.pod_routes and not self.hollow

    @property
    def wants_proxy(self) -> bool:
        return self.proxy and not self.hollow
