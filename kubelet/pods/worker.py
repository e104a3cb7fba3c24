"""One pod's life on the node: sandbox, images, containers, restarts, probes, termination.

A `PodWorker` is a single task per pod, so everything about one pod happens in
order; pods never wait for each other. Its loop: sync once, publish the status
(sent only if it changed), then sleep until something happens — a new pod spec
from the master, a container exit, a probe result, a back-off expiring — or
the periodic resync.

One sync, with Kubernetes' semantics:
* sandbox: created once (network namespace + pod IP, or the host network);
* each container in spec order: if it runs, kill it when its liveness probe
  failed or its spec changed; if it exited, restart it per restartPolicy with
  CrashLoopBackOff back-off (first restart at once, then base doubling to the
  cap); pull its image per imagePullPolicy (ErrImagePull, then ImagePullBackOff
  with its own back-off); start it, with its probes.
* every failure becomes a waiting reason with a message and an Event; the
  worker never raises out of its loop.

Termination (deletionTimestamp, or the pod went away) cancels the sync in
progress and ends the loop with the pod's teardown.

This module holds the loop, its inputs and the sync; the worker's other
behaviours are mixins of `PodWorker`, one module each:
  adoption.py     `AdoptionMixin`: taking over what a previous kubelet left running
  probing.py      `ProbingMixin`: starting and stopping probers, acting on their results
  termination.py  `TerminationMixin`: stopping a container with its grace, the pod's teardown
Mixins rather than functions taking the worker: the parts share the worker's
state and call each other (the sync kills through termination, termination
stops probers, an exit resets probe state), so each method kept its body and
`self` when it moved. Each mixin names the state and the methods it uses in an
`if TYPE_CHECKING:` block, so the dependencies are written down and
type-checked; `PodWorker.__init__` sets all the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kybernetes.core.api.quantity import QuantityError, parse_cpu, parse_memory
from kybernetes.core.log import get_logger, obj_ref
from kybernetes.kubelet.events import NORMAL, WARNING, EventRecorder
from kybernetes.kubelet.logs import LogStore
from kybernetes.kubelet.pods.adoption import Adopted, AdoptionMixin
from kybernetes.kubelet.pods.backoff import Backoff
from kybernetes.kubelet.pods.probing import ProbingMixin
from kybernetes.kubelet.pods.records import LABEL_RESTART_COUNT, LABEL_SPEC_HASH, ContainerRecord, Instance, spec_hash
from kybernetes.kubelet.pods.service_env import service_environment
from kybernetes.kubelet.pods.status import StatusReporter, build_pod_status
from kybernetes.kubelet.pods.termination import TerminationMixin
from kybernetes.kubelet.runtime.base import (
    ContainerConfig,
    ContainerExit,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerStartError,
    ImageNeverPulled,
    ImagePullError,
    Runtime,
    Sandbox,
    SandboxConfig,
)
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

__all__ = [
    "IMAGE_ERROR_VISIBLE",
    "RESYNC_INTERVAL",
    "TRANSIENT_RETRY",
    "UNKNOWN_RELISTS",
    "Adopted",
    "NodeRuntime",
    "PodWorker",
    "WorkerContext",
    "pod_key",
    "should_restart",
]

# Without news, a worker still re-syncs this often (a safety net, like the kubelet's resync).
RESYNC_INTERVAL = 10.0
# After ErrImagePull, the status flips to ImagePullBackOff this soon (at most) while the back-off runs.
IMAGE_ERROR_VISIBLE = 1.0
# A transient runtime failure (containerd away) is retried after this long.
TRANSIENT_RETRY = 2.0
# A running container the runtime reports without a task this many relists in a row is considered dead.
UNKNOWN_RELISTS = 2


class NodeRuntime(Runtime, Protocol):
    """The runtime as the kubelet uses it: the Runtime protocol plus the node's pod range."""

    def set_pod_cidr(self, cidr: str | None) -> None: ...


def seccomp_profile(pod: pb.PodSpec, container: pb.Container, *, default: str = "RuntimeDefault") -> str:
    """The container's seccomp profile type: its own, else the pod's, else the kubelet's default."""
    return (container.security_context.seccomp_profile.type or pod.security_context.seccomp_profile.type
            or default)


