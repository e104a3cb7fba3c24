"""Run etcd 3.4 as a private child process.

`EtcdProcess` owns one etcd member: its own directory (etcd data in `<data_dir>/data`, its combined
stdout/stderr in `<data_dir>/etcd.log`), client and peer URLs on 127.0.0.1. `start()` returns once the
member answers `GET /health` with `{"health":"true"}` (which in 3.4 also means a leader exists), so a
cluster's members must be started concurrently (`start_cluster`). `stop()` goes by pid: SIGTERM, then
SIGKILL after a deadline.

`EtcdSupervisor` is what `kyb-master` runs when no `--etcd` is given: one member under the master's data
dir, on the same ports across master restarts (given, or remembered in `<data_dir>/ports.json`), restarted with
exponential backoff whenever it dies, stopped with the master. On loopback only by default; with a `host`
(`--cluster-init`, `--join`: master.join.masters) it serves peers and clients on that address too.

Every child is started in its own session (so a Ctrl-C aimed at the master does not kill etcd before the
master has shut down) and with PR_SET_PDEATHSIG=SIGTERM, so it dies with its parent even when the parent
is SIGKILLed. The kernel ties the death signal to the *thread* that forked, which is the event loop's
thread here; run the loop on a thread that lives as long as etcd should.

No Python runs between fork and exec: a Python pre-exec hook (subprocess's preexec argument) would make
CPython fork() (instead of vfork) while gRPC's threads run in the parent, and a child forked then can abort
in gRPC's fork handlers before it execs. The death signal is set by util-linux's `setpriv --pdeathsig`,
which then execs a POSIX shell that checks the parent is still the one that started it (closing the window
before the signal was armed) and execs etcd in its place, so the pid we hold is etcd's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from kybernetes.master.store.etcdtls import EtcdClientTLS, EtcdServerTLS, ensure_pki

DEFAULT_CLIENT_PORT = 2379
DEFAULT_PEER_PORT = 2380
HOST = "127.0.0.1"
_log = structlog.get_logger().bind(component="etcd")


class EtcdStartError(RuntimeError):
    """etcd exited or did not become healthy during start(); the message carries the log's tail."""


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on 127.0.0.1 a moment ago (all bound at once, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port could be bound now (SO_REUSEADDR as etcd does, so TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


# Runs after setpriv armed the death signal: if the parent died before that, nothing will ever signal us.
_CHECK_PARENT = 'if [ "$PPID" != "$1" ]; then exit 126; fi; shift; exec "$@"'


def die_with_parent(argv: Sequence[str], *, parent_pid: int, signal_name: str = "TERM") -> list[str]:
    """`argv` wrapped so that the child gets SIG`signal_name` when `parent_pid` (the caller) dies.

    The wrapper execs into `argv`, so the pid of the started process is the pid of `argv[0]`. Without
    setpriv (util-linux) on PATH the command is returned as is: the child then outlives a SIGKILLed parent.
    """
    setpriv, sh = shutil.which("setpriv"), shutil.which("sh")
    if setpriv is None or sh is None:
        _log.warning("setpriv not found: children will not die with their parent", command=argv[0])
        return list(argv)
    return [setpriv, f"--pdeathsig={signal_name}", "--", sh, "-c", _CHECK_PARENT, "die-with-parent",
            str(parent_pid), *argv]


def _child_env() -> dict[str, str]:
    # etcd reads ETCD_* variables as flags; a stray one in the parent's environment must not reconfigure it.
    return {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}


def client_ssl_context(tls: EtcdClientTLS) -> ssl.SSLContext:
    """What a health check presents to an etcd with --client-cert-auth."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    return context


async def _http_health(port: int, *, timeout: float, tls: ssl.SSLContext | None = None) -> bool:
    """GET /health (https with a client certificate when `tls`) and report whether etcd says it is healthy."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(HOST, port, ssl=tls,
                                                           server_hostname=HOST if tls is not None else None)
            writer.write(f"GET /health HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            await writer.drain()
            response = await reader.read()
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or head.split(b" ", 2)[1:2] != [b"200"]:
        return False
    try:
        return json.loads(body).get("health") == "true"
    except ValueError:
        return False


DEFAULT_HEARTBEAT_MS, DEFAULT_ELECTION_MS = 50, 600


@dataclass(frozen=True, slots=True)
class RaftTiming:
    """etcd's raft timing: `--heartbeat-interval` and `--election-timeout`, in milliseconds.

    Ours by default (50 ms / 600 ms) is faster than etcd's (100 ms / 1000 ms): a member elects a new leader within
    about 0.6 s. Machines that cannot keep a heartbeat every 50 ms (guests under software emulation, busy disks)
    need more, about the round trip between members for the heartbeat and ten times it for the election (etcd's
    tuning guide); otherwise the members keep changing leader and every request times out.

    etcd grants no lease shorter than 1.5 × the election timeout, rounded up to a second (`min_lease_seconds`):
    the masters' leadership (master.leader.election) follows the TTL etcd grants.
    """

    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    election_ms: int = DEFAULT_ELECTION_MS

    def __post_init__(self) -> None:
        if not 1 <= self.heartbeat_ms <= 10_000:
            raise ValueError(f"heartbeat interval: must be 1 to 10000 ms, got {self.heartbeat_ms}")
        if not 5 * self.heartbeat_ms <= self.election_ms <= 50_000:
            raise ValueError(f"election timeout: must be at least 5 × the heartbeat interval "
                             f"({5 * self.heartbeat_ms} ms) and at most 50000 ms, got {self.election_ms}")

    @property
    def min_lease_seconds(self) -> int:
        """The shortest lease etcd grants with this timing (etcd's minTTL: 3/2 election ticks, rounded up)."""
        ticks = self.election_ms // self.heartbeat_ms
        return math.ceil((3 * ticks // 2) * self.heartbeat_ms / 1000)

    def args(self) -> list[str]:
        return [f"--heartbeat-interval={self.heartbeat_ms}", f"--election-timeout={self.election_ms}"]


class EtcdProcess:
    """One private etcd member, run as a child process. Ports given as 0 are picked free at construction."""

    def __init__(
        self,
        *,
        data_dir: Path,
        client_port: int = 0,
        peer_port: int = 0,
        name: str = "default",
        initial_cluster: str | None = None,
        initial_cluster_state: str = "new",
        initial_cluster_token: str = "kybernetes",
        auto_compaction_retention: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str = "etcd",
        start_timeout: float = 30.0,
        pki_dir: Path | None = None,
        tls: bool = True,
        host: str = HOST,
        timing: RaftTiming = RaftTiming(),
    ) -> None:
        if initial_cluster_state not in ("new", "existing"):
            raise ValueError(
                f"initial_cluster_state: must be 'new' or 'existing', got {initial_cluster_state!r}"
            )
        for field, port in (("client_port", client_port), ("peer_port", peer_port)):
            if not 0 <= port <= 65535:
                raise ValueError(f"{field}: must be between 0 and 65535, got {port}")
        self.data_dir = Path(data_dir)
        self.name = name
        # The address other members and masters reach this member at; clients on this machine also use loopback.
        self.host = host
        self.initial_cluster_state = initial_cluster_state
        self.initial_cluster_token = initial_cluster_token
        self.auto_compaction_retention = auto_compaction_retention
        self.extra_args = tuple(extra_args)
        self.binary = binary
        self.start_timeout = start_timeout
        self.timing = timing
        # Only ports we picked ourselves may be re-picked when another process grabs them before etcd binds.
        self._auto_client = client_port == 0
        self._auto_peer = peer_port == 0
        self._explicit_cluster = initial_cluster
        self.client_port, self.peer_port = client_port, peer_port
        self._pick_missing_ports()
        self._process: asyncio.subprocess.Process | None = None
        # Mutual TLS unless asked otherwise: etcd answers only holders of a client certificate of its CA
        # (master.store.etcdtls); members of one cluster share a pki_dir.
        self.server_tls: EtcdServerTLS | None = None
        self.client_tls: EtcdClientTLS | None = None
        self._health_ssl: ssl.SSLContext | None = None
        if tls:
            self.server_tls, self.client_tls = ensure_pki(pki_dir or self.data_dir / "pki",
                                                          hosts=[host] if host != HOST else [])
            self._health_ssl = client_ssl_context(self.client_tls)

    def _pick_missing_ports(self) -> None:
        picked = iter(free_ports(2))
        if self._auto_client:
            self.client_port = next(picked)
        if self._auto_peer:
            self.peer_port = next(picked)

    @property
    def _scheme(self) -> str:
        return "https" if self.server_tls is not None else "http"

    @property
    def endpoint(self) -> str:
        """The client URL on this machine, e.g. https://127.0.0.1:2379 (http:// only when made with tls=False)."""
        return f"{self._scheme}://{HOST}:{self.client_port}"

    @property
    def advertised_endpoint(self) -> str:
        """The client URL other machines use (the member's host)."""
        return f"{self._scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self._scheme}://{self.host}:{self.peer_port}"

    @property
    def initial_cluster(self) -> str:
        return self._explicit_cluster or f"{self.name}={self.peer_url}"

    @property
    def etcd_data_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    @property
    def running(self) -> bool:
        """Started and not yet exited (not necessarily healthy)."""
        return self._process is not None and self._process.returncode is None

    def command(self) -> list[str]:
        """The etcd command line this member runs."""
        binary = shutil.which(self.binary)
        if binary is None:
            raise EtcdStartError(f"binary: {self.binary!r} not found on PATH (install package etcd-server)")
        args = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.etcd_data_dir}",
            f"--listen-client-urls={self.endpoint}"
            + (f",{self.advertised_endpoint}" if self.host != HOST else ""),
            f"--advertise-client-urls={self.advertised_endpoint}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-state={self.initial_cluster_state}",
            f"--initial-cluster-token={self.initial_cluster_token}",
            # The default (100000) keeps that many raft entries in memory; we are small and restart often.
            "--snapshot-count=10000",
            # RaftTiming: by default faster than etcd's own, so a new leader is elected within ~0.6 s.
            *self.timing.args(),
            # A member cut off and healed asks for a pre-vote before it campaigns, instead of forcing an election
            # with the higher term it reached alone, which would leave the healthy members leaderless for a moment.
            "--pre-vote=true",
            "--quota-backend-bytes=2147483648",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.auto_compaction_retention is not None:
            args.append(f"--auto-compaction-retention={self.auto_compaction_retention}")
        if self.server_tls is not None:
            args.extend(self.server_tls.args())
        args.extend(self.extra_args)
        return args

    async def healthy(self, *, timeout: float = 1.0) -> bool:
        """Whether the member answers GET /health with health=true right now."""
        return self.running and await _http_health(self.client_port, timeout=timeout, tls=self._health_ssl)

    async def start(self) -> None:
        """Spawn etcd and return once it is healthy; else raise EtcdStartError (the child already reaped)."""
        if self.running:
            raise RuntimeError(f"etcd {self.name} is already running (pid {self.pid})")
        attempts = 3 if (self._auto_client or self._auto_peer) and self._explicit_cluster is None else 1
        for attempt in range(attempts):
            try:
                await self._start_once()
                return
            except EtcdStartError as err:
                # Another process may have taken a port we picked before etcd bound it: pick again.
                if attempt + 1 == attempts or "address already in use" not in str(err):
                    raise
                self._pick_missing_ports()

    async def _start_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = self.command()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *die_with_parent(args, parent_pid=os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=_child_env(),
                start_new_session=True,
            )
        try:
            await self._wait_healthy(log_offset=log_offset)
        except BaseException:
            # Cancelled or failed: never leave a half-started child behind.
            await self._terminate(grace=0.0)
            raise

    async def _wait_healthy(self, *, log_offset: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        assert self._process is not None
        while True:
            if self._process.returncode is not None:
                raise EtcdStartError(
                    f"etcd {self.name} exited with code {self._process.returncode} during start; "
                    f"log {self.log_path}:\n{self._log_tail(offset=log_offset)}"
                )
            if await _http_health(self.client_port, timeout=1.0, tls=self._health_ssl):
                return
            if loop.time() >= deadline:
                raise EtcdStartError(
                    f"etcd {self.name} not healthy at {self.endpoint} after {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self._log_tail(offset=log_offset)}"
                )
            await asyncio.sleep(0.05)

    def _log_tail(self, *, offset: int, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError as err:
            return f"(log unreadable: {err})"
        return "\n".join(text.splitlines()[-lines:])

    async def wait(self) -> int:
        """Wait for the child to exit and return its exit code (negative: killed by that signal)."""
        if self._process is None:
            raise RuntimeError(f"etcd {self.name} was never started")
        return await self._process.wait()

    async def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM by pid, SIGKILL if still there after `grace` seconds; returns once the child is reaped."""
        await self._terminate(grace=grace)

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the child by pid; for SIGKILL also wait until it is reaped."""
        if not self.running:
            return
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, sig)
        if sig == signal.SIGKILL:
            await self._process.wait()

    async def _terminate(self, *, grace: float) -> None:
        if not self.running:
            return
        assert self._process is not None
        if grace > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._process.wait()
                    return
        await self.kill(signal.SIGKILL)

    async def __aenter__(self) -> EtcdProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"EtcdProcess(name={self.name!r}, endpoint={self.endpoint!r}, pid={self.pid})"


async def start_cluster(
    *, base_dir: Path, members: int = 3, start_timeout: float = 60.0, **member_options: Any
) -> list[EtcdProcess]:
    """Start an N-member cluster (member i named m<i>, data in base_dir/m<i>), all members concurrently.

    Each call gets its own cluster token, so members of different test clusters never accept each other.
    Extra keyword options go to every EtcdProcess. On failure every member is stopped before raising.
    """
    if members < 1:
        raise ValueError(f"members: must be at least 1, got {members}")
    ports = free_ports(2 * members)
    names = [f"m{i}" for i in range(members)]
    scheme = "https" if member_options.get("tls", True) else "http"
    initial_cluster = ",".join(f"{n}={scheme}://{HOST}:{ports[2 * i + 1]}" for i, n in enumerate(names))
    token = f"kybernetes-{uuid.uuid4().hex[:12]}"
    procs = [
        EtcdProcess(
            data_dir=Path(base_dir) / name,
            client_port=ports[2 * i],
            peer_port=ports[2 * i + 1],
            name=name,
            initial_cluster=initial_cluster,
            initial_cluster_token=token,
            start_timeout=start_timeout,
            pki_dir=Path(base_dir) / "pki",  # one etcd CA for the whole cluster
            **member_options,
        )
        for i, name in enumerate(names)
    ]
    results = await asyncio.gather(*(p.start() for p in procs), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(p.stop() for p in procs))
        raise failures[0]
    return procs


def choose_ports(data_dir: Path, *, client_port: int | None = None, peer_port: int | None = None) -> tuple[int, int]:
    """The client and peer ports of the member in `data_dir`: given ones, else those it used last time (its
    ports.json), else etcd's defaults (2379, 2380) when free, else free ones."""
    stored: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads((data_dir / EtcdSupervisor.PORTS_FILE).read_text())

    def pick(given: int | None, remembered: object, default: int, *, avoid: int) -> int:
        if given:
            return given
        for candidate in (remembered, default):
            if isinstance(candidate, int) and candidate != avoid and port_is_free(candidate):
                return candidate
        return next(p for p in free_ports(2) if p != avoid)

    client = pick(client_port, stored.get("client"), DEFAULT_CLIENT_PORT, avoid=-1)
    peer = pick(peer_port, stored.get("peer"), DEFAULT_PEER_PORT, avoid=client)
    return client, peer


class EtcdSupervisor:
    """Keeps one private etcd member alive for the master: same ports across restarts, backoff on crashes."""

    PORTS_FILE = "ports.json"

    def __init__(
        self,
        *,
        data_dir: Path,
        client_port: int | None = None,
        peer_port: int | None = None,
        host: str = HOST,
        name: str = "default",
        initial_cluster: str | None = None,
        initial_cluster_state: str = "new",
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 60.0,
        auto_compaction_retention: str | None = "1h",
        start_timeout: float = 30.0,
        timing: RaftTiming = RaftTiming(),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.restarts = 0
        self._log = structlog.get_logger().bind(component="etcd")
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        client, peer = choose_ports(self.data_dir, client_port=client_port, peer_port=peer_port)
        self.process = EtcdProcess(
            data_dir=self.data_dir,
            client_port=client,
            peer_port=peer,
            host=host,
            name=name,
            initial_cluster=initial_cluster,
            initial_cluster_state=initial_cluster_state,
            auto_compaction_retention=auto_compaction_retention,
            start_timeout=start_timeout,
            timing=timing,
        )

    @property
    def endpoint(self) -> str:
        return self.process.endpoint

    @property
    def client_tls(self) -> EtcdClientTLS | None:
        return self.process.client_tls

    @property
    def pki_dir(self) -> Path:
        """Where the etcd CA and this member's certificates are (master.store.etcdtls)."""
        return self.data_dir / "pki"

    async def start(self) -> None:
        """Start etcd, wait until healthy, then watch it in the background."""
        if self._monitor is not None:
            raise RuntimeError("EtcdSupervisor already started")
        self._stopping = False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / self.PORTS_FILE).write_text(
            json.dumps({"client": self.process.client_port, "peer": self.process.peer_port}) + "\n"
        )
        await self.process.start()
        self._log.info(
            "etcd started", endpoint=self.endpoint, pid=self.process.pid, data_dir=str(self.data_dir)
        )
        self._monitor = asyncio.create_task(self._watch(), name="etcd-supervisor")

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff
        while True:
            started_at = loop.time()
            code = await self.process.wait()
            if self._stopping:
                return
            if loop.time() - started_at >= self.stable_after:
                backoff = self.min_backoff
            self._log.warning(
                "etcd exited, restarting", returncode=code, backoff=backoff, log=str(self.process.log_path)
            )
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                try:
                    await self.process.start()
                except EtcdStartError as err:
                    self._log.error("etcd restart failed", error=str(err), next_backoff=backoff)
                    continue
                self.restarts += 1
                self._log.info(
                    "etcd restarted", endpoint=self.endpoint, pid=self.process.pid, restarts=self.restarts
                )
                break

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop watching and stop etcd (SIGTERM, then SIGKILL after `grace`)."""
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self.process.stop(grace=grace)
        self._log.info("etcd stopped", endpoint=self.endpoint)

    async def __aenter__(self) -> EtcdSupervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
