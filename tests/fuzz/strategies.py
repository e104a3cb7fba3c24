"""Hypothesis strategies for API objects of every kind: valid ones, mutations of them, and wholly random ones.

Three sources of objects, from the most to the least plausible:

- `valid_object(kind)`: an object the API should accept (every kind of `kybernetes.core.api.kinds.KINDS`),
  built from a vocabulary of good values so that most of them are written and can be read back;
- `mutate(draw, obj)`: one change at a random field path of an object, walking its protobuf descriptor: a
  scalar set to a value from that field's vocabulary (enum-like strings get unknown values too), random
  unicode, a huge string or an extreme integer; a map or list entry added, changed or dropped; a message
  replaced by a random one. Mutations of a valid object reach the validation rules one field at a time;
- `random_message(cls)`: every field of a message chosen at random, recursively (objects.proto has no
  recursive message, so the walk ends), with now and then a huge value: a string of up to 1.2 MiB or a map or
  list of a few thousand entries.

Strings come from the field's vocabulary (`VOCABULARY`, keyed by the field's name: valid and near-valid values
and the enum values Kubernetes knows), from random unicode (any code point a protobuf string may hold: no
surrogates), or huge. Invalid UTF-8 cannot be put in a Python protobuf string; tests/fuzz/test_api_fuzz.py
writes it into the wire bytes instead (`with_bad_utf8`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from kybernetes.core.api.kinds import ApiObject, Kind
from kybernetes.proto import objects_pb2 as pb

M = TypeVar("M", bound=Message)
Draw = Callable[[st.SearchStrategy[Any]], Any]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# The cluster's pod range is the master's default --cluster-cidr (10.244.0.0/16).
NAMES = ("a", "web", "db-0", "fz.example", "x" * 63, "kube-system")
VOCABULARY: dict[str, tuple[str, ...]] = {
    "name": NAMES,
    "namespace": ("default", "other", "kube-system"),
    "generate_name": ("web-", "gen."),
    "image": ("kyb/busybox:1", "kyb/hello:v1", "registry.local:5000/team/app@sha256:" + "a" * 64, "Upper:Case"),
    "protocol": ("TCP", "UDP", "SCTP", "tcp"),
    "restart_policy": ("Always", "OnFailure", "Never", "Sometimes"),
    "image_pull_policy": ("Always", "IfNotPresent", "Never", "Maybe"),
    "operator": ("In", "NotIn", "Exists", "DoesNotExist", "Equal", "Gt"),
    "effect": ("NoSchedule", "PreferNoSchedule", "NoExecute", "NoScheduleAtAll"),
    "type": ("ClusterIP", "NodePort", "LoadBalancer", "Normal", "Warning", "RollingUpdate", "Recreate",
             "InternalIP", "ExternalIP", "Hostname", "RuntimeDefault", "Unconfined", "Localhost", "Ready"),
    "status": ("True", "False", "Unknown", "Maybe"),
    "phase": ("Pending", "Running", "Succeeded", "Failed", "Unknown", "Exploded"),
    "scheme": ("HTTP", "HTTPS", "GOPHER"),
    "session_affinity": ("None", "ClientIP", "Sticky"),
    "ip": ("10.244.1.5", "10.244.255.254", "127.0.0.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "fd00::5",
           "10.244.1.5; rm -rf /", "999.1.1.1"),
    "pod_ip": ("10.244.1.5", "10.9.9.9", "fd00::5", "not-an-ip"),
    "host_ip": ("192.168.1.10", "::1", "nope"),
    "cluster_ip": ("10.96.0.10", "None", "10.97.0.1", "x"),
    "address": ("192.168.1.10", "10.0.0.1", "fd00::1", "node-1", "bad address"),
    "host": ("10.244.1.5", "169.254.169.254", "localhost", "example.com"),
    "pod_cidr": ("10.244.7.0/24", "10.244.0.0/16", "0.0.0.0/1", "10.0.0.0/8", "10.244.7.1/24", "fd00::/64",
                 "garbage"),
    "str_val": ("25%", "150%", "0%", "-1%", "http", "a" * 20, "%", "1.5%"),
    "path": ("/", "/healthz", "no-slash"),
    "node_name": ("n1", "node-1", "Bad_Node"),
    "hostname": ("web-0", "Bad_Host"),
    "working_dir": ("/", "/bin", "relative"),
    "api_version": ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "coordination.k8s.io/v1", "v2"),
    "kind": ("Pod", "Deployment", "ReplicaSet", "Role", "ClusterRole", "User", "Group", "ServiceAccount"),
    "api_group": ("", "rbac.authorization.k8s.io", "apps"),
    "verbs": ("get", "list", "watch", "create", "*", "frobnicate"),
    "resources": ("pods", "pods/log", "*", "a/b/c", "with space", ""),
    "api_groups": ("", "apps", "*"),
    "resource_version": ("1", "0", "-1", "abc", "99999999999999999999999"),
    "uid": ("00000000-0000-0000-0000-000000000000", "not-a-uid"),
    "finalizers": ("kybernetes.io/test", "orphan", "foregroundDeletion", "Bad Finalizer"),
    "holder_identity": ("master-1", ""),
    "reason": ("Started", "Killing"),
    "message": ("hello",),
}
QUANTITIES = ("100m", "1", "0.5", "64Mi", "1Gi", "2e3", "lots", "-1", "1.5.5", "")
LABEL_KEYS = ("app", "tier", "example.com/team", "a" * 64, "bad key!", "-x", "", "kubernetes.io/arch")
LABEL_VALUES = ("web", "", "v1.2", "a" * 64, "bad value!", "-x")


def unicode(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any text a protobuf string can carry (hypothesis leaves out surrogates, which UTF-8 cannot encode)."""
    return st.text(max_size=max_size)


