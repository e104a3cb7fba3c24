"""What a kubelet reports about its machine when it registers: the Node as the kubelet sees it.

Capacity (cpu, memory, pods) is read from the machine (CPU affinity, /proc/meminfo);
allocatable equals capacity (no system reservations). Addresses follow Kubernetes:
InternalIP (the address of the interface carrying the default route in the kubelet's
network namespace, so a kubelet started inside a lab node's netns reports that node's
address) and Hostname. nodeInfo carries os/arch/kernel/OS image, the kubelet's and the
runtime's versions. Hollow nodes report a fixed, made-up capacity and carry the label
`kybernetes.io/hollow=true` so nothing mistakes them for real machines.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

from kybernetes.core.api.quantity import format_memory
from kybernetes.proto import objects_pb2 as pb

HOLLOW_LABEL = "kybernetes.io/hollow"
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}

# What a hollow node claims to have (kubemark's defaults are similar): plenty for scale tests.
HOLLOW_CPU = "4"
HOLLOW_MEMORY = "16Gi"


@dataclass(frozen=True)
class MachineFacts:
    """The parts of nodeInfo that come from the machine, read once per process."""

    cpus: int
    memory_bytes: int
    kernel: str
    os_image: str
    machine_id: str
    arch: str


def kubelet_version() -> str:
    try:
        return "v" + importlib.metadata.version("kybernetes")
    except importlib.metadata.PackageNotFoundError:
        return "v0.0.0-dev"


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def read_machine() -> MachineFacts:
    try:
        machine_id = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine_id = ""
    return MachineFacts(
        cpus=len(os.sched_getaffinity(0)) or os.cpu_count() or 1,
        memory_bytes=_memory_bytes(),
        kernel=platform.release(),
        os_image=_os_image(),
        machine_id=machine_id,
        arch=_ARCH.get(platform.machine(), platform.machine()),
    )


def default_node_ip(*, master: str = "") -> str:
    """The IPv4 address this netns would use to reach the outside (or the master): routing lookup, no traffic.

    Connecting a UDP socket sends nothing; it only asks the kernel which source address it would pick.
    """
    targets = ["192.0.2.1"]  # TEST-NET-1: any address that follows the default route
    host = master.rsplit(":", 1)[0] if master else ""
    if host and host not in ("127.0.0.1", "localhost", "::1"):
        targets.insert(0, host)
    for target in targets:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))
                address = probe.getsockname()[0]
                if address and not address.startswith("0."):
                    return address
        except OSError:
            continue
    return "127.0.0.1"


def build_node(*, name: str, node_ip: str, runtime_version: str, max_pods: int, hollow: bool,
               machine: MachineFacts, extra_labels: dict[str, str] | None = None) -> pb.Node:
    """The Node to send in Register: labels, addresses, capacity/allocatable and nodeInfo."""
    node = pb.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    labels = node.metadata.labels
    labels[HOSTNAME_LABEL] = name
    labels[OS_LABEL] = "linux"
    labels[ARCH_LABEL] = machine.arch
    if hollow:
        labels[HOLLOW_LABEL] = "true"
    labels.update(extra_labels or {})

    cpu = HOLLOW_CPU if hollow else str(machine.cpus)
    memory = HOLLOW_MEMORY if hollow else format_memory(machine.memory_bytes)
    resources = {"cpu": cpu, "memory": memory, "pods": str(max_pods)}
    node.status.capacity.update(resources)
    node.status.allocatable.update(resources)
    node.status.addresses.add(type="InternalIP", address=node_ip)
    node.status.addresses.add(type="Hostname", address=name)
    info = node.status.node_info
    info.operating_system = "linux"
    info.architecture = machine.arch
    info.kernel_version = machine.kernel
    info.os_image = machine.os_image
    info.kubelet_version = kubelet_version()
    info.container_runtime_version = runtime_version
    info.machine_id = machine.machine_id
    return node
