"""Latency probes, run as their own processes so the benchmark driver's work never delays their clocks.

    python -m bench.probes api   --server HOST:PORT [--namespace bench-api] [--rate 5]
    python -m bench.probes watch --server HOST:PORT [--namespace bench-watch] [--rate 10]

Both run until SIGTERM (or SIGINT), then print one JSON object on stdout with the raw samples in seconds.

* api: open loop, `rate` cycles per second whatever the answers' speed (a slow server gets more
  concurrent calls, as with real clients). One cycle: create a pod, get it, list the probe's namespace,
  update the labels of a pod created at least a second earlier (get, then update at that
  resourceVersion; a conflict with the scheduler or a kubelet is retried and counted), and delete the
  oldest pod once there are 100, so every list returns about 100 pods. The pods are ordinary ones,
  scheduled and run like any other.
* watch: one pod, once Running; every 1/rate s its `bench/seq` annotation is updated, and a watch on the
  namespace times the event that carries that value. Latency = event received - update sent (so it
  includes the write itself, as "from the write to the event reaching a client").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from harness.builders import make_pod
from kybernetes.ctl.client import ApiError, Client, ConflictError
from kybernetes.proto import objects_pb2 as pb

SEQ_ANNOTATION = "bench/seq"
READY = "ready"


async def _until_stopped() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


class ApiProbe:
    def __init__(self, client: Client, *, namespace: str, rate: float, keep: int = 100) -> None:
        self.client = client
        self.namespace = namespace
        self.rate = rate
        self.keep = keep
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.conflicts = 0
        self.created: list[tuple[float, str]] = []  # (monotonic time, name) of pods that exist

    async def _timed(self, op: str, call: object) -> object:
        began = time.perf_counter()
        try:
            result = await call  # type: ignore[misc]
        except ConflictError:
            self.samples[op].append(time.perf_counter() - began)
            raise
        except ApiError as err:
            self.errors[f"{op}:{err.reason}"] += 1
            return None
        self.samples[op].append(time.perf_counter() - began)
        return result

    async def cycle(self, index: int) -> None:
        name = f"probe-{index}"
        pod = make_pod(name, namespace=self.namespace, labels={"app": "bench-api"}, command=["sleep", "3600"],
                       grace_seconds=1)
        if await self._timed("create", self.client.create(pod)) is None:
            return
        self.created.append((time.monotonic(), name))
        await self._timed("get", self.client.get("pods", name, namespace=self.namespace))
        await self._timed("list", self.client.list("pods", namespace=self.namespace))
        older = [n for t, n in self.created if time.monotonic() - t > 1.0]
        if older:
            await self.update(older[index % len(older)], index)
        if len(self.created) > self.keep:
            # The namespace stays at about `keep` pods, so "list" lists the same amount all along.
            _, oldest = self.created.pop(0)
            try:
                await self._timed("delete", self.client.delete("pods", oldest, namespace=self.namespace,
                                                               unconditional=True))
            except ConflictError:  # the pod changed during the delete (the API does not retry that itself)
                self.conflicts += 1

    async def update(self, name: str, index: int) -> None:
        for _ in range(5):
            current = await self._timed("get", self.client.get("pods", name, namespace=self.namespace))
            if not isinstance(current, pb.Pod):
                return
            current.metadata.labels["bench-seq"] = str(index)
            try:
                await self._timed("update", self.client.update(current))
                return
            except ConflictError:
                self.conflicts += 1

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        index = 0
        while not stop.is_set():
            task = asyncio.create_task(self.cycle(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
            delay = began + index / self.rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    def result(self) -> dict[str, object]:
        return {"samples": dict(self.samples), "errors": dict(self.errors), "conflicts": self.conflicts}


class WatchProbe:
    def __init__(self, client: Client, *, namespace: str, rate: float) -> None:
        self.client = client
        self.namespace = namespace
        self.rate = rate
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        pod = make_pod("watch-probe", namespace=self.namespace, command=["sleep", "3600"], grace_seconds=1)
        created = await self.client.create(pod)
        watcher = asyncio.create_task(self._watch(created.metadata.resource_version))
        # The pod's own start (scheduling, status reports) would only add unrelated events: wait it out.
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            current = await self.client.get("pods", "watch-probe", namespace=self.namespace)
            if current.status.phase == "Running":
                break
            await asyncio.sleep(0.2)
        index = 0
        while not stop.is_set():
            index += 1
            try:
                current = await self.client.get("pods", "watch-probe", namespace=self.namespace)
                current.metadata.annotations[SEQ_ANNOTATION] = str(index)
                self.sent[str(index)] = time.perf_counter()
                await self.client.update(current)
            except ApiError:
                self.sent.pop(str(index), None)
                self.errors += 1
            try:
                await asyncio.wait_for(stop.wait(), 1.0 / self.rate)
            except TimeoutError:
                pass
        await asyncio.sleep(0.5)  # the last events may still be on their way
        watcher.cancel()

    async def _watch(self, resource_version: str) -> None:
        async for ev in self.client.watch("pods", namespace=self.namespace, resource_version=resource_version):
            now = time.perf_counter()
            if ev.type == "DELETED":
                continue
            seq = ev.object.metadata.annotations.get(SEQ_ANNOTATION)
            sent = self.sent.pop(seq, None) if seq else None
            if sent is not None:
                self.latencies.append(now - sent)

    def result(self) -> dict[str, object]:
        return {"samples": {"watch": self.latencies}, "lost": len(self.sent), "errors": self.errors}


async def _main(kind: str, kubeconfig: str, namespace: str, rate: float) -> dict[str, object]:
    stop = await _until_stopped()
    async with Client(kubeconfig=kubeconfig, timeout=30.0) as client:
        probe: ApiProbe | WatchProbe = (ApiProbe if kind == "api" else WatchProbe)(
            client, namespace=namespace, rate=rate)
        await client.channel.channel_ready()
        print(READY, flush=True)  # the driver's clock may start now
        await probe.run(stop)
        return probe.result()


@click.command()
@click.argument("kind", type=click.Choice(["api", "watch"]))
@click.option("--kubeconfig", required=True, help="The master's credentials file.")
@click.option("--namespace", default="", help="[default: bench-<kind>]")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="Cycles per second [api 5, watch 10].")
def main(kind: str, kubeconfig: str, namespace: str, rate: float | None) -> None:
    """Run a latency probe until SIGTERM, then print its samples as JSON (after a "ready" line)."""
    die_with_parent()
    result = asyncio.run(_main(kind, kubeconfig, namespace or f"bench-{kind}",
                               rate or (5.0 if kind == "api" else 10.0)))
    json.dump(result, sys.stdout)
    sys.stdout.flush()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this probe when the benchmark driver that started it dies (PR_SET_PDEATHSIG),
    so an interrupted benchmark leaves no probe behind."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ProbeProcess:
    """A probe child of the benchmark driver: start(), then stop() returns its parsed JSON."""

    def __init__(self, kind: str, *, kubeconfig: Path, rate: float | None = None, namespace: str = "") -> None:
        self.argv = [sys.executable, "-m", "bench.probes", kind, "--kubeconfig", str(kubeconfig)]
        if rate is not None:
            self.argv += ["--rate", str(rate)]
        if namespace:
            self.argv += ["--namespace", namespace]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        from bench.common import REPO

        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=asyncio.subprocess.PIPE, cwd=REPO)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if line.strip() != READY.encode():
            raise RuntimeError(f"probe {self.argv[3]} did not start: {line[:200]!r}")

    async def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(self.proc.communicate(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return {"samples": {}, "error": "probe did not stop within 60s"}
        try:
            return json.loads(out or b"{}")
        except ValueError:
            return {"samples": {}, "error": f"probe exited {self.proc.returncode} without JSON"}


if __name__ == "__main__":
    main()
