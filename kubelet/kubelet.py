"""One node agent: the link to the master, the pod manager, status and events, logs and exec sessions,
plus the Node's networking: host-gw routes to other Nodes' pods and the Service proxy.

Assembly only. `Kubelet.run()` starts the pod manager and the link and runs
until cancelled; cancelling it stops the kubelet's own tasks but never its
pods, which keep running for the next kubelet to adopt. Routes and the proxy
are asked for in Register (watch_nodes / watch_services) only when enabled;
hollow kubelets never ask.
"""

from __future__ import annotations

import asyncio

import grpc

from kybernetes.core.log import get_logger
from kybernetes.core.machinery.actors import Supervisor
from kybernetes.core.machinery.tasks import TaskSet
from kybernetes.kubelet.config import KubeletConfig
from kybernetes.kubelet.events import EventRecorder
from kybernetes.kubelet.link import MasterLink
from kybernetes.kubelet.logs import LogStore
from kybernetes.kubelet.nodeinfo import HOLLOW_LABEL, MachineFacts, build_node, default_node_ip
from kybernetes.kubelet.pods import adoption
from kybernetes.kubelet.pods.manager import PodManager
from kybernetes.kubelet.pods.status import StatusReporter
from kybernetes.kubelet.pods.worker import NodeRuntime, WorkerContext
from kybernetes.kubelet.proxy.proxy import ServiceProxy
from kybernetes.kubelet.routes import RouteError, sync_pod_routes
from kybernetes.kubelet.runtime.base import ContainerRuntimeError
from kybernetes.kubelet.sessions import Sessions
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb


class Kubelet:
    """A kubelet for one Node."""

    def __init__(self, *, config: KubeletConfig, node_name: str, runtime: NodeRuntime, channel: grpc.aio.Channel,
                 machine: MachineFacts) -> None:
        self.config = config
        self.node_name = node_name
        self.runtime = runtime
        self.machine = machine
        self.node_ip = config.node_ip or default_node_ip(master=config.master)
        self.log = get_logger("kubelet", node=node_name)
        self._runtime_version = ""
        self.pod_cidr: str | None = None  # the Node's spec.podCIDR, from Registered
        self.link = MasterLink(channel=channel, node_name=node_name, register=self._register,
                               on_registered=self._registered, on_message=self._dispatch,
                               on_disconnected=self._disconnected, heartbeat_interval=config.heartbeat_interval,
                               reconnect_min=config.reconnect_min, reconnect_max=config.reconnect_max)
        self.reporter = StatusReporter(send=self.link.send)
        self.events = EventRecorder(node_name=node_name, send=self.link.send_event)
        self.logs = LogStore(config.root_dir)
        ctx = WorkerContext(node_name=node_name, runtime=runtime, logs=self.logs, events=self.events,
                            reporter=self.reporter, send=self.link.send, node_ip=lambda: self.node_ip,
                            backoff_base=config.backoff_base, backoff_max=config.backoff_max,
                            services=lambda: self._services, pod_cidr=lambda: self.pod_cidr,
                            seccomp_default="RuntimeDefault" if config.seccomp_default else "Unconfined")
        self.pods = PodManager(ctx=ctx, relist_interval=config.relist_interval,
                               log_max_bytes=config.container_log_max_bytes)
        self.sessions = Sessions(manager=self.pods, logs=self.logs, send=self.link.send)
        self.supervisor = Supervisor(name=f"kubelet:{node_name}")
        # One-shot work started by a message: a failure leaves the kubelet's view of the master unknown, so it
        # is logged with its traceback and the link registers again (a fresh Registered and PodSync).
        self.tasks = TaskSet(name=f"kubelet:{node_name}",
                             on_failure=lambda what, _err: self.link.reconnect(reason=f"{what} failed"))
        self._nodes: list[pb.Node] | None = None
        self._services: list[pb.Service] = []
        self._nodes_changed = asyncio.Event()
        self.proxy: ServiceProxy | None = None
        if config.wants_proxy:
            self.proxy = ServiceProxy(events=self.events)

    async def run(self) -> None:
        """Run until cancelled."""
        self.supervisor.start(self.pods)
        if self.proxy is not None:
            self.supervisor.start(self.proxy)
        if self.config.wants_routes:
            self.supervisor.start_fn(f"routes:{self.node_name}", self._sync_routes)
        self.supervisor.start_fn(f"link:{self.node_name}", self.link.run)
        try:
            await asyncio.Event().wait()
        finally:
            self.sessions.cancel_all()
            await self.tasks.cancel_all()
            await self.supervisor.stop_all()

    # ----------------------------------------------------------------- link

    async def _register(self) -> node_pb2.Register:
        if not self._runtime_version:
            try:
                self._runtime_version = await self.runtime.version()
            except ContainerRuntimeError as err:
                self.log.warning("runtime version unknown", error=str(err))
        node = build_node(name=self.node_name, node_ip=self.node_ip, runtime_version=self._runtime_version,
                          max_pods=self.config.max_pods, hollow=self.config.hollow, machine=self.machine,
                          extra_labels=self.config.extra_labels)
        running = sorted(self.pods.workers) if self.pods.synced.is_set() else \
            await adoption.running_pod_uids(self.runtime)
        return node_pb2.Register(node=node, running_pod_uids=running, watch_nodes=self.config.wants_routes,
                                 watch_services=not self.config.hollow)

    async def _registered(self, registered: node_pb2.Registered) -> None:
        cidr = registered.node.spec.pod_cidr
        if cidr:
            self.pod_cidr = cidr
            try:
                self.runtime.set_pod_cidr(cidr)
            except ValueError as err:
                self.log.error("the master assigned an unusable podCIDR", pod_cidr=cidr, error=str(err))
        self.reporter.resend_all()

    def _dispatch(self, message: node_pb2.MasterMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "pod_sync":
            self.pods.pod_sync(list(message.pod_sync.pods))
        elif kind == "pod_upsert":
            self.pods.pod_upsert(message.pod_upsert.pod)
        elif kind == "pod_remove":
            self.pods.pod_remove(message.pod_remove.uid)
        elif kind == "log_request":
            self.sessions.start_logs(message.log_request)
        elif kind == "exec_start":
            self.sessions.start_exec(message.exec_start)
        elif kind == "exec_input":
            self.sessions.exec_input(message.exec_input)
        elif kind == "cancel":
            self.sessions.cancel(message.cancel.request_id)
        elif kind == "credit":
            self.sessions.credit(message.credit)
        elif kind == "node_sync":
            self._nodes = list(message.node_sync.nodes)
            self._nodes_changed.set()
        elif kind == "service_sync":
            self._services = list(message.service_sync.services)
            if self.proxy is not None:
                self.proxy.tell(message.service_sync)
        elif kind == "registered":
            self.tasks.spawn(self._registered(message.registered), what="registered", node=self.node_name)

    def _disconnected(self) -> None:
        self.sessions.cancel_all()

    async def _sync_routes(self) -> None:
        """Converge the routing table to the newest NodeSync (only the newest matters)."""
        while True:
            await self._nodes_changed.wait()
            self._nodes_changed.clear()
            # Hollow Nodes run nothing: a route to their pod range would lead nowhere.
            nodes = [n for n in self._nodes or [] if n.metadata.labels.get(HOLLOW_LABEL) != "true"]
            try:
                await sync_pod_routes(nodes=nodes, self_name=self.node_name)
            except RouteError as err:
                self.log.warning("pod routes not synced, retrying", error=str(err))
                await asyncio.sleep(2.0)
                self._nodes_changed.set()
