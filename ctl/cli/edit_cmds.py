"""Commands that change one aspect of existing objects: label, annotate, scale, set image.

Each is a read-modify-write through `runner.read_modify_write` (retried on
Conflict, or pinned with --resource-version), with the change itself a small
pure function on the object, so the rules (kubectl's --overwrite refusal, the
`*` container wildcard) are testable without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from kybernetes.core.api.selectors import label_key_error, label_value_error
from kybernetes.ctl.cli.args import Target, check_selector, parse_resource_args, type_name
from kybernetes.ctl.cli.errors import CliError, SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.runner import read_modify_write, run
from kybernetes.ctl.cli.settings import Settings, command, group, pass_settings
from kybernetes.ctl.client import ApiError, Client

# ---------------------------------------------------------------- label / annotate


@dataclass(frozen=True, slots=True)
class MapChange:
    """`k=v` pairs to set and `k-` keys to remove, parsed from the command line."""

    set: dict[str, str]
    remove: tuple[str, ...]


def parse_map_args(specs: Sequence[str], *, what: str, validate: bool) -> MapChange:
    """Parse `k=v`/`k-` arguments; `validate` applies the label key and value rules."""
    to_set: dict[str, str] = {}
    remove: list[str] = []
    for spec in specs:
        if spec.endswith("-") and "=" not in spec:
            key = spec[:-1]
            if validate and (problem := label_key_error(key)):
                raise usage_error(f"invalid {what} spec: {spec}: {problem}")
            remove.append(key)
            continue
        key, eq, value = spec.partition("=")
        if not eq or not key:
            raise usage_error(f"invalid {what} spec: {spec}, should be key=value or key-")
        if validate and (problem := label_key_error(key) or label_value_error(value)):
            raise usage_error(f"invalid {what} spec: {spec}: {problem}")
        to_set[key] = value
    overlap = set(to_set) & set(remove)
    if overlap:
        raise usage_error(f"can not both modify and remove the following {what}(s) in the same command: "
                          f"{', '.join(sorted(overlap))}")
    return MapChange(to_set, tuple(remove))


def apply_map_change(current: Any, change: MapChange, *, overwrite: bool, what: str) -> bool:
    """Edit a protobuf map (labels/annotations) in place; kubectl's refusal without --overwrite."""
    for key, value in change.set.items():
        if key in current and current[key] != value and not overwrite:
            raise usage_error(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
    changed = False
    for key, value in change.set.items():
        if current.get(key) != value:
            current[key] = value
            changed = True
    for key in change.remove:
        if key in current:
            del current[key]
            changed = True
    return changed


def _is_change(arg: str) -> bool:
    return "=" in arg or (arg.endswith("-") and len(arg) > 1)


def _map_targets(args: Sequence[str], selector: str, all_objects: bool) -> tuple[list[Target], list[str], Any]:
    """Split `KIND NAME… k=v…` / `KIND/NAME… k=v…` / `KIND -l SEL k=v…` into targets and changes."""
    split = next((i for i, arg in enumerate(args) if _is_change(arg)), len(args))
    resources_args, changes = list(args[:split]), list(args[split:])
    if not all(_is_change(arg) for arg in changes):
        raise usage_error("the resources must come before the changes (KIND NAME… key=value… key-…)")
    resources = parse_resource_args(resources_args)
    if not resources.kinds:
        raise usage_error("You must provide one or more resources by argument or filename.")
    if not changes:
        raise usage_error("at least one label update is required")
    if resources.targets and (selector or all_objects):
        raise usage_error("name cannot be provided when a selector is specified")
    if not resources.targets and not (selector or all_objects):
        raise usage_error("resource(s) were provided, but no name was specified")
    return list(resources.targets), changes, resources.kinds


async def _selected(client: Client, settings: Settings, kinds: Sequence[Any], selector: str) -> list[Target]:
    out: list[Target] = []
    for kind in kinds:
        listed = await client.list(kind.resource, namespace=settings.namespace_for(kind), label_selector=selector)
        out.extend(Target(kind, o.metadata.name, o.metadata.namespace)
                   for o in sorted(listed.items, key=lambda o: o.metadata.name))
    return out


def _map_command(*, field: str, verb: str, what: str, validate: bool) -> click.Command:
    """`label` and `annotate`: the same command over metadata.labels or metadata.annotations."""

    @command(what if what != "annotation" else "annotate", short_help=f"Update the {what}s on objects.")
    @click.argument("args", nargs=-1, required=True)
    @click.option("--overwrite", is_flag=True, help=f"Allow changing an existing {what}'s value.")
    @click.option("-l", "--selector", default="", help="Change every object of KIND matching this selector.")
    @click.option("--all", "all_objects", is_flag=True, help="Change every object of KIND in the namespace.")
    @click.option("--resource-version", default="", help="Fail unless the object is still at this version.")
    @pass_settings
    def cmd(settings: Settings, args: tuple[str, ...], overwrite: bool, selector: str, all_objects: bool,
            resource_version: str) -> None:
        check_selector(selector)
        targets, specs, kinds = _map_targets(args, selector, all_objects)
        change = parse_map_args(specs, what=what, validate=validate)

        def edit(obj: Any) -> bool:
            return apply_map_change(getattr(obj.metadata, field), change, overwrite=overwrite, what=what)

        async def body(client: Client) -> int:
            chosen = targets or await _selected(client, settings, kinds, selector)
            failed = 0
            for target in chosen:
                try:
                    _, changed = await read_modify_write(client, target, settings=settings, change=edit,
                                                         resource_version=resource_version)
                except ApiError as err:
                    report_error(err, settings)
                    failed += 1
                    continue
                if changed:
                    outcome = verb if change.set else f"un{verb}"
                else:
                    outcome = f"not {verb}"
                echo(f"{type_name(target.kind)}/{target.name} {outcome}")
            return failed

        if run(settings, body):
            raise SilentExit(1)

    cmd.help = (f"Update the {what}s on objects: {cmd.name} KIND NAME key=value… key-…  (or KIND/NAME, "
                f"or KIND -l SELECTOR).")
    return cmd


label = _map_command(field="labels", verb="labeled", what="label", validate=True)
annotate = _map_command(field="annotations", verb="annotated", what="annotation", validate=False)

# ---------------------------------------------------------------- scale

SCALABLE = ("Deployment", "ReplicaSet")


def _single_target(args: Sequence[str], *, verb: str) -> Target:
    resources = parse_resource_args(args)
    if not resources.targets:
        raise usage_error(f"you must specify the name of the object to {verb} (KIND NAME or KIND/NAME)")
    if len(resources.targets) != 1:
        raise usage_error(f"only one object can be given to {verb}")
    return resources.targets[0]


@command("scale")
@click.argument("args", nargs=-1, required=True)
@click.option("--replicas", type=int, required=True, help="The new number of replicas.")
@click.option("--current-replicas", type=int, default=-1, help="Precondition: the current number of replicas.")
@click.option("--resource-version", default="", help="Precondition: the object's current version.")
@pass_settings
def scale(settings: Settings, args: tuple[str, ...], replicas: int, current_replicas: int,
          resource_version: str) -> None:
    """Set the number of replicas of a Deployment or ReplicaSet: scale deployment/NAME --replicas=N"""
    target = _single_target(args, verb="scale")
    if target.kind.kind not in SCALABLE:
        raise usage_error(f'cannot scale {target.kind.resource}: only deployments and replicasets have replicas')
    if replicas < 0:
        raise usage_error("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")

    def edit(obj: Any) -> bool:
        current = obj.spec.replicas if obj.spec.HasField("replicas") else 1
        if current_replicas >= 0 and current != current_replicas:
            raise CliError(f"error: Expected replicas to be {current_replicas}, was {current}")
        if obj.spec.HasField("replicas") and current == replicas:
            return False
        obj.spec.replicas = replicas
        return True

    run(settings, lambda client: read_modify_write(client, target, settings=settings, change=edit,
                                                   resource_version=resource_version))
    echo(f"{type_name(target.kind)}/{target.name} scaled")


# ---------------------------------------------------------------- set image


@group("set", short_help="Set specific features on objects.")
def set_group() -> None:
    """Set specific features on objects (image)."""


def pod_spec_of(obj: Any) -> Any:
    """The pod spec inside a Pod, ReplicaSet or Deployment."""
    from kybernetes.proto import objects_pb2 as pb

    if isinstance(obj, pb.Pod):
        return obj.spec
    if isinstance(obj, pb.ReplicaSet | pb.Deployment):
        return obj.spec.template.spec
    raise usage_error(f"{type(obj).__name__} has no containers")


def set_images(spec: Any, images: Mapping[str, str]) -> bool:
    """Point the named containers (or all, with `*`) at new images; CliError for an unknown container."""
    names = {c.name for c in spec.containers}
    for name in images:
        if name != "*" and name not in names:
            raise usage_error(f'unable to find container named "{name}"')
    changed = False
    for container in spec.containers:
        image = images.get(container.name, images.get("*"))
        if image is not None and container.image != image:
            container.image = image
            changed = True
    return changed


@command("image")
@click.argument("args", nargs=-1, required=True)
@pass_settings
def set_image(settings: Settings, args: tuple[str, ...]) -> None:
    """Update container images: set image deployment/NAME CONTAINER=IMAGE… (CONTAINER may be *)."""
    resource_args = [a for a in args if "=" not in a]
    pairs = [a for a in args if "=" in a]
    if not pairs:
        raise usage_error("at least one image update is required")
    images: dict[str, str] = {}
    for pair in pairs:
        name, _, image = pair.partition("=")
        if not name or not image:
            raise usage_error(f"invalid image update {pair!r}: should be CONTAINER=IMAGE")
        images[name] = image
    resources = parse_resource_args(resource_args)
    if not resources.targets:
        raise usage_error("you must specify the objects to update (KIND NAME or KIND/NAME)")
    for target in resources.targets:
        if target.kind.kind not in ("Pod", "ReplicaSet", "Deployment"):
            raise usage_error(f"cannot set images of {target.kind.resource}")

    async def body(client: Client) -> int:
        failed = 0
        for target in resources.targets:
            try:
                _, changed = await read_modify_write(
                    client, target, settings=settings, change=lambda obj: set_images(pod_spec_of(obj), images))
            except ApiError as err:
                report_error(err, settings)
                failed += 1
                continue
            if changed:
                echo(f"{type_name(target.kind)}/{target.name} image updated")
        return failed

    if run(settings, body):
        raise SilentExit(1)


set_group.add_command(set_image)
