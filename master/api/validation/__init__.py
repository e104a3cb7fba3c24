"""Admission validation: Kubernetes' rules for every kind, as pure functions.

`validate(obj, old=...)` walks one object and collects every violation as a
`FieldError` (a Kubernetes-style field path plus the rule text) before raising a
single `ValidationError`, so a user sees all problems at once, worded the way
kubectl words them:

    Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0

It accepts objects before or after `master.api.defaults.apply_defaults`: an empty
enum field (protocol, restartPolicy, ...) is the default and therefore valid.
Only the update rules (immutable fields, what a pod update may change) look at
`old`. Rules about addresses a node acts on (pod IPs, probe hosts, Node pod
ranges) judge them against the cluster's pod range, `network` (see `network`).
Every kind is limited to `MAX_OBJECT_BYTES` serialized (1 MiB, well under etcd's
1.5 MiB request limit), so an object etcd would refuse is refused here, naming it
and its largest field, before anything is written.

Validation runs on every write, so all patterns are compiled once at import (in
`kybernetes.core.api.formats`) and the walk allocates little beyond the error list.

The rules live in one module per behaviour; this one is the entry point that
checks what every kind shares and dispatches by kind:
- `errors`: FieldError, ValidationError, the `Errors` collector and how values are shown;
- `meta`: type and object meta, labels, annotations, label selectors (the API form);
- `ports`: port numbers, named ports and protocols, shared by pods and services;
- `pods`: the pod spec (also the template of the workloads) and pod status;
- `apps`: ReplicaSets and Deployments;
- `services`: Services and Endpoints;
- `nodes` and `events`: Nodes and Events;
- `network`: the cluster's pod range and the address rules that depend on it.
Name, key and value syntax (DNS labels, qualified names, ...) is Kubernetes'
`util/validation`, in `kybernetes.core.api.formats`, which selectors share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from google.protobuf.message import Message

from kybernetes.core.api import formats
from kybernetes.core.api.kinds import ApiObject, kind_of
from kybernetes.master.api.validation.apps import validate_deployment, validate_replica_set
from kybernetes.master.api.validation.errors import Errors, FieldError, ValidationError
from kybernetes.master.api.validation.events import validate_event, validate_lease
from kybernetes.master.api.validation.meta import validate_object_meta, validate_object_meta_update, validate_type_meta
from kybernetes.master.api.validation.network import DEFAULT_NETWORK, ClusterNetwork
from kybernetes.master.api.validation.nodes import validate_node
from kybernetes.master.api.validation.pods import validate_pod
from kybernetes.master.api.validation.rbac import (
    path_segment_name,
    validate_cluster_role_binding,
    validate_role,
    validate_role_binding,
)
from kybernetes.master.api.validation.services import validate_endpoints, validate_service
from kybernetes.proto import objects_pb2 as pb

__all__ = ["DEFAULT_NETWORK", "MAX_OBJECT_BYTES", "ClusterNetwork", "FieldError", "ValidationError", "validate"]

# Any object, serialized. etcd refuses requests over 1.5 MiB (--max-request-bytes); the margin leaves room
# for what the server adds (uid, timestamps) and for the transaction around it.
MAX_OBJECT_BYTES = 1024 * 1024

# The rule for metadata.name: a DNS-1123 subdomain unless the kind says otherwise.
_NAME_RULES: dict[type, Callable[[str], list[str]]] = {
    pb.Service: formats.dns1035_label,
    **dict.fromkeys((pb.Role, pb.ClusterRole, pb.RoleBinding, pb.ClusterRoleBinding), path_segment_name),
}

class _Validator(Protocol):
    def __call__(self, errors: Errors, obj: Any, old: Any, /, *, network: ClusterNetwork) -> None: ...


_VALIDATORS: dict[type, _Validator] = {
    pb.Pod: validate_pod,
    pb.ReplicaSet: validate_replica_set,
    pb.Deployment: validate_deployment,
    pb.Service: validate_service,
    pb.Endpoints: validate_endpoints,
    pb.Node: validate_node,
    pb.Event: validate_event,
    pb.Role: validate_role,
    pb.ClusterRole: validate_role,
    pb.RoleBinding: validate_role_binding,
    pb.ClusterRoleBinding: validate_cluster_role_binding,
    pb.Lease: validate_lease,
}


def validate(obj: ApiObject, *, old: ApiObject | None = None, network: ClusterNetwork = DEFAULT_NETWORK) -> None:
    """Refuse an object that breaks Kubernetes' rules; `old` is the stored version on update, `network` the
    cluster's pod range."""
    kind = kind_of(obj)
    if old is not None and type(old) is not type(obj):
        raise TypeError(f"old is a {type(old).__name__}, not a {type(obj).__name__}")
    errors = Errors()
    validate_type_meta(errors, obj, kind=kind.kind, api_version=kind.api_version)
    validate_object_meta(
        errors,
        obj.metadata,
        namespaced=kind.namespaced,
        name_rule=_NAME_RULES.get(type(obj), formats.dns1123_subdomain),
    )
    if old is not None:
        validate_object_meta_update(errors, obj.metadata, old.metadata)
    _VALIDATORS[type(obj)](errors, obj, old, network=network)
    _size(errors, obj)
    if errors:
        group = kind.api_version.rpartition("/")[0]
        raise ValidationError(kind=kind.kind, group=group, name=obj.metadata.name, errors=errors)


def _size(errors: Errors, obj: ApiObject) -> None:
    """The whole object against MAX_OBJECT_BYTES; the error names its largest top-level field."""
    size = obj.ByteSize()
    if size <= MAX_OBJECT_BYTES:
        return
    # Only on refusal: the object with one field kept at a time, serialized as it would be stored.
    message = cast(Message, obj)
    present = [field.name for field, _ in message.ListFields()]
    largest, largest_size = "metadata", -1
    for field, _ in message.ListFields():
        alone = type(message)()
        alone.MergeFrom(message)
        for other in present:
            if other != field.name:
                alone.ClearField(other)
        if alone.ByteSize() > largest_size:
            largest, largest_size = field.json_name, alone.ByteSize()
    errors.append(FieldError(largest, f"Too long: the object is {size} bytes serialized, more than the 1 MiB "
                                      f"limit ({MAX_OBJECT_BYTES} bytes); this field holds {largest_size} of them"))
