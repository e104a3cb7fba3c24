"""`Runtime` on containerd 1.6 through the `ctr` CLI (asyncio subprocesses), per docs/containerd.md.

Rules every call follows: `--connect-timeout 2s` (a missing socket otherwise costs 10 s), stdin DEVNULL,
a timeout, and error text taken from ctr's `ctr: ...` stderr line. Expensive calls (create, start,
remove, pull, CNI) share a semaphore sized to the core count: starts are CPU-bound, so more parallelism
only adds latency (docs/containerd.md §2).

State: containerd itself is the source of truth for containers (labels carry the pod identity, see
`base.LABEL_*`); the runtime adds two small JSON stores under `root_dir`, written atomically:
  sandboxes/<id>.json   the sandbox's config, netns, IP and the exact CNI config used for ADD (DEL needs it)
  sandboxes/<id>/etc/   hosts, hostname, resolv.conf bind-mounted read-only into the pod's containers
  containers/<id>.json  the start time (containerd does not keep one)
so a new instance with the same root dir rediscovers everything (`list_sandboxes`, `list_containers`).

Containers: `ctr c create` (always `--` before the image) + `ctr t start -d --log-uri file://...`; never
`ctr run --cni`. Pod containers join the sandbox's netns and UTS namespace with `--with-ns`; hostNetwork
containers use `--net-host`. A stopped task is kept until `remove_container`, so its exit status
(`ctr shim state`) and cgroup OOM counter stay readable. Exits stream from `ctr events`, filtered to the
main process (event id == container id), restarted with backoff and reconciled against `ctr t ls`
on every (re)connect and periodically, since the stream neither replays nor survives a daemon restart.

Exec: `ctr t exec --exec-id UUID`. ctr 1.6 never delivers EOF to the process when its own stdin ends
before the shim opened the stdin FIFO, so the stdin pipe is only closed after data went through or,
without data, once output arrived or a short delay passed. On timeout ctr gets SIGTERM (it forwards it),
then the exec is SIGKILLed through `ctr t kill --exec-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from kubelet.runtime import network
from kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_MANAGED,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_SANDBOX_ID,
    PULL_POLICIES,
    ContainerConfig,
    ContainerExit,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerStartError,
    ContainerState,
    ExecChunk,
    ExecError,
    ExecResult,
    ImageNeverPulled,
    ImagePullError,
    RuntimeUnavailableError,
    Sandbox,
    SandboxConfig,
    SandboxError,
)

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = "2s"
CALL_TIMEOUT = 30.0
PULL_TIMEOUT = 300.0
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000
MAX_ID_LENGTH = 64
CALLS_PER_CORE = 4
IMAGE_PRESENT_TTL = 2.0  # seconds an image seen present is trusted without asking containerd again
EXIT_RECONCILE_INTERVAL = 10.0
EXEC_STDIN_CLOSE_DELAY = 0.5
SHIM_SOCKET_DIR = Path("/run/containerd/s")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNAVAILABLE_MARKERS = ("code = Unavailable", "transport is closing")
_SHIM_STATUS: dict[int, ContainerState] = {1: "created", 2: "running", 3: "exited", 4: "running"}
_TASK_STATUS: dict[str, ContainerState] = {
    "CREATED": "created", "RUNNING": "running", "STOPPED": "exited", "PAUSED": "running", "PAUSING": "running",
}
_ID_UNSAFE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class CtrResult:
    returncode: int
    stdout: str
    stderr: str


class CtrError(ContainerRuntimeError):
    """A ctr call failed; `message` is ctr's own error text."""

    def __init__(self, command: Sequence[str], result: CtrResult) -> None:
        self.command = list(command)
        self.result = result
        self.message = ctr_message(result.stderr) or result.stdout.strip()[-500:] or f"rc {result.returncode}"
        super().__init__(f"ctr {' '.join(self.command[:3])}: {self.message}")

    @property
    def not_found(self) -> bool:
        return "not found" in self.message


def ctr_message(stderr: str) -> str:
    """ctr's error line without its `ctr: ` prefix (the last one if there are several)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ctr: "):
            return line[len("ctr: "):]
    return lines[-1] if lines else ""


def id_part(text: str, *, limit: int) -> str:
    """A piece of a containerd id: lowercase alphanumerics joined by single dashes."""
    part = _ID_UNSAFE.sub("-", text.lower()).strip("-")[:limit].strip("-")
    return part or "x"


def sandbox_id_for(config: SandboxConfig) -> str:
    """`<pod name>-<hash of uid>`: readable, and distinct for two pods with the same name."""
    digest = hashlib.sha256(config.pod_uid.encode()).hexdigest()[:10]
    return f"{id_part(config.name, limit=24)}-{digest}"


def parse_timestamp(text: str | None) -> float | None:
    """containerd's RFC 3339 times (nanoseconds, `Z`) as epoch seconds; the zero time is None."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    from datetime import datetime

    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def _atomic_write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1, sort_keys=True))
    temporary.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _process_start_time(pid: int) -> float | None:
    """Start time of a live process, from /proc (clock ticks since boot + boot time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        boot_time = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                         if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot_time + ticks / os.sysconf("SC_CLK_TCK")


def cgroup_oom_kills(cgroups_path: str) -> int:
    """The kernel's OOM-kill counter of a container cgroup (v1 memory.oom_control or v2 memory.events)."""
    relative = cgroups_path.lstrip("/")
    for path in (CGROUP_ROOT / "memory" / relative / "memory.oom_control",
                 CGROUP_ROOT / relative / "memory.events"):
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return 0


