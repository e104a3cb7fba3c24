#!/usr/bin/env python3
"""Small cluster-side steps for the deploy scripts (up.sh, the namespace lab, provisioning), one per subcommand.

Each subcommand talks to a master through `kybernetes.ctl.client.Client` and either waits for a condition with a
deadline (exit 1 with what was last seen when it is not met) or, for `host-routes`, keeps the local routing
table in step with the Nodes: the namespace lab runs it in the host's network namespace so that the host
reaches every node's pods (host-gw, the same `kubelet.routes.sync_pod_routes` the kubelets use, under a tag
of its own so that it never touches a kubelet's routes). Run with the project's virtualenv python:

    python deploy/lib/cluster.py serving --kubeconfig /var/lib/kybernetes/master/admin.conf --timeout 60
    python deploy/lib/cluster.py nodes-ready --kubeconfig … --count 3
    python deploy/lib/cluster.py nodes-ready --pki /var/lib/kybernetes/kubelet/pki/node1 --server … --names node1
    python deploy/lib/cluster.py rollout --kubeconfig … --name hello --timeout 120
    python deploy/lib/cluster.py pods --kubeconfig … --selector app=hello
    python deploy/lib/cluster.py host-routes --kubeconfig … --tag kyb-lab-kl [--once] [--services]
    python deploy/lib/cluster.py leader --kubeconfig … --servers A:6443,B:6443,C:6443 [--wait 30]
    python deploy/lib/cluster.py kubeconfig --kubeconfig … --server A:6443,B:6443,C:6443 --out FILE

`host-routes --services` also programs the Services' iptables rules (the kubelet's own proxy code, given the
Services and Endpoints it lists): the Vagrant master VMs, which run no kubelet, reach pods and ClusterIPs so.

Credentials (every link is mutual TLS): `--kubeconfig FILE` (an admin's), or `--pki DIR` (a kubelet's own
ca.crt, kubelet.crt and kubelet.key: a Node may read Nodes, enough for nodes-ready on a Node machine);
`--server` overrides the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kybernetes.core.identity import kubeconfig as kubeconfig_file
from kybernetes.core.identity.credentials import Credentials
from kybernetes.core.log import configure, get_logger
from kybernetes.ctl.client import Client
from kybernetes.kubelet.proxy.iptables import Iptables
from kybernetes.kubelet.proxy.rules import ServicePortRules, service_ports
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


class Access:
    """How to reach the master: a kubeconfig or a kubelet's pki folder, and maybe another address."""

    def __init__(self, *, kubeconfig: str, pki: str, server: str) -> None:
        self.kubeconfig, self.pki, self.server = kubeconfig, pki, server

    def client(self) -> Client:
        """A new client (the files are read now: they may appear while a component starts)."""
        if self.pki:
            credentials = Credentials.read(Path(self.pki), name="kubelet")
            return Client(self.server, credentials=credentials, timeout=5.0)
        return Client(self.server or None, kubeconfig=self.kubeconfig or None, timeout=5.0)

    @property
    def where(self) -> str:
        return self.server or self.kubeconfig


async def _serving(access: Access, timeout: float) -> None:
    async def check() -> tuple[bool, str]:
        async with access.client() as kyb:
            stub = health_pb2_grpc.HealthStub(kyb.channel)
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
            return resp.status == health_pb2.HealthCheckResponse.SERVING, str(resp.status)

    await _until(check, timeout=timeout, what=f"master {access.where} serving", interval=0.2)


async def _nodes_ready(access: Access, count: int, names: list[str], timeout: float) -> None:
    async def check() -> tuple[bool, str]:
        async with access.client() as kyb:
            nodes = (await kyb.list("nodes")).items
        ready = sorted(n.metadata.name for n in nodes if _ready(n.status.conditions))
        wanted = set(names) <= set(ready) if names else len(ready) >= count
        return wanted, f"Ready: {', '.join(ready) or 'none'} (of {len(nodes)} Nodes)"

    await _until(check, timeout=timeout, what=f"{', '.join(names) if names else count} Node(s) Ready")


