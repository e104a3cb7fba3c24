"""`Runtime` on containerd 1.6 through the `ctr` CLI (asyncio subprocesses), per docs/containerd.md.

Rules every call follows: `--connect-timeout 2s` (a missing socket otherwise costs 10 s), stdin DEVNULL,
a timeout, and error text taken from ctr's `ctr: ...` stderr line. Expensive calls (run, task and
container removal, pull, CNI) share a semaphore of CALLS_PER_CORE (4) × the core count, all other calls
one twice that size: starts are CPU-bound, so more parallelism only adds latency (docs/containerd.md §2).

State: containerd itself is the source of truth for containers (labels carry the pod identity, see
`base.LABEL_*`); the runtime adds two small JSON stores under `root_dir`, written atomically:
  sandboxes/<id>.json   the sandbox's config, netns, IP and the exact CNI config used for ADD (DEL needs it)
  sandboxes/<id>/etc/   hosts, hostname, resolv.conf bind-mounted read-only into the pod's containers
  containers/<id>.json  the start time (containerd does not keep one)
so a new instance with the same root dir rediscovers everything (`list_sandboxes`, `list_containers`).

Containers: one `ctr run -d --log-uri file://...` creates the container and starts its task (always `--`
before the image, docs/containerd.md §4); never `ctr run --cni`. Pod containers join the sandbox's netns
and UTS namespace with `--with-ns`; hostNetwork containers use `--net-host`. A stopped task is kept until
`remove_container`, so its exit status (`ctr shim state`) and cgroup OOM counter stay readable. Exits
stream from `ctr events`, filtered to the main process (event id == container id), restarted with
backoff and reconciled against `ctr t ls` on every (re)connect and periodically, since the stream neither
replays nor survives a daemon restart.

Exec: `ctr t exec --exec-id UUID`. ctr 1.6 never delivers EOF to the process when its own stdin ends
before the shim opened the stdin FIFO, so the stdin pipe is only closed after data went through or,
without data, once output arrived or a short delay passed. On timeout ctr gets SIGTERM (it forwards it),
then the exec is SIGKILLed through `ctr t kill --exec-id`.

One module per behaviour:
  ctr.py         running `ctr`: the call wrapper, concurrency slots, error text,    CtrCalls (their base)
                 containerd-down detection
  state.py       the JSON files under root_dir
  images.py      presence (cached), pulls, entrypoints                               ImagesMixin
  sandboxes.py   namespaces, CNI, /etc files                                         SandboxesMixin
  containers.py  run, stop, remove, status, container_info                           ContainersMixin
  exits.py       the event stream, its reconcile, OOM detection                      ExitsMixin
  exec.py        `ctr t exec` sessions                                               ExecMixin, ContainerdExecSession
and `ContainerdRuntime` below composes them, sets all their state in one `__init__`, and answers `version`.

Mixins rather than helper classes: the behaviours share one set of state and call each other in both
directions (tearing a sandbox down removes its containers; starting a container reads its sandbox's record
and its image's entrypoint; exit detection reads shim states and container records, and a container's
status asks exit detection whether it was OOM-killed). As mixins of one object, every method kept its body
and `self` when it moved, and the runtime stays one class rather than a facade forwarding twenty methods to
helpers wired to each other. Each mixin derives from `ctr.CtrCalls`, declares the state it uses as class
annotations, and names what it borrows from its siblings in an `if TYPE_CHECKING:` block, so the
dependencies are written down and type-checked.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kybernetes.kubelet.runtime.containerd.containers import (
    CPU_PERIOD_US,
    MAX_ID_LENGTH,
    MIN_CPU_QUOTA_US,
    SHIM_SOCKET_DIR,
    ContainersMixin,
    wait_pid_exit,
)
from kybernetes.kubelet.runtime.containerd.ctr import (
    CALL_TIMEOUT,
    CALLS_PER_CORE,
    CONNECT_TIMEOUT,
    CtrCalls,
    CtrError,
    CtrResult,
    ctr_message,
    id_part,
    parse_timestamp,
)
from kybernetes.kubelet.runtime.containerd.exec import EXEC_STDIN_CLOSE_DELAY, ContainerdExecSession, ExecMixin
from kybernetes.kubelet.runtime.containerd.exits import (
    CGROUP_ROOT,
    EXIT_RECONCILE_INTERVAL,
    ExitsMixin,
    cgroup_oom_kills,
)
from kybernetes.kubelet.runtime.containerd.images import (
    IMAGE_PRESENT_TTL,
    PULL_TIMEOUT,
    ImagesMixin,
    normalize_image_reference,
    registry_host,
)
from kybernetes.kubelet.runtime.containerd.sandboxes import SandboxesMixin, sandbox_id_for

__all__ = [
    "CALLS_PER_CORE",
    "CALL_TIMEOUT",
    "CGROUP_ROOT",
    "CONNECT_TIMEOUT",
    "CPU_PERIOD_US",
    "EXEC_STDIN_CLOSE_DELAY",
    "EXIT_RECONCILE_INTERVAL",
    "IMAGE_PRESENT_TTL",
    "MAX_ID_LENGTH",
    "MIN_CPU_QUOTA_US",
    "PULL_TIMEOUT",
    "SHIM_SOCKET_DIR",
    "ContainerdExecSession",
    "ContainerdRuntime",
    "CtrCalls",
    "CtrError",
    "CtrResult",
    "cgroup_oom_kills",
    "ctr_message",
    "id_part",
    "normalize_image_reference",
    "parse_timestamp",
    "registry_host",
    "sandbox_id_for",
    "wait_pid_exit",
]


class ContainerdRuntime(ImagesMixin, SandboxesMixin, ContainersMixin, ExitsMixin, ExecMixin):
    """The containerd implementation of `kubelet.runtime.base.Runtime` (see the package docstring)."""

    def __init__(
        self,
        *,
        address: str,
        namespace: str,
        root_dir: Path,
        bridge: str,
        pod_cidr: str | None,
        insecure_registries: Sequence[str] = (),
        ctr_binary: str = "ctr",
        concurrency: int | None = None,
        call_timeout: float = CALL_TIMEOUT,
        pull_timeout: float = PULL_TIMEOUT,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", namespace):
            raise ValueError(f"namespace: {namespace!r} is not a valid containerd namespace")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", bridge):
            raise ValueError(f"bridge: {bridge!r} must be 1-15 characters of [A-Za-z0-9_.-] (a link name)")
        self.address = address
        self.namespace = namespace
        self.root_dir = Path(root_dir)
        self.bridge = bridge
        self.insecure_registries = frozenset(insecure_registries)
        self._ctr_binary = ctr_binary
        self._call_timeout = call_timeout
        self._pull_timeout = pull_timeout
        # Heavy calls (CNI ADD/DEL, run, rm, pull) in flight at once. One per core leaves the cores idle while
        # each call waits on containerd and runc; a few per core keep them busy without a fork storm when
        # a hundred pods arrive together.
        concurrency = concurrency or CALLS_PER_CORE * (os.cpu_count() or 2)
        self._slots = asyncio.Semaphore(concurrency)
        self._read_slots = asyncio.Semaphore(2 * concurrency)
        self._pod_cidr: str | None = None
        self.set_pod_cidr(pod_cidr)
        self._mtu: int | None = None
        self._sandbox_locks: dict[str, asyncio.Lock] = {}
        self._pull_locks: dict[str, asyncio.Lock] = {}
        self._known_ids: set[str] | None = None
        self._next_index: dict[str, int] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._entrypoints: dict[str, list[str]] = {}
        # Images seen present: {name: (monotonic time, the name that matched)}, trusted for
        # IMAGE_PRESENT_TTL so that a batch of pods with one image costs one `ctr images ls`.
        self._present: dict[str, tuple[float, str]] = {}
        self._lookups: dict[tuple[str, ...], asyncio.Task[str | None]] = {}
        self._final_states: dict[str, dict[str, Any]] = {}
        self._oom_seen: set[str] = set()
        for directory in (self._sandbox_dir, self._container_dir, self._ipam_dir):
            directory.mkdir(parents=True, exist_ok=True)

    async def version(self) -> str:
        """`containerd://<server version>`."""
        result = await self._ctr("version")
        server = result.stdout.split("Server:", 1)[-1]
        match = re.search(r"Version:\s*(\S+)", server)
        return f"containerd://{match.group(1) if match else 'unknown'}"
