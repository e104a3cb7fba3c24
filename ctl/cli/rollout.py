"""`kybctl rollout status|history|undo|pause|resume|restart`: manage a Deployment's rollout, as kubectl does.

- status follows the Deployment (a get, then a watch from its version) and
  prints kubectl's line for each new state (`status_message`, a pure function
  of the object, as kubectl's DeploymentStatusViewer) until it is rolled out;
  a Progressing=False/ProgressDeadlineExceeded condition is an error.
- history and undo read the revisions from the Deployment's ReplicaSets with
  the controller's own helpers (master.controllers.deployment.revisions and
  .rollback), so the CLI and the controller agree on what a revision is.
- pause, resume and restart are read-modify-writes of the spec (restart sets
  the template annotation kubectl.kubernetes.io/restartedAt, which makes a
  new template and so a rollout).

Only Deployments have rollouts here; other kinds get kubectl's "not
implemented/supported" errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import click

from kybernetes.core.api.kinds import ApiObject, Kind
from kybernetes.ctl.cli import printers
from kybernetes.ctl.cli.args import Target, api_group, parse_resource_args, resource_name, type_name
from kybernetes.ctl.cli.errors import CliError, SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.runner import read_modify_write, run
from kybernetes.ctl.cli.settings import Settings, command, group, parse_duration, pass_settings
from kybernetes.ctl.client import ApiError, Client
from kybernetes.proto import objects_pb2 as pb

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"


@group("rollout", short_help="Manage the rollout of a Deployment.")
def rollout() -> None:
    """Manage the rollout of a Deployment: status, history, undo, pause, resume, restart."""


def group_kind(kind: Kind) -> str:
    """kubectl's GroupKind string: `ReplicaSet.apps`, `Pod`."""
    group_name = api_group(kind)
    return f"{kind.kind}.{group_name}" if group_name else kind.kind


def _targets(args: tuple[str, ...], *, verb: str) -> list[Target]:
    resources = parse_resource_args(args)
    if not resources.kinds:
        raise usage_error("required resource not specified")
    if not resources.targets:
        raise usage_error(f"you must specify the deployment to {verb} (deployment/NAME or deployment NAME)")
    return list(resources.targets)


# ---------------------------------------------------------------- status


def status_message(deployment: pb.Deployment, *, revision: int = 0) -> tuple[str, bool]:
    """kubectl's rollout status line for a Deployment, and whether the rollout is done.

    Raises CliError when it can never finish (progress deadline exceeded) or
    runs another revision than the one asked for.
    """
    name = deployment.metadata.name
    if revision > 0:
        try:
            current = int(deployment.metadata.annotations.get(REVISION, "0"))
        except ValueError:
            current = 0
        if current != revision:
            raise CliError(f"error: desired revision ({revision}) is different from the running revision "
                           f"({current})")
    status = deployment.status
    if deployment.metadata.generation > status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    progressing = next((c for c in status.conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == TIMED_OUT_REASON:
        raise CliError(f'error: deployment "{name}" exceeded its progress deadline')
    replicas = deployment.spec.replicas if deployment.spec.HasField("replicas") else 1
    if status.updated_replicas < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {status.updated_replicas} out of {replicas} '
                "new replicas have been updated..."), False
    if status.replicas > status.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {status.replicas - status.updated_replicas} '
                "old replicas are pending termination..."), False
    if status.available_replicas < status.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {status.available_replicas} of '
                f"{status.updated_replicas} updated replicas are available..."), False
    return f'deployment "{name}" successfully rolled out', True


async def follow_status(client: Client, target: Target, *, namespace: str, watch: bool, revision: int) -> None:
    """Print status lines (each once) until the rollout is done, or just the current one without `watch`."""
    deployment = await client.get(target.kind.resource, target.name, namespace=namespace)
    last = ""

    def show(obj: pb.Deployment) -> bool:
        nonlocal last
        message, done = status_message(obj, revision=revision)
        if message != last:
            echo(message)
            last = message
        return done

    if show(deployment) or not watch:
        return
    async for event in client.watch(target.kind.resource, namespace=namespace,
                                    field_selector=f"metadata.name={target.name}",
                                    resource_version=deployment.metadata.resource_version):
        if event.type == "DELETED":
            raise CliError("error: object has been deleted")
        if show(event.object):
            return


