"""Real Nodes on a private containerd, and the plain-containerd floor they are compared with.

Network safety is the integration tests' (harness.host and harness.containerd, which they use too):
`guard_host_routes()` holds blackhole routes for 10.244.0.0/16 and 10.96.0.0/12 (and restores
ip_forward) for as long as a benchmark runs, pod subnets are /24s reserved in 10.244.200-254 under the
tests' cross-process lock, and every kubelet runs with --no-pod-routes --no-proxy in the host's network
namespace. Traffic only ever goes to loopback (the master) and to network namespaces made here.

* `PrivateContainerd`: a containerd of our own (own root/state/socket under a short /tmp path, CRI off);
  `stop()` also kills its shims by pid and removes its directory.
* `Slice`: one containerd namespace + bridge + root dir (a Node's share of the daemon), images imported.
* `RealNode`: a `kyb-kubelet` process on a slice (`KubeletProcess`, as in the tests).
* `Floor`: what a person would run by hand, without Kybernetes: per container `ip netns add` + `lo up` +
  the CNI bridge plugin's ADD + `ctr run -d --with-ns network:…` (or `ctr run -d --net-host`), all at once
  or with at most one start per core; the time is from the batch's start until each `ctr run -d` returns
  (the task is running by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.containerd import (
    ContainerdDaemon,
    ContainerdEnv,
    cleanup_namespace,
    destroy_daemon_dir,
    new_env,
    start_containerd,
    stop_containerd,
)
from harness.host import guard_host_routes, odd_pod_subnet, release_pod_subnet, reserve_pod_subnet
from harness.kubelet import KubeletProcess
from harness.master import JoinInfo
from harness.registry import build_test_images
from kybernetes.kubelet.runtime import network

BUSYBOX = "kyb/busybox:1"
HELLO_V1 = "kyb/hello:v1"
HELLO_V2 = "kyb/hello:v2"
# PID 1 that leaves at once on SIGTERM (a bare `sleep` as PID 1 ignores it and waits for the grace period).
SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
# For hostNetwork pods: the kubelet's `ctr c create ... --net-host -- IMAGE ID ARGS` drops the `--` when
# --net-host comes right before it, so an argument starting with "-" is taken for a flag (a kubelet bug,
# reported). A bare sleep has no such argument; it ignores SIGTERM, so deletions wait out the 1 s grace.
HOST_SLEEPER = ("sleep", "3600")


def sleeper(host_network: bool) -> tuple[str, ...]:
    return HOST_SLEEPER if host_network else SLEEPER
# The kubelet's defaults, except what touches the host's network namespace (shared with everything else).
SAFE_KUBELET_ARGS = ("--no-pod-routes", "--no-proxy", "--log-level", "info")


@contextlib.contextmanager
def host_guard() -> Iterator[None]:
    """Blackhole routes for the pod and service ranges while the block runs (shared with test runs)."""
    with guard_host_routes():
        yield


@contextlib.contextmanager
def pod_subnet(*, odd: bool = False) -> Iterator[str]:
    """A reserved /24 in 10.244.200-254 (odd third octet if asked: the upper half of a /23)."""
    cidr = odd_pod_subnet() if odd else reserve_pod_subnet()
    try:
        yield cidr
    finally:
        release_pod_subnet(cidr)


def build_images(directory: Path) -> dict[str, Path]:
    """deploy/images/build.sh into directory: {image name: OCI tar}."""
    directory.mkdir(parents=True, exist_ok=True)
    return build_test_images(directory)


class PrivateContainerd:
    """A containerd daemon of the benchmark's own."""

    def __init__(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="kybb-", dir="/tmp"))
        self.process: subprocess.Popen[bytes] | None = None
        self.daemon: ContainerdDaemon | None = None

    def start(self) -> ContainerdDaemon:
        self.process, address = start_containerd(self.base_dir)
        self.daemon = ContainerdDaemon(base_dir=self.base_dir, address=address, pid=self.process.pid)
        return self.daemon

    def __enter__(self) -> PrivateContainerd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the daemon, kill its shims (and so its containers) by pid, remove its directory."""
        if not self.base_dir.exists():
            return
        if self.process is not None:
            stop_containerd(self.process)
            self.process = None
        destroy_daemon_dir(self.base_dir, str(self.base_dir / "c.sock"))


def new_slice(daemon: ContainerdDaemon, root: Path, *, pod_cidr: str, images: dict[str, Path],
              import_images: Sequence[str] = (BUSYBOX, HELLO_V1, HELLO_V2)) -> ContainerdEnv:
    """A fresh containerd namespace, bridge name and root dir, with the images imported."""
    env = new_env(daemon, root, pod_cidr=pod_cidr, prefix="kybb")
    for image in import_images:
        env.import_image(images[image])
    return env


class RealNode:
    """A real kubelet on a containerd slice."""

    def __init__(self, *, master: JoinInfo, env: ContainerdEnv, name: str, log_dir: Path,
                 extra_args: Sequence[str] = ()) -> None:
        self.env = env
        self.name = name
        self.kubelet = KubeletProcess(master=master, node_name=name, root_dir=env.root_dir,
                                      log_path=log_dir / f"kubelet-{name}.log", containerd=env,
                                      extra_args=[*SAFE_KUBELET_ARGS, *extra_args])

    async def start(self) -> None:
        await self.kubelet.start(timeout=60)

    @property
    def pid(self) -> int:
        assert self.kubelet.proc is not None
        return self.kubelet.proc.pid

    async def stop(self) -> None:
        await self.kubelet.stop()

    def cleanup(self) -> None:
        """Remove every container, namespace and the bridge this Node's slice left (also after SIGKILL)."""
        cleanup_namespace(self.env)


