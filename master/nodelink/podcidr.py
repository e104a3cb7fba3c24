"""Pod CIDR allocation: one /24 (by default) per Node out of --cluster-cidr, claimed in etcd.

The claims are the API server's (`master.api.allocators.PodCIDRClaims`): the
allocator picks the first range nobody holds and claims it for the Node before
the Node is written, and the API server claims it again (a no-op for the same
owner) with the write and releases it when the Node is deleted. A Node keeps
its range across re-registrations and master restarts, because the claim names
it as owner.

Nothing is cached: every allocation reads the claims from etcd, so a restarted
master (or another one) sees exactly what is held. Two things etcd may hold
that the claims alone do not say are repaired here, once per master and when
the ranges run out:

- Nodes written before their ranges were claimed: at the first allocation, each
  Node's podCIDR is claimed for it, so it is never handed to another Node;
- claims whose Node is gone (a master that died between deleting a Node and
  releasing its range): when no range is free, these are released and the
  search runs again. A range claimed by a registration whose Node is not
  written yet may be taken this way; the API server's claim then refuses that
  Node's write (INVALID_ARGUMENT), and its kubelet registers again.
"""

from __future__ import annotations

import ipaddress

from kybernetes.core.api.kinds import lookup
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.master.api.allocators import PodCIDRClaims
from kybernetes.master.store.etcd import Store
from kybernetes.proto import objects_pb2 as pb

log = get_logger("nodelink")


class PodCIDRExhausted(RuntimeError):
    """Every range of the cluster CIDR is taken."""


class PodCIDRAllocator:
    """Hands out non-overlapping pod ranges to Nodes."""

    def __init__(self, *, store: Store, cluster_cidr: str, node_prefix: int = 24) -> None:
        self.store = store
        self.network = ipaddress.ip_network(cluster_cidr)
        self.node_prefix = node_prefix
        self.claims = PodCIDRClaims(store=store)
        self._existing_claimed = False

    async def allocate(self, node: str) -> str:
        """The Node's range: the one it already holds, else the first free one."""
        if not self._existing_claimed:
            await self._claim_existing()
        for attempt in range(2):
            found = await self._search(node)
            if found is not None:
                return found
            if attempt == 0 and not await self._release_orphans():
                break
        raise PodCIDRExhausted(f"no free /{self.node_prefix} left in {self.network}")

    async def _search(self, node: str) -> str | None:
        owners = await self.claims.owners()
        for cidr, owner in owners.items():
            if owner == node:
                return cidr
        taken = set(owners)
        # Skip the first range: 10.244.0.0/24 would hold the network's own address.
        for subnet in list(self.network.subnets(new_prefix=self.node_prefix))[1:]:
            cidr = str(subnet)
            if cidr in taken:
                continue
            if await self.claims.take(cidr, node):
                return cidr
        return None

    async def _nodes(self) -> dict[str, str]:
        """{Node name: podCIDR} as etcd holds them now."""
        nodes, _ = await self.store.list(lookup("nodes"))
        return {n.metadata.name: n.spec.pod_cidr for n in nodes if isinstance(n, pb.Node)}

    async def _claim_existing(self) -> None:
        """Claim every stored Node's range for it (Nodes written before ranges were claimed)."""
        for name, cidr in (await self._nodes()).items():
            if cidr and not await self.claims.take(cidr, name):
                log.error("two Nodes hold one pod CIDR; the claim stays with the other",
                          object=obj_ref("nodes", name), pod_cidr=cidr)
        self._existing_claimed = True

    async def _release_orphans(self) -> bool:
        """Release claims whose Node is gone; returns whether any was."""
        nodes = await self._nodes()
        released = False
        for cidr, owner in (await self.claims.owners()).items():
            if owner not in nodes:
                await self.claims.release(cidr, owner)
                log.info("pod CIDR of a deleted Node released", object=obj_ref("nodes", owner), pod_cidr=cidr)
                released = True
        return released
