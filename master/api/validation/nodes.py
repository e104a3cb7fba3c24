"""Nodes: taints, the pod CIDR and the resource quantities a node reports.

Each taint has a qualified-name key, a label-value value and one of the taint
effects (which pod tolerations also name, so `pods` imports `TAINT_EFFECTS`
from here), and a key may carry each effect once. The pod CIDR must parse as a
network, and status capacity and allocatable must be quantities.
"""

from __future__ import annotations

import ipaddress

from kybernetes.core.api import formats
from kybernetes.core.api.quantity import QuantityError, parse_quantity
from kybernetes.master.api.validation.errors import Errors
from kybernetes.proto import objects_pb2 as pb

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_node(errors: Errors, node: pb.Node, old: pb.Node | None) -> None:
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
        try:
            ipaddress.ip_network(node.spec.pod_cidr)
        except ValueError:
            errors.invalid("spec.podCIDR", node.spec.pod_cidr, "must be a valid CIDR (e.g. 10.244.1.0/24)")
    for section, values in (("capacity", node.status.capacity), ("allocatable", node.status.allocatable)):
        for name, text in values.items():
            try:
                parse_quantity(text)
            except QuantityError as exc:
                errors.invalid(f"status.{section}[{name}]", text, str(exc))
