"""`kyb-kubelet`: parse flags, build the runtime, run one kubelet (or many hollow ones) until SIGTERM/SIGINT.

Stopping the kubelet never stops its pods: a restarted kubelet adopts them.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import click
import grpc

from kybernetes.core.api.quantity import QuantityError, parse_memory
from kybernetes.core.channel import CHANNEL_OPTIONS
from kybernetes.core.log import configure, get_logger
from kybernetes.kubelet.config import (
    DEFAULT_CONTAINERD_ADDRESS,
    DEFAULT_CONTAINERD_NAMESPACE,
    DEFAULT_POD_BRIDGE,
    DEFAULT_ROOT_DIR,
    KubeletConfig,
)
from kybernetes.kubelet.kubelet import Kubelet
from kybernetes.kubelet.nodeinfo import read_machine
from kybernetes.kubelet.pods.worker import NodeRuntime


def _label(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: must be KEY=VALUE")
        labels[key] = val
    return labels


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--master", default="127.0.0.1:6443", show_default=True, help="The master's address, HOST:PORT.")
@click.option("--node-name", default="", help="This Node's name.  [default: the hostname]")
@click.option("--node-ip", default="", help="The Node's InternalIP.  [default: the source address of the "
                                             "default route]")
@click.option("--containerd-address", default=DEFAULT_CONTAINERD_ADDRESS, show_default=True,
              help="containerd's socket.")
@click.option("--containerd-namespace", default=DEFAULT_CONTAINERD_NAMESPACE, show_default=True,
              help="The containerd namespace of this kubelet's containers (one per kubelet on a machine).")
@click.option("--root-dir", type=click.Path(path_type=Path), default=DEFAULT_ROOT_DIR, show_default=True,
              help="Logs and state.")
@click.option("--insecure-registry", "insecure_registries", multiple=True, metavar="HOST:PORT",
              help="A registry to pull from over plain HTTP (repeatable).")
@click.option("--runtime", type=click.Choice(["containerd", "hollow"]), default="containerd", show_default=True)
@click.option("--pod-bridge", default=DEFAULT_POD_BRIDGE, show_default=True,
              help="The Linux bridge of this kubelet's pods (one per kubelet on a machine).")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between heartbeats.")
@click.option("--backoff-base", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="First CrashLoopBackOff/ImagePullBackOff delay in seconds (doubles each time).")
@click.option("--backoff-max", type=click.FloatRange(min=0.01), default=300.0, show_default=True,
              help="Cap of the back-off delay in seconds.")
@click.option("--relist-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between full comparisons of the runtime's containers with the kubelet's view.")
@click.option("--container-log-max-size", default="10Mi", show_default=True, metavar="QUANTITY",
              help="A container's log file is rotated (copytruncate, one old copy) beyond this size.")
@click.option("--max-pods", type=click.IntRange(min=1), default=110, show_default=True,
              help="The Node's pod capacity.")
@click.option("--node-label", "node_labels", multiple=True, callback=_label, metavar="KEY=VALUE",
              help="An extra label on the Node (repeatable).")
@click.option("--hollow-start-delay", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Hollow runtime: seconds before a container counts as running.")
@click.option("--hollow-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Hollow runtime: how many hollow Nodes this process runs (named <node-name>-<i>).")
@click.option("--pod-routes/--no-pod-routes", default=True, show_default=True,
              help="Keep host-gw routes to the other Nodes' pod CIDRs in this network namespace.")
@click.option("--proxy/--no-proxy", default=True, show_default=True,
              help="Program Service rules (iptables) in this network namespace.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def main(master: str, node_name: str, node_ip: str, containerd_address: str, containerd_namespace: str,
         root_dir: Path, insecure_registries: tuple[str, ...], runtime: str, pod_bridge: str,
         heartbeat_interval: float, backoff_base: float, backoff_max: float, relist_interval: float,
         container_log_max_size: str, max_pods: int,
         node_labels: dict[str, str], hollow_start_delay: float, hollow_count: int, pod_routes: bool, proxy: bool,
         log_level: str) -> None:
    """Run the Kybernetes node agent: register this machine as a Node and run the pods bound to it."""
    configure(level=log_level)
    try:
        log_max_bytes = parse_memory(container_log_max_size)
    except QuantityError as err:
        raise click.BadParameter(str(err), param_hint="--container-log-max-size") from err
    if hollow_count > 1 and runtime != "hollow":
        raise click.BadParameter("only with --runtime hollow", param_hint="--hollow-count")
    config = KubeletConfig(
        master=master, node_name=node_name or socket.gethostname(), node_ip=node_ip, root_dir=root_dir,
        runtime=runtime, containerd_address=containerd_address, containerd_namespace=containerd_namespace,
        insecure_registries=tuple(insecure_registries), pod_bridge=pod_bridge,
        heartbeat_interval=heartbeat_interval, backoff_base=backoff_base, backoff_max=max(backoff_max, backoff_base),
        relist_interval=relist_interval, container_log_max_bytes=log_max_bytes, max_pods=max_pods,
        hollow_start_delay=hollow_start_delay,
        hollow_count=hollow_count, extra_labels=node_labels, pod_routes=pod_routes, proxy=proxy)
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass


def _runtime(config: KubeletConfig) -> NodeRuntime:
    if config.hollow:
        from kybernetes.kubelet.runtime.hollow import HollowRuntime

        return HollowRuntime(start_delay=config.hollow_start_delay)
    from kybernetes.kubelet.runtime.containerd import ContainerdRuntime

    return ContainerdRuntime(address=config.containerd_address, namespace=config.containerd_namespace,
                             root_dir=config.root_dir / "runtime", bridge=config.pod_bridge, pod_cidr=None,
                             insecure_registries=config.insecure_registries)


def node_names(config: KubeletConfig) -> list[str]:
    if config.hollow and config.hollow_count > 1:
        return [f"{config.node_name}-{i}" for i in range(config.hollow_count)]
    return [config.node_name]


async def _serve(config: KubeletConfig) -> None:
    log = get_logger("kubelet")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    machine = await asyncio.to_thread(read_machine)
    channel = grpc.aio.insecure_channel(config.master, options=CHANNEL_OPTIONS)
    names = node_names(config)
    try:
        kubelets = [Kubelet(config=config, node_name=name, runtime=_runtime(config), channel=channel,
                            machine=machine) for name in names]
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    tasks = [asyncio.create_task(k.run(), name=f"kubelet:{k.node_name}") for k in kubelets]
    log.info("kubelet started", nodes=len(names), master=config.master, runtime=config.runtime,
             root_dir=str(config.root_dir))
    try:
        await stop.wait()
    finally:
        log.info("kubelet stopping (pods keep running)")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()


if __name__ == "__main__":
    main()
