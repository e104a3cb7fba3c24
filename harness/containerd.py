"""A private containerd for tests and benchmarks, and one test's slice of it (no mocks; root only).

* `start_containerd(base_dir)` / `stop_containerd(process)`: a containerd with its own root/state/opt dirs
  and socket under `base_dir` (a short /tmp path), CRI plugin off, stopped by pid; `destroy_daemon_dir`
  kills its shims by pid and removes the directory. `ContainerdDaemon` is such a daemon.
* `new_env(daemon, directory, pod_cidr=...)`: a `ContainerdEnv`, a unique containerd namespace
  `<prefix>-<hex>`, a unique bridge name, a pod /24 (see harness.host) and root and log dirs;
  `cleanup_namespace(env)` removes the namespace's containers, network namespaces, UTS namespaces, the
  bridge, runc dirs and cgroups.
* `RestartableContainerd`: an env on a containerd of its own, with `.stop()`/`.start()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.system import run_command, stop_pid

NETNS_DIR = Path("/var/run/netns")
UTS_DIR = Path("/run/kybernetes/uts")
CGROUP_ROOT = Path("/sys/fs/cgroup")
RUNC_ROOT = Path("/run/containerd/runc")
SHIM_SOCKET_DIR = Path("/run/containerd/s")


@dataclass
class ContainerdDaemon:
    """A private containerd process."""

    base_dir: Path
    address: str
    pid: int

    def ctr(self, *args: str, namespace: str = "default", timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_command(["ctr", "--connect-timeout", "2s", "-a", self.address, "-n", namespace, *args],
                             timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result


CONTAINERD_CONFIG = """version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/c.sock"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


def start_containerd(base_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start containerd with everything under base_dir; wait until `ctr version` answers."""
    address = str(base_dir / "c.sock")
    if len(address.encode()) >= 108:
        raise ValueError(f"containerd socket path {address} is too long for a unix socket")
    config = base_dir / "config.toml"
    config.write_text(CONTAINERD_CONFIG.format(base=base_dir))
    with open(base_dir / "containerd.log", "ab") as log_file:
        process = subprocess.Popen(["containerd", "--config", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=log_file, start_new_session=True)
    deadline = time.monotonic() + 20.0
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"containerd exited with {process.returncode}: "
                               f"{(base_dir / 'containerd.log').read_text()[-2000:]}")
        if run_command(["ctr", "--connect-timeout", "200ms", "-a", address, "version"], timeout=5).returncode == 0:
            return process, address
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("containerd did not answer within 20s")
        time.sleep(0.02)


def _shim_pids(address: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
            pids.append(int(entry.name))
    return pids


def _unmount_under(directory: Path) -> None:
    prefix = str(directory) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        targets = [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        run_command(["umount", "-l", target])


def stop_containerd(process: subprocess.Popen[bytes]) -> None:
    """Stop containerd by pid (SIGTERM, then SIGKILL after 5 s). Shims and containers keep running."""
    stop_pid(process.pid, grace=5.0)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def destroy_daemon_dir(base_dir: Path, address: str) -> None:
    """After `stop_containerd`: kill the daemon's shims (and so its containers) by pid, remove its directory."""
    for pid in _shim_pids(address):
        stop_pid(pid, grace=0.0)
    _unmount_under(base_dir)
    shutil.rmtree(base_dir, ignore_errors=True)


@dataclass
class ContainerdEnv:
    """One test's (or one benchmark Node's) slice of a private containerd: namespace, bridge, pod subnet, root dir."""

    daemon: ContainerdDaemon
    address: str
    namespace: str
    root_dir: Path
    log_dir: Path
    bridge: str
    pod_cidr: str

    def runtime_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `ContainerdRuntime(**env.runtime_kwargs(), ...)`."""
        return {"address": self.address, "namespace": self.namespace, "root_dir": self.root_dir,
                "bridge": self.bridge, "pod_cidr": self.pod_cidr}

    def ctr(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.ctr(*args, namespace=self.namespace, timeout=timeout, check=check)

    def import_image(self, tar: Path) -> None:
        """Import an OCI tar (built by deploy/images) into this test's namespace."""
        self.ctr("images", "import", str(tar), timeout=120)

    def netns_names(self) -> list[str]:
        if not NETNS_DIR.exists():
            return []
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(self.namespace + "-"))


def cleanup_namespace(env: ContainerdEnv) -> None:
    """Remove everything the namespace left on the host (containers, netns, bridge, runc dirs, cgroups)."""
    listing = env.ctr("containers", "ls", "-q", check=False)
    for container_id in listing.stdout.split():
        env.ctr("tasks", "rm", "-f", container_id, check=False)
        env.ctr("containers", "rm", container_id, check=False)
        socket_name = hashlib.sha256(f"{env.address}/{env.namespace}/{container_id}".encode()).hexdigest()
        (SHIM_SOCKET_DIR / socket_name).unlink(missing_ok=True)
    if UTS_DIR.exists():
        for path in UTS_DIR.iterdir():
            if path.name.startswith(env.namespace + "-"):
                run_command(["umount", str(path)])
                path.unlink(missing_ok=True)
    for name in env.netns_names():
        run_command(["ip", "netns", "del", name])
    if Path(f"/sys/class/net/{env.bridge}").exists():
        run_command(["ip", "link", "del", env.bridge])
    with contextlib.suppress(OSError):
        (RUNC_ROOT / env.namespace).rmdir()
    for parent in [*CGROUP_ROOT.glob(f"*/{env.namespace}"), CGROUP_ROOT / env.namespace]:
        if parent.is_dir():
            for child in sorted(parent.glob("**/"), key=lambda p: len(str(p)), reverse=True):
                with contextlib.suppress(OSError):
                    child.rmdir()


def new_env(daemon: ContainerdDaemon, directory: Path, *, pod_cidr: str, prefix: str = "kybt") -> ContainerdEnv:
    """A fresh slice of `daemon`: namespace `<prefix>-<hex>`, bridge `<prefix><hex>`, root and log dirs under
    `directory`, on `pod_cidr` (reserved by the caller, see harness.host)."""
    token = secrets.token_hex(4)
    env = ContainerdEnv(
        daemon=daemon,
        address=daemon.address,
        namespace=f"{prefix}-{token}",
        root_dir=directory / "kubelet",
        log_dir=directory / "logs",
        bridge=f"{prefix}{token[:6]}",
        pod_cidr=pod_cidr,
    )
    env.root_dir.mkdir(parents=True, exist_ok=True)
    env.log_dir.mkdir(parents=True, exist_ok=True)
    return env


@dataclass
class RestartableContainerd:
    """A containerd of the test's own (not the shared session one), to stop and start again."""

    env: ContainerdEnv
    process: subprocess.Popen[bytes] | None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM containerd (shims, containers and their logs keep going, as in a daemon upgrade)."""
        if self.process is not None:
            stop_containerd(self.process)
            self.process = None

    def start(self) -> None:
        """Start containerd again on the same dirs and socket."""
        if not self.running:
            self.process, _ = start_containerd(self.env.daemon.base_dir)
            self.env.daemon.pid = self.process.pid


__all__ = [
    "ContainerdDaemon",
    "ContainerdEnv",
    "RestartableContainerd",
    "cleanup_namespace",
    "destroy_daemon_dir",
    "new_env",
    "start_containerd",
    "stop_containerd",
]
