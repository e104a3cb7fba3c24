"""`kybctl get`: list or fetch objects and print them as kubectl does, optionally watching for changes.

Forms: `get KIND[,KIND…] [NAME…]`, `get KIND/NAME…`, `get all`. Named objects
are fetched one by one (a missing one is reported and the others still
printed, exit code 1); otherwise each kind is listed with the selectors.
`-w` prints the current table, then one line per change from the list's
resourceVersion on, until interrupted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import click

from kybernetes.core.api.kinds import ApiObject
from kybernetes.ctl.cli import printers
from kybernetes.ctl.cli.args import ResourceArgs, Target, check_selector, object_ref, parse_resource_args
from kybernetes.ctl.cli.errors import SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo, no_resources_line
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, pass_settings
from kybernetes.ctl.client import Client, NotFoundError

_NO_TYPE = ('You must specify the type of resource to get. Use "kybctl api-resources" for a complete list of '
            "supported resources.")


@dataclass(slots=True)
class _Found:
    """What a get found: objects grouped by kind (in the order asked), errors, and the list versions."""

    by_kind: dict[str, list[Any]] = field(default_factory=dict)
    errors: list[Exception] = field(default_factory=list)
    resource_version: str = ""


def validate_output(output: str | None) -> None:
    """kubectl's error for an unknown -o format."""
    if output is not None and output not in printers.OUTPUT_FORMATS:
        raise usage_error(f'unable to match a printer suitable for the output format "{output}", allowed formats '
                          f"are: {','.join(printers.OUTPUT_FORMATS)}")


