"""Applies the proxy's rules to the Node's iptables, atomically, and removes them.

`iptables-restore --noflush` replaces our chains in one commit (a bad rule
leaves the previous set intact). The jumps from the built-in chains into ours
are checked and inserted one by one, outside the restore, so re-applying never
duplicates them. On start the proxy removes every KYB- chain first and
rebuilds from scratch; `remove_all()` leaves no trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ctl.machinery.log import get_logger
from kubelet.proxy.rules import OUR_FILTER_CHAINS, OUR_NAT_CHAINS, render, service_ports
from proto import objects_pb2 as pb

log = get_logger("proxy")

JUMPS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", "KYB-SERVICES"),
    ("nat", "OUTPUT", "KYB-SERVICES"),
    ("nat", "POSTROUTING", "KYB-POSTROUTING"),
    ("filter", "INPUT", "KYB-REJECT"),
    ("filter", "OUTPUT", "KYB-REJECT"),
    ("filter", "FORWARD", "KYB-REJECT"),
)


class IptablesError(RuntimeError):
    """An iptables command failed."""


class Iptables:
    """Runs iptables commands, optionally inside a network namespace (tests, tools)."""

    def __init__(self, *, netns: str | None = None) -> None:
        self.prefix: list[str] = ["ip", "netns", "exec", netns] if netns else []

    async def run(self, *args: str, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.prefix, *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 30)
        if check and proc.returncode != 0:
            raise IptablesError(f"{' '.join(args)}: {err.decode().strip()}")
        return proc.returncode or 0, out.decode()

    async def our_nat_chains(self) -> list[str]:
        _, out = await self.run("iptables-save", "-t", "nat")
        return [line[1:].split()[0] for line in out.splitlines() if line.startswith(":KYB-")]

    async def ensure_jumps(self) -> None:
        for table, chain, target in JUMPS:
            code, _ = await self.run("iptables", "-w", "-t", table, "-C", chain, "-j", target, check=False)
            if code != 0:
                await self.run("iptables", "-w", "-t", table, "-I", chain, "1", "-j", target)

    async def apply(self, services: Sequence[pb.Service], endpoints: Sequence[pb.Endpoints]) -> str:
        """Program the rules for these Services; returns the text applied."""
        text = render(service_ports(services, endpoints), stale_nat_chains=await self.our_nat_chains())
        await self.run("iptables-restore", "-w", "--noflush", stdin=text)
        await self.ensure_jumps()
        return text

    async def remove_all(self) -> None:
        """Remove our jumps and chains (proxy start and `down`)."""
        for table, chain, target in JUMPS:
            while (await self.run("iptables", "-w", "-t", table, "-D", chain, "-j", target, check=False))[0] == 0:
                pass
        for table, fixed in (("nat", OUR_NAT_CHAINS), ("filter", OUR_FILTER_CHAINS)):
            _, out = await self.run("iptables-save", "-t", table)
            chains = {line[1:].split()[0] for line in out.splitlines() if line.startswith(":KYB-")} | set(fixed)
            for chain in chains:
                await self.run("iptables", "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                await self.run("iptables", "-w", "-t", table, "-X", chain, check=False)
