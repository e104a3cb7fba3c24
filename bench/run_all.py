"""Run every benchmark with its defaults, one after another, each writing its own JSON.

    python -m bench.run_all [--out DIR] [--quick]

`--quick` passes small sizes (a few minutes in all, for a first look; not the figures of record).
Each benchmark runs as its own process (`python -m bench.<name>`), so one failing does not stop the others;
the exit code is non-zero if any failed.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import click

from bench.common import REPO, RESULTS_DIR

BENCHMARKS = ("control_plane", "pod_startup", "failover", "leader_failover", "convergence")
QUICK_ARGS = {
    "control_plane": ["--nodes", "100", "--runs", "1", "--idle-window", "20", "--idle-probe", "5"],
    "pod_startup": ["--runs", "1", "--single-samples", "5"],
    "failover": ["--runs", "2"],
    "leader_failover": ["--runs", "3"],
    "convergence": ["--runs", "1"],
}


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Directory for the JSON reports.  [default: bench/results/<time>/]")
@click.option("--quick", is_flag=True, help="Small sizes and one run each.")
@click.option("--only", type=click.Choice(BENCHMARKS), multiple=True, help="Run only these (repeatable).")
def main(out: Path | None, quick: bool, only: tuple[str, ...]) -> None:
    """Run all benchmarks."""
    out = out or RESULTS_DIR / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in only or BENCHMARKS:
        argv = [sys.executable, "-m", f"bench.{name}", "--json", str(out / f"{name}.json")]
        if quick:
            argv += QUICK_ARGS[name]
        print(f"== {name}: {' '.join(argv[1:])}", flush=True)
        if subprocess.run(argv, cwd=REPO, check=False).returncode != 0:
            failed.append(name)
    print(f"reports in {out}")
    if failed:
        raise click.ClickException(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
