"""Shared fixtures for the controller tests (this module holds no tests itself).

`cluster`: a private real etcd, the real object service in-process behind a
`LocalClient` (what the master gives its control loops) and every controller
started by `start_controllers`, with a `NodeLiveness` table the test drives.

`ApiKubelets` plays the kubelet's part *through the API only*, for tests of
control logic: pods bound to its Nodes become Running and Ready after a
delay, and terminating pods are confirmed (deleted with grace 0). It also
heartbeats its Nodes in the liveness table. Tests that need real pods or the
node link use real (or hollow) kubelets instead and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kybernetes.core.api.objects import now_timestamp
from kybernetes.core.machinery.actors import Supervisor
from kybernetes.ctl.client import ConflictError, NotFoundError
from kybernetes.master.api.local_client import LocalClient
from kybernetes.master.api.objects import ObjectService
from kybernetes.master.controllers.manager import ControllerManager, start_controllers
from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.master.store.etcd import Store
from kybernetes.proto import objects_pb2 as pb


def make_node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110", ready: bool = True,
              labels: dict[str, str] | None = None, unschedulable: bool = False) -> pb.Node:
    node = pb.Node()
    node.metadata.name = name
    node.metadata.labels.update(labels or {"kubernetes.io/hostname": name})
    node.spec.unschedulable = unschedulable
    for section in (node.status.capacity, node.status.allocatable):
        section.update({"cpu": cpu, "memory": memory, "pods": pods})
    node.status.conditions.add(type="Ready", status="True" if ready else "False", reason="KubeletReady",
                               last_transition_time=now_timestamp())
    return node


def make_replicaset(name: str, *, replicas: int = 3, labels: dict[str, str] | None = None) -> pb.ReplicaSet:
    rs = pb.ReplicaSet()
    rs.metadata.name = name
    rs.metadata.namespace = "default"
    rs.spec.replicas = replicas
    labels = labels or {"app": name}
    rs.spec.selector.match_labels.update(labels)
    rs.spec.template.metadata.labels.update(labels)
    rs.spec.template.spec.containers.add(name="main", image="kyb/hello:v1")
    rs.spec.template.spec.termination_grace_period_seconds = 1
    return rs


async def edit(client: Any, resource: str, name: str, fn: Callable[[Any], None], *,
               namespace: str = "default") -> Any:
    """Read-modify-write retried on conflicts (controllers write status all the time), as kubectl does."""
    for _ in range(20):
        obj = await client.get(resource, name, namespace=namespace)
        fn(obj)
        try:
            return await client.update(obj)
        except ConflictError:
            continue
    raise AssertionError(f"{resource}/{name} kept changing")


def is_ready(pod: pb.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def is_terminating(obj: Any) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


class ApiKubelets:
    """The kubelet's side of pod lifecycle, played through the API for a set of Nodes (see module doc)."""

    def __init__(self, *, client: Any, liveness: NodeLiveness, ready_after: float = 0.3,
                 stop_after: float = 0.2) -> None:
        self.client = client
        self.liveness = liveness
        self.ready_after = ready_after
        self.stop_after = stop_after
        self.alive: set[str] = set()
        self.quiet: set[str] = set()  # heartbeating, but never runs or stops a pod
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[str] = set()

    def start(self, *nodes: str, act: bool = True) -> None:
        for node in nodes:
            self.alive.add(node)
            if not act:
                self.quiet.add(node)
            self.liveness.connected(node)
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._heartbeat())]

    def kill(self, node: str) -> None:
        """The kubelet dies: no more heartbeats, its stream breaks, nothing on the node is acted on."""
        self.alive.discard(node)
        self.quiet.discard(node)
        self.liveness.disconnected(node)

    def hang(self, node: str) -> None:
        """The kubelet hangs: its stream stays open but it stops speaking (and acting)."""
        self.alive.discard(node)
        self.quiet.discard(node)

    async def revive(self, node: str) -> None:
        """The kubelet is back: it reconnects, the link writes Ready=True, and it acts on its pods again."""
        self.start(node)
        for _ in range(10):
            current = await self.client.get("nodes", node, namespace="")
            del current.status.conditions[:]
            current.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                                          last_transition_time=now_timestamp())
            try:
                await self.client.update_status(current)
                break
            except ConflictError:
                continue
        for pod in (await self.client.list("pods", field_selector=f"spec.nodeName={node}")).items:
            key = f"{pod.metadata.namespace}/{pod.metadata.name}/{pod.metadata.uid}"
            if is_terminating(pod) and key not in self._pending:
                self._pending.add(key)
                asyncio.create_task(self._confirm_deletion(pod, key))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _heartbeat(self) -> None:
        while True:
            for node in self.alive:
                self.liveness.heartbeat(node)
            await asyncio.sleep(0.1)

    async def _watch(self) -> None:
        async for ev in self.client.watch("pods"):
            pod = ev.object
            if ev.type == "DELETED" or pod.spec.node_name not in self.alive or pod.spec.node_name in self.quiet:
                continue
            key = f"{pod.metadata.namespace}/{pod.metadata.name}/{pod.metadata.uid}"
            if key in self._pending:
                continue
            if is_terminating(pod):
                self._pending.add(key)
                asyncio.create_task(self._confirm_deletion(pod, key))
            elif not is_ready(pod):
                self._pending.add(key)
                asyncio.create_task(self._make_ready(pod, key))

    async def _make_ready(self, pod: pb.Pod, key: str) -> None:
        try:
            await asyncio.sleep(self.ready_after)
            for _ in range(10):
                try:
                    current = await self.client.get("pods", pod.metadata.name, namespace=pod.metadata.namespace)
                except NotFoundError:
                    return
                if current.metadata.uid != pod.metadata.uid or is_terminating(current) or \
                        current.spec.node_name not in self.alive or current.spec.node_name in self.quiet:
                    return
                now = now_timestamp()
                current.status.phase = "Running"
                del current.status.conditions[:]
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
                    current.status.conditions.add(type=kind, status="True", last_transition_time=now)
                try:
                    await self.client.update_status(current)
                    return
                except ConflictError:
                    continue
        finally:
            self._pending.discard(key)

    async def _confirm_deletion(self, pod: pb.Pod, key: str) -> None:
        try:
            await asyncio.sleep(self.stop_after)
            if pod.spec.node_name not in self.alive or pod.spec.node_name in self.quiet:
                return
            with contextlib.suppress(NotFoundError):
                await self.client.delete("pods", pod.metadata.name, namespace=pod.metadata.namespace,
                                         unconditional=True, grace_period_seconds=0)
        finally:
            self._pending.discard(key)


