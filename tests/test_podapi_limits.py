"""Limits on logs and exec through the master: flow control end to end, exec sessions per Node, idle exec.

Logs: the real path, kybctl (a child process) -> master (PodAPI) -> node link -> a real kubelet process. The
kubelet runs the hollow runtime (no containerd: the master's buffering is what is under test); the test writes
the container's log file where the kubelet reads it. kybctl's stdout is a pipe the test does not read: kybctl
blocks writing, as under a pager nobody scrolls, and so stops reading its stream. Memory is the master's
resident set (VmRSS in /proc/<pid>/status), sampled throughout: a bound on what it holds, not on time.

Exec limits: a scripted kubelet (harness.nodelink) on a real master, so the test decides what the node answers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from harness.builders import make_pod
from harness.master import REPO, MasterProcess
from harness.memory import MIB, PeakRSS, rss_bytes
from harness.nodelink import ScriptedNode
from harness.waiting import until
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import node_pb2, node_pb2_grpc
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from harness.kubelet import KubeletProcess

LOG_BYTES = 10 * MIB
# Issue 17's figure is "less than the log" (10 MiB). Without flow control a client's own buffers (its HTTP/2
# window, grown to a few MiB) hide part of the log, so that figure alone is met by a master that queues 6 MiB
# of it; "a few chunks" is the real bound: 4 chunks of 64 KiB, plus what serving one session costs the process.
GROWTH_BOUND = 4 * MIB
HELD_BACK = b'"log session held back'


def _log_content() -> bytes:
    line = b"%08d the quick brown fox jumps over the lazy dog, and again, and again, and again\n"
    lines = [line % i for i in range(LOG_BYTES // len(line % 0) + 1)]
    return b"".join(lines)[:LOG_BYTES]


async def _kybctl(master: MasterProcess, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kybernetes.ctl.cli.main", *args, cwd=REPO,
        env={**os.environ, "KYBCONFIG": str(master.kubeconfig)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_logs_to_a_client_that_pauses_grow_the_master_by_a_few_chunks(
        etcd: EtcdProcess, tmp_path: Path, kubelets: Callable[..., KubeletProcess]):
    async with MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                             extra_args=["--controllers="]) as master, master.client(timeout=30) as client:
        assert master.proc is not None
        pid = master.proc.pid
        kubelet = kubelets(master=await master.join(), node_name="chatty", runtime="hollow",
                           extra_args=["--hollow-start-delay", "0.1", "--container-log-max-size", "64Mi"])
        await kubelet.start()
        created = await client.create(make_pod("talker", node="chatty"))

        async def running() -> pb.Pod | None:
            pod = await client.get("pods", "talker")
            return pod if pod.status.phase == "Running" else None

        await until(running, message="the hollow pod runs")
        log = kubelet.root_dir / "pods" / f"default_talker_{created.metadata.uid}" / "main" / "0.log"
        content = _log_content()
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(content)
        # Once through the whole path first, so that the baseline has every code path loaded.
        warm = await _kybctl(master, "logs", "talker", "--tail", "1")
        out, err = await asyncio.wait_for(warm.communicate(), 60)
        assert warm.returncode == 0 and out == content[content.rindex(b"\n", 0, -1) + 1:], err

        async with PeakRSS(pid) as rss:
            paused = await _kybctl(master, "logs", "talker")  # its stdout is not read: it stops reading its stream
            try:
                # Until the kubelet says the session is held back (the whole path is full), or the master grew
                # past the bound (no flow control: the kubelet sends the whole log into the master).
                await until(lambda: HELD_BACK in kubelet.log_path.read_bytes() or rss.grown >= GROWTH_BOUND,
                            timeout=120, message="the kubelet held back, or the master took the whole log")
                rss.sample()
                paused_growth = rss.grown
                # The client reads again: everything arrives, in order, nothing lost.
                assert paused.stdout is not None
                received = await asyncio.wait_for(paused.stdout.read(), 120)
                await asyncio.wait_for(paused.wait(), 30)
            finally:
                if paused.returncode is None:
                    paused.kill()
                    await paused.wait()
        assert paused.returncode == 0
        assert len(received) == len(content) and received == content
        grown = rss.grown
        print(f"master RSS: baseline {rss.baseline / MIB:.1f} MiB, grew {paused_growth / MIB:.2f} MiB while the "
              f"client paused, {grown / MIB:.2f} MiB over the whole transfer")
        assert grown < GROWTH_BOUND < LOG_BYTES, \
            f"master RSS grew {grown / MIB:.1f} MiB (from {rss.baseline / MIB:.1f} MiB)"


def _exec_master(etcd: EtcdProcess, tmp_path: Path, *args: str) -> MasterProcess:
    return MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=tmp_path / "m.log",
                         extra_args=["--controllers=", *args])


async def _all(call: AsyncIterator[node_pb2.ExecServerMessage]) -> list[node_pb2.ExecServerMessage]:
    return [reply async for reply in call]


class ExecCall:
    """One PodAPI.Exec call whose input the test controls (the start, then input until `finish`)."""

    def __init__(self, stub: node_pb2_grpc.PodAPIStub, *, pod: str, stdin: bool = False) -> None:
        self.inputs: asyncio.Queue[node_pb2.ExecClientMessage | None] = asyncio.Queue()
        self.inputs.put_nowait(node_pb2.ExecClientMessage(start=node_pb2.ExecStart(
            namespace="default", pod=pod, command=["sh"], stdin=stdin)))

        async def requests() -> AsyncIterator[node_pb2.ExecClientMessage]:
            while (message := await self.inputs.get()) is not None:
                yield message

        self.call = stub.Exec(requests())

    async def error(self) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in self.call:
                pass
        return raised.value

    def cancel(self) -> None:
        self.inputs.put_nowait(None)
        self.call.cancel()


async def test_exec_sessions_per_node_are_capped_with_resource_exhausted(etcd: EtcdProcess, tmp_path: Path):
    async with _exec_master(etcd, tmp_path, "--max-exec-sessions-per-node", "2") as master, \
            master.client() as client:
        node = ScriptedNode(master, "busy")
        calls: list[ExecCall] = []
        try:
            await node.connect()
            await client.create(make_pod("shell", node="busy"))
            stub = node_pb2_grpc.PodAPIStub(client.channel)
            # One call at a time, so that starts[i] is calls[i]'s session (two calls at once may reach the
            # node in either order).
            starts = []
            for _ in range(2):
                calls.append(ExecCall(stub, pod="shell"))
                starts.append((await node.expect("exec_start")).exec_start)
            assert all(s.window > 0 for s in starts)
            calls.append(ExecCall(stub, pod="shell"))
            refused = await calls[-1].error()
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
            details = refused.details() or ""
            assert 'node "busy"' in details and "--max-exec-sessions-per-node" in details and "(2)" in details
            # A session that ends frees its place.
            node.send(exec_output=node_pb2.ExecOutput(request_id=starts[0].request_id, exited=True))
            replies = await asyncio.wait_for(_all(calls[0].call), 60)
            assert replies[-1].exited
            calls.append(ExecCall(stub, pod="shell"))
            await node.expect("exec_start")
        finally:
            for call in calls:
                call.cancel()
            await node.close()


async def test_an_idle_exec_session_is_ended_and_the_node_told(etcd: EtcdProcess, tmp_path: Path):
    async with _exec_master(etcd, tmp_path, "--exec-idle-timeout", "1") as master, master.client() as client:
        node = ScriptedNode(master, "quiet")
        try:
            await node.connect()
            await client.create(make_pod("shell", node="quiet"))
            call = ExecCall(node_pb2_grpc.PodAPIStub(client.channel), pod="shell", stdin=True)
            start = (await node.expect("exec_start")).exec_start
            # The command says nothing and the client types nothing.
            ended = await call.error()
            assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ended
            assert "--exec-idle-timeout" in (ended.details() or "")
            cancel = await node.expect("cancel")
            assert cancel.cancel.request_id == start.request_id
        finally:
            await node.close()


async def test_a_kubelet_that_ignores_flow_control_ends_its_session_not_the_masters_memory(
        etcd: EtcdProcess, tmp_path: Path):
    async with _exec_master(etcd, tmp_path) as master, master.client() as client:
        assert master.proc is not None
        node = ScriptedNode(master, "flood")
        call: ExecCall | None = None
        try:
            await node.connect()
            await client.create(make_pod("shell", node="flood"))
            stub = node_pb2_grpc.PodAPIStub(client.channel)
            chunk = b"x" * (64 * 1024)
            # Once through the exec path within flow control first (a chunk, then the exit), so that the
            # baseline has its code loaded and its buffers made, as the logs test does.
            warm = ExecCall(stub, pod="shell")
            warm_id = (await node.expect("exec_start")).exec_start.request_id
            node.send(exec_output=node_pb2.ExecOutput(request_id=warm_id, stream=1, data=chunk))
            node.send(exec_output=node_pb2.ExecOutput(request_id=warm_id, exited=True))
            assert (await asyncio.wait_for(_all(warm.call), 60))[-1].exited
            baseline = rss_bytes(master.proc.pid)  # at the end, not a peak: the session's buffers are what count
            call = ExecCall(stub, pod="shell")  # never read until the end
            start = (await node.expect("exec_start")).exec_start
            for _ in range(LOG_BYTES // len(chunk)):  # 10 MiB, ignoring every credit
                node.send(exec_output=node_pb2.ExecOutput(request_id=start.request_id, stream=1, data=chunk))
            await until(lambda: _logged(master, "session overrun"), timeout=60,
                        message="the master ended the flooding session")
            grown = rss_bytes(master.proc.pid) - baseline
            assert grown < GROWTH_BOUND, f"master RSS grew {grown / MIB:.1f} MiB"
            ended = await asyncio.wait_for(call.error(), 60)
            assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ended
            assert "beyond flow control" in (ended.details() or "")
            assert (await node.expect("cancel")).cancel.request_id == start.request_id
        finally:
            if call is not None:
                call.cancel()
            await node.close()


def _logged(master: MasterProcess, event: str) -> bool:
    return f'"{event}' in master.log_path.read_text()
