#!/usr/bin/env python3
"""Small cluster-side steps for the deploy scripts (up.sh, the namespace lab, provisioning), one per subcommand.

Each subcommand talks to a master through `kybernetes.ctl.client.Client` and either waits for a condition with a
deadline (exit 1 with what was last seen when it is not met) or, for `host-routes`, keeps the local routing
table in step with the Nodes: the namespace lab runs it in the host's network namespace so that the host
reaches every node's pods (host-gw, the same `kubelet.routes.sync_pod_routes` the kubelets use, under a tag
of its own so that it never touches a kubelet's routes). Run with the project's virtualenv python:

    python deploy/lib/cluster.py serving --server 10.99.0.10:6443 --timeout 60
    python deploy/lib/cluster.py nodes-ready --server … --count 3
    python deploy/lib/cluster.py rollout --server … --name hello --timeout 120
    python deploy/lib/cluster.py pods --server … --selector app=hello
    python deploy/lib/cluster.py host-routes --server … --tag kyb-lab-kl [--once]
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kybernetes.core.log import configure, get_logger
from kybernetes.ctl.client import Client
from kybernetes.kubelet.routes import RouteError, sync_pod_routes


async def _until(check: Callable[[], Awaitable[tuple[bool, str]]], *, timeout: float, what: str,
                 interval: float = 0.5) -> None:
    """Poll `check` (-> (done, description)) until done or the deadline; fail naming what was last seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer yet"
    while True:
        try:
            done, last = await check()
        except Exception as err:  # the master may be restarting: keep trying until the deadline
            done, last = False, f"{type(err).__name__}: {err}"
        if done:
            return
        if loop.time() > deadline:
            raise click.ClickException(f"{what} not reached within {timeout:g}s; last seen: {last}")
        await asyncio.sleep(interval)


def _ready(conditions: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def _serving(server: str, timeout: float) -> None:
    async with grpc.aio.insecure_channel(server) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def check() -> tuple[bool, str]:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
            return resp.status == health_pb2.HealthCheckResponse.SERVING, str(resp.status)

        await _until(check, timeout=timeout, what=f"master {server} serving", interval=0.1)


async def _nodes_ready(server: str, count: int, names: list[str], timeout: float) -> None:
    async with Client(server, timeout=5.0) as kyb:
        async def check() -> tuple[bool, str]:
            nodes = (await kyb.list("nodes")).items
            ready = sorted(n.metadata.name for n in nodes if _ready(n.status.conditions))
            wanted = set(names) <= set(ready) if names else len(ready) >= count
            return wanted, f"Ready: {', '.join(ready) or 'none'} (of {len(nodes)} Nodes)"

        await _until(check, timeout=timeout, what=f"{', '.join(names) if names else count} Node(s) Ready")


async def _rollout(server: str, namespace: str, name: str, timeout: float) -> None:
    async with Client(server, timeout=5.0) as kyb:
        async def check() -> tuple[bool, str]:
            deploy = await kyb.get("deployments", name, namespace=namespace)
            spec = deploy.spec.replicas if deploy.spec.HasField("replicas") else 1
            st = deploy.status
            done = (st.observed_generation >= deploy.metadata.generation and st.updated_replicas == spec
                    and st.replicas == spec and st.available_replicas == spec)
            return done, (f"{st.updated_replicas} updated, {st.ready_replicas} ready, {st.available_replicas} "
                          f"available of {spec} (total {st.replicas})")

        await _until(check, timeout=timeout, what=f"rollout of deployment/{name}")


async def _pods(server: str, namespace: str, selector: str) -> None:
    async with Client(server, timeout=5.0) as kyb:
        pods = (await kyb.list("pods", namespace=namespace, label_selector=selector)).items
        for pod in sorted(pods, key=lambda p: p.metadata.name):
            ready = "Ready" if _ready(pod.status.conditions) else "NotReady"
            click.echo(f"{pod.metadata.name}\t{pod.status.pod_ip or '-'}\t{pod.spec.node_name or '-'}\t"
                       f"{pod.status.phase or 'Pending'}\t{ready}")


async def _host_routes(server: str, tag: str, once: bool, interval: float) -> None:
    log = get_logger("host-routes")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Client(server, timeout=5.0) as kyb:
        while True:
            try:
                nodes = (await kyb.list("nodes")).items
                # self_name="": the host is no Node, so every Node's podCIDR gets a route.
                await sync_pod_routes(nodes=nodes, self_name="", table_owner_tag=tag)
            except RouteError:
                raise
            except Exception as err:  # master down or restarting: keep the routes we have, retry
                log.warning("node list failed; routes kept", error=str(err))
                if once:
                    raise click.ClickException(f"cannot list Nodes from {server}: {err}") from err
            if once:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Cluster-side steps of the deploy scripts."""
    configure(level="info")


server_option = click.option("--server", required=True, help="The master's address, HOST:PORT.")
timeout_option = click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds.")


@main.command()
@server_option
@timeout_option
def serving(server: str, timeout: float) -> None:
    """Wait until the master answers its health check with SERVING."""
    asyncio.run(_serving(server, timeout))


@main.command("nodes-ready")
@server_option
@click.option("--count", type=int, default=1, show_default=True, help="How many Nodes must be Ready.")
@click.option("--names", default="", help="Comma-separated Node names that must all be Ready (instead of --count).")
@timeout_option
def nodes_ready(server: str, count: int, names: str, timeout: float) -> None:
    """Wait until Nodes report Ready=True."""
    asyncio.run(_nodes_ready(server, count, [n for n in names.split(",") if n], timeout))


@main.command()
@server_option
@click.option("--namespace", default="default", show_default=True)
@click.option("--name", required=True, help="The Deployment.")
@timeout_option
def rollout(server: str, namespace: str, name: str, timeout: float) -> None:
    """Wait until a Deployment has all its replicas updated and available."""
    asyncio.run(_rollout(server, namespace, name, timeout))


@main.command()
@server_option
@click.option("--namespace", default="default", show_default=True)
@click.option("--selector", default="", help="Label selector.")
def pods(server: str, namespace: str, selector: str) -> None:
    """Print NAME, IP, NODE, PHASE, READY of the selected pods, tab-separated."""
    asyncio.run(_pods(server, namespace, selector))


@main.command("host-routes")
@server_option
@click.option("--tag", required=True, help="Owner tag of the routes (kubelet.routes.route_proto).")
@click.option("--once", is_flag=True, help="Sync once and exit instead of following the Nodes.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between syncs.")
def host_routes(server: str, tag: str, once: bool, interval: float) -> None:
    """Route every Node's podCIDR via its InternalIP in this network namespace (host-gw for the host)."""
    asyncio.run(_host_routes(server, tag, once, interval))


if __name__ == "__main__":
    sys.exit(main())
