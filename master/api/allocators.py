"""Service cluster IPs, nodePorts and Node pod CIDRs, held as unique claims in etcd.

A claim is an etcd create-if-absent transaction, so two requests (or two
masters) racing for the same IP, port or range can't both get it. A Service
holds its claims under its namespace/name; they are released when it is
deleted or no longer uses them. A Node holds its podCIDR under its name
(`PodCIDRClaims`): every write that gives a Node a range claims it first, so
no two Nodes ever share one, and the delete that removes the Node releases it.
The node link's allocator (`master.nodelink.podcidr`) picks free ranges from
the same claims.
"""

from __future__ import annotations

import ipaddress
import random

from kybernetes.core.api.errors import InvalidError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.master.store.etcd import Allocations, Store
from kybernetes.proto import objects_pb2 as pb

NODE_PORT_RANGE = (30000, 32767)


class AllocationError(InvalidError, ValueError):
    """A requested IP or port is taken or out of range (INVALID_ARGUMENT, naming the field)."""


class ServiceAllocator:
    """Allocates clusterIP and nodePorts for Services."""

    def __init__(self, *, store: Store, service_cidr: str) -> None:
        self.network = ipaddress.ip_network(service_cidr)
        self.ips = Allocations(store, "serviceips")
        self.ports = Allocations(store, "nodeports")

    @staticmethod
    def owner(svc: ApiObject) -> str:
        return f"{svc.metadata.namespace}/{svc.metadata.name}"

    async def allocate(self, svc: pb.Service, *, old: pb.Service | None = None) -> list[tuple[str, str]]:
        """Fill in clusterIP and nodePorts (claiming given ones); returns what was newly claimed."""
        owner = self.owner(svc)
        claimed: list[tuple[str, str]] = []
        old_ports = {p.node_port for p in old.spec.ports} if old else set()
        node_ports = svc.spec.type == "NodePort"
        try:
            # Requested values first, so a refused request normally leaves no claim behind to undo.
            for i, port in enumerate(svc.spec.ports):
                if node_ports and port.node_port and port.node_port not in old_ports:
                    lo, hi = NODE_PORT_RANGE
                    if not lo <= port.node_port <= hi:
                        raise AllocationError(f"spec.ports[{i}].nodePort: Invalid value: {port.node_port}: provided "
                                              f"port is not in the valid range. The range of valid ports is {lo}-{hi}")
                    if not await self.ports.claim(str(port.node_port), owner):
                        raise AllocationError(f"spec.ports[{i}].nodePort: Invalid value: {port.node_port}: "
                                              "provided port is already allocated")
                    claimed.append(("port", str(port.node_port)))
            if svc.spec.cluster_ip and svc.spec.cluster_ip != "None":
                if ipaddress.ip_address(svc.spec.cluster_ip) not in self.network:
                    raise AllocationError(f'spec.clusterIP: Invalid value: "{svc.spec.cluster_ip}": provided IP '
                                          f"is not in the valid range. The range of valid IPs is {self.network}")
                if not (old and old.spec.cluster_ip == svc.spec.cluster_ip):
                    if not await self.ips.claim(svc.spec.cluster_ip, owner):
                        raise AllocationError(f'spec.clusterIP: Invalid value: "{svc.spec.cluster_ip}": provided '
                                              "IP is already allocated")
                    claimed.append(("ip", svc.spec.cluster_ip))
            elif not svc.spec.cluster_ip:
                svc.spec.cluster_ip = await self._free_ip(owner)
                claimed.append(("ip", svc.spec.cluster_ip))
            for port in svc.spec.ports:
                if node_ports and not port.node_port:
                    port.node_port = await self._free_port(owner)
                    claimed.append(("port", str(port.node_port)))
        except Exception:
            await self.release_claims(owner, claimed)
            raise
        return claimed

    async def release_claims(self, owner: str, claims: list[tuple[str, str]]) -> None:
        for what, value in claims:
            await (self.ips if what == "ip" else self.ports).release(value, owner)

    async def release_unused(self, svc: pb.Service | None, old: pb.Service | None) -> None:
        """Release what `old` held and `svc` (None: deleted) no longer uses."""
        if old is None:
            return
        owner = self.owner(old)
        keep_ip = svc.spec.cluster_ip if svc else ""
        if old.spec.cluster_ip and old.spec.cluster_ip not in ("None", keep_ip):
            await self.ips.release(old.spec.cluster_ip, owner)
        keep_ports = {p.node_port for p in svc.spec.ports} if svc and svc.spec.type == "NodePort" else set()
        for port in old.spec.ports:
            if port.node_port and port.node_port not in keep_ports:
                await self.ports.release(str(port.node_port), owner)

    async def _free_ip(self, owner: str) -> str:
        taken = set(await self.ips.owners())
        hosts = self.network.num_addresses - 2
        start = random.randrange(hosts)
        for offset in range(hosts):
            ip = str(self.network.network_address + 1 + (start + offset) % hosts)
            if ip not in taken and await self.ips.claim(ip, owner):
                return ip
        raise AllocationError(f"spec.clusterIP: Internal error: no free IP left in {self.network}")

    async def _free_port(self, owner: str) -> int:
        taken = set(await self.ports.owners())
        lo, hi = NODE_PORT_RANGE
        span = hi - lo + 1
        start = random.randrange(span)
        for offset in range(span):
            port = lo + (start + offset) % span
            if str(port) not in taken and await self.ports.claim(str(port), owner):
                return port
        raise AllocationError("spec.ports.nodePort: Internal error: no free node port left")


class PodCIDRClaims:
    """Node podCIDRs as claims in etcd (`/registry/allocations/podcidrs/<cidr with _ for />`, owner: the Node)."""

    def __init__(self, *, store: Store) -> None:
        self.claims = Allocations(store, "podcidrs")

    @staticmethod
    def key(cidr: str) -> str:
        return str(ipaddress.ip_network(cidr, strict=False)).replace("/", "_")

    async def owners(self) -> dict[str, str]:
        """{cidr: Node} for every claimed range."""
        return {k.replace("_", "/"): v for k, v in (await self.claims.owners()).items()}

    async def claim(self, node: pb.Node) -> bool:
        """Claim the Node's podCIDR for it; returns whether this call claimed it (False: it already held it).

        Raises AllocationError (INVALID_ARGUMENT) when another Node holds the range."""
        cidr = node.spec.pod_cidr
        claimed, holder = await self.claims.take(self.key(cidr), node.metadata.name)
        if holder != node.metadata.name:
            raise AllocationError(f'spec.podCIDR: Invalid value: "{cidr}": provided CIDR is already allocated '
                                  f'(to Node "{holder}")')
        return claimed

    async def take(self, cidr: str, node: str) -> bool:
        """Claim `cidr` for the Node named `node`; True when it is (now or already) theirs."""
        return await self.claims.claim(self.key(cidr), node)

    async def release(self, cidr: str, node: str) -> None:
        """Give a range back, if `node` holds it."""
        await self.claims.release(self.key(cidr), node)
