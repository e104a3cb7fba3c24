"""Liveness and readiness probes: exec, httpGet and tcpSocket, with Kubernetes' timing and thresholds.

One `Prober` task runs per probe of a running container instance. It waits
initialDelaySeconds, then probes every periodSeconds with timeoutSeconds,
counts consecutive successes and failures, and calls `on_result(healthy,
message)` when the result crosses successThreshold / failureThreshold (so the
worker hears about transitions, not every probe). Readiness starts unready,
liveness starts healthy, as in Kubernetes.

httpGet goes to the pod IP (or the probe's host) with urllib in a worker
thread; a status from 200 to 399 is a success. A named port is looked up in
the container's ports.

A probe connects from the Node's own network namespace, so where it may go is
limited (defence in depth: the API server already refuses probe hosts outside
the cluster's pod range): to the pod's own IP (the default; a hostNetwork pod's
is the Node's) or to an address in this Node's podCIDR. Any other host fails
the probe without a connection, with a warning naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from kybernetes.core.log import get_logger
from kybernetes.kubelet.runtime.base import ContainerRuntimeError, Runtime
from kybernetes.proto import objects_pb2 as pb

# Enough of a probe's output for an event message.
_OUTPUT_LIMIT = 512

log = get_logger("kubelet.probes")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""


class ProbeError(Exception):
    """A probe that cannot even be attempted (e.g. an unknown named port)."""


def resolve_port(port: pb.IntOrString, container: pb.Container) -> int:
    kind = port.WhichOneof("value")
    if kind == "int_val" and port.int_val > 0:
        return port.int_val
    if kind == "str_val":
        if port.str_val.isdigit():
            return int(port.str_val)
        for declared in container.ports:
            if declared.name == port.str_val:
                return declared.container_port
        raise ProbeError(f"port {port.str_val!r} is not a named port of container {container.name}")
    raise ProbeError("port: Required value")


def check_host(host: str, *, pod_ip: str, pod_cidr: str | None) -> None:
    """Raise ProbeError unless a probe may connect to `host`: the pod IP, or an address in the Node's podCIDR."""
    if host == pod_ip:
        return
    try:
        allowed = pod_cidr is not None and ipaddress.IPv4Address(host) in ipaddress.ip_network(pod_cidr, strict=False)
    except ValueError:
        allowed = False
    if not allowed:
        log.warning("probe refused: host outside the pod range", host=host, pod_ip=pod_ip, pod_cidr=pod_cidr)
        raise ProbeError(f'host "{host}" refused: not the pod IP or an address in this Node\'s pod range '
                         f"({pod_cidr or 'none assigned yet'})")


def _http_get(url: str, timeout: float) -> ProbeResult:
    request = urllib.request.Request(url, headers={"User-Agent": "kyb-probe/1.0", "Accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL built by us
            code = response.status
    except urllib.error.HTTPError as err:
        code = err.code
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return ProbeResult(False, f'Get "{url}": {reason}')
    if 200 <= code < 400:
        return ProbeResult(True)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")


async def run_probe(probe: pb.Probe, *, runtime: Runtime, container_id: str, container: pb.Container,
                    pod_ip: str, pod_cidr: str | None = None) -> ProbeResult:
    """One attempt of a probe, bounded by its timeout; `pod_cidr` is this Node's pod range (see check_host)."""
    timeout = float(probe.timeout_seconds or 1)
    try:
        if probe.HasField("exec"):
            session = await runtime.exec(container_id, list(probe.exec.command), timeout=timeout)
            result = await session.collect()
            if result.timed_out:
                return ProbeResult(False, f"command timed out after {timeout:g}s")
            if result.exit_code == 0:
                return ProbeResult(True)
            output = (result.stdout + result.stderr).decode(errors="replace").strip()[:_OUTPUT_LIMIT]
            return ProbeResult(False, f"command exited with {result.exit_code}: {output}".rstrip(": "))
        if probe.HasField("http_get"):
            action = probe.http_get
            host = action.host or pod_ip
            check_host(host, pod_ip=pod_ip, pod_cidr=pod_cidr)
            port = resolve_port(action.port, container)
            scheme = (action.scheme or "HTTP").lower()
            path = action.path or "/"
            if not path.startswith("/"):
                path = "/" + path
            url = f"{scheme}://{host}:{port}{path}"
            return await asyncio.to_thread(_http_get, url, timeout)
        if probe.HasField("tcp_socket"):
            host = probe.tcp_socket.host or pod_ip
            check_host(host, pod_ip=pod_ip, pod_cidr=pod_cidr)
            port = resolve_port(probe.tcp_socket.port, container)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, TimeoutError) as err:
                return ProbeResult(False, f"dial tcp {host}:{port}: {err or 'timeout'}")
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return ProbeResult(True)
    except ProbeError as err:
        return ProbeResult(False, str(err))
    except ContainerRuntimeError as err:
        return ProbeResult(False, str(err))
    return ProbeResult(False, "probe has no handler (exec, httpGet or tcpSocket)")


class Prober:
    """The probing loop of one probe of one container instance."""

    def __init__(self, *, kind: str, probe: pb.Probe, runtime: Runtime, container_id: str,
                 container: pb.Container, pod_ip: str, on_result: Callable[[bool, str], None],
                 pod_cidr: str | None = None) -> None:
        self.kind = kind  # "liveness" | "readiness"
        self.probe = probe
        self.runtime = runtime
        self.container_id = container_id
        self.container = container
        self.pod_ip = pod_ip
        self.pod_cidr = pod_cidr
        self.on_result = on_result
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"probe:{self.kind}:{self.container_id}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        probe = self.probe
        healthy = self.kind == "liveness"
        successes = failures = 0
        success_threshold = max(1, probe.success_threshold)
        failure_threshold = max(1, probe.failure_threshold)
        period = float(probe.period_seconds or 10)
        await asyncio.sleep(max(0, probe.initial_delay_seconds))
        while True:
            loop = asyncio.get_running_loop()
            began = loop.time()
            result = await run_probe(probe, runtime=self.runtime, container_id=self.container_id,
                                     container=self.container, pod_ip=self.pod_ip, pod_cidr=self.pod_cidr)
            if result.ok:
                successes, failures = successes + 1, 0
                if not healthy and successes >= success_threshold:
                    healthy = True
                    self.on_result(True, "")
            else:
                successes, failures = 0, failures + 1
                if healthy and failures >= failure_threshold:
                    healthy = False
                    self.on_result(False, result.message)
                elif not healthy and self.kind == "readiness" and failures == 1:
                    # Report every failure once so the worker can emit the Unhealthy event.
                    self.on_result(False, result.message)
            await asyncio.sleep(max(0.0, period - (loop.time() - began)))
