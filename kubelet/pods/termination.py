"""A pod worker's termination: stopping a container with its grace period, and tearing the pod down.

`TerminationMixin` (a part of `PodWorker`):
* `_kill` stops one running instance — stop signal, the grace period, then
  SIGKILL (the runtime's `stop_container`) — and records how it ended; the
  sync uses it to restart a container whose liveness probe failed or whose
  spec changed.
* Termination is requested by a deletionTimestamp or by the pod going away
  (`remove`, `request_termination`): the sync in progress is cancelled and
  the worker's loop ends in `_terminate`. Every running container gets its
  stop signal and, after the grace period (which a later, shorter grace can
  cut), SIGKILL; then containers, sandbox and log files are removed (retried
  with back-off while the runtime fails), the final status is sent, and the
  master is told with PodTerminated that the pod may go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from kybernetes.core.machinery.backoff import exponential
from kybernetes.kubelet.events import NORMAL
from kybernetes.kubelet.pods.records import ContainerRecord
from kybernetes.kubelet.runtime.base import ContainerRuntimeError, Sandbox
from kybernetes.proto import node_pb2
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from kybernetes.kubelet.pods.worker import WorkerContext


class TerminationMixin:
    """`PodWorker`'s stopping and termination (see the module docstring)."""

    if TYPE_CHECKING:  # PodWorker's state, set by its __init__, and the methods of its other parts
        pod: pb.Pod
        ctx: WorkerContext
        uid: str
        log: FilteringBoundLogger
        records: dict[str, ContainerRecord]
        sandbox: Sandbox | None
        terminated: bool
        _terminate_requested: bool
        _kill_deadline: float
        _grace_changed: asyncio.Event
        _sync_task: asyncio.Task[None] | None

        def wake(self) -> None: ...
        def publish(self, *, finished: bool = False) -> None: ...
        def _event(self, kind: str, reason: str, message: str, *, container: str = "") -> None: ...
        def _stop_probers(self, record: ContainerRecord) -> None: ...
        def _stop_all_probers(self) -> None: ...
        def _container_stopped(self, record: ContainerRecord) -> None: ...

    def remove(self) -> None:
        """The pod is gone from the master (or no longer bound here): terminate it."""
        meta = self.pod.metadata
        grace = meta.deletion_grace_period_seconds if meta.HasField("deletion_timestamp") else \
            self.pod.spec.termination_grace_period_seconds
        self.request_termination(grace)

    def request_termination(self, grace: float) -> None:
        deadline = time.monotonic() + max(0.0, float(grace))
        if deadline < self._kill_deadline:
            self._kill_deadline = deadline
            self._grace_changed.set()
        if not self._terminate_requested:
            self._terminate_requested = True
            if self._sync_task is not None and not self._sync_task.done():
                self._sync_task.cancel()
        self.wake()

    @property
    def terminating(self) -> bool:
        return self._terminate_requested

    async def _kill(self, record: ContainerRecord, *, grace: float) -> None:
        """Stop the running instance (stop signal, grace, SIGKILL) and record how it ended."""
        current = record.current
        assert current is not None
        self._stop_probers(record)
        try:
            await self.ctx.runtime.stop_container(current.container_id, grace_seconds=float(grace))
        except ContainerRuntimeError as err:
            self.log.warning("stopping container failed", container=record.name, error=str(err))
        await self._refresh_exit(record)

    async def _refresh_exit(self, record: ContainerRecord) -> None:
        current = record.current
        if current is None or not current.running:
            return
        try:
            info = await self.ctx.runtime.container_info(current.container_id)
        except ContainerRuntimeError:
            info = None
        if current.running:
            if info is not None and info.state == "exited":
                current.finish(exit_code=info.exit_code if info.exit_code is not None else 137,
                               finished_at=info.finished_at, oom_killed=info.oom_killed)
            elif info is None or info.state != "running":
                current.finish(exit_code=137, finished_at=None)
            else:
                return
        self._container_stopped(record)

    async def _terminate(self) -> None:
        self._stop_all_probers()
        running = [r for r in self.records.values() if r.running]
        for record in running:
            self._event(NORMAL, "Killing", f"Stopping container {record.name}", container=record.name)
        self.publish()
        attempt = 0
        while True:
            try:
                await self._stop_running()
                await self._remove_everything()
                break
            except ContainerRuntimeError as err:
                attempt += 1
                self.log.warning("pod teardown failed, retrying", error=str(err), attempt=attempt)
                await asyncio.sleep(exponential(attempt, base=0.2, cap=5.0))
        for record in self.records.values():
            record.waiting = None
        self.publish(finished=True)
        meta = self.pod.metadata
        await self.ctx.logs.remove_pod(namespace=meta.namespace, name=meta.name, uid=meta.uid)
        self.ctx.send(node_pb2.NodeMessage(pod_terminated=node_pb2.PodTerminated(
            namespace=meta.namespace, name=meta.name, uid=meta.uid)))
        self.terminated = True
        self.log.info("pod terminated")

    async def _stop_running(self) -> None:
        """Stop every running container within the grace period; a shorter grace arriving meanwhile cuts it."""
        while True:
            running = [r for r in self.records.values() if r.running]
            if not running:
                return
            self._grace_changed.clear()
            remaining = max(0.0, self._kill_deadline - time.monotonic())
            stops = asyncio.gather(*(self.ctx.runtime.stop_container(r.current.container_id,  # type: ignore[union-attr]
                                                                     grace_seconds=remaining) for r in running))
            changed = asyncio.create_task(self._grace_changed.wait())
            waiters: set[asyncio.Future[Any]] = {stops, changed}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if not stops.done():
                stops.cancel()
                with contextlib.suppress(asyncio.CancelledError, ContainerRuntimeError):
                    await stops
                continue
            stops.result()  # raises the runtime's error, retried by the caller
            for record in running:
                await self._refresh_exit(record)
            return

    async def _remove_everything(self) -> None:
        runtime = self.ctx.runtime
        for sandbox in await runtime.list_sandboxes():
            if sandbox.config.pod_uid == self.uid:
                await runtime.remove_sandbox(sandbox.id)
        if self.sandbox is not None:
            await runtime.remove_sandbox(self.sandbox.id)
        ids = {r.current.container_id for r in self.records.values() if r.current is not None}
        ids |= {r.previous.container_id for r in self.records.values() if r.previous is not None}
        for container_id in ids:
            await runtime.remove_container(container_id)