@command("get")
@click.argument("args", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", default="", help="Label selector, e.g. -l app=web,tier!=db.")
@click.option("--field-selector", default="", help="Field selector, e.g. --field-selector spec.nodeName=n1.")
@click.option("-o", "--output", help="Output format: wide, json, yaml or name.")
@click.option("-w", "--watch", is_flag=True, help="After listing, watch for changes.")
@click.option("--watch-only", is_flag=True, help="Watch for changes without listing first.")
@click.option("--output-watch-events", is_flag=True, help="Add an EVENT column (ADDED, MODIFIED, DELETED) to -w.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@click.option("-L", "--label-columns", multiple=True, help="Add a column with this label's value (repeatable).")
@click.option("--no-headers", is_flag=True, help="Omit the table header.")
@click.option("--show-kind", is_flag=True, help="Prefix names with their kind.")
@click.option("--ignore-not-found", is_flag=True, help="Say nothing about named objects that do not exist.")
@click.option("--chunk-size", type=click.IntRange(min=0), default=500, show_default=True,
              help="Return large lists in chunks rather than all at once; 0 turns chunking off.")
@pass_settings
def get(settings: Settings, args: tuple[str, ...], all_namespaces: bool, selector: str, field_selector: str,
        output: str | None, watch: bool, watch_only: bool, output_watch_events: bool, show_labels: bool,
        label_columns: tuple[str, ...], no_headers: bool, show_kind: bool, ignore_not_found: bool,
        chunk_size: int) -> None:
    """Display one or many objects: get KIND[,KIND…] [NAME…] | get KIND/NAME…"""
    validate_output(output)
    resources = parse_resource_args(args, allow_all=True)
    if not resources.kinds:
        raise usage_error(_NO_TYPE)
    if resources.targets and selector:
        raise usage_error("name cannot be provided when a selector is specified")
    check_selector(selector)
    check_selector(field_selector, field=True)
    label_keys = tuple(key.strip() for spec in label_columns for key in spec.split(",") if key.strip())
    options = printers.TableOptions(
        wide=output == "wide", all_namespaces=all_namespaces,
        show_kind=show_kind or len(resources.kinds) > 1 or (bool(args) and args[0] == "all"),
        show_labels=show_labels, label_columns=label_keys, no_headers=no_headers,
        watch_events=output_watch_events)
    namespace = "" if all_namespaces else settings.namespace
    query = _Query(settings=settings, resources=resources, namespace=namespace, selector=selector,
                   field_selector=field_selector, output=output, options=options, all_namespaces=all_namespaces,
                   ignore_not_found=ignore_not_found, chunk_size=chunk_size)
    if watch or watch_only:
        try:
            run(settings, lambda client: query.watch(client, list_first=not watch_only))
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends
        return
    found = run(settings, query.fetch)
    query.show(found)
    for err in found.errors:
        report_error(err, settings)
    if found.errors:
        raise SilentExit(1)


@dataclass(frozen=True, slots=True)
class _Query:
    settings: Settings
    resources: ResourceArgs
    namespace: str
    selector: str
    field_selector: str
    output: str | None
    options: printers.TableOptions
    all_namespaces: bool
    ignore_not_found: bool
    chunk_size: int = 500

    async def fetch(self, client: Client) -> _Found:
        found = _Found()
        for kind in self.resources.kinds:
            found.by_kind[kind.kind] = []
        if self.resources.targets:
            for target in self.resources.targets:
                try:
                    obj = await client.get(target.kind.resource, target.name,
                                           namespace=self.settings.namespace_for(target.kind))
                except NotFoundError as err:
                    if not self.ignore_not_found:
                        found.errors.append(err)
                    continue
                found.by_kind[target.kind.kind].append(obj)
            return found
        for kind in self.resources.kinds:
            listed = await client.list_chunked(kind.resource, namespace=self.namespace if kind.namespaced else "",
                                               label_selector=self.selector, field_selector=self.field_selector,
                                               chunk_size=self.chunk_size)
            found.by_kind[kind.kind] = printers.sort_for_table(kind.kind, listed.items)
            found.resource_version = listed.resource_version
        return found

    def show(self, found: _Found) -> None:
        objs = [o for items in found.by_kind.values() for o in items]
        if not objs:
            if not found.errors and not self.resources.targets:
                kind = self.resources.kinds[0]
                echo(no_resources_line(namespaced=kind.namespaced, all_namespaces=self.all_namespaces,
                                       namespace=self.namespace), err=True)
            return
        if self.output in ("json", "yaml"):
            single = len(self.resources.targets) == 1
            doc = printers.document(objs, single=single, resource_version=found.resource_version)
            echo(printers.format_document(doc, self.output))
            return
        if self.output == "name":
            for obj in objs:
                echo(object_ref(obj))
            return
        now = time.time()
        first = True
        for kind in self.resources.kinds:
            items = found.by_kind.get(kind.kind) or []
            if not items:
                continue
            if not first:
                echo()
            first = False
            for line in printers.Table(kind, self.options).render(items, now=now):
                echo(line)

    async def watch(self, client: Client, *, list_first: bool) -> None:
        if len(self.resources.kinds) != 1:
            raise usage_error("you may only specify a single resource type")
        kind = self.resources.kinds[0]
        field_selector = self.field_selector
        if self.resources.targets:
            if len(self.resources.targets) != 1:
                raise usage_error("watch is only supported on individual resources and resource collections, "
                                  f"but {len(self.resources.targets)} resources were found")
            name_term = f"metadata.name={self.resources.targets[0].name}"
            field_selector = f"{field_selector},{name_term}" if field_selector else name_term
        namespace = self.namespace if kind.namespaced else ""
        listed = await client.list(kind.resource, namespace=namespace, label_selector=self.selector,
                                   field_selector=field_selector)
        if self.resources.targets and not listed.items and not self.ignore_not_found:
            raise NotFoundError(f'{kind.resource} "{self.resources.targets[0].name}" not found')
        printer = _WatchPrinter(kind=kind, options=self.options, output=self.output)
        if list_first:
            printer.initial(printers.sort_for_table(kind.kind, listed.items))
        async for event in client.watch(kind.resource, namespace=namespace, label_selector=self.selector,
                                        field_selector=field_selector, resource_version=listed.resource_version):
            printer.event(event.type, event.object)


class _WatchPrinter:
    """Prints a watch: the first table, then a line (or document) per event, aligned with that table."""

    def __init__(self, *, kind: Any, options: printers.TableOptions, output: str | None) -> None:
        self.table = printers.Table(kind, options)
        self.output = output
        self.widths: list[int] = []
        self.header_done = options.no_headers
        self.documents = 0

    def initial(self, objs: list[Any]) -> None:
        for obj in objs:
            self.event("ADDED", obj, now=time.time(), initial=objs)

    def event(self, event_type: str, obj: ApiObject, *, now: float | None = None,
              initial: list[Any] | None = None) -> None:
        if self.output in ("json", "yaml"):
            from kybernetes.core.api import manifest

            text = printers.format_document(manifest.to_dict(obj), self.output)
            if self.output == "yaml" and self.documents:
                text = "---\n" + text
            self.documents += 1
            echo(text)
            return
        if self.output == "name":
            echo(object_ref(obj))
            return
        now = time.time() if now is None else now
        if not self.widths:
            rows = [self.table.header()] if not self.table.options.no_headers else []
            rows.extend(self.table.row(o, now, event="ADDED") for o in (initial or [obj]))
            self.widths = printers.column_widths(rows)
        rows = [self.table.row(obj, now, event=event_type)]
        if not self.header_done:
            rows.insert(0, self.table.header())
            self.header_done = True
        for line in printers.tabulate(rows, widths=self.widths):
            echo(line)


__all__ = ["Target", "get", "validate_output"]
