"""The private etcd child: start/stop by pid, crash and restart, supervision, clusters, parent death."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from aetcd import rpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from harness.ports import free_port
from harness.waiting import until
from kybernetes.master.store.embedded import EtcdProcess, EtcdStartError, EtcdSupervisor

REPO_ROOT = Path(__file__).resolve().parent.parent


def pid_gone(pid: int) -> bool:
    """No such process, or only a zombie left (an orphan's new parent may not reap it promptly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


class EtcdKV:
    """aetcd's generated stubs on a mutual-TLS channel (etcd answers only holders of its client certificate)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.kv = rpc.KVStub(channel)
        self.cluster = rpc.ClusterStub(channel)

    async def get(self, key: bytes) -> bytes | None:
        resp = await self.kv.Range(rpc.RangeRequest(key=key), timeout=10)
        return bytes(resp.kvs[0].value) if resp.kvs else None

    async def put(self, key: bytes, value: bytes) -> None:
        await self.kv.Put(rpc.PutRequest(key=key, value=value), timeout=10)

    async def members(self) -> list[object]:
        return list((await self.cluster.MemberList(rpc.MemberListRequest(), timeout=10)).members)


@asynccontextmanager
async def client_for(proc: EtcdProcess, *, certificate: bool = True) -> AsyncIterator[EtcdKV]:
    assert proc.client_tls is not None
    ca, cert, key = proc.client_tls.read()
    credentials = grpc.ssl_channel_credentials(ca, key, cert) if certificate else grpc.ssl_channel_credentials(ca)
    async with grpc.aio.secure_channel(f"127.0.0.1:{proc.client_port}", credentials) as channel:
        yield EtcdKV(channel)


async def read(proc: EtcdProcess, key: bytes) -> bytes | None:
    async with client_for(proc) as client:
        return await client.get(key)


async def write(proc: EtcdProcess, key: bytes, value: bytes) -> None:
    async with client_for(proc) as client:
        await client.put(key, value)


async def test_start_serves_and_stop_reaps_by_pid(tmp_path: Path) -> None:
    proc = EtcdProcess(data_dir=tmp_path / "e")
    assert proc.endpoint == f"https://127.0.0.1:{proc.client_port}"
    await proc.start()
    pid = proc.pid
    assert pid is not None and proc.running and not pid_gone(pid)
    assert await proc.healthy()
    await write(proc, b"/k", b"v")
    assert await read(proc, b"/k") == b"v"
    assert proc.log_path.stat().st_size > 0

    await proc.stop()
    assert not proc.running
    # etcd's SIGTERM handler shuts down cleanly and then re-raises the signal: -15, not -9.
    assert proc.returncode == -signal.SIGTERM, "stop() should end etcd with SIGTERM, not SIGKILL"
    assert pid_gone(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not await proc.healthy()


async def test_etcd_fixture_is_healthy_and_writable(etcd: EtcdProcess) -> None:
    assert await etcd.healthy()
    await write(etcd, b"/fixture", b"1")
    assert await read(etcd, b"/fixture") == b"1"


async def test_sigkill_then_restart_keeps_endpoint_and_data(tmp_path: Path) -> None:
    proc = EtcdProcess(data_dir=tmp_path / "e")
    await proc.start()
    try:
        await write(proc, b"/durable", b"yes")
        old_pid, endpoint = proc.pid, proc.endpoint
        assert old_pid is not None
        await proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert pid_gone(old_pid)

        await proc.start()
        assert proc.pid != old_pid and proc.endpoint == endpoint
        assert await read(proc, b"/durable") == b"yes"
    finally:
        await proc.stop()


async def test_start_failure_reports_log_and_leaves_no_child(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        proc = EtcdProcess(data_dir=tmp_path / "e", client_port=busy, start_timeout=20)
        with pytest.raises(EtcdStartError, match="address already in use"):
            await proc.start()
    assert not proc.running
    assert proc.pid is not None and pid_gone(proc.pid)


def test_invalid_options_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client_port"):
        EtcdProcess(data_dir=tmp_path, client_port=70000)
    with pytest.raises(ValueError, match="initial_cluster_state"):
        EtcdProcess(data_dir=tmp_path, initial_cluster_state="old")


async def test_supervisor_restarts_dead_etcd_and_stops_it(tmp_path: Path) -> None:
    sup = EtcdSupervisor(data_dir=tmp_path / "master-etcd", client_port=free_port(), min_backoff=0.1)
    await sup.start()
    try:
        await write(sup.process, b"/before-crash", b"1")
        first_pid = sup.process.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)

        async def restarted() -> bool:
            return sup.restarts == 1 and sup.process.pid != first_pid and await sup.process.healthy()

        await until(restarted, timeout=30, message="etcd restarted by the supervisor")
        assert pid_gone(first_pid)
        assert await read(sup.process, b"/before-crash") == b"1"
    finally:
        await sup.stop()
    last_pid = sup.process.pid
    assert last_pid is not None and pid_gone(last_pid)
    assert sup.restarts == 1, "stopping must not count as a crash to recover from"


async def test_supervisor_reuses_remembered_ports(tmp_path: Path) -> None:
    data_dir = tmp_path / "master-etcd"
    port = free_port()
    first = EtcdSupervisor(data_dir=data_dir, client_port=port)
    await first.start()
    await write(first.process, b"/kept", b"across master restarts")
    await first.stop()
    assert json.loads((data_dir / "ports.json").read_text())["client"] == port

    second = EtcdSupervisor(data_dir=data_dir)
    assert second.endpoint == f"https://127.0.0.1:{port}"
    assert second.process.peer_port == first.process.peer_port
    await second.start()
    try:
        assert await read(second.process, b"/kept") == b"across master restarts"
    finally:
        await second.stop()


async def test_three_member_cluster_replicates_and_survives_one_loss(etcd_cluster: list[EtcdProcess]) -> None:
    m0, m1, m2 = etcd_cluster
    assert len({m.client_port for m in etcd_cluster} | {m.peer_port for m in etcd_cluster}) == 6
    for member in etcd_cluster:
        assert await member.healthy()
    async with client_for(m0) as client:
        assert len(await client.members()) == 3
        await client.put(b"/replicated", b"x")
    assert await read(m2, b"/replicated") == b"x"

    await m0.kill()

    async def write_succeeds() -> bool:
        # A proposal forwarded to the dead leader before the survivors notice is lost, and etcd only
        # answers it after its 7s request timeout; a client retries, so do we.
        try:
            async with asyncio.timeout(2):
                await write(m1, b"/after-loss", b"y")
        except (TimeoutError, grpc.aio.AioRpcError):
            return False
        return True

    await until(write_succeeds, timeout=30, message="a write accepted by the two survivors")
    assert await read(m2, b"/after-loss") == b"y"


PARENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from kybernetes.master.store.embedded import EtcdProcess

async def main():
    proc = EtcdProcess(data_dir=Path(sys.argv[1]))
    await proc.start()
    print(proc.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_child_dies_when_parent_is_sigkilled(tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARENT_SCRIPT, str(tmp_path / "e"),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(parent.stdout.readline(), timeout=60)  # type: ignore[union-attr]
        etcd_pid = int(line)
        assert not pid_gone(etcd_pid)
    finally:
        parent.kill()
        await parent.wait()

    try:
        await until(lambda: pid_gone(etcd_pid), timeout=20, message=f"etcd pid {etcd_pid} gone with its parent")
    finally:
        if not pid_gone(etcd_pid):
            os.kill(etcd_pid, signal.SIGKILL)


def _blocking_traffic(target: str, stop: threading.Event, counter: list[int]) -> None:
    """A synchronous gRPC client in its own thread: calls into gRPC's C core while the loop thread forks."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            counter[0] += 1


async def test_thirty_starts_beside_live_grpc_traffic(tmp_path: Path) -> None:
    """The regression test for children forked with gRPC's threads running (a Python pre-exec hook forces fork()):
    a gRPC server with an asyncio client and a blocking client in another thread keep calls in flight while a
    real etcd is started and stopped 30 times; every start must succeed and every stop must find it alive."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    stop = threading.Event()
    aio_calls, thread_calls = [0], [0]

    async def aio_traffic() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not stop.is_set():
                await asyncio.gather(*(stub.Check(health_pb2.HealthCheckRequest(), timeout=10) for _ in range(4)))
                aio_calls[0] += 4

    aio_task = asyncio.create_task(aio_traffic())
    thread = threading.Thread(target=_blocking_traffic, args=(target, stop, thread_calls), daemon=True)
    thread.start()
    try:
        for attempt in range(30):
            before = (aio_calls[0], thread_calls[0])
            proc = EtcdProcess(data_dir=tmp_path / f"e{attempt}")
            await proc.start()  # raises EtcdStartError, with etcd's log, if the child died during start
            try:
                await write(proc, b"/attempt", str(attempt).encode())
                assert proc.running, f"start {attempt}: etcd exited with {proc.returncode}"
            finally:
                await proc.stop()
            assert proc.returncode in (0, -signal.SIGTERM), \
                f"start {attempt}: etcd ended with {proc.returncode}, not by our SIGTERM"
            assert not aio_task.done(), "the asyncio gRPC client failed"
            assert thread.is_alive(), "the threaded gRPC client failed"
            # Traffic went on in both clients while this etcd was started and stopped.
            assert aio_calls[0] > before[0] and thread_calls[0] > before[1], f"start {attempt}: no traffic"
    finally:
        stop.set()
        await aio_task
        await asyncio.to_thread(thread.join, 15)
        await server.stop(None)



async def test_etcd_answers_only_holders_of_its_client_certificate(etcd: EtcdProcess) -> None:
    await write(etcd, b"/secret", b"v")
    assert await read(etcd, b"/secret") == b"v"
    # TLS without a client certificate: the handshake fails, nothing is read.
    async with client_for(etcd, certificate=False) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await anonymous.get(b"/secret")
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    # Plaintext: refused as well (a hostNetwork pod on this machine gets nothing either).
    async with grpc.aio.insecure_channel(f"127.0.0.1:{etcd.client_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await rpc.KVStub(channel).Range(rpc.RangeRequest(key=b"/secret"), timeout=5)
    assert etcd.client_tls is not None and etcd.client_tls.key.stat().st_mode & 0o777 == 0o600