@command("status")
@click.argument("args", nargs=-1)
@click.option("-w", "--watch", type=click.BOOL, default=True, is_flag=False, flag_value=True, metavar="BOOL",
              help="Follow until the rollout is done (default true; --watch=false prints the status once).")
@click.option("--timeout", "timeout_text", default="0s", show_default=True,
              help="How long to follow (0: until done).")
@click.option("--revision", type=int, default=0, help="Require this revision to be the one rolling out.")
@pass_settings
def status(settings: Settings, args: tuple[str, ...], watch: bool, timeout_text: str, revision: int) -> None:
    """Follow a rollout until it is done: rollout status deployment/NAME [--timeout=5m]"""
    targets = _targets(args, verb="follow")
    if len(targets) != 1:
        raise usage_error("rollout status takes exactly one deployment")
    target = targets[0]
    timeout = parse_duration(timeout_text, flag="--timeout")
    if revision < 0:
        raise usage_error("revision must be a positive integer")

    async def body(client: Client) -> None:
        namespace = settings.namespace_for(target.kind)
        if target.kind.kind != "Deployment":
            await client.get(target.kind.resource, target.name, namespace=namespace)
            raise CliError(f"error: no status viewer has been implemented for {group_kind(target.kind)}")
        following = follow_status(client, target, namespace=namespace, watch=watch, revision=revision)
        if timeout <= 0:
            await following
            return
        try:
            await asyncio.wait_for(following, timeout)
        except TimeoutError:
            raise CliError("error: timed out waiting for the condition") from None

    try:
        run(settings, body)
    except KeyboardInterrupt:
        raise SilentExit(130) from None


# ---------------------------------------------------------------- history


def history_table(revisions: list[Any]) -> list[str]:
    """kubectl's REVISION / CHANGE-CAUSE table (tabwriter with padding 2)."""
    if not revisions:
        return ["No rollout history found."]
    rows = [["REVISION", "CHANGE-CAUSE"]]
    rows.extend([str(r.number), r.change_cause or printers.NONE] for r in revisions)
    return printers.tabulate(rows, min_width=0, padding=2)


def template_lines(template: pb.PodTemplateSpec) -> list[str]:
    """The `Pod Template:` section kubectl's describe prints for a revision."""
    from kybernetes.ctl.cli.describe import Writer, _pod_template

    writer = Writer()
    _pod_template(writer, template)
    return writer.render().splitlines()


@command("history")
@click.argument("args", nargs=-1)
@click.option("--revision", type=int, default=0, help="Show the pod template of this revision.")
@pass_settings
def history(settings: Settings, args: tuple[str, ...], revision: int) -> None:
    """Show a Deployment's revisions: rollout history deployment/NAME [--revision=N]"""
    targets = _targets(args, verb="show the history of")
    if revision < 0:
        raise usage_error("revision must be a positive integer")
    from kybernetes.ctl.client.rollout import history as revisions_of

    async def one(client: Client, target: Target) -> None:
        namespace = settings.namespace_for(target.kind)
        if target.kind.kind != "Deployment":
            await client.get(target.kind.resource, target.name, namespace=namespace)
            raise CliError(f'error: no history viewer has been implemented for "{group_kind(target.kind)}"')
        revisions = await revisions_of(client, target.name, namespace)
        ref = f"{type_name(target.kind)}/{target.name}"
        if revision > 0:
            chosen = next((r for r in revisions if r.number == revision), None)
            if chosen is None:
                raise CliError("error: unable to find the specified revision")
            echo(f"{ref} with revision #{revision}")
            for line in template_lines(chosen.replica_set.spec.template):
                echo(line)
            echo()
            return
        echo(f"{ref} ")
        for line in history_table(revisions):
            echo(line)
        echo()

    _each(settings, targets, one)


