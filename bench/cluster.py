"""The real processes a benchmark runs against, and a watch that timestamps what it sees.

* `ControlPlane`: a private etcd 3.4 (`EtcdProcess`) and a `kyb-master` child on it (`MasterProcess`, the
  same helper the integration tests use), both on free loopback ports; exposes their pids for /proc
  metrics and etcd's revision and /metrics counters.
* `HollowGroup`: one `kyb-kubelet --runtime hollow --hollow-count N` child (N hollow Nodes, each with its
  own stream to the master).
* `PodTracker`: a watch on pods that records, per pod, when the client first saw it exist, bound,
  Running, Ready and deleted (monotonic clock of this process), so latencies are "as seen by a watch".
* Object builders for the Deployments the benchmarks create (pods: harness.builders.make_pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, http_get, prometheus_values
from harness.master import JoinInfo, MasterProcess
from harness.ports import free_port
from kybernetes.ctl.client import ApiError, Client, ConflictError, ExpiredError, NotFoundError
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import objects_pb2 as pb

ETCD_WRITE_METRICS = ("etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total",
                      "etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_keys_total")


# With `split_controllers`, the loops that need no node link run in a second kyb-master process
# (kube-controller-manager style); node lifecycle needs the link's in-memory liveness and stays.
API_SIDE_CONTROLLERS = "nodelifecycle,endpoints"
MANAGER_SIDE_CONTROLLERS = "scheduler,replicaset,deployment,gc"


class ControlPlane:
    """etcd + kyb-master (and optionally a second kyb-master running the controllers), stopped by pid."""

    def __init__(self, *, workdir: Path, master_args: Sequence[str] = (), log_level: str = "info",
                 split_controllers: bool = False, masters: int = 1) -> None:
        self.workdir = workdir
        # Metrics on a plain loopback port of their own (the client port needs etcd's client certificate).
        self.metrics_port = free_port()
        self.etcd = EtcdProcess(data_dir=workdir / "etcd", auto_compaction_retention="1h",
                                extra_args=[f"--listen-metrics-urls=http://127.0.0.1:{self.metrics_port}"])
        self.master_args = [*master_args, "--log-level", log_level]
        self.split_controllers = split_controllers
        self.master: MasterProcess | None = None
        self.controller_manager: MasterProcess | None = None
        # More masters on the same etcd (HA): each serves the API, one of them leads the control loops.
        self.masters = masters
        self.others: list[MasterProcess] = []

    async def start(self) -> None:
        await self.etcd.start()
        extra = ["--controllers", API_SIDE_CONTROLLERS] if self.split_controllers else []
        self.master = MasterProcess(etcd=[self.etcd.endpoint], etcd_tls=self.etcd.client_tls,
                                    log_path=self.workdir / "master.log",
                                    extra_args=[*self.master_args, *extra])
        await self.master.start(timeout=60)
        if self.split_controllers:
            self.controller_manager = MasterProcess(
                etcd=[self.etcd.endpoint], etcd_tls=self.etcd.client_tls,
                log_path=self.workdir / "controller-manager.log",
                extra_args=[*self.master_args, "--controllers", MANAGER_SIDE_CONTROLLERS])
            await self.controller_manager.start(timeout=60)
        for i in range(1, self.masters):
            other = MasterProcess(etcd=[self.etcd.endpoint], etcd_tls=self.etcd.client_tls,
                                  log_path=self.workdir / f"master{i + 1}.log", extra_args=self.master_args)
            await other.start(timeout=60)
            self.others.append(other)

    def join_rotated(self, join: JoinInfo, index: int) -> JoinInfo:
        """`join` with every master's address, starting at master `index` (mod their count): kubelets given
        these connect to that master first (pick_first), so groups of them spread over the masters."""
        assert self.master is not None
        addresses = [self.master.address, *(m.address for m in self.others)]
        k = index % len(addresses)
        return JoinInfo(address=",".join(addresses[k:] + addresses[:k]), bootstrap=join.bootstrap, token=join.token)

    @property
    def other_master_pids(self) -> list[int]:
        return [m.proc.pid for m in self.others if m.proc is not None]

    async def stop(self) -> None:
        for proc in (*self.others, self.controller_manager, self.master):
            if proc is not None:
                await proc.stop()
        await self.etcd.stop(grace=5.0)

    @property
    def controller_manager_pid(self) -> int | None:
        cm = self.controller_manager
        return cm.proc.pid if cm is not None and cm.proc is not None else None

    @property
    def address(self) -> str:
        assert self.master is not None
        return self.master.address

    @property
    def kubeconfig(self) -> Path:
        """The admin credentials file of the API-side master."""
        assert self.master is not None
        return self.master.kubeconfig

    def client(self, *, timeout: float = 10.0) -> Client:
        assert self.master is not None
        return self.master.client(timeout=timeout)

    async def join(self) -> JoinInfo:
        assert self.master is not None
        return await self.master.join()

    @property
    def master_pid(self) -> int:
        assert self.master is not None and self.master.proc is not None
        return self.master.proc.pid

    @property
    def etcd_pid(self) -> int:
        assert self.etcd.pid is not None
        return self.etcd.pid

    async def etcd_metrics(self) -> dict[str, float]:
        """etcd's write counters and current revision (from its /metrics)."""
        body = await http_get("127.0.0.1", self.metrics_port, "/metrics")
        return prometheus_values(body.decode(), ETCD_WRITE_METRICS)


