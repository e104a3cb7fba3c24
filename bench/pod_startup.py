"""Pod startup on real containerd: one Node, images already imported, vs. plain `ctr run -d` with CNI.

    python -m bench.pod_startup                 # 3 runs: 20 single pods, 30 pods at once, and the floor

Per run, on a fresh etcd + kyb-master (all controllers) and one real kyb-kubelet (its defaults, on a
private containerd; pod network on a reserved /24):
* single: `--single-samples` times, one pod created (scheduled, not pre-bound), timed from the create
  call to the watch seeing it Running; deleted and gone before the next one;
* batch: `--batch` pods created at once (concurrent create calls): makespan until the watch sees all
  Running, each pod's startup p50/p99, and the kubelet's resident memory with them running;
* floor, in the same run on the same daemon: the same counts of plain containers (netns + CNI bridge
  ADD + `ctr run -d`), all at once and with one start per core; the floor is the faster of the two.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import click

from bench.cluster import ControlPlane, PodSeen, PodTracker, delete, wait_nodes_ready
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
    require_root,
)
from bench.nodes import (
    SLEEPER,
    Floor,
    PrivateContainerd,
    RealNode,
    build_images,
    host_guard,
    new_slice,
    pod_subnet,
)
from harness.builders import make_pod
from harness.containerd import ContainerdDaemon, cleanup_namespace
from kybernetes.ctl.client import Client

NAME = "pod_startup"



def _named(name: str, pod: PodSeen) -> bool:
    return pod.name == name

async def delete_all(client: Client, tracker: PodTracker, names: list[str], *, timeout: float = 120) -> None:
    await asyncio.gather(*(delete(client, "pods", n) for n in names))
    wanted = set(names)
    await tracker.wait_gone(timeout=timeout, selector=lambda p: p.name in wanted)


async def floor_figures(floor: Floor, *, single: int, batch: int, host_network: bool) -> dict[str, Any]:
    singles = []
    for _ in range(single):
        singles.append((await floor.batch(1, concurrency=None, host_network=host_network)).makespan)
        await floor.clear()
    variants: dict[str, dict[str, Any]] = {}
    for label, concurrency in (("all_at_once", None), ("per_core", os.cpu_count() or 2)):
        busy0, times0 = machine_busy_seconds(), os.times()
        result = await floor.batch(batch, concurrency=concurrency, host_network=host_network)
        busy1, times1 = machine_busy_seconds(), os.times()
        await floor.clear()
        variants[label] = {"makespan_s": result.makespan, "startup_s": percentiles(result.latencies),
                           "machine_cpu_s": busy1 - busy0,
                           # ctr, CNI and ip run as this process's children, as they do the kubelet's
                           "children_cpu_s": (times1.children_user + times1.children_system)
                           - (times0.children_user + times0.children_system)}
    best = min(variants.values(), key=lambda v: v["makespan_s"])
    return {"single_s": percentiles(singles), **variants, "makespan_s": best["makespan_s"]}


async def one_run(*, daemon: ContainerdDaemon, images: dict[str, Path], workdir: Path, single: int, batch: int,
                  timeout: float, profile_dir: Path | None = None,
                  kubelet_args: tuple[str, ...] = ()) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with pod_subnet(odd=True) as cidr, pod_subnet() as floor_cidr:
        cp = ControlPlane(workdir=workdir, master_args=["--cluster-cidr", _supernet(cidr)])
        env = new_slice(daemon, workdir / "node", pod_cidr=cidr, images=images)
        floor_env = new_slice(daemon, workdir / "floor", pod_cidr=floor_cidr, images=images)
        node: RealNode | None = None
        await cp.start()
        try:
            node = RealNode(master=await cp.join(), env=env, name="bench-node", log_dir=workdir,
                            extra_args=kubelet_args)
            await node.start()
            async with cp.client() as client:
                await wait_nodes_ready(client, {node.name}, timeout=60)
                tracker = PodTracker(client, namespace="default")
                await tracker.start()
                # One warm-up pod: the first start also pays for the image's first unpacked snapshot use.
                await client.create(make_pod("warmup", command=SLEEPER, grace_seconds=1))
                await tracker.wait_running(1, timeout=timeout, selector=lambda p: p.name == "warmup")
                await delete_all(client, tracker, ["warmup"])

                singles = []
                for i in range(single):
                    began = time.monotonic()
                    await client.create(make_pod(f"single-{i}", command=SLEEPER, grace_seconds=1))
                    done = await tracker.wait_running(1, timeout=timeout,
                                                      selector=functools.partial(_named, f"single-{i}"))
                    singles.append(done - began)
                    await delete_all(client, tracker, [f"single-{i}"])
                result["single_s"] = percentiles(singles)

                names = [f"batch-{i}" for i in range(batch)]
                profiler = Profiler(node.pid, profile_dir / "kubelet-batch.txt") if profile_dir else None
                if profiler:
                    await profiler.start()
                pids = {"kubelet": node.pid, "master": cp.master_pid, "etcd": cp.etcd_pid,
                        "containerd": daemon.pid, "benchmark_driver": os.getpid()}
                before = {name: proc_sample(pid) for name, pid in pids.items()}
                kubelet0, busy0 = proc_sample(node.pid), machine_busy_seconds()
                began = time.monotonic()
                await asyncio.gather(*(client.create(make_pod(n, command=SLEEPER, grace_seconds=1)) for n in names))
                wanted = set(names)
                await tracker.wait_running(batch, timeout=timeout, selector=lambda p: p.name in wanted)
                kubelet1, busy1 = proc_sample(node.pid), machine_busy_seconds()
                pods = [p for p in tracker.pods.values() if p.name in wanted]
                latencies = [p.running - began for p in pods if p.running is not None]
                result["batch"] = {"makespan_s": max(latencies), "startup_s": percentiles(latencies),
                                   "machine_cpu_s": busy1 - busy0}
                if kubelet0 and kubelet1:
                    result["batch"]["kubelet_cpu_s"] = kubelet1.cpu_seconds - kubelet0.cpu_seconds
                    result["batch"]["kubelet_children_cpu_s"] = \
                        kubelet1.children_cpu_seconds - kubelet0.children_cpu_seconds
                after = {name: proc_sample(pid) for name, pid in pids.items()}
                result["batch"]["cpu_s"] = {
                    name: after[name].cpu_seconds - before[name].cpu_seconds  # type: ignore[union-attr]
                    for name in pids if before[name] and after[name]}
                if profiler:
                    result["_profile"] = await profiler.stop()
                sample = proc_sample(node.pid)
                result["kubelet_rss_mib_with_batch"] = mib(sample.rss_bytes if sample else None)
                await delete_all(client, tracker, names)
                await tracker.stop()

            floor = Floor(floor_env, pod_cidr=floor_cidr, workdir=workdir / "floor")
            result["floor"] = await floor_figures(floor, single=single, batch=batch, host_network=False)
            result["batch_vs_floor"] = result["batch"]["makespan_s"] / result["floor"]["makespan_s"]
            result["single_vs_floor_p50"] = result["single_s"]["p50"] / result["floor"]["single_s"]["p50"]
        finally:
            if node is not None:
                await node.stop()
                node.cleanup()
            cleanup_namespace(floor_env)
            await cp.stop()
    return result


def _supernet(cidr: str) -> str:
    """The /23 whose upper /24 is `cidr`: the master skips a cluster's first range, so the Node gets cidr."""
    return str(ipaddress.ip_network(cidr).supernet(new_prefix=23))


