"""How kybctl prints objects: kubectl's tables, ages and -o json|yaml|name.

A table is a list of `Column`s registered per kind in `TABLES`; a column maps
an object (and "now", for ages) to a cell. Columns marked `wide` appear only
with `-o wide`. A kind without a registered table prints NAME and AGE. Adding
a kind's table is one `TABLES[...] = [...]` entry.

Tables are laid out as kubectl's tabwriter lays them out (cells padded by 3 to
at least 6 characters, the last cell not padded). The cell functions follow
kubectl's printers (pkg/printers/internalversion/printers.go): e.g. a pod's
STATUS is the reason of its waiting or terminated container, or Terminating,
else its phase.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.core.api import kinds
from kybernetes.core.api.objects import is_pod_ready
from kybernetes.ctl.cli.args import type_name
from kybernetes.proto import objects_pb2 as pb

NONE = "<none>"
UNKNOWN = "<unknown>"
OUTPUT_FORMATS = ("json", "name", "wide", "yaml")

# ---------------------------------------------------------------- durations


def human_duration(seconds: float) -> str:
    """kubectl's short durations (apimachinery's HumanDuration): 5s, 3m20s, 2d4h, 3y."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def has_time(stamp: Timestamp) -> bool:
    """Whether a timestamp field is set (proto3 leaves unset timestamps at the epoch)."""
    return stamp.seconds != 0 or stamp.nanos != 0


def age(stamp: Timestamp, now: float) -> str:
    """The time since `stamp` as kubectl prints ages; `<unknown>` when unset."""
    if not has_time(stamp):
        return UNKNOWN
    return human_duration(now - (stamp.seconds + stamp.nanos / 1e9))


# ---------------------------------------------------------------- tables


def column_widths(rows: Sequence[Sequence[str]], *, min_width: int = 6, padding: int = 3) -> list[int]:
    """The widths Go's tabwriter(minwidth 6, padding 3) gives every column but the last."""
    widths = [0] * max(max((len(r) for r in rows), default=0) - 1, 0)
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell) + padding, min_width)
    return widths


def tabulate(rows: Sequence[Sequence[str]], *, widths: Sequence[int] = (), min_width: int = 6,
             padding: int = 3) -> list[str]:
    """Align rows as kubectl does: every cell but the last padded to its column's width.

    `widths` are minimum widths (a watch keeps later lines aligned with the first table);
    describe's tables use kubectl's describe spacing (min_width 0, padding 2).
    """
    computed = column_widths(rows, min_width=min_width, padding=padding)
    computed = [max(c, widths[i]) if i < len(widths) else c for i, c in enumerate(computed)]
    out = []
    for row in rows:
        cells = [cell.ljust(computed[index]) for index, cell in enumerate(row[:-1])]
        out.append("".join(cells) + (row[-1] if row else ""))
    return out


Cell = Callable[[Any, float], str]


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: header, how to compute the cell from (object, now), and whether only -o wide shows it."""

    header: str
    cell: Cell
    wide: bool = False


def _name(obj: Any, _now: float) -> str:
    return obj.metadata.name


def _age(obj: Any, now: float) -> str:
    return age(obj.metadata.creation_timestamp, now)


NAME = Column("NAME", _name)
AGE = Column("AGE", _age)

# ---------------------------------------------------------------- Pod


def pod_status(pod: pb.Pod) -> str:
    """The STATUS kubectl shows for a pod."""
    reason = pod.status.reason or pod.status.phase
    has_running = False
    for status in reversed(pod.status.container_statuses):
        state = status.state
        if state.HasField("waiting") and state.waiting.reason:
            reason = state.waiting.reason
        elif state.HasField("terminated") and state.terminated.reason:
            reason = state.terminated.reason
        elif state.HasField("terminated"):
            term = state.terminated
            reason = f"Signal:{term.signal}" if term.signal else f"ExitCode:{term.exit_code}"
        elif status.ready and state.HasField("running"):
            has_running = True
    if reason == "Completed" and has_running:
        ready = is_pod_ready(pod)
        reason = "Running" if ready else "NotReady"
    if pod.metadata.HasField("deletion_timestamp"):
        reason = "Unknown" if pod.status.reason == "NodeLost" else "Terminating"
    return reason or "Pending"


def pod_ready(pod: pb.Pod) -> str:
    """READY: ready containers / containers."""
    ready = sum(1 for s in pod.status.container_statuses if s.ready and s.state.HasField("running"))
    return f"{ready}/{len(pod.spec.containers)}"


def pod_restarts(pod: pb.Pod, now: float) -> str:
    """RESTARTS: the sum of restartCount, with kubectl's "(5s ago)" since the last restart."""
    restarts = sum(s.restart_count for s in pod.status.container_statuses)
    last = max((s.last_state.terminated.finished_at.seconds for s in pod.status.container_statuses
                if s.last_state.HasField("terminated") and has_time(s.last_state.terminated.finished_at)),
               default=0)
    if restarts and last:
        return f"{restarts} ({human_duration(now - last)} ago)"
    return str(restarts)


