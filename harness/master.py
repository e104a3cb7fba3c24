"""A real `kyb-master` process for tests and benchmarks: own port, given etcd, stopped (or killed) by pid.

`ClusterMaster`: a master whose --cluster-cidr is a /23 around a pod /24 reserved for it
(harness.host.odd_pod_subnet), so the one Node it registers gets exactly that /24 (the allocator skips a
cluster's first range) and concurrent runs never share a pod subnet.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.ports import free_port

REPO = Path(__file__).resolve().parents[1]


class MasterProcess:
    """One kyb-master child process; start/stop/kill/restart it like a real operator would."""

    def __init__(self, *, etcd: Sequence[str], log_path: Path, extra_args: Sequence[str] = (),
                 port: int | None = None) -> None:
        self.etcd = list(etcd)
        self.port = port or free_port()
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, *, timeout: float = 30.0) -> None:
        """Launch and wait until the API answers its health check."""
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kybernetes.master.main", "--listen", self.address, "--etcd", ",".join(self.etcd),
            "--log-level", "debug", *self.extra_args,
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        await self.wait_serving(timeout=timeout)

    async def wait_serving(self, *, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"kyb-master exited with {self.proc.returncode}: {self.tail()}")
                try:
                    resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"kyb-master not serving after {timeout}s: {self.tail()}")
                await asyncio.sleep(0.05)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def signal(self, sig: int) -> int:
        """Send a signal and wait for the process to exit; returns its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        return code

    async def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        await self.signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                await self.signal(signal.SIGTERM)
            except TimeoutError:
                await self.signal(signal.SIGKILL)

    async def __aenter__(self) -> MasterProcess:
        """`async with MasterProcess(...) as master:` starts it and stops it afterwards, whatever happens
        (a master that failed to become healthy is stopped too, so no test leaves one behind)."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass
class ClusterMaster:
    """A master process and the pod /24 its one Node will get."""

    process: MasterProcess
    pod_cidr: str

    @property
    def address(self) -> str:
        return self.process.address


__all__ = ["REPO", "ClusterMaster", "MasterProcess"]
