"""The endpoints controller in a real master: Endpoints follow the ready, non-terminating pods.

Control logic only: pod IPs and readiness are written through the API's
UpdateStatus, exactly what the node link does with a kubelet's report; no
containers are involved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.builders import make_pod
from harness.master import MasterProcess
from harness.waiting import until
from kybernetes.ctl.client import Client
from tests.test_services_api import make_service


@pytest.fixture
async def client(etcd, tmp_path: Path) -> AsyncIterator[Client]:
    """A master running only the endpoints controller (no scheduler or pod GC to race with the test)."""
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "master.log",
                             extra_args=["--controllers=endpoints"]) as proc, proc.client() as c:
        yield c


async def set_status(client: Client, name: str, *, ip: str, ready: bool) -> None:
    pod = await client.get("pods", name)
    pod.status.phase = "Running"
    pod.status.pod_ip = ip
    del pod.status.conditions[:]
    pod.status.conditions.add(type="Ready", status="True" if ready else "False")
    await client.update_status(pod)


async def endpoints_of(client: Client, name: str) -> tuple[list[str], list[str], list[int]]:
    ep = await client.get("endpoints", name)
    ready = sorted(a.ip for s in ep.subsets for a in s.addresses)
    not_ready = sorted(a.ip for s in ep.subsets for a in s.not_ready_addresses)
    ports = sorted({p.port for s in ep.subsets for p in s.ports})
    return ready, not_ready, ports


async def test_endpoints_track_ready_pods(client: Client):
    svc = make_service("web", type_="ClusterIP", port=80)
    svc.spec.ports[0].target_port.str_val = "http"
    await client.create(svc)
    for i in range(3):
        pod = make_pod(f"web-{i}", labels={"app": "web"}, node="n1")
        pod.spec.containers[0].ports.add(name="http", container_port=8080)
        await client.create(pod)
    await client.create(make_pod("other", labels={"app": "db"}, node="n1"))
    await set_status(client, "other", ip="10.244.1.99", ready=True)
    for i in range(3):
        await set_status(client, f"web-{i}", ip=f"10.244.1.{10 + i}", ready=i != 2)

    async def expect(ready, not_ready):
        async def check():
            got = await endpoints_of(client, "web")
            return got == (ready, not_ready, [8080]) or None
        return await until(check, timeout=10)

    await expect(["10.244.1.10", "10.244.1.11"], ["10.244.1.12"])
    await set_status(client, "web-2", ip="10.244.1.12", ready=True)
    await expect(["10.244.1.10", "10.244.1.11", "10.244.1.12"], [])
    # Terminating pods leave at once (graceful deletion of a bound pod keeps the object for now).
    res = await client.delete("pods", "web-0", unconditional=True)
    assert not res.deleted
    await expect(["10.244.1.11", "10.244.1.12"], [])
    # A pod whose labels stop matching leaves too.
    pod = await client.get("pods", "web-1")
    pod.metadata.labels["app"] = "elsewhere"
    await client.update(pod)
    await expect(["10.244.1.12"], [])


async def test_endpoints_go_with_their_service(client: Client):
    await client.create(make_service("gone", type_="ClusterIP"))
    await until(lambda: client.get("endpoints", "gone"))
    await client.delete("services", "gone", unconditional=True)

    async def deleted():
        items = (await client.list("endpoints")).items
        return not any(e.metadata.name == "gone" for e in items)

    await until(deleted)
