"""The hollow runtime end to end: real master, real kubelet process, no containers.

Hollow nodes create no network, so they share the default cluster CIDR of the `master` fixture.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.master import MasterProcess
from harness.waiting import until
from kybernetes.ctl.client import NotFoundError
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from harness.kubelet import KubeletProcess

# The `kubelets` factory fixture.


def hollow_pod(name: str, node: str) -> pb.Pod:
    pod = pb.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    pod.spec.node_name = node
    pod.spec.containers.add(name="main", image="kyb/busybox:1")
    return pod


async def test_hollow_node_runs_pods_and_deletes_them(master: MasterProcess,
                                                      kubelets: Callable[..., KubeletProcess]):
    kubelet = kubelets(master=await master.join(), node_name="hollow-a", runtime="hollow",
                       extra_args=["--hollow-start-delay", "0.2"])
    await kubelet.start()
    async with master.client() as client:
        node = await client.get("nodes", "hollow-a")
        assert node.metadata.labels["kybernetes.io/hollow"] == "true"
        assert node.metadata.labels["kubernetes.io/hostname"] == "hollow-a"
        assert node.status.node_info.container_runtime_version.startswith("hollow://")
        assert node.status.capacity["pods"] == "110" and node.status.allocatable["cpu"]
        assert {a.type for a in node.status.addresses} == {"InternalIP", "Hostname"}
        assert node.spec.pod_cidr

        await client.create(hollow_pod("h1", "hollow-a"))

        async def running() -> pb.Pod | None:
            pod = await client.get("pods", "h1")
            return pod if pod.status.phase == "Running" else None

        pod = await until(running)
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node.spec.pod_cidr)
        ready = {c.type: c.status for c in pod.status.conditions}
        assert ready["Ready"] == "True" and ready["ContainersReady"] == "True"
        status = pod.status.container_statuses[0]
        assert status.state.HasField("running") and status.ready and status.container_id

        pod = await client.get("pods", "h1")
        await client.delete("pods", "h1", resource_version=pod.metadata.resource_version)

        async def gone() -> bool:
            try:
                await client.get("pods", "h1")
            except NotFoundError:
                return True
            return False

        await until(gone)
        assert kubelet.alive


async def test_many_hollow_nodes_in_one_process(master: MasterProcess, kubelets: Callable[..., KubeletProcess]):
    kubelet = kubelets(master=await master.join(), node_name="hollow", runtime="hollow",
                       extra_args=["--hollow-count", "3", "--hollow-start-delay", "0.1"])
    await kubelet.start()
    await kubelet.wait_registered(3)
    async with master.client() as client:
        nodes = await client.list("nodes")
        assert sorted(n.metadata.name for n in nodes.items) == ["hollow-0", "hollow-1", "hollow-2"]
        assert all(n.metadata.labels["kybernetes.io/hollow"] == "true" for n in nodes.items)
        for i in range(3):
            await client.create(hollow_pod(f"p{i}", f"hollow-{i}"))

        async def all_running() -> bool:
            pods = await client.list("pods")
            return len(pods.items) == 3 and all(p.status.phase == "Running" for p in pods.items)

        await until(all_running)