async def wait_pid_exit(pid: int, timeout: float) -> bool:
    """Wait (without polling) until a process that is not our child exits, via a pidfd."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    loop.add_reader(descriptor, lambda: exited.done() or exited.set_result(None))
    try:
        await asyncio.wait_for(exited, max(timeout, 0.0))
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(descriptor)
        os.close(descriptor)


def normalize_image_reference(image: str) -> str:
    """Docker-style normalization for pulling: add docker.io[/library] and :latest where missing."""
    name, at, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + (at + digest if at else "")


def registry_host(reference: str) -> str:
    return normalize_image_reference(reference).split("/", 1)[0]


def _start_failure_reason(message: str) -> str:
    """Kubernetes' waiting reason for a container that `ctr run` could not create or start."""
    if "executable file not found" in message or "no such file or directory" in message:
        return "ExecutableNotFound"
    if "failed to create shim task" in message or "OCI runtime" in message:
        return "StartError"
    return "CreateContainerError"


class ContainerdRuntime:
    """The containerd implementation of `kubelet.runtime.base.Runtime` (see the module docstring)."""

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

    # ----------------------------------------------------------------- plumbing

    @property
    def pod_cidr(self) -> str | None:
        return self._pod_cidr

    def set_pod_cidr(self, cidr: str | None) -> None:
        """Set the node's pod range (the master assigns it after registration). New sandboxes use it."""
        if cidr is not None:
            try:
                network_ = ipaddress.ip_network(cidr, strict=True)
            except ValueError as error:
                raise ValueError(f"pod_cidr: {cidr!r} is not a network in CIDR notation ({error})") from error
            if network_.version != 4 or network_.prefixlen > 30:
                raise ValueError(f"pod_cidr: {cidr!r} must be an IPv4 network of /30 or larger")
            cidr = str(network_)
        self._pod_cidr = cidr

    @property
    def _sandbox_dir(self) -> Path:
        return self.root_dir / "sandboxes"

    @property
    def _container_dir(self) -> Path:
        return self.root_dir / "containers"

    @property
    def _ipam_dir(self) -> Path:
        return self.root_dir / "cni" / "ipam"

    def _ctr_argv(self, *args: str) -> list[str]:
        return [self._ctr_binary, "--connect-timeout", CONNECT_TIMEOUT, "--address", self.address,
                "--namespace", self.namespace, *args]

    async def _ctr(
        self,
        *args: str,
        timeout: float | None = None,
        expensive: bool = False,
        check: bool = True,
    ) -> CtrResult:
        """One ctr call: DEVNULL stdin, a timeout, errors as CtrError / RuntimeUnavailableError."""
        slots = self._slots if expensive else self._read_slots
        async with slots:
            argv = self._ctr_argv(*args)
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                stdout, stderr = await asyncio.wait_for(process.communicate(), timeout or self._call_timeout)
            except (TimeoutError, asyncio.CancelledError) as error:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                if isinstance(error, TimeoutError):
                    raise ContainerRuntimeError(
                        f"ctr {' '.join(args[:3])}: no answer within {timeout or self._call_timeout:.0f}s"
                    ) from None
                raise
        result = CtrResult(process.returncode or 0, stdout.decode(errors="replace"),
                           stderr.decode(errors="replace"))
        if result.returncode != 0:
            message = ctr_message(result.stderr)
            unavailable = (message.startswith("failed to dial") or self.address in message
                           or any(marker in message for marker in _UNAVAILABLE_MARKERS))
            if unavailable and args[:1] != ("shim",):
                raise RuntimeUnavailableError(f"containerd at {self.address} is unavailable: {message}")
            if check:
                raise CtrError(args, result)
        return result

    # ----------------------------------------------------------------- version and images

    async def version(self) -> str:
        """`containerd://<server version>`."""
        result = await self._ctr("version")
        server = result.stdout.split("Server:", 1)[-1]
        match = re.search(r"Version:\s*(\S+)", server)
        return f"containerd://{match.group(1) if match else 'unknown'}"

    async def _find_image(self, names: Sequence[str], *, cached: bool = True) -> str | None:
        """The first of `names` that containerd holds, or None.

        A name seen present within IMAGE_PRESENT_TTL is trusted, and concurrent lookups of the same names
        share one `ctr images ls`. An image removed behind our back in that window fails the container's
        start ("not found"), which forgets it (`forget_image`), so the retry looks again.
        """
        key = tuple(dict.fromkeys(names))
        now = time.monotonic()
        if cached:
            for name in key:
                seen = self._present.get(name)
                if seen is not None and now - seen[0] < IMAGE_PRESENT_TTL:
                    return seen[1]
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.create_task(self._images_ls(key))
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda done, key=key: self._lookup_done(key, done))
        return await asyncio.shield(lookup)

    async def _images_ls(self, names: tuple[str, ...]) -> str | None:
        result = await self._ctr("images", "ls", "-q", *(f"name=={name}" for name in names))
        present = result.stdout.split()
        found = next((name for name in names if name in present), None)
        if found is not None:
            for name in names:
                self._present[name] = (time.monotonic(), found)
        return found

    def _lookup_done(self, key: tuple[str, ...], done: asyncio.Task[str | None]) -> None:
        self._lookups.pop(key, None)
        if not done.cancelled():
            done.exception()  # every waiter may have been cancelled: never "exception was never retrieved"

    def forget_image(self, image: str) -> None:
        """Drop what we believe about `image` (after containerd said it is not found)."""
        for name in (image, normalize_image_reference(image)):
            self._present.pop(name, None)
            self._entrypoints.pop(name, None)

    async def ensure_image(self, image: str, *, pull_policy: str) -> str:
        """Make `image` present per the policy (Always | IfNotPresent | Never); return the ref to use.

        Names are looked up as given (e.g. `kyb/hello:v1` from an import) and docker-normalized
        (`docker.io/library/...:latest`); pulls use the normalized reference, `--plain-http` for the
        registries given as insecure.
        """
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"pull_policy: {pull_policy!r} must be one of {', '.join(PULL_POLICIES)}")
        if not image or any(character.isspace() for character in image):
            raise ImagePullError(f"image: {image!r} is not a valid image reference")
        reference = normalize_image_reference(image)
        if pull_policy != "Always":
            present = await self._find_image([image, reference])
            if present:
                return present
            if pull_policy == "Never":
                raise ImageNeverPulled(f"image {image!r} is not present and the pull policy is Never")
        lock = self._pull_locks.setdefault(reference, asyncio.Lock())
        async with lock:
            if pull_policy != "Always":
                present = await self._find_image([image, reference], cached=False)
                if present:
                    return present
            await self._pull(reference)
        return reference

    async def _pull(self, reference: str) -> None:
        flags = ["--plain-http"] if registry_host(reference) in self.insecure_registries else []
        try:
            await self._ctr("images", "pull", *flags, reference, timeout=self._pull_timeout, expensive=True)
        except CtrError as error:
            raise ImagePullError(f"pulling {reference}: {error.message}") from error
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as error:
            raise ImagePullError(f"pulling {reference}: {error}") from error
        self._entrypoints.pop(reference, None)
        self._present[reference] = (time.monotonic(), reference)

    async def _content_json(self, digest: str) -> dict[str, Any]:
        result = await self._ctr("content", "get", digest)
        return json.loads(result.stdout)

    async def _image_entrypoint(self, image: str) -> list[str]:
        """The image config's Entrypoint (needed when only args are given: ctr args replace both)."""
        if image in self._entrypoints:
            return self._entrypoints[image]
        result = await self._ctr("images", "ls", f"name=={image}")
        rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
        if not rows:
            raise ContainerStartError("CreateContainerError", f"image {image!r} is not present")
        document = await self._content_json(rows[0][2])
        if "manifests" in document:
            architecture = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
            manifests = document["manifests"]
            chosen = next((m for m in manifests if m.get("platform", {}).get("os") == "linux"
                           and m.get("platform", {}).get("architecture") == architecture), manifests[0])
            document = await self._content_json(chosen["digest"])
        config = await self._content_json(document["config"]["digest"])
        entrypoint = list((config.get("config") or {}).get("Entrypoint") or [])
        self._entrypoints[image] = entrypoint
        return entrypoint

    # ----------------------------------------------------------------- sandboxes

    def _sandbox_record_path(self, sandbox_id: str) -> Path:
        return self._sandbox_dir / f"{sandbox_id}.json"

    def _load_sandbox_record(self, sandbox_id: str) -> dict[str, Any] | None:
        record = _read_json(self._sandbox_record_path(sandbox_id))
        return record if isinstance(record, dict) else None

    @staticmethod
    def _sandbox_from_record(record: dict[str, Any]) -> Sandbox:
        config = SandboxConfig(**record["config"])
        netns = record.get("netns_path")
        ready = config.host_network or bool(netns and Path(netns).exists() and record.get("ip"))
        return Sandbox(id=record["id"], netns_path=netns, ip=record.get("ip"), config=config, ready=ready)

    def _netns_name(self, sandbox_id: str) -> str:
        return f"{self.namespace}-{sandbox_id}"

    async def create_sandbox(self, config: SandboxConfig) -> Sandbox:
        """Network namespace + CNI ADD (or nothing for hostNetwork). An existing ready sandbox is returned."""
        if not config.pod_uid or not config.name:
            raise SandboxError("sandbox: pod_uid and name must not be empty")
        sandbox_id = sandbox_id_for(config)
        async with self._sandbox_locks.setdefault(sandbox_id, asyncio.Lock()):
            existing = self._load_sandbox_record(sandbox_id)
            if existing is not None:
                sandbox = self._sandbox_from_record(existing)
                if sandbox.ready and sandbox.config.host_network == config.host_network:
                    return sandbox
                await self._teardown_sandbox(sandbox_id, existing)
            record: dict[str, Any] = {
                "id": sandbox_id,
                "config": {**asdict(config), "labels": dict(config.labels)},
                "created_at": time.time(),
                "netns_path": None,
                "ip": None,
            }
            if config.host_network:
                _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
                return self._sandbox_from_record(record)
            if self._pod_cidr is None:
                raise SandboxError(f"sandbox {sandbox_id}: the node has no podCIDR yet")
            # Persist first, so that a crash half-way leaves something remove_sandbox can clean up.
            name = self._netns_name(sandbox_id)
            record.update(netns_name=name, netns_path=network.netns_path(name), uts_path=None, cni_config=None)
            _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
            try:
                hostname = id_part(config.name, limit=63)
                _netns, record["uts_path"] = await network.create_pod_namespaces(name, hostname=hostname)
                if self._mtu is None:
                    self._mtu = await network.default_route_mtu()
                record["cni_config"] = network.bridge_config(
                    bridge=self.bridge, pod_cidr=self._pod_cidr, data_dir=self._ipam_dir, mtu=self._mtu)
                _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
                async with self._slots:
                    record["ip"] = await network.cni_add(
                        config=record["cni_config"], container_id=name, netns=record["netns_path"])
                self._write_etc_files(sandbox_id, hostname=hostname, ip=record["ip"])
                _atomic_write_json(self._sandbox_record_path(sandbox_id), record)
            except (network.NetworkError, OSError) as error:
                with contextlib.suppress(ContainerRuntimeError, network.NetworkError, OSError):
                    await self._teardown_sandbox(sandbox_id, record)
                raise SandboxError(f"sandbox {sandbox_id}: {error}") from error
            log.info("sandbox created", sandbox=sandbox_id, ip=record["ip"], netns=record["netns_path"])
            return self._sandbox_from_record(record)

    def _etc_dir(self, sandbox_id: str) -> Path:
        return self._sandbox_dir / sandbox_id / "etc"

    def _write_etc_files(self, sandbox_id: str, *, hostname: str, ip: str) -> None:
        etc = self._etc_dir(sandbox_id)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" f"{ip}\t{hostname}\n")
        (etc / "hostname").write_text(hostname + "\n")
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
        (etc / "resolv.conf").write_text(resolv)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """CNI DEL, remove the sandbox's containers, then its namespaces and files. Idempotent."""
        async with self._sandbox_locks.setdefault(sandbox_id, asyncio.Lock()):
            await self._teardown_sandbox(sandbox_id, self._load_sandbox_record(sandbox_id))
        self._sandbox_locks.pop(sandbox_id, None)

    async def _teardown_sandbox(self, sandbox_id: str, record: dict[str, Any] | None) -> None:
        name = (record or {}).get("netns_name") or self._netns_name(sandbox_id)
        netns = network.netns_path(name)
        cni_config = (record or {}).get("cni_config")
        if cni_config:
            # DEL before the containers die and while the netns exists removes everything (docs/containerd.md §6).
            try:
                async with self._slots:
                    await network.cni_del(config=cni_config, container_id=name, netns=netns)
            except network.NetworkError as error:
                log.warning("CNI DEL failed", sandbox=sandbox_id, error=str(error))
        result = await self._ctr("containers", "ls", "-q", f'labels."{LABEL_SANDBOX_ID}"=="{sandbox_id}"')
        await asyncio.gather(*(self.remove_container(cid) for cid in result.stdout.split()))
        await network.delete_uts_namespace(name)
        await network.delete_netns(name)
        shutil.rmtree(self._sandbox_dir / sandbox_id, ignore_errors=True)
        self._sandbox_record_path(sandbox_id).unlink(missing_ok=True)

    async def list_sandboxes(self) -> list[Sandbox]:
        """Every sandbox recorded under root_dir (ready=False when its netns is gone)."""
        sandboxes = []
        for path in sorted(self._sandbox_dir.glob("*.json")):
            record = _read_json(path)
            if isinstance(record, dict) and "id" in record and "config" in record:
                sandboxes.append(self._sandbox_from_record(record))
        return sandboxes

    # ----------------------------------------------------------------- containers

    async def _allocate_container_id(self, base: str) -> str:
        """`<base>-<n>` with n one above any instance seen; monotonic within this runtime object."""
        if self._known_ids is None:
            result = await self._ctr("containers", "ls", "-q")
            self._known_ids = set(result.stdout.split())
        index = self._next_index.get(base)
        if index is None:
            pattern = re.compile(re.escape(base) + r"-(\d+)")
            used = [int(m.group(1)) for known in self._known_ids if (m := pattern.fullmatch(known))]
            index = max(used, default=-1) + 1
        self._next_index[base] = index + 1
        container_id = f"{base}-{index}"
        self._known_ids.add(container_id)
        return container_id

    async def _process_args(self, config: ContainerConfig) -> list[str]:
        if config.command:
            return [*config.command, *config.args]
        if config.args:
            return [*(await self._image_entrypoint(config.image)), *config.args]
        return []

    def _validate(self, config: ContainerConfig) -> None:
        if not config.name:
            raise ContainerStartError("CreateContainerError", "container name: must not be empty")
        if not config.image:
            raise ContainerStartError("CreateContainerError", f"container {config.name}: image: must not be empty")
        if config.memory_bytes is not None and config.memory_bytes <= 0:
            raise ContainerStartError("CreateContainerError",
                                      f"container {config.name}: memory limit: must be positive")
        if config.cpu_millis is not None and config.cpu_millis <= 0:
            raise ContainerStartError("CreateContainerError", f"container {config.name}: cpu limit: must be positive")
        for key in config.env:
            if not key or "=" in key:
                raise ContainerStartError("CreateContainerError",
                                          f"container {config.name}: env name {key!r}: must be non-empty without '='")
        if not config.log_path.is_absolute():
            raise ContainerStartError("CreateContainerError",
                                      f"container {config.name}: log_path: {config.log_path} must be absolute")

    async def start_container(self, sandbox: Sandbox, config: ContainerConfig) -> str:
        """Create and start one container in the sandbox; return its id.

        Raises ContainerStartError: reason CreateContainerError (bad config, missing image, sandbox gone),
        ExecutableNotFound, or StartError (anything else runc refused). Nothing is left behind on failure.
        """
        self._validate(config)
        record = self._load_sandbox_record(sandbox.id)
        if record is None:
            raise ContainerStartError("CreateContainerError", f"sandbox {sandbox.id} does not exist")
        sandbox_config = SandboxConfig(**record["config"])
        labels = {
            **{str(k): str(v) for k, v in config.labels.items()},
            LABEL_MANAGED: "true",
            LABEL_SANDBOX_ID: sandbox.id,
            LABEL_POD_UID: sandbox_config.pod_uid,
            LABEL_POD_NAMESPACE: sandbox_config.namespace,
            LABEL_POD_NAME: sandbox_config.name,
            LABEL_CONTAINER_NAME: config.name,
        }
        flags: list[str] = []
        for key, value in labels.items():
            flags += ["--label", f"{key}={value}"]
        for key, value in config.env.items():
            flags += ["--env", f"{key}={value}"]
        if config.working_dir:
            flags += ["--cwd", config.working_dir]
        if config.memory_bytes is not None:
            flags += ["--memory-limit", str(config.memory_bytes)]
        if config.cpu_millis is not None:
            quota = max(MIN_CPU_QUOTA_US, config.cpu_millis * CPU_PERIOD_US // 1000)
            flags += ["--cpu-quota", str(quota), "--cpu-period", str(CPU_PERIOD_US)]
        if sandbox_config.host_network:
            flags.append("--net-host")
        else:
            netns = record.get("netns_path")
            if not netns or not Path(netns).exists():
                raise ContainerStartError("CreateContainerError", f"sandbox {sandbox.id} has no network namespace")
            flags += ["--with-ns", f"network:{netns}"]
            uts = record.get("uts_path")
            if uts and Path(uts).exists():
                flags += ["--with-ns", f"uts:{uts}"]
            etc = self._etc_dir(sandbox.id)
            for file_name in ("hosts", "hostname", "resolv.conf"):
                if (etc / file_name).exists():
                    flags += ["--mount", f"type=bind,src={etc / file_name},dst=/etc/{file_name},options=rbind:ro"]
        try:
            process_args = await self._process_args(config)
        except CtrError as error:
            raise ContainerStartError("CreateContainerError", f"image {config.image}: {error.message}") from error

        # One `ctr run -d` creates the container and starts its task: one process instead of
        # `containers create` + `tasks start` (each ctr is a Go binary start, ~20 ms of CPU), which is what
        # a batch of pods on a 2-core Node is bound by. `--` keeps the process's own flags away from ctr.
        try:
            config.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ContainerStartError("CreateContainerError", f"log directory: {error}") from error
        log_uri = "file://" + quote(str(config.log_path))
        base = f"{sandbox.id}-{id_part(config.name, limit=MAX_ID_LENGTH - len(sandbox.id) - 6)}"
        for _attempt in range(5):
            container_id = await self._allocate_container_id(base)
            try:
                await self._ctr("run", "-d", "--log-uri", log_uri, *flags, "--", config.image, container_id,
                                *process_args, expensive=True)
                break
            except CtrError as error:
                message = error.message
                if "already exists" in message:
                    continue  # someone else's container (or snapshot) has this id: leave it alone
            if "not found" in message:
                self.forget_image(config.image)
            # Anything else may have left the container (and its snapshot) behind: remove ours.
            with contextlib.suppress(ContainerRuntimeError):
                await self.remove_container(container_id)
            raise ContainerStartError(_start_failure_reason(message), message)
        else:
            raise ContainerStartError("CreateContainerError", f"no free container id for {base}")

        state_path = self._container_dir / f"{container_id}.json"
        _atomic_write_json(state_path, {"started_at": time.time(), "log_path": str(config.log_path)})
        log.info("container started", container=container_id, image=config.image)
        return container_id

    async def _shim_state(self, container_id: str) -> dict[str, Any] | None:
        """The task's state straight from its shim (works while containerd is down); None without a task."""
        result = await self._ctr("shim", "--id", container_id, "state", check=False)
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        """Stop signal (SIGTERM unless the image says otherwise), wait up to the grace, then SIGKILL.

        Returns once the task is stopped (or absent); the stopped task is kept for its exit status.
        """
        state = await self._shim_state(container_id)
        if state is None or state.get("status") not in (1, 2, 4):
            return
        pid = int(state.get("pid") or 0)
        await self._ctr("tasks", "kill", container_id, check=False)
        if pid and await wait_pid_exit(pid, grace_seconds):
            await self._wait_task_stopped(container_id, timeout=5.0)
            return
        log.info("grace period over, killing", container=container_id, grace=grace_seconds)
        await self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", container_id, check=False)
        if pid:
            await wait_pid_exit(pid, 10.0)
        await self._wait_task_stopped(container_id, timeout=10.0)

    async def _wait_task_stopped(self, container_id: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            state = await self._shim_state(container_id)
            if state is None or state.get("status") == 3:
                return
            if time.monotonic() >= deadline:
                raise ContainerRuntimeError(f"container {container_id} did not stop within {timeout:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def remove_container(self, container_id: str) -> None:
        """Kill if needed, delete task and container (and its snapshot). Idempotent."""
        task = await self._ctr("tasks", "rm", "-f", container_id, expensive=True, check=False)
        if task.returncode != 0 and "not found" not in ctr_message(task.stderr):
            log.warning("task delete failed", container=container_id, error=ctr_message(task.stderr))
        container = await self._ctr("containers", "rm", container_id, expensive=True, check=False)
        if container.returncode != 0 and "not found" not in ctr_message(container.stderr):
            raise CtrError(["containers", "rm", container_id], container)
        (self._container_dir / f"{container_id}.json").unlink(missing_ok=True)
        self._records.pop(container_id, None)
        self._final_states.pop(container_id, None)
        self._oom_seen.discard(container_id)
        # A SIGKILLed shim leaves its socket behind (docs/containerd.md §8).
        socket_name = hashlib.sha256(f"{self.address}/{self.namespace}/{container_id}".encode()).hexdigest()
        with contextlib.suppress(OSError):
            (SHIM_SOCKET_DIR / socket_name).unlink()

    async def _container_record(self, container_id: str) -> dict[str, Any] | None:
        """`ctr c info` (labels, image, spec), cached: we never change a container after creating it."""
        if container_id in self._records:
            return self._records[container_id]
        result = await self._ctr("containers", "info", container_id, check=False)
        if result.returncode != 0:
            if "not found" in ctr_message(result.stderr):
                return None
            raise CtrError(["containers", "info", container_id], result)
        record = json.loads(result.stdout)
        self._records[container_id] = record
        return record

    def _cgroups_path(self, container_id: str) -> str:
        record = self._records.get(container_id) or {}
        path = (((record.get("Spec") or {}).get("linux") or {}).get("cgroupsPath"))
        return path or f"/{self.namespace}/{container_id}"

    def _oom_killed(self, container_id: str, exit_code: int | None) -> bool:
        """Exit 137 after the kernel OOM-killed in the container's cgroup (or an /tasks/oom event)."""
        if exit_code != 137:
            return False
        return container_id in self._oom_seen or cgroup_oom_kills(self._cgroups_path(container_id)) > 0

    def _started_at(self, container_id: str, pid: int | None) -> float | None:
        state = _read_json(self._container_dir / f"{container_id}.json")
        if isinstance(state, dict) and isinstance(state.get("started_at"), (int, float)):
            return float(state["started_at"])
        return _process_start_time(pid) if pid else None

    async def _build_info(self, container_id: str, task_status: str | None, pid: int | None) -> ContainerInfo | None:
        """Combine the container record with its task state (task_status None = no task)."""
        record = await self._container_record(container_id)
        if record is None:
            return None
        state: ContainerState = _TASK_STATUS.get(task_status or "", "unknown")
        exit_code = finished_at = None
        oom_killed = False
        if state == "exited":
            final = self._final_states.get(container_id)
            if final is None:
                shim = await self._shim_state(container_id)
                if shim is not None and shim.get("status") == 3:
                    exit_code = int(shim.get("exit_status", 0))
                    final = {"exit_code": exit_code, "finished_at": parse_timestamp(shim.get("exited_at")),
                             "oom_killed": self._oom_killed(container_id, exit_code), "pid": shim.get("pid")}
                    self._final_states[container_id] = final
            if final is not None:
                exit_code, finished_at, oom_killed = final["exit_code"], final["finished_at"], final["oom_killed"]
                pid = final.get("pid") or pid
            else:
                state = "unknown"
        return ContainerInfo(
            id=container_id,
            labels=dict(record.get("Labels") or {}),
            state=state,
            pid=pid if state in ("running", "created") else None,
            exit_code=exit_code,
            started_at=self._started_at(container_id, pid) if state != "created" else None,
            finished_at=finished_at,
            oom_killed=oom_killed,
            image=record.get("Image", ""),
        )

    async def _task_table(self) -> dict[str, tuple[int | None, str]]:
        result = await self._ctr("tasks", "ls")
        table: dict[str, tuple[int | None, str]] = {}
        for line in result.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                table[parts[0]] = (int(parts[1]) if parts[1].isdigit() and parts[1] != "0" else None, parts[2])
        return table

    async def list_containers(self) -> list[ContainerInfo]:
        """Every container in our namespace with its labels and state (for adoption after a restart)."""
        ids = (await self._ctr("containers", "ls", "-q")).stdout.split()
        tasks = await self._task_table()
        infos = await asyncio.gather(*(
            self._build_info(cid, tasks.get(cid, (None, None))[1], tasks.get(cid, (None, None))[0]) for cid in ids
        ))
        return [info for info in infos if info is not None]

    async def container_info(self, container_id: str) -> ContainerInfo | None:
        """One container's state, or None if it does not exist. No task (e.g. shim killed) -> "unknown"."""
        record = await self._container_record(container_id)
        if record is None:
            return None
        shim = await self._shim_state(container_id)
        status = None
        pid = None
        if shim is not None:
            status = {1: "CREATED", 2: "RUNNING", 3: "STOPPED", 4: "PAUSED"}.get(int(shim.get("status", 0)))
            pid = int(shim["pid"]) if shim.get("pid") else None
        return await self._build_info(container_id, status, pid)

    # ----------------------------------------------------------------- exits

    async def exits(self) -> AsyncIterator[ContainerExit]:
        """Main-process exits of our containers, forever.

        Each container's exit is reported once per iterator; exits missed while the stream was down
        (or before it started) are found by reconciling against `ctr t ls` on every (re)connect and
        every EXIT_RECONCILE_INTERVAL seconds.
        """
        reported: set[str] = set()
        backoff = 0.1
        while True:
            argv = self._ctr_argv(
                "events",
                f'namespace=={self.namespace},topic=="/tasks/exit"',
                f'namespace=={self.namespace},topic=="/tasks/oom"',
            )
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            assert process.stdout is not None
            try:
                next_reconcile = 0.0
                reconciles = 0
                while True:
                    if time.monotonic() >= next_reconcile:
                        try:
                            for found in await self._reconcile_exits(reported):
                                yield found
                            backoff = 0.1
                        except ContainerRuntimeError as error:
                            log.warning("exit reconcile failed", error=str(error))
                        # The first pass may run before ctr's subscription is live: look again soon.
                        reconciles += 1
                        next_reconcile = time.monotonic() + (1.0 if reconciles == 1 else EXIT_RECONCILE_INTERVAL)
                    try:
                        line = await asyncio.wait_for(process.stdout.readline(),
                                                      max(0.0, next_reconcile - time.monotonic()))
                    except TimeoutError:
                        continue
                    if not line:
                        break
                    found = self._parse_event(line.decode(errors="replace"), reported)
                    if found is not None:
                        yield found
            finally:
                if process.returncode is None:
                    process.kill()
                with contextlib.suppress(Exception):
                    await process.wait()
            stderr = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
            log.warning("ctr events ended, restarting", error=ctr_message(stderr), backoff=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _parse_event(self, line: str, reported: set[str]) -> ContainerExit | None:
        parts = line.rstrip("\n").split(" ", 6)
        if len(parts) < 7:
            return None
        topic = parts[5]
        try:
            payload = json.loads(parts[6])
        except ValueError:
            return None
        container_id = payload.get("container_id", "")
        if topic == "/tasks/oom":
            self._oom_seen.add(container_id)
            return None
        if topic != "/tasks/exit" or payload.get("id") != container_id or container_id in reported:
            return None
        reported.add(container_id)
        exit_code = int(payload.get("exit_status", 0))
        return ContainerExit(container_id=container_id, exit_code=exit_code,
                             exited_at=parse_timestamp(payload.get("exited_at")),
                             oom_killed=self._oom_killed(container_id, exit_code))

    async def _reconcile_exits(self, reported: set[str]) -> list[ContainerExit]:
        tasks = await self._task_table()
        reported.intersection_update(tasks)
        found = []
        for container_id, (_pid, status) in tasks.items():
            if status != "STOPPED" or container_id in reported:
                continue
            shim = await self._shim_state(container_id)
            if shim is None or shim.get("status") != 3:
                continue
            reported.add(container_id)
            exit_code = int(shim.get("exit_status", 0))
            found.append(ContainerExit(container_id=container_id, exit_code=exit_code,
                                       exited_at=parse_timestamp(shim.get("exited_at")),
                                       oom_killed=self._oom_killed(container_id, exit_code)))
        return found

    # ----------------------------------------------------------------- exec

    async def exec(
        self,
        container_id: str,
        command: list[str],
        *,
        stdin: AsyncIterator[bytes] | None = None,
        timeout: float | None = None,
    ) -> ContainerdExecSession:
        """Run a command in a running container; output streams through the returned session."""
        if not command:
            raise ExecError("exec: command: must not be empty")
        exec_id = uuid.uuid4().hex
        process = await asyncio.create_subprocess_exec(
            *self._ctr_argv("tasks", "exec", "--exec-id", exec_id, container_id, *command),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        session = ContainerdExecSession(runtime=self, container_id=container_id, exec_id=exec_id,
                                        process=process, stdin=stdin, timeout=timeout)
        session.start()
        return session


class ContainerdExecSession:
    """One `ctr t exec` process; implements `base.ExecSession`."""

    def __init__(
        self,
        *,
        runtime: ContainerdRuntime,
        container_id: str,
        exec_id: str,
        process: asyncio.subprocess.Process,
        stdin: AsyncIterator[bytes] | None,
        timeout: float | None,
    ) -> None:
        self.exec_id = exec_id
        self.container_id = container_id
        self._runtime = runtime
        self._process = process
        self._stdin = stdin
        self._timeout = timeout
        self._queue: asyncio.Queue[ExecChunk | None] = asyncio.Queue()
        self._output_seen = asyncio.Event()
        self._stderr_tail = b""
        self._timed_out = False
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: list[asyncio.Task[None]] = []
        self._chunks_taken = False

    @property
    def timed_out(self) -> bool:
        return self._timed_out

    def start(self) -> None:
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self._process.stdout, "stdout")),
            asyncio.create_task(self._pump(self._process.stderr, "stderr")),
        ]
        self._tasks = [asyncio.create_task(self._feed_stdin())]
        if self._timeout is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(self._timeout)))

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        while data := await stream.read(65536):
            self._output_seen.set()
            if name == "stderr":
                self._stderr_tail = (self._stderr_tail + data)[-4096:]
            await self._queue.put(ExecChunk(stream=name, data=data))  # type: ignore[arg-type]
        await self._queue.put(None)

    async def _feed_stdin(self) -> None:
        pipe = self._process.stdin
        assert pipe is not None
        wrote = False
        try:
            if self._stdin is not None:
                async for data in self._stdin:
                    if data:
                        pipe.write(data)
                        await pipe.drain()
                        wrote = True
            if not wrote:
                # EOF before the shim opened the stdin FIFO is lost by ctr 1.6 (the process would
                # wait forever): close only once the process is demonstrably running, or after a delay.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._output_seen.wait(), EXEC_STDIN_CLOSE_DELAY)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    async def _watchdog(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._process.wait()), timeout)
        except TimeoutError:
            self._timed_out = True
            await self.cancel()

    async def cancel(self) -> None:
        """SIGTERM ctr (forwarded to the process), then SIGKILL the exec through containerd."""
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.terminate()
        if await self._wait_process(1.0):
            return
        await self._runtime._ctr("tasks", "kill", "--exec-id", self.exec_id, "--signal", "SIGKILL",
                                 self.container_id, check=False)
        if await self._wait_process(5.0):
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        await self._process.wait()
        await self._runtime._ctr("tasks", "rm", "--exec-id", self.exec_id, self.container_id, check=False)

    async def _wait_process(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._process.wait()), timeout)
            return True
        except TimeoutError:
            return False

    async def chunks(self) -> AsyncIterator[ExecChunk]:
        if self._chunks_taken:
            raise RuntimeError("exec output can only be consumed once")
        self._chunks_taken = True
        open_streams = 2
        while open_streams:
            chunk = await self._queue.get()
            if chunk is None:
                open_streams -= 1
            else:
                yield chunk

    async def wait(self) -> int:
        returncode = await self._process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if returncode == 1 and not self._timed_out:
            lines = [line for line in self._stderr_tail.decode(errors="replace").splitlines() if line.strip()]
            if lines and lines[-1].startswith("ctr: "):
                raise ExecError(f"exec in {self.container_id}: {lines[-1][len('ctr: '):]}")
        return returncode

    async def collect(self) -> ExecResult:
        stdout = bytearray()
        stderr = bytearray()
        async for chunk in self.chunks():
            (stdout if chunk.stream == "stdout" else stderr).extend(chunk.data)
        exit_code = await self.wait()
        return ExecResult(exit_code=exit_code, stdout=bytes(stdout), stderr=bytes(stderr),
                          timed_out=self._timed_out)
