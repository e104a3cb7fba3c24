"""Power cut of a worker on the namespace lab: how soon its replicas run and are Ready elsewhere.

    python -m bench.power_cut                      # 5 runs, a lab of 1 master and 3 workers
    python -m bench.power_cut --masters 3          # the HA lab: 3 masters (when lab.sh supports it)

One lab (deploy/lab/lab.sh, under names of its own) for all runs. Per run: the sample app (kyb/hello, a
readiness probe on /healthz every second) with 6 replicas, all Running and Ready; then `lab.sh kill-node N`
of the worker holding the most replicas: its link goes down first and every process of the machine is
SIGKILLed, so no TCP connection is closed (unlike bench/failover.py, which SIGKILLs a kubelet and so closes its
stream). Timed from the kill, as watches see it: the Node Ready=Unknown, its pods terminating (evicted), and 6
replicas Running and Ready on the other workers. Then `start-node`, and the Deployment is deleted before the
next run. Any Ready change of another Node during the run counts as a flap.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from bench.cluster import PodTracker, wait_nodes_ready
from bench.common import Report, Target, Workdir, common_options, emit, require_root
from bench.failover import NodeWatch
from harness.lab import Lab, hello_manifest, none_left, pick_lab, short_dir
from harness.waiting import until

NAME = "power_cut"
REPLICAS = 6
APP = "cut"


async def one_run(lab: Lab, *, timeout: float) -> dict[str, Any]:
    lab.sh("kybctl", "apply", "-f", "-", stdin=hello_manifest(lab, name=APP, replicas=REPLICAS))
    async with lab.client() as client:
        node_watch = NodeWatch(client)
        await node_watch.start()
        tracker = PodTracker(client, namespace="default", label_selector=f"app={APP}")
        await tracker.start()
        try:
            await tracker.wait_running(REPLICAS, ready=True, timeout=timeout)
            await asyncio.sleep(1.0)  # steady state: status reports settled
            placement = Counter(p.node for p in tracker.live())
            victim_name = placement.most_common(1)[0][0]
            victim = int(victim_name.removeprefix("node"))
            lost = {p.uid for p in tracker.live() if p.node == victim_name}
            killed = time.monotonic()
            lab.sh("kill-node", str(victim))
            recovered = await tracker.wait_running(
                REPLICAS, ready=True, timeout=timeout, selector=lambda p: p.node != victim_name,
                what="replicas Running and Ready on the surviving Nodes")
            not_ready = node_watch.first_not_ready(victim_name, killed)
            evicted = [p for p in tracker.pods.values() if p.uid in lost and p.terminating_at]
            await asyncio.sleep(2.0)  # flaps right after recovery count too
            flaps = [(n, r) for t, n, r in node_watch.changes if n != victim_name and t >= killed]
            figures = {
                "recovered_s": recovered - killed,
                "node_not_ready_s": (not_ready - killed) if not_ready else None,
                "evicted_seen_s": min(p.terminating_at - killed for p in evicted if p.terminating_at is not None)
                if evicted else None,
                "pods_moved": len(lost),
                "healthy_node_flaps": len(flaps),
            }
        finally:
            await node_watch.stop()
            await tracker.stop()
        for number in range(1, lab.workers + 1):
            lab.sh("start-node", str(number))  # reuses a running node
        await wait_nodes_ready(client, {f"node{n}" for n in range(1, lab.workers + 1)}, timeout=timeout)
        lab.sh("kybctl", "delete", "deployment", APP, check=False)
        await until(lambda: none_left(lab, client, APP), timeout=timeout, message="the old replicas gone")
    return figures


ROWS = [
    ("all replicas Running+Ready again after the power cut", "recovered_s", "s"),
    ("the cut Node seen NotReady/Unknown after", "node_not_ready_s", "s"),
    ("its pods seen terminating (evicted) after", "evicted_seen_s", "s"),
    ("replicas that had to move", "pods_moved", ""),
    ("healthy Node Ready flaps", "healthy_node_flaps", ""),
]

TARGETS = [
    Target("replacements Running and Ready after a power cut", "recovered_s", 5.0, "s"),
    Target("no flapping of healthy Nodes", "healthy_node_flaps", 0, ""),
]


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--masters", type=click.IntRange(1, 5), default=1, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=1), default=180.0, show_default=True)
@click.option("--master-args", default="", help="Extra kyb-master flags for the lab (KYB_LAB_MASTER_ARGS).")
@common_options
def main(runs: int, masters: int, timeout: float, master_args: str, json_path: Path | None, workdir: Path | None,
         keep_workdir: bool) -> None:
    """Time until a powered-off worker's replicas run elsewhere."""
    require_root(NAME)
    work = Workdir(workdir, name=NAME, keep=keep_workdir)
    report = Report(NAME, {"runs": runs, "replicas": REPLICAS, "workers": 3, "masters": masters,
                           "master_args": master_args})
    failed = True
    try:
        with short_dir() as base:
            lab = pick_lab(base, letter="b", workers=3)
            if master_args:
                os.environ["KYB_LAB_MASTER_ARGS"] = master_args
            try:
                up = ["up", "--workers", "3"] + (["--masters", str(masters)] if masters > 1 else [])
                lab.sh(*up, timeout=600)
                for run in range(runs):
                    print(f"run {run + 1}/{runs} ...", flush=True)
                    report.runs.append(asyncio.run(one_run(lab, timeout=timeout)))
            finally:
                lab.sh("down", check=False, timeout=300)
        emit(report, rows=ROWS, json_path=json_path, targets=TARGETS)
        failed = False
    finally:
        work.close(failed=failed)


if __name__ == "__main__":
    main()