def _or_none(value: str) -> str:
    return value or NONE


# ---------------------------------------------------------------- Node


def node_status(node: pb.Node) -> str:
    """STATUS from the Ready condition (Ready/NotReady, Unknown without one), plus SchedulingDisabled."""
    parts = []
    for condition in node.status.conditions:
        if condition.type == "Ready":
            parts.append("Ready" if condition.status == "True" else "NotReady")
            break
    if not parts:
        parts.append("Unknown")
    if node.spec.unschedulable:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


ROLE_PREFIX = "node-role.kubernetes.io/"


def node_roles(node: pb.Node) -> str:
    """ROLES from node-role.kubernetes.io/<role> labels (and kubernetes.io/role)."""
    roles = set()
    for key, value in node.metadata.labels.items():
        if key.startswith(ROLE_PREFIX) and key != ROLE_PREFIX:
            roles.add(key.removeprefix(ROLE_PREFIX))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def node_address(node: pb.Node, kind: str) -> str:
    """The first address of a type (InternalIP, ExternalIP, Hostname)."""
    return next((a.address for a in node.status.addresses if a.type == kind), NONE)


# ---------------------------------------------------------------- workloads


def selector_string(selector: pb.LabelSelector) -> str:
    """A LabelSelector as kubectl prints it (`app=web,tier in (a,b)`), `<none>` when empty."""
    from kybernetes.core.api.selectors import SelectorError, to_string

    try:
        return to_string(selector) or NONE
    except SelectorError:
        return "<error>"


def _template_containers(obj: Any, _now: float) -> str:
    return ",".join(c.name for c in obj.spec.template.spec.containers) or NONE


def _template_images(obj: Any, _now: float) -> str:
    return ",".join(c.image for c in obj.spec.template.spec.containers) or NONE


def desired_replicas(obj: Any) -> int:
    """spec.replicas, with Kubernetes' default of 1 when unset."""
    return obj.spec.replicas if obj.spec.HasField("replicas") else 1


# ---------------------------------------------------------------- Service and Endpoints


def service_ports(service: pb.Service) -> str:
    """PORT(S): `80/TCP`, `8080:30080/TCP`, comma-separated; `<none>` without ports."""
    parts = []
    for port in service.spec.ports:
        protocol = port.protocol or "TCP"
        if port.node_port:
            parts.append(f"{port.port}:{port.node_port}/{protocol}")
        else:
            parts.append(f"{port.port}/{protocol}")
    return ",".join(parts) or NONE


def endpoints_string(endpoints: pb.Endpoints, *, limit: int = 3) -> str:
    """ENDPOINTS: `ip:port,…` with kubectl's " + N more..." after `limit`; `<none>` when empty."""
    shown: list[str] = []
    total = 0
    for subset in endpoints.subsets:
        ports: list[pb.EndpointPort | None] = [*subset.ports] or [None]
        for port in ports:
            for address in subset.addresses:
                total += 1
                if len(shown) < limit:
                    shown.append(f"{address.ip}:{port.port}" if port is not None else address.ip)
    if not shown:
        return NONE
    more = f" + {total - len(shown)} more..." if total > len(shown) else ""
    return ",".join(shown) + more


# ---------------------------------------------------------------- Event


def event_time(event: pb.Event) -> Timestamp:
    """When an event last happened (lastTimestamp, else firstTimestamp, else creation)."""
    for stamp in (event.last_timestamp, event.first_timestamp, event.metadata.creation_timestamp):
        if has_time(stamp):
            return stamp
    return event.last_timestamp


