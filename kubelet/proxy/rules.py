"""Builds the iptables-restore input for every Service, as kube-proxy's iptables mode does.

Pure functions, no I/O, so the rules are easy to test and to diff. All chains
are ours (prefix KYB-); the jumps into them from the built-in chains are added
separately (see `iptables.py`), so re-applying this text with `--noflush`
replaces exactly our chains and nothing else.

nat:
  KYB-SERVICES    clusterIP:port → KYB-SVC-…; local destination → KYB-NODEPORTS (last rule)
  KYB-NODEPORTS   nodePort → mark for masquerade, then KYB-SVC-…
  KYB-SVC-…       one rule per ready endpoint, `statistic random` with 1/n, 1/(n-1), … so
                  connections spread evenly; ClientIP affinity via `recent`
  KYB-SEP-…       DNAT to one endpoint; hairpin traffic (endpoint to itself) is masqueraded
  KYB-POSTROUTING masquerade what was marked
filter:
  KYB-REJECT      Services without ready endpoints refuse connections at once (tcp-reset)

Every address in the text is judged first, because one line iptables-restore
refuses fails the whole commit, on every Node, and leaves every Service stale:
an endpoint must pass `formats.endpoint_ip` (IPv4 unicast, not loopback,
link-local or multicast: the API server's own rule for Endpoints), a clusterIP
must be IPv4. What fails is left out and the rest still applies;
`screen_endpoints` says what was left out and why, for the proxy to log and
report as an Event.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kybernetes.core.api import formats
from kybernetes.proto import objects_pb2 as pb

MASQ_MARK = "0x4000/0x4000"
AFFINITY_SECONDS = 10800
OUR_NAT_CHAINS = ("KYB-SERVICES", "KYB-NODEPORTS", "KYB-MARK-MASQ", "KYB-POSTROUTING")
OUR_FILTER_CHAINS = ("KYB-REJECT",)


def chain_name(prefix: str, *parts: str) -> str:
    """A stable chain name per service port or endpoint (iptables allows 28 characters)."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return f"{prefix}-" + base64.b32encode(digest).decode()[:16]


