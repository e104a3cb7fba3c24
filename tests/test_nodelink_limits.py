"""Limits on the node link: a kubelet that stops reading costs the master a bounded amount of memory, is
disconnected with RESOURCE_EXHAUSTED, and is sent its full state when it comes back; other kubelets see every
change meanwhile.

The fake kubelet here is a raw gRPC client with a Node's real certificate: it opens NodeLink.Connect, sends
Register, and never reads. Memory is the master process's resident set (VmRSS in /proc/<pid>/status), sampled
throughout the changes: a bound on what the master holds, not on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from harness.master import MasterProcess
from harness.memory import MIB, PeakRSS
from harness.nodelink import ScriptedNode
from harness.waiting import until
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

SERVICES = 500  # each created, then updated: 1,000 Service changes


def service(i: int) -> pb.Service:
    svc = pb.Service()
    svc.metadata.name = f"svc-{i:04d}"
    # ~2 KiB each, so that a full snapshot is about a MiB: queueing one per broadcast would show in the RSS.
    svc.metadata.annotations["note"] = f"{i:04d}" * 512
    svc.spec.type = "ClusterIP"
    svc.spec.selector["app"] = svc.metadata.name
    port = svc.spec.ports.add(port=80)
    port.target_port.int_val = 8080
    return svc


async def test_a_kubelet_that_never_reads_is_bounded_and_disconnected_while_others_see_every_change(
        etcd: EtcdProcess, tmp_path: Path):
    log_path = tmp_path / "m.log"
    args = ["--controllers=", "--node-link-send-timeout", "2"]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=log_path,
                             extra_args=args) as master, master.client(timeout=30) as client:
        assert master.proc is not None
        pid = master.proc.pid
        reader = ScriptedNode(master, "reader")
        stuck = ScriptedNode(master, "stuck")
        never = asyncio.Event()
        try:
            await reader.connect(watch_services=True)
            await stuck.open()  # its channel, with the stuck Node's own certificate

            async def register_then_nothing() -> AsyncIterator[node_pb2.NodeMessage]:
                node = pb.Node()
                node.metadata.name = "stuck"
                node.status.addresses.add(type="InternalIP", address="127.0.0.1")
                yield node_pb2.NodeMessage(register=node_pb2.Register(node=node, watch_services=True))
                await never.wait()

            call = stuck.stub.Connect(register_then_nothing())  # never read until the end
            await until(lambda: _connected(log_path, "stuck"), message="the stuck Node connected")
            async with PeakRSS(pid, interval=0.05) as rss:
                for start in range(0, SERVICES, 25):
                    await asyncio.gather(*(client.create(service(i)) for i in range(start, min(start + 25, SERVICES))))
                for start in range(0, SERVICES, 25):
                    batch = [await client.get("services", f"svc-{i:04d}")
                             for i in range(start, min(start + 25, SERVICES))]
                    for svc in batch:
                        svc.metadata.labels["version"] = "2"
                    await asyncio.gather(*(client.update(svc) for svc in batch))
                # The other kubelet sees the end state of every change.
                await reader.expect("service_sync", timeout=60, where=_all_updated)
            grown = rss.grown
            assert grown < 50 * MIB, f"master RSS grew {grown / MIB:.1f} MiB (from {rss.baseline / MIB:.1f} MiB)"

            await until(lambda: _closed_for_not_reading(log_path), timeout=60,
                        message="the master closed the stuck kubelet's stream")
            # The status comes behind the messages already in flight: reading them all, the stream ends so.
            code = await asyncio.wait_for(_drain(call), 60)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, code
            # The reading kubelet was never disconnected.
            assert reader.reader is not None and not reader.reader.done()

            # Back again, the kubelet is sent the full state.
            again = ScriptedNode(master, "stuck")
            try:
                await again.connect(watch_services=True)
                await again.expect("service_sync", timeout=30, where=_all_updated)
            finally:
                await again.close()
        finally:
            never.set()
            await reader.close()
            await stuck.close()


def _connected(log_path: Path, name: str) -> bool:
    return any("node connected" in line and f"nodes/{name}" in line for line in log_path.read_text().splitlines())


def _closed_for_not_reading(log_path: Path) -> bool:
    return any("the kubelet does not keep up" in line and "nodes/stuck" in line
               for line in log_path.read_text().splitlines())


def _all_updated(message: node_pb2.MasterMessage) -> bool:
    services = message.service_sync.services
    return len(services) == SERVICES and all(s.metadata.labels.get("version") == "2" for s in services)


async def _drain(call: grpc.aio.StreamStreamCall) -> grpc.StatusCode:
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as err:
        return err.code()
    return await call.code()
