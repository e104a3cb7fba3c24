"""Control-plane scale: etcd + kyb-master + N hollow Nodes, then Deployments totalling P pods.

    python -m bench.control_plane                       # N=100 and N=1000, P = 10 pods per Node, 3 runs
    python -m bench.control_plane --nodes 1000 --runs 1

Per run and per N, on a fresh etcd and master:
1. N hollow Nodes (`kyb-kubelet --runtime hollow`, `--per-process` Nodes per process, each with its own
   stream and the default 1 s heartbeat) register; the time until all are Ready is recorded.
2. Idle: etcd's revision and write counters over `--idle-window` seconds (120 s covers one refresh of
   every Node's lastHeartbeatTime, so the rate is unbiased), with master and etcd CPU; then the API
   probe alone for `--idle-probe` seconds.
3. Load: Deployments of `--deployment-size` replicas totalling P pods are created at once, while an API
   probe and a watch probe (separate processes, `bench.probes`) run. A watch on the namespace times
   every pod: first seen (created), bound (spec.nodeName set), Running.
   Scheduling throughput = P / (last bound - first created); the pods' creation rate (the ReplicaSet
   controller's) is reported next to it, since scheduling can never run ahead of creation.
4. Master and etcd resident memory (and peak) and CPU seconds during the load phase.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path
from typing import Any

import click

from bench.cluster import ControlPlane, HollowGroup, PodTracker, wait_nodes_ready
from bench.common import (
    Profiler,
    Report,
    Target,
    Workdir,
    common_options,
    emit,
    machine_busy_seconds,
    mib,
    percentiles,
    proc_sample,
)
from bench.failover import NodeWatch
from bench.probes import ProbeProcess
from harness.builders import make_deployment
from harness.kubelet import BUSYBOX
from kybernetes.ctl.client import Client

NAME = "control_plane"
MIN_PROBE_SECONDS = 5.0
API_OPS = ("create", "get", "list", "update", "delete")


def node_mask(nodes: int) -> int:
    """The smallest pod range per Node (at least /26) that gives N Nodes a range of 10.244.0.0/16."""
    mask = 26
    while 2 ** (mask - 16) - 1 < nodes:
        mask += 1
    if mask > 28:
        raise click.BadParameter(f"{nodes} Nodes do not fit in 10.244.0.0/16", param_hint="--nodes")
    return mask


async def measure_idle_writes(cp: ControlPlane, *, window: float) -> dict[str, Any]:
    """etcd writes and master/etcd CPU over a window in which nothing but heartbeats happens."""
    before = await cp.etcd_metrics()
    master0, etcd0 = proc_sample(cp.master_pid), proc_sample(cp.etcd_pid)
    began = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - began
    after = await cp.etcd_metrics()
    master1, etcd1 = proc_sample(cp.master_pid), proc_sample(cp.etcd_pid)
    revisions = after["etcd_debugging_mvcc_current_revision"] - before["etcd_debugging_mvcc_current_revision"]
    puts = after.get("etcd_mvcc_put_total", 0) - before.get("etcd_mvcc_put_total", 0)
    assert master0 and master1 and etcd0 and etcd1
    return {"window_s": elapsed, "etcd_revisions": revisions, "etcd_puts": puts,
            "etcd_writes_per_s": revisions / elapsed,
            "master_cpu_percent": 100 * (master1.cpu_seconds - master0.cpu_seconds) / elapsed,
            "etcd_cpu_percent": 100 * (etcd1.cpu_seconds - etcd0.cpu_seconds) / elapsed}


def latency_block(samples: dict[str, list[float]], ops: tuple[str, ...]) -> dict[str, Any]:
    return {op: percentiles(samples.get(op, [])) for op in ops}


async def one_run(*, nodes: int, pods: int, deployment_size: int, per_process: int, idle_window: float,
                  idle_probe: float, api_rate: float, watch_rate: float, timeout: float, workdir: Path,
                  master_log_level: str, profile_dir: Path | None = None,
                  split_controllers: bool = False, masters: int = 1) -> dict[str, Any]:
    mask = node_mask(nodes)
    cp = ControlPlane(workdir=workdir, log_level=master_log_level, split_controllers=split_controllers,
                      masters=masters,
                      master_args=["--cluster-cidr", "10.244.0.0/16", "--node-cidr-mask-size", str(mask)])
    groups: list[HollowGroup] = []
    result: dict[str, Any] = {"nodes": nodes, "pods": pods, "loadavg_before": os.getloadavg()[0]}
    profiles: dict[str, Any] = {}
    await cp.start()
    try:
        max_pods = min(110, 2 ** (32 - mask) - 3)
        sizes = [per_process] * (nodes // per_process) + ([nodes % per_process] if nodes % per_process else [])
        join = await cp.join()
        groups = [HollowGroup(master=cp.join_rotated(join, i), prefix=f"hollow{i}", count=size, workdir=workdir,
                              max_pods=max_pods)
                  for i, size in enumerate(sizes)]
        async with cp.client(timeout=30.0) as client:
            profiler = Profiler(cp.master_pid, profile_dir / f"n{nodes}-register.txt") if profile_dir else None
            if profiler:
                await profiler.start()
            await asyncio.gather(*(g.start() for g in groups))
            names = {n for g in groups for n in g.node_names()}
            result["nodes_ready_s"] = await wait_nodes_ready(client, names, timeout=timeout)
            if profiler:
                profiles["register"] = await profiler.stop()
            await asyncio.sleep(min(5.0, idle_window))  # registration's last writes settle
            result["idle"] = await measure_idle_writes(cp, window=idle_window)
            result["idle"]["etcd_writes_per_s_per_100_nodes"] = result["idle"]["etcd_writes_per_s"] * 100 / nodes
            idle_sample = proc_sample(cp.master_pid)
            result["idle"]["master_rss_mib"] = mib(idle_sample.rss_bytes if idle_sample else None)
            others = [proc_sample(pid) for pid in cp.other_master_pids]
            if others:
                result["idle"]["other_masters_rss_mib"] = [mib(o.rss_bytes) for o in others if o is not None]

            probe = ProbeProcess("api", kubeconfig=cp.kubeconfig, rate=api_rate, namespace="bench-api-idle")
            await probe.start()
            await asyncio.sleep(idle_probe)
            idle_api = await probe.stop()
            result["api_idle"] = latency_block(idle_api.get("samples", {}), API_OPS)

            profiler = Profiler(cp.master_pid, profile_dir / f"n{nodes}-load.txt") if profile_dir else None
            if profiler:
                await profiler.start()
            ready_watch = NodeWatch(client)
            await ready_watch.start()
            result["load"] = await load_phase(cp, client, pods=pods, deployment_size=deployment_size,
                                              api_rate=api_rate, watch_rate=watch_rate, timeout=timeout,
                                              hollow_pids=[g.pid for g in groups])
            await ready_watch.stop()
            # Any Ready change of a Node while the pods were created, scheduled and started (all are healthy).
            result["load"]["node_ready_flaps"] = len(ready_watch.changes)
            if profiler:
                profiles["load"] = await profiler.stop()
            result["hollow_rss_mib_per_process"] = [
                mib(s.rss_bytes) for s in (proc_sample(g.pid) for g in groups) if s is not None]
    finally:
        for group in groups:
            await group.stop()
        await cp.stop()
    if profiles:
        result["_profile"] = profiles
    return result


async def load_phase(cp: ControlPlane, client: Client, *, pods: int, deployment_size: int, api_rate: float,
                     watch_rate: float, timeout: float, hollow_pids: list[int]) -> dict[str, Any]:
    tracker = PodTracker(client, namespace="default")
    await tracker.start()
    api = ProbeProcess("api", kubeconfig=cp.kubeconfig, rate=api_rate)
    watch = ProbeProcess("watch", kubeconfig=cp.kubeconfig, rate=watch_rate)
    await asyncio.gather(api.start(), watch.start())
    await asyncio.sleep(2.0)  # the probes connect and the watch probe's pod starts before the clock runs
    master0, etcd0 = proc_sample(cp.master_pid), proc_sample(cp.etcd_pid)
    others0 = _others_cpu(hollow_pids)
    cm_pid = cp.controller_manager_pid
    cm0 = proc_sample(cm_pid) if cm_pid else None
    metrics0 = await cp.etcd_metrics()
    count = math.ceil(pods / deployment_size)
    sizes = [deployment_size] * (pods // deployment_size) + ([pods % deployment_size] if pods % deployment_size else [])
    began = time.monotonic()
    await asyncio.gather(*(client.create(make_deployment(f"scale-{i}", replicas=size, image=BUSYBOX,
                                                         command=["sleep", "3600"]))
                           for i, size in enumerate(sizes)))
    timed_out = False
    try:
        await tracker.wait_running(pods, timeout=timeout, what=f"{pods} pods Running")
    except TimeoutError:
        timed_out = True
    ended = time.monotonic()
    master1, etcd1 = proc_sample(cp.master_pid), proc_sample(cp.etcd_pid)
    others1 = _others_cpu(hollow_pids)
    cm1 = proc_sample(cm_pid) if cm_pid else None
    metrics1 = await cp.etcd_metrics()
    # Tiny runs end before the probes have a sample of every call: keep probing a little.
    await asyncio.sleep(max(0.0, began + MIN_PROBE_SECONDS - time.monotonic()))
    api_result, watch_result = await asyncio.gather(api.stop(), watch.stop())
    await tracker.stop()

    seen = [p for p in tracker.pods.values() if p.namespace == "default"]
    created = sorted(p.created for p in seen)
    bound = sorted(p.bound for p in seen if p.bound is not None)
    running = sorted(p.running for p in seen if p.running is not None)
    assert master0 and master1 and etcd0 and etcd1
    out: dict[str, Any] = {
        "deployments": count,
        "timed_out": timed_out,
        "pods_seen": len(seen), "pods_bound": len(bound), "pods_running": len(running),
        "all_running_s": (running[-1] - began) if running and not timed_out else None,
        "pods_bound_per_s": len(bound) / (bound[-1] - created[0]) if len(bound) > 1 else None,
        "pods_created_per_s": len(created) / (created[-1] - began) if len(created) > 1 else None,
        "scheduler_bound_per_s": len(bound) / (bound[-1] - bound[0]) if len(bound) > 1 else None,
        "bind_latency_s": percentiles([p.bound - p.created for p in seen if p.bound is not None]),
        "running_latency_s": percentiles([p.running - p.created for p in seen if p.running is not None]),
        "api": latency_block(api_result.get("samples", {}), API_OPS),
        "api_conflicts": api_result.get("conflicts"),
        "api_errors": sum((api_result.get("errors") or {}).values()),
        "watch_latency_s": percentiles((watch_result.get("samples") or {}).get("watch", [])),
        "watch_events_at_driver": tracker.events,
        "master_rss_mib": mib(master1.rss_bytes), "master_peak_rss_mib": mib(master1.hwm_bytes),
        "master_cpu_s": master1.cpu_seconds - master0.cpu_seconds,
        "etcd_rss_mib": mib(etcd1.rss_bytes), "etcd_peak_rss_mib": mib(etcd1.hwm_bytes),
        "etcd_cpu_s": etcd1.cpu_seconds - etcd0.cpu_seconds,
        "etcd_writes": metrics1["etcd_debugging_mvcc_current_revision"]
        - metrics0["etcd_debugging_mvcc_current_revision"],
        "elapsed_s": ended - began,
    }
    out["etcd_writes_per_pod"] = out["etcd_writes"] / pods if pods else None
    # Everything else on the machine that this benchmark runs competes for the same cores.
    out["hollow_kubelets_cpu_s"] = others1["hollow"] - others0["hollow"]
    out["driver_cpu_s"] = others1["driver"] - others0["driver"]
    out["machine_cpu_s"] = others1["machine"] - others0["machine"]
    if cm0 is not None and cm1 is not None:
        out["controller_manager_rss_mib"] = mib(cm1.rss_bytes)
        out["controller_manager_peak_rss_mib"] = mib(cm1.hwm_bytes)
        out["controller_manager_cpu_s"] = cm1.cpu_seconds - cm0.cpu_seconds
    return out


def _others_cpu(hollow_pids: list[int]) -> dict[str, float]:
    samples = [proc_sample(pid) for pid in hollow_pids]
    driver = proc_sample(os.getpid())
    return {"hollow": sum(s.cpu_seconds for s in samples if s is not None),
            "driver": driver.cpu_seconds if driver else 0.0, "machine": machine_busy_seconds()}


ROWS_FOR = [
    ("Nodes Ready after start", "nodes_ready_s", "s"),
    ("idle: etcd writes/s", "idle.etcd_writes_per_s", "/s"),
    ("idle: etcd writes/s per 100 Nodes", "idle.etcd_writes_per_s_per_100_nodes", "/s"),
    ("idle: master CPU", "idle.master_cpu_percent", "%"),
    ("idle: master RSS", "idle.master_rss_mib", "MiB"),
    ("idle: API create p99", "api_idle.create.p99", "s"),
    ("idle: API update p99", "api_idle.update.p99", "s"),
    ("idle: API get p99", "api_idle.get.p99", "s"),
    ("idle: API list p99", "api_idle.list.p99", "s"),
    ("load: pods bound/s (creation→nodeName)", "load.pods_bound_per_s", "/s"),
    ("load: pods created/s (ReplicaSets)", "load.pods_created_per_s", "/s"),
    ("load: scheduler bound/s (first→last bind)", "load.scheduler_bound_per_s", "/s"),
    ("load: bind latency p50", "load.bind_latency_s.p50", "s"),
    ("load: bind latency p99", "load.bind_latency_s.p99", "s"),
    ("load: all pods Running after", "load.all_running_s", "s"),
    ("load: API create p50", "load.api.create.p50", "s"),
    ("load: API create p99", "load.api.create.p99", "s"),
    ("load: API get p50", "load.api.get.p50", "s"),
    ("load: API get p99", "load.api.get.p99", "s"),
    ("load: API list p50", "load.api.list.p50", "s"),
    ("load: API list p99", "load.api.list.p99", "s"),
    ("load: API update p50", "load.api.update.p50", "s"),
    ("load: API update p99", "load.api.update.p99", "s"),
    ("load: API delete p99", "load.api.delete.p99", "s"),
    ("load: watch latency p50", "load.watch_latency_s.p50", "s"),
    ("load: watch latency p99", "load.watch_latency_s.p99", "s"),
    ("load: master RSS", "load.master_rss_mib", "MiB"),
    ("load: master peak RSS", "load.master_peak_rss_mib", "MiB"),
    ("load: master CPU", "load.master_cpu_s", "s"),
    ("load: controller-manager RSS (--split-controllers)", "load.controller_manager_peak_rss_mib", "MiB"),
    ("load: controller-manager CPU", "load.controller_manager_cpu_s", "s"),
    ("load: etcd RSS", "load.etcd_rss_mib", "MiB"),
    ("load: etcd CPU", "load.etcd_cpu_s", "s"),
    ("load: etcd writes per pod", "load.etcd_writes_per_pod", ""),
    ("load: hollow kubelets' CPU", "load.hollow_kubelets_cpu_s", "s"),
    ("load: benchmark driver CPU (its watch)", "load.driver_cpu_s", "s"),
    ("load: machine CPU (all processes)", "load.machine_cpu_s", "s"),
    ("load: Node Ready flaps", "load.node_ready_flaps", ""),
]


def targets_for(key: str, nodes: int) -> list[Target]:
    """The issue's control-plane targets (the scheduling and memory ones are stated for 1,000 Nodes)."""
    out = [
        Target(f"N={nodes} heartbeating: API mutating p99 (create)", f"{key}.api_idle.create.p99", 0.050, "s"),
        Target(f"N={nodes} heartbeating: API mutating p99 (update)", f"{key}.api_idle.update.p99", 0.050, "s"),
        Target(f"N={nodes} heartbeating: API get p99", f"{key}.api_idle.get.p99", 0.010, "s"),
        Target(f"N={nodes} under the pods' load: API mutating p99 (create)", f"{key}.load.api.create.p99", 0.050,
               "s"),
        Target(f"N={nodes} under the pods' load: API mutating p99 (update)", f"{key}.load.api.update.p99", 0.050,
               "s"),
        Target(f"N={nodes} under the pods' load: API get p99", f"{key}.load.api.get.p99", 0.010, "s"),
        Target(f"N={nodes}: watch latency p99", f"{key}.load.watch_latency_s.p99", 0.050, "s"),
        Target(f"N={nodes}: idle etcd writes/s per 100 Nodes", f"{key}.idle.etcd_writes_per_s_per_100_nodes",
               1.0, "/s"),
        Target(f"N={nodes}: no Node Ready flaps under the pods' load", f"{key}.load.node_ready_flaps", 0, ""),
    ]
    if nodes >= 1000:
        out += [Target(f"N={nodes}: pods bound/s", f"{key}.load.pods_bound_per_s", 1000.0, "/s", at_least=True),
                Target(f"N={nodes}: master RSS", f"{key}.load.master_peak_rss_mib", 500.0, "MiB")]
    return out


