"""Pod network plumbing: agent-owned network namespaces plus the CNI bridge plugin called directly.

Why not `ctr run --cni`: ctr hard-codes /etc/cni/net.d, only runs CNI DEL for non-detached runs and leaks
IP reservations otherwise. So the agent owns every piece (docs/containerd.md §6, docs/lab-network.md §5):

* `ip netns add <name>` (from the agent's own mount namespace, never under `ip netns exec`) + `lo up`;
* CNI ADD/DEL by executing /usr/lib/cni/bridge with the config on stdin. The bridge and the host-side
  veths land in the agent's network namespace, so a kubelet started under `nsenter --net=<node>` gets its
  bridge inside that node;
* one bridge per kubelet, the node's podCIDR as the host-local range, a per-kubelet host-local dataDir,
  ipMasq off (masquerading is the proxy's job), hairpin on, MTU of the default route's device;
* a persistent UTS namespace per pod (`unshare --uts=FILE hostname POD`) so containers see the pod name
  as their hostname, like Kubernetes.

All functions are async (subprocesses with timeouts) and raise NetworkError with the tool's message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

CNI_PLUGIN_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/var/run/netns")
UTS_DIR = Path("/run/kybernetes/uts")
CNI_NETWORK_NAME = "kyb-podnet"
CNI_IFNAME = "eth0"
DEFAULT_MTU = 1500
COMMAND_TIMEOUT = 30.0


class NetworkError(Exception):
    """A namespace or CNI operation failed."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


