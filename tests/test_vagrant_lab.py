"""The Vagrant VM lab booted for real (deploy/vagrant/lab.sh): a master VM and 3 node VMs under libvirt.

One module-scoped lab (`vm_lab`): `lab.sh up` (box, wheelhouse, `vagrant up`), then the tests in file order:
all Nodes Ready on their private addresses, `vagrant validate` of both providers on fresh machine data, the
masters' etcd timing for the acceleration, the tutorial flow from the host (create, expose a NodePort, curl
every VM's NodePort, scale, set image, rollout undo), the master VM reaching pods and ClusterIPs, a node VM
powered off (its pods replaced on the others), and `vagrant destroy` leaving the host as it was.

Marked `vagrant` (and `slow`). It runs only where the machine can host four VMs: root, x86_64, at least
`MIN_MEMORY_GIB` of available memory and `MIN_DISK_GB` free for the box and the VM disks; elsewhere it skips,
naming the reason. With KYB_MASTERS=3 the same test runs with three master VMs (one etcd member each) and
also powers one of them off. It uses a lab of its own (KYB_VM_LAB=kybt, free subnets, its own lab dir and
Vagrant machine data), so a user's VM lab may run beside it. Its timings and the lab's peak host memory (the
sum of the QEMU, libvirtd and virtlogd RSS, sampled every 2 s) are printed at the end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.lab import count_is, http_get, is_ready, ready_pods, run
from harness.waiting import until
from kybernetes.ctl.client import Client

REPO = Path(__file__).resolve().parents[1]
LAB_SH = REPO / "deploy" / "vagrant" / "lab.sh"
NODES = 3
MASTERS = int(os.environ.get("KYB_MASTERS", "1"))
MASTER_NAMES = ["master", *(f"master{i}" for i in range(2, MASTERS + 1))]
NODE_NAMES = [f"node{n}" for n in range(1, NODES + 1)]
MIN_MEMORY_GIB = 8.0
# Free disk: the VMs' disks (the pool links the box, no copy); a box still to build and add needs more.
MIN_DISK_GB = 3.0
MIN_DISK_GB_TO_BUILD = 12.0
LAB_NAME = "kybt"
LAB_DIR = Path("/var/lib/kybernetes/vagrant-test")
UP_TIMEOUT = 3600.0
# The whole module (bring-up, tests, teardown) runs in one pytest-timeout window per test: generous.
pytestmark = pytest.mark.timeout(int(UP_TIMEOUT) + 1800)


def cannot_host() -> str:
    """Why this machine cannot host the VM lab, or "" when it can."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"the VM lab's box is Debian 12 for x86_64; this is {platform.system()} {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root (libvirt, VMs, iptables)"
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = int(meminfo["MemAvailable"].split()[0]) / 2**20
    if available < MIN_MEMORY_GIB:
        return f"{available:.1f} GiB of memory available, {MIN_MEMORY_GIB:g} GiB needed for 4 VMs"
    LAB_DIR.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(LAB_DIR.parent).free / 1e9
    boxes = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True, check=False).stdout \
        if shutil.which("vagrant") else ""
    need, what = ((MIN_DISK_GB, "the VM disks") if "kybernetes/debian12" in boxes
                  else (MIN_DISK_GB_TO_BUILD, "building the box and the VM disks"))
    if free < need:
        return f"{free:.1f} GB free under {LAB_DIR.parent}, {need:g} GB needed for {what}"
    return ""


def free_subnets(count: int) -> list[str]:
    """`count` 192.168.X prefixes that no address or route of this host uses."""
    used = run("ip", "-4", "-o", "addr", "show").stdout + run("ip", "-4", "route", "show", "table", "all").stdout
    taken = set()
    for word in used.split():
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(word, strict=False)
            if net.version == 4 and net.prefixlen >= 16:
                taken.add(str(net.network_address).rsplit(".", 1)[0])
    picks = [f"192.168.{x}" for x in range(200, 250) if f"192.168.{x}" not in taken]
    assert len(picks) >= count, "no free 192.168.X/24 for the test's networks"
    return picks[:count]


class MemorySampler(threading.Thread):
    """The peak of the lab's host memory: RSS of every qemu-system, libvirtd and virtlogd process."""

    NAMES = ("qemu-system-x86", "libvirtd", "virtlogd")

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_bytes = 0
        self.peak_vms = 0
        self._done = threading.Event()

    def sample(self) -> tuple[int, int]:
        total = vms = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                comm = (proc / "comm").read_text().strip()
                if not comm.startswith(self.NAMES):
                    continue
                rss = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                continue
            total += int(rss.split()[1]) * 1024
            vms += comm.startswith("qemu-system")
        return total, vms

    def run(self) -> None:
        while not self._done.wait(2.0):
            total, vms = self.sample()
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_vms = total, vms

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