@dataclass
class WorkerContext:
    """What every pod worker of one kubelet shares."""

    node_name: str
    runtime: NodeRuntime
    logs: LogStore
    events: EventRecorder
    reporter: StatusReporter
    send: Callable[[node_pb2.NodeMessage], bool]
    node_ip: Callable[[], str]
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    # An exit the runtime reported before the worker knew the container's id (a very short-lived process).
    claim_exit: Callable[[str], ContainerExit | None] = lambda _container_id: None
    # The Services known now (from the master's ServiceSync), for the service environment variables.
    services: Callable[[], Sequence[pb.Service]] = lambda: ()
    # The profile of a pod that names none (kubelet --seccomp-default, on by default).
    seccomp_default: str = "RuntimeDefault"
    # This Node's pod range (spec.podCIDR, once registered): where probes may connect besides the pod IP.
    pod_cidr: Callable[[], str | None] = lambda: None


def should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


def _limits(container: pb.Container) -> tuple[int | None, int | None]:
    limits = container.resources.limits
    cpu = parse_cpu(limits["cpu"]) if limits.get("cpu") else None
    memory = parse_memory(limits["memory"]) if limits.get("memory") else None
    return cpu, memory


def pod_key(pod: pb.Pod) -> str:
    return f"{pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})"


class PodWorker(AdoptionMixin, ProbingMixin, TerminationMixin):
    """The task that owns one pod (see the module docstring)."""

    def __init__(self, *, pod: pb.Pod, ctx: WorkerContext, adopted: Adopted | None = None,
                 on_finished: Callable[[PodWorker], None] | None = None) -> None:
        self.pod = pod
        self.ctx = ctx
        self.uid = pod.metadata.uid
        self.log = get_logger("kubelet", object=obj_ref("pods", pod.metadata.name, pod.metadata.namespace),
                              node=ctx.node_name)
        self._on_finished = on_finished
        self.records: dict[str, ContainerRecord] = {}
        self.sandbox: Sandbox | None = None
        self.start_time = pod.status.start_time.ToSeconds() if pod.status.HasField("start_time") else time.time()
        self._wake = asyncio.Event()
        self._timers: list[float] = []
        self._retry_at = 0.0
        self._sandbox_backoff = Backoff(ctx.backoff_base, ctx.backoff_max)
        self._sandbox_error: tuple[str, str] | None = None
        self._terminate_requested = False
        self._kill_deadline = float("inf")
        self._grace_changed = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        self._stale: list[str] = []  # container ids to remove (older instances found on adoption)
        self._stale_sandbox: str | None = None
        self._unknown_seen: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.terminated = False
        for spec in pod.spec.containers:
            self.records[spec.name] = self._new_record(spec)
        if adopted is not None:
            self._adopt(adopted)
        if pod.metadata.HasField("deletion_timestamp"):
            self.request_termination(pod.metadata.deletion_grace_period_seconds)

    def _new_record(self, spec: pb.Container) -> ContainerRecord:
        return ContainerRecord(name=spec.name, crash_backoff=Backoff(self.ctx.backoff_base, self.ctx.backoff_max),
                               image_backoff=Backoff(self.ctx.backoff_base, self.ctx.backoff_max),
                               ready=not spec.HasField("readiness_probe"))

    # ------------------------------------------------------------------ inputs

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"pod:{self.pod.metadata.namespace}/{self.pod.metadata.name}")

    def update(self, pod: pb.Pod) -> None:
        """A newer version of the pod from the master."""
        if pod.metadata.uid != self.uid:
            return
        old, self.pod = self.pod, pod
        if pod.metadata.HasField("deletion_timestamp"):
            self.request_termination(pod.metadata.deletion_grace_period_seconds)
        # Most updates are the echo of our own status report: only a new spec is news to the loop.
        if pod.spec != old.spec:
            self.wake()

    def wake(self) -> None:
        self._wake.set()

    def running_log_paths(self) -> list[Path]:
        """The log files the runtime is writing for this pod right now."""
        meta = self.pod.metadata
        return [self.ctx.logs.path(namespace=meta.namespace, name=meta.name, uid=meta.uid, container=r.name,
                                   instance=r.current.number)
                for r in self.records.values() if r.current is not None and r.current.running]

    def owns(self, container_id: str) -> bool:
        return any(r.current is not None and r.current.container_id == container_id for r in self.records.values())

    def on_exit(self, event: ContainerExit) -> None:
        """The runtime saw a container's main process exit."""
        for record in self.records.values():
            current = record.current
            if current is not None and current.container_id == event.container_id and current.running:
                current.finish(exit_code=event.exit_code, finished_at=event.exited_at, oom_killed=event.oom_killed)
                self._container_stopped(record)
                self.log.info("container exited", container=record.name, exit_code=event.exit_code,
                              reason=current.reason)
                self.wake()

    def on_relist(self, infos: dict[str, ContainerInfo]) -> None:
        """The runtime's view of all containers: catch exits the event stream missed."""
        for record in self.records.values():
            current = record.current
            if current is None or not current.running:
                continue
            info = infos.get(current.container_id)
            if info is None:
                current.finish(exit_code=137, finished_at=None, reason="ContainerStatusUnknown",
                               message="The container could not be located")
            elif info.state == "exited":
                current.finish(exit_code=info.exit_code if info.exit_code is not None else 137,
                               finished_at=info.finished_at, oom_killed=info.oom_killed)
            elif info.state == "unknown":
                seen = self._unknown_seen.get(current.container_id, 0) + 1
                self._unknown_seen[current.container_id] = seen
                if seen < UNKNOWN_RELISTS:
                    continue
                current.finish(exit_code=137, finished_at=None, reason="ContainerStatusUnknown",
                               message="The container's process is gone")
            else:
                self._unknown_seen.pop(current.container_id, None)
                continue
            self._container_stopped(record)
            self.wake()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        try:
            await self._remove_stale()
            for record in self.records.values():
                if record.running:
                    self._start_probers(record)
            while not self._terminate_requested:
                self._wake.clear()
                self._timers.clear()
                self._sync_task = asyncio.create_task(self._sync())
                try:
                    await self._sync_task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise
                except Exception as err:  # a bug or an unexpected runtime answer: never kill the worker
                    self.log.exception("pod sync failed")
                    self._event(WARNING, "FailedSync", f"error syncing pod: {err}")
                    self._retry_at = time.time() + TRANSIENT_RETRY
                    self._timers.append(self._retry_at)
                finally:
                    self._sync_task = None
                self.publish()
                if self._terminate_requested:
                    break
                await self._sleep()
            await self._terminate()
        finally:
            self._stop_all_probers()
            self.finished.set()
            if self._on_finished is not None:
                self._on_finished(self)

    async def _sleep(self) -> None:
        now = time.time()
        wake_at = min([now + RESYNC_INTERVAL, *self._timers])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - now))

    def _timer(self, at: float) -> None:
        self._timers.append(at)

    def _event(self, kind: str, reason: str, message: str, *, container: str = "") -> None:
        self.ctx.events.pod_event(self.pod, type=kind, reason=reason, message=message, container=container)

    # ------------------------------------------------------------------ sync

    async def _sync(self) -> None:
        pod = self.pod
        if self._pod_done():
            return
        if not await self._ensure_sandbox():
            return
        for spec in pod.spec.containers:
            record = self.records.get(spec.name)
            if record is None:
                record = self.records[spec.name] = self._new_record(spec)
            await self._sync_container(spec, record)

    def _pod_done(self) -> bool:
        """Every container ended for good (restartPolicy Never/OnFailure): nothing more to do."""
        policy = self.pod.spec.restart_policy or "Always"
        if policy == "Always":
            return False
        for record in self.records.values():
            exited = record.exited_instance()
            if exited is not None and not should_restart(policy, exited.exit_code):
                continue
            if exited is None and record.start_error is not None and policy == "Never":
                continue
            return False
        return bool(self.records)

    async def _ensure_sandbox(self) -> bool:
        if self.sandbox is not None:
            return True
        now = time.time()
        if not self._sandbox_backoff.ready(now):
            self._timer(self._sandbox_backoff.until)
            return False
        meta = self.pod.metadata
        config = SandboxConfig(pod_uid=meta.uid, namespace=meta.namespace, name=meta.name,
                               host_network=self.pod.spec.host_network)
        try:
            self.sandbox = await self.ctx.runtime.create_sandbox(config)
        except ContainerRuntimeError as err:
            self._sandbox_backoff.next(now)
            self._timer(self._sandbox_backoff.until)
            self._sandbox_error = ("CreatePodSandboxError", f"failed to create pod sandbox: {err}")
            for record in self.records.values():
                if not record.running:
                    record.waiting = self._sandbox_error
            self._event(WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {err}")
            self.log.warning("sandbox creation failed", error=str(err))
            return False
        self._sandbox_backoff.reset()
        if self._sandbox_error is not None:
            for record in self.records.values():
                if record.waiting == self._sandbox_error:
                    record.waiting = ("ContainerCreating", "")
            self._sandbox_error = None
        self.log.info("sandbox ready", sandbox=self.sandbox.id, ip=self.sandbox.ip)
        return True

    async def _sync_container(self, spec: pb.Container, record: ContainerRecord) -> None:
        now = time.time()
        current = record.current
        if current is not None and current.running:
            if record.liveness_failure:
                self._event(NORMAL, "Killing", f"Container {spec.name} failed liveness probe, will be restarted",
                            container=spec.name)
                await self._kill(record, grace=self.pod.spec.termination_grace_period_seconds)
            elif current.spec_hash and current.spec_hash != spec_hash(spec):
                self._event(NORMAL, "Killing", f"Container {spec.name} definition changed, will be restarted",
                            container=spec.name)
                await self._kill(record, grace=self.pod.spec.termination_grace_period_seconds)
                record.crash_backoff.reset()
            else:
                return
            if record.running:  # the runtime could not stop it: try again later, never run two instances
                self._timer(time.time() + TRANSIENT_RETRY)
                return
        policy = self.pod.spec.restart_policy or "Always"
        exited = record.exited_instance()
        if exited is not None:
            if not should_restart(policy, exited.exit_code):
                record.waiting = None
                return
            if exited.started_at and exited.finished_at:
                record.crash_backoff.reset_after_run(exited.finished_at - exited.started_at)
            if not record.crash_backoff.ready(now):
                delay = record.crash_backoff.delay
                message = f"back-off {delay:g}s restarting failed container={spec.name} pod={pod_key(self.pod)}"
                if record.waiting is None or record.waiting[0] != "CrashLoopBackOff":
                    self._event(WARNING, "BackOff", "Back-off restarting failed container", container=spec.name)
                record.waiting = ("CrashLoopBackOff", message)
                self._timer(record.crash_backoff.until)
                return
        elif record.start_error is not None:
            if policy == "Never":
                record.waiting = None
                return
            if not record.crash_backoff.ready(now):
                self._timer(record.crash_backoff.until)
                return
        await self._start(spec, record)

    async def _pull(self, spec: pb.Container, record: ContainerRecord) -> str | None:
        """The image reference to run, or None (with the waiting reason set) when it is not available."""
        now = time.time()
        if not record.image_backoff.ready(now):
            failed_at = record.image_backoff.until - record.image_backoff.delay
            if record.waiting is not None and record.waiting[0] == "ErrImagePull" and \
                    now < failed_at + IMAGE_ERROR_VISIBLE:
                # The pull error stays visible a moment before the back-off shows.
                self._timer(min(record.image_backoff.until, failed_at + IMAGE_ERROR_VISIBLE))
                return None
            record.waiting = ("ImagePullBackOff", f'Back-off pulling image "{spec.image}"')
            self._timer(record.image_backoff.until)
            return None
        policy = spec.image_pull_policy or "IfNotPresent"
        began = time.monotonic()
        if policy == "Always":
            self._event(NORMAL, "Pulling", f'Pulling image "{spec.image}"', container=spec.name)
        try:
            reference = await self.ctx.runtime.ensure_image(spec.image, pull_policy=policy)
        except ImageNeverPulled as err:
            record.waiting = ("ErrImageNeverPull", str(err))
            self._event(WARNING, "ErrImageNeverPull", str(err), container=spec.name)
            record.image_backoff.next(now)
            self._timer(record.image_backoff.until)
            return None
        except ImagePullError as err:
            record.waiting = ("ErrImagePull", str(err))
            self._event(WARNING, "Failed", f'Failed to pull image "{spec.image}": {err}', container=spec.name)
            record.image_backoff.next(now)
            self._timer(min(record.image_backoff.until, time.time() + IMAGE_ERROR_VISIBLE))
            self.log.warning("image pull failed", image=spec.image, error=str(err))
            return None
        except ContainerRuntimeError as err:
            record.waiting = (record.waiting[0] if record.waiting else "ContainerCreating", str(err))
            self._timer(time.time() + TRANSIENT_RETRY)
            self.log.warning("runtime unavailable", error=str(err))
            return None
        record.image_backoff.reset()
        if policy == "Always":
            self._event(NORMAL, "Pulled", f'Successfully pulled image "{spec.image}" in '
                        f"{time.monotonic() - began:.3f}s", container=spec.name)
        return reference

    async def _start(self, spec: pb.Container, record: ContainerRecord) -> None:
        assert self.sandbox is not None
        meta = self.pod.metadata
        try:
            cpu, memory = _limits(spec)
        except QuantityError as err:
            self._start_failed(spec, record, "CreateContainerError", f"resources.limits: {err}")
            return
        reference = await self._pull(spec, record)
        if reference is None:
            return
        now = time.time()
        retry = record.current is not None or record.start_error is not None
        if retry:
            record.crash_backoff.next(now)
        number = record.restart_count + 1 if record.current is not None else record.restart_count
        log_path = self.ctx.logs.path(namespace=meta.namespace, name=meta.name, uid=meta.uid, container=spec.name,
                                      instance=number)
        with contextlib.suppress(OSError):
            log_path.unlink()  # a stale file of an instance that never really started
        config = ContainerConfig(
            name=spec.name, image=reference, log_path=log_path, command=list(spec.command), args=list(spec.args),
            env={**service_environment(self.ctx.services(), meta.namespace), **{e.name: e.value for e in spec.env}},
            working_dir=spec.working_dir, cpu_millis=cpu,
            memory_bytes=memory,
            labels={LABEL_RESTART_COUNT: str(number), LABEL_SPEC_HASH: spec_hash(spec)},
            seccomp=seccomp_profile(self.pod.spec, spec, default=self.ctx.seccomp_default) != "Unconfined")
        try:
            container_id = await self.ctx.runtime.start_container(self.sandbox, config)
        except ContainerStartError as err:
            reason = "CreateContainerError" if err.reason == "CreateContainerError" else "RunContainerError"
            self._start_failed(spec, record, reason, err.message)
            return
        except ContainerRuntimeError as err:
            self._start_failed(spec, record, "RunContainerError", str(err))
            return
        old_previous = record.previous
        if record.current is not None:
            record.previous = record.current
            record.restart_count = number
        record.current = Instance(container_id=container_id, number=number, spec_hash=spec_hash(spec),
                                  image=spec.image, image_id=reference, started_at=time.time())
        record.waiting = None
        record.start_error = None
        record.liveness_failure = ""
        record.ready = not spec.HasField("readiness_probe")
        self._event(NORMAL, "Created", f"Created container {spec.name}", container=spec.name)
        self._event(NORMAL, "Started", f"Started container {spec.name}", container=spec.name)
        self.log.info("container started", container=spec.name, container_id=container_id, restarts=number)
        early_exit = self.ctx.claim_exit(container_id)
        if early_exit is not None:
            self.on_exit(early_exit)
        else:
            self._start_probers(record)
        if old_previous is not None:
            # Only the previous instance is kept (for lastState and `logs --previous`).
            with contextlib.suppress(ContainerRuntimeError):
                await self.ctx.runtime.remove_container(old_previous.container_id)
        if record.previous is not None:
            self.ctx.logs.prune(namespace=meta.namespace, name=meta.name, uid=meta.uid, container=spec.name,
                                keep_from=record.previous.number)

    def _start_failed(self, spec: pb.Container, record: ContainerRecord, reason: str, message: str) -> None:
        record.start_error = (reason, message)
        policy = self.pod.spec.restart_policy or "Always"
        record.waiting = None if policy == "Never" and record.current is None else (reason, message)
        self._event(WARNING, "Failed", f"Error: {message}", container=spec.name)
        self.log.warning("container start failed", container=spec.name, reason=reason, error=message)
        if not record.crash_backoff.ready(time.time()):
            self._timer(record.crash_backoff.until)
        else:
            self.wake()

    # ---------------------------------------------------------------- status

    def pod_ip(self) -> str:
        if self.pod.spec.host_network:
            return self.ctx.node_ip()
        return (self.sandbox.ip or "") if self.sandbox is not None else ""

    def publish(self, *, finished: bool = False) -> None:
        # After a kubelet restart the master's copy keeps condition transition times stable.
        previous = self.ctx.reporter.latest(self.uid) or self.pod.status
        status = build_pod_status(pod=self.pod, records=self.records, pod_ip=self.pod_ip(),
                                  host_ip=self.ctx.node_ip(), start_time=self.start_time, previous=previous,
                                  terminating=self._terminate_requested, finished=finished)
        if self.ctx.reporter.set(self.pod, status):
            self.log.debug("status changed", phase=status.phase,
                           containers={s.name: _state_name(s.state) for s in status.container_statuses})


def _state_name(state: pb.ContainerState) -> str:
    if state.HasField("waiting"):
        return f"waiting:{state.waiting.reason}"
    if state.HasField("terminated"):
        return f"terminated:{state.terminated.reason}"
    return "running" if state.HasField("running") else "none"
