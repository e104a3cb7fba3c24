"""Failover: 3 real Nodes on containerd, a 6-replica Deployment, one kubelet SIGKILLed.

    python -m bench.failover              # 5 runs, master and kubelets with their default settings

Per run, on a fresh etcd + kyb-master (defaults: 5 s node-monitor grace period, 5 s pod eviction
timeout) and three real kubelets (defaults; each its own containerd namespace, bridge and /26 of a
reserved /24): once all 6 replicas are Running and Ready, the kubelet of the Node holding the most of
them is SIGKILLed (its containers keep running, as on a Node that dropped off the network). Timed
from the kill, as seen by watches: the Node Ready=Unknown, its pods marked terminating (evicted), and
all 6 replicas Running and Ready again on the other Nodes. Any Ready change of a healthy Node during
the run counts as a flap.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from bench.cluster import ControlPlane, PodTracker, node_ready, wait_nodes_ready
from bench.common import Report, Target, Workdir, common_options, emit, require_root
from bench.nodes import SLEEPER, PrivateContainerd, RealNode, build_images, host_guard, new_slice, pod_subnet
from harness.builders import make_deployment
from harness.containerd import ContainerdDaemon
from harness.kubelet import BUSYBOX
from kybernetes.ctl.client import Client

NAME = "failover"
REPLICAS = 6


class NodeWatch:
    """Ready transitions of every Node, with receive times."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ready: dict[str, bool] = {}
        self.changes: list[tuple[float, str, bool]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for ev in self.client.watch("nodes"):
            if ev.type == "DELETED":
                continue
            name, ready = ev.object.metadata.name, node_ready(ev.object)
            if name in self.ready and self.ready[name] != ready:
                self.changes.append((time.monotonic(), name, ready))
            self.ready[name] = ready

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def first_not_ready(self, name: str, after: float) -> float | None:
        return next((t for t, n, r in self.changes if n == name and not r and t >= after), None)


async def one_run(*, daemon: ContainerdDaemon, images: dict[str, Path], workdir: Path, timeout: float,
                  master_args: list[str]) -> dict[str, Any]:
    with pod_subnet() as cidr:
        cp = ControlPlane(workdir=workdir, master_args=["--cluster-cidr", cidr, "--node-cidr-mask-size", "26",
                                                        *master_args])
        nodes: list[RealNode] = []
        await cp.start()
        try:
            for i in range(3):
                env = new_slice(daemon, workdir / f"node{i}", pod_cidr=cidr, images=images,
                                import_images=("kyb/busybox:1",))
                nodes.append(RealNode(master=await cp.join(), env=env, name=f"node-{i}", log_dir=workdir))
            await asyncio.gather(*(n.start() for n in nodes))
            async with cp.client() as client:
                await wait_nodes_ready(client, {n.name for n in nodes}, timeout=60)
                node_watch = NodeWatch(client)
                await node_watch.start()
                tracker = PodTracker(client, namespace="default", label_selector="app=web")
                await tracker.start()
                await client.create(make_deployment("web", replicas=REPLICAS, image=BUSYBOX, command=SLEEPER))
                await tracker.wait_running(REPLICAS, ready=True, timeout=timeout)
                await asyncio.sleep(1.0)  # steady state: status reports settled
                placement = Counter(p.node for p in tracker.live())
                victim_name = placement.most_common(1)[0][0]
                victim = next(n for n in nodes if n.name == victim_name)
                lost = {p.uid for p in tracker.live() if p.node == victim_name}

                killed = time.monotonic()
                await victim.kubelet.kill()
                recovered = await tracker.wait_running(
                    REPLICAS, ready=True, timeout=timeout, selector=lambda p: p.node != victim_name,
                    what="replicas Running and Ready on the surviving Nodes")
                not_ready = node_watch.first_not_ready(victim_name, killed)
                evicted = [p for p in tracker.pods.values() if p.uid in lost]
                await asyncio.sleep(2.0)  # flaps right after recovery count too
                flaps = [(n, r) for t, n, r in node_watch.changes if n != victim_name and t >= killed]
                await node_watch.stop()
                await tracker.stop()
                return {
                    "recovered_s": recovered - killed,
                    "node_not_ready_s": (not_ready - killed) if not_ready else None,
                    "pods_moved": len(lost),
                    "evicted_seen_s": min(p.terminating_at - killed for p in evicted if p.terminating_at)
                    if any(p.terminating_at for p in evicted) else None,
                    "healthy_node_flaps": len(flaps),
                }
        finally:
            for node in nodes:
                await node.stop()
                node.cleanup()
            await cp.stop()


ROWS = [
    ("all replicas Running+Ready again after kill", "recovered_s", "s"),
    ("killed Node seen NotReady/Unknown after", "node_not_ready_s", "s"),
    ("its pods seen terminating (evicted) after", "evicted_seen_s", "s"),
    ("replicas that had to move", "pods_moved", ""),
    ("healthy Node Ready flaps", "healthy_node_flaps", ""),
]

TARGETS = [
    Target("all replicas Running again after a kubelet SIGKILL", "recovered_s", 10.0, "s"),
    Target("no flapping of healthy Nodes", "healthy_node_flaps", 0, ""),
]


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True)
@click.option("--master-arg", "master_args", multiple=True,
              help="Extra kyb-master argument (repeatable), e.g. --master-arg=--pod-eviction-timeout=1.")
@common_options
def main(runs: int, timeout: float, master_args: tuple[str, ...], json_path: Path | None, workdir: Path | None,
         keep_workdir: bool) -> None:
    """Time until a killed kubelet's replicas run elsewhere."""
    require_root(NAME)
    work = Workdir(workdir, name=NAME, keep=keep_workdir)
    report = Report(NAME, {"runs": runs, "replicas": REPLICAS, "nodes": 3, "master_args": list(master_args),
                           "master_defaults": {"node_monitor_grace_period_s": 5.0, "pod_eviction_timeout_s": 1.0}})
    failed = True
    try:
        with host_guard(), PrivateContainerd() as containerd:
            images = build_images(work.sub("images"))
            daemon = containerd.start()
            for run in range(runs):
                print(f"run {run + 1}/{runs} ...", flush=True)
                report.runs.append(asyncio.run(one_run(daemon=daemon, images=images, workdir=work.sub(f"run{run}"),
                                                       timeout=timeout, master_args=list(master_args))))
        emit(report, rows=ROWS, json_path=json_path, targets=TARGETS)
        failed = False
    finally:
        work.close(failed=failed)


if __name__ == "__main__":
    main()
