"""After a kubelet (re)start: keep what should run, remove what is no longer bound here.

The runtime is the source of truth: sandboxes and containers carry the pod's
uid in their labels (`kubelet.runtime.base.LABEL_*`). On the first PodSync the
manager calls `inventory()` once, hands each still-bound pod its sandbox and
containers (`Adopted`; the worker takes running containers over without
restarting them), and removes everything else with `remove_orphans()`.
Nothing is touched before that first PodSync: while the master is away, a
restarted kubelet leaves every container as it is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ctl.machinery.log import get_logger
from kubelet.pods.worker import Adopted
from kubelet.runtime.base import LABEL_POD_UID, ContainerInfo, ContainerRuntimeError, Runtime, Sandbox

log = get_logger("kubelet")


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