@click.command()
@click.option("--nodes", "node_counts", type=click.IntRange(min=1), multiple=True,
              help="Hollow Nodes (repeatable).  [default: 100 and 1000]")
@click.option("--pods-per-node", type=click.IntRange(min=1), default=10, show_default=True,
              help="P = N × this (P = 10,000 at N = 1,000).")
@click.option("--pods", type=click.IntRange(min=1), default=None, help="P, overriding --pods-per-node.")
@click.option("--deployment-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--per-process", type=click.IntRange(min=1), default=250, show_default=True,
              help="Hollow Nodes per kubelet process.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--idle-window", type=click.FloatRange(min=0.5), default=120.0, show_default=True,
              help="Seconds of idle heartbeats to count etcd writes over.")
@click.option("--idle-probe", type=click.FloatRange(min=0.5), default=15.0, show_default=True,
              help="Seconds of API probing with idle Nodes.")
@click.option("--api-rate", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="API probe cycles per second (create, get, list, get+update).")
@click.option("--watch-rate", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Watch probe writes per second.")
@click.option("--timeout", type=click.FloatRange(min=1), default=900.0, show_default=True,
              help="Seconds allowed for Nodes to be Ready and for all P pods to be Running.")
@click.option("--master-log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--split-controllers", is_flag=True,
              help="Run the scheduler, ReplicaSet, Deployment and GC loops in a second kyb-master process "
                   "(--controllers), as kube-controller-manager; node lifecycle stays with the node link.")
@click.option("--masters", type=click.IntRange(1, 5), default=1, show_default=True,
              help="kyb-master processes on the one etcd (HA): one leads the control loops; the hollow kubelet "
                   "processes are spread over them.")
@click.option("--profile", "profile_dir", type=click.Path(path_type=Path), default=None,
              help="Sample the master with py-spy during registration and load; collapsed stacks go here and "
                   "the top entries into the JSON (runs[i].<n>._profile).")
@common_options
def main(node_counts: tuple[int, ...], pods_per_node: int, pods: int | None, deployment_size: int, per_process: int,
         runs: int, idle_window: float, idle_probe: float, api_rate: float, watch_rate: float, timeout: float,
         master_log_level: str, split_controllers: bool, masters: int, profile_dir: Path | None,
         json_path: Path | None,
         workdir: Path | None, keep_workdir: bool) -> None:
    """Control-plane scale with hollow Nodes: scheduling, API and watch latency, memory, idle etcd writes."""
    node_counts = node_counts or (100, 1000)
    work = Workdir(workdir, name=NAME, keep=keep_workdir)
    config = {"nodes": list(node_counts), "pods_per_node": pods_per_node, "pods": pods,
              "deployment_size": deployment_size, "per_process": per_process, "runs": runs,
              "idle_window_s": idle_window, "idle_probe_s": idle_probe, "api_rate": api_rate,
              "watch_rate": watch_rate, "master_log_level": master_log_level,
              "split_controllers": split_controllers, "masters": masters, "heartbeat_interval_s": 1.0,
              "hollow_start_delay_s": 0.5}
    report = Report(NAME, config)
    failed = True
    try:
        for run in range(runs):
            figures: dict[str, Any] = {}
            for n in node_counts:
                p = pods or n * pods_per_node
                print(f"run {run + 1}/{runs}: N={n}, P={p} ...", flush=True)
                figures[f"n{n}"] = asyncio.run(one_run(
                    nodes=n, pods=p, deployment_size=deployment_size, per_process=per_process,
                    idle_window=idle_window, idle_probe=idle_probe, api_rate=api_rate, watch_rate=watch_rate,
                    timeout=timeout, workdir=work.sub(f"run{run}-n{n}"), master_log_level=master_log_level,
                    profile_dir=profile_dir / f"run{run}" if profile_dir else None,
                    split_controllers=split_controllers, masters=masters))
            report.runs.append(figures)
        rows = [(f"N={n} {label}", f"n{n}.{path}", unit) for n in node_counts for label, path, unit in ROWS_FOR]
        targets = [t for n in node_counts for t in targets_for(f"n{n}", n)]
        emit(report, rows=rows, json_path=json_path, targets=targets)
        failed = False
    finally:
        work.close(failed=failed)


if __name__ == "__main__":
    main()
