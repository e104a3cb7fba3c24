"""The master process: the API server over gRPC, the node link, and the control loops, on one etcd.

Assembly only: each part is an actor or a gRPC service built elsewhere. The
master is stateless; everything it knows it rebuilds from etcd when it starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kybernetes.core.api.errors import ApiError
from kybernetes.core.channel import SERVER_KEEPALIVE_OPTIONS
from kybernetes.core.identity.certs import MASTERS_GROUP, Identity
from kybernetes.core.identity.credentials import Credentials
from kybernetes.core.identity.kubeconfig import admin_config, save
from kybernetes.core.log import get_logger
from kybernetes.core.machinery.actors import Supervisor
from kybernetes.core.machinery.informer import InformerFactory
from kybernetes.master.api.decoding import DecodingInterceptor
from kybernetes.master.api.grpc_service import ObjectAPIServicer
from kybernetes.master.api.limits import DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_WATCHES_PER_USER, WatchLimit
from kybernetes.master.api.local_client import LocalClient
from kybernetes.master.api.objects import ObjectService
from kybernetes.master.auth.access import AccessControl
from kybernetes.master.auth.authn import AuthenticationInterceptor
from kybernetes.master.auth.service import AccessServicer
from kybernetes.master.auth.sync import RbacSync, ensure_defaults
from kybernetes.master.controllers.endpoints.controller import start_endpoints_controller
from kybernetes.master.controllers.manager import ControllerManager, start_controllers
from kybernetes.master.events import EventRecorder
from kybernetes.master.join.masters import (
    JoinError,
    MasterJoinService,
    Membership,
    initial_cluster,
    promote,
    request_join,
    write_ca,
)
from kybernetes.master.join.service import BootstrapServicer, TokensServicer
from kybernetes.master.join.tokens import TokenRegistry
from kybernetes.master.leader.client import FencedClient
from kybernetes.master.leader.election import LeaderElector, Stop, lease_name
from kybernetes.master.nodelink.connections import Connections
from kybernetes.master.nodelink.liveness import NodeLiveness, follow_ready_reports
from kybernetes.master.nodelink.podapi import MasterRelay, PodAPIServicer
from kybernetes.master.nodelink.podcidr import PodCIDRAllocator
from kybernetes.master.nodelink.presence import Presence, PresenceView
from kybernetes.master.nodelink.registration import Registrar
from kybernetes.master.nodelink.relay import DEFAULT_EXEC_IDLE_TIMEOUT, DEFAULT_MAX_EXEC_SESSIONS_PER_NODE, Relay
from kybernetes.master.nodelink.router import PodRouter
from kybernetes.master.nodelink.service import NodeLinkServicer
from kybernetes.master.nodelink.services import ServiceRouter
from kybernetes.master.nodelink.status import PodStatusWriter
from kybernetes.master.pki.authority import ClusterAuthority
from kybernetes.master.pki.service import CertificatesServicer
from kybernetes.master.pki.serving import ServingCredentials, serving_names
from kybernetes.master.pki.stored import cluster_authority, server_token
from kybernetes.master.store.embedded import HOST, EtcdSupervisor, RaftTiming, choose_ports
from kybernetes.master.store.etcd import Store
from kybernetes.master.store.etcdtls import EtcdClientTLS
from kybernetes.master.store.fencing import Fence
from kybernetes.proto import api_pb2, api_pb2_grpc, identity_pb2, identity_pb2_grpc, node_pb2, node_pb2_grpc

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
IDENTITY_SERVICES = [identity_pb2.DESCRIPTOR.services_by_name[n].full_name for n in ("Tokens", "Certificates",
                                                                                     "Access")]
ADMIN_CONFIG_NAME = "admin.conf"
# The health service name that says whether this master runs the control loops (SERVING) or stands by.
LEADER_HEALTH = "kyb.leader"
# The admin credentials file is written again at every start; its certificate is good for a year (kubeadm's).
ADMIN_CERTIFICATE_VALIDITY = dt.timedelta(days=365)


def default_bootstrap_listen(listen: str) -> str:
    """The bootstrap port beside the API port: the same host, the next port (0 stays 0: any free port)."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + 1 if int(port) else 0}"