def _each(settings: Settings, targets: list[Target], action: Callable[[Client, Target], Any]) -> None:
    """Run `action` for every target; a failing one is reported and the rest still done (exit code 1)."""
    if len(targets) == 1:
        run(settings, lambda client: action(client, targets[0]))
        return

    async def body(client: Client) -> int:
        failed = 0
        for target in targets:
            try:
                await action(client, target)
            except (ApiError, CliError) as err:
                report_error(err, settings)
                failed += 1
        return failed

    if run(settings, body):
        raise SilentExit(1)


# ---------------------------------------------------------------- undo


@command("undo")
@click.argument("args", nargs=-1)
@click.option("--to-revision", type=int, default=0, help="The revision to go back to (0: the previous one).")
@pass_settings
def undo(settings: Settings, args: tuple[str, ...], to_revision: int) -> None:
    """Roll back to an earlier revision: rollout undo deployment/NAME [--to-revision=N]"""
    targets = _targets(args, verb="roll back")
    from kybernetes.ctl.client.rollout import RollbackError, rollback_deployment

    async def one(client: Client, target: Target) -> None:
        namespace = settings.namespace_for(target.kind)
        if target.kind.kind != "Deployment":
            await client.get(target.kind.resource, target.name, namespace=namespace)
            raise CliError(f'error: no rollbacker has been implemented for "{group_kind(target.kind)}"')
        try:
            echo(await rollback_deployment(client, target.name, namespace, to_revision=to_revision))
        except RollbackError as err:
            raise CliError(f"error: {err}") from None

    _each(settings, targets, one)


# ---------------------------------------------------------------- pause, resume, restart


def restarted_at(now: dt.datetime | None = None) -> str:
    """RFC 3339 local time with its offset, as Go's time.RFC3339 writes it (`Z` for UTC)."""
    stamp = (now or dt.datetime.now().astimezone()).isoformat(timespec="seconds")
    return stamp[:-6] + "Z" if stamp.endswith("+00:00") else stamp


def _spec_command(*, name: str, verb: str, past: str, unsupported: str,
                  change: Callable[[pb.Deployment], str | None], help_text: str) -> click.Command:
    """pause/resume/restart: a read-modify-write of each Deployment's spec; `change` returns a refusal or None."""

    @command(name, help=help_text)
    @click.argument("args", nargs=-1)
    @pass_settings
    def cmd(settings: Settings, args: tuple[str, ...]) -> None:
        targets = _targets(args, verb=verb)

        async def one(client: Client, target: Target) -> None:
            def edit(obj: ApiObject) -> bool:
                prefix = f'error: {resource_name(target.kind)} "{target.name}"'
                if not isinstance(obj, pb.Deployment):
                    raise CliError(f"{prefix} {unsupported}")
                refusal = change(obj)
                if refusal:
                    raise CliError(f"{prefix} {refusal}")
                return True

            await read_modify_write(client, target, settings=settings, change=edit)
            echo(f"{type_name(target.kind)}/{target.name} {past}")

        _each(settings, targets, one)

    return cmd


def _pause(deployment: pb.Deployment) -> str | None:
    if deployment.spec.paused:
        return "is already paused"
    deployment.spec.paused = True
    return None


def _resume(deployment: pb.Deployment) -> str | None:
    if not deployment.spec.paused:
        return "is not paused"
    deployment.spec.paused = False
    return None


def _restart(deployment: pb.Deployment) -> str | None:
    if deployment.spec.paused:
        return "can't restart paused deployment (run rollout resume first)"
    deployment.spec.template.metadata.annotations[RESTARTED_AT] = restarted_at()
    return None


pause = _spec_command(name="pause", verb="pause", past="paused", unsupported="pausing is not supported",
                      change=_pause, help_text="Stop a Deployment from rolling out: rollout pause deployment/NAME")
resume = _spec_command(name="resume", verb="resume", past="resumed", unsupported="resuming is not supported",
                       change=_resume, help_text="Let a paused Deployment roll out again: rollout resume "
                                                 "deployment/NAME")
restart = _spec_command(name="restart", verb="restart", past="restarted", unsupported="restarting is not supported",
                        change=_restart, help_text="Replace every pod of a Deployment by a rollout: rollout restart "
                                                   "deployment/NAME")

for _sub in (status, history, undo, pause, resume, restart):
    rollout.add_command(_sub)
