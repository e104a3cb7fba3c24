"""`kyb-kubelet`: parse flags, build the runtime, run one kubelet (or many hollow ones) until SIGTERM/SIGINT.

Stopping the kubelet never stops its pods: a restarted kubelet adopts them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import socket
from pathlib import Path

import click
import grpc

from kybernetes.core.api.quantity import QuantityError, parse_memory
from kybernetes.core.channel import KUBELET_CHANNEL_OPTIONS
from kybernetes.core.identity.credentials import secure_channel
from kybernetes.core.identity.tokens import TokenError, parse
from kybernetes.core.log import configure, get_logger
from kybernetes.kubelet.config import (
    DEFAULT_CONTAINERD_ADDRESS,
    DEFAULT_CONTAINERD_NAMESPACE,
    DEFAULT_POD_BRIDGE,
    DEFAULT_ROOT_DIR,
    KubeletConfig,
)
from kybernetes.kubelet.credentials import (
    HelperFailed,
    JoinRefused,
    NodeCredentials,
    bootstrap_address,
    obtain,
    renew,
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
@click.option("--master", default="127.0.0.1:6443", show_default=True,
              help="The master's address, HOST:PORT; several, comma-separated: the kubelet moves to another "
                   "when its master dies.")
@click.option("--token", default="", envvar="KYB_JOIN_TOKEN",
              help="A join token (kybctl token create): needed once, to get this Node's certificate.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read the join token from this file (a missing file is fine once the Node has joined).")
@click.option("--bootstrap-master", default="", help="The master's bootstrap port, HOST:PORT.  "
                                                     "[default: --master's host, its port + 1]")
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
@click.option("--seccomp-default/--no-seccomp-default", default=True, show_default=True,
              help="Run containers whose pod names no seccomp profile with containerd's default profile "
                   "(Kubernetes' RuntimeDefault); off: Unconfined, as Kubernetes' kubelet does by default.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def main(master: str, token: str, token_file: Path | None, bootstrap_master: str, node_name: str, node_ip: str,
         containerd_address: str, containerd_namespace: str,
         root_dir: Path, insecure_registries: tuple[str, ...], runtime: str, pod_bridge: str,
         heartbeat_interval: float, backoff_base: float, backoff_max: float, relist_interval: float,
         container_log_max_size: str, max_pods: int,
         node_labels: dict[str, str], hollow_start_delay: float, hollow_count: int, pod_routes: bool, proxy: bool,
         seccomp_default: bool, log_level: str) -> None:
    """Run the Kybernetes node agent: register this machine as a Node and run the pods bound to it."""
    configure(level=log_level)
    try:
        log_max_bytes = parse_memory(container_log_max_size)
    except QuantityError as err:
        raise click.BadParameter(str(err), param_hint="--container-log-max-size") from err
    if hollow_count > 1 and runtime != "hollow":
        raise click.BadParameter("only with --runtime hollow", param_hint="--hollow-count")
    join_token = _join_token(token, token_file)
    config = KubeletConfig(
        master=master, node_name=node_name or socket.gethostname(), node_ip=node_ip, root_dir=root_dir,
        runtime=runtime, containerd_address=containerd_address, containerd_namespace=containerd_namespace,
        insecure_registries=tuple(insecure_registries), pod_bridge=pod_bridge,
        heartbeat_interval=heartbeat_interval, backoff_base=backoff_base, backoff_max=max(backoff_max, backoff_base),
        relist_interval=relist_interval, container_log_max_bytes=log_max_bytes, max_pods=max_pods,
        hollow_start_delay=hollow_start_delay,
        hollow_count=hollow_count, extra_labels=node_labels, pod_routes=pod_routes, proxy=proxy,
        seccomp_default=seccomp_default)
    try:
        asyncio.run(_serve(config, token=join_token, bootstrap=bootstrap_master or bootstrap_address(master)))
    except KeyboardInterrupt:
        pass
    except JoinRefused as err:
        raise click.ClickException(f"cannot join the cluster: {err}") from None


def _join_token(token: str, token_file: Path | None) -> str:
    """The join token's text, checked for form here (the helper process uses it); "" for none."""
    if token_file is not None:
        try:
            token = token_file.read_text()
        except FileNotFoundError:
            # Fine once the Node has joined (its certificate is stored); without one, joining says so.
            return ""
        except OSError as err:
            raise click.BadParameter(f"{token_file}: {err.strerror}", param_hint="--token-file") from None
    token = token.strip()
    if token:
        try:
            parse(token)
        except TokenError as err:
            raise click.BadParameter(str(err), param_hint="--token") from None
    return token


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


async def _serve(config: KubeletConfig, *, token: str, bootstrap: str) -> None:
    log = get_logger("kubelet")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    machine = await asyncio.to_thread(read_machine)
    names = node_names(config)
    # Credentials first (stored, or a join), in a helper process: until then nothing talks to the master.
    joining = asyncio.create_task(obtain(nodes=names, root_dir=config.root_dir, bootstrap=bootstrap, token=token))
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({joining, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not joining.done():
        joining.cancel()
        await asyncio.gather(joining, return_exceptions=True)
        return
    waiting.cancel()
    credentials = joining.result()
    channels = [secure_channel(config.master, c.credentials, options=KUBELET_CHANNEL_OPTIONS) for c in credentials]
    try:
        kubelets = [Kubelet(config=config, node_name=name, runtime=_runtime(config), channel=channel,
                            machine=machine) for name, channel in zip(names, channels, strict=True)]
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    tasks = [asyncio.create_task(k.run(), name=f"kubelet:{k.node_name}") for k in kubelets]
    tasks += [asyncio.create_task(_keep_renewed(kubelet, creds, channels, i, config=config),
                                  name=f"renew:{kubelet.node_name}")
              for i, (kubelet, creds) in enumerate(zip(kubelets, credentials, strict=True))]
    log.info("kubelet started", nodes=len(names), master=config.master, runtime=config.runtime,
             root_dir=str(config.root_dir))
    try:
        await stop.wait()
    finally:
        log.info("kubelet stopping (pods keep running)")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()


async def _keep_renewed(kubelet: Kubelet, current: NodeCredentials, channels: list[grpc.aio.Channel], index: int, *,
                        config: KubeletConfig) -> None:
    """Renew the Node's certificate once two thirds of its validity have passed, then reconnect with it."""
    log = get_logger("kubelet", node=kubelet.node_name)
    failures = 0
    while True:
        wait = (current.renew_at - dt.datetime.now(dt.UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(min(wait, 3600.0))
            continue
        try:
            current = await renew(node=kubelet.node_name, root_dir=config.root_dir, master=config.master)
        except HelperFailed as err:
            failures += 1
            log.warning("certificate renewal failed, retrying", error=str(err))
            await asyncio.sleep(min(60.0, 2.0 ** failures))
            continue
        failures = 0
        old = channels[index]
        channels[index] = secure_channel(config.master, current.credentials, options=KUBELET_CHANNEL_OPTIONS)
        kubelet.link.replace_channel(channels[index])  # reconnects at once with the new certificate
        log.info("certificate renewed", not_after=current.not_after.isoformat())
        await old.close()


if __name__ == "__main__":
    main()
