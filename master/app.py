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

from ctl.machinery.actors import Supervisor
from ctl.machinery.log import get_logger
from master.api.grpc_service import ObjectAPIServicer
from master.api.objects import ObjectService
from master.store.errors import StoreError
from master.store.etcd import Store
from proto import api_pb2, api_pb2_grpc

log = get_logger("master")

API_SERVICE = api_pb2.DESCRIPTOR.services_by_name["ObjectAPI"].full_name


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
    controllers: bool = True


class Master:
    """One master: start() serves, stop() shuts down gracefully."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.supervisor = Supervisor(name="master-supervisor")
        self.etcd_process: object | None = None
        self.store: Store | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> None:
        """Start etcd (embedded when no --etcd), the store, the gRPC server and the actors."""
        endpoints = self.config.etcd
        if not endpoints:
            from master.store.embedded import EtcdSupervisor

            sup = EtcdSupervisor(data_dir=self.config.data_dir / "etcd")
            await sup.start()
            self.etcd_process = sup
            endpoints = [sup.endpoint]
        self.store = Store(endpoints=endpoints)
        await self.store.connect()
        service = ObjectService(store=self.store)

        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ])
        api_pb2_grpc.add_ObjectAPIServicer_to_server(ObjectAPIServicer(service=service), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [API_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.port = self.server.add_insecure_port(self.config.listen)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.config.listen}")
        await self.server.start()
        self.supervisor.start_fn("store-health", self._watch_store_health)
        log.info("serving", listen=self.config.listen, port=self.port, etcd=",".join(endpoints))

    async def _watch_store_health(self) -> None:
        """Report the API NOT_SERVING while etcd is unreachable (the process itself stays up)."""
        assert self.store is not None
        serving: bool | None = None
        while True:
            try:
                await self.store.revision()
                ok = True
            except StoreError:
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
            await self.etcd_process.stop()  # type: ignore[attr-defined]