ROWS = [
    ("1 pod: creation→Running p50", "single_s.p50", "s"),
    ("1 pod: creation→Running p99", "single_s.p99", "s"),
    ("batch: all Running (makespan)", "batch.makespan_s", "s"),
    ("batch: per-pod startup p50", "batch.startup_s.p50", "s"),
    ("batch: per-pod startup p99", "batch.startup_s.p99", "s"),
    ("floor: 1 container p50", "floor.single_s.p50", "s"),
    ("floor: batch makespan (best)", "floor.makespan_s", "s"),
    ("floor: batch all at once", "floor.all_at_once.makespan_s", "s"),
    ("floor: batch one per core", "floor.per_core.makespan_s", "s"),
    ("floor: per-container p50 (all at once)", "floor.all_at_once.startup_s.p50", "s"),
    ("batch: machine CPU while starting", "batch.machine_cpu_s", "s"),
    ("batch: kubelet CPU (own)", "batch.kubelet_cpu_s", "s"),
    ("batch: kubelet's children CPU (ctr, CNI, ip)", "batch.kubelet_children_cpu_s", "s"),
    ("batch: master CPU", "batch.cpu_s.master", "s"),
    ("batch: etcd CPU", "batch.cpu_s.etcd", "s"),
    ("batch: containerd CPU", "batch.cpu_s.containerd", "s"),
    ("batch: benchmark driver CPU (its watch)", "batch.cpu_s.benchmark_driver", "s"),
    ("floor: machine CPU (all at once)", "floor.all_at_once.machine_cpu_s", "s"),
    ("floor: ctr, CNI and ip CPU (all at once)", "floor.all_at_once.children_cpu_s", "s"),
    ("batch makespan / floor", "batch_vs_floor", "×"),
    ("1 pod p50 / floor 1 container p50", "single_vs_floor_p50", "×"),
    ("kubelet RSS with the batch running", "kubelet_rss_mib_with_batch", "MiB"),
]