def huge_string() -> st.SearchStrategy[str]:
    """A long string: up to 1.2 MiB, over the API's 1 MiB object limit."""
    return st.builds(lambda n, c: c * n, st.integers(1, 1_200_000), st.sampled_from("ax.-/é"))


def string_for(name: str) -> st.SearchStrategy[str]:
    """A value for a string field called `name`: its vocabulary (names for any *name field) or random unicode."""
    vocabulary = VOCABULARY.get(name, ()) or (VOCABULARY["name"] if name.endswith("name") else ())
    if vocabulary:
        return st.one_of(st.sampled_from(vocabulary), unicode())
    return unicode()


def text_value(name: str, *, huge: bool) -> st.SearchStrategy[str]:
    strategies = [string_for(name)]
    if huge:
        strategies.append(huge_string())
    return st.one_of(*strategies)


def integer(field: FieldDescriptor) -> st.SearchStrategy[int]:
    lo, hi = INT64 if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64) else INT32
    return st.one_of(st.integers(-3, 100), st.sampled_from((lo, hi, 65535, 65536, 30000, 32767, 3600)),
                     st.integers(lo, hi))


def scalar(field: FieldDescriptor, *, huge: bool = False) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return text_value(field.name, huge=huge)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    return integer(field)


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def map_entries(field: FieldDescriptor, *, huge: bool = False) -> st.SearchStrategy[dict[str, str]]:
    """Entries of a map<string, string>: label-like keys and values, quantities for resources, random text."""
    if field.name in ("requests", "limits", "capacity", "allocatable"):
        keys: st.SearchStrategy[str] = st.one_of(st.sampled_from(("cpu", "memory", "pods", "gpu")), unicode(12))
        values: st.SearchStrategy[str] = st.one_of(st.sampled_from(QUANTITIES), unicode(12))
    else:
        keys = st.one_of(st.sampled_from(LABEL_KEYS), unicode(20))
        values = st.one_of(st.sampled_from(LABEL_VALUES), unicode(20))
    small = st.dictionaries(keys, values, max_size=4)
    if not huge:
        return small
    many = st.builds(lambda n, v: {f"k{i}.example.com/key-{i}": v for i in range(n)}, st.integers(100, 5000),
                     st.sampled_from(("v", "x" * 63)))
    return st.one_of(small, many)


def timestamp(draw: Draw, msg: Message) -> None:
    seconds = draw(st.one_of(st.integers(0, 4_000_000_000), st.sampled_from(INT64), st.integers(*INT64)))
    nanos = draw(st.one_of(st.integers(0, 999_999_999), st.sampled_from((-1, 2**31 - 1))))
    msg.seconds, msg.nanos = seconds, nanos  # type: ignore[attr-defined]


def fill(draw: Draw, msg: Message, *, huge: bool, chance: int = 3) -> None:
    """Set a random subset of `msg`'s fields (each with probability 1/chance) to random values."""
    if msg.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        timestamp(draw, msg)
        return
    for field in msg.DESCRIPTOR.fields:
        if draw(st.integers(0, chance - 1)):
            continue
        set_random(draw, msg, field, huge=huge)


