"""Leader failover: three masters on one etcd, the leader of the control loops SIGKILLed.

    python -m bench.leader_failover           # 5 runs

Per run, on a fresh etcd (our settings: 50 ms heartbeat, 600 ms election timeout) and three kyb-masters
with every control loop and default leadership settings (1 s lease, 0.2 s retry): once one master leads, it
is SIGKILLed. Timed from the kill, by a client holding every master's address that reads the claim
(`kube-system/kyb-controller-manager`) every 20 ms: another master holds it. No kubelets: this measures the
control loops' handover only (Node liveness has its own tests).

A second client, given every address with the leader's first (so that it is connected to the master that
dies), writes a Lease every 20 ms (1 s timeout per call) from before the kill until 3 s after it: the longest
stretch from the start of a failed write to the end of the next successful one is its failover gap.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import click

from bench.common import Report, Target, Workdir, common_options, emit
from harness.master import MasterProcess
from kybernetes.ctl.client import ApiError, Client
from kybernetes.master.leader.election import LEASE_NAME, LEASE_NAMESPACE
from kybernetes.master.store.embedded import EtcdProcess
from kybernetes.proto import objects_pb2 as pb

NAME = "leader_failover"
MASTERS = 3

ROWS = [
    ("another master leads after the leader's SIGKILL", "handover_s", "s"),
    ("first election after start", "first_election_s", "s"),
    ("a client of the killed master: longest gap in its writes", "client_gap_s", "s"),
    ("its failed writes", "client_failed_writes", ""),
]
TARGETS = [Target("the control loops run on another master after a SIGKILL", "handover_s", 2.0, "s"),
           Target("a client holding every address sees at most 1 s of failed calls", "client_gap_s", 1.0, "s")]


async def _holder(client: Client) -> str:
    try:
        lease = await client.get("leases", LEASE_NAME, namespace=LEASE_NAMESPACE)
    except ApiError:
        return ""
    return str(lease.spec.holder_identity)


def _master_of(holder: str, masters: list[MasterProcess]) -> MasterProcess | None:
    return next((m for m in masters if f"_{m.address}_" in holder), None)


class WriteProbe:
    """Writes a Lease every 20 ms; the longest gap from the start of a failed write to the next success."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.writes = 0
        self.failures = 0
        self.longest_gap = 0.0
        self.failing = False
        self._first_failure = 0.0

    async def wait_writes(self, count: int) -> None:
        while self.writes < count:
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        n = 0
        while True:
            n += 1
            lease = pb.Lease()
            lease.metadata.name, lease.metadata.namespace = f"probe-{n}", "default"
            began = time.monotonic()
            try:
                await self.client.create(lease)
            except ApiError:
                self.failures += 1
                if not self.failing:
                    self.failing, self._first_failure = True, began
            else:
                self.writes += 1
                if self.failing:
                    self.longest_gap = max(self.longest_gap, time.monotonic() - self._first_failure)
                    self.failing = False
            await asyncio.sleep(0.02)


async def one_run(workdir: Path) -> dict[str, Any]:
    etcd = EtcdProcess(data_dir=workdir / "etcd")
    await etcd.start()
    masters = [MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=workdir / f"master{i}.log",
                             extra_args=["--log-level", "info"]) for i in range(MASTERS)]
    try:
        started = time.monotonic()
        await asyncio.gather(*(m.start(timeout=60) for m in masters))
        addresses = ",".join(m.address for m in masters)
        async with Client(addresses, credentials=masters[0].credentials(), timeout=2.0) as client:
            while (leader := _master_of(await _holder(client), masters)) is None:
                await asyncio.sleep(0.02)
            first = time.monotonic() - started
            leader_first = ",".join(m.address for m in sorted(masters, key=lambda m: m is not leader))
            async with Client(leader_first, credentials=masters[0].credentials(), timeout=1.0) as writer:
                probe = WriteProbe(writer)
                probing = asyncio.create_task(probe.run())
                await probe.wait_writes(10)
                killed = time.monotonic()
                await leader.kill()
                while True:
                    now = _master_of(await _holder(client), masters)
                    if now is not None and now is not leader:
                        break
                    await asyncio.sleep(0.02)
                handover = time.monotonic() - killed
                while time.monotonic() - killed < 3.0 or probe.failing:
                    await asyncio.sleep(0.05)
                probing.cancel()
            return {"handover_s": handover, "first_election_s": first, "client_gap_s": probe.longest_gap,
                    "client_failed_writes": probe.failures}
    finally:
        for master in masters:
            await master.stop()
        await etcd.stop()


@click.command()
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True)
@common_options
def main(runs: int, json_path: Path | None, workdir: Path | None, keep_workdir: bool) -> None:
    """Three masters on one etcd; SIGKILL the leader; time until another one leads."""
    work = Workdir(workdir, name=NAME, keep=keep_workdir)
    report = Report(NAME, {"runs": runs, "masters": MASTERS, "lease_seconds": 1, "retry_period_s": 0.2})
    failed = True
    try:
        for run in range(runs):
            print(f"run {run + 1}/{runs} ...", flush=True)
            report.runs.append(asyncio.run(one_run(work.sub(f"run{run}"))))
        emit(report, rows=ROWS, json_path=json_path, targets=TARGETS)
        failed = False
    finally:
        work.close(failed=failed)


if __name__ == "__main__":
    main()
