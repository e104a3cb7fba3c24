"""What a kubelet refuses on its own, whatever the master sends (defence in depth, no root, no processes):

- a pod bound to another Node is not run (a warning names it);
- a probe is not sent to a host outside this Node's pod range (only the pod's own IP, or an address in the
  Node's podCIDR);
- a host-gw route is not installed for a pod CIDR that overlaps another Node's, or via an address no
  Node can have.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from harness.waiting import until
from kybernetes.kubelet.events import EventRecorder
from kybernetes.kubelet.logs import LogStore
from kybernetes.kubelet.pods.manager import PodManager
from kybernetes.kubelet.pods.probes import run_probe
from kybernetes.kubelet.pods.status import StatusReporter
from kybernetes.kubelet.pods.worker import WorkerContext
from kybernetes.kubelet.routes import desired_routes
from kybernetes.kubelet.runtime.hollow import HollowRuntime
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

POD_CIDR = "10.244.1.0/24"


def pod(name: str, node: str) -> pb.Pod:
    obj = pb.Pod()
    obj.metadata.name, obj.metadata.namespace, obj.metadata.uid = name, "default", f"uid-{name}"
    obj.spec.node_name = node
    obj.spec.containers.add(name="main", image="kyb/busybox:1")
    return obj


async def test_a_kubelet_ignores_pods_bound_to_another_node(tmp_path: Path):
    sent: list[node_pb2.NodeMessage] = []

    def send(message: node_pb2.NodeMessage) -> bool:
        sent.append(message)
        return True

    ctx = WorkerContext(node_name="node-1", runtime=HollowRuntime(start_delay=0.0, pod_cidr=POD_CIDR),
                        logs=LogStore(tmp_path), events=EventRecorder(node_name="node-1", send=send),
                        reporter=StatusReporter(send=send), send=send, node_ip=lambda: "192.0.2.7")
    manager = PodManager(ctx=ctx, relist_interval=60.0)
    task = asyncio.create_task(manager.run())
    try:
        with structlog.testing.capture_logs() as logs:
            manager.pod_sync([pod("mine", "node-1"), pod("theirs", "node-2")])
            manager.pod_upsert(pod("late", "node-2"))
            manager.pod_upsert(pod("mine-too", "node-1"))
            await until(lambda: {"uid-mine", "uid-mine-too"} <= set(manager.workers), timeout=10,
                        message="workers for this Node's pods")
        assert set(manager.workers) == {"uid-mine", "uid-mine-too"}
        ignored = [e for e in logs if e["log_level"] == "warning" and "another Node" in e["event"]]
        assert sorted(e["object"] for e in ignored) == ["pods/default/late", "pods/default/theirs"], logs
        assert all(e["pod_node"] == "node-2" for e in ignored)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _listener() -> tuple[asyncio.Server, int, list[str]]:
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("connected")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def test_a_probe_to_a_host_outside_the_pod_range_is_refused_without_connecting():
    server, port, seen = await _listener()
    container = pb.Container(name="main", image="kyb/busybox:1")
    try:
        for field in ("tcp_socket", "http_get"):
            probe = pb.Probe()
            action = getattr(probe, field)
            action.host = "127.0.0.1"
            action.port.int_val = port
            result = await run_probe(probe, runtime=HollowRuntime(), container_id="c1", container=container,
                                     pod_ip="10.244.1.9", pod_cidr=POD_CIDR)
            assert not result.ok
            assert 'host "127.0.0.1" refused: not the pod IP or an address in this Node\'s pod range' \
                in result.message, result.message
        assert seen == []
        # The pod's own IP (the default) is always allowed: a hostNetwork pod's IP is the node's.
        probe = pb.Probe()
        probe.tcp_socket.port.int_val = port
        result = await run_probe(probe, runtime=HollowRuntime(), container_id="c1", container=container,
                                 pod_ip="127.0.0.1", pod_cidr=POD_CIDR)
        assert result.ok, result.message
    finally:
        server.close()
        await server.wait_closed()


def node(name: str, cidr: str, ip: str) -> pb.Node:
    obj = pb.Node()
    obj.metadata.name = name
    obj.spec.pod_cidr = cidr
    obj.status.addresses.add(type="InternalIP", address=ip)
    return obj


def test_routes_skip_overlapping_pod_cidrs_and_impossible_gateways():
    nodes = [
        node("self", "10.244.1.0/24", "192.0.2.1"),
        node("good", "10.244.2.0/24", "192.0.2.2"),
        node("hijack", "0.0.0.0/1", "192.0.2.66"),  # overlaps every other range
        node("copy-a", "10.244.3.0/24", "192.0.2.3"),
        node("copy-b", "10.244.3.0/24", "192.0.2.4"),  # the same range twice: neither is trusted
        node("loop", "10.244.4.0/24", "127.0.0.1"),
        node("meta", "10.244.5.0/24", "169.254.169.254"),
        node("greedy", "10.244.1.128/25", "192.0.2.5"),  # inside our own range
    ]
    with structlog.testing.capture_logs() as logs:
        wanted = desired_routes(nodes=nodes, self_name="self")
    assert wanted == {"10.244.2.0/24": "192.0.2.2"}
    skipped = {e["node"] for e in logs if e["log_level"] == "warning"}
    assert skipped == {"hijack", "copy-a", "copy-b", "loop", "meta", "greedy"}, logs
