"""deploy/up.sh and deploy/down.sh end to end: the one-command local cluster, run twice, then torn down.

The scripts run with settings of their own (state dir, ports, containerd socket and namespace, pod
bridge and pod range) so that the test can run beside other tests and a user's cluster. The containerd
socket is one nobody serves, so up.sh takes the "no containerd running: start one and remember it" path,
and down.sh must stop it again. Before and after, nothing on the host may carry the test's names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.ports import free_ports
from harness.waiting import until
from kybernetes.ctl.client import Client
from kybernetes.kubelet.routes import route_proto

REPO = Path(__file__).resolve().parents[1]
UP = REPO / "deploy" / "up.sh"
DOWN = REPO / "deploy" / "down.sh"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def run(*argv: str, timeout: float = 60.0) -> str:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout).stdout


@contextlib.contextmanager
def local_settings() -> Iterator[dict[str, str]]:
    """Environment for up.sh/down.sh: a short state dir, free ports, own names, a free /23 in 10.244.192-199."""
    base = Path(tempfile.mkdtemp(prefix="kybup-", dir="/tmp"))
    token = secrets.token_hex(3)
    master_port, registry_port = free_ports(2)
    routes = run("ip", "-4", "route", "show", "table", "all")
    free = [o for o in (192, 194, 196, 198) if f"10.244.{o}." not in routes and f"10.244.{o + 1}." not in routes]
    assert free, "no free /23 in 10.244.192.0/21 for the test cluster"
    try:
        yield {
            "KYB_LOCAL_DIR": str(base / "local"),
            "KYB_MASTER_PORT": str(master_port),
            "KYB_REGISTRY_PORT": str(registry_port),
            "KYB_CONTAINERD_ADDRESS": str(base / "c.sock"),
            "KYB_CONTAINERD_NAMESPACE": f"kybu-{token}",
            "KYB_POD_BRIDGE": f"kybu{token}",
            "KYB_CLUSTER_CIDR": f"10.244.{secrets.choice(free)}.0/23",
            "KYB_NODE_NAME": f"kybu-{token}",
            # The host's root netns is shared with other tests: no KYB-* proxy chains, no proto-77 routes.
            "KYB_KUBELET_ARGS": "--no-proxy --no-pod-routes",
            # kybctl's credentials go here (not the developer's ~/.kyb/config); the folder does not exist yet.
            "KYB_KUBECONFIG": str(base / "home" / ".kyb" / "config"),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def script(path: Path, settings: dict[str, str], *, timeout: float = 400.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(path)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **settings})


_PROTOS: dict[str, str] = {}  # state dir -> the routing protocol number its up.sh picked


def traces(settings: dict[str, str]) -> dict[str, list[str]]:
    """Everything on the host that carries one of this cluster's names, ranges or directories."""
    namespace, bridge = settings["KYB_CONTAINERD_NAMESPACE"], settings["KYB_POD_BRIDGE"]
    state_dir = settings["KYB_LOCAL_DIR"]
    third = int(settings["KYB_CLUSTER_CIDR"].split(".")[2])
    pod_prefixes = (f"10.244.{third}.", f"10.244.{third + 1}.")  # the /23
    host_env = Path(state_dir) / "host.env"
    if host_env.exists():  # up.sh's routing protocol number (a free one, not always route_proto's): remembered
        _PROTOS[state_dir] = dict(line.split("=", 1) for line in host_env.read_text().splitlines()
                                  if "=" in line)["PROTO"]
    proto = _PROTOS.get(state_dir, str(route_proto(f"kyb-local-{bridge}")))
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if state_dir in cmdline or settings["KYB_CONTAINERD_ADDRESS"] in cmdline:
                    processes.append(f"{entry.name} {cmdline}")
    return {
        "netns": [n for n in run("ip", "netns", "list").split() if n.startswith(namespace + "-")],
        "links": [line for line in run("ip", "-o", "link").splitlines() if f" {bridge}:" in line
                  or f"master {bridge} " in line],
        "iptables": [line for line in run("iptables-save").splitlines() if bridge.upper() + "-FWD" in line],
        "routes": [r for r in run("ip", "-N", "-4", "route", "show", "table", "all").splitlines()
                   if any(p in r for p in pod_prefixes) or f"proto {proto} " in r + " "],
        "mounts": [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if state_dir in line or f"/{namespace}-" in line],
        "processes": processes,
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{namespace}")],
        "runc": [str(p) for p in Path("/run/containerd/runc").glob(namespace)],
        "uts": [str(p) for p in Path("/run/kybernetes/uts").glob(f"{namespace}-*")],
        "dir": [state_dir] if Path(state_dir).exists() else [],
    }


