"""Pod CIDR allocation: one /24 (by default) per Node out of --cluster-cidr, claimed in etcd.

A Node keeps its range across re-registrations and master restarts, because
the claim key names it as owner.
"""

from __future__ import annotations

import ipaddress

from kybernetes.master.store.etcd import Allocations, Store


class PodCIDRExhausted(RuntimeError):
    """Every range of the cluster CIDR is taken."""


class PodCIDRAllocator:
    """Hands out non-overlapping pod ranges to Nodes."""

    def __init__(self, *, store: Store, cluster_cidr: str, node_prefix: int = 24) -> None:
        self.network = ipaddress.ip_network(cluster_cidr)
        self.node_prefix = node_prefix
        self.claims = Allocations(store, "podcidrs")

    async def allocate(self, node: str) -> str:
        """The Node's range: the one it already holds, else the first free one."""
        owners = {k.replace("_", "/"): v for k, v in (await self.claims.owners()).items()}
        for cidr, owner in owners.items():
            if owner == node:
                return cidr
        taken = set(owners)
        # Skip the first range: 10.244.0.0/24 would hold the network's own address.
        for subnet in list(self.network.subnets(new_prefix=self.node_prefix))[1:]:
            cidr = str(subnet)
            if cidr in taken:
                continue
            if await self.claims.claim(cidr.replace("/", "_"), node):
                return cidr
        raise PodCIDRExhausted(f"no free /{self.node_prefix} left in {self.network}")

    async def release(self, node: str, cidr: str) -> None:
        """Give a deleted Node's range back."""
        await self.claims.release(cidr.replace("/", "_"), node)
