"""The service proxy on real iptables, in network namespaces made by the test.

Topology (all inside namespaces this test creates; nothing is routed to the host):
  kyt-ext 10.99.210.2 ── veth ── 10.99.210.1 kyt-node ── bridge kytbr 10.244.210.1 ── kyt-ep1..3 (busybox httpd :8080)
The proxy's rules are applied in kyt-node, exactly as a kubelet applies them in its Node's namespace.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from kybernetes.kubelet.proxy.iptables import Iptables
from kybernetes.kubelet.proxy.proxy import ServiceProxy
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
NODE, EXT = "kyt-node", "kyt-ext"
EPS = {"kyt-ep1": "10.244.210.11", "kyt-ep2": "10.244.210.12", "kyt-ep3": "10.244.210.13"}
CLUSTER_IP, NODE_PORT = "10.96.210.10", 30210


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    root = tmp_path_factory.mktemp("proxy")
    servers: dict[str, subprocess.Popen[bytes]] = {}
    names = [NODE, EXT, *EPS]
    for ns in names:
        sh("ip", "netns", "del", ns, check=False)
    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(NODE, "ip", "link", "add", "kytbr", "type", "bridge")
        in_ns(NODE, "ip", "addr", "add", "10.244.210.1/24", "dev", "kytbr")
        in_ns(NODE, "ip", "link", "set", "kytbr", "up")
        in_ns(NODE, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", EXT)
        in_ns(NODE, "ip", "addr", "add", "10.99.210.1/24", "dev", "eth0")
        in_ns(NODE, "ip", "link", "set", "eth0", "up")
        in_ns(EXT, "ip", "addr", "add", "10.99.210.2/24", "dev", "eth0")
        in_ns(EXT, "ip", "link", "set", "eth0", "up")
        in_ns(EXT, "ip", "route", "add", "default", "via", "10.99.210.1")
        # Like a lab node, the node has a default route (into the test's own "outside" namespace), so
        # local connections to a service IP get past the routing decision to the nat OUTPUT chain.
        in_ns(NODE, "ip", "route", "add", "default", "via", "10.99.210.2")
        for i, (ns, ip) in enumerate(EPS.items(), start=1):
            veth = f"kytv{i}"
            in_ns(NODE, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            in_ns(NODE, "ip", "link", "set", veth, "master", "kytbr", "up")
            in_ns(NODE, "bridge", "link", "set", "dev", veth, "hairpin", "on")
            in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
            in_ns(ns, "ip", "route", "add", "default", "via", "10.244.210.1")
            www = root / ns
            www.mkdir()
            (www / "index.html").write_text(ns)
            servers[ns] = subprocess.Popen(["ip", "netns", "exec", ns, BUSYBOX, "httpd", "-f", "-p", "8080",
                                            "-h", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield servers
    finally:
        for proc in servers.values():
            proc.kill()
            proc.wait()
        for ns in names:
            sh("ip", "netns", "del", ns, check=False)


def service(*, affinity: bool = False) -> pb.Service:
    svc = pb.Service()
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.type = "NodePort"
    svc.spec.cluster_ip = CLUSTER_IP
    svc.spec.session_affinity = "ClientIP" if affinity else "None"
    port = svc.spec.ports.add(name="http", port=80, protocol="TCP", node_port=NODE_PORT)
    port.target_port.int_val = 8080
    return svc


def endpoints(ready: list[str], not_ready: tuple[str, ...] = ()) -> pb.Endpoints:
    ep = pb.Endpoints()
    ep.metadata.name, ep.metadata.namespace = "web", "default"
    if ready or not_ready:
        subset = ep.subsets.add()
        subset.addresses.extend(pb.EndpointAddress(ip=EPS[n]) for n in ready)
        subset.not_ready_addresses.extend(pb.EndpointAddress(ip=EPS[n]) for n in not_ready)
        subset.ports.add(name="http", port=8080, protocol="TCP")
    return ep


async def fetch(ns: str, url: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, "timeout", "3", BUSYBOX, "wget", "-q", "-O-", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return out.decode().strip() if proc.returncode == 0 else f"error:{err.decode().strip()}"


async def spread(ns: str, url: str, n: int = 60) -> Counter[str]:
    return Counter([await fetch(ns, url) for _ in range(n)])


@pytest.fixture
async def proxy(topology) -> Iptables:
    ipt = Iptables(netns=NODE)
    await ipt.remove_all()
    yield ipt
    await ipt.remove_all()


async def wait_listening() -> None:
    for ns, ip in EPS.items():
        for _ in range(100):
            if not (await fetch(NODE, f"http://{ip}:8080/")).startswith("error"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{ns} httpd not answering")


async def test_cluster_ip_and_node_port_reach_every_ready_endpoint(proxy: Iptables):
    await wait_listening()
    await proxy.apply([service()], [endpoints(["kyt-ep1", "kyt-ep2", "kyt-ep3"])])
    from_node = await spread(NODE, f"http://{CLUSTER_IP}/")
    assert set(from_node) == set(EPS) and min(from_node.values()) >= 5, from_node
    from_outside = await spread(EXT, f"http://10.99.210.1:{NODE_PORT}/")
    assert set(from_outside) == set(EPS) and min(from_outside.values()) >= 5, from_outside
    # Hairpin: an endpoint reaching its own Service gets answers from every endpoint, itself included.
    hairpin = await spread("kyt-ep1", f"http://{CLUSTER_IP}/", n=30)
    assert set(hairpin) == set(EPS), hairpin


async def test_unready_endpoints_get_no_traffic_and_no_endpoints_refuses(proxy: Iptables):
    await wait_listening()
    await proxy.apply([service()], [endpoints(["kyt-ep1", "kyt-ep2"], not_ready=("kyt-ep3",))])
    got = await spread(NODE, f"http://{CLUSTER_IP}/", n=40)
    assert set(got) == {"kyt-ep1", "kyt-ep2"}, got
    await proxy.apply([service()], [endpoints([])])
    refused = await fetch(NODE, f"http://{CLUSTER_IP}/")
    assert "refused" in refused, refused
    refused = await fetch(EXT, f"http://10.99.210.1:{NODE_PORT}/")
    assert "refused" in refused, refused


async def test_a_bad_endpoint_is_skipped_and_the_others_still_serve(proxy: Iptables):
    """An IPv6 or malformed address in Endpoints would fail the whole iptables-restore: it is left out."""
    await wait_listening()
    ep = endpoints(["kyt-ep1", "kyt-ep2"])
    ep.subsets[0].addresses.add(ip="fd00::5")
    ep.subsets[0].addresses.add(ip="10.244.210.14 --to-destination 10.99.210.2")
    await proxy.apply([service()], [ep])
    got = await spread(NODE, f"http://{CLUSTER_IP}/", n=30)
    assert set(got) == {"kyt-ep1", "kyt-ep2"}, got


async def test_client_ip_affinity_sticks(proxy: Iptables):
    await wait_listening()
    await proxy.apply([service(affinity=True)], [endpoints(["kyt-ep1", "kyt-ep2", "kyt-ep3"])])
    got = await spread(NODE, f"http://{CLUSTER_IP}/", n=15)
    assert len(got) == 1, got


async def test_rules_are_atomic_idempotent_and_rebuilt_identically_on_restart(proxy: Iptables):
    svc, ep = service(), endpoints(["kyt-ep1", "kyt-ep2"])
    for _ in range(3):
        await proxy.apply([svc], [ep])
    saved = in_ns(NODE, "iptables-save").stdout
    ours = sorted(line for line in saved.splitlines() if "KYB-" in line and not line.startswith(":"))
    assert sum(1 for line in ours if line.startswith("-A PREROUTING")) == 1
    # A removed Service leaves no chain behind.
    await proxy.apply([], [])
    assert not [c for c in await proxy.our_nat_chains() if c.startswith(("KYB-SVC", "KYB-SEP"))]
    # A restarted proxy (new actor) rebuilds the same rules from the same sync.
    actor = ServiceProxy(iptables=proxy)
    task = asyncio.create_task(actor.run())
    actor.tell(node_pb2.ServiceSync(services=[svc], endpoints=[ep]))
    await asyncio.wait_for(actor.applied_event.wait(), 10)
    task.cancel()
    again = in_ns(NODE, "iptables-save").stdout
    assert sorted(line for line in again.splitlines() if "KYB-" in line and not line.startswith(":")) == ours
    # Everything of ours goes on removal, nothing else is touched.
    await proxy.remove_all()
    assert "KYB-" not in in_ns(NODE, "iptables-save").stdout


def test_busybox_present():
    assert Path(BUSYBOX).exists()