async def _rollout(access: Access, namespace: str, name: str, timeout: float) -> None:
    async with access.client() as kyb:
        async def check() -> tuple[bool, str]:
            deploy = await kyb.get("deployments", name, namespace=namespace)
            spec = deploy.spec.replicas if deploy.spec.HasField("replicas") else 1
            st = deploy.status
            done = (st.observed_generation >= deploy.metadata.generation and st.updated_replicas == spec
                    and st.replicas == spec and st.available_replicas == spec)
            return done, (f"{st.updated_replicas} updated, {st.ready_replicas} ready, {st.available_replicas} "
                          f"available of {spec} (total {st.replicas})")

        await _until(check, timeout=timeout, what=f"rollout of deployment/{name}")


async def _pods(access: Access, namespace: str, selector: str) -> None:
    async with access.client() as kyb:
        pods = (await kyb.list("pods", namespace=namespace, label_selector=selector)).items
        for pod in sorted(pods, key=lambda p: p.metadata.name):
            ready = "Ready" if _ready(pod.status.conditions) else "NotReady"
            click.echo(f"{pod.metadata.name}\t{pod.status.pod_ip or '-'}\t{pod.spec.node_name or '-'}\t"
                       f"{pod.status.phase or 'Pending'}\t{ready}")


async def _sync_services(kyb: Client, iptables: Iptables, applied: list[ServicePortRules] | None
                         ) -> list[ServicePortRules]:
    """Program the Service rules when what they are made of changed; returns what is now applied."""
    services = (await kyb.list("services")).items
    endpoints = (await kyb.list("endpoints")).items
    wanted = service_ports(services, endpoints)
    if wanted != applied:
        await iptables.apply(services, endpoints)
    return wanted


async def _host_routes(access: Access, tag: str, proto: int | None, once: bool, interval: float,
                      services: bool) -> None:
    log = get_logger("host-routes")
    iptables = Iptables()
    applied: list[ServicePortRules] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with access.client() as kyb:
        while True:
            try:
                nodes = (await kyb.list("nodes")).items
                # self_name="": the host is no Node, so every Node's podCIDR gets a route.
                await sync_pod_routes(nodes=nodes, self_name="", table_owner_tag=tag, proto=proto)
                if services:
                    applied = await _sync_services(kyb, iptables, applied)
            except RouteError:
                raise
            except Exception as err:  # master down or restarting: keep the routes we have, retry
                log.warning("sync failed; routes and rules kept", error=str(err))
                if once:
                    raise click.ClickException(f"cannot list Nodes from {access.where}: {err}") from err
            if once:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return


# The health service name a master reports SERVING on while it runs the control loops (master/app.py
# LEADER_HEALTH, docs/ha.md §1).
LEADER_HEALTH = "kyb.leader"


async def _leads(access: Access, server: str, timeout: float) -> str:
    """What the master at `server` says of the lead: "yes", "no", or why it gave no answer."""
    try:
        async with Access(kubeconfig=access.kubeconfig, pki=access.pki, server=server).client() as kyb:
            stub = health_pb2_grpc.HealthStub(kyb.channel)
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=LEADER_HEALTH), timeout=timeout)
    except Exception as err:  # down, partitioned, paused: no answer in time
        code = getattr(err, "code", None)
        return f"no answer ({code().name if callable(code) else type(err).__name__})"
    return "yes" if resp.status == health_pb2.HealthCheckResponse.SERVING else "no"


async def _leader(access: Access, servers: list[str], wait: float, timeout: float) -> int:
    """The 1-based number of the one master (of `servers`) that leads; waits up to `wait` s for exactly one."""
    found: list[int] = []

    async def check() -> tuple[bool, str]:
        answers = await asyncio.gather(*(_leads(access, server, timeout) for server in servers))
        found[:] = [n for n, answer in enumerate(answers, 1) if answer == "yes"]
        return len(found) == 1, "; ".join(f"{n} ({server}): {answer}"
                                          for n, (server, answer) in enumerate(zip(servers, answers, strict=True), 1))

    await _until(check, timeout=wait, what="exactly one master leading", interval=0.2)
    return found[0]


