"""Convergence and rolling updates on one real Node, with pod networking and with hostNetwork.

    python -m bench.convergence            # 3 runs

Per run, on a fresh etcd + kyb-master (all controllers) and one real kyb-kubelet (defaults) on a
private containerd, for each network mode (pod network, then `hostNetwork: true`):
* a Deployment of `--replicas` (50) created: time from the create call until the watch sees all Running;
* scaled to twice that (100): time from the update until all Running;
* deleted, then twice that created from scratch: time until all Running (Swarm's "100 replicas");
* the floor in the same run: the same counts of plain containers (netns + CNI ADD + `ctr run -d`, or
  `ctr run -d --net-host`), 50 at once, 50 more next to them, and 100 from scratch, each all at once
  and with one start per core; the floor is the faster;
* a rolling update of `--rollout-replicas` (20) from kyb/hello:v1 to v2 with maxSurge 1 / maxUnavailable 0,
  timed from the update to the rollout being complete (`kybctl rollout status`'s condition); then
  back to v1 with maxSurge 10.
Once per run, with pod networking: the kubelet's resident memory with 30 pods running (first on the
fresh kubelet, again after the 100-pod phases, since a Python process keeps the heap it grew), and a killed
container's restart: the first restart (no back-off in Kubernetes' policy) from SIGKILL to running, and
the second one, killed at once, measured from the back-off's expiry. containerd's own events give the
times: the back-off expires `--backoff` s after the restart that started it, whose first containerd
event (/containers/create) comes a few ms after the kubelet's decision, so the "after back-off"
figure errs slightly low; the upper bound counts from the first kill instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from bench.cluster import (
    ControlPlane,
    PodTracker,
    delete,
    modify,
    wait_nodes_ready,
    wait_rollout,
)
from bench.common import (
    Report,
    Target,
    Workdir,
    common_options,
    emit,
    lookup,
    machine_busy_seconds,
    mib,
    proc_sample,
    require_root,
)
from bench.nodes import (
    HELLO_V1,
    HELLO_V2,
    SLEEPER,
    ContainerdEvents,
    Floor,
    PrivateContainerd,
    RealNode,
    build_images,
    host_guard,
    new_slice,
    pod_subnet,
    sleeper,
    task_pids,
)
from bench.pod_startup import _supernet
from harness.builders import make_deployment, make_pod
from harness.containerd import ContainerdDaemon, cleanup_namespace
from harness.kubelet import BUSYBOX
from kybernetes.ctl.client import Client
from kybernetes.proto import objects_pb2 as pb

NAME = "convergence"
MODES = (("pod_network", False), ("host_network", True))


def app(name: str) -> Any:
    return lambda p: p.labels.get("app") == name


async def delete_deployment(client: Client, tracker: PodTracker, name: str, *, timeout: float) -> None:
    await delete(client, "deployments", name, propagation_policy="Background")
    await tracker.wait_gone(timeout=timeout, selector=app(name))


async def converge(client: Client, tracker: PodTracker, *, mode: str, host_network: bool, replicas: int,
                   timeout: float, pids: dict[str, int]) -> dict[str, Any]:
    name = f"conv-{mode.replace('_', '-')}"
    before, busy0 = {key: proc_sample(pid) for key, pid in pids.items()}, machine_busy_seconds()
    began = time.monotonic()
    await client.create(make_deployment(name, replicas=replicas, image=BUSYBOX, command=sleeper(host_network),
                                        host_network=host_network))
    created_s = await tracker.wait_running(replicas, timeout=timeout, selector=app(name)) - began
    after, busy1 = {key: proc_sample(pid) for key, pid in pids.items()}, machine_busy_seconds()
    # Where the create phase's CPU went (on 2 cores a batch of starts is CPU-bound).
    cpu: dict[str, float] = {"machine": busy1 - busy0}
    for key in pids:
        first, last = before[key], after[key]
        if first and last:
            cpu[key] = last.cpu_seconds - first.cpu_seconds
            if key == "kubelet":
                cpu["kubelet_children"] = last.children_cpu_seconds - first.children_cpu_seconds

    def scale(d: pb.Deployment) -> None:
        d.spec.replicas = 2 * replicas

    began = time.monotonic()
    await modify(client, "deployments", name, scale)
    scaled_s = await tracker.wait_running(2 * replicas, timeout=timeout, selector=app(name)) - began
    await delete_deployment(client, tracker, name, timeout=timeout)

    name2 = name + "-x2"
    began = time.monotonic()
    await client.create(make_deployment(name2, replicas=2 * replicas, image=BUSYBOX, command=sleeper(host_network),
                                        host_network=host_network))
    double_s = await tracker.wait_running(2 * replicas, timeout=timeout, selector=app(name2)) - began
    await delete_deployment(client, tracker, name2, timeout=timeout)
    return {"create_s": created_s, "scale_s": scaled_s, "create_double_s": double_s, "create_cpu_s": cpu}


async def floor_convergence(floor: Floor, *, host_network: bool, replicas: int) -> dict[str, Any]:
    variants: dict[str, dict[str, float]] = {}
    for label, concurrency in (("all_at_once", None), ("per_core", os.cpu_count() or 2)):
        first = await floor.batch(replicas, concurrency=concurrency, host_network=host_network)
        second = await floor.batch(replicas, concurrency=concurrency, host_network=host_network)
        await floor.clear()
        double = await floor.batch(2 * replicas, concurrency=concurrency, host_network=host_network)
        await floor.clear()
        variants[label] = {"create_s": first.makespan, "scale_s": second.makespan,
                           "create_double_s": double.makespan}
    best = {key: min(v[key] for v in variants.values()) for key in ("create_s", "scale_s", "create_double_s")}
    return {**variants, **best}


async def rolling(client: Client, *, mode: str, host_network: bool, replicas: int, timeout: float) -> dict[str, Any]:
    name = f"roll-{mode.replace('_', '-')}"
    await client.create(make_deployment(name, replicas=replicas, image=HELLO_V1, command=sleeper(host_network),
                                        host_network=host_network, max_surge=1, max_unavailable=0))
    await wait_rollout(client, name, timeout=timeout)
    out: dict[str, Any] = {}
    for label, surge, image in (("surge1_s", 1, HELLO_V2), ("surge10_s", 10, HELLO_V1)):
        def change(d: pb.Deployment, surge: int = surge, image: str = image) -> None:
            d.spec.strategy.rolling_update.max_surge.int_val = surge
            d.spec.template.spec.containers[0].image = image

        began = time.monotonic()
        await modify(client, "deployments", name, change)
        out[label] = await wait_rollout(client, name, timeout=timeout) - began
    await delete(client, "deployments", name, propagation_policy="Background")
    return out


async def kubelet_rss(client: Client, tracker: PodTracker, node: RealNode, *, pods: int,
                      timeout: float) -> dict[str, Any]:
    idle = proc_sample(node.pid)
    await client.create(make_deployment("rss", replicas=pods, image=BUSYBOX, command=SLEEPER))
    await tracker.wait_running(pods, timeout=timeout, selector=app("rss"))
    await asyncio.sleep(3.0)  # a relist and the status reports run with all of them
    loaded = proc_sample(node.pid)
    await delete_deployment(client, tracker, "rss", timeout=timeout)
    return {"idle_mib": mib(idle.rss_bytes if idle else None),
            "with_pods_mib": mib(loaded.rss_bytes if loaded else None), "pods": pods}


async def restart_latency(client: Client, tracker: PodTracker, node: RealNode, *, backoff: float,
                          timeout: float) -> dict[str, Any]:
    events = ContainerdEvents(node.env)
    await events.start()
    offset = time.time() - time.monotonic()
    try:
        await client.create(make_pod("crash", command=SLEEPER, grace_seconds=1))
        await tracker.wait_running(1, timeout=timeout, selector=lambda p: p.name == "crash")

        def restarted(count: int) -> bool:
            pod = next((p.last for p in tracker.live() if p.name == "crash"), None)
            if pod is None or not pod.status.container_statuses:
                return False
            status = pod.status.container_statuses[0]
            return status.restart_count >= count and status.state.HasField("running")

        async def kill_and_wait(count: int, wait: float) -> tuple[float, float]:
            pids = {cid: pid for cid, pid in task_pids(node.env).items() if cid.startswith("crash-")}
            if len(pids) != 1:
                raise RuntimeError(f"expected one running crash container, found {pids}")
            killed = time.time()
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            seen = await tracker.wait_for(lambda: restarted(count), timeout=wait,
                                          what=f"restart {count} of the killed container")
            return killed, seen + offset

        kill1, running1 = await kill_and_wait(1, timeout)
        kill2, running2 = await kill_and_wait(2, backoff + timeout)
        await asyncio.sleep(0.3)  # the last containerd events arrive
        create1 = events.first("/containers/create", after=kill1, key="id", value="crash-")
        start1 = events.first("/tasks/start", after=kill1, key="container_id", value="crash-")
        start2 = events.first("/tasks/start", after=kill2, key="container_id", value="crash-")
        await delete(client, "pods", "crash")
        if create1 is None or start1 is None or start2 is None:
            raise RuntimeError("containerd events of the restarts are missing")
        expiry = create1 + backoff
        return {"backoff_s": backoff,
                "immediate_restart_s": start1 - kill1,
                "immediate_restart_watch_s": running1 - kill1,
                "after_backoff_s": start2 - expiry,
                "after_backoff_upper_s": start2 - (kill1 + backoff),
                "after_backoff_watch_s": running2 - expiry}
    finally:
        await events.stop()


async def one_run(*, daemon: ContainerdDaemon, images: dict[str, Path], workdir: Path, replicas: int,
                  rollout_replicas: int, rss_pods: int, backoff: float, timeout: float,
                  modes: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with pod_subnet(odd=True) as cidr, pod_subnet() as floor_cidr:
        cp = ControlPlane(workdir=workdir, master_args=["--cluster-cidr", _supernet(cidr)])
        env = new_slice(daemon, workdir / "node", pod_cidr=cidr, images=images)
        floor_env = new_slice(daemon, workdir / "floor", pod_cidr=floor_cidr, images=images)
        node: RealNode | None = None
        await cp.start()
        try:
            node = RealNode(master=await cp.join(), env=env, name="bench-node", log_dir=workdir,
                            extra_args=["--backoff-base", str(backoff)])
            await node.start()
            floor = Floor(floor_env, pod_cidr=floor_cidr, workdir=workdir / "floor")
            async with cp.client() as client:
                await wait_nodes_ready(client, {node.name}, timeout=60)
                tracker = PodTracker(client, namespace="default", keep_objects=True)
                await tracker.start()
                # First, on a kubelet that has run nothing else yet (Python keeps the heap it grew).
                result["kubelet_rss"] = await kubelet_rss(client, tracker, node, pods=rss_pods, timeout=timeout)
                for mode, host_network in MODES:
                    if mode not in modes:
                        continue
                    print(f"  {mode} ...", flush=True)
                    pids = {"kubelet": node.pid, "master": cp.master_pid, "etcd": cp.etcd_pid,
                                            "containerd": daemon.pid, "benchmark_driver": os.getpid()}
                    figures = await converge(client, tracker, mode=mode, host_network=host_network,
                                             replicas=replicas, timeout=timeout, pids=pids)
                    figures["floor"] = await floor_convergence(floor, host_network=host_network, replicas=replicas)
                    for key in ("create_s", "scale_s", "create_double_s"):
                        figures[key.replace("_s", "_vs_floor")] = figures[key] / figures["floor"][key]
                    figures["rollout"] = await rolling(client, mode=mode, host_network=host_network,
                                                       replicas=rollout_replicas, timeout=timeout)
                    await tracker.wait_gone(timeout=timeout, selector=app(f"roll-{mode.replace('_', '-')}"))
                    result[mode] = figures
                print("  kubelet memory and restart latency ...", flush=True)
                again = await kubelet_rss(client, tracker, node, pods=rss_pods, timeout=timeout)
                result["kubelet_rss"]["with_pods_after_100_mib"] = again["with_pods_mib"]
                result["restart"] = await restart_latency(client, tracker, node, backoff=backoff, timeout=timeout)
                await tracker.stop()
        finally:
            if node is not None:
                await node.stop()
                node.cleanup()
            cleanup_namespace(floor_env)
            await cp.stop()
    return result


def rows(replicas: int, rollout: int) -> list[tuple[str, str, str]]:
    out = []
    for mode, _ in MODES:
        out += [
            (f"{mode}: {replicas} replicas Running", f"{mode}.create_s", "s"),
            (f"{mode}: floor, {replicas} containers", f"{mode}.floor.create_s", "s"),
            (f"{mode}: ratio to floor", f"{mode}.create_vs_floor", "×"),
            (f"{mode}: {replicas} replicas: machine CPU", f"{mode}.create_cpu_s.machine", "s"),
            *((f"{mode}: {replicas} replicas: {who} CPU", f"{mode}.create_cpu_s.{key}", "s")
              for key, who in (("kubelet", "kubelet (own)"), ("kubelet_children", "kubelet's children"),
                               ("master", "master"), ("etcd", "etcd"), ("containerd", "containerd"),
                               ("benchmark_driver", "benchmark driver"))),
            (f"{mode}: scale {replicas}→{2 * replicas}", f"{mode}.scale_s", "s"),
            (f"{mode}: floor, {replicas} more", f"{mode}.floor.scale_s", "s"),
            (f"{mode}: ratio to floor", f"{mode}.scale_vs_floor", "×"),
            (f"{mode}: {2 * replicas} replicas from scratch", f"{mode}.create_double_s", "s"),
            (f"{mode}: floor, {2 * replicas} containers", f"{mode}.floor.create_double_s", "s"),
            (f"{mode}: ratio to floor", f"{mode}.create_double_vs_floor", "×"),
            (f"{mode}: rolling update of {rollout}, maxSurge 1", f"{mode}.rollout.surge1_s", "s"),
            (f"{mode}: rolling update of {rollout}, maxSurge 10", f"{mode}.rollout.surge10_s", "s"),
        ]
    return out + [
        ("kubelet RSS, no pods", "kubelet_rss.idle_mib", "MiB"),
        ("kubelet RSS with pods (fresh kubelet)", "kubelet_rss.with_pods_mib", "MiB"),
        ("kubelet RSS with pods, after running 100", "kubelet_rss.with_pods_after_100_mib", "MiB"),
        ("killed container running again (no back-off)", "restart.immediate_restart_s", "s"),
        ("  same, Running seen by a watch", "restart.immediate_restart_watch_s", "s"),
        ("killed again: running after back-off expiry", "restart.after_backoff_s", "s"),
        ("  upper bound (from the first kill)", "restart.after_backoff_upper_s", "s"),
        ("  Running seen by a watch, after expiry", "restart.after_backoff_watch_s", "s"),
    ]


def targets(replicas: int, rollout: int, rss_pods: int) -> list[Target]:
    """The issue's targets; the Swarm comparisons only hold at Swarm's sizes (50, 100, 20 replicas)."""
    out = [
        Target("pod network: replicas within 1.3× the floor", "pod_network.create_vs_floor", 1.3, "×"),
        Target("pod network: scale within 1.3× the floor", "pod_network.scale_vs_floor", 1.3, "×"),
        Target("killed container running again after back-off expiry", "restart.after_backoff_s", 0.5, "s"),
    ]
    if replicas == 50:
        out += [
            Target("hostNetwork: 50 replicas under Swarm's 6.1 s", "host_network.create_s", 6.1, "s"),
            Target("hostNetwork: 100 replicas under Swarm's 12.1 s", "host_network.create_double_s", 12.1, "s"),
            Target("hostNetwork: scale 50→100 under Swarm's 5.7 s", "host_network.scale_s", 5.7, "s"),
        ]
    if rollout == 20:
        out += [
            Target("one-at-a-time rolling update of 20 (pod network)", "pod_network.rollout.surge1_s", 15.0, "s"),
            Target("one-at-a-time rolling update of 20 (hostNetwork)", "host_network.rollout.surge1_s", 15.0, "s"),
            Target("ten-at-a-time rolling update under Swarm's 5.4 s", "pod_network.rollout.surge10_s", 5.4, "s"),
            Target("ten-at-a-time rolling update under Swarm's 5.4 s (hostNetwork)",
                   "host_network.rollout.surge10_s", 5.4, "s"),
        ]
    if rss_pods == 30:
        out.append(Target("kubelet RSS with 30 pods", "kubelet_rss.with_pods_mib", 60.0, "MiB"))
        out.append(Target("kubelet RSS with 30 pods, after having run 100", "kubelet_rss.with_pods_after_100_mib",
                          60.0, "MiB"))
    return out


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--replicas", type=click.IntRange(min=1), default=50, show_default=True,
              help="First convergence size (then scaled to twice as many).")
@click.option("--rollout-replicas", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--rss-pods", type=click.IntRange(min=1), default=30, show_default=True,
              help="Pods running while the kubelet's memory is read.")
@click.option("--backoff", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="The kubelet's --backoff-base (its default is 10 s).")
@click.option("--mode", "modes", type=click.Choice([m for m, _ in MODES]), multiple=True,
              help="Network modes to run (repeatable).  [default: both]")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True)
@common_options
def main(runs: int, replicas: int, rollout_replicas: int, rss_pods: int, backoff: float, modes: tuple[str, ...],
         timeout: float, json_path: Path | None, workdir: Path | None, keep_workdir: bool) -> None:
    """Convergence, scaling and rolling updates on one Node vs. plain containerd (+ CNI) and Swarm."""
    require_root(NAME)
    modes = modes or tuple(m for m, _ in MODES)
    work = Workdir(workdir, name=NAME, keep=keep_workdir)
    report = Report(NAME, {"runs": runs, "replicas": replicas, "rollout_replicas": rollout_replicas,
                           "rss_pods": rss_pods, "backoff_base_s": backoff, "modes": list(modes),
                           "command": list(SLEEPER), "host_network_command": list(sleeper(True))})
    failed = True
    try:
        with host_guard(), PrivateContainerd() as containerd:
            images = build_images(work.sub("images"))
            daemon = containerd.start()
            for run in range(runs):
                print(f"run {run + 1}/{runs} ...", flush=True)
                report.runs.append(asyncio.run(one_run(
                    daemon=daemon, images=images, workdir=work.sub(f"run{run}"), replicas=replicas,
                    rollout_replicas=rollout_replicas, rss_pods=rss_pods, backoff=backoff, timeout=timeout,
                    modes=modes)))
        wanted = targets(replicas, rollout_replicas, rss_pods)
        wanted = [t for t in wanted if lookup(report.runs[0], t.path) is not None] if report.runs else []
        emit(report, rows=rows(replicas, rollout_replicas), json_path=json_path, targets=wanted)
        failed = False
    finally:
        work.close(failed=failed)


if __name__ == "__main__":
    main()
