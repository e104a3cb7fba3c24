"""`kybctl create`: create objects from files (`create -f`) or from flags (`create deployment`).

Generators build the same object kubectl's would (`deployment_for` is pure), so
`create deployment web --image=nginx --dry-run=client -o yaml` prints a
manifest that `apply` accepts. More generators (service, …) are more
subcommands of this group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from kybernetes.core.api.kinds import ApiObject
from kybernetes.ctl.cli import printers
from kybernetes.ctl.cli.args import object_ref
from kybernetes.ctl.cli.errors import SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, group, pass_settings
from kybernetes.ctl.client import ApiError, Client
from kybernetes.proto import objects_pb2 as pb

_OUTPUTS = click.Choice(["json", "yaml", "name"])
_DRY_RUN = click.Choice(["none", "client"])


@group("create", aliases={"deploy": "deployment"}, invoke_without_command=True)
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE|DIR|-",
              help="Create the objects in these manifests (repeatable).")
@click.option("-R", "--recursive", is_flag=True, help="Also read manifests in subdirectories.")
@click.option("-o", "--output", type=click.Choice(["name"]), help="Print only kind/name of each object.")
@click.pass_context
def create(ctx: click.Context, filenames: tuple[str, ...], recursive: bool, output: str | None) -> None:
    """Create objects from files (create -f FILE) or from flags (create deployment NAME --image=IMAGE)."""
    if ctx.invoked_subcommand is not None:
        if filenames:
            raise usage_error("cannot specify both a subcommand and --filename")
        return
    if not filenames:
        raise usage_error("must specify one of -f or a subcommand (deployment)")
    from kybernetes.ctl.cli.files import load_manifests

    settings = ctx.ensure_object(Settings)
    manifests = load_manifests(filenames, recursive=recursive)
    if not manifests:
        raise usage_error("no objects passed to create")
    for item in manifests:
        if item.kind.namespaced and not item.namespace:
            item.obj.metadata.namespace = settings.namespace

    async def body(client: Client) -> int:
        failed = 0
        for item in manifests:
            try:
                created = await client.create(item.obj)
            except ApiError as err:
                report_error(err, settings)
                failed += 1
                continue
            echo(object_ref(created) if output == "name" else f"{object_ref(created)} created")
        return failed

    if run(settings, body):
        raise SilentExit(1)


def container_name(image: str) -> str:
    """kubectl's container name for an image: its last path component without tag or digest."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name.replace("_", "-").lower()


def deployment_for(*, name: str, images: Sequence[str], replicas: int, port: int, command: Sequence[str],
                   namespace: str) -> pb.Deployment:
    """The Deployment `kubectl create deployment` builds: app=NAME labels and selector, one container per image."""
    deployment = pb.Deployment(api_version="apps/v1", kind="Deployment")
    deployment.metadata.name = name
    deployment.metadata.namespace = namespace
    deployment.metadata.labels["app"] = name
    deployment.spec.replicas = replicas
    deployment.spec.selector.match_labels["app"] = name
    template = deployment.spec.template
    template.metadata.labels["app"] = name
    used: set[str] = set()
    for image in images:
        base = container_name(image)
        unique, suffix = base, 2
        while unique in used:  # two images with the same base name get distinct container names
            unique, suffix = f"{base}-{suffix}", suffix + 1
        used.add(unique)
        template.spec.containers.add(name=unique, image=image)
    first = template.spec.containers[0]
    if port >= 0:
        first.ports.add(container_port=port)
    if command:
        first.command.extend(command)
    return deployment


@command("deployment")
@click.argument("name")
@click.argument("command_args", nargs=-1, metavar="[-- COMMAND [ARG…]]")
@click.option("--image", "images", multiple=True, required=True, help="Container image (repeatable).")
@click.option("--replicas", type=int, default=1, show_default=True, help="Number of replicas.")
@click.option("--port", type=int, default=-1, help="The port the first container exposes.")
@click.option("--dry-run", type=_DRY_RUN, default="none", is_flag=False, flag_value="client",
              help="client: only print the object that would be created.")
@click.option("-o", "--output", type=_OUTPUTS, help="Print the object (json, yaml) or kind/name.")
@pass_settings
def create_deployment(settings: Settings, name: str, command_args: tuple[str, ...], images: tuple[str, ...],
                      replicas: int, port: int, dry_run: str, output: str | None) -> None:
    """Create a deployment: create deployment NAME --image=IMAGE [--replicas=N] [--port=P] [-- COMMAND ARG…]"""
    if replicas < 0:
        raise usage_error("--replicas must not be negative")
    if port > 65535:
        raise usage_error(f"--port {port}: must be between 0 and 65535")
    deployment = deployment_for(name=name, images=images, replicas=replicas, port=port, command=command_args,
                                namespace=settings.namespace)
    result: Any = deployment
    if dry_run == "none":
        result = run(settings, lambda client: client.create(deployment))
    _print_created(result, output=output, dry_run=dry_run != "none")


def _print_created(obj: ApiObject, *, output: str | None, dry_run: bool) -> None:
    if output in ("json", "yaml"):
        from kybernetes.core.api import manifest

        echo(printers.format_document(manifest.to_dict(obj), output))
    elif output == "name":
        echo(object_ref(obj))
    else:
        echo(f"{object_ref(obj)} created" + (" (dry run)" if dry_run else ""))


create.add_command(create_deployment)
