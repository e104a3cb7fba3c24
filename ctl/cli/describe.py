"""`kybctl describe`: a human summary of objects, followed by their recent events.

A describer per kind (`DESCRIBERS`) writes "Key: value" lines into a `Writer`,
which aligns them as kubectl's describe does (Go tabwriter, padding 2). A
describer may read related objects (a deployment's ReplicaSets, a node's
pods). Events cannot be selected by involvedObject on the server, so the
namespace's events are listed once and matched here by kind, name and uid.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import click
from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.core.api import kinds
from kybernetes.core.api.kinds import ApiObject
from kybernetes.ctl.cli import printers
from kybernetes.ctl.cli.args import check_selector, parse_resource_args
from kybernetes.ctl.cli.errors import SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo, no_resources_line
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, pass_settings
from kybernetes.ctl.client import Client, NotFoundError
from kybernetes.proto import objects_pb2 as pb

NONE = printers.NONE


class Writer:
    """Collects describe output: aligned `Key: value` lines at indent levels, and preformatted tables."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, str | None]] = []  # (left cell, value or None for a plain line)

    def item(self, level: int, key: str, value: object = None) -> None:
        """`Key:  value` (value None: a heading `Key:` with nothing after it)."""
        left = "  " * level + f"{key}:"
        self._lines.append((left, None if value is None else str(value)))

    def line(self, level: int, text: str) -> None:
        self._lines.append(("  " * level + text, None))

    def mapping(self, level: int, key: str, values: Mapping[str, str], *, sep: str = "=") -> None:
        """`Labels:  a=b` with further pairs on continuation lines; `<none>` when empty."""
        pairs = [f"{k}{sep}{v}" for k, v in sorted(values.items())]
        self.values(level, key, pairs)

    def values(self, level: int, key: str, items: Sequence[str]) -> None:
        """A key with one value per line (aligned under the first); `<none>` when empty."""
        if not items:
            self.item(level, key, NONE)
            return
        self.item(level, key, items[0])
        for value in items[1:]:
            self._lines.append(("", value))

    def table(self, level: int, rows: Sequence[Sequence[str]]) -> None:
        """A header, a dashed rule and rows, aligned with describe's spacing."""
        header = list(rows[0])
        rule = ["-" * len(cell) for cell in header]
        for text in printers.tabulate([header, rule, *rows[1:]], min_width=0, padding=2):
            self.line(level, text.rstrip())

    def render(self) -> str:
        """Align values within each run of consecutive key/value lines."""
        out: list[str] = []
        block: list[tuple[str, str]] = []

        def flush() -> None:
            width = max((len(left) for left, _ in block), default=0) + 2
            out.extend((left.ljust(width) + value).rstrip() for left, value in block)
            block.clear()

        for left, value in self._lines:
            if value is None:
                flush()
                out.append(left)
            else:
                block.append((left, value))
        flush()
        return "\n".join(out)


def timestamp(stamp: Timestamp) -> str:
    """kubectl's describe time: `Mon, 02 Jan 2006 15:04:05 -0700` in local time; `<unset>` when unset."""
    if not printers.has_time(stamp):
        return "<unset>"
    when = dt.datetime.fromtimestamp(stamp.seconds, tz=dt.UTC).astimezone()
    return when.strftime("%a, %d %b %Y %H:%M:%S %z")


def _meta(w: Writer, obj: ApiObject, *, namespaced: bool = True) -> None:
    w.item(0, "Name", obj.metadata.name)
    if namespaced:
        w.item(0, "Namespace", obj.metadata.namespace)


