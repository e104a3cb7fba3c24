"""The proxy's rules from hostile Endpoints: a bad address is skipped (logged, one Event), the rest still applies.

One address that is not a plain IPv4 unicast (IPv6, a malformed string, loopback, link-local, the metadata
address) would otherwise reach `iptables-restore`, where one bad line fails the whole commit and leaves every
Service stale. These tests run the real rule builder and the real `Iptables.apply` against a fake
`iptables-restore` (no root): what reaches the restore is what matters.
"""

from __future__ import annotations

import asyncio

import structlog

from harness.waiting import until
from kybernetes.kubelet.events import EventRecorder
from kybernetes.kubelet.proxy.iptables import Iptables
from kybernetes.kubelet.proxy.proxy import ServiceProxy
from kybernetes.kubelet.proxy.rules import render, screen_endpoints, service_ports
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

GOOD = ["10.244.1.5", "10.244.1.7"]
BAD = ["fd00::5", "10.244.1.6 -j ACCEPT", "127.0.0.1", "169.254.169.254", "10.244.1"]


def service() -> pb.Service:
    svc = pb.Service()
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.cluster_ip = "10.96.0.10"
    svc.spec.ports.add(name="http", port=80, protocol="TCP").target_port.int_val = 8080
    return svc


def endpoints(ips: list[str]) -> pb.Endpoints:
    ep = pb.Endpoints()
    ep.metadata.name, ep.metadata.namespace = "web", "default"
    subset = ep.subsets.add()
    subset.addresses.extend(pb.EndpointAddress(ip=ip) for ip in ips)
    subset.ports.add(name="http", port=8080, protocol="TCP")
    return ep


def test_bad_endpoints_are_screened_out_and_named():
    clean, skipped = screen_endpoints([endpoints([GOOD[0], *BAD, GOOD[1]])])
    assert [a.ip for a in clean[0].subsets[0].addresses] == GOOD
    assert [s.ip for s in skipped] == BAD
    assert all(s.namespace == "default" and s.name == "web" and s.reason for s in skipped)
    assert "loopback" in next(s.reason for s in skipped if s.ip == "127.0.0.1")


def test_rules_never_carry_a_bad_endpoint_even_unscreened():
    text = render(service_ports([service()], [endpoints([GOOD[0], *BAD, GOOD[1]])]))
    for ip in GOOD:
        assert f"--to-destination {ip}:8080" in text
    for ip in BAD:
        assert f"{ip}:8080" not in text and f"-s {ip}/32" not in text


def test_a_service_with_a_bad_cluster_ip_is_left_out():
    svc = service()
    svc.spec.cluster_ip = "fd00::10"
    assert service_ports([svc], [endpoints(GOOD)]) == []


class FakeIptables(Iptables):
    """The real apply, with iptables-save answering nothing and iptables-restore recording its input."""

    def __init__(self) -> None:
        super().__init__()
        self.restored: list[str] = []

    async def run(self, *args: str, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
        if args[0] == "iptables-restore":
            assert stdin is not None
            for line in stdin.splitlines():  # what iptables-restore would refuse: the whole commit fails
                assert "::" not in line and " -j ACCEPT:" not in line, line
            self.restored.append(stdin)
        return 0, ""


async def test_the_proxy_skips_a_bad_endpoint_with_a_warning_and_one_event_and_applies_the_rest():
    sent: list[node_pb2.NodeMessage] = []
    events = EventRecorder(node_name="node-1", send=lambda message: sent.append(message) is None)
    iptables = FakeIptables()
    proxy = ServiceProxy(iptables=iptables, events=events)
    task = asyncio.create_task(proxy.run())
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(2):  # the same bad address in two syncs: one Event, not one per sync
                proxy.applied_event.clear()
                proxy.tell(node_pb2.ServiceSync(services=[service()], endpoints=[endpoints([GOOD[0], "fd00::5"])]))
                await until(proxy.applied_event.is_set, timeout=10, message="the proxy applied the sync")
        assert len(iptables.restored) == 2
        assert "--to-destination 10.244.1.5:8080" in iptables.restored[-1]
        warnings = [e for e in logs if e["log_level"] == "warning" and e.get("ip") == "fd00::5"]
        assert warnings and warnings[0]["object"] == "endpoints/default/web", logs
        recorded = [m.event.event for m in sent if m.WhichOneof("message") == "event"]
        assert len(recorded) == 1, recorded
        event = recorded[0]
        assert (event.type, event.reason) == ("Warning", "InvalidEndpoint")
        assert (event.involved_object.kind, event.involved_object.name) == ("Endpoints", "web")
        assert "fd00::5" in event.message
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