def set_random(draw: Draw, msg: Message, field: FieldDescriptor, *, huge: bool) -> None:
    """Give one field of `msg` a random value (for a map or list: random entries)."""
    target = getattr(msg, field.name)
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        if value_field.type == FieldDescriptor.TYPE_STRING:
            target.update(draw(map_entries(field, huge=huge)))
        return
    if _is_repeated(field):
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            count = draw(st.one_of(st.integers(0, 3), st.integers(100, 2000) if huge else st.just(1)))
            for i in range(count):
                element = target.add()
                if i < 4:  # only a short list holds huge values: a long one of them would take gigabytes
                    fill(draw, element, huge=huge and count <= 4)
                else:  # a long list of small elements: copies, so that drawing stays cheap
                    element.CopyFrom(target[i % 4])
        else:
            target.extend(draw(st.lists(scalar(field, huge=huge), max_size=4)))
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        target.SetInParent()
        fill(draw, target, huge=huge)
        return
    setattr(msg, field.name, draw(scalar(field, huge=huge)))


@st.composite
def random_message(draw: Draw, cls: type[M], huge: bool = False) -> M:
    """A message of `cls` with random fields at every depth."""
    msg = cls()
    fill(draw, msg, huge=huge, chance=2)
    return msg


def mutate(draw: Draw, msg: Message, *, huge: bool = False, depth: int = 0) -> str:
    """One random change at a random field path of `msg`, in place; returns the path (for the report)."""
    if msg.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        timestamp(draw, msg)
        return ""
    if not msg.DESCRIPTOR.fields:  # ServiceStatus: nothing to change
        return ""
    field = draw(st.sampled_from(tuple(msg.DESCRIPTOR.fields)))
    target = getattr(msg, field.name)
    if _is_map(field):
        action = draw(st.sampled_from(("add", "drop", "clear")))
        if action == "add" or not target:
            target.update(draw(map_entries(field, huge=huge)))
        elif action == "drop":
            del target[draw(st.sampled_from(sorted(target)))]
        else:
            target.clear()
        return field.name
    if _is_repeated(field):
        action = draw(st.sampled_from(("add", "change", "drop")))
        if action == "add" or not target:
            set_random(draw, msg, field, huge=huge)
        elif action == "drop":
            del target[draw(st.integers(0, len(target) - 1))]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            index = draw(st.integers(0, len(target) - 1))
            return f"{field.name}[{index}].{mutate(draw, target[index], huge=huge, depth=depth + 1)}"
        else:
            target[draw(st.integers(0, len(target) - 1))] = draw(scalar(field, huge=huge))
        return field.name
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if depth < 6 and draw(st.integers(0, 3)):
            target.SetInParent()
            return f"{field.name}.{mutate(draw, target, huge=huge, depth=depth + 1)}"
        msg.ClearField(field.name)
        if draw(st.booleans()):
            target = getattr(msg, field.name)
            target.SetInParent()
            fill(draw, target, huge=huge)
        return field.name
    if draw(st.integers(0, 4)) == 0:
        msg.ClearField(field.name)
    else:
        setattr(msg, field.name, draw(scalar(field, huge=huge)))
    return field.name


# ---------------------------------------------------------------- valid objects


def _labels() -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(("app", "tier", "example.com/team")),
                           st.sampled_from(("web", "db", "v1.2", "")), max_size=3)


def _container(draw: Draw, index: int) -> pb.Container:
    c = pb.Container(name=f"c{index}", image=draw(st.sampled_from(VOCABULARY["image"][:3])))
    c.command.extend(draw(st.lists(st.sampled_from(("sleep", "1000", "sh", "-c")), max_size=3)))
    c.env.extend(pb.EnvVar(name=f"E{i}", value=v) for i, v in enumerate(draw(st.lists(unicode(8), max_size=2))))
    if draw(st.booleans()):
        c.ports.add(container_port=draw(st.integers(1, 65535)), protocol=draw(st.sampled_from(("", "TCP", "UDP"))))
    if draw(st.booleans()):
        c.resources.requests["cpu"] = draw(st.sampled_from(("100m", "1", "0.5")))
        c.resources.limits["memory"] = draw(st.sampled_from(("64Mi", "1Gi")))
    if draw(st.booleans()):
        probe = c.readiness_probe
        if draw(st.booleans()):
            probe.http_get.path = "/healthz"
            probe.http_get.port.int_val = draw(st.integers(1, 65535))
        else:
            probe.exec.command.extend(["true"])
        probe.period_seconds = draw(st.integers(1, 30))
    return c


def _pod_spec(draw: Draw, spec: pb.PodSpec) -> None:
    for i in range(draw(st.integers(1, 3))):
        spec.containers.append(_container(draw, i))
    spec.restart_policy = draw(st.sampled_from(("", "Always", "OnFailure", "Never")))
    spec.termination_grace_period_seconds = draw(st.sampled_from((0, 1, 30)))
    if draw(st.booleans()):
        spec.tolerations.add(key="example.com/dedicated", operator="Equal", value="x", effect="NoSchedule")
    spec.node_selector.update(draw(st.dictionaries(st.sampled_from(("disk", "zone")), st.just("ssd"), max_size=1)))