def _labels_annotations(w: Writer, obj: ApiObject, level: int = 0) -> None:
    w.mapping(level, "Labels", obj.metadata.labels)
    annotations = {k: v for k, v in obj.metadata.annotations.items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    w.mapping(level, "Annotations", annotations, sep=": ")


def _controlled_by(w: Writer, obj: ApiObject) -> None:
    for ref in obj.metadata.owner_references:
        if ref.controller:
            w.item(0, "Controlled By", f"{ref.kind}/{ref.name}")


def _conditions(w: Writer, conditions: Iterable[pb.Condition], *, columns: Sequence[str] = ("Type", "Status"),
                now: float = 0.0) -> None:
    conditions = list(conditions)
    if not conditions:
        w.item(0, "Conditions", NONE)
        return
    w.item(0, "Conditions")
    getters: dict[str, Callable[[pb.Condition], str]] = {
        "Type": lambda c: c.type, "Status": lambda c: c.status, "Reason": lambda c: c.reason or "",
        "Message": lambda c: c.message, "LastHeartbeatTime": lambda c: timestamp(c.last_heartbeat_time),
        "LastTransitionTime": lambda c: timestamp(c.last_transition_time),
    }
    w.table(1, [list(columns), *([getters[col](c) for col in columns] for c in conditions)])


def _state(w: Writer, level: int, title: str, state: pb.ContainerState) -> None:
    if state.HasField("running"):
        w.item(level, title, "Running")
        w.item(level + 1, "Started", timestamp(state.running.started_at))
    elif state.HasField("terminated"):
        term = state.terminated
        w.item(level, title, "Terminated")
        w.item(level + 1, "Reason", term.reason or NONE)
        if term.message:
            w.item(level + 1, "Message", " ".join(term.message.split()))
        w.item(level + 1, "Exit Code", term.exit_code)
        if term.signal:
            w.item(level + 1, "Signal", term.signal)
        w.item(level + 1, "Started", timestamp(term.started_at))
        w.item(level + 1, "Finished", timestamp(term.finished_at))
    elif state.HasField("waiting"):
        w.item(level, title, "Waiting")
        w.item(level + 1, "Reason", state.waiting.reason or NONE)
        if state.waiting.message:
            w.item(level + 1, "Message", " ".join(state.waiting.message.split()))
    else:
        w.item(level, title, "Waiting" if title == "State" else NONE)


def _probe(probe: pb.Probe) -> str:
    if probe.HasField("http_get"):
        port = printers.NONE
        which = probe.http_get.port.WhichOneof("value")
        if which:
            port = str(getattr(probe.http_get.port, which))
        action = f"http-get {probe.http_get.scheme.lower() or 'http'}://{probe.http_get.host}:{port}" \
                 f"{probe.http_get.path or '/'}"
    elif probe.HasField("tcp_socket"):
        which = probe.tcp_socket.port.WhichOneof("value")
        action = f"tcp-socket {probe.tcp_socket.host}:{getattr(probe.tcp_socket.port, which) if which else ''}"
    elif probe.HasField("exec"):
        action = f"exec {list(probe.exec.command)}"
    else:
        action = "unknown"
    return (f"{action} delay={probe.initial_delay_seconds}s timeout={probe.timeout_seconds}s "
            f"period={probe.period_seconds}s #success={probe.success_threshold} "
            f"#failure={probe.failure_threshold}")


def _container(w: Writer, level: int, container: pb.Container, status: pb.ContainerStatus | None) -> None:
    w.item(level, container.name)
    inner = level + 1
    if status is not None and status.container_id:
        w.item(inner, "Container ID", status.container_id)
    w.item(inner, "Image", container.image)
    if status is not None and status.image_id:
        w.item(inner, "Image ID", status.image_id)
    ports = [f"{p.container_port}/{p.protocol or 'TCP'}" for p in container.ports]
    w.item(inner, "Port" + ("s" if len(ports) > 1 else ""), ", ".join(ports) or NONE)
    if container.command:
        w.values(inner, "Command", list(container.command))
    if container.args:
        w.values(inner, "Args", list(container.args))
    if status is not None:
        _state(w, inner, "State", status.state)
        if status.last_state.HasField("terminated") or status.last_state.HasField("running"):
            _state(w, inner, "Last State", status.last_state)
        w.item(inner, "Ready", str(status.ready))
        w.item(inner, "Restart Count", status.restart_count)
    if container.resources.limits:
        w.item(inner, "Limits")
        for key, value in sorted(container.resources.limits.items()):
            w.item(inner + 1, key, value)
    if container.resources.requests:
        w.item(inner, "Requests")
        for key, value in sorted(container.resources.requests.items()):
            w.item(inner + 1, key, value)
    if container.HasField("liveness_probe"):
        w.item(inner, "Liveness", _probe(container.liveness_probe))
    if container.HasField("readiness_probe"):
        w.item(inner, "Readiness", _probe(container.readiness_probe))
    if container.env:
        w.item(inner, "Environment")
        for e in container.env:
            w.item(inner + 1, e.name, e.value)
    else:
        w.item(inner, "Environment", NONE)


def _pod_template(w: Writer, template: pb.PodTemplateSpec) -> None:
    w.item(0, "Pod Template")
    w.mapping(1, "Labels", template.metadata.labels)
    w.item(1, "Containers")
    for container in template.spec.containers:
        _container(w, 2, container, None)


# ---------------------------------------------------------------- per-kind describers

Describer = Callable[[Client, Any, Writer, float], Awaitable[None]]


async def describe_pod(_client: Client, pod: pb.Pod, w: Writer, now: float) -> None:
    _meta(w, pod)
    node = pod.spec.node_name
    w.item(0, "Node", f"{node}/{pod.status.host_ip}" if node and pod.status.host_ip else node or NONE)
    if printers.has_time(pod.status.start_time):
        w.item(0, "Start Time", timestamp(pod.status.start_time))
    _labels_annotations(w, pod)
    status = pod.status.phase or "Pending"
    if pod.metadata.HasField("deletion_timestamp"):
        status = f"Terminating (lasts {printers.age(pod.metadata.deletion_timestamp, now)})"
        w.item(0, "Status", status)
        w.item(0, "Termination Grace Period", f"{pod.metadata.deletion_grace_period_seconds}s")
    else:
        w.item(0, "Status", status)
    if pod.status.reason:
        w.item(0, "Reason", pod.status.reason)
    if pod.status.message:
        w.item(0, "Message", " ".join(pod.status.message.split()))
    w.item(0, "IP", pod.status.pod_ip or "")
    _controlled_by(w, pod)
    w.item(0, "Containers")
    statuses = {s.name: s for s in pod.status.container_statuses}
    for container in pod.spec.containers:
        _container(w, 1, container, statuses.get(container.name, pb.ContainerStatus()))
    _conditions(w, pod.status.conditions)
    w.mapping(0, "Node-Selectors", pod.spec.node_selector)
    tolerations = []
    for t in pod.spec.tolerations:
        text = t.key + (f"={t.value}" if t.value else "") + (f":{t.effect}" if t.effect else "")
        text += " op=Exists" if t.operator == "Exists" else ""
        text += f" for {t.toleration_seconds}s" if t.has_toleration_seconds else ""
        tolerations.append(text)
    w.values(0, "Tolerations", tolerations)


async def _owned(client: Client, resource: str, owner: ApiObject) -> list[Any]:
    listed = await client.list(resource, namespace=owner.metadata.namespace)
    return [o for o in listed.items if any(r.uid == owner.metadata.uid for r in o.metadata.owner_references)]


async def describe_deployment(client: Client, d: pb.Deployment, w: Writer, _now: float) -> None:
    _meta(w, d)
    w.item(0, "CreationTimestamp", timestamp(d.metadata.creation_timestamp))
    _labels_annotations(w, d)
    w.item(0, "Selector", printers.selector_string(d.spec.selector))
    s = d.status
    w.item(0, "Replicas", f"{printers.desired_replicas(d)} desired | {s.updated_replicas} updated | "
                          f"{s.replicas} total | {s.available_replicas} available | {s.unavailable_replicas} "
                          "unavailable")
    strategy = d.spec.strategy.type or "RollingUpdate"
    w.item(0, "StrategyType", strategy)
    w.item(0, "MinReadySeconds", d.spec.min_ready_seconds)
    if strategy == "RollingUpdate":
        ru = d.spec.strategy.rolling_update

        def show(v: pb.IntOrString) -> str:
            which = v.WhichOneof("value")
            return str(getattr(v, which)) if which else "25%"

        w.item(0, "RollingUpdateStrategy", f"{show(ru.max_unavailable)} max unavailable, {show(ru.max_surge)} "
                                           "max surge")
    _pod_template(w, d.spec.template)
    _conditions(w, d.status.conditions, columns=("Type", "Status", "Reason"))
    owned = sorted(await _owned(client, "replicasets", d), key=lambda r: r.metadata.creation_timestamp.seconds)
    template = d.spec.template.spec.SerializeToString(deterministic=True)
    new = [r for r in owned if r.spec.template.spec.SerializeToString(deterministic=True) == template]
    old = [r for r in owned if r not in new]

    def summary(rs: pb.ReplicaSet) -> str:
        return f"{rs.metadata.name} ({rs.status.replicas}/{printers.desired_replicas(rs)} replicas created)"

    w.item(0, "OldReplicaSets", ", ".join(summary(r) for r in old) or NONE)
    w.item(0, "NewReplicaSet", summary(new[-1]) if new else NONE)


async def describe_replica_set(client: Client, rs: pb.ReplicaSet, w: Writer, _now: float) -> None:
    _meta(w, rs)
    w.item(0, "Selector", printers.selector_string(rs.spec.selector))
    _labels_annotations(w, rs)
    _controlled_by(w, rs)
    w.item(0, "Replicas", f"{rs.status.replicas} current / {printers.desired_replicas(rs)} desired")
    pods = await _owned(client, "pods", rs)
    phases = [p.status.phase for p in pods]
    w.item(0, "Pods Status", f"{phases.count('Running')} Running / {phases.count('Pending')} Waiting / "
                             f"{phases.count('Succeeded')} Succeeded / {phases.count('Failed')} Failed")
    _pod_template(w, rs.spec.template)
    if rs.status.conditions:
        _conditions(w, rs.status.conditions, columns=("Type", "Status", "Reason"))


async def describe_node(client: Client, node: pb.Node, w: Writer, now: float) -> None:
    _meta(w, node, namespaced=False)
    w.item(0, "Roles", printers.node_roles(node))
    _labels_annotations(w, node)
    w.item(0, "CreationTimestamp", timestamp(node.metadata.creation_timestamp))
    w.values(0, "Taints", [f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
                           for t in node.spec.taints])
    w.item(0, "Unschedulable", str(node.spec.unschedulable).lower())
    _conditions(w, node.status.conditions, now=now,
                columns=("Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message"))
    if node.status.addresses:
        w.item(0, "Addresses")
        for address in node.status.addresses:
            w.item(1, address.type, address.address)
    else:
        w.item(0, "Addresses", NONE)
    for title, values in (("Capacity", node.status.capacity), ("Allocatable", node.status.allocatable)):
        if values:
            w.item(0, title)
            for key, value in sorted(values.items()):
                w.item(1, key, value)
    info = node.status.node_info
    w.item(0, "System Info")
    for key, value in (("Machine ID", info.machine_id), ("Kernel Version", info.kernel_version),
                       ("OS Image", info.os_image), ("Operating System", info.operating_system),
                       ("Architecture", info.architecture),
                       ("Container Runtime Version", info.container_runtime_version),
                       ("Kubelet Version", info.kubelet_version)):
        w.item(1, key, value)
    w.item(0, "PodCIDR", node.spec.pod_cidr or NONE)
    pods = (await client.list("pods", field_selector=f"spec.nodeName={node.metadata.name}")).items
    running = [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]
    w.item(0, "Non-terminated Pods", f"({len(running)} in total)")
    if running:
        rows = [["Namespace", "Name", "Age"]]
        rows.extend([p.metadata.namespace, p.metadata.name, printers.age(p.metadata.creation_timestamp, now)]
                    for p in sorted(running, key=lambda p: (p.metadata.namespace, p.metadata.name)))
        w.table(1, rows)


async def describe_service(client: Client, svc: pb.Service, w: Writer, _now: float) -> None:
    _meta(w, svc)
    _labels_annotations(w, svc)
    w.item(0, "Selector", ",".join(f"{k}={v}" for k, v in sorted(svc.spec.selector.items())) or NONE)
    w.item(0, "Type", svc.spec.type or "ClusterIP")
    w.item(0, "IP", svc.spec.cluster_ip or NONE)
    try:
        endpoints: pb.Endpoints | None = await client.get("endpoints", svc.metadata.name,
                                                          namespace=svc.metadata.namespace)
    except NotFoundError:
        endpoints = None
    for port in svc.spec.ports:
        protocol = port.protocol or "TCP"
        w.item(0, "Port", f"{port.name or '<unset>'}  {port.port}/{protocol}")
        which = port.target_port.WhichOneof("value")
        target = getattr(port.target_port, which) if which else port.port
        w.item(0, "TargetPort", f"{target}/{protocol}")
        if port.node_port:
            w.item(0, "NodePort", f"{port.name or '<unset>'}  {port.node_port}/{protocol}")
        w.item(0, "Endpoints", printers.endpoints_string(endpoints) if endpoints else NONE)
    w.item(0, "Session Affinity", svc.spec.session_affinity or "None")


async def describe_endpoints(_client: Client, ep: pb.Endpoints, w: Writer, _now: float) -> None:
    _meta(w, ep)
    _labels_annotations(w, ep)
    if not ep.subsets:
        w.item(0, "Subsets", NONE)
        return
    w.item(0, "Subsets")
    for subset in ep.subsets:
        w.item(1, "Addresses", ",".join(a.ip for a in subset.addresses) or NONE)
        w.item(1, "NotReadyAddresses", ",".join(a.ip for a in subset.not_ready_addresses) or NONE)
        if subset.ports:
            w.item(1, "Ports")
            rows = [["Name", "Port", "Protocol"]]
            rows.extend([p.name or "<unset>", str(p.port), p.protocol or "TCP"] for p in subset.ports)
            w.table(2, rows)


async def describe_event(_client: Client, ev: pb.Event, w: Writer, now: float) -> None:
    _meta(w, ev)
    _labels_annotations(w, ev)
    obj = ev.involved_object
    w.item(0, "Involved Object")
    w.item(1, "Kind", obj.kind)
    w.item(1, "Name", obj.name)
    w.item(1, "Namespace", obj.namespace)
    w.item(0, "Type", ev.type or "Normal")
    w.item(0, "Reason", ev.reason)
    w.item(0, "Message", " ".join(ev.message.split()))
    w.item(0, "Source", printers.NONE if not ev.source.component else ev.source.component)
    w.item(0, "Count", ev.count or 1)
    w.item(0, "First Timestamp", timestamp(ev.first_timestamp))
    w.item(0, "Last Timestamp", timestamp(ev.last_timestamp))


async def describe_generic(_client: Client, obj: ApiObject, w: Writer, _now: float) -> None:
    """Name, namespace, labels, annotations and the rest as YAML (for kinds without a describer)."""
    from kybernetes.core.api import manifest

    kind = kinds.kind_of(obj)
    _meta(w, obj, namespaced=kind.namespaced)
    _labels_annotations(w, obj)
    doc = {k: v for k, v in manifest.to_dict(obj).items() if k not in ("apiVersion", "kind", "metadata")}
    for line in printers.to_yaml(doc).splitlines() if doc else []:
        w.line(0, line)


DESCRIBERS: dict[str, Describer] = {
    "Pod": describe_pod,
    "Deployment": describe_deployment,
    "ReplicaSet": describe_replica_set,
    "Node": describe_node,
    "Service": describe_service,
    "Endpoints": describe_endpoints,
    "Event": describe_event,
}


# ---------------------------------------------------------------- events of an object


def events_for(obj: ApiObject, events: Iterable[pb.Event]) -> list[pb.Event]:
    """The events about `obj` (by kind and name, and uid when both sides know it), oldest first."""
    kind = kinds.kind_of(obj).kind
    meta = obj.metadata
    mine = [e for e in events if e.involved_object.kind == kind and e.involved_object.name == meta.name
            and (not e.involved_object.uid or not meta.uid or e.involved_object.uid == meta.uid)
            and (not kinds.kind_of(obj).namespaced or not e.involved_object.namespace
                 or e.involved_object.namespace == meta.namespace)]
    return sorted(mine, key=lambda e: (printers.event_time(e).seconds, e.metadata.name))


def write_events(w: Writer, events: Sequence[pb.Event], now: float) -> None:
    if not events:
        w.item(0, "Events", NONE)
        return
    w.item(0, "Events")
    rows = [["Type", "Reason", "Age", "From", "Message"]]
    for e in events:
        when = printers.age(printers.event_time(e), now)
        if e.count > 1 and printers.has_time(e.first_timestamp):
            when = f"{when} (x{e.count} over {printers.age(e.first_timestamp, now)})"
        source = ", ".join(p for p in (e.source.component, e.source.host) if p)
        rows.append([e.type or "Normal", e.reason, when, source, " ".join(e.message.split())])
    w.table(1, rows)


# ---------------------------------------------------------------- the command


@command("describe")
@click.argument("args", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="Describe matching objects in every namespace.")
@click.option("-l", "--selector", default="", help="Describe the objects of KIND matching this label selector.")
@click.option("--show-events", type=click.BOOL, default=True, is_flag=False, flag_value=True, metavar="BOOL",
              help="Print the objects' events (default true).")
@pass_settings
def describe(settings: Settings, args: tuple[str, ...], all_namespaces: bool, selector: str,
             show_events: bool) -> None:
    """Show details of objects and their events: describe KIND [NAME…] | KIND/NAME… | KIND -l SELECTOR"""
    resources = parse_resource_args(args)
    if not resources.kinds:
        raise usage_error('You must specify the type of resource to describe. Use "kybctl api-resources" for a '
                          "complete list of supported resources.")
    check_selector(selector)

    async def body(client: Client) -> int:
        failed = 0
        objs: list[Any] = []
        if resources.targets:
            for target in resources.targets:
                try:
                    objs.append(await client.get(target.kind.resource, target.name,
                                                 namespace=settings.namespace_for(target.kind)))
                except NotFoundError as err:
                    report_error(err, settings)
                    failed += 1
        else:
            for kind in resources.kinds:
                namespace = "" if all_namespaces or not kind.namespaced else settings.namespace
                listed = await client.list(kind.resource, namespace=namespace, label_selector=selector)
                objs.extend(sorted(listed.items, key=lambda o: (o.metadata.namespace, o.metadata.name)))
            if not objs:
                kind = resources.kinds[0]
                echo(no_resources_line(namespaced=kind.namespaced, all_namespaces=all_namespaces,
                                       namespace=settings.namespace), err=True)
        events_by_namespace: dict[str, list[pb.Event]] = {}
        now = time.time()
        for index, obj in enumerate(objs):
            kind = kinds.kind_of(obj)
            w = Writer()
            await DESCRIBERS.get(kind.kind, describe_generic)(client, obj, w, now)
            if show_events and kind.kind != "Event":
                # Events about cluster-scoped objects (nodes) live in any namespace, usually "default".
                namespace = obj.metadata.namespace if kind.namespaced else ""
                if namespace not in events_by_namespace:
                    events_by_namespace[namespace] = (await client.list("events", namespace=namespace)).items
                write_events(w, events_for(obj, events_by_namespace[namespace]), now)
            if index:
                echo()
                echo()
            echo(w.render())
        return failed

    if run(settings, body):
        raise SilentExit(1)
