"""Nodes: taints, the pod CIDR, addresses and the resource quantities a node reports.

Each taint has a qualified-name key, a label-value value and one of the taint
effects (which pod tolerations also name, so `pods` imports `TAINT_EFFECTS`
from here), and a key may carry each effect once. Status capacity and
allocatable must be quantities.

Every kubelet routes each other Node's podCIDR through that Node's InternalIP
(`kubelet.routes`), so both are judged strictly: the podCIDR is an IPv4 network
inside the cluster CIDR (`network.pod_cidr`), set once (by the allocator, or by
whoever creates the Node) and immutable after, as Kubernetes' "node updates may
not change podCIDR except from \"\" to valid"; an InternalIP or ExternalIP is
an IP address. That no two Nodes share a range is checked by the API server,
which claims each range in etcd.
"""

from __future__ import annotations

import ipaddress

from kybernetes.core.api import formats
from kybernetes.core.api.quantity import QuantityError, parse_quantity
from kybernetes.master.api.validation.errors import Errors
from kybernetes.master.api.validation.network import ClusterNetwork, pod_cidr
from kybernetes.proto import objects_pb2 as pb

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ADDRESS_TYPES = ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS")
_IP_ADDRESS_TYPES = ("InternalIP", "ExternalIP")


def validate_node(errors: Errors, node: pb.Node, old: pb.Node | None, *,
                  network: ClusterNetwork) -> None:
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(node.spec.taints):
        path = f"spec.taints[{i}]"
        if not taint.key:
            errors.required(f"{path}.key")
        else:
            errors.check(f"{path}.key", taint.key, formats.qualified_name)
        errors.check(f"{path}.value", taint.value, formats.label_value)
        errors.enum(f"{path}.effect", taint.effect, TAINT_EFFECTS, allow_empty=False)
        if (taint.key, taint.effect) in seen:
            errors.duplicate(path, f"{taint.key}:{taint.effect}")
        seen.add((taint.key, taint.effect))
    if node.spec.pod_cidr:
        pod_cidr(errors, "spec.podCIDR", node.spec.pod_cidr, network)
    if old is not None and old.spec.pod_cidr and node.spec.pod_cidr != old.spec.pod_cidr:
        errors.invalid("spec.podCIDR", node.spec.pod_cidr, "field is immutable")
    for i, address in enumerate(node.status.addresses):
        path = f"status.addresses[{i}]"
        errors.enum(f"{path}.type", address.type, ADDRESS_TYPES, allow_empty=False)
        if not address.address:
            errors.required(f"{path}.address")
        elif address.type in _IP_ADDRESS_TYPES:
            try:
                ipaddress.ip_address(address.address)
            except ValueError:
                errors.invalid(f"{path}.address", address.address,
                               "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    for section, values in (("capacity", node.status.capacity), ("allocatable", node.status.allocatable)):
        for name, text in values.items():
            try:
                parse_quantity(text)
            except QuantityError as exc:
                errors.invalid(f"status.{section}[{name}]", text, str(exc))
