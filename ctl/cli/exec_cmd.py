"""`kybctl exec POD [-c C] [-i] -- CMD…`: run a command in a container through the master's PodAPI.Exec.

One bidirectional stream: the first message starts the command, the answers
carry its stdout and stderr (written to ours as they come) and finally its
exit code. With -i our stdin is forwarded as it is read, then an eof. Like
kubectl, a command that ran and failed makes us exit with its code after
`command terminated with exit code N` on stderr; everything else that goes
wrong (no such pod, container, binary) is one error line and exit code 1.

stdin is read by a daemon thread, not the event loop: it may be a pipe, a
terminal or a regular file, and a read still blocked when the command has
exited must not keep the process alive.

When the command cannot start, the kubelet streams containerd's own error
line (`ctr: OCI runtime exec failed: …`) as stderr before it reports the
failure with the same text; such a line is held back until the stream goes
on, and dropped when the failure that follows repeats it, so that the
failure is one line.

The command is what follows `--`, as in kubectl, which refuses the old
`exec POD CMD` form; `ExecCommand` records the words after `--` before click
parses the rest.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

import click
import grpc

from kybernetes.ctl.cli.errors import CliError, SilentExit, one_line, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.podselect import all_container_names, choose_container, pod_api_error, require_host, resolve_pod
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, parse_duration, pass_settings
from kybernetes.ctl.client import Client, error_from_rpc
from kybernetes.proto import node_pb2, node_pb2_grpc

_AFTER_DASH = "kyb.exec.after_dash"
_READ_SIZE = 64 * 1024
_STREAM_OUT = {1: "stdout", 2: "stderr"}
_RUNTIME_DIAGNOSTIC = b"ctr: "


def _write(stream_name: str, data: bytes) -> None:
    stream = sys.stdout if stream_name == "stdout" else sys.stderr
    stream.buffer.write(data)
    stream.buffer.flush()


class ExecCommand(click.Command):
    """A command that keeps the words after `--` apart from its own arguments."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            index = args.index("--")
            ctx.meta[_AFTER_DASH] = args[index + 1:]
            args = args[:index]
        else:
            ctx.meta[_AFTER_DASH] = None
        return super().parse_args(ctx, args)


@command("exec", cls=ExecCommand)
@click.argument("args", nargs=-1, metavar="POD|TYPE/NAME -- COMMAND [ARG…]")
@click.option("-c", "--container", default="", help="The container (default: the only or first one).")
@click.option("-i", "--stdin", "forward_stdin", is_flag=True, help="Pass our stdin to the command.")
@click.option("-t", "--tty", is_flag=True,
              help="Accepted for kubectl's `-it`; the node link has no terminals, so the command runs without one.")
@click.option("--pod-running-timeout", "pod_timeout_text", default="1m", show_default=True,
              help="How long to wait for a pod behind TYPE/NAME to exist.")
@click.pass_context
@pass_settings
def exec_command(settings: Settings, ctx: click.Context, args: tuple[str, ...], container: str,
                 forward_stdin: bool, tty: bool, pod_timeout_text: str) -> None:
    """Run a command in a container: exec POD [-c CONTAINER] [-i] -- COMMAND [ARG…]"""
    argv: list[str] | None = ctx.meta.get(_AFTER_DASH)
    if not args:
        raise usage_error("pod, type/name or --filename must be specified")
    if len(args) > 1:
        raise usage_error("exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead")
    if not argv:
        raise usage_error("you must specify at least one command for the container")
    pod_timeout = parse_duration(pod_timeout_text, flag="--pod-running-timeout")
    if tty:
        # kubectl's words when it cannot give the command a terminal; it then runs without one, as here.
        echo("Unable to use a TTY - the node link does not carry terminals", err=True)

    async def body(client: Client) -> int:
        pod = await resolve_pod(client, settings, args[0], verb="attach to", timeout=pod_timeout)
        if pod.status.phase in ("Succeeded", "Failed"):
            raise CliError(f"error: cannot exec into a container in a completed pod; current phase is "
                           f"{pod.status.phase}")
        names = [c.name for c in pod.spec.containers]
        if container and container not in names:
            raise CliError(f"error: container {container} is not valid for pod {pod.metadata.name} out of: "
                           f"{all_container_names(pod)}")
        chosen = choose_container(pod, container)
        require_host(pod)
        start = node_pb2.ExecStart(namespace=pod.metadata.namespace, pod=pod.metadata.name, container=chosen,
                                   command=argv, stdin=forward_stdin)
        return await run_exec(client, start)

    code = run(settings, body)
    if code != 0:
        echo(f"command terminated with exit code {code}", err=True)
        raise SilentExit(code)


async def run_exec(client: Client, start: node_pb2.ExecStart) -> int:
    """Run the command; copy its output to ours (and, with start.stdin, our stdin to it); its exit code."""
    stub = node_pb2_grpc.PodAPIStub(client.channel)
    call: Any = stub.Exec()
    pump: asyncio.Task[None] | None = None
    held = b""  # a runtime diagnostic on stderr, until we know whether the failure repeats it
    try:
        await call.write(node_pb2.ExecClientMessage(start=start))
        if start.stdin:
            pump = asyncio.create_task(_forward_stdin(call))
        else:
            await call.done_writing()
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise CliError("error: the exec stream ended before the command exited")
            if message.data:
                if held:
                    _write("stderr", held)
                    held = b""
                if message.stream == 2 and message.data.startswith(_RUNTIME_DIAGNOSTIC):
                    held = bytes(message.data)
                else:
                    _write(_STREAM_OUT.get(message.stream, "stderr"), message.data)
            if message.exited:
                if message.error:
                    raise CliError(f"error: {message.error}")
                return message.exit_code
    except grpc.RpcError as err:
        api = error_from_rpc(err)
        if api.code == grpc.StatusCode.FAILED_PRECONDITION:
            # The kubelet could not start the command: kubectl shows the runtime's reason as an error.
            message = one_line(api.message)
            if held and one_line(held[len(_RUNTIME_DIAGNOSTIC):].decode(errors="replace")) in message:
                held = b""
            raise CliError(f"error: {message}") from None
        raise pod_api_error(api, pod=start.pod) from None
    finally:
        if held:
            _write("stderr", held)
        if pump is not None:
            pump.cancel()
        call.cancel()


async def _forward_stdin(call: Any) -> None:
    """Send our stdin as ExecInput messages, then eof."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    def reader() -> None:
        fd = sys.stdin.fileno()
        try:
            while True:
                data = os.read(fd, _READ_SIZE)
                loop.call_soon_threadsafe(chunks.put_nowait, data or None)
                if not data:
                    return
        except (OSError, RuntimeError):  # stdin closed, or the loop is gone because the command ended
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, None)
            except RuntimeError:
                pass

    threading.Thread(target=reader, name="exec-stdin", daemon=True).start()
    while True:
        data = await chunks.get()
        if data is None:
            await call.write(node_pb2.ExecClientMessage(input=node_pb2.ExecInput(eof=True)))
            await call.done_writing()
            return
        await call.write(node_pb2.ExecClientMessage(input=node_pb2.ExecInput(data=data)))