def _event_source(event: pb.Event) -> str:
    parts = [p for p in (event.source.component, event.source.host) if p]
    return ", ".join(parts) or NONE


# ---------------------------------------------------------------- the tables


TABLES: dict[str, list[Column]] = {
    "Pod": [
        NAME,
        Column("READY", lambda p, _n: pod_ready(p)),
        Column("STATUS", lambda p, _n: pod_status(p)),
        Column("RESTARTS", pod_restarts),
        AGE,
        Column("IP", lambda p, _n: _or_none(p.status.pod_ip), wide=True),
        Column("NODE", lambda p, _n: _or_none(p.spec.node_name), wide=True),
    ],
    "Node": [
        NAME,
        Column("STATUS", lambda n, _t: node_status(n)),
        Column("ROLES", lambda n, _t: node_roles(n)),
        AGE,
        Column("VERSION", lambda n, _t: n.status.node_info.kubelet_version or NONE),
        Column("INTERNAL-IP", lambda n, _t: node_address(n, "InternalIP"), wide=True),
        Column("EXTERNAL-IP", lambda n, _t: node_address(n, "ExternalIP"), wide=True),
        Column("OS-IMAGE", lambda n, _t: n.status.node_info.os_image or UNKNOWN, wide=True),
        Column("KERNEL-VERSION", lambda n, _t: n.status.node_info.kernel_version or UNKNOWN, wide=True),
        Column("CONTAINER-RUNTIME", lambda n, _t: n.status.node_info.container_runtime_version or UNKNOWN,
               wide=True),
    ],
    "Deployment": [
        NAME,
        Column("READY", lambda d, _n: f"{d.status.ready_replicas}/{desired_replicas(d)}"),
        Column("UP-TO-DATE", lambda d, _n: str(d.status.updated_replicas)),
        Column("AVAILABLE", lambda d, _n: str(d.status.available_replicas)),
        AGE,
        Column("CONTAINERS", _template_containers, wide=True),
        Column("IMAGES", _template_images, wide=True),
        Column("SELECTOR", lambda d, _n: selector_string(d.spec.selector), wide=True),
    ],
    "ReplicaSet": [
        NAME,
        Column("DESIRED", lambda r, _n: str(desired_replicas(r))),
        Column("CURRENT", lambda r, _n: str(r.status.replicas)),
        Column("READY", lambda r, _n: str(r.status.ready_replicas)),
        AGE,
        Column("CONTAINERS", _template_containers, wide=True),
        Column("IMAGES", _template_images, wide=True),
        Column("SELECTOR", lambda r, _n: selector_string(r.spec.selector), wide=True),
    ],
    "Event": [
        Column("LAST SEEN", lambda e, now: age(event_time(e), now)),
        Column("TYPE", lambda e, _n: e.type or "Normal"),
        Column("REASON", lambda e, _n: e.reason),
        Column("OBJECT", lambda e, _n: f"{e.involved_object.kind.lower()}/{e.involved_object.name}"),
        Column("SUBOBJECT", lambda e, _n: e.involved_object.field_path, wide=True),
        Column("SOURCE", lambda e, _n: _event_source(e), wide=True),
        Column("MESSAGE", lambda e, _n: " ".join(e.message.split())),
        Column("FIRST SEEN", lambda e, now: age(e.first_timestamp, now), wide=True),
        Column("COUNT", lambda e, _n: str(e.count or 1), wide=True),
        Column("NAME", _name, wide=True),
    ],
    "Service": [
        NAME,
        Column("TYPE", lambda s, _n: s.spec.type or "ClusterIP"),
        Column("CLUSTER-IP", lambda s, _n: _or_none(s.spec.cluster_ip)),
        Column("EXTERNAL-IP", lambda s, _n: NONE),
        Column("PORT(S)", lambda s, _n: service_ports(s)),
        AGE,
        Column("SELECTOR", lambda s, _n: ",".join(f"{k}={v}" for k, v in sorted(s.spec.selector.items()))
               or NONE, wide=True),
    ],
    "Endpoints": [
        NAME,
        Column("ENDPOINTS", lambda e, _n: endpoints_string(e)),
        AGE,
    ],
    "Lease": [
        NAME,
        Column("HOLDER", lambda lease, _n: lease.spec.holder_identity or NONE),
        AGE,
    ],
}
# RoleBindings and ClusterRoleBindings print alike (kubectl's columns, wide: the subjects).
TABLES["RoleBinding"] = TABLES["ClusterRoleBinding"] = [
    NAME,
    Column("ROLE", lambda b, _n: f"{b.role_ref.kind}/{b.role_ref.name}"),
    AGE,
    Column("USERS", lambda b, _n: _subjects(b, "User"), wide=True),
    Column("GROUPS", lambda b, _n: _subjects(b, "Group"), wide=True),
]


