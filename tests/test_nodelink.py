"""The master's node link, driven over real gRPC by a scripted node: the protocol contract itself.

These tests speak NodeLink directly (not through a kubelet) to pin down what
the master promises every kubelet: registration, pod CIDRs, pod sync, status
writes, deletion confirmation, heartbeat cost, and the logs/exec relay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from harness.builders import make_pod
from harness.master import MasterProcess
from harness.nodelink import ScriptedNode
from harness.waiting import until
from kybernetes.ctl.client import Client, InvalidError, NotFoundError
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import node_pb2, node_pb2_grpc
from kybernetes.proto import objects_pb2 as pb


async def test_registration_assigns_pod_cidrs_and_marks_ready(client: Client, master: MasterProcess):
    a, b = ScriptedNode(master, "node-a"), ScriptedNode(master, "node-b")
    try:
        ra = await a.connect()
        rb = await b.connect()
        assert ra.node.spec.pod_cidr == "10.244.1.0/24"
        assert rb.node.spec.pod_cidr == "10.244.2.0/24"
        node = await client.get("nodes", "node-a")
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"
        assert node.status.capacity["memory"] == "4Gi"
        assert node.metadata.labels["kubernetes.io/hostname"] == "node-a"
        # Re-registering keeps the range.
        await a.close()
        a = ScriptedNode(master, "node-a")
        again = await a.connect()
        assert again.node.spec.pod_cidr == "10.244.1.0/24"
    finally:
        await a.close()
        await b.close()


async def test_heartbeats_cost_no_etcd_writes(client: Client, master: MasterProcess):
    node = ScriptedNode(master, "quiet")
    try:
        await node.connect()
        await asyncio.sleep(0)  # let registration's writes settle before reading the revision
        await until(lambda: _ready(client, "quiet"))
        before = (await client.list("nodes")).resource_version
        for seq in range(30):
            node.send(heartbeat=node_pb2.Heartbeat(sequence=seq))
        # A status write would be visible as a new revision; give the master time to (not) write.
        await until(lambda: _drained(node))
        after = (await client.list("nodes")).resource_version
        assert before == after
    finally:
        await node.close()


async def _ready(client: Client, name: str) -> bool:
    node = await client.get("nodes", name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


async def _drained(node: ScriptedNode) -> bool:
    return node.outbox.empty()


async def test_pods_flow_to_their_node_and_status_flows_back(client: Client, master: MasterProcess):
    node = ScriptedNode(master, "worker")
    try:
        await node.connect()
        sync = await node.expect("pod_sync")
        assert list(sync.pod_sync.pods) == []
        pod = await client.create(make_pod("web", node="worker"))
        await client.create(make_pod("elsewhere", node="other"))
        upsert = await node.expect("pod_upsert")
        assert upsert.pod_upsert.pod.metadata.name == "web"

        status = pb.PodStatus(phase="Running", pod_ip="10.244.1.5")
        status.conditions.add(type="Ready", status="True")
        node.send(pod_status=node_pb2.PodStatusReport(namespace="default", name="web", uid=pod.metadata.uid,
                                                      status=status))
        stored = await until(lambda: _phase(client, "web", "Running"))
        assert stored.status.pod_ip == "10.244.1.5"

        # Graceful deletion: the pod stays Terminating until the node confirms its containers are gone.
        res = await client.delete("pods", "web", unconditional=True)
        assert not res.deleted
        terminating = await node.expect(
            "pod_upsert", where=lambda m: m.pod_upsert.pod.metadata.HasField("deletion_timestamp"))
        assert terminating.pod_upsert.pod.metadata.deletion_grace_period_seconds == 30
        node.send(pod_terminated=node_pb2.PodTerminated(namespace="default", name="web", uid=pod.metadata.uid))
        await node.expect("pod_remove")
        await until(lambda: _gone(client, "web"))

        # A reconnecting node gets its full set again.
        await client.create(make_pod("web2", node="worker"))
        await node.close()
        node = ScriptedNode(master, "worker")
        await node.connect()
        sync = await node.expect("pod_sync")
        assert [p.metadata.name for p in sync.pod_sync.pods] == ["web2"]
    finally:
        await node.close()


async def _phase(client: Client, name: str, phase: str):
    pod = await client.get("pods", name)
    return pod if pod.status.phase == phase else None


async def _gone(client: Client, name: str) -> bool:
    try:
        await client.get("pods", name)
    except NotFoundError:
        return True
    return False


async def test_logs_and_exec_are_relayed_through_the_node_stream(client: Client, master: MasterProcess):
    node = ScriptedNode(master, "relay")
    try:
        await node.connect()
        await client.create(make_pod("talker", node="relay"))
        pods = node_pb2_grpc.PodAPIStub(client.channel)

        async def answer_logs():
            req = (await node.expect("log_request")).log_request
            assert (req.pod, req.tail_lines) == ("talker", 5)
            node.send(log_chunk=node_pb2.LogChunk(request_id=req.request_id, data=b"line 1\n"))
            node.send(log_chunk=node_pb2.LogChunk(request_id=req.request_id, data=b"line 2\n", eof=True))

        answering = asyncio.create_task(answer_logs())
        chunks = [c.data async for c in pods.Logs(node_pb2.LogsRequest(namespace="default", pod="talker",
                                                                        tail_lines=5))]
        await answering
        assert b"".join(chunks) == b"line 1\nline 2\n"

        async def answer_exec():
            start = (await node.expect("exec_start")).exec_start
            assert list(start.command) == ["env"]
            node.send(exec_output=node_pb2.ExecOutput(request_id=start.request_id, stream=1, data=b"A=1\n"))
            node.send(exec_output=node_pb2.ExecOutput(request_id=start.request_id, exited=True, exit_code=3))

        answering = asyncio.create_task(answer_exec())

        async def requests():
            yield node_pb2.ExecClientMessage(start=node_pb2.ExecStart(namespace="default", pod="talker",
                                                                      command=["env"]))

        replies = [r async for r in pods.Exec(requests())]
        await answering
        assert replies[0].data == b"A=1\n"
        assert replies[-1].exited and replies[-1].exit_code == 3
    finally:
        await node.close()


async def test_services_and_nodes_reach_nodes_that_ask(client: Client, master: MasterProcess):
    from tests.test_services_api import make_service

    node = ScriptedNode(master, "proxy-node")
    try:
        await node.connect(watch_nodes=True, watch_services=True)
        first = await node.expect("node_sync")
        assert [n.metadata.name for n in first.node_sync.nodes] == ["proxy-node"]
        assert first.node_sync.nodes[0].spec.pod_cidr
        await client.create(make_service("web"))
        sync = await node.expect("service_sync", where=lambda m: len(m.service_sync.services) == 1)
        assert sync.service_sync.services[0].spec.cluster_ip
        other = ScriptedNode(master, "second")
        try:
            await other.connect()
            both = await node.expect("node_sync", where=lambda m: len(m.node_sync.nodes) == 2)
            assert {n.metadata.name for n in both.node_sync.nodes} == {"proxy-node", "second"}
        finally:
            await other.close()
    finally:
        await node.close()


async def test_a_node_that_hangs_up_is_silent_and_a_broken_stream_is_lost(etcd: EtcdProcess, tmp_path: Path):
    # A kubelet that stops closes its side of the stream: the Node has the grace period (an hour here) to come
    # back. A stream that breaks (here: cancelled with no close) is a lost Node at once.
    args = ["--node-monitor-grace-period", "3600", "--controllers", "nodelifecycle"]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                             extra_args=args) as master, master.client() as client:
        polite, broken = ScriptedNode(master, "polite"), ScriptedNode(master, "broken")
        await polite.connect()
        await broken.connect()
        await polite.hang_up()
        assert broken.call is not None
        broken.call.cancel()
        await until(lambda: _ready_is(client, "broken", "Unknown"), timeout=15, message="the broken Node lost")
        # The controller judged both Nodes in the pass that found the broken one; the polite one hung up first.
        assert await _ready_is(client, "polite", "True")
        log = (tmp_path / "m.log").read_text()
        assert '"graceful": true' in log and '"graceful": false' in log


async def _ready_is(client: Client, name: str, status: str) -> bool:
    node = await client.get("nodes", name)
    return any(c.type == "Ready" and c.status == status for c in node.status.conditions)


async def test_pod_cidrs_are_unique_released_with_their_node_and_rebuilt_from_etcd(etcd: EtcdProcess,
                                                                                     tmp_path: Path):
    """A /22 holds three /24s for Nodes (the first is skipped). Registration and deletion cycle through many
    more Nodes than that because a deleted Node's range is released; a range another Node holds is refused
    at the API; and after a restart the allocator counts what etcd says: Nodes written before claims existed,
    and claims whose Node is gone (a master that died between the delete and the release)."""
    from kybernetes.master.store.etcd import Allocations, Store

    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    try:
        legacy = pb.Node()  # written straight into etcd, as a Node created before pod CIDRs were claimed
        legacy.metadata.name = "legacy"
        legacy.spec.pod_cidr = "10.250.1.0/24"
        await store.create(legacy)
        await Allocations(store, "podcidrs").claim("10.250.3.0_24", "ghost")  # its Node was deleted
    finally:
        await store.close()
    args = ["--cluster-cidr", "10.250.0.0/22", "--controllers="]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                             extra_args=args) as master, master.client() as client:
        keeper = ScriptedNode(master, "keeper")
        assert (await keeper.connect()).node.spec.pod_cidr == "10.250.2.0/24"  # .1 is the legacy Node's
        seen: list[str] = []
        for i in range(8):
            node = ScriptedNode(master, f"cycle-{i}")
            try:
                registered = await node.connect()
                seen.append(registered.node.spec.pod_cidr)
                # Another Node may not take this range, whatever it sends.
                thief = pb.Node()
                thief.metadata.name = f"thief-{i}"
                thief.spec.pod_cidr = registered.node.spec.pod_cidr
                with pytest.raises(InvalidError) as refused:
                    await client.create(thief)
                assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert f'spec.podCIDR: Invalid value: "{registered.node.spec.pod_cidr}": provided CIDR is ' \
                       'already allocated' in refused.value.message, refused.value.message
                with pytest.raises(NotFoundError):  # nothing written (the revision moves: presence is written)
                    await client.get("nodes", f"thief-{i}")
            finally:
                await node.close()
            await client.delete("nodes", f"cycle-{i}", unconditional=True)
        await keeper.close()
        # The only range left was the ghost's: reclaimed, then released and taken again by every cycle.
        assert seen == ["10.250.3.0/24"] * 8, seen
        assert sorted(n.metadata.name for n in (await client.list("nodes")).items) == ["keeper", "legacy"]


async def test_a_replaced_stream_leaves_the_next_break_lost_at_once(etcd: EtcdProcess, tmp_path: Path):
    """A kubelet that reconnects while its old stream is still open replaces it (the master ends the old one).
    The old stream's end must still count as closed: when the new stream then breaks, the Node is lost at once,
    not after the grace period (an hour here)."""
    args = ["--node-monitor-grace-period", "3600", "--controllers", "nodelifecycle"]
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                             extra_args=args) as master, master.client() as client:
        old, new = ScriptedNode(master, "flappy"), ScriptedNode(master, "flappy")
        try:
            await old.connect()
            await new.connect()
            assert old.reader is not None
            await asyncio.wait_for(asyncio.shield(old.reader), 10)  # the master ended the replaced stream
            await until(lambda: _ready_is(client, "flappy", "True"))
            assert new.call is not None
            new.call.cancel()
            await until(lambda: _ready_is(client, "flappy", "Unknown"), timeout=15,
                        message="the Node whose newest stream broke lost")
        finally:
            await old.close()
            await new.close()
