"""`kyb-master`: parse flags, configure logging, run the master until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
from pathlib import Path

import click

from kybernetes.core.log import configure, get_logger
from kybernetes.master.api.limits import DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_WATCHES_PER_USER
from kybernetes.master.app import Master, MasterConfig, enabled_controllers
from kybernetes.master.join.masters import JoinError, bootstrap_address
from kybernetes.master.nodelink.relay import DEFAULT_EXEC_IDLE_TIMEOUT, DEFAULT_MAX_EXEC_SESSIONS_PER_NODE
from kybernetes.master.store.embedded import DEFAULT_ELECTION_MS, DEFAULT_HEARTBEAT_MS, RaftTiming
from kybernetes.master.store.etcdtls import EtcdClientTLS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", default="127.0.0.1:6443", show_default=True, help="Address of the gRPC API.")
@click.option("--etcd", default="", help="Comma-separated etcd client URLs; without it an embedded etcd runs.")
@click.option("--etcd-cafile", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="The CA of the etcd servers (https:// endpoints).")
@click.option("--etcd-certfile", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="The client certificate the master presents to etcd.")
@click.option("--etcd-keyfile", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="The key of --etcd-certfile.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path.home() / ".local/share/kybernetes",
              show_default=True, help="Where the embedded etcd keeps its data.")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True, help="Pod range; a /24 per Node.")
@click.option("--service-cidr", default="10.96.0.0/16", show_default=True, help="Service cluster IP range.")
@click.option("--node-monitor-grace-period", type=float, default=5.0, show_default=True,
              help="Seconds without heartbeat before a Node is Ready=Unknown.")
@click.option("--pod-eviction-timeout", type=float, default=1.0, show_default=True,
              help="Seconds after NotReady before a Node's pods are evicted (a Node whose stream broke is NotReady at "
                   "once; one whose kubelet closed it, a restart, has the grace period first).")
@click.option("--node-reconnect-window", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="With other masters: seconds a Node whose stream broke has to reconnect to another master before "
                   "it is lost (a master cut off from its Nodes' network then evicts nothing).")
@click.option("--unhealthy-zone-threshold", type=click.FloatRange(min=0, max=1, min_open=True), default=0.55,
              show_default=True, help="Fraction of Nodes not Ready together (and at least 2) at which the cluster "
                                      "is in full disruption: no pods are evicted from lost Nodes until fewer are.")
@click.option("--node-cidr-mask-size", type=click.IntRange(8, 30), default=24, show_default=True,
              help="Size of each Node's pod range within --cluster-cidr.")
@click.option("--node-link-max-pending-bytes", type=click.IntRange(min=64 * 1024), default=8 * 1024 * 1024,
              show_default=True,
              help="Bytes of pods, logs and exec requests that may wait for one kubelet to read them; beyond, its "
                   "stream ends with RESOURCE_EXHAUSTED and it resyncs when it reconnects. Services and Node routes "
                   "are not counted: only the newest set of each waits (docs/limits.md).")
@click.option("--node-link-send-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds one message to a kubelet may wait for it to read before its stream ends with "
                   "RESOURCE_EXHAUSTED (a kubelet that stopped reading; docs/limits.md).")
@click.option("--http2-max-streams-per-connection", type=click.IntRange(min=1),
              default=DEFAULT_MAX_STREAMS_PER_CONNECTION, show_default=True,
              help="Concurrent streams (calls, watches, log and exec sessions) of one client connection; further "
                   "ones wait for a free slot (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; docs/limits.md).")
@click.option("--max-watches-per-user", type=click.IntRange(min=1), default=DEFAULT_MAX_WATCHES_PER_USER,
              show_default=True,
              help="Watches one client identity may hold open on this master; one more is refused with "
                   "RESOURCE_EXHAUSTED. system:masters is not counted (docs/limits.md).")
@click.option("--max-exec-sessions-per-node", type=click.IntRange(min=1), default=DEFAULT_MAX_EXEC_SESSIONS_PER_NODE,
              show_default=True,
              help="Exec sessions that may be open on one Node at once; one more is refused with RESOURCE_EXHAUSTED "
                   "(docs/limits.md).")
@click.option("--exec-idle-timeout", type=click.FloatRange(min=0.1), default=DEFAULT_EXEC_IDLE_TIMEOUT,
              show_default=True,
              help="Seconds an exec session may pass no byte either way (no input, no output read) before it is "
                   "ended with RESOURCE_EXHAUSTED; 4 hours, as the kubelet's --streaming-connection-idle-timeout.")
@click.option("--controllers", default="*", show_default=True,
              help="Control loops to run: '*' for all, names to enable, '-name' to disable "
                   "(scheduler, replicaset, deployment, nodelifecycle, gc, endpoints).")
@click.option("--token", "token", default="", envvar="KYB_SERVER_TOKEN",
              help="The server token: seals the cluster CA in etcd; every master of a cluster needs the same one. "
                   "[default: <data-dir>/server-token, made at the first start]")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Read the server token from this file.")
@click.option("--bootstrap-listen", default="", help="Address of the bootstrap port, where a kubelet with a join "
                                                     "token gets its certificate.  [default: the API port + 1]")
@click.option("--tls-san", "tls_sans", multiple=True, metavar="NAME|IP",
              help="An extra name or address in the serving certificate (repeatable).")
@click.option("--write-kubeconfig", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the admin credentials file (0600).  [default: <data-dir>/admin.conf]")
@click.option("--certificate-validity", default="8760h", show_default=True, metavar="DURATION",
              help="Validity of the client certificates the master issues to Nodes and users, e.g. 720h; "
                   "kubelets renew theirs after two thirds of it (the admin file's is a year).")
@click.option("--leader-lease-duration", type=click.IntRange(min=1, max=60), default=1, show_default=True,
              help="Seconds of the control loops' leadership lease: a dead leader is replaced after about this. "
                   "etcd grants at least 1.5 × its election timeout, rounded up (1 s for the default timing); the "
                   "leader renews and stands down on the lease etcd grants.")
@click.option("--leader-retry-period", type=click.FloatRange(min=0.05, max=10), default=0.2, show_default=True,
              help="Seconds between a standby master's checks of the leadership.")
@click.option("--cluster-init", is_flag=True, default=False,
              help="Run the embedded etcd as a cluster other masters can join (--join), reachable at "
                   "--advertise-address.")
@click.option("--join", "join", default="", metavar="https://ADDR:PORT",
              help="Join the cluster of the master at ADDR (its API address): this master's embedded etcd becomes "
                   "a member of the masters' etcd. Needs the cluster's server token (--token or --token-file).")
@click.option("--advertise-address", default="", metavar="IP",
              help="The address other masters reach this one's etcd member at.  [default: the --listen host]")
@click.option("--etcd-client-port", type=click.IntRange(1, 65535), default=None,
              help="Client port of the embedded etcd.  [default: 2379, or the one it used last time]")
@click.option("--etcd-peer-port", type=click.IntRange(1, 65535), default=None,
              help="Peer port of the embedded etcd.  [default: 2380, or the one it used last time]")
@click.option("--etcd-name", default="", help="Name of the embedded etcd member.  [default: <hostname>-<random>, "
                                              "kept in the data dir]")
@click.option("--etcd-heartbeat-interval", type=click.IntRange(1, 10_000), default=DEFAULT_HEARTBEAT_MS,
              show_default=True, metavar="MS",
              help="Milliseconds between the embedded etcd leader's heartbeats: about the round trip between members.")
@click.option("--etcd-election-timeout", type=click.IntRange(5, 50_000), default=DEFAULT_ELECTION_MS,
              show_default=True, metavar="MS",
              help="Milliseconds a member of the embedded etcd waits for its leader before it campaigns: at least 5, "
                   "best 10, heartbeat intervals. Raise both on slow machines (emulated VMs, busy disks).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def main(listen: str, etcd: str, etcd_cafile: Path | None, etcd_certfile: Path | None, etcd_keyfile: Path | None,
         data_dir: Path, cluster_cidr: str, service_cidr: str,
         node_monitor_grace_period: float, pod_eviction_timeout: float, node_cidr_mask_size: int, controllers: str,
         node_reconnect_window: float, unhealthy_zone_threshold: float, node_link_max_pending_bytes: int,
         node_link_send_timeout: float, http2_max_streams_per_connection: int, max_watches_per_user: int,
         max_exec_sessions_per_node: int, exec_idle_timeout: float,
         token: str, token_file: Path | None, bootstrap_listen: str, tls_sans: tuple[str, ...],
         write_kubeconfig: Path | None, certificate_validity: str, leader_lease_duration: int,
         leader_retry_period: float, cluster_init: bool, join: str, advertise_address: str,
         etcd_client_port: int | None, etcd_peer_port: int | None, etcd_name: str, etcd_heartbeat_interval: int,
         etcd_election_timeout: int, log_level: str) -> None:
    """Run the Kybernetes master: the API server, the node link and the control loops."""
    configure(level=log_level)
    config = MasterConfig(listen=listen, etcd=[e for e in etcd.split(",") if e], data_dir=data_dir,
                          cluster_cidr=cluster_cidr, service_cidr=service_cidr,
                          node_monitor_grace_period=node_monitor_grace_period,
                          pod_eviction_timeout=pod_eviction_timeout, node_cidr_mask_size=node_cidr_mask_size,
                          controllers=controllers, token=token, bootstrap_listen=bootstrap_listen,
                          tls_sans=list(tls_sans), write_kubeconfig=write_kubeconfig)
    config.certificate_validity = _duration(certificate_validity, flag="--certificate-validity")
    config.leader_lease_seconds, config.leader_retry_period = leader_lease_duration, leader_retry_period
    config.cluster_init, config.join, config.advertise_address = cluster_init, join, advertise_address
    config.etcd_client_port, config.etcd_peer_port, config.etcd_name = etcd_client_port, etcd_peer_port, etcd_name
    config.unhealthy_zone_threshold = unhealthy_zone_threshold
    config.node_reconnect_window = node_reconnect_window
    config.node_link_max_pending_bytes = node_link_max_pending_bytes
    config.node_link_send_timeout = node_link_send_timeout
    config.http2_max_streams_per_connection = http2_max_streams_per_connection
    config.max_watches_per_user = max_watches_per_user
    config.max_exec_sessions_per_node = max_exec_sessions_per_node
    config.exec_idle_timeout = exec_idle_timeout
    try:
        config.etcd_timing = RaftTiming(heartbeat_ms=etcd_heartbeat_interval, election_ms=etcd_election_timeout)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--etcd-election-timeout") from None
    endpoints = config.etcd
    if (cluster_init or join) and endpoints:
        raise click.UsageError("--cluster-init and --join are for the embedded etcd: with --etcd, every master "
                               "is given the same etcd cluster instead")
    if cluster_init and join:
        raise click.UsageError("--cluster-init starts a new cluster, --join joins one: give one of them")
    files = (etcd_cafile, etcd_certfile, etcd_keyfile)
    if any(files) and not all(files):
        raise click.UsageError("--etcd-cafile, --etcd-certfile and --etcd-keyfile go together")
    if endpoints and not all(files):
        raise click.UsageError("--etcd: etcd is reached over mutual TLS only: give --etcd-cafile, --etcd-certfile "
                               "and --etcd-keyfile (or no --etcd, for the embedded etcd)")
    if any(e.startswith("http://") for e in endpoints):
        raise click.UsageError("--etcd: must be https:// URLs (etcd is reached over mutual TLS only)")
    if etcd_cafile and etcd_certfile and etcd_keyfile:
        config.etcd_tls = EtcdClientTLS(ca=etcd_cafile, cert=etcd_certfile, key=etcd_keyfile)
    if token_file is not None:
        try:
            config.token = token_file.read_text().strip()
        except OSError as err:
            raise click.BadParameter(f"{token_file}: {err.strerror}", param_hint="--token-file") from None
        if not config.token:
            raise click.BadParameter(f"{token_file}: empty", param_hint="--token-file")
    if join and not config.token:
        raise click.UsageError("--join: the cluster's server token is required (--token, --token-file or "
                               "$KYB_SERVER_TOKEN): it is in the first master's <data-dir>/server-token")
    if join:
        try:
            bootstrap_address(join)
        except JoinError as err:
            raise click.BadParameter(str(err).removeprefix("--join: "), param_hint="--join") from None
    try:
        enabled_controllers(controllers)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass


def _duration(text: str, *, flag: str) -> dt.timedelta:
    """`90s`, `30m`, `720h` or plain seconds; at least 10 seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text.strip())
    if not match:
        raise click.BadParameter(f'"{text}": must be a duration such as 90s, 30m or 720h', param_hint=flag)
    seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, None: 1}[match[2]]
    if seconds < 10:
        raise click.BadParameter(f'"{text}": must be at least 10s', param_hint=flag)
    return dt.timedelta(seconds=seconds)


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