TARGETS = [
    Target("one pod Running after creation (p50)", "single_s.p50", 0.5, "s"),
    Target("batch all Running within 1.3× the floor", "batch_vs_floor", 1.3, "×"),
    Target("pod startup p99 (Kubernetes SLO)", "batch.startup_s.p99", 5.0, "s"),
]


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--single-samples", type=click.IntRange(min=1), default=20, show_default=True,
              help="Single pods started one after another per run.")
@click.option("--batch", type=click.IntRange(min=1), default=30, show_default=True,
              help="Pods created at once.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True)
@click.option("--profile", "profile_dir", type=click.Path(path_type=Path), default=None,
              help="Sample the kubelet with py-spy while the batch starts (collapsed stacks here, top entries in "
                   "runs[i]._profile).")
@click.option("--kubelet-arg", "kubelet_args", multiple=True, metavar="FLAG",
              help="An extra kyb-kubelet flag (repeatable), e.g. --kubelet-arg=--no-seccomp-default to measure "
                   "the seccomp profile's share.")
@common_options
def main(runs: int, single_samples: int, batch: int, timeout: float, profile_dir: Path | None,
         kubelet_args: tuple[str, ...], json_path: Path | None, workdir: Path | None, keep_workdir: bool) -> None:
    """Pod startup on one real Node vs. plain containerd + CNI."""
    require_root(NAME)
    work = Workdir(workdir, name=NAME, keep=keep_workdir)
    report = Report(NAME, {"runs": runs, "single_samples": single_samples, "batch": batch,
                           "kubelet_args": list(kubelet_args),
                           "image": "kyb/busybox:1", "command": list(SLEEPER)})
    failed = True
    containerd = PrivateContainerd()
    try:
        with host_guard(), containerd:
            images = build_images(work.sub("images"))
            daemon = containerd.start()
            for run in range(runs):
                print(f"run {run + 1}/{runs} ...", flush=True)
                report.runs.append(asyncio.run(one_run(daemon=daemon, images=images, workdir=work.sub(f"run{run}"),
                                                       single=single_samples, batch=batch, timeout=timeout,
                                                       profile_dir=profile_dir / f"run{run}" if profile_dir else None,
                                                       kubelet_args=kubelet_args)))
        report.config["floor"] = "ip netns add + lo up + CNI bridge ADD + ctr run -d --with-ns (best of all-at-once "\
                                 "and one-per-core)"
        emit(report, rows=ROWS, json_path=json_path, targets=TARGETS)
        failed = False
    finally:
        work.close(failed=failed)


if __name__ == "__main__":
    main()
