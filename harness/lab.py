"""The namespace lab (deploy/lab/lab.sh) under names of its own, and helpers to run apps on it.

`pick_lab` gives a lab a random prefix, a free 10.99.X.0/24 and a free /20 of pod CIDRs, so that it runs
beside a user's lab, `deploy/up.sh`, the test fixtures and another lab (the tests' `lab` fixture brings
one up per test module). Workloads are the sample app (kyb/hello:vN, see deploy/images/build.py) applied with
kybctl, as a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.waiting import until
from kybernetes.ctl.client import Client
from kybernetes.proto import objects_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
LAB_SH = REPO / "deploy" / "lab" / "lab.sh"
WORKERS = 3
POD_NAME_LABEL = "io.kybernetes.pod.name"


def run(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {result.returncode}: {result.stderr.strip()}")
    return result


@dataclass
class Lab:
    """A lab brought up by lab.sh under names and subnets of its own."""

    dir: Path
    prefix: str
    subnet: str
    cluster_cidr: str
    workers: int

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KYB_LAB_DIR": str(self.dir), "KYB_LAB_PREFIX": self.prefix,
                "KYB_LAB_SUBNET": self.subnet, "KYB_LAB_CLUSTER_CIDR": self.cluster_cidr}

    @property
    def server(self) -> str:
        return f"{self.subnet}.10:6443"

    @property
    def registry(self) -> str:
        return f"{self.subnet}.10:5000"

    @property
    def kubeconfig(self) -> Path:
        """The lab master's admin credentials (what `lab.sh env` exports as KYBCONFIG)."""
        return self.dir / "master" / "state" / "master" / "admin.conf"

    def client(self) -> Client:
        return Client(kubeconfig=self.kubeconfig)

    def sh(self, *args: str, check: bool = True, timeout: float = 240.0,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(LAB_SH), *args], input=stdin, capture_output=True, text=True,
                                timeout=timeout, env=self.env,
                                stdin=None if stdin is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"lab.sh {' '.join(args)} -> {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def node_netns(self, node: int) -> str:
        return f"{self.prefix}-node{node}"

    def node_ip(self, node: int) -> str:
        return f"{self.subnet}.{10 + node}"

    def ctr(self, node: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        socket = self.dir / f"node{node}" / "run" / "containerd" / "containerd.sock"
        return run("ctr", "--connect-timeout", "2s", "-a", str(socket), "-n", self.node_netns(node), *args,
                   check=check)

    def running_pods(self, node: int) -> list[str]:
        """Names of the pods with a RUNNING container in this node's containerd (empty when it is down)."""
        tasks = self.ctr(node, "tasks", "ls", check=False)
        if tasks.returncode != 0:
            return []
        names = []
        for line in tasks.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "RUNNING":
                info = self.ctr(node, "containers", "info", fields[0], check=False)
                if info.returncode == 0:
                    names.append(json.loads(info.stdout).get("Labels", {}).get(POD_NAME_LABEL, "?"))
        return names

    def running_everywhere(self, prefix: str) -> Counter[str]:
        """How many running copies of each pod whose name starts with `prefix`, over all workers."""
        counts: Counter[str] = Counter()
        for node in range(1, self.workers + 1):
            counts.update(name for name in self.running_pods(node) if name.startswith(prefix))
        return counts

    def processes_in(self, netns: str) -> list[str]:
        return run("ip", "netns", "pids", netns, check=False).stdout.split()


def used_routes() -> str:
    return run("ip", "-4", "route", "show", "table", "all").stdout


def pick_lab(base: Path, *, letter: str, workers: int, taken: Set[str] = frozenset()) -> Lab:
    """Random names, a free 10.99.X.0/24 and a free /20 of pod CIDRs (10.244.128-191, clear of the fixtures')."""
    routes = used_routes()
    links = run("ip", "-o", "link").stdout
    for _ in range(50):
        prefix = f"k{letter}{secrets.token_hex(1)}"
        subnet = f"10.99.{secrets.randbelow(100) + 100}"
        cidr_base = 128 + 16 * secrets.randbelow(4)
        cluster_cidr = f"10.244.{cidr_base}.0/20"
        if (f"{prefix}br0" in links or f" {subnet}." in routes or subnet in taken or cluster_cidr in taken
                or any(f"10.244.{cidr_base + i}." in routes for i in range(16))):
            continue
        return Lab(dir=base / prefix, prefix=prefix, subnet=subnet, cluster_cidr=cluster_cidr, workers=workers)
    raise RuntimeError("no free lab names/subnets")


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A directory with a short path: containerd's sockets live under it (unix paths max out at 104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="kyblab-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- the sample app on the lab


def hello_manifest(lab: Lab, *, name: str, replicas: int, version: str = "v1") -> str:
    """A Deployment of kyb/hello:VERSION labelled app=NAME, Ready when its /healthz answers."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: hello
        image: {lab.registry}/kyb/hello:{version}
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
          periodSeconds: 1
"""


async def http_get(ip: str, *, port: int = 8080, timeout: float = 3.0) -> str:
    """GET / from the host; the body, or raises."""
    async def fetch() -> str:
        reader, writer = await asyncio.open_connection(ip, port)
        try:
            writer.write(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            await writer.drain()
            response = (await reader.read()).decode(errors="replace")
        finally:
            writer.close()
        head, _, body = response.partition("\r\n\r\n")
        if " 200 " not in head.splitlines()[0]:
            raise AssertionError(f"{ip}: {head.splitlines()[0]}")
        return body.strip()

    return await asyncio.wait_for(fetch(), timeout)


def is_ready(obj: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in obj.status.conditions)


async def live_pods(kyb: Client, app: str) -> list[pb.Pod]:
    pods = (await kyb.list("pods", namespace="default", label_selector=f"app={app}")).items
    return [p for p in pods if not p.metadata.HasField("deletion_timestamp")]


async def ready_pods(kyb: Client, app: str) -> list[pb.Pod]:
    return [p for p in await live_pods(kyb, app) if p.status.phase == "Running" and is_ready(p)]


async def count_is(pods: Awaitable[list[pb.Pod]], count: int) -> bool:
    return len(await pods) == count


async def none_left(lab: Lab, kyb: Client, app: str) -> bool:
    pods = (await kyb.list("pods", namespace="default", label_selector=f"app={app}")).items
    return not pods and not lab.running_everywhere(app + "-")


@contextlib.asynccontextmanager
async def deployment(lab: Lab, *, name: str, replicas: int) -> AsyncIterator[Client]:
    """Apply a hello Deployment with kybctl, wait until all replicas are Ready; delete it afterwards."""
    lab.sh("kybctl", "apply", "-f", "-", stdin=hello_manifest(lab, name=name, replicas=replicas))
    async with lab.client() as kyb:
        try:
            await until(lambda: count_is(ready_pods(kyb, name), replicas), timeout=90)
            yield kyb
        finally:
            lab.sh("kybctl", "delete", "deployment", name, check=False)
            with contextlib.suppress(AssertionError):
                await until(lambda: none_left(lab, kyb, name), timeout=60)
