"""The scheduler against real etcd and the real object service, with every controller running in-process.

Nodes are Node objects created through the API with Ready=True, and their kubelets are played
through the API (`ApiKubelets`): these tests are about scheduling decisions only, not about
running containers.
"""

from __future__ import annotations

from collections import Counter

from harness.builders import make_pod
from harness.waiting import until
from kybernetes.ctl.client import Client
from kybernetes.proto import objects_pb2 as pb
from tests import test_controllers_support as support
from tests.test_controllers_support import Cluster, edit, make_replicaset

cluster = support.cluster


async def events_for(client: Client, name: str, reason: str) -> list[pb.Event]:
    return [e for e in (await client.list("events")).items
            if e.involved_object.name == name and e.reason == reason]


async def test_replicas_spread_one_per_node_and_each_bind_is_recorded(cluster: Cluster):
    await cluster.add_nodes("n1", "n2", "n3")
    await cluster.client.create(make_replicaset("web", replicas=6))

    async def bound() -> list[pb.Pod]:
        pods = await cluster.pods(label_selector="app=web")
        return pods if len(pods) == 6 and all(p.spec.node_name for p in pods) else []

    pods = await until(bound, message="6 pods bound")
    assert Counter(p.spec.node_name for p in pods) == {"n1": 2, "n2": 2, "n3": 2}
    name = pods[0].metadata.name
    events = await until(lambda: events_for(cluster.client, name, "Scheduled"))
    assert events[0].message == f"Successfully assigned default/{name} to {pods[0].spec.node_name}"
    assert events[0].source.component == "default-scheduler" and events[0].type == "Normal"


async def test_fits_nowhere_explains_why_then_schedules_when_a_node_joins(cluster: Cluster):
    await cluster.add_nodes("n1", unschedulable=True)
    await cluster.add_nodes("n2", "n3", memory="1Gi")
    await cluster.client.create(make_pod("big", memory="2Gi"))
    expected = "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were unschedulable."

    async def condition() -> pb.Condition | None:
        pod = await cluster.client.get("pods", "big")
        return next((c for c in pod.status.conditions if c.type == "PodScheduled" and c.status == "False"), None)

    cond = await until(condition, message="PodScheduled=False")
    assert cond.reason == "Unschedulable" and cond.message == expected
    event = (await until(lambda: events_for(cluster.client, "big", "FailedScheduling")))[0]
    assert event.type == "Warning" and event.message == expected
    assert not (await cluster.client.get("pods", "big")).spec.node_name

    await cluster.add_nodes("n4", memory="4Gi")
    pod = await until(lambda: _bound(cluster, "big"), message="big bound once n4 joined")
    assert pod.spec.node_name == "n4"

    async def scheduled() -> bool:  # the binding and the PodScheduled condition are two writes
        pod = await cluster.client.get("pods", "big")
        return any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)

    await until(scheduled, message="PodScheduled=True once bound")


async def _bound(c: Cluster, name: str) -> pb.Pod | None:
    pod = await c.client.get("pods", name)
    return pod if pod.spec.node_name else None


async def test_filters_selector_taints_ports_and_capacity(cluster: Cluster):
    await cluster.add_nodes("ssd", labels={"disk": "ssd"}, cpu="1")
    await cluster.add_nodes("hdd", labels={"disk": "hdd"}, cpu="1", pods="2")
    await edit(cluster.client, "nodes", "hdd", lambda n: n.spec.taints.add(key="dedicated", value="batch",
                                                                          effect="NoSchedule"), namespace="")

    await cluster.client.create(make_pod("wants-ssd", node_selector={"disk": "ssd"}, cpu="600m"))
    assert (await until(lambda: _bound(cluster, "wants-ssd"))).spec.node_name == "ssd"
    # The ssd node's cpu is now mostly taken; the hdd node is tainted: nothing fits.
    await cluster.client.create(make_pod("cpu-hungry", cpu="600m"))
    expected = ("0/2 nodes are available: 1 Insufficient cpu, "
                "1 node(s) had untolerated taint {dedicated: batch}.")

    async def message() -> str:
        pod = await cluster.client.get("pods", "cpu-hungry")
        return next((c.message for c in pod.status.conditions if c.type == "PodScheduled"), "")

    assert await until(message) == expected

    tolerant = make_pod("tolerant", cpu="100m")
    tolerant.spec.tolerations.add(key="dedicated", operator="Equal", value="batch", effect="NoSchedule")
    tolerant.spec.node_selector["disk"] = "hdd"
    await cluster.client.create(tolerant)
    assert (await until(lambda: _bound(cluster, "tolerant"))).spec.node_name == "hdd"

    # Host ports: two pods wanting port 8080 cannot share a node.
    for name in ("port-a", "port-b"):
        pod = make_pod(name, host_port=8080)
        pod.spec.tolerations.add(key="dedicated", operator="Exists")
        await cluster.client.create(pod)
    a = await until(lambda: _bound(cluster, "port-a"))
    b = await until(lambda: _bound(cluster, "port-b"))
    assert a.spec.node_name != b.spec.node_name

    # hdd allows 2 pods (tolerant, one port pod): a third pod that only fits there is refused.
    third = make_pod("third", node_selector={"disk": "hdd"})
    third.spec.tolerations.add(key="dedicated", operator="Exists")
    await cluster.client.create(third)

    async def third_message() -> str:
        pod = await cluster.client.get("pods", "third")
        return next((c.message for c in pod.status.conditions if c.type == "PodScheduled"), "")

    assert await until(third_message) == ("0/2 nodes are available: 1 Too many pods, "
                                          "1 node(s) didn't match Pod's node affinity/selector.")
    # Freeing a slot on hdd (deleting a pod there) lets it in.
    victim = "tolerant"
    await cluster.client.delete("pods", victim, unconditional=True, grace_period_seconds=0)
    assert (await until(lambda: _bound(cluster, "third"))).spec.node_name == "hdd"