def _copy_kubeconfig(source: Path, server: str, out: Path) -> None:
    config = kubeconfig_file.load(source)
    for cluster in config["clusters"]:
        cluster.setdefault("cluster", {})["server"] = server
    kubeconfig_file.save(out, config)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Cluster-side steps of the deploy scripts."""
    configure(level="info")


def access_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--kubeconfig / --pki / --server, folded into one `access` argument."""
    def fold(ctx: click.Context, _param: click.Parameter, value: str) -> str:
        ctx.meta[_param.name] = value
        return value

    f = click.option("--server", default="", expose_value=False, callback=fold,
                     help="The master's address, HOST:PORT (default: the kubeconfig's).")(f)
    f = click.option("--pki", default="", expose_value=False, callback=fold,
                     help="A kubelet's credentials folder (ca.crt, kubelet.crt, kubelet.key).")(f)
    f = click.option("--kubeconfig", default="", expose_value=False, callback=fold,
                     help="An admin credentials file (default $KYBCONFIG, else ~/.kyb/config).")(f)
    return f


def _access() -> Access:
    meta = click.get_current_context().meta
    if meta.get("pki") and not meta.get("server"):
        raise click.UsageError("--pki needs --server")
    return Access(kubeconfig=meta.get("kubeconfig", ""), pki=meta.get("pki", ""), server=meta.get("server", ""))
timeout_option = click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds.")


@main.command()
@access_options
@timeout_option
def serving(timeout: float) -> None:
    """Wait until the master answers its health check with SERVING."""
    asyncio.run(_serving(_access(), timeout))


@main.command("nodes-ready")
@access_options
@click.option("--count", type=int, default=1, show_default=True, help="How many Nodes must be Ready.")
@click.option("--names", default="", help="Comma-separated Node names that must all be Ready (instead of --count).")
@timeout_option
def nodes_ready(count: int, names: str, timeout: float) -> None:
    """Wait until Nodes report Ready=True."""
    asyncio.run(_nodes_ready(_access(), count, [n for n in names.split(",") if n], timeout))


@main.command()
@access_options
@click.option("--namespace", default="default", show_default=True)
@click.option("--name", required=True, help="The Deployment.")
@timeout_option
def rollout(namespace: str, name: str, timeout: float) -> None:
    """Wait until a Deployment has all its replicas updated and available."""
    asyncio.run(_rollout(_access(), namespace, name, timeout))


@main.command()
@access_options
@click.option("--namespace", default="default", show_default=True)
@click.option("--selector", default="", help="Label selector.")
def pods(namespace: str, selector: str) -> None:
    """Print NAME, IP, NODE, PHASE, READY of the selected pods, tab-separated."""
    asyncio.run(_pods(_access(), namespace, selector))


@main.command("host-routes")
@access_options
@click.option("--tag", required=True, help="Owner tag of the routes (kubelet.routes.route_proto).")
@click.option("--proto", type=click.IntRange(200, 249), default=None,
              help="Routing protocol number of the routes; default: derived from --tag.")
@click.option("--once", is_flag=True, help="Sync once and exit instead of following the Nodes.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between syncs.")
@click.option("--services", is_flag=True, help="Also program the Services' iptables rules (ClusterIPs, NodePorts).")
def host_routes(tag: str, proto: int | None, once: bool, interval: float, services: bool) -> None:
    """Route every Node's podCIDR via its InternalIP in this network namespace (host-gw for the host)."""
    asyncio.run(_host_routes(_access(), tag, proto, once, interval, services))


@main.command()
@access_options
@click.option("--servers", required=True, help="Every master, HOST:PORT, comma-separated, in order.")
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait until exactly one master leads (0: ask once).")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="Seconds each master has to answer.")
def leader(servers: str, wait: float, timeout: float) -> None:
    """Print the number (1-based, in --servers order) of the master that runs the control loops: the one whose
    health service reports `kyb.leader` SERVING. Fails when none or several do (after --wait)."""
    addresses = [a.strip() for a in servers.split(",") if a.strip()]
    if not addresses:
        raise click.UsageError("--servers: no address")
    click.echo(asyncio.run(_leader(_access(), addresses, wait, timeout)))


@main.command("kubeconfig")
@click.option("--kubeconfig", "source", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The credentials file to copy.")
@click.option("--server", required=True, help="The new server: address(es), HOST:PORT, comma-separated.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Written 0600.")
def kubeconfig(source: Path, server: str, out: Path) -> None:
    """Copy a credentials file with every cluster's `server:` replaced (several masters: a comma list)."""
    try:
        _copy_kubeconfig(source, server, out)
    except kubeconfig_file.KubeConfigError as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    sys.exit(main())
