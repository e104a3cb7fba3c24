"""Pod sandboxes: a network namespace and UTS namespace per pod, CNI, and the pod's /etc files (docs/containerd.md §6).

A sandbox is not a container: `create_sandbox` makes the namespaces with one helper
(`network.create_pod_namespaces`, named `<containerd namespace>-<sandbox id>`), calls the CNI bridge
plugin directly for the pod IP (`network.cni_add`, in one of the heavy-call slots), and writes
`hosts`, `hostname` and `resolv.conf` that every container of the pod gets bind-mounted read-only.
hostNetwork pods get a record and nothing else. The record (`sandboxes/<id>.json`) is written before
anything is created, so a crash half-way leaves something `remove_sandbox` can clean up, and it keeps
the exact CNI config used for ADD, because DEL must see the same one. Teardown order: CNI DEL while the
netns exists, then the sandbox's containers, then the namespaces and files.

Sandboxes are identified by `sandbox_id_for` (pod name + hash of the uid); the node's podCIDR
(`set_pod_cidr`) is the range CNI hands addresses out of.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from kybernetes.kubelet.runtime import network
from kybernetes.kubelet.runtime.base import (
    LABEL_SANDBOX_ID,
    ContainerRuntimeError,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from kybernetes.kubelet.runtime.containerd.ctr import CtrCalls, id_part
from kybernetes.kubelet.runtime.containerd.state import _atomic_write_json, _read_json

log = structlog.get_logger(__name__)


def sandbox_id_for(config: SandboxConfig) -> str:
    """`<pod name>-<hash of uid>`: readable, and distinct for two pods with the same name."""
    digest = hashlib.sha256(config.pod_uid.encode()).hexdigest()[:10]
    return f"{id_part(config.name, limit=24)}-{digest}"


class SandboxesMixin(CtrCalls):
    """Pod sandboxes of `ContainerdRuntime` (see the module docstring)."""

    # Set by ContainerdRuntime.__init__.
    root_dir: Path
    bridge: str
    _pod_cidr: str | None
    _mtu: int | None
    _sandbox_locks: dict[str, asyncio.Lock]

    if TYPE_CHECKING:  # from ContainersMixin
        async def remove_container(self, container_id: str) -> None: ...

    @property
    def pod_cidr(self) -> str | None:
        return self._pod_cidr

    def set_pod_cidr(self, cidr: str | None) -> None:
        """Set the node's pod range (the master assigns it after registration). New sandboxes use it."""
        if cidr is not None:
            try:
                network_ = ipaddress.ip_network(cidr, strict=True)
            except ValueError as error:
                raise ValueError(f"pod_cidr: {cidr!r} is not a network in CIDR notation ({error})") from error
            if network_.version != 4 or network_.prefixlen > 30:
                raise ValueError(f"pod_cidr: {cidr!r} must be an IPv4 network of /30 or larger")
            cidr = str(network_)
        self._pod_cidr = cidr

    @property
    def _sandbox_dir(self) -> Path:
        return self.root_dir / "sandboxes"

    @property
    def _ipam_dir(self) -> Path:
        return self.root_dir / "cni" / "ipam"

    def _sandbox_record_path(self, sandbox_id: str) -> Path:
        return self._sandbox_dir / f"{sandbox_id}.json"

    def _load_sandbox_record(self, sandbox_id: str) -> dict[str, Any] | None:
        record = _read_json(self._sandbox_record_path(sandbox_id))
        return record if isinstance(record, dict) else None

    @staticmethod
    def _sandbox_from_record(record: dict[str, Any]) -> Sandbox:
        config = SandboxConfig(**record["config"])
        netns = record.get("netns_path")
        ready = config.host_network or bool(netns and Path(netns).exists() and record.get("ip"))
        return Sandbox(id=record["id"], netns_path=netns, ip=record.get("ip"), config=config, ready=ready)

    def _netns_name(self, sandbox_id: str) -> str:
        return f"{self.namespace}-{sandbox_id}"

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        """Network namespace + CNI ADD (or nothing for hostNetwork). An existing ready sandbox is returned."""
        if not config.pod_uid or not config.name:
            raise SandboxError("sandbox: pod_uid and name must not be empty")
        sandbox_id = sandbox_id_for(config)
        async with self._sandbox_locks.setdefault(sandbox_id, asyncio.Lock()):
            existing = self._load_sandbox_record(sandbox_id)
            if existing is not None:
                sandbox = self._sandbox_from_record(existing)
                if sandbox.ready and sandbox.config.host_network == config.host_network:
                    return sandbox
                await self._teardown_sandbox(sandbox_id, existing)
            record: dict[str, Any] = {
                "id": sandbox_id,
                "config": {**asdict(config), "labels": dict(config.labels)},
                "created_at": time.time(),
                "netns_path": None,
                "ip": None,
            }
            if config.host_network:
                _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
                return self._sandbox_from_record(record)
            if self._pod_cidr is None:
                raise SandboxError(f"sandbox {sandbox_id}: the node has no podCIDR yet")
            # Persist first, so that a crash half-way leaves something remove_sandbox can clean up.
            name = self._netns_name(sandbox_id)
            record.update(netns_name=name, netns_path=network.netns_path(name), uts_path=None, cni_config=None)
            _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
            try:
                hostname = id_part(config.name, limit=63)
                _netns, record["uts_path"] = await network.create_pod_namespaces(name, hostname=hostname)
                if self._mtu is None:
                    self._mtu = await network.default_route_mtu()
                record["cni_config"] = network.bridge_config(
                    bridge=self.bridge, pod_cidr=self._pod_cidr, data_dir=self._ipam_dir, mtu=self._mtu)
                _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
                async with self._slots:
                    record["ip"] = await network.cni_add(
                        config=record["cni_config"], container_id=name, netns=record["netns_path"])
                self._write_etc_files(sandbox_id, hostname=hostname, ip=record["ip"])
                _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
            except (network.NetworkError, OSError) as error:
                with contextlib.suppress(ContainerRuntimeError, network.NetworkError, OSError):
                    await self._teardown_sandbox(sandbox_id, record)
                raise SandboxError(f"sandbox {sandbox_id}: {error}") from error
            log.info("sandbox created", sandbox=sandbox_id, ip=record["ip"], netns=record["netns_path"])
            return self._sandbox_from_record(record)

    def _etc_dir(self, sandbox_id: str) -> Path:
        return self._sandbox_dir / sandbox_id / "etc"

    def _write_etc_files(self, sandbox_id: str, *, hostname: str, ip: str) -> None:
        etc = self._etc_dir(sandbox_id)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" f"{ip}\t{hostname}\n")
        (etc / "hostname").write_text(hostname + "\n")
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
        (etc / "resolv.conf").write_text(resolv)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """CNI DEL, remove the sandbox's containers, then its namespaces and files. Idempotent."""
        async with self._sandbox_locks.setdefault(sandbox_id, asyncio.Lock()):
            await self._teardown_sandbox(sandbox_id, self._load_sandbox_record(sandbox_id))
        self._sandbox_locks.pop(sandbox_id, None)

    async def _teardown_sandbox(self, sandbox_id: str, record: dict[str, Any] | None) -> None:
        name = (record or {}).get("netns_name") or self._netns_name(sandbox_id)
        netns = network.netns_path(name)
        cni_config = (record or {}).get("cni_config")
        if cni_config:
            # DEL before the containers die and while the netns exists removes everything (docs/containerd.md §6).
            try:
                async with self._slots:
                    await network.cni_del(config=cni_config, container_id=name, netns=netns)
            except network.NetworkError as error:
                log.warning("CNI DEL failed", sandbox=sandbox_id, error=str(error))
        result = await self._ctr("containers", "ls", "-q", f'labels."{LABEL_SANDBOX_ID}"=="{sandbox_id}"')
        await asyncio.gather(*(self.remove_container(cid) for cid in result.stdout.split()))
        await network.delete_uts_namespace(name)
        await network.delete_netns(name)
        shutil.rmtree(self._sandbox_dir / sandbox_id, ignore_errors=True)
        self._sandbox_record_path(sandbox_id).unlink(missing_ok=True)

    async def list_sandboxes(self) -> list[Sandbox]:
        """Every sandbox recorded under root_dir (ready=False when its netns is gone)."""
        sandboxes = []
        for path in sorted(self._sandbox_dir.glob("*.json")):
            record = _read_json(path)
            if isinstance(record, dict) and "id" in record and "config" in record:
                sandboxes.append(self._sandbox_from_record(record))
        return sandboxes
