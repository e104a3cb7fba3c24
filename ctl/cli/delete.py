"""`kybctl delete`: delete objects by name, by selector, or as listed in files, and wait until they are gone.

Deletes are explicitly unconditional (the user names the object, not a
version). Each accepted delete prints `pod "x" deleted`; then, with --wait
(the default, as in kubectl), the command waits for every object whose
deletion is still in progress (graceful pod termination, finalizers) by
watching it from the version the delete returned, so a deletion that happens
between the delete and the watch is not missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import click

from kybernetes.core.api.kinds import Kind
from kybernetes.ctl.cli.args import Target, check_selector, parse_resource_args, type_name
from kybernetes.ctl.cli.errors import SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo, no_resources_line
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, parse_duration, pass_settings
from kybernetes.ctl.client import ApiError, Client, NotFoundError

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
           "true": "Background", "false": "Orphan"}
_FORCE_WARNING = ("Warning: Immediate deletion does not wait for confirmation that the running resource has been "
                  "terminated. The resource may continue to run on the cluster indefinitely.")


@dataclass(frozen=True, slots=True)
class _Pending:
    target: Target
    namespace: str
    resource_version: str


@command("delete")
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE|DIR|-",
              help="Delete the objects in these manifests (repeatable).")
@click.option("-R", "--recursive", is_flag=True, help="Also read manifests in subdirectories.")
@click.option("-l", "--selector", default="", help="Delete the objects of KIND matching this label selector.")
@click.option("--field-selector", default="", help="Delete the objects of KIND matching this field selector.")
@click.option("--all", "all_objects", is_flag=True, help="Delete every object of KIND in the namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="With -l or --all: in every namespace.")
@click.option("--cascade", default="background", show_default=True,
              help="background, foreground or orphan: what happens to dependents.")
@click.option("--grace-period", type=int, default=-1,
              help="Seconds a pod gets to terminate (-1: the pod's own terminationGracePeriodSeconds).")
@click.option("--now", is_flag=True, help="Signal pods for immediate shutdown (--grace-period=1).")
@click.option("--force", is_flag=True, help="Remove pods at once without waiting for their kubelet.")
@click.option("--wait", type=click.BOOL, default=True, is_flag=False, flag_value=True, metavar="BOOL",
              help="Wait until the objects are gone (default true; --wait=false to return at once).")
@click.option("--timeout", "timeout_text", default="60s", show_default=True, help="How long --wait waits.")
@click.option("--ignore-not-found", is_flag=True, help="Treat a missing object as deleted.")
@click.option("-o", "--output", type=click.Choice(["name"]), help="Print kind/name of each deleted object.")
@pass_settings
def delete(settings: Settings, args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str,
           field_selector: str, all_objects: bool, all_namespaces: bool, cascade: str, grace_period: int,
           now: bool, force: bool, wait: bool, timeout_text: str, ignore_not_found: bool,
           output: str | None) -> None:
    """Delete objects: delete KIND NAME… | KIND/NAME… | -f FILE | KIND -l SELECTOR | KIND --all"""
    policy = CASCADE.get(cascade.lower())
    if policy is None:
        raise usage_error(f'invalid cascade value ({cascade}). Must be "background", "foreground", or "orphan".')
    timeout = parse_duration(timeout_text, flag="--timeout")
    grace: int | None = None if grace_period < 0 else grace_period
    if now:
        grace = 1
    if force:
        grace = 0
        echo(_FORCE_WARNING, err=True)
    check_selector(selector)
    check_selector(field_selector, field=True)

    targets: list[Target] = []
    list_kinds: tuple[Kind, ...] = ()
    if filenames:
        if args:
            raise usage_error("cannot specify both resource arguments and --filename")
        from kybernetes.ctl.cli.files import load_manifests

        targets = [Target(m.kind, m.name, m.namespace) for m in load_manifests(filenames, recursive=recursive)]
    else:
        resources = parse_resource_args(args)
        if not resources.kinds:
            raise usage_error("You must provide one or more resources by argument or filename.")
        if resources.targets and (selector or field_selector or all_objects):
            raise usage_error("name cannot be provided when a selector is specified")
        if not resources.targets and not (selector or field_selector or all_objects):
            raise usage_error("resource(s) were provided, but no name was specified")
        targets = list(resources.targets)
        if not targets:
            list_kinds = resources.kinds

    deleter = _Deleter(settings=settings, policy=policy, grace=grace, wait=wait, timeout=timeout,
                       ignore_not_found=ignore_not_found, output=output)
    failed = run(settings, lambda client: deleter.run(
        client, targets=targets, list_kinds=list_kinds, selector=selector, field_selector=field_selector,
        all_namespaces=all_namespaces))
    if failed:
        raise SilentExit(1)


@dataclass(frozen=True, slots=True)
class _Deleter:
    settings: Settings
    policy: str
    grace: int | None
    wait: bool
    timeout: float
    ignore_not_found: bool
    output: str | None

    async def run(self, client: Client, *, targets: Sequence[Target], list_kinds: Sequence[Kind], selector: str,
                  field_selector: str, all_namespaces: bool) -> int:
        found = list(targets)
        for kind in list_kinds:
            namespace = "" if all_namespaces or not kind.namespaced else self.settings.namespace
            listed = await client.list(kind.resource, namespace=namespace,
                                       label_selector=selector, field_selector=field_selector)
            found.extend(Target(kind, o.metadata.name, o.metadata.namespace)
                         for o in sorted(listed.items, key=lambda o: (o.metadata.namespace, o.metadata.name)))
        if not found:
            first = list_kinds[0] if list_kinds else None
            echo(no_resources_line(namespaced=bool(first and first.namespaced),
                                   all_namespaces=all_namespaces, namespace=self.settings.namespace), err=True)
            return 0
        failed = 0
        pending: list[_Pending] = []
        for target in found:
            namespace = self.settings.namespace_for(target.kind, target.namespace)
            try:
                result = await client.delete(target.kind.resource, target.name, namespace=namespace,
                                             unconditional=True, propagation_policy=self.policy,
                                             grace_period_seconds=self.grace)
            except NotFoundError as err:
                if not self.ignore_not_found:
                    report_error(err, self.settings)
                    failed += 1
                continue
            except ApiError as err:
                report_error(err, self.settings)
                failed += 1
                continue
            if self.output == "name":
                echo(f"{type_name(target.kind)}/{target.name}")
            else:
                echo(f'{type_name(target.kind)} "{target.name}" deleted')
            if not result.deleted:
                pending.append(_Pending(target, namespace, result.object.metadata.resource_version))
        if self.wait and pending:
            failed += await self._wait_gone(client, pending)
        return failed

    async def _wait_gone(self, client: Client, pending: Sequence[_Pending]) -> int:
        """Wait for every pending object to disappear; reports and counts the ones still there at the timeout."""
        tasks = {asyncio.ensure_future(_gone(client, p)): p for p in pending}
        done, not_done = await asyncio.wait(tasks, timeout=self.timeout)
        for task in not_done:
            task.cancel()
        await asyncio.gather(*not_done, return_exceptions=True)
        failed = 0
        for task in done:
            error = task.exception()
            if error is not None:
                report_error(error, self.settings)
                failed += 1
        for task in not_done:
            item = tasks[task]
            echo(f"error: timed out waiting for the condition on {item.target.kind.resource}/{item.target.name}",
                 err=True)
            failed += 1
        return failed


async def _gone(client: Client, item: _Pending) -> None:
    """Return once the object is deleted (watched from the version its delete returned)."""
    async for event in client.watch(item.target.kind.resource, namespace=item.namespace,
                                    field_selector=f"metadata.name={item.target.name}",
                                    resource_version=item.resource_version):
        if event.type == "DELETED":
            return