async def http_get(ip: str, port: int = 8080) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 3)
    try:
        writer.write(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        await writer.drain()
        response = (await asyncio.wait_for(reader.read(), 3)).decode(errors="replace")
    finally:
        writer.close()
    head, _, body = response.partition("\r\n\r\n")
    assert " 200 " in head.splitlines()[0], head
    return body.strip()


def pids(settings: dict[str, str]) -> dict[str, str]:
    run_dir = Path(settings["KYB_LOCAL_DIR"]) / "run"
    return {p.stem: p.read_text().strip() for p in run_dir.glob("*.pid")}


async def test_up_serves_the_sample_app_reuses_it_and_down_leaves_nothing():
    with local_settings() as settings:
        before = traces(settings)
        assert before == {key: [] for key in before}
        ip_forward = IP_FORWARD.read_text()
        server = f"127.0.0.1:{settings['KYB_MASTER_PORT']}"
        kubeconfig = Path(settings["KYB_KUBECONFIG"])
        try:
            first = script(UP, settings)
            assert first.returncode == 0, first.stdout + first.stderr
            # It says how to reach a pod, and that pod answers with its name and version.
            match = re.search(r"curl http://([0-9.]+):8080/", first.stdout)
            assert match, first.stdout
            assert re.fullmatch(r"hello from hello-[a-z0-9]+-[a-z0-9]+ version v1", await http_get(match[1]))
            assert "kybctl get nodes" in first.stdout and "export KYBCONFIG" not in first.stdout
            # kybctl's credentials file: the admin's, readable by root only, naming this master.
            assert kubeconfig.stat().st_mode & 0o777 == 0o600
            async with Client(kubeconfig=kubeconfig) as kyb:
                assert kyb.server == server
                pods = (await kyb.list("pods", namespace="default", label_selector="app=hello")).items
                assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
                for pod in pods:
                    assert await http_get(pod.status.pod_ip) == f"hello from {pod.metadata.name} version v1"
                nodes = (await kyb.list("nodes")).items
                assert [n.metadata.name for n in nodes] == [settings["KYB_NODE_NAME"]]
            during = traces(settings)
            assert during["netns"] and during["links"] and during["iptables"] and during["routes"]
            assert during["processes"] and during["mounts"]
            started = pids(settings)
            assert sorted(started) == ["containerd", "kubelet", "master", "registry"]

            # Again: everything is reused, nothing restarted, the same pods serve.
            second = script(UP, settings)
            assert second.returncode == 0, second.stdout + second.stderr
            for component in started:
                assert f"{component} already running (pid {started[component]})" in second.stderr
            assert pids(settings) == started
            async with Client(kubeconfig=kubeconfig) as kyb:
                async def same_pods() -> bool:
                    again = (await kyb.list("pods", namespace="default", label_selector="app=hello")).items
                    return sorted(p.metadata.name for p in again) == sorted(p.metadata.name for p in pods)

                await until(same_pods, timeout=5)
        finally:
            down = script(DOWN, settings, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        after = traces(settings)
        assert after == {key: [] for key in after}
        assert not kubeconfig.parent.exists(), "down.sh removes the credentials (and the folder) up.sh made"
        assert IP_FORWARD.read_text() == ip_forward
        # A second down finds nothing to do.
        assert script(DOWN, settings, timeout=60).returncode == 0
