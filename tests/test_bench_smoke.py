"""One tiny run of every benchmark in bench/: it must run to the end and write a well-formed JSON report.

No timing is asserted (benchmarks measure, they do not judge). The four commands run at the same time,
each with its own etcd, master, kubelets and (for three of them) private containerd, so the whole module
takes about as long as the slowest one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

COMMANDS: dict[str, list[str]] = {
    "control_plane": ["--nodes", "3", "--pods", "6", "--deployment-size", "3", "--runs", "1", "--idle-window", "1",
                      "--idle-probe", "2", "--timeout", "60"],
    "pod_startup": ["--runs", "1", "--single-samples", "1", "--batch", "2", "--timeout", "60"],
    "failover": ["--runs", "1", "--timeout", "60", "--master-arg=--node-monitor-grace-period=3",
                 "--master-arg=--pod-eviction-timeout=1"],
    "leader_failover": ["--runs", "1"],
    "convergence": ["--runs", "1", "--replicas", "2", "--rollout-replicas", "2", "--rss-pods", "2", "--backoff", "0.5",
                    "--timeout", "60"],
}

# Summary paths every report must carry (each a median/min/max spread over the runs).
EXPECTED: dict[str, list[str]] = {
    "control_plane": ["n3.nodes_ready_s", "n3.idle.etcd_writes_per_s", "n3.idle.etcd_writes_per_s_per_100_nodes",
                      "n3.api_idle.get.p99", "n3.load.pods_bound_per_s", "n3.load.pods_created_per_s",
                      "n3.load.bind_latency_s.p99", "n3.load.all_running_s", "n3.load.api.create.p99",
                      "n3.load.api.get.p99", "n3.load.api.list.p99", "n3.load.api.update.p99",
                      "n3.load.watch_latency_s.p99", "n3.load.master_rss_mib", "n3.load.master_cpu_s",
                      "n3.load.etcd_rss_mib", "n3.load.etcd_cpu_s"],
    "pod_startup": ["single_s.p50", "single_s.p99", "batch.makespan_s", "batch.startup_s.p99", "floor.makespan_s",
                    "floor.single_s.p50", "batch_vs_floor", "kubelet_rss_mib_with_batch"],
    "failover": ["recovered_s", "node_not_ready_s", "pods_moved", "healthy_node_flaps"],
    "leader_failover": ["handover_s", "first_election_s"],
    "convergence": [f"{mode}.{key}" for mode in ("pod_network", "host_network")
                    for key in ("create_s", "scale_s", "create_double_s", "floor.create_s", "create_vs_floor",
                                "scale_vs_floor", "rollout.surge1_s", "rollout.surge10_s")]
                   + ["kubelet_rss.with_pods_mib", "restart.immediate_restart_s", "restart.after_backoff_s"],
}


def _at(tree: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        assert isinstance(tree, Mapping) and part in tree, f"{path}: {part!r} missing"
        tree = tree[part]
    return tree


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str, Path]]]:
    """Run every benchmark at once; {name: (exit code, output, JSON path)}."""
    out = tmp_path_factory.mktemp("bench")
    procs = {}
    for name, args in COMMANDS.items():
        log = open(out / f"{name}.log", "wb")  # noqa: SIM115 - closed below, after the process ends
        procs[name] = (subprocess.Popen([sys.executable, "-m", f"bench.{name}", "--json", str(out / f"{name}.json"),
                                         "--workdir", str(out / f"{name}-work"), *args],
                                        cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log), log)
    results = {}
    try:
        for name, (proc, log) in procs.items():
            try:
                code = proc.wait(timeout=240)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            log.close()
            output = (out / f"{name}.log").read_text(errors="replace")
            results[name] = (code, output, out / f"{name}.json")
        yield results
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.containerd
@pytest.mark.parametrize("name", list(COMMANDS))
def test_benchmark_runs_and_writes_its_report(reports: dict[str, tuple[int, str, Path]], name: str):
    code, output, path = reports[name]
    assert code == 0, f"bench.{name} failed:\n{output[-3000:]}"
    report = json.loads(path.read_text())
    assert report["benchmark"] == name
    assert report["date"] and report["config"]
    assert report["machine"]["cores"] >= 1 and report["machine"]["memory_bytes"] > 0
    assert len(report["runs"]) == 1
    for figure in EXPECTED[name]:
        spread = _at(report["summary"], figure)
        assert set(spread) == {"median", "min", "max", "runs"}, figure
        assert spread["runs"] == 1 and isinstance(spread["median"], (int, float)), figure
    for target in report["targets"]:
        assert {"name", "value", "limit", "met"} <= set(target)
    assert "median" in output, output[-3000:]  # the table was printed
