"""The namespace lab (deploy/lab/lab.sh) under names of its own, and helpers to run apps on it.

`pick_lab` gives a lab a random prefix, a free 10.99.X.0/24 and a free /20 of pod CIDRs, so that it runs
beside a user's lab, `deploy/up.sh`, the test fixtures and another lab (the tests' `lab` fixture brings
one up per test module). Workloads are the sample app (kyb/hello:vN, see deploy/images/build.py) applied with
kybctl, as a user would.

Several masters (`masters=3`, `lab.sh up --masters 3`, docs/lab-ha.md): master N is numbered 1..masters
(netns `<prefix>-master` for 1, `<prefix>-masterN` after; IP SUBNET.(11-N)); `client()` talks to all of them
(the lab's admin credentials list every master), `master_client(n)` to one. `leaders()` asks every master's
health service who runs the control loops, `leader()` waits until exactly one does. `lab.sh` runs the faults
(`kill-master N`, `stop-etcd N`, `partition master N`, …); `pid()` and `etcd_status()` observe them.
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

from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.waiting import until
from kybernetes.ctl.client import Client
from kybernetes.proto import objects_pb2 as pb

REPO = Path(__file__).resolve().parents[1]
LAB_SH = REPO / "deploy" / "lab" / "lab.sh"
WORKERS = 3
POD_NAME_LABEL = "io.kybernetes.pod.name"
# The health service name a master reports SERVING on while it runs the control loops (docs/ha.md §1).
LEADER_HEALTH = "kyb.leader"


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
    masters: int = 1
    route_proto: int | None = None  # the routing protocol number lab.sh picked for its host routes (once up)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KYB_LAB_DIR": str(self.dir), "KYB_LAB_PREFIX": self.prefix,
                "KYB_LAB_SUBNET": self.subnet, "KYB_LAB_CLUSTER_CIDR": self.cluster_cidr}

    def up(self) -> None:
        """`lab.sh up` with this lab's size."""
        self.sh("up", "--workers", str(self.workers), "--masters", str(self.masters))

    @property
    def server(self) -> str:
        """Master 1's API address."""
        return self.master_address(1)

    @property
    def servers(self) -> list[str]:
        """Every master's API address, in order (master 1 first)."""
        return [self.master_address(n) for n in range(1, self.masters + 1)]

    @property
    def registry(self) -> str:
        return f"{self.subnet}.10:5000"

    @property
    def kubeconfig(self) -> Path:
        """The lab's admin credentials (what `lab.sh env` exports as KYBCONFIG): master 1's own file with one
        master, a copy listing every master (`server: A,B,C`) with several."""
        if self.masters > 1:
            return self.dir / "admin.conf"
        return self.dir / "master" / "state" / "master" / "admin.conf"

    def client(self) -> Client:
        """A client of every master (it fails over: core/channel.py)."""
        return Client(kubeconfig=self.kubeconfig)

    # ------------------------------------------------------------------------- masters

    def _check_master(self, n: int) -> None:
        if not 1 <= n <= self.masters:
            raise ValueError(f"no master {n} in this lab (1..{self.masters})")

    def master_name(self, n: int) -> str:
        """The machine name of master N: "master" for 1 (as a one-master lab), "masterN" after."""
        self._check_master(n)
        return "master" if n == 1 else f"master{n}"

    def master_netns(self, n: int) -> str:
        return f"{self.prefix}-{self.master_name(n)}"

    def master_ip(self, n: int) -> str:
        self._check_master(n)
        return f"{self.subnet}.{11 - n}"

    def master_address(self, n: int) -> str:
        return f"{self.master_ip(n)}:6443"

    def master_veth(self, n: int) -> str:
        """The host side of master N's cable (what `partition master N` downs)."""
        self._check_master(n)
        return f"{self.prefix}vm" if n == 1 else f"{self.prefix}vm{n}"

    def link_up(self, veth: str) -> bool:
        """Whether a host-side cable of the lab is up (not partitioned, not powered off)."""
        flags = run("ip", "-o", "link", "show", veth).stdout.split("<", 1)[1].split(">", 1)[0].split(",")
        return "UP" in flags

    def master_dir(self, n: int) -> Path:
        return self.dir / self.master_name(n)

    def master_client(self, n: int, *, timeout: float = 5.0) -> Client:
        """A client of master N alone (its serving certificate names its IP)."""
        return Client(self.master_address(n), kubeconfig=self.kubeconfig, timeout=timeout)

    def pid(self, machine: str, component: str) -> int | None:
        """The pid of a component (etcd, registry, master, containerd, kubelet) of a machine ("master",
        "master2", "node1", …) while it runs (from provision.sh's pid file), else None."""
        try:
            pid = int((self.dir / machine / "run" / f"{component}.pid").read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        return None if stat.rpartition(")")[2].split()[0] == "Z" else pid

    def master_pid(self, n: int, component: str = "master") -> int | None:
        """The pid of master N's kyb-master (or its etcd: component="etcd") while it runs."""
        return self.pid(self.master_name(n), component)

    async def _health(self, n: int, service: str, timeout: float) -> bool | None:
        """Whether master N reports `service` SERVING; None when it gives no answer in time."""
        try:
            async with self.master_client(n, timeout=timeout) as kyb:
                answer = await health_pb2_grpc.HealthStub(kyb.channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except Exception:  # down, partitioned, paused
            return None
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    async def serving(self, n: int, *, timeout: float = 2.0) -> bool:
        """Whether master N answers its health check SERVING (its API works: etcd reachable)."""
        return bool(await self._health(n, "", timeout))

    async def leads(self, n: int, *, timeout: float = 1.0) -> bool | None:
        """Whether master N runs the control loops (True/False), or None when it gives no answer."""
        return await self._health(n, LEADER_HEALTH, timeout)

    async def leaders(self, *, timeout: float = 1.0) -> list[int]:
        """The numbers of the masters that answer that they lead (normally exactly one)."""
        answers = await asyncio.gather(*(self.leads(n, timeout=timeout) for n in range(1, self.masters + 1)))
        return [n for n, leads in enumerate(answers, 1) if leads]

    async def leader(self, *, timeout: float = 30.0, other_than: int | None = None) -> int:
        """Wait until exactly one master leads (and, with `other_than`, not that one) and return its number."""
        async def one() -> int | None:
            found = await self.leaders()
            return found[0] if len(found) == 1 and found[0] != other_than else None

        what = "exactly one master leading" + (f" (not master {other_than})" if other_than else "")
        return await until(one, timeout=timeout, interval=0.1, message=what)

    def leader_sh(self, *, wait: float = 0) -> int:
        """`lab.sh leader [--wait S]`: the leader's number as the command line tells it."""
        args = ["leader", "--wait", f"{wait:g}"] if wait else ["leader"]
        return int(self.sh(*args, timeout=wait + 60).stdout.strip())

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`lab.sh etcdctl ARGS…`: etcdctl against every member with the lab's client certificate."""
        return self.sh("etcdctl", "--command-timeout", "3s", *args, check=check, timeout=30)

    def etcd_status(self, n: int) -> dict[str, Any] | None:
        """`etcdctl endpoint status` of master N's member alone (revision, raftIndex, leader…), or None when
        it does not answer."""
        result = self.etcdctl("--endpoints", f"https://{self.master_ip(n)}:2379", "endpoint", "status",
                              "-w", "json", check=False)
        if result.returncode != 0:
            return None
        statuses = json.loads(result.stdout)
        return statuses[0]["Status"] if statuses else None

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


def pick_lab(base: Path, *, letter: str, workers: int, masters: int = 1, taken: Set[str] = frozenset()) -> Lab:
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
        return Lab(dir=base / prefix, prefix=prefix, subnet=subnet, cluster_cidr=cluster_cidr, workers=workers,
                   masters=masters)
    raise RuntimeError("no free lab names/subnets")


def lab_traces(lab: Lab) -> dict[str, list[str]]:
    """Everything on the host that carries one of the lab's names, subnets or directories (after
    `lab.sh down`: nothing)."""
    prefix, chain = lab.prefix, lab.prefix.upper() + "-FWD"
    host_env = lab.dir / "host.env"
    if host_env.exists():  # lab.sh picked a routing protocol number no other lab uses; remember it for later
        lab.route_proto = int(dict(line.split("=", 1) for line in host_env.read_text().split())["PROTO"])
    protos = {str(lab.route_proto)} if lab.route_proto else set()
    routes = run("ip", "-N", "-4", "route", "show", "table", "all").stdout.splitlines()
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(lab.dir) in cmdline or f"--tag kyb-lab-{prefix} " in cmdline + " ":
                    processes.append(f"{entry.name} {cmdline}")
    return {
        "netns": [n for n in run("ip", "netns", "list").stdout.split() if n.startswith(prefix + "-")],
        "links": [line.split(":")[1].strip() for line in run("ip", "-o", "link").stdout.splitlines()
                  if line.split(":")[1].strip().startswith(prefix)],
        "iptables": [line for line in run("iptables-save").stdout.splitlines() if chain in line],
        "nft": [line for line in run("nft", "list", "ruleset").stdout.splitlines() if prefix in line],
        "routes": [r for r in routes
                   if f"{lab.subnet}." in r or any(f"proto {proto} " in r + " " for proto in protos)],
        "mounts": [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if str(lab.dir) in line or f"/{prefix}-node" in line],
        "processes": processes,
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{prefix}-node*")],
        "runc": [str(p) for p in Path("/run/containerd/runc").glob(f"{prefix}-node*")],
        "uts": [str(p) for p in Path("/run/kybernetes/uts").glob(f"{prefix}-node*")],
        "dir": [str(lab.dir)] if lab.dir.exists() else [],
    }


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A directory with a short path: containerd's sockets live under it (unix paths max out at 104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="kyblab-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- the sample app on the lab


def hello_manifest(lab: Lab, *, name: str, replicas: int, version: str = "v1", max_surge: int | None = None,
                   stay: bool = False) -> str:
    """A Deployment of kyb/hello:VERSION labelled app=NAME, Ready when its /healthz answers; with `max_surge`,
    rolled that many pods at a time and none unavailable; with `stay`, its pods tolerate their Node being
    unreachable or not ready for good (never evicted)."""
    strategy = "" if max_surge is None else (
        f"\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {{maxSurge: {max_surge}, maxUnavailable: 0}}")
    tolerations = "" if not stay else "".join(
        f"\n      - {{key: node.kubernetes.io/{key}, operator: Exists, effect: NoExecute}}"
        for key in ("unreachable", "not-ready"))
    tolerations = tolerations and "\n      tolerations:" + tolerations
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}{strategy}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:{tolerations}
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
async def deployment(lab: Lab, *, name: str, replicas: int, stay: bool = False) -> AsyncIterator[Client]:
    """Apply a hello Deployment with kybctl (`stay`: see hello_manifest), wait until all replicas are Ready;
    delete it afterwards."""
    lab.sh("kybctl", "apply", "-f", "-", stdin=hello_manifest(lab, name=name, replicas=replicas, stay=stay))
    async with lab.client() as kyb:
        try:
            await until(lambda: count_is(ready_pods(kyb, name), replicas), timeout=90)
            yield kyb
        finally:
            lab.sh("kybctl", "delete", "deployment", name, check=False)
            with contextlib.suppress(AssertionError):
                await until(lambda: none_left(lab, kyb, name), timeout=60)
