"""`kybctl cordon|uncordon|drain NODE`: take a Node out of scheduling and move its pods away, as kubectl does.

cordon/uncordon flip spec.unschedulable (a read-modify-write). drain cordons,
then sorts the Node's pods with kubectl's rules (`plan_drain`, pure):

- finished pods (Succeeded/Failed) are simply deleted;
- DaemonSet-managed pods are an error unless --ignore-daemonsets (then left alone);
- pods that declare no controller are an error unless --force, because nothing
  would recreate them;

and with no error left it evicts every chosen pod: a graceful delete with the
pod's own terminationGracePeriodSeconds (or --grace-period), which the Node's
kubelet carries out (SIGTERM, grace, SIGKILL, then it confirms). There is no
Eviction API (nor PodDisruptionBudgets) here, so an eviction is that delete.
drain then waits, up to --timeout (0: no limit), until every evicted pod is
gone, printing `pod/x evicted` for each, and ends with `node/x drained`. A
refused or unfinished drain leaves the Node cordoned, as kubectl's does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import click

from kybernetes.ctl.cli.args import Target, check_selector, resolve_kind
from kybernetes.ctl.cli.errors import CliError, SilentExit, report_error, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.runner import read_modify_write, run
from kybernetes.ctl.cli.settings import Settings, command, parse_duration, pass_settings
from kybernetes.ctl.client import ApiError, Client, NotFoundError
from kybernetes.proto import objects_pb2 as pb

UNMANAGED_FATAL = "cannot delete Pods that declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"
DAEMONSET_FATAL = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"


def _node_targets(names: Sequence[str]) -> list[Target]:
    kind = resolve_kind("nodes")
    out = []
    for name in names:
        kind_name, slash, rest = name.partition("/")
        if slash:
            if resolve_kind(kind_name) is not kind:
                raise usage_error(f'"{name}" is not a node')
            name = rest
        out.append(Target(kind, name))
    return out


async def _selected_nodes(client: Client, selector: str) -> list[Target]:
    kind = resolve_kind("nodes")
    listed = await client.list("nodes", label_selector=selector)
    return [Target(kind, n.metadata.name) for n in sorted(listed.items, key=lambda n: n.metadata.name)]


async def set_unschedulable(client: Client, settings: Settings, target: Target, value: bool) -> bool:
    """Set spec.unschedulable; whether it changed (False: it already was so)."""

    def change(node: pb.Node) -> bool:
        if node.spec.unschedulable == value:
            return False
        node.spec.unschedulable = value
        return True

    _, changed = await read_modify_write(client, target, settings=settings, change=change)
    return changed


def _cordon_command(name: str, *, value: bool) -> click.Command:
    done, already = ("cordoned", "already cordoned") if value else ("uncordoned", "already uncordoned")
    text = "Mark nodes unschedulable" if value else "Mark nodes schedulable again"

    @command(name, help=f"{text}: {name} NODE… (or -l SELECTOR).")
    @click.argument("names", nargs=-1)
    @click.option("-l", "--selector", default="", help="The nodes matching this label selector.")
    @pass_settings
    def cmd(settings: Settings, names: tuple[str, ...], selector: str) -> None:
        check_selector(selector)
        if not names and not selector:
            raise usage_error("USAGE: " + name + " NODE [flags]")
        if names and selector:
            raise usage_error("cannot specify both a node name and a selector")
        targets = _node_targets(names)

        async def body(client: Client) -> int:
            chosen = targets or await _selected_nodes(client, selector)
            failed = 0
            for target in chosen:
                try:
                    changed = await set_unschedulable(client, settings, target, value)
                except ApiError as err:
                    report_error(err, settings)
                    failed += 1
                    continue
                echo(f"node/{target.name} {done if changed else already}")
            return failed

        if run(settings, body):
            raise SilentExit(1)

    return cmd


cordon = _cordon_command("cordon", value=True)
uncordon = _cordon_command("uncordon", value=False)


# ---------------------------------------------------------------- drain


@dataclass(slots=True)
class DrainPlan:
    """What drain does with a Node's pods: the ones to evict, the refusals and warnings, by kubectl's rules."""

    evict: list[pb.Pod] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _ref(pod: pb.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _controller(pod: pb.Pod) -> pb.OwnerReference | None:
    return next((ref for ref in pod.metadata.owner_references if ref.controller), None)


def plan_drain(pods: Sequence[pb.Pod], *, force: bool, ignore_daemonsets: bool) -> DrainPlan:
    """Sort a Node's pods as kubectl's drain filters do (see the module docstring)."""
    plan = DrainPlan()
    unmanaged: list[pb.Pod] = []
    daemons: list[pb.Pod] = []
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        controller = _controller(pod)
        if pod.status.phase in ("Succeeded", "Failed"):
            plan.evict.append(pod)
        elif controller is not None and controller.kind == "DaemonSet":
            daemons.append(pod)
        elif controller is None:
            unmanaged.append(pod)
            if force:
                plan.evict.append(pod)
        else:
            plan.evict.append(pod)
    if daemons:
        listed = ", ".join(_ref(p) for p in daemons)
        if ignore_daemonsets:
            plan.warnings.append(f"{DAEMONSET_WARNING}: {listed}")
        else:
            plan.errors.append(f"{DAEMONSET_FATAL}: {listed}")
    if unmanaged:
        listed = ", ".join(_ref(p) for p in unmanaged)
        if force:
            plan.warnings.append(f"{UNMANAGED_WARNING}: {listed}")
        else:
            plan.errors.append(f"{UNMANAGED_FATAL}: {listed}")
    return plan


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it: 1s, 1m30s, 500ms, 2h0m0s."""
    if seconds < 1:
        millis = round(seconds * 1000)
        return f"{millis}ms" if millis else "0s"
    whole = int(seconds)
    fraction = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs + fraction:g}s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