class HollowGroup:
    """One kubelet process running `count` hollow Nodes named `<prefix>-<i>`."""

    def __init__(self, *, master: JoinInfo, prefix: str, count: int, workdir: Path, heartbeat_interval: float = 1.0,
                 start_delay: float = 0.5, log_level: str = "warning", max_pods: int = 110) -> None:
        self.master = master
        self.prefix = prefix
        self.count = count
        self.workdir = workdir
        self.log_path = workdir / f"{prefix}.log"
        self.argv = [sys.executable, "-m", "kybernetes.kubelet.main", "--master", master.address,
                     "--bootstrap-master", master.bootstrap, "--node-name", prefix,
                     "--runtime", "hollow", "--hollow-count", str(count), "--root-dir", str(workdir / prefix),
                     "--heartbeat-interval", str(heartbeat_interval), "--hollow-start-delay", str(start_delay),
                     "--max-pods", str(max_pods), "--no-pod-routes", "--no-proxy", "--log-level", log_level]
        self.proc: asyncio.subprocess.Process | None = None

    def node_names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.count)] if self.count > 1 else [self.prefix]

    async def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "KYB_JOIN_TOKEN": self.master.token})

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


def node_ready(node: pb.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


async def wait_nodes_ready(client: Client, names: set[str], *, timeout: float) -> float:
    """Poll until every named Node is Ready; returns the seconds it took."""
    began = time.monotonic()
    while True:
        try:
            nodes = (await client.list("nodes")).items
        except ApiError:
            nodes = []
        ready = {n.metadata.name for n in nodes if node_ready(n)}
        if names <= ready:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{len(names - ready)} of {len(names)} Nodes not Ready after {timeout:.0f}s")
        # Listing a thousand Nodes is work for the master too: poll big clusters less often.
        await asyncio.sleep(0.1 if len(names) <= 10 else 0.5 if len(names) <= 100 else 2.0)


# ----------------------------------------------------------------------------- watch timing


@dataclass
class PodSeen:
    """What a watch saw of one pod, with monotonic receive times."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    created: float
    node: str = ""
    phase: str = ""
    ready: bool = False
    terminating: bool = False
    deleted: float | None = None
    bound: float | None = None
    running: float | None = None
    ready_at: float | None = None
    terminating_at: float | None = None
    last: pb.Pod | None = None


def pod_is_ready(pod: pb.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


class PodTracker:
    """A watch on pods (optionally one namespace / label selector) that timestamps each pod's milestones."""

    def __init__(self, client: Client, *, namespace: str = "", label_selector: str = "", keep_objects: bool = False
                 ) -> None:
        self.client = client
        self.namespace = namespace
        self.label_selector = label_selector
        self.keep_objects = keep_objects
        self.pods: dict[str, PodSeen] = {}
        self.synced = asyncio.Event()
        self.events = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str, pb.Pod, float], None]] = []

    def on_event(self, listener: Callable[[str, pb.Pod, float], None]) -> None:
        """Call listener(type, pod, receive time) for every event."""
        self._listeners.append(listener)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pod-tracker")
        await asyncio.wait_for(self.synced.wait(), 60)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        rv = ""
        while True:
            try:
                async for ev in self.client.watch_once("pods", namespace=self.namespace,
                                                       label_selector=self.label_selector, resource_version=rv):
                    now = time.monotonic()
                    if ev.type == "BOOKMARK":
                        rv = ev.resource_version
                        self.synced.set()
                        continue
                    rv = ev.resource_version or rv
                    self._apply(ev.type, ev.object, now)
            except ExpiredError:
                rv = ""  # start over with a fresh list: first-seen times stay as they were
            except ApiError:
                await asyncio.sleep(0.2)

    def _apply(self, kind: str, pod: pb.Pod, now: float) -> None:
        self.events += 1
        uid = pod.metadata.uid
        seen = self.pods.get(uid)
        if seen is None:
            seen = self.pods[uid] = PodSeen(name=pod.metadata.name, namespace=pod.metadata.namespace, uid=uid,
                                            labels=dict(pod.metadata.labels), created=now)
        if kind == "DELETED":
            seen.deleted = seen.deleted or now
        seen.node = pod.spec.node_name
        seen.phase = pod.status.phase
        seen.ready = pod_is_ready(pod)
        seen.terminating = pod.metadata.HasField("deletion_timestamp")
        if seen.node and seen.bound is None:
            seen.bound = now
        if seen.phase == "Running" and seen.running is None:
            seen.running = now
        if seen.ready and seen.ready_at is None:
            seen.ready_at = now
        if (seen.terminating or kind == "DELETED") and seen.terminating_at is None:
            seen.terminating_at = now
        if self.keep_objects:
            seen.last = pod
        for listener in self._listeners:
            listener(kind, pod, now)
        self._changed.set()

    def live(self, *, selector: Callable[[PodSeen], bool] = lambda p: True) -> list[PodSeen]:
        """Pods that exist and are not terminating."""
        return [p for p in self.pods.values() if p.deleted is None and not p.terminating and selector(p)]

    async def wait_for(self, condition: Callable[[], bool], *, timeout: float, what: str = "condition") -> float:
        """Wait until condition() holds after some event; returns the monotonic time it first held."""
        deadline = time.monotonic() + timeout
        while not condition():
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return time.monotonic()

    async def wait_running(self, count: int, *, timeout: float, ready: bool = False,
                           selector: Callable[[PodSeen], bool] = lambda p: True, what: str = "") -> float:
        """Until `count` live pods (matching selector) are Running (and Ready, if asked)."""
        def done() -> bool:
            pods = self.live(selector=selector)
            return sum(1 for p in pods if p.phase == "Running" and (p.ready or not ready)) >= count

        return await self.wait_for(done, timeout=timeout, what=what or f"{count} pods Running")

    async def wait_gone(self, *, timeout: float, selector: Callable[[PodSeen], bool] = lambda p: True) -> float:
        """Until no pod matching selector exists any more (terminating ones included)."""
        return await self.wait_for(
            lambda: not [p for p in self.pods.values() if p.deleted is None and selector(p)],
            timeout=timeout, what="pods deleted")


