"""`kybctl logs`: a container's output, streamed from its kubelet through the master's PodAPI.Logs.

Forms: `logs POD [CONTAINER]`, `logs TYPE/NAME` (the first pod behind a
deployment, replicaset or service, as kubectl picks it; see podselect). The
bytes are written to stdout as they arrive; with -f the stream stays open
until the container stops or the user interrupts.

`--tail N` is sent as is and "all" as -1. The node link cannot express
`--tail=0` (the kubelet reads 0 as "all"), so it is done here: without -f
nothing is printed (a request for one line still checks that the logs can be
read); with -f, when the log already has a line, the follow asks for that
last line and drops it, so that only new output shows (a line written in the
instant between the two requests may be lost; an empty log is followed whole).
"""

from __future__ import annotations

import sys

import click
import grpc

from kybernetes.ctl.cli.errors import CliError, usage_error
from kybernetes.ctl.cli.podselect import choose_container, pod_api_error, require_host, resolve_pod
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, parse_duration, pass_settings
from kybernetes.ctl.client import Client
from kybernetes.proto import node_pb2, node_pb2_grpc


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@command("logs")
@click.argument("args", nargs=-1, metavar="POD|TYPE/NAME [CONTAINER]")
@click.option("-c", "--container", default="", help="The container to read (default: the only or first one).")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output.")
@click.option("--tail", type=int, default=-1, show_default=True,
              help="Lines of recent output to show (-1: all).")
@click.option("-p", "--previous", is_flag=True, help="The previous, terminated instance of the container.")
@click.option("--pod-running-timeout", "pod_timeout_text", default="20s", show_default=True,
              help="How long to wait for a pod behind TYPE/NAME to exist.")
@pass_settings
def logs(settings: Settings, args: tuple[str, ...], container: str, follow: bool, tail: int, previous: bool,
         pod_timeout_text: str) -> None:
    """Print the logs of a container in a pod: logs POD [-c CONTAINER] [-f] [--tail N] [--previous]"""
    if not args:
        raise usage_error("expected POD or TYPE/NAME as an argument")
    if len(args) > 2:
        raise usage_error("expected at most POD or TYPE/NAME and a CONTAINER as arguments")
    if len(args) == 2:
        if container:
            raise usage_error("only one of -c or an inline [CONTAINER] arg is allowed")
        container = args[1]
    if tail < -1:
        raise usage_error(f"--tail: invalid value {tail}: must be -1 (all) or greater")
    pod_timeout = parse_duration(pod_timeout_text, flag="--pod-running-timeout")

    async def body(client: Client) -> None:
        pod = await resolve_pod(client, settings, args[0], verb="get the logs from", timeout=pod_timeout)
        names = [c.name for c in pod.spec.containers]
        if container and container not in names:
            raise CliError(f"error: container {container} is not valid for pod {pod.metadata.name}")
        chosen = choose_container(pod, container)
        require_host(pod)
        request = node_pb2.LogsRequest(namespace=pod.metadata.namespace, pod=pod.metadata.name, container=chosen,
                                       follow=follow, previous=previous)
        if tail >= 0:
            request.tail_lines = tail  # unset means all lines; 0 means none, as kubectl's --tail=0
        await _stream(client, request)

    try:
        run(settings, body)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how -f ends


async def _stream(client: Client, request: node_pb2.LogsRequest) -> None:
    """Copy the log stream to stdout as it arrives."""
    stub = node_pb2_grpc.PodAPIStub(client.channel)
    call = stub.Logs(request)
    try:
        async for chunk in call:
            if chunk.data:
                _write(bytes(chunk.data))
    except grpc.RpcError as err:
        raise pod_api_error(err, pod=request.pod) from None
    finally:
        call.cancel()