def advertised(listen: str, port: int) -> str:
    """The address clients on this machine use: the listen host, or loopback for a wildcard."""
    host = listen.rpartition(":")[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def advertise_host(config: MasterConfig) -> str:
    """The address other masters reach this one at: --advertise-address, else the --listen host."""
    if config.advertise_address:
        return config.advertise_address
    host = config.listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        raise RuntimeError("--advertise-address: Required value: the master listens on every address "
                           f"({config.listen}); say which one the other masters reach it at")
    return host


@dataclass
class MasterConfig:
    """Everything `kyb-master` takes on its command line."""

    listen: str = "127.0.0.1:6443"
    etcd: list[str] = field(default_factory=list)
    # The etcd client certificate (--etcd-cafile/--etcd-certfile/--etcd-keyfile); the embedded etcd makes its own.
    etcd_tls: EtcdClientTLS | None = None
    data_dir: Path = Path.home() / ".local/share/kybernetes"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    node_monitor_grace_period: float = 5.0
    pod_eviction_timeout: float = 1.0
    # With other masters: how long a Node whose stream broke has to show up on another one before it is lost.
    node_reconnect_window: float = 1.0
    # Full disruption: evictions stop while at least 2 Nodes and this fraction of all are not Ready (docs/ha.md).
    unhealthy_zone_threshold: float = 0.55
    heartbeat_interval: float = 1.0
    # lastHeartbeatTime in etcd is refreshed this often per Node (liveness itself is in memory).
    node_status_refresh: float = 120.0
    node_cidr_mask_size: int = 24
    # Back-pressure on the node link (docs/limits.md): how far a kubelet may fall behind on ordered messages, and
    # how long one write may wait for it to read, before its stream is ended with RESOURCE_EXHAUSTED.
    node_link_max_pending_bytes: int = 8 * 1024 * 1024
    node_link_send_timeout: float = 30.0
    # Limits on streams (docs/limits.md): HTTP/2 streams of one connection, watches of one identity (beyond it
    # RESOURCE_EXHAUSTED; system:masters is not counted).
    http2_max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION
    max_watches_per_user: int = DEFAULT_MAX_WATCHES_PER_USER
    # Exec sessions (docs/limits.md): how many may be open on one Node (beyond it RESOURCE_EXHAUSTED), and how
    # long one may move no byte either way before it is ended.
    max_exec_sessions_per_node: int = DEFAULT_MAX_EXEC_SESSIONS_PER_NODE
    exec_idle_timeout: float = DEFAULT_EXEC_IDLE_TIMEOUT
    # Which control loops run, as kube-controller-manager's --controllers: "*" (all), names, "-name".
    controllers: str = "*"
    # Identity (docs/identity.md). The server token seals the CA in etcd; empty: the data dir's, made once.
    token: str = ""
    # The port that serves Bootstrap.Join to token holders; empty: the API port + 1 on the same host.
    bootstrap_listen: str = ""
    # Extra names and addresses in the serving certificate (beyond the listen address, loopback, hostname).
    tls_sans: list[str] = field(default_factory=list)
    # Where the admin credentials file goes; None: <data dir>/admin.conf.
    write_kubeconfig: Path | None = None
    certificate_validity: dt.timedelta = dt.timedelta(days=365)
    # Leader election of the control loops (master.leader.election): the claim's etcd lease, and how often a
    # standby master checks whether the claim is free.
    leader_lease_seconds: int = 1
    leader_retry_period: float = 0.2
    # Several masters with embedded etcd (master.join.masters): --cluster-init makes this master's etcd a
    # cluster others join; --join https://ADDR:PORT (with the server token) joins one.
    cluster_init: bool = False
    join: str = ""
    # The address other masters reach this one's etcd member at; empty: the --listen host.
    advertise_address: str = ""
    etcd_client_port: int | None = None
    etcd_peer_port: int | None = None
    # The etcd member's name; empty: <hostname>-<random>, kept in the data dir.
    etcd_name: str = ""
    # The embedded member's raft timing (--etcd-heartbeat-interval, --etcd-election-timeout).
    etcd_timing: RaftTiming = RaftTiming()

    @property
    def kubeconfig_path(self) -> Path:
        return self.write_kubeconfig or self.data_dir / ADMIN_CONFIG_NAME


class Master:
    """One master: start() serves, stop() shuts down gracefully."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.supervisor = Supervisor(name="master-supervisor")
        self.etcd_process: EtcdSupervisor | None = None
        self.store: Store | None = None
        self.server: grpc.aio.Server | None = None
        self.bootstrap_server: grpc.aio.Server | None = None
        self.bootstrap_port = 0
        self.authority: ClusterAuthority | None = None
        self.tls: ServingCredentials | None = None
        self.access = AccessControl()
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.liveness = NodeLiveness(reconnect_window=config.node_reconnect_window)
        self.connections = Connections()
        self.client: LocalClient | None = None
        self.controllers: ControllerManager | None = None
        self.elector: LeaderElector | None = None
        self.presence: Presence | None = None
        self._relay_credentials: Credentials | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one-shot work, kept until done (exceptions logged)
        # Who this master is in the leadership record (kybctl get leases): host, listen address, process.
        self.identity = f"{socket.gethostname()}_{config.listen}_{os.getpid()}"

    async def start(self) -> None:
        """Start etcd (embedded when no --etcd), the store, the gRPC server and the actors."""
        endpoints, etcd_tls = self.config.etcd, self.config.etcd_tls
        token = server_token(given=self.config.token, data_dir=self.config.data_dir)
        if not endpoints:
            self.store = await self._start_embedded_etcd(token)
        else:
            self.store = Store(endpoints=endpoints, tls=etcd_tls)
            await self.store.connect()
        self.authority = authority = await cluster_authority(self.store, token=token)
        self.tls = ServingCredentials(authority, names=serving_names(listen=self.config.listen,
                                                                     extra=self.config.tls_sans))
        tokens = TokenRegistry(self.store, ca_hash=authority.hash)
        service = ObjectService(store=self.store, service_cidr=self.config.service_cidr,
                                cluster_cidr=self.config.cluster_cidr)
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
                                heartbeat_refresh=self.config.node_status_refresh,
                                max_pending_bytes=self.config.node_link_max_pending_bytes,
                                send_timeout=self.config.node_link_send_timeout)

        # Authentication first: an unauthenticated caller learns nothing, not even that its request does not parse.
        self.server = grpc.aio.server(interceptors=[AuthenticationInterceptor(), DecodingInterceptor()], options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            # SETTINGS_MAX_CONCURRENT_STREAMS: a client's further streams on one connection wait for a free slot.
            ("grpc.max_concurrent_streams", self.config.http2_max_streams_per_connection),
            # No bandwidth-delay probing: it grows a connection's receive window to many MiB, so a peer that
            # floods (a kubelet ignoring its credits) parks that much in the master's transport before the
            # application reads and drops it (tests/test_podapi_limits.py: 6-10 MiB in 2 of 10 runs with it,
            # none without). Flow control stays HTTP/2's fixed window; the cost is throughput on long-latency links.
            ("grpc.http2.bdp_probe", 0),
            *SERVER_KEEPALIVE_OPTIONS,
        ])
        access = self.access
        api_pb2_grpc.add_ObjectAPIServicer_to_server(ObjectAPIServicer(
            service=service, access=access, watches=WatchLimit(max_per_user=self.config.max_watches_per_user)),
            self.server)
        node_pb2_grpc.add_NodeLinkServicer_to_server(link, self.server)
        view = PresenceView(identity=self.identity, clock=self.liveness.now)
        masters = MasterRelay(locate=view.master_of, credentials=lambda: self._master_credentials(authority))
        node_pb2_grpc.add_PodAPIServicer_to_server(PodAPIServicer(
            client=client, connections=self.connections, relay=relay, access=access, masters=masters,
            max_exec_sessions=self.config.max_exec_sessions_per_node,
            exec_idle_timeout=self.config.exec_idle_timeout), self.server)
        identity_pb2_grpc.add_TokensServicer_to_server(TokensServicer(tokens=tokens, access=access), self.server)
        identity_pb2_grpc.add_CertificatesServicer_to_server(CertificatesServicer(
            authority=authority, access=access, validity=self.config.certificate_validity), self.server)
        identity_pb2_grpc.add_AccessServicer_to_server(AccessServicer(access=access), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [API_SERVICE, *NODE_SERVICES, *IDENTITY_SERVICES,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.port = self.server.add_secure_port(self.config.listen, self.tls.api_port())
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.config.listen}")
        # The bootstrap port: one method, for token holders (no client certificate yet).
        self.bootstrap_server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024)])
        joinable = self.etcd_process is not None and (self.config.cluster_init or bool(self.config.join))
        etcd_ca = (self.etcd_process.pki_dir / "ca.crt", self.etcd_process.pki_dir / "ca.key") \
            if joinable and self.etcd_process is not None else None
        identity_pb2_grpc.add_BootstrapServicer_to_server(BootstrapServicer(
            authority=authority, tokens=tokens, validity=self.config.certificate_validity,
            masters=MasterJoinService(store=self.store, token=token, etcd_ca=etcd_ca)), self.bootstrap_server)
        bootstrap_listen = self.config.bootstrap_listen or default_bootstrap_listen(self.config.listen)
        self.bootstrap_port = self.bootstrap_server.add_secure_port(bootstrap_listen, self.tls.bootstrap_port())
        if self.bootstrap_port == 0:
            raise RuntimeError(f"cannot listen on {bootstrap_listen} (the bootstrap port)")
        self._write_admin_config(authority)
        # RBAC comes from the objects: the defaults exist, and the caches are full before the first call.
        await ensure_defaults(client)
        rbac = RbacSync(access=access, informers=informers)
        informers.start(self.supervisor)
        await rbac.wait_synced(timeout=30.0)
        await self.server.start()
        await self.bootstrap_server.start()
        # Which Nodes hold a stream to which master, shared through etcd (written on change only).
        self.liveness.elsewhere = view
        follow_ready_reports(informers.informer("nodes"), self.liveness,
                             grace=self.config.node_monitor_grace_period,
                             reassert=lambda name: self._spawn(registrar.refresh_heartbeat(name),
                                                               what=f"reassert Ready of {name}"))
        self.presence = Presence(store=self.store, identity=self.identity,
                                 connected=lambda: set(self.liveness.connected_nodes()),
                                 silent=lambda: self.liveness.silent_connected(self.config.node_monitor_grace_period),
                                 lost=self.liveness.lost_nodes,
                                 view=view, address=self.api_address)
        self.supervisor.start_fn("presence", self.presence.run)
        self.supervisor.start_fn("store-health", self._watch_store_health)
        self.supervisor.start_fn("store-quorum", self._watch_quorum)
        self.supervisor.start_fn("node-router", router.run_nodes)
        self.supervisor.start_fn("pod-status-writer", status_writer.run)
        self.supervisor.start_fn("service-router", service_router.run)
        enabled = enabled_controllers(self.config.controllers)
        if enabled:
            await self.health.set(LEADER_HEALTH, health_pb2.HealthCheckResponse.NOT_SERVING)
            # Every master serves the API; the elected one runs the control loops (master.leader).
            self.elector = LeaderElector(store=self.store, identity=self.identity,
                                         name=lease_name(enabled, every=ALL_CONTROLLERS),
                                         on_elected=lambda fence: self._lead(fence, informers, enabled),
                                         lease_seconds=self.config.leader_lease_seconds,
                                         retry_period=self.config.leader_retry_period)
            self.supervisor.start_fn("leader-election", self.elector.run)
        informers.start(self.supervisor)
        log.info("serving", listen=self.config.listen, port=self.port, bootstrap_port=self.bootstrap_port,
                 etcd=",".join(endpoints) or "embedded", ca_hash=authority.hash,
                 kubeconfig=str(self.config.kubeconfig_path))

    async def _start_embedded_etcd(self, token: str) -> Store:
        """This master's own etcd member: on loopback alone, or (--cluster-init, --join) one member of the
        masters' etcd cluster, reachable at --advertise-address (master.join.masters)."""
        config = self.config
        folder = config.data_dir / "etcd"
        clustered = config.cluster_init or bool(config.join)
        host = advertise_host(config) if clustered else HOST
        client_port, peer_port = choose_ports(folder, client_port=config.etcd_client_port,
                                              peer_port=config.etcd_peer_port)
        membership = Membership.load(folder) if clustered else None
        has_data = (folder / "data" / "member").exists()
        if clustered and has_data and membership is None:
            raise RuntimeError(f"{folder}: an etcd made without --cluster-init or --join cannot become a cluster "
                               "member; start this master without them, or with a new --data-dir")
        name = config.etcd_name or (membership.name if membership else
                                    f"{socket.gethostname()}-{secrets.token_hex(3)}" if clustered else "default")
        peer_url, client_url = f"https://{host}:{peer_port}", f"https://{host}:{client_port}"
        others: tuple[str, ...] = ()
        promote_id, must_promote = 0, True
        if membership is not None:
            # A restart: etcd reads its membership from its data; the flags only have to agree with it. A
            # master that died between its join and the promotion of its learner promotes it now (best effort:
            # a member promoted long ago needs nothing, and the others may still be starting).
            initial, others = membership.initial_cluster, membership.client_urls
            state = "existing" if membership.member_id else "new"
            promote_id, must_promote = (membership.member_id, False) if others else (0, False)
        elif config.join:
            response, etcd_ca = await request_join(join_url=config.join, token=token, name=name, peer_url=peer_url,
                                                   client_url=client_url)
            write_ca(folder / "pki", etcd_ca)
            initial, state = initial_cluster(response.members), "existing"
            others = tuple(u for m in response.members if m.name != name for u in m.client_urls)
            promote_id = response.member_id
            Membership(name=name, member_id=response.member_id, initial_cluster=initial,
                       client_urls=others).save(folder)
            log.info("joined the masters' etcd", member=name, id=f"{response.member_id:x}", via=config.join)
        elif clustered:
            initial, state = f"{name}={peer_url}", "new"
            Membership(name=name, member_id=0, initial_cluster=initial, client_urls=()).save(folder)
        else:
            initial, state = None, "new"
        sup = EtcdSupervisor(data_dir=folder, client_port=client_port, peer_port=peer_port, host=host, name=name,
                             initial_cluster=initial, initial_cluster_state=state, timing=config.etcd_timing)
        self.etcd_process = sup
        if promote_id:
            # A learner answers almost nothing and is healthy only once promoted: promote it through the
            # others while it starts.
            helper = Store(endpoints=list(others), tls=sup.client_tls, tls_name="localhost")
            await helper.connect()
            try:
                await asyncio.gather(sup.start(), promote(helper, promote_id) if must_promote else
                                     _promote_quietly(helper, promote_id))
            finally:
                await helper.close()
        else:
            await sup.start()
        store = Store(endpoints=[sup.endpoint, *others], tls=sup.client_tls, tls_name="localhost")
        await store.connect()
        return store

    async def _lead(self, fence: Fence, informers: InformerFactory, enabled: frozenset[str]) -> Stop:
        """Start the control loops on the shared caches, every write fenced; returns what stops them."""
        assert self.client is not None
        self.liveness.fresh_grace()
        loops = Supervisor(name="control-loops")
        scope = informers.scoped()
        scope.keep_under = self.supervisor  # the caches outlive a term of leadership
        client = FencedClient(self.client, fence)
        if enabled & MANAGED_CONTROLLERS:
            self.controllers = start_controllers(supervisor=loops, client=client, liveness=self.liveness,
                                                 config=self.config, enabled=enabled & MANAGED_CONTROLLERS,
                                                 informers=scope, identity=self.identity)
        if "endpoints" in enabled:
            start_endpoints_controller(supervisor=loops, client=client, services=scope.informer("services"),
                                       pods=scope.informer("pods"))
        scope.start(self.supervisor)  # the caches the loops asked for that nobody had started yet
        await self.health.set(LEADER_HEALTH, health_pb2.HealthCheckResponse.SERVING)

        async def stop() -> None:
            await self.health.set(LEADER_HEALTH, health_pb2.HealthCheckResponse.NOT_SERVING)
            await loops.stop_all()
            scope.close()
            self.controllers = None

        return stop

    def _spawn(self, work: Coroutine[Any, Any, None], *, what: str) -> None:
        """Run one-shot work in the background, keeping a reference and logging its failure."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background work failed", work=what, exc_info=t.exception())

        task.add_done_callback(done)

    @property
    def api_address(self) -> str:
        """Where other masters reach this one's API (logs and exec are relayed there)."""
        if self.config.advertise_address:
            return f"{self.config.advertise_address}:{self.port}"
        return advertised(self.config.listen, self.port)

    def _master_credentials(self, authority: ClusterAuthority) -> Credentials:
        """This master's own client certificate (system:masters), made once: it relays calls to other masters."""
        if self._relay_credentials is None:
            issued = authority.issue_client(Identity(user=f"system:kyb-master:{socket.gethostname()}",
                                                     groups=(MASTERS_GROUP,)), validity=ADMIN_CERTIFICATE_VALIDITY)
            assert issued.key is not None
            self._relay_credentials = Credentials(ca=authority.certificate_pem, certificate=issued.certificate,
                                                  key=issued.key)
        return self._relay_credentials

    def _write_admin_config(self, authority: ClusterAuthority) -> None:
        """A cluster-admin credentials file (0600): a fresh client certificate in system:masters."""
        issued = authority.issue_client(Identity(user="admin", groups=(MASTERS_GROUP,)),
                                        validity=ADMIN_CERTIFICATE_VALIDITY)
        assert issued.key is not None
        credentials = Credentials(ca=authority.certificate_pem, certificate=issued.certificate, key=issued.key)
        save(self.config.kubeconfig_path, admin_config(server=advertised(self.config.listen, self.port),
                                                       credentials=credentials))

    async def _watch_store_health(self) -> None:
        """Report the API NOT_SERVING while etcd is unreachable or without quorum (the process itself stays up)."""
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
                (log.info if ok else log.warning)("store health", etcd="reachable" if ok else
                                                  "no quorum" if self.store.quorum_lost else "unreachable")
                serving = ok
            await asyncio.sleep(0.5)

    async def _watch_quorum(self) -> None:
        """Ask our etcd member whether it has a leader every 0.25 s (a local question, no raft round), so that
        calls fail at once with UNAVAILABLE naming the lost quorum instead of each waiting for its timeout."""
        assert self.store is not None
        while True:
            await self.store.check_quorum()
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting calls, finish in-flight ones briefly, stop actors and etcd."""
        log.info("shutting down")
        if self.bootstrap_server is not None:
            await self.bootstrap_server.stop(grace=0.5)
        if self.server is not None:
            await self.server.stop(grace=2.0)
        await self.supervisor.stop_all()
        for task in list(self._tasks):
            task.cancel()
        if self.store is not None:
            await self.store.close()
        if self.etcd_process is not None:
            await self.etcd_process.stop()


async def _promote_quietly(store: Store, member_id: int) -> None:
    """`promote` after a restart: a failure is logged, not fatal (the member may be a voter for long)."""
    try:
        await promote(store, member_id, timeout=30.0)
    except JoinError as err:
        log.warning("etcd member not promoted at restart", error=str(err))


def _event_recorder(client: LocalClient) -> EventRecorder:
    """The master's event recorder for what kubelets report (repeats are counted, not duplicated)."""
    return EventRecorder(client=client, component="kubelet")