# ----------------------------------------------------------------------------- objects


async def modify(client: Client, resource: str, name: str, change: Callable[[Any], None], *,
                 namespace: str = "default", attempts: int = 50) -> Any:
    """Read-modify-write with retries on conflicts."""
    for _ in range(attempts):
        obj = await client.get(resource, name, namespace=namespace)
        change(obj)
        try:
            return await client.update(obj)
        except ConflictError:
            await asyncio.sleep(0.01)
    raise RuntimeError(f"{resource}/{name} kept changing under us")


async def delete(client: Client, resource: str, name: str, *, namespace: str = "default",
                 propagation_policy: str = "", attempts: int = 50) -> None:
    """Delete whatever version is current (the API answers Conflict when it changes mid-delete: retry)."""
    for _ in range(attempts):
        try:
            await client.delete(resource, name, namespace=namespace, unconditional=True,
                                propagation_policy=propagation_policy)
            return
        except NotFoundError:
            return
        except ConflictError:
            await asyncio.sleep(0.01)
    raise RuntimeError(f"{resource}/{name} kept changing while being deleted")


def rollout_complete(d: pb.Deployment) -> bool:
    """Kubernetes' `rollout status` condition: every replica updated and available, old ones gone."""
    progressing = next((c for c in d.status.conditions if c.type == "Progressing"), None)
    return (d.status.observed_generation >= d.metadata.generation
            and d.status.updated_replicas == d.spec.replicas and d.status.replicas == d.spec.replicas
            and d.status.available_replicas == d.spec.replicas
            and progressing is not None and progressing.reason == "NewReplicaSetAvailable")


async def wait_rollout(client: Client, name: str, *, timeout: float, namespace: str = "default") -> float:
    """Watch the Deployment until its rollout is complete; returns the monotonic time it was seen complete."""
    async with asyncio.timeout(timeout):
        async for ev in client.watch("deployments", namespace=namespace, field_selector=f"metadata.name={name}"):
            if ev.type != "DELETED" and rollout_complete(ev.object):
                return time.monotonic()
    raise RuntimeError("the watch ended")  # unreachable: client.watch never ends by itself
