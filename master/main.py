"""`kyb-master`: parse flags, configure logging, run the master until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from kybernetes.core.log import configure, get_logger
from kybernetes.master.app import Master, MasterConfig, enabled_controllers


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", default="127.0.0.1:6443", show_default=True, help="Address of the gRPC API.")
@click.option("--etcd", default="", help="Comma-separated etcd client URLs; without it an embedded etcd runs.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path.home() / ".local/share/kybernetes",
              show_default=True, help="Where the embedded etcd keeps its data.")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True, help="Pod range; a /24 per Node.")
@click.option("--service-cidr", default="10.96.0.0/16", show_default=True, help="Service cluster IP range.")
@click.option("--node-monitor-grace-period", type=float, default=5.0, show_default=True,
              help="Seconds without heartbeat before a Node is Ready=Unknown.")
@click.option("--pod-eviction-timeout", type=float, default=5.0, show_default=True,
              help="Seconds after NotReady before a Node's pods are evicted.")
@click.option("--node-cidr-mask-size", type=click.IntRange(8, 30), default=24, show_default=True,
              help="Size of each Node's pod range within --cluster-cidr.")
@click.option("--controllers", default="*", show_default=True,
              help="Control loops to run: '*' for all, names to enable, '-name' to disable "
                   "(scheduler, replicaset, deployment, nodelifecycle, gc, endpoints).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def main(listen: str, etcd: str, data_dir: Path, cluster_cidr: str, service_cidr: str,
         node_monitor_grace_period: float, pod_eviction_timeout: float, node_cidr_mask_size: int, controllers: str,
         log_level: str) -> None:
    """Run the Kybernetes master: the API server, the node link and the control loops."""
    configure(level=log_level)
    config = MasterConfig(listen=listen, etcd=[e for e in etcd.split(",") if e], data_dir=data_dir,
                          cluster_cidr=cluster_cidr, service_cidr=service_cidr,
                          node_monitor_grace_period=node_monitor_grace_period,
                          pod_eviction_timeout=pod_eviction_timeout, node_cidr_mask_size=node_cidr_mask_size,
                          controllers=controllers)
    try:
        enabled_controllers(controllers)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass


async def _serve(config: MasterConfig) -> None:
    log = get_logger("master")
    master = Master(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await master.start()
        await stop.wait()
    except Exception as err:
        log.error("master failed", error=str(err))
        raise SystemExit(1) from err
    finally:
        await master.stop()


if __name__ == "__main__":
    main()
