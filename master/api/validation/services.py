"""Services and Endpoints.

A Service: type (ClusterIP or NodePort), session affinity, ports (named when
there are several, unique by name and by port/protocol, targetPort a number or
a container port's name, nodePort only on NodePort services and in the node
port range), the label selector map, and a clusterIP that is an IP address the
server allocates once and an update may not change. Endpoints: each subset's
addresses are where every Node's proxy sends Service traffic, so each must be
an IPv4 unicast address a pod can have (`formats.endpoint_ip`: not loopback,
link-local, the metadata address, multicast or unspecified), and its ports are
valid. Port rules come from `ports`, name syntax from
`kybernetes.core.api.formats`.
"""

from __future__ import annotations

import ipaddress

from kybernetes.core.api import formats
from kybernetes.master.api.validation.errors import Errors
from kybernetes.master.api.validation.meta import validate_labels
from kybernetes.master.api.validation.network import ClusterNetwork
from kybernetes.master.api.validation.ports import PROTOCOLS, validate_int_or_string_port, validate_port_number
from kybernetes.proto import objects_pb2 as pb

_SERVICE_TYPES = ("ClusterIP", "NodePort")
_SESSION_AFFINITIES = ("None", "ClientIP")
_NODE_PORT_MIN, _NODE_PORT_MAX = 30000, 32767


def _ip_address(errors: Errors, path: str, address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        errors.invalid(path, address, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")


def validate_service(errors: Errors, service: pb.Service, old: pb.Service | None, *,
                     network: ClusterNetwork) -> None:
    spec = service.spec
    errors.enum("spec.type", spec.type, _SERVICE_TYPES)
    errors.enum("spec.sessionAffinity", spec.session_affinity, _SESSION_AFFINITIES)
    if not spec.ports:
        errors.required("spec.ports")
    port_names: set[str] = set()
    port_keys: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        protocol = port.protocol or "TCP"
        if not port.name:
            if len(spec.ports) > 1:
                errors.required(f"{path}.name")
        else:
            errors.check(f"{path}.name", port.name, formats.dns1123_label)
            if port.name in port_names:
                errors.duplicate(f"{path}.name", port.name)
            port_names.add(port.name)
        validate_port_number(errors, f"{path}.port", port.port)
        if (port.port, protocol) in port_keys:
            errors.duplicate(path, f"{port.port}/{protocol}")
        port_keys.add((port.port, protocol))
        errors.enum(f"{path}.protocol", port.protocol, PROTOCOLS)
        validate_int_or_string_port(errors, f"{path}.targetPort", port.target_port, required=False)
        if port.node_port != 0:
            if spec.type != "NodePort":
                errors.forbidden(f"{path}.nodePort", f"may not be used when `type` is '{spec.type or 'ClusterIP'}'")
            elif not _NODE_PORT_MIN <= port.node_port <= _NODE_PORT_MAX:
                errors.invalid(
                    f"{path}.nodePort",
                    port.node_port,
                    "provided port is not in the valid range. "
                    f"The range of valid ports is {_NODE_PORT_MIN}-{_NODE_PORT_MAX}",
                )
            elif (port.node_port, protocol) in node_ports:
                errors.duplicate(f"{path}.nodePort", port.node_port)
            node_ports.add((port.node_port, protocol))
    validate_labels(errors, "spec.selector", spec.selector)
    if spec.cluster_ip and spec.cluster_ip != "None":
        _ip_address(errors, "spec.clusterIP", spec.cluster_ip)
    # The server allocates clusterIP once; an update must carry the stored value (copy it when the
    # client left it empty, as Kubernetes' patchAllocatedValues does) or the proxy would lose the service.
    if old is not None and old.spec.cluster_ip and spec.cluster_ip != old.spec.cluster_ip:
        errors.invalid("spec.clusterIP", spec.cluster_ip, "field is immutable")


def validate_endpoints(errors: Errors, endpoints: pb.Endpoints, old: pb.Endpoints | None, *,
                       network: ClusterNetwork) -> None:
    for i, subset in enumerate(endpoints.subsets):
        path = f"subsets[{i}]"
        for field, addresses in (
            ("addresses", subset.addresses),
            ("notReadyAddresses", subset.not_ready_addresses),
        ):
            for j, address in enumerate(addresses):
                errors.check(f"{path}.{field}[{j}].ip", address.ip, formats.endpoint_ip)
        for j, port in enumerate(subset.ports):
            port_path = f"{path}.ports[{j}]"
            if port.name:
                errors.check(f"{port_path}.name", port.name, formats.dns1123_label)
            validate_port_number(errors, f"{port_path}.port", port.port)
            errors.enum(f"{port_path}.protocol", port.protocol, PROTOCOLS)