@dataclass(frozen=True, slots=True)
class _Evicted:
    pod: pb.Pod
    resource_version: str
    gone: bool


@command("drain")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Also delete pods that declare no controller (nothing recreates them).")
@click.option("--ignore-daemonsets", is_flag=True, help="Leave DaemonSet-managed pods alone instead of failing.")
@click.option("--grace-period", type=int, default=-1,
              help="Seconds each pod gets to terminate (-1: the pod's own terminationGracePeriodSeconds).")
@click.option("--timeout", "timeout_text", default="0s", show_default=True,
              help="How long to wait for the pods to be gone (0: no limit).")
@click.option("--pod-selector", default="", help="Only evict the pods matching this label selector.")
@pass_settings
def drain(settings: Settings, names: tuple[str, ...], force: bool, ignore_daemonsets: bool, grace_period: int,
          timeout_text: str, pod_selector: str) -> None:
    """Cordon a Node and evict its pods: drain NODE [--force] [--ignore-daemonsets] [--grace-period N] [--timeout D]"""
    if not names:
        raise usage_error("USAGE: drain NODE [flags]")
    check_selector(pod_selector)
    timeout = parse_duration(timeout_text, flag="--timeout")
    grace = None if grace_period < 0 else grace_period
    targets = _node_targets(names)

    async def body(client: Client) -> int:
        failed = 0
        for target in targets:
            try:
                await _drain_one(client, settings, target, force=force, ignore_daemonsets=ignore_daemonsets,
                                 grace=grace, timeout=timeout, pod_selector=pod_selector)
            except (ApiError, CliError) as err:
                report_error(err, settings)
                failed += 1
        return failed

    if run(settings, body):
        raise SilentExit(1)


async def _drain_one(client: Client, settings: Settings, target: Target, *, force: bool, ignore_daemonsets: bool,
                     grace: int | None, timeout: float, pod_selector: str) -> None:
    node = target.name
    changed = await set_unschedulable(client, settings, target, True)
    echo(f"node/{node} {'cordoned' if changed else 'already cordoned'}")
    listed = await client.list("pods", field_selector=f"spec.nodeName={node}", label_selector=pod_selector)
    plan = plan_drain(listed.items, force=force, ignore_daemonsets=ignore_daemonsets)
    if plan.errors:
        reason = plan.errors[0] if len(plan.errors) == 1 else f"[{', '.join(plan.errors)}]"
        raise CliError(f'error: unable to drain node "{node}" due to error: {reason}')
    if plan.warnings:
        echo(f"Warning: {'; '.join(plan.warnings)}", err=True)
    evicted: list[_Evicted] = []
    for pod in plan.evict:
        echo(f"evicting pod {_ref(pod)}")
        try:
            result = await client.delete("pods", pod.metadata.name, namespace=pod.metadata.namespace,
                                         unconditional=True, grace_period_seconds=grace)
        except NotFoundError:
            evicted.append(_Evicted(pod, "", True))
            continue
        gone = result.deleted or result.object.metadata.uid != pod.metadata.uid
        evicted.append(_Evicted(pod, result.object.metadata.resource_version, gone))
    waiting = [asyncio.ensure_future(_until_gone(client, item)) for item in evicted]
    try:
        for finished in asyncio.as_completed(waiting, timeout=timeout if timeout > 0 else None):
            pod = await finished
            echo(f"pod/{pod.metadata.name} evicted")
    except TimeoutError:
        raise CliError(f'error: unable to drain node "{node}" due to error: drain did not complete within '
                       f"{go_duration(timeout)}") from None
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    echo(f"node/{node} drained")


async def _until_gone(client: Client, item: _Evicted) -> pb.Pod:
    """Return the pod once it no longer exists (a new pod of the same name does not count as it)."""
    pod = item.pod
    if item.gone:
        return pod
    async for event in client.watch("pods", namespace=pod.metadata.namespace,
                                    field_selector=f"metadata.name={pod.metadata.name}",
                                    resource_version=item.resource_version):
        if event.type == "DELETED" or event.object.metadata.uid != pod.metadata.uid:
            return pod
    raise AssertionError("a watch never ends")
