"""`kybctl apply -f`: make objects look like their manifests, creating the missing ones.

Like kubectl's client-side apply, the manifest is remembered in the
`kubectl.kubernetes.io/last-applied-configuration` annotation and a change is a
three-way merge of (live object, new manifest, last-applied manifest):
  * every field the manifest sets wins (maps merge key by key; lists and scalars
    are replaced, the server re-defaults list items);
  * a field the previous manifest set and this one drops is removed;
  * anything else on the live object stays: server-set metadata, status, and
    fields other actors own (a pod's nodeName, replicas set by `kybctl scale`
    when the manifest leaves them out).
Nothing is sent when every field of the manifest already holds on the live
object and nothing needs removing: that prints `unchanged`.

The get + merge + update runs again when another writer got in between
(Conflict). A manifest that carries metadata.resourceVersion makes that version
the update's precondition, and a Conflict is then reported, not retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from kybernetes.core.api import manifest
from kybernetes.core.api.kinds import ApiObject
from kybernetes.ctl.cli.args import object_ref
from kybernetes.ctl.cli.errors import SilentExit, report_error, usage_error
from kybernetes.ctl.cli.files import Manifest, load_manifests
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.runner import retry_on_conflict, run
from kybernetes.ctl.cli.settings import Settings, command, pass_settings
from kybernetes.ctl.client import AlreadyExistsError, Client, ConflictError, NotFoundError

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Metadata the server owns or that identifies the object: never merged from a manifest.
_SERVER_METADATA = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                              "deletionTimestamp", "deletionGracePeriodSeconds", "generateName"})
_NOT_MERGED = frozenset({"apiVersion", "kind", "status"})


# ---------------------------------------------------------------- the three-way merge (pure)


def merge(live: dict[str, Any], new: dict[str, Any], last: dict[str, Any] | None) -> dict[str, Any]:
    """`live` changed to hold every field of `new`, minus the fields `last` had and `new` dropped."""
    out = dict(live)
    for key, value in new.items():
        before = live.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            previous = last.get(key) if last is not None else None
            out[key] = merge(before, value, previous if isinstance(previous, dict) else None)
        else:
            out[key] = value
    for key in last or ():
        if key not in new:
            out.pop(key, None)
    return out


def holds(live: Any, new: Any) -> bool:
    """Whether every field `new` sets has the same value in `live` (lists: same length, item by item)."""
    if isinstance(new, dict):
        return isinstance(live, dict) and all(k in live and holds(live[k], v) for k, v in new.items())
    if isinstance(new, list):
        return isinstance(live, list) and len(live) == len(new) and all(
            holds(a, b) for a, b in zip(live, new, strict=True))
    return live == new


def removes_something(live: Any, new: Any, last: Any) -> bool:
    """Whether `merge` would remove a field that `live` has."""
    if not isinstance(last, dict) or not isinstance(live, dict):
        return False
    new = new if isinstance(new, dict) else {}
    for key, previous in last.items():
        if key not in new:
            if key in live:
                return True
        elif isinstance(new[key], dict) and removes_something(live.get(key), new[key], previous):
            return True
    return False


def _desired_view(obj: ApiObject) -> dict[str, Any]:
    """The part of a manifest's object that apply makes true: everything but identity, server fields, status."""
    doc = {k: v for k, v in manifest.to_dict(obj).items() if k not in _NOT_MERGED}
    metadata = {k: v for k, v in doc.get("metadata", {}).items() if k not in _SERVER_METADATA}
    doc["metadata"] = metadata
    return doc


