"""The namespace lab (deploy/lab/lab.sh) and the host-gw pod routes (kubelet/routes.py).

Route tests run `sync_pod_routes` against a network namespace of their own. The lab tests share one
lab per module (the module-scoped `lab` fixture of tests/fixtures/lab.py: bring-up takes seconds), under
a prefix and subnets of their own so that they can run beside a user's lab, `deploy/up.sh` and the
other tests.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.lab import (
    POD_NAME_LABEL,
    REPO,
    WORKERS,
    Lab,
    count_is,
    deployment,
    hello_manifest,
    http_get,
    is_ready,
    lab_traces,
    pick_lab,
    ready_pods,
    run,
    short_dir,
    used_routes,
)
from harness.waiting import until
from kybernetes.core.identity.kubeconfig import resolve
from kybernetes.ctl.client import ApiError
from kybernetes.kubelet.routes import DEFAULT_PROTO, RouteError, free_route_proto, route_proto, sync_pod_routes
from kybernetes.proto import objects_pb2 as pb

# ----------------------------------------------------------------------------- host-gw routes


def make_node(name: str, *, pod_cidr: str = "", internal_ip: str = "") -> pb.Node:
    node = pb.Node()
    node.metadata.name = name
    node.spec.pod_cidr = pod_cidr
    if internal_ip:
        node.status.addresses.add(type="InternalIP", address=internal_ip)
    node.status.addresses.add(type="Hostname", address=name)
    return node


def routes_in(netns: str) -> list[tuple[str, str, str]]:
    """(dst, gateway, protocol number) of every route in the main table, numeric."""
    entries = json.loads(run("ip", "-n", netns, "-N", "-j", "-4", "route", "show", "table", "main").stdout)
    return sorted((e["dst"], e.get("gateway", ""), str(e.get("protocol", "3"))) for e in entries)


@pytest.fixture
def route_netns() -> Iterator[str]:
    """A private netns with a link on 10.99.9.0/24 (this node is .2); deleted at the end."""
    name = f"kybrt-{secrets.token_hex(4)}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        run("ip", "-n", name, "addr", "add", "10.99.9.2/24", "dev", "eth0")
        run("ip", "-n", name, "link", "set", "eth0", "up")
        run("ip", "-n", name, "link", "set", "peer0", "up")
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def test_route_proto_is_77_for_kyb_and_stable_elsewhere():
    assert route_proto("kyb") == DEFAULT_PROTO == 77
    assert route_proto("kyb-lab-kl") == route_proto("kyb-lab-kl")
    assert 200 <= route_proto("kyb-lab-kl") < 250
    assert route_proto("kyb-lab-kl") != route_proto("kyb-lab-klt")


def test_a_host_side_owner_skips_route_protocol_numbers_in_use():
    # Two labs whose tags hash to one number would delete each other's host routes: the second moves on.
    first = route_proto("kyb-lab-kl")
    assert free_route_proto("kyb-lab-kl", used={77, 186}) == first
    second = free_route_proto("kyb-lab-kl", used={first})
    assert second != first and 200 <= second < 250
    assert free_route_proto("kyb-lab-kl", used={first, second}) not in {first, second}
    with pytest.raises(RouteError, match="no free routing protocol number"):
        free_route_proto("kyb-lab-kl", used=set(range(200, 250)))


async def test_sync_installs_replaces_and_removes_only_its_own_routes(route_netns: str):
    ns = route_netns
    # Routes that are not ours: a static route to node3's prefix and another owner's route.
    run("ip", "-n", ns, "route", "add", "10.244.3.0/24", "via", "10.99.9.9")
    other = str(route_proto("someone-else"))
    run("ip", "-n", ns, "route", "add", "10.244.8.0/24", "via", "10.99.9.8", "proto", other)
    # A guard blackhole that carries our protocol number (as the lab's do) is not a pod route.
    run("ip", "-n", ns, "route", "add", "blackhole", "10.244.0.0/16", "proto", "77", "metric", "4077")
    nodes = [
        make_node("node1", pod_cidr="10.244.1.0/24", internal_ip="10.99.9.2"),  # ourselves
        make_node("node2", pod_cidr="10.244.2.0/24", internal_ip="10.99.9.3"),
        make_node("node3", pod_cidr="10.244.3.0/24", internal_ip="10.99.9.4"),  # prefix owned by someone else
        make_node("node4", internal_ip="10.99.9.5"),  # no podCIDR yet
        make_node("node5", pod_cidr="10.244.5.0/24"),  # no InternalIP
        make_node("node6", pod_cidr="10.244.6.7/24", internal_ip="10.99.9.6"),  # host bits: normalized
    ]
    await sync_pod_routes(nodes=nodes, self_name="node1", netns=ns)
    assert routes_in(ns) == [
        ("10.244.0.0/16", "", "77"),
        ("10.244.2.0/24", "10.99.9.3", "77"),
        ("10.244.3.0/24", "10.99.9.9", "3"),
        ("10.244.6.0/24", "10.99.9.6", "77"),
        ("10.244.8.0/24", "10.99.9.8", other),
        ("10.99.9.0/24", "", "2"),
    ]

    # Idempotent: a second sync changes nothing.
    await sync_pod_routes(nodes=nodes, self_name="node1", netns=ns)
    assert ("10.244.2.0/24", "10.99.9.3", "77") in routes_in(ns)

    # node2 moved, node3's prefix became free, node6 left the cluster.
    run("ip", "-n", ns, "route", "del", "10.244.3.0/24", "via", "10.99.9.9")
    nodes = [
        make_node("node1", pod_cidr="10.244.1.0/24", internal_ip="10.99.9.2"),
        make_node("node2", pod_cidr="10.244.2.0/24", internal_ip="10.99.9.13"),
        make_node("node3", pod_cidr="10.244.3.0/24", internal_ip="10.99.9.4"),
    ]
    await sync_pod_routes(nodes=nodes, self_name="node1", netns=ns)
    assert routes_in(ns) == [
        ("10.244.0.0/16", "", "77"),
        ("10.244.2.0/24", "10.99.9.13", "77"),
        ("10.244.3.0/24", "10.99.9.4", "77"),
        ("10.244.8.0/24", "10.99.9.8", other),
        ("10.99.9.0/24", "", "2"),
    ]

    # An empty list removes every route of ours and nothing else.
    await sync_pod_routes(nodes=[], self_name="node1", netns=ns)
    assert routes_in(ns) == [("10.244.0.0/16", "", "77"), ("10.244.8.0/24", "10.99.9.8", other),
                             ("10.99.9.0/24", "", "2")]


async def test_sync_applies_what_it_can_when_a_gateway_is_unreachable(route_netns: str):
    ns = route_netns
    nodes = [
        make_node("far", pod_cidr="10.244.4.0/24", internal_ip="10.50.0.1"),  # no connected route to it
        make_node("near", pod_cidr="10.244.5.0/24", internal_ip="10.99.9.5"),
    ]
    await sync_pod_routes(nodes=nodes, self_name="me", netns=ns)
    assert [r for r in routes_in(ns) if r[2] == "77"] == [("10.244.5.0/24", "10.99.9.5", "77")]


async def test_tags_keep_owners_apart(route_netns: str):
    ns = route_netns
    first = [make_node("a", pod_cidr="10.244.1.0/24", internal_ip="10.99.9.11")]
    second = [make_node("b", pod_cidr="10.244.2.0/24", internal_ip="10.99.9.12")]
    await sync_pod_routes(nodes=first, self_name="", table_owner_tag="owner-one", netns=ns)
    await sync_pod_routes(nodes=second, self_name="", table_owner_tag="owner-two", netns=ns)
    # Each owner's sync leaves the other's route alone.
    await sync_pod_routes(nodes=first, self_name="", table_owner_tag="owner-one", netns=ns)
    dsts = {r[0]: r[2] for r in routes_in(ns)}
    assert dsts["10.244.1.0/24"] == str(route_proto("owner-one"))
    assert dsts["10.244.2.0/24"] == str(route_proto("owner-two"))


# ----------------------------------------------------------------------------- the namespace lab

def test_lab_topology(lab: Lab):
    # Every machine is a netns on the bridge; nodes reach each other and the master, and nothing else.
    for node in range(1, WORKERS + 1):
        netns = lab.node_netns(node)
        for other in [10, *(10 + n for n in range(1, WORKERS + 1) if n != node)]:
            run("ip", "netns", "exec", netns, "busybox", "ping", "-c1", "-W2", f"{lab.subnet}.{other}")
        # Each worker runs its own containerd (own socket, own containerd namespace) inside its netns.
        assert lab.ctr(node, "version").returncode == 0
        pid = (lab.dir / f"node{node}" / "run" / "containerd.pid").read_text().strip()
        assert run("ip", "netns", "identify", pid).stdout.strip() == netns
    # The guard is in place before anything runs: blackholes and the forward chain.
    routes = used_routes()
    assert "blackhole 10.244.0.0/16" in routes and "blackhole 10.96.0.0/16" in routes
    chain = run("iptables", "-S", f"{lab.prefix.upper()}-FWD").stdout
    assert f"-i {lab.prefix}br0 -j DROP" in chain and f"-o {lab.prefix}br0 -j DROP" in chain
    assert f"-j {lab.prefix.upper()}-FWD" in run("iptables", "-S", "FORWARD").stdout
    # The host's kybctl talks to the lab's master; the workers are Ready Nodes.
    assert lab.sh("env").stdout.strip() == f"export KYBCONFIG={lab.kubeconfig}"
    assert resolve(lab.kubeconfig).server == lab.server
    nodes = lab.sh("kybctl", "get", "nodes").stdout.splitlines()
    assert [line.split()[:2] for line in nodes[1:]] == [[f"node{n}", "Ready"] for n in range(1, WORKERS + 1)]
    # The registry on the master node serves the sample images to the nodes.
    catalog = run("ip", "netns", "exec", lab.node_netns(1), "curl", "-fsS", "--max-time", "5",
                  f"http://{lab.registry}/v2/_catalog").stdout
    assert set(json.loads(catalog)["repositories"]) >= {"kyb/busybox", "kyb/hello"}


async def test_deployment_spreads_over_the_three_nodes(lab: Lab):
    async with deployment(lab, name="spread", replicas=6) as kyb:
        pods = await ready_pods(kyb, "spread")
        assert sorted({p.spec.node_name for p in pods}) == [f"node{n}" for n in range(1, WORKERS + 1)]
        # The host reaches every pod (host-gw routes), and each page names its pod and version.
        for pod in pods:
            body = await http_get(pod.status.pod_ip)
            assert body == f"hello from {pod.metadata.name} version v1"
        assert sorted(lab.running_everywhere("spread-")) == sorted(p.metadata.name for p in pods)


async def test_pod_to_pod_traffic_across_nodes(lab: Lab):
    async with deployment(lab, name="talk", replicas=6) as kyb:
        pods = await ready_pods(kyb, "talk")
        by_node = {p.spec.node_name: p for p in pods}
        assert len(by_node) == WORKERS
        for source_node, source in sorted(by_node.items()):
            number = int(source_node.removeprefix("node"))
            container = lab.ctr(number, "containers", "ls", "-q",
                                f'labels."{POD_NAME_LABEL}"=={source.metadata.name}').stdout.split()[0]
            for target_node, target in sorted(by_node.items()):
                if target_node == source_node:
                    continue
                # From inside the source pod's container: wget to the other node's pod by pod IP.
                result = lab.ctr(number, "tasks", "exec", "--exec-id", f"probe-{secrets.token_hex(4)}", container,
                                 "sh", "-c", f"timeout 5 wget -qO- http://{target.status.pod_ip}:8080/ </dev/null",
                                 check=False)
                assert result.stdout.strip() == f"hello from {target.metadata.name} version v1", (
                    f"{source.metadata.name} ({source_node}) -> {target.metadata.name} ({target_node}): "
                    f"rc {result.returncode} {result.stderr.strip()}")


async def test_killed_node_pods_move_and_stale_pods_stop_when_it_returns(lab: Lab):
    async with deployment(lab, name="moving", replicas=6) as kyb:
        victim = 3
        on_victim = {p.metadata.name for p in await ready_pods(kyb, "moving") if p.spec.node_name == f"node{victim}"}
        assert on_victim, "the scheduler put nothing on the victim node"
        lab.sh("kill-node", str(victim))
        try:
            # A power cut: no process of the node is left (daemons, shims, containers).
            assert lab.processes_in(lab.node_netns(victim)) == []
            assert all(lab.processes_in(ns) == [] for ns in pod_netns(lab, victim))

            async def moved() -> list[pb.Pod]:
                pods = await ready_pods(kyb, "moving")
                return pods if len(pods) == 6 and all(p.spec.node_name != f"node{victim}" for p in pods) else []

            # The pods move and become ready elsewhere (how fast is bench/failover.py's measurement).
            pods = await until(moved, timeout=120, interval=0.2)
            assert not {p.metadata.name for p in pods} & on_victim  # replacements, not the lost pods
        finally:
            lab.sh("start-node", str(victim))

        # Back: its Node is Ready again, the evicted pods' containers are stopped, nothing runs twice.
        async def converged() -> bool:
            wanted = sorted(p.metadata.name for p in await ready_pods(kyb, "moving"))
            counts = lab.running_everywhere("moving-")
            return len(wanted) == 6 and sorted(counts) == wanted and set(counts.values()) == {1}

        await until(converged, timeout=60, interval=0.5)
        assert not set(lab.running_pods(victim)) & on_victim


def pod_netns(lab: Lab, node: int) -> list[str]:
    names = [line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(lab.node_netns(node) + "-")]


async def test_partition_and_heal_converge_without_duplicates(lab: Lab):
    async with deployment(lab, name="split", replicas=6) as kyb:
        cut = 2
        lab.sh("partition", str(cut))
        try:
            async def replaced() -> bool:
                pods = await ready_pods(kyb, "split")
                return len(pods) == 6 and all(p.spec.node_name != f"node{cut}" for p in pods)

            await until(replaced, timeout=60, interval=0.5)
        finally:
            lab.sh("heal", str(cut))

        async def converged() -> bool:
            node = await kyb.get("nodes", f"node{cut}", namespace="")
            wanted = sorted(p.metadata.name for p in await ready_pods(kyb, "split"))
            counts = lab.running_everywhere("split-")
            return (is_ready(node) and len(wanted) == 6 and sorted(counts) == wanted
                    and set(counts.values()) == {1})

        await until(converged, timeout=60, interval=0.5)


async def test_master_sigkill_during_rollout(lab: Lab):
    async with deployment(lab, name="roll", replicas=6) as kyb:
        serving_before = [p.status.pod_ip for p in await ready_pods(kyb, "roll")]
        lab.sh("kybctl", "set", "image", "deployment/roll", f"hello={lab.registry}/kyb/hello:v2")

        async def rollout_started() -> bool:
            rs = (await kyb.list("replicasets", namespace="default", label_selector="app=roll")).items
            return len(rs) == 2

        await until(rollout_started, timeout=30, interval=0.05)
        lab.sh("kill-master")
        try:
            # The master is gone: the kubelets keep their pods serving.
            with pytest.raises(ApiError):
                await kyb.list("nodes")
            answers = []
            for ip in serving_before:
                with contextlib.suppress(Exception):
                    answers.append(await http_get(ip))
            # The rollout keeps at least 6 - maxUnavailable (25% of 6 -> 1) available, master or not.
            assert len(answers) >= 5 - 1, answers
        finally:
            lab.sh("start-master")

        async def rolled_out() -> bool:
            deploy = await kyb.get("deployments", "roll")
            pods = await ready_pods(kyb, "roll")
            return (deploy.status.updated_replicas == 6 and deploy.status.available_replicas == 6
                    and len(pods) == 6 and all(p.spec.containers[0].image.endswith(":v2") for p in pods))

        await until(rolled_out, timeout=120, interval=0.5)
        for pod in await ready_pods(kyb, "roll"):
            assert await http_get(pod.status.pod_ip) == f"hello from {pod.metadata.name} version v2"

        # The replaced pods drain first (the sample app serves 2 s after SIGTERM), then only v2 runs, once.
        async def only_new_pods_run() -> bool:
            counts = lab.running_everywhere("roll-")
            wanted = sorted(p.metadata.name for p in await ready_pods(kyb, "roll"))
            return sorted(counts) == wanted and set(counts.values()) == {1}

        await until(only_new_pods_run, timeout=30, interval=0.5)


# ----------------------------------------------------------------------------- teardown


async def test_down_leaves_nothing_behind(lab: Lab):
    with short_dir() as base:
        await _up_and_down_again(lab, base)


async def _up_and_down_again(lab: Lab, base: Path) -> None:
    # A second, smaller lab next to the shared one: other names, subnet and pod range.
    small = pick_lab(base, letter="d", workers=2, taken={lab.subnet, lab.cluster_cidr})
    before = lab_traces(small)
    assert before == {key: [] for key in before}
    try:
        small.sh("up", "--workers", "2")
        small.sh("kybctl", "apply", "-f", "-", stdin=hello_manifest(small, name="bye", replicas=4))
        async with small.client() as kyb:
            await until(lambda: count_is(ready_pods(kyb, "bye"), 4), timeout=90)
        during = lab_traces(small)
        assert during["netns"] and during["links"] and during["iptables"] and during["processes"]
        assert during["mounts"] and during["cgroups"] and during["routes"]
        # One node dies with its pods (the teardown must cope with a powered-off node too).
        small.sh("kill-node", "2")
        assert small.processes_in(small.node_netns(2)) == []
        small.sh("down")
    finally:
        small.sh("down", check=False)
    after = lab_traces(small)
    assert after == {key: [] for key in after}


# ----------------------------------------------------------------------------- provisioning (the VM path)

PROVISION_SH = REPO / "deploy" / "provision" / "provision.sh"


def test_provisioned_units_run_the_lab_commands_and_restart_on_failure(tmp_path: Path):
    # The Vagrant VMs get systemd units from the same configuration the namespace lab launches by hand.
    run(str(PROVISION_SH), "configure", "--role", "master", "--name", "master", "--ip", "192.168.56.10",
        "--etc", str(tmp_path / "master"))
    run(str(PROVISION_SH), "configure", "--role", "node", "--name", "node1", "--ip", "192.168.56.11",
        "--master", "192.168.56.10:6443", "--registry", "192.168.56.10:5000", "--etc", str(tmp_path / "node1"),
        "--state", str(tmp_path / "state"), "--run", str(tmp_path / "run"))
    units = tmp_path / "units"
    for role in ("master", "node1"):
        run(str(PROVISION_SH), "units", "--env", str(tmp_path / role / "kybernetes.env"), "--dir", str(units))
    assert sorted(p.name for p in units.iterdir()) == [
        "kyb-containerd.service", "kyb-etcd.service", "kyb-kubelet.service", "kyb-master.service",
        "kyb-registry.service"]
    for unit in units.iterdir():
        text = unit.read_text()
        component = unit.stem.removeprefix("kyb-")
        role = "node1" if component in ("containerd", "kubelet") else "master"
        assert f"ExecStart={PROVISION_SH} run {component} --env {tmp_path / role / 'kybernetes.env'}\n" in text
        assert "Restart=on-failure\n" in text
    assert "After=network-online.target kyb-etcd.service" in (units / "kyb-master.service").read_text()
    assert "KillMode=process" in (units / "kyb-containerd.service").read_text()
    if shutil.which("systemd-analyze"):
        result = run("systemd-analyze", "verify", *map(str, sorted(units.iterdir())), check=False)
        assert result.returncode == 0, result.stderr
    # The node learns the master's address and the registry; its kubelet reports the private IP.
    env = (tmp_path / "node1" / "kybernetes.env").read_text()
    assert 'KYB_MASTER="192.168.56.10:6443"' in env and 'KYB_REGISTRY="192.168.56.10:5000"' in env
    assert 'KYB_NODE_IP="192.168.56.11"' in env and 'KYB_CONTAINERD_MODE="own"' in env
    assert 'disabled_plugins = ["io.containerd.grpc.v1.cri"]' in (tmp_path / "node1" / "containerd.toml").read_text()


def test_provision_rejects_bad_settings(tmp_path: Path):
    result = run(str(PROVISION_SH), "configure", "--role", "worker", "--etc", str(tmp_path), check=False)
    assert result.returncode == 1 and "--role must be master, node or all (got 'worker')" in result.stderr
    result = run(str(PROVISION_SH), "configure", "--role", "node", "--etc", str(tmp_path),
                 "--kubelet-args", '--node-label a="b"', check=False)
    assert result.returncode == 1 and "KYB_KUBELET_ARGS: quotes" in result.stderr
    result = run(str(PROVISION_SH), "run", "scheduler", "--env", str(tmp_path / "none.env"), check=False)
    assert result.returncode == 1 and "no configuration at" in result.stderr
