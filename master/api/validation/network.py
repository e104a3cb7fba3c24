"""The cluster's pod network as validation sees it, and the address rules that depend on it.

Most rules are about one object alone; these also need the range the master was
started with (`--cluster-cidr`), because nodes act on the addresses they are
given: a kubelet routes another Node's podCIDR through that Node's InternalIP,
probes a pod at the host its spec names, and a proxy sends Service traffic to
the pod IPs in Endpoints. `ClusterNetwork` carries that range into `validate`
(the API server builds it from its configuration; pure callers get the
default, `10.244.0.0/16`), and the functions below judge an address against it:

- `pod_range_ip`: an IPv4 address inside the pod range (pod IPs, probe hosts);
- `pod_cidr`: a Node's range, an IPv4 network inside the pod range.

Uniqueness of a Node's podCIDR is not a rule of one object: the API server
claims each range in etcd (`master.api.allocators.PodCIDRClaims`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kybernetes.core.api import formats
from kybernetes.master.api.validation.errors import Errors


@dataclass(frozen=True, slots=True)
class ClusterNetwork:
    """The cluster's address ranges: `pods` is --cluster-cidr, out of which every Node gets its podCIDR."""

    pods: ipaddress.IPv4Network

    @classmethod
    def of(cls, *, cluster_cidr: str) -> ClusterNetwork:
        """From the master's flag; a range that is not an IPv4 network is a configuration error (ValueError)."""
        network = ipaddress.ip_network(cluster_cidr)
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError(f"--cluster-cidr: {cluster_cidr!r} is not an IPv4 network")
        return cls(pods=network)


DEFAULT_NETWORK = ClusterNetwork.of(cluster_cidr="10.244.0.0/16")


def pod_range_ip(errors: Errors, path: str, value: str, network: ClusterNetwork) -> bool:
    """`value` must be an IPv4 address in the pod range; returns whether it is."""
    address = formats.parse_ipv4(value)
    if address is None or address not in network.pods:
        errors.invalid(path, value, f"must be an IPv4 address in the cluster's pod range {network.pods}")
        return False
    return True


def pod_cidr(errors: Errors, path: str, value: str, network: ClusterNetwork) -> None:
    """A Node's pod range: an IPv4 network (host bits allowed, as Kubernetes does) inside the pod range."""
    try:
        parsed = ipaddress.ip_network(value, strict=False)
    except ValueError:
        errors.invalid(path, value, "must be a valid CIDR (e.g. 10.244.1.0/24)")
        return
    if not isinstance(parsed, ipaddress.IPv4Network):
        errors.invalid(path, value, "must be an IPv4 network")
        return
    if not parsed.subnet_of(network.pods):
        errors.invalid(path, value, f"must lie within the cluster CIDR {network.pods}")
