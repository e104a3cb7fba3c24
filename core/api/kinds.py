"""The registry of object kinds: one row per kind, shared by the server, the client and kybctl.

Everything that needs to map between a Kubernetes name ("deployments", "deploy",
"Deployment", "apps/v1") and our protobuf types looks it up here, so adding a
kind is one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

from google.protobuf.message import Message

from kybernetes.proto import objects_pb2 as pb


class ApiObject(Protocol):
    """Any top-level object of the API (pb.Pod, pb.Node, ...): a protobuf message with `metadata`."""

    DESCRIPTOR: Any
    api_version: str
    kind: str

    @property
    def metadata(self) -> pb.ObjectMeta: ...

    def ClearField(self, field_name: str, /) -> None: ...  # noqa: N802

    def CopyFrom(self, other_msg: Any, /) -> None: ...  # noqa: N802 - protobuf's name

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802

    def ParseFromString(self, serialized: bytes, /) -> int: ...  # noqa: N802

    def HasField(self, field_name: str, /) -> bool: ...  # noqa: N802

    def ByteSize(self) -> int: ...  # noqa: N802 - the serialized size


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of object and all of its names."""

    kind: str  # "Deployment"
    resource: str  # "deployments": the plural, used in etcd keys and API requests
    api_version: str  # "apps/v1"
    namespaced: bool
    field: str  # the field of the `Object` oneof: "deployment"
    message: type[ApiObject]
    short_names: tuple[str, ...] = ()
    singular: str = ""

    def names(self) -> set[str]:
        """Every name kybctl accepts for this kind."""
        return {self.resource, self.singular or self.kind.lower(), self.kind.lower(), *self.short_names}


KINDS: tuple[Kind, ...] = (
    Kind("Pod", "pods", "v1", True, "pod", pb.Pod, ("po",), "pod"),
    Kind("Node", "nodes", "v1", False, "node", pb.Node, ("no",), "node"),
    Kind("ReplicaSet", "replicasets", "apps/v1", True, "replica_set", pb.ReplicaSet, ("rs",), "replicaset"),
    Kind("Deployment", "deployments", "apps/v1", True, "deployment", pb.Deployment, ("deploy",), "deployment"),
    Kind("Event", "events", "v1", True, "event", pb.Event, ("ev",), "event"),
    Kind("Service", "services", "v1", True, "service", pb.Service, ("svc",), "service"),
    Kind("Endpoints", "endpoints", "v1", True, "endpoints", pb.Endpoints, ("ep",), "endpoints"),
    Kind("Role", "roles", "rbac.authorization.k8s.io/v1", True, "role", pb.Role, (), "role"),
    Kind("ClusterRole", "clusterroles", "rbac.authorization.k8s.io/v1", False, "cluster_role", pb.ClusterRole, (),
         "clusterrole"),
    Kind("RoleBinding", "rolebindings", "rbac.authorization.k8s.io/v1", True, "role_binding", pb.RoleBinding, (),
         "rolebinding"),
    Kind("ClusterRoleBinding", "clusterrolebindings", "rbac.authorization.k8s.io/v1", False,
         "cluster_role_binding", pb.ClusterRoleBinding, (), "clusterrolebinding"),
    Kind("Lease", "leases", "coordination.k8s.io/v1", True, "lease", pb.Lease, (), "lease"),
)

BY_RESOURCE: dict[str, Kind] = {k.resource: k for k in KINDS}
BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}
BY_FIELD: dict[str, Kind] = {k.field: k for k in KINDS}
_BY_NAME: dict[str, Kind] = {name: k for k in KINDS for name in k.names()}


class UnknownKind(LookupError):
    """A name that matches no kind."""


def lookup(name: str) -> Kind:
    """Find a kind by any of its names, case-insensitively (kubectl's habit)."""
    kind = _BY_NAME.get(name.lower())
    if kind is None:
        raise UnknownKind(f'the server doesn\'t have a resource type "{name}"')
    return kind


def wrap(obj: ApiObject | Message) -> pb.Object:
    """Put a concrete object (pb.Pod, …) into the generic `Object` envelope."""
    kind = kind_of(obj)
    envelope = pb.Object()
    getattr(envelope, kind.field).CopyFrom(obj)
    return envelope


def unwrap(envelope: pb.Object) -> Any:
    """The concrete object inside an `Object` envelope (pb.Pod, pb.Node, ...: its type depends on the data)."""
    field = envelope.WhichOneof("kind")
    if field is None:
        raise ValueError("empty object")
    return getattr(envelope, field)


def kind_of(obj: ApiObject | Message) -> Kind:
    """The kind of a concrete object, from its message type."""
    for kind in KINDS:
        if isinstance(obj, kind.message):
            return kind
    raise TypeError(f"not an object kind: {type(obj).__name__}")


def as_api_object(obj: ApiObject | Message) -> ApiObject:
    """`obj` as an API object, checked: a message of no kind is a TypeError (a bug, never the caller's input)."""
    kind_of(obj)
    return cast(ApiObject, obj)


def kind_of_envelope(envelope: pb.Object) -> Kind:
    """The kind of the object inside an envelope."""
    field = envelope.WhichOneof("kind")
    if field is None:
        raise ValueError("empty object")
    return BY_FIELD[field]