def _workload(draw: Draw, obj: pb.ReplicaSet | pb.Deployment) -> None:
    labels = {"app": draw(st.sampled_from(("web", "db"))), **draw(_labels())}
    labels["app"] = labels.get("app") or "web"
    obj.spec.replicas = draw(st.integers(0, 5))
    obj.spec.selector.match_labels["app"] = labels["app"]
    obj.spec.template.metadata.labels.update(labels)
    _pod_spec(draw, obj.spec.template.spec)
    obj.spec.template.spec.restart_policy = "Always"
    obj.spec.min_ready_seconds = draw(st.integers(0, 10))


@st.composite
def valid_object(draw: Draw, kind: Kind) -> ApiObject:
    """An object of `kind` that validation accepts (in namespace "default" when namespaced; the test moves it)."""
    obj: Any = kind.message()
    obj.metadata.name = draw(st.sampled_from(("a", "web", "db-0", "fz1")))
    if kind.namespaced:
        obj.metadata.namespace = "default"
    obj.metadata.labels.update(draw(_labels()))
    if draw(st.integers(0, 3)) == 0:
        obj.metadata.annotations["example.com/note"] = draw(unicode(30))
    if isinstance(obj, pb.Pod):
        _pod_spec(draw, obj.spec)
        obj.spec.node_name = draw(st.sampled_from(("", "", "n1")))
    elif isinstance(obj, (pb.ReplicaSet, pb.Deployment)):
        _workload(draw, obj)
        if isinstance(obj, pb.Deployment) and draw(st.booleans()):
            obj.spec.strategy.type = "RollingUpdate"
            obj.spec.strategy.rolling_update.max_surge.str_val = draw(st.sampled_from(("25%", "150%")))
            obj.spec.strategy.rolling_update.max_unavailable.int_val = draw(st.integers(0, 2))
    elif isinstance(obj, pb.Node):
        if draw(st.booleans()):
            obj.spec.taints.add(key="example.com/dedicated", value="x", effect="NoSchedule")
        obj.status.capacity.update({"cpu": "2", "memory": "4Gi", "pods": "110"})
        obj.status.addresses.add(type="InternalIP", address=f"192.168.1.{draw(st.integers(1, 254))}")
    elif isinstance(obj, pb.Service):
        obj.spec.selector["app"] = "web"
        obj.spec.type = draw(st.sampled_from(("", "ClusterIP", "NodePort")))
        for i in range(draw(st.integers(1, 3))):
            port = obj.spec.ports.add(name=f"p{i}", port=80 + i, protocol=draw(st.sampled_from(("TCP", "UDP"))))
            port.target_port.int_val = 8080 + i
    elif isinstance(obj, pb.Endpoints):
        subset = obj.subsets.add()
        for i in range(draw(st.integers(0, 3))):
            subset.addresses.add(ip=f"10.244.{draw(st.integers(0, 255))}.{i + 2}")
        subset.ports.add(name="http", port=draw(st.integers(1, 65535)), protocol="TCP")
    elif isinstance(obj, pb.Event):
        obj.involved_object.kind, obj.involved_object.name = "Pod", "web"
        obj.reason, obj.message = "Started", draw(unicode(60))
        obj.type = draw(st.sampled_from(("", "Normal", "Warning")))
        obj.count = draw(st.integers(0, 10))
    elif isinstance(obj, (pb.Role, pb.ClusterRole)):
        for _ in range(draw(st.integers(0, 3))):
            obj.rules.add(verbs=draw(st.lists(st.sampled_from(("get", "list", "watch", "*")), min_size=1,
                                              max_size=3)),
                          api_groups=[""], resources=[draw(st.sampled_from(("pods", "pods/log", "*")))])
    elif isinstance(obj, (pb.RoleBinding, pb.ClusterRoleBinding)):
        obj.role_ref.api_group = "rbac.authorization.k8s.io"
        obj.role_ref.kind = "ClusterRole" if isinstance(obj, pb.ClusterRoleBinding) else \
            draw(st.sampled_from(("Role", "ClusterRole")))
        obj.role_ref.name = "view"
        obj.subjects.add(kind=draw(st.sampled_from(("User", "Group"))), name=draw(st.sampled_from(("alice", "devs"))))
    elif isinstance(obj, pb.Lease):
        obj.spec.holder_identity = "master-1"
        obj.spec.lease_duration_seconds = draw(st.integers(0, 60))
    return obj