@dataclass(frozen=True, slots=True)
class ServicePortRules:
    """One Service port and the endpoints behind it."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    node_port: int
    affinity: bool
    endpoints: tuple[tuple[str, int], ...]  # (ip, port), ready only

    @property
    def svc_chain(self) -> str:
        return chain_name("KYB-SVC", self.namespace, self.name, self.port_name, self.protocol)

    def sep_chain(self, ip: str, port: int) -> str:
        return chain_name("KYB-SEP", self.namespace, self.name, self.port_name, self.protocol, f"{ip}:{port}")


@dataclass(frozen=True, slots=True)
class SkippedEndpoint:
    """An Endpoints address left out of the rules, and the rule it broke."""

    namespace: str
    name: str  # the Endpoints (and Service) name
    ip: str
    reason: str


def screen_endpoints(endpoints: Iterable[pb.Endpoints]) -> tuple[list[pb.Endpoints], list[SkippedEndpoint]]:
    """The Endpoints without the addresses no rule may carry, and those addresses (in order)."""
    clean: list[pb.Endpoints] = []
    skipped: list[SkippedEndpoint] = []
    for ep in endpoints:
        bad = [(a.ip, problems) for subset in ep.subsets for a in (*subset.addresses, *subset.not_ready_addresses)
               if (problems := formats.endpoint_ip(a.ip))]
        if not bad:
            clean.append(ep)
            continue
        kept = pb.Endpoints()
        kept.CopyFrom(ep)
        for subset in kept.subsets:
            for field in (subset.addresses, subset.not_ready_addresses):
                good = [a for a in field if not formats.endpoint_ip(a.ip)]
                del field[:]
                field.extend(good)
        clean.append(kept)
        skipped.extend(SkippedEndpoint(namespace=ep.metadata.namespace, name=ep.metadata.name, ip=ip,
                                       reason="; ".join(problems)) for ip, problems in bad)
    return clean, skipped


def service_ports(services: Iterable[pb.Service], endpoints: Iterable[pb.Endpoints]) -> list[ServicePortRules]:
    """Join Services with their Endpoints into one entry per Service port (sorted, deterministic).

    A Service whose clusterIP is not IPv4 is left out, and so is every endpoint address that
    `screen_endpoints` would remove: no address that could break the restore reaches the rules."""
    by_key = {(e.metadata.namespace, e.metadata.name): e for e in endpoints}
    out = []
    for svc in sorted(services, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        if not svc.spec.cluster_ip or svc.spec.cluster_ip == "None" or formats.ipv4_address(svc.spec.cluster_ip):
            continue
        ep = by_key.get((svc.metadata.namespace, svc.metadata.name))
        for sp in svc.spec.ports:
            protocol = sp.protocol or "TCP"
            targets: set[tuple[str, int]] = set()
            for subset in ep.subsets if ep else ():
                port = next((p.port for p in subset.ports if p.name == sp.name and (p.protocol or "TCP") == protocol),
                            None)
                if port is None:
                    continue
                targets.update((a.ip, port) for a in subset.addresses if not formats.endpoint_ip(a.ip))
            out.append(ServicePortRules(
                namespace=svc.metadata.namespace, name=svc.metadata.name, port_name=sp.name, protocol=protocol,
                cluster_ip=svc.spec.cluster_ip, port=sp.port,
                node_port=sp.node_port if svc.spec.type == "NodePort" else 0,
                affinity=svc.spec.session_affinity == "ClientIP", endpoints=tuple(sorted(targets))))
    return out


def render(ports: Sequence[ServicePortRules], *, stale_nat_chains: Iterable[str] = (),
           stale_filter_chains: Iterable[str] = (), jump_fixes: Mapping[str, Sequence[str]] | None = None) -> str:
    """The iptables-restore text (for `--noflush`) for these Service ports.

    Stale chains (ours, no longer wanted) are deleted and `jump_fixes` (per table: rules that insert
    missing jumps into our chains or delete duplicates) are applied in the same commit.
    """
    nat_chains = list(OUR_NAT_CHAINS)
    nat: list[str] = []
    filt: list[str] = []
    nodeport_rules: list[str] = []
    for sp in ports:
        proto = sp.protocol.lower()
        comment = f'-m comment --comment "{sp.namespace}/{sp.name}:{sp.port_name or sp.port}"'
        if not sp.endpoints:
            filt.append(f"-A KYB-REJECT -d {sp.cluster_ip}/32 -p {proto} -m {proto} --dport {sp.port} {comment} "
                        "-j REJECT" + (" --reject-with tcp-reset" if proto == "tcp" else ""))
            if sp.node_port:
                filt.append(f"-A KYB-REJECT -m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {sp.node_port}"
                            f" {comment} -j REJECT" + (" --reject-with tcp-reset" if proto == "tcp" else ""))
            continue
        nat_chains.append(sp.svc_chain)
        nat.append(f"-A KYB-SERVICES -d {sp.cluster_ip}/32 -p {proto} -m {proto} --dport {sp.port} {comment} "
                   f"-j {sp.svc_chain}")
        if sp.node_port:
            nodeport_rules.append(f"-A KYB-NODEPORTS -p {proto} -m {proto} --dport {sp.node_port} {comment} "
                                  "-j KYB-MARK-MASQ")
            nodeport_rules.append(f"-A KYB-NODEPORTS -p {proto} -m {proto} --dport {sp.node_port} {comment} "
                                  f"-j {sp.svc_chain}")
        n = len(sp.endpoints)
        if sp.affinity:
            for ip, port in sp.endpoints:
                sep = sp.sep_chain(ip, port)
                nat.append(f"-A {sp.svc_chain} -m recent --name {sep} --rcheck --seconds {AFFINITY_SECONDS} "
                           f"--reap -j {sep}")
        for i, (ip, port) in enumerate(sp.endpoints):
            sep = sp.sep_chain(ip, port)
            nat_chains.append(sep)
            remaining = n - i
            if remaining > 1:
                nat.append(f"-A {sp.svc_chain} -m statistic --mode random --probability {1 / remaining:.10f} -j {sep}")
            else:
                nat.append(f"-A {sp.svc_chain} -j {sep}")
            nat.append(f"-A {sep} -s {ip}/32 -j KYB-MARK-MASQ")
            affinity = f"-m recent --name {sep} --set " if sp.affinity else ""
            nat.append(f"-A {sep} -p {proto} {affinity}-m {proto} -j DNAT --to-destination {ip}:{port}")
    nat.extend(nodeport_rules)
    nat.append("-A KYB-SERVICES -m addrtype --dst-type LOCAL -j KYB-NODEPORTS")
    nat.append(f"-A KYB-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}")
    nat.append(f"-A KYB-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN")
    nat.append("-A KYB-POSTROUTING -j MARK --set-xmark 0x0/0x4000")
    nat.append("-A KYB-POSTROUTING -j MASQUERADE --random-fully")
    wanted = set(nat_chains)
    stale = sorted(c for c in stale_nat_chains if c not in wanted)
    stale_filter = sorted(c for c in stale_filter_chains if c not in OUR_FILTER_CHAINS)
    fixes = jump_fixes or {}
    lines = ["*nat", *(f":{c} - [0:0]" for c in nat_chains), *(f":{c} - [0:0]" for c in stale), *nat,
             *(f"-X {c}" for c in stale), *fixes.get("nat", ()), "COMMIT",
             "*filter", *(f":{c} - [0:0]" for c in (*OUR_FILTER_CHAINS, *stale_filter)), *filt,
             *(f"-X {c}" for c in stale_filter), *fixes.get("filter", ()), "COMMIT", ""]
    return "\n".join(lines)
