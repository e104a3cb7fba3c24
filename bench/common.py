"""What every benchmark shares: statistics, machine facts, process metrics, the table and the JSON report.

A benchmark produces one `Report`: its configuration, one dict of raw figures per run, and a summary
in which each figure is the median with min/max over the runs (`spread`). Latency samples within one
run are reduced to p50/p99 first (`percentiles`), so the summary of a latency is "median of the runs'
p99" with the runs' min and max. Targets from the issue are checked against the summary's medians.

Process metrics come straight from /proc (resident memory, CPU seconds), so no extra dependency is
needed to measure a pid we started.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


# ----------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p99, max and the sample count of one run's latencies."""
    return {"p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None, "n": len(values)}


def spread(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """Median with min and max over runs (runs without the figure are left out)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": percentile(present, 50), "min": min(present), "max": max(present), "runs": len(present)}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of per-run figures: every numeric leaf becomes a spread over the runs (same shape)."""
    if not runs:
        return {}
    summary: dict[str, Any] = {}
    keys = [k for k in runs[0] if not k.startswith("_")]
    for key in keys:
        values = [run.get(key) for run in runs]
        if any(isinstance(v, Mapping) for v in values):
            if all(isinstance(v, Mapping) or v is None for v in values):
                summary[key] = summarize([v for v in values if v is not None])
        elif all((isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None for v in values):
            summary[key] = spread(values)
    return summary


def lookup(tree: Mapping[str, Any], path: str) -> Any:
    """tree["a"]["b"]["c"] for "a.b.c"; None when any part is missing."""
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A target from the issue: the summary's median at `path` compared with `limit`."""

    name: str
    path: str
    limit: float | Callable[[Mapping[str, Any]], float | None]
    unit: str = ""
    at_least: bool = False  # True: the figure must be >= limit (throughput); else <= limit

    def check(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        value = lookup(summary, self.path + ".median")
        limit = self.limit(summary) if callable(self.limit) else self.limit
        met = None
        if value is not None and limit is not None:
            met = value >= limit if self.at_least else value <= limit
        return {"name": self.name, "figure": self.path, "value": value, "limit": limit, "unit": self.unit,
                "comparison": ">=" if self.at_least else "<=", "met": met}


# ----------------------------------------------------------------------------- machine and processes


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, kernel, Python and the commit being measured."""
    mem_total = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=False).stdout.strip())
    return {"cores": len(os.sched_getaffinity(0)), "loadavg_at_start": os.getloadavg()[0], "memory_bytes": mem_total,
            "memory_gib": round(mem_total / 2**30, 1), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit + ("-dirty" if dirty else "")}


@dataclass(frozen=True)
class ProcSample:
    """One process's resident memory and CPU time at a moment."""

    rss_bytes: int
    hwm_bytes: int  # peak resident memory so far
    cpu_seconds: float  # user + system of the process itself
    children_cpu_seconds: float  # of its reaped children (ctr, CNI plugins, …)


def proc_sample(pid: int) -> ProcSample | None:
    """Read /proc/<pid>/status and /stat; None when the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    # Fields after the command: state is [0], utime [11], stime [12], cutime [13], cstime [14].
    return ProcSample(rss_bytes=values.get("VmRSS", 0), hwm_bytes=values.get("VmHWM", 0),
                      cpu_seconds=(int(stat[11]) + int(stat[12])) / CLOCK_TICKS,
                      children_cpu_seconds=(int(stat[13]) + int(stat[14])) / CLOCK_TICKS)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, everything but idle and iowait) since boot."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def process_start_time(pid: int) -> float | None:
    """When a process started, as epoch seconds (clock-tick resolution, 10 ms)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as stat:
            boot = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / CLOCK_TICKS


def mib(value: float | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


# ----------------------------------------------------------------------------- profiles


class Profiler:
    """py-spy sampling one process into a collapsed-stack file until stopped (py-spy must be installed).

    `--nonblocking` keeps the target running while sampled (no pauses, a little less exact); idle
    samples (a thread waiting in epoll) are left out by py-spy, so shares are of the time on CPU.
    """

    def __init__(self, pid: int, path: Path, *, rate: int = 100) -> None:
        beside = Path(sys.executable).parent / "py-spy"  # a venv's, when the venv is not activated
        self.binary = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        if self.binary is None:
            raise click.ClickException("--profile needs py-spy (pip install py-spy)")
        self.pid = pid
        self.path = path
        self.rate = rate
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        assert self.binary is not None
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.path),
            "--rate", str(self.rate), "--nonblocking", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def stop(self, *, top: int = 25) -> dict[str, Any]:
        """Stop sampling; the top entries by own time and by inclusive time."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return collapsed_top(self.path, top=top) if self.path.exists() else {}


def collapsed_top(path: Path, *, top: int = 25) -> dict[str, Any]:
    """Summarize a collapsed-stack file, for the asyncio event loop's thread (where our code runs).

    Shares are of the loop thread's samples; `loop_waiting_percent` is the part spent in epoll (waiting
    for work), so 100 minus it is how busy the loop was while sampled. Other threads (gRPC's poller)
    only get their share of all samples.
    """
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = loop = waiting = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if not any(f.startswith("BaseEventLoop._run_once") for f in frames):
            continue
        loop += count
        if frames[-1].startswith("EpollSelector.select"):
            waiting += count
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(table: dict[str, int]) -> list[list[Any]]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [[round(100 * n / loop, 1), frame] for frame, n in rows]

    return {"samples": total, "file": str(path),
            "loop_thread_percent": round(100 * loop / total, 1) if total else None,
            "loop_waiting_percent": round(100 * waiting / loop, 1) if loop else None,
            "own_percent": ranked(own), "inclusive_percent": ranked(inclusive)}


# ----------------------------------------------------------------------------- a little HTTP


async def http_get(host: str, port: int, path: str, *, timeout: float = 5.0) -> bytes:
    """GET over plain HTTP/1.0 (etcd's /metrics and /health); returns the body, raises on non-200."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1:2] != [b"200"]:
        raise RuntimeError(f"GET {path} on {host}:{port}: {head[:80]!r}")
    return body


def prometheus_values(text: str, names: Iterable[str]) -> dict[str, float]:
    """Sum of each named metric's samples (over all label sets) in Prometheus text format."""
    wanted = set(names)
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        name = metric.split("{", 1)[0]
        if name in wanted:
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


# ----------------------------------------------------------------------------- report


@dataclass
class Report:
    """One benchmark's results: config, runs, summary, targets, and notes."""

    benchmark: str
    config: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    date: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def finish(self, targets: Sequence[Target] = ()) -> None:
        self.summary = summarize(self.runs)
        self.targets = [t.check(self.summary) for t in targets]

    def as_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "date": self.date, "machine": self.machine, "config": self.config,
                "runs": self.runs, "summary": self.summary, "targets": self.targets, "notes": self.notes}

    def write(self, path: Path | None) -> Path:
        if path is None:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = RESULTS_DIR / f"{self.benchmark}-{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=1, default=str) + "\n")
        return path

    def table(self, rows: Sequence[tuple[str, str, str]]) -> str:
        """A text table of (label, summary path, unit) rows plus the targets."""
        m = self.machine
        lines = [f"{self.benchmark}: {self.date}, {m['cores']} cores, {m['memory_gib']} GiB, "
                 f"commit {m['commit']}, {len(self.runs)} run(s)"]
        header = ("figure", "median", "min", "max", "unit")
        body = []
        for label, path, unit in rows:
            cell = lookup(self.summary, path)
            if not isinstance(cell, Mapping):
                continue
            body.append((label, _fmt(cell.get("median")), _fmt(cell.get("min")), _fmt(cell.get("max")), unit))
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        fmt_row = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        lines += [fmt_row.format(*header), fmt_row.format(*("-" * w for w in widths))]
        lines += [fmt_row.format(*row) for row in body]
        if self.targets:
            lines.append("")
            lines.append("targets:")
            for t in self.targets:
                verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
                lines.append(f"  {verdict:6} {t['name']}: {_fmt(t['value'])} {t['comparison']} "
                             f"{_fmt(t['limit'])} {t['unit']}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def emit(report: Report, *, rows: Sequence[tuple[str, str, str]], json_path: Path | None,
         targets: Sequence[Target] = ()) -> Path:
    """Summarize, print the table, write the JSON; returns where it went."""
    report.finish(targets)
    print(report.table(rows))
    path = report.write(json_path)
    print(f"JSON: {path}")
    return path


# ----------------------------------------------------------------------------- CLI plumbing


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--runs, --json, --workdir, --keep-workdir, shared by every benchmark command."""
    fn = click.option("--keep-workdir", is_flag=True, help="Keep logs and data after the run.")(fn)
    fn = click.option("--workdir", type=click.Path(path_type=Path), default=None,
                      help="Where processes keep data and logs.  [default: a new dir in /tmp]")(fn)
    fn = click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
                      help="Where to write the JSON report.  [default: bench/results/<name>-<time>.json]")(fn)
    return fn


def interrupt_on_sigterm() -> None:
    """SIGTERM acts as Ctrl-C: asyncio.run then cancels the benchmark's task, so its `finally` blocks stop
    the processes it started (SIGTERM's default would leave etcd, the master and kubelets running)."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: os.kill(os.getpid(), signal.SIGINT))


class Workdir:
    """A benchmark's directory: made fresh, removed at the end unless kept (or the run failed)."""

    def __init__(self, given: Path | None, *, name: str, keep: bool) -> None:
        interrupt_on_sigterm()
        self.keep = keep or given is not None
        self.path = Path(given) if given is not None else Path(tempfile.mkdtemp(prefix=f"kyb-{name}-", dir="/tmp"))
        self.path.mkdir(parents=True, exist_ok=True)

    def sub(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self, *, failed: bool) -> None:
        if failed or self.keep:
            print(f"logs and data kept in {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise click.ClickException(f"{what} needs root (containerd, network namespaces, CNI)")