@dataclass
class Cluster:
    """The in-process control plane of a test."""

    client: Any
    liveness: NodeLiveness
    supervisor: Supervisor
    manager: ControllerManager
    store: Store
    config: SimpleNamespace
    kubelets: ApiKubelets
    controller_client: Any = None

    async def stop(self) -> None:
        await self.kubelets.stop()
        await self.supervisor.stop_all()
        await self.store.close()

    async def restart_controllers(self) -> None:
        """Kill every controller and informer at once (as a crash would) and start fresh ones."""
        await self.supervisor.stop_all()
        self.supervisor = Supervisor(name="test-controllers")
        self.manager = start_controllers(supervisor=self.supervisor, client=self.controller_client or self.client,
                                         liveness=self.liveness, config=self.config)
        await self.manager.wait_synced(20)

    async def pods(self, **kwargs: Any) -> list[pb.Pod]:
        return (await self.client.list("pods", **kwargs)).items

    async def add_nodes(self, *names: str, act: bool = True, **kwargs: Any) -> None:
        for name in names:
            await self.client.create(make_node(name, **kwargs))
        self.kubelets.start(*names, act=act)


async def start_cluster(etcd: EtcdProcess, *, grace: float = 5.0, eviction_timeout: float = 5.0,
                        wrap: Callable[[Any], Any] | None = None, **config: Any) -> Cluster:
    """The in-process control plane; `wrap` may wrap the controllers' client (to slow its watches, say)."""
    store = Store(endpoints=[etcd.endpoint], tls=etcd.client_tls)
    await store.connect()
    client: Any = LocalClient(ObjectService(store=store))
    controller_client = wrap(client) if wrap is not None else client
    liveness = NodeLiveness()
    supervisor = Supervisor(name="test-controllers")
    settings = SimpleNamespace(node_monitor_grace_period=grace, pod_eviction_timeout=eviction_timeout, **config)
    manager = start_controllers(supervisor=supervisor, client=controller_client, liveness=liveness,
                                config=settings)
    await manager.wait_synced(20)
    return Cluster(client, liveness, supervisor, manager, store, settings,
                   ApiKubelets(client=client, liveness=liveness), controller_client=controller_client)


@pytest.fixture
async def cluster(etcd: EtcdProcess, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = await start_cluster(etcd)
    try:
        yield c
    finally:
        await c.stop()