def _subjects(binding: Any, kind: str) -> str:
    return ", ".join(s.name for s in binding.subjects if s.kind == kind)

DEFAULT_TABLE: list[Column] = [NAME, AGE]


def sort_for_table(kind_name: str, objs: Iterable[Any]) -> list[Any]:
    """The row order kubectl uses: by namespace and name; events by when they last happened."""
    if kind_name == "Event":
        return sorted(objs, key=lambda e: (event_time(e).seconds, e.metadata.name))
    return sorted(objs, key=lambda o: (o.metadata.namespace, o.metadata.name))


@dataclass(frozen=True, slots=True)
class TableOptions:
    """Flags of `get` that shape a table."""

    wide: bool = False
    all_namespaces: bool = False
    show_kind: bool = False
    show_labels: bool = False
    label_columns: tuple[str, ...] = ()
    no_headers: bool = False
    watch_events: bool = False


class Table:
    """The header and rows of one kind's table under the given options."""

    def __init__(self, kind: kinds.Kind, options: TableOptions) -> None:
        self.kind = kind
        self.options = options
        self.columns = [c for c in TABLES.get(kind.kind, DEFAULT_TABLE) if options.wide or not c.wide]

    def header(self) -> list[str]:
        out = [c.header for c in self.columns]
        out.extend(key.rsplit("/", 1)[-1].upper() for key in self.options.label_columns)
        if self.options.show_labels:
            out.append("LABELS")
        if self.options.all_namespaces and self.kind.namespaced:
            out.insert(0, "NAMESPACE")
        if self.options.watch_events:
            out.insert(0, "EVENT")
        return out

    def row(self, obj: Any, now: float, *, event: str = "") -> list[str]:
        cells = []
        for column in self.columns:
            cell = column.cell(obj, now)
            if column is NAME and self.options.show_kind:
                cell = f"{type_name(self.kind)}/{cell}"
            cells.append(cell)
        cells.extend(obj.metadata.labels.get(key, "") for key in self.options.label_columns)
        if self.options.show_labels:
            cells.append(",".join(f"{k}={v}" for k, v in sorted(obj.metadata.labels.items())) or NONE)
        if self.options.all_namespaces and self.kind.namespaced:
            cells.insert(0, obj.metadata.namespace)
        if self.options.watch_events:
            cells.insert(0, event)
        return cells

    def render(self, objs: Sequence[Any], *, now: float | None = None) -> list[str]:
        """The table's lines: header (unless --no-headers) and one row per object."""
        now = time.time() if now is None else now
        rows = [] if self.options.no_headers else [self.header()]
        rows.extend(self.row(o, now) for o in objs)
        return tabulate(rows)


# ---------------------------------------------------------------- -o json|yaml|name


def to_json(doc: Any) -> str:
    """kubectl's JSON: indented by 4."""
    return json.dumps(doc, indent=4, ensure_ascii=False)


def to_yaml(doc: Any) -> str:
    """Block-style YAML in the object's field order."""
    import yaml

    dumper = yaml.CSafeDumper if hasattr(yaml, "CSafeDumper") else yaml.SafeDumper
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16)


def document(objs: Sequence[Any], *, single: bool, resource_version: str = "") -> dict[str, Any]:
    """One object's manifest dict, or a `List` of several."""
    from kybernetes.core.api import manifest

    if single and len(objs) == 1:
        return manifest.to_dict(objs[0])
    return manifest.list_to_dict(objs, resource_version)


def format_document(doc: Any, output: str) -> str:
    """A dict as -o json or -o yaml text (without a trailing newline)."""
    return to_json(doc) if output == "json" else to_yaml(doc).rstrip("\n")
