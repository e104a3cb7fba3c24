"""Host-gw pod routes: reach every other Node's pod CIDR through that Node's InternalIP.

This is flannel's host-gw backend on a flat L2 network (docs/lab-network.md §6): for each other Node,
`ip route replace <podCIDR> via <InternalIP>`. The master sends the whole Node list (NodeSync) and the
kubelet calls `sync_pod_routes` with it; the function converges the routing table to that list.

Ownership: every route we install carries a routing protocol number (`proto 77` for the tag "kyb"),
so a sync only ever lists, replaces and deletes unicast routes with that number (a blackhole that
carries it, as the lab's guard routes do, is left alone). A route to the same prefix
that someone else owns (the kernel's connected route of a local bridge, an admin's static route, a
blackhole) is never replaced: that Node is skipped with a warning. Several owners can share one
routing table by passing different `table_owner_tag`s (the namespace lab's host-side router does).

What the Node list says is not trusted blindly (the API server refuses podCIDRs outside the cluster
CIDR, duplicates and bad addresses, but one wrong route sends every pod's traffic astray): a Node is
skipped with a warning when its podCIDR overlaps this Node's own, equals another Node's (neither is
trusted), or contains another Node's (`0.0.0.0/1` would capture them all), or when its InternalIP is not
an address a Node can have (unspecified, loopback, link-local, multicast: `formats.endpoint_ip`).

Failures of single routes (a gateway not on any connected subnet, say) are logged and the rest is
still applied; the next NodeSync retries. Listing the table failing raises `RouteError`: without it
nothing safe can be done. Calls are serialized, so overlapping NodeSyncs never interleave edits.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from kybernetes.core.api import formats
from kybernetes.core.log import get_logger
from kybernetes.proto import objects_pb2 as pb

DEFAULT_TAG = "kyb"
DEFAULT_PROTO = 77
COMMAND_TIMEOUT = 10.0
# Numbers below 200 are partly taken by the kernel and routing daemons (rt_protos: bird 12, FRR 186-192).
_DERIVED_PROTO_BASE = 200
_DERIVED_PROTO_SPAN = 50

log = get_logger("kubelet.routes")
# One lock per event loop: an asyncio.Lock must not be shared between loops.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


class RouteError(Exception):
    """The routing table could not be read, so nothing was changed."""


@dataclass(frozen=True)
class _Route:
    dst: str
    gateway: str
    protocol: str
    metric: int
    unicast: bool  # blackhole, unreachable, local, … routes are never ours, whatever their protocol


def route_proto(table_owner_tag: str) -> int:
    """The routing protocol number that marks the routes of one owner: 77 for "kyb", else stable in 200-249."""
    if table_owner_tag == DEFAULT_TAG:
        return DEFAULT_PROTO
    digest = hashlib.sha256(table_owner_tag.encode()).digest()
    return _DERIVED_PROTO_BASE + int.from_bytes(digest[:4], "big") % _DERIVED_PROTO_SPAN


def free_route_proto(table_owner_tag: str, *, used: set[int]) -> int:
    """`route_proto(table_owner_tag)`, or the next number (200-249, wrapping) when that one is in `used`:
    for host-side owners that share the host's table and must never share a number (a sync deletes the
    routes of its number that it does not want). Raises RouteError when all 50 are taken."""
    start = route_proto(table_owner_tag)
    for i in range(_DERIVED_PROTO_SPAN):
        proto = _DERIVED_PROTO_BASE + (start - _DERIVED_PROTO_BASE + i) % _DERIVED_PROTO_SPAN
        if proto not in used:
            return proto
    raise RouteError(f"no free routing protocol number in {_DERIVED_PROTO_BASE}-"
                     f"{_DERIVED_PROTO_BASE + _DERIVED_PROTO_SPAN - 1}: every one carries routes")


def desired_routes(*, nodes: Sequence[pb.Node], self_name: str) -> dict[str, str]:
    """{pod CIDR: InternalIP} for every other Node that has both; bad or conflicting values are skipped with a
    warning (see the module docstring)."""
    own: ipaddress.IPv4Network | None = None
    candidates: dict[str, tuple[ipaddress.IPv4Network, str]] = {}
    for node in nodes:
        name = node.metadata.name
        if not node.spec.pod_cidr:
            continue
        try:
            network = ipaddress.ip_network(node.spec.pod_cidr, strict=False)
        except ValueError as err:
            log.warning("node skipped: bad podCIDR or InternalIP", node=name, error=str(err))
            continue
        if not isinstance(network, ipaddress.IPv4Network):
            continue
        if name == self_name:
            own = network
            continue
        internal = [a.address for a in node.status.addresses if a.type == "InternalIP" and a.address]
        if not internal:
            continue
        try:
            address = ipaddress.ip_address(internal[0])
        except ValueError as err:
            log.warning("node skipped: bad podCIDR or InternalIP", node=name, error=str(err))
            continue
        if address.version != 4:
            continue
        problems = formats.endpoint_ip(str(address))
        if problems:
            log.warning("node skipped: its InternalIP cannot be a gateway", node=name, via=str(address),
                        error="; ".join(problems))
            continue
        candidates[name] = (network, str(address))
    wanted: dict[str, str] = {}
    for name, (network, gateway) in candidates.items():
        conflict = ""
        if own is not None and network.overlaps(own):
            conflict = f"overlaps this Node's own pod range {own}"
        for other, (other_network, _) in candidates.items():
            if conflict:
                break
            if other == name:
                continue
            if other_network == network:
                conflict = f"Node {other} has the same pod range"
            elif other_network.subnet_of(network):
                conflict = f"contains the pod range {other_network} of Node {other}"
        if conflict:
            log.warning("node skipped: its podCIDR conflicts with another", node=name, pod_cidr=str(network),
                        error=conflict)
            continue
        wanted[str(network)] = gateway
    return wanted


async def sync_pod_routes(*, nodes: Sequence[pb.Node], self_name: str, table_owner_tag: str = DEFAULT_TAG,
                          proto: int | None = None, netns: str | None = None) -> None:
    """Make our routes in the main table exactly {other Node's podCIDR via its InternalIP}.

    The routes are marked with `proto`, or else with `route_proto(table_owner_tag)`: an owner that must
    never share its number with another (the namespace lab's host side) picks a free one and passes it.
    `netns` runs the `ip` commands in that named network namespace (`ip -n`), for tools and tests;
    the kubelet leaves it unset and edits the namespace it runs in.
    """
    lock = _locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await _sync(wanted=desired_routes(nodes=nodes, self_name=self_name),
                    proto=route_proto(table_owner_tag) if proto is None else proto, netns=netns)


async def _sync(*, wanted: dict[str, str], proto: int, netns: str | None) -> None:
    routes = await _list_routes(netns=netns)
    ours = [r for r in routes if r.protocol == str(proto) and r.unicast]
    foreign = {r.dst for r in routes if r.protocol != str(proto) or not r.unicast}
    for cidr, gateway in sorted(wanted.items()):
        if cidr in foreign:
            log.warning("route skipped: the prefix already has a route we do not own", dst=cidr, via=gateway)
            continue
        if any(r.dst == cidr and r.gateway == gateway and r.metric == 0 for r in ours):
            continue
        returncode, _, stderr = await _ip(["route", "replace", cidr, "via", gateway, "proto", str(proto)],
                                          netns=netns)
        if returncode == 0:
            log.info("pod route installed", dst=cidr, via=gateway)
        else:
            log.warning("pod route not installed", dst=cidr, via=gateway, error=stderr.strip())
    # `replace` rewrote the metric-0 route of every wanted prefix in place; the rest of ours is stale.
    for route in ours:
        if route.dst in wanted and route.dst not in foreign and route.metric == 0:
            continue
        argv = ["route", "del", route.dst, "proto", str(proto), "metric", str(route.metric)]
        returncode, _, stderr = await _ip(argv, netns=netns)
        if returncode == 0:
            log.info("stale pod route removed", dst=route.dst, via=route.gateway)
        else:
            log.warning("stale pod route not removed", dst=route.dst, error=stderr.strip())


async def _list_routes(*, netns: str | None) -> list[_Route]:
    returncode, stdout, stderr = await _ip(["-N", "-j", "-4", "route", "show", "table", "main"], netns=netns)
    if returncode != 0:
        raise RouteError(f"ip route show: {stderr.strip() or f'exit {returncode}'}")
    try:
        entries = json.loads(stdout or "[]")
    except ValueError as err:
        raise RouteError(f"ip route show: unreadable JSON: {err}") from err
    routes = []
    for entry in entries:
        dst = entry.get("dst", "")
        if dst == "default":
            dst = "0.0.0.0/0"
        elif "/" not in dst:
            dst += "/32"
        routes.append(_Route(dst=dst, gateway=entry.get("gateway", ""),
                             protocol=str(entry.get("protocol", "boot")),
                             metric=int(entry.get("metric", 0)),
                             unicast=entry.get("type", "unicast") in ("unicast", "1")))
    return routes


async def _ip(args: list[str], *, netns: str | None) -> tuple[int, str, str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError as err:
        raise RouteError("the `ip` command (iproute2) is missing") from err
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    except (TimeoutError, asyncio.CancelledError):
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return process.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace")
