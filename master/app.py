"""The master process: the API server over gRPC, the node link, and the control loops, on one etcd.

Assembly only: each part is an actor or a gRPC service built elsewhere. The
master is stateless; everything it knows it rebuilds from etcd when it starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kybernetes.core.api.errors import ApiError
from kybernetes.core.log import get_logger
from kybernetes.core.machinery.actors import Supervisor
from kybernetes.core.machinery.informer import InformerFactory
from kybernetes.master.api.grpc_service import ObjectAPIServicer
from kybernetes.master.api.local_client import LocalClient
from kybernetes.master.api.objects import ObjectService
from kybernetes.master.controllers.endpoints.controller import start_endpoints_controller
from kybernetes.master.controllers.manager import ControllerManager, start_controllers
from kybernetes.master.events import EventRecorder
from kybernetes.master.nodelink.connections import Connections
from kybernetes.master.nodelink.liveness import NodeLiveness
from kybernetes.master.nodelink.podapi import PodAPIServicer
from kybernetes.master.nodelink.podcidr import PodCIDRAllocator
from kybernetes.master.nodelink.registration import Registrar
from kybernetes.master.nodelink.relay import Relay
from kybernetes.master.nodelink.router import PodRouter
from kybernetes.master.nodelink.service import NodeLinkServicer
from kybernetes.master.nodelink.services import ServiceRouter
from kybernetes.master.nodelink.status import PodStatusWriter
from kybernetes.master.store.embedded import EtcdSupervisor
from kybernetes.master.store.etcd import Store
from kybernetes.proto import api_pb2, api_pb2_grpc, node_pb2, node_pb2_grpc

log = get_logger("master")

# The controller manager's loops (started together) and the endpoints controller.
MANAGED_CONTROLLERS = frozenset({"scheduler", "replicaset", "deployment", "nodelifecycle", "gc"})
ALL_CONTROLLERS = MANAGED_CONTROLLERS | {"endpoints"}


def enabled_controllers(spec: str) -> frozenset[str]:
    """Parse --controllers: "*" for all, names to enable, "-name" to disable; "" for none."""
    enabled: set[str] = set()
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        name = item.lstrip("-")
        if name != "*" and name not in ALL_CONTROLLERS:
            known = ", ".join(sorted(ALL_CONTROLLERS))
            raise ValueError(f'--controllers: unknown controller "{name}"; known: *, {known}')
        if item == "*":
            enabled |= ALL_CONTROLLERS
        elif item.startswith("-"):
            enabled.discard(name)
        else:
            enabled.add(name)
    return frozenset(enabled)


API_SERVICE = api_pb2.DESCRIPTOR.services_by_name["ObjectAPI"].full_name
NODE_SERVICES = [node_pb2.DESCRIPTOR.services_by_name[n].full_name for n in ("NodeLink", "PodAPI")]


@dataclass
class MasterConfig:
    """Everything `kyb-master` takes on its command line."""

    listen: str = "127.0.0.1:6443"
    etcd: list[str] = field(default_factory=list)
    data_dir: Path = Path.home() / ".local/share/kybernetes"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    node_monitor_grace_period: float = 5.0
    pod_eviction_timeout: float = 5.0
    heartbeat_interval: float = 1.0
    # lastHeartbeatTime in etcd is refreshed this often per Node (liveness itself is in memory).
    node_status_refresh: float = 120.0
    node_cidr_mask_size: int = 24
    # Which control loops run, as kube-controller-manager's --controllers: "*" (all), names, "-name".
    controllers: str = "*"


class Master:
    """One master: start() serves, stop() shuts down gracefully."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.supervisor = Supervisor(name="master-supervisor")
        self.etcd_process: EtcdSupervisor | None = None
        self.store: Store | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.liveness = NodeLiveness()
        self.connections = Connections()
        self.client: LocalClient | None = None
        self.controllers: ControllerManager | None = None

    async def start(self) -> None:
        """Start etcd (embedded when no --etcd), the store, the gRPC server and the actors."""
        endpoints = self.config.etcd
        if not endpoints:
            sup = EtcdSupervisor(data_dir=self.config.data_dir / "etcd")
            await sup.start()
            self.etcd_process = sup
            endpoints = [sup.endpoint]
        self.store = Store(endpoints=endpoints)
        await self.store.connect()
        service = ObjectService(store=self.store, service_cidr=self.config.service_cidr)
        self.client = client = LocalClient(service)
        events = _event_recorder(client)
        # One cache per kind for the whole master: the pod router, the controllers and the endpoints
        # controller share it, so each pod change is watched, decoded and stored once.
        informers = InformerFactory(client=client)
        router = PodRouter(informers=informers, connections=self.connections)
        status_writer = PodStatusWriter(client=client, router=router)
        service_router = ServiceRouter(client=client, connections=self.connections)
        relay = Relay()
        registrar = Registrar(client=client, pod_cidrs=PodCIDRAllocator(
            store=self.store, cluster_cidr=self.config.cluster_cidr, node_prefix=self.config.node_cidr_mask_size))
        link = NodeLinkServicer(client=client, connections=self.connections, liveness=self.liveness,
                                registrar=registrar, router=router, service_router=service_router,
                                status_writer=status_writer, relay=relay,
                                events=events, heartbeat_interval=self.config.heartbeat_interval,
                                heartbeat_refresh=self.config.node_status_refresh)

        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ])
        api_pb2_grpc.add_ObjectAPIServicer_to_server(ObjectAPIServicer(service=service), self.server)
        node_pb2_grpc.add_NodeLinkServicer_to_server(link, self.server)
        node_pb2_grpc.add_PodAPIServicer_to_server(PodAPIServicer(client=client, connections=self.connections,
                                                                  relay=relay), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [API_SERVICE, *NODE_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.port = self.server.add_insecure_port(self.config.listen)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.config.listen}")
        await self.server.start()
        self.supervisor.start_fn("store-health", self._watch_store_health)
        self.supervisor.start_fn("node-router", router.run_nodes)
        self.supervisor.start_fn("pod-status-writer", status_writer.run)
        self.supervisor.start_fn("service-router", service_router.run)
        enabled = enabled_controllers(self.config.controllers)
        if enabled & MANAGED_CONTROLLERS:
            self.controllers = _start_controllers(self, informers, enabled & MANAGED_CONTROLLERS)
        if "endpoints" in enabled:
            start_endpoints_controller(supervisor=self.supervisor, client=client,
                                       services=informers.informer("services"), pods=informers.informer("pods"))
        informers.start(self.supervisor)
        log.info("serving", listen=self.config.listen, port=self.port, etcd=",".join(endpoints))

    async def _watch_store_health(self) -> None:
        """Report the API NOT_SERVING while etcd is unreachable (the process itself stays up)."""
        assert self.store is not None
        serving: bool | None = None
        while True:
            try:
                await self.store.revision()
                ok = True
            except ApiError:
                ok = False
            if ok != serving:
                status = health_pb2.HealthCheckResponse.SERVING if ok else \
                    health_pb2.HealthCheckResponse.NOT_SERVING
                await self.health.set("", status)
                await self.health.set(API_SERVICE, status)
                (log.info if ok else log.warning)("store health", etcd="reachable" if ok else "unreachable")
                serving = ok
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting calls, finish in-flight ones briefly, stop actors and etcd."""
        log.info("shutting down")
        if self.server is not None:
            await self.server.stop(grace=2.0)
        await self.supervisor.stop_all()
        if self.store is not None:
            await self.store.close()
        if self.etcd_process is not None:
            await self.etcd_process.stop()


def _event_recorder(client: LocalClient) -> EventRecorder:
    """The master's event recorder for what kubelets report (repeats are counted, not duplicated)."""
    return EventRecorder(client=client, component="kubelet")


def _start_controllers(master: Master, informers: InformerFactory, enabled: frozenset[str]) -> ControllerManager:
    if master.client is None:
        raise RuntimeError("controllers started before the API service")
    return start_controllers(supervisor=master.supervisor, client=master.client, liveness=master.liveness,
                             config=master.config, enabled=enabled, informers=informers)