def last_applied_text(obj: ApiObject) -> str:
    """The annotation value: the manifest as compact JSON, without the annotation itself."""
    doc = manifest.to_dict(obj)
    doc.get("metadata", {}).pop("resourceVersion", None)
    annotations = doc.get("metadata", {}).get("annotations", {})
    annotations.pop(LAST_APPLIED, None)
    if "annotations" in doc.get("metadata", {}) and not annotations:
        del doc["metadata"]["annotations"]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_update(live: Any, applied: Any) -> Any | None:
    """The object to send to make `live` match the manifest object `applied`, or None when it already does."""
    text = last_applied_text(applied)
    new = _desired_view(applied)
    new["metadata"].setdefault("annotations", {})[LAST_APPLIED] = text
    live_doc = manifest.to_dict(live)
    live_view = {k: v for k, v in live_doc.items() if k not in _NOT_MERGED}
    previous_text = live.metadata.annotations.get(LAST_APPLIED)
    try:
        last = _desired_view(manifest.to_proto(json.loads(previous_text))) if previous_text else None
    except (ValueError, manifest.ManifestError):
        last = None  # an unreadable annotation is treated as absent, like kubectl does
    if last is not None:
        last["metadata"].setdefault("annotations", {})[LAST_APPLIED] = previous_text
    if holds(live_view, new) and not removes_something(live_view, new, last):
        return None
    merged = merge(live_view, new, last)
    merged["apiVersion"], merged["kind"] = live_doc["apiVersion"], live_doc["kind"]
    desired = manifest.to_proto(merged)
    desired.metadata.resource_version = live.metadata.resource_version
    return desired


# ---------------------------------------------------------------- the command


@command("apply")
@click.option("-f", "--filename", "filenames", multiple=True, required=True, metavar="FILE|DIR|-",
              help="Manifest file, directory of manifests, or - for stdin (repeatable).")
@click.option("-R", "--recursive", is_flag=True, help="Also read manifests in subdirectories.")
@click.option("-o", "--output", type=click.Choice(["name"]), help="Print only kind/name of each object.")
@pass_settings
def apply(settings: Settings, filenames: tuple[str, ...], recursive: bool, output: str | None) -> None:
    """Apply a configuration to objects from files: create them, or update them to match."""
    manifests = load_manifests(filenames, recursive=recursive)
    if not manifests:
        raise usage_error("no objects passed to apply")
    for item in manifests:
        _check_target(item, settings)
    failed = run(settings, lambda client: _apply_all(client, manifests, settings=settings, output=output))
    if failed:
        raise SilentExit(1)


def _check_target(item: Manifest, settings: Settings) -> None:
    if not item.name:
        raise usage_error(f'error validating "{item.source}": metadata.name: Required value: '
                          "apply needs the name of every object")
    if item.kind.namespaced:
        if item.namespace and settings.namespace_explicit and item.namespace != settings.namespace:
            raise usage_error(f'the namespace from the provided object "{item.namespace}" does not match the '
                              f'namespace "{settings.namespace}". You must pass \'--namespace={item.namespace}\' '
                              "to perform this operation.")
        item.obj.metadata.namespace = item.namespace or settings.namespace


async def _apply_all(client: Client, manifests: Sequence[Manifest], *, settings: Settings,
                     output: str | None) -> int:
    failed = 0
    for item in manifests:
        try:
            outcome = await apply_one(client, item.obj)
        except Exception as err:  # noqa: BLE001 - reported per object; the others are still applied
            from kybernetes.ctl.client import ApiError

            if not isinstance(err, ApiError):
                raise
            report_error(err, settings)
            failed += 1
            continue
        ref = object_ref(item.obj)
        echo(ref if output == "name" else f"{ref} {outcome}")
    return failed


async def apply_one(client: Client, applied: Any) -> str:
    """Create or update one object to match `applied`; returns "created", "configured" or "unchanged"."""
    from kybernetes.core.api import kinds

    kind = kinds.kind_of(applied)
    precondition = applied.metadata.resource_version

    async def attempt() -> str:
        try:
            live = await client.get(kind.resource, applied.metadata.name, namespace=applied.metadata.namespace)
        except NotFoundError:
            fresh = type(applied)()
            fresh.CopyFrom(applied)
            fresh.metadata.resource_version = ""
            fresh.metadata.annotations[LAST_APPLIED] = last_applied_text(applied)
            try:
                await client.create(fresh)
            except AlreadyExistsError as err:  # created by someone else meanwhile: apply to theirs
                raise ConflictError(err.message) from None
            return "created"
        desired = plan_update(live, applied)
        if desired is None:
            return "unchanged"
        if LAST_APPLIED not in live.metadata.annotations:
            echo(f"Warning: {kind.resource}/{applied.metadata.name} is missing the {LAST_APPLIED} annotation, "
                 "which apply needs to know which fields it owns; it is added now.", err=True)
        if precondition:
            desired.metadata.resource_version = precondition
        await client.update(desired)
        return "configured"

    if precondition:
        return await attempt()
    return await retry_on_conflict(attempt)
