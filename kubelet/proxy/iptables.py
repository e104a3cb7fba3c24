"""Applies the proxy's rules to the Node's iptables, atomically, and removes them.

Every apply is one `iptables-restore --noflush` commit that rebuilds all of
ours from scratch: each of our chains is declared (which flushes it) and
refilled, chains of ours that are no longer wanted are deleted, and the
jumps from the built-in chains into ours are inserted where missing (and
deduplicated) in the same commit. A bad rule leaves the previous set intact,
and there is never a moment with half the rules (say, DNAT without the
masquerade jump), which would leave conntrack entries that break a
connection for good. Nothing is flushed on start: the rules of a previous
run keep serving until the first sync replaces them, so a kubelet restart
does not interrupt Service traffic. `remove_all()` (for `down`) leaves no trace.
An Endpoints address no rule may carry (see `rules`) is left out with a warning
naming it, and the rest is applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from kybernetes.core.log import get_logger, obj_ref
from kybernetes.kubelet.proxy.rules import OUR_FILTER_CHAINS, OUR_NAT_CHAINS, render, screen_endpoints, service_ports
from kybernetes.proto import objects_pb2 as pb

log = get_logger("proxy")

JUMPS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", "KYB-SERVICES"),
    ("nat", "OUTPUT", "KYB-SERVICES"),
    ("nat", "POSTROUTING", "KYB-POSTROUTING"),
    ("filter", "INPUT", "KYB-REJECT"),
    ("filter", "OUTPUT", "KYB-REJECT"),
    ("filter", "FORWARD", "KYB-REJECT"),
)


def _by_table(saved: str) -> dict[str, list[str]]:
    """iptables-save output split into its tables' lines."""
    tables: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in saved.splitlines():
        if line.startswith("*"):
            lines = tables.setdefault(line[1:].strip(), [])
        else:
            lines.append(line)
    return tables


def _our_chains(saved: Sequence[str]) -> list[str]:
    """Our chains in one table's iptables-save lines."""
    return [line[1:].split()[0] for line in saved if line.startswith(":KYB-")]


def jump_fixes(saved: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Per table, the restore lines that leave exactly one of each jump in JUMPS (inserted first if missing)."""
    fixes: dict[str, list[str]] = {}
    for table, chain, target in JUMPS:
        rule = f"-A {chain} -j {target}"
        present = sum(1 for line in saved.get(table, ()) if line.strip() == rule)
        if present == 0:
            fixes.setdefault(table, []).append(f"-I {chain} 1 -j {target}")
        fixes.setdefault(table, []).extend(f"-D {chain} -j {target}" for _ in range(present - 1))
    return fixes


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
        return _our_chains(out.splitlines())

    async def apply(self, services: Sequence[pb.Service], endpoints: Sequence[pb.Endpoints]) -> str:
        """Program the rules for these Services in one commit; returns the text applied."""
        endpoints, skipped = screen_endpoints(endpoints)
        for bad in skipped:
            log.warning("endpoint skipped: no rule may carry this address", object=obj_ref(
                "endpoints", bad.name, bad.namespace), ip=bad.ip, reason=bad.reason)
        _, saved = await self.run("iptables-save")
        current = _by_table(saved)
        text = render(service_ports(services, endpoints), stale_nat_chains=_our_chains(current.get("nat", [])),
                      stale_filter_chains=_our_chains(current.get("filter", [])), jump_fixes=jump_fixes(current))
        await self.run("iptables-restore", "-w", "--noflush", stdin=text)
        return text

    async def remove_all(self) -> None:
        """Remove our jumps and chains (`down`)."""
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