async def run_command(
    *argv: str,
    input_bytes: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> CommandResult:
    """Run a helper binary with a timeout; stdin is DEVNULL unless input is given."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input_bytes is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(input_bytes), timeout)
    except (TimeoutError, asyncio.CancelledError):
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return CommandResult(process.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


async def create_netns(name: str) -> str:
    """Create a named network namespace with `lo` up; return its path. An existing one is reused."""
    path = netns_path(name)
    if not Path(path).exists():
        result = await run_command("ip", "netns", "add", name)
        if result.returncode != 0 and "File exists" not in result.stderr:
            raise NetworkError(f"ip netns add {name}: {result.stderr.strip()}")
    # A fresh netns starts with lo DOWN; pods expect localhost to work.
    result = await run_command("ip", "-n", name, "link", "set", "lo", "up")
    if result.returncode != 0:
        raise NetworkError(f"ip -n {name} link set lo up: {result.stderr.strip()}")
    return path


async def delete_netns(name: str) -> None:
    """Delete a named network namespace; a missing one is fine."""
    if not Path(netns_path(name)).exists():
        return
    result = await run_command("ip", "netns", "del", name)
    if result.returncode != 0 and Path(netns_path(name)).exists():
        raise NetworkError(f"ip netns del {name}: {result.stderr.strip()}")


async def default_route_mtu() -> int:
    """MTU of the device carrying the default route in our netns, or 1500 without one."""
    route = await run_command("ip", "-j", "-4", "route", "show", "default")
    try:
        routes = json.loads(route.stdout or "[]")
        device = routes[0]["dev"] if routes else None
        if not device:
            return DEFAULT_MTU
        link = await run_command("ip", "-j", "link", "show", "dev", device)
        return int(json.loads(link.stdout)[0]["mtu"])
    except (ValueError, KeyError, IndexError, TypeError):
        return DEFAULT_MTU


def bridge_config(*, bridge: str, pod_cidr: str, data_dir: Path, mtu: int) -> dict[str, object]:
    """The CNI bridge + host-local config for one kubelet (docs/containerd.md §6)."""
    network = ipaddress.ip_network(pod_cidr, strict=False)
    gateway = str(next(network.hosts()))
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK_NAME,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "mtu": mtu,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": str(network), "gateway": gateway}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(data_dir),
        },
    }


async def _invoke_bridge(command: str, *, config: dict[str, object], container_id: str, netns: str) -> str:
    plugin = CNI_PLUGIN_DIR / str(config["type"])
    env = dict(os.environ)
    env.update({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": CNI_IFNAME,
        "CNI_PATH": str(CNI_PLUGIN_DIR),
    })
    try:
        result = await run_command(str(plugin), input_bytes=json.dumps(config).encode(), env=env)
    except FileNotFoundError as error:
        raise NetworkError(f"CNI plugin {plugin} is missing (apt-get install containernetworking-plugins)") from error
    if result.returncode != 0:
        message = result.stdout.strip() or result.stderr.strip()
        try:
            parsed = json.loads(message)
            message = f"{parsed.get('msg', '')} {parsed.get('details', '')}".strip()
        except ValueError:
            pass
        raise NetworkError(f"CNI {command} ({plugin.name}) for {container_id}: {message}")
    return result.stdout


async def cni_add(*, config: dict[str, object], container_id: str, netns: str) -> str:
    """Attach the netns to the bridge; return the pod IP (without prefix length)."""
    output = await _invoke_bridge("ADD", config=config, container_id=container_id, netns=netns)
    try:
        address = json.loads(output)["ips"][0]["address"]
    except (ValueError, KeyError, IndexError) as error:
        raise NetworkError(f"CNI ADD for {container_id}: no IP in result {output!r}") from error
    return str(ipaddress.ip_interface(address).ip)


async def cni_del(*, config: dict[str, object], container_id: str, netns: str) -> None:
    """Detach and release the IP. Safe to repeat; a vanished netns only releases the IP."""
    await _invoke_bridge("DEL", config=config, container_id=container_id,
                         netns=netns if Path(netns).exists() else "")


def uts_path(name: str) -> str:
    return str(UTS_DIR / name)


async def create_uts_namespace(name: str, *, hostname: str) -> str:
    """A persistent UTS namespace (bind-mounted at UTS_DIR/name) whose hostname is `hostname`."""
    path = Path(uts_path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and _is_mountpoint(path):
        return str(path)
    path.touch()
    result = await run_command("unshare", f"--uts={path}", "hostname", hostname)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise NetworkError(f"unshare --uts={path} hostname {hostname}: {result.stderr.strip()}")
    return str(path)


# The three steps of a fresh pod sandbox in one helper process: the kubelet forks once per pod instead of
# three times (a fork of a grown Python process costs more than the small binaries it starts).
_POD_NAMESPACES_SCRIPT = (
    'ip netns add "$1" && ip -n "$1" link set lo up && touch "$2" && unshare --uts="$2" hostname "$3"'
)


async def create_pod_namespaces(name: str, *, hostname: str) -> tuple[str, str]:
    """A network namespace with lo up and a UTS namespace named `hostname`: (netns path, UTS path).

    What already exists is reused (a sandbox re-created after a crash half-way); on failure nothing is
    cleaned up here: the caller's sandbox teardown removes whichever part was made.
    """
    netns, uts = netns_path(name), Path(uts_path(name))
    uts.parent.mkdir(parents=True, exist_ok=True)
    if Path(netns).exists() or uts.exists():
        await create_netns(name)
        return netns, await create_uts_namespace(name, hostname=hostname)
    result = await run_command("sh", "-c", _POD_NAMESPACES_SCRIPT, "sh", name, str(uts), hostname)
    if result.returncode != 0:
        raise NetworkError(f"namespaces for {name}: {result.stderr.strip() or f'exit code {result.returncode}'}")
    return netns, str(uts)


async def delete_uts_namespace(name: str) -> None:
    path = Path(uts_path(name))
    if _is_mountpoint(path):
        result = await run_command("umount", str(path))
        if result.returncode != 0 and _is_mountpoint(path):
            raise NetworkError(f"umount {path}: {result.stderr.strip()}")
    path.unlink(missing_ok=True)


def _is_mountpoint(path: Path) -> bool:
    """True when path is a mount point in our mount namespace (nsfs bind mounts included)."""
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            return any(line.split()[4] == target for line in mountinfo)
    except OSError:
        return False