def task_pids(env: ContainerdEnv) -> dict[str, int]:
    """Running tasks of a slice: {container id: host pid}."""
    out: dict[str, int] = {}
    for line in env.ctr("tasks", "ls").stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "RUNNING":
            out[parts[0]] = int(parts[1])
    return out


# ----------------------------------------------------------------------------- containerd events


def _event_time(date: str, clock: str) -> float:
    """ctr events' "2026-11-28 03:16:11.022634335" (UTC) as epoch seconds."""
    whole, _, fraction = clock.partition(".")
    moment = dt.datetime.fromisoformat(f"{date}T{whole}+00:00")
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


@dataclass
class ContainerdEvents:
    """`ctr events` for one namespace, recorded as (epoch time, topic, payload)."""

    env: ContainerdEnv
    seen: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "ctr", "--address", self.env.address, "events", f'namespace=={self.env.namespace}',
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self._task = asyncio.create_task(self._read())
        await asyncio.sleep(0.2)  # the subscription is in place

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            parts = raw.decode(errors="replace").rstrip("\n").split(" ", 6)
            if len(parts) < 7:
                continue
            with contextlib.suppress(ValueError):
                self.seen.append((_event_time(parts[0], parts[1]), parts[5], json.loads(parts[6])))

    def first(self, topic: str, *, after: float = 0.0, key: str = "", value: str = "") -> float | None:
        for moment, seen_topic, payload in self.seen:
            if seen_topic == topic and moment >= after and (not key or str(payload.get(key, "")).startswith(value)):
                return moment
        return None

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# ----------------------------------------------------------------------------- the floor


@dataclass
class FloorBatch:
    """One batch of plain containers: each one's start latency from the batch start, and the makespan."""

    latencies: list[float]
    makespan: float


class Floor:
    """Plain containerd + CNI, no Kybernetes, on a slice and bridge of its own."""

    def __init__(self, env: ContainerdEnv, *, pod_cidr: str, workdir: Path, image: str = BUSYBOX) -> None:
        self.env = env
        self.image = image
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.config = network.bridge_config(bridge=env.bridge, pod_cidr=pod_cidr, data_dir=workdir / "ipam",
                                            mtu=network.DEFAULT_MTU)
        self.started: list[tuple[str, bool]] = []  # (id, has a netns)
        self._count = 0
        # What the kubelet gives every container by default (docs/containerd.md §12): the floor runs it too.
        self.security = ("--seccomp",)

    async def _ctr(self, *args: str) -> None:
        result = await network.run_command("ctr", "--connect-timeout", "2s", "--address", self.env.address,
                                           "--namespace", self.env.namespace, *args, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])}: {result.stderr.strip()[-300:]}")

    async def _one(self, *, host_network: bool) -> None:
        self._count += 1
        cid = f"floor-{self._count}"
        log = f"file://{self.logs / (cid + '.log')}"
        if host_network:
            self.started.append((cid, False))
            await self._ctr("run", "-d", *self.security, "--net-host", "--log-uri", log, self.image, cid,
                            *HOST_SLEEPER)
            return
        netns = f"{self.env.namespace}-{cid}"
        self.started.append((cid, True))
        path = await network.create_netns(netns)
        await network.cni_add(config=self.config, container_id=netns, netns=path)
        await self._ctr("run", "-d", *self.security, "--with-ns", f"network:{path}", "--log-uri", log, self.image,
                        cid, *SLEEPER)

    async def batch(self, count: int, *, concurrency: int | None, host_network: bool) -> FloorBatch:
        """Start `count` containers at once (at most `concurrency` in flight when given)."""
        slots = asyncio.Semaphore(concurrency or count)
        began = time.monotonic()
        latencies: list[float] = []

        async def start() -> None:
            async with slots:
                await self._one(host_network=host_network)
            latencies.append(time.monotonic() - began)

        await asyncio.gather(*(start() for _ in range(count)))
        return FloorBatch(latencies=latencies, makespan=max(latencies) if latencies else 0.0)

    async def clear(self) -> None:
        """Remove every floor container: CNI DEL first (while the netns exists), then the task, container, netns."""
        slots = asyncio.Semaphore(os.cpu_count() or 2)

        async def remove(cid: str, has_netns: bool) -> None:
            async with slots:
                netns = f"{self.env.namespace}-{cid}"
                if has_netns:
                    with contextlib.suppress(network.NetworkError):
                        await network.cni_del(config=self.config, container_id=netns, netns=network.netns_path(netns))
                with contextlib.suppress(RuntimeError):
                    await self._ctr("tasks", "rm", "-f", cid)
                with contextlib.suppress(RuntimeError):
                    await self._ctr("containers", "rm", cid)
                if has_netns:
                    with contextlib.suppress(network.NetworkError):
                        await network.delete_netns(netns)

        await asyncio.gather(*(remove(cid, has) for cid, has in self.started))
        self.started.clear()
