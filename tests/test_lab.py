"""The namespace lab (deploy/lab/lab.sh) and the host-gw pod routes (kubelet/routes.py).

Route tests run `sync_pod_routes` against a network namespace of their own. The lab tests share one
lab per module (a module-scoped fixture: bring-up takes seconds), under a prefix and subnets of their
own so that they can run beside a user's lab, `deploy/up.sh` and the other tests.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from kubelet.routes import DEFAULT_PROTO, route_proto, sync_pod_routes
from proto import objects_pb2 as pb


def run(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {result.returncode}: {result.stderr.strip()}")
    return result


# ----------------------------------------------------------------------------- host-gw routes


def make_node(name: str, *, pod_cidr: str = "", internal_ip: str = "") -> pb.Node:
    node = pb.Node()
    node.metadata.name = name
    node.spec.pod_cidr = pod_cidr
    if internal_ip:
        node.status.addresses.add(type="InternalIP", address=internal_ip)
    node.status.addresses.add(type="Hostname", address=name)
    return node


def routes_in(netns: str) -> list[tuple[str, str, str]]:
    """(dst, gateway, protocol number) of every route in the main table, numeric."""
    entries = json.loads(run("ip", "-n", netns, "-N", "-j", "-4", "route", "show", "table", "main").stdout)
    return sorted((e["dst"], e.get("gateway", ""), str(e.get("protocol", "3"))) for e in entries)


@pytest.fixture
def route_netns() -> Iterator[str]:
    """A private netns with a link on 10.99.9.0/24 (this node is .2); deleted at the end."""
    name = f"kybrt-{secrets.token_hex(4)}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        run("ip", "-n", name, "addr", "add", "10.99.9.2/24", "dev", "eth0")
        run("ip", "-n", name, "link", "set", "eth0", "up")
        run("ip", "-n", name, "link", "set", "peer0", "up")
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def test_route_proto_is_77_for_kyb_and_stable_elsewhere():
    assert route_proto("kyb") == DEFAULT_PROTO == 77
    assert route_proto("kyb-lab-kl") == route_proto("kyb-lab-kl")
    assert 200 <= route_proto("kyb-lab-kl") < 250
    assert route_proto("kyb-lab-kl") != route_proto("kyb-lab-klt")


async def test_sync_installs_replaces_and_removes_only_its_own_routes(route_netns: str):
    ns = route_netns
    # Routes that are not ours: a static route to node3's prefix and another owner's route.
    run("ip", "-n", ns, "route", "add", "10.244.3.0/24", "via", "10.99.9.9")
    other = str(route_proto("someone-else"))
    run("ip", "-n", ns, "route", "add", "10.244.8.0/24", "via", "10.99.9.8", "proto", other)
    # A guard blackhole that carries our protocol number (as the lab's do) is not a pod route.
    run("ip", "-n", ns, "route", "add", "blackhole", "10.244.0.0/16", "proto", "77", "metric", "4077")
    nodes = [
        make_node("node1", pod_cidr="10.244.1.0/24", internal_ip="10.99.9.2"),  # ourselves
        make_node("node2", pod_cidr="10.244.2.0/24", internal_ip="10.99.9.3"),
        make_node("node3", pod_cidr="10.244.3.0/24", internal_ip="10.99.9.4"),  # prefix owned by someone else
        make_node("node4", internal_ip="10.99.9.5"),  # no podCIDR yet
        make_node("node5", pod_cidr="10.244.5.0/24"),  # no InternalIP
        make_node("node6", pod_cidr="10.244.6.7/24", internal_ip="10.99.9.6"),  # host bits: normalized
    ]
    await sync_pod_routes(nodes=nodes, self_name="node1", netns=ns)
    assert routes_in(ns) == [
        ("10.244.0.0/16", "", "77"),
        ("10.244.2.0/24", "10.99.9.3", "77"),
        ("10.244.3.0/24", "10.99.9.9", "3"),
        ("10.244.6.0/24", "10.99.9.6", "77"),
        ("10.244.8.0/24", "10.99.9.8", other),
        ("10.99.9.0/24", "", "2"),
    ]

    # Idempotent: a second sync changes nothing.
    await sync_pod_routes(nodes=nodes, self_name="node1", netns=ns)
    assert ("10.244.2.0/24", "10.99.9.3", "77") in routes_in(ns)

    # node2 moved, node3's prefix became free, node6 left the cluster.
    run("ip", "-n", ns, "route", "del", "10.244.3.0/24", "via", "10.99.9.9")
    nodes = [
        make_node("node1", pod_cidr="10.244.1.0/24", internal_ip="10.99.9.2"),
        make_node("node2", pod_cidr="10.244.2.0/24", internal_ip="10.99.9.13"),
        make_node("node3", pod_cidr="10.244.3.0/24", internal_ip="10.99.9.4"),
    ]
    await sync_pod_routes(nodes=nodes, self_name="node1", netns=ns)
    assert routes_in(ns) == [
        ("10.244.0.0/16", "", "77"),
        ("10.244.2.0/24", "10.99.9.13", "77"),
        ("10.244.3.0/24", "10.99.9.4", "77"),
        ("10.244.8.0/24", "10.99.9.8", other),
        ("10.99.9.0/24", "", "2"),
    ]

    # An empty list removes every route of ours and nothing else.
    await sync_pod_routes(nodes=[], self_name="node1", netns=ns)
    assert routes_in(ns) == [("10.244.0.0/16", "", "77"), ("10.244.8.0/24", "10.99.9.8", other),
                             ("10.99.9.0/24", "", "2")]


async def test_sync_applies_what_it_can_when_a_gateway_is_unreachable(route_netns: str):
    ns = route_netns
    nodes = [
        make_node("far", pod_cidr="10.244.4.0/24", internal_ip="10.50.0.1"),  # no connected route to it
        make_node("near", pod_cidr="10.244.5.0/24", internal_ip="10.99.9.5"),
    ]
    await sync_pod_routes(nodes=nodes, self_name="me", netns=ns)
    assert [r for r in routes_in(ns) if r[2] == "77"] == [("10.244.5.0/24", "10.99.9.5", "77")]


async def test_tags_keep_owners_apart(route_netns: str):
    ns = route_netns
    first = [make_node("a", pod_cidr="10.244.1.0/24", internal_ip="10.99.9.11")]
    second = [make_node("b", pod_cidr="10.244.2.0/24", internal_ip="10.99.9.12")]
    await sync_pod_routes(nodes=first, self_name="", table_owner_tag="owner-one", netns=ns)
    await sync_pod_routes(nodes=second, self_name="", table_owner_tag="owner-two", netns=ns)
    # Each owner's sync leaves the other's route alone.
    await sync_pod_routes(nodes=first, self_name="", table_owner_tag="owner-one", netns=ns)
    dsts = {r[0]: r[2] for r in routes_in(ns)}
    assert dsts["10.244.1.0/24"] == str(route_proto("owner-one"))
    assert dsts["10.244.2.0/24"] == str(route_proto("owner-two"))
