"""After a kubelet (re)start: keep what should run, remove what is no longer bound here.

The runtime is the source of truth: sandboxes and containers carry the pod's
uid in their labels (`kubelet.runtime.base.LABEL_*`). On the first PodSync the
manager calls `inventory()` once, hands each still-bound pod its sandbox and
containers (`Adopted`; the worker takes running containers over without
restarting them), and removes everything else with `remove_orphans()`.
Nothing is touched before that first PodSync: while the master is away, a
restarted kubelet leaves every container as it is.

The worker's side is `AdoptionMixin` (a part of `PodWorker`): with a ready
sandbox of the right kind, the newest instance of each container (by the
restart-count label) becomes the current one, running or exited, and keeps
its restart count and last state; older instances, containers of unknown
names, and everything when there is no usable sandbox are marked stale and
removed before the worker's first sync.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kybernetes.core.log import get_logger
from kybernetes.kubelet.pods.records import LABEL_RESTART_COUNT, LABEL_SPEC_HASH, ContainerRecord, Instance
from kybernetes.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    ContainerInfo,
    ContainerRuntimeError,
    Runtime,
    Sandbox,
)
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from kybernetes.kubelet.pods.worker import WorkerContext

log = get_logger("kubelet")


@dataclass
class Adopted:
    """What a restarted kubelet found in the runtime for a pod it must keep running."""

    sandbox: Sandbox | None
    containers: list[ContainerInfo] = field(default_factory=list)


@dataclass
class Inventory:
    """Everything the runtime has, grouped by pod uid."""

    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    containers: dict[str, list[ContainerInfo]] = field(default_factory=dict)
    unlabeled: list[ContainerInfo] = field(default_factory=list)

    def uids(self) -> set[str]:
        return set(self.sandboxes) | set(self.containers)

    def adopted(self, uid: str) -> Adopted | None:
        if uid not in self.uids():
            return None
        return Adopted(sandbox=self.sandboxes.get(uid), containers=list(self.containers.get(uid, [])))


async def inventory(runtime: Runtime) -> Inventory:
    found = Inventory()
    for sandbox in await runtime.list_sandboxes():
        found.sandboxes[sandbox.config.pod_uid] = sandbox
    for info in await runtime.list_containers():
        uid = info.labels.get(LABEL_POD_UID)
        if uid:
            found.containers.setdefault(uid, []).append(info)
        else:
            found.unlabeled.append(info)
    return found


async def remove_orphans(runtime: Runtime, found: Inventory, *, keep: set[str]) -> list[str]:
    """Remove sandboxes and containers of pods not in `keep`; returns the uids removed."""
    removed = []
    for uid in sorted(found.uids() - keep):
        sandbox = found.sandboxes.get(uid)
        try:
            if sandbox is not None:
                await runtime.remove_sandbox(sandbox.id)
            for info in found.containers.get(uid, []):
                await runtime.remove_container(info.id)
        except ContainerRuntimeError as err:
            log.warning("removing an orphaned pod failed", pod_uid=uid, error=str(err))
            continue
        removed.append(uid)
        log.info("removed the containers of a pod no longer bound here", pod_uid=uid)
    return removed


async def running_pod_uids(runtime: Runtime) -> list[str]:
    """The pods the runtime has something of (for Register), best effort."""
    with contextlib.suppress(ContainerRuntimeError):
        return sorted({s.config.pod_uid for s in await runtime.list_sandboxes()})
    return []


class AdoptionMixin:
    """`PodWorker`'s adoption of what a previous kubelet left (see the module docstring)."""

    if TYPE_CHECKING:  # PodWorker's state, set by its __init__
        pod: pb.Pod
        ctx: WorkerContext
        log: FilteringBoundLogger
        records: dict[str, ContainerRecord]
        sandbox: Sandbox | None
        _stale: list[str]
        _stale_sandbox: str | None

    def _adopt(self, adopted: Adopted) -> None:
        """Take over what a previous kubelet left running, without restarting it."""
        sandbox = adopted.sandbox
        if sandbox is not None and sandbox.ready and sandbox.config.host_network == self.pod.spec.host_network:
            self.sandbox = sandbox
        else:
            # No usable sandbox: everything found must go and the pod starts over (counts are kept).
            self._stale.extend(info.id for info in adopted.containers)
            if sandbox is not None:
                self._stale_sandbox = sandbox.id
        previous_statuses = {s.name: s for s in self.pod.status.container_statuses}
        by_name: dict[str, list[ContainerInfo]] = {}
        for info in adopted.containers:
            by_name.setdefault(info.labels.get(LABEL_CONTAINER_NAME, ""), []).append(info)
        for name, infos in by_name.items():
            record = self.records.get(name)
            if record is None or self.sandbox is None:
                self._stale.extend(info.id for info in infos)
                continue
            infos.sort(key=lambda i: (_int_label(i, LABEL_RESTART_COUNT), i.started_at or 0.0))
            newest = infos[-1]
            self._stale.extend(info.id for info in infos[:-1])
            number = _int_label(newest, LABEL_RESTART_COUNT)
            if newest.state not in ("running", "exited"):
                self._stale.append(newest.id)
                record.restart_count = number
                continue
            instance = Instance(container_id=newest.id, number=number,
                                spec_hash=newest.labels.get(LABEL_SPEC_HASH, ""),
                                image=previous_statuses[name].image if name in previous_statuses else "",
                                image_id=newest.image, started_at=newest.started_at)
            if newest.state == "exited":
                instance.finish(exit_code=newest.exit_code if newest.exit_code is not None else 137,
                                finished_at=newest.finished_at, oom_killed=newest.oom_killed)
            record.current = instance
            record.restart_count = number
            record.waiting = None
            old = previous_statuses.get(name)
            if old is not None and old.container_id == newest.id and old.last_state.HasField("terminated"):
                term = old.last_state.terminated
                record.previous = Instance(container_id=term.container_id, number=max(0, number - 1),
                                           spec_hash="", image="", image_id="",
                                           started_at=term.started_at.ToNanoseconds() / 1e9 or None,
                                           finished_at=term.finished_at.ToNanoseconds() / 1e9 or None,
                                           exit_code=term.exit_code, reason=term.reason, message=term.message)
            self.log.info("container adopted", container=name, container_id=newest.id, state=newest.state)

    async def _remove_stale(self) -> None:
        if self._stale_sandbox is not None:
            with contextlib.suppress(ContainerRuntimeError):
                await self.ctx.runtime.remove_sandbox(self._stale_sandbox)
        for container_id in self._stale:
            with contextlib.suppress(ContainerRuntimeError):
                await self.ctx.runtime.remove_container(container_id)
        self._stale.clear()


def _int_label(info: ContainerInfo, key: str) -> int:
    try:
        return int(info.labels.get(key, "0"))
    except ValueError:
        return 0