@dataclass
class VmLab:
    """The test's VM lab: its settings, lab.sh, kybctl and a client on the host."""

    env: dict[str, str]
    subnet: str
    timings: dict[str, float] = field(default_factory=dict)

    def sh(self, *args: str, check: bool = True, timeout: float = 600.0,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run([str(LAB_SH), *args], env=self.env, input=stdin, capture_output=True, text=True,
                                timeout=timeout)
        # Progress for the reader of a failed test's captured output.
        print(f"$ lab.sh {' '.join(args)}  ({time.monotonic() - started:.0f}s, rc {result.returncode})")
        print(result.stdout[-20000:], result.stderr[-20000:], sep="\n")
        if check and result.returncode != 0:
            raise AssertionError(f"lab.sh {' '.join(args)} failed ({result.returncode}): {result.stderr[-3000:]}")
        return result

    def kybctl(self, *args: str, timeout: float = 120.0) -> str:
        return self.sh("kybctl", *args, timeout=timeout).stdout

    def ssh(self, vm: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sh("ssh", vm, command, check=check, timeout=120)

    def ip(self, vm: str) -> str:
        """Master i at SUBNET.(11-i) (`master` is .10), node N at SUBNET.(10+N)."""
        if vm.startswith("master"):
            return f"{self.subnet}.{11 - int(vm.removeprefix('master') or 1)}"
        return f"{self.subnet}.{10 + int(vm.removeprefix('node'))}"

    @property
    def registry(self) -> str:
        return f"{self.subnet}.10:5000"

    def client(self) -> Client:
        servers = ",".join(f"{self.ip(m)}:6443" for m in MASTER_NAMES)
        return Client(servers, kubeconfig=str(LAB_DIR / "admin.conf"), timeout=10.0)

    def timed(self, what: str, started: float) -> None:
        self.timings[what] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def vm_lab(request: pytest.FixtureRequest) -> Iterator[VmLab]:
    reason = cannot_host()
    if reason:
        pytest.skip(f"the VM lab cannot run on this machine: {reason}")
    subnet, mgmt = free_subnets(2)
    env = {**os.environ, "KYB_VAGRANT_DIR": str(LAB_DIR), "KYB_VM_LAB": LAB_NAME, "KYB_VM_SUBNET": subnet,
           "KYB_VM_MGMT_SUBNET": mgmt, "KYB_NODES": str(NODES), "KYB_MASTERS": str(MASTERS),
           "KYB_VAGRANT_DOTFILE": str(LAB_DIR / "dot-vagrant")}
    lab = VmLab(env=env, subnet=subnet)
    sampler = MemorySampler()
    sampler.start()
    started = time.monotonic()
    try:
        lab.sh("up", timeout=UP_TIMEOUT)
        lab.timed("lab.sh up", started)
        yield lab
    finally:
        down = time.monotonic()
        lab.sh("down", check=False, timeout=900)
        if "lab.sh down" not in lab.timings:  # the destroy test times the real one; this is then a no-op
            lab.timed("lab.sh down", down)
        sampler.stop()
        lab.timings["module"] = round(time.monotonic() - started, 1)
        summary = {"timings_s": lab.timings, "peak_lab_rss_gib": round(sampler.peak_bytes / 2**30, 2),
                   "vms_at_peak": sampler.peak_vms}
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"VM lab: {json.dumps(summary)}")
        with contextlib.suppress(OSError):
            (LAB_DIR.parent / "vagrant-test-last.json").write_text(json.dumps(summary, indent=1) + "\n")


async def test_all_nodes_ready_on_their_private_addresses(vm_lab: VmLab):
    started = time.monotonic()
    async with vm_lab.client() as kyb:
        async def ready() -> list:
            nodes = (await kyb.list("nodes")).items
            return nodes if len(nodes) == NODES and all(is_ready(n) for n in nodes) else []

        nodes = await until(ready, timeout=300, interval=2)
    vm_lab.timed("all Nodes Ready after up", started)
    # The kubelet's InternalIP is the private network's, never a NAT address (VirtualBox gives every VM
    # 10.0.2.15): logs and exec go through it.
    for node in nodes:
        internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
        assert internal == [vm_lab.ip(node.metadata.name)], (node.metadata.name, internal)


def test_the_vagrantfile_validates_for_both_providers_on_a_fresh_checkout(vm_lab: VmLab, tmp_path: Path):
    """`vagrant validate` before any VM made the join token or the masters' secrets (a fresh machine-data
    folder): libvirt as installed here; VirtualBox with its provider checks ignored (not installed here)."""
    for provider, extra in (("libvirt", []), ("virtualbox", ["--ignore-provider"])):
        env = {**os.environ, "VAGRANT_DEFAULT_PROVIDER": provider, "KYB_MASTERS": str(MASTERS),
               "VAGRANT_DOTFILE_PATH": str(tmp_path / provider)}
        result = subprocess.run(["vagrant", "validate", *extra], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, (provider, result.stdout[-2000:], result.stderr[-2000:])
        assert "validated successfully" in result.stdout, (provider, result.stdout[-2000:])


def _accel() -> str:
    """The acceleration the Vagrantfile picks (KYB_VM_ACCEL, else KVM when usable)."""
    chosen = os.environ.get("KYB_VM_ACCEL", "auto")
    if chosen != "auto":
        return chosen
    kvm = Path("/dev/kvm")
    usable = kvm.exists() and os.access(kvm, os.R_OK | os.W_OK)
    flags = {word for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
             for word in line.split(":", 1)[1].split()}
    return "kvm" if usable and flags & {"vmx", "svm"} else "tcg"


def test_every_master_runs_etcd_with_the_timing_for_its_acceleration(vm_lab: VmLab):
    """Under software emulation the masters' etcd keeps a 500 ms heartbeat and a 5 s election timeout (guests
    cannot keep 50 ms: three members kept changing leader); with KVM, ours (50 ms / 600 ms)."""
    heartbeat, election = ("500", "5000") if _accel() == "tcg" else ("50", "600")
    for master in MASTER_NAMES:
        command = vm_lab.ssh(master, "cat /proc/$(pgrep -x etcd)/cmdline | tr '\\0' ' '").stdout
        assert f"--heartbeat-interval {heartbeat} " in command, (master, command)
        assert f"--election-timeout {election} " in command, (master, command)


def test_nothing_in_the_lab_is_routed_off_this_machine(vm_lab: VmLab):
    """The lab's two libvirt networks forward nothing, and no VM has a default route: traffic from a VM, or from
    a pod (its node routes it), to any address off the VMs' networks fails on the VM and never leaves it.
    (`ip route get` asks the VM's routing table; it sends nothing.)"""
    for network in (f"{LAB_NAME}-lab", f"{LAB_NAME}-mgmt"):
        xml = run("virsh", "-c", "qemu:///system", "net-dumpxml", network).stdout
        assert "<network" in xml and "<forward" not in xml, (network, xml)
    for vm in [*MASTER_NAMES, *NODE_NAMES]:
        # (`|| true`: a guest without IPv6 has no IPv6 routes to show.)
        routes = vm_lab.ssh(vm, "ip -4 route show default; ip -6 route show default 2>/dev/null || true").stdout
        assert routes.strip() == "", (vm, routes)
        off_machine = vm_lab.ssh(vm, "ip route get 203.0.113.1", check=False)
        assert off_machine.returncode != 0 and "unreachable" in off_machine.stderr.lower(), (vm, off_machine)


async def test_tutorial_flow_from_the_host(vm_lab: VmLab):
    started = time.monotonic()
    image = f"{vm_lab.registry}/kyb/hello"
    vm_lab.kybctl("create", "deployment", "hello", f"--image={image}:v1", "--replicas=3", "--port=8080")
    async with vm_lab.client() as kyb:
        await until(lambda: count_is(ready_pods(kyb, "hello"), 3), timeout=600, interval=2)
        vm_lab.timed("3 replicas Ready", started)
        vm_lab.kybctl("expose", "deployment/hello", "--type=NodePort", "--port=8080")
        service = await kyb.get("services", "hello", namespace="default")
        node_port = service.spec.ports[0].node_port
        assert 30000 <= node_port <= 32767
        # From the host, every VM's NodePort answers (the masters' too: they program the Service rules).
        for vm in [*MASTER_NAMES, *NODE_NAMES]:
            body = await until(lambda vm=vm: _get(vm_lab.ip(vm), node_port), timeout=60, interval=1)
            assert body.startswith("hello from hello-") and body.endswith("version v1"), (vm, body)

        vm_lab.kybctl("scale", "deployment/hello", "--replicas=6")
        await until(lambda: count_is(ready_pods(kyb, "hello"), 6), timeout=600, interval=2)
        pods = await ready_pods(kyb, "hello")
        assert len({p.spec.node_name for p in pods}) == NODES
        vm_lab.timed("scaled to 6", started)

        vm_lab.kybctl("set", "image", "deployment/hello", f"hello={image}:v2")
        vm_lab.kybctl("rollout", "status", "deployment/hello", "--timeout=10m", timeout=660)
        await until(lambda: _all_say(vm_lab, node_port, "version v2"), timeout=120, interval=1)
        vm_lab.timed("rolled out v2", started)

        vm_lab.kybctl("rollout", "undo", "deployment/hello")
        vm_lab.kybctl("rollout", "status", "deployment/hello", "--timeout=10m", timeout=660)
        await until(lambda: _all_say(vm_lab, node_port, "version v1"), timeout=120, interval=1)
        vm_lab.timed("tutorial flow", started)


async def test_master_vm_reaches_pods_and_cluster_ips(vm_lab: VmLab):
    async with vm_lab.client() as kyb:
        pods = await ready_pods(kyb, "hello")
        service = await kyb.get("services", "hello", namespace="default")
    assert pods, "the tutorial's pods are gone"
    for target in (pods[0].status.pod_ip, service.spec.cluster_ip):
        result = vm_lab.ssh("master", f"curl -fsS --max-time 5 http://{target}:8080/")
        assert result.stdout.strip().startswith("hello from hello-"), (target, result.stdout)


async def test_powered_off_node_pods_are_replaced_on_the_others(vm_lab: VmLab):
    async with vm_lab.client() as kyb:
        before = await ready_pods(kyb, "hello")
        lost = {p.metadata.name for p in before if p.spec.node_name == "node2"}
        assert lost, "no pod ran on node2"
        started = time.monotonic()
        vm_lab.sh("kill-node", "2")

        async def replaced() -> bool:
            pods = await ready_pods(kyb, "hello")
            return (len(pods) == len(before) and all(p.spec.node_name != "node2" for p in pods)
                    and not {p.metadata.name for p in pods} & lost)

        await until(replaced, timeout=600, interval=2)
        vm_lab.timed("kill-node 2 -> replacements Ready", started)
        node2 = await kyb.get("nodes", "node2")
        assert not is_ready(node2)


if MASTERS > 1:
    async def test_a_powered_off_master_leaves_the_cluster_working(vm_lab: VmLab):
        """Several masters: one master VM powered off (not the first: it holds the registry), the others serve
        (the client and the kubelets move to them) and the control loops still act: scale up, pods Ready."""
        victim = MASTER_NAMES[-1]
        started = time.monotonic()
        vm_lab.sh("kill-node", victim)
        async with vm_lab.client() as kyb:
            pods = await ready_pods(kyb, "hello")
            vm_lab.kybctl("scale", "deployment/hello", f"--replicas={len(pods) + 2}")
            await until(lambda: count_is(ready_pods(kyb, "hello"), len(pods) + 2), timeout=600, interval=2)
        vm_lab.timed(f"{victim} off -> scaled up and Ready", started)


def test_destroy_leaves_the_host_as_it_was(vm_lab: VmLab):
    started = time.monotonic()
    vm_lab.sh("down", timeout=900)
    vm_lab.timed("lab.sh down", started)
    domains = run("virsh", "-c", "qemu:///system", "list", "--all", "--name", check=False).stdout
    assert f"{LAB_NAME}-" not in domains
    networks = run("virsh", "-c", "qemu:///system", "net-list", "--all", "--name", check=False).stdout
    assert f"{LAB_NAME}-lab" not in networks and f"{LAB_NAME}-mgmt" not in networks
    links = run("ip", "-o", "link", "show").stdout
    assert f"{LAB_NAME}vm0" not in links and f"{LAB_NAME}vm1" not in links
    assert not (LAB_DIR / "libvirtd.pid").exists() and not (LAB_DIR / "lab.env").exists()
    # No credentials of the lab stay on the host: the join token, the masters' server token and etcd CA key.
    dotfile = LAB_DIR / "dot-vagrant"
    assert not (dotfile / "kyb-join-token").exists() and not (dotfile / "kyb-master-secrets").exists()


async def _get(ip: str, port: int) -> str:
    return await http_get(ip, port=port, timeout=5.0)


async def _all_say(lab: VmLab, node_port: int, text: str) -> bool:
    """Every VM's NodePort answers, ten times each, only with `text` (a rollout has finished everywhere)."""
    for vm in [*MASTER_NAMES, *NODE_NAMES]:
        for _ in range(10):
            if not (await _get(lab.ip(vm), node_port)).endswith(text):
                return False
    return True
