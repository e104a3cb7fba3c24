"""Keeps every Service's Endpoints object equal to the ready pods its selector matches.

Level-triggered: a Service's key is queued whenever the Service or a pod that
matches (or matched) its selector changes; `sync` then computes the whole
Endpoints from the caches and writes it only if it differs. A pod appears
under `addresses` when it has an IP and is Ready, under `notReadyAddresses`
when it has an IP but is not Ready, and disappears the moment it starts
terminating (deletionTimestamp), before its containers are signalled, so the
proxies stop sending it new connections first. A pod whose IP the API would
refuse in Endpoints (`formats.endpoint_ip`: a hostNetwork pod on a Node whose
address is loopback, say) is left out, so one such pod cannot make every write
of its Service's Endpoints fail.
"""

from __future__ import annotations

from collections.abc import Iterable

from kybernetes.core.api import formats
from kybernetes.core.api.client import ObjectClient
from kybernetes.core.api.errors import AlreadyExistsError, ConflictError, NotFoundError
from kybernetes.core.api.objects import is_pod_ready
from kybernetes.core.api.selectors import from_labels
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.core.machinery.actors import Supervisor
from kybernetes.core.machinery.informer import Informer, by_namespace, object_key, split_key
from kybernetes.core.machinery.workqueue import WorkQueue, run_workers
from kybernetes.proto import objects_pb2 as pb

log = get_logger("endpoints-controller")


def _resolve_port(pod: pb.Pod, port: pb.ServicePort) -> int | None:
    """The pod's port for a Service port: targetPort as a number, or a named container port."""
    target = port.target_port
    if target.WhichOneof("value") == "str_val":
        for container in pod.spec.containers:
            for cp in container.ports:
                if cp.name == target.str_val and (cp.protocol or "TCP") == (port.protocol or "TCP"):
                    return cp.container_port
        return None
    return target.int_val or port.port


def build_subsets(service: pb.Service, pods: Iterable[pb.Pod]) -> list[pb.EndpointSubset]:
    """Endpoints subsets for a Service from candidate pods (grouped by resolved port set, sorted)."""
    groups: dict[tuple[tuple[str, int, str], ...], tuple[list[pb.EndpointAddress], list[pb.EndpointAddress]]] = {}
    for pod in pods:
        if not pod.status.pod_ip or pod.metadata.HasField("deletion_timestamp"):
            continue
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        problems = formats.endpoint_ip(pod.status.pod_ip)
        if problems:
            log.warning("pod left out of Endpoints: its IP cannot be an endpoint", ip=pod.status.pod_ip,
                        object=obj_ref("pods", pod.metadata.name, pod.metadata.namespace), error="; ".join(problems))
            continue
        ports = []
        for sp in service.spec.ports:
            resolved = _resolve_port(pod, sp)
            if resolved is not None:
                ports.append((sp.name, resolved, sp.protocol or "TCP"))
        if not ports:
            continue
        address = pb.EndpointAddress(ip=pod.status.pod_ip, node_name=pod.spec.node_name, target_ref=pb.ObjectReference(
            kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid))
        ready, not_ready = groups.setdefault(tuple(ports), ([], []))
        (ready if is_pod_ready(pod) else not_ready).append(address)
    subsets = []
    for port_set, (ready, not_ready) in sorted(groups.items()):
        subset = pb.EndpointSubset()
        subset.addresses.extend(sorted(ready, key=lambda a: a.ip))
        subset.not_ready_addresses.extend(sorted(not_ready, key=lambda a: a.ip))
        subset.ports.extend(pb.EndpointPort(name=n, port=p, protocol=proto) for n, p, proto in port_set)
        subsets.append(subset)
    return subsets


class EndpointsController:
    """Service + pod informers, a queue of Service keys, and the sync."""

    def __init__(self, *, client: ObjectClient, services: Informer, pods: Informer, workers: int = 4) -> None:
        self.client = client
        self.services = services
        self.pods = pods
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue(name="endpoints")
        pods.add_indexer("namespace", by_namespace)
        services.add_handler(on_add=self._service_changed, on_update=lambda _o, n: self._service_changed(n),
                             on_delete=self._service_changed)
        pods.add_handler(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)

    def _service_changed(self, svc: pb.Service) -> None:
        self.queue.add(object_key(svc))

    def _pod_updated(self, old: pb.Pod, new: pb.Pod) -> None:
        self._pod_changed(new)
        if old.metadata.labels != new.metadata.labels:
            self._pod_changed(old)

    def _pod_changed(self, pod: pb.Pod) -> None:
        for svc in self.services.list():
            if svc.metadata.namespace != pod.metadata.namespace or not svc.spec.selector:
                continue
            if from_labels(svc.spec.selector).matches(pod.metadata.labels):
                self.queue.add(object_key(svc))

    async def run(self) -> None:
        """Actor body: wait for the caches, then run the workers."""
        await self.services.wait_synced()
        await self.pods.wait_synced()
        for svc in self.services.list():
            self.queue.add(object_key(svc))
        await run_workers(self.queue, self.sync, workers=self.workers, name="endpoints",
                          quiet=(ConflictError, AlreadyExistsError))

    async def sync(self, key: str) -> None:
        """Make the Endpoints of one Service match its ready pods (one write at most)."""
        namespace, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            try:
                await self.client.delete("endpoints", name, namespace=namespace, unconditional=True)
            except NotFoundError:
                pass
            return
        if not svc.spec.selector:
            return  # Endpoints of selector-less Services are managed by their users, as in Kubernetes
        selector = from_labels(svc.spec.selector)
        candidates = [p for p in self.pods.by_index("namespace", namespace) if selector.matches(p.metadata.labels)]
        subsets = build_subsets(svc, candidates)
        try:
            current = await self.client.get("endpoints", name, namespace=namespace)
        except NotFoundError:
            ep = pb.Endpoints()
            ep.metadata.name, ep.metadata.namespace = name, namespace
            ep.metadata.labels.update(svc.metadata.labels)
            ep.subsets.extend(subsets)
            await self.client.create(ep)
            return
        if list(current.subsets) == subsets:
            return
        del current.subsets[:]
        current.subsets.extend(subsets)
        await self.client.update(current)
        log.debug("endpoints updated", object=f"endpoints/{namespace}/{name}",
                  ready=sum(len(s.addresses) for s in subsets))


def start_endpoints_controller(*, supervisor: Supervisor, client: ObjectClient, services: Informer | None = None,
                               pods: Informer | None = None) -> EndpointsController:
    """Start the controller (and its own informers unless shared ones are given) as supervised actors."""
    own = []
    if services is None:
        services = Informer(client=client, resource="services", name="endpoints-informer-services")
        own.append(services)
    if pods is None:
        pods = Informer(client=client, resource="pods", name="endpoints-informer-pods")
        own.append(pods)
    controller = EndpointsController(client=client, services=services, pods=pods)
    for informer in own:
        supervisor.start(informer)
    supervisor.start_fn("endpoints-controller", controller.run)
    return controller
