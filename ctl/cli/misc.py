"""`kybctl version` and `kybctl api-resources`.

The master has no version RPC; `version` asks its gRPC health service, which
answers only when the API is serving, and reports the address and state.
"""

from __future__ import annotations

import click

from kybernetes.core.api import kinds
from kybernetes.ctl.cli.args import resource_name
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.printers import tabulate
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, pass_settings


def client_version() -> str:
    """`v` + the installed kybernetes distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "v" + version("kybernetes")
    except PackageNotFoundError:
        return "v0.0.0-dev"


@command("version")
@click.option("--client", "client_only", is_flag=True, help="Print the client version only.")
@pass_settings
def version(settings: Settings, client_only: bool) -> None:
    """Print the client version and the server's state."""
    echo(f"Client Version: {client_version()}")
    if client_only:
        return

    async def server_state(client: object) -> str:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from kybernetes.ctl.client import ApiError, error_from_rpc

        stub = health_pb2_grpc.HealthStub(client.channel)  # type: ignore[attr-defined]
        try:
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=settings.request_timeout)
        except grpc.RpcError as err:
            error: ApiError = error_from_rpc(err)
            raise error from None
        state = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return f"kyb-master at {settings.server} ({state})"

    echo(f"Server Version: {run(settings, server_state)}")


@command("api-resources")
@click.option("--namespaced", type=click.BOOL, default=None, help="true: only namespaced kinds; false: only "
              "cluster-scoped ones.")
@click.option("-o", "--output", type=click.Choice(["wide", "name"]), help="name: only the resource names.")
@click.option("--no-headers", is_flag=True, help="Omit the table header.")
def api_resources(namespaced: bool | None, output: str | None, no_headers: bool) -> None:
    """Print the supported kinds: NAME SHORTNAMES APIVERSION NAMESPACED KIND."""
    rows = [k for k in sorted(kinds.KINDS, key=lambda k: k.resource)
            if namespaced is None or k.namespaced == namespaced]
    if output == "name":
        for kind in rows:
            echo(resource_name(kind))
        return
    table = [] if no_headers else [["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]]
    table.extend([k.resource, ",".join(k.short_names), k.api_version, str(k.namespaced).lower(), k.kind]
                 for k in rows)
    for line in tabulate(table):
        echo(line)
