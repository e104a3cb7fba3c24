"""The controller manager: shared informers plus every control loop, each a supervised actor.

    manager = start_controllers(supervisor=supervisor, client=client, liveness=liveness, config=config)
    await manager.wait_synced()   # optional: caches filled

`client` is anything with `ctl.client.Client`'s interface (the master passes
its in-process `LocalClient`; tests may pass a gRPC `Client`). One informer
per resource is shared by all controllers, so the master watches each kind
once. Settings come from `config` (a MasterConfig): node_monitor_grace_period
and pod_eviction_timeout, plus optional tuning fields read with defaults
(see `ControllerSettings`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import Any

from kybernetes.core.api.client import ObjectClient
from kybernetes.core.machinery.actors import Actor, Supervisor
from kybernetes.core.machinery.informer import InformerFactory
from kybernetes.master.controllers.deployment.controller import DeploymentController
from kybernetes.master.controllers.gc.garbagecollector import GarbageCollector
from kybernetes.master.controllers.nodelifecycle.eviction import TaintEvictionController
from kybernetes.master.controllers.nodelifecycle.monitor import NodeLifecycleController
from kybernetes.master.controllers.nodelifecycle.podgc import OrphanedPodCollector
from kybernetes.master.controllers.replicaset.controller import ReplicaSetController
from kybernetes.master.controllers.scheduler.scheduler import Scheduler
from kybernetes.master.events import EventRecorder
from kybernetes.master.nodelink.liveness import NodeLiveness


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """What the controllers take from the master's configuration (optional fields have defaults)."""

    node_monitor_grace_period: float = 5.0
    pod_eviction_timeout: float = 1.0
    # Full disruption (nodelifecycle/disruption.py): the fraction of Nodes not Ready at which evictions stop.
    unhealthy_zone_threshold: float = 0.55
    replicaset_workers: int = 5
    deployment_workers: int = 5
    gc_workers: int = 10
    scheduler_bind_concurrency: int = 256

    @classmethod
    def from_config(cls, config: Any) -> ControllerSettings:
        defaults = cls()
        return cls(**{f.name: getattr(config, f.name, getattr(defaults, f.name)) for f in fields(cls)})


CONTROLLER_NAMES = frozenset({"scheduler", "replicaset", "deployment", "nodelifecycle", "gc"})


@dataclass
class ControllerManager:
    """Handles to the running controllers (None when not enabled), for tests, metrics and benchmarks."""

    informers: InformerFactory
    recorders: dict[str, EventRecorder]
    scheduler: Scheduler | None = None
    replicasets: ReplicaSetController | None = None
    deployments: DeploymentController | None = None
    node_lifecycle: NodeLifecycleController | None = None
    taint_eviction: TaintEvictionController | None = None
    pod_gc: OrphanedPodCollector | None = None
    garbage_collector: GarbageCollector | None = None

    def actors(self) -> list[Actor]:
        return [a for a in (self.scheduler, self.replicasets, self.deployments, self.node_lifecycle,
                            self.taint_eviction, self.pod_gc, self.garbage_collector) if a is not None]

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until every shared cache has its first list."""
        await self.informers.wait_synced(timeout)

    async def flush_events(self) -> None:
        for recorder in self.recorders.values():
            await recorder.flush()


def start_controllers(*, supervisor: Supervisor, client: ObjectClient, liveness: NodeLiveness, config: Any,
                      enabled: Collection[str] | None = None,
                      informers: InformerFactory | None = None, identity: str = "") -> ControllerManager:
    """Build the controllers on shared informers and start them all under `supervisor`.

    `enabled` names the loops to run (scheduler, replicaset, deployment, nodelifecycle, gc); None runs
    all. nodelifecycle includes NoExecute eviction and the collection of deleted Nodes' pods.
    `informers` is the process's shared factory (the master's, which its pod router also reads); by
    default the controllers get their own. `identity` (the master's, as in the leadership record) is the
    source host of the Events the loops record, so that every Event says which master's loops wrote it.
    """
    names = CONTROLLER_NAMES if enabled is None else frozenset(enabled)
    unknown = names - CONTROLLER_NAMES
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(CONTROLLER_NAMES))}")
    settings = ControllerSettings.from_config(config)
    informers = informers if informers is not None else InformerFactory(client=client)
    recorders = {
        "scheduler": EventRecorder(client=client, component="default-scheduler", host=identity),
        "replicaset": EventRecorder(client=client, component="replicaset-controller", host=identity),
        "deployment": EventRecorder(client=client, component="deployment-controller", host=identity),
        "node": EventRecorder(client=client, component="node-controller", host=identity),
    }
    manager = ControllerManager(informers=informers, recorders=recorders)
    if "scheduler" in names:
        manager.scheduler = Scheduler(client=client, informers=informers, recorder=recorders["scheduler"],
                                      bind_concurrency=settings.scheduler_bind_concurrency)
    if "replicaset" in names:
        manager.replicasets = ReplicaSetController(client=client, informers=informers,
                                                   recorder=recorders["replicaset"],
                                                   workers=settings.replicaset_workers)
    if "deployment" in names:
        manager.deployments = DeploymentController(client=client, informers=informers,
                                                   recorder=recorders["deployment"],
                                                   workers=settings.deployment_workers)
    if "nodelifecycle" in names:
        manager.node_lifecycle = NodeLifecycleController(
            client=client, informers=informers, recorder=recorders["node"], liveness=liveness,
            node_monitor_grace_period=settings.node_monitor_grace_period,
            unhealthy_threshold=settings.unhealthy_zone_threshold)
        manager.taint_eviction = TaintEvictionController(client=client, informers=informers,
                                                         recorder=recorders["node"],
                                                         pod_eviction_timeout=settings.pod_eviction_timeout)
        manager.pod_gc = OrphanedPodCollector(client=client, informers=informers, recorder=recorders["node"],
                                              liveness=liveness)
    if "gc" in names:
        manager.garbage_collector = GarbageCollector(client=client, informers=informers,
                                                     workers=settings.gc_workers)
    # Informers first, so their caches fill while the controllers start and wait for them.
    informers.start(supervisor)
    for actor in manager.actors():
        supervisor.start(actor)
    return manager
