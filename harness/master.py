"""A real `kyb-master` process for tests and benchmarks: own ports, given etcd, stopped (or killed) by pid.

Security is on, as it always is: the master serves mutual TLS and writes its admin credentials file into its
data dir; `credentials()`, `client()` and `channel()` use them. `join` is what a kubelet needs to join
(addresses and a join token made on first use). Every master of this Python process shares one server
token, so a second master on the same etcd (a restart, a split controller manager) opens the same CA.

`ClusterMaster`: a master whose --cluster-cidr is a /23 around a pod /24 reserved for it
(harness.host.odd_pod_subnet), so the one Node it registers gets exactly that /24 (the allocator skips a
cluster's first range) and concurrent runs never share a pod subnet.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.ports import free_port, free_port_pair
from harness.process import ChildProcess
from kybernetes.core.identity.credentials import Credentials, secure_channel
from kybernetes.core.identity.kubeconfig import resolve
from kybernetes.ctl.client import Client
from kybernetes.ctl.client.identity import create_token
from kybernetes.master.store.etcdtls import EtcdClientTLS

REPO = Path(__file__).resolve().parents[1]
SERVER_TOKEN = secrets.token_urlsafe(24)


@dataclass(frozen=True)
class JoinInfo:
    """What a kubelet needs to join a master: its API and bootstrap addresses and a join token."""

    address: str
    bootstrap: str
    token: str


class MasterProcess(ChildProcess):
    """One kyb-master child process; start/stop/kill/restart it like a real operator would."""

    def __init__(self, *, etcd: Sequence[str], log_path: Path, extra_args: Sequence[str] = (),
                 port: int | None = None, data_dir: Path | None = None, token: str = SERVER_TOKEN,
                 etcd_tls: EtcdClientTLS | None = None, bootstrap_beside: bool = False) -> None:
        self.etcd = list(etcd)
        self.etcd_tls = etcd_tls
        # bootstrap_beside: the bootstrap port is the API port + 1, as by default (where --join looks for it).
        self.port = port or (free_port_pair() if bootstrap_beside else free_port())
        self.bootstrap_port = self.port + 1 if bootstrap_beside else free_port()
        self.log_path = log_path
        self.data_dir = data_dir or log_path.parent / f"{log_path.stem}-data"
        self.token = token
        self.extra_args = list(extra_args)
        self.proc: asyncio.subprocess.Process | None = None
        self._join_token = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def bootstrap_address(self) -> str:
        return f"127.0.0.1:{self.bootstrap_port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin credentials file the master writes (cluster-admin)."""
        return self.data_dir / "admin.conf"

    def credentials(self) -> Credentials:
        return resolve(self.kubeconfig).credentials

    def client(self, *, timeout: float = 10.0) -> Client:
        """An admin client (use as `async with master.client() as client`)."""
        return Client(self.address, credentials=self.credentials(), timeout=timeout)

    def channel(self, credentials: Credentials | None = None) -> grpc.aio.Channel:
        """A raw grpc.aio channel to the API port (admin unless other credentials are given)."""
        return secure_channel(self.address, credentials or self.credentials())

    async def join(self) -> JoinInfo:
        """Addresses and a join token (made once, never expires) for kubelets."""
        if not self._join_token:
            async with self.client() as client:
                self._join_token = (await create_token(client, description="harness")).token
        return JoinInfo(address=self.address, bootstrap=self.bootstrap_address, token=self._join_token)

    async def start(self, *, timeout: float = 30.0) -> None:
        """Launch and wait until the API answers its health check."""
        log = self.log_path.open("ab")
        tls = [] if self.etcd_tls is None else ["--etcd-cafile", str(self.etcd_tls.ca), "--etcd-certfile",
                                                 str(self.etcd_tls.cert), "--etcd-keyfile", str(self.etcd_tls.key)]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kybernetes.master.main", "--listen", self.address, "--etcd", ",".join(self.etcd),
            *tls, "--bootstrap-listen", self.bootstrap_address, "--data-dir", str(self.data_dir), "--token", self.token,
            "--log-level", "debug", *self.extra_args,
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        await self.wait_serving(timeout=timeout)

    async def wait_serving(self, *, timeout: float = 30.0) -> None:
        """Until the master answers its health check SERVING, over mutual TLS with its admin credentials."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.kubeconfig.exists():
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"kyb-master exited with {self.proc.returncode}: {self.tail()}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"kyb-master wrote no {self.kubeconfig} within {timeout}s: {self.tail()}")
            await asyncio.sleep(0.05)
        async with self.channel() as channel:
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

    @property
    def kubeconfig(self) -> Path:
        return self.process.kubeconfig

    def client(self, *, timeout: float = 10.0) -> Client:
        return self.process.client(timeout=timeout)


__all__ = ["REPO", "SERVER_TOKEN", "ClusterMaster", "JoinInfo", "MasterProcess"]
