"""A real `kyb-kubelet` process for tests and benchmarks: started as a child, stopped or killed by pid, restarted.

`KubeletProcess` runs `python -m kybernetes.kubelet.main` against a master with a
containerd slice (namespace, bridge, root dir) or the hollow runtime. Readiness
is the kubelet's own log line "registered with the master", counted, so a
restart waits for a new registration rather than the Node object that is
already there.

`Node` is a whole node for a test: a `ClusterMaster`, one real kubelet (`start_node`, fast back-offs) on a
containerd slice, and a client of the master, with helpers to wait for pods and to reach them (logs, exec).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.containerd import ContainerdEnv, RestartableContainerd
from harness.master import REPO, ClusterMaster, JoinInfo
from harness.process import ChildProcess
from harness.waiting import until
from kybernetes.ctl.client import Client, NotFoundError
from kybernetes.proto import node_pb2, node_pb2_grpc
from kybernetes.proto import objects_pb2 as pb

REGISTERED = b'"registered with the master"'


class KubeletProcess(ChildProcess):
    """One kyb-kubelet child process."""

    def __init__(self, *, master: JoinInfo, node_name: str, root_dir: Path, log_path: Path,
                 containerd: ContainerdEnv | None = None, runtime: str = "containerd",
                 extra_args: Sequence[str] = ()) -> None:
        self.master = master
        self.node_name = node_name
        self.root_dir = root_dir
        self.log_path = log_path
        self.containerd = containerd
        self.runtime = runtime
        self.extra_args = list(extra_args)
        self.proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "kybernetes.kubelet.main", "--master", self.master.address,
                "--bootstrap-master", self.master.bootstrap, "--node-name", self.node_name,
                "--root-dir", str(self.root_dir), "--runtime", self.runtime, "--log-level", "debug"]
        if self.containerd is not None:
            argv += ["--containerd-address", self.containerd.address,
                     "--containerd-namespace", self.containerd.namespace, "--pod-bridge", self.containerd.bridge]
        return argv + self.extra_args

    def registrations(self) -> int:
        try:
            return self.log_path.read_bytes().count(REGISTERED)
        except OSError:
            return 0

    async def start(self, *, timeout: float = 30.0) -> None:
        """Launch and wait for a (new) registration with the master."""
        before = self.registrations()
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "KYB_JOIN_TOKEN": self.master.token})
        log.close()
        await self.wait_registered(before + 1, timeout=timeout)

    async def wait_registered(self, count: int, *, timeout: float = 30.0) -> None:
        """Until the kubelet has registered `count` times in total (reconnects count)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.registrations() < count:
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"kyb-kubelet exited with {self.proc.returncode}: {self.tail()}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"kyb-kubelet did not register within {timeout}s: {self.tail()}")
            await asyncio.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None



# ----------------------------------------------------------------------------- a whole node

BUSYBOX = "kyb/busybox:1"
HELLO = "kyb/hello:v1"
# Short back-offs and fast relists keep the tests quick; the semantics are the same.
# Tests run kubelets in the host's own network namespace, where other test runs do too: no routes and no
# iptables rules there.
FAST_KUBELET_ARGS = ("--backoff-base", "1", "--backoff-max", "8", "--relist-interval", "1",
                     "--heartbeat-interval", "0.5", "--container-log-max-size", "1Mi", "--no-pod-routes",
                     "--no-proxy")


@dataclass
class Node:
    """A master, one real kubelet on the test's containerd slice, and a client of the master."""

    master: ClusterMaster
    kubelet: KubeletProcess
    containerd: ContainerdEnv
    client: Client
    name: str
    restartable: RestartableContainerd | None = None

    async def create(self, pod: pb.Pod) -> pb.Pod:
        pod.metadata.namespace = pod.metadata.namespace or "default"
        pod.spec.node_name = self.name
        return await self.client.create(pod)

    async def pod_where(self, name: str, predicate: Callable[[pb.Pod], object], *, timeout: float = 30.0,
                        message: str = "") -> pb.Pod:
        """The pod once `predicate(pod)` holds."""
        async def check() -> pb.Pod | None:
            pod = await self.client.get("pods", name)
            return pod if predicate(pod) else None

        return await until(check, timeout=timeout, interval=0.1, message=message or f"pod {name} condition")

    async def gone(self, name: str, *, timeout: float = 30.0) -> None:
        async def check() -> bool:
            try:
                await self.client.get("pods", name)
            except NotFoundError:
                return True
            return False

        await until(check, timeout=timeout, interval=0.1, message=f"pod {name} deleted")

    def task_pid(self, container_id: str) -> int | None:
        """The host pid of a container's main process, from containerd's task list."""
        for line in self.containerd.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == container_id and parts[2] == "RUNNING":
                return int(parts[1])
        return None

    def container_ids(self) -> set[str]:
        return set(self.containerd.ctr("containers", "ls", "-q").stdout.split())

    # ------------------------------------------------------------- PodAPI (what kybctl logs/exec use)

    async def logs(self, pod: str, *, container: str = "", tail: int = -1, previous: bool = False) -> bytes:
        async with self.master.process.channel() as channel:
            stub = node_pb2_grpc.PodAPIStub(channel)
            data = b""
            async for chunk in stub.Logs(node_pb2.LogsRequest(namespace="default", pod=pod, container=container,
                                                               tail_lines=tail, previous=previous), timeout=20):
                data += chunk.data
            return data

    async def exec(self, pod: str, command: list[str], *, stdin: bytes | None = None,
                   container: str = "") -> tuple[int, bytes, bytes]:
        """Run a command in the pod's container through the master: (exit code, stdout, stderr)."""
        async def requests() -> AsyncIterator[node_pb2.ExecClientMessage]:
            yield node_pb2.ExecClientMessage(start=node_pb2.ExecStart(
                namespace="default", pod=pod, container=container, command=command, stdin=stdin is not None))
            if stdin is not None:
                yield node_pb2.ExecClientMessage(input=node_pb2.ExecInput(data=stdin, eof=True))

        out, err = b"", b""
        async with self.master.process.channel() as channel:
            stub = node_pb2_grpc.PodAPIStub(channel)
            async for message in stub.Exec(requests(), timeout=30):
                if message.stream == 1:
                    out += message.data
                elif message.stream == 2:
                    err += message.data
                if message.exited:
                    return message.exit_code, out, err
        raise AssertionError("exec stream ended without an exit code")


async def start_node(*, master: ClusterMaster, containerd: ContainerdEnv, tmp_path: Path,
                     extra_args: Sequence[str] = (), name: str = "node-a") -> KubeletProcess:
    kubelet = KubeletProcess(master=await master.process.join(), node_name=name, root_dir=containerd.root_dir,
                             log_path=tmp_path / f"kubelet-{name}.log", containerd=containerd,
                             extra_args=[*FAST_KUBELET_ARGS, *extra_args])
    await kubelet.start()
    return kubelet


__all__ = ["BUSYBOX", "FAST_KUBELET_ARGS", "HELLO", "KubeletProcess", "Node", "start_node"]
