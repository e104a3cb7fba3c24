"""Service objects through the real API: clusterIP and nodePort allocation as etcd claims."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from kybernetes.ctl.client import Client, InvalidError
from kybernetes.proto import objects_pb2 as pb


def make_service(name: str, *, node_port: int = 0, port: int = 8080, type_: str = "NodePort") -> pb.Service:
    svc = pb.Service()
    svc.metadata.name = name
    svc.spec.type = type_
    svc.spec.selector["app"] = name
    p = svc.spec.ports.add(port=port)
    p.target_port.int_val = port
    if node_port:
        p.node_port = node_port
    return svc


async def test_cluster_ip_and_node_port_are_allocated_uniquely(client: Client):
    created = [await client.create(make_service(f"s{i}")) for i in range(20)]
    ips = [s.spec.cluster_ip for s in created]
    ports = [s.spec.ports[0].node_port for s in created]
    assert len(set(ips)) == 20 and len(set(ports)) == 20
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/16") for ip in ips)
    assert all(30000 <= p <= 32767 for p in ports)
    plain = await client.create(make_service("plain", type_="ClusterIP"))
    assert plain.spec.cluster_ip and plain.spec.ports[0].node_port == 0


async def test_duplicate_and_out_of_range_node_ports_are_refused(client: Client):
    await client.create(make_service("first", node_port=30080))
    before = (await client.list("services")).resource_version
    with pytest.raises(InvalidError, match=r"spec\.ports\[0\]\.nodePort.*30080.*already allocated"):
        await client.create(make_service("second", node_port=30080))
    with pytest.raises(InvalidError, match=r"spec\.ports\[0\]\.nodePort"):
        await client.create(make_service("third", node_port=80))
    assert (await client.list("services")).resource_version == before  # nothing written


async def test_racing_requests_for_one_node_port_have_one_winner(client: Client):
    async def attempt(i: int) -> bool:
        try:
            await client.create(make_service(f"race{i}", node_port=31000))
            return True
        except InvalidError:
            return False

    results = await asyncio.gather(*(attempt(i) for i in range(10)))
    assert results.count(True) == 1


async def test_deleting_a_service_releases_its_ip_and_port(client: Client):
    svc = await client.create(make_service("temp", node_port=30500))
    await client.delete("services", "temp", unconditional=True)
    again = make_service("temp2", node_port=30500)
    again.spec.cluster_ip = svc.spec.cluster_ip
    reused = await client.create(again)
    assert reused.spec.cluster_ip == svc.spec.cluster_ip and reused.spec.ports[0].node_port == 30500


async def test_update_keeps_allocations_and_cluster_ip_is_immutable(client: Client):
    svc = await client.create(make_service("keep"))
    manifest_like = make_service("keep")  # as `apply` would send it: no clusterIP, no nodePort
    manifest_like.metadata.resource_version = svc.metadata.resource_version
    manifest_like.metadata.labels["tier"] = "web"
    updated = await client.update(manifest_like)
    assert updated.spec.cluster_ip == svc.spec.cluster_ip
    assert updated.spec.ports[0].node_port == svc.spec.ports[0].node_port
    updated.spec.cluster_ip = "10.96.99.99"
    with pytest.raises(InvalidError, match="spec.clusterIP"):
        await client.update(updated)
